/* The pool against the real PostgreSQL fixture cluster, in a database of
 * its own: CRUD with parameters, NULLs, bytea, SQLSTATEs, transactions,
 * session reset, re-preparation, a terminated backend, cancel, DSN forms
 * and password redaction. */
#include "pgtest.h"

#include "pool/lease.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static qpt_pgdb g_db;

typedef struct logcap {
  pthread_mutex_t mu;
  char text[16384];
  size_t len;
} logcap;

static void cap_log(qp_log_level level, const char *msg, void *ud) {
  (void)level;
  logcap *c = ud;
  pthread_mutex_lock(&c->mu);
  int n = snprintf(c->text + c->len, sizeof c->text - c->len, "%s\n", msg);
  if (n > 0 && c->len + (size_t)n < sizeof c->text) c->len += (size_t)n;
  pthread_mutex_unlock(&c->mu);
}

/* The server process behind a lease. */
static int64_t backend_pid(qp_conn *c) {
  qp_result *r;
  assert_int_equal(qp_conn_exec(c, "SELECT pg_backend_pid()", NULL, 0, &r), QP_OK);
  int64_t pid;
  assert_int_equal(qp_result_int64(r, 0, 0, &pid), QP_OK);
  qp_result_free(r);
  return pid;
}

/* Kills a server process from an administrator's connection. */
static void terminate_backend(int64_t pid) {
  char sql[128];
  snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%lld)", (long long)pid);
  qpt_pg_exec(qpt_pg_dsn(), sql);
}

static int setup(void **state) {
  (void)state;
  return qpt_pgdb_create(&g_db, "qp_pool_pg_%d", (int)getpid());
}

static int teardown(void **state) {
  (void)state;
  qpt_pgdb_drop(&g_db);
  return 0;
}

static void test_identity_and_uri_dsn(void **state) {
  (void)state;
  char uri[1024];
  /* the URI form, with the socket directory percent-encoded as host */
  char host[256], enc[768];
  snprintf(host, sizeof host, "%s", getenv("PGHOST"));
  size_t k = 0;
  for (const char *s = host; *s && k + 4 < sizeof enc; s++) {
    if (*s == '/') k += (size_t)snprintf(enc + k, sizeof enc - k, "%%2F");
    else enc[k++] = *s;
  }
  enc[k] = '\0';
  snprintf(uri, sizeof uri, "postgresql://postgres@%s:%s/%s?application_name=qp_test", enc,
           getenv("PGPORT"), g_db.name);
  const char *dsns[] = {g_db.dsn, uri};
  for (int i = 0; i < 2; i++) {
    qp_pool *p = qpt_pool_open(dsns[i], 1, NULL, NULL);
    qp_conn *c;
    assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
    assert_int_equal(qp_conn_backend(c), QP_BACKEND_POSTGRES);
    assert_string_equal(qp_conn_database(c), g_db.name);
    assert_string_equal(qp_conn_user(c), "postgres");
    assert_true(strncmp(qp_conn_server_version(c), "15.", 3) == 0);
    qp_pool_release(c);
    qp_pool_close(p);
  }
}

static void test_crud_nulls_bytea(void **state) {
  (void)state;
  qp_pool *p = qpt_pool_open(g_db.dsn, 2, NULL, NULL);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  qpt_script(c, "CREATE TABLE items(id int PRIMARY KEY, name text, price numeric, born date, "
                "data bytea)");
  unsigned char blob[256];
  for (int i = 0; i < 256; i++) blob[i] = (unsigned char)(255 - i);
  qp_param date = qp_param_text("2026-11-22");
  date.pg_type = 1082;
  qp_param ins[5] = {qp_param_int(1), qp_param_text("widget"), qp_param_double(9.5), date,
                     qp_param_blob(blob, sizeof blob)};
  qp_result *r;
  assert_int_equal(qp_conn_exec(c, "INSERT INTO items VALUES ($1, $2, $3, $4, $5)", ins, 5, &r),
                   QP_OK);
  assert_int_equal(qp_result_affected(r), 1);
  qp_result_free(r);
  qp_param ins2[5] = {qp_param_int(2), qp_param_null(), qp_param_null(), qp_param_null(),
                      qp_param_blob("", 0)};
  assert_int_equal(qp_conn_exec(c, "INSERT INTO items VALUES ($1, $2, $3, $4, $5)", ins2, 5, NULL),
                   QP_OK);
  assert_int_equal(qp_conn_exec(c, "SELECT id, name, price, born, data FROM items ORDER BY id",
                                NULL, 0, &r), QP_OK);
  assert_int_equal(qp_result_rows(r), 2);
  assert_int_equal(qp_result_cols(r), 5);
  assert_string_equal(qp_result_colname(r, 3), "born");
  assert_string_equal(qp_result_value(r, 0, 1, NULL), "widget");
  assert_string_equal(qp_result_value(r, 0, 2, NULL), "9.5");
  assert_string_equal(qp_result_value(r, 0, 3, NULL), "2026-11-22");
  size_t len;
  const unsigned char *got = qp_result_blob(r, 0, 4, &len);
  assert_int_equal(len, 256);
  assert_memory_equal(got, blob, 256);
  assert_ptr_equal(qp_result_blob(r, 0, 4, &len), got); /* decoded once */
  assert_true(qp_result_isnull(r, 1, 1));
  assert_true(qp_result_isnull(r, 1, 3));
  assert_null(qp_result_value(r, 1, 1, NULL));
  assert_false(qp_result_isnull(r, 1, 4));
  assert_non_null(qp_result_blob(r, 1, 4, &len));
  assert_int_equal(len, 0);
  qp_result_free(r);
  qp_param up[2] = {qp_param_text("gadget"), qp_param_int(2)};
  assert_int_equal(qp_conn_exec(c, "UPDATE items SET name = $1 WHERE id = $2", up, 2, &r), QP_OK);
  assert_int_equal(qp_result_affected(r), 1);
  qp_result_free(r);
  /* a text parameter with an explicit length */
  qp_param part = {QP_PARAM_TEXT, "gadgetXYZ", 6, 0, 0, 0};
  assert_int_equal(qp_conn_exec(c, "SELECT id FROM items WHERE name = $1", &part, 1, &r), QP_OK);
  assert_int_equal(qp_result_rows(r), 1);
  qp_result_free(r);
  assert_int_equal(qp_conn_exec(c, "DELETE FROM items", NULL, 0, &r), QP_OK);
  assert_int_equal(qp_result_affected(r), 2);
  qp_result_free(r);
  qp_pool_release(c);
  qp_pool_close(p);
}

