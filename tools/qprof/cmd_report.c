/* qprof report: the queries of a store window, ranked, as text, JSON, CSV or HTML. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "internal.h"
#include "report_common.h"

static void usage(FILE *f) {
  fprintf(f,
          "Usage: qprof report [--store PATH] [--format text|json|csv|html]\n"
          "                    [--sort total|mean|p95|p99|calls|rows|errors] [--limit N]\n"
          "                    [--since TIME] [--until TIME] [--match REGEX] [--exclude REGEX]\n"
          "                    [--min-calls N] [--wide]\n\n"
          "Ranks the queries recorded in a profile store: per normalized query, calls,\n"
          "errors, rows, total/mean/min/max/stddev and p50/p95/p99 latency (within 2%%).\n\n"
          "  --store PATH      the store (default: $QPROF_STORE, else ./qprof.db)\n"
          "  --format F        text (default), json, csv (docs/report-json.md) or html (one\n"
          "                    self-contained page)\n"
          "  --sort KEY        total (default), mean, p95, p99, calls, rows or errors\n"
          "  --limit N         show the first N (default 20 for text, all otherwise; 0 = all)\n"
          "  --since TIME      only time buckets starting at or after TIME\n"
          "  --until TIME      only time buckets starting before TIME\n"
          "                    TIME: 2026-11-22, 2026-11-22T10:00Z, @UNIX, -15m, -2h, -1d, now\n"
          "  --match REGEX     only queries whose normalized text matches (PCRE2)\n"
          "  --exclude REGEX   leave out queries whose normalized text matches\n"
          "  --min-calls N     only queries called at least N times\n"
          "  --wide            full query text and every column, whatever the terminal width\n");
}

typedef enum sort_key { S_TOTAL, S_MEAN, S_P95, S_P99, S_CALLS, S_ROWS, S_ERRORS } sort_key;
static const char *const sort_names[] = {"total", "mean", "p95", "p99", "calls", "rows", "errors"};

static double key_of(const rq *r, sort_key k) {
  switch (k) {
  case S_TOTAL: return (double)r->s.total_ns;
  case S_MEAN: return r->s.mean_ns;
  case S_P95: return r->s.p95_ns;
  case S_P99: return r->s.p99_ns;
  case S_CALLS: return (double)r->s.calls;
  case S_ROWS: return (double)r->s.rows;
  case S_ERRORS: return (double)r->s.errors;
  }
  return 0;
}

static int cmp_rq(const void *a, const void *b, void *arg) {
  const rq *x = a, *y = b;
  sort_key k = *(const sort_key *)arg;
  double kx = key_of(x, k), ky = key_of(y, k);
  if (kx != ky) return kx > ky ? -1 : 1;
  if (x->s.total_ns != y->s.total_ns) return x->s.total_ns > y->s.total_ns ? -1 : 1;
  int c = strcmp(x->fp, y->fp);
  if (c != 0) return c;
  c = strcmp(x->s.backend, y->s.backend);
  return c != 0 ? c : strcmp(x->s.database, y->s.database);
}

static void window_text(int64_t since, int64_t until, char *buf, size_t len) {
  char a[40], b[40];
  if (since == INT64_MIN && until == INT64_MAX) snprintf(buf, len, "all recorded time");
  else if (until == INT64_MAX) snprintf(buf, len, "since %s", rq_iso(since, a, sizeof a));
  else if (since == INT64_MIN) snprintf(buf, len, "until %s", rq_iso(until, b, sizeof b));
  else snprintf(buf, len, "%s .. %s", rq_iso(since, a, sizeof a), rq_iso(until, b, sizeof b));
}

/* ---- text ----------------------------------------------------------------- */

