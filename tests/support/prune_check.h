/*
 * The retention scenario both stores run (tests/unit/test_prune.c on an
 * SQLite file, tests/integration/test_store_pg.c on PostgreSQL): three days
 * of statements ending four to one days ago plus the last half hour, pruned
 * by minute, then hour, then day, older than a day. After each step every
 * window whose edges the remaining levels tile must give exactly what the
 * recorded statements say (brute force over them), the all-time totals
 * never change, and each step deletes exactly the rows it should (distinct
 * (query, bucket) pairs counted from the statements). Include after
 * testutil.h; static functions only, one copy per test.
 */
#ifndef QP_PRUNE_CHECK_H
#define QP_PRUNE_CHECK_H

#include <stdlib.h>
#include <string.h>

#include "qprof/qprof.h"
#include "store/store_int.h"

#define PC_NFP 3
#define PC_OLD 3000   /* statements in the three old days */
#define PC_RECENT 40  /* statements in the last half hour */
#define PC_N (PC_OLD + PC_RECENT)

typedef struct pc_rec {
  int k;       /* which query */
  int64_t t;   /* end, s */
  uint64_t d;  /* duration, ns */
  bool err;
} pc_rec;

static uint64_t pc_seed = 0x2545F4914F6CDD1Dull;
static uint64_t pc_rnd(void) {
  pc_seed ^= pc_seed << 13;
  pc_seed ^= pc_seed >> 7;
  pc_seed ^= pc_seed << 17;
  return pc_seed;
}

static int64_t pc_floor(int64_t v, int64_t unit) { return qp__floor_div(v, unit) * unit; }

static uint64_t pc_fp(int k) { return 0x5500ull + (uint64_t)k; }

static qp_query_event pc_event(const pc_rec *r) {
  static const char *texts[PC_NFP] = {"select * from pa where id = ?", "update pb set x = ?",
                                      "insert into pc values (?)"};
  qp_query_event e = {0};
  e.backend = QP_BACKEND_POSTGRES;
  e.database = "app";
  e.normalized = texts[r->k];
  e.normalized_len = strlen(texts[r->k]);
  e.fingerprint = pc_fp(r->k);
  e.duration_ns = r->d;
  e.rows = 1;
  e.error = r->err ? "57014" : NULL;
  e.end_wall_ns = r->t * 1000000000;
  return e;
}

/* Totals of the statements whose (60 s) bucket starts in [lo_s, hi_s) and
 * at or after kept_s (what pruning left of them). */
static qpt_sum pc_expect(const pc_rec *r, int64_t lo_s, int64_t hi_s, int64_t kept_s) {
  qpt_sum w = {0};
  bool seen[PC_NFP] = {false};
  for (int i = 0; i < PC_N; i++) {
    int64_t b = pc_floor(r[i].t, 60);
    if (b < lo_s || b >= hi_s || b < kept_s) continue;
    w.calls++;
    w.errors += r[i].err;
    w.total += r[i].d;
    if (!seen[r[i].k]) w.n++;
    seen[r[i].k] = true;
  }
  return w;
}

static int pc_cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* Distinct (query, bucket of `unit` s) pairs among the statements whose
 * bucket starts before cutoff_s: the rows a prune of that level deletes. */
static uint64_t pc_rows_before(const pc_rec *r, int64_t unit, int64_t cutoff_s) {
  int64_t *keys = malloc(PC_N * sizeof *keys);
  assert_non_null(keys);
  size_t n = 0;
  for (int i = 0; i < PC_N; i++) {
    int64_t b = pc_floor(pc_floor(r[i].t, 60), unit);
    if (b < cutoff_s) keys[n++] = b * PC_NFP + r[i].k;
  }
  qsort(keys, n, sizeof *keys, pc_cmp_i64);
  uint64_t d = 0;
  for (size_t i = 0; i < n; i++)
    if (i == 0 || keys[i] != keys[i - 1]) d++;
  free(keys);
  return d;
}

/* Every query of a window keeps its text. */
static int pc_sum_texts(const qp_query_summary *q, void *ud) {
  assert_true(q->query != NULL && q->query[0] != '\0');
  return qpt_sum_add(q, ud);
}

