/*
 * `qprof report` on a fleet's PostgreSQL store: 10,000 fingerprints x 1,440
 * one-minute buckets (one UTC day) x 10 hosts, 144M bucket rows plus the
 * 10-minute, hourly, 6-hour, daily and all-time roll-ups a flush would have
 * written (schema version 10), with the
 * statistics (histograms included) qprof itself computes for each level.
 * The rows are generated on the server (INSERT ... SELECT over
 * generate_series, the key added after the load) from per-fingerprint
 * templates built with the library's own statistics code.
 *
 * Then times the CLI against that store (median of 3 runs, wall and CPU of
 * the qprof process, its peak RSS): all time (text, JSON), a whole day, 12
 * whole hours, 12 hours with minute edges, and --by host when the build
 * has it.
 *
 *   bench_report_pg [--dsn DSN] [--fps N] [--buckets N] [--hosts N] [--keep]
 * Without --dsn a throwaway cluster is started (tests/support/pgcluster.sh)
 * and removed at the end; --keep reuses a store already built at DSN.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/store_int.h"
#include "bench_util.h"

#define DAY0 1795132800LL /* 2026-11-20T00:00:00Z */

static int nfp = 10000, nbuckets = 1440, nhosts = 10;
static char g_env[256], g_dir[256], g_dsn[1024];

static void die(const char *fmt, const char *detail) {
  fprintf(stderr, "bench_report_pg: %s: %s\n", fmt, detail ? detail : "");
  if (g_env[0]) bench_sh("sh '%s/tests/support/pgcluster.sh' stop '%s' >/dev/null", QP_SOURCE_DIR, g_env);
  exit(1);
}

static void exec_ok(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) die(sql, PQerrorMessage(c));
  PQclear(r);
}

/* One minute of fingerprint k: as bench_report's, a few calls around a
 * per-query latency. */
static void minute_stats(int k, qp_stats *st) {
  qp__stats_init(st);
  uint64_t base = 50000 + (uint64_t)(k % 997) * 3000;
  int calls = 1 + k % 7;
  for (int i = 0; i < calls; i++)
    qp__stats_add(st, NULL, base + (uint64_t)i * base / 10, 1, k % 50 == 0 && i == 0 ? "57014" : NULL,
                  DAY0 * 1000000000LL + i);
}

static void put_template(PGconn *c, int k, int level, const qp_stats *st) {
  qp_buf hist, codes;
  qp__buf_init(&hist, NULL);
  qp__buf_init(&codes, NULL);
  if (!qp__hist_encode(&st->hist, &hist) || !qp__codes_encode(&st->codes, &codes))
    die("encode", "out of memory");
  char v[10][32];
  snprintf(v[0], 32, "%d", k);
  snprintf(v[1], 32, "%d", level);
  snprintf(v[2], 32, "%llu", (unsigned long long)st->calls);
  snprintf(v[3], 32, "%llu", (unsigned long long)st->errors);
  snprintf(v[4], 32, "%lld", (long long)st->rows);
  snprintf(v[5], 32, "%llu", (unsigned long long)st->total_ns);
  snprintf(v[6], 32, "%llu", (unsigned long long)st->min_ns);
  snprintf(v[7], 32, "%llu", (unsigned long long)st->max_ns);
  snprintf(v[8], 32, "%.17g", st->m2);
  const char *vals[10] = {v[0], v[1], v[2], v[3], qp__buf_cstr(&codes), v[4], v[5], v[6], v[7], v[8]};
  const char *all[11];
  int lens[11] = {0}, fmts[11] = {0};
  for (int i = 0; i < 10; i++) all[i] = vals[i];
  all[10] = hist.data;
  lens[10] = (int)hist.len;
  fmts[10] = 1;
  PGresult *r = PQexecParams(c,
                             "INSERT INTO qp_bench_tpl VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
                             "$10, $11)",
                             11, NULL, all, lens, fmts, 0);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) die("template", PQerrorMessage(c));
  PQclear(r);
  qp__buf_free(&hist);
  qp__buf_free(&codes);
}

/* The columns of a generated row from template t at `level`, bucket
 * expression `bucket` and host number h; the template is the one stored as
 * level `tpl` (a level, or TPL_6H_PART). */
