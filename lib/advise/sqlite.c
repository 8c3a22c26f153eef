/*
 * The advisor on SQLite (docs/advise.md, "SQLite"): never on the live file.
 * The lease's main database is copied with VACUUM INTO into a private
 * temporary directory and everything happens on the copy, through a pool
 * of one connection to it (the SQLite backend's explain: EXPLAIN QUERY PLAN
 * and the counters of a run inside a savepoint that is rolled back). The
 * values bound to placeholders are read in sqlite_values.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <sqlite3.h>

#include "advise/sqlite_int.h"

/* The conditions of the statement's top level (its WHERE clause and the
 * ON clauses of its joins, joined by AND), re-spaced token by token so
 * that cond.c reads them ("a=5" -> "a = 5", LIKE -> ~~, ? -> $0). */
size_t qp__adv_where(const char *sql, size_t len, char *out, size_t cap) {
  if (cap == 0) return 0;
  out[0] = '\0';
  len = strnlen(sql, len); /* the text ends at a NUL byte */
  qp_tok t;
  size_t pos = 0, o = 0;
  int depth = 0;
  bool in_cond = false;
  qp_tok_type prev = QP_T_EOF;
  static const char *const k_end[] = {"GROUP", "ORDER", "LIMIT", "HAVING", "WINDOW", "UNION",
                                      "INTERSECT", "EXCEPT", "RETURNING", "JOIN", "INNER",
                                      "LEFT", "RIGHT", "FULL", "CROSS", "NATURAL", "USING"};
  for (;;) {
    pos = qp__sql_lex_sig(QP_DIALECT_SQLITE, sql, len, pos, &t);
    if (t.type == QP_T_EOF) break;
    size_t n = t.end - t.start;
    const char *p = sql + t.start;
    if (t.type == QP_T_LPAREN) depth++;
    if (t.type == QP_T_RPAREN) depth--;
    if (depth < 0) break;
    if (depth == 0 && t.type == QP_T_SEMI) break;
    if (depth == 0 && t.type == QP_T_WORD &&
        ((n == 5 && strncasecmp(p, "WHERE", 5) == 0) || (n == 2 && strncasecmp(p, "ON", 2) == 0))) {
      if (o > 0) {
        if (o + 6 >= cap) {
          out[0] = '\0';
          return 0;
        }
        memcpy(out + o, " AND ", 5);
        o += 5;
        out[o] = '\0';
      }
      in_cond = true;
      prev = QP_T_EOF;
      continue;
    }
    if (depth == 0 && t.type == QP_T_WORD) {
      bool end = false;
      for (size_t k = 0; k < QP_ARRAY_LEN(k_end); k++)
        end |= n == strlen(k_end[k]) && strncasecmp(p, k_end[k], n) == 0;
      if (end) {
        in_cond = false;
        continue;
      }
    }
    if (!in_cond) continue;
    const char *text = p;
    size_t tl = n;
    if (t.type == QP_T_WORD && n == 4 && strncasecmp(p, "LIKE", 4) == 0) text = "~~", tl = 2;
    else if (t.type == QP_T_WORD && n == 3 && strncasecmp(p, "AND", 3) == 0) text = "AND", tl = 3;
    else if (t.type == QP_T_OP && n == 2 && memcmp(p, "==", 2) == 0) text = "=", tl = 1;
    else if (t.type == QP_T_PARAM) text = "$0", tl = 2;
    bool space = prev != QP_T_EOF && prev != QP_T_LPAREN && prev != QP_T_DOT &&
                 t.type != QP_T_RPAREN && t.type != QP_T_DOT && t.type != QP_T_COMMA &&
                 !(t.type == QP_T_LPAREN && prev == QP_T_WORD);
    if (o + tl + 2 >= cap) { /* too long: read nothing rather than half */
      out[0] = '\0';
      return 0;
    }
    if (space) out[o++] = ' ';
    memcpy(out + o, text, tl);
    o += tl;
    out[o] = '\0';
    prev = t.type;
  }
  return o;
}

bool qp__adv_sq_word(const char *sql, const qp_tok *t, const char *w) {
  size_t n = t->end - t->start;
  return t->type == QP_T_WORD && n == strlen(w) && strncasecmp(sql + t->start, w, n) == 0;
}

bool qp__adv_sq_name(const qp_tok *t) { return t->type == QP_T_WORD || t->type == QP_T_QIDENT; }

/* The name a token spells, unquoted. */
void qp__adv_sq_text(const char *sql, const qp_tok *t, char *out, size_t cap) {
  const char *p = sql + t->start;
  size_t n = t->end - t->start;
  if (t->type == QP_T_QIDENT && n >= 2) p++, n -= 2;
  qp__adv_fmt(out, cap, "%.*s", (int)n, p);
}

