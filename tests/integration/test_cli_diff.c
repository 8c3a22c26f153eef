/* `qprof diff` end to end: self-diff reports no change, a slowed query trips
 * --fail-above (exit 3, named), --min-calls exempts it, new and vanished
 * queries, two windows of one store, JSON, and the usage/runtime exit codes. */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[512];
static const char *qprof;

#define T0 1795168800LL /* 2026-11-20T10:00:00Z */

typedef struct q {
  uint64_t fp;
  const char *text;
  int calls;
  uint64_t base_ns;
} q;

static const q qs[] = {
    {0xaaaa000000000001ull, "select * from users where id = ?", 400, 200000},
    {0xaaaa000000000002ull, "update carts set total = ? where id = ?", 300, 3000000},
    {0xaaaa000000000003ull, "select count(*) from orders", 20, 90000000},
    {0xaaaa000000000004ull, "delete from sessions where expires < ?", 100, 1000000},
};

/* which: bitmask of queries to record; slow: factor for query 2 (index 1);
 * shift_s: offset of all times. */
static void record(const char *path, unsigned which, double slow, int64_t shift_s) {
  qp_profile *p;
  char err[512];
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  qp_store *s;
  assert_int_equal(qp_store_open(&s, path, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
    if (!(which & (1u << k))) continue;
    for (int i = 0; i < qs[k].calls; i++) {
      qp_query_event ev = {0};
      ev.backend = QP_BACKEND_POSTGRES;
      ev.database = "shop";
      ev.normalized = qs[k].text;
      ev.normalized_len = strlen(qs[k].text);
      ev.fingerprint = qs[k].fp;
      ev.duration_ns = qs[k].base_ns + (uint64_t)(i % 50) * qs[k].base_ns / 25;
      if (k == 1) ev.duration_ns = (uint64_t)((double)ev.duration_ns * slow);
      ev.rows = 1;
      ev.end_wall_ns = (T0 + shift_s + i * 3) * 1000000000LL;
      assert_int_equal(qp_profile_record(p, &ev), QP_OK);
    }
  }
  assert_int_equal(qp_profile_flush(p, s), QP_OK);
  qp_store_close(s);
  qp_profile_free(p);
}

static int run(const char *args, char **out, char **errout) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "env -u QPROF_STORE NO_COLOR=1 COLUMNS=140 '%s' %s", qprof, args);
  return qpt_run_capture(dir, cmd, out, errout);
}

static int setup(void **state) {
  (void)state;
  qprof = getenv("QPROF_BIN");
  if (qprof == NULL) return -1;
  snprintf(dir, sizeof dir, "%s", qpt_tempdir());
  char p[600];
  snprintf(p, sizeof p, "%s/base.db", dir);
  record(p, 0x7, 1.0, 0); /* queries 1-3 */
  snprintf(p, sizeof p, "%s/new.db", dir);
  record(p, 0xb, 1.5, 0); /* query 2 is 50% slower, 3 vanished, 4 new */
  /* one store, two periods: day one as base, day two with query 2 slower */
  snprintf(p, sizeof p, "%s/both.db", dir);
  record(p, 0x7, 1.0, 0);
  record(p, 0x7, 1.3, 86400);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  qpt_system("rm -rf '%s'", dir);
  return 0;
}

static void test_self_diff_no_change(void **state) {
  (void)state;
  char *out;
  assert_int_equal(run("diff base.db base.db --fail-above 0", &out, NULL), 0);
  assert_non_null(strstr(out, "No change: 3 queries"));
  free(out);
  assert_int_equal(run("diff base.db base.db --format json --fail-above 0", &out, NULL), 0);
  json_t *root = json_loads(out, 0, NULL);
  assert_non_null(root);
  json_t *c = json_object_get(root, "counts");
  assert_int_equal(json_integer_value(json_object_get(c, "unchanged")), 3);
  assert_int_equal(json_integer_value(json_object_get(c, "changed")), 0);
  assert_int_equal(json_integer_value(json_object_get(c, "regressions")), 0);
  size_t i;
  json_t *e;
  json_array_foreach(json_object_get(root, "queries"), i, e) {
    assert_string_equal(json_string_value(json_object_get(e, "status")), "unchanged");
    assert_true(json_number_value(json_object_get(e, "p95_change_pct")) == 0);
  }
  json_decref(root);
  free(out);
}