static void test_errors_with_sqlstate(void **state) {
  (void)state;
  qp_pool *p = qpt_pool_open(g_db.dsn, 1, NULL, NULL);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  qpt_script(c, "CREATE TABLE uniq(k int PRIMARY KEY)");
  qp_param one = qp_param_int(1);
  assert_int_equal(qp_conn_exec(c, "INSERT INTO uniq VALUES ($1)", &one, 1, NULL), QP_OK);
  qp_result *r = (qp_result *)1;
  assert_int_equal(qp_conn_exec(c, "INSERT INTO uniq VALUES ($1)", &one, 1, &r), QP_QUERY);
  assert_null(r);
  assert_string_equal(qp_conn_sqlstate(c), "23505");
  assert_non_null(strstr(qp_conn_errmsg(c), "duplicate key"));
  assert_int_equal(qp_conn_exec(c, "SELECT * FROM no_such_table", NULL, 0, NULL), QP_QUERY);
  assert_string_equal(qp_conn_sqlstate(c), "42P01");
  assert_int_equal(qp_conn_exec(c, "SELEC 1", NULL, 0, NULL), QP_QUERY);
  assert_string_equal(qp_conn_sqlstate(c), "42601");
  /* wrong parameter types and counts: clear errors */
  qp_param word = qp_param_text("not a number");
  assert_int_equal(qp_conn_exec(c, "INSERT INTO uniq VALUES ($1)", &word, 1, NULL), QP_QUERY);
  assert_string_equal(qp_conn_sqlstate(c), "22P02");
  qp_param two[2] = {qp_param_int(5), qp_param_int(6)};
  assert_int_equal(qp_conn_exec(c, "INSERT INTO uniq VALUES ($1)", two, 2, NULL), QP_QUERY);
  assert_string_equal(qp_conn_sqlstate(c), "08P01");
  assert_int_equal(qp_conn_exec(c, "INSERT INTO uniq VALUES ($1)", NULL, 0, NULL), QP_QUERY);
  assert_string_equal(qp_conn_sqlstate(c), "08P01");
  qp_param bad = qp_param_int(1);
  bad.type = (qp_param_type)42;
  assert_int_equal(qp_conn_exec(c, "INSERT INTO uniq VALUES ($1)", &bad, 1, NULL), QP_INVALID);
  qp_param nul = {QP_PARAM_TEXT, "a\0b", 3, 0, 0, 0};
  assert_int_equal(qp_conn_exec(c, "SELECT $1::text", &nul, 1, NULL), QP_INVALID);
  assert_int_equal(qp_conn_exec(c, NULL, NULL, 0, NULL), QP_INVALID);
  /* the connection still works after all that */
  assert_int_equal(qp_conn_exec(c, "SELECT 1", NULL, 0, NULL), QP_OK);
  qp_pool_release(c);
  qp_pool_stats s = QP_POOL_STATS_INIT;
  qp_pool_stats_get(p, &s);
  assert_true(s.total_error_count >= 7);
  assert_int_equal(s.broken, 0);
  qp_pool_close(p);
}

static void test_transactions_rolled_back_on_release(void **state) {
  (void)state;
  qp_pool *p = qpt_pool_open(g_db.dsn, 1, NULL, NULL);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  qpt_script(c, "CREATE TABLE acct(id int, bal int)");
  qpt_script(c, "BEGIN");
  qp_param v[2] = {qp_param_int(1), qp_param_int(100)};
  assert_int_equal(qp_conn_exec(c, "INSERT INTO acct VALUES ($1, $2)", v, 2, NULL), QP_OK);
  assert_int_equal(qp_conn_txn_status(c), QP_TXN_INTRANS);
  qp_pool_release(c);
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_conn_txn_status(c), QP_TXN_IDLE);
  qp_result *r;
  assert_int_equal(qp_conn_exec(c, "SELECT count(*) FROM acct", NULL, 0, &r), QP_OK);
  assert_string_equal(qp_result_value(r, 0, 0, NULL), "0");
  qp_result_free(r);
  /* a failed transaction too */
  qpt_script(c, "BEGIN");
  assert_int_equal(qp_conn_exec(c, "SELECT 1/0", NULL, 0, NULL), QP_QUERY);
  assert_string_equal(qp_conn_sqlstate(c), "22012");
  assert_int_equal(qp_conn_txn_status(c), QP_TXN_INERROR);
  qp_pool_release(c);
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_conn_exec(c, "SELECT 1", NULL, 0, NULL), QP_OK);
  /* a committed one stays */
  qpt_script(c, "BEGIN");
  assert_int_equal(qp_conn_exec(c, "INSERT INTO acct VALUES ($1, $2)", v, 2, NULL), QP_OK);
  qpt_script(c, "COMMIT");
  qp_pool_release(c);
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_conn_exec(c, "SELECT count(*) FROM acct", NULL, 0, &r), QP_OK);
  assert_string_equal(qp_result_value(r, 0, 0, NULL), "1");
  qp_result_free(r);
  qp_pool_release(c);
  qp_pool_stats s = QP_POOL_STATS_INIT;
  qp_pool_stats_get(p, &s);
  assert_int_equal(s.rollbacks, 2);
  assert_int_equal(s.connects, 1); /* rolled back, not replaced */
  qp_pool_close(p);
}

static void test_session_reset(void **state) {
  (void)state;
  qp_pool *p = qpt_pool_open(g_db.dsn, 1, NULL, NULL);
  qp_conn *c;
  qp_result *r;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_conn_exec(c, "SHOW work_mem", NULL, 0, &r), QP_OK);
  char def[64];
  snprintf(def, sizeof def, "%s", qp_result_value(r, 0, 0, NULL));
  qp_result_free(r);
  qpt_script(c, "SET work_mem = '7MB'");
  qpt_script(c, "CREATE TEMP TABLE mine(x int)");
  assert_int_equal(qp_conn_exec(c, "SELECT pg_advisory_lock(4242)", NULL, 0, NULL), QP_OK);
  qp_pool_release(c);
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_conn_exec(c, "SHOW work_mem", NULL, 0, &r), QP_OK);
  assert_string_equal(qp_result_value(r, 0, 0, NULL), def);
  qp_result_free(r);
  assert_int_equal(qp_conn_exec(c, "SELECT * FROM mine", NULL, 0, NULL), QP_QUERY);
  assert_string_equal(qp_conn_sqlstate(c), "42P01");
  assert_int_equal(qp_conn_exec(c, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242",
                                NULL, 0, &r), QP_OK);
  assert_string_equal(qp_result_value(r, 0, 0, NULL), "0");
  qp_result_free(r);
  qp_pool_release(c);
  qp_pool_stats s = QP_POOL_STATS_INIT;
  qp_pool_stats_get(p, &s);
  assert_int_equal(s.resets, 1);
  qp_pool_close(p);

  /* policy always: DISCARD ALL after every lease, statements prepared again */
  qp_pool_options o;
  qpt_pool_options_init(&o);
  o.reset = QP_RESET_ALWAYS;
  p = qpt_pool_open(g_db.dsn, 1, NULL, &o);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
    qp_param x = qp_param_int(i);
    assert_int_equal(qp_conn_exec(c, "SELECT $1::int", &x, 1, &r), QP_OK);
    qp_result_free(r);
    assert_int_equal(qp_conn_exec(c, "SELECT count(*) FROM pg_prepared_statements", NULL, 0, &r),
                     QP_OK);
    assert_string_equal(qp_result_value(r, 0, 0, NULL), "2"); /* only this lease's two */
    qp_result_free(r);
    qp_pool_release(c);
  }
  qp_pool_stats_get(p, &s);
  assert_int_equal(s.resets, 3);
  assert_int_equal(s.connects, 1);
  qp_pool_close(p);

  /* policy never: the session is the application's */
  qpt_pool_options_init(&o);
  o.reset = QP_RESET_NEVER;
  p = qpt_pool_open(g_db.dsn, 1, NULL, &o);
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  qpt_script(c, "SET work_mem = '9MB'");
  qp_pool_release(c);
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_conn_exec(c, "SHOW work_mem", NULL, 0, &r), QP_OK);
  assert_string_equal(qp_result_value(r, 0, 0, NULL), "9MB");
  qp_result_free(r);
  qp_pool_release(c);
  qp_pool_close(p);
}

