/*
 * bench_normalize: throughput and grouping quality of qprof's normalizer
 * against a memcpy of the corpus and libpg_query (pg_query_fingerprint,
 * pg_query_normalize) when built with it, on one generated corpus, in one run.
 *
 *   bench_normalize [-n STATEMENTS] [-r RUNS] [-s SEED] [--no-pg-query] [--no-scripts]
 *                   [--keep-script PATH]
 *
 * Throughput: each contender walks the whole in-memory corpus once per run;
 * the median of RUNS (default 3) is reported as queries/s and MB/s of SQL.
 * Quality: every statement carries the id of the shape it was generated from;
 * for each contender we count distinct fingerprints ("groups"), shapes split
 * over more than one group, and groups that merge more than one shape.
 *
 * Scripts: the same corpus as one script (statements joined with ";\n"),
 * normalized in memory with qp_normalize_next (split in the normalizer's
 * pass) and with qp_sql_split_next + qp_normalize (two passes), and as a file
 * by the whole `qprof normalize` process (started RUNS times, output to
 * /dev/null), against the in-memory qp_normalize loop of the same run.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
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

/* This thread's CPU time in seconds: on a shared machine, other jobs stretch
 * wall time but not the CPU time a loop or a process itself used. */
extern char **environ;

static double cpu_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs `qprof normalize PATH` as a whole process, its output to /dev/null:
 * false when it cannot be run or fails; else its wall time and CPU time
 * (user + system, from wait4) in seconds. */
