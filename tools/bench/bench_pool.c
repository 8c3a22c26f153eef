/*
 * bench_pool: the connection pool against its anchors, in one run.
 *
 * PostgreSQL (a private cluster started here with tests/support/pgcluster.sh,
 * `pgbench -i -s 1`), primary-key SELECTs on pgbench_accounts from N threads
 * (default 8), each mode for a fixed time, several rounds with the modes
 * interleaved (the order rotating each round), medians and ratios:
 *   pool          qp_pool (prepared statements cached per connection),
 *                 one lease per query
 *   pool+profile  the same, every query recorded into a qp_profile
 *   direct        persistent libpq connection per thread, PQprepare once +
 *                 PQexecPrepared (the same protocol as the pool)
 *   direct-unnamed  persistent, PQexecParams (unnamed statements)
 *   per-query     a new libpq connection for every query
 *   pgbouncer     Debian's pgbouncer in transaction pooling mode on a private
 *                 unix socket, persistent client connections, PQexecParams
 *                 (named prepared statements do not survive transaction pooling)
 * SQLite (a 100k-row file): point SELECTs by rowid, one thread, the modes
 * interleaved in 50 ms slices (ratios per round, then medians):
 *   sqlite raw    sqlite3_prepare_v2 once, bind, step until SQLITE_DONE reading
 *                 the column as text, reset
 *   sqlite pool   through the pool, one lease per query
 *   sqlite lease  through the pool, one lease per 50 ms slice (~30k queries)
 *   sqlite profile  one lease per query, recorded into a qp_profile
 * and an uncontended acquire+release in nanoseconds.
 *
 * Usage: bench_pool [--duration S] [--rounds N] [--threads T] [--no-pg] [--only MODE]
 *                   [--batches N [--sqlite-mode M]]
 */
#include <getopt.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "qprof/qprof.h"
#include "bench_util.h"

#define SQL_PK "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
#define ACCOUNTS 100000

static uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}


/* ---- the cluster and pgbouncer ------------------------------------------ */

static char g_env[256], g_dir[256], g_dsn[512], g_bouncer_dsn[512];
static int g_port, g_bport;
static bool g_bouncer;

static bool read_env(void) {
  FILE *f = fopen(g_env, "r");
  if (!f) return false;
  char line[512];
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "QP_PG_DIR=", 10) == 0) sscanf(line + 10, "%255s", g_dir);
  fclose(f);
  return g_dir[0] != '\0';
}

static const char *as_pg(void) { return getuid() == 0 ? "runuser -u postgres --" : ""; }

static bool start_cluster(void) {
  g_port = 56000 + (int)(getpid() % 3000);
  snprintf(g_env, sizeof g_env, "/tmp/qprof-bench-pool-%d.env", (int)getpid());
  if (bench_sh("QP_PG_PORT=%d sh '%s/tests/support/pgcluster.sh' start '%s' >/dev/null", g_port,
         QP_SOURCE_DIR, g_env) != 0 || !read_env()) {
    fprintf(stderr, "bench_pool: cannot start a PostgreSQL cluster\n");
    return false;
  }
  snprintf(g_dsn, sizeof g_dsn, "host=%s port=%d user=postgres dbname=postgres", g_dir, g_port);
  if (bench_sh("pgbench -i -s 1 -q -h '%s' -p %d -U postgres postgres >/dev/null 2>&1", g_dir, g_port) !=
      0) {
    fprintf(stderr, "bench_pool: pgbench -i failed\n");
    return false;
  }
  /* pgbouncer refuses to run as root: its files live in the cluster's
   * directory, which belongs to postgres */
  g_bport = g_port + 1;
  char ini[512];
  snprintf(ini, sizeof ini, "%s/pgbouncer.ini", g_dir);
  FILE *f = fopen(ini, "w");
  if (f == NULL) return true;
  fprintf(f,
          "[databases]\npostgres = host=%s port=%d dbname=postgres user=postgres\n"
          "[pgbouncer]\nlisten_addr =\nunix_socket_dir = %s\nlisten_port = %d\n"
          "auth_type = trust\nauth_file = %s/userlist.txt\npool_mode = transaction\n"
          "max_client_conn = 200\ndefault_pool_size = 8\nlogfile = %s/pgbouncer.log\n"
          "pidfile = %s/pgbouncer.pid\n",
          g_dir, g_port, g_dir, g_bport, g_dir, g_dir, g_dir);
  fclose(f);
  bench_sh("echo '\"postgres\" \"\"' > '%s/userlist.txt'", g_dir);
  if (bench_sh("%s pgbouncer -d -q '%s' >/dev/null 2>&1", as_pg(), ini) == 0) {
    snprintf(g_bouncer_dsn, sizeof g_bouncer_dsn, "host=%s port=%d user=postgres dbname=postgres",
             g_dir, g_bport);
    for (int i = 0; i < 50 && !g_bouncer; i++) {
      PGconn *c = PQconnectdb(g_bouncer_dsn);
      g_bouncer = PQstatus(c) == CONNECTION_OK;
      PQfinish(c);
      if (!g_bouncer) usleep(100000);
    }
  }
  if (!g_bouncer) fprintf(stderr, "bench_pool: pgbouncer did not start; skipping that mode\n");
  return true;
}

