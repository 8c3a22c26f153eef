/*
 * The SQLite backend over sqlite3: "sqlite:///abs/path.db", "sqlite:rel.db",
 * "sqlite::memory:". Every connection runs in WAL mode with a busy timeout,
 * caches its prepared statements by SQL text and keeps SQLite's extended
 * result codes (by name) with every error.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "qprof/profile.h"
#include "sqlite_cache.h"
#include "sqlite_codes.h"

#define SQ_BUSY_TIMEOUT_MS 5000

struct qp__bconn {
  const qp_hooks *hooks;
  sqlite3 *db;
  char *path;        /* as passed to sqlite3_open_v2; owned */
  bool memory;
  bool broken;
  qp__stmt_cache cache;
  /* the result cache's row-change callback, installed on every open */
  qp__change_fn watch_fn;
  void *watch_ud;
  /* the result cache's check for other connections' commits, per file
   * (lib/backend/sqlite_cache.c); its statements are finalized before db
   * closes */
  qp__sq_watch watch;
};

/* ---- results ------------------------------------------------------------ */

typedef struct sq_cell {
  size_t off, len;
  bool null;
} sq_cell;

#define SQ_SMALL_CELLS 8
#define SQ_SMALL_DATA 256

/* One allocation holds a small result (a point SELECT): cells and bytes
 * start inline and move to the heap only when they outgrow it. */
typedef struct sq_result {
  qp_result base; /* base.nrows, base.ncols */
  size_t cap_cells;
  int64_t affected;
  sq_cell *cells;   /* ncols column names first, then nrows * ncols values */
  char *data;
  size_t dlen, dcap;
  sq_cell small_cells[SQ_SMALL_CELLS];
  char small_data[SQ_SMALL_DATA];
} sq_result;

static void sqr_free(qp_result *r) {
  sq_result *s = (sq_result *)r;
  if (s->cells != s->small_cells) qp__free(&r->hooks, s->cells);
  if (s->data != s->small_data) qp__free(&r->hooks, s->data);
  qp__free(&r->hooks, s);
}
static int64_t sqr_affected(const qp_result *r) { return ((const sq_result *)r)->affected; }
static const sq_cell *sqr_cell(const qp_result *r, size_t row, size_t col) {
  const sq_result *s = (const sq_result *)r;
  return &s->cells[s->base.ncols + row * s->base.ncols + col];
}
static const char *sqr_colname(const qp_result *r, size_t col) {
  const sq_result *s = (const sq_result *)r;
  return s->data + s->cells[col].off;
}
static bool sqr_isnull(const qp_result *r, size_t row, size_t col) {
  return sqr_cell(r, row, col)->null;
}
static const char *sqr_value(const qp_result *r, size_t row, size_t col, size_t *len) {
  const sq_cell *c = sqr_cell(r, row, col);
  if (len) *len = c->len;
  return ((const sq_result *)r)->data + c->off;
}
static const void *sqr_blob(qp_result *r, size_t row, size_t col, size_t *len) {
  return sqr_value(r, row, col, len);
}

static const qp__result_ops sq_result_ops = {sqr_free,   sqr_affected,
                                             sqr_colname, sqr_isnull, sqr_value, sqr_blob, NULL};

/* Grows a buffer that may still be the inline one. */
static void *grow(const qp_hooks *h, void *cur, const void *inline_buf, size_t used, size_t cap) {
  if (cur == inline_buf) {
    void *n = qp__malloc(h, cap);
    if (n != NULL) memcpy(n, cur, used);
    return n;
  }
  return qp__realloc(h, cur, cap);
}

static sq_result *sqr_new(const qp_hooks *h, size_t ncols) {
  sq_result *s = qp__malloc(h, sizeof *s);
  if (s == NULL) return NULL;
  s->base.ops = &sq_result_ops;
  s->base.hooks = *h;
  s->base.nrows = 0;
  s->base.ncols = ncols;
  s->affected = -1;
  s->cells = s->small_cells;
  s->cap_cells = SQ_SMALL_CELLS;
  s->data = s->small_data;
  s->dlen = 0;
  s->dcap = SQ_SMALL_DATA;
  if (ncols * 2 > s->cap_cells) {
    size_t cap = ncols * 2;
    sq_cell *c = qp__malloc(h, cap * sizeof *c);
    if (c == NULL) {
      qp__free(h, s);
      return NULL;
    }
    s->cells = c;
    s->cap_cells = cap;
  }
  return s;
}

