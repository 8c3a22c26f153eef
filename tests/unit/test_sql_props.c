/*
 * Normalizer properties and bad input.
 *
 * Properties: a query shape filled with random literals, list lengths,
 * comments, white space and keyword case always gives one fingerprint and
 * one text; normalizing that text again changes nothing; distinct shapes
 * (another table, column, operator, schema, quoted name, IS NULL vs IS NOT
 * NULL, ...) never share a fingerprint.
 *
 * Bad input: random bytes, invalid UTF-8, NUL bytes, unterminated strings,
 * comments and dollar quotes, a 100 MB statement, 100,000 nested
 * parentheses: defined, bounded, NUL-terminated output and a fingerprint
 * that still covers the whole normalized text.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "internal.h"

#define CAP QP_NORMALIZED_MAX

/* ---- a deterministic generator ----------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rnd(void) {
  uint64_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return rng_state = x;
}
static unsigned rn(unsigned n) { return (unsigned)(rnd() % n); }

typedef struct sb {
  char *p;
  size_t n, cap;
} sb;
static void sb_put(sb *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    b->cap = (b->n + n + 1) * 2;
    b->p = realloc(b->p, b->cap);
    assert_non_null(b->p);
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}
static void sb_puts(sb *b, const char *s) { sb_put(b, s, strlen(s)); }
static void sb_printf(sb *b, const char *fmt, ...) QP_PRINTF(2, 3);
static void sb_printf(sb *b, const char *fmt, ...) {
  char tmp[256];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  sb_put(b, tmp, (size_t)k);
}

/* One random literal or placeholder of any form the dialect has. */
static void random_literal(sb *b, qp_dialect d, int param_no) {
  static const char *const pg_strings[] = {
      "'abc'", "'it''s'", "E'it\\'s'", "e'\\n\\\\'", "$$dollar ' ; $$", "$q$x$q$", "B'1010'",
      "X'ff'", "U&'d\\0061t'", "N'nat'", "''", "'multi\nline'", "'/* not a comment */'",
      "'-- nor this'", "'caf\xc3\xa9'"};
  static const char *const lite_strings[] = {"'abc'", "'it''s'", "X'DEADBEEF'", "x'00'", "''",
                                             "'-- no'", "'multi\nline'", "'caf\xc3\xa9'"};
  switch (rn(8)) {
  case 0: sb_printf(b, "%u", rn(1000000)); break;
  case 1: sb_printf(b, "-%u", rn(1000)); break;
  case 2: sb_printf(b, "%u.%u", rn(100), rn(100)); break;
  case 3: sb_puts(b, rn(2) ? "1e-3" : (rn(2) ? ".5" : "0x1F")); break;
  case 4:
    if (d == QP_DIALECT_POSTGRES)
      sb_puts(b, pg_strings[rn(QP_ARRAY_LEN(pg_strings))]);
    else
      sb_puts(b, lite_strings[rn(QP_ARRAY_LEN(lite_strings))]);
    break;
  case 5: sb_puts(b, rn(2) ? "TRUE" : "false"); break;
  case 6:
    if (d == QP_DIALECT_POSTGRES) {
      if (rn(3) == 0)
        sb_puts(b, "?");
      else
        sb_printf(b, "$%d", param_no);
    } else {
      switch (rn(5)) {
      case 0: sb_puts(b, "?"); break;
      case 1: sb_printf(b, "?%d", param_no); break;
      case 2: sb_printf(b, ":p%d", param_no); break;
      case 3: sb_printf(b, "@p%d", param_no); break;
      default: sb_printf(b, "$p%d", param_no); break;
      }
    }
    break;
  default: sb_printf(b, "+%u", rn(50)); break;
  }
}

static void random_gap(sb *b, bool allow_comment) {
  switch (allow_comment ? rn(10) : rn(4)) {
  case 0: sb_puts(b, "  "); break;
  case 1: sb_puts(b, "\n\t"); break;
  case 2: sb_puts(b, "\r\n "); break;
  case 3: sb_puts(b, " "); break;
  case 4: sb_puts(b, " /* ORM: User.find */ "); break;
  case 5: sb_puts(b, " -- line comment\n"); break;
  case 6: sb_puts(b, " /*controller='users',action='show',traceparent='00-abc-01'*/ "); break;
  default: sb_puts(b, " "); break;
  }
}

