/*
 * The profile store: where flushed statistics live. An SQLite file by default
 * (one file, nothing to start, many processes may write it at once); a
 * PostgreSQL database (a postgresql:// or postgres:// URI, or keyword=value
 * pairs starting with a libpq keyword such as host= or dbname=) as the
 * central store for a fleet, in a schema named "qprof". docs/profiles.md
 * describes both.
 */
#ifndef QPROF_STORE_H
#define QPROF_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qp_store qp_store;

typedef enum qp_store_mode {
  QP_STORE_READ = 0,  /* open an existing store read-only; never creates or migrates */
  QP_STORE_WRITE = 1  /* open or create (SQLite file mode 0600), migrate older schemas */
} qp_store_mode;

/*
 * Opens the store at `location`: a file path (SQLite) or a PostgreSQL DSN.
 * `location` is copied; `hooks` copied (may be NULL).
 * Errors: QP_NOTSTORE (the file exists but is not a qprof store: it is never
 * modified), QP_SCHEMA (written by a newer qprof), QP_IO (cannot open or
 * create), QP_NOTFOUND (READ mode and no such store), QP_UNAVAILABLE (the
 * PostgreSQL store cannot be reached), QP_NOMEM. On error *out is NULL and
 * errbuf (may be NULL) holds a message naming the location (with any
 * password removed).
 * Thread-safety: a store handle is used by one thread at a time.
 */
QP_EXPORT qp_status qp_store_open(qp_store **out, const char *location, qp_store_mode mode,
                                  const qp_hooks *hooks, char *errbuf, size_t errlen);

/*
 * Whether `location` names a PostgreSQL store (a postgresql:// or
 * postgres:// URI, or libpq keyword=value pairs starting with a libpq
 * keyword such as host=, dbname=, service=) rather than an SQLite file
 * path: exactly what qp_store_open decides. NULL is false. Thread-safe.
 */
QP_EXPORT bool qp_store_is_dsn(const char *location);

/* Closes the store; NULL is a no-op. */
QP_EXPORT void qp_store_close(qp_store *s);

/* Message about the last failed call on `s`; "" after a success. Owned by `s`. */
QP_EXPORT const char *qp_store_errmsg(const qp_store *s);

/* The location the store was opened with, with any password removed. Owned by `s`. */
QP_EXPORT const char *qp_store_location(const qp_store *s);

/* The store schema version this qprof writes (older stores are migrated to it
 * when opened with QP_STORE_WRITE). */
QP_EXPORT int qp_store_schema_version(void);

/*
 * Statistics of one query (fingerprint, backend, database) over a time
 * window, as qp_store_summarize hands them out. Times are nanoseconds;
 * wall-clock times are since the Unix epoch (UTC). Every pointer is owned by
 * the store and valid only during the callback.
 */
typedef struct qp_query_summary {
  uint64_t fingerprint;
  const char *backend;     /* "postgres" or "sqlite" */
  const char *database;    /* "" when the recorder did not know it */
  const char *query;       /* normalized text */
  const char *sample;      /* redacted sample statement, or NULL (only with opt-in sampling) */
  const char *error_codes; /* "CODE:count,CODE:count", sorted by code; "" when no errors */
  uint64_t calls;
  uint64_t errors;
  int64_t rows;            /* rows returned or affected, summed over events that reported them */
  uint64_t total_ns, min_ns, max_ns;
  double mean_ns;
  double stddev_ns;        /* population standard deviation */
  /* Percentiles from the log-bucket histogram: within 2% (relative) of the
   * exact value at rank floor(q * (calls - 1)) of the sorted durations. */
  double p50_ns, p90_ns, p95_ns, p99_ns, p999_ns;
  int64_t first_seen_ns, last_seen_ns;
  /* Appended: statements a result cache answered (include/qprof/cache.h)
   * and the time serving them took. They are not calls: everything above
   * counts only statements that ran on the database, so a query answered
   * only from the cache has calls 0 (and min_ns, the mean and percentiles
   * 0). qp_query_cache_hit_rate and qp_query_cache_saved_ns (report.h)
   * derive the rest. */
  uint64_t cache_hits, cache_hit_ns;
  /* Appended: who ran it (see qp_query_event): the PostgreSQL role (the OS
   * user for SQLite), the application and the recording host; "" when not
   * recorded (a store older than schema version 6 has none). */
  const char *user, *application, *host;
} qp_query_summary;

