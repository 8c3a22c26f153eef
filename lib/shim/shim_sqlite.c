/*
 * The interposed sqlite3 functions.
 *
 * A statement is normalized once, when it is prepared; its state (normalized
 * text, fingerprint, database name) lives in shim_sq_stmts until it is
 * finalized. One execution runs from the first sqlite3_step after prepare or
 * reset until SQLITE_DONE, an error, or the next reset/finalize; its duration
 * is the sum of the time spent inside sqlite3_step (not the application's
 * time between steps), its rows the SQLITE_ROW count, or sqlite3_changes()
 * for a write that returns no rows.
 *
 * sqlite3_exec prepares and steps through the public API, and so do
 * SQLite's own internals (schema loading, FTS shadow tables): a per-thread
 * depth counter makes every sqlite3 call made from inside a timed real call
 * pass straight through, so nothing is counted twice. sqlite3_exec itself is
 * timed only when its statements did not come through the shim (a libsqlite3
 * whose internal calls are not interposable).
 */
#include <errno.h>
#include <sqlite3.h>
#include <string.h>

#include "backend/sqlite_codes.h"
#include "shim_int.h"

SHIM_REAL_DECL(SHIM_SONAME_SQLITE, int, sqlite3_open, (const char *, sqlite3 **), shim_stub_misuse)
SHIM_REAL_DECL(SHIM_SONAME_SQLITE, int, sqlite3_open16, (const void *, sqlite3 **), shim_stub_misuse)
SHIM_REAL_DECL(SHIM_SONAME_SQLITE, int, sqlite3_open_v2, (const char *, sqlite3 **, int, const char *), shim_stub_misuse)
SHIM_REAL_DECL(SHIM_SONAME_SQLITE, int, sqlite3_close, (sqlite3 *), shim_stub_misuse)
SHIM_REAL_DECL(SHIM_SONAME_SQLITE, int, sqlite3_close_v2, (sqlite3 *), shim_stub_misuse)
SHIM_REAL_DECL(SHIM_SONAME_SQLITE, int, sqlite3_prepare,
               (sqlite3 *, const char *, int, sqlite3_stmt **, const char **), shim_stub_misuse)
SHIM_REAL_DECL(SHIM_SONAME_SQLITE, int, sqlite3_prepare_v2,
               (sqlite3 *, const char *, int, sqlite3_stmt **, const char **), shim_stub_misuse)
SHIM_REAL_DECL(SHIM_SONAME_SQLITE, int, sqlite3_prepare_v3,
               (sqlite3 *, const char *, int, unsigned int, sqlite3_stmt **, const char **), shim_stub_misuse)
SHIM_REAL_DECL(SHIM_SONAME_SQLITE, int, sqlite3_prepare16,
               (sqlite3 *, const void *, int, sqlite3_stmt **, const void **), shim_stub_misuse)
SHIM_REAL_DECL(SHIM_SONAME_SQLITE, int, sqlite3_prepare16_v2,
               (sqlite3 *, const void *, int, sqlite3_stmt **, const void **), shim_stub_misuse)
SHIM_REAL_DECL(SHIM_SONAME_SQLITE, int, sqlite3_prepare16_v3,
               (sqlite3 *, const void *, int, unsigned int, sqlite3_stmt **, const void **), shim_stub_misuse)
SHIM_REAL_DECL(SHIM_SONAME_SQLITE, int, sqlite3_step, (sqlite3_stmt *), shim_stub_misuse)
SHIM_REAL_DECL(SHIM_SONAME_SQLITE, int, sqlite3_reset, (sqlite3_stmt *), shim_stub_misuse)
SHIM_REAL_DECL(SHIM_SONAME_SQLITE, int, sqlite3_finalize, (sqlite3_stmt *), shim_stub_misuse)
SHIM_REAL_DECL(SHIM_SONAME_SQLITE, int, sqlite3_exec,
               (sqlite3 *, const char *, int (*)(void *, int, char **, char **), void *, char **), shim_stub_misuse)
