/*
 * Statistics of one fingerprint in one time bucket, and the log-bucket
 * latency histogram behind its percentiles. Private to the library: the
 * profile (lib/stats/profile.c) accumulates them, the store (lib/store/)
 * writes and reads them.
 *
 * Everything here merges exactly: counts, sums, min/max and histogram counts
 * add up; the variance uses Chan et al.'s pairwise combination of
 * (n, mean, M2), which is exact up to floating-point rounding and stays stable
 * for large values with a small spread.
 */
#ifndef QPROF_STATS_INT_H
#define QPROF_STATS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "internal.h"
#include "qprof/profile.h"
#include "sql/memo.h"

/* ---- histogram -------------------------------------------------------------
 * DDSketch-style: a value v (nanoseconds, v >= 1) falls into bucket
 * i = ceil(log_gamma(v)), which covers (gamma^(i-1), gamma^i]; it is read back
 * as 2 gamma^i / (gamma + 1), which is within alpha = (gamma - 1)/(gamma + 1)
 * of every value in the bucket. gamma = 1.04 gives alpha = 1.96%. */
#define QP_HIST_GAMMA 1.04
#define QP_HIST_ALPHA ((QP_HIST_GAMMA - 1.0) / (QP_HIST_GAMMA + 1.0))
/* Index of 2^64 ns is 1132; anything above that is a corrupt input. */
#define QP_HIST_MAX_INDEX 1200
#define QP_HIST_ENCODING_VERSION 1

typedef struct qp_hist {
  int32_t lo;       /* index of counts[0] */
  uint32_t n;       /* allocated counts */
  uint64_t *counts; /* counts[k] is bucket lo + k; NULL when empty */
} qp_hist;

/* The bucket of a value: ceil(log_gamma(v)), 0 for v <= 1. qp__hist_index
 * reads it from tables built from qp__hist_index_ref (the definition, with
 * log()) and returns exactly the same. Thread-safe. */
int32_t qp__hist_index(uint64_t v_ns);
int32_t qp__hist_index_ref(uint64_t v_ns);
/* The value bucket `index` stands for. */
double qp__hist_value(int32_t index);
void qp__hist_init(qp_hist *h);
void qp__hist_free(qp_hist *h, const qp_hooks *hooks);
/* Adds `count` observations to bucket `index`; widens the range when needed
 * (the only allocation). Returns false, unchanged, when out of memory. */
bool qp__hist_add_index(qp_hist *h, const qp_hooks *hooks, int32_t index, uint64_t count);
static inline bool qp__hist_add(qp_hist *h, const qp_hooks *hooks, uint64_t v_ns) {
  return qp__hist_add_index(h, hooks, qp__hist_index(v_ns), 1);
}
/* dst += src. On out-of-memory returns false and leaves dst unchanged. */
bool qp__hist_merge(qp_hist *dst, const qp_hist *src, const qp_hooks *hooks);
uint64_t qp__hist_total(const qp_hist *h);
/* The q-quantile (0 <= q <= 1) of the observations, by the nearest rank
 * ceil(q * N) - 1 (0-based) of the sorted values, within QP_HIST_ALPHA
 * relative error; clamped to [min_ns, max_ns]. 0 when empty. */
double qp__hist_quantile(const qp_hist *h, double q, double min_ns, double max_ns);
/* qp__hist_quantile for q[0..n) into out[0..n), in one walk of the counts
 * while the q ascend (as p50, p90, ..., p999 do). */
void qp__hist_quantiles(const qp_hist *h, const double *q, size_t n, double min_ns,
                        double max_ns, double *out);
/* Occupied range [first, last] of indexes; false when empty. */
bool qp__hist_range(const qp_hist *h, int32_t *first, int32_t *last);
/* Appends the compact encoding (version, occupied range, varint counts). */
bool qp__hist_encode(const qp_hist *h, qp_buf *out);
/* Adds an encoded histogram to *h (merging). Returns QP_SYNTAX on a malformed
 * blob (h unchanged), QP_NOMEM, or QP_OK. An empty blob is an empty histogram. */
qp_status qp__hist_decode_add(qp_hist *h, const qp_hooks *hooks, const void *blob, size_t len);

