/* `qprof report` end to end: a store recorded through the library with fixed
 * times and durations, the CLI's text (NO_COLOR, fixed COLUMNS), JSON and
 * CSV compared with golden files in tests/data/report/, the JSON checked
 * against the documented fields, filters, windows and exit codes.
 *
 * QP_UPDATE_GOLDEN=1 rewrites the golden files from the current output. */
#include "testutil.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[512];
static const char *qprof;

typedef struct fixture_q {
  uint64_t fp;
  qp_backend backend;
  const char *db;
  const char *text;
  int calls;
  uint64_t dmin, dspan; /* durations dmin + (i * 7919 % calls) * dspan / calls */
  int err_every;
  const char *err;
} fixture_q;

/* 2026-11-20T10:00:00Z */
#define T0 1795168800LL

static const fixture_q fx[] = {
    {0x1111111111111111ull, QP_BACKEND_POSTGRES, "app", "select * from users where id = ?", 1000,
     100000, 1900000, 0, NULL},
    {0x2222222222222222ull, QP_BACKEND_POSTGRES, "app",
     "update accounts set balance = balance + ? where id = ?", 200, 5000000, 45000000, 50, "40001"},
    {0x3333333333333333ull, QP_BACKEND_SQLITE, "/var/lib/app/events.db",
     "insert into events (kind, payload) values (?, ?)", 5000, 20000, 60000, 2500, "SQLITE_BUSY"},
    {0x4444444444444444ull, QP_BACKEND_POSTGRES, "app", "commit", 1200, 300000, 700000, 0, NULL},
    {0x5555555555555555ull, QP_BACKEND_POSTGRES, "reports",
     "select \"weird, name\", count(*) from orders o join customers c on c.id = o.customer_id "
     "where o.created_at >= ? and o.created_at < ? and c.region in (?) group by \"weird, name\" "
     "order by count(*) desc limit ?",
     12, 900000000, 2100000000, 0, NULL},
};

static void build_store(const char *path, double slow_b, bool drop_d, bool add_f, int64_t shift_s) {
  qp_profile *p;
  char err[512];
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  qp_store *s;
  assert_int_equal(qp_store_open(&s, path, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  for (size_t k = 0; k < sizeof fx / sizeof fx[0]; k++) {
    const fixture_q *q = &fx[k];
    if (drop_d && k == 3) continue;
    for (int i = 0; i < q->calls; i++) {
      qp_query_event ev = {0};
      ev.backend = q->backend;
      ev.database = q->db;
      ev.normalized = q->text;
      ev.normalized_len = strlen(q->text);
      ev.fingerprint = q->fp;
      ev.duration_ns = q->dmin + (uint64_t)((uint64_t)i * 7919 % (uint64_t)q->calls) * q->dspan /
                                     (uint64_t)q->calls;
      if (k == 1) ev.duration_ns = (uint64_t)((double)ev.duration_ns * slow_b);
      ev.rows = k == 3 ? -1 : (int64_t)(i % 3);
      ev.error = q->err_every && i % q->err_every == 0 ? q->err : NULL;
      /* spread over two hours */
      ev.end_wall_ns = (T0 + shift_s + (int64_t)i * 7200 / q->calls) * 1000000000LL + 250000000;
      assert_int_equal(qp_profile_record(p, &ev), QP_OK);
    }
  }
  if (add_f) {
    for (int i = 0; i < 50; i++) {
      qp_query_event ev = {0};
      ev.backend = QP_BACKEND_POSTGRES;
      ev.database = "app";
      ev.normalized = "select * from audit_log where user_id = ?";
      ev.normalized_len = strlen(ev.normalized);
      ev.fingerprint = 0x6666666666666666ull;
      ev.duration_ns = 3000000 + (uint64_t)i * 1000;
      ev.rows = 10;
      ev.end_wall_ns = (T0 + shift_s + i * 60) * 1000000000LL;
      assert_int_equal(qp_profile_record(p, &ev), QP_OK);
    }
  }
  assert_int_equal(qp_profile_flush(p, s), QP_OK);
  qp_store_close(s);
  qp_profile_free(p);
}

/* Runs `qprof ARGS` in dir with env; captures stdout and stderr. */
static int run(const char *env, const char *args, char **out, char **errout) {
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "env -u QPROF_STORE %s '%s' %s", env ? env : "", qprof, args);
  return qpt_run_capture(dir, cmd, out, errout);
}

static void golden(const char *name, const char *got) {
  char p[600];
  snprintf(p, sizeof p, "%s/report/%s", QP_TEST_DATA_DIR, name);
  if (getenv("QP_UPDATE_GOLDEN") != NULL) {
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fputs(got, f);
    fclose(f);
  }
  size_t len;
  char *want = qpt_read_file(p, &len);
  if (want == NULL) fail_msg("missing golden file %s (run with QP_UPDATE_GOLDEN=1)", p);
  if (strcmp(want, got) != 0) {
    fprintf(stderr, "--- golden %s\n%s\n--- got\n%s\n", p, want, got);
    fail_msg("output differs from %s", p);
  }
  free(want);
}

static int setup(void **state) {
  (void)state;
  qprof = getenv("QPROF_BIN");
  if (qprof == NULL) return -1;
  snprintf(dir, sizeof dir, "%s", qpt_tempdir());
  char p[600];
  snprintf(p, sizeof p, "%s/golden.db", dir);
  build_store(p, 1.0, false, false, 0);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  qpt_system("rm -rf '%s'", dir);
  return 0;
}

static void test_text_golden(void **state) {
  (void)state;
  char *out, *err;
  assert_int_equal(run("NO_COLOR=1 COLUMNS=100", "report --store golden.db", &out, &err), 0);
  golden("report.txt", out);
  assert_null(strstr(out, "\033["));
  free(out);
  free(err);
  assert_int_equal(run("NO_COLOR=1 COLUMNS=72", "report --store golden.db --sort calls --limit 3",
                       &out, NULL),
                   0);
  golden("report_narrow.txt", out);
  free(out);
  assert_int_equal(run("NO_COLOR=1 COLUMNS=72", "report --store golden.db --wide --sort p99", &out,
                       NULL),
                   0);
  golden("report_wide.txt", out);
  /* the long query is there in full */
  assert_non_null(strstr(out, "order by count(*) desc limit ?"));
  free(out);
  /* QPROF_STORE is used when --store is not given */
  assert_int_equal(run("NO_COLOR=1 COLUMNS=100 QPROF_STORE=golden.db", "report", &out, NULL), 0);
  golden("report.txt", out);
  free(out);
}

static void test_json_golden_and_schema(void **state) {
  (void)state;
  char *out;
  assert_int_equal(run(NULL, "report --store golden.db --format json", &out, NULL), 0);
  golden("report.json", out);
  json_error_t jerr;
  json_t *root = json_loads(out, 0, &jerr);
  if (root == NULL) fail_msg("invalid JSON: %s at line %d", jerr.text, jerr.line);
  assert_true(json_is_object(root));
  assert_int_equal(json_integer_value(json_object_get(root, "qprof_report")), 1);
  assert_true(json_is_object(json_object_get(root, "totals")));
  json_t *qs = json_object_get(root, "queries");
  assert_true(json_is_array(qs));
  assert_int_equal(json_array_size(qs), 5);
  /* Every documented field with its type. */
  static const struct {
    const char *name;
    int type; /* 0 string, 1 integer, 2 number, 3 object, 4 string-or-null */
  } fields[] = {{"fingerprint", 0}, {"query", 0},      {"backend", 0},       {"database", 0},
                {"calls", 1},       {"errors", 1},     {"errors_by_code", 3}, {"rows", 1},
                {"total_ms", 2},    {"share", 2},      {"mean_ms", 2},        {"min_ms", 2},
                {"max_ms", 2},      {"stddev_ms", 2},  {"p50_ms", 2},         {"p90_ms", 2},
                {"p95_ms", 2},      {"p99_ms", 2},     {"p999_ms", 2},        {"first_seen", 0},
                {"last_seen", 0},   {"sample", 4},     {"total_ns", 1},       {"min_ns", 1},
                {"max_ns", 1},      {"cache_hits", 1}, {"cache_hit_rate", 2}, {"cache_hit_ms", 2},
                {"cache_saved_ms", 2}};
  regex_t iso;
  assert_int_equal(
      regcomp(&iso, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$", REG_EXTENDED),
      0);
  double share = 0;
  uint64_t calls = 0;
  size_t i;
  json_t *q;
  json_array_foreach(qs, i, q) {
    assert_int_equal(json_object_size(q), sizeof fields / sizeof fields[0]);
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
      json_t *v = json_object_get(q, fields[f].name);
      if (v == NULL) fail_msg("entry %zu lacks %s", i, fields[f].name);
      switch (fields[f].type) {
      case 0: assert_true(json_is_string(v)); break;
      case 1: assert_true(json_is_integer(v)); break;
      case 2: assert_true(json_is_number(v)); break;
      case 3: assert_true(json_is_object(v)); break;
      case 4: assert_true(json_is_string(v) || json_is_null(v)); break;
      }
    }
    assert_int_equal(strlen(json_string_value(json_object_get(q, "fingerprint"))), 16);
    assert_int_equal(regexec(&iso, json_string_value(json_object_get(q, "first_seen")), 0, NULL, 0), 0);
    assert_int_equal(regexec(&iso, json_string_value(json_object_get(q, "last_seen")), 0, NULL, 0), 0);
    double p50 = json_number_value(json_object_get(q, "p50_ms"));
    double p95 = json_number_value(json_object_get(q, "p95_ms"));
    double p99 = json_number_value(json_object_get(q, "p99_ms"));
    double mn = json_number_value(json_object_get(q, "min_ms"));
    double mx = json_number_value(json_object_get(q, "max_ms"));
    assert_true(mn <= p50 && p50 <= p95 && p95 <= p99 && p99 <= mx);
    share += json_number_value(json_object_get(q, "share"));
    calls += (uint64_t)json_integer_value(json_object_get(q, "calls"));
    /* errors_by_code adds up to errors */
    json_int_t sum = 0;
    const char *code;
    json_t *cnt;
    json_object_foreach(json_object_get(q, "errors_by_code"), code, cnt) sum += json_integer_value(cnt);
    assert_int_equal(sum, json_integer_value(json_object_get(q, "errors")));
  }
  regfree(&iso);
  assert_true(share > 0.9999 && share < 1.0001);
  assert_int_equal(calls, 1000 + 200 + 5000 + 1200 + 12);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(root, "totals"), "calls")), calls);
  /* the golden store was written by the pool: nothing dropped, said as 0 */
  json_t *dropped = json_object_get(json_object_get(root, "totals"), "dropped");
  assert_true(json_is_integer(dropped));
  assert_int_equal(json_integer_value(dropped), 0);
  /* Sorted by total time: the 12 slow reports first. */
  assert_string_equal(json_string_value(json_object_get(json_array_get(qs, 0), "fingerprint")),
                      "5555555555555555");
  /* update: 4 of 200 failed with 40001 */
  json_t *upd = NULL;
  json_array_foreach(qs, i, q) if (strcmp(json_string_value(json_object_get(q, "fingerprint")),
                                          "2222222222222222") == 0) upd = q;
  assert_non_null(upd);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(upd, "errors_by_code"), "40001")), 4);
  json_decref(root);
  free(out);
}