enum { C_RANK, C_FP, C_CALLS, C_TOTAL, C_SHARE, C_MEAN, C_P95, C_P99, C_ERR, C_NCOLS };
static const struct {
  const char *title;
  int width;
} cols[C_NCOLS] = {{"#", 3},    {"fingerprint", 16}, {"calls", 9}, {"total", 8}, {"share", 6},
                   {"mean", 7}, {"p95", 7},          {"p99", 7},   {"errors", 6}};

/* The database as shown in a row: the file name of an SQLite path. */
static const char *db_label(const char *db) {
  const char *slash = strrchr(db, '/');
  return slash != NULL && slash[1] != '\0' ? slash + 1 : db;
}

static void print_text(const char *store, int64_t since, int64_t until, const rq_set *set,
                       size_t shown, size_t before_filter, sort_key sort, bool wide) {
  bool color = cli_use_color(stdout);
  const char *bold = color ? "\033[1m" : "", *warn = color ? "\033[33m" : "",
             *reset = color ? "\033[0m" : "";
  char w[128], c1[32], c2[32], c3[32];
  window_text(since, until, w, sizeof w);
  printf("%sStore:%s  %s\n%sWindow:%s %s\n", bold, reset, store, bold, reset, w);
  printf("%sTotals:%s %zu quer%s, %s calls, %s total, %s errors", bold, reset, set->n,
         set->n == 1 ? "y" : "ies", rq_count(set->calls, c1, sizeof c1),
         rq_dur(set->total_ns, c2, sizeof c2), rq_count(set->errors, c3, sizeof c3));
  if (set->n != before_filter) printf(" (%zu of %zu queries pass the filters)", set->n, before_filter);
  printf("\n");
  if (shown < set->n)
    printf("Showing the top %zu by %s (--limit to change).\n", shown, sort_names[sort]);
  printf("\n");

  /* Columns that fit: the query keeps at least 24 columns; optional ones
   * (errors, p99, fingerprint) go first when the terminal is narrow. */
  int term = cli_term_width();
  if (term <= 0) term = 120;
  bool on[C_NCOLS];
  for (int i = 0; i < C_NCOLS; i++) on[i] = true;
  int used = 0;
  for (int i = 0; i < C_NCOLS; i++) used += cols[i].width + 2;
  static const int drop_order[] = {C_FP, C_P99, C_ERR};
  for (size_t d = 0; !wide && d < QP_ARRAY_LEN(drop_order) && term - used < 40; d++) {
    on[drop_order[d]] = false;
    used -= cols[drop_order[d]].width + 2;
  }
  int qwidth = wide ? 0 : (term - used > 10 ? term - used : 10);
  bool several_dbs = false;
  for (size_t i = 1; i < set->n && !several_dbs; i++)
    several_dbs = strcmp(set->v[i].s.database, set->v[0].s.database) != 0 ||
                  strcmp(set->v[i].s.backend, set->v[0].s.backend) != 0;

  printf("%s", bold);
  for (int i = 0; i < C_NCOLS; i++)
    if (on[i]) printf(i == C_FP ? "%-*s  " : "%*s  ", cols[i].width, cols[i].title);
  printf("query%s\n", reset);
  char *qbuf = malloc(65536);
  if (qbuf == NULL) return;
  for (size_t i = 0; i < shown; i++) {
    const rq *r = &set->v[i];
    char b[C_NCOLS][40];
    snprintf(b[C_RANK], 40, "%zu", i + 1);
    snprintf(b[C_FP], 40, "%s", r->fp);
    rq_count(r->s.calls, b[C_CALLS], 40);
    rq_dur((double)r->s.total_ns, b[C_TOTAL], 40);
    snprintf(b[C_SHARE], 40, "%.1f%%", r->share * 100);
    rq_dur(r->s.mean_ns, b[C_MEAN], 40);
    rq_dur(r->s.p95_ns, b[C_P95], 40);
    rq_dur(r->s.p99_ns, b[C_P99], 40);
    rq_count(r->s.errors, b[C_ERR], 40);
    bool hot = r->share >= 0.2;
    if (hot) printf("%s", warn);
    for (int c = 0; c < C_NCOLS; c++)
      if (on[c]) printf(c == C_FP ? "%-*s  " : "%*s  ", cols[c].width, b[c]);
    /* the database when there are several, so that two rows of one query differ */
    char q[256];
    q[0] = '\0';
    if (several_dbs && r->s.database[0] != '\0')
      snprintf(q, sizeof q, "[%s] ", db_label(r->s.database));
    size_t ql = strlen(q);
    rq_shorten(r->s.query, qwidth > (int)ql + 10 ? (size_t)qwidth - ql : (qwidth ? 10 : 0), qbuf,
               65536);
    printf("%s%s%s\n", q, qbuf, hot ? reset : "");
  }
  free(qbuf);
}