/*
 * Expands a template: {L} literal, {LIST} 1..300 literals, {ROWS3} 1..50
 * rows of three literals; quoted names ("x", `x`, [x]) are kept as written; every
 * space becomes random white space or a comment; letters outside quotes and
 * literals get random case.
 */
static void expand(sb *b, const char *tpl, qp_dialect d) {
  int param = 1;
  bool quoted = false;
  for (const char *p = tpl; *p;) {
    if (strncmp(p, "{L}", 3) == 0) {
      random_literal(b, d, param++);
      p += 3;
    } else if (strncmp(p, "{LIST}", 6) == 0) {
      unsigned n = 1 + rn(300);
      for (unsigned i = 0; i < n; i++) {
        if (i) sb_puts(b, rn(2) ? ", " : ",");
        random_literal(b, d, param++);
      }
      p += 6;
    } else if (strncmp(p, "{ROWS3}", 7) == 0) {
      unsigned n = 1 + rn(50);
      for (unsigned i = 0; i < n; i++) {
        if (i) sb_puts(b, ", ");
        sb_puts(b, "(");
        for (int j = 0; j < 3; j++) {
          if (j) sb_puts(b, ", ");
          random_literal(b, d, param++);
        }
        sb_puts(b, ")");
      }
      p += 7;
    } else if (*p == '"' || *p == '`' || *p == '[' || *p == ']') {
      /* quoted names keep their case ([ opens and ] closes in SQLite) */
      quoted = *p == '[' ? true : *p == ']' ? false : !quoted;
      sb_put(b, p++, 1);
    } else if (*p == ' ' && !quoted) {
      random_gap(b, true);
      p++;
    } else if (!quoted && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))) {
      char c = rn(2) ? (char)(*p & ~0x20) : (char)(*p | 0x20);
      sb_put(b, &c, 1);
      p++;
    } else {
      sb_put(b, p++, 1);
    }
  }
  if (rn(3) == 0) sb_puts(b, rn(2) ? ";" : " ; ");
}

static const char *const pg_shapes[] = {
    "SELECT a, b FROM users WHERE id = {L} AND name = {L}",
    "SELECT a, b FROM users2 WHERE id = {L} AND name = {L}",
    "SELECT a, c FROM users WHERE id = {L} AND name = {L}",
    "SELECT a, b FROM users WHERE id < {L} AND name = {L}",
    "SELECT a, b FROM app.users WHERE id = {L} AND name = {L}",
    "SELECT a, b FROM other.users WHERE id = {L} AND name = {L}",
    "SELECT a, b FROM \"Users\" WHERE id = {L} AND name = {L}",
    "SELECT a, b FROM \"users \" WHERE id = {L} AND name = {L}",
    "SELECT a, b FROM users WHERE id = {L} OR name = {L}",
    "SELECT * FROM orders WHERE customer_id IN ({LIST}) ORDER BY 1 LIMIT {L}",
    "SELECT * FROM orders WHERE customer_id IN ({LIST}) ORDER BY 2 LIMIT {L}",
    "SELECT * FROM orders WHERE customer_id NOT IN ({LIST}) ORDER BY 1 LIMIT {L}",
    "SELECT * FROM orders WHERE customer_id IN ({LIST}) ORDER BY 1 LIMIT {L} OFFSET {L}",
    "INSERT INTO events (a, b, c) VALUES {ROWS3}",
    "INSERT INTO events (a, b, d) VALUES {ROWS3}",
    "INSERT INTO events (a, b, c) VALUES {ROWS3} ON CONFLICT DO NOTHING",
    "UPDATE accounts SET balance = balance - {L} WHERE id = {L}",
    "UPDATE accounts SET balance = balance + {L} WHERE id = {L}",
    "SELECT count(*) FROM public.t1 t JOIN s2.t2 u ON t.id = u.t_id WHERE t.x > {L}",
    "SELECT count(*) FROM public.t1 t LEFT JOIN s2.t2 u ON t.id = u.t_id WHERE t.x > {L}",
    "SELECT \"Name\" FROM t WHERE x IS NULL AND y = {L}",
    "SELECT \"Name\" FROM t WHERE x IS NOT NULL AND y = {L}",
    "SELECT \"name\" FROM t WHERE x IS NULL AND y = {L}",
    "SELECT ARRAY[{LIST}] FROM t",
    "SELECT * FROM t WHERE id = ANY(ARRAY[{LIST}]) AND z = {L}::date",
    "SELECT * FROM t WHERE id = ANY(ARRAY[{LIST}]) AND z = {L}::timestamp",
    "DELETE FROM t WHERE created < {L}::timestamp AND flag = {L}",
    "WITH x AS (SELECT id FROM t WHERE v > {L}) SELECT * FROM x WHERE id IN ({LIST})",
    "SELECT a FROM t GROUP BY 1 HAVING count(*) > {L}",
    "SELECT a FROM t GROUP BY 2 HAVING count(*) > {L}",
    "SELECT a FROM t WHERE b BETWEEN {L} AND {L}",
    "SELECT a FROM t WHERE b LIKE {L}",
    "SELECT a FROM t WHERE b ILIKE {L}",
};

