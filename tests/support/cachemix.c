/* The randomized consistency driver: see cachemix.h. */
#include "testutil.h"

#include "cachemix.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define CM_PRINT_MAX 12

struct cm_run {
  const cm_config *cfg;
  pthread_rwlock_t lock;
  _Atomic uint64_t ops, reads, stale, foreign, unverifiable, errors;
  _Atomic int printed;
};

uint32_t cm_rand(cm_thr *t, uint32_t n) {
  /* xorshift64* */
  uint64_t x = t->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  t->rng = x;
  return n ? (uint32_t)((x * 0x2545F4914F6CDD1Dull) >> 32) % n : 0;
}

void *cm_ud(cm_thr *t) { return t->run->cfg->ud; }

static void file_lock(cm_thr *t, int op) {
  if (t->lockfd < 0) return;
  while (flock(t->lockfd, op) != 0 && errno == EINTR) {
  }
}

void cm_shared(cm_thr *t) {
  pthread_rwlock_rdlock(&t->run->lock);
  file_lock(t, LOCK_SH);
  t->lockmode = 1;
}

void cm_exclusive(cm_thr *t) {
  pthread_rwlock_wrlock(&t->run->lock);
  file_lock(t, LOCK_EX);
  t->lockmode = 2;
}

void cm_unlock(cm_thr *t) {
  if (t->lockmode == 0) return;
  file_lock(t, LOCK_UN);
  pthread_rwlock_unlock(&t->run->lock);
  t->lockmode = 0;
}

qp_status cm_exec(cm_thr *t, qp_conn *c, const char *sql, const qp_param *p, size_t np) {
  atomic_fetch_add(&t->run->ops, 1);
  return qp_conn_exec(c, sql, p, np, NULL);
}

void cm_count(cm_thr *t) { atomic_fetch_add(&t->run->ops, 1); }

void cm_error(cm_thr *t, const char *what, qp_conn *c) {
  atomic_fetch_add(&t->run->errors, 1);
  if (atomic_fetch_add(&t->run->printed, 1) < CM_PRINT_MAX)
    fprintf(stderr, "cachemix thread %d: %s: %s (%s)\n", t->id, what,
            c ? qp_conn_errmsg(c) : "", c ? qp_conn_sqlstate(c) : "");
}

/* A result as one comparable text: status and SQLSTATE, or the column
 * names and the rows sorted. malloc'd. */
static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *canon(qp_status st, qp_conn *c, const qp_result *r) {
  if (st != QP_OK) {
    char *s = malloc(64);
    if (s) snprintf(s, 64, "error %d %s", (int)st, qp_conn_sqlstate(c));
    return s;
  }
  size_t nr = qp_result_rows(r), nc = qp_result_cols(r);
  char **rows = calloc(nr ? nr : 1, sizeof *rows);
  size_t total = 64;
  for (size_t i = 0; i < nc; i++) total += strlen(qp_result_colname(r, i)) + 1;
  for (size_t i = 0; i < nr; i++) {
    size_t n = 1;
    for (size_t j = 0; j < nc; j++) {
      size_t l = 0;
      if (!qp_result_isnull(r, i, j)) qp_result_value(r, i, j, &l);
      n += l + 3;
    }
    rows[i] = malloc(n);
    size_t o = 0;
    for (size_t j = 0; j < nc; j++) {
      if (qp_result_isnull(r, i, j)) {
        rows[i][o++] = '\2';
      } else {
        size_t l = 0;
        const char *v = qp_result_value(r, i, j, &l);
        memcpy(rows[i] + o, v, l);
        o += l;
      }
      rows[i][o++] = '\1';
    }
    rows[i][o] = '\0';
    total += o + 1;
  }
  qsort(rows, nr, sizeof *rows, cmp_str);
  char *s = malloc(total);
  size_t o = (size_t)snprintf(s, 64, "rows %zu cols %zu:", nr, nc);
  for (size_t i = 0; i < nc; i++) o += (size_t)sprintf(s + o, "%s,", qp_result_colname(r, i));
  for (size_t i = 0; i < nr; i++) {
    o += (size_t)sprintf(s + o, "\n%s", rows[i]);
    free(rows[i]);
  }
  free(rows);
  return s;
}

