/*
 * The PostgreSQL profile store: one database that the hosts of a fleet flush
 * into, with the tables of the SQLite store in a schema of their own
 * ("qprof", sql/store_schema_pg.sql).
 *
 * Rows are merged by the writer inside its transaction: INSERT ... ON
 * CONFLICT DO UPDATE with a no-op update that locks an existing row and
 * returns its values, a merge in C (the same qp__stats_merge as everywhere),
 * then UPDATE. Every flush touches
 * keys in one global order (level, then fingerprint, backend, database,
 * bucket), so concurrent flushers wait for each other but never deadlock.
 * A database whose "qprof" schema is not a qprof store is refused untouched.
 *
 * A role without UPDATE (schema version 7) appends instead: its flush
 * INSERTs its deltas into qp_stats_delta / qp_dropped_delta and its texts
 * with ON CONFLICT DO NOTHING. Every read merges the deltas with the
 * compacted rows; a compaction (a role with UPDATE and DELETE) takes deltas
 * out with DELETE ... RETURNING and merges them in with the same upserts, in
 * one transaction, so that each delta is counted once, before or after.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_int.h"

qp__pq_table qp__pq;
static char pq_load_error[256];
static pthread_once_t pq_once = PTHREAD_ONCE_INIT;

static void pq_load_once(void) {
  void *h = dlopen("libpq.so.5", RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    const char *e = dlerror();
    snprintf(pq_load_error, sizeof pq_load_error, "cannot load libpq.so.5: %s", e ? e : "?");
    return;
  }
#define QP_PQ_LOAD_(name)                                                                  \
  if ((qp__pq.name = (__typeof__(name) *)dlsym(h, #name)) == NULL) {                            \
    snprintf(pq_load_error, sizeof pq_load_error, "libpq.so.5 has no %s", #name);          \
    return;                                                                                 \
  }
  QP_PQ_FUNCTIONS(QP_PQ_LOAD_)
#undef QP_PQ_LOAD_
}

/* Loads libpq once per process; false (with the reason) when it cannot be. */
static bool pq_load(const char **why) {
  pthread_once(&pq_once, pq_load_once);
  *why = pq_load_error;
  return pq_load_error[0] == '\0';
}

/* The library never prints: server notices are dropped. */
static void pg_notice(void *arg, const char *message) {
  (void)arg;
  (void)message;
}

qp_status qp__pg_fail(qp_store *s, PGresult *r, qp_status code, const char *what) {
  pg_store *g = s->impl;
  const char *msg = r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(g->conn);
  int len = (int)strlen(msg);
  while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' ')) len--;
  return qp__err_set(&s->err, code, "%s: %s: %.*s", s->display, what, len, msg);
}

/* Returns `r` when its status is `want`; otherwise sets the error (a lost
 * connection is QP_UNAVAILABLE, anything else QP_IO), clears it and returns NULL. */
static PGresult *pg_check(qp_store *s, PGresult *r, ExecStatusType want, const char *what) {
  if (r != NULL && PQresultStatus(r) == want) return r;
  pg_store *g = s->impl;
  const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  snprintf(g->sqlstate, sizeof g->sqlstate, "%s", state != NULL ? state : "");
  /* the server going away says so with 57P01 (shutdown), 57P03
   * (starting up) or class 08 before libpq sees the connection close */
  bool away = PQstatus(g->conn) == CONNECTION_BAD || strncmp(g->sqlstate, "57P", 3) == 0 ||
              strncmp(g->sqlstate, "08", 2) == 0;
  qp__pg_fail(s, r, away ? QP_UNAVAILABLE : QP_IO, what);
  PQclear(r);
  return NULL;
}

/* Runs a statement prepared by prepare_writes. */
PGresult *qp__pg_run_prepared(qp_store *s, const char *name, int n, const char *const *vals,
                              const int *lens, const int *fmts, ExecStatusType want,
                              const char *what) {
  pg_store *g = s->impl;
  return pg_check(s, PQexecPrepared(g->conn, name, n, vals, lens, fmts, 0), want, what);
}

