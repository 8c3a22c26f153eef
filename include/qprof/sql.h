/*
 * SQL normalization, fingerprints, statement splitting and classification,
 * for the PostgreSQL and SQLite dialects.
 *
 * Normalizing turns a statement into its shape: literals and placeholders
 * become ?, lists of them collapse, comments go, keywords and unquoted
 * identifiers are lower-cased, white space is one canonical space. Two
 * statements of one shape get one fingerprint: XXH3-64 of the normalized
 * text, seeded with the normalizer version and the dialect.
 */
#ifndef QPROF_SQL_H
#define QPROF_SQL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qp_dialect { QP_DIALECT_POSTGRES = 0, QP_DIALECT_SQLITE = 1 } qp_dialect;

/* Parses "postgres"/"postgresql"/"pg" or "sqlite"/"sqlite3". Returns false otherwise. */
QP_EXPORT bool qp_dialect_parse(const char *name, qp_dialect *out);
/* "postgres" or "sqlite". Static; thread-safe. */
QP_EXPORT const char *qp_dialect_name(qp_dialect dialect);

/* A buffer of this many bytes always holds a normalized statement: longer
 * normalized text is cut (see qp_normalize). */
#define QP_NORMALIZED_MAX 8192

/* A fingerprint printed as 16 lower-case hex digits plus NUL. */
#define QP_FINGERPRINT_HEX_SIZE 17

typedef struct qp_normalizer qp_normalizer;

/*
 * Creates a normalizer for `dialect` with optional user rules, each
 * "PATTERN=REPLACEMENT" (PCRE2 pattern, split at the last '=' that is not
 * escaped with a backslash), applied in order to every unquoted identifier
 * after lexing, e.g. "tmp_[0-9a-f]{6,}=tmp_?". Rules are compiled once, with
 * JIT where available. `rules` and its strings are borrowed for the call
 * only; `hooks` is copied (may be NULL).
 *
 * Errors: QP_PATTERN when a rule does not compile (errbuf names the rule and
 * the offset), QP_INVALID for a rule without '=', QP_NOMEM. On error *out is
 * NULL and errbuf (may be NULL) holds the message.
 *
 * Thread-safety: once created, a normalizer is immutable and may be used by
 * any number of threads at once.
 */
QP_EXPORT qp_status qp_normalizer_new(qp_normalizer **out, qp_dialect dialect,
                                      const char *const *rules, size_t nrules,
                                      const qp_hooks *hooks, char *errbuf, size_t errlen);

/* Frees a normalizer; NULL is a no-op. No call may be using it. */
QP_EXPORT void qp_normalizer_free(qp_normalizer *n);

/* The dialect the normalizer was created for. */
QP_EXPORT qp_dialect qp_normalizer_dialect(const qp_normalizer *n);

/*
 * Normalizes the statement sql[0..len) (need not be NUL-terminated; NUL bytes
 * inside are treated as ordinary bytes) into out[0..cap): at most cap-1
 * bytes and a NUL. Normalized text longer than that is cut at a UTF-8
 * character boundary; the fingerprint always covers the whole normalized
 * statement, so a cut never merges two shapes. *out_len (may be NULL) gets
 * the bytes written; *fingerprint (may be NULL) the fingerprint.
 *
 * Never fails on any input: malformed SQL, invalid UTF-8, unterminated
 * strings, comments or dollar quotes all give defined output. No recursion,
 * time linear in len, no allocation (user rules take a PCRE2 match-data
 * block from a pool of 16 owned by the normalizer; only a 17th thread inside
 * a rule at the same instant allocates a temporary one). The canonical form
 * and every rule are described in docs/normalizer.md; without user rules,
 * normalizing the normalized text gives it back unchanged.
 * Returns QP_OK, or QP_INVALID when n, sql (with len > 0) or out is NULL or
 * cap is 0. Thread-safe with distinct `out` buffers.
 */
QP_EXPORT qp_status qp_normalize(const qp_normalizer *n, const char *sql, size_t len, char *out,
                                 size_t cap, size_t *out_len, uint64_t *fingerprint);

/* Writes `fp` as 16 lower-case hex digits and a NUL into hex. Thread-safe. */
QP_EXPORT void qp_fingerprint_hex(uint64_t fp, char hex[QP_FINGERPRINT_HEX_SIZE]);

/* Parses 16 hex digits (either case). Returns false otherwise. */
QP_EXPORT bool qp_fingerprint_parse(const char *hex, uint64_t *fp);

/*
 * Splits a script into top-level statements at ';' outside strings,
 * comments, quoted identifiers, dollar quotes, (PostgreSQL) parentheses and
 * BEGIN ATOMIC ... END bodies, and (SQLite) trigger bodies. A comment before
 * a statement belongs to it.
 * Call with *pos = 0, then repeatedly: each call that returns true sets
 * [*start, *start + *stmt_len) to the next statement (without its ';',
 * surrounding white space trimmed) and advances *pos. Statements that are
 * only comments or white space are skipped. Returns false at the end.
 * Never fails; thread-safe.
 */
