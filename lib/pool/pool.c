/*
 * The connection pool: slots, the idle stack, a FIFO queue of waiters (each
 * with its own condition variable, so that a release wakes exactly the
 * longest waiter and hands it the connection), connection failures with
 * backoff, the maintenance thread and fork safety.
 *
 * Locking: one mutex guards every field that changes after open. Network
 * work (connect, validate, rollback, reset, close) always happens outside
 * it, on a slot the thread has reserved (CONNECTING or IN_USE).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache_lease.h"
#include "pool_int.h"

#define BACKOFF_MIN_MS 50
/* Capped at half a second so that a pool serves again within a second of
 * the server coming back, jitter included. */
#define BACKOFF_MAX_MS 500


static uint64_t ms_to_ns(int64_t ms) { return ms <= 0 ? 0 : (uint64_t)ms * 1000000u; }

/* xorshift64*, under the pool mutex: jitter only, not security. */
static uint64_t pool_rand(qp_pool *p) {
  uint64_t x = p->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  p->rng = x;
  return x * 2685821657736338717ull;
}

static void cond_init_mono(pthread_cond_t *c) {
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  pthread_cond_init(c, &a);
  pthread_condattr_destroy(&a);
}

/* The pool mutex is held for a few dozen instructions at a time; spinning
 * briefly before sleeping saves two futex calls when it is contended. */
static void mutex_init(pthread_mutex_t *m) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
  pthread_mutex_init(m, &a);
  pthread_mutexattr_destroy(&a);
}

/* ---- options ------------------------------------------------------------ */

void qp_pool_options_init(qp_pool_options *o) {
  memset(o, 0, sizeof *o);
  o->size = sizeof *o;
  o->min_size = (int)QP__OPT_DEFAULT_INT(POOL_MIN_SIZE);
  o->max_size = (int)QP__OPT_DEFAULT_INT(POOL_MAX_SIZE);
  o->acquire_timeout_ms = QP__OPT_DEFAULT_INT(POOL_ACQUIRE_TIMEOUT_MS);
  o->connect_timeout_ms = QP__OPT_DEFAULT_INT(POOL_CONNECT_TIMEOUT_MS);
  o->max_lifetime_ms = QP__OPT_DEFAULT_INT(POOL_MAX_LIFETIME_MS);
  o->idle_timeout_ms = QP__OPT_DEFAULT_INT(POOL_IDLE_TIMEOUT_MS);
  o->validation_ms = QP__OPT_DEFAULT_INT(POOL_VALIDATION_MS);
  o->leak_ms = QP__OPT_DEFAULT_INT(POOL_LEAK_MS);
  o->slow_ms = QP__OPT_DEFAULT_DOUBLE(SLOW_MS);
  o->reset = QP_RESET_AUTO;
}

static bool parse_reset(const char *s, qp_reset_policy *out) {
  if (strcasecmp(s, "auto") == 0) *out = QP_RESET_AUTO;
  else if (strcasecmp(s, "always") == 0) *out = QP_RESET_ALWAYS;
  else if (strcasecmp(s, "never") == 0) *out = QP_RESET_NEVER;
  else return false;
  return true;
}

qp_status qp_pool_options_from_config(qp_pool_options *o, const qp_config *cfg, char *errbuf,
                                      size_t errlen) {
  if (o == NULL || cfg == NULL)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "options and configuration are required");
  qp_reset_policy reset;
  const char *r = QP__CFG_STRING(cfg, POOL_RESET);
  if (!parse_reset(r, &reset))
    return qp__errbuf_set(errbuf, errlen, QP_INVALID,
                          "pool.reset: '%s' is not one of auto, always, never", r);
  o->min_size = (int)QP__CFG_INT(cfg, POOL_MIN_SIZE);
  o->max_size = (int)QP__CFG_INT(cfg, POOL_MAX_SIZE);
  o->acquire_timeout_ms = QP__CFG_INT(cfg, POOL_ACQUIRE_TIMEOUT_MS);
  o->connect_timeout_ms = QP__CFG_INT(cfg, POOL_CONNECT_TIMEOUT_MS);
  o->max_lifetime_ms = QP__CFG_INT(cfg, POOL_MAX_LIFETIME_MS);
  o->idle_timeout_ms = QP__CFG_INT(cfg, POOL_IDLE_TIMEOUT_MS);
  o->validation_ms = QP__CFG_INT(cfg, POOL_VALIDATION_MS);
  o->leak_ms = QP__CFG_INT(cfg, POOL_LEAK_MS);
  o->slow_ms = QP__CFG_DOUBLE(cfg, SLOW_MS);
  o->reset = reset;
  if (o->size >= offsetof(qp_pool_options, host) + sizeof o->host) o->host = QP__CFG_STRING(cfg, HOST);
  qp__errbuf_set(errbuf, errlen, QP_OK, "%s", "");
  return QP_OK;
}

static qp_status check_options(const qp_pool_options *o, char *errbuf, size_t errlen) {
#define BAD(...) qp__errbuf_set(errbuf, errlen, QP_INVALID, __VA_ARGS__)
  if (o->dsn == NULL || *o->dsn == '\0') return BAD("pool: no DSN given");
  if (o->max_size < 1 || o->max_size > 10000)
    return BAD("pool: max_size %d is outside [1, 10000]", o->max_size);
  if (o->min_size < 0 || o->min_size > o->max_size)
    return BAD("pool: min_size %d is outside [0, max_size=%d]", o->min_size, o->max_size);
  if (o->connect_timeout_ms < 1) return BAD("pool: connect_timeout_ms must be >= 1");
  if (o->acquire_timeout_ms < 0 || o->max_lifetime_ms < 0 || o->idle_timeout_ms < 0 ||
      o->validation_ms < 0 || o->leak_ms < 0)
    return BAD("pool: durations must not be negative");
  if (o->reset != QP_RESET_AUTO && o->reset != QP_RESET_ALWAYS && o->reset != QP_RESET_NEVER)
    return BAD("pool: unknown reset policy %d", (int)o->reset);
#undef BAD
  return QP_OK;
}

/* ---- waiters ------------------------------------------------------------ */

