/*
 * What the LD_PRELOAD shim adds to one SQLite statement.
 *
 * 1. A point-SELECT loop (bind, step to the row, step to DONE, reset) on a
 *    prepared statement over a 10,000-row table in memory, run in child
 *    processes alternately without and with libqprof_preload.so
 *    (interleaved, so that machine noise hits both alike). Prints the median
 *    ns per statement of each, and the difference: the shim's cost per
 *    statement.
 * 2. --distinct N statements that are all different (each its own
 *    fingerprint: prepare, step, finalize), the worst case for the shim's
 *    per-fingerprint state: the median time of the program without and with.
 *
 *   bench_shim_sqlite [--runs N] [--iterations N] [--distinct N] [--shim PATH]
 *
 * The shim records into segments in a temporary run directory (QPROF_RUN_DIR),
 * removed after each run: this measures the program, not the collector.
 */
#include <errno.h>
#include <getopt.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

#define ROWS 10000

static double clock_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}
static double now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
/* CPU time of the process, user + system (the kernel zeroing new pages of a
 * segment is system time of the program). */
static double cpu_ns(void) { return clock_ns(CLOCK_PROCESS_CPUTIME_ID); }

/* The measured loop; prints ns per statement on stdout. */
static int worker(long iterations) {
  sqlite3 *db;
  if (sqlite3_open(":memory:", &db) != SQLITE_OK) return 1;
  if (sqlite3_exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)", NULL, NULL, NULL) != 0)
    return 1;
  sqlite3_stmt *ins;
  sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
  sqlite3_prepare_v2(db, "INSERT INTO t(id, v) VALUES (?, ?)", -1, &ins, NULL);
  for (int i = 0; i < ROWS; i++) {
    sqlite3_bind_int(ins, 1, i);
    sqlite3_bind_text(ins, 2, "some value", -1, SQLITE_STATIC);
    sqlite3_step(ins);
    sqlite3_reset(ins);
  }
  sqlite3_finalize(ins);
  sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  sqlite3_stmt *sel;
  if (sqlite3_prepare_v2(db, "SELECT v FROM t WHERE id = ?", -1, &sel, NULL) != SQLITE_OK) return 1;
  unsigned seed = 12345;
  long found = 0;
  /* warm-up, then the timed loop */
  for (long pass = 0; pass < 2; pass++) {
    long n = pass == 0 ? iterations / 10 : iterations;
    double t0 = now_ns(), c0 = cpu_ns();
    for (long i = 0; i < n; i++) {
      seed = seed * 1103515245u + 12345u;
      sqlite3_bind_int(sel, 1, (int)((seed >> 8) % ROWS));
      while (sqlite3_step(sel) == SQLITE_ROW) found++;
      sqlite3_reset(sel);
    }
    double t1 = now_ns(), c1 = cpu_ns();
    if (pass == 1) printf("%.1f %.1f\n", (t1 - t0) / (double)n, (c1 - c0) / (double)n);
  }
  sqlite3_finalize(sel);
  sqlite3_close(db);
  return found > 0 ? 0 : 1;
}

/* N distinct statements; prints ns per statement. */
static int worker_distinct(long n) {
  sqlite3 *db;
  if (sqlite3_open(":memory:", &db) != SQLITE_OK) return 1;
  char sql[64];
  double t0 = now_ns(), c0 = cpu_ns();
  for (long i = 0; i < n; i++) {
    snprintf(sql, sizeof sql, "SELECT ? AS c%ld", i);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return 1;
    sqlite3_bind_int(st, 1, (int)i);
    while (sqlite3_step(st) == SQLITE_ROW) {
    }
    sqlite3_finalize(st);
  }
  double t1 = now_ns(), c1 = cpu_ns();
  printf("%.1f %.1f\n", (t1 - t0) / (double)n, (c1 - c0) / (double)n);
  sqlite3_close(db);
  return 0;
}

