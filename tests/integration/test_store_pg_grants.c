/* Which privileges a role needs to write the PostgreSQL store
 * (docs/architecture.md, "The fleet store"): USAGE on schema qprof and
 * SELECT, INSERT, UPDATE on its tables are enough to flush (new rows and
 * merges into existing ones) and to keep a log file's position; a role with
 * only SELECT and INSERT, or without USAGE on the schema, gets a clear
 * error naming what is missing; a writer that finds an older store cannot
 * migrate it and says so, leaving the store as it was. Roles are made per
 * test process (unique names) and dropped at the end. */
#include "testutil.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store_int.h"

static char g_db[64], g_owner_dsn[768], g_role[3][64], g_role_dsn[3][768];

static void exec_on(const char *dsn, const char *sql) {
  PGconn *c = PQconnectdb(dsn);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
    fail_msg("%s: %s", sql, PQerrorMessage(c));
  PQclear(r);
  PQfinish(c);
}

static void execf(const char *dsn, const char *fmt, const char *a) {
  char sql[512];
  snprintf(sql, sizeof sql, fmt, a, a);
  exec_on(dsn, sql);
}

static char *one_value(const char *dsn, const char *sql) {
  static char v[256];
  PGconn *c = PQconnectdb(dsn);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) fail_msg("%s: %s", sql, PQerrorMessage(c));
  snprintf(v, sizeof v, "%s", PQgetvalue(r, 0, 0));
  PQclear(r);
  PQfinish(c);
  return v;
}

static int setup(void **state) {
  (void)state;
  if (qpt_pg_dsn() == NULL) return -1;
  int pid = (int)getpid();
  snprintf(g_db, sizeof g_db, "qprof_grants_%d", pid);
  execf(qpt_pg_dsn(), "CREATE DATABASE %s", g_db);
  snprintf(g_owner_dsn, sizeof g_owner_dsn, "host=%s port=%s user=%s dbname=%s", getenv("PGHOST"),
           getenv("PGPORT"), getenv("PGUSER"), g_db);
  static const char *const kinds[3] = {"writer", "insel", "nousage"};
  for (int i = 0; i < 3; i++) {
    snprintf(g_role[i], sizeof g_role[i], "qp_%s_%d", kinds[i], pid);
    execf(qpt_pg_dsn(), "CREATE ROLE %s LOGIN", g_role[i]);
    snprintf(g_role_dsn[i], sizeof g_role_dsn[i], "host=%s port=%s user=%s dbname=%s",
             getenv("PGHOST"), getenv("PGPORT"), g_role[i], g_db);
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char sql[256];
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", g_db);
  exec_on(qpt_pg_dsn(), sql);
  for (int i = 0; i < 3; i++) execf(qpt_pg_dsn(), "DROP ROLE IF EXISTS %s", g_role[i]);
  return 0;
}

static qp_profile *profile_with(int n) {
  qp_profile *p = NULL;
  char err[256];
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  for (int i = 0; i < n; i++) {
    qp_query_event e = {.size = sizeof e};
    e.backend = QP_BACKEND_POSTGRES;
    e.database = "app";
    e.user = "alice";
    e.normalized = "select ?";
    e.normalized_len = 8;
    e.fingerprint = 0x6A7;
    e.duration_ns = 1000;
    e.rows = 2;
    assert_int_equal(qp_profile_record(p, &e), QP_OK);
  }
  return p;
}

static void test_writer_grants(void **state) {
  (void)state;
  char err[512];
  /* the owner creates the store */
  qp_store *s = NULL;
  assert_int_equal(qp_store_open(&s, g_owner_dsn, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  qp_store_close(s);
  /* exactly the documented grants */
  execf(g_owner_dsn, "GRANT USAGE ON SCHEMA qprof TO %s", g_role[0]);
  execf(g_owner_dsn, "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA qprof TO %s", g_role[0]);
  execf(g_owner_dsn, "GRANT USAGE ON SCHEMA qprof TO %s", g_role[1]);
  execf(g_owner_dsn, "GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA qprof TO %s", g_role[1]);

  /* the writer: a new row, then a merge into it, then a file position */
  assert_int_equal(qp_store_open(&s, g_role_dsn[0], QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  for (int round = 0; round < 2; round++) {
    qp_profile *p = profile_with(3);
    qp_status rc = qp_profile_flush(p, s);
    if (rc != QP_OK) fail_msg("writer flush %d: %s", round, qp_store_errmsg(s));
    qp_profile_free(p);
  }
  qp_file_mark m = {.path = "/var/log/x.log", .device = 1, .inode = 2, .size = 3, .head_len = 3,
                    .head_hash = 4, .read_to = 3, .lines = 1};
  qp_profile *p = profile_with(1);
  assert_int_equal(qp__store_flush_marked(s, p, &m), QP_OK);
  assert_true(m.id > 0);
  m.read_to = 3;
  assert_int_equal(qp__store_flush_marked(s, p, &m), QP_OK); /* the UPDATE of the mark */
  qp_profile_free(p);
  qp_store_close(s);
  assert_string_equal(
      one_value(g_owner_dsn, "SELECT sum(calls) || '/' || sum(rows) FROM qprof.qp_stats "
                             "WHERE level = 3 AND user_name = 'alice'"),
      "7/14");

  /* SELECT and INSERT alone: the upserts need UPDATE; said, nothing written */
  assert_int_equal(qp_store_open(&s, g_role_dsn[1], QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  p = profile_with(5);
  qp_status rc = qp_profile_flush(p, s);
  assert_int_equal(rc, QP_REFUSED);
  printf("# SELECT, INSERT only: %s\n", qp_store_errmsg(s));
  assert_non_null(strstr(qp_store_errmsg(s), "permission denied"));
  assert_non_null(strstr(qp_store_errmsg(s), "SELECT, INSERT, UPDATE"));
  qp_profile_free(p);
  qp_store_close(s);
  assert_string_equal(
      one_value(g_owner_dsn, "SELECT sum(calls) FROM qprof.qp_stats WHERE level = 3"), "7");

  /* no USAGE on the schema: refused at open, clearly */
  rc = qp_store_open(&s, g_role_dsn[2], QP_STORE_WRITE, NULL, err, sizeof err);
  printf("# no USAGE: %s\n", err);
  assert_int_not_equal(rc, QP_OK);
  assert_non_null(strstr(err, "permission denied"));

  /* an older store: the writer may not migrate it, and it stays as it was */
  exec_on(g_owner_dsn, "UPDATE qprof.qp_meta SET value = '5' WHERE key = 'schema_version'");
  rc = qp_store_open(&s, g_role_dsn[0], QP_STORE_WRITE, NULL, err, sizeof err);
  printf("# migration by the writer: %s\n", err);
  assert_int_equal(rc, QP_REFUSED);
  assert_non_null(strstr(err, "needs the owner"));
  assert_non_null(strstr(err, "nothing was changed"));
  assert_string_equal(
      one_value(g_owner_dsn, "SELECT value FROM qprof.qp_meta WHERE key = 'schema_version'"), "5");
  /* a reader role reads it as it is */
  assert_int_equal(qp_store_open(&s, g_role_dsn[0], QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  qp_store_close(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_writer_grants),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
