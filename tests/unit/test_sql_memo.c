/* The statement memo (lib/sql/memo.h): a text that differs from the
 * remembered one only in the values of its literals matches, and then has
 * the remembered fingerprint; anything else does not match. The property is
 * checked against qp_normalize on the normalizer's test data and on the
 * benchmark corpus, each statement with its literals rewritten. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../tools/bench/sql_corpus.h"
#include "sql/memo.h"

static qp_normalizer *nz[2];

static int setup(void **state) {
  (void)state;
  assert_int_equal(qp_normalizer_new(&nz[0], QP_DIALECT_POSTGRES, NULL, 0, NULL, NULL, 0), QP_OK);
  assert_int_equal(qp_normalizer_new(&nz[1], QP_DIALECT_SQLITE, NULL, 0, NULL, NULL, 0), QP_OK);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  qp_normalizer_free(nz[0]);
  qp_normalizer_free(nz[1]);
  return 0;
}

static uint64_t fp_of(qp_normalizer *n, const char *sql, size_t len) {
  char out[QP_NORMALIZED_MAX];
  size_t olen;
  uint64_t fp = 0;
  assert_int_equal(qp_normalize(n, sql, len, out, sizeof out, &olen, &fp), QP_OK);
  return fp;
}

/* Remembers `sql` as the shim does. */
static void remember(qp_sql_memo *m, qp_normalizer *n, const char *sql, size_t len) {
  char out[QP_NORMALIZED_MAX], out2[QP_NORMALIZED_MAX];
  size_t olen, olen2, ns = 0;
  uint64_t fp, fp2;
  qp_lit_span sp[QP_SQL_MEMO_SPANS];
  assert_int_equal(qp__normalize_spans(n, sql, len, out, sizeof out, &olen, &fp, sp,
                                       QP_SQL_MEMO_SPANS, &ns),
                   QP_OK);
  /* the same text and fingerprint as qp_normalize */
  assert_int_equal(qp_normalize(n, sql, len, out2, sizeof out2, &olen2, &fp2), QP_OK);
  assert_int_equal(olen, olen2);
  assert_memory_equal(out, out2, olen);
  assert_true(fp == fp2);
  qp__sql_memo_set(m, qp_normalizer_dialect(n), sql, len, fp, sp, ns < QP_SQL_MEMO_SPANS ? ns : QP_SQL_MEMO_SPANS);
}

static bool matches(qp_normalizer *n, const char *a, const char *b) {
  qp_sql_memo m;
  remember(&m, n, a, strlen(a));
  bool hit = qp__sql_memo_match(&m, b, strlen(b));
  if (hit) assert_true(m.fp == fp_of(n, b, strlen(b)));
  return hit;
}

static void test_pgbench(void **state) {
  (void)state;
  const char *a = "SELECT abalance FROM pgbench_accounts WHERE aid = 12345";
  assert_true(matches(nz[0], a, a));
  assert_true(matches(nz[0], a, "SELECT abalance FROM pgbench_accounts WHERE aid = 7"));
  assert_true(matches(nz[0], a, "SELECT abalance FROM pgbench_accounts WHERE aid = 0012345678"));
  /* not a run of digits, or not the same around it */
  assert_false(matches(nz[0], a, "SELECT abalance FROM pgbench_accounts WHERE aid = 1.5"));
  assert_false(matches(nz[0], a, "SELECT abalance FROM pgbench_accounts WHERE aid = 1e5"));
  assert_false(matches(nz[0], a, "SELECT abalance FROM pgbench_accounts WHERE aid = 0x1F"));
  assert_false(matches(nz[0], a, "SELECT abalance FROM pgbench_accounts WHERE aid = "));
  assert_false(matches(nz[0], a, "SELECT abalance FROM pgbench_accounts WHERE aid = '5'"));
  assert_false(matches(nz[0], a, "SELECT abalance FROM pgbench_accounts WHERE aid = $1"));
  assert_false(matches(nz[0], a, "SELECT abalance FROM pgbench_accounts WHERE aid = 5 "));
  assert_false(matches(nz[0], a, "select abalance FROM pgbench_accounts WHERE aid = 5"));
  assert_false(matches(nz[0], a, "SELECT abalance FROM pgbench_accounts WHERE aid = 5 OR 1"));
  assert_false(matches(nz[0], a, "SELECT abalance FROM pgbench_accounts WHERE aid ="));
  assert_false(matches(nz[0], a, ""));
  /* several literals, each its own */
  const char *u = "UPDATE pgbench_accounts SET abalance = abalance + -17 WHERE aid = 9";
  assert_true(matches(nz[0], u, "UPDATE pgbench_accounts SET abalance = abalance + -17 WHERE aid = 1"));
  /* a sign folds into its literal: not a span, kept as it is */
  assert_false(matches(nz[0], u, "UPDATE pgbench_accounts SET abalance = abalance + -4 WHERE aid = 1"));
  const char *v = "INSERT INTO t VALUES (1, 22, 333, 'x', 5)";
  assert_true(matches(nz[0], v, "INSERT INTO t VALUES (4, 5, 6, 'hello world', 77)"));
}

