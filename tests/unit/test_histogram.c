/* The log-bucket latency histogram: error bound, exact merging, encoding, OOM. */
#include "testutil.h"
#include "failalloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stats/stats_int.h"

static uint64_t rng_state = 0x853c49e6748fea9bull;
static uint64_t rnd(void) { /* splitmix64 */
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double unif(void) { return ((double)(rnd() >> 11) + 0.5) / 9007199254740992.0; }
static double normal(void) { return sqrt(-2 * log(unif())) * cos(2 * M_PI * unif()); }

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static const double qs[] = {0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0};

/* Every quantile within the stated bound of the exact nearest-rank value (rank ceil(q n) - 1). */
static void check_bound(uint64_t *v, size_t n) {
  qp_hist h;
  qp__hist_init(&h);
  uint64_t mn = UINT64_MAX, mx = 0;
  for (size_t i = 0; i < n; i++) {
    assert_true(qp__hist_add(&h, NULL, v[i]));
    if (v[i] < mn) mn = v[i];
    if (v[i] > mx) mx = v[i];
  }
  assert_int_equal(qp__hist_total(&h), n);
  qsort(v, n, sizeof *v, cmp_u64);
  double worst = 0;
  for (size_t i = 0; i < QP_ARRAY_LEN(qs); i++) {
    double rk = ceil(qs[i] * (double)n);
    double exact = (double)v[rk < 1 ? 0 : (size_t)rk - 1];
    double est = qp__hist_quantile(&h, qs[i], (double)mn, (double)mx);
    double err = fabs(est - exact) / exact;
    if (err > worst) worst = err;
    if (err > 0.02) fail_msg("q=%g exact=%.0f est=%.1f err=%.4f", qs[i], exact, est, err);
  }
  assert_true(worst <= QP_HIST_ALPHA + 1e-9);
  /* The occupied range is what costs memory in the store; state it in tests too. */
  int32_t first, last;
  assert_true(qp__hist_range(&h, &first, &last));
  assert_true(last - first < 600);
  qp__hist_free(&h, NULL);
}

static void test_uniform(void **state) {
  (void)state;
  size_t n = 200000;
  uint64_t *v = malloc(n * sizeof *v);
  for (size_t i = 0; i < n; i++) v[i] = 50000 + rnd() % 5000000; /* 50 us .. 5 ms */
  check_bound(v, n);
  free(v);
}

static void test_lognormal(void **state) {
  (void)state;
  size_t n = 200000;
  uint64_t *v = malloc(n * sizeof *v);
  for (size_t i = 0; i < n; i++) v[i] = (uint64_t)exp(log(2e5) + 1.5 * normal()) + 1;
  check_bound(v, n);
  free(v);
}

static void test_bimodal(void **state) {
  (void)state;
  size_t n = 200000;
  uint64_t *v = malloc(n * sizeof *v);
  for (size_t i = 0; i < n; i++) {
    /* cache hits near 80 us, misses near 40 ms */
    double mu = (rnd() % 10) < 8 ? 80e3 : 40e6;
    double x = mu * (1 + 0.1 * normal());
    v[i] = x < 1 ? 1 : (uint64_t)x;
  }
  check_bound(v, n);
  free(v);
}

static void test_extremes(void **state) {
  (void)state;
  uint64_t v[] = {0, 1, 2, 3, 1000, UINT64_MAX / 2, UINT64_MAX};
  qp_hist h;
  qp__hist_init(&h);
  for (size_t i = 0; i < QP_ARRAY_LEN(v); i++) assert_true(qp__hist_add(&h, NULL, v[i]));
  assert_int_equal(qp__hist_total(&h), QP_ARRAY_LEN(v));
  assert_true(qp__hist_quantile(&h, 0, 0, (double)UINT64_MAX) <= 1.0);
  assert_true(qp__hist_quantile(&h, 1, 0, (double)UINT64_MAX) > 1e19);
  /* Small values are exact enough: 2 and 3 land in distinct buckets. */
  assert_true(qp__hist_index(2) != qp__hist_index(3));
  qp__hist_free(&h, NULL);
  qp_hist e;
  qp__hist_init(&e);
  assert_true(qp__hist_quantile(&e, 0.5, 0, 0) == 0);
}

/* qp__hist_index (tables) is qp__hist_index_ref (the definition, log())
 * exactly: every value below 200,000, both sides of every bucket boundary
 * (found by bisection on the definition), the edges of every power of two,
 * and a million log-uniform values. */
static uint64_t rnd64(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void test_index_is_the_definition(void **state) {
  (void)state;
  for (uint64_t v = 0; v < 200000; v++)
    if (qp__hist_index(v) != qp__hist_index_ref(v))
      fail_msg("index(%llu): %d, the definition says %d", (unsigned long long)v,
               qp__hist_index(v), qp__hist_index_ref(v));
  int32_t top = qp__hist_index_ref(UINT64_MAX);
  for (int32_t i = 1; i <= top; i++) {
    uint64_t a = 0, z = UINT64_MAX; /* ref(a) < i <= ref(z) */
    while (z - a > 1) {
      uint64_t m = a + (z - a) / 2;
      if (qp__hist_index_ref(m) >= i) z = m;
      else a = m;
    }
    for (uint64_t v = z > 2 ? z - 2 : 0; v <= z + 2 && v >= z - 2; v++)
      if (qp__hist_index(v) != qp__hist_index_ref(v))
        fail_msg("index(%llu) at the boundary of %d: %d, the definition says %d",
                 (unsigned long long)v, i, qp__hist_index(v), qp__hist_index_ref(v));
  }
  for (int b = 1; b < 64; b++) {
    uint64_t p = (uint64_t)1 << b;
    for (uint64_t v = p - 3; v <= p + 3; v++)
      assert_int_equal(qp__hist_index(v), qp__hist_index_ref(v));
  }
  assert_int_equal(qp__hist_index(UINT64_MAX), qp__hist_index_ref(UINT64_MAX));
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  for (int n = 0; n < 1000000; n++) {
    uint64_t r = rnd64(&seed);
    uint64_t v = r >> (r % 64);
    if (qp__hist_index(v) != qp__hist_index_ref(v))
      fail_msg("index(%llu): %d, the definition says %d", (unsigned long long)v,
               qp__hist_index(v), qp__hist_index_ref(v));
  }
}

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return x < y ? -1 : x > y;
}

/* Several quantiles at once (qp__hist_quantiles, one walk while the q
 * ascend) are each the nearest rank ceil(q N) - 1 of the sorted values'
 * buckets, clamped to [min, max], however the q are ordered. */
static void test_quantiles_at_once(void **state) {
  (void)state;
  static const double ql[][6] = {{0.5, 0.9, 0.95, 0.99, 0.999, 1},
                                 {0.999, 0.5, 0.99, 0, 0.9, 0.95},
                                 {0.5, 0.5, 0.2, 0.7, -1, 2}};
  uint64_t seed = 42;
  for (int round = 0; round < 300; round++) {
    qp_hist h;
    qp__hist_init(&h);
    size_t n = 1 + (size_t)(round % 37) * (size_t)(1 + round % 5);
    int32_t idx[200];
    uint64_t mn = UINT64_MAX, mx = 0;
    for (size_t i = 0; i < n; i++) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      uint64_t v = 1000 + (seed >> 33) % (round % 2 ? 5000000 : 3000);
      assert_true(qp__hist_add(&h, NULL, v));
      idx[i] = qp__hist_index(v);
      if (v < mn) mn = v;
      if (v > mx) mx = v;
    }
    qsort(idx, n, sizeof idx[0], cmp_i32);
    double lo = (double)mn * (round % 3 == 0 ? 1.01 : 1), hi = (double)mx * (round % 3 == 1 ? 0.99 : 1);
    for (size_t l = 0; l < QP_ARRAY_LEN(ql); l++) {
      double out[6];
      qp__hist_quantiles(&h, ql[l], 6, lo, hi, out);
      for (size_t k = 0; k < 6; k++) {
        double q = ql[l][k] < 0 ? 0 : ql[l][k] > 1 ? 1 : ql[l][k];
        double r = ceil(q * (double)n);
        size_t rank = r < 1 ? 0 : (size_t)r - 1;
        double want = qp__hist_value(idx[rank]);
        if (want < lo) want = lo;
        if (want > hi) want = hi;
        assert_true(out[k] == want);
        assert_true(qp__hist_quantile(&h, ql[l][k], lo, hi) == want);
      }
    }
    qp__hist_free(&h, NULL);
  }
  qp_hist e;
  qp__hist_init(&e);
  double out[6];
  qp__hist_quantiles(&e, ql[0], 6, 5, 10, out);
  for (size_t k = 0; k < 6; k++) assert_true(out[k] == 0);
}

