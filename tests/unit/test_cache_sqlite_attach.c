/* The result cache over SQLite connections with attached databases (real
 * files): an attached file's rows are cached and invalidated by writes
 * through the pool (by schema: aux.t is not main.t) and by another process
 * (the sqlite3 shell); pools attaching different files under one alias
 * never share entries, pools attaching the same file do; ATTACH and DETACH
 * between reads; in-memory and temporary attached databases are never
 * cached. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool/pool_int.h" /* the lease's backend connection, for its check counters */

/* lib/backend/sqlite_cache.c: checks answered by the wal-index headers
 * alone and by PRAGMA data_version on one connection. */
void qp__sq_change_checks(qp__bconn *b, uint64_t *fast, uint64_t *full);

static uint64_t fast_checks(qp_conn *c) {
  uint64_t fast = 0, full = 0;
  qp__sq_change_checks(c->b, &fast, &full);
  return fast;
}

static char g_dir[260];

/* dir/name.db */
static const char *file(const char *name) {
  static char buf[4][300];
  static int k;
  char *b = buf[k++ % 4];
  snprintf(b, sizeof buf[0], "%s/%s.db", g_dir, name);
  return b;
}

/* A fresh directory with main.db (t: id 1, v 1) and the WAL files named
 * (each: t with id 1 and v = tag, u with v = tag + 5, log, and a trigger
 * logging every update of t). */
static void fresh(const char *const *names, const int *tags, int n) {
  const char *dir = qpt_tempdir();
  assert_non_null(dir);
  snprintf(g_dir, sizeof g_dir, "%s", dir);
  assert_int_equal(qpt_system("sqlite3 '%s' 'PRAGMA journal_mode=WAL;"
                              " CREATE TABLE t(id INTEGER PRIMARY KEY, v INT);"
                              " INSERT INTO t VALUES (1, 1)' >/dev/null",
                              file("main")),
                   0);
  for (int i = 0; i < n; i++)
    assert_int_equal(qpt_system("sqlite3 '%s' 'PRAGMA journal_mode=WAL;"
                                " CREATE TABLE t(id INTEGER PRIMARY KEY, v INT);"
                                " INSERT INTO t VALUES (1, %d);"
                                " CREATE TABLE u(v INT); INSERT INTO u VALUES (%d);"
                                " CREATE TABLE log(v INT);"
                                " CREATE TRIGGER tr AFTER UPDATE ON t BEGIN"
                                " INSERT INTO log VALUES (new.v); END' >/dev/null",
                                file(names[i]), tags[i], tags[i] + 5),
                     0);
}

static qp_cache *open_cache(void) {
  qp_cache_options o;
  qp_cache_options_init(&o);
  qp_cache *c = NULL;
  char err[256];
  if (qp_cache_open(&c, &o, err, sizeof err) != QP_OK) fail_msg("qp_cache_open: %s", err);
  return c;
}

static qp_pool *open_pool(qp_cache *cache) {
  char dsn[320];
  snprintf(dsn, sizeof dsn, "sqlite://%s", file("main"));
  qp_pool_options o;
  qp_pool_options_init(&o);
  o.dsn = dsn;
  o.max_size = 1;
  o.cache = cache;
  qp_pool *p = NULL;
  char err[256];
  if (qp_pool_open(&p, &o, err, sizeof err) != QP_OK) fail_msg("qp_pool_open: %s", err);
  return p;
}

/* One statement through qp_conn_exec (ATTACH and DETACH too: a script
 * would make the session the connection's own). */
static void run(qp_conn *c, const char *sql) {
  qp_result *r = NULL;
  if (qp_conn_exec(c, sql, NULL, 0, &r) != QP_OK) fail_msg("%s: %s", sql, qp_conn_errmsg(c));
  qp_result_free(r);
}

static void attach(qp_conn *c, const char *name, const char *alias) {
  char sql[400];
  snprintf(sql, sizeof sql, "ATTACH '%s' AS %s", file(name), alias);
  run(c, sql);
}