static const char *const lite_shapes[] = {
    "SELECT a, b FROM users WHERE id = {L} AND name = {L}",
    "SELECT a, b FROM [users] WHERE id = {L} AND name = {L}",
    "SELECT a, b FROM `Users` WHERE id = {L} AND name = {L}",
    "SELECT a, b FROM main.users WHERE id = {L} AND name = {L}",
    "SELECT a, b FROM users WHERE id >= {L} AND name = {L}",
    "SELECT * FROM orders WHERE customer_id IN ({LIST}) ORDER BY 1 LIMIT {L}",
    "INSERT INTO events (a, b, c) VALUES {ROWS3}",
    "INSERT OR REPLACE INTO events (a, b, c) VALUES {ROWS3}",
    "UPDATE accounts SET balance = balance - {L} WHERE id = {L}",
    "SELECT x FROM t WHERE x IS NULL AND y = {L}",
    "SELECT x FROM t WHERE x IS NOT NULL AND y = {L}",
    "DELETE FROM t WHERE created < {L} AND flag = {L}",
};

static void check_shapes(qp_dialect d, const char *const *shapes, size_t nshapes, int variants) {
  qp_normalizer *n = qpt_normalizer(d);
  uint64_t *fps = calloc(nshapes, sizeof *fps);
  char *first = malloc(CAP), *out = malloc(CAP), *again = malloc(CAP);
  assert_non_null(fps);
  for (size_t s = 0; s < nshapes; s++) {
    for (int v = 0; v < variants; v++) {
      sb b = {0};
      expand(&b, shapes[s], d);
      uint64_t fp, fp2;
      size_t olen, olen2;
      assert_int_equal(qp_normalize(n, b.p, b.n, out, CAP, &olen, &fp), QP_OK);
      if (v == 0) {
        fps[s] = fp;
        strcpy(first, out);
      } else if (fp != fps[s] || strcmp(out, first) != 0) {
        fail_msg("[%s] shape %zu split:\n  %s\n  %s\n  from: %s", qp_dialect_name(d), s, first, out,
                 b.p);
      }
      /* idempotence */
      assert_int_equal(qp_normalize(n, out, olen, again, CAP, &olen2, &fp2), QP_OK);
      if (strcmp(again, out) != 0 || fp2 != fp)
        fail_msg("[%s] not idempotent: '%s' -> '%s'", qp_dialect_name(d), out, again);
      free(b.p);
    }
  }
  /* distinct shapes never share a fingerprint */
  for (size_t i = 0; i < nshapes; i++)
    for (size_t j = i + 1; j < nshapes; j++)
      if (fps[i] == fps[j]) fail_msg("shapes %zu and %zu merged: %s | %s", i, j, shapes[i], shapes[j]);
  free(fps);
  free(first);
  free(out);
  free(again);
  qp_normalizer_free(n);
}

static void test_one_shape_one_fingerprint_pg(void **state) {
  (void)state;
  check_shapes(QP_DIALECT_POSTGRES, pg_shapes, QP_ARRAY_LEN(pg_shapes), 60);
}

