/*
 * The advisor's parts, shared between advise.c (the API, the advice, the
 * call and its transactions), catalog.c (tables, indexes, deduplication),
 * verify.c (HypoPG or real indexes, judging), include.c (INCLUDE
 * variants), rules.c (the plan read into candidates and findings) and
 * sqlite.c with sqlite_values.c (everything on a copy; sqlite_int.h between
 * them). Private to the library.
 */
#ifndef QPROF_ADVISE_INT_H
#define QPROF_ADVISE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "advise/cond.h"
#include "advise/plan.h"
#include "internal.h"
#include "pool/lease.h"
#include "qprof/advise.h"

#define ADV_MAX_KEYS 3
#define ADV_MAX_TABLES 16
#define ADV_MAX_INDEXES 32
#define ADV_MAX_CANDS 48
#define ADV_NAME 128
#define ADV_KEY 200
/* The names of the advisor's prepared statements (a generic plan, the
 * foreign-key lookup). */
#define ADV_PREPARED "qp_advise_stmt"
#define ADV_PREPARED_FK "qp_advise_fk"
#define ADV_MAX_NEED 16   /* columns of one table a statement reads, at most */

/* An index that exists (pg_index), keys as pg_get_indexdef prints them. */
typedef struct adv_index {
  char name[ADV_NAME];
  char am[16];
  bool partial, unique, primary;
  int nkeys, total_keys;        /* keys kept (<= ADV_MAX_KEYS), keys it has */
  int64_t scans, size;          /* idx_scan since the reset (-1 unknown), bytes */
  char keys[ADV_MAX_KEYS][ADV_KEY]; /* the first keys only */
  char opc[ADV_MAX_KEYS][64];
} adv_index;

/* A table the plan reads, with what the catalog says. */
typedef struct adv_table {
  char relname[ADV_NAME];   /* as the plan names it */
  char qual[2 * ADV_NAME + 8]; /* quoted where needed, "public.t" */
  char oid[24];
  bool found;
  int64_t rows, writes, reads;
  size_t nindexes;
  adv_index idx[ADV_MAX_INDEXES];
  /* The columns the statement reads from it (EXPLAIN VERBOSE: the scans'
   * Output, Filter and conditions), for INCLUDE (include.c). need_known:
   * read; need_all: a whole row or more than ADV_MAX_NEED columns. */
  bool need_known, need_all;
  int nneed, ncolumns;          /* columns read; columns the table has */
  char need[ADV_MAX_NEED][ADV_NAME];
  int need_width[ADV_MAX_NEED]; /* pg_stats avg_width, -1 unknown */
  double all_visible;           /* relallvisible / relpages, -1 unknown */
} adv_table;

/* How big a cut a candidate must show (advise.md, "Verification"). */
typedef enum adv_shape {
  ADV_SHAPE_FILTER = 0, /* a scan's filter, LIKE prefix: cost <= 0.7 x before */
  ADV_SHAPE_TOPN,       /* ORDER BY ... LIMIT: cost <= 0.5 x before */
  ADV_SHAPE_JOIN,       /* a join key: cost <= 0.8 x before */
  ADV_SHAPE_EXPR,       /* expression: used, any cut; marked unreliable */
  ADV_SHAPE_FK,         /* the RI lookup of a trigger: cost <= 0.5 x before */
  ADV_SHAPE_SQLITE      /* SQLite, measured VM steps on the copy: <= 0.5 x before */
} adv_shape;

/* One candidate index. Candidates of one group are alternatives for one
 * finding (one-column ones and the full one): at most one is shown. */
