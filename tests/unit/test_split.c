/* The statement splitter: ';' at top level only, both dialects. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Splits `sql` and joins the statements with " | ". */
static const char *split_all(qp_dialect d, const char *sql, size_t len) {
  static char joined[4096];
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_split_basic),          cmocka_unit_test(test_split_comments_only_skipped),
      cmocka_unit_test(test_split_quotes),         cmocka_unit_test(test_split_function_bodies),
      cmocka_unit_test(test_split_positions),      cmocka_unit_test(test_split_many),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