/* The table of the copy called `name` (any case) into out. */
bool qp__adv_sq_table_named(qp_conn *c, const char *name, char *out, size_t cap) {
  qp_param p = qp_param_text(name);
  qp_result *r = NULL;
  bool found = false;
  if (qp__conn_exec_quiet(c, "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?1 "
                          "COLLATE NOCASE", &p, 1, &r) == QP_OK && qp_result_rows(r) > 0) {
    qp__adv_rstr(r, 0, 0, out, cap);
    found = true;
  }
  qp_result_free(r);
  return found;
}

/* The table an EXPLAIN QUERY PLAN name stands for: itself when it is a
 * table of the copy, else the table written before it as an alias
 * ("FROM orders o", "orders AS o"). */
bool qp__adv_sq_alias_table(adv_ctx *x, qp_conn *c, const char *name, char *out, size_t cap) {
  if (qp__adv_sq_table_named(c, name, out, cap)) return true;
  const char *sql = x->run;
  size_t len = strlen(sql), pos = 0;
  qp_tok t, w1 = {QP_T_EOF, 0, 0}, w2 = {QP_T_EOF, 0, 0};
  for (;;) {
    pos = qp__sql_lex_sig(QP_DIALECT_SQLITE, sql, len, pos, &t);
    if (t.type == QP_T_EOF) break;
    size_t n = t.end - t.start;
    if (t.type == QP_T_WORD && n == strlen(name) && strncasecmp(sql + t.start, name, n) == 0) {
      /* the declaration "table [AS] name", not a use "name.col" */
      qp_tok nx;
      (void)qp__sql_lex_sig(QP_DIALECT_SQLITE, sql, len, pos, &nx);
      qp_tok tab = w1;
      if (w1.type == QP_T_WORD && w1.end - w1.start == 2 && strncasecmp(sql + w1.start, "AS", 2) == 0)
        tab = w2;
      if (nx.type != QP_T_DOT && qp__adv_sq_name(&tab)) {
        char tn[ADV_NAME];
        qp__adv_sq_text(sql, &tab, tn, sizeof tn);
        if (qp__adv_sq_table_named(c, tn, out, cap)) return true;
      }
    }
    w2 = w1;
    w1 = t;
  }
  return false;
}

/* The table's entry (rows and indexes from the copy's catalog), or -1. */
static int sqlite_table(adv_ctx *x, qp_conn *c, const char *name) {
  for (size_t i = 0; i < x->ntables; i++)
    if (strcmp(x->tables[i].relname, name) == 0) return (int)i;
  if (x->ntables >= ADV_MAX_TABLES) return -1;
  adv_table *t = &x->tables[x->ntables];
  memset(t, 0, sizeof *t);
  qp__adv_fmt(t->relname, sizeof t->relname, "%s", name);
  qp__adv_ident(name, t->qual, sizeof t->qual);
  t->writes = t->reads = -1;
  char sql[512];
  qp__adv_fmt(sql, sizeof sql, "SELECT count(*) FROM %s", t->qual);
  qp_result *r = NULL;
  if (qp__conn_exec_quiet(c, sql, NULL, 0, &r) != QP_OK || qp_result_rows(r) == 0) {
    qp_result_free(r);
    return -1;
  }
  t->rows = qp__adv_rint64(r, 0, 0);
  qp_result_free(r);
  qp_param p = qp_param_text(name);
  if (qp__conn_exec_quiet(c,
                          "SELECT il.name, il.\"unique\", il.partial, ii.seqno, "
                          "coalesce(ii.name, '?expr'), "
                          "(SELECT count(*) FROM pragma_index_info(il.name)) "
                          "FROM pragma_index_list(?1) il, pragma_index_info(il.name) ii "
                          "ORDER BY il.name, ii.seqno", &p, 1, &r) == QP_OK) {
    for (size_t i = 0; i < qp_result_rows(r); i++) {
      char iname[ADV_NAME];
      qp__adv_rstr(r, i, 0, iname, sizeof iname);
      adv_index *ix = t->nindexes > 0 ? &t->idx[t->nindexes - 1] : NULL;
      if (ix == NULL || strcmp(ix->name, iname) != 0) {
        if (t->nindexes >= ADV_MAX_INDEXES) break;
        ix = &t->idx[t->nindexes++];
        memset(ix, 0, sizeof *ix);
        qp__adv_fmt(ix->name, sizeof ix->name, "%s", iname);
        qp__adv_fmt(ix->am, sizeof ix->am, "btree");
        ix->unique = qp__adv_rint64(r, i, 1) == 1;
        ix->partial = qp__adv_rint64(r, i, 2) == 1;
        ix->total_keys = (int)qp__adv_rint64(r, i, 5);
        ix->scans = -1;
      }
      if (ix->nkeys < ADV_MAX_KEYS) qp__adv_rstr(r, i, 4, ix->keys[ix->nkeys++], ADV_KEY);
    }
  }
  qp_result_free(r);
  t->found = true;
  x->ntables++;
  return (int)(t - x->tables);
}

