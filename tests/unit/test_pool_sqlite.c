/* The pool over real SQLite files: options, leases, resets, timeouts,
 * metrics, recording, leak reports, fork, out of memory. */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "failalloc.h"

typedef struct logcap {
  pthread_mutex_t mu;
  char text[16384];
  size_t len;
} logcap;

static void cap_log(qp_log_level level, const char *msg, void *ud) {
  (void)level;
  logcap *c = ud;
  pthread_mutex_lock(&c->mu);
  int n = snprintf(c->text + c->len, sizeof c->text - c->len, "%s\n", msg);
  if (n > 0 && c->len + (size_t)n < sizeof c->text) c->len += (size_t)n;
  pthread_mutex_unlock(&c->mu);
}

static bool cap_has(logcap *c, const char *needle) {
  pthread_mutex_lock(&c->mu);
  bool r = strstr(c->text, needle) != NULL;
  pthread_mutex_unlock(&c->mu);
  return r;
}

static char g_dsn[256];

static const char *fresh_dsn(void) {
  const char *dir = qpt_tempdir();
  assert_non_null(dir);
  snprintf(g_dsn, sizeof g_dsn, "sqlite://%s/pool.db", dir);
  return g_dsn;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static qp_pool *open_pool(int max, qp_pool_options *tweak) {
  qp_pool_options o;
  if (tweak) o = *tweak;
  else qp_pool_options_init(&o);
  if (o.dsn == NULL) o.dsn = fresh_dsn();
  o.max_size = max;
  qp_pool *p = NULL;
  char err[256];
  qp_status st = qp_pool_open(&p, &o, err, sizeof err);
  if (st != QP_OK) fail_msg("qp_pool_open: %s", err);
  return p;
}

static void exec_ok(qp_conn *c, const char *sql) {
  qp_status st = qp_conn_exec_script(c, sql);
  if (st != QP_OK) fail_msg("%s: %s", sql, qp_conn_errmsg(c));
}

static void test_bad_options(void **state) {
  (void)state;
  qp_pool_options o;
  qp_pool_options_init(&o);
  assert_int_equal(o.max_size, 8);
  assert_int_equal(o.acquire_timeout_ms, 30000);
  assert_int_equal(o.reset, QP_RESET_AUTO);
  qp_pool *p = (qp_pool *)1;
  char err[256];
  assert_int_equal(qp_pool_open(&p, &o, err, sizeof err), QP_INVALID);
  assert_null(p);
  assert_non_null(strstr(err, "no DSN"));
  o.dsn = "sqlite:";
  assert_int_equal(qp_pool_open(&p, &o, err, sizeof err), QP_INVALID);
  assert_non_null(strstr(err, "malformed SQLite DSN"));
  o.dsn = "host=/tmp port=5432 dbname"; /* keyword without '=' */
  assert_int_equal(qp_pool_open(&p, &o, err, sizeof err), QP_INVALID);
  assert_non_null(strstr(err, "malformed PostgreSQL DSN"));
  o.dsn = "host=/tmp nosuchoption=1";
  assert_int_equal(qp_pool_open(&p, &o, err, sizeof err), QP_INVALID);
  assert_non_null(strstr(err, "nosuchoption"));
  o.dsn = "postgresql://user:hunter2secret@[::1:5432/db"; /* broken URI with a password */
  qp_status st = qp_pool_open(&p, &o, err, sizeof err);
  assert_int_equal(st, QP_INVALID);
  assert_null(strstr(err, "hunter2secret"));
  o.dsn = "sqlite::memory:";
  o.max_size = 0;
  assert_int_equal(qp_pool_open(&p, &o, err, sizeof err), QP_INVALID);
  o.max_size = 2;
  o.min_size = 3;
  assert_int_equal(qp_pool_open(&p, &o, err, sizeof err), QP_INVALID);
  assert_non_null(strstr(err, "min_size"));
  o.min_size = 0;
  o.connect_timeout_ms = 0;
  assert_int_equal(qp_pool_open(&p, &o, err, sizeof err), QP_INVALID);
  o.connect_timeout_ms = 100;
  o.reset = (qp_reset_policy)7;
  assert_int_equal(qp_pool_open(&p, &o, err, sizeof err), QP_INVALID);
  assert_int_equal(qp_pool_open(NULL, &o, err, sizeof err), QP_INVALID);
  qp_pool_close(NULL);
  qp_pool_release(NULL);
  qp_result_free(NULL);
}

static void test_options_from_config(void **state) {
  (void)state;
  qp_config *cfg;
  assert_int_equal(qp_config_new(&cfg, NULL), QP_OK);
  assert_int_equal(qp_config_set(cfg, "pool.max_size", "3"), QP_OK);
  assert_int_equal(qp_config_set(cfg, "pool.acquire_timeout_ms", "250"), QP_OK);
  assert_int_equal(qp_config_set(cfg, "pool.reset", "always"), QP_OK);
  assert_int_equal(qp_config_set(cfg, "slow_ms", "12.5"), QP_OK);
  assert_int_equal(qp_config_set(cfg, "pool.no_such_option", "1"), QP_NOTFOUND);
  qp_pool_options o;
  qp_pool_options_init(&o);
  char err[128];
  assert_int_equal(qp_pool_options_from_config(&o, cfg, err, sizeof err), QP_OK);
  assert_int_equal(o.max_size, 3);
  assert_int_equal(o.acquire_timeout_ms, 250);
  assert_int_equal(o.reset, QP_RESET_ALWAYS);
  assert_true(o.slow_ms == 12.5);
  assert_string_equal(o.host, ""); /* empty: the machine's name */
  assert_int_equal(qp_config_set(cfg, "host", "box-7"), QP_OK);
  assert_int_equal(qp_pool_options_from_config(&o, cfg, err, sizeof err), QP_OK);
  assert_string_equal(o.host, "box-7");
  assert_int_equal(qp_config_set(cfg, "pool.reset", "sometimes"), QP_OK);
  assert_int_equal(qp_pool_options_from_config(&o, cfg, err, sizeof err), QP_INVALID);
  assert_non_null(strstr(err, "sometimes"));
  qp_config_free(cfg);
}

static void test_lease_basics(void **state) {
  (void)state;
  qp_pool *p = open_pool(2, NULL);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_conn_backend(c), QP_BACKEND_SQLITE);
  assert_non_null(strstr(qp_conn_database(c), "pool.db"));
  assert_string_equal(qp_conn_user(c), "");
  exec_ok(c, "CREATE TABLE kv(k TEXT PRIMARY KEY, v INTEGER)");
  qp_param ps[2] = {qp_param_text("a"), qp_param_int(1)};
  qp_result *r;
  assert_int_equal(qp_conn_exec(c, "INSERT INTO kv VALUES (?, ?)", ps, 2, &r), QP_OK);
  assert_int_equal(qp_result_affected(r), 1);
  qp_result_free(r);
  assert_int_equal(qp_conn_exec(c, "INSERT INTO kv VALUES (?, ?)", ps, 2, NULL), QP_QUERY);
  assert_string_equal(qp_conn_sqlstate(c), "SQLITE_CONSTRAINT_PRIMARYKEY");
  assert_non_null(strstr(qp_conn_errmsg(c), "UNIQUE"));
  assert_int_equal(qp_conn_exec(c, "SELECT v FROM kv WHERE k = ?", ps, 1, &r), QP_OK);
  assert_string_equal(qp_conn_sqlstate(c), ""); /* cleared by a success */
  int64_t v;
  assert_int_equal(qp_result_int64(r, 0, 0, &v), QP_OK);
  assert_int_equal(v, 1);
  qp_pool_release(c);
  qp_result_free(r); /* results outlive their lease */
  qp_pool_stats s = QP_POOL_STATS_INIT;
  qp_pool_stats_get(p, &s);
  assert_int_equal(s.total_query_count, 4);
  assert_int_equal(s.total_error_count, 1);
  assert_int_equal(s.cl_active, 0);
  assert_int_equal(s.sv_idle, 1);
  assert_int_equal(s.connects, 1);
  qp_pool_close(p);
}

