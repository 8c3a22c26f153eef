/* The 10-minute and 6-hour roll-ups (schema version 10) on an SQLite store:
 * windows of every shape equal the merge of their recorded buckets
 * (tests/support/window_check.h); a store of version 9 with data, migrated,
 * keeps its totals and uses the new levels only from the completion point
 * the migration set (its past has none of their rows); a writer of the
 * older version that had the file open before the migration cannot write
 * bucket rows after it. */
#include "testutil.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "window_check.h"

#define DAY0 1795132800LL /* 2026-11-20T00:00:00Z */

static uint64_t rnd(uint64_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

static const char *const texts[] = {
    "select * from orders where id = ?", "update stock set n = n - ? where sku = ?",
    "insert into log values (?, ?)",     "select count(*) from users where org = ?",
};
static const char *const hosts[] = {"web-1", "web-2", "batch"};

/* n events ending from 2 hours before the day at d0 to 2 hours after it,
 * the first on window edges, flushed into `s` in 4 flushes. */
static void record(qp_store *s, int64_t d0, int n, uint64_t seed) {
  static const int64_t edges[] = {6 * 3600 + 17 * 60, 6 * 3600 + 10 * 60, 12 * 3600,
                                  18 * 3600 + 43 * 60, 18 * 3600 + 50 * 60, 24 * 3600,
                                  23 * 3600 + 50 * 60};
  char err[256];
  qp_profile *p = NULL;
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  for (int i = 0; i < n; i++) {
    uint64_t r = rnd(&seed);
    int k = (int)(r % 4);
    qp_query_event e = {.size = sizeof e};
    e.backend = QP_BACKEND_POSTGRES;
    e.database = k < 3 ? "shop" : "audit";
    e.normalized = texts[k];
    e.normalized_len = strlen(texts[k]);
    e.fingerprint = 0x6100 + (uint64_t)k;
    e.host = hosts[(r >> 8) % 3];
    e.user = "app";
    e.application = (r >> 12) % 2 ? "api" : "cron";
    e.duration_ns = 20000 + (rnd(&seed) % 4000000) * (1 + (r >> 20) % 5);
    e.rows = (int64_t)((r >> 24) % 50);
    e.error = (r >> 30) % 61 == 0 ? "40001" : NULL;
    e.cache_hit = e.error == NULL && (r >> 40) % 31 == 0;
    int64_t t_ns;
    if (i < 7 * 4) {
      static const int64_t off[] = {0, 59999999999LL, -1, -60000000000LL};
      t_ns = (d0 + edges[i / 4]) * 1000000000LL + off[i % 4];
    } else {
      t_ns = (d0 - 7200) * 1000000000LL + (int64_t)(rnd(&seed) % (28ULL * 3600 * 1000000000ULL));
    }
    e.end_wall_ns = t_ns;
    assert_int_equal(qp_profile_record(p, &e), QP_OK);
    if (i % (n / 4) == n / 4 - 1) assert_int_equal(qp_profile_flush(p, s), QP_OK);
  }
  assert_int_equal(qp_profile_flush(p, s), QP_OK);
  qp_profile_free(p);
}

static qp_store *open_store(const char *path, qp_store_mode mode) {
  char err[512];
  qp_store *s = NULL;
  if (qp_store_open(&s, path, mode, NULL, err, sizeof err) != QP_OK) fail_msg("%s", err);
  return s;
}

static void sql_on(const char *path, const char *sql) {
  sqlite3 *db;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) fail_msg("%s: %s", sql, msg);
  sqlite3_close(db);
}

