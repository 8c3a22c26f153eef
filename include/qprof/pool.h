/*
 * The connection pool: PostgreSQL (libpq) and SQLite connections behind one
 * timed, thread-safe API.
 *
 * A qp_pool hands out qp_conn leases. Any thread may acquire and release; a
 * lease is used by one thread at a time. Waiters are served first in, first
 * out. Every statement run through a lease is timed on the monotonic clock
 * and, when the pool was given a profile, recorded into it under its
 * fingerprint; statements slower than the slow threshold are logged.
 *
 * DSNs: PostgreSQL in libpq's forms ("host=/tmp dbname=app user=u",
 * "postgresql://u:pw@host:5432/app?sslmode=disable"); SQLite as
 * "sqlite:///abs/path/file.db", "sqlite:relative/file.db" or
 * "sqlite::memory:". A DSN's password never appears in any message or log
 * line of the pool.
 *
 * Errors: every call returns a qp_status. The three that tell a service what
 * went wrong with a query path are
 *   QP_EXHAUSTED   every connection was busy for the whole acquire timeout;
 *   QP_UNAVAILABLE the database cannot be reached (or was lost mid-call): the
 *                  message has the last connect error and its SQLSTATE;
 *   QP_QUERY       the statement failed: qp_conn_sqlstate() has the code.
 * Handles: qp_pool_close(NULL), qp_pool_release(NULL) and
 * qp_result_free(NULL) are no-ops.
 */
#ifndef QPROF_POOL_H
#define QPROF_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "core.h"
#include "profile.h"
#include "result.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qp_pool qp_pool;
typedef struct qp_conn qp_conn;

/* What happens to a session's state (SET, PREPARE, LISTEN, temporary
 * tables, advisory locks, SET ROLE, PRAGMA, ATTACH) when a lease ends. */
typedef enum qp_reset_policy {
  QP_RESET_AUTO = 0,   /* reset only connections whose session state changed */
  QP_RESET_ALWAYS = 1, /* reset every connection on release (DISCARD ALL on PostgreSQL) */
  QP_RESET_NEVER = 2   /* never reset; the application owns session state */
} qp_reset_policy;

/*
 * Everything a pool is opened from. Initialize with qp_pool_options_init()
 * (the defaults of the pool.* rows of the options table), then set fields.
 * Durations are milliseconds; 0 means "off" where noted.
 */
typedef struct qp_pool_options {
  /* Set by qp_pool_options_init to the size of the struct this program was
   * built with; the pool reads only the fields it covers (docs/api.md,
   * "Structs that grow"). */
  size_t size;
  const char *dsn;             /* required; copied */
  int min_size;                /* connections kept open when idle (opened in the background) */
  int max_size;                /* most connections open at once (>= 1, >= min_size) */
  int64_t acquire_timeout_ms;  /* default wait of qp_pool_acquire (0: never wait) */
  int64_t connect_timeout_ms;  /* one connection attempt (>= 1) */
  int64_t max_lifetime_ms;     /* retire connections older than this minus up to 2.5%; 0 = never */
  int64_t idle_timeout_ms;     /* close idle connections above min_size after this; 0 = never */
  int64_t validation_ms;       /* check a connection idle for longer than this before use */
  int64_t leak_ms;             /* log a lease held longer than this, once; 0 = off */
  double slow_ms;              /* log statements slower than this, failed or not; <= 0 = off */
  qp_reset_policy reset;
  qp_profile *profile;         /* borrowed; NULL = do not record. Must outlive the pool. */
  const qp_hooks *hooks;       /* copied (allocator and log callback); NULL = defaults */
  /* Called on every new connection before first use (e.g. SET search_path),
   * from whichever thread opened it. A non-OK return discards the
   * connection. Statements run here are timed and recorded like any other;
   * session state they set survives QP_RESET_AUTO but not a reset. */
  qp_status (*on_connect)(qp_conn *conn, void *ud);
  void *on_connect_ud;
  /* The SELECT result cache (include/qprof/cache.h); borrowed, must outlive
   * the pool; NULL (the default) = no caching. Several pools may share one. */
  struct qp_cache *cache;
  /* The host statements are recorded under (the option `host`, QPROF_HOST);
   * copied; NULL or "" (the default) = qp_default_host(), the machine's
   * name. The user and application come from each connection
   * (docs/pool.md, "Who ran it"). */
  const char *host;
} qp_pool_options;

