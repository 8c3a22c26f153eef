/* The result cache over real SQLite files: options and patterns, a hit is
 * the same result as a miss, every invalidation path (autocommit, COMMIT,
 * ROLLBACK, triggers, cascades, views, DDL, another process), refusals,
 * the byte budget, statistics and out of memory on a fill. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "failalloc.h"
#include "pool/pool_int.h" /* the lease's backend connection, for its check counters */

/* lib/backend/sqlite_cache.c: checks answered by the wal-index header alone
 * and by PRAGMA data_version on one connection. */
void qp__sq_change_checks(qp__bconn *b, uint64_t *fast, uint64_t *full);

static uint64_t fast_checks(qp_conn *c) {
  uint64_t fast = 0, full = 0;
  qp__sq_change_checks(c->b, &fast, &full);
  return fast;
}

static char g_dsn[300];
static char g_path[280];

static const char *fresh_dsn(void) {
  const char *dir = qpt_tempdir();
  assert_non_null(dir);
  snprintf(g_path, sizeof g_path, "%s/cache.db", dir);
  snprintf(g_dsn, sizeof g_dsn, "sqlite://%s", g_path);
  return g_dsn;
}

static qp_cache *open_cache(size_t max_bytes, const qp_hooks *h) {
  qp_cache_options o;
  qp_cache_options_init(&o);
  if (max_bytes) {
    o.max_bytes = max_bytes;
    o.max_entry_bytes = max_bytes / QP_CACHE_SHARDS;
  }
  o.hooks = h;
  qp_cache *c = NULL;
  char err[256];
  if (qp_cache_open(&c, &o, err, sizeof err) != QP_OK) fail_msg("qp_cache_open: %s", err);
  return c;
}

static qp_pool *open_pool(qp_cache *cache, int max) {
  qp_pool_options o;
  qp_pool_options_init(&o);
  o.dsn = g_dsn;
  o.max_size = max;
  o.cache = cache;
  qp_pool *p = NULL;
  char err[256];
  if (qp_pool_open(&p, &o, err, sizeof err) != QP_OK) fail_msg("qp_pool_open: %s", err);
  return p;
}

static void exec_ok(qp_conn *c, const char *sql) {
  if (qp_conn_exec_script(c, sql) != QP_OK) fail_msg("%s: %s", sql, qp_conn_errmsg(c));
}

/* The first column of the first row as an integer, through qp_conn_exec. */
static int64_t one(qp_conn *c, const char *sql) {
  qp_result *r = NULL;
  if (qp_conn_exec(c, sql, NULL, 0, &r) != QP_OK) fail_msg("%s: %s", sql, qp_conn_errmsg(c));
  int64_t v = -999;
  if (qp_result_rows(r) > 0 && !qp_result_isnull(r, 0, 0)) assert_int_equal(qp_result_int64(r, 0, 0, &v), QP_OK);
  qp_result_free(r);
  return v;
}

static qp_cache_stats stats(qp_cache *c) {
  qp_cache_stats s = QP_CACHE_STATS_INIT;
  assert_int_equal(qp_cache_stats_get(c, &s), QP_OK);
  return s;
}

/* A fresh file, a cache (max_bytes 0: the default budget) and a pool of
 * `leases` connections on it, each leased: a, and b when there are two.
 * fx_close releases the leases still held (not NULL). */
typedef struct fx {
  qp_cache *cache;
  qp_pool *p;
  qp_conn *a, *b;
} fx;

static void fx_open(fx *f, size_t max_bytes, int leases) {
  fresh_dsn();
  f->cache = open_cache(max_bytes, NULL);
  f->p = open_pool(f->cache, leases);
  f->a = f->b = NULL;
  assert_int_equal(qp_pool_acquire(f->p, &f->a), QP_OK);
  if (leases > 1) assert_int_equal(qp_pool_acquire(f->p, &f->b), QP_OK);
}

static void fx_close(fx *f) {
  if (f->a != NULL) qp_pool_release(f->a);
  if (f->b != NULL) qp_pool_release(f->b);
  qp_pool_close(f->p);
  qp_cache_close(f->cache);
}

