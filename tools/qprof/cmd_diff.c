/* qprof diff: compares two profiles (two stores, or two windows of one) per
 * query, and gates CI on p95 regressions. */
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
          "  --match/--exclude PCRE2 filters on the normalized text\n"
          "  --limit N         rows per table in text (default 20; 0 = all)\n"
          "  --wide            full query text\n");
}

typedef enum status { ST_SAME, ST_CHANGED, ST_NEW, ST_GONE } status;
static const char *const status_names[] = {"unchanged", "changed", "new", "vanished"};

typedef struct pair {
  const rq *base, *cur; /* either may be NULL */
  status st;
  double calls_pct, mean_pct, p95_pct; /* NAN when not defined */
  bool regression;
} pair;

static double pct(double a, double b) {
  if (a == 0) return b == 0 ? 0 : NAN;
  return (b - a) / a * 100.0;
}

static int key_cmp(const rq *a, const rq *b) {
  if (a->s.fingerprint != b->s.fingerprint) return a->s.fingerprint < b->s.fingerprint ? -1 : 1;
  int c = strcmp(a->s.backend, b->s.backend);
  return c != 0 ? c : strcmp(a->s.database, b->s.database);
}

static int cmp_key(const void *a, const void *b) { return key_cmp(a, b); }

static double sort_val(const pair *p) {
  if (p->st == ST_NEW) return 1e300;
  if (p->st == ST_GONE) return -1e300;
  return isnan(p->p95_pct) ? 0 : p->p95_pct;
}

static int cmp_pair(const void *a, const void *b) {
  const pair *x = a, *y = b;
  double vx = sort_val(x), vy = sort_val(y);
  if (vx != vy) return vx > vy ? -1 : 1;
  const rq *rx = x->cur ? x->cur : x->base, *ry = y->cur ? y->cur : y->base;
  return key_cmp(rx, ry);
}

static json_t *side_json(const rq *r) {
  if (r == NULL) return json_null();
  json_t *o = json_object();
  json_object_set_new(o, "calls", json_integer((json_int_t)r->s.calls));
  json_object_set_new(o, "errors", json_integer((json_int_t)r->s.errors));
  json_object_set_new(o, "total_ms", json_real(rq_ms((double)r->s.total_ns)));
  json_object_set_new(o, "mean_ms", json_real(rq_ms(r->s.mean_ns)));
  json_object_set_new(o, "p95_ms", json_real(rq_ms(r->s.p95_ns)));
  json_object_set_new(o, "p99_ms", json_real(rq_ms(r->s.p99_ns)));
  return o;
}

static json_t *pct_json(double v) { return isnan(v) ? json_null() : json_real(round(v * 100) / 100); }

static json_t *window_json(int64_t since, int64_t until) {
  char a[40];
  json_t *w = json_object();
  json_object_set_new(w, "since", since == INT64_MIN ? json_null() : json_string(rq_iso(since, a, sizeof a)));
  json_object_set_new(w, "until", until == INT64_MAX ? json_null() : json_string(rq_iso(until, a, sizeof a)));
  return w;
}