/* ---- JSON and CSV ------------------------------------------------------------ */

static json_t *entry_json(const rq *r) {
  char a[40], b[40];
  json_t *o = json_object();
  json_object_set_new(o, "fingerprint", json_string(r->fp));
  json_object_set_new(o, "query", json_string(r->s.query));
  json_object_set_new(o, "backend", json_string(r->s.backend));
  json_object_set_new(o, "database", json_string(r->s.database));
  json_object_set_new(o, "calls", json_integer((json_int_t)r->s.calls));
  json_object_set_new(o, "errors", json_integer((json_int_t)r->s.errors));
  json_object_set_new(o, "errors_by_code", rq_codes_json(r->s.error_codes));
  json_object_set_new(o, "rows", json_integer((json_int_t)r->s.rows));
  json_object_set_new(o, "total_ms", json_real(rq_ms((double)r->s.total_ns)));
  json_object_set_new(o, "share", json_real(round(r->share * 1e6) / 1e6));
  json_object_set_new(o, "mean_ms", json_real(rq_ms(r->s.mean_ns)));
  json_object_set_new(o, "min_ms", json_real(rq_ms((double)r->s.min_ns)));
  json_object_set_new(o, "max_ms", json_real(rq_ms((double)r->s.max_ns)));
  json_object_set_new(o, "stddev_ms", json_real(rq_ms(r->s.stddev_ns)));
  json_object_set_new(o, "p50_ms", json_real(rq_ms(r->s.p50_ns)));
  json_object_set_new(o, "p90_ms", json_real(rq_ms(r->s.p90_ns)));
  json_object_set_new(o, "p95_ms", json_real(rq_ms(r->s.p95_ns)));
  json_object_set_new(o, "p99_ms", json_real(rq_ms(r->s.p99_ns)));
  json_object_set_new(o, "p999_ms", json_real(rq_ms(r->s.p999_ns)));
  json_object_set_new(o, "first_seen", json_string(rq_iso(r->s.first_seen_ns, a, sizeof a)));
  json_object_set_new(o, "last_seen", json_string(rq_iso(r->s.last_seen_ns, b, sizeof b)));
  json_object_set_new(o, "sample", r->s.sample ? json_string(r->s.sample) : json_null());
  return o;
}

static void print_json(const char *store, int64_t since, int64_t until, const rq_set *set,
                       size_t shown, sort_key sort) {
  char a[40];
  json_t *root = json_object();
  json_object_set_new(root, "qprof_report", json_integer(1));
  json_object_set_new(root, "store", json_string(store));
  json_t *w = json_object();
  json_object_set_new(w, "since", since == INT64_MIN ? json_null() : json_string(rq_iso(since, a, sizeof a)));
  json_object_set_new(w, "until", until == INT64_MAX ? json_null() : json_string(rq_iso(until, a, sizeof a)));
  json_object_set_new(root, "window", w);
  json_object_set_new(root, "sort", json_string(sort_names[sort]));
  json_t *t = json_object();
  json_object_set_new(t, "queries", json_integer((json_int_t)set->n));
  json_object_set_new(t, "calls", json_integer((json_int_t)set->calls));
  json_object_set_new(t, "errors", json_integer((json_int_t)set->errors));
  json_object_set_new(t, "total_ms", json_real(rq_ms(set->total_ns)));
  json_object_set_new(root, "totals", t);
  json_t *arr = json_array();
  for (size_t i = 0; i < shown; i++) json_array_append_new(arr, entry_json(&set->v[i]));
  json_object_set_new(root, "queries", arr);
  rq_json_print(root);
}

