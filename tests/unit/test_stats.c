/* Per-fingerprint statistics: moments (Welford / Chan merge), error codes, OOM paths. */
#include "testutil.h"
#include "failalloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stats/stats_int.h"

static uint64_t rng_state = 42;
static uint64_t rnd(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void test_moments_exact(void **state) {
  (void)state;
  qp_stats s;
  qp__stats_init(&s);
  uint64_t v[] = {2, 4, 4, 4, 5, 5, 7, 9};
  for (size_t i = 0; i < 8; i++)
    assert_true(qp__stats_add(&s, NULL, v[i], (int64_t)i - 1, NULL, 1000 + (int64_t)i));
  assert_int_equal(s.calls, 8);
  assert_int_equal(s.total_ns, 40);
  assert_int_equal(s.min_ns, 2);
  assert_int_equal(s.max_ns, 9);
  assert_int_equal(s.rows, 0 + 1 + 2 + 3 + 4 + 5 + 6); /* -1 is unknown, not subtracted */
  assert_true(fabs(qp__stats_mean(&s) - 5.0) < 1e-12);
  assert_true(fabs(qp__stats_stddev(&s) - 2.0) < 1e-12); /* population stddev */
  assert_int_equal(s.first_ns, 1000);
  assert_int_equal(s.last_ns, 1007);
  qp__stats_free(&s, NULL);
}

/* 1e12 ns (about 17 minutes) +/- a few ns: naive sum-of-squares loses all of it. */
static void test_stable_variance_large(void **state) {
  (void)state;
  qp_stats s, a, b;
  qp__stats_init(&s);
  qp__stats_init(&a);
  qp__stats_init(&b);
  double sum = 0, sumsq = 0;
  int n = 100000;
  for (int i = 0; i < n; i++) {
    int d = (int)(rnd() % 7) - 3; /* -3..3 */
    uint64_t x = 1000000000000ull + (uint64_t)(d + 3);
    sum += d;
    sumsq += (double)d * d;
    assert_true(qp__stats_add(&s, NULL, x, 1, NULL, i));
    assert_true(qp__stats_add(i < n / 3 ? &a : &b, NULL, x, 1, NULL, i));
  }
  double mean_d = sum / n, var = sumsq / n - mean_d * mean_d; /* exact on small deviations */
  double sd = sqrt(var);
  assert_true(sd > 1.9 && sd < 2.1);
  assert_true(fabs(qp__stats_stddev(&s) - sd) / sd < 1e-6);
  assert_true(qp__stats_merge(&a, &b, NULL));
  assert_true(fabs(qp__stats_stddev(&a) - sd) / sd < 1e-6);
  assert_int_equal(a.calls, s.calls);
  assert_int_equal(a.total_ns, s.total_ns);
  qp__stats_free(&s, NULL);
  qp__stats_free(&a, NULL);
  qp__stats_free(&b, NULL);
}

static void test_merge_halves(void **state) {
  (void)state;
  qp_stats whole, h[4];
  qp__stats_init(&whole);
  for (int k = 0; k < 4; k++) qp__stats_init(&h[k]);
  const char *codes[] = {NULL, NULL, NULL, "23505", "SQLITE_BUSY", "40P01"};
  for (int i = 0; i < 20000; i++) {
    uint64_t x = 1000 + rnd() % 10000000;
    const char *err = codes[rnd() % 6];
    int64_t wall = 1700000000000000000 + i;
    assert_true(qp__stats_add(&whole, NULL, x, (int64_t)(rnd() % 5), err, wall));
    assert_true(qp__stats_add(&h[rnd() % 4], NULL, x, 0, err, wall));
  }
  /* rows differ on purpose above; compare everything else. */
  assert_true(qp__stats_merge(&h[0], &h[1], NULL));
  assert_true(qp__stats_merge(&h[2], &h[3], NULL));
  assert_true(qp__stats_merge(&h[0], &h[2], NULL));
  qp_stats *m = &h[0];
  assert_int_equal(m->calls, whole.calls);
  assert_int_equal(m->errors, whole.errors);
  assert_int_equal(m->total_ns, whole.total_ns);
  assert_int_equal(m->min_ns, whole.min_ns);
  assert_int_equal(m->max_ns, whole.max_ns);
  assert_int_equal(m->first_ns, whole.first_ns);
  assert_int_equal(m->last_ns, whole.last_ns);
  assert_true(fabs(qp__stats_mean(m) - qp__stats_mean(&whole)) / qp__stats_mean(&whole) < 1e-12);
  assert_true(fabs(m->m2 - whole.m2) / whole.m2 < 1e-9);
  qp_buf e1, e2;
  qp__buf_init(&e1, NULL);
  qp__buf_init(&e2, NULL);
  assert_true(qp__hist_encode(&m->hist, &e1) && qp__hist_encode(&whole.hist, &e2));
  assert_int_equal(e1.len, e2.len);
  assert_memory_equal(e1.data, e2.data, e1.len);
  e1.len = e2.len = 0;
  assert_true(qp__codes_encode(&m->codes, &e1) && qp__codes_encode(&whole.codes, &e2));
  assert_string_equal(qp__buf_cstr(&e1), qp__buf_cstr(&e2));
  qp__buf_free(&e1);
  qp__buf_free(&e2);
  /* Merging an empty record changes nothing. */
  qp_stats empty;
  qp__stats_init(&empty);
  assert_true(qp__stats_merge(m, &empty, NULL));
  assert_int_equal(m->calls, whole.calls);
  for (int k = 0; k < 4; k++) qp__stats_free(&h[k], NULL);
  qp__stats_free(&whole, NULL);
}

static void test_codes(void **state) {
  (void)state;
  qp_codes c = {0};
  assert_true(qp__codes_add(&c, NULL, "SQLITE_BUSY", 2));
  assert_true(qp__codes_add(&c, NULL, "23505", 1));
  assert_true(qp__codes_add(&c, NULL, "SQLITE_BUSY", 1));
  assert_true(qp__codes_add(&c, NULL, "bad code,with:stuff", 1));
  qp_buf b;
  qp__buf_init(&b, NULL);
  assert_true(qp__codes_encode(&c, &b));
  assert_string_equal(qp__buf_cstr(&b), "23505:1,SQLITE_BUSY:3,bad_code_with_stuff:1");
  qp_codes d = {0};
  assert_int_equal(qp__codes_decode_add(&d, NULL, b.data, b.len), QP_OK);
  assert_int_equal(qp__codes_decode_add(&d, NULL, "23505:4", 7), QP_OK);
  b.len = 0;
  assert_true(qp__codes_encode(&d, &b));
  assert_string_equal(qp__buf_cstr(&b), "23505:5,SQLITE_BUSY:3,bad_code_with_stuff:1");
  /* Malformed text changes nothing. */
  assert_int_equal(qp__codes_decode_add(&d, NULL, "23505:1,oops", 12), QP_SYNTAX);
  assert_int_equal(qp__codes_decode_add(&d, NULL, "x:", 2), QP_SYNTAX);
  assert_int_equal(qp__codes_decode_add(&d, NULL, ":3", 2), QP_SYNTAX);
  b.len = 0;
  assert_true(qp__codes_encode(&d, &b));
  assert_string_equal(qp__buf_cstr(&b), "23505:5,SQLITE_BUSY:3,bad_code_with_stuff:1");
  assert_int_equal(qp__codes_decode_add(&d, NULL, "", 0), QP_OK);
  qp__buf_free(&b);
  qp__codes_free(&c, NULL);
  qp__codes_free(&d, NULL);
}

static void test_oom(void **state) {
  (void)state;
  qpt_failalloc fa = {0};
  qp_hooks hk = qpt_failalloc_hooks(&fa);
  qp_stats s;
  qp__stats_init(&s);
  /* First event: histogram allocation fails, nothing counted. */
  fa.fail_at = 1;
  assert_false(qp__stats_add(&s, &hk, 1000, 1, NULL, 5));
  assert_int_equal(s.calls, 0);
  /* Histogram fine, error-code list fails: the event is dropped whole. */
  fa.fail_at = fa.count + 2;
  assert_false(qp__stats_add(&s, &hk, 1000, 1, "23505", 5));
  assert_int_equal(s.calls, 0);
  assert_int_equal(s.errors, 0);
  assert_int_equal(qp__hist_total(&s.hist), 0);
  fa.fail_at = 0;
  assert_true(qp__stats_add(&s, &hk, 1000, 1, "23505", 5));
  assert_int_equal(s.calls, 1);
  /* Merge that fails on the code list leaves dst as it was. */
  qp_stats src;
  qp__stats_init(&src);
  assert_true(qp__stats_add(&src, NULL, 900000000, 1, "X1", 6));
  assert_true(qp__stats_add(&src, NULL, 900, 1, "X2", 6));
  assert_true(qp__stats_add(&src, NULL, 950, 1, "X3", 6));
  for (long k = 1; k <= 3; k++) {
    fa.fail_at = fa.count + k;
    bool ok = qp__stats_merge(&s, &src, &hk);
    if (!ok) {
      assert_int_equal(s.calls, 1);
      assert_int_equal(qp__hist_total(&s.hist), 1);
      assert_int_equal(s.codes.n, 1);
    } else {
      assert_int_equal(s.calls, 4);
      break;
    }
  }
  fa.fail_at = 0;
  qp__stats_free(&s, &hk);
  qp__stats_free(&src, NULL);
  assert_int_equal(fa.live, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_moments_exact), cmocka_unit_test(test_stable_variance_large),
      cmocka_unit_test(test_merge_halves),  cmocka_unit_test(test_codes),
      cmocka_unit_test(test_oom),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