typedef struct sq_run {
  bool ok;
  char *plan;            /* EXPLAIN QUERY PLAN lines (owned, hooks) */
  int64_t rows, fullscan_steps, vm_steps, sorts;
  double ms;
} sq_run;

static sq_run sq_measure(adv_ctx *x, qp_conn *c) {
  sq_run m;
  memset(&m, 0, sizeof m);
  m.rows = m.fullscan_steps = m.vm_steps = m.sorts = -1;
  m.ms = -1;
  qp__explain_opts eo;
  memset(&eo, 0, sizeof eo);
  eo.analyze = x->analyze;
  qp__plan plan;
  uint64_t t0 = qp__now_ns();
  if (qp__conn_explain(c, x->run, NULL, 0, &eo, &plan) != QP_OK) {
    if (x->st == QP_OK) {
      /* the code once: the SQLite backend's message names it already */
      const char *em = qp_conn_errmsg(c), *code = qp_conn_sqlstate(c);
      bool named = code[0] == '\0' || strstr(em, code) != NULL;
      x->st = QP_QUERY;
      qp__adv_fmt(x->msg, sizeof x->msg, "explain: %s%s%s%s", em, named ? "" : " (",
                  named ? "" : code, named ? "" : ")");
    }
    return m;
  }
  if (x->analyze) m.ms = (double)qp__ns_since(qp__now_ns(), t0) / 1e6;
  m.ok = true;
  m.plan = qp__strdup(&x->a->hooks, plan.text);
  m.rows = plan.rows;
  m.fullscan_steps = plan.fullscan_steps;
  m.vm_steps = plan.vm_steps;
  m.sorts = plan.sorts;
  qp__conn_plan_free(c, &plan);
  if (m.plan == NULL) {
    m.ok = false;
    x->st = QP_NOMEM;
    qp__adv_fmt(x->msg, sizeof x->msg, "out of memory");
  }
  return m;
}

/* Work of a run: VM steps when measured, else nothing to compare (-1). */
static double sq_work(const sq_run *m) { return m->vm_steps >= 0 ? (double)m->vm_steps : -1; }

bool qp__adv_order_read(const char *sql, qp__adv_order *o) {
  memset(o, 0, sizeof *o);
  size_t len = strlen(sql), pos = 0;
  int depth = 0;
  bool in_order = false, limit = false, ok = false, term = false;
  qp_tok t, prev = {QP_T_EOF, 0, 0};
  for (;;) {
    pos = qp__sql_lex_sig(QP_DIALECT_SQLITE, sql, len, pos, &t);
    if (t.type == QP_T_EOF || (depth == 0 && t.type == QP_T_SEMI)) break;
    if (t.type == QP_T_LPAREN) depth++;
    if (t.type == QP_T_RPAREN) depth--;
    if (depth != 0 || t.type == QP_T_RPAREN) {
      if (in_order) ok = false, in_order = false; /* an expression: not a plain column */
      prev = t;
      continue;
    }
    if (qp__adv_sq_word(sql, &t, "BY") && qp__adv_sq_word(sql, &prev, "ORDER")) {
      memset(o, 0, sizeof *o);
      in_order = ok = true;
      term = false;
      limit = false;
    } else if (qp__adv_sq_word(sql, &t, "LIMIT")) {
      limit = true;
      in_order = false;
    } else if (in_order) {
      if (t.type == QP_T_COMMA) {
        ok = ok && term;
        term = false;
      } else if (qp__adv_sq_word(sql, &t, "ASC") || qp__adv_sq_word(sql, &t, "DESC")) {
        if (!term) ok = false;
        else o->desc[o->n - 1] = qp__adv_sq_word(sql, &t, "DESC");
      } else if (t.type == QP_T_DOT && term) {
        /* qual.col: the name read was the qualifier */
        memcpy(o->qual[o->n - 1], o->col[o->n - 1], ADV_NAME);
        o->col[o->n - 1][0] = '\0';
        term = false;
        o->n--;
      } else if (qp__adv_sq_name(&t) && !term && o->n < ADV_MAX_KEYS) {
        char q[ADV_NAME];
        memcpy(q, o->qual[o->n], ADV_NAME);
        qp__adv_sq_text(sql, &t, o->col[o->n], ADV_NAME);
        memcpy(o->qual[o->n], q, ADV_NAME);
        if (o->col[o->n][0] == '\0') {
          ok = false; /* an empty quoted name ("", [], ``): no column an index could hold */
        } else {
          o->n++;
          term = true;
        }
      } else {
        ok = false;
      }
    }
    prev = t;
  }
  return ok && limit && o->n > 0;
}

