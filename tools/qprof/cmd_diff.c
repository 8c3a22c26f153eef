/* qprof diff: compares two profiles (two stores, or two windows of one) per
 * query, and gates CI on p95 regressions. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "report_common.h"

static void usage(FILE *f) {
  fprintf(f,
          "Usage: qprof diff BASE [NEW] [--fail-above PCT] [--min-calls N] [--format text|json]\n"
          "                 [--since T] [--until T] [--base-since T] [--base-until T]\n"
          "                 [--new-since T] [--new-until T] [--match REGEX] [--exclude REGEX]\n"
          "                 [--limit N] [--wide]\n\n"
          "Compares two profiles per query (fingerprint, backend, database): the change in\n"
          "calls, mean and p95, and the queries that are new or vanished. BASE and NEW are\n"
          "store files; give one store and --base-*/--new-* windows to compare two periods\n"
          "of it.\n\n"
          "  --fail-above PCT  exit 3 when a query with at least --min-calls calls on both\n"
          "                    sides got slower at p95 by more than PCT percent (a CI gate;\n"
          "                    p95 is within 2%% on each side, so keep PCT above 5)\n"
          "  --min-calls N     ignore queries with fewer calls on either side (default 1)\n"
          "  --format F        text (default) or json (docs/report-json.md)\n"
          "  --since/--until   window for both sides; --base-*/--new-* override per side\n"
          "  --match/--exclude PCRE2 filters on the normalized text (case-insensitive\n"
          "                    unless --case-sensitive)\n"
          "  --limit N         rows per table in text (default 20; 0 = all)\n"
          "  --wide            full query text\n");
}

static void side_json(jw *w, const char *key, const qp_query_summary *s) {
  if (s == NULL) {
    jw_null(w, key);
    return;
  }
  jw_object(w, key);
  jw_uint(w, "calls", s->calls);
  jw_uint(w, "errors", s->errors);
  jw_number(w, "total_ms", rq_ms((double)s->total_ns));
  jw_number(w, "mean_ms", rq_ms(s->mean_ns));
  jw_number(w, "p95_ms", rq_ms(s->p95_ns));
  jw_number(w, "p99_ms", rq_ms(s->p99_ns));
  jw_object_end(w);
}

static void pct_json(jw *w, const char *key, double v) {
  if (isnan(v)) jw_null(w, key);
  else jw_number(w, key, round(v * 100) / 100);
}

static void window_json(jw *w, const char *key, const qp_report_totals *t) {
  char a[40];
  jw_object(w, key);
  jw_string(w, "since", t->since_ns == INT64_MIN ? NULL : rq_iso(t->since_ns, a, sizeof a));
  jw_string(w, "until", t->until_ns == INT64_MAX ? NULL : rq_iso(t->until_ns, a, sizeof a));
  jw_object_end(w);
}

static void side_head_json(jw *w, const char *key, const qp_report_totals *t) {
  jw_object(w, key);
  jw_string(w, "store", t->store);
  window_json(w, "window", t);
  jw_uint(w, "queries", t->queries);
  jw_uint(w, "calls", t->calls);
  jw_number(w, "total_ms", rq_ms((double)t->total_ns));
  jw_object_end(w);
}

static void print_json(const qp_report *a, const qp_report *b, const qp_diff *d,
                       const qp_diff_options *o) {
  const qp_diff_counts *n = qp_diff_counts_get(d);
  jw w;
  jw_init(&w, stdout);
  jw_object(&w, NULL);
  jw_int(&w, "qprof_diff", 1);
  side_head_json(&w, "base", qp_report_totals_get(a));
  side_head_json(&w, "new", qp_report_totals_get(b));
  if (isnan(o->fail_above_pct)) jw_null(&w, "fail_above_pct");
  else jw_number(&w, "fail_above_pct", o->fail_above_pct);
  jw_uint(&w, "min_calls", o->min_calls);
  jw_object(&w, "counts");
  jw_uint(&w, "unchanged", n->unchanged);
  jw_uint(&w, "changed", n->changed);
  jw_uint(&w, "new", n->added);
  jw_uint(&w, "vanished", n->vanished);
  jw_uint(&w, "regressions", n->regressions);
  jw_object_end(&w);
  jw_array(&w, "queries");
  for (size_t k = 0; k < qp_diff_count(d); k++) {
    const qp_diff_entry *p = qp_diff_entry_at(d, k);
    const qp_query_summary *r = p->cur ? p->cur : p->base;
    char fp[QP_FINGERPRINT_HEX_SIZE];
    qp_fingerprint_hex(r->fingerprint, fp);
    jw_object(&w, NULL);
    jw_string(&w, "fingerprint", fp);
    jw_string(&w, "query", r->query);
    jw_string(&w, "backend", r->backend);
    jw_string(&w, "database", r->database);
    jw_string(&w, "status", qp_diff_status_name(p->status));
    side_json(&w, "base", p->base);
    side_json(&w, "new", p->cur);
    pct_json(&w, "calls_change_pct", p->calls_pct);
    pct_json(&w, "mean_change_pct", p->mean_pct);
    pct_json(&w, "p95_change_pct", p->p95_pct);
    jw_bool(&w, "regression", p->regression);
    jw_object_end(&w);
  }
  jw_array_end(&w);
  jw_object_end(&w);
}