static void test_open_errors(void **state) {
  (void)state;
  qp_cache_options o;
  qp_cache_options_init(&o);
  const char *bad[] = {"users", "select (unclosed"};
  o.statement_patterns = bad;
  o.nstatement_patterns = 2;
  qp_cache *c = (qp_cache *)1;
  char err[256];
  assert_int_equal(qp_cache_open(&c, &o, err, sizeof err), QP_PATTERN);
  assert_null(c);
  assert_non_null(strstr(err, "pattern 1 'select (unclosed'"));
  assert_non_null(strstr(err, "offset"));
  qp_cache_options_init(&o);
  o.table_patterns = bad + 1;
  o.ntable_patterns = 1;
  assert_int_equal(qp_cache_open(&c, &o, err, sizeof err), QP_PATTERN);
  assert_non_null(strstr(err, "table pattern 0"));
  qp_cache_options_init(&o);
  o.max_entry_bytes = 0;
  assert_int_equal(qp_cache_open(&c, &o, err, sizeof err), QP_INVALID);
  assert_non_null(strstr(err, "max_entry_bytes"));
  qp_cache_options_init(&o);
  o.ttl_ms = -1;
  assert_int_equal(qp_cache_open(&c, &o, err, sizeof err), QP_INVALID);
  qp_cache_options z;
  memset(&z, 0, sizeof z);
  assert_int_equal(qp_cache_open(&c, &z, err, sizeof err), QP_INVALID);
  assert_non_null(strstr(err, "qp_cache_options_init"));
  qp_cache_close(NULL);
}

/* A hit is the same result as the miss: rows, columns, names, NULLs, blobs,
 * affected count, and it does not depend on the cache after return. */
static void test_hit_equals_miss(void **state) {
  (void)state;
  fx f;
  fx_open(&f, 0, 1);
  qp_conn *c = f.a;
  exec_ok(c, "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, b BLOB, f REAL);"
             "INSERT INTO t VALUES (1, 'one', x'00ff01', 1.5), (2, NULL, NULL, NULL), (3, '', x'', -0.25)");
  const char *q = "SELECT id, name, b, f FROM t WHERE id >= ? ORDER BY id";
  qp_param prm = qp_param_int(1);
  qp_result *a = NULL, *b = NULL;
  assert_int_equal(qp_conn_exec(c, q, &prm, 1, &a), QP_OK);
  assert_int_equal(qp_conn_exec(c, q, &prm, 1, &b), QP_OK);
  qp_cache_stats s = stats(f.cache);
  assert_int_equal(s.hits, 1);
  assert_int_equal(s.fills, 1);
  qp_cache_flush(f.cache); /* the hit must not point into the cache */
  assert_int_equal(qp_result_rows(a), qp_result_rows(b));
  assert_int_equal(qp_result_cols(a), qp_result_cols(b));
  assert_int_equal(qp_result_affected(a), qp_result_affected(b));
  for (size_t col = 0; col < qp_result_cols(a); col++)
    assert_string_equal(qp_result_colname(a, col), qp_result_colname(b, col));
  for (size_t r = 0; r < qp_result_rows(a); r++)
    for (size_t col = 0; col < qp_result_cols(a); col++) {
      assert_int_equal(qp_result_isnull(a, r, col), qp_result_isnull(b, r, col));
      size_t la, lb;
      const void *va = qp_result_blob(a, r, col, &la), *vb = qp_result_blob(b, r, col, &lb);
      assert_int_equal(la, lb);
      if (la) assert_memory_equal(va, vb, la);
    }
  qp_result_free(a);
  qp_result_free(b);
  /* another parameter is another key */
  prm = qp_param_int(3);
  assert_int_equal(one(c, "SELECT count(*) FROM t"), 3);
  qp_result *r3 = NULL;
  assert_int_equal(qp_conn_exec(c, q, &prm, 1, &r3), QP_OK);
  assert_int_equal(qp_result_rows(r3), 1);
  qp_result_free(r3);
  fx_close(&f);
}

