/*
 * Statement parameters and results, shared by everything that runs
 * statements (the pool's leases; the cache and the advisor next). A
 * qp_result is owned by the caller, independent of the lease and pool that
 * made it, and used by one thread at a time.
 */
#ifndef QPROF_RESULT_H
#define QPROF_RESULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qp_result qp_result;

typedef enum qp_param_type {
  QP_PARAM_NULL = 0,
  QP_PARAM_TEXT = 1,   /* text / len bytes (len SIZE_MAX: NUL-terminated) */
  QP_PARAM_INT64 = 2,  /* i */
  QP_PARAM_DOUBLE = 3, /* d */
  QP_PARAM_BLOB = 4    /* text / len raw bytes: bytea (sent in binary) / BLOB */
} qp_param_type;

/* One statement parameter ($1.. on PostgreSQL, ?/?N/:name in order on SQLite).
 * Pointers are borrowed for the call. */
typedef struct qp_param {
  qp_param_type type;
  const char *text;
  size_t len;
  int64_t i;
  double d;
  uint32_t pg_type; /* PostgreSQL type OID for TEXT (e.g. 1082 date); 0 = inferred; SQLite ignores */
} qp_param;

/* Parameter constructors, one per type: qp_param_text takes a NUL-terminated
 * string (its length is found when the statement runs), qp_param_blob `len`
 * raw bytes. Nothing is copied: the pointers are borrowed, as for qp_param, and
 * must stay valid until the call they are passed to returns. They cannot fail;
 * thread-safe. */
static inline qp_param qp_param_null(void) {
  qp_param p = {QP_PARAM_NULL, NULL, 0, 0, 0.0, 0};
  return p;
}
static inline qp_param qp_param_text(const char *s) {
  qp_param p = {QP_PARAM_TEXT, s, (size_t)-1, 0, 0.0, 0};
  return p;
}
static inline qp_param qp_param_int(int64_t v) {
  qp_param p = {QP_PARAM_INT64, NULL, 0, v, 0.0, 0};
  return p;
}
static inline qp_param qp_param_double(double v) {
  qp_param p = {QP_PARAM_DOUBLE, NULL, 0, 0, v, 0};
  return p;
}
static inline qp_param qp_param_blob(const void *data, size_t len) {
  qp_param p = {QP_PARAM_BLOB, (const char *)data, len, 0, 0.0, 0};
  return p;
}

typedef enum qp_txn_status {
  QP_TXN_IDLE = 0,     /* not in a transaction */
  QP_TXN_ACTIVE = 1,   /* a statement is running */
  QP_TXN_INTRANS = 2,  /* inside a transaction block */
  QP_TXN_INERROR = 3,  /* inside a failed transaction block */
  QP_TXN_UNKNOWN = 4   /* the connection is broken */
} qp_txn_status;

/* ---- results (owned by the caller; any thread, one at a time) ---------- */

/* Frees a result; NULL is a no-op. */
QP_EXPORT void qp_result_free(qp_result *res);
/* Rows returned and columns per row. */
QP_EXPORT size_t qp_result_rows(const qp_result *res);
QP_EXPORT size_t qp_result_cols(const qp_result *res);
/* Rows inserted, updated or deleted; -1 for statements that return rows or
 * do not report a count. */
QP_EXPORT int64_t qp_result_affected(const qp_result *res);
/* Column name, owned by the result; NULL when col is out of range. */
QP_EXPORT const char *qp_result_colname(const qp_result *res, size_t col);
/* True for SQL NULL (and for a row/column out of range). */
QP_EXPORT bool qp_result_isnull(const qp_result *res, size_t row, size_t col);
/* The value in text form, NUL-terminated, owned by the result; *len (may be
 * NULL) gets its length. NULL for SQL NULL or out of range. bytea comes in
 * PostgreSQL's text form (\x...): use qp_result_blob for the bytes. */
QP_EXPORT const char *qp_result_value(const qp_result *res, size_t row, size_t col, size_t *len);
/* The value as raw bytes: decoded bytea on PostgreSQL, the BLOB (or text)
 * bytes on SQLite. Owned by the result. NULL for SQL NULL, out of range or
 * out of memory. Not thread-safe for one result (decodes lazily). */
QP_EXPORT const void *qp_result_blob(qp_result *res, size_t row, size_t col, size_t *len);
/* The value as a 64-bit integer. Errors: QP_INVALID (NULL or not an
 * integer), QP_RANGE. */
QP_EXPORT qp_status qp_result_int64(const qp_result *res, size_t row, size_t col, int64_t *out);

#ifdef __cplusplus
}
#endif
#endif
