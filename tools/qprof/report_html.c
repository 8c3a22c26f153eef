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

void rq_html_text(FILE *f, const char *s) {
  const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
  size_t n;
  for (; *p; p += n) {
    int32_t cp = rq_utf8_next(p, &n);
    switch (cp) {
    case '&': fputs("&amp;", f); break;
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '"': fputs("&quot;", f); break;
    case '\'': fputs("&#39;", f); break;
    default:
      /* Control characters other than tab and newline would make the page
       * invalid, and so would bytes that are not UTF-8: they are shown as
       * U+FFFD. C1 controls and bidirectional overrides are shown, not
       * obeyed: a numeric reference alone would still reorder the text
       * around it (and &#x80;..&#x9f; mean Windows-1252 characters). */
      if (cp < 0 || (cp < 0x20 && cp != '\t' && cp != '\n') || cp == 0x7f) fputs("&#xfffd;", f);
      else if (rq_is_unsafe(cp)) fprintf(f, "<span class=\"ctl\">&lt;U+%04X&gt;</span>", (unsigned)cp);
      else fwrite(p, 1, n, f);
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
    ".err{color:#b00}.ctl{color:#b00;font-size:.85em}"
    "details{margin-top:.3em}summary{cursor:pointer;color:#666;font-size:.85em}";

static void num(FILE *f, const char *text) { fprintf(f, "<td class=\"n\">%s</td>", text); }

void rq_print_html(FILE *f, const qp_report *r, const char *window, size_t shown) {
  char c1[40], c2[40], c3[40];
  const qp_report_totals *t = qp_report_totals_get(r);
  const char *store = t->store;
  size_t n = qp_report_count(r);
  fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n", f);
  fputs("<meta name=\"generator\" content=\"qprof\">\n<title>qprof report: ", f);
  rq_html_text(f, store);
  fprintf(f, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>qprof report</h1>\n<dl>\n", css);
  fputs("<dt>Store</dt><dd>", f);
  rq_html_text(f, store);
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
  if (n > 0)
    fprintf(f, "</dd>\n<dt>Data</dt><dd>%s .. %s", rq_iso(t->first_seen_ns, c1, sizeof c1),
            rq_iso(t->last_seen_ns, c2, sizeof c2));
  fprintf(f, "</dd>\n<dt>Totals</dt><dd>%zu quer%s, %s calls, %s total, %s errors</dd>\n", n,
          n == 1 ? "y" : "ies", rq_count(t->calls, c1, sizeof c1),
          rq_dur((double)t->total_ns, c2, sizeof c2), rq_count(t->errors, c3, sizeof c3));
  if (t->dropped > 0)
    fprintf(f,
            "<dt>Dropped</dt><dd>%s statements ran but were not recorded: the shim's segment "
            "was full (raise --segment-mb / QPROF_SEGMENT_MB); they are in no query below</dd>\n",
            rq_count(t->dropped, c1, sizeof c1));
  fprintf(f, "<dt>Sorted by</dt><dd>%s", qp_report_sort_name(t->sort));
  if (shown < n) fprintf(f, " (top %zu of %zu)", shown, n);
  fputs("</dd>\n</dl>\n", f);
  if (n == 0) {
    fputs("<p>No queries.</p>\n</body>\n</html>\n", f);
    return;
  }
  fputs("<table>\n<thead><tr><th>#</th><th class=\"q\">query</th><th>calls</th><th>errors</th>"
        "<th>rows</th><th>total</th><th>share</th><th>mean</th><th>p50</th><th>p95</th>"
        "<th>p99</th><th>max</th><th class=\"q\">fingerprint</th></tr></thead>\n<tbody>\n",
        f);
  for (size_t i = 0; i < shown; i++) {
    const qp_query_summary *s = qp_report_query(r, i);
    double share = qp_report_share(r, i);
    char b[40], fp[QP_FINGERPRINT_HEX_SIZE];
    qp_fingerprint_hex(s->fingerprint, fp);
    fprintf(f, "<tr%s><td class=\"n\">%zu</td><td class=\"q\"><code>", share >= 0.2 ? " class=\"hot\"" : "",
            i + 1);
    rq_html_text(f, s->query);
    fputs("</code><div class=\"db\">", f);
    rq_html_text(f, s->backend);
    if (s->database[0] != '\0') {
      fputs(" &middot; ", f);
      rq_html_text(f, s->database);
    }
    fputs("</div>", f);
    if (s->sample != NULL) {
      fputs("<details><summary>sample</summary><code>", f);
      rq_html_text(f, s->sample);
      fputs("</code></details>", f);
    }
    fputs("</td>", f);
    num(f, rq_count(s->calls, b, sizeof b));
    if (s->errors > 0) {
      fprintf(f, "<td class=\"n err\">%s<div class=\"db\">", rq_count(s->errors, b, sizeof b));
      rq_html_text(f, s->error_codes);
      fputs("</div></td>", f);
    } else {
      num(f, "0");
    }
    num(f, rq_count(s->rows > 0 ? (uint64_t)s->rows : 0, b, sizeof b));
    num(f, rq_dur((double)s->total_ns, b, sizeof b));
    fprintf(f, "<td class=\"n\">%.1f%%<div class=\"bar\" style=\"width:%.1f%%\"></div></td>",
            share * 100, share * 100);
    num(f, rq_dur(s->mean_ns, b, sizeof b));
    num(f, rq_dur(s->p50_ns, b, sizeof b));
    num(f, rq_dur(s->p95_ns, b, sizeof b));
    num(f, rq_dur(s->p99_ns, b, sizeof b));
    num(f, rq_dur((double)s->max_ns, b, sizeof b));
    fprintf(f, "<td class=\"fp\">%s</td></tr>\n", fp);
  }
  fputs("</tbody>\n</table>\n</body>\n</html>\n", f);
}