static void test_not_literals(void **state) {
  (void)state;
  /* digits of names, quoted names, ORDER BY positions, parameters,
   * statement names: never variable */
  assert_false(matches(nz[0], "SELECT * FROM t1 WHERE a = 1", "SELECT * FROM t2 WHERE a = 1"));
  assert_false(matches(nz[0], "SELECT \"a 1\" FROM t", "SELECT \"a 2\" FROM t"));
  assert_false(matches(nz[0], "SELECT a FROM t ORDER BY 1", "SELECT a FROM t ORDER BY 2"));
  assert_false(matches(nz[0], "SELECT a FROM t GROUP BY 1, 2", "SELECT a FROM t GROUP BY 1, 3"));
  assert_false(matches(nz[0], "SELECT $1, a FROM t", "SELECT $2, a FROM t"));
  /* (a type's modifiers are literals to the normalizer: numeric(?,?)) */
  assert_true(matches(nz[0], "SELECT a::numeric(10,2) FROM t", "SELECT a::numeric(12,2) FROM t"));
  assert_false(matches(nz[0], "SAVEPOINT s1", "SAVEPOINT s2"));
  assert_false(matches(nz[1], "SELECT ?1, a FROM t", "SELECT ?2, a FROM t"));
  assert_false(matches(nz[1], "SELECT [c1] FROM t", "SELECT [c2] FROM t"));
  assert_false(matches(nz[1], "SELECT `c1` FROM t", "SELECT `c2` FROM t"));
  /* an IN list's elements after the first are skipped, not spans */
  assert_true(matches(nz[0], "SELECT a FROM t WHERE b IN (1, 2, 3)",
                      "SELECT a FROM t WHERE b IN (9, 2, 3)"));
  assert_false(matches(nz[0], "SELECT a FROM t WHERE b IN (1, 2, 3)",
                       "SELECT a FROM t WHERE b IN (1, 2, 4)"));
}

static void test_strings(void **state) {
  (void)state;
  const char *a = "SELECT id FROM users WHERE name = 'bob' AND age > 30";
  assert_true(matches(nz[0], a, "SELECT id FROM users WHERE name = 'alice' AND age > 4"));
  assert_true(matches(nz[0], a, "SELECT id FROM users WHERE name = '' AND age > 4"));
  assert_true(matches(nz[1], a, "SELECT id FROM users WHERE name = 'x;(z' AND age > 4"));
  /* SQLite: a variable's "(...)" reads ahead to white space or ')' */
  assert_false(matches(nz[1], "SELECT $v(a,' b')", "SELECT $v(a,'b')"));
  assert_false(matches(nz[1], "SELECT $v(a,'b') x", "SELECT $v(a,' b') x"));
  /* a quote or backslash inside, another kind of string, a doubled quote */
  assert_false(matches(nz[0], a, "SELECT id FROM users WHERE name = 'it''s' AND age > 4"));
  assert_false(matches(nz[0], a, "SELECT id FROM users WHERE name = 'a\\b' AND age > 4"));
  assert_false(matches(nz[0], a, "SELECT id FROM users WHERE name = E'x' AND age > 4"));
  assert_false(matches(nz[0], a, "SELECT id FROM users WHERE name = 5 AND age > 4"));
  assert_false(matches(nz[0], "SELECT 'it''s'", "SELECT 'abc'"));
  assert_false(matches(nz[0], "SELECT $$x$$", "SELECT $$y$$"));
}