static void test_release_rolls_back_and_resets(void **state) {
  (void)state;
  qp_pool *p = open_pool(1, NULL);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  exec_ok(c, "CREATE TABLE t(x)");
  exec_ok(c, "BEGIN");
  exec_ok(c, "INSERT INTO t VALUES (1)");
  assert_int_equal(qp_conn_txn_status(c), QP_TXN_INTRANS);
  qp_pool_release(c); /* left inside a transaction */
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_conn_txn_status(c), QP_TXN_IDLE);
  qp_result *r;
  assert_int_equal(qp_conn_exec(c, "SELECT count(*) FROM t", NULL, 0, &r), QP_OK);
  assert_string_equal(qp_result_value(r, 0, 0, NULL), "0");
  qp_result_free(r);
  /* session state: a temp table and a pragma are gone for the next lease */
  exec_ok(c, "CREATE TEMP TABLE secret(x)");
  assert_int_equal(qp_conn_exec(c, "PRAGMA cache_size = 77", NULL, 0, NULL), QP_OK);
  qp_pool_release(c);
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_conn_exec(c, "SELECT * FROM secret", NULL, 0, NULL), QP_QUERY);
  assert_non_null(strstr(qp_conn_errmsg(c), "no such table"));
  /* (read through the table-valued function: a PRAGMA statement would
   * itself mark the lease for reset) */
  assert_int_equal(qp_conn_exec(c, "SELECT * FROM pragma_cache_size", NULL, 0, &r), QP_OK);
  assert_string_not_equal(qp_result_value(r, 0, 0, NULL), "77");
  qp_result_free(r);
  qp_pool_release(c);
  /* an ordinary lease is not reset */
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_conn_exec(c, "SELECT 1", NULL, 0, NULL), QP_OK);
  qp_pool_release(c);
  qp_pool_stats s = QP_POOL_STATS_INIT;
  qp_pool_stats_get(p, &s);
  assert_int_equal(s.rollbacks, 1);
  assert_int_equal(s.resets, 1);
  assert_int_equal(s.total_xact_count, 4);
  qp_pool_close(p);

  /* reset never: the application owns the session */
  qp_pool_options o;
  qp_pool_options_init(&o);
  o.reset = QP_RESET_NEVER;
  p = open_pool(1, &o);
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  exec_ok(c, "CREATE TEMP TABLE kept(x)");
  qp_pool_release(c);
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_conn_exec(c, "SELECT * FROM kept", NULL, 0, NULL), QP_OK);
  qp_pool_release(c);
  qp_pool_close(p);
}

