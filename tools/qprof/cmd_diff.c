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
          "                 [--limit N] [--wide] [--output FILE] [--by DIMS]\n"
          "                 [--user F] [--application F] [--host F] [--database F]\n"
          "                 [--against-user F] [--against-application F]\n"
          "                 [--against-host F] [--against-database F]\n\n"
          "Compares two profiles per query (fingerprint, backend, database): the change in\n"
          "calls, mean and p95, and the queries that are new or vanished. BASE and NEW are\n"
          "store files; give one store and --base-*/--new-* windows to compare two periods\n"
          "of it, or --against-* to compare two hosts, applications, users or databases\n"
          "of it (qprof diff S --host web-1 --against-host web-2).\n\n"
          "  --fail-above PCT  exit 3 when a query with at least --min-calls calls on both\n"
          "                    sides got slower at p95 by more than PCT percent (a CI gate;\n"
          "                    p95 is within 2%% on each side, so keep PCT above 5)\n"
          "  --min-calls N     ignore queries with fewer calls on either side (default 1)\n"
          "  --format F        text (default) or json (docs/report-json.md)\n"
          "  --since/--until   window for both sides; --base-*/--new-* override per side\n"
          "  --match/--exclude PCRE2 filters on the normalized text (case-insensitive\n"
          "                    unless --case-sensitive)\n"
          "  --by DIMS         rows per query and these dimensions (as qprof report --by;\n"
          "                    default database; none: per query only)\n"
          "  --user/--application/--host/--database F\n"
          "                    only what matches F on both sides (exact, /REGEX/ or\n"
          "                    /REGEX/i, as qprof report)\n"
          "  --against-host F  the NEW side takes host F instead of --host's (which the\n"
          "                    BASE side keeps); likewise --against-user,\n"
          "                    --against-application and --against-database\n"
          "  --limit N         rows per table in text (default 20; 0 = all)\n"
          "  --wide            full query text\n"
          "  --output FILE     write to FILE atomically instead of stdout (docs/cli.md)\n");
}

static void side_json(jw *w, const char *key, const qp_query_summary *s) {
  if (s == NULL) {
    jw_null(w, key);
    return;
  }
  jw_object(w, key);
  jw_uint(w, "calls", s->calls);
  jw_uint(w, "errors", s->errors);
  jw_ms(w, "total_ms", s->total_ns);
  jw_number(w, "mean_ms", rq_ms_full(s->mean_ns));
  jw_ms(w, "p95_ms", rq_ns(s->p95_ns));
  jw_ms(w, "p99_ms", rq_ns(s->p99_ns));
  jw_uint(w, "total_ns", s->total_ns);
  jw_object_end(w);
}

static void pct_json(jw *w, const char *key, double v) {
  if (isnan(v)) jw_null(w, key);
  else jw_number(w, key, v);
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
  if (!rq_plain_key(t)) {
    jw_object(w, "filters");
    for (int d = 0; d < 4; d++)
      jw_string(w, qp_report_group_by_name((qp_report_group_by)d),
                rq_dim_filter(t, (qp_report_group_by)d));
    jw_object_end(w);
  }
  jw_uint(w, "queries", t->queries);
  jw_uint(w, "calls", t->calls);
  jw_ms(w, "total_ms", t->total_ns);
  jw_uint(w, "total_ns", t->total_ns);
  jw_object_end(w);
}