/* Runs a statement with text parameters (bytea ones in binary: lens != NULL
 * marks them with len >= 0 and fmts 1). Returns the result when its status
 * is `want`; otherwise sets the error, clears it and returns NULL. */
PGresult *qp__pg_run(qp_store *s, const char *sql, int n, const char *const *vals, const int *lens,
                     const int *fmts, ExecStatusType want, const char *what) {
  pg_store *g = s->impl;
  PGresult *r = n == 0 && lens == NULL ? PQexec(g->conn, sql)
                                       : PQexecParams(g->conn, sql, n, NULL, vals, lens, fmts, 0);
  return pg_check(s, r, want, what);
}

qp_status qp__pg_cmd(qp_store *s, const char *sql, const char *what) {
  PGresult *r = qp__pg_run(s, sql, 0, NULL, NULL, NULL, PGRES_COMMAND_OK, what);
  if (r == NULL) return s->err.code;
  PQclear(r);
  return QP_OK;
}

static void pg_close(qp_store *s) {
  pg_store *g = s->impl;
  if (g == NULL) return;
  PQfinish(g->conn);
  qp__free(&s->hooks, g);
  s->impl = NULL;
}

/* What the database holds: 0 nothing of ours, 1 a "qprof" schema without
 * qp_meta, 2 qp_meta present. */
static qp_status probe(qp_store *s, int *state) {
  PGresult *r = qp__pg_run(s,
                           "SELECT to_regclass('qprof.qp_meta') IS NOT NULL, "
                           "EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'qprof')",
                           0, NULL, NULL, NULL, PGRES_TUPLES_OK, "cannot inspect the database");
  if (r == NULL) return s->err.code;
  bool meta = PQgetvalue(r, 0, 0)[0] == 't', schema = PQgetvalue(r, 0, 1)[0] == 't';
  PQclear(r);
  *state = meta ? 2 : schema ? 1 : 0;
  return QP_OK;
}

static qp_status verify(qp_store *s, long *version) {
  PGresult *r =
      qp__pg_run(s,
                 "SELECT (SELECT value FROM qprof.qp_meta WHERE key = 'magic'), "
                 "(SELECT value FROM qprof.qp_meta WHERE key = 'schema_version')",
                 0, NULL, NULL, NULL, PGRES_TUPLES_OK, "cannot read the store's metadata");
  if (r == NULL) return s->err.code;
  bool magic = !PQgetisnull(r, 0, 0) && strcmp(PQgetvalue(r, 0, 0), "qprof profile store") == 0;
  long ver = PQgetisnull(r, 0, 1) ? 0 : strtol(PQgetvalue(r, 0, 1), NULL, 10);
  PQclear(r);
  if (!magic || ver < 1)
    return qp__err_set(&s->err, QP_NOTSTORE,
                       "%s: schema \"qprof\" is not a qprof store (no qprof magic); refusing to "
                       "touch it",
                       s->display);
  if (ver > QP_STORE_SCHEMA_VERSION)
    return qp__err_set(&s->err, QP_SCHEMA,
                       "%s: store schema version %ld is newer than this qprof (%d); upgrade qprof",
                       s->display, ver, QP_STORE_SCHEMA_VERSION);
  *version = ver;
  return QP_OK;
}

/* BEGIN, then the store's creation lock: hosts that create or migrate the
 * store at once wait for each other, and each looks again once it holds
 * the lock. */
static qp_status begin_locked(qp_store *s, const char *what) {
  qp_status rc = qp__pg_cmd(s, "BEGIN", what);
  if (rc != QP_OK) return rc;
  PGresult *r = qp__pg_run(s, "SELECT pg_advisory_xact_lock(1903194726)", 0, NULL, NULL, NULL,
                           PGRES_TUPLES_OK, "cannot lock");
  if (r == NULL) return s->err.code;
  PQclear(r);
  return QP_OK;
}

