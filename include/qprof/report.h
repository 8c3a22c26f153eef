/*
 * The report model: what `qprof report` and `qprof diff` show, computed in
 * the library so that every renderer (the CLI's text, JSON, CSV and HTML,
 * and later log ingestion, charts and the fleet report) reads the same
 * numbers. Everything is read through the store (store.h); nothing here
 * prints.
 *
 * A qp_report is one window of one store, filtered and ranked: per query
 * (fingerprint, backend, database) the merged statistics of the buckets
 * that start in the window (a qp_query_summary), its share of the time, the
 * totals, and on request a query's time series and merged latency
 * histogram. The key can be other dimensions than the database
 * (qp_report_options.by: who ran it, the user, application and host), and
 * the rows can be filtered by those dimensions before they are merged. A qp_diff compares two reports (two stores, or two windows of
 * one) and applies the regression gate.
 *
 * Growth (docs/api.md, "Structs that grow"): structs the library hands out
 * by pointer (qp_query_summary, qp_report_totals, qp_report_point,
 * qp_report_bin, qp_report_group, qp_report_error_code, qp_diff_entry,
 * qp_diff_counts) only ever gain fields at
 * their end; callers read them through the pointer and never allocate one.
 * Option structs the caller allocates (qp_report_options,
 * qp_diff_options) start with a `size` field set by their _init function,
 * so a library newer than the caller's header reads only the fields the
 * caller knew and defaults the rest.
 *
 * Threads: a report or a diff is used by one thread at a time. Once built,
 * the accessors that only read it (qp_report_count, _query, _share,
 * _totals_get; qp_diff_count, _entry_at, _counts_get) may be called from
 * several threads at once. qp_report_histogram, qp_report_series(_set) and
 * the views (qp_report_rank, _groups, _errors) set the report's message,
 * and the series read the store the report was built from, which they need
 * to themselves (a store handle is used by one thread at a time).
 */
#ifndef QPROF_REPORT_H
#define QPROF_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qp_report qp_report;
typedef struct qp_diff qp_diff;

/* Ranking keys, descending; ties by total time, then fingerprint, backend
 * and database, so that a ranking is the same on every run. */
typedef enum qp_report_sort {
  QP_REPORT_SORT_TOTAL = 0,
  QP_REPORT_SORT_MEAN = 1,
  QP_REPORT_SORT_P95 = 2,
  QP_REPORT_SORT_P99 = 3,
  QP_REPORT_SORT_CALLS = 4,
  QP_REPORT_SORT_ROWS = 5,
  QP_REPORT_SORT_ERRORS = 6
} qp_report_sort;

/* "total", "mean", "p95", "p99", "calls", "rows", "errors"; NULL for an
 * unknown value. Thread-safe. */
QP_EXPORT const char *qp_report_sort_name(qp_report_sort sort);
/* The key named `name` (as above). QP_INVALID for any other name. */
QP_EXPORT qp_status qp_report_sort_parse(const char *name, qp_report_sort *out);

/* The dimensions of a statistics row besides its fingerprint and backend
 * (qp_query_summary: database, user, application, host): what a report's
 * rows can be keyed by (qp_report_options.by) and what qp_report_groups
 * groups by. */
typedef enum qp_report_group_by {
  QP_REPORT_BY_DATABASE = 0,    /* the database (with its backend) */
  QP_REPORT_BY_USER = 1,        /* the PostgreSQL role; the OS user for SQLite */
  QP_REPORT_BY_APPLICATION = 2, /* application_name, else the program's name */
  QP_REPORT_BY_HOST = 3         /* the recording machine, or the client host of a log */
} qp_report_group_by;

/* The bit of a dimension in qp_report_options.by. */
#define QP_REPORT_KEY(by) (1u << (unsigned)(by))
/* Every dimension; the default key (the rows of earlier versions: per
 * database); no dimension at all (fingerprint and backend only: a
 * qp_report_options.by of 0 means the default, so "none" has a bit). */
#define QP_REPORT_KEY_ALL 15u
#define QP_REPORT_KEY_DEFAULT QP_REPORT_KEY(QP_REPORT_BY_DATABASE)
#define QP_REPORT_KEY_NONE 16u

/* "database", "user", "application", "host"; NULL for an unknown value.
 * Thread-safe. */
QP_EXPORT const char *qp_report_group_by_name(qp_report_group_by by);
/* The dimension named `name` (as above). QP_INVALID for any other name or
 * NULL arguments. Thread-safe. */
QP_EXPORT qp_status qp_report_group_by_parse(const char *name, qp_report_group_by *out);

