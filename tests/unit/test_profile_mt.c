/* Concurrency of the profile: threads recording while another flushes, and
 * 8 processes flushing into one store file; totals must be exact. */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

/* Temporary directories of this run, removed at the end (qpt_tempdirs_remove). */
static const char *tmpdir(void) {
  const char *d = qpt_tempdir();
  assert_non_null(d);
  return d;
}

#define NTHREADS 4
#define PER_THREAD 20000
#define NFP 7

static const char *texts[NFP] = {"select ?",           "select * from a where id = ?",
                                 "update b set x = ?", "insert into c values (?)",
                                 "delete from d",      "select * from e join f using (id)",
                                 "commit"};

static qp_query_event make_event(int k, int i, int64_t base_s) {
  qp_query_event ev = {0};
  ev.backend = k % 2 ? QP_BACKEND_SQLITE : QP_BACKEND_POSTGRES;
  ev.database = k == 6 ? "other" : "main";
  ev.normalized = texts[k];
  ev.normalized_len = strlen(texts[k]);
  ev.fingerprint = 0xabc000 + (uint64_t)k;
  ev.duration_ns = 1000 + (uint64_t)(i % 977) * 31;
  ev.rows = 1;
  ev.error = i % 50 == 0 ? "40P01" : NULL;
  /* spread over a few buckets so that flushes see several */
  ev.end_wall_ns = (base_s + (i % 5) * 60) * 1000000000;
  return ev;
}

typedef struct ctx {
  qp_profile *p;
  int id;
  atomic_int *running;
} ctx;

static void *recorder(void *arg) {
  ctx *c = arg;
  for (int i = 0; i < PER_THREAD; i++) {
    int k = (i + c->id) % NFP;
    qp_query_event ev = make_event(k, i, 1763700000);
    assert_int_equal(qp_profile_record(c->p, &ev), QP_OK);
  }
  atomic_fetch_sub(c->running, 1);
  return NULL;
}

static uint64_t expected_total(int threads, int per) {
  uint64_t t = 0;
  for (int th = 0; th < threads; th++)
    for (int i = 0; i < per; i++) t += 1000 + (uint64_t)(i % 977) * 31;
  return t;
}

static void test_threads_record_while_flushing(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/mt.db", tmpdir());
  qp_profile *p;
  char err[512];
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  qp_store *s;
  assert_int_equal(qp_store_open(&s, path, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  atomic_int running = NTHREADS;
  pthread_t th[NTHREADS];
  ctx c[NTHREADS];
  for (int i = 0; i < NTHREADS; i++) {
    c[i] = (ctx){p, i, &running};
    assert_int_equal(pthread_create(&th[i], NULL, recorder, &c[i]), 0);
  }
  int flushes = 0;
  /* at least one flush, even when the recorders are done before the first
   * look (a loaded machine): the totals below must be exact either way */
  do {
    assert_int_equal(qp_profile_flush(p, s), QP_OK);
    flushes++;
    usleep(2000);
  } while (atomic_load(&running) > 0);
  for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
  assert_int_equal(qp_profile_flush(p, s), QP_OK);
  assert_true(flushes >= 1);
  assert_int_equal(qp_profile_recorded(p), NTHREADS * PER_THREAD);
  assert_int_equal(qp_profile_lost(p), 0);
  qpt_sum got = {0};
  assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, qpt_sum_add, &got), QP_OK);
  assert_int_equal(got.calls, NTHREADS * PER_THREAD);
  assert_int_equal(got.errors, NTHREADS * (PER_THREAD / 50));
  assert_int_equal(got.total, expected_total(NTHREADS, PER_THREAD));
  assert_int_equal(got.n, NFP);
  qp_store_close(s);
  qp_profile_free(p);
}

/* Several threads each with its own store handle flushing one profile is
 * not allowed (one flusher per store handle), but several flushers on one
 * profile with their own handles are: flushes serialize on the profile. */
typedef struct fctx {
  qp_profile *p;
  const char *path;
  atomic_int *running;
} fctx;

