/*
 * The profile store behind store.h: a table of functions per kind of store
 * (SQLite file, later PostgreSQL), so that the profile and the reports never
 * ask which one they talk to.
 *
 * Stored rows are kept at six levels of time resolution, all written in the
 * flush's one transaction: the bucket as recorded, 10 minutes, the hour, 6
 * hours, the UTC day and all time. A window is answered from the coarsest
 * levels that tile it, finer ones only at its edges (store.c), so that a
 * report over 12 hours of one-minute buckets reads 2 rows per key, and an
 * edge at a minute at most 9 buckets and 5 ten-minute rows.
 *
 * The level numbers are stored, so they are never renumbered: the 10-minute
 * and 6-hour levels (schema version 10) came after the others and have the
 * numbers 4 and 5; qp__level_rank gives the order by width.
 */
#ifndef QPROF_STORE_INT_H
#define QPROF_STORE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "internal.h"
#include "qprof/store.h"
#include "stats/stats_int.h"

enum {
  QP_LEVEL_BUCKET = 0,
  QP_LEVEL_HOUR = 1,
  QP_LEVEL_DAY = 2,
  QP_LEVEL_ALL = 3,
  QP_LEVEL_10MIN = 4, /* schema version 10 */
  QP_LEVEL_6HOUR = 5, /* schema version 10: 00:00, 06:00, 12:00, 18:00 UTC */
  QP_LEVELS = 6
};

/* Start (seconds) of the row of `level` that a bucket starting at `bucket` rolls up into. */
int64_t qp__level_bucket(int level, int64_t bucket);
/* The width (s) of the rows of `level`; 0 for QP_LEVEL_BUCKET (as recorded)
 * and QP_LEVEL_ALL (all time). */
int64_t qp__level_width(int level);
/* The place of `level` in the order by width: bucket 0, 10 minutes 1, hour
 * 2, 6 hours 3, day 4, all time 5. */
int qp__level_rank(int level);

/* Whether a prune at `prune_level` (qp_prune_level) deletes the rows of
 * `level`: those of its own level and of every finer one, so that pruning
 * the recorded buckets keeps the 10-minute rows and pruning hours keeps the
 * 6-hour rows. */
bool qp__prune_deletes(int prune_level, int level);
/* The element of qp_prune_result.rows a deleted row of `level` is counted
 * in: the coarsest prune level it goes with (10 minutes with the hours, 6
 * hours with the days). */
int qp__prune_slot(int level);
/* The levels a prune at `prune_level` deletes, as SQL list items ("0, 1,
 * 4"); static. */
const char *qp__prune_levels_sql(int prune_level);

/* The meta key (qp_meta) of the first second from which the 10-minute and
 * 6-hour levels hold every statement (a multiple of 6 hours): a store
 * migrated to version 10 has none of them for its past, and the reader
 * answers a window before that from the other levels. Absent (a store older
 * than version 10): never. */
#define QP_META_LEVELS_FROM "levels_10m_6h_from"

/* Receives one stored row (row->bucket is its start); `row->next`,
 * `row->query` and `row->sample` are unused. Return QP_OK to go on. */
typedef qp_status (*qp_row_fn)(void *ud, const qp_entry *row);

/* Statements recorded nowhere (the shim's full segments: "dropped, segment
 * full") that a write adds to the store with its entries, in the same
 * transaction: `n` to the row of the bucket starting at `bucket` (s). */
typedef struct qp_drop {
  int64_t bucket;
  uint64_t n;
} qp_drop;

/* Receives one stored text (see qp_store_ops.query_texts): valid during
 * the call. Return QP_OK to go on. */
typedef qp_status (*qp_text_fn)(void *ud, uint64_t fingerprint, const char *query,
                                const char *sample);

/* How far one log file was read by qp_ingest_file (lib/ingest/file.c). A
 * store write with s->mark set writes it in the same transaction as the
 * statistics, so that a file's position and what was read before it are
 * stored together or not at all. */
typedef struct qp_file_mark {
  int64_t id;           /* row id; 0: not stored yet (the write that inserts it sets it) */
  const char *path;     /* borrowed; NULL in rows found */
  int64_t device, inode, size;
  int64_t head_len;     /* bytes the hash covers: min(4096, text length) */
  uint64_t head_hash;   /* XXH3 of the first head_len bytes of the (uncompressed) text */
  int64_t read_to;      /* bytes of text read (whole messages) */
  int64_t lines;        /* lines in those bytes */
  bool gzip;
} qp_file_mark;

/* How many candidate rows qp__store_marks_find returns at most. */
#define QP_MARKS_MAX 8

