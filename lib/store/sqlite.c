/*
 * The SQLite profile store: one file that any number of processes flush into
 * at once (WAL, a long busy timeout, one IMMEDIATE transaction per flush,
 * INSERT ... ON CONFLICT DO UPDATE merging into existing rows).
 *
 * A file is checked before anything can write to it: its first 100 bytes
 * must be an SQLite header carrying qprof's application_id, so that a text
 * file or someone else's database is refused without being opened by SQLite
 * for writing. New stores are built under a temporary name and linked into
 * place, so a concurrent opener never sees a half-created store.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_int.h"

/* Long enough for 8 processes flushing large batches at once. */
#define SQ_BUSY_TIMEOUT_MS 60000

typedef struct sq_store {
  sqlite3 *db;
  sqlite3_stmt *up_query, *up_stats, *scan, *first, *last, *text, *ins_stats, *ins_query;
  sqlite3_stmt *before, *mark_put, *mark_find, *texts;
  qp_buf hist_buf, codes_buf;
  bool reading; /* inside a read transaction begun by sq_read_begin */
  bool no_hits; /* a store older than version 4 read without migrating: no cache hit columns */
  bool no_dims; /* older than version 6 read without migrating: no user/application/host */
} sq_store;

static const char SQL_UP_QUERY[] =
    "INSERT INTO qp_query (fingerprint, backend, query, sample, sample_ns, first_seen_ns, "
    "last_seen_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
    "ON CONFLICT (fingerprint) DO UPDATE SET "
    "first_seen_ns = min(first_seen_ns, excluded.first_seen_ns), "
    "last_seen_ns = max(last_seen_ns, excluded.last_seen_ns), "
    "sample = CASE WHEN excluded.sample IS NOT NULL AND (sample IS NULL OR "
    "excluded.sample_ns > sample_ns) THEN excluded.sample ELSE sample END, "
    "sample_ns = CASE WHEN excluded.sample IS NOT NULL AND (sample IS NULL OR "
    "excluded.sample_ns > sample_ns) THEN excluded.sample_ns ELSE sample_ns END";

/* The variance merges as in stats.c (Chan et al.), with mean = total / calls;
 * every right-hand side sees the row as it was before the update. */
static const char SQL_UP_STATS[] =
    "INSERT INTO qp_stats (level, bucket, fingerprint, backend, database, calls, errors, "
    "error_codes, rows, total_ns, min_ns, max_ns, m2, first_seen_ns, last_seen_ns, hist, "
    "cache_hits, cache_hit_ns, user_name, application, host) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, "
    "?19, ?20, ?21) "
    "ON CONFLICT (level, bucket, fingerprint, backend, database, user_name, application, host) "
    "DO UPDATE SET "
    "m2 = CASE WHEN calls = 0 OR excluded.calls = 0 THEN m2 + excluded.m2 ELSE m2 + excluded.m2 + "
    "(CAST(excluded.total_ns AS REAL) / excluded.calls - CAST(total_ns AS REAL) / calls) * "
    "(CAST(excluded.total_ns AS REAL) / excluded.calls - CAST(total_ns AS REAL) / calls) * "
    "(CAST(calls AS REAL) * excluded.calls / (calls + excluded.calls)) END, "
    "cache_hits = cache_hits + excluded.cache_hits, "
    "cache_hit_ns = cache_hit_ns + excluded.cache_hit_ns, "
    "calls = calls + excluded.calls, errors = errors + excluded.errors, "
    "error_codes = qp_codes_merge(error_codes, excluded.error_codes), "
    "rows = rows + excluded.rows, total_ns = total_ns + excluded.total_ns, "
    "min_ns = min(min_ns, excluded.min_ns), max_ns = max(max_ns, excluded.max_ns), "
    "first_seen_ns = min(first_seen_ns, excluded.first_seen_ns), "
    "last_seen_ns = max(last_seen_ns, excluded.last_seen_ns), "
    "hist = qp_hist_merge(hist, excluded.hist)";

static const char SQL_INS_STATS[] =
    "INSERT INTO qp_stats (level, bucket, fingerprint, backend, database, calls, errors, "
    "error_codes, rows, total_ns, min_ns, max_ns, m2, first_seen_ns, last_seen_ns, hist, "
    "cache_hits, cache_hit_ns, user_name, application, host) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, "
    "?19, ?20, ?21)";

static const char SQL_INS_QUERY[] =
    "INSERT OR IGNORE INTO qp_query (fingerprint, backend, query, first_seen_ns, last_seen_ns) "
    "VALUES (?1, ?2, ?3, 0, 0)";

static const char SQL_SCAN[] =
    "SELECT fingerprint, backend, database, calls, errors, error_codes, rows, total_ns, min_ns, "
    "max_ns, m2, first_seen_ns, last_seen_ns, hist, bucket, cache_hits, cache_hit_ns, "
    "user_name, application, host FROM qp_stats "
    "WHERE level = ?1 AND bucket >= ?2 AND bucket < ?3";
/* The same on stores older than schema versions 6 and 4, read without
 * migrating them. */
static const char SQL_SCAN_V4[] =
    "SELECT fingerprint, backend, database, calls, errors, error_codes, rows, total_ns, min_ns, "
    "max_ns, m2, first_seen_ns, last_seen_ns, hist, bucket, cache_hits, cache_hit_ns, "
    "'', '', '' FROM qp_stats "
    "WHERE level = ?1 AND bucket >= ?2 AND bucket < ?3";
static const char SQL_SCAN_V2[] =
    "SELECT fingerprint, backend, database, calls, errors, error_codes, rows, total_ns, min_ns, "
    "max_ns, m2, first_seen_ns, last_seen_ns, hist, bucket, 0, 0, '', '', '' FROM qp_stats "
    "WHERE level = ?1 AND bucket >= ?2 AND bucket < ?3";

/* ---- SQL functions that merge the encoded columns ---------------------- */

static void fn_hist_merge(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  qp_store *s = sqlite3_user_data(ctx);
  qp_hist h;
  qp__hist_init(&h);
  qp_status rc = QP_OK;
  for (int i = 0; i < argc && rc == QP_OK; i++)
    rc = qp__hist_decode_add(&h, &s->hooks, sqlite3_value_blob(argv[i]),
                             (size_t)sqlite3_value_bytes(argv[i]));
  qp_buf b;
  qp__buf_init(&b, &s->hooks);
  if (rc == QP_OK && !qp__hist_encode(&h, &b)) rc = QP_NOMEM;
  if (rc == QP_OK) sqlite3_result_blob(ctx, b.data, (int)b.len, SQLITE_TRANSIENT);
  else if (rc == QP_NOMEM) sqlite3_result_error_nomem(ctx);
  else sqlite3_result_error(ctx, "qp_hist_merge: malformed histogram", -1);
  qp__buf_free(&b);
  qp__hist_free(&h, &s->hooks);
}

static void fn_codes_merge(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  qp_store *s = sqlite3_user_data(ctx);
  qp_codes c = {0};
  qp_status rc = QP_OK;
  for (int i = 0; i < argc && rc == QP_OK; i++)
    rc = qp__codes_decode_add(&c, &s->hooks, (const char *)sqlite3_value_text(argv[i]),
                              (size_t)sqlite3_value_bytes(argv[i]));
  qp_buf b;
  qp__buf_init(&b, &s->hooks);
  if (rc == QP_OK && !qp__codes_encode(&c, &b)) rc = QP_NOMEM;
  if (rc == QP_OK) sqlite3_result_text(ctx, qp__buf_cstr(&b), (int)b.len, SQLITE_TRANSIENT);
  else if (rc == QP_NOMEM) sqlite3_result_error_nomem(ctx);
  else sqlite3_result_error(ctx, "qp_codes_merge: malformed error codes", -1);
  qp__buf_free(&b);
  qp__codes_free(&c, &s->hooks);
}