/*
 * Parses a key as a command line writes it: dimension names separated by
 * commas ("host,application"; order and repeats do not matter), or "none"
 * (fingerprint and backend only: QP_REPORT_KEY_NONE), into QP_REPORT_KEY
 * bits (*out), for qp_report_options.by. Errors:
 * QP_INVALID (an empty list or part, an unknown name: errbuf names it and
 * the names there are; NULL list or out). errbuf may be NULL. Thread-safe.
 */
QP_EXPORT qp_status qp_report_by_parse(const char *list, unsigned *out, char *errbuf,
                                       size_t errlen);

typedef struct qp_report_options {
  size_t size;           /* sizeof(qp_report_options): set by qp_report_options_init */
  /* The window: buckets that start in [since_ns, until_ns) (wall clock, ns
   * since the epoch); INT64_MIN / INT64_MAX for no bound. */
  int64_t since_ns, until_ns;
  /* PCRE2 patterns on the normalized text, or NULL: keep only the queries
   * that `match`, leave out those that match `exclude`. Borrowed for the
   * call. Case-insensitive unless case_sensitive (stored text is lower
   * case, so `UPDATE` must find `update`). */
  const char *match, *exclude;
  bool case_sensitive;
  uint64_t min_calls;    /* keep only queries called at least this often in the window */
  qp_report_sort sort;
  const qp_hooks *hooks; /* allocator for the report (copied; NULL: malloc) */
  /* Appended (read only when `size` covers them; docs/api.md "Structs that
   * grow"). The key of the report's rows besides fingerprint and backend:
   * QP_REPORT_KEY bits; 0 (the default) is QP_REPORT_KEY_DEFAULT, the
   * database; QP_REPORT_KEY_NONE: fingerprint and backend only (with other
   * bits it adds nothing). Stored rows that differ only in
   * dimensions not in the key are merged into one row (statistics and
   * histograms merge exactly); in the report's summaries those dimensions
   * are NULL. */
  unsigned by;
  /* Filters on the dimensions, or NULL for none; borrowed for the call
   * (qp_report_new copies them). A stored row is kept when every filter
   * given matches its value; the filters apply to the stored rows, before
   * they are merged, so a filter on a dimension not in the key still
   * selects exactly. Each is written as:
   *   VALUE      exactly VALUE (case-sensitive); "" is "not recorded"
   *   /REGEX/    PCRE2 search in the value (case-sensitive): /^web-/
   *   /REGEX/i   the same, case-insensitive
   *   =VALUE     exactly VALUE, for a value that itself looks like /.../
   * (qp_report_dim_filter_parse says how a value reads). */
  const char *database, *user, *application, *host;
} qp_report_options;

/* Defaults: all time, no filters, sorted by total time, keyed by database,
 * malloc. Never fails. */
QP_EXPORT void qp_report_options_init(qp_report_options *o);

/*
 * How a dimension filter (qp_report_options.user, ...) reads: *regex true
 * and the pattern in [*start, *start + *len) with *caseless for /REGEX/
 * and /REGEX/i, else *regex false and the exact value there. `f` is not
 * copied: the range points into it. QP_INVALID for NULL arguments.
 * Thread-safe.
 */
QP_EXPORT qp_status qp_report_dim_filter_parse(const char *f, bool *regex, bool *caseless,
                                               const char **start, size_t *len);

/*
 * Checks options without reading a store (a CLI checks its arguments before
 * it opens anything). Errors: QP_PATTERN (match, exclude or a dimension
 * filter's /REGEX/ does not compile: errbuf starts with the option's name,
 * "match", "exclude", "user", "application", "host" or "database", and
 * names the pattern, the offset and why), QP_INVALID (since >= until,
 * unknown sort, bits in `by` that name no dimension, o NULL or o->size too
 * small), QP_NOMEM. errbuf may be NULL. Thread-safe.
 */
QP_EXPORT qp_status qp_report_check(const qp_report_options *o, char *errbuf, size_t errlen);

/*
 * Builds the report of `store` for the options: one scan of the window
 * (store.h: roll-ups plus edge buckets), the filters, totals and shares,
 * the ranking. `store` is borrowed: it must stay open while the report
 * lives (qp_report_series reads it again); `o` is only read during the call.
 * Errors: those of qp_report_check, QP_IO (the store could not be read),
 * QP_NOMEM. On error *out is NULL and errbuf (may be NULL) says why.
 */
QP_EXPORT qp_status qp_report_new(qp_report **out, qp_store *store, const qp_report_options *o,
                                  char *errbuf, size_t errlen);