static void insert_tpl(PGconn *c, int level, int tpl, const char *bucket, const char *from) {
  char sql[2048];
  snprintf(sql, sizeof sql,
           "INSERT INTO qprof.qp_stats (level, bucket, fingerprint, backend, database, user_name, "
           "application, host, calls, errors, error_codes, rows, total_ns, min_ns, max_ns, m2, "
           "first_seen_ns, last_seen_ns, hist) "
           "SELECT %d, %s, 72057594037927936 + t.k::bigint * 2654435761, 'postgres', 'bench', "
           "'app_user', 'app-' || (h %% 3), 'host-' || h, t.calls, t.errors, t.error_codes, t.rows, "
           "t.total_ns, t.min_ns, t.max_ns, t.m2, %lld000000000, %lld000000000, t.hist "
           "FROM qp_bench_tpl t, %s WHERE t.level = %d",
           level, bucket, DAY0, DAY0 + 86399, from, tpl);
  exec_ok(c, sql);
}

static void insert_level(PGconn *c, int level, const char *bucket, const char *from) {
  insert_tpl(c, level, level, bucket, from);
}

/* The template of a last 6-hour row that holds fewer than 360 minutes
 * (--buckets not a multiple of 360). */
#define TPL_6H_PART 105

static void build(void) {
  double t0 = bench_now_s();
  qp_store *s;
  char err[1024];
  if (qp_store_open(&s, g_dsn, QP_STORE_WRITE, NULL, err, sizeof err) != QP_OK) die("open", err);
  qp_store_close(s);
  PGconn *c = PQconnectdb(g_dsn);
  if (PQstatus(c) != CONNECTION_OK) die("connect", PQerrorMessage(c));
  exec_ok(c, "SET maintenance_work_mem = '1GB'");
  exec_ok(c, "SET work_mem = '512MB'");
  exec_ok(c, "TRUNCATE qprof.qp_stats, qprof.qp_query");
  exec_ok(c, "DROP TABLE IF EXISTS qp_bench_tpl");
  exec_ok(c, "CREATE UNLOGGED TABLE qp_bench_tpl (k int, level int, calls bigint, errors bigint, "
             "error_codes text, rows bigint, total_ns bigint, min_ns bigint, max_ns bigint, "
             "m2 float8, hist bytea)");
  /* the store's trigger refuses bucket rows from writers that do not
   * write all six levels (sql/migrations_pg/010_levels.sql); this one does */
  exec_ok(c, "SET qprof.levels = '6'");
  exec_ok(c, "BEGIN");
  int part = nbuckets % 360 / 60; /* hours in a last, partial 6-hour row */
  for (int k = 0; k < nfp; k++) {
    qp_stats m, t, h, q, p, d;
    minute_stats(k, &m);
    qp__stats_init(&t);
    qp__stats_init(&h);
    qp__stats_init(&q);
    qp__stats_init(&p);
    qp__stats_init(&d);
    for (int i = 0; i < 10; i++) qp__stats_merge(&t, &m, NULL);
    for (int i = 0; i < 6; i++) qp__stats_merge(&h, &t, NULL);
    for (int i = 0; i < 6; i++) qp__stats_merge(&q, &h, NULL);
    for (int i = 0; i < part; i++) qp__stats_merge(&p, &h, NULL);
    for (int i = 0; i < nbuckets / 60; i++) qp__stats_merge(&d, &h, NULL);
    put_template(c, k, QP_LEVEL_BUCKET, &m);
    put_template(c, k, QP_LEVEL_10MIN, &t);
    put_template(c, k, QP_LEVEL_HOUR, &h);
    put_template(c, k, QP_LEVEL_6HOUR, &q);
    if (part > 0) put_template(c, k, TPL_6H_PART, &p);
    put_template(c, k, QP_LEVEL_DAY, &d);
    put_template(c, k, QP_LEVEL_ALL, &d);
    qp_stats *all[] = {&m, &t, &h, &q, &p, &d};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) qp__stats_free(all[i], NULL);
  }
  exec_ok(c, "COMMIT");
  char sql[1024];
  snprintf(sql, sizeof sql,
           "INSERT INTO qprof.qp_query (fingerprint, backend, query, first_seen_ns, last_seen_ns) "
           "SELECT 72057594037927936 + k::bigint * 2654435761, 'postgres', "
           "'select * from table_' || k || ' where id = ? and kind = ?', 0, 0 "
           "FROM generate_series(0, %d) k",
           nfp - 1);
  exec_ok(c, sql);
  exec_ok(c, "ALTER TABLE qprof.qp_stats SET UNLOGGED");
  exec_ok(c, "ALTER TABLE qprof.qp_stats DROP CONSTRAINT IF EXISTS qp_stats_pkey");
  /* a minute at a time, every host's rows of it together, in time order:
   * the heap as flushes over a day would have laid it out (a bucket's rows
   * on neighbouring pages), not key by key */
  for (int b = 0; b < nbuckets; b++) {
    char from[256], bucket[64];
    snprintf(from, sizeof from, "generate_series(0, %d) h", nhosts - 1);
    snprintf(bucket, sizeof bucket, "%lld", DAY0 + b * 60LL);
    insert_level(c, 0, bucket, from);
    if (b % 60 == 59)
      fprintf(stderr, "\rhour %d of %d: %lld bucket rows, %.0f s", (b + 1) / 60, nbuckets / 60,
              (long long)nfp * nhosts * (b + 1), bench_now_s() - t0);
  }
  char from[256];
  snprintf(from, sizeof from, "generate_series(0, %d) b, generate_series(0, %d) h",
           (nbuckets + 59) / 60 - 1, nhosts - 1);
  insert_level(c, QP_LEVEL_HOUR, "1795132800 + b * 3600", from);
  snprintf(from, sizeof from, "generate_series(0, %d) b, generate_series(0, %d) h",
           nbuckets / 10 - 1, nhosts - 1);
  insert_level(c, QP_LEVEL_10MIN, "1795132800 + b * 600", from);
  if (nbuckets >= 360) {
    snprintf(from, sizeof from, "generate_series(0, %d) b, generate_series(0, %d) h",
             nbuckets / 360 - 1, nhosts - 1);
    insert_level(c, QP_LEVEL_6HOUR, "1795132800 + b * 21600", from);
  }
  snprintf(from, sizeof from, "generate_series(0, %d) h", nhosts - 1);
  if (part > 0) {
    char bucket[64];
    snprintf(bucket, sizeof bucket, "%lld", DAY0 + nbuckets / 360 * 21600LL);
    insert_tpl(c, QP_LEVEL_6HOUR, TPL_6H_PART, bucket, from);
  }
  insert_level(c, 2, "1795132800", from);
  insert_level(c, 3, "0", from);
  fprintf(stderr, "\nadding the key...\n");
  exec_ok(c, "ALTER TABLE qprof.qp_stats ADD CONSTRAINT qp_stats_pkey PRIMARY KEY (level, bucket, "
             "fingerprint, backend, database, user_name, application, host)");
  exec_ok(c, "ANALYZE qprof.qp_stats");
  PGresult *r = PQexec(c, "SELECT pg_size_pretty(pg_total_relation_size('qprof.qp_stats')), "
                          "(SELECT count(*) FROM qprof.qp_stats WHERE level = 0)");
  if (PQresultStatus(r) == PGRES_TUPLES_OK)
    fprintf(stderr, "built %s bucket rows + roll-ups in %.0f s, %s\n", PQgetvalue(r, 0, 1),
            bench_now_s() - t0, PQgetvalue(r, 0, 0));
  PQclear(r);
  PQfinish(c);
}

