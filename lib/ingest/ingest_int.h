/*
 * Inside the log reader (include/qprof/ingest.h): three format parsers
 * (stderr.c with prefix.c, csvlog.c, jsonlog.c) each turn bytes into whole
 * log messages (qp_log_msg); events.c turns messages into profile events, the
 * same way whatever the format, which is why the three formats of one run
 * give one profile.
 */
#ifndef QPROF_INGEST_INT_H
#define QPROF_INGEST_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "internal.h"
#include "qprof/ingest.h"
#include "stats/stats_int.h"

/* Severities, including the parts of a message stderr logs as lines of
 * their own (DETAIL ... LOCATION). */
typedef enum qp_sev {
  QP_SEV_NONE = 0,
  QP_SEV_DEBUG, QP_SEV_INFO, QP_SEV_NOTICE, QP_SEV_WARNING, QP_SEV_LOG, QP_SEV_ERROR,
  QP_SEV_FATAL, QP_SEV_PANIC,
  /* parts */
  QP_SEV_DETAIL, QP_SEV_HINT, QP_SEV_QUERY, QP_SEV_CONTEXT, QP_SEV_STATEMENT, QP_SEV_LOCATION
} qp_sev;

/* A text field of a message: bytes and length (not NUL-terminated unless said). */
typedef struct qp_span {
  const char *p;
  size_t n;
} qp_span;

/* One whole log message, as every format yields it. Valid during
 * qp__ingest_message only. */
typedef struct qp_log_msg {
  int64_t time_ns;   /* 0 when the line has no time */
  int64_t pid;       /* -1 when unknown */
  qp_span user, database, application, host;
  char sqlstate[6];  /* "" when unknown */
  qp_sev severity;
  qp_span message, detail, statement;
  uint64_t line;     /* line number of its first line */
} qp_log_msg;

/* ---- time stamps ----------------------------------------------------------- */

/* Caches the last date and zone seen, for the 2 parsers' hot path. */
typedef struct qp_ts_cache {
  char day[16];      /* "YYYY-MM-DD HH:MM" of the last stamp */
  int64_t day_s;     /* its seconds since the epoch (UTC) */
  char zone[16];
  int64_t zone_off_s;
  bool zone_known;
  char unknown[16]; /* the last zone not known, "" none */
} qp_ts_cache;

/* Parses "YYYY-MM-DD HH:MM:SS[.fff] ZONE" at p[0..n): returns the bytes
 * used (0 when it is not one) and the time in *ns. `unknown` is set to the
 * zone when it is not one the reader knows (then read as UTC). */
size_t qp__ts_parse(qp_ts_cache *c, const char *p, size_t n, int64_t *ns, bool *unknown);

/* ---- log_line_prefix ----------------------------------------------------------- */

enum { QP_PFX_MAX_TOKENS = 48 };
typedef struct qp_pfx_tok {
  char kind;        /* 0: literal; else the escape letter */
  const char *lit;  /* literal text (kind 0), in qp_prefix.text */
  size_t lit_len;
} qp_pfx_tok;

typedef struct qp_prefix {
  char *text;       /* the prefix as given, then the literals' copy */
  size_t ntok;
  size_t q_at;      /* index of the %q token, or SIZE_MAX */
  qp_pfx_tok tok[QP_PFX_MAX_TOKENS];
  bool has_pid;
} qp_prefix;

/* Compiles a log_line_prefix. QP_SYNTAX with a message in err for an unknown
 * escape or too many parts; QP_NOMEM. */
qp_status qp__prefix_compile(qp_prefix *px, const qp_hooks *h, const char *text, qp_err *err);
void qp__prefix_free(qp_prefix *px, const qp_hooks *h);
/* Matches px and then "SEVERITY:  " at the start of line[0..n): fills the
 * prefix fields and the severity of m, and *body to the message's first
 * byte. False when the line does not start that way. */
bool qp__prefix_match(const qp_prefix *px, qp_ts_cache *tc, const char *line, size_t n,
                      qp_log_msg *m, size_t *body, bool *unknown_zone);