static void show(const char *s) {
  for (const char *p = s; *p && p - s < 600; p++)
    fputc(*p == '\1' ? '|' : *p == '\2' ? '~' : *p, stderr);
  fputc('\n', stderr);
}

bool cm_read(cm_thr *t, qp_conn *c, const char *sql, const qp_param *p, size_t np,
             cm_rowcheck check, const void *ctx) {
  cm_run *run = t->run;
  atomic_fetch_add(&run->ops, 1);
  atomic_fetch_add(&run->reads, 1);
  if (t->lockmode == 0) {
    cm_error(t, "cm_read outside the lock", NULL);
    return false;
  }
  qp_result *a = NULL, *b = NULL;
  qp_status sa = qp_conn_exec(c, sql, p, np, &a);
  char *ca = canon(sa, c, a);
  bool ok = true;
  size_t foreign_row = (size_t)-1;
  if (sa == QP_OK && check != NULL)
    for (size_t i = 0; i < qp_result_rows(a) && foreign_row == (size_t)-1; i++)
      if (!check(a, i, ctx)) foreign_row = i;
  if (foreign_row != (size_t)-1) {
    atomic_fetch_add(&run->foreign, 1);
    ok = false;
  }
  qp_txn_status txn = qp_conn_txn_status(c);
  if (sa != QP_OK && txn == QP_TXN_INERROR) {
    /* the failure aborted the transaction: the uncached read cannot run */
    atomic_fetch_add(&run->unverifiable, 1);
    if (atomic_fetch_add(&run->printed, 1) < CM_PRINT_MAX)
      fprintf(stderr, "cachemix thread %d: unverifiable (failed in a transaction): %s: %s\n",
              t->id, sql, qp_conn_errmsg(c));
    qp_result_free(a);
    free(ca);
    return false;
  }
  size_t len = strlen(sql);
  char *wrapped = malloc(len + 64);
  snprintf(wrapped, len + 64, "SELECT * FROM (%s) AS nocache_q", sql);
  qp_status sb = qp_conn_exec(c, wrapped, p, np, &b);
  char *cb = canon(sb, c, b);
  if (ca == NULL || cb == NULL || strcmp(ca, cb) != 0) {
    atomic_fetch_add(&run->stale, 1);
    ok = false;
  }
  if (!ok && atomic_fetch_add(&run->printed, 1) < CM_PRINT_MAX) {
    fprintf(stderr, "cachemix thread %d: %s: %s\n", t->id,
            foreign_row != (size_t)-1 ? "FOREIGN ROW" : "STALE", sql);
    fprintf(stderr, "  cached:   ");
    show(ca ? ca : "?");
    fprintf(stderr, "  uncached: ");
    show(cb ? cb : "?");
  }
  free(wrapped);
  free(ca);
  free(cb);
  qp_result_free(a);
  qp_result_free(b);
  return ok;
}

typedef struct cm_arg {
  cm_thr t;
  pthread_t th;
} cm_arg;

static void *thread_main(void *p) {
  cm_thr *t = &((cm_arg *)p)->t;
  while (atomic_load(&t->run->ops) < t->run->cfg->min_ops) {
    t->run->cfg->step(t);
    cm_unlock(t); /* a step that returned early */
  }
  return NULL;
}

