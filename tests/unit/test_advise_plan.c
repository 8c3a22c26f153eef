/*
 * The plan parser (lib/advise/plan.c): golden plans captured from a real
 * PostgreSQL 15 (tests/data/explain/NAME.json -> NAME.expected, the dump of
 * the tree), plans it must refuse with a message, and out of memory.
 * QP_GOLDEN_PRINT=1 prints the dumps instead of comparing (to write new
 * goldens; read them before committing).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "advise/cond.h"
#include "advise/plan.h"
#include "failalloc.h"
#include "testutil.h"

static const char *const k_goldens[] = {"seqscan_filter", "topn_limit", "join_nested", "hash_agg",
                                        "sort_disk",      "fk_trigger", "plain_expr", "verbose_output"};

static void test_goldens(void **state) {
  (void)state;
  bool print = getenv("QP_GOLDEN_PRINT") != NULL;
  for (size_t i = 0; i < QP_ARRAY_LEN(k_goldens); i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/explain/%s.json", QP_TEST_DATA_DIR, k_goldens[i]);
    size_t len;
    char *json = qpt_read_file(path, &len);
    assert_non_null(json);
    qp__plan_tree *t;
    char err[256];
    assert_int_equal(qp__plan_parse(NULL, json, len, &t, err, sizeof err), QP_OK);
    qp_buf b;
    qp__buf_init(&b, NULL);
    qp__plan_dump(t, &b);
    if (print) {
      printf("== %s\n%s", k_goldens[i], qp__buf_cstr(&b));
    } else {
      snprintf(path, sizeof path, "%s/explain/%s.expected", QP_TEST_DATA_DIR, k_goldens[i]);
      char *want = qpt_read_file(path, NULL);
      assert_non_null(want);
      if (strcmp(want, qp__buf_cstr(&b)) != 0) {
        printf("golden %s differs:\n%s", k_goldens[i], qp__buf_cstr(&b));
        fail();
      }
      free(want);
    }
    qp__buf_free(&b);
    qp__plan_tree_free(t);
    free(json);
  }
}

static void test_shapes(void **state) {
  (void)state;
  qp__plan_tree *t;
  char err[256];
  const char *seq = "[{\"Plan\": {\"Node Type\": \"Limit\", \"Plans\": [{\"Node Type\": \"Seq Scan\", "
                    "\"Relation Name\": \"t\", \"Actual Rows\": 3, \"Actual Loops\": 2}]}}]";
  assert_int_equal(qp__plan_parse(NULL, seq, strlen(seq), &t, err, sizeof err), QP_OK);
  assert_int_equal(t->nnodes, 2);
  assert_false(t->analyzed); /* the top node has no Actual Rows */
  assert_true(t->root->children[0]->under_limit);
  assert_false(t->root->under_limit);
  assert_ptr_equal(t->root->children[0]->parent, t->root);
  assert_string_equal(t->root->children[0]->relation, "t");
  assert_true(t->root->children[0]->actual_loops == 2);
  qp__plan_tree_free(t);
  /* refused, each with its own message */
  static const struct {
    const char *doc, *msg;
  } bad[] = {
      {"", "not JSON"},
      {"{\"Plan\": {\"Node Type\": \"Result\"}}", "expected [{\"Plan\""},
      {"[]", "expected [{\"Plan\""},
      {"[{\"Plan\": {\"Node Type\": \"Result\"}}, {}]", "expected [{\"Plan\""},
      {"[{\"Plan\": {\"Node\": \"Result\"}}]", "no string \"Node Type\""},
      {"[{\"Plan\": {\"Node Type\": 7}}]", "no string \"Node Type\""},
      {"[{\"Plan\": {\"Node Type\": \"Seq Scan\", \"Plan Rows\": \"many\"}}]",
       "\"Plan Rows\" is not a number in Seq Scan"},
      {"[{\"Plan\": {\"Node Type\": \"Seq Scan\", \"Filter\": 1}}]", "\"Filter\" is not a string"},
      {"[{\"Plan\": {\"Node Type\": \"Sort\", \"Plans\": {}}}]", "\"Plans\" is not an array"},
      {"[{\"Plan\": {\"Node Type\": \"Sort\", \"Plans\": [3]}}]", "not an object in Sort"},
      {"[{\"Plan\": {\"Node Type\": \"Sort\", \"Sort Key\": [1]}}]", "\"Sort Key\" is not a string"},
      {"[{\"Plan\": {\"Node Type\": \"Result\"}, \"Triggers\": 1}]", "\"Triggers\" is not an array"},
      {"[{\"Plan\": {\"Node Type\": \"Result\", \"Node Type\": \"Result\"}}]", "not JSON"},
  };
  for (size_t i = 0; i < QP_ARRAY_LEN(bad); i++) {
    err[0] = '\0';
    assert_int_equal(qp__plan_parse(NULL, bad[i].doc, strlen(bad[i].doc), &t, err, sizeof err),
                     QP_SYNTAX);
    assert_null(t);
    if (strstr(err, bad[i].msg) == NULL) fail_msg("%s: %s", bad[i].doc, err);
  }
  /* too deep: refused, not a stack overflow */
  qp_buf b;
  qp__buf_init(&b, NULL);
  qp__buf_puts(&b, "[{\"Plan\": ");
  for (int i = 0; i < 300; i++) qp__buf_puts(&b, "{\"Node Type\": \"Result\", \"Plans\": [");
  qp__buf_puts(&b, "{\"Node Type\": \"Result\"}");
  for (int i = 0; i < 300; i++) qp__buf_puts(&b, "]}");
  qp__buf_puts(&b, "}]");
  assert_int_equal(qp__plan_parse(NULL, b.data, b.len, &t, err, sizeof err), QP_SYNTAX);
  assert_non_null(strstr(err, "nested deeper"));
  qp__buf_free(&b);
}

