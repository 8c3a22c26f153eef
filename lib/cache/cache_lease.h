/*
 * What the pool's statement path calls on a lease whose pool has a cache
 * (lib/pool/conn.c). Private to the library.
 *
 * qp__cache_before runs before a statement is sent: it answers a cacheable
 * SELECT from the cache (a hit: the statement is not sent), registers a
 * fill for a miss, and moves the version counters of what a write is about
 * to commit. qp__cache_after runs when the statement returned: it stores
 * the fill (unless a write raced it) and applies or discards the lease's
 * pending invalidations when a transaction ended.
 */
#ifndef QPROF_CACHE_LEASE_H
#define QPROF_CACHE_LEASE_H

#include <stdbool.h>

#include "cache_int.h"
#include "qprof/pool.h"

typedef enum qc_mode {
  QC_NONE = 0,  /* nothing to do after */
  QC_FILL = 1,  /* store the result */
  QC_WRITE = 2, /* a write: bump when it returns */
  QC_TCL = 3,   /* transaction control */
  QC_OTHER = 4, /* session changes, refused reads: bookkeeping only */
} qc_mode;

typedef struct qc_ticket {
  qc_mode mode;
  bool autocommit; /* the statement ran outside a transaction block */
  bool blind;      /* no lease state (out of memory): flush on writes */
  bool session;    /* changes session state: read the identity again */
  bool attach;     /* ATTACH or DETACH (SQLite): the session stays shareable */
  bool write_all, write_wide, may_write_all;
  qp_tcl tcl;
  size_t nwrite;
  qc_table *write[QP_STMT_MAX_TABLES];
  qc_key key;
  qc_deps deps;
  char *heap; /* key bytes when they did not fit in buf */
  /* a hit: the profile's normalized text and fingerprint (owned by the
   * lease's memo, valid until its next statement), or NULL */
  const char *norm;
  size_t norm_len;
  uint64_t fp;
  char buf[512];
} qc_ticket;

/* Returns true for a hit: *out holds the result (caller-owned) and the
 * statement must not be sent. Otherwise *t says what qp__cache_after does. */
bool qp__cache_before(qp_conn *c, const char *sql, const qp_param *params, size_t nparams,
                      qp_result **out, qc_ticket *t);
void qp__cache_after(qp_conn *c, qc_ticket *t, qp_status st, const qp_result *res);

/* A script (several statements, no result): writes flush the server
 * before and after; session changes read the identity again. */
void qp__cache_script(qp_conn *c, const char *sql, bool after);

/* The lease's connection was replaced, reset or released: forget its
 * session and transaction (pending invalidations of a transaction the pool
 * rolled back are discarded). */
void qp__cache_conn_forget(qp_conn *c);
/* Frees the lease state (pool close). */
void qp__cache_conn_free(qp_conn *c);

#endif