static void pc_check_window(qp_store *s, const pc_rec *r, int64_t lo_s, int64_t hi_s,
                            int64_t kept_s, const char *what) {
  qpt_sum want = pc_expect(r, lo_s, hi_s, kept_s), got = {0};
  int64_t a = lo_s == INT64_MIN ? INT64_MIN : lo_s * 1000000000;
  int64_t b = hi_s == INT64_MAX ? INT64_MAX : hi_s * 1000000000;
  assert_int_equal(qp_store_summarize(s, a, b, pc_sum_texts, &got), QP_OK);
  if (got.calls != want.calls || got.errors != want.errors || got.total != want.total ||
      got.n != want.n)
    fail_msg("%s [%lld, %lld): calls %llu errors %llu total %llu queries %d, want %llu %llu "
             "%llu %d",
             what, (long long)lo_s, (long long)hi_s, (unsigned long long)got.calls,
             (unsigned long long)got.errors, (unsigned long long)got.total, got.n,
             (unsigned long long)want.calls, (unsigned long long)want.errors,
             (unsigned long long)want.total, want.n);
}

static qp_status pc_count_row(void *ud, const qp_entry *row) {
  (void)row;
  (*(uint64_t *)ud)++;
  return QP_OK;
}

static uint64_t pc_rows_at(qp_store *s, int level, int64_t lo, int64_t hi) {
  uint64_t n = 0;
  assert_int_equal(qp__store_scan(s, level, lo, hi, pc_count_row, &n), QP_OK);
  return n;
}

/* Runs the scenario on a store opened for writing. `orphan` stores a text
 * of a fingerprint with no statistics row (the prune deletes it). */
