/* The result cache against the real PostgreSQL fixture, in a database of
 * its own: a hit is the miss's result; every known bug of the field
 * (ANCHORS.md section 3) as its own regression test; writes the SQL does
 * not show (triggers, cascades, views, volatile functions); TRUNCATE and
 * DDL; settings in the key; out of memory never leaves a stale entry. */
#include "pgtest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "failalloc.h"

static qpt_pgdb g_db;

static qp_cache *open_cache(const qp_hooks *h) {
  qp_cache_options o;
  qp_cache_options_init(&o);
  o.hooks = h;
  qp_cache *c = NULL;
  char err[256];
  if (qp_cache_open(&c, &o, err, sizeof err) != QP_OK) fail_msg("cache: %s", err);
  return c;
}

static qp_cache_stats stats(qp_cache *c) {
  qp_cache_stats s = QP_CACHE_STATS_INIT;
  assert_int_equal(qp_cache_stats_get(c, &s), QP_OK);
  return s;
}

static int setup(void **state) {
  (void)state;
  return qpt_pgdb_create(&g_db, "qp_cache_pg_%d", (int)getpid());
}

static int teardown(void **state) {
  (void)state;
  qpt_pgdb_drop(&g_db);
  qpt_pg_try(qpt_pg_dsn(), "DROP ROLE IF EXISTS qp_cache_alice; DROP ROLE IF EXISTS qp_cache_bob");
  return 0;
}

/* Two leases of one pool (a, b) on one cache. */
typedef struct fx {
  qp_cache *cache;
  qp_pool *p;
  qp_conn *a, *b;
} fx;

static void fx_open(fx *f) {
  f->cache = open_cache(NULL);
  f->p = qpt_pool_open(g_db.dsn, 2, f->cache, NULL);
  assert_int_equal(qp_pool_acquire(f->p, &f->a), QP_OK);
  assert_int_equal(qp_pool_acquire(f->p, &f->b), QP_OK);
}

static void fx_close(fx *f) {
  qp_pool_release(f->a);
  qp_pool_release(f->b);
  qp_pool_close(f->p);
  qp_cache_close(f->cache);
}

static void test_hit_equals_miss(void **state) {
  (void)state;
  fx f;
  fx_open(&f);
  qpt_script(f.a, "DROP TABLE IF EXISTS h; CREATE TABLE h(id int PRIMARY KEY, t text, b bytea, n numeric, "
                  "ts timestamptz); INSERT INTO h VALUES (1, 'x', '\\x00ff'::bytea, 1.50, '2024-01-02 03:04:05+00'),"
                  " (2, NULL, NULL, NULL, NULL)");
  const char *q = "SELECT id, t, b, n, ts FROM h WHERE id >= $1 ORDER BY id";
  qp_param prm = qp_param_int(1);
  qp_result *m = NULL, *h = NULL;
  assert_int_equal(qp_conn_exec(f.b, q, &prm, 1, &m), QP_OK);
  assert_int_equal(qp_conn_exec(f.a, q, &prm, 1, &h), QP_OK);
  assert_int_equal(stats(f.cache).hits, 1);
  qp_cache_flush(f.cache);
  assert_int_equal(qp_result_rows(m), 2);
  assert_int_equal(qp_result_rows(h), 2);
  assert_int_equal(qp_result_cols(h), 5);
  assert_int_equal(qp_result_affected(m), qp_result_affected(h));
  for (size_t r = 0; r < 2; r++)
    for (size_t c = 0; c < 5; c++) {
      assert_string_equal(qp_result_colname(m, c), qp_result_colname(h, c));
      assert_int_equal(qp_result_isnull(m, r, c), qp_result_isnull(h, r, c));
      size_t lm, lh;
      const char *vm = qp_result_value(m, r, c, &lm), *vh = qp_result_value(h, r, c, &lh);
      assert_int_equal(lm, lh);
      if (vm) assert_memory_equal(vm, vh, lm);
      const void *bm = qp_result_blob(m, r, c, &lm), *bh = qp_result_blob(h, r, c, &lh);
      assert_int_equal(lm, lh);
      if (bm) assert_memory_equal(bm, bh, lm);
    }
  size_t bl;
  const unsigned char *bytes = qp_result_blob(h, 0, 2, &bl);
  assert_int_equal(bl, 2);
  assert_int_equal(bytes[1], 0xff);
  qp_result_free(m);
  qp_result_free(h);
  fx_close(&f);
}

