/*
 * bench_normalize: throughput and grouping quality of qprof's normalizer
 * against a memcpy of the corpus and libpg_query (pg_query_fingerprint,
 * pg_query_normalize) when built with it, on one generated corpus, in one run.
 *
 *   bench_normalize [-n STATEMENTS] [-r RUNS] [-s SEED] [--no-pg-query]
 *
 * Throughput: each contender walks the whole in-memory corpus once per run;
 * the median of RUNS (default 3) is reported as queries/s and MB/s of SQL.
 * Quality: every statement carries the id of the shape it was generated from;
 * for each contender we count distinct fingerprints ("groups"), shapes split
 * over more than one group, and groups that merge more than one shape.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#ifdef __linux__
#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#endif

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "qprof/qprof.h"
#include "bench_util.h"
#include "sql_corpus.h"

#ifdef QP_HAVE_PG_QUERY
#include <pg_query.h>
#endif

typedef struct pair {
  uint64_t fp;
  uint32_t shape;
} pair;

typedef struct result {
  const char *name;
  double secs[16];
  int runs;
  bool quality;
  size_t groups, split, merged, errors;
} result;

/* A user-space hardware counter of this thread (instructions, cycles, branch
 * misses): unlike time, instruction counts do not move with the other jobs on
 * a shared machine. -1 when not available (no perf_event access). */
static int insn_open(unsigned long long config) {
#ifdef __linux__
  struct perf_event_attr pa;
  memset(&pa, 0, sizeof pa);
  pa.type = PERF_TYPE_HARDWARE;
  pa.size = sizeof pa;
  pa.config = config;
  pa.disabled = 1;
  pa.exclude_kernel = 1;
  pa.exclude_hv = 1;
  return (int)syscall(SYS_perf_event_open, &pa, 0, -1, -1, 0);
#else
  (void)config;
  return -1;
#endif
}

static void insn_start(int fd) {
#ifdef __linux__
  if (fd < 0) return;
  ioctl(fd, PERF_EVENT_IOC_RESET, 0);
  ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
#else
  (void)fd;
#endif
}

static long long insn_stop(int fd) {
#ifdef __linux__
  long long v = -1;
  if (fd < 0) return -1;
  ioctl(fd, PERF_EVENT_IOC_DISABLE, 0);
  if (read(fd, &v, sizeof v) != (ssize_t)sizeof v) return -1;
  return v;
#else
  (void)fd;
  return -1;
#endif
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(result *r) {
  double t[16];
  memcpy(t, r->secs, sizeof(double) * (size_t)r->runs);
  qsort(t, (size_t)r->runs, sizeof t[0], cmp_double);
  return t[r->runs / 2];
}

static int cmp_fp(const void *a, const void *b) {
  const pair *x = a, *y = b;
  if (x->fp != y->fp) return x->fp < y->fp ? -1 : 1;
  return (x->shape > y->shape) - (x->shape < y->shape);
}
static int cmp_shape(const void *a, const void *b) {
  const pair *x = a, *y = b;
  if (x->shape != y->shape) return x->shape < y->shape ? -1 : 1;
  return (x->fp > y->fp) - (x->fp < y->fp);
}

static void score(result *r, pair *p, size_t n) {
  qsort(p, n, sizeof *p, cmp_fp);
  r->groups = r->merged = r->split = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    bool multi = false;
    while (j < n && p[j].fp == p[i].fp) {
      if (p[j].shape != p[i].shape) multi = true;
      j++;
    }
    r->groups++;
    if (multi) r->merged++;
    i = j;
  }
  qsort(p, n, sizeof *p, cmp_shape);
  for (size_t i = 0; i < n;) {
    size_t j = i;
    bool multi = false;
    while (j < n && p[j].shape == p[i].shape) {
      if (p[j].fp != p[i].fp) multi = true;
      j++;
    }
    if (multi) r->split++;
    i = j;
  }
  r->quality = true;
}

static void print_row(const result *r, const corpus *c, double base_qps) {
  double m = median((result *)r);
  double qps = (double)c->n / m, mbs = (double)c->sql_bytes / m / 1e6;
  printf("| %-32s | %12.0f | %9.1f | %8.2fx |", r->name, qps, mbs, base_qps > 0 ? qps / base_qps : 0);
  if (r->quality)
    printf(" %7zu | %6zu | %6zu |", r->groups, r->split, r->merged);
  else
    printf("         |        |        |");
  if (r->errors) printf(" %zu parse errors", r->errors);
  printf("\n");
}