/* The smallest qp_pool_options.size qp_pool_open accepts (this first
 * growable version): anything smaller did not come from qp_pool_options_init. */
#define QP_POOL_OPTIONS_MIN_SIZE (offsetof(qp_pool_options, on_connect_ud) + sizeof(void *))

/* Fills *o with the defaults (pool.* rows of the options table), dsn NULL,
 * and sets o->size. Call it before setting fields: qp_pool_open refuses
 * options without a size. */
QP_EXPORT void qp_pool_options_init(qp_pool_options *o);

/*
 * Sets the pool.* fields of *o from `cfg` (pool.min_size, pool.max_size,
 * pool.acquire_timeout_ms, pool.connect_timeout_ms, pool.max_lifetime_ms,
 * pool.idle_timeout_ms, pool.validation_ms, pool.leak_ms, pool.reset,
 * slow_ms, and host: borrowed from cfg, which must outlive the
 * qp_pool_open that copies it). dsn, profile, hooks and on_connect are left alone.
 * Errors: QP_INVALID when pool.reset is not auto|always|never (errbuf says so).
 */
QP_EXPORT qp_status qp_pool_options_from_config(qp_pool_options *o, const qp_config *cfg,
                                                char *errbuf, size_t errlen);

/*
 * Opens a pool. `opts` is only read during the call (dsn copied, hooks
 * copied, profile borrowed). Opens min_size connections in the background.
 * Starts one maintenance thread when the pool has periodic work (min_size,
 * idle_timeout_ms, max_lifetime_ms or leak_ms set; the defaults do); without
 * it, releases apply idle timeouts and lifetimes themselves.
 * Does not connect in the caller's thread: a database that is down is
 * reported by the first acquire, not here.
 * Errors: QP_INVALID (missing or malformed DSN, bad sizes or durations),
 * QP_NOMEM, QP_ERROR (a thread could not be started). On error *out is NULL
 * and errbuf (may be NULL) holds the message, with any password removed.
 * Thread-safety: the pool may be used by any number of threads at once.
 */
QP_EXPORT qp_status qp_pool_open(qp_pool **out, const qp_pool_options *opts, char *errbuf,
                                 size_t errlen);

/*
 * Closes every connection and frees the pool; NULL is a no-op. Every lease
 * must have been released and no call may be running on the pool; results
 * may outlive it. In a child process after fork() it frees the memory but
 * never closes the parent's connections (see qp_pool_acquire).
 */
QP_EXPORT void qp_pool_close(qp_pool *pool);

/*
 * Acquires a lease, waiting at most `timeout_ms` (< 0: the pool's
 * acquire_timeout_ms; 0: do not wait). `file`, `line` name the holder for
 * leak reports (use the macros below). The calling thread gets back the
 * connection it released last when that one is idle (its buffers and
 * statement cache are still warm in this CPU's cache), else the most recently
 * released one; if none is idle and fewer than max_size are open, the
 * calling thread opens one (bounded by connect_timeout_ms and the time left).
 * Waiters are served in arrival order: a released connection goes straight
 * to the longest waiter.
 *
 * Errors:
 *   QP_EXHAUSTED   all max_size connections stayed busy until the timeout;
 *   QP_WOULDBLOCK  timeout 0 and no connection free right now (a try-acquire
 *                  never connects; it asks the maintenance thread to open one
 *                  when the pool is below max_size);
 *   QP_UNAVAILABLE a connection attempt failed (refused, authentication,
 *                  unknown database...). "The database system is starting up"
 *                  (57P03) and "too many connections" (53300) are retried
 *                  with backoff until the timeout instead; then this code;
 *   QP_CLOSED      the pool is closing;
 *   QP_NOMEM.
 * QP_UNAVAILABLE is also what an acquire that timed out returns while
 * connections could still be opened and the last attempt failed (a full
 * server: 53300, 57P03): "exhausted" only ever means max_size leases held.
 * On error *conn is NULL; qp_pool_acquire_err() gives this call's message,
 * qp_pool_errmsg() the pool's latest.
 * After fork(), the first call in the child drops the parent's connections
 * without touching their sessions (PostgreSQL: the socket is closed without
 * a Terminate message; SQLite: the handle is leaked on purpose, as SQLite
 * forbids using or closing it in the child) and opens new ones as needed.
 * Thread-safe.
 */
