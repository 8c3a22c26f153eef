/*
 * The result cache's cross-process check on one SQLite connection
 * (lib/backend/sqlite_cache.c; docs/cache.md "Other processes"), kept in
 * the connection (lib/backend/sqlite.c) and reset on every open.
 */
#ifndef QPROF_SQLITE_CACHE_H
#define QPROF_SQLITE_CACHE_H

#include <stdbool.h>
#include <stdint.h>

/* SQLite's WalIndexHdr (https://www.sqlite.org/walformat.html): 48 bytes,
 * twice at the start of the -shm file. */
#define QP__SQ_WALHDR 48

typedef struct qp__sq_shm {
  /* 0 not looked at yet; 1 hdr is SQLite's own mapping of the wal-index;
   * -1 never on this connection (not WAL, another VFS, locking_mode or
   * journal_mode set by a statement prepared on it) */
  int state;
  const volatile unsigned char *hdr;
  bool have_last;                     /* last holds a clean header */
  unsigned char last[QP__SQ_WALHDR];  /* read before the last data_version */
  uint64_t fast, full; /* checks answered by the header alone / by data_version */
} qp__sq_shm;

/* The connection's authorizer (installed at open): a PRAGMA that sets
 * journal_mode or locking_mode, prepared on this connection, turns the
 * header check off for the connection's life, before it can run. */
int qp__sq_authorize(void *ud, int action, const char *a1, const char *a2, const char *a3,
                     const char *a4);

#endif