/* ---- helpers ----------------------------------------------------------- */

static qp_status sq_fail(qp_store *s, sqlite3 *db, qp_status code, const char *what) {
  int rc = db ? sqlite3_extended_errcode(db) : SQLITE_ERROR;
  if (rc == SQLITE_NOMEM) code = QP_NOMEM;
  return qp__err_set(&s->err, code, "%s: %s: %s", s->display, what,
                     db ? sqlite3_errmsg(db) : "cannot open");
}

static qp_status sq_exec(qp_store *s, sqlite3 *db, const char *sql, const char *what) {
  if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) return sq_fail(s, db, QP_IO, what);
  return QP_OK;
}

static qp_status sq_prepare(qp_store *s, sq_store *q, sqlite3_stmt **slot, const char *sql) {
  if (*slot != NULL) {
    sqlite3_reset(*slot);
    sqlite3_clear_bindings(*slot);
    return QP_OK;
  }
  if (sqlite3_prepare_v3(q->db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL) != SQLITE_OK)
    return sq_fail(s, q->db, QP_IO, "cannot prepare a statement");
  return QP_OK;
}

static qp_status pragma_int(qp_store *s, sqlite3 *db, const char *sql, int64_t *out) {
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    return sq_fail(s, db, QP_NOTSTORE, "cannot read");
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) *out = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  if (rc != SQLITE_ROW) {
    qp_status code = sqlite3_errcode(db) == SQLITE_NOTADB ? QP_NOTSTORE : QP_IO;
    return sq_fail(s, db, code, "cannot read");
  }
  return QP_OK;
}

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Reads the SQLite header without SQLite: refuses anything that is not a
 * qprof store before a single byte could be written to it. *empty is set for
 * a zero-length file. */
static qp_status check_header(qp_store *s, const char *path, bool *empty) {
  *empty = false;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return qp__err_set(&s->err, errno == ENOENT ? QP_NOTFOUND : QP_IO, "%s: cannot open: %s",
                       s->display, strerror(errno));
  unsigned char h[100];
  ssize_t n = 0;
  while (n < (ssize_t)sizeof h) {
    ssize_t r = read(fd, h + n, sizeof h - (size_t)n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      close(fd);
      return qp__err_set(&s->err, QP_IO, "%s: cannot read: %s", s->display, strerror(e));
    }
    if (r == 0) break;
    n += r;
  }
  close(fd);
  if (n == 0) {
    *empty = true;
    return QP_OK;
  }
  if (n < (ssize_t)sizeof h || memcmp(h, "SQLite format 3", 16) != 0)
    return qp__err_set(&s->err, QP_NOTSTORE,
                       "%s: not a qprof store (not an SQLite database); refusing to touch it",
                       s->display);
  uint32_t app = be32(h + 68);
  if (app != QP_STORE_APPLICATION_ID)
    return qp__err_set(&s->err, QP_NOTSTORE,
                       "%s: an SQLite database but not a qprof store (application_id 0x%08x); "
                       "refusing to touch it",
                       s->display, app);
  uint32_t ver = be32(h + 60);
  if (ver > QP_STORE_SCHEMA_VERSION)
    return qp__err_set(&s->err, QP_SCHEMA,
                       "%s: store schema version %u is newer than this qprof (%d); upgrade qprof",
                       s->display, ver, QP_STORE_SCHEMA_VERSION);
  return QP_OK;
}

/* Applies schema version 1 and the migrations up to `version` in the current transaction. */
static qp_status apply_schema(qp_store *s, sqlite3 *db, int from, int version) {
  qp_status rc = QP_OK;
  if (from == 0) rc = sq_exec(s, db, qp__store_schema_v1, "cannot create the schema");
  for (int v = from == 0 ? 1 : from; rc == QP_OK && v < version; v++)
    rc = sq_exec(s, db, qp__store_migrations[v - 1], qp__store_migration_files[v - 1]);
  if (rc != QP_OK) return rc;
  char sql[64];
  snprintf(sql, sizeof sql, "PRAGMA user_version = %d", version);
  return sq_exec(s, db, sql, "cannot set the schema version");
}

/* qp_writes_6_levels(): true. The trigger of schema version 10 refuses bucket
 * rows from connections without it (an older qprof, which writes 4 levels,
 * see sql/migrations/010_levels.sql). */
static void fn_writes_6_levels(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  (void)argv;
  sqlite3_result_int(ctx, 1);
}

#ifndef SQLITE_INNOCUOUS
#define SQLITE_INNOCUOUS 0 /* before SQLite 3.31 every function may run in triggers */
#endif

static void register_functions(qp_store *s, sqlite3 *db) {
  sqlite3_create_function(db, "qp_writes_6_levels", 0,
                          SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, NULL,
                          fn_writes_6_levels, NULL, NULL);
  sqlite3_create_function(db, "qp_hist_merge", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC, s,
                          fn_hist_merge, NULL, NULL);
  sqlite3_create_function(db, "qp_codes_merge", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC, s,
                          fn_codes_merge, NULL, NULL);
}

static qp_status sq_open_db(qp_store *s, const char *path, int flags, sqlite3 **out) {
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    qp_status st = sq_fail(s, db, rc == SQLITE_NOMEM ? QP_NOMEM : QP_IO, "cannot open");
    sqlite3_close(db);
    return st;
  }
  sqlite3_busy_timeout(db, SQ_BUSY_TIMEOUT_MS);
  sqlite3_extended_result_codes(db, 1);
  register_functions(s, db);
  *out = db;
  return QP_OK;
}

/* Removes the temporary store and every file SQLite may have made beside it
 * (its WAL, shared-memory index and rollback journal): a creation that failed
 * half-way, on a full disk for instance, leaves nothing behind. `tmp` has
 * room for the longest suffix. */
static void remove_tmp(char *tmp) {
  static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
  size_t len = strlen(tmp);
  for (size_t i = 0; i < QP_ARRAY_LEN(suffixes); i++) {
    memcpy(tmp + len, suffixes[i], strlen(suffixes[i]) + 1);
    unlink(tmp);
  }
  tmp[len] = '\0';
}

/* Moves everything the WAL holds into the database file itself, so that the
 * file linked into place is the whole store: SQLite checkpoints on close too,
 * but a checkpoint that fails there (no space left) is not reported, and the
 * schema would stay behind in a WAL that is about to be removed. */
static qp_status checkpoint(qp_store *s, sqlite3 *db) {
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, "PRAGMA wal_checkpoint(TRUNCATE)", -1, &st, NULL) != SQLITE_OK)
    return sq_fail(s, db, QP_IO, "cannot checkpoint the new store");
  int rc = sqlite3_step(st);
  bool busy = rc == SQLITE_ROW && sqlite3_column_int(st, 0) != 0;
  sqlite3_finalize(st);
  if (rc != SQLITE_ROW) return sq_fail(s, db, QP_IO, "cannot checkpoint the new store");
  if (busy)
    return qp__err_set(&s->err, QP_IO, "%s: cannot checkpoint the new store: busy", s->display);
  return QP_OK;
}