static void stop_cluster(void) {
  if (g_dir[0]) bench_sh("[ -f '%s/pgbouncer.pid' ] && kill -INT $(cat '%s/pgbouncer.pid') 2>/dev/null; "
                   "sleep 0.2", g_dir, g_dir);
  if (g_env[0]) bench_sh("sh '%s/tests/support/pgcluster.sh' stop '%s' >/dev/null", QP_SOURCE_DIR, g_env);
}

/* ---- workers ------------------------------------------------------------- */

typedef enum mode {
  M_POOL, M_POOL_PROFILE, M_DIRECT, M_DIRECT_UNNAMED, M_PER_QUERY, M_BOUNCER, M_COUNT
} mode;
static const char *mode_names[M_COUNT] = {"pool", "pool+profile", "direct (prepared)",
                                          "direct (unnamed)", "per-query connect",
                                          "pgbouncer (txn)"};

typedef struct worker {
  mode m;
  qp_pool *pool;
  atomic_bool *stop;
  pthread_barrier_t *ready;
  uint64_t ops, errors, seed;
} worker;

static void *run_worker(void *arg) {
  worker *w = arg;
  PGconn *conn = NULL;
  char aid[32];
  const char *vals[1] = {aid};
  if (w->m == M_DIRECT || w->m == M_DIRECT_UNNAMED || w->m == M_BOUNCER) {
    conn = PQconnectdb(w->m == M_BOUNCER ? g_bouncer_dsn : g_dsn);
    if (PQstatus(conn) != CONNECTION_OK) w->errors++;
    if (w->m == M_DIRECT) PQclear(PQprepare(conn, "pk", SQL_PK, 1, NULL));
  }
  pthread_barrier_wait(w->ready);
  while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
    int64_t id = (int64_t)(xorshift(&w->seed) % ACCOUNTS) + 1;
    bool ok = false;
    if (w->m == M_POOL || w->m == M_POOL_PROFILE) {
      qp_conn *c;
      if (qp_pool_acquire(w->pool, &c) == QP_OK) {
        qp_param p = qp_param_int(id);
        qp_result *r = NULL;
        ok = qp_conn_exec(c, SQL_PK, &p, 1, &r) == QP_OK && qp_result_rows(r) == 1 &&
             qp_result_value(r, 0, 0, NULL) != NULL;
        qp_result_free(r);
        qp_pool_release(c);
      }
    } else {
      snprintf(aid, sizeof aid, "%lld", (long long)id);
      PGconn *pc = conn;
      if (w->m == M_PER_QUERY) pc = PQconnectdb(g_dsn);
      PGresult *r = w->m == M_DIRECT ? PQexecPrepared(pc, "pk", 1, vals, NULL, NULL, 0)
                                     : PQexecParams(pc, SQL_PK, 1, NULL, vals, NULL, NULL, 0);
      ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQgetvalue(r, 0, 0);
      PQclear(r);
      if (w->m == M_PER_QUERY) PQfinish(pc);
    }
    if (ok) w->ops++;
    else w->errors++;
  }
  PQfinish(conn);
  return NULL;
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Client CPU (this process: user + system) per query of the last run_mode,
 * in microseconds: unlike throughput on a shared 2-CPU machine, it shows
 * what each path costs the application. */
