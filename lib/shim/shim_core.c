/*
 * The shim's process-wide state: configuration, the profile, the store, the
 * flush thread, fork and exit handling, logging, and real-symbol lookup.
 *
 * Life of a process under the shim:
 *   - nothing happens until the first interposed call; it reads the QPROF_*
 *     variables (shim_init_slow). A bad value disables the shim for good.
 *   - the first recorded query creates the profile and registers the exit
 *     flush (shim_record -> start_recording). A process that runs no query
 *     never gets that far: no thread, no store file.
 *   - every flush_ms the profile moves into the store; the store is opened at
 *     the first flush. If it cannot be opened the shim says so once and stops
 *     recording; the program runs on. In a multi-threaded program a
 *     background thread flushes. A single-threaded program gets no thread:
 *     the query that finds the interval over flushes inline. A second thread
 *     would make every pthread mutex in the process (SQLite takes several per
 *     statement) use atomic instructions instead of glibc's single-threaded
 *     fast path, which measured ~100 ns per SQLite statement here
 *     (docs/performance.md). The thread starts at the first query recorded
 *     after the program itself has become multi-threaded.
 *   - fork(): the child forgets the parent's profile, store connection and
 *     flush thread, and starts its own at its first query.
 *   - exit(): the last flush, in the process that recorded.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/single_threaded.h>
#include <time.h>
#include <unistd.h>

#include "qprof/config.h"
#include "qprof/store.h"
#include "shim_int.h"

SHIM_TLS unsigned shim_t_inside;
_Atomic int shim_state;

/* ---- per-thread scratch buffer ------------------------------------------
 * A prepared statement is normalized into it, then copied at its length:
 * one allocation per thread instead of an 8 KB one per prepare. It is not
 * a static TLS array because the static TLS block is paid for by every
 * thread of the host, including the many that never run a query. */
static SHIM_TLS char *t_scratch;
static pthread_key_t g_scratch_key;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;
static bool g_scratch_key_ok;

/* Runs in the exiting thread: a destructor of another library that still
 * prepares a statement afterwards gets a new buffer, never a freed one. */
static void scratch_free(void *buf) {
  t_scratch = NULL;
  qp__free(NULL, buf);
}

static void scratch_key_init(void) {
  g_scratch_key_ok = pthread_key_create(&g_scratch_key, scratch_free) == 0;
}

char *shim_scratch(void) {
  if (QP_LIKELY(t_scratch != NULL)) return t_scratch;
  pthread_once(&g_scratch_once, scratch_key_init);
  if (!g_scratch_key_ok) return NULL;
  char *buf = qp__malloc(NULL, QP_NORMALIZED_MAX);
  if (buf == NULL) return NULL;
  if (pthread_setspecific(g_scratch_key, buf) != 0) {
    qp__free(NULL, buf);
    return NULL;
  }
  t_scratch = buf;
  return buf;
}

#define SHARD_INIT {.mu = PTHREAD_MUTEX_INITIALIZER}
#define MAP_INIT {.shards = {[0 ... SHIM_MAP_SHARDS - 1] = SHARD_INIT}}
shim_map shim_pq_conns = MAP_INIT, shim_sq_dbs = MAP_INIT, shim_sq_stmts = MAP_INIT;
static shim_map *const all_maps[] = {&shim_pq_conns, &shim_sq_dbs, &shim_sq_stmts};

/* ---- configuration (set once, by init_once) ------------------------------ */
static pthread_once_t init_once_ctl = PTHREAD_ONCE_INIT;
static qp_config *g_cfg;
static qp_normalizer *g_norm[2];
static char **g_rules;
static size_t g_nrules;
static char **g_redact;
static size_t g_nredact;
static int64_t g_flush_ms;
static uint64_t g_slow_ns;
static qp_hooks g_hooks; /* default allocator, log to QPROF_LOG */
static char *g_store_path; /* absolute path of a file store, or NULL */

/* ---- logging ------------------------------------------------------------- *
 * A log file is opened for each line, never kept open: a program that closes
 * every descriptor (a daemon) and reuses the numbers must not find qprof's
 * lines in its own files. Logging is rare (errors, slow queries). */
static bool g_log_on;
static bool g_log_stderr;
static char *g_log_path;

bool shim_log_enabled(void) { return g_log_on; }