static void test_session_change_detection(void **state) {
  (void)state;
  /* exercised through the pool: each of these marks the lease for reset */
  const char *dirty[] = {"SET search_path = x", "set role app", "PREPARE p AS SELECT 1",
                         "LISTEN ch", "  /* c */ CREATE TEMP TABLE t(x int)",
                         "create temporary table t(x)", "SELECT pg_advisory_lock(1)",
                         "select set_config('a.b', 'c', false)", "PRAGMA foreign_keys=OFF",
                         "ATTACH 'x.db' AS x", "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
                         "RESET ALL", "LOAD 'auto_explain'"};
  const char *clean[] = {"SELECT 1", "SET LOCAL work_mem = '1MB'", "set transaction read only",
                         "INSERT INTO settings VALUES (1)", "CREATE TABLE t(x)",
                         "PREPARE TRANSACTION 'x'", "UPDATE t SET x = 1"};
  for (size_t i = 0; i < sizeof dirty / sizeof *dirty; i++) {
    qp_pool_options o;
    qp_pool_options_init(&o);
    o.dsn = "sqlite::memory:";
    qp_pool *p = open_pool(1, &o);
    qp_conn *c;
    assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
    qp_conn_exec(c, dirty[i], NULL, 0, NULL); /* may fail on SQLite: still marks */
    qp_pool_release(c);
    qp_pool_stats s = QP_POOL_STATS_INIT;
    qp_pool_stats_get(p, &s);
    if (s.resets != 1) fail_msg("not detected as a session change: %s", dirty[i]);
    qp_pool_close(p);
  }
  for (size_t i = 0; i < sizeof clean / sizeof *clean; i++) {
    qp_pool_options o;
    qp_pool_options_init(&o);
    o.dsn = "sqlite::memory:";
    qp_pool *p = open_pool(1, &o);
    qp_conn *c;
    assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
    qp_conn_exec(c, clean[i], NULL, 0, NULL);
    qp_pool_release(c);
    qp_pool_stats s = QP_POOL_STATS_INIT;
    qp_pool_stats_get(p, &s);
    if (s.resets != 0) fail_msg("wrongly taken for a session change: %s", clean[i]);
    qp_pool_close(p);
  }
}

static void test_try_acquire_and_timeout(void **state) {
  (void)state;
  qp_pool *p = open_pool(1, NULL);
  qp_conn *c, *c2 = (qp_conn *)1;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_pool_try_acquire(p, &c2), QP_WOULDBLOCK);
  assert_null(c2);
  uint64_t t0 = now_ms();
  assert_int_equal(qp_pool_acquire_timeout(p, &c2, 120), QP_EXHAUSTED);
  uint64_t took = now_ms() - t0;
  assert_true(took >= 120);
  /* honoured: given up at the timeout, not long after (the slack is for a
   * loaded CI machine under ASan, where a timed wait can wake late) */
  assert_true(took < 120 + 1000);
  char msg[256];
  assert_non_null(strstr(qp_pool_errmsg(p, msg, sizeof msg), "timed out after 120 ms"));
  qp_pool_release(c);
  assert_int_equal(qp_pool_try_acquire(p, &c2), QP_OK);
  qp_pool_release(c2);
  qp_pool_stats s = QP_POOL_STATS_INIT;
  qp_pool_stats_get(p, &s);
  assert_int_equal(s.timeouts, 1);
  assert_int_equal(s.wouldblocks, 1);
  assert_int_equal(s.acquires, 2);
  qp_pool_close(p);

  /* a try-acquire never connects, but asks the maintenance thread to */
  p = open_pool(2, NULL);
  assert_int_equal(qp_pool_try_acquire(p, &c), QP_WOULDBLOCK);
  for (int i = 0; i < 200 && qp_pool_try_acquire(p, &c) != QP_OK; i++) usleep(5000);
  assert_non_null(c);
  qp_pool_release(c);
  qp_pool_close(p);
}

typedef struct failer {
  qp_pool *pool;
  qp_status st;
  char msg[512];
} failer;

static void *try_and_fail(void *arg) {
  failer *f = arg;
  qp_conn *c = NULL;
  f->st = qp_pool_acquire_msg(f->pool, &c, 0, f->msg, sizeof f->msg);
  return NULL;
}

/* Each failed acquire has its own message: another thread's later failure
 * replaces the pool's latest (qp_pool_errmsg) but not this call's. */
static void test_acquire_message_is_per_call(void **state) {
  (void)state;
  qp_pool *p = open_pool(1, NULL);
  qp_conn *c, *c2;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  failer f = {.pool = p};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, try_and_fail, &f), 0);
  pthread_join(th, NULL);
  assert_int_equal(f.st, QP_WOULDBLOCK);
  char mine[512];
  assert_int_equal(qp_pool_acquire_msg(p, &c2, 50, mine, sizeof mine), QP_EXHAUSTED);
  assert_non_null(strstr(mine, "timed out after 50 ms"));
  assert_non_null(strstr(f.msg, "no connection free right now"));
  char latest[512];
  qp_pool_errmsg(p, latest, sizeof latest);
  assert_string_equal(latest, mine); /* the pool's latest is the other thread's */
  /* a success leaves the buffer empty */
  qp_pool_release(c);
  assert_int_equal(qp_pool_acquire_msg(p, &c, 50, mine, sizeof mine), QP_OK);
  assert_string_equal(mine, "");
  qp_pool_release(c);
  qp_pool_close(p);
}

