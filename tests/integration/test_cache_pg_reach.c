/* The result cache's reach on the real PostgreSQL fixture, in a database of
 * its own: writes the SQL text does not show (a trigger writing another
 * table, cascading and SET NULL foreign keys, a view over two tables, a
 * write through an updatable view, INSTEAD OF triggers, partitions and
 * inheritance, a policy reading another table) invalidate exactly the
 * tables they reach: each test also keeps an unrelated cached read and
 * checks that it stays a hit and that no flush happened, which is what
 * tells the reach from the server-wide flush. What the reach cannot know
 * (dynamic SQL, a call of a volatile user function, a rule) still
 * flushes. */
#include "pgtest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static qpt_pgdb g_db;

static int setup(void **state) {
  (void)state;
  return qpt_pgdb_create(&g_db, "qp_cache_reach_%d", (int)getpid());
}

static int teardown(void **state) {
  (void)state;
  qpt_pgdb_drop(&g_db);
  qpt_pg_try(qpt_pg_dsn(), "DROP ROLE IF EXISTS qp_reach_reader");
  return 0;
}

/* A writer lease (a) and a reader lease (b) of one pool on one cache. */
typedef struct fx {
  qp_cache *cache;
  qp_pool *p;
  qp_conn *a, *b;
} fx;

static void fx_open(fx *f, const char *schema) {
  qp_cache_options o;
  qp_cache_options_init(&o);
  char err[256];
  if (qp_cache_open(&f->cache, &o, err, sizeof err) != QP_OK) fail_msg("cache: %s", err);
  f->p = qpt_pool_open(g_db.dsn, 2, f->cache, NULL);
  assert_int_equal(qp_pool_acquire(f->p, &f->a), QP_OK);
  assert_int_equal(qp_pool_acquire(f->p, &f->b), QP_OK);
  qpt_script(f->a, "DROP SCHEMA public CASCADE; CREATE SCHEMA public; GRANT USAGE ON SCHEMA public TO PUBLIC");
  qpt_script(f->a, schema);
}

static void fx_close(fx *f) {
  qp_pool_release(f->a);
  qp_pool_release(f->b);
  qp_pool_close(f->p);
  qp_cache_close(f->cache);
}

static qp_cache_stats stats(qp_cache *c) {
  qp_cache_stats s = QP_CACHE_STATS_INIT;
  assert_int_equal(qp_cache_stats_get(c, &s), QP_OK);
  return s;
}

/* q read on the reader is want, then cached: the second read is a hit. */
static void cached(fx *f, const char *q, const char *want) {
  assert_string_equal(qpt_value(f->b, q), want);
  uint64_t h = stats(f->cache).hits;
  assert_string_equal(qpt_value(f->b, q), want);
  if (stats(f->cache).hits != h + 1) fail_msg("not cached: %s", q);
}

/* The next read of q is a miss (invalidated) that returns want. */
static void missed(fx *f, const char *q, const char *want) {
  uint64_t h = stats(f->cache).hits;
  assert_string_equal(qpt_value(f->b, q), want);
  if (stats(f->cache).hits != h) fail_msg("served from the cache after a write it reads: %s", q);
}

/* The next read of q is still a hit: the write did not reach it. */
static void kept(fx *f, const char *q, const char *want) {
  uint64_t h = stats(f->cache).hits;
  assert_string_equal(qpt_value(f->b, q), want);
  if (stats(f->cache).hits != h + 1) fail_msg("invalidated by a write that cannot reach it: %s", q);
}

/* Runs a write on the writer and checks it did not flush the server. */
static void write_exact(fx *f, const char *sql) {
  uint64_t fl = stats(f->cache).flushes;
  qpt_exec(f->a, sql);
  if (stats(f->cache).flushes != fl) fail_msg("flushed instead of reaching: %s", sql);
}

static const char unrelated_sql[] = "SELECT count(*) FROM unrelated";

/* A trigger that writes another table invalidates that table and the
 * written one, not an unrelated table. */
