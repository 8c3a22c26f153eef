/*
 * The result cache's private structures, shared by store.c (entries,
 * shards, eviction, results), server.c (servers, tables, functions,
 * sessions) and lease.c (what a lease's statements do to the cache).
 *
 * Invalidation is one mechanism fed by sources: every source (a write seen
 * on a lease, a SQLite update hook, a foreign commit seen through PRAGMA
 * data_version, a DDL statement) ends in qc_table_bump or qc_server_flush,
 * which move version counters; entries remember the versions they were
 * filled under and are checked on every hit. A new source (a change
 * stream, a second-level cache) only calls those two.
 */
#ifndef QPROF_CACHE_INT_H
#define QPROF_CACHE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "qprof/cache.h"
#include "qprof/result.h"
#include "qprof/sql.h"

typedef struct qc_server qc_server;
typedef struct qc_table qc_table;
typedef struct qc_session qc_session;

/* What a table name can do to the cache, resolved once per server. */
typedef enum qc_table_kind {
  QC_TABLE_UNRESOLVED = 0,
  QC_TABLE_PLAIN = 1,  /* a plain table: its writes reach only itself */
  QC_TABLE_WIDE = 2,   /* view, inheritance, triggers, rules, FKs, RLS: writes reach and
                        * reads depend on more than itself: the reach below, or (without
                        * one) reads depend on any write and writes flush the server */
  QC_TABLE_REFUSE = 3, /* temporary, unlogged, unknown: never cached */
} qc_table_kind;

/* The reach of a WIDE table name (backends with a reach question): the
 * tables a write to it moves and those a read of it depends on, itself
 * included. wall: a write flushes the server's entries instead; rall: a
 * read depends on every write instead; refuse: reads are not cached, for
 * that qp_cache_refusal (-1: they may be). */
typedef struct qc_reach {
  bool known, wall, rall;
  int8_t refuse;
  uint8_t nwr, nrd;
  qc_table *wr[QP_STMT_MAX_TABLES], *rd[QP_STMT_MAX_TABLES];
} qc_reach;

/* One table name of one server (schema dropped, lower-cased: writes to
 * s1.t and s2.t move one counter, which over-invalidates but never misses;
 * on a server with qualified names, "schema.name" lower-cased). Never
 * freed before the cache. */
struct qc_table {
  qc_table *next;
  qc_server *server;
  _Atomic uint64_t version;
  qc_table_kind kind;   /* under server->mu */
  uint64_t kind_epoch;  /* server schema epoch when kind was resolved */
  uint64_t kind_until;  /* resolution expires (foreign DDL) */
  qc_reach reach;       /* of a WIDE name, resolved with kind (under server->mu) */
  char name[QP_STMT_NAME_MAX];
};

typedef struct qc_func {
  struct qc_func *next;
  int8_t state; /* 1 immutable, 0 not immutable, 2 may write (volatile user function) */
  uint64_t epoch, until;
  char name[QP_STMT_NAME_MAX];
} qc_func;

/* One database: PostgreSQL system identifier + start + port + database,
 * or a SQLite file's device and inode. */
struct qc_server {
  qc_server *next;
  /* Moved by every flush: entries filled under an older epoch are dead. */
  _Atomic uint64_t epoch;
  /* Moved by the flushes that may change what tables and functions are
   * (DDL, statements the classifier cannot place...), not by a write that
   * reached a wide table: table and function descriptions and a lease's
   * resolved statements are kept while it stays. */
  _Atomic uint64_t schema;
  /* Moved by every write: entries that read a WIDE relation check it. */
  _Atomic uint64_t any_write;
  bool qualified;     /* table names keep their schema (SQLite: main, aliases) */
  pthread_mutex_t mu; /* tables and funcs */
  qc_table *tables;
  qc_func *funcs;
  size_t idlen;
  char id[];
};

/* A session's identity: server, role, search_path, settings. Interned
 * (full comparison of the text), so that an entry's key holds a pointer. */
