/* The index advisor against the real PostgreSQL fixture, in a database of
 * its own with HypoPG and generated data (hundreds of thousands of rows,
 * uniform and skewed columns): each rule finds and verifies the right
 * index; low selectivity, an index that exists (under another name, as a
 * prefix) and a tiny table give none; safety (writes rolled back or not
 * run, timeouts, DDL refused, nothing recorded in a profile). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "failalloc.h"

static char g_db[64], g_dsn[512], g_admin_dsn[512];

static qp_pool *open_pool(const char *dsn, qp_profile *prof) {
  qp_pool_options o;
  qp_pool_options_init(&o);
  o.dsn = dsn;
  o.max_size = 2;
  o.acquire_timeout_ms = 5000;
  o.profile = prof;
  qp_pool *p = NULL;
  char err[512];
  if (qp_pool_open(&p, &o, err, sizeof err) != QP_OK) fail_msg("open: %s", err);
  return p;
}

static int sql_on(const char *dsn, const char *sql) {
  qp_pool *p = open_pool(dsn, NULL);
  qp_conn *c;
  qp_status st = qp_pool_acquire(p, &c);
  if (st == QP_OK) {
    st = qp_conn_exec_script(c, sql);
    if (st != QP_OK) print_error("%s (in: %.80s)\n", qp_conn_errmsg(c), sql);
    qp_pool_release(c);
  }
  qp_pool_close(p);
  return st;
}

static void run(const char *sql) {
  if (sql_on(g_dsn, sql) != QP_OK) fail_msg("%s failed", sql);
}

/* The first value of the first row, as text (static buffer per slot). */
static const char *val(const char *sql) {
  static char buf[8][256];
  static int k;
  char *out = buf[k++ & 7];
  qp_pool *p = open_pool(g_dsn, NULL);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  qp_result *r = NULL;
  if (qp_conn_exec(c, sql, NULL, 0, &r) != QP_OK) fail_msg("%s: %s", sql, qp_conn_errmsg(c));
  const char *v = qp_result_rows(r) == 0 ? "<none>" : qp_result_value(r, 0, 0, NULL);
  snprintf(out, 256, "%s", v ? v : "<null>");
  qp_result_free(r);
  qp_pool_release(c);
  qp_pool_close(p);
  return out;
}

static int setup(void **state) {
  (void)state;
  const char *base = qpt_pg_dsn();
  if (base == NULL) return -1;
  snprintf(g_admin_dsn, sizeof g_admin_dsn, "%s", base);
  snprintf(g_db, sizeof g_db, "qp_advise_pg_%d", (int)getpid());
  char sql[256];
  snprintf(sql, sizeof sql, "CREATE DATABASE %s", g_db);
  if (sql_on(g_admin_dsn, sql) != QP_OK) return -1;
  snprintf(g_dsn, sizeof g_dsn, "host=%s port=%s user=postgres dbname=%s", getenv("PGHOST"),
           getenv("PGPORT"), g_db);
  /* orders: 300k rows; customer_id uniform over 30k values, status skewed
   * (90% done, 8% open, 2% failed), is_paid 95% true; never vacuumed (an
   * autovacuum during the run would set its visibility map, which makes
   * INCLUDE variants pay: test_include has a table of its own) */
  return sql_on(g_dsn,
      "CREATE EXTENSION hypopg;"
      "SELECT setseed(0.42);"
      "CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL,"
      " is_paid bool NOT NULL, created_at timestamptz NOT NULL, email text NOT NULL,"
      " ref_code int NOT NULL, x int NOT NULL, y int NOT NULL, note text NOT NULL)"
      " WITH (autovacuum_enabled = false);"
      "INSERT INTO orders SELECT g, 1 + ((g::bigint * 7919) % 30000)::int,"
      " CASE WHEN g % 50 = 0 THEN 'failed' WHEN g % 50 < 5 THEN 'open'"
      " WHEN g % 1000 = 7 THEN 'lost' ELSE 'done' END,"
      " g % 20 <> 0, timestamptz '2024-01-01' + g * interval '1 minute',"
      " 'User' || g || '@example.com', g % 1000, g % 100, g % 100, md5(g::text) || md5((g+1)::text)"
      " FROM generate_series(1, 300000) g;"
      "CREATE TABLE line_items (order_id int NOT NULL, qty int NOT NULL, price numeric NOT NULL);"
      "INSERT INTO line_items SELECT 1 + (g % 300000), g % 7, g % 100 FROM generate_series(1, 300000) g;"
      "CREATE TABLE li_dup AS SELECT * FROM line_items;"
      "CREATE INDEX li_dup_weird_name ON li_dup (order_id, qty);"
      "CREATE TABLE people (id int, name text COLLATE \"en-x-icu\" NOT NULL);"
      "INSERT INTO people SELECT g, 'name' || g FROM generate_series(1, 200000) g;"
      "CREATE TABLE parent (id int PRIMARY KEY, v int);"
      "INSERT INTO parent SELECT g, g FROM generate_series(1, 20000) g;"
      "CREATE TABLE child (id int, parent_id int REFERENCES parent (id), v int);"
      "INSERT INTO child SELECT g, 1 + g % 19999, g FROM generate_series(1, 200000) g;"
      "CREATE TABLE tiny (id int, v int);"
      "INSERT INTO tiny SELECT g, g % 10 FROM generate_series(1, 500) g;"
      "CREATE TABLE events (id int PRIMARY KEY, account_id int NOT NULL, kind int NOT NULL,"
      " amount int NOT NULL, ref int NOT NULL, payload text NOT NULL);"
      "INSERT INTO events SELECT g, 1 + g % 10000, g % 7, g % 1000, g, repeat(md5(g::text), 6)"
      " FROM generate_series(1, 300000) g;"
      "CREATE TABLE events_nv (LIKE events) WITH (autovacuum_enabled = false);"
      "INSERT INTO events_nv SELECT * FROM events;"
      "CREATE SEQUENCE upd_seq;"
      "ANALYZE;");
}

