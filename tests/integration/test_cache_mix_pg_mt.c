/*
 * The result cache's randomized consistency test on the real PostgreSQL
 * fixture, in a database of its own (tests/support/cachemix.h says how "the
 * same point" is made exact): 8 threads, at least 100,000 statements
 * (QP_MIX_OPS overrides), over three pools on one cache (the superuser and
 * two roles with different grants), mixing cached reads with writes inside
 * and outside transactions, rollbacks, savepoints, a trigger that writes
 * another table, cascading foreign keys, a view over two tables, TRUNCATE,
 * DDL, REVOKE/GRANT, two schemas with the same table name under changing
 * search_path, SET ROLE, and row-level security. Every cached read equals
 * the uncached read at the same point (0 stale), and no row belongs to
 * another role (the owner column under RLS) or schema (each schema's rows
 * carry its tag) (0 foreign). Then the lock-free race of fills with
 * writes, and single flight: concurrent misses on one key run it once.
 */
#include "pgtest.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cachemix.h"

#define NITEMS 30
#define NACCT 30
#define NPARENTS 10
#define NPOOLS 3

static qpt_pgdb g_db;
static char g_dsn[NPOOLS][512];
static char g_role[NPOOLS][64]; /* [0] postgres, [1] [2] the two roles */
/* Statements that flush the server (TRUNCATE, ALTER, REVOKE, GRANT), and
 * writes whose other tables only the reach knows (the trigger, the
 * cascades): the mix checks that only the first flush. */
static _Atomic uint64_t g_flush_stmts, g_reach_writes;

static qp_pool *open_pool(const char *dsn, int max, qp_cache *cache) {
  qp_pool_options o;
  qp_pool_options_init(&o);
  o.acquire_timeout_ms = 60000;
  /* the steps set search_path and the role themselves: no DISCARD ALL
   * (and no prepared statements lost) on every release */
  o.reset = QP_RESET_NEVER;
  return qpt_pool_open(dsn, max, cache, &o);
}

static qp_cache *open_cache(void) {
  qp_cache_options o;
  qp_cache_options_init(&o);
  const char *pat[] = {CM_CACHE_PATTERN};
  o.statement_patterns = pat;
  o.nstatement_patterns = 1;
  o.max_bytes = (size_t)4 << 20;
  qp_cache *c = NULL;
  char err[256];
  if (qp_cache_open(&c, &o, err, sizeof err) != QP_OK) fail_msg("cache: %s", err);
  return c;
}