static void wq_push(qp_pool *p, waiter *w) {
  w->next = NULL;
  w->prev = p->wq_tail;
  if (p->wq_tail) p->wq_tail->next = w;
  else p->wq_head = w;
  p->wq_tail = w;
  w->queued = true;
  p->n_waiting++;
}

/* Back to the front of the queue: a waiter whose connection attempt failed
 * for a transient reason keeps its place. */
static void wq_push_front(qp_pool *p, waiter *w) {
  w->prev = NULL;
  w->next = p->wq_head;
  if (p->wq_head) p->wq_head->prev = w;
  else p->wq_tail = w;
  p->wq_head = w;
  w->queued = true;
  p->n_waiting++;
}

static void wq_remove(qp_pool *p, waiter *w) {
  if (!w->queued) return;
  if (w->prev) w->prev->next = w->next;
  else p->wq_head = w->next;
  if (w->next) w->next->prev = w->prev;
  else p->wq_tail = w->prev;
  w->next = w->prev = NULL;
  w->queued = false;
  p->n_waiting--;
}

/* Wakes the longest waiter so that it looks at the pool again (a slot was
 * freed, a backoff ended, the pool is closing). */
static void wake_head(qp_pool *p) {
  if (p->wq_head) pthread_cond_signal(&p->wq_head->cond);
}

/* ---- connection slots (mutex held unless noted) ------------------------- */

/*
 * The one place a slot changes state, with the transitions it allows (as
 * PgBouncer's change_server_state): the per-state counts can then never
 * drift from the states.
 *
 *   FREE       -> CONNECTING  a thread reserved the slot to open a connection
 *   CONNECTING -> FREE        the attempt failed
 *   CONNECTING -> IN_USE      the acquirer that opened it leases it
 *   CONNECTING -> IDLE/HANDED the maintenance thread opened it (conn_return)
 *   IDLE       -> IN_USE      leased
 *   IDLE       -> CHECKING    taken to be validated or retired before a lease
 *   IDLE       -> FREE        closed by maintenance (idle timeout, lifetime)
 *   CHECKING   -> IN_USE      validated and leased
 *   CHECKING   -> FREE        failed validation or expired: closed
 *   IN_USE     -> IDLE        released, nobody waiting
 *   IN_USE     -> HANDED      released straight to the longest waiter
 *   IN_USE     -> FREE        released broken or expired: closed
 *   HANDED     -> IN_USE      the waiter leases it
 *   HANDED     -> CHECKING    the waiter found it expired (or stale)
 *   HANDED     -> IDLE/HANDED the waiter left without it and gives it back
 *
 * After fork() every slot of the parent is left ORPHAN and the counts start
 * from zero (after_fork); nothing else enters or leaves ORPHAN. A transition
 * not listed is a bug: it is logged at error level (the library never
 * aborts) and done anyway, so the counts stay true to the states.
 */
static const bool conn_transitions[CS_COUNT_][CS_COUNT_] = {
    [CS_FREE] = {[CS_CONNECTING] = true},
    [CS_CONNECTING] = {[CS_FREE] = true, [CS_IN_USE] = true, [CS_IDLE] = true, [CS_HANDED] = true},
    [CS_IDLE] = {[CS_IN_USE] = true, [CS_CHECKING] = true, [CS_FREE] = true},
    [CS_CHECKING] = {[CS_IN_USE] = true, [CS_FREE] = true},
    [CS_IN_USE] = {[CS_IDLE] = true, [CS_HANDED] = true, [CS_FREE] = true},
    [CS_HANDED] = {[CS_IN_USE] = true, [CS_CHECKING] = true, [CS_IDLE] = true, [CS_HANDED] = true},
};

/* What a slot in each state adds to the packed counts (pool_int.h: the
 * lanes connecting, idle, in_use, open in struct order). */
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define SC_SHIFT(k) (48 - 16 * (k))
#else
#define SC_SHIFT(k) (16 * (k))
#endif
#define SC_LANE(connecting, idle, in_use, open)                                                    \
  ((uint64_t)(connecting) << SC_SHIFT(0) | (uint64_t)(idle) << SC_SHIFT(1) |                       \
   (uint64_t)(in_use) << SC_SHIFT(2) | (uint64_t)(open) << SC_SHIFT(3))
static const uint64_t state_counts[CS_COUNT_] = {
    [CS_CONNECTING] = SC_LANE(1, 0, 0, 0), [CS_IDLE] = SC_LANE(0, 1, 0, 1),
    [CS_IN_USE] = SC_LANE(0, 0, 1, 1),     [CS_CHECKING] = SC_LANE(0, 0, 0, 1),
    [CS_HANDED] = SC_LANE(0, 0, 0, 1),
};

/* Kept inline: it runs twice per acquire/release cycle, where the target
 * state is a constant. Adding the new state's lanes before taking the old
 * one's keeps every lane from borrowing. */
static inline __attribute__((always_inline)) void conn_set_state(qp_pool *p, qp_conn *c,
                                                                 conn_state to) {
  conn_state from = c->state;
  if (QP_UNLIKELY(!conn_transitions[from][to]))
    qp__log(&p->hooks, QP_LOG_ERROR, "pool %s: bug: connection state %d -> %d", p->dsn_safe,
            (int)from, (int)to);
  p->sc.all = p->sc.all + state_counts[to] - state_counts[from];
  c->state = to;
}

static qp_conn *free_slot(qp_pool *p) {
  for (int i = 0; i < p->o.max_size; i++)
    if (p->slots[i].state == CS_FREE) return &p->slots[i];
  return NULL;
}

static bool can_open(const qp_pool *p) {
  return p->sc.n.open + p->sc.n.connecting < p->o.max_size;
}

static bool in_backoff(const qp_pool *p, uint64_t now) {
  return p->have_connect_err && now < p->next_connect_ns;
}

static inline __attribute__((always_inline)) void idle_push(qp_pool *p, qp_conn *c, uint64_t now) {
  conn_set_state(p, c, CS_IDLE);
  c->idle_since_ns = now;
  c->next_idle = p->idle;
  p->idle = c;
}

static void idle_unlink(qp_pool *p, qp_conn *c) {
  for (qp_conn **pp = &p->idle; *pp; pp = &(*pp)->next_idle) {
    if (*pp == c) {
      *pp = c->next_idle;
      c->next_idle = NULL;
      return;
    }
  }
}

