/*
 * EXPLAIN (FORMAT JSON) into a plan tree (plan.h says what is accepted).
 */
#include "advise/plan.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct pctx {
  const qp_hooks *h;
  char *err;
  size_t errlen;
  qp_status st;
  size_t nnodes;
} pctx;

static bool fail(pctx *c, qp_status st, const char *what, const char *where) {
  if (c->st == QP_OK) {
    c->st = st;
    qp__errbuf_set(c->err, c->errlen, st, "plan: %s%s%s", what, where ? " in " : "",
                   where ? where : "");
  }
  return false;
}

/* A string field: absent is fine (NULL), any other type is an error. */
static bool get_str(pctx *c, json_t *o, const char *key, char **dst, const char *where) {
  json_t *v = json_object_get(o, key);
  if (v == NULL || json_is_null(v)) return true;
  if (!json_is_string(v)) {
    char m[128];
    snprintf(m, sizeof m, "\"%s\" is not a string", key);
    return fail(c, QP_SYNTAX, m, where);
  }
  *dst = qp__strndup(c->h, json_string_value(v), json_string_length(v));
  return *dst != NULL || fail(c, QP_NOMEM, "out of memory", NULL);
}

/* A number field: absent gives `def`. */
static bool get_num(pctx *c, json_t *o, const char *key, double *dst, double def,
                    const char *where) {
  json_t *v = json_object_get(o, key);
  *dst = def;
  if (v == NULL) return true;
  if (!json_is_number(v)) {
    char m[128];
    snprintf(m, sizeof m, "\"%s\" is not a number", key);
    return fail(c, QP_SYNTAX, m, where);
  }
  double d = json_number_value(v);
  if (!isfinite(d)) return fail(c, QP_SYNTAX, "a number is not finite", where);
  *dst = d;
  return true;
}

/* An array of strings ("Sort Key", "Output"): absent is fine. */
static bool get_strs(pctx *c, json_t *o, const char *key, char ***dst, size_t *n,
                     const char *where) {
  json_t *arr = json_object_get(o, key);
  if (arr == NULL) return true;
  char m[128];
  if (!json_is_array(arr)) {
    snprintf(m, sizeof m, "\"%s\" is not an array", key);
    return fail(c, QP_SYNTAX, m, where);
  }
  if (json_array_size(arr) == 0) return true;
  *dst = qp__calloc(c->h, json_array_size(arr), sizeof **dst);
  if (*dst == NULL) return fail(c, QP_NOMEM, "out of memory", NULL);
  for (size_t i = 0; i < json_array_size(arr); i++) {
    json_t *k = json_array_get(arr, i);
    if (!json_is_string(k)) {
      snprintf(m, sizeof m, "a \"%s\" is not a string", key);
      return fail(c, QP_SYNTAX, m, where);
    }
    (*dst)[*n] = qp__strndup(c->h, json_string_value(k), json_string_length(k));
    if ((*dst)[*n] == NULL) return fail(c, QP_NOMEM, "out of memory", NULL);
    (*n)++;
  }
  return true;
}

static void node_free(const qp_hooks *h, qp__pnode *n) {
  if (n == NULL) return;
  for (size_t i = 0; i < n->nchildren; i++) node_free(h, n->children[i]);
  qp__free(h, n->children);
  char **strs[] = {&n->node_type, &n->parent_rel, &n->relation, &n->schema, &n->alias,
                   &n->index_name, &n->filter, &n->index_cond, &n->recheck_cond,
                   &n->join_type, &n->join_filter, &n->hash_cond, &n->merge_cond,
                   &n->scan_direction, &n->sort_method, &n->sort_space_type};
  for (size_t i = 0; i < QP_ARRAY_LEN(strs); i++) qp__free(h, *strs[i]);
  for (size_t i = 0; i < n->nsort_keys; i++) qp__free(h, n->sort_keys[i]);
  qp__free(h, n->sort_keys);
  for (size_t i = 0; i < n->noutput; i++) qp__free(h, n->output[i]);
  qp__free(h, n->output);
  qp__free(h, n);
}

