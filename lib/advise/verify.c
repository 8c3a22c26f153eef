/*
 * Verification of candidates (docs/advise.md, "Verification"): each tried
 * as a HypoPG hypothetical index or a real index rolled back, and every
 * group judged by the cut its shape demands.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "advise/advise_int.h"

/* ---- verification -------------------------------------------------------- */

double qp__adv_shape_ratio(adv_shape s) {
  switch (s) {
  case ADV_SHAPE_TOPN: return 0.5;
  case ADV_SHAPE_JOIN: return 0.8;
  case ADV_SHAPE_FK: return 0.5;
  case ADV_SHAPE_EXPR: return 1.0;
  case ADV_SHAPE_SQLITE: return 0.5;
  default: return 0.7;
  }
}

/* A wider index must beat the best one-column one by this factor. */
#define ADV_WIDER_RATIO 0.9

typedef struct idx_use {
  const char *name;
  bool used, index_only;
} idx_use;

static bool find_use(qp__pnode *n, void *ud) {
  idx_use *u = ud;
  if (n->index_name != NULL && strcmp(n->index_name, u->name) == 0) {
    u->used = true;
    u->index_only |= n->node_type != NULL && strcmp(n->node_type, "Index Only Scan") == 0;
  }
  return true;
}

/* Whether the plan reads index `name`, and with an Index Only Scan. */
static void index_use(const qp__plan_tree *t, const char *name, adv_cand *c) {
  idx_use u = {name, false, false};
  qp__plan_walk(t->root, find_use, &u);
  c->used = u.used;
  c->index_only = u.index_only;
}

void qp__adv_create_sql(const adv_ctx *x, const adv_cand *c, const char *name, bool concurrently,
                       char *out, size_t cap) {
  char kt[700];
  qp__adv_keys_join(c, kt, sizeof kt);
  qp__adv_fmt(out, cap, "CREATE INDEX %s%s%sON %s (%s)%s%s%s%s%s",
              concurrently ? "CONCURRENTLY " : "", name ? name : "", name ? " " : "",
              x->tables[c->table].qual, kt, c->include[0] ? " INCLUDE (" : "", c->include,
              c->include[0] ? ")" : "", c->where[0] ? " WHERE " : "", c->where);
}

/* The plan the candidate is judged on: the statement's, or its own query
 * (fk), generic. */
/* A prepared statement keeps its generic plan: a new index (hypothetical
 * or real) is seen only by a statement prepared again. */
static bool reprepare(adv_ctx *x, const char *name, const char *sql, bool *flag) {
  if (*flag) {
    char d[96];
    snprintf(d, sizeof d, "DEALLOCATE %s", name);
    if (!qp__adv_qok(x, d, "deallocate")) return false;
    *flag = false;
  }
  int np = 0;
  if (!qp__adv_prepare(x, name, sql, &np)) return false;
  *flag = true;
  return true;
}

static qp__plan_tree *target_plan(adv_ctx *x, const adv_cand *c, bool analyze) {
  if (c->verify_sql[0]) {
    if (!reprepare(x, ADV_PREPARED_FK, c->verify_sql, &x->prepared_fk)) return NULL;
    return qp__adv_plan_of(x, NULL, ADV_PREPARED_FK, c->nkeys, false, "verify");
  }
  if (x->generic) {
    if (!reprepare(x, ADV_PREPARED, x->run, &x->prepared)) return NULL;
    return qp__adv_plan_of(x, NULL, ADV_PREPARED, x->nparams, false, "verify");
  }
  return qp__adv_plan_of(x, x->run, NULL, 0, analyze, "verify");
}

static double base_cost(adv_ctx *x, const adv_cand *c, double main_cost) {
  if (!c->verify_sql[0]) return main_cost;
  qp__plan_tree *t = target_plan(x, c, false);
  if (t == NULL) return -1;
  double cost = t->root->total_cost;
  qp__plan_tree_free(t);
  return cost;
}

void qp__adv_try_hypo(adv_ctx *x, adv_cand *c, double main_cost) {
  c->cost_before = base_cost(x, c, main_cost);
  if (c->cost_before < 0) return;
  char create[1024];
  qp__adv_create_sql(x, c, NULL, false, create, sizeof create);
  qp_param p = qp_param_text(create);
  qp_result *r = NULL;
  /* a candidate HypoPG refuses must not abort the statement's transaction
   * (the other candidates are tried in it) */
  if (!qp__adv_qok(x, "SAVEPOINT qp_advise_hypo", "savepoint")) return;
  if (qp__adv_q(x, "SELECT indexrelid, indexname, hypopg_relation_size(indexrelid) "
           "FROM hypopg_create_index($1)", &p, 1, &r) != QP_OK || qp_result_rows(r) == 0) {
    qp__adv_fmt(c->why, sizeof c->why, "HypoPG refused it: %s", qp_conn_errmsg(x->c));
    qp_result_free(r);
    if (x->st == QP_OK) (void)qp__adv_qok(x, "ROLLBACK TO SAVEPOINT qp_advise_hypo", "savepoint");
    return;
  }
  if (!qp__adv_qok(x, "RELEASE SAVEPOINT qp_advise_hypo", "savepoint")) {
    qp_result_free(r);
    return;
  }
  char oid[24], name[ADV_NAME];
  qp__adv_rstr(r, 0, 0, oid, sizeof oid);
  qp__adv_rstr(r, 0, 1, name, sizeof name);
  c->size_bytes = qp__adv_rint64(r, 0, 2);
  qp_result_free(r);
  qp__plan_tree *t = target_plan(x, c, false);
  if (t != NULL) {
    c->tested = true;
    c->cost_after = t->root->total_cost;
    index_use(t, name, c);
    qp__plan_tree_free(t);
  }
  qp_param d = qp_param_text(oid);
  (void)qp__adv_q(x, "SELECT hypopg_drop_index($1::oid)", &d, 1, NULL);
}