/* pgpool-II: writes inside BEGIN/COMMIT did not invalidate. */
static void test_bug_write_in_transaction(void **state) {
  (void)state;
  fx f;
  fx_open(&f);
  qpt_script(f.a, "DROP TABLE IF EXISTS w; CREATE TABLE w(id int PRIMARY KEY, v int); INSERT INTO w VALUES (1, 1)");
  const char *q = "SELECT v FROM w WHERE id = 1";
  assert_string_equal(qpt_value(f.b, q), "1");
  assert_string_equal(qpt_value(f.b, q), "1");
  qpt_exec(f.a, "BEGIN");
  qpt_exec(f.a, "UPDATE w SET v = 2 WHERE id = 1");
  assert_string_equal(qpt_value(f.a, q), "2"); /* the writer reads around the cache */
  assert_string_equal(qpt_value(f.b, q), "1"); /* not committed yet */
  qpt_exec(f.a, "COMMIT");
  assert_string_equal(qpt_value(f.b, q), "2");
  qpt_exec(f.a, "BEGIN");
  qpt_exec(f.a, "UPDATE w SET v = 3 WHERE id = 1");
  qpt_exec(f.a, "ROLLBACK");
  assert_string_equal(qpt_value(f.b, q), "2");
  qpt_exec(f.a, "BEGIN");
  qpt_exec(f.a, "SAVEPOINT s");
  qpt_exec(f.a, "UPDATE w SET v = 4 WHERE id = 1");
  qpt_exec(f.a, "ROLLBACK TO SAVEPOINT s");
  qpt_exec(f.a, "UPDATE w SET v = 5 WHERE id = 1");
  qpt_exec(f.a, "COMMIT");
  assert_string_equal(qpt_value(f.b, q), "5");
  /* a transaction left open is rolled back on release: nothing applies */
  qpt_exec(f.a, "BEGIN");
  qpt_exec(f.a, "UPDATE w SET v = 6 WHERE id = 1");
  qp_pool_release(f.a);
  assert_string_equal(qpt_value(f.b, q), "5");
  assert_int_equal(qp_pool_acquire(f.p, &f.a), QP_OK);
  assert_true(stats(f.cache).refused[QP_CACHE_REFUSED_TXN_WRITTEN] >= 1);
  fx_close(&f);
}

/* pgpool-II: tables outside public were not invalidated. */
static void test_bug_non_public_schema(void **state) {
  (void)state;
  fx f;
  fx_open(&f);
  qpt_script(f.a, "DROP SCHEMA IF EXISTS app CASCADE; CREATE SCHEMA app; CREATE TABLE app.acct(v int);"
                  " INSERT INTO app.acct VALUES (1)");
  const char *q = "SELECT sum(v) FROM app.acct";
  assert_string_equal(qpt_value(f.b, q), "1");
  assert_string_equal(qpt_value(f.b, q), "1");
  qpt_exec(f.a, "INSERT INTO app.acct VALUES (2)");
  assert_string_equal(qpt_value(f.b, q), "3");
  qpt_exec(f.a, "SET search_path = app");
  qpt_exec(f.a, "INSERT INTO acct VALUES (3)");
  assert_string_equal(qpt_value(f.b, q), "6");
  fx_close(&f);
}

/* pgpool-II: one table name in two schemas was served from one entry. */
static void test_bug_same_name_two_schemas(void **state) {
  (void)state;
  fx f;
  fx_open(&f);
  qpt_script(f.a, "DROP SCHEMA IF EXISTS s1 CASCADE; DROP SCHEMA IF EXISTS s2 CASCADE;"
                  " CREATE SCHEMA s1; CREATE SCHEMA s2; CREATE TABLE s1.item(v text); CREATE TABLE s2.item(v text);"
                  " INSERT INTO s1.item VALUES ('one'); INSERT INTO s2.item VALUES ('two')");
  const char *q = "SELECT v FROM item";
  qpt_exec(f.a, "SET search_path = s1");
  qpt_exec(f.b, "SET search_path = s2");
  assert_string_equal(qpt_value(f.a, q), "one");
  assert_string_equal(qpt_value(f.b, q), "two");
  assert_string_equal(qpt_value(f.a, q), "one");
  assert_string_equal(qpt_value(f.b, q), "two");
  qpt_exec(f.b, "SET search_path = s1");
  assert_string_equal(qpt_value(f.b, q), "one");
  qpt_exec(f.a, "UPDATE s2.item SET v = 'deux'");
  qpt_exec(f.b, "SET search_path = s2");
  assert_string_equal(qpt_value(f.b, q), "deux");
  assert_true(stats(f.cache).hits >= 2);
  fx_close(&f);
}