/* Every write path of lease a, in order: its statements, then the leases
 * that read the row, in order, and what each reads. Inside a transaction
 * the writer reads around the cache first: what it reads must not be
 * stored for b. */
typedef struct write_path {
  const char *what;
  bool script; /* qp_conn_exec_script; otherwise qp_conn_exec, one statement each */
  const char *sql[8];
  const char *readers; /* "ab": a, then b */
  int64_t want[2];
} write_path;

static const write_path g_write_paths[] = {
    {"autocommit", false, {"UPDATE t SET v = 11 WHERE id = 1"}, "ba", {11, 11}},
    {"BEGIN: invisible to b before COMMIT", false,
     {"BEGIN", "UPDATE t SET v = 12 WHERE id = 1"}, "ab", {12, 11}},
    {"COMMIT: seen at once", false, {"COMMIT"}, "b", {12}},
    {"ROLLBACK", false, {"BEGIN", "UPDATE t SET v = 13 WHERE id = 1", "ROLLBACK"}, "ba", {12, 12}},
    {"savepoints", false,
     {"BEGIN", "SAVEPOINT s", "UPDATE t SET v = 14 WHERE id = 1", "ROLLBACK TO s",
      "UPDATE t SET v = 15 WHERE id = 1", "RELEASE s", "COMMIT"}, "b", {15}},
    {"a script", true, {"UPDATE t SET v = 16 WHERE id = 1"}, "b", {16}},
};

static void test_writes_invalidate(void **state) {
  (void)state;
  fx f;
  fx_open(&f, 0, 2);
  exec_ok(f.a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 10)");
  const char *q = "SELECT v FROM t WHERE id = 1";
  assert_int_equal(one(f.a, q), 10);
  assert_int_equal(one(f.b, q), 10);
  assert_int_equal(one(f.b, q), 10);
  assert_true(stats(f.cache).hits >= 1);
  for (size_t i = 0; i < sizeof g_write_paths / sizeof g_write_paths[0]; i++) {
    const write_path *w = &g_write_paths[i];
    for (int k = 0; k < 8 && w->sql[k] != NULL; k++) {
      qp_status st = w->script ? qp_conn_exec_script(f.a, w->sql[k])
                               : qp_conn_exec(f.a, w->sql[k], NULL, 0, NULL);
      if (st != QP_OK) fail_msg("%s: %s: %s", w->what, w->sql[k], qp_conn_errmsg(f.a));
    }
    for (int k = 0; w->readers[k] != '\0'; k++) {
      int64_t got = one(w->readers[k] == 'a' ? f.a : f.b, q);
      if (got != w->want[k])
        fail_msg("%s: %c read %lld, want %lld", w->what, w->readers[k], (long long)got,
                 (long long)w->want[k]);
    }
  }
  /* DDL */
  assert_int_equal(one(f.b, "SELECT count(*) FROM t"), 1);
  exec_ok(f.a, "DROP TABLE t; CREATE TABLE t(id INTEGER PRIMARY KEY, v INT)");
  assert_int_equal(one(f.b, "SELECT count(*) FROM t"), 0);
  fx_close(&f);
}

/* Writes the SQL does not show: a trigger writing another table, a
 * cascading foreign key, a view over two tables (the update hook). */
static void test_hidden_writes(void **state) {
  (void)state;
  fx f;
  fx_open(&f, 0, 2);
  exec_ok(f.a, "CREATE TABLE parent(id INTEGER PRIMARY KEY);"
               "CREATE TABLE child(id INTEGER PRIMARY KEY, pid INT REFERENCES parent(id) ON DELETE CASCADE);"
               "CREATE TABLE audit(n INT);"
               "CREATE TRIGGER tr AFTER INSERT ON parent BEGIN INSERT INTO audit VALUES (new.id); END;"
               "CREATE VIEW v AS SELECT (SELECT count(*) FROM parent) + (SELECT count(*) FROM child) AS n;"
               "INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1, 1)");
  assert_int_equal(one(f.b, "SELECT count(*) FROM audit"), 1);
  assert_int_equal(one(f.b, "SELECT count(*) FROM child"), 1);
  assert_int_equal(one(f.b, "SELECT n FROM v"), 2);
  assert_int_equal(one(f.b, "SELECT n FROM v"), 2);
  assert_int_equal(qp_conn_exec(f.a, "INSERT INTO parent VALUES (2)", NULL, 0, NULL), QP_OK);
  assert_int_equal(one(f.b, "SELECT count(*) FROM audit"), 2);
  assert_int_equal(one(f.b, "SELECT n FROM v"), 3);
  assert_int_equal(qp_conn_exec(f.a, "DELETE FROM parent WHERE id = 1", NULL, 0, NULL), QP_OK);
  assert_int_equal(one(f.b, "SELECT count(*) FROM child"), 0);
  assert_int_equal(one(f.b, "SELECT n FROM v"), 1);
  fx_close(&f);
}