static void vlog(qp_log_level level, const char *fmt, va_list ap) {
  if (!g_log_on) return;
  int saved = errno;
  char line[1200];
  int n = snprintf(line, sizeof line, "qprof[%ld] %s: ", (long)getpid(), qp_log_level_name(level));
  if (n < 0) n = 0;
  int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  if (m < 0) m = 0;
  size_t len = (size_t)n + (size_t)m;
  if (len > sizeof line - 2) len = sizeof line - 2;
  line[len++] = '\n';
  /* One write() per line: lines from several threads and processes do not
   * interleave in an O_APPEND file. */
  int fd = g_log_stderr ? STDERR_FILENO
                        : open(g_log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd >= 0) {
    ssize_t w = write(fd, line, len);
    (void)w;
    if (!g_log_stderr) close(fd);
  }
  errno = saved;
}

void shim_log(qp_log_level level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(level, fmt, ap);
  va_end(ap);
}

static void hook_log(qp_log_level level, const char *message, void *ud) {
  QP_UNUSED(ud);
  shim_log(level, "%s", message);
}

static void open_log(void) {
  const char *dest = getenv("QPROF_LOG");
  if (dest == NULL || dest[0] == '\0') return;
  if (strcmp(dest, "stderr") == 0) {
    g_log_stderr = true;
  } else {
    g_log_path = qp__strdup(NULL, dest);
    if (g_log_path == NULL) return;
  }
  g_log_on = true;
}

/* ---- real symbols -------------------------------------------------------- */
void *shim_real(_Atomic(void *) *slot, const char *name, const char *soname) {
  int saved = errno;
  void *p = dlsym(RTLD_NEXT, name);
  if (p == NULL) {
    /* The library was dlopen'ed after us (python's _sqlite3, psycopg2):
     * RTLD_NEXT does not see it, but the already-loaded object does. The
     * handle is kept: the program loaded the library and we now point into
     * it, so it must not go away under us. */
    void *h = dlopen(soname, RTLD_NOLOAD | RTLD_LAZY);
    if (h != NULL) p = dlsym(h, name);
  }
  if (p != NULL) atomic_store_explicit(slot, p, memory_order_release);
  else shim_log(QP_LOG_ERROR, "cannot find the real %s in the process", name);
  errno = saved;
  return p;
}

void *shim_stub_null(void) {
  errno = ENOSYS;
  return NULL;
}
int shim_stub_zero(void) {
  errno = ENOSYS;
  return 0;
}
int shim_stub_minus1(void) {
  errno = ENOSYS;
  return -1;
}
int shim_stub_misuse(void) {
  errno = ENOSYS;
  return 21; /* SQLITE_MISUSE */
}

/* ---- configuration ------------------------------------------------------- */
/* Splits `text` at new lines into a NULL-terminated malloc'd array. */
static bool split_lines(const char *text, char ***out, size_t *count) {
  *out = NULL;
  *count = 0;
  if (text == NULL || text[0] == '\0') return true;
  size_t n = 1;
  for (const char *p = text; *p; p++) n += *p == '\n';
  char **v = qp__calloc(NULL, n + 1, sizeof *v);
  if (v == NULL) return false;
  size_t k = 0;
  const char *start = text;
  for (;;) {
    const char *end = strchr(start, '\n');
    size_t len = end ? (size_t)(end - start) : strlen(start);
    if (len > 0 && start[len - 1] == '\r') len--;
    if (len > 0) {
      v[k] = qp__strndup(NULL, start, len);
      if (v[k] == NULL) return false; /* leaks the few lines before: init fails anyway */
      k++;
    }
    if (end == NULL) break;
    start = end + 1;
  }
  *out = v;
  *count = k;
  return true;
}

/* The absolute form of a file store's path (its directory resolved), for
 * recognizing the store when the program itself opens it; NULL for DSNs. */
static char *absolute_path(const char *store) {
  if (store == NULL || store[0] == '\0' || strstr(store, "://") != NULL || strchr(store, '=') != NULL)
    return NULL;
  const char *slash = strrchr(store, '/');
  char dir[4096];
  if (slash == NULL) snprintf(dir, sizeof dir, ".");
  else if (slash == store) snprintf(dir, sizeof dir, "/");
  else snprintf(dir, sizeof dir, "%.*s", (int)(slash - store), store);
  char *real = realpath(dir, NULL);
  if (real == NULL) return NULL;
  const char *base = slash ? slash + 1 : store;
  size_t len = strlen(real) + 1 + strlen(base) + 1;
  char *out = qp__malloc(NULL, len);
  if (out != NULL) snprintf(out, len, "%s/%s", strcmp(real, "/") == 0 ? "" : real, base);
  free(real);
  return out;
}