/* The first column of the first row as an integer. */
static int64_t one(qp_conn *c, const char *sql) {
  qp_result *r = NULL;
  if (qp_conn_exec(c, sql, NULL, 0, &r) != QP_OK) fail_msg("%s: %s", sql, qp_conn_errmsg(c));
  int64_t v = -999;
  if (qp_result_rows(r) > 0 && !qp_result_isnull(r, 0, 0))
    assert_int_equal(qp_result_int64(r, 0, 0, &v), QP_OK);
  qp_result_free(r);
  return v;
}

static qp_cache_stats stats(qp_cache *c) {
  qp_cache_stats s = QP_CACHE_STATS_INIT;
  assert_int_equal(qp_cache_stats_get(c, &s), QP_OK);
  return s;
}

/* sql returns want, answered by the cache (hit) or not (miss). */
static void expect(qp_cache *cache, qp_conn *c, const char *sql, int64_t want, bool hit) {
  qp_cache_stats a = stats(cache);
  int64_t got = one(c, sql);
  qp_cache_stats b = stats(cache);
  if (got != want) fail_msg("%s: %lld, want %lld", sql, (long long)got, (long long)want);
  if ((b.hits == a.hits + 1) != hit)
    fail_msg("%s: %s, want a %s", sql, hit ? "not a hit" : "a hit", hit ? "hit" : "miss");
}

static const char *Q_MAIN = "SELECT v FROM main.t WHERE id = 1";
static const char *Q_T = "SELECT v FROM t WHERE id = 1"; /* resolves to main.t */
static const char *Q_AUX = "SELECT v FROM aux.t WHERE id = 1";
static const char *Q_U = "SELECT v FROM u"; /* only in aux: resolves to aux.u */
static const char *Q_LOG = "SELECT count(*) FROM aux.log";

/* The file attached as aux (made by fresh() with `tag`) is what c reads:
 * aux.t, then aux.u, each a miss and then a hit. */
static void reads_aux(qp_cache *cache, qp_conn *c, int64_t tag) {
  expect(cache, c, Q_AUX, tag, false);
  expect(cache, c, Q_AUX, tag, true);
  expect(cache, c, Q_U, tag + 5, false);
  expect(cache, c, Q_U, tag + 5, true);
}

/* Writes through the pool invalidate by schema: a write to aux.t (its own
 * or its trigger's, seen by the update hook as "aux") drops aux.t's
 * entries, not main.t's, and the other way round; an unqualified name is
 * the table SQLite resolves it to. */
static void test_attach_writes_invalidate(void **state) {
  (void)state;
  const char *names[] = {"b"};
  int tags[] = {100};
  fresh(names, tags, 1);
  qp_cache *cache = open_cache();
  qp_pool *p = open_pool(cache);
  qp_conn *c = NULL;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  attach(c, "b", "aux");
  const char *qs[] = {Q_MAIN, Q_T, Q_AUX, Q_U, Q_LOG};
  int64_t want[] = {1, 1, 100, 105, 0};
  for (int i = 0; i < 5; i++) expect(cache, c, qs[i], want[i], false);
  for (int i = 0; i < 5; i++) expect(cache, c, qs[i], want[i], true);
  run(c, "UPDATE aux.t SET v = 101 WHERE id = 1");
  expect(cache, c, Q_AUX, 101, false);
  expect(cache, c, Q_LOG, 1, false); /* the trigger's write */
  expect(cache, c, Q_MAIN, 1, true);
  expect(cache, c, Q_T, 1, true);
  expect(cache, c, Q_U, 105, true);
  run(c, "UPDATE t SET v = 2 WHERE id = 1"); /* main.t */
  expect(cache, c, Q_MAIN, 2, false);
  expect(cache, c, Q_T, 2, false);
  expect(cache, c, Q_AUX, 101, true);
  run(c, "UPDATE u SET v = 106"); /* aux.u */
  expect(cache, c, Q_U, 106, false);
  expect(cache, c, Q_AUX, 101, true);
  expect(cache, c, Q_MAIN, 2, true);
  /* in a transaction: at COMMIT */
  run(c, "BEGIN");
  run(c, "UPDATE aux.t SET v = 102 WHERE id = 1");
  run(c, "COMMIT");
  expect(cache, c, Q_AUX, 102, false);
  expect(cache, c, Q_LOG, 2, false);
  expect(cache, c, Q_MAIN, 2, true);
  qp_pool_release(c);
  qp_pool_close(p);
  qp_cache_close(cache);
}

