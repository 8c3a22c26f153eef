/*
 * Windows of every shape against the recorded buckets alone, for both
 * stores (tests/unit/test_store_levels.c on an SQLite file,
 * tests/integration/test_store_pg_windows.c on PostgreSQL): each window is
 * answered as reports answer it (qp__store_aggregate: days, 6 hours, hours,
 * 10 minutes and buckets tiling it, see store.c), and compared key by key
 * with the merge, by the library's own qp__stats_merge, of the level-0 rows
 * whose bucket starts in it. Counts, sums, minimum, maximum, first and last
 * seen, error codes and the histogram (so every percentile) must be
 * identical; the variance (a floating-point merge in another order) equal
 * to 1e-9. Include after testutil.h; static functions only.
 */
#ifndef QP_WINDOW_CHECK_H
#define QP_WINDOW_CHECK_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qprof/qprof.h"
#include "store/store_int.h"

#define WC_KEYS 512

typedef struct wc_key {
  uint64_t fp;
  qp_backend backend;
  char db[64], user[64], app[64], host[64];
  qp_stats st;
  bool seen; /* the window's answer had it */
} wc_key;

typedef struct wc_ref {
  wc_key *k;
  size_t n;
} wc_ref;

/* The qpt_sum of the queries in the window [lo_s, hi_s) (seconds;
 * INT64_MIN / INT64_MAX for open ends); fails the test when the store
 * cannot say. */
static qpt_sum wc_totals(qp_store *s, int64_t lo_s, int64_t hi_s) {
  qpt_sum sum = {0};
  assert_int_equal(qp_store_summarize(s, lo_s == INT64_MIN ? INT64_MIN : lo_s * 1000000000LL,
                                      hi_s == INT64_MAX ? INT64_MAX : hi_s * 1000000000LL,
                                      qpt_sum_add, &sum),
                   QP_OK);
  return sum;
}

static bool wc_same(const wc_key *k, const qp_entry *e) {
  return k->fp == e->fingerprint && k->backend == e->backend && strcmp(k->db, e->database) == 0 &&
         strcmp(k->user, e->user) == 0 && strcmp(k->app, e->application) == 0 &&
         strcmp(k->host, e->host) == 0;
}

static wc_key *wc_find(wc_ref *r, const qp_entry *e) {
  for (size_t i = 0; i < r->n; i++)
    if (wc_same(&r->k[i], e)) return &r->k[i];
  return NULL;
}

static qp_status wc_ref_row(void *ud, const qp_entry *row) {
  wc_ref *r = ud;
  wc_key *k = wc_find(r, row);
  if (k == NULL) {
    assert_true(r->n < WC_KEYS);
    k = &r->k[r->n++];
    memset(k, 0, sizeof *k);
    k->fp = row->fingerprint;
    k->backend = row->backend;
    snprintf(k->db, sizeof k->db, "%s", row->database);
    snprintf(k->user, sizeof k->user, "%s", row->user);
    snprintf(k->app, sizeof k->app, "%s", row->application);
    snprintf(k->host, sizeof k->host, "%s", row->host);
    qp__stats_init(&k->st);
  }
  assert_true(qp__stats_merge(&k->st, &row->st, NULL));
  return QP_OK;
}

typedef struct wc_cmp {
  wc_ref *ref;
  const char *what;
  size_t n;
} wc_cmp;

static void wc_bytes_equal(const qp_stats *a, const qp_stats *b, const char *what) {
  qp_buf x, y;
  qp__buf_init(&x, NULL);
  qp__buf_init(&y, NULL);
  assert_true(qp__hist_encode(&a->hist, &x));
  assert_true(qp__hist_encode(&b->hist, &y));
  if (x.len != y.len || memcmp(x.data, y.data, x.len) != 0)
    fail_msg("%s: the histogram differs from the buckets'", what);
  x.len = y.len = 0;
  assert_true(qp__codes_encode(&a->codes, &x));
  assert_true(qp__codes_encode(&b->codes, &y));
  if (strcmp(qp__buf_cstr(&x), qp__buf_cstr(&y)) != 0)
    fail_msg("%s: error codes %s, the buckets' %s", what, qp__buf_cstr(&x), qp__buf_cstr(&y));
  qp__buf_free(&x);
  qp__buf_free(&y);
}