/* The pool's reset decisions come from the classifier (changes_session):
 * each case here was decided wrongly by the keyword scanner it replaced. */
static void test_session_changes_from_classifier(void **state) {
  (void)state;
  qp_pool *p = qpt_pool_open(g_db.dsn, 1, NULL, NULL);
  qp_conn *c;
  qp_result *r;
  qp_pool_stats s = QP_POOL_STATS_INIT;
  /* SELECT INTO TEMP creates a temporary table: reset (the scanner saw a SELECT) */
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_conn_exec(c, "SELECT 1 AS x INTO TEMP leaked", NULL, 0, NULL), QP_OK);
  qp_pool_release(c);
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_conn_exec(c, "SELECT * FROM leaked", NULL, 0, NULL), QP_QUERY);
  assert_string_equal(qp_conn_sqlstate(c), "42P01");
  qp_pool_release(c);
  /* a DO block may change anything: reset (the scanner only looked for set_config) */
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  qpt_script(c, "DO $$ BEGIN EXECUTE 'SET work_mem = ''5MB'''; END $$");
  qp_pool_release(c);
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_conn_exec(c, "SHOW work_mem", NULL, 0, &r), QP_OK);
  assert_string_not_equal(qp_result_value(r, 0, 0, NULL), "5MB");
  qp_result_free(r);
  qp_pool_release(c);
  assert_int_equal(qp_pool_stats_get(p, &s), QP_OK);
  uint64_t resets = s.resets;
  assert_int_equal(resets, 2);
  /* the name of a session function in a string, or a transaction-scoped
   * advisory lock, changes nothing: no reset (the scanner matched text) */
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_conn_exec(c, "SELECT 'set_config, pg_advisory_lock'", NULL, 0, NULL), QP_OK);
  qpt_script(c, "BEGIN; SELECT pg_advisory_xact_lock(7); COMMIT");
  qp_pool_release(c);
  assert_int_equal(qp_pool_stats_get(p, &s), QP_OK);
  assert_int_equal(s.resets, resets);
  /* a script that only names DISCARD in a string keeps the prepared
   * statements (the scanner forgot them all, and the server kept the old ones) */
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_conn_exec(c, "SELECT 42", NULL, 0, NULL), QP_OK);
  qpt_script(c, "SELECT 'discard all, deallocate all'");
  assert_int_equal(qp_conn_exec(c, "SELECT 42", NULL, 0, NULL), QP_OK);
  assert_int_equal(qp_conn_exec(c, "SELECT count(*) FROM pg_prepared_statements "
                                   "WHERE statement = 'SELECT 42'", NULL, 0, &r), QP_OK);
  assert_string_equal(qp_result_value(r, 0, 0, NULL), "1");
  qp_result_free(r);
  qp_pool_release(c);
  qp_pool_close(p);
}

static void test_reprepare_after_deallocate(void **state) {
  (void)state;
  qp_pool *p = qpt_pool_open(g_db.dsn, 1, NULL, NULL);
  qp_conn *c;
  qp_result *r;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  /* (created first: a script that mentions DEALLOCATE drops the cache) */
  qpt_script(c, "CREATE FUNCTION drop_all() RETURNS void LANGUAGE plpgsql AS "
                "$$ BEGIN EXECUTE 'DEALLOCATE ALL'; END $$");
  qp_param x = qp_param_int(20);
  assert_int_equal(qp_conn_exec(c, "SELECT $1::int + 1", &x, 1, NULL), QP_OK);
  assert_int_equal(qp_conn_exec(c, "SELECT count(*) FROM pg_prepared_statements", NULL, 0, &r),
                   QP_OK);
  assert_string_equal(qp_result_value(r, 0, 0, NULL), "2");
  qp_result_free(r);
  /* seen by the pool: the cache is dropped at once */
  qpt_script(c, "DEALLOCATE ALL");
  assert_int_equal(qp_conn_exec(c, "SELECT $1::int + 1", &x, 1, &r), QP_OK);
  assert_string_equal(qp_result_value(r, 0, 0, NULL), "21");
  qp_result_free(r);
  /* not seen by the pool (run inside a function): SQLSTATE 26000 on next
   * use, prepared again and retried transparently outside a transaction */
  assert_int_equal(qp_conn_exec(c, "SELECT $1::int + 1", &x, 1, NULL), QP_OK);
  qp_status st = qp_conn_exec(c, "SELECT drop_all()", NULL, 0, NULL);
  if (st == QP_OK) {
    assert_int_equal(qp_conn_exec(c, "SELECT $1::int + 1", &x, 1, &r), QP_OK);
    assert_string_equal(qp_result_value(r, 0, 0, NULL), "21");
    qp_result_free(r);
  } else {
    /* PostgreSQL refuses DEALLOCATE in PL/pgSQL's EXECUTE: DISCARD via a
     * script is the remaining path, covered below */
    print_message("DEALLOCATE inside a function refused: %s\n", qp_conn_errmsg(c));
  }
  qpt_script(c, "DISCARD ALL");
  assert_int_equal(qp_conn_exec(c, "SELECT $1::int + 1", &x, 1, &r), QP_OK);
  assert_string_equal(qp_result_value(r, 0, 0, NULL), "21");
  qp_result_free(r);
  qp_pool_release(c);
  qp_pool_stats s = QP_POOL_STATS_INIT;
  qp_pool_stats_get(p, &s); /* counted when the lease ended */
  if (st == QP_OK) assert_true(s.reprepares >= 1);
  qp_pool_close(p);
}

static void test_terminated_backend_recovers(void **state) {
  (void)state;
  qp_pool_options o;
  qpt_pool_options_init(&o);
  o.validation_ms = 0; /* prove that the pre-check alone catches it */
  qp_pool *p = qpt_pool_open(g_db.dsn, 1, NULL, &o);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  int64_t pid = backend_pid(c);
  qp_pool_release(c);
  terminate_backend(pid);
  usleep(100000);
  /* next use recovers: the pooled connection was found dead before the
   * statement was sent, and replaced */
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  int64_t pid2 = backend_pid(c);
  assert_true(pid2 != pid);
  /* killed while leased: the statement fails with QP_UNAVAILABLE, and the
   * connection is replaced on release */
  terminate_backend(pid2);
  usleep(100000);
  qp_status st = qp_conn_exec(c, "SELECT 1", NULL, 0, NULL);
  assert_int_equal(st, QP_UNAVAILABLE);
  /* the server said why (FATAL 57P01 before closing): that, not libpq's
   * "server closed the connection" 08006 */
  if (strcmp(qp_conn_sqlstate(c), "57P01") != 0)
    fail_msg("killed while leased: SQLSTATE %s (%s), expected 57P01", qp_conn_sqlstate(c),
             qp_conn_errmsg(c));
  qp_pool_release(c);
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_conn_exec(c, "SELECT 1", NULL, 0, NULL), QP_OK);
  qp_pool_release(c);
  qp_pool_stats s = QP_POOL_STATS_INIT;
  qp_pool_stats_get(p, &s);
  assert_int_equal(s.broken, 2);
  qp_pool_close(p);
}