static int setup(void **state) {
  (void)state;
  int pid = (int)getpid();
  if (qpt_pgdb_create(&g_db, "qp_cache_mix_%d", pid) != 0) return -1;
  snprintf(g_role[0], sizeof g_role[0], "postgres");
  snprintf(g_role[1], sizeof g_role[1], "qp_mix_a_%d", pid);
  snprintf(g_role[2], sizeof g_role[2], "qp_mix_b_%d", pid);
  char sql[8192];
  snprintf(sql, sizeof sql, "CREATE ROLE %s LOGIN; CREATE ROLE %s LOGIN", g_role[1], g_role[2]);
  if (qpt_pg_try(qpt_pg_dsn(), sql) != 0) return -1;
  for (int i = 0; i < NPOOLS; i++)
    qpt_pg_dsn_as(g_dsn[i], sizeof g_dsn[i], g_role[i], g_db.name);
  const char *a = g_role[1], *b = g_role[2];
  int n = snprintf(sql, sizeof sql,
      "CREATE SCHEMA s1; CREATE SCHEMA s2;"
      "CREATE TABLE s1.item(id int PRIMARY KEY, v int NOT NULL, tag text NOT NULL);"
      "CREATE TABLE s2.item(id int PRIMARY KEY, v int NOT NULL, tag text NOT NULL);"
      "INSERT INTO s1.item SELECT i, i * 10, 's1' FROM generate_series(1, %d) i;"
      "INSERT INTO s2.item SELECT i, i * 20, 's2' FROM generate_series(1, %d) i;"
      "GRANT USAGE ON SCHEMA s1, s2 TO %s; GRANT USAGE ON SCHEMA s2 TO %s;"
      "GRANT SELECT, UPDATE ON s1.item TO %s; GRANT SELECT, UPDATE ON s2.item TO %s, %s;"
      "CREATE TABLE public.acct(id int PRIMARY KEY, owner name NOT NULL, bal int NOT NULL);"
      "INSERT INTO acct SELECT i, CASE i %% 3 WHEN 0 THEN 'postgres' WHEN 1 THEN '%s' ELSE '%s' END,"
      "  i FROM generate_series(1, %d) i;"
      "ALTER TABLE acct ENABLE ROW LEVEL SECURITY;"
      "CREATE POLICY own ON acct USING (owner = current_user) WITH CHECK (owner = current_user);"
      "GRANT SELECT, UPDATE ON acct TO %s, %s;"
      "CREATE TABLE public.audit(id bigserial PRIMARY KEY, acct_id int, delta int, who name);"
      "GRANT SELECT ON audit TO %s, %s;"
      "CREATE FUNCTION public.acct_audit() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
      "  SET search_path = public AS $$ BEGIN INSERT INTO public.audit(acct_id, delta, who) "
      "  VALUES (NEW.id, NEW.bal - OLD.bal, current_user); RETURN NEW; END $$;"
      "CREATE TRIGGER acct_au AFTER UPDATE ON acct FOR EACH ROW EXECUTE FUNCTION acct_audit();"
      "CREATE TABLE public.parent(id int PRIMARY KEY, name text NOT NULL);"
      "CREATE TABLE public.child(id serial PRIMARY KEY, pid int NOT NULL REFERENCES parent(id) "
      "  ON DELETE CASCADE ON UPDATE CASCADE, x int NOT NULL);"
      "INSERT INTO parent SELECT i, 'p' || i FROM generate_series(1, %d) i;"
      "INSERT INTO child(pid, x) SELECT id, id FROM parent UNION ALL SELECT id, id * 2 FROM parent;"
      "CREATE VIEW public.v_pc AS SELECT p.id AS pid, p.name, c.id AS cid, c.x "
      "  FROM parent p JOIN child c ON c.pid = p.id;"
      "GRANT SELECT, INSERT, UPDATE, DELETE ON parent, child TO %s, %s;"
      "GRANT USAGE ON SEQUENCE child_id_seq TO %s, %s; GRANT SELECT ON v_pc TO %s, %s;"
      "CREATE TABLE public.ddl_t(id int PRIMARY KEY, a int NOT NULL);"
      "INSERT INTO ddl_t SELECT i, i FROM generate_series(1, 8) i;"
      "GRANT SELECT ON ddl_t TO %s, %s;"
      "CREATE TABLE public.ctr(id int PRIMARY KEY, n bigint NOT NULL);"
      "INSERT INTO ctr SELECT i, 0 FROM generate_series(0, 7) i;"
      "CREATE TABLE public.big(x int); INSERT INTO big SELECT generate_series(1, 1500);"
      "ANALYZE",
      NITEMS, NITEMS, a, b, a, a, b, a, b, NACCT, a, b, a, b, NPARENTS, a, b, a, b, a, b, a, b);
  if (n <= 0 || (size_t)n >= sizeof sql) return -1;
  return qpt_pg_try(g_dsn[0], sql);
}

static int teardown(void **state) {
  (void)state;
  char sql[512];
  qpt_pgdb_drop(&g_db);
  snprintf(sql, sizeof sql, "DROP ROLE IF EXISTS %s; DROP ROLE IF EXISTS %s", g_role[1], g_role[2]);
  qpt_pg_try(qpt_pg_dsn(), sql);
  return 0;
}

/* ---- the steps -------------------------------------------------------------------- */

typedef struct world {
  qp_cache *cache;
  qp_pool *pool[NPOOLS];
} world;

/* Who reads: the role whose rows RLS lets through (NULL: a superuser, who
 * sees all) and the schema unqualified "item" names (NULL: none). */
typedef struct who {
  const char *role, *schema;
} who;

