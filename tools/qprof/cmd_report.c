/* qprof report: the queries of a store window, ranked, as text, JSON, CSV or HTML. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "report_common.h"

static void usage(FILE *f) {
  fprintf(f,
          "Usage: qprof report [--store PATH] [--format text|json|csv|html]\n"
          "                    [--sort total|mean|p95|p99|calls|rows|errors] [--limit N]\n"
          "                    [--since TIME] [--until TIME] [--match REGEX] [--exclude REGEX]\n"
          "                    [--min-calls N] [--case-sensitive] [--wide] [--output FILE]\n"
          "                    [--by DIMS] [--user F] [--application F] [--host F]\n"
          "                    [--database F]\n\n"
          "Ranks the queries recorded in a profile store: per normalized query, calls,\n"
          "errors, rows, total/mean/min/max/stddev and p50/p95/p99 latency (within 2%%).\n\n"
          "  --store PATH      the store (default: $QPROF_STORE, else ./qprof.db)\n"
          "  --format F        text (default), json, csv (docs/report-json.md) or html (one\n"
          "                    self-contained page)\n"
          "  --sort KEY        total (default), mean, p95, p99, calls, rows or errors\n"
          "  --limit N         show the first N (default 20 for text, 100 for html, all\n"
          "                    otherwise; 0 = all)\n"
          "  --since TIME      only time buckets starting at or after TIME\n"
          "  --until TIME      only time buckets starting before TIME\n"
          "                    TIME: 2026-11-22, 2026-11-22T10:00Z, @UNIX, -15m, -2h, -1d, now\n"
          "  --match REGEX     only queries whose normalized text matches (PCRE2;\n"
          "                    case-insensitive unless --case-sensitive)\n"
          "  --exclude REGEX   leave out queries whose normalized text matches\n"
          "  --case-sensitive  --match and --exclude respect case\n"
          "  --min-calls N     only queries called at least N times\n"
          "  --by DIMS         rows per query and these dimensions, the others merged:\n"
          "                    user, application, host, database, comma-separated\n"
          "                    (--by host,application), or none; default: database\n"
          "  --user F, --application F, --host F, --database F\n"
          "                    only what ran as that user / application / on that host /\n"
          "                    database: F is an exact value ('' = not recorded), /REGEX/\n"
          "                    (PCRE2, case-sensitive) or /REGEX/i; =VALUE is exact\n"
          "  --wide            every column (rows, min, p50, max too), the whole query text,\n"
          "                    errors by code, first/last seen and the sample\n"
          "  --output FILE     write to FILE (atomically: a temporary file renamed over it;\n"
          "                    mode 0644, or 0600 when it holds samples) instead of stdout\n");
}

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- text ----------------------------------------------------------------- */

enum {
  C_RANK, C_FP, C_CALLS, C_ROWS, C_TOTAL, C_SHARE, C_MEAN, C_MIN, C_P50, C_P95, C_P99, C_MAX,
  C_ERR, C_HITS, C_HITRATE, C_SAVED, C_NCOLS
};
static const struct {
  const char *title;
  int width;
  bool wide_only; /* shown with --wide only */
} cols[C_NCOLS] = {{"#", 3, false},     {"fingerprint", 16, false}, {"calls", 9, false},
                   {"rows", 9, true},   {"total", 8, false},        {"share", 6, false},
                   {"mean", 7, false},  {"min", 7, true},           {"p50", 7, true},
                   {"p95", 7, false},   {"p99", 7, false},          {"max", 7, true},
                   {"errors", 6, false},  {"hits", 9, false},         {"hit%", 6, false},
                   {"saved", 8, false}};

/* The database as shown in a row: the file name of an SQLite path. */
static const char *db_label(const char *db) {
  const char *slash = strrchr(db, '/');
  return slash != NULL && slash[1] != '\0' ? slash + 1 : db;
}

/* Statements the shim could not record (its segment was full), said
 * whenever there are any: they are in no query of the report. */
static void print_dropped(FILE *out, const qp_report_totals *t, const char *bold,
                          const char *reset) {
  if (t->dropped == 0) return;
  char c[40];
  fprintf(out, "%sDropped:%s %s statements ran but were not recorded: the shim's segment was full "
         "(raise --segment-mb / QPROF_SEGMENT_MB); they are in no query below\n",
         bold, reset, rq_count(t->dropped, c, sizeof c));
}