/* Whether table `table` of the copy has column `col`. */
static bool table_has_column(qp_conn *c, const char *table, const char *col) {
  qp_param p[2] = {qp_param_text(table), qp_param_text(col)};
  qp_result *r = NULL;
  bool found = qp__conn_exec_quiet(c, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2 "
                                   "COLLATE NOCASE", p, 2, &r) == QP_OK && qp_result_rows(r) > 0;
  qp_result_free(r);
  return found;
}

/* Candidates from one plan line. single: the statement reads one table;
 * outer: this line is the plan's first (outermost) loop. */
static void sq_line(adv_ctx *x, qp_conn *c, const char *detail, const qp__cond *conds, size_t nc,
                    const sq_run *base, bool single, bool outer, const qp__adv_order *ord) {
  char name[ADV_NAME], table[ADV_NAME];
  bool automatic = false;
  const char *cols = NULL;
  if (strncmp(detail, "SCAN ", 5) == 0) {
    const char *p = detail + 5;
    if (strncmp(p, "CONSTANT", 8) == 0 || *p == '(' || strncmp(p, "SUBQUERY", 8) == 0) return;
    size_t n = strcspn(p, " ");
    qp__adv_fmt(name, sizeof name, "%.*s", (int)n, p);
  } else if (strncmp(detail, "SEARCH ", 7) == 0 && strstr(detail, "USING AUTOMATIC") != NULL) {
    const char *p = detail + 7;
    size_t n = strcspn(p, " ");
    qp__adv_fmt(name, sizeof name, "%.*s", (int)n, p);
    cols = strchr(detail, '(');
    automatic = cols != NULL;
    if (!automatic) return;
  } else if (strncmp(detail, "SEARCH ", 7) == 0 && ord != NULL) {
    /* an index serves the filter, the sort is still done on every match */
    const char *p = detail + 7;
    size_t n = strcspn(p, " ");
    qp__adv_fmt(name, sizeof name, "%.*s", (int)n, p);
  } else {
    return;
  }
  if (!qp__adv_sq_alias_table(x, c, name, table, sizeof table)) return;
  int ti = sqlite_table(x, c, table);
  if (ti < 0) return;
  const adv_table *tb = &x->tables[ti];
  if (tb->rows < x->o.min_rows) {
    qp__adv_note(x, "table %s has %lld rows (fewer than %lld): a scan of it is cheap, no index "
                 "suggested", tb->qual, (long long)tb->rows, (long long)x->o.min_rows);
    return;
  }
  adv_cand cand;
  memset(&cand, 0, sizeof cand);
  cand.table = ti;
  cand.shape = ADV_SHAPE_SQLITE;
  cand.ms_before = base->ms;
  if (automatic) {
    /* "(a=? AND b=?)": SQLite built this index itself, for every run */
    char buf[256];
    qp__adv_fmt(buf, sizeof buf, "%s", cols + 1);
    char *save = NULL;
    for (char *tok = strtok_r(buf, " ", &save); tok && cand.nkeys < ADV_MAX_KEYS;
         tok = strtok_r(NULL, " ", &save)) {
      char *eq = strchr(tok, '=');
      if (eq == NULL) continue;
      *eq = '\0';
      qp__adv_ident(tok, cand.keys[cand.nkeys++], ADV_KEY);
    }
    if (cand.nkeys == 0) return;
    qp__adv_fmt(cand.rule, sizeof cand.rule, "join_key");
    qp__adv_fmt(cand.reason, sizeof cand.reason,
                "SQLite builds an automatic index on %s %s for every run of the statement (%s)",
                tb->qual, cols, detail);
  } else {
    char like[ADV_KEY] = "", range[ADV_KEY] = "", expr[ADV_KEY] = "";
    for (size_t i = 0; i < nc; i++) {
      const qp__cond *k = &conds[i];
      if (k->rhs_column[0]) continue;
      if (k->qual[0] ? strcasecmp(k->qual, name) != 0 && strcasecmp(k->qual, table) != 0 : !single)
        continue;
      if (k->expr[0]) { /* lower(email) = ...: the expression, without the qualifier */
        if (expr[0] == '\0' && (k->op == QP__COND_EQ || k->op == QP__COND_RANGE))
          qp__adv_fmt(expr, sizeof expr, "%s", k->expr);
        continue;
      }
      char q[ADV_NAME];
      qp__adv_ident(k->column, q, sizeof q);
      if ((k->op == QP__COND_EQ || k->op == QP__COND_IS_NULL || k->op == QP__COND_BOOL) &&
          cand.nkeys < ADV_MAX_KEYS) {
        bool dup = false;
        for (int j = 0; j < cand.nkeys; j++) dup |= strcmp(cand.keys[j], q) == 0;
        if (!dup) qp__adv_fmt(cand.keys[cand.nkeys++], ADV_KEY, "%s", q);
      } else if (k->op == QP__COND_RANGE && range[0] == '\0') {
        qp__adv_fmt(range, sizeof range, "%s", q);
      } else if (k->op == QP__COND_LIKE_PREFIX && like[0] == '\0') {
        /* LIKE is case-insensitive: only a NOCASE index serves its prefix */
        qp__adv_fmt(like, sizeof like, "%s COLLATE NOCASE", q);
      }
    }
    const char *rule = "seq_scan_filter";
    if (ord != NULL && (single || outer)) {
      /* ORDER BY ... LIMIT on this table: equality columns, then the sort
       * keys, read in order and stopped at the LIMIT. In a join only on
       * the outermost loop: SQLite's nested loops keep its order, so an
       * index in the sort order lets it read that table in order and stop
       * once the LIMIT has its joined rows (the measured run decides). An
       * unqualified sort key in a join is this table's when it has that
       * column (else SQLite would have called it ambiguous or another's). */
      bool mine = true;
      for (int k = 0; k < ord->n && mine; k++)
        mine = ord->qual[k][0] ? strcasecmp(ord->qual[k], name) == 0 ||
                                     strcasecmp(ord->qual[k], table) == 0
                               : single || table_has_column(c, table, ord->col[k]);
      if (mine && cand.nkeys + ord->n <= ADV_MAX_KEYS) {
        for (int k = 0; k < ord->n; k++) {
          char q[ADV_NAME];
          qp__adv_ident(ord->col[k], q, sizeof q);
          qp__adv_fmt(cand.keys[cand.nkeys++], ADV_KEY, "%s%s", q, ord->desc[k] ? " DESC" : "");
        }
        qp__adv_fmt(cand.rule, sizeof cand.rule, "top_n");
        if (single)
          qp__adv_fmt(cand.reason, sizeof cand.reason,
                      "ORDER BY ... LIMIT on %s sorts every row it reads into a temporary "
                      "b-tree (%s, %lld sorts) to return the first few; an index in the sort "
                      "order reads only those", tb->qual, detail, (long long)base->sorts);
        else
          qp__adv_fmt(cand.reason, sizeof cand.reason,
                      "ORDER BY ... LIMIT on %s, the outer table of the join (%s), sorts every "
                      "joined row into a temporary b-tree (%lld sorts) to return the first few; "
                      "an index in the sort order reads %s in order and stops at the LIMIT",
                      tb->qual, detail, (long long)base->sorts, tb->qual);
        cand.group = qp__adv_next_group(x);
        qp__adv_add_group(x, &cand);
        return;
      }
    }
    if (strncmp(detail, "SEARCH ", 7) == 0) return; /* only top-N reads a SEARCH line */
    if (cand.nkeys == 0 && range[0] == '\0' && like[0] == '\0' && expr[0] && single) {
      /* f(column) op constant: only an index on the expression serves it */
      qp__adv_fmt(cand.keys[cand.nkeys++], ADV_KEY, "%s", expr);
      rule = "expression";
    }
    if (cand.nkeys == 0 && range[0] == '\0' && like[0] == '\0' && !single) {
      /* a table read whole inside a join: its join column */
      for (size_t i = 0; i < nc && cand.nkeys == 0; i++) {
        const qp__cond *k = &conds[i];
        if (!k->rhs_column[0] || k->op != QP__COND_EQ) continue;
        const char *col = NULL;
        if (strcasecmp(k->qual, name) == 0 || strcasecmp(k->qual, table) == 0) col = k->column;
        else if (strcasecmp(k->rhs_qual, name) == 0 || strcasecmp(k->rhs_qual, table) == 0)
          col = k->rhs_column;
        if (col == NULL) continue;
        qp__adv_ident(col, cand.keys[cand.nkeys++], ADV_KEY);
        rule = "join_key";
      }
    }
    if (strcmp(rule, "expression") == 0) {
      /* the key is the expression alone */
    } else if (cand.nkeys < ADV_MAX_KEYS && range[0]) {
      qp__adv_fmt(cand.keys[cand.nkeys++], ADV_KEY, "%s", range);
    } else if (cand.nkeys < ADV_MAX_KEYS && like[0]) {
      qp__adv_fmt(cand.keys[cand.nkeys++], ADV_KEY, "%s", like);
      qp__adv_fmt(cand.opclass, sizeof cand.opclass, "COLLATE NOCASE");
      rule = "like_prefix";
    }
    if (cand.nkeys == 0) return;
    /* measured share of the rows the scan kept (one table only) */
    if (single && base->fullscan_steps > 0 && base->rows >= 0) {
      double share = (double)base->rows / (double)(base->fullscan_steps + 1);
      if (share > 0.30) {
        char kt[700];
        qp__adv_keys_join(&cand, kt, sizeof kt);
        qp__adv_note(x, "an index on %s (%s) does not help: %.0f%% of rows match the filter",
                     tb->qual, kt, share * 100);
        return;
      }
    }
    qp__adv_fmt(cand.rule, sizeof cand.rule, "%s", rule);
    qp__adv_fmt(cand.reason, sizeof cand.reason, "SQLite reads all of %s (%s)%s%.0f%s", tb->qual,
                detail, base->fullscan_steps >= 0 ? ": " : "",
                base->fullscan_steps >= 0 ? (double)base->fullscan_steps : 0,
                base->fullscan_steps >= 0 ? " full-scan steps" : "");
  }
  cand.group = qp__adv_next_group(x);
  qp__adv_add_group(x, &cand);
}