static void fmt_pct(double v, char *buf, size_t len) {
  if (isnan(v)) snprintf(buf, len, "n/a");
  else if (v == 0) snprintf(buf, len, "0%%");
  else snprintf(buf, len, "%+.1f%%", v);
}

static void print_text(const qp_report *a, const qp_report *b, const qp_diff *d, uint64_t limit,
                       bool wide) {
  const qp_report_totals *ta = qp_report_totals_get(a), *tb = qp_report_totals_get(b);
  const qp_diff_counts *n = qp_diff_counts_get(d);
  char c1[32], c2[32], d1[32], d2[32];
  printf("Base: %s (%zu queries, %s calls, %s)\n", ta->store, ta->queries,
         rq_count(ta->calls, c1, sizeof c1), rq_dur((double)ta->total_ns, d1, sizeof d1));
  printf("New:  %s (%zu queries, %s calls, %s)\n", tb->store, tb->queries,
         rq_count(tb->calls, c2, sizeof c2), rq_dur((double)tb->total_ns, d2, sizeof d2));
  if (n->changed == 0 && n->added == 0 && n->vanished == 0) {
    printf("No change: %zu quer%s with identical statistics.\n", n->unchanged,
           n->unchanged == 1 ? "y" : "ies");
    return;
  }
  printf("%zu changed, %zu new, %zu vanished, %zu unchanged.\n\n", n->changed, n->added,
         n->vanished, n->unchanged);
  int term = cli_term_width();
  if (term <= 0) term = 120;
  size_t qw = wide ? 0 : (term > 110 ? (size_t)term - 96 : 14);
  printf("%-16s  %-8s  %21s  %23s  %23s  %s\n", "fingerprint", "status", "calls", "mean", "p95",
         "query");
  char *qbuf = malloc(65536);
  size_t shown = 0;
  for (size_t k = 0; k < qp_diff_count(d) && qbuf != NULL; k++) {
    const qp_diff_entry *p = qp_diff_entry_at(d, k);
    if (p->status == QP_DIFF_UNCHANGED) continue;
    if (limit != 0 && shown++ >= limit) break;
    const qp_query_summary *r = p->cur ? p->cur : p->base;
    char calls[64], mean[64], p95[64], x1[32], x2[32], pc[32], fp[QP_FINGERPRINT_HEX_SIZE];
    qp_fingerprint_hex(r->fingerprint, fp);
    snprintf(calls, sizeof calls, "%s -> %s", p->base ? rq_count(p->base->calls, x1, 32) : "-",
             p->cur ? rq_count(p->cur->calls, x2, 32) : "-");
    fmt_pct(p->mean_pct, pc, sizeof pc);
    snprintf(mean, sizeof mean, "%s -> %s %s", p->base ? rq_dur(p->base->mean_ns, x1, 32) : "-",
             p->cur ? rq_dur(p->cur->mean_ns, x2, 32) : "-", p->base && p->cur ? pc : "");
    fmt_pct(p->p95_pct, pc, sizeof pc);
    snprintf(p95, sizeof p95, "%s -> %s %s", p->base ? rq_dur(p->base->p95_ns, x1, 32) : "-",
             p->cur ? rq_dur(p->cur->p95_ns, x2, 32) : "-", p->base && p->cur ? pc : "");
    printf("%-16s  %-8s  %21s  %23s  %23s  %s%s\n", fp,
           p->regression ? "SLOWER" : qp_diff_status_name(p->status), calls, mean, p95,
           rq_shorten(r->query, qw, qbuf, 65536), "");
  }
  free(qbuf);
}

