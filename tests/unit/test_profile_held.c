/* What a profile holds while its store cannot be written: everything, up to
 * 100,000 entries; beyond, the entries of the oldest buckets go first and
 * their statements are counted in qp_profile_lost; what is held is written,
 * exactly, once the store takes it. The failing store is a real one opened
 * read-only (its writes fail with QP_INVALID, as a broken one fails). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HELD 100000

static void record(qp_profile *p, uint64_t fp, int64_t t_s, int calls) {
  char text[48];
  snprintf(text, sizeof text, "select c%llu", (unsigned long long)fp);
  for (int i = 0; i < calls; i++) {
    qp_query_event e = {.size = sizeof e};
    e.backend = QP_BACKEND_SQLITE;
    e.database = "main";
    e.normalized = text;
    e.normalized_len = strlen(text);
    e.fingerprint = fp;
    e.duration_ns = 1000;
    e.end_wall_ns = t_s * 1000000000;
    assert_int_equal(qp_profile_record(p, &e), QP_OK);
  }
}

static void test_bound_oldest_first(void **state) {
  (void)state;
  char path[600], err[512];
  snprintf(path, sizeof path, "%s/held.db", qpt_tempdir());
  qp_store *w = NULL, *ro = NULL;
  assert_int_equal(qp_store_open(&w, path, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  assert_int_equal(qp_store_open(&ro, path, QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  qp_profile *p = NULL;
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  const int64_t old_t = 1700000040, mid_t = old_t + 3600, new_t = old_t + 7200;
  /* 30 entries in the oldest bucket (2 calls each), HELD - 10 in the middle
   * one, 5 in the newest: 25 too many, all from the oldest bucket */
  for (uint64_t i = 0; i < 30; i++) record(p, 1 + i, old_t, 2);
  for (uint64_t i = 0; i < HELD - 10; i++) record(p, 1000 + i, mid_t, 1);
  for (uint64_t i = 0; i < 5; i++) record(p, 1 + i, new_t, 3);
  assert_int_equal(qp_profile_flush(p, ro), QP_INVALID);
  assert_int_equal(qp_profile_lost(p), 25 * 2);
  /* a second failure holds the same: nothing more is dropped */
  assert_int_equal(qp_profile_flush(p, ro), QP_INVALID);
  assert_int_equal(qp_profile_lost(p), 25 * 2);
  /* the store takes it: everything held is written once */
  assert_int_equal(qp_profile_flush(p, w), QP_OK);
  qpt_sum all = {0}, oldest = {0}, newest = {0};
  assert_int_equal(qp_store_summarize(w, INT64_MIN, INT64_MAX, qpt_sum_add, &all), QP_OK);
  assert_int_equal(qp_store_summarize(w, old_t * 1000000000, mid_t * 1000000000, qpt_sum_add,
                                      &oldest),
                   QP_OK);
  assert_int_equal(qp_store_summarize(w, new_t * 1000000000, INT64_MAX, qpt_sum_add, &newest),
                   QP_OK);
  assert_int_equal(oldest.calls, 5 * 2);
  assert_int_equal(newest.calls, 5 * 3);
  assert_int_equal(all.calls, 5 * 2 + (HELD - 10) + 5 * 3);
  qp_profile_free(p);
  qp_store_close(ro);
  qp_store_close(w);
}

/* Below the bound nothing is dropped, however often the write fails. */
static void test_below_bound_nothing_lost(void **state) {
  (void)state;
  char path[600], err[512];
  snprintf(path, sizeof path, "%s/held2.db", qpt_tempdir());
  qp_store *w = NULL, *ro = NULL;
  assert_int_equal(qp_store_open(&w, path, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  assert_int_equal(qp_store_open(&ro, path, QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  qp_profile *p = NULL;
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  for (int round = 0; round < 5; round++) {
    for (uint64_t i = 0; i < 100; i++) record(p, 1 + i, 1700000000 + round * 60, 1);
    assert_int_equal(qp_profile_flush(p, ro), QP_INVALID);
  }
  assert_int_equal(qp_profile_lost(p), 0);
  assert_int_equal(qp_profile_flush(p, w), QP_OK);
  qpt_sum all = {0};
  assert_int_equal(qp_store_summarize(w, INT64_MIN, INT64_MAX, qpt_sum_add, &all), QP_OK);
  assert_int_equal(all.calls, 500);
  qp_profile_free(p);
  qp_store_close(ro);
  qp_store_close(w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bound_oldest_first),
      cmocka_unit_test(test_below_bound_nothing_lost),
  };
  return cmocka_run_group_tests(tests, NULL, qpt_tempdirs_remove);
}