static void test_validation_of_idle_connections(void **state) {
  (void)state;
  qp_pool_options o;
  qpt_pool_options_init(&o);
  o.validation_ms = 50;
  qp_pool *p = qpt_pool_open(g_db.dsn, 1, NULL, &o);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  int64_t pid = backend_pid(c);
  qp_pool_release(c);
  /* a healthy connection idle past validation_ms passes its ping */
  usleep(80000);
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  qp_pool_release(c);
  qp_pool_stats s = QP_POOL_STATS_INIT;
  qp_pool_stats_get(p, &s);
  assert_int_equal(s.validation_failures, 0);
  assert_int_equal(s.connects, 1);
  /* a dead one fails it and is replaced before it is handed out */
  terminate_backend(pid);
  usleep(80000);
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_conn_exec(c, "SELECT 1", NULL, 0, NULL), QP_OK);
  qp_pool_release(c);
  qp_pool_stats_get(p, &s);
  assert_int_equal(s.validation_failures, 1);
  assert_int_equal(s.connects, 2);
  qp_pool_close(p);
}

typedef struct canceller {
  qp_conn *c;
} canceller;

static void *cancel_soon(void *arg) {
  canceller *k = arg;
  usleep(200000);
  qp_conn_cancel(k->c);
  return NULL;
}

static void test_cancel(void **state) {
  (void)state;
  qp_pool *p = qpt_pool_open(g_db.dsn, 1, NULL, NULL);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  canceller k = {c};
  pthread_t th;
  pthread_create(&th, NULL, cancel_soon, &k);
  assert_int_equal(qp_conn_exec(c, "SELECT pg_sleep(20)", NULL, 0, NULL), QP_QUERY);
  pthread_join(th, NULL);
  assert_string_equal(qp_conn_sqlstate(c), "57014");
  assert_int_equal(qp_conn_exec(c, "SELECT 1", NULL, 0, NULL), QP_OK);
  qp_pool_release(c);
  qp_pool_close(p);
}

static void test_unavailable_and_password_redaction(void **state) {
  (void)state;
  logcap cap = {.mu = PTHREAD_MUTEX_INITIALIZER};
  qp_hooks h = {0};
  h.log_fn = cap_log;
  h.log_ud = &cap;
  qp_pool_options o;
  qpt_pool_options_init(&o);
  o.hooks = &h;
  o.acquire_timeout_ms = 1000;
  char dsn[512];
  /* nothing listens on this port: database unavailable, immediately */
  snprintf(dsn, sizeof dsn, "host=%s port=1 user=postgres password=Sup3rS3cretPw dbname=x",
           getenv("PGHOST"));
  qp_pool *p = qpt_pool_open(dsn, 2, NULL, &o);
  qp_conn *c;
  uint64_t t0 = (uint64_t)time(NULL);
  assert_int_equal(qp_pool_acquire(p, &c), QP_UNAVAILABLE);
  assert_true((uint64_t)time(NULL) - t0 <= 1);
  char msg[1024];
  qp_pool_errmsg(p, msg, sizeof msg);
  assert_non_null(strstr(msg, "database unavailable"));
  assert_non_null(strstr(msg, "SQLSTATE 08001"));
  assert_null(strstr(msg, "Sup3rS3cretPw"));
  assert_non_null(strstr(msg, "password=***"));
  /* a second try within the backoff fails fast with the same cause */
  assert_int_equal(qp_pool_acquire(p, &c), QP_UNAVAILABLE);
  qp_pool_close(p);
  /* an unknown database: 3D000; a URI password never shows either */
  snprintf(dsn, sizeof dsn, "postgresql://postgres:An0therS3cret@%%2Ftmp%%2Fnowhere:%s/x",
           getenv("PGPORT"));
  p = qpt_pool_open(dsn, 1, NULL, &o);
  assert_int_equal(qp_pool_acquire(p, &c), QP_UNAVAILABLE);
  qp_pool_errmsg(p, msg, sizeof msg);
  assert_null(strstr(msg, "An0therS3cret"));
  qp_pool_close(p);
  snprintf(dsn, sizeof dsn, "host=%s port=%s user=postgres password=Th1rdS3cret dbname=no_such_db",
           getenv("PGHOST"), getenv("PGPORT"));
  p = qpt_pool_open(dsn, 1, NULL, &o);
  assert_int_equal(qp_pool_acquire(p, &c), QP_UNAVAILABLE);
  qp_pool_errmsg(p, msg, sizeof msg);
  assert_non_null(strstr(msg, "3D000"));
  qp_pool_close(p);
  pthread_mutex_lock(&cap.mu);
  assert_true(cap.len > 0);
  assert_null(strstr(cap.text, "Sup3rS3cretPw"));
  assert_null(strstr(cap.text, "An0therS3cret"));
  assert_null(strstr(cap.text, "Th1rdS3cret"));
  pthread_mutex_unlock(&cap.mu);
}

static void test_records_into_profile(void **state) {
  (void)state;
  qp_profile *prof;
  char err[256];
  assert_int_equal(qp_profile_new(&prof, NULL, err, sizeof err), QP_OK);
  qp_pool_options o;
  qpt_pool_options_init(&o);
  o.profile = prof;
  qp_pool *p = qpt_pool_open(g_db.dsn, 2, NULL, &o);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  for (int i = 0; i < 5; i++) {
    qp_param x = qp_param_int(i);
    assert_int_equal(qp_conn_exec(c, "SELECT $1::int * 2", &x, 1, NULL), QP_OK);
  }
  assert_int_equal(qp_conn_exec(c, "SELECT * FROM nothing_here", NULL, 0, NULL), QP_QUERY);
  qp_pool_release(c);
  assert_int_equal(qp_profile_recorded(prof), 6);
  qp_pool_close(p);
  qp_profile_free(prof);
}

typedef struct seen {
  int n;
  char text[8][128];
  uint64_t calls[8], total_ns[8];
} seen;

static int collect(const qp_query_summary *q, void *ud) {
  seen *f = ud;
  if (f->n < 8) {
    snprintf(f->text[f->n], sizeof f->text[f->n], "%s", q->query);
    f->calls[f->n] = q->calls;
    f->total_ns[f->n] = q->total_ns;
  }
  f->n++;
  return 0;
}

static int find(const seen *f, const char *text) {
  for (int i = 0; i < f->n && i < 8; i++)
    if (strcmp(f->text[i], text) == 0) return i;
  fail_msg("'%s' was not stored", text);
  return -1;
}

static void stored(qp_profile *prof, seen *out) {
  qp_store *st = qpt_flushed_store(prof, "store.db");
  memset(out, 0, sizeof *out);
  assert_int_equal(qp_store_summarize(st, INT64_MIN, INT64_MAX, collect, out), QP_OK);
  qp_store_close(st);
}

/* The profile's rules name the pool's statements (one fingerprint for
 * three temp names), and a script is recorded statement by statement. The
 * server sends a script's results together at its end, so the time cannot
 * be split: it all goes to the first statement, the others are counted
 * with 0 ns. COPY TO STDOUT in a script is drained and the connection
 * stays usable. */
