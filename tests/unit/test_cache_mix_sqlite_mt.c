/*
 * The result cache's randomized consistency test on real SQLite files
 * (tests/support/cachemix.h says how "the same point" is made exact):
 * 8 threads, at least 100,000 statements (QP_MIX_OPS overrides), mixing
 * cached reads with writes inside and outside transactions, rollbacks,
 * savepoints, a trigger that writes another table, cascading foreign keys,
 * a view over two tables, DELETE without WHERE (SQLite's truncate), DDL,
 * session PRAGMAs, and two database files with the same tables on one
 * cache, while a second process writes the first file (taking the same
 * lock through flock()). Every cached read equals the uncached read at the
 * same point (0 stale) and holds only rows of its own file (0 foreign: each
 * row carries its file's tag). Then the lock-free race of fills with
 * writes, and single flight: concurrent misses on one key run it once.
 */
#include "testutil.h"

#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cachemix.h"

#define NFILES 2
#define NITEMS 40
#define NPARENTS 12

static char g_dir[256], g_lock[300];
static char g_path[NFILES][300], g_dsn[NFILES][320];
static const char *const g_tag[NFILES] = {"A", "B"};

typedef struct world {
  qp_cache *cache;
  qp_pool *pool[NFILES];
  bool extra[NFILES]; /* ddl_t has the column extra (under the exclusive lock) */
} world;

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

static qp_pool *open_pool(const char *dsn, int max, qp_cache *cache) {
  qp_pool_options o;
  qp_pool_options_init(&o);
  o.dsn = dsn;
  o.max_size = max;
  o.acquire_timeout_ms = 30000;
  o.cache = cache;
  qp_pool *p = NULL;
  char err[256];
  if (qp_pool_open(&p, &o, err, sizeof err) != QP_OK) fail_msg("pool: %s", err);
  return p;
}

static void script(qp_pool *p, const char *sql) {
  qp_conn *c = NULL;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  if (qp_conn_exec_script(c, sql) != QP_OK) fail_msg("%s: %s", sql, qp_conn_errmsg(c));
  qp_pool_release(c);
}

static void make_file(int f) {
  snprintf(g_path[f], sizeof g_path[f], "%s/mix%s.db", g_dir, g_tag[f]);
  snprintf(g_dsn[f], sizeof g_dsn[f], "sqlite://%s", g_path[f]);
  qp_pool *p = open_pool(g_dsn[f], 1, NULL);
  char sql[4096];
  int n = snprintf(sql, sizeof sql,
      "CREATE TABLE item(id INTEGER PRIMARY KEY, v INTEGER NOT NULL, tag TEXT NOT NULL);"
      "CREATE TABLE audit(id INTEGER PRIMARY KEY, item_id INTEGER, v INTEGER, tag TEXT NOT NULL);"
      "CREATE TRIGGER item_au AFTER UPDATE ON item BEGIN "
      "  INSERT INTO audit(item_id, v, tag) VALUES (NEW.id, NEW.v, NEW.tag); END;"
      "CREATE TABLE parent(id INTEGER PRIMARY KEY, name TEXT, tag TEXT NOT NULL);"
      "CREATE TABLE child(id INTEGER PRIMARY KEY, pid INTEGER NOT NULL REFERENCES parent(id) "
      "  ON DELETE CASCADE ON UPDATE CASCADE, x INTEGER, tag TEXT NOT NULL);"
      "CREATE VIEW v_pc AS SELECT p.id AS pid, p.name, c.id AS cid, c.x, c.tag "
      "  FROM parent p JOIN child c ON c.pid = p.id;"
      "CREATE TABLE ddl_t(id INTEGER PRIMARY KEY, a INTEGER, tag TEXT NOT NULL);"
      "CREATE TABLE ctr(id INTEGER PRIMARY KEY, n INTEGER NOT NULL);"
      "CREATE TABLE big(x INTEGER);"
      "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %d) "
      "  INSERT INTO item(id, v, tag) SELECT i, i * 10, '%s' FROM s;"
      "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %d) "
      "  INSERT INTO parent(id, name, tag) SELECT i, 'p' || i, '%s' FROM s;"
      "INSERT INTO child(pid, x, tag) SELECT id, id, tag FROM parent;"
      "INSERT INTO child(pid, x, tag) SELECT id, id * 2, tag FROM parent;"
      "INSERT INTO ddl_t(a, tag) SELECT id, tag FROM parent;"
      "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < 7) "
      "  INSERT INTO ctr SELECT i, 0 FROM s;"
      "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 1500) "
      "  INSERT INTO big SELECT i FROM s;",
      NITEMS, g_tag[f], NPARENTS, g_tag[f]);
  assert_true(n > 0 && (size_t)n < sizeof sql);
  script(p, sql);
  qp_pool_close(p);
}

