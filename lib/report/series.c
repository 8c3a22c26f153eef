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

typedef struct series_ctx {
  qp_report *r;
  const qp_rentry *only; /* NULL: every query of the report */
  int64_t step_s;        /* 0: one point per stored bucket */
  point *v;              /* open addressing by start_s */
  size_t cap, n;
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

static bool grow(series_ctx *c) {
  size_t cap = c->cap ? c->cap * 2 : 64;
  point *v = qp__calloc(&c->r->hooks, cap, sizeof *v);
  if (v == NULL) return false;
  for (size_t i = 0; i < cap; i++) v[i].start_s = INT64_MIN;
  for (size_t i = 0; i < c->cap; i++) {
    if (c->v[i].start_s == INT64_MIN) continue;
    size_t j = slot_of(c->v[i].start_s, cap);
    while (v[j].start_s != INT64_MIN) j = (j + 1) & (cap - 1);
    v[j] = c->v[i];
  }
  qp__free(&c->r->hooks, c->v);
  c->v = v;
  c->cap = cap;
  return true;
}

static qp_status series_row(void *ud, const qp_entry *row) {
  series_ctx *c = ud;
  qp_report *r = c->r;
  if (c->only != NULL) {
    if (row->fingerprint != c->only->s.fingerprint || row->backend != c->only->backend ||
        strcmp(row->database, c->only->database) != 0)
      return QP_OK;
  } else if (qp__report_find(r, row->fingerprint, row->backend, row->database,
                             qp__report_key_hash(row->fingerprint, row->backend, row->database)) ==
             NULL) {
    return QP_OK;
  }
  int64_t start = c->step_s > 0 ? floor_div(row->bucket, c->step_s) * c->step_s : row->bucket;
  if ((c->n + 1) * 2 > c->cap && !grow(c)) return qp__err_set(&r->err, QP_NOMEM, "out of memory");
  size_t j = slot_of(start, c->cap);
  while (c->v[j].start_s != INT64_MIN && c->v[j].start_s != start) j = (j + 1) & (c->cap - 1);
  point *p = &c->v[j];
  if (p->start_s == INT64_MIN) {
    p->start_s = start;
    qp__stats_init(&p->st);
    c->n++;
  }
  if (!qp__stats_merge(&p->st, &row->st, &r->hooks))
    return qp__err_set(&r->err, QP_NOMEM, "out of memory");
  return QP_OK;
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

qp_status qp_report_series(qp_report *r, size_t i, int64_t step_s, qp_report_point_fn fn,
                           void *ud) {
  if (r == NULL || fn == NULL) return QP_INVALID;
  qp__err_clear(&r->err);
  if (step_s < 0) return qp__err_set(&r->err, QP_INVALID, "step %lld s is negative", (long long)step_s);
  if (i != QP_REPORT_ALL && i >= r->n)
    return qp__err_set(&r->err, QP_INVALID, "no query %zu in the report", i);
  if (r->w.empty || r->n == 0) return QP_OK;
  series_ctx c = {.r = r, .only = i == QP_REPORT_ALL ? NULL : &r->v[i], .step_s = step_s};
  int level = level_for(r, step_s);
  int64_t lo = r->w.lo_s, hi = r->w.hi_s;
  if (level != QP_LEVEL_BUCKET) {
    /* rows of the level start at its boundaries; an open side was clamped to
     * the data, so widen it to the boundary below */
    int64_t len = level == QP_LEVEL_DAY ? 86400 : 3600;
    lo = floor_div(lo, len) * len;
  }
  qp_status rc = qp__store_scan(r->store, level, lo, hi, series_row, &c);
  if (rc != QP_OK && r->err.msg[0] == '\0') qp__err_set(&r->err, rc, "%s", qp_store_errmsg(r->store));
  if (rc == QP_OK) {
    /* compact and sort the points */
    size_t k = 0;
    for (size_t j = 0; j < c.cap; j++)
      if (c.v[j].start_s != INT64_MIN) c.v[k++] = c.v[j];
    if (k > 1) qsort(c.v, k, sizeof *c.v, cmp_point);
    for (size_t j = 0; j < k; j++) {
      const qp_stats *st = &c.v[j].st;
      double lo_ns = (double)st->min_ns, hi_ns = (double)st->max_ns;
      qp_report_point p = {
          .start_ns = c.v[j].start_s * 1000000000LL,
          .calls = st->calls,
          .errors = st->errors,
          .rows = st->rows,
          .total_ns = st->total_ns,
          .min_ns = st->min_ns,
          .max_ns = st->max_ns,
          .mean_ns = st->calls ? (double)st->total_ns / (double)st->calls : 0,
          .p50_ns = qp__hist_quantile(&st->hist, 0.50, lo_ns, hi_ns),
          .p95_ns = qp__hist_quantile(&st->hist, 0.95, lo_ns, hi_ns),
          .p99_ns = qp__hist_quantile(&st->hist, 0.99, lo_ns, hi_ns),
      };
      if (fn(&p, ud) != 0) break;
    }
    c.cap = k; /* the first k slots hold the points to free */
  }
  for (size_t j = 0; j < c.cap; j++)
    if (c.v[j].start_s != INT64_MIN) qp__stats_free(&c.v[j].st, &r->hooks);
  qp__free(&r->hooks, c.v);
  return rc;
}
