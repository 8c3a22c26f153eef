/* What both backends share: errors, the statement cache, result dispatch. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "backend.h"

void qp__berr_clear(qp__berr *e) {
  e->status = QP_OK;
  e->code[0] = '\0';
  e->msg[0] = '\0';
  e->transient = false;
  e->timed_out = false;
}

qp_status qp__berr_set(qp__berr *e, qp_status st, const char *code, const char *fmt, ...) {
  e->status = st;
  snprintf(e->code, sizeof e->code, "%s", code ? code : "");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  return st;
}

void qp__plan_free(const qp_hooks *h, qp__plan *plan) {
  if (plan == NULL) return;
  qp__free(h, plan->text);
  plan->text = NULL;
  plan->len = 0;
}

const qp__backend_ops *qp__backend_for_dsn(const char *dsn) {
  if (qp__backend_sqlite.accepts(dsn)) return &qp__backend_sqlite;
  return &qp__backend_pg;
}

/* ---- statement cache ---------------------------------------------------- */

void qp__stmt_cache_init(qp__stmt_cache *c, const qp_hooks *h, size_t max) {
  memset(c, 0, sizeof *c);
  c->hooks = h;
  c->max = max;
}

static size_t probe_start(const qp__stmt_cache *c, uint64_t hash) {
  return (size_t)hash & (c->cap - 1);
}

qp__stmt_entry *qp__stmt_cache_find(qp__stmt_cache *c, const char *sql, size_t len) {
  if (c->count == 0) return NULL;
  uint64_t h = XXH3_64bits(sql, len);
  for (size_t i = probe_start(c, h);; i = (i + 1) & (c->cap - 1)) {
    qp__stmt_entry *e = &c->slots[i];
    if (e->sql == NULL) return NULL;
    if (e->hash == h && e->len == len && memcmp(e->sql, sql, len) == 0) return e;
  }
}

static size_t memo_slot(const char *sql) {
  /* Fibonacci hashing of the address: literals sit a few bytes apart */
  return (size_t)(((uintptr_t)sql * 0x9e3779b97f4a7c15ull) >> 61) & (QP__STMT_MEMO - 1);
}

static void memo_forget(qp__stmt_cache *c) { memset(c->memo, 0, sizeof c->memo); }

qp__stmt_entry *qp__stmt_cache_find_str(qp__stmt_cache *c, const char *sql, size_t *len) {
  size_t m = memo_slot(sql);
  qp__stmt_entry *e = c->memo[m].e;
  /* strncmp over len + 1 bytes compares the terminators too and stops at
   * the caller's NUL, so it never reads past a shorter string */
  if (e != NULL && c->memo[m].sql == sql && strncmp(e->sql, sql, e->len + 1) == 0) {
    *len = e->len;
    return e;
  }
  *len = strlen(sql);
  e = qp__stmt_cache_find(c, sql, *len);
  if (e != NULL) {
    c->memo[m].sql = sql;
    c->memo[m].e = e;
  }
  return e;
}

static bool cache_grow(qp__stmt_cache *c) {
  size_t ncap = c->cap ? c->cap * 2 : 16;
  qp__stmt_entry *ns = qp__calloc(c->hooks, ncap, sizeof *ns);
  if (ns == NULL) return false;
  for (size_t i = 0; i < c->cap; i++) {
    qp__stmt_entry *e = &c->slots[i];
    if (e->sql == NULL) continue;
    size_t j = (size_t)e->hash & (ncap - 1);
    while (ns[j].sql != NULL) j = (j + 1) & (ncap - 1);
    ns[j] = *e;
  }
  qp__free(c->hooks, c->slots);
  c->slots = ns;
  c->cap = ncap;
  memo_forget(c); /* entries moved */
  return true;
}