static bool row_check(const qp_result *r, size_t row, const void *ctx) {
  const who *w = ctx;
  for (size_t c = 0; c < qp_result_cols(r); c++) {
    const char *name = qp_result_colname(r, c), *v = qp_result_value(r, row, c, NULL);
    if (strcmp(name, "owner") == 0 && w->role != NULL && (v == NULL || strcmp(v, w->role) != 0))
      return false;
    if (strcmp(name, "tag") == 0 && v != NULL && v[0] == '?') return false;
  }
  return true;
}

/* The tag check of a read of one schema's item: every row's tag is it. */
typedef struct tagctx {
  who w;
  const char *tag;
} tagctx;

static bool tag_check(const qp_result *r, size_t row, const void *ctx) {
  const tagctx *t = ctx;
  if (!row_check(r, row, &t->w)) return false;
  if (t->tag == NULL) return true;
  for (size_t c = 0; c < qp_result_cols(r); c++)
    if (strcmp(qp_result_colname(r, c), "tag") == 0) {
      const char *v = qp_result_value(r, row, c, NULL);
      return v != NULL && strcmp(v, t->tag) == 0;
    }
  return true;
}

typedef struct rd {
  const char *sql;
  int item; /* 0: none; 1: unqualified item (search_path); 2: s1.item; 3: s2.item */
  bool safe; /* granted to every role: may run inside a transaction */
} rd;

static const rd g_reads[] = {
    {"SELECT id, v, tag FROM item ORDER BY id", 1, false},
    {"SELECT v, tag FROM item WHERE id = $1", 1, false},
    {"SELECT id, v, tag FROM s1.item WHERE id <= $1 ORDER BY id", 2, false},
    {"SELECT id, v, tag FROM s2.item ORDER BY id", 3, true},
    {"SELECT id, owner, bal FROM public.acct ORDER BY id", 0, true},
    {"SELECT count(*) AS n, sum(bal) AS s FROM public.acct", 0, true},
    {"SELECT owner, bal FROM public.acct WHERE id = $1", 0, true},
    {"SELECT count(*) AS n, max(id) AS m, sum(delta) AS d FROM public.audit", 0, true},
    {"SELECT pid, name, cid, x FROM public.v_pc ORDER BY cid", 0, true},
    {"SELECT id, x FROM public.child WHERE pid = $1 ORDER BY id", 0, true},
    /* not in transactions: after ALTER TABLE a prepared SELECT * fails
     * there with 0A000 (its uncached twin was prepared earlier) */
    {"SELECT * FROM public.ddl_t ORDER BY id", 0, false},
    {"SELECT p.id, count(c.id) AS k FROM public.parent p LEFT JOIN public.child c "
     "ON c.pid = p.id GROUP BY p.id ORDER BY p.id", 0, true},
};
#define NREADS (sizeof g_reads / sizeof g_reads[0])

static void a_read(cm_thr *t, qp_conn *c, const who *w, bool in_txn) {
  const rd *q;
  do q = &g_reads[cm_rand(t, NREADS)];
  while (in_txn && !q->safe);
  qp_param p = qp_param_int((int64_t)cm_rand(t, 4) + 1);
  tagctx tc = {*w, q->item == 1 ? w->schema : q->item == 2 ? "s1" : q->item == 3 ? "s2" : NULL};
  cm_read(t, c, q->sql, &p, strchr(q->sql, '$') ? 1 : 0, tag_check, &tc);
}

static void xexec(cm_thr *t, qp_conn *c, const char *sql) {
  if (cm_exec(t, c, sql, NULL, 0) != QP_OK) cm_error(t, sql, c);
}

