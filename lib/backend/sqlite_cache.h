/*
 * The result cache's cross-process check on one SQLite connection
 * (lib/backend/sqlite_cache.c; docs/cache.md "Other processes"), kept in
 * the connection (lib/backend/sqlite.c) and reset on every open: one entry
 * per database file the connection has open (main, then the attached
 * ones in schema order).
 */
#ifndef QPROF_SQLITE_CACHE_H
#define QPROF_SQLITE_CACHE_H

#include <stdbool.h>
#include <stdint.h>

struct sqlite3_stmt;

/* SQLite's WalIndexHdr (https://www.sqlite.org/walformat.html): 48 bytes,
 * twice at the start of the -shm file. */
#define QP__SQ_WALHDR 48

/* Files checked per connection: main and up to 11 attached databases
 * (SQLite's default SQLITE_MAX_ATTACHED is 10); a connection with more is
 * not cached. */
#define QP__SQ_FILES 12

typedef struct qp__sq_shm {
  /* 0 not looked at yet; 1 hdr is SQLite's own mapping of the wal-index;
   * -1 never on this connection (not WAL, another VFS, locking_mode or
   * journal_mode set by a statement prepared on it) */
  int state;
  const volatile unsigned char *hdr;
  bool have_last;                     /* last holds a clean header */
  unsigned char last[QP__SQ_WALHDR];  /* read before the last data_version */
} qp__sq_shm;

/* One database file of the connection. */
typedef struct qp__sq_file {
  char schema[64];          /* "main" or the ATTACH alias, as SQLite lists it */
  uintmax_t dev, ino;       /* the file's identity */
  struct sqlite3_stmt *dv;  /* PRAGMA "schema".data_version, prepared once */
  int64_t data_version;     /* last value read; -1 none yet */
  qp__sq_shm shm;
} qp__sq_file;

/* What the cache knows of the connection's databases. */
typedef struct qp__sq_watch {
  /* files[0] is main; then the attached files (not the in-memory or
   * temporary ones, which are never cached), in schema order */
  int nfiles;
  /* a journal_mode or locking_mode PRAGMA was prepared: the header check
   * is off for the connection's life */
  bool no_header;
  /* an ATTACH or DETACH was prepared on the connection since the identity
   * was read (the authorizer): a cheap check, beside the pool's, that none
   * went by unseen */
  bool attach_seen;
  uint64_t fast, full; /* checks answered by the headers alone / by data_version */
  qp__sq_file files[QP__SQ_FILES];
} qp__sq_watch;

/* The connection's authorizer (installed at open): a PRAGMA that sets
 * journal_mode or locking_mode, prepared on this connection, turns the
 * header check off for the connection's life, before it can run. */
int qp__sq_authorize(void *ud, int action, const char *a1, const char *a2, const char *a3,
                     const char *a4);

/* Forgets w's files (finalizing their statements) and starts over with
 * main alone; every file's next check then reads data_version first. */
void qp__sq_watch_reset(qp__sq_watch *w);

#endif
