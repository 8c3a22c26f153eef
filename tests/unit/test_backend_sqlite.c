/* The SQLite backend through its table of functions, on real files. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/sqlite_codes.h"
#include "failalloc.h"
#include <sqlite3.h>

static const qp__backend_ops *B = &qp__backend_sqlite;
static qp_hooks H;

static char *db_dsn(char *buf, size_t len) {
  const char *dir = qpt_tempdir();
  assert_non_null(dir);
  snprintf(buf, len, "sqlite://%s/test.db", dir);
  return buf;
}

static qp__bconn *open_db(const char *dsn) {
  qp__bconnect_opts o = {&H, 1000, 8};
  qp__bconn *b = NULL;
  qp__berr err;
  qp__berr_clear(&err);
  qp_status st = B->connect(dsn, &o, &b, &err);
  if (st != QP_OK) fail_msg("connect %s: %s", dsn, err.msg);
  return b;
}

static qp_status run(qp__bconn *b, const char *sql, const qp_param *p, size_t n, qp_result **out,
                     qp__berr *err) {
  int64_t rows;
  bool rep;
  qp__stmt_entry *e;
  qp__berr_clear(err);
  return B->exec(b, sql, strlen(sql), p, n, out, &rows, &rep, &e, err);
}

static void test_dsn_forms(void **state) {
  (void)state;
  qp__berr err;
  qp__berr_clear(&err);
  assert_true(B->accepts("sqlite::memory:"));
  assert_true(B->accepts("sqlite:///tmp/x.db"));
  assert_false(B->accepts("postgresql://localhost/db"));
  assert_false(B->accepts("host=/tmp dbname=x"));
  assert_int_equal(B->check_dsn("sqlite:", &err), QP_INVALID);
  assert_non_null(strstr(err.msg, "malformed SQLite DSN"));
  assert_int_equal(B->check_dsn("sqlite://", &err), QP_INVALID);
  assert_int_equal(B->check_dsn("sqlite::memory:", &err), QP_OK);
  assert_ptr_equal(qp__backend_for_dsn("sqlite::memory:"), &qp__backend_sqlite);
  assert_ptr_equal(qp__backend_for_dsn("dbname=x"), &qp__backend_pg);

  qp__bconnect_opts o = {&H, 1000, 8};
  qp__bconn *b = NULL;
  assert_int_equal(B->connect("sqlite:///nonexistent-dir-qprof/x/y.db", &o, &b, &err),
                   QP_UNAVAILABLE);
  assert_null(b);
  assert_string_equal(err.code, "SQLITE_CANTOPEN");

  b = open_db("sqlite::memory:");
  assert_string_equal(B->database(b), ":memory:");
  assert_string_equal(B->server_version(b), sqlite3_libversion());
  B->close(b);
}

static void test_wal_and_busy_timeout(void **state) {
  (void)state;
  char dsn[256];
  qp__bconn *b = open_db(db_dsn(dsn, sizeof dsn));
  qp__berr err;
  qp_result *r;
  assert_int_equal(run(b, "PRAGMA journal_mode", NULL, 0, &r, &err), QP_OK);
  assert_string_equal(qp_result_value(r, 0, 0, NULL), "wal");
  qp_result_free(r);
  assert_int_equal(run(b, "PRAGMA busy_timeout", NULL, 0, &r, &err), QP_OK);
  assert_string_equal(qp_result_value(r, 0, 0, NULL), "5000");
  qp_result_free(r);
  B->close(b);
}

static void test_crud_params_nulls_blobs(void **state) {
  (void)state;
  char dsn[256];
  qp__bconn *b = open_db(db_dsn(dsn, sizeof dsn));
  qp__berr err;
  qp_result *r = NULL;
  assert_int_equal(B->exec_script(b, "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT UNIQUE, "
                                     "score REAL, data BLOB)", NULL, NULL, &err), QP_OK);
  unsigned char blob[256];
  for (int i = 0; i < 256; i++) blob[i] = (unsigned char)i;
  qp_param p[4] = {qp_param_int(1), qp_param_text("alice"), qp_param_double(2.5),
                   qp_param_blob(blob, sizeof blob)};
  assert_int_equal(run(b, "INSERT INTO t VALUES (?, ?, ?, ?)", p, 4, &r, &err), QP_OK);
  assert_int_equal(qp_result_affected(r), 1);
  assert_int_equal(qp_result_cols(r), 0);
  qp_result_free(r);
  qp_param q[4] = {qp_param_int(2), qp_param_text("bob"), qp_param_null(), qp_param_null()};
  assert_int_equal(run(b, "INSERT INTO t VALUES (?, ?, ?, ?)", q, 4, NULL, &err), QP_OK);

  assert_int_equal(run(b, "SELECT id, name, score, data FROM t ORDER BY id", NULL, 0, &r, &err),
                   QP_OK);
  assert_int_equal(qp_result_rows(r), 2);
  assert_int_equal(qp_result_cols(r), 4);
  assert_int_equal(qp_result_affected(r), -1);
  assert_string_equal(qp_result_colname(r, 1), "name");
  assert_null(qp_result_colname(r, 4));
  int64_t id;
  assert_int_equal(qp_result_int64(r, 1, 0, &id), QP_OK);
  assert_int_equal(id, 2);
  assert_int_equal(qp_result_int64(r, 0, 1, &id), QP_INVALID);
  assert_string_equal(qp_result_value(r, 0, 1, NULL), "alice");
  assert_string_equal(qp_result_value(r, 0, 2, NULL), "2.5");
  size_t len = 0;
  const unsigned char *got = qp_result_blob(r, 0, 3, &len);
  assert_int_equal(len, 256);
  assert_memory_equal(got, blob, 256);
  assert_true(qp_result_isnull(r, 1, 2));
  assert_true(qp_result_isnull(r, 1, 3));
  assert_null(qp_result_value(r, 1, 3, &len));
  assert_false(qp_result_isnull(r, 1, 1));
  assert_true(qp_result_isnull(r, 9, 0)); /* out of range */
  qp_result_free(r);

  qp_param u[2] = {qp_param_text("carol"), qp_param_int(2)};
  assert_int_equal(run(b, "UPDATE t SET name = ? WHERE id = ?", u, 2, &r, &err), QP_OK);
  assert_int_equal(qp_result_affected(r), 1);
  qp_result_free(r);
  assert_int_equal(run(b, "DELETE FROM t", NULL, 0, &r, &err), QP_OK);
  assert_int_equal(qp_result_affected(r), 2);
  qp_result_free(r);
  B->close(b);
}