/* A write the lease's role may do (so that a transaction never aborts). */
static void a_write(cm_thr *t, qp_conn *c, int role, const who *w) {
  char sql[256];
  int k = (int)cm_rand(t, NITEMS) + 1, pk = (int)cm_rand(t, NPARENTS) + 1;
  switch (cm_rand(t, role == 0 ? 10 : 6)) {
  case 0:
    snprintf(sql, sizeof sql, "UPDATE %s.item SET v = v + 1 WHERE id = %d",
             role == 2 || cm_rand(t, 2) ? "s2" : "s1", k);
    xexec(t, c, sql);
    break;
  case 1: /* through search_path */
    if (w->schema == NULL || (role == 2 && strcmp(w->schema, "s1") == 0)) return;
    snprintf(sql, sizeof sql, "UPDATE item SET v = v + 1 WHERE id = %d", k);
    xexec(t, c, sql);
    break;
  case 2: /* RLS: only the role's own rows move; the trigger writes audit */
    atomic_fetch_add(&g_reach_writes, 1);
    snprintf(sql, sizeof sql, "UPDATE public.acct SET bal = bal + 1 WHERE id %% 4 = %d", k % 4);
    xexec(t, c, sql);
    break;
  case 3: /* the cascade removes the children; put them back */
    atomic_fetch_add(&g_reach_writes, 1);
    snprintf(sql, sizeof sql, "DELETE FROM public.parent WHERE id = %d", pk);
    xexec(t, c, sql);
    snprintf(sql, sizeof sql, "INSERT INTO public.parent VALUES (%d, 'p%d')", pk, pk);
    xexec(t, c, sql);
    snprintf(sql, sizeof sql, "INSERT INTO public.child(pid, x) VALUES (%d, %d)", pk, k);
    xexec(t, c, sql);
    break;
  case 4: /* ON UPDATE CASCADE moves the children along, and back */
    atomic_fetch_add(&g_reach_writes, 1);
    snprintf(sql, sizeof sql, "UPDATE public.parent SET id = id + 1000 WHERE id = %d", pk);
    xexec(t, c, sql);
    cm_read(t, c, "SELECT pid, x FROM public.child WHERE pid > 1000 ORDER BY id", NULL, 0, NULL,
            NULL);
    snprintf(sql, sizeof sql, "UPDATE public.parent SET id = id - 1000 WHERE id = %d", pk + 1000);
    xexec(t, c, sql);
    break;
  case 5:
    snprintf(sql, sizeof sql, "UPDATE public.child SET x = x + 1 WHERE pid = %d", pk);
    xexec(t, c, sql);
    break;
  case 6:
    atomic_fetch_add(&g_flush_stmts, 1);
    xexec(t, c, "TRUNCATE public.audit");
    break;
  case 7: { /* the column's state asked first: transactions undo DDL */
    qp_result *r = NULL;
    int64_t n = 0;
    if (qp_conn_exec(c, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.ddl_t'::regclass "
                        "AND attname = 'extra' AND NOT attisdropped", NULL, 0, &r) != QP_OK ||
        qp_result_int64(r, 0, 0, &n) != QP_OK)
      cm_error(t, "pg_attribute", c);
    qp_result_free(r);
    atomic_fetch_add(&g_flush_stmts, 1);
    xexec(t, c, n ? "ALTER TABLE public.ddl_t DROP COLUMN extra"
                  : "ALTER TABLE public.ddl_t ADD COLUMN extra int DEFAULT 7");
    break;
  }
  case 8:
    snprintf(sql, sizeof sql, "UPDATE public.ddl_t SET a = a + 1 WHERE id = %d", pk % 8 + 1);
    xexec(t, c, sql);
    break;
  default:
    snprintf(sql, sizeof sql, "INSERT INTO public.audit(acct_id, delta, who) VALUES (%d, 1, 'x')",
             k);
    xexec(t, c, sql);
    break;
  }
}

static const char *const g_paths[] = {"s1, public", "s2, public", "s2, s1, public", "public"};
static const char *const g_path_schema[] = {"s1", "s2", "s2", NULL};

/* Sets a random search_path (and on the superuser's lease a role, or none:
 * the pool does not reset sessions here), as one script; fills *w. */
static void a_session(cm_thr *t, qp_conn *c, int role, who *w) {
  uint32_t p = cm_rand(t, 4);
  char sql[200];
  w->schema = g_path_schema[p];
  w->role = role == 0 ? NULL : g_role[role];
  int as = role == 0 && cm_rand(t, 3) == 0 ? (int)cm_rand(t, 2) + 1 : 0;
  if (as) w->role = g_role[as];
  if (role == 0)
    snprintf(sql, sizeof sql, "SET search_path = %s; %s%s", g_paths[p], as ? "SET ROLE " : "RESET ROLE",
             as ? g_role[as] : "");
  else
    snprintf(sql, sizeof sql, "SET search_path = %s", g_paths[p]);
  if (role == 0) {
    cm_count(t);
    if (qp_conn_exec_script(c, sql) != QP_OK) cm_error(t, sql, c);
  } else {
    xexec(t, c, sql);
  }
  /* what a role cannot see through search_path */
  if (w->role == g_role[2] && p == 0) w->schema = NULL;
  if (w->role == g_role[2] && p == 2) w->schema = "s2";
}