/* ---- error codes -------------------------------------------------------- */
#define QP_CODE_MAX 40
typedef struct qp_code_count {
  char code[QP_CODE_MAX];
  uint64_t count;
} qp_code_count;
typedef struct qp_codes {
  qp_code_count *v;
  uint32_t n, cap;
} qp_codes;

void qp__codes_free(qp_codes *c, const qp_hooks *hooks);
/* Adds `count` to `code` (truncated to QP_CODE_MAX-1 bytes; characters other
 * than [A-Za-z0-9_] become '_'). False on out-of-memory (unchanged). */
bool qp__codes_add(qp_codes *c, const qp_hooks *hooks, const char *code, uint64_t count);
bool qp__codes_merge(qp_codes *dst, const qp_codes *src, const qp_hooks *hooks);
/* "CODE:count,CODE:count" sorted by code; "" when none. */
bool qp__codes_encode(const qp_codes *c, qp_buf *out);
/* Adds the counts of an encoded list. QP_SYNTAX on malformed text. */
qp_status qp__codes_decode_add(qp_codes *c, const qp_hooks *hooks, const char *text, size_t len);

/* ---- moments and the whole record -------------------------------------- */
typedef struct qp_stats {
  uint64_t calls;
  uint64_t errors;
  int64_t rows;      /* sum of the rows of events that knew them */
  uint64_t total_ns;
  uint64_t min_ns, max_ns;
  /* Welford's running mean is kept as shift + dmean, with shift an integer
   * near the values (the first one): at 1e12 ns a double mean alone loses
   * the digits a small spread lives in. */
  uint64_t shift;
  double dmean;
  double m2;         /* sum of squared deviations from the mean */
  int64_t first_ns, last_ns; /* wall-clock end times of the first and last event */
  qp_hist hist;
  qp_codes codes;
  /* Statements a result cache answered (qp_query_event.cache_hit) and the
   * time serving them took: apart from everything above, which counts only
   * statements that ran on the database. A record may have hits and no
   * calls (then min_ns is UINT64_MAX and the histogram empty). */
  uint64_t cache_hits, cache_hit_ns;
} qp_stats;

void qp__stats_init(qp_stats *s);
void qp__stats_free(qp_stats *s, const qp_hooks *hooks);
/* Adds one event. The histogram first: on out-of-memory nothing changes and
 * false is returned. */
bool qp__stats_add(qp_stats *s, const qp_hooks *hooks, uint64_t duration_ns, int64_t rows,
                   const char *error, int64_t wall_ns);
/* Adds one cache hit (never fails). */
void qp__stats_hit(qp_stats *s, uint64_t duration_ns, int64_t wall_ns);
/* dst += src (Chan et al. for the variance). False on out-of-memory, dst unchanged. */
bool qp__stats_merge(qp_stats *dst, const qp_stats *src, const qp_hooks *hooks);
/* Sets shift and dmean from the exact totals (for rows read from a store). */
void qp__stats_set_mean(qp_stats *s);
double qp__stats_mean(const qp_stats *s);
double qp__stats_stddev(const qp_stats *s);
/* The q-quantile of the durations, from the histogram bounded by the exact
 * min and max: the one way every summary (qp_query_summary,
 * qp_report_point) derives its percentiles. */
double qp__stats_quantile(const qp_stats *s, double q);

/* ---- profile entries (what a flush hands to the store) ------------------ */
typedef struct qp_entry {
  struct qp_entry *next;
  uint64_t hash;
  uint64_t fingerprint;
  int64_t bucket;    /* start of the time bucket, seconds since the epoch */
  qp_backend backend;
  bool ignored;      /* matched the ignore pattern: kept only to skip it fast */
  uint32_t stripe;   /* where it lives, to put it back after a failed flush */
  /* The dimensions of the key: interned (qp_intern) by the profile and the
   * store's aggregation, borrowed in rows a store hands out; "" when the
   * recorder did not know them. Never NULL in an entry. */
  char *database;    /* database name or SQLite file path */
  char *user;        /* PostgreSQL role; the OS user for SQLite */
  char *application; /* application_name, else the program name */
  char *host;        /* the recording machine (option host / QPROF_HOST), or the client host of a log */
  char *query;       /* owned normalized text */
  char *sample;      /* owned redacted sample, or NULL */
  uint64_t sample_ns;
  qp_stats st;
} qp_entry;

