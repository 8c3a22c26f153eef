/* The HTML report in a real browser: a store recorded through the library
 * with times and durations chosen so that every number on the page is
 * known, written with `qprof report --format html --output`, loaded in
 * headless Chromium (tests/support/cdp_page.py drives it over the DevTools
 * protocol on a pipe). Checked: the charts have the points the buckets give
 * and their axis labels, each histogram has the store's bins and adds up to
 * the calls, the tables hold the right totals, errors by code and per
 * database, the sorting script works, dark mode and print media change the
 * page, no console message or exception, no request but the page itself;
 * a saved `qprof advise` run is shown (its index, the query it helps linked
 * to its details, findings that are not indexes, markup as text).
 * The page is kept byte-identical by a golden file
 * (tests/data/report/report_browser.html; QP_UPDATE_GOLDEN=1 rewrites it),
 * and the page and a full-page screenshot are kept as test artifacts in
 * BUILD/test-artifacts/.
 *
 * Without Chromium the test says so and exits 77, which ctest reports as
 * skipped (tools/deps.sh installs chromium, so CI runs it). */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define T0 1795168800LL /* 2026-11-20T10:00:00Z */
#define NS 1000000000LL
#define MS 1000000ull

static char dir[512];
static const char *qprof;
static char chromium[512];

/* Six queries over 30 minutes (60 s buckets), ranked by total time:
 *   #1 A  every minute, 10 calls: 1, 2, 4, 8 ms in turn (4 bins); sampled
 *   #2 B  every third minute (10 minutes), 5 calls of 20 ms; errors 40001 x3, 23505 x2
 *   #3 C  db "other", minutes 10..19, 2 calls: 100 and 300 us; error 23505 x1
 *   #4 F  minute 7, one call of 70 us
 *   #5 E  minute 6, one call of 60 us
 *   #6 D  minute 5, one call of 50 us: the only "other query" of the charts */
typedef struct fq {
  uint64_t fp;
  const char *db, *text;
} fq;
static const fq qa = {0xa1, "app", "select * from a where id = ?"},
                qb = {0xb2, "app", "update b set x = ? where id = ?"},
                qc = {0xc3, "other", "insert into c values (?)"},
                qd = {0xd4, "app", "select ?"}, qe = {0xe5, "app", "select ? + ?"},
                qf = {0xf6, "app", "select ? * ?"};

static void rec(qp_profile *p, const fq *q, int minute, int i, uint64_t dur, const char *err,
                const char *sql) {
  qp_query_event ev = {0};
  ev.backend = QP_BACKEND_POSTGRES;
  ev.database = q->db;
  ev.normalized = q->text;
  ev.normalized_len = strlen(q->text);
  ev.fingerprint = q->fp;
  if (sql != NULL) {
    ev.sql = sql;
    ev.sql_len = strlen(sql);
  }
  ev.duration_ns = dur;
  ev.rows = 1;
  ev.error = err;
  ev.end_wall_ns = (T0 + minute * 60 + 1 + i) * NS;
  assert_int_equal(qp_profile_record(p, &ev), QP_OK);
}