static double median3(double a, double b, double c) {
  if (a > b) { double t = a; a = b; b = t; }
  if (b > c) { double t = b; b = c; c = t; }
  if (a > b) { double t = a; a = b; b = t; }
  return b;
}

/* Runs a command once: wall time, the process's CPU (user + system) and
 * peak RSS in MB. False when it failed. */
static bool run_once(const char *cmd, double *wall, double *rss_mb, double *cpu_s) {
  double t0 = bench_now_s();
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  int st;
  struct rusage ru;
  if (wait4(pid, &st, 0, &ru) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return false;
  *wall = bench_now_s() - t0;
  *rss_mb = (double)ru.ru_maxrss / 1024.0;
  *cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
  return true;
}

static void time_cli(const char *label, const char *args) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "exec '%s/tools/qprof' report --store '%s' %s > /dev/null 2>&1",
           QP_BUILD_DIR, g_dsn, args);
  double t[3], c[3], rss = 0;
  for (int r = 0; r < 3; r++) {
    double m;
    if (!run_once(cmd, &t[r], &m, &c[r])) {
      printf("%-52s failed (this build may not have it): %s\n", label, args);
      return;
    }
    if (m > rss) rss = m;
  }
  printf("%-52s %8.3f s %8.3f s %8.1f MB\n", label, median3(t[0], t[1], t[2]),
         median3(c[0], c[1], c[2]), rss);
  fflush(stdout);
}

/* The report's totals.calls for `args` must be what was generated over
 * `minutes` minutes: a fast wrong answer is not a result. */
static void check_calls(const char *args, long minutes) {
  long long want = 0;
  for (int k = 0; k < nfp; k++) want += (1 + k % 7) * (long long)minutes * nhosts;
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "'%s/tools/qprof' report --store '%s' --format json --limit 1 %s | "
           "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"totals\"][\"calls\"])'",
           QP_BUILD_DIR, g_dsn, args);
  FILE *f = popen(cmd, "r");
  long long got = -1;
  if (f == NULL || fscanf(f, "%lld", &got) != 1) got = -1;
  if (f) pclose(f);
  if (got != want) {
    char msg[256];
    snprintf(msg, sizeof msg, "totals.calls %lld, generated %lld (%s)", got, want, args);
    die("wrong report", msg);
  }
}

