/* The statement splitter: ';' at top level only, both dialects; and
 * qp_normalize_next, which splits in the normalizer's pass, against it. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../tools/bench/sql_corpus.h"

/* Every script the PG()/LITE() cases split, kept for the differential test. */
#define SEEN_MAX 128
static char *seen[SEEN_MAX];
static qp_dialect seen_d[SEEN_MAX];
static size_t seen_len[SEEN_MAX];
static int nseen;

/* Splits `sql` and joins the statements with " | ". */
static const char *split_all(qp_dialect d, const char *sql, size_t len) {
  static char joined[4096];
  if (nseen < SEEN_MAX) {
    seen[nseen] = malloc(len + 1);
    memcpy(seen[nseen], sql, len);
    seen_d[nseen] = d;
    seen_len[nseen++] = len;
  }
  joined[0] = '\0';
  size_t pos = 0, start = 99, n = 99;
  int count = 0;
  while (qp_sql_split_next(d, sql, len, &pos, &start, &n)) {
    assert_true(start + n <= len);
    assert_true(pos <= len);
    assert_true(n > 0);
    if (count++) strcat(joined, " | ");
    strncat(joined, sql + start, n);
  }
  assert_int_equal(pos, len);
  /* further calls keep returning false */
  assert_false(qp_sql_split_next(d, sql, len, &pos, &start, &n));
  return joined;
}

#define PG(in, want) assert_string_equal(split_all(QP_DIALECT_POSTGRES, in, strlen(in)), want)
#define LITE(in, want) assert_string_equal(split_all(QP_DIALECT_SQLITE, in, strlen(in)), want)

static void test_split_basic(void **state) {
  (void)state;
  PG("select 1; select 2", "select 1 | select 2");
  PG("select 1;select 2;", "select 1 | select 2");
  PG("  select 1  ;\n\n  select 2  \n", "select 1 | select 2");
  PG("", "");
  PG(";;;", "");
  PG("  \n\t ", "");
  PG("select 1;;; ;select 2", "select 1 | select 2");
  LITE("select 1; select 2", "select 1 | select 2");
}

static void test_split_comments_only_skipped(void **state) {
  (void)state;
  PG("-- nothing here\n; /* nor here */ ; select 1", "select 1");
  PG("select 1; -- trailing comment", "select 1");
  PG("select 1; /* c */", "select 1");
  /* a comment before a statement belongs to it; trailing white space is trimmed */
  PG("/* app=x */ select 1;\n-- c\nselect 2 -- end\n;", "/* app=x */ select 1 | -- c\nselect 2 -- end");
  LITE("-- c\n;select 1", "select 1");
}

static void test_split_quotes(void **state) {
  (void)state;
  PG("select 'a;b'; select \"x;y\"", "select 'a;b' | select \"x;y\"");
  PG("select 'it''s;'; select 2", "select 'it''s;' | select 2");
  PG("select E'a\\';b'; select 2", "select E'a\\';b' | select 2");
  PG("select $$a;b$$; select $t$ ; $$ ; $t$; select 3",
     "select $$a;b$$ | select $t$ ; $$ ; $t$ | select 3");
  PG("select 1 -- a;b\n; select 2", "select 1 -- a;b | select 2");
  PG("select /* a; /* nested; */ b; */ 1; select 2", "select /* a; /* nested; */ b; */ 1 | select 2");
  /* unterminated things run to the end: one statement */
  PG("select 'abc; select 2", "select 'abc; select 2");
  PG("select $$abc; select 2", "select $$abc; select 2");
  PG("select 1 /* abc; select 2", "select 1 /* abc; select 2");
  LITE("select `a;b`; select [c;d]; select \"e;f\"", "select `a;b` | select [c;d] | select \"e;f\"");
  /* SQLite comments do not nest: the first star-slash ends it */
  LITE("select /* a /* b */ 1; select 2", "select /* a /* b */ 1 | select 2");
  /* PostgreSQL has no [identifiers]: ; inside [] splits */
  PG("select a[1]; select 2", "select a[1] | select 2");
}