/* Another process commits to the attached file: the next read misses and
 * sees it, each time; the hits in between are answered by both files'
 * wal-index headers. A commit to the main file is seen too. */
static void test_attach_other_process(void **state) {
  (void)state;
  const char *names[] = {"b"};
  int tags[] = {100};
  fresh(names, tags, 1);
  qp_cache *cache = open_cache();
  qp_pool *p = open_pool(cache);
  qp_conn *c = NULL;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  attach(c, "b", "aux");
  expect(cache, c, Q_AUX, 100, false);
  for (int i = 0; i < 3; i++) expect(cache, c, Q_AUX, 100, true);
  uint64_t f0 = fast_checks(c);
  assert_true(f0 >= 1);
  for (int round = 1; round <= 10; round++) {
    /* odd rounds write the row read, even rounds another table of the file */
    if (round % 2)
      assert_int_equal(qpt_system("sqlite3 '%s' 'UPDATE t SET v = %d WHERE id = 1'", file("b"),
                                  200 + round),
                       0);
    else
      assert_int_equal(qpt_system("sqlite3 '%s' 'INSERT INTO log VALUES (%d)'", file("b"), round),
                       0);
    int64_t want = 200 + (round % 2 ? round : round - 1);
    expect(cache, c, Q_AUX, want, false);
    uint64_t f = fast_checks(c);
    expect(cache, c, Q_AUX, want, true);
    expect(cache, c, Q_AUX, want, true);
    assert_true(fast_checks(c) >= f + 1);
  }
  expect(cache, c, Q_MAIN, 1, false);
  expect(cache, c, Q_MAIN, 1, true);
  assert_int_equal(qpt_system("sqlite3 '%s' 'UPDATE t SET v = 9 WHERE id = 1'", file("main")), 0);
  expect(cache, c, Q_MAIN, 9, false);
  qp_pool_release(c);
  qp_pool_close(p);
  qp_cache_close(cache);
}

/* Three pools on one cache and one main file: two attach b1 as aux, one
 * attaches b2 as aux. The first two share entries (the identity, not the
 * connection, tells them apart); the third never gets theirs. */
static void test_attach_alias_pools(void **state) {
  (void)state;
  const char *names[] = {"b1", "b2"};
  int tags[] = {100, 200};
  fresh(names, tags, 2);
  qp_cache *cache = open_cache();
  qp_pool *p1 = open_pool(cache), *p2 = open_pool(cache), *p3 = open_pool(cache);
  qp_conn *c1 = NULL, *c2 = NULL, *c3 = NULL;
  assert_int_equal(qp_pool_acquire(p1, &c1), QP_OK);
  assert_int_equal(qp_pool_acquire(p2, &c2), QP_OK);
  assert_int_equal(qp_pool_acquire(p3, &c3), QP_OK);
  attach(c1, "b1", "aux");
  attach(c2, "b2", "aux");
  attach(c3, "b1", "aux");
  /* each connection's first check flushes its server once */
  expect(cache, c1, Q_AUX, 100, false);
  expect(cache, c2, Q_AUX, 200, false);
  expect(cache, c3, Q_AUX, 100, false);
  expect(cache, c1, Q_AUX, 100, true); /* c3's fill */
  expect(cache, c2, Q_AUX, 200, true);
  expect(cache, c3, Q_AUX, 100, true);
  expect(cache, c2, Q_U, 205, false);
  expect(cache, c1, Q_U, 105, false);
  expect(cache, c3, Q_U, 105, true);
  expect(cache, c2, Q_U, 205, true);
  qp_pool_release(c1);
  qp_pool_release(c2);
  qp_pool_release(c3);
  qp_pool_close(p1);
  qp_pool_close(p2);
  qp_pool_close(p3);
  qp_cache_close(cache);
}

/* ATTACH and DETACH between reads: a detached alias is an error, not a
 * hit; the same alias on another file reads that file; and a write made
 * while a file was attached is seen after the DETACH (it moved the
 * counters of the attached composition, not the bare main file's). */