static void test_errors_keep_extended_codes(void **state) {
  (void)state;
  char dsn[256];
  qp__bconn *b = open_db(db_dsn(dsn, sizeof dsn));
  qp__berr err;
  qp_result *r = (qp_result *)1;
  assert_int_equal(B->exec_script(b, "CREATE TABLE u(k TEXT UNIQUE NOT NULL)", NULL, NULL, &err), QP_OK);
  qp_param p[1] = {qp_param_text("x")};
  assert_int_equal(run(b, "INSERT INTO u VALUES (?)", p, 1, NULL, &err), QP_OK);
  assert_int_equal(run(b, "INSERT INTO u VALUES (?)", p, 1, &r, &err), QP_QUERY);
  assert_null(r);
  assert_string_equal(err.code, "SQLITE_CONSTRAINT_UNIQUE");
  assert_non_null(strstr(err.msg, "UNIQUE constraint failed"));
  qp_param n[1] = {qp_param_null()};
  assert_int_equal(run(b, "INSERT INTO u VALUES (?)", n, 1, NULL, &err), QP_QUERY);
  assert_string_equal(err.code, "SQLITE_CONSTRAINT_NOTNULL");
  assert_int_equal(run(b, "SELECT * FROM missing_table", NULL, 0, NULL, &err), QP_QUERY);
  assert_string_equal(err.code, "SQLITE_ERROR");
  assert_non_null(strstr(err.msg, "no such table"));
  assert_int_equal(run(b, "SELEC 1", NULL, 0, NULL, &err), QP_QUERY);
  /* wrong parameter counts and types: clear errors, no crash */
  assert_int_equal(run(b, "INSERT INTO u VALUES (?)", NULL, 0, NULL, &err), QP_INVALID);
  assert_non_null(strstr(err.msg, "1 parameter, 0 given"));
  qp_param two[2] = {qp_param_text("a"), qp_param_text("b")};
  assert_int_equal(run(b, "INSERT INTO u VALUES (?)", two, 2, NULL, &err), QP_INVALID);
  qp_param bad = qp_param_int(1);
  bad.type = (qp_param_type)99;
  assert_int_equal(run(b, "INSERT INTO u VALUES (?)", &bad, 1, NULL, &err), QP_INVALID);
  assert_non_null(strstr(err.msg, "unknown type"));
  qp_param nulltext = {QP_PARAM_TEXT, NULL, 0, 0, 0, 0};
  assert_int_equal(run(b, "INSERT INTO u VALUES (?)", &nulltext, 1, NULL, &err), QP_INVALID);
  /* several statements need exec_script */
  assert_int_equal(run(b, "SELECT 1; SELECT 2", NULL, 0, NULL, &err), QP_INVALID);
  assert_int_equal(run(b, "SELECT 1;  ", NULL, 0, NULL, &err), QP_OK);
  assert_int_equal(B->exec_script(b, "INSERT INTO u VALUES ('y'); INSERT INTO u VALUES ('y')", NULL, NULL, &err),
                   QP_QUERY);
  assert_string_equal(err.code, "SQLITE_CONSTRAINT_UNIQUE");
  B->close(b);
}

