/*
 * The advisor's rules: a plan tree into candidate indexes, findings that are
 * not indexes, and notes (docs/advise.md lists each rule with its test).
 */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "advise/advise_int.h"

/* A filter that keeps more than this share of the rows it reads is not
 * worth an index (an index scan then reads most pages anyway). */
#define ADV_MAX_MATCH 0.30
/* An equality constant that keeps at most this share of the rows is rare:
 * top-N gets a partial index over its rows as an alternative. */
#define ADV_RARE 0.01
/* plan rows and actual rows this far apart is a misestimate */
#define ADV_MISESTIMATE 10.0

typedef struct alias_map {
  struct {
    const char *alias, *relation;
    qp__pnode *scan;
  } v[64];
  size_t n;
} alias_map;

static bool collect_alias(qp__pnode *n, void *ud) {
  alias_map *m = ud;
  if (n->relation != NULL && m->n < QP_ARRAY_LEN(m->v)) {
    m->v[m->n].alias = n->alias ? n->alias : n->relation;
    m->v[m->n].relation = n->relation;
    m->v[m->n].scan = n;
    m->n++;
  }
  return true;
}

static const char *alias_rel(const alias_map *m, const char *alias, qp__pnode **scan) {
  for (size_t i = 0; i < m->n; i++)
    if (strcmp(m->v[i].alias, alias) == 0) {
      if (scan) *scan = m->v[i].scan;
      return m->v[i].relation;
    }
  return NULL;
}

static bool is_seq_scan(const qp__pnode *n) {
  return n->node_type != NULL && strcmp(n->node_type, "Seq Scan") == 0 && n->relation != NULL;
}

static double loops(const qp__pnode *n) { return n->actual_loops > 0 ? n->actual_loops : 1; }

/* Share of the rows a scan read that its filter kept; -1 when unknown. */
static double match_share(const qp__pnode *n, const adv_table *t, bool analyzed) {
  if (analyzed && n->actual_rows >= 0 && n->rows_removed_filter >= 0) {
    double kept = n->actual_rows, all = n->actual_rows + n->rows_removed_filter;
    return all > 0 ? kept / all : -1;
  }
  if (t->rows > 0) return n->plan_rows / (double)t->rows;
  return -1;
}

/* The Sort under a Limit that n feeds (through Gather/Incremental nodes). */
static qp__pnode *topn_sort(qp__pnode *n) {
  for (qp__pnode *p = n->parent; p != NULL; p = p->parent) {
    if (p->node_type == NULL) return NULL;
    if (strcmp(p->node_type, "Sort") == 0 || strcmp(p->node_type, "Incremental Sort") == 0)
      return p->under_limit ? p : NULL;
    if (strcmp(p->node_type, "Gather") != 0 && strcmp(p->node_type, "Gather Merge") != 0)
      return NULL;
  }
  return NULL;
}

/* A sort key "t.created_at DESC" or "created_at" as an index key of the
 * scan's table ("created_at DESC"); false for expressions and other tables. */
static bool sort_key(const char *key, const char *alias, char *out, size_t cap) {
  char col[ADV_KEY];
  size_t n = 0;
  const char *p = key;
  const char *dot = NULL;
  for (const char *q = p; *q && *q != ' '; q++)
    if (*q == '.') dot = q;
  if (dot != NULL) {
    size_t ql = (size_t)(dot - p);
    if (alias == NULL || strlen(alias) != ql || strncmp(p, alias, ql) != 0) return false;
    p = dot + 1;
  }
  while (*p && (isalnum((unsigned char)*p) || *p == '_') && n + 1 < sizeof col) col[n++] = *p++;
  col[n] = '\0';
  if (n == 0) return false;
  bool desc = false;
  if (*p == ' ') {
    if (strncmp(p, " DESC", 5) == 0) desc = true;
    else if (strncmp(p, " ASC", 4) != 0 && strncmp(p, " NULLS", 6) != 0) return false;
  } else if (*p != '\0') {
    return false;
  }
  char q[ADV_NAME];
  qp__adv_ident(col, q, sizeof q);
  qp__adv_fmt(out, cap, "%s%s", q, desc ? " DESC" : "");
  return true;
}