static int teardown(void **state) {
  (void)state;
  char sql[256];
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", g_db);
  sql_on(g_admin_dsn, sql);
  return 0;
}

typedef struct res {
  qp_status st;
  char err[512];
  qp_advice *a;
} res;

static res advise(const char *sql, bool analyze, bool writes, qp_advise_verify v) {
  res r;
  memset(&r, 0, sizeof r);
  qp_advise_options o;
  qp_advise_options_init(&o);
  o.analyze = analyze;
  o.analyze_writes = writes;
  o.verify = v;
  r.st = qp_advise_dsn(g_dsn, sql, &o, &r.a, r.err, sizeof r.err);
  return r;
}

static void dump(const qp_advice *a) {
  for (size_t i = 0; i < qp_advice_index_count(a); i++) {
    const qp_advice_index *s = qp_advice_index_at(a, i);
    print_message("  index: %s [%s, %s] cost %.0f -> %.0f (%s)\n", s->statement, s->rule,
                  qp_advice_verified_name(s->verified), s->cost_before, s->cost_after, s->reason);
  }
  for (size_t i = 0; i < qp_advice_finding_count(a); i++)
    print_message("  finding: %s: %s; %s\n", qp_advice_finding_at(a, i)->rule,
                  qp_advice_finding_at(a, i)->message, qp_advice_finding_at(a, i)->action);
  for (size_t i = 0; i < qp_advice_note_count(a); i++)
    print_message("  note: %s\n", qp_advice_note_at(a, i));
}

/* The one suggestion of rule `rule`, which must be there. */
static const qp_advice_index *only(const res *r, const char *rule) {
  if (r->st != QP_OK) fail_msg("advise failed: %s", r->err);
  dump(r->a);
  assert_int_equal(qp_advice_index_count(r->a), 1);
  const qp_advice_index *s = qp_advice_index_at(r->a, 0);
  assert_string_equal(s->rule, rule);
  return s;
}

static bool has_note(const qp_advice *a, const char *part) {
  for (size_t i = 0; i < qp_advice_note_count(a); i++)
    if (strstr(qp_advice_note_at(a, i), part) != NULL) return true;
  return false;
}

static void test_seq_scan_filter(void **state) {
  (void)state;
  res r = advise("SELECT * FROM orders WHERE customer_id = 4242", true, false, QP_ADVISE_VERIFY_HYPO);
  const qp_advice_index *s = only(&r, "seq_scan_filter");
  assert_string_equal(s->table, "public.orders");
  assert_string_equal(s->columns, "customer_id");
  assert_int_equal(s->verified, QP_ADVICE_HYPO);
  assert_true(s->cost_after < 0.7 * s->cost_before);
  assert_true(s->size_bytes > 0);
  assert_true(s->ms_before >= 0);
  assert_false(s->cost_unreliable);
  assert_string_equal(s->statement, "CREATE INDEX CONCURRENTLY ON public.orders (customer_id)");
  const qp_advice_summary *sum = qp_advice_summary_get(r.a);
  assert_string_equal(sum->plan_source, "explain analyze");
  assert_true(sum->executed);
  assert_true(sum->hypopg);
  qp_advice_free(r.a);
}