static void test_regression_gate(void **state) {
  (void)state;
  char *out, *err;
  assert_int_equal(run("diff base.db new.db --fail-above 20", &out, &err), 3);
  assert_non_null(strstr(err, "aaaa000000000002"));
  assert_non_null(strstr(err, "p95"));
  assert_null(strstr(err, "aaaa000000000001"));
  assert_non_null(strstr(out, "SLOWER"));
  assert_non_null(strstr(out, "1 changed, 1 new, 1 vanished, 1 unchanged"));
  free(out);
  free(err);
  /* 50% slower is not above 60% */
  assert_int_equal(run("diff base.db new.db --fail-above 60", NULL, NULL), 0);
  /* not enough calls to count */
  assert_int_equal(run("diff base.db new.db --fail-above 20 --min-calls 1000", NULL, NULL), 0);
  /* without a gate, a diff with changes still exits 0 */
  assert_int_equal(run("diff base.db new.db", NULL, NULL), 0);
  /* JSON: statuses and the p95 change of about +50% */
  assert_int_equal(run("diff base.db new.db --format json --fail-above 20", &out, NULL), 3);
  json_t *root = json_loads(out, 0, NULL);
  assert_non_null(root);
  size_t i;
  json_t *e;
  int seen = 0;
  json_array_foreach(json_object_get(root, "queries"), i, e) {
    const char *fp = json_string_value(json_object_get(e, "fingerprint"));
    const char *st = json_string_value(json_object_get(e, "status"));
    if (strcmp(fp, "aaaa000000000002") == 0) {
      assert_string_equal(st, "changed");
      double d = json_number_value(json_object_get(e, "p95_change_pct"));
      assert_true(d > 45 && d < 55);
      assert_true(json_is_true(json_object_get(e, "regression")));
      seen |= 1;
    } else if (strcmp(fp, "aaaa000000000003") == 0) {
      assert_string_equal(st, "vanished");
      assert_true(json_is_null(json_object_get(e, "new")));
      seen |= 2;
    } else if (strcmp(fp, "aaaa000000000004") == 0) {
      assert_string_equal(st, "new");
      assert_true(json_is_null(json_object_get(e, "base")));
      seen |= 4;
    } else {
      assert_string_equal(st, "unchanged");
      seen |= 8;
    }
  }
  assert_int_equal(seen, 15);
  json_decref(root);
  free(out);
}

static void test_two_windows_of_one_store(void **state) {
  (void)state;
  char *out, *err;
  assert_int_equal(run("diff both.db --base-until 2026-11-21 --new-since 2026-11-21 --fail-above 20",
                       &out, &err),
                   3);
  assert_non_null(strstr(err, "aaaa000000000002"));
  free(out);
  free(err);
  assert_int_equal(run("diff both.db --base-until 2026-11-21 --new-since 2026-11-21 --fail-above 40",
                       NULL, NULL),
                   0);
  /* the same window on both sides: no change */
  assert_int_equal(run("diff both.db both.db --since 2026-11-21 --fail-above 0", &out, NULL), 0);
  assert_non_null(strstr(out, "No change"));
  free(out);
}

static void test_exit_codes(void **state) {
  (void)state;
  char *err;
  assert_int_equal(run("diff base.db nosuch.db", NULL, &err), 1);
  assert_non_null(strstr(err, "nosuch.db"));
  free(err);
  assert_int_equal(run("diff base.db", NULL, NULL), 2);        /* one store, no windows */
  assert_int_equal(run("diff", NULL, NULL), 2);
  assert_int_equal(run("diff base.db new.db --bogus", NULL, NULL), 2);
  assert_int_equal(run("diff base.db new.db --fail-above x", NULL, NULL), 2);
  assert_int_equal(run("diff base.db new.db --format csv", NULL, NULL), 2);
  assert_int_equal(run("diff base.db new.db --match '(('", NULL, &err), 2);
  assert_non_null(strstr(err, "(("));
  free(err);
  char *out;
  assert_int_equal(run("diff --help", &out, NULL), 0);
  assert_non_null(strstr(out, "Usage: qprof diff"));
  free(out);
}

static int run_cols(int cols, const char *args, char **out, char **errout) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "env -u QPROF_STORE NO_COLOR=1 COLUMNS=%d '%s' %s", cols, qprof, args);
  return qpt_run_capture(dir, cmd, out, errout);
}

