/* The report model's dimensions (qp_report_options.by and the user,
 * application, host and database filters) over a real SQLite store
 * recorded through the profile: events of three hosts, two applications
 * and two users, whose expected totals the test adds up itself from the
 * same events. Checks the default key (per database, the rest merged),
 * --by keys, groups per dimension, exact and /regex/ filters applied before
 * merging, a report across hosts equal to the sum of per-host reports,
 * series of a filtered report, the diff of two hosts, and parsing. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qprof/qprof.h"

#define T0 1795168800LL /* 2026-11-20T10:00:00Z */
#define NS 1000000000LL

static char dir[512];
static char path[600];

static const char *const hosts[] = {"web-1", "web-2", "batch"};
static const char *const apps[] = {"api", "worker"};
static const char *const users[] = {"alice", "bob"};
static const char *const dbs[] = {"app", "reports"};
static const uint64_t fps[] = {0x0a, 0x0b};
static const char *const texts[] = {"select * from users where id = ?", "update t set x = ? where id = ?"};
#define NH 3
#define NA 2
#define NU 2
#define NF 2
#define ND 2

/* One event of the fixture: the i-th of combination (h, a, u, k). */
typedef struct ev_t {
  int h, a, u, k, d;
  uint64_t dur;
  bool err;
  int64_t end_ns;
} ev_t;

static int ncalls(int h, int a, int u, int k) { return 20 + h * 5 + a * 3 + u + k * 2; }

static ev_t event_of(int h, int a, int u, int k, int i) {
  ev_t e = {.h = h, .a = a, .u = u, .k = k, .d = (h + i) % 2};
  e.dur = (uint64_t)(1000 * (1 + k)) * (uint64_t)(1 + i % 7) * (uint64_t)(h + 1) * 100;
  e.err = u == 1 && i % 10 == 0;
  e.end_ns = (T0 + (int64_t)i * 60 + h * 7) * NS + 250000000;
  return e;
}

/* Every event, in order; fn gets each. */
#define FOR_EACH_EVENT(e)                                                                          \
  for (int h_ = 0; h_ < NH; h_++)                                                                  \
    for (int a_ = 0; a_ < NA; a_++)                                                                \
      for (int u_ = 0; u_ < NU; u_++)                                                              \
        for (int k_ = 0; k_ < NF; k_++)                                                            \
          for (int i_ = 0, n_ = ncalls(h_, a_, u_, k_); i_ < n_; i_++)                             \
            for (ev_t e = event_of(h_, a_, u_, k_, i_), *once_ = &e; once_ != NULL; once_ = NULL)