qp__stmt_entry *qp__stmt_cache_add(qp__stmt_cache *c, const char *sql, size_t len, void *handle) {
  if (c->count >= c->max) return NULL;
  /* keep the load factor under one half */
  if ((c->count + 1) * 2 > c->cap && !cache_grow(c)) return NULL;
  char *copy = qp__strndup(c->hooks, sql, len);
  if (copy == NULL) return NULL;
  uint64_t h = XXH3_64bits(sql, len);
  size_t i = probe_start(c, h);
  while (c->slots[i].sql != NULL) i = (i + 1) & (c->cap - 1);
  qp__stmt_entry *e = &c->slots[i];
  e->hash = h;
  e->sql = copy;
  e->len = len;
  e->handle = handle;
  e->nparams = -1;
  e->session = -1;
  e->drops = -1;
  e->ident = -1;
  c->count++;
  return e;
}

void qp__stmt_entry_classify(qp__stmt_entry *e, qp_dialect dialect) {
  if (e->session >= 0 && e->drops >= 0 && e->ident >= 0) return;
  qp_stmt_info info;
  info.size = sizeof info;
  qp_sql_classify(dialect, e->sql, e->len, &info);
  e->session = info.changes_session;
  e->drops = info.drops_prepared;
  e->ident = (int8_t)(info.identity | (info.tcl == QP_TCL_ROLLBACK_TO ? QP__IDENT_ROLLBACK_TO : 0));
}

void qp__stmt_cache_clear(qp__stmt_cache *c, void (*fn)(void *handle, void *ud), void *ud) {
  for (size_t i = 0; i < c->cap; i++) {
    qp__stmt_entry *e = &c->slots[i];
    if (e->sql == NULL) continue;
    if (fn) fn(e->handle, ud);
    qp__free(c->hooks, e->sql);
    qp__free(c->hooks, e->norm);
    memset(e, 0, sizeof *e);
  }
  c->count = 0;
  memo_forget(c);
}

void qp__stmt_cache_free(qp__stmt_cache *c, void (*fn)(void *handle, void *ud), void *ud) {
  qp__stmt_cache_clear(c, fn, ud);
  qp__free(c->hooks, c->slots);
  c->slots = NULL;
  c->cap = 0;
}

/* ---- results: public accessors dispatch to the backend ------------------ */

void qp_result_free(qp_result *res) {
  if (res != NULL) res->ops->free(res);
}

size_t qp_result_rows(const qp_result *res) { return res ? res->nrows : 0; }

size_t qp_result_cols(const qp_result *res) { return res ? res->ncols : 0; }

int64_t qp_result_affected(const qp_result *res) { return res ? res->ops->affected(res) : -1; }

const char *qp_result_colname(const qp_result *res, size_t col) {
  if (res == NULL || col >= res->ncols) return NULL;
  return res->ops->colname(res, col);
}

static bool in_range(const qp_result *res, size_t row, size_t col) {
  return res != NULL && row < res->nrows && col < res->ncols;
}

bool qp_result_isnull(const qp_result *res, size_t row, size_t col) {
  if (!in_range(res, row, col)) return true;
  return res->ops->isnull(res, row, col);
}

const char *qp_result_value(const qp_result *res, size_t row, size_t col, size_t *len) {
  if (len) *len = 0;
  if (!in_range(res, row, col) || res->ops->isnull(res, row, col)) return NULL;
  return res->ops->value(res, row, col, len);
}

const void *qp_result_blob(qp_result *res, size_t row, size_t col, size_t *len) {
  if (len) *len = 0;
  if (!in_range(res, row, col) || res->ops->isnull(res, row, col)) return NULL;
  return res->ops->blob(res, row, col, len);
}

qp_status qp_result_int64(const qp_result *res, size_t row, size_t col, int64_t *out) {
  size_t len;
  const char *v = qp_result_value(res, row, col, &len);
  if (v == NULL || len == 0) return QP_INVALID;
  char *end;
  errno = 0;
  long long n = strtoll(v, &end, 10);
  if (errno == ERANGE) return QP_RANGE;
  if (*end != '\0') return QP_INVALID;
  *out = n;
  return QP_OK;
}

qp_status qp__plan_take(const qp_hooks *h, qp_status st, qp_buf *text, qp__plan *out,
                        qp__berr *err) {
  if (st != QP_OK) {
    qp__buf_free(text);
    return st;
  }
  out->len = text->len;
  out->text = text->data != NULL ? text->data : qp__strdup(h, "");
  if (out->text == NULL) return qp__berr_set(err, QP_NOMEM, "", "out of memory");
  return QP_OK;
}
