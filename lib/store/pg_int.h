/*
 * Inside the PostgreSQL store (lib/store/pg.c, pg_write.c, pg_read.c): the
 * libpq table, the connection's state, and the helpers the writing and the
 * reading halves share. Never installed; included by those three files only.
 *
 * pg.c      loads libpq, connects, opens, creates and migrates the store,
 *           runs statements, reads and orders rows, and holds the ops table.
 * pg_write.c flushes (upserts, deltas), retries, settles a COMMIT in doubt,
 *           compacts, saves advice.
 * pg_read.c  scans windows (merging deltas), edges and ranges, texts,
 *           dropped counts, file positions, saved advice, prunes.
 */
#ifndef QP_STORE_PG_INT_H
#define QP_STORE_PG_INT_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

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
  X(PQtransactionStatus) \
  X(PQunescapeBytea)

/* The libpq functions the store calls, filled once by pg.c (dlsym). */
typedef struct qp__pq_table {
#define QP_PQ_FIELD_(name) __typeof__(name) *name;
  QP_PQ_FUNCTIONS(QP_PQ_FIELD_)
#undef QP_PQ_FIELD_
} qp__pq_table;

/* Written once under pthread_once when the first store is opened, read only after. */
extern qp__pq_table qp__pq;

/* Function-like, so that a name not followed by "(" (the table's fields, the
 * X-macro's arguments) stays the libpq name. */
#define PQclear(...) (qp__pq.PQclear(__VA_ARGS__))
#define PQconnectdbParams(...) (qp__pq.PQconnectdbParams(__VA_ARGS__))
#define PQerrorMessage(...) (qp__pq.PQerrorMessage(__VA_ARGS__))
#define PQexec(...) (qp__pq.PQexec(__VA_ARGS__))
#define PQexecParams(...) (qp__pq.PQexecParams(__VA_ARGS__))
#define PQexecPrepared(...) (qp__pq.PQexecPrepared(__VA_ARGS__))
#define PQfinish(...) (qp__pq.PQfinish(__VA_ARGS__))
#define PQfreemem(...) (qp__pq.PQfreemem(__VA_ARGS__))
#define PQgetisnull(...) (qp__pq.PQgetisnull(__VA_ARGS__))
#define PQgetlength(...) (qp__pq.PQgetlength(__VA_ARGS__))
#define PQgetvalue(...) (qp__pq.PQgetvalue(__VA_ARGS__))
#define PQlibVersion(...) (qp__pq.PQlibVersion(__VA_ARGS__))
#define PQntuples(...) (qp__pq.PQntuples(__VA_ARGS__))
#define PQprepare(...) (qp__pq.PQprepare(__VA_ARGS__))
#define PQresultErrorField(...) (qp__pq.PQresultErrorField(__VA_ARGS__))
#define PQresultErrorMessage(...) (qp__pq.PQresultErrorMessage(__VA_ARGS__))
#define PQtransactionStatus(...) (qp__pq.PQtransactionStatus(__VA_ARGS__))
#define PQresultStatus(...) (qp__pq.PQresultStatus(__VA_ARGS__))
#define PQsetNoticeProcessor(...) (qp__pq.PQsetNoticeProcessor(__VA_ARGS__))
#define PQstatus(...) (qp__pq.PQstatus(__VA_ARGS__))
#define PQunescapeBytea(...) (qp__pq.PQunescapeBytea(__VA_ARGS__))

typedef struct pg_store {
  PGconn *conn;
  bool prepared; /* the write statements are prepared on this connection */
  long version;  /* the store's schema version (an older one is read as it is) */
  char sqlstate[6]; /* of the last failed statement; "" when none came */
  int64_t doubt_xid; /* the transaction whose COMMIT got no answer (s->in_doubt) */
  bool append_only;  /* the role lacks UPDATE: flushes append deltas (see top) */
  bool compactor;    /* the role may fold deltas in (UPDATE, DELETE): it does after a flush */
} pg_store;

/* Columns of a statistics row as qp__pg_parse_row reads them, and its key
 * (the order in which a merged scan reads them). */
#define ROW_COLS                                                                               \
  "fingerprint, backend, database, calls, errors, error_codes, rows, total_ns, min_ns, "       \
  "max_ns, m2, first_seen_ns, last_seen_ns, hist, bucket, cache_hits, cache_hit_ns, "          \
  "user_name, application, host"
#define ROW_KEY "bucket, fingerprint, backend, database, user_name, application, host"