static void test_rules_and_scripts_per_statement(void **state) {
  (void)state;
  const char *rules[] = {"tmp_[0-9]+=tmp_?"};
  qp_profile_options po = {.rules = rules, .nrules = 1};
  qp_profile *prof;
  char err[256];
  assert_int_equal(qp_profile_new(&prof, &po, err, sizeof err), QP_OK);
  qp_pool_options o;
  qpt_pool_options_init(&o);
  o.profile = prof;
  qp_pool *p = qpt_pool_open(g_db.dsn, 1, NULL, &o);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  assert_int_equal(qp_conn_exec(c, "SELECT 1 AS tmp_123", NULL, 0, NULL), QP_OK);
  assert_int_equal(qp_conn_exec(c, "SELECT 1 AS tmp_456", NULL, 0, NULL), QP_OK);
  assert_int_equal(qp_conn_exec(c, "SELECT 1 AS tmp_789", NULL, 0, NULL), QP_OK);
  qpt_script(c, "SELECT pg_sleep(0.05) AS first; SELECT 2 AS second; "
                "SELECT pg_sleep(0.1) AS third; COPY (SELECT 1) TO STDOUT");
  assert_int_equal(qp_conn_exec_script(c, "SELECT 3 AS fourth; SELECT * FROM no_such_table; "
                                          "SELECT 5 AS never"),
                   QP_QUERY);
  assert_string_equal(qp_conn_sqlstate(c), "42P01");
  assert_int_equal(qp_conn_exec(c, "SELECT 1 AS tmp_1", NULL, 0, NULL), QP_OK);
  qp_pool_release(c);
  seen f;
  stored(prof, &f);
  assert_int_equal(f.n, 7);
  assert_int_equal(f.calls[find(&f, "select ? as tmp_?")], 4);
  uint64_t first = f.total_ns[find(&f, "select pg_sleep(?) as first")];
  uint64_t second = f.total_ns[find(&f, "select ? as second")];
  uint64_t third = f.total_ns[find(&f, "select pg_sleep(?) as third")];
  assert_true(first >= 150000000u);
  assert_int_equal(second, 0);
  assert_int_equal(third, 0);
  find(&f, "copy (select ?) to stdout");
  find(&f, "select ? as fourth");
  find(&f, "select * from no_such_table");
  qp_pool_close(p);
  qp_profile_free(prof);
}

typedef struct who_seen {
  int n;
  char user[8][64], app[8][64], host[8][64];
  uint64_t calls[8];
} who_seen;

static int collect_who(const qp_query_summary *q, void *ud) {
  who_seen *w = ud;
  if (strcmp(q->query, "select ? as who") != 0) return 0;
  if (w->n < 8) {
    snprintf(w->user[w->n], sizeof w->user[0], "%s", q->user);
    snprintf(w->app[w->n], sizeof w->app[0], "%s", q->application);
    snprintf(w->host[w->n], sizeof w->host[0], "%s", q->host);
    w->calls[w->n] = q->calls;
  }
  w->n++;
  return 0;
}

static uint64_t who_calls(const who_seen *w, const char *user, const char *app, const char *host) {
  for (int i = 0; i < w->n && i < 8; i++)
    if (strcmp(w->user[i], user) == 0 && strcmp(w->app[i], app) == 0 &&
        strcmp(w->host[i], host) == 0)
      return w->calls[i];
  return 0;
}

/* Who ran it: the session's role (followed through SET SESSION
 * AUTHORIZATION, back after the reset on release), application_name (the
 * program's name when the DSN names none) and the pool's host, read back
 * from the store. */
static void test_dims_role_application_host(void **state) {
  (void)state;
  char role[64], sql[256], dsn_a[600], dsn_b[600];
  snprintf(role, sizeof role, "qp_who_%d", (int)getpid());
  snprintf(sql, sizeof sql, "CREATE ROLE %s LOGIN", role);
  qpt_pg_exec(qpt_pg_dsn(), sql);
  snprintf(dsn_a, sizeof dsn_a, "%s application_name=appA", g_db.dsn);
  qpt_pg_dsn_as(dsn_b, sizeof dsn_b, role, g_db.name);
  qp_profile *prof;
  char err[256];
  assert_int_equal(qp_profile_new(&prof, NULL, err, sizeof err), QP_OK);
  qp_pool_options o;
  qpt_pool_options_init(&o);
  o.profile = prof;
  o.host = "h1";
  qp_pool *a = qpt_pool_open(dsn_a, 1, NULL, &o);
  o.host = NULL;
  qp_pool *b = qpt_pool_open(dsn_b, 1, NULL, &o);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(a, &c), QP_OK);
  for (int i = 0; i < 3; i++) assert_int_equal(qp_conn_exec(c, "SELECT 7 AS who", NULL, 0, NULL), QP_OK);
  snprintf(sql, sizeof sql, "SET SESSION AUTHORIZATION %s", role);
  qpt_script(c, sql);
  for (int i = 0; i < 2; i++) assert_int_equal(qp_conn_exec(c, "SELECT 7 AS who", NULL, 0, NULL), QP_OK);
  qp_pool_release(c); /* dirty: reset, back to postgres */
  assert_int_equal(qp_pool_acquire(a, &c), QP_OK);
  assert_int_equal(qp_conn_exec(c, "SELECT 7 AS who", NULL, 0, NULL), QP_OK);
  qp_pool_release(c);
  assert_int_equal(qp_pool_acquire(b, &c), QP_OK);
  for (int i = 0; i < 4; i++) assert_int_equal(qp_conn_exec(c, "SELECT 7 AS who", NULL, 0, NULL), QP_OK);
  qp_pool_release(c);
  qp_pool_close(a);
  qp_pool_close(b);
  qp_store *st = qpt_flushed_store(prof, "who.db");
  who_seen w;
  memset(&w, 0, sizeof w);
  assert_int_equal(qp_store_summarize(st, INT64_MIN, INT64_MAX, collect_who, &w), QP_OK);
  qp_store_close(st);
  qp_profile_free(prof);
  assert_int_equal(w.n, 3);
  assert_int_equal(who_calls(&w, "postgres", "appA", "h1"), 4);
  assert_int_equal(who_calls(&w, role, "appA", "h1"), 2);
  assert_int_equal(who_calls(&w, role, "test_pool_pg", qp_default_host()), 4);
  snprintf(sql, sizeof sql, "DROP ROLE %s", role);
  qpt_pg_exec(qpt_pg_dsn(), sql);
}

typedef struct rows_seen {
  size_t n;
  char line[64][256];
} rows_seen;

static int collect_rows(const qp_query_summary *q, void *ud) {
  rows_seen *w = ud;
  if (w->n < 64)
    snprintf(w->line[w->n++], sizeof w->line[0], "%s|%s|%s|%llu|%llu", q->user, q->application,
             q->query, (unsigned long long)q->calls, (unsigned long long)q->errors);
  return 0;
}

static int cmp_line(const void *a, const void *b) { return strcmp(a, b); }

/* Every statement through the pool is charged to the role and application
 * it ran under, as they change during the lease: SET ROLE, SET
 * application_name, RESET ROLE, SET LOCAL ROLE in a committed block, SET
 * ROLE and application_name in a rolled-back block, SET ROLE in a block
 * that fails (its COMMIT rolls back), a script (charged to what it started
 * under), a block left open at release (rolled back), the next lease after
 * the reset (DISCARD ALL: back to the login role and the DSN's
 * application), and with the reset policy never, the committed role kept
 * into the next lease while the rolled-back one is not. What a statement
 * changes applies from the next statement. */
