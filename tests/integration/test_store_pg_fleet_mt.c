/* The PostgreSQL store as a fleet's store, on a PRIVATE cluster (the
 * shared fixture is never stopped): 16 writers, each with its own profile
 * and store handle, flush overlapping keys into one database at once for
 * QP_FLEET_SECONDS (default 30 s); the server is stopped (pg_ctl -m fast)
 * for 10 s a third of the way in and started again. Every statement each
 * writer recorded is in the store exactly once (calls and rows per key, at
 * every level), and no flush surfaced a deadlock or a serialization
 * failure. */
#include "pgtest.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qprof/segment.h"
#include "seg/seg_int.h"

#define WRITERS 16
#define FPS 12
#define DBS 2
#define USERS 3
#define KEYS (FPS * DBS * USERS)

static qpt_pgcluster g_pc;
static atomic_bool g_stop;
static atomic_int g_bad; /* flush errors that must not be: deadlock, serialization, other */
static char g_bad_msg[512];
static pthread_mutex_t g_bad_mu = PTHREAD_MUTEX_INITIALIZER;

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int cluster(const char *action) {
  return qpt_pgcluster_do(&g_pc, action);
}

static int setup(void **state) {
  (void)state;
  return qpt_pgcluster_start(&g_pc, "store_fleet", 51000 + (int)(getpid() % 4000));
}

static int teardown(void **state) {
  cluster("stop");
  return qpt_tempdirs_remove(state);
}

static const char *const db_names[DBS] = {"app", "billing"};
static const char *const user_names[USERS] = {"alice", "bob", "carol"};

typedef struct writer {
  int id;
  uint64_t calls[KEYS], rows[KEYS]; /* what this writer recorded */
  int flushes, failed;
  char last_err[512];
} writer;

static void key_of(int k, int *fp, int *db, int *user) {
  *fp = k % FPS;
  *db = (k / FPS) % DBS;
  *user = k / (FPS * DBS);
}

static void bad(const char *msg) {
  pthread_mutex_lock(&g_bad_mu);
  if (atomic_fetch_add(&g_bad, 1) == 0) snprintf(g_bad_msg, sizeof g_bad_msg, "%s", msg);
  pthread_mutex_unlock(&g_bad_mu);
}

/* Records a batch of events on keys that overlap with every other writer's,
 * then flushes; a flush that fails while the server is away is tried again
 * with the next batch. */
static void *writer_main(void *arg) {
  writer *w = arg;
  qp_profile *p = NULL;
  char err[512];
  if (qp_profile_new(&p, NULL, err, sizeof err) != QP_OK) {
    bad(err);
    return NULL;
  }
  qp_store *s = NULL;
  while (s == NULL && !atomic_load(&g_stop)) {
    if (qp_store_open(&s, g_pc.dsn, QP_STORE_WRITE, NULL, err, sizeof err) != QP_OK) {
      s = NULL;
      sleep_ms(50);
    }
  }
  unsigned seed = (unsigned)w->id * 2654435761u;
  char text[64];
  while (s != NULL) {
    bool last = atomic_load(&g_stop);
    for (int i = 0; !last && i < 40; i++) {
      int k = (int)(rand_r(&seed) % KEYS), fp, db, user;
      key_of(k, &fp, &db, &user);
      snprintf(text, sizeof text, "select c%d from t where id = ?", fp);
      qp_query_event e = {.size = sizeof e};
      e.backend = QP_BACKEND_POSTGRES;
      e.database = db_names[db];
      e.user = user_names[user];
      e.application = "fleet_mt";
      e.host = "h1";
      e.normalized = text;
      e.normalized_len = strlen(text);
      e.fingerprint = 0xF1EE700000ULL + (uint64_t)fp;
      e.duration_ns = 1000 + (uint64_t)(rand_r(&seed) % 100000);
      e.rows = (int64_t)(rand_r(&seed) % 5);
      if (qp_profile_record(p, &e) != QP_OK) {
        bad("record failed");
        continue;
      }
      w->calls[k]++;
      w->rows[k] += (uint64_t)e.rows;
    }
    qp_status rc = qp_profile_flush(p, s);
    w->flushes++;
    if (rc == QP_OK) {
      if (last) break;
      continue;
    }
    w->failed++;
    const char *m = qp_store_errmsg(s);
    snprintf(w->last_err, sizeof w->last_err, "%s", m);
    /* A server that is away is expected (QP_UNAVAILABLE); a deadlock or a
     * serialization failure must have been retried and never surface. */
    if (rc != QP_UNAVAILABLE || strstr(m, "deadlock") != NULL || strstr(m, "serializ") != NULL)
      bad(m);
    sleep_ms(20);
    if (last && w->failed > 2000) {
      bad("the last flush never succeeded");
      break;
    }
  }
  if (qp_profile_lost(p) != 0) bad("the profile lost statements");
  qp_store_close(s);
  qp_profile_free(p);
  return NULL;
}

