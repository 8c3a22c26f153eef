/*
 * The SELECT result cache: results of read-only SELECTs kept in the
 * process, served again without a round trip while nothing they read has
 * changed. docs/cache.md says what is cached, what the key holds, every
 * invalidation path and what the cache cannot see.
 *
 * A qp_cache is opened once and attached to one or more pools through
 * qp_pool_options.cache (borrowed: it must outlive every pool it is
 * attached to). A pool without a cache caches nothing: the cache is off
 * unless the program opts in. Pools attached to one cache share entries
 * between connections to the same server and database, and their writes
 * invalidate each other's entries.
 *
 * Thread-safety: a cache may be used by any number of threads and pools at
 * once. It has its own locks (a mutex per shard; the hit path takes exactly
 * one of them) and never takes a pool's mutex.
 *
 * Errors: every call returns a qp_status; qp_cache_open writes its message
 * into errbuf. Nothing here prints, exits or aborts.
 */
#ifndef QPROF_CACHE_H
#define QPROF_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qp_cache qp_cache;

/*
 * How a cache is opened. Initialize with qp_cache_options_init, then set
 * fields. The struct grows by appending fields (docs/api.md, "Structs that
 * grow"); qp_cache_open reads only the fields its size covers.
 */
typedef struct qp_cache_options {
  size_t size;            /* set by qp_cache_options_init */
  /* Bytes of cached results kept at most (default 64 MB). Over it, entries
   * are evicted (SIEVE); the cache never grows past it. Each of the
   * QP_CACHE_SHARDS shards keeps at most max_bytes / QP_CACHE_SHARDS. */
  size_t max_bytes;
  /* Results larger than this (bytes as the cache stores them) are not
   * cached (default 1 MB; reduced to max_bytes / QP_CACHE_SHARDS when
   * larger, as an entry lives in one shard). */
  size_t max_entry_bytes;
  /* How long an entry may be served (default 60000 ms; 0: no limit). The
   * TTL is the only bound on writes the cache cannot see (another process
   * writing a PostgreSQL database): see docs/cache.md. */
  int64_t ttl_ms;
  /* When not empty, only statements matching one of these PCRE2 patterns
   * are cached. A pattern is tried on the statement's normalized text
   * ("select * from users where id = ?") and on its fingerprint as 16 hex
   * digits. Borrowed for the call of qp_cache_open (compiled there). */
  const char *const *statement_patterns;
  size_t nstatement_patterns;
  /* When not empty, only statements all of whose tables match one of these
   * PCRE2 patterns (tried on each name as written: "public.users") are
   * cached. Borrowed for the call. */
  const char *const *table_patterns;
  size_t ntable_patterns;
  const qp_hooks *hooks; /* copied; NULL = defaults */
} qp_cache_options;

#define QP_CACHE_SHARDS 32
#define QP_CACHE_OPTIONS_MIN_SIZE (offsetof(qp_cache_options, hooks) + sizeof(void *))

/* Fills *o with the defaults and sets o->size. Cannot fail; thread-safe. */
QP_EXPORT void qp_cache_options_init(qp_cache_options *o);

/*
 * Opens a cache. `opts` is only read during the call.
 * Errors: QP_INVALID (no size, max_bytes below QP_CACHE_SHARDS KB,
 * max_entry_bytes 0 or over 2 GB, ttl_ms < 0), QP_PATTERN (a pattern does not compile:
 * errbuf names it and the offset), QP_NOMEM. On error *out is NULL and
 * errbuf (may be NULL) holds the message.
 */
QP_EXPORT qp_status qp_cache_open(qp_cache **out, const qp_cache_options *opts, char *errbuf,
                                  size_t errlen);

/* Frees the cache and every entry; NULL is a no-op. Every pool it is
 * attached to must have been closed. Results handed out stay valid (they
 * never point into the cache). */
QP_EXPORT void qp_cache_close(qp_cache *cache);

/* Drops every entry of every server (counted as invalidations). Entries
 * being filled right now are not stored. Thread-safe. */
