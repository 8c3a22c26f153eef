/*
 * Cost of qp_profile_record per event on a hot fingerprint, with 1 and 2
 * threads: pre-normalized (the pool's and the shim's path for prepared
 * statements), with the wall clock read by the profile, and including the
 * normalization of a typical statement.
 *
 *   bench_record [events per thread, default 5000000]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "qprof/qprof.h"
#include "bench_util.h"

static const char *raw_sql =
    "SELECT id, name, email FROM users WHERE id = 42 AND status = 'active' ORDER BY name LIMIT 10";

typedef struct job {
  qp_profile *p;
  long n;
  int mode; /* 0 pre-normalized, fixed time; 1 pre-normalized, clock; 2 raw SQL */
  const char *norm;
  size_t nlen;
  uint64_t fp;
  pthread_barrier_t *start;
  double ns, cpu_ns;
} job;

static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *worker(void *arg) {
  job *j = arg;
  qp_query_event ev = {0};
  ev.backend = QP_BACKEND_POSTGRES;
  ev.database = "bench";
  ev.rows = 1;
  if (j->mode == 2) {
    ev.sql = raw_sql;
    ev.sql_len = strlen(raw_sql);
  } else {
    ev.normalized = j->norm;
    ev.normalized_len = j->nlen;
    ev.fingerprint = j->fp;
  }
  int64_t wall = qp__wall_ns();
  pthread_barrier_wait(j->start);
  double t0 = bench_now_s(), c0 = cpu_s();
  for (long i = 0; i < j->n; i++) {
    ev.duration_ns = 100000 + (uint64_t)(i & 1023) * 97;
    ev.end_wall_ns = j->mode == 0 ? wall : 0;
    if (qp_profile_record(j->p, &ev) != QP_OK) {
      fprintf(stderr, "record failed\n");
      exit(1);
    }
  }
  j->ns = (bench_now_s() - t0) * 1e9 / (double)j->n;
  j->cpu_ns = (cpu_s() - c0) * 1e9 / (double)j->n;
  return NULL;
}

static double run(int threads, int mode, long n, double *cpu) {
  qp_profile *p;
  char err[256];
  if (qp_profile_new(&p, NULL, err, sizeof err) != QP_OK) {
    fprintf(stderr, "%s\n", err);
    exit(1);
  }
  qp_normalizer *nz;
  if (qp_normalizer_new(&nz, QP_DIALECT_POSTGRES, NULL, 0, NULL, err, sizeof err) != QP_OK) {
    fprintf(stderr, "%s\n", err);
    exit(1);
  }
  char norm[QP_NORMALIZED_MAX];
  size_t nlen;
  uint64_t fp;
  qp_normalize(nz, raw_sql, strlen(raw_sql), norm, sizeof norm, &nlen, &fp);
  qp_normalizer_free(nz);
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, (unsigned)threads);
  pthread_t th[8];
  job jobs[8];
  for (int i = 0; i < threads; i++) {
    jobs[i] = (job){.p = p, .n = n, .mode = mode, .norm = norm, .nlen = nlen, .fp = fp,
                    .start = &start};
    pthread_create(&th[i], NULL, worker, &jobs[i]);
  }
  double worst = 0;
  *cpu = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(th[i], NULL);
    if (jobs[i].ns > worst) worst = jobs[i].ns;
    if (jobs[i].cpu_ns > *cpu) *cpu = jobs[i].cpu_ns;
  }
  if (qp_profile_recorded(p) != (uint64_t)(n * threads)) {
    fprintf(stderr, "lost events\n");
    exit(1);
  }
  pthread_barrier_destroy(&start);
  qp_profile_free(p);
  return worst;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 5000000;
  if (n <= 0) n = 5000000;
  static const char *const modes[] = {"pre-normalized, end time given",
                                      "pre-normalized, profile reads the clock",
                                      "raw SQL (normalized per event)"};
  printf("qp_profile_record on one hot fingerprint, %ld events per thread\n", n);
  printf("statement: %s\n\n", raw_sql);
  printf("%-42s %21s %21s\n", "", "1 thread", "2 threads");
  printf("%-42s %10s %10s %10s %10s\n", "path", "wall ns", "cpu ns", "wall ns", "cpu ns");
  for (int m = 0; m < 3; m++) {
    long nn = m == 2 ? n / 5 : n;
    double c1, c2;
    double one = run(1, m, nn, &c1), two = run(2, m, nn, &c2);
    printf("%-42s %10.1f %10.1f %10.1f %10.1f\n", modes[m], one, c1, two, c2);
  }
  printf("\n(per event per thread: wall clock and the thread's CPU time, the slower thread;\n"
         " 2 threads record concurrently into one profile. On a loaded machine wall > cpu.)\n");

  /* What a flush costs: 10,000 fingerprints (one bucket each) into a new
   * store, then again into the same rows (the ON CONFLICT merge path).
   * QPROF_BENCH_PG_DSN=... measures a PostgreSQL store the same way (in a
   * database that has no qprof schema yet). */
  char path[] = "/tmp/qprof-bench-record-XXXXXX";
  int fd = mkstemp(path);
  const char *pg = getenv("QPROF_BENCH_PG_DSN");
  for (int kind = 0; kind < (pg != NULL ? 2 : 1); kind++) {
    const char *where = kind == 0 ? path : pg;
    if (kind == 0 && fd < 0) continue;
    if (kind == 0) {
      close(fd);
      unlink(path);
    }
    printf("%s store:\n", kind == 0 ? "SQLite" : "PostgreSQL");
    qp_store *s;
    char err[256];
    qp_profile *p;
    if (qp_store_open(&s, where, QP_STORE_WRITE, NULL, err, sizeof err) != QP_OK ||
        qp_profile_new(&p, NULL, err, sizeof err) != QP_OK) {
      fprintf(stderr, "%s\n", err);
      return 1;
    }
    int64_t wall = qp__wall_ns();
    for (int round = 0; round < 2; round++) {
      for (int k = 0; k < 10000; k++) {
        char text[64];
        int len = snprintf(text, sizeof text, "select * from t%d where id = ?", k);
        qp_query_event ev = {.backend = QP_BACKEND_POSTGRES, .database = "bench",
                             .normalized = text, .normalized_len = (size_t)len,
                             .fingerprint = 0x5000000000000000ull + (uint64_t)k,
                             .duration_ns = 100000 + (uint64_t)k, .rows = 1, .end_wall_ns = wall};
        for (int i = 0; i < 10; i++) qp_profile_record(p, &ev);
      }
      double t0 = bench_now_s();
      if (qp_profile_flush(p, s) != QP_OK) {
        fprintf(stderr, "flush: %s\n", qp_store_errmsg(s));
        return 1;
      }
      printf("  flush of 10,000 fingerprints (%s): %.3f s (%.1f us per fingerprint)\n",
             round == 0 ? "new rows" : "merged into existing rows", bench_now_s() - t0,
             (bench_now_s() - t0) * 1e6 / 10000);
    }
    qp_profile_free(p);
    qp_store_close(s);
    if (kind == 0) unlink(path);
  }
  return 0;
}