void qp__adv_try_real(adv_ctx *x, adv_cand *c, double main_cost) {
  if (!qp__adv_begin(x, true)) {
    qp__adv_rollback(x);
    x->st = QP_OK; /* a failed verification is a note, not an error */
    qp__adv_fmt(c->why, sizeof c->why, "could not start a transaction: %s", x->msg);
    return;
  }
  c->cost_before = base_cost(x, c, main_cost);
  char create[1024], analyze[400];
  qp__adv_create_sql(x, c, "qp_advise_candidate", false, create, sizeof create);
  qp__adv_fmt(analyze, sizeof analyze, "ANALYZE %s", x->tables[c->table].qual);
  if (c->cost_before >= 0 && qp__adv_qok(x, create, "create index") && qp__adv_qok(x, analyze, "analyze")) {
    bool an = x->analyze && !c->verify_sql[0];
    qp__plan_tree *t = target_plan(x, c, an);
    if (t != NULL) {
      c->tested = true;
      c->cost_after = t->root->total_cost;
      index_use(t, "qp_advise_candidate", c);
      c->ms_after = an ? t->execution_ms : -1;
      qp__plan_tree_free(t);
    }
    qp_result *r = NULL;
    if (qp__adv_q(x, "SELECT pg_relation_size('qp_advise_candidate')", NULL, 0, &r) == QP_OK &&
        qp_result_rows(r) > 0)
      c->size_bytes = qp__adv_rint64(r, 0, 0);
    qp_result_free(r);
  }
  if (!c->tested) qp__adv_fmt(c->why, sizeof c->why, "the real index could not be tried: %s", x->msg);
  qp__adv_rollback(x);
  if (x->st != QP_NOMEM) x->st = QP_OK;
}

static bool passes(const adv_cand *c) {
  if (!c->tested || !c->used) return false;
  double r = qp__adv_shape_ratio(c->shape);
  if (c->shape == ADV_SHAPE_EXPR) return c->cost_after < c->cost_before;
  return c->cost_after <= r * c->cost_before;
}

static void cand_fail_note(adv_ctx *x, const adv_cand *c, const char *how) {
  char kt[700];
  qp__adv_keys_join(c, kt, sizeof kt);
  const char *t = x->tables[c->table].qual;
  if (!c->tested)
    qp__adv_note(x, "an index on %s (%s) was not verified (%s): %s", t, kt, how,
                 c->why[0] ? c->why : "no plan");
  else if (!c->used)
    qp__adv_note(x, "an index on %s (%s) does not help: the planner does not use it (%s)", t, kt,
                 how);
  else
    qp__adv_note(x, "an index on %s (%s) does not help enough: cost %.0f -> %.0f (%s), the rule "
                 "asks for <= %.0f", t, kt, c->cost_before, c->cost_after, how,
                 c->cost_before * qp__adv_shape_ratio(c->shape));
}

/* Judges every group: the full candidate against its base cost and the
 * best one-column one; at most one per group is accepted. */
void qp__adv_judge(adv_ctx *x, const char *how) {
  for (int g = 1; g <= x->groups; g++) {
    adv_cand *full = NULL, *best1 = NULL;
    for (size_t i = 0; i < x->ncands; i++) {
      adv_cand *c = &x->cands[i];
      if (c->group != g) continue;
      if (full == NULL || c->nkeys > full->nkeys) full = c;
    }
    if (full == NULL) continue;
    for (size_t i = 0; i < x->ncands; i++) {
      adv_cand *c = &x->cands[i];
      if (c->group != g || c == full || c->nkeys != 1) continue;
      if (passes(c) && (best1 == NULL || c->cost_after < best1->cost_after)) best1 = c;
    }
    char kt[700];
    qp__adv_keys_join(full, kt, sizeof kt);
    if (passes(full) && (best1 == NULL || full->cost_after <= ADV_WIDER_RATIO * best1->cost_after)) {
      full->accepted = true;
      full->ratio = qp__adv_shape_ratio(full->shape);
      if (best1 != NULL) full->ratio = ADV_WIDER_RATIO * best1->cost_after / full->cost_before;
    } else if (best1 != NULL) {
      best1->accepted = true;
      best1->ratio = qp__adv_shape_ratio(best1->shape);
      if (passes(full))
        qp__adv_note(x, "the wider index on %s (%s) is not suggested: cost %.0f is not %.0f%% "
                     "below the narrower index's %.0f", x->tables[full->table].qual, kt,
                     full->cost_after, (1 - ADV_WIDER_RATIO) * 100, best1->cost_after);
      else
        cand_fail_note(x, full, how);
    } else {
      cand_fail_note(x, full, how);
    }
  }
}
