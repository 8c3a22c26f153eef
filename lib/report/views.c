/* Views of a built report (include/qprof/report.h): the queries ranked by
 * another key, the queries grouped (per database), the errors grouped by
 * code. Each is computed from the report's entries on request, so a
 * renderer that shows one view pays for that one only. */
#include <stdlib.h>
#include <string.h>

#include "report/report_int.h"

/* ---- other rankings --------------------------------------------------------- */

typedef struct rank_arg {
  const qp_report *r;
  qp_report_sort key;
} rank_arg;

static int cmp_idx(const void *a, const void *b, void *arg) {
  const rank_arg *ra = arg;
  return qp__report_rank_cmp(&ra->r->v[*(const size_t *)a], &ra->r->v[*(const size_t *)b], ra->key);
}

qp_status qp_report_rank(qp_report *r, qp_report_sort key, size_t *idx, size_t n, size_t *out_n) {
  if (r == NULL) return QP_INVALID;
  qp__err_clear(&r->err);
  if (out_n == NULL || (idx == NULL && n > 0))
    return qp__err_set(&r->err, QP_INVALID, "idx or out_n is NULL");
  *out_n = 0;
  if (qp_report_sort_name(key) == NULL)
    return qp__err_set(&r->err, QP_INVALID, "unknown sort key %d", (int)key);
  size_t k = n < r->n ? n : r->n;
  if (k == 0) return QP_OK;
  if (key == r->sort) {
    /* the report is ranked so already */
    for (size_t i = 0; i < k; i++) idx[i] = i;
    *out_n = k;
    return QP_OK;
  }
  size_t *all = qp__malloc(&r->hooks, r->n * sizeof *all);
  if (all == NULL) return qp__err_set(&r->err, QP_NOMEM, "out of memory");
  for (size_t i = 0; i < r->n; i++) all[i] = i;
  rank_arg ra = {.r = r, .key = key};
  qsort_r(all, r->n, sizeof *all, cmp_idx, &ra);
  memcpy(idx, all, k * sizeof *idx);
  qp__free(&r->hooks, all);
  *out_n = k;
  return QP_OK;
}

/* ---- groups ------------------------------------------------------------------ */

typedef struct group_arg {
  const qp_report *r;
  qp_report_group_by by;
} group_arg;

static const char *dim_of(const qp_rentry *e, qp_report_group_by by) {
  switch (by) {
  case QP_REPORT_BY_DATABASE: return e->database;
  case QP_REPORT_BY_USER: return e->s.user;
  case QP_REPORT_BY_APPLICATION: return e->s.application;
  case QP_REPORT_BY_HOST: return e->s.host;
  }
  return "";
}

/* The group of an entry: database groups are per backend too. */
static int cmp_in_group(const group_arg *g, const qp_rentry *x, const qp_rentry *y) {
  int c = g->by == QP_REPORT_BY_DATABASE ? strcmp(x->s.backend, y->s.backend) : 0;
  return c != 0 ? c : strcmp(dim_of(x, g->by), dim_of(y, g->by));
}

/* By group, then by query (fingerprint, backend), to count distinct ones. */
static int cmp_member(const void *a, const void *b, void *arg) {
  const group_arg *g = arg;
  const qp_rentry *x = &g->r->v[*(const size_t *)a], *y = &g->r->v[*(const size_t *)b];
  int c = cmp_in_group(g, x, y);
  if (c != 0) return c;
  if (x->s.fingerprint != y->s.fingerprint) return x->s.fingerprint < y->s.fingerprint ? -1 : 1;
  return x->backend < y->backend ? -1 : x->backend > y->backend;
}

typedef struct group_acc {
  qp_report_group g;
  qp_hist hist;
} group_acc;

/* groups by total time descending, then backend and key */
static int cmp_group(const void *a, const void *b) {
  const group_acc *x = a, *y = b;
  if (x->g.total_ns != y->g.total_ns) return x->g.total_ns > y->g.total_ns ? -1 : 1;
  int c = strcmp(x->g.backend, y->g.backend);
  return c != 0 ? c : strcmp(x->g.key, y->g.key);
}