/* Appends bytes plus a NUL to the data buffer; false on out of memory. */
static bool sqr_put(sq_result *s, sq_cell *c, const void *p, size_t n) {
  if (s->dlen + n + 1 > s->dcap) {
    size_t cap = s->dcap * 2;
    while (cap < s->dlen + n + 1) cap *= 2;
    char *d = grow(&s->base.hooks, s->data, s->small_data, s->dlen, cap);
    if (d == NULL) return false;
    s->data = d;
    s->dcap = cap;
  }
  c->off = s->dlen;
  c->len = n;
  char *d = s->data + s->dlen;
  if (n <= 16) { /* names and numbers: cheaper than a call to memcpy */
    const char *src = p;
    for (size_t i = 0; i < n; i++) d[i] = src[i];
  } else {
    memcpy(d, p, n);
  }
  d[n] = '\0';
  s->dlen += n + 1;
  return true;
}

static bool sqr_add_row(sq_result *s, sqlite3_stmt *st) {
  size_t ncols = s->base.ncols;
  size_t need = ncols * (s->base.nrows + 2);
  if (need > s->cap_cells) {
    size_t cap = s->cap_cells * 2;
    while (cap < need) cap *= 2;
    sq_cell *nc = grow(&s->base.hooks, s->cells, s->small_cells,
                       ncols * (s->base.nrows + 1) * sizeof *nc, cap * sizeof *nc);
    if (nc == NULL) return false;
    s->cells = nc;
    s->cap_cells = cap;
  }
  sq_cell *row = &s->cells[ncols + s->base.nrows * ncols];
  for (size_t i = 0; i < ncols; i++) {
    int t = sqlite3_column_type(st, (int)i);
    row[i].null = t == SQLITE_NULL;
    bool ok;
    if (t == SQLITE_NULL) ok = sqr_put(s, &row[i], "", 0);
    else if (t == SQLITE_INTEGER) {
      /* Formatted here rather than by sqlite3_column_text, which would
       * convert the value inside the statement (an allocation under
       * SQLite's memory mutex, freed again at reset) for the same text. */
      char buf[24];
      ok = sqr_put(s, &row[i], buf, qp__fmt_i64(sqlite3_column_int64(st, (int)i), buf));
    } else if (t == SQLITE_BLOB) {
      const void *p = sqlite3_column_blob(st, (int)i);
      ok = sqr_put(s, &row[i], p ? p : "", (size_t)sqlite3_column_bytes(st, (int)i));
    } else {
      const unsigned char *p = sqlite3_column_text(st, (int)i);
      if (p == NULL) return false; /* out of memory inside SQLite */
      ok = sqr_put(s, &row[i], p, (size_t)sqlite3_column_bytes(st, (int)i));
    }
    if (!ok) return false;
  }
  s->base.nrows++;
  return true;
}

/* ---- connections ------------------------------------------------------- */

static bool sq_accepts(const char *dsn) { return dsn != NULL && strncmp(dsn, "sqlite:", 7) == 0; }

const char *qp__sqlite_dsn_path(const char *dsn) {
  if (!sq_accepts(dsn)) return NULL;
  const char *p = dsn + 7;
  if (strcmp(p, ":memory:") == 0) return p;
  if (strncmp(p, "//", 2) == 0) p += 2;
  return *p ? p : NULL;
}

static const char *sq_path(const char *dsn) { return qp__sqlite_dsn_path(dsn); }

static qp_status sq_check_dsn(const char *dsn, qp__berr *err) {
  if (!sq_accepts(dsn) || sq_path(dsn) == NULL)
    return qp__berr_set(err, QP_INVALID, "", "malformed SQLite DSN '%s': expected "
                        "sqlite:///path/to/file.db or sqlite::memory:", dsn ? dsn : "(null)");
  return QP_OK;
}

