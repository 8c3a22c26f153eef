/*
 * What the result cache asks a SQLite connection: the file's identity
 * (device and inode), what a table or function is, whether another
 * connection committed (PRAGMA data_version), and every row change it makes
 * itself (the update hook sees triggers and foreign-key cascades).
 */
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "backend.h"

sqlite3 *qp__sq_db(qp__bconn *b);
const char *qp__sq_path(const qp__bconn *b);
int64_t *qp__sq_data_version(qp__bconn *b);
sqlite3_stmt **qp__sq_dv_stmt(qp__bconn *b);
void qp__sq_set_watch(qp__bconn *b, qp__change_fn fn, void *ud);

/* One query, one integer row; false on failure. */
static bool ints(sqlite3 *db, const char *sql, const char *arg, int64_t *out, int n) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return false;
  if (arg != NULL) sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
  bool ok = sqlite3_step(st) == SQLITE_ROW;
  for (int i = 0; ok && i < n; i++) out[i] = sqlite3_column_int64(st, i);
  sqlite3_finalize(st);
  return ok;
}

/* Server: the main file's device and inode. Session: nothing the cache
 * can read decides SQLite's output besides the data, so the session text is
 * empty; the cache makes a connection's session its own after any PRAGMA,
 * ATTACH or temporary object (lib/cache/lease.c). Attached databases and
 * in-memory files are refused. */
static qp_status sq_identity(qp__bconn *b, qp_buf *server, qp_buf *session, bool *strict_iso,
                             bool *refuse, qp__berr *err) {
  *strict_iso = false;
  *refuse = false;
  const char *path = qp__sq_path(b);
  struct stat sb;
  if (path == NULL || stat(path, &sb) != 0) {
    *refuse = true;
    qp__buf_puts(server, path ? path : ":memory:");
  } else {
    qp__buf_printf(server, "sqlite:%ju:%ju", (uintmax_t)sb.st_dev, (uintmax_t)sb.st_ino);
  }
  int64_t n = 0;
  if (!ints(qp__sq_db(b), "SELECT count(*) FROM pragma_database_list WHERE name NOT IN ('main', 'temp')",
            NULL, &n, 1))
    return qp__berr_set(err, QP_QUERY, "", "cache: cannot list the attached databases: %s",
                        sqlite3_errmsg(qp__sq_db(b)));
  if (n > 0) *refuse = true;
  qp__buf_puts(session, "");
  if (server->failed || session->failed) return qp__berr_set(err, QP_NOMEM, "", "out of memory");
  return QP_OK;
}

static int sq_table(qp__bconn *b, const char *name) {
  const char *dot = strrchr(name, '.');
  const char *base = dot ? dot + 1 : name;
  if (dot != NULL && !(dot - name == 4 && strncmp(name, "main", 4) == 0)) return 3;
  int64_t v[3];
  if (!ints(qp__sq_db(b),
            "SELECT count(*) FILTER (WHERE type = 'table'), count(*) FILTER (WHERE type = 'view'), "
            "(SELECT count(*) FROM sqlite_temp_master WHERE name = ?1 COLLATE NOCASE) "
            "FROM sqlite_master WHERE name = ?1 COLLATE NOCASE",
            base, v, 3))
    return 0;
  if (v[2] > 0 || v[0] + v[1] == 0) return 3;
  /* A view reads other tables; triggers and cascades are seen by the update hook. */
  return v[1] > 0 ? 2 : 1;
}

/* Aggregates and window functions are deterministic over their input;
 * scalar functions only when registered SQLITE_DETERMINISTIC. */
static int sq_func(qp__bconn *b, const char *name) {
  int64_t v[2];
  if (!ints(qp__sq_db(b),
            "SELECT count(*), count(*) FILTER (WHERE type = 's' AND (flags & 2048) = 0) "
            "FROM pragma_function_list WHERE name = lower(?1)",
            name, v, 2))
    return -1;
  if (v[0] == 0) return -1;
  return v[1] > 0 ? 0 : 1;
}

/* Before every hit: the statement is prepared once per connection (its
 * read of the file's change counter is the cost that stays). */
static int sq_changed(qp__bconn *b) {
  sqlite3_stmt **st = qp__sq_dv_stmt(b);
  if (*st == NULL && sqlite3_prepare_v3(qp__sq_db(b), "PRAGMA data_version", -1,
                                        SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK) {
    *st = NULL;
    return -1;
  }
  bool ok = sqlite3_step(*st) == SQLITE_ROW;
  int64_t v = ok ? sqlite3_column_int64(*st, 0) : 0;
  sqlite3_reset(*st);
  if (!ok) return -1;
  int64_t *last = qp__sq_data_version(b);
  int changed = *last != v;
  *last = v;
  return changed;
}

static void sq_watch_op(qp__bconn *b, qp__change_fn fn, void *ud) { qp__sq_set_watch(b, fn, ud); }

const qp__cache_ops qp__sqlite_cache_ops = {
    .identity = sq_identity,
    .table = sq_table,
    .func = sq_func,
    .reported = NULL,
    .changed = sq_changed,
    .watch = sq_watch_op,
};