static void test_trigger_writes_other(void **state) {
  (void)state;
  fx f;
  fx_open(&f, "CREATE TABLE unrelated(v int); INSERT INTO unrelated VALUES (1);"
              " CREATE TABLE src(id int); CREATE TABLE audit(n int, op text);"
              " CREATE TABLE scratch(v int); INSERT INTO scratch VALUES (0); CREATE TABLE gone(v int);"
              " CREATE FUNCTION log_src() RETURNS trigger LANGUAGE plpgsql AS $$"
              " DECLARE k int; k2 int; BEGIN"
              "   IF TG_OP = 'DELETE' THEN INSERT INTO public.audit VALUES (old.id, 'DELETE'); RETURN old;"
              "   END IF; k := abs(new.id);"
              "   INSERT INTO audit(n, op) VALUES (k, lower(TG_OP)) ON CONFLICT DO NOTHING RETURNING n INTO k2;"
              "   WITH d AS (DELETE FROM gone RETURNING v) UPDATE \"scratch\" s SET v = s.v + 1"
              "     FROM (SELECT count(*) AS c FROM d) x WHERE x.c >= 0;"
              "   -- a comment: EXECUTE 'nothing'\n"
              "   PERFORM 1 FROM src WHERE id = k FOR UPDATE; RETURN new; END $$;"
              " CREATE TRIGGER tr AFTER INSERT OR UPDATE OR DELETE ON src FOR EACH ROW EXECUTE FUNCTION log_src()");
  const char *qa = "SELECT count(*) FROM audit", *qs = "SELECT count(*) FROM src";
  cached(&f, unrelated_sql, "1");
  cached(&f, qa, "0");
  cached(&f, qs, "0");
  cached(&f, "SELECT v FROM scratch", "0");
  cached(&f, "SELECT count(*) FROM gone", "0");
  write_exact(&f, "INSERT INTO src VALUES (1)");
  missed(&f, qa, "1");
  missed(&f, "SELECT v FROM scratch", "1");
  missed(&f, "SELECT count(*) FROM gone", "0");
  missed(&f, qs, "1");
  kept(&f, unrelated_sql, "1");
  cached(&f, qa, "1");
  write_exact(&f, "DELETE FROM src");
  missed(&f, qa, "2");
  kept(&f, unrelated_sql, "1");
  /* inside a transaction: applied at COMMIT, still not a flush */
  cached(&f, qa, "2");
  qpt_exec(f.a, "BEGIN");
  qpt_exec(f.a, "INSERT INTO src VALUES (2)");
  write_exact(&f, "COMMIT");
  missed(&f, qa, "3");
  kept(&f, unrelated_sql, "1");
  fx_close(&f);
}

/* ON DELETE CASCADE and ON UPDATE CASCADE write the referencing table; a
 * foreign key without an action writes nothing. */
static void test_fk_cascade(void **state) {
  (void)state;
  fx f;
  fx_open(&f, "CREATE TABLE unrelated(v int); INSERT INTO unrelated VALUES (1);"
              " CREATE TABLE parent(id int PRIMARY KEY);"
              " CREATE TABLE child(id int PRIMARY KEY, pid int REFERENCES parent ON DELETE CASCADE ON UPDATE CASCADE);"
              " CREATE TABLE grandchild(cid int REFERENCES child ON DELETE CASCADE);"
              " CREATE TABLE plain_ref(pid int REFERENCES parent);"
              " INSERT INTO parent VALUES (1), (2); INSERT INTO child VALUES (10, 1), (20, 2);"
              " INSERT INTO grandchild VALUES (10), (20)");
  const char *qc = "SELECT count(*) FROM child", *qp = "SELECT string_agg(pid::text, ',' ORDER BY id) FROM child",
             *qg = "SELECT count(*) FROM grandchild", *qr = "SELECT count(*) FROM plain_ref";
  cached(&f, unrelated_sql, "1");
  cached(&f, qc, "2");
  cached(&f, qp, "1,2");
  cached(&f, qg, "2");
  cached(&f, qr, "0");
  write_exact(&f, "DELETE FROM parent WHERE id = 1");
  missed(&f, qc, "1");
  missed(&f, qg, "1"); /* transitively: child cascades to grandchild */
  kept(&f, unrelated_sql, "1");
  kept(&f, qr, "0");
  cached(&f, qp, "2");
  write_exact(&f, "UPDATE parent SET id = 5 WHERE id = 2");
  missed(&f, qp, "5");
  kept(&f, unrelated_sql, "1");
  /* the referencing side's checks (internal triggers) write nothing */
  cached(&f, "SELECT count(*) FROM parent", "1");
  write_exact(&f, "INSERT INTO plain_ref VALUES (5)");
  missed(&f, qr, "1");
  kept(&f, "SELECT count(*) FROM parent", "1");
  kept(&f, unrelated_sql, "1");
  fx_close(&f);
}