/* Called once per query; return non-zero to stop (qp_store_summarize then
 * returns QP_OK). */
typedef int (*qp_summary_fn)(const qp_query_summary *q, void *ud);

/*
 * Merges the statistics of the time buckets that start in [since_ns, until_ns)
 * (wall clock; INT64_MIN / INT64_MAX for no bound) per query and calls `fn`
 * for each, in no particular order. Histograms merge exactly, so percentiles
 * are those of the queries in the window. Windows are answered from 10-minute,
 * hourly, 6-hour, daily and all-time roll-ups kept at flush time, plus single
 * buckets at the edges (a store migrated from schema version 9 uses the
 * 10-minute and 6-hour ones only from the point its migration recorded on).
 * Errors: QP_INVALID, QP_IO (read failed), QP_NOMEM; `s` keeps the
 * message.
 */
QP_EXPORT qp_status qp_store_summarize(qp_store *s, int64_t since_ns, int64_t until_ns,
                                       qp_summary_fn fn, void *ud);

/* ---- retention ------------------------------------------------------------ */

/* The finest roll-up qp_store_prune deletes, with everything finer. */
typedef enum qp_prune_level {
  QP_PRUNE_MINUTE = 0, /* the buckets as recorded (a minute unless bucket_s says otherwise) */
  QP_PRUNE_HOUR = 1,   /* those, the 10-minute and the hourly roll-ups */
  QP_PRUNE_DAY = 2     /* those, the 6-hour and the daily roll-ups: only the all-time totals
                        * remain */
} qp_prune_level;

/* Flags of qp_store_prune. */
enum {
  QP_PRUNE_DRY_RUN = 1u << 0, /* count what would be deleted; change nothing */
  QP_PRUNE_VACUUM = 1u << 1   /* afterwards give the freed space back: SQLite VACUUM (rewrites
                               * the file; needs as much free disk again), PostgreSQL plain
                               * VACUUM of the two tables */
};

/* What qp_store_prune deleted (or, with QP_PRUNE_DRY_RUN, would delete).
 * Fields may be appended in later versions. */
typedef struct qp_prune_result {
  int64_t cutoff_ns;  /* rows of the pruned levels whose bucket starts before this went */
  uint64_t rows[3];   /* statistics rows, indexed by qp_prune_level: recorded buckets;
                       * 10-minute and hourly; 6-hour and daily roll-ups */
  uint64_t texts;     /* query texts left with no statistics row at any level */
  int64_t size_bytes; /* the store afterwards: SQLite the database file's pages,
                       * PostgreSQL the tables with their indexes and TOAST; -1 unknown */
  int64_t free_bytes; /* of which free pages (SQLite; reused by later flushes, returned to
                       * the file system by a VACUUM); -1 unknown (PostgreSQL) */
} qp_prune_result;

/*
 * Deletes old statistics so that a store kept for years stays small. With
 * `level` QP_PRUNE_MINUTE the rows of the recorded buckets that start before
 * `before_ns` rounded down to a whole hour (UTC) are deleted (their 10-minute
 * rows are kept); with QP_PRUNE_HOUR those, the 10-minute and the hourly rows
 * (the 6-hour rows are kept), and with QP_PRUNE_DAY also the 6-hour and daily
 * rows, before `before_ns` rounded down to a whole UTC day. So the
 * deleted span is always covered by the level above it: every deleted row
 * ends at or before `before_ns` (a recorded bucket ends at or before the
 * hour when bucket_s divides 3600, as the default 60 does), and a window
 * over that span is still answered, at the resolution left (hours, days),
 * exactly where its edges fall on whole hours (days); a window edge inside
 * an hour of the pruned span loses the part of that hour it cuts. The
 * all-time totals are never deleted, nor the counts of dropped statements
 * (they have no roll-up); the normalized text of a fingerprint is deleted
 * only when no statistics row of it is left at all.
 *
 * Everything happens in one transaction (all or nothing; on PostgreSQL a
 * role that may compact first folds in the deltas, as qp_store_compact
 * does, in transactions of their own); a store written
 * at the same time is not disturbed (SQLite: the flushers wait for it;
 * PostgreSQL: row locks). `flags` is a combination of QP_PRUNE_DRY_RUN and
 * QP_PRUNE_VACUUM (ignored with QP_PRUNE_DRY_RUN). Without QP_PRUNE_VACUUM
 * an SQLite store keeps its file size (the pages are free, reused by later
 * flushes) unless it was made with PRAGMA auto_vacuum = INCREMENTAL, which
 * is then run. `out` (not NULL) is filled on success; on an error its
 * counts are zero, except when only the reclaiming of space after the commit failed
 * (the message then says "pruned, but"): it holds what was deleted.
 *
 * Errors: QP_INVALID (NULL arguments, an unknown level or flag, a store
 * opened with QP_STORE_READ without QP_PRUNE_DRY_RUN), QP_IO (the store
 * cannot be written, e.g. a read-only file, or read), QP_UNAVAILABLE (the
 * PostgreSQL store was lost), QP_NOMEM; `s` keeps the message.
 * Thread-safety: as every call on a store handle, one thread at a time.
 */
