/*
 * The default redaction of samples (lib/sql/redact.c): card numbers, e-mail
 * addresses and the values of secret-named columns, each case with what it
 * must keep; then through a profile (sample = true) into a store, with the
 * default set alone, extended by a user rule, and turned off ("-defaults").
 */
#include "testutil.h"
#include "failalloc.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "sql/sql_int.h"

static const char *redact(qp_dialect d, const char *sql) {
  static char buf[4096];
  char *r = qp__sql_redact(d, sql, strlen(sql), NULL);
  assert_non_null(r);
  snprintf(buf, sizeof buf, "%s", r);
  qp__free(NULL, r);
  return buf;
}

#define PG(in, want) assert_string_equal(redact(QP_DIALECT_POSTGRES, in), want)
#define LITE(in, want) assert_string_equal(redact(QP_DIALECT_SQLITE, in), want)

static void test_cards(void **state) {
  (void)state;
  /* 4111 1111 1111 1111 and 5500-0000-0000-0004 pass the Luhn check */
  PG("SELECT * FROM pay WHERE card = '4111111111111111'", "SELECT * FROM pay WHERE card = '?'");
  PG("SELECT * FROM pay WHERE card = 4111111111111111", "SELECT * FROM pay WHERE card = ?");
  PG("INSERT INTO pay VALUES ('paid with 4111 1111 1111 1111 today', 5500-0000-0000-0004)",
     "INSERT INTO pay VALUES ('paid with ? today', 5500-0000-0000-0004)");
  PG("SELECT '5500-0000-0000-0004', 378282246310005 /* card 4111111111111111 */",
     "SELECT '?', ? /* card ? */");
  /* kept: failing the check, too short or too long, an identifier */
  PG("SELECT * FROM t WHERE id = 4111111111111112 AND n = '123456789012' AND big = 41111111111111111111",
     "SELECT * FROM t WHERE id = 4111111111111112 AND n = '123456789012' AND big = 41111111111111111111");
  PG("SELECT c4111111111111111 FROM t", "SELECT c4111111111111111 FROM t");
  LITE("SELECT x'4111111111111111', '4111111111111111'", "SELECT x'?', '?'");
}

static void test_emails(void **state) {
  (void)state;
  PG("SELECT * FROM u WHERE email = 'alice.smith+tag@mail.example.com'",
     "SELECT * FROM u WHERE email = '?'");
  PG("UPDATE u SET note = 'write to bob@example.org or carol@x.co' WHERE id = 3",
     "UPDATE u SET note = 'write to ? or ?' WHERE id = 3");
  PG("SELECT 1 /* user=dave@corp.example.net */", "SELECT 1 /* user=? */");
  PG("SELECT $$x@y.zz$$", "SELECT $$?$$");
  /* kept: no domain with a dot, a one-letter top level, not in a literal */
  PG("SELECT 'a@b', 'user@localhost', 'x@y.z', '@example.com', data @> '{}' FROM t",
     "SELECT 'a@b', 'user@localhost', 'x@y.z', '@example.com', data @> '{}' FROM t");
}