static qp__pnode *node_parse(pctx *c, json_t *o, qp__pnode *parent, int depth) {
  if (depth > QP__PLAN_MAX_DEPTH) {
    fail(c, QP_SYNTAX, "nested deeper than 200 nodes", NULL);
    return NULL;
  }
  if (!json_is_object(o)) {
    fail(c, QP_SYNTAX, "a plan node is not an object", parent ? parent->node_type : "\"Plan\"");
    return NULL;
  }
  json_t *nt = json_object_get(o, "Node Type");
  if (!json_is_string(nt)) {
    fail(c, QP_SYNTAX, "a node has no string \"Node Type\"",
         parent ? parent->node_type : "\"Plan\"");
    return NULL;
  }
  qp__pnode *n = qp__calloc(c->h, 1, sizeof *n);
  if (n == NULL) {
    fail(c, QP_NOMEM, "out of memory", NULL);
    return NULL;
  }
  c->nnodes++;
  n->parent = parent;
  n->depth = depth;
  n->under_limit = parent != NULL &&
                   (parent->under_limit || strcmp(parent->node_type, "Limit") == 0);
  const char *w = json_string_value(nt);
  bool ok = get_str(c, o, "Node Type", &n->node_type, w);
  w = n->node_type;
  ok = ok && get_str(c, o, "Parent Relationship", &n->parent_rel, w) &&
       get_str(c, o, "Relation Name", &n->relation, w) && get_str(c, o, "Schema", &n->schema, w) &&
       get_str(c, o, "Alias", &n->alias, w) && get_str(c, o, "Index Name", &n->index_name, w) &&
       get_str(c, o, "Filter", &n->filter, w) && get_str(c, o, "Index Cond", &n->index_cond, w) &&
       get_str(c, o, "Recheck Cond", &n->recheck_cond, w) &&
       get_str(c, o, "Join Type", &n->join_type, w) &&
       get_str(c, o, "Join Filter", &n->join_filter, w) &&
       get_str(c, o, "Hash Cond", &n->hash_cond, w) &&
       get_str(c, o, "Merge Cond", &n->merge_cond, w) &&
       get_str(c, o, "Scan Direction", &n->scan_direction, w) &&
       get_str(c, o, "Sort Method", &n->sort_method, w) &&
       get_str(c, o, "Sort Space Type", &n->sort_space_type, w) &&
       get_num(c, o, "Startup Cost", &n->startup_cost, 0, w) &&
       get_num(c, o, "Total Cost", &n->total_cost, 0, w) &&
       get_num(c, o, "Plan Rows", &n->plan_rows, 0, w) &&
       get_num(c, o, "Actual Rows", &n->actual_rows, -1, w) &&
       get_num(c, o, "Actual Loops", &n->actual_loops, -1, w) &&
       get_num(c, o, "Actual Total Time", &n->actual_total_ms, -1, w) &&
       get_num(c, o, "Rows Removed by Filter", &n->rows_removed_filter, -1, w) &&
       get_num(c, o, "Rows Removed by Join Filter", &n->rows_removed_join_filter, -1, w) &&
       get_num(c, o, "Heap Fetches", &n->heap_fetches, -1, w) &&
       get_num(c, o, "Hash Batches", &n->hash_batches, -1, w) &&
       get_num(c, o, "Original Hash Batches", &n->original_hash_batches, -1, w) &&
       get_num(c, o, "Sort Space Used", &n->sort_space_kb, -1, w) &&
       get_num(c, o, "Temp Written Blocks", &n->temp_written_blocks, -1, w);
  ok = ok && get_strs(c, o, "Sort Key", &n->sort_keys, &n->nsort_keys, w) &&
       get_strs(c, o, "Output", &n->output, &n->noutput, w);
  json_t *kids = ok ? json_object_get(o, "Plans") : NULL;
  if (kids != NULL) {
    if (!json_is_array(kids)) {
      ok = fail(c, QP_SYNTAX, "\"Plans\" is not an array", w);
    } else if (json_array_size(kids) > 0) {
      n->children = qp__calloc(c->h, json_array_size(kids), sizeof *n->children);
      if (n->children == NULL) ok = fail(c, QP_NOMEM, "out of memory", NULL);
      for (size_t i = 0; ok && i < json_array_size(kids); i++) {
        qp__pnode *k = node_parse(c, json_array_get(kids, i), n, depth + 1);
        if (k == NULL) ok = false;
        else n->children[n->nchildren++] = k;
      }
    }
  }
  if (!ok) {
    node_free(c->h, n);
    return NULL;
  }
  return n;
}