/* Runs an embedded schema script (several statements) in the open
 * transaction. */
static qp_status run_script(qp_store *s, const char *sql, const char *what) {
  PGresult *c = PQexec(((pg_store *)s->impl)->conn, sql);
  qp_status rc = QP_OK;
  if (c == NULL || PQresultStatus(c) != PGRES_COMMAND_OK) {
    const char *state = c != NULL ? PQresultErrorField(c, PG_DIAG_SQLSTATE) : NULL;
    if (state != NULL && strcmp(state, "42501") == 0) {
      /* insufficient_privilege: a writer role (INSERT, SELECT, UPDATE) may
       * write a store but neither create nor migrate one; the transaction
       * is rolled back whole, so the store is left as it was. */
      qp__pg_fail(s, c, QP_REFUSED, what);
      char msg[sizeof s->err.msg];
      snprintf(msg, sizeof msg, "%s", s->err.msg);
      rc = qp__err_set(&s->err, QP_REFUSED,
                       "%s (creating or migrating the store to schema version %d needs the owner "
                       "of schema \"qprof\", or CREATE on the database for a new store; run "
                       "qprof once as that role; nothing was changed)",
                       msg, QP_STORE_SCHEMA_VERSION);
    } else {
      rc = qp__pg_fail(s, c, QP_IO, what);
    }
  }
  PQclear(c);
  return rc;
}

/* Takes a store at version `ver` to QP_STORE_SCHEMA_VERSION with the
 * migrations of sql/migrations_pg/, in one transaction under the creation
 * lock, looking at the version again once the lock is held (another host
 * may have migrated meanwhile). */
static qp_status migrate(qp_store *s, long ver) {
  pg_store *g = s->impl;
  qp_status rc = begin_locked(s, "cannot begin a migration");
  if (rc == QP_OK) rc = verify(s, &ver);
  long from = ver;
  for (long v = ver + 1; rc == QP_OK && v <= QP_STORE_SCHEMA_VERSION; v++) {
    const char *sql = NULL;
    for (int i = 0; i < qp__store_nmigrations_pg; i++)
      if (qp__store_migrations_pg_version[i] == v) sql = qp__store_migrations_pg[i];
    if (sql == NULL) {
      rc = qp__err_set(&s->err, QP_SCHEMA,
                       "%s: store schema version %ld has no PostgreSQL migration to %ld",
                       s->display, v - 1, v);
      break;
    }
    rc = run_script(s, sql, "cannot migrate the store");
  }
  if (rc == QP_OK) rc = qp__pg_cmd(s, "COMMIT", "cannot commit the migration");
  if (rc != QP_OK) {
    PQclear(PQexec(g->conn, "ROLLBACK"));
    return rc;
  }
  if (from < QP_STORE_SCHEMA_VERSION)
    qp__log(&s->hooks, QP_LOG_INFO, "%s: migrated store schema from version %ld to %d",
            s->display, from, QP_STORE_SCHEMA_VERSION);
  return verify(s, &g->version);
}

/* s->levels_from from the store's meta row (see QP_META_LEVELS_FROM); none
 * in a store older than version 10. */
static qp_status read_levels_from(qp_store *s) {
  s->levels_from = INT64_MAX;
  if (((pg_store *)s->impl)->version < 10) return QP_OK;
  PGresult *r = qp__pg_run(s,
                           "SELECT value FROM qprof.qp_meta WHERE key = '" QP_META_LEVELS_FROM "'",
                           0, NULL, NULL, NULL, PGRES_TUPLES_OK, "cannot read the store's metadata");
  if (r == NULL) return s->err.code;
  if (PQntuples(r) == 1) s->levels_from = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return QP_OK;
}

/* Which write path this connection's role takes (schema version 7), asked
 * once per connection: without UPDATE on a table a flush merges into, the
 * flush appends deltas (INSERT and SELECT are then enough); with UPDATE
 * there and DELETE on the delta tables, it merges and, after its flush,
 * folds in a bounded batch of the deltas others appended. */