void cm_run_all(const cm_config *cfg, cm_totals *out) {
  cm_run run;
  memset(&run, 0, sizeof run);
  run.cfg = cfg;
  pthread_rwlockattr_t ra;
  pthread_rwlockattr_init(&ra);
  /* writers must not starve behind a stream of readers */
  pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&run.lock, &ra);
  pthread_rwlockattr_destroy(&ra);
  cm_arg *args = calloc((size_t)cfg->nthreads, sizeof *args);
  for (int i = 0; i < cfg->nthreads; i++) {
    cm_thr *t = &args[i].t;
    t->run = &run;
    t->id = i;
    t->rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1) ^ (uint64_t)getpid();
    t->lockfd = cfg->lockfile ? open(cfg->lockfile, O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;
    pthread_create(&args[i].th, NULL, thread_main, &args[i]);
  }
  for (int i = 0; i < cfg->nthreads; i++) {
    pthread_join(args[i].th, NULL);
    if (args[i].t.lockfd >= 0) close(args[i].t.lockfd);
  }
  free(args);
  pthread_rwlock_destroy(&run.lock);
  out->ops = run.ops;
  out->reads = run.reads;
  out->stale = run.stale;
  out->foreign = run.foreign;
  out->unverifiable = run.unverifiable;
  out->errors = run.errors;
}

/* ---- the race of fills with writes ------------------------------------- */

typedef struct race {
  const cm_race_config *cfg;
  _Atomic int64_t *published; /* per key: the highest committed value */
  _Atomic uint64_t reads, writes, stale, errors;
  _Atomic int printed, writers_done;
  pthread_barrier_t start;
} race;

typedef struct race_arg {
  race *r;
  int id;
  uint64_t rng;
  pthread_t th;
} race_arg;

static uint32_t race_rand(race_arg *a, uint32_t n) {
  cm_thr t = {.rng = a->rng};
  uint32_t v = cm_rand(&t, n);
  a->rng = t.rng;
  return v;
}

static void race_err(race *r, const char *what, qp_conn *c) {
  atomic_fetch_add(&r->errors, 1);
  if (atomic_fetch_add(&r->printed, 1) < CM_PRINT_MAX)
    fprintf(stderr, "cm_race: %s: %s\n", what, c ? qp_conn_errmsg(c) : "");
}

static bool one_int(qp_conn *c, const char *sql, int64_t key, int64_t *v) {
  qp_param p = qp_param_int(key);
  qp_result *res = NULL;
  bool ok = qp_conn_exec(c, sql, &p, 1, &res) == QP_OK && qp_result_rows(res) == 1 &&
            qp_result_int64(res, 0, 0, v) == QP_OK;
  qp_result_free(res);
  return ok;
}

static void *race_writer(void *p) {
  race_arg *a = p;
  race *r = a->r;
  const cm_race_config *cfg = r->cfg;
  pthread_barrier_wait(&r->start);
  for (uint64_t i = 0; i < cfg->writes_per_writer; i++) {
    qp_conn *c = NULL;
    if (qp_pool_acquire(cfg->pool, &c) != QP_OK) {
      race_err(r, "acquire", NULL);
      continue;
    }
    int64_t key = race_rand(a, (uint32_t)cfg->keys), v = 0;
    int how = (int)race_rand(a, 4); /* 0,1 autocommit, 2 commit, 3 rollback */
    bool ok = how < 2 || qp_conn_exec(c, cfg->begin_sql ? cfg->begin_sql : "BEGIN", NULL, 0, NULL) == QP_OK;
    ok = ok && one_int(c, cfg->update_sql, key, &v);
    if (ok && how == 2) ok = qp_conn_exec(c, "COMMIT", NULL, 0, NULL) == QP_OK;
    if (ok && how == 3) ok = qp_conn_exec(c, "ROLLBACK", NULL, 0, NULL) == QP_OK;
    if (!ok) {
      race_err(r, "write", c);
    } else if (how != 3) {
      /* committed and returned: from now on no read may see less */
      int64_t cur = atomic_load(&r->published[key]);
      while (cur < v && !atomic_compare_exchange_weak(&r->published[key], &cur, v)) {
      }
    }
    atomic_fetch_add(&r->writes, 1);
    qp_pool_release(c);
  }
  atomic_fetch_add(&r->writers_done, 1);
  return NULL;
}