static void test_split_function_bodies(void **state) {
  (void)state;
  PG("create function f() returns int as $$ begin return 1; end $$ language plpgsql; select f()",
     "create function f() returns int as $$ begin return 1; end $$ language plpgsql | select f()");
  PG("create function f() returns int language sql begin atomic select 1; select 2; end; select 3",
     "create function f() returns int language sql begin atomic select 1; select 2; end | select 3");
  PG("create function f(x int) returns int language sql begin atomic select case when x > 0 then 1 else 0 end; end; select 3",
     "create function f(x int) returns int language sql begin atomic select case when x > 0 then 1 else 0 end; end | select 3");
  /* BEGIN as a transaction is not a block */
  PG("begin; select 1; commit;", "begin | select 1 | commit");
  /* psql does not split inside parentheses: CREATE RULE ... DO (a; b) */
  PG("create rule r as on insert to t do also (insert into a values (1); insert into b values (2)); select 1",
     "create rule r as on insert to t do also (insert into a values (1); insert into b values (2)) | select 1");
  LITE("CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE u SET n = n + 1; INSERT INTO log VALUES (1); END; SELECT 1",
       "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE u SET n = n + 1; INSERT INTO log VALUES (1); END | SELECT 1");
  LITE("create temp trigger tr before delete on t begin select case when old.x then raise(abort, 'no') end; end; select 2",
       "create temp trigger tr before delete on t begin select case when old.x then raise(abort, 'no') end; end | select 2");
  LITE("BEGIN; SELECT 1; END;", "BEGIN | SELECT 1 | END");
  /* SQLite does not track parentheses */
  LITE("select (1; select 2", "select (1 | select 2");
}

static void test_split_positions(void **state) {
  (void)state;
  const char *sql = "  select 1 ;  select 2";
  size_t pos = 0, start, n;
  assert_true(qp_sql_split_next(QP_DIALECT_POSTGRES, sql, strlen(sql), &pos, &start, &n));
  assert_int_equal(start, 2);
  assert_int_equal(n, 8);
  assert_int_equal(pos, 12);
  assert_true(qp_sql_split_next(QP_DIALECT_POSTGRES, sql, strlen(sql), &pos, &start, &n));
  assert_int_equal(start, 14);
  assert_int_equal(n, 8);
  assert_false(qp_sql_split_next(QP_DIALECT_POSTGRES, sql, strlen(sql), &pos, &start, &n));
  /* NULL input and positions past the end */
  pos = 0;
  assert_false(qp_sql_split_next(QP_DIALECT_POSTGRES, NULL, 0, &pos, &start, &n));
  pos = 100;
  assert_false(qp_sql_split_next(QP_DIALECT_POSTGRES, sql, strlen(sql), &pos, &start, &n));
  /* NUL bytes are white space, not the end */
  const char nul[] = "select 1;\0\0;select 2";
  PG("x", "x");
  assert_string_equal(split_all(QP_DIALECT_POSTGRES, nul, sizeof nul - 1), "select 1 | select 2");
}

/* Large scripts split in linear time and every byte lands in exactly one place. */
static void test_split_many(void **state) {
  (void)state;
  size_t cap = 1 << 20, len = 0;
  char *sql = malloc(cap);
  int want = 0;
  while (len + 64 < cap) {
    len += (size_t)sprintf(sql + len, "insert into t values (%d, 'a;b'); -- c;\n", want++);
  }
  size_t pos = 0, start, n;
  int got = 0;
  while (qp_sql_split_next(QP_DIALECT_POSTGRES, sql, len, &pos, &start, &n)) {
    char expect[64];
    int k = sprintf(expect, "insert into t values (%d, 'a;b')", got);
    if (got == 0) {
      assert_int_equal(n, (size_t)k);
    } else {
      /* the comment after the previous ';' belongs to this statement */
      assert_true(n > (size_t)k);
      assert_memory_equal(sql + start + n - (size_t)k, expect, (size_t)k);
    }
    got++;
  }
  assert_int_equal(got, want);
  free(sql);
}

/* ---- qp_normalize_next against qp_sql_split_next + qp_normalize ---------- */

static size_t diff_checked;

/* Both ways over one script: the same statements, positions, texts and
 * fingerprints, call by call. */