static void test_statement_cache_and_txn(void **state) {
  (void)state;
  char dsn[256];
  qp__bconn *b = open_db(db_dsn(dsn, sizeof dsn));
  qp__berr err;
  int64_t rows;
  bool rep;
  qp__stmt_entry *e1 = NULL, *e2 = NULL;
  const char *sql = "SELECT ?1 + 1";
  qp_param p[1] = {qp_param_int(41)};
  assert_int_equal(B->exec(b, sql, strlen(sql), p, 1, NULL, &rows, &rep, &e1, &err), QP_OK);
  assert_non_null(e1);
  void *h1 = e1->handle;
  assert_int_equal(B->exec(b, sql, strlen(sql), p, 1, NULL, &rows, &rep, &e2, &err), QP_OK);
  assert_ptr_equal(e2->handle, h1); /* prepared once, reused */
  assert_int_equal(rows, 1);
  /* the cache holds 8: the 9th and later statements still run, uncached */
  for (int i = 0; i < 12; i++) {
    char q[64];
    snprintf(q, sizeof q, "SELECT %d", i);
    assert_int_equal(B->exec(b, q, strlen(q), NULL, 0, NULL, &rows, &rep, &e1, &err), QP_OK);
    assert_int_equal(rows, 1);
  }
  assert_int_equal(B->exec_script(b, "CREATE TABLE t(x)", NULL, NULL, &err), QP_OK);
  assert_int_equal(B->txn_status(b), QP_TXN_IDLE);
  assert_int_equal(B->exec_script(b, "BEGIN; INSERT INTO t VALUES (1)", NULL, NULL, &err), QP_OK);
  assert_int_equal(B->txn_status(b), QP_TXN_INTRANS);
  assert_int_equal(B->rollback(b, &err), QP_OK);
  assert_int_equal(B->txn_status(b), QP_TXN_IDLE);
  qp_result *r;
  assert_int_equal(run(b, "SELECT count(*) FROM t", NULL, 0, &r, &err), QP_OK);
  assert_string_equal(qp_result_value(r, 0, 0, NULL), "0");
  qp_result_free(r);
  /* reset drops temp tables and pragmas on a file database */
  assert_int_equal(B->exec_script(b, "CREATE TEMP TABLE tmp(x); PRAGMA cache_size=123", NULL, NULL, &err),
                   QP_OK);
  assert_int_equal(B->reset(b, &err), QP_OK);
  assert_int_equal(run(b, "SELECT * FROM tmp", NULL, 0, NULL, &err), QP_QUERY);
  assert_int_equal(run(b, "PRAGMA cache_size", NULL, 0, &r, &err), QP_OK);
  assert_string_not_equal(qp_result_value(r, 0, 0, NULL), "123");
  qp_result_free(r);
  assert_int_equal(B->ping(b, 100, &err), QP_OK);
  assert_true(B->precheck(b));
  assert_false(B->is_broken(b));
  B->close(b);
  B->close(NULL);
}