qp_status qp_report_groups(qp_report *r, qp_report_group_by by, qp_report_group_fn fn, void *ud) {
  if (r == NULL) return QP_INVALID;
  qp__err_clear(&r->err);
  if (fn == NULL) return qp__err_set(&r->err, QP_INVALID, "fn is NULL");
  if (qp_report_group_by_name(by) == NULL)
    return qp__err_set(&r->err, QP_INVALID, "unknown grouping %d", (int)by);
  if (!(r->by & QP_REPORT_KEY(by)))
    return qp__err_set(&r->err, QP_INVALID,
                       "the report is not broken down by %s: its rows merge it (add it to "
                       "qp_report_options.by)",
                       qp_report_group_by_name(by));
  if (r->n == 0) return QP_OK;
  size_t *ord = qp__malloc(&r->hooks, r->n * sizeof *ord);
  group_acc *g = qp__calloc(&r->hooks, r->n, sizeof *g);
  qp_status rc = QP_OK;
  size_t ng = 0;
  if (ord == NULL || g == NULL) {
    rc = qp__err_set(&r->err, QP_NOMEM, "out of memory");
    goto done;
  }
  for (size_t i = 0; i < r->n; i++) ord[i] = i;
  group_arg ga = {.r = r, .by = by};
  qsort_r(ord, r->n, sizeof *ord, cmp_member, &ga);
  for (size_t i = 0; i < r->n; i++) {
    const qp_rentry *e = &r->v[ord[i]], *prev = i > 0 ? &r->v[ord[i - 1]] : NULL;
    bool fresh = ng == 0 || cmp_in_group(&ga, e, prev) != 0;
    if (fresh) {
      group_acc *a = &g[ng++];
      qp__hist_init(&a->hist);
      a->g.backend = e->s.backend;
      a->g.key = dim_of(e, by);
      a->g.min_ns = e->s.min_ns;
      a->g.max_ns = e->s.max_ns;
    }
    group_acc *a = &g[ng - 1];
    if (a->g.backend[0] != '\0' && strcmp(a->g.backend, e->s.backend) != 0) a->g.backend = "";
    if (fresh || e->s.fingerprint != prev->s.fingerprint || e->backend != prev->backend)
      a->g.queries++;
    a->g.calls += e->s.calls;
    a->g.errors += e->s.errors;
    a->g.rows += e->s.rows;
    a->g.total_ns += e->s.total_ns;
    if (e->s.min_ns < a->g.min_ns) a->g.min_ns = e->s.min_ns;
    if (e->s.max_ns > a->g.max_ns) a->g.max_ns = e->s.max_ns;
    if (!qp__hist_merge(&a->hist, &e->hist, &r->hooks)) {
      rc = qp__err_set(&r->err, QP_NOMEM, "out of memory");
      goto done;
    }
  }
  for (size_t i = 0; i < ng; i++) {
    qp_report_group *x = &g[i].g;
    double lo = (double)x->min_ns, hi = (double)x->max_ns;
    x->share = r->t.total_ns > 0 ? (double)x->total_ns / (double)r->t.total_ns : 0;
    x->mean_ns = x->calls > 0 ? (double)x->total_ns / (double)x->calls : 0;
    x->p50_ns = qp__hist_quantile(&g[i].hist, 0.50, lo, hi);
    x->p95_ns = qp__hist_quantile(&g[i].hist, 0.95, lo, hi);
    x->p99_ns = qp__hist_quantile(&g[i].hist, 0.99, lo, hi);
  }
  qsort(g, ng, sizeof *g, cmp_group);
  for (size_t i = 0; i < ng; i++)
    if (fn(&g[i].g, ud) != 0) break;
done:
  for (size_t i = 0; g != NULL && i < ng; i++) qp__hist_free(&g[i].hist, &r->hooks);
  qp__free(&r->hooks, g);
  qp__free(&r->hooks, ord);
  return rc;
}

