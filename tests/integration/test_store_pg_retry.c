/* The PostgreSQL store's retry of a flush (lib/store/pg_write.c,
 * qp__pg_write; docs/profiles.md, "The fleet store": at most 6 tries after a
 * serialization failure or a deadlock), against failures the server really
 * raises, on a database of the test's own on the fixture cluster:
 * - a statement trigger on qprof.qp_query raises 40001 or 40P01 the first
 *   N times it fires (counted in a sequence, which a rollback does not undo,
 *   so each failed try counts once): N = 3 < 6, the flush succeeds after
 *   exactly 4 tries, the totals are exact and each retry is logged with its
 *   SQLSTATE; N = 6, the flush fails after exactly 6 tries with an error
 *   that says so, the profile keeps its entries and the next flush (the
 *   trigger quiet) writes them exactly, nothing lost, nothing doubled;
 * - a real deadlock: a session of the test locks one query row, the flush
 *   locks the other and waits for it, the session then asks for the
 *   flush's row; the flush's backend (deadlock_timeout 1 s, the session's
 *   60 s) detects the cycle and gets 40P01, and the flush's retry succeeds
 *   with exact totals. */
#include "pgtest.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FP1 0x5E7A100001LL
#define FP2 0x5E7A100002LL

static qpt_pgdb g_db;

/* what the store logged, one line per message */
static char g_log[16384];
static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;

static void log_line(qp_log_level level, const char *message, void *ud) {
  (void)ud;
  pthread_mutex_lock(&g_log_mu);
  size_t n = strlen(g_log);
  snprintf(g_log + n, sizeof g_log - n, "%s: %s\n", qp_log_level_name(level), message);
  pthread_mutex_unlock(&g_log_mu);
}

static int count_lines(const char *needle) {
  int n = 0;
  pthread_mutex_lock(&g_log_mu);
  for (const char *p = g_log; (p = strstr(p, needle)) != NULL; p++) n++;
  pthread_mutex_unlock(&g_log_mu);
  return n;
}

static int setup(void **state) {
  (void)state;
  return qpt_pgdb_create(&g_db, "qpt_retry_%d", (int)getpid());
}

static int teardown(void **state) {
  (void)state;
  return qpt_pgdb_drop(&g_db);
}

static qp_store *open_store(void) {
  static qp_hooks hooks = {.log_fn = log_line, .log_min_level = QP_LOG_DEBUG};
  qp_store *s = NULL;
  char err[512];
  if (qp_store_open(&s, g_db.dsn, QP_STORE_WRITE, &hooks, err, sizeof err) != QP_OK)
    fail_msg("open: %s", err);
  return s;
}

static void record(qp_profile *p, int64_t fp, int n) {
  char text[64];
  snprintf(text, sizeof text, "select c%lld from t where id = ?", (long long)(fp & 0xff));
  for (int i = 0; i < n; i++) {
    qp_query_event e = {.size = sizeof e};
    e.backend = QP_BACKEND_POSTGRES;
    e.database = "app";
    e.user = "alice";
    e.application = "retry";
    e.host = "h1";
    e.normalized = text;
    e.normalized_len = strlen(text);
    e.fingerprint = (uint64_t)fp;
    e.duration_ns = 1000 + (uint64_t)i;
    e.rows = 2;
    assert_int_equal(qp_profile_record(p, &e), QP_OK);
  }
}

/* The calls of fingerprint fp: the same at every level ("" when the levels
 * disagree), so that the check does not depend on how many levels there are. */
static const char *calls_of(int64_t fp) {
  char sql[256];
  snprintf(sql, sizeof sql,
           "SELECT CASE WHEN count(DISTINCT c) = 1 THEN min(c)::text ELSE '' END FROM "
           "(SELECT level, sum(calls) AS c FROM qprof.qp_stats WHERE fingerprint = %lld "
           "GROUP BY level) x",
           (long long)fp);
  return qpt_pg_value(g_db.dsn, sql);
}

/* Makes the store (empty), then the trigger that fails the first
 * qpt_fail_cfg.n firings of an INSERT into qprof.qp_query with SQLSTATE
 * qpt_fail_cfg.code. */