/* A real index on the copy inside a savepoint: used, and the measured work. */
static void sq_try(adv_ctx *x, qp_conn *c, adv_cand *cand, const sq_run *base) {
  cand->cost_before = sq_work(base);
  if (qp__conn_exec_quiet(c, "SAVEPOINT qp_advise", NULL, 0, NULL) != QP_OK) return;
  char kt[700], create[1024];
  qp__adv_keys_join(cand, kt, sizeof kt);
  qp__adv_fmt(create, sizeof create, "CREATE INDEX qp_advise_candidate ON %s (%s)",
              x->tables[cand->table].qual, kt);
  char an[400];
  qp__adv_fmt(an, sizeof an, "ANALYZE %s", x->tables[cand->table].qual);
  if (qp__conn_exec_quiet(c, create, NULL, 0, NULL) == QP_OK &&
      qp__conn_exec_quiet(c, an, NULL, 0, NULL) == QP_OK) {
    sq_run m = sq_measure(x, c);
    if (m.ok) {
      cand->tested = true;
      cand->used = strstr(m.plan, "INDEX qp_advise_candidate") != NULL;
      cand->cost_after = sq_work(&m);
      cand->ms_after = m.ms;
      if (cand->cost_before < 0) { /* not measured: the plan alone decides */
        cand->cost_before = 1;
        cand->cost_after = cand->used ? 0 : 1;
      }
    }
    qp__free(&x->a->hooks, m.plan);
    qp_result *r = NULL;
    if (qp__conn_exec_quiet(c, "SELECT sum(pgsize) FROM dbstat WHERE name = 'qp_advise_candidate'",
                            NULL, 0, &r) == QP_OK && qp_result_rows(r) > 0)
      cand->size_bytes = qp__adv_rint64(r, 0, 0);
    qp_result_free(r);
  } else {
    qp__adv_fmt(cand->why, sizeof cand->why, "%s", qp_conn_errmsg(c));
  }
  (void)qp__conn_exec_quiet(c, "ROLLBACK TO qp_advise", NULL, 0, NULL);
  (void)qp__conn_exec_quiet(c, "RELEASE qp_advise", NULL, 0, NULL);
}