static const char *const csv_cols[] = {
    "fingerprint", "query",     "backend", "database", "calls",     "errors",     "errors_by_code",
    "rows",        "total_ms",  "share",   "mean_ms",  "min_ms",    "max_ms",     "stddev_ms",
    "p50_ms",      "p90_ms",    "p95_ms",  "p99_ms",   "p999_ms",   "first_seen", "last_seen",
    "sample"};

static void csv_num(double v) { printf(",%.15g", v); }

static void print_csv(const rq_set *set, size_t shown) {
  for (size_t i = 0; i < QP_ARRAY_LEN(csv_cols); i++) printf("%s%s", i ? "," : "", csv_cols[i]);
  printf("\r\n");
  for (size_t i = 0; i < shown; i++) {
    const rq *r = &set->v[i];
    char a[40];
    rq_csv_field(stdout, r->fp);
    putchar(',');
    rq_csv_field(stdout, r->s.query);
    putchar(',');
    rq_csv_field(stdout, r->s.backend);
    putchar(',');
    rq_csv_field(stdout, r->s.database);
    printf(",%llu,%llu,", (unsigned long long)r->s.calls, (unsigned long long)r->s.errors);
    rq_csv_field(stdout, r->s.error_codes);
    printf(",%lld", (long long)r->s.rows);
    csv_num(rq_ms((double)r->s.total_ns));
    csv_num(round(r->share * 1e6) / 1e6);
    csv_num(rq_ms(r->s.mean_ns));
    csv_num(rq_ms((double)r->s.min_ns));
    csv_num(rq_ms((double)r->s.max_ns));
    csv_num(rq_ms(r->s.stddev_ns));
    csv_num(rq_ms(r->s.p50_ns));
    csv_num(rq_ms(r->s.p90_ns));
    csv_num(rq_ms(r->s.p95_ns));
    csv_num(rq_ms(r->s.p99_ns));
    csv_num(rq_ms(r->s.p999_ns));
    printf(",%s", rq_iso(r->s.first_seen_ns, a, sizeof a));
    printf(",%s,", rq_iso(r->s.last_seen_ns, a, sizeof a));
    rq_csv_field(stdout, r->s.sample); /* empty when none */
    printf("\r\n");
  }
}

static bool parse_u64(const char *s, uint64_t *out) {
  if (s == NULL || *s == '\0' || *s == '-') return false;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end != '\0') return false;
  *out = v;
  return true;
}

