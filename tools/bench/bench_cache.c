/*
 * bench_cache: the SELECT result cache (include/qprof/cache.h) against its
 * targets and anchors, in one run.
 *
 *   hit          a cached 10-row result (SQLite file and PostgreSQL), one
 *                lease held, each qp_conn_exec timed alone: p50 / p99
 *   miss         SQLite primary-key SELECTs on 100,000 distinct keys, every one
 *                a miss and a fill, against the same statements through a pool
 *                without a cache (rounds interleaved; per-query medians): the
 *                miss overhead
 *   hot          hits per second on a hot set of 100 keys, 1 and 2 threads
 *   zipf         a Zipf(0.99) trace over 32 tables x 1,000 keys, 5% writes (an
 *                UPDATE of the key's row: it invalidates the table's entries),
 *                one thread on SQLite, budgets of 64 KB and 640 KB: throughput,
 *                hit ratio and evictions with SIEVE and with plain LRU on the
 *                same trace
 *   pgpool       the same PostgreSQL primary-key SELECT (a hot set of 100 keys)
 *                as a qprof hit, as an uncached round trip through the pool,
 *                and through pgpool-II's in-memory query cache
 *                (memory_cache_enabled = on, memqcache_method = shmem; Debian's
 *                pgpool2, started here on a private unix socket in front of a
 *                throwaway cluster, stopped by its PID): per-query medians
 *
 * Wall and CPU time (getrusage) are printed with the load average. Not part
 * of ctest.
 *
 * --hit-only runs only the hit part (for callgrind: --toggle-collect=qp_conn_exec),
 * --miss-only only the SQLite miss part.
 *
 * Usage: bench_cache [--rounds N] [--no-pg | --pg-only] [--hit-only]
 */
#include <getopt.h>
#include <libpq-fe.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "cache/cache_int.h" /* qp_cache.lru: plain LRU for the comparison */
#include "qprof/qprof.h"

static int g_rounds = 5;


static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *what, const char *msg) {
  fprintf(stderr, "bench_cache: %s: %s\n", what, msg);
  exit(1);
}

static qp_cache *cache_new(size_t max_bytes, bool lru) {
  qp_cache_options o;
  qp_cache_options_init(&o);
  if (max_bytes) {
    o.max_bytes = max_bytes;
    o.max_entry_bytes = max_bytes / QP_CACHE_SHARDS;
  }
  o.ttl_ms = 0;
  qp_cache *c = NULL;
  char err[256];
  if (qp_cache_open(&c, &o, err, sizeof err) != QP_OK) die("cache", err);
  c->lru = lru;
  return c;
}

static qp_pool *pool_new(const char *dsn, int max, qp_cache *cache) {
  qp_pool_options o;
  qp_pool_options_init(&o);
  o.dsn = dsn;
  o.max_size = max;
  o.cache = cache;
  qp_pool *p = NULL;
  char err[512];
  if (qp_pool_open(&p, &o, err, sizeof err) != QP_OK) die("pool", err);
  return p;
}

static void exec_ok(qp_conn *c, const char *sql, const qp_param *p, size_t np) {
  qp_result *r = NULL;
  if (qp_conn_exec(c, sql, p, np, &r) != QP_OK) die(sql, qp_conn_errmsg(c));
  qp_result_free(r);
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double q) {
  qsort(v, (size_t)n, sizeof *v, cmp_d);
  return v[(int)(q * (n - 1))];
}

/* ---- SQLite files ---------------------------------------------------------------- */

static char g_sq_dsn[300];
static char g_sq_dir[] = "/tmp/qprof-bench-cache.XXXXXX";
static pid_t g_sq_owner;

/* The benchmark's SQLite file and its directory go when it exits (only in
 * the process that made them). */
