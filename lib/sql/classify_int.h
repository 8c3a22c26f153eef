/*
 * Private to the classifier (classify*.c): the state its steps share.
 *
 * qp_sql_classify runs three steps over one statement:
 *   1. the head (classify_head.c): the first few words decide the kind, the
 *      transaction verb and isolation level, the DDL verb and object, and the
 *      session effects that only the head shows (SET, PREPARE, DISCARD...);
 *   2. the walk (classify_walk.c): one pass over all tokens with a bounded
 *      stack of per-parenthesis frames (no recursion) collects tables read
 *      and written, CTE names, statement verbs at every depth, function
 *      calls, locking clauses and SELECT INTO;
 *   3. the finish (classify.c): fields that follow from the others
 *      (read_only, flush_all, system_catalog, creates_temp...).
 */
#ifndef QP_CLASSIFY_INT_H
#define QP_CLASSIFY_INT_H

#include "sql_int.h"

#define QP__CLS_MAX_FRAMES 64
#define QP__CLS_MAX_CTES 16

typedef enum qp__role { QP__R_NONE = 0, QP__R_READ, QP__R_WRITE } qp__role;

/* One parenthesis level of the walk (level 0 is the statement itself). */
typedef struct qp__cframe {
  qp_kw verb;       /* SELECT, INSERT, UPDATE, DELETE, MERGE or NONE */
  qp__role expect;  /* a table name is expected next */
  qp__role list;    /* after a name, ',' expects another (FROM a, b; DROP TABLE a, b) */
  bool call;        /* the parenthesis belongs to a function call */
  bool target_done; /* DELETE FROM's target was read */
  int with_state;   /* 1: CTE name next, 2: after the name, 3: after the body */
  size_t ntok;      /* tokens seen in this frame */
} qp__cframe;

/* The object class of a DDL statement, as far as a result cache cares. */
typedef enum qp__ddl_obj {
  QP__OBJ_NONE = 0, /* not DDL, or no object (VACUUM, COMMENT) */
  QP__OBJ_REL,      /* TABLE, VIEW, MATERIALIZED VIEW, FOREIGN TABLE: results change */
  QP__OBJ_NOFX,     /* INDEX, TRIGGER, SEQUENCE, STATISTICS: no result changes */
  QP__OBJ_OTHER     /* FUNCTION, SCHEMA, TYPE, ROLE, POLICY, EXTENSION, GRANT...: any */
} qp__ddl_obj;

typedef struct qp__cls {
  qp_dialect d;
  const char *s;
  size_t len;
  qp_stmt_info *info;
  int kind; /* -1 until a step decides */

  /* ---- set by the head ---- */
  qp_kw head_kw;        /* the first word's keyword */
  bool ddl_target;      /* CREATE/ALTER/DROP/REFRESH: the object's name is a write */
  bool ddl_on;          /* the table follows ON (INDEX, TRIGGER) */
  bool ddl_done;        /* the DDL target was found */
  bool ddl_cascade;     /* CASCADE somewhere in a DDL statement */
  qp__ddl_obj ddl_obj;
  bool is_do;           /* DO $$ ... $$ */

  /* ---- set by the walk ---- */
  bool any_write_verb, write_fn;
  int explain; /* 0 none, 1 EXPLAIN, 2 EXPLAIN ANALYZE */
  char copy_name[QP_STMT_NAME_MAX]; /* COPY's table, read or written by direction */
  bool copy_named, copy_qualified;
  qp__role copy_dir;
  size_t nctes;
  bool ctes_truncated;

  /* the walk's position */
  size_t pos;       /* after the current token */
  size_t depth;     /* real parenthesis depth */
  size_t nstmt;     /* significant tokens in the statement so far */
  qp_kw kw1, kw2;   /* keywords of the previous two tokens */
  qp_tok_type prevtype;
  int explain_head; /* EXPLAIN seen, its statement's verb not yet */
  bool with_top;    /* the statement starts with WITH */
  /* The run of names joined by dots that ends at the previous token
   * (a.b.c), so that a '(' after it can name the function it calls. */
  size_t chain_start;      /* offset of its first token */
  int chain_n;             /* parts so far; 0 when the previous token is not part of one */
  bool chain_dot;          /* the previous token was a '.' inside the run */
  bool chain_no_call;      /* the run is a type (after ::, AS) or an alias's columns */
  qp_tok chain_before;     /* the token before the run */
  bool after_table;        /* the previous token was a table name (an alias may follow) */
  bool ddl_list_calls;     /* DDL: calls are listed (the query part started) */
  qp_tok prevtok;          /* the previous significant token */

  qp__cframe fr[QP__CLS_MAX_FRAMES];
  char ctes[QP__CLS_MAX_CTES][QP_STMT_NAME_MAX];
} qp__cls;

/* The bytes of qp__cls that must start zeroed (the arrays after need not). */
#define QP__CLS_ZERO_SIZE offsetof(qp__cls, fr)

/* step 1: the head. Reads the first tokens from c->s; sets c->kind when the
 * head decides it, and the head fields of c->info. */
void qp__cls_head(qp__cls *c);
/* step 2: the walk over every token up to the first top-level ';'. */
void qp__cls_walk(qp__cls *c);

/* Helpers shared by the steps. */
bool qp__cls_word_is(const char *s, const qp_tok *t, const char *w);
/* Appends one name part to dst (unquoted lower-cased; quotes removed).
 * Returns false, leaving dst as it was, when it does not fit. */
bool qp__cls_append_part(const char *s, char *dst, const qp_tok *t);
/* Adds a table to the read or write list (once; not a CTE name). */
void qp__cls_record(qp__cls *c, qp__role r, const char *name, bool qualified);
/* A call of function `name` (qualified when it holds a '.'): the function
 * list, volatile_fn, write_fn, changes_session and system_catalog. */
void qp__cls_call(qp__cls *c, const char *name, bool fits);
/* Step 3, in classify.c: the fields that follow from the others. */
void qp__cls_finish(qp__cls *c);

#endif