static void test_min_size_idle_and_lifetime(void **state) {
  (void)state;
  qp_pool_options o;
  qp_pool_options_init(&o);
  o.min_size = 2;
  o.idle_timeout_ms = 0;
  qp_pool *p = open_pool(4, &o);
  qp_pool_stats s = QP_POOL_STATS_INIT;
  for (int i = 0; i < 200; i++) {
    qp_pool_stats_get(p, &s);
    if (s.sv_idle + s.sv_used == 2) break;
    usleep(5000);
  }
  assert_int_equal(s.sv_idle + s.sv_used, 2);
  qp_pool_close(p);

  qp_pool_options_init(&o);
  o.max_lifetime_ms = 50; /* retired on release once older than ~50 ms */
  p = open_pool(1, &o);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  usleep(80000);
  qp_pool_release(c);
  qp_pool_stats_get(p, &s);
  assert_int_equal(s.expired, 1);
  assert_int_equal(s.sv_idle, 0);
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  qp_pool_release(c);
  qp_pool_stats_get(p, &s);
  assert_int_equal(s.connects, 2);
  qp_pool_close(p);

  qp_pool_options_init(&o);
  o.idle_timeout_ms = 30;
  p = open_pool(2, &o);
  qp_conn *a, *b;
  assert_int_equal(qp_pool_acquire(p, &a), QP_OK);
  assert_int_equal(qp_pool_acquire(p, &b), QP_OK);
  qp_pool_release(a);
  qp_pool_release(b);
  for (int i = 0; i < 200; i++) {
    qp_pool_stats_get(p, &s);
    if (s.idle_closed == 2) break;
    usleep(5000);
  }
  assert_int_equal(s.idle_closed, 2);
  qp_pool_close(p);
}

static void test_metrics_prometheus(void **state) {
  (void)state;
  qp_pool *p = open_pool(2, NULL);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_conn_exec(c, "SELECT 1", NULL, 0, NULL), QP_OK);
  char small[64];
  size_t need = 0;
  assert_int_equal(qp_pool_prometheus(p, NULL, small, sizeof small, &need), QP_TOOBIG);
  assert_true(need > sizeof small);
  assert_int_equal(strlen(small), sizeof small - 1);
  char *text = NULL;
  assert_int_equal(qp_pool_prometheus_alloc(p, "pool=\"main\"", &text), QP_OK);
  assert_non_null(strstr(text, "# TYPE qprof_pool_cl_active gauge\n"));
  assert_non_null(strstr(text, "qprof_pool_cl_active{pool=\"main\"} 1\n"));
  assert_non_null(strstr(text, "qprof_pool_sv_active{pool=\"main\"} 1\n"));
  /* statements are counted when their lease ends */
  assert_non_null(strstr(text, "qprof_pool_query_total{pool=\"main\"} 0\n"));
  assert_non_null(strstr(text, "qprof_pool_maxwait_us{pool=\"main\"} 0\n"));
  assert_non_null(strstr(text, "qprof_pool_acquire_seconds_bucket{pool=\"main\",le=\"+Inf\"} 1\n"));
  assert_non_null(strstr(text, "qprof_pool_connect_seconds_count{pool=\"main\"} 1\n"));
  size_t n = strlen(text);
  char *buf = malloc(n + 1);
  assert_int_equal(qp_pool_prometheus(p, "pool=\"main\"", buf, n + 1, &need), QP_OK);
  assert_int_equal(need, n);
  free(buf);
  qp_pool_string_free(p, text);
  qp_pool_release(c);
  qp_pool_stats s = QP_POOL_STATS_INIT;
  qp_pool_stats_get(p, &s);
  uint64_t total = 0;
  for (int i = 0; i < QP_POOL_HIST_BUCKETS; i++) total += s.hold_hist[i];
  assert_int_equal(total, 1);
  assert_int_equal(s.total_query_count, 1);
  qp_pool_close(p);
}