static void sqlite_remove(void) {
  if (getpid() != g_sq_owner) return;
  static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
  char f[400];
  for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
    snprintf(f, sizeof f, "%s/bench.db%s", g_sq_dir, suffix[i]);
    (void)unlink(f);
  }
  (void)rmdir(g_sq_dir);
}

static void sqlite_setup(void) {
  char *dir = g_sq_dir;
  if (mkdtemp(dir) == NULL) die("mkdtemp", "failed");
  g_sq_owner = getpid();
  atexit(sqlite_remove);
  snprintf(g_sq_dsn, sizeof g_sq_dsn, "sqlite://%s/bench.db", dir);
  qp_pool *p = pool_new(g_sq_dsn, 1, NULL);
  qp_conn *c = NULL;
  if (qp_pool_acquire(p, &c) != QP_OK) die("acquire", "sqlite");
  char sql[2048];
  snprintf(sql, sizeof sql,
           "CREATE TABLE acc(id INTEGER PRIMARY KEY, v INTEGER, name TEXT);"
           "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 100000) "
           "INSERT INTO acc SELECT i, i * 3, 'name-' || i FROM s;"
           "CREATE TABLE grp(id INTEGER PRIMARY KEY, g INTEGER, name TEXT, v REAL);"
           "CREATE INDEX grp_g ON grp(g);"
           "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < 999) "
           "INSERT INTO grp SELECT i, i / 10, 'member-' || i, i * 1.5 FROM s;");
  if (qp_conn_exec_script(c, sql) != QP_OK) die("setup", qp_conn_errmsg(c));
  for (int t = 0; t < 32; t++) {
    snprintf(sql, sizeof sql,
             "CREATE TABLE z%d(id INTEGER PRIMARY KEY, v INTEGER, pad TEXT);"
             "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < 999) "
             "INSERT INTO z%d SELECT i, i, printf('%%040d', i) FROM s;",
             t, t);
    if (qp_conn_exec_script(c, sql) != QP_OK) die("setup", qp_conn_errmsg(c));
  }
  qp_pool_release(c);
  qp_pool_close(p);
}

/* p50/p99 of single hits of a 10-row result on `dsn`. */
static void bench_hit(const char *label, const char *dsn, const char *sql) {
  qp_cache *cache = cache_new(0, false);
  qp_pool *p = pool_new(dsn, 1, cache);
  qp_conn *c = NULL;
  if (qp_pool_acquire(p, &c) != QP_OK) die("acquire", label);
  enum { N = 200000 };
  double *v = malloc(N * sizeof *v);
  double p50[16], p99[16];
  double c0 = cpu_s(), w0 = now_ns();
  for (int round = 0; round < g_rounds; round++) {
    for (int i = 0; i < N; i++) {
      qp_param prm = qp_param_int(i % 20);
      qp_result *r = NULL;
      double t0 = now_ns();
      qp_status st = qp_conn_exec(c, sql, &prm, 1, &r);
      double t1 = now_ns();
      if (st != QP_OK || qp_result_rows(r) != 10) die(label, "not 10 rows");
      qp_result_free(r);
      v[i] = t1 - t0;
    }
    /* the first 20 of round 0 were the misses */
    p50[round] = pct(v + 20, N - 20, 0.50);
    p99[round] = pct(v + 20, N - 20, 0.99);
  }
  /* the same hits timed in one stretch (no clock read per call), and what
   * the clock read pair itself costs: a p50 above includes it */
  double mean[16], clk[16];
  for (int round = 0; round < g_rounds; round++) {
    double t0 = now_ns();
    for (int i = 0; i < N; i++) {
      qp_param prm = qp_param_int(i % 20);
      qp_result *r = NULL;
      if (qp_conn_exec(c, sql, &prm, 1, &r) != QP_OK) die(label, "hit failed");
      qp_result_free(r);
    }
    mean[round] = (now_ns() - t0) / N;
    for (int i = 0; i < N; i++) {
      double t1 = now_ns();
      v[i] = now_ns() - t1;
    }
    clk[round] = pct(v, N, 0.50);
  }
  double wall = (now_ns() - w0) / 1e9, cpu = cpu_s() - c0;
  qp_cache_stats s = QP_CACHE_STATS_INIT;
  qp_cache_stats_get(cache, &s);
  printf("hit %-8s 10 rows: p50 %.0f ns, p99 %.0f ns (medians of %d rounds of %d; %llu hits, "
         "%llu misses; %.2f s wall, %.2f s CPU)\n",
         label, bench_median(p50, g_rounds), bench_median(p99, g_rounds), g_rounds, N,
         (unsigned long long)s.hits, (unsigned long long)s.misses, wall, cpu);
  printf("             mean of %d hits timed together (result freed): %.0f ns; the timer read "
         "pair in the p50: %.0f ns\n",
         N, bench_median(mean, g_rounds), bench_median(clk, g_rounds));
  free(v);
  qp_pool_release(c);
  qp_pool_close(p);
  qp_cache_close(cache);
}