static void test_attach_detach_between_reads(void **state) {
  (void)state;
  const char *names[] = {"b", "c"};
  int tags[] = {100, 300};
  fresh(names, tags, 2);
  qp_cache *cache = open_cache();
  qp_pool *p = open_pool(cache);
  qp_conn *c = NULL;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  expect(cache, c, Q_T, 1, false);
  expect(cache, c, Q_T, 1, true);
  attach(c, "b", "aux");
  reads_aux(cache, c, 100);
  run(c, "UPDATE t SET v = 2 WHERE id = 1");
  run(c, "DETACH aux");
  expect(cache, c, Q_T, 2, false);
  expect(cache, c, Q_T, 2, true);
  qp_result *r = NULL;
  assert_int_not_equal(qp_conn_exec(c, Q_AUX, NULL, 0, &r), QP_OK);
  qp_result_free(r);
  assert_int_not_equal(qp_conn_exec(c, Q_U, NULL, 0, &r), QP_OK);
  qp_result_free(r);
  attach(c, "c", "aux");
  reads_aux(cache, c, 300);
  run(c, "DETACH aux");
  attach(c, "b", "aux");
  reads_aux(cache, c, 100);
  qp_pool_release(c);
  qp_pool_close(p);
  qp_cache_close(cache);
}

/* In-memory and temporary attached databases are the connection's own:
 * nothing read from them is cached, whether named by schema or resolved to
 * them; two pools with different rows in their own "m" each read theirs.
 * Reads of the main file on such a connection are still cached. */
static void test_attach_memory_not_cached(void **state) {
  (void)state;
  fresh(NULL, NULL, 0);
  qp_cache *cache = open_cache();
  qp_pool *p1 = open_pool(cache), *p2 = open_pool(cache);
  qp_conn *c1 = NULL, *c2 = NULL;
  assert_int_equal(qp_pool_acquire(p1, &c1), QP_OK);
  assert_int_equal(qp_pool_acquire(p2, &c2), QP_OK);
  run(c1, "ATTACH ':memory:' AS m");
  run(c2, "ATTACH ':memory:' AS m");
  run(c1, "ATTACH '' AS e");
  run(c2, "ATTACH '' AS e");
  qp_conn *cs[] = {c1, c2};
  for (int i = 0; i < 2; i++) {
    char sql[200];
    snprintf(sql, sizeof sql, "CREATE TABLE m.x(v INT)");
    run(cs[i], sql);
    snprintf(sql, sizeof sql, "INSERT INTO m.x VALUES (%d)", 10 + i);
    run(cs[i], sql);
    run(cs[i], "CREATE TABLE e.y(v INT)");
    snprintf(sql, sizeof sql, "INSERT INTO e.y VALUES (%d)", 20 + i);
    run(cs[i], sql);
  }
  uint64_t temp0 = stats(cache).refused[QP_CACHE_REFUSED_TEMP];
  const char *qs[] = {"SELECT v FROM m.x", "SELECT v FROM x", "SELECT v FROM e.y",
                      "SELECT v FROM y"};
  for (int k = 0; k < 3; k++)
    for (int q = 0; q < 4; q++)
      for (int i = 0; i < 2; i++) expect(cache, cs[i], qs[q], (q < 2 ? 10 : 20) + i, false);
  assert_true(stats(cache).refused[QP_CACHE_REFUSED_TEMP] >= temp0 + 24);
  expect(cache, c1, Q_T, 1, false);
  expect(cache, c1, Q_T, 1, true);
  qp_pool_release(c1);
  qp_pool_release(c2);
  qp_pool_close(p1);
  qp_pool_close(p2);
  qp_cache_close(cache);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_attach_writes_invalidate),
      cmocka_unit_test(test_attach_other_process),
      cmocka_unit_test(test_attach_alias_pools),
      cmocka_unit_test(test_attach_detach_between_reads),
      cmocka_unit_test(test_attach_memory_not_cached),
  };
  return cmocka_run_group_tests(tests, NULL, qpt_tempdirs_remove);
}