static PGresult *query(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) fail_msg("%s: %s", sql, PQerrorMessage(c));
  return r;
}

static void test_sixteen_writers_server_restart(void **state) {
  (void)state;
  const char *env = getenv("QP_FLEET_SECONDS");
  long secs = env != NULL && atol(env) > 0 ? atol(env) : 30;
  static writer ws[WRITERS];
  pthread_t th[WRITERS];
  for (int i = 0; i < WRITERS; i++) {
    memset(&ws[i], 0, sizeof ws[i]);
    ws[i].id = i + 1;
    assert_int_equal(pthread_create(&th[i], NULL, writer_main, &ws[i]), 0);
  }
  uint64_t t0 = now_ms();
  sleep_ms(secs * 1000 / 3);
  assert_int_equal(cluster("serverstop"), 0);
  printf("# server stopped at %.1f s\n", (double)(now_ms() - t0) / 1000);
  sleep_ms(10000);
  assert_int_equal(cluster("serverstart"), 0);
  printf("# server started at %.1f s\n", (double)(now_ms() - t0) / 1000);
  while (now_ms() - t0 < (uint64_t)secs * 1000) sleep_ms(100);
  atomic_store(&g_stop, true);
  int flushes = 0, failed = 0;
  for (int i = 0; i < WRITERS; i++) {
    pthread_join(th[i], NULL);
    flushes += ws[i].flushes;
    failed += ws[i].failed;
  }
  printf("# %d flushes, %d failed while the server was away\n", flushes, failed);
  if (atomic_load(&g_bad) != 0) fail_msg("%d bad flushes; first: %s", atomic_load(&g_bad), g_bad_msg);
  assert_true(failed > 0); /* the restart was seen */

  uint64_t want_calls[KEYS] = {0}, want_rows[KEYS] = {0}, all = 0;
  for (int i = 0; i < WRITERS; i++)
    for (int k = 0; k < KEYS; k++) {
      want_calls[k] += ws[i].calls[k];
      want_rows[k] += ws[i].rows[k];
      all += ws[i].calls[k];
    }
  PGconn *c = PQconnectdb(g_pc.dsn);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  for (int level = 0; level < 4; level++) {
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT fingerprint - %lld, database, user_name, sum(calls), sum(rows) "
             "FROM qprof.qp_stats WHERE level = %d AND application = 'fleet_mt' "
             "GROUP BY 1, 2, 3",
             (long long)0xF1EE700000LL, level);
    PGresult *r = query(c, sql);
    uint64_t got_calls[KEYS] = {0}, got_rows[KEYS] = {0}, sum = 0;
    for (int i = 0; i < PQntuples(r); i++) {
      int fp = atoi(PQgetvalue(r, i, 0)), db = -1, user = -1;
      for (int d = 0; d < DBS; d++)
        if (strcmp(PQgetvalue(r, i, 1), db_names[d]) == 0) db = d;
      for (int u = 0; u < USERS; u++)
        if (strcmp(PQgetvalue(r, i, 2), user_names[u]) == 0) user = u;
      if (fp < 0 || fp >= FPS || db < 0 || user < 0) fail_msg("unexpected row at level %d", level);
      int k = fp + FPS * (db + DBS * user);
      got_calls[k] = strtoull(PQgetvalue(r, i, 3), NULL, 10);
      got_rows[k] = strtoull(PQgetvalue(r, i, 4), NULL, 10);
      sum += got_calls[k];
    }
    PQclear(r);
    printf("# level %d: %llu calls stored, %llu recorded\n", level, (unsigned long long)sum,
           (unsigned long long)all);
    for (int k = 0; k < KEYS; k++) {
      if (got_calls[k] != want_calls[k] || got_rows[k] != want_rows[k])
        fail_msg("level %d key %d: calls %llu rows %llu stored, %llu and %llu recorded", level, k,
                 (unsigned long long)got_calls[k], (unsigned long long)got_rows[k],
                 (unsigned long long)want_calls[k], (unsigned long long)want_rows[k]);
    }
  }
  PQfinish(c);
}

