/*
 * What the result cache asks a SQLite connection: the identity of its
 * files (device and inode of the main file and of every attached one),
 * which schema a table name resolves to and what it is, what a function
 * is, whether another connection committed to any of its files (each
 * file's wal-index header, else its PRAGMA data_version), and every row
 * change it makes itself (the update hook sees triggers and foreign-key
 * cascades).
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
void qp__sq_set_watch(qp__bconn *b, qp__change_fn fn, void *ud);
qp__sq_watch *qp__sq_watch_of(qp__bconn *b);

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

void qp__sq_watch_reset(qp__sq_watch *w) {
  for (int i = 0; i < w->nfiles; i++) sqlite3_finalize(w->files[i].dv);
  memset(w->files, 0, sizeof w->files);
  snprintf(w->files[0].schema, sizeof w->files[0].schema, "main");
  w->files[0].data_version = -1;
  w->nfiles = 1;
}

/* Server: the device and inode of the main file, then of every attached
 * database in schema order under its alias ("aux=dev:ino"); an in-memory
 * or temporary attached database is named by a marker ("aux=mem") and its
 * tables are never cached (sq_table). The connection's list of files to
 * check for other connections' commits follows the same list; when it
 * changed (an ATTACH or DETACH), every file's next check reads
 * data_version afresh, which flushes the server's entries (this
 * connection's own writes under the previous list moved another server's
 * counters). Session: nothing the cache can read decides SQLite's output
 * besides the data, so the session text is empty; the cache makes a
 * connection's session its own after any PRAGMA or other session statement
 * but ATTACH and DETACH (lib/cache/lease.c). An in-memory main database,
 * more attached files than QP__SQ_FILES and a file attached twice are
 * refused. */
static qp_status sq_identity(qp__bconn *b, qp_buf *server, qp_buf *session, bool *strict_iso,
                             bool *refuse, qp__berr *err) {
  /* A transaction block reads one snapshot (SQLite's isolation is
   * serializable): a hit would be newer than it, and a fill could store rows
   * another process's commit has already replaced. */
  *strict_iso = true;
  *refuse = false;
  sqlite3 *db = qp__sq_db(b);
  qp__sq_watch *w = qp__sq_watch_of(b);
  qp__sq_file want[QP__SQ_FILES];
  memset(want, 0, sizeof want);
  snprintf(want[0].schema, sizeof want[0].schema, "main");
  const char *path = qp__sq_path(b);
  struct stat sb;
  if (path == NULL || stat(path, &sb) != 0) {
    *refuse = true;
    qp__buf_puts(server, path ? path : ":memory:");
  } else {
    want[0].dev = (uintmax_t)sb.st_dev;
    want[0].ino = (uintmax_t)sb.st_ino;
    qp__buf_printf(server, "sqlite:%ju:%ju", want[0].dev, want[0].ino);
  }
  int n = 1;
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, "PRAGMA database_list", -1, &st, NULL);
  while (rc == SQLITE_OK || rc == SQLITE_ROW) {
    if ((rc = sqlite3_step(st)) != SQLITE_ROW) break;
    const char *name = (const char *)sqlite3_column_text(st, 1);
    const char *file = (const char *)sqlite3_column_text(st, 2);
    if (name == NULL || strcmp(name, "main") == 0 || strcmp(name, "temp") == 0) continue;
    qp__buf_printf(server, "\n%s=", name);
    if (file == NULL || file[0] == '\0' || stat(file, &sb) != 0) {
      qp__buf_puts(server, "mem");
      continue;
    }
    qp__buf_printf(server, "%ju:%ju", (uintmax_t)sb.st_dev, (uintmax_t)sb.st_ino);
    for (int i = 0; i < n; i++)
      if (want[i].dev == (uintmax_t)sb.st_dev && want[i].ino == (uintmax_t)sb.st_ino)
        *refuse = true; /* one file under two names: its writes have two keys */
    if (n == QP__SQ_FILES || strlen(name) >= sizeof want[n].schema) {
      *refuse = true;
      continue;
    }
    snprintf(want[n].schema, sizeof want[n].schema, "%s", name);
    want[n].dev = (uintmax_t)sb.st_dev;
    want[n].ino = (uintmax_t)sb.st_ino;
    n++;
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE)
    return qp__berr_set(err, QP_QUERY, "", "cache: cannot list the attached databases: %s",
                        sqlite3_errmsg(db));
  bool same = n == w->nfiles;
  for (int i = 0; same && i < n; i++)
    same = strcmp(want[i].schema, w->files[i].schema) == 0 && want[i].dev == w->files[i].dev &&
           want[i].ino == w->files[i].ino;
  if (!same) {
    qp__sq_watch_reset(w);
    for (int i = 0; i < n; i++) {
      memcpy(w->files[i].schema, want[i].schema, sizeof want[i].schema);
      w->files[i].dev = want[i].dev;
      w->files[i].ino = want[i].ino;
      w->files[i].data_version = -1;
    }
    w->nfiles = n;
  }
  w->attach_seen = false;
  qp__buf_puts(session, "");
  if (server->failed || session->failed) return qp__berr_set(err, QP_NOMEM, "", "out of memory");
  return QP_OK;
}

