/*
 * qp__ helpers shared inside the library. Never installed; nothing here is API.
 */
#ifndef QPROF_INTERNAL_H
#define QPROF_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "qprof/config.h"
#include "qprof/core.h"
#include "qprof/status.h"

#define QP_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define QP_UNUSED(x) ((void)(x))
#define QP_LIKELY(x) __builtin_expect(!!(x), 1)
#define QP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define QP_NOINLINE __attribute__((noinline))

/* ---- allocation (lib/core/alloc.c) -------------------------------------
 * Every allocation in the library goes through these, so that a hook can
 * fail the Nth one and out-of-memory is a tested path. `h` may be NULL
 * (plain malloc). qp__free(h, NULL) is a no-op. */
void *qp__malloc(const qp_hooks *h, size_t n);
void *qp__calloc(const qp_hooks *h, size_t count, size_t size);
void *qp__realloc(const qp_hooks *h, void *p, size_t n);
void qp__free(const qp_hooks *h, void *p);
char *qp__strdup(const qp_hooks *h, const char *s);
char *qp__strndup(const qp_hooks *h, const char *s, size_t n);
/* Copies *src into *dst, or the defaults when src is NULL. */
void qp__hooks_init(qp_hooks *dst, const qp_hooks *src);

/* ---- errors (lib/core/error.c) -----------------------------------------
 * Each handle embeds one qp_err: the status and message of its last call. */
#define QP_ERRMSG_MAX 512
typedef struct qp_err {
  qp_status code;
  char msg[QP_ERRMSG_MAX];
} qp_err;

void qp__err_clear(qp_err *e);
/* Sets code and a formatted message; returns code, so that callers can
 * `return qp__err_set(&h->err, QP_INVALID, "...")`. */
qp_status qp__err_set(qp_err *e, qp_status code, const char *fmt, ...) QP_PRINTF(3, 4);
qp_status qp__err_vset(qp_err *e, qp_status code, const char *fmt, va_list ap) QP_PRINTF(3, 0);
/* Formats into a caller's error buffer (may be NULL or zero-sized); returns code. */
qp_status qp__errbuf_set(char *buf, size_t len, qp_status code, const char *fmt, ...) QP_PRINTF(4, 5);

/* ---- logging (lib/core/log.c) ------------------------------------------ */
void qp__log(const qp_hooks *h, qp_log_level level, const char *fmt, ...) QP_PRINTF(3, 4);
static inline bool qp__log_enabled(const qp_hooks *h, qp_log_level level) {
  return h != NULL && h->log_fn != NULL && level >= h->log_min_level;
}

/* ---- clocks (lib/core/clock.c) -----------------------------------------
 * Durations and deadlines use qp__now_ns(): monotonic nanoseconds, from the
 * TSC when the kernel keeps time with it, else CLOCK_MONOTONIC (see
 * clock.c). Within a thread it does not decrease (but for a fraction of a
 * microsecond once, when it switches to the TSC); a timestamp taken in
 * another thread may be slightly ahead, so differences of timestamps are
 * taken with qp__ns_since(). Its values are not
 * CLOCK_MONOTONIC's: a timed wait on a
 * CLOCK_MONOTONIC condition variable takes qp__timespec_after(). Timestamps
 * that are stored or shown are CLOCK_REALTIME. All in nanoseconds.
 * Thread-safe. */
uint64_t qp__now_ns(void);
/* now - then, or 0 when then is later: a timestamp taken by another thread
 * (or after this thread read `now`, as the pool's acquire does before it
 * locks) may be a little ahead of this thread's `now`. */
static inline uint64_t qp__ns_since(uint64_t now, uint64_t then) {
  return now > then ? now - then : 0;
}
/* What qp__now_ns() reads now: "tsc", "calibrating" (CLOCK_MONOTONIC while
 * the TSC's rate is measured) or "monotonic". A static string. */
const char *qp__clock_source(void);
/* The CLOCK_MONOTONIC time delta_ns from now, for pthread_cond_timedwait. */
struct timespec;
void qp__timespec_after(struct timespec *ts, uint64_t delta_ns);
int64_t qp__wall_ns(void);
/* The wall clock at tick resolution (1-4 ms): enough for a time bucket and
 * first/last seen, and several times cheaper than CLOCK_REALTIME. */
int64_t qp__wall_coarse_ns(void);
/* ISO 8601 UTC with milliseconds, "2026-11-22T00:30:42.123Z"; buf >= 32 bytes. */
void qp__format_iso8601(int64_t wall_ns, char *buf, size_t len);
/* Parses ISO 8601 ("2026-11-22", "2026-11-22T10:00", "...:00Z", "+01:00"),
 * a Unix time ("@1700000000") or a relative time ("-15m", "-2h", "-1d", "now").
 * Returns false on anything else. */
bool qp__parse_time(const char *text, int64_t now_wall_ns, int64_t *out_wall_ns);
/* Days from 1970-01-01 to y-m-d (proleptic Gregorian), for readers of
 * calendar times (lib/ingest/prefix.c). */
int64_t qp__days_from_civil(int64_t y, int m, int d);

/* ---- options by id (lib/core/options.c) --------------------------------
 * Every row of the options table has an id: QP__OPT_<id> indexes it and
 * QP__OPT_TYPE_<id> is its type. The QP__CFG_* macros read an option by id
 * and check its type when compiling: a misspelt id or a getter of the wrong
 * type is a compile error, where qp_config_int(cfg, "pool.max_sise") is a
 * silent 0. */
#include "core/options_table.h"

