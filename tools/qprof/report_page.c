/*
 * `qprof report --format html`: the page a person opens first
 * (docs/report-html.md). One self-contained file: inline CSS, inline SVG
 * drawn here, a small inline script that only adds sorting to the tables,
 * no external resource of any kind, so that it can be attached to a ticket
 * or mailed and opens the same anywhere, offline, and prints. Every number
 * comes from the report model (qprof/report.h); every string that came
 * from a store goes through rq_html_text. The same report gives the same
 * bytes (the golden test holds it).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report_advice.h"
#include "report_common.h"
#include "report_svg.h"

#define TOP_SERIES 5  /* queries drawn on their own in the charts */
#define TOP_LIST 10   /* rows of each top list */
#define MAX_SLOTS 240 /* time steps in a chart at most */
#define SHORT_TEXT 90 /* characters of a query in lists */

static const char *const colors[TOP_SERIES] = {"#0072b2", "#e69f00", "#009e73", "#cc79a7",
                                               "#56b4e9"};
#define OTHER_COLOR "#9a9a9a"

static const char css[] =
    ":root{--fg:#1d1d1f;--bg:#fff;--muted:#666;--line:#ddd;--head:#f3f3f3;--hot:#fff4e5;"
    "--err:#b00020;--grid:#e4e4e4;--link:#0b5cad}"
    "@media (prefers-color-scheme:dark){:root{--fg:#e3e3e3;--bg:#151515;--muted:#9a9a9a;"
    "--line:#353535;--head:#222;--hot:#3b2c12;--err:#ff6b7a;--grid:#2c2c2c;--link:#7fb6ff}}"
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em;"
    "color:var(--fg);background:var(--bg)}"
    "a{color:var(--link)}h1{font-size:1.4em;margin:0 0 .3em}"
    "h2{font-size:1.15em;margin:1.6em 0 .5em;border-bottom:1px solid var(--line)}"
    "h3{font-size:1em;margin:1.2em 0 .3em}h4{font-size:.95em;margin:.8em 0 .2em}"
    "dl.meta{display:grid;grid-template-columns:max-content auto;gap:.1em 1em;margin:0 0 1em}"
    "dt{font-weight:600}dd{margin:0}"
    "nav{margin:.5em 0 1em;font-size:.9em}nav a{margin-right:1em}"
    "table{border-collapse:collapse;width:100%;margin:.3em 0 1em}"
    "caption{text-align:left;font-weight:600;padding:.2em 0}"
    "th,td{padding:.25em .5em;border-bottom:1px solid var(--line);vertical-align:top}"
    "th{text-align:right;background:var(--head)}"
    "td.n{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}"
    "th.q,td.q,th.t,td.t{text-align:left}"
    "code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em}"
    "td.q code{white-space:pre-wrap;word-break:break-word}"
    "pre{white-space:pre-wrap;word-break:break-word;margin:.3em 0;padding:.5em;"
    "background:var(--head)}"
    ".fp{font-family:ui-monospace,monospace;font-size:.85em;color:var(--muted)}"
    ".db,.note{color:var(--muted);font-size:.85em}"
    ".bar{height:.35em;background:#c33;margin-top:.2em}"
    "tr.hot td{background:var(--hot)}"
    ".err{color:var(--err)}.ctl{color:var(--err);font-size:.85em}"
    ".tops{display:grid;grid-template-columns:repeat(auto-fit,minmax(26em,1fr));gap:0 1.5em}"
    "figure{margin:0 0 1.2em}figcaption{font-weight:600;margin-bottom:.2em}"
    "svg{max-width:100%;height:auto;font-size:11px}"
    "svg text{fill:currentColor}.grid{stroke:var(--grid)}"
    ".legend{list-style:none;padding:0;margin:0 0 1em;font-size:.9em}"
    ".legend li{margin:.1em 0}.sw{display:inline-block;width:.9em;height:.9em;"
    "margin-right:.4em;vertical-align:-.1em}"
    ".sw.all{border-top:2px dashed currentColor;height:0;vertical-align:.2em}"
    "dl.stats{display:grid;grid-template-columns:repeat(auto-fill,minmax(11em,1fr));"
    "gap:.1em 1em;margin:.3em 0}dl.stats div{display:flex;gap:.5em}"
    "dl.stats dt{font-weight:400;color:var(--muted)}dl.stats div.wide{grid-column:span 2}"
    "article{border-top:1px solid var(--line);padding-top:.3em}"
    "th.js-sort{cursor:pointer}th[aria-sort=descending]::after{content:' \\2193'}"
    "th[aria-sort=ascending]::after{content:' \\2191'}"
    "@media print{:root{--fg:#000;--bg:#fff;--muted:#444;--line:#bbb;--head:#eee;"
    "--hot:#fff4e5;--grid:#ddd;--link:#000}body{margin:0;font-size:10pt}nav{display:none}"
    "a{text-decoration:none}figure,article,table.top,tr{break-inside:avoid}"
    "*{-webkit-print-color-adjust:exact;print-color-adjust:exact}}";

/* Sorting for tables of class "sortable" (numbers from data-v). The page
 * is whole without it. */
static const char script[] =
    "(function(){'use strict';"
    "var ts=document.querySelectorAll('table.sortable');"
    "Array.prototype.forEach.call(ts,function(t){"
    "var hs=t.tHead.rows[0].cells;"
    "Array.prototype.forEach.call(hs,function(h,i){"
    "h.classList.add('js-sort');h.tabIndex=0;"
    "function go(){var b=t.tBodies[0],rs=Array.prototype.slice.call(b.rows);"
    "var d=h.getAttribute('aria-sort')==='descending'?1:-1;"
    "Array.prototype.forEach.call(hs,function(x){x.removeAttribute('aria-sort');});"
    "h.setAttribute('aria-sort',d<0?'descending':'ascending');"
    "rs.sort(function(x,y){var a=x.cells[i],c=y.cells[i];"
    "var va=a.getAttribute('data-v'),vc=c.getAttribute('data-v');"
    "var r=va!==null&&vc!==null?parseFloat(va)-parseFloat(vc):"
    "a.textContent.localeCompare(c.textContent);return r*d;});"
    "rs.forEach(function(x){b.appendChild(x);});}"
    "h.addEventListener('click',go);"
    "h.addEventListener('keydown',function(e){if(e.key==='Enter'){go();}});"
    "});});})();";