/* Whether `schema` has a table or view `name`: 1 yes, 0 no, -1 failure. */
static int has_table(sqlite3 *db, const char *schema, const char *name) {
  char *sql = sqlite3_mprintf("SELECT count(*) FROM \"%w\".sqlite_master "
                              "WHERE type IN ('table', 'view') AND name = ?1 COLLATE NOCASE",
                              schema);
  if (sql == NULL) return -1;
  int64_t v = 0;
  bool ok = ints(db, sql, name, &v, 1);
  sqlite3_free(sql);
  return ok ? v > 0 : -1;
}

/* The table key of a name as written: "schema.name" with the schema SQLite
 * resolves it to (temp, then main, then the attached databases in order,
 * as sqlite3FindTable searches), so that writes to aux.t and main.t move
 * different counters. 1 written, 0 no such table (never cached), -1
 * failure. */
static int sq_qualify(qp__bconn *b, const char *name, char *out, size_t cap) {
  sqlite3 *db = qp__sq_db(b);
  const char *dot = strchr(name, '.');
  if (dot != NULL) {
    for (int i = 0; sqlite3_db_name(db, i) != NULL; i++) {
      const char *s = sqlite3_db_name(db, i);
      if (strlen(s) == (size_t)(dot - name) && sqlite3_strnicmp(s, name, (int)(dot - name)) == 0) {
        int k = snprintf(out, cap, "%s.%s", s, dot + 1);
        return k > 0 && (size_t)k < cap ? 1 : 0;
      }
    }
    /* not a schema: a quoted name with a dot in it */
  }
  for (int j = 0; sqlite3_db_name(db, j < 2 ? j ^ 1 : j) != NULL; j++) {
    const char *s = sqlite3_db_name(db, j < 2 ? j ^ 1 : j);
    int h = has_table(db, s, name);
    if (h < 0) return -1;
    if (h > 0) {
      int k = snprintf(out, cap, "%s.%s", s, name);
      return k > 0 && (size_t)k < cap ? 1 : 0;
    }
  }
  return 0;
}

/* A table key from sq_qualify ("schema.name"): 1 a table, 2 a view (it reads
 * other tables; triggers and cascades are seen by the update hook), 3 never
 * cached (temp, an in-memory or temporary attached database, unknown). */