/* Every query a miss and a fill, against no cache: per-query time. */
static void bench_miss(void) {
  enum { KEYS = 100000 };
  const char *sql = "SELECT v, name FROM acc WHERE id = ?";
  double with[16], without[16], cwith[16], cwithout[16];
  double c0 = cpu_s(), w0 = now_ns();
  for (int round = 0; round < g_rounds; round++) {
    for (int mode = 0; mode < 2; mode++) {
      int m = (round & 1) ? 1 - mode : mode; /* alternate which goes first */
      qp_cache *cache = m == 0 ? cache_new((size_t)256 << 20, false) : NULL;
      qp_pool *p = pool_new(g_sq_dsn, 1, cache);
      qp_conn *c = NULL;
      if (qp_pool_acquire(p, &c) != QP_OK) die("acquire", "miss");
      qp_param w = qp_param_int(0);
      exec_ok(c, sql, &w, 1); /* statement prepared, identity read */
      double t0 = now_ns(), u0 = cpu_s();
      for (int i = 1; i <= KEYS; i++) {
        qp_param prm = qp_param_int(i);
        exec_ok(c, sql, &prm, 1);
      }
      double per = (now_ns() - t0) / KEYS, cper = (cpu_s() - u0) * 1e9 / KEYS;
      if (m == 0) {
        qp_cache_stats s = QP_CACHE_STATS_INIT;
        qp_cache_stats_get(cache, &s);
        if (s.hits != 0 || s.misses < KEYS) die("miss", "not every query missed");
        with[round] = per;
        cwith[round] = cper;
      } else {
        without[round] = per;
        cwithout[round] = cper;
      }
      qp_pool_release(c);
      qp_pool_close(p);
      qp_cache_close(cache);
    }
  }
  double a = bench_median(with, g_rounds), b = bench_median(without, g_rounds);
  double ca = bench_median(cwith, g_rounds), cb = bench_median(cwithout, g_rounds);
  printf("miss     sqlite PK, 100,000 distinct keys: %.0f ns with the cache (miss + fill), %.0f ns "
         "without: overhead %.0f ns wall (target < 2,000); CPU time %.0f vs %.0f ns: overhead "
         "%.0f ns (%.2f s wall, %.2f s CPU)\n",
         a, b, a - b, ca, cb, ca - cb, (now_ns() - w0) / 1e9, cpu_s() - c0);
}

typedef struct hot_arg {
  qp_pool *p;
  const char *sql;
  double seconds;
  uint64_t n;
  pthread_t th;
} hot_arg;