static void test_records_into_profile_and_logs_slow(void **state) {
  (void)state;
  qp_profile *prof = NULL;
  char err[256];
  assert_int_equal(qp_profile_new(&prof, NULL, err, sizeof err), QP_OK);
  logcap cap = {.mu = PTHREAD_MUTEX_INITIALIZER};
  qp_hooks h = {0};
  h.log_fn = cap_log;
  h.log_ud = &cap;
  h.log_min_level = QP_LOG_DEBUG;
  qp_pool_options o;
  qp_pool_options_init(&o);
  o.profile = prof;
  o.hooks = &h;
  /* 100 ms: far above what SELECT ? + 1 takes even on a loaded machine (at
   * 5 ms a preempted statement was logged now and then), far below the
   * 3,000,000-row recursion below */
  o.slow_ms = 100;
  qp_pool *p = open_pool(1, &o);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  for (int i = 0; i < 10; i++) {
    qp_param x = qp_param_int(i);
    assert_int_equal(qp_conn_exec(c, "SELECT ? + 1", &x, 1, NULL), QP_OK);
  }
  assert_int_equal(qp_conn_exec(c, "SELECT * FROM nope", NULL, 0, NULL), QP_QUERY);
  assert_false(cap_has(&cap, "slow query"));
  /* a statement slower than the threshold goes to the log with its fingerprint */
  const char *slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < "
                     "3000000) SELECT count(*) FROM c";
  assert_int_equal(qp_conn_exec(c, slow, NULL, 0, NULL), QP_OK);
  qp_pool_release(c);
  assert_int_equal(qp_profile_recorded(prof), 12);
  assert_true(cap_has(&cap, "slow query: "));
  assert_true(cap_has(&cap, "fingerprint "));
  assert_true(cap_has(&cap, "with recursive c(x) as"));
  qp_pool_close(p);
  qp_profile_free(prof);
}

typedef struct fp_seen {
  int n;
  uint64_t calls;
  char text[8][256];
  uint64_t ncalls[8], total_ns[8];
} fp_seen;

static int collect_fp(const qp_query_summary *q, void *ud) {
  fp_seen *f = ud;
  if (f->n < 8) {
    snprintf(f->text[f->n], sizeof f->text[f->n], "%s", q->query);
    f->ncalls[f->n] = q->calls;
    f->total_ns[f->n] = q->total_ns;
  }
  f->n++;
  f->calls += q->calls;
  return 0;
}

/* Flushes prof into a fresh store and collects what it holds. */
static void stored(qp_profile *prof, fp_seen *out) {
  qp_store *st = qpt_flushed_store(prof, "store.db");
  memset(out, 0, sizeof *out);
  assert_int_equal(qp_store_summarize(st, INT64_MIN, INT64_MAX, collect_fp, out), QP_OK);
  qp_store_close(st);
}

/* The profile owns fingerprints: a cached statement run through the pool
 * is named under the profile's rules, so temp-table names that a rule folds
 * give one fingerprint (the pool used to normalize with a rule-less
 * normalizer of its own: three fingerprints). */
static void test_profile_rules_apply_through_the_pool(void **state) {
  (void)state;
  const char *rules[] = {"tmp_[0-9]+=tmp_?"};
  qp_profile_options po = {.rules = rules, .nrules = 1};
  qp_profile *prof = NULL;
  char err[256];
  assert_int_equal(qp_profile_new(&prof, &po, err, sizeof err), QP_OK);
  qp_pool_options o;
  qp_pool_options_init(&o);
  o.profile = prof;
  qp_pool *p = open_pool(1, &o);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  const char *sql[] = {"SELECT 1 AS tmp_123", "SELECT 1 AS tmp_456", "SELECT 1 AS tmp_789"};
  for (int round = 0; round < 2; round++) /* the second round hits the statement cache */
    for (int i = 0; i < 3; i++) assert_int_equal(qp_conn_exec(c, sql[i], NULL, 0, NULL), QP_OK);
  qp_pool_release(c);
  fp_seen f;
  stored(prof, &f);
  assert_int_equal(f.n, 1);
  assert_int_equal(f.calls, 6);
  assert_string_equal(f.text[0], "select ? as tmp_?");
  qp_pool_close(p);
  qp_profile_free(prof);
}

/* A script is recorded statement by statement, each under its own
 * fingerprint with its own time (the pool used to record one event for the
 * whole script); statements after a failing one never ran and are not
 * recorded; the failing one carries the error. */
static void test_script_recorded_per_statement(void **state) {
  (void)state;
  qp_profile *prof = NULL;
  char err[256];
  assert_int_equal(qp_profile_new(&prof, NULL, err, sizeof err), QP_OK);
  qp_pool_options o;
  qp_pool_options_init(&o);
  o.profile = prof;
  qp_pool *p = open_pool(1, &o);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  exec_ok(c, "CREATE TABLE s(x INTEGER PRIMARY KEY); INSERT INTO s VALUES (1); "
             "/* a comment */ INSERT INTO s VALUES (2);");
  assert_int_equal(qp_profile_recorded(prof), 3);
  assert_int_equal(qp_conn_exec_script(c, "INSERT INTO s VALUES (3); INSERT INTO s VALUES (1); "
                                          "DELETE FROM s"),
                   QP_QUERY);
  assert_int_equal(qp_profile_recorded(prof), 5);
  /* SQLite scripts are stepped statement by statement: each gets its own time */
  exec_ok(c, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) "
             "SELECT count(*) FROM c; SELECT 42 AS quick");
  assert_int_equal(qp_profile_recorded(prof), 7);
  qp_pool_release(c);
  fp_seen f;
  stored(prof, &f);
  assert_int_equal(f.n, 4); /* create, insert (DELETE never ran), the slow one, quick */
  assert_int_equal(f.calls, 7);
  uint64_t slow_ns = 0, quick_ns = 0;
  for (int i = 0; i < f.n; i++) {
    if (strncmp(f.text[i], "insert", 6) == 0) assert_int_equal(f.ncalls[i], 4);
    else if (strncmp(f.text[i], "with recursive", 14) == 0) slow_ns = f.total_ns[i];
    else if (strcmp(f.text[i], "select ? as quick") == 0) quick_ns = f.total_ns[i];
    else assert_string_equal(f.text[i], "create table s(x integer primary key)");
  }
  assert_true(slow_ns > 20 * quick_ns);
  assert_true(quick_ns > 0);
  qp_pool_close(p);
  qp_profile_free(prof);
}