/* Takes an idle connection off the stack (its state is still IDLE: the
 * caller moves it on): the one this thread released last when it is still
 * idle, else the top of the stack. Like HikariCP's thread-local list, a
 * thread keeps reusing "its" connection, whose buffers and statement cache
 * are still in this CPU's cache. The hint is only compared as an address
 * before it is trusted (it may be stale). */
static qp_conn *idle_take(qp_pool *p) {
  if (p->have_tls) {
    qp_conn *h = pthread_getspecific(p->tls_hint);
    uintptr_t a = (uintptr_t)h, lo = (uintptr_t)p->slots,
              hi = (uintptr_t)(p->slots + p->o.max_size);
    if (h != NULL && a >= lo && a < hi && h->state == CS_IDLE) {
      idle_unlink(p, h);
      return h;
    }
  }
  qp_conn *c = p->idle;
  if (c != NULL) {
    p->idle = c->next_idle;
    c->next_idle = NULL;
  }
  return c;
}

/* Takes the backend connection out of a slot and frees the slot; the caller
 * closes the returned connection outside the mutex. */
static qp__bconn *slot_free(qp_pool *p, qp_conn *c) {
  qp__bconn *b = c->b;
  c->b = NULL;
  conn_set_state(p, c, CS_FREE);
  p->c.closed++;
  wake_head(p);
  p->maint_kick = true;
  pthread_cond_signal(&p->maint_cond);
  return b;
}

/* Hands a healthy connection to the longest waiter, or back to the idle
 * stack. Inline: release's fast path. */
static inline __attribute__((always_inline)) void conn_return(qp_pool *p, qp_conn *c, uint64_t now) {
  waiter *w = p->wq_head;
  if (w != NULL) {
    wq_remove(p, w);
    conn_set_state(p, c, CS_HANDED);
    c->idle_since_ns = now;
    w->conn = c;
    pthread_cond_signal(&w->cond);
    return;
  }
  idle_push(p, c, now);
}

/* Opens the backend connection of the reserved slot c within `timeout_ms`
 * (mutex NOT held): connect_timeout_ms, or less when that is all an acquire
 * has left. */
static qp_status open_backend(qp_pool *p, qp_conn *c, int64_t timeout_ms, qp__berr *err) {
  qp__bconnect_opts bo = {&p->hooks, timeout_ms, QP_POOL_STMT_CACHE_MAX};
  uint64_t t0 = qp__now_ns();
  qp__bconn *b = NULL;
  qp_status st = p->ops->connect(p->dsn, &bo, &b, err);
  uint64_t t1 = qp__now_ns();
  if (st == QP_OK && c->cache != NULL) {
    qp__cache_conn_forget(c); /* a new connection: its session is read again */
  }
  if (st == QP_OK && p->o.on_connect != NULL) {
    c->b = b;
    c->fresh = false;
    c->session_dirty = false;
    qp__err_clear(&c->err);
    c->sqlstate[0] = '\0';
    qp_status hs = p->o.on_connect(c, p->o.on_connect_ud);
    if (hs != QP_OK) {
      qp__berr_set(err, hs, c->sqlstate, "on_connect hook failed: %s",
                   c->err.msg[0] ? c->err.msg : qp_strerror(hs));
      c->b = NULL;
      p->ops->close(b);
      b = NULL;
      st = hs == QP_NOMEM ? QP_NOMEM : QP_UNAVAILABLE;
    }
    c->session_dirty = false; /* what the hook set is the baseline */
    c->dims_watch = 0;
  }
  pthread_mutex_lock(&p->mu);
  if (st == QP_OK) {
    p->c.connects++;
    p->c.connect_hist[qp__pool_bucket(qp__ns_since(t1, t0))]++;
    p->have_connect_err = false;
    p->backoff_ms = 0;
    c->b = b;
    c->created_ns = t1;
    c->retire_ns = 0;
    if (p->o.max_lifetime_ms > 0) {
      /* retire up to 2.5% early, spread out, so that connections opened
       * together are not all replaced at once */
      uint64_t life = ms_to_ns(p->o.max_lifetime_ms);
      c->retire_ns = t1 + life - (pool_rand(p) % (life / 40 + 1));
    }
  } else {
    p->c.connect_failures++;
    /* An attempt cut short by an acquire's own deadline tells nothing of
     * the server: the cause of the failures before it is kept (a standby
     * that answered 57P03 is still the reason, not "timeout after 4 ms"). */
    bool cut_short = err->timed_out && timeout_ms < p->o.connect_timeout_ms;
    if (!(cut_short && p->have_connect_err)) p->last_connect_err = *err;
    p->have_connect_err = true;
    p->backoff_ms = p->backoff_ms == 0 ? BACKOFF_MIN_MS : p->backoff_ms * 2;
    if (p->backoff_ms > BACKOFF_MAX_MS) p->backoff_ms = BACKOFF_MAX_MS;
    /* full jitter on the upper half: [backoff/2, backoff] */
    uint64_t ms = p->backoff_ms / 2 + pool_rand(p) % (p->backoff_ms / 2 + 1);
    p->next_connect_ns = t1 + ms * 1000000u;
  }
  pthread_mutex_unlock(&p->mu);
  if (st != QP_OK)
    qp__log(&p->hooks, QP_LOG_WARN, "pool %s: %s", p->dsn_safe, err->msg);
  return st;
}

/* ---- fork --------------------------------------------------------------- */

/* First call in a child process: the parent's threads do not exist here, so
 * the mutex and condition variables are re-created, every connection is
 * abandoned (never closed: that would end the parent's sessions) and the
 * maintenance thread is started again. */
static void start_maint(qp_pool *p);
static bool maint_needed(const qp_pool *p);