static int sq_table(qp__bconn *b, const char *key) {
  const char *dot = strchr(key, '.');
  if (dot == NULL) return 3;
  qp__sq_watch *w = qp__sq_watch_of(b);
  const qp__sq_file *f = NULL;
  for (int i = 0; i < w->nfiles && f == NULL; i++)
    if (strlen(w->files[i].schema) == (size_t)(dot - key) &&
        sqlite3_strnicmp(w->files[i].schema, key, (int)(dot - key)) == 0)
      f = &w->files[i];
  if (f == NULL) return 3;
  char *sql = sqlite3_mprintf("SELECT count(*) FILTER (WHERE type = 'table'), "
                              "count(*) FILTER (WHERE type = 'view') FROM \"%w\".sqlite_master "
                              "WHERE name = ?1 COLLATE NOCASE",
                              f->schema);
  if (sql == NULL) return 0;
  int64_t v[2];
  bool ok = ints(qp__sq_db(b), sql, dot + 1, v, 2);
  sqlite3_free(sql);
  if (!ok) return 0;
  if (v[0] + v[1] == 0) return 3;
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

/* PRAGMA "schema".data_version (per file: the plain pragma covers main
 * only): a read transaction (fcntl locks on the wal-index), prepared once
 * per file and connection. 1 changed (or the first call), 0 not, -1
 * failure. SQLite does not count this connection's own commits. */
static int dv_changed(sqlite3 *db, qp__sq_file *f) {
  if (f->dv == NULL) {
    char *sql = sqlite3_mprintf("PRAGMA \"%w\".data_version", f->schema);
    int rc = sql ? sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &f->dv, NULL)
                 : SQLITE_NOMEM;
    sqlite3_free(sql);
    if (rc != SQLITE_OK) {
      sqlite3_finalize(f->dv);
      f->dv = NULL;
      return -1;
    }
  }
  bool ok = sqlite3_step(f->dv) == SQLITE_ROW;
  int64_t v = ok ? sqlite3_column_int64(f->dv, 0) : 0;
  sqlite3_reset(f->dv);
  if (!ok) return -1;
  int changed = f->data_version != v;
  f->data_version = v;
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
static inline __attribute__((always_inline)) bool wal_header_is(const volatile unsigned char *shm,
                                                               const unsigned char *last) {
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

/* One text row of a PRAGMA about `schema`; false on failure. */
static bool pragma_is(sqlite3 *db, const char *schema, const char *pragma, const char *want) {
  char *sql = sqlite3_mprintf("PRAGMA \"%w\".%s", schema, pragma);
  sqlite3_stmt *st = NULL;
  bool ok = sql != NULL && sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL &&
            sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), want) == 0;
  sqlite3_finalize(st);
  sqlite3_free(sql);
  return ok;
}

/* Once per file and connection, after a data_version read (so that the
 * connection has the file's wal-index open): SQLite's own mapping of the
 * wal-index's first page, when the header can be trusted to move with
 * every commit of every process: WAL mode, normal locking (an exclusive
 * one keeps the wal-index in heap memory), the default unix VFS (a mapped
 * -shm file) and a writable mapping. The mapping lives as long as this
 * connection keeps the file's WAL open, which ends only by a journal_mode
 * PRAGMA on it (the authorizer turns the check off before such a statement
 * runs; other processes cannot leave WAL mode while this connection holds
 * its shared lock on the file), by a DETACH (the pool re-reads the
 * identity after it, which drops the file's entry, and sq_changed checks
 * the schema count first) or by closing it (which resets the state). */
static void shm_setup(sqlite3 *db, const qp__sq_watch *w, qp__sq_file *fl) {
  qp__sq_shm *m = &fl->shm;
  m->state = -1;
  if (w->no_header || !pragma_is(db, fl->schema, "journal_mode", "wal") ||
      !pragma_is(db, fl->schema, "locking_mode", "normal"))
    return;
  sqlite3_vfs *vfs = NULL;
  sqlite3_file *f = NULL;
  if (sqlite3_file_control(db, fl->schema, SQLITE_FCNTL_VFS_POINTER, &vfs) != SQLITE_OK ||
      vfs == NULL || vfs->zName == NULL || strcmp(vfs->zName, "unix") != 0)
    return;
  if (sqlite3_file_control(db, fl->schema, SQLITE_FCNTL_FILE_POINTER, &f) != SQLITE_OK ||
      f == NULL || f->pMethods == NULL || f->pMethods->iVersion < 2 ||
      f->pMethods->xShmMap == NULL)
    return;
  void volatile *p = NULL;
  if (f->pMethods->xShmMap(f, 0, 32768, 0, &p) != SQLITE_OK || p == NULL) return;
  unsigned char h[QP__SQ_WALHDR];
  if (!wal_header(p, h) && !wal_header(p, h)) return;
  m->hdr = p;
  m->state = 1;
}

