/*
 * The interposed libpq functions.
 *
 * The asynchronous primitives are the ground truth: every PQsend* that
 * succeeds appends an entry (start time, what was sent) to its connection's
 * FIFO, and PQgetResult attributes each result to the entry at the head.
 * A result ends one statement, except COPY_IN/COPY_OUT/COPY_BOTH (the
 * statement goes on until its final result) and SINGLE_TUPLE (one row of
 * single-row mode). The NULL that follows an entry's results pops it.
 * PGRES_PIPELINE_SYNC belongs to no entry.
 *
 * A simple query may hold several statements ("BEGIN; UPDATE ...; COMMIT"):
 * the server answers with one result per statement, so each result is
 * recorded under the next statement of the text, timed from the previous
 * result. In pipeline mode an entry's time starts when it was sent or when
 * the previous entry finished, whichever is later.
 *
 * PQexec & co. call the PQsend* functions and PQgetResult internally; when
 * those calls come through the shim (they do with Debian's libpq), the
 * synchronous function records nothing itself. When they do not (a libpq
 * linked with -Bsymbolic), it records the statement from its own timing.
 *
 * Prepared statements are normalized once, at PQsendPrepare/PQprepare, and
 * their executions are recorded under that fingerprint. Preparing itself is
 * not recorded as an execution of the statement.
 */
#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim_int.h"

SHIM_REAL_DECL(SHIM_SONAME_PQ, PGconn *, PQconnectdb, (const char *), shim_stub_null)
SHIM_REAL_DECL(SHIM_SONAME_PQ, PGconn *, PQconnectdbParams,
               (const char *const *, const char *const *, int), shim_stub_null)
SHIM_REAL_DECL(SHIM_SONAME_PQ, PGconn *, PQconnectStart, (const char *), shim_stub_null)
SHIM_REAL_DECL(SHIM_SONAME_PQ, PGconn *, PQconnectStartParams,
               (const char *const *, const char *const *, int), shim_stub_null)
SHIM_REAL_DECL(SHIM_SONAME_PQ, PGconn *, PQsetdbLogin,
               (const char *, const char *, const char *, const char *, const char *,
                const char *, const char *), shim_stub_null)
SHIM_REAL_DECL(SHIM_SONAME_PQ, void, PQfinish, (PGconn *), shim_stub_null)
SHIM_REAL_DECL(SHIM_SONAME_PQ, void, PQreset, (PGconn *), shim_stub_null)
SHIM_REAL_DECL(SHIM_SONAME_PQ, int, PQresetStart, (PGconn *), shim_stub_zero)
SHIM_REAL_DECL(SHIM_SONAME_PQ, int, PQsendQuery, (PGconn *, const char *), shim_stub_zero)
SHIM_REAL_DECL(SHIM_SONAME_PQ, int, PQsendQueryParams,
               (PGconn *, const char *, int, const Oid *, const char *const *, const int *,
                const int *, int), shim_stub_zero)
SHIM_REAL_DECL(SHIM_SONAME_PQ, int, PQsendPrepare,
               (PGconn *, const char *, const char *, int, const Oid *), shim_stub_zero)
SHIM_REAL_DECL(SHIM_SONAME_PQ, int, PQsendQueryPrepared,
               (PGconn *, const char *, int, const char *const *, const int *, const int *, int), shim_stub_zero)
SHIM_REAL_DECL(SHIM_SONAME_PQ, int, PQsendDescribePrepared, (PGconn *, const char *), shim_stub_zero)
SHIM_REAL_DECL(SHIM_SONAME_PQ, int, PQsendDescribePortal, (PGconn *, const char *), shim_stub_zero)
SHIM_REAL_DECL(SHIM_SONAME_PQ, PGresult *, PQgetResult, (PGconn *), shim_stub_null)
SHIM_REAL_DECL(SHIM_SONAME_PQ, PGresult *, PQexec, (PGconn *, const char *), shim_stub_null)
SHIM_REAL_DECL(SHIM_SONAME_PQ, PGresult *, PQexecParams,
               (PGconn *, const char *, int, const Oid *, const char *const *, const int *,
                const int *, int), shim_stub_null)
SHIM_REAL_DECL(SHIM_SONAME_PQ, PGresult *, PQprepare,
               (PGconn *, const char *, const char *, int, const Oid *), shim_stub_null)
SHIM_REAL_DECL(SHIM_SONAME_PQ, PGresult *, PQexecPrepared,
               (PGconn *, const char *, int, const char *const *, const int *, const int *, int), shim_stub_null)
SHIM_REAL_DECL(SHIM_SONAME_PQ, PGresult *, PQdescribePrepared, (PGconn *, const char *), shim_stub_null)
SHIM_REAL_DECL(SHIM_SONAME_PQ, PGresult *, PQdescribePortal, (PGconn *, const char *), shim_stub_null)
/* Not interposed, but called through the same lookup as the real functions,
 * so that they come from the libpq the program uses even when that one was
 * dlopen'ed with RTLD_LOCAL. */
