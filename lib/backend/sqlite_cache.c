/*
 * What the result cache asks a SQLite connection: the file's identity
 * (device and inode), what a table or function is, whether another
 * connection committed (the wal-index header, else PRAGMA data_version),
 * and every row change it makes itself (the update hook sees triggers and
 * foreign-key cascades).
 */
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "backend.h"
#include "sqlite_cache.h"

sqlite3 *qp__sq_db(qp__bconn *b);
const char *qp__sq_path(const qp__bconn *b);
int64_t *qp__sq_data_version(qp__bconn *b);
sqlite3_stmt **qp__sq_dv_stmt(qp__bconn *b);
void qp__sq_set_watch(qp__bconn *b, qp__change_fn fn, void *ud);
qp__sq_shm *qp__sq_shm_of(qp__bconn *b);

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
  /* A transaction block reads one snapshot (SQLite's isolation is
   * serializable): a hit would be newer than it, and a fill could store rows
   * another process's commit has already replaced. */
  *strict_iso = true;
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

/* PRAGMA data_version: a read transaction (fcntl locks on the wal-index),
 * prepared once per connection. 1 changed (or the first call), 0 not, -1
 * failure. SQLite does not count this connection's own commits. */
static int dv_changed(qp__bconn *b) {
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

/* The wal-index header, read as SQLite's walIndexTryHdr does without a
 * lock: copy 1, a barrier (acquire: the loads of copy 1 come before those
 * of copy 2), copy 2; clean when both are equal, initialized,
 * version 3007000 and their checksum holds. A writer writes copy 2, a
 * barrier, then copy 1, on every commit before the commit returns. */
static bool wal_header(const volatile unsigned char *shm, unsigned char out[QP__SQ_WALHDR]) {
  uint32_t h1[QP__SQ_WALHDR / 4], h2[QP__SQ_WALHDR / 4];
  const volatile uint32_t *w = (const volatile uint32_t *)(const volatile void *)shm;
  for (int i = 0; i < QP__SQ_WALHDR / 4; i++) h1[i] = w[i];
  atomic_thread_fence(memory_order_acquire);
  for (int i = 0; i < QP__SQ_WALHDR / 4; i++) h2[i] = w[QP__SQ_WALHDR / 4 + i];
  if (memcmp(h1, h2, sizeof h1) != 0) return false;
  /* iVersion, unused, iChange, (isInit, bigEndCksum, szPage), mxFrame,
   * nPage, aFrameCksum[2], aSalt[2], aCksum[2] */
  unsigned char init;
  memcpy(&init, (const unsigned char *)h1 + 12, 1);
  if (h1[0] != 3007000 || init != 1) return false;
  uint32_t s1 = 0, s2 = 0; /* SQLite's walChecksumBytes, native order */
  for (int i = 0; i < 10; i += 2) {
    s1 += h1[i] + s2;
    s2 += h1[i + 1] + s1;
  }
  if (s1 != h1[10] || s2 != h1[11]) return false;
  memcpy(out, h1, QP__SQ_WALHDR);
  return true;
}

/* Both copies of the header still equal `last` (a clean header read
 * before): read as wal_header does, copy 1, a barrier, copy 2. */
static bool wal_header_is(const volatile unsigned char *shm, const unsigned char *last) {
  const volatile uint64_t *w = (const volatile uint64_t *)(const volatile void *)shm;
  uint64_t r[6];
  _Static_assert(QP__SQ_WALHDR == sizeof r, "six words");
  memcpy(r, last, sizeof r);
  uint64_t d = (w[0] ^ r[0]) | (w[1] ^ r[1]) | (w[2] ^ r[2]) | (w[3] ^ r[3]) | (w[4] ^ r[4]) |
               (w[5] ^ r[5]);
  atomic_thread_fence(memory_order_acquire);
  d |= (w[6] ^ r[0]) | (w[7] ^ r[1]) | (w[8] ^ r[2]) | (w[9] ^ r[3]) | (w[10] ^ r[4]) |
       (w[11] ^ r[5]);
  return d == 0;
}

/* One text row of a PRAGMA query; false on failure. */
static bool pragma_is(sqlite3 *db, const char *sql, const char *want) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return false;
  bool ok = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL &&
            sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), want) == 0;
  sqlite3_finalize(st);
  return ok;
}