/* ON DELETE SET NULL and ON UPDATE SET DEFAULT write the referencing
 * table. */
static void test_fk_set_null(void **state) {
  (void)state;
  fx f;
  fx_open(&f, "CREATE TABLE unrelated(v int); INSERT INTO unrelated VALUES (1);"
              " CREATE TABLE owner(id int PRIMARY KEY); INSERT INTO owner VALUES (0), (1), (2);"
              " CREATE TABLE thing(id int, oid int DEFAULT 0 REFERENCES owner ON DELETE SET NULL ON UPDATE SET DEFAULT);"
              " INSERT INTO thing VALUES (1, 1), (2, 2)");
  const char *q = "SELECT coalesce(string_agg(coalesce(oid::text, 'null'), ',' ORDER BY id), '') FROM thing";
  cached(&f, unrelated_sql, "1");
  cached(&f, q, "1,2");
  write_exact(&f, "DELETE FROM owner WHERE id = 1");
  missed(&f, q, "null,2");
  kept(&f, unrelated_sql, "1");
  cached(&f, q, "null,2");
  write_exact(&f, "UPDATE owner SET id = 7 WHERE id = 2");
  missed(&f, q, "null,0");
  kept(&f, unrelated_sql, "1");
  fx_close(&f);
}

/* A view over two tables depends on both; a view over that view too. */
static void test_view_two_tables(void **state) {
  (void)state;
  fx f;
  fx_open(&f, "CREATE TABLE unrelated(v int); INSERT INTO unrelated VALUES (1);"
              " CREATE TABLE va(v int); CREATE TABLE vb(v int); INSERT INTO va VALUES (1); INSERT INTO vb VALUES (2);"
              " CREATE VIEW vab AS SELECT (SELECT sum(v) FROM va) + (SELECT sum(v) FROM vb) AS s;"
              " CREATE VIEW vtop AS SELECT s * 10 AS t FROM vab");
  const char *qv = "SELECT s FROM vab", *qt = "SELECT t FROM vtop";
  cached(&f, unrelated_sql, "1");
  cached(&f, qv, "3");
  cached(&f, qt, "30");
  write_exact(&f, "INSERT INTO va VALUES (10)");
  missed(&f, qv, "13");
  missed(&f, qt, "130");
  kept(&f, unrelated_sql, "1");
  write_exact(&f, "UPDATE vb SET v = 20");
  missed(&f, qv, "31");
  missed(&f, qt, "310");
  kept(&f, unrelated_sql, "1");
  /* not cached: a view over an unlogged table, over a catalog, calling a
   * function that is not immutable */
  qpt_script(f.a, "CREATE UNLOGGED TABLE ul(v int); INSERT INTO ul VALUES (1);"
                  " CREATE VIEW vul AS SELECT v FROM ul; CREATE VIEW vcat AS SELECT count(*) AS n FROM pg_am;"
                  " CREATE VIEW vnow AS SELECT now() AS t; CREATE VIEW vstmt AS SELECT statement_timestamp() AS t");
  qp_cache_stats before = stats(f.cache);
  for (int i = 0; i < 2; i++) {
    assert_string_equal(qpt_value(f.b, "SELECT v FROM vul"), "1");
    (void)qpt_value(f.b, "SELECT n FROM vcat");
    (void)qpt_value(f.b, "SELECT t FROM vnow");
    (void)qpt_value(f.b, "SELECT t FROM vstmt");
  }
  qp_cache_stats after = stats(f.cache);
  assert_int_equal(after.hits, before.hits);
  assert_int_equal(after.refused[QP_CACHE_REFUSED_TEMP], before.refused[QP_CACHE_REFUSED_TEMP] + 2);
  assert_int_equal(after.refused[QP_CACHE_REFUSED_CATALOG], before.refused[QP_CACHE_REFUSED_CATALOG] + 2);
  assert_int_equal(after.refused[QP_CACHE_REFUSED_VOLATILE], before.refused[QP_CACHE_REFUSED_VOLATILE] + 4);
  cached(&f, qv, "31");
  cached(&f, qt, "310");
  cached(&f, unrelated_sql, "1");
  /* a write to an unrelated table leaves the views' entries */
  write_exact(&f, "INSERT INTO unrelated VALUES (2)");
  kept(&f, qv, "31");
  kept(&f, qt, "310");
  fx_close(&f);
}