typedef struct adv_cand {
  int table;              /* index into ctx tables */
  int nkeys;
  char keys[ADV_MAX_KEYS][ADV_KEY]; /* "a", "b DESC", "lower(email)" */
  char opclass[32];       /* for every key, "" = default */
  char where[256];        /* partial-index predicate, "" = none */
  char include[256];      /* INCLUDE columns, "a, b"; "" = none */
  int base;               /* an INCLUDE candidate: the key-only one it extends, else -1 */
  char rule[24];
  char reason[512];
  adv_shape shape;
  int group;
  bool expr;
  double ms_before;       /* measured time of what it helps, -1 */
  char verify_sql[1024];  /* what to plan instead of the statement (fk), "" = it */
  /* results */
  bool tested, used, accepted;
  bool index_only;        /* the planner reads it with an Index Only Scan */
  double cost_before, cost_after, ratio;
  int64_t size_bytes;
  double ms_after;
  char why[256];          /* why it failed */
} adv_cand;

typedef struct adv_finding {
  char rule[24], table[2 * ADV_NAME + 8], node[160], message[512], action[256];
} adv_finding;

struct adv_ctx {
  qp_conn *c;
  qp_advise_options o;
  qp_advice *a;
  const char *sql;        /* as given */
  char *run;              /* what is planned: the statement, $n for '?' */
  bool generic;           /* placeholders: planned through PREPARE */
  int nparams;
  bool write;             /* the statement writes */
  bool write_txn;         /* it runs in BEGIN (analyze_writes) rather than READ ONLY */
  bool analyze;           /* it is analyzed */
  bool hypopg;
  bool prepared, prepared_fk;
  size_t ntables;
  adv_table tables[ADV_MAX_TABLES];
  size_t ncands;
  adv_cand cands[ADV_MAX_CANDS];
  int groups;
  size_t nfindings;
  adv_finding findings[16];
  bool sqlite;            /* an SQLite lease: everything on a copy */
  bool on_copy;           /* the lease is on that copy already */
  qp_status st;           /* first failure */
  char msg[QP_ERRMSG_MAX];
};

/* The advice handed out (advise.h): strings in `strs`. */
struct qp_advice {
  qp_hooks hooks;
  qp_advice_summary sum;
  qp_advice_index *idx;
  size_t nidx;
  qp_advice_finding *fnd;
  size_t nfnd;
  const char **notes;
  size_t nnotes;
  char **strs; /* every string above */
  size_t nstrs, capstrs;
  bool failed;  /* out of memory while filling */
};

/* One call's state. */
typedef struct adv_ctx adv_ctx;


/* The table of a plan node's relation (looked up once), or -1. */
int qp__adv_table(adv_ctx *x, const char *relname);
const adv_table *qp__adv_table_at(const adv_ctx *x, int i);
/* Whether column `col` of table t compares under the C collation (a plain
 * btree then serves LIKE 'prefix%'): 1 yes, 0 no, -1 unknown. */
int qp__adv_column_c_collation(adv_ctx *x, int t, const char *col);
/* The FK constraint `conname` whose referenced table is `parent`: fills the
 * referencing table's name and its columns; false when not found. */
bool qp__adv_fk(adv_ctx *x, const char *conname, char *child, size_t childlen,
                char cols[ADV_MAX_KEYS][ADV_KEY], int *ncols);
bool qp__adv_add_cand(adv_ctx *x, const adv_cand *c);
/* Adds c (its group set) and, when it has several keys, each of its
 * columns alone: the one-column alternatives it is judged against. */
void qp__adv_add_group(adv_ctx *x, const adv_cand *c);
void qp__adv_note(adv_ctx *x, const char *fmt, ...) QP_PRINTF(2, 3);
void qp__adv_finding(adv_ctx *x, const adv_finding *f);
int64_t qp__adv_min_rows(const adv_ctx *x);
int qp__adv_next_group(adv_ctx *x);

/* rules.c: reads the plan into candidates (qp__adv_add_cand), findings and
 * notes. `analyzed`: the plan has actual rows. */
void qp__adv_rules(adv_ctx *x, const qp__plan_tree *t);

/* snprintf into a message buffer, cut to cap (messages are cut on purpose):
 * returns what was written (never more than cap - 1). */
