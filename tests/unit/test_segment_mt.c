/* The harvester reading segments while their writers are still filling them:
 * a segment a well-behaved writer is growing (new entries published, new
 * histogram chunks and error-code records allocated, all after the
 * harvester read the header) is never refused, and what the store ends up
 * with is exactly what was recorded (recorded + dropped = attempted).
 * Threads of one process recording the same statements into lanes of their
 * own (and two of them into the same lane) give entries the harvester
 * merges back into one query each, exactly. */
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

#define LANE_THREADS 5 /* lanes 0..3, and a fifth thread in lane 0 */
#define LANE_STMTS 40
#define LANE_REPEAT 2000

typedef struct lane_writer {
  qp_seg *seg;
  unsigned lane;
  atomic_int *harvests;
} lane_writer;

static void *lane_loop(void *arg) {
  lane_writer *w = arg;
  int64_t wall = (int64_t)1763700000 * 1000000000;
  for (int r = 0; r < LANE_REPEAT; r++) {
    if (r % 500 == 0) {
      int seen = atomic_load(w->harvests);
      while (atomic_load(w->harvests) == seen) sched_yield();
    }
    for (int i = 0; i < LANE_STMTS; i++) {
      char text[64];
      int n = snprintf(text, sizeof text, "select ? from lane_t%d", i);
      /* 1 us .. ~4 ms, and one 50 ms outlier per thread and statement */
      uint64_t d = r == 7 && w->lane == 1 ? 50000000u : 1000ull << ((r + i) % 12);
      assert_non_null(qp__seg_record_lane(w->seg, w->lane, QP_BACKEND_SQLITE, 0x1A00u + (unsigned)i,
                                          text, (size_t)n, "main\0\0t", 7, d, 1,
                                          r % 100 == 0 ? "SQLITE_BUSY" : NULL, wall + r));
    }
  }
  return NULL;
}

typedef struct lane_sum {
  uint64_t calls[LANE_STMTS], errors[LANE_STMTS], max[LANE_STMTS];
  int queries;
} lane_sum;

static int lane_add(const qp_query_summary *q, void *ud) {
  lane_sum *ls = ud;
  unsigned i = (unsigned)(q->fingerprint - 0x1A00u);
  assert_true(i < LANE_STMTS);
  ls->calls[i] += q->calls;
  ls->errors[i] += q->errors;
  if (q->max_ns > ls->max[i]) ls->max[i] = q->max_ns;
  ls->queries++;
  return 0;
}

static void test_lanes_merge(void **state) {
  (void)state;
  const char *dir = qpt_tempdir();
  assert_non_null(dir);
  char run[512], store[512], path[600];
  snprintf(run, sizeof run, "%s/run", dir);
  snprintf(store, sizeof store, "%s/s.db", dir);
  assert_int_equal(qpt_system("mkdir -m 0700 '%s'", run), 0);
  snprintf(path, sizeof path, "%s/%d-l.qpseg", run, (int)getpid());
  qp_seg seg;
  assert_true(qp__seg_create(&seg, path, 4u << 20, 60, "h-lanes"));
  qp_hooks hooks = {.log_fn = log_fn, .log_min_level = QP_LOG_WARN};
  qp_harvester *hv;
  char err[512];
  assert_int_equal(qp_harvester_new(&hv, run, NULL, &hooks, err, sizeof err), QP_OK);
  qp_store *s;
  assert_int_equal(qp_store_open(&s, store, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  atomic_int harvests = 0;
  pthread_t th[LANE_THREADS];
  lane_writer w[LANE_THREADS];
  for (int i = 0; i < LANE_THREADS; i++) {
    w[i] = (lane_writer){.seg = &seg, .lane = (unsigned)i % 4, .harvests = &harvests};
    assert_int_equal(pthread_create(&th[i], NULL, lane_loop, &w[i]), 0);
  }
  uint64_t dropped = 0;
  for (int i = 0; i < LANE_THREADS; i++) {
    while (pthread_tryjoin_np(th[i], NULL) != 0) {
      harvest(hv, s, &dropped);
      atomic_fetch_add(&harvests, 1);
    }
  }
  harvest(hv, s, &dropped);
  assert_int_equal(dropped, 0);
  assert_int_equal(atomic_load(&refused_msgs), 0);
  /* one entry per statement and lane, each on a cache line of its own */
  const qp_seg_header *h = seg.base;
  assert_int_equal(h->version, QP_SEG_VERSION);
  assert_int_equal(h->entries, LANE_STMTS * 4);
  const uint32_t *slots = (const uint32_t *)((const char *)seg.base + h->slots_off);
  unsigned per_lane[4] = {0};
  for (uint32_t i = 0; i < h->nslots; i++) {
    uint32_t off = qp__seg_slot_off(slots[i], h->version);
    if (off == 0) continue;
    assert_int_equal(off % QP_SEG_ALIGN, 0);
    const qp_seg_entry *e = (const qp_seg_entry *)((const char *)seg.base + off);
    assert_true(e->lane < 4);
    per_lane[e->lane]++;
    assert_int_equal(e->calls, (e->lane == 0 ? 2 : 1) * LANE_REPEAT);
  }
  for (unsigned l = 0; l < 4; l++) assert_int_equal(per_lane[l], LANE_STMTS);
  /* the store has one query per statement, with every thread's calls */
  lane_sum ls = {0};
  assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, lane_add, &ls), QP_OK);
  assert_int_equal(ls.queries, LANE_STMTS);
  for (int i = 0; i < LANE_STMTS; i++) {
    assert_int_equal(ls.calls[i], (uint64_t)LANE_THREADS * LANE_REPEAT);
    assert_int_equal(ls.errors[i], (uint64_t)LANE_THREADS * (LANE_REPEAT / 100));
    assert_int_equal(ls.max[i], 50000000u); /* lane 1's outlier */
  }
  qp_store_close(s);
  qp_harvester_free(hv);
  munmap(seg.base, seg.size);
  close(seg.fd);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_harvest_while_growing),
      cmocka_unit_test(test_lanes_merge),
  };
  return cmocka_run_group_tests(tests, NULL, qpt_tempdirs_remove);
}