static qp_status check_privileges(qp_store *s) {
  pg_store *g = s->impl;
  g->append_only = g->compactor = false;
  if (s->mode != QP_STORE_WRITE || g->version < 7) return QP_OK;
  PGresult *r =
      qp__pg_run(s,
                 "SELECT has_table_privilege('qprof.qp_stats', 'UPDATE') AND "
                 "has_table_privilege('qprof.qp_query', 'UPDATE') AND "
                 "has_table_privilege('qprof.qp_dropped', 'UPDATE') AND "
                 "has_table_privilege('qprof.qp_ingest_file', 'UPDATE'), "
                 "has_table_privilege('qprof.qp_stats_delta', 'DELETE') AND "
                 "has_table_privilege('qprof.qp_dropped_delta', 'DELETE') AND "
                 "(to_regclass('qprof.qp_query_delta') IS NULL OR "
                 "has_table_privilege('qprof.qp_query_delta', 'DELETE'))",
                 0, NULL, NULL, NULL, PGRES_TUPLES_OK, "cannot read the role's privileges");
  if (r == NULL) return s->err.code;
  bool upd = PQgetvalue(r, 0, 0)[0] == 't', del = PQgetvalue(r, 0, 1)[0] == 't';
  PQclear(r);
  g->append_only = !upd;
  g->compactor = upd && del;
  return QP_OK;
}

/* How long a connection attempt may take (s) when neither the location
 * (connect_timeout) nor PGCONNECT_TIMEOUT says: a store that is down or
 * unreachable never holds a collector for longer (docs/architecture.md,
 * "The fleet store"). */
#define QP_PG_CONNECT_TIMEOUT "5"

/* Connects g->conn to s->location (TLS, passwords, .pgpass, service files:
 * all as libpq does them). QP_UNAVAILABLE when the server cannot be reached. */
static qp_status pg_connect(qp_store *s, const char *what) {
  pg_store *g = s->impl;
  const char *env = getenv("PGCONNECT_TIMEOUT");
  /* The location comes after the default, so its own connect_timeout wins. */
  /* A server that vanishes mid-statement (a network cut, not a stop):
   * keepalives notice an idle wait, tcp_user_timeout (libpq 12 and later)
   * data never acknowledged; a healthy server answering slowly trips
   * neither. */
  const char *keys[] = {"connect_timeout", "keepalives_idle", "keepalives_interval",
                        "keepalives_count", "dbname", "tcp_user_timeout", NULL, NULL};
  const char *vals[] = {env != NULL && env[0] != '\0' ? env : QP_PG_CONNECT_TIMEOUT,
                        "30", "10", "3", s->location, NULL, NULL, NULL};
  if (PQlibVersion() >= 120000) {
    /* before the location, so that the location's own setting wins */
    keys[4] = "tcp_user_timeout", vals[4] = "30000";
    keys[5] = "dbname", vals[5] = s->location;
  } else {
    keys[5] = NULL;
  }
  g->conn = PQconnectdbParams(keys, vals, 1);
  g->prepared = false;
  if (g->conn == NULL) return qp__err_set(&s->err, QP_NOMEM, "out of memory");
  if (PQstatus(g->conn) != CONNECTION_OK) return qp__pg_fail(s, NULL, QP_UNAVAILABLE, what);
  PQsetNoticeProcessor(g->conn, pg_notice, NULL);
  return QP_OK;
}