/* Once per connection, after a data_version read (so that the connection
 * has its wal-index open): SQLite's own mapping of the wal-index's first
 * page, when the header can be trusted to move with every commit of every
 * process: WAL mode, normal locking (an exclusive one keeps the wal-index
 * in heap memory), the default unix VFS (a mapped -shm file) and a
 * writable mapping. The mapping lives as long as this connection keeps
 * its WAL open, which ends only by a journal_mode PRAGMA on it (the
 * authorizer turns the check off before such a statement runs; other
 * processes cannot leave WAL mode while this connection holds its shared
 * lock on the file) or by closing it (which resets the state). */
static void shm_setup(qp__bconn *b, qp__sq_shm *w) {
  sqlite3 *db = qp__sq_db(b);
  w->state = -1;
  if (!pragma_is(db, "PRAGMA main.journal_mode", "wal") ||
      !pragma_is(db, "PRAGMA main.locking_mode", "normal"))
    return;
  sqlite3_vfs *vfs = NULL;
  sqlite3_file *f = NULL;
  if (sqlite3_file_control(db, "main", SQLITE_FCNTL_VFS_POINTER, &vfs) != SQLITE_OK ||
      vfs == NULL || vfs->zName == NULL || strcmp(vfs->zName, "unix") != 0)
    return;
  if (sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &f) != SQLITE_OK || f == NULL ||
      f->pMethods == NULL || f->pMethods->iVersion < 2 || f->pMethods->xShmMap == NULL)
    return;
  void volatile *p = NULL;
  if (f->pMethods->xShmMap(f, 0, 32768, 0, &p) != SQLITE_OK || p == NULL) return;
  unsigned char h[QP__SQ_WALHDR];
  if (!wal_header(p, h) && !wal_header(p, h)) return;
  w->hdr = p;
  w->state = 1;
}

/* Before every hit and fill: has another connection committed since the
 * previous call? The wal-index header is read first (no lock, no system
 * call); when it equals the one read before the previous data_version
 * read, nothing at all was committed to the file since then, by anyone,
 * and the answer is no. Otherwise (a commit, this connection's own
 * included, or a header that could not be read cleanly) data_version
 * answers, and the header read before it becomes the reference. The
 * argument that this is exact is in docs/cache.md. */
static int sq_changed(qp__bconn *b) {
  qp__sq_shm *w = qp__sq_shm_of(b);
  if (w->state > 0 && w->have_last && wal_header_is(w->hdr, w->last)) {
    w->fast++;
    return 0;
  }
  unsigned char h[QP__SQ_WALHDR];
  bool clean = w->state > 0 && wal_header(w->hdr, h);
  int changed = dv_changed(b);
  if (changed < 0) return -1;
  w->full++;
  if (clean) {
    memcpy(w->last, h, sizeof h);
    w->have_last = true;
  } else if (w->state == 0) {
    shm_setup(b, w);
  }
  return changed;
}

int qp__sq_authorize(void *ud, int action, const char *a1, const char *a2, const char *a3,
                     const char *a4) {
  (void)a3;
  (void)a4;
  qp__sq_shm *w = ud;
  if (action == SQLITE_PRAGMA && a1 != NULL && a2 != NULL &&
      (sqlite3_stricmp(a1, "journal_mode") == 0 || sqlite3_stricmp(a1, "locking_mode") == 0)) {
    w->state = -1;
    w->hdr = NULL;
    w->have_last = false;
  }
  return SQLITE_OK;
}

/* Checks answered by the header alone and by data_version on this
 * connection (tests). */
void qp__sq_change_checks(qp__bconn *b, uint64_t *fast, uint64_t *full);
void qp__sq_change_checks(qp__bconn *b, uint64_t *fast, uint64_t *full) {
  qp__sq_shm *w = qp__sq_shm_of(b);
  *fast = w->fast;
  *full = w->full;
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