typedef struct page {
  FILE *f;
  qp_report *r;
  size_t n, shown;
  rq_advice *advice; /* `qprof advise --save` runs in the store (report_advice.c) */
  char text[65536]; /* a query shortened or in full, before escaping */
} page;

/* #N, a link to the query's details when they are on the page */
static void qref(page *p, size_t i) {
  if (i < p->shown) fprintf(p->f, "<a href=\"#q%zu\">#%zu</a>", i + 1, i + 1);
  else fprintf(p->f, "#%zu", i + 1);
}

/* the query's text cut to SHORT_TEXT characters, controls made visible */
static void qshort(page *p, size_t i) {
  fputs("<code>", p->f);
  rq_html_text(p->f, rq_shorten(qp_report_query(p->r, i)->query, SHORT_TEXT, p->text,
                                sizeof p->text));
  fputs("</code>", p->f);
}

static void num_td(FILE *f, const char *text, double v) {
  fprintf(f, "<td class=\"n\" data-v=\"%.17g\">%s</td>", v, text);
}

/* ---- the header -------------------------------------------------------------- */

static void header(page *p, const char *window, int64_t step_s) {
  FILE *f = p->f;
  char c1[40], c2[40], c3[40];
  const qp_report_totals *t = qp_report_totals_get(p->r);
  fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<meta name=\"color-scheme\" content=\"light dark\">\n",
        f);
  fputs("<meta name=\"generator\" content=\"qprof\">\n<title>qprof report: ", f);
  rq_html_text(f, t->store);
  fprintf(f, "</title>\n<style>%s</style>\n</head>\n<body>\n<header>\n<h1>qprof report</h1>\n"
             "<dl class=\"meta\">\n",
          css);
  fputs("<dt>Store</dt><dd>", f);
  rq_html_text(f, t->store);
  fputs("</dd>\n<dt>Window</dt><dd>", f);
  rq_html_text(f, window);
  if (t->since_rounded || t->until_rounded) {
    fputs("<br>rounded to whole buckets (a bucket counts when it starts in the window):", f);
    if (t->since_rounded)
      fprintf(f, "<br>the start falls inside the bucket of %s, which is left out",
              rq_iso(t->since_bucket_ns, c1, sizeof c1));
    if (t->until_rounded)
      fprintf(f, "<br>the end falls inside the bucket of %s, which is counted whole",
              rq_iso(t->until_bucket_ns, c1, sizeof c1));
  }
  if (p->n > 0)
    fprintf(f, "</dd>\n<dt>Data</dt><dd>%s .. %s", rq_iso(t->first_seen_ns, c1, sizeof c1),
            rq_iso(t->last_seen_ns, c2, sizeof c2));
  fprintf(f, "</dd>\n<dt>Totals</dt><dd id=\"totals\">%zu quer%s, %s calls, %s total, %s errors",
          p->n, p->n == 1 ? "y" : "ies", rq_count(t->calls, c1, sizeof c1),
          rq_dur((double)t->total_ns, c2, sizeof c2), rq_count(t->errors, c3, sizeof c3));
  if (p->n != t->queries_in_window)
    fprintf(f, " (%zu of %zu queries pass the filters)", p->n, t->queries_in_window);
  fputs("</dd>\n", f);
  if (!rq_plain_key(t)) {
    /* --by and the dimension filters */
    char by[128], fl[2048];
    fprintf(f, "<dt>Rows</dt><dd id=\"rows-by\">%s</dd>\n", rq_rows_text(t->by, by, sizeof by));
    if (rq_filters_text(t, fl, sizeof fl)[0] != '\0') {
      fputs("<dt>Filters</dt><dd id=\"filters\">", f);
      rq_html_text(f, fl);
      fputs("</dd>\n", f);
    }
  }
  if (t->dropped > 0)
    fprintf(f,
            "<dt>Dropped</dt><dd class=\"err\">%s statements ran but were not recorded: the "
            "shim's segment was full (raise --segment-mb / QPROF_SEGMENT_MB); they are in no "
            "query below</dd>\n",
            rq_count(t->dropped, c1, sizeof c1));
  fprintf(f, "<dt>Sorted by</dt><dd>%s", qp_report_sort_name(t->sort));
  if (p->shown < p->n) fprintf(f, " (details of the top %zu of %zu)", p->shown, p->n);
  fputs("</dd>\n", f);
  if (step_s > 0) fprintf(f, "<dt>Chart step</dt><dd>%lld s (times are UTC)</dd>\n", (long long)step_s);
  fputs("</dl>\n</header>\n", f);
  if (p->n > 0) {
    fputs("<nav><a href=\"#time\">Over time</a><a href=\"#top\">Top queries</a>"
          "<a href=\"#errors\">Errors</a>",
          f);
    /* one breakdown per dimension of the key (the database by default) */
    for (int d = 0; d < 4; d++)
      if (t->by & QP_REPORT_KEY(d)) {
        const char *name = qp_report_group_by_name((qp_report_group_by)d);
        bool plain = t->by == QP_REPORT_KEY_DEFAULT;
        fprintf(f, "<a href=\"#%s%s\">Per %s</a>", plain ? "groups" : "by-", plain ? "" : name, name);
      }
    fputs("<a href=\"#queries\">All queries</a>", f);
    if (rq_advice_runs(p->advice) > 0) fputs("<a href=\"#advice\">Advice</a>", f);
    fputs("<a href=\"#details\">Details</a></nav>\n", f);
  }
}