static qp_status pg_open(qp_store *s, qp_store_mode mode) {
  const char *why;
  if (!pq_load(&why)) return qp__err_set(&s->err, QP_UNAVAILABLE, "%s: %s", s->display, why);
  pg_store *g = qp__calloc(&s->hooks, 1, sizeof *g);
  if (g == NULL) return qp__err_set(&s->err, QP_NOMEM, "out of memory");
  s->impl = g;
  qp_status crc = pg_connect(s, "cannot connect");
  if (crc != QP_OK) {
    pg_close(s);
    return crc;
  }
  int state = 0;
  qp_status rc = probe(s, &state);
  if (rc == QP_OK && state == 0 && mode == QP_STORE_READ)
    rc = qp__err_set(&s->err, QP_NOTFOUND, "%s: no qprof store in this database", s->display);
  if (rc == QP_OK && state == 1)
    rc = qp__err_set(&s->err, QP_NOTSTORE,
                     "%s: schema \"qprof\" exists but is not a qprof store; refusing to touch it",
                     s->display);
  if (rc == QP_OK && state == 0) {
    /* Several hosts may create at once: one advisory lock, then look again. */
    rc = begin_locked(s, "cannot begin");
    if (rc == QP_OK) rc = probe(s, &state);
    if (rc == QP_OK && state == 0) rc = run_script(s, qp__store_schema_pg, "cannot create the store");
    if (rc == QP_OK) rc = qp__pg_cmd(s, "COMMIT", "cannot commit the schema");
    if (rc != QP_OK) PQclear(PQexec(g->conn, "ROLLBACK"));
  }
  if (rc == QP_OK) rc = verify(s, &g->version);
  if (rc == QP_OK && mode == QP_STORE_WRITE && g->version < QP_STORE_SCHEMA_VERSION)
    rc = migrate(s, g->version);
  if (rc == QP_OK) rc = check_privileges(s);
  if (rc == QP_OK) rc = read_levels_from(s);
  if (rc == QP_OK && mode == QP_STORE_READ)
    rc = qp__pg_cmd(s, "SET default_transaction_read_only = on", "cannot set read-only");
  /* The store's statements are simple index scans; JIT-compiling a big
   * window's (1.2M rows) cost 150 ms of its 4.5 s on the server. Best
   * effort: a server without JIT has no such setting. */
  if (rc == QP_OK && mode == QP_STORE_READ) PQclear(PQexec(g->conn, "SET jit = off"));
  if (rc != QP_OK) pg_close(s);
  return rc;
}

/* A fresh connection after the old one broke: the write statements are
 * prepared again and the store is looked at again (it may have been
 * replaced while the server was away). */
qp_status qp__pg_reconnect(qp_store *s) {
  pg_store *g = s->impl;
  PQfinish(g->conn);
  g->conn = NULL;
  qp_status rc = pg_connect(s, "cannot reconnect");
  long ver = 0;
  if (rc == QP_OK) rc = verify(s, &ver);
  if (rc == QP_OK && ver != g->version)
    rc = qp__err_set(&s->err, QP_SCHEMA,
                     "%s: the store's schema version changed from %ld to %ld while the "
                     "connection was away; open it again",
                     s->display, g->version, ver);
  if (rc == QP_OK) rc = check_privileges(s);
  return rc;
}

bool qp__pg_conn_broken(qp_store *s) {
  pg_store *g = s->impl;
  return g->conn == NULL || PQstatus(g->conn) == CONNECTION_BAD;
}

/* ---- rows ----------------------------------------------------------------- */

int qp__pg_entry_order(const void *a, const void *b) {
  const qp_entry *x = *(const qp_entry *const *)a, *y = *(const qp_entry *const *)b;
  if (x->fingerprint != y->fingerprint) return x->fingerprint < y->fingerprint ? -1 : 1;
  if (x->backend != y->backend) return x->backend < y->backend ? -1 : 1;
  int c = strcmp(x->database, y->database);
  if (c == 0) c = strcmp(x->user, y->user);
  if (c == 0) c = strcmp(x->application, y->application);
  if (c == 0) c = strcmp(x->host, y->host);
  if (c != 0) return c;
  return x->bucket < y->bucket ? -1 : x->bucket > y->bucket;
}

/* Reads the stats columns of a row (from column `c0`; the cache hit columns
 * from `hc`) into *st. */