static qp_status sq_error(qp__bconn *b, int rc, qp__berr *err, const char *what) {
  int ext = b->db ? sqlite3_extended_errcode(b->db) : rc;
  if ((ext & 0xff) != (rc & 0xff)) ext = rc;
  qp_status st = QP_QUERY;
  if ((rc & 0xff) == SQLITE_NOMEM) st = QP_NOMEM;
  return qp__berr_set(err, st, qp__sqlite_code_name(ext), "%s: %s (%s)", what,
                      b->db ? sqlite3_errmsg(b->db) : sqlite3_errstr(rc), qp__sqlite_code_name(ext));
}

static void finalize_handle(void *handle, void *ud) {
  (void)ud;
  sqlite3_finalize(handle);
}

/* Every row change (triggers and cascades included) goes to the result
 * cache's callback when one is set (qp__cache_ops.watch). */
static void sq_update_hook(void *ud, int op, const char *db, const char *table,
                           sqlite3_int64 rowid) {
  (void)op;
  (void)rowid;
  qp__bconn *b = ud;
  if (b->watch_fn != NULL) b->watch_fn(b->watch_ud, db, table);
}

static qp_status sq_open_db(qp__bconn *b, qp__berr *err) {
  int rc = sqlite3_open_v2(b->path, &b->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    qp__berr_set(err, rc == SQLITE_NOMEM ? QP_NOMEM : QP_UNAVAILABLE,
                 qp__sqlite_code_name(b->db ? sqlite3_extended_errcode(b->db) : rc),
                 "cannot open SQLite database '%s': %s", b->path,
                 b->db ? sqlite3_errmsg(b->db) : sqlite3_errstr(rc));
    sqlite3_close_v2(b->db);
    b->db = NULL;
    return err->status;
  }
  sqlite3_extended_result_codes(b->db, 1);
  sqlite3_busy_timeout(b->db, SQ_BUSY_TIMEOUT_MS);
  sqlite3_update_hook(b->db, sq_update_hook, b);
  /* WAL lets readers run beside one writer; NORMAL sync is WAL's usual
   * pairing (durable at checkpoints, never corrupt). Both are no-ops for
   * :memory:. */
  char *msg = NULL;
  rc = sqlite3_exec(b->db, b->memory ? "PRAGMA foreign_keys=ON"
                                     : "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                                       "PRAGMA foreign_keys=ON",
                    NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    qp__berr_set(err, QP_UNAVAILABLE, qp__sqlite_code_name(sqlite3_extended_errcode(b->db)),
                 "cannot set up SQLite database '%s': %s", b->path, msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    sqlite3_close_v2(b->db);
    b->db = NULL;
    return err->status;
  }
  memset(&b->watch, 0, sizeof b->watch);
  qp__sq_watch_reset(&b->watch);
  sqlite3_set_authorizer(b->db, qp__sq_authorize, &b->watch);
  return QP_OK;
}

static qp_status sq_connect(const char *dsn, const qp__bconnect_opts *o, qp__bconn **out,
                            qp__berr *err) {
  *out = NULL;
  qp_status st = sq_check_dsn(dsn, err);
  if (st != QP_OK) return st;
  qp__bconn *b = qp__calloc(o->hooks, 1, sizeof *b);
  if (b == NULL) return qp__berr_set(err, QP_NOMEM, "", "out of memory");
  b->hooks = o->hooks;
  b->path = qp__strdup(o->hooks, sq_path(dsn));
  if (b->path == NULL) {
    qp__free(o->hooks, b);
    return qp__berr_set(err, QP_NOMEM, "", "out of memory");
  }
  b->memory = strcmp(b->path, ":memory:") == 0;
  qp__stmt_cache_init(&b->cache, o->hooks, o->stmt_cache_max);
  st = sq_open_db(b, err);
  if (st != QP_OK) {
    qp__free(o->hooks, b->path);
    qp__free(o->hooks, b);
    return st;
  }
  *out = b;
  return QP_OK;
}

static void sq_close(qp__bconn *b) {
  if (b == NULL) return;
  qp__stmt_cache_free(&b->cache, finalize_handle, NULL);
  qp__sq_watch_reset(&b->watch);
  sqlite3_close_v2(b->db);
  qp__free(b->hooks, b->path);
  qp__free(b->hooks, b);
}

/* SQLite forbids using, or even closing, a connection carried across fork():
 * closing could release the parent's POSIX locks. The handle and its
 * statements are leaked on purpose; only qprof's own memory is freed. */
static void sq_abandon(qp__bconn *b) {
  if (b == NULL) return;
  qp__stmt_cache_free(&b->cache, NULL, NULL);
  qp__free(b->hooks, b->path);
  qp__free(b->hooks, b);
}

/* `expected` is the statement's parameter count (cached with it). */
static inline __attribute__((always_inline)) qp_status
sq_bind(qp__bconn *b, sqlite3_stmt *st, int expected, const qp_param *params,
                         size_t n, qp__berr *err) {
  if ((size_t)expected != n)
    return qp__berr_set(err, QP_INVALID, "SQLITE_RANGE",
                        "statement has %d parameter%s, %zu given", expected,
                        expected == 1 ? "" : "s", n);
  for (size_t i = 0; i < n; i++) {
    const qp_param *p = &params[i];
    int idx = (int)i + 1, rc;
    switch (p->type) {
    case QP_PARAM_NULL: rc = sqlite3_bind_null(st, idx); break;
    case QP_PARAM_TEXT: {
      if (p->text == NULL)
        return qp__berr_set(err, QP_INVALID, "", "parameter %zu: text is NULL", i + 1);
      size_t len = p->len == (size_t)-1 ? strlen(p->text) : p->len;
      rc = sqlite3_bind_text64(st, idx, p->text, len, SQLITE_STATIC, SQLITE_UTF8);
      break;
    }
    case QP_PARAM_INT64: rc = sqlite3_bind_int64(st, idx, p->i); break;
    case QP_PARAM_DOUBLE: rc = sqlite3_bind_double(st, idx, p->d); break;
    case QP_PARAM_BLOB:
      if (p->text == NULL && p->len > 0)
        return qp__berr_set(err, QP_INVALID, "", "parameter %zu: blob is NULL", i + 1);
      rc = sqlite3_bind_blob64(st, idx, p->text ? (const void *)p->text : "", p->len,
                               SQLITE_STATIC);
      break;
    default:
      return qp__berr_set(err, QP_INVALID, "", "parameter %zu: unknown type %d", i + 1,
                          (int)p->type);
    }
    if (rc != SQLITE_OK) return sq_error(b, rc, err, "cannot bind parameter");
  }
  return QP_OK;
}

static bool only_space(const char *p, const char *end) {
  for (; p < end; p++)
    if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != ';') return false;
  return true;
}