static int setup(void **state) {
  (void)state;
  const char *d = qpt_tempdir();
  if (d == NULL) return -1;
  snprintf(g_dir, sizeof g_dir, "%s", d);
  snprintf(g_lock, sizeof g_lock, "%s/mix.lock", g_dir);
  for (int f = 0; f < NFILES; f++) make_file(f);
  return 0;
}

/* ---- the second process ---------------------------------------------------- */

/* Writes file A with plain SQLite (no qprof) under the test's lock until the
 * pipe closes: updates (the trigger writes audit), deletes and inserts of
 * children, DELETE FROM audit. */
static void other_process(int stopfd) {
  sqlite3 *db = NULL;
  if (sqlite3_open(g_path[0], &db) != SQLITE_OK) _exit(2);
  sqlite3_busy_timeout(db, 10000);
  sqlite3_exec(db, "PRAGMA foreign_keys=ON", NULL, NULL, NULL);
  int lk = open(g_lock, O_RDWR | O_CREAT, 0600);
  fcntl(stopfd, F_SETFL, O_NONBLOCK);
  unsigned seed = (unsigned)getpid(), writes = 0;
  for (;;) {
    char c;
    if (read(stopfd, &c, 1) == 0) break;
    flock(lk, LOCK_EX);
    char sql[256];
    int k = (int)(rand_r(&seed) % NITEMS) + 1;
    switch (rand_r(&seed) % 4) {
    case 0:
    case 1: snprintf(sql, sizeof sql, "UPDATE item SET v = v + 1000 WHERE id = %d", k); break;
    case 2:
      snprintf(sql, sizeof sql,
               "INSERT INTO child(pid, x, tag) SELECT id, 99, tag FROM parent WHERE id = %d",
               k % NPARENTS + 1);
      break;
    default: snprintf(sql, sizeof sql, "DELETE FROM child WHERE x = 99"); break;
    }
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    flock(lk, LOCK_UN);
    if (rc != SQLITE_OK) _exit(3);
    writes++;
    usleep(4000);
  }
  sqlite3_close(db);
  _exit(writes > 0 ? 0 : 4);
}

/* ---- the steps ------------------------------------------------------------------ */

static bool tag_check(const qp_result *r, size_t row, const void *ctx) {
  for (size_t c = 0; c < qp_result_cols(r); c++)
    if (strcmp(qp_result_colname(r, c), "tag") == 0) {
      const char *v = qp_result_value(r, row, c, NULL);
      return v == NULL || strcmp(v, ctx) == 0; /* NULL: an aggregate over no rows */
    }
  return true;
}