static void after_fork(qp_pool *p) {
  mutex_init(&p->mu);
  cond_init_mono(&p->maint_cond);
  uint64_t dropped = 0;
  for (int i = 0; i < p->o.max_size; i++) {
    qp_conn *c = &p->slots[i];
    if (c->b != NULL) {
      p->ops->abandon(c->b);
      dropped++;
    }
    c->b = NULL;
    c->state = CS_FREE;
    c->next_idle = NULL;
  }
  /* Leases the parent's threads held stay valid pointers that fail with
   * QP_CLOSED; the child gets fresh slots so that they never alias its own
   * leases. Out of memory here only means reusing the old slots. */
  qp_conn *fresh = qp__calloc(&p->hooks, (size_t)p->o.max_size, sizeof *fresh);
  if (fresh != NULL) {
    for (int i = 0; i < p->o.max_size; i++) {
      fresh[i].pool = p;
      fresh[i].state = CS_FREE;
      p->slots[i].state = CS_ORPHAN;
    }
    p->slots[0].next_idle = p->retired_slots; /* chained for qp_pool_close */
    p->retired_slots = p->slots;
    p->slots = fresh;
  }
  memset(&p->c, 0, sizeof p->c); /* a new process: new metrics */

  p->idle = NULL;
  p->sc.all = 0;
  p->wq_head = p->wq_tail = NULL;
  p->n_waiting = 0;
  p->maint_running = false;
  p->maint_kick = false;
  p->maint_want_one = false;
  p->c.fork_drops += dropped;
  atomic_store(&p->pid, (int)getpid());
  if (p->fork_page != NULL) atomic_store((_Atomic int *)p->fork_page, 1);
  if (!p->closing && maint_needed(p)) start_maint(p);
  qp__log(&p->hooks, QP_LOG_INFO,
          "pool %s: fork detected, dropped %" PRIu64 " inherited connections", p->dsn_safe,
          dropped);
}

/* Fork detection on every acquire must be cheap: getpid() is a system call
 * (about 50 ns here). A page marked MADV_WIPEONFORK reads as zeros in a
 * child, so one load tells whether we are still in the process that opened
 * the pool; getpid() is the fallback where the kernel lacks it. */
static void fork_guard_init(qp_pool *p) {
  p->fork_page = mmap(NULL, QP_FORK_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
  if (p->fork_page == MAP_FAILED) {
    p->fork_page = NULL;
    return;
  }
  if (madvise(p->fork_page, QP_FORK_PAGE, MADV_WIPEONFORK) != 0) {
    munmap(p->fork_page, QP_FORK_PAGE);
    p->fork_page = NULL;
    return;
  }
  atomic_store_explicit((_Atomic int *)p->fork_page, 1, memory_order_relaxed);
}

static inline void check_fork(qp_pool *p) {
  bool forked = p->fork_page != NULL
                    ? atomic_load_explicit((_Atomic int *)p->fork_page, memory_order_relaxed) != 1
                    : atomic_load_explicit(&p->pid, memory_order_relaxed) != (int)getpid();
  if (QP_UNLIKELY(forked)) after_fork(p);
}

void qp__pool_check_fork(qp_pool *p) { check_fork(p); }

/* ---- maintenance -------------------------------------------------------- */

static void maint_tick(qp_pool *p, uint64_t now) {
  qp__bconn *to_close[16];
  int nclose = 0;
  /* leaks */
  if (p->o.leak_ms > 0) {
    for (int i = 0; i < p->o.max_size; i++) {
      qp_conn *c = &p->slots[i];
      if (c->state != CS_IN_USE || c->leak_reported || c->holder_file == NULL) continue;
      uint64_t held = qp__ns_since(now, c->acquired_ns);
      if (held < ms_to_ns(p->o.leak_ms)) continue;
      c->leak_reported = true;
      p->c.leaks++;
      qp__log(&p->hooks, QP_LOG_WARN,
              "pool %s: possible connection leak: held for %" PRIu64 " ms by %s:%d "
              "(thread %#lx), longer than pool.leak_ms=%" PRId64,
              p->dsn_safe, held / 1000000u, c->holder_file, c->holder_line, c->holder_thread,
              p->o.leak_ms);
    }
  }
  /* idle timeout and lifetime */
  for (qp_conn *c = p->idle, *next; c != NULL && nclose < 16; c = next) {
    next = c->next_idle;
    bool expired = c->retire_ns != 0 && now >= c->retire_ns;
    bool idle_long = p->o.idle_timeout_ms > 0 && p->sc.n.open > p->o.min_size &&
                     qp__ns_since(now, c->idle_since_ns) >= ms_to_ns(p->o.idle_timeout_ms);
    if (!expired && !idle_long) continue;
    idle_unlink(p, c);
    if (expired) p->c.expired++;
    else p->c.idle_closed++;
    to_close[nclose++] = slot_free(p, c);
  }
  if (nclose > 0) {
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < nclose; i++) p->ops->close(to_close[i]);
    pthread_mutex_lock(&p->mu);
  }
}

/* Opens connections up to min_size (or one more when a try-acquire asked),
 * handing each to a waiter or the idle stack. Mutex held; drops it while
 * connecting. */
static void maint_fill(qp_pool *p, bool asked) {
  while (!p->closing && can_open(p) && !in_backoff(p, qp__now_ns()) &&
         (p->sc.n.open + p->sc.n.connecting < p->o.min_size || (asked && p->sc.n.idle == 0))) {
    qp_conn *c = free_slot(p);
    if (c == NULL) break;
    conn_set_state(p, c, CS_CONNECTING);
    asked = false;
    pthread_mutex_unlock(&p->mu);
    qp__berr err;
    qp__berr_clear(&err);
    qp_status st = open_backend(p, c, p->o.connect_timeout_ms, &err);
    pthread_mutex_lock(&p->mu);
    if (st != QP_OK) {
      conn_set_state(p, c, CS_FREE);
      wake_head(p);
      break;
    }
    conn_return(p, c, qp__now_ns());
  }
}