/* ---- interned strings ------------------------------------------------------
 * Each distinct value of a key dimension is kept once (lib/stats/intern.c).
 * Not thread-safe: the owner locks. */
#define QP_DIM_MAX 255u /* bytes of user, application and host kept (cut beyond) */
typedef struct qp_intern {
  const qp_hooks *hooks;
  char **slots; /* power-of-two open addressing; NULL empty */
  size_t cap, count, bytes;
  size_t max_bytes; /* 0: no bound */
} qp_intern;
/* What qp__intern returns for a new value once max_bytes are held. */
extern const char qp__intern_other[];
void qp__intern_init(qp_intern *t, const qp_hooks *h, size_t max_bytes);
/* The one copy of s[0..len) (NUL-terminated; "" for len 0, static), valid
 * until qp__intern_free; qp__intern_other when the bound is reached; NULL
 * when out of memory. */
const char *qp__intern(qp_intern *t, const char *s, size_t len);
void qp__intern_free(qp_intern *t);

/* The name of `uid` (getpwuid_r; may load NSS modules: never in the shim),
 * else the uid in decimal, cut at QP_DIM_MAX bytes, into out[0..cap). */
void qp__uid_name(uid_t uid, char *out, size_t cap);

/* The dimensions of a key, as lengths and bytes (not NUL-terminated). */
typedef struct qp_dims {
  const char *db, *user, *app, *host;
  size_t db_len, user_len, app_len, host_len;
} qp_dims;

/* ---- what the collector and the shim need of the profile ----------------- */
/* Adds the statistics `st` (already aggregated: a harvested segment's gain)
 * to the key (fp, bucket, backend, dims) with normalized text `query`,
 * as if each of its events had been recorded; `sample` (NULL: none) is an
 * already redacted sample of the execution that took sample_ns. The ignore
 * pattern applies. QP_NOMEM leaves the profile without it. Thread-safe. */
qp_status qp__profile_merge(qp_profile *p, uint64_t fp, int64_t bucket, qp_backend be,
                            const qp_dims *dims, const char *query, size_t query_len,
                            const qp_stats *st, const char *sample, size_t sample_len,
                            uint64_t sample_ns);
/* qp_profile_flush, also adding `dropped` statements (recorded nowhere: a
 * shim's full segment) to the store's row of the bucket starting at
 * `drop_bucket` (s), in the same transaction as the entries. On error the
 * entries stay in the profile and nothing of `dropped` is in the store. */
qp_status qp__profile_flush_dropped(qp_profile *p, qp_store *store, int64_t drop_bucket,
                                    uint64_t dropped);
/* The redacted sample of a statement of backend `be` (the default set in
 * that dialect, then the profile's redaction rules), to be freed with
 * qp__free(qp__profile_hooks(p), ...); NULL on out of memory. */
char *qp__profile_redact(qp_profile *p, qp_backend be, const char *sql, size_t len);
const qp_hooks *qp__profile_hooks(const qp_profile *p);
/* qp_profile_normalize with the spans of the literals it replaced
 * (qp__normalize_spans, sql/memo.h). Same errors. */
qp_status qp__profile_normalize_spans(const qp_profile *p, qp_backend backend, const char *sql,
                                      size_t len, char *out, size_t cap, size_t *out_len,
                                      uint64_t *fingerprint, qp_lit_span *spans, size_t max,
                                      size_t *nspans);
/* Whether a flush of `p` failed in doubt and holds its entries until the
 * store it went to can tell whether they committed (the next flush into
 * that store handle settles it). */
bool qp__profile_in_doubt(qp_profile *p);
/* Settles a flush of `p` left in doubt without writing anything else:
 * the store tells whether it committed (*committed); if it did not, its
 * entries go back into the profile for the next flush. QP_OK with
 * *committed false when nothing was in doubt; an error (QP_UNAVAILABLE)
 * leaves it in doubt. Errors as qp_profile_flush. */
qp_status qp__profile_settle(qp_profile *p, qp_store *store, bool *committed);
/* Whether the profile keeps samples (so that a recorder builds the sample
 * text only when it will be read: lib/ingest/events.c). */
bool qp__profile_sampling(const qp_profile *p);
/* Whether normalized text matches the profile's ignore pattern. */
bool qp__profile_ignores(qp_profile *p, const char *norm, size_t len);

#endif
