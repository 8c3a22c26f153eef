/* A report's time series and latency histograms (include/qprof/report.h). */
#include <stdlib.h>
#include <string.h>

#include "report/report_int.h"

/* ---- histograms ------------------------------------------------------------ */

static qp_status walk_hist(const qp_hist *h, qp_report_bin_fn fn, void *ud) {
  int32_t first, last;
  if (!qp__hist_range(h, &first, &last)) return QP_OK;
  for (int32_t i = first; i <= last; i++) {
    uint64_t c = h->counts[i - h->lo];
    if (c == 0) continue;
    /* bucket i covers (gamma^(i-1), gamma^i] (stats_int.h) */
    qp_report_bin b = {.lo_ns = i == 0 ? 0 : qp__hist_value(i - 1) * (QP_HIST_GAMMA + 1) / 2,
                       .hi_ns = qp__hist_value(i) * (QP_HIST_GAMMA + 1) / 2,
                       .count = c};
    if (fn(&b, ud) != 0) break;
  }
  return QP_OK;
}

qp_status qp_report_histogram(qp_report *r, size_t i, qp_report_bin_fn fn, void *ud) {
  if (r == NULL || fn == NULL) return QP_INVALID;
  qp__err_clear(&r->err);
  if (i != QP_REPORT_ALL) {
    if (i >= r->n) return qp__err_set(&r->err, QP_INVALID, "no query %zu in the report", i);
    return walk_hist(&r->v[i].hist, fn, ud);
  }
  qp_hist all;
  qp__hist_init(&all);
  for (size_t k = 0; k < r->n; k++) {
    if (!qp__hist_merge(&all, &r->v[k].hist, &r->hooks)) {
      qp__hist_free(&all, &r->hooks);
      return qp__err_set(&r->err, QP_NOMEM, "out of memory");
    }
  }
  qp_status rc = walk_hist(&all, fn, ud);
  qp__hist_free(&all, &r->hooks);
  return rc;
}

/* ---- time series ---------------------------------------------------------- */

typedef struct point {
  int64_t start_s;
  qp_stats st;
} point;

/* The points of one series: open addressing by start_s. */
typedef struct ptab {
  point *v;
  size_t cap, n;
} ptab;

/* Which series an entry of the report feeds (qp_report_series_set). */
typedef struct pick {
  size_t entry, which;
} pick;

typedef struct series_ctx {
  qp_report *r;
  const qp_rentry *only; /* one query; NULL: see picks */
  const pick *picks;     /* sorted by entry; NULL with only NULL: every query together */
  size_t npicks;
  bool all;              /* the last table gets every query of the report */
  int64_t step_s;        /* 0: one point per stored bucket */
  ptab *tabs;
  size_t ntabs;
} series_ctx;

static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
  return q;
}

static size_t slot_of(int64_t start_s, size_t cap) {
  uint64_t h = (uint64_t)start_s * 0x9e3779b97f4a7c15ull;
  return (size_t)(h >> 17) & (cap - 1);
}

static bool grow(const qp_hooks *hooks, ptab *t) {
  size_t cap = t->cap ? t->cap * 2 : 64;
  point *v = qp__calloc(hooks, cap, sizeof *v);
  if (v == NULL) return false;
  for (size_t i = 0; i < cap; i++) v[i].start_s = INT64_MIN;
  for (size_t i = 0; i < t->cap; i++) {
    if (t->v[i].start_s == INT64_MIN) continue;
    size_t j = slot_of(t->v[i].start_s, cap);
    while (v[j].start_s != INT64_MIN) j = (j + 1) & (cap - 1);
    v[j] = t->v[i];
  }
  qp__free(hooks, t->v);
  t->v = v;
  t->cap = cap;
  return true;
}

static qp_status add_to(series_ctx *c, ptab *t, int64_t start, const qp_stats *st) {
  qp_report *r = c->r;
  if ((t->n + 1) * 2 > t->cap && !grow(&r->hooks, t))
    return qp__err_set(&r->err, QP_NOMEM, "out of memory");
  size_t j = slot_of(start, t->cap);
  while (t->v[j].start_s != INT64_MIN && t->v[j].start_s != start) j = (j + 1) & (t->cap - 1);
  point *p = &t->v[j];
  if (p->start_s == INT64_MIN) {
    p->start_s = start;
    qp__stats_init(&p->st);
    t->n++;
  }
  if (!qp__stats_merge(&p->st, st, &r->hooks)) return qp__err_set(&r->err, QP_NOMEM, "out of memory");
  return QP_OK;
}