/* A private directory for the copy (TMPDIR or /tmp, mode 0700), the
 * copy's path and DSN. */
static bool copy_dir(char *dir, size_t dlen, char *copy, size_t clen, char *dsn, size_t slen) {
  const char *tmp = getenv("TMPDIR");
  qp__adv_fmt(dir, dlen, "%s/qprof-advise.XXXXXX", tmp && tmp[0] == '/' ? tmp : "/tmp");
  if (mkdtemp(dir) == NULL) return false;
  qp__adv_fmt(copy, clen, "%s/copy.db", dir);
  qp__adv_fmt(dsn, slen, "sqlite://%s", copy);
  return true;
}

/* The copy and whatever SQLite left beside it, then the directory. */
static void copy_remove(const char *dir, const char *copy) {
  static const char *const k_suffix[] = {"", "-journal", "-wal", "-shm"};
  for (size_t i = 0; i < QP_ARRAY_LEN(k_suffix); i++) {
    char f[640];
    qp__adv_fmt(f, sizeof f, "%s%s", copy, k_suffix[i]);
    (void)unlink(f);
  }
  (void)rmdir(dir);
}

void qp__adv_sq_fail(adv_ctx *x, qp_status st, const char *what, qp_conn *c) {
  if (x->st != QP_OK) return;
  x->st = st;
  qp__adv_fmt(x->msg, sizeof x->msg, "%s: %s", what, c ? qp_conn_errmsg(c) : strerror(errno));
}