QP_EXPORT qp_status qp_pool_acquire_at(qp_pool *pool, qp_conn **conn, int64_t timeout_ms,
                                       const char *file, int line);

/* Acquire with the pool's acquire timeout, naming the call site. */
#define qp_pool_acquire(pool, conn) qp_pool_acquire_at((pool), (conn), -1, __FILE__, __LINE__)
/* Acquire waiting at most ms milliseconds. */
#define qp_pool_acquire_timeout(pool, conn, ms) \
  qp_pool_acquire_at((pool), (conn), (ms), __FILE__, __LINE__)
/* Non-blocking acquire: QP_WOULDBLOCK when nothing is free. */
#define qp_pool_try_acquire(pool, conn) qp_pool_acquire_at((pool), (conn), 0, __FILE__, __LINE__)

/*
 * Ends a lease; NULL is a no-op. The connection goes straight to the longest
 * waiter, or back to the idle stack, after:
 * a rollback if it was left inside a transaction; a session reset (DISCARD
 * ALL on PostgreSQL, reopening on SQLite) if its session state changed and
 * the policy is auto, or always with QP_RESET_ALWAYS; nothing more when it
 * is healthy. A connection that broke, could not be rolled back or reset, or
 * outlived max_lifetime_ms is closed and its place freed. `conn` is invalid
 * after the call. Thread-safe (any thread may release a lease).
 */
QP_EXPORT void qp_pool_release(qp_conn *conn);

/*
 * Acquire as qp_pool_acquire_at, and on failure also writes this call's own
 * message into errbuf (NUL-terminated, cut to errlen; may be NULL), so that
 * a thread reads the reason of its own failure, never another thread's.
 * Thread-safe.
 */
QP_EXPORT qp_status qp_pool_acquire_err(qp_pool *pool, qp_conn **conn, int64_t timeout_ms,
                                        const char *file, int line, char *errbuf,
                                        size_t errlen);

/* Acquire waiting at most ms milliseconds (< 0: the pool's timeout), with
 * this call's message in buf on failure. */
#define qp_pool_acquire_msg(pool, conn, ms, buf, len) \
  qp_pool_acquire_err((pool), (conn), (ms), __FILE__, __LINE__, (buf), (len))

/*
 * Copies the message of the pool's most recent failed acquire into buf
 * (NUL-terminated, cut to len). Returns buf. Thread-safe, but the failure
 * may be another thread's: when several threads acquire, use
 * qp_pool_acquire_err (or qp_pool_acquire_msg) to get each call's own
 * message. Kept for single-threaded callers and as the pool's "last error".
 */
QP_EXPORT const char *qp_pool_errmsg(qp_pool *pool, char *buf, size_t len);

/* ---- statements -------------------------------------------------------- */

/*
 * Runs one statement with `nparams` parameters (params may be NULL when 0)
 * and, when `out` is not NULL, returns its result (caller frees with
 * qp_result_free; it does not depend on the lease or the pool). The
 * statement is prepared once per connection and cached by its text (256
 * statements per connection), re-prepared transparently if the server lost
 * it (DEALLOCATE ALL, DISCARD ALL: SQLSTATE 26000). One statement only: use
 * qp_conn_exec_script for several. The call is timed and recorded.
 * Errors: QP_QUERY (qp_conn_sqlstate/qp_conn_errmsg tell which), QP_INVALID
 * (wrong parameter count for SQLite, bad parameter type, several statements),
 * QP_UNAVAILABLE (the connection was lost; it will be replaced on release),
 * QP_NOMEM. On error *out is NULL.
 * Thread-safety: one thread at a time per lease.
 */
QP_EXPORT qp_status qp_conn_exec(qp_conn *conn, const char *sql, const qp_param *params,
                                 size_t nparams, qp_result **out);

/*
 * Runs a script of one or more statements without parameters and without
 * results (simple query protocol on PostgreSQL; on SQLite each statement is
 * prepared and stepped in turn, as sqlite3_exec does). Recorded statement
 * by statement, each under its own fingerprint; the time is split where the
 * backend shows each statement's end (SQLite), else all of it goes to the
 * first statement (PostgreSQL sends a script's results together at its end):
 * see docs/profiles.md, "Scripts". Errors as qp_conn_exec.
 */
