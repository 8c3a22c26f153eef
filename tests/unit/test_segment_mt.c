/* The harvester reading segments while their writers are still filling them:
 * a segment a well-behaved writer is growing (new entries published, new
 * histogram chunks and error-code records allocated, all after the
 * harvester read the header) is never refused, and what the store ends up
 * with is exactly what was recorded (recorded + dropped = attempted). */
#include "testutil.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "qprof/segment.h"
#include "seg/seg_int.h"
#include "store/store_int.h"

#define NWRITERS 3
#define NSTMT 6000 /* distinct statements per writer */
#define REPEAT 3   /* executions of each, at different latencies */

typedef struct writer {
  qp_seg *seg;
  int id;
  uint64_t recorded, attempted, errors;
  atomic_int *running;
  atomic_int *harvests;
} writer;

static void *write_loop(void *arg) {
  writer *w = arg;
  char text[96];
  int64_t wall = (int64_t)1763700000 * 1000000000;
  for (int i = 0; i < NSTMT; i++) {
    /* every 250 statements, wait for the harvester to have gone round once
     * more: the writes spread over many harvests, whatever the scheduler */
    if (i % 250 == 0) {
      int seen = atomic_load(w->harvests);
      while (atomic_load(w->harvests) == seen) sched_yield();
    }
    int n = snprintf(text, sizeof text, "select ? from t_%d_%d", w->id, i);
    uint64_t fp = ((uint64_t)(w->id + 1) << 40) | (uint64_t)(i + 1);
    for (int r = 0; r < REPEAT; r++) {
      /* latencies from 100 ns to ~10 s: the inline histogram and chunks */
      uint64_t d = 100ull << ((i * 7 + r * 11) % 27);
      const char *err = (i + r) % 13 == 0 ? (r % 2 ? "SQLITE_BUSY" : "40P01") : NULL;
      w->attempted++;
      if (qp__seg_record(w->seg, QP_BACKEND_SQLITE, fp, text, (size_t)n, "main\0\0t", 7, d, 1, err,
                         wall + i) != NULL) {
        w->recorded++;
        if (err != NULL) w->errors++;
      }
    }
  }
  atomic_fetch_sub(w->running, 1);
  return NULL;
}

static atomic_int refused_msgs;
static void log_fn(qp_log_level level, const char *message, void *ud) {
  (void)level;
  (void)ud;
  if (strstr(message, "refused") != NULL) {
    fprintf(stderr, "harvester: %s\n", message);
    atomic_fetch_add(&refused_msgs, 1);
  }
}

static void harvest(qp_harvester *hv, qp_store *s, uint64_t *dropped) {
  qp_harvest_stats st;
  assert_int_equal(qp_harvester_collect(hv, &st), QP_OK);
  assert_int_equal(st.refused, 0);
  *dropped += st.dropped;
  assert_int_equal(qp_harvester_commit(hv, st.statements > 0 || st.dropped > 0 ? s : NULL), QP_OK);
}

/* Several segments (one per writer thread, as processes would have) grown
 * while a harvester collects and commits in a loop, with no pause. Each
 * segment is small enough to fill: the last statements are dropped. */
static void test_harvest_while_growing(void **state) {
  (void)state;
  const char *dir = qpt_tempdir();
  assert_non_null(dir);
  char run[512], store[512];
  snprintf(run, sizeof run, "%s/run", dir);
  snprintf(store, sizeof store, "%s/s.db", dir);
  assert_int_equal(qpt_system("mkdir -m 0700 '%s'", run), 0);
  qp_seg segs[NWRITERS];
  for (int i = 0; i < NWRITERS; i++) {
    char path[600];
    snprintf(path, sizeof path, "%s/%d-%d.qpseg", run, (int)getpid(), i);
    /* 2 MB: about 4,000 of the 6,000 statements fit */
    assert_true(qp__seg_create(&segs[i], path, 2u << 20, 60, "h-mt"));
  }
  qp_hooks hooks = {.log_fn = log_fn, .log_min_level = QP_LOG_WARN};
  qp_harvester *hv;
  char err[512];
  assert_int_equal(qp_harvester_new(&hv, run, NULL, &hooks, err, sizeof err), QP_OK);
  qp_store *s;
  assert_int_equal(qp_store_open(&s, store, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  atomic_int running = NWRITERS, harvests = 0;
  pthread_t th[NWRITERS];
  writer w[NWRITERS];
  for (int i = 0; i < NWRITERS; i++) {
    w[i] = (writer){.seg = &segs[i], .id = i, .running = &running, .harvests = &harvests};
    assert_int_equal(pthread_create(&th[i], NULL, write_loop, &w[i]), 0);
  }
  uint64_t dropped = 0;
  while (atomic_load(&running) > 0) {
    harvest(hv, s, &dropped);
    atomic_fetch_add(&harvests, 1);
  }
  for (int i = 0; i < NWRITERS; i++) pthread_join(th[i], NULL);
  harvest(hv, s, &dropped);
  assert_int_equal(atomic_load(&refused_msgs), 0);
  assert_true(atomic_load(&harvests) >= NSTMT / 250);
  uint64_t recorded = 0, attempted = 0, errors = 0;
  for (int i = 0; i < NWRITERS; i++) {
    recorded += w[i].recorded;
    attempted += w[i].attempted;
    errors += w[i].errors;
  }
  assert_true(recorded < attempted); /* the segments filled */
  assert_int_equal(recorded + dropped, attempted);
  qpt_sum got = {0};
  assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, qpt_sum_add, &got), QP_OK);
  assert_int_equal(got.calls, recorded);
  assert_int_equal(got.errors, errors);
  /* the dropped statements reached the store, exactly */
  uint64_t stored_dropped = 0;
  assert_int_equal(qp__store_dropped(s, INT64_MIN, INT64_MAX, &stored_dropped), QP_OK);
  assert_int_equal(stored_dropped, dropped);
  qp_store_close(s);
  qp_harvester_free(hv);
  for (int i = 0; i < NWRITERS; i++) {
    munmap(segs[i].base, segs[i].size);
    close(segs[i].fd);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_harvest_while_growing),
  };
  return cmocka_run_group_tests(tests, NULL, qpt_tempdirs_remove);
}