static void test_csv_golden(void **state) {
  (void)state;
  char *out;
  assert_int_equal(run(NULL, "report --store golden.db --format csv --sort mean", &out, NULL), 0);
  golden("report.csv", out);
  /* RFC 4180: CRLF line ends, quoted field with doubled quotes */
  assert_non_null(strstr(out, "\r\n"));
  assert_non_null(strstr(out, "\"select \"\"weird, name\"\""));
  const char *header = "fingerprint,query,backend,database,calls,errors,errors_by_code,rows,"
                       "total_ms,share,mean_ms,min_ms,max_ms,stddev_ms,p50_ms,p90_ms,"
                       "p95_ms,p99_ms,p999_ms,first_seen,last_seen,sample,total_ns,min_ns,"
                       "max_ns,dropped,cache_hits,cache_hit_rate,cache_hit_ms,cache_saved_ms\r\n";
  assert_int_equal(strncmp(out, header, strlen(header)), 0);
  free(out);
  /* Python's csv module reads it back: 6 rows of 30 fields. */
  char args[1024];
  snprintf(args, sizeof args,
           "report --store golden.db --format csv | /usr/bin/python3 -c 'import csv,sys; "
           "r=list(csv.reader(sys.stdin)); assert len(r)==6, len(r); "
           "assert all(len(x)==30 for x in r); print(\"ok\")'");
  assert_int_equal(run(NULL, args, &out, NULL), 0);
  assert_string_equal(out, "ok\n");
  free(out);
}

/* Python's html.parser walks the page: every element closed in order, the
 * table of all queries has `rows` body rows, and nothing is loaded from
 * anywhere (no src, no link, no url(), no @import, no http(s) address). */
static void html_check(const char *store_args, int rows) {
  char args[4096];
  snprintf(args, sizeof args,
           "report %s --format html | /usr/bin/python3 -c '\n"
           "import sys, re, html.parser\n"
           "VOID = {\"meta\", \"br\"}\n"
           "class P(html.parser.HTMLParser):\n"
           "    def __init__(s):\n"
           "        super().__init__(); s.stack = []; s.rows = 0; s.body = False; s.table = None\n"
           "    def handle_starttag(s, t, a):\n"
           "        d = dict(a)\n"
           "        assert \"src\" not in d and t not in (\"link\", \"iframe\", \"object\", \"embed\", \"img\"), (t, a)\n"
           "        assert not (d.get(\"href\") or \"#\").lstrip().lower().startswith((\"http\", \"//\", \"javascript\")), a\n"
           "        if t == \"table\": s.table = d.get(\"id\")\n"
           "        if t == \"tbody\": s.body = True\n"
           "        if t == \"tr\" and s.body and s.table == \"query-table\": s.rows += 1\n"
           "        if t not in VOID: s.stack.append(t)\n"
           "    def handle_endtag(s, t):\n"
           "        assert s.stack and s.stack[-1] == t, (t, s.stack)\n"
           "        s.stack.pop()\n"
           "        if t == \"tbody\": s.body = False\n"
           "text = sys.stdin.read()\n"
           "for bad in (\"url(\", \"@import\", \"http:\", \"https:\"):\n"
           "    assert bad not in text.lower(), bad\n"
           "p = P(); p.feed(text); p.close()\n"
           "assert p.stack == [], p.stack\n"
           "print(p.rows)'",
           store_args);
  char *out;
  assert_int_equal(run(NULL, args, &out, NULL), 0);
  char want[16];
  snprintf(want, sizeof want, "%d\n", rows);
  assert_string_equal(out, want);
  free(out);
}

/* The one script of the page is inline; no element loads one. */
static void no_external_script(const char *page) {
  const char *p = page;
  int scripts = 0;
  while ((p = strstr(p, "<script")) != NULL) {
    assert_int_equal(strncmp(p, "<script>", 8), 0);
    scripts++;
    p += 7;
  }
  assert_true(scripts <= 1);
}