/* The severity named at p[0..n) followed by ":  " (or ":" at the end), and
 * the bytes it takes; QP_SEV_NONE when none. */
qp_sev qp__sev_parse(const char *p, size_t n, size_t *used);
/* A severity named by csvlog/jsonlog (no colon). QP_SEV_NONE when unknown. */
qp_sev qp__sev_name(const char *p, size_t n);

/* The candidates auto-detection tries, in order; NULL-terminated. */
extern const char *const qp__prefix_candidates[];

/* ---- the reader -------------------------------------------------------------- */

typedef struct qp_pid_state qp_pid_state;

/* Raw statement text -> the profile's normalization of it, for statements
 * that repeat byte for byte (prepared and parameterized ones). */
typedef struct qp_norm_slot {
  uint64_t hash;
  char *raw;        /* NULL: empty slot */
  size_t raw_len;
  char *norm;
  size_t norm_len;
  uint64_t fingerprint;
} qp_norm_slot;

#define QP_NORM_SLOTS 4096

struct qp_ingest {
  qp_hooks hooks;
  qp_profile *prof;
  qp_err err;
  bool failed, finished;
  qp_log_format format;
  char *name;
  int64_t since_ns, until_ns;
  char *prefix_text;      /* given or detected */
  qp_prefix prefix;
  bool prefix_ready;
  qp_ts_cache tc;
  qp_ingest_stats st;
  char *first_unparsed;
  char *unknown_zone;
  /* input not yet made into lines: a partial line, or the detection window */
  qp_buf carry;
  bool detecting;
  uint64_t line_no;      /* lines completed (from the position reading started at) */
  /* text offsets (of the whole file: base is where reading started) */
  uint64_t base;         /* of the first byte fed */
  uint64_t pos;          /* after the last complete line */
  uint64_t line_pos;     /* of the line being read */
  uint64_t msg_pos;      /* of the open stderr message's first line */
  uint64_t csv_pos;      /* of the open CSV record's first line */
  /* the stderr message being assembled */
  bool msg_open;
  qp_log_msg msg;
  qp_sev last_part;      /* what a continuation line extends */
  qp_buf f_user, f_db, f_app, f_host, f_message, f_detail, f_statement;
  /* csv record being assembled across lines */
  qp_buf csv_rec;
  uint64_t csv_line;
  /* per server process state (events.c) */
  qp_pid_state *pids;
  size_t npids, pid_cap;
  /* normalization cache, and the buffers of one event */
  qp_norm_slot *norm;
  qp_buf ev_db, ev_user, ev_app, ev_host, ev_sample, ev_norm;
  bool sampling;
  /* an auto_explain plan's Query Text (JSON format: unescaped), and whether
   * this input has logged a statement with its duration yet (events.c) */
  qp_buf plan_text;
  bool seen_statement_duration;
  /* XXH3 of the text the last recorded statement was given (events.c: the
   * normalization cache's key, kept for the plan that may follow) */
  uint64_t sql_hash;
};

/* Handles one whole message (events.c). False with in->err set on a
 * failure that stops the reader (out of memory). */
bool qp__ingest_message(qp_ingest *in, const qp_log_msg *m);
/* At the end of input: records statements still waiting for a duration. */
bool qp__ingest_drain(qp_ingest *in);
void qp__ingest_events_free(qp_ingest *in);
/* Counts one unparsed line (keeps the first). */
void qp__ingest_unparsed(qp_ingest *in, const char *line, size_t n, uint64_t line_no);

/* The format parsers: each takes one complete line (without its newline). */
bool qp__stderr_line(qp_ingest *in, const char *line, size_t n);
bool qp__stderr_end(qp_ingest *in);
bool qp__csv_line(qp_ingest *in, const char *line, size_t n);
bool qp__csv_end(qp_ingest *in);
bool qp__json_line(qp_ingest *in, const char *line, size_t n);

#endif