/* What became of a transaction (qp_store_ops.xact_status). */
typedef enum qp_xact {
  QP_XACT_COMMITTED,
  QP_XACT_ABORTED,
  QP_XACT_RUNNING, /* still in progress on the server: ask again */
  QP_XACT_UNKNOWN  /* too old for the server to remember (txid_status NULL) */
} qp_xact;

/* Called by a write once its transaction has done everything but COMMIT,
 * with that transaction's id and a name of the store (for PostgreSQL the
 * cluster's system identifier and the database's oid) that a later
 * qp_store_ops.xact_status checks. What it returns other than QP_OK (the
 * message in msg) rolls the transaction back and fails the write. */
typedef qp_status (*qp_precommit_fn)(void *ud, int64_t xid, const char *store_id, char *msg,
                                     size_t msglen);

typedef struct qp_store_ops {
  const char *name;
  /* Opens s->location; sets s->impl. On error sets s->err and cleans up. */
  qp_status (*open)(qp_store *s, qp_store_mode mode);
  void (*close)(qp_store *s);
  /* Writes a list of entries (linked by ->next; ignored ones skipped) at
   * every level, and `drop` (NULL or n 0: none), in one transaction: all or
   * nothing. */
  qp_status (*write)(qp_store *s, const qp_entry *list, const qp_drop *drop);
  /* The sum of the dropped statements of the buckets in [lo, hi) (s); 0 in
   * a store older than schema version 3. */
  qp_status (*dropped)(qp_store *s, int64_t lo, int64_t hi, uint64_t *n);
  /* First and last bucket start (seconds) of `level`; *empty when none. */
  qp_status (*bucket_range)(qp_store *s, int level, int64_t *first, int64_t *last, bool *empty);
  /* Calls fn for every row of `level` with bucket in [lo, hi). */
  qp_status (*scan)(qp_store *s, int level, int64_t lo, int64_t hi, qp_row_fn fn, void *ud);
  /* Brackets the reads of one window so that they see one snapshot and the
   * file is locked once, not once per statement. May be NULL. */
  qp_status (*read_begin)(qp_store *s);
  void (*read_end)(qp_store *s);
  /* The start of the last level-0 bucket that starts before t_s; *found
   * false when none. May be NULL (then no rounding is detected). */
  qp_status (*bucket_before)(qp_store *s, int64_t t_s, int64_t *bucket, bool *found);
  /* The latest last_seen_ns of the rows of level-0 bucket `bucket` that
   * count (calls or cache hits), deltas included; *found false when it has
   * none. What a scan of that bucket would find, without handing out its
   * rows: a store across a network answers it in one statement. May be NULL
   * (then the bucket is scanned). */
  qp_status (*bucket_last_seen)(qp_store *s, int64_t bucket, int64_t *last_ns, bool *found);
  /* Normalized text and sample of a fingerprint into the buffers (sample
   * left empty with *has_sample false when none); *found false when unknown. */
  qp_status (*query_text)(qp_store *s, uint64_t fingerprint, qp_buf *query, qp_buf *sample,
                          bool *has_sample, bool *found);
  /* The texts of many fingerprints in one statement, for a store across a
   * network (one round trip per window, not per query). May be NULL (then
   * query_text is asked per fingerprint). fps[0..n) are distinct and in
   * ascending order of their signed value ((int64_t)fp); fn is called for
   * each that the store knows, in that order, with its text and sample
   * (NULL when none). */
  qp_status (*query_texts)(qp_store *s, const uint64_t *fps, size_t n, qp_text_fn fn, void *ud);
  /* The file marks with this device and inode, or with this head hash,
   * newest first, at most `cap`. */
  qp_status (*marks_find)(qp_store *s, int64_t device, int64_t inode, uint64_t head_hash,
                          qp_file_mark *out, size_t cap, size_t *n);
  /* Deletes the rows of max_level (a qp_prune_level: QP_LEVEL_BUCKET, HOUR
   * or DAY) and of every finer level (qp__prune_deletes) whose bucket
   * starts before cutoff_s, then the texts left with no row, in one
   * transaction; with QP_PRUNE_DRY_RUN counts them instead. Sets out->rows
   * (each level's count in its qp__prune_slot), texts, size_bytes and
   * free_bytes (see qp_store_prune). */
  qp_status (*prune)(qp_store *s, int max_level, int64_t cutoff_s, unsigned flags,
                     qp_prune_result *out);
  /* Settles a write left in doubt (s->in_doubt: its COMMIT went out and the
   * connection broke before the answer came): *committed tells whether it
   * is in the store, and s->in_doubt is cleared. An error (QP_UNAVAILABLE:
   * the server cannot be asked yet) leaves it in doubt. NULL for stores
   * whose writes are never in doubt. */
  qp_status (*resolve)(qp_store *s, bool *committed);
  /* What became of transaction `xid` of the store named `store_id` (as a
   * precommit hook was told; see qp_precommit_fn), for a flush whose
   * outcome a process that has since died never learnt. QP_OK with *out
   * set; QP_UNAVAILABLE when the server cannot be reached; QP_STATE when
   * this is not that store. NULL for stores whose writes are never in
   * doubt. */
  qp_status (*xact_status)(qp_store *s, int64_t xid, const char *store_id, qp_xact *out);
  /* Folds the append-only deltas present when it starts (at most max_rows
   * delta rows; 0: all) into the compacted rows, in transactions of a
   * bounded number each (see qp_store_compact). Adds to out's counts. NULL
   * for stores that have no deltas. */
  qp_status (*compact)(qp_store *s, uint64_t max_rows, qp_compact_result *out);
  /* Replaces the saved advice of `database` with `document`, in one
   * transaction (see qp_store_save_advice). NULL: not supported. */
  qp_status (*advice_put)(qp_store *s, const char *database, int64_t at_ns, const char *document);
  /* Calls fn for every saved advice, newest first (none in a store older
   * than schema version 8). */
  qp_status (*advice_each)(qp_store *s, qp_advice_fn fn, void *ud);
} qp_store_ops;