static int cmp_pick(const void *a, const void *b) {
  const pick *x = a, *y = b;
  if (x->entry != y->entry) return x->entry < y->entry ? -1 : 1;
  return x->which < y->which ? -1 : x->which > y->which;
}

static qp_status series_row(void *ud, const qp_entry *row) {
  series_ctx *c = ud;
  qp_report *r = c->r;
  int64_t start = c->step_s > 0 ? floor_div(row->bucket, c->step_s) * c->step_s : row->bucket;
  if (c->only != NULL && (row->fingerprint != c->only->s.fingerprint ||
                          row->backend != c->only->backend))
    return QP_OK;
  /* the rows the report's dimension filters kept, merged by its key */
  int keep = qp__report_keep_row(r, row);
  if (keep < 0) return qp__err_set(&r->err, QP_NOMEM, "out of memory");
  if (keep == 0) return QP_OK;
  const char *d[4];
  qp__report_row_dims(row, r->by, d);
  if (c->only != NULL) {
    const qp_rentry *o = c->only;
    if (!((d[0] == NULL || strcmp(d[0], o->database) == 0) &&
          (d[1] == NULL || strcmp(d[1], o->s.user) == 0) &&
          (d[2] == NULL || strcmp(d[2], o->s.application) == 0) &&
          (d[3] == NULL || strcmp(d[3], o->s.host) == 0)))
      return QP_OK;
    return add_to(c, &c->tabs[0], start, &row->st);
  }
  const qp_rentry *e = qp__report_find(r, row->fingerprint, row->backend, d,
                                       qp__report_key_hash(row->fingerprint, row->backend, d));
  if (e == NULL) return QP_OK;
  if (c->npicks > 0) {
    /* the first pick of this entry, then every one after it */
    size_t k = (size_t)(e - r->v), lo = 0, hi = c->npicks;
    while (lo < hi) {
      size_t mid = lo + (hi - lo) / 2;
      if (c->picks[mid].entry < k) lo = mid + 1;
      else hi = mid;
    }
    for (; lo < c->npicks && c->picks[lo].entry == k; lo++) {
      qp_status rc = add_to(c, &c->tabs[c->picks[lo].which], start, &row->st);
      if (rc != QP_OK) return rc;
    }
  }
  return c->all ? add_to(c, &c->tabs[c->ntabs - 1], start, &row->st) : QP_OK;
}

static int cmp_point(const void *a, const void *b) {
  const point *x = a, *y = b;
  return x->start_s < y->start_s ? -1 : x->start_s > y->start_s;
}

/* The roll-up level a series may read: one whose rows lie wholly inside the
 * window and inside one step. */
static int level_for(const qp_report *r, int64_t step_s) {
  static const struct {
    int level;
    int64_t len;
  } lv[] = {{QP_LEVEL_DAY, 86400}, {QP_LEVEL_HOUR, 3600}};
  for (size_t i = 0; step_s > 0 && i < QP_ARRAY_LEN(lv); i++) {
    if (step_s % lv[i].len != 0) continue;
    bool lo_ok = r->t.since_ns == INT64_MIN || r->w.lo_s % lv[i].len == 0;
    bool hi_ok = r->t.until_ns == INT64_MAX || r->w.hi_s % lv[i].len == 0;
    if (lo_ok && hi_ok) return lv[i].level;
  }
  return QP_LEVEL_BUCKET;
}

/* Sorts a table's points by time and hands them out; returns non-zero when
 * `fn` asked to stop. The points stay in the table's first t->n slots. */
static int emit(ptab *t, size_t which, qp_report_set_fn fn, qp_report_point_fn one, void *ud) {
  size_t k = 0;
  for (size_t j = 0; j < t->cap; j++)
    if (t->v[j].start_s != INT64_MIN) t->v[k++] = t->v[j];
  for (size_t j = k; j < t->cap; j++) t->v[j].start_s = INT64_MIN;
  if (k > 1) qsort(t->v, k, sizeof *t->v, cmp_point);
  for (size_t j = 0; j < k; j++) {
    const qp_stats *st = &t->v[j].st;
    qp_report_point p = {
        .start_ns = t->v[j].start_s * 1000000000LL,
        .calls = st->calls,
        .errors = st->errors,
        .rows = st->rows,
        .total_ns = st->total_ns,
        .min_ns = st->min_ns,
        .max_ns = st->max_ns,
        .mean_ns = st->calls ? (double)st->total_ns / (double)st->calls : 0,
        .p50_ns = qp__stats_quantile(st, 0.50),
        .p95_ns = qp__stats_quantile(st, 0.95),
        .p99_ns = qp__stats_quantile(st, 0.99),
    };
    if ((fn != NULL ? fn(&p, which, ud) : one(&p, ud)) != 0) return 1;
  }
  return 0;
}