/* A write through an auto-updatable view writes its base table; INSTEAD OF
 * triggers on a view write what their function writes. */
static void test_updatable_view(void **state) {
  (void)state;
  fx f;
  fx_open(&f, "CREATE TABLE unrelated(v int); INSERT INTO unrelated VALUES (1);"
              " CREATE TABLE base(id int, v int); INSERT INTO base VALUES (1, 1);"
              " CREATE VIEW uv AS SELECT id, v FROM base WHERE id > 0;"
              " CREATE TABLE sink(v int);"
              " CREATE VIEW iv AS SELECT 1 AS v;"
              " CREATE FUNCTION iv_ins() RETURNS trigger LANGUAGE plpgsql AS $$"
              " BEGIN INSERT INTO sink VALUES (new.v); RETURN new; END $$;"
              " CREATE TRIGGER iv_tr INSTEAD OF INSERT ON iv FOR EACH ROW EXECUTE FUNCTION iv_ins()");
  const char *qb = "SELECT sum(v) FROM base", *qs = "SELECT count(*) FROM sink";
  cached(&f, unrelated_sql, "1");
  cached(&f, qb, "1");
  cached(&f, qs, "0");
  write_exact(&f, "UPDATE uv SET v = 5 WHERE id = 1");
  missed(&f, qb, "5");
  kept(&f, unrelated_sql, "1");
  kept(&f, qs, "0");
  write_exact(&f, "INSERT INTO uv VALUES (2, 2)");
  missed(&f, qb, "7");
  write_exact(&f, "INSERT INTO iv VALUES (3)");
  missed(&f, qs, "1");
  kept(&f, qb, "7");
  kept(&f, unrelated_sql, "1");
  fx_close(&f);
}

/* Partitions and inheritance: a write to a partition reaches its parent, a
 * write to the parent reaches its children. */