static double g_cpu_us_per_query;

static double run_mode(mode m, int threads, double duration, qp_profile *prof) {
  qp_pool *pool = NULL;
  if (m == M_POOL || m == M_POOL_PROFILE) {
    qp_pool_options o;
    qp_pool_options_init(&o);
    o.dsn = g_dsn;
    o.min_size = o.max_size = threads;
    o.profile = m == M_POOL_PROFILE ? prof : NULL;
    o.slow_ms = 0;
    char err[256];
    if (qp_pool_open(&pool, &o, err, sizeof err) != QP_OK) {
      fprintf(stderr, "bench_pool: %s\n", err);
      return 0;
    }
    /* warm: every connection open before the clock starts */
    for (int i = 0; i < 500; i++) {
      qp_pool_stats s = QP_POOL_STATS_INIT;
      qp_pool_stats_get(pool, &s);
      if (s.sv_idle + s.sv_used >= threads) break;
      usleep(10000);
    }
  }
  atomic_bool stop;
  atomic_init(&stop, false);
  pthread_barrier_t ready;
  pthread_barrier_init(&ready, NULL, (unsigned)threads + 1);
  pthread_t th[64];
  worker w[64];
  for (int i = 0; i < threads; i++) {
    w[i] = (worker){.m = m, .pool = pool, .stop = &stop, .ready = &ready,
                    .seed = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1)};
    pthread_create(&th[i], NULL, run_worker, &w[i]);
  }
  pthread_barrier_wait(&ready);
  double c0 = cpu_s();
  double t0 = bench_now_s();
  usleep((useconds_t)(duration * 1e6));
  atomic_store(&stop, true);
  uint64_t ops = 0, errors = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(th[i], NULL);
    ops += w[i].ops;
    errors += w[i].errors;
  }
  double t1 = bench_now_s();
  g_cpu_us_per_query = ops ? (cpu_s() - c0) * 1e6 / (double)ops : 0;
  pthread_barrier_destroy(&ready);
  qp_pool_close(pool);
  if (errors) fprintf(stderr, "bench_pool: %s: %llu errors\n", mode_names[m],
                      (unsigned long long)errors);
  return (double)ops / (t1 - t0);
}

/* ---- SQLite ---------------------------------------------------------------- */

static char g_sqlite_path[256];

static bool make_sqlite(void) {
  snprintf(g_sqlite_path, sizeof g_sqlite_path, "/tmp/qprof-bench-pool-%d.db", (int)getpid());
  unlink(g_sqlite_path);
  sqlite3 *db;
  if (sqlite3_open(g_sqlite_path, &db) != SQLITE_OK) return false;
  sqlite3_exec(db,
               "PRAGMA journal_mode=WAL; CREATE TABLE acc(id INTEGER PRIMARY KEY, bal INTEGER, "
               "filler TEXT); BEGIN; WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM "
               "c WHERE x < 100000) INSERT INTO acc SELECT x, x % 1000, 'filler text ' || x FROM "
               "c; COMMIT",
               NULL, NULL, NULL);
  sqlite3_close(db);
  return true;
}

#define SQL_SQ "SELECT bal FROM acc WHERE id = ?"

/* The SQLite modes. All of them are set up before the clock starts and run
 * in short interleaved slices (the order rotating), so that a burst of load
 * from other processes on a shared machine hits every mode alike. */
typedef enum sq_mode { SQ_RAW, SQ_LEASE, SQ_ONE, SQ_PROFILE, SQ_COUNT } sq_mode;

typedef struct sq_bench {
  sqlite3 *db;
  sqlite3_stmt *st;
  qp_pool *pool, *ppool; /* ppool records into the profile */
  uint64_t seed[SQ_COUNT];
  uint64_t ops[SQ_COUNT];
  double wall[SQ_COUNT], cpu[SQ_COUNT];
} sq_bench;