/* The advice on the copy `c`: its plan and measured run, the candidates
 * from each plan line, each tried for real inside a savepoint. */
static void sq_advise_on(adv_ctx *x, qp_conn *c) {
  /* the file's own statistics, read before the advisor's ANALYZE replaces
   * them (an SQLite built without STAT4 also empties sqlite_stat4) */
  qp__adv_sq_stats *stats = NULL;
  if (qp__adv_sq_has_params(x->run)) {
    stats = qp__adv_sq_stats_new(x, c);
    if (stats == NULL) return;
  }
  if (qp__conn_exec_quiet(c, "ANALYZE", NULL, 0, NULL) != QP_OK)
    qp__adv_sq_fail(x, QP_QUERY, "ANALYZE on the copy", c);
  if (x->st == QP_OK && stats != NULL) qp__adv_sq_bind(x, c, stats);
  qp__adv_sq_stats_free(x, stats);
  sq_run base;
  memset(&base, 0, sizeof base);
  if (x->st == QP_OK) base = sq_measure(x, c);
  if (x->st == QP_OK && base.ok) {
    qp_advice *a = x->a;
    a->sum.executed = x->analyze;
    a->sum.cost = sq_work(&base);
    a->sum.ms = base.ms;
    char where[2048];
    qp__cond conds[QP__COND_MAX];
    size_t nc = 0;
    if (qp__adv_where(x->run, strlen(x->run), where, sizeof where) > 0)
      nc = qp__cond_read(where, conds, QP__COND_MAX);
    /* ORDER BY ... LIMIT sorted into a temporary b-tree: top-N */
    qp__adv_order ord;
    bool topn = strstr(base.plan, "USE TEMP B-TREE FOR") != NULL &&
                strstr(base.plan, "ORDER BY") != NULL && qp__adv_order_read(x->run, &ord);
    size_t nscan = 0;
    for (const char *l = base.plan; *l;) {
      const char *e = strchr(l, '\n');
      size_t ll = e ? (size_t)(e - l) : strlen(l);
      if (memmem(l, ll, " SCAN ", 6) || memmem(l, ll, " SEARCH ", 8)) nscan++;
      l += ll + (e != NULL);
    }
    bool seen_scan = false;
    for (const char *l = base.plan; *l;) {
      const char *e = strchr(l, '\n');
      size_t ll = e ? (size_t)(e - l) : strlen(l);
      char line[512];
      qp__adv_fmt(line, sizeof line, "%.*s", (int)ll, l);
      /* "id parent detail" */
      char *d = strchr(line, ' ');
      d = d ? strchr(d + 1, ' ') : NULL;
      bool scan = memmem(l, ll, " SCAN ", 6) || memmem(l, ll, " SEARCH ", 8);
      if (d != NULL)
        sq_line(x, c, d + 1, conds, nc, &base, nscan <= 1, scan && !seen_scan, topn ? &ord : NULL);
      seen_scan |= scan;
      if (strstr(line, "USE TEMP B-TREE") != NULL && base.sorts > 0) {
        adv_finding f;
        memset(&f, 0, sizeof f);
        qp__adv_fmt(f.rule, sizeof f.rule, "temp_btree");
        qp__adv_fmt(f.node, sizeof f.node, "%s", d ? d + 1 : line);
        qp__adv_fmt(f.message, sizeof f.message, "SQLite sorts into a temporary b-tree (%lld "
                    "sorts)", (long long)base.sorts);
        qp__adv_fmt(f.action, sizeof f.action, "an index in the ORDER BY / GROUP BY order "
                    "would avoid it (suggested, rule top_n, for ORDER BY ... LIMIT on one "
                    "table or on the outer table of a join; not for GROUP BY)");
        qp__adv_finding(x, &f);
      }
      l += ll + (e != NULL);
    }
    qp__adv_catalog_notes(x);
    for (size_t i = 0; i < x->ncands && x->st == QP_OK; i++) sq_try(x, c, &x->cands[i], &base);
    if (x->st == QP_OK) {
      qp__adv_judge(x, x->analyze ? "a real index on the copy, measured" : "a real index on the copy, plan only");
      if (!x->analyze && x->ncands > 0)
        qp__adv_note(x, "the statement writes and analyze_writes is off: candidates were judged "
                     "by the plan alone (the index is used), not measured");
      qp__adv_emit(x, true);
    }
  }
  qp__free(&x->a->hooks, base.plan);
}

