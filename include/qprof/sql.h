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

#define QP_STMT_MAX_TABLES 16
#define QP_STMT_TABLE_NAME_MAX 128

typedef struct qp_stmt_info {
  qp_stmt_kind kind;
  /* True only when the statement cannot write: a plain SELECT without
   * FOR UPDATE/SHARE, data-modifying CTEs, SELECT INTO, or calls that are
   * known to write (nextval, setval, pg_advisory_lock...). */
  bool read_only;
  /* True when the result may differ between two runs on the same data:
   * now(), random(), current_timestamp, nextval()... (the cache refuses it). */
  bool volatile_fn;
  /* True when reads or writes were more than QP_STMT_MAX_TABLES or a name
   * did not fit: the lists below are then incomplete. */
  bool tables_truncated;
  size_t nread, nwrite;
  /* Table names as written, schema-qualified when written so ("public.t"),
   * unquoted names lower-cased, quoted ones verbatim without quotes. */
  char read[QP_STMT_MAX_TABLES][QP_STMT_TABLE_NAME_MAX];
  char write[QP_STMT_MAX_TABLES][QP_STMT_TABLE_NAME_MAX];
} qp_stmt_info;

/*
 * Classifies one statement and lists the tables it reads (FROM, JOIN,
 * subqueries, CTE bodies; not CTE names) and writes (INSERT INTO, UPDATE,
 * DELETE FROM, MERGE INTO, TRUNCATE, DDL targets). Never fails: unknown
 * input is QP_STMT_OTHER with read_only false. Thread-safe.
 */
QP_EXPORT void qp_sql_classify(qp_dialect dialect, const char *sql, size_t len, qp_stmt_info *info);

#ifdef __cplusplus
}
#endif
#endif