static bool time_cli(const char *qprof, const char *path, double *wall, double *cpu) {
  /* posix_spawn (a vfork in glibc): no copy of this large process's page
   * tables is timed or counted */
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  char *const args[] = {(char *)qprof, (char *)"normalize", (char *)path, NULL};
  pid_t pid;
  double a = bench_now_s();
  int err = posix_spawn(&pid, qprof, &fa, NULL, args, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (err != 0) return false;
  int st;
  struct rusage ru;
  if (wait4(pid, &st, 0, &ru) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return false;
  *wall = bench_now_s() - a;
  *cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
  return true;
}

enum { P_LOOP, P_NEXT, P_TWO, P_CLI, P_COUNT };

/* The script rows: the corpus as one script (statements joined with ";\n"),
 * in memory and through the CLI, each against the in-memory qp_normalize
 * loop over the statements, timed again here in the same runs. The script
 * is written to `keep` (and kept) when it is not NULL. */
static void bench_scripts(const corpus *c, int runs, const char *keep) {
  size_t cap = c->sql_bytes + 2 * c->n + 1, len = 0;
  char *script = malloc(cap);
  char *out = malloc(QP_NORMALIZED_MAX);
  if (script == NULL || out == NULL) exit(1);
  for (size_t i = 0; i < c->n; i++) {
    memcpy(script + len, c->text + c->stmt[i].off, c->stmt[i].len);
    len += c->stmt[i].len;
    script[len++] = ';';
    script[len++] = '\n';
  }
  char tmp[] = "/tmp/bench_normalize_XXXXXX";
  const char *path = keep != NULL ? keep : tmp;
  int fd = keep != NULL ? open(keep, O_WRONLY | O_CREAT | O_TRUNC, 0600) : mkstemp(tmp);
  bool wrote = fd >= 0 && write(fd, script, len) == (ssize_t)len;
  if (fd >= 0) close(fd);
  const char *qprof = QP_QPROF_BIN;
  bool cli_ok = wrote && access(qprof, X_OK) == 0;

  qp_normalizer *nz;
  if (qp_normalizer_new(&nz, QP_DIALECT_POSTGRES, NULL, 0, NULL, NULL, 0) != QP_OK) exit(1);
  double wall[P_COUNT][16], cpu[P_COUNT][16];
  size_t n1 = 0, n2 = 0;
  uint64_t x1 = 0, x2 = 0;
  for (int k = 0; k < runs; k++) {
    /* the four paths one after the other in each run, so that a burst of
     * load on the machine hits all of them */
    double a = bench_now_s(), b = cpu_now_s();
    uint64_t fp;
    for (size_t i = 0; i < c->n; i++)
      qp_normalize(nz, c->text + c->stmt[i].off, c->stmt[i].len, out, QP_NORMALIZED_MAX, NULL, &fp);
    wall[P_LOOP][k] = bench_now_s() - a;
    cpu[P_LOOP][k] = cpu_now_s() - b;

    size_t pos = 0, olen;
    n1 = x1 = 0;
    a = bench_now_s(), b = cpu_now_s();
    while (qp_normalize_next(nz, script, len, &pos, NULL, NULL, out, QP_NORMALIZED_MAX, &olen, &fp)) {
      x1 += fp;
      n1++;
    }
    wall[P_NEXT][k] = bench_now_s() - a;
    cpu[P_NEXT][k] = cpu_now_s() - b;

    size_t start, slen;
    pos = 0;
    n2 = x2 = 0;
    a = bench_now_s(), b = cpu_now_s();
    while (qp_sql_split_next(QP_DIALECT_POSTGRES, script, len, &pos, &start, &slen)) {
      qp_normalize(nz, script + start, slen, out, QP_NORMALIZED_MAX, &olen, &fp);
      x2 += fp;
      n2++;
    }
    wall[P_TWO][k] = bench_now_s() - a;
    cpu[P_TWO][k] = cpu_now_s() - b;

    if (cli_ok) cli_ok = time_cli(qprof, path, &wall[P_CLI][k], &cpu[P_CLI][k]);
  }
  qp_normalizer_free(nz);
  if (fd >= 0 && keep == NULL) unlink(path);

  static const char *const names[P_COUNT] = {
      "in-memory qp_normalize loop (statements)", "qp_normalize_next over the script",
      "qp_sql_split_next + qp_normalize", "qprof normalize FILE (whole process)"};
  double lib = (double)c->sql_bytes / 1e6;
  double base_w = lib / bench_median(wall[P_LOOP], runs), base_c = lib / bench_median(cpu[P_LOOP], runs);
  printf("\nOne script of %.1f MB, %zu statements (%s), median of %d:\n", (double)len / 1e6, c->n,
         n1 == c->n && n2 == c->n && x1 == x2 ? "both ways: the same statements and fingerprints"
                                              : "THE TWO WAYS DIFFER",
         runs);
  printf("| %-44s | %9s | %9s | %9s | %9s |\n", "path", "MB/s wall", "vs loop", "MB/s CPU",
         "vs loop");
  printf("|%s|%s|%s|%s|%s|\n", "----------------------------------------------", "-----------",
         "-----------", "-----------", "-----------");
  for (int p = 0; p < P_COUNT; p++) {
    if (p == P_CLI && !cli_ok) {
      printf("(qprof normalize not run: %s)\n", wrote ? qprof : "cannot write the script file");
      continue;
    }
    /* MB of SQL: the script's separators are not counted */
    double w = lib / bench_median(wall[p], runs), u = lib / bench_median(cpu[p], runs);
    printf("| %-44s | %9.1f | %8.2fx | %9.1f | %8.2fx |\n", names[p], w, w / base_w, u, u / base_c);
  }
  free(script);
  free(out);
}

int main(int argc, char **argv) {
  size_t n = 200000;
  int runs = 3;
  uint64_t seed = 20261122;
  bool use_pg_query = true, scripts = true;
  const char *keep = NULL; /* --keep-script PATH: write the script file there and keep it */
  bool debug = getenv("QP_BENCH_DEBUG") != NULL;
  static const struct option opts[] = {{"statements", required_argument, NULL, 'n'},
                                       {"runs", required_argument, NULL, 'r'},
                                       {"seed", required_argument, NULL, 's'},
                                       {"no-pg-query", no_argument, NULL, 'P'},
                                       {"no-scripts", no_argument, NULL, 'S'},
                                       {"keep-script", required_argument, NULL, 'K'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "n:r:s:h", opts, NULL)) != -1) {
    switch (ch) {
    case 'n': n = strtoull(optarg, NULL, 10); break;
    case 'r': runs = atoi(optarg); break;
    case 's': seed = strtoull(optarg, NULL, 10); break;
    case 'P': use_pg_query = false; break;
    case 'S': scripts = false; break;
    case 'K': keep = optarg; break;
    case 'h':
      printf("Usage: bench_normalize [-n STATEMENTS] [-r RUNS] [-s SEED] [--no-pg-query] "
             "[--no-scripts] [--keep-script PATH]\n");
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
  if (scripts) bench_scripts(&c, runs, keep);

  free(pairs);
  free(out);
  free(copy);
  corpus_free(&c);
  return 0;
}