QP_EXPORT bool qp_sql_split_next(qp_dialect dialect, const char *sql, size_t len, size_t *pos,
                                 size_t *start, size_t *stmt_len);

/*
 * Normalizes the next top-level statement of a script, finding where it ends
 * in the same pass (a script is read once, not split then normalized).
 * The statements, *pos, *start and *stmt_len are exactly those of
 * qp_sql_split_next(qp_normalizer_dialect(n), ...), and out, *out_len and
 * *fingerprint exactly what qp_normalize() gives for the statement's text
 * [*start, *start + *stmt_len). Call with *pos = 0, then repeatedly; returns
 * false at the end of the script, and when an argument is invalid (n, pos or
 * out NULL, cap 0, sql NULL with len > 0; then *pos is unchanged). start,
 * stmt_len, out_len and fingerprint may be NULL. A statement may normalize
 * to the empty text (a user rule that rewrites its only word to nothing).
 * Thread-safety as qp_normalize.
 */
QP_EXPORT bool qp_normalize_next(const qp_normalizer *n, const char *sql, size_t len, size_t *pos,
                                 size_t *start, size_t *stmt_len, char *out, size_t cap,
                                 size_t *out_len, uint64_t *fingerprint);

typedef enum qp_stmt_kind {
  QP_STMT_OTHER = 0,
  QP_STMT_SELECT = 1,  /* SELECT, VALUES, TABLE, WITH ... SELECT, SHOW, EXPLAIN without ANALYZE */
  QP_STMT_INSERT = 2,
  QP_STMT_UPDATE = 3,
  QP_STMT_DELETE = 4,
  QP_STMT_DDL = 5,     /* CREATE, ALTER, DROP, TRUNCATE, COMMENT, GRANT, REVOKE, REINDEX... */
  QP_STMT_TCL = 6,     /* BEGIN, START, COMMIT, END, ROLLBACK, SAVEPOINT, RELEASE, PREPARE TRANSACTION */
  QP_STMT_SESSION = 7, /* SET, RESET, PREPARE, DEALLOCATE, LISTEN, UNLISTEN, DISCARD, PRAGMA... */
  QP_STMT_MERGE = 8,   /* MERGE, INSERT ... ON CONFLICT counts as INSERT */
  QP_STMT_COPY = 9
} qp_stmt_kind;

/* Lower-case name of a kind ("select", "ddl", ...). Static. */
QP_EXPORT const char *qp_stmt_kind_name(qp_stmt_kind kind);

/* What a transaction-control statement does (qp_stmt_info.tcl). */
typedef enum qp_tcl {
  QP_TCL_NONE = 0,
  QP_TCL_BEGIN = 1,             /* BEGIN, START TRANSACTION (SQLite: BEGIN DEFERRED/IMMEDIATE...) */
  QP_TCL_COMMIT = 2,            /* COMMIT, END (also COMMIT AND CHAIN) */
  QP_TCL_ROLLBACK = 3,          /* ROLLBACK, ABORT */
  QP_TCL_SAVEPOINT = 4,         /* SAVEPOINT s */
  QP_TCL_RELEASE = 5,           /* RELEASE [SAVEPOINT] s */
  QP_TCL_ROLLBACK_TO = 6,       /* ROLLBACK [WORK|TRANSACTION] TO [SAVEPOINT] s */
  QP_TCL_PREPARE = 7,           /* PREPARE TRANSACTION 'id' (two-phase commit) */
  QP_TCL_COMMIT_PREPARED = 8,   /* COMMIT PREPARED 'id' */
  QP_TCL_ROLLBACK_PREPARED = 9  /* ROLLBACK PREPARED 'id' */
} qp_tcl;

/* An isolation level named by the statement (qp_stmt_info.isolation). */
typedef enum qp_isolation {
  QP_ISO_NONE = 0, /* the statement names none */
  QP_ISO_READ_UNCOMMITTED = 1,
  QP_ISO_READ_COMMITTED = 2,
  QP_ISO_REPEATABLE_READ = 3,
  QP_ISO_SERIALIZABLE = 4
} qp_isolation;

/* The strongest row-locking clause of a SELECT (qp_stmt_info.locking). */
typedef enum qp_lock {
  QP_LOCK_NONE = 0,
  QP_LOCK_KEY_SHARE = 1,     /* FOR KEY SHARE */
  QP_LOCK_SHARE = 2,         /* FOR SHARE */
  QP_LOCK_NO_KEY_UPDATE = 3, /* FOR NO KEY UPDATE */
  QP_LOCK_UPDATE = 4         /* FOR UPDATE */
} qp_lock;