bool shim_is_store(const char *path) {
  return g_store_path != NULL && path != NULL && strcmp(path, g_store_path) == 0;
}

static void disable(void) { atomic_store_explicit(&shim_state, SHIM_DISABLED, memory_order_release); }

static void start_fork_handlers(void);

static void init_once(void) {
  shim_t_inside++;
  open_log();
  g_hooks.log_fn = hook_log;
  g_hooks.log_min_level = QP_LOG_INFO;
  char err[QP_ERRMSG_MAX];
  qp_status st = qp_config_new(&g_cfg, NULL);
  if (st != QP_OK) {
    shim_log(QP_LOG_ERROR, "disabled: %s", qp_strerror(st));
    goto fail;
  }
  st = qp_config_load_env(g_cfg);
  if (st != QP_OK) {
    shim_log(QP_LOG_ERROR, "disabled: %s", qp_config_errmsg(g_cfg));
    goto fail;
  }
  g_flush_ms = qp_config_int(g_cfg, "flush_ms");
  g_store_path = absolute_path(qp_config_string(g_cfg, "store"));
  g_slow_ns = (uint64_t)(qp_config_double(g_cfg, "slow_ms") * 1e6);
  if (!split_lines(qp_config_string(g_cfg, "rules"), &g_rules, &g_nrules) ||
      !split_lines(qp_config_string(g_cfg, "redact"), &g_redact, &g_nredact)) {
    shim_log(QP_LOG_ERROR, "disabled: out of memory");
    goto fail;
  }
  for (int d = 0; d < 2; d++) {
    st = qp_normalizer_new(&g_norm[d], (qp_dialect)d, (const char *const *)g_rules, g_nrules,
                           NULL, err, sizeof err);
    if (st != QP_OK) {
      shim_log(QP_LOG_ERROR, "disabled: QPROF_RULES: %s", err);
      goto fail;
    }
  }
  start_fork_handlers();
  shim_log(QP_LOG_DEBUG, "ready");
  atomic_store_explicit(&shim_state, SHIM_READY, memory_order_release);
  shim_t_inside--;
  return;
fail:
  disable();
  shim_t_inside--;
}

bool shim_init_slow(void) {
  int saved = errno;
  pthread_once(&init_once_ctl, init_once);
  errno = saved;
  return atomic_load_explicit(&shim_state, memory_order_acquire) == SHIM_READY;
}

const qp_normalizer *shim_normalizer(qp_dialect dialect) {
  return g_norm[dialect == QP_DIALECT_SQLITE ? 1 : 0];
}

/* ---- the profile, the store and the flush thread ------------------------- *
 * g_rec_mu guards starting to record in this process (profile creation,
 * thread start). g_flush_mu guards the store handle and every flush. */
static pthread_mutex_t g_rec_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_flush_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_flush_cv;
static _Atomic(qp_profile *) g_profile;
static qp_store *g_store;
static bool g_store_failed, g_flush_failed_said, g_exiting, g_atexit_done;
static _Atomic bool g_thread_started;
static _Atomic uint64_t g_next_flush_ns; /* inline flushing: when the next one is due */
static uint64_t g_flushed_upto; /* qp_profile_recorded() at the last good flush */
static pid_t g_pid;             /* the process that created g_profile */

/* Flushes what was recorded, opening the store on first use. Called with
 * g_flush_mu held and shim_t_inside set. */
