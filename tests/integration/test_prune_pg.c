/* Retention on the PostgreSQL store, against the real cluster: the
 * scenario of prune_check.h (minutes, hours, days pruned; windows exact
 * from what is left; all-time totals unchanged), a read-only open refused,
 * and `qprof prune` on a DSN (a dry run, then the prune, then --vacuum). */
#include "testutil.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "prune_check.h"
#include "stats/stats_int.h"
#include "store/store_int.h"

static char dbname[3][64]; /* 0, 1: stores; 2: never one */
static char dsn[3][768];

static void exec_on(const char *conninfo, const char *sql) {
  PGconn *c = PQconnectdb(conninfo);
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
    fail_msg("%s: %s", sql, PQerrorMessage(c));
  PQclear(r);
  PQfinish(c);
}

static int setup(void **state) {
  (void)state;
  if (qpt_pg_dsn() == NULL) return -1;
  for (int k = 0; k < 3; k++) {
    snprintf(dbname[k], sizeof dbname[k], "qprof_prune_%d_%d", (int)getpid(), k);
    char sql[256];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", dbname[k]);
    exec_on(qpt_pg_dsn(), sql);
    snprintf(dsn[k], sizeof dsn[k], "host=%s port=%s user=%s dbname=%s", getenv("PGHOST"),
             getenv("PGPORT"), getenv("PGUSER"), dbname[k]);
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  for (int k = 0; k < 3; k++) {
    char sql[256];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", dbname[k]);
    exec_on(qpt_pg_dsn(), sql);
  }
  return 0;
}

static void pg_orphan(qp_store *s, uint64_t fp) {
  (void)s;
  char sql[256];
  snprintf(sql, sizeof sql,
           "INSERT INTO qprof.qp_query (fingerprint, backend, query, first_seen_ns, "
           "last_seen_ns) VALUES (%lld, 'postgres', 'select orphan', 0, 0)",
           (long long)(int64_t)fp);
  exec_on(dsn[0], sql);
}

static void test_prune_levels_keep_windows(void **state) {
  (void)state;
  qp_store *s;
  char err[1024];
  assert_int_equal(qp_store_open(&s, dsn[0], QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  pc_run(s, pg_orphan);
  qp_store_close(s);
  /* Read-only: a dry run answers, a prune is refused. */
  assert_int_equal(qp_store_open(&s, dsn[0], QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  qp_prune_result res;
  int64_t later = qp__wall_ns() + 7200 * 1000000000LL;
  assert_int_equal(qp_store_prune(s, later, QP_PRUNE_MINUTE, QP_PRUNE_DRY_RUN, &res), QP_OK);
  assert_true(res.rows[0] > 0); /* the last half hour's minutes */
  assert_true(res.size_bytes > 0);
  assert_int_equal(res.free_bytes, -1);
  assert_int_equal(qp_store_prune(s, later, QP_PRUNE_MINUTE, 0, &res), QP_INVALID);
  assert_non_null(strstr(qp_store_errmsg(s), "read-only"));
  qp_store_close(s);
}

static void test_cli_prune_on_pg(void **state) {
  (void)state;
  const char *bin = getenv("QPROF_BIN");
  assert_non_null(bin);
  qp_store *s;
  char err[1024];
  assert_int_equal(qp_store_open(&s, dsn[1], QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  qp_profile *p;
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  int64_t d0 = pc_floor(qp__wall_ns() / 1000000000, 86400) - 3 * 86400;
  for (int m = 0; m < 20; m++)
    for (int k = 0; k < PC_NFP; k++) {
      pc_rec r = {.k = k, .t = d0 + m * 60 + 1, .d = 5000};
      qp_query_event e = pc_event(&r);
      assert_int_equal(qp_profile_record(p, &e), QP_OK);
    }
  assert_int_equal(qp_profile_flush(p, s), QP_OK);
  qp_profile_free(p);
  qp_store_close(s);
  const char *dir = qpt_tempdir();
  assert_non_null(dir);
  char cmd[2048], *out, *errs;
  snprintf(cmd, sizeof cmd, "'%s' prune --store '%s' --older-than 2d --dry-run", bin, dsn[1]);
  assert_int_equal(qpt_run_capture(dir, cmd, &out, &errs), 0);
  assert_non_null(strstr(out, "minute rows would be deleted: 60\n"));
  free(out);
  free(errs);
  snprintf(cmd, sizeof cmd, "'%s' prune --store '%s' --older-than 2d --level day --vacuum", bin,
           dsn[1]);
  assert_int_equal(qpt_run_capture(dir, cmd, &out, &errs), 0);
  assert_non_null(strstr(out, "minute rows deleted: 60\n"));
  assert_non_null(strstr(out, "hour rows deleted: 3\n"));
  assert_non_null(strstr(out, "day rows deleted: 3\n"));
  assert_non_null(strstr(out, "store size: "));
  free(out);
  free(errs);
  /* the all-time totals stay */
  assert_int_equal(qp_store_open(&s, dsn[1], QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  qpt_sum all = {0};
  assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, qpt_sum_add, &all), QP_OK);
  assert_int_equal(all.calls, 60);
  assert_int_equal(all.n, PC_NFP);
  qp_store_close(s);
  /* a database without a store: refused, none created */
  snprintf(cmd, sizeof cmd, "'%s' prune --store '%s' --older-than 2d", bin, dsn[2]);
  assert_int_equal(qpt_run_capture(dir, cmd, &out, &errs), 1);
  assert_non_null(strstr(errs, "no qprof store"));
  free(out);
  free(errs);
  assert_int_equal(qp_store_open(&s, dsn[2], QP_STORE_READ, NULL, err, sizeof err), QP_NOTFOUND);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_prune_levels_keep_windows),
      cmocka_unit_test(test_cli_prune_on_pg),
  };
  int rc = cmocka_run_group_tests(tests, setup, teardown);
  qpt_tempdirs_remove(NULL);
  return rc;
}