int main(int argc, char **argv) {
  size_t n = 200000;
  int runs = 3;
  uint64_t seed = 20261122;
  bool use_pg_query = true;
  bool debug = getenv("QP_BENCH_DEBUG") != NULL;
  static const struct option opts[] = {{"statements", required_argument, NULL, 'n'},
                                       {"runs", required_argument, NULL, 'r'},
                                       {"seed", required_argument, NULL, 's'},
                                       {"no-pg-query", no_argument, NULL, 'P'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "n:r:s:h", opts, NULL)) != -1) {
    switch (ch) {
    case 'n': n = strtoull(optarg, NULL, 10); break;
    case 'r': runs = atoi(optarg); break;
    case 's': seed = strtoull(optarg, NULL, 10); break;
    case 'P': use_pg_query = false; break;
    case 'h':
      printf("Usage: bench_normalize [-n STATEMENTS] [-r RUNS] [-s SEED] [--no-pg-query]\n");
      return 0;
    default:
      return 2;
    }
  }
  if (runs < 1 || runs > 15 || n == 0) {
    fprintf(stderr, "bench_normalize: bad -n or -r\n");
    return 2;
  }

  struct utsname u;
  uname(&u);
  printf("bench_normalize: %zu statements, %d runs (median), seed %llu, %s %s %s\n", n, runs,
         (unsigned long long)seed, u.sysname, u.release, u.machine);
  double t0 = bench_now_s();
  corpus c;
  corpus_build(&c, n, seed);
  printf("corpus: %.1f MB of SQL, %d shapes, built in %.2f s\n\n", (double)c.sql_bytes / 1e6,
         CORPUS_SHAPES, bench_now_s() - t0);

  pair *pairs = calloc(n, sizeof *pairs);
  char *out = malloc(QP_NORMALIZED_MAX);
  char *copy = malloc(c.text_len);
  if (pairs == NULL || out == NULL || copy == NULL) return 1;
  result res[4];
  memset(res, 0, sizeof res);
  int nres = 0;

  /* memcpy of the corpus, one statement at a time */
  result *r = &res[nres++];
  r->name = "memcpy of the corpus (bound)";
  for (int k = 0; k < runs; k++) {
    double a = bench_now_s();
    for (size_t i = 0; i < n; i++) memcpy(copy + c.stmt[i].off, c.text + c.stmt[i].off, c.stmt[i].len);
    r->secs[r->runs++] = bench_now_s() - a;
  }

  /* qprof */
  qp_normalizer *nz;
  char err[256];
  if (qp_normalizer_new(&nz, QP_DIALECT_POSTGRES, NULL, 0, NULL, err, sizeof err) != QP_OK) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  r = &res[nres++];
  r->name = "qprof qp_normalize";
#ifdef __linux__
  static const unsigned long long counters[3] = {PERF_COUNT_HW_INSTRUCTIONS, PERF_COUNT_HW_CPU_CYCLES,
                                                 PERF_COUNT_HW_BRANCH_MISSES};
#else
  static const unsigned long long counters[3] = {0, 0, 0};
#endif
  int cfd[3];
  long long cval[3] = {-1, -1, -1};
  for (int j = 0; j < 3; j++) cfd[j] = insn_open(counters[j]);
  for (int k = 0; k < runs; k++) {
    for (int j = 0; j < 3; j++) insn_start(cfd[j]);
    double a = bench_now_s();
    for (size_t i = 0; i < n; i++) {
      uint64_t fp;
      qp_normalize(nz, c.text + c.stmt[i].off, c.stmt[i].len, out, QP_NORMALIZED_MAX, NULL, &fp);
      pairs[i].fp = fp;
    }
    r->secs[r->runs++] = bench_now_s() - a;
    for (int j = 0; j < 3; j++) cval[j] = insn_stop(cfd[j]);
  }
  for (int j = 0; j < 3; j++)
    if (cfd[j] >= 0) close(cfd[j]);
  for (size_t i = 0; i < n; i++) pairs[i].shape = c.stmt[i].shape;
  if (debug) {
    /* print the distinct normalized texts of the first shapes that split */
    int shown = 0;
    for (uint32_t sh = 0; sh < CORPUS_SHAPES && shown < 3; sh++) {
      uint64_t first = 0;
      bool have = false;
      for (size_t i = 0; i < n; i++) {
        if (c.stmt[i].shape != sh) continue;
        uint64_t fp;
        qp_normalize(nz, c.text + c.stmt[i].off, c.stmt[i].len, out, QP_NORMALIZED_MAX, NULL, &fp);
        if (!have) {
          first = fp;
          have = true;
          fprintf(stderr, "shape %u: %s\n", sh, out);
        } else if (fp != first) {
          fprintf(stderr, "   split: %s\n   from:  %s\n", out, c.text + c.stmt[i].off);
          shown++;
          break;
        }
      }
    }
  }
  score(r, pairs, n);
  qp_normalizer_free(nz);