static void record(void) {
  qp_profile *p;
  char err[512];
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  qp_store *s;
  assert_int_equal(qp_store_open(&s, path, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  FOR_EACH_EVENT(e) {
    qp_query_event ev = {0};
    ev.size = sizeof ev;
    ev.backend = QP_BACKEND_POSTGRES;
    ev.database = dbs[e.d];
    ev.user = users[e.u];
    ev.application = apps[e.a];
    ev.host = hosts[e.h];
    ev.normalized = texts[e.k];
    ev.normalized_len = strlen(texts[e.k]);
    ev.fingerprint = fps[e.k];
    ev.duration_ns = e.dur;
    ev.rows = 1;
    ev.error = e.err ? "40001" : NULL;
    ev.end_wall_ns = e.end_ns;
    assert_int_equal(qp_profile_record(p, &ev), QP_OK);
  }
  assert_int_equal(qp_profile_flush(p, s), QP_OK);
  qp_store_close(s);
  qp_profile_free(p);
}

typedef struct sums {
  uint64_t calls, errors, total_ns, min_ns, max_ns;
} sums;

static void add(sums *x, const ev_t *e) {
  if (x->calls == 0 || e->dur < x->min_ns) x->min_ns = e->dur;
  if (e->dur > x->max_ns) x->max_ns = e->dur;
  x->calls++;
  x->errors += e->err;
  x->total_ns += e->dur;
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "%s", qpt_tempdir());
  snprintf(path, sizeof path, "%s/dims.db", dir);
  record();
  return 0;
}

static int teardown(void **state) {
  (void)state;
  qpt_system("rm -rf '%s'", dir);
  return 0;
}

static qp_store *open_store(void) {
  qp_store *s;
  char err[512];
  assert_int_equal(qp_store_open(&s, path, QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  return s;
}

static qp_report *build(qp_store *s, const qp_report_options *o) {
  qp_report *r;
  char err[512];
  qp_status rc = qp_report_new(&r, s, o, err, sizeof err);
  if (rc != QP_OK) fail_msg("qp_report_new: %s", err);
  return r;
}

static int find_ix(const char *const *v, int n, const char *x) {
  for (int i = 0; i < n; i++)
    if (strcmp(v[i], x) == 0) return i;
  fail_msg("unexpected value '%s'", x);
  return -1;
}

static int kix(uint64_t fp) { return fp == fps[0] ? 0 : 1; }

/* Without `by`: rows per (fingerprint, backend, database) as before the
 * dimensions, users, applications and hosts merged exactly. */
static void test_default_key_merges(void **state) {
  (void)state;
  sums want[NF][ND] = {{{0}}};
  sums all = {0};
  FOR_EACH_EVENT(e) {
    add(&want[e.k][e.d], &e);
    add(&all, &e);
  }
  qp_store *s = open_store();
  qp_report_options o;
  qp_report_options_init(&o);
  assert_int_equal(o.by, 0); /* the default: per database */
  qp_report *r = build(s, &o);
  assert_int_equal(qp_report_count(r), NF * ND);
  const qp_report_totals *t = qp_report_totals_get(r);
  assert_int_equal(t->calls, all.calls);
  assert_int_equal(t->errors, all.errors);
  assert_int_equal(t->total_ns, all.total_ns);
  assert_int_equal(t->queries_in_window, NF * ND);
  assert_int_equal(t->by, QP_REPORT_KEY_DEFAULT);
  assert_null(t->filter_host);
  for (size_t i = 0; i < qp_report_count(r); i++) {
    const qp_query_summary *q = qp_report_query(r, i);
    assert_non_null(q->database);
    assert_null(q->user);
    assert_null(q->application);
    assert_null(q->host);
    const sums *w = &want[kix(q->fingerprint)][find_ix(dbs, ND, q->database)];
    assert_int_equal(q->calls, w->calls);
    assert_int_equal(q->errors, w->errors);
    assert_int_equal(q->total_ns, w->total_ns);
    assert_int_equal(q->min_ns, w->min_ns);
    assert_int_equal(q->max_ns, w->max_ns);
  }
  qp_report_free(r);
  /* a caller built against the first qp_report_options (no `by`, no
   * filters) gets the same report */
  qp_report_options old;
  qp_report_options_init(&old);
  old.size = offsetof(qp_report_options, by);
  old.by = QP_REPORT_KEY(QP_REPORT_BY_HOST); /* beyond its size: not read */
  old.host = "web-1";
  r = build(s, &old);
  assert_int_equal(qp_report_count(r), NF * ND);
  assert_int_equal(qp_report_totals_get(r)->calls, all.calls);
  qp_report_free(r);
  qp_store_close(s);
}

typedef struct group_list {
  qp_report_group g[16];
  char keys[16][64];
  size_t n;
} group_list;

static int take_group(const qp_report_group *g, void *ud) {
  group_list *l = ud;
  assert_true(l->n < 16);
  l->g[l->n] = *g;
  snprintf(l->keys[l->n], sizeof l->keys[0], "%s", g->key);
  l->g[l->n].key = l->keys[l->n];
  l->n++;
  return 0;
}

/* --by host and --by host,application: rows per fingerprint and those
 * dimensions; the groups of each add up to the totals. */
static void test_by_host_and_application(void **state) {
  (void)state;
  sums by_h[NF][NH] = {{{0}}}, by_ha[NF][NH][NA] = {{{{0}}}}, host[NH] = {{0}}, all = {0};
  FOR_EACH_EVENT(e) {
    add(&by_h[e.k][e.h], &e);
    add(&by_ha[e.k][e.h][e.a], &e);
    add(&host[e.h], &e);
    add(&all, &e);
  }
  qp_store *s = open_store();
  qp_report_options o;
  qp_report_options_init(&o);
  o.by = QP_REPORT_KEY(QP_REPORT_BY_HOST);
  qp_report *r = build(s, &o);
  assert_int_equal(qp_report_count(r), NF * NH);
  assert_int_equal(qp_report_totals_get(r)->calls, all.calls);
  for (size_t i = 0; i < qp_report_count(r); i++) {
    const qp_query_summary *q = qp_report_query(r, i);
    assert_null(q->database);
    assert_null(q->user);
    assert_non_null(q->host);
    const sums *w = &by_h[kix(q->fingerprint)][find_ix(hosts, NH, q->host)];
    assert_int_equal(q->calls, w->calls);
    assert_int_equal(q->errors, w->errors);
    assert_int_equal(q->total_ns, w->total_ns);
    assert_int_equal(q->min_ns, w->min_ns);
    assert_int_equal(q->max_ns, w->max_ns);
  }
  group_list gl = {0};
  assert_int_equal(qp_report_groups(r, QP_REPORT_BY_HOST, take_group, &gl), QP_OK);
  assert_int_equal(gl.n, NH);
  uint64_t sum = 0;
  for (size_t i = 0; i < gl.n; i++) {
    const sums *w = &host[find_ix(hosts, NH, gl.g[i].key)];
    assert_int_equal(gl.g[i].calls, w->calls);
    assert_int_equal(gl.g[i].total_ns, w->total_ns);
    assert_int_equal(gl.g[i].errors, w->errors);
    assert_int_equal(gl.g[i].queries, NF);
    assert_string_equal(gl.g[i].backend, "postgres");
    if (i > 0) assert_true(gl.g[i].total_ns <= gl.g[i - 1].total_ns);
    sum += gl.g[i].total_ns;
  }
  assert_int_equal(sum, all.total_ns);
  /* the database is merged away: no groups of it */
  assert_int_equal(qp_report_groups(r, QP_REPORT_BY_DATABASE, take_group, &gl), QP_INVALID);
  assert_non_null(strstr(qp_report_errmsg(r), "not broken down by database"));
  qp_report_free(r);

  o.by = QP_REPORT_KEY(QP_REPORT_BY_HOST) | QP_REPORT_KEY(QP_REPORT_BY_APPLICATION);
  r = build(s, &o);
  assert_int_equal(qp_report_count(r), NF * NH * NA);
  for (size_t i = 0; i < qp_report_count(r); i++) {
    const qp_query_summary *q = qp_report_query(r, i);
    const sums *w =
        &by_ha[kix(q->fingerprint)][find_ix(hosts, NH, q->host)][find_ix(apps, NA, q->application)];
    assert_int_equal(q->calls, w->calls);
    assert_int_equal(q->total_ns, w->total_ns);
  }
  /* grouped by host, a host's queries are its distinct fingerprints */
  memset(&gl, 0, sizeof gl);
  assert_int_equal(qp_report_groups(r, QP_REPORT_BY_HOST, take_group, &gl), QP_OK);
  assert_int_equal(gl.n, NH);
  for (size_t i = 0; i < gl.n; i++) {
    assert_int_equal(gl.g[i].queries, NF);
    assert_int_equal(gl.g[i].calls, host[find_ix(hosts, NH, gl.g[i].key)].calls);
  }
  memset(&gl, 0, sizeof gl);
  assert_int_equal(qp_report_groups(r, QP_REPORT_BY_APPLICATION, take_group, &gl), QP_OK);
  assert_int_equal(gl.n, NA);
  assert_int_equal(qp_report_groups(r, QP_REPORT_BY_USER, take_group, &gl), QP_INVALID);
  qp_report_free(r);

  /* no dimension at all: one row per fingerprint */
  o.by = QP_REPORT_KEY_NONE;
  r = build(s, &o);
  assert_int_equal(qp_report_count(r), NF);
  assert_int_equal(qp_report_totals_get(r)->by, 0);
  assert_null(qp_report_query(r, 0)->database);
  assert_int_equal(qp_report_totals_get(r)->calls, all.calls);
  qp_report_free(r);
  qp_store_close(s);
}

/* A report over every host is the sum of the per-host reports, row by row
 * (the same key), with the extremes of the parts; the histograms add up. */
typedef struct bins {
  uint64_t n;
} bins;
static int count_bins(const qp_report_bin *b, void *ud) {
  ((bins *)ud)->n += b->count;
  return 0;
}

static void test_sum_of_hosts(void **state) {
  (void)state;
  qp_store *s = open_store();
  qp_report_options o;
  qp_report_options_init(&o);
  qp_report *whole = build(s, &o);
  size_t n = qp_report_count(whole);
  sums *parts = calloc(n, sizeof *parts);
  uint64_t hist_parts = 0;
  for (int h = 0; h < NH; h++) {
    o.host = hosts[h];
    qp_report *r = build(s, &o);
    const qp_report_totals *t = qp_report_totals_get(r);
    assert_string_equal(t->filter_host, hosts[h]);
    assert_int_equal(t->queries_in_window, n); /* counted before the filter */
    for (size_t i = 0; i < qp_report_count(r); i++) {
      const qp_query_summary *q = qp_report_query(r, i);
      size_t j = 0;
      while (j < n && !(qp_report_query(whole, j)->fingerprint == q->fingerprint &&
                        strcmp(qp_report_query(whole, j)->database, q->database) == 0))
        j++;
      assert_true(j < n);
      sums *x = &parts[j];
      if (x->calls == 0 || q->min_ns < x->min_ns) x->min_ns = q->min_ns;
      if (q->max_ns > x->max_ns) x->max_ns = q->max_ns;
      x->calls += q->calls;
      x->errors += q->errors;
      x->total_ns += q->total_ns;
    }
    bins b = {0};
    assert_int_equal(qp_report_histogram(r, QP_REPORT_ALL, count_bins, &b), QP_OK);
    assert_int_equal(b.n, t->calls);
    hist_parts += b.n;
    qp_report_free(r);
  }
  for (size_t j = 0; j < n; j++) {
    const qp_query_summary *q = qp_report_query(whole, j);
    assert_int_equal(parts[j].calls, q->calls);
    assert_int_equal(parts[j].errors, q->errors);
    assert_int_equal(parts[j].total_ns, q->total_ns);
    assert_int_equal(parts[j].min_ns, q->min_ns);
    assert_int_equal(parts[j].max_ns, q->max_ns);
  }
  bins b = {0};
  assert_int_equal(qp_report_histogram(whole, QP_REPORT_ALL, count_bins, &b), QP_OK);
  assert_int_equal(b.n, hist_parts);
  free(parts);
  qp_report_free(whole);
  qp_store_close(s);
}

static uint64_t calls_where(int host_mask, int app_mask, int user_mask, int db_mask) {
  uint64_t n = 0;
  FOR_EACH_EVENT(e) {
    if ((host_mask >> e.h & 1) && (app_mask >> e.a & 1) && (user_mask >> e.u & 1) &&
        (db_mask >> e.d & 1))
      n++;
  }
  return n;
}

static uint64_t report_calls(qp_store *s, const qp_report_options *o, size_t *count) {
  qp_report *r = build(s, o);
  uint64_t c = qp_report_totals_get(r)->calls;
  if (count != NULL) *count = qp_report_count(r);
  qp_report_free(r);
  return c;
}

/* Exact values and /regex/ (case-sensitive; /.../i not), combined with AND,
 * on dimensions in the key or not; a filter that matches nothing. */
static void test_filters(void **state) {
  (void)state;
  qp_store *s = open_store();
  qp_report_options o;
  size_t count;
  qp_report_options_init(&o);
  o.host = "web-2";
  assert_int_equal(report_calls(s, &o, NULL), calls_where(2, 3, 3, 3));
  o.host = "/^web-/";
  assert_int_equal(report_calls(s, &o, NULL), calls_where(3, 3, 3, 3));
  o.host = "/^WEB-/";
  assert_int_equal(report_calls(s, &o, &count), 0);
  assert_int_equal(count, 0);
  o.host = "/^WEB-/i";
  assert_int_equal(report_calls(s, &o, NULL), calls_where(3, 3, 3, 3));
  o.host = "web"; /* exact: no host is called just that */
  assert_int_equal(report_calls(s, &o, &count), 0);
  o.host = "=batch";
  assert_int_equal(report_calls(s, &o, NULL), calls_where(4, 3, 3, 3));
  o.host = NULL;
  o.user = "bob";
  o.application = "worker";
  assert_int_equal(report_calls(s, &o, NULL), calls_where(7, 2, 2, 3));
  o.database = "/^rep/";
  assert_int_equal(report_calls(s, &o, NULL), calls_where(7, 2, 2, 2));
  /* with the filtered dimension in the key too */
  o.by = QP_REPORT_KEY(QP_REPORT_BY_USER);
  qp_report *r = build(s, &o);
  assert_int_equal(qp_report_count(r), NF);
  for (size_t i = 0; i < qp_report_count(r); i++)
    assert_string_equal(qp_report_query(r, i)->user, "bob");
  qp_report_free(r);
  /* nothing matches: an empty report that still counts the window */
  qp_report_options_init(&o);
  o.user = "carol";
  r = build(s, &o);
  assert_int_equal(qp_report_count(r), 0);
  assert_int_equal(qp_report_totals_get(r)->queries_in_window, NF * ND);
  assert_int_equal(qp_report_totals_get(r)->calls, 0);
  qp_report_free(r);
  /* "" is "not recorded": nothing here */
  o.user = "";
  assert_int_equal(report_calls(s, &o, NULL), 0);
  /* a bad pattern, named by its option */
  o.user = NULL;
  o.host = "/web(/";
  char err[512];
  assert_int_equal(qp_report_check(&o, err, sizeof err), QP_PATTERN);
  if (strncmp(err, "host pattern '/web(/' is invalid at offset", 42) != 0) fail_msg("%s", err);
  assert_int_equal(qp_report_new(&r, s, &o, err, sizeof err), QP_PATTERN);
  assert_null(r);
  o.host = NULL;
  o.by = 32;
  assert_int_equal(qp_report_check(&o, err, sizeof err), QP_INVALID);
  qp_store_close(s);
}

static int sum_calls(const qp_report_point *p, void *ud) {
  *(uint64_t *)ud += p->calls;
  return 0;
}

/* The series of a filtered report read only the rows the filter keeps. */
static void test_series_filtered(void **state) {
  (void)state;
  qp_store *s = open_store();
  qp_report_options o;
  qp_report_options_init(&o);
  o.host = "web-1";
  o.by = QP_REPORT_KEY(QP_REPORT_BY_APPLICATION);
  qp_report *r = build(s, &o);
  uint64_t all = 0;
  assert_int_equal(qp_report_series(r, QP_REPORT_ALL, 0, sum_calls, &all), QP_OK);
  assert_int_equal(all, calls_where(1, 3, 3, 3));
  for (size_t i = 0; i < qp_report_count(r); i++) {
    uint64_t one = 0;
    assert_int_equal(qp_report_series(r, i, 3600, sum_calls, &one), QP_OK);
    assert_int_equal(one, qp_report_query(r, i)->calls);
  }
  qp_report_free(r);
  qp_store_close(s);
}

/* Two hosts of one store compared per query: every query on both sides,
 * the calls of each side those of its host. */
static void test_diff_two_hosts(void **state) {
  (void)state;
  qp_store *s = open_store();
  qp_report_options a, b;
  qp_report_options_init(&a);
  qp_report_options_init(&b);
  a.host = "web-1";
  b.host = "batch";
  qp_report *ra = build(s, &a), *rb = build(s, &b);
  qp_diff_options dopt;
  qp_diff_options_init(&dopt);
  qp_diff *d;
  char err[512];
  assert_int_equal(qp_diff_new(&d, ra, rb, &dopt, err, sizeof err), QP_OK);
  const qp_diff_counts *c = qp_diff_counts_get(d);
  assert_int_equal(c->added + c->vanished, 0);
  assert_int_equal(c->changed, NF * ND);
  uint64_t base = 0, cur = 0;
  for (size_t i = 0; i < qp_diff_count(d); i++) {
    const qp_diff_entry *e = qp_diff_entry_at(d, i);
    base += e->base->calls;
    cur += e->cur->calls;
    assert_true(e->p95_pct > 0); /* batch's durations are 3x web-1's */
  }
  assert_int_equal(base, calls_where(1, 3, 3, 3));
  assert_int_equal(cur, calls_where(4, 3, 3, 3));
  qp_diff_free(d);
  /* reports keyed differently do not join */
  b.by = QP_REPORT_KEY(QP_REPORT_BY_HOST);
  qp_report *rh = build(s, &b);
  assert_int_equal(qp_diff_new(&d, ra, rh, &dopt, err, sizeof err), QP_INVALID);
  assert_null(d);
  assert_non_null(strstr(err, "keyed by different dimensions"));
  qp_report_free(rh);
  qp_report_free(ra);
  qp_report_free(rb);
  qp_store_close(s);
}

static void test_parse(void **state) {
  (void)state;
  unsigned by = 99;
  char err[256];
  assert_int_equal(qp_report_by_parse("host,application", &by, err, sizeof err), QP_OK);
  assert_int_equal(by, QP_REPORT_KEY(QP_REPORT_BY_HOST) | QP_REPORT_KEY(QP_REPORT_BY_APPLICATION));
  assert_int_equal(qp_report_by_parse("database,user,user", &by, err, sizeof err), QP_OK);
  assert_int_equal(by, QP_REPORT_KEY(QP_REPORT_BY_DATABASE) | QP_REPORT_KEY(QP_REPORT_BY_USER));
  assert_int_equal(qp_report_by_parse("none", &by, err, sizeof err), QP_OK);
  assert_int_equal(by, QP_REPORT_KEY_NONE);
  assert_int_equal(qp_report_by_parse("host,role", &by, err, sizeof err), QP_INVALID);
  assert_non_null(strstr(err, "unknown dimension 'role'"));
  assert_int_equal(qp_report_by_parse("", &by, err, sizeof err), QP_INVALID);
  assert_int_equal(qp_report_by_parse("host,", &by, err, sizeof err), QP_INVALID);
  assert_non_null(strstr(err, "empty dimension"));
  for (int i = 0; i < 4; i++) {
    qp_report_group_by g;
    assert_int_equal(qp_report_group_by_parse(qp_report_group_by_name((qp_report_group_by)i), &g),
                     QP_OK);
    assert_int_equal(g, i);
  }
  assert_null(qp_report_group_by_name((qp_report_group_by)4));
  bool re, ci;
  const char *st;
  size_t len;
  assert_int_equal(qp_report_dim_filter_parse("/a.b/i", &re, &ci, &st, &len), QP_OK);
  assert_true(re && ci);
  assert_int_equal(len, 3);
  assert_memory_equal(st, "a.b", 3);
  assert_int_equal(qp_report_dim_filter_parse("/srv/app.db", &re, &ci, &st, &len), QP_OK);
  assert_false(re); /* a path is a value */
  assert_int_equal(qp_report_dim_filter_parse("=/x/", &re, &ci, &st, &len), QP_OK);
  assert_false(re);
  assert_string_equal(st, "/x/");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_default_key_merges), cmocka_unit_test(test_by_host_and_application),
      cmocka_unit_test(test_sum_of_hosts),       cmocka_unit_test(test_filters),
      cmocka_unit_test(test_series_filtered),    cmocka_unit_test(test_diff_two_hosts),
      cmocka_unit_test(test_parse),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