/* The cached statement for sql, prepared now if needed. *owned is set when
 * the cache is full and the caller must finalize the statement. len may be
 * QP__SQL_NTS. *nparams gets the statement's parameter count. */
static qp_status sq_get_stmt(qp__bconn *b, const char *sql, size_t len, sqlite3_stmt **out,
                             int *nparams, bool *owned, qp__stmt_entry **entry, qp__berr *err) {
  *owned = false;
  qp__stmt_entry *e = len == QP__SQL_NTS ? qp__stmt_cache_find_str(&b->cache, sql, &len)
                                         : qp__stmt_cache_find(&b->cache, sql, len);
  *entry = e;
  if (e != NULL) {
    *out = e->handle;
    *nparams = (int)e->nparams;
    return QP_OK;
  }
  sqlite3_stmt *st = NULL;
  const char *tail = NULL;
  if (len > (size_t)0x7fffffff) return qp__berr_set(err, QP_TOOBIG, "", "statement too long");
  int rc = sqlite3_prepare_v3(b->db, sql, (int)len, SQLITE_PREPARE_PERSISTENT, &st, &tail);
  if (rc != SQLITE_OK) return sq_error(b, rc, err, "prepare failed");
  if (st == NULL)
    return qp__berr_set(err, QP_INVALID, "", "empty statement");
  if (tail != NULL && !only_space(tail, sql + len)) {
    sqlite3_finalize(st);
    return qp__berr_set(err, QP_INVALID, "",
                        "several statements in one call: use qp_conn_exec_script");
  }
  *nparams = sqlite3_bind_parameter_count(st);
  *entry = qp__stmt_cache_add(&b->cache, sql, len, st);
  if (*entry == NULL) *owned = true;
  else (*entry)->nparams = *nparams;
  *out = st;
  return QP_OK;
}

