#include "pgtest.h"

#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* the ring of value buffers: a test compares two or three values in one
 * assertion, each from its own call */
static char *value_slot(void) {
  static char buf[8][256];
  static int k;
  return buf[k++ & 7];
}

/* Runs sql on a connection of its own; the message of a failure (connection
 * or statement) into msg, "" on success. */
static int pg_run(const char *dsn, const char *sql, char *msg, size_t n) {
  int rc = 0;
  msg[0] = '\0';
  PGconn *c = PQconnectdb(dsn);
  if (PQstatus(c) != CONNECTION_OK) {
    snprintf(msg, n, "connect: %s", PQerrorMessage(c));
    rc = -1;
  } else {
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
      snprintf(msg, n, "%s", PQerrorMessage(c));
      rc = -1;
    }
    PQclear(r);
  }
  PQfinish(c);
  return rc;
}

int qpt_pg_try(const char *dsn, const char *sql) {
  char msg[1024];
  int rc = pg_run(dsn, sql, msg, sizeof msg);
  if (rc != 0) print_error("%s: %s\n", sql, msg);
  return rc;
}

void qpt_pg_exec(const char *dsn, const char *sql) {
  char msg[1024];
  if (pg_run(dsn, sql, msg, sizeof msg) != 0) fail_msg("%s: %s", sql, msg);
}

const char *qpt_pg_value(const char *dsn, const char *sql) {
  char *out = value_slot();
  PGconn *c = PQconnectdb(dsn);
  if (PQstatus(c) != CONNECTION_OK) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", PQerrorMessage(c));
    PQfinish(c);
    fail_msg("connect for %s: %s", sql, msg);
  }
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    fail_msg("%s: %s", sql, msg);
  }
  const char *v = PQntuples(r) == 0 ? "<none>" : PQgetisnull(r, 0, 0) ? "<null>" : PQgetvalue(r, 0, 0);
  snprintf(out, 256, "%s", v);
  PQclear(r);
  PQfinish(c);
  return out;
}

void qpt_pg_dsn_as(char *buf, size_t n, const char *user, const char *db) {
  qpt_pg_env_load();
  snprintf(buf, n, "host=%s port=%s user=%s dbname=%s", getenv("PGHOST"), getenv("PGPORT"),
           user != NULL ? user : getenv("PGUSER"), db);
}

int qpt_pgdb_create(qpt_pgdb *db, const char *fmt, ...) {
  memset(db, 0, sizeof *db);
  const char *admin = qpt_pg_dsn();
  if (admin == NULL) {
    print_error("no PostgreSQL fixture (QP_TEST_PGENV)\n");
    return -1;
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(db->name, sizeof db->name, fmt, ap);
  va_end(ap);
  char sql[128];
  snprintf(sql, sizeof sql, "CREATE DATABASE %s", db->name);
  if (qpt_pg_try(admin, sql) != 0) {
    db->name[0] = '\0';
    return -1;
  }
  qpt_pg_dsn_as(db->dsn, sizeof db->dsn, NULL, db->name);
  return 0;
}

int qpt_pgdb_drop(const qpt_pgdb *db) {
  if (db->name[0] == '\0') return 0;
  const char *admin = qpt_pg_dsn();
  if (admin == NULL) return -1;
  char sql[128];
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db->name);
  return qpt_pg_try(admin, sql);
}

void qpt_pool_options_init(qp_pool_options *o) {
  qp_pool_options_init(o);
  if (o->acquire_timeout_ms > 5000) o->acquire_timeout_ms = 5000;
}

qp_pool *qpt_pool_open(const char *dsn, int max, qp_cache *cache, const qp_pool_options *o) {
  qp_pool_options po;
  if (o != NULL) po = *o;
  else qpt_pool_options_init(&po);
  po.dsn = dsn;
  po.max_size = max;
  if (cache != NULL) po.cache = cache;
  qp_pool *p = NULL;
  char err[512];
  if (qp_pool_open(&p, &po, err, sizeof err) != QP_OK) fail_msg("open: %s", err);
  return p;
}

void qpt_script(qp_conn *c, const char *sql) {
  if (qp_conn_exec_script(c, sql) != QP_OK) fail_msg("%s: %s", sql, qp_conn_errmsg(c));
}

void qpt_exec(qp_conn *c, const char *sql) {
  if (qp_conn_exec(c, sql, NULL, 0, NULL) != QP_OK) fail_msg("%s: %s", sql, qp_conn_errmsg(c));
}

const char *qpt_value(qp_conn *c, const char *sql) {
  char *out = value_slot();
  qp_result *r = NULL;
  if (qp_conn_exec(c, sql, NULL, 0, &r) != QP_OK) fail_msg("%s: %s", sql, qp_conn_errmsg(c));
  const char *v = qp_result_rows(r) == 0 ? "<none>" : qp_result_value(r, 0, 0, NULL);
  snprintf(out, 256, "%s", v ? v : "<null>");
  qp_result_free(r);
  return out;
}

int qpt_pgcluster_start(qpt_pgcluster *pc, const char *name, int port) {
  memset(pc, 0, sizeof *pc);
  const char *src = getenv("QP_TEST_SOURCE_DIR");
  const char *build = getenv("QP_TEST_BUILD_DIR");
  if (src == NULL || build == NULL) return -1;
  snprintf(pc->script, sizeof pc->script, "%s/tests/support/pgcluster.sh", src);
  snprintf(pc->env, sizeof pc->env, "%s/%s_%d.env", build, name, (int)getpid());
  if (qpt_system("QP_PG_PORT=%d sh '%s' start '%s' >/dev/null", port, pc->script, pc->env) != 0)
    return -1;
  FILE *f = fopen(pc->env, "r");
  if (f == NULL) return -1;
  char line[512], host[256] = "";
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "PGHOST=", 7) == 0) sscanf(line + 7, "%255s", host);
  fclose(f);
  snprintf(pc->dsn, sizeof pc->dsn, "host=%s port=%d user=postgres dbname=postgres", host, port);
  return 0;
}

int qpt_pgcluster_do(const qpt_pgcluster *pc, const char *action) {
  return qpt_system("sh '%s' %s '%s' >/dev/null", pc->script, action, pc->env);
}
