/*
 * A small libpq client for test_shim_pq_modes.sh, built by the test itself
 * (plain cc, no qprof): the paths pgbench, psql and psycopg2 do not take.
 *   single-row mode        SELECT g AS single FROM generate_series(1, 50)   x3
 *   PQexecParams           SELECT $1::int + 1 AS params                     x4
 *   PQprepare/PQexecPrepared + PQdescribePrepared "stmt1"                   x5
 *   a pipeline where the 2nd query fails: 1 ok, 1 error, 1 aborted (not run)
 *   PQsendQuery with 3 statements                                           x1 each
 *   two connections used in turn, each with its own statement "s", one with a
 *   second statement "t" (x6 each); then the second closed and a third opened
 *   (malloc often gives it the address of the second) with its own "s" (x3)
 * 38 statements in all. Prints what it got, so that output can be compared with and without the shim.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

static PGconn *conn;

static void prepare(PGconn *c, const char *name, const char *sql) {
  PGresult *r = PQprepare(c, name, sql, 1, NULL);
  printf("prepare %s: %s\n", name, PQresStatus(PQresultStatus(r)));
  PQclear(r);
}

static void execute(PGconn *c, const char *name, int v) {
  char s[16];
  snprintf(s, sizeof s, "%d", v);
  const char *vals[1] = {s};
  PGresult *r = PQexecPrepared(c, name, 1, vals, NULL, NULL, 0);
  printf("%s: %s\n", name, PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : PQresultErrorMessage(r));
  PQclear(r);
}

static void drain(const char *what) {
  PGresult *r;
  while ((r = PQgetResult(conn)) != NULL) {
    printf("%s: %s %d\n", what, PQresStatus(PQresultStatus(r)), PQntuples(r));
    PQclear(r);
  }
}

int main(int argc, char **argv) {
  conn = PQconnectdb(argc > 1 ? argv[1] : "");
  if (PQstatus(conn) != CONNECTION_OK) {
    fprintf(stderr, "connect: %s", PQerrorMessage(conn));
    return 1;
  }
  for (int i = 0; i < 3; i++) {
    if (!PQsendQuery(conn, "SELECT g AS single FROM generate_series(1, 50) AS g")) return 1;
    if (!PQsetSingleRowMode(conn)) return 1;
    int rows = 0;
    PGresult *r;
    while ((r = PQgetResult(conn)) != NULL) {
      if (PQresultStatus(r) == PGRES_SINGLE_TUPLE) rows++;
      PQclear(r);
    }
    printf("single-row: %d rows\n", rows);
  }
  for (int i = 0; i < 4; i++) {
    char v[16];
    snprintf(v, sizeof v, "%d", i);
    const char *vals[1] = {v};
    PGresult *r = PQexecParams(conn, "SELECT $1::int + 1 AS params", 1, NULL, vals, NULL, NULL, 0);
    printf("params: %s\n", PQgetvalue(r, 0, 0));
    PQclear(r);
  }
  PGresult *r = PQprepare(conn, "stmt1", "SELECT $1::int * 2 AS prepared", 1, NULL);
  printf("prepare: %s\n", PQresStatus(PQresultStatus(r)));
  PQclear(r);
  r = PQdescribePrepared(conn, "stmt1");
  printf("describe: %d params\n", PQnparams(r));
  PQclear(r);
  for (int i = 0; i < 5; i++) {
    const char *vals[1] = {"21"};
    r = PQexecPrepared(conn, "stmt1", 1, vals, NULL, NULL, 0);
    printf("prepared: %s\n", PQgetvalue(r, 0, 0));
    PQclear(r);
  }
  if (!PQenterPipelineMode(conn)) return 1;
  PQsendQueryParams(conn, "SELECT 1 AS pipe_ok", 0, NULL, NULL, NULL, NULL, 0);
  PQsendQueryParams(conn, "SELECT 1/0 AS pipe_fails", 0, NULL, NULL, NULL, NULL, 0);
  PQsendQueryParams(conn, "SELECT 3 AS pipe_skipped", 0, NULL, NULL, NULL, NULL, 0);
  PQpipelineSync(conn);
  for (int q = 0; q < 3; q++) drain("pipeline");
  r = PQgetResult(conn); /* the sync */
  printf("sync: %s\n", PQresStatus(PQresultStatus(r)));
  PQclear(r);
  PQexitPipelineMode(conn);
  if (!PQsendQuery(conn, "SELECT 1 AS m1; SELECT 2 AS m2; SELECT 3 AS m3")) return 1;
  drain("multi");
  PGconn *c2 = PQconnectdb(argc > 1 ? argv[1] : "");
  if (PQstatus(c2) != CONNECTION_OK) return 1;
  prepare(conn, "s", "SELECT $1::int + 10 AS on_first");
  prepare(c2, "s", "SELECT $1::int + 20 AS on_second");
  prepare(conn, "t", "SELECT $1::int + 30 AS other_name");
  for (int i = 0; i < 6; i++) {
    execute(conn, "s", i);
    execute(c2, "s", i);
    execute(conn, "t", i);
  }
  PQfinish(c2);
  PGconn *c3 = PQconnectdb(argc > 1 ? argv[1] : "");
  if (PQstatus(c3) != CONNECTION_OK) return 1;
  prepare(c3, "s", "SELECT $1::int + 40 AS after_reconnect");
  for (int i = 0; i < 3; i++) execute(c3, "s", i);
  PQfinish(c3);
  PQfinish(conn);
  return 0;
}