static void arm(int n, const char *code) {
  qp_store *s = open_store();
  qp_store_close(s);
  char sql[2048];
  snprintf(sql, sizeof sql,
           "DROP TRIGGER IF EXISTS qpt_fail ON qprof.qp_query;"
           "DROP TABLE IF EXISTS public.qpt_fail_cfg; DROP SEQUENCE IF EXISTS public.qpt_fail_seq;"
           "CREATE TABLE public.qpt_fail_cfg (n int, code text);"
           "INSERT INTO public.qpt_fail_cfg VALUES (%d, '%s');"
           "CREATE SEQUENCE public.qpt_fail_seq;"
           "CREATE OR REPLACE FUNCTION public.qpt_fail() RETURNS trigger LANGUAGE plpgsql AS $$"
           "DECLARE c record; BEGIN SELECT n, code INTO c FROM public.qpt_fail_cfg;"
           "IF nextval('public.qpt_fail_seq') <= c.n THEN "
           "RAISE EXCEPTION 'qpt forced failure' USING ERRCODE = c.code; END IF;"
           "RETURN NULL; END $$;"
           "CREATE TRIGGER qpt_fail BEFORE INSERT ON qprof.qp_query "
           "FOR EACH STATEMENT EXECUTE FUNCTION public.qpt_fail();"
           "TRUNCATE qprof.qp_stats, qprof.qp_query",
           n, code);
  qpt_pg_exec(g_db.dsn, sql);
  pthread_mutex_lock(&g_log_mu);
  g_log[0] = '\0';
  pthread_mutex_unlock(&g_log_mu);
}

/* How many times the trigger fired (each failed try fires it once). */
static long fired(void) {
  return strtol(qpt_pg_value(g_db.dsn, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END "
                                       "FROM public.qpt_fail_seq"),
                NULL, 10);
}

/* N failures below the bound: the flush succeeds, N retries logged. */
static void retried_below_bound(const char *code) {
  arm(3, code);
  qp_profile *p = NULL;
  assert_int_equal(qp_profile_new(&p, NULL, NULL, 0), QP_OK);
  record(p, FP1, 7);
  record(p, FP2, 5);
  qp_store *s = open_store();
  qp_status rc = qp_profile_flush(p, s);
  if (rc != QP_OK) fail_msg("flush: %s\nlog:\n%s", qp_store_errmsg(s), g_log);
  /* 3 failed tries, then one whose two INSERTs into qp_query fired it twice */
  assert_int_equal(fired(), 5);
  assert_string_equal(calls_of(FP1), "7");
  assert_string_equal(calls_of(FP2), "5");
  char want[64];
  snprintf(want, sizeof want, "trying again (%s", code);
  if (count_lines(want) != 3) fail_msg("want 3 retries with %s in the log:\n%s", code, g_log);
  assert_int_equal(count_lines("giving up"), 0);
  assert_int_equal(qp_profile_lost(p), 0);
  qp_store_close(s);
  qp_profile_free(p);
}

static void test_serialization_failure_retried(void **state) {
  (void)state;
  retried_below_bound("40001");
}

static void test_deadlock_retried(void **state) {
  (void)state;
  retried_below_bound("40P01");
}

/* As many failures as the bound: the flush fails after 6 tries and says
 * so; the entries stay in the profile and the next flush writes them once. */
static void gives_up_at_bound(const char *code) {
  arm(6, code);
  qp_profile *p = NULL;
  assert_int_equal(qp_profile_new(&p, NULL, NULL, 0), QP_OK);
  record(p, FP1, 4);
  record(p, FP2, 9);
  qp_store *s = open_store();
  qp_status rc = qp_profile_flush(p, s);
  assert_int_not_equal(rc, QP_OK);
  const char *m = qp_store_errmsg(s);
  print_message("failed flush (%s): %s\n", code, m);
  if (strstr(m, "qpt forced failure") == NULL || strstr(m, "6 tries") == NULL)
    fail_msg("unclear error: %s", m);
  assert_int_equal(fired(), 6); /* exactly the bound, not one more */
  char want[64];
  snprintf(want, sizeof want, "trying again (%s", code);
  assert_int_equal(count_lines(want), 5);
  assert_int_equal(count_lines("giving up"), 1);
  assert_string_equal(qpt_pg_value(g_db.dsn, "SELECT count(*) FROM qprof.qp_stats"), "0");
  /* the server quiet again: the held entries are written, exactly once */
  qpt_pg_exec(g_db.dsn, "UPDATE public.qpt_fail_cfg SET n = 0");
  record(p, FP1, 1);
  rc = qp_profile_flush(p, s);
  if (rc != QP_OK) fail_msg("second flush: %s", qp_store_errmsg(s));
  assert_string_equal(calls_of(FP1), "5");
  assert_string_equal(calls_of(FP2), "9");
  assert_int_equal(qp_profile_lost(p), 0);
  /* and nothing more on a flush with nothing new */
  assert_int_equal(qp_profile_flush(p, s), QP_OK);
  assert_string_equal(calls_of(FP1), "5");
  qp_store_close(s);
  qp_profile_free(p);
}

