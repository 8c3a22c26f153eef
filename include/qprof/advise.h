/*
 * The index advisor: reads the plan of one statement (EXPLAIN, or EXPLAIN
 * ANALYZE when asked), finds what an index would fix, proves each candidate
 * on the database before it is shown (HypoPG's hypothetical indexes, or a
 * real index built inside a transaction that is rolled back), and reports
 * what is not an index (misestimates, sorts and hashes that spill).
 * docs/advise.md gives every rule, the verification margins and what the
 * advisor cannot know.
 *
 * SQLite: never on the live file. The lease's database is copied with
 * VACUUM INTO into a private temporary directory; the plan (EXPLAIN QUERY
 * PLAN), the measured runs (sqlite3_stmt_status counters) and each
 * candidate (a real index inside a SAVEPOINT, ANALYZE, rolled back) are on
 * the copy, which is removed before the call returns.
 *
 * Safety: nothing the advisor runs is recorded in a pool's profile; a
 * read-only statement is analyzed only inside BEGIN READ ONLY; a statement
 * that writes (the classifier decides: qp_sql_classify) runs only with
 * analyze_writes, inside BEGIN ... ROLLBACK; DDL, utility, session and
 * transaction statements and anything the classifier cannot place are
 * refused. Every transaction sets statement_timeout and lock_timeout
 * locally. A statement with placeholders ("?" of a normalized query, or
 * $n) is planned generically: PREPARE, plan_cache_mode =
 * force_generic_plan, EXPLAIN EXECUTE, DEALLOCATE (never analyzed). On
 * SQLite (no generic plan) placeholders get representative values: from
 * the file's sqlite_stat4 samples when it has them for the column, else
 * read from the table on the copy (its most common value; docs/advise.md,
 * "Placeholders on SQLite"), and a note says which.
 */
#ifndef QPROF_ADVISE_H
#define QPROF_ADVISE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "pool.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How a candidate index is proven before it is shown. */
typedef enum qp_advise_verify {
  /* HypoPG's hypothetical index when the extension is installed in the
   * database (CREATE EXTENSION hypopg), else the advice is "unverified". */
  QP_ADVISE_VERIFY_HYPO = 0,
  /* The real index: CREATE INDEX inside a transaction, ANALYZE, EXPLAIN
   * (ANALYZE when allowed), ROLLBACK. Takes the table's SHARE lock for the
   * build (writers wait): only on a database that may be changed. */
  QP_ADVISE_VERIFY_REAL = 1,
  /* Not verified: every suggestion is marked unverified. */
  QP_ADVISE_VERIFY_NONE = 2
} qp_advise_verify;

/* "hypo", "real", "none"; "none" for unknown values. Static. */
QP_EXPORT const char *qp_advise_verify_name(qp_advise_verify v);
/* Parses "hypo", "real" or "none". QP_INVALID otherwise. */
QP_EXPORT qp_status qp_advise_verify_parse(const char *name, qp_advise_verify *out);

/*
 * What advise is asked to do. Initialize with qp_advise_options_init (it
 * sets `size`, docs/api.md "Structs that grow"), then set fields.
 */
typedef struct qp_advise_options {
  size_t size;                  /* set by qp_advise_options_init */
  /* EXPLAIN ANALYZE read-only statements (they run, inside BEGIN READ
   * ONLY ... ROLLBACK). false (default): plain EXPLAIN, nothing runs. */
  bool analyze;
  /* Also analyze statements that write, inside BEGIN ... ROLLBACK. Without
   * it (default) they are only EXPLAINed, never run. Needed for the
   * foreign-key rule (the Triggers section comes from a run). */
  bool analyze_writes;
  qp_advise_verify verify;      /* default QP_ADVISE_VERIFY_HYPO */
  /* SET LOCAL statement_timeout / lock_timeout of every transaction the
   * advisor opens (advise.statement_timeout_ms, advise.lock_timeout_ms in
   * the options table: 10000 and 1000 ms). >= 1. */
  int64_t statement_timeout_ms;
  int64_t lock_timeout_ms;
  /* Tables with fewer rows (pg_class.reltuples) get no index advice, only a
   * note (advise.min_rows: 10000). */
  int64_t min_rows;
  const qp_hooks *hooks;        /* allocator for the advice (copied); NULL: malloc */
} qp_advise_options;

