/* The report renderers' number and time formatting (tools/qprof/report_json.c,
 * report_common.c, lib/core/clock.c), which writes without printf for speed:
 * every result is compared with what printf (and gmtime_r) give for the
 * same value, over millions of values: random bit patterns, ratios, whole
 * nanoseconds divided as rq_dur divides them, exact ties (which printf
 * rounds to even) and the neighbours of powers of ten. Also rq_count and
 * rq_shorten's ASCII path against their definitions. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "report_common.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) { /* xorshift64* */
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 0x2545f4914f6cdd1dull;
}

static double from_bits(uint64_t b) {
  double d;
  memcpy(&d, &b, sizeof d);
  return d;
}

/* rq_num_plain as it was written with printf (the reference). */
static void ref_num_plain(double v, char *buf, size_t len) {
  if (!isfinite(v)) {
    snprintf(buf, len, "%s", "");
    return;
  }
  snprintf(buf, len, "%.15g", v);
  if (strtod(buf, NULL) != v) snprintf(buf, len, "%.17g", v);
}

static long checked;

static void check_num(double v) {
  char got[64], want[64];
  rq_num_plain(v, got, sizeof got);
  ref_num_plain(v, want, sizeof want);
  if (strcmp(got, want) != 0) fail_msg("rq_num_plain(%a): got %s, printf gives %s", v, got, want);
  checked++;
}

static void check_fixed(double v, int dec) {
  char got[64], want[64];
  rq_fixed(v, dec, got, sizeof got);
  snprintf(want, sizeof want, "%.*f", dec, v);
  if (strcmp(got, want) != 0) fail_msg("rq_fixed(%a, %d): got %s, printf gives %s", v, dec, got, want);
  checked++;
}

/* rq_dur as it was written with printf. */
static void ref_dur(double ns, char *buf, size_t len) {
  if (ns < 1e3) snprintf(buf, len, "%.0fns", ns);
  else if (ns < 1e4) snprintf(buf, len, "%.2fus", ns / 1e3);
  else if (ns < 1e5) snprintf(buf, len, "%.1fus", ns / 1e3);
  else if (ns < 1e6) snprintf(buf, len, "%.0fus", ns / 1e3);
  else if (ns < 1e7) snprintf(buf, len, "%.2fms", ns / 1e6);
  else if (ns < 1e9) snprintf(buf, len, "%.1fms", ns / 1e6);
  else if (ns < 6e10) snprintf(buf, len, "%.2fs", ns / 1e9);
  else if (ns < 3.6e12) snprintf(buf, len, "%.0fm%02.0fs", floor(ns / 6e10), fmod(ns / 1e9, 60));
  else snprintf(buf, len, "%.0fh%02.0fm", floor(ns / 3.6e12), fmod(floor(ns / 6e10), 60));
}

static void check_dur(double ns) {
  char got[64], want[64];
  rq_dur(ns, got, sizeof got);
  ref_dur(ns, want, sizeof want);
  if (strcmp(got, want) != 0) fail_msg("rq_dur(%a): got %s, printf gives %s", ns, got, want);
  checked++;
}

static void test_num_plain(void **state) {
  (void)state;
  static const double fixed[] = {0.0, -0.0, 1.0, -1.0, 0.1, 0.5, 22350.0, 0.00134, 1e-5, 1e-4,
                                 9.9999999999999995e-5, 1e15, 1e16, 1e17, 1e21, 1e22, 1e23,
                                 123456789012345.0, 1234567890123456.0, 12345678901234567.0,
                                 3.7378978681257848e-5, 2.0 / 3.0, 1.0 / 3.0, 5e-324, 2.2250738585072014e-308,
                                 1.7976931348623157e308, 0.30000000000000004, 3.9494, 0.001,
                                 123.456, 1e-300, 4.35e-7};
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
    check_num(fixed[i]);
    check_num(-fixed[i]);
  }
  check_num(INFINITY);
  check_num(NAN);
  for (int i = 0; i < 200000; i++) {
    uint64_t r = next();
    check_num(from_bits(r)); /* any double, NaN and infinities included */
    /* shares and means: a ratio of whole numbers, and ns as ms */
    uint64_t a = next() % 10000000000ull, b = 1 + next() % 100000000000000ull;
    check_num((double)a / (double)b);
    check_num((double)(next() % 100000000000ull) / (double)(1 + next() % 100000));
    check_num((double)(next() % 10000000000000ull) / 1e6);
    check_num((double)a / (double)b * 1e-6);
  }
  /* the neighbours of powers of ten and of values with 15 and 17 digits */
  for (int e = -30; e <= 30; e++) {
    double p = pow(10, e);
    double x = p;
    for (int k = 0; k < 20; k++) x = nextafter(x, 0);
    for (int k = 0; k < 40; k++, x = nextafter(x, INFINITY)) check_num(x);
  }
  print_message("rq_num_plain: %ld values agree with printf\n", checked);
}