static void test_dims_follow_set_role_and_application(void **state) {
  (void)state;
  char r2[64], r3[64], sql[256], dsn_a[600], dsn_b[600];
  snprintf(r2, sizeof r2, "qp_fr2_%d", (int)getpid());
  snprintf(r3, sizeof r3, "qp_fr3_%d", (int)getpid());
  snprintf(sql, sizeof sql, "CREATE ROLE %s", r2);
  qpt_pg_exec(qpt_pg_dsn(), sql);
  snprintf(sql, sizeof sql, "CREATE ROLE %s", r3);
  qpt_pg_exec(qpt_pg_dsn(), sql);
  snprintf(dsn_a, sizeof dsn_a, "%s application_name=app0", g_db.dsn);
  snprintf(dsn_b, sizeof dsn_b, "%s application_name=appB", g_db.dsn);
  qp_profile *prof;
  char err[256];
  assert_int_equal(qp_profile_new(&prof, NULL, err, sizeof err), QP_OK);
  qp_pool_options o;
  qpt_pool_options_init(&o);
  o.profile = prof;
  qp_pool *a = qpt_pool_open(dsn_a, 1, NULL, &o);
  o.reset = QP_RESET_NEVER;
  qp_pool *b = qpt_pool_open(dsn_b, 1, NULL, &o);
  char set_r2[128], set_r3[128], local_r2[128];
  snprintf(set_r2, sizeof set_r2, "SET ROLE %s", r2);
  snprintf(set_r3, sizeof set_r3, "SET ROLE %s", r3);
  snprintf(local_r2, sizeof local_r2, "SET LOCAL ROLE %s", r2);

  qp_conn *c;
  assert_int_equal(qp_pool_acquire(a, &c), QP_OK);
  qpt_exec(c, "SELECT 1 AS a");
  qpt_exec(c, set_r2);
  qpt_exec(c, "SELECT 1 AS a");
  qpt_exec(c, "SET application_name = 'x'");
  qpt_exec(c, "SELECT 1 AS a");
  qpt_exec(c, "RESET ROLE");
  qpt_exec(c, "SELECT 1 AS a");
  qpt_exec(c, "BEGIN");
  qpt_exec(c, local_r2);
  qpt_exec(c, "SELECT 1 AS a");
  qpt_exec(c, "COMMIT");
  qpt_exec(c, "SELECT 1 AS a");
  qpt_exec(c, "BEGIN");
  qpt_exec(c, set_r3);
  qpt_exec(c, "SET application_name = 'y'");
  qpt_exec(c, "SELECT 1 AS a");
  qpt_exec(c, "ROLLBACK");
  qpt_exec(c, "SELECT 1 AS a");
  qpt_exec(c, "BEGIN");
  qpt_exec(c, set_r3);
  qpt_exec(c, "COMMIT");
  qpt_exec(c, "SELECT 1 AS a");
  qpt_exec(c, "BEGIN");
  qpt_exec(c, set_r2);
  assert_int_equal(qp_conn_exec(c, "SELECT 1/0 AS a", NULL, 0, NULL), QP_QUERY);
  qpt_exec(c, "COMMIT"); /* of a failed block: rolled back */
  qpt_exec(c, "SELECT 1 AS a");
  snprintf(sql, sizeof sql, "SET ROLE %s; SELECT 2 AS w", r2);
  qpt_script(c, sql);
  qpt_exec(c, "SELECT 1 AS a");
  qpt_exec(c, "BEGIN");
  qpt_exec(c, set_r3);
  qp_pool_release(c); /* rolled back, then reset: DISCARD ALL */
  assert_int_equal(qp_pool_acquire(a, &c), QP_OK);
  qpt_exec(c, "SELECT 1 AS a");
  qp_pool_release(c);

  assert_int_equal(qp_pool_acquire(b, &c), QP_OK);
  qpt_exec(c, set_r3);
  qpt_exec(c, "SELECT 1 AS b");
  qpt_exec(c, "BEGIN");
  qpt_exec(c, set_r2);
  qpt_exec(c, "SET application_name = 'z'");
  qpt_exec(c, "SELECT 1 AS b");
  qp_pool_release(c); /* rolled back; policy never: no reset */
  assert_int_equal(qp_pool_acquire(b, &c), QP_OK);
  qpt_exec(c, "SELECT 1 AS b");
  qpt_exec(c, "RESET ROLE");
  qpt_exec(c, "SELECT 1 AS b");
  qp_pool_release(c);
  qp_pool_close(a);
  qp_pool_close(b);

  qp_store *st = qpt_flushed_store(prof, "follow.db");
  static rows_seen w;
  memset(&w, 0, sizeof w);
  assert_int_equal(qp_store_summarize(st, INT64_MIN, INT64_MAX, collect_rows, &w), QP_OK);
  qp_store_close(st);
  qp_profile_free(prof);
  const char *P = "postgres";
  static char want[64][256];
  size_t nw = 0;
#define ROW(u, app, q, calls, errors) \
  snprintf(want[nw++], sizeof want[0], "%s|%s|%s|%d|%d", u, app, q, calls, errors)
  char q_r2[128], q_r3[128], q_local_r2[128];
  snprintf(q_r2, sizeof q_r2, "set role %s", r2);
  snprintf(q_r3, sizeof q_r3, "set role %s", r3);
  snprintf(q_local_r2, sizeof q_local_r2, "set local role %s", r2);
  ROW(P, "app0", "select ? as a", 2, 0);
  ROW(P, "app0", q_r2, 1, 0);
  ROW(r2, "app0", "select ? as a", 1, 0);
  ROW(r2, "app0", "set application_name = ?", 1, 0);
  ROW(r2, "x", "reset role", 1, 0);
  ROW(r2, "x", "select ? as a", 3, 0);
  ROW(r2, "x", "commit", 2, 0);
  ROW(r2, "x", "select ? / ? as a", 1, 1);
  ROW(r2, "x", "begin", 1, 0);
  ROW(r2, "x", q_r3, 1, 0);
  ROW(P, "x", "select ? as a", 3, 0);
  ROW(P, "x", "begin", 3, 0);
  ROW(P, "x", q_local_r2, 1, 0);
  ROW(P, "x", q_r3, 2, 0);
  ROW(r3, "x", "set application_name = ?", 1, 0);
  ROW(r3, "x", "commit", 1, 0);
  ROW(r3, "x", "select ? as a", 2, 0);
  ROW(r3, "x", "begin", 1, 0);
  ROW(r3, "x", q_r2, 2, 0);
  ROW(r3, "x", "select ? as w", 1, 0);
  ROW(r3, "y", "select ? as a", 1, 0);
  ROW(r3, "y", "rollback", 1, 0);
  ROW(P, "appB", q_r3, 1, 0);
  ROW(P, "appB", "select ? as b", 1, 0);
  ROW(r3, "appB", "select ? as b", 2, 0);
  ROW(r3, "appB", "begin", 1, 0);
  ROW(r3, "appB", q_r2, 1, 0);
  ROW(r3, "appB", "reset role", 1, 0);
  ROW(r2, "appB", "set application_name = ?", 1, 0);
  ROW(r2, "z", "select ? as b", 1, 0);
#undef ROW
  qsort(w.line, w.n, sizeof w.line[0], cmp_line);
  qsort(want, nw, sizeof want[0], cmp_line);
  bool same = w.n == nw;
  for (size_t i = 0; same && i < nw; i++) same = strcmp(w.line[i], want[i]) == 0;
  if (!same) {
    for (size_t i = 0; i < w.n; i++) printf("got  %s\n", w.line[i]);
    for (size_t i = 0; i < nw; i++) printf("want %s\n", want[i]);
    fail_msg("rows per user and application differ");
  }
  snprintf(sql, sizeof sql, "DROP ROLE %s", r2);
  qpt_pg_exec(qpt_pg_dsn(), sql);
  snprintf(sql, sizeof sql, "DROP ROLE %s", r3);
  qpt_pg_exec(qpt_pg_dsn(), sql);
}