/* Another process writes the file: PRAGMA data_version, checked before a
 * hit is served, drops what it may have changed. */
static void test_other_process(void **state) {
  (void)state;
  fx f;
  fx_open(&f, 0, 1);
  exec_ok(f.a, "CREATE TABLE t(v INT); INSERT INTO t VALUES (1)");
  assert_int_equal(one(f.a, "SELECT sum(v) FROM t"), 1);
  assert_int_equal(one(f.a, "SELECT sum(v) FROM t"), 1);
  assert_int_equal(qpt_system("sqlite3 '%s' 'INSERT INTO t VALUES (41)'", g_path), 0);
  assert_int_equal(one(f.a, "SELECT sum(v) FROM t"), 42);
  fx_close(&f);
}

/* Another process commits between hits, many times: the hit path reads the
 * wal-index header instead of a read transaction, and each commit, made and
 * returned before the next statement starts, must turn that statement into
 * a miss that sees it. The header must also be what answers the hits in
 * between (otherwise this tests data_version again). */
static void test_other_process_header(void **state) {
  (void)state;
  fx f;
  fx_open(&f, 0, 1);
  exec_ok(f.a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 0), (2, 0)");
  assert_int_equal(one(f.a, "SELECT v FROM t WHERE id = 1"), 0);
  for (int i = 0; i < 4; i++) assert_int_equal(one(f.a, "SELECT v FROM t WHERE id = 1"), 0);
  uint64_t fast0 = fast_checks(f.a);
  assert_true(fast0 >= 2); /* the header answered the later hits */
  for (int round = 1; round <= 30; round++) {
    /* odd rounds write the row read, even rounds another row of the table:
     * both must miss (a foreign commit says nothing about what it wrote) */
    assert_int_equal(qpt_system("sqlite3 '%s' 'UPDATE t SET v = %d WHERE id = %d'", g_path, round,
                                round % 2 ? 1 : 2),
                     0);
    qp_cache_stats before = stats(f.cache);
    int64_t want = round % 2 ? round : round - 1;
    assert_int_equal(one(f.a, "SELECT v FROM t WHERE id = 1"), want);
    qp_cache_stats after = stats(f.cache);
    assert_int_equal(after.hits, before.hits);
    assert_int_equal(after.misses, before.misses + 1);
    uint64_t n = fast_checks(f.a);
    assert_int_equal(one(f.a, "SELECT v FROM t WHERE id = 1"), want);
    assert_int_equal(one(f.a, "SELECT v FROM t WHERE id = 1"), want);
    assert_int_equal(stats(f.cache).hits, after.hits + 2);
    assert_true(fast_checks(f.a) >= n + 1);
  }
  /* this connection's own writes are not foreign: invalidated by table,
   * and the header check is back at the next read but one */
  exec_ok(f.a, "UPDATE t SET v = 100 WHERE id = 2");
  assert_int_equal(one(f.a, "SELECT v FROM t WHERE id = 1"), 29);
  uint64_t n = fast_checks(f.a);
  assert_int_equal(one(f.a, "SELECT v FROM t WHERE id = 1"), 29);
  assert_int_equal(fast_checks(f.a), n + 1);
  /* a journal_mode PRAGMA on the connection turns the header check off for
   * its life (SQLite unmaps the wal-index when it leaves WAL); data_version
   * still sees the other process, in rollback-journal mode too */
  exec_ok(f.a, "PRAGMA journal_mode=DELETE");
  n = fast_checks(f.a);
  assert_int_equal(one(f.a, "SELECT v FROM t WHERE id = 1"), 29);
  assert_int_equal(one(f.a, "SELECT v FROM t WHERE id = 1"), 29);
  assert_int_equal(qpt_system("sqlite3 '%s' 'UPDATE t SET v = 7 WHERE id = 1'", g_path), 0);
  assert_int_equal(one(f.a, "SELECT v FROM t WHERE id = 1"), 7);
  assert_int_equal(one(f.a, "SELECT v FROM t WHERE id = 1"), 7);
  assert_int_equal(fast_checks(f.a), n);
  fx_close(&f);
}