#ifdef QP_HAVE_PG_QUERY
  if (use_pg_query) {
    r = &res[nres++];
    r->name = "libpg_query pg_query_fingerprint";
    for (int k = 0; k < runs; k++) {
      size_t errors = 0;
      double a = bench_now_s();
      for (size_t i = 0; i < n; i++) {
        PgQueryFingerprintResult fr = pg_query_fingerprint(c.text + c.stmt[i].off);
        if (fr.error && debug && errors < 5)
          fprintf(stderr, "pg_query error: %s\n  in: %s\n", fr.error->message, c.text + c.stmt[i].off);
        if (fr.error) errors++;
        pairs[i].fp = fr.error ? 0 : fr.fingerprint;
        pg_query_free_fingerprint_result(fr);
      }
      r->secs[r->runs++] = bench_now_s() - a;
      r->errors = errors;
    }
    for (size_t i = 0; i < n; i++) pairs[i].shape = c.stmt[i].shape;
    score(r, pairs, n);

    r = &res[nres++];
    r->name = "libpg_query pg_query_normalize";
    for (int k = 0; k < runs; k++) {
      size_t errors = 0;
      double a = bench_now_s();
      for (size_t i = 0; i < n; i++) {
        PgQueryNormalizeResult nr = pg_query_normalize(c.text + c.stmt[i].off);
        if (nr.error) errors++;
        /* its text is the grouping key: hash it (cost included) */
        pairs[i].fp = nr.error ? 0 : XXH3_64bits(nr.normalized_query, strlen(nr.normalized_query));
        pg_query_free_normalize_result(nr);
      }
      r->secs[r->runs++] = bench_now_s() - a;
      r->errors = errors;
    }
    for (size_t i = 0; i < n; i++) pairs[i].shape = c.stmt[i].shape;
    score(r, pairs, n);
  }
#else
  (void)use_pg_query;
  printf("(built without libpg_query: install libpg-query-dev for the comparison)\n");
#endif

  printf("| %-32s | %12s | %9s | %9s | %7s | %6s | %6s |\n", "normalizer", "queries/s", "MB/s",
         "vs qprof", "groups", "split", "merged");
  printf("|%s|%s|%s|%s|%s|%s|%s|\n", "----------------------------------", "--------------",
         "-----------", "-----------", "---------", "--------", "--------");
  double qprof_qps = (double)n / median(&res[1]);
  for (int i = 0; i < nres; i++) print_row(&res[i], &c, qprof_qps);
  printf("\n%d shapes; 'split': shapes spread over more than one group; 'merged': groups holding "
         "more than one shape.\n",
         CORPUS_SHAPES);
  if (cval[0] > 0)
    printf("qprof per byte of SQL (user space, last run): %.2f instructions",
           (double)cval[0] / (double)c.sql_bytes);
  if (cval[0] > 0 && cval[1] > 0) printf(", %.2f cycles", (double)cval[1] / (double)c.sql_bytes);
  if (cval[0] > 0 && cval[2] >= 0)
    printf(", %.3f branch misses", (double)cval[2] / (double)c.sql_bytes);
  if (cval[0] > 0) printf("\n");
  for (int i = 2; i < nres; i++)
    printf("qprof is %.1fx faster than %s\n", median(&res[i]) / median(&res[1]), res[i].name);

  free(pairs);
  free(out);
  free(copy);
  corpus_free(&c);
  return 0;
}