/* A server that refuses new connections (53300: here the role's connection
 * limit) while one lease is out: an acquire that times out while the pool
 * could still open connections says the database is the cause
 * (QP_UNAVAILABLE with 53300), never QP_EXHAUSTED, which would make an
 * operator raise max_size against a full server. */
static void test_full_server_is_unavailable_not_exhausted(void **state) {
  (void)state;
  char role[64], sql[256], dsn[512];
  snprintf(role, sizeof role, "qp_lim_%d", (int)getpid());
  snprintf(sql, sizeof sql, "CREATE ROLE %s LOGIN CONNECTION LIMIT 1", role);
  qpt_pg_exec(qpt_pg_dsn(), sql);
  qpt_pg_dsn_as(dsn, sizeof dsn, role, g_db.name);
  logcap cap = {.mu = PTHREAD_MUTEX_INITIALIZER};
  qp_hooks h = {0};
  h.log_fn = cap_log;
  h.log_ud = &cap;
  qp_pool_options o;
  qpt_pool_options_init(&o);
  o.hooks = &h;
  o.acquire_timeout_ms = 600;
  qp_pool *p = qpt_pool_open(dsn, 3, NULL, &o);
  qp_conn *c1, *c2;
  assert_int_equal(qp_pool_acquire(p, &c1), QP_OK);
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  char msg[1024];
  assert_int_equal(qp_pool_acquire_msg(p, &c2, -1, msg, sizeof msg), QP_UNAVAILABLE);
  clock_gettime(CLOCK_MONOTONIC, &b);
  double took_ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
  assert_true(took_ms >= 550); /* retried with backoff until the timeout */
  /* the cause: 53300 (or, when the last attempt was cut short by the
   * acquire's own deadline, its connect timeout) */
  assert_true(strstr(msg, "53300") != NULL || strstr(msg, "timeout expired") != NULL);
  assert_non_null(strstr(msg, "database unavailable"));
  pthread_mutex_lock(&cap.mu);
  assert_non_null(strstr(cap.text, "too many connections for role"));
  assert_non_null(strstr(cap.text, "SQLSTATE 53300"));
  pthread_mutex_unlock(&cap.mu);
  qp_pool_stats s = QP_POOL_STATS_INIT;
  qp_pool_stats_get(p, &s);
  assert_int_equal(s.timeouts, 0);
  assert_int_equal(s.unavailable, 1);
  assert_true(s.connect_failures >= 2);
  /* the lease that is out still works, and is reused once released */
  assert_int_equal(qp_conn_exec(c1, "SELECT 1", NULL, 0, NULL), QP_OK);
  qp_pool_release(c1);
  assert_int_equal(qp_pool_acquire(p, &c2), QP_OK);
  qp_pool_release(c2);
  qp_pool_close(p);
  snprintf(sql, sizeof sql, "DROP ROLE %s", role);
  qpt_pg_exec(qpt_pg_dsn(), sql);
}

/* ---- a proxy that delays the server's EOF ---------------------------------
 * A real network condition, not a fake server: bytes go both ways
 * unchanged between the pool and the fixture's socket, but when the server
 * closes a connection the client sees the close only delay_ms later. That
 * makes deterministic the window in which a server's goodbye (FATAL 57P01)
 * has arrived and its EOF has not. */
typedef struct proxy {
  char dir[256];
  int lfd;
  int delay_ms;
  atomic_int live; /* forwarding threads running */
  pthread_t th;
} proxy;

typedef struct pipe_arg {
  proxy *px;
  int cfd, sfd;
} pipe_arg;

static void *proxy_pipe(void *arg) {
  pipe_arg a = *(pipe_arg *)arg;
  free(arg);
  char buf[8192];
  for (;;) {
    struct pollfd f[2] = {{a.cfd, POLLIN, 0}, {a.sfd, POLLIN, 0}};
    if (poll(f, 2, -1) < 0) break;
    if (f[0].revents) {
      ssize_t n = read(a.cfd, buf, sizeof buf);
      if (n <= 0) break;                 /* the client left */
      if (write(a.sfd, buf, (size_t)n) != n) { /* the server is gone: drop it */ }
    }
    if (f[1].revents) {
      ssize_t n = read(a.sfd, buf, sizeof buf);
      if (n <= 0) { /* the server closed: tell the client only later */
        usleep((useconds_t)a.px->delay_ms * 1000);
        break;
      }
      if (write(a.cfd, buf, (size_t)n) != n) break;
    }
  }
  close(a.cfd);
  close(a.sfd);
  atomic_fetch_sub(&a.px->live, 1);
  return NULL;
}

static void *proxy_accept(void *arg) {
  proxy *px = arg;
  char up[512];
  snprintf(up, sizeof up, "%s/.s.PGSQL.%s", getenv("PGHOST"), getenv("PGPORT"));
  for (;;) {
    int cfd = accept(px->lfd, NULL, NULL);
    if (cfd < 0) return NULL; /* shut down */
    int sfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(up) >= sizeof sa.sun_path) return NULL;
    memcpy(sa.sun_path, up, strlen(up) + 1);
    if (sfd < 0 || connect(sfd, (struct sockaddr *)&sa, sizeof sa) != 0) {
      close(cfd);
      if (sfd >= 0) close(sfd);
      continue;
    }
    pipe_arg *pa = malloc(sizeof *pa);
    *pa = (pipe_arg){px, cfd, sfd};
    atomic_fetch_add(&px->live, 1);
    pthread_t t;
    pthread_create(&t, NULL, proxy_pipe, pa);
    pthread_detach(t);
  }
}