static void print_json(FILE *out, const qp_report *a, const qp_report *b, const qp_diff *d,
                       const qp_diff_options *o) {
  const qp_diff_counts *n = qp_diff_counts_get(d);
  jw w;
  jw_init(&w, out);
  jw_object(&w, NULL);
  jw_int(&w, "qprof_diff", 1);
  unsigned by = qp_report_totals_get(a)->by;
  if (by != QP_REPORT_KEY_DEFAULT) {
    jw_array(&w, "by");
    for (int k = 0; k < 4; k++)
      if (by & QP_REPORT_KEY(k)) jw_string(&w, NULL, qp_report_group_by_name((qp_report_group_by)k));
    jw_array_end(&w);
  }
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
    /* the dimensions of the key: the database by default */
    for (int x = 0; x < 4; x++) {
      const char *v = rq_dim(r, (qp_report_group_by)x);
      if (v != NULL) jw_string(&w, qp_report_group_by_name((qp_report_group_by)x), v);
    }
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

enum { D_FP, D_STATUS, D_CALLS, D_MEAN, D_P95, D_NCOLS };
#define CELL 80

/* One side's line of the header: the store, its window when not all time,
 * what it adds up to. */
static void print_side(FILE *out, const char *label, const qp_report_totals *t) {
  char w[128], c[32], d[32];
  rq_window_text(t, w, sizeof w);
  bool all = t->since_ns == INT64_MIN && t->until_ns == INT64_MAX;
  char f[2048], fs[4096];
  rq_filters_text(t, f, sizeof f);
  rq_shorten(f, 0, fs, sizeof fs);
  fprintf(out, "%s %s%s%s%s%s (%zu queries, %s calls, %s)\n", label, t->store, all ? "" : ", ",
          all ? "" : w, f[0] ? ", " : "", fs, t->queries, rq_count(t->calls, c, sizeof c),
          rq_dur((double)t->total_ns, d, sizeof d));
}

static void change_cell(char *out, double base, double cur, bool have_base, bool have_cur,
                        double pct_v) {
  char x1[32], x2[32], pc[32];
  fmt_pct(pct_v, pc, sizeof pc);
  snprintf(out, CELL, "%s -> %s%s%s", have_base ? rq_dur(base, x1, 32) : "-",
           have_cur ? rq_dur(cur, x2, 32) : "-", have_base && have_cur ? " " : "",
           have_base && have_cur ? pc : "");
}

/* The changed, new and vanished queries as a table that fits the terminal
 * as the report's does: column widths from the rows shown, optional columns
 * (fingerprint, mean, calls) dropped in that order until the query keeps
 * 24 columns; --wide keeps them all and the whole text. */
static void print_text(FILE *out, const qp_report *a, const qp_report *b, const qp_diff *d, uint64_t limit,
                       bool wide) {
  const qp_diff_counts *n = qp_diff_counts_get(d);
  print_side(out, "Base:", qp_report_totals_get(a));
  print_side(out, "New: ", qp_report_totals_get(b));
  unsigned by = qp_report_totals_get(a)->by;
  if (by != QP_REPORT_KEY_DEFAULT) {
    char bt[128];
    fprintf(out, "Rows: %s\n", rq_rows_text(by, bt, sizeof bt));
  }
  if (n->changed == 0 && n->added == 0 && n->vanished == 0) {
    fprintf(out, "No change: %zu quer%s with identical statistics.\n", n->unchanged,
           n->unchanged == 1 ? "y" : "ies");
    return;
  }
  fprintf(out, "%zu changed, %zu new, %zu vanished, %zu unchanged.\n\n", n->changed, n->added,
         n->vanished, n->unchanged);
  static const char *const titles[D_NCOLS] = {"fingerprint", "status", "calls", "mean", "p95"};
  size_t rows = 0, cap = qp_diff_count(d);
  char(*cell)[D_NCOLS][CELL] = calloc(cap + 1, sizeof *cell);
  const qp_diff_entry **ent = calloc(cap + 1, sizeof *ent);
  size_t qlen = 65536;
  char *qbuf = malloc(qlen);
  if (cell == NULL || ent == NULL || qbuf == NULL) goto done;
  int width[D_NCOLS];
  for (int c = 0; c < D_NCOLS; c++) width[c] = (int)strlen(titles[c]);
  for (size_t k = 0; k < qp_diff_count(d); k++) {
    const qp_diff_entry *p = qp_diff_entry_at(d, k);
    if (p->status == QP_DIFF_UNCHANGED) continue;
    if (limit != 0 && rows >= limit) break;
    const qp_query_summary *r = p->cur ? p->cur : p->base;
    char x1[32], x2[32];
    qp_fingerprint_hex(r->fingerprint, cell[rows][D_FP]);
    snprintf(cell[rows][D_STATUS], CELL, "%s",
             p->regression ? "SLOWER" : qp_diff_status_name(p->status));
    snprintf(cell[rows][D_CALLS], CELL, "%s -> %s", p->base ? rq_count(p->base->calls, x1, 32) : "-",
             p->cur ? rq_count(p->cur->calls, x2, 32) : "-");
    change_cell(cell[rows][D_MEAN], p->base ? p->base->mean_ns : 0, p->cur ? p->cur->mean_ns : 0,
                p->base != NULL, p->cur != NULL, p->mean_pct);
    change_cell(cell[rows][D_P95], p->base ? p->base->p95_ns : 0, p->cur ? p->cur->p95_ns : 0,
                p->base != NULL, p->cur != NULL, p->p95_pct);
    for (int c = 0; c < D_NCOLS; c++)
      if ((int)strlen(cell[rows][c]) > width[c]) width[c] = (int)strlen(cell[rows][c]);
    ent[rows++] = p;
  }
  int term = cli_width_for(out);
  if (term <= 0) term = 120;
  bool on[D_NCOLS];
  int used = 0;
  for (int c = 0; c < D_NCOLS; c++) {
    on[c] = true;
    used += width[c] + 2;
  }
  static const int drop_order[] = {D_FP, D_MEAN, D_CALLS};
  for (size_t k = 0; !wide && k < sizeof drop_order / sizeof drop_order[0] && term - used < 24; k++) {
    on[drop_order[k]] = false;
    used -= width[drop_order[k]] + 2;
  }
  size_t qw = wide ? 0 : (term - used > 10 ? (size_t)(term - used) : 10);
  for (int c = 0; c < D_NCOLS; c++)
    if (on[c]) fprintf(out, c <= D_STATUS ? "%-*s  " : "%*s  ", width[c], titles[c]);
  fprintf(out, "query\n");
  for (size_t k = 0; k < rows; k++) {
    for (int c = 0; c < D_NCOLS; c++)
      if (on[c]) fprintf(out, c <= D_STATUS ? "%-*s  " : "%*s  ", width[c], cell[k][c]);
    const qp_query_summary *r = ent[k]->cur ? ent[k]->cur : ent[k]->base;
    /* the key's user, application and host (--by), so that two rows of one query differ */
    char pre[256];
    size_t pl = 0;
    pre[0] = '\0';
    for (int x = QP_REPORT_BY_USER; x <= QP_REPORT_BY_HOST; x++) {
      const char *v = rq_dim(r, (qp_report_group_by)x);
      char sv[80];
      if (v == NULL) continue;
      int m = snprintf(pre + pl, sizeof pre - pl, "%s%s=%s", pl ? " " : "[",
                       qp_report_group_by_name((qp_report_group_by)x),
                       rq_shorten(v, 24, sv, sizeof sv));
      if (m > 0 && (size_t)m < sizeof pre - pl) pl += (size_t)m;
    }
    if (pl > 0 && pl + 2 < sizeof pre) {
      pre[pl++] = ']';
      pre[pl++] = ' ';
      pre[pl] = '\0';
    }
    fprintf(out, "%s%s\n", pre, rq_shorten(r->query, qw > pl + 10 ? qw - pl : (qw ? 10 : 0), qbuf, qlen));
  }
done:
  free(cell);
  free(ent);
  free(qbuf);
}

/* What the command line asks for. */
typedef struct diff_args {
  const char *format, *match, *exclude, *base_path, *new_path, *output;
  const char *dims[4], *against[4]; /* dimension filters: both sides; the NEW side's instead */
  unsigned by;
  double fail_above;
  uint64_t min_calls, limit;
  bool wide, case_sensitive, json;
  int64_t w[4]; /* base since, base until, new since, new until */
} diff_args;

/* Step 1: the options and the stores. Returns QP_EXIT_OK, or the exit code
 * (usage error, or --help printed). */
static int parse_args(int argc, char **argv, diff_args *a) {
  static const struct option longopts[] = {
      {"fail-above", required_argument, NULL, 'F'}, {"min-calls", required_argument, NULL, 'c'},
      {"format", required_argument, NULL, 'f'},     {"since", required_argument, NULL, 'S'},
      {"until", required_argument, NULL, 'U'},      {"base-since", required_argument, NULL, 1},
      {"base-until", required_argument, NULL, 2},   {"new-since", required_argument, NULL, 3},
      {"new-until", required_argument, NULL, 4},    {"match", required_argument, NULL, 'm'},
      {"exclude", required_argument, NULL, 'x'},    {"limit", required_argument, NULL, 'n'},
      {"wide", no_argument, NULL, 'w'},             {"help", no_argument, NULL, 'h'},
      {"case-sensitive", no_argument, NULL, 'C'},   {"output", required_argument, NULL, 'O'},
      {"by", required_argument, NULL, 'b'},
      {"database", required_argument, NULL, 10},     {"user", required_argument, NULL, 11},
      {"application", required_argument, NULL, 12},  {"host", required_argument, NULL, 13},
      {"against-database", required_argument, NULL, 20},
      {"against-user", required_argument, NULL, 21},
      {"against-application", required_argument, NULL, 22},
      {"against-host", required_argument, NULL, 23},
      {NULL, 0, NULL, 0}};
  *a = (diff_args){.format = "text", .fail_above = NAN, .min_calls = 1, .limit = 20,
                   .by = QP_REPORT_KEY_DEFAULT};
  bool windowed = false;
  int64_t since = INT64_MIN, until = INT64_MAX;
  bool wset[4] = {false}; /* given explicitly */
  int c;
  char *end;
  while ((c = getopt_long(argc, argv, "F:c:f:S:U:m:x:n:wCO:hb:", longopts, NULL)) != -1) {
    switch (c) {
    case 'F':
      a->fail_above = strtod(optarg, &end);
      if (end == optarg || *end != '\0' || !(a->fail_above >= 0))
        return cli_usage_error("diff", "--fail-above needs a percentage >= 0, not '%s'", optarg);
      break;
    case 'c':
      a->min_calls = strtoull(optarg, &end, 10);
      if (end == optarg || *end != '\0' || optarg[0] == '-')
        return cli_usage_error("diff", "--min-calls needs a number >= 0, not '%s'", optarg);
      break;
    case 'n':
      a->limit = strtoull(optarg, &end, 10);
      if (end == optarg || *end != '\0' || optarg[0] == '-')
        return cli_usage_error("diff", "--limit needs a number >= 0, not '%s'", optarg);
      break;
    case 'f': a->format = optarg; break;
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
      if (!rq_parse_time("diff", names[c - 1], optarg, &a->w[c - 1])) return QP_EXIT_USAGE;
      wset[c - 1] = true;
      windowed = true;
      break;
    }
    case 'm': a->match = optarg; break;
    case 'x': a->exclude = optarg; break;
    case 'w': a->wide = true; break;
    case 'C': a->case_sensitive = true; break;
    case 'O': a->output = optarg; break;
    case 'b':
      if (rq_parse_by("diff", optarg, &a->by) != QP_EXIT_OK) return QP_EXIT_USAGE;
      break;
    case 10: case 11: case 12: case 13: a->dims[c - 10] = optarg; break;
    case 20: case 21: case 22: case 23: a->against[c - 20] = optarg; break;
    case 'h': usage(stdout); return -1;
    default: return cli_usage_error("diff", "unknown option");
    }
  }
  bool against = false;
  for (int k = 0; k < 4; k++) {
    if (a->against[k] == NULL) continue;
    const char *name = qp_report_group_by_name((qp_report_group_by)k);
    if (a->dims[k] == NULL)
      return cli_usage_error("diff", "--against-%s needs --%s: the BASE side's %s", name, name,
                             name);
    if (a->by & QP_REPORT_KEY(k))
      return cli_usage_error("diff",
                             "--against-%s compares two values of %s: it cannot be in --by too "
                             "(the rows of the two sides would never match)",
                             name, name);
    against = true;
  }
  windowed = windowed || against;
  int npos = argc - optind;
  if (npos < 1)
    return cli_usage_error("diff", "needs a BASE store (and a NEW one, --base-*/--new-* windows or "
                                   "--against-*)");
  if (npos > 2)
    return cli_usage_error("diff",
                           "%d stores given ('%s' is one too many): diff compares two, BASE and "
                           "NEW, or two windows of one store",
                           npos, argv[optind + 2]);
  if (npos == 1 && !windowed)
    return cli_usage_error("diff", "one store given: add NEW, --base-*/--new-* windows or "
                                   "--against-host (-user, -application, -database)");
  a->json = strcmp(a->format, "json") == 0;
  if (!a->json && strcmp(a->format, "text") != 0)
    return cli_usage_error("diff", "--format must be text or json, not '%s'", a->format);
  for (int i = 0; i < 4; i++)
    if (!wset[i]) a->w[i] = i % 2 == 0 ? since : until;
  if (a->w[0] >= a->w[1] || a->w[2] >= a->w[3])
    return cli_usage_error("diff", "a window ends before it starts");
  a->base_path = argv[optind];
  a->new_path = npos == 2 ? argv[optind + 1] : argv[optind];
  return QP_EXIT_OK;
}