/* Frees the report and everything it handed out; NULL is a no-op. Diffs
 * built on it must be freed first. */
QP_EXPORT void qp_report_free(qp_report *r);

/* Message about the last failed call on `r`; "" after a success. Owned by `r`. */
QP_EXPORT const char *qp_report_errmsg(const qp_report *r);

/* What the report covers: the window, what the queries that pass the
 * filters add up to, the ranking. Owned
 * by the report, valid until it is freed. */
typedef struct qp_report_totals {
  const char *store;          /* the store's location, password removed */
  size_t queries;             /* that pass the filters */
  size_t queries_in_window;   /* before the filters */
  uint64_t calls, errors;
  uint64_t total_ns;
  /* The window asked for (INT64_MIN / INT64_MAX when open). */
  int64_t since_ns, until_ns;
  /* The time the data covers: end times of the first and last execution of
   * the queries that pass the filters; 0 when there are none. */
  int64_t first_seen_ns, last_seen_ns;
  /* Buckets count when they *start* in the window. When --since falls
   * inside a stored bucket that also holds later executions, that bucket is
   * left out: since_rounded is true and since_bucket_ns is its start. When
   * --until falls inside a bucket that also holds later executions, that
   * bucket is counted whole: until_rounded, until_bucket_ns likewise. */
  bool since_rounded, until_rounded;
  int64_t since_bucket_ns, until_bucket_ns;
  qp_report_sort sort; /* the ranking */
  /* Statements that ran under the LD_PRELOAD shim but could not be
   * recorded because its segment was full ("dropped, segment full";
   * docs/shim.md), in the buckets that start in the window (a harvest's
   * count goes to the minute it ran in). They have no text, so they belong
   * to no query: the filters do not apply to them and they are not in
   * `calls`. */
  uint64_t dropped;
  /* Appended: the dimensions of the rows' key as QP_REPORT_KEY bits (0:
   * none, fingerprint and backend only; QP_REPORT_KEY_DEFAULT without
   * qp_report_options.by) and the dimension filters as given (NULL: none),
   * owned by the report. queries_in_window
   * counts the rows of this key before any filter, dimension filters
   * included. */
  unsigned by;
  const char *filter_database, *filter_user, *filter_application, *filter_host;
} qp_report_totals;

/* Never NULL for a non-NULL report. */
QP_EXPORT const qp_report_totals *qp_report_totals_get(const qp_report *r);

/* The number of queries that pass the filters. */
QP_EXPORT size_t qp_report_count(const qp_report *r);

/* The i-th query of the ranking (0-based), or NULL when i is out of range.
 * Owned by the report (strings too), valid until it is freed. Its
 * dimensions (database, user, application, host) are those of the report's
 * key, never NULL ("" when not recorded); those not in the key are NULL. */
QP_EXPORT const qp_query_summary *qp_report_query(const qp_report *r, size_t i);

/* The i-th query's share of totals.total_ns, 0..1 (0 when i is out of range
 * or nothing took time). */
QP_EXPORT double qp_report_share(const qp_report *r, size_t i);

/* A query's cache hits over every time it was asked for: cache_hits /
 * (cache_hits + calls), 0..1 (0 when it was never asked). Thread-safe. */
QP_EXPORT double qp_query_cache_hit_rate(const qp_query_summary *q);
/* Time the cache saved a query: each hit would have cost the mean of its
 * calls on the database in the same window, less what serving the hits
 * took: cache_hits * mean_ns - cache_hit_ns, at least 0; 0 when nothing
 * ran on the database (no mean to go by). Thread-safe. */
QP_EXPORT double qp_query_cache_saved_ns(const qp_query_summary *q);

/* Every query of the report at once, where a call takes an index. */
#define QP_REPORT_ALL SIZE_MAX

/* One occupied bin of a latency histogram: the durations in (lo_ns, hi_ns]. */
typedef struct qp_report_bin {
  double lo_ns, hi_ns;
  uint64_t count;
} qp_report_bin;
typedef int (*qp_report_bin_fn)(const qp_report_bin *bin, void *ud);

/*
 * The merged latency histogram of query i over the window (QP_REPORT_ALL:
 * of every query of the report), one call of `fn` per occupied bin in
 * ascending order (the bins are those of the store: each about 4% wide, so
 * a bin's midpoint is within 2% of every duration in it). `fn` returns
 * non-zero to stop. The bin is owned by the report and valid during the
 * call. Errors: QP_INVALID (i out of range, NULL arguments), QP_NOMEM
 * (QP_REPORT_ALL only).
 */
