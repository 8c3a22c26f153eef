/*
 * The normalizer's list blocks and the ')' that ends a list or a VALUES row:
 * the 64-byte block scan reads the last element up to the ')' itself, so
 * here the last element of a list is every form the blocks take and some
 * look-alikes they must leave to the scalar scan, with the ')' at every
 * offset of a block (the first element's length shifts it).
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *norm(const qp_normalizer *n, const char *sql) {
  return qpt_normalize(n, sql, strlen(sql), NULL);
}

/* "prefix" + a number of `width` digits + `count` elements "12, " ... + last + "suffix" */
static const char *build(char *buf, size_t cap, const char *prefix, int width, int count,
                         const char *last, const char *suffix) {
  size_t k = (size_t)snprintf(buf, cap, "%s", prefix);
  for (int i = 0; i < width; i++) buf[k++] = (char)('1' + i % 9);
  for (int i = 0; i < count; i++) k += (size_t)snprintf(buf + k, cap - k, ", %d", 10 + i);
  snprintf(buf + k, cap - k, ", %s%s", last, suffix);
  return buf;
}

static void test_list_close_offsets(void **state) {
  (void)state;
  static const char *const good[] = {"7",     "-12",     "3.25",   ".5",    "1.",     "2e10",
                                     "4E-3",  "'ab'",    "'it''s'", "''",   "$3",     "TRUE",
                                     "false", "'a,b)'",  "X'1F'",  "NULL",  "1::int", "- 4"};
  static const char *const pg_good[] = {"E'x\\'y'", "B'101'", "U&'d\\0061t'", "$$d)$$",
                                        "$q$a,b)$q$", "N'x'", "E'a''b'"};
  static const char *const bad[] = {"a",     "1e",    "1.2.3", "$1.5",  "truex", "1 2",
                                    "f(1)",  "1-2",   "'a'b",  "1_0x",  "t.c",   "a(1)"};
  static const char *const pg_bad[] = {"$$a$$b", "E'a\\''b", "U&'x' UESCAPE '!'", "'a\\''"};
  char sql[1024];
  for (int d = 0; d < 2; d++) {
    qp_normalizer *n = qpt_normalizer(d ? QP_DIALECT_SQLITE : QP_DIALECT_POSTGRES);
    const size_t ng = sizeof good / sizeof *good + (d ? 0 : sizeof pg_good / sizeof *pg_good);
    const size_t nb = sizeof bad / sizeof *bad + (d ? 0 : sizeof pg_bad / sizeof *pg_bad);
    for (int width = 1; width <= 66; width++) {
      for (int count = 0; count <= 9; count += 3) {
        for (size_t g = 0; g < ng; g++) {
          const char *e = g < sizeof good / sizeof *good ? good[g]
                                                         : pg_good[g - sizeof good / sizeof *good];
          if (d == 1 && strcmp(e, "1::int") == 0) continue;
          const char *out = norm(n, build(sql, sizeof sql, "SELECT * FROM t WHERE a IN (", width,
                                          count, e, ") AND b = 1"));
          if (strcmp(out, "select * from t where a in (?) and b = ?") != 0)
            fail_msg("dialect %d, width %d, count %d, last %s: %s", d, width, count, e, out);
          /* a VALUES list's last row, followed by something else than a row */
          out = norm(n, build(sql, sizeof sql, "INSERT INTO t VALUES (", width, count, e,
                              "), (1, 2) RETURNING id"));
          if (strncmp(out, "insert into t values (?", 23) != 0 || strstr(out, "), (") != NULL ||
              strcmp(out + strlen(out) - 14, ") returning id") != 0)
            fail_msg("dialect %d, width %d, count %d, row ending %s: %s", d, width, count, e, out);
        }
        for (size_t b = 0; b < nb; b++) {
          const char *e = b < sizeof bad / sizeof *bad ? bad[b]
                                                       : pg_bad[b - sizeof bad / sizeof *bad];
          const char *out = norm(n, build(sql, sizeof sql, "SELECT * FROM t WHERE a IN (", width,
                                          count, e, ")"));
          int commas = 0;
          for (const char *c = out; *c; c++) commas += *c == ',';
          if (commas < count + 1)
            fail_msg("dialect %d, width %d, count %d, last %s collapsed: %s", d, width, count, e,
                     out);
          /* the odd element in the last row keeps that row */
          out = norm(n, build(sql, sizeof sql, "INSERT INTO t VALUES (1), (", width, count, e,
                              ") RETURNING id"));
          if (strstr(out, "), (") == NULL)
            fail_msg("dialect %d, width %d, count %d, row ending %s collapsed: %s", d, width,
                     count, e, out);
        }
      }
    }
    qp_normalizer_free(n);
  }
}

/* White space before the ')' and an empty last element are the scalar
 * scan's: the same shapes as with one element. */
static void test_list_close_space(void **state) {
  (void)state;
  qp_normalizer *n = qpt_normalizer(QP_DIALECT_POSTGRES);
  char sql[1024], want[1024];
  for (int width = 1; width <= 66; width++) {
    snprintf(want, sizeof want, "%s", norm(n, "SELECT * FROM t WHERE a IN (1 )"));
    const char *out = norm(n, build(sql, sizeof sql, "SELECT * FROM t WHERE a IN (", width, 5, "9",
                                    " )"));
    assert_string_equal(out, want);
    out = norm(n, build(sql, sizeof sql, "SELECT * FROM t WHERE a IN (", width, 5, "9", ",)"));
    if (strstr(out, ", )") == NULL && strstr(out, ",)") == NULL) fail_msg("width %d: %s", width, out);
    out = norm(n, build(sql, sizeof sql, "SELECT ARRAY[", width, 5, "9", "]"));
    assert_string_equal(out, "select array[?]");
    out = norm(n, build(sql, sizeof sql, "SELECT * FROM t WHERE a IN (", width, 5, "9",
                        ") OR a IN (1, 2)"));
    assert_string_equal(out, "select * from t where a in (?) or a in (?)");
  }
  qp_normalizer_free(n);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_list_close_offsets),
      cmocka_unit_test(test_list_close_space),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
