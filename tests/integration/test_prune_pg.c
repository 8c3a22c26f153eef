/* Retention on the PostgreSQL store, against the real cluster: the
 * scenario of prune_check.h (minutes, hours, days pruned; windows exact
 * from what is left; all-time totals unchanged), a read-only open refused,
 * and `qprof prune` on a DSN (a dry run, then the prune, then --vacuum). */
#include "pgtest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "prune_check.h"
#include "stats/stats_int.h"
#include "store/store_int.h"

static qpt_pgdb g_db[3]; /* 0, 1: stores; 2: never one */

static int setup(void **state) {
  (void)state;
  for (int k = 0; k < 3; k++)
    if (qpt_pgdb_create(&g_db[k], "qprof_prune_%d_%d", (int)getpid(), k) != 0) return -1;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  for (int k = 0; k < 3; k++) qpt_pgdb_drop(&g_db[k]);
  return 0;
}

static void pg_orphan(qp_store *s, uint64_t fp) {
  (void)s;
  char sql[256];
  snprintf(sql, sizeof sql,
           "INSERT INTO qprof.qp_query (fingerprint, backend, query, first_seen_ns, "
           "last_seen_ns) VALUES (%lld, 'postgres', 'select orphan', 0, 0)",
           (long long)(int64_t)fp);
  qpt_pg_exec(g_db[0].dsn, sql);
}

static void test_prune_levels_keep_windows(void **state) {
  (void)state;
  qp_store *s;
  char err[1024];
  assert_int_equal(qp_store_open(&s, g_db[0].dsn, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  pc_run(s, pg_orphan);
  qp_store_close(s);
  /* Read-only: a dry run answers, a prune is refused. */
  assert_int_equal(qp_store_open(&s, g_db[0].dsn, QP_STORE_READ, NULL, err, sizeof err), QP_OK);
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
  assert_int_equal(qp_store_open(&s, g_db[1].dsn, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
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
  snprintf(cmd, sizeof cmd, "'%s' prune --store '%s' --older-than 2d --dry-run", bin, g_db[1].dsn);
  assert_int_equal(qpt_run_capture(dir, cmd, &out, &errs), 0);
  assert_non_null(strstr(out, "minute rows would be deleted: 60\n"));
  free(out);
  free(errs);
  snprintf(cmd, sizeof cmd, "'%s' prune --store '%s' --older-than 2d --level day --vacuum", bin,
           g_db[1].dsn);
  assert_int_equal(qpt_run_capture(dir, cmd, &out, &errs), 0);
  assert_non_null(strstr(out, "minute rows deleted: 60\n"));
  /* three queries: an hour and two 10-minute rows, a day and a 6-hour row each */
  assert_non_null(strstr(out, "hour and 10-minute rows deleted: 9\n"));
  assert_non_null(strstr(out, "day and 6-hour rows deleted: 6\n"));
  assert_non_null(strstr(out, "store size: "));
  free(out);
  free(errs);
  /* the all-time totals stay */
  assert_int_equal(qp_store_open(&s, g_db[1].dsn, QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  qpt_sum all = {0};
  assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, qpt_sum_add, &all), QP_OK);
  assert_int_equal(all.calls, 60);
  assert_int_equal(all.n, PC_NFP);
  qp_store_close(s);
  /* a database without a store: refused, none created */
  snprintf(cmd, sizeof cmd, "'%s' prune --store '%s' --older-than 2d", bin, g_db[2].dsn);
  assert_int_equal(qpt_run_capture(dir, cmd, &out, &errs), 1);
  assert_non_null(strstr(errs, "no qprof store"));
  free(out);
  free(errs);
  assert_int_equal(qp_store_open(&s, g_db[2].dsn, QP_STORE_READ, NULL, err, sizeof err), QP_NOTFOUND);
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