struct qp_store {
  const qp_store_ops *ops;
  qp_hooks hooks;
  qp_err err;
  qp_store_mode mode;
  char *location;   /* as given */
  char *display;    /* password removed */
  void *impl;
  qp_file_mark *mark; /* written by the next write (see qp_file_mark); NULL none */
  bool mark_done;     /* the write wrote it */
  bool in_doubt;      /* the last write failed without knowing whether it committed:
                       * writes are refused (QP_STATE) until qp__store_resolve */
  bool write_in_doubt; /* the last write is the one in doubt */
  uint64_t serial;    /* unique per handle in the process: what a profile that holds
                       * entries in doubt remembers of the store they went to */
  qp_precommit_fn precommit; /* NULL: none; see qp_precommit_fn */
  void *precommit_ud;
  int64_t levels_from; /* QP_META_LEVELS_FROM as read when opened; INT64_MAX: none (a
                        * store older than version 10: the 10-minute and 6-hour levels
                        * are never read) */
};

/* Whether the store's writes can be in doubt, and so be settled later by
 * their transaction id (qp_store_ops.xact_status): then a write calls
 * s->precommit before its COMMIT. */
bool qp__store_has_xact(const qp_store *s);
/* See qp_store_ops.xact_status; QP_INVALID for a store without it. */
qp_status qp__store_xact_status(qp_store *s, int64_t xid, const char *store_id, qp_xact *out);

/* Settles a write in doubt (see qp_store_ops.resolve); *committed false and
 * QP_OK when nothing is in doubt. */
qp_status qp__store_resolve(qp_store *s, bool *committed);

/* Flushes `p` into `s` with `mark` in the same transaction (a transaction
 * with only the mark when the profile is empty); mark->id is set when the
 * row was inserted. Errors as qp_profile_flush. */
qp_status qp__store_flush_marked(qp_store *s, qp_profile *p, qp_file_mark *mark);
/* See qp_store_ops.marks_find. */
qp_status qp__store_marks_find(qp_store *s, int64_t device, int64_t inode, uint64_t head_hash,
                               qp_file_mark *out, size_t cap, size_t *n);

extern const qp_store_ops qp__sqlite_store_ops;

/* ---- reading, for the report model (lib/report/) -------------------------- */

/* Receives one merged query of a window: its key and merged statistics
 * (allocated with the store's hooks), its text and sample (all valid during
 * the call; sample NULL when none). A callee that allocates with the same
 * hooks as the store may take e->st, leaving it as qp__stats_init made it. Return QP_OK to go on; any other status stops the walk and is
 * returned. */
typedef qp_status (*qp_agg_fn)(void *ud, qp_entry *e, const char *query, const char *sample);

/* The bucket starts [lo_s, hi_s) a window covers once clamped to the data. */
typedef struct qp_window {
  int64_t lo_s, hi_s;
  bool empty;
  size_t queries; /* how many calls of the qp_agg_fn follow; set before the first */
  /* Appended: how many keys the window has before the row filter of a
   * qp_agg_key (== queries without one); set before the first call too. */
  size_t keys_all;
} qp_window;

/* The dimensions of a key besides fingerprint and backend, as bits (the
 * same as QP_REPORT_KEY(QP_REPORT_BY_...) in qprof/report.h). */