/* The header: the store, the window asked for (and how its edges were
 * rounded to whole buckets), the time the data covers, the totals. */
static void print_header(FILE *out, const qp_report *r, size_t shown, const char *bold, const char *reset) {
  const qp_report_totals *t = qp_report_totals_get(r);
  size_t n = qp_report_count(r), before_filter = t->queries_in_window;
  char w[128], c1[40], c2[40], c3[40];
  rq_window_text(t, w, sizeof w);
  fprintf(out, "%sStore:%s  %s\n%sWindow:%s %s\n", bold, reset, t->store, bold, reset, w);
  if (!rq_plain_key(t)) {
    char by[128], f[2048], fs[4096];
    fprintf(out, "%sRows:%s   %s\n", bold, reset, rq_rows_text(t->by, by, sizeof by));
    if (rq_filters_text(t, f, sizeof f)[0] != '\0')
      fprintf(out, "%sFilters:%s %s\n", bold, reset, rq_shorten(f, 0, fs, sizeof fs));
  }
  if (t->since_rounded || t->until_rounded) {
    fprintf(out, "        rounded to whole buckets (a bucket counts when it starts in the window):\n");
    if (t->since_rounded)
      fprintf(out, "        --since falls inside the bucket of %s, which is left out\n",
             rq_iso(t->since_bucket_ns, c1, sizeof c1));
    if (t->until_rounded)
      fprintf(out, "        --until falls inside the bucket of %s, which is counted whole\n",
             rq_iso(t->until_bucket_ns, c1, sizeof c1));
  }
  if (n > 0)
    fprintf(out, "%sData:%s   %s .. %s\n", bold, reset, rq_iso(t->first_seen_ns, c1, sizeof c1),
           rq_iso(t->last_seen_ns, c2, sizeof c2));
  fprintf(out, "%sTotals:%s %zu quer%s, %s calls, %s total, %s errors", bold, reset, n,
         n == 1 ? "y" : "ies", rq_count(t->calls, c1, sizeof c1),
         rq_dur((double)t->total_ns, c2, sizeof c2), rq_count(t->errors, c3, sizeof c3));
  if (n != before_filter) fprintf(out, " (%zu of %zu queries pass the filters)", n, before_filter);
  fprintf(out, "\n");
  print_dropped(out, t, bold, reset);
  if (shown < n)
    fprintf(out, "Showing the top %zu by %s (--limit to change).\n", shown, qp_report_sort_name(t->sort));
  fprintf(out, "\n");
}

/* --wide: what does not fit a column, on indented lines under the row. */
static void print_details(FILE *out, const qp_query_summary *s, char *qbuf, size_t qlen) {
  char a[40], b[40];
  if (s->errors > 0) fprintf(out, "       errors by code: %s\n", rq_shorten(s->error_codes, 0, qbuf, qlen));
  fprintf(out, "       seen: %s .. %s\n", rq_iso(s->first_seen_ns, a, sizeof a),
         rq_iso(s->last_seen_ns, b, sizeof b));
  if (s->sample != NULL) fprintf(out, "       sample: %s\n", rq_shorten(s->sample, 0, qbuf, qlen));
}

/* Appends n bytes to a row (cut at cap - 1). */
static void lput(char *line, size_t *k, size_t cap, const char *s, size_t n) {
  if (*k + n >= cap) n = *k + 1 < cap ? cap - 1 - *k : 0;
  memcpy(line + *k, s, n);
  *k += n;
}

/* A cell as "%*s  " (or "%-*s  " when left): padded to width bytes. */
static void lcell(char *line, size_t *k, size_t cap, const char *v, int width, bool left) {
  static const char spaces[] = "                                        ";
  size_t n = strlen(v), pad = (size_t)width > n ? (size_t)width - n : 0;
  if (pad > sizeof spaces - 1) pad = sizeof spaces - 1;
  if (!left) lput(line, k, cap, spaces, pad);
  lput(line, k, cap, v, n);
  if (left) lput(line, k, cap, spaces, pad);
  lput(line, k, cap, "  ", 2);
}