/* Results were cached across users: two roles with different grants and
 * row-level security see their own rows, hit or miss. */
static void test_bug_across_users(void **state) {
  (void)state;
  char sql[1024];
  snprintf(sql, sizeof sql,
           "DROP ROLE IF EXISTS qp_cache_alice; DROP ROLE IF EXISTS qp_cache_bob;"
           " CREATE ROLE qp_cache_alice LOGIN; CREATE ROLE qp_cache_bob LOGIN;"
           " GRANT CONNECT ON DATABASE %s TO qp_cache_alice, qp_cache_bob",
           g_db.name);
  qpt_pg_exec(qpt_pg_dsn(), sql);
  fx f;
  fx_open(&f);
  qpt_script(f.a, "DROP TABLE IF EXISTS doc; CREATE TABLE doc(owner text, body text);"
                  " INSERT INTO doc VALUES ('qp_cache_alice', 'a-secret'), ('qp_cache_bob', 'b-secret');"
                  " ALTER TABLE doc ENABLE ROW LEVEL SECURITY;"
                  " CREATE POLICY own ON doc USING (owner = current_user);"
                  " GRANT SELECT ON doc TO qp_cache_alice, qp_cache_bob;"
                  " DROP TABLE IF EXISTS secret; CREATE TABLE secret(v text); INSERT INTO secret VALUES ('s');"
                  " GRANT SELECT ON secret TO qp_cache_alice");
  char da[600], db[600];
  qpt_pg_dsn_as(da, sizeof da, "qp_cache_alice", g_db.name);
  qpt_pg_dsn_as(db, sizeof db, "qp_cache_bob", g_db.name);
  qp_pool *pa = qpt_pool_open(da, 1, f.cache, NULL), *pb = qpt_pool_open(db, 1, f.cache, NULL);
  qp_conn *ca, *cb;
  assert_int_equal(qp_pool_acquire(pa, &ca), QP_OK);
  assert_int_equal(qp_pool_acquire(pb, &cb), QP_OK);
  const char *q = "SELECT string_agg(body, ',') FROM doc";
  for (int i = 0; i < 3; i++) {
    assert_string_equal(qpt_value(ca, q), "a-secret");
    assert_string_equal(qpt_value(cb, q), "b-secret");
  }
  assert_string_equal(qpt_value(ca, "SELECT v FROM secret"), "s");
  qp_result *r = NULL;
  assert_int_equal(qp_conn_exec(cb, "SELECT v FROM secret", NULL, 0, &r), QP_QUERY);
  assert_string_equal(qp_conn_sqlstate(cb), "42501");
  /* SET ROLE on one connection changes its key */
  qpt_exec(f.a, "SET ROLE qp_cache_bob");
  assert_string_equal(qpt_value(f.a, q), "b-secret");
  qpt_exec(f.a, "RESET ROLE");
  assert_string_equal(qpt_value(f.a, q), "a-secret,b-secret");
  /* a write through another pool invalidates this one's entries */
  qpt_exec(f.b, "UPDATE doc SET body = 'a-new' WHERE owner = 'qp_cache_alice'");
  assert_string_equal(qpt_value(ca, q), "a-new");
  qp_pool_release(ca);
  qp_pool_release(cb);
  qp_pool_close(pa);
  qp_pool_close(pb);
  fx_close(&f);
}