SHIM_REAL_DECL(SHIM_SONAME_PQ, char *, PQdb, (const PGconn *), shim_stub_null)
SHIM_REAL_DECL(SHIM_SONAME_PQ, char *, PQuser, (const PGconn *), shim_stub_null)
SHIM_REAL_DECL(SHIM_SONAME_PQ, const char *, PQparameterStatus, (const PGconn *, const char *),
               shim_stub_null)
SHIM_REAL_DECL(SHIM_SONAME_PQ, ExecStatusType, PQresultStatus, (const PGresult *), shim_stub_zero)
SHIM_REAL_DECL(SHIM_SONAME_PQ, int, PQntuples, (const PGresult *), shim_stub_zero)
SHIM_REAL_DECL(SHIM_SONAME_PQ, char *, PQcmdTuples, (PGresult *), shim_stub_null)
SHIM_REAL_DECL(SHIM_SONAME_PQ, char *, PQcmdStatus, (PGresult *), shim_stub_null)
SHIM_REAL_DECL(SHIM_SONAME_PQ, PGTransactionStatusType, PQtransactionStatus, (const PGconn *),
               shim_stub_zero)
SHIM_REAL_DECL(SHIM_SONAME_PQ, char *, PQresultErrorField, (const PGresult *, int), shim_stub_null)
/* libpq 14's; only called once PQsendFlushRequest was found (flush_request),
 * which is as new. */
SHIM_REAL_DECL(SHIM_SONAME_PQ, PGpipelineStatus, PQpipelineStatus, (const PGconn *), shim_stub_zero)
SHIM_REAL_DECL(SHIM_SONAME_PQ, char *, PQerrorMessage, (const PGconn *), shim_stub_null)

/* Depth of synchronous calls (PQexec & co.) on this thread, and whether an
 * asynchronous call made inside the innermost one came through the shim. */
static SHIM_TLS unsigned t_sync;
static SHIM_TLS bool t_sync_seen;

/* A prepared statement: name -> normalized text. Shared by reference with
 * the FIFO entries that execute it, so that re-preparing a name while an
 * execution is in flight (pipeline mode) frees nothing in use. */
typedef struct pq_prep {
  struct pq_prep *next;
  unsigned refs;
  uint64_t fp;
  size_t norm_len;
  bool ident;             /* may change the role or application (qp__sql_may_set_identity) */
  shim_entry_cache cache; /* executions are recorded by the connection's one thread */
  char *name;
  char *sql; /* as prepared, for the sample */
  char norm[];
} pq_prep;

typedef enum pq_kind { PQK_QUERY, PQK_PARAMS, PQK_EXECUTE, PQK_PREPARE, PQK_DESCRIBE } pq_kind;

typedef struct pq_entry {
  struct pq_entry *next;
  pq_kind kind;
  bool has_result; /* some result of this entry was seen: the next NULL pops it */
  bool started;    /* mark_ns set */
  uint64_t start_ns, mark_ns;
  int64_t rows; /* rows of the current statement so far (single-row mode) */
  pq_prep *prep;  /* PQK_EXECUTE */
  size_t sql_len; /* PQK_QUERY, PQK_PARAMS */
  size_t split_pos;
  size_t cap;     /* bytes sql[] can hold, NUL excluded */
  char sql[];
} pq_entry;

/* A popped entry this small is kept as the connection's spare and reused by
 * the next send: one malloc/free pair less per query on the hot path. */
#define PQ_SPARE_MAX 4096

#define PREP_BUCKETS 32

typedef struct pq_conn {
  pq_entry *head, *tail;
  pq_entry *spare; /* see PQ_SPARE_MAX */
  pq_prep *last;   /* the statement executed last (borrowed from preps[]), or NULL */
  uint64_t last_end_ns;
  char *dbname; /* the segment key: database, user, application (shim_key) */
  size_t dbname_len;
  pq_prep *preps[PREP_BUCKETS];
  shim_entry_cache qcache; /* the entry of the last simple or parameterized query */
  qp_sql_memo memo;        /* its text and fingerprint (one-statement queries) */
  /* Who runs it (docs/shim.md, "Who ran it"). The role is followed from
   * the statements' text, since PostgreSQL does not report it; the session
   * user and application_name from what the server reports. "" is no role
   * (the user is then session_authorization). */
  char role_now[QP_STMT_NAME_MAX];  /* in effect for the next statement */
  char role_keep[QP_STMT_NAME_MAX]; /* the session's, kept if the open block commits */
  char role_base[QP_STMT_NAME_MAX]; /* the session's before the open block */
  bool reread;     /* read the reported values again when the entry ends */
  bool role_watch; /* a role change awaits the end of its transaction block */
  bool role_rb;    /* ... which rolls back: ROLLBACK, or an error (role_watch only) */
} pq_conn;

static inline bool should_record(void) { return shim_t_inside == 0 && shim_active(); }

/* A small per-thread cache of shim_pq_conns (direct-mapped: a thread often
 * drives several connections, pgbench -j a few each), so that the calls of
 * one query (its send, its result, the NULL after it) take no shard lock: in
 * a program with threads each lookup costs a locked instruction pair, and 4
 * of them were a quarter of the shim's instructions per pgbench -M prepared
 * transaction. A slot is valid while no connection state was freed anywhere
 * (g_conn_gen is bumped before every free, as shim_sqlite.c's statement
 * cache is); a state that was only cleared (PQreset) stays the same object. */