static bool triggers_parse(pctx *c, json_t *arr, qp__plan_tree *t) {
  if (arr == NULL) return true;
  if (!json_is_array(arr)) return fail(c, QP_SYNTAX, "\"Triggers\" is not an array", NULL);
  size_t n = json_array_size(arr);
  if (n == 0) return true;
  t->triggers = qp__calloc(c->h, n, sizeof *t->triggers);
  if (t->triggers == NULL) return fail(c, QP_NOMEM, "out of memory", NULL);
  for (size_t i = 0; i < n; i++) {
    json_t *o = json_array_get(arr, i);
    if (!json_is_object(o)) return fail(c, QP_SYNTAX, "a trigger is not an object", "\"Triggers\"");
    qp__ptrigger *tr = &t->triggers[t->ntriggers++];
    if (!get_str(c, o, "Trigger Name", &tr->name, "\"Triggers\"") ||
        !get_str(c, o, "Constraint Name", &tr->constraint_name, "\"Triggers\"") ||
        !get_str(c, o, "Relation", &tr->relation, "\"Triggers\"") ||
        !get_num(c, o, "Time", &tr->time_ms, 0, "\"Triggers\"") ||
        !get_num(c, o, "Calls", &tr->calls, 0, "\"Triggers\""))
      return false;
  }
  return true;
}

void qp__plan_tree_free(qp__plan_tree *t) {
  if (t == NULL) return;
  const qp_hooks *h = t->hooks;
  node_free(h, t->root);
  for (size_t i = 0; i < t->ntriggers; i++) {
    qp__free(h, t->triggers[i].name);
    qp__free(h, t->triggers[i].constraint_name);
    qp__free(h, t->triggers[i].relation);
  }
  qp__free(h, t->triggers);
  qp__free(h, t);
}

qp_status qp__plan_parse(const qp_hooks *h, const char *json, size_t len, qp__plan_tree **out,
                         char *errbuf, size_t errlen) {
  *out = NULL;
  if (json == NULL) return qp__errbuf_set(errbuf, errlen, QP_INVALID, "plan: no text");
  json_error_t je;
  /* JSON_REJECT_DUPLICATES: EXPLAIN never repeats a key, so a document that
   * does is not one of its plans. */
  json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
  if (doc == NULL)
    return qp__errbuf_set(errbuf, errlen, QP_SYNTAX, "plan: not JSON: %s at line %d column %d",
                          je.text, je.line, je.column);
  pctx c = {h, errbuf, errlen, QP_OK, 0};
  qp__plan_tree *t = NULL;
  json_t *top = json_is_array(doc) && json_array_size(doc) == 1 ? json_array_get(doc, 0) : NULL;
  json_t *plan = json_is_object(top) ? json_object_get(top, "Plan") : NULL;
  if (plan == NULL) {
    fail(&c, QP_SYNTAX, "not an EXPLAIN (FORMAT JSON) document (expected [{\"Plan\": {...}}])",
         NULL);
  } else if ((t = qp__calloc(h, 1, sizeof *t)) == NULL) {
    fail(&c, QP_NOMEM, "out of memory", NULL);
  } else {
    t->hooks = h;
    t->root = node_parse(&c, plan, NULL, 0);
    if (t->root != NULL && triggers_parse(&c, json_object_get(top, "Triggers"), t) &&
        get_num(&c, top, "Planning Time", &t->planning_ms, -1, NULL) &&
        get_num(&c, top, "Execution Time", &t->execution_ms, -1, NULL)) {
      t->analyzed = t->root->actual_rows >= 0;
      t->nnodes = c.nnodes;
    }
  }
  json_decref(doc);
  if (c.st != QP_OK) {
    qp__plan_tree_free(t);
    return c.st;
  }
  *out = t;
  return QP_OK;
}

