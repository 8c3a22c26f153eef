/*
 * `qprof report` on a big store: 10,000 fingerprints x 1,440 one-minute
 * buckets (one UTC day, 14.4M bucket rows, plus the hourly, daily and
 * all-time roll-ups a flush would have written), built with direct batched
 * inserts through the store code. Then times the report: the CLI (all time,
 * text and JSON) and qp_store_summarize for all time and for windows that
 * need hourly roll-ups plus edge buckets.
 *
 *   bench_report [STORE] [--rebuild]
 * The store (default /tmp/qprof-bench-report.db) is kept for reuse.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store_int.h"
#include "bench_util.h"

#define NFP 10000
#define NBUCKETS 1440
#define DAY0 1795132800LL /* 2026-11-20T00:00:00Z */

static void die(const char *what, qp_store *s) {
  fprintf(stderr, "bench_report: %s: %s\n", what, s ? qp_store_errmsg(s) : "");
  exit(1);
}

/* One minute of fingerprint k: a few calls around a per-query latency. */
static void minute_stats(int k, qp_stats *st) {
  qp__stats_init(st);
  uint64_t base = 50000 + (uint64_t)(k % 997) * 3000;
  int calls = 1 + k % 7;
  for (int i = 0; i < calls; i++)
    qp__stats_add(st, NULL, base + (uint64_t)i * base / 10, 1, k % 50 == 0 && i == 0 ? "57014" : NULL,
                  DAY0 * 1000000000LL + i);
}

static void build(const char *path) {
  unlink(path);
  qp_store *s;
  char err[512];
  if (qp_store_open(&s, path, QP_STORE_WRITE, NULL, err, sizeof err) != QP_OK) {
    fprintf(stderr, "%s\n", err);
    exit(1);
  }
  double t0 = bench_now_s();
  qp_entry *e = calloc(NFP, sizeof *e);
  char text[128];
  if (qp__sqlite_bulk_begin(s) != QP_OK) die("begin", s);
  for (int k = 0; k < NFP; k++) {
    e[k].fingerprint = 0x0100000000000000ull + (uint64_t)k * 0x9e3779b1ull;
    e[k].backend = QP_BACKEND_POSTGRES;
    e[k].database = "bench";
    minute_stats(k, &e[k].st);
    snprintf(text, sizeof text, "select * from table_%d where id = ? and kind = ?", k);
    if (qp__sqlite_bulk_query(s, e[k].fingerprint, QP_BACKEND_POSTGRES, text) != QP_OK)
      die("query", s);
  }
  long rows = 0;
  for (int b = 0; b < NBUCKETS; b++) {
    for (int k = 0; k < NFP; k++) {
      e[k].bucket = DAY0 + b * 60;
      if (qp__sqlite_bulk_row(s, QP_LEVEL_BUCKET, &e[k]) != QP_OK) die("row", s);
      rows++;
    }
    if (b % 20 == 19) {
      if (qp__sqlite_bulk_commit(s) != QP_OK || qp__sqlite_bulk_begin(s) != QP_OK) die("commit", s);
      fprintf(stderr, "\r%ld bucket rows, %.0f s", rows, bench_now_s() - t0);
    }
  }
  /* Roll-ups: an hour is 60 identical minutes, the day 24 hours. */
  for (int k = 0; k < NFP; k++) {
    qp_entry h = e[k], d = e[k];
    qp__stats_init(&h.st);
    qp__stats_init(&d.st);
    for (int i = 0; i < 60; i++) qp__stats_merge(&h.st, &e[k].st, NULL);
    for (int i = 0; i < 24; i++) qp__stats_merge(&d.st, &h.st, NULL);
    for (int hr = 0; hr < 24; hr++) {
      h.bucket = DAY0 + hr * 3600;
      if (qp__sqlite_bulk_row(s, QP_LEVEL_HOUR, &h) != QP_OK) die("hour", s);
    }
    d.bucket = DAY0;
    if (qp__sqlite_bulk_row(s, QP_LEVEL_DAY, &d) != QP_OK) die("day", s);
    if (qp__sqlite_bulk_row(s, QP_LEVEL_ALL, &d) != QP_OK) die("all", s);
    qp__stats_free(&h.st, NULL);
    qp__stats_free(&d.st, NULL);
  }
  if (qp__sqlite_bulk_commit(s) != QP_OK) die("commit", s);
  for (int k = 0; k < NFP; k++) qp__stats_free(&e[k].st, NULL);
  free(e);
  qp_store_close(s);
  struct stat stt;
  stat(path, &stt);
  fprintf(stderr, "\rbuilt %ld bucket rows + roll-ups in %.0f s, %.0f MB\n", rows, bench_now_s() - t0,
          (double)stt.st_size / 1e6);
}