static void *maint_main(void *arg) {
  qp_pool *p = arg;
  pthread_mutex_lock(&p->mu);
  while (!p->closing) {
    uint64_t tick_ms = 250;
    if (p->o.leak_ms > 0 && (uint64_t)p->o.leak_ms / 4 < tick_ms)
      tick_ms = p->o.leak_ms / 4 > 5 ? (uint64_t)p->o.leak_ms / 4 : 5;
    uint64_t now = qp__now_ns();
    if (in_backoff(p, now) && p->next_connect_ns - now < tick_ms * 1000000u)
      tick_ms = (p->next_connect_ns - now) / 1000000u + 1;
    struct timespec ts;
    qp__timespec_after(&ts, tick_ms * 1000000u);
    if (!p->maint_kick) pthread_cond_timedwait(&p->maint_cond, &p->mu, &ts);
    bool asked = p->maint_want_one;
    p->maint_kick = false;
    p->maint_want_one = false;
    if (p->closing) break;
    maint_tick(p, qp__now_ns());
    maint_fill(p, asked);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

static void start_maint(qp_pool *p) {
  p->maint_running = pthread_create(&p->maint, NULL, maint_main, p) == 0;
  if (!p->maint_running)
    qp__log(&p->hooks, QP_LOG_ERROR, "pool %s: cannot start the maintenance thread", p->dsn_safe);
}

/* The maintenance thread exists only when something may need doing while
 * no one calls the pool: keeping min_size open, reporting leaks, closing
 * idle or old connections, opening one a try-acquire asked for. A pool
 * without any of these (min_size 0, leak_ms, idle_timeout_ms and
 * max_lifetime_ms all 0) runs no thread: a single-threaded program then
 * stays single-threaded and keeps glibc's lock-free malloc; release does the
 * rest inline (see maint_inline). */
static bool maint_needed(const qp_pool *p) {
  return p->o.min_size > 0 || p->o.leak_ms > 0 || p->o.idle_timeout_ms > 0 ||
         p->o.max_lifetime_ms > 0;
}

/* Mutex held. Starts the thread on first need; false if it cannot run. */
static bool ensure_maint(qp_pool *p) {
  if (!p->maint_running && !p->closing) start_maint(p);
  return p->maint_running;
}

/* Mutex held: the maintenance thread's work, done by a releasing thread
 * every MAINT_INLINE_NS when there is no maintenance thread. */
#define MAINT_INLINE_NS (250u * 1000000u)
static void maint_inline(qp_pool *p, uint64_t now) {
  if (p->maint_running || now < p->next_maint_ns) return;
  p->next_maint_ns = now + MAINT_INLINE_NS;
  maint_tick(p, now);
}

/* ---- open / close ------------------------------------------------------- */

qp_status qp_pool_open(qp_pool **out, const qp_pool_options *user, char *errbuf, size_t errlen) {
  if (out == NULL || user == NULL)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "pool: out and opts are required");
  *out = NULL;
  if (user->size < QP_POOL_OPTIONS_MIN_SIZE)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID,
                          "pool: options have no size: fill them with qp_pool_options_init first");
  /* the fields the caller's header knows, over this version's defaults */
  qp_pool_options merged;
  qp_pool_options_init(&merged);
  memcpy(&merged, user, user->size < sizeof merged ? user->size : sizeof merged);
  merged.size = sizeof merged;
  const qp_pool_options *opts = &merged;
  qp_status st = check_options(opts, errbuf, errlen);
  if (st != QP_OK) return st;
  const qp__backend_ops *ops = qp__backend_for_dsn(opts->dsn);
  qp__berr berr;
  qp__berr_clear(&berr);
  char safe[256];
  qp__dsn_redact(opts->dsn, safe, sizeof safe);
  if (ops->check_dsn(opts->dsn, &berr) != QP_OK)
    return qp__errbuf_set(errbuf, errlen, berr.status, "pool: %s", berr.msg);

  qp_hooks h;
  qp__hooks_init(&h, opts->hooks);
  qp_pool *p = qp__calloc(&h, 1, sizeof *p);
  if (p == NULL) return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "pool: out of memory");
  p->hooks = h;
  p->ops = ops;
  p->o = *opts;
  p->o.hooks = &p->hooks;
  memcpy(p->dsn_safe, safe, sizeof safe);
  const char *host = opts->host != NULL && opts->host[0] != '\0' ? opts->host : qp_default_host();
  size_t hn = strnlen(host, sizeof p->host - 1);
  memcpy(p->host, host, hn);
  p->host[hn] = '\0';
  p->o.host = p->host;
  p->dsn = qp__strdup(&p->hooks, opts->dsn);
  p->slots = qp__calloc(&p->hooks, (size_t)opts->max_size, sizeof *p->slots);
  if (p->dsn == NULL || p->slots == NULL) goto nomem;
  p->o.dsn = p->dsn;
  p->slow_ns = opts->slow_ms > 0 ? (uint64_t)(opts->slow_ms * 1e6) : 0;
  if (opts->slow_ms > 0 && p->slow_ns == 0) p->slow_ns = 1;
  p->names = opts->profile;
  if (p->names == NULL && p->slow_ns > 0) {
    qp_profile_options po = {.hooks = &p->hooks};
    char nerr[256];
    st = qp_profile_new(&p->names, &po, nerr, sizeof nerr);
    if (st != QP_OK) {
      if (st == QP_NOMEM) goto nomem;
      qp__errbuf_set(errbuf, errlen, st, "pool: %s", nerr);
      goto fail;
    }
    p->own_names = true;
  }
  for (int i = 0; i < opts->max_size; i++) {
    p->slots[i].pool = p;
    p->slots[i].state = CS_FREE;
  }
  mutex_init(&p->mu);
  cond_init_mono(&p->maint_cond);
  p->rng = qp__now_ns() ^ ((uint64_t)(uintptr_t)p << 17) ^ 0x9e3779b97f4a7c15ull;
  if (p->rng == 0) p->rng = 1;
  atomic_init(&p->pid, (int)getpid());
  fork_guard_init(p);
  p->have_tls = pthread_key_create(&p->tls_hint, NULL) == 0; /* affinity is optional */
  if (maint_needed(p)) start_maint(p);
  if (maint_needed(p) && !p->maint_running) {
    qp__errbuf_set(errbuf, errlen, QP_ERROR, "pool: cannot start the maintenance thread");
    if (p->have_tls) pthread_key_delete(p->tls_hint);
    if (p->fork_page != NULL) munmap(p->fork_page, QP_FORK_PAGE);
    pthread_cond_destroy(&p->maint_cond);
    pthread_mutex_destroy(&p->mu);
    goto fail;
  }
  if (opts->min_size > 0) {
    pthread_mutex_lock(&p->mu);
    p->maint_kick = true;
    pthread_cond_signal(&p->maint_cond);
    pthread_mutex_unlock(&p->mu);
  }
  *out = p;
  qp__errbuf_set(errbuf, errlen, QP_OK, "%s", "");
  return QP_OK;
