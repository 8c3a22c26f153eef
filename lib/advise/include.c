/*
 * INCLUDE columns (docs/advise.md, "INCLUDE columns"): the columns a
 * read-only statement reads from each table (one EXPLAIN VERBOSE: every
 * scan's Output and its own conditions), and for each accepted key-only
 * index an INCLUDE variant that would let the planner answer from the index
 * alone, proposed only when the extra columns are few and narrow and kept
 * only when the planner reads it with an Index Only Scan that costs at most
 * half of the key-only index.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "advise/advise_int.h"

/* At most this many INCLUDE columns, together at most this many bytes per
 * row (pg_stats avg_width): more makes the index a second copy of the table. */
#define ADV_INCLUDE_MAX_COLS 3
#define ADV_INCLUDE_MAX_WIDTH 64
/* The INCLUDE index must cost at most this share of the key-only one: the
 * heap visits it saves were at least half of the scan's work. */
#define ADV_INCLUDE_RATIO 0.5

typedef struct attrs {
  qp_result *r; /* attname, avg_width (or the type's fixed length), NULL unknown */
  adv_table *t;
  const char *alias; /* of the plan node being read */
} attrs;

static int attr_index(const attrs *a, const char *name) {
  for (size_t i = 0; i < qp_result_rows(a->r); i++)
    if (strcmp(qp_result_value(a->r, i, 0, NULL), name) == 0) return (int)i;
  return -1;
}

static void need_add(attrs *a, const char *name, bool bare, const char *alias) {
  adv_table *t = a->t;
  int k = attr_index(a, name);
  if (k < 0) {
    /* the alias alone is a whole-row reference (SELECT o FROM orders o) */
    if (bare && alias != NULL && strcmp(name, alias) == 0) t->need_all = true;
    return;
  }
  for (int i = 0; i < t->nneed; i++)
    if (strcmp(t->need[i], name) == 0) return;
  if (t->nneed >= ADV_MAX_NEED) {
    t->need_all = true;
    return;
  }
  qp__adv_fmt(t->need[t->nneed], ADV_NAME, "%s", name);
  const char *w = qp_result_value(a->r, (size_t)k, 1, NULL);
  t->need_width[t->nneed] = w != NULL ? (int)strtol(w, NULL, 10) : -1;
  t->nneed++;
}

/* One identifier at p (plain or "quoted") into out; returns its end. */
static const char *ident(const char *p, char *out, size_t cap) {
  size_t o = 0;
  if (*p == '"') {
    for (p++; *p; p++) {
      if (*p == '"') {
        if (p[1] != '"') { p++; break; }
        p++;
      }
      if (o + 1 < cap) out[o++] = *p;
    }
  } else {
    while (*p && (isalnum((unsigned char)*p) || *p == '_' || *p == '$')) {
      if (o + 1 < cap) out[o++] = *p;
      p++;
    }
  }
  out[o] = '\0';
  return p;
}

void qp__adv_scan_columns(const char *s, const char *alias, qp__adv_col_fn fn, void *ud) {
  if (s == NULL) return;
  bool after_cast = false;
  for (const char *p = s; *p;) {
    if (*p == '\'') {
      for (p++; *p; p++)
        if (*p == '\'') {
          if (p[1] != '\'') { p++; break; }
          p++;
        }
      continue;
    }
    if (p[0] == ':' && p[1] == ':') {
      after_cast = true;
      p += 2;
      continue;
    }
    if (*p == '"' || isalpha((unsigned char)*p) || *p == '_') {
      char w1[ADV_NAME], w2[ADV_NAME];
      p = ident(p, w1, sizeof w1);
      if (*p == '.' && p[1] == '*') { /* alias.* : the whole row */
        if (alias == NULL || strcmp(w1, alias) == 0) fn(ud, "*", false);
        p += 2;
        continue;
      }
      if (*p == '.' && (p[1] == '"' || isalpha((unsigned char)p[1]) || p[1] == '_')) {
        p = ident(p + 1, w2, sizeof w2);
        if (*p != '(' && !after_cast && alias != NULL && strcmp(w1, alias) == 0 && w2[0] != '\0')
          fn(ud, w2, false);
      } else if (*p != '(' && !after_cast && w1[0] != '\0') { /* "" names nothing */
        fn(ud, w1, true);
      }
      after_cast = false;
      continue;
    }
    if (!isspace((unsigned char)*p) && *p != '[' && *p != ']') after_cast = false;
    p++;
  }
}

/* A column the node's texts name ("*": its whole row). */
static void need_col(void *ud, const char *name, bool bare) {
  attrs *a = ud;
  if (strcmp(name, "*") == 0) a->t->need_all = true;
  else need_add(a, name, bare, a->alias);
}

static bool need_node(qp__pnode *n, void *ud) {
  attrs *a = ud;
  if (n->relation == NULL || strcmp(n->relation, a->t->relname) != 0) return true;
  a->alias = n->alias ? n->alias : n->relation;
  for (size_t i = 0; i < n->noutput; i++) qp__adv_scan_columns(n->output[i], a->alias, need_col, a);
  qp__adv_scan_columns(n->filter, a->alias, need_col, a);
  qp__adv_scan_columns(n->index_cond, a->alias, need_col, a);
  qp__adv_scan_columns(n->recheck_cond, a->alias, need_col, a);
  return true;
}