#define CONN_CACHE 8
static _Atomic uint64_t g_conn_gen;
static SHIM_TLS struct {
  const PGconn *key;
  struct pq_conn *val;
  uint64_t gen;
} t_conns[CONN_CACHE];

static void prep_unref(pq_prep *p) {
  if (p != NULL && --p->refs == 0) {
    qp__free(NULL, p->name);
    qp__free(NULL, p->sql);
    qp__free(NULL, p);
  }
}

static void conn_clear(pq_conn *c) {
  for (pq_entry *e = c->head, *n; e != NULL; e = n) {
    n = e->next;
    prep_unref(e->prep);
    qp__free(NULL, e);
  }
  c->head = c->tail = NULL;
  qp__free(NULL, c->spare);
  c->spare = NULL;
  for (size_t i = 0; i < PREP_BUCKETS; i++) {
    for (pq_prep *p = c->preps[i], *n; p != NULL; p = n) {
      n = p->next;
      prep_unref(p);
    }
    c->preps[i] = NULL;
  }
  c->last = NULL;
}

static void conn_free(pq_conn *c) {
  if (c == NULL) return;
  atomic_fetch_add_explicit(&g_conn_gen, 1, memory_order_release);
  conn_clear(c);
  qp__free(NULL, c->dbname);
  qp__free(NULL, c);
}

/* The state of `conn`, or NULL when it has none (through the per-thread
 * cache). */
static pq_conn *conn_find(const PGconn *conn) {
  uint64_t gen = atomic_load_explicit(&g_conn_gen, memory_order_acquire);
  uintptr_t a = (uintptr_t)conn;
  size_t k = (size_t)((a >> 4) ^ (a >> 10)) % CONN_CACHE;
  if (t_conns[k].key == conn && t_conns[k].gen == gen && conn != NULL) return t_conns[k].val;
  pq_conn *c = shim_map_get(&shim_pq_conns, conn);
  if (c != NULL) {
    t_conns[k].key = conn;
    t_conns[k].val = c;
    t_conns[k].gen = gen;
  }
  return c;
}

/* Makes the connection's segment key again from who runs it now: the
 * role in effect (else session_authorization, else the login user) and
 * application_name (else the program's name), all libpq's local copies (no
 * round trip). A server that reports "role" is believed. Entries cached by
 * prepared statements belong to the old key: they are dropped. */
static void rekey(pq_conn *c, PGconn *conn) {
  const char *r = real_PQparameterStatus()(conn, "role");
  if (r != NULL) {
    snprintf(c->role_now, sizeof c->role_now, "%s", strcmp(r, "none") == 0 ? "" : r);
    c->role_watch = false;
  }
  const char *user = c->role_now;
  if (user[0] == '\0') user = real_PQparameterStatus()(conn, "session_authorization");
  if (user == NULL || user[0] == '\0') user = real_PQuser()(conn);
  const char *app = real_PQparameterStatus()(conn, "application_name");
  char key[QP_SEG_KEY_MAX + 1];
  size_t n = shim_key(key, real_PQdb()(conn), user, app);
  if (c->dbname != NULL && n == c->dbname_len && memcmp(key, c->dbname, n) == 0) return;
  char *k = qp__malloc(NULL, n + 1);
  qp__free(NULL, c->dbname);
  c->dbname = k;
  c->dbname_len = k != NULL ? n : 0;
  if (k != NULL) memcpy(k, key, n + 1);
  for (size_t i = 0; i < PREP_BUCKETS; i++)
    for (pq_prep *p = c->preps[i]; p != NULL; p = p->next) memset(&p->cache, 0, sizeof p->cache);
  memset(&c->qcache, 0, sizeof c->qcache);
}

/* The state of `conn`, created on first use. NULL on out of memory. */
static pq_conn *conn_get(PGconn *conn) {
  pq_conn *c = conn_find(conn);
  if (c != NULL) return c;
  c = qp__calloc(NULL, 1, sizeof *c);
  if (c == NULL) return NULL;
  rekey(c, conn);
  bool stored;
  conn_free(shim_map_put(&shim_pq_conns, conn, c, &stored));
  if (!stored) {
    conn_free(c);
    return NULL;
  }
  return c;
}

static size_t name_hash(const char *s) {
  size_t h = 5381;
  for (; *s; s++) h = h * 33 + (unsigned char)*s;
  return h % PREP_BUCKETS;
}

static pq_prep *prep_find(pq_conn *c, const char *name) {
  /* a client mostly executes the statement it executed last */
  if (c->last != NULL && strcmp(c->last->name, name) == 0) return c->last;
  for (pq_prep *p = c->preps[name_hash(name)]; p != NULL; p = p->next)
    if (strcmp(p->name, name) == 0) return c->last = p;
  return NULL;
}