QP_EXPORT qp_status qp_conn_exec_script(qp_conn *conn, const char *sql);

/*
 * Asks the server to cancel the statement running on `conn`. The one call
 * that may come from another thread than the lease holder's, while the
 * holder is inside qp_conn_exec; the caller must know the lease is still
 * held. The running call then fails with QP_QUERY (57014 / SQLITE_INTERRUPT).
 * Errors: QP_UNAVAILABLE when the cancel request could not be sent.
 */
QP_EXPORT qp_status qp_conn_cancel(qp_conn *conn);

/* Message of the last failed call on the lease; "" after a success. Owned by
 * the lease; valid until its next call or release. */
QP_EXPORT const char *qp_conn_errmsg(const qp_conn *conn);
/* SQLSTATE ("23505") or SQLite extended result code name
 * ("SQLITE_CONSTRAINT_UNIQUE") of the last failed call; "" after a success. */
QP_EXPORT const char *qp_conn_sqlstate(const qp_conn *conn);

/* Transaction state of the lease's connection (no round trip). */
QP_EXPORT qp_txn_status qp_conn_txn_status(const qp_conn *conn);

/* Server identity, owned by the lease (valid until release): the backend,
 * the server version ("15.5", "3.40.1"), the database (name, or file path
 * for SQLite) and the user ("" for SQLite). */
QP_EXPORT qp_backend qp_conn_backend(const qp_conn *conn);
QP_EXPORT const char *qp_conn_server_version(const qp_conn *conn);
QP_EXPORT const char *qp_conn_database(const qp_conn *conn);
QP_EXPORT const char *qp_conn_user(const qp_conn *conn);

/* ---- metrics ----------------------------------------------------------- */

/* Fixed log2 histogram: bucket i counts durations d (microseconds) with
 * 2^(i-1) <= d < 2^i (bucket 0: d < 1 us); the last bucket is open-ended. */
#define QP_POOL_HIST_BUCKETS 32

/*
 * The pool's metrics, each listed once: X(kind, field, metric, help), kind
 * gauge (int64_t, a value right now) or counter (uint64_t, since open). The
 * one list makes the qp_pool_stats fields, the pool's own counters, the
 * snapshot and the Prometheus metrics ("qprof_pool_<metric>", counters with
 * "_total"). Rows are appended at the end, never reordered or removed (see
 * "Structs that grow" in docs/api.md).
 */
#define QP_POOL_METRICS(X)                                                                         \
  X(gauge, cl_active, "cl_active", "Leases held right now")                                        \
  X(gauge, cl_waiting, "cl_waiting", "Acquires waiting for a connection")                          \
  X(gauge, sv_active, "sv_active", "Connections in use")                                           \
  X(gauge, sv_idle, "sv_idle", "Idle connections, recently used")                                  \
  X(gauge, sv_used, "sv_used", "Idle connections that will be validated before reuse")             \
  X(gauge, sv_login, "sv_login", "Connections being opened")                                       \
  X(gauge, maxwait_us, "maxwait_us", "Longest current wait for a connection, microseconds")        \
  X(counter, total_query_count, "query", "Statements run through the pool")                        \
  X(counter, total_query_time_us, "query_time_us", "Time spent in statements, microseconds")       \
  X(counter, total_error_count, "query_error", "Statements that failed")                           \
  X(counter, total_xact_count, "xact", "Leases ended")                                             \
  X(counter, total_wait_time_us, "wait_time_us", "Time acquires spent waiting, microseconds")      \
  X(counter, acquires, "acquire", "Successful acquires")                                           \
  X(counter, timeouts, "timeout", "Acquires that timed out (exhausted)")                           \
  X(counter, wouldblocks, "wouldblock", "Try-acquires that found nothing free")                    \
  X(counter, unavailable, "unavailable", "Acquires that failed: database unavailable")             \
  X(counter, connects, "connect", "Connections opened")                                            \
  X(counter, connect_failures, "connect_failure", "Connection attempts that failed")               \
  X(counter, closed, "close", "Connections closed")                                                \
  X(counter, broken, "broken", "Connections discarded because they broke")                         \
  X(counter, expired, "expired", "Connections retired at max lifetime")                            \
  X(counter, idle_closed, "idle_close", "Connections closed after the idle timeout")               \
  X(counter, rollbacks, "rollback", "Transactions rolled back on release")                         \
  X(counter, resets, "reset", "Session resets on release")                                         \
  X(counter, validation_failures, "validation_failure", "Connections that failed validation")      \
  X(counter, leaks, "leak", "Leases held longer than the leak threshold")                          \
  X(counter, reprepares, "reprepare",                                                              \
    "Prepared statements prepared again after the server lost them")                               \
  X(counter, fork_drops, "fork_drop", "Connections dropped in a child after fork")                 \
  X(counter, cache_hits, "cache_hit", "Statements answered from the result cache")                 \
  X(counter, cache_misses, "cache_miss", "Cacheable statements the result cache did not hold")