static void *race_reader(void *p) {
  race_arg *a = p;
  race *r = a->r;
  const cm_race_config *cfg = r->cfg;
  pthread_barrier_wait(&r->start);
  qp_conn *c = NULL;
  /* as long as the writers write (hits are fast: paced, so that the reads
   * spread over the whole run), and at least reads_per_reader */
  for (uint64_t i = 0; i < cfg->reads_per_reader || atomic_load(&r->writers_done) < cfg->writers;
       i++) {
    if (i % 16 == 0) usleep(100);
    if (c == NULL && qp_pool_acquire(cfg->pool, &c) != QP_OK) {
      race_err(r, "acquire", NULL);
      continue;
    }
    int64_t key = race_rand(a, (uint32_t)cfg->keys), v = 0;
    int64_t floor = atomic_load(&r->published[key]);
    if (!one_int(c, cfg->read_sql, key, &v)) {
      race_err(r, "read", c);
    } else if (v < floor) {
      atomic_fetch_add(&r->stale, 1);
      if (atomic_fetch_add(&r->printed, 1) < CM_PRINT_MAX)
        fprintf(stderr, "cm_race: STALE key %" PRId64 ": read %" PRId64 " after %" PRId64
                " was committed\n", key, v, floor);
    }
    atomic_fetch_add(&r->reads, 1);
    if (race_rand(a, 8) == 0) { /* other leases, other connections */
      qp_pool_release(c);
      c = NULL;
    }
  }
  if (c != NULL) qp_pool_release(c);
  return NULL;
}

void cm_race(const cm_race_config *cfg, cm_race_totals *out) {
  race r;
  memset(&r, 0, sizeof r);
  r.cfg = cfg;
  r.published = calloc((size_t)cfg->keys, sizeof *r.published);
  int n = cfg->writers + cfg->readers;
  pthread_barrier_init(&r.start, NULL, (unsigned)n);
  race_arg *args = calloc((size_t)n, sizeof *args);
  /* the floors start at the values the table holds now */
  qp_conn *c = NULL;
  if (qp_pool_acquire(cfg->pool, &c) == QP_OK) {
    for (int k = 0; k < cfg->keys; k++) {
      int64_t v = 0;
      if (one_int(c, cfg->read_sql, k, &v)) atomic_store(&r.published[k], v);
      else race_err(&r, "initial read", c);
    }
    qp_pool_release(c);
  }
  for (int i = 0; i < n; i++) {
    args[i].r = &r;
    args[i].id = i;
    args[i].rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 7);
    pthread_create(&args[i].th, NULL, i < cfg->writers ? race_writer : race_reader, &args[i]);
  }
  for (int i = 0; i < n; i++) pthread_join(args[i].th, NULL);
  pthread_barrier_destroy(&r.start);
  free(args);
  free((void *)r.published);
  out->reads = r.reads;
  out->writes = r.writes;
  out->stale = r.stale;
  out->errors = r.errors;
}

/* ---- the shared checks ---------------------------------------------------- */

static qp_cache_stats stats_of(qp_cache *cache) {
  qp_cache_stats s = QP_CACHE_STATS_INIT;
  assert_int_equal(qp_cache_stats_get(cache, &s), QP_OK);
  return s;
}

void cm_check_mix(const char *name, qp_cache *cache, const cm_totals *tot, uint64_t min_ops,
                  unsigned hit_pct) {
  qp_cache_stats s = stats_of(cache);
  print_message("%s: %" PRIu64 " ops, %" PRIu64 " compared reads, %" PRIu64 " stale, %" PRIu64
                " foreign, %" PRIu64 " unverifiable, %" PRIu64 " errors; cache: %" PRIu64
                " hits, %" PRIu64 " misses, %" PRIu64 " fills, %" PRIu64 " flushes, %" PRIu64
                " raced, %" PRIu64 " pattern refusals\n",
                name, tot->ops, tot->reads, tot->stale, tot->foreign, tot->unverifiable,
                tot->errors, s.hits, s.misses, s.fills, s.flushes,
                s.refused[QP_CACHE_REFUSED_RACED], s.refused[QP_CACHE_REFUSED_PATTERN]);
  assert_true(tot->ops >= min_ops);
  assert_int_equal(tot->stale, 0);
  assert_int_equal(tot->foreign, 0);
  assert_int_equal(tot->unverifiable, 0);
  assert_int_equal(tot->errors, 0);
  assert_true(s.refused[QP_CACHE_REFUSED_PATTERN] >= tot->reads);
  assert_true(s.hits * 100 >= (uint64_t)hit_pct * tot->reads);
}