/* Remembers name -> normalized `sql`, replacing an earlier statement of that name. */
static void prep_add(pq_conn *c, const char *name, const char *sql) {
  if (name == NULL || sql == NULL) return;
  char *norm = shim_scratch();
  if (norm == NULL) return;
  size_t len = 0;
  uint64_t fp = 0;
  if (shim_normalize(QP_BACKEND_POSTGRES, sql, strlen(sql), norm, QP_NORMALIZED_MAX, &len, &fp) !=
      QP_OK)
    return;
  pq_prep *p = qp__malloc(NULL, sizeof *p + len + 1);
  if (p == NULL) return;
  memset(&p->cache, 0, sizeof p->cache);
  p->ident = qp__sql_may_set_identity(sql, strlen(sql));
  p->refs = 1;
  p->fp = fp;
  p->norm_len = len;
  memcpy(p->norm, norm, len);
  p->norm[len] = '\0';
  p->name = qp__strdup(NULL, name);
  p->sql = qp__strdup(NULL, sql);
  if (p->name == NULL || p->sql == NULL) {
    prep_unref(p);
    return;
  }
  size_t b = name_hash(name);
  for (pq_prep **pp = &c->preps[b]; *pp != NULL; pp = &(*pp)->next) {
    if (strcmp((*pp)->name, name) == 0) {
      pq_prep *old = *pp;
      *pp = old->next;
      if (c->last == old) c->last = NULL;
      prep_unref(old);
      break;
    }
  }
  p->next = c->preps[b];
  c->preps[b] = p;
}

/* Appends a FIFO entry to `c` (NULL: out of memory, nothing) after a successful send. */
static void push(pq_conn *c, pq_kind kind, uint64_t start, const char *sql, pq_prep *prep) {
  if (c == NULL) return;
  size_t len = sql != NULL ? strlen(sql) : 0;
  pq_entry *e = c->spare;
  size_t cap;
  if (e != NULL && e->cap >= len) {
    c->spare = NULL;
    cap = e->cap;
  } else {
    /* Rounded up so that the next statement, a little longer, fits too. */
    cap = len < 240 ? 240 : (len | 255);
    e = qp__malloc(NULL, sizeof *e + cap + 1);
    if (e == NULL) return;
  }
  memset(e, 0, sizeof *e);
  e->cap = cap;
  e->kind = kind;
  e->start_ns = start;
  e->sql_len = len;
  if (sql != NULL) memcpy(e->sql, sql, len);
  e->sql[len] = '\0';
  e->prep = prep;
  if (prep != NULL) prep->refs++;
  if (c->tail != NULL) c->tail->next = e;
  else c->head = e;
  c->tail = e;
}

static void pop(pq_conn *c) {
  pq_entry *e = c->head;
  c->head = e->next;
  if (c->head == NULL) c->tail = NULL;
  prep_unref(e->prep);
  e->prep = NULL;
  if (e->cap <= PQ_SPARE_MAX && (c->spare == NULL || c->spare->cap < e->cap)) {
    qp__free(NULL, c->spare);
    c->spare = e;
  } else {
    qp__free(NULL, e);
  }
}

/* ---- who runs it ------------------------------------------------------------
 * The statements that change the role, the session user or application_name
 * are few; the hot path only asks qp__sql_may_set_identity (a few byte
 * compares; a prepared statement asked once, at prepare) and tests
 * role_watch and reread. A statement is charged to the identity it ran
 * under: what it changes applies from the next statement. */

/* After a statement's result `r`: follows a successful SET/RESET ROLE,
 * SESSION AUTHORIZATION, application_name or DISCARD ALL (`sql`, may be
 * NULL), and while a role change waits for its block to end, whether the
 * block rolls back. The role comes from the text (the server does not
 * report it); the reported values are read again when the entry ends
 * (follow_end): the server sends them just before it is ready again. */
static void follow_result(pq_conn *c, PGconn *conn, const char *sql, size_t len,
                          const PGresult *r, ExecStatusType status) {
  if (c->role_watch) {
    if (status == PGRES_COMMAND_OK) {
      const char *tag = real_PQcmdStatus()((PGresult *)r);
      /* ROLLBACK, ROLLBACK TO, and COMMIT of a failed block all say ROLLBACK */
      if (tag != NULL && strncmp(tag, "ROLLBACK", 8) == 0) c->role_rb = true;
      else if (tag != NULL && strcmp(tag, "COMMIT") == 0) c->role_rb = false;
    } else if (status == PGRES_FATAL_ERROR) {
      c->role_rb = true; /* the block (explicit, or a multi-statement query's) fails */
    }
  }
  if (sql == NULL || status != PGRES_COMMAND_OK || !qp__sql_may_set_identity(sql, len)) return;
  qp_stmt_info info;
  info.size = sizeof info;
  qp_sql_classify(QP_DIALECT_POSTGRES, sql, len, &info);
  if (info.identity == 0) return;
  c->reread = true;
  if (!(info.identity & QP_IDENT_ROLE)) return;
  /* SET SESSION AUTHORIZATION x: no role, user x; DEFAULT: the login user */
  const char *name = info.identity_default ? "" : info.identity_name;
  if (!info.identity_default && name[0] == '\0') return; /* a value the text does not show */
  if (!c->role_watch) {
    memcpy(c->role_base, c->role_keep, sizeof c->role_base);
    c->role_watch = true;
    c->role_rb = false;
  }
  /* SET LOCAL lasts until the block ends; SET until then too if the block
   * rolls back. Outside a block the query was one: follow_end settles it. */
  snprintf(c->role_now, sizeof c->role_now, "%s", name);
  if (!info.identity_local) snprintf(c->role_keep, sizeof c->role_keep, "%s", name);
  rekey(c, conn);
}

