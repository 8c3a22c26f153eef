/*
 * The index advisor (include/qprof/advise.h): the statement's plan inside a
 * rolled-back transaction, the catalog, candidates from rules.c, and their
 * verification (HypoPG or a real index rolled back).
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "advise/advise_int.h"
#include "pool/lease.h"
#include "qprof/sql.h"






/* ---- names and options --------------------------------------------------- */

const char *qp_advise_verify_name(qp_advise_verify v) {
  switch (v) {
  case QP_ADVISE_VERIFY_HYPO: return "hypo";
  case QP_ADVISE_VERIFY_REAL: return "real";
  default: return "none";
  }
}

qp_status qp_advise_verify_parse(const char *name, qp_advise_verify *out) {
  if (name == NULL || out == NULL) return QP_INVALID;
  if (strcmp(name, "hypo") == 0) *out = QP_ADVISE_VERIFY_HYPO;
  else if (strcmp(name, "real") == 0) *out = QP_ADVISE_VERIFY_REAL;
  else if (strcmp(name, "none") == 0) *out = QP_ADVISE_VERIFY_NONE;
  else return QP_INVALID;
  return QP_OK;
}

const char *qp_advice_verified_name(qp_advice_verified v) {
  switch (v) {
  case QP_ADVICE_HYPO: return "hypopg";
  case QP_ADVICE_REAL: return "real";
  case QP_ADVICE_COPY: return "copy";
  default: return "unverified";
  }
}

void qp_advise_options_init(qp_advise_options *o) {
  if (o == NULL) return;
  memset(o, 0, sizeof *o);
  o->size = sizeof *o;
  o->verify = QP_ADVISE_VERIFY_HYPO;
  o->statement_timeout_ms = QP__OPT_DEFAULT_INT(ADVISE_STATEMENT_TIMEOUT_MS);
  o->lock_timeout_ms = QP__OPT_DEFAULT_INT(ADVISE_LOCK_TIMEOUT_MS);
  o->min_rows = QP__OPT_DEFAULT_INT(ADVISE_MIN_ROWS);
}

/* ---- the advice ---------------------------------------------------------- */

static const char *astr(qp_advice *a, const char *s) {
  if (s == NULL || a->failed) return NULL;
  if (a->nstrs == a->capstrs) {
    size_t cap = a->capstrs ? a->capstrs * 2 : 32;
    char **v = qp__realloc(&a->hooks, a->strs, cap * sizeof *v);
    if (v == NULL) {
      a->failed = true;
      return NULL;
    }
    a->strs = v;
    a->capstrs = cap;
  }
  char *d = qp__strdup(&a->hooks, s);
  if (d == NULL) {
    a->failed = true;
    return NULL;
  }
  a->strs[a->nstrs++] = d;
  return d;
}

const char *qp__adv_str(qp_advice *a, const char *s) { return astr(a, s); }

void qp_advice_free(qp_advice *a) {
  if (a == NULL) return;
  qp_hooks h = a->hooks;
  for (size_t i = 0; i < a->nstrs; i++) qp__free(&h, a->strs[i]);
  qp__free(&h, a->strs);
  qp__free(&h, a->idx);
  qp__free(&h, a->fnd);
  qp__free(&h, a->notes);
  qp__free(&h, a);
}

const qp_advice_summary *qp_advice_summary_get(const qp_advice *a) { return a ? &a->sum : NULL; }
size_t qp_advice_index_count(const qp_advice *a) { return a ? a->nidx : 0; }
const qp_advice_index *qp_advice_index_at(const qp_advice *a, size_t i) {
  return a && i < a->nidx ? &a->idx[i] : NULL;
}
size_t qp_advice_finding_count(const qp_advice *a) { return a ? a->nfnd : 0; }
const qp_advice_finding *qp_advice_finding_at(const qp_advice *a, size_t i) {
  return a && i < a->nfnd ? &a->fnd[i] : NULL;
}
size_t qp_advice_note_count(const qp_advice *a) { return a ? a->nnotes : 0; }
const char *qp_advice_note_at(const qp_advice *a, size_t i) {
  return a && i < a->nnotes ? a->notes[i] : NULL;
}