static const char *const g_reads[] = {
    "SELECT id, v, tag FROM item ORDER BY id",
    "SELECT v, tag FROM item WHERE id = ?",
    "SELECT count(*) AS n, sum(v) AS s FROM item",
    "SELECT count(*) AS n, max(id) AS m, min(tag) AS tag FROM audit",
    "SELECT pid, name, cid, x, tag FROM v_pc ORDER BY cid",
    "SELECT id, x, tag FROM child WHERE pid = ? ORDER BY id",
    "SELECT * FROM ddl_t ORDER BY id",
    "SELECT count(*) AS n FROM parent",
    ("SELECT p.id, p.tag, count(c.id) AS k FROM parent p LEFT JOIN child c ON c.pid = p.id "
     "GROUP BY p.id ORDER BY p.id"),
    "WITH t AS (SELECT v FROM item WHERE id <= ?) SELECT sum(v) AS s FROM t",
};
#define NREADS (sizeof g_reads / sizeof g_reads[0])

static void a_read(cm_thr *t, qp_conn *c, int f) {
  uint32_t q = cm_rand(t, NREADS);
  /* a small parameter range: the same keys come back, so reads hit */
  qp_param p = qp_param_int((int64_t)cm_rand(t, 6) + 1);
  bool has_param = strchr(g_reads[q], '?') != NULL;
  cm_read(t, c, g_reads[q], &p, has_param ? 1 : 0, tag_check, g_tag[f]);
}

/* Whether ddl_t has the column extra now (after a rollback undid DDL). */
static void ddl_state(cm_thr *t, qp_conn *c, int f, world *w) {
  qp_result *r = NULL;
  int64_t n = 0;
  if (qp_conn_exec(c, "SELECT count(*) FROM pragma_table_info('ddl_t') WHERE name = 'extra'",
                   NULL, 0, &r) != QP_OK ||
      qp_result_int64(r, 0, 0, &n) != QP_OK)
    cm_error(t, "pragma_table_info", c);
  qp_result_free(r);
  w->extra[f] = n > 0;
}

/* A compared read of the moved parent's children between the two moves. */
static void a_read_mid(cm_thr *t, qp_conn *c) {
  cm_read(t, c, "SELECT pid, x, tag FROM child WHERE pid > 1000 ORDER BY id", NULL, 0, NULL,
          NULL);
}

static void a_write(cm_thr *t, qp_conn *c, int f, world *w) {
  char sql[256];
  int k = (int)cm_rand(t, NITEMS) + 1, pk = (int)cm_rand(t, NPARENTS) + 1;
  qp_status st = QP_OK;
  switch (cm_rand(t, 9)) {
  case 0:
  case 1:
  case 2:
    snprintf(sql, sizeof sql, "UPDATE item SET v = v + 1 WHERE id = %d", k);
    st = cm_exec(t, c, sql, NULL, 0);
    break;
  case 3: /* the cascade removes its children; put them back */
    snprintf(sql, sizeof sql, "DELETE FROM parent WHERE id = %d", pk);
    st = cm_exec(t, c, sql, NULL, 0);
    snprintf(sql, sizeof sql, "INSERT OR IGNORE INTO parent(id, name, tag) VALUES (%d, 'p%d', '%s')",
             pk, pk, g_tag[f]);
    if (st == QP_OK) st = cm_exec(t, c, sql, NULL, 0);
    snprintf(sql, sizeof sql, "INSERT INTO child(pid, x, tag) VALUES (%d, %d, '%s')", pk, k,
             g_tag[f]);
    if (st == QP_OK) st = cm_exec(t, c, sql, NULL, 0);
    break;
  case 4: /* ON UPDATE CASCADE moves the children along */
    snprintf(sql, sizeof sql, "UPDATE parent SET id = id + 1000 WHERE id = %d", pk);
    st = cm_exec(t, c, sql, NULL, 0);
    a_read_mid(t, c);
    snprintf(sql, sizeof sql, "UPDATE parent SET id = id - 1000 WHERE id = %d", pk + 1000);
    if (st == QP_OK) st = cm_exec(t, c, sql, NULL, 0);
    break;
  case 5: /* no WHERE: SQLite's truncate optimization when nothing stops it */
    st = cm_exec(t, c, "DELETE FROM audit", NULL, 0);
    break;
  case 6: /* the column's state asked first (transactions and savepoints undo DDL) */
    ddl_state(t, c, f, w);
    st = cm_exec(t, c, w->extra[f] ? "ALTER TABLE ddl_t DROP COLUMN extra"
                                   : "ALTER TABLE ddl_t ADD COLUMN extra INTEGER DEFAULT 7",
                 NULL, 0);
    if (st == QP_OK) w->extra[f] = !w->extra[f];
    break;
  case 7:
    snprintf(sql, sizeof sql, "UPDATE child SET x = x + 1 WHERE pid = %d", pk);
    st = cm_exec(t, c, sql, NULL, 0);
    break;
  default:
    snprintf(sql, sizeof sql, "UPDATE ddl_t SET a = a + 1 WHERE id = %d", pk);
    st = cm_exec(t, c, sql, NULL, 0);
    break;
  }
  if (st != QP_OK) cm_error(t, sql, c);
}