/* When an entry (a query with all its results) ends: libpq has read the
 * server's ParameterStatus and ReadyForQuery messages, so the reported
 * values and PQtransactionStatus (local: no round trip) are current. A role
 * change whose block is over is kept if the block committed, and SET LOCAL
 * reverts either way. */
static void follow_end(pq_conn *c, PGconn *conn) {
  bool changed = c->reread;
  c->reread = false;
  if (c->role_watch) {
    PGTransactionStatusType t = real_PQtransactionStatus()(conn);
    if (t == PQTRANS_INERROR) {
      c->role_rb = true;
    } else if (t == PQTRANS_IDLE) {
      if (c->role_rb) memcpy(c->role_keep, c->role_base, sizeof c->role_keep);
      memcpy(c->role_now, c->role_keep, sizeof c->role_now);
      memcpy(c->role_base, c->role_keep, sizeof c->role_base);
      c->role_watch = c->role_rb = false;
      changed = true;
    }
  }
  if (changed) rekey(c, conn);
}

/* Records the statement of `e` that `r` ends. */
static void end_statement(pq_conn *c, PGconn *conn, pq_entry *e, const PGresult *r,
                          ExecStatusType status, uint64_t now) {
  int64_t rows = e->rows;
  e->rows = 0;
  uint64_t dur = qp__ns_since(now, e->mark_ns);
  e->mark_ns = now;
  c->last_end_ns = now;
  if (e->kind == PQK_PREPARE || e->kind == PQK_DESCRIBE || status == PGRES_EMPTY_QUERY) return;
  const char *error = NULL;
  if (status == PGRES_TUPLES_OK) {
    rows += real_PQntuples()(r);
    /* a prepared statement's execution, again in its bucket, with no
     * change of who runs it to follow: straight into its entry */
    if (e->kind == PQK_EXECUTE && e->prep != NULL && !c->role_watch && !e->prep->ident &&
        shim_record_hit(&e->prep->cache, now, dur, rows))
      return;
  } else if (status == PGRES_COMMAND_OK) {
    const char *ct = real_PQcmdTuples()((PGresult *)r);
    rows += ct != NULL && ct[0] != '\0' ? strtoll(ct, NULL, 10) : 0;
  } else if (status == PGRES_FATAL_ERROR || status == PGRES_BAD_RESPONSE ||
             status == PGRES_NONFATAL_ERROR) {
    error = real_PQresultErrorField()(r, PG_DIAG_SQLSTATE);
    if (error == NULL || error[0] == '\0') error = "08000"; /* client-side: connection trouble */
  }
  qp_query_event ev = {
      .backend = QP_BACKEND_POSTGRES,
      .database = c->dbname,
      .duration_ns = dur,
      .rows = rows,
      .error = error,
  };
  shim_entry_cache *cache = NULL;
  qp_sql_memo *memo = NULL;
  if (e->kind == PQK_EXECUTE && e->prep != NULL) {
    cache = &e->prep->cache;
    ev.sql = shim_g_sample ? e->prep->sql : NULL;
    ev.sql_len = ev.sql != NULL ? strlen(ev.sql) : 0;
    ev.normalized = e->prep->norm;
    ev.normalized_len = e->prep->norm_len;
    ev.fingerprint = e->prep->fp;
  } else if (e->kind == PQK_QUERY) {
    /* The next statement of a (possibly multi-statement) simple query; text
     * without a ';' is one statement and needs no splitting. A client that
     * runs one statement again and again with other literals (pgbench -S)
     * finds its entry in the connection's cache. */
    cache = &c->qcache;
    size_t start, len;
    const char *semi = e->split_pos == 0 ? memchr(e->sql, ';', e->sql_len) : NULL;
    size_t rest = semi != NULL ? e->sql_len - (size_t)(semi - e->sql) - 1 : 0;
    while (rest > 0 && (semi[rest] == ' ' || semi[rest] == '\n' || semi[rest] == '\t' ||
                        semi[rest] == '\r' || semi[rest] == ';'))
      rest--;
    if (e->split_pos == 0 && (semi == NULL || rest == 0)) {
      /* One statement, at most followed by ';' (pgbench sends "...;"). */
      ev.sql = e->sql;
      ev.sql_len = semi != NULL ? (size_t)(semi - e->sql) : e->sql_len;
      e->split_pos = e->sql_len;
      memo = &c->memo;
    } else if (qp_sql_split_next(QP_DIALECT_POSTGRES, e->sql, e->sql_len, &e->split_pos, &start, &len)) {
      ev.sql = e->sql + start;
      ev.sql_len = len;
    } else {
      ev.sql = e->sql;
      ev.sql_len = e->sql_len;
    }
  } else {
    if (e->kind == PQK_PARAMS) {
      cache = &c->qcache;
      memo = &c->memo;
    }
    ev.sql = e->sql;
    ev.sql_len = e->sql_len;
  }
  shim_record_cached(&ev, c->dbname_len, cache, memo, now);
  if (e->kind == PQK_EXECUTE) {
    if (QP_UNLIKELY(c->role_watch || e->prep->ident))
      follow_result(c, conn, e->prep->sql, strlen(e->prep->sql), r, status);
  } else if (QP_UNLIKELY(c->role_watch || qp__sql_may_set_identity(ev.sql, ev.sql_len))) {
    follow_result(c, conn, ev.sql, ev.sql_len, r, status);
  }
}