static qp_status wc_agg(void *ud, qp_entry *e, const char *query, const char *sample) {
  (void)query;
  (void)sample;
  wc_cmp *c = ud;
  wc_key *k = wc_find(c->ref, e);
  if (k == NULL) fail_msg("%s: fingerprint %llx is not in the buckets", c->what,
                          (unsigned long long)e->fingerprint);
  assert_false(k->seen);
  k->seen = true;
  c->n++;
  const qp_stats *a = &e->st, *b = &k->st;
#define WC_EQ(f)                                                                                \
  if (a->f != b->f)                                                                             \
    fail_msg("%s: fingerprint %llx %s: %s %lld, the buckets %lld", c->what,                     \
             (unsigned long long)e->fingerprint, e->host, #f, (long long)a->f, (long long)b->f);
  WC_EQ(calls)
  WC_EQ(errors)
  WC_EQ(rows)
  WC_EQ(total_ns)
  WC_EQ(max_ns)
  WC_EQ(first_ns)
  WC_EQ(last_ns)
  WC_EQ(cache_hits)
  WC_EQ(cache_hit_ns)
  if (a->calls > 0) WC_EQ(min_ns)
#undef WC_EQ
  if (fabs(a->m2 - b->m2) > 1e-9 * (fabs(b->m2) + 1))
    fail_msg("%s: m2 %.17g, the buckets %.17g", c->what, a->m2, b->m2);
  wc_bytes_equal(a, b, c->what);
  static const double qs[3] = {0.5, 0.99, 0.999};
  double pa[3], pb[3];
  qp__hist_quantiles(&a->hist, qs, 3, (double)a->min_ns, (double)a->max_ns, pa);
  qp__hist_quantiles(&b->hist, qs, 3, (double)b->min_ns, (double)b->max_ns, pb);
  for (int i = 0; i < 3; i++)
    if (pa[i] != pb[i]) fail_msg("%s: p%g %g, the buckets %g", c->what, qs[i] * 100, pa[i], pb[i]);
  return QP_OK;
}

/* One window [lo_s, hi_s) (INT64_MIN / INT64_MAX: no bound): its answer
 * against its level-0 rows. Returns the calls it holds. */
static uint64_t wc_check(qp_store *s, int64_t lo_s, int64_t hi_s, const char *what) {
  wc_ref ref = {.k = calloc(WC_KEYS, sizeof(wc_key))};
  assert_non_null(ref.k);
  assert_int_equal(qp__store_scan(s, QP_LEVEL_BUCKET, lo_s, hi_s, wc_ref_row, &ref), QP_OK);
  int64_t lo = lo_s == INT64_MIN ? INT64_MIN : lo_s * 1000000000LL;
  int64_t hi = hi_s == INT64_MAX ? INT64_MAX : hi_s * 1000000000LL;
  wc_cmp c = {.ref = &ref, .what = what};
  qp_window w;
  qp_status rc = qp__store_aggregate(s, lo, hi, wc_agg, &c, &w);
  if (rc != QP_OK) fail_msg("%s: %s", what, qp_store_errmsg(s));
  uint64_t calls = 0;
  for (size_t i = 0; i < ref.n; i++) {
    if (!ref.k[i].seen && (ref.k[i].st.calls > 0 || ref.k[i].st.cache_hits > 0))
      fail_msg("%s: fingerprint %llx %s is in the buckets, not in the window's answer", what,
               (unsigned long long)ref.k[i].fp, ref.k[i].host);
    calls += ref.k[i].st.calls;
    qp__stats_free(&ref.k[i].st, NULL);
  }
  free(ref.k);
  return calls;
}

/* Every shape of window around the UTC day starting at d0 (s): aligned to
 * days, 6 hours, hours, 10 minutes; minute edges; inside one 10 minutes;
 * across midnight at every alignment; open at either end. Returns the
 * calls of all of them, for a caller that wants them not all empty. */
static uint64_t wc_check_all(qp_store *s, int64_t d0, const char *when) {
  const int64_t H = 3600, M = 60;
  const struct {
    const char *name;
    int64_t lo, hi;
  } w[] = {
      {"all time", INT64_MIN, INT64_MAX},
      {"the day", d0, d0 + 24 * H},
      {"two days", d0 - 24 * H, d0 + 24 * H},
      {"12 hours at 6-hour edges", d0 + 6 * H, d0 + 18 * H},
      {"6 hours", d0 + 12 * H, d0 + 18 * H},
      {"12 hours at hour edges", d0 + 7 * H, d0 + 19 * H},
      {"10-minute edges", d0 + 6 * H + 10 * M, d0 + 18 * H + 50 * M},
      {"minute edges", d0 + 6 * H + 17 * M, d0 + 18 * H + 43 * M},
      {"inside 10 minutes", d0 + 6 * H + 17 * M, d0 + 6 * H + 23 * M},
      {"inside an hour", d0 + 6 * H + 7 * M, d0 + 6 * H + 53 * M},
      {"one minute", d0 + 12 * H, d0 + 12 * H + M},
      {"across midnight, minute edges", d0 + 22 * H + 13 * M, d0 + 25 * H + 7 * M},
      {"across midnight, 6-hour edges", d0 + 18 * H, d0 + 30 * H},
      {"across midnight, 10-minute edges", d0 + 23 * H + 50 * M, d0 + 24 * H + 10 * M},
      {"across midnight, hour edges", d0 + 21 * H, d0 + 27 * H},
      {"from the start to a minute", INT64_MIN, d0 + 18 * H + 43 * M},
      {"from a minute to the end", d0 + 3 * H + 17 * M, INT64_MAX},
  };
  uint64_t calls = 0;
  for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
    char what[256];
    snprintf(what, sizeof what, "%s, %s", when, w[i].name);
    calls += wc_check(s, w[i].lo, w[i].hi, what);
  }
  return calls;
}

#endif
