/*
 * Backends: one table of functions per database client library, so that the
 * pool, timing, the cache and the advisor never branch on the backend.
 * Private to the library.
 *
 * A backend connection (qp__bconn) is used by one thread at a time, except
 * for `cancel`, which may come from any thread while another one is inside
 * `exec`. Every failing call fills a qp__berr: status, code (SQLSTATE or
 * SQLite extended result code name) and a message with any DSN password
 * removed.
 */
#ifndef QPROF_BACKEND_H
#define QPROF_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "qprof/profile.h"
#include "qprof/result.h"
#include "qprof/sql.h"

typedef struct qp__bconn qp__bconn;
typedef struct qp__backend_ops qp__backend_ops;
typedef struct qp__stmt_entry qp__stmt_entry;

/* The error of the last failed backend call. */
typedef struct qp__berr {
  qp_status status;
  char code[40];            /* "23505", "SQLITE_BUSY", "" when none */
  char msg[QP_ERRMSG_MAX];  /* never holds a password */
  bool transient;           /* connect: worth retrying soon (57P03, 53300) */
  bool timed_out;           /* connect: no answer within the timeout given */
} qp__berr;

void qp__berr_clear(qp__berr *e);
qp_status qp__berr_set(qp__berr *e, qp_status st, const char *code, const char *fmt, ...)
    QP_PRINTF(4, 5);

/*
 * Results: every backend allocates its result as a struct that begins with
 * this header; the public qp_result_* functions dispatch through `ops`.
 */
typedef struct qp__result_ops {
  void (*free)(qp_result *r);
  int64_t (*affected)(const qp_result *r);
  const char *(*colname)(const qp_result *r, size_t col);
  bool (*isnull)(const qp_result *r, size_t row, size_t col);
  const char *(*value)(const qp_result *r, size_t row, size_t col, size_t *len);
  const void *(*blob)(qp_result *r, size_t row, size_t col, size_t *len);
  /* True when the column's text form is not its bytes (PostgreSQL bytea:
   * blob decodes it); NULL = never. Lets the cache copy a result exactly. */
  bool (*col_bytes)(const qp_result *r, size_t col);
} qp__result_ops;

struct qp_result {
  const qp__result_ops *ops;
  /* Rows and columns, kept here by every backend so that the accessors
   * check their ranges without calling through `ops`. */
  size_t nrows, ncols;
  qp_hooks hooks; /* a copy: results outlive leases and pools */
};

/* Per-connection options the pool passes to connect. */
typedef struct qp__bconnect_opts {
  const qp_hooks *hooks;    /* borrowed for the connection's lifetime */
  int64_t timeout_ms;       /* for the whole connection attempt */
  size_t stmt_cache_max;    /* prepared statements kept per connection */
} qp__bconnect_opts;

/* What explain is asked for. Zero-initialize, then set. */
typedef struct qp__explain_opts {
  /* Run the statement and report what happened (PostgreSQL EXPLAIN
   * ANALYZE; SQLite: step it and read its counters). Always inside a
   * transaction or savepoint that is rolled back, so nothing it changes is
   * kept; the caller still decides whether running it is safe. */
  bool analyze;
  bool buffers;       /* PostgreSQL BUFFERS (with analyze) */
  bool json;          /* PostgreSQL FORMAT JSON; else TEXT */
  int64_t timeout_ms; /* PostgreSQL statement_timeout for the EXPLAIN; 0 = the session's */
} qp__explain_opts;

/* What explain returns; free with qp__plan_free. */
typedef struct qp__plan {
  /* PostgreSQL: EXPLAIN's output, TEXT lines or the JSON document.
   * SQLite: the EXPLAIN QUERY PLAN rows, one "id parent detail" line each. */
  char *text; /* owned (the connection's hooks); NUL-terminated */
  size_t len;
  /* SQLite statement counters (sqlite3_stmt_status) of an analyzed run;
   * -1 where not measured (PostgreSQL, or no analyze). */
  int64_t rows, fullscan_steps, sorts, autoindexes, vm_steps;
} qp__plan;

void qp__plan_free(const qp_hooks *h, qp__plan *plan);
/* Ends an explain call: on success (st == QP_OK) moves the text collected
 * in `text` into out (an empty plan becomes ""), else frees it. Returns st,
 * or QP_NOMEM (err set) when the empty string cannot be had. */
qp_status qp__plan_take(const qp_hooks *h, qp_status st, qp_buf *text, qp__plan *out,
                        qp__berr *err);

/* Called by exec_script as each statement of a script ends, in order:
 * `end_ns` (qp__now_ns) when its result was complete, `rows` returned or
 * affected (-1 unknown), `failed` for the statement that stopped the
 * script (always the last call). */