#define QP_POOL_METRIC_T_gauge int64_t
#define QP_POOL_METRIC_T_counter uint64_t

/*
 * A snapshot of the pool. Gauges (PgBouncer SHOW POOLS names):
 *   cl_active  leases held right now;   cl_waiting acquires waiting right now;
 *   sv_active  connections in use (== cl_active);
 *   sv_idle    idle connections, recently used;
 *   sv_used    idle connections past validation_ms: checked before reuse;
 *   sv_login   connections being opened;
 *   maxwait_us how long the oldest current waiter has waited.
 * Counters since open (PgBouncer SHOW STATS names first): statements run
 * (total_query_count, their summed duration total_query_time_us, of which
 * failed total_error_count), leases ended (total_xact_count, one per
 * acquire/release), time acquires spent waiting (total_wait_time_us), then
 * pool events. Histograms in microseconds.
 */
typedef struct qp_pool_stats {
  size_t size; /* set by the caller: sizeof(qp_pool_stats), or QP_POOL_STATS_INIT */
  uint64_t acquire_hist[QP_POOL_HIST_BUCKETS];
  uint64_t hold_hist[QP_POOL_HIST_BUCKETS];
  uint64_t connect_hist[QP_POOL_HIST_BUCKETS];
#define QP_POOL_METRIC_FIELD_(kind, field, metric, help) QP_POOL_METRIC_T_##kind field;
  QP_POOL_METRICS(QP_POOL_METRIC_FIELD_)
#undef QP_POOL_METRIC_FIELD_
} qp_pool_stats;

#define QP_POOL_STATS_INIT {.size = sizeof(qp_pool_stats)}
/* The smallest size qp_pool_stats_get accepts (this first growable version). */
#define QP_POOL_STATS_MIN_SIZE (offsetof(qp_pool_stats, fork_drops) + sizeof(uint64_t))

/* Fills *out with a consistent snapshot: exactly out->size bytes (set by
 * the caller), so a program built against an older header gets the fields
 * it knows. Statement counters (total_query_*, total_error_count,
 * reprepares) of a lease are added when it is released.
 * Errors: QP_INVALID (NULL pool or out, out->size below
 * QP_POOL_STATS_MIN_SIZE: nothing is written). Thread-safe. */
QP_EXPORT qp_status qp_pool_stats_get(qp_pool *pool, qp_pool_stats *out);

/*
 * Renders the stats as Prometheus text exposition (metrics prefixed
 * "qprof_pool_", histograms in seconds with cumulative "le" buckets) into
 * buf[0..cap) with snprintf semantics: *needed (may be NULL) gets the full
 * length without the NUL. Errors: QP_TOOBIG when cap <= that length (buf then
 * holds a cut prefix). `labels` (may be NULL) is added to every sample, e.g.
 * "pool=\"main\"". Thread-safe.
 */
QP_EXPORT qp_status qp_pool_prometheus(qp_pool *pool, const char *labels, char *buf, size_t cap,
                                       size_t *needed);

/* Same, into a string allocated with the pool's allocator; free it with
 * qp_pool_string_free(pool, s). Errors: QP_NOMEM. */
QP_EXPORT qp_status qp_pool_prometheus_alloc(qp_pool *pool, const char *labels, char **out);
QP_EXPORT void qp_pool_string_free(qp_pool *pool, char *s);

#ifdef __cplusplus
}
#endif
#endif
