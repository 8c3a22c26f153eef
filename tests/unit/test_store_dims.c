/* Who ran it: the user, application and host dimensions of a statistics key
 * through the profile and the SQLite store (exact totals per key, values cut
 * at 255 bytes, the 4 MB bound on distinct values), and stores of schema
 * versions 1, 2 and 5 with data: read as they are, migrated on write with
 * their totals unchanged. */
#include "testutil.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats/stats_int.h"
#include "store/store_int.h"

static char *path_in(const char *name) {
  static char buf[8][512];
  static int k;
  char *b = buf[k++ % 8];
  const char *d = qpt_tempdir();
  assert_non_null(d);
  snprintf(b, 512, "%s/%s", d, name);
  return b;
}

/* Totals per (user, application, host) of one fingerprint, or of all. */
typedef struct dim_sum {
  const char *user, *app, *host; /* NULL: any */
  uint64_t calls, errors, cache_hits;
  int64_t rows;
  uint64_t total_ns;
  int keys;
} dim_sum;

static int dim_add(const qp_query_summary *q, void *ud) {
  dim_sum *d = ud;
  assert_non_null(q->user);
  assert_non_null(q->application);
  assert_non_null(q->host);
  if ((d->user && strcmp(q->user, d->user) != 0) || (d->app && strcmp(q->application, d->app) != 0) ||
      (d->host && strcmp(q->host, d->host) != 0))
    return 0;
  d->calls += q->calls;
  d->errors += q->errors;
  d->rows += q->rows;
  d->total_ns += q->total_ns;
  d->cache_hits += q->cache_hits;
  d->keys++;
  return 0;
}

static dim_sum sum_of(qp_store *s, const char *user, const char *app, const char *host) {
  dim_sum d = {.user = user, .app = app, .host = host};
  assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, dim_add, &d), QP_OK);
  return d;
}

static void record(qp_profile *p, const char *sql, const char *user, const char *app,
                   const char *host, uint64_t ns, int64_t end_s) {
  qp_query_event ev = {.size = sizeof ev,
                       .backend = QP_BACKEND_POSTGRES,
                       .database = "shop",
                       .sql = sql,
                       .sql_len = strlen(sql),
                       .duration_ns = ns,
                       .rows = 1,
                       .end_wall_ns = end_s * 1000000000,
                       .user = user,
                       .application = app,
                       .host = host};
  assert_int_equal(qp_profile_record(p, &ev), QP_OK);
}