/* The gate's verdict on stderr: one line per regression. */
static void name_regressions(const qp_diff *d, double fail_above) {
  for (size_t k = 0; k < qp_diff_count(d); k++) {
    const qp_diff_entry *p = qp_diff_entry_at(d, k);
    if (!p->regression) continue;
    char x1[32], x2[32], qb[256], fp[QP_FINGERPRINT_HEX_SIZE];
    qp_fingerprint_hex(p->cur->fingerprint, fp);
    fprintf(stderr, "qprof diff: %s got slower at p95 by %.1f%% (%s -> %s, above %g%%): %s\n", fp,
            p->p95_pct, rq_dur(p->base->p95_ns, x1, 32), rq_dur(p->cur->p95_ns, x2, 32),
            fail_above, rq_shorten(p->cur->query, 60, qb, sizeof qb));
  }
}

int cmd_diff(int argc, char **argv) {
  diff_args a;
  int rc = parse_args(argc, argv, &a);
  if (rc < 0) return QP_EXIT_OK; /* --help */
  if (rc != QP_EXIT_OK) return rc;
  /* Step 2: one report per side, with the same filters. */
  qp_report_options ro[2];
  for (int k = 0; k < 2; k++) {
    qp_report_options_init(&ro[k]);
    ro[k].match = a.match;
    ro[k].exclude = a.exclude;
    ro[k].case_sensitive = a.case_sensitive;
    ro[k].since_ns = a.w[2 * k];
    ro[k].until_ns = a.w[2 * k + 1];
    ro[k].by = a.by;
    const char *const *f = a.dims;
    const char *dv[4];
    for (int x = 0; x < 4; x++) dv[x] = k == 1 && a.against[x] != NULL ? a.against[x] : f[x];
    ro[k].database = dv[0];
    ro[k].user = dv[1];
    ro[k].application = dv[2];
    ro[k].host = dv[3];
  }
  for (int k = 0; k < 2; k++) {
    rc = rq_check("diff", &ro[k]);
    if (rc != QP_EXIT_OK) return rc;
  }
  qp_diff_options dopt;
  qp_diff_options_init(&dopt);
  dopt.fail_above_pct = a.fail_above;
  dopt.min_calls = a.min_calls;
  qp_store *sa, *sb;
  qp_report *ra, *rb;
  if (!rq_open("diff", a.base_path, &ro[0], &sa, &ra)) return QP_EXIT_FAIL;
  if (!rq_open("diff", a.new_path, &ro[1], &sb, &rb)) {
    rq_close(sa, ra);
    return QP_EXIT_FAIL;
  }
  /* Step 3: the diff and the gate, from the model; then only rendering. */
  qp_diff *d;
  char err[512];
  if (qp_diff_new(&d, ra, rb, &dopt, err, sizeof err) != QP_OK) {
    rq_close(sa, ra);
    rq_close(sb, rb);
    return cli_fail("diff", "%s", err);
  }
  cli_output o;
  if (cli_output_open(&o, "diff", a.output) != QP_EXIT_OK) {
    qp_diff_free(d);
    rq_close(sa, ra);
    rq_close(sb, rb);
    return QP_EXIT_FAIL;
  }
  if (a.json) print_json(o.f, ra, rb, d, &dopt);
  else print_text(o.f, ra, rb, d, a.limit, a.wide);
  int exit_code = QP_EXIT_OK;
  if (qp_diff_counts_get(d)->regressions > 0) {
    name_regressions(d, a.fail_above);
    exit_code = QP_EXIT_GATE;
  }
  qp_diff_free(d);
  rq_close(sa, ra);
  rq_close(sb, rb);
  /* the diff holds no sample */
  int wrc = cli_output_commit(&o, "diff", 0644);
  return wrc != QP_EXIT_OK ? wrc : exit_code;
}