int cmd_report(int argc, char **argv) {
  static const struct option longopts[] = {
      {"store", required_argument, NULL, 's'},   {"format", required_argument, NULL, 'f'},
      {"sort", required_argument, NULL, 'o'},    {"limit", required_argument, NULL, 'n'},
      {"since", required_argument, NULL, 'S'},   {"until", required_argument, NULL, 'U'},
      {"match", required_argument, NULL, 'm'},   {"exclude", required_argument, NULL, 'x'},
      {"min-calls", required_argument, NULL, 'c'}, {"wide", no_argument, NULL, 'w'},
      {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
  const char *store_opt = NULL, *format = "text", *match = NULL, *exclude = NULL;
  sort_key sort = S_TOTAL;
  uint64_t limit = 0, min_calls = 0;
  bool have_limit = false, wide = false;
  int64_t since = INT64_MIN, until = INT64_MAX;
  int c;
  while ((c = getopt_long(argc, argv, "s:f:o:n:S:U:m:x:c:wh", longopts, NULL)) != -1) {
    switch (c) {
    case 's': store_opt = optarg; break;
    case 'f': format = optarg; break;
    case 'o': {
      size_t i = 0;
      while (i < QP_ARRAY_LEN(sort_names) && strcmp(sort_names[i], optarg) != 0) i++;
      if (i == QP_ARRAY_LEN(sort_names))
        return cli_usage_error("report", "--sort must be total, mean, p95, p99, calls, rows or "
                                         "errors, not '%s'", optarg);
      sort = (sort_key)i;
      break;
    }
    case 'n':
      if (!parse_u64(optarg, &limit))
        return cli_usage_error("report", "--limit needs a number >= 0, not '%s'", optarg);
      have_limit = true;
      break;
    case 'S':
      if (!rq_parse_time("report", "--since", optarg, &since)) return QP_EXIT_USAGE;
      break;
    case 'U':
      if (!rq_parse_time("report", "--until", optarg, &until)) return QP_EXIT_USAGE;
      break;
    case 'm': match = optarg; break;
    case 'x': exclude = optarg; break;
    case 'c':
      if (!parse_u64(optarg, &min_calls))
        return cli_usage_error("report", "--min-calls needs a number >= 0, not '%s'", optarg);
      break;
    case 'w': wide = true; break;
    case 'h': usage(stdout); return QP_EXIT_OK;
    default: return cli_usage_error("report", "unknown option");
    }
  }
  if (optind < argc) return cli_usage_error("report", "unexpected argument '%s'", argv[optind]);
  int fmt = strcmp(format, "text") == 0 ? 0 : strcmp(format, "json") == 0 ? 1
                                             : strcmp(format, "csv") == 0  ? 2
                                             : strcmp(format, "html") == 0 ? 3
                                                                           : -1;
  if (fmt < 0)
    return cli_usage_error("report", "--format must be text, json, csv or html, not '%s'", format);
  if (since >= until) return cli_usage_error("report", "--since must be before --until");
  rq_filter filt;
  int rc = rq_filter_init("report", &filt, match, exclude, min_calls);
  if (rc != QP_EXIT_OK) return rc;

  const char *store = rq_store_path(store_opt);
  rq_set set;
  if (!rq_load("report", store, since, until, &set)) {
    rq_filter_free(&filt);
    return QP_EXIT_FAIL;
  }
  size_t before = set.n;
  rq_set_filter(&set, &filt);
  rq_filter_free(&filt);
  if (set.n > 1) qsort_r(set.v, set.n, sizeof *set.v, cmp_rq, &sort);
  if (!have_limit) limit = fmt == 0 ? 20 : 0;
  size_t shown = limit == 0 || limit > set.n ? set.n : (size_t)limit;

  if (set.n == 0) {
    if (before == 0)
      fprintf(fmt == 0 ? stdout : stderr, "No queries recorded in %s%s.\n", set.location,
              since != INT64_MIN || until != INT64_MAX ? " in this window" : "");
    else
      fprintf(fmt == 0 ? stdout : stderr,
              "No queries match the filters (%zu quer%s in the window).\n", before,
              before == 1 ? "y" : "ies");
    if (fmt == 0) {
      rq_set_free(&set);
      return QP_EXIT_OK;
    }
  }
  if (fmt == 0) print_text(set.location, since, until, &set, shown, before, sort, wide);
  else if (fmt == 1) print_json(set.location, since, until, &set, shown, sort);
  else if (fmt == 2) print_csv(&set, shown);
  else {
    char w[128];
    window_text(since, until, w, sizeof w);
    rq_print_html(stdout, set.location, w, &set, shown, sort_names[sort]);
  }
  rq_set_free(&set);
  if (fflush(stdout) != 0 || ferror(stdout)) return cli_fail("report", "cannot write the report");
  return QP_EXIT_OK;
}