static void test_serialization_failure_bounded(void **state) {
  (void)state;
  gives_up_at_bound("40001");
}

static void test_deadlock_bounded(void **state) {
  (void)state;
  gives_up_at_bound("40P01");
}

typedef struct flusher {
  qp_profile *p;
  qp_store *s;
  qp_status rc;
  char err[512];
} flusher;

static void *flush_main(void *arg) {
  flusher *f = arg;
  f->rc = qp_profile_flush(f->p, f->s);
  snprintf(f->err, sizeof f->err, "%s", f->rc == QP_OK ? "" : qp_store_errmsg(f->s));
  return NULL;
}

static PGresult *run(PGconn *c, const char *sql, ExecStatusType want) {
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != want) fail_msg("%s: %s", sql, PQerrorMessage(c));
  return r;
}

/* A real deadlock between the flush and a session of the test that takes
 * the query rows in the opposite order. */
static void test_real_deadlock_retried(void **state) {
  (void)state;
  arm(0, "40001"); /* the trigger never fails */
  qp_profile *p = NULL;
  assert_int_equal(qp_profile_new(&p, NULL, NULL, 0), QP_OK);
  qp_store *s = open_store();
  record(p, FP1, 1);
  record(p, FP2, 1);
  assert_int_equal(qp_profile_flush(p, s), QP_OK); /* both rows exist */
  PGconn *c = PQconnectdb(g_db.dsn);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  PQclear(run(c, "SET deadlock_timeout = '60s'", PGRES_COMMAND_OK));
  PQclear(run(c, "BEGIN", PGRES_COMMAND_OK));
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT 1 FROM qprof.qp_query WHERE fingerprint = %lld FOR UPDATE",
           (long long)FP2);
  PQclear(run(c, sql, PGRES_TUPLES_OK));
  record(p, FP1, 3);
  record(p, FP2, 4);
  flusher f = {.p = p, .s = s};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, flush_main, &f), 0);
  /* wait until the flush (holding FP1's row) waits for FP2's: a backend
   * blocked by this session (not any lock of the cluster: other tests share
   * it and wait for their own) */
  int waiting = 0;
  for (int i = 0; i < 500 && !waiting; i++) {
    PGresult *r = run(c,
                      "SELECT count(*) FROM pg_stat_activity "
                      "WHERE pg_backend_pid() = ANY (pg_blocking_pids(pid))",
                      PGRES_TUPLES_OK);
    waiting = atoi(PQgetvalue(r, 0, 0)) > 0;
    PQclear(r);
    if (!waiting) {
      struct timespec ts = {0, 10 * 1000000L};
      nanosleep(&ts, NULL);
    }
  }
  assert_true(waiting);
  snprintf(sql, sizeof sql, "SELECT 1 FROM qprof.qp_query WHERE fingerprint = %lld FOR UPDATE",
           (long long)FP1);
  PGresult *r = PQexec(c, sql); /* granted once the flush's backend gave up with 40P01 */
  if (PQresultStatus(r) != PGRES_TUPLES_OK) fail_msg("the test's session: %s", PQerrorMessage(c));
  PQclear(r);
  PQclear(run(c, "COMMIT", PGRES_COMMAND_OK));
  PQfinish(c);
  assert_int_equal(pthread_join(t, NULL), 0);
  if (f.rc != QP_OK) fail_msg("flush: %s\nlog:\n%s", f.err, g_log);
  print_message("log:\n%s", g_log);
  if (count_lines("trying again (40P01") != 1) fail_msg("want one 40P01 retry logged:\n%s", g_log);
  assert_string_equal(calls_of(FP1), "4");
  assert_string_equal(calls_of(FP2), "5");
  qp_store_close(s);
  qp_profile_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_serialization_failure_retried),
      cmocka_unit_test(test_deadlock_retried),
      cmocka_unit_test(test_serialization_failure_bounded),
      cmocka_unit_test(test_deadlock_bounded),
      cmocka_unit_test(test_real_deadlock_retried),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