static void build_store(const char *path) {
  qp_profile *p;
  char err[512];
  qp_profile_options po = {.sample = true};
  assert_int_equal(qp_profile_new(&p, &po, err, sizeof err), QP_OK);
  qp_store *s;
  assert_int_equal(qp_store_open(&s, path, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  static const uint64_t a_dur[] = {1 * MS, 2 * MS, 4 * MS, 8 * MS};
  for (int m = 0; m < 30; m++)
    for (int i = 0; i < 10; i++)
      rec(p, &qa, m, i, a_dur[(m * 10 + i) % 4], NULL, "select * from a where id = 42");
  int nerr = 0;
  for (int m = 0; m < 30; m += 3)
    for (int i = 0; i < 5; i++, nerr++)
      rec(p, &qb, m, i, 20 * MS, nerr < 3 ? "40001" : nerr < 5 ? "23505" : NULL, NULL);
  for (int m = 10; m < 20; m++) {
    rec(p, &qc, m, 0, 100000, m == 10 ? "23505" : NULL, NULL);
    rec(p, &qc, m, 1, 300000, NULL, NULL);
  }
  rec(p, &qd, 5, 0, 50000, NULL, NULL);
  rec(p, &qe, 6, 0, 60000, NULL, NULL);
  rec(p, &qf, 7, 0, 70000, NULL, NULL);
  assert_int_equal(qp_profile_flush(p, s), QP_OK);
  /* a saved `qprof advise` run: an index for query A (fingerprint a1), a
   * finding that is not an index for B, and a statement it could not advise
   * on; markup in the texts must come out as text */
  static const char doc[] =
      "{\"qprof_advise\": 1, \"database\": \"host=db1 dbname=app password=***\", \"verify\": "
      "\"hypo\", \"suggestions\": [{\"statement\": \"CREATE INDEX CONCURRENTLY ON public.a "
      "(id)\", \"how\": \"hypopg\", \"reason\": \"Seq Scan on a keeps 1 of <b>9</b> rows\", "
      "\"saved_ms_per_day\": 1500, \"size_bytes\": 8192, \"write_warning\": null, "
      "\"profile_warning\": null, \"queries\": [{\"fingerprint\": \"00000000000000a1\", "
      "\"query\": \"select * from a where id = ?\", \"saved_ms_per_day\": 1500}]}], "
      "\"statements\": [{\"query\": \"select * from a where id = ?\", \"fingerprint\": "
      "\"00000000000000a1\", \"status\": \"advised\", \"findings\": []}, {\"query\": \"select "
      "b\", \"fingerprint\": \"00000000000000b2\", \"status\": \"advised\", \"findings\": "
      "[{\"rule\": \"misestimate\", \"message\": \"planned 1 row, got 500\", \"action\": "
      "\"ANALYZE public.b\"}]}, {\"query\": \"select <i>c</i>\", \"fingerprint\": null, "
      "\"status\": \"failed\", \"error\": \"42P01: relation c does not exist\"}]}";
  assert_int_equal(qp_store_save_advice(s, "host=db1 dbname=app password=***", T0 * NS, doc), QP_OK);
  qp_store_close(s);
  qp_profile_free(p);
}

static bool find_chromium(void) {
  const char *env = getenv("QP_CHROMIUM");
  if (env != NULL && env[0] != '\0') {
    snprintf(chromium, sizeof chromium, "%s", env);
    return access(chromium, X_OK) == 0;
  }
  static const char *const paths[] = {"/usr/bin/chromium", "/usr/bin/chromium-browser"};
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
    if (access(paths[i], X_OK) == 0) {
      snprintf(chromium, sizeof chromium, "%s", paths[i]);
      return true;
    }
  }
  return false;
}

static int setup(void **state) {
  (void)state;
  qprof = getenv("QPROF_BIN");
  if (qprof == NULL) return -1;
  snprintf(dir, sizeof dir, "%s", qpt_tempdir());
  char p[600];
  snprintf(p, sizeof p, "%s/browser.db", dir);
  build_store(p);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  qpt_system("rm -rf '%s'", dir);
  return 0;
}

static json_t *J(json_t *o, const char *path) {
  /* "a.b.c" */
  char buf[128];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *tok = strtok(buf, "."); tok != NULL && o != NULL; tok = strtok(NULL, "."))
    o = json_object_get(o, tok);
  if (o == NULL) fail_msg("no %s in the browser's answer", path);
  return o;
}

static long long I(json_t *o, const char *path) { return (long long)json_number_value(J(o, path)); }

static const char *S(json_t *o, const char *path) {
  json_t *v = J(o, path);
  if (!json_is_string(v)) fail_msg("%s is not a string", path);
  return json_string_value(v);
}