static void test_dims_exact_per_key(void **state) {
  (void)state;
  const char *path = path_in("dims.db");
  char err[512];
  qp_profile *p;
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  const char *users[] = {"alice", "bob", ""}, *apps[] = {"billing", "web"},
             *hosts[] = {"h1", "h2", "h3"};
  const int64_t t0 = 1795132800; /* a UTC midnight: every level is written */
  uint64_t want[3][2][3] = {{{0}}};
  int n = 0;
  for (int i = 0; i < 3000; i++) {
    int u = i % 3, a = (i / 3) % 2, h = (i / 7) % 3;
    record(p, i % 2 ? "SELECT * FROM t WHERE id = 1" : "SELECT * FROM t WHERE id = 2", users[u],
           apps[a], hosts[h], 1000 + (uint64_t)i, t0 + (i % 5) * 90);
    want[u][a][h]++;
    n++;
  }
  /* a caller built against the first growable event (size without the
   * dimensions) records under "" whatever its memory holds there */
  qp_query_event old = {.size = QP_QUERY_EVENT_MIN_SIZE, .backend = QP_BACKEND_POSTGRES,
                        .database = "shop", .sql = "SELECT 1", .sql_len = 8, .duration_ns = 5,
                        .rows = 1, .end_wall_ns = t0 * 1000000000};
  assert_int_equal(qp_profile_record(p, &old), QP_OK);
  qp_store *s;
  assert_int_equal(qp_store_open(&s, path, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  assert_int_equal(qp_profile_flush(p, s), QP_OK);
  for (int u = 0; u < 3; u++)
    for (int a = 0; a < 2; a++)
      for (int h = 0; h < 3; h++) {
        dim_sum d = sum_of(s, users[u], apps[a], hosts[h]);
        assert_int_equal(d.calls, want[u][a][h]);
        assert_int_equal(d.rows, (int64_t)want[u][a][h]);
      }
  dim_sum all = sum_of(s, NULL, NULL, NULL);
  assert_int_equal(all.calls, (uint64_t)n + 1);
  dim_sum none = sum_of(s, "", "", "");
  assert_int_equal(none.calls, 1);
  /* per host, across users and applications */
  uint64_t h1 = 0;
  for (int u = 0; u < 3; u++)
    for (int a = 0; a < 2; a++) h1 += want[u][a][0];
  assert_int_equal(sum_of(s, NULL, NULL, "h1").calls, h1);
  /* a window inside the day (minute rows) agrees with the all-time rows */
  dim_sum w = {.host = "h2"};
  assert_int_equal(qp_store_summarize(s, t0 * 1000000000LL, (t0 + 3600) * 1000000000LL, dim_add, &w),
                   QP_OK);
  assert_int_equal(w.calls, sum_of(s, NULL, NULL, "h2").calls);
  qp_store_close(s);
  qp_profile_free(p);

  /* the columns are there for people with the sqlite3 shell */
  sqlite3 *db;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_prepare_v2(db,
                                      "SELECT sum(calls) FROM qp_summary WHERE host = 'h3' AND "
                                      "user_name = 'bob' AND application = 'web'",
                                      -1, &st, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int64(st, 0), (int64_t)want[1][1][2]);
  sqlite3_finalize(st);
  sqlite3_close(db);
}

/* Values over 255 bytes are cut (one key for all that share the first 255
 * bytes); distinct values beyond the profile's 4 MB become "(other)". */
static void test_dims_bounded(void **state) {
  (void)state;
  char err[512];
  qp_profile *p;
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  char a[400], b[400];
  memset(a, 'x', sizeof a - 1);
  a[sizeof a - 1] = '\0';
  memcpy(b, a, sizeof b);
  b[300] = 'y'; /* differs after byte 255 */
  const int64_t t0 = 1795132800;
  record(p, "SELECT 1", "u", "app", a, 10, t0);
  record(p, "SELECT 1", "u", "app", b, 10, t0);
  /* 4 MB of distinct 255-byte hosts is 16,384 of them; go past it */
  const int distinct = 17000;
  char h[256];
  for (int i = 0; i < distinct; i++) {
    memset(h, 'h', 255);
    snprintf(h, 16, "%08d", i);
    h[8] = 'h';
    h[255] = '\0';
    record(p, "SELECT 2", "u", "app", h, 10, t0);
    record(p, "SELECT 2", "u", "app", h, 10, t0); /* the same value again finds its entry */
  }
  qp_store *s;
  const char *path = path_in("bounded.db");
  assert_int_equal(qp_store_open(&s, path, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  assert_int_equal(qp_profile_flush(p, s), QP_OK);
  char cut[256];
  memset(cut, 'x', 255);
  cut[255] = '\0';
  dim_sum d = sum_of(s, "u", "app", cut);
  assert_int_equal(d.calls, 2);
  assert_int_equal(d.keys, 1);
  dim_sum other = sum_of(s, "u", "app", qp__intern_other);
  assert_true(other.calls > 0);
  dim_sum all = sum_of(s, NULL, NULL, NULL);
  assert_int_equal(all.calls, 2 + 2 * (uint64_t)distinct); /* nothing lost, only merged */
  /* keys: the cut one, each host that fit, and "(other)" for the rest */
  int fitted = all.keys - 2;
  assert_true(fitted > 16000 && fitted < distinct);
  assert_int_equal(other.calls, 2 * (uint64_t)(distinct - fitted));
  assert_int_equal(other.keys, 1);
  qp_store_close(s);
  qp_profile_free(p);
}

/* ---- older stores ---------------------------------------------------------- */

/* Rows in the columns of schema `version`, written with SQL as that
 * version's qprof would have: fingerprint 7 'select ?' at every level,
 * fingerprint 8 'update t set a = ?' with an error code. */
static void fill_old(const char *path, int version) {
  sqlite3 *db;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  const char *cols = version >= 4 ? ", 0, 0" : "";
  char sql[4096];
  snprintf(sql, sizeof sql,
           "INSERT INTO qp_query VALUES (7, 'sqlite', 'select ?', NULL, NULL, 1, 2);"
           "INSERT INTO qp_query VALUES (8, 'postgres', 'update t set a = ?', NULL, NULL, 1, 2);"
           "INSERT INTO qp_stats VALUES (3, 0, 7, 'sqlite', 'a.db', 5, 0, '', 5, 50, 4, 16, 2.0, 1, 2, x''%s);"
           "INSERT INTO qp_stats VALUES (2, 1795132800, 7, 'sqlite', 'a.db', 5, 0, '', 5, 50, 4, 16, 2.0, 1, 2, x''%s);"
           "INSERT INTO qp_stats VALUES (1, 1795132800, 7, 'sqlite', 'a.db', 5, 0, '', 5, 50, 4, 16, 2.0, 1, 2, x''%s);"
           "INSERT INTO qp_stats VALUES (0, 1795132800, 7, 'sqlite', 'a.db', 5, 0, '', 5, 50, 4, 16, 2.0, 1, 2, x''%s);"
           "INSERT INTO qp_stats VALUES (3, 0, 8, 'postgres', 'shop', 3, 1, '23505:1', 2, 30, 5, 20, 1.0, 1, 2, x''%s);"
           "INSERT INTO qp_stats VALUES (2, 1795132800, 8, 'postgres', 'shop', 3, 1, '23505:1', 2, 30, 5, 20, 1.0, 1, 2, x''%s);"
           "INSERT INTO qp_stats VALUES (1, 1795132800, 8, 'postgres', 'shop', 3, 1, '23505:1', 2, 30, 5, 20, 1.0, 1, 2, x''%s);"
           "INSERT INTO qp_stats VALUES (0, 1795132800, 8, 'postgres', 'shop', 3, 1, '23505:1', 2, 30, 5, 20, 1.0, 1, 2, x''%s);",
           cols, cols, cols, cols, cols, cols, cols, cols);
  char *msg = NULL;
  if (sqlite3_exec(db, sql, 0, 0, &msg) != SQLITE_OK) fail_msg("version %d: %s", version, msg);
  sqlite3_close(db);
}

static int user_version(const char *path) {
  sqlite3 *db;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int v = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

static void check_old_totals(qp_store *s) {
  dim_sum d = sum_of(s, "", "", "");
  assert_int_equal(d.calls, 8);
  assert_int_equal(d.errors, 1);
  assert_int_equal(d.rows, 7);
  assert_int_equal(d.total_ns, 80);
  assert_int_equal(d.keys, 2);
  /* a window of the day: the same, from the day rows */
  dim_sum w = {.user = "", .app = "", .host = ""};
  assert_int_equal(qp_store_summarize(s, 1795132800LL * 1000000000, 1795219200LL * 1000000000,
                                      dim_add, &w),
                   QP_OK);
  assert_int_equal(w.calls, 8);
}

static void migrate_from(int version) {
  char name[32];
  snprintf(name, sizeof name, "v%d.db", version);
  const char *path = path_in(name);
  char err[512];
  assert_int_equal(qp__sqlite_store_create_version(path, version, err, sizeof err), QP_OK);
  fill_old(path, version);
  qp_store *s;
  /* read as it is */
  assert_int_equal(qp_store_open(&s, path, QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  check_old_totals(s);
  qp_store_close(s);
  assert_int_equal(user_version(path), version);
  /* migrated on write, totals unchanged */
  assert_int_equal(qp_store_open(&s, path, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  assert_int_equal(user_version(path), QP_STORE_SCHEMA_VERSION);
  check_old_totals(s);
  /* new rows of the old keys merge with them; new dimensions are new keys */
  qp_profile *p;
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  record(p, "SELECT 3", "carol", "cron", "h9", 100, 1795132800 + 30);
  assert_int_equal(qp_profile_flush(p, s), QP_OK);
  qp_profile_free(p);
  check_old_totals(s);
  dim_sum c = sum_of(s, "carol", "cron", "h9");
  assert_int_equal(c.calls, 1);
  qp_store_close(s);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "SELECT user_name, application, host FROM qp_summary", 0, 0, 0),
                   SQLITE_OK);
  sqlite3_close(db);
}

static void test_migrate_v1(void **state) {
  (void)state;
  migrate_from(1);
}
static void test_migrate_v2(void **state) {
  (void)state;
  migrate_from(2);
}
static void test_migrate_v5(void **state) {
  (void)state;
  migrate_from(5);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dims_exact_per_key), cmocka_unit_test(test_dims_bounded),
      cmocka_unit_test(test_migrate_v1),         cmocka_unit_test(test_migrate_v2),
      cmocka_unit_test(test_migrate_v5),
  };
  return cmocka_run_group_tests(tests, NULL, qpt_tempdirs_remove);
}