/* ---- charts over time ---------------------------------------------------------- */

typedef struct slot {
  uint64_t calls, total_ns;
  double p95_ns;
  bool has;
} slot;

typedef struct chart_data {
  int64_t x0_s, x1_s, step_s;
  size_t nslots, k;       /* k: queries drawn on their own */
  slot *s[TOP_SERIES + 2]; /* the top k, then every query, then the others */
} chart_data;

#define ALL (TOP_SERIES)
#define OTHER (TOP_SERIES + 1)

typedef struct point_list {
  qp_report_point *v;
  size_t n, cap;
  bool short_; /* out of memory: the list ends short */
} point_list;

static int collect_point(const qp_report_point *pt, point_list *l) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 256;
    qp_report_point *v = realloc(l->v, cap * sizeof *v);
    if (v == NULL) {
      l->short_ = true;
      return 1;
    }
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = *pt;
  return 0;
}

static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* The step: the smallest of these that keeps the chart at MAX_SLOTS steps. */
static int64_t pick_step(int64_t span_s) {
  static const int64_t steps[] = {60,    120,   300,   600,    900,    1800,  3600,
                                  7200,  10800, 21600, 43200,  86400,  604800};
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
    if (span_s / steps[i] < MAX_SLOTS) return steps[i];
  return (span_s / MAX_SLOTS / 86400 + 1) * 86400;
}

static void fill_slot(const chart_data *d, slot *out, const qp_report_point *pt) {
  int64_t j = (floor_div(pt->start_ns, 1000000000) - d->x0_s) / d->step_s;
  if (j < 0 || (size_t)j >= d->nslots) return;
  slot *s = &out[j];
  s->calls = pt->calls;
  s->total_ns = pt->total_ns;
  s->p95_ns = pt->p95_ns;
  s->has = true;
}

static void chart_free(chart_data *d) {
  for (size_t i = 0; i < TOP_SERIES + 2; i++) free(d->s[i]);
}

/* the points of each series as they come: the top k, then all queries */
typedef struct series_lists {
  point_list l[TOP_SERIES + 1];
  size_t k;
} series_lists;

static int collect_set(const qp_report_point *pt, size_t which, void *ud) {
  series_lists *s = ud;
  return collect_point(pt, &s->l[which < s->k ? which : TOP_SERIES]);
}

/* The series of the charts from one scan of the store: every query together
 * (its points fix the time axis), the top k, and the others as the
 * difference. */
static bool chart_load(page *p, chart_data *d) {
  memset(d, 0, sizeof *d);
  const qp_report_totals *t = qp_report_totals_get(p->r);
  int64_t lo = t->since_ns != INT64_MIN ? floor_div(t->since_ns, 1000000000)
                                        : floor_div(t->first_seen_ns, 1000000000);
  int64_t hi = t->until_ns != INT64_MAX ? floor_div(t->until_ns - 1, 1000000000) + 1
                                        : floor_div(t->last_seen_ns, 1000000000) + 1;
  if (hi <= lo) hi = lo + 1;
  d->step_s = pick_step(hi - lo);
  d->k = p->n < TOP_SERIES ? p->n : TOP_SERIES;
  size_t idx[TOP_SERIES];
  for (size_t i = 0; i < d->k; i++) idx[i] = i;
  series_lists sl = {.k = d->k};
  bool ok = qp_report_series_set(p->r, idx, d->k, d->step_s, collect_set, &sl) == QP_OK;
  point_list *all = &sl.l[TOP_SERIES];
  /* a list that could not grow ended short: out of memory */
  for (size_t i = 0; ok && i <= TOP_SERIES; i++) ok = !sl.l[i].short_;
  if (ok) {
    /* a bucket may start before the first execution it holds */
    if (all->n > 0 && floor_div(all->v[0].start_ns, 1000000000) < lo)
      lo = floor_div(all->v[0].start_ns, 1000000000);
    if (all->n > 0 && floor_div(all->v[all->n - 1].start_ns, 1000000000) + 1 > hi)
      hi = floor_div(all->v[all->n - 1].start_ns, 1000000000) + 1;
    d->x0_s = floor_div(lo, d->step_s) * d->step_s;
    d->x1_s = (floor_div(hi - 1, d->step_s) + 1) * d->step_s;
    d->nslots = (size_t)((d->x1_s - d->x0_s) / d->step_s);
    for (size_t i = 0; ok && i < TOP_SERIES + 2; i++) {
      if (i < TOP_SERIES && i >= d->k) continue;
      ok = (d->s[i] = calloc(d->nslots, sizeof(slot))) != NULL;
    }
  }
  if (ok) {
    for (size_t j = 0; j < all->n; j++) fill_slot(d, d->s[ALL], &all->v[j]);
    for (size_t i = 0; i < d->k; i++)
      for (size_t j = 0; j < sl.l[i].n; j++) fill_slot(d, d->s[i], &sl.l[i].v[j]);
    for (size_t j = 0; j < d->nslots; j++) {
      slot *o = &d->s[OTHER][j], *a = &d->s[ALL][j];
      o->calls = a->calls;
      o->total_ns = a->total_ns;
      for (size_t i = 0; i < d->k; i++) {
        o->calls -= d->s[i][j].calls;
        o->total_ns -= d->s[i][j].total_ns;
      }
      o->has = o->calls > 0;
    }
  }
  for (size_t i = 0; i <= TOP_SERIES; i++) free(sl.l[i].v);
  if (!ok) chart_free(d);
  return ok;
}