static void test_html_golden(void **state) {
  (void)state;
  char *out;
  assert_int_equal(run(NULL, "report --store golden.db --format html", &out, NULL), 0);
  golden("report.html", out);
  assert_int_equal(strncmp(out, "<!DOCTYPE html>\n", 16), 0);
  /* the quoted identifier is escaped, not markup */
  assert_non_null(strstr(out, "select &quot;weird, name&quot;, count(*)"));
  no_external_script(out);
  /* the parts of the page: charts, a histogram per query, the lists */
  static const char *const parts[] = {
      "<svg class=\"chart stacked\" id=\"chart-calls\"", "<svg class=\"chart stacked\" id=\"chart-time\"",
      "<svg class=\"chart lines\" id=\"chart-p95\"",     "<svg class=\"hist\" id=\"hist-5\"",
      "<table class=\"top\" id=\"top-p99\">",              "<table class=\"sortable\" id=\"error-codes\">",
      "<table class=\"sortable\" id=\"group-database\">",  "@media print",
      "prefers-color-scheme:dark"};
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
    if (strstr(out, parts[i]) == NULL) fail_msg("the page lacks %s", parts[i]);
  free(out);
  html_check("--store golden.db", 5);
  html_check("--store golden.db --limit 2", 2);
}

/* A store's text is data: a quoted identifier or a database name that
 * looks like markup comes out as text. */