static long long count_on(const char *path, const char *sql) {
  sqlite3 *db;
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  long long n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

/* A new store: complete from the beginning; every window equals its buckets. */
static void test_windows_equal_buckets(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/levels.db", qpt_tempdir());
  qp_store *s = open_store(path, QP_STORE_WRITE);
  assert_int_equal(s->levels_from, INT64_MIN);
  record(s, DAY0, 12000, 0x9E3779B97F4A7C15ULL);
  assert_true(wc_check_all(s, DAY0, "new store") > 12000);
  qp_store_close(s);
  /* every flush wrote all six levels */
  assert_true(count_on(path, "SELECT count(*) FROM qp_stats WHERE level = 4") > 100);
  assert_true(count_on(path, "SELECT count(*) FROM qp_stats WHERE level = 5") >= 4 * 6);
  assert_int_equal(count_on(path, "SELECT count(*) FROM qp_stats WHERE level = 5 AND "
                                  "bucket % 21600 != 0"),
                   0);
  s = open_store(path, QP_STORE_READ);
  wc_check_all(s, DAY0, "read-only");
  qp_store_close(s);
}

/* A version 9 store with data: read as it is, migrated by a writer with
 * its totals unchanged; the new levels are used from the completion point
 * on, never before it (where they would miss the older rows). */
static void test_migrates_v9(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/v8.db", qpt_tempdir());
  /* a store as version 9 wrote it: the same tables, 4 levels */
  qp_store *s = open_store(path, QP_STORE_WRITE);
  record(s, DAY0, 8000, 0x1234567887654321ULL);
  qp_store_close(s);
  sql_on(path, "DELETE FROM qp_stats WHERE level IN (4, 5); DROP TRIGGER qp_stats_levels; "
               "DELETE FROM qp_meta WHERE key = 'levels_10m_6h_from'; PRAGMA user_version = 9");

  s = open_store(path, QP_STORE_READ);
  assert_int_equal(s->levels_from, INT64_MAX);
  wc_check_all(s, DAY0, "version 9, read as it is");
  qpt_sum all8 = wc_totals(s, INT64_MIN, INT64_MAX), day8 = wc_totals(s, DAY0, DAY0 + 86400);
  qp_store_close(s);

  /* a writer of version 9, open before the migration, its insert prepared */
  sqlite3 *old;
  sqlite3_stmt *ins;
  assert_int_equal(sqlite3_open(path, &old), SQLITE_OK);
  sqlite3_busy_timeout(old, 10000);
  static const char SQL_OLD[] =
      "INSERT INTO qp_stats (level, bucket, fingerprint, backend, database, calls, errors, "
      "error_codes, rows, total_ns, min_ns, max_ns, m2, first_seen_ns, last_seen_ns, hist) "
      "VALUES (0, 60, 7, 'postgres', 'x', 1, 0, '', 0, 1, 1, 1, 0, 0, 0, x'')";
  assert_int_equal(sqlite3_prepare_v2(old, SQL_OLD, -1, &ins, NULL), SQLITE_OK);

  int64_t t0 = (int64_t)time(NULL);
  s = open_store(path, QP_STORE_WRITE); /* migrates */
  int64_t t1 = (int64_t)time(NULL);
  int64_t from = s->levels_from;
  assert_true(from % 21600 == 0);
  assert_true(from >= t0 + 3600 && from < t1 + 3600 + 21600);
  assert_int_equal(count_on(path, "PRAGMA user_version"), 10);

  /* the older writer's bucket rows are refused: its flush would fail whole */
  assert_int_not_equal(sqlite3_step(ins), SQLITE_DONE);
  assert_non_null(strstr(sqlite3_errmsg(old), "qp_writes_6_levels"));
  sqlite3_finalize(ins);
  assert_int_not_equal(sqlite3_prepare_v2(old, SQL_OLD, -1, &ins, NULL), SQLITE_OK);
  sqlite3_close(old);
  assert_int_equal(count_on(path, "SELECT count(*) FROM qp_stats WHERE fingerprint = 7"), 0);

  /* totals unchanged; the past read from the old levels */
  qpt_sum all9 = wc_totals(s, INT64_MIN, INT64_MAX), day9 = wc_totals(s, DAY0, DAY0 + 86400);
  assert_int_equal(all9.calls, all8.calls);
  assert_int_equal(all9.total, all8.total);
  assert_int_equal(day9.calls, day8.calls);
  wc_check_all(s, DAY0, "migrated");

  /* New statements in the past (its 10-minute and 6-hour rows then hold
   * only these: a window there must not use them) and after the
   * completion point (there they are complete). */
  record(s, DAY0, 4000, 0xABCDEF0123456789ULL);
  assert_true(count_on(path, "SELECT count(*) FROM qp_stats WHERE level = 4") > 100);
  int64_t dT = qp__floor_div(from, 86400) * 86400;
  record(s, dT, 4000, 0x0F1E2D3C4B5A6978ULL);
  wc_check_all(s, DAY0, "migrated, new rows in the past");
  wc_check_all(s, dT, "migrated, rows around the completion point");
  wc_check_all(s, dT + 86400, "migrated, the day after the completion point");
  qp_store_close(s);

  /* After the completion point the 6-hour row answers a 6-hour window:
   * with 10 minutes of its buckets deleted under it, the window still has
   * them (read from the roll-up); before it, a whole hour of hours and an
   * hour's buckets say the same only through the hour row. */
  s = open_store(path, QP_STORE_READ);
  int64_t q = from > dT + 6 * 3600 ? from : from + 21600;
  qpt_sum six = wc_totals(s, q, q + 21600), ten = wc_totals(s, q + 600, q + 1200);
  qp_store_close(s);
  if (ten.calls > 0) {
    char sql[256];
    snprintf(sql, sizeof sql, "DELETE FROM qp_stats WHERE level = 0 AND bucket >= %lld AND "
                              "bucket < %lld",
             (long long)(q + 600), (long long)(q + 1200));
    sql_on(path, sql);
    s = open_store(path, QP_STORE_READ);
    assert_int_equal(wc_totals(s, q, q + 21600).calls, six.calls);
    assert_int_equal(wc_totals(s, q + 600, q + 1200).calls, ten.calls); /* the 10-minute row */
    assert_int_equal(wc_totals(s, q + 600, q + 1140).calls, 0);         /* buckets only */
    qp_store_close(s);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_windows_equal_buckets),
      cmocka_unit_test(test_migrates_v9),
  };
  return cmocka_run_group_tests(tests, NULL, qpt_tempdirs_remove);
}