static void *hot_thread(void *x) {
  hot_arg *a = x;
  qp_conn *c = NULL;
  if (qp_pool_acquire(a->p, &c) != QP_OK) die("acquire", "hot");
  for (int k = 0; k < 100; k++) {
    qp_param prm = qp_param_int(k + 1);
    exec_ok(c, a->sql, &prm, 1);
  }
  double end = now_ns() + a->seconds * 1e9;
  uint64_t n = 0, k = 0;
  while ((n & 1023) != 0 || now_ns() < end) {
    qp_param prm = qp_param_int((int64_t)(k++ % 100) + 1);
    exec_ok(c, a->sql, &prm, 1);
    n++;
  }
  a->n = n;
  qp_pool_release(c);
  return NULL;
}

static void bench_hot(void) {
  const char *sql = "SELECT v, name FROM acc WHERE id = ?";
  for (int threads = 1; threads <= 2; threads++) {
    double rate[16];
    double c0 = cpu_s(), w0 = now_ns();
    for (int round = 0; round < g_rounds; round++) {
      qp_cache *cache = cache_new(0, false);
      qp_pool *p = pool_new(g_sq_dsn, threads, cache);
      hot_arg a[2];
      for (int i = 0; i < threads; i++) {
        a[i] = (hot_arg){.p = p, .sql = sql, .seconds = 0.5};
        pthread_create(&a[i].th, NULL, hot_thread, &a[i]);
      }
      uint64_t n = 0;
      for (int i = 0; i < threads; i++) {
        pthread_join(a[i].th, NULL);
        n += a[i].n;
      }
      rate[round] = (double)n / 0.5;
      qp_pool_close(p);
      qp_cache_close(cache);
    }
    printf("hot      %d thread%s, 100 keys: %.2f M hits/s (median of %d rounds of 0.5 s; %.2f s "
           "wall, %.2f s CPU)\n",
           threads, threads > 1 ? "s" : " ", bench_median(rate, g_rounds) / 1e6, g_rounds,
           (now_ns() - w0) / 1e9, cpu_s() - c0);
  }
}

/* ---- the Zipf trace ---------------------------------------------------------- */

typedef struct op {
  uint16_t table, key;
  bool write;
} op;