static void test_html_escapes_store_text(void **state) {
  (void)state;
  char p[600], err[512];
  snprintf(p, sizeof p, "%s/hostile.db", dir);
  qp_profile *prof;
  assert_int_equal(qp_profile_new(&prof, NULL, err, sizeof err), QP_OK);
  qp_store *s;
  assert_int_equal(qp_store_open(&s, p, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  const char *text = "select \"</code><script>alert('x')</script>\" from t where a = ?";
  qp_query_event ev = {0};
  ev.backend = QP_BACKEND_POSTGRES;
  ev.database = "db&<b>";
  ev.normalized = text;
  ev.normalized_len = strlen(text);
  ev.fingerprint = 0x77;
  ev.duration_ns = 1000;
  ev.error = "<err>";
  ev.end_wall_ns = T0 * 1000000000LL;
  assert_int_equal(qp_profile_record(prof, &ev), QP_OK);
  assert_int_equal(qp_profile_flush(prof, s), QP_OK);
  qp_store_close(s);
  qp_profile_free(prof);
  char *out;
  assert_int_equal(run(NULL, "report --store hostile.db --format html", &out, NULL), 0);
  no_external_script(out);
  assert_null(strstr(out, "<script>alert"));
  assert_null(strstr(out, "<b>"));
  assert_null(strstr(out, "<err>"));
  assert_non_null(strstr(out, "&lt;/code&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
  assert_non_null(strstr(out, "db&amp;&lt;b&gt;"));
  assert_non_null(strstr(out, "_err_:1")); /* codes are cleaned when recorded */
  free(out);
  html_check("--store hostile.db", 1);
}

static void test_filters_and_windows(void **state) {
  (void)state;
  char *out, *err;
  /* --match / --exclude / --min-calls */
  assert_int_equal(run(NULL, "report --store golden.db --format json --match '^select' --exclude users",
                       &out, NULL),
                   0);
  json_t *root = json_loads(out, 0, NULL);
  assert_non_null(root);
  json_t *qs = json_object_get(root, "queries");
  assert_int_equal(json_array_size(qs), 1);
  assert_string_equal(json_string_value(json_object_get(json_array_get(qs, 0), "fingerprint")),
                      "5555555555555555");
  json_decref(root);
  free(out);
  assert_int_equal(run(NULL, "report --store golden.db --format json --min-calls 1000", &out, NULL), 0);
  root = json_loads(out, 0, NULL);
  assert_int_equal(json_array_size(json_object_get(root, "queries")), 3);
  json_decref(root);
  free(out);
  /* First hour only: half the calls of each query (events spread over two hours). */
  assert_int_equal(run(NULL,
                       "report --store golden.db --format json --since 2026-11-20T10:00Z "
                       "--until 2026-11-20T11:00Z",
                       &out, NULL),
                   0);
  root = json_loads(out, 0, NULL);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(root, "totals"), "calls")),
                   (1000 + 200 + 5000 + 1200 + 12) / 2);
  json_decref(root);
  free(out);
  /* A window with nothing in it: says so, exit 0. */
  assert_int_equal(run(NULL, "report --store golden.db --since 2030-01-01", &out, NULL), 0);
  assert_non_null(strstr(out, "No queries recorded"));
  free(out);
  /* A filter that matches nothing: says so, exit 0. */
  assert_int_equal(run(NULL, "report --store golden.db --match nothing_like_this", &out, NULL), 0);
  assert_non_null(strstr(out, "No queries match"));
  free(out);
  /* A bad pattern: exit 2 naming it and the offset. */
  assert_int_equal(run(NULL, "report --store golden.db --match 'a(b'", NULL, &err), 2);
  assert_non_null(strstr(err, "a(b"));
  assert_non_null(strstr(err, "offset 3"));
  free(err);
  assert_int_equal(run(NULL, "report --store golden.db --exclude '['", NULL, NULL), 2);
}

static void test_exit_codes(void **state) {
  (void)state;
  char *out, *err;
  /* missing store: 1, naming it */
  assert_int_equal(run(NULL, "report --store nosuch.db", NULL, &err), 1);
  assert_non_null(strstr(err, "nosuch.db"));
  free(err);
  /* not a store: 1, naming it, untouched */
  assert_int_equal(qpt_system("cd '%s' && echo 'just text' > notes.txt && cp notes.txt notes.bak", dir), 0);
  assert_int_equal(run(NULL, "report --store notes.txt", NULL, &err), 1);
  assert_non_null(strstr(err, "notes.txt"));
  assert_non_null(strstr(err, "not a qprof store"));
  free(err);
  assert_int_equal(qpt_system("cd '%s' && cmp -s notes.txt notes.bak", dir), 0);
  /* empty store: 0, says so */
  char p[600];
  snprintf(p, sizeof p, "%s/empty.db", dir);
  qp_store *s;
  assert_int_equal(qp_store_open(&s, p, QP_STORE_WRITE, NULL, NULL, 0), QP_OK);
  qp_store_close(s);
  assert_int_equal(run(NULL, "report --store empty.db", &out, NULL), 0);
  assert_non_null(strstr(out, "No queries recorded in empty.db"));
  free(out);
  assert_int_equal(run(NULL, "report --store empty.db --format json", &out, NULL), 0);
  json_t *root = json_loads(out, 0, NULL);
  assert_non_null(root);
  assert_int_equal(json_array_size(json_object_get(root, "queries")), 0);
  json_decref(root);
  free(out);
  /* bad options: 2 */
  assert_int_equal(run(NULL, "report --store golden.db --bogus", NULL, NULL), 2);
  assert_int_equal(run(NULL, "report --store golden.db --sort speed", NULL, NULL), 2);
  assert_int_equal(run(NULL, "report --store golden.db --format xml", NULL, NULL), 2);
  assert_int_equal(run(NULL, "report --store golden.db --limit -3", NULL, NULL), 2);
  assert_int_equal(run(NULL, "report --store golden.db --since yesterday-ish", NULL, NULL), 2);
  assert_int_equal(run(NULL, "report --store golden.db extra", NULL, NULL), 2);
  /* --help: stdout, 0 */
  assert_int_equal(run(NULL, "report --help", &out, NULL), 0);
  assert_non_null(strstr(out, "Usage: qprof report"));
  free(out);
  /* Colour never with NO_COLOR, even when forced through a terminal-less run. */
  assert_int_equal(run("NO_COLOR=1", "report --store golden.db", &out, NULL), 0);
  assert_null(strstr(out, "\033["));
  free(out);
}

/* Records `n` events of one query into a new store `name` in dir. */
static void one_query_store(const char *name, const char *text, const char *db, int n,
                            uint64_t dur_ns, uint64_t spread_ns, const char *sample_sql) {
  char p[600], err[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  qp_profile *prof;
  qp_profile_options po = {.sample = sample_sql != NULL};
  assert_int_equal(qp_profile_new(&prof, &po, err, sizeof err), QP_OK);
  qp_store *s;
  assert_int_equal(qp_store_open(&s, p, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  for (int i = 0; i < n; i++) {
    qp_query_event ev = {0};
    ev.backend = QP_BACKEND_SQLITE;
    ev.database = db;
    ev.normalized = text;
    ev.normalized_len = strlen(text);
    ev.fingerprint = 0x88;
    if (sample_sql != NULL) {
      ev.sql = sample_sql;
      ev.sql_len = strlen(sample_sql);
    }
    ev.duration_ns = dur_ns + (spread_ns ? (uint64_t)i % spread_ns : 0);
    ev.rows = 1;
    ev.error = i == 0 ? "SQLITE_BUSY" : NULL;
    ev.end_wall_ns = (T0 + i % 600) * 1000000000LL;
    assert_int_equal(qp_profile_record(prof, &ev), QP_OK);
  }
  assert_int_equal(qp_profile_flush(prof, s), QP_OK);
  qp_store_close(s);
  qp_profile_free(prof);
}

/* 20,000 inserts of about 1.34 us: JSON and CSV lose nothing (mean x calls
 * is total to 1e-12, total_ns exact); with 3 decimals of a millisecond the
 * mean was 0.001, 25% off. */
static void test_machine_formats_full_precision(void **state) {
  (void)state;
  one_query_store("fast.db", "insert into t values (?)", "fast.db", 20000, 1339, 3, NULL);
  uint64_t want_total = 0;
  for (int i = 0; i < 20000; i++) want_total += 1339 + (uint64_t)(i % 3);
  char *out;
  assert_int_equal(run(NULL, "report --store fast.db --format json", &out, NULL), 0);
  json_t *root = json_loads(out, 0, NULL);
  assert_non_null(root);
  json_t *q = json_array_get(json_object_get(root, "queries"), 0);
  assert_non_null(q);
  double mean = json_number_value(json_object_get(q, "mean_ms"));
  double total = json_number_value(json_object_get(q, "total_ms"));
  assert_int_equal(json_integer_value(json_object_get(q, "total_ns")), want_total);
  assert_int_equal(json_integer_value(json_object_get(q, "min_ns")), 1339);
  assert_int_equal(json_integer_value(json_object_get(q, "max_ns")), 1341);
  assert_true(fabs(mean * 20000 - total) / total < 1e-12);
  assert_true(fabs(total - (double)want_total / 1e6) < 1e-12);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(root, "totals"), "total_ns")),
                   want_total);
  json_decref(root);
  free(out);
  /* CSV: the same digits */
  assert_int_equal(run(NULL,
                       "report --store fast.db --format csv | /usr/bin/python3 -c 'import csv,sys; "
                       "r=list(csv.DictReader(sys.stdin))[0]; "
                       "assert abs(float(r[\"mean_ms\"])*20000-float(r[\"total_ms\"]))<1e-9, r; "
                       "print(r[\"total_ns\"], r[\"mean_ms\"])'",
                       &out, NULL),
                   0);
  char want[64];
  snprintf(want, sizeof want, "%llu 0.00133999994", (unsigned long long)want_total);
  if (strncmp(out, want, strlen(want)) != 0) fail_msg("CSV says %s, want %s...", out, want);
  free(out);
  /* text keeps 3 significant digits */
  assert_int_equal(run("NO_COLOR=1 COLUMNS=100", "report --store fast.db", &out, NULL), 0);
  assert_non_null(strstr(out, "1.34us"));
  free(out);
}

/* Stored text is lower case: --match UPDATE must find "update"; the match
 * respects case only when asked. */
static void test_match_ignores_case(void **state) {
  (void)state;
  char *out;
  assert_int_equal(run(NULL, "report --store golden.db --format json --match UPDATE", &out, NULL), 0);
  json_t *root = json_loads(out, 0, NULL);
  json_t *qs = json_object_get(root, "queries");
  assert_int_equal(json_array_size(qs), 1);
  assert_string_equal(json_string_value(json_object_get(json_array_get(qs, 0), "fingerprint")),
                      "2222222222222222");
  json_decref(root);
  free(out);
  assert_int_equal(run(NULL, "report --store golden.db --format json --exclude 'SELECT|UPDATE'",
                       &out, NULL),
                   0);
  root = json_loads(out, 0, NULL);
  assert_int_equal(json_array_size(json_object_get(root, "queries")), 2);
  json_decref(root);
  free(out);
  assert_int_equal(run(NULL, "report --store golden.db --match UPDATE --case-sensitive", &out, NULL),
                   0);
  assert_non_null(strstr(out, "No queries match"));
  free(out);
}

/* --wide: every column, and errors by code, first/last seen and the sample
 * on lines under the row. */
static void test_wide_shows_everything(void **state) {
  (void)state;
  one_query_store("sampled.db", "select * from users where id = ?", "app.db", 10, 2000000, 0,
                  "select * from users where id = 42");
  char *out;
  assert_int_equal(run("NO_COLOR=1 COLUMNS=80", "report --store sampled.db --wide", &out, NULL), 0);
  static const char *const want[] = {"fingerprint", " rows ", " min ", " p50 ", " p99 ", " max ",
                                     "errors by code: SQLITE_BUSY:1",
                                     "seen: 2026-11-20T10:00:00.000Z .. 2026-11-20T10:00:09.000Z",
                                     "sample: select * from users where id = 42"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (strstr(out, want[i]) == NULL) fail_msg("--wide lacks '%s':\n%s", want[i], out);
  free(out);
  /* without --wide none of that */
  assert_int_equal(run("NO_COLOR=1 COLUMNS=80", "report --store sampled.db", &out, NULL), 0);
  assert_null(strstr(out, "sample:"));
  assert_null(strstr(out, " p50 "));
  free(out);
}

/* The header says what time the data covers, and says so when --since or
 * --until falls inside a bucket (buckets count whole, by their start). */
static void test_header_time_range_and_rounding(void **state) {
  (void)state;
  char *out;
  assert_int_equal(run("NO_COLOR=1 COLUMNS=100",
                       "report --store golden.db --since 2026-11-20T10:17:30Z "
                       "--until 2026-11-20T10:20:30Z",
                       &out, NULL),
                   0);
  static const char *const want[] = {
      "Window: 2026-11-20T10:17:30.000Z .. 2026-11-20T10:20:30.000Z\n",
      "rounded to whole buckets",
      "--since falls inside the bucket of 2026-11-20T10:17:00.000Z, which is left out",
      "--until falls inside the bucket of 2026-11-20T10:20:00.000Z, which is counted whole",
      "Data:   2026-11-20T10:18:00.250Z .. 2026-11-20T10:20:58.250Z\n"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (strstr(out, want[i]) == NULL) fail_msg("header lacks '%s':\n%s", want[i], out);
  free(out);
  /* the same in JSON (window.since_bucket/until_bucket, totals.first_seen/last_seen) and HTML */
  const char *win = "--since 2026-11-20T10:17:30Z --until 2026-11-20T10:20:30Z";
  char args[512];
  snprintf(args, sizeof args, "report --store golden.db --format json %s", win);
  assert_int_equal(run(NULL, args, &out, NULL), 0);
  json_t *root = json_loads(out, 0, NULL);
  assert_non_null(root);
  json_t *w = json_object_get(root, "window"), *t = json_object_get(root, "totals");
  assert_string_equal(json_string_value(json_object_get(w, "since_bucket")), "2026-11-20T10:17:00.000Z");
  assert_string_equal(json_string_value(json_object_get(w, "until_bucket")), "2026-11-20T10:20:00.000Z");
  assert_string_equal(json_string_value(json_object_get(t, "first_seen")), "2026-11-20T10:18:00.250Z");
  assert_string_equal(json_string_value(json_object_get(t, "last_seen")), "2026-11-20T10:20:58.250Z");
  json_decref(root);
  free(out);
  snprintf(args, sizeof args, "report --store golden.db --format html %s", win);
  assert_int_equal(run(NULL, args, &out, NULL), 0);
  assert_non_null(strstr(out, "the start falls inside the bucket of 2026-11-20T10:17:00.000Z, which is left out"));
  assert_non_null(strstr(out, "<dt>Data</dt><dd>2026-11-20T10:18:00.250Z .. 2026-11-20T10:20:58.250Z"));
  free(out);
  /* on bucket boundaries: nothing is rounded */
  assert_int_equal(run("NO_COLOR=1", "report --store golden.db --since 2026-11-20T10:17Z "
                                     "--until 2026-11-20T10:21Z",
                       &out, NULL),
                   0);
  assert_null(strstr(out, "rounded"));
  assert_non_null(strstr(out, "Data:   2026-11-20T10:17:"));
  free(out);
  assert_int_equal(run(NULL, "report --store golden.db --format json --since 2026-11-20T10:17Z",
                       &out, NULL),
                   0);
  root = json_loads(out, 0, NULL);
  assert_true(json_is_null(json_object_get(json_object_get(root, "window"), "since_bucket")));
  json_decref(root);
  free(out);
}

/* Text from a store is shown, never obeyed: C1 controls (U+009B is CSI),
 * bidirectional overrides and isolates, bytes that are not UTF-8 and ESC. */
static void test_terminal_and_page_safety(void **state) {
  (void)state;
  const char *text = "select \"a\xc2\x9b" "31mb\" from t\xe2\x80\xae" "cba\xe2\x81\xa6x\xe2\x81\xa9"
                     " where \"\x9b" "2J\" = \x1b]0;title\x07?";
  one_query_store("unsafe.db", text, "\xe2\x80\xaeunsafe.db", 3, 1000, 0, NULL);
  static const char *const raw[] = {"\xc2\x9b", "\xe2\x80\xae", "\xe2\x81\xa6", "\xe2\x81\xa9",
                                    "\x9b", "\x1b", "\x07"};
  char *out;
  assert_int_equal(run("NO_COLOR=1 COLUMNS=200", "report --store unsafe.db --wide", &out, NULL), 0);
  for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++)
    if (strstr(out, raw[i]) != NULL) fail_msg("text output passes raw control %zu:\n%s", i, out);
  assert_non_null(strstr(out, "<U+009B>31mb"));
  assert_non_null(strstr(out, "<U+202E>cba<U+2066>x<U+2069>"));
  assert_non_null(strstr(out, "\\x9b2J"));
  free(out);
  assert_int_equal(run(NULL, "report --store unsafe.db --format html", &out, NULL), 0);
  for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++)
    if (strstr(out, raw[i]) != NULL) fail_msg("HTML passes raw control %zu", i);
  assert_non_null(strstr(out, "&lt;U+009B&gt;"));
  assert_non_null(strstr(out, "&lt;U+202E&gt;"));
  assert_non_null(strstr(out, "&lt;U+2069&gt;"));
  free(out);
  html_check("--store unsafe.db", 1);
  /* JSON: escaped, and a parser gets the text back (invalid UTF-8 as U+FFFD) */
  assert_int_equal(run(NULL, "report --store unsafe.db --format json", &out, NULL), 0);
  for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++)
    if (strstr(out, raw[i]) != NULL) fail_msg("JSON passes raw control %zu", i);
  assert_non_null(strstr(out, "\\u009b31mb"));
  assert_non_null(strstr(out, "\\u202e"));
  json_t *root = json_loads(out, 0, NULL);
  assert_non_null(root);
  const char *q = json_string_value(json_object_get(json_array_get(json_object_get(root, "queries"), 0), "query"));
  assert_non_null(strstr(q, "a\xc2\x9b" "31mb"));
  assert_non_null(strstr(q, "\xef\xbf\xbd" "2J"));
  json_decref(root);
  free(out);
}