static void test_secret_columns(void **state) {
  (void)state;
  PG("SELECT id FROM users WHERE login = 'ann' AND password = 'hunter2'",
     "SELECT id FROM users WHERE login = 'ann' AND password = ?");
  PG("SELECT id FROM users WHERE 'hunter2' = u.password_hash AND x = 1",
     "SELECT id FROM users WHERE ? = u.password_hash AND x = 1");
  PG("UPDATE users SET passwd = md5('s3cret' || salt), name = 'ann' WHERE id = 7",
     "UPDATE users SET passwd = md5(? || salt), name = 'ann' WHERE id = 7");
  PG("UPDATE t SET \"API_KEY\" = 'k-123', \"Secret\" = E'x\\'y', api_token = 42 RETURNING id",
     "UPDATE t SET \"API_KEY\" = ?, \"Secret\" = ?, api_token = ? RETURNING id");
  PG("SELECT * FROM s WHERE token IN ('a', 'b', 'c') OR session_token NOT LIKE 'z%'",
     "SELECT * FROM s WHERE token IN (?, ?, ?) OR session_token NOT LIKE ?");
  PG("SELECT * FROM u WHERE pwd = crypt('pw', gen_salt('bf')) LIMIT 1",
     "SELECT * FROM u WHERE pwd = crypt(?, gen_salt(?)) LIMIT 1");
  PG("CREATE ROLE app LOGIN PASSWORD 'Tr0ub4dor&3'", "CREATE ROLE app LOGIN PASSWORD ?");
  PG("ALTER USER app WITH ENCRYPTED PASSWORD 'x' VALID UNTIL '2030-01-01'",
     "ALTER USER app WITH ENCRYPTED PASSWORD ? VALID UNTIL '2030-01-01'");
  PG("INSERT INTO users (id, name, password, api_key, note) VALUES (1, 'ann', 'pw1', 'k1', 'hi'), "
     "(2, 'bob', crypt('pw2', 'salt'), DEFAULT, 'yo') ON CONFLICT (id) DO UPDATE SET password = 'pw3'",
     "INSERT INTO users (id, name, password, api_key, note) VALUES (1, 'ann', ?, ?, 'hi'), "
     "(2, 'bob', crypt(?, ?), DEFAULT, 'yo') ON CONFLICT (id) DO UPDATE SET password = ?");
  LITE("INSERT OR REPLACE INTO creds(\"user\", [private_key], credential) VALUES ('u', 'pk', x'00')",
       "INSERT OR REPLACE INTO creds(\"user\", [private_key], credential) VALUES ('u', ?, ?)");
  LITE("SELECT * FROM t WHERE secret = :s AND secret == 'x'", "SELECT * FROM t WHERE secret = :s AND secret == ?");
  /* kept: the column named but not given a value, other columns, placeholders */
  PG("SELECT password, token FROM users WHERE id = 5 ORDER BY token, 'x'",
     "SELECT password, token FROM users WHERE id = 5 ORDER BY token, 'x'");
  PG("SELECT * FROM users WHERE password = $1 AND name = 'ann'",
     "SELECT * FROM users WHERE password = $1 AND name = 'ann'");
  PG("INSERT INTO users (id, name) VALUES (1, 'pw')", "INSERT INTO users (id, name) VALUES (1, 'pw')");
  PG("SELECT 'password', 'token' FROM t", "SELECT 'password', 'token' FROM t");
  /* two statements: the second is read on its own */
  PG("UPDATE u SET password = 'a'; SELECT 'b'", "UPDATE u SET password = ?; SELECT 'b'");
}

static void test_bad_input(void **state) {
  (void)state;
  /* unterminated tokens, NUL bytes, nothing at all: never more than removed */
  PG("", "");
  PG("SELECT 'unterminated 4111111111111111", "SELECT 'unterminated ?");
  PG("password =", "password =");
  PG("password = (((", "password = (((");
  char nul[] = "SELECT '\0' WHERE token = 'x'";
  char *r = qp__sql_redact(QP_DIALECT_POSTGRES, nul, sizeof nul - 1, NULL);
  assert_non_null(r);
  assert_memory_equal(r, "SELECT '\0' WHERE token = ?", 27);
  qp__free(NULL, r);
  /* random bytes: terminates, output never longer than input */
  uint64_t x = 88172645463325252ULL;
  char buf[300];
  for (int i = 0; i < 20000; i++) {
    size_t n = 0;
    static const char *const bits[] = {"'", "password", "=", "(", ")", ",", "4111111111111111",
                                       "a@b.cc", "--", "/*", " ", "in", "values", "insert into t(",
                                       "token", ";", "$$", "\"", "1"};
    while (n < 250) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      const char *b = bits[x % (sizeof bits / sizeof bits[0])];
      memcpy(buf + n, b, strlen(b));
      n += strlen(b);
      if (x % 7 == 0) break;
    }
    r = qp__sql_redact((qp_dialect)(i & 1), buf, n, NULL);
    assert_non_null(r);
    assert_true(strlen(r) <= n);
    qp__free(NULL, r);
  }
}