/* "%zu" of v. */
static void udec(uint64_t v, char out[40]) {
  char t[24];
  int i = (int)sizeof t;
  t[--i] = '\0';
  do {
    t[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  memcpy(out, t + i, sizeof t - (size_t)i);
}

/* A ratio as "%.1f%%" of ratio * 100. */
static void pct(double ratio, char out[40]) {
  rq_fixed(ratio * 100, 1, out, 38);
  strcat(out, "%");
}

static void print_text(FILE *out, const qp_report *r, size_t shown, bool wide) {
  size_t n = qp_report_count(r);
  bool color = cli_use_color(out);
  const char *bold = color ? "\033[1m" : "", *warn = color ? "\033[33m" : "",
             *reset = color ? "\033[0m" : "";
  print_header(out, r, shown, bold, reset);

  /* Columns that fit: the query keeps at least 40 columns; optional ones
   * (fingerprint, p99, errors) go first when the terminal is narrow.
   * --wide shows every column and the whole text. */
  int term = cli_width_for(out);
  if (term <= 0) term = 120;
  bool on[C_NCOLS];
  int used = 0;
  /* the cache's columns only when something was answered from a cache */
  bool hits = false;
  for (size_t i = 0; i < n && !hits; i++) hits = qp_report_query(r, i)->cache_hits > 0;
  for (int i = 0; i < C_NCOLS; i++) {
    on[i] = (wide || !cols[i].wide_only) && (hits || i < C_HITS);
    if (on[i]) used += cols[i].width + 2;
  }
  static const int drop_order[] = {C_FP, C_P99, C_ERR};
  for (size_t d = 0; !wide && d < ARRAY_LEN(drop_order) && term - used < 40; d++) {
    on[drop_order[d]] = false;
    used -= cols[drop_order[d]].width + 2;
  }
  /* the key's user, application and host (--by) as columns before the query */
  static const qp_report_group_by dcols[] = {QP_REPORT_BY_USER, QP_REPORT_BY_APPLICATION,
                                             QP_REPORT_BY_HOST};
  int dwidth[3] = {0, 0, 0};
  unsigned by = qp_report_totals_get(r)->by;
  char cell[80];
  for (size_t k = 0; k < 3; k++) {
    if (!(by & QP_REPORT_KEY(dcols[k]))) continue;
    dwidth[k] = (int)strlen(qp_report_group_by_name(dcols[k]));
    for (size_t i = 0; i < shown; i++) {
      rq_shorten(rq_dim(qp_report_query(r, i), dcols[k]), wide ? 0 : 24, cell, sizeof cell);
      size_t ncol = 0;
      for (const unsigned char *p = (const unsigned char *)cell; *p; p++) ncol += (*p & 0xc0) != 0x80;
      if ((int)ncol > dwidth[k]) dwidth[k] = (int)ncol;
    }
    used += dwidth[k] + 2;
  }
  int qwidth = wide ? 0 : (term - used > 10 ? term - used : 10);
  bool several_dbs = false;
  const qp_query_summary *q0 = qp_report_query(r, 0);
  for (size_t i = 1; i < n && !several_dbs; i++) {
    const qp_query_summary *qi = qp_report_query(r, i);
    several_dbs = qi->database != NULL && (strcmp(qi->database, q0->database) != 0 ||
                                           strcmp(qi->backend, q0->backend) != 0);
  }

  fprintf(out, "%s", bold);
  for (int i = 0; i < C_NCOLS; i++)
    if (on[i]) fprintf(out, i == C_FP ? "%-*s  " : "%*s  ", cols[i].width, cols[i].title);
  for (size_t k = 0; k < 3; k++)
    if (dwidth[k] > 0) fprintf(out, "%-*s  ", dwidth[k], qp_report_group_by_name(dcols[k]));
  fprintf(out, "query%s\n", reset);
  size_t qlen = 65536;
  char *qbuf = malloc(qlen);
  /* a row is built in `line` and written with one call (a stdio call per
   * cell was a fifth of writing 100,000 rows) */
  size_t lcap = qlen + 4096;
  char *line = malloc(lcap);
  if (qbuf == NULL || line == NULL) {
    free(qbuf);
    free(line);
    return;
  }
  for (size_t i = 0; i < shown; i++) {
    const qp_query_summary *s = qp_report_query(r, i);
    double share = qp_report_share(r, i);
    char b[C_NCOLS][40];
    udec(i + 1, b[C_RANK]);
    qp_fingerprint_hex(s->fingerprint, b[C_FP]);
    rq_count(s->calls, b[C_CALLS], 40);
    if (s->rows >= 0) rq_count((uint64_t)s->rows, b[C_ROWS], 40);
    else snprintf(b[C_ROWS], 40, "%lld", (long long)s->rows);
    rq_dur((double)s->total_ns, b[C_TOTAL], 40);
    pct(share, b[C_SHARE]);
    rq_dur(s->mean_ns, b[C_MEAN], 40);
    rq_dur((double)s->min_ns, b[C_MIN], 40);
    rq_dur(s->p50_ns, b[C_P50], 40);
    rq_dur(s->p95_ns, b[C_P95], 40);
    rq_dur(s->p99_ns, b[C_P99], 40);
    rq_dur((double)s->max_ns, b[C_MAX], 40);
    rq_count(s->errors, b[C_ERR], 40);
    rq_count(s->cache_hits, b[C_HITS], 40);
    pct(qp_query_cache_hit_rate(s), b[C_HITRATE]);
    rq_dur(qp_query_cache_saved_ns(s), b[C_SAVED], 40);
    bool hot = share >= 0.2;
    size_t k = 0;
    if (hot) lput(line, &k, lcap, warn, strlen(warn));
    for (int c = 0; c < C_NCOLS; c++)
      if (on[c]) lcell(line, &k, lcap, b[c], cols[c].width, c == C_FP);
    for (size_t d = 0; d < 3; d++) {
      if (dwidth[d] == 0) continue;
      const char *v = rq_dim(s, dcols[d]);
      rq_shorten(v[0] != '\0' ? v : "-", wide ? 0 : 24, cell, sizeof cell);
      size_t ncol = 0;
      for (const unsigned char *p = (const unsigned char *)cell; *p; p++) ncol += (*p & 0xc0) != 0x80;
      lput(line, &k, lcap, cell, strlen(cell));
      for (int pad = dwidth[d] - (int)ncol + 2; pad > 0; pad--) lput(line, &k, lcap, " ", 1);
    }
    /* the database when there are several, so that two rows of one query differ */
    char q[256];
    q[0] = '\0';
    if (several_dbs && s->database[0] != '\0') {
      char db[200];
      snprintf(q, sizeof q, "[%s] ", rq_shorten(db_label(s->database), 0, db, sizeof db));
    }
    size_t ql = strlen(q);
    rq_shorten(s->query, qwidth > (int)ql + 10 ? (size_t)qwidth - ql : (qwidth ? 10 : 0), qbuf,
               qlen);
    lput(line, &k, lcap, q, ql);
    lput(line, &k, lcap, qbuf, strlen(qbuf));
    if (hot) lput(line, &k, lcap, reset, strlen(reset));
    lput(line, &k, lcap, "\n", 1);
    fwrite(line, 1, k, out);
    if (wide) print_details(out, s, qbuf, qlen);
  }
  free(line);
  free(qbuf);
}

/* ---- JSON and CSV ------------------------------------------------------------ */

static void entry_json(jw *w, const qp_query_summary *s, double share) {
  char a[40], b[40], fp[QP_FINGERPRINT_HEX_SIZE];
  qp_fingerprint_hex(s->fingerprint, fp);
  jw_object(w, NULL);
  jw_string(w, "fingerprint", fp);
  jw_string(w, "query", s->query);
  jw_string(w, "backend", s->backend);
  /* the dimensions of the key (--by): the database by default */
  if (s->database != NULL) jw_string(w, "database", s->database);
  if (s->user != NULL) jw_string(w, "user", s->user);
  if (s->application != NULL) jw_string(w, "application", s->application);
  if (s->host != NULL) jw_string(w, "host", s->host);
  jw_uint(w, "calls", s->calls);
  jw_uint(w, "errors", s->errors);
  rq_json_codes(w, "errors_by_code", s->error_codes);
  jw_int(w, "rows", s->rows);
  jw_ms(w, "total_ms", s->total_ns);
  jw_number(w, "share", share);
  jw_number(w, "mean_ms", rq_ms_full(s->mean_ns));
  jw_ms(w, "min_ms", s->min_ns);
  jw_ms(w, "max_ms", s->max_ns);
  jw_ms(w, "stddev_ms", rq_ns(s->stddev_ns));
  jw_ms(w, "p50_ms", rq_ns(s->p50_ns));
  jw_ms(w, "p90_ms", rq_ns(s->p90_ns));
  jw_ms(w, "p95_ms", rq_ns(s->p95_ns));
  jw_ms(w, "p99_ms", rq_ns(s->p99_ns));
  jw_ms(w, "p999_ms", rq_ns(s->p999_ns));
  jw_string(w, "first_seen", rq_iso(s->first_seen_ns, a, sizeof a));
  jw_string(w, "last_seen", rq_iso(s->last_seen_ns, b, sizeof b));
  jw_string(w, "sample", s->sample);
  jw_uint(w, "total_ns", s->total_ns);
  jw_uint(w, "min_ns", s->min_ns);
  jw_uint(w, "max_ns", s->max_ns);
  jw_uint(w, "cache_hits", s->cache_hits);
  jw_number(w, "cache_hit_rate", qp_query_cache_hit_rate(s));
  jw_ms(w, "cache_hit_ms", s->cache_hit_ns);
  jw_ms(w, "cache_saved_ms", (uint64_t)qp_query_cache_saved_ns(s));
  jw_object_end(w);
}

static void print_json(FILE *out, const qp_report *r, size_t shown, qp_report_sort sort) {
  const qp_report_totals *t = qp_report_totals_get(r);
  char a[40];
  jw w;
  jw_init(&w, out);
  jw_object(&w, NULL);
  jw_int(&w, "qprof_report", 1);
  jw_string(&w, "store", t->store);
  jw_object(&w, "window");
  jw_string(&w, "since", t->since_ns == INT64_MIN ? NULL : rq_iso(t->since_ns, a, sizeof a));
  jw_string(&w, "until", t->until_ns == INT64_MAX ? NULL : rq_iso(t->until_ns, a, sizeof a));
  jw_string(&w, "since_bucket", t->since_rounded ? rq_iso(t->since_bucket_ns, a, sizeof a) : NULL);
  jw_string(&w, "until_bucket", t->until_rounded ? rq_iso(t->until_bucket_ns, a, sizeof a) : NULL);
  jw_object_end(&w);
  jw_string(&w, "sort", qp_report_sort_name(sort));
  if (!rq_plain_key(t)) {
    /* with --by or a dimension filter: what the rows are per, and the filters */
    jw_array(&w, "by");
    for (int d = 0; d < 4; d++)
      if (t->by & QP_REPORT_KEY(d)) jw_string(&w, NULL, qp_report_group_by_name((qp_report_group_by)d));
    jw_array_end(&w);
    jw_object(&w, "filters");
    for (int d = 0; d < 4; d++)
      jw_string(&w, qp_report_group_by_name((qp_report_group_by)d),
                rq_dim_filter(t, (qp_report_group_by)d));
    jw_object_end(&w);
  }
  jw_object(&w, "totals");
  jw_uint(&w, "queries", t->queries);
  if (!rq_plain_key(t)) jw_uint(&w, "queries_in_window", t->queries_in_window);
  jw_uint(&w, "calls", t->calls);
  jw_uint(&w, "errors", t->errors);
  jw_ms(&w, "total_ms", t->total_ns);
  jw_uint(&w, "total_ns", t->total_ns);
  jw_string(&w, "first_seen", t->queries > 0 ? rq_iso(t->first_seen_ns, a, sizeof a) : NULL);
  jw_string(&w, "last_seen", t->queries > 0 ? rq_iso(t->last_seen_ns, a, sizeof a) : NULL);
  jw_uint(&w, "dropped", t->dropped);
  jw_object_end(&w);
  jw_array(&w, "queries");
  for (size_t i = 0; i < shown; i++) entry_json(&w, qp_report_query(r, i), qp_report_share(r, i));
  jw_array_end(&w);
  jw_object_end(&w);
}

/* After "backend": the dimensions of the key (--by), "database" by default. */
#define CSV_DIMS_AT 3
static const char *const csv_cols[] = {
    "fingerprint", "query",     "backend", "calls",     "errors",     "errors_by_code",
    "rows",        "total_ms",  "share",   "mean_ms",  "min_ms",    "max_ms",     "stddev_ms",
    "p50_ms",      "p90_ms",    "p95_ms",  "p99_ms",   "p999_ms",   "first_seen", "last_seen",
    "sample",      "total_ns",  "min_ns",  "max_ns",   "dropped",    "cache_hits",
    "cache_hit_rate", "cache_hit_ms", "cache_saved_ms"};

/* CSV goes through the JSON writer's buffer (jw_put*): no stdio call per field. */
static void csv_ms(jw *w, uint64_t ns) {
  char b[40];
  jw_putc(w, ',');
  jw_puts(w, rq_ns_ms(ns, false, b, sizeof b));
}

static void csv_num(jw *w, double v) {
  char b[40];
  jw_putc(w, ',');
  jw_puts(w, rq_num_plain(v, b, sizeof b));
}

static void csv_u64(jw *w, uint64_t v) {
  jw_putc(w, ',');
  jw_putu64(w, v);
}

static void csv_text(jw *w, const char *s) {
  jw_putc(w, ',');
  rq_csv_field(w, s);
}

static void print_csv(FILE *out, const qp_report *r, size_t shown) {
  uint64_t dropped = qp_report_totals_get(r)->dropped;
  jw w;
  jw_init(&w, out);
  unsigned by = qp_report_totals_get(r)->by;
  for (size_t i = 0; i < ARRAY_LEN(csv_cols); i++) {
    if (i == CSV_DIMS_AT)
      for (int d = 0; d < 4; d++)
        if (by & QP_REPORT_KEY(d)) {
          jw_putc(&w, ',');
          jw_puts(&w, qp_report_group_by_name((qp_report_group_by)d));
        }
    if (i > 0) jw_putc(&w, ',');
    jw_puts(&w, csv_cols[i]);
  }
  jw_puts(&w, "\r\n");
  for (size_t i = 0; i < shown; i++) {
    const qp_query_summary *s = qp_report_query(r, i);
    char a[40], fp[QP_FINGERPRINT_HEX_SIZE];
    qp_fingerprint_hex(s->fingerprint, fp);
    rq_csv_field(&w, fp);
    csv_text(&w, s->query);
    csv_text(&w, s->backend);
    for (int d = 0; d < 4; d++)
      if (by & QP_REPORT_KEY(d)) csv_text(&w, rq_dim(s, (qp_report_group_by)d));
    csv_u64(&w, s->calls);
    csv_u64(&w, s->errors);
    csv_text(&w, s->error_codes);
    jw_putc(&w, ',');
    if (s->rows < 0) {
      jw_putc(&w, '-');
      jw_putu64(&w, (uint64_t)0 - (uint64_t)s->rows);
    } else {
      jw_putu64(&w, (uint64_t)s->rows);
    }
    csv_ms(&w, s->total_ns);
    csv_num(&w, qp_report_share(r, i));
    csv_num(&w, rq_ms_full(s->mean_ns));
    csv_ms(&w, s->min_ns);
    csv_ms(&w, s->max_ns);
    csv_ms(&w, rq_ns(s->stddev_ns));
    csv_ms(&w, rq_ns(s->p50_ns));
    csv_ms(&w, rq_ns(s->p90_ns));
    csv_ms(&w, rq_ns(s->p95_ns));
    csv_ms(&w, rq_ns(s->p99_ns));
    csv_ms(&w, rq_ns(s->p999_ns));
    csv_text(&w, rq_iso(s->first_seen_ns, a, sizeof a));
    csv_text(&w, rq_iso(s->last_seen_ns, a, sizeof a));
    csv_text(&w, s->sample); /* empty when none */
    csv_u64(&w, s->total_ns);
    csv_u64(&w, s->min_ns);
    csv_u64(&w, s->max_ns);
    csv_u64(&w, dropped); /* of the window, not of this query */
    csv_u64(&w, s->cache_hits);
    csv_num(&w, qp_query_cache_hit_rate(s));
    csv_ms(&w, s->cache_hit_ns);
    csv_ms(&w, (uint64_t)qp_query_cache_saved_ns(s));
    jw_puts(&w, "\r\n");
  }
  jw_flush(&w);
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
      {"case-sensitive", no_argument, NULL, 'C'}, {"output", required_argument, NULL, 'O'},
      {"help", no_argument, NULL, 'h'},          {"by", required_argument, NULL, 'b'},
      {"user", required_argument, NULL, 1},      {"application", required_argument, NULL, 2},
      {"host", required_argument, NULL, 3},      {"database", required_argument, NULL, 4},
      {NULL, 0, NULL, 0}};
  const char *store_opt = NULL, *format = "text", *output = NULL;
  qp_report_options ro;
  qp_report_options_init(&ro);
  uint64_t limit = 0;
  bool have_limit = false, wide = false;
  int c;
  while ((c = getopt_long(argc, argv, "s:f:o:n:S:U:m:x:c:wCO:hb:", longopts, NULL)) != -1) {
    switch (c) {
    case 's': store_opt = optarg; break;
    case 'f': format = optarg; break;
    case 'o':
      if (qp_report_sort_parse(optarg, &ro.sort) != QP_OK)
        return cli_usage_error("report", "--sort must be total, mean, p95, p99, calls, rows or "
                                         "errors, not '%s'", optarg);
      break;
    case 'n':
      if (!parse_u64(optarg, &limit))
        return cli_usage_error("report", "--limit needs a number >= 0, not '%s'", optarg);
      have_limit = true;
      break;
    case 'S':
      if (!rq_parse_time("report", "--since", optarg, &ro.since_ns)) return QP_EXIT_USAGE;
      break;
    case 'U':
      if (!rq_parse_time("report", "--until", optarg, &ro.until_ns)) return QP_EXIT_USAGE;
      break;
    case 'm': ro.match = optarg; break;
    case 'x': ro.exclude = optarg; break;
    case 'C': ro.case_sensitive = true; break;
    case 'c':
      if (!parse_u64(optarg, &ro.min_calls))
        return cli_usage_error("report", "--min-calls needs a number >= 0, not '%s'", optarg);
      break;
    case 'w': wide = true; break;
    case 'O': output = optarg; break;
    case 'b':
      if (rq_parse_by("report", optarg, &ro.by) != QP_EXIT_OK) return QP_EXIT_USAGE;
      break;
    case 1: ro.user = optarg; break;
    case 2: ro.application = optarg; break;
    case 3: ro.host = optarg; break;
    case 4: ro.database = optarg; break;
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
  if (ro.since_ns >= ro.until_ns) return cli_usage_error("report", "--since must be before --until");
  int rc = rq_check("report", &ro);
  if (rc != QP_EXIT_OK) return rc;

  qp_store *store;
  qp_report *r;
  if (!rq_open("report", rq_store_path(store_opt), &ro, &store, &r)) return QP_EXIT_FAIL;
  const qp_report_totals *t = qp_report_totals_get(r);
  size_t n = qp_report_count(r), before = t->queries_in_window;
  if (!have_limit) limit = fmt == 0 ? 20 : fmt == 3 ? RQ_HTML_DEFAULT_LIMIT : 0;
  size_t shown = limit == 0 || limit > n ? n : (size_t)limit;
  cli_output o;
  if (cli_output_open(&o, "report", output) != QP_EXIT_OK) {
    rq_close(store, r);
    return QP_EXIT_FAIL;
  }
  FILE *out = o.f;

  if (n == 0) {
    if (before == 0)
      fprintf(fmt == 0 ? out : stderr, "No queries recorded in %s%s.\n", t->store,
              ro.since_ns != INT64_MIN || ro.until_ns != INT64_MAX ? " in this window" : "");
    else
      fprintf(fmt == 0 ? out : stderr,
              "No queries match the filters (%zu quer%s in the window).\n", before,
              before == 1 ? "y" : "ies");
    if (fmt == 0) print_dropped(out, t, "", "");
  }
  rc = QP_EXIT_OK;
  if (fmt == 0) {
    if (n > 0) print_text(out, r, shown, wide);
  } else if (fmt == 1) {
    print_json(out, r, shown, ro.sort);
  } else if (fmt == 2) {
    print_csv(out, r, shown);
  } else {
    char w[128];
    rq_window_text(t, w, sizeof w);
    if (!rq_print_html(out, r, store, w, shown)) {
      const char *m = qp_report_errmsg(r);
      rc = cli_fail("report", "cannot write the page: %s", m[0] != '\0' ? m : "out of memory");
    }
  }
  /* Samples hold literal values (redacted, but from real statements): a
   * file that holds one is readable by its owner only, like the store. */
  bool samples = false;
  for (size_t i = 0; i < shown && !samples; i++) samples = qp_report_query(r, i)->sample != NULL;
  rq_close(store, r);
  if (rc != QP_EXIT_OK) {
    cli_output_abort(&o);
    return rc;
  }
  return cli_output_commit(&o, "report", samples ? 0600 : 0644);
}