void qp__adv_need_columns(adv_ctx *x) {
  char exec[256];
  const char *sql = x->run;
  if (x->generic) {
    qp__adv_exec_text(ADV_PREPARED, x->nparams, exec, sizeof exec);
    sql = exec;
  }
  qp_buf b;
  qp__buf_init(&b, &x->a->hooks);
  qp__buf_printf(&b, "EXPLAIN (VERBOSE, FORMAT JSON) %s", sql);
  if (b.failed) {
    qp__buf_free(&b);
    x->st = QP_NOMEM;
    qp__adv_fmt(x->msg, sizeof x->msg, "out of memory");
    return;
  }
  qp_result *r = NULL;
  qp_status st = qp__adv_q(x, qp__buf_cstr(&b), NULL, 0, &r);
  qp__buf_free(&b);
  if (st != QP_OK) {
    qp__adv_fail_conn(x, "explain verbose");
    return;
  }
  size_t len = 0;
  const char *json = qp_result_rows(r) > 0 ? qp_result_value(r, 0, 0, &len) : NULL;
  qp__plan_tree *t = NULL;
  char err[256];
  st = json ? qp__plan_parse(&x->a->hooks, json, len, &t, err, sizeof err) : QP_SYNTAX;
  qp_result_free(r);
  if (st == QP_NOMEM) {
    x->st = QP_NOMEM;
    qp__adv_fmt(x->msg, sizeof x->msg, "out of memory");
  }
  if (st != QP_OK) return; /* columns unknown: no INCLUDE */
  for (size_t ti = 0; ti < x->ntables && x->st == QP_OK; ti++) {
    adv_table *tb = &x->tables[ti];
    bool has = false;
    for (size_t i = 0; i < x->ncands; i++) has |= x->cands[i].table == (int)ti;
    if (!tb->found || !has) continue;
    qp_param p = qp_param_text(tb->oid);
    attrs a = {NULL, tb, NULL};
    /* the schema and name first: pg_stats is a view, read fast only with
     * constants (100 ms joined to pg_class, 8 ms like this) */
    qp_result *rel = NULL;
    if (qp__adv_q(x, "SELECT n.nspname, c.relname, CASE WHEN c.relpages > 0 THEN "
                  "c.relallvisible::float8 / c.relpages END FROM pg_class c JOIN pg_namespace n "
                  "ON n.oid = c.relnamespace WHERE c.oid = $1::oid", &p, 1, &rel) != QP_OK ||
        qp_result_rows(rel) == 0) {
      qp_result_free(rel);
      qp__adv_fail_conn(x, "columns");
      break;
    }
    qp_param q[3] = {p, qp_param_text(qp_result_value(rel, 0, 0, NULL)),
                     qp_param_text(qp_result_value(rel, 0, 1, NULL))};
    qp_status qs = qp__adv_q(x,
                  "SELECT a.attname, coalesce(s.avg_width, nullif(a.attlen, -1)) "
                  "FROM pg_attribute a LEFT JOIN (SELECT attname, avg_width FROM pg_stats "
                  "WHERE schemaname = $2 AND tablename = $3) s ON s.attname = a.attname "
                  "WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped "
                  "ORDER BY a.attnum", q, 3, &a.r);
    const char *vis = qp_result_value(rel, 0, 2, NULL);
    tb->all_visible = vis != NULL ? strtod(vis, NULL) : -1;
    qp_result_free(rel);
    if (qs != QP_OK) {
      qp__adv_fail_conn(x, "columns");
      break;
    }
    tb->ncolumns = (int)qp_result_rows(a.r);
    qp__plan_walk(t->root, need_node, &a);
    /* in attribute order, whatever order the plan named them in */
    char need[ADV_MAX_NEED][ADV_NAME];
    int width[ADV_MAX_NEED], n = 0;
    for (size_t i = 0; i < qp_result_rows(a.r); i++)
      for (int k = 0; k < tb->nneed; k++)
        if (strcmp(tb->need[k], qp_result_value(a.r, i, 0, NULL)) == 0) {
          memcpy(need[n], tb->need[k], ADV_NAME);
          width[n++] = tb->need_width[k];
        }
    memcpy(tb->need, need, sizeof need);
    memcpy(tb->need_width, width, sizeof width);
    tb->need_known = true;
    qp_result_free(a.r);
  }
  qp__plan_tree_free(t);
}

static bool eligible(const adv_cand *c) {
  return c->accepted && c->base < 0 && !c->expr && !c->verify_sql[0] &&
         (strcmp(c->rule, "seq_scan_filter") == 0 || strcmp(c->rule, "top_n") == 0 ||
          strcmp(c->rule, "join_key") == 0 || strcmp(c->rule, "like_prefix") == 0);
}