static void test_oom(void **state) {
  (void)state;
  const char *sql = "UPDATE u SET password = 'a', token = 'b', x = 'c@d.ee' WHERE card = '4111111111111111'";
  int fails = 0;
  for (long n = 1; n < 20; n++) {
    qpt_failalloc fa = {n, false, 0, 0};
    qp_hooks h = qpt_failalloc_hooks(&fa);
    char *r = qp__sql_redact(QP_DIALECT_POSTGRES, sql, strlen(sql), &h);
    if (r == NULL) {
      assert_int_equal(fa.live, 0);
      fails++;
      continue;
    }
    assert_string_equal(r, "UPDATE u SET password = ?, token = ?, x = '?' WHERE card = '?'");
    qp__free(&h, r);
    assert_int_equal(fa.live, 0);
  }
  assert_true(fails > 0);
}

/* ---- through a profile into a store -------------------------------------- */

static char *sample_of(const char *const *rules, size_t nrules, const char *sql, qp_backend be) {
  char path[600], err[512];
  snprintf(path, sizeof path, "%s/r.qp", qpt_tempdir());
  remove(path);
  qp_profile *prof;
  qp_profile_options o = {0};
  o.sample = true;
  o.redact = rules;
  o.nredact = nrules;
  assert_int_equal(qp_profile_new(&prof, &o, err, sizeof err), QP_OK);
  qp_query_event ev = {0};
  ev.backend = be;
  ev.sql = sql;
  ev.sql_len = strlen(sql);
  ev.duration_ns = 1000;
  ev.rows = 1;
  ev.end_wall_ns = 1763700000LL * 1000000000;
  assert_int_equal(qp_profile_record(prof, &ev), QP_OK);
  qp_store *s;
  assert_int_equal(qp_store_open(&s, path, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  assert_int_equal(qp_profile_flush(prof, s), QP_OK);
  qp_store_close(s);
  qp_profile_free(prof);
  sqlite3 *db;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  sqlite3_stmt *q;
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT sample FROM qp_query", -1, &q, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(q), SQLITE_ROW);
  char *got = strdup((const char *)sqlite3_column_text(q, 0));
  sqlite3_finalize(q);
  sqlite3_close(db);
  return got;
}

static void test_profile_samples(void **state) {
  (void)state;
  const char *sql = "SELECT * FROM users WHERE card = '4111 1111 1111 1111' AND password = 'hunter2' "
                    "AND email = 'ann@example.com' AND name = 'ann'";
  /* the default set, on by default */
  char *got = sample_of(NULL, 0, sql, QP_BACKEND_POSTGRES);
  assert_string_equal(got, "SELECT * FROM users WHERE card = '?' AND password = ? AND email = '?' "
                           "AND name = 'ann'");
  free(got);
  /* extended by the user's rules, which run after it */
  const char *more[] = {"'ann'='?'"};
  got = sample_of(more, 1, sql, QP_BACKEND_SQLITE);
  assert_string_equal(got, "SELECT * FROM users WHERE card = '?' AND password = ? AND email = '?' "
                           "AND name = '?'");
  free(got);
  /* turned off: only the user's rules, or nothing */
  const char *off[] = {QP_REDACT_NO_DEFAULTS, "hunter2=***"};
  got = sample_of(off, 2, sql, QP_BACKEND_POSTGRES);
  assert_string_equal(got, "SELECT * FROM users WHERE card = '4111 1111 1111 1111' AND password = "
                           "'***' AND email = 'ann@example.com' AND name = 'ann'");
  free(got);
  got = sample_of(off, 1, sql, QP_BACKEND_POSTGRES);
  assert_string_equal(got, sql);
  free(got);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cards),         cmocka_unit_test(test_emails),
      cmocka_unit_test(test_secret_columns), cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_oom),           cmocka_unit_test(test_profile_samples),
  };
  return cmocka_run_group_tests(tests, NULL, qpt_tempdirs_remove);
}