static void test_topn_two_columns(void **state) {
  (void)state;
  /* 2% of rows failed: the two-column index reads the first 10 in order,
   * and beats both one-column ones by more than 10% */
  res r = advise("SELECT id FROM orders WHERE status = 'failed' ORDER BY created_at DESC LIMIT 10",
                 true, false, QP_ADVISE_VERIFY_HYPO);
  const qp_advice_index *s = only(&r, "top_n");
  assert_string_equal(s->columns, "status, created_at DESC");
  assert_int_equal(s->nkeys, 2);
  assert_true(s->cost_after < 0.5 * s->cost_before);
  qp_advice_free(r.a);
  /* 0.1% are lost: a partial index over their rows is as fast and smaller;
   * the two-column index is not 10% cheaper, so the partial one is shown */
  r = advise("SELECT id FROM orders WHERE status = 'lost' ORDER BY created_at DESC LIMIT 10", true,
             false, QP_ADVISE_VERIFY_HYPO);
  s = only(&r, "top_n");
  assert_string_equal(s->columns, "created_at DESC");
  assert_string_equal(s->where, "status = 'lost'::text");
  assert_string_equal(s->statement, "CREATE INDEX CONCURRENTLY ON public.orders (created_at DESC) "
                                    "WHERE status = 'lost'::text");
  assert_true(s->cost_after < 0.5 * s->cost_before);
  qp_advice_free(r.a);
  /* 8% are open: walking created_at backwards finds 10 of them almost as
   * cheaply, so the wider index is not worth its size: the one-column one
   * is shown, and the note says why */
  r = advise("SELECT id FROM orders WHERE status = 'open' ORDER BY created_at DESC LIMIT 10", true,
             false, QP_ADVISE_VERIFY_HYPO);
  s = only(&r, "top_n");
  assert_string_equal(s->columns, "created_at DESC");
  assert_true(has_note(r.a, "the wider index on public.orders (status, created_at DESC) is not "
                            "suggested"));
  qp_advice_free(r.a);
}

static void test_join_key(void **state) {
  (void)state;
  res r = advise("SELECT o.id, l.qty FROM orders o JOIN line_items l ON l.order_id = o.id "
                 "WHERE o.id < 50", true, false, QP_ADVISE_VERIFY_HYPO);
  const qp_advice_index *s = only(&r, "join_key");
  assert_string_equal(s->table, "public.line_items");
  assert_string_equal(s->columns, "order_id");
  assert_true(s->cost_after < 0.8 * s->cost_before);
  qp_advice_free(r.a);
}

static void test_expression(void **state) {
  (void)state;
  res r = advise("SELECT * FROM orders WHERE lower(email) = 'user4242@example.com'", true, false,
                 QP_ADVISE_VERIFY_HYPO);
  const qp_advice_index *s = only(&r, "expression");
  assert_string_equal(s->columns, "(lower(email))");
  assert_true(s->cost_unreliable);
  assert_true(has_note(r.a, "hypothetical cost unreliable"));
  qp_advice_free(r.a);
  /* a real index measures it: no longer unreliable */
  r = advise("SELECT * FROM orders WHERE lower(email) = 'user4242@example.com'", true, false,
             QP_ADVISE_VERIFY_REAL);
  s = only(&r, "expression");
  assert_int_equal(s->verified, QP_ADVICE_REAL);
  assert_false(s->cost_unreliable);
  assert_true(s->ms_after >= 0);
  qp_advice_free(r.a);
  /* and it was rolled back */
  assert_string_equal(val("SELECT count(*) FROM pg_indexes WHERE tablename = 'orders'"), "1");
}

static void test_like_prefix(void **state) {
  (void)state;
  /* the test cluster is initdb --no-locale: the database collation is C,
   * where a plain btree serves LIKE 'prefix%' */
  res r = advise("SELECT * FROM orders WHERE email LIKE 'User4242%'", true, false, QP_ADVISE_VERIFY_HYPO);
  const qp_advice_index *s = only(&r, "like_prefix");
  assert_string_equal(s->columns, "email");
  assert_null(s->opclass);
  assert_true(has_note(r.a, "C collation"));
  qp_advice_free(r.a);
  /* an ICU column: only text_pattern_ops serves it */
  r = advise("SELECT * FROM people WHERE name LIKE 'name4242%'", true, false, QP_ADVISE_VERIFY_HYPO);
  s = only(&r, "like_prefix");
  assert_string_equal(s->columns, "name text_pattern_ops");
  assert_string_equal(s->opclass, "text_pattern_ops");
  assert_int_equal(s->verified, QP_ADVICE_HYPO);
  qp_advice_free(r.a);
}

static void test_fk_trigger(void **state) {
  (void)state;
  const char *before = val("SELECT count(*) FROM parent");
  res r = advise("DELETE FROM parent WHERE id = 20000", true, true, QP_ADVISE_VERIFY_HYPO);
  const qp_advice_index *s = only(&r, "fk_trigger");
  assert_string_equal(s->table, "public.child");
  assert_string_equal(s->columns, "parent_id");
  assert_true(s->ms_before >= 0);
  assert_true(qp_advice_summary_get(r.a)->executed);
  qp_advice_free(r.a);
  assert_string_equal(val("SELECT count(*) FROM parent"), before);
  /* without analyze_writes there is no trigger section: no run, no advice */
  r = advise("DELETE FROM parent WHERE id = 20000", true, false, QP_ADVISE_VERIFY_HYPO);
  assert_int_equal(r.st, QP_OK);
  assert_false(qp_advice_summary_get(r.a)->executed);
  assert_int_equal(qp_advice_index_count(r.a), 0);
  qp_advice_free(r.a);
}

