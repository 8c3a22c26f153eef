/*
 * The shim's process-wide state: configuration, the profile it normalizes
 * with, this process's segment, fork handling, logging, and real-symbol
 * lookup.
 *
 * Life of a process under the shim:
 *   - nothing happens until the first interposed call; it reads the QPROF_*
 *     variables (shim_init_slow). A bad value, or no usable QPROF_RUN_DIR,
 *     disables the shim for good; the program runs on unprofiled.
 *   - the first recorded statement creates this process's segment in the
 *     run directory (shim_record -> start_segment). A process that runs no
 *     query never gets that far: no file.
 *   - every statement is recorded straight into the segment (seg_write.c):
 *     no allocation, no system call, no lock another process can hold. The
 *     shim never opens a store and never calls libpq or SQLite for itself
 *     (but for the flush request QPROF_PIPELINE_FLUSH asks for, after a
 *     pipelined send: shim_pq.c); the collector (qprof run, qprof collect)
 *     reads the segment from outside. Nothing happens at exit or exec: what
 *     was recorded is in the page cache, and survives _exit(), kill -9 and
 *     crashes.
 *   - fork(): the child forgets the parent's segment and creates its own at
 *     its first statement.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "qprof/config.h"
#include "qprof/store.h"
#include "stats/slowlog.h"
#include "stats/stats_int.h"
#include "shim_int.h"

SHIM_TLS unsigned shim_t_inside;
shim_hot shim_g_hot __attribute__((aligned(64))) = {.slow_cut = UINT64_MAX};

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
static qp_profile *g_profile; /* normalizes and redacts; never records */
static char *g_run_dir;
static size_t g_seg_size;
static int64_t g_bucket_s;
static bool g_full_said;
#define g_sample shim_g_sample
static char **g_rules;
static size_t g_nrules;
static char **g_redact;
static size_t g_nredact;
static uint64_t g_slow_ns;  /* QPROF_SLOW_MS; 0: no slow-query log */
/* The hot path's one compare: a duration above it may be slow (slow_log
 * applies the rule); UINT64_MAX when there is no log or no threshold. */
#define g_slow_cut shim_g_hot.slow_cut
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
/* dlsym(RTLD_NEXT), else the already-loaded library's own symbol. */
static void *find_real(const char *name, const char *soname) {
  void *p = dlsym(RTLD_NEXT, name);
  if (p == NULL) {
    /* The library was dlopen'ed after us (python's _sqlite3, psycopg2):
     * RTLD_NEXT does not see it, but the already-loaded object does. The
     * handle is kept: the program loaded the library and we now point into
     * it, so it must not go away under us. */
    void *h = dlopen(soname, RTLD_NOLOAD | RTLD_LAZY);
    if (h != NULL) p = dlsym(h, name);
  }
  return p;
}

void *shim_real(_Atomic(void *) *slot, const char *name, const char *soname) {
  int saved = errno;
  void *p = find_real(name, soname);
  if (p != NULL) atomic_store_explicit(slot, p, memory_order_release);
  else shim_log(QP_LOG_ERROR, "cannot find the real %s in the process", name);
  errno = saved;
  return p;
}