typedef struct series_sum {
  int points;
  uint64_t calls, total_ns;
} series_sum;

static int sum_point(const qp_report_point *p, void *ud) {
  series_sum *x = ud;
  x->points++;
  x->calls += p->calls;
  x->total_ns += p->total_ns;
  return 0;
}

static void pg_admin(const char *sql) {
  PGconn *c = PQconnectdb(qpt_pg_dsn());
  assert_int_equal(PQstatus(c), CONNECTION_OK);
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) fail_msg("%s: %s", sql, PQerrorMessage(c));
  PQclear(r);
  PQfinish(c);
}

/* The PostgreSQL store gives the same report as the SQLite file, number for
 * number, and the same window rounding (its own bucket_before and scan). */
static void test_postgres_store_same_report(void **state) {
  (void)state;
  if (qpt_pg_dsn() == NULL) fail_msg("no PostgreSQL test cluster (the pg fixture)");
  char db[64], dsn[768], sql[128];
  snprintf(db, sizeof db, "qprof_report_%d", (int)getpid());
  snprintf(sql, sizeof sql, "CREATE DATABASE %s", db);
  pg_admin(sql);
  snprintf(dsn, sizeof dsn, "host=%s port=%s user=%s dbname=%s", getenv("PGHOST"),
           getenv("PGPORT"), getenv("PGUSER"), db);
  build_store(dsn, 1.0, false, false, 0);
  static const char *const windows[] = {
      "", "--since 2026-11-20T10:17:30Z --until 2026-11-20T11:20:30Z", "--until 2026-11-20T11:00Z"};
  for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++) {
    char args[2048], *a, *b;
    snprintf(args, sizeof args, "report --format json --store golden.db %s", windows[w]);
    assert_int_equal(run(NULL, args, &a, NULL), 0);
    snprintf(args, sizeof args, "report --format json --store '%s' %s", dsn, windows[w]);
    assert_int_equal(run(NULL, args, &b, NULL), 0);
    json_t *ja = json_loads(a, 0, NULL), *jb = json_loads(b, 0, NULL);
    assert_non_null(ja);
    assert_non_null(jb);
    json_object_del(ja, "store");
    json_object_del(jb, "store");
    if (!json_equal(ja, jb)) fail_msg("window '%s': SQLite\n%s\nPostgreSQL\n%s", windows[w], a, b);
    assert_true(json_array_size(json_object_get(ja, "queries")) == 5);
    json_decref(ja);
    json_decref(jb);
    free(a);
    free(b);
  }
  char args[2048], *out;
  snprintf(args, sizeof args,
           "report --store '%s' --since 2026-11-20T10:17:30Z --until 2026-11-20T11:20:30Z", dsn);
  assert_int_equal(run("NO_COLOR=1 COLUMNS=100", args, &out, NULL), 0);
  assert_non_null(strstr(out, "--since falls inside the bucket of 2026-11-20T10:17:00.000Z"));
  assert_non_null(strstr(out, "--until falls inside the bucket of 2026-11-20T11:20:00.000Z"));
  free(out);
  /* time series through the library: per bucket and hourly from the roll-ups */
  qp_store *st;
  char err[512];
  assert_int_equal(qp_store_open(&st, dsn, QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  qp_report_options o;
  qp_report_options_init(&o);
  qp_report *r;
  assert_int_equal(qp_report_new(&r, st, &o, err, sizeof err), QP_OK);
  series_sum per_bucket = {0}, hourly = {0};
  assert_int_equal(qp_report_series(r, QP_REPORT_ALL, 0, sum_point, &per_bucket), QP_OK);
  assert_int_equal(qp_report_series(r, QP_REPORT_ALL, 3600, sum_point, &hourly), QP_OK);
  assert_int_equal(per_bucket.points, 120);
  assert_int_equal(hourly.points, 2);
  assert_int_equal(per_bucket.calls, 1000 + 200 + 5000 + 1200 + 12);
  assert_int_equal(hourly.calls, per_bucket.calls);
  assert_int_equal(hourly.total_ns, qp_report_totals_get(r)->total_ns);
  qp_report_free(r);
  qp_store_close(st);
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
  pg_admin(sql);
}

static char *read_in_dir(const char *name) {
  char p[700];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return qpt_read_file(p, NULL);
}

static unsigned mode_of(const char *name) {
  char p[700];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  struct stat st;
  assert_int_equal(stat(p, &st), 0);
  return (unsigned)(st.st_mode & 0777);
}

/* No temporary file of --output is left in `sub` (they are named .NAME.XXXXXX). */
static void no_temp_left(const char *sub) {
  char *out;
  char cmd[700];
  snprintf(cmd, sizeof cmd, "{ ls -A '%s' | grep -c '^\\.' || true; }", sub);
  assert_int_equal(qpt_run_capture(dir, cmd, &out, NULL), 0);
  if (strcmp(out, "0\n") != 0) fail_msg("temporary files left in %s: %s", sub, out);
  free(out);
}

/* --output FILE: each format's bytes exactly as on stdout, nothing on
 * stdout, the file replaced by a rename (a hard link to the old one keeps
 * the old text), mode 0644 less the umask, 0600 when it holds a sample;
 * failures exit 1 with the reason and leave no temporary file. */
static void test_output_file(void **state) {
  (void)state;
  mode_t mask = umask(0);
  umask(mask);
  assert_int_equal(qpt_system("mkdir -p '%s/outdir'", dir), 0);
  static const char *const formats[] = {"text", "json", "csv", "html"};
  for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
    char args[600], name[64];
    char *want, *got, *err;
    snprintf(args, sizeof args, "report --store golden.db --format %s", formats[i]);
    assert_int_equal(run("NO_COLOR=1 COLUMNS=120", args, &want, NULL), 0);
    snprintf(name, sizeof name, "outdir/r.%s", formats[i]);
    snprintf(args, sizeof args, "report --store golden.db --format %s --output %s", formats[i], name);
    assert_int_equal(run("NO_COLOR=1 COLUMNS=120", args, &got, &err), 0);
    assert_string_equal(got, "");
    assert_string_equal(err, "");
    free(got);
    free(err);
    got = read_in_dir(name);
    assert_non_null(got);
    assert_string_equal(got, want);
    assert_int_equal(mode_of(name), 0644 & ~mask);
    free(got);
    free(want);
  }
  /* replaced, not rewritten in place */
  assert_int_equal(qpt_system("cd '%s/outdir' && ln r.json old.json", dir), 0);
  assert_int_equal(run(NULL, "report --store golden.db --format json --limit 1 --output outdir/r.json",
                       NULL, NULL),
                   0);
  char *old = read_in_dir("outdir/old.json"), *cur = read_in_dir("outdir/r.json");
  assert_non_null(strstr(old, "1111111111111111"));
  assert_null(strstr(cur, "1111111111111111"));
  free(old);
  free(cur);
  no_temp_left("outdir");
  /* a sample makes the file private */
  one_query_store("sampled_out.db", "select * from users where id = ?", "app.db", 3, 2000000, 0,
                  "select * from users where id = 42");
  assert_int_equal(run(NULL, "report --store sampled_out.db --format html --output outdir/s.html",
                       NULL, NULL),
                   0);
  assert_int_equal(mode_of("outdir/s.html"), 0600 & ~mask);
  /* failures: 1, the reason, nothing left */
  char *err;
  assert_int_equal(run(NULL, "report --store golden.db --output nosuchdir/r.txt", NULL, &err), 1);
  if (strstr(err, "cannot create a file in nosuchdir") == NULL) fail_msg("message: %s", err);
  free(err);
  assert_int_equal(run(NULL, "report --store golden.db --output outdir", NULL, &err), 1);
  assert_non_null(strstr(err, "outdir: it is a directory"));
  free(err);
  assert_int_equal(run(NULL, "report --store golden.db --output outdir/r.txt/x", NULL, &err), 1);
  assert_non_null(strstr(err, "outdir/r.txt"));
  free(err);
  /* a write that fails (a 128 KB file size limit for a 280 KB page, SIGXFSZ ignored: EFBIG):
   * 1, the reason, the old file kept, no temporary file */
  assert_int_equal(run(NULL, "report --store golden.db --format html --output outdir/r.html", NULL, NULL), 0);
  char *before = read_in_dir("outdir/r.html");
  assert_int_equal(qpt_run_capture(dir,
                                   "trap '' XFSZ; ulimit -f 128; env -u QPROF_STORE \"$QPROF_BIN\" "
                                   "report --store golden.db --format html --output outdir/r.html",
                                   NULL, &err),
                   1);
  if (strstr(err, "cannot write outdir/r.html: File too large") == NULL) fail_msg("message: %s", err);
  free(err);
  char *after = read_in_dir("outdir/r.html");
  assert_string_equal(after, before);
  free(before);
  free(after);
  no_temp_left("outdir");
  /* a store that cannot be read: no file at all */
  assert_int_equal(run(NULL, "report --store nosuch.db --output outdir/none.txt", NULL, NULL), 1);
  assert_int_equal(qpt_system("test ! -e '%s/outdir/none.txt'", dir), 0);
  no_temp_left("outdir");
  /* "-" is stdout */
  char *out;
  assert_int_equal(run(NULL, "report --store golden.db --format csv --output -", &out, NULL), 0);
  assert_int_equal(strncmp(out, "fingerprint,", 12), 0);
  free(out);
}