static void fmt_pct(double v, char *buf, size_t len) {
  if (isnan(v)) snprintf(buf, len, "n/a");
  else if (v == 0) snprintf(buf, len, "0%%");
  else snprintf(buf, len, "%+.1f%%", v);
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
      {NULL, 0, NULL, 0}};
  const char *format = "text", *match = NULL, *exclude = NULL;
  double fail_above = NAN;
  uint64_t min_calls = 1, limit = 20;
  bool wide = false, windowed = false;
  int64_t since = INT64_MIN, until = INT64_MAX;
  int64_t w[4];           /* base since, base until, new since, new until */
  bool wset[4] = {false}; /* given explicitly */
  int c;
  char *end;
  while ((c = getopt_long(argc, argv, "F:c:f:S:U:m:x:n:wh", longopts, NULL)) != -1) {
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

  rq_filter filt;
  int rc = rq_filter_init("diff", &filt, match, exclude, 0);
  if (rc != QP_EXIT_OK) return rc;
  rq_set a, b;
  if (!rq_load("diff", base_path, w[0], w[1], &a)) {
    rq_filter_free(&filt);
    return QP_EXIT_FAIL;
  }
  if (!rq_load("diff", new_path, w[2], w[3], &b)) {
    rq_set_free(&a);
    rq_filter_free(&filt);
    return QP_EXIT_FAIL;
  }
  rq_set_filter(&a, &filt);
  rq_set_filter(&b, &filt);
  rq_filter_free(&filt);
  if (a.n > 1) qsort(a.v, a.n, sizeof *a.v, cmp_key);
  if (b.n > 1) qsort(b.v, b.n, sizeof *b.v, cmp_key);

  /* Merge-join the two sorted sets. */
  pair *pairs = calloc(a.n + b.n + 1, sizeof *pairs);
  if (pairs == NULL) return cli_fail("diff", "out of memory");
  size_t np = 0, i = 0, j = 0, nsame = 0, nchanged = 0, nnew = 0, ngone = 0, nreg = 0;
  while (i < a.n || j < b.n) {
    pair *p = &pairs[np++];
    int k = i == a.n ? 1 : j == b.n ? -1 : key_cmp(&a.v[i], &b.v[j]);
    p->base = k <= 0 ? &a.v[i++] : NULL;
    p->cur = k >= 0 ? &b.v[j++] : NULL;
    p->calls_pct = p->mean_pct = p->p95_pct = NAN;
    if (p->base == NULL) {
      p->st = ST_NEW;
      nnew++;
      continue;
    }
    if (p->cur == NULL) {
      p->st = ST_GONE;
      ngone++;
      continue;
    }
    p->calls_pct = pct((double)p->base->s.calls, (double)p->cur->s.calls);
    p->mean_pct = pct(p->base->s.mean_ns, p->cur->s.mean_ns);
    p->p95_pct = pct(p->base->s.p95_ns, p->cur->s.p95_ns);
    bool same = p->base->s.calls == p->cur->s.calls && p->base->s.total_ns == p->cur->s.total_ns &&
                p->base->s.p95_ns == p->cur->s.p95_ns;
    p->st = same ? ST_SAME : ST_CHANGED;
    if (same) nsame++;
    else nchanged++;
    bool enough = p->base->s.calls >= min_calls && p->cur->s.calls >= min_calls;
    if (!isnan(fail_above) && enough && !isnan(p->p95_pct) && p->p95_pct > fail_above) {
      p->regression = true;
      nreg++;
    }
  }
  if (np > 1) qsort(pairs, np, sizeof *pairs, cmp_pair);

  if (json) {
    json_t *root = json_object();
    json_object_set_new(root, "qprof_diff", json_integer(1));
    json_t *bo = json_object(), *no = json_object();
    json_object_set_new(bo, "store", json_string(a.location));
    json_object_set_new(bo, "window", window_json(w[0], w[1]));
    json_object_set_new(bo, "queries", json_integer((json_int_t)a.n));
    json_object_set_new(bo, "calls", json_integer((json_int_t)a.calls));
    json_object_set_new(bo, "total_ms", json_real(rq_ms(a.total_ns)));
    json_object_set_new(no, "store", json_string(b.location));
    json_object_set_new(no, "window", window_json(w[2], w[3]));
    json_object_set_new(no, "queries", json_integer((json_int_t)b.n));
    json_object_set_new(no, "calls", json_integer((json_int_t)b.calls));
    json_object_set_new(no, "total_ms", json_real(rq_ms(b.total_ns)));
    json_object_set_new(root, "base", bo);
    json_object_set_new(root, "new", no);
    json_object_set_new(root, "fail_above_pct", isnan(fail_above) ? json_null() : json_real(fail_above));
    json_object_set_new(root, "min_calls", json_integer((json_int_t)min_calls));
    json_t *counts = json_object();
    json_object_set_new(counts, "unchanged", json_integer((json_int_t)nsame));
    json_object_set_new(counts, "changed", json_integer((json_int_t)nchanged));
    json_object_set_new(counts, "new", json_integer((json_int_t)nnew));
    json_object_set_new(counts, "vanished", json_integer((json_int_t)ngone));
    json_object_set_new(counts, "regressions", json_integer((json_int_t)nreg));
    json_object_set_new(root, "counts", counts);
    json_t *arr = json_array();
    for (size_t k = 0; k < np; k++) {
      const pair *p = &pairs[k];
      const rq *r = p->cur ? p->cur : p->base;
      json_t *o = json_object();
      json_object_set_new(o, "fingerprint", json_string(r->fp));
      json_object_set_new(o, "query", json_string(r->s.query));
      json_object_set_new(o, "backend", json_string(r->s.backend));
      json_object_set_new(o, "database", json_string(r->s.database));
      json_object_set_new(o, "status", json_string(status_names[p->st]));
      json_object_set_new(o, "base", side_json(p->base));
      json_object_set_new(o, "new", side_json(p->cur));
      json_object_set_new(o, "calls_change_pct", pct_json(p->calls_pct));
      json_object_set_new(o, "mean_change_pct", pct_json(p->mean_pct));
      json_object_set_new(o, "p95_change_pct", pct_json(p->p95_pct));
      json_object_set_new(o, "regression", json_boolean(p->regression));
      json_array_append_new(arr, o);
    }
    json_object_set_new(root, "queries", arr);
    rq_json_print(root);
  } else {
    char c1[32], c2[32], d1[32], d2[32];
    printf("Base: %s (%zu queries, %s calls, %s)\n", a.location, a.n, rq_count(a.calls, c1, sizeof c1),
           rq_dur(a.total_ns, d1, sizeof d1));
    printf("New:  %s (%zu queries, %s calls, %s)\n", b.location, b.n, rq_count(b.calls, c2, sizeof c2),
           rq_dur(b.total_ns, d2, sizeof d2));
    if (nchanged == 0 && nnew == 0 && ngone == 0) {
      printf("No change: %zu quer%s with identical statistics.\n", nsame, nsame == 1 ? "y" : "ies");
    } else {
      printf("%zu changed, %zu new, %zu vanished, %zu unchanged.\n\n", nchanged, nnew, ngone, nsame);
      int term = cli_term_width();
      if (term <= 0) term = 120;
      size_t qw = wide ? 0 : (term > 110 ? (size_t)term - 96 : 14);
      printf("%-16s  %-8s  %21s  %23s  %23s  %s\n", "fingerprint", "status", "calls", "mean",
             "p95", "query");
      char *qbuf = malloc(65536);
      size_t shown = 0;
      for (size_t k = 0; k < np && qbuf != NULL; k++) {
        const pair *p = &pairs[k];
        if (p->st == ST_SAME) continue;
        if (limit != 0 && shown++ >= limit) break;
        const rq *r = p->cur ? p->cur : p->base;
        char calls[64], mean[64], p95[64], x1[32], x2[32], pc[32];
        snprintf(calls, sizeof calls, "%s -> %s", p->base ? rq_count(p->base->s.calls, x1, 32) : "-",
                 p->cur ? rq_count(p->cur->s.calls, x2, 32) : "-");
        fmt_pct(p->mean_pct, pc, sizeof pc);
        snprintf(mean, sizeof mean, "%s -> %s %s", p->base ? rq_dur(p->base->s.mean_ns, x1, 32) : "-",
                 p->cur ? rq_dur(p->cur->s.mean_ns, x2, 32) : "-", p->base && p->cur ? pc : "");
        fmt_pct(p->p95_pct, pc, sizeof pc);
        snprintf(p95, sizeof p95, "%s -> %s %s", p->base ? rq_dur(p->base->s.p95_ns, x1, 32) : "-",
                 p->cur ? rq_dur(p->cur->s.p95_ns, x2, 32) : "-", p->base && p->cur ? pc : "");
        printf("%-16s  %-8s  %21s  %23s  %23s  %s%s\n", r->fp,
               p->regression ? "SLOWER" : status_names[p->st], calls, mean, p95,
               rq_shorten(r->s.query, qw, qbuf, 65536), "");
      }
      free(qbuf);
    }
  }
  int exit_code = QP_EXIT_OK;
  if (nreg > 0) {
    for (size_t k = 0; k < np; k++) {
      const pair *p = &pairs[k];
      if (!p->regression) continue;
      char x1[32], x2[32], qb[128];
      fprintf(stderr, "qprof diff: %s got slower at p95 by %.1f%% (%s -> %s, above %g%%): %s\n",
              p->cur->fp, p->p95_pct, rq_dur(p->base->s.p95_ns, x1, 32),
              rq_dur(p->cur->s.p95_ns, x2, 32), fail_above, rq_shorten(p->cur->s.query, 60, qb, sizeof qb));
    }
    exit_code = QP_EXIT_GATE;
  }
  free(pairs);
  rq_set_free(&a);
  rq_set_free(&b);
  if (fflush(stdout) != 0 || ferror(stdout)) return cli_fail("diff", "cannot write the diff");
  return exit_code;
}