/* REVOKE and GRANT on the superuser's lease; the role's reads in between
 * fail exactly as the database says (never served from its earlier fill). */
static void a_grants(cm_thr *t, qp_conn *c, world *wd) {
  char sql[200];
  atomic_fetch_add(&g_flush_stmts, 2);
  snprintf(sql, sizeof sql, "REVOKE SELECT ON s2.item FROM %s", g_role[2]);
  xexec(t, c, sql);
  qp_conn *r = NULL;
  if (qp_pool_acquire(wd->pool[2], &r) != QP_OK) {
    cm_error(t, "acquire", NULL);
  } else {
    who w = {g_role[2], "s2"};
    xexec(t, r, "SET search_path = s2, public");
    for (int i = 0; i < 2; i++) a_read(t, r, &w, false);
    qp_param p = qp_param_int(3);
    tagctx tc = {w, "s2"};
    cm_read(t, r, "SELECT v, tag FROM item WHERE id = $1", &p, 1, tag_check, &tc);
    qp_pool_release(r);
  }
  snprintf(sql, sizeof sql, "GRANT SELECT ON s2.item TO %s", g_role[2]);
  xexec(t, c, sql);
}

/* The role a lease acts as now: 0 the superuser, 1, 2 the roles. */
static int role_of(const who *w) { return w->role == NULL ? 0 : w->role == g_role[1] ? 1 : 2; }

static void step(cm_thr *t) {
  world *wd = cm_ud(t);
  int role = (int)cm_rand(t, NPOOLS);
  qp_conn *c = NULL;
  if (qp_pool_acquire(wd->pool[role], &c) != QP_OK) {
    cm_error(t, "acquire", NULL);
    return;
  }
  who w;
  /* writing steps hold the lock alone: kept to one step in ten, so that
   * the run stays short */
  uint32_t kind = cm_rand(t, 40);
  if (kind < 36) { /* reads only, sometimes in a read-committed transaction */
    cm_shared(t);
    a_session(t, c, role, &w);
    bool txn = cm_rand(t, 4) == 0;
    if (txn) xexec(t, c, "BEGIN");
    for (uint32_t i = 0, n = cm_rand(t, 12) + 1; i < n; i++) a_read(t, c, &w, txn);
    if (txn) xexec(t, c, "COMMIT");
  } else if (kind < 38) { /* autocommit writes, reads after them */
    cm_exclusive(t);
    a_session(t, c, role, &w);
    if (w.role == NULL && cm_rand(t, 8) == 0) a_grants(t, c, wd);
    a_write(t, c, role_of(&w), &w);
    a_read(t, c, &w, false);
    if (cm_rand(t, 2)) a_write(t, c, role_of(&w), &w);
    a_read(t, c, &w, false);
  } else { /* a transaction: reads before and after writing, a savepoint */
    cm_exclusive(t);
    a_session(t, c, role, &w);
    int wr = role_of(&w);
    xexec(t, c, "BEGIN");
    a_read(t, c, &w, true);
    a_read(t, c, &w, true);
    a_write(t, c, wr, &w);
    a_read(t, c, &w, true);
    if (cm_rand(t, 2)) {
      xexec(t, c, "SAVEPOINT s1");
      a_write(t, c, wr, &w);
      a_read(t, c, &w, true);
      xexec(t, c, cm_rand(t, 2) ? "ROLLBACK TO SAVEPOINT s1" : "RELEASE SAVEPOINT s1");
      a_read(t, c, &w, true);
    }
    xexec(t, c, cm_rand(t, 3) ? "COMMIT" : "ROLLBACK");
    a_read(t, c, &w, false);
  }
  cm_unlock(t);
  qp_pool_release(c);
}

static uint64_t env_ops(void) {
  const char *e = getenv("QP_MIX_OPS");
  return e ? strtoull(e, NULL, 10) : 100000;
}