static void test_one_shape_one_fingerprint_sqlite(void **state) {
  (void)state;
  check_shapes(QP_DIALECT_SQLITE, lite_shapes, QP_ARRAY_LEN(lite_shapes), 60);
}

/* Pairs that differ in one detail of shape: never one fingerprint. */
static void test_distinct_pairs(void **state) {
  (void)state;
  static const char *const pairs[][2] = {
      {"select a from t", "select a from u"},
      {"select a from t", "select b from t"},
      {"select a from t where x = 1", "select a from t where x < 1"},
      {"select a from s1.t", "select a from s2.t"},
      {"select a from s1.t", "select a from t"},
      {"select a from \"T\"", "select a from t"},
      {"select a from \"T\"", "select a from \"t\""},
      {"select a from t where x is null", "select a from t where x is not null"},
      {"select a from t where x = 1", "select a from t where x = 1 and y = 2"},
      {"select a from t order by 1", "select a from t order by 2"},
      {"select a from t where x in (1, 2)", "select a from t where x not in (1, 2)"},
      {"select a from t where x in (1, 2)", "select a from t where x in (a, 2)"},
      {"select a, b from t", "select ab from t"},
      {"select a.b from t", "select ab from t"},
      {"select t1 from t", "select t2 from t"},
      {"select cast(x as int) from t", "select cast(x as bigint) from t"},
      {"select a from t limit 1", "select a from t"},
      {"insert into t (a) values (1)", "insert into t (a) values (1) returning id"},
      {"insert into t (a, b) values (1, 2)", "insert into t (a, b, c) values (1, 2, 3)"},
      {"select a - 1 from t", "select a + 1 from t"},
      {"select a from t where b = $1", "select a from t where b = $1 for update"},
      {"create table t (a int not null)", "create table t (a int null)"},
      {"create table t (a int not null)", "create table t (a int)"},
      {"create table c (p int references p on delete set null)",
       "create table c (p int references p on delete set default)"},
      {"select a from t where x not null", "select a from t where x isnull"},
      {"select a from t order by a nulls first", "select a from t order by a nulls last"},
  };
  qp_normalizer *pg = qpt_normalizer(QP_DIALECT_POSTGRES), *lite = qpt_normalizer(QP_DIALECT_SQLITE);
  for (size_t i = 0; i < QP_ARRAY_LEN(pairs); i++) {
    uint64_t a, b;
    char o1[CAP], o2[CAP];
    for (int d = 0; d < 2; d++) {
      qp_normalizer *n = d ? lite : pg;
      qp_normalize(n, pairs[i][0], strlen(pairs[i][0]), o1, CAP, NULL, &a);
      qp_normalize(n, pairs[i][1], strlen(pairs[i][1]), o2, CAP, NULL, &b);
      if (a == b) fail_msg("pair %zu merged: %s | %s", i, o1, o2);
    }
  }
  qp_normalizer_free(pg);
  qp_normalizer_free(lite);
}

/* ---- bad input ---------------------------------------------------------- */

static void check_bounded(const qp_normalizer *n, const char *s, size_t len, size_t cap) {
  char *out = malloc(cap + 8);
  memset(out, 'Z', cap + 8);
  size_t olen = SIZE_MAX;
  uint64_t fp1, fp2;
  assert_int_equal(qp_normalize(n, s, len, out, cap, &olen, &fp1), QP_OK);
  assert_true(olen < cap);
  assert_int_equal(out[olen], '\0');
  assert_int_equal(strlen(out), olen); /* never a NUL inside */
  for (size_t i = cap; i < cap + 8; i++) assert_int_equal(out[i], 'Z'); /* nothing past cap */
  /* deterministic */
  char *out2 = malloc(cap);
  assert_int_equal(qp_normalize(n, s, len, out2, cap, NULL, &fp2), QP_OK);
  assert_true(fp1 == fp2);
  assert_string_equal(out, out2);
  free(out);
  free(out2);
}