qp_status qp__pg_row_stats(qp_store *s, PGresult *r, int row, int c0, int hc, qp_stats *st) {
  st->cache_hits = strtoull(PQgetvalue(r, row, hc), NULL, 10);
  st->cache_hit_ns = strtoull(PQgetvalue(r, row, hc + 1), NULL, 10);
  st->calls = strtoull(PQgetvalue(r, row, c0), NULL, 10);
  st->errors = strtoull(PQgetvalue(r, row, c0 + 1), NULL, 10);
  qp_status rc = qp__codes_decode_add(&st->codes, &s->hooks, PQgetvalue(r, row, c0 + 2),
                                      (size_t)PQgetlength(r, row, c0 + 2));
  st->rows = strtoll(PQgetvalue(r, row, c0 + 3), NULL, 10);
  st->total_ns = strtoull(PQgetvalue(r, row, c0 + 4), NULL, 10);
  st->min_ns = strtoull(PQgetvalue(r, row, c0 + 5), NULL, 10);
  st->max_ns = strtoull(PQgetvalue(r, row, c0 + 6), NULL, 10);
  st->m2 = strtod(PQgetvalue(r, row, c0 + 7), NULL);
  st->first_ns = strtoll(PQgetvalue(r, row, c0 + 8), NULL, 10);
  st->last_ns = strtoll(PQgetvalue(r, row, c0 + 9), NULL, 10);
  qp__stats_set_mean(st);
  if (rc == QP_OK) {
    size_t blen = 0;
    unsigned char *blob =
        PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, c0 + 10), &blen);
    if (blob == NULL) return qp__err_set(&s->err, QP_NOMEM, "out of memory");
    rc = qp__hist_decode_add(&st->hist, &s->hooks, blob, blen);
    PQfreemem(blob);
  }
  if (rc == QP_SYNTAX)
    return qp__err_set(&s->err, QP_IO, "%s: malformed statistics row", s->display);
  if (rc == QP_NOMEM) return qp__err_set(&s->err, QP_NOMEM, "out of memory");
  return QP_OK;
}

qp_status qp__pg_parse_row(qp_store *s, PGresult *r, int i, qp_entry *row) {
  memset(row, 0, sizeof *row);
  qp__stats_init(&row->st);
  row->fingerprint = (uint64_t)strtoll(PQgetvalue(r, i, 0), NULL, 10);
  row->backend =
      strcmp(PQgetvalue(r, i, 1), "sqlite") == 0 ? QP_BACKEND_SQLITE : QP_BACKEND_POSTGRES;
  row->database = PQgetvalue(r, i, 2);
  row->user = PQgetvalue(r, i, 17);
  row->application = PQgetvalue(r, i, 18);
  row->host = PQgetvalue(r, i, 19);
  row->bucket = strtoll(PQgetvalue(r, i, 14), NULL, 10);
  return qp__pg_row_stats(s, r, i, 3, 15, &row->st);
}

bool qp__pg_same_key(const qp_entry *a, const qp_entry *b) {
  return a->bucket == b->bucket && a->fingerprint == b->fingerprint && a->backend == b->backend &&
         strcmp(a->database, b->database) == 0 && strcmp(a->user, b->user) == 0 &&
         strcmp(a->application, b->application) == 0 && strcmp(a->host, b->host) == 0;
}

const qp_store_ops qp__pg_store_ops = {
    .prune = qp__pg_prune,
    .dropped = qp__pg_dropped,
    .name = "postgres",
    .open = pg_open,
    .close = pg_close,
    .write = qp__pg_write,
    .bucket_range = qp__pg_bucket_range,
    .scan = qp__pg_scan,
    .bucket_before = qp__pg_bucket_before,
    .bucket_last_seen = qp__pg_bucket_last_seen,
    .query_text = qp__pg_query_text,
    .query_texts = qp__pg_query_texts,
    .marks_find = qp__pg_marks_find,
    .resolve = qp__pg_resolve,
    .xact_status = qp__pg_xact_status,
    .compact = qp__pg_compact,
    .advice_put = qp__pg_advice_put,
    .advice_each = qp__pg_advice_each,
};