static void diff_script(const qp_normalizer *nz, const char *sql, size_t len) {
  static char o1[QP_NORMALIZED_MAX], o2[QP_NORMALIZED_MAX];
  const qp_dialect d = qp_normalizer_dialect(nz);
  size_t p1 = 0, p2 = 0;
  for (int guard = 0;; guard++) {
    size_t s1 = 0, n1 = 0, s2 = 7, n2 = 7, l1 = 0, l2 = 0;
    uint64_t f1 = 0, f2 = 1;
    bool a = qp_sql_split_next(d, sql, len, &p1, &s1, &n1);
    bool b = qp_normalize_next(nz, sql, len, &p2, &s2, &n2, o2, sizeof o2, &l2, &f2);
    if (a) qp_normalize(nz, sql + s1, n1, o1, sizeof o1, &l1, &f1);
    if (a != b || p1 != p2 || (a && (s1 != s2 || n1 != n2 || l1 != l2 || f1 != f2 ||
                                     strcmp(o1, o2) != 0))) {
      printf("differ [%s] in %zu-byte script at statement %d:\n  %.*s\n", qp_dialect_name(d), len,
             guard, (int)(len < 400 ? len : 400), sql);
      printf("  split:  %d pos %zu start %zu len %zu '%s'\n", a, p1, s1, n1, a ? o1 : "");
      printf("  next:   %d pos %zu start %zu len %zu '%s'\n", b, p2, s2, n2, b ? o2 : "");
      fail();
    }
    if (!a) break;
    diff_checked++;
    assert_true(guard < (int)len + 2);
  }
}

static void test_normalize_next_differential(void **state) {
  (void)state;
  static const char *const rules[] = {"^gone$=", "tmp_[0-9a-f]{6,}=tmp_?"};
  qp_normalizer *nz[2][2];
  for (int d = 0; d < 2; d++)
    for (int r = 0; r < 2; r++)
      assert_int_equal(qp_normalizer_new(&nz[d][r], (qp_dialect)d, rules, r ? 2 : 0, NULL, NULL, 0),
                       QP_OK);
  /* the cases above (run first) and the corners of the one-pass split */
  assert_true(nseen > 30);
  static const char *const extra[] = {
      "\xEF\xBB\xBFselect 1; \xEF\xBB\xBFselect 2;\xEF\xBB\xBF; \xEF\xBB\xBF\xEF\xBB\xBF x;/**/\xEF\xBB\xBF;",
      "\xEF\xBB\xBF\xEF\xBB\xBF;select 1",
      "select \"unterminated name  \n\t ",
      "select 1; select [x  ",
      "select 1; select `x  \n",
      "select 'a  ; select 2 \n ",
      "gone; select 1; gone ; gone x; (gone; gone); select gone",
      "select 1 where a in (1, 2; select 3); select (4;5); ) ; select 6",
      "select * from t where id in (1, 2, 3);select * from t where id in (4, 5)",
      "insert into t values (1, 'a'), (2, 'b'); insert into t values (3, 'c'), (4, 'd')",
      "select -; select - ;select 1 - - ; on null; release savepoint ; savepoint",
      "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; SELECT CASE WHEN 1 THEN 2 END; END; CREATE TABLE x(a); select 1",
      "/* c */ create function f() returns int language sql begin atomic select 1; end; -- x\n create",
      ("select 1; \xEF\xBB\xBF" "create trigger t begin select 1; end; select 2"),
      "x create trigger t begin select 1; end; select 2",
      "select 1;;; ; ;select 2;;",
      "; ; -- only\n /* comments */ ;",
      "select 1 -- no newline at the end",
      "select $$a;b$$; select $t$x;$t$;",
      "select e'\\\\';'; select 2",
      "\n\n\t  ",
      "",
      "select 1\0; select 2\0\0",
  };
  for (int d = 0; d < 2; d++)
    for (int r = 0; r < 2; r++) {
      for (int i = 0; i < nseen; i++)
        if (seen_d[i] == (qp_dialect)d) diff_script(nz[d][r], seen[i], seen_len[i]);
      for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        size_t n = strlen(extra[i]);
        if (i == sizeof extra / sizeof extra[0] - 1) n = 21; /* with its NUL bytes */
        diff_script(nz[d][r], extra[i], n);
      }
    }
  size_t fixed = diff_checked;

  /* the benchmark corpus as one script, with every separator a script has:
   * ';' with white space, comments, empty statements, none at the end */
  corpus c;
  corpus_build(&c, 6000, 20261202);
  corpus_rng rng = {77};
  size_t cap = c.text_len * 2 + 1024, len = 0;
  char *script = malloc(cap);
  assert_non_null(script);
  static const char *const seps[] = {";\n", ";", " ;\n\n", ";\n-- next\n", "; /* c */ ", ";;\n", ";\r\n"};
  for (size_t i = 0; i < c.n; i++) {
    memcpy(script + len, c.text + c.stmt[i].off, c.stmt[i].len);
    len += c.stmt[i].len;
    if (i + 1 < c.n) {
      const char *sep = seps[corpus_rn(&rng, sizeof seps / sizeof seps[0])];
      memcpy(script + len, sep, strlen(sep));
      len += strlen(sep);
    }
  }
  diff_script(nz[0][0], script, len);
  assert_int_equal(diff_checked - fixed, 6000); /* every statement, in PostgreSQL */
  diff_script(nz[0][1], script, len);
  diff_script(nz[1][0], script, len); /* SQLite reads E'\'' otherwise: fewer, longer */
  size_t corpus_stmts = diff_checked - fixed;

  /* random scripts from the bytes and words that matter to splitting */
  static const char *const bits[] = {
      ";", ";", ";", " ", "\n", "(", ")", "'", "\"", "`", "[", "]", "$$", "$t$", "$1", "--", "/*",
      "*/", "e'\\'", "begin", "BEGIN ATOMIC", "end", "case", "create", "trigger", "select 1",
      "in (1, 2)", "values (1), (2)", "savepoint x", "release", "\xEF\xBB\xBF", "gone", "-", "?",
      "\0", "tmp_abcdef12", "x", "on null input", "::", ":a", "#z", "$a(1)"};
  char buf[512];
  for (int iter = 0; iter < 30000; iter++) {
    size_t n = 0;
    unsigned parts = 1 + corpus_rn(&rng, 24);
    for (unsigned k = 0; k < parts; k++) {
      const char *b = bits[corpus_rn(&rng, sizeof bits / sizeof bits[0])];
      size_t bl = b[0] == '\0' ? 1 : strlen(b);
      if (n + bl + 1 >= sizeof buf) break;
      memcpy(buf + n, b, bl);
      n += bl;
      if (corpus_rn(&rng, 3) == 0) buf[n++] = ' ';
    }
    diff_script(nz[iter & 1][(iter >> 1) & 1], buf, n);
  }
  printf("qp_normalize_next = split + normalize: %zu statements (%zu from the corpus)\n",
         diff_checked, corpus_stmts);
  free(script);
  corpus_free(&c);
  for (int d = 0; d < 2; d++)
    for (int r = 0; r < 2; r++) qp_normalizer_free(nz[d][r]);
  for (int i = 0; i < nseen; i++) free(seen[i]);
}