typedef void (*qp__script_fn)(void *ud, uint64_t end_ns, int64_t rows, bool failed);

/* What a backend can do, so that callers test a capability rather than
 * the backend's kind. */
enum {
  /* exec_script reports when each statement ended (SQLite steps scripts one
   * statement at a time). PostgreSQL returns one result per statement of a
   * simple query but sends them all at the end of the script (the server
   * flushes at ReadyForQuery), so it reports statement ends without times. */
  QP__CAP_SCRIPT_TIMES = 1u << 0,
  /* explain runs the statement (EXPLAIN ANALYZE) when asked */
  QP__CAP_EXPLAIN_ANALYZE = 1u << 1,
  /* explain returns a JSON plan (PostgreSQL FORMAT JSON) */
  QP__CAP_EXPLAIN_JSON = 1u << 2,
  /* explain reports the planner's estimated cost */
  QP__CAP_EXPLAIN_COST = 1u << 3,
  /* explain reports per-statement counters (SQLite sqlite3_stmt_status) */
  QP__CAP_STMT_COUNTERS = 1u << 4,
  /* cancel interrupts a running statement from another thread */
  QP__CAP_CANCEL = 1u << 5,
  /* sessions carry server-side state a reset must discard (DISCARD ALL) */
  QP__CAP_SERVER_SESSION = 1u << 6,
};

/* A row change the connection saw (SQLite's update hook: triggers and
 * cascades included): database ("main", "temp", an attached name), table. */
typedef void (*qp__change_fn)(void *ud, const char *db, const char *table);

/* What the reach of a table name is (qp__cache_ops.reach). */
enum {
  QP__REACH_WRITE = 1,     /* add(): a write to the name reaches this table */
  QP__REACH_READ = 2,      /* add(): a read of the name depends on this table */
  QP__REACH_WRITE_ALL = 4, /* result: a write may reach any table (flush) */
  QP__REACH_READ_ALL = 8,  /* result: a read may depend on any table */
  QP__REACH_READ_NEVER = 16,    /* result: reads must not be cached (a view over a
                                 * temporary, unlogged or foreign relation, a sequence) */
  QP__REACH_READ_VOLATILE = 32, /* result: a view calls a function that is not immutable */
  QP__REACH_READ_CATALOG = 64   /* result: a view reads a system catalog */
};
typedef void (*qp__reach_fn)(void *ud, int which, const char *table);

/* What the result cache (lib/cache) asks a backend; each call runs on the
 * lease holder's thread, is never recorded and never touches the session
 * tracking or the statement cache. */
typedef struct qp__cache_ops {
  /* The server's identity (the same for every connection to one database)
   * into server, and what else decides a result (role, search_path,
   * output settings) into session. *strict_iso: new transactions are
   * REPEATABLE READ or stricter; *refuse: nothing may be cached on this
   * connection. One round trip. */
  qp_status (*identity)(qp__bconn *b, qp_buf *server, qp_buf *session, bool *strict_iso,
                        bool *refuse, qp__berr *err);
  /* What a table name is on this server, over every schema: 1 plain, 2 wide
   * (view, inheritance, partition, triggers, rules, foreign keys), 3 never
   * cache (temporary, unlogged, sequence, catalog, unknown); 0 on failure. */
  int (*table)(qp__bconn *b, const char *name);
  /* The key of a table name as written when the backend has several
   * databases on one connection (SQLite: "schema.name", with the schema the
   * name resolves to): 1 written to out, 0 no such table (never cached), -1
   * failure. table() is then asked about keys. NULL: names are keys, with
   * the schema dropped (PostgreSQL). */
  int (*qualify)(qp__bconn *b, const char *name, char *out, size_t cap);
  /* A function name over every overload: 1 immutable/deterministic, 0 not,
   * 2 may write tables (a volatile non-catalog function); -1 on failure or
   * unknown. */
  int (*func)(qp__bconn *b, const char *name);
  /* Session values the server reports by itself (libpq ParameterStatus),
   * concatenated into buf; no round trip. NULL: none. */
  size_t (*reported)(const qp__bconn *b, char *buf, size_t cap);
  /* Whether another connection committed since the previous call (SQLite
   * PRAGMA data_version): 1 yes or first call, 0 no, -1 failure. NULL:
   * cannot tell (PostgreSQL: bounded by the TTL). */
  int (*changed)(qp__bconn *b);
  /* Installs fn as the connection's row-change callback (kept across
   * resets); NULL fn removes it. NULL: the backend cannot see row changes. */
  void (*watch)(qp__bconn *b, qp__change_fn fn, void *ud);
  /* For a name `table` answered 2 (wide): the table names a write to it can
   * reach (itself, cascading foreign keys, its triggers' writes, its
   * inheritance family, a view's base tables) and those a read of it
   * depends on (a view's base tables, the tables its row-level security
   * policies read), each by add(ud, QP__REACH_WRITE or QP__REACH_READ,
   * name), transitively; returns the other QP__REACH_* bits that hold
   * (0: both lists are complete), or -1 on failure. NULL: a wide name stays
   * wide (writes flush the server, reads depend on every write). */
  int (*reach)(qp__bconn *b, const char *table, qp__reach_fn add, void *ud);
} qp__cache_ops;

