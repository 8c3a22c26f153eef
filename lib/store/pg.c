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
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store_int.h"

/*
 * libpq is loaded when a PostgreSQL store is first opened, not linked: the
 * LD_PRELOAD shim carries this code into every process it is preloaded in
 * (sh, pagers, ...), and linking libpq would load it and its twenty-odd
 * dependencies (TLS, Kerberos, LDAP) into all of them. Calls go through this
 * table; the macros below keep the code reading as plain libpq. In a process
 * that already has libpq, dlopen returns that copy.
 */
#define QP_PQ_FUNCTIONS(X) \
  X(PQclear) \
  X(PQconnectdbParams) \
  X(PQerrorMessage) \
  X(PQexec) \
  X(PQexecParams) \
  X(PQexecPrepared) \
  X(PQfinish) \
  X(PQfreemem) \
  X(PQgetisnull) \
  X(PQgetlength) \
  X(PQgetvalue) \
  X(PQlibVersion) \
  X(PQntuples) \
  X(PQprepare) \
  X(PQresultErrorField) \
  X(PQresultErrorMessage) \
  X(PQresultStatus) \
  X(PQsetNoticeProcessor) \
  X(PQstatus) \
  X(PQunescapeBytea)

static struct {
#define QP_PQ_FIELD_(name) __typeof__(name) *name;
  QP_PQ_FUNCTIONS(QP_PQ_FIELD_)
#undef QP_PQ_FIELD_
} pq;
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
  if ((pq.name = (__typeof__(name) *)dlsym(h, #name)) == NULL) {                            \
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

#define PQclear (pq.PQclear)
#define PQconnectdbParams (pq.PQconnectdbParams)
#define PQerrorMessage (pq.PQerrorMessage)
#define PQexec (pq.PQexec)
#define PQexecParams (pq.PQexecParams)
#define PQexecPrepared (pq.PQexecPrepared)
#define PQfinish (pq.PQfinish)
#define PQfreemem (pq.PQfreemem)
#define PQgetisnull (pq.PQgetisnull)
#define PQgetlength (pq.PQgetlength)
#define PQgetvalue (pq.PQgetvalue)
#define PQlibVersion (pq.PQlibVersion)
#define PQntuples (pq.PQntuples)
#define PQprepare (pq.PQprepare)
#define PQresultErrorField (pq.PQresultErrorField)
#define PQresultErrorMessage (pq.PQresultErrorMessage)
#define PQresultStatus (pq.PQresultStatus)
#define PQsetNoticeProcessor (pq.PQsetNoticeProcessor)
#define PQstatus (pq.PQstatus)
#define PQunescapeBytea (pq.PQunescapeBytea)

typedef struct pg_store {
  PGconn *conn;
  bool prepared; /* the write statements are prepared on this connection */
  long version;  /* the store's schema version (an older one is read as it is) */
  char sqlstate[6]; /* of the last failed statement; "" when none came */
  int64_t doubt_xid; /* the transaction whose COMMIT got no answer (s->in_doubt) */
  bool append_only;  /* the role lacks UPDATE: flushes append deltas (see top) */
  bool compactor;    /* the role may fold deltas in (UPDATE, DELETE): it does after a flush */
} pg_store;

/* The library never prints: server notices are dropped. */
static void pg_notice(void *arg, const char *message) {
  (void)arg;
  (void)message;
}

static qp_status pg_fail(qp_store *s, PGresult *r, qp_status code, const char *what) {
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
  pg_fail(s, r, away ? QP_UNAVAILABLE : QP_IO, what);
  PQclear(r);
  return NULL;
}

/* Runs a statement prepared by prepare_writes. */
static PGresult *pg_run_prepared(qp_store *s, const char *name, int n, const char *const *vals,
                                 const int *lens, const int *fmts, ExecStatusType want,
                                 const char *what) {
  pg_store *g = s->impl;
  return pg_check(s, PQexecPrepared(g->conn, name, n, vals, lens, fmts, 0), want, what);
}

/* Runs a statement with text parameters (bytea ones in binary: lens != NULL
 * marks them with len >= 0 and fmts 1). Returns the result when its status
 * is `want`; otherwise sets the error, clears it and returns NULL. */
static PGresult *pg_run(qp_store *s, const char *sql, int n, const char *const *vals,
                        const int *lens, const int *fmts, ExecStatusType want, const char *what) {
  pg_store *g = s->impl;
  PGresult *r = n == 0 && lens == NULL ? PQexec(g->conn, sql)
                                       : PQexecParams(g->conn, sql, n, NULL, vals, lens, fmts, 0);
  return pg_check(s, r, want, what);
}

static qp_status pg_cmd(qp_store *s, const char *sql, const char *what) {
  PGresult *r = pg_run(s, sql, 0, NULL, NULL, NULL, PGRES_COMMAND_OK, what);
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
  PGresult *r = pg_run(s,
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
  PGresult *r = pg_run(s,
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
  qp_status rc = pg_cmd(s, "BEGIN", what);
  if (rc != QP_OK) return rc;
  PGresult *r = pg_run(s, "SELECT pg_advisory_xact_lock(1903194726)", 0, NULL, NULL, NULL,
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
      pg_fail(s, c, QP_REFUSED, what);
      char msg[sizeof s->err.msg];
      snprintf(msg, sizeof msg, "%s", s->err.msg);
      rc = qp__err_set(&s->err, QP_REFUSED,
                       "%s (creating or migrating the store to schema version %d needs the owner "
                       "of schema \"qprof\", or CREATE on the database for a new store; run "
                       "qprof once as that role; nothing was changed)",
                       msg, QP_STORE_SCHEMA_VERSION);
    } else {
      rc = pg_fail(s, c, QP_IO, what);
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
  if (rc == QP_OK) rc = pg_cmd(s, "COMMIT", "cannot commit the migration");
  if (rc != QP_OK) {
    PQclear(PQexec(g->conn, "ROLLBACK"));
    return rc;
  }
  if (from < QP_STORE_SCHEMA_VERSION)
    qp__log(&s->hooks, QP_LOG_INFO, "%s: migrated store schema from version %ld to %d",
            s->display, from, QP_STORE_SCHEMA_VERSION);
  return verify(s, &g->version);
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
  PGresult *r = pg_run(s,
                       "SELECT has_table_privilege('qprof.qp_stats', 'UPDATE') AND "
                       "has_table_privilege('qprof.qp_query', 'UPDATE') AND "
                       "has_table_privilege('qprof.qp_dropped', 'UPDATE') AND "
                       "has_table_privilege('qprof.qp_ingest_file', 'UPDATE'), "
                       "has_table_privilege('qprof.qp_stats_delta', 'DELETE') AND "
                       "has_table_privilege('qprof.qp_dropped_delta', 'DELETE')",
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
  if (PQstatus(g->conn) != CONNECTION_OK) return pg_fail(s, NULL, QP_UNAVAILABLE, what);
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
    if (rc == QP_OK) rc = pg_cmd(s, "COMMIT", "cannot commit the schema");
    if (rc != QP_OK) PQclear(PQexec(g->conn, "ROLLBACK"));
  }
  if (rc == QP_OK) rc = verify(s, &g->version);
  if (rc == QP_OK && mode == QP_STORE_WRITE && g->version < QP_STORE_SCHEMA_VERSION)
    rc = migrate(s, g->version);
  if (rc == QP_OK) rc = check_privileges(s);
  if (rc == QP_OK && mode == QP_STORE_READ)
    rc = pg_cmd(s, "SET default_transaction_read_only = on", "cannot set read-only");
  /* The store's statements are simple index scans; JIT-compiling a big
   * window's (1.2M rows) cost 150 ms of its 4.5 s on the server. Best
   * effort: a server without JIT has no such setting. */
  if (rc == QP_OK && mode == QP_STORE_READ) PQclear(PQexec(g->conn, "SET jit = off"));
  if (rc != QP_OK) pg_close(s);
  return rc;
}

/* ---- writing -------------------------------------------------------------- */

static int entry_order(const void *a, const void *b) {
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

/* Parameters of SQL_INS and SQL_UPD. */
#define NPARAMS 21

typedef struct nums {
  char v[NPARAMS][32];
} nums;

/* Inserts the row, or, when it exists, locks it with a no-op update and
 * returns its values (xmax = 0 tells a fresh insert): one round trip for a
 * new row, two (this and SQL_UPD) for a merge. */
static const char SQL_INS[] =
    "INSERT INTO qprof.qp_stats (level, bucket, fingerprint, backend, database, calls, errors, "
    "error_codes, rows, total_ns, min_ns, max_ns, m2, first_seen_ns, last_seen_ns, hist, "
    "cache_hits, cache_hit_ns, user_name, application, host) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, "
    "$19, $20, $21) "
    "ON CONFLICT (level, bucket, fingerprint, backend, database, user_name, application, host) "
    "DO UPDATE SET "
    "level = qp_stats.level RETURNING (xmax = 0), calls, errors, error_codes, rows, total_ns, "
    "min_ns, max_ns, m2, first_seen_ns, last_seen_ns, hist, cache_hits, cache_hit_ns";
static const char SQL_UPD[] =
    "UPDATE qprof.qp_stats SET calls = $6, errors = $7, error_codes = $8, rows = $9, "
    "total_ns = $10, min_ns = $11, max_ns = $12, m2 = $13, first_seen_ns = $14, "
    "last_seen_ns = $15, hist = $16, cache_hits = $17, cache_hit_ns = $18 "
    "WHERE level = $1 AND bucket = $2 AND fingerprint = $3 AND "
    "backend = $4 AND database = $5 AND user_name = $19 AND application = $20 AND host = $21";
static const char SQL_QUERY[] =
    "INSERT INTO qprof.qp_query (fingerprint, backend, query, sample, sample_ns, first_seen_ns, "
    "last_seen_ns) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (fingerprint) DO UPDATE SET "
    "first_seen_ns = LEAST(qp_query.first_seen_ns, excluded.first_seen_ns), "
    "last_seen_ns = GREATEST(qp_query.last_seen_ns, excluded.last_seen_ns), "
    "sample = CASE WHEN excluded.sample IS NOT NULL AND (qp_query.sample IS NULL OR "
    "excluded.sample_ns > qp_query.sample_ns) THEN excluded.sample ELSE qp_query.sample END, "
    "sample_ns = CASE WHEN excluded.sample IS NOT NULL AND (qp_query.sample IS NULL OR "
    "excluded.sample_ns > qp_query.sample_ns) THEN excluded.sample_ns ELSE qp_query.sample_ns END";

/* The append-only path (a role without UPDATE, see the top): one delta row
 * per key and level, and a text only when the fingerprint has none yet
 * (DO NOTHING needs INSERT alone; the first text and sample stay). */
static const char SQL_DELTA[] =
    "INSERT INTO qprof.qp_stats_delta (level, bucket, fingerprint, backend, database, calls, "
    "errors, error_codes, rows, total_ns, min_ns, max_ns, m2, first_seen_ns, last_seen_ns, hist, "
    "cache_hits, cache_hit_ns, user_name, application, host) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, "
    "$19, $20, $21)";
static const char SQL_QUERY_ONCE[] =
    "INSERT INTO qprof.qp_query (fingerprint, backend, query, sample, sample_ns, first_seen_ns, "
    "last_seen_ns) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (fingerprint) DO NOTHING";

/* Fills the NPARAMS parameters of SQL_INS / SQL_UPD for `st` at key (level, e). */
static bool stats_params(qp_store *s, int level, const qp_entry *e, const qp_stats *st, nums *n,
                         const char *vals[NPARAMS], int lens[NPARAMS], int fmts[NPARAMS], qp_buf *codes,
                         qp_buf *hist) {
  codes->len = hist->len = 0;
  codes->failed = hist->failed = false;
  if (!qp__codes_encode(&st->codes, codes) || !qp__hist_encode(&st->hist, hist)) {
    qp__err_set(&s->err, QP_NOMEM, "out of memory");
    return false;
  }
  snprintf(n->v[0], 32, "%d", level);
  snprintf(n->v[1], 32, "%lld", (long long)qp__level_bucket(level, e->bucket));
  snprintf(n->v[2], 32, "%lld", (long long)(int64_t)e->fingerprint);
  snprintf(n->v[5], 32, "%lld", (long long)st->calls);
  snprintf(n->v[6], 32, "%lld", (long long)st->errors);
  snprintf(n->v[8], 32, "%lld", (long long)st->rows);
  snprintf(n->v[9], 32, "%lld", (long long)st->total_ns);
  /* a row of cache hits alone has no minimum: the largest integer */
  snprintf(n->v[10], 32, "%lld", st->calls ? (long long)st->min_ns : (long long)INT64_MAX);
  snprintf(n->v[11], 32, "%lld", st->calls ? (long long)st->max_ns : 0LL);
  snprintf(n->v[12], 32, "%.17g", st->m2);
  snprintf(n->v[13], 32, "%lld", (long long)st->first_ns);
  snprintf(n->v[14], 32, "%lld", (long long)st->last_ns);
  snprintf(n->v[16], 32, "%lld", (long long)st->cache_hits);
  snprintf(n->v[17], 32, "%lld", (long long)st->cache_hit_ns);
  for (int i = 0; i < NPARAMS; i++) {
    vals[i] = n->v[i];
    lens[i] = 0;
    fmts[i] = 0;
  }
  vals[3] = qp_backend_name(e->backend);
  vals[4] = e->database ? e->database : "";
  vals[18] = e->user ? e->user : "";
  vals[19] = e->application ? e->application : "";
  vals[20] = e->host ? e->host : "";
  vals[7] = qp__buf_cstr(codes);
  vals[15] = hist->data;
  lens[15] = (int)hist->len;
  fmts[15] = 1;
  return true;
}

/* Reads the stats columns of a row (from column `c0`; the cache hit columns
 * from `hc`) into *st. */
static qp_status row_stats(qp_store *s, PGresult *r, int row, int c0, int hc, qp_stats *st) {
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

/* Appends the delta of `e` at `level` (the append-only path). */
/* Reads row i of a result with the columns of ROW_COLS into *row (the
 * strings point into r; row->st is initialized here, the caller frees it). */
#define ROW_COLS                                                                               \
  "fingerprint, backend, database, calls, errors, error_codes, rows, total_ns, min_ns, "       \
  "max_ns, m2, first_seen_ns, last_seen_ns, hist, bucket, cache_hits, cache_hit_ns, "          \
  "user_name, application, host"
#define ROW_KEY "bucket, fingerprint, backend, database, user_name, application, host"

static qp_status parse_row(qp_store *s, PGresult *r, int i, qp_entry *row) {
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
  return row_stats(s, r, i, 3, 15, &row->st);
}

static bool same_key(const qp_entry *a, const qp_entry *b) {
  return a->bucket == b->bucket && a->fingerprint == b->fingerprint && a->backend == b->backend &&
         strcmp(a->database, b->database) == 0 && strcmp(a->user, b->user) == 0 &&
         strcmp(a->application, b->application) == 0 && strcmp(a->host, b->host) == 0;
}

static qp_status write_delta(qp_store *s, int level, const qp_entry *e, qp_buf *codes,
                             qp_buf *hist) {
  nums n;
  const char *vals[NPARAMS];
  int lens[NPARAMS], fmts[NPARAMS];
  if (!stats_params(s, level, e, &e->st, &n, vals, lens, fmts, codes, hist)) return s->err.code;
  PGresult *r = pg_run_prepared(s, "qp_delta", NPARAMS, vals, lens, fmts, PGRES_COMMAND_OK,
                                "cannot write statistics");
  if (r == NULL) return s->err.code;
  PQclear(r);
  return QP_OK;
}

static qp_status write_stats(qp_store *s, int level, const qp_entry *e, qp_buf *codes,
                             qp_buf *hist) {
  nums n;
  const char *vals[NPARAMS];
  int lens[NPARAMS], fmts[NPARAMS];
  if (((pg_store *)s->impl)->append_only) return write_delta(s, level, e, codes, hist);
  if (!stats_params(s, level, e, &e->st, &n, vals, lens, fmts, codes, hist)) return s->err.code;
  PGresult *r = pg_run_prepared(s, "qp_ins", NPARAMS, vals, lens, fmts, PGRES_TUPLES_OK,
                                "cannot write statistics");
  if (r == NULL) return s->err.code;
  if (PQntuples(r) != 1) {
    PQclear(r);
    return qp__err_set(&s->err, QP_IO, "%s: statistics upsert returned no row", s->display);
  }
  bool inserted = PQgetvalue(r, 0, 0)[0] == 't';
  if (inserted) {
    PQclear(r);
    return QP_OK;
  }
  qp_stats merged;
  qp__stats_init(&merged);
  qp_status rc = row_stats(s, r, 0, 1, 12, &merged);
  PQclear(r);
  if (rc == QP_OK && !qp__stats_merge(&merged, &e->st, &s->hooks))
    rc = qp__err_set(&s->err, QP_NOMEM, "out of memory");
  if (rc == QP_OK && !stats_params(s, level, e, &merged, &n, vals, lens, fmts, codes, hist))
    rc = s->err.code;
  if (rc == QP_OK) {
    r = pg_run_prepared(s, "qp_upd", NPARAMS, vals, lens, fmts, PGRES_COMMAND_OK,
                        "cannot update statistics");
    if (r == NULL) rc = s->err.code;
    PQclear(r);
  }
  qp__stats_free(&merged, &s->hooks);
  return rc;
}

static qp_status write_query(qp_store *s, const qp_entry *e) {
  char fp[32], sns[32], first[32], last[32];
  snprintf(fp, sizeof fp, "%lld", (long long)(int64_t)e->fingerprint);
  snprintf(sns, sizeof sns, "%lld", (long long)e->sample_ns);
  snprintf(first, sizeof first, "%lld", (long long)e->st.first_ns);
  snprintf(last, sizeof last, "%lld", (long long)e->st.last_ns);
  const char *vals[7] = {fp,
                         qp_backend_name(e->backend),
                         e->query ? e->query : "",
                         e->sample,
                         e->sample ? sns : NULL,
                         first,
                         last};
  PGresult *r = pg_run_prepared(s, ((pg_store *)s->impl)->append_only ? "qp_query_once" : "qp_query",
                                7, vals, NULL, NULL, PGRES_COMMAND_OK, "cannot write a query");
  if (r == NULL) return s->err.code;
  PQclear(r);
  return QP_OK;
}

static qp_status prepare_writes(qp_store *s) {
  pg_store *g = s->impl;
  if (g->prepared) return QP_OK;
  static const struct {
    const char *name, *sql;
    int n;
    bool append;
  } st[] = {{"qp_ins", SQL_INS, NPARAMS, false},
            {"qp_upd", SQL_UPD, NPARAMS, false},
            {"qp_query", SQL_QUERY, 7, false},
            {"qp_delta", SQL_DELTA, NPARAMS, true},
            {"qp_query_once", SQL_QUERY_ONCE, 7, true}};
  for (size_t i = 0; i < QP_ARRAY_LEN(st); i++) {
    if (st[i].append != g->append_only) continue; /* only the statements of this role's path */
    PGresult *r = PQprepare(g->conn, st[i].name, st[i].sql, st[i].n, NULL);
    if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
      qp_status rc = pg_fail(s, r, QP_IO, "cannot prepare a statement");
      PQclear(r);
      return rc;
    }
    PQclear(r);
  }
  g->prepared = true;
  return QP_OK;
}

static qp_status write_drop(qp_store *s, const qp_drop *d) {
  char b[32], n[32];
  snprintf(b, sizeof b, "%lld", (long long)d->bucket);
  snprintf(n, sizeof n, "%llu", (unsigned long long)d->n);
  const char *vals[2] = {b, n};
  PGresult *r = pg_run(s,
                       ((pg_store *)s->impl)->append_only
                           ? "INSERT INTO qprof.qp_dropped_delta (bucket, dropped) VALUES ($1, $2)"
                           : "INSERT INTO qprof.qp_dropped (bucket, dropped) VALUES ($1, $2) "
                             "ON CONFLICT (bucket) DO UPDATE SET dropped = "
                             "qprof.qp_dropped.dropped + excluded.dropped",
                       2, vals, NULL, NULL, PGRES_COMMAND_OK, "cannot write the dropped count");
  if (r == NULL) return s->err.code;
  PQclear(r);
  return QP_OK;
}

/* Inserts or updates the file mark (see qp_file_mark). The append-only
 * path inserts a new row each time (a new id): the newest row is the one
 * qp__store_marks_find hands out first. */
static qp_status write_mark(qp_store *s, qp_file_mark *m) {
  char v[11][32];
  snprintf(v[0], sizeof v[0], "%lld", (long long)m->id);
  snprintf(v[1], sizeof v[1], "%lld", (long long)m->device);
  snprintf(v[2], sizeof v[2], "%lld", (long long)m->inode);
  snprintf(v[3], sizeof v[3], "%lld", (long long)m->size);
  snprintf(v[4], sizeof v[4], "%lld", (long long)m->head_len);
  snprintf(v[5], sizeof v[5], "%lld", (long long)(int64_t)m->head_hash);
  snprintf(v[6], sizeof v[6], "%lld", (long long)m->read_to);
  snprintf(v[7], sizeof v[7], "%lld", (long long)m->lines);
  snprintf(v[8], sizeof v[8], "%d", m->gzip ? 1 : 0);
  snprintf(v[9], sizeof v[9], "%lld", (long long)qp__wall_ns());
  const char *vals[11] = {v[0], m->path ? m->path : "", v[1], v[2], v[3], v[4],
                          v[5], v[6], v[7], v[8], v[9]};
  PGresult *r;
  if (m->id > 0 && !((pg_store *)s->impl)->append_only) {
    r = pg_run(s,
               "UPDATE qprof.qp_ingest_file SET path = $2, device = $3, inode = $4, size = $5, "
               "head_len = $6, head_hash = $7, read_to = $8, lines = $9, gzip = $10, "
               "updated_ns = $11 WHERE id = $1",
               11, vals, NULL, NULL, PGRES_COMMAND_OK, "cannot write a file position");
  } else {
    r = pg_run(s,
               "INSERT INTO qprof.qp_ingest_file (path, device, inode, size, head_len, head_hash, "
               "read_to, lines, gzip, updated_ns) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
               "$10) RETURNING id",
               10, vals + 1, NULL, NULL, PGRES_TUPLES_OK, "cannot write a file position");
    if (r != NULL) m->id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  }
  if (r == NULL) return s->err.code;
  PQclear(r);
  return QP_OK;
}

static qp_status pg_marks_find(qp_store *s, int64_t device, int64_t inode, uint64_t head_hash,
                               qp_file_mark *out, size_t cap, size_t *n) {
  char v[4][32];
  snprintf(v[0], sizeof v[0], "%lld", (long long)device);
  snprintf(v[1], sizeof v[1], "%lld", (long long)inode);
  snprintf(v[2], sizeof v[2], "%lld", (long long)(int64_t)head_hash);
  snprintf(v[3], sizeof v[3], "%zu", cap);
  const char *vals[4] = {v[0], v[1], v[2], v[3]};
  PGresult *r = pg_run(s,
                       "SELECT id, device, inode, size, head_len, head_hash, read_to, lines, gzip "
                       "FROM qprof.qp_ingest_file WHERE (device = $1 AND inode = $2) OR "
                       "head_hash = $3 ORDER BY updated_ns DESC, id DESC "
                       "LIMIT $4",
                       4, vals, NULL, NULL, PGRES_TUPLES_OK, "cannot read the file positions");
  if (r == NULL) return s->err.code;
  int rows = PQntuples(r);
  for (int i = 0; i < rows && (size_t)i < cap; i++) {
    qp_file_mark *m = &out[(*n)++];
    memset(m, 0, sizeof *m);
    m->id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
    m->device = strtoll(PQgetvalue(r, i, 1), NULL, 10);
    m->inode = strtoll(PQgetvalue(r, i, 2), NULL, 10);
    m->size = strtoll(PQgetvalue(r, i, 3), NULL, 10);
    m->head_len = strtoll(PQgetvalue(r, i, 4), NULL, 10);
    m->head_hash = (uint64_t)strtoll(PQgetvalue(r, i, 5), NULL, 10);
    m->read_to = strtoll(PQgetvalue(r, i, 6), NULL, 10);
    m->lines = strtoll(PQgetvalue(r, i, 7), NULL, 10);
    m->gzip = PQgetvalue(r, i, 8)[0] == '1';
  }
  PQclear(r);
  return QP_OK;
}

/* How often a flush transaction is tried at most: again after a
 * serialization failure (40001) or a deadlock (40P01), or once on a fresh
 * connection when the old one turned out to be broken before COMMIT was
 * sent (the server rolled that transaction back). Between tries: 10, 20, 40,
 * 80, 160 ms, plus up to as much again at random. */
#define QP_PG_WRITE_TRIES 6

static bool retryable_state(const char *state) {
  return strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0;
}

static void retry_pause(int attempt) {
  long ms = 10L << (attempt - 1 < 5 ? attempt - 1 : 4);
  unsigned seed = (unsigned)qp__wall_ns() ^ (unsigned)(uintptr_t)&ms;
  ms += (long)(rand_r(&seed) % (unsigned)(ms + 1));
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* A fresh connection after the old one broke: the write statements are
 * prepared again and the store is looked at again (it may have been
 * replaced while the server was away). */
static qp_status pg_reconnect(qp_store *s) {
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

static bool conn_broken(qp_store *s) {
  pg_store *g = s->impl;
  return g->conn == NULL || PQstatus(g->conn) == CONNECTION_BAD;
}

/* What became of transaction `xid` (txid_status, PostgreSQL 10+): 1
 * committed, 0 aborted (or unknown to the server: too old, which a
 * transaction of seconds ago is not), -1 cannot tell yet. Reconnects first
 * when the connection is broken. */
static int tx_outcome(qp_store *s, int64_t xid) {
  if (conn_broken(s) && pg_reconnect(s) != QP_OK) return -1;
  char x[32];
  snprintf(x, sizeof x, "%lld", (long long)xid);
  const char *vals[1] = {x};
  PGresult *r = pg_run(s, "SELECT txid_status($1::bigint)", 1, vals, NULL, NULL, PGRES_TUPLES_OK,
                       "cannot ask what became of a flush");
  if (r == NULL) return -1;
  const char *v = PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0);
  int out = strcmp(v, "committed") == 0 ? 1 : strcmp(v, "in progress") == 0 ? -1 : 0;
  PQclear(r);
  return out;
}

/* One try of the flush transaction. *xid is its transaction id once known,
 * *commit_sent whether COMMIT went out (after that, a broken connection
 * leaves the outcome unknown). */
static qp_status write_once(qp_store *s, const qp_entry *const *v, size_t n, const qp_drop *drop,
                            qp_buf *codes, qp_buf *hist, int64_t *xid, bool *commit_sent) {
  *xid = 0;
  *commit_sent = false;
  qp_status rc = prepare_writes(s);
  if (rc == QP_OK) rc = pg_cmd(s, "BEGIN", "cannot begin a flush");
  if (rc == QP_OK) {
    PGresult *r = pg_run(s, "SELECT txid_current()", 0, NULL, NULL, NULL, PGRES_TUPLES_OK,
                         "cannot begin a flush");
    if (r == NULL) rc = s->err.code;
    else *xid = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
  }
  if (rc == QP_OK && drop != NULL) rc = write_drop(s, drop);
  for (size_t i = 0; rc == QP_OK && i < n; i++) rc = write_query(s, v[i]);
  for (int level = 0; rc == QP_OK && level < QP_LEVELS; level++)
    for (size_t i = 0; rc == QP_OK && i < n; i++) rc = write_stats(s, level, v[i], codes, hist);
  if (rc == QP_OK && s->mark != NULL) rc = write_mark(s, s->mark);
  if (rc == QP_OK) {
    *commit_sent = true;
    rc = pg_cmd(s, "COMMIT", "cannot commit a flush");
  }
  return rc;
}

static void compact_after_flush(qp_store *s);

static qp_status pg_write(qp_store *s, const qp_entry *list, const qp_drop *drop) {
  if (s->mode != QP_STORE_WRITE)
    return qp__err_set(&s->err, QP_INVALID, "%s: store opened read-only", s->display);
  pg_store *g = s->impl;
  size_t n = 0;
  for (const qp_entry *e = list; e != NULL; e = e->next)
    if (!e->ignored && (e->st.calls > 0 || e->st.cache_hits > 0)) n++;
  bool dropping = drop != NULL && drop->n > 0;
  if (n == 0 && !dropping && s->mark == NULL) return QP_OK;
  const qp_entry **v = qp__calloc(&s->hooks, n ? n : 1, sizeof *v);
  if (v == NULL) return qp__err_set(&s->err, QP_NOMEM, "out of memory");
  n = 0;
  for (const qp_entry *e = list; e != NULL; e = e->next)
    if (!e->ignored && (e->st.calls > 0 || e->st.cache_hits > 0)) v[n++] = e;
  /* The one global order of the rows every flush takes locks on: qp_dropped
   * (one row), qp_query by fingerprint, then qp_stats by level and then
   * entry_order, the mark last. Two flushes so never wait on each other in
   * a cycle; a deadlock (40P01) could only come from elsewhere (a trigger,
   * a DBA's transaction) and is retried like a serialization failure. */
  qsort(v, n, sizeof *v, entry_order);
  qp_buf codes, hist;
  qp__buf_init(&codes, &s->hooks);
  qp__buf_init(&hist, &s->hooks);
  int64_t mark_id = s->mark ? s->mark->id : 0;
  qp_status rc = QP_OK;
  for (int attempt = 1;; attempt++) {
    if (s->mark != NULL) s->mark->id = mark_id;
    g->sqlstate[0] = '\0';
    /* A connection that broke since the last write (the server restarted)
     * is replaced before anything is sent on it. */
    rc = conn_broken(s) ? pg_reconnect(s) : QP_OK;
    if (rc != QP_OK) break;
    int64_t xid = 0;
    bool commit_sent = false;
    rc = write_once(s, v, n, dropping ? drop : NULL, &codes, &hist, &xid, &commit_sent);
    if (rc == QP_OK) break;
    bool broken = conn_broken(s);
    if (!broken) PQclear(PQexec(g->conn, "ROLLBACK"));
    if (broken && commit_sent && xid != 0) {
      /* COMMIT went out and no answer came back: it may have committed. */
      qp_err err = s->err;
      int outcome = tx_outcome(s, xid);
      if (outcome == 1) {
        rc = QP_OK;
        break;
      }
      if (outcome < 0) {
        g->doubt_xid = xid;
        s->in_doubt = s->write_in_doubt = true;
        rc = qp__err_set(&s->err, QP_UNAVAILABLE,
                         "%s (whether the flush committed is not known yet: it is asked again "
                         "before the next one)",
                         err.msg);
        break;
      }
      s->err = err;
    }
    bool again = broken || retryable_state(g->sqlstate);
    if (!again || attempt >= QP_PG_WRITE_TRIES) break;
    if (broken && attempt > 1 && !retryable_state(g->sqlstate)) break; /* one fresh connection */
    if (!broken) retry_pause(attempt);
  }
  if (rc != QP_OK && strcmp(g->sqlstate, "42501") == 0) {
    char msg[sizeof s->err.msg];
    snprintf(msg, sizeof msg, "%s", s->err.msg);
    rc = qp__err_set(&s->err, QP_REFUSED,
                     "%s (a role that writes the store needs USAGE on schema qprof and SELECT, "
                     "INSERT on all its tables; with UPDATE as well it merges rows in place; "
                     "nothing was written)",
                     msg);
  }
  if (rc == QP_OK && g->compactor) compact_after_flush(s);
  if (rc == QP_OK && s->mark != NULL) s->mark_done = true;
  else if (s->mark != NULL) s->mark->id = mark_id;
  qp__buf_free(&codes);
  qp__buf_free(&hist);
  qp__free(&s->hooks, v);
  return rc;
}

/* Settles a flush whose COMMIT got no answer (s->in_doubt): *committed
 * tells whether it is in the store. QP_UNAVAILABLE while the server cannot
 * tell yet (then it stays in doubt). */
static qp_status pg_resolve(qp_store *s, bool *committed) {
  pg_store *g = s->impl;
  qp__err_clear(&s->err);
  int outcome = tx_outcome(s, g->doubt_xid);
  if (outcome < 0) {
    if (s->err.code == QP_OK)
      qp__err_set(&s->err, QP_UNAVAILABLE, "%s: cannot tell yet whether the last flush committed",
                  s->display);
    return s->err.code;
  }
  *committed = outcome == 1;
  s->in_doubt = false;
  g->doubt_xid = 0;
  return QP_OK;
}

/* ---- compaction ----------------------------------------------------------- */

/* Delta rows one compaction transaction takes at most: the work and the
 * locks of one transaction stay bounded, whatever the backlog. */
#define QP_PG_COMPACT_BATCH 5000
/* What an upsert-capable writer folds in after its own flush, at most (one
 * transaction). */
#define QP_PG_COMPACT_AFTER_FLUSH 2000

typedef struct delta_row {
  int level;
  qp_entry e;
} delta_row;

/* The flush's global order (level, then entry_order), so that a compaction
 * and the flushes lock rows of qp_stats in the same order. */
static int delta_order(const void *a, const void *b) {
  const delta_row *x = a, *y = b;
  if (x->level != y->level) return x->level < y->level ? -1 : 1;
  const qp_entry *pa = &x->e, *pb = &y->e;
  return entry_order(&pa, &pb);
}

/* Locks at most `limit` delta rows of `table` with ids up to `upto` that no
 * other transaction holds (SKIP LOCKED: a concurrent compaction has them)
 * and puts their ids into *ids as a bigint[] literal. Two statements (lock,
 * then DELETE ... WHERE id = ANY) rather than DELETE ... WHERE id IN
 * (SELECT ... FOR UPDATE SKIP LOCKED): that one once ran for minutes, busy
 * on the CPU, not waiting for a lock, under concurrent compactions
 * (test_append_only_with_upserts_and_compaction); the rows locked first
 * leave the DELETE nothing to re-check. */
static qp_status take_ids(qp_store *s, const char *table, const char *limit, const char *upto,
                          qp_buf *ids) {
  char sql[256];
  snprintf(sql, sizeof sql,
           "SELECT id FROM %s WHERE id <= $2 ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED", table);
  const char *vals[2] = {limit, upto};
  PGresult *r = pg_run(s, sql, 2, vals, NULL, NULL, PGRES_TUPLES_OK, "cannot lock the deltas");
  if (r == NULL) return s->err.code;
  ids->len = 0;
  ids->failed = false;
  bool ok = qp__buf_puts(ids, "{");
  for (int i = 0; ok && i < PQntuples(r); i++)
    ok = qp__buf_printf(ids, i ? ",%s" : "%s", PQgetvalue(r, i, 0));
  ok = ok && qp__buf_puts(ids, "}");
  PQclear(r);
  return ok ? QP_OK : qp__err_set(&s->err, QP_NOMEM, "out of memory");
}

/* One compaction transaction: takes at most `limit` delta rows of each
 * table with ids up to upto / upto_drop out (DELETE ... RETURNING; rows
 * another compaction holds are skipped, it folds them), merges those of one
 * key and level, and merges them into the compacted rows with the flush's
 * upserts, in the flush's lock order (qp_dropped, then qp_stats by level
 * and key). Committed whole or not at all, so that each delta is counted
 * exactly once, before or after. *rows and *drops: delta rows folded. */
static qp_status compact_once(qp_store *s, long limit, int64_t upto, int64_t upto_drop,
                              uint64_t *rows, uint64_t *drops) {
  pg_store *g = s->impl;
  *rows = *drops = 0;
  char lim[32], u[32], ud[32];
  snprintf(lim, sizeof lim, "%ld", limit);
  snprintf(u, sizeof u, "%lld", (long long)upto);
  snprintf(ud, sizeof ud, "%lld", (long long)upto_drop);
  qp_buf codes, hist, ids;
  qp__buf_init(&codes, &s->hooks);
  qp__buf_init(&hist, &s->hooks);
  qp__buf_init(&ids, &s->hooks);
  PGresult *dr = NULL, *sr = NULL;
  delta_row *v = NULL;
  int nv = 0;
  qp_status rc = prepare_writes(s);
  if (rc == QP_OK) rc = pg_cmd(s, "BEGIN", "cannot begin a compaction");
  if (rc == QP_OK) rc = take_ids(s, "qprof.qp_dropped_delta", lim, ud, &ids);
  if (rc == QP_OK) {
    const char *vals[1] = {qp__buf_cstr(&ids)};
    dr = pg_run(s,
                "WITH d AS (DELETE FROM qprof.qp_dropped_delta WHERE id = ANY($1::bigint[]) "
                "RETURNING bucket, dropped) SELECT bucket, sum(dropped), count(*) FROM d "
                "GROUP BY bucket ORDER BY bucket",
                1, vals, NULL, NULL, PGRES_TUPLES_OK, "cannot take the dropped deltas");
    if (dr == NULL) rc = s->err.code;
  }
  for (int i = 0; rc == QP_OK && i < PQntuples(dr); i++) {
    qp_drop d = {.bucket = strtoll(PQgetvalue(dr, i, 0), NULL, 10),
                 .n = strtoull(PQgetvalue(dr, i, 1), NULL, 10)};
    *drops += strtoull(PQgetvalue(dr, i, 2), NULL, 10);
    rc = write_drop(s, &d);
  }
  if (rc == QP_OK) rc = take_ids(s, "qprof.qp_stats_delta", lim, u, &ids);
  if (rc == QP_OK) {
    const char *vals[1] = {qp__buf_cstr(&ids)};
    sr = pg_run(s,
                "WITH d AS (DELETE FROM qprof.qp_stats_delta WHERE id = ANY($1::bigint[]) "
                "RETURNING level, " ROW_COLS ") SELECT " ROW_COLS ", level FROM d",
                1, vals, NULL, NULL, PGRES_TUPLES_OK, "cannot take the deltas");
    if (sr == NULL) rc = s->err.code;
  }
  int n = rc == QP_OK ? PQntuples(sr) : 0;
  if (n > 0 && (v = qp__calloc(&s->hooks, (size_t)n, sizeof *v)) == NULL)
    rc = qp__err_set(&s->err, QP_NOMEM, "out of memory");
  for (int i = 0; rc == QP_OK && i < n; i++) {
    nv = i + 1;
    rc = parse_row(s, sr, i, &v[i].e);
    v[i].level = atoi(PQgetvalue(sr, i, 20));
  }
  if (rc == QP_OK && nv > 1) qsort(v, (size_t)nv, sizeof *v, delta_order);
  for (int i = 0; rc == QP_OK && i < nv;) {
    int j = i + 1;
    for (; rc == QP_OK && j < nv && v[j].level == v[i].level && same_key(&v[i].e, &v[j].e); j++)
      if (!qp__stats_merge(&v[i].e.st, &v[j].e.st, &s->hooks))
        rc = qp__err_set(&s->err, QP_NOMEM, "out of memory");
    if (rc == QP_OK) rc = write_stats(s, v[i].level, &v[i].e, &codes, &hist);
    i = j;
  }
  *rows = (uint64_t)n;
  if (rc == QP_OK) rc = pg_cmd(s, "COMMIT", "cannot commit a compaction");
  for (int i = 0; i < nv; i++) qp__stats_free(&v[i].e.st, &s->hooks);
  qp__free(&s->hooks, v);
  PQclear(dr);
  PQclear(sr);
  qp__buf_free(&codes);
  qp__buf_free(&hist);
  qp__buf_free(&ids);
  if (rc != QP_OK) {
    /* nothing was folded: the deltas are still there (also when a COMMIT
     * got no answer: committed or not, each delta is in one place) */
    if (!conn_broken(s)) PQclear(PQexec(g->conn, "ROLLBACK"));
    *rows = *drops = 0;
  }
  return rc;
}

/* compact_once, tried again after a serialization failure or a deadlock
 * like a flush, on a fresh connection when the old one broke. */
static qp_status compact_try(qp_store *s, long limit, int64_t upto, int64_t upto_drop,
                             uint64_t *rows, uint64_t *drops) {
  pg_store *g = s->impl;
  qp_status rc = QP_OK;
  for (int attempt = 1;; attempt++) {
    g->sqlstate[0] = '\0';
    rc = conn_broken(s) ? pg_reconnect(s) : QP_OK;
    if (rc == QP_OK && !g->compactor) break;
    if (rc == QP_OK) rc = compact_once(s, limit, upto, upto_drop, rows, drops);
    if (rc == QP_OK || !retryable_state(g->sqlstate) || attempt >= QP_PG_WRITE_TRIES) break;
    retry_pause(attempt);
  }
  return rc;
}

static qp_status refuse_compaction(qp_store *s) {
  return qp__err_set(&s->err, QP_REFUSED,
                     "%s: compacting the store needs SELECT, INSERT, UPDATE on qprof.qp_stats, "
                     "qp_query, qp_dropped, qp_ingest_file and SELECT, DELETE on "
                     "qprof.qp_stats_delta, qp_dropped_delta; this role lacks some; nothing was "
                     "changed",
                     s->display);
}

/* Folds the deltas present when it starts (at most max_rows of them; 0:
 * all), batch by batch (see qp_store_ops.compact). */
static qp_status pg_compact(qp_store *s, uint64_t max_rows, qp_compact_result *out) {
  pg_store *g = s->impl;
  if (s->mode != QP_STORE_WRITE)
    return qp__err_set(&s->err, QP_INVALID, "%s: store opened read-only", s->display);
  if (g->version < 7) return QP_OK; /* not reached: a writer migrates the store */
  qp_status rc = conn_broken(s) ? pg_reconnect(s) : QP_OK;
  if (rc == QP_OK && !g->compactor) return refuse_compaction(s);
  PGresult *r = rc != QP_OK ? NULL
                            : pg_run(s,
                                     "SELECT coalesce((SELECT max(id) FROM qprof.qp_stats_delta), "
                                     "0), coalesce((SELECT max(id) FROM qprof.qp_dropped_delta), 0)",
                                     0, NULL, NULL, NULL, PGRES_TUPLES_OK,
                                     "cannot read the deltas");
  if (r == NULL) return s->err.code;
  int64_t upto = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  int64_t upto_drop = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  PQclear(r);
  for (;;) {
    long lim = QP_PG_COMPACT_BATCH;
    if (max_rows > 0 && max_rows - out->rows < (uint64_t)lim) lim = (long)(max_rows - out->rows);
    if (lim <= 0) break;
    uint64_t rows = 0, drops = 0;
    rc = compact_try(s, lim, upto, upto_drop, &rows, &drops);
    if (rc == QP_OK && !g->compactor) return refuse_compaction(s);
    out->rows += rows;
    out->dropped += drops;
    if (rc != QP_OK || (rows < (uint64_t)lim && drops < (uint64_t)lim)) break;
  }
  if (rc != QP_OK) return rc;
  r = pg_run(s,
             "SELECT (SELECT count(*) FROM qprof.qp_stats_delta) + "
             "(SELECT count(*) FROM qprof.qp_dropped_delta)",
             0, NULL, NULL, NULL, PGRES_TUPLES_OK, "compacted, but cannot count the deltas left");
  if (r == NULL) return s->err.code;
  out->left = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return QP_OK;
}

/* After a flush by an upsert-capable role: one bounded batch of others'
 * deltas folded in, when there are any. Its failure is not the flush's (the
 * flush committed; the deltas stay for the next one): logged, not returned. */
static void compact_after_flush(qp_store *s) {
  pg_store *g = s->impl;
  qp_err err = s->err;
  PGresult *r = pg_run(s,
                       "SELECT EXISTS (SELECT 1 FROM qprof.qp_stats_delta) OR "
                       "EXISTS (SELECT 1 FROM qprof.qp_dropped_delta)",
                       0, NULL, NULL, NULL, PGRES_TUPLES_OK, "cannot look for deltas");
  bool any = r != NULL && PQgetvalue(r, 0, 0)[0] == 't';
  qp_status rc = r == NULL ? s->err.code : QP_OK;
  PQclear(r);
  uint64_t rows = 0, drops = 0;
  if (any)
    rc = compact_once(s, QP_PG_COMPACT_AFTER_FLUSH, INT64_MAX, INT64_MAX, &rows, &drops);
  if (rc != QP_OK)
    qp__log(&s->hooks, QP_LOG_INFO, "%s: flushed; folding in the deltas failed (left for later): %s",
            s->display, s->err.msg);
  s->err = err;
  g->sqlstate[0] = '\0';
}

/* ---- reading -------------------------------------------------------------- */

static qp_status pg_bucket_range(qp_store *s, int level, int64_t *first, int64_t *last,
                                 bool *empty) {
  char l[16];
  snprintf(l, sizeof l, "%d", level);
  const char *vals[1] = {l};
  /* least and greatest skip a NULL: the deltas widen the range */
  PGresult *r = pg_run(s,
                       ((pg_store *)s->impl)->version < 7
                           ? "SELECT min(bucket), max(bucket) FROM qprof.qp_stats WHERE level = $1"
                           : "SELECT least(a.lo, d.lo), greatest(a.hi, d.hi) FROM "
                             "(SELECT min(bucket) AS lo, max(bucket) AS hi FROM qprof.qp_stats "
                             "WHERE level = $1) AS a, (SELECT min(bucket) AS lo, max(bucket) AS hi "
                             "FROM qprof.qp_stats_delta WHERE level = $1) AS d",
                       1, vals, NULL, NULL, PGRES_TUPLES_OK, "cannot read");
  if (r == NULL) return s->err.code;
  *empty = PQgetisnull(r, 0, 0);
  if (!*empty) {
    *first = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    *last = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  }
  PQclear(r);
  return QP_OK;
}

/* Rows are fetched through a cursor, SCAN_FETCH at a time: a window of
 * 12 hours over 100,000 keys is 1.2M hour rows, which one PQexec would hold
 * in the client's memory all at once (662 MB measured). */
#define SCAN_FETCH 8192

static qp_status scan_rows(qp_store *s, PGresult *r, qp_row_fn fn, void *ud) {
  qp_status rc = QP_OK;
  for (int i = 0; rc == QP_OK && i < PQntuples(r); i++) {
    qp_entry row;
    rc = parse_row(s, r, i, &row);
    if (rc == QP_OK && (row.st.calls > 0 || row.st.cache_hits > 0)) rc = fn(ud, &row);
    qp__stats_free(&row.st, &s->hooks);
  }
  return rc;
}

/* A row of a merged scan (compacted rows and deltas in key order) waiting
 * for the next one, which may have its key: its own copies of the strings,
 * since it outlives the result it came from. */
typedef struct scan_pend {
  bool has;
  qp_entry row;
  qp_buf dims; /* database, user, application, host, each with its NUL */
} scan_pend;

static qp_status pend_emit(qp_store *s, scan_pend *p, qp_row_fn fn, void *ud) {
  qp_status rc = QP_OK;
  if (!p->has) return rc;
  if (p->row.st.calls > 0 || p->row.st.cache_hits > 0) rc = fn(ud, &p->row);
  qp__stats_free(&p->row.st, &s->hooks);
  p->has = false;
  return rc;
}

/* The rows of a merged scan: those of one key (compacted and deltas, next
 * to each other) merge into one before fn sees it. */
static qp_status scan_rows_merged(qp_store *s, PGresult *r, scan_pend *p, qp_row_fn fn, void *ud) {
  qp_status rc = QP_OK;
  for (int i = 0; rc == QP_OK && i < PQntuples(r); i++) {
    qp_entry row;
    rc = parse_row(s, r, i, &row);
    if (rc == QP_OK && p->has && same_key(&p->row, &row)) {
      if (!qp__stats_merge(&p->row.st, &row.st, &s->hooks))
        rc = qp__err_set(&s->err, QP_NOMEM, "out of memory");
      qp__stats_free(&row.st, &s->hooks);
      continue;
    }
    if (rc == QP_OK) rc = pend_emit(s, p, fn, ud);
    if (rc != QP_OK) {
      qp__stats_free(&row.st, &s->hooks);
      break;
    }
    qp_buf *d = &p->dims;
    d->len = 0;
    d->failed = false;
    size_t at[4];
    const char *v[4] = {row.database, row.user, row.application, row.host};
    bool ok = true;
    for (int k = 0; k < 4 && ok; k++) {
      at[k] = d->len;
      ok = qp__buf_append(d, v[k], strlen(v[k]) + 1);
    }
    if (!ok) {
      qp__stats_free(&row.st, &s->hooks);
      rc = qp__err_set(&s->err, QP_NOMEM, "out of memory");
      break;
    }
    p->row = row; /* takes row.st */
    p->row.database = d->data + at[0];
    p->row.user = d->data + at[1];
    p->row.application = d->data + at[2];
    p->row.host = d->data + at[3];
    p->has = true;
  }
  return rc;
}

static qp_status pg_scan(qp_store *s, int level, int64_t lo, int64_t hi, qp_row_fn fn, void *ud) {
  char a[32], b[32], c[32];
  snprintf(a, sizeof a, "%d", level);
  snprintf(b, sizeof b, "%lld", (long long)lo);
  snprintf(c, sizeof c, "%lld", (long long)hi);
  const char *vals[3] = {a, b, c};
  pg_store *g = s->impl;
  /* a store older than versions 4 and 6 read as it is: no cache hit or
   * dimension columns */
  const char *cols =
      g->version < 4   ? "fingerprint, backend, database, calls, errors, error_codes, rows, "
                         "total_ns, min_ns, max_ns, m2, first_seen_ns, last_seen_ns, hist, bucket, "
                         "0, 0, '', '', ''"
      : g->version < 6 ? "fingerprint, backend, database, calls, errors, error_codes, rows, "
                         "total_ns, min_ns, max_ns, m2, first_seen_ns, last_seen_ns, hist, bucket, "
                         "cache_hits, cache_hit_ns, '', '', ''"
                       : ROW_COLS;
  /* a cursor lives in a transaction: its own, unless the caller has one */
  bool own = PQtransactionStatus(g->conn) == PQTRANS_IDLE;
  qp_status rc = own ? pg_cmd(s, "BEGIN READ ONLY", "cannot begin a read") : QP_OK;
  if (rc != QP_OK) return rc;
  /* Deltas in the range (version 7): the compacted rows and the deltas in
   * one statement (one snapshot, so that a compaction committing meanwhile
   * is seen whole or not at all), in key order, merged per key here.
   * Without any, the plain scan, in no particular order (no sort). */
  bool merged = false;
  if (g->version >= 7) {
    PGresult *e = pg_run(s,
                         "SELECT EXISTS (SELECT 1 FROM qprof.qp_stats_delta WHERE level = $1 "
                         "AND bucket >= $2 AND bucket < $3)",
                         3, vals, NULL, NULL, PGRES_TUPLES_OK, "cannot read statistics");
    if (e == NULL) rc = s->err.code;
    else merged = PQgetvalue(e, 0, 0)[0] == 't';
    PQclear(e);
  }
  char sql[1024];
  if (merged)
    snprintf(sql, sizeof sql,
             "DECLARE qp_scan NO SCROLL CURSOR FOR SELECT %s FROM (SELECT %s FROM qprof.qp_stats "
             "WHERE level = $1 AND bucket >= $2 AND bucket < $3 UNION ALL SELECT %s FROM "
             "qprof.qp_stats_delta WHERE level = $1 AND bucket >= $2 AND bucket < $3) AS u "
             "ORDER BY " ROW_KEY,
             cols, cols, cols);
  else
    snprintf(sql, sizeof sql,
             "DECLARE qp_scan NO SCROLL CURSOR FOR SELECT %s FROM qprof.qp_stats "
             "WHERE level = $1 AND bucket >= $2 AND bucket < $3",
             cols);
  scan_pend pend = {.has = false};
  qp__buf_init(&pend.dims, &s->hooks);
  PGresult *r = rc != QP_OK ? NULL
                            : pg_run(s, sql, 3, vals, NULL, NULL, PGRES_COMMAND_OK,
                                     "cannot read statistics");
  if (r == NULL) rc = s->err.code;
  PQclear(r);
  char fetch[64];
  snprintf(fetch, sizeof fetch, "FETCH %d FROM qp_scan", SCAN_FETCH);
  while (rc == QP_OK) {
    r = pg_run(s, fetch, 0, NULL, NULL, NULL, PGRES_TUPLES_OK, "cannot read statistics");
    if (r == NULL) {
      rc = s->err.code;
      break;
    }
    int n = PQntuples(r);
    rc = merged ? scan_rows_merged(s, r, &pend, fn, ud) : scan_rows(s, r, fn, ud);
    PQclear(r);
    if (n < SCAN_FETCH) break;
  }
  if (rc == QP_OK) rc = pend_emit(s, &pend, fn, ud);
  else if (pend.has) qp__stats_free(&pend.row.st, &s->hooks);
  qp__buf_free(&pend.dims);
  if (own) {
    /* the read changed nothing: a rollback ends it either way */
    PGresult *e = PQexec(g->conn, "ROLLBACK");
    PQclear(e);
  } else if (rc == QP_OK) {
    rc = pg_cmd(s, "CLOSE qp_scan", "cannot close a cursor");
  }
  return rc;
}

static qp_status pg_bucket_before(qp_store *s, int64_t t_s, int64_t *bucket, bool *found) {
  char t[32];
  snprintf(t, sizeof t, "%lld", (long long)t_s);
  const char *vals[1] = {t};
  PGresult *r = pg_run(
      s,
      ((pg_store *)s->impl)->version < 7
          ? "SELECT max(bucket) FROM qprof.qp_stats WHERE level = 0 AND bucket < $1"
          : "SELECT greatest((SELECT max(bucket) FROM qprof.qp_stats WHERE level = 0 AND "
            "bucket < $1), (SELECT max(bucket) FROM qprof.qp_stats_delta WHERE level = 0 AND "
            "bucket < $1))",
      1, vals, NULL, NULL, PGRES_TUPLES_OK, "cannot read");
  if (r == NULL) return s->err.code;
  *found = !PQgetisnull(r, 0, 0);
  if (*found) *bucket = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return QP_OK;
}

static qp_status pg_query_text(qp_store *s, uint64_t fingerprint, qp_buf *query, qp_buf *sample,
                               bool *has_sample, bool *found) {
  char fp[32];
  snprintf(fp, sizeof fp, "%lld", (long long)(int64_t)fingerprint);
  const char *vals[1] = {fp};
  *found = *has_sample = false;
  PGresult *r = pg_run(s, "SELECT query, sample FROM qprof.qp_query WHERE fingerprint = $1", 1,
                       vals, NULL, NULL, PGRES_TUPLES_OK, "cannot read queries");
  if (r == NULL) return s->err.code;
  qp_status rc = QP_OK;
  if (PQntuples(r) == 1) {
    *found = true;
    if (!qp__buf_puts(query, PQgetvalue(r, 0, 0)))
      rc = qp__err_set(&s->err, QP_NOMEM, "out of memory");
    if (rc == QP_OK && !PQgetisnull(r, 0, 1)) {
      *has_sample = true;
      if (!qp__buf_puts(sample, PQgetvalue(r, 0, 1)))
        rc = qp__err_set(&s->err, QP_NOMEM, "out of memory");
    }
  }
  PQclear(r);
  return rc;
}

static qp_status pg_dropped(qp_store *s, int64_t lo, int64_t hi, uint64_t *n) {
  pg_store *g = s->impl;
  if (g->version < 3) return QP_OK; /* an older store read as it is: no such table */
  char a[32], b[32];
  snprintf(a, sizeof a, "%lld", (long long)lo);
  snprintf(b, sizeof b, "%lld", (long long)hi);
  const char *vals[2] = {a, b};
  PGresult *r = pg_run(s,
                       g->version < 7
                           ? "SELECT coalesce(sum(dropped), 0) FROM qprof.qp_dropped "
                             "WHERE bucket >= $1 AND bucket < $2"
                           : "SELECT coalesce((SELECT sum(dropped) FROM qprof.qp_dropped WHERE "
                             "bucket >= $1 AND bucket < $2), 0) + coalesce((SELECT sum(dropped) "
                             "FROM qprof.qp_dropped_delta WHERE bucket >= $1 AND bucket < $2), 0)",
                       2, vals, NULL, NULL, PGRES_TUPLES_OK, "cannot read the dropped count");
  if (r == NULL) return s->err.code;
  *n = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return QP_OK;
}

static qp_status pg_query_texts(qp_store *s, const uint64_t *fps, size_t n, qp_text_fn fn,
                                void *ud) {
  /* one statement for the whole window: the fingerprints as one bigint[]
   * parameter, the rows in the caller's order */
  qp_buf arr;
  qp__buf_init(&arr, &s->hooks);
  bool ok = qp__buf_puts(&arr, "{");
  for (size_t i = 0; ok && i < n; i++)
    ok = qp__buf_printf(&arr, i ? ",%lld" : "%lld", (long long)(int64_t)fps[i]);
  ok = ok && qp__buf_puts(&arr, "}");
  if (!ok) {
    qp__buf_free(&arr);
    return qp__err_set(&s->err, QP_NOMEM, "out of memory");
  }
  const char *vals[1] = {qp__buf_cstr(&arr)};
  PGresult *r = pg_run(s,
                       "SELECT fingerprint, query, sample FROM qprof.qp_query "
                       "WHERE fingerprint = ANY($1::bigint[]) ORDER BY fingerprint",
                       1, vals, NULL, NULL, PGRES_TUPLES_OK, "cannot read queries");
  qp__buf_free(&arr);
  if (r == NULL) return s->err.code;
  qp_status rc = QP_OK;
  for (int i = 0; rc == QP_OK && i < PQntuples(r); i++)
    rc = fn(ud, (uint64_t)strtoll(PQgetvalue(r, i, 0), NULL, 10), PQgetvalue(r, i, 1),
            PQgetisnull(r, i, 2) ? NULL : PQgetvalue(r, i, 2));
  PQclear(r);
  return rc;
}

/* ---- retention ------------------------------------------------------------ */

static qp_status pg_prune(qp_store *s, int max_level, int64_t cutoff_s, unsigned flags,
                          qp_prune_result *out) {
  pg_store *g = s->impl;
  bool dry = (flags & QP_PRUNE_DRY_RUN) != 0;
  char a[16], b[32];
  snprintf(a, sizeof a, "%d", max_level);
  snprintf(b, sizeof b, "%lld", (long long)cutoff_s);
  const char *vals[2] = {a, b};
  /* The statistics per level in one statement, then the texts no row
   * refers to (NOT EXISTS: an anti-join, one pass over qp_stats), in one
   * transaction. A dry run counts the texts no row would refer to. */
  static const char SQL_DEL[] =
      "WITH d AS (DELETE FROM qprof.qp_stats WHERE level >= 0 AND level <= $1 AND bucket < $2 "
      "RETURNING level) SELECT level, count(*) FROM d GROUP BY level";
  static const char SQL_CNT[] =
      "SELECT level, count(*) FROM qprof.qp_stats WHERE level >= 0 AND level <= $1 "
      "AND bucket < $2 GROUP BY level";
  static const char SQL_TEXTS_DEL[] =
      "WITH d AS (DELETE FROM qprof.qp_query q WHERE NOT EXISTS (SELECT 1 FROM qprof.qp_stats t "
      "WHERE t.fingerprint = q.fingerprint) RETURNING 1) SELECT count(*) FROM d";
  static const char SQL_TEXTS_CNT[] =
      "SELECT count(*) FROM qprof.qp_query q WHERE NOT EXISTS (SELECT 1 FROM qprof.qp_stats t "
      "WHERE t.fingerprint = q.fingerprint AND NOT (t.level <= $1 AND t.bucket < $2))";
  /* Version 7: the deltas too. A key counts once however many deltas it
   * has: its deltas are counted only when it has no compacted row (the
   * statement's one snapshot still shows the rows it deletes). Before the
   * prune, the deltas are folded in (a role that can), so there are
   * normally none to count. */
  static const char SQL_DEL7[] =
      "WITH dm AS (DELETE FROM qprof.qp_stats WHERE level >= 0 AND level <= $1 AND bucket < $2 "
      "RETURNING level), dd AS (DELETE FROM qprof.qp_stats_delta WHERE level >= 0 AND level <= $1 "
      "AND bucket < $2 RETURNING level, " ROW_KEY ") SELECT level, sum(n) FROM (SELECT level, "
      "count(*) AS n FROM dm GROUP BY level UNION ALL SELECT level, count(*) FROM (SELECT DISTINCT "
      "level, " ROW_KEY " FROM dd) AS k WHERE NOT EXISTS (SELECT 1 FROM qprof.qp_stats m WHERE "
      "m.level = k.level AND m.bucket = k.bucket AND m.fingerprint = k.fingerprint AND m.backend = "
      "k.backend AND m.database = k.database AND m.user_name = k.user_name AND m.application = "
      "k.application AND m.host = k.host) GROUP BY level) AS x GROUP BY level";
  static const char SQL_CNT7[] =
      "SELECT level, sum(n) FROM (SELECT level, count(*) AS n FROM qprof.qp_stats WHERE level >= 0 "
      "AND level <= $1 AND bucket < $2 GROUP BY level UNION ALL SELECT level, count(*) FROM "
      "(SELECT DISTINCT level, " ROW_KEY " FROM qprof.qp_stats_delta WHERE level >= 0 AND level "
      "<= $1 AND bucket < $2) AS k WHERE NOT EXISTS (SELECT 1 FROM qprof.qp_stats m WHERE "
      "m.level = k.level AND m.bucket = k.bucket AND m.fingerprint = k.fingerprint AND m.backend = "
      "k.backend AND m.database = k.database AND m.user_name = k.user_name AND m.application = "
      "k.application AND m.host = k.host) GROUP BY level) AS x GROUP BY level";
  static const char SQL_TEXTS_DEL7[] =
      "WITH d AS (DELETE FROM qprof.qp_query q WHERE NOT EXISTS (SELECT 1 FROM qprof.qp_stats t "
      "WHERE t.fingerprint = q.fingerprint) AND NOT EXISTS (SELECT 1 FROM qprof.qp_stats_delta t "
      "WHERE t.fingerprint = q.fingerprint) RETURNING 1) SELECT count(*) FROM d";
  static const char SQL_TEXTS_CNT7[] =
      "SELECT count(*) FROM qprof.qp_query q WHERE NOT EXISTS (SELECT 1 FROM qprof.qp_stats t "
      "WHERE t.fingerprint = q.fingerprint AND NOT (t.level <= $1 AND t.bucket < $2)) AND NOT "
      "EXISTS (SELECT 1 FROM qprof.qp_stats_delta t WHERE t.fingerprint = q.fingerprint AND NOT "
      "(t.level <= $1 AND t.bucket < $2))";
  bool v7 = g->version >= 7;
  qp_status rc = QP_OK;
  if (!dry && v7 && g->compactor) {
    qp_compact_result cr = {0};
    rc = pg_compact(s, 0, &cr);
    if (rc != QP_OK) {
      memset(out, 0, sizeof *out);
      return rc;
    }
  }
  rc = pg_cmd(s, dry ? "BEGIN READ ONLY" : "BEGIN", "cannot begin the prune");
  PGresult *r = NULL;
  if (rc == QP_OK) {
    r = pg_run(s, dry ? (v7 ? SQL_CNT7 : SQL_CNT) : (v7 ? SQL_DEL7 : SQL_DEL), 2, vals, NULL, NULL,
               PGRES_TUPLES_OK, dry ? "cannot count the rows to prune" : "cannot delete");
    if (r == NULL) rc = s->err.code;
  }
  for (int i = 0; rc == QP_OK && i < PQntuples(r); i++) {
    long level = strtol(PQgetvalue(r, i, 0), NULL, 10);
    if (level >= 0 && level <= max_level)
      out->rows[level] = strtoull(PQgetvalue(r, i, 1), NULL, 10);
  }
  PQclear(r);
  r = NULL;
  if (rc == QP_OK) {
    r = dry ? pg_run(s, v7 ? SQL_TEXTS_CNT7 : SQL_TEXTS_CNT, 2, vals, NULL, NULL, PGRES_TUPLES_OK,
                     "cannot count the texts to prune")
            : pg_run(s, v7 ? SQL_TEXTS_DEL7 : SQL_TEXTS_DEL, 0, NULL, NULL, NULL, PGRES_TUPLES_OK,
                     "cannot delete texts");
    if (r == NULL) rc = s->err.code;
    else out->texts = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
  }
  if (rc == QP_OK) rc = pg_cmd(s, "COMMIT", "cannot commit the prune");
  if (rc != QP_OK) {
    PQclear(PQexec(g->conn, "ROLLBACK"));
    memset(out, 0, sizeof *out);
    return rc;
  }
  /* Outside the transaction: VACUUM cannot run inside one. */
  if (!dry && (flags & QP_PRUNE_VACUUM))
    rc = pg_cmd(s,
                v7 ? "VACUUM qprof.qp_stats, qprof.qp_query, qprof.qp_stats_delta"
                   : "VACUUM qprof.qp_stats, qprof.qp_query",
                "pruned, but cannot VACUUM");
  out->size_bytes = out->free_bytes = -1;
  r = pg_run(s,
             v7 ? "SELECT pg_total_relation_size('qprof.qp_stats') + "
                  "pg_total_relation_size('qprof.qp_query') + "
                  "pg_total_relation_size('qprof.qp_stats_delta')"
                : "SELECT pg_total_relation_size('qprof.qp_stats') + "
                  "pg_total_relation_size('qprof.qp_query')",
             0, NULL, NULL, NULL, PGRES_TUPLES_OK, "pruned, but cannot read the size");
  if (r != NULL) {
    out->size_bytes = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
  } else if (rc == QP_OK) {
    rc = s->err.code;
  }
  return rc;
}

/* ---- saved advice ------------------------------------------------------------ */

static qp_status pg_advice_put(qp_store *s, const char *database, int64_t at_ns,
                               const char *document) {
  char at[32];
  snprintf(at, sizeof at, "%lld", (long long)at_ns);
  const char *vals[3] = {database, at, document};
  /* one statement: one transaction */
  PGresult *r = pg_run(s,
                       "WITH gone AS (DELETE FROM qprof.qp_advice WHERE database = $1) "
                       "INSERT INTO qprof.qp_advice (database, at_ns, document) "
                       "VALUES ($1, $2, $3)",
                       3, vals, NULL, NULL, PGRES_COMMAND_OK, "cannot save the advice");
  if (r == NULL) return s->err.code;
  PQclear(r);
  return QP_OK;
}

static qp_status pg_advice_each(qp_store *s, qp_advice_fn fn, void *ud) {
  pg_store *g = s->impl;
  if (g->version < 8) return QP_OK; /* an older store read as it is: none */
  PGresult *r = pg_run(s,
                       "SELECT database, at_ns, document FROM qprof.qp_advice "
                       "ORDER BY at_ns DESC, id DESC",
                       0, NULL, NULL, NULL, PGRES_TUPLES_OK, "cannot read the saved advice");
  if (r == NULL) return s->err.code;
  int rows = PQntuples(r);
  for (int i = 0; i < rows; i++)
    if (fn(ud, PQgetvalue(r, i, 0), strtoll(PQgetvalue(r, i, 1), NULL, 10),
           PQgetvalue(r, i, 2)) != 0)
      break;
  PQclear(r);
  return QP_OK;
}

const qp_store_ops qp__pg_store_ops = {
    .prune = pg_prune,
    .dropped = pg_dropped,
    .name = "postgres",
    .open = pg_open,
    .close = pg_close,
    .write = pg_write,
    .bucket_range = pg_bucket_range,
    .scan = pg_scan,
    .bucket_before = pg_bucket_before,
    .query_text = pg_query_text,
    .query_texts = pg_query_texts,
    .marks_find = pg_marks_find,
    .resolve = pg_resolve,
    .compact = pg_compact,
    .advice_put = pg_advice_put,
    .advice_each = pg_advice_each,
};