/* The program's statements and connections are read through these too, not
 * by direct calls: then the shim needs no libsqlite3 of its own (no DT_NEEDED
 * entry), and a program that does not use SQLite never loads it. They are
 * only called with a handle from the program's SQLite, so it is loaded. */
SHIM_REAL_DECL(SHIM_SONAME_SQLITE, const char *, sqlite3_db_filename, (sqlite3 *, const char *),
               shim_stub_null)
SHIM_REAL_DECL(SHIM_SONAME_SQLITE, const char *, sqlite3_sql, (sqlite3_stmt *), shim_stub_null)
SHIM_REAL_DECL(SHIM_SONAME_SQLITE, sqlite3 *, sqlite3_db_handle, (sqlite3_stmt *), shim_stub_null)
SHIM_REAL_DECL(SHIM_SONAME_SQLITE, int, sqlite3_column_count, (sqlite3_stmt *), shim_stub_zero)
SHIM_REAL_DECL(SHIM_SONAME_SQLITE, int, sqlite3_stmt_readonly, (sqlite3_stmt *), shim_stub_zero)
SHIM_REAL_DECL(SHIM_SONAME_SQLITE, int, sqlite3_extended_errcode, (sqlite3 *), shim_stub_misuse)
SHIM_REAL_DECL(SHIM_SONAME_SQLITE, int, sqlite3_changes, (sqlite3 *), shim_stub_zero)
SHIM_REAL_DECL(SHIM_SONAME_SQLITE, int, sqlite3_total_changes, (sqlite3 *), shim_stub_zero)

/* Inside a real sqlite3 call made for a recorded one: nested calls pass through. */
static SHIM_TLS unsigned t_depth;
/* Inside an interposed sqlite3_exec, and whether a statement of it was seen. */
static SHIM_TLS unsigned t_exec;
static SHIM_TLS bool t_exec_seen;

/* A one-entry per-thread cache of the statement map, for the hot loop that
 * steps and resets one statement: valid while no state was freed anywhere
 * (g_stmt_gen unchanged). A statement stepped by this thread and finished
 * here needs no lookup at its reset (t_done). */
static _Atomic uint64_t g_stmt_gen;
static SHIM_TLS const sqlite3_stmt *t_cache_stmt, *t_done;
static SHIM_TLS struct sq_stmt *t_cache_st;
static SHIM_TLS uint64_t t_cache_gen;

/* The same for shim_sq_dbs (a connection's name, looked up at every prepare):
 * valid while no name was taken out of the map anywhere (g_db_gen). */
static _Atomic uint64_t g_db_gen;
static SHIM_TLS const sqlite3 *t_db_key;
static SHIM_TLS const char *t_db_name;
static SHIM_TLS uint64_t t_db_gen;

static const char *db_name(const sqlite3 *db) {
  uint64_t gen = atomic_load_explicit(&g_db_gen, memory_order_acquire);
  if (t_db_key == db && t_db_gen == gen && db != NULL) return t_db_name;
  const char *name = shim_map_get(&shim_sq_dbs, db);
  if (name != NULL) {
    t_db_key = db;
    t_db_name = name;
    t_db_gen = gen;
  }
  return name;
}

typedef struct sq_stmt {
  uint64_t fp;
  uint64_t elapsed_ns;
  int64_t rows;
  int changes0;  /* sqlite3_total_changes() before the first step */
  bool writes;   /* no result columns and not read-only: rows come from changes() */
  bool running;  /* stepped since prepare/reset, not yet done */
  size_t norm_len, db_len;
  shim_entry_cache cache;
  const char *db_name; /* points into text[] */
  char text[];         /* normalized text, NUL, segment key (shim_key), NUL */
} sq_stmt;

const char *shim_sqlite_code_name(int code) { return qp__sqlite_code_name(code); }

static inline bool should_record(void) {
  return shim_t_inside == 0 && t_depth == 0 && shim_active();
}