static const char *step_text(int64_t step_s, char *buf, size_t len) {
  if (step_s == 60) snprintf(buf, len, "minute");
  else if (step_s == 3600) snprintf(buf, len, "hour");
  else if (step_s == 86400) snprintf(buf, len, "day");
  else if (step_s % 86400 == 0) snprintf(buf, len, "%lld days", (long long)(step_s / 86400));
  else if (step_s % 3600 == 0) snprintf(buf, len, "%lld hours", (long long)(step_s / 3600));
  else snprintf(buf, len, "%lld minutes", (long long)(step_s / 60));
  return buf;
}

static void series_label(page *p, size_t i, char *buf, size_t len) {
  if (i == ALL) snprintf(buf, len, "all queries");
  else if (i == OTHER) snprintf(buf, len, "other queries");
  else snprintf(buf, len, "#%zu", i + 1);
  (void)p;
}

/* Calls or time per step, the top queries stacked, the others on top. */
static void chart_stacked(page *p, const chart_data *d, bool time, const char *id) {
  FILE *f = p->f;
  char st[32], title[96], ytitle[64], data[128];
  step_text(d->step_s, st, sizeof st);
  snprintf(title, sizeof title, "%s per %s", time ? "Total time" : "Calls", st);
  snprintf(ytitle, sizeof ytitle, "%s per %s", time ? "time" : "calls", st);
  double ymax = 0;
  size_t points = 0, series = d->k;
  bool other = false;
  for (size_t j = 0; j < d->nslots; j++) {
    const slot *a = &d->s[ALL][j];
    double v = time ? (double)a->total_ns : (double)a->calls;
    if (v > ymax) ymax = v;
    for (size_t i = 0; i < d->k; i++) points += d->s[i][j].calls > 0;
    if (d->s[OTHER][j].calls > 0) {
      points++;
      other = true;
    }
  }
  series += other;
  svg_frame fr;
  svg_frame_init(&fr, 960, 240);
  double ticks[16];
  size_t nt = svg_ticks(ymax, !time, ticks, 16);
  svg_scale y = {.d0 = 0, .d1 = ticks[nt - 1], .r0 = fr.top + fr.h, .r1 = fr.top};
  svg_scale x = {.d0 = (double)d->x0_s, .d1 = (double)d->x1_s, .r0 = fr.left, .r1 = fr.left + fr.w};
  snprintf(data, sizeof data, "data-points=\"%zu\" data-slots=\"%zu\" data-series=\"%zu\" data-step=\"%lld\"",
           points, d->nslots, series, (long long)d->step_s);
  fprintf(f, "<figure>\n<figcaption>%s</figcaption>\n", title);
  svg_open(f, "chart stacked", id, &fr, title, data);
  svg_axis_y(f, &fr, &y, ticks, nt, time ? svg_label_dur : svg_label_count, ytitle);
  svg_axis_time(f, &fr, &x, d->x0_s, d->x1_s, "time (UTC)");
  double bw = fr.w / (double)d->nslots, gap = bw > 4 ? 1 : 0;
  fputs("<g class=\"bars\">\n", f);
  for (size_t j = 0; j < d->nslots; j++) {
    double base = 0;
    char when[40];
    svg_time_text(d->x0_s + (int64_t)j * d->step_s, when, sizeof when);
    for (size_t i = 0; i <= d->k; i++) {
      size_t si = i < d->k ? i : OTHER;
      const slot *s = &d->s[si][j];
      if (s->calls == 0) continue;
      double v = time ? (double)s->total_ns : (double)s->calls;
      double y0 = svg_map(&y, base), y1 = svg_map(&y, base + v);
      base += v;
      char lab[32], val[40];
      series_label(p, si, lab, sizeof lab);
      if (time) rq_dur(v, val, sizeof val);
      else rq_count(s->calls, val, sizeof val);
      fprintf(f,
              "<rect class=\"pt s%zu\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
              "fill=\"%s\"><title>%s %s: %s%s</title></rect>\n",
              si, fr.left + bw * (double)j, y1, bw - gap > 0.5 ? bw - gap : 0.5,
              y0 - y1 > 0.5 ? y0 - y1 : 0.5, si == OTHER ? OTHER_COLOR : colors[si], when, lab, val,
              time ? "" : " calls");
    }
  }
  fputs("</g>\n", f);
  svg_close(f);
  fputs("</figure>\n", f);
}