/* Results belong to the caller: one kept across later statements on the
 * same lease, after release and after the pool is closed still holds its
 * own rows; one statement's values never show up in another's result. */
static void test_results_independent_of_lease(void **state) {
  (void)state;
  qp_pool *p = open_pool(1, NULL);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  exec_ok(c, "CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT)");
  exec_ok(c, "INSERT INTO kv VALUES (1, 'first'), (2, 'second value, longer'), (3, NULL)");
  const char *sql = "SELECT k, v FROM kv WHERE k = ?";
  qp_result *r[3] = {NULL, NULL, NULL};
  for (int i = 0; i < 3; i++) {
    qp_param x = qp_param_int(i + 1);
    assert_int_equal(qp_conn_exec(c, sql, &x, 1, &r[i]), QP_OK);
  }
  qp_param none = qp_param_int(99);
  qp_result *empty = NULL;
  assert_int_equal(qp_conn_exec(c, sql, &none, 1, &empty), QP_OK);
  assert_int_equal(qp_result_rows(empty), 0);
  assert_null(qp_result_value(empty, 0, 0, NULL));
  qp_result_free(empty);
  qp_pool_release(c);
  qp_pool_close(p);
  /* pool gone: every result still has exactly its own row */
  assert_string_equal(qp_result_value(r[0], 0, 0, NULL), "1");
  assert_string_equal(qp_result_value(r[0], 0, 1, NULL), "first");
  assert_string_equal(qp_result_value(r[1], 0, 0, NULL), "2");
  assert_string_equal(qp_result_value(r[1], 0, 1, NULL), "second value, longer");
  assert_string_equal(qp_result_value(r[2], 0, 0, NULL), "3");
  assert_true(qp_result_isnull(r[2], 0, 1));
  assert_null(qp_result_value(r[2], 0, 1, NULL));
  assert_string_equal(qp_result_colname(r[2], 1), "v");
  for (int i = 0; i < 3; i++) {
    assert_int_equal(qp_result_rows(r[i]), 1);
    qp_result_free(r[i]);
  }
}

/* A service that builds its SQL in one buffer: the statement cache finds
 * statements by address first, but what runs and what is recorded (and
 * logged with its fingerprint) is always the text in the buffer now. */
static void test_reused_sql_buffer(void **state) {
  (void)state;
  logcap cap = {.mu = PTHREAD_MUTEX_INITIALIZER};
  qp_hooks h = {0};
  h.log_fn = cap_log;
  h.log_ud = &cap;
  h.log_min_level = QP_LOG_DEBUG;
  qp_profile *prof = NULL;
  char err[256];
  assert_int_equal(qp_profile_new(&prof, NULL, err, sizeof err), QP_OK);
  qp_pool_options o;
  qp_pool_options_init(&o);
  o.hooks = &h;
  o.profile = prof;
  o.slow_ms = 1e-9; /* log every statement, with its normalized text */
  qp_pool *p = open_pool(1, &o);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  exec_ok(c, "CREATE TABLE alpha(x); CREATE TABLE beta(x); INSERT INTO alpha VALUES (1); "
             "INSERT INTO beta VALUES (2), (3)");
  char buf[64];
  static const char *tables[] = {"alpha", "beta", "alpha", "beta", "alpha"};
  for (int i = 0; i < 5; i++) {
    snprintf(buf, sizeof buf, "SELECT count(*) FROM %s", tables[i]);
    qp_result *r = NULL;
    assert_int_equal(qp_conn_exec(c, buf, NULL, 0, &r), QP_OK);
    assert_string_equal(qp_result_value(r, 0, 0, NULL), i % 2 ? "2" : "1");
    qp_result_free(r);
  }
  snprintf(buf, sizeof buf, "SELECT count(*) FROM gamma");
  assert_int_equal(qp_conn_exec(c, buf, NULL, 0, NULL), QP_QUERY);
  assert_string_equal(qp_conn_sqlstate(c), "SQLITE_ERROR");
  qp_pool_release(c);
  assert_true(cap_has(&cap, "select count(*) from alpha"));
  assert_true(cap_has(&cap, "select count(*) from beta"));
  assert_true(cap_has(&cap, "from gamma"));
  assert_int_equal(qp_profile_recorded(prof), 6 + 4); /* + the script, statement by statement */
  qp_pool_close(p);
  qp_profile_free(prof);
}