/* Builds a new store under a temporary name in the same directory, then links
 * it into place: *exists is set when another process got there first. */
static qp_status create_new(qp_store *s, const char *path, int version, bool *exists) {
  *exists = false;
  size_t n = strlen(path) + 64;
  char *tmp = qp__malloc(&s->hooks, n + sizeof "-journal");
  if (tmp == NULL) return qp__err_set(&s->err, QP_NOMEM, "out of memory");
  snprintf(tmp, n, "%s.tmp-%ld-%llx", path, (long)getpid(), (unsigned long long)qp__now_ns());
  int fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) {
    qp_status st = qp__err_set(&s->err, QP_IO, "%s: cannot create: %s", s->display,
                               strerror(errno));
    qp__free(&s->hooks, tmp);
    return st;
  }
  close(fd);
  sqlite3 *db = NULL;
  qp_status rc = sq_open_db(s, tmp, SQLITE_OPEN_READWRITE, &db);
  if (rc == QP_OK) rc = sq_exec(s, db, "PRAGMA journal_mode = WAL", "cannot enable WAL");
  if (rc == QP_OK) rc = sq_exec(s, db, "BEGIN", "cannot begin");
  if (rc == QP_OK) rc = apply_schema(s, db, 0, version);
  if (rc == QP_OK) rc = sq_exec(s, db, "COMMIT", "cannot commit the schema");
  if (rc == QP_OK) rc = checkpoint(s, db);
  if (db != NULL && sqlite3_close(db) != SQLITE_OK && rc == QP_OK)
    rc = qp__err_set(&s->err, QP_IO, "%s: cannot close the new store", s->display);
  if (rc == QP_OK && link(tmp, path) != 0) {
    if (errno == EEXIST) *exists = true;
    else rc = qp__err_set(&s->err, QP_IO, "%s: cannot create: %s", s->display, strerror(errno));
  }
  remove_tmp(tmp);
  qp__free(&s->hooks, tmp);
  return rc;
}

/* A zero-length file (e.g. from mktemp) becomes a store under an exclusive
 * lock; whoever gets the lock second finds it initialized. */
static qp_status init_empty(qp_store *s, sqlite3 *db, const char *path) {
  qp_status rc = sq_exec(s, db, "BEGIN EXCLUSIVE", "cannot lock");
  if (rc != QP_OK) return rc;
  int64_t tables = 0, app = 0;
  rc = pragma_int(s, db, "SELECT count(*) FROM sqlite_master", &tables);
  if (rc == QP_OK) rc = pragma_int(s, db, "PRAGMA application_id", &app);
  if (rc == QP_OK && tables == 0 && app == 0) {
    rc = apply_schema(s, db, 0, QP_STORE_SCHEMA_VERSION);
    if (rc == QP_OK && chmod(path, 0600) != 0)
      rc = qp__err_set(&s->err, QP_IO, "%s: cannot chmod 0600: %s", s->display, strerror(errno));
  }
  if (rc == QP_OK) rc = sq_exec(s, db, "COMMIT", "cannot commit the schema");
  if (rc != QP_OK) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  if (rc == QP_OK) rc = sq_exec(s, db, "PRAGMA journal_mode = WAL", "cannot enable WAL");
  return rc;
}

/* s->levels_from from the store's meta row (see QP_META_LEVELS_FROM); none
 * in a store older than version 10. */
static qp_status read_levels_from(qp_store *s, sqlite3 *db) {
  s->levels_from = INT64_MAX;
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, "SELECT value FROM qp_meta WHERE key = '" QP_META_LEVELS_FROM "'",
                         -1, &st, NULL) != SQLITE_OK)
    return sq_fail(s, db, QP_IO, "cannot read the store's metadata");
  int r = sqlite3_step(st);
  if (r == SQLITE_ROW) s->levels_from = strtoll((const char *)sqlite3_column_text(st, 0), NULL, 10);
  sqlite3_finalize(st);
  if (r != SQLITE_ROW && r != SQLITE_DONE)
    return sq_fail(s, db, QP_IO, "cannot read the store's metadata");
  return QP_OK;
}

/* Checks, once SQLite has the file, what the raw header suggested: the magic
 * row and the version; migrates an older store in WRITE mode. */
static qp_status verify_and_migrate(qp_store *s, sqlite3 *db, qp_store_mode mode) {
  int64_t ver = 0;
  qp_status rc = pragma_int(s, db, "PRAGMA user_version", &ver);
  if (rc != QP_OK) return rc;
  if (ver > QP_STORE_SCHEMA_VERSION)
    return qp__err_set(&s->err, QP_SCHEMA,
                       "%s: store schema version %lld is newer than this qprof (%d); upgrade qprof",
                       s->display, (long long)ver, QP_STORE_SCHEMA_VERSION);
  sqlite3_stmt *st;
  bool magic = false;
  if (sqlite3_prepare_v2(db, "SELECT value FROM qp_meta WHERE key = 'magic'", -1, &st, NULL) ==
      SQLITE_OK) {
    magic = sqlite3_step(st) == SQLITE_ROW &&
            strcmp((const char *)sqlite3_column_text(st, 0), "qprof profile store") == 0;
    sqlite3_finalize(st);
  }
  if (!magic || ver < 1)
    return qp__err_set(&s->err, QP_NOTSTORE, "%s: not a qprof store (no qprof magic); refusing "
                       "to touch it", s->display);
  if (ver < 4 && mode == QP_STORE_READ) ((sq_store *)s->impl)->no_hits = true;
  if (ver < 6 && mode == QP_STORE_READ) ((sq_store *)s->impl)->no_dims = true;
  if (ver == QP_STORE_SCHEMA_VERSION || mode == QP_STORE_READ) return read_levels_from(s, db);
  rc = sq_exec(s, db, "BEGIN IMMEDIATE", "cannot lock for migration");
  if (rc != QP_OK) return rc;
  rc = pragma_int(s, db, "PRAGMA user_version", &ver); /* another process may have migrated */
  if (rc == QP_OK && ver < QP_STORE_SCHEMA_VERSION)
    rc = apply_schema(s, db, (int)ver, QP_STORE_SCHEMA_VERSION);
  if (rc == QP_OK) rc = sq_exec(s, db, "COMMIT", "cannot commit the migration");
  if (rc != QP_OK) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  else qp__log(&s->hooks, QP_LOG_INFO, "%s: migrated store schema from version %lld to %d",
               s->display, (long long)ver, QP_STORE_SCHEMA_VERSION);
  return rc == QP_OK ? read_levels_from(s, db) : rc;
}