static void test_mix(void **state) {
  (void)state;
  world w;
  memset(&w, 0, sizeof w);
  w.cache = open_cache();
  for (int i = 0; i < NPOOLS; i++) w.pool[i] = open_pool(g_dsn[i], 8, w.cache);
  cm_config cfg = {.nthreads = 8, .min_ops = env_ops(), .lockfile = NULL, .step = step, .ud = &w};
  cm_totals tot;
  cm_run_all(&cfg, &tot);
  cm_check_mix("pg mix", w.cache, &tot, cfg.min_ops, 10);
  /* The trigger, the cascades, the view and RLS go through the reach: only
   * the statements that must flush do (twice at most each: before it is
   * sent and when it returns, or before and after its COMMIT). Before the
   * reach, every write to acct, parent or child flushed. */
  qp_cache_stats st = QP_CACHE_STATS_INIT;
  assert_int_equal(qp_cache_stats_get(w.cache, &st), QP_OK);
  uint64_t fs = atomic_load(&g_flush_stmts), rw = atomic_load(&g_reach_writes);
  print_message("pg mix: %llu flushes for %llu flushing statements, %llu writes through the reach\n",
                (unsigned long long)st.flushes, (unsigned long long)fs, (unsigned long long)rw);
  assert_true(rw > 0);
  assert_true(st.flushes <= 2 * fs);
  for (int i = 0; i < NPOOLS; i++) qp_pool_close(w.pool[i]);
  qp_cache_close(w.cache);
}

/* Fills racing writes, no lock: a read never returns less than a value
 * whose write returned before the read began. */
static void test_race(void **state) {
  (void)state;
  qp_cache *cache = open_cache();
  qp_pool *p = open_pool(g_dsn[0], 8, cache);
  cm_race_config cfg = {.pool = p, .writers = 3, .readers = 5, .keys = 8,
                        .reads_per_reader = 4000, .writes_per_writer = 1000,
                        .read_sql = "SELECT n FROM ctr WHERE id = $1",
                        .update_sql = "UPDATE ctr SET n = n + 1 WHERE id = $1 RETURNING n"};
  cm_check_race("pg race", cache, &cfg);
  qp_pool_close(p);
  qp_cache_close(cache);
}

/* Single flight: 8 threads miss one key at once; the statement runs once. */
static void test_single_flight(void **state) {
  (void)state;
  qp_cache *cache = open_cache();
  qp_pool *p = open_pool(g_dsn[0], 8, cache);
  cm_check_single_flight(p, cache, "SELECT count(*) FROM big",
                         "SELECT count(*) FROM big a, big b WHERE a.x + b.x > $1", 5,
                         1500 * 1500 - 10);
  qp_pool_close(p);
  qp_cache_close(cache);
}

/* The pool's prepared SELECT * after ALTER TABLE ADD/DROP COLUMN (found by
 * the mix): in autocommit it is prepared again and returns the new columns
 * (PostgreSQL says "cached plan must not change result type", 0A000). */
static void test_select_star_after_ddl(void **state) {
  (void)state;
  qp_pool *p = open_pool(g_dsn[0], 1, NULL);
  qp_conn *c = NULL;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_conn_exec_script(c, "CREATE TABLE star(id int); INSERT INTO star VALUES (1)"),
                   QP_OK);
  for (int round = 0; round < 3; round++) {
    qp_result *r = NULL;
    if (qp_conn_exec(c, "SELECT * FROM star", NULL, 0, &r) != QP_OK)
      fail_msg("round %d: %s", round, qp_conn_errmsg(c));
    assert_int_equal(qp_result_cols(r), round == 1 ? 2 : 1);
    qp_result_free(r);
    assert_int_equal(qp_conn_exec(c, round == 0 ? "ALTER TABLE star ADD COLUMN e int DEFAULT 7"
                                                : "ALTER TABLE star DROP COLUMN IF EXISTS e",
                                  NULL, 0, NULL),
                     QP_OK);
  }
  qp_pool_release(c);
  qp_pool_close(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mix),
      cmocka_unit_test(test_race),
      cmocka_unit_test(test_single_flight),
      cmocka_unit_test(test_select_star_after_ddl),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
