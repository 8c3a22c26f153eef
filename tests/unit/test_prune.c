/* Retention on the SQLite store: qp_store_prune by minute, hour and day
 * keeps every window the remaining levels tile exact (prune_check.h), its
 * arguments are checked, a store opened read-only is not written, space
 * is given back by VACUUM or an incremental auto_vacuum; and `qprof prune`
 * as users run it ($QPROF_BIN): counts, --dry-run, usage errors (exit 2),
 * a foreign or missing file refused (exit 1) and left as it was. */
#include "testutil.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "prune_check.h"
#include "stats/stats_int.h"
#include "store/store_int.h"

static const char *path_in(const char *dir, const char *name) {
  static char buf[8][512];
  static int k;
  char *b = buf[k++ % 8];
  snprintf(b, 512, "%s/%s", dir, name);
  return b;
}

static qp_store *open_store(const char *p, qp_store_mode mode) {
  qp_store *s;
  char err[512];
  if (qp_store_open(&s, p, mode, NULL, err, sizeof err) != QP_OK) fail_msg("%s", err);
  return s;
}

static void sqlite_orphan(qp_store *s, uint64_t fp) {
  assert_int_equal(qp__sqlite_bulk_begin(s), QP_OK);
  assert_int_equal(qp__sqlite_bulk_query(s, fp, QP_BACKEND_POSTGRES, "select orphan"), QP_OK);
  assert_int_equal(qp__sqlite_bulk_commit(s), QP_OK);
}

static void test_prune_levels_keep_windows(void **state) {
  (void)state;
  const char *dir = qpt_tempdir();
  qp_store *s = open_store(path_in(dir, "p.db"), QP_STORE_WRITE);
  pc_run(s, sqlite_orphan);
  qp_store_close(s);
}

/* Statements at minute m of the day four days ago, one per query. */
static void record_old(qp_store *s, int minutes) {
  char err[256];
  qp_profile *p;
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  int64_t d0 = pc_floor(qp__wall_ns() / 1000000000, 86400) - 4 * 86400;
  for (int m = 0; m < minutes; m++)
    for (int k = 0; k < PC_NFP; k++) {
      pc_rec r = {.k = k, .t = d0 + m * 60 + 5, .d = 1000 + (uint64_t)m};
      qp_query_event e = pc_event(&r);
      assert_int_equal(qp_profile_record(p, &e), QP_OK);
    }
  assert_int_equal(qp_profile_flush(p, s), QP_OK);
  qp_profile_free(p);
}

static void test_prune_arguments_and_read_only(void **state) {
  (void)state;
  const char *dir = qpt_tempdir();
  const char *p = path_in(dir, "a.db");
  qp_store *s = open_store(p, QP_STORE_WRITE);
  record_old(s, 10);
  qp_prune_result res;
  int64_t now = qp__wall_ns();
  assert_int_equal(qp_store_prune(NULL, now, QP_PRUNE_MINUTE, 0, &res), QP_INVALID);
  assert_int_equal(qp_store_prune(s, now, QP_PRUNE_MINUTE, 0, NULL), QP_INVALID);
  assert_int_equal(qp_store_prune(s, now, (qp_prune_level)3, 0, &res), QP_INVALID);
  assert_non_null(strstr(qp_store_errmsg(s), "level 3"));
  assert_int_equal(qp_store_prune(s, now, QP_PRUNE_MINUTE, 0x80, &res), QP_INVALID);
  qp_store_close(s);
  /* Opened read-only: a dry run works, a prune is refused, nothing goes. */
  s = open_store(p, QP_STORE_READ);
  assert_int_equal(qp_store_prune(s, now, QP_PRUNE_MINUTE, QP_PRUNE_DRY_RUN, &res), QP_OK);
  assert_int_equal(res.rows[0], 10 * PC_NFP);
  assert_int_equal(qp_store_prune(s, now, QP_PRUNE_MINUTE, 0, &res), QP_INVALID);
  assert_non_null(strstr(qp_store_errmsg(s), "read-only"));
  assert_int_equal(res.rows[0], 0);
  assert_int_equal(pc_rows_at(s, QP_LEVEL_BUCKET, INT64_MIN, INT64_MAX), 10 * PC_NFP);
  qp_store_close(s);
  /* A file the process may not write (not testable as root, who may). */
  if (geteuid() != 0) {
    assert_int_equal(chmod(p, 0400), 0);
    s = open_store(p, QP_STORE_WRITE);
    assert_int_equal(qp_store_prune(s, now, QP_PRUNE_MINUTE, 0, &res), QP_IO);
    assert_non_null(strstr(qp_store_errmsg(s), "read-only"));
    assert_int_equal(pc_rows_at(s, QP_LEVEL_BUCKET, INT64_MIN, INT64_MAX), 10 * PC_NFP);
    qp_store_close(s);
    assert_int_equal(chmod(p, 0600), 0);
  }
}

