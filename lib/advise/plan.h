/*
 * The plan parser: the JSON document of PostgreSQL's EXPLAIN (FORMAT JSON),
 * with or without ANALYZE and BUFFERS, read with jansson into a tree that
 * the advisor's rules walk. Private to the library.
 *
 * The tree is allocated with the caller's hooks; jansson's own allocations
 * (made while parsing, freed before qp__plan_parse returns) use malloc,
 * because jansson's allocator is process-wide and the library keeps no
 * process-wide state.
 */
#ifndef QPROF_ADVISE_PLAN_H
#define QPROF_ADVISE_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* Plans nested deeper than this are refused (the walk is recursive). */
#define QP__PLAN_MAX_DEPTH 200

typedef struct qp__pnode qp__pnode;
struct qp__pnode {
  /* Strings are owned by the tree; NULL when EXPLAIN did not give them. */
  char *node_type;          /* "Seq Scan", "Index Scan", "Nested Loop", ... */
  char *parent_rel;         /* "Outer", "Inner", "InitPlan", "SubPlan", ... */
  char *relation, *schema, *alias, *index_name;
  char *filter, *index_cond, *recheck_cond;
  char *join_type, *join_filter, *hash_cond, *merge_cond;
  char *scan_direction;     /* "Forward", "Backward" */
  char *sort_method, *sort_space_type; /* "external merge", "Disk" */
  char **sort_keys;
  size_t nsort_keys;
  char **output;            /* EXPLAIN VERBOSE "Output": the columns the node returns */
  size_t noutput;
  double startup_cost, total_cost, plan_rows;
  /* Measured (ANALYZE); -1 where EXPLAIN did not say. */
  double actual_rows, actual_loops, actual_total_ms;
  double rows_removed_filter, rows_removed_join_filter, heap_fetches;
  double hash_batches, original_hash_batches, sort_space_kb;
  double temp_written_blocks;
  bool under_limit;         /* some ancestor is a Limit */
  int depth;                /* 0 for the top node */
  qp__pnode *parent;
  qp__pnode **children;     /* owned */
  size_t nchildren;
};

typedef struct qp__ptrigger {
  char *name, *constraint_name, *relation; /* owned; NULL when absent */
  double time_ms, calls;
} qp__ptrigger;

typedef struct qp__plan_tree {
  const qp_hooks *hooks;
  qp__pnode *root;
  qp__ptrigger *triggers;
  size_t ntriggers;
  bool analyzed;            /* the top node has Actual Rows */
  double planning_ms, execution_ms; /* -1 when absent */
  size_t nnodes;
} qp__plan_tree;

/*
 * Parses json[0..len) into *out (free with qp__plan_tree_free). The
 * document must be what EXPLAIN (FORMAT JSON) prints: an array of one
 * object with a "Plan" object; every node has a string "Node Type"; known
 * fields have the type EXPLAIN gives them. Anything else (not JSON, another
 * shape, a wrong type, nesting deeper than QP__PLAN_MAX_DEPTH) is
 * QP_SYNTAX with a message in errbuf naming what and where; QP_NOMEM when
 * memory runs out. Unknown fields are ignored (newer servers add some).
 */
qp_status qp__plan_parse(const qp_hooks *h, const char *json, size_t len, qp__plan_tree **out,
                         char *errbuf, size_t errlen);
void qp__plan_tree_free(qp__plan_tree *t);

/* Calls fn on every node, parents before children; stops when fn returns
 * false (and then returns false). */
bool qp__plan_walk(qp__pnode *n, bool (*fn)(qp__pnode *n, void *ud), void *ud);

/* Appends a stable, line-per-node description of the tree (the golden
 * files of tests/data/explain/ hold it). */
void qp__plan_dump(const qp__plan_tree *t, qp_buf *out);

#endif