/* A SQLite transaction reads one snapshot: a read inside BEGIN ... COMMIT
 * that another process's commit has overtaken must not be stored, or another
 * connection that has already seen the commit serves the old rows. */
static void test_snapshot_in_transaction(void **state) {
  (void)state;
  fx f;
  fx_open(&f, 0, 2);
  exec_ok(f.a, "CREATE TABLE t(v INT); INSERT INTO t VALUES (1)");
  assert_int_equal(one(f.b, "SELECT sum(v) FROM t"), 1);
  assert_int_equal(one(f.a, "SELECT sum(v) FROM t"), 1);
  /* (through qp_conn_exec: a script counts as a write) */
  assert_int_equal(qp_conn_exec(f.a, "BEGIN", NULL, 0, NULL), QP_OK);
  /* the snapshot starts here (a refused read of t runs on the file) */
  assert_int_equal(one(f.a, "SELECT sum(v) + 0 * random() FROM t"), 1);
  assert_int_equal(qpt_system("sqlite3 '%s' 'INSERT INTO t VALUES (41)'", g_path), 0);
  assert_int_equal(one(f.b, "SELECT sum(v) FROM t"), 42); /* b sees the commit */
  assert_int_equal(one(f.a, "SELECT max(v) FROM t"), 1);  /* a's snapshot: right for a */
  assert_int_equal(qp_conn_exec(f.a, "COMMIT", NULL, 0, NULL), QP_OK);
  assert_int_equal(one(f.b, "SELECT max(v) FROM t"), 41);
  assert_int_equal(one(f.a, "SELECT max(v) FROM t"), 41);
  fx_close(&f);
}

static void test_refusals(void **state) {
  (void)state;
  fx f;
  fx_open(&f, 0, 1);
  exec_ok(f.a, "CREATE TABLE t(v INT); INSERT INTO t VALUES (1)");
  const char *refused[] = {"SELECT random() FROM t", "SELECT changes() FROM t",
                           "SELECT last_insert_rowid() FROM t", "SELECT date('now') FROM t",
                           "SELECT count(*) FROM sqlite_master", "SELECT v FROM t LIMIT abs(random() % 1) + 1"};
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    for (int k = 0; k < 2; k++) {
      qp_result *r = NULL;
      assert_int_equal(qp_conn_exec(f.a, refused[i], NULL, 0, &r), QP_OK);
      qp_result_free(r);
    }
  }
  qp_cache_stats s = stats(f.cache);
  assert_int_equal(s.hits, 0);
  assert_true(s.refused[QP_CACHE_REFUSED_VOLATILE] >= 8);
  assert_true(s.refused[QP_CACHE_REFUSED_CATALOG] >= 2);
  /* a temporary table shadows: never cached */
  exec_ok(f.a, "CREATE TEMP TABLE tt(v INT); INSERT INTO tt VALUES (5)");
  assert_int_equal(one(f.a, "SELECT v FROM tt"), 5);
  assert_int_equal(one(f.a, "SELECT v FROM tt"), 5);
  assert_int_equal(stats(f.cache).hits, 0);
  fx_close(&f);
}

