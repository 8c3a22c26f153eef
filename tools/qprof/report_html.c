/*
 * `qprof report --format html`: one self-contained page (inline CSS, no
 * script, no external resource), so that it can be attached to a ticket or
 * mailed and opens the same anywhere, offline. Every string
 * that came from a store (query text, database, samples, error codes) is
 * escaped: a quoted identifier may hold any character.
 */
#include <stdio.h>
#include <string.h>

#include "report_common.h"

static void esc(FILE *f, const char *s) {
  for (; s != NULL && *s; s++) {
    switch (*s) {
    case '&': fputs("&amp;", f); break;
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '"': fputs("&quot;", f); break;
    case '\'': fputs("&#39;", f); break;
    default:
      /* control characters other than tab and newline would make the page
       * invalid; they are shown as U+FFFD */
      if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n') fputs("&#xfffd;", f);
      else fputc(*s, f);
    }
  }
}

static const char css[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}"
    "h1{font-size:1.3em;margin:0 0 .3em}"
    "dl{display:grid;grid-template-columns:max-content auto;gap:.1em 1em;margin:0 0 1em}"
    "dt{font-weight:600}dd{margin:0}"
    "table{border-collapse:collapse;width:100%}"
    "th,td{padding:.3em .5em;border-bottom:1px solid #ddd;vertical-align:top}"
    "th{text-align:right;background:#f4f4f4;position:sticky;top:0}"
    "td.n{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}"
    "th.q,td.q{text-align:left}"
    "td.q code{white-space:pre-wrap;word-break:break-word}"
    "td.fp{font-family:monospace;font-size:.85em;color:#666}"
    ".db{color:#666;font-size:.85em}"
    ".bar{height:.35em;background:#c33;margin-top:.2em}"
    "tr.hot td{background:#fff4e5}"
    ".err{color:#b00}"
    "details{margin-top:.3em}summary{cursor:pointer;color:#666;font-size:.85em}";

static void num(FILE *f, const char *text) { fprintf(f, "<td class=\"n\">%s</td>", text); }

void rq_print_html(FILE *f, const char *store, const char *window, const rq_set *set, size_t shown,
                   const char *sort) {
  char c1[32], c2[32], c3[32];
  fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n", f);
  fputs("<meta name=\"generator\" content=\"qprof\">\n<title>qprof report: ", f);
  esc(f, store);
  fprintf(f, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>qprof report</h1>\n<dl>\n", css);
  fputs("<dt>Store</dt><dd>", f);
  esc(f, store);
  fputs("</dd>\n<dt>Window</dt><dd>", f);
  esc(f, window);
  fprintf(f, "</dd>\n<dt>Totals</dt><dd>%zu quer%s, %s calls, %s total, %s errors</dd>\n", set->n,
          set->n == 1 ? "y" : "ies", rq_count(set->calls, c1, sizeof c1),
          rq_dur(set->total_ns, c2, sizeof c2), rq_count(set->errors, c3, sizeof c3));
  fprintf(f, "<dt>Sorted by</dt><dd>%s", sort);
  if (shown < set->n) fprintf(f, " (top %zu of %zu)", shown, set->n);
  fputs("</dd>\n</dl>\n", f);
  if (set->n == 0) {
    fputs("<p>No queries.</p>\n</body>\n</html>\n", f);
    return;
  }
  fputs("<table>\n<thead><tr><th>#</th><th class=\"q\">query</th><th>calls</th><th>errors</th>"
        "<th>rows</th><th>total</th><th>share</th><th>mean</th><th>p50</th><th>p95</th>"
        "<th>p99</th><th>max</th><th class=\"q\">fingerprint</th></tr></thead>\n<tbody>\n",
        f);
  for (size_t i = 0; i < shown; i++) {
    const rq *r = &set->v[i];
    char b[40];
    fprintf(f, "<tr%s><td class=\"n\">%zu</td><td class=\"q\"><code>", r->share >= 0.2 ? " class=\"hot\"" : "",
            i + 1);
    esc(f, r->s.query);
    fputs("</code><div class=\"db\">", f);
    esc(f, r->s.backend);
    if (r->s.database[0] != '\0') {
      fputs(" &middot; ", f);
      esc(f, r->s.database);
    }
    fputs("</div>", f);
    if (r->s.sample != NULL) {
      fputs("<details><summary>sample</summary><code>", f);
      esc(f, r->s.sample);
      fputs("</code></details>", f);
    }
    fputs("</td>", f);
    num(f, rq_count(r->s.calls, b, sizeof b));
    if (r->s.errors > 0) {
      fprintf(f, "<td class=\"n err\">%s<div class=\"db\">", rq_count(r->s.errors, b, sizeof b));
      esc(f, r->s.error_codes);
      fputs("</div></td>", f);
    } else {
      num(f, "0");
    }
    num(f, rq_count(r->s.rows > 0 ? (uint64_t)r->s.rows : 0, b, sizeof b));
    num(f, rq_dur((double)r->s.total_ns, b, sizeof b));
    fprintf(f, "<td class=\"n\">%.1f%%<div class=\"bar\" style=\"width:%.1f%%\"></div></td>",
            r->share * 100, r->share * 100);
    num(f, rq_dur(r->s.mean_ns, b, sizeof b));
    num(f, rq_dur(r->s.p50_ns, b, sizeof b));
    num(f, rq_dur(r->s.p95_ns, b, sizeof b));
    num(f, rq_dur(r->s.p99_ns, b, sizeof b));
    num(f, rq_dur((double)r->s.max_ns, b, sizeof b));
    fprintf(f, "<td class=\"fp\">%s</td></tr>\n", r->fp);
  }
  fputs("</tbody>\n</table>\n</body>\n</html>\n", f);
}