static void flush_locked(void) {
  qp_profile *p = atomic_load(&g_profile);
  if (p == NULL || g_store_failed) return;
  uint64_t recorded = qp_profile_recorded(p);
  if (recorded == g_flushed_upto) return; /* nothing new: leave the store alone */
  char err[QP_ERRMSG_MAX];
  if (g_store == NULL) {
    /* The path as resolved when the process started using a database, so
     * that a later chdir() does not move the store. */
    const char *where = g_store_path != NULL ? g_store_path : qp_config_string(g_cfg, "store");
    qp_status st = qp_store_open(&g_store, where, QP_STORE_WRITE, &g_hooks, err, sizeof err);
    if (st != QP_OK) {
      /* Said once; the shim stops recording so that statistics do not pile
       * up in a process that will never be able to write them. */
      g_store_failed = true;
      shim_log(QP_LOG_ERROR, "cannot open the store, not recording: %s", err);
      disable();
      return;
    }
  }
  qp_status st = qp_profile_flush(p, g_store);
  if (st != QP_OK) {
    /* Statistics stay in the profile; the next flush tries again. */
    if (!g_flush_failed_said)
      shim_log(QP_LOG_ERROR, "flush to the store failed (will retry): %s",
               qp_store_errmsg(g_store));
    g_flush_failed_said = true;
    return;
  }
  g_flushed_upto = recorded;
}

static void *flush_main(void *arg) {
  QP_UNUSED(arg);
  shim_t_inside = 1; /* this thread only ever runs qprof's own code */
  pthread_mutex_lock(&g_flush_mu);
  while (!g_exiting) {
    struct timespec ts;
    qp__timespec_after(&ts, (uint64_t)g_flush_ms * 1000000u);
    int rc = pthread_cond_timedwait(&g_flush_cv, &g_flush_mu, &ts);
    if (g_exiting) break;
    if (rc == ETIMEDOUT) flush_locked();
  }
  pthread_mutex_unlock(&g_flush_mu);
  return NULL;
}

static void at_exit(void) {
  /* Runs in every process image that registered it, including children
   * after fork: a child that recorded nothing has no profile and does
   * nothing here. atexit handlers run before shared libraries' destructors,
   * so libsqlite3 is still whole. */
  if (atomic_load(&g_profile) == NULL) return;
  int saved = errno;
  shim_t_inside++;
  pthread_mutex_lock(&g_flush_mu);
  g_exiting = true;
  flush_locked();
  qp_store_close(g_store);
  g_store = NULL;
  g_store_failed = true; /* nothing after this point may reopen it */
  if (atomic_load(&g_thread_started)) pthread_cond_broadcast(&g_flush_cv);
  pthread_mutex_unlock(&g_flush_mu);
  shim_t_inside--;
  errno = saved;
}

static bool start_flush_thread(void) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&g_flush_cv, &ca);
  pthread_condattr_destroy(&ca);
  /* All signals blocked: the program's signals must go to its own threads. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  pthread_t tid;
  int rc = pthread_create(&tid, &attr, flush_main, NULL);
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc == 0;
}

/* Without a flush thread: flush inline when the interval is over, or start
 * the thread once the program has threads of its own. */
static void maybe_flush_here(void) {
  if (!__libc_single_threaded) {
    pthread_mutex_lock(&g_rec_mu);
    if (!atomic_load(&g_thread_started) && atomic_load(&g_profile) != NULL) {
      atomic_store(&g_thread_started, true);
      if (!start_flush_thread())
        shim_log(QP_LOG_WARN, "cannot start the flush thread: flushing at exit only");
    }
    pthread_mutex_unlock(&g_rec_mu);
    return;
  }
  uint64_t now = qp__now_ns();
  if (now < atomic_load_explicit(&g_next_flush_ns, memory_order_relaxed)) return;
  atomic_store(&g_next_flush_ns, now + (uint64_t)g_flush_ms * 1000000u);
  pthread_mutex_lock(&g_flush_mu);
  if (!g_exiting) flush_locked();
  pthread_mutex_unlock(&g_flush_mu);
}

