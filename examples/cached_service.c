/*
 * A service with qprof's SELECT result cache: worker threads read products
 * by id (cached) and now and then change a price (which invalidates what it
 * wrote at once), on PostgreSQL or SQLite. At the end it prints what the
 * cache did, in Prometheus format.
 *
 * Build against an installed qprof:
 *   cc -std=c11 $(pkg-config --cflags qprof) cached_service.c $(pkg-config --libs qprof)
 * Run:
 *   ./cached_service sqlite:///tmp/shop.db
 *   ./cached_service 'host=/tmp dbname=shop'
 *
 * It uses only the public API (qprof/qprof.h).
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <qprof/qprof.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKERS 4
#define REQUESTS 2000

static qp_pool *g_pool;
static int g_postgres;

static void *worker(void *arg) {
  unsigned seed = (unsigned)(size_t)arg;
  const char *read = g_postgres ? "SELECT name, price FROM product WHERE id = $1"
                                : "SELECT name, price FROM product WHERE id = ?";
  const char *write = g_postgres ? "UPDATE product SET price = price + 1 WHERE id = $1"
                                 : "UPDATE product SET price = price + 1 WHERE id = ?";
  for (int i = 0; i < REQUESTS; i++) {
    qp_conn *c;
    char err[256];
    if (qp_pool_acquire_msg(g_pool, &c, -1, err, sizeof err) != QP_OK) {
      fprintf(stderr, "acquire: %s\n", err);
      return NULL;
    }
    seed = seed * 1103515245u + 12345u;
    qp_param id = qp_param_int(1 + (seed >> 16) % 20);
    qp_result *r = NULL;
    /* one request in fifty writes; the others are served from the cache
     * until what they read changes */
    qp_status st = (seed >> 8) % 50 == 0 ? qp_conn_exec(c, write, &id, 1, NULL)
                                         : qp_conn_exec(c, read, &id, 1, &r);
    if (st != QP_OK) fprintf(stderr, "query: %s\n", qp_conn_errmsg(c));
    qp_result_free(r);
    qp_pool_release(c);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s DSN\n", argv[0]);
    return 2;
  }
  g_postgres = strncmp(argv[1], "sqlite:", 7) != 0;
  char err[512];
  qp_cache_options co;
  qp_cache_options_init(&co);
  co.max_bytes = (size_t)16 << 20;
  co.ttl_ms = 10000; /* bound on writes made outside this process */
  qp_cache *cache;
  if (qp_cache_open(&cache, &co, err, sizeof err) != QP_OK) {
    fprintf(stderr, "cache: %s\n", err);
    return 1;
  }
  qp_pool_options po;
  qp_pool_options_init(&po);
  po.dsn = argv[1];
  po.max_size = WORKERS;
  po.cache = cache;
  if (qp_pool_open(&g_pool, &po, err, sizeof err) != QP_OK) {
    fprintf(stderr, "pool: %s\n", err);
    qp_cache_close(cache);
    return 1;
  }
  qp_conn *c;
  if (qp_pool_acquire_msg(g_pool, &c, -1, err, sizeof err) != QP_OK ||
      qp_conn_exec_script(c, "DROP TABLE IF EXISTS product;"
                             "CREATE TABLE product(id int PRIMARY KEY, name text, price int)") != QP_OK) {
    fprintf(stderr, "setup: %s\n", c ? qp_conn_errmsg(c) : err);
    return 1;
  }
  for (int i = 1; i <= 20; i++) {
    char sql[128];
    snprintf(sql, sizeof sql, "INSERT INTO product VALUES (%d, 'item %d', %d)", i, i, 100 + i);
    qp_conn_exec_script(c, sql);
  }
  qp_pool_release(c);
  pthread_t t[WORKERS];
  for (size_t i = 0; i < WORKERS; i++) pthread_create(&t[i], NULL, worker, (void *)(i + 1));
  for (size_t i = 0; i < WORKERS; i++) pthread_join(t[i], NULL);
  char *text = NULL;
  size_t need = 0;
  qp_cache_prometheus(cache, NULL, NULL, 0, &need);
  text = malloc(need + 1);
  if (text != NULL && qp_cache_prometheus(cache, NULL, text, need + 1, NULL) == QP_OK)
    fputs(text, stdout);
  free(text);
  qp_pool_close(g_pool);
  qp_cache_close(cache);
  return 0;
}