static void test_random_bytes(void **state) {
  (void)state;
  qp_normalizer *n[2] = {qpt_normalizer(QP_DIALECT_POSTGRES), qpt_normalizer(QP_DIALECT_SQLITE)};
  static const char alphabet[] = "'\"`[]$-/*()?:@;,.eEuUxXbB&\\\n 0123456789\x80\xc3\xa9\xff\0";
  char buf[300];
  for (int i = 0; i < 20000; i++) {
    size_t len = rn(sizeof buf);
    for (size_t k = 0; k < len; k++)
      buf[k] = rn(3) ? alphabet[rn(sizeof alphabet)] : (char)rn(256);
    check_bounded(n[i & 1], buf, len, i % 7 == 0 ? 1 + rn(40) : CAP);
  }
  qp_normalizer_free(n[0]);
  qp_normalizer_free(n[1]);
}

static void test_nul_and_invalid_utf8(void **state) {
  (void)state;
  qp_normalizer *pg = qpt_normalizer(QP_DIALECT_POSTGRES);
  char out[CAP];
  size_t olen;
  /* NUL bytes between tokens are white space; inside a quoted name they do
   * not end the output early */
  const char q1[] = "select\0a\0from t where \"x\0y\" = 'a\0b'";
  assert_int_equal(qp_normalize(pg, q1, sizeof q1 - 1, out, CAP, &olen, NULL), QP_OK);
  assert_string_equal(out, "select a from t where \"x?y\" = ?");
  assert_int_equal(olen, strlen(out));
  /* invalid UTF-8 in identifiers is kept byte for byte, lower-casing only ASCII */
  const char q2[] = "SELECT Caf\xc3\xa9, \xff\xfeX FROM T\xc3";
  assert_int_equal(qp_normalize(pg, q2, sizeof q2 - 1, out, CAP, &olen, NULL), QP_OK);
  assert_string_equal(out, "select caf\xc3\xa9, \xff\xfex from t\xc3");
  qp_normalizer_free(pg);
}

static void test_unterminated(void **state) {
  (void)state;
  qp_normalizer *pg = qpt_normalizer(QP_DIALECT_POSTGRES), *lite = qpt_normalizer(QP_DIALECT_SQLITE);
  static const struct {
    int lite;
    const char *in, *out;
  } cases[] = {
      {0, "select 'abc", "select ?"},
      {0, "select E'abc\\'", "select ?"},
      {0, "select $tag$abc $tag", "select ?"},
      {0, "select $$abc", "select ?"},
      {0, "select 1 /* a /* b */", "select ?"},
      {0, "select \"abc", "select \"abc"},
      {0, "select U&\"abc", "select U&\"abc"},
      {0, "select 1 -- no newline", "select ?"},
      {1, "select 'abc", "select ?"},
      {1, "select 1 /* a", "select ?"},
      {1, "select [abc", "select [abc"},
      {1, "select `abc", "select `abc"},
      {1, "select x'ab", "select ?"},
  };
  char out[CAP];
  for (size_t i = 0; i < QP_ARRAY_LEN(cases); i++) {
    assert_int_equal(qp_normalize(cases[i].lite ? lite : pg, cases[i].in, strlen(cases[i].in), out, CAP, NULL, NULL), QP_OK);
    assert_string_equal(out, cases[i].out);
  }
  qp_normalizer_free(pg);
  qp_normalizer_free(lite);
}

/* The output is cut at a character boundary, is a prefix of the whole, and
 * the fingerprint is the one of the whole text, whatever the buffer size. */
static void test_small_buffers_cut_at_utf8(void **state) {
  (void)state;
  qp_normalizer *pg = qpt_normalizer(QP_DIALECT_POSTGRES);
  const char *q = "SELECT caf\xc3\xa9, \xe2\x82\xac_eur, \xf0\x9f\x98\x80_x FROM t WHERE a = 1";
  char full[CAP];
  uint64_t fpfull;
  qp_normalize(pg, q, strlen(q), full, CAP, NULL, &fpfull);
  assert_string_equal(full, "select caf\xc3\xa9, \xe2\x82\xac_eur, \xf0\x9f\x98\x80_x from t where a = ?");
  for (size_t cap = 1; cap <= strlen(full) + 1; cap++) {
    char out[128];
    size_t olen;
    uint64_t fp;
    assert_int_equal(qp_normalize(pg, q, strlen(q), out, cap, &olen, &fp), QP_OK);
    assert_true(fp == fpfull);
    assert_true(olen <= cap - 1);
    assert_memory_equal(out, full, olen);
    /* never ends inside a character: the next byte of the full text starts one */
    assert_true(((unsigned char)full[olen] & 0xC0) != 0x80);
    /* and cuts no more than one character short */
    assert_true(cap - 1 - olen <= 3);
  }
  qp_normalizer_free(pg);
}