typedef enum qp__opt {
#define QP__OPT_ID_(id, name, type, def, min, max, unit, doc) QP__OPT_##id,
  QP_OPTIONS_TABLE(QP__OPT_ID_)
#undef QP__OPT_ID_
  QP__OPT_COUNT_
} qp__opt;

enum {
#define QP__OPT_TYPE_(id, name, type, def, min, max, unit, doc) QP__OPT_TYPE_##id = type,
  QP_OPTIONS_TABLE(QP__OPT_TYPE_)
#undef QP__OPT_TYPE_
};

/* The table row of an id (its default_value is the default as text). */
const qp_option_info *qp__option(qp__opt id);
int64_t qp__config_int(const qp_config *cfg, qp__opt id);
double qp__config_double(const qp_config *cfg, qp__opt id);
bool qp__config_bool(const qp_config *cfg, qp__opt id);
const char *qp__config_string(const qp_config *cfg, qp__opt id);

#define QP__OPT_CHECK_(id, t) ((void)sizeof(char[(int)QP__OPT_TYPE_##id == (int)(t) ? 1 : -1]))
#define QP__CFG_INT(cfg, id) (QP__OPT_CHECK_(id, QP_OPT_INT), qp__config_int((cfg), QP__OPT_##id))
#define QP__CFG_DOUBLE(cfg, id) \
  (QP__OPT_CHECK_(id, QP_OPT_DOUBLE), qp__config_double((cfg), QP__OPT_##id))
#define QP__CFG_BOOL(cfg, id) (QP__OPT_CHECK_(id, QP_OPT_BOOL), qp__config_bool((cfg), QP__OPT_##id))
#define QP__CFG_STRING(cfg, id) \
  (QP__OPT_CHECK_(id, QP_OPT_STRING), qp__config_string((cfg), QP__OPT_##id))
/* An option's default, by id and type. */
#define QP__OPT_DEFAULT_INT(id) \
  (QP__OPT_CHECK_(id, QP_OPT_INT), strtoll(qp__option(QP__OPT_##id)->default_value, NULL, 10))
#define QP__OPT_DEFAULT_DOUBLE(id) \
  (QP__OPT_CHECK_(id, QP_OPT_DOUBLE), strtod(qp__option(QP__OPT_##id)->default_value, NULL))

/* ---- bounded text output (lib/core/text.c) ---------------------------
 * printf into buf[0..cap) that keeps counting past the end, so a caller
 * learns the size it needs (as snprintf does); what fits is NUL-terminated. */
typedef struct qp__outbuf {
  char *buf;
  size_t cap, len;
} qp__outbuf;
void qp__put(qp__outbuf *o, const char *fmt, ...) QP_PRINTF(2, 3);

/* ---- arithmetic -------------------------------------------------------- */
/* a / b rounded towards minus infinity (b > 0): time buckets of negative
 * times stay aligned. */
static inline int64_t qp__floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
  return q;
}

/* ---- text helpers (lib/core/text.c) ------------------------------------ */
/* Growable byte buffer on the hooks' allocator. */
typedef struct qp_buf {
  char *data;
  size_t len, cap;
  const qp_hooks *hooks;
  bool failed; /* sticky: an append ran out of memory */
} qp_buf;
void qp__buf_init(qp_buf *b, const qp_hooks *h);
void qp__buf_free(qp_buf *b);
bool qp__buf_reserve(qp_buf *b, size_t extra);
bool qp__buf_append(qp_buf *b, const void *p, size_t n);
bool qp__buf_puts(qp_buf *b, const char *s);
bool qp__buf_printf(qp_buf *b, const char *fmt, ...) QP_PRINTF(2, 3);
/* Returns the NUL-terminated contents (never NULL: "" when empty). */
const char *qp__buf_cstr(qp_buf *b);

/* Decimal text of v into buf (at least 21 bytes; no NUL is written), as
 * printf's %lld and SQLite's integer-to-text write it; returns the length. */
size_t qp__fmt_i64(int64_t v, char *buf);

/* Removes every password of a libpq DSN (keyword=value or URI), or of DSNs
 * quoted in a message, into buf, for messages and logs: qp_dsn_redact
 * (include/qprof/core.h) says exactly what. */
size_t qp__dsn_redact(const char *dsn, char *buf, size_t len);

/* ---- statement prefilter ------------------------------------------------ */
/* False when the statement sql[0..len) surely changes none of the settings
 * qp_stmt_info.identity names (the role, the session user,
 * application_name); true when it may (its first word is SET, RESET or
 * DISCARD, or it starts with a comment): then ask qp_sql_classify. A few
 * byte compares, for the recording hot paths of the shim and the pool. */
static inline bool qp__sql_may_set_identity(const char *sql, size_t len) {
  size_t i = 0;
  while (i < len && (sql[i] == ' ' || sql[i] == '\n' || sql[i] == '\t' || sql[i] == '\r')) i++;
  if (len - i < 3) return false;
  const char *s = sql + i;
  switch (s[0] | 0x20) {
  case 's': return (s[1] | 0x20) == 'e' && (s[2] | 0x20) == 't'; /* not SELECT */
  case 'r': return (s[1] | 0x20) == 'e' && (s[2] | 0x20) == 's'; /* not RELEASE, ROLLBACK */
  case 'd': return (s[1] | 0x20) == 'i';                          /* not DELETE, DROP, DO */
  case '/': return s[1] == '*'; /* a comment first: let the classifier skip it */
  case '-': return s[1] == '-';
  default: return false;
  }
}

#endif