void qp__adv_include(adv_ctx *x, void (*try)(adv_ctx *x, adv_cand *c, double main_cost),
                     double main_cost) {
  if (x->write) return;
  size_t n0 = x->ncands;
  for (size_t i = 0; i < n0 && x->st == QP_OK; i++) {
    adv_cand *c = &x->cands[i];
    if (!eligible(c)) continue;
    const adv_table *t = &x->tables[c->table];
    if (!t->need_known) continue;
    char kt[700];
    qp__adv_keys_join(c, kt, sizeof kt);
    /* what it reads beyond the keys */
    char inc[256] = "", names[512] = "";
    size_t io = 0, no = 0;
    int extra = 0, width = 0;
    bool unknown_width = false;
    for (int k = 0; k < t->nneed; k++) {
      char lower[ADV_NAME], key[ADV_KEY];
      size_t o = 0;
      for (const char *p = t->need[k]; *p && o + 1 < sizeof lower; p++)
        lower[o++] = (char)tolower((unsigned char)*p);
      lower[o] = '\0';
      bool is_key = false;
      for (int j = 0; j < c->nkeys && !is_key; j++) {
        qp__adv_key_norm(c->keys[j], key, sizeof key);
        is_key = strcmp(key, lower) == 0;
      }
      if (is_key) continue;
      char q[ADV_NAME + 4];
      qp__adv_ident(t->need[k], q, sizeof q);
      extra++;
      if (t->need_width[k] < 0) unknown_width = true;
      else width += t->need_width[k];
      if (io < sizeof inc) io += qp__adv_fmt(inc + io, sizeof inc - io, "%s%s", io ? ", " : "", q);
      if (no < sizeof names) no += qp__adv_fmt(names + no, sizeof names - no, "%s%s", no ? ", " : "", q);
    }
    if (t->need_all || (t->nneed >= t->ncolumns && extra > 0)) {
      qp__adv_note(x, "no INCLUDE columns for the index on %s (%s): the statement reads every "
                   "column of it (the index would be a second copy of the table)", t->qual, kt);
      continue;
    }
    if (extra == 0) continue; /* the keys already cover what it reads */
    if (extra > ADV_INCLUDE_MAX_COLS) {
      qp__adv_note(x, "no INCLUDE columns for the index on %s (%s): the statement reads %d more "
                   "columns of it (%s), more than %d", t->qual, kt, extra, names,
                   ADV_INCLUDE_MAX_COLS);
      continue;
    }
    if (unknown_width || width > ADV_INCLUDE_MAX_WIDTH) {
      if (unknown_width)
        qp__adv_note(x, "no INCLUDE (%s) for the index on %s (%s): the width of the columns is "
                     "unknown (ANALYZE %s)", inc, t->qual, kt, t->qual);
      else
        qp__adv_note(x, "no INCLUDE (%s) for the index on %s (%s): %d bytes per row (pg_stats "
                     "avg_width), more than %d", inc, t->qual, kt, width, ADV_INCLUDE_MAX_WIDTH);
      continue;
    }
    if (x->ncands >= ADV_MAX_CANDS) break;
    adv_cand *v = &x->cands[x->ncands++];
    *v = *c;
    v->base = (int)i;
    v->accepted = v->tested = v->used = v->index_only = false;
    v->cost_before = v->cost_after = -1;
    v->size_bytes = -1;
    v->ms_after = -1;
    v->why[0] = '\0';
    qp__adv_fmt(v->include, sizeof v->include, "%s", inc);
    try(x, v, main_cost);
    c = &x->cands[i];
    if (x->st != QP_OK) return;
    double limit = ADV_INCLUDE_RATIO * c->cost_after;
    if (v->tested && v->used && v->index_only && v->cost_after <= limit) {
      c->accepted = false;
      v->accepted = true;
      v->ratio = v->cost_before > 0 ? limit / v->cost_before : ADV_INCLUDE_RATIO;
      size_t rl = strlen(v->reason);
      qp__adv_fmt(v->reason + rl, sizeof v->reason - rl,
                  "; with INCLUDE (%s) the planner answers from the index alone (Index Only "
                  "Scan): cost %.0f instead of %.0f", inc, v->cost_after, c->cost_after);
    } else if (!v->tested) {
      qp__adv_note(x, "INCLUDE (%s) on %s (%s) was not verified: %s", inc, t->qual, kt,
                   v->why[0] ? v->why : "no plan");
    } else if (!v->used || !v->index_only) {
      char vis[96] = "";
      if (t->all_visible >= 0)
        qp__adv_fmt(vis, sizeof vis, ": %.0f%% of its pages are all-visible (VACUUM sets the "
                    "visibility map)", t->all_visible * 100);
      qp__adv_note(x, "INCLUDE (%s) on %s (%s) does not pay: the planner does not answer from "
                   "the index alone%s", inc, t->qual, kt, vis);
    } else {
      qp__adv_note(x, "INCLUDE (%s) on %s (%s) does not pay enough: cost %.1f with it, %.1f "
                   "without; the rule asks for <= %.1f", inc, t->qual, kt, v->cost_after,
                   c->cost_after, limit);
    }
  }
}