nomem:
  qp__errbuf_set(errbuf, errlen, QP_NOMEM, "pool: out of memory");
  st = QP_NOMEM;
fail:
  if (p->own_names) qp_profile_free(p->names);
  qp__free(&p->hooks, p->slots);
  qp__free(&p->hooks, p->dsn);
  qp__free(&p->hooks, p);
  return st;
}

void qp_pool_close(qp_pool *p) {
  if (p == NULL) return;
  check_fork(p);
  pthread_mutex_lock(&p->mu);
  p->closing = true;
  for (waiter *w = p->wq_head; w; w = w->next) pthread_cond_signal(&w->cond);
  pthread_cond_signal(&p->maint_cond);
  bool joined = p->maint_running;
  pthread_mutex_unlock(&p->mu);
  if (joined) pthread_join(p->maint, NULL);
  /* Waiters were told to leave; wait until they have (they touch p). */
  for (;;) {
    pthread_mutex_lock(&p->mu);
    int left = p->n_waiting + p->sc.n.connecting;
    pthread_mutex_unlock(&p->mu);
    if (left == 0) break;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  for (int i = 0; i < p->o.max_size; i++) {
    qp_conn *c = &p->slots[i];
    if (c->b != NULL) p->ops->close(c->b);
    c->b = NULL;
    qp__cache_conn_free(c);
  }
  pthread_cond_destroy(&p->maint_cond);
  pthread_mutex_destroy(&p->mu);
  if (p->have_tls) pthread_key_delete(p->tls_hint);
  if (p->own_names) qp_profile_free(p->names);
  if (p->fork_page != NULL) munmap(p->fork_page, QP_FORK_PAGE);
  qp__free(&p->hooks, p->slots);
  for (qp_conn *r = p->retired_slots, *next; r; r = next) {
    next = r[0].next_idle;
    qp__free(&p->hooks, r);
  }
  qp__free(&p->hooks, p->dsn);
  qp__free(&p->hooks, p);
}

/* ---- acquire ------------------------------------------------------------ */

/* One acquire in progress: what its steps share. The mutex is held on entry
 * to and exit from every step; steps that do network work drop it. */
typedef struct acq {
  qp_pool *p;
  qp_conn *got;          /* the leased connection, once there is one */
  qp_status st;          /* the result, once decided */
  uint64_t t0, deadline; /* start; when to give up */
  int64_t timeout_ms;
  const char *file;
  int line;
  char *errbuf; /* this call's message (may be NULL) */
  size_t errlen;
  waiter w;
  bool w_init; /* w.cond is only set up when the caller has to wait */
} acq;

/* What a step decided. */
typedef enum step { STEP_NEXT, STEP_AGAIN, STEP_DONE } step;

static step acq_fail(acq *a, qp_status st, const char *fmt, ...) QP_PRINTF(3, 4);
static step acq_fail(acq *a, qp_status st, const char *fmt, ...) {
  qp_pool *p = a->p;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->errmsg, sizeof p->errmsg, fmt, ap);
  va_end(ap);
  if (a->errbuf != NULL && a->errlen > 0) snprintf(a->errbuf, a->errlen, "%s", p->errmsg);
  switch (st) {
  case QP_EXHAUSTED: p->c.timeouts++; break;
  case QP_WOULDBLOCK: p->c.wouldblocks++; break;
  case QP_UNAVAILABLE: p->c.unavailable++; break;
  default: break;
  }
  a->st = st;
  return STEP_DONE;
}

static step acq_unavailable(acq *a) {
  return acq_fail(a, QP_UNAVAILABLE, "database unavailable (%s): %s", a->p->dsn_safe,
                  a->p->last_connect_err.msg);
}

/* Marks c (IDLE, CHECKING, HANDED or CONNECTING) leased by the caller. */
static inline __attribute__((always_inline)) void lease(qp_pool *p, qp_conn *c, uint64_t t0,
                                                        uint64_t now, const char *file,
                                                        int line) {
  conn_set_state(p, c, CS_IN_USE);
  c->acquired_ns = now;
  c->holder_file = file;
  c->holder_line = line;
  c->holder_thread = (unsigned long)pthread_self();
  c->leak_reported = false;
  /* Only a connection that sat idle for a while is checked before its first
   * statement: one that was in use a moment ago cannot have been told
   * anything by the server since. */
  c->fresh = c->idle_since_ns == 0 || qp__ns_since(now, c->idle_since_ns) >= QP_POOL_PRECHECK_IDLE_NS;
  uint64_t waited = qp__ns_since(now, t0);
  p->c.acquires++;
  p->c.acquire_hist[qp__pool_bucket(waited)]++;
  p->c.total_wait_time_us += waited / 1000;
}

static step acq_lease(acq *a, qp_conn *c, uint64_t now) {
  lease(a->p, c, a->t0, now, a->file, a->line);
  a->got = c;
  a->st = QP_OK;
  return STEP_DONE;
}

/* A connection past its lifetime, or idle for longer than validation_ms,
 * is retired or checked before it is handed out. */
static inline bool needs_check(const qp_pool *p, const qp_conn *c, uint64_t now, bool *expired) {
  *expired = c->retire_ns != 0 && now >= c->retire_ns;
  return *expired || (p->o.validation_ms > 0 && c->idle_since_ns != 0 &&
                      qp__ns_since(now, c->idle_since_ns) >= ms_to_ns(p->o.validation_ms));
}

static void acq_queue(acq *a, bool front) {
  if (!a->w_init) {
    cond_init_mono(&a->w.cond);
    a->w_init = true;
  }
  if (!a->w.queued) {
    if (front) wq_push_front(a->p, &a->w);
    else wq_push(a->p, &a->w);
  }
}

/* Step 1: a connection handed over by a release, or an idle one when no
 * one waits longer than we do. */
static qp_conn *acq_take(acq *a) {
  qp_pool *p = a->p;
  if (a->w.conn != NULL) {
    qp_conn *c = a->w.conn;
    a->w.conn = NULL;
    return c;
  }
  if ((p->wq_head == NULL || p->wq_head == &a->w) && p->idle != NULL) {
    wq_remove(p, &a->w);
    return idle_take(p);
  }
  return NULL;
}