/* Whether a predicate as printed holds a parameter ($1) outside quotes. */
static bool has_param(const char *s) {
  for (const char *p = s; *p; p++) {
    if (*p == '\'') {
      for (p++; *p && *p != '\''; p++) {
      }
      if (*p == '\0') break;
    } else if (p[0] == '$' && isdigit((unsigned char)p[1])) {
      return true;
    }
  }
  return false;
}

void qp__adv_add_group(adv_ctx *x, const adv_cand *c) {
  qp__adv_add_cand(x, c);
  if (c->nkeys > 1) {
    /* the one-column alternatives the wider one is judged against */
    for (int i = 0; i < c->nkeys; i++) {
      adv_cand s = *c;
      s.nkeys = 1;
      qp__adv_fmt(s.keys[0], ADV_KEY, "%s", c->keys[i]);
      for (int k = 1; k < ADV_MAX_KEYS; k++) s.keys[k][0] = '\0';
      qp__adv_add_cand(x, &s);
    }
  }
}

/* Adds the group "full key list, and each of its columns alone". */
static void add_group(adv_ctx *x, int t, char keys[][ADV_KEY], int nkeys, const char *rule,
                      adv_shape shape, const char *reason, const char *opclass) {
  if (nkeys <= 0) return;
  int g = qp__adv_next_group(x);
  adv_cand c;
  memset(&c, 0, sizeof c);
  c.table = t;
  c.group = g;
  c.shape = shape;
  c.ms_before = -1;
  c.expr = shape == ADV_SHAPE_EXPR;
  qp__adv_fmt(c.rule, sizeof c.rule, "%s", rule);
  qp__adv_fmt(c.reason, sizeof c.reason, "%s", reason);
  qp__adv_fmt(c.opclass, sizeof c.opclass, "%s", opclass ? opclass : "");
  c.nkeys = nkeys > ADV_MAX_KEYS ? ADV_MAX_KEYS : nkeys;
  for (int i = 0; i < c.nkeys; i++) qp__adv_fmt(c.keys[i], ADV_KEY, "%s", keys[i]);
  qp__adv_add_group(x, &c);
}

static void keys_text(char keys[][ADV_KEY], int n, char *out, size_t cap) {
  size_t o = 0;
  out[0] = '\0';
  for (int i = 0; i < n && o < cap; i++)
    o += qp__adv_fmt(out + o, cap - o, "%s%s", i ? ", " : "", keys[i]);
}