/* Creates this process's profile; returns it or NULL (then disabled). */
static qp_profile *start_recording(void) {
  pthread_mutex_lock(&g_rec_mu);
  qp_profile *p = atomic_load(&g_profile);
  if (p != NULL) goto out;
  qp_profile_options o = {
      .hooks = &g_hooks,
      .bucket_s = qp_config_int(g_cfg, "bucket_s"),
      .rules = (const char *const *)g_rules,
      .nrules = g_nrules,
      .ignore = qp_config_string(g_cfg, "ignore"),
      .sample = qp_config_bool(g_cfg, "sample"),
      .redact = (const char *const *)g_redact,
      .nredact = g_nredact,
  };
  char err[QP_ERRMSG_MAX];
  qp_status st = qp_profile_new(&p, &o, err, sizeof err);
  if (st != QP_OK) {
    shim_log(QP_LOG_ERROR, "disabled: %s", err);
    disable();
    p = NULL;
    goto out;
  }
  g_flushed_upto = 0;
  g_store_failed = g_flush_failed_said = g_exiting = false;
  g_pid = getpid();
  atomic_store(&g_profile, p);
  if (!g_atexit_done) { /* inherited by children: registered once per image */
    atexit(at_exit);
    g_atexit_done = true;
  }
  atomic_store(&g_thread_started, false);
  atomic_store(&g_next_flush_ns, qp__now_ns() + (uint64_t)g_flush_ms * 1000000u);
  shim_log(QP_LOG_DEBUG, "recording to %s", qp_config_string(g_cfg, "store"));
out:
  pthread_mutex_unlock(&g_rec_mu);
  return p;
}

void shim_record(const qp_query_event *ev) {
  qp_profile *p = atomic_load_explicit(&g_profile, memory_order_acquire);
  if (QP_UNLIKELY(p == NULL)) {
    p = start_recording();
    if (p == NULL) return;
  }
  qp_status st = qp_profile_record(p, ev);
  if (QP_UNLIKELY(st != QP_OK) && st != QP_NOMEM)
    shim_log(QP_LOG_DEBUG, "event not recorded: %s", qp_strerror(st));
  if (!atomic_load_explicit(&g_thread_started, memory_order_relaxed)) maybe_flush_here();
  if (QP_UNLIKELY(ev->duration_ns >= g_slow_ns) && g_log_on && ev->error == NULL) {
    uint64_t fp = ev->fingerprint;
    size_t len = ev->normalized_len;
    const char *text = ev->normalized;
    if (text == NULL) {
      char *buf = shim_scratch();
      if (buf == NULL) return;
      qp_dialect d = ev->backend == QP_BACKEND_SQLITE ? QP_DIALECT_SQLITE : QP_DIALECT_POSTGRES;
      qp_normalize(shim_normalizer(d), ev->sql, ev->sql_len, buf, QP_NORMALIZED_MAX, &len, &fp);
      text = buf;
    }
    char hex[QP_FINGERPRINT_HEX_SIZE];
    qp_fingerprint_hex(fp, hex);
    shim_log(QP_LOG_INFO, "slow query: %.3f ms %s %s: %.*s", (double)ev->duration_ns / 1e6,
             ev->database ? ev->database : "?", hex, (int)(len > 500 ? 500 : len), text);
  }
}

void shim_before_exec(void) {
  if (atomic_load(&g_profile) == NULL || getpid() != g_pid) return;
  int saved = errno;
  shim_t_inside++;
  pthread_mutex_lock(&g_flush_mu);
  if (!g_exiting) flush_locked();
  pthread_mutex_unlock(&g_flush_mu);
  shim_t_inside--;
  errno = saved;
}

/* ---- fork ---------------------------------------------------------------- *
 * Around fork() every lock of the shim is held, so that the child starts
 * with consistent maps and no half-done flush. The child drops the parent's
 * profile and store connection without freeing them: another thread of the
 * parent may have held their internal locks at the moment of fork, and a
 * SQLite connection must not be used (or closed) across fork. */
static void fork_prepare(void) {
  pthread_mutex_lock(&g_rec_mu);
  pthread_mutex_lock(&g_flush_mu);
  for (size_t m = 0; m < QP_ARRAY_LEN(all_maps); m++)
    for (size_t i = 0; i < SHIM_MAP_SHARDS; i++) pthread_mutex_lock(&all_maps[m]->shards[i].mu);
}

static void fork_unlock(void) {
  for (size_t m = QP_ARRAY_LEN(all_maps); m-- > 0;)
    for (size_t i = SHIM_MAP_SHARDS; i-- > 0;) pthread_mutex_unlock(&all_maps[m]->shards[i].mu);
  pthread_mutex_unlock(&g_flush_mu);
  pthread_mutex_unlock(&g_rec_mu);
}