static bool read_env(void) {
  FILE *f = fopen(g_env, "r");
  if (!f) return false;
  char line[512];
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "QP_PG_DIR=", 10) == 0) sscanf(line + 10, "%255s", g_dir);
  fclose(f);
  return g_dir[0] != '\0';
}

int main(int argc, char **argv) {
  bool keep = false;
  const char *dsn = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--dsn") == 0 && i + 1 < argc) dsn = argv[++i];
    else if (strcmp(argv[i], "--fps") == 0 && i + 1 < argc) nfp = atoi(argv[++i]);
    else if (strcmp(argv[i], "--buckets") == 0 && i + 1 < argc) nbuckets = atoi(argv[++i]);
    else if (strcmp(argv[i], "--hosts") == 0 && i + 1 < argc) nhosts = atoi(argv[++i]);
    else if (strcmp(argv[i], "--keep") == 0) keep = true;
    else {
      fprintf(stderr, "usage: bench_report_pg [--dsn DSN] [--fps N] [--buckets N] [--hosts N] [--keep]\n");
      return 2;
    }
  }
  if (nfp < 1 || nbuckets < 60 || nbuckets > 1440 || nbuckets % 60 != 0 || nhosts < 1) {
    fprintf(stderr, "bench_report_pg: --buckets must be a multiple of 60 up to 1440\n");
    return 2;
  }
  if (dsn == NULL) {
    int port = 58000 + (int)(getpid() % 1000);
    snprintf(g_env, sizeof g_env, "/tmp/qprof-bench-report-pg-%d.env", (int)getpid());
    if (bench_sh("QP_PG_PORT=%d sh '%s/tests/support/pgcluster.sh' start '%s' >/dev/null", port,
                 QP_SOURCE_DIR, g_env) != 0 ||
        !read_env())
      die("cannot start a PostgreSQL cluster", NULL);
    snprintf(g_dsn, sizeof g_dsn, "postgresql:///postgres?host=%s&port=%d&user=postgres", g_dir, port);
  } else {
    snprintf(g_dsn, sizeof g_dsn, "%s", dsn);
  }
  if (!keep) build();
  check_calls("", nbuckets);
  check_calls("--since 2026-11-20T06:00Z --until 2026-11-20T18:00Z", nbuckets >= 1080 ? 720 : 0);
  check_calls("--since 2026-11-20T06:17Z --until 2026-11-20T18:43Z", nbuckets >= 1140 ? 746 : 0);
  check_calls("--since 2026-11-20T06:10Z --until 2026-11-20T18:50Z", nbuckets >= 1140 ? 760 : 0);
  check_calls("--since 2026-11-20T07:00Z --until 2026-11-20T19:00Z", nbuckets >= 1140 ? 720 : 0);
  printf("store: PostgreSQL, %d fingerprints x %d one-minute buckets x %d hosts\n", nfp, nbuckets,
         nhosts);
  fflush(stdout);
  bench_sh("date -u '+%%Y-%%m-%%d %%H:%%M:%%S UTC'; uptime"); /* the machine's state, said */
  printf("%-52s %10s %10s %11s\n", "", "wall", "cpu", "peak RSS");
  time_cli("qprof report (all time, text, top 20)", "");
  time_cli("qprof report --format json (all time, all rows)", "--format json --limit 0");
  time_cli("qprof report --by host (all time, text)", "--by host");
  time_cli("qprof report --since 00:00 --until 24:00 (the day)",
           "--since 2026-11-20T00:00Z --until 2026-11-21T00:00Z");
  time_cli("qprof report --since 06:00 --until 18:00 (12 hours)",
           "--since 2026-11-20T06:00Z --until 2026-11-20T18:00Z");
  time_cli("qprof report --since 06:17 --until 18:43 (edges)",
           "--since 2026-11-20T06:17Z --until 2026-11-20T18:43Z");
  time_cli("qprof report --since 06:10 --until 18:50 (10-minute edges)",
           "--since 2026-11-20T06:10Z --until 2026-11-20T18:50Z");
  time_cli("qprof report --since 07:00 --until 19:00 (hour edges)",
           "--since 2026-11-20T07:00Z --until 2026-11-20T19:00Z");
  fflush(stdout);
  bench_sh("date -u '+%%Y-%%m-%%d %%H:%%M:%%S UTC'; uptime");
  if (g_env[0]) bench_sh("sh '%s/tests/support/pgcluster.sh' stop '%s' >/dev/null", QP_SOURCE_DIR, g_env);
  return 0;
}