static int64_t pragma(const char *p, const char *sql) {
  sqlite3 *db;
  assert_int_equal(sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

static void test_prune_gives_space_back(void **state) {
  (void)state;
  const char *dir = qpt_tempdir();
  /* Without --vacuum the pages are free, the file as large; VACUUM shrinks it. */
  const char *p = path_in(dir, "v.db");
  qp_store *s = open_store(p, QP_STORE_WRITE);
  record_old(s, 1200);
  qp_prune_result res;
  int64_t now = qp__wall_ns();
  assert_int_equal(qp_store_prune(s, now, QP_PRUNE_MINUTE, 0, &res), QP_OK);
  assert_int_equal(res.rows[0], 1200 * PC_NFP);
  assert_true(res.free_bytes > res.size_bytes / 2);
  int64_t size = res.size_bytes;
  assert_int_equal(qp_store_prune(s, now, QP_PRUNE_MINUTE, QP_PRUNE_VACUUM, &res), QP_OK);
  assert_int_equal(res.rows[0], 0);
  assert_int_equal(res.free_bytes, 0);
  assert_true(res.size_bytes < size / 2);
  qp_store_close(s);
  assert_int_equal(pragma(p, "PRAGMA page_count") * pragma(p, "PRAGMA page_size"),
                   res.size_bytes);
  /* A store switched to incremental auto_vacuum gets its pages freed at once. */
  p = path_in(dir, "i.db");
  s = open_store(p, QP_STORE_WRITE);
  qp_store_close(s);
  assert_int_equal(qpt_system("sqlite3 '%s' 'PRAGMA auto_vacuum = INCREMENTAL; VACUUM;'", p), 0);
  s = open_store(p, QP_STORE_WRITE);
  record_old(s, 1200);
  assert_int_equal(qp_store_prune(s, now, QP_PRUNE_MINUTE, 0, &res), QP_OK);
  assert_int_equal(res.rows[0], 1200 * PC_NFP);
  assert_int_equal(res.free_bytes, 0);
  qp_store_close(s);
}

/* ---- qprof prune ------------------------------------------------------------ */

static int run(const char *dir, char **out, char **err, const char *args) {
  const char *bin = getenv("QPROF_BIN");
  if (bin == NULL) fail_msg("QPROF_BIN is not set");
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "'%s' prune %s", bin, args);
  return qpt_run_capture(dir, cmd, out, err);
}

static void test_cli(void **state) {
  (void)state;
  const char *dir = qpt_tempdir();
  const char *p = path_in(dir, "c.db");
  qp_store *s = open_store(p, QP_STORE_WRITE);
  record_old(s, 30);
  qp_store_close(s);
  char *out, *err, args[1024];

  snprintf(args, sizeof args, "--store '%s' --older-than 1d --dry-run", p);
  assert_int_equal(run(dir, &out, &err, args), 0);
  assert_non_null(strstr(out, "minute rows would be deleted: 90\n"));
  assert_non_null(strstr(out, "query texts would be deleted: 0\n"));
  assert_null(strstr(out, "hour and 10-minute rows"));
  assert_non_null(strstr(out, "nothing was deleted (--dry-run)"));
  free(out);
  free(err);
  s = open_store(p, QP_STORE_READ);
  assert_int_equal(pc_rows_at(s, QP_LEVEL_BUCKET, INT64_MIN, INT64_MAX), 90);
  qp_store_close(s);

  /* $QPROF_STORE names the store as for the other verbs. */
  snprintf(args, sizeof args, "--older-than 36h --level hour");
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "QPROF_STORE='%s' '%s' prune %s", p, getenv("QPROF_BIN"), args);
  assert_int_equal(qpt_run_capture(dir, cmd, &out, &err), 0);
  assert_non_null(strstr(out, "minute rows deleted: 90\n"));
  /* one hour and three 10-minute rows of each of three queries */
  assert_non_null(strstr(out, "hour and 10-minute rows deleted: 12\n"));
  assert_null(strstr(out, "day and 6-hour rows"));
  assert_non_null(strstr(out, "store size: "));
  free(out);
  free(err);
  s = open_store(p, QP_STORE_READ);
  assert_int_equal(pc_rows_at(s, QP_LEVEL_BUCKET, INT64_MIN, INT64_MAX), 0);
  assert_int_equal(pc_rows_at(s, QP_LEVEL_HOUR, INT64_MIN, INT64_MAX), 0);
  assert_int_equal(pc_rows_at(s, QP_LEVEL_DAY, INT64_MIN, INT64_MAX), PC_NFP);
  qpt_sum all = {0};
  assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, qpt_sum_add, &all), QP_OK);
  assert_int_equal(all.calls, 90);
  qp_store_close(s);

  /* Every day: the all-time totals alone answer the report of all time. */
  snprintf(args, sizeof args, "--store '%s' --older-than 1d --level day", p);
  assert_int_equal(run(dir, &out, &err, args), 0);
  assert_non_null(strstr(out, "day and 6-hour rows deleted: 6\n")); /* a day and a 6 hours each */
  free(out);
  free(err);
  s = open_store(p, QP_STORE_READ);
  assert_int_equal(pc_rows_at(s, QP_LEVEL_DAY, INT64_MIN, INT64_MAX), 0);
  memset(&all, 0, sizeof all);
  assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, qpt_sum_add, &all), QP_OK);
  assert_int_equal(all.calls, 90);
  assert_int_equal(all.n, PC_NFP);
  memset(&all, 0, sizeof all);
  assert_int_equal(qp_store_summarize(s, 0, INT64_MAX, qpt_sum_add, &all), QP_OK);
  assert_int_equal(all.calls, 0); /* a bounded window: no time left to answer it from */
  qp_store_close(s);
  snprintf(args, sizeof args, "'%s' report --store '%s' --format json | /usr/bin/python3 -c "
           "'import json,sys; d=json.load(sys.stdin); assert d[\"totals\"][\"calls\"]==90, d'",
           getenv("QPROF_BIN"), p);
  assert_int_equal(qpt_system("%s", args), 0);

  /* Usage errors: exit 2, one line naming the option. */
  static const struct {
    const char *args, *says;
  } bad[] = {{"--older-than 1y", "--older-than '1y' is not a duration"},
             {"--older-than -5d", "is not a duration"},
             {"--older-than d", "is not a duration"},
             {"--older-than nand", "is not a duration"},
             {"--older-than 1d --level week", "--level must be minute, hour or day"},
             {"", "--older-than DURATION is required"},
             {"--older-than 1d extra", "unexpected argument 'extra'"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(args, sizeof args, "--store '%s' %s", p, bad[i].args);
    assert_int_equal(run(dir, &out, &err, args), 2);
    if (strstr(err, bad[i].says) == NULL) fail_msg("'%s': %s", bad[i].args, err);
    free(out);
    free(err);
  }

  /* A file that is not a store: exit 1, named, untouched. */
  const char *txt = path_in(dir, "notes.txt");
  FILE *f = fopen(txt, "w");
  assert_non_null(f);
  fputs("not a store\n", f);
  fclose(f);
  snprintf(args, sizeof args, "--store '%s' --older-than 1d", txt);
  assert_int_equal(run(dir, &out, &err, args), 1);
  assert_non_null(strstr(err, "not a qprof store"));
  assert_non_null(strstr(err, txt));
  free(out);
  free(err);
  char *back = qpt_read_file(txt, NULL);
  assert_string_equal(back, "not a store\n");
  free(back);
  /* No store: exit 1, and none is created. */
  const char *none = path_in(dir, "none.db");
  snprintf(args, sizeof args, "--store '%s' --older-than 1d", none);
  assert_int_equal(run(dir, &out, &err, args), 1);
  assert_non_null(strstr(err, "no such store"));
  free(out);
  free(err);
  assert_int_not_equal(access(none, F_OK), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_prune_levels_keep_windows),
      cmocka_unit_test(test_prune_arguments_and_read_only),
      cmocka_unit_test(test_prune_gives_space_back),
      cmocka_unit_test(test_cli),
  };
  return cmocka_run_group_tests(tests, NULL, qpt_tempdirs_remove);
}
