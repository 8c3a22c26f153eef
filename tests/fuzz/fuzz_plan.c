/*
 * libFuzzer target for the plan parser (lib/advise/plan.c) and the
 * condition reader the advisor's rules use on its strings
 * (lib/advise/cond.c). Checks: a document is either a tree or QP_SYNTAX /
 * QP_NOMEM with a message, never a crash; every node's parent link and depth
 * agree; the dump of the tree is NUL-terminated; every condition read from a
 * node names columns inside the text it came from; the INCLUDE rule's column
 * scanner (qp__adv_scan_columns, lib/advise/include.c) on every node's output
 * and conditions, and on the raw input, gives names that fit and are not
 * empty.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "advise/advise_int.h"
#include "advise/cond.h"
#include "advise/plan.h"

static void check_col(void *ud, const char *name, bool bare) {
  (void)bare;
  size_t *n = ud;
  size_t len = strlen(name);
  if (len == 0 || len >= ADV_NAME) abort();
  (*n)++;
}

static void scan(const char *s, const char *alias) {
  size_t n = 0;
  qp__adv_scan_columns(s, alias, check_col, &n);
  qp__adv_scan_columns(s, NULL, check_col, &n);
}

static bool check_node(qp__pnode *n, void *ud) {
  (void)ud;
  for (size_t i = 0; i < n->nchildren; i++)
    if (n->children[i]->parent != n || n->children[i]->depth != n->depth + 1) abort();
  if (n->depth > QP__PLAN_MAX_DEPTH) abort();
  const char *alias = n->alias ? n->alias : n->relation;
  for (size_t i = 0; i < n->noutput; i++) scan(n->output[i], alias);
  scan(n->filter, alias);
  scan(n->index_cond, alias);
  scan(n->recheck_cond, alias);
  const char *texts[] = {n->filter, n->index_cond, n->join_filter, n->hash_cond, n->merge_cond};
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    if (texts[i] == NULL) continue;
    qp__cond conds[QP__COND_MAX];
    size_t nc = qp__cond_read(texts[i], conds, QP__COND_MAX);
    if (nc > QP__COND_MAX) abort();
    for (size_t k = 0; k < nc; k++)
      if (strlen(conds[k].column) >= sizeof conds[k].column || conds[k].op == QP__COND_NONE)
        abort();
  }
  return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *raw = malloc(size + 1);
  if (raw != NULL) {
    memcpy(raw, data, size);
    raw[size] = '\0';
    scan(raw, "t");
    free(raw);
  }
  qp__plan_tree *t;
  char err[256];
  err[0] = '\0';
  qp_status st = qp__plan_parse(NULL, (const char *)data, size, &t, err, sizeof err);
  if (st != QP_OK) {
    if (t != NULL || (st != QP_SYNTAX && st != QP_NOMEM) || err[0] == '\0') abort();
    return 0;
  }
  if (t->root == NULL || t->root->parent != NULL) abort();
  qp__plan_walk(t->root, check_node, NULL);
  qp_buf b;
  qp__buf_init(&b, NULL);
  qp__plan_dump(t, &b);
  if (strlen(qp__buf_cstr(&b)) != b.len) abort();
  qp__buf_free(&b);
  qp__plan_tree_free(t);
  return 0;
}