static void test_partitions(void **state) {
  (void)state;
  fx f;
  fx_open(&f, "CREATE TABLE unrelated(v int); INSERT INTO unrelated VALUES (1);"
              " CREATE TABLE m(k int, v int) PARTITION BY RANGE (k);"
              " CREATE TABLE m1 PARTITION OF m FOR VALUES FROM (0) TO (10);"
              " CREATE TABLE m2 PARTITION OF m FOR VALUES FROM (10) TO (20);"
              " INSERT INTO m VALUES (1, 1), (11, 1);"
              " CREATE TABLE ip(v int); CREATE TABLE ic() INHERITS (ip); INSERT INTO ic VALUES (1)");
  const char *qm = "SELECT sum(v) FROM m", *q1 = "SELECT sum(v) FROM m1", *q2 = "SELECT sum(v) FROM m2",
             *qi = "SELECT sum(v) FROM ip", *qc = "SELECT sum(v) FROM ic";
  cached(&f, unrelated_sql, "1");
  cached(&f, qm, "2");
  cached(&f, q1, "1");
  cached(&f, q2, "1");
  write_exact(&f, "INSERT INTO m1 VALUES (2, 5)");
  missed(&f, qm, "7");
  missed(&f, q1, "6");
  kept(&f, unrelated_sql, "1");
  cached(&f, q2, "1");
  write_exact(&f, "UPDATE m SET v = v + 1 WHERE k >= 10");
  missed(&f, q2, "2");
  missed(&f, qm, "8");
  kept(&f, unrelated_sql, "1");
  cached(&f, qi, "1");
  cached(&f, qc, "1");
  write_exact(&f, "UPDATE ip SET v = 4");
  missed(&f, qc, "4");
  missed(&f, qi, "4");
  write_exact(&f, "INSERT INTO ic VALUES (1)");
  missed(&f, qi, "5");
  kept(&f, unrelated_sql, "1");
  fx_close(&f);
}

/* What the reach cannot know flushes the server: a trigger running dynamic
 * SQL, one calling a volatile user function, a rule. */
static void test_unknown_reach_flushes(void **state) {
  (void)state;
  fx f;
  fx_open(&f, "CREATE TABLE unrelated(v int); INSERT INTO unrelated VALUES (1);"
              " CREATE TABLE dyn(v int); CREATE TABLE hidden(v int);"
              " CREATE FUNCTION dyn_tr() RETURNS trigger LANGUAGE plpgsql AS $$"
              " BEGIN EXECUTE 'INSERT INTO ' || 'hidden VALUES (1)'; RETURN new; END $$;"
              " CREATE TRIGGER tr AFTER INSERT ON dyn FOR EACH ROW EXECUTE FUNCTION dyn_tr();"
              " CREATE FUNCTION put_hidden() RETURNS void VOLATILE LANGUAGE sql AS 'INSERT INTO hidden VALUES (2)';"
              " CREATE TABLE via(v int);"
              " CREATE FUNCTION via_tr() RETURNS trigger LANGUAGE plpgsql AS $$"
              " BEGIN PERFORM put_hidden(); RETURN new; END $$;"
              " CREATE TRIGGER tr AFTER INSERT ON via FOR EACH ROW EXECUTE FUNCTION via_tr();"
              " CREATE TABLE ruled(v int);"
              " CREATE RULE r AS ON INSERT TO ruled DO ALSO INSERT INTO hidden VALUES (3);"
              " CREATE FUNCTION next_hidden() RETURNS int VOLATILE LANGUAGE sql AS"
              " 'INSERT INTO hidden VALUES (4) RETURNING 4';"
              " CREATE TABLE defd(v int DEFAULT next_hidden(), w int)");
  const char *qh = "SELECT count(*) FROM hidden";
  /* the last: a column default that writes (no trigger: the table looked
   * plain, and that write went unseen before the default was asked about) */
  const char *writes[] = {"INSERT INTO dyn VALUES (1)", "INSERT INTO via VALUES (1)",
                          "INSERT INTO ruled VALUES (1)", "INSERT INTO defd(w) VALUES (1)"};
  for (int i = 0; i < 4; i++) {
    char want[8];
    snprintf(want, sizeof want, "%d", i);
    cached(&f, unrelated_sql, "1");
    cached(&f, qh, want);
    uint64_t fl = stats(f.cache).flushes;
    qpt_exec(f.a, writes[i]);
    assert_true(stats(f.cache).flushes > fl);
    snprintf(want, sizeof want, "%d", i + 1);
    missed(&f, qh, want);
    missed(&f, unrelated_sql, "1");
  }
  fx_close(&f);
}

/* Row-level security writes nothing; a read of a table whose policy reads
 * another table depends on that table too. */