/* The text of cell `col` of row `row` of a table in the facts. */
static const char *cell(json_t *rows, size_t row, size_t col) {
  json_t *r = json_array_get(rows, row);
  if (r == NULL) fail_msg("no row %zu", row);
  json_t *c = json_array_get(r, col);
  if (!json_is_string(c)) fail_msg("no cell %zu of row %zu", col, row);
  return json_string_value(c);
}

static void strings_are(json_t *arr, const char *const *want, size_t n, const char *what) {
  if (json_array_size(arr) != n) fail_msg("%s: %zu labels, want %zu", what, json_array_size(arr), n);
  for (size_t i = 0; i < n; i++)
    if (strcmp(json_string_value(json_array_get(arr, i)), want[i]) != 0)
      fail_msg("%s label %zu is '%s', want '%s'", what, i, json_string_value(json_array_get(arr, i)),
               want[i]);
}

static void test_page_in_browser(void **state) {
  (void)state;
  char art[600], page[700], shot[700], cmd[4096];
  snprintf(art, sizeof art, "%s/test-artifacts", QP_TEST_BUILD_DIR);
  assert_int_equal(qpt_system("mkdir -p '%s'", art), 0);
  snprintf(page, sizeof page, "%s/report_browser.html", art);
  snprintf(shot, sizeof shot, "%s/report_browser.png", art);
  char *out, *err;
  snprintf(cmd, sizeof cmd, "'%s' report --store browser.db --format html --output '%s'", qprof, page);
  assert_int_equal(qpt_run_capture(dir, cmd, &out, &err), 0);
  assert_string_equal(out, "");
  free(out);
  free(err);
  /* the page holds a sample: owner only */
  struct stat st;
  assert_int_equal(stat(page, &st), 0);
  assert_int_equal(st.st_mode & 077, 0);

  /* the golden page: the same store gives the same bytes */
  char *html = qpt_read_file(page, NULL);
  assert_non_null(html);
  char golden[600];
  snprintf(golden, sizeof golden, "%s/report/report_browser.html", QP_TEST_DATA_DIR);
  if (getenv("QP_UPDATE_GOLDEN") != NULL) {
    FILE *g = fopen(golden, "wb");
    assert_non_null(g);
    fputs(html, g);
    fclose(g);
  }
  char *want = qpt_read_file(golden, NULL);
  if (want == NULL) fail_msg("missing golden file %s (run with QP_UPDATE_GOLDEN=1)", golden);
  if (strcmp(want, html) != 0)
    fail_msg("the page differs from %s (diff it with %s)", golden, page);
  free(want);
  free(html);

  snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/support/cdp_page.py' '%s' '%s' '%s'",
           QP_TEST_SOURCE_DIR, chromium, page, shot);
  int rc = qpt_run_capture(dir, cmd, &out, &err);
  if (rc != 0) fail_msg("cdp_page.py failed (%d): %s", rc, err);
  free(err);
  json_error_t jerr;
  json_t *root = json_loads(out, 0, &jerr);
  if (root == NULL) fail_msg("cdp_page.py printed no JSON (%s): %s", jerr.text, out);
  free(out);

  /* nothing but the page was requested; no console output, no exception */
  json_t *req = J(root, "requests");
  if (json_array_size(req) != 1 || strcmp(json_string_value(json_array_get(req, 0)), S(root, "url")) != 0)
    fail_msg("the page made requests: %s", json_dumps(req, 0));
  if (json_array_size(J(root, "console")) != 0)
    fail_msg("console: %s", json_dumps(J(root, "console"), 0));
  assert_int_equal(I(root, "facts.external"), 0);
  json_t *scripts = J(root, "facts.scripts");
  assert_int_equal(json_array_size(scripts), 1);
  assert_true(json_is_null(json_object_get(json_array_get(scripts, 0), "src")));

  /* the header's totals */
  assert_string_equal(S(root, "facts.totals"), "6 queries, 373 calls, 2.13s total, 6 errors");
  assert_string_equal(S(root, "facts.title"), "qprof report: browser.db");

  /* Charts: 30 one-minute slots. Calls and time: A 30 bars, B 10, C 10,
   * F 1, E 1, and D as the others 1 = 53. p95: the same 52 of the top five
   * and all queries in each of the 30 minutes = 82. */
  static const char *const xt[] = {"10:00", "10:05", "10:10", "10:15", "10:20", "10:25", "10:30"};
  static const struct {
    const char *name, *ytitle;
    long long points, series;
  } charts[] = {{"calls", "calls per minute", 53, 6},
                {"time", "time per minute", 53, 6},
                {"p95", "p95 (log scale)", 82, 6}};
  for (size_t i = 0; i < 3; i++) {
    char k[64];
    json_t *c = J(J(root, "facts.charts"), charts[i].name);
    snprintf(k, sizeof k, "chart %s", charts[i].name);
    if (I(c, "points") != charts[i].points)
      fail_msg("%s: %lld points, want %lld", k, I(c, "points"), charts[i].points);
    assert_int_equal(I(c, "declared"), charts[i].points);
    assert_int_equal(I(c, "slots"), 30);
    assert_int_equal(I(c, "step"), 60);
    assert_int_equal(I(c, "series"), charts[i].series);
    assert_true(json_is_true(J(c, "visible")));
    strings_are(J(c, "xticks"), xt, 7, k);
    const char *titles[] = {charts[i].ytitle, "time (UTC)"};
    strings_are(J(c, "titles"), titles, 2, k);
  }
  /* calls per minute peak at 17 (A 10 + B 5 + C 2): the axis goes to 20 */
  static const char *const yt[] = {"0", "5", "10", "15", "20"};
  strings_are(J(root, "facts.charts.calls.yticks"), yt, 5, "calls y");
  /* p95 from E's 60 us to B's 20 ms: the decades 10us .. 100ms */
  static const char *const pt[] = {"10us", "100us", "1ms", "10ms", "100ms"};
  strings_are(J(root, "facts.charts.p95.yticks"), pt, 5, "p95 y");

  /* one histogram per query: bins of the store, adding up to the calls */
  json_t *h = J(root, "facts.hists");
  assert_int_equal(json_array_size(h), 6);
  static const long long bins[] = {4, 1, 2, 1, 1, 1}, counts[] = {300, 50, 20, 1, 1, 1};
  for (size_t i = 0; i < 6; i++) {
    json_t *x = json_array_get(h, i);
    char id[16];
    snprintf(id, sizeof id, "hist-%zu", i + 1);
    assert_string_equal(S(x, "id"), id);
    if (I(x, "bins") != bins[i]) fail_msg("%s: %lld bins, want %lld", id, I(x, "bins"), bins[i]);
    assert_int_equal(I(x, "count"), counts[i]);
    assert_int_equal(I(x, "declared"), counts[i]);
    const char *titles[] = {"calls", "latency (log scale)"};
    strings_are(J(x, "titles"), titles, 2, id);
  }
  /* A's bins from the one holding 1 ms (its lower edge just under 1 ms) to 8 ms */
  static const char *const ht[] = {"100us", "1ms", "10ms"};
  strings_are(J(json_array_get(h, 0), "xticks"), ht, 3, "hist-1 x");

  /* the table of all queries: rank, query, calls, errors, ..., total */
  json_t *q = J(root, "facts.queries");
  assert_int_equal(json_array_size(q), 6);
  assert_string_equal(cell(q, 0, 2), "300");
  assert_string_equal(cell(q, 0, 5), "1.12s"); /* 75 x 15 ms */
  assert_string_equal(cell(q, 1, 2), "50");
  assert_non_null(strstr(cell(q, 1, 3), "23505:2,40001:3"));
  assert_string_equal(cell(q, 1, 5), "1.00s");
  assert_non_null(strstr(cell(q, 2, 1), "insert into c values (?)"));
  assert_non_null(strstr(cell(q, 2, 1), "other"));
  assert_string_equal(cell(q, 5, 2), "1");
  /* errors by code: 3 each, so by code; 23505 from two queries, most from #2 */
  json_t *e = J(root, "facts.errors");
  assert_int_equal(json_array_size(e), 2);
  assert_string_equal(cell(e, 0, 0), "23505");
  assert_string_equal(cell(e, 0, 1), "3");
  assert_string_equal(cell(e, 0, 2), "50.0%");
  assert_string_equal(cell(e, 0, 3), "2");
  assert_int_equal(strncmp(cell(e, 0, 4), "#2 (2) update b", 15), 0);
  assert_string_equal(cell(e, 1, 0), "40001");
  /* per database */
  json_t *g = J(root, "facts.groups");
  assert_int_equal(json_array_size(g), 2);
  assert_string_equal(cell(g, 0, 0), "app");
  assert_string_equal(cell(g, 0, 2), "5");
  assert_string_equal(cell(g, 0, 3), "353");
  assert_string_equal(cell(g, 1, 0), "other");
  assert_string_equal(cell(g, 1, 3), "20");
  assert_string_equal(cell(g, 1, 5), "4.00ms");
  /* top lists: five, errors only for the two queries that had some */
  json_t *t = J(root, "facts.tops");
  assert_int_equal(json_array_size(t), 5);
  assert_string_equal(S(json_array_get(t, 4), "id"), "top-errors");
  assert_int_equal(I(json_array_get(t, 4), "rows"), 2);
  assert_int_equal(I(json_array_get(t, 0), "rows"), 6);
  /* the legend: five queries, the others, all queries */
  assert_int_equal(json_array_size(J(root, "facts.legend")), 7);
  /* the sample of A, and only that one */
  json_t *smp = J(root, "facts.samples");
  assert_int_equal(json_array_size(smp), 1);
  assert_string_equal(json_string_value(json_array_get(smp, 0)), "select * from a where id = 42");

  /* the script sorts: calls descending, then ascending */
  assert_string_equal(S(root, "sort.desc"), "300");
  assert_string_equal(S(root, "sort.asc"), "1");
  assert_string_equal(S(root, "sort.aria"), "ascending");
  /* dark mode and print */
  assert_string_equal(S(root, "light.bg"), "rgb(255, 255, 255)");
  assert_string_equal(S(root, "dark.bg"), "rgb(21, 21, 21)");
  assert_string_equal(S(root, "print.bg"), "rgb(255, 255, 255)");
  assert_string_equal(S(root, "print.nav"), "none");
  assert_string_equal(S(root, "light.nav"), "block");
  /* the screenshot is a PNG of some size */
  assert_true(I(root, "screenshot_bytes") > 10000);
  /* the saved advice: one index, its reason as text, the query it helps
   * linked to details on the page, which name the index */
  bool to_advice = false;
  for (size_t i = 0; i < json_array_size(J(root, "facts.nav")); i++)
    to_advice = to_advice || strcmp(json_string_value(json_array_get(J(root, "facts.nav"), i)),
                                    "#advice") == 0;
  assert_true(to_advice);
  json_t *adv = J(root, "facts.advice");
  assert_int_equal(json_array_size(adv), 1);
  json_t *ix = json_array_get(adv, 0);
  assert_int_equal(json_array_size(ix), 1);
  assert_non_null(strstr(cell(ix, 0, 0), "CREATE INDEX CONCURRENTLY ON public.a (id)"));
  assert_non_null(strstr(cell(ix, 0, 0), "keeps 1 of <b>9</b> rows"));
  assert_string_equal(cell(ix, 0, 1), "hypopg");
  assert_string_equal(cell(ix, 0, 2), "1.50s/day");
  assert_string_equal(cell(ix, 0, 3), "8 kB");
  json_t *links = J(root, "facts.advice_links");
  assert_true(json_array_size(links) >= 2);
  for (size_t i = 0; i < json_array_size(links); i++)
    assert_true(json_is_true(json_object_get(json_array_get(links, i), "target")));
  json_t *qa_ = J(root, "facts.query_advice");
  assert_true(json_array_size(qa_) >= 1);
  assert_non_null(strstr(json_string_value(json_array_get(qa_, 0)), "public.a (id)"));
  json_t *fd = J(root, "facts.findings");
  assert_int_equal(json_array_size(fd), 2);
  assert_non_null(strstr(json_string_value(json_array_get(fd, 0)),
                         "misestimate planned 1 row, got 500 ANALYZE public.b"));
  assert_non_null(strstr(json_string_value(json_array_get(fd, 1)),
                         "select <i>c</i>: not advised on: 42P01"));
  assert_non_null(strstr(S(root, "facts.advice_from"), "password=***"));

  size_t len;
  char *png = qpt_read_file(shot, &len);
  assert_non_null(png);
  assert_int_equal(memcmp(png, "\x89PNG", 4), 0);
  free(png);
  json_decref(root);
  printf("page: %s\nscreenshot: %s\n", page, shot);
}


