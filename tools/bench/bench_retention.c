/*
 * What a day of history costs in an SQLite store, per fingerprint and
 * level, and what `qprof prune` gives back (docs/profiles.md, "Retention").
 *
 *   bench_retention STORE [FINGERPRINTS [CALLS_PER_MINUTE]]
 *
 * Records FINGERPRINTS queries (default 200), each called CALLS_PER_MINUTE
 * times (default 5) in every minute of the UTC day two days ago, with
 * log-normal latencies (median 1 ms, sigma 0.8), flushed once an hour as a
 * recorder would; then prunes minutes, hours and days in turn
 * (qp_store_prune with QP_PRUNE_VACUUM, as `qprof prune --vacuum` does) and
 * prints the file's size after each step: the difference is what that
 * level held. STORE must not exist (a PostgreSQL DSN: an empty database).
 * Also prints what the 24 flushes cost (wall time of qp_profile_flush), the
 * writers' price of the roll-up levels.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qprof/qprof.h"

static uint64_t seed = 0x9E3779B97F4A7C15ull;
static double uniform(void) {
  seed ^= seed << 13;
  seed ^= seed >> 7;
  seed ^= seed << 17;
  return ((double)(seed >> 11) + 0.5) / 9007199254740992.0;
}
static double lognormal(double median, double sigma) {
  double z = sqrt(-2 * log(uniform())) * cos(6.283185307179586 * uniform());
  return median * exp(sigma * z);
}

static void die(const char *what, const char *msg) {
  fprintf(stderr, "bench_retention: %s: %s\n", what, msg);
  exit(1);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_retention STORE [FINGERPRINTS [CALLS_PER_MINUTE]]\n");
    return 2;
  }
  const char *path = argv[1];
  int nfp = argc > 2 ? atoi(argv[2]) : 200, per_min = argc > 3 ? atoi(argv[3]) : 5;
  if (nfp <= 0 || per_min <= 0) die("arguments", "need positive numbers");
  if (!qp_store_is_dsn(path) && access(path, F_OK) == 0) die(path, "exists; give a new file");
  char err[1024];
  qp_store *s;
  if (qp_store_open(&s, path, QP_STORE_WRITE, NULL, err, sizeof err) != QP_OK) die(path, err);
  qp_profile *p;
  if (qp_profile_new(&p, NULL, err, sizeof err) != QP_OK) die("profile", err);
  int64_t day = (int64_t)time(NULL) / 86400 * 86400 - 2 * 86400;
  char (*texts)[64] = calloc((size_t)nfp, sizeof *texts);
  if (texts == NULL) die("memory", "out of memory");
  for (int k = 0; k < nfp; k++)
    snprintf(texts[k], sizeof texts[k], "select * from t%d where id = ?", k);
  double flush_ms = 0, first_ms = 0, each_ms[24];
  for (int m = 0; m < 1440; m++) {
    for (int k = 0; k < nfp; k++)
      for (int c = 0; c < per_min; c++) {
        qp_query_event e = {0};
        e.backend = QP_BACKEND_POSTGRES;
        e.database = "app";
        e.normalized = texts[k];
        e.normalized_len = strlen(texts[k]);
        e.fingerprint = 0x1000 + (uint64_t)k;
        e.duration_ns = (uint64_t)lognormal(1e6, 0.8);
        e.rows = 1;
        e.end_wall_ns = (day + m * 60 + c * 60 / per_min) * 1000000000LL;
        if (qp_profile_record(p, &e) != QP_OK) die("record", "failed");
      }
    if (m % 60 == 59) {
      struct timespec a, b;
      clock_gettime(CLOCK_MONOTONIC, &a);
      if (qp_profile_flush(p, s) != QP_OK) die("flush", qp_store_errmsg(s));
      clock_gettime(CLOCK_MONOTONIC, &b);
      double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
      flush_ms += ms;
      each_ms[m / 60] = ms;
      if (m == 59 || ms < first_ms) first_ms = ms; /* the fastest flush */
    }
  }
  printf("24 flushes of %d entries (60 buckets x %d queries): %.0f ms in all, %.1f ms per flush, "
         "fastest %.1f ms\n",
         60 * nfp, nfp, flush_ms, flush_ms / 24, first_ms);
  printf("each (ms):");
  for (int i = 0; i < 24; i++) printf(" %.0f", each_ms[i]);
  printf("\n");
  qp_profile_free(p);
  free(texts);
  static const char *const steps[] = {"minute", "hour", "day"};
  qp_prune_result r;
  /* A prune of nothing, with VACUUM: the size of the whole day, compacted. */
  if (qp_store_prune(s, 0, QP_PRUNE_MINUTE, QP_PRUNE_VACUUM, &r) != QP_OK)
    die("prune", qp_store_errmsg(s));
  int64_t size = r.size_bytes;
  printf("%d fingerprints x %d calls/minute, one day: %lld bytes (%.0f per fingerprint)\n", nfp,
         per_min, (long long)size, (double)size / nfp);
  int64_t now = (int64_t)time(NULL) * 1000000000LL;
  for (int level = 0; level < 3; level++) {
    if (qp_store_prune(s, now, (qp_prune_level)level, QP_PRUNE_VACUUM, &r) != QP_OK)
      die("prune", qp_store_errmsg(s));
    printf("%-6s level: %8llu rows, %10lld bytes = %8.0f bytes per fingerprint per day "
           "(%.1f per row)\n",
           steps[level], (unsigned long long)r.rows[level], (long long)(size - r.size_bytes),
           (double)(size - r.size_bytes) / nfp,
           r.rows[level] ? (double)(size - r.size_bytes) / (double)r.rows[level] : 0);
    size = r.size_bytes;
  }
  printf("left (all-time rows, texts, schema): %lld bytes (%.0f per fingerprint)\n",
         (long long)size, (double)size / nfp);
  qp_store_close(s);
  return 0;
}