/* p95 per step of the top queries and of all of them, on a log scale. */
static void chart_p95(page *p, const chart_data *d, const char *id) {
  FILE *f = p->f;
  char st[32], title[96], data[128];
  step_text(d->step_s, st, sizeof st);
  snprintf(title, sizeof title, "p95 latency per %s", st);
  double lo = 0, hi = 0;
  size_t points = 0, series = 0;
  for (size_t i = 0; i <= ALL; i++) {
    if (i < ALL && i >= d->k) continue;
    bool any = false;
    for (size_t j = 0; j < d->nslots; j++) {
      const slot *s = &d->s[i][j];
      if (!s->has || !(s->p95_ns > 0)) continue;
      if (lo == 0 || s->p95_ns < lo) lo = s->p95_ns;
      if (s->p95_ns > hi) hi = s->p95_ns;
      points++;
      any = true;
    }
    series += any;
  }
  svg_frame fr;
  svg_frame_init(&fr, 960, 240);
  double ticks[24];
  size_t nt = svg_log_ticks(lo > 0 ? lo : 1000, hi > 0 ? hi : 1000, ticks, 24);
  svg_scale y = {.d0 = ticks[0], .d1 = ticks[nt - 1], .r0 = fr.top + fr.h, .r1 = fr.top, .log = true};
  svg_scale x = {.d0 = (double)d->x0_s, .d1 = (double)d->x1_s, .r0 = fr.left, .r1 = fr.left + fr.w};
  snprintf(data, sizeof data, "data-points=\"%zu\" data-slots=\"%zu\" data-series=\"%zu\" data-step=\"%lld\"",
           points, d->nslots, series, (long long)d->step_s);
  fprintf(f, "<figure>\n<figcaption>%s (log scale)</figcaption>\n", title);
  svg_open(f, "chart lines", id, &fr, title, data);
  svg_axis_y(f, &fr, &y, ticks, nt, svg_label_dur, "p95 (log scale)");
  svg_axis_time(f, &fr, &x, d->x0_s, d->x1_s, "time (UTC)");
  double bw = fr.w / (double)d->nslots;
  /* all queries first, underneath */
  for (size_t pass = 0; pass <= d->k; pass++) {
    size_t i = pass == 0 ? ALL : pass - 1;
    const char *color = i == ALL ? "currentColor" : colors[i];
    fprintf(f, "<g class=\"series s%zu\">\n<path fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\"%s d=\"",
            i, color, i == ALL ? " stroke-dasharray=\"4 3\"" : "");
    bool prev = false, started = false;
    for (size_t j = 0; j < d->nslots; j++) {
      const slot *s = &d->s[i][j];
      bool on = s->has && s->p95_ns > 0;
      if (on) {
        /* a step without executions breaks the line */
        fprintf(f, "%s%.1f %.1f", prev ? " L" : started ? " M" : "M",
                fr.left + bw * ((double)j + 0.5), svg_map(&y, s->p95_ns));
        started = true;
      }
      prev = on;
    }
    fputs("\"/>\n", f);
    char lab[32];
    series_label(p, i, lab, sizeof lab);
    for (size_t j = 0; j < d->nslots; j++) {
      const slot *s = &d->s[i][j];
      if (!s->has || !(s->p95_ns > 0)) continue;
      char when[40], val[40];
      fprintf(f, "<circle class=\"pt\" cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"><title>%s %s: p95 %s</title></circle>\n",
              fr.left + bw * ((double)j + 0.5), svg_map(&y, s->p95_ns), color,
              svg_time_text(d->x0_s + (int64_t)j * d->step_s, when, sizeof when), lab,
              rq_dur(s->p95_ns, val, sizeof val));
    }
    fputs("</g>\n", f);
  }
  svg_close(f);
  fputs("</figure>\n", f);
}

static void legend(page *p, const chart_data *d) {
  FILE *f = p->f;
  fputs("<ul class=\"legend\">\n", f);
  for (size_t i = 0; i < d->k; i++) {
    fprintf(f, "<li><span class=\"sw\" style=\"background:%s\"></span>", colors[i]);
    qref(p, i);
    fputs(" ", f);
    qshort(p, i);
    fputs("</li>\n", f);
  }
  if (p->n > d->k)
    fprintf(f, "<li><span class=\"sw\" style=\"background:%s\"></span>other queries (%zu)</li>\n",
            OTHER_COLOR, p->n - d->k);
  fputs("<li><span class=\"sw all\"></span>all queries (p95 chart)</li>\n</ul>\n", f);
}

/* ---- top lists ----------------------------------------------------------------- */

static bool top_list(page *p, qp_report_sort key, const char *caption, const char *col) {
  FILE *f = p->f;
  size_t idx[TOP_LIST], k;
  if (qp_report_rank(p->r, key, idx, TOP_LIST, &k) != QP_OK) return false;
  fprintf(f, "<table class=\"top\" id=\"top-%s\">\n<caption>%s</caption>\n"
             "<thead><tr><th>#</th><th class=\"q\">query</th><th>%s</th></tr></thead>\n<tbody>\n",
          qp_report_sort_name(key), caption, col);
  size_t rows = 0;
  for (size_t j = 0; j < k; j++) {
    const qp_query_summary *s = qp_report_query(p->r, idx[j]);
    if (key == QP_REPORT_SORT_ERRORS && s->errors == 0) break;
    char b[40], c[40];
    fputs("<tr><td class=\"n\">", f);
    qref(p, idx[j]);
    fputs("</td><td class=\"q\">", f);
    qshort(p, idx[j]);
    fputs("</td>", f);
    switch (key) {
    case QP_REPORT_SORT_MEAN: num_td(f, rq_dur(s->mean_ns, b, sizeof b), s->mean_ns); break;
    case QP_REPORT_SORT_P99: num_td(f, rq_dur(s->p99_ns, b, sizeof b), s->p99_ns); break;
    case QP_REPORT_SORT_CALLS: num_td(f, rq_count(s->calls, b, sizeof b), (double)s->calls); break;
    case QP_REPORT_SORT_ERRORS: num_td(f, rq_count(s->errors, b, sizeof b), (double)s->errors); break;
    default:
      snprintf(c, sizeof c, "%s (%.1f%%)", rq_dur((double)s->total_ns, b, sizeof b),
               qp_report_share(p->r, idx[j]) * 100);
      num_td(f, c, (double)s->total_ns);
    }
    fputs("</tr>\n", f);
    rows++;
  }
  if (rows == 0) fputs("<tr><td></td><td class=\"q note\">none</td><td></td></tr>\n", f);
  fputs("</tbody>\n</table>\n", f);
  return true;
}

/* ---- errors by code and groups ----------------------------------------------------- */

static int error_row(const qp_report_error_code *c, void *ud) {
  page *p = ud;
  FILE *f = p->f;
  char b[40], s[40];
  fputs("<tr><td class=\"t\"><code>", f);
  rq_html_text(f, c->code);
  fputs("</code></td>", f);
  num_td(f, rq_count(c->errors, b, sizeof b), (double)c->errors);
  snprintf(s, sizeof s, "%.1f%%", c->share * 100);
  num_td(f, s, c->share);
  snprintf(b, sizeof b, "%zu", c->queries);
  num_td(f, b, (double)c->queries);
  fputs("<td class=\"q\">", f);
  qref(p, c->top_query);
  fprintf(f, " (%s) ", rq_count(c->top_errors, b, sizeof b));
  qshort(p, c->top_query);
  fputs("</td></tr>\n", f);
  return 0;
}