static void test_oom_in_results(void **state) {
  (void)state;
  char dsn[256];
  db_dsn(dsn, sizeof dsn);
  for (long n = 1; n < 200; n++) {
    qpt_failalloc fa = {0};
    qp_hooks h = qpt_failalloc_hooks(&fa);
    qp__bconnect_opts o = {&h, 1000, 8};
    qp__bconn *b = NULL;
    qp__berr err;
    qp__berr_clear(&err);
    fa.fail_at = n;
    qp_status st = B->connect(dsn, &o, &b, &err);
    if (st == QP_OK) {
      int64_t rows;
      bool rep;
      qp__stmt_entry *e;
      qp_result *r = NULL;
      const char *sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                        "WHERE x < 100) SELECT x, 'row ' || x FROM c";
      st = B->exec(b, sql, strlen(sql), NULL, 0, &r, &rows, &rep, &e, &err);
      if (st == QP_OK) {
        assert_int_equal(qp_result_rows(r), 100);
        qp_result_free(r);
      } else {
        assert_int_equal(st, QP_NOMEM);
        assert_null(r);
      }
      B->close(b);
    } else {
      assert_int_equal(st, QP_NOMEM);
      assert_null(b);
    }
    assert_int_equal(fa.live, 0);
    if (fa.count < n) break; /* no allocation failed: every path was covered */
  }
}

/* Integers are turned into text by the backend itself, not by SQLite: the
 * text must be exactly what SQLite's own conversion gives. */
static void test_integer_text_matches_sqlite(void **state) {
  (void)state;
  char dsn[256];
  qp__bconn *b = open_db(db_dsn(dsn, sizeof dsn));
  qp__berr err;
  static const int64_t vals[] = {0,          1,          -1,         9,         10,
                                 -10,        99,         100,        101,       -999,
                                 1000,       12345,      -12345,     65536,     1000000007,
                                 INT64_MAX,  INT64_MIN,  INT64_MIN + 1, 999999999999999999,
                                 -1000000000000000000};
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
    qp_param p[1] = {qp_param_int(vals[i])};
    qp_result *r = NULL;
    assert_int_equal(run(b, "SELECT ?1, CAST(?1 AS TEXT), typeof(?1)", p, 1, &r, &err), QP_OK);
    char want[32];
    snprintf(want, sizeof want, "%lld", (long long)vals[i]);
    size_t len = 0;
    assert_string_equal(qp_result_value(r, 0, 0, &len), want);
    assert_int_equal(len, strlen(want));
    assert_string_equal(qp_result_value(r, 0, 1, NULL), want); /* SQLite's text */
    assert_string_equal(qp_result_value(r, 0, 2, NULL), "integer");
    int64_t back = 0;
    assert_int_equal(qp_result_int64(r, 0, 0, &back), QP_OK);
    assert_true(back == vals[i]);
    qp_result_free(r);
  }
  /* every storage class in one row, and integers in later rows */
  qp_result *r = NULL;
  assert_int_equal(run(b, "SELECT 7, 2.5, 'txt', NULL, x'00ff' UNION ALL "
                          "SELECT -42, 1e300, '', NULL, x''", NULL, 0, &r, &err), QP_OK);
  assert_int_equal(qp_result_rows(r), 2);
  assert_string_equal(qp_result_value(r, 0, 0, NULL), "7");
  assert_string_equal(qp_result_value(r, 0, 1, NULL), "2.5");
  assert_string_equal(qp_result_value(r, 0, 2, NULL), "txt");
  assert_true(qp_result_isnull(r, 0, 3));
  size_t len = 0;
  const unsigned char *blob = qp_result_blob(r, 0, 4, &len);
  assert_int_equal(len, 2);
  assert_int_equal(blob[0], 0x00);
  assert_int_equal(blob[1], 0xff);
  assert_string_equal(qp_result_value(r, 1, 0, NULL), "-42");
  assert_string_equal(qp_result_value(r, 1, 1, NULL), "1.0e+300");
  assert_string_equal(qp_result_value(r, 1, 2, NULL), "");
  assert_false(qp_result_isnull(r, 1, 2));
  qp_result_free(r);
  B->close(b);
}

