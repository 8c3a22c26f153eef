/* The report model (include/qprof/report.h) over a real SQLite store
 * recorded through the profile with fixed times and durations: ranking,
 * filters (case-insensitive by default), totals and shares, window
 * rounding, the diff and its gate, time series per bucket and hour, the
 * merged histogram, and out-of-memory at every allocation. */
#include "testutil.h"
#include "failalloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qprof/qprof.h"

#define T0 1795168800LL /* 2026-11-20T10:00:00Z */
#define NS 1000000000LL

static char dir[512];
static char path_a[600], path_b[600];

typedef struct fq {
  uint64_t fp;
  const char *text;
  int calls;
  uint64_t base_ns;
} fq;

static const fq qs[] = {
    {0x0a, "select * from users where id = ?", 600, 100000},
    {0x0b, "update accounts set balance = ? where id = ?", 120, 2000000},
    {0x0c, "commit", 300, 50000},
};

/* Events every 12 s over two hours from T0 (60 s buckets), query k's
 * duration base * (1 + i % 10) * slow[k]; query 1 fails every 40th call. */
static void record(const char *path, const double slow[3], unsigned which) {
  qp_profile *p;
  char err[512];
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  qp_store *s;
  assert_int_equal(qp_store_open(&s, path, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  for (size_t k = 0; k < 3; k++) {
    if (!(which & (1u << k))) continue;
    for (int i = 0; i < qs[k].calls; i++) {
      qp_query_event ev = {0};
      ev.backend = QP_BACKEND_POSTGRES;
      ev.database = "app";
      ev.normalized = qs[k].text;
      ev.normalized_len = strlen(qs[k].text);
      ev.fingerprint = qs[k].fp;
      ev.duration_ns = (uint64_t)((double)(qs[k].base_ns * (uint64_t)(1 + i % 10)) * slow[k]);
      ev.rows = 1;
      ev.error = k == 1 && i % 40 == 0 ? "40001" : NULL;
      ev.end_wall_ns = (T0 + (int64_t)i * 7200 / qs[k].calls) * NS + 500000000;
      assert_int_equal(qp_profile_record(p, &ev), QP_OK);
    }
  }
  assert_int_equal(qp_profile_flush(p, s), QP_OK);
  qp_store_close(s);
  qp_profile_free(p);
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "%s", qpt_tempdir());
  snprintf(path_a, sizeof path_a, "%s/a.db", dir);
  snprintf(path_b, sizeof path_b, "%s/b.db", dir);
  const double one[3] = {1, 1, 1}, slower[3] = {1, 1.5, 1};
  record(path_a, one, 0x7);
  record(path_b, slower, 0x3); /* update 50% slower, commit vanished */
  return 0;
}

static int teardown(void **state) {
  (void)state;
  qpt_system("rm -rf '%s'", dir);
  return 0;
}

static qp_report *build(qp_store *s, const qp_report_options *o) {
  qp_report *r = NULL;
  char err[512];
  qp_status rc = qp_report_new(&r, s, o, err, sizeof err);
  if (rc != QP_OK) fail_msg("qp_report_new: %s", err);
  return r;
}

static void test_rank_totals_shares(void **state) {
  (void)state;
  qp_store *s;
  assert_int_equal(qp_store_open(&s, path_a, QP_STORE_READ, NULL, NULL, 0), QP_OK);
  qp_report_options o;
  qp_report_options_init(&o);
  assert_int_equal(o.size, sizeof o);
  qp_report *r = build(s, &o);
  assert_int_equal(qp_report_count(r), 3);
  const qp_report_totals *t = qp_report_totals_get(r);
  assert_int_equal(t->queries, 3);
  assert_int_equal(t->queries_in_window, 3);
  assert_int_equal(t->calls, 600 + 120 + 300);
  assert_int_equal(t->errors, 3);
  assert_string_equal(t->store, path_a);
  /* durations base * (1..10): mean 5.5 * base */
  uint64_t want_total = 600 * 550000ull + 120 * 11000000ull + 300 * 275000ull;
  assert_int_equal(t->total_ns, want_total);
  assert_int_equal(t->first_seen_ns, T0 * NS + 500000000);
  /* by total: update (13.2 ms... x120), then select, then commit */
  assert_int_equal(qp_report_query(r, 0)->fingerprint, 0x0b);
  assert_int_equal(qp_report_query(r, 1)->fingerprint, 0x0a);
  assert_int_equal(qp_report_query(r, 2)->fingerprint, 0x0c);
  assert_null(qp_report_query(r, 3));
  double share = 0;
  for (size_t i = 0; i < 3; i++) share += qp_report_share(r, i);
  assert_true(fabs(share - 1) < 1e-12);
  assert_true(fabs(qp_report_share(r, 0) - 120 * 11000000.0 / (double)want_total) < 1e-12);
  assert_string_equal(qp_report_query(r, 0)->error_codes, "40001:3");
  qp_report_free(r);
  /* by calls */
  assert_int_equal(qp_report_sort_parse("calls", &o.sort), QP_OK);
  r = build(s, &o);
  assert_int_equal(qp_report_query(r, 0)->fingerprint, 0x0a);
  assert_int_equal(qp_report_query(r, 2)->fingerprint, 0x0b);
  assert_string_equal(qp_report_sort_name(qp_report_totals_get(r)->sort), "calls");
  qp_report_free(r);
  assert_int_equal(qp_report_sort_parse("speed", &o.sort), QP_INVALID);
  qp_store_close(s);
}

static void test_filters(void **state) {
  (void)state;
  qp_store *s;
  assert_int_equal(qp_store_open(&s, path_a, QP_STORE_READ, NULL, NULL, 0), QP_OK);
  qp_report_options o;
  qp_report_options_init(&o);
  /* stored text is lower case: UPDATE finds update by default */
  o.match = "UPDATE";
  qp_report *r = build(s, &o);
  assert_int_equal(qp_report_count(r), 1);
  assert_int_equal(qp_report_query(r, 0)->fingerprint, 0x0b);
  const qp_report_totals *t = qp_report_totals_get(r);
  assert_int_equal(t->queries_in_window, 3);
  assert_int_equal(t->calls, 120);
  assert_true(qp_report_share(r, 0) == 1.0);
  qp_report_free(r);
  o.case_sensitive = true;
  r = build(s, &o);
  assert_int_equal(qp_report_count(r), 0);
  assert_int_equal(qp_report_totals_get(r)->first_seen_ns, 0);
  qp_report_free(r);
  o.case_sensitive = false;
  o.match = "^(select|commit)";
  o.exclude = "USERS";
  r = build(s, &o);
  assert_int_equal(qp_report_count(r), 1);
  assert_int_equal(qp_report_query(r, 0)->fingerprint, 0x0c);
  qp_report_free(r);
  o.match = o.exclude = NULL;
  o.min_calls = 300;
  r = build(s, &o);
  assert_int_equal(qp_report_count(r), 2);
  qp_report_free(r);
  /* a bad pattern: named, with its offset, before any store is read */
  o.match = "a(b";
  char err[512];
  assert_int_equal(qp_report_check(&o, err, sizeof err), QP_PATTERN);
  assert_non_null(strstr(err, "'a(b'"));
  assert_non_null(strstr(err, "offset 3"));
  qp_report *bad = (qp_report *)1;
  assert_int_equal(qp_report_new(&bad, s, &o, err, sizeof err), QP_PATTERN);
  assert_null(bad);
  o.match = NULL;
  o.since_ns = o.until_ns = 5;
  assert_int_equal(qp_report_check(&o, err, sizeof err), QP_INVALID);
  qp_report_options old = o;
  qp_report_options_init(&old);
  old.size = sizeof(size_t); /* a caller that never called _init */
  assert_int_equal(qp_report_check(&old, err, sizeof err), QP_INVALID);
  qp_store_close(s);
}

static void test_window_and_rounding(void **state) {
  (void)state;
  qp_store *s;
  assert_int_equal(qp_store_open(&s, path_a, QP_STORE_READ, NULL, NULL, 0), QP_OK);
  qp_report_options o;
  qp_report_options_init(&o);
  /* the first hour, on bucket boundaries: half of every query, no rounding */
  o.since_ns = T0 * NS;
  o.until_ns = (T0 + 3600) * NS;
  qp_report *r = build(s, &o);
  const qp_report_totals *t = qp_report_totals_get(r);
  assert_int_equal(t->calls, (600 + 120 + 300) / 2);
  assert_false(t->since_rounded);
  assert_false(t->until_rounded);
  assert_true(t->last_seen_ns < (T0 + 3600) * NS);
  qp_report_free(r);
  /* 10:17:30 .. 10:20:30: the bucket of 10:17 is left out, 10:20 counted whole */
  o.since_ns = (T0 + 17 * 60 + 30) * NS;
  o.until_ns = (T0 + 20 * 60 + 30) * NS;
  r = build(s, &o);
  t = qp_report_totals_get(r);
  assert_true(t->since_rounded);
  assert_int_equal(t->since_bucket_ns, (T0 + 17 * 60) * NS);
  assert_true(t->until_rounded);
  assert_int_equal(t->until_bucket_ns, (T0 + 20 * 60) * NS);
  /* buckets 10:18, 10:19, 10:20: select runs every 12 s, 5 per minute */
  assert_int_equal(qp_report_query(r, 1)->calls, 15);
  qp_report_free(r);
  qp_store_close(s);
}

typedef struct pts {
  int n;
  uint64_t calls, errors, total;
  int64_t first, last;
  double max_p95;
} pts;

static int on_point(const qp_report_point *p, void *ud) {
  pts *x = ud;
  if (x->n == 0) x->first = p->start_ns;
  assert_true(x->n == 0 || p->start_ns > x->last);
  x->last = p->start_ns;
  x->n++;
  x->calls += p->calls;
  x->errors += p->errors;
  x->total += p->total_ns;
  assert_true(p->min_ns <= p->p50_ns && p->p50_ns <= p->p95_ns && p->p95_ns <= p->p99_ns &&
              p->p99_ns <= (double)p->max_ns);
  if (p->p95_ns > x->max_p95) x->max_p95 = p->p95_ns;
  return 0;
}

typedef struct set_pts {
  pts p[4];
  size_t last_which;
} set_pts;

/* the series come one after the other, each in time order */
static int on_set_point(const qp_report_point *p, size_t which, void *ud) {
  set_pts *s = ud;
  assert_true(which < 4);
  assert_true(which >= s->last_which);
  s->last_which = which;
  return on_point(p, &s->p[which]);
}

static void test_series(void **state) {
  (void)state;
  qp_store *s;
  assert_int_equal(qp_store_open(&s, path_a, QP_STORE_READ, NULL, NULL, 0), QP_OK);
  qp_report_options o;
  qp_report_options_init(&o);
  qp_report *r = build(s, &o);
  /* per stored bucket: 120 minutes */
  pts x = {0};
  assert_int_equal(qp_report_series(r, 0, 0, on_point, &x), QP_OK);
  assert_int_equal(x.n, 120);
  assert_int_equal(x.calls, 120);
  assert_int_equal(x.errors, 3);
  assert_int_equal(x.total, qp_report_query(r, 0)->total_ns);
  assert_int_equal(x.first, T0 * NS);
  /* hourly (from the roll-ups): two points that add up the same */
  pts h = {0};
  assert_int_equal(qp_report_series(r, 0, 3600, on_point, &h), QP_OK);
  assert_int_equal(h.n, 2);
  assert_int_equal(h.calls, 120);
  assert_int_equal(h.total, x.total);
  /* every query, in 15-minute steps */
  pts all = {0};
  assert_int_equal(qp_report_series(r, QP_REPORT_ALL, 900, on_point, &all), QP_OK);
  assert_int_equal(all.n, 8);
  assert_int_equal(all.calls, 1020);
  assert_int_equal(all.total, qp_report_totals_get(r)->total_ns);
  assert_int_equal(qp_report_series(r, 3, 60, on_point, &x), QP_INVALID);
  assert_int_equal(qp_report_series(r, 0, -1, on_point, &x), QP_INVALID);
  /* several series in one scan: each the same as alone, in the order asked,
   * every query together last */
  size_t idx[] = {2, 0, 2};
  set_pts sp = {0};
  assert_int_equal(qp_report_series_set(r, idx, 3, 900, on_set_point, &sp), QP_OK);
  for (size_t k = 0; k < 4; k++) {
    pts one = {0};
    assert_int_equal(qp_report_series(r, k < 3 ? idx[k] : QP_REPORT_ALL, 900, on_point, &one),
                     QP_OK);
    assert_int_equal(sp.p[k].n, one.n);
    assert_int_equal(sp.p[k].calls, one.calls);
    assert_int_equal(sp.p[k].errors, one.errors);
    assert_int_equal(sp.p[k].total, one.total);
    assert_int_equal(sp.p[k].first, one.first);
    assert_true(sp.p[k].max_p95 == one.max_p95);
  }
  assert_int_equal(sp.p[3].calls, 1020);
  assert_int_equal(sp.p[0].calls, 300); /* #3 by total: commit */
  /* no query: every query together only */
  set_pts none = {0};
  assert_int_equal(qp_report_series_set(r, NULL, 0, 0, on_set_point, &none), QP_OK);
  assert_int_equal(none.p[0].n, 120);
  assert_int_equal(none.p[0].calls, 1020);
  size_t bad = 3;
  assert_int_equal(qp_report_series_set(r, &bad, 1, 60, on_set_point, &none), QP_INVALID);
  assert_int_equal(qp_report_series_set(r, idx, 1, -1, on_set_point, &none), QP_INVALID);
  assert_int_equal(qp_report_series_set(r, idx, 1, 60, NULL, NULL), QP_INVALID);
  qp_report_free(r);
  /* a filtered report's series is of its queries only */
  o.match = "commit";
  r = build(s, &o);
  pts c = {0};
  assert_int_equal(qp_report_series(r, QP_REPORT_ALL, 3600, on_point, &c), QP_OK);
  assert_int_equal(c.calls, 300);
  qp_report_free(r);
  qp_store_close(s);
}

typedef struct bins {
  uint64_t count;
  double last_hi;
  int n;
} bins;

static int on_bin(const qp_report_bin *b, void *ud) {
  bins *x = ud;
  assert_true(b->lo_ns < b->hi_ns);
  assert_true(b->lo_ns >= x->last_hi * 0.999999);
  x->last_hi = b->hi_ns;
  x->count += b->count;
  x->n++;
  return 0;
}

static void test_histogram(void **state) {
  (void)state;
  qp_store *s;
  assert_int_equal(qp_store_open(&s, path_a, QP_STORE_READ, NULL, NULL, 0), QP_OK);
  qp_report_options o;
  qp_report_options_init(&o);
  qp_report *r = build(s, &o);
  bins b = {0};
  assert_int_equal(qp_report_histogram(r, 1, on_bin, &b), QP_OK); /* select: 10 distinct values */
  assert_int_equal(b.count, 600);
  assert_int_equal(b.n, 10);
  /* every duration lies in a bin: the smallest (100 us) and largest (1 ms) */
  bins all = {0};
  assert_int_equal(qp_report_histogram(r, QP_REPORT_ALL, on_bin, &all), QP_OK);
  assert_int_equal(all.count, 1020);
  assert_int_equal(qp_report_histogram(r, 7, on_bin, &b), QP_INVALID);
  qp_report_free(r);
  qp_store_close(s);
}

static void test_diff_and_gate(void **state) {
  (void)state;
  qp_store *sa, *sb;
  assert_int_equal(qp_store_open(&sa, path_a, QP_STORE_READ, NULL, NULL, 0), QP_OK);
  assert_int_equal(qp_store_open(&sb, path_b, QP_STORE_READ, NULL, NULL, 0), QP_OK);
  qp_report_options o;
  qp_report_options_init(&o);
  qp_report *a = build(sa, &o), *b = build(sb, &o);
  qp_diff_options d;
  qp_diff_options_init(&d);
  assert_true(isnan(d.fail_above_pct));
  qp_diff *df;
  char err[256];
  /* a report against itself: all unchanged, changes exactly 0 */
  assert_int_equal(qp_diff_new(&df, a, a, &d, err, sizeof err), QP_OK);
  assert_int_equal(qp_diff_counts_get(df)->unchanged, 3);
  for (size_t i = 0; i < qp_diff_count(df); i++)
    assert_true(qp_diff_entry_at(df, i)->p95_pct == 0);
  qp_diff_free(df);
  d.fail_above_pct = 20;
  assert_int_equal(qp_diff_new(&df, a, b, &d, err, sizeof err), QP_OK);
  const qp_diff_counts *n = qp_diff_counts_get(df);
  assert_int_equal(n->changed, 1);
  assert_int_equal(n->unchanged, 1);
  assert_int_equal(n->vanished, 1);
  assert_int_equal(n->added, 0);
  assert_int_equal(n->regressions, 1);
  assert_int_equal(qp_diff_count(df), 3);
  const qp_diff_entry *e0 = qp_diff_entry_at(df, 0), *e2 = qp_diff_entry_at(df, 2);
  assert_int_equal(e0->status, QP_DIFF_CHANGED);
  assert_int_equal(e0->cur->fingerprint, 0x0b);
  assert_true(e0->regression);
  assert_true(e0->p95_pct > 45 && e0->p95_pct < 55);
  assert_int_equal(e2->status, QP_DIFF_VANISHED);
  assert_null(e2->cur);
  assert_true(isnan(e2->p95_pct));
  assert_string_equal(qp_diff_status_name(e2->status), "vanished");
  qp_diff_free(df);
  /* the other way round: commit is new, and update got faster */
  assert_int_equal(qp_diff_new(&df, b, a, &d, err, sizeof err), QP_OK);
  assert_int_equal(qp_diff_entry_at(df, 0)->status, QP_DIFF_NEW);
  assert_int_equal(qp_diff_counts_get(df)->regressions, 0);
  qp_diff_free(df);
  /* too few calls to count */
  d.min_calls = 1000;
  assert_int_equal(qp_diff_new(&df, a, b, &d, err, sizeof err), QP_OK);
  assert_int_equal(qp_diff_counts_get(df)->regressions, 0);
  qp_diff_free(df);
  d.fail_above_pct = -1;
  assert_int_equal(qp_diff_new(&df, a, b, &d, err, sizeof err), QP_INVALID);
  qp_report_free(a);
  qp_report_free(b);
  qp_store_close(sa);
  qp_store_close(sb);
}

static int count_point(const qp_report_point *p, void *ud) {
  (void)p;
  (*(int *)ud)++;
  return 0;
}

typedef struct view_rows {
  qp_report_group g[4];
  char keys[4][16];
  size_t ng;
  qp_report_error_code c[4];
  char codes[4][16];
  size_t nc;
} view_rows;

static int on_group(const qp_report_group *g, void *ud) {
  view_rows *v = ud;
  assert_true(v->ng < 4);
  v->g[v->ng] = *g;
  snprintf(v->keys[v->ng], sizeof v->keys[0], "%s", g->key);
  v->ng++;
  return 0;
}

static int on_code(const qp_report_error_code *c, void *ud) {
  view_rows *v = ud;
  assert_true(v->nc < 4);
  v->c[v->nc] = *c;
  snprintf(v->codes[v->nc], sizeof v->codes[0], "%s", c->code);
  v->nc++;
  return 0;
}

/* Other rankings, groups per database and errors by code of a store with
 * two databases and two codes, all known. */
static void test_views(void **state) {
  (void)state;
  char p[600], err[512];
  snprintf(p, sizeof p, "%s/views.db", dir);
  qp_profile *prof;
  assert_int_equal(qp_profile_new(&prof, NULL, err, sizeof err), QP_OK);
  qp_store *s;
  assert_int_equal(qp_store_open(&s, p, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  static const struct {
    uint64_t fp;
    const char *db, *text;
    int calls;
    uint64_t dur;
    const char *codes[4]; /* errors of the first calls */
  } ev[] = {{1, "one", "select 1", 10, 1000000, {"E1", "E1"}},
            {2, "two", "select 2", 5, 10000000, {"E1", "E2", "E2", "E2"}},
            {3, "one", "select 3", 1, 100000000, {NULL}}};
  for (size_t k = 0; k < 3; k++) {
    for (int i = 0; i < ev[k].calls; i++) {
      qp_query_event e = {0};
      e.backend = QP_BACKEND_POSTGRES;
      e.database = ev[k].db;
      e.normalized = ev[k].text;
      e.normalized_len = strlen(ev[k].text);
      e.fingerprint = ev[k].fp;
      e.duration_ns = ev[k].dur;
      e.rows = 1;
      e.error = i < 4 ? ev[k].codes[i] : NULL;
      e.end_wall_ns = (T0 + i) * NS;
      assert_int_equal(qp_profile_record(prof, &e), QP_OK);
    }
  }
  assert_int_equal(qp_profile_flush(prof, s), QP_OK);
  qp_profile_free(prof);
  qp_report_options o;
  qp_report_options_init(&o);
  qp_report *r = build(s, &o);
  /* by total: 3 (100 ms), 2 (50 ms), 1 (10 ms) */
  assert_int_equal(qp_report_query(r, 0)->fingerprint, 3);
  assert_int_equal(qp_report_query(r, 2)->fingerprint, 1);
  size_t idx[8], k;
  assert_int_equal(qp_report_rank(r, QP_REPORT_SORT_CALLS, idx, 8, &k), QP_OK);
  assert_int_equal(k, 3);
  assert_int_equal(idx[0], 2); /* query 1: 10 calls */
  assert_int_equal(idx[1], 1);
  assert_int_equal(idx[2], 0);
  assert_int_equal(qp_report_rank(r, QP_REPORT_SORT_ERRORS, idx, 1, &k), QP_OK);
  assert_int_equal(k, 1);
  assert_int_equal(idx[0], 1); /* query 2: 4 errors */
  assert_int_equal(qp_report_rank(r, QP_REPORT_SORT_TOTAL, idx, 8, &k), QP_OK);
  assert_int_equal(idx[0] * 100 + idx[1] * 10 + idx[2], 12);
  assert_int_equal(qp_report_rank(r, (qp_report_sort)42, idx, 8, &k), QP_INVALID);
  assert_non_null(strstr(qp_report_errmsg(r), "unknown sort key"));
  assert_int_equal(qp_report_rank(r, QP_REPORT_SORT_MEAN, NULL, 0, &k), QP_OK);
  assert_int_equal(k, 0);

  view_rows v = {0};
  assert_int_equal(qp_report_groups(r, QP_REPORT_BY_DATABASE, on_group, &v), QP_OK);
  assert_int_equal(v.ng, 2);
  assert_string_equal(v.keys[0], "one");
  assert_string_equal(v.g[0].backend, "postgres");
  assert_int_equal(v.g[0].queries, 2);
  assert_int_equal(v.g[0].calls, 11);
  assert_int_equal(v.g[0].errors, 2);
  assert_int_equal(v.g[0].total_ns, 110000000);
  assert_true(fabs(v.g[0].share - 110.0 / 160.0) < 1e-12);
  assert_true(fabs(v.g[0].mean_ns - 110000000.0 / 11) < 1e-6);
  assert_int_equal(v.g[0].max_ns, 100000000);
  assert_string_equal(v.keys[1], "two");
  assert_int_equal(v.g[1].calls, 5);
  assert_true(fabs(v.g[1].p95_ns - 10000000) <= 10000000 * 0.02);
  assert_int_equal(qp_report_group_by_name(QP_REPORT_BY_DATABASE)[0], 'd');
  assert_null(qp_report_group_by_name((qp_report_group_by)9));
  assert_int_equal(qp_report_groups(r, (qp_report_group_by)9, on_group, &v), QP_INVALID);

  assert_int_equal(qp_report_errors(r, on_code, &v), QP_OK);
  assert_int_equal(v.nc, 2);
  /* 3 each: by code */
  assert_string_equal(v.codes[0], "E1");
  assert_int_equal(v.c[0].errors, 3);
  assert_int_equal(v.c[0].queries, 2);
  assert_int_equal(v.c[0].top_query, 2); /* query 1 had 2 of them */
  assert_int_equal(v.c[0].top_errors, 2);
  assert_true(fabs(v.c[0].share - 0.5) < 1e-12);
  assert_string_equal(v.codes[1], "E2");
  assert_int_equal(v.c[1].errors, 3);
  assert_int_equal(v.c[1].queries, 1);
  assert_int_equal(v.c[1].top_query, 1);
  assert_int_equal(qp_report_errors(r, NULL, NULL), QP_INVALID);
  qp_report_free(r);
  qp_store_close(s);
}

/* Every allocation of building, series, histogram and diff fails in turn:
 * each reports QP_NOMEM and leaks nothing. */
static void test_out_of_memory(void **state) {
  (void)state;
  qp_store *s;
  assert_int_equal(qp_store_open(&s, path_a, QP_STORE_READ, NULL, NULL, 0), QP_OK);
  qpt_failalloc fa = {0};
  qp_hooks hk = qpt_failalloc_hooks(&fa);
  bool finished = false;
  for (long k = 1; k < 5000 && !finished; k++) {
    fa = (qpt_failalloc){.fail_at = k};
    qp_report_options o;
    qp_report_options_init(&o);
    o.hooks = &hk;
    o.match = "select|update|COMMIT";
    qp_report *r = NULL;
    char err[256];
    qp_status rc = qp_report_new(&r, s, &o, err, sizeof err);
    int np = 0;
    if (rc == QP_OK) rc = qp_report_series(r, QP_REPORT_ALL, 600, count_point, &np);
    size_t two[] = {0, 1};
    set_pts sp = {0};
    if (rc == QP_OK) rc = qp_report_series_set(r, two, 2, 600, on_set_point, &sp);
    bins b = {0};
    if (rc == QP_OK) rc = qp_report_histogram(r, QP_REPORT_ALL, on_bin, &b);
    size_t idx[3], nk = 0;
    if (rc == QP_OK) rc = qp_report_rank(r, QP_REPORT_SORT_CALLS, idx, 3, &nk);
    view_rows v = {0};
    if (rc == QP_OK) rc = qp_report_groups(r, QP_REPORT_BY_DATABASE, on_group, &v);
    if (rc == QP_OK) rc = qp_report_errors(r, on_code, &v);
    qp_diff *d = NULL;
    qp_diff_options dop;
    qp_diff_options_init(&dop);
    dop.hooks = &hk;
    if (rc == QP_OK) rc = qp_diff_new(&d, r, r, &dop, err, sizeof err);
    if (rc == QP_OK) {
      finished = true;
      assert_int_equal(np, 12);
      assert_int_equal(b.count, 1020);
      assert_int_equal(nk, 3);
      assert_int_equal(sp.p[2].calls, 1020);
      assert_int_equal(v.ng, 1);
      assert_int_equal(v.g[0].calls, 1020);
      assert_int_equal(v.nc, 1);
      assert_int_equal(v.c[0].errors, 3);
    } else {
      assert_int_equal(rc, QP_NOMEM);
    }
    qp_diff_free(d);
    qp_report_free(r);
    assert_int_equal(fa.live, 0);
  }
  assert_true(finished);
  qp_store_close(s);
}

static void test_times(void **state) {
  (void)state;
  int64_t t;
  assert_int_equal(qp_report_parse_time("2026-11-20T10:00Z", &t), QP_OK);
  assert_int_equal(t, T0 * NS);
  assert_int_equal(qp_report_parse_time("yesterday-ish", &t), QP_SYNTAX);
  char b[40];
  assert_string_equal(qp_report_format_time(T0 * NS + 250000000, b, sizeof b),
                      "2026-11-20T10:00:00.250Z");
  qp_report_free(NULL);
  qp_diff_free(NULL);
  assert_int_equal(qp_report_count(NULL), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rank_totals_shares), cmocka_unit_test(test_filters),
      cmocka_unit_test(test_window_and_rounding), cmocka_unit_test(test_series),
      cmocka_unit_test(test_histogram),          cmocka_unit_test(test_diff_and_gate),
      cmocka_unit_test(test_out_of_memory),      cmocka_unit_test(test_times),
      cmocka_unit_test(test_views),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