static qp_status sq_open(qp_store *s, qp_store_mode mode) {
  const char *path = s->location;
  sq_store *q = qp__calloc(&s->hooks, 1, sizeof *q);
  if (q == NULL) return qp__err_set(&s->err, QP_NOMEM, "out of memory");
  qp__buf_init(&q->hist_buf, &s->hooks);
  qp__buf_init(&q->codes_buf, &s->hooks);
  s->impl = q;
  bool empty = false;
  qp_status rc = check_header(s, path, &empty);
  if (rc == QP_NOTFOUND && mode == QP_STORE_WRITE) {
    bool exists;
    rc = create_new(s, path, QP_STORE_SCHEMA_VERSION, &exists);
    if (rc == QP_OK) rc = check_header(s, path, &empty);
  }
  if (rc == QP_NOTFOUND)
    rc = qp__err_set(&s->err, QP_NOTFOUND, "%s: no such store", s->display);
  if (rc == QP_OK && empty && mode == QP_STORE_READ)
    rc = qp__err_set(&s->err, QP_NOTSTORE, "%s: empty file, not a qprof store", s->display);
  if (rc == QP_OK)
    rc = sq_open_db(s, path, mode == QP_STORE_READ ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE,
                    &q->db);
  if (rc == QP_OK && empty) rc = init_empty(s, q->db, path);
  if (rc == QP_OK) rc = verify_and_migrate(s, q->db, mode);
  /* In WAL mode NORMAL never corrupts the store; it only may lose the last
   * flushes on a power cut, and saves an fsync per flush. */
  if (rc == QP_OK && mode == QP_STORE_WRITE)
    rc = sq_exec(s, q->db, "PRAGMA synchronous = NORMAL", "cannot set synchronous");
  /* A flush of many new queries touches pages all over the store's
   * indexes; SQLite's default 2 MB page cache then re-reads and spills the
   * same pages thousands of times (100,000 distinct statements: 580,000
   * pwrite and 630,000 pread calls). The cache grows only as pages are
   * used, so the bound costs nothing on small flushes. Writers only: a
   * report reads each page about once, and would only grow its peak memory
   * (100,000 queries: 78 MB with the default cache, 98 MB with this one). */
  if (rc == QP_OK && mode == QP_STORE_WRITE)
    rc = sq_exec(s, q->db, "PRAGMA cache_size = -65536", "cannot set the page cache size");
  if (rc == QP_OK && mode == QP_STORE_WRITE) {
    /* Stores are created in WAL mode; one switched back by hand goes back
     * to WAL (best effort: another connection may hold it). */
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(q->db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK) {
      bool wal = sqlite3_step(st) == SQLITE_ROW &&
                 strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
      sqlite3_finalize(st);
      if (!wal) sqlite3_exec(q->db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
    }
  }
  if (rc != QP_OK) {
    s->ops->close(s);
    return rc;
  }
  return QP_OK;
}

static void sq_close(qp_store *s) {
  sq_store *q = s->impl;
  if (q == NULL) return;
  sqlite3_stmt *all[] = {q->up_query, q->up_stats, q->scan,      q->first,
                         q->last,     q->text,     q->ins_stats, q->ins_query, q->before,
                         q->mark_put, q->mark_find, q->texts};
  for (size_t i = 0; i < QP_ARRAY_LEN(all); i++) sqlite3_finalize(all[i]);
  sqlite3_close(q->db);
  qp__buf_free(&q->hist_buf);
  qp__buf_free(&q->codes_buf);
  qp__free(&s->hooks, q);
  s->impl = NULL;
}

/* ---- writing ------------------------------------------------------------ */

static qp_status bind_stats(qp_store *s, sq_store *q, sqlite3_stmt *st, int level,
                            const qp_entry *e) {
  q->hist_buf.len = 0;
  q->codes_buf.len = 0;
  q->hist_buf.failed = q->codes_buf.failed = false;
  if (!qp__hist_encode(&e->st.hist, &q->hist_buf) || !qp__codes_encode(&e->st.codes, &q->codes_buf))
    return qp__err_set(&s->err, QP_NOMEM, "out of memory");
  sqlite3_bind_int(st, 1, level);
  sqlite3_bind_int64(st, 2, qp__level_bucket(level, e->bucket));
  sqlite3_bind_int64(st, 3, (int64_t)e->fingerprint);
  sqlite3_bind_text(st, 4, qp_backend_name(e->backend), -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 5, e->database ? e->database : "", -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 6, (int64_t)e->st.calls);
  sqlite3_bind_int64(st, 7, (int64_t)e->st.errors);
  sqlite3_bind_text(st, 8, qp__buf_cstr(&q->codes_buf), (int)q->codes_buf.len, SQLITE_STATIC);
  sqlite3_bind_int64(st, 9, e->st.rows);
  sqlite3_bind_int64(st, 10, (int64_t)e->st.total_ns);
  /* a row of cache hits alone has no minimum: the largest integer, so
   * that min() merges keep the other row's */
  sqlite3_bind_int64(st, 11, e->st.calls ? (int64_t)e->st.min_ns : INT64_MAX);
  sqlite3_bind_int64(st, 12, e->st.calls ? (int64_t)e->st.max_ns : 0);
  sqlite3_bind_double(st, 13, e->st.m2);
  sqlite3_bind_int64(st, 14, e->st.first_ns);
  sqlite3_bind_int64(st, 15, e->st.last_ns);
  sqlite3_bind_blob(st, 16, q->hist_buf.data, (int)q->hist_buf.len, SQLITE_STATIC);
  sqlite3_bind_int64(st, 17, (int64_t)e->st.cache_hits);
  sqlite3_bind_int64(st, 18, (int64_t)e->st.cache_hit_ns);
  sqlite3_bind_text(st, 19, e->user ? e->user : "", -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 20, e->application ? e->application : "", -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 21, e->host ? e->host : "", -1, SQLITE_STATIC);
  return QP_OK;
}

static qp_status step_done(qp_store *s, sq_store *q, sqlite3_stmt *st, const char *what) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return sq_fail(s, q->db, QP_IO, what);
  return QP_OK;
}

static qp_status write_entry(qp_store *s, sq_store *q, const qp_entry *e) {
  qp_status rc = sq_prepare(s, q, &q->up_query, SQL_UP_QUERY);
  if (rc != QP_OK) return rc;
  sqlite3_stmt *st = q->up_query;
  sqlite3_bind_int64(st, 1, (int64_t)e->fingerprint);
  sqlite3_bind_text(st, 2, qp_backend_name(e->backend), -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, e->query ? e->query : "", -1, SQLITE_STATIC);
  if (e->sample != NULL) {
    sqlite3_bind_text(st, 4, e->sample, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, (int64_t)e->sample_ns);
  }
  sqlite3_bind_int64(st, 6, e->st.first_ns);
  sqlite3_bind_int64(st, 7, e->st.last_ns);
  rc = step_done(s, q, st, "cannot write a query");
  for (int level = 0; rc == QP_OK && level < QP_LEVELS; level++) {
    rc = sq_prepare(s, q, &q->up_stats, SQL_UP_STATS);
    if (rc == QP_OK) rc = bind_stats(s, q, q->up_stats, level, e);
    if (rc == QP_OK) rc = step_done(s, q, q->up_stats, "cannot write statistics");
  }
  return rc;
}

static qp_status write_drop(qp_store *s, sq_store *q, const qp_drop *d) {
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(q->db,
                         "INSERT INTO qp_dropped (bucket, dropped) VALUES (?1, ?2) "
                         "ON CONFLICT (bucket) DO UPDATE SET dropped = dropped + excluded.dropped",
                         -1, &st, NULL) != SQLITE_OK)
    return sq_fail(s, q->db, QP_IO, "cannot write the dropped count");
  sqlite3_bind_int64(st, 1, d->bucket);
  sqlite3_bind_int64(st, 2, (int64_t)d->n);
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? QP_OK : sq_fail(s, q->db, QP_IO, "cannot write the dropped count");
}

