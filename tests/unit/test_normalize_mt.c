/*
 * One normalizer shared by many threads (the documented contract), with and
 * without user rules: every thread gets exactly the single-threaded result.
 * More threads than the rules' match-data pool holds, so the fallback path
 * (a temporary match data block) runs too. Run under TSan in CI.
 */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define THREADS 24
#define ITERS 400

static const char *const queries[] = {
    "SELECT * FROM tmp_8f3a91c2 WHERE id IN (1, 2, 3)",
    "select a, b from p_12 join tmp_00aabbccdd using (id) where x = 'y'",
    "INSERT INTO events (a, b) VALUES (1, 'a'), (2, 'b'), ($1, $2)",
    "update p_7 set v = v + 1 where k = $1 /* app='x' */",
};
#define NQ (sizeof queries / sizeof queries[0])

typedef struct shared {
  qp_normalizer *n;
  char expect[NQ][QP_NORMALIZED_MAX];
  uint64_t expect_fp[NQ];
} shared;

typedef struct worker {
  shared *sh;
  int id;
  int mismatches;
} worker;

static void *work(void *arg) {
  worker *w = arg;
  char out[QP_NORMALIZED_MAX];
  for (int i = 0; i < ITERS; i++) {
    size_t q = (size_t)(i + w->id) % NQ;
    uint64_t fp;
    if (qp_normalize(w->sh->n, queries[q], strlen(queries[q]), out, sizeof out, NULL, &fp) != QP_OK ||
        strcmp(out, w->sh->expect[q]) != 0 || fp != w->sh->expect_fp[q])
      w->mismatches++;
  }
  return NULL;
}

static void run_shared(const char *const *rules, size_t nrules, const char *want0) {
  static shared sh;
  assert_int_equal(qp_normalizer_new(&sh.n, QP_DIALECT_POSTGRES, rules, nrules, NULL, NULL, 0), QP_OK);
  for (size_t q = 0; q < NQ; q++)
    assert_int_equal(qp_normalize(sh.n, queries[q], strlen(queries[q]), sh.expect[q], QP_NORMALIZED_MAX,
                                  NULL, &sh.expect_fp[q]),
                     QP_OK);
  assert_string_equal(sh.expect[0], want0);
  pthread_t th[THREADS];
  worker w[THREADS];
  for (int i = 0; i < THREADS; i++) {
    w[i] = (worker){&sh, i, 0};
    assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
  }
  int bad = 0;
  for (int i = 0; i < THREADS; i++) {
    pthread_join(th[i], NULL);
    bad += w[i].mismatches;
  }
  assert_int_equal(bad, 0);
  qp_normalizer_free(sh.n);
}

static void test_shared_no_rules(void **state) {
  (void)state;
  run_shared(NULL, 0, "select * from tmp_8f3a91c2 where id in (?)");
}

static void test_shared_with_rules(void **state) {
  (void)state;
  static const char *const rules[] = {"tmp_[0-9a-f]{6,}=tmp_?", "^p_[0-9]+$=p_n"};
  run_shared(rules, 2, "select * from tmp_? where id in (?)");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shared_no_rules),
      cmocka_unit_test(test_shared_with_rules),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