static void pc_run(qp_store *s, void (*orphan)(qp_store *s, uint64_t fp)) {
  char err[512];
  int64_t now = qp__wall_ns() / 1000000000;
  int64_t d0 = pc_floor(now, 86400) - 4 * 86400;
  pc_rec *r = calloc(PC_N, sizeof *r);
  assert_non_null(r);
  for (int i = 0; i < PC_N; i++) {
    r[i].k = (int)(pc_rnd() % PC_NFP);
    r[i].t = i < PC_OLD ? d0 + (int64_t)(pc_rnd() % (3 * 86400))
                        : now - 60 - (int64_t)(pc_rnd() % 1740);
    r[i].d = 1000 + pc_rnd() % 5000000;
    r[i].err = pc_rnd() % 10 == 0;
  }
  qp_profile *p;
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  for (int i = 0; i < PC_N; i++) {
    qp_query_event e = pc_event(&r[i]);
    assert_int_equal(qp_profile_record(p, &e), QP_OK);
    if (i % 1000 == 999) assert_int_equal(qp_profile_flush(p, s), QP_OK);
  }
  assert_int_equal(qp_profile_flush(p, s), QP_OK);
  qp_profile_free(p);
  orphan(s, 0x5600);

  int64_t before = now - 86400, cut_h = pc_floor(before, 3600), cut_d = pc_floor(before, 86400);
  /* windows: all time; whole hours inside the pruned span; from a whole
   * hour there to a minute of the part kept; whole days from the first */
  int64_t mixed_hi = now - 900;
  struct {
    int64_t lo, hi;
  } w_all = {INT64_MIN, INT64_MAX}, w_hours = {d0 + 3600, d0 + 2 * 86400 + 5 * 3600},
    w_mixed = {d0 + 3 * 3600, mixed_hi}, w_days = {d0, d0 + 2 * 86400},
    w_to_now = {d0 + 86400, mixed_hi};
  pc_check_window(s, r, w_all.lo, w_all.hi, INT64_MIN, "before pruning, all");
  pc_check_window(s, r, w_hours.lo, w_hours.hi, INT64_MIN, "before pruning, hours");
  pc_check_window(s, r, w_mixed.lo, w_mixed.hi, INT64_MIN, "before pruning, mixed");
  uint64_t minutes = pc_rows_at(s, QP_LEVEL_BUCKET, INT64_MIN, INT64_MAX);
  uint64_t want0 = pc_rows_before(r, 60, cut_h);
  assert_true(want0 > 1000 && want0 < minutes);

  /* A dry run counts and deletes nothing. */
  qp_prune_result res;
  assert_int_equal(qp_store_prune(s, before * 1000000000, QP_PRUNE_MINUTE, QP_PRUNE_DRY_RUN, &res),
                   QP_OK);
  assert_int_equal(res.cutoff_ns, cut_h * 1000000000);
  assert_int_equal(res.rows[0], want0);
  assert_int_equal(res.rows[1], 0);
  assert_int_equal(res.rows[2], 0);
  assert_int_equal(res.texts, 1);
  assert_int_equal(pc_rows_at(s, QP_LEVEL_BUCKET, INT64_MIN, INT64_MAX), minutes);

  /* Minutes: the hours answer the old windows exactly. */
  assert_int_equal(qp_store_prune(s, before * 1000000000, QP_PRUNE_MINUTE, 0, &res), QP_OK);
  assert_int_equal(res.rows[0], want0);
  assert_int_equal(res.rows[1] + res.rows[2], 0);
  assert_int_equal(res.texts, 1);
  assert_true(res.size_bytes > 0);
  assert_int_equal(pc_rows_at(s, QP_LEVEL_BUCKET, INT64_MIN, cut_h), 0);
  assert_int_equal(pc_rows_at(s, QP_LEVEL_BUCKET, cut_h, INT64_MAX), minutes - want0);
  pc_check_window(s, r, w_all.lo, w_all.hi, INT64_MIN, "minutes pruned, all");
  pc_check_window(s, r, w_hours.lo, w_hours.hi, INT64_MIN, "minutes pruned, hours");
  pc_check_window(s, r, w_mixed.lo, w_mixed.hi, INT64_MIN, "minutes pruned, mixed");
  pc_check_window(s, r, w_days.lo, w_days.hi, INT64_MIN, "minutes pruned, days");
  /* Again: nothing left to delete. */
  assert_int_equal(qp_store_prune(s, before * 1000000000, QP_PRUNE_MINUTE, 0, &res), QP_OK);
  assert_int_equal(res.rows[0] + res.texts, 0);

  /* The 10-minute rows outlive the minutes (a prune of minutes keeps them). */
  assert_int_equal(pc_rows_at(s, QP_LEVEL_10MIN, INT64_MIN, cut_h), pc_rows_before(r, 600, cut_h));

  /* Hours, 10 minutes (and minutes) before the day: 6 hours and days
   * answer. The 10-minute rows are counted with the hours. */
  uint64_t want1 = pc_rows_before(r, 3600, cut_d) + pc_rows_before(r, 600, cut_d);
  assert_true(want1 > 100);
  assert_int_equal(qp_store_prune(s, before * 1000000000, QP_PRUNE_HOUR, 0, &res), QP_OK);
  assert_int_equal(res.cutoff_ns, cut_d * 1000000000);
  assert_int_equal(res.rows[0], 0); /* the minutes before cut_d went with those before cut_h */
  assert_int_equal(res.rows[1], want1);
  assert_int_equal(res.rows[2], 0);
  pc_check_window(s, r, w_all.lo, w_all.hi, INT64_MIN, "hours pruned, all");
  pc_check_window(s, r, w_days.lo, w_days.hi, INT64_MIN, "hours pruned, days");
  pc_check_window(s, r, w_to_now.lo, w_to_now.hi, INT64_MIN, "hours pruned, to now");

  assert_int_equal(pc_rows_at(s, QP_LEVEL_10MIN, INT64_MIN, cut_d), 0);
  assert_int_equal(pc_rows_at(s, QP_LEVEL_6HOUR, INT64_MIN, cut_d),
                   pc_rows_before(r, 21600, cut_d));

  /* Days (and 6 hours, counted with them): the old span has only its
   * all-time totals left. */
  assert_int_equal(qp_store_prune(s, before * 1000000000, QP_PRUNE_DAY, 0, &res), QP_OK);
  assert_int_equal(res.rows[2], pc_rows_before(r, 86400, cut_d) + pc_rows_before(r, 21600, cut_d));
  assert_int_equal(res.texts, 0); /* the all-time rows keep every text */
  pc_check_window(s, r, w_all.lo, w_all.hi, INT64_MIN, "days pruned, all");
  pc_check_window(s, r, w_days.lo, w_days.hi, cut_d, "days pruned, days");
  pc_check_window(s, r, w_to_now.lo, w_to_now.hi, cut_d, "days pruned, to now");
  assert_int_equal(pc_rows_at(s, QP_LEVEL_ALL, 0, 1), PC_NFP);
  free(r);
}

#endif