/* Inserts or updates the file mark (see qp_file_mark). */
static qp_status write_mark(qp_store *s, sq_store *q, qp_file_mark *m) {
  qp_status rc = sq_prepare(s, q, &q->mark_put,
                            "INSERT INTO qp_ingest_file (id, path, device, inode, size, head_len, "
                            "head_hash, read_to, lines, gzip, updated_ns) VALUES (?1, ?2, ?3, ?4, "
                            "?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (id) DO UPDATE SET "
                            "path = excluded.path, device = excluded.device, inode = "
                            "excluded.inode, size = excluded.size, head_len = excluded.head_len, "
                            "head_hash = excluded.head_hash, read_to = excluded.read_to, lines = "
                            "excluded.lines, gzip = excluded.gzip, updated_ns = "
                            "excluded.updated_ns");
  if (rc != QP_OK) return rc;
  sqlite3_stmt *st = q->mark_put;
  if (m->id > 0) sqlite3_bind_int64(st, 1, m->id);
  sqlite3_bind_text(st, 2, m->path ? m->path : "", -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, m->device);
  sqlite3_bind_int64(st, 4, m->inode);
  sqlite3_bind_int64(st, 5, m->size);
  sqlite3_bind_int64(st, 6, m->head_len);
  sqlite3_bind_int64(st, 7, (int64_t)m->head_hash);
  sqlite3_bind_int64(st, 8, m->read_to);
  sqlite3_bind_int64(st, 9, m->lines);
  sqlite3_bind_int(st, 10, m->gzip ? 1 : 0);
  sqlite3_bind_int64(st, 11, qp__wall_ns());
  rc = step_done(s, q, st, "cannot write a file position");
  if (rc == QP_OK && m->id <= 0) m->id = sqlite3_last_insert_rowid(q->db);
  return rc;
}

static qp_status sq_marks_find(qp_store *s, int64_t device, int64_t inode, uint64_t head_hash,
                               qp_file_mark *out, size_t cap, size_t *n) {
  sq_store *q = s->impl;
  qp_status rc = sq_prepare(s, q, &q->mark_find,
                            "SELECT id, device, inode, size, head_len, head_hash, read_to, lines, "
                            "gzip FROM qp_ingest_file WHERE (device = ?1 AND inode = ?2) OR "
                            "head_hash = ?3 ORDER BY updated_ns DESC, id "
                            "DESC LIMIT ?4");
  if (rc != QP_OK) return rc;
  sqlite3_stmt *st = q->mark_find;
  sqlite3_bind_int64(st, 1, device);
  sqlite3_bind_int64(st, 2, inode);
  sqlite3_bind_int64(st, 3, (int64_t)head_hash);
  sqlite3_bind_int64(st, 4, (int64_t)cap);
  int r;
  while ((r = sqlite3_step(st)) == SQLITE_ROW && *n < cap) {
    qp_file_mark *m = &out[(*n)++];
    memset(m, 0, sizeof *m);
    m->id = sqlite3_column_int64(st, 0);
    m->device = sqlite3_column_int64(st, 1);
    m->inode = sqlite3_column_int64(st, 2);
    m->size = sqlite3_column_int64(st, 3);
    m->head_len = sqlite3_column_int64(st, 4);
    m->head_hash = (uint64_t)sqlite3_column_int64(st, 5);
    m->read_to = sqlite3_column_int64(st, 6);
    m->lines = sqlite3_column_int64(st, 7);
    m->gzip = sqlite3_column_int(st, 8) != 0;
  }
  sqlite3_reset(st);
  if (r != SQLITE_ROW && r != SQLITE_DONE) return sq_fail(s, q->db, QP_IO, "cannot read the file positions");
  return QP_OK;
}

/* The order of the statistics table's key: bucket, then the fingerprint as
 * the signed integer the store keeps, then the dimensions. */
static int entry_cmp(const void *pa, const void *pb) {
  const qp_entry *a = *(const qp_entry *const *)pa, *b = *(const qp_entry *const *)pb;
  if (a->bucket != b->bucket) return a->bucket < b->bucket ? -1 : 1;
  int64_t fa = (int64_t)a->fingerprint, fb = (int64_t)b->fingerprint;
  if (fa != fb) return fa < fb ? -1 : 1;
  int c = strcmp(a->database, b->database);
  if (c == 0) c = strcmp(a->user, b->user);
  if (c == 0) c = strcmp(a->application, b->application);
  if (c == 0) c = strcmp(a->host, b->host);
  return c;
}

static qp_status sq_write(qp_store *s, const qp_entry *list, const qp_drop *drop) {
  sq_store *q = s->impl;
  if (s->mode != QP_STORE_WRITE)
    return qp__err_set(&s->err, QP_INVALID, "%s: store opened read-only", s->display);
  qp_status rc = sq_exec(s, q->db, "BEGIN IMMEDIATE", "cannot begin a flush");
  if (rc != QP_OK) return rc;
  if (drop != NULL && drop->n > 0) rc = write_drop(s, q, drop);
  /* In key order, so that each level's rows and the texts go into their
   * B-trees one after another instead of at random pages; when the array
   * cannot be had, in list order. */
  size_t n = 0;
  for (const qp_entry *e = list; e != NULL; e = e->next)
    if (!e->ignored && (e->st.calls > 0 || e->st.cache_hits > 0)) n++;
  const qp_entry **order = n > 1 ? qp__malloc(&s->hooks, n * sizeof *order) : NULL;
  if (order != NULL) {
    size_t i = 0;
    for (const qp_entry *e = list; e != NULL; e = e->next)
      if (!e->ignored && (e->st.calls > 0 || e->st.cache_hits > 0)) order[i++] = e;
    qsort(order, n, sizeof *order, entry_cmp);
    for (size_t k = 0; rc == QP_OK && k < n; k++) rc = write_entry(s, q, order[k]);
    qp__free(&s->hooks, order);
  } else {
    for (const qp_entry *e = list; rc == QP_OK && e != NULL; e = e->next)
      if (!e->ignored && (e->st.calls > 0 || e->st.cache_hits > 0)) rc = write_entry(s, q, e);
  }
  int64_t mark_id = s->mark ? s->mark->id : 0;
  if (rc == QP_OK && s->mark != NULL) rc = write_mark(s, q, s->mark);
  if (rc == QP_OK) rc = sq_exec(s, q->db, "COMMIT", "cannot commit a flush");
  if (rc != QP_OK) sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
  if (rc == QP_OK && s->mark != NULL) s->mark_done = true;
  else if (s->mark != NULL) s->mark->id = mark_id;
  return rc;
}

/* ---- reading ------------------------------------------------------------ */

static qp_status sq_bucket_range(qp_store *s, int level, int64_t *first, int64_t *last,
                                 bool *empty) {
  sq_store *q = s->impl;
  *empty = true;
  qp_status rc = sq_prepare(s, q, &q->first,
                            "SELECT bucket FROM qp_stats WHERE level = ?1 ORDER BY bucket LIMIT 1");
  if (rc == QP_OK)
    rc = sq_prepare(s, q, &q->last,
                    "SELECT bucket FROM qp_stats WHERE level = ?1 ORDER BY bucket DESC LIMIT 1");
  if (rc != QP_OK) return rc;
  sqlite3_bind_int(q->first, 1, level);
  sqlite3_bind_int(q->last, 1, level);
  int r1 = sqlite3_step(q->first), r2 = sqlite3_step(q->last);
  if (r1 == SQLITE_ROW && r2 == SQLITE_ROW) {
    *first = sqlite3_column_int64(q->first, 0);
    *last = sqlite3_column_int64(q->last, 0);
    *empty = false;
  }
  sqlite3_reset(q->first);
  sqlite3_reset(q->last);
  if ((r1 != SQLITE_ROW && r1 != SQLITE_DONE) || (r2 != SQLITE_ROW && r2 != SQLITE_DONE))
    return sq_fail(s, q->db, QP_IO, "cannot read");
  return QP_OK;
}