static op *zipf_trace(int n, int tables, int keys_per, uint64_t seed) {
  int nk = tables * keys_per;
  double *cdf = malloc((size_t)nk * sizeof *cdf), sum = 0;
  for (int i = 0; i < nk; i++) sum += 1.0 / pow(i + 1, 0.99);
  double acc = 0;
  for (int i = 0; i < nk; i++) {
    acc += 1.0 / pow(i + 1, 0.99) / sum;
    cdf[i] = acc;
  }
  /* ranks to keys through a fixed permutation, so that the hot keys spread
   * over the tables */
  int *perm = malloc((size_t)nk * sizeof *perm);
  for (int i = 0; i < nk; i++) perm[i] = i;
  uint64_t s = seed;
  for (int i = nk - 1; i > 0; i--) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    int j = (int)((s >> 33) % (uint64_t)(i + 1));
    int t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  op *ops = malloc((size_t)n * sizeof *ops);
  for (int i = 0; i < n; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    double u = (double)(s >> 11) / 9007199254740992.0;
    int lo = 0, hi = nk - 1;
    while (lo < hi) {
      int mid = (lo + hi) / 2;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    int k = perm[lo];
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    ops[i] = (op){(uint16_t)(k % tables), (uint16_t)(k / tables), (s >> 40) % 100 < 5};
  }
  free(cdf);
  free(perm);
  return ops;
}

static void bench_zipf(size_t budget) {
  enum { N = 300000, TABLES = 32, KEYS = 1000 };
  op *ops = zipf_trace(N, TABLES, KEYS, 42);
  char rd[TABLES][96], wr[TABLES][96];
  for (int t = 0; t < TABLES; t++) {
    snprintf(rd[t], sizeof rd[t], "SELECT v, pad FROM z%d WHERE id = ?", t);
    snprintf(wr[t], sizeof wr[t], "UPDATE z%d SET v = v + 1 WHERE id = ?", t);
  }
  double thr[2][16], ratio[2][16], ev[2][16];
  double c0 = cpu_s(), w0 = now_ns();
  for (int round = 0; round < g_rounds; round++) {
    for (int mode = 0; mode < 2; mode++) {
      int m = (round & 1) ? 1 - mode : mode;
      qp_cache *cache = cache_new(budget, m == 1);
      qp_pool *p = pool_new(g_sq_dsn, 1, cache);
      qp_conn *c = NULL;
      if (qp_pool_acquire(p, &c) != QP_OK) die("acquire", "zipf");
      double t0 = now_ns();
      uint64_t reads = 0;
      for (int i = 0; i < N; i++) {
        qp_param prm = qp_param_int(ops[i].key);
        if (ops[i].write) {
          if (qp_conn_exec(c, wr[ops[i].table], &prm, 1, NULL) != QP_OK)
            die("zipf write", qp_conn_errmsg(c));
        } else {
          exec_ok(c, rd[ops[i].table], &prm, 1);
          reads++;
        }
      }
      double secs = (now_ns() - t0) / 1e9;
      qp_cache_stats s = QP_CACHE_STATS_INIT;
      qp_cache_stats_get(cache, &s);
      thr[m][round] = N / secs;
      ratio[m][round] = (double)s.hits / (double)reads;
      ev[m][round] = (double)s.evictions;
      qp_pool_release(c);
      qp_pool_close(p);
      qp_cache_close(cache);
    }
  }
  printf("zipf     0.99 over %d tables x %d keys, 5%% writes, %d ops, budget %zu KB:\n", TABLES,
         KEYS, N, budget / 1024);
  printf("           SIEVE: %.0f ops/s, hit ratio %.4f, %.0f evictions\n",
         bench_median(thr[0], g_rounds), bench_median(ratio[0], g_rounds),
         bench_median(ev[0], g_rounds));
  printf("           LRU:   %.0f ops/s, hit ratio %.4f, %.0f evictions   (medians of %d rounds; "
         "%.2f s wall, %.2f s CPU)\n",
         bench_median(thr[1], g_rounds), bench_median(ratio[1], g_rounds),
         bench_median(ev[1], g_rounds), g_rounds, (now_ns() - w0) / 1e9, cpu_s() - c0);
  free(ops);
}

/* ---- PostgreSQL and pgpool-II ---------------------------------------------------- */

static char g_env[256], g_dir[256], g_pg_dsn[512], g_pool_dir[300];
static int g_port, g_pgpool_port;
static pid_t g_pgpool_pid;
static unsigned long long g_pgpool_hits, g_pgpool_selects;

static bool read_env(void) {
  FILE *f = fopen(g_env, "r");
  if (!f) return false;
  char line[512];
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "QP_PG_DIR=", 10) == 0) sscanf(line + 10, "%255s", g_dir);
  fclose(f);
  return g_dir[0] != '\0';
}

static bool pg_start(void) {
  g_port = 57000 + (int)(getpid() % 2000);
  snprintf(g_env, sizeof g_env, "/tmp/qprof-bench-cache-%d.env", (int)getpid());
  if (bench_sh("QP_PG_PORT=%d sh '%s/tests/support/pgcluster.sh' start '%s' >/dev/null", g_port,
         QP_SOURCE_DIR, g_env) != 0 || !read_env())
    return false;
  snprintf(g_pg_dsn, sizeof g_pg_dsn, "host=%s port=%d user=postgres dbname=postgres", g_dir,
           g_port);
  PGconn *c = PQconnectdb(g_pg_dsn);
  PGresult *r = PQexec(c, "CREATE TABLE acc(id int PRIMARY KEY, v int, name text);"
                          "INSERT INTO acc SELECT i, i * 3, 'name-' || i FROM generate_series(1, 100000) i;"
                          "CREATE TABLE grp(id int PRIMARY KEY, g int, name text, v float8);"
                          "CREATE INDEX grp_g ON grp(g);"
                          "INSERT INTO grp SELECT i, i / 10, 'member-' || i, i * 1.5 "
                          "FROM generate_series(0, 999) i; ANALYZE");
  bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  if (!ok) fprintf(stderr, "bench_cache: %s", PQerrorMessage(c));
  PQclear(r);
  PQfinish(c);
  return ok;
}