/* INCLUDE columns: events (vacuumed: its visibility map is set) gets an
 * index-only scan when the query reads one narrow column beyond the key;
 * a wide column (payload, ~200 bytes), four more columns, every column, and a table never
 * vacuumed (the planner will not answer from the index alone) get the
 * key-only index and a note. */
static void test_include(void **state) {
  (void)state;
  run("VACUUM (ANALYZE) events");
  res r = advise("SELECT account_id, amount FROM events WHERE account_id = 123", true, false,
                 QP_ADVISE_VERIFY_HYPO);
  const qp_advice_index *s = only(&r, "seq_scan_filter");
  assert_string_equal(s->columns, "account_id");
  assert_non_null(s->include);
  assert_string_equal(s->include, "amount");
  assert_string_equal(s->statement,
                      "CREATE INDEX CONCURRENTLY ON public.events (account_id) INCLUDE (amount)");
  assert_int_equal(s->verified, QP_ADVICE_HYPO);
  assert_true(s->cost_after < 0.7 * s->cost_before);
  assert_non_null(strstr(s->reason, "Index Only Scan"));
  qp_advice_free(r.a);
  /* the same through a generic plan, and as a real index rolled back */
  r = advise("select account_id, amount from events where account_id = ?", false, false,
             QP_ADVISE_VERIFY_HYPO);
  s = only(&r, "seq_scan_filter");
  assert_non_null(s->include);
  assert_string_equal(s->include, "amount");
  qp_advice_free(r.a);
  r = advise("SELECT account_id, amount FROM events WHERE account_id = 123", true, false,
             QP_ADVISE_VERIFY_REAL);
  s = only(&r, "seq_scan_filter");
  assert_int_equal(s->verified, QP_ADVICE_REAL);
  assert_non_null(s->include);
  assert_string_equal(s->include, "amount");
  assert_true(s->ms_after >= 0);
  qp_advice_free(r.a);
  assert_string_equal(val("SELECT count(*) FROM pg_indexes WHERE tablename = 'events'"), "1");
  /* a wide column: not proposed */
  r = advise("SELECT account_id, payload FROM events WHERE account_id = 123", true, false,
             QP_ADVISE_VERIFY_HYPO);
  s = only(&r, "seq_scan_filter");
  assert_null(s->include);
  assert_true(has_note(r.a, "no INCLUDE (payload) for the index on public.events (account_id)"));
  qp_advice_free(r.a);
  /* four more columns, narrow as they are: not proposed; every column (a
   * second copy of the table): not proposed */
  r = advise("SELECT id, account_id, kind, amount, ref FROM events WHERE account_id = 123", true,
             false, QP_ADVISE_VERIFY_HYPO);
  s = only(&r, "seq_scan_filter");
  assert_null(s->include);
  assert_true(has_note(r.a, "reads 4 more columns of it (id, kind, amount, ref), more than 3"));
  qp_advice_free(r.a);
  r = advise("SELECT * FROM events WHERE account_id = 123", true, false, QP_ADVISE_VERIFY_HYPO);
  s = only(&r, "seq_scan_filter");
  assert_null(s->include);
  assert_true(has_note(r.a, "the statement reads every column of it"));
  qp_advice_free(r.a);
  /* never vacuumed: tried, and the planner still visits the heap */
  r = advise("SELECT account_id, amount FROM events_nv WHERE account_id = 123", true, false,
             QP_ADVISE_VERIFY_HYPO);
  s = only(&r, "seq_scan_filter");
  assert_null(s->include);
  assert_string_equal(s->statement, "CREATE INDEX CONCURRENTLY ON public.events_nv (account_id)");
  assert_true(has_note(r.a, "INCLUDE (amount) on public.events_nv (account_id) does not pay"));
  assert_true(has_note(r.a, "0% of its pages are all-visible"));
  qp_advice_free(r.a);
}

static bool has_finding(const qp_advice *a, const char *rule) {
  for (size_t i = 0; i < qp_advice_finding_count(a); i++)
    if (strcmp(qp_advice_finding_at(a, i)->rule, rule) == 0) return true;
  return false;
}