static void test_leak_detection_names_holder(void **state) {
  (void)state;
  logcap cap = {.mu = PTHREAD_MUTEX_INITIALIZER};
  qp_hooks h = {0};
  h.log_fn = cap_log;
  h.log_ud = &cap;
  qp_pool_options o;
  qp_pool_options_init(&o);
  o.hooks = &h;
  o.leak_ms = 40;
  qp_pool *p = open_pool(2, &o);
  qp_conn *c;
  int line = __LINE__ + 1;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  char where[128];
  snprintf(where, sizeof where, "test_pool_sqlite.c:%d", line);
  qp_pool_stats s = QP_POOL_STATS_INIT;
  for (int i = 0; i < 100; i++) {
    qp_pool_stats_get(p, &s);
    if (s.leaks > 0) break;
    usleep(10000);
  }
  assert_int_equal(s.leaks, 1);
  assert_true(cap_has(&cap, "possible connection leak"));
  assert_true(cap_has(&cap, where));
  assert_true(cap_has(&cap, "(thread 0x"));
  usleep(100000);
  qp_pool_stats_get(p, &s);
  assert_int_equal(s.leaks, 1); /* reported once */
  qp_pool_release(c);
  qp_pool_close(p);
}

static void test_fork_child_opens_its_own(void **state) {
  (void)state;
  qp_pool *p = open_pool(2, NULL);
  qp_conn *held, *other;
  assert_int_equal(qp_pool_acquire(p, &held), QP_OK);
  assert_int_equal(qp_pool_acquire(p, &other), QP_OK);
  exec_ok(held, "CREATE TABLE IF NOT EXISTS f(pid INTEGER)");
  qp_pool_release(other); /* one idle, one held across the fork */
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int rc = 0;
    qp_conn *c;
    if (qp_pool_acquire(p, &c) != QP_OK) _exit(10);
    qp_param x = qp_param_int(getpid());
    if (qp_conn_exec(c, "INSERT INTO f VALUES (?)", &x, 1, NULL) != QP_OK) rc = 11;
    qp_pool_stats s = QP_POOL_STATS_INIT;
    qp_pool_stats_get(p, &s);
    if (s.fork_drops != 2 || s.connects != 1) rc = 12;
    /* the lease held across fork() belongs to the parent: unusable here */
    if (qp_conn_exec(held, "SELECT 1", NULL, 0, NULL) != QP_CLOSED) rc = 13;
    qp_pool_release(held);
    qp_pool_release(c);
    qp_pool_close(p);
    _exit(rc);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  /* the parent's connections still work */
  qp_result *r;
  assert_int_equal(qp_conn_exec(held, "SELECT pid FROM f", NULL, 0, &r), QP_OK);
  int64_t child;
  assert_int_equal(qp_result_int64(r, 0, 0, &child), QP_OK);
  assert_int_equal(child, pid);
  qp_result_free(r);
  qp_pool_release(held);
  assert_int_equal(qp_pool_acquire(p, &other), QP_OK);
  assert_int_equal(qp_conn_exec(other, "SELECT count(*) FROM f", NULL, 0, NULL), QP_OK);
  qp_pool_release(other);
  qp_pool_stats s = QP_POOL_STATS_INIT;
  qp_pool_stats_get(p, &s);
  assert_int_equal(s.fork_drops, 0);
  qp_pool_close(p);
}

static int g_hook_calls;

static qp_status hook_ok(qp_conn *c, void *ud) {
  (void)ud;
  g_hook_calls++;
  return qp_conn_exec_script(c, "CREATE TEMP TABLE IF NOT EXISTS from_hook(x); "
                                "PRAGMA cache_size = 4321");
}

static qp_status hook_fail(qp_conn *c, void *ud) {
  (void)ud;
  return qp_conn_exec(c, "SELECT * FROM table_that_is_not_there", NULL, 0, NULL);
}

static void test_on_connect_hook(void **state) {
  (void)state;
  qp_pool_options o;
  qp_pool_options_init(&o);
  o.on_connect = hook_ok;
  g_hook_calls = 0;
  qp_pool *p = open_pool(1, &o);
  qp_conn *c;
  qp_result *r;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(g_hook_calls, 1);
  assert_int_equal(qp_conn_exec(c, "SELECT count(*) FROM from_hook", NULL, 0, NULL), QP_OK);
  qp_pool_release(c);
  /* what the hook set is the baseline: not reset under policy auto */
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_conn_exec(c, "SELECT * FROM pragma_cache_size", NULL, 0, &r), QP_OK);
  assert_string_equal(qp_result_value(r, 0, 0, NULL), "4321");
  qp_result_free(r);
  qp_pool_release(c);
  assert_int_equal(g_hook_calls, 1);
  qp_pool_stats s = QP_POOL_STATS_INIT;
  qp_pool_stats_get(p, &s);
  assert_int_equal(s.resets, 0);
  qp_pool_close(p);

  qp_pool_options_init(&o);
  o.on_connect = hook_fail;
  p = open_pool(1, &o);
  assert_int_equal(qp_pool_acquire_timeout(p, &c, 200), QP_UNAVAILABLE);
  char msg[512];
  assert_non_null(strstr(qp_pool_errmsg(p, msg, sizeof msg), "on_connect hook failed"));
  assert_non_null(strstr(msg, "no such table"));
  qp_pool_close(p);
}