QP_EXPORT qp_status qp_report_histogram(qp_report *r, size_t i, qp_report_bin_fn fn, void *ud);

/* One point of a time series: the executions in buckets that start in
 * [start_ns, start_ns + step). */
typedef struct qp_report_point {
  int64_t start_ns;
  uint64_t calls, errors;
  int64_t rows;
  uint64_t total_ns, min_ns, max_ns;
  double mean_ns;
  double p50_ns, p95_ns, p99_ns; /* within 2%, as in qp_query_summary */
} qp_report_point;
typedef int (*qp_report_point_fn)(const qp_report_point *p, void *ud);

/*
 * The time series of query i (QP_REPORT_ALL: of every query of the report
 * together) over the report's window, in steps of `step_s` seconds aligned
 * to the epoch (UTC), or with step_s 0 one point per stored bucket. Calls
 * `fn` once per point that has executions, in time order (a gap in the data
 * is a gap in the calls); `fn` returns non-zero to stop. Whole hours and
 * days are read from the store's roll-ups when the window allows it. The
 * point is owned by the report and valid during the call.
 * Errors: QP_INVALID (i out of range, step_s < 0, NULL arguments), QP_IO,
 * QP_NOMEM; the message is on the report.
 */
QP_EXPORT qp_status qp_report_series(qp_report *r, size_t i, int64_t step_s,
                                     qp_report_point_fn fn, void *ud);

/* Called once per point by qp_report_series_set: `which` is the position in
 * idx of the query the point belongs to, or n for every query of the report
 * together. Returns non-zero to stop. */
typedef int (*qp_report_set_fn)(const qp_report_point *p, size_t which, void *ud);

/*
 * The time series of several queries and of every query of the report
 * together, from one scan of the store (qp_report_series reads the window
 * once per call): the points of idx[0]'s series in time order, then those of
 * idx[1], ..., then (which == n) those of all queries together; step_s as in
 * qp_report_series. An index given twice has its series given twice.
 * Errors: QP_INVALID (NULL r or fn, idx NULL with n > 0, an index out of
 * range, step_s < 0), QP_IO, QP_NOMEM; the message is on the report.
 */
QP_EXPORT qp_status qp_report_series_set(qp_report *r, const size_t *idx, size_t n, int64_t step_s,
                                         qp_report_set_fn fn, void *ud);

/* ---- views of a report ------------------------------------------------------ */

/*
 * The report's queries ranked by another key, without building the report
 * again: idx[0..*out_n) gets the indices (for qp_report_query) of the first
 * min(n, count) queries in the order `key` would have ranked them (ties as
 * in the ranking). idx is the caller's, n entries long. Errors: QP_INVALID
 * (r, out_n NULL, idx NULL with n > 0, unknown key), QP_NOMEM; the message
 * is on the report.
 */
QP_EXPORT qp_status qp_report_rank(qp_report *r, qp_report_sort key, size_t *idx, size_t n,
                                   size_t *out_n);


/* One group of queries: what its queries add up to over the window. */
typedef struct qp_report_group {
  const char *key;     /* the database, user, application or host ("" when not recorded) */
  /* "postgres" or "sqlite". Database groups are per backend and database;
   * the other groupings are per value only: "" when the group holds
   * queries of both backends. */
  const char *backend;
  size_t queries;      /* distinct queries (fingerprint, backend) in the group */
  uint64_t calls, errors;
  int64_t rows;
  uint64_t total_ns, min_ns, max_ns;
  double share;        /* of the report's total time, 0..1 */
  double mean_ns;
  double p50_ns, p95_ns, p99_ns; /* of the merged histograms: within 2% */
} qp_report_group;
typedef int (*qp_report_group_fn)(const qp_report_group *g, void *ud);

/*
 * The report's queries grouped `by`, one call of `fn` per group, by total
 * time descending (ties by backend, then key); `fn` returns non-zero to
 * stop. The groups add up to the report's totals. The group and its
 * strings are owned by the report and valid during the call. Errors:
 * QP_INVALID (NULL r or fn, unknown grouping, or `by` not in the report's
 * key, qp_report_options.by: its rows have merged that dimension away),
 * QP_NOMEM; the message is on the report.
 */
QP_EXPORT qp_status qp_report_groups(qp_report *r, qp_report_group_by by, qp_report_group_fn fn,
                                     void *ud);