bool qp__plan_walk(qp__pnode *n, bool (*fn)(qp__pnode *n, void *ud), void *ud) {
  if (n == NULL) return true;
  if (!fn(n, ud)) return false;
  for (size_t i = 0; i < n->nchildren; i++)
    if (!qp__plan_walk(n->children[i], fn, ud)) return false;
  return true;
}

static void dump_str(qp_buf *b, const char *k, const char *v) {
  if (v != NULL) qp__buf_printf(b, " %s=\"%s\"", k, v);
}

static void dump_num(qp_buf *b, const char *k, double v) {
  if (v >= 0) qp__buf_printf(b, " %s=%.17g", k, v);
}

static bool dump_node(qp__pnode *n, void *ud) {
  qp_buf *b = ud;
  qp__buf_printf(b, "%*s%s", n->depth * 2, "", n->node_type);
  dump_str(b, "rel", n->parent_rel);
  dump_str(b, "relation", n->relation);
  dump_str(b, "schema", n->schema);
  dump_str(b, "alias", n->alias);
  dump_str(b, "index", n->index_name);
  dump_str(b, "filter", n->filter);
  dump_str(b, "index_cond", n->index_cond);
  dump_str(b, "recheck", n->recheck_cond);
  dump_str(b, "join_type", n->join_type);
  dump_str(b, "join_filter", n->join_filter);
  dump_str(b, "hash_cond", n->hash_cond);
  dump_str(b, "merge_cond", n->merge_cond);
  dump_str(b, "dir", n->scan_direction);
  dump_str(b, "sort_method", n->sort_method);
  dump_str(b, "sort_space", n->sort_space_type);
  for (size_t i = 0; i < n->nsort_keys; i++) dump_str(b, "sort_key", n->sort_keys[i]);
  for (size_t i = 0; i < n->noutput; i++) dump_str(b, "output", n->output[i]);
  qp__buf_printf(b, " cost=%.17g plan_rows=%.17g", n->total_cost, n->plan_rows);
  dump_num(b, "rows", n->actual_rows);
  dump_num(b, "loops", n->actual_loops);
  dump_num(b, "removed", n->rows_removed_filter);
  dump_num(b, "join_removed", n->rows_removed_join_filter);
  dump_num(b, "heap_fetches", n->heap_fetches);
  dump_num(b, "batches", n->hash_batches);
  dump_num(b, "orig_batches", n->original_hash_batches);
  if (n->under_limit) qp__buf_puts(b, " under_limit");
  qp__buf_puts(b, "\n");
  return true;
}

void qp__plan_dump(const qp__plan_tree *t, qp_buf *out) {
  qp__buf_printf(out, "analyzed=%s nodes=%zu\n", t->analyzed ? "yes" : "no", t->nnodes);
  qp__plan_walk(t->root, dump_node, out);
  for (size_t i = 0; i < t->ntriggers; i++) {
    const qp__ptrigger *tr = &t->triggers[i];
    qp__buf_printf(out, "trigger name=\"%s\" constraint=\"%s\" relation=\"%s\" calls=%.17g\n",
                   tr->name ? tr->name : "", tr->constraint_name ? tr->constraint_name : "",
                   tr->relation ? tr->relation : "", tr->calls);
  }
}