/* ---- who ran it: the page of a report --by host,application with a filter ---- */

static const char *const phosts[] = {"web-1", "web-2", "db-backup"};
static const char *const papps[] = {"api", "cron"};
static const char *const pusers[] = {"alice", "bob"};

/* calls of (host, application, user); each call of host h takes (h + 1) ms */
static int pcalls(int h, int a, int u) { return 4 + 3 * h + 2 * a + u; }

static void build_dims_store(const char *path) {
  qp_profile *p;
  char err[512];
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  qp_store *s;
  assert_int_equal(qp_store_open(&s, path, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  for (int h = 0; h < 3; h++)
    for (int a = 0; a < 2; a++)
      for (int u = 0; u < 2; u++)
        for (int i = 0; i < pcalls(h, a, u); i++) {
          qp_query_event ev = {0};
          ev.size = sizeof ev;
          ev.backend = QP_BACKEND_POSTGRES;
          ev.database = "app";
          ev.user = pusers[u];
          ev.application = papps[a];
          ev.host = phosts[h];
          const fq *q = i % 2 ? &qa : &qb;
          ev.normalized = q->text;
          ev.normalized_len = strlen(q->text);
          ev.fingerprint = q->fp;
          ev.duration_ns = (uint64_t)(h + 1) * MS;
          ev.rows = 1;
          ev.end_wall_ns = (T0 + i * 60 + 1) * NS;
          assert_int_equal(qp_profile_record(p, &ev), QP_OK);
        }
  assert_int_equal(qp_profile_flush(p, s), QP_OK);
  qp_store_close(s);
  qp_profile_free(p);
}

static json_t *load_page(const char *args, const char *name) {
  char art[600], page[700], shot[700], cmd[4096];
  snprintf(art, sizeof art, "%s/test-artifacts", QP_TEST_BUILD_DIR);
  assert_int_equal(qpt_system("mkdir -p '%s'", art), 0);
  snprintf(page, sizeof page, "%s/%s.html", art, name);
  snprintf(shot, sizeof shot, "%s/%s.png", art, name);
  char *out, *err;
  snprintf(cmd, sizeof cmd, "'%s' report --store dims.db --format html %s --output '%s'", qprof, args,
           page);
  assert_int_equal(qpt_run_capture(dir, cmd, &out, &err), 0);
  free(out);
  free(err);
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/support/cdp_page.py' '%s' '%s' '%s'",
           QP_TEST_SOURCE_DIR, chromium, page, shot);
  int rc = qpt_run_capture(dir, cmd, &out, &err);
  if (rc != 0) fail_msg("cdp_page.py failed (%d): %s", rc, err);
  free(err);
  json_error_t jerr;
  json_t *root = json_loads(out, 0, &jerr);
  if (root == NULL) fail_msg("cdp_page.py printed no JSON (%s): %s", jerr.text, out);
  free(out);
  if (json_array_size(J(root, "console")) != 0)
    fail_msg("console: %s", json_dumps(J(root, "console"), 0));
  return root;
}

static void test_page_by_dimensions(void **state) {
  (void)state;
  char path[600];
  snprintf(path, sizeof path, "%s/dims.db", dir);
  build_dims_store(path);
  /* every user but bob's... : /^a/ keeps alice only */
  json_t *root = load_page("--by host,application --user '/^a/'", "report_dims");
  assert_string_equal(S(root, "facts.rows_by"), "per query and application, host");
  assert_string_equal(S(root, "facts.filters"), "user=/^a/");
  /* no database breakdown (merged), one per dimension of the key */
  assert_true(json_is_null(J(root, "facts.groups")));
  json_t *gh = J(root, "facts.groups_host"), *ga = J(root, "facts.groups_application");
  assert_true(json_is_null(J(root, "facts.groups_user")));
  assert_int_equal(json_array_size(gh), 3);
  assert_int_equal(json_array_size(ga), 2);
  /* per host: alice's calls of both applications; total = calls x (h + 1) ms;
   * ranked by total time */
  long long sum = 0;
  for (size_t i = 0; i < 3; i++) {
    const char *host = cell(gh, i, 0);
    int h = strcmp(host, "web-1") == 0 ? 0 : strcmp(host, "web-2") == 0 ? 1 : 2;
    long long calls = pcalls(h, 0, 0) + pcalls(h, 1, 0);
    char want[32];
    snprintf(want, sizeof want, "%lld", calls);
    assert_string_equal(cell(gh, i, 1), "postgres");
    assert_string_equal(cell(gh, i, 2), "2"); /* two queries */
    assert_string_equal(cell(gh, i, 3), want);
    snprintf(want, sizeof want, "%.2fms", (double)(h + 1));
    assert_string_equal(cell(gh, i, 7), want); /* mean */
    sum += calls;
  }
  assert_string_equal(cell(gh, 0, 0), "db-backup");
  assert_string_equal(cell(gh, 2, 0), "web-1");
  /* per application over the three hosts */
  for (size_t i = 0; i < 2; i++) {
    int a = strcmp(cell(ga, i, 0), "api") == 0 ? 0 : 1;
    long long calls = 0;
    for (int h = 0; h < 3; h++) calls += pcalls(h, a, 0);
    char want[32];
    snprintf(want, sizeof want, "%lld", calls);
    assert_string_equal(cell(ga, i, 3), want);
  }
  /* the header's total is the sum of the hosts' */
  char want[96];
  snprintf(want, sizeof want, "12 queries, %lld calls,", sum);
  if (strncmp(S(root, "facts.totals"), want, strlen(want)) != 0)
    fail_msg("totals '%s', want '%s...'", S(root, "facts.totals"), want);
  /* 2 queries x 3 hosts x 2 applications rows, each naming its host and application */
  json_t *q = J(root, "facts.queries");
  assert_int_equal(json_array_size(q), 12);
  assert_non_null(strstr(cell(q, 0, 1), "host db-backup"));
  assert_non_null(strstr(cell(q, 0, 1), "application "));
  json_t *nav = J(root, "facts.nav");
  bool by_host = false;
  for (size_t i = 0; i < json_array_size(nav); i++)
    by_host = by_host || strcmp(json_string_value(json_array_get(nav, i)), "#by-host") == 0;
  assert_true(by_host);
  json_decref(root);

  /* a filter that matches nothing: a page that says so */
  char cmd[1024], *out;
  snprintf(cmd, sizeof cmd, "'%s' report --store dims.db --format html --host nosuch", qprof);
  assert_int_equal(qpt_run_capture(dir, cmd, &out, NULL), 0);
  assert_non_null(strstr(out, "No queries match the filters (2 queries in the window)."));
  free(out);
}

int main(void) {
  if (!find_chromium()) {
    printf("SKIPPED: test_report_html needs Chromium (/usr/bin/chromium or $QP_CHROMIUM); "
           "tools/deps.sh installs Debian's chromium\n");
    return 77;
  }
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_page_in_browser),
                                     cmocka_unit_test(test_page_by_dimensions)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