static qp_status run_nts(qp__bconn *b, const char *sql, qp_result **out, qp__stmt_entry **e,
                         qp__berr *err) {
  int64_t rows;
  bool rep;
  qp__berr_clear(err);
  return B->exec(b, sql, QP__SQL_NTS, NULL, 0, out, &rows, &rep, e, err);
}

static void check_value(qp__bconn *b, const char *sql, const char *want, qp__stmt_entry **e) {
  qp__berr err;
  qp_result *r = NULL;
  qp_status st = run_nts(b, sql, &r, e, &err);
  if (st != QP_OK) fail_msg("%s: %s", sql, err.msg);
  assert_string_equal(qp_result_value(r, 0, 0, NULL), want);
  qp_result_free(r);
}

/* Statements are found by the address of their text first: the address is
 * only a hint, so a buffer reused for another statement (longer, shorter,
 * or the same prefix) must never run the statement it held before. */
static void test_lookup_by_address_compares_text(void **state) {
  (void)state;
  char dsn[256];
  qp__bconnect_opts o = {&H, 1000, 200};
  qp__bconn *b = NULL;
  qp__berr err;
  qp__berr_clear(&err);
  assert_int_equal(B->connect(db_dsn(dsn, sizeof dsn), &o, &b, &err), QP_OK);
  char buf[128];
  qp__stmt_entry *e1 = NULL, *e = NULL;
  snprintf(buf, sizeof buf, "SELECT 'one'");
  check_value(b, buf, "one", &e1);
  assert_non_null(e1);
  assert_int_equal(e1->len, strlen(buf));
  void *h1 = e1->handle;
  check_value(b, buf, "one", &e); /* found by address */
  assert_ptr_equal(e->handle, h1);
  snprintf(buf, sizeof buf, "SELECT 'two'"); /* same length, same address */
  check_value(b, buf, "two", &e);
  assert_ptr_not_equal(e->handle, h1);
  snprintf(buf, sizeof buf, "SELECT 'one' || 'x'"); /* longer, same prefix */
  check_value(b, buf, "onex", &e);
  assert_int_equal(e->len, strlen(buf));
  snprintf(buf, sizeof buf, "SELECT 1"); /* shorter */
  check_value(b, buf, "1", &e);
  snprintf(buf, sizeof buf, "SELECT 1 + 1"); /* the shorter one is a prefix of this */
  check_value(b, buf, "2", &e);
  snprintf(buf, sizeof buf, "SELECT 'one'"); /* back to the first: the cached entry */
  check_value(b, buf, "one", &e);
  assert_ptr_equal(e->handle, h1);
  /* The table grows (entries move) and is emptied by reset: lookups by a
   * remembered address must not use moved or freed entries (ASan checks). */
  char many[100][40];
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < 100; i++) {
      snprintf(many[i], sizeof many[i], "SELECT %d", i * 3 + round);
      char want[16];
      snprintf(want, sizeof want, "%d", i * 3 + round);
      check_value(b, many[i], want, &e);
      check_value(b, many[i], want, &e);
      check_value(b, buf, "one", &e);
    }
    assert_int_equal(B->reset(b, &err), QP_OK);
  }
  check_value(b, many[5], "16", &e);
  B->close(b);
}

/* EXPLAIN QUERY PLAN on a real file: a scan without an index, a search
 * with one; analyze runs the statement inside a savepoint that is rolled
 * back and reads its counters (a full scan steps over every row). */