/* ---- errors by code ------------------------------------------------------- */

typedef struct code_row {
  char code[64];
  uint64_t count;
  size_t query; /* index in the ranking */
} code_row;

static int cmp_code_row(const void *a, const void *b) {
  const code_row *x = a, *y = b;
  int c = strcmp(x->code, y->code);
  if (c != 0) return c;
  /* within a code: most errors first, then the earlier query */
  if (x->count != y->count) return x->count > y->count ? -1 : 1;
  return x->query < y->query ? -1 : x->query > y->query;
}

static int cmp_code(const void *a, const void *b) {
  const qp_report_error_code *x = a, *y = b;
  if (x->errors != y->errors) return x->errors > y->errors ? -1 : 1;
  return strcmp(x->code, y->code);
}

/* Parses "CODE:count,CODE:count" (qp_query_summary.error_codes) into rows;
 * returns how many, or SIZE_MAX when out of memory. A malformed part ends
 * the list (codes are cleaned when recorded, so none is expected). */
static size_t parse_codes(qp_report *r, code_row **v, size_t *n, size_t *cap, const char *codes,
                          size_t query) {
  const char *p = codes;
  size_t added = 0;
  while (*p != '\0') {
    const char *colon = strchr(p, ':');
    if (colon == NULL || colon == p) break;
    char *end;
    unsigned long long c = strtoull(colon + 1, &end, 10);
    if (end == colon + 1) break;
    if (*n == *cap) {
      size_t nc = *cap ? *cap * 2 : 16;
      code_row *nv = qp__realloc(&r->hooks, *v, nc * sizeof *nv);
      if (nv == NULL) return SIZE_MAX;
      *v = nv;
      *cap = nc;
    }
    code_row *x = &(*v)[(*n)++];
    size_t len = (size_t)(colon - p);
    if (len >= sizeof x->code) len = sizeof x->code - 1;
    memcpy(x->code, p, len);
    x->code[len] = '\0';
    x->count = c;
    x->query = query;
    added++;
    p = *end == ',' ? end + 1 : end;
  }
  return added;
}

qp_status qp_report_errors(qp_report *r, qp_report_error_fn fn, void *ud) {
  if (r == NULL) return QP_INVALID;
  qp__err_clear(&r->err);
  if (fn == NULL) return qp__err_set(&r->err, QP_INVALID, "fn is NULL");
  code_row *v = NULL;
  size_t n = 0, cap = 0;
  qp_report_error_code *out = NULL;
  qp_status rc = QP_OK;
  for (size_t i = 0; i < r->n; i++) {
    if (r->v[i].s.errors == 0) continue;
    if (parse_codes(r, &v, &n, &cap, r->v[i].codes, i) == SIZE_MAX) {
      rc = qp__err_set(&r->err, QP_NOMEM, "out of memory");
      goto done;
    }
  }
  if (n == 0) goto done;
  qsort(v, n, sizeof *v, cmp_code_row);
  out = qp__calloc(&r->hooks, n, sizeof *out);
  if (out == NULL) {
    rc = qp__err_set(&r->err, QP_NOMEM, "out of memory");
    goto done;
  }
  size_t no = 0;
  for (size_t i = 0; i < n; i++) {
    if (no == 0 || strcmp(v[i].code, out[no - 1].code) != 0) {
      /* the first row of a code is its query with the most errors */
      out[no++] = (qp_report_error_code){.code = v[i].code, .top_query = v[i].query,
                                         .top_errors = v[i].count};
    }
    qp_report_error_code *o = &out[no - 1];
    o->errors += v[i].count;
    o->queries++;
  }
  for (size_t i = 0; i < no; i++)
    out[i].share = r->t.errors > 0 ? (double)out[i].errors / (double)r->t.errors : 0;
  qsort(out, no, sizeof *out, cmp_code);
  for (size_t i = 0; i < no; i++)
    if (fn(&out[i], ud) != 0) break;
done:
  qp__free(&r->hooks, out);
  qp__free(&r->hooks, v);
  return rc;
}