void qp__adv_sqlite(adv_ctx *x) {
  if (x->on_copy) { /* qp_advise_dsn made the copy: this lease is on it */
    sq_advise_on(x, x->c);
    return;
  }
  /* the live file */
  qp_result *r = NULL;
  char live[4096] = "";
  if (qp__conn_exec_quiet(x->c, "SELECT file FROM pragma_database_list WHERE name = 'main'", NULL,
                          0, &r) == QP_OK && qp_result_rows(r) > 0)
    qp__adv_rstr(r, 0, 0, live, sizeof live);
  qp_result_free(r);
  if (live[0] == '\0') {
    x->st = QP_UNSUPPORTED;
    qp__adv_fmt(x->msg, sizeof x->msg, "an in-memory or temporary SQLite database has no file to "
                "copy; advise works on a copy only");
    return;
  }
  char dir[512], copy[600], dsn[620];
  if (!copy_dir(dir, sizeof dir, copy, sizeof copy, dsn, sizeof dsn)) {
    qp__adv_sq_fail(x, QP_IO, "cannot make a temporary directory for the copy", NULL);
    return;
  }
  qp_param p = qp_param_text(copy);
  qp_pool *pool = NULL;
  qp_conn *c = NULL;
  if (qp__conn_exec_quiet(x->c, "VACUUM INTO ?1", &p, 1, NULL) != QP_OK) {
    qp__adv_sq_fail(x, QP_QUERY, "cannot copy the database (VACUUM INTO)", x->c);
  } else {
    qp_pool_options po;
    qp_pool_options_init(&po);
    po.dsn = dsn;
    po.max_size = 1;
    po.hooks = &x->a->hooks;
    char msg[QP_ERRMSG_MAX];
    if (qp_pool_open(&pool, &po, msg, sizeof msg) != QP_OK ||
        qp_pool_acquire_msg(pool, &c, -1, msg, sizeof msg) != QP_OK) {
      x->st = QP_IO;
      qp__adv_fmt(x->msg, sizeof x->msg, "cannot open the copy: %s", msg);
    }
  }
  if (c != NULL && x->st == QP_OK) sq_advise_on(x, c);
  qp_pool_release(c);
  qp_pool_close(pool);
  copy_remove(dir, copy);
}

qp_status qp__adv_sqlite_dsn(const char *dsn, const char *sql, const qp_advise_options *o,
                             qp_advice **out, char *errbuf, size_t errlen) {
  const char *path = qp__sqlite_dsn_path(dsn);
  if (path == NULL)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "advise: malformed SQLite DSN");
  if (strcmp(path, ":memory:") == 0)
    return qp__errbuf_set(errbuf, errlen, QP_UNSUPPORTED,
                          "advise: an in-memory SQLite database has nothing to advise on");
  if (access(path, R_OK) != 0)
    return qp__errbuf_set(errbuf, errlen, QP_UNAVAILABLE, "advise: cannot open SQLite database "
                          "'%s': %s", path, strerror(errno));
  char dir[512], copy[600], cdsn[620];
  if (!copy_dir(dir, sizeof dir, copy, sizeof copy, cdsn, sizeof cdsn))
    return qp__errbuf_set(errbuf, errlen, QP_IO, "advise: cannot make a temporary directory: %s",
                          strerror(errno));
  /* read-only: no journal mode change, no checkpoint, nothing written */
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
  sqlite3_stmt *st = NULL;
  if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(db, "VACUUM INTO ?1", -1, &st, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_bind_text(st, 1, copy, -1, SQLITE_TRANSIENT);
  if (rc == SQLITE_OK) rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
  qp_status res = QP_OK;
  if (rc != SQLITE_OK)
    res = qp__errbuf_set(errbuf, errlen, QP_UNAVAILABLE, "advise: cannot copy '%s' (VACUUM INTO): "
                         "%s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  sqlite3_finalize(st);
  sqlite3_close(db);
  qp_pool *pool = NULL;
  qp_conn *c = NULL;
  if (res == QP_OK) {
    qp_pool_options po;
    qp_pool_options_init(&po);
    po.dsn = cdsn;
    po.max_size = 1;
    if (o != NULL && o->size >= QP_ADVISE_OPTIONS_V1_SIZE) po.hooks = o->hooks;
    char msg[QP_ERRMSG_MAX];
    if (qp_pool_open(&pool, &po, msg, sizeof msg) != QP_OK ||
        qp_pool_acquire_msg(pool, &c, -1, msg, sizeof msg) != QP_OK)
      res = qp__errbuf_set(errbuf, errlen, QP_IO, "advise: cannot open the copy: %s", msg);
  }
  if (res == QP_OK) res = qp__advise_conn_impl(c, sql, o, out, errbuf, errlen, true);
  qp_pool_release(c);
  qp_pool_close(pool);
  copy_remove(dir, copy);
  return res;
}