void cm_check_race(const char *name, qp_cache *cache, const cm_race_config *cfg) {
  cm_race_totals tot;
  cm_race(cfg, &tot);
  qp_cache_stats s = stats_of(cache);
  print_message("%s: %" PRIu64 " reads, %" PRIu64 " writes, %" PRIu64 " stale, %" PRIu64
                " errors; %" PRIu64 " hits, %" PRIu64 " fills, %" PRIu64 " raced\n",
                name, tot.reads, tot.writes, tot.stale, tot.errors, s.hits, s.fills,
                s.refused[QP_CACHE_REFUSED_RACED]);
  assert_int_equal(tot.errors, 0);
  assert_int_equal(tot.stale, 0);
  assert_true(s.hits > 0);
}

typedef struct sf {
  qp_pool *p;
  pthread_barrier_t b;
  _Atomic int bad;
  const char *sql;
  int64_t param, expect;
} sf;

static void *sf_thread(void *arg) {
  sf *x = arg;
  qp_conn *c = NULL;
  if (qp_pool_acquire(x->p, &c) != QP_OK) {
    atomic_fetch_add(&x->bad, 1);
    pthread_barrier_wait(&x->b);
    return NULL;
  }
  pthread_barrier_wait(&x->b);
  qp_param prm = qp_param_int(x->param);
  qp_result *r = NULL;
  int64_t n = -1;
  if (qp_conn_exec(c, x->sql, &prm, 1, &r) != QP_OK || qp_result_int64(r, 0, 0, &n) != QP_OK ||
      n != x->expect)
    atomic_fetch_add(&x->bad, 1);
  qp_result_free(r);
  qp_pool_release(c);
  return NULL;
}

void cm_check_single_flight(qp_pool *pool, qp_cache *cache, const char *warm_sql,
                            const char *sql, int64_t param, int64_t expect) {
  sf x = {.p = pool, .sql = sql, .param = param, .expect = expect};
  qp_conn *warm[8];
  for (int i = 0; i < 8; i++) {
    assert_int_equal(qp_pool_acquire(pool, &warm[i]), QP_OK);
    qp_result *r = NULL;
    assert_int_equal(qp_conn_exec(warm[i], warm_sql, NULL, 0, &r), QP_OK);
    qp_result_free(r);
  }
  for (int i = 0; i < 8; i++) qp_pool_release(warm[i]);
  qp_cache_stats s0 = stats_of(cache);
  pthread_barrier_init(&x.b, NULL, 8);
  pthread_t th[8];
  for (int i = 0; i < 8; i++) pthread_create(&th[i], NULL, sf_thread, &x);
  for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
  pthread_barrier_destroy(&x.b);
  qp_cache_stats s = stats_of(cache);
  print_message("single flight: %" PRIu64 " misses, %" PRIu64 " fills, %" PRIu64 " hits, %" PRIu64
                " waits\n", s.misses - s0.misses, s.fills - s0.fills, s.hits - s0.hits,
                s.waits - s0.waits);
  assert_int_equal(x.bad, 0);
  assert_int_equal(s.misses - s0.misses, 1); /* ran once */
  assert_int_equal(s.fills - s0.fills, 1);
  assert_int_equal(s.hits - s0.hits, 7); /* the others were served its result */
  assert_true(s.waits - s0.waits >= 1);
}