static void test_oom(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/explain/hash_agg.json", QP_TEST_DATA_DIR);
  size_t len;
  char *json = qpt_read_file(path, &len);
  assert_non_null(json);
  bool passed = false;
  for (long n = 1; n < 2000 && !passed; n++) {
    qpt_failalloc fa = {.fail_at = n};
    qp_hooks h = qpt_failalloc_hooks(&fa);
    qp__plan_tree *t;
    char err[256];
    qp_status st = qp__plan_parse(&h, json, len, &t, err, sizeof err);
    if (st == QP_OK) {
      passed = true;
      qp__plan_tree_free(t);
    } else {
      assert_int_equal(st, QP_NOMEM);
      assert_null(t);
    }
    assert_int_equal(fa.live, 0);
  }
  assert_true(passed);
  free(json);
}

/* The conditions the rules read from a plan's strings. */
static void test_conditions(void **state) {
  (void)state;
  qp__cond c[QP__COND_MAX];
  assert_int_equal(qp__cond_read("(customer_id = 42)", c, QP__COND_MAX), 1);
  assert_int_equal(c[0].op, QP__COND_EQ);
  assert_string_equal(c[0].column, "customer_id");
  assert_int_equal(qp__cond_read("((status = 'done'::text) AND (amount > '3'::numeric))", c,
                                 QP__COND_MAX), 2);
  assert_string_equal(c[0].column, "status");
  assert_int_equal(c[1].op, QP__COND_RANGE);
  assert_string_equal(c[1].column, "amount");
  assert_int_equal(qp__cond_read("(o.customer_id = c.id)", c, QP__COND_MAX), 1);
  assert_string_equal(c[0].qual, "o");
  assert_string_equal(c[0].rhs_qual, "c");
  assert_string_equal(c[0].rhs_column, "id");
  assert_int_equal(qp__cond_read("(lower(email) = 'a@b.c'::text)", c, QP__COND_MAX), 1);
  assert_string_equal(c[0].expr, "lower(email)");
  assert_string_equal(c[0].column, "email");
  assert_int_equal(qp__cond_read("((email)::text ~~ 'user1%'::text)", c, QP__COND_MAX), 1);
  assert_int_equal(c[0].op, QP__COND_LIKE_PREFIX);
  assert_string_equal(c[0].column, "email");
  assert_int_equal(qp__cond_read("(email ~~ '%x%'::text)", c, QP__COND_MAX), 0);
  assert_int_equal(qp__cond_read("(NOT is_paid)", c, QP__COND_MAX), 1);
  assert_true(c[0].negated);
  assert_int_equal(qp__cond_read("(\"Weird Col\" = $1)", c, QP__COND_MAX), 1);
  assert_string_equal(c[0].column, "Weird Col");
  assert_int_equal(qp__cond_read("((a = 1) OR (b = 2))", c, QP__COND_MAX), 0);
  assert_int_equal(qp__cond_read("(created_at > (now() - '1 day'::interval))", c, QP__COND_MAX),
                   1);
  assert_int_equal(qp__cond_read("(deleted_at IS NULL)", c, QP__COND_MAX), 1);
  assert_int_equal(c[0].op, QP__COND_IS_NULL);
  assert_int_equal(qp__cond_read("(a = b + 1)", c, QP__COND_MAX), 0);
  assert_int_equal(qp__cond_read("((((((", c, QP__COND_MAX), 0);
  assert_int_equal(qp__cond_read("", c, QP__COND_MAX), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_goldens),
      cmocka_unit_test(test_shapes),
      cmocka_unit_test(test_oom),
      cmocka_unit_test(test_conditions),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