/* now(), random() and functions that are not immutable were cached. */
static void test_bug_volatile_functions(void **state) {
  (void)state;
  fx f;
  fx_open(&f);
  qpt_script(f.a, "CREATE OR REPLACE FUNCTION stable_count() RETURNS bigint STABLE LANGUAGE sql AS "
                  "'SELECT count(*) FROM pg_class';"
                  " CREATE OR REPLACE FUNCTION twice(int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT $1 * 2'");
  const char *refused[] = {"SELECT now()", "SELECT random()", "SELECT clock_timestamp()",
                           "SELECT stable_count()", "SELECT current_timestamp",
                           "SELECT statement_timestamp()", "SELECT txid_current()"};
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
    for (int k = 0; k < 2; k++) (void)qpt_value(f.a, refused[i]);
  assert_int_equal(stats(f.cache).hits, 0);
  assert_string_equal(qpt_value(f.a, "SELECT twice(21)"), "42");
  assert_string_equal(qpt_value(f.a, "SELECT twice(21)"), "42");
  assert_int_equal(stats(f.cache).hits, 1);
  fx_close(&f);
}

/* Writes the SQL does not show: a trigger writing another table, an ON
 * DELETE CASCADE foreign key, a view over two tables, a volatile function
 * that writes, TRUNCATE and DDL. */