/* Rule: a Seq Scan with a filter (selective), or feeding a top-N sort. */
static void rule_scan(adv_ctx *x, qp__pnode *n, bool analyzed) {
  int t = qp__adv_table(x, n->relation);
  if (t < 0) return;
  const adv_table *tb = qp__adv_table_at(x, t);
  qp__pnode *sort = topn_sort(n);
  if (n->filter == NULL && sort == NULL) return;
  if (tb->rows >= 0 && tb->rows < qp__adv_min_rows(x)) {
    qp__adv_note(x, "table %s has %lld rows (fewer than %lld): a scan of it is cheap, no index "
                 "suggested", tb->qual, (long long)tb->rows, (long long)qp__adv_min_rows(x));
    return;
  }
  qp__cond conds[QP__COND_MAX];
  size_t nc = n->filter ? qp__cond_read(n->filter, conds, QP__COND_MAX) : 0;
  char eq[ADV_MAX_KEYS][ADV_KEY], range[ADV_KEY] = "", like[ADV_KEY] = "";
  char eq_text[256] = ""; /* the equality predicates as printed, for a partial index */
  size_t etl = 0;
  int neq = 0;
  const qp__cond *expr = NULL;
  char names[512] = "";
  size_t nl = 0;
  for (size_t i = 0; i < nc; i++) {
    const qp__cond *c = &conds[i];
    if (c->rhs_column[0]) continue; /* a join condition inside the filter */
    if (nl < sizeof names)
      nl += qp__adv_fmt(names + nl, sizeof names - nl, "%s%s", nl ? ", " : "",
                             c->expr[0] ? c->expr : c->column);
    if (c->expr[0]) {
      if (expr == NULL && (c->op == QP__COND_EQ || c->op == QP__COND_RANGE)) expr = c;
      continue;
    }
    char q[ADV_NAME];
    qp__adv_ident(c->column, q, sizeof q);
    if (c->op == QP__COND_EQ || c->op == QP__COND_BOOL || c->op == QP__COND_IS_NULL) {
      bool dup = false;
      for (int k = 0; k < neq; k++) dup |= strcmp(eq[k], q) == 0;
      if (!dup && neq < ADV_MAX_KEYS) {
        qp__adv_fmt(eq[neq++], ADV_KEY, "%s", q);
        etl += qp__adv_fmt(eq_text + etl, sizeof eq_text - etl, "%s%s", etl ? " AND " : "",
                           c->text);
      }
    } else if (c->op == QP__COND_RANGE && range[0] == '\0') {
      qp__adv_fmt(range, sizeof range, "%s", q);
    } else if (c->op == QP__COND_LIKE_PREFIX && like[0] == '\0') {
      qp__adv_fmt(like, sizeof like, "%s", c->column);
    }
  }
  double share = match_share(n, tb, analyzed);
  char reason[512];
  /* Top-N: equality columns, then the sort keys, read in index order and
   * stopped at the LIMIT: useful even when the filter keeps many rows. */
  if (sort != NULL && sort->nsort_keys > 0) {
    char keys[ADV_MAX_KEYS][ADV_KEY];
    int nk = 0;
    for (int k = 0; k < neq && nk < ADV_MAX_KEYS; k++) qp__adv_fmt(keys[nk++], ADV_KEY, "%s", eq[k]);
    bool ok = true;
    int nsk = 0;
    for (size_t k = 0; k < sort->nsort_keys && ok; k++) {
      if (nk >= ADV_MAX_KEYS) { ok = false; break; }
      ok = sort_key(sort->sort_keys[k], n->alias, keys[nk], ADV_KEY);
      if (ok) nk++, nsk++;
    }
    if (ok && nsk > 0 && nk <= ADV_MAX_KEYS) {
      qp__adv_fmt(reason, sizeof reason,
               "ORDER BY ... LIMIT on %s sorts every row the %s keeps (%.0f rows%s) to return "
               "the first few; an index in the sort order reads only those",
               tb->qual, n->filter ? "filter" : "scan",
               analyzed && n->actual_rows >= 0 ? n->actual_rows * loops(n) : n->plan_rows,
               analyzed ? "" : ", estimated");
      add_group(x, t, keys, nk, "top_n", ADV_SHAPE_TOPN, reason, NULL);
      /* not on a generic plan: "status = $1" is no predicate an index can have */
      if (neq > 0 && share >= 0 && share <= ADV_RARE && etl + 1 < sizeof eq_text &&
          !has_param(eq_text)) {
        /* a rare constant: the sort keys over its rows only, as another
         * one-column-or-so alternative of the same group */
        adv_cand c;
        memset(&c, 0, sizeof c);
        c.table = t;
        c.group = x->groups;
        c.shape = ADV_SHAPE_TOPN;
        c.ms_before = -1;
        c.nkeys = nk - neq;
        for (int k = 0; k < c.nkeys; k++) qp__adv_fmt(c.keys[k], ADV_KEY, "%s", keys[neq + k]);
        qp__adv_fmt(c.where, sizeof c.where, "%s", eq_text);
        qp__adv_fmt(c.rule, sizeof c.rule, "top_n");
        qp__adv_fmt(c.reason, sizeof c.reason,
                    "%s; %s keeps %.2g%% of the rows: a partial index holds only those", reason,
                    eq_text, share * 100);
        qp__adv_add_cand(x, &c);
      }
      return;
    }
  }
  if (nc == 0) return;
  if (share > ADV_MAX_MATCH) {
    qp__adv_note(x, "an index on %s (%s) does not help: %.0f%% of rows match the filter", tb->qual,
                 names, share * 100);
    return;
  }
  char pct[64] = "";
  if (share >= 0) qp__adv_fmt(pct, sizeof pct, "%.2g%% of", share * 100);
  if (neq > 0 || range[0] || like[0]) {
    char keys[ADV_MAX_KEYS][ADV_KEY];
    int nk = 0;
    for (int k = 0; k < neq; k++) qp__adv_fmt(keys[nk++], ADV_KEY, "%s", eq[k]);
    const char *rule = "seq_scan_filter";
    const char *opc = NULL;
    if (nk < ADV_MAX_KEYS && range[0]) {
      qp__adv_fmt(keys[nk++], ADV_KEY, "%s", range);
    } else if (nk < ADV_MAX_KEYS && like[0]) {
      char q[ADV_NAME];
      qp__adv_ident(like, q, sizeof q);
      int cc = qp__adv_column_c_collation(x, t, like);
      if (cc == 1) {
        qp__adv_fmt(keys[nk++], ADV_KEY, "%s", q);
        qp__adv_note(x, "%s.%s compares under the C collation: a plain btree serves LIKE "
                     "'prefix%%'", tb->qual, like);
      } else {
        qp__adv_fmt(keys[nk++], ADV_KEY, "%s text_pattern_ops", q);
        opc = "text_pattern_ops";
      }
      rule = "like_prefix";
    }
    qp__adv_fmt(reason, sizeof reason,
             "Seq Scan on %s keeps %s %.0f rows read%s with filter %s", tb->qual,
             pct[0] ? pct : "few of", analyzed ? (n->actual_rows + n->rows_removed_filter) * loops(n)
                                               : (double)tb->rows,
             analyzed ? "" : " (estimated)", n->filter);
    add_group(x, t, keys, nk, rule, opc ? ADV_SHAPE_FILTER : ADV_SHAPE_FILTER, reason, opc);
  }
  if (expr != NULL && neq == 0) {
    char keys[1][ADV_KEY];
    qp__adv_fmt(keys[0], ADV_KEY, "(%s)", expr->expr);
    qp__adv_fmt(reason, sizeof reason,
             "Seq Scan on %s evaluates %s on every row; only an index on the expression can "
             "serve it", tb->qual, expr->expr);
    add_group(x, t, keys, 1, "expression", ADV_SHAPE_EXPR, reason, NULL);
  }
}