static void test_bounds(void **state) {
  (void)state;
  qp_sql_memo m;
  /* longer than the memo holds: remembered as nothing, matches nothing */
  char big[QP_SQL_MEMO_TEXT + 40];
  memset(big, ' ', sizeof big);
  memcpy(big, "SELECT 1", 8);
  big[sizeof big - 1] = '\0';
  remember(&m, nz[0], big, strlen(big));
  assert_int_equal(m.len, 0);
  assert_false(qp__sql_memo_match(&m, big, strlen(big)));
  /* more literals than it keeps: the rest must stay as they were */
  const char *a = "SELECT 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11";
  assert_true(matches(nz[0], a, "SELECT 5, 5, 5, 5, 5, 5, 5, 5, 9, 10, 11"));
  assert_false(matches(nz[0], a, "SELECT 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12"));
  /* spans that are not the normalizer's empty the memo */
  qp_lit_span bad[2] = {{5, 3}, {1, 2}};
  qp__sql_memo_set(&m, QP_DIALECT_POSTGRES, "SELECT 1", 8, 1, bad, 2);
  assert_int_equal(m.len, 0);
  qp_lit_span out[1] = {{7, 9}};
  qp__sql_memo_set(&m, QP_DIALECT_POSTGRES, "SELECT 1", 8, 1, out, 1);
  assert_int_equal(m.len, 0);
  assert_false(qp__sql_memo_match(&m, "SELECT 1", 8));
  assert_false(qp__sql_memo_match(&m, NULL, 0));
  /* no span at all: the same text only */
  qp__sql_memo_set(&m, QP_DIALECT_POSTGRES, "BEGIN", 5, 42, NULL, 0);
  assert_true(qp__sql_memo_match(&m, "BEGIN", 5));
  assert_false(qp__sql_memo_match(&m, "BEGI", 4));
  assert_false(qp__sql_memo_match(&m, "BEGIN ", 6));
  /* arguments */
  size_t ns = 7;
  char o[8];
  assert_int_equal(qp__normalize_spans(NULL, "x", 1, o, sizeof o, NULL, NULL, NULL, 0, &ns),
                   QP_INVALID);
  assert_int_equal(ns, 0);
}

/* Rewrites each variable literal of the memo's text into `out` (digits: a
 * new run of 1..12 digits; strings: new plain contents), from `r`. */
static size_t rewrite(const qp_sql_memo *m, corpus_rng *r, char *out) {
  size_t p = 0, o = 0;
  for (unsigned i = 0; i < m->nspans; i++) {
    size_t a = m->span[i][0];
    memcpy(out + o, m->text + p, a - p);
    o += a - p;
    p = m->span[i][1];
    if (m->str & (1u << i)) {
      /* SQLite's plain strings have no white space or ')' (memo.h) */
      const char *plain = m->sqlite ? "abcxyz;(-0123$\"\xc3\xa9" : "abc xyz;()-0123$\"\xc3\xa9\n";
      size_t np = strlen(plain);
      out[o++] = '\'';
      for (unsigned k = corpus_rn(r, 8); k > 0; k--) out[o++] = plain[corpus_rn(r, (unsigned)np)];
      out[o++] = '\'';
    } else {
      for (unsigned k = 1 + corpus_rn(r, 12); k > 0; k--) out[o++] = (char)('0' + corpus_rn(r, 10));
    }
  }
  memcpy(out + o, m->text + p, m->len - p);
  return o + m->len - p;
}

/* Every remembered statement, its literals rewritten, matches and has the
 * fingerprint qp_normalize gives it. */
static size_t check_property(qp_normalizer *n, const char *sql, size_t len, corpus_rng *r) {
  qp_sql_memo m;
  remember(&m, n, sql, len);
  if (m.len == 0) return 0;
  assert_true(qp__sql_memo_match(&m, sql, len));
  size_t variable = 0;
  for (int k = 0; k < 4; k++) {
    char b[QP_SQL_MEMO_TEXT * 8];
    size_t blen = rewrite(&m, r, b);
    assert_true(qp__sql_memo_match(&m, b, blen));
    if (m.fp != fp_of(n, b, blen))
      fail_msg("%.*s\nand\n%.*s\nmatch, fingerprints differ", (int)len, sql, (int)blen, b);
    variable += m.nspans;
  }
  return variable;
}

static void test_property_data(void **state) {
  (void)state;
  static const char *const files[] = {"postgres.txt", "sqlite.txt"};
  corpus_rng r = {7};
  size_t stmts = 0, variable = 0;
  for (int f = 0; f < 2; f++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/normalize/%s", QP_TEST_DATA_DIR, files[f]);
    size_t len;
    char *text = qpt_read_file(path, &len);
    assert_non_null(text);
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
      if (strncmp(line, "<<< ", 4) != 0) continue;
      variable += check_property(nz[f], line + 4, strlen(line + 4), &r);
      stmts++;
    }
    free(text);
  }
  assert_true(stmts > 200);
  assert_true(variable > 100); /* the test is not vacuous */
}

static void test_property_corpus(void **state) {
  (void)state;
  corpus c;
  corpus_build(&c, 3000, 11);
  corpus_rng r = {13};
  size_t remembered = 0, variable = 0;
  for (size_t i = 0; i < c.n; i++) {
    const char *s = c.text + c.stmt[i].off;
    for (int d = 0; d < 2; d++) {
      size_t v = check_property(nz[d], s, c.stmt[i].len, &r);
      variable += v;
      remembered += c.stmt[i].len <= QP_SQL_MEMO_TEXT;
    }
  }
  corpus_free(&c);
  assert_true(remembered > 500);
  assert_true(variable > 1000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pgbench),       cmocka_unit_test(test_not_literals),
      cmocka_unit_test(test_strings),       cmocka_unit_test(test_bounds),
      cmocka_unit_test(test_property_data), cmocka_unit_test(test_property_corpus),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