static void test_findings(void **state) {
  (void)state;
  /* x and y are equal on every row: the planner multiplies 1% by 1% */
  res r = advise("SELECT id FROM orders WHERE x = 7 AND y = 7", true, false, QP_ADVISE_VERIFY_NONE);
  assert_int_equal(r.st, QP_OK);
  dump(r.a);
  assert_true(has_finding(r.a, "misestimate"));
  bool stats = false;
  for (size_t i = 0; i < qp_advice_finding_count(r.a); i++)
    stats |= strcmp(qp_advice_finding_at(r.a, i)->rule, "misestimate") == 0 &&
             strstr(qp_advice_finding_at(r.a, i)->action, "CREATE STATISTICS") != NULL;
  assert_true(stats); /* two filtered columns: extended statistics */
  qp_advice_free(r.a);
  /* the same scan under a Limit stops early: its actual rows say nothing */
  r = advise("SELECT id FROM orders WHERE x = 7 AND y = 7 LIMIT 5", true, false,
             QP_ADVISE_VERIFY_NONE);
  assert_int_equal(r.st, QP_OK);
  dump(r.a);
  assert_false(has_finding(r.a, "misestimate"));
  qp_advice_free(r.a);
  r = advise("SELECT * FROM orders ORDER BY note", true, false, QP_ADVISE_VERIFY_NONE);
  assert_int_equal(r.st, QP_OK);
  dump(r.a);
  assert_true(has_finding(r.a, "sort_spill"));
  assert_int_equal(qp_advice_index_count(r.a), 0);
  qp_advice_free(r.a);
}

static void test_findings_vacuum_and_hash(void **state) {
  (void)state;
  /* never vacuumed: the visibility map is empty, an index-only scan visits
   * the heap for every row */
  run("CREATE TABLE vm (id int, a int, pad text) WITH (autovacuum_enabled = false);"
      "INSERT INTO vm SELECT g, g, 'x' FROM generate_series(1, 200000) g;"
      "CREATE INDEX vm_a ON vm (a); ANALYZE vm");
  res r = advise("SELECT a FROM vm WHERE a < 5000", true, false, QP_ADVISE_VERIFY_NONE);
  assert_int_equal(r.st, QP_OK);
  dump(r.a);
  bool vac = false;
  for (size_t i = 0; i < qp_advice_finding_count(r.a); i++)
    vac |= strcmp(qp_advice_finding_at(r.a, i)->rule, "heap_fetches") == 0 &&
           strstr(qp_advice_finding_at(r.a, i)->action, "VACUUM public.vm") != NULL;
  assert_true(vac);
  qp_advice_free(r.a);
  /* a hash join in a session with a small work_mem spills into batches */
  qp_pool *p = open_pool(g_dsn, NULL);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_conn_exec(c, "SET work_mem = '64kB'", NULL, 0, NULL), QP_OK);
  qp_advise_options o;
  qp_advise_options_init(&o);
  o.analyze = true;
  o.verify = QP_ADVISE_VERIFY_NONE;
  qp_advice *a = NULL;
  char err[512];
  assert_int_equal(qp_advise_conn(c, "SELECT count(*) FROM vm x JOIN vm y ON x.id = y.id", &o, &a,
                                  err, sizeof err), QP_OK);
  dump(a);
  assert_true(has_finding(a, "hash_spill"));
  qp_advice_free(a);
  qp_pool_release(c);
  qp_pool_close(p);
  run("DROP TABLE vm");
}

static void test_no_advice(void **state) {
  (void)state;
  /* 95% of rows are paid */
  res r = advise("SELECT * FROM orders WHERE is_paid", true, false, QP_ADVISE_VERIFY_HYPO);
  assert_int_equal(r.st, QP_OK);
  dump(r.a);
  assert_int_equal(qp_advice_index_count(r.a), 0);
  assert_true(has_note(r.a, "does not help: 95% of rows match"));
  qp_advice_free(r.a);
  /* a tiny table */
  r = advise("SELECT * FROM tiny WHERE v = 3", true, false, QP_ADVISE_VERIFY_HYPO);
  assert_int_equal(r.st, QP_OK);
  dump(r.a);
  assert_int_equal(qp_advice_index_count(r.a), 0);
  assert_true(has_note(r.a, "has 500 rows"));
  qp_advice_free(r.a);
  /* join keys that already have an index: the primary key (another name)
   * and the prefix of a wider index */
  r = advise("SELECT sum(l.price) FROM orders o JOIN li_dup l ON l.order_id = o.id", false, false,
             QP_ADVISE_VERIFY_HYPO);
  assert_int_equal(r.st, QP_OK);
  dump(r.a);
  assert_int_equal(qp_advice_index_count(r.a), 0);
  assert_true(has_note(r.a, "li_dup_weird_name already has it (as the prefix of a wider index)"));
  assert_true(has_note(r.a, "orders_pkey already has it"));
  qp_advice_free(r.a);
}