/* Step 2: leases a taken connection, after checking it when it sat idle
 * for longer than validation_ms, or retiring it when past its lifetime
 * (STEP_AGAIN: it was closed, look again). */
static step acq_check(acq *a, qp_conn *c, uint64_t now) {
  qp_pool *p = a->p;
  bool expired;
  if (!needs_check(p, c, now, &expired)) return acq_lease(a, c, now);
  conn_set_state(p, c, CS_CHECKING);
  pthread_mutex_unlock(&p->mu);
  qp__berr err;
  qp__berr_clear(&err);
  bool ok = !expired && p->ops->ping(c->b, p->o.connect_timeout_ms, &err) == QP_OK;
  pthread_mutex_lock(&p->mu);
  if (ok) return acq_lease(a, c, qp__now_ns());
  if (expired) p->c.expired++;
  else {
    p->c.validation_failures++;
    qp__log(&p->hooks, QP_LOG_INFO, "pool %s: validation failed, reconnecting: %s", p->dsn_safe,
            err.msg);
  }
  qp__bconn *b = slot_free(p, c);
  pthread_mutex_unlock(&p->mu);
  p->ops->close(b);
  pthread_mutex_lock(&p->mu);
  return STEP_AGAIN;
}

/* Step 3: opens a new connection when it is our turn and a slot is free.
 * During a backoff after a permanent failure the acquire fails at once
 * with the cause; after a transient one (57P03, 53300) it waits for the
 * backoff at the head of the queue. STEP_NEXT: nothing to open now. */
static step acq_open(acq *a, uint64_t now) {
  qp_pool *p = a->p;
  bool my_turn = p->wq_head == NULL || p->wq_head == &a->w;
  if (!my_turn || !can_open(p)) return STEP_NEXT;
  if (in_backoff(p, now)) {
    if (p->last_connect_err.transient) return STEP_NEXT;
    wq_remove(p, &a->w);
    wake_head(p);
    return acq_unavailable(a);
  }
  if (a->timeout_ms == 0) return STEP_NEXT; /* a try-acquire never connects */
  qp_conn *c = free_slot(p);
  conn_set_state(p, c, CS_CONNECTING);
  wq_remove(p, &a->w);
  wake_head(p); /* the next waiter may open another slot */
  uint64_t left_ms = (a->deadline - now) / 1000000u;
  int64_t cto = p->o.connect_timeout_ms;
  if ((uint64_t)cto > left_ms) cto = left_ms > 0 ? (int64_t)left_ms : 1;
  pthread_mutex_unlock(&p->mu);
  qp__berr err;
  qp__berr_clear(&err);
  qp_status cs = open_backend(p, c, cto, &err);
  pthread_mutex_lock(&p->mu);
  if (cs == QP_OK) return acq_lease(a, c, qp__now_ns());
  conn_set_state(p, c, CS_FREE);
  wake_head(p);
  if (cs == QP_NOMEM) return acq_fail(a, QP_NOMEM, "out of memory opening a connection");
  if (!err.transient || qp__now_ns() >= a->deadline) return acq_unavailable(a);
  /* starting up, or too many connections: wait for the backoff, keeping
   * our place at the head of the queue */
  acq_queue(a, true);
  return STEP_AGAIN;
}

/* Step 4: a try-acquire that found nothing, or the deadline. A timeout is
 * QP_EXHAUSTED only when every connection the pool may open is open and
 * leased; while connections could still be opened and the last attempt
 * failed, the database is the cause (QP_UNAVAILABLE). */
static step acq_give_up(acq *a, uint64_t now) {
  qp_pool *p = a->p;
  if (a->timeout_ms == 0) {
    if (can_open(p) && p->sc.n.connecting == 0 && ensure_maint(p)) {
      p->maint_kick = true;
      p->maint_want_one = true;
      pthread_cond_signal(&p->maint_cond);
    }
    return acq_fail(a, QP_WOULDBLOCK, "no connection free right now (%d in use of %d)",
                    p->sc.n.in_use, p->o.max_size);
  }
  if (now < a->deadline) return STEP_NEXT;
  wq_remove(p, &a->w);
  wake_head(p);
  if (p->have_connect_err && (can_open(p) || p->sc.n.open == 0)) return acq_unavailable(a);
  return acq_fail(a, QP_EXHAUSTED,
                  "timed out after %" PRId64 " ms waiting for a connection "
                  "(%d of %d in use, %d waiting)",
                  a->timeout_ms, p->sc.n.in_use, p->o.max_size, p->n_waiting);
}

/* Step 5: waits in the queue for a release, the deadline, or the end of a
 * backoff when we are first in line to open a connection. */
static void acq_wait(acq *a, uint64_t now) {
  qp_pool *p = a->p;
  acq_queue(a, false);
  uint64_t wake = a->deadline;
  if (p->wq_head == &a->w && can_open(p) && in_backoff(p, now) && p->next_connect_ns < wake)
    wake = p->next_connect_ns;
  struct timespec ts;
  qp__timespec_after(&ts, qp__ns_since(wake, now));
  pthread_cond_timedwait(&a->w.cond, &p->mu, &ts);
}

/* Everything but the fast path: steps 1-5 until one decides. Mutex held on
 * entry (and released here); `c` is a connection already taken, or NULL. */