static void test_explain_plan_and_counters(void **state) {
  (void)state;
  char dsn[512];
  qp__bconn *b = open_db(db_dsn(dsn, sizeof dsn));
  qp__berr err;
  qp__berr_clear(&err);
  assert_int_equal(B->exec_script(b, "CREATE TABLE e(id INTEGER PRIMARY KEY, k INTEGER, v TEXT);"
                                     "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 "
                                     "FROM c WHERE x < 500) INSERT INTO e SELECT x, x % 50, 'v' "
                                     "FROM c",
                                  NULL, NULL, &err),
                   QP_OK);
  assert_true(B->caps & QP__CAP_STMT_COUNTERS);
  assert_int_equal(B->dialect, QP_DIALECT_SQLITE);
  qp__explain_opts o = {0};
  qp__plan plan;
  qp_param k = qp_param_int(7);
  assert_int_equal(B->explain(b, "SELECT v FROM e WHERE k = ?", &k, 1, &o, &plan, &err), QP_OK);
  assert_non_null(strstr(plan.text, "SCAN e"));
  assert_int_equal(plan.len, strlen(plan.text));
  assert_int_equal(plan.fullscan_steps, -1); /* not run */
  qp__plan_free(&H, &plan);
  assert_int_equal(B->exec_script(b, "CREATE INDEX e_k ON e(k)", NULL, NULL, &err), QP_OK);
  o.analyze = true;
  assert_int_equal(B->explain(b, "SELECT v FROM e WHERE k = ?", &k, 1, &o, &plan, &err), QP_OK);
  assert_non_null(strstr(plan.text, "SEARCH e USING INDEX e_k (k=?)"));
  assert_int_equal(plan.rows, 10);
  assert_int_equal(plan.fullscan_steps, 0);
  assert_true(plan.vm_steps > 0);
  qp__plan_free(&H, &plan);
  assert_int_equal(B->explain(b, "SELECT v FROM e WHERE v = 'v' ORDER BY random()", NULL, 0, &o,
                              &plan, &err),
                   QP_OK);
  assert_int_equal(plan.rows, 500);
  assert_true(plan.fullscan_steps >= 499);
  assert_int_equal(plan.sorts, 1);
  qp__plan_free(&H, &plan);
  /* an analyzed DELETE runs, and is rolled back */
  assert_int_equal(B->explain(b, "DELETE FROM e", NULL, 0, &o, &plan, &err), QP_OK);
  qp__plan_free(&H, &plan);
  qp_result *r;
  assert_int_equal(run(b, "SELECT count(*) FROM e", NULL, 0, &r, &err), QP_OK);
  assert_string_equal(qp_result_value(r, 0, 0, NULL), "500");
  qp_result_free(r);
  assert_int_equal(B->txn_status(b), QP_TXN_IDLE);
  /* errors keep SQLite's code; the connection stays usable */
  assert_int_equal(B->explain(b, "SELECT * FROM nope", NULL, 0, &o, &plan, &err), QP_QUERY);
  assert_string_equal(err.code, "SQLITE_ERROR");
  assert_null(plan.text);
  assert_int_equal(B->explain(b, "SELECT ?", NULL, 0, &o, &plan, &err), QP_INVALID);
  assert_int_equal(B->txn_status(b), QP_TXN_IDLE);
  B->close(b);
}

/* One table of result code names for the backend and the shim: extended
 * codes by name, unknown extended codes by their primary code. */
static void test_code_names(void **state) {
  (void)state;
  assert_string_equal(qp__sqlite_code_name(SQLITE_CONSTRAINT_UNIQUE), "SQLITE_CONSTRAINT_UNIQUE");
  assert_string_equal(qp__sqlite_code_name(SQLITE_BUSY), "SQLITE_BUSY");
  assert_string_equal(qp__sqlite_code_name(SQLITE_BUSY | (200 << 8)), "SQLITE_BUSY");
  assert_string_equal(qp__sqlite_code_name(0x7f00), "SQLITE_ERROR");
}

int main(void) {
  qp__hooks_init(&H, NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dsn_forms),
      cmocka_unit_test(test_explain_plan_and_counters),
      cmocka_unit_test(test_code_names),
      cmocka_unit_test(test_wal_and_busy_timeout),
      cmocka_unit_test(test_crud_params_nulls_blobs),
      cmocka_unit_test(test_errors_keep_extended_codes),
      cmocka_unit_test(test_statement_cache_and_txn),
      cmocka_unit_test(test_oom_in_results),
      cmocka_unit_test(test_integer_text_matches_sqlite),
      cmocka_unit_test(test_lookup_by_address_compares_text),
  };
  return cmocka_run_group_tests(tests, NULL, qpt_tempdirs_remove);
}
