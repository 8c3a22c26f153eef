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

static int64_t table_int(const char *name) {
  const qp_option_info *o = qp_option_find(name);
  return o ? strtoll(o->default_value, NULL, 10) : 0;
}

void qp_pool_options_init(qp_pool_options *o) {
  memset(o, 0, sizeof *o);
  o->min_size = (int)table_int("pool.min_size");
  o->max_size = (int)table_int("pool.max_size");
  o->acquire_timeout_ms = table_int("pool.acquire_timeout_ms");
  o->connect_timeout_ms = table_int("pool.connect_timeout_ms");
  o->max_lifetime_ms = table_int("pool.max_lifetime_ms");
  o->idle_timeout_ms = table_int("pool.idle_timeout_ms");
  o->validation_ms = table_int("pool.validation_ms");
  o->leak_ms = table_int("pool.leak_ms");
  const qp_option_info *slow = qp_option_find("slow_ms");
  o->slow_ms = slow ? strtod(slow->default_value, NULL) : 0;
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
  const char *r = qp_config_string(cfg, "pool.reset");
  if (!parse_reset(r, &reset))
    return qp__errbuf_set(errbuf, errlen, QP_INVALID,
                          "pool.reset: '%s' is not one of auto, always, never", r);
  o->min_size = (int)qp_config_int(cfg, "pool.min_size");
  o->max_size = (int)qp_config_int(cfg, "pool.max_size");
  o->acquire_timeout_ms = qp_config_int(cfg, "pool.acquire_timeout_ms");
  o->connect_timeout_ms = qp_config_int(cfg, "pool.connect_timeout_ms");
  o->max_lifetime_ms = qp_config_int(cfg, "pool.max_lifetime_ms");
  o->idle_timeout_ms = qp_config_int(cfg, "pool.idle_timeout_ms");
  o->validation_ms = qp_config_int(cfg, "pool.validation_ms");
  o->leak_ms = qp_config_int(cfg, "pool.leak_ms");
  o->slow_ms = qp_config_double(cfg, "slow_ms");
  o->reset = reset;
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

static qp_conn *free_slot(qp_pool *p) {
  for (int i = 0; i < p->o.max_size; i++)
    if (p->slots[i].state == CS_FREE) return &p->slots[i];
  return NULL;
}

static bool can_open(const qp_pool *p) { return p->n_open + p->n_connecting < p->o.max_size; }

static bool in_backoff(const qp_pool *p, uint64_t now) {
  return p->have_connect_err && now < p->next_connect_ns;
}

static void idle_push(qp_pool *p, qp_conn *c, uint64_t now) {
  c->state = CS_IDLE;
  c->idle_since_ns = now;
  c->next_idle = p->idle;
  p->idle = c;
  p->n_idle++;
}

static qp_conn *idle_pop(qp_pool *p) {
  qp_conn *c = p->idle;
  if (c == NULL) return NULL;
  p->idle = c->next_idle;
  c->next_idle = NULL;
  p->n_idle--;
  c->state = CS_IN_USE;
  return c;
}

static void idle_unlink(qp_pool *p, qp_conn *c);

/* The idle connection this thread released last, if it is still idle:
 * like HikariCP's thread-local list, a thread keeps reusing "its"
 * connection, whose buffers and statement cache are still in this CPU's
 * cache, instead of taking whichever was released last by anyone. The hint
 * is only compared as an address before it is trusted (it may be stale). */
static qp_conn *idle_pop_affine(qp_pool *p) {
  if (p->have_tls) {
    qp_conn *h = pthread_getspecific(p->tls_hint);
    uintptr_t a = (uintptr_t)h, lo = (uintptr_t)p->slots,
              hi = (uintptr_t)(p->slots + p->o.max_size);
    if (h != NULL && a >= lo && a < hi && h->state == CS_IDLE) {
      idle_unlink(p, h);
      h->state = CS_IN_USE;
      return h;
    }
  }
  return idle_pop(p);
}

static void idle_unlink(qp_pool *p, qp_conn *c) {
  for (qp_conn **pp = &p->idle; *pp; pp = &(*pp)->next_idle) {
    if (*pp == c) {
      *pp = c->next_idle;
      c->next_idle = NULL;
      p->n_idle--;
      return;
    }
  }
}

/* Takes the backend connection out of a slot and frees the slot; the caller
 * closes the returned connection outside the mutex. */
static qp__bconn *slot_free(qp_pool *p, qp_conn *c) {
  qp__bconn *b = c->b;
  c->b = NULL;
  c->state = CS_FREE;
  p->n_open--;
  p->c.closed++;
  wake_head(p);
  p->maint_kick = true;
  pthread_cond_signal(&p->maint_cond);
  return b;
}

/* Hands a healthy connection to the longest waiter, or back to the idle
 * stack. */
static void conn_return(qp_pool *p, qp_conn *c, uint64_t now) {
  waiter *w = p->wq_head;
  if (w != NULL) {
    wq_remove(p, w);
    c->state = CS_IN_USE;
    c->idle_since_ns = now;
    w->conn = c;
    pthread_cond_signal(&w->cond);
    return;
  }
  idle_push(p, c, now);
}

/* Opens a backend connection for a reserved slot (mutex NOT held). */
static qp_status open_backend(qp_pool *p, qp_conn *c, int64_t timeout_ms, qp__berr *err) {
  qp__bconnect_opts bo = {&p->hooks, timeout_ms, QP_POOL_STMT_CACHE_MAX};
  uint64_t t0 = qp__now_ns();
  qp__bconn *b = NULL;
  qp_status st = p->ops->connect(p->dsn, &bo, &b, err);
  uint64_t t1 = qp__now_ns();
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
    p->have_connect_err = true;
    p->last_connect_err = *err;
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
  p->n_open = p->n_connecting = p->n_in_use = p->n_idle = 0;
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
    bool idle_long = p->o.idle_timeout_ms > 0 && p->n_open > p->o.min_size &&
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
         (p->n_open + p->n_connecting < p->o.min_size || (asked && p->n_idle == 0))) {
    qp_conn *c = free_slot(p);
    if (c == NULL) break;
    c->state = CS_CONNECTING;
    p->n_connecting++;
    asked = false;
    pthread_mutex_unlock(&p->mu);
    qp__berr err;
    qp__berr_clear(&err);
    qp_status st = open_backend(p, c, p->o.connect_timeout_ms, &err);
    pthread_mutex_lock(&p->mu);
    p->n_connecting--;
    if (st != QP_OK) {
      c->state = CS_FREE;
      wake_head(p);
      break;
    }
    p->n_open++;
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

qp_status qp_pool_open(qp_pool **out, const qp_pool_options *opts, char *errbuf, size_t errlen) {
  if (out == NULL || opts == NULL)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "pool: out and opts are required");
  *out = NULL;
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
    int left = p->n_waiting + p->n_connecting;
    pthread_mutex_unlock(&p->mu);
    if (left == 0) break;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  for (int i = 0; i < p->o.max_size; i++) {
    qp_conn *c = &p->slots[i];
    if (c->b != NULL) p->ops->close(c->b);
    c->b = NULL;
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

static qp_status acquire_fail(qp_pool *p, qp_status st, const char *fmt, ...) QP_PRINTF(3, 4);
static qp_status acquire_fail(qp_pool *p, qp_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->errmsg, sizeof p->errmsg, fmt, ap);
  va_end(ap);
  switch (st) {
  case QP_EXHAUSTED: p->c.timeouts++; break;
  case QP_WOULDBLOCK: p->c.wouldblocks++; break;
  case QP_UNAVAILABLE: p->c.unavailable++; break;
  default: break;
  }
  return st;
}

static qp_status unavailable(qp_pool *p) {
  return acquire_fail(p, QP_UNAVAILABLE, "database unavailable (%s): %s", p->dsn_safe,
                      p->last_connect_err.msg);
}

/* Marks c leased by the caller. Mutex held. */
static void lease(qp_pool *p, qp_conn *c, uint64_t t0, uint64_t now, const char *file, int line) {
  c->state = CS_IN_USE;
  c->acquired_ns = now;
  c->holder_file = file;
  c->holder_line = line;
  c->holder_thread = (unsigned long)pthread_self();
  c->leak_reported = false;
  /* Only a connection that sat idle for a while is checked before its first
   * statement: one that was in use a moment ago cannot have been told
   * anything by the server since. */
  c->fresh = c->idle_since_ns == 0 || qp__ns_since(now, c->idle_since_ns) >= QP_POOL_PRECHECK_IDLE_NS;
  p->n_in_use++;
  p->c.acquires++;
  p->c.acquire_hist[qp__pool_bucket(qp__ns_since(now, t0))]++;
  p->c.wait_us += qp__ns_since(now, t0) / 1000;
}

qp_status qp_pool_acquire_at(qp_pool *p, qp_conn **out, int64_t timeout_ms, const char *file,
                             int line) {
  if (out == NULL) return QP_INVALID;
  *out = NULL;
  if (p == NULL) return QP_INVALID;
  check_fork(p);
  uint64_t t0 = qp__now_ns();
  if (timeout_ms < 0) timeout_ms = p->o.acquire_timeout_ms;
  uint64_t deadline = t0 + ms_to_ns(timeout_ms);
  waiter w;
  w.next = w.prev = NULL;
  w.conn = NULL;
  w.queued = false;
  w.since = t0;
  bool w_init = false; /* w.cond is only set up when the caller has to wait */
  bool first = true;
  qp_status st = QP_OK;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    if (p->closing) {
      st = acquire_fail(p, QP_CLOSED, "pool is closing");
      break;
    }
    qp_conn *c = NULL;
    if (w.conn != NULL) { /* handed over by a release */
      c = w.conn;
      w.conn = NULL;
    } else if ((p->wq_head == NULL || p->wq_head == &w) && p->idle != NULL) {
      wq_remove(p, &w);
      c = idle_pop_affine(p);
    }
    /* the first pass uses the time read before locking: no clock read
     * while holding the mutex on the fast path */
    uint64_t now = first ? t0 : qp__now_ns();
    first = false;
    if (c != NULL) {
      /* A connection idle for longer than validation_ms, or past its
       * lifetime, is checked (or retired) before it is handed out. */
      bool expired = c->retire_ns != 0 && now >= c->retire_ns;
      bool stale = p->o.validation_ms > 0 && c->idle_since_ns != 0 &&
                   qp__ns_since(now, c->idle_since_ns) >= ms_to_ns(p->o.validation_ms);
      if (!expired && !stale) {
        lease(p, c, t0, now, file, line);
        *out = c;
        break;
      }
      pthread_mutex_unlock(&p->mu);
      qp__berr err;
      qp__berr_clear(&err);
      bool ok = !expired && p->ops->ping(c->b, p->o.connect_timeout_ms, &err) == QP_OK;
      pthread_mutex_lock(&p->mu);
      if (ok) {
        lease(p, c, t0, qp__now_ns(), file, line);
        *out = c;
        break;
      }
      if (expired) p->c.expired++;
      else {
        p->c.validation_failures++;
        qp__log(&p->hooks, QP_LOG_INFO, "pool %s: validation failed, reconnecting: %s",
                p->dsn_safe, err.msg);
      }
      qp__bconn *b = slot_free(p, c);
      pthread_mutex_unlock(&p->mu);
      p->ops->close(b);
      pthread_mutex_lock(&p->mu);
      continue;
    }
    bool my_turn = p->wq_head == NULL || p->wq_head == &w;
    if (my_turn && can_open(p)) {
      if (in_backoff(p, now) && !p->last_connect_err.transient) {
        wq_remove(p, &w);
        wake_head(p);
        st = unavailable(p);
        break;
      }
      if (!in_backoff(p, now) && timeout_ms > 0) {
        c = free_slot(p);
        c->state = CS_CONNECTING;
        p->n_connecting++;
        wq_remove(p, &w);
        wake_head(p); /* the next waiter may open another slot */
        uint64_t left_ms = (deadline - now) / 1000000u;
        int64_t cto = p->o.connect_timeout_ms;
        if ((uint64_t)cto > left_ms) cto = left_ms > 0 ? (int64_t)left_ms : 1;
        pthread_mutex_unlock(&p->mu);
        qp__berr err;
        qp__berr_clear(&err);
        qp_status cs = open_backend(p, c, cto, &err);
        pthread_mutex_lock(&p->mu);
        p->n_connecting--;
        if (cs == QP_OK) {
          p->n_open++;
          lease(p, c, t0, qp__now_ns(), file, line);
          *out = c;
          break;
        }
        c->state = CS_FREE;
        wake_head(p);
        if (cs == QP_NOMEM) {
          st = acquire_fail(p, QP_NOMEM, "out of memory opening a connection");
          break;
        }
        if (!err.transient || qp__now_ns() >= deadline) {
          st = unavailable(p);
          break;
        }
        /* starting up, or too many connections: wait for the backoff, keeping
         * our place at the head of the queue */
        if (!w_init) {
          cond_init_mono(&w.cond);
          w_init = true;
        }
        if (!w.queued) wq_push_front(p, &w);
        continue;
      }
    }
    if (timeout_ms == 0) {
      if (can_open(p) && p->n_connecting == 0 && ensure_maint(p)) {
        p->maint_kick = true;
        p->maint_want_one = true;
        pthread_cond_signal(&p->maint_cond);
      }
      st = acquire_fail(p, QP_WOULDBLOCK, "no connection free right now (%d in use of %d)",
                        p->n_in_use, p->o.max_size);
      break;
    }
    if (now >= deadline) {
      wq_remove(p, &w);
      wake_head(p);
      if (p->n_open == 0 && p->have_connect_err) st = unavailable(p);
      else
        st = acquire_fail(p, QP_EXHAUSTED,
                          "timed out after %" PRId64 " ms waiting for a connection "
                          "(%d of %d in use, %d waiting)",
                          timeout_ms, p->n_in_use, p->o.max_size, p->n_waiting);
      break;
    }
    if (!w_init) {
      cond_init_mono(&w.cond);
      w_init = true;
    }
    if (!w.queued) wq_push(p, &w);
    uint64_t wake = deadline;
    if (p->wq_head == &w && can_open(p) && in_backoff(p, now) && p->next_connect_ns < wake)
      wake = p->next_connect_ns;
    struct timespec ts;
    qp__timespec_after(&ts, qp__ns_since(wake, now));
    pthread_cond_timedwait(&w.cond, &p->mu, &ts);
  }
  if (w.queued) {
    wq_remove(p, &w);
    wake_head(p);
  }
  if (w.conn != NULL) conn_return(p, w.conn, qp__now_ns()); /* raced with a failure */
  pthread_mutex_unlock(&p->mu);
  if (w_init) pthread_cond_destroy(&w.cond);
  return st;
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
    ok = ops->reset(c->b, &err) == QP_OK;
  }
  if (!ok && !broken && err.msg[0])
    qp__log(&p->hooks, QP_LOG_WARN, "pool %s: discarding a connection: %s", p->dsn_safe, err.msg);
  c->session_dirty = false;
  bool expired = ok && c->retire_ns != 0 && now >= c->retire_ns;
  qp__bconn *to_close = NULL;
  pthread_mutex_lock(&p->mu);
  p->n_in_use--;
  p->c.xacts++;
  p->c.q_count += c->q_count;
  p->c.q_time_us += c->q_time_ns / 1000;
  p->c.q_errors += c->q_errors;
  p->c.reprepares += c->reprepares;
  c->q_count = c->q_time_ns = c->q_errors = c->reprepares = 0;
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