/* An SQL expression naming the store a transaction id belongs to: the
 * cluster's system identifier (xids are the cluster's) and the database's
 * oid, "7715250300485433551/16384". pg_control_system() is open to every
 * role. */
#define PG_STORE_IDENT                                                                           \
  "((SELECT system_identifier FROM pg_control_system())::text || '/' || "                       \
  "(SELECT oid FROM pg_database WHERE datname = current_database())::text)"

/* Sets the store's error from a failed result (or the connection's message
 * when r is NULL) and returns code. */
qp_status qp__pg_fail(qp_store *s, PGresult *r, qp_status code, const char *what);
/* Runs a statement with text parameters (bytea ones in binary: lens != NULL
 * marks them with len >= 0 and fmts 1). Returns the result when its status
 * is `want`; otherwise sets the error (a lost connection is QP_UNAVAILABLE,
 * anything else QP_IO, the SQLSTATE in pg_store.sqlstate), clears the
 * result and returns NULL. */
PGresult *qp__pg_run(qp_store *s, const char *sql, int n, const char *const *vals, const int *lens,
                     const int *fmts, ExecStatusType want, const char *what);
/* qp__pg_run for a statement prepared on the connection by name. */
PGresult *qp__pg_run_prepared(qp_store *s, const char *name, int n, const char *const *vals,
                              const int *lens, const int *fmts, ExecStatusType want,
                              const char *what);
/* Runs a statement without parameters or rows (BEGIN, COMMIT, SET ...). */
qp_status qp__pg_cmd(qp_store *s, const char *sql, const char *what);
/* Whether the connection is gone (NULL or CONNECTION_BAD). */
bool qp__pg_conn_broken(qp_store *s);
/* A fresh connection after the old one broke: the write statements are
 * prepared again and the store is looked at again (it may have been
 * replaced while the server was away). */
qp_status qp__pg_reconnect(qp_store *s);

/* The one global order of keys every flush and compaction locks rows in
 * (qsort comparator over const qp_entry *). */
int qp__pg_entry_order(const void *a, const void *b);
/* Reads the stats columns of a row (from column `c0`; the cache hit columns
 * from `hc`) into *st. */
qp_status qp__pg_row_stats(qp_store *s, PGresult *r, int row, int c0, int hc, qp_stats *st);
/* Reads row i of a result with the columns of ROW_COLS into *row (the
 * strings point into r; row->st is initialized here, the caller frees it). */
qp_status qp__pg_parse_row(qp_store *s, PGresult *r, int i, qp_entry *row);
/* Whether two rows have the same key (bucket and dimensions). */
bool qp__pg_same_key(const qp_entry *a, const qp_entry *b);

/* The store operations (qp_store_ops), pg_write.c. */
qp_status qp__pg_write(qp_store *s, const qp_entry *list, const qp_drop *drop);
qp_status qp__pg_resolve(qp_store *s, bool *committed);
qp_status qp__pg_xact_status(qp_store *s, int64_t xid, const char *store_id, qp_xact *out);
qp_status qp__pg_compact(qp_store *s, uint64_t max_rows, qp_compact_result *out);
qp_status qp__pg_advice_put(qp_store *s, const char *database, int64_t at_ns, const char *document);

/* The store operations (qp_store_ops), pg_read.c. */
qp_status qp__pg_bucket_range(qp_store *s, int level, int64_t *first, int64_t *last, bool *empty);
qp_status qp__pg_scan(qp_store *s, int level, int64_t lo, int64_t hi, qp_row_fn fn, void *ud);
qp_status qp__pg_bucket_before(qp_store *s, int64_t t_s, int64_t *bucket, bool *found);
qp_status qp__pg_bucket_last_seen(qp_store *s, int64_t bucket, int64_t *last_ns, bool *found);
qp_status qp__pg_query_text(qp_store *s, uint64_t fingerprint, qp_buf *query, qp_buf *sample,
                            bool *has_sample, bool *found);
qp_status qp__pg_query_texts(qp_store *s, const uint64_t *fps, size_t n, qp_text_fn fn, void *ud);
qp_status qp__pg_dropped(qp_store *s, int64_t lo, int64_t hi, uint64_t *n);
qp_status qp__pg_marks_find(qp_store *s, int64_t device, int64_t inode, uint64_t head_hash,
                            qp_file_mark *out, size_t cap, size_t *n);
qp_status qp__pg_prune(qp_store *s, int max_level, int64_t cutoff_s, unsigned flags,
                       qp_prune_result *out);
qp_status qp__pg_advice_each(qp_store *s, qp_advice_fn fn, void *ud);

#endif