static void step(cm_thr *t) {
  world *w = cm_ud(t);
  int f = cm_rand(t, 4) == 0 ? 1 : 0;
  qp_conn *c = NULL;
  if (qp_pool_acquire(w->pool[f], &c) != QP_OK) {
    cm_error(t, "acquire", NULL);
    return;
  }
  /* writing steps hold the lock alone: kept to one step in ten, so that
   * the run stays short */
  uint32_t kind = cm_rand(t, 40);
  if (kind < 36) { /* reads only, sometimes in a read transaction */
    cm_shared(t);
    bool txn = cm_rand(t, 4) == 0;
    if (txn && cm_exec(t, c, "BEGIN", NULL, 0) != QP_OK) cm_error(t, "BEGIN", c);
    if (cm_rand(t, 40) == 0 && cm_exec(t, c, "PRAGMA cache_size = 1000", NULL, 0) != QP_OK)
      cm_error(t, "PRAGMA", c);
    for (uint32_t i = 0, n = cm_rand(t, 12) + 1; i < n; i++) a_read(t, c, f);
    if (txn && cm_exec(t, c, "COMMIT", NULL, 0) != QP_OK) cm_error(t, "COMMIT", c);
  } else if (kind < 38) { /* autocommit writes, reads after them */
    cm_exclusive(t);
    a_write(t, c, f, w);
    a_read(t, c, f);
    if (cm_rand(t, 2)) a_write(t, c, f, w);
    a_read(t, c, f);
  } else { /* a transaction: reads before and after writing, a savepoint */
    cm_exclusive(t);
    if (cm_exec(t, c, "BEGIN", NULL, 0) != QP_OK) cm_error(t, "BEGIN", c);
    a_read(t, c, f);
    a_write(t, c, f, w);
    a_read(t, c, f);
    if (cm_rand(t, 2)) {
      if (cm_exec(t, c, "SAVEPOINT s1", NULL, 0) != QP_OK) cm_error(t, "SAVEPOINT", c);
      a_write(t, c, f, w);
      a_read(t, c, f);
      bool undo = cm_rand(t, 2);
      if (cm_exec(t, c, undo ? "ROLLBACK TO SAVEPOINT s1" : "RELEASE SAVEPOINT s1", NULL, 0) !=
          QP_OK)
        cm_error(t, "ROLLBACK TO / RELEASE", c);
      ddl_state(t, c, f, w);
      a_read(t, c, f);
    }
    bool commit = cm_rand(t, 3) != 0;
    if (cm_exec(t, c, commit ? "COMMIT" : "ROLLBACK", NULL, 0) != QP_OK)
      cm_error(t, "COMMIT / ROLLBACK", c);
    ddl_state(t, c, f, w);
    a_read(t, c, f);
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
  int pfd[2];
  assert_int_equal(pipe(pfd), 0);
  pid_t child = fork(); /* before any thread of this process */
  assert_true(child >= 0);
  if (child == 0) {
    close(pfd[1]);
    other_process(pfd[0]);
  }
  close(pfd[0]);
  world w;
  memset(&w, 0, sizeof w);
  w.cache = open_cache();
  for (int f = 0; f < NFILES; f++) w.pool[f] = open_pool(g_dsn[f], 8, w.cache);
  cm_config cfg = {.nthreads = 8, .min_ops = env_ops(), .lockfile = g_lock, .step = step, .ud = &w};
  cm_totals tot;
  cm_run_all(&cfg, &tot);
  close(pfd[1]);
  int status = 0;
  assert_int_equal(waitpid(child, &status, 0), child);
  /* SQLite flushes a file whenever another connection committed, so
   * writes keep the hits low */
  cm_check_mix("sqlite mix", w.cache, &tot, cfg.min_ops, 5);
  for (int f = 0; f < NFILES; f++) qp_pool_close(w.pool[f]);
  qp_cache_close(w.cache);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0); /* the other process wrote, without error */
}