static void test_generic_plan(void **state) {
  (void)state;
  res r = advise("select * from orders where customer_id = ?", true, false,
                 QP_ADVISE_VERIFY_HYPO);
  if (r.st != QP_OK) fail_msg("%s", r.err);
  dump(r.a);
  assert_string_equal(qp_advice_summary_get(r.a)->plan_source, "generic plan");
  assert_false(qp_advice_summary_get(r.a)->executed);
  assert_true(qp_advice_index_count(r.a) >= 1);
  assert_string_equal(qp_advice_index_at(r.a, 0)->columns, "customer_id");
  assert_true(has_note(r.a, "generic plan"));
  qp_advice_free(r.a);
  /* top-N on a generic plan: customer_id = $1 is rare, but "$1" is no
   * partial-index predicate (HypoPG refused it, and the statement's
   * transaction was lost for every later trial: the INCLUDE one) */
  r = advise("select id from orders where customer_id = ? order by created_at desc limit ?", false,
             false, QP_ADVISE_VERIFY_HYPO);
  if (r.st != QP_OK) fail_msg("%s", r.err);
  dump(r.a);
  assert_true(qp_advice_index_count(r.a) >= 1);
  for (size_t i = 0; i < qp_advice_index_count(r.a); i++)
    assert_null(qp_advice_index_at(r.a, i)->where);
  assert_false(has_note(r.a, "not verified"));
  assert_true(has_note(r.a, "INCLUDE (id) on public.orders"));
  qp_advice_free(r.a);
    /* the prepared statement is gone: the same name can be used again */
  r = advise("select * from orders where customer_id = $1", false, false, QP_ADVISE_VERIFY_HYPO);
  assert_int_equal(r.st, QP_OK);
  qp_advice_free(r.a);
}

static void test_safety_writes(void **state) {
  (void)state;
  const char *upd = "UPDATE orders SET note = 'changed', ref_code = nextval('upd_seq') WHERE customer_id = 77";
  /* without analyze_writes it is only explained: the sequence is untouched */
  res r = advise(upd, true, false, QP_ADVISE_VERIFY_HYPO);
  assert_int_equal(r.st, QP_OK);
  dump(r.a);
  assert_false(qp_advice_summary_get(r.a)->executed);
  assert_string_equal(qp_advice_summary_get(r.a)->plan_source, "explain");
  assert_int_equal(qp_advice_index_count(r.a), 1);
  qp_advice_free(r.a);
  assert_string_equal(val("SELECT is_called FROM upd_seq"), "f");
  /* with it, it runs (the sequence moved: sequences are not transactional)
   * and every row is unchanged */
  r = advise(upd, true, true, QP_ADVISE_VERIFY_HYPO);
  assert_int_equal(r.st, QP_OK);
  assert_true(qp_advice_summary_get(r.a)->executed);
  qp_advice_free(r.a);
  assert_string_equal(val("SELECT is_called FROM upd_seq"), "t");
  assert_string_equal(val("SELECT count(*) FROM orders WHERE note = 'changed'"), "0");
  assert_string_equal(val("SELECT count(*) FROM orders WHERE ref_code <> id % 1000"), "0");
}

static void test_safety_refused(void **state) {
  (void)state;
  res r = advise("DROP TABLE tiny", true, true, QP_ADVISE_VERIFY_REAL);
  assert_int_equal(r.st, QP_REFUSED);
  assert_null(r.a);
  assert_non_null(strstr(r.err, "DDL"));
  assert_string_equal(val("SELECT count(*) FROM tiny"), "500");
  r = advise("VACUUM tiny", true, true, QP_ADVISE_VERIFY_HYPO);
  assert_int_equal(r.st, QP_REFUSED);
  r = advise("SET work_mem = '1GB'", true, true, QP_ADVISE_VERIFY_HYPO);
  assert_int_equal(r.st, QP_REFUSED);
  r = advise("COMMIT", true, true, QP_ADVISE_VERIFY_HYPO);
  assert_int_equal(r.st, QP_REFUSED);
  r = advise("SELECT 1; DELETE FROM tiny", true, true, QP_ADVISE_VERIFY_HYPO);
  assert_int_equal(r.st, QP_REFUSED);
  assert_string_equal(val("SELECT count(*) FROM tiny"), "500");
  /* pg_sleep is stopped by the statement timeout, and said so */
  qp_advise_options o;
  qp_advise_options_init(&o);
  o.analyze = true;
  o.statement_timeout_ms = 200;
  qp_advice *a = NULL;
  char err[512];
  assert_int_equal(qp_advise_dsn(g_dsn, "SELECT pg_sleep(30)", &o, &a, err, sizeof err), QP_TIMEOUT);
  assert_null(a);
  assert_non_null(strstr(err, "statement_timeout (200 ms)"));
  /* bad input */
  r = advise("SELEC * FROM orders", true, false, QP_ADVISE_VERIFY_HYPO);
  assert_int_equal(r.st, QP_REFUSED); /* the classifier cannot place it */
  r = advise("SELECT * FROM orders WHERE", true, false, QP_ADVISE_VERIFY_HYPO);
  assert_int_equal(r.st, QP_QUERY);
  assert_non_null(strstr(r.err, "42601"));
  r = advise("SELECT * FROM no_such_table WHERE a = 1", true, false, QP_ADVISE_VERIFY_HYPO);
  assert_int_equal(r.st, QP_QUERY);
  assert_non_null(strstr(r.err, "42P01"));
  char dsn[600];
  snprintf(dsn, sizeof dsn, "postgresql://postgres:s3cret-pw@127.0.0.1:1/nodb");
  assert_int_equal(qp_advise_dsn(dsn, "SELECT 1", NULL, &a, err, sizeof err), QP_UNAVAILABLE);
  assert_null(strstr(err, "s3cret-pw"));
}