static void test_hidden_writes(void **state) {
  (void)state;
  fx f;
  fx_open(&f);
  qpt_script(f.a, "DROP TABLE IF EXISTS child, parent, audit CASCADE;"
                  " CREATE TABLE parent(id int PRIMARY KEY); CREATE TABLE audit(n int);"
                  " CREATE TABLE child(id int PRIMARY KEY, pid int REFERENCES parent ON DELETE CASCADE);"
                  " CREATE OR REPLACE FUNCTION log_it() RETURNS trigger LANGUAGE plpgsql AS"
                  " 'BEGIN INSERT INTO audit VALUES (new.id); RETURN new; END';"
                  " CREATE TRIGGER tr AFTER INSERT ON parent FOR EACH ROW EXECUTE FUNCTION log_it();"
                  " CREATE OR REPLACE VIEW both_n AS SELECT (SELECT count(*) FROM parent) + (SELECT count(*) FROM child) AS n;"
                  " CREATE OR REPLACE FUNCTION add_audit() RETURNS int VOLATILE LANGUAGE sql AS"
                  " 'INSERT INTO audit VALUES (100) RETURNING 1';"
                  " INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1, 1)");
  const char *qa = "SELECT count(*) FROM audit", *qc = "SELECT count(*) FROM child",
             *qv = "SELECT n FROM both_n";
  for (int k = 0; k < 2; k++) {
    assert_string_equal(qpt_value(f.b, qa), "1");
    assert_string_equal(qpt_value(f.b, qc), "1");
    assert_string_equal(qpt_value(f.b, qv), "2");
  }
  qpt_exec(f.a, "INSERT INTO parent VALUES (2)");
  assert_string_equal(qpt_value(f.b, qa), "2");
  assert_string_equal(qpt_value(f.b, qv), "3");
  qpt_exec(f.a, "DELETE FROM parent WHERE id = 1");
  assert_string_equal(qpt_value(f.b, qc), "0");
  assert_string_equal(qpt_value(f.b, qv), "1");
  (void)qpt_value(f.a, "SELECT add_audit()");
  assert_string_equal(qpt_value(f.b, qa), "3");
  qpt_exec(f.a, "TRUNCATE audit");
  assert_string_equal(qpt_value(f.b, qa), "0");
  qpt_exec(f.a, "ALTER TABLE audit ADD COLUMN m int DEFAULT 7");
  assert_string_equal(qpt_value(f.b, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'audit'"), "2");
  qpt_exec(f.a, "INSERT INTO audit VALUES (1)");
  assert_string_equal(qpt_value(f.b, "SELECT m FROM audit"), "7");
  assert_string_equal(qpt_value(f.b, "SELECT m FROM audit"), "7");
  qpt_script(f.a, "ALTER TABLE audit ALTER COLUMN m SET DEFAULT 8; UPDATE audit SET m = DEFAULT");
  assert_string_equal(qpt_value(f.b, "SELECT m FROM audit"), "8");
  fx_close(&f);
}

/* Output settings are in the key: the same SQL under another TimeZone or
 * DateStyle is another entry. */
static void test_settings_in_key(void **state) {
  (void)state;
  fx f;
  fx_open(&f);
  qpt_script(f.a, "DROP TABLE IF EXISTS tz; CREATE TABLE tz(t timestamptz); INSERT INTO tz VALUES ('2024-06-01 12:00:00+00')");
  const char *q = "SELECT t::text FROM tz";
  qpt_exec(f.a, "SET TimeZone = 'UTC'");
  qpt_exec(f.b, "SET TimeZone = 'Asia/Tokyo'");
  assert_string_equal(qpt_value(f.a, q), "2024-06-01 12:00:00+00");
  assert_string_equal(qpt_value(f.b, q), "2024-06-01 21:00:00+09");
  assert_string_equal(qpt_value(f.a, q), "2024-06-01 12:00:00+00");
  assert_string_equal(qpt_value(f.b, q), "2024-06-01 21:00:00+09");
  qpt_exec(f.b, "SET extra_float_digits = 0");
  assert_string_equal(qpt_value(f.b, "SELECT 0.1::float8 * 3"), "0.3");
  qpt_exec(f.b, "SET extra_float_digits = 1");
  assert_string_equal(qpt_value(f.b, "SELECT 0.1::float8 * 3"), "0.30000000000000004");
  /* REPEATABLE READ reads around the cache */
  qpt_exec(f.a, "BEGIN ISOLATION LEVEL REPEATABLE READ");
  (void)qpt_value(f.a, q);
  qpt_exec(f.a, "COMMIT");
  assert_true(stats(f.cache).refused[QP_CACHE_REFUSED_ISOLATION] >= 1);
  fx_close(&f);
}

/* Failed invalidation was only logged: here invalidation cannot fail. Out
 * of memory at every allocation of the cache in turn, a read after a write
 * is never stale and every statement succeeds. */
static void test_bug_failed_invalidation_oom(void **state) {
  (void)state;
  qpt_pg_exec(qpt_pg_dsn(), "SELECT 1");
  {
    qp_pool *p = qpt_pool_open(g_db.dsn, 1, NULL, NULL);
    qp_conn *c;
    assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
    qpt_script(c, "DROP TABLE IF EXISTS o; CREATE TABLE o(v int); INSERT INTO o VALUES (0)");
    qp_pool_release(c);
    qp_pool_close(p);
  }
  int value = 0, failed = 0;
  for (long n = 1; n < 400; n++) {
    qpt_failalloc fa = {.fail_at = n};
    qp_hooks h = qpt_failalloc_hooks(&fa);
    qp_cache_options o;
    qp_cache_options_init(&o);
    o.hooks = &h;
    qp_cache *cache = NULL;
    char err[256];
    if (qp_cache_open(&cache, &o, err, sizeof err) != QP_OK) continue;
    qp_pool *p = qpt_pool_open(g_db.dsn, 2, cache, NULL);
    qp_conn *a, *b;
    assert_int_equal(qp_pool_acquire(p, &a), QP_OK);
    assert_int_equal(qp_pool_acquire(p, &b), QP_OK);
    char want[32], upd[64];
    for (int k = 0; k < 3; k++) {
      snprintf(want, sizeof want, "%d", value);
      assert_string_equal(qpt_value(b, "SELECT v FROM o"), want);
      assert_string_equal(qpt_value(a, "SELECT v FROM o"), want);
      value++;
      snprintf(upd, sizeof upd, "UPDATE o SET v = %d", value);
      qpt_exec(a, upd);
    }
    qp_pool_release(a);
    qp_pool_release(b);
    qp_pool_close(p);
    if (fa.count >= n) failed++;
    qp_cache_close(cache);
    assert_int_equal(fa.live, 0);
    if (fa.count < n) break; /* every allocation of the path has failed once */
  }
  print_message("allocations failed in turn: %d\n", failed);
  assert_true(failed > 10);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hit_equals_miss),
      cmocka_unit_test(test_bug_write_in_transaction),
      cmocka_unit_test(test_bug_non_public_schema),
      cmocka_unit_test(test_bug_same_name_two_schemas),
      cmocka_unit_test(test_bug_across_users),
      cmocka_unit_test(test_bug_volatile_functions),
      cmocka_unit_test(test_hidden_writes),
      cmocka_unit_test(test_settings_in_key),
      cmocka_unit_test(test_bug_failed_invalidation_oom),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