/* Few calls: the p95 of {9 us, 16 us} is the slower call, and every
 * percentile of one call is that call. */
static void test_small_counts(void **state) {
  (void)state;
  qp_hist h;
  qp__hist_init(&h);
  assert_true(qp__hist_add(&h, NULL, 9000));
  double one = qp__hist_quantile(&h, 0.99, 9000, 9000);
  assert_true(one == 9000);
  assert_true(qp__hist_add(&h, NULL, 16000));
  double p50 = qp__hist_quantile(&h, 0.50, 9000, 16000);
  double p95 = qp__hist_quantile(&h, 0.95, 9000, 16000);
  assert_true(p50 >= 9000 * 0.98 && p50 <= 9000 * 1.02);
  assert_true(p95 >= 16000 * 0.98 && p95 <= 16000);
  qp__hist_free(&h, NULL);
}

static void test_merge_halves(void **state) {
  (void)state;
  qp_hist a, b, whole;
  qp__hist_init(&a);
  qp__hist_init(&b);
  qp__hist_init(&whole);
  for (int i = 0; i < 50000; i++) {
    uint64_t x = (uint64_t)exp(log(1e6) + normal());
    assert_true(qp__hist_add(&whole, NULL, x));
    assert_true(qp__hist_add(i % 3 ? &a : &b, NULL, x));
  }
  assert_true(qp__hist_merge(&a, &b, NULL));
  int32_t f1, l1, f2, l2;
  assert_true(qp__hist_range(&a, &f1, &l1));
  assert_true(qp__hist_range(&whole, &f2, &l2));
  assert_int_equal(f1, f2);
  assert_int_equal(l1, l2);
  for (int32_t i = f1; i <= l1; i++)
    assert_int_equal(a.counts[i - a.lo], whole.counts[i - whole.lo]);
  /* Same bytes when encoded. */
  qp_buf ea, ew;
  qp__buf_init(&ea, NULL);
  qp__buf_init(&ew, NULL);
  assert_true(qp__hist_encode(&a, &ea));
  assert_true(qp__hist_encode(&whole, &ew));
  assert_int_equal(ea.len, ew.len);
  assert_memory_equal(ea.data, ew.data, ea.len);
  qp__buf_free(&ea);
  qp__buf_free(&ew);
  qp__hist_free(&a, NULL);
  qp__hist_free(&b, NULL);
  qp__hist_free(&whole, NULL);
}

