/*
 * Helpers shared by the tests that run against PostgreSQL: statements on a
 * connection of their own (libpq, one connection a call), pools and leases
 * that fail the test when a statement fails, a database of the test's own on
 * the fixture cluster, and a private cluster for the tests that stop and
 * start their server. The fixture's connection comes from qpt_pg_dsn().
 */
#ifndef QP_PGTEST_H
#define QP_PGTEST_H

#include <stddef.h>

#include "testutil.h"

/* ---- one connection a call (libpq) ---------------------------------------------- */

/* Runs `sql` (one statement or several, as one simple query) on a connection
 * of its own to `dsn`. Returns 0, or -1 with the server's message printed: for
 * a cmocka setup or teardown, which must not fail the test itself. */
int qpt_pg_try(const char *dsn, const char *sql);
/* The same, failing the test when the connection or the statement fails. */
void qpt_pg_exec(const char *dsn, const char *sql);
/* The first value of the first row `sql` returns on `dsn` as text ("<none>"
 * when there is no row, "<null>" for NULL), in a static buffer that the next
 * 7 calls leave alone; fails the test when the query fails. */
const char *qpt_pg_value(const char *dsn, const char *sql);
/* "host=... port=... user=USER dbname=DB" of the fixture cluster into buf
 * (USER NULL: the fixture's superuser, PGUSER). */
void qpt_pg_dsn_as(char *buf, size_t n, const char *user, const char *db);

/* ---- a database of the test's own ------------------------------------------------ */

typedef struct qpt_pgdb {
  char name[64];
  char dsn[512]; /* as the fixture's superuser */
} qpt_pgdb;

/* Creates the database named by fmt (a test puts its pid in it, so that two
 * runs never meet) on the fixture cluster and fills db. Returns 0, or -1 with
 * the message printed (call it from a cmocka setup). */
int qpt_pgdb_create(qpt_pgdb *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops it (WITH (FORCE): leases a failed test left open do not keep it);
 * nothing when it was never made. Returns 0, or -1 with the message printed. */
int qpt_pgdb_drop(const qpt_pgdb *db);

/* ---- pools and leases: a failure fails the test ---------------------------------- */

/* qp_pool_options_init's defaults with an acquire timeout of 5 s instead of
 * 30 s, so that a test that keeps a lease too long fails quickly. */
void qpt_pool_options_init(qp_pool_options *o);
/* Opens a pool on `dsn` with at most `max` connections and `cache` (NULL:
 * the options' own), from the options `o` (NULL: qpt_pool_options_init's);
 * fails the test when it cannot be opened. The caller closes it. */
qp_pool *qpt_pool_open(const char *dsn, int max, qp_cache *cache, const qp_pool_options *o);
/* qp_conn_exec_script, failing the test with the lease's message. */
void qpt_script(qp_conn *c, const char *sql);
/* qp_conn_exec without a result, failing the test with the lease's message. */
void qpt_exec(qp_conn *c, const char *sql);
/* The first value of the first row `sql` returns on the lease as text
 * ("<none>" when there is no row, "<null>" for NULL), in a static buffer that
 * the next 7 calls leave alone; fails the test when the statement fails. */
const char *qpt_value(qp_conn *c, const char *sql);

/* ---- a private cluster ----------------------------------------------------------- */

typedef struct qpt_pgcluster {
  char script[512]; /* tests/support/pgcluster.sh */
  char env[512];    /* its env file, in the build directory */
  char dsn[512];    /* the superuser's, database postgres */
} qpt_pgcluster;

/* Starts a cluster of the test's own on `port` (tests/support/pgcluster.sh,
 * env file "<build>/<name>_<pid>.env") for a test that stops, starts or
 * promotes its server, which the shared fixture must never see. Returns 0,
 * or -1 when it did not start. */
int qpt_pgcluster_start(qpt_pgcluster *pc, const char *name, int port);
/* Runs pgcluster.sh `action` (stop, serverstop, serverstart, standby,
 * promote, freeze, thaw) on it; returns the script's exit status. */
int qpt_pgcluster_do(const qpt_pgcluster *pc, const char *action);

#endif