static void test_fixed_and_dur(void **state) {
  (void)state;
  checked = 0;
  for (int dec = 0; dec <= 6; dec++) {
    /* exact ties (k/8, k + 0.5): printf rounds them to even */
    for (int k = 0; k < 4000; k++) {
      check_fixed(k / 8.0, dec);
      check_fixed(k + 0.5, dec);
      check_fixed(k / 1024.0, dec);
      check_fixed(k * 0.05, dec);
      check_fixed(k * 0.005, dec);
    }
    check_fixed(0.0, dec);
    check_fixed(-0.0, dec);
    check_fixed(-1.25, dec);
    check_fixed(1e12, dec);
    check_fixed(1e300, dec);
    check_fixed(5e-324, dec);
    check_fixed(INFINITY, dec);
    check_fixed(NAN, dec);
  }
  for (int i = 0; i < 200000; i++) {
    int dec = (int)(next() % 4);
    check_fixed((double)(next() % 1000000000000ull) / 1e3, dec);
    check_fixed((double)(next() % 1000000000ull) / 1e6, dec);
    check_fixed((double)(next() % 100000) / 1e3, dec);
    check_fixed((double)(next() % 1000000) / (double)(1 + next() % 1000000) * 100, 1);
    check_fixed(from_bits(next()), dec);
    check_fixed(from_bits(next() & 0x7fffffffffffffffull) / 1e290, dec);
  }
  /* durations: whole ns up to hours, ns/1e3 and /1e6 at every unit edge */
  for (int i = 0; i < 200000; i++) {
    uint64_t ns = next() % (1ull << (next() % 44));
    check_dur((double)ns);
    check_dur((double)ns + (double)(next() % 1000) / 1000.0); /* means, percentiles */
  }
  static const double edges[] = {999.5, 1e3, 9999.5, 9995, 1e4, 99950, 99999, 1e5, 999500,
                                 999999, 1e6, 9995000, 9999999, 1e7, 999950000, 1e9, 59995000000.0,
                                 6e10, 3.6e12, 1e15, -1, -0.0, 0.0, 0.4, 0.5, 1.5, 2.5};
  for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
    check_dur(edges[i]);
    check_dur(nextafter(edges[i], 0));
    check_dur(nextafter(edges[i], INFINITY));
  }
  print_message("rq_fixed and rq_dur: %ld values agree with printf\n", checked);
}

static void test_count_and_ms(void **state) {
  (void)state;
  for (int i = 0; i < 200000; i++) {
    uint64_t n = i < 100 ? (uint64_t)i : next() >> (next() % 64);
    char got[40], raw[32], want[40];
    rq_count(n, got, sizeof got);
    int d = snprintf(raw, sizeof raw, "%llu", (unsigned long long)n);
    size_t k = 0;
    for (int j = 0; j < d; j++) {
      want[k++] = raw[j];
      if ((d - j - 1) > 0 && (d - j - 1) % 3 == 0) want[k++] = ',';
    }
    want[k] = '\0';
    assert_string_equal(got, want);
    /* exact milliseconds: the decimal of n / 1e6 */
    char ms[40], ref[64];
    rq_ns_ms(n, true, ms, sizeof ms);
    snprintf(ref, sizeof ref, "%llu.%06llu", (unsigned long long)(n / 1000000),
             (unsigned long long)(n % 1000000));
    size_t l = strlen(ref);
    while (ref[l - 1] == '0' && ref[l - 2] != '.') ref[--l] = '\0';
    assert_string_equal(ms, ref);
  }
  char small[6];
  rq_ns_ms(123456789, false, small, sizeof small); /* cut as snprintf cuts */
  assert_string_equal(small, "123.4");
  rq_count(1234567, small, sizeof small);
  assert_string_equal(small, "1,23");
}

static void test_iso8601(void **state) {
  (void)state;
  for (int i = 0; i < 200000; i++) {
    int64_t ns = (int64_t)next();
    if (i % 4 == 1) ns %= 4102444800LL * 1000000000LL; /* up to 2100 */
    if (i % 4 == 2) ns = -(int64_t)((uint64_t)ns % (2208988800ULL * 1000000000ULL)); /* from 1900 */
    char got[40], want[96];
    qp__format_iso8601(ns, got, sizeof got);
    time_t secs = (time_t)(ns / 1000000000);
    int ms = (int)((ns % 1000000000) / 1000000);
    if (ms < 0) {
      ms += 1000;
      secs -= 1;
    }
    struct tm tm;
    assert_non_null(gmtime_r(&secs, &tm));
    snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    if (strcmp(got, want) != 0) fail_msg("iso8601(%lld): got %s, want %s", (long long)ns, got, want);
  }
  char cut[11];
  qp__format_iso8601(0, cut, sizeof cut);
  assert_string_equal(cut, "1970-01-01");
}

static void test_shorten_ascii(void **state) {
  (void)state;
  char buf[64];
  assert_string_equal(rq_shorten("select 1", 0, buf, sizeof buf), "select 1");
  assert_string_equal(rq_shorten("select 1", 8, buf, sizeof buf), "select 1");
  assert_string_equal(rq_shorten("select 12", 8, buf, sizeof buf), "selec...");
  assert_string_equal(rq_shorten("abcdef", 2, buf, sizeof buf), "...");
  assert_string_equal(rq_shorten("", 5, buf, sizeof buf), "");
  /* a buffer too small: cut with "..." where it ends, as for any text */
  char small[10];
  assert_string_equal(rq_shorten("abcdefghijkl", 0, small, sizeof small), "abcde...");
  assert_string_equal(rq_shorten("abcde", 0, small, sizeof small), "abcde");
  assert_string_equal(rq_shorten("abcd", 0, small, sizeof small), "abcd");
  /* the same as the general path (a non-ASCII character after the cut) */
  char a[10], b[10];
  rq_shorten("abcdefghij", 0, a, sizeof a);
  rq_shorten("abcdefghij\xc3\xa9", 0, b, sizeof b);
  assert_string_equal(a, b);
  rq_shorten("abcdefgh", 4, a, sizeof a);
  rq_shorten("abcdefgh\x01", 4, b, sizeof b);
  assert_string_equal(a, b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_num_plain),    cmocka_unit_test(test_fixed_and_dur),
      cmocka_unit_test(test_count_and_ms), cmocka_unit_test(test_iso8601),
      cmocka_unit_test(test_shorten_ascii),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