static qp_status sq_exec(qp__bconn *b, const char *sql, size_t len, const qp_param *params,
                         size_t nparams, qp_result **out, int64_t *rows, bool *reprepared,
                         qp__stmt_entry **entry, qp__berr *err) {
  *reprepared = false;
  *rows = -1;
  if (out) *out = NULL;
  sqlite3_stmt *st = NULL; /* set by sq_get_stmt on success; initialized for -O3's sake */
  bool owned = false;
  int expected = 0;
  qp_status s = sq_get_stmt(b, sql, len, &st, &expected, &owned, entry, err);
  if (s != QP_OK) return s;
  s = sq_bind(b, st, expected, params, nparams, err);
  sq_result *res = NULL;
  /* The columns are read after the first step: a statement prepared before
   * the schema changed (ALTER TABLE ... ADD COLUMN under SELECT *) is
   * prepared again by that step, and only then has its new columns. */
  int rc = s == QP_OK ? sqlite3_step(st) : SQLITE_OK;
  size_t ncols = (size_t)sqlite3_column_count(st);
  if (s == QP_OK && out != NULL) {
    res = sqr_new(b->hooks, ncols);
    if (res == NULL) s = qp__berr_set(err, QP_NOMEM, "", "out of memory");
    for (size_t i = 0; s == QP_OK && i < ncols; i++) {
      const char *name = sqlite3_column_name(st, (int)i);
      if (name == NULL) name = "?";
      if (!sqr_put(res, &res->cells[i], name, strlen(name)))
        s = qp__berr_set(err, QP_NOMEM, "", "out of memory");
    }
  }
  int64_t nrows = 0;
  while (s == QP_OK) {
    if (rc == SQLITE_ROW) {
      nrows++;
      if (res != NULL && !sqr_add_row(res, st))
        s = qp__berr_set(err, QP_NOMEM, "", "out of memory");
      rc = sqlite3_step(st);
      continue;
    }
    if (rc != SQLITE_DONE) s = sq_error(b, rc, err, "statement failed");
    break;
  }
  if (s == QP_OK) {
    if (ncols == 0 && !sqlite3_stmt_readonly(st)) {
      int64_t ch = sqlite3_changes64(b->db);
      *rows = ch;
      if (res) res->affected = ch;
    } else {
      *rows = nrows;
    }
  }
  /* no clear_bindings: every call binds every parameter (the count is
   * checked), so stale bindings are never read */
  sqlite3_reset(st);
  if (owned) sqlite3_finalize(st);
  if (s != QP_OK) {
    if (res) sqr_free(&res->base);
    return s;
  }
  if (out) *out = &res->base;
  return QP_OK;
}

/* What sqlite3_exec does, one statement at a time, so that each statement's
 * end is seen: prepare the next statement of the tail, step it to the end,
 * finalize it. Stops at the first failing statement. */
static qp_status sq_exec_script(qp__bconn *b, const char *sql, qp__script_fn each, void *ud,
                                qp__berr *err) {
  const char *tail = sql;
  while (*tail != '\0') {
    sqlite3_stmt *st = NULL;
    const char *next = NULL;
    int rc = sqlite3_prepare_v2(b->db, tail, -1, &st, &next);
    if (rc != SQLITE_OK) {
      if (each != NULL) each(ud, qp__now_ns(), -1, true);
      return sq_error(b, rc, err, "statement failed");
    }
    tail = next;
    if (st == NULL) continue; /* only comments or white space */
    int64_t rows = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) rows++;
    uint64_t end = qp__now_ns();
    if (rc == SQLITE_DONE && sqlite3_column_count(st) == 0 && !sqlite3_stmt_readonly(st))
      rows = sqlite3_changes64(b->db);
    if (rc != SQLITE_DONE) {
      sq_error(b, rc, err, "statement failed"); /* (before finalize resets the message) */
      sqlite3_finalize(st);
      if (each != NULL) each(ud, end, -1, true);
      return err->status;
    }
    sqlite3_finalize(st);
    if (each != NULL) each(ud, end, rows, false);
  }
  return QP_OK;
}