/* pgpool-II with its shared-memory query cache on a private socket, in
 * front of the cluster; run as postgres (its files in a directory of its
 * own), in the foreground (-n) as our child, stopped by that PID. */
static bool pgpool_start(void) {
  snprintf(g_pool_dir, sizeof g_pool_dir, "%s/pgpool", g_dir);
  g_pgpool_port = g_port + 1;
  if (bench_sh("mkdir -p '%s/oid' && chown -R postgres '%s' 2>/dev/null; true", g_pool_dir,
         g_pool_dir) != 0)
    return false;
  char conf[512];
  snprintf(conf, sizeof conf, "%s/pgpool.conf", g_pool_dir);
  FILE *f = fopen(conf, "w");
  if (f == NULL) return false;
  fprintf(f,
          "backend_clustering_mode = 'raw'\nlisten_addresses = ''\nport = %d\n"
          "socket_dir = '%s'\npcp_listen_addresses = ''\npcp_port = %d\npcp_socket_dir = '%s'\n"
          "backend_hostname0 = '%s'\nbackend_port0 = %d\nbackend_weight0 = 1\n"
          "backend_flag0 = 'DISALLOW_TO_FAILOVER'\nnum_init_children = 4\nmax_pool = 2\n"
          "enable_pool_hba = off\nhealth_check_period = 0\nsr_check_period = 0\n"
          "load_balance_mode = off\nmemory_cache_enabled = on\nmemqcache_method = 'shmem'\n"
          "memqcache_total_size = 64MB\nmemqcache_max_num_cache = 100000\nmemqcache_expire = 0\n"
          "memqcache_oiddir = '%s/oid'\npid_file_name = '%s/pgpool.pid'\nlogdir = '%s'\n"
          "log_destination = 'stderr'\n",
          g_pgpool_port, g_pool_dir, g_pgpool_port + 1, g_pool_dir, g_dir, g_port, g_pool_dir,
          g_pool_dir, g_pool_dir);
  fclose(f);
  bench_sh("touch '%s/pcp.conf' '%s/pool_hba.conf' && chown postgres '%s'/*", g_pool_dir, g_pool_dir,
     g_pool_dir);
  fflush(NULL); /* the child must not write our buffered output again */
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    char log[512], pcp[512], hba[512];
    snprintf(log, sizeof log, "%s/pgpool.log", g_pool_dir);
    snprintf(pcp, sizeof pcp, "%s/pcp.conf", g_pool_dir);
    snprintf(hba, sizeof hba, "%s/pool_hba.conf", g_pool_dir);
    if (freopen(log, "w", stderr) == NULL || freopen("/dev/null", "w", stdout) == NULL) _exit(127);
    if (getuid() == 0)
      execlp("runuser", "runuser", "-u", "postgres", "--", "pgpool", "-n", "-f", conf, "-F", pcp,
             "-a", hba, (char *)NULL);
    else
      execlp("pgpool", "pgpool", "-n", "-f", conf, "-F", pcp, "-a", hba, (char *)NULL);
    _exit(127);
  }
  g_pgpool_pid = pid;
  char dsn[512];
  snprintf(dsn, sizeof dsn, "host=%s port=%d user=postgres dbname=postgres", g_pool_dir,
           g_pgpool_port);
  for (int i = 0; i < 100; i++) {
    PGconn *c = PQconnectdb(dsn);
    bool ok = PQstatus(c) == CONNECTION_OK;
    PQfinish(c);
    if (ok) return true;
    usleep(100000);
  }
  return false;
}