/* Which DDL-class statement it is (qp_stmt_info.ddl); kind is QP_STMT_DDL
 * for all but QP_DDL_NONE. */
typedef enum qp_ddl {
  QP_DDL_NONE = 0,
  QP_DDL_CREATE = 1,
  QP_DDL_ALTER = 2,
  QP_DDL_DROP = 3,
  QP_DDL_TRUNCATE = 4,
  QP_DDL_GRANT = 5,
  QP_DDL_REVOKE = 6,
  QP_DDL_COMMENT = 7,
  QP_DDL_REFRESH = 8,    /* REFRESH MATERIALIZED VIEW */
  QP_DDL_MAINTENANCE = 9 /* VACUUM, ANALYZE, REINDEX, CLUSTER */
} qp_ddl;

/* Lower-case names of the enums above ("begin", "rollback_to", "serializable",
 * "no_key_update", "truncate", "none"...); "none" for unknown values. Static. */
QP_EXPORT const char *qp_tcl_name(qp_tcl tcl);
QP_EXPORT const char *qp_isolation_name(qp_isolation iso);
QP_EXPORT const char *qp_lock_name(qp_lock lock);
QP_EXPORT const char *qp_ddl_name(qp_ddl ddl);

#define QP_STMT_MAX_TABLES 16
#define QP_STMT_MAX_FUNCS 16
/* Room for one name (table or function) and its NUL. */
#define QP_STMT_NAME_MAX 128
#define QP_STMT_TABLE_NAME_MAX QP_STMT_NAME_MAX

/*
 * What one statement does, as qp_sql_classify() reads it from the text alone
 * (no catalog): docs/classifier.md gives each field's exact rule and limits.
 *
 * The struct grows: fields are only ever appended, never reordered or
 * removed, and a new field's zero value means "not known / no". The caller
 * sets `size` to sizeof(qp_stmt_info) of the header it was built with
 * (QP_STMT_INFO_INIT does); the library writes exactly that many bytes, so a
 * program built against an older header keeps working with a newer library
 * and the other way round (fields the library does not know are zeroed).
 */