QP_EXPORT void qp_cache_flush(qp_cache *cache);

/*
 * Why a statement was not cached, each counted in qp_cache_stats.refused[]:
 * X(id, name, help). Rows are appended, never reordered.
 */
#define QP_CACHE_REFUSALS(X)                                                                       \
  X(NOT_SELECT, "not_select", "not a read-only SELECT (or the classifier could not place it)")     \
  X(VOLATILE, "volatile", "calls a function that is not immutable / deterministic")                \
  X(LOCKING, "locking", "FOR UPDATE/SHARE or another locking clause")                              \
  X(INTO, "into", "SELECT INTO or a data-modifying CTE")                                           \
  X(TEMP, "temp", "reads a temporary or unlogged table, or an in-memory database")                 \
  X(CATALOG, "catalog", "reads a system catalog")                                                  \
  X(TXN_WRITTEN, "txn_written", "inside a transaction that has written")                           \
  X(ISOLATION, "isolation", "inside a REPEATABLE READ or SERIALIZABLE transaction")                \
  X(TOO_BIG, "too_big", "result larger than max_entry_bytes")                                      \
  X(PATTERN, "pattern", "statement or table not matched by the allow patterns")                    \
  X(UNKNOWN, "unknown", "a table or function the server could not describe, or a failed lookup")  \
  X(NOMEM, "nomem", "out of memory while filling (served uncached)")                               \
  X(RACED, "raced", "a write overlapped the fill (returned, not stored)")

typedef enum qp_cache_refusal {
#define QP_CACHE_REFUSAL_ENUM_(id, name, help) QP_CACHE_REFUSED_##id,
  QP_CACHE_REFUSALS(QP_CACHE_REFUSAL_ENUM_)
#undef QP_CACHE_REFUSAL_ENUM_
  QP_CACHE_REFUSED_COUNT_
} qp_cache_refusal;

/* "not_select", "volatile", ...; "unknown" for values out of range. Static. */
QP_EXPORT const char *qp_cache_refusal_name(qp_cache_refusal r);

/* A snapshot of a cache (counters since open, gauges now). */
typedef struct qp_cache_stats {
  size_t size;            /* set by the caller: sizeof(qp_cache_stats) */
  uint64_t hits;          /* statements answered from the cache */
  uint64_t misses;        /* cacheable statements run on the database */
  uint64_t fills;         /* results stored */
  uint64_t evictions;     /* entries dropped to stay within max_bytes */
  uint64_t invalidations; /* entries dropped because what they read changed (or TTL) */
  uint64_t flushes;       /* server-wide flushes (DDL, TRUNCATE, GRANT, foreign writes...) */
  uint64_t waits;         /* misses that waited for another thread's fill of the key */
  int64_t bytes;          /* bytes held by entries */
  int64_t entries;        /* entries held */
  uint64_t refused[QP_CACHE_REFUSED_COUNT_];
} qp_cache_stats;

#define QP_CACHE_STATS_INIT {.size = sizeof(qp_cache_stats)}
#define QP_CACHE_STATS_MIN_SIZE sizeof(qp_cache_stats)

/* Fills *out (exactly out->size bytes). Errors: QP_INVALID (NULL, or size
 * below QP_CACHE_STATS_MIN_SIZE: nothing written). Thread-safe. */
QP_EXPORT qp_status qp_cache_stats_get(qp_cache *cache, qp_cache_stats *out);

/*
 * Renders the stats as Prometheus text ("qprof_cache_" prefix; counters end
 * in "_total"; refusals as qprof_cache_refused_total{reason="..."}) into
 * buf[0..cap) with snprintf semantics; *needed (may be NULL) gets the full
 * length. `labels` (may be NULL) is added to every sample.
 * Errors: QP_TOOBIG when cap <= that length, QP_INVALID. Thread-safe.
 */
QP_EXPORT qp_status qp_cache_prometheus(qp_cache *cache, const char *labels, char *buf,
                                        size_t cap, size_t *needed);

#ifdef __cplusplus
}
#endif
#endif