/* The table fits the terminal as the report's does: at 80 columns every line
 * is at most 80 wide (it was over 120), and the p95 change and the query
 * are still there; --wide keeps every column and the whole text. */
static void test_table_fits_the_terminal(void **state) {
  (void)state;
  static const int widths[] = {80, 100, 120, 60};
  for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
    char *out;
    assert_int_equal(run_cols(widths[w], "diff base.db new.db", &out, NULL), 0);
    int line = 0;
    for (char *p = out; *p;) {
      char *nl = strchr(p, '\n');
      size_t len = nl ? (size_t)(nl - p) : strlen(p);
      /* the two header lines name the stores, whose paths the user chose */
      if (line >= 2 && len > (size_t)widths[w])
        fail_msg("line %d is %zu wide at COLUMNS=%d: %.*s", line, len, widths[w], (int)len, p);
      line++;
      p += len + (nl != NULL);
    }
    static const char *const want[] = {"changed", "p95", "update carts", "+48.0%"};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++)
      if (strstr(out, want[k]) == NULL)
        fail_msg("COLUMNS=%d: no '%s' in\n%s", widths[w], want[k], out);
    free(out);
  }
  char *out;
  assert_int_equal(run_cols(80, "diff base.db new.db --wide", &out, NULL), 0);
  assert_non_null(strstr(out, "fingerprint"));
  assert_non_null(strstr(out, "mean"));
  assert_non_null(strstr(out, "update carts set total = ? where id = ?"));
  free(out);
}

/* Too many stores: the message says what is wrong. */
static void test_too_many_stores(void **state) {
  (void)state;
  char *err;
  assert_int_equal(run("diff base.db new.db both.db", NULL, &err), 2);
  assert_non_null(strstr(err, "3 stores given"));
  assert_non_null(strstr(err, "'both.db' is one too many"));
  assert_null(strstr(err, "needs BASE and NEW"));
  free(err);
  assert_int_equal(run("diff", NULL, &err), 2);
  assert_non_null(strstr(err, "needs a BASE store"));
  free(err);
}

/* --match is case-insensitive here too. */
static void test_match_ignores_case(void **state) {
  (void)state;
  char *out;
  assert_int_equal(run("diff base.db new.db --format json --match UPDATE", &out, NULL), 0);
  json_t *root = json_loads(out, 0, NULL);
  assert_non_null(root);
  assert_int_equal(json_array_size(json_object_get(root, "queries")), 1);
  json_decref(root);
  free(out);
}

/* --output FILE: the same bytes as stdout, nothing on stdout, the gate's
 * exit status and stderr lines kept; a directory that does not exist: 1. */
static void test_output_file(void **state) {
  (void)state;
  static const char *const fmts[] = {"text", "json"};
  for (size_t i = 0; i < 2; i++) {
    char args[256], p[700];
    char *want, *got, *err;
    snprintf(args, sizeof args, "diff base.db new.db --fail-above 20 --format %s", fmts[i]);
    assert_int_equal(run(args, &want, NULL), 3);
    snprintf(args, sizeof args, "diff base.db new.db --fail-above 20 --format %s --output d.%s",
             fmts[i], fmts[i]);
    assert_int_equal(run(args, &got, &err), 3);
    assert_string_equal(got, "");
    assert_non_null(strstr(err, "got slower at p95"));
    snprintf(p, sizeof p, "%s/d.%s", dir, fmts[i]);
    char *file = qpt_read_file(p, NULL);
    assert_non_null(file);
    assert_string_equal(file, want);
    free(file);
    free(want);
    free(got);
    free(err);
  }
  char *err;
  assert_int_equal(run("diff base.db new.db --output nosuchdir/d.txt", NULL, &err), 1);
  assert_non_null(strstr(err, "cannot create a file in nosuchdir"));
  free(err);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_self_diff_no_change),
      cmocka_unit_test(test_regression_gate),
      cmocka_unit_test(test_two_windows_of_one_store),
      cmocka_unit_test(test_exit_codes),
      cmocka_unit_test(test_output_file),
      cmocka_unit_test(test_table_fits_the_terminal),
      cmocka_unit_test(test_too_many_stores),
      cmocka_unit_test(test_match_ignores_case),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