static void *flusher(void *arg) {
  fctx *f = arg;
  qp_store *s;
  char err[512];
  assert_int_equal(qp_store_open(&s, f->path, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  while (atomic_load(f->running) > 0) {
    assert_int_equal(qp_profile_flush(f->p, s), QP_OK);
    usleep(3000);
  }
  assert_int_equal(qp_profile_flush(f->p, s), QP_OK);
  qp_store_close(s);
  return NULL;
}

static void test_two_flushers(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/mt2.db", tmpdir());
  qp_profile *p;
  char err[512];
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  atomic_int running = 2;
  pthread_t th[4];
  ctx c[2];
  fctx f = {p, path, &running};
  /* create the store first so that both flushers open an existing file */
  qp_store *s;
  assert_int_equal(qp_store_open(&s, path, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  for (int i = 0; i < 2; i++) {
    c[i] = (ctx){p, i, &running};
    assert_int_equal(pthread_create(&th[i], NULL, recorder, &c[i]), 0);
  }
  assert_int_equal(pthread_create(&th[2], NULL, flusher, &f), 0);
  assert_int_equal(pthread_create(&th[3], NULL, flusher, &f), 0);
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  qpt_sum got = {0};
  assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, qpt_sum_add, &got), QP_OK);
  assert_int_equal(got.calls, 2 * PER_THREAD);
  assert_int_equal(got.total, expected_total(2, PER_THREAD));
  qp_store_close(s);
  qp_profile_free(p);
}

#define NPROC 8
#define PER_PROC 5000

/* Each child records PER_PROC events and flushes them in a few pieces into
 * the same file, which none of them has created yet: creation races too. */
static int child(const char *path, int id) {
  qp_profile *p;
  char err[512];
  if (qp_profile_new(&p, NULL, err, sizeof err) != QP_OK) return 10;
  qp_store *s;
  if (qp_store_open(&s, path, QP_STORE_WRITE, NULL, err, sizeof err) != QP_OK) {
    fprintf(stderr, "child %d: %s\n", id, err);
    return 11;
  }
  for (int i = 0; i < PER_PROC; i++) {
    qp_query_event ev = make_event((i + id) % NFP, i, 1763700000);
    if (qp_profile_record(p, &ev) != QP_OK) return 12;
    if (i % 1000 == 999 && qp_profile_flush(p, s) != QP_OK) {
      fprintf(stderr, "child %d: flush: %s\n", id, qp_store_errmsg(s));
      return 13;
    }
  }
  if (qp_profile_flush(p, s) != QP_OK) return 14;
  qp_store_close(s);
  qp_profile_free(p);
  return 0;
}

static void test_processes_flush_one_store(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/procs.db", tmpdir());
  pid_t pids[NPROC];
  for (int i = 0; i < NPROC; i++) {
    pids[i] = fork();
    assert_true(pids[i] >= 0);
    if (pids[i] == 0) _exit(child(path, i));
  }
  for (int i = 0; i < NPROC; i++) {
    int st;
    assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
  }
  qp_store *s;
  char err[512];
  assert_int_equal(qp_store_open(&s, path, QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  qpt_sum got = {0};
  assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, qpt_sum_add, &got), QP_OK);
  assert_int_equal(got.calls, NPROC * PER_PROC);
  assert_int_equal(got.errors, NPROC * (PER_PROC / 50));
  assert_int_equal(got.total, expected_total(NPROC, PER_PROC));
  assert_int_equal(got.n, NFP);
  /* A window over one bucket gives the exact share of it, from level 0. */
  qpt_sum one = {0};
  int64_t b = 1763700000 / 60 * 60 + 60;
  assert_int_equal(qp_store_summarize(s, b * 1000000000, (b + 60) * 1000000000, qpt_sum_add, &one),
                   QP_OK);
  assert_int_equal(one.calls, NPROC * PER_PROC / 5);
  qp_store_close(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_threads_record_while_flushing),
      cmocka_unit_test(test_two_flushers),
      cmocka_unit_test(test_processes_flush_one_store),
  };
  return cmocka_run_group_tests(tests, NULL, qpt_tempdirs_remove);
}