/* Fills racing writes, no lock: a read never returns less than a value
 * whose write returned before the read began. */
static void test_race(void **state) {
  (void)state;
  qp_cache *cache = open_cache();
  qp_pool *p = open_pool(g_dsn[1], 8, cache);
  cm_race_config cfg = {.pool = p, .writers = 3, .readers = 5, .keys = 8,
                        .reads_per_reader = 4000, .writes_per_writer = 1000,
                        .read_sql = "SELECT n FROM ctr WHERE id = ?",
                        .update_sql = "UPDATE ctr SET n = n + 1 WHERE id = ? RETURNING n",
                        .begin_sql = "BEGIN IMMEDIATE"};
  cm_check_race("sqlite race", cache, &cfg);
  qp_pool_close(p);
  qp_cache_close(cache);
}

/* Single flight: 8 threads miss one key at once; the statement runs once
 * (the warm-up read does each connection's first PRAGMA data_version,
 * which flushes). */
static void test_single_flight(void **state) {
  (void)state;
  qp_cache *cache = open_cache();
  qp_pool *p = open_pool(g_dsn[1], 8, cache);
  cm_check_single_flight(p, cache, "SELECT count(*) FROM ctr",
                         "SELECT count(*) FROM big a, big b WHERE a.x + b.x > ?", 5,
                         1500 * 1500 - 10);
  qp_pool_close(p);
  qp_cache_close(cache);
}

/* The pool's prepared SELECT * after ALTER TABLE ADD/DROP COLUMN (found by
 * the mix): the statement is prepared again by its first step, and the
 * result has the new columns (it kept the old count, reading the new
 * column as NULL or dropping it). */
static void test_select_star_after_ddl(void **state) {
  (void)state;
  qp_pool *p = open_pool(g_dsn[1], 1, NULL);
  qp_conn *c = NULL;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_conn_exec_script(c, "CREATE TABLE star(id INTEGER); INSERT INTO star VALUES (1)"),
                   QP_OK);
  for (int round = 0; round < 3; round++) {
    qp_result *r = NULL;
    if (qp_conn_exec(c, "SELECT * FROM star", NULL, 0, &r) != QP_OK)
      fail_msg("round %d: %s", round, qp_conn_errmsg(c));
    assert_int_equal(qp_result_cols(r), round == 1 ? 2 : 1);
    if (round == 1) assert_string_equal(qp_result_value(r, 0, 1, NULL), "7");
    qp_result_free(r);
    assert_int_equal(qp_conn_exec(c, round == 0 ? "ALTER TABLE star ADD COLUMN e INTEGER DEFAULT 7"
                                                : "ALTER TABLE star DROP COLUMN e",
                                  NULL, 0, NULL),
                     round == 2 ? QP_QUERY : QP_OK);
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
  signal(SIGPIPE, SIG_IGN);
  return cmocka_run_group_tests(tests, setup, qpt_tempdirs_remove);
}
