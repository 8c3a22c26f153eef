/* The pool's private structures, shared by pool.c, conn.c and metrics.c. */
#ifndef QPROF_POOL_INT_H
#define QPROF_POOL_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "backend/backend.h"
#include "internal.h"
#include "qprof/pool.h"
#include "qprof/sql.h"

/* A connection idle for longer than this is checked (poll without waiting)
 * before the first statement of a lease. */
#define QP_POOL_PRECHECK_IDLE_NS (20u * 1000000u)

#define QP_FORK_PAGE 4096

/* Prepared statements cached per connection. */
#define QP_POOL_STMT_CACHE_MAX 256

/* Where a pool slot is. A slot without a connection is FREE. Every change
 * goes through qp__conn_set_state (pool.c), which lists the transitions and
 * keeps the pool's per-state counts. */
typedef enum conn_state {
  CS_FREE = 0,       /* no connection; may be opened */
  CS_CONNECTING = 1, /* being opened (by an acquirer or the maintenance thread) */
  CS_IDLE = 2,       /* open, in the idle stack */
  CS_IN_USE = 3,     /* leased (until its release has finished) */
  CS_ORPHAN = 4,     /* held by a parent's thread at fork(): dead in the child */
  CS_CHECKING = 5,   /* taken from the idle stack to be validated or retired */
  CS_HANDED = 6,     /* released straight to a waiter that has not taken it yet */
  CS_COUNT_
} conn_state;

struct qp_conn {
  qp_pool *pool;
  qp__bconn *b;
  conn_state state;
  uint64_t created_ns, retire_ns, idle_since_ns, acquired_ns;
  const char *holder_file;
  int holder_line;
  unsigned long holder_thread;
  bool leak_reported;
  bool fresh;         /* no statement yet in this lease: precheck first */
  bool session_dirty; /* session state changed: reset before reuse (policy auto) */
  /* QP__DIMS_* to read again when the open transaction block ends: a role
   * or application_name set inside it reverts if it rolls back (SET LOCAL:
   * at its end either way). 0 outside a block. */
  unsigned dims_watch;
  qp_conn *next_idle;
  /* statement counters of the current lease, owned by its holder (no
   * atomics on the hot path); added to the pool's under its mutex on release */
  uint64_t q_count, q_time_ns, q_errors, reprepares;
  uint64_t cache_hits, cache_misses; /* result cache (lib/cache), flushed like the above */
  struct qc_conn *cache; /* the result cache's state for this slot (lib/cache/lease.c); owned */
  qp_err err;
  char sqlstate[40];
};

typedef struct waiter {
  struct waiter *next, *prev;
  pthread_cond_t cond;
  qp_conn *conn;  /* handed over by a release */
  uint64_t since; /* when the acquire started */
  bool queued;
} waiter;

/* Counters kept under the pool mutex: the public counters, one list
 * (the counter rows of QP_POOL_METRICS). Statement counters are flushed from leases on release. */
#define QP_POOL_CTR_gauge(field)
#define QP_POOL_CTR_counter(field) uint64_t field;
typedef struct pool_counters {
#define QP_POOL_CTR_(kind, field, metric, help) QP_POOL_CTR_##kind(field)
  QP_POOL_METRICS(QP_POOL_CTR_)
#undef QP_POOL_CTR_
  uint64_t acquire_hist[QP_POOL_HIST_BUCKETS];
  uint64_t hold_hist[QP_POOL_HIST_BUCKETS];
  uint64_t connect_hist[QP_POOL_HIST_BUCKETS];
} pool_counters;

struct qp_pool {
  qp_hooks hooks;
  const qp__backend_ops *ops;
  char *dsn;           /* owned */
  char dsn_safe[256];  /* password removed, for messages */
  char host[256];      /* recorded host: o.host, else qp_default_host() (o.host points here) */
  qp_pool_options o;   /* copy; o.dsn and o.hooks point into this pool */
  /* The profile that names statements (normalized text, fingerprint):
   * o.profile, or, when the pool records nothing but logs slow statements,
   * a private one with the default options (owned; see docs/pool.md). The
   * pool never normalizes by itself. */
  qp_profile *names;
  bool own_names;
  uint64_t slow_ns; /* o.slow_ms in nanoseconds; 0 = no slow-query log */

  pthread_mutex_t mu;
  qp_conn *slots; /* o.max_size of them */
  qp_conn *retired_slots; /* slot arrays replaced after fork, chained via [0].next_idle */
  qp_conn *idle;  /* LIFO stack */
  /* Slots per state, kept by conn_set_state (pool.c): n.open counts the
   * open ones (IDLE, IN_USE, CHECKING, HANDED). Packed into one word so that
   * a state change updates all four with one add and one subtract (each
   * count is at most max_size <= 10000, and a state's own count is never 0
   * when it is left, so no lane borrows from the next). */
  union {
    uint64_t all;
    struct {
      uint16_t connecting, idle, in_use, open;
    } n;
  } sc;
  waiter *wq_head, *wq_tail;
  int n_waiting;
  bool closing;

  /* connection failures: backoff and the last error */
  uint64_t next_connect_ns, backoff_ms;
  bool have_connect_err;
  qp__berr last_connect_err;
  char errmsg[QP_ERRMSG_MAX]; /* last failed acquire */
  uint64_t rng;

  /* maintenance thread */
  pthread_t maint;
  bool maint_running;
  pthread_cond_t maint_cond;
  bool maint_kick;     /* wake up now */
  uint64_t next_maint_ns; /* inline maintenance when there is no thread */
  bool maint_want_one; /* a try-acquire found nothing: open one connection */

  _Atomic int pid; /* the process that owns the connections */
  void *fork_page;  /* MADV_WIPEONFORK page holding 1; NULL: use getpid() */
  pthread_key_t tls_hint; /* per thread: the connection it released last */
  bool have_tls;
  pool_counters c;
};

/* log2 bucket of a duration in nanoseconds (microsecond resolution). */
static inline int qp__pool_bucket(uint64_t ns) {
  uint64_t us = ns / 1000;
  int b = us == 0 ? 0 : 64 - __builtin_clzll(us);
  return b >= QP_POOL_HIST_BUCKETS ? QP_POOL_HIST_BUCKETS - 1 : b;
}

/* In a child after fork(), drops the parent's connections (first call). */
void qp__pool_check_fork(qp_pool *p);

#endif