QP_EXPORT qp_status qp_store_prune(qp_store *s, int64_t before_ns, qp_prune_level level,
                                   unsigned flags, qp_prune_result *out);

/* What qp_store_compact folded. Fields may be appended in later versions. */
typedef struct qp_compact_result {
  uint64_t rows;    /* statistics delta rows folded into the compacted rows */
  uint64_t dropped; /* delta rows of dropped-statement counts folded */
  uint64_t left;    /* delta rows in the store afterwards (appended meanwhile, or beyond
                     * max_rows) */
} qp_compact_result;

/*
 * Folds the deltas that writers without UPDATE appended (the PostgreSQL
 * store's append-only path, docs/profiles.md "The fleet store") into the
 * compacted rows: the deltas present when the call starts, at most
 * `max_rows` statistics deltas (0: all of them), in transactions of at most
 * 5,000 deltas each. Each transaction takes its deltas out (DELETE ...
 * RETURNING) and merges them in, so that a delta is counted once whether a
 * reader looks before or after, and compactions running at once skip each
 * other's deltas. Reports are the same before and after; reading gets
 * cheaper. Writers may go on meanwhile. `out` (not NULL) gets the counts,
 * also of the transactions that committed before an error.
 *
 * The role needs UPDATE on the statistics tables and DELETE on the delta
 * tables (QP_REFUSED otherwise, nothing changed). An SQLite store has no
 * deltas: QP_OK with nothing done. Errors: QP_INVALID (NULL, a store opened
 * with QP_STORE_READ), QP_REFUSED, QP_IO, QP_UNAVAILABLE, QP_NOMEM; `s` keeps
 * the message. Thread-safety: as every call on a store handle.
 */
QP_EXPORT qp_status qp_store_compact(qp_store *s, uint64_t max_rows, qp_compact_result *out);

/*
 * Saved advice: the runs of `qprof advise --save`, kept in the store so that
 * `qprof report --format html` shows the advisor's findings beside the
 * queries they are about. qp_store_advice_each hands each to a qp_advice_fn
 * with strings valid during the call; it returns 0 to go on, anything else
 * to stop.
 */
typedef int (*qp_advice_fn)(void *ud, const char *database, int64_t at_ns, const char *document);

/*
 * Stores `document` (a `qprof advise --format json` document, docs/advise.md;
 * any text, not checked here) as the advice for `database` (the advised
 * database as the user should see it: a DSN with its password removed, or a
 * file path), made at `at_ns` (ns since the epoch), replacing what was saved
 * for that database before, in one transaction. The strings are copied. A
 * store older than schema version 8 was migrated when opened for writing.
 * Errors: QP_INVALID (NULL arguments, a store opened with QP_STORE_READ),
 * QP_IO (the store cannot be written), QP_UNAVAILABLE (the PostgreSQL store
 * was lost), QP_UNSUPPORTED; `s` keeps the message.
 * Thread-safety: as every call on a store handle, one thread at a time.
 */
QP_EXPORT qp_status qp_store_save_advice(qp_store *s, const char *database, int64_t at_ns,
                                         const char *document);

/*
 * Calls fn for each saved advice, newest first (see qp_advice_fn); when fn
 * stops the walk the call still returns QP_OK. A store older than schema
 * version 8, read as it is, has none. Errors: QP_INVALID (NULL s or fn),
 * QP_IO, QP_UNAVAILABLE, QP_NOMEM; `s` keeps the message.
 * Thread-safety: as every call on a store handle, one thread at a time.
 */
QP_EXPORT qp_status qp_store_advice_each(qp_store *s, qp_advice_fn fn, void *ud);

#ifdef __cplusplus
}
#endif
#endif