static void test_open_out_of_memory(void **state) {
  (void)state;
  const char *dsn = fresh_dsn();
  for (long n = 1; n < 500; n++) {
    qpt_failalloc fa = {0};
    fa.fail_at = n;
    qp_hooks h = qpt_failalloc_hooks(&fa);
    qp_pool_options o;
    qp_pool_options_init(&o);
    o.dsn = dsn;
    o.hooks = &h;
    o.max_size = 2;
    qp_pool *p = NULL;
    char err[256];
    qp_status st = qp_pool_open(&p, &o, err, sizeof err);
    if (st != QP_OK) {
      assert_int_equal(st, QP_NOMEM);
      assert_null(p);
      assert_int_equal(fa.live, 0);
      continue;
    }
    qp_conn *c = NULL;
    st = qp_pool_acquire(p, &c);
    if (st == QP_OK) {
      qp_result *r = NULL;
      st = qp_conn_exec(c, "SELECT 1, 'two'", NULL, 0, &r);
      assert_true(st == QP_OK || st == QP_NOMEM);
      qp_result_free(r);
      qp_pool_release(c);
    } else {
      assert_true(st == QP_NOMEM || st == QP_UNAVAILABLE);
    }
    qp_pool_close(p);
    assert_int_equal(fa.live, 0);
    if (fa.count < n) break;
  }
}

typedef struct who_seen {
  int n;
  char user[4][64], app[4][64], host[4][64];
  uint64_t calls[4];
} who_seen;

static int collect_who(const qp_query_summary *q, void *ud) {
  who_seen *w = ud;
  if (strcmp(q->query, "select ? + ?") != 0) return 0;
  if (w->n < 4) {
    snprintf(w->user[w->n], sizeof w->user[0], "%s", q->user);
    snprintf(w->app[w->n], sizeof w->app[0], "%s", q->application);
    snprintf(w->host[w->n], sizeof w->host[0], "%s", q->host);
    w->calls[w->n] = q->calls;
  }
  w->n++;
  return 0;
}

/* Who ran it: SQLite statements are recorded under the OS user and the
 * program's name, and under the pool's host (option host, else the
 * machine's name); read back from the store per host. */
static void test_dims_user_application_host(void **state) {
  (void)state;
  qp_profile *prof = NULL;
  char err[256];
  assert_int_equal(qp_profile_new(&prof, NULL, err, sizeof err), QP_OK);
  qp_pool_options o;
  qp_pool_options_init(&o);
  o.profile = prof;
  o.host = "h1";
  qp_pool *a = open_pool(1, &o);
  o.host = NULL;
  qp_pool *b = open_pool(1, &o);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(a, &c), QP_OK);
  for (int i = 0; i < 3; i++) assert_int_equal(qp_conn_exec(c, "SELECT 1 + 2", NULL, 0, NULL), QP_OK);
  qp_pool_release(c);
  assert_int_equal(qp_pool_acquire(b, &c), QP_OK);
  for (int i = 0; i < 2; i++) assert_int_equal(qp_conn_exec(c, "SELECT 1 + 2", NULL, 0, NULL), QP_OK);
  qp_pool_release(c);
  qp_pool_close(a);
  qp_pool_close(b);
  qp_store *st = qpt_flushed_store(prof, "who.db");
  who_seen w;
  memset(&w, 0, sizeof w);
  assert_int_equal(qp_store_summarize(st, INT64_MIN, INT64_MAX, collect_who, &w), QP_OK);
  qp_store_close(st);
  qp_profile_free(prof);
  assert_int_equal(w.n, 2);
  assert_true(qp_default_os_user()[0] != '\0');
  assert_string_equal(qp_default_application(), "test_pool_sqlite");
  assert_true(qp_default_host()[0] != '\0');
  assert_string_not_equal(qp_default_host(), "h1");
  for (int i = 0; i < 2; i++) {
    assert_string_equal(w.user[i], qp_default_os_user());
    assert_string_equal(w.app[i], "test_pool_sqlite");
    bool h1 = strcmp(w.host[i], "h1") == 0;
    if (!h1) assert_string_equal(w.host[i], qp_default_host());
    assert_int_equal(w.calls[i], h1 ? 3 : 2);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_options),
      cmocka_unit_test(test_options_from_config),
      cmocka_unit_test(test_lease_basics),
      cmocka_unit_test(test_release_rolls_back_and_resets),
      cmocka_unit_test(test_session_change_detection),
      cmocka_unit_test(test_try_acquire_and_timeout),
      cmocka_unit_test(test_acquire_message_is_per_call),
      cmocka_unit_test(test_min_size_idle_and_lifetime),
      cmocka_unit_test(test_metrics_prometheus),
      cmocka_unit_test(test_records_into_profile_and_logs_slow),
      cmocka_unit_test(test_profile_rules_apply_through_the_pool),
      cmocka_unit_test(test_script_recorded_per_statement),
      cmocka_unit_test(test_results_independent_of_lease),
      cmocka_unit_test(test_reused_sql_buffer),
      cmocka_unit_test(test_leak_detection_names_holder),
      cmocka_unit_test(test_fork_child_opens_its_own),
      cmocka_unit_test(test_on_connect_hook),
      cmocka_unit_test(test_open_out_of_memory),
      cmocka_unit_test(test_dims_user_application_host),
  };
  return cmocka_run_group_tests(tests, NULL, qpt_tempdirs_remove);
}