/* ---- who ran it: --by and the dimension filters ------------------------------ */

static const char *const dhosts[] = {"web-1", "web-2"};
static const char *const dapps[] = {"api", "cron"};
static const char *const dusers[] = {"alice", "bob"};
static const char *const dtexts[] = {"select * from items where id = ?", "delete from carts where id = ?"};

/* calls of combination (host, application, user, query) */
static int dcalls(int h, int a, int u, int k) { return 10 + 7 * h + 3 * a + 2 * u + k; }
/* every call of host h takes this long (web-2 is twice as slow) */
static uint64_t ddur(int h, int k) { return (uint64_t)(h + 1) * 1000000 + (uint64_t)k * 250000; }

/* `name`: a file in dir, or a PostgreSQL DSN (it has a '=') */
static void build_dims_store(const char *name) {
  char path[900];
  if (strchr(name, '=') != NULL) snprintf(path, sizeof path, "%s", name);
  else snprintf(path, sizeof path, "%s/%s", dir, name);
  qp_profile *p;
  char err[512];
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  qp_store *s;
  assert_int_equal(qp_store_open(&s, path, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  for (int h = 0; h < 2; h++)
    for (int a = 0; a < 2; a++)
      for (int u = 0; u < 2; u++)
        for (int k = 0; k < 2; k++)
          for (int i = 0; i < dcalls(h, a, u, k); i++) {
            qp_query_event ev = {0};
            ev.size = sizeof ev;
            ev.backend = QP_BACKEND_POSTGRES;
            ev.database = "shop";
            ev.user = dusers[u];
            ev.application = dapps[a];
            ev.host = dhosts[h];
            ev.normalized = dtexts[k];
            ev.normalized_len = strlen(dtexts[k]);
            ev.fingerprint = 0x7100000000000000ull + (uint64_t)k;
            ev.duration_ns = ddur(h, k);
            ev.rows = 1;
            ev.end_wall_ns = (T0 + i * 30) * 1000000000LL;
            assert_int_equal(qp_profile_record(p, &ev), QP_OK);
          }
  assert_int_equal(qp_profile_flush(p, s), QP_OK);
  qp_store_close(s);
  qp_profile_free(p);
}

/* calls of the events whose host, application and user are in the masks */
static uint64_t dsum(int hmask, int amask, int umask, int kmask, bool time) {
  uint64_t n = 0;
  for (int h = 0; h < 2; h++)
    for (int a = 0; a < 2; a++)
      for (int u = 0; u < 2; u++)
        for (int k = 0; k < 2; k++)
          if ((hmask >> h & 1) && (amask >> a & 1) && (umask >> u & 1) && (kmask >> k & 1))
            n += (uint64_t)dcalls(h, a, u, k) * (time ? ddur(h, k) : 1);
  return n;
}

static json_t *run_json(const char *args) {
  char *out, cmd[1024];
  snprintf(cmd, sizeof cmd, "report --store dims.db --format json %s", args);
  assert_int_equal(run(NULL, cmd, &out, NULL), 0);
  json_error_t jerr;
  json_t *root = json_loads(out, 0, &jerr);
  if (root == NULL) fail_msg("invalid JSON: %s: %s", jerr.text, out);
  free(out);
  return root;
}

static uint64_t jtotal(json_t *root, const char *field) {
  return (uint64_t)json_integer_value(json_object_get(json_object_get(root, "totals"), field));
}

static int dix(const char *const *v, const char *x) {
  if (x != NULL && strcmp(v[0], x) == 0) return 0;
  if (x != NULL && strcmp(v[1], x) == 0) return 1;
  fail_msg("unexpected value %s", x ? x : "(none)");
  return -1;
}

static void test_by_dimensions(void **state) {
  (void)state;
  build_dims_store("dims.db");
  /* the default: per query and database, exactly as before */
  json_t *root = run_json("");
  assert_null(json_object_get(root, "by"));
  json_t *qs = json_object_get(root, "queries"), *q;
  size_t i;
  assert_int_equal(json_array_size(qs), 2);
  assert_int_equal(jtotal(root, "calls"), dsum(3, 3, 3, 3, false));
  assert_int_equal(jtotal(root, "total_ns"), dsum(3, 3, 3, 3, true));
  json_array_foreach(qs, i, q) {
    assert_string_equal(json_string_value(json_object_get(q, "database")), "shop");
    assert_null(json_object_get(q, "host"));
  }
  json_decref(root);

  /* --by host: one row per query and host, each with its host's exact totals */
  root = run_json("--by host");
  json_t *by = json_object_get(root, "by");
  assert_int_equal(json_array_size(by), 1);
  assert_string_equal(json_string_value(json_array_get(by, 0)), "host");
  qs = json_object_get(root, "queries");
  assert_int_equal(json_array_size(qs), 4);
  uint64_t per_host[2] = {0, 0};
  json_array_foreach(qs, i, q) {
    int h = dix(dhosts, json_string_value(json_object_get(q, "host")));
    assert_null(json_object_get(q, "database"));
    assert_null(json_object_get(q, "user"));
    int k = strstr(json_string_value(json_object_get(q, "query")), "delete") != NULL;
    assert_int_equal(json_integer_value(json_object_get(q, "calls")), dsum(1 << h, 3, 3, 1 << k, false));
    assert_int_equal(json_integer_value(json_object_get(q, "total_ns")), dsum(1 << h, 3, 3, 1 << k, true));
    per_host[h] += (uint64_t)json_integer_value(json_object_get(q, "calls"));
  }
  assert_int_equal(per_host[0], dsum(1, 3, 3, 3, false));
  assert_int_equal(per_host[1], dsum(2, 3, 3, 3, false));
  json_decref(root);

  /* the report across hosts is the sum of the per-host reports */
  uint64_t calls = 0, total = 0, all_calls, all_total;
  root = run_json("");
  all_calls = jtotal(root, "calls");
  all_total = jtotal(root, "total_ns");
  json_decref(root);
  for (int h = 0; h < 2; h++) {
    char args[64];
    snprintf(args, sizeof args, "--host %s", dhosts[h]);
    root = run_json(args);
    assert_string_equal(json_string_value(json_object_get(json_object_get(root, "filters"), "host")),
                        dhosts[h]);
    assert_true(json_is_null(json_object_get(json_object_get(root, "filters"), "user")));
    assert_int_equal(jtotal(root, "calls"), dsum(1 << h, 3, 3, 3, false));
    calls += jtotal(root, "calls");
    total += jtotal(root, "total_ns");
    json_decref(root);
  }
  assert_int_equal(calls, all_calls);
  assert_int_equal(total, all_total);

  /* --by host,application: four rows per query */
  root = run_json("--by host,application --sort calls");
  qs = json_object_get(root, "queries");
  assert_int_equal(json_array_size(qs), 8);
  json_array_foreach(qs, i, q) {
    int h = dix(dhosts, json_string_value(json_object_get(q, "host")));
    int a = dix(dapps, json_string_value(json_object_get(q, "application")));
    int k = strstr(json_string_value(json_object_get(q, "query")), "delete") != NULL;
    assert_int_equal(json_integer_value(json_object_get(q, "calls")), dsum(1 << h, 1 << a, 3, 1 << k, false));
  }
  json_decref(root);

  /* --by none: one row per query, every dimension merged */
  root = run_json("--by none");
  assert_int_equal(json_array_size(json_object_get(root, "by")), 0);
  assert_int_equal(json_array_size(json_object_get(root, "queries")), 2);
  json_array_foreach(json_object_get(root, "queries"), i, q)
    assert_null(json_object_get(q, "database"));
  assert_int_equal(jtotal(root, "calls"), dsum(3, 3, 3, 3, false));
  json_decref(root);

  /* filters: exact, /regex/, /regex/i, combined */
  root = run_json("--user alice");
  assert_int_equal(jtotal(root, "calls"), dsum(3, 3, 1, 3, false));
  json_decref(root);
  root = run_json("--user '/^b/' --application cron");
  assert_int_equal(jtotal(root, "calls"), dsum(3, 2, 2, 3, false));
  json_decref(root);
  root = run_json("--host '/WEB-2/i' --by user");
  assert_int_equal(jtotal(root, "calls"), dsum(2, 3, 3, 3, false));
  json_array_foreach(json_object_get(root, "queries"), i, q)
    dix(dusers, json_string_value(json_object_get(q, "user")));
  json_decref(root);
  root = run_json("--host '/WEB-2/'");
  assert_int_equal(jtotal(root, "calls"), 0);
  json_decref(root);
  root = run_json("--database shop --by database");
  assert_int_equal(jtotal(root, "calls"), dsum(3, 3, 3, 3, false));
  json_decref(root);

  /* CSV: the key's dimensions after backend */
  char *out, *err;
  assert_int_equal(run(NULL, "report --store dims.db --format csv --by host,application --sort calls", &out, NULL), 0);
  assert_int_equal(strncmp(out, "fingerprint,query,backend,application,host,calls,", 49), 0);
  char line[256];
  snprintf(line, sizeof line, ",postgres,cron,web-2,%llu,", (unsigned long long)dsum(2, 2, 3, 2, false));
  if (strstr(out, line) == NULL) fail_msg("no row %s in\n%s", line, out);
  free(out);

  /* text: the rows' key and the filters in the header, the dimension as a column */
  assert_int_equal(run("NO_COLOR=1 COLUMNS=140", "report --store dims.db --by user --host web-1", &out, NULL), 0);
  assert_non_null(strstr(out, "Rows:   per query and user\n"));
  assert_non_null(strstr(out, "Filters: host=web-1\n"));
  assert_non_null(strstr(out, "  user   query\n"));
  assert_non_null(strstr(out, "  alice  select * from items"));
  assert_non_null(strstr(out, "  bob    delete from carts"));
  free(out);
  assert_int_equal(run("NO_COLOR=1", "report --store dims.db --by none", &out, NULL), 0);
  assert_non_null(strstr(out, "Rows:   per query only (--by none)\n"));
  free(out);

  /* a filter that matches nothing: an empty report that says so */
  assert_int_equal(run(NULL, "report --store dims.db --host nosuch", &out, NULL), 0);
  assert_non_null(strstr(out, "No queries match the filters (2 queries in the window)."));
  free(out);
  assert_int_equal(run(NULL, "report --store dims.db --format json --user ''", &out, &err), 0);
  assert_non_null(strstr(err, "No queries match the filters"));
  assert_non_null(strstr(out, "\"queries\": []"));
  free(out);
  free(err);

  /* usage errors: exit 2 and why */
  assert_int_equal(run(NULL, "report --store dims.db --by host,role", NULL, &err), 2);
  if (strstr(err, "--by: unknown dimension 'role': the dimensions are user, application, host and "
                  "database") == NULL)
    fail_msg("message: %s", err);
  free(err);
  assert_int_equal(run(NULL, "report --store dims.db --by ''", NULL, NULL), 2);
  assert_int_equal(run(NULL, "report --store dims.db --host '/web(/'", NULL, &err), 2);
  if (strstr(err, "--host pattern '/web(/' is invalid at offset") == NULL) fail_msg("message: %s", err);
  free(err);
}

static void test_diff_two_hosts(void **state) {
  (void)state;
  char *out, *err;
  if (qpt_system("test -f '%s/dims.db'", dir) != 0) build_dims_store("dims.db");
  assert_int_equal(run(NULL, "diff dims.db --host web-1 --against-host web-2 --format json", &out, NULL), 0);
  json_error_t jerr;
  json_t *root = json_loads(out, 0, &jerr);
  if (root == NULL) fail_msg("invalid JSON: %s", out);
  free(out);
  json_t *counts = json_object_get(root, "counts");
  assert_int_equal(json_integer_value(json_object_get(counts, "changed")), 2);
  assert_int_equal(json_integer_value(json_object_get(counts, "new")), 0);
  assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(root, "base"),
                                                                        "filters"), "host")), "web-1");
  assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(root, "new"),
                                                                        "filters"), "host")), "web-2");
  assert_int_equal(json_integer_value(json_object_get(json_object_get(root, "base"), "calls")),
                   dsum(1, 3, 3, 3, false));
  assert_int_equal(json_integer_value(json_object_get(json_object_get(root, "new"), "calls")),
                   dsum(2, 3, 3, 3, false));
  json_t *q;
  size_t i;
  json_array_foreach(json_object_get(root, "queries"), i, q) {
    /* web-2 takes twice as long, or nearly (the second query's +0.25 ms) */
    double pct = json_number_value(json_object_get(q, "mean_change_pct"));
    assert_true(pct > 70 && pct < 110);
  }
  json_decref(root);
  /* the gate applies as with two stores */
  assert_int_equal(run(NULL, "diff dims.db --host web-1 --against-host web-2 --fail-above 50", &out, &err), 3);
  assert_non_null(strstr(out, "Base: dims.db, host=web-1"));
  assert_non_null(strstr(out, "New:  dims.db, host=web-2"));
  free(out);
  free(err);
  /* two applications, rows per user */
  assert_int_equal(run(NULL, "diff dims.db --application api --against-application cron --by user --format json",
                       &out, NULL), 0);
  root = json_loads(out, 0, &jerr);
  free(out);
  assert_int_equal(json_array_size(json_object_get(root, "queries")), 4);
  json_array_foreach(json_object_get(root, "queries"), i, q)
    dix(dusers, json_string_value(json_object_get(q, "user")));
  json_decref(root);
  /* usage errors */
  assert_int_equal(run(NULL, "diff dims.db --against-host web-2", NULL, &err), 2);
  assert_non_null(strstr(err, "--against-host needs --host"));
  free(err);
  assert_int_equal(run(NULL, "diff dims.db --host web-1 --against-host web-2 --by host", NULL, &err), 2);
  assert_non_null(strstr(err, "cannot be in --by"));
  free(err);
  assert_int_equal(run(NULL, "diff dims.db --host web-1 --against-host web-2 --by bogus", NULL, NULL), 2);
}