struct qp__backend_ops {
  const char *name;
  qp_backend kind;
  qp_dialect dialect; /* how its SQL is lexed, normalized and split */
  unsigned caps;      /* QP__CAP_* */
  /* Whether this backend handles `dsn` (decided by prefix only). */
  bool (*accepts)(const char *dsn);
  /* Checks a DSN without connecting. QP_INVALID with a message if malformed. */
  qp_status (*check_dsn)(const char *dsn, qp__berr *err);
  /* Connects (non-blocking with a deadline on PostgreSQL). On failure *out
   * is NULL; err->transient tells whether a retry soon may succeed. */
  qp_status (*connect)(const char *dsn, const qp__bconnect_opts *o, qp__bconn **out,
                       qp__berr *err);
  /* One statement, prepared and cached by text. *out may be NULL (result
   * discarded); *rows gets rows returned or affected (-1 unknown).
   * *reprepared is set when a lost prepared statement was prepared again.
   * *entry gets the statement's cache entry (NULL when not cached), valid
   * until the next call on the connection. `sql` must be NUL-terminated at
   * len; len may be QP__SQL_NTS (not measured yet: a cached statement is
   * then found without a strlen, and entry->len is its length). */
  qp_status (*exec)(qp__bconn *b, const char *sql, size_t len, const qp_param *params,
                    size_t nparams, qp_result **out, int64_t *rows, bool *reprepared,
                    qp__stmt_entry **entry, qp__berr *err);
  /* Several statements, no parameters, no result. `each` (may be NULL) is
   * told as every statement ends, in order; end_ns is that statement's end
   * only with QP__CAP_SCRIPT_TIMES (else when its result was read). */
  qp_status (*exec_script)(qp__bconn *b, const char *sql, qp__script_fn each, void *ud,
                           qp__berr *err);
  /* The plan of one statement with its parameters (see qp__explain_opts);
   * never touches the statement cache. */
  qp_status (*explain)(qp__bconn *b, const char *sql, const qp_param *params, size_t nparams,
                       const qp__explain_opts *o, qp__plan *out, qp__berr *err);
  /* Prepares `sql` into the statement cache without running it. */
  qp_status (*prepare)(qp__bconn *b, const char *sql, size_t len, qp__berr *err);
  qp_txn_status (*txn_status)(const qp__bconn *b);
  /* True once the connection is known to be unusable (no I/O). */
  bool (*is_broken)(const qp__bconn *b);
  /* Cheap local check before a lease's first statement: notices a peer that
   * went away while the connection was idle (poll without waiting). Returns
   * false when the connection is broken. */
  bool (*precheck)(qp__bconn *b);
  /* A round trip proving the connection works (validation). */
  qp_status (*ping)(qp__bconn *b, int64_t timeout_ms, qp__berr *err);
  qp_status (*cancel)(qp__bconn *b, qp__berr *err);
  /* Rolls back an open transaction. */
  qp_status (*rollback)(qp__bconn *b, qp__berr *err);
  /* Discards all session state (DISCARD ALL; SQLite reopens the file) and
   * the statement cache. */
  qp_status (*reset)(qp__bconn *b, qp__berr *err);
  /* Closes the connection politely and frees it; NULL is a no-op. */
  void (*close)(qp__bconn *b);
  /* In a child after fork(): frees what can be freed without touching the
   * session the parent still uses (never sends anything to the server). */
  void (*abandon)(qp__bconn *b);
  /* Identity; owned by the connection. */
  const char *(*server_version)(const qp__bconn *b);
  const char *(*database)(const qp__bconn *b);
  const char *(*user)(const qp__bconn *b);
  /* The dimensions a statement is recorded under (docs/pool.md, "Who ran
   * it"): the user (PostgreSQL: the current role when the server reports
   * it, else session_authorization, else the login user; SQLite: the OS
   * user) and the application (PostgreSQL: application_name; SQLite and an
   * empty application_name: the program name). Kept by the connection,
   * read again from the session when `refresh` says so (QP__DIMS_*, after
   * a statement that changed them), otherwise only at connect and reset:
   * the record path only loads two pointers. Owned by the connection. */
  void (*dims)(qp__bconn *b, unsigned refresh, const char **user, const char **app);
  const qp__cache_ops *cache; /* the result cache's questions */
};