typedef struct qp_stmt_info {
  size_t size; /* set by the caller: sizeof(qp_stmt_info) */
  qp_stmt_kind kind;
  /* True only when the statement cannot write: a SELECT (or EXPLAIN without
   * ANALYZE) without a locking clause, data-modifying CTEs, SELECT INTO, or
   * calls known to write (nextval, setval, pg_advisory_lock...). */
  bool read_only;
  /* True when the result may differ between two runs on the same data:
   * now(), random(), current_timestamp, nextval(), 'now'... from a fixed
   * list (see docs/classifier.md). A function not on the list is not
   * flagged: ask the server about `funcs`. */
  bool volatile_fn;
  /* True when reads or writes were more than QP_STMT_MAX_TABLES, a name did
   * not fit, or parentheses nested deeper than the classifier tracks: the
   * table lists below are then incomplete. */
  bool tables_truncated;
  size_t nread, nwrite;
  /* Table names as written, schema-qualified when written so ("public.t"),
   * unquoted names lower-cased, quoted ones verbatim without quotes; each
   * listed once, in order of appearance. Entries past nread/nwrite are
   * undefined. */
  char read[QP_STMT_MAX_TABLES][QP_STMT_NAME_MAX];
  char write[QP_STMT_MAX_TABLES][QP_STMT_NAME_MAX];

  /* Leaves session state behind that would leak into the next user of the
   * connection: SET (not LOCAL/TRANSACTION/CONSTRAINTS), RESET, PREPARE,
   * LISTEN, LOAD, DECLARE, temporary objects, DO blocks, session advisory
   * locks, set_config(); SQLite PRAGMA, ATTACH, DETACH. Over-approximates. */
  bool changes_session;
  /* Drops the server's prepared statements: DEALLOCATE, DISCARD (and a DO
   * block whose body names either). */
  bool drops_prepared;
  qp_tcl tcl;             /* transaction control, else QP_TCL_NONE */
  qp_isolation isolation; /* BEGIN/START/SET TRANSACTION ... ISOLATION LEVEL, SET
                           * [default_]transaction_isolation */
  qp_lock locking;        /* FOR UPDATE/SHARE... anywhere in the statement */
  bool writing_cte;       /* a data-modifying statement inside WITH (or parentheses) */
  bool select_into;       /* SELECT ... INTO t: creates and writes t */
  qp_ddl ddl;             /* which DDL-class verb, else QP_DDL_NONE */
  /* A DDL/GRANT/REVOKE whose effect on other statements' results is not
   * bounded by `write` (functions, schemas, types, roles, policies, CASCADE,
   * an unknown target): a result cache should drop everything. */
  bool flush_all;
  bool creates_temp;      /* CREATE TEMP ..., SELECT INTO TEMP, a pg_temp. name */
  /* Reads a system catalog: a name in pg_catalog or information_schema, an
   * unqualified pg_* table or function (PostgreSQL), sqlite_master,
   * sqlite_schema, sqlite_temp_master, sqlite_sequence, sqlite_stat*, or a
   * pragma_* table-valued function (SQLite). */
  bool system_catalog;
  /* True when calls were more than QP_STMT_MAX_FUNCS or a name did not fit;
   * volatile_fn, read_only and changes_session still saw every call. */
  bool funcs_truncated;
  size_t nfuncs;
  /* Functions called, by name as written (schema-qualified when written so,
   * unquoted parts lower-cased), each once, in order of appearance. Not
   * listed: SQL syntax that looks like a call (CAST, COALESCE, NULLIF,
   * GREATEST, LEAST, ROW, ARRAY, EXISTS, TRIM, type modifiers such as
   * varchar(10)), and in DDL every call before the statement's query (AS
   * SELECT ...). Entries past nfuncs are undefined. */
  char funcs[QP_STMT_MAX_FUNCS][QP_STMT_NAME_MAX];

  /* ---- appended after the first growable version (QP_STMT_INFO_MIN_SIZE) ---- */
  /* Which settings that say who runs the session's statements the statement
   * sets or resets: QP_IDENT_* bits, 0 for none. Read from the head of the
   * statement only: SET [SESSION|LOCAL] ROLE x (also SET role {TO|=} x),
   * RESET ROLE, SET [SESSION|LOCAL] SESSION AUTHORIZATION x|DEFAULT (also
   * session_authorization {TO|=} x; it resets the role as well: ROLE |
   * SESSION_AUTH), RESET SESSION AUTHORIZATION, SET/RESET application_name,
   * RESET ALL (application_name only: the server's RESET ALL leaves role and
   * session authorization alone) and DISCARD ALL (all three). A set_config()
   * call inside a query is not seen here (see `funcs`). PostgreSQL only. */
  unsigned identity;
  /* SET LOCAL: the change lasts until the end of the current transaction
   * block (and has no effect outside one). */
  bool identity_local;
  /* The change is back to the session's default rather than to a name:
   * RESET, SET ROLE NONE (or 'none'), DEFAULT, DISCARD ALL. */
  bool identity_default;
  /* For QP_IDENT_ROLE or QP_IDENT_SESSION_AUTH with a name: the role named,
   * as the server reads it (unquoted lower-cased, a quoted identifier or a
   * plain '...' string verbatim); "" when identity_default, or when the
   * value is not a plain name (an E'' string, a parameter) or does not fit. */
  char identity_name[QP_STMT_NAME_MAX];
} qp_stmt_info;

/* Bits of qp_stmt_info.identity. */
#define QP_IDENT_ROLE 1u         /* the current role (current_user) */
#define QP_IDENT_SESSION_AUTH 2u /* the session user (session_authorization) */
#define QP_IDENT_APPLICATION 4u  /* application_name */

/* Initializes a qp_stmt_info for qp_sql_classify: `qp_stmt_info info =
 * QP_STMT_INFO_INIT;` or, without zeroing 6 KB, `info.size = sizeof info;`. */
#define QP_STMT_INFO_INIT {.size = sizeof(qp_stmt_info)}

/* The smallest `size` qp_sql_classify accepts (this first growable version). */
#define QP_STMT_INFO_MIN_SIZE (offsetof(qp_stmt_info, funcs) + QP_STMT_MAX_FUNCS * QP_STMT_NAME_MAX)

/*
 * Classifies the first statement of sql[0..len) (need not be NUL-terminated)
 * into *info, whose `size` the caller has set (see qp_stmt_info): its kind,
 * the tables it reads (FROM, JOIN, subqueries, CTE bodies; not CTE names) and
 * writes (INSERT INTO, UPDATE, DELETE FROM, MERGE INTO, TRUNCATE, DDL
 * targets), the functions it calls and the other fields above. Text after
 * the first top-level ';' is ignored.
 *
 * Never fails on any input: unknown input is QP_STMT_OTHER with read_only
 * false. No allocation, no recursion, time linear in len. Returns QP_OK, or
 * QP_INVALID (info untouched) when info is NULL or info->size is smaller than
 * QP_STMT_INFO_MIN_SIZE. sql may be NULL when len is 0 (or is treated as
 * empty). Thread-safe.
 */
QP_EXPORT qp_status qp_sql_classify(qp_dialect dialect, const char *sql, size_t len,
                                    qp_stmt_info *info);

#ifdef __cplusplus
}
#endif
#endif