void qp__adv_note(adv_ctx *x, const char *fmt, ...) {
  char buf[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  qp_advice *a = x->a;
  for (size_t i = 0; i < a->nnotes; i++)
    if (strcmp(a->notes[i], buf) == 0) return;
  const char **v = qp__realloc(&a->hooks, a->notes, (a->nnotes + 1) * sizeof *v);
  if (v == NULL) {
    a->failed = true;
    return;
  }
  a->notes = v;
  const char *s = astr(a, buf);
  if (s != NULL) a->notes[a->nnotes++] = s;
}

void qp__adv_finding(adv_ctx *x, const adv_finding *f) {
  for (size_t i = 0; i < x->nfindings; i++)
    if (strcmp(x->findings[i].rule, f->rule) == 0 && strcmp(x->findings[i].node, f->node) == 0)
      return;
  if (x->nfindings < QP_ARRAY_LEN(x->findings)) x->findings[x->nfindings++] = *f;
}

int64_t qp__adv_min_rows(const adv_ctx *x) { return x->o.min_rows; }
int qp__adv_next_group(adv_ctx *x) { return ++x->groups; }
const adv_table *qp__adv_table_at(const adv_ctx *x, int i) { return &x->tables[i]; }

/* ---- statements ---------------------------------------------------------- */

qp_status qp__adv_fail_conn(adv_ctx *x, const char *what) {
  if (x->st != QP_OK) return x->st;
  const char *state = qp_conn_sqlstate(x->c);
  const char *m = qp_conn_errmsg(x->c);
  qp_status st = QP_QUERY;
  if (strcmp(state, "57014") == 0) {
    st = QP_TIMEOUT;
    qp__adv_fmt(x->msg, sizeof x->msg, "%s: stopped by statement_timeout (%" PRId64 " ms): %s", what,
             x->o.statement_timeout_ms, m);
  } else if (strcmp(state, "55P03") == 0) {
    st = QP_TIMEOUT;
    qp__adv_fmt(x->msg, sizeof x->msg, "%s: stopped by lock_timeout (%" PRId64 " ms): %s", what,
             x->o.lock_timeout_ms, m);
  } else {
    if (state[0] == '\0') st = QP_UNAVAILABLE;
    qp__adv_fmt(x->msg, sizeof x->msg, "%s: %s%s%s%s", what, m, state[0] ? " (SQLSTATE " : "", state,
             state[0] ? ")" : "");
  }
  x->st = st;
  return st;
}

qp_status qp__adv_q(adv_ctx *x, const char *sql, const qp_param *p, size_t np, qp_result **out) {
  qp_status st = qp__conn_exec_quiet(x->c, sql, p, np, out);
  if (st == QP_NOMEM) {
    x->st = QP_NOMEM;
    qp__adv_fmt(x->msg, sizeof x->msg, "out of memory");
    return st;
  }
  return st;
}

bool qp__adv_qok(adv_ctx *x, const char *sql, const char *what) {
  if (qp__adv_q(x, sql, NULL, 0, NULL) == QP_OK) return true;
  qp__adv_fail_conn(x, what);
  return false;
}

int64_t qp__adv_rint64(qp_result *r, size_t row, size_t col) {
  const char *v = qp_result_value(r, row, col, NULL);
  return v ? strtoll(v, NULL, 10) : -1;
}

void qp__adv_rstr(qp_result *r, size_t row, size_t col, char *out, size_t cap) {
  const char *v = qp_result_value(r, row, col, NULL);
  qp__adv_fmt(out, cap, "%s", v ? v : "");
}

/* BEGIN [READ ONLY] with the advisor's local settings. */
bool qp__adv_begin(adv_ctx *x, bool write) {
  if (!qp__adv_qok(x, write ? "BEGIN" : "BEGIN READ ONLY", "begin")) return false;
  char set[160];
  qp__adv_fmt(set, sizeof set, "SET LOCAL statement_timeout = %" PRId64, x->o.statement_timeout_ms);
  if (!qp__adv_qok(x, set, "statement_timeout")) return false;
  qp__adv_fmt(set, sizeof set, "SET LOCAL lock_timeout = %" PRId64, x->o.lock_timeout_ms);
  if (!qp__adv_qok(x, set, "lock_timeout")) return false;
  return qp__adv_qok(x, "SET LOCAL plan_cache_mode = force_generic_plan", "plan_cache_mode");
}

void qp__adv_rollback(adv_ctx *x) {
  if (qp_conn_txn_status(x->c) != QP_TXN_IDLE) (void)qp__adv_q(x, "ROLLBACK", NULL, 0, NULL);
}

void qp__adv_exec_text(const char *prepared, int nparams, char *out, size_t cap) {
  size_t o = qp__adv_fmt(out, cap, "EXECUTE %s", prepared);
  for (int i = 0; i < nparams && o < cap; i++)
    o += qp__adv_fmt(out + o, cap - o, "%sNULL", i ? ", " : "(");
  if (nparams > 0 && o < cap) qp__adv_fmt(out + o, cap - o, ")");
}

/* The plan of `sql` (or of EXECUTE name(NULL...) when prepared), parsed. */
static qp__plan_tree *plan_of(adv_ctx *x, const char *sql, const char *prepared, int nparams,
                              bool analyze, const char *what) {
  char exec[256];
  if (prepared != NULL) {
    qp__adv_exec_text(prepared, nparams, exec, sizeof exec);
    sql = exec;
  }
  qp__explain_opts eo;
  memset(&eo, 0, sizeof eo);
  eo.analyze = analyze;
  eo.buffers = analyze;
  eo.json = true;
  qp__plan plan;
  if (qp__conn_explain(x->c, sql, NULL, 0, &eo, &plan) != QP_OK) {
    qp__adv_fail_conn(x, what);
    return NULL;
  }
  qp__plan_tree *t = NULL;
  char err[256];
  qp_status st = qp__plan_parse(&x->a->hooks, plan.text, plan.len, &t, err, sizeof err);
  qp__conn_plan_free(x->c, &plan);
  if (st != QP_OK) {
    x->st = st;
    qp__adv_fmt(x->msg, sizeof x->msg, "%s: %s", what, err);
    return NULL;
  }
  return t;
}

/* PREPARE name AS sql; the number of its parameters into *np. */
static bool prepare(adv_ctx *x, const char *name, const char *sql, int *np) {
  qp_buf b;
  qp__buf_init(&b, &x->a->hooks);
  qp__buf_printf(&b, "PREPARE %s AS %s", name, sql);
  if (b.failed) {
    qp__buf_free(&b);
    x->st = QP_NOMEM;
    qp__adv_fmt(x->msg, sizeof x->msg, "out of memory");
    return false;
  }
  bool ok = qp__adv_qok(x, qp__buf_cstr(&b), "prepare");
  qp__buf_free(&b);
  if (!ok) return false;
  qp_result *r = NULL;
  qp_param p = qp_param_text(name);
  if (qp__adv_q(x, "SELECT cardinality(parameter_types) FROM pg_prepared_statements WHERE name = $1", &p, 1,
        &r) != QP_OK) {
    qp__adv_fail_conn(x, "prepare");
    return false;
  }
  *np = qp_result_rows(r) > 0 ? (int)qp__adv_rint64(r, 0, 0) : 0;
  qp_result_free(r);
  return true;
}

static void deallocate(adv_ctx *x) {
  if (x->prepared) (void)qp__adv_q(x, "DEALLOCATE " ADV_PREPARED, NULL, 0, NULL);
  if (x->prepared_fk) (void)qp__adv_q(x, "DEALLOCATE " ADV_PREPARED_FK, NULL, 0, NULL);
  x->prepared = x->prepared_fk = false;
}

/* '?' outside quotes and comments become $1, $2...; *generic is set when
 * the statement has placeholders of either kind. */
static char *placeholders(adv_ctx *x, const char *sql, bool *generic, int *nparams) {
  qp_buf b;
  qp__buf_init(&b, &x->a->hooks);
  int n = 0, maxd = 0;
  for (const char *p = sql; *p;) {
    if (*p == '\'' || *p == '"') {
      char qc = *p;
      const char *s = p++;
      while (*p && !(*p == qc && p[1] != qc)) p += (*p == qc) ? 2 : 1;
      if (*p) p++;
      qp__buf_append(&b, s, (size_t)(p - s));
    } else if (p[0] == '-' && p[1] == '-') {
      const char *s = p;
      while (*p && *p != '\n') p++;
      qp__buf_append(&b, s, (size_t)(p - s));
    } else if (p[0] == '/' && p[1] == '*') {
      const char *s = p;
      const char *e = strstr(p + 2, "*/");
      p = e ? e + 2 : p + strlen(p);
      qp__buf_append(&b, s, (size_t)(p - s));
    } else if (*p == '$' && p[1] >= '0' && p[1] <= '9') {
      int d = atoi(p + 1);
      if (d > maxd) maxd = d;
      qp__buf_append(&b, p, 1);
      p++;
    } else if (*p == '$') {
      /* dollar quote $tag$...$tag$ */
      const char *e = p + 1;
      while (*e && (*e == '_' || (*e >= 'a' && *e <= 'z') || (*e >= 'A' && *e <= 'Z'))) e++;
      if (*e == '$') {
        size_t tl = (size_t)(e - p + 1);
        const char *close = strstr(e + 1, "");
        close = NULL;
        for (const char *k = e + 1; *k; k++)
          if (strncmp(k, p, tl) == 0) { close = k; break; }
        const char *end = close ? close + tl : p + strlen(p);
        qp__buf_append(&b, p, (size_t)(end - p));
        p = end;
      } else {
        qp__buf_append(&b, p, 1);
        p++;
      }
    } else if (*p == '?') {
      qp__buf_printf(&b, "$%d", ++n);
      p++;
    } else {
      qp__buf_append(&b, p, 1);
      p++;
    }
  }
  *generic = n > 0 || maxd > 0;
  *nparams = n > maxd ? n : maxd;
  if (b.failed) {
    qp__buf_free(&b);
    return NULL;
  }
  char *out = qp__strdup(&x->a->hooks, qp__buf_cstr(&b));
  qp__buf_free(&b);
  return out;
}

/* ---- the catalog --------------------------------------------------------- */

static void load_indexes(adv_ctx *x, adv_table *t) {
  qp_result *r = NULL;
  qp_param p = qp_param_text(t->oid);
  const char *sql =
      "SELECT ic.relname, am.amname, x.indisunique, x.indpred IS NOT NULL, k, "
      "pg_get_indexdef(x.indexrelid, k, true), coalesce(oc.opcname, ''), x.indnkeyatts, "
      "coalesce(su.idx_scan, -1), pg_relation_size(x.indexrelid), x.indisprimary "
      "FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid JOIN pg_am am ON am.oid = ic.relam "
      "LEFT JOIN pg_stat_user_indexes su ON su.indexrelid = x.indexrelid "
      "CROSS JOIN LATERAL generate_series(1, least(x.indnkeyatts, 3)) k "
      "LEFT JOIN pg_opclass oc ON oc.oid = (x.indclass::oid[])[k - 1] "
      "WHERE x.indrelid = $1::oid AND x.indisvalid ORDER BY ic.relname, k";
  if (qp__adv_q(x, sql, &p, 1, &r) != QP_OK) return;
  for (size_t i = 0; i < qp_result_rows(r); i++) {
    const char *name = qp_result_value(r, i, 0, NULL);
    adv_index *ix = t->nindexes > 0 ? &t->idx[t->nindexes - 1] : NULL;
    if (ix == NULL || strcmp(ix->name, name) != 0) {
      if (t->nindexes >= ADV_MAX_INDEXES) break;
      ix = &t->idx[t->nindexes++];
      memset(ix, 0, sizeof *ix);
      qp__adv_fmt(ix->name, sizeof ix->name, "%s", name);
      qp__adv_rstr(r, i, 1, ix->am, sizeof ix->am);
      ix->unique = strcmp(qp_result_value(r, i, 2, NULL), "t") == 0;
      ix->partial = strcmp(qp_result_value(r, i, 3, NULL), "t") == 0;
      ix->total_keys = (int)qp__adv_rint64(r, i, 7);
      ix->scans = qp__adv_rint64(r, i, 8);
      ix->size = qp__adv_rint64(r, i, 9);
      ix->primary = strcmp(qp_result_value(r, i, 10, NULL), "t") == 0;
    }
    if (ix->nkeys < ADV_MAX_KEYS) {
      qp__adv_rstr(r, i, 5, ix->keys[ix->nkeys], ADV_KEY);
      qp__adv_rstr(r, i, 6, ix->opc[ix->nkeys], sizeof ix->opc[0]);
      ix->nkeys++;
    }
  }
  qp_result_free(r);
}

int qp__adv_table(adv_ctx *x, const char *relname) {
  for (size_t i = 0; i < x->ntables; i++)
    if (strcmp(x->tables[i].relname, relname) == 0) return x->tables[i].found ? (int)i : -1;
  if (x->ntables >= ADV_MAX_TABLES) return -1;
  adv_table *t = &x->tables[x->ntables++];
  memset(t, 0, sizeof *t);
  qp__adv_fmt(t->relname, sizeof t->relname, "%s", relname);
  t->rows = t->writes = t->reads = -1;
  qp_result *r = NULL;
  qp_param p = qp_param_text(relname);
  const char *sql =
      "SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), "
      "c.reltuples::bigint, coalesce(s.n_tup_ins + s.n_tup_upd + s.n_tup_del, -1), "
      "coalesce(s.seq_tup_read + coalesce(s.idx_tup_fetch, 0), -1) "
      "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
      "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
      "WHERE c.relname = $1 AND c.relkind IN ('r', 'p', 'm') "
      "ORDER BY pg_table_is_visible(c.oid) DESC, n.nspname LIMIT 1";
  if (qp__adv_q(x, sql, &p, 1, &r) != QP_OK || qp_result_rows(r) == 0) {
    qp_result_free(r);
    return -1;
  }
  qp__adv_rstr(r, 0, 0, t->oid, sizeof t->oid);
  qp__adv_rstr(r, 0, 1, t->qual, sizeof t->qual);
  t->rows = qp__adv_rint64(r, 0, 2);
  t->writes = qp__adv_rint64(r, 0, 3);
  t->reads = qp__adv_rint64(r, 0, 4);
  qp_result_free(r);
  t->found = true;
  load_indexes(x, t);
  return (int)(t - x->tables);
}

int qp__adv_column_c_collation(adv_ctx *x, int ti, const char *col) {
  qp_result *r = NULL;
  qp_param p[2] = {qp_param_text(x->tables[ti].oid), qp_param_text(col)};
  const char *sql =
      "SELECT CASE WHEN co.collname IS NULL OR co.collname = 'default' "
      "THEN (SELECT datcollate FROM pg_database WHERE datname = current_database()) "
      "ELSE coalesce(co.collcollate, co.collname) END, coalesce(co.collprovider, 'd') "
      "FROM pg_attribute a LEFT JOIN pg_collation co ON co.oid = a.attcollation "
      "WHERE a.attrelid = $1::oid AND a.attname = $2";
  if (qp__adv_q(x, sql, p, 2, &r) != QP_OK || qp_result_rows(r) == 0) {
    qp_result_free(r);
    return -1;
  }
  const char *coll = qp_result_value(r, 0, 0, NULL);
  const char *prov = qp_result_value(r, 0, 1, NULL);
  int c = coll && (strcmp(coll, "C") == 0 || strcmp(coll, "POSIX") == 0) && prov && prov[0] != 'i';
  qp_result_free(r);
  return c;
}

bool qp__adv_fk(adv_ctx *x, const char *conname, char *child, size_t childlen,
                char cols[ADV_MAX_KEYS][ADV_KEY], int *ncols) {
  qp_result *r = NULL;
  qp_param p = qp_param_text(conname);
  const char *sql =
      "SELECT c.relname, a.attname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
      "CROSS JOIN LATERAL unnest(k.conkey) WITH ORDINALITY u(att, ord) "
      "JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.att "
      "WHERE k.conname = $1 AND k.contype = 'f' ORDER BY k.oid, u.ord";
  *ncols = 0;
  if (qp__adv_q(x, sql, &p, 1, &r) != QP_OK || qp_result_rows(r) == 0) {
    qp_result_free(r);
    return false;
  }
  qp__adv_rstr(r, 0, 0, child, childlen);
  for (size_t i = 0; i < qp_result_rows(r) && *ncols < ADV_MAX_KEYS; i++) {
    if (strcmp(qp_result_value(r, i, 0, NULL), child) != 0) break;
    qp__adv_rstr(r, i, 1, cols[(*ncols)++], ADV_KEY);
  }
  qp_result_free(r);
  return *ncols > 0;
}

/* A key as compared: lower-case, no quotes, spaces, parentheses, casts
 * or direction. */
void qp__adv_key_norm(const char *k, char *out, size_t cap) {
  char tmp[ADV_KEY];
  qp__adv_fmt(tmp, sizeof tmp, "%s", k);
  char *d = strstr(tmp, " DESC");
  if (d) *d = '\0';
  d = strstr(tmp, " ASC");
  if (d) *d = '\0';
  d = strstr(tmp, " text_pattern_ops");
  if (d) *d = '\0';
  size_t o = 0;
  for (const char *p = tmp; *p && o + 1 < cap; p++) {
    if (p[0] == ':' && p[1] == ':') {
      p += 2;
      while (*p && (*p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || *p == ' ' || *p == '[' || *p == ']'))
        if (*p == ' ' && p[1] != '\0' && (p[1] < 'a' || p[1] > 'z')) break;
        else p++;
      p--;
      continue;
    }
    if (*p == ' ' || *p == '"' || *p == '(' || *p == ')') continue;
    out[o++] = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
  }
  out[o] = '\0';
}

static bool pattern_key(const char *k) { return strstr(k, "text_pattern_ops") != NULL; }

/* The existing index that already serves c (its keys begin with c's), or NULL. */
const adv_index *qp__adv_covered(const adv_table *t, const adv_cand *c) {
  for (size_t i = 0; i < t->nindexes; i++) {
    const adv_index *ix = &t->idx[i];
    if (ix->partial || strcmp(ix->am, "btree") != 0 || ix->nkeys < c->nkeys) continue;
    bool same = true;
    for (int k = 0; k < c->nkeys && same; k++) {
      char a[ADV_KEY], b[ADV_KEY];
      qp__adv_key_norm(c->keys[k], a, sizeof a);
      qp__adv_key_norm(ix->keys[k], b, sizeof b);
      same = strcmp(a, b) == 0;
      if (same && pattern_key(c->keys[k]) && strcmp(ix->opc[k], "text_pattern_ops") != 0 &&
          strcmp(ix->opc[k], "varchar_pattern_ops") != 0)
        same = false;
    }
    if (same) return ix;
  }
  return NULL;
}

void qp__adv_keys_join(const adv_cand *c, char *out, size_t cap) {
  size_t o = 0;
  out[0] = '\0';
  for (int i = 0; i < c->nkeys && o < cap; i++)
    o += qp__adv_fmt(out + o, cap - o, "%s%s", i ? ", " : "", c->keys[i]);
}

bool qp__adv_add_cand(adv_ctx *x, const adv_cand *c) {
  const adv_table *t = &x->tables[c->table];
  char kt[700];
  qp__adv_keys_join(c, kt, sizeof kt);
  const adv_index *ix = qp__adv_covered(t, c);
  if (ix != NULL) {
    qp__adv_note(x, "an index on %s (%s) is not suggested: %s already has it (%s)", t->qual, kt,
                 ix->name, ix->nkeys > c->nkeys ? "as the prefix of a wider index" : "same keys");
    return false;
  }
  for (size_t i = 0; i < x->ncands; i++) {
    const adv_cand *o = &x->cands[i];
    if (o->table != c->table || o->nkeys != c->nkeys) continue;
    bool same = strcmp(o->where, c->where) == 0;
    for (int k = 0; k < c->nkeys && same; k++) same = strcmp(o->keys[k], c->keys[k]) == 0;
    if (same) return false;
  }
  if (x->ncands >= ADV_MAX_CANDS) return false;
  adv_cand *n = &x->cands[x->ncands++];
  *n = *c;
  n->ms_after = -1;
  n->base = -1;
  n->size_bytes = -1;
  n->cost_before = n->cost_after = -1;
  return true;
}

/* "Consider dropping" notes from the catalog for every table the plan
 * read: indexes never scanned since the statistics reset, and indexes
 * whose keys are the first keys of another one. */
void qp__adv_catalog_notes(adv_ctx *x) {
  for (size_t ti = 0; ti < x->ntables; ti++) {
    const adv_table *t = &x->tables[ti];
    if (!t->found) continue;
    for (size_t i = 0; i < t->nindexes; i++) {
      const adv_index *a = &t->idx[i];
      if (a->scans == 0 && !a->unique && !a->primary)
        qp__adv_note(x, "consider dropping %s on %s: not scanned since the statistics reset "
                     "(%lld bytes, kept up to date by every write)", a->name, t->qual,
                     (long long)a->size);
      if (a->unique || a->partial || strcmp(a->am, "btree") != 0 || a->total_keys > ADV_MAX_KEYS)
        continue;
      for (size_t j = 0; j < t->nindexes; j++) {
        const adv_index *b = &t->idx[j];
        if (j == i || b->partial || strcmp(b->am, "btree") != 0 || b->total_keys < a->total_keys)
          continue;
        if (b->total_keys == a->total_keys && !b->unique && j < i) continue; /* said once */
        bool prefix = true;
        for (int k = 0; k < a->nkeys && prefix; k++) {
          char ka[ADV_KEY], kb[ADV_KEY];
          qp__adv_key_norm(a->keys[k], ka, sizeof ka);
          qp__adv_key_norm(b->keys[k], kb, sizeof kb);
          prefix = strcmp(ka, kb) == 0 && strcmp(a->opc[k], b->opc[k]) == 0;
        }
        if (!prefix) continue;
        qp__adv_note(x, "consider dropping %s on %s: %s %s", a->name, t->qual,
                     b->total_keys == a->total_keys ? "it has the same keys as"
                                                    : "its keys are a prefix of",
                     b->name);
        break;
      }
    }
  }
}

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

static void create_sql(const adv_ctx *x, const adv_cand *c, const char *name, bool concurrently,
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
  if (!prepare(x, name, sql, &np)) return false;
  *flag = true;
  return true;
}

static qp__plan_tree *target_plan(adv_ctx *x, const adv_cand *c, bool analyze) {
  if (c->verify_sql[0]) {
    if (!reprepare(x, ADV_PREPARED_FK, c->verify_sql, &x->prepared_fk)) return NULL;
    return plan_of(x, NULL, ADV_PREPARED_FK, c->nkeys, false, "verify");
  }
  if (x->generic) {
    if (!reprepare(x, ADV_PREPARED, x->run, &x->prepared)) return NULL;
    return plan_of(x, NULL, ADV_PREPARED, x->nparams, false, "verify");
  }
  return plan_of(x, x->run, NULL, 0, analyze, "verify");
}

static double base_cost(adv_ctx *x, const adv_cand *c, double main_cost) {
  if (!c->verify_sql[0]) return main_cost;
  qp__plan_tree *t = target_plan(x, c, false);
  if (t == NULL) return -1;
  double cost = t->root->total_cost;
  qp__plan_tree_free(t);
  return cost;
}

static void test_hypo(adv_ctx *x, adv_cand *c, double main_cost) {
  c->cost_before = base_cost(x, c, main_cost);
  if (c->cost_before < 0) return;
  char create[1024];
  create_sql(x, c, NULL, false, create, sizeof create);
  qp_param p = qp_param_text(create);
  qp_result *r = NULL;
  if (qp__adv_q(x, "SELECT indexrelid, indexname, hypopg_relation_size(indexrelid) "
           "FROM hypopg_create_index($1)", &p, 1, &r) != QP_OK || qp_result_rows(r) == 0) {
    qp__adv_fmt(c->why, sizeof c->why, "HypoPG refused it: %s", qp_conn_errmsg(x->c));
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

static void test_real(adv_ctx *x, adv_cand *c, double main_cost) {
  if (!qp__adv_begin(x, true)) {
    qp__adv_rollback(x);
    x->st = QP_OK; /* a failed verification is a note, not an error */
    qp__adv_fmt(c->why, sizeof c->why, "could not start a transaction: %s", x->msg);
    return;
  }
  c->cost_before = base_cost(x, c, main_cost);
  char create[1024], analyze[400];
  create_sql(x, c, "qp_advise_candidate", false, create, sizeof create);
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

/* ---- the result ---------------------------------------------------------- */

static int cmp_gain(const void *pa, const void *pb) {
  const qp_advice_index *a = pa, *b = pb;
  double ga = a->cost_before > 0 && a->cost_after >= 0 ? 1 - a->cost_after / a->cost_before : 0;
  double gb = b->cost_before > 0 && b->cost_after >= 0 ? 1 - b->cost_after / b->cost_before : 0;
  return ga < gb ? 1 : ga > gb ? -1 : 0;
}

void qp__adv_emit(adv_ctx *x, bool verified) {
  qp_advice *a = x->a;
  size_t n = 0;
  for (size_t i = 0; i < x->ncands; i++)
    if (x->cands[i].accepted) n++;
  if (n > 0) {
    a->idx = qp__calloc(&a->hooks, n, sizeof *a->idx);
    if (a->idx == NULL) {
      a->failed = true;
      return;
    }
  }
  for (size_t i = 0; i < x->ncands; i++) {
    adv_cand *c = &x->cands[i];
    if (!c->accepted) continue;
    qp_advice_index *s = &a->idx[a->nidx++];
    const adv_table *t = &x->tables[c->table];
    char buf[1024];
    if (x->sqlite) {
      /* SQLite needs a name and has no CONCURRENTLY: table_key_key_idx */
      char name[ADV_NAME * 2];
      size_t o = qp__adv_fmt(name, sizeof name, "%s", t->relname);
      for (int k = 0; k < c->nkeys; k++) {
        o += qp__adv_fmt(name + o, sizeof name - o, "_");
        for (const char *p = c->keys[k]; *p && *p != ' ' && o + 1 < sizeof name; p++)
          if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_')
            name[o++] = *p;
        name[o] = '\0';
      }
      qp__adv_fmt(name + o, sizeof name - o, "_idx");
      char qn[ADV_NAME * 2 + 4];
      qp__adv_ident(name, qn, sizeof qn);
      create_sql(x, c, qn, false, buf, sizeof buf);
    } else {
      create_sql(x, c, NULL, true, buf, sizeof buf);
    }
    s->statement = astr(a, buf);
    s->table = astr(a, t->qual);
    qp__adv_keys_join(c, buf, sizeof buf);
    s->columns = astr(a, buf);
    s->method = astr(a, "btree");
    s->opclass = c->opclass[0] ? astr(a, c->opclass) : NULL;
    s->where = c->where[0] ? astr(a, c->where) : NULL;
    s->include = c->include[0] ? astr(a, c->include) : NULL;
    s->rule = astr(a, c->rule);
    s->reason = astr(a, c->reason);
    s->nkeys = c->nkeys;
    s->verified = !verified                              ? QP_ADVICE_UNVERIFIED
                  : x->sqlite                            ? QP_ADVICE_COPY
                  : x->o.verify == QP_ADVISE_VERIFY_REAL ? QP_ADVICE_REAL
                                                         : QP_ADVICE_HYPO;
    s->cost_unreliable = c->expr && s->verified == QP_ADVICE_HYPO;
    s->cost_before = verified ? c->cost_before : -1;
    s->cost_after = verified ? c->cost_after : -1;
    s->required_ratio = verified ? c->ratio : 0;
    s->ms_before = c->ms_before;
    s->ms_after = verified ? c->ms_after : -1;
    s->size_bytes = verified ? c->size_bytes : -1;
    s->table_rows = t->rows;
    s->table_writes = t->writes;
    s->table_reads = t->reads;
    if (t->writes > 0 && t->reads >= 0 && t->writes > t->reads) {
      qp__adv_fmt(buf, sizeof buf, "%s is mostly written: %lld rows written and %lld rows read "
               "since the statistics reset; the index slows every write", t->qual,
               (long long)t->writes, (long long)t->reads);
      s->write_warning = astr(a, buf);
    }
  }
  if (a->nidx > 1) qsort(a->idx, a->nidx, sizeof *a->idx, cmp_gain);
  if (x->nfindings > 0) {
    a->fnd = qp__calloc(&a->hooks, x->nfindings, sizeof *a->fnd);
    if (a->fnd == NULL) {
      a->failed = true;
      return;
    }
    for (size_t i = 0; i < x->nfindings; i++) {
      const adv_finding *f = &x->findings[i];
      qp_advice_finding *o = &a->fnd[a->nfnd++];
      o->rule = astr(a, f->rule);
      o->table = f->table[0] ? astr(a, f->table) : NULL;
      o->node = astr(a, f->node);
      o->message = astr(a, f->message);
      o->action = astr(a, f->action);
    }
  }
}

/* ---- the call ------------------------------------------------------------ */

static qp_status refuse(char *errbuf, size_t errlen, const char *fmt, const char *what) {
  return qp__errbuf_set(errbuf, errlen, QP_REFUSED, fmt, what);
}

static void advise_run(adv_ctx *x) {
  const qp_stmt_info *unused = NULL;
  (void)unused;
  /* the statement's plan */
  if (x->generic) {
    if (!prepare(x, ADV_PREPARED, x->run, &x->nparams)) return;
    x->prepared = true;
  }
  if (!qp__adv_begin(x, x->write_txn)) return;
  qp__plan_tree *t = x->generic ? plan_of(x, NULL, ADV_PREPARED, x->nparams, false, "explain")
                                : plan_of(x, x->run, NULL, 0, x->analyze, "explain");
  if (t == NULL) return;
  qp_advice *a = x->a;
  a->sum.executed = x->analyze && t->analyzed;
  a->sum.cost = t->root->total_cost;
  a->sum.ms = t->analyzed ? t->execution_ms : -1;
  double main_cost = t->root->total_cost;
  /* hypopg? */
  qp_result *r = NULL;
  if (qp__adv_q(x, "SELECT 1 FROM pg_extension WHERE extname = 'hypopg'", NULL, 0, &r) == QP_OK)
    x->hypopg = qp_result_rows(r) > 0;
  qp_result_free(r);
  a->sum.hypopg = x->hypopg;
  qp__adv_rules(x, t);
  qp__adv_catalog_notes(x);
  if (x->st == QP_OK && x->ncands > 0 && !x->write &&
      (x->o.verify == QP_ADVISE_VERIFY_REAL || (x->o.verify == QP_ADVISE_VERIFY_HYPO && x->hypopg)))
    qp__adv_need_columns(x);
  for (size_t i = 0; i < x->ncands; i++)
    if (x->cands[i].ms_before < 0 && !x->cands[i].verify_sql[0] && t->analyzed)
      x->cands[i].ms_before = t->execution_ms;
  qp__plan_tree_free(t);
  if (x->st != QP_OK) return;
  bool verified = false;
  if (x->o.verify == QP_ADVISE_VERIFY_HYPO && x->hypopg) {
    for (size_t i = 0; i < x->ncands && x->st == QP_OK; i++) test_hypo(x, &x->cands[i], main_cost);
    (void)qp__adv_q(x, "SELECT hypopg_reset()", NULL, 0, NULL);
    if (x->st == QP_OK) qp__adv_judge(x, "HypoPG");
    if (x->st == QP_OK) qp__adv_include(x, test_hypo, main_cost);
    verified = true;
  }
  qp__adv_rollback(x);
  if (x->st != QP_OK) return;
  if (x->o.verify == QP_ADVISE_VERIFY_REAL) {
    for (size_t i = 0; i < x->ncands && x->st == QP_OK; i++) test_real(x, &x->cands[i], main_cost);
    if (x->st == QP_OK) qp__adv_judge(x, "real index, rolled back");
    if (x->st == QP_OK) qp__adv_include(x, test_real, main_cost);
    verified = true;
  }
  if (!verified) {
    /* unverified: the full candidate of each group */
    for (int g = 1; g <= x->groups; g++) {
      adv_cand *full = NULL;
      for (size_t i = 0; i < x->ncands; i++)
        if (x->cands[i].group == g && (full == NULL || x->cands[i].nkeys > full->nkeys))
          full = &x->cands[i];
      if (full) full->accepted = true;
    }
    if (x->ncands > 0)
      qp__adv_note(x, x->o.verify == QP_ADVISE_VERIFY_NONE
                          ? "suggestions are unverified (verify none)"
                          : "suggestions are unverified: HypoPG is not installed in this database "
                            "(CREATE EXTENSION hypopg) and verify is not real");
  }
  for (size_t i = 0; i < x->ncands; i++)
    if (x->cands[i].accepted && x->cands[i].expr && verified &&
        x->o.verify == QP_ADVISE_VERIFY_HYPO)
      qp__adv_note(x, "hypothetical cost unreliable for the expression index on %s: the "
                   "expression has no statistics until a real index is ANALYZEd (verify real "
                   "measures it)", x->tables[x->cands[i].table].qual);
  qp__adv_emit(x, verified);
}

qp_status qp_advise_conn(qp_conn *conn, const char *sql, const qp_advise_options *o,
                         qp_advice **out, char *errbuf, size_t errlen) {
  return qp__advise_conn_impl(conn, sql, o, out, errbuf, errlen, false);
}

qp_status qp__advise_conn_impl(qp_conn *conn, const char *sql, const qp_advise_options *o,
                               qp_advice **out, char *errbuf, size_t errlen, bool on_copy) {
  if (out != NULL) *out = NULL;
  if (conn == NULL || sql == NULL || out == NULL)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "advise: connection, sql and out are required");
  qp_advise_options opts;
  qp_advise_options_init(&opts);
  if (o != NULL) {
    if (o->size < QP_ADVISE_OPTIONS_V1_SIZE)
      return qp__errbuf_set(errbuf, errlen, QP_INVALID,
                            "advise: options without a size (call qp_advise_options_init)");
    memcpy(&opts, o, o->size < sizeof opts ? o->size : sizeof opts);
    opts.size = sizeof opts;
  }
  if (opts.statement_timeout_ms < 1 || opts.lock_timeout_ms < 1 || opts.min_rows < 0 ||
      (unsigned)opts.verify > QP_ADVISE_VERIFY_NONE)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID,
                          "advise: timeouts must be >= 1 ms, min_rows >= 0, verify hypo|real|none");
  const bool is_sqlite = qp__conn_ops(conn)->dialect == QP_DIALECT_SQLITE;
  const qp_dialect dialect = qp__conn_ops(conn)->dialect;
  if (qp_conn_txn_status(conn) != QP_TXN_IDLE)
    return qp__errbuf_set(errbuf, errlen, QP_STATE,
                          "advise: the lease is inside a transaction; advise needs its own");
  /* one statement */
  size_t len = strlen(sql), pos = 0, start = 0, slen = 0, n = 0, s0 = 0, l0 = 0;
  while (qp_sql_split_next(dialect, sql, len, &pos, &start, &slen)) {
    if (n++ == 0) s0 = start, l0 = slen;
  }
  if (n == 0) return refuse(errbuf, errlen, "advise: %s", "no statement");
  if (n > 1)
    return refuse(errbuf, errlen, "advise: refused: %s", "several statements (one per call)");
  qp_stmt_info info;
  info.size = sizeof info;
  qp_sql_classify(dialect, sql + s0, l0, &info);
  const char *kind = qp_stmt_kind_name(info.kind);
  switch (info.kind) {
  case QP_STMT_SELECT:
  case QP_STMT_INSERT:
  case QP_STMT_UPDATE:
  case QP_STMT_DELETE:
  case QP_STMT_MERGE:
    break;
  case QP_STMT_DDL:
    return qp__errbuf_set(errbuf, errlen, QP_REFUSED,
                          "advise: refused: a DDL statement (%s) is never run or explained",
                          qp_ddl_name(info.ddl));
  default:
    return qp__errbuf_set(errbuf, errlen, QP_REFUSED,
                          "advise: refused: a %s statement is not a query to advise on",
                          info.kind == QP_STMT_OTHER ? "statement the classifier cannot place (it"
                                                       " is" : kind);
  }
  if (info.changes_session || info.tcl != QP_TCL_NONE || info.ddl != QP_DDL_NONE ||
      info.select_into)
    return qp__errbuf_set(errbuf, errlen, QP_REFUSED,
                          "advise: refused: the statement changes the session or creates tables");
  /* EXPLAIN/SHOW classify as select: only real queries are advised on */
  {
    size_t i = s0;
    while (i < s0 + l0 && (sql[i] == ' ' || sql[i] == '\n' || sql[i] == '\t' || sql[i] == '('))
      i++;
    if (strncasecmp(sql + i, "explain", 7) == 0 || strncasecmp(sql + i, "show", 4) == 0)
      return refuse(errbuf, errlen, "advise: refused: %s", "EXPLAIN and SHOW are not queries to advise on");
  }
  qp_advice *a = qp__calloc(opts.hooks, 1, sizeof *a);
  if (a == NULL) return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  qp__hooks_init(&a->hooks, opts.hooks);
  adv_ctx *x = qp__calloc(&a->hooks, 1, sizeof *x);
  if (x == NULL) {
    qp_advice_free(a);
    return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  }
  x->c = conn;
  x->o = opts;
  x->a = a;
  x->sql = sql;
  char *stmt = qp__strndup(&a->hooks, sql + s0, l0);
  if (is_sqlite) {
    x->run = stmt; /* SQLite: placeholders get representative values in sqlite.c */
  } else {
    x->run = stmt ? placeholders(x, stmt, &x->generic, &x->nparams) : NULL;
    qp__free(&a->hooks, stmt);
  }
  x->write = !info.read_only;
  x->write_txn = x->write && opts.analyze_writes;
  /* SQLite runs on a copy: read-only statements are always measured there */
  x->analyze = !x->generic && (x->write ? opts.analyze_writes : (opts.analyze || is_sqlite));
  a->sum.query = astr(a, sql);
  a->sum.kind = astr(a, kind);
  a->sum.read_only = info.read_only;
  a->sum.verify = opts.verify;
  a->sum.ms = -1;
  a->sum.plan_source = astr(a, is_sqlite ? (x->analyze ? "copy: explain query plan, measured runs"
                                                       : "copy: explain query plan")
                               : x->generic ? "generic plan"
                               : x->analyze ? "explain analyze"
                                            : "explain");
  if (x->run == NULL || a->failed) {
    qp__free(&a->hooks, x->run);
    qp__free(&a->hooks, x);
    qp_advice_free(a);
    return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  }
  if (x->write && !opts.analyze_writes && (opts.analyze || x->generic))
    qp__adv_note(x, "the statement writes: it was only EXPLAINed, not run (analyze_writes runs it "
                 "inside BEGIN ... ROLLBACK)");
  if (x->generic)
    qp__adv_note(x, "the statement has placeholders: the advice rests on a generic plan "
                 "(PREPARE, plan_cache_mode = force_generic_plan, EXPLAIN EXECUTE), not on a run");
  x->sqlite = is_sqlite;
  x->on_copy = on_copy;
  if (is_sqlite) {
    qp__adv_sqlite(x);
  } else {
    advise_run(x);
    qp__adv_rollback(x);
    deallocate(x);
  }
  qp_status st = x->st;
  if (st == QP_OK && a->failed) {
    st = QP_NOMEM;
    qp__adv_fmt(x->msg, sizeof x->msg, "out of memory");
  }
  if (st != QP_OK) {
    char red[QP_ERRMSG_MAX];
    qp_dsn_redact(x->msg, red, sizeof red);
    qp__errbuf_set(errbuf, errlen, st, "advise: %s", red);
    qp__free(&a->hooks, x->run);
    qp__free(&a->hooks, x);
    qp_advice_free(a);
    return st;
  }
  qp__free(&a->hooks, x->run);
  qp__free(&a->hooks, x);
  *out = a;
  return QP_OK;
}

qp_status qp_advise_dsn(const char *dsn, const char *sql, const qp_advise_options *o,
                        qp_advice **out, char *errbuf, size_t errlen) {
  if (out != NULL) *out = NULL;
  if (dsn == NULL || sql == NULL || out == NULL)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "advise: dsn, sql and out are required");
  if (qp__backend_for_dsn(dsn)->dialect == QP_DIALECT_SQLITE)
    return qp__adv_sqlite_dsn(dsn, sql, o, out, errbuf, errlen);
  qp_pool_options po;
  qp_pool_options_init(&po);
  po.dsn = dsn;
  po.min_size = 0;
  po.max_size = 1;
  po.connect_timeout_ms = 5000;
  po.acquire_timeout_ms = 6000;
  po.idle_timeout_ms = 0;
  po.max_lifetime_ms = 0;
  po.leak_ms = 0;
  po.slow_ms = 0;
  if (o != NULL && o->size >= QP_ADVISE_OPTIONS_V1_SIZE) po.hooks = o->hooks;
  qp_pool *pool = NULL;
  char msg[QP_ERRMSG_MAX];
  qp_status st = qp_pool_open(&pool, &po, msg, sizeof msg);
  if (st != QP_OK) return qp__errbuf_set(errbuf, errlen, st, "advise: %s", msg);
  qp_conn *c = NULL;
  st = qp_pool_acquire_msg(pool, &c, -1, msg, sizeof msg);
  if (st != QP_OK) {
    qp_pool_close(pool);
    return qp__errbuf_set(errbuf, errlen, st == QP_EXHAUSTED ? QP_UNAVAILABLE : st,
                          "advise: cannot connect: %s", msg);
  }
  st = qp_advise_conn(c, sql, o, out, errbuf, errlen);
  qp_pool_release(c);
  qp_pool_close(pool);
  return st;
}