size_t qp__adv_fmt(char *dst, size_t cap, const char *fmt, ...) QP_PRINTF(3, 4);

/* Shared by advise.c (PostgreSQL) and sqlite.c. */
qp_status qp__adv_q(adv_ctx *x, const char *sql, const qp_param *p, size_t np, qp_result **out);
bool qp__adv_qok(adv_ctx *x, const char *sql, const char *what);
int64_t qp__adv_rint64(qp_result *r, size_t row, size_t col);
void qp__adv_rstr(qp_result *r, size_t row, size_t col, char *out, size_t cap);
void qp__adv_key_norm(const char *k, char *out, size_t cap);
/* The existing index that already serves c (its keys begin with c's), or NULL. */
const adv_index *qp__adv_covered(const adv_table *t, const adv_cand *c);
void qp__adv_keys_join(const adv_cand *c, char *out, size_t cap);
double qp__adv_shape_ratio(adv_shape s);
/* "Consider dropping" notes for every table read (unused when the catalog
 * counts scans, prefixes of or the same keys as another index). */
void qp__adv_catalog_notes(adv_ctx *x);
/* Judges every group of candidates (advise.md, "Verification"). */
void qp__adv_judge(adv_ctx *x, const char *how);
/* Fills the advice from the accepted candidates and the findings. */
void qp__adv_emit(adv_ctx *x, bool verified);
/* The top-level WHERE clause of an SQLite statement into out, token by
 * token with single spaces, LIKE as ~~ and parameters as $0, the form
 * cond.c reads; returns its length (0: none, or longer than cap).
 * Never fails; thread-safe. */
size_t qp__adv_where(const char *sql, size_t len, char *out, size_t cap);

/* The top-level ORDER BY of a statement (NUL-terminated) that also has a
 * top-level LIMIT, when every term is a plain [qual.]column [ASC|DESC] (at
 * most ADV_MAX_KEYS terms): true with *o filled (names cut to ADV_NAME - 1
 * bytes), else false (lib/advise/sqlite.c; fuzzed by fuzz_advise_where). */
typedef struct qp__adv_order {
  int n;
  char qual[ADV_MAX_KEYS][ADV_NAME], col[ADV_MAX_KEYS][ADV_NAME];
  bool desc[ADV_MAX_KEYS];
} qp__adv_order;
bool qp__adv_order_read(const char *sql, qp__adv_order *o);

/* What a representative value of a placeholder stands for (SQLite,
 * docs/advise.md "Placeholders on SQLite"): the k-th most common value, or
 * the one a third of the rows lie below / above. */
typedef enum qp__adv_pick { QP__ADV_MCV = 0, QP__ADV_LOW_THIRD, QP__ADV_HIGH_THIRD } qp__adv_pick;

/* The first field of an SQLite record (the file format's record: a header
 * of serial types, then the values; a sqlite_stat4 sample is one) as an
 * SQL literal into out: an integer, a real ("%.17g"), 'text' (quotes
 * doubled) or X'hex'. False for NULL, a malformed or truncated record, a
 * value that does not fit in cap, or a real that is not finite. Never
 * reads past len; thread-safe (lib/advise/sqlite_values.c; fuzzed by
 * fuzz_advise_where). */
bool qp__adv_record_literal(const unsigned char *rec, size_t len, char *out, size_t cap);

/* Of n sqlite_stat4 samples of one index, given the counts of their
 * leading column (neq: rows equal to it, nlt: rows below it), the one a
 * placeholder gets: for QP__ADV_MCV the k-th (0-based) most common
 * distinct leading value (the largest neq; ties: the smallest value, the
 * lower nlt), else the one whose nlt is nearest to rows / 3 (below) or
 * 2 rows / 3 (above). -1 when there is none (fewer distinct values than
 * k + 1, n == 0). */
int qp__adv_stat4_pick(const int64_t *neq, const int64_t *nlt, size_t n, qp__adv_pick pick, int k,
                       int64_t rows);