struct qc_session {
  qc_session *next;
  qc_server *server;
  uint64_t id;    /* seed of the key hash */
  bool strict_iso; /* default_transaction_isolation is repeatable read or stricter */
  bool refuse;     /* nothing may be cached on it (SQLite: an in-memory main file, too many
                    * attached files, one file attached twice) */
  size_t len;
  char text[];
};

struct qp_cache {
  qp_hooks hooks;
  size_t shard_bytes, max_entry_bytes;
  uint64_t ttl_ns;
  bool lru; /* benchmarks only: plain LRU instead of SIEVE */
  void *stmt_re, *table_re; /* pcre2_code *, NULL: all */
  pthread_mutex_t mu;       /* servers and sessions */
  qc_server *servers;
  qc_session *sessions;
  size_t nsessions;
  uint64_t next_session;
  struct qc_shard *shards;
  _Atomic uint64_t refused[QP_CACHE_REFUSED_COUNT_];
  _Atomic uint64_t flushes, waits;
};

/* ---- server.c ----------------------------------------------------------- */

/* The server for an identity (created on first use, with qualified table
 * names or not); NULL on OOM. */
qc_server *qc_server_get(qp_cache *c, const char *id, size_t len, bool qualified);
/* The table `name` (schema dropped unless s is qualified, lower-cased) of
 * s; NULL when not known yet. */
qc_table *qc_table_get(qc_server *s, const char *name);
/* A write to t: its version moves (and the server's any_write). */
void qc_table_bump(qc_table *t);
/* Everything cached for s is dead, and so are its table and function
 * descriptions (DDL and anything that may have run DDL). */
void qc_server_flush(qp_cache *c, qc_server *s);
/* Everything cached for s is dead; the descriptions stay (a write reached
 * a wide table: a view, a table with triggers, rules or RLS). */
void qc_server_flush_data(qp_cache *c, qc_server *s);
/* Interns a session text; NULL on OOM or too many sessions. */
const qc_session *qc_session_get(qp_cache *c, qc_server *s, const char *text, size_t len,
                                 bool strict_iso, bool refuse);
void qc_servers_free(qp_cache *c);

static inline void qc_refuse(qp_cache *c, qp_cache_refusal r) {
  atomic_fetch_add_explicit(&c->refused[r], 1, memory_order_relaxed);
}

/* ---- store.c ------------------------------------------------------------ */

/* What a fill read: versions taken when it started. */
typedef struct qc_deps {
  qc_server *server;
  uint64_t epoch, any_write;
  bool wide;
  size_t n;
  qc_table *t[QP_STMT_MAX_TABLES];
  uint64_t v[QP_STMT_MAX_TABLES];
} qc_deps;

/* Reads the current versions of d's tables into d->v, d->epoch... */
void qc_deps_snapshot(qc_deps *d);
/* True while nothing d read has moved. */
bool qc_deps_current(const qc_deps *d);

/* A lookup key: session + SQL text + parameters, hashed once. */
typedef struct qc_key {
  const qc_session *sess;
  const char *bytes;
  size_t len;
  uint64_t lo, hi;
} qc_key;

/* Sets k->lo, k->hi: the bytes after the first `head` (the SQL text and its
 * NUL), seeded with head_hash (that text's XXH3_64) and the session. */
void qc_key_hash(qc_key *k, uint64_t head_hash, size_t head);

typedef enum qc_lookup { QC_HIT, QC_MISS, QC_FILLING } qc_lookup;

/*
 * Looks k up. QC_HIT: *out is a fresh copy (caller-owned). QC_MISS: the
 * caller fills (it is registered as the key's filler and must call
 * qc_fill_end). On a miss while another thread fills the key, waits up to
 * wait_ns for it and looks again; QC_FILLING when the wait ran out (run
 * uncached). *nomem is set when a hit could not be copied (run uncached).
 */
qc_lookup qc_lookup_key(qp_cache *c, const qc_key *k, uint64_t wait_ns, qp_result **out,
                        bool *nomem);
/* Ends a fill registered by a QC_MISS: stores res (when not NULL, the deps
 * are still current and it fits), then wakes the waiters. */
void qc_fill_end(qp_cache *c, const qc_key *k, const qc_deps *d, const qp_result *res);

void qc_shards_free(qp_cache *c);

#endif
