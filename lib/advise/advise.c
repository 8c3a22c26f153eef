/*
 * The index advisor (include/qprof/advise.h): the API, the advice it hands
 * out, and the call: the statement classified, its plan inside a
 * rolled-back transaction, candidates from rules.c checked against the
 * catalog (catalog.c), verified (verify.c), INCLUDE variants (include.c),
 * SQLite on a copy (sqlite.c).
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
qp__plan_tree *qp__adv_plan_of(adv_ctx *x, const char *sql, const char *prepared, int nparams,
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
bool qp__adv_prepare(adv_ctx *x, const char *name, const char *sql, int *np) {
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
      qp__adv_create_sql(x, c, qn, false, buf, sizeof buf);
    } else {
      qp__adv_create_sql(x, c, NULL, true, buf, sizeof buf);
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
    if (!qp__adv_prepare(x, ADV_PREPARED, x->run, &x->nparams)) return;
    x->prepared = true;
  }
  if (!qp__adv_begin(x, x->write_txn)) return;
  qp__plan_tree *t = x->generic ? qp__adv_plan_of(x, NULL, ADV_PREPARED, x->nparams, false, "explain")
                                : qp__adv_plan_of(x, x->run, NULL, 0, x->analyze, "explain");
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
    for (size_t i = 0; i < x->ncands && x->st == QP_OK; i++) qp__adv_try_hypo(x, &x->cands[i], main_cost);
    (void)qp__adv_q(x, "SELECT hypopg_reset()", NULL, 0, NULL);
    if (x->st == QP_OK) qp__adv_judge(x, "HypoPG");
    if (x->st == QP_OK) qp__adv_include(x, qp__adv_try_hypo, main_cost);
    verified = true;
  }
  qp__adv_rollback(x);
  if (x->st != QP_OK) return;
  if (x->o.verify == QP_ADVISE_VERIFY_REAL) {
    for (size_t i = 0; i < x->ncands && x->st == QP_OK; i++) qp__adv_try_real(x, &x->cands[i], main_cost);
    if (x->st == QP_OK) qp__adv_judge(x, "real index, rolled back");
    if (x->st == QP_OK) qp__adv_include(x, qp__adv_try_real, main_cost);
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