static void test_encode_roundtrip(void **state) {
  (void)state;
  qp_hist h, back;
  qp__hist_init(&h);
  qp__hist_init(&back);
  for (int i = 0; i < 10000; i++) assert_true(qp__hist_add(&h, NULL, 100000 + rnd() % 900000));
  qp_buf b;
  qp__buf_init(&b, NULL);
  assert_true(qp__hist_encode(&h, &b));
  /* A 100 us .. 1 ms spread: about 60 buckets, well under 200 bytes. */
  assert_true(b.len < 200);
  assert_int_equal(qp__hist_decode_add(&back, NULL, b.data, b.len), QP_OK);
  assert_int_equal(qp__hist_total(&back), 10000);
  for (double q = 0; q <= 1; q += 0.05)
    assert_true(qp__hist_quantile(&h, q, 0, 1e18) == qp__hist_quantile(&back, q, 0, 1e18));
  /* Decoding twice adds. */
  assert_int_equal(qp__hist_decode_add(&back, NULL, b.data, b.len), QP_OK);
  assert_int_equal(qp__hist_total(&back), 20000);
  /* Malformed blobs are refused and change nothing. */
  unsigned char bad1[] = {9, 1, 1, 1};
  assert_int_equal(qp__hist_decode_add(&back, NULL, bad1, sizeof bad1), QP_SYNTAX);
  assert_int_equal(qp__hist_decode_add(&back, NULL, b.data, b.len - 1), QP_SYNTAX);
  unsigned char bad2[] = {1, 0xff, 0xff, 0xff, 0x7f, 1, 1};
  assert_int_equal(qp__hist_decode_add(&back, NULL, bad2, sizeof bad2), QP_SYNTAX);
  unsigned char bad3[] = {1, 10, 200, 1}; /* claims 200 buckets, has 1 */
  assert_int_equal(qp__hist_decode_add(&back, NULL, bad3, sizeof bad3), QP_SYNTAX);
  assert_int_equal(qp__hist_total(&back), 20000);
  /* Empty histogram: the version byte. */
  qp_hist e;
  qp__hist_init(&e);
  b.len = 0;
  assert_true(qp__hist_encode(&e, &b));
  assert_int_equal(b.len, 1);
  assert_int_equal(qp__hist_decode_add(&e, NULL, b.data, b.len), QP_OK);
  assert_int_equal(qp__hist_total(&e), 0);
  qp__buf_free(&b);
  qp__hist_free(&h, NULL);
  qp__hist_free(&back, NULL);
}