/* The errors of one code over the report's queries. */
typedef struct qp_report_error_code {
  const char *code;  /* SQLSTATE or SQLite result code name, as recorded */
  uint64_t errors;   /* of this code */
  double share;      /* of totals.errors, 0..1 */
  size_t queries;    /* how many queries had it */
  size_t top_query;  /* index (qp_report_query) of the query with the most of it; ties: the first */
  uint64_t top_errors; /* how many that query had */
} qp_report_error_code;
typedef int (*qp_report_error_fn)(const qp_report_error_code *c, void *ud);

/*
 * The errors grouped by code: one call of `fn` per code, most errors first
 * (ties by code); `fn` returns non-zero to stop. Owned by the report, valid
 * during the call. Errors: QP_INVALID (NULL r or fn), QP_NOMEM; the message
 * is on the report.
 */
QP_EXPORT qp_status qp_report_errors(qp_report *r, qp_report_error_fn fn, void *ud);

/* ---- comparing two reports ----------------------------------------------- */

typedef enum qp_diff_status {
  QP_DIFF_UNCHANGED = 0, /* same calls, total time and p95 on both sides */
  QP_DIFF_CHANGED = 1,
  QP_DIFF_NEW = 2,       /* only in the new report */
  QP_DIFF_VANISHED = 3   /* only in the base report */
} qp_diff_status;

/* "unchanged", "changed", "new", "vanished"; NULL for an unknown value. */
QP_EXPORT const char *qp_diff_status_name(qp_diff_status st);

typedef struct qp_diff_options {
  size_t size;           /* sizeof(qp_diff_options): set by qp_diff_options_init */
  /* The gate: a query that got slower at p95 by more than this many percent
   * is a regression; NaN (the default) for no gate. */
  double fail_above_pct;
  /* Only queries with at least this many calls on both sides can be
   * regressions (default 1). */
  uint64_t min_calls;
  const qp_hooks *hooks; /* copied; NULL: malloc */
} qp_diff_options;

/* Defaults: no gate, min_calls 1, malloc. Never fails. */
QP_EXPORT void qp_diff_options_init(qp_diff_options *o);

typedef struct qp_diff_entry {
  const qp_query_summary *base, *cur; /* owned by the reports; NULL on the side it is absent */
  qp_diff_status status;
  /* (new - base) / base * 100; NaN for new and vanished queries and when
   * the base is 0 (but 0 when both are 0). */
  double calls_pct, mean_pct, p95_pct;
  bool regression;
} qp_diff_entry;

typedef struct qp_diff_counts {
  size_t unchanged, changed, added, vanished, regressions;
} qp_diff_counts;

/*
 * Joins two reports per query: per row key (fingerprint, backend and the
 * dimensions of qp_report_options.by, the same on both sides). Two reports
 * of one store with different dimension filters compare, say, two hosts
 * (base host=a, new host=b, keyed by database). Both reports are borrowed
 * and must outlive the diff. Entries are ordered: new queries, then by p95
 * change descending (queries whose change is not defined count as 0), then
 * vanished ones; ties by fingerprint, backend and the key's dimensions. A
 * report diffed with itself gives every query unchanged with changes of
 * exactly 0.
 * Errors: QP_INVALID (NULL arguments, o->size too small, fail_above_pct
 * negative, reports keyed by different dimensions), QP_NOMEM; errbuf (may
 * be NULL) says why.
 */
QP_EXPORT qp_status qp_diff_new(qp_diff **out, const qp_report *base, const qp_report *cur,
                                const qp_diff_options *o, char *errbuf, size_t errlen);
/* NULL is a no-op. */
QP_EXPORT void qp_diff_free(qp_diff *d);
QP_EXPORT size_t qp_diff_count(const qp_diff *d);
/* The i-th entry, or NULL out of range. Owned by the diff. */
QP_EXPORT const qp_diff_entry *qp_diff_entry_at(const qp_diff *d, size_t i);
/* Never NULL for a non-NULL diff. Owned by the diff. */
QP_EXPORT const qp_diff_counts *qp_diff_counts_get(const qp_diff *d);

/* ---- times as reports write and read them --------------------------------- */

/* Parses ISO 8601 ("2026-11-22", "2026-11-22T10:00Z", "...+02:00"), a Unix
 * time ("@1700000000") or a time relative to now ("-15m", "-2h", "-1d",
 * "-1w", "now") into wall-clock ns. QP_SYNTAX on anything else. Thread-safe. */
QP_EXPORT qp_status qp_report_parse_time(const char *text, int64_t *out_ns);
/* ISO 8601 UTC with milliseconds ("2026-11-22T00:30:42.123Z") into buf
 * (at least 32 bytes); returns buf. Thread-safe. */
QP_EXPORT const char *qp_report_format_time(int64_t wall_ns, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