static void pg_stop(void) {
  if (g_pgpool_pid > 0) {
    /* runuser passes SIGTERM on to pgpool, which stops its children */
    kill(g_pgpool_pid, SIGTERM);
    waitpid(g_pgpool_pid, NULL, 0);
  }
  if (g_env[0]) bench_sh("sh '%s/tests/support/pgcluster.sh' stop '%s' >/dev/null", QP_SOURCE_DIR, g_env);
}

/* Per-query median of `n` PK SELECTs on a hot set of 100 keys, one libpq
 * connection, PQexecParams (what pgpool's query cache sees of a client). */
static double libpq_pk(const char *dsn, int n, bool *cached_ok) {
  PGconn *c = PQconnectdb(dsn);
  if (PQstatus(c) != CONNECTION_OK) die("libpq", PQerrorMessage(c));
  double *v = malloc((size_t)n * sizeof *v);
  for (int i = 0; i < n + 100; i++) {
    char key[16];
    snprintf(key, sizeof key, "%d", i % 100 + 1);
    const char *vals[1] = {key};
    double t0 = now_ns();
    PGresult *r = PQexecParams(c, "SELECT v, name FROM acc WHERE id = $1", 1, NULL, vals, NULL,
                               NULL, 0);
    double t1 = now_ns();
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) die("libpq", PQerrorMessage(c));
    PQclear(r);
    if (i >= 100) v[i - 100] = t1 - t0; /* the first pass fills pgpool's cache */
  }
  double m = pct(v, n, 0.5);
  free(v);
  /* pgpool's own count: were these hits of its query cache? */
  PGresult *r = PQexec(c, "SHOW POOL_CACHE");
  *cached_ok = false;
  if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
    int hi = PQfnumber(r, "num_cache_hits"), si = PQfnumber(r, "num_selects");
    if (hi >= 0 && si >= 0) {
      g_pgpool_hits = strtoull(PQgetvalue(r, 0, hi), NULL, 10);
      g_pgpool_selects = strtoull(PQgetvalue(r, 0, si), NULL, 10);
      *cached_ok = g_pgpool_hits > 0;
    }
  }
  PQclear(r);
  PQfinish(c);
  return m;
}

static double pool_pk(qp_cache *cache, int n) {
  qp_pool *p = pool_new(g_pg_dsn, 1, cache);
  qp_conn *c = NULL;
  if (qp_pool_acquire(p, &c) != QP_OK) die("acquire", "pg");
  double *v = malloc((size_t)n * sizeof *v);
  for (int i = 0; i < n + 100; i++) {
    qp_param prm = qp_param_int(i % 100 + 1);
    double t0 = now_ns();
    qp_result *r = NULL;
    qp_status st = qp_conn_exec(c, "SELECT v, name FROM acc WHERE id = $1", &prm, 1, &r);
    double t1 = now_ns();
    if (st != QP_OK || qp_result_rows(r) != 1) die("pool", qp_conn_errmsg(c));
    qp_result_free(r);
    if (i >= 100) v[i - 100] = t1 - t0;
  }
  double m = pct(v, n, 0.5);
  free(v);
  qp_pool_release(c);
  qp_pool_close(p);
  return m;
}