static void test_oom(void **state) {
  (void)state;
  qpt_failalloc fa = {0};
  qp_hooks hk = qpt_failalloc_hooks(&fa);
  qp_hist h;
  qp__hist_init(&h);
  fa.fail_at = 1;
  assert_false(qp__hist_add(&h, &hk, 1000));
  assert_int_equal(qp__hist_total(&h), 0);
  fa.fail_at = 0;
  assert_true(qp__hist_add(&h, &hk, 1000));
  /* Widening fails: unchanged. */
  fa.fail_at = fa.count + 1;
  assert_false(qp__hist_add(&h, &hk, 1000000000));
  assert_int_equal(qp__hist_total(&h), 1);
  qp_hist src;
  qp__hist_init(&src);
  assert_true(qp__hist_add(&src, NULL, 5000000000ull));
  fa.fail_at = fa.count + 1;
  assert_false(qp__hist_merge(&h, &src, &hk));
  assert_int_equal(qp__hist_total(&h), 1);
  fa.fail_at = 0;
  assert_true(qp__hist_merge(&h, &src, &hk));
  assert_int_equal(qp__hist_total(&h), 2);
  qp__hist_free(&h, &hk);
  qp__hist_free(&src, NULL);
  assert_int_equal(fa.live, 0);
}

/* Random bytes never crash the decoder, and a refused blob changes nothing. */
static void test_decode_garbage(void **state) {
  (void)state;
  qp_hist h;
  qp__hist_init(&h);
  assert_true(qp__hist_add(&h, NULL, 12345));
  unsigned char buf[64];
  int ok = 0;
  for (int round = 0; round < 20000; round++) {
    size_t n = rnd() % sizeof buf;
    for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)rnd();
    if (n > 0 && round % 2) buf[0] = QP_HIST_ENCODING_VERSION; /* get past the version byte */
    uint64_t before = qp__hist_total(&h);
    qp_status rc = qp__hist_decode_add(&h, NULL, buf, n);
    assert_true(rc == QP_OK || rc == QP_SYNTAX);
    if (rc == QP_SYNTAX) assert_int_equal(qp__hist_total(&h), before);
    else ok++;
    /* keep totals small so that sums cannot wrap */
    if (rc == QP_OK) {
      qp__hist_free(&h, NULL);
      assert_true(qp__hist_add(&h, NULL, 12345));
    }
  }
  assert_true(ok > 0);
  qp__hist_free(&h, NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_uniform),       cmocka_unit_test(test_lognormal),
      cmocka_unit_test(test_bimodal),       cmocka_unit_test(test_extremes),
      cmocka_unit_test(test_index_is_the_definition),
      cmocka_unit_test(test_merge_halves),  cmocka_unit_test(test_encode_roundtrip),
      cmocka_unit_test(test_oom),           cmocka_unit_test(test_decode_garbage),
      cmocka_unit_test(test_small_counts),  cmocka_unit_test(test_quantiles_at_once),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