/* Rule: a join whose key has no index on a side that is scanned whole. */
static void rule_join(adv_ctx *x, qp__pnode *n, const alias_map *m) {
  const char *cond = n->hash_cond ? n->hash_cond : n->merge_cond ? n->merge_cond : n->join_filter;
  if (cond == NULL) return;
  bool nested = n->node_type && strcmp(n->node_type, "Nested Loop") == 0;
  qp__cond conds[QP__COND_MAX];
  size_t nc = qp__cond_read(cond, conds, QP__COND_MAX);
  for (size_t i = 0; i < nc; i++) {
    const qp__cond *c = &conds[i];
    if (!c->rhs_column[0] || c->op != QP__COND_EQ) continue;
    struct {
      const char *qual, *col;
    } side[2] = {{c->qual, c->column}, {c->rhs_qual, c->rhs_column}};
    for (int s = 0; s < 2; s++) {
      qp__pnode *scan = NULL;
      const char *rel = side[s].qual[0] ? alias_rel(m, side[s].qual, &scan) : NULL;
      if (rel == NULL || scan == NULL || !is_seq_scan(scan)) continue;
      if (nested && loops(scan) <= 1) continue;
      int t = qp__adv_table(x, rel);
      if (t < 0) continue;
      const adv_table *tb = qp__adv_table_at(x, t);
      if (tb->rows >= 0 && tb->rows < qp__adv_min_rows(x)) continue;
      char keys[1][ADV_KEY], reason[512];
      qp__adv_ident(side[s].col, keys[0], ADV_KEY);
      qp__adv_fmt(reason, sizeof reason,
               "%s joins on %s.%s, which has no index: %s is read whole%s", n->node_type,
               tb->qual, side[s].col, tb->qual,
               nested ? " once per outer row" : " to build or probe the join");
      add_group(x, t, keys, 1, "join_key", ADV_SHAPE_JOIN, reason, NULL);
    }
  }
}