/* Removes the segments a run left in the run directory. */
static void clear_dir(const char *dir) {
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -f '%s'/*.qpseg '%s'/.*.qpseg.new", dir, dir);
  if (system(cmd) != 0) fprintf(stderr, "bench_shim_sqlite: could not clear %s\n", dir);
}

/* Runs this program as a worker, with or without the shim; returns wall ns/statement (and
 * the worker's CPU ns/statement in *cpu) or -1. */
static double run_child(const char *self, const char *shim, const char *run_dir, const char *mode,
                        long iterations, double *cpu) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    if (shim != NULL) {
      setenv("LD_PRELOAD", shim, 1);
      setenv("QPROF_RUN_DIR", run_dir, 1);
    } else {
      unsetenv("LD_PRELOAD");
    }
    char iters[32];
    snprintf(iters, sizeof iters, "%ld", iterations);
    execl(self, self, mode, iters, (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  char buf[64] = {0};
  ssize_t n = read(fds[0], buf, sizeof buf - 1);
  close(fds[0]);
  int status;
  waitpid(pid, &status, 0);
  clear_dir(run_dir);
  if (n <= 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
  char *end;
  double wall = strtod(buf, &end);
  *cpu = strtod(end, NULL);
  return wall;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--worker") == 0) return worker(atol(argv[2]));
  if (argc == 3 && strcmp(argv[1], "--worker-distinct") == 0) return worker_distinct(atol(argv[2]));
  static const struct option longopts[] = {{"runs", required_argument, NULL, 'r'},
                                           {"iterations", required_argument, NULL, 'i'},
                                           {"shim", required_argument, NULL, 's'},
                                           {"distinct", required_argument, NULL, 'd'},
                                           {"help", no_argument, NULL, 'h'},
                                           {NULL, 0, NULL, 0}};
  int runs = 7;
  long iterations = 1000000, distinct = 100000;
  const char *shim = QP_BUILD_DIR "/lib/shim/libqprof_preload.so";
  int c;
  while ((c = getopt_long(argc, argv, "r:i:s:h", longopts, NULL)) != -1) {
    switch (c) {
    case 'r': runs = atoi(optarg); break;
    case 'i': iterations = atol(optarg); break;
    case 's': shim = optarg; break;
    case 'd': distinct = atol(optarg); break;
    case 'h':
      printf("Usage: bench_shim_sqlite [--runs N] [--iterations N] [--distinct N] [--shim PATH]\n");
      return 0;
    default: return 2;
    }
  }
  if (runs < 1 || runs > 100 || iterations < 1000) {
    fprintf(stderr, "bench_shim_sqlite: --runs 1..100, --iterations >= 1000\n");
    return 2;
  }
  if (access(shim, R_OK) != 0) {
    fprintf(stderr, "bench_shim_sqlite: cannot read the shim %s: %s\n", shim, strerror(errno));
    return 1;
  }
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return 1;
  self[n] = '\0';
  char dir[] = "/tmp/qprof-bench-shim.XXXXXX";
  if (mkdtemp(dir) == NULL) return 1;

  double *off = calloc((size_t)runs, sizeof *off), *on = calloc((size_t)runs, sizeof *on);
  double *coff = calloc((size_t)runs, sizeof *coff), *con = calloc((size_t)runs, sizeof *con);
  if (off == NULL || on == NULL || coff == NULL || con == NULL) return 1;
  printf("SQLite point SELECT (prepared once; bind, step, step, reset), %ld statements per run\n",
         iterations);
  printf("%-4s %14s %14s %14s %14s\n", "run", "without ns/st", "with ns/st", "without cpu", "with cpu");
  for (int r = 0; r < runs; r++) {
    /* alternate which goes first, so neither always runs on a warmer machine */
    if (r % 2 == 0) {
      off[r] = run_child(self, NULL, dir, "--worker", iterations, &coff[r]);
      on[r] = run_child(self, shim, dir, "--worker", iterations, &con[r]);
    } else {
      on[r] = run_child(self, shim, dir, "--worker", iterations, &con[r]);
      off[r] = run_child(self, NULL, dir, "--worker", iterations, &coff[r]);
    }
    if (off[r] < 0 || on[r] < 0) {
      fprintf(stderr, "bench_shim_sqlite: a worker failed\n");
      return 1;
    }
    printf("%-4d %14.1f %14.1f %14.1f %14.1f\n", r + 1, off[r], on[r], coff[r], con[r]);
  }
  double moff = bench_median(off, runs), mon = bench_median(on, runs);
  printf("median: without %.1f ns, with %.1f ns: the shim adds %.1f ns per statement (%.2fx)\n",
         moff, mon, mon - moff, mon / moff);
  double mcoff = bench_median(coff, runs), mcon = bench_median(con, runs);
  printf("median CPU: without %.1f ns, with %.1f ns: the shim adds %.1f ns per statement (%.2fx)\n",
         mcoff, mcon, mcon - mcoff, mcon / mcoff);
  if (distinct > 0) {
    printf("\n%ld distinct statements (prepare, bind, step, finalize; each its own fingerprint)\n",
           distinct);
    printf("%-4s %14s %14s %14s %14s\n", "run", "without ns/st", "with ns/st", "without cpu", "with cpu");
    for (int r = 0; r < runs; r++) {
      if (r % 2 == 0) {
        off[r] = run_child(self, NULL, dir, "--worker-distinct", distinct, &coff[r]);
        on[r] = run_child(self, shim, dir, "--worker-distinct", distinct, &con[r]);
      } else {
        on[r] = run_child(self, shim, dir, "--worker-distinct", distinct, &con[r]);
        off[r] = run_child(self, NULL, dir, "--worker-distinct", distinct, &coff[r]);
      }
      if (off[r] < 0 || on[r] < 0) {
        fprintf(stderr, "bench_shim_sqlite: a worker failed\n");
        return 1;
      }
      printf("%-4d %14.1f %14.1f %14.1f %14.1f\n", r + 1, off[r], on[r], coff[r], con[r]);
    }
    moff = bench_median(off, runs);
    mon = bench_median(on, runs);
    printf("median: without %.1f ns, with %.1f ns per distinct statement: %.2fx\n", moff, mon,
           mon / moff);
    mcoff = bench_median(coff, runs);
    mcon = bench_median(con, runs);
    printf("median CPU: without %.1f ns, with %.1f ns per distinct statement: %.2fx\n", mcoff,
           mcon, mcon / mcoff);
  }
  rmdir(dir);
  free(off);
  free(on);
  free(coff);
  free(con);
  return 0;
}