static void test_not_recorded(void **state) {
  (void)state;
  qp_profile *prof = NULL;
  char err[256];
  assert_int_equal(qp_profile_new(&prof, NULL, err, sizeof err), QP_OK);
  qp_pool *p = open_pool(g_dsn, prof);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  qp_advise_options o;
  qp_advise_options_init(&o);
  o.analyze = true;
  qp_advice *a = NULL;
  assert_int_equal(qp_advise_conn(c, "SELECT * FROM orders WHERE customer_id = 99", &o, &a, err,
                                  sizeof err), QP_OK);
  assert_int_equal(qp_advice_index_count(a), 1);
  qp_advice_free(a);
  assert_int_equal(qp_profile_recorded(prof), 0);
  /* inside the user's transaction: refused, the transaction untouched */
  assert_int_equal(qp_conn_exec(c, "BEGIN", NULL, 0, NULL), QP_OK);
  assert_int_equal(qp_advise_conn(c, "SELECT 1", &o, &a, err, sizeof err), QP_STATE);
  assert_int_equal(qp_conn_txn_status(c), QP_TXN_INTRANS);
  assert_int_equal(qp_conn_exec(c, "ROLLBACK", NULL, 0, NULL), QP_OK);
  qp_pool_release(c);
  qp_pool_close(p);
  qp_profile_free(prof);
  /* options without a size are refused */
  qp_advise_options bad;
  memset(&bad, 0, sizeof bad);
  assert_int_equal(qp_advise_dsn(g_dsn, "SELECT 1", &bad, &a, err, sizeof err), QP_INVALID);
}

static void test_catalog_notes(void **state) {
  (void)state;
  run("CREATE INDEX orders_ref_only ON orders (ref_code); "
      "CREATE INDEX orders_ref_wide ON orders (ref_code, x)");
  res r = advise("SELECT * FROM orders WHERE customer_id = 4242", false, false, QP_ADVISE_VERIFY_HYPO);
  const qp_advice_index *s = only(&r, "seq_scan_filter");
  assert_string_equal(s->columns, "customer_id");
  assert_true(has_note(r.a, "consider dropping orders_ref_only on public.orders: its keys are a "
                            "prefix of orders_ref_wide"));
  assert_true(has_note(r.a, "consider dropping orders_ref_wide on public.orders: not scanned"));
  assert_false(has_note(r.a, "consider dropping orders_pkey"));
  qp_advice_free(r.a);
  run("DROP INDEX orders_ref_only; DROP INDEX orders_ref_wide");
}

/* A table with more rows written than read since the statistics reset:
 * the suggestion carries a write_warning (the index costs every write). */
static void test_write_warning(void **state) {
  (void)state;
  run("CREATE TABLE wr (id int, a int, pad text);"
      "INSERT INTO wr SELECT g, g % 5000, 'x' FROM generate_series(1, 60000) g;"
      "UPDATE wr SET pad = 'y' WHERE id <= 30000; ANALYZE wr");
  /* the writers' statistics reach pg_stat_user_tables when their session
   * flushes them (at its end, here): wait for them */
  for (int i = 0; i < 100 && strcmp(val("SELECT n_tup_ins + n_tup_upd FROM pg_stat_user_tables "
                                        "WHERE relname = 'wr'"), "90000") != 0; i++)
    usleep(100 * 1000);
  assert_string_equal(val("SELECT n_tup_ins + n_tup_upd FROM pg_stat_user_tables WHERE relname = 'wr'"),
                      "90000");
  res r = advise("SELECT * FROM wr WHERE a = 42", false, false, QP_ADVISE_VERIFY_HYPO);
  const qp_advice_index *s = only(&r, "seq_scan_filter");
  assert_int_equal(s->table_writes, 90000);
  assert_true(s->table_reads >= 0 && s->table_reads < 90000);
  assert_non_null(s->write_warning);
  assert_non_null(strstr(s->write_warning, "public.wr is mostly written: 90000 rows written"));
  qp_advice_free(r.a);
  /* orders is read far more than it is written: no warning */
  r = advise("SELECT * FROM orders WHERE customer_id = 4242", false, false, QP_ADVISE_VERIFY_HYPO);
  s = only(&r, "seq_scan_filter");
  assert_null(s->write_warning);
  qp_advice_free(r.a);
  run("DROP TABLE wr");
}

