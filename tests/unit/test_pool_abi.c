/* The public structs that grow keep their size and the offsets of their
 * fields while fields are added (docs/api.md, "Structs that grow"): a
 * program built against an older 0.x header still passes and reads structs
 * the library understands. Sizes are pinned for LP64 (x86_64, aarch64). */
#include "testutil.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

static void test_sizes_are_pinned(void **state) {
  (void)state;
  if (sizeof(void *) != 8) skip();
  assert_int_equal(sizeof(qp_pool_options), 112 + 8 * 8);
  assert_int_equal(offsetof(qp_pool_options, reserved_), 112);
  assert_int_equal(sizeof(qp_pool_stats), 16 * 8 + 3 * QP_POOL_HIST_BUCKETS * 8 + 64 * 8);
  assert_int_equal(offsetof(qp_pool_stats, acquire_hist), 16 * 8);
  assert_int_equal(offsetof(qp_pool_stats, total_query_count), 16 * 8 + 3 * QP_POOL_HIST_BUCKETS * 8);
  assert_int_equal(sizeof(qp_query_event), 88 + 8 * 8);
  assert_int_equal(offsetof(qp_query_event, reserved_), 88);
}

/* The counters and gauges lists make the fields; the reserved tail shrinks
 * as rows are appended, so the struct does not move. */
static void test_stats_lists_fill_the_struct(void **state) {
  (void)state;
  size_t ngauges = 0 QP_POOL_GAUGES(QP_POOL_ONE_), ncounters = 0 QP_POOL_COUNTERS(QP_POOL_ONE_);
  qp_pool_stats s;
  assert_int_equal(sizeof s.reserved_gauges_ / 8 + ngauges, 16);
  assert_int_equal(sizeof s.reserved_ / 8 + ncounters, QP_POOL_COUNTER_SLOTS);
}

/* The library fills a stats snapshot whole, reserved space included. */
static void test_stats_snapshot_zeroes_reserved(void **state) {
  (void)state;
  char dsn[512];
  snprintf(dsn, sizeof dsn, "sqlite://%s/abi.db", qpt_tempdir());
  qp_pool_options o;
  memset(&o, 0xab, sizeof o);
  qp_pool_options_init(&o);
  for (size_t i = 0; i < (sizeof o.reserved_ / sizeof o.reserved_[0]); i++) assert_int_equal(o.reserved_[i], 0);
  o.dsn = dsn;
  qp_pool *p = NULL;
  assert_int_equal(qp_pool_open(&p, &o, NULL, 0), QP_OK);
  qp_pool_stats s;
  memset(&s, 0xab, sizeof s);
  qp_pool_stats_get(p, &s);
  for (size_t i = 0; i < (sizeof s.reserved_ / sizeof s.reserved_[0]); i++) assert_int_equal(s.reserved_[i], 0);
  qp_pool_close(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sizes_are_pinned),
      cmocka_unit_test(test_stats_lists_fill_the_struct),
      cmocka_unit_test(test_stats_snapshot_zeroes_reserved),
  };
  return cmocka_run_group_tests(tests, NULL, qpt_tempdirs_remove);
}