static void on_result(PGconn *conn, PGresult *r) {
  pq_conn *c = conn_find(conn);
  if (c == NULL || c->head == NULL) return;
  pq_entry *e = c->head;
  if (r == NULL) {
    if (e->has_result) {
      if (QP_UNLIKELY(c->reread || c->role_watch)) follow_end(c, conn);
      pop(c);
    }
    return;
  }
  ExecStatusType status = real_PQresultStatus()(r);
  if (status == PGRES_PIPELINE_SYNC) return;
  uint64_t now = shim_now_ns();
  if (!e->started) {
    e->started = true;
    e->mark_ns = e->start_ns > c->last_end_ns ? e->start_ns : c->last_end_ns;
  }
  e->has_result = true;
  switch (status) {
  case PGRES_PIPELINE_ABORTED: /* never ran: not recorded */
    c->last_end_ns = now;
    return;
  case PGRES_COPY_IN:
  case PGRES_COPY_OUT:
  case PGRES_COPY_BOTH: /* the statement goes on until its final result */
    return;
  case PGRES_SINGLE_TUPLE:
    e->rows++;
    return;
  default:
    end_statement(c, conn, e, r, status, now);
  }
}

/* ---- connections --------------------------------------------------------- */
/* A new PGconn may reuse the address of one freed without PQfinish's
 * knowledge (impossible through the API, but cheap to be sure of). */
static PGconn *connected(PGconn *conn) {
  if (conn != NULL && atomic_load_explicit(&shim_state, memory_order_relaxed) != SHIM_UNINIT) {
    int e = errno;
    conn_free(shim_map_take(&shim_pq_conns, conn));
    errno = e;
  }
  return conn;
}

SHIM_EXPORT PGconn *PQconnectdb(const char *conninfo) {
  return connected(real_PQconnectdb()(conninfo));
}
SHIM_EXPORT PGconn *PQconnectdbParams(const char *const *keywords, const char *const *values,
                                      int expand_dbname) {
  return connected(real_PQconnectdbParams()(keywords, values, expand_dbname));
}
SHIM_EXPORT PGconn *PQconnectStart(const char *conninfo) {
  return connected(real_PQconnectStart()(conninfo));
}
SHIM_EXPORT PGconn *PQconnectStartParams(const char *const *keywords, const char *const *values,
                                         int expand_dbname) {
  return connected(real_PQconnectStartParams()(keywords, values, expand_dbname));
}
SHIM_EXPORT PGconn *PQsetdbLogin(const char *host, const char *port, const char *options,
                                 const char *tty, const char *db, const char *user,
                                 const char *pwd) {
  return connected(real_PQsetdbLogin()(host, port, options, tty, db, user, pwd));
}

SHIM_EXPORT void PQfinish(PGconn *conn) {
  /* The state goes first: once freed, the address may be reused. */
  connected(conn);
  real_PQfinish()(conn);
}

/* After a reset the server has forgotten prepared statements and pending
 * queries; so do we. */
static void forget(PGconn *conn) {
  if (conn == NULL || atomic_load_explicit(&shim_state, memory_order_relaxed) == SHIM_UNINIT)
    return;
  int e = errno;
  pq_conn *c = conn_find(conn);
  if (c != NULL) {
    conn_clear(c);
    /* a new session: no role; the reported values are read at its first end */
    c->role_now[0] = c->role_keep[0] = c->role_base[0] = '\0';
    c->role_watch = c->role_rb = false;
    c->reread = true;
  }
  errno = e;
}

SHIM_EXPORT void PQreset(PGconn *conn) {
  forget(conn);
  real_PQreset()(conn);
}

SHIM_EXPORT int PQresetStart(PGconn *conn) {
  forget(conn);
  return real_PQresetStart()(conn);
}

/* ---- QPROF_PIPELINE_FLUSH --------------------------------------------------
 * PostgreSQL keeps a pipeline's results until the sync, so that they all
 * reach the client together and the time rule charges the first query with
 * everything (docs/shim.md). With the option on, every query sent in
 * pipeline mode is followed by a flush request: the server then sends each
 * query's results when it has them, and each query is charged by the
 * server's order of work. The program gets the same results; the server
 * pays a write per query. PQsendFlushRequest is libpq 14's: it is looked up
 * once, at the first send after the shim started, when the program's libpq
 * is loaded for sure; without it the option does nothing, said once. */
typedef int (*flush_fn)(PGconn *);
static pthread_once_t g_flush_once = PTHREAD_ONCE_INIT;
static flush_fn g_flush;

static void flush_lookup(void) {
  g_flush = (flush_fn)(void (*)(void))shim_real_optional("PQsendFlushRequest", SHIM_SONAME_PQ);
  if (g_flush == NULL)
    shim_log(QP_LOG_WARN, "QPROF_PIPELINE_FLUSH is set, but this libpq has no PQsendFlushRequest "
                          "(libpq < 14): pipelined queries are timed as their results arrive");
}