/* Long words reach the end of the buffer in the middle (the lower-casing
 * path copies them in chunks): the output is still the prefix of the whole. */
static void test_long_words_small_buffers(void **state) {
  (void)state;
  qp_normalizer *pg = qpt_normalizer(QP_DIALECT_POSTGRES);
  sb in = {0};
  sb_puts(&in, "SELECT ");
  for (int i = 0; i < 700; i++) sb_puts(&in, "Ab");
  sb_puts(&in, " FROM \"T\" WHERE x = 1");
  char full[CAP];
  uint64_t fpfull;
  size_t flen;
  qp_normalize(pg, in.p, in.n, full, CAP, &flen, &fpfull);
  assert_int_equal(flen, in.n); /* lower-casing and "1" -> "?" keep the length */
  for (size_t cap = 1; cap <= flen + 1; cap += 7) {
    char *out = malloc(cap);
    size_t olen;
    uint64_t fp;
    assert_int_equal(qp_normalize(pg, in.p, in.n, out, cap, &olen, &fp), QP_OK);
    assert_true(fp == fpfull);
    assert_int_equal(olen, cap - 1 < flen ? cap - 1 : flen);
    assert_memory_equal(out, full, olen);
    free(out);
  }
  free(in.p);
  qp_normalizer_free(pg);
}

/* A shape longer than the buffer: the fingerprint is XXH3 of the whole
 * normalized text, so two statements that differ only past the cut differ. */
static void test_long_statement_hash_covers_all(void **state) {
  (void)state;
  qp_normalizer *pg = qpt_normalizer(QP_DIALECT_POSTGRES);
  sb in = {0}, want = {0};
  sb_puts(&in, "SELECT ");
  sb_puts(&want, "select ");
  for (int i = 0; i < 200000; i++) {
    sb_printf(&in, "%sCol%d + %d", i ? ", " : "", i, i);
    sb_printf(&want, "%scol%d + ?", i ? ", " : "", i);
  }
  char out[CAP];
  size_t olen;
  uint64_t fp;
  assert_int_equal(qp_normalize(pg, in.p, in.n, out, CAP, &olen, &fp), QP_OK);
  assert_int_equal(olen, CAP - 1);
  assert_memory_equal(out, want.p, olen);
  uint64_t seed = XXH3_64bits("qprof-normalizer/3/postgres", 27);
  assert_true(fp == XXH3_64bits_withSeed(want.p, want.n, seed));
  /* change only the very end */
  in.p[in.n - 1] = (char)(in.p[in.n - 1] == '1' ? '2' : '1');
  in.p[in.n - 5] = 'Q';
  uint64_t fp2;
  qp_normalize(pg, in.p, in.n, out, CAP, NULL, &fp2);
  assert_true(fp2 != fp);
  free(in.p);
  free(want.p);
  qp_normalizer_free(pg);
}

static void test_100mb_statement(void **state) {
  (void)state;
  qp_normalizer *pg = qpt_normalizer(QP_DIALECT_POSTGRES);
  size_t target = 100u << 20;
  sb in = {0};
  sb_puts(&in, "SELECT * FROM t WHERE id IN (");
  while (in.n < target) sb_puts(&in, "12345, 'abc', $1, ");
  sb_puts(&in, "7) AND s = '");
  char out[CAP];
  size_t olen;
  /* an IN list of ~100 MB collapses; the unterminated string runs to the end */
  assert_int_equal(qp_normalize(pg, in.p, in.n, out, CAP, &olen, NULL), QP_OK);
  assert_string_equal(out, "select * from t where id in (?) and s = ?");
  /* 100 MB of one string literal */
  memset(in.p, 'x', in.n);
  memcpy(in.p, "select '", 8);
  in.p[in.n - 1] = '\'';
  assert_int_equal(qp_normalize(pg, in.p, in.n, out, CAP, &olen, NULL), QP_OK);
  assert_string_equal(out, "select ?");
  /* 100 MB of identifiers: output cut and bounded */
  for (size_t i = 7; i < in.n; i++) in.p[i] = (i % 4 == 3) ? ' ' : 'a';
  check_bounded(pg, in.p, in.n, CAP);
  free(in.p);
  qp_normalizer_free(pg);
}

