/*
 * The clock behind every duration: qp__now_ns() must be monotonic (also
 * across threads and across its switch from CLOCK_MONOTONIC to the TSC) and
 * must agree with CLOCK_MONOTONIC on the length of an interval.
 */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "internal.h"
#include "testutil.h"

static uint64_t kernel_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* Runs first, while the clock has never been read: it reads it without a
 * pause for 300 ms, through the calibration, and every read must be at
 * least the one before. */
static void test_monotonic_through_calibration(void **state) {
  (void)state;
  uint64_t start = kernel_ns(), prev = qp__now_ns(), reads = 0;
  bool saw_calibrating = strcmp(qp__clock_source(), "calibrating") == 0;
  while (kernel_ns() - start < 300000000u) {
    uint64_t t = qp__now_ns();
    assert_true(t >= prev);
    prev = t;
    reads++;
  }
  assert_true(reads > 1000);
  const char *src = qp__clock_source();
  /* once past the calibration, the source is decided */
  assert_true(strcmp(src, "tsc") == 0 || strcmp(src, "monotonic") == 0);
  if (saw_calibrating) assert_string_equal(src, "tsc");
}

/* An interval measured on both clocks has the same length, to 0.1% plus
 * the few microseconds between the two reads. */
static void test_agrees_with_kernel_clock(void **state) {
  (void)state;
  for (int i = 0; i < 5; i++) {
    uint64_t k0 = kernel_ns(), q0 = qp__now_ns();
    sleep_ns(20000000u + (uint64_t)i * 10000000u);
    uint64_t q1 = qp__now_ns(), k1 = kernel_ns();
    uint64_t kd = k1 - k0, qd = q1 - q0;
    /* (the rate is good to a few parts per million, not exactly) */
    uint64_t off = qd > kd ? qd - kd : kd - qd;
    assert_true(off < kd / 1000 + 50000u);
  }
}

/* Each thread's reads never decrease, and every read a thread made is
 * earlier than a read made after joining it (a join is a full
 * synchronization, far longer than any reordering of RDTSC). Threads
 * outnumber the CPUs, so they move between CPUs as they run. */
static atomic_int g_bad;

static void *reader(void *arg) {
  uint64_t *last = arg, prev = qp__now_ns();
  for (int i = 0; i < 300000; i++) {
    uint64_t t = qp__now_ns();
    if (t < prev) atomic_fetch_add(&g_bad, 1);
    prev = t;
    if (i % 1000 == 0) sched_yield();
  }
  *last = prev;
  return NULL;
}

static void test_monotonic_across_threads(void **state) {
  (void)state;
  pthread_t th[6];
  uint64_t last[6];
  for (int i = 0; i < 6; i++) assert_int_equal(pthread_create(&th[i], NULL, reader, &last[i]), 0);
  for (int i = 0; i < 6; i++) pthread_join(th[i], NULL);
  uint64_t after = qp__now_ns();
  assert_int_equal(atomic_load(&g_bad), 0);
  for (int i = 0; i < 6; i++) assert_true(last[i] <= after);
  assert_int_equal(qp__ns_since(5, 7), 0);
  assert_int_equal(qp__ns_since(7, 5), 2);
}

/* QPROF_CLOCK=monotonic keeps the kernel's clock: checked in a fresh
 * process, since the choice is made once per process. */
static char *child_source(const char *env) {
  char exe[4096], cmd[4200];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  assert_true(n > 0);
  exe[n] = '\0';
  snprintf(cmd, sizeof cmd, "%s '%s' --source-after-calibration", env, exe);
  char *out = NULL;
  assert_int_equal(qpt_run_capture(qpt_tempdir(), cmd, &out, NULL), 0);
  return out;
}

static void test_env_forces_monotonic(void **state) {
  (void)state;
  char *out = child_source("QPROF_CLOCK=monotonic");
  assert_string_equal(out, "monotonic\n");
  free(out);
  /* without it, a fresh process decides as this one did */
  out = child_source("env -u QPROF_CLOCK");
  char want[32];
  snprintf(want, sizeof want, "%s\n", qp__clock_source());
  assert_string_equal(out, want);
  free(out);
}

static void test_timespec_after(void **state) {
  (void)state;
  struct timespec ts;
  uint64_t before = kernel_ns();
  qp__timespec_after(&ts, 5000000u);
  uint64_t at = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
  assert_true(at >= before + 5000000u);
  assert_true(at < kernel_ns() + 5000000u + 1000000u);
  assert_true(ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000);
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--source-after-calibration") == 0) {
    /* child mode: read through the calibration period, print the source */
    uint64_t start = kernel_ns();
    while (kernel_ns() - start < 150000000u) (void)qp__now_ns();
    return puts(qp__clock_source()) < 0;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_monotonic_through_calibration),
      cmocka_unit_test(test_agrees_with_kernel_clock),
      cmocka_unit_test(test_monotonic_across_threads),
      cmocka_unit_test(test_env_forces_monotonic),
      cmocka_unit_test(test_timespec_after),
  };
  return cmocka_run_group_tests(tests, NULL, qpt_tempdirs_remove);
}