/* UTF-16 (native order) [s, s + nbytes) to a malloc'd UTF-8 string. */
static char *utf16_to_utf8(const void *s, size_t nbytes, size_t *out_len) {
  const uint16_t *u = s;
  size_t n = nbytes / 2;
  char *out = qp__malloc(NULL, n * 3 + 1);
  if (out == NULL) return NULL;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t c = u[i];
    if (c >= 0xD800 && c <= 0xDBFF && i + 1 < n && u[i + 1] >= 0xDC00 && u[i + 1] <= 0xDFFF) {
      c = 0x10000 + ((c - 0xD800) << 10) + (u[i + 1] - 0xDC00);
      i++;
    } else if (c >= 0xD800 && c <= 0xDFFF) {
      c = 0xFFFD;
    }
    if (c < 0x80) {
      out[o++] = (char)c;
    } else if (c < 0x800) {
      out[o++] = (char)(0xC0 | (c >> 6));
      out[o++] = (char)(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      out[o++] = (char)(0xE0 | (c >> 12));
      out[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
      out[o++] = (char)(0x80 | (c & 0x3F));
    } else {
      out[o++] = (char)(0xF0 | (c >> 18));
      out[o++] = (char)(0x80 | ((c >> 12) & 0x3F));
      out[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
      out[o++] = (char)(0x80 | (c & 0x3F));
    }
  }
  out[o] = '\0';
  *out_len = o;
  return out;
}

static size_t utf16_len(const void *s) {
  const uint16_t *u = s;
  size_t n = 0;
  while (u[n] != 0) n++;
  return n * 2;
}

/* ---- databases ----------------------------------------------------------- */
static void after_open(int rc, sqlite3 **ppdb, const char *name8, const void *name16) {
  if (rc != SQLITE_OK || ppdb == NULL || *ppdb == NULL) return;
  if (!shim_active()) return;
  shim_t_inside++;
  const char *f = real_sqlite3_db_filename()(*ppdb, "main");
  char *name = NULL;
  if (f != NULL && f[0] != '\0') {
    name = qp__strdup(NULL, f); /* the absolute path */
  } else if (name8 != NULL) {
    name = qp__strdup(NULL, name8); /* ":memory:" or "" (a temporary database) */
  } else if (name16 != NULL) {
    size_t len;
    name = utf16_to_utf8(name16, utf16_len(name16), &len);
  }
  if (name != NULL) {
    bool stored;
    char *old = shim_map_put(&shim_sq_dbs, *ppdb, name, &stored);
    if (old != NULL) {
      atomic_fetch_add_explicit(&g_db_gen, 1, memory_order_release);
      qp__free(NULL, old);
    }
    if (!stored) qp__free(NULL, name);
  }
  shim_t_inside--;
}

SHIM_EXPORT int sqlite3_open(const char *filename, sqlite3 **ppdb) {
  int rc = real_sqlite3_open()(filename, ppdb);
  if (shim_t_inside == 0) {
    int e = errno;
    after_open(rc, ppdb, filename, NULL);
    errno = e;
  }
  return rc;
}

SHIM_EXPORT int sqlite3_open16(const void *filename, sqlite3 **ppdb) {
  int rc = real_sqlite3_open16()(filename, ppdb);
  if (shim_t_inside == 0) {
    int e = errno;
    after_open(rc, ppdb, NULL, filename);
    errno = e;
  }
  return rc;
}

SHIM_EXPORT int sqlite3_open_v2(const char *filename, sqlite3 **ppdb, int flags, const char *vfs) {
  int rc = real_sqlite3_open_v2()(filename, ppdb, flags, vfs);
  if (shim_t_inside == 0) {
    int e = errno;
    after_open(rc, ppdb, filename, NULL);
    errno = e;
  }
  return rc;
}

static int close_common(sqlite3 *db, bool v2) {
  char *name = NULL;
  if (db != NULL && atomic_load_explicit(&shim_state, memory_order_relaxed) != SHIM_UNINIT) {
    name = shim_map_take(&shim_sq_dbs, db);
    if (name != NULL) atomic_fetch_add_explicit(&g_db_gen, 1, memory_order_release);
  }
  int rc = v2 ? real_sqlite3_close_v2()(db) : real_sqlite3_close()(db);
  if (name != NULL) {
    int e = errno;
    if (rc != SQLITE_OK) { /* still open (unfinalized statements): keep its name */
      bool stored;
      shim_map_put(&shim_sq_dbs, db, name, &stored);
      if (!stored) qp__free(NULL, name);
    } else {
      qp__free(NULL, name);
    }
    errno = e;
  }
  return rc;
}

SHIM_EXPORT int sqlite3_close(sqlite3 *db) { return close_common(db, false); }
SHIM_EXPORT int sqlite3_close_v2(sqlite3 *db) { return close_common(db, true); }

/* ---- statements ---------------------------------------------------------- */
/* Creates the state of a statement just prepared from [sql, end) (UTF-16 when
 * `utf16`). Called with shim_t_inside set. */
static void after_prepare(sqlite3 *db, sqlite3_stmt *stmt, const void *sql, const void *end,
                          int nbyte, bool utf16) {
  const char *text = real_sqlite3_sql()(stmt); /* UTF-8, kept by prepare_v2/v3 */
  size_t text_len = 0;
  char *converted = NULL;
  if (text != NULL) {
    text_len = strlen(text);
  } else if (sql != NULL) {
    size_t bytes;
    if (end != NULL) bytes = (size_t)((const char *)end - (const char *)sql);
    else if (nbyte >= 0) bytes = (size_t)nbyte;
    else bytes = utf16 ? utf16_len(sql) : strlen(sql);
    if (utf16) {
      converted = utf16_to_utf8(sql, bytes, &text_len);
      if (converted == NULL) return;
      text = converted;
    } else {
      text = sql;
      text_len = bytes;
      const char *nul = memchr(text, '\0', text_len);
      if (nul != NULL) text_len = (size_t)(nul - text);
    }
  } else {
    return;
  }
  const char *dbn = db_name(db);
  if (dbn == NULL) dbn = real_sqlite3_db_filename()(db, "main");
  if (dbn == NULL) dbn = "";
  if (shim_is_store(dbn)) goto out; /* the program reads qprof's own store */
  char *norm = shim_scratch();
  if (norm == NULL) goto out;
  size_t norm_len = 0;
  uint64_t fp = 0;
  if (shim_normalize(QP_BACKEND_SQLITE, text, text_len, norm, QP_NORMALIZED_MAX, &norm_len, &fp) !=
      QP_OK)
    goto out;
  shim_prefetch(QP_BACKEND_SQLITE, fp);
  /* the segment key: database, no user (the collector names the OS user:
   * no NSS lookup in the host), the program's name */
  char key[QP_SEG_KEY_MAX + 1];
  size_t dbn_len = shim_key(key, dbn, NULL, NULL);
  sq_stmt *st = qp__malloc(NULL, sizeof *st + norm_len + 1 + dbn_len + 1);
  if (st != NULL) {
    memset(st, 0, sizeof *st);
    st->fp = fp;
    st->norm_len = norm_len;
    memcpy(st->text, norm, norm_len);
    st->text[norm_len] = '\0';
    memcpy(st->text + norm_len + 1, key, dbn_len + 1);
    st->db_name = st->text + norm_len + 1;
    st->db_len = dbn_len;
    st->writes = real_sqlite3_column_count()(stmt) == 0 && !real_sqlite3_stmt_readonly()(stmt);
    bool stored;
    sq_stmt *old = shim_map_put(&shim_sq_stmts, stmt, st, &stored);
    if (old != NULL) {
      atomic_fetch_add_explicit(&g_stmt_gen, 1, memory_order_relaxed);
      qp__free(NULL, old);
    }
    if (!stored) {
      qp__free(NULL, st);
    } else {
      /* the thread that prepares a statement mostly steps it next: no lookup then */
      t_cache_stmt = stmt;
      t_cache_st = st;
      t_cache_gen = atomic_load_explicit(&g_stmt_gen, memory_order_relaxed);
    }
  }
out:
  qp__free(NULL, converted);
}

/* A statement that failed to prepare (a syntax error, a missing table) was
 * still sent by the program and failed: it is recorded as one call with the
 * error, under the fingerprint of its first statement, timed over the
 * prepare. Called with shim_t_inside set. */
static void record_prepare_error(int rc, sqlite3 *db, const void *sql, int nbyte, bool utf16,
                                 uint64_t elapsed_ns) {
  if (sql == NULL) return;
  size_t bytes = nbyte >= 0 ? (size_t)nbyte : utf16 ? utf16_len(sql) : strlen(sql);
  char *converted = NULL;
  const char *text = sql;
  if (utf16) {
    converted = utf16_to_utf8(sql, bytes, &bytes);
    if (converted == NULL) return;
    text = converted;
  } else {
    const char *nul = memchr(text, '\0', bytes);
    if (nul != NULL) bytes = (size_t)(nul - text);
  }
  size_t pos = 0, start, len;
  if (qp_sql_split_next(QP_DIALECT_SQLITE, text, bytes, &pos, &start, &len)) {
    const char *dbn = shim_map_get(&shim_sq_dbs, db);
    if (dbn == NULL && db != NULL) dbn = real_sqlite3_db_filename()(db, "main");
    if (dbn == NULL) dbn = "";
    if (!shim_is_store(dbn)) {
      int ext = db != NULL ? real_sqlite3_extended_errcode()(db) : rc;
      qp_query_event ev = {
          .backend = QP_BACKEND_SQLITE,
          .database = dbn,
          .sql = text + start,
          .sql_len = len,
          .duration_ns = elapsed_ns,
          .rows = 0,
          .error = shim_sqlite_code_name((ext & 0xff) == (rc & 0xff) ? ext : rc),
      };
      shim_record(&ev);
    }
  }
  qp__free(NULL, converted);
}

/* The common tail of every prepare variant. */
static void prepared(int rc, sqlite3 *db, sqlite3_stmt **pp, const void *sql, const void *tail,
                     int nbyte, bool utf16, uint64_t t0) {
  if (rc == SQLITE_OK && (pp == NULL || *pp == NULL)) return; /* only white space or comments */
  int e = errno;
  shim_t_inside++;
  if (t_exec) t_exec_seen = true;
  if (rc == SQLITE_OK) after_prepare(db, *pp, sql, tail, nbyte, utf16);
  else record_prepare_error(rc, db, sql, nbyte, utf16, qp__ns_since(shim_now_ns(), t0));
  shim_t_inside--;
  errno = e;
}

#define PREPARE_BODY(fn, tailtype, utf16, ...)                                          \
  do {                                                                                   \
    if (!should_record()) return real_##fn()(__VA_ARGS__);                               \
    tailtype own_tail = NULL;                                                            \
    tailtype *tp = tail != NULL ? tail : &own_tail;                                      \
    uint64_t t0 = shim_now_ns();                                                         \
    t_depth++;                                                                           \
    int rc = real_##fn()(ARGS_WITH(tp));                                                 \
    t_depth--;                                                                           \
    prepared(rc, db, pp, sql, rc == SQLITE_OK && pp != NULL && *pp != NULL ? *tp : NULL, \
             nbyte, utf16, t0);                                                          \
    return rc;                                                                           \
  } while (0)

#define ARGS_WITH(tp) db, sql, nbyte, pp, tp
SHIM_EXPORT int sqlite3_prepare(sqlite3 *db, const char *sql, int nbyte, sqlite3_stmt **pp,
                                const char **tail) {
  PREPARE_BODY(sqlite3_prepare, const char *, false, db, sql, nbyte, pp, tail);
}
SHIM_EXPORT int sqlite3_prepare_v2(sqlite3 *db, const char *sql, int nbyte, sqlite3_stmt **pp,
                                   const char **tail) {
  PREPARE_BODY(sqlite3_prepare_v2, const char *, false, db, sql, nbyte, pp, tail);
}
SHIM_EXPORT int sqlite3_prepare16(sqlite3 *db, const void *sql, int nbyte, sqlite3_stmt **pp,
                                  const void **tail) {
  PREPARE_BODY(sqlite3_prepare16, const void *, true, db, sql, nbyte, pp, tail);
}
SHIM_EXPORT int sqlite3_prepare16_v2(sqlite3 *db, const void *sql, int nbyte, sqlite3_stmt **pp,
                                     const void **tail) {
  PREPARE_BODY(sqlite3_prepare16_v2, const void *, true, db, sql, nbyte, pp, tail);
}
#undef ARGS_WITH
#define ARGS_WITH(tp) db, sql, nbyte, flags, pp, tp
SHIM_EXPORT int sqlite3_prepare_v3(sqlite3 *db, const char *sql, int nbyte, unsigned int flags,
                                   sqlite3_stmt **pp, const char **tail) {
  PREPARE_BODY(sqlite3_prepare_v3, const char *, false, db, sql, nbyte, flags, pp, tail);
}
SHIM_EXPORT int sqlite3_prepare16_v3(sqlite3 *db, const void *sql, int nbyte, unsigned int flags,
                                     sqlite3_stmt **pp, const void **tail) {
  PREPARE_BODY(sqlite3_prepare16_v3, const void *, true, db, sql, nbyte, flags, pp, tail);
}
#undef ARGS_WITH

/* Ends one execution and records it. `rc` is the step's result: SQLITE_DONE
 * or SQLITE_OK (ended early by reset/finalize) is a success. Called with
 * shim_t_inside set. */
static void finish(sq_stmt *st, sqlite3_stmt *stmt, int rc, uint64_t end_ns) {
  st->running = false;
  sqlite3 *db = real_sqlite3_db_handle()(stmt);
  int64_t rows = st->rows;
  if (st->writes && rows == 0 && db != NULL)
    rows = real_sqlite3_total_changes()(db) != st->changes0 ? real_sqlite3_changes()(db) : 0;
  const char *error = NULL;
  if (rc != SQLITE_DONE && rc != SQLITE_OK && rc != SQLITE_ROW) {
    int ext = db != NULL ? real_sqlite3_extended_errcode()(db) : rc;
    error = shim_sqlite_code_name((ext & 0xff) == (rc & 0xff) ? ext : rc);
  }
  /* the text with its literals only for a sample */
  const char *sql = shim_g_sample ? real_sqlite3_sql()(stmt) : NULL;
  qp_query_event ev = {
      .backend = QP_BACKEND_SQLITE,
      .database = st->db_name,
      .sql = sql,
      .sql_len = sql != NULL ? strlen(sql) : 0,
      .normalized = st->text,
      .normalized_len = st->norm_len,
      .fingerprint = st->fp,
      .duration_ns = st->elapsed_ns,
      .rows = rows,
      .error = error,
  };
  shim_record_cached(&ev, st->db_len, &st->cache, NULL, end_ns);
}

SHIM_EXPORT int sqlite3_step(sqlite3_stmt *stmt) {
  sqlite3_step_fn real = real_sqlite3_step();
  if (!should_record() || stmt == NULL) return real(stmt);
  sq_stmt *st;
  uint64_t gen = atomic_load_explicit(&g_stmt_gen, memory_order_relaxed);
  if (t_cache_stmt == stmt && t_cache_gen == gen) {
    st = t_cache_st;
  } else {
    st = shim_map_get(&shim_sq_stmts, stmt);
    t_cache_stmt = stmt;
    t_cache_st = st;
    t_cache_gen = gen;
  }
  if (st == NULL) return real(stmt); /* prepared where we did not look (inside qprof) */
  t_done = NULL;
  int e = errno;
  if (!st->running) {
    st->running = true;
    st->rows = 0;
    st->elapsed_ns = 0;
    if (st->writes) st->changes0 = real_sqlite3_total_changes()(real_sqlite3_db_handle()(stmt));
  }
  uint64_t t0 = shim_now_ns();
  errno = e;
  t_depth++;
  int rc = real(stmt);
  t_depth--;
  uint64_t t1 = shim_now_ns();
  e = errno;
  st->elapsed_ns += qp__ns_since(t1, t0);
  if (rc == SQLITE_ROW) {
    st->rows++;
  } else {
    /* a read that ran to its end, again in its bucket: straight into its entry */
    if (rc == SQLITE_DONE && !st->writes && shim_record_hit(&st->cache, t1, st->elapsed_ns, st->rows)) {
      st->running = false;
    } else {
      shim_t_inside++;
      finish(st, stmt, rc, t1);
      shim_t_inside--;
    }
    t_done = stmt;
  }
  errno = e;
  return rc;
}

SHIM_EXPORT int sqlite3_reset(sqlite3_stmt *stmt) {
  if (stmt != NULL && stmt != t_done && should_record()) {
    sq_stmt *st = shim_map_get(&shim_sq_stmts, stmt);
    if (st != NULL && st->running) {
      int e = errno;
      shim_t_inside++;
      finish(st, stmt, SQLITE_OK, 0);
      shim_t_inside--;
      errno = e;
    }
  }
  return real_sqlite3_reset()(stmt);
}

SHIM_EXPORT int sqlite3_finalize(sqlite3_stmt *stmt) {
  /* The state goes before the real call: once finalized, the address may be
   * handed to a statement another thread prepares. */
  if (stmt != NULL && atomic_load_explicit(&shim_state, memory_order_relaxed) != SHIM_UNINIT) {
    int e = errno;
    sq_stmt *st = shim_map_take(&shim_sq_stmts, stmt);
    if (t_done == stmt) t_done = NULL;
    if (st != NULL) {
      atomic_fetch_add_explicit(&g_stmt_gen, 1, memory_order_relaxed);
      if (st->running && should_record()) {
        shim_t_inside++;
        finish(st, stmt, SQLITE_OK, 0);
        shim_t_inside--;
      }
      qp__free(NULL, st);
    }
    errno = e;
  }
  return real_sqlite3_finalize()(stmt);
}

SHIM_EXPORT int sqlite3_exec(sqlite3 *db, const char *sql,
                             int (*cb)(void *, int, char **, char **), void *arg, char **errmsg) {
  sqlite3_exec_fn real = real_sqlite3_exec();
  if (!should_record()) return real(db, sql, cb, arg, errmsg);
  bool outer_seen = t_exec_seen;
  t_exec++;
  t_exec_seen = false;
  uint64_t t0 = shim_now_ns();
  int rc = real(db, sql, cb, arg, errmsg);
  uint64_t t1 = shim_now_ns();
  int e = errno;
  t_exec--;
  bool seen = t_exec_seen;
  t_exec_seen = outer_seen || seen;
  size_t pos = 0, start, len;
  if (!seen && sql != NULL &&
      qp_sql_split_next(QP_DIALECT_SQLITE, sql, strlen(sql), &pos, &start, &len)) {
    /* This libsqlite3 ran the script without our prepare/step: record the
     * whole script as one statement. */
    shim_t_inside++;
    const char *dbn = shim_map_get(&shim_sq_dbs, db);
    qp_query_event ev = {
        .backend = QP_BACKEND_SQLITE,
        .database = dbn,
        .sql = sql,
        .sql_len = strlen(sql),
        .duration_ns = qp__ns_since(t1, t0),
        .rows = rc == SQLITE_OK ? real_sqlite3_changes()(db) : 0,
        .error = rc == SQLITE_OK || rc == SQLITE_ABORT
                     ? NULL
                     : shim_sqlite_code_name(real_sqlite3_extended_errcode()(db)),
    };
    shim_record(&ev);
    shim_t_inside--;
  }
  errno = e;
  return rc;
}