#define QP_AGG_DATABASE 1u
#define QP_AGG_USER 2u
#define QP_AGG_APPLICATION 4u
#define QP_AGG_HOST 8u
#define QP_AGG_ALL 15u

/* A row filter of qp__store_aggregate_keyed: 1 keeps the stored row, 0
 * leaves it out, -1 is out of memory (the walk stops with QP_NOMEM). */
typedef int (*qp_agg_keep_fn)(void *ud, const qp_entry *row);

/* How a window is merged: rows whose kept dimensions (`dims`, QP_AGG_*)
 * are equal merge into one entry; a dimension not kept is NULL in the
 * entries handed out. Rows `keep` refuses are not merged (their keys are
 * counted in qp_window.keys_all only). */
typedef struct qp_agg_key {
  unsigned dims;
  qp_agg_keep_fn keep; /* NULL: every row */
  void *keep_ud;
} qp_agg_key;

/* Merges the rows of the buckets that start in [since_ns, until_ns) per
 * query (the one aggregation behind qp_store_summarize and the report
 * model) and calls fn for each, in no particular order. */
qp_status qp__store_aggregate(qp_store *s, int64_t since_ns, int64_t until_ns, qp_agg_fn fn,
                              void *ud, qp_window *w);
/* The same, keyed and filtered as `key` says (NULL: every dimension, no
 * filter, as qp__store_aggregate). */
qp_status qp__store_aggregate_keyed(qp_store *s, int64_t since_ns, int64_t until_ns,
                                    const qp_agg_key *key, qp_agg_fn fn, void *ud, qp_window *w);
/* A summary of merged statistics; its error_codes text goes into `codes`
 * (reset first) and the strings are borrowed from e, query and sample.
 * False when out of memory. */
bool qp__summary_fill(qp_query_summary *q, const qp_entry *e, const char *query,
                      const char *sample, qp_buf *codes);
/* The rows of one level in [lo, hi) (see qp_store_ops.scan). */
qp_status qp__store_scan(qp_store *s, int level, int64_t lo, int64_t hi, qp_row_fn fn, void *ud);
/* Whether a window edge at t_ns cuts a stored bucket: the last level-0
 * bucket that starts before t_ns (*bucket_s) holds executions that ended at
 * or after t_ns. */
qp_status qp__store_edge(qp_store *s, int64_t t_ns, int64_t *bucket_s, bool *straddles);

extern const qp_store_ops qp__pg_store_ops;

/* Writes a list of entries and `drop` (see qp_store_ops.write). Used by
 * qp_profile_flush. */
qp_status qp__store_write(qp_store *s, const qp_entry *list, const qp_drop *drop);
/* The statements dropped (segment full) in the buckets that start in
 * [since_ns, until_ns) (INT64_MIN / INT64_MAX for no bound). */
qp_status qp__store_dropped(qp_store *s, int64_t since_ns, int64_t until_ns, uint64_t *n);

/* The SQL that creates schema version 1, and the migrations to each later
 * version: step i takes a store from version i+1 to i+2. Generated at build
 * time from sql/store_schema.sql and sql/migrations/ by cmake/embed_sql.cmake. */
extern const char qp__store_schema_v1[];
extern const char *const qp__store_migrations[];
extern const char *const qp__store_migration_files[];
extern const int qp__store_nmigrations;
#define QP_STORE_SCHEMA_VERSION 10
/* The PostgreSQL store's schema (sql/store_schema_pg.sql), at
 * QP_STORE_SCHEMA_VERSION, and its migrations (sql/migrations_pg/): the
 * i-th takes a store to version qp__store_migrations_pg_version[i] from the
 * one before. */
extern const char qp__store_schema_pg[];
extern const char *const qp__store_migrations_pg[];
extern const int qp__store_migrations_pg_version[];
extern const int qp__store_nmigrations_pg;
/* PRAGMA application_id of a qprof store: "qprf". */
#define QP_STORE_APPLICATION_ID 0x71707266

/* Creates a store file at `path` at schema version `version` (1..latest),
 * without migrating it further: for tests of the migration path. */
qp_status qp__sqlite_store_create_version(const char *path, int version, char *errbuf,
                                          size_t errlen);

/* Bulk loading for benchmarks: inserts rows (plain INSERT, no merging) at
 * one level in the current transaction. Callers bracket with begin/commit. */
qp_status qp__sqlite_bulk_begin(qp_store *s);
qp_status qp__sqlite_bulk_row(qp_store *s, int level, const qp_entry *row);
qp_status qp__sqlite_bulk_query(qp_store *s, uint64_t fingerprint, qp_backend backend,
                                const char *query);
qp_status qp__sqlite_bulk_commit(qp_store *s);

#endif