/* One scan of the window for every table of c, then the points of each
 * table in turn. */
static qp_status run_series(series_ctx *c, qp_report_set_fn fn, qp_report_point_fn one, void *ud) {
  qp_report *r = c->r;
  c->tabs = qp__calloc(&r->hooks, c->ntabs, sizeof *c->tabs);
  if (c->tabs == NULL) return qp__err_set(&r->err, QP_NOMEM, "out of memory");
  int level = level_for(r, c->step_s);
  int64_t lo = r->w.lo_s, hi = r->w.hi_s;
  if (level != QP_LEVEL_BUCKET) {
    /* rows of the level start at its boundaries; an open side was clamped to
     * the data, so widen it to the boundary below */
    int64_t len = level == QP_LEVEL_DAY ? 86400 : 3600;
    lo = floor_div(lo, len) * len;
  }
  qp_status rc = qp__store_scan(r->store, level, lo, hi, series_row, c);
  if (rc != QP_OK && r->err.msg[0] == '\0') qp__err_set(&r->err, rc, "%s", qp_store_errmsg(r->store));
  for (size_t w = 0; rc == QP_OK && w < c->ntabs; w++)
    if (emit(&c->tabs[w], w, fn, one, ud) != 0) break;
  for (size_t w = 0; w < c->ntabs; w++) {
    ptab *t = &c->tabs[w];
    for (size_t j = 0; j < t->cap; j++)
      if (t->v[j].start_s != INT64_MIN) qp__stats_free(&t->v[j].st, &r->hooks);
    qp__free(&r->hooks, t->v);
  }
  qp__free(&r->hooks, c->tabs);
  return rc;
}

qp_status qp_report_series(qp_report *r, size_t i, int64_t step_s, qp_report_point_fn fn,
                           void *ud) {
  if (r == NULL || fn == NULL) return QP_INVALID;
  qp__err_clear(&r->err);
  if (step_s < 0) return qp__err_set(&r->err, QP_INVALID, "step %lld s is negative", (long long)step_s);
  if (i != QP_REPORT_ALL && i >= r->n)
    return qp__err_set(&r->err, QP_INVALID, "no query %zu in the report", i);
  if (r->w.empty || r->n == 0) return QP_OK;
  series_ctx c = {.r = r, .only = i == QP_REPORT_ALL ? NULL : &r->v[i], .all = i == QP_REPORT_ALL,
                  .step_s = step_s, .ntabs = 1};
  return run_series(&c, NULL, fn, ud);
}

qp_status qp_report_series_set(qp_report *r, const size_t *idx, size_t n, int64_t step_s,
                               qp_report_set_fn fn, void *ud) {
  if (r == NULL) return QP_INVALID;
  qp__err_clear(&r->err);
  if (fn == NULL || (idx == NULL && n > 0))
    return qp__err_set(&r->err, QP_INVALID, "fn or idx is NULL");
  if (step_s < 0) return qp__err_set(&r->err, QP_INVALID, "step %lld s is negative", (long long)step_s);
  for (size_t k = 0; k < n; k++)
    if (idx[k] >= r->n) return qp__err_set(&r->err, QP_INVALID, "no query %zu in the report", idx[k]);
  if (r->w.empty || r->n == 0) return QP_OK;
  pick *picks = NULL;
  if (n > 0) {
    picks = qp__malloc(&r->hooks, n * sizeof *picks);
    if (picks == NULL) return qp__err_set(&r->err, QP_NOMEM, "out of memory");
    for (size_t k = 0; k < n; k++) picks[k] = (pick){.entry = idx[k], .which = k};
    qsort(picks, n, sizeof *picks, cmp_pick);
  }
  series_ctx c = {.r = r, .picks = picks, .npicks = n, .all = true, .step_s = step_s,
                  .ntabs = n + 1};
  qp_status rc = run_series(&c, fn, NULL, ud);
  qp__free(&r->hooks, picks);
  return rc;
}
