/* The advisor's SQLite condition reader (qp__adv_where) on statements as
 * people write them, read on by cond.c; and the rule that keeps a
 * candidate out when an index already has its keys (qp__adv_covered). */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

#include "advise/advise_int.h"

static void where_is(const char *sql, const char *want) {
  char out[512];
  size_t n = qp__adv_where(sql, strlen(sql), out, sizeof out);
  assert_int_equal(n, strlen(out));
  assert_string_equal(out, want);
}

static void test_where(void **state) {
  (void)state;
  where_is("SELECT * FROM t WHERE a=5", "a = 5");
  where_is("select * from t where a == 5 and b>3 order by c limit 2", "a = 5 AND b > 3");
  where_is("SELECT o.id FROM orders o JOIN items i ON i.order_id=o.id WHERE o.x = ?",
           "i.order_id = o.id AND o.x = $0");
  where_is("UPDATE t SET a = 1 WHERE name LIKE 'ab%' RETURNING a", "name ~~ 'ab%'");
  where_is("SELECT * FROM t WHERE lower(e) = 'x' GROUP BY a", "lower(e) = 'x'");
  /* a subquery's WHERE is not the statement's */
  where_is("SELECT * FROM (SELECT * FROM u WHERE z = 1) s WHERE s.y = 2", "s.y = 2");
  where_is("SELECT 1", "");
  where_is("SELECT * FROM t WHERE a = 1; DELETE FROM t WHERE b = 2", "a = 1");
  /* too long for the buffer: nothing rather than half */
  char small[8];
  assert_int_equal(qp__adv_where("SELECT * FROM t WHERE abcdef = 1", 32, small, sizeof small), 0);
  assert_string_equal(small, "");
  /* and cond.c reads it */
  char out[512];
  const char *q = "SELECT * FROM t WHERE a=5 AND b<=7 AND c LIKE 'k%'";
  qp__adv_where(q, strlen(q), out, sizeof out);
  qp__cond c[QP__COND_MAX];
  assert_int_equal(qp__cond_read(out, c, QP__COND_MAX), 3);
  assert_int_equal(c[0].op, QP__COND_EQ);
  assert_string_equal(c[0].column, "a");
  assert_int_equal(c[1].op, QP__COND_RANGE);
  assert_int_equal(c[2].op, QP__COND_LIKE_PREFIX);
}

static void test_covered(void **state) {
  (void)state;
  adv_table t;
  memset(&t, 0, sizeof t);
  t.nindexes = 3;
  snprintf(t.idx[0].name, ADV_NAME, "weird_name");
  snprintf(t.idx[0].am, 16, "btree");
  t.idx[0].nkeys = 2;
  snprintf(t.idx[0].keys[0], ADV_KEY, "customer_id");
  snprintf(t.idx[0].keys[1], ADV_KEY, "created_at");
  snprintf(t.idx[1].name, ADV_NAME, "partial_one");
  snprintf(t.idx[1].am, 16, "btree");
  t.idx[1].partial = true;
  t.idx[1].nkeys = 1;
  snprintf(t.idx[1].keys[0], ADV_KEY, "status");
  snprintf(t.idx[2].name, ADV_NAME, "email_lower");
  snprintf(t.idx[2].am, 16, "btree");
  t.idx[2].nkeys = 1;
  snprintf(t.idx[2].keys[0], ADV_KEY, "lower(email)");
  snprintf(t.idx[2].opc[0], 64, "text_ops");
  adv_cand c;
  memset(&c, 0, sizeof c);
  c.nkeys = 1;
  snprintf(c.keys[0], ADV_KEY, "customer_id");
  assert_ptr_equal(qp__adv_covered(&t, &c), &t.idx[0]); /* a prefix, under another name */
  c.nkeys = 2;
  snprintf(c.keys[1], ADV_KEY, "created_at DESC");
  assert_ptr_equal(qp__adv_covered(&t, &c), &t.idx[0]); /* direction: scanned backwards */
  snprintf(c.keys[0], ADV_KEY, "created_at");
  snprintf(c.keys[1], ADV_KEY, "customer_id");
  assert_null(qp__adv_covered(&t, &c)); /* another order */
  c.nkeys = 1;
  snprintf(c.keys[0], ADV_KEY, "status");
  assert_null(qp__adv_covered(&t, &c)); /* partial indexes never cover */
  snprintf(c.keys[0], ADV_KEY, "(lower(email))");
  assert_ptr_equal(qp__adv_covered(&t, &c), &t.idx[2]); /* the same expression */
  snprintf(c.keys[0], ADV_KEY, "\"customer_id\"");
  assert_ptr_equal(qp__adv_covered(&t, &c), &t.idx[0]);
  /* text_pattern_ops is covered only by a pattern_ops key */
  snprintf(t.idx[2].keys[0], ADV_KEY, "email");
  snprintf(c.keys[0], ADV_KEY, "email text_pattern_ops");
  assert_null(qp__adv_covered(&t, &c));
  snprintf(t.idx[2].opc[0], 64, "text_pattern_ops");
  assert_ptr_equal(qp__adv_covered(&t, &c), &t.idx[2]);
}

/* The ORDER BY ... LIMIT reader: plain column terms only, each named. */
static void test_order(void **state) {
  (void)state;
  qp__adv_order o;
  assert_true(qp__adv_order_read("SELECT * FROM t ORDER BY a, t.b DESC LIMIT 5", &o));
  assert_int_equal(o.n, 2);
  assert_string_equal(o.col[0], "a");
  assert_false(o.desc[0]);
  assert_string_equal(o.qual[1], "t");
  assert_string_equal(o.col[1], "b");
  assert_true(o.desc[1]);
  assert_false(qp__adv_order_read("SELECT * FROM t ORDER BY a + 1 LIMIT 5", &o));
  assert_false(qp__adv_order_read("SELECT * FROM t ORDER BY a", &o));
  /* an empty quoted name is no column (fuzz_advise_where found it read as one) */
  assert_false(qp__adv_order_read("SELECT * FROM t ORDER BY [] LIMIT 5", &o));
  assert_false(qp__adv_order_read("SELECT * FROM t ORDER BY \"\", a LIMIT 5", &o));
  assert_false(qp__adv_order_read("SELECT * FROM t ORDER BY a, `` LIMIT 5", &o));
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_where), cmocka_unit_test(test_covered),
                                     cmocka_unit_test(test_order)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