/* Findings that are not indexes. */
static void findings(adv_ctx *x, qp__pnode *n, bool analyzed) {
  adv_finding f;
  if (n->sort_space_type && strcmp(n->sort_space_type, "Disk") == 0) {
    memset(&f, 0, sizeof f);
    qp__adv_fmt(f.rule, sizeof f.rule, "sort_spill");
    qp__adv_fmt(f.node, sizeof f.node, "%s", n->node_type ? n->node_type : "Sort");
    qp__adv_fmt(f.message, sizeof f.message, "the sort spilled %.0f kB to disk (%s)",
             n->sort_space_kb, n->sort_method ? n->sort_method : "external");
    qp__adv_fmt(f.action, sizeof f.action,
             "not an index: raise work_mem above %.0f MB for this query (SET LOCAL work_mem)",
             ceil(n->sort_space_kb * 3 / 1024.0));
    qp__adv_finding(x, &f);
  }
  if (n->node_type && strcmp(n->node_type, "Hash") == 0 && n->hash_batches > 1) {
    memset(&f, 0, sizeof f);
    qp__adv_fmt(f.rule, sizeof f.rule, "hash_spill");
    qp__adv_fmt(f.node, sizeof f.node, "Hash");
    qp__adv_fmt(f.message, sizeof f.message, "the hash table was split into %.0f batches on disk",
             n->hash_batches);
    qp__adv_fmt(f.action, sizeof f.action, "not an index: raise work_mem (or hash_mem_multiplier) "
             "until Hash Batches is 1");
    qp__adv_finding(x, &f);
  }
  if (n->node_type && strcmp(n->node_type, "Index Only Scan") == 0 && n->heap_fetches > 0 &&
      n->actual_rows >= 0 && n->heap_fetches > 0.1 * n->actual_rows * loops(n) &&
      n->heap_fetches >= 100) {
    int t = n->relation ? qp__adv_table(x, n->relation) : -1;
    memset(&f, 0, sizeof f);
    qp__adv_fmt(f.rule, sizeof f.rule, "heap_fetches");
    if (t >= 0) qp__adv_fmt(f.table, sizeof f.table, "%s", qp__adv_table_at(x, t)->qual);
    qp__adv_fmt(f.node, sizeof f.node, "Index Only Scan using %s", n->index_name ? n->index_name : "?");
    qp__adv_fmt(f.message, sizeof f.message,
             "the index-only scan fetched %.0f rows from the table (the visibility map is stale)",
             n->heap_fetches);
    qp__adv_fmt(f.action, sizeof f.action, "not an index: VACUUM %s", f.table[0] ? f.table : "the table");
    qp__adv_finding(x, &f);
  }
  if (analyzed && n->relation && n->actual_rows >= 0 && !n->under_limit &&
      n->node_type && strstr(n->node_type, "Scan") != NULL) {
    double est = n->plan_rows * loops(n), act = n->actual_rows * loops(n);
    double hi = est > act ? est : act, lo = est > act ? act : est;
    if (hi >= 1000 && hi >= ADV_MISESTIMATE * (lo < 1 ? 1 : lo)) {
      int t = qp__adv_table(x, n->relation);
      qp__cond conds[QP__COND_MAX];
      size_t nc = n->filter ? qp__cond_read(n->filter, conds, QP__COND_MAX) : 0;
      memset(&f, 0, sizeof f);
      qp__adv_fmt(f.rule, sizeof f.rule, "misestimate");
      if (t >= 0) qp__adv_fmt(f.table, sizeof f.table, "%s", qp__adv_table_at(x, t)->qual);
      qp__adv_fmt(f.node, sizeof f.node, "%s on %s", n->node_type, n->relation);
      qp__adv_fmt(f.message, sizeof f.message,
               "the planner expected %.0f rows and got %.0f: plans above it rest on a wrong count",
               est, act);
      if (nc >= 2)
        qp__adv_fmt(f.action, sizeof f.action,
                 "not an index: ANALYZE %s; if it stays wrong the filtered columns are "
                 "correlated: CREATE STATISTICS ON (%s, %s) FROM %s",
                 f.table[0] ? f.table : n->relation, conds[0].column, conds[1].column,
                 f.table[0] ? f.table : n->relation);
      else
        qp__adv_fmt(f.action, sizeof f.action, "not an index: ANALYZE %s",
                 f.table[0] ? f.table : n->relation);
      qp__adv_finding(x, &f);
    }
  }
}