/* Over budget the cache evicts and never grows past it. */
static void test_budget(void **state) {
  (void)state;
  size_t budget = QP_CACHE_SHARDS * 4096;
  fx f;
  fx_open(&f, budget, 1);
  exec_ok(f.a, "CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT);"
               "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)"
               " INSERT INTO t SELECT i, printf('%0100d', i) FROM n");
  for (int i = 1; i <= 2000; i++) {
    qp_param prm = qp_param_int(i);
    qp_result *r = NULL;
    assert_int_equal(qp_conn_exec(f.a, "SELECT s FROM t WHERE id = ?", &prm, 1, &r), QP_OK);
    assert_int_equal(qp_result_rows(r), 1);
    qp_result_free(r);
    qp_cache_stats s = stats(f.cache);
    assert_true((size_t)s.bytes <= budget);
  }
  qp_cache_stats s = stats(f.cache);
  assert_true(s.evictions > 1000);
  assert_true(s.entries > 0);
  /* a result over the per-entry limit is returned, not stored */
  qp_result *r = NULL;
  assert_int_equal(qp_conn_exec(f.a, "SELECT s FROM t", NULL, 0, &r), QP_OK);
  assert_int_equal(qp_result_rows(r), 2000);
  qp_result_free(r);
  assert_true(stats(f.cache).refused[QP_CACHE_REFUSED_TOO_BIG] >= 1);
  char buf[8192];
  size_t need = 0;
  assert_int_equal(qp_cache_prometheus(f.cache, "app=\"x\"", buf, sizeof buf, &need), QP_OK);
  assert_non_null(strstr(buf, "qprof_cache_eviction_total{app=\"x\"}"));
  assert_non_null(strstr(buf, "qprof_cache_refused_total{app=\"x\",reason=\"too_big\"} 1"));
  qp_pool_stats ps = QP_POOL_STATS_INIT;
  assert_int_equal(qp_pool_stats_get(f.p, &ps), QP_OK);
  qp_pool_release(f.a);
  f.a = NULL; /* released: fx_close has only the pool and the cache left */
  assert_int_equal(qp_pool_stats_get(f.p, &ps), QP_OK);
  assert_int_equal(ps.cache_misses, 2001);
  fx_close(&f);
}

/* Out of memory anywhere in the cache: the statement still succeeds with
 * the right result (served uncached), nothing leaks. */
static void test_oom(void **state) {
  (void)state;
  fresh_dsn();
  {
    qp_pool *p = open_pool(NULL, 1);
    qp_conn *a = NULL;
    assert_int_equal(qp_pool_acquire(p, &a), QP_OK);
    exec_ok(a, "CREATE TABLE t(v INT); INSERT INTO t VALUES (7)");
    qp_pool_release(a);
    qp_pool_close(p);
  }
  long failures_seen = 0;
  for (long n = 1; n < 400; n++) {
    qpt_failalloc fa = {.fail_at = n};
    qp_hooks h = qpt_failalloc_hooks(&fa);
    qp_cache_options o;
    qp_cache_options_init(&o);
    o.hooks = &h;
    qp_cache *cache = NULL;
    char err[256];
    if (qp_cache_open(&cache, &o, err, sizeof err) != QP_OK) {
      assert_null(cache);
      assert_non_null(strstr(err, "out of memory"));
      assert_int_equal(fa.live, 0);
      continue;
    }
    qp_pool *p = open_pool(cache, 1);
    qp_conn *a = NULL;
    assert_int_equal(qp_pool_acquire(p, &a), QP_OK);
    for (int k = 0; k < 3; k++) assert_int_equal(one(a, "SELECT v FROM t"), 7);
    assert_int_equal(qp_conn_exec(a, "UPDATE t SET v = 7", NULL, 0, NULL), QP_OK);
    assert_int_equal(one(a, "SELECT v FROM t"), 7);
    qp_pool_release(a);
    qp_pool_close(p);
    if (fa.count >= n) failures_seen++;
    qp_cache_close(cache);
    assert_int_equal(fa.live, 0);
    if (fa.count < n) break; /* every allocation of the path has failed once */
  }
  assert_true(failures_seen > 10);
}

/* Hits are recorded as hits of their fingerprint, never as calls: stored
 * (a bucket with hits alone too), merged in the roll-ups, and shown by the
 * report model with the hit rate and the time saved. */