static void fork_child(void) {
  fork_unlock();
  atomic_store(&g_profile, NULL); /* the parent's statistics are the parent's */
  atomic_store(&g_thread_started, false);
  /* The parent's flush thread may have been waiting on the condition
   * variable; in the child nobody is, and a broadcast on the inherited state
   * could wait for that waiter forever. */
  pthread_cond_init(&g_flush_cv, NULL);
  g_store = NULL;
  g_flushed_upto = 0;
  g_store_failed = g_flush_failed_said = g_exiting = false;
}

static void start_fork_handlers(void) { pthread_atfork(fork_prepare, fork_unlock, fork_child); }

/* ---- pointer maps -------------------------------------------------------- */
static inline size_t hash_ptr(const void *p) {
  uint64_t x = (uint64_t)(uintptr_t)p;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return (size_t)x;
}

static shim_map_shard *shard_of(shim_map *m, const void *key, size_t *h) {
  *h = hash_ptr(key);
  return &m->shards[*h % SHIM_MAP_SHARDS];
}

/* Linear probing in a power-of-two table; the shard index used the low bits,
 * so probe from the high ones. */
static size_t probe_start(size_t h, size_t cap) { return (h >> 8) & (cap - 1); }

static shim_map_slot *find_slot(shim_map_shard *s, const void *key, size_t h) {
  if (s->cap == 0) return NULL;
  for (size_t i = probe_start(h, s->cap);; i = (i + 1) & (s->cap - 1)) {
    if (s->slots[i].key == key) return &s->slots[i];
    if (s->slots[i].key == NULL) return NULL;
  }
}

void *shim_map_get(shim_map *m, const void *key) {
  size_t h;
  shim_map_shard *s = shard_of(m, key, &h);
  pthread_mutex_lock(&s->mu);
  shim_map_slot *slot = find_slot(s, key, h);
  void *v = slot ? slot->value : NULL;
  pthread_mutex_unlock(&s->mu);
  return v;
}

static bool grow(shim_map_shard *s) {
  size_t ncap = s->cap ? s->cap * 2 : 16;
  shim_map_slot *ns = qp__calloc(NULL, ncap, sizeof *ns);
  if (ns == NULL) return false;
  for (size_t i = 0; i < s->cap; i++) {
    if (s->slots[i].key == NULL) continue;
    size_t j = probe_start(hash_ptr(s->slots[i].key), ncap);
    while (ns[j].key != NULL) j = (j + 1) & (ncap - 1);
    ns[j] = s->slots[i];
  }
  qp__free(NULL, s->slots);
  s->slots = ns;
  s->cap = ncap;
  return true;
}

void *shim_map_put(shim_map *m, const void *key, void *value, bool *stored) {
  size_t h;
  shim_map_shard *s = shard_of(m, key, &h);
  void *old = NULL;
  *stored = false;
  pthread_mutex_lock(&s->mu);
  shim_map_slot *slot = find_slot(s, key, h);
  if (slot != NULL) {
    old = slot->value;
    slot->value = value;
    *stored = true;
  } else if ((s->len + 1) * 4 <= s->cap * 3 || grow(s)) {
    size_t i = probe_start(h, s->cap);
    while (s->slots[i].key != NULL) i = (i + 1) & (s->cap - 1);
    s->slots[i].key = key;
    s->slots[i].value = value;
    s->len++;
    *stored = true;
  }
  pthread_mutex_unlock(&s->mu);
  return old;
}

void *shim_map_take(shim_map *m, const void *key) {
  size_t h;
  shim_map_shard *s = shard_of(m, key, &h);
  pthread_mutex_lock(&s->mu);
  shim_map_slot *slot = find_slot(s, key, h);
  void *v = NULL;
  if (slot != NULL) {
    v = slot->value;
    /* Backward-shift deletion keeps every probe chain unbroken without
     * tombstones. */
    size_t i = (size_t)(slot - s->slots), mask = s->cap - 1;
    for (size_t j = (i + 1) & mask; s->slots[j].key != NULL; j = (j + 1) & mask) {
      size_t home = probe_start(hash_ptr(s->slots[j].key), s->cap);
      /* move j into the hole at i when its home is not in (i, j] cyclically */
      bool in_range = i <= j ? (home > i && home <= j) : (home > i || home <= j);
      if (!in_range) {
        s->slots[i] = s->slots[j];
        i = j;
      }
    }
    s->slots[i].key = NULL;
    s->slots[i].value = NULL;
    s->len--;
  }
  pthread_mutex_unlock(&s->mu);
  return v;
}