/* After a successful send on `conn`, with shim_t_inside set and errno kept
 * by the caller. A failed request changes nothing the program relies on
 * (its query was queued; the sync flushes the results) and is only logged:
 * the program's call already returned success. Its message, if libpq made
 * one, is in PQerrorMessage, where the write error or lack of memory that
 * makes it fail would show at the program's next call anyway. */
static QP_NOINLINE void flush_request(PGconn *conn) {
  pthread_once(&g_flush_once, flush_lookup);
  if (g_flush == NULL || real_PQpipelineStatus()(conn) == PQ_PIPELINE_OFF) return;
  if (g_flush(conn) != 1) {
    const char *msg = real_PQerrorMessage()(conn);
    shim_log(QP_LOG_DEBUG, "PQsendFlushRequest failed: %s", msg != NULL ? msg : "");
  }
}

/* ---- asynchronous primitives --------------------------------------------- */
/* Bookkeeping after a send on `conn`: `ok` is the real call's result. */
#define AFTER_SEND(conn, ok, ...) \
  do {                         \
    if (ok) {                  \
      int e_ = errno;          \
      shim_t_inside++;         \
      if (t_sync) t_sync_seen = true; \
      __VA_ARGS__;             \
      if (QP_UNLIKELY(shim_g_pipeline_flush)) flush_request(conn); \
      shim_t_inside--;         \
      errno = e_;              \
    }                          \
  } while (0)

SHIM_EXPORT int PQsendQuery(PGconn *conn, const char *query) {
  if (!should_record()) return real_PQsendQuery()(conn, query);
  uint64_t t0 = shim_now_ns();
  int ok = real_PQsendQuery()(conn, query);
  AFTER_SEND(conn, ok, push(conn_get(conn), PQK_QUERY, t0, query, NULL));
  return ok;
}

SHIM_EXPORT int PQsendQueryParams(PGconn *conn, const char *command, int nParams,
                                  const Oid *paramTypes, const char *const *paramValues,
                                  const int *paramLengths, const int *paramFormats,
                                  int resultFormat) {
  if (!should_record())
    return real_PQsendQueryParams()(conn, command, nParams, paramTypes, paramValues,
                                    paramLengths, paramFormats, resultFormat);
  uint64_t t0 = shim_now_ns();
  int ok = real_PQsendQueryParams()(conn, command, nParams, paramTypes, paramValues,
                                    paramLengths, paramFormats, resultFormat);
  AFTER_SEND(conn, ok, push(conn_get(conn), PQK_PARAMS, t0, command, NULL));
  return ok;
}

SHIM_EXPORT int PQsendPrepare(PGconn *conn, const char *stmtName, const char *query, int nParams,
                              const Oid *paramTypes) {
  if (!should_record())
    return real_PQsendPrepare()(conn, stmtName, query, nParams, paramTypes);
  uint64_t t0 = shim_now_ns();
  int ok = real_PQsendPrepare()(conn, stmtName, query, nParams, paramTypes);
  AFTER_SEND(conn, ok, {
    pq_conn *c = conn_get(conn);
    if (c != NULL) prep_add(c, stmtName, query);
    push(c, PQK_PREPARE, t0, NULL, NULL);
  });
  return ok;
}

/* The prepared statement `name`, or a stand-in for one prepared where the
 * shim did not see it (an SQL-level PREPARE); NULL on out of memory.
 * Borrowed: whoever keeps it takes a reference. */
static pq_prep *prep_for_execute(pq_conn *c, const char *name) {
  pq_prep *p = prep_find(c, name);
  if (p != NULL) return p;
  char sql[300];
  snprintf(sql, sizeof sql, "EXECUTE %.280s", name);
  prep_add(c, name, sql);
  return prep_find(c, name);
}

SHIM_EXPORT int PQsendQueryPrepared(PGconn *conn, const char *stmtName, int nParams,
                                    const char *const *paramValues, const int *paramLengths,
                                    const int *paramFormats, int resultFormat) {
  if (!should_record())
    return real_PQsendQueryPrepared()(conn, stmtName, nParams, paramValues, paramLengths,
                                      paramFormats, resultFormat);
  uint64_t t0 = shim_now_ns();
  int ok = real_PQsendQueryPrepared()(conn, stmtName, nParams, paramValues, paramLengths,
                                      paramFormats, resultFormat);
  AFTER_SEND(conn, ok, {
    pq_conn *c = conn_get(conn);
    pq_prep *p = c != NULL && stmtName != NULL ? prep_for_execute(c, stmtName) : NULL;
    /* Without a statement the entry is still queued, unrecorded, so that the
     * results that follow are attributed to the right queries. */
    push(c, p != NULL ? PQK_EXECUTE : PQK_DESCRIBE, t0, NULL, p);
  });
  return ok;
}

SHIM_EXPORT int PQsendDescribePrepared(PGconn *conn, const char *stmt) {
  if (!should_record()) return real_PQsendDescribePrepared()(conn, stmt);
  int ok = real_PQsendDescribePrepared()(conn, stmt);
  AFTER_SEND(conn, ok, push(conn_get(conn), PQK_DESCRIBE, 0, NULL, NULL));
  return ok;
}