static qp_status sq_scan(qp_store *s, int level, int64_t lo, int64_t hi, qp_row_fn fn, void *ud) {
  sq_store *q = s->impl;
  qp_status rc = sq_prepare(s, q, &q->scan, q->no_hits ? SQL_SCAN_V2 : q->no_dims ? SQL_SCAN_V4 : SQL_SCAN);
  if (rc != QP_OK) return rc;
  sqlite3_stmt *st = q->scan;
  sqlite3_bind_int(st, 1, level);
  sqlite3_bind_int64(st, 2, lo);
  sqlite3_bind_int64(st, 3, hi);
  qp_entry row;
  memset(&row, 0, sizeof row);
  qp__stats_init(&row.st);
  int r;
  while (rc == QP_OK && (r = sqlite3_step(st)) == SQLITE_ROW) {
    /* reuse the histogram and code arrays from row to row */
    if (row.st.hist.counts != NULL) memset(row.st.hist.counts, 0, row.st.hist.n * sizeof(uint64_t));
    row.st.codes.n = 0;
    row.fingerprint = (uint64_t)sqlite3_column_int64(st, 0);
    const char *be = (const char *)sqlite3_column_text(st, 1);
    row.backend = be != NULL && strcmp(be, "sqlite") == 0 ? QP_BACKEND_SQLITE : QP_BACKEND_POSTGRES;
    row.database = (char *)sqlite3_column_text(st, 2);
    if (row.database == NULL) row.database = "";
    row.st.calls = (uint64_t)sqlite3_column_int64(st, 3);
    row.st.errors = (uint64_t)sqlite3_column_int64(st, 4);
    rc = qp__codes_decode_add(&row.st.codes, &s->hooks, (const char *)sqlite3_column_text(st, 5),
                              (size_t)sqlite3_column_bytes(st, 5));
    row.st.rows = sqlite3_column_int64(st, 6);
    row.st.total_ns = (uint64_t)sqlite3_column_int64(st, 7);
    row.st.min_ns = (uint64_t)sqlite3_column_int64(st, 8);
    row.st.max_ns = (uint64_t)sqlite3_column_int64(st, 9);
    row.st.m2 = sqlite3_column_double(st, 10);
    row.st.first_ns = sqlite3_column_int64(st, 11);
    row.st.last_ns = sqlite3_column_int64(st, 12);
    row.bucket = sqlite3_column_int64(st, 14);
    row.st.cache_hits = (uint64_t)sqlite3_column_int64(st, 15);
    row.st.cache_hit_ns = (uint64_t)sqlite3_column_int64(st, 16);
    row.user = (char *)sqlite3_column_text(st, 17);
    row.application = (char *)sqlite3_column_text(st, 18);
    row.host = (char *)sqlite3_column_text(st, 19);
    if (row.user == NULL) row.user = "";
    if (row.application == NULL) row.application = "";
    if (row.host == NULL) row.host = "";
    qp__stats_set_mean(&row.st);
    if (rc == QP_OK)
      rc = qp__hist_decode_add(&row.st.hist, &s->hooks, sqlite3_column_blob(st, 13),
                               (size_t)sqlite3_column_bytes(st, 13));
    if (rc == QP_SYNTAX)
      rc = qp__err_set(&s->err, QP_IO, "%s: malformed statistics row (fingerprint %016llx)",
                       s->display, (unsigned long long)row.fingerprint);
    else if (rc == QP_NOMEM)
      rc = qp__err_set(&s->err, QP_NOMEM, "out of memory");
    if (rc == QP_OK && (row.st.calls > 0 || row.st.cache_hits > 0)) rc = fn(ud, &row);
  }
  if (rc == QP_OK && r != SQLITE_DONE) rc = sq_fail(s, q->db, QP_IO, "cannot read statistics");
  sqlite3_reset(st);
  qp__stats_free(&row.st, &s->hooks);
  return rc;
}

static qp_status sq_read_begin(qp_store *s) {
  sq_store *q = s->impl;
  if (sqlite3_get_autocommit(q->db) == 0) return QP_OK; /* already inside one */
  qp_status rc = sq_exec(s, q->db, "BEGIN", "cannot begin reading");
  q->reading = rc == QP_OK;
  return rc;
}

static void sq_read_end(qp_store *s) {
  sq_store *q = s->impl;
  if (q->reading && sqlite3_get_autocommit(q->db) == 0)
    sqlite3_exec(q->db, "COMMIT", NULL, NULL, NULL);
  q->reading = false;
}

static qp_status sq_bucket_before(qp_store *s, int64_t t_s, int64_t *bucket, bool *found) {
  sq_store *q = s->impl;
  *found = false;
  qp_status rc = sq_prepare(s, q, &q->before,
                            "SELECT bucket FROM qp_stats WHERE level = 0 AND bucket < ?1 "
                            "ORDER BY bucket DESC LIMIT 1");
  if (rc != QP_OK) return rc;
  sqlite3_bind_int64(q->before, 1, t_s);
  int r = sqlite3_step(q->before);
  if (r == SQLITE_ROW) {
    *bucket = sqlite3_column_int64(q->before, 0);
    *found = true;
  }
  sqlite3_reset(q->before);
  if (r != SQLITE_ROW && r != SQLITE_DONE) return sq_fail(s, q->db, QP_IO, "cannot read");
  return QP_OK;
}

static qp_status sq_query_text(qp_store *s, uint64_t fingerprint, qp_buf *query, qp_buf *sample,
                               bool *has_sample, bool *found) {
  sq_store *q = s->impl;
  *found = *has_sample = false;
  qp_status rc =
      sq_prepare(s, q, &q->text, "SELECT query, sample FROM qp_query WHERE fingerprint = ?1");
  if (rc != QP_OK) return rc;
  sqlite3_bind_int64(q->text, 1, (int64_t)fingerprint);
  int r = sqlite3_step(q->text);
  if (r == SQLITE_ROW) {
    *found = true;
    const char *t = (const char *)sqlite3_column_text(q->text, 0);
    if (!qp__buf_append(query, t ? t : "", (size_t)sqlite3_column_bytes(q->text, 0)))
      rc = qp__err_set(&s->err, QP_NOMEM, "out of memory");
    if (rc == QP_OK && sqlite3_column_type(q->text, 1) != SQLITE_NULL) {
      *has_sample = true;
      if (!qp__buf_append(sample, sqlite3_column_text(q->text, 1),
                          (size_t)sqlite3_column_bytes(q->text, 1)))
        rc = qp__err_set(&s->err, QP_NOMEM, "out of memory");
    }
  } else if (r != SQLITE_DONE) {
    rc = sq_fail(s, q->db, QP_IO, "cannot read queries");
  }
  sqlite3_reset(q->text);
  return rc;
}

/* How many rows a walk of qp_query steps over to reach the next wanted
 * fingerprint before it seeks instead: a window of most of the store's
 * queries reads the table in one pass, a few queries of a big store seek. */