static bool errors_section(page *p) {
  FILE *f = p->f;
  const qp_report_totals *t = qp_report_totals_get(p->r);
  fputs("<section id=\"errors\">\n<h2>Errors by code</h2>\n", f);
  if (t->errors == 0) {
    fputs("<p class=\"note\">No errors in this window.</p>\n</section>\n", f);
    return true;
  }
  fputs("<table class=\"sortable\" id=\"error-codes\">\n<thead><tr><th class=\"t\">code</th>"
        "<th>errors</th><th>share</th><th>queries</th><th class=\"q\">most from</th></tr></thead>\n"
        "<tbody>\n",
        f);
  if (qp_report_errors(p->r, error_row, p) != QP_OK) return false;
  fputs("</tbody>\n</table>\n</section>\n", f);
  return true;
}

static int group_row(const qp_report_group *g, void *ud) {
  page *p = ud;
  FILE *f = p->f;
  char b[40], s[40];
  fputs("<tr><td class=\"t\">", f);
  if (g->key[0] != '\0') rq_html_text(f, g->key);
  else fputs("<span class=\"note\">(not recorded)</span>", f);
  fputs("</td><td class=\"t\">", f);
  if (g->backend[0] != '\0') rq_html_text(f, g->backend);
  else fputs("<span class=\"note\">both</span>", f);
  fputs("</td>", f);
  snprintf(b, sizeof b, "%zu", g->queries);
  num_td(f, b, (double)g->queries);
  num_td(f, rq_count(g->calls, b, sizeof b), (double)g->calls);
  num_td(f, rq_count(g->errors, b, sizeof b), (double)g->errors);
  num_td(f, rq_dur((double)g->total_ns, b, sizeof b), (double)g->total_ns);
  snprintf(s, sizeof s, "%.1f%%", g->share * 100);
  num_td(f, s, g->share);
  num_td(f, rq_dur(g->mean_ns, b, sizeof b), g->mean_ns);
  num_td(f, rq_dur(g->p95_ns, b, sizeof b), g->p95_ns);
  num_td(f, rq_dur(g->p99_ns, b, sizeof b), g->p99_ns);
  fputs("</tr>\n", f);
  return 0;
}

/* The groupings the model offers (qp_report_group_by): one table per
 * dimension of the report's key (--by; the database by default). */
static const struct {
  qp_report_group_by by;
  const char *title, *column;
} groupings[] = {{QP_REPORT_BY_DATABASE, "Per database", "database"},
                 {QP_REPORT_BY_USER, "Per user", "user"},
                 {QP_REPORT_BY_APPLICATION, "Per application", "application"},
                 {QP_REPORT_BY_HOST, "Per host", "host"}};

static bool groups_section(page *p) {
  FILE *f = p->f;
  unsigned by = qp_report_totals_get(p->r)->by;
  if (by == 0) return true; /* --by none: no dimension to break down by */
  fputs("<section id=\"groups\">\n", f);
  for (size_t i = 0; i < sizeof groupings / sizeof groupings[0]; i++) {
    if (!(by & QP_REPORT_KEY(groupings[i].by))) continue;
    fprintf(f, "<h2 id=\"by-%s\">%s</h2>\n<table class=\"sortable\" id=\"group-%s\">\n"
               "<thead><tr><th class=\"t\">%s</th><th class=\"t\">backend</th><th>queries</th>"
               "<th>calls</th><th>errors</th><th>total</th><th>share</th><th>mean</th>"
               "<th>p95</th><th>p99</th></tr></thead>\n<tbody>\n",
            qp_report_group_by_name(groupings[i].by), groupings[i].title,
            qp_report_group_by_name(groupings[i].by), groupings[i].column);
    if (qp_report_groups(p->r, groupings[i].by, group_row, p) != QP_OK) return false;
    fputs("</tbody>\n</table>\n", f);
  }
  fputs("</section>\n", f);
  return true;
}

/* ---- all queries ----------------------------------------------------------------- */

/* The rest of a row's key after its text: the backend, the database, and
 * the user, application and host when the key has them (--by). */
static void key_text(FILE *f, const qp_query_summary *s) {
  rq_html_text(f, s->backend);
  if (s->database != NULL && s->database[0] != '\0') {
    fputs(" &middot; ", f);
    rq_html_text(f, s->database);
  }
  for (int d = QP_REPORT_BY_USER; d <= QP_REPORT_BY_HOST; d++) {
    const char *v = rq_dim(s, (qp_report_group_by)d);
    if (v == NULL) continue;
    fprintf(f, " &middot; %s ", qp_report_group_by_name((qp_report_group_by)d));
    if (v[0] != '\0') rq_html_text(f, v);
    else fputs("(not recorded)", f);
  }
}