static void test_normalize_next_arguments(void **state) {
  (void)state;
  qp_normalizer *nz = qpt_normalizer(QP_DIALECT_POSTGRES);
  char out[64];
  size_t pos = 0, start, n, olen = 9;
  uint64_t fp;
  assert_false(qp_normalize_next(NULL, "x", 1, &pos, &start, &n, out, sizeof out, &olen, &fp));
  assert_int_equal(olen, 0);
  assert_false(qp_normalize_next(nz, NULL, 1, &pos, &start, &n, out, sizeof out, &olen, &fp));
  assert_false(qp_normalize_next(nz, "x", 1, NULL, &start, &n, out, sizeof out, &olen, &fp));
  assert_false(qp_normalize_next(nz, "x", 1, &pos, &start, &n, NULL, sizeof out, &olen, &fp));
  assert_false(qp_normalize_next(nz, "x", 1, &pos, &start, &n, out, 0, &olen, &fp));
  assert_int_equal(pos, 0);
  assert_false(qp_normalize_next(nz, NULL, 0, &pos, &start, &n, out, sizeof out, &olen, &fp));
  /* optional outputs; a small buffer cuts the text like qp_normalize */
  const char *sql = "SELECT 1 ; select abcdefgh";
  assert_true(qp_normalize_next(nz, sql, strlen(sql), &pos, NULL, NULL, out, sizeof out, NULL, NULL));
  assert_string_equal(out, "select ?");
  assert_true(qp_normalize_next(nz, sql, strlen(sql), &pos, &start, &n, out, 8, &olen, &fp));
  assert_string_equal(out, "select ");
  assert_int_equal(start, 11);
  uint64_t whole;
  qpt_normalize(nz, "select abcdefgh", 15, &whole);
  assert_true(fp == whole);
  assert_false(qp_normalize_next(nz, sql, strlen(sql), &pos, &start, &n, out, sizeof out, &olen, &fp));
  assert_int_equal(pos, strlen(sql));
  qp_normalizer_free(nz);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_split_basic),          cmocka_unit_test(test_split_comments_only_skipped),
      cmocka_unit_test(test_split_quotes),         cmocka_unit_test(test_split_function_bodies),
      cmocka_unit_test(test_split_positions),      cmocka_unit_test(test_split_many),
      cmocka_unit_test(test_normalize_next_differential),
      cmocka_unit_test(test_normalize_next_arguments),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