/* Prepares sql (without the statement cache) and binds its parameters. */
static qp_status sq_prepare_bound(qp__bconn *b, const char *sql, const qp_param *params,
                                  size_t nparams, sqlite3_stmt **out, qp__berr *err) {
  *out = NULL;
  int rc = sqlite3_prepare_v2(b->db, sql, -1, out, NULL);
  if (rc != SQLITE_OK) return sq_error(b, rc, err, "explain failed");
  if (*out == NULL) return qp__berr_set(err, QP_INVALID, "", "empty statement");
  qp_status st = sq_bind(b, *out, sqlite3_bind_parameter_count(*out), params, nparams, err);
  if (st != QP_OK) {
    sqlite3_finalize(*out);
    *out = NULL;
  }
  return st;
}

/* Runs the statement inside a savepoint that is rolled back, and reads its
 * counters: rows, full-scan steps, sorts, automatic indexes, VM steps. */
static qp_status sq_analyze(qp__bconn *b, const char *sql, const qp_param *params, size_t nparams,
                            qp__plan *out, qp__berr *err) {
  qp_status st = sq_exec_script(b, "SAVEPOINT qp_explain", NULL, NULL, err);
  if (st != QP_OK) return st;
  sqlite3_stmt *stmt;
  st = sq_prepare_bound(b, sql, params, nparams, &stmt, err);
  if (st == QP_OK) {
    int64_t rows = 0;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) rows++;
    if (rc != SQLITE_DONE) st = sq_error(b, rc, err, "explain failed");
    out->rows = rows;
    out->fullscan_steps = sqlite3_stmt_status(stmt, SQLITE_STMTSTATUS_FULLSCAN_STEP, 0);
    out->sorts = sqlite3_stmt_status(stmt, SQLITE_STMTSTATUS_SORT, 0);
    out->autoindexes = sqlite3_stmt_status(stmt, SQLITE_STMTSTATUS_AUTOINDEX, 0);
    out->vm_steps = sqlite3_stmt_status(stmt, SQLITE_STMTSTATUS_VM_STEP, 0);
    sqlite3_finalize(stmt);
  }
  qp__berr rb;
  qp__berr_clear(&rb);
  qp_status rs = sq_exec_script(b, "ROLLBACK TO qp_explain; RELEASE qp_explain", NULL, NULL, &rb);
  if (rs != QP_OK && st == QP_OK) {
    *err = rb;
    st = rs;
  }
  return st;
}

/* EXPLAIN QUERY PLAN, one "id parent detail" line per row; with analyze,
 * also the statement's counters from a run that is rolled back. */
static qp_status sq_explain(qp__bconn *b, const char *sql, const qp_param *params, size_t nparams,
                            const qp__explain_opts *o, qp__plan *out, qp__berr *err) {
  memset(out, 0, sizeof *out);
  out->rows = out->fullscan_steps = out->sorts = out->autoindexes = out->vm_steps = -1;
  qp_buf q, plan;
  qp__buf_init(&q, b->hooks);
  qp__buf_init(&plan, b->hooks);
  qp__buf_printf(&q, "EXPLAIN QUERY PLAN %s", sql);
  if (q.failed) return qp__berr_set(err, QP_NOMEM, "", "out of memory");
  sqlite3_stmt *stmt;
  qp_status st = sq_prepare_bound(b, qp__buf_cstr(&q), params, nparams, &stmt, err);
  qp__buf_free(&q);
  if (st != QP_OK) return st;
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    const unsigned char *detail = sqlite3_column_text(stmt, 3);
    qp__buf_printf(&plan, "%s%d %d %s", plan.len ? "\n" : "", sqlite3_column_int(stmt, 0),
                   sqlite3_column_int(stmt, 1), detail ? (const char *)detail : "");
  }
  if (rc != SQLITE_DONE) st = sq_error(b, rc, err, "explain failed");
  sqlite3_finalize(stmt);
  if (st == QP_OK && plan.failed) st = qp__berr_set(err, QP_NOMEM, "", "out of memory");
  if (st == QP_OK && o->analyze) st = sq_analyze(b, sql, params, nparams, out, err);
  return qp__plan_take(b->hooks, st, &plan, out, err);
}

static qp_status sq_prepare(qp__bconn *b, const char *sql, size_t len, qp__berr *err) {
  sqlite3_stmt *st;
  bool owned;
  int expected;
  qp__stmt_entry *e;
  qp_status s = sq_get_stmt(b, sql, len, &st, &expected, &owned, &e, err);
  if (s == QP_OK && owned) sqlite3_finalize(st);
  return s;
}