static void queries_table(page *p) {
  FILE *f = p->f;
  fputs("<section id=\"queries\">\n<h2>All queries</h2>\n"
        "<table class=\"sortable\" id=\"query-table\">\n<thead><tr><th>#</th><th class=\"q\">query</th>"
        "<th>calls</th><th>errors</th><th>rows</th><th>total</th><th>share</th><th>mean</th>"
        "<th>p50</th><th>p95</th><th>p99</th><th>max</th><th class=\"q\">fingerprint</th></tr>"
        "</thead>\n<tbody>\n",
        f);
  for (size_t i = 0; i < p->shown; i++) {
    const qp_query_summary *s = qp_report_query(p->r, i);
    double share = qp_report_share(p->r, i);
    char b[40], fp[QP_FINGERPRINT_HEX_SIZE];
    qp_fingerprint_hex(s->fingerprint, fp);
    fprintf(f, "<tr%s><td class=\"n\" data-v=\"%zu\"><a href=\"#q%zu\">%zu</a></td><td class=\"q\"><code>",
            share >= 0.2 ? " class=\"hot\"" : "", i + 1, i + 1, i + 1);
    rq_html_text(f, rq_shorten(s->query, 0, p->text, sizeof p->text));
    fputs("</code><div class=\"db\">", f);
    key_text(f, s);
    fputs("</div></td>", f);
    num_td(f, rq_count(s->calls, b, sizeof b), (double)s->calls);
    if (s->errors > 0) {
      fprintf(f, "<td class=\"n err\" data-v=\"%llu\">%s<div class=\"db\">",
              (unsigned long long)s->errors, rq_count(s->errors, b, sizeof b));
      rq_html_text(f, s->error_codes);
      fputs("</div></td>", f);
    } else {
      num_td(f, "0", 0);
    }
    num_td(f, rq_count(s->rows > 0 ? (uint64_t)s->rows : 0, b, sizeof b), (double)s->rows);
    num_td(f, rq_dur((double)s->total_ns, b, sizeof b), (double)s->total_ns);
    fprintf(f, "<td class=\"n\" data-v=\"%.17g\">%.1f%%<div class=\"bar\" style=\"width:%.1f%%\"></div></td>",
            share, share * 100, share * 100);
    num_td(f, rq_dur(s->mean_ns, b, sizeof b), s->mean_ns);
    num_td(f, rq_dur(s->p50_ns, b, sizeof b), s->p50_ns);
    num_td(f, rq_dur(s->p95_ns, b, sizeof b), s->p95_ns);
    num_td(f, rq_dur(s->p99_ns, b, sizeof b), s->p99_ns);
    num_td(f, rq_dur((double)s->max_ns, b, sizeof b), (double)s->max_ns);
    fprintf(f, "<td class=\"fp\">%s</td></tr>\n", fp);
  }
  fputs("</tbody>\n</table>\n</section>\n", f);
}

/* ---- details: statistics, histogram, sample ------------------------------------------ */

typedef struct bin_list {
  qp_report_bin *v;
  size_t n, cap;
  bool nomem;
} bin_list;

static int collect_bin(const qp_report_bin *b, void *ud) {
  bin_list *l = ud;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 64;
    qp_report_bin *v = realloc(l->v, cap * sizeof *v);
    if (v == NULL) {
      l->nomem = true;
      return 1;
    }
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = *b;
  return 0;
}

/* The query's merged histogram: one bar per stored bin on a log scale of
 * latency, the percentiles marked. */
static bool histogram(page *p, size_t i) {
  FILE *f = p->f;
  const qp_query_summary *s = qp_report_query(p->r, i);
  bin_list l = {0};
  if (qp_report_histogram(p->r, i, collect_bin, &l) != QP_OK || l.nomem) {
    free(l.v);
    return false;
  }
  if (l.n == 0) {
    free(l.v);
    return true;
  }
  uint64_t maxc = 0, sum = 0;
  for (size_t j = 0; j < l.n; j++) {
    if (l.v[j].count > maxc) maxc = l.v[j].count;
    sum += l.v[j].count;
  }
  double lo = l.v[0].lo_ns > 0 ? l.v[0].lo_ns : l.v[0].hi_ns / 1.04, hi = l.v[l.n - 1].hi_ns;
  svg_frame fr;
  svg_frame_init(&fr, 640, 180);
  double xt[24], yt[16];
  size_t nx = svg_log_ticks(lo, hi, xt, 24), ny = svg_ticks((double)maxc, true, yt, 16);
  svg_scale x = {.d0 = xt[0], .d1 = xt[nx - 1], .r0 = fr.left, .r1 = fr.left + fr.w, .log = true};
  svg_scale y = {.d0 = 0, .d1 = yt[ny - 1], .r0 = fr.top + fr.h, .r1 = fr.top};
  char id[32], label[64], data[96];
  snprintf(id, sizeof id, "hist-%zu", i + 1);
  snprintf(label, sizeof label, "Latency histogram of query #%zu", i + 1);
  snprintf(data, sizeof data, "data-bins=\"%zu\" data-count=\"%llu\"", l.n, (unsigned long long)sum);
  svg_open(f, "hist", id, &fr, label, data);
  svg_axis_y(f, &fr, &y, yt, ny, svg_label_count, "calls");
  svg_axis_x_log(f, &fr, &x, xt, nx, "latency (log scale)");
  fputs("<g class=\"bins\">\n", f);
  for (size_t j = 0; j < l.n; j++) {
    const qp_report_bin *b = &l.v[j];
    double x0 = svg_map(&x, b->lo_ns > 0 ? b->lo_ns : lo), x1 = svg_map(&x, b->hi_ns);
    double y1 = svg_map(&y, (double)b->count), y0 = fr.top + fr.h;
    char a[40], c[40], n[40];
    fprintf(f,
            "<rect class=\"bin\" data-n=\"%llu\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
            "fill=\"%s\"><title>%s .. %s: %s calls</title></rect>\n",
            (unsigned long long)b->count, x0, y1, x1 - x0 > 0.8 ? x1 - x0 : 0.8,
            y0 - y1 > 0.5 ? y0 - y1 : 0.5, colors[0], rq_dur(b->lo_ns, a, sizeof a),
            rq_dur(b->hi_ns, c, sizeof c), rq_count(b->count, n, sizeof n));
  }
  fputs("</g>\n<g class=\"marks\">\n", f);
  static const char *const names[] = {"p50", "p95", "p99"};
  const double at[] = {s->p50_ns, s->p95_ns, s->p99_ns};
  for (size_t k = 0; k < 3; k++) {
    if (!(at[k] > 0)) continue;
    double px = svg_map(&x, at[k]);
    fprintf(f,
            "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
            "stroke-dasharray=\"3 2\"/><text class=\"mark\" x=\"%.1f\" y=\"%.1f\">%s</text>\n",
            px, px, fr.top, fr.top + fr.h, colors[1], px + 2, fr.top + 10 + 11 * (double)k, names[k]);
  }
  fputs("</g>\n", f);
  svg_close(f);
  free(l.v);
  return true;
}