int cmd_diff(int argc, char **argv) {
  static const struct option longopts[] = {
      {"fail-above", required_argument, NULL, 'F'}, {"min-calls", required_argument, NULL, 'c'},
      {"format", required_argument, NULL, 'f'},     {"since", required_argument, NULL, 'S'},
      {"until", required_argument, NULL, 'U'},      {"base-since", required_argument, NULL, 1},
      {"base-until", required_argument, NULL, 2},   {"new-since", required_argument, NULL, 3},
      {"new-until", required_argument, NULL, 4},    {"match", required_argument, NULL, 'm'},
      {"exclude", required_argument, NULL, 'x'},    {"limit", required_argument, NULL, 'n'},
      {"wide", no_argument, NULL, 'w'},             {"help", no_argument, NULL, 'h'},
      {"case-sensitive", no_argument, NULL, 'C'},
      {NULL, 0, NULL, 0}};
  const char *format = "text", *match = NULL, *exclude = NULL;
  double fail_above = NAN;
  uint64_t min_calls = 1, limit = 20;
  bool wide = false, windowed = false, case_sensitive = false;
  int64_t since = INT64_MIN, until = INT64_MAX;
  int64_t w[4];           /* base since, base until, new since, new until */
  bool wset[4] = {false}; /* given explicitly */
  int c;
  char *end;
  while ((c = getopt_long(argc, argv, "F:c:f:S:U:m:x:n:wCh", longopts, NULL)) != -1) {
    switch (c) {
    case 'F':
      fail_above = strtod(optarg, &end);
      if (end == optarg || *end != '\0' || !(fail_above >= 0))
        return cli_usage_error("diff", "--fail-above needs a percentage >= 0, not '%s'", optarg);
      break;
    case 'c':
      min_calls = strtoull(optarg, &end, 10);
      if (end == optarg || *end != '\0' || optarg[0] == '-')
        return cli_usage_error("diff", "--min-calls needs a number >= 0, not '%s'", optarg);
      break;
    case 'n':
      limit = strtoull(optarg, &end, 10);
      if (end == optarg || *end != '\0' || optarg[0] == '-')
        return cli_usage_error("diff", "--limit needs a number >= 0, not '%s'", optarg);
      break;
    case 'f': format = optarg; break;
    case 'S':
      if (!rq_parse_time("diff", "--since", optarg, &since)) return QP_EXIT_USAGE;
      windowed = true;
      break;
    case 'U':
      if (!rq_parse_time("diff", "--until", optarg, &until)) return QP_EXIT_USAGE;
      windowed = true;
      break;
    case 1: case 2: case 3: case 4: {
      static const char *const names[] = {"--base-since", "--base-until", "--new-since",
                                          "--new-until"};
      if (!rq_parse_time("diff", names[c - 1], optarg, &w[c - 1])) return QP_EXIT_USAGE;
      wset[c - 1] = true;
      windowed = true;
      break;
    }
    case 'm': match = optarg; break;
    case 'x': exclude = optarg; break;
    case 'w': wide = true; break;
    case 'C': case_sensitive = true; break;
    case 'h': usage(stdout); return QP_EXIT_OK;
    default: return cli_usage_error("diff", "unknown option");
    }
  }
  int npos = argc - optind;
  if (npos < 1 || npos > 2) return cli_usage_error("diff", "needs BASE and NEW stores");
  if (npos == 1 && !windowed)
    return cli_usage_error("diff", "one store given: add NEW, or --base-*/--new-* windows");
  bool json = strcmp(format, "json") == 0;
  if (!json && strcmp(format, "text") != 0)
    return cli_usage_error("diff", "--format must be text or json, not '%s'", format);
  for (int i = 0; i < 4; i++)
    if (!wset[i]) w[i] = i % 2 == 0 ? since : until;
  if (w[0] >= w[1] || w[2] >= w[3]) return cli_usage_error("diff", "a window ends before it starts");
  const char *base_path = argv[optind], *new_path = npos == 2 ? argv[optind + 1] : argv[optind];

  qp_report_options ro[2];
  for (int k = 0; k < 2; k++) {
    qp_report_options_init(&ro[k]);
    ro[k].match = match;
    ro[k].exclude = exclude;
    ro[k].case_sensitive = case_sensitive;
    ro[k].since_ns = w[2 * k];
    ro[k].until_ns = w[2 * k + 1];
  }
  int rc = rq_check("diff", &ro[0]);
  if (rc != QP_EXIT_OK) return rc;
  qp_diff_options dopt;
  qp_diff_options_init(&dopt);
  dopt.fail_above_pct = fail_above;
  dopt.min_calls = min_calls;

  qp_store *sa, *sb;
  qp_report *a, *b;
  if (!rq_open("diff", base_path, &ro[0], &sa, &a)) return QP_EXIT_FAIL;
  if (!rq_open("diff", new_path, &ro[1], &sb, &b)) {
    rq_close(sa, a);
    return QP_EXIT_FAIL;
  }
  qp_diff *d;
  char err[512];
  if (qp_diff_new(&d, a, b, &dopt, err, sizeof err) != QP_OK) {
    rq_close(sa, a);
    rq_close(sb, b);
    return cli_fail("diff", "%s", err);
  }
  if (json) print_json(a, b, d, &dopt);
  else print_text(a, b, d, limit, wide);
  const qp_diff_counts *n = qp_diff_counts_get(d);
  int exit_code = QP_EXIT_OK;
  if (n->regressions > 0) {
    for (size_t k = 0; k < qp_diff_count(d); k++) {
      const qp_diff_entry *p = qp_diff_entry_at(d, k);
      if (!p->regression) continue;
      char x1[32], x2[32], qb[256], fp[QP_FINGERPRINT_HEX_SIZE];
      qp_fingerprint_hex(p->cur->fingerprint, fp);
      fprintf(stderr, "qprof diff: %s got slower at p95 by %.1f%% (%s -> %s, above %g%%): %s\n", fp,
              p->p95_pct, rq_dur(p->base->p95_ns, x1, 32), rq_dur(p->cur->p95_ns, x2, 32),
              fail_above, rq_shorten(p->cur->query, 60, qb, sizeof qb));
    }
    exit_code = QP_EXIT_GATE;
  }
  qp_diff_free(d);
  rq_close(sa, a);
  rq_close(sb, b);
  if (fflush(stdout) != 0 || ferror(stdout)) return cli_fail("diff", "cannot write the diff");
  return exit_code;
}