static void test_policy_reads(void **state) {
  (void)state;
  char sql[512];
  snprintf(sql, sizeof sql,
           "DROP ROLE IF EXISTS qp_reach_reader; CREATE ROLE qp_reach_reader;"
           " GRANT CONNECT ON DATABASE %s TO qp_reach_reader", g_db.name);
  qpt_pg_exec(qpt_pg_dsn(), sql);
  fx f;
  fx_open(&f, "CREATE TABLE unrelated(v int); INSERT INTO unrelated VALUES (1);"
              " CREATE TABLE members(name text); CREATE TABLE doc(owner text, body text);"
              " INSERT INTO doc VALUES ('qp_reach_reader', 'mine'), ('other', 'theirs');"
              " ALTER TABLE doc ENABLE ROW LEVEL SECURITY;"
              " CREATE POLICY p ON doc USING (owner IN (SELECT name FROM members));"
              " GRANT SELECT ON doc, members, unrelated TO qp_reach_reader");
  qpt_exec(f.b, "SET ROLE qp_reach_reader");
  const char *q = "SELECT count(*) FROM doc";
  cached(&f, unrelated_sql, "1");
  cached(&f, q, "0");
  write_exact(&f, "INSERT INTO members VALUES ('qp_reach_reader')");
  missed(&f, q, "1");
  kept(&f, unrelated_sql, "1");
  write_exact(&f, "UPDATE doc SET body = 'x'");
  cached(&f, q, "1");
  write_exact(&f, "INSERT INTO members VALUES ('other')");
  missed(&f, q, "2");
  kept(&f, unrelated_sql, "1");
  qpt_exec(f.b, "RESET ROLE");
  fx_close(&f);
}

/* A question the cache asks inside the user's transaction block that fails
 * (here the user's own lock_timeout, while another session holds
 * pg_namespace, which the cache's table lookup reads and the user's
 * statement, its names already in the backend's caches, does not) is rolled
 * back alone: the user's transaction goes on and commits. Before the
 * lookups ran in a savepoint, the user's SELECT failed with "current
 * transaction is aborted". */
static void test_failed_lookup_keeps_transaction(void **state) {
  (void)state;
  fx f;
  fx_open(&f, "CREATE TABLE u (x int); INSERT INTO u VALUES (7); "
              "CREATE FUNCTION warm() RETURNS int LANGUAGE plpgsql AS "
              "$$ BEGIN RETURN (SELECT x FROM u); END $$");
  qpt_exec(f.b, "SET lock_timeout = '300ms'");
  assert_string_equal(qpt_value(f.b, "SELECT warm()"), "7"); /* u in b's caches; not cacheable */
  qp_pool *lp = qpt_pool_open(g_db.dsn, 1, NULL, NULL); /* pg_namespace is per database */
  qp_conn *lk;
  assert_int_equal(qp_pool_acquire(lp, &lk), QP_OK);
  qpt_exec(lk, "BEGIN");
  qpt_exec(lk, "LOCK TABLE pg_catalog.pg_namespace IN ACCESS EXCLUSIVE MODE");
  qpt_exec(f.b, "BEGIN");
  assert_string_equal(qpt_value(f.b, "SELECT x FROM u"), "7");
  assert_string_equal(qpt_value(f.b, "SELECT x + 1 FROM u"), "8");
  qpt_exec(f.b, "COMMIT");
  qpt_exec(lk, "ROLLBACK");
  qp_pool_release(lk);
  qp_pool_close(lp);
  assert_string_equal(qpt_value(f.b, "SELECT x FROM u"), "7");
  fx_close(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_trigger_writes_other), cmocka_unit_test(test_fk_cascade),
      cmocka_unit_test(test_fk_set_null),          cmocka_unit_test(test_view_two_tables),
      cmocka_unit_test(test_updatable_view),       cmocka_unit_test(test_partitions),
      cmocka_unit_test(test_unknown_reach_flushes), cmocka_unit_test(test_policy_reads),
      cmocka_unit_test(test_failed_lookup_keeps_transaction),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
