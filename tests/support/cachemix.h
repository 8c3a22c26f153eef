/*
 * The randomized consistency driver of the result cache tests
 * (test_cache_mix_pg_mt, test_cache_mix_sqlite_mt): threads run random
 * steps that a backend's test supplies, and every cached read is compared
 * with the same read run uncached at the same point.
 *
 * "The same point": the test holds one reader-writer lock (writer
 * preferred; with `lockfile`, also flock() on that file, so another
 * process's writes take part). A step that writes holds it exclusively for
 * the whole step (a transaction from BEGIN to its end); a step that only
 * reads holds it shared. A compared read is run twice on the same lease,
 * back to back under that lock: first as written, through the cache (a hit
 * or a fill), then wrapped as "SELECT * FROM (sql) AS nocache_q", which the
 * cache's statement pattern (cm_cache_pattern) refuses, so it always runs on
 * the database. Nothing can write between the two (the lock), and both see
 * the lease's own transaction, so they must agree exactly: same status, same
 * SQLSTATE on error, same column names, same rows (compared as a multiset:
 * the wrapper need not keep the order). Reads run concurrently with other
 * reads (hits, fills and single flight on shared keys); the lock-free race
 * of a fill with a write is checked apart (cm_race).
 */
#ifndef QP_CACHEMIX_H
#define QP_CACHEMIX_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "qprof/qprof.h"

/* The statement pattern the tests open their caches with: everything but
 * the uncached wrapper. */
#define CM_CACHE_PATTERN "(?i)^\\s*select(?!.*nocache_q)"

typedef struct cm_run cm_run;

typedef struct cm_thr {
  cm_run *run;
  int id;
  uint64_t rng;
  int lockfd; /* flock() descriptor of the lock file, -1 without */
  int lockmode; /* 0 none, 1 shared, 2 exclusive */
} cm_thr;

/* Checks one row of a compared read's result for a row that does not
 * belong to the reader (another role, schema or database): returns false
 * for a foreign row. `ctx` is the caller's. */
typedef bool (*cm_rowcheck)(const qp_result *r, size_t row, const void *ctx);

typedef struct cm_config {
  int nthreads;
  uint64_t min_ops;     /* statements through the cache (compared reads count once) */
  const char *lockfile; /* NULL: no cross-process lock */
  void (*step)(cm_thr *t); /* one random step; takes and drops the lock itself */
  void *ud;
} cm_config;

typedef struct cm_totals {
  uint64_t ops, reads, stale, foreign, unverifiable, errors;
} cm_totals;

/* Uniform in [0, n). */
uint32_t cm_rand(cm_thr *t, uint32_t n);
void *cm_ud(cm_thr *t);
/* The lock of the file comment. cm_unlock drops whichever is held. */
void cm_shared(cm_thr *t);
void cm_exclusive(cm_thr *t);
void cm_unlock(cm_thr *t);
/* One statement through the cache, not compared (a write, SET, BEGIN...);
 * counted as an operation. Returns its status. */
qp_status cm_exec(cm_thr *t, qp_conn *c, const char *sql, const qp_param *p, size_t np);
/* Counts an operation the step ran itself (a script). */
void cm_count(cm_thr *t);
/* A compared read (see the file comment); `check` (may be NULL) is run on
 * every row of the cached result. Must be called under the lock. Returns
 * false when the two disagreed, or a row was foreign (both counted and the
 * first few printed with the SQL). */
bool cm_read(cm_thr *t, qp_conn *c, const char *sql, const qp_param *p, size_t np,
             cm_rowcheck check, const void *ctx);
/* Counts an unexpected failure of a step (printed, the test then fails). */
void cm_error(cm_thr *t, const char *what, qp_conn *c);
/* Runs cfg->nthreads threads until cfg->min_ops operations were done. */
void cm_run_all(const cm_config *cfg, cm_totals *out);

/*
 * The race of fills with writes, without the lock: `writers` threads add
 * one to counters (rows of a table) in autocommit or in short transactions
 * and publish each committed value once the COMMIT returned; `readers`
 * threads read a counter through the cache and check that it is never
 * below what was published before the read started (a fill that raced a
 * write and was stored anyway would serve an older value after the
 * write returned). The backend's test gives the statements.
 */
typedef struct cm_race_config {
  qp_pool *pool;
  int writers, readers, keys;
  uint64_t reads_per_reader, writes_per_writer; /* readers read until the writers are done */
  const char *read_sql;   /* one parameter (the key); one row, one integer column */
  const char *update_sql; /* one parameter (the key); returns the new value (RETURNING) */
  const char *begin_sql;  /* NULL: "BEGIN" (SQLite wants BEGIN IMMEDIATE for a writer) */
} cm_race_config;

typedef struct cm_race_totals {
  uint64_t reads, writes, stale, errors;
} cm_race_totals;

void cm_race(const cm_race_config *cfg, cm_race_totals *out);

/* The checks the backends' tests share (cmocka assertions):
 * cm_check_mix: prints the run and the cache's stats under `name`; 0 stale,
 * 0 foreign, 0 unverifiable, 0 errors, min_ops done, every wrapper refused
 * (so compared with the database) and at least hit_pct % of the compared
 * reads were hits (the cache was in play).
 * cm_check_race: runs cm_race on cfg->pool (whose cache is `cache`): 0
 * stale, 0 errors, some hits.
 * cm_check_single_flight: on `pool` (cache `cache`, at least 8 connections),
 * runs warm_sql on 8 connections (identities read, first PRAGMA
 * data_version), then 8 threads run `sql` with the integer parameter
 * `param` at once: each gets `expect`, the statement ran once (1 miss,
 * 1 fill, 7 hits, at least one wait). */
void cm_check_mix(const char *name, qp_cache *cache, const cm_totals *tot, uint64_t min_ops,
                  unsigned hit_pct);
void cm_check_race(const char *name, qp_cache *cache, const cm_race_config *cfg);
void cm_check_single_flight(qp_pool *pool, qp_cache *cache, const char *warm_sql,
                            const char *sql, int64_t param, int64_t expect);

#endif