/* The same events in a PostgreSQL store give the same reports by every
 * key and filter (the dimensions are columns of its key too). */
static void test_postgres_store_by_dimensions(void **state) {
  (void)state;
  if (qpt_pg_dsn() == NULL) fail_msg("no PostgreSQL test cluster (the pg fixture)");
  char db[64], dsn[768], sql[128];
  snprintf(db, sizeof db, "qprof_report_dims_%d", (int)getpid());
  snprintf(sql, sizeof sql, "CREATE DATABASE %s", db);
  pg_admin(sql);
  snprintf(dsn, sizeof dsn, "host=%s port=%s user=%s dbname=%s", getenv("PGHOST"),
           getenv("PGPORT"), getenv("PGUSER"), db);
  build_dims_store(dsn);
  if (qpt_system("test -f '%s/dims.db'", dir) != 0) build_dims_store("dims.db");
  static const char *const variants[] = {"", "--by host", "--by host,application,user --sort calls",
                                         "--user '/^b/' --by application", "--host web-2",
                                         "--by none", "--host nosuch"};
  for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
    char args[2048], *a, *b;
    snprintf(args, sizeof args, "report --format json --store dims.db %s", variants[v]);
    assert_int_equal(run(NULL, args, &a, NULL), 0);
    snprintf(args, sizeof args, "report --format json --store '%s' %s", dsn, variants[v]);
    assert_int_equal(run(NULL, args, &b, NULL), 0);
    json_t *ja = json_loads(a, 0, NULL), *jb = json_loads(b, 0, NULL);
    assert_non_null(ja);
    assert_non_null(jb);
    json_object_del(ja, "store");
    json_object_del(jb, "store");
    if (!json_equal(ja, jb)) fail_msg("'%s': SQLite\n%s\nPostgreSQL\n%s", variants[v], a, b);
    json_decref(ja);
    json_decref(jb);
    free(a);
    free(b);
  }
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
  pg_admin(sql);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_text_golden),       cmocka_unit_test(test_json_golden_and_schema),
      cmocka_unit_test(test_csv_golden),        cmocka_unit_test(test_filters_and_windows),
      cmocka_unit_test(test_exit_codes),        cmocka_unit_test(test_html_golden),
      cmocka_unit_test(test_html_escapes_store_text),
      cmocka_unit_test(test_machine_formats_full_precision),
      cmocka_unit_test(test_match_ignores_case),
      cmocka_unit_test(test_wide_shows_everything),
      cmocka_unit_test(test_header_time_range_and_rounding),
      cmocka_unit_test(test_terminal_and_page_safety),
      cmocka_unit_test(test_postgres_store_same_report),
      cmocka_unit_test(test_output_file),
      cmocka_unit_test(test_by_dimensions),
      cmocka_unit_test(test_diff_two_hosts),
      cmocka_unit_test(test_postgres_store_by_dimensions),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
