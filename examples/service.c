/*
 * A small service on qprof's connection pool: worker threads serve "orders"
 * requests against PostgreSQL or SQLite, every query timed and recorded into
 * a profile, and the service reports its pool metrics in Prometheus format
 * at the end (a real service would serve them on /metrics).
 *
 * Build against an installed qprof:
 *   cc -std=c11 $(pkg-config --cflags qprof) service.c $(pkg-config --libs qprof)
 * Run:
 *   ./service 'postgresql://app@localhost/shop'     (or host=/tmp dbname=shop ...)
 *   ./service sqlite:///tmp/shop.db
 *   QPROF_POOL_MAX_SIZE=4 QPROF_SLOW_MS=5 ./service sqlite:///tmp/shop.db
 *   QPROF_STORE=/tmp/shop-profile.db ./service ...  (then: qprof report)
 *
 * It uses only the public API (qprof/qprof.h).
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <qprof/qprof.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WORKERS 8
#define REQUESTS_PER_WORKER 200

typedef struct service {
  qp_pool *pool;
  bool postgres;
} service;

/* The log callback may be called from any thread: one fputs is atomic enough
 * for a demo. */
static void log_line(qp_log_level level, const char *msg, void *ud) {
  (void)ud;
  fprintf(stderr, "[%s] %s\n", qp_log_level_name(level), msg);
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* One request: place an order in a transaction, read the customer's total.
 * Returns QP_OK or the status that made it fail. */
static qp_status handle_request(service *s, int customer, int amount, int64_t *total) {
  qp_conn *c;
  /* The acquire names this line as the holder if the lease leaks. */
  qp_status st = qp_pool_acquire(s->pool, &c);
  if (st != QP_OK) return st;
  const char *insert = s->postgres ? "INSERT INTO orders(customer, amount) VALUES ($1, $2)"
                                   : "INSERT INTO orders(customer, amount) VALUES (?, ?)";
  const char *sum = s->postgres ? "SELECT coalesce(sum(amount), 0) FROM orders WHERE customer = $1"
                                : "SELECT coalesce(sum(amount), 0) FROM orders WHERE customer = ?";
  qp_param p[2] = {qp_param_int(customer), qp_param_int(amount)};
  qp_result *r = NULL;
  st = qp_conn_exec_script(c, "BEGIN");
  if (st == QP_OK) st = qp_conn_exec(c, insert, p, 2, NULL);
  if (st == QP_OK) st = qp_conn_exec(c, sum, p, 1, &r);
  if (st == QP_OK) st = qp_conn_exec_script(c, "COMMIT");
  if (st == QP_OK) st = qp_result_int64(r, 0, 0, total);
  if (st != QP_OK && st != QP_INVALID)
    fprintf(stderr, "request failed: %s (%s) [SQLSTATE %s]\n", qp_strerror(st),
            qp_conn_errmsg(c), qp_conn_sqlstate(c));
  qp_result_free(r);
  /* On failure the transaction is still open: release rolls it back. */
  qp_pool_release(c);
  return st;
}

typedef struct worker {
  service *svc;
  int id, served, failed;
} worker;

static void *worker_main(void *arg) {
  worker *w = arg;
  for (int i = 0; i < REQUESTS_PER_WORKER; i++) {
    int64_t total = 0;
    qp_status st = QP_ERROR;
    /* Retry what may pass on a second try: a busy pool, a database that is
     * restarting. A query error is the request's own fault: no retry. */
    for (int attempt = 0; attempt < 3; attempt++) {
      st = handle_request(w->svc, w->id * 1000 + i % 10, 1 + i % 7, &total);
      if (st != QP_EXHAUSTED && st != QP_UNAVAILABLE) break;
      sleep_ms(50L << attempt);
    }
    if (st == QP_OK) w->served++;
    else w->failed++;
  }
  return NULL;
}

static qp_status setup_schema(service *s) {
  qp_conn *c;
  qp_status st = qp_pool_acquire(s->pool, &c);
  if (st != QP_OK) return st;
  st = qp_conn_exec_script(c, s->postgres
                                  ? "CREATE TABLE IF NOT EXISTS orders(id bigserial PRIMARY KEY, "
                                    "customer int NOT NULL, amount int NOT NULL)"
                                  : "CREATE TABLE IF NOT EXISTS orders(id INTEGER PRIMARY KEY, "
                                    "customer INTEGER NOT NULL, amount INTEGER NOT NULL)");
  if (st != QP_OK) fprintf(stderr, "schema: %s\n", qp_conn_errmsg(c));
  else
    printf("connected to %s %s, database %s\n",
           qp_conn_backend(c) == QP_BACKEND_POSTGRES ? "PostgreSQL" : "SQLite",
           qp_conn_server_version(c), qp_conn_database(c));
  qp_pool_release(c);
  return st;
}

int main(int argc, char **argv) {
  const char *dsn = argc > 1 ? argv[1] : "sqlite::memory:";
  if (strcmp(dsn, "-h") == 0 || strcmp(dsn, "--help") == 0) {
    printf("usage: service [DSN]   (default sqlite::memory:; QPROF_POOL_* variables apply)\n");
    return 0;
  }
  qp_hooks hooks = {0};
  hooks.log_fn = log_line;
  hooks.log_min_level = QP_LOG_WARN;

  /* Options: the defaults, then QPROF_* environment variables. */
  qp_config *cfg = NULL;
  if (qp_config_new(&cfg, &hooks) != QP_OK) return 1;
  if (qp_config_load_env(cfg) != QP_OK) {
    fprintf(stderr, "service: %s\n", qp_config_errmsg(cfg));
    qp_config_free(cfg);
    return 2;
  }
  char err[512];
  qp_profile *profile = NULL;
  if (qp_profile_new(&profile, NULL, err, sizeof err) != QP_OK) {
    fprintf(stderr, "service: profile: %s\n", err);
    qp_config_free(cfg);
    return 1;
  }
  qp_pool_options o;
  qp_pool_options_init(&o);
  if (qp_pool_options_from_config(&o, cfg, err, sizeof err) != QP_OK) {
    fprintf(stderr, "service: %s\n", err);
    qp_profile_free(profile);
    qp_config_free(cfg);
    return 2;
  }
  o.dsn = dsn;
  o.hooks = &hooks;
  o.profile = profile;
  o.acquire_timeout_ms = 5000;
  o.leak_ms = 10000;
  service svc = {NULL, strncmp(dsn, "sqlite:", 7) != 0};
  if (strcmp(dsn, "sqlite::memory:") == 0) o.max_size = 1; /* one shared in-memory database */
  qp_status st = qp_pool_open(&svc.pool, &o, err, sizeof err);
  if (st != QP_OK) {
    fprintf(stderr, "service: cannot open the pool: %s\n", err);
    qp_profile_free(profile);
    qp_config_free(cfg);
    return 1;
  }
  int rc = 0;
  st = setup_schema(&svc);
  if (st != QP_OK) {
    qp_pool_errmsg(svc.pool, err, sizeof err);
    fprintf(stderr, "service: %s: %s\n", qp_strerror(st), err);
    rc = 1;
  } else {
    pthread_t th[WORKERS];
    worker w[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
      w[i] = (worker){&svc, i, 0, 0};
      pthread_create(&th[i], NULL, worker_main, &w[i]);
    }
    int served = 0, failed = 0;
    for (int i = 0; i < WORKERS; i++) {
      pthread_join(th[i], NULL);
      served += w[i].served;
      failed += w[i].failed;
    }
    qp_pool_stats s;
    qp_pool_stats_get(svc.pool, &s);
    printf("served %d requests, %d failed; %llu queries in %.1f ms; %llu connections opened\n",
           served, failed, (unsigned long long)s.total_query_count,
           (double)s.total_query_time_us / 1000.0, (unsigned long long)s.connects);
    char *metrics = NULL;
    if (qp_pool_prometheus_alloc(svc.pool, "service=\"orders\"", &metrics) == QP_OK) {
      fputs(metrics, stdout);
      qp_pool_string_free(svc.pool, metrics);
    }
    printf("profile: %llu statements recorded\n",
           (unsigned long long)qp_profile_recorded(profile));
    rc = failed == 0 ? 0 : 1;
  }
  qp_pool_close(svc.pool);
  /* Keep the profile: flush it into a store when one is configured. */
  const char *store_path = qp_config_string(cfg, "store");
  if (getenv("QPROF_STORE") != NULL && *store_path) {
    qp_store *store = NULL;
    if (qp_store_open(&store, store_path, QP_STORE_WRITE, &hooks, err, sizeof err) == QP_OK &&
        qp_profile_flush(profile, store) == QP_OK)
      printf("profile flushed to %s\n", store_path);
    else
      fprintf(stderr, "service: cannot flush the profile: %s\n",
              store ? qp_store_errmsg(store) : err);
    qp_store_close(store);
  }
  qp_profile_free(profile);
  qp_config_free(cfg);
  return rc;
}