typedef struct hits_seen {
  int n;
  uint64_t calls, hits, hit_ns, total_ns;
  double rate, saved, mean;
} hits_seen;

static int collect_hits(const qp_query_summary *q, void *ud) {
  hits_seen *h = ud;
  if (strstr(q->query, "from t where id") == NULL) return 0;
  h->n++;
  h->calls = q->calls;
  h->hits = q->cache_hits;
  h->hit_ns = q->cache_hit_ns;
  h->total_ns = q->total_ns;
  h->mean = q->mean_ns;
  h->rate = qp_query_cache_hit_rate(q);
  h->saved = qp_query_cache_saved_ns(q);
  return 0;
}

static void test_hits_in_profile(void **state) {
  (void)state;
  fresh_dsn();
  char err[256], spath[512];
  snprintf(spath, sizeof spath, "%s/hits-store.db", qpt_tempdir());
  qp_profile *prof = NULL;
  assert_int_equal(qp_profile_new(&prof, NULL, err, sizeof err), QP_OK);
  qp_cache *cache = open_cache(0, NULL);
  qp_pool_options o;
  qp_pool_options_init(&o);
  o.dsn = g_dsn;
  o.max_size = 1;
  o.cache = cache;
  o.profile = prof;
  qp_pool *p = NULL;
  assert_int_equal(qp_pool_open(&p, &o, err, sizeof err), QP_OK);
  qp_conn *c = NULL;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  exec_ok(c, "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER); INSERT INTO t VALUES (1, 10)");
  const char *q = "SELECT v FROM t WHERE id = 1";
  for (int i = 0; i < 5; i++) assert_int_equal(one(c, q), 10); /* 1 miss, 4 hits */
  qp_store *st = NULL;
  assert_int_equal(qp_store_open(&st, spath, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  assert_int_equal(qp_profile_flush(prof, st), QP_OK);
  /* a second flush holding hits alone (no call: nothing ran on the file) */
  for (int i = 0; i < 3; i++) assert_int_equal(one(c, q), 10);
  assert_int_equal(qp_profile_flush(prof, st), QP_OK);
  hits_seen h = {0};
  assert_int_equal(qp_store_summarize(st, INT64_MIN, INT64_MAX, collect_hits, &h), QP_OK);
  assert_int_equal(h.n, 1);
  assert_int_equal(h.calls, 1); /* the miss: the only database latency */
  assert_int_equal(h.hits, 7);
  assert_true(h.hit_ns > 0);
  assert_true(h.rate > 0.874 && h.rate < 0.876); /* 7 / 8 */
  double want = 7 * h.mean - (double)h.hit_ns;
  assert_true(h.saved == (want > 0 ? want : 0));
  /* the report model reads the same */
  qp_report_options ro;
  qp_report_options_init(&ro);
  qp_report *r = NULL;
  assert_int_equal(qp_report_new(&r, st, &ro, err, sizeof err), QP_OK);
  bool found = false;
  for (size_t i = 0; i < qp_report_count(r); i++) {
    const qp_query_summary *s = qp_report_query(r, i);
    if (strstr(s->query, "from t where id") == NULL) continue;
    found = true;
    assert_int_equal(s->calls, 1);
    assert_int_equal(s->cache_hits, 7);
  }
  assert_true(found);
  qp_report_free(r);
  qp_store_close(st);
  qp_pool_release(c);
  qp_pool_close(p);
  qp_cache_close(cache);
  qp_profile_free(prof);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_open_errors),     cmocka_unit_test(test_hit_equals_miss),
      cmocka_unit_test(test_writes_invalidate), cmocka_unit_test(test_hidden_writes),
      cmocka_unit_test(test_other_process),   cmocka_unit_test(test_other_process_header),
      cmocka_unit_test(test_snapshot_in_transaction), cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_budget),          cmocka_unit_test(test_oom),
      cmocka_unit_test(test_hits_in_profile),
  };
  return cmocka_run_group_tests(tests, NULL, qpt_tempdirs_remove);
}