/* The smallest size qp_advise accepts: this first version. */
#define QP_ADVISE_OPTIONS_V1_SIZE (offsetof(qp_advise_options, hooks) + sizeof(const qp_hooks *))

/* Fills *o with the defaults above and sets o->size. Never fails. */
QP_EXPORT void qp_advise_options_init(qp_advise_options *o);

typedef struct qp_advice qp_advice;

/* How a suggestion was proven. */
typedef enum qp_advice_verified {
  QP_ADVICE_UNVERIFIED = 0, /* not proven: no HypoPG and not --verify real, or verify none */
  QP_ADVICE_HYPO = 1,       /* HypoPG: the planner used the hypothetical index */
  QP_ADVICE_REAL = 2,       /* a real index, built and rolled back */
  QP_ADVICE_COPY = 3        /* SQLite: a real index on a copy of the file, measured */
} qp_advice_verified;

/* "unverified", "hypopg", "real", "copy". Static. */
QP_EXPORT const char *qp_advice_verified_name(qp_advice_verified v);

/*
 * One index to create. Handed out by pointer (qp_advice_index_at); only
 * gains fields at its end. Strings are owned by the advice; NULL when not
 * set.
 */
typedef struct qp_advice_index {
  const char *statement;  /* "CREATE INDEX CONCURRENTLY ON public.t (a, b DESC)" */
  const char *table;      /* schema-qualified, "public.t" */
  const char *columns;    /* the key list as in the statement: "a, b DESC", "lower(email)" */
  const char *method;     /* "btree" */
  const char *opclass;    /* "text_pattern_ops" or NULL */
  const char *where;      /* partial-index predicate or NULL */
  /* INCLUDE columns, "amount, kind", or NULL: set when the planner reads
   * the index with an Index Only Scan at most half as costly as the
   * key-only index (docs/advise.md, "INCLUDE columns"); PostgreSQL only. */
  const char *include;
  const char *rule;       /* "seq_scan_filter", "top_n", "join_key", "expression",
                           * "like_prefix", "fk_trigger" (docs/advise.md) */
  const char *reason;     /* one sentence: what the plan showed */
  qp_advice_verified verified;
  /* HypoPG costs of an expression index are not to be trusted (the
   * expression has no statistics until a real index is ANALYZEd). */
  bool cost_unreliable;
  int nkeys;              /* key columns (1..3) */
  /* Planner total cost of the statement without and with the index; -1
   * when not known (unverified). */
  double cost_before, cost_after;
  /* The cut the verification demanded: cost_after <= required_ratio x the
   * cost it was judged against (cost_before, or the best one-column index
   * for a wider one); 0 when unverified. */
  double required_ratio;
  /* Measured execution time (EXPLAIN ANALYZE) without and with it; -1 when
   * not measured (ms_after needs verify real with analyze). For the
   * fk_trigger rule ms_before is the trigger's time. */
  double ms_before, ms_after;
  int64_t size_bytes;     /* estimated (HypoPG) or measured (real); -1 unknown */
  int64_t table_rows;     /* pg_class.reltuples; -1 unknown */
  /* Rows written to the table since the statistics reset (inserted +
   * updated + deleted, pg_stat_user_tables) and rows read (seq_tup_read +
   * idx_tup_fetch); -1 unknown. */
  int64_t table_writes, table_reads;
  /* Set when the table is mostly written (more rows written than read
   * since the reset): the index costs every write. NULL otherwise. */
  const char *write_warning;
} qp_advice_index;

/* Something that is not an index (docs/advise.md, "Findings"). Handed out
 * by pointer; only gains fields at its end. */
typedef struct qp_advice_finding {
  const char *rule;     /* "misestimate", "sort_spill", "hash_spill", "heap_fetches" */
  const char *table;    /* the table it is about, or NULL */
  const char *node;     /* the plan node ("Sort", "Hash", "Seq Scan on t") */
  const char *message;  /* what the plan showed */
  const char *action;   /* what to do: "ANALYZE public.t", "raise work_mem above 12 MB" */
} qp_advice_finding;