static int count_cb(const qp_query_summary *q, void *ud) {
  (void)q;
  (*(long *)ud)++;
  return 0;
}

static double median3(double a, double b, double c) {
  if (a > b) { double t = a; a = b; b = t; }
  if (b > c) { double t = b; b = c; c = t; }
  if (a > b) { double t = a; a = b; b = t; }
  return b;
}

static void time_summarize(qp_store *s, const char *label, int64_t since_s, int64_t until_s) {
  double t[3];
  long n = 0;
  for (int r = 0; r < 3; r++) {
    n = 0;
    double t0 = bench_now_s();
    if (qp_store_summarize(s, since_s == 0 ? INT64_MIN : since_s * 1000000000LL,
                           until_s == 0 ? INT64_MAX : until_s * 1000000000LL, count_cb,
                           &n) != QP_OK)
      die("summarize", s);
    t[r] = bench_now_s() - t0;
  }
  printf("%-54s %6ld queries %8.3f s\n", label, n, median3(t[0], t[1], t[2]));
}

static void time_cli(const char *path, const char *label, const char *args) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "%s/tools/qprof report --store '%s' %s > /dev/null", QP_BUILD_DIR, path,
           args);
  double t[3];
  for (int r = 0; r < 3; r++) {
    double t0 = bench_now_s();
    if (system(cmd) != 0) {
      fprintf(stderr, "failed: %s\n", cmd);
      exit(1);
    }
    t[r] = bench_now_s() - t0;
  }
  printf("%-54s %23.3f s\n", label, median3(t[0], t[1], t[2]));
}

int main(int argc, char **argv) {
  const char *path = "/tmp/qprof-bench-report.db";
  bool rebuild = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--rebuild") == 0) rebuild = true;
    else path = argv[i];
  }
  qp_store *s;
  char err[512];
  if (rebuild || qp_store_open(&s, path, QP_STORE_READ, NULL, err, sizeof err) != QP_OK) {
    build(path);
    if (qp_store_open(&s, path, QP_STORE_READ, NULL, err, sizeof err) != QP_OK) {
      fprintf(stderr, "%s\n", err);
      return 1;
    }
  }
  printf("store: %s (%d fingerprints x %d one-minute buckets)\n\n", path, NFP, NBUCKETS);
  time_cli(path, "qprof report (all time, text, top 20)", "");
  time_cli(path, "qprof report --format json (all time, 10,000 queries)", "--format json");
  time_cli(path, "qprof report --since 06:00 --until 18:00 (12 hours)",
           "--since 2026-11-20T06:00Z --until 2026-11-20T18:00Z");
  time_cli(path, "qprof report --since 06:17 --until 18:43 (edges)",
           "--since 2026-11-20T06:17Z --until 2026-11-20T18:43Z");
  time_summarize(s, "qp_store_summarize, all time", 0, 0);
  time_summarize(s, "qp_store_summarize, 12 whole hours", DAY0 + 6 * 3600, DAY0 + 18 * 3600);
  time_summarize(s, "qp_store_summarize, 06:17..18:43 (11 h + 86 buckets)", DAY0 + 6 * 3600 + 17 * 60,
                 DAY0 + 18 * 3600 + 43 * 60);
  time_summarize(s, "qp_store_summarize, 10 minutes (10 buckets)", DAY0 + 7200, DAY0 + 7800);
  qp_store_close(s);
  return 0;
}