#define SQ_TEXTS_STEPS 16

/* The texts of fps[0..n) (ascending signed): qp_query is keyed by the
 * fingerprint as its rowid, so one statement walks it in that order and
 * the wanted rows are picked on the way. A point look-up per query costs
 * some thousand instructions of statement overhead each (100,000 of them
 * were a third of a report's time); a step to the next row costs little.
 * Far gaps are crossed by seeking (the statement run again from fps[i]). */
static qp_status sq_query_texts(qp_store *s, const uint64_t *fps, size_t n, qp_text_fn fn,
                                void *ud) {
  sq_store *q = s->impl;
  qp_status rc = sq_prepare(s, q, &q->texts,
                            "SELECT fingerprint, query, sample FROM qp_query "
                            "WHERE fingerprint >= ?1 ORDER BY fingerprint");
  if (rc != QP_OK) return rc;
  sqlite3_stmt *st = q->texts;
  bool on_row = false; /* st is on a row, whose fingerprint is cur */
  int64_t cur = 0;
  int r = SQLITE_DONE;
  for (size_t i = 0; rc == QP_OK && i < n; i++) {
    int64_t want = (int64_t)fps[i];
    for (int k = 0; on_row && cur < want && k < SQ_TEXTS_STEPS; k++) {
      r = sqlite3_step(st);
      on_row = r == SQLITE_ROW;
      if (on_row) cur = sqlite3_column_int64(st, 0);
    }
    if (!on_row && r != SQLITE_DONE) break;
    if (!on_row || cur < want) {
      sqlite3_reset(st);
      sqlite3_bind_int64(st, 1, want);
      r = sqlite3_step(st);
      on_row = r == SQLITE_ROW;
      if (!on_row) break; /* no text at or after want: none of the rest has one */
      cur = sqlite3_column_int64(st, 0);
    }
    if (cur != want) continue;
    const char *t = (const char *)sqlite3_column_text(st, 1);
    const char *sample = (const char *)sqlite3_column_text(st, 2);
    if (t == NULL && sqlite3_errcode(q->db) == SQLITE_NOMEM) {
      r = SQLITE_NOMEM;
      break;
    }
    rc = fn(ud, fps[i], t != NULL ? t : "", sample);
  }
  if (rc == QP_OK && r != SQLITE_ROW && r != SQLITE_DONE)
    rc = sq_fail(s, q->db, QP_IO, "cannot read queries");
  sqlite3_reset(st);
  return rc;
}

static qp_status sq_dropped(qp_store *s, int64_t lo, int64_t hi, uint64_t *n) {
  sq_store *q = s->impl;
  int64_t ver = 0;
  qp_status rc = pragma_int(s, q->db, "PRAGMA user_version", &ver);
  if (rc != QP_OK || ver < 3) return rc; /* an older store read as it is: no such table */
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(q->db,
                         "SELECT coalesce(sum(dropped), 0) FROM qp_dropped "
                         "WHERE bucket >= ?1 AND bucket < ?2",
                         -1, &st, NULL) != SQLITE_OK)
    return sq_fail(s, q->db, QP_IO, "cannot read the dropped count");
  sqlite3_bind_int64(st, 1, lo);
  sqlite3_bind_int64(st, 2, hi);
  int r = sqlite3_step(st);
  if (r == SQLITE_ROW) *n = (uint64_t)sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return r == SQLITE_ROW ? QP_OK : sq_fail(s, q->db, QP_IO, "cannot read the dropped count");
}

/* ---- saved advice ------------------------------------------------------------ */

static qp_status sq_advice_put(qp_store *s, const char *database, int64_t at_ns,
                               const char *document) {
  sq_store *q = s->impl;
  qp_status rc = sq_exec(s, q->db, "BEGIN IMMEDIATE", "cannot begin saving the advice");
  if (rc != QP_OK) return rc;
  static const char *const sql[2] = {
      "DELETE FROM qp_advice WHERE database = ?1",
      "INSERT INTO qp_advice (database, at_ns, document) VALUES (?1, ?2, ?3)"};
  for (int i = 0; rc == QP_OK && i < 2; i++) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(q->db, sql[i], -1, &st, NULL) != SQLITE_OK) {
      rc = sq_fail(s, q->db, QP_IO, "cannot save the advice");
      break;
    }
    sqlite3_bind_text(st, 1, database, -1, SQLITE_STATIC);
    if (i == 1) {
      sqlite3_bind_int64(st, 2, at_ns);
      sqlite3_bind_text(st, 3, document, -1, SQLITE_STATIC);
    }
    if (sqlite3_step(st) != SQLITE_DONE) rc = sq_fail(s, q->db, QP_IO, "cannot save the advice");
    sqlite3_finalize(st);
  }
  if (rc == QP_OK) rc = sq_exec(s, q->db, "COMMIT", "cannot commit the advice");
  if (rc != QP_OK) sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
  return rc;
}

static qp_status sq_advice_each(qp_store *s, qp_advice_fn fn, void *ud) {
  sq_store *q = s->impl;
  int64_t ver = 0;
  qp_status rc = pragma_int(s, q->db, "PRAGMA user_version", &ver);
  if (rc != QP_OK || ver < 8) return rc; /* an older store read as it is: none */
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(q->db,
                         "SELECT database, at_ns, document FROM qp_advice "
                         "ORDER BY at_ns DESC, id DESC",
                         -1, &st, NULL) != SQLITE_OK)
    return sq_fail(s, q->db, QP_IO, "cannot read the saved advice");
  int r;
  while ((r = sqlite3_step(st)) == SQLITE_ROW) {
    const char *db = (const char *)sqlite3_column_text(st, 0);
    const char *doc = (const char *)sqlite3_column_text(st, 2);
    if (fn(ud, db ? db : "", sqlite3_column_int64(st, 1), doc ? doc : "") != 0) {
      r = SQLITE_DONE;
      break;
    }
  }
  sqlite3_finalize(st);
  return r == SQLITE_DONE ? QP_OK : sq_fail(s, q->db, QP_IO, "cannot read the saved advice");
}

/* ---- retention ------------------------------------------------------------ */

/* One number from `sql` with ?1 = level and ?2 = cutoff (when it has them),
 * added to *n. */
static qp_status sq_count(qp_store *s, sq_store *q, const char *sql, int level,
                          int64_t cutoff_s, uint64_t *n) {
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(q->db, sql, -1, &st, NULL) != SQLITE_OK)
    return sq_fail(s, q->db, QP_IO, "cannot prepare the prune");
  if (sqlite3_bind_parameter_count(st) >= 1) sqlite3_bind_int(st, 1, level);
  if (sqlite3_bind_parameter_count(st) >= 2) sqlite3_bind_int64(st, 2, cutoff_s);
  int r = sqlite3_step(st);
  if (r == SQLITE_ROW) *n += (uint64_t)sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return r == SQLITE_ROW ? QP_OK : sq_fail(s, q->db, QP_IO, "cannot count the rows to prune");
}