/* The column references of one condition or output expression as
 * PostgreSQL prints it in a plan (NUL-terminated `s`; NULL: none):
 * "alias.col", or "col" alone (a single-table Output); qualified by another
 * alias, a function name or a type after :: they are not the table's. fn
 * gets each (`bare`: unqualified; a name cut to ADV_NAME - 1 bytes), and
 * "*" for a whole-row reference (alias.*). lib/advise/include.c; fuzzed by
 * fuzz_plan (on the raw input and on every node's texts). */
typedef void (*qp__adv_col_fn)(void *ud, const char *name, bool bare);
void qp__adv_scan_columns(const char *s, const char *alias, qp__adv_col_fn fn, void *ud);
/* SQLite: the whole advice on a copy of the lease's database (sqlite.c). */
void qp__adv_sqlite(adv_ctx *x);
/* qp_advise_dsn on an SQLite DSN: the live file opened read-only only to
 * be copied (VACUUM INTO), the advice on a lease of the copy. */
qp_status qp__adv_sqlite_dsn(const char *dsn, const char *sql, const qp_advise_options *o,
                             qp_advice **out, char *errbuf, size_t errlen);
/* qp_advise_conn; on_copy: the lease is on a copy already (SQLite). */
qp_status qp__advise_conn_impl(qp_conn *conn, const char *sql, const qp_advise_options *o,
                               qp_advice **out, char *errbuf, size_t errlen, bool on_copy);

/* The plan of `sql`, or of EXECUTE prepared(NULL, ...) when `prepared` is
 * set, parsed (EXPLAIN ANALYZE when analyze); NULL on failure (x->st). */
qp__plan_tree *qp__adv_plan_of(adv_ctx *x, const char *sql, const char *prepared, int nparams,
                               bool analyze, const char *what);
/* PREPARE name AS sql; the number of its parameters into *np. */
bool qp__adv_prepare(adv_ctx *x, const char *name, const char *sql, int *np);
/* verify.c: the CREATE INDEX text of c (named when name is set). */
void qp__adv_create_sql(const adv_ctx *x, const adv_cand *c, const char *name, bool concurrently,
                        char *out, size_t cap);
/* verify.c: c tried as a HypoPG index inside the statement's transaction,
 * or as a real index in a transaction of its own, rolled back; fills its
 * results (tested, used, index_only, costs, size). */
void qp__adv_try_hypo(adv_ctx *x, adv_cand *c, double main_cost);
void qp__adv_try_real(adv_ctx *x, adv_cand *c, double main_cost);
/* The EXECUTE text of a prepared statement with nparams NULL arguments. */
void qp__adv_exec_text(const char *prepared, int nparams, char *out, size_t cap);
/* BEGIN [READ ONLY] with the advisor's local settings; ROLLBACK when in one. */
bool qp__adv_begin(adv_ctx *x, bool write);
void qp__adv_rollback(adv_ctx *x);
/* Records the connection's error as the call's failure (timeouts named). */
qp_status qp__adv_fail_conn(adv_ctx *x, const char *what);

/* include.c: the columns the statement reads from each table with a
 * candidate (one EXPLAIN VERBOSE inside the statement's transaction). */
void qp__adv_need_columns(adv_ctx *x);
/* include.c: for every accepted key-only candidate of a read-only
 * statement, an INCLUDE variant when the rest of what it reads is few and
 * narrow columns, tried with `try` and kept only when it pays (advise.md,
 * "INCLUDE columns"). */
void qp__adv_include(adv_ctx *x, void (*try)(adv_ctx *x, adv_cand *c, double main_cost),
                     double main_cost);

/* A copy of s owned by the advice (NULL when out of memory: a->failed). */
const char *qp__adv_str(qp_advice *a, const char *s);

/* Quotes an identifier when it needs it ("Foo" -> "\"Foo\""). */
void qp__adv_ident(const char *name, char *out, size_t cap);

#endif