static double thread_cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static qp_pool *sq_open_pool(qp_profile *prof) {
  char dsn[300];
  snprintf(dsn, sizeof dsn, "sqlite://%s", g_sqlite_path);
  qp_pool_options o;
  qp_pool_options_init(&o);
  o.dsn = dsn;
  o.max_size = 1;
  o.profile = prof;
  o.slow_ms = 0;
  qp_pool *p = NULL;
  char err[256];
  if (qp_pool_open(&p, &o, err, sizeof err) != QP_OK) fprintf(stderr, "bench_pool: %s\n", err);
  return p;
}

static bool sq_setup(sq_bench *b, qp_profile *prof) {
  memset(b, 0, sizeof *b);
  if (sqlite3_open_v2(g_sqlite_path, &b->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
      SQLITE_OK)
    return false;
  sqlite3_exec(b->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
  if (sqlite3_prepare_v2(b->db, SQL_SQ, -1, &b->st, NULL) != SQLITE_OK) return false;
  b->pool = sq_open_pool(NULL);
  b->ppool = sq_open_pool(prof);
  for (int m = 0; m < SQ_COUNT; m++) b->seed[m] = 88172645463325252ull;
  return b->pool != NULL && b->ppool != NULL;
}

static void sq_teardown(sq_bench *b) {
  sqlite3_finalize(b->st);
  sqlite3_close(b->db);
  qp_pool_close(b->pool);
  qp_pool_close(b->ppool);
}

/* Runs one mode for about `slice` seconds, in batches of 1000 queries;
 * with slice <= 0, for exactly -slice batches (for instruction counts). */
static void sq_slice(sq_bench *b, sq_mode m, double slice) {
  long batches = slice <= 0 ? (long)-slice : -1;
  uint64_t *seed = &b->seed[m], ops = 0;
  qp_pool *pool = m == SQ_PROFILE ? b->ppool : b->pool;
  qp_conn *c = NULL;
  double c0 = thread_cpu_s(), t0 = bench_now_s(), t1;
  if (m == SQ_ONE && qp_pool_acquire(pool, &c) != QP_OK) return;
  do {
    for (int i = 0; i < 1000; i++) {
      int64_t id = (int64_t)(xorshift(seed) % ACCOUNTS) + 1;
      if (m == SQ_RAW) {
        sqlite3_bind_int64(b->st, 1, id);
        /* read the whole result, as any code that does not know the row
         * count must (and as the pool does) */
        int rows = 0;
        while (sqlite3_step(b->st) == SQLITE_ROW)
          if (sqlite3_column_text(b->st, 0) != NULL) rows++;
        if (rows == 1) ops++;
        sqlite3_reset(b->st);
        continue;
      }
      if (m != SQ_ONE && qp_pool_acquire(pool, &c) != QP_OK) continue;
      qp_param x = qp_param_int(id);
      qp_result *r = NULL;
      if (qp_conn_exec(c, SQL_SQ, &x, 1, &r) == QP_OK && qp_result_rows(r) == 1 &&
          qp_result_value(r, 0, 0, NULL) != NULL)
        ops++;
      qp_result_free(r);
      if (m != SQ_ONE) qp_pool_release(c);
    }
  } while ((t1 = bench_now_s()) - t0 < slice || --batches > 0);
  if (m == SQ_ONE) qp_pool_release(c);
  b->ops[m] += ops;
  b->wall[m] += t1 - t0;
  b->cpu[m] += thread_cpu_s() - c0;
}

/* One round: `duration` seconds per mode, in 50 ms slices. q/s of each mode
 * by wall time into qps[] and by this thread's CPU time into cpuqps[]. */
static bool sqlite_round(double duration, qp_profile *prof, int round, double *qps,
                         double *cpuqps) {
  sq_bench b;
  if (!sq_setup(&b, prof)) {
    sq_teardown(&b);
    return false;
  }
  for (int m = 0; m < SQ_COUNT; m++) sq_slice(&b, (sq_mode)m, 0.05); /* warm */
  memset(b.ops, 0, sizeof b.ops);
  memset(b.wall, 0, sizeof b.wall);
  memset(b.cpu, 0, sizeof b.cpu);
  int slices = (int)(duration / 0.05 + 0.5);
  for (int k = 0; k < slices; k++)
    for (int j = 0; j < SQ_COUNT; j++) sq_slice(&b, (sq_mode)((j + k + round) % SQ_COUNT), 0.05);
  for (int m = 0; m < SQ_COUNT; m++) {
    qps[m] = b.wall[m] > 0 ? (double)b.ops[m] / b.wall[m] : 0;
    cpuqps[m] = b.cpu[m] > 0 ? (double)b.ops[m] / b.cpu[m] : 0;
  }
  sq_teardown(&b);
  return true;
}

static double acquire_release_ns(void) {
  qp_pool_options o;
  qp_pool_options_init(&o);
  o.dsn = "sqlite::memory:";
  o.max_size = 1;
  qp_pool *p;
  char err[256];
  if (qp_pool_open(&p, &o, err, sizeof err) != QP_OK) return 0;
  qp_conn *c;
  qp_pool_acquire(p, &c);
  qp_pool_release(c);
  const int n = 2000000;
  double t0 = bench_now_s();
  for (int i = 0; i < n; i++) {
    qp_pool_acquire(p, &c);
    qp_pool_release(c);
  }
  double t1 = bench_now_s();
  qp_pool_close(p);
  return (t1 - t0) * 1e9 / n;
}

/* ---- main ------------------------------------------------------------------ */

int main(int argc, char **argv) {
  double duration = 3;
  int rounds = 3, threads = 8;
  bool pg = true;
  int only = -1; /* run one PostgreSQL mode (for profiling) */
  long batches = 0; /* > 0: SQLite only, fixed work, for callgrind */
  int sq_only = -1;  /* with batches: one SQLite mode */
  static const struct option longopts[] = {{"duration", required_argument, 0, 'd'},
                                           {"rounds", required_argument, 0, 'r'},
                                           {"threads", required_argument, 0, 't'},
                                           {"no-pg", no_argument, 0, 'n'},
                                           {"only", required_argument, 0, 'o'},
                                           {"batches", required_argument, 0, 'b'},
                                           {"sqlite-mode", required_argument, 0, 's'},
                                           {"help", no_argument, 0, 'h'},
                                           {0, 0, 0, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "d:r:t:no:b:s:h", longopts, NULL)) != -1) {
    switch (ch) {
    case 'd': duration = atof(optarg); break;
    case 'r': rounds = atoi(optarg); break;
    case 't': threads = atoi(optarg); break;
    case 'n': pg = false; break;
    case 'b': batches = atol(optarg); break;
    case 's': sq_only = atoi(optarg); break;
    case 'o':
      for (int m = M_COUNT - 1; m >= 0; m--) /* exact name, else a prefix */
        if (strncmp(mode_names[m], optarg, strlen(optarg)) == 0) only = m;
      for (int m = 0; m < M_COUNT; m++)
        if (strcmp(mode_names[m], optarg) == 0) only = m;
      if (only < 0) {
        fprintf(stderr, "bench_pool: unknown mode '%s'\n", optarg);
        return 2;
      }
      break;
    case 'h':
      printf("usage: bench_pool [--duration S] [--rounds N] [--threads T] [--no-pg] "
             "[--only MODE] [--batches N]\n"
             "  --batches N  SQLite only: run each SQLite mode for exactly N x 1000 queries,\n"
             "               untimed, for instruction counts (valgrind --tool=callgrind)\n"
             "  --sqlite-mode M  with --batches, only mode M: 0 raw, 1 lease per query,\n"
             "               2 one lease, 3 lease per query with a profile\n");
      return 0;
    default: return 2;
    }
  }
  if (rounds < 1 || rounds > 15 || threads < 1 || threads > 64 || duration <= 0) {
    fprintf(stderr, "bench_pool: bad arguments (rounds 1..15, threads 1..64)\n");
    return 2;
  }
  struct utsname u;
  uname(&u);
  printf("bench_pool: %s %s, %ld CPUs, qprof %s, libpq %s, SQLite %s\n", u.sysname, u.release,
         sysconf(_SC_NPROCESSORS_ONLN), qp_version(), qp_libpq_version(), qp_sqlite_version());
  printf("%d threads, %.1f s per mode, %d rounds (modes interleaved), medians\n\n", threads,
         duration, rounds);
  qp_profile *prof = NULL;
  char err[256];
  if (qp_profile_new(&prof, NULL, err, sizeof err) != QP_OK) {
    fprintf(stderr, "bench_pool: %s\n", err);
    return 1;
  }
  double res[M_COUNT][15], cpu[M_COUNT][15];
  int have[M_COUNT] = {0};
  if (batches > 0) pg = false;
  if (pg) {
    if (!start_cluster()) {
      stop_cluster();
      return 1;
    }
    for (int r = 0; r < rounds; r++) {
      /* the order rotates from round to round, so that no mode always
       * follows the same neighbour on a shared machine */
      for (int k = 0; k < M_COUNT; k++) {
        int m = (k + r) % M_COUNT;
        if ((m == M_BOUNCER && !g_bouncer) || (only >= 0 && m != only)) continue;
        res[m][have[m]] = run_mode((mode)m, threads, duration, prof);
        cpu[m][have[m]++] = g_cpu_us_per_query;
        fprintf(stderr, "round %d %-20s %10.0f q/s %8.2f us client CPU/query\n", r + 1,
                mode_names[m], res[m][have[m] - 1], g_cpu_us_per_query);
      }
    }
    stop_cluster();
    /* Pool and direct run back to back in every round, so the ratio within
     * a round is less exposed to the machine's drift than the ratio of the
     * medians; both are shown. (Taken before bench_median() sorts res.) */
    double paired[15];
    int np = have[M_POOL] < have[M_DIRECT] ? have[M_POOL] : have[M_DIRECT];
    for (int r = 0; r < np; r++) paired[r] = res[M_POOL][r] / res[M_DIRECT][r];
    double med[M_COUNT] = {0};
    printf("PostgreSQL 15, primary-key SELECT on pgbench_accounts (-s 1), unix socket\n");
    printf("| path | queries/s (median) | client CPU us/query (median) | runs (q/s, sorted) |\n"
           "|---|---|---|---|\n");
    double medcpu[M_COUNT] = {0};
    for (int m = 0; m < M_COUNT; m++) {
      if (!have[m]) continue;
      med[m] = bench_median(res[m], have[m]);
      medcpu[m] = bench_median(cpu[m], have[m]);
      printf("| %s | %.0f | %.2f |", mode_names[m], med[m], medcpu[m]);
      for (int i = 0; i < have[m]; i++) printf(" %.0f", res[m][i]);
      printf(" |\n");
    }
    if (only < 0)
      printf("\nclient CPU per query: pool %+.2f us vs direct (prepared), pool+profile %+.2f us\n",
             medcpu[M_POOL] - medcpu[M_DIRECT], medcpu[M_POOL_PROFILE] - medcpu[M_DIRECT]);
    if (only >= 0) {
      qp_profile_free(prof);
      return 0;
    }
    printf("\nratios: pool / direct (prepared) = %.2fx (target >= 0.95)\n",
           med[M_POOL] / med[M_DIRECT]);
    if (np > 0) {
      double pm = bench_median(paired, np);
      printf("        pool / direct (prepared), median of per-round ratios = %.2fx (sorted:", pm);
      for (int r = 0; r < np; r++) printf(" %.2f", paired[r]);
      printf(")\n");
    }
    printf("        pool / direct (unnamed) = %.2fx\n", med[M_POOL] / med[M_DIRECT_UNNAMED]);
    if (have[M_BOUNCER])
      printf("        pool / pgbouncer = %.2fx (target >= 1.5)\n", med[M_POOL] / med[M_BOUNCER]);
    printf("        pool / per-query connect = %.1fx (target >= 20)\n",
           med[M_POOL] / med[M_PER_QUERY]);
    printf("        pool+profile / pool = %.2fx\n\n", med[M_POOL_PROFILE] / med[M_POOL]);
  }

  if (!make_sqlite()) return 1;
  /* A pool with default options runs a maintenance thread, which makes
   * glibc's malloc take locks for the rest of the process. Start one before
   * any SQLite round so that raw and pooled loops all run that way. */
  {
    qp_pool_options o;
    qp_pool_options_init(&o);
    o.dsn = "sqlite::memory:";
    qp_pool *warm;
    if (qp_pool_open(&warm, &o, err, sizeof err) == QP_OK) qp_pool_close(warm);
  }
  if (batches > 0) {
    /* Fixed work per mode: run under callgrind with N and 2N batches; the
     * difference of the instruction counts / (N x 1000) is one query's. */
    sq_bench b;
    int rc = 0;
    if (sq_setup(&b, prof)) {
      for (int m = 0; m < SQ_COUNT; m++) {
        if (sq_only >= 0 && m != sq_only) continue;
        sq_slice(&b, (sq_mode)m, -(double)batches);
        printf("mode %d: %llu queries\n", m, (unsigned long long)b.ops[m]);
      }
    } else {
      rc = 1;
    }
    sq_teardown(&b);
    unlink(g_sqlite_path);
    qp_profile_free(prof);
    return rc;
  }
  double q[SQ_COUNT][15], cq[SQ_COUNT][15], ratio[SQ_COUNT][15], cratio[SQ_COUNT][15];
  for (int r = 0; r < rounds; r++) {
    double qps[SQ_COUNT], cpuqps[SQ_COUNT];
    if (!sqlite_round(duration, prof, r, qps, cpuqps)) {
      fprintf(stderr, "bench_pool: cannot set up the SQLite round\n");
      return 1;
    }
    for (int m = 0; m < SQ_COUNT; m++) {
      q[m][r] = qps[m];
      cq[m][r] = cpuqps[m];
      ratio[m][r] = qps[m] / qps[SQ_RAW];
      cratio[m][r] = cpuqps[m] / cpuqps[SQ_RAW];
    }
    fprintf(stderr, "sqlite round %d: raw %.0f q/s, pool %.2fx, one lease %.2fx, profile %.2fx\n",
            r + 1, qps[SQ_RAW], ratio[SQ_LEASE][r], ratio[SQ_ONE][r], ratio[SQ_PROFILE][r]);
  }
  unlink(g_sqlite_path);
  char wal[300];
  snprintf(wal, sizeof wal, "%s-wal", g_sqlite_path);
  unlink(wal);
  snprintf(wal, sizeof wal, "%s-shm", g_sqlite_path);
  unlink(wal);
  static const char *sq_names[SQ_COUNT] = {
      "raw sqlite3, cached statement", "pool, one lease per query",
      "pool, one lease for the loop", "pool, lease per query, recorded into a profile"};
  printf("SQLite %s, point SELECT by rowid on 100k rows, 1 thread, modes interleaved in 50 ms "
         "slices\n", qp_sqlite_version());
  printf("| path | queries/s (median) | queries per CPU-second (median) | / raw, per round "
         "(sorted) |\n|---|---|---|---|\n");
  double med_ratio[SQ_COUNT], med_cratio[SQ_COUNT];
  for (int m = 0; m < SQ_COUNT; m++) {
    double mq = bench_median(q[m], rounds), mc = bench_median(cq[m], rounds);
    med_ratio[m] = bench_median(ratio[m], rounds);
    med_cratio[m] = bench_median(cratio[m], rounds);
    printf("| %s | %.0f | %.0f |", sq_names[m], mq, mc);
    /* bench_median() sorted ratio[m] in place */
    for (int r = 0; r < rounds && m != SQ_RAW; r++) printf(" %.2f", ratio[m][r]);
    printf(" |\n");
  }
  printf("\nratios (median of per-round ratios; by CPU time in brackets):\n");
  printf("        pool (lease per query) / raw = %.2fx [%.2fx] (target >= 0.9)\n",
         med_ratio[SQ_LEASE], med_cratio[SQ_LEASE]);
  printf("        pool (one lease) / raw = %.2fx [%.2fx]\n", med_ratio[SQ_ONE],
         med_cratio[SQ_ONE]);
  printf("        pool + profile / raw = %.2fx [%.2fx]\n\n", med_ratio[SQ_PROFILE],
         med_cratio[SQ_PROFILE]);
  double ns[15];
  for (int r = 0; r < rounds; r++) ns[r] = acquire_release_ns();
  printf("uncontended acquire+release: %.0f ns (median of %d x 2M; target < 200)\n",
         bench_median(ns, rounds), rounds);
  qp_profile_free(prof);
  return 0;
}