/* What qp__backend_ops.dims reads again. */
#define QP__DIMS_PARAMS 1u /* the values the server reports (application_name, session_authorization) */
#define QP__DIMS_ROLE 2u   /* the current role: PostgreSQL asks SELECT current_user */

extern const qp__backend_ops qp__backend_pg;
extern const qp__backend_ops qp__backend_sqlite;
extern const qp__cache_ops qp__pg_cache_ops;
extern const qp__cache_ops qp__sqlite_cache_ops;

/* The file name of a "sqlite:" DSN (":memory:" for an in-memory one), or
 * NULL when it is not one or has none. Points into dsn. */
const char *qp__sqlite_dsn_path(const char *dsn);

/* The backend for a DSN: SQLite for "sqlite:..." and PostgreSQL otherwise. */
const qp__backend_ops *qp__backend_for_dsn(const char *dsn);

/* "NUL-terminated, length not measured yet" for the len of exec. */
#define QP__SQL_NTS ((size_t)-1)

/* Prepared-statement cache shared by the backends: SQL text -> a backend
 * handle (a statement name or an sqlite3_stmt). Open addressing on XXH3. */
struct qp__stmt_entry {
  uint64_t hash;
  char *sql;   /* owned; NULL marks a free slot */
  size_t len;
  void *handle;
  int64_t nparams; /* -1 unknown */
  /* The statement's normalized text and fingerprint, asked of the profile
   * (qp_profile_normalize) once by the pool, so that recording never
   * normalizes a cached statement again. */
  char *norm;      /* owned; NULL until filled */
  size_t norm_len;
  uint64_t fp;
  /* What the classifier says about it, filled together and once by
   * qp__stmt_entry_classify: 1/0, -1 not yet classified. */
  int8_t session;  /* changes session state (the pool resets after it) */
  int8_t drops;    /* drops the server's prepared statements */
  int8_t ident;    /* qp_stmt_info.identity bits, | QP__IDENT_ROLLBACK_TO */
};

/* qp__stmt_entry.ident: the statement is ROLLBACK TO [SAVEPOINT] (a role set
 * after the savepoint reverts). */
#define QP__IDENT_ROLLBACK_TO 0x40

/* Classifies e's statement (qp_sql_classify) the first time it is asked and
 * keeps what the pool and the backends need in e->session, e->drops and
 * e->ident. */
void qp__stmt_entry_classify(qp__stmt_entry *e, qp_dialect dialect);

/* Slots of the address memo (a power of two). */
#define QP__STMT_MEMO 8

typedef struct qp__stmt_cache {
  const qp_hooks *hooks;
  qp__stmt_entry *slots;
  size_t cap, count, max; /* cap a power of two; max entries kept */
  /* Services pass the same string (usually a literal) for a statement
   * every time: the address of the caller's text is remembered next to its
   * entry, so that a repeated statement is found with one comparison of the
   * text against the cached copy (which also measures it) instead of
   * strlen, a hash and a probe. The address is only a hint: the text is
   * always compared. Emptied whenever entries move or go (grow, clear). */
  struct {
    const char *sql;
    qp__stmt_entry *e;
  } memo[QP__STMT_MEMO];
} qp__stmt_cache;

void qp__stmt_cache_init(qp__stmt_cache *c, const qp_hooks *h, size_t max);
/* Finds the entry for sql, or NULL. */
qp__stmt_entry *qp__stmt_cache_find(qp__stmt_cache *c, const char *sql, size_t len);
/* Finds the entry for the NUL-terminated sql, or NULL; *len always gets
 * strlen(sql) (measured only when the address memo misses). */
qp__stmt_entry *qp__stmt_cache_find_str(qp__stmt_cache *c, const char *sql, size_t *len);
/* Adds an entry (sql copied); NULL when the cache is full or out of memory. */
qp__stmt_entry *qp__stmt_cache_add(qp__stmt_cache *c, const char *sql, size_t len, void *handle);
/* Calls fn on every handle, then empties the cache (keeps its memory). */
void qp__stmt_cache_clear(qp__stmt_cache *c, void (*fn)(void *handle, void *ud), void *ud);
void qp__stmt_cache_free(qp__stmt_cache *c, void (*fn)(void *handle, void *ud), void *ud);

#endif