SHIM_EXPORT int PQsendDescribePortal(PGconn *conn, const char *portal) {
  if (!should_record()) return real_PQsendDescribePortal()(conn, portal);
  int ok = real_PQsendDescribePortal()(conn, portal);
  AFTER_SEND(conn, ok, push(conn_get(conn), PQK_DESCRIBE, 0, NULL, NULL));
  return ok;
}

SHIM_EXPORT PGresult *PQgetResult(PGconn *conn) {
  PGresult *r = real_PQgetResult()(conn);
  if (conn == NULL || shim_t_inside != 0 ||
      atomic_load_explicit(&shim_state, memory_order_acquire) != SHIM_READY)
    return r;
  int e = errno;
  shim_t_inside++;
  on_result(conn, r);
  shim_t_inside--;
  errno = e;
  return r;
}

/* ---- synchronous functions ----------------------------------------------- */
/* Records a synchronous call whose inner asynchronous calls were not seen. */
static void sync_fallback(PGconn *conn, pq_kind kind, const char *sql, const char *name,
                          uint64_t t0, const PGresult *r) {
  pq_conn *c = conn_get(conn);
  if (c == NULL) return;
  if (kind == PQK_PREPARE) {
    if (r != NULL && real_PQresultStatus()(r) == PGRES_COMMAND_OK) prep_add(c, name, sql);
    return;
  }
  pq_entry e = {.kind = kind, .started = true, .mark_ns = t0};
  pq_entry *ep = &e;
  pq_entry *heap = NULL;
  if (kind == PQK_EXECUTE) {
    e.prep = name != NULL ? prep_for_execute(c, name) : NULL;
    if (e.prep == NULL) return;
    e.prep->refs++;
  } else if (sql != NULL) {
    size_t len = strlen(sql);
    heap = qp__malloc(NULL, sizeof *heap + len + 1);
    if (heap == NULL) return;
    *heap = e;
    memcpy(heap->sql, sql, len + 1);
    heap->sql_len = len;
    heap->kind = PQK_PARAMS; /* one event for the whole text: only its last result is known */
    ep = heap;
  }
  ExecStatusType status = r != NULL ? real_PQresultStatus()(r) : PGRES_FATAL_ERROR;
  if (r != NULL) end_statement(c, conn, ep, r, status, shim_now_ns());
  if (c->reread || c->role_watch) follow_end(c, conn); /* the call is over: all read */
  prep_unref(e.prep);
  qp__free(NULL, heap);
}

#define SYNC_BODY(kind, sql, name, call)                   \
  do {                                                     \
    if (!should_record()) return call;                     \
    bool outer_seen = t_sync_seen;                         \
    t_sync++;                                              \
    t_sync_seen = false;                                   \
    uint64_t t0 = shim_now_ns();                           \
    PGresult *r = call;                                    \
    int e = errno;                                         \
    t_sync--;                                              \
    bool seen = t_sync_seen;                               \
    t_sync_seen = outer_seen;                              \
    if (!seen && conn != NULL) {                           \
      shim_t_inside++;                                     \
      sync_fallback(conn, kind, sql, name, t0, r);         \
      shim_t_inside--;                                     \
    }                                                      \
    errno = e;                                             \
    return r;                                              \
  } while (0)

SHIM_EXPORT PGresult *PQexec(PGconn *conn, const char *query) {
  SYNC_BODY(PQK_QUERY, query, NULL, real_PQexec()(conn, query));
}

SHIM_EXPORT PGresult *PQexecParams(PGconn *conn, const char *command, int nParams,
                                   const Oid *paramTypes, const char *const *paramValues,
                                   const int *paramLengths, const int *paramFormats,
                                   int resultFormat) {
  SYNC_BODY(PQK_PARAMS, command, NULL,
            real_PQexecParams()(conn, command, nParams, paramTypes, paramValues, paramLengths,
                                paramFormats, resultFormat));
}

SHIM_EXPORT PGresult *PQprepare(PGconn *conn, const char *stmtName, const char *query,
                                int nParams, const Oid *paramTypes) {
  SYNC_BODY(PQK_PREPARE, query, stmtName,
            real_PQprepare()(conn, stmtName, query, nParams, paramTypes));
}

SHIM_EXPORT PGresult *PQexecPrepared(PGconn *conn, const char *stmtName, int nParams,
                                     const char *const *paramValues, const int *paramLengths,
                                     const int *paramFormats, int resultFormat) {
  SYNC_BODY(PQK_EXECUTE, NULL, stmtName,
            real_PQexecPrepared()(conn, stmtName, nParams, paramValues, paramLengths,
                                  paramFormats, resultFormat));
}

SHIM_EXPORT PGresult *PQdescribePrepared(PGconn *conn, const char *stmt) {
  SYNC_BODY(PQK_DESCRIBE, NULL, stmt, real_PQdescribePrepared()(conn, stmt));
}

SHIM_EXPORT PGresult *PQdescribePortal(PGconn *conn, const char *portal) {
  SYNC_BODY(PQK_DESCRIBE, NULL, portal, real_PQdescribePortal()(conn, portal));
}