typedef struct walk_ctx {
  adv_ctx *x;
  const alias_map *m;
  bool analyzed;
} walk_ctx;

static bool visit(qp__pnode *n, void *ud) {
  walk_ctx *w = ud;
  findings(w->x, n, w->analyzed);
  if (is_seq_scan(n)) rule_scan(w->x, n, w->analyzed);
  if (n->hash_cond || n->merge_cond || (n->join_filter && n->join_type)) rule_join(w->x, n, w->m);
  return true;
}

/* Rule: a foreign-key trigger (RI_ConstraintTrigger) that scans the
 * referencing table for every row deleted or updated in the parent. */
static void rule_fk(adv_ctx *x, const qp__plan_tree *t) {
  for (size_t i = 0; i < t->ntriggers; i++) {
    const qp__ptrigger *tr = &t->triggers[i];
    if (tr->constraint_name == NULL || tr->name == NULL ||
        strncmp(tr->name, "RI_ConstraintTrigger_a_", 23) != 0)
      continue;
    char child[ADV_NAME];
    char cols[ADV_MAX_KEYS][ADV_KEY];
    int ncols = 0;
    if (!qp__adv_fk(x, tr->constraint_name, child, sizeof child, cols, &ncols)) continue;
    int ti = qp__adv_table(x, child);
    if (ti < 0) continue;
    const adv_table *tb = qp__adv_table_at(x, ti);
    adv_cand c;
    memset(&c, 0, sizeof c);
    c.table = ti;
    c.group = qp__adv_next_group(x);
    c.shape = ADV_SHAPE_FK;
    c.nkeys = ncols;
    c.ms_before = tr->time_ms;
    qp__adv_fmt(c.rule, sizeof c.rule, "fk_trigger");
    size_t o = qp__adv_fmt(c.verify_sql, sizeof c.verify_sql, "SELECT 1 FROM ONLY %s x WHERE ",
                                tb->qual);
    for (int k = 0; k < ncols; k++) {
      char q[ADV_NAME];
      qp__adv_ident(cols[k], q, sizeof q);
      qp__adv_fmt(c.keys[k], ADV_KEY, "%s", q);
      if (o < sizeof c.verify_sql)
        o += qp__adv_fmt(c.verify_sql + o, sizeof c.verify_sql - o, "%sx.%s = $%d",
                              k ? " AND " : "", q, k + 1);
    }
    char kt[256];
    keys_text(c.keys, ncols, kt, sizeof kt);
    qp__adv_fmt(c.reason, sizeof c.reason,
             "the foreign key %s of %s (%s) has no index: its trigger ran %.0f times in %.1f ms, "
             "each time scanning %s for referencing rows",
             tr->constraint_name, tb->qual, kt, tr->calls, tr->time_ms, tb->qual);
    qp__adv_add_cand(x, &c);
  }
}

void qp__adv_rules(adv_ctx *x, const qp__plan_tree *t) {
  alias_map m;
  m.n = 0;
  qp__plan_walk(t->root, collect_alias, &m);
  walk_ctx w = {x, &m, t->analyzed};
  qp__plan_walk(t->root, visit, &w);
  rule_fk(x, t);
}

size_t qp__adv_fmt(char *dst, size_t cap, const char *fmt, ...) {
  if (cap == 0) return 0;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(dst, cap, fmt, ap);
  va_end(ap);
  if (n < 0) {
    dst[0] = '\0';
    return 0;
  }
  return (size_t)n < cap ? (size_t)n : cap - 1;
}

void qp__adv_ident(const char *name, char *out, size_t cap) {
  bool plain = name[0] != '\0' && (islower((unsigned char)name[0]) || name[0] == '_');
  for (const char *p = name; *p && plain; p++)
    plain = islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_' || *p == '$';
  if (plain) {
    qp__adv_fmt(out, cap, "%s", name);
    return;
  }
  size_t o = 0;
  if (cap < 3) {
    if (cap) out[0] = '\0';
    return;
  }
  out[o++] = '"';
  for (const char *p = name; *p && o + 3 < cap; p++) {
    if (*p == '"') out[o++] = '"';
    out[o++] = *p;
  }
  out[o++] = '"';
  out[o] = '\0';
}