/* A lock another session holds: lock_timeout stops the advisor's
 * statement (even a plain EXPLAIN needs the table's ACCESS SHARE lock),
 * reported as QP_TIMEOUT naming it; the holder is not disturbed. */
static void test_lock_timeout(void **state) {
  (void)state;
  qp_pool *p = open_pool(g_dsn, NULL);
  qp_conn *holder;
  assert_int_equal(qp_pool_acquire(p, &holder), QP_OK);
  assert_int_equal(qp_conn_exec_script(holder, "BEGIN; LOCK TABLE tiny IN ACCESS EXCLUSIVE MODE"),
                   QP_OK);
  qp_advise_options o;
  qp_advise_options_init(&o);
  o.lock_timeout_ms = 200;
  qp_advice *a = NULL;
  char err[512];
  assert_int_equal(qp_advise_dsn(g_dsn, "SELECT * FROM tiny WHERE v = 3", &o, &a, err, sizeof err),
                   QP_TIMEOUT);
  assert_null(a);
  print_message("  %s\n", err);
  assert_non_null(strstr(err, "lock_timeout (200 ms)"));
  assert_int_equal(qp_conn_txn_status(holder), QP_TXN_INTRANS);
  assert_int_equal(qp_conn_exec(holder, "ROLLBACK", NULL, 0, NULL), QP_OK);
  qp_pool_release(holder);
  qp_pool_close(p);
  /* the lock gone, the same advice goes through */
  assert_int_equal(qp_advise_dsn(g_dsn, "SELECT * FROM tiny WHERE v = 3", &o, &a, err, sizeof err),
                   QP_OK);
  qp_advice_free(a);
}

/* Every allocation of the advisor fails in turn: each run ends with the
 * advice or QP_NOMEM and a message, nothing leaks, the session is usable. */
static void test_out_of_memory(void **state) {
  (void)state;
  qp_pool *p = open_pool(g_dsn, NULL);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  int failed = 0;
  for (long n = 1; n < 2000; n++) {
    qpt_failalloc fa = {.fail_at = n};
    qp_hooks h = qpt_failalloc_hooks(&fa);
    qp_advise_options o;
    qp_advise_options_init(&o);
    o.hooks = &h;
    o.analyze = true;
    qp_advice *a = NULL;
    char err[512];
    qp_status st = qp_advise_conn(c, "SELECT * FROM orders WHERE customer_id = 4242", &o, &a, err,
                                  sizeof err);
    if (st == QP_OK) {
      assert_int_equal(qp_advice_index_count(a), 1);
    } else {
      assert_int_equal(st, QP_NOMEM);
      assert_null(a);
      assert_non_null(strstr(err, "out of memory"));
      failed++;
    }
    qp_advice_free(a);
    assert_int_equal(fa.live, 0);
    assert_int_equal(qp_conn_txn_status(c), QP_TXN_IDLE);
    if (fa.count < n) break; /* every allocation of the path has failed once */
  }
  print_message("allocations failed in turn: %d\n", failed);
  assert_true(failed > 10);
  qp_pool_release(c);
  qp_pool_close(p);
}

/* Last: without HypoPG the advice is unverified. */
static void test_unverified(void **state) {
  (void)state;
  run("DROP EXTENSION hypopg");
  res r = advise("SELECT * FROM orders WHERE customer_id = 4242", false, false, QP_ADVISE_VERIFY_HYPO);
  const qp_advice_index *s = only(&r, "seq_scan_filter");
  assert_int_equal(s->verified, QP_ADVICE_UNVERIFIED);
  assert_false(qp_advice_summary_get(r.a)->hypopg);
  assert_true(has_note(r.a, "unverified"));
  qp_advice_free(r.a);
  run("CREATE EXTENSION hypopg");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_seq_scan_filter), cmocka_unit_test(test_topn_two_columns),
      cmocka_unit_test(test_join_key),        cmocka_unit_test(test_expression),
      cmocka_unit_test(test_like_prefix),     cmocka_unit_test(test_fk_trigger),
      cmocka_unit_test(test_include),
      cmocka_unit_test(test_findings),        cmocka_unit_test(test_findings_vacuum_and_hash),
      cmocka_unit_test(test_no_advice),
      cmocka_unit_test(test_generic_plan),    cmocka_unit_test(test_safety_writes),
      cmocka_unit_test(test_safety_refused),  cmocka_unit_test(test_not_recorded),
      cmocka_unit_test(test_catalog_notes),   cmocka_unit_test(test_write_warning),
      cmocka_unit_test(test_lock_timeout),    cmocka_unit_test(test_out_of_memory),
      cmocka_unit_test(test_unverified),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