/* ---- a COMMIT that gets no answer --------------------------------------- */

static char g_doubt_dsn[600];  /* the owner's, who made the store */
static char g_doubt_store[700]; /* the role the store is written as */

/* The all-time calls of a fingerprint in `table` (qp_stats, or the deltas
 * of a writer without UPDATE in qp_stats_delta). */
static long long calls_in(const char *table, int fp) {
  char sql[256];
  snprintf(sql, sizeof sql,
           "SELECT coalesce(sum(calls), 0) FROM qprof.%s WHERE level = 3 AND fingerprint = %d",
           table, fp);
  return atoll(qpt_pg_value(g_doubt_dsn, sql));
}

static long long doubt_calls(void) {
  return calls_in("qp_stats", 0xD0B7) + calls_in("qp_stats_delta", 0xD0B7);
}

/* The doubt database, made by the first test that needs it, and the role
 * the next tests write as: the owner, or (append) a role with USAGE,
 * SELECT and INSERT only, whose flushes append deltas. */
static void doubt_store(bool append) {
  if (g_doubt_dsn[0] == '\0') {
    qpt_pg_exec(g_pc.dsn, "CREATE DATABASE doubt");
    qpt_pg_exec(g_pc.dsn, "ALTER DATABASE doubt SET synchronous_commit = on");
    snprintf(g_doubt_dsn, sizeof g_doubt_dsn, "%s", g_pc.dsn);
    char *db = strstr(g_doubt_dsn, "dbname=postgres");
    assert_non_null(db);
    memcpy(db, "dbname=doubt\0", 13);
    qp_store *s = NULL;
    char err[512];
    assert_int_equal(qp_store_open(&s, g_doubt_dsn, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
    qp_store_close(s);
    qpt_pg_exec(g_pc.dsn, "CREATE ROLE qp_doubt_appender LOGIN");
    qpt_pg_exec(g_doubt_dsn, "GRANT USAGE ON SCHEMA qprof TO qp_doubt_appender");
    qpt_pg_exec(g_doubt_dsn,
                "GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA qprof TO qp_doubt_appender");
  }
  snprintf(g_doubt_store, sizeof g_doubt_store, "%s%s", g_doubt_dsn,
           append ? " user=qp_doubt_appender" : "");
}

typedef struct flush_job {
  qp_profile *p;
  qp_store *s;
  qp_status rc;
} flush_job;

static void *flush_main(void *arg) {
  flush_job *j = arg;
  j->rc = qp_profile_flush(j->p, j->s);
  return NULL;
}

static void record_n(qp_profile *p, int n) {
  for (int i = 0; i < n; i++) {
    qp_query_event e = {.size = sizeof e};
    e.backend = QP_BACKEND_POSTGRES;
    e.database = "app";
    e.normalized = "select ?";
    e.normalized_len = 8;
    e.fingerprint = 0xD0B7;
    e.duration_ns = 1000;
    assert_int_equal(qp_profile_record(p, &e), QP_OK);
  }
}

/* Makes every COMMIT in the database 'doubt' wait for a synchronous
 * standby that does not exist (the transaction has committed locally). */
static void standby_missing(void) {
  qpt_pg_exec(g_pc.dsn, "ALTER SYSTEM SET synchronous_standby_names = 'nosuch'");
  qpt_pg_exec(g_pc.dsn, "SELECT pg_reload_conf()");
  sleep_ms(200);
}

/* Waits until a backend of 'doubt' waits in COMMIT. */
static void wait_in_commit(void) {
  PGconn *c = PQconnectdb(g_pc.dsn);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  uint64_t t0 = now_ms();
  for (;;) {
    PGresult *r = query(c, "SELECT count(*) FROM pg_stat_activity WHERE datname = 'doubt' "
                           "AND wait_event = 'SyncRep'");
    int n = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (n > 0) break;
    if (now_ms() - t0 > 60000) fail_msg("nothing ever waited in COMMIT");
    sleep_ms(50);
  }
  PQfinish(c);
}

/* Starts a flush that hangs in COMMIT and waits until it does. */
static void flush_hanging_in_commit(flush_job *j, pthread_t *th) {
  standby_missing();
  assert_int_equal(pthread_create(th, NULL, flush_main, j), 0);
  wait_in_commit();
}

static void no_standby(void) {
  qpt_pg_exec(g_pc.dsn, "ALTER SYSTEM RESET synchronous_standby_names");
  qpt_pg_exec(g_pc.dsn, "SELECT pg_reload_conf()");
  sleep_ms(200);
}

/* The connection breaks after COMMIT went out and before its answer came:
 * the store asks the server what became of the transaction (it committed)
 * and neither loses the statements nor writes them twice, also when the
 * server is away when it asks and the next flush has to settle it. */
static void commit_without_answer(bool append) {
  doubt_store(append);
  long long before = doubt_calls(), deltas_before = calls_in("qp_stats_delta", 0xD0B7);
  qp_profile *p = NULL;
  char err[512];
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  qp_store *s = NULL;
  assert_int_equal(qp_store_open(&s, g_doubt_store, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);

  /* 1. the backend is terminated in COMMIT; the server is up to ask */
  record_n(p, 5);
  flush_job j = {.p = p, .s = s};
  pthread_t th;
  flush_hanging_in_commit(&j, &th);
  qpt_pg_exec(g_pc.dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = 'doubt' AND wait_event = 'SyncRep'");
  pthread_join(th, NULL);
  no_standby();
  if (j.rc != QP_OK) fail_msg("flush: %s: %s", qp_errname(j.rc), qp_store_errmsg(s));
  assert_int_equal(doubt_calls() - before, 5);

  /* 2. the server stops while COMMIT waits: the flush fails in doubt; the
   * next one, once the server is back, finds it committed */
  record_n(p, 7);
  j.rc = QP_OK;
  flush_hanging_in_commit(&j, &th);
  assert_int_equal(cluster("serverstop"), 0);
  pthread_join(th, NULL);
  assert_int_equal(j.rc, QP_UNAVAILABLE);
  printf("# in doubt: %s\n", qp_store_errmsg(s));
  assert_non_null(strstr(qp_store_errmsg(s), "not known yet"));
  record_n(p, 2);
  assert_int_equal(qp_profile_flush(p, s), QP_UNAVAILABLE); /* still down: nothing moves */
  assert_int_equal(cluster("serverstart"), 0);
  no_standby();
  assert_int_equal(qp_profile_flush(p, s), QP_OK);
  assert_int_equal(doubt_calls() - before, 5 + 7 + 2);
  /* the append-only role wrote deltas only; the owner merged in place */
  assert_int_equal(calls_in("qp_stats_delta", 0xD0B7) - deltas_before, append ? 5 + 7 + 2 : 0);
  assert_int_equal(qp_profile_lost(p), 0);
  qp_store_close(s);
  qp_profile_free(p);
}

static void test_commit_without_answer(void **state) {
  (void)state;
  commit_without_answer(false);
}

/* The same on the append-only path (a role with SELECT and INSERT only):
 * its deltas are settled by txid_status exactly as merged rows are. */
static void test_commit_without_answer_append(void **state) {
  (void)state;
  commit_without_answer(true);
}

/* The same for the collector (qprof run, qprof collect): a harvest whose
 * COMMIT got no answer is held by the harvester, not gathered again from
 * the segments, so that it is written once whether or not it committed,
 * and the record beside the segment is written once it is settled. */
typedef struct commit_job {
  qp_harvester *hv;
  qp_store *s;
  qp_status rc;
} commit_job;

static void *commit_main(void *arg) {
  commit_job *j = arg;
  j->rc = qp_harvester_commit(j->hv, j->s);
  return NULL;
}

static void seg_record_n(qp_seg *seg, int n) {
  for (int i = 0; i < n; i++)
    assert_non_null(qp__seg_record(seg, QP_BACKEND_POSTGRES, 0xD0B8, "select ?", 8, "app\0u\0a", 7,
                                   1000, 1, NULL, (int64_t)time(NULL) * 1000000000));
}

static long long harvested_calls(void) {
  return calls_in("qp_stats", 53432) + calls_in("qp_stats_delta", 53432);
}

static void harvest_commit_without_answer(bool append) {
  doubt_store(append);
  long long deltas_before = calls_in("qp_stats_delta", 53432);
  const char *dir = qpt_tempdir();
  assert_non_null(dir);
  char run[512], path[600];
  snprintf(run, sizeof run, "%s/run", dir);
  assert_int_equal(qpt_system("mkdir -m 0700 '%s'", run), 0);
  snprintf(path, sizeof path, "%s/%d-0.qpseg", run, (int)getpid());
  qp_seg seg;
  assert_true(qp__seg_create(&seg, path, 2u << 20, 60, "h-doubt"));
  qp_harvester *hv;
  char err[512];
  assert_int_equal(qp_harvester_new(&hv, run, NULL, NULL, err, sizeof err), QP_OK);
  qp_store *s = NULL;
  assert_int_equal(qp_store_open(&s, g_doubt_store, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  long long before = harvested_calls();

  seg_record_n(&seg, 5);
  qp_harvest_stats st;
  assert_int_equal(qp_harvester_collect(hv, &st), QP_OK);
  assert_int_equal(st.statements, 5);
  standby_missing();
  commit_job j = {.hv = hv, .s = s};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, commit_main, &j), 0);
  wait_in_commit();
  assert_int_equal(cluster("serverstop"), 0);
  pthread_join(th, NULL);
  assert_int_equal(j.rc, QP_UNAVAILABLE);
  assert_true(qp_harvester_in_doubt(hv));
  printf("# harvest in doubt: %s\n", qp_harvester_errmsg(hv));

  /* more statements while the server is away: gathered, not written */
  seg_record_n(&seg, 2);
  assert_int_equal(qp_harvester_collect(hv, &st), QP_OK);
  assert_int_equal(st.statements, 2); /* only what came after the harvest in doubt */
  assert_int_not_equal(qp_harvester_commit(hv, s), QP_OK);

  assert_int_equal(cluster("serverstart"), 0);
  no_standby();
  seg_record_n(&seg, 3);
  assert_int_equal(qp_harvester_collect(hv, &st), QP_OK);
  assert_int_equal(st.statements, 3);
  assert_int_equal(qp_harvester_commit(hv, s), QP_OK);
  assert_false(qp_harvester_in_doubt(hv));
  /* the first 5 committed before the server stopped: written once, not twice */
  assert_int_equal(harvested_calls() - before, 5 + 2 + 3);
  qp_harvester_free(hv);

  /* what was written is recorded beside the segment: a new collector
   * gathers nothing again */
  assert_int_equal(qp_harvester_new(&hv, run, NULL, NULL, err, sizeof err), QP_OK);
  assert_int_equal(qp_harvester_collect(hv, &st), QP_OK);
  assert_int_equal(st.statements, 0);
  assert_int_equal(qp_harvester_commit(hv, s), QP_OK);
  assert_int_equal(harvested_calls() - before, 10);
  assert_int_equal(calls_in("qp_stats_delta", 53432) - deltas_before, append ? 10 : 0);
  qp_harvester_free(hv);
  qp_store_close(s);
}

static void test_harvest_commit_without_answer(void **state) {
  (void)state;
  harvest_commit_without_answer(false);
}

/* The harvester's hold on the append-only path. */
static void test_harvest_commit_without_answer_append(void **state) {
  (void)state;
  harvest_commit_without_answer(true);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_commit_without_answer),
      cmocka_unit_test(test_harvest_commit_without_answer),
      cmocka_unit_test(test_commit_without_answer_append),
      cmocka_unit_test(test_harvest_commit_without_answer_append),
      cmocka_unit_test(test_sixteen_writers_server_restart),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