static void test_deep_nesting(void **state) {
  (void)state;
  qp_normalizer *pg = qpt_normalizer(QP_DIALECT_POSTGRES), *lite = qpt_normalizer(QP_DIALECT_SQLITE);
  const size_t depth = 100000;
  sb in = {0};
  sb_puts(&in, "SELECT ");
  for (size_t i = 0; i < depth; i++) sb_puts(&in, "(");
  sb_puts(&in, "1");
  for (size_t i = 0; i < depth; i++) sb_puts(&in, ")");
  char out[CAP];
  size_t olen;
  uint64_t fp1, fp2;
  assert_int_equal(qp_normalize(pg, in.p, in.n, out, CAP, &olen, &fp1), QP_OK);
  assert_int_equal(olen, CAP - 1);
  assert_memory_equal(out, "select (((", 10);
  check_bounded(lite, in.p, in.n, CAP);
  /* one level less is another shape, although both outputs are cut alike */
  sb in2 = {0};
  sb_put(&in2, in.p, 7);
  sb_put(&in2, in.p + 8, in.n - 9);
  assert_int_equal(qp_normalize(pg, in2.p, in2.n, out, CAP, &olen, &fp2), QP_OK);
  assert_true(fp1 != fp2);

  /* nested IN ( ... and ARRAY[ ... and nested comments */
  sb deep = {0};
  sb_puts(&deep, "select ");
  for (size_t i = 0; i < depth; i++) sb_puts(&deep, "x in (");
  check_bounded(pg, deep.p, deep.n, CAP);
  deep.n = 0;
  sb_puts(&deep, "select ");
  for (size_t i = 0; i < depth; i++) sb_puts(&deep, "array[");
  check_bounded(pg, deep.p, deep.n, CAP);
  deep.n = 0;
  sb_puts(&deep, "select 1 ");
  for (size_t i = 0; i < depth; i++) sb_puts(&deep, "/*");
  sb_puts(&deep, " x ");
  for (size_t i = 0; i < depth; i++) sb_puts(&deep, "*/");
  sb_puts(&deep, " from t");
  assert_int_equal(qp_normalize(pg, deep.p, deep.n, out, CAP, NULL, NULL), QP_OK);
  assert_string_equal(out, "select ? from t");
  /* sign chains and VALUES rows that almost collapse */
  deep.n = 0;
  sb_puts(&deep, "select ");
  for (size_t i = 0; i < depth; i++) sb_puts(&deep, "- ");
  sb_puts(&deep, "a");
  check_bounded(pg, deep.p, deep.n, CAP);
  deep.n = 0;
  sb_puts(&deep, "insert into t values (1)");
  for (size_t i = 0; i < depth; i++) sb_puts(&deep, ", (1)");
  sb_puts(&deep, ", (a)");
  assert_int_equal(qp_normalize(pg, deep.p, deep.n, out, CAP, NULL, NULL), QP_OK);
  assert_string_equal(out, "insert into t values (?), (a)");
  free(deep.p);
  free(in.p);
  free(in2.p);
  qp_normalizer_free(pg);
  qp_normalizer_free(lite);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_shape_one_fingerprint_pg),
      cmocka_unit_test(test_one_shape_one_fingerprint_sqlite),
      cmocka_unit_test(test_distinct_pairs),
      cmocka_unit_test(test_random_bytes),
      cmocka_unit_test(test_nul_and_invalid_utf8),
      cmocka_unit_test(test_unterminated),
      cmocka_unit_test(test_small_buffers_cut_at_utf8),
      cmocka_unit_test(test_long_words_small_buffers),
      cmocka_unit_test(test_long_statement_hash_covers_all),
      cmocka_unit_test(test_100mb_statement),
      cmocka_unit_test(test_deep_nesting),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