/* Runs `sql` (?1 level, ?2 cutoff) and adds the rows it changed to *n. */
static qp_status sq_delete(qp_store *s, sq_store *q, const char *sql, int level, int64_t cutoff_s,
                           uint64_t *n) {
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(q->db, sql, -1, &st, NULL) != SQLITE_OK)
    return sq_fail(s, q->db, QP_IO, "cannot prepare the prune");
  if (sqlite3_bind_parameter_count(st) >= 1) sqlite3_bind_int(st, 1, level);
  if (sqlite3_bind_parameter_count(st) >= 2) sqlite3_bind_int64(st, 2, cutoff_s);
  int r = sqlite3_step(st);
  sqlite3_finalize(st);
  if (r != SQLITE_DONE) return sq_fail(s, q->db, QP_IO, "cannot delete");
  *n += (uint64_t)sqlite3_changes64(q->db);
  return QP_OK;
}

/* Texts no statistics row refers to; with a level and cutoff, those none
 * would refer to once the prune deleted its rows (%s: the levels it
 * deletes, qp__prune_levels_sql). NOT IN: SQLite reads the subquery once
 * into a temporary index (NOT EXISTS would scan qp_stats, keyed by level
 * first, once per text). */
static const char SQL_ORPHANS_AFTER[] =
    "SELECT count(*) FROM qp_query WHERE fingerprint NOT IN (SELECT fingerprint FROM qp_stats "
    "WHERE NOT (level IN (%s) AND bucket < ?2))";

static qp_status sq_prune(qp_store *s, int max_level, int64_t cutoff_s, unsigned flags,
                          qp_prune_result *out) {
  sq_store *q = s->impl;
  bool dry = (flags & QP_PRUNE_DRY_RUN) != 0;
  if (!dry && sqlite3_db_readonly(q->db, "main") == 1)
    return qp__err_set(&s->err, QP_IO, "%s: the store file is read-only; cannot prune it",
                       s->display);
  /* A writer's lock at once (flushers wait for it, as for each other); a
   * dry run reads one snapshot. */
  qp_status rc = sq_exec(s, q->db, dry ? "BEGIN" : "BEGIN IMMEDIATE", "cannot begin the prune");
  if (rc != QP_OK) return rc;
  for (int level = 0; rc == QP_OK && level < QP_LEVELS; level++) {
    if (!qp__prune_deletes(max_level, level)) continue;
    uint64_t *n = &out->rows[qp__prune_slot(level)];
    if (dry)
      rc = sq_count(s, q, "SELECT count(*) FROM qp_stats WHERE level = ?1 AND bucket < ?2", level,
                    cutoff_s, n);
    else
      rc = sq_delete(s, q, "DELETE FROM qp_stats WHERE level = ?1 AND bucket < ?2", level,
                     cutoff_s, n);
  }
  if (rc == QP_OK && dry) {
    char sql[sizeof SQL_ORPHANS_AFTER + 32];
    snprintf(sql, sizeof sql, SQL_ORPHANS_AFTER, qp__prune_levels_sql(max_level));
    rc = sq_count(s, q, sql, 0, cutoff_s, &out->texts);
  }
  if (rc == QP_OK && !dry)
    rc = sq_delete(s, q,
                   "DELETE FROM qp_query WHERE fingerprint NOT IN "
                   "(SELECT fingerprint FROM qp_stats)",
                   0, 0, &out->texts);
  if (rc == QP_OK) rc = sq_exec(s, q->db, "COMMIT", "cannot commit the prune");
  if (rc != QP_OK) {
    sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
    memset(out, 0, sizeof *out);
    return rc;
  }
  int64_t autovac = 0, pages = 0, page_size = 0, free_pages = 0;
  rc = pragma_int(s, q->db, "PRAGMA auto_vacuum", &autovac);
  /* Outside the transaction: VACUUM cannot run inside one. */
  if (rc == QP_OK && !dry && (flags & QP_PRUNE_VACUUM))
    rc = sq_exec(s, q->db, "VACUUM", "pruned, but cannot VACUUM");
  else if (rc == QP_OK && !dry && autovac == 2)
    rc = sq_exec(s, q->db, "PRAGMA incremental_vacuum", "pruned, but cannot vacuum");
  if (rc == QP_OK) rc = pragma_int(s, q->db, "PRAGMA page_count", &pages);
  if (rc == QP_OK) rc = pragma_int(s, q->db, "PRAGMA page_size", &page_size);
  if (rc == QP_OK) rc = pragma_int(s, q->db, "PRAGMA freelist_count", &free_pages);
  if (rc != QP_OK) return rc;
  out->size_bytes = pages * page_size;
  out->free_bytes = free_pages * page_size;
  return QP_OK;
}

const qp_store_ops qp__sqlite_store_ops = {
    .prune = sq_prune,
    .dropped = sq_dropped,
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .marks_find = sq_marks_find,
    .write = sq_write,
    .bucket_range = sq_bucket_range,
    .scan = sq_scan,
    .bucket_before = sq_bucket_before,
    .read_begin = sq_read_begin,
    .read_end = sq_read_end,
    .query_text = sq_query_text,
    .query_texts = sq_query_texts,
    .advice_put = sq_advice_put,
    .advice_each = sq_advice_each,
};

/* ---- for tests and benchmarks ------------------------------------------ */

qp_status qp__sqlite_store_create_version(const char *path, int version, char *errbuf,
                                          size_t errlen) {
  if (version < 1 || version > QP_STORE_SCHEMA_VERSION)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "no schema version %d", version);
  qp_store s;
  memset(&s, 0, sizeof s);
  qp__hooks_init(&s.hooks, NULL);
  s.location = (char *)path;
  s.display = (char *)path;
  bool exists;
  qp_status rc = create_new(&s, path, version, &exists);
  if (rc == QP_OK && exists) rc = qp__err_set(&s.err, QP_IO, "%s: exists", path);
  if (rc != QP_OK) qp__errbuf_set(errbuf, errlen, rc, "%s", s.err.msg);
  return rc;
}

static bool is_sqlite_store(const qp_store *s) { return s->ops == &qp__sqlite_store_ops; }

qp_status qp__sqlite_bulk_begin(qp_store *s) {
  if (!is_sqlite_store(s) || s->mode != QP_STORE_WRITE) return QP_INVALID;
  sq_store *q = s->impl;
  return sq_exec(s, q->db, "BEGIN IMMEDIATE", "cannot begin");
}

qp_status qp__sqlite_bulk_row(qp_store *s, int level, const qp_entry *row) {
  sq_store *q = s->impl;
  qp_status rc = sq_prepare(s, q, &q->ins_stats, SQL_INS_STATS);
  if (rc == QP_OK) rc = bind_stats(s, q, q->ins_stats, level, row);
  if (rc == QP_OK) rc = step_done(s, q, q->ins_stats, "cannot insert");
  return rc;
}

qp_status qp__sqlite_bulk_query(qp_store *s, uint64_t fingerprint, qp_backend backend,
                                const char *query) {
  sq_store *q = s->impl;
  qp_status rc = sq_prepare(s, q, &q->ins_query, SQL_INS_QUERY);
  if (rc != QP_OK) return rc;
  sqlite3_bind_int64(q->ins_query, 1, (int64_t)fingerprint);
  sqlite3_bind_text(q->ins_query, 2, qp_backend_name(backend), -1, SQLITE_STATIC);
  sqlite3_bind_text(q->ins_query, 3, query, -1, SQLITE_STATIC);
  return step_done(s, q, q->ins_query, "cannot insert");
}

qp_status qp__sqlite_bulk_commit(qp_store *s) {
  sq_store *q = s->impl;
  return sq_exec(s, q->db, "COMMIT", "cannot commit");
}