static void stat(FILE *f, const char *name, const char *value) {
  fprintf(f, "<div><dt>%s</dt><dd>%s</dd></div>", name, value);
}

/* a time takes two columns */
static void stat_time(FILE *f, const char *name, int64_t ns) {
  char b[40];
  fprintf(f, "<div class=\"wide\"><dt>%s</dt><dd>%s</dd></div>", name, rq_iso(ns, b, sizeof b));
}

static bool details(page *p) {
  FILE *f = p->f;
  fputs("<section id=\"details\">\n<h2>Query details</h2>\n", f);
  for (size_t i = 0; i < p->shown; i++) {
    const qp_query_summary *s = qp_report_query(p->r, i);
    char b[64], fp[QP_FINGERPRINT_HEX_SIZE];
    qp_fingerprint_hex(s->fingerprint, fp);
    fprintf(f, "<article id=\"q%zu\">\n<h3>#%zu <span class=\"fp\">%s</span> <span class=\"db\">", i + 1,
            i + 1, fp);
    key_text(f, s);
    fputs("</span></h3>\n<pre><code>", f);
    rq_html_text(f, s->query);
    fputs("</code></pre>\n<dl class=\"stats\">", f);
    stat(f, "calls", rq_count(s->calls, b, sizeof b));
    stat(f, "errors", rq_count(s->errors, b, sizeof b));
    snprintf(b, sizeof b, "%lld", (long long)s->rows);
    stat(f, "rows", b);
    char t[40];
    snprintf(b, sizeof b, "%s (%.1f%%)", rq_dur((double)s->total_ns, t, sizeof t),
             qp_report_share(p->r, i) * 100);
    stat(f, "total", b);
    stat(f, "mean", rq_dur(s->mean_ns, b, sizeof b));
    stat(f, "stddev", rq_dur(s->stddev_ns, b, sizeof b));
    stat(f, "min", rq_dur((double)s->min_ns, b, sizeof b));
    stat(f, "p50", rq_dur(s->p50_ns, b, sizeof b));
    stat(f, "p90", rq_dur(s->p90_ns, b, sizeof b));
    stat(f, "p95", rq_dur(s->p95_ns, b, sizeof b));
    stat(f, "p99", rq_dur(s->p99_ns, b, sizeof b));
    stat(f, "p99.9", rq_dur(s->p999_ns, b, sizeof b));
    stat(f, "max", rq_dur((double)s->max_ns, b, sizeof b));
    stat_time(f, "first seen", s->first_seen_ns);
    stat_time(f, "last seen", s->last_seen_ns);
    fputs("</dl>\n", f);
    if (s->errors > 0) {
      fputs("<p class=\"err\">errors by code: ", f);
      rq_html_text(f, s->error_codes);
      fputs("</p>\n", f);
    }
    if (!histogram(p, i)) return false;
    rq_advice_for_query(f, p->advice, s->fingerprint);
    if (s->sample != NULL) {
      fputs("<h4>Sample (the slowest execution, redacted)</h4>\n<pre class=\"sample\"><code>", f);
      rq_html_text(f, s->sample);
      fputs("</code></pre>\n", f);
    }
    fputs("</article>\n", f);
  }
  fputs("</section>\n", f);
  return true;
}

bool rq_print_html(FILE *f, qp_report *r, qp_store *store, const char *window, size_t shown) {
  page *p = malloc(sizeof *p);
  if (p == NULL) return false;
  p->f = f;
  p->r = r;
  p->n = qp_report_count(r);
  p->shown = shown;
  p->advice = rq_advice_load(store, r, shown);
  if (p->advice == NULL) {
    free(p);
    return false;
  }
  chart_data d;
  bool ok = true;
  if (p->n > 0) ok = chart_load(p, &d);
  if (!ok) {
    rq_advice_free(p->advice);
    free(p);
    return false;
  }
  header(p, window, p->n > 0 ? d.step_s : 0);
  if (p->n == 0) {
    const qp_report_totals *t = qp_report_totals_get(r);
    if (t->queries_in_window > 0 && !rq_plain_key(t))
      fprintf(f, "<p id=\"empty\">No queries match the filters (%zu quer%s in the window).</p>\n"
                 "</body>\n</html>\n",
              t->queries_in_window, t->queries_in_window == 1 ? "y" : "ies");
    else
      fputs("<p>No queries.</p>\n</body>\n</html>\n", f);
    rq_advice_free(p->advice);
    free(p);
    return true;
  }
  fputs("<main>\n<section id=\"time\">\n<h2>Over time</h2>\n", f);
  chart_stacked(p, &d, false, "chart-calls");
  chart_stacked(p, &d, true, "chart-time");
  chart_p95(p, &d, "chart-p95");
  legend(p, &d);
  chart_free(&d);
  fputs("</section>\n<section id=\"top\">\n<h2>Top queries</h2>\n<div class=\"tops\">\n", f);
  ok = top_list(p, QP_REPORT_SORT_TOTAL, "By total time", "total (share)") &&
       top_list(p, QP_REPORT_SORT_MEAN, "By mean latency", "mean") &&
       top_list(p, QP_REPORT_SORT_P99, "By p99 latency", "p99") &&
       top_list(p, QP_REPORT_SORT_CALLS, "By calls", "calls") &&
       top_list(p, QP_REPORT_SORT_ERRORS, "By errors", "errors");
  if (ok) fputs("</div>\n</section>\n", f);
  ok = ok && errors_section(p) && groups_section(p);
  if (ok) queries_table(p);
  if (ok) rq_advice_section(f, p->advice);
  ok = ok && details(p);
  if (ok)
    fprintf(f, "</main>\n<footer class=\"note\"><p>Written by qprof from the report model; "
               "times are UTC; percentiles are within 2%%.</p></footer>\n<script>%s</script>\n"
               "</body>\n</html>\n",
            script);
  rq_advice_free(p->advice);
  free(p);
  return ok;
}
