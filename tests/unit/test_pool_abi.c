/* Structs that grow (docs/api.md): the pool's options and stats and the
 * query event carry their size, so that fields can be appended without
 * breaking a program built against an older header. */
#include "testutil.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

static const char *dsn(void) {
  static char buf[512];
  snprintf(buf, sizeof buf, "sqlite://%s/abi.db", qpt_tempdir());
  return buf;
}

/* Options: qp_pool_options_init sets the size; options without one (not
 * initialized) are refused with a message; an older caller's smaller size
 * is accepted and the fields it does not have take their defaults. */
static void test_options_carry_their_size(void **state) {
  (void)state;
  qp_pool_options o;
  memset(&o, 0xab, sizeof o);
  qp_pool_options_init(&o);
  assert_int_equal(o.size, sizeof o);
  o.dsn = dsn();
  qp_pool *p = NULL;
  char err[256];
  qp_pool_options raw = {0};
  raw.dsn = o.dsn;
  raw.max_size = 1;
  raw.connect_timeout_ms = 100;
  assert_int_equal(qp_pool_open(&p, &raw, err, sizeof err), QP_INVALID);
  assert_non_null(strstr(err, "qp_pool_options_init"));
  assert_null(p);
  o.size = QP_POOL_OPTIONS_MIN_SIZE;
  assert_int_equal(qp_pool_open(&p, &o, err, sizeof err), QP_OK);
  qp_pool_close(p);
}

/* Stats: exactly `size` bytes are written; a size below the first
 * version's is refused and nothing is written. The one metrics list makes
 * every field after the histograms. */
static void test_stats_write_their_size(void **state) {
  (void)state;
  qp_pool_options o;
  qp_pool_options_init(&o);
  o.dsn = dsn();
  qp_pool *p = NULL;
  assert_int_equal(qp_pool_open(&p, &o, NULL, 0), QP_OK);
  size_t nmetrics = 0;
#define COUNT_(kind, field, metric, help) nmetrics++;
  QP_POOL_METRICS(COUNT_)
#undef COUNT_
  assert_int_equal(sizeof(qp_pool_stats),
                   sizeof(size_t) + 3 * QP_POOL_HIST_BUCKETS * sizeof(uint64_t) + nmetrics * 8);
  unsigned char buf[sizeof(qp_pool_stats) + 64];
  memset(buf, 0xab, sizeof buf);
  qp_pool_stats *s = (qp_pool_stats *)(void *)buf;
  s->size = sizeof *s;
  assert_int_equal(qp_pool_stats_get(p, s), QP_OK);
  assert_int_equal(s->size, sizeof *s);
  assert_int_equal(s->acquires, 0);
  assert_int_equal(s->fork_drops, 0);
  for (size_t i = sizeof *s; i < sizeof buf; i++) assert_int_equal(buf[i], 0xab);
  memset(buf, 0xab, sizeof buf);
  s->size = QP_POOL_STATS_MIN_SIZE - 8;
  assert_int_equal(qp_pool_stats_get(p, s), QP_INVALID);
  assert_int_equal(buf[sizeof(size_t)], 0xab);
  qp_pool_close(p);
}

/* Events: size 0 (zero-initialized producers) means this version's fields;
 * a size below them is refused. */
static void test_event_size(void **state) {
  (void)state;
  qp_profile *prof = NULL;
  assert_int_equal(qp_profile_new(&prof, NULL, NULL, 0), QP_OK);
  qp_query_event ev = {.sql = "SELECT 1", .sql_len = 8, .duration_ns = 1000, .rows = 1};
  assert_int_equal(qp_profile_record(prof, &ev), QP_OK);
  ev.size = sizeof ev;
  assert_int_equal(qp_profile_record(prof, &ev), QP_OK);
  ev.size = QP_QUERY_EVENT_MIN_SIZE - 8;
  assert_int_equal(qp_profile_record(prof, &ev), QP_INVALID);
  assert_int_equal(qp_profile_recorded(prof), 2);
  qp_profile_free(prof);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_options_carry_their_size),
      cmocka_unit_test(test_stats_write_their_size),
      cmocka_unit_test(test_event_size),
  };
  return cmocka_run_group_tests(tests, NULL, qpt_tempdirs_remove);
}