static void bench_pg(void) {
  char pgpool_dsn[512];
  snprintf(pgpool_dsn, sizeof pgpool_dsn, "host=%s port=%d user=postgres dbname=postgres",
           g_pool_dir, g_pgpool_port);
  double hit[16], unc[16], pgp[16];
  double c0 = cpu_s(), w0 = now_ns();
  for (int round = 0; round < g_rounds; round++) {
    qp_cache *cache = cache_new(0, false);
    bool ok;
    hit[round] = pool_pk(cache, 100000);
    unc[round] = pool_pk(NULL, 5000);
    pgp[round] = g_pgpool_pid > 0 ? libpq_pk(pgpool_dsn, 5000, &ok) : 0;
    qp_cache_close(cache);
  }
  double h = bench_median(hit, g_rounds), u = bench_median(unc, g_rounds),
         g = bench_median(pgp, g_rounds);
  printf("pg PK    hot 100 keys, per-query medians (median of %d rounds):\n", g_rounds);
  printf("           qprof hit          %9.0f ns\n", h);
  printf("           uncached (pool)    %9.0f ns   = %.0fx a qprof hit (target >= 200x)\n", u,
         u / h);
  if (g > 0)
    printf("           pgpool-II memqcache %8.0f ns   = %.0fx a qprof hit (target >= 100x); "
           "SHOW POOL_CACHE: %llu cache hits, %llu selects to the backend\n",
           g, g / h, g_pgpool_hits, g_pgpool_selects);
  else
    printf("           pgpool-II: not run (pgpool did not start)\n");
  printf("           (%.2f s wall, %.2f s CPU of this process)\n", (now_ns() - w0) / 1e9,
         cpu_s() - c0);
}

int main(int argc, char **argv) {
  bool pg = true, sq = true, hit_only = false, miss_only = false;
  static const struct option longs[] = {{"rounds", required_argument, NULL, 'r'},
                                        {"no-pg", no_argument, NULL, 'n'},
                                        {"pg-only", no_argument, NULL, 'p'},
                                        {"hit-only", no_argument, NULL, 'h'},
                                        {"miss-only", no_argument, NULL, 'm'},
                                        {0, 0, 0, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
    if (ch == 'r') g_rounds = atoi(optarg);
    else if (ch == 'n') pg = false;
    else if (ch == 'p') sq = false;
    else if (ch == 'h') hit_only = true;
    else if (ch == 'm') miss_only = true, pg = false;
    else {
      fprintf(stderr,
              "usage: bench_cache [--rounds N] [--no-pg | --pg-only] [--hit-only | --miss-only]\n");
      return 2;
    }
  }
  if (g_rounds < 1 || g_rounds > 16) {
    fprintf(stderr, "bench_cache: --rounds must be 1..16\n");
    return 2;
  }
  struct utsname u;
  uname(&u);
  double load[3] = {0};
  getloadavg(load, 3);
  printf("bench_cache: %s %s, %ld CPUs, load %.2f %.2f %.2f\n", u.nodename, u.machine,
         sysconf(_SC_NPROCESSORS_ONLN), load[0], load[1], load[2]);
  if (sq) {
    sqlite_setup();
    if (!miss_only) bench_hit("sqlite", g_sq_dsn, "SELECT id, name, v FROM grp WHERE g = ?");
  }
  if (sq && !hit_only) bench_miss();
  if (sq && !hit_only && !miss_only) {
    bench_hot();
    /* a budget of a few hundred entries (eviction decides) and of a few
     * thousand (invalidation by the writes decides) */
    bench_zipf((size_t)64 << 10);
    bench_zipf((size_t)640 << 10);
  }
  if (pg) {
    if (!pg_start()) {
      fprintf(stderr, "bench_cache: cannot start a PostgreSQL cluster\n");
      pg_stop();
      return 1;
    }
    if (!hit_only && !pgpool_start()) {
      fprintf(stderr, "bench_cache: pgpool-II did not start (see %s/pgpool.log)\n", g_pool_dir);
      if (g_pgpool_pid > 0) {
        kill(g_pgpool_pid, SIGTERM);
        waitpid(g_pgpool_pid, NULL, 0);
      }
      g_pgpool_pid = 0;
    }
    bench_hit("postgres", g_pg_dsn, "SELECT id, name, v FROM grp WHERE g = $1");
    if (!hit_only) bench_pg();
    pg_stop();
  }
  getloadavg(load, 3);
  printf("load at the end %.2f %.2f %.2f\n", load[0], load[1], load[2]);
  return 0;
}