void *shim_real_optional(const char *name, const char *soname) {
  int saved = errno;
  void *p = find_real(name, soname);
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

/* ---- who runs it ---------------------------------------------------------- *
 * The host, read once at init: the option host (QPROF_HOST), else
 * gethostname(). Never getpwuid or anything else that may load NSS modules
 * or open sockets in the host program: the OS user of SQLite statements is
 * left to the collector (the segment header's uid). */
static char g_host[QP_SEG_DIM_MAX + 1];

static void read_host(const char *opt) {
  int saved = errno;
  if (opt != NULL && opt[0] != '\0') {
    size_t n = strnlen(opt, QP_SEG_DIM_MAX);
    memcpy(g_host, opt, n);
    g_host[n] = '\0';
  } else if (gethostname(g_host, sizeof g_host) != 0) {
    g_host[0] = '\0';
  }
  g_host[sizeof g_host - 1] = '\0';
  errno = saved;
}

static size_t put_part(char *out, size_t at, const char *s, size_t max) {
  if (s == NULL) return at;
  size_t n = strnlen(s, max);
  memcpy(out + at, s, n);
  return at + n;
}

size_t shim_key(char *out, const char *db, const char *user, const char *app) {
  if (app == NULL || app[0] == '\0')
    app = program_invocation_short_name != NULL ? program_invocation_short_name : "";
  size_t n = put_part(out, 0, db, QP_SEG_DB_MAX);
  out[n++] = '\0';
  n = put_part(out, n, user, QP_SEG_DIM_MAX);
  out[n++] = '\0';
  n = put_part(out, n, app, QP_SEG_DIM_MAX);
  out[n] = '\0';
  return n;
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
  if (store == NULL || store[0] == '\0' || qp_store_is_dsn(store))
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

/* The run directory must be a directory of ours that no one else can enter:
 * segments hold the program's statements. */
static bool check_run_dir(const char *dir) {
  if (dir == NULL || dir[0] == '\0') {
    shim_log(QP_LOG_INFO, "QPROF_RUN_DIR is not set: not recording (start the program with "
                          "'qprof run', or see 'qprof collect')");
    return false;
  }
  struct stat st;
  if (stat(dir, &st) != 0) {
    shim_log(QP_LOG_ERROR, "QPROF_RUN_DIR %s: %s: not recording", dir, strerror(errno));
    return false;
  }
  if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
    shim_log(QP_LOG_ERROR,
             "QPROF_RUN_DIR %s is not a directory of uid %u with mode 0700: not recording", dir,
             (unsigned)geteuid());
    return false;
  }
  g_run_dir = qp__strdup(NULL, dir);
  return g_run_dir != NULL;
}

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
  g_store_path = absolute_path(qp_config_string(g_cfg, "store"));
  g_slow_ns = (uint64_t)(qp_config_double(g_cfg, "slow_ms") * 1e6);
  g_slow_cut = g_log_on && g_slow_ns > 0 ? g_slow_ns : UINT64_MAX;
  if (!split_lines(qp_config_string(g_cfg, "rules"), &g_rules, &g_nrules) ||
      !split_lines(qp_config_string(g_cfg, "redact"), &g_redact, &g_nredact)) {
    shim_log(QP_LOG_ERROR, "disabled: out of memory");
    goto fail;
  }
  g_bucket_s = qp_config_int(g_cfg, "bucket_s");
  g_sample = qp_config_bool(g_cfg, "sample");
  shim_g_pipeline_flush = qp_config_bool(g_cfg, "pipeline_flush");
  g_seg_size = (size_t)qp_config_int(g_cfg, "segment_mb") << 20;
  read_host(qp_config_string(g_cfg, "host"));
  if (!check_run_dir(qp_config_string(g_cfg, "run_dir"))) goto fail;
  qp_profile_options o = {
      .hooks = &g_hooks,
      .bucket_s = g_bucket_s,
      .rules = (const char *const *)g_rules,
      .nrules = g_nrules,
      .ignore = qp_config_string(g_cfg, "ignore"),
      .sample = g_sample,
      .redact = (const char *const *)g_redact,
      .nredact = g_nredact,
  };
  st = qp_profile_new(&g_profile, &o, err, sizeof err);
  if (st != QP_OK) {
    shim_log(QP_LOG_ERROR, "disabled: %s", err);
    goto fail;
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


/* ---- the segment ----------------------------------------------------------- *
 * g_seg_mu guards creating this process's segment. A forked child starts
 * without one (fork_child) and creates its own at its first statement. */
static pthread_mutex_t g_seg_mu = PTHREAD_MUTEX_INITIALIZER;
#define g_seg shim_g_hot.seg
static qp_seg g_seg_store;
static unsigned g_seg_serial;

/* This thread's lane in the segment (QP_SEG_LANES), plus one; 0 until its
 * first statement. Threads take lanes in turn, so that two threads running
 * the same statement write entries of their own (seg_int.h). */
static SHIM_TLS unsigned t_lane1;
static _Atomic unsigned g_lanes;

static inline unsigned my_lane(void) {
  if (QP_UNLIKELY(t_lane1 == 0))
    t_lane1 = atomic_fetch_add_explicit(&g_lanes, 1, memory_order_relaxed) % QP_SEG_LANES + 1;
  return t_lane1 - 1;
}
static bool g_seg_failed;

void shim_prefetch(qp_backend backend, uint64_t fp) {
  qp_seg *seg = atomic_load_explicit(&g_seg, memory_order_acquire);
  if (seg != NULL)
    qp__seg_prefetch(seg, my_lane(), backend, fp,
                     qp__seg_bucket(seg->bucket_s, qp__wall_coarse_ns()));
}

/* Creates this process's segment in the run directory; NULL (and the shim
 * disabled, said once) when that cannot be done. */
static qp_seg *start_segment(void) {
  pthread_mutex_lock(&g_seg_mu);
  qp_seg *seg = atomic_load(&g_seg);
  if (seg != NULL || g_seg_failed) goto out;
  char path[4200];
  int err = 0;
  for (int attempt = 0; attempt < 100; attempt++) {
    snprintf(path, sizeof path, "%s/%ld-%u" QP_SEG_SUFFIX, g_run_dir, (long)getpid(),
             g_seg_serial++);
    if (qp__seg_create(&g_seg_store, path, g_seg_size, g_bucket_s, g_host)) {
      err = 0;
      break;
    }
    err = errno;
    if (err != EEXIST) break;
  }
  if (err != 0) {
    shim_log(QP_LOG_ERROR, "cannot create a segment in %s, not recording: %s", g_run_dir,
             strerror(err));
    g_seg_failed = true;
    disable();
    goto out;
  }
  seg = &g_seg_store;
  atomic_fetch_add_explicit(&shim_g_hot.seg_gen, 1, memory_order_relaxed);
  atomic_store_explicit(&g_seg, seg, memory_order_release);
  shim_log(QP_LOG_DEBUG, "recording to %s", path);
out:
  pthread_mutex_unlock(&g_seg_mu);
  return seg;
}

qp_status shim_normalize(qp_backend backend, const char *sql, size_t len, char *out, size_t cap,
                         size_t *out_len, uint64_t *fingerprint) {
  return qp_profile_normalize(g_profile, backend, sql, len, out, cap, out_len, fingerprint);
}

/* The slow-query line, by the library's one rule and builder
 * (lib/stats/slowlog.h): slower than QPROF_SLOW_MS, strictly; failed
 * statements too, with their code; 0 turns it off. */
static QP_NOINLINE void slow_log(const qp_query_event *ev, uint64_t fp, const char *norm,
                                 size_t nlen) {
  if (!qp__slow_is(ev->duration_ns, g_slow_ns)) return;
  qp_query_event e = *ev;
  e.normalized = norm;
  e.normalized_len = nlen;
  e.fingerprint = fp;
  char line[QP__SLOW_TEXT_MAX + 256];
  qp__slow_line(g_profile, &e, g_slow_ns, line, sizeof line);
  shim_log(QP_LOG_WARN, "%s", line);
}

static QP_NOINLINE void full_said(void) {
  if (g_full_said) return;
  g_full_said = true;
  shim_log(QP_LOG_WARN, "segment full (QPROF_SEGMENT_MB=%lld): statements are counted as dropped",
           (long long)(g_seg_size >> 20));
}

void shim_full(void) { full_said(); }

/* Normalizes ev's text into this thread's scratch buffer, and remembers it
 * in `memo` (NULL: none) with its literals. False when it cannot be done. */
static bool normalize_event(const qp_query_event *ev, qp_sql_memo *memo, const char **norm,
                            size_t *nlen, uint64_t *fp) {
  char *buf = shim_scratch();
  if (buf == NULL || ev->sql == NULL) return false;
  qp_lit_span spans[QP_SQL_MEMO_SPANS];
  size_t n = 0;
  if (qp__profile_normalize_spans(g_profile, ev->backend, ev->sql, ev->sql_len, buf,
                                  QP_NORMALIZED_MAX, nlen, fp, memo != NULL ? spans : NULL,
                                  QP_SQL_MEMO_SPANS, &n) != QP_OK)
    return false;
  if (memo != NULL) {
    qp_dialect d = ev->backend == QP_BACKEND_SQLITE ? QP_DIALECT_SQLITE : QP_DIALECT_POSTGRES;
    qp__sql_memo_set(memo, d, ev->sql, ev->sql_len, *fp, spans,
                     n < QP_SQL_MEMO_SPANS ? n : QP_SQL_MEMO_SPANS);
  }
  *norm = buf;
  return true;
}

void shim_record_cached(const qp_query_event *ev, size_t db_len, shim_entry_cache *cache,
                        qp_sql_memo *memo, uint64_t end_ns) {
  qp_seg *seg = atomic_load_explicit(&g_seg, memory_order_acquire);
  if (QP_UNLIKELY(seg == NULL)) {
    seg = start_segment();
    if (seg == NULL) return;
  }
  const char *norm = ev->normalized;
  size_t nlen = ev->normalized_len;
  uint64_t fp = ev->fingerprint;
  if (end_ns == 0) end_ns = shim_now_ns();
  uint64_t gen = atomic_load_explicit(&shim_g_hot.seg_gen, memory_order_relaxed);
  if (norm == NULL) {
    /* The same statement as the memo's but for its literals, into the
     * entry the cache holds, with nothing wanting the text: no normalizing. */
    if (memo != NULL && cache != NULL && !g_sample && ev->duration_ns <= g_slow_cut &&
        qp__sql_memo_match(memo, ev->sql, ev->sql_len) &&
        shim_cache_holds(cache, gen, memo->fp, end_ns)) {
      if (QP_UNLIKELY(qp__seg_add(seg, cache->e, ev->duration_ns, ev->rows, ev->error,
                                  (int64_t)end_ns + cache->wall_off) == NULL))
        full_said();
      return;
    }
    if (!normalize_event(ev, memo, &norm, &nlen, &fp)) return;
  }
  int64_t wall;
  qp_seg_entry *e;
  if (cache != NULL && shim_cache_holds(cache, gen, fp, end_ns)) {
    e = cache->e;
    wall = (int64_t)end_ns + cache->wall_off;
  } else {
    wall = qp__wall_coarse_ns();
    int64_t bucket = qp__seg_bucket(seg->bucket_s, wall);
    const char *db = ev->database;
    if (db == NULL || db_len < 2) { /* no key (out of memory): all parts empty */
      db = "\0";
      db_len = 2;
    }
    e = qp__seg_find(seg, my_lane(), ev->backend, fp, bucket, norm, nlen, db, db_len);
    if (cache != NULL) {
      /* the bucket's bounds on the monotonic clock (modulo 2^64: a bucket
       * that began before boot has a "negative" start, and end - lo is
       * still the true difference) */
      cache->e = e;
      cache->gen = gen;
      cache->fp = fp;
      cache->wall_off = wall - (int64_t)end_ns;
      cache->lo_ns = (uint64_t)(bucket * 1000000000) - (uint64_t)cache->wall_off;
      cache->span_ns = (uint64_t)seg->bucket_s * 1000000000u;
    }
  }
  if (e != NULL) e = qp__seg_add(seg, e, ev->duration_ns, ev->rows, ev->error, wall);
  if (QP_UNLIKELY(e == NULL)) {
    full_said();
  } else if (QP_UNLIKELY(g_sample) && ev->sql != NULL && qp__seg_wants_sample(e, ev->duration_ns)) {
    char *smp = qp__profile_redact(g_profile, ev->backend, ev->sql, ev->sql_len);
    if (smp != NULL) {
      qp__seg_sample(seg, e, smp, strlen(smp), ev->duration_ns);
      qp__free(qp__profile_hooks(g_profile), smp);
    }
  }
  if (QP_UNLIKELY(ev->duration_ns > g_slow_cut)) slow_log(ev, fp, norm, nlen);
}

void shim_record(const qp_query_event *ev) {
  char key[QP_SEG_KEY_MAX + 1];
  qp_query_event e = *ev;
  size_t n = shim_key(key, ev->database, ev->user, ev->application);
  e.database = key;
  shim_record_cached(&e, n, NULL, NULL, 0);
}

/* ---- fork ---------------------------------------------------------------- *
 * Around fork() every lock of the shim is held, so that the child starts
 * with consistent maps. The child forgets the parent's segment (the
 * parent's numbers are the parent's) and creates its own at its first
 * statement; the mapping and descriptor it inherited are let go. */
static void fork_prepare(void) {
  pthread_mutex_lock(&g_seg_mu);
  for (size_t m = 0; m < QP_ARRAY_LEN(all_maps); m++)
    for (size_t i = 0; i < SHIM_MAP_SHARDS; i++) pthread_mutex_lock(&all_maps[m]->shards[i].mu);
}

static void fork_unlock(void) {
  for (size_t m = QP_ARRAY_LEN(all_maps); m-- > 0;)
    for (size_t i = SHIM_MAP_SHARDS; i-- > 0;) pthread_mutex_unlock(&all_maps[m]->shards[i].mu);
  pthread_mutex_unlock(&g_seg_mu);
}

static void fork_child(void) {
  fork_unlock();
  qp_seg *seg = atomic_load(&g_seg);
  atomic_store(&g_seg, NULL);
  if (seg != NULL) {
    int saved = errno;
    munmap(seg->base, seg->size);
    close(seg->fd);
    memset(seg, 0, sizeof *seg);
    errno = saved;
  }
  g_seg_serial = 0;
  g_full_said = false;
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