/* About the statement as a whole. Handed out by pointer; gains fields at
 * its end. */
typedef struct qp_advice_summary {
  const char *query;        /* the statement as given */
  /* What the advice rests on: "explain analyze", "explain" or "generic
   * plan" (PREPARE + force_generic_plan + EXPLAIN EXECUTE). */
  const char *plan_source;
  const char *kind;         /* qp_stmt_kind_name of the statement */
  bool read_only;           /* as the classifier says */
  bool executed;            /* the statement ran (EXPLAIN ANALYZE), rolled back */
  bool hypopg;              /* HypoPG was available in the database */
  qp_advise_verify verify;  /* as asked */
  double cost;              /* planner's total cost */
  double ms;                /* measured execution time; -1 when not run */
} qp_advice_summary;

/*
 * Advises on one statement on a leased connection. `sql` is one statement
 * (a trailing ';' is fine); `o` may be NULL (defaults). The lease must not
 * be inside a transaction (QP_STATE). Every statement the advisor runs is
 * quiet: never recorded in the pool's profile, never counted. Session
 * state it leaves (a PREPARE, deallocated again) is reset on release like
 * any other.
 *
 * On success *out holds the advice (free with qp_advice_free); it may hold
 * no suggestion, then its notes say why. Errors (then *out is NULL and
 * errbuf, which may be NULL, holds a message without any password):
 *   QP_REFUSED     DDL, utility, session or transaction statement, several
 *                  statements, or one the classifier cannot place;
 *   QP_TIMEOUT     statement_timeout or lock_timeout stopped it;
 *   QP_QUERY       the server refused it (syntax error, unknown table: the
 *                  message has the SQLSTATE);
 *   QP_UNSUPPORTED neither a PostgreSQL nor an SQLite connection, an SQLite
 *                  database without a file, or an SQLite placeholder that
 *                  is compared with no column (no value can be read for it);
 *   QP_STATE       the lease is inside a transaction;
 *   QP_SYNTAX      a plan the parser cannot read;
 *   QP_INVALID     NULL arguments, options without a size;
 *   QP_UNAVAILABLE, QP_NOMEM.
 * Thread-safety: as the lease (one thread at a time).
 */
QP_EXPORT qp_status qp_advise_conn(qp_conn *conn, const char *sql, const qp_advise_options *o,
                                   qp_advice **out, char *errbuf, size_t errlen);

/*
 * As qp_advise_conn on a connection of its own to `dsn` (opened and closed
 * within the call; connect timeout 5 s). Errors as qp_advise_conn, plus
 * QP_UNAVAILABLE when the database cannot be reached (the message never
 * holds the DSN's password). Thread-safe.
 */
QP_EXPORT qp_status qp_advise_dsn(const char *dsn, const char *sql, const qp_advise_options *o,
                                  qp_advice **out, char *errbuf, size_t errlen);

/* Frees an advice; NULL is a no-op. */
QP_EXPORT void qp_advice_free(qp_advice *a);

/* The statement's summary; valid until qp_advice_free. NULL for NULL. */
QP_EXPORT const qp_advice_summary *qp_advice_summary_get(const qp_advice *a);
/* Suggestions, best first (largest cost cut); NULL past the end. */
QP_EXPORT size_t qp_advice_index_count(const qp_advice *a);
QP_EXPORT const qp_advice_index *qp_advice_index_at(const qp_advice *a, size_t i);
/* Findings that are not indexes; NULL past the end. */
QP_EXPORT size_t qp_advice_finding_count(const qp_advice *a);
QP_EXPORT const qp_advice_finding *qp_advice_finding_at(const qp_advice *a, size_t i);
/* Notes: candidates that failed verification or were left out, and why
 * ("an index on t (is_paid) does not help: 95% of rows match"); NULL past
 * the end. */
QP_EXPORT size_t qp_advice_note_count(const qp_advice *a);
QP_EXPORT const char *qp_advice_note_at(const qp_advice *a, size_t i);

#ifdef __cplusplus
}
#endif
#endif