static void proxy_start(proxy *px, int delay_ms) {
  snprintf(px->dir, sizeof px->dir, "%s", qpt_tempdir());
  px->delay_ms = delay_ms;
  atomic_init(&px->live, 0);
  px->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  char path[512];
  snprintf(path, sizeof path, "%s/.s.PGSQL.%s", px->dir, getenv("PGPORT"));
  assert_true(strlen(path) < sizeof sa.sun_path);
  memcpy(sa.sun_path, path, strlen(path) + 1);
  assert_int_equal(bind(px->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
  assert_int_equal(listen(px->lfd, 16), 0);
  assert_int_equal(pthread_create(&px->th, NULL, proxy_accept, px), 0);
}

static void proxy_stop(proxy *px) {
  shutdown(px->lfd, SHUT_RDWR);
  pthread_join(px->th, NULL);
  close(px->lfd);
  for (int i = 0; i < 500 && atomic_load(&px->live) > 0; i++) usleep(10000);
}

/* The server's goodbye to an idle connection (pg_terminate_backend: FATAL
 * 57P01, then EOF) is noticed from the FATAL alone, before its EOF has
 * arrived: the lease's first statement reconnects in place instead of
 * being sent on a dead session (it used to fail with 08006). */
static void test_goodbye_noticed_before_eof(void **state) {
  (void)state;
  proxy px;
  proxy_start(&px, 1500);
  char dsn[512];
  snprintf(dsn, sizeof dsn, "host=%s port=%s user=postgres dbname=%s", px.dir, getenv("PGPORT"),
           g_db.name);
  logcap cap = {.mu = PTHREAD_MUTEX_INITIALIZER};
  qp_hooks h = {0};
  h.log_fn = cap_log;
  h.log_ud = &cap;
  qp_pool_options o;
  qpt_pool_options_init(&o);
  o.hooks = &h;
  o.validation_ms = 0; /* only the precheck may notice */
  qp_pool *p = qpt_pool_open(dsn, 1, NULL, &o);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  int64_t pid = backend_pid(c);
  qp_pool_release(c);
  terminate_backend(pid);
  usleep(200000); /* the FATAL has come through; the EOF is held back */
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  if (qp_conn_exec(c, "SELECT 1", NULL, 0, NULL) != QP_OK)
    fail_msg("statement on a goodbye'd connection: %s (%s)", qp_conn_errmsg(c),
             qp_conn_sqlstate(c));
  clock_gettime(CLOCK_MONOTONIC, &b);
  /* Did not wait for the EOF, which the proxy holds back for 1.5 s (whole
   * nanoseconds: a second boundary between a and b is not a wait). */
  int64_t waited_ms = ((int64_t)b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
  if (waited_ms >= 1000) fail_msg("the statement waited %lld ms: it waited for the EOF", (long long)waited_ms);
  assert_true(backend_pid(c) != pid);
  qp_pool_release(c);
  qp_pool_stats s = QP_POOL_STATS_INIT;
  qp_pool_stats_get(p, &s);
  assert_int_equal(s.broken, 1);
  qp_pool_close(p);
  proxy_stop(&px);
  pthread_mutex_lock(&cap.mu);
  assert_non_null(strstr(cap.text, "reconnected"));
  pthread_mutex_unlock(&cap.mu);
}

/* EXPLAIN through a lease on the real server, never recorded: TEXT and
 * JSON plans with parameters; ANALYZE runs the statement in a transaction
 * that is rolled back (or a savepoint inside the caller's); a timeout
 * applies to the EXPLAIN alone. The library's own statements (quiet) do not
 * show in the user's profile either. */
static void test_explain_and_quiet_statements(void **state) {
  (void)state;
  qp_profile *prof;
  char err[256];
  assert_int_equal(qp_profile_new(&prof, NULL, err, sizeof err), QP_OK);
  qp_pool_options o;
  qpt_pool_options_init(&o);
  o.profile = prof;
  qp_pool *p = qpt_pool_open(g_db.dsn, 1, NULL, &o);
  qp_conn *c;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  const qp__backend_ops *ops = qp__conn_ops(c);
  assert_int_equal(ops->dialect, QP_DIALECT_POSTGRES);
  assert_true(ops->caps & QP__CAP_EXPLAIN_JSON);
  assert_int_equal(qp__conn_exec_quiet(c, "CREATE TABLE ex(id int PRIMARY KEY, v text)", NULL, 0,
                                       NULL),
                   QP_OK);
  assert_int_equal(qp__conn_exec_quiet(c, "INSERT INTO ex SELECT g, 'v' FROM "
                                          "generate_series(1, 1000) g",
                                       NULL, 0, NULL),
                   QP_OK);
  assert_int_equal(qp__conn_exec_quiet(c, "ANALYZE ex", NULL, 0, NULL), QP_OK);
  qp__explain_opts eo = {0};
  qp__plan plan;
  qp_param id = qp_param_int(42);
  assert_int_equal(qp__conn_explain(c, "SELECT v FROM ex WHERE id = $1", &id, 1, &eo, &plan),
                   QP_OK);
  assert_non_null(strstr(plan.text, "Index Scan using ex_pkey on ex"));
  assert_null(strstr(plan.text, "actual time"));
  qp__conn_plan_free(c, &plan);
  eo.json = true;
  eo.analyze = true;
  eo.buffers = true;
  assert_int_equal(qp__conn_explain(c, "SELECT v FROM ex WHERE v = $1", &(qp_param){
                                        QP_PARAM_TEXT, "v", (size_t)-1, 0, 0, 0}, 1, &eo, &plan),
                   QP_OK);
  assert_true(plan.text[0] == '[');
  assert_non_null(strstr(plan.text, "\"Node Type\": \"Seq Scan\""));
  assert_non_null(strstr(plan.text, "\"Actual Rows\": 1000"));
  assert_non_null(strstr(plan.text, "Shared Hit Blocks"));
  assert_int_equal(plan.fullscan_steps, -1);
  qp__conn_plan_free(c, &plan);
  /* an analyzed DELETE ran and was rolled back, outside and inside a transaction */
  eo.json = false;
  assert_int_equal(qp__conn_explain(c, "DELETE FROM ex", NULL, 0, &eo, &plan), QP_OK);
  assert_non_null(strstr(plan.text, "Delete on ex"));
  qp__conn_plan_free(c, &plan);
  assert_int_equal(qp_conn_txn_status(c), QP_TXN_IDLE);
  assert_int_equal(qp__conn_exec_quiet(c, "BEGIN", NULL, 0, NULL), QP_OK);
  assert_int_equal(qp__conn_explain(c, "DELETE FROM ex WHERE id < 500", NULL, 0, &eo, &plan),
                   QP_OK);
  qp__conn_plan_free(c, &plan);
  assert_int_equal(qp_conn_txn_status(c), QP_TXN_INTRANS);
  qp_result *r;
  assert_int_equal(qp__conn_exec_quiet(c, "SELECT count(*) FROM ex", NULL, 0, &r), QP_OK);
  assert_string_equal(qp_result_value(r, 0, 0, NULL), "1000");
  qp_result_free(r);
  assert_int_equal(qp__conn_exec_quiet(c, "COMMIT", NULL, 0, NULL), QP_OK);
  /* the timeout is the EXPLAIN's alone */
  eo.timeout_ms = 50;
  assert_int_equal(qp__conn_explain(c, "SELECT pg_sleep(1)", NULL, 0, &eo, &plan), QP_QUERY);
  assert_string_equal(qp_conn_sqlstate(c), "57014");
  assert_int_equal(qp_conn_txn_status(c), QP_TXN_IDLE);
  assert_int_equal(qp__conn_exec_quiet(c, "SELECT pg_sleep(0.1)", NULL, 0, NULL), QP_OK);
  assert_int_equal(qp__conn_exec_quiet(c, "DROP TABLE ex", NULL, 0, NULL), QP_OK);
  /* one statement of the user's, recorded; none of the library's */
  assert_int_equal(qp_conn_exec(c, "SELECT 1", NULL, 0, NULL), QP_OK);
  qp_pool_release(c);
  assert_int_equal(qp_profile_recorded(prof), 1);
  qp_pool_stats st = QP_POOL_STATS_INIT;
  qp_pool_stats_get(p, &st);
  assert_int_equal(st.total_query_count, 1);
  qp_pool_close(p);
  qp_profile_free(prof);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_identity_and_uri_dsn),
      cmocka_unit_test(test_crud_nulls_bytea),
      cmocka_unit_test(test_errors_with_sqlstate),
      cmocka_unit_test(test_transactions_rolled_back_on_release),
      cmocka_unit_test(test_session_reset),
      cmocka_unit_test(test_session_changes_from_classifier),
      cmocka_unit_test(test_reprepare_after_deallocate),
      cmocka_unit_test(test_terminated_backend_recovers),
      cmocka_unit_test(test_validation_of_idle_connections),
      cmocka_unit_test(test_cancel),
      cmocka_unit_test(test_unavailable_and_password_redaction),
      cmocka_unit_test(test_records_into_profile),
      cmocka_unit_test(test_rules_and_scripts_per_statement),
      cmocka_unit_test(test_full_server_is_unavailable_not_exhausted),
      cmocka_unit_test(test_goodbye_noticed_before_eof),
      cmocka_unit_test(test_explain_and_quiet_statements),
      cmocka_unit_test(test_dims_role_application_host),
      cmocka_unit_test(test_dims_follow_set_role_and_application),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