static qp_txn_status sq_txn_status(const qp__bconn *b) {
  if (b->broken || b->db == NULL) return QP_TXN_UNKNOWN;
  return sqlite3_get_autocommit(b->db) ? QP_TXN_IDLE : QP_TXN_INTRANS;
}

static bool sq_is_broken(const qp__bconn *b) { return b->broken || b->db == NULL; }

static bool sq_precheck(qp__bconn *b) { return !sq_is_broken(b); }

static qp_status sq_ping(qp__bconn *b, int64_t timeout_ms, qp__berr *err) {
  (void)timeout_ms;
  if (sq_is_broken(b)) return qp__berr_set(err, QP_UNAVAILABLE, "", "connection is closed");
  return sq_exec_script(b, "SELECT 1", NULL, NULL, err);
}

static qp_status sq_cancel(qp__bconn *b, qp__berr *err) {
  (void)err;
  sqlite3_interrupt(b->db); /* thread-safe while the connection is open */
  return QP_OK;
}

static qp_status sq_rollback(qp__bconn *b, qp__berr *err) {
  if (sqlite3_get_autocommit(b->db)) return QP_OK;
  return sq_exec_script(b, "ROLLBACK", NULL, NULL, err);
}

/* A file database is reopened: that drops temporary tables, ATTACHed files,
 * PRAGMAs and cached statements at once. An in-memory database would lose
 * its data that way, so it only loses its statement cache. */
static qp_status sq_reset(qp__bconn *b, qp__berr *err) {
  qp_status st = sq_rollback(b, err);
  if (st != QP_OK) return st;
  qp__stmt_cache_clear(&b->cache, finalize_handle, NULL);
  if (b->memory) return QP_OK;
  qp__sq_watch_reset(&b->watch);
  sqlite3_close_v2(b->db);
  b->db = NULL;
  st = sq_open_db(b, err);
  if (st != QP_OK) b->broken = true;
  return st;
}

static const char *sq_server_version(const qp__bconn *b) {
  (void)b;
  return sqlite3_libversion();
}
static const char *sq_database(const qp__bconn *b) { return b->path; }
static const char *sq_user(const qp__bconn *b) {
  (void)b;
  return "";
}

static void sq_dims(qp__bconn *b, unsigned refresh, const char **user, const char **app) {
  (void)b;
  (void)refresh;
  *user = qp_default_os_user();
  *app = qp_default_application();
}

const qp__backend_ops qp__backend_sqlite = {
    .name = "sqlite",
    .kind = QP_BACKEND_SQLITE,
    .dialect = QP_DIALECT_SQLITE,
    .caps = QP__CAP_SCRIPT_TIMES | QP__CAP_EXPLAIN_ANALYZE | QP__CAP_STMT_COUNTERS | QP__CAP_CANCEL,
    .accepts = sq_accepts,
    .check_dsn = sq_check_dsn,
    .connect = sq_connect,
    .exec = sq_exec,
    .exec_script = sq_exec_script,
    .explain = sq_explain,
    .prepare = sq_prepare,
    .txn_status = sq_txn_status,
    .is_broken = sq_is_broken,
    .precheck = sq_precheck,
    .ping = sq_ping,
    .cancel = sq_cancel,
    .rollback = sq_rollback,
    .reset = sq_reset,
    .close = sq_close,
    .abandon = sq_abandon,
    .server_version = sq_server_version,
    .database = sq_database,
    .user = sq_user,
    .dims = sq_dims,
    .cache = &qp__sqlite_cache_ops,
};

sqlite3 *qp__sq_db(qp__bconn *b);
sqlite3 *qp__sq_db(qp__bconn *b) { return b->db; }
const char *qp__sq_path(const qp__bconn *b);
const char *qp__sq_path(const qp__bconn *b) { return b->memory ? NULL : b->path; }
qp__sq_watch *qp__sq_watch_of(qp__bconn *b);
qp__sq_watch *qp__sq_watch_of(qp__bconn *b) { return &b->watch; }
void qp__sq_set_watch(qp__bconn *b, qp__change_fn fn, void *ud);
void qp__sq_set_watch(qp__bconn *b, qp__change_fn fn, void *ud) {
  b->watch_fn = fn;
  b->watch_ud = ud;
}