/* One file: 0 nothing committed by another connection since the previous
 * check, 1 something (or the first check), -1 failure. */
static int file_changed(sqlite3 *db, const qp__sq_watch *w, qp__sq_file *f) {
  qp__sq_shm *m = &f->shm;
  unsigned char h[QP__SQ_WALHDR];
  bool clean = m->state > 0 && wal_header(m->hdr, h);
  int changed = dv_changed(db, f);
  if (changed < 0) return -1;
  if (clean) {
    memcpy(m->last, h, sizeof h);
    m->have_last = true;
  } else if (m->state == 0) {
    shm_setup(db, w, f);
  }
  return changed;
}

/* Before every hit and fill: has another connection committed to any of
 * the connection's files since the previous call? Each file's wal-index
 * header is read first (no lock, no system call); when it equals the one
 * read before that file's previous data_version read, nothing at all was
 * committed to the file since then, by anyone. Otherwise (a commit, this
 * connection's own included, or a header that could not be read cleanly)
 * the file's data_version answers, and the header read before it becomes
 * the reference. The argument that this is exact is in docs/cache.md.
 * An ATTACH or DETACH prepared on the connection since the identity was
 * read (the pool reads it again after one; this is the authorizer's word,
 * one load) is a failure: the read runs uncached and the identity is read
 * again, before any header of a file that may be gone is looked at. */
static int sq_changed(qp__bconn *b) {
  qp__sq_watch *w = qp__sq_watch_of(b);
  if (w->attach_seen) return -1;
  qp__sq_file *f = w->files, *end = w->files + w->nfiles;
  while (f < end && f->shm.state > 0 && f->shm.have_last && wal_header_is(f->shm.hdr, f->shm.last))
    f++;
  if (f == end) {
    w->fast++;
    return 0;
  }
  /* the files before f answered by their headers: no commit there */
  sqlite3 *db = qp__sq_db(b);
  int changed = 0;
  for (; f < end; f++) {
    if (f->shm.state > 0 && f->shm.have_last && wal_header_is(f->shm.hdr, f->shm.last)) continue;
    int c = file_changed(db, w, f);
    if (c < 0) return -1;
    changed |= c;
  }
  w->full++;
  return changed;
}

int qp__sq_authorize(void *ud, int action, const char *a1, const char *a2, const char *a3,
                     const char *a4) {
  (void)a3;
  (void)a4;
  qp__sq_watch *w = ud;
  if (action == SQLITE_ATTACH || action == SQLITE_DETACH) w->attach_seen = true;
  if (action == SQLITE_PRAGMA && a1 != NULL && a2 != NULL &&
      (sqlite3_stricmp(a1, "journal_mode") == 0 || sqlite3_stricmp(a1, "locking_mode") == 0)) {
    /* unqualified, these set every file's mode: all checks go */
    w->no_header = true;
    for (int i = 0; i < QP__SQ_FILES; i++) {
      w->files[i].shm.state = -1;
      w->files[i].shm.hdr = NULL;
      w->files[i].shm.have_last = false;
    }
  }
  return SQLITE_OK;
}

/* Checks answered by the headers alone and by data_version on this
 * connection (tests). */
void qp__sq_change_checks(qp__bconn *b, uint64_t *fast, uint64_t *full);
void qp__sq_change_checks(qp__bconn *b, uint64_t *fast, uint64_t *full) {
  qp__sq_watch *w = qp__sq_watch_of(b);
  *fast = w->fast;
  *full = w->full;
}

static void sq_watch_op(qp__bconn *b, qp__change_fn fn, void *ud) { qp__sq_set_watch(b, fn, ud); }

const qp__cache_ops qp__sqlite_cache_ops = {
    .identity = sq_identity,
    .table = sq_table,
    .qualify = sq_qualify,
    .func = sq_func,
    .reported = NULL,
    .changed = sq_changed,
    .watch = sq_watch_op,
};