static QP_NOINLINE qp_status acquire_slow(qp_pool *p, qp_conn **out, qp_conn *c, uint64_t t0,
                                          int64_t timeout_ms, const char *file, int line,
                                          char *errbuf, size_t errlen) {
  acq a;
  a.p = p;
  a.got = NULL;
  a.st = QP_OK;
  a.t0 = t0;
  a.timeout_ms = timeout_ms < 0 ? p->o.acquire_timeout_ms : timeout_ms;
  a.deadline = t0 + ms_to_ns(a.timeout_ms);
  a.file = file;
  a.line = line;
  a.errbuf = errbuf;
  a.errlen = errlen;
  a.w.next = a.w.prev = NULL;
  a.w.conn = NULL;
  a.w.queued = false;
  a.w.since = t0;
  a.w_init = false;
  bool first = true;
  for (;;) {
    if (p->closing) {
      if (c != NULL) conn_return(p, c, qp__now_ns());
      acq_fail(&a, QP_CLOSED, "pool is closing");
      break;
    }
    if (!first) c = acq_take(&a);
    /* the first pass uses the time read before locking: no clock read
     * while holding the mutex on the fast path */
    uint64_t now = first ? t0 : qp__now_ns();
    first = false;
    step s = c != NULL ? acq_check(&a, c, now) : acq_open(&a, now);
    c = NULL;
    if (s == STEP_NEXT) s = acq_give_up(&a, now);
    if (s == STEP_DONE) break;
    if (s == STEP_NEXT) acq_wait(&a, now);
  }
  if (a.w.queued) {
    wq_remove(p, &a.w);
    wake_head(p);
  }
  if (a.w.conn != NULL) conn_return(p, a.w.conn, qp__now_ns()); /* raced with a failure */
  pthread_mutex_unlock(&p->mu);
  if (a.w_init) pthread_cond_destroy(&a.w.cond);
  *out = a.got;
  return a.st;
}

qp_status qp_pool_acquire_err(qp_pool *p, qp_conn **out, int64_t timeout_ms, const char *file,
                              int line, char *errbuf, size_t errlen) {
  if (errbuf != NULL && errlen > 0) errbuf[0] = '\0';
  if (out == NULL) return qp__errbuf_set(errbuf, errlen, QP_INVALID, "conn is NULL");
  *out = NULL;
  if (p == NULL) return qp__errbuf_set(errbuf, errlen, QP_INVALID, "no pool");
  check_fork(p);
  uint64_t t0 = qp__now_ns();
  pthread_mutex_lock(&p->mu);
  /* The fast path (step 1 and 2 without a wait): nobody queued and an idle
   * connection that needs no check. */
  qp_conn *c = NULL;
  if (QP_LIKELY(!p->closing && p->wq_head == NULL)) {
    c = idle_take(p);
    bool expired;
    if (QP_LIKELY(c != NULL) && !needs_check(p, c, t0, &expired)) {
      lease(p, c, t0, t0, file, line);
      pthread_mutex_unlock(&p->mu);
      *out = c;
      return QP_OK;
    }
  }
  return acquire_slow(p, out, c, t0, timeout_ms, file, line, errbuf, errlen);
}

qp_status qp_pool_acquire_at(qp_pool *p, qp_conn **out, int64_t timeout_ms, const char *file,
                             int line) {
  return qp_pool_acquire_err(p, out, timeout_ms, file, line, NULL, 0);
}

/* ---- release ------------------------------------------------------------ */

void qp_pool_release(qp_conn *c) {
  if (c == NULL) return;
  qp_pool *p = c->pool;
  /* (reading state unlocked is safe: only the holder moves a leased slot) */
  if (c->state != CS_IN_USE || c->b == NULL) return; /* dropped by a fork */
  /* never roll back or reset the parent's session from a child */
  check_fork(p);
  if (c->state != CS_IN_USE || c->b == NULL) return;
  const qp__backend_ops *ops = p->ops;
  qp_txn_status t = ops->txn_status(c->b);
  uint64_t now = qp__now_ns();
  bool ok = !ops->is_broken(c->b), rolled = false, reset = false, broken = !ok;
  qp__berr err;
  err.msg[0] = '\0';
  if (ok) {
    if (t == QP_TXN_INTRANS || t == QP_TXN_INERROR) {
      rolled = true;
      ok = ops->rollback(c->b, &err) == QP_OK;
    } else if (t != QP_TXN_IDLE) {
      ok = false;
    }
  }
  if (ok && (p->o.reset == QP_RESET_ALWAYS || (p->o.reset == QP_RESET_AUTO && c->session_dirty))) {
    reset = true;
    ok = ops->reset(c->b, &err) == QP_OK; /* reads user and application again */
  } else if (ok && rolled && c->dims_watch != 0) {
    /* a role or application_name set in the block just rolled back is gone:
     * the next lease must not be charged to it */
    const char *u, *a;
    ops->dims(c->b, c->dims_watch, &u, &a);
  }
  c->dims_watch = 0;
  if (!ok && !broken && err.msg[0])
    qp__log(&p->hooks, QP_LOG_WARN, "pool %s: discarding a connection: %s", p->dsn_safe, err.msg);
  c->session_dirty = false;
  if (c->cache != NULL && (rolled || reset || !ok)) qp__cache_conn_forget(c);
  bool expired = ok && c->retire_ns != 0 && now >= c->retire_ns;
  qp__bconn *to_close = NULL;
  pthread_mutex_lock(&p->mu);
  p->c.total_xact_count++;
  p->c.total_query_count += c->q_count;
  p->c.total_query_time_us += c->q_time_ns / 1000;
  p->c.total_error_count += c->q_errors;
  p->c.reprepares += c->reprepares;
  p->c.cache_hits += c->cache_hits;
  p->c.cache_misses += c->cache_misses;
  c->q_count = c->q_time_ns = c->q_errors = c->reprepares = c->cache_hits = c->cache_misses = 0;
  p->c.hold_hist[qp__pool_bucket(qp__ns_since(now, c->acquired_ns))]++;
  if (rolled) p->c.rollbacks++;
  if (reset) p->c.resets++;
  c->holder_file = NULL;
  if (!ok || expired) {
    if (!ok) p->c.broken++;
    else p->c.expired++;
    to_close = slot_free(p, c);
  } else {
    conn_return(p, c, now);
    /* (the hint is usually this connection already: skip the store) */
    if (p->have_tls && pthread_getspecific(p->tls_hint) != c) pthread_setspecific(p->tls_hint, c);
  }
  maint_inline(p, now);
  pthread_mutex_unlock(&p->mu);
  if (to_close != NULL) ops->close(to_close);
}

const char *qp_pool_errmsg(qp_pool *p, char *buf, size_t len) {
  if (buf == NULL || len == 0) return buf;
  if (p == NULL) {
    snprintf(buf, len, "no pool");
    return buf;
  }
  check_fork(p);
  pthread_mutex_lock(&p->mu);
  snprintf(buf, len, "%s", p->errmsg);
  pthread_mutex_unlock(&p->mu);
  return buf;
}
