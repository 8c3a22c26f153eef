/*
 * The advisor's findings on the HTML page (report_advice.h): the documents
 * `qprof advise --save` kept in the store (docs/advise.md, "JSON"), read
 * with jansson. Every fingerprint a document names is parsed once, when it
 * is loaded: each reference gets the report's index of its query (a binary
 * search in the report's fingerprints, sorted once), and the references of
 * the suggestions are kept sorted by fingerprint for the details of each
 * query. Every string from a document goes through rq_html_text.
 */
#include "report_advice.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "report_common.h"

/* How many saved advice documents (one per advised database) the page shows. */
#define MAX_ADVICE 8
#define SHORT_TEXT 90 /* characters of a query in lists, as on the rest of the page */

/* One saved run. */
typedef struct advice_doc {
  char *database;
  int64_t at_ns;
  json_t *doc;   /* NULL: the document could not be read */
  size_t *sq;    /* the report's index of each suggestion's query, in document order */
  size_t *st;    /* the report's index of each statement */
} advice_doc;

/* A report query by fingerprint. */
typedef struct fp_index {
  uint64_t fp;
  size_t i;
} fp_index;

/* A query a suggestion helps, for the details of that query. */
typedef struct advice_ref {
  uint64_t fp;
  size_t seq;       /* document, suggestion, query: the order they are shown in */
  json_t *sug, *q;  /* borrowed from the document */
} advice_ref;

struct rq_advice {
  qp_report *r;
  size_t n, shown;
  advice_doc runs[MAX_ADVICE]; /* newest first */
  size_t nruns;
  fp_index *fps;               /* the report's queries, sorted by (fingerprint, index) */
  advice_ref *refs;            /* sorted by (fingerprint, seq) */
  size_t nrefs;
  char text[65536];            /* a query shortened, before escaping */
};

static int load_one(void *ud, const char *database, int64_t at_ns, const char *document) {
  rq_advice *a = ud;
  if (a->nruns == MAX_ADVICE) return 1;
  advice_doc *d = &a->runs[a->nruns];
  memset(d, 0, sizeof *d);
  d->database = strdup(database);
  if (d->database == NULL) return 1;
  d->at_ns = at_ns;
  json_error_t e;
  d->doc = json_loads(document, 0, &e);
  if (d->doc != NULL && !json_is_array(json_object_get(d->doc, "suggestions"))) {
    json_decref(d->doc); /* not an advise document */
    d->doc = NULL;
  }
  a->nruns++;
  return 0;
}

static void runs_free(rq_advice *a) {
  for (size_t i = 0; i < a->nruns; i++) {
    free(a->runs[i].database);
    free(a->runs[i].sq);
    free(a->runs[i].st);
    json_decref(a->runs[i].doc);
  }
  a->nruns = 0;
  free(a->fps);
  free(a->refs);
  a->fps = NULL;
  a->refs = NULL;
  a->nrefs = 0;
}

static int cmp_fp_index(const void *pa, const void *pb) {
  const fp_index *x = pa, *y = pb;
  if (x->fp != y->fp) return x->fp < y->fp ? -1 : 1;
  return x->i < y->i ? -1 : x->i > y->i;
}

static int cmp_ref(const void *pa, const void *pb) {
  const advice_ref *x = pa, *y = pb;
  if (x->fp != y->fp) return x->fp < y->fp ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The first of the n entries at base (each `size` bytes, sorted by the
 * uint64_t fingerprint at `offset` in each) whose fingerprint is not below
 * fp, or n: the report's queries (fp_index) and the references
 * (advice_ref) are both searched with it. */
static size_t fp_lower(const void *base, size_t n, size_t size, size_t offset, uint64_t fp) {
  const unsigned char *p = base;
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    uint64_t v;
    memcpy(&v, p + mid * size + offset, sizeof v);
    if (v < fp) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/* The report's index of the query a document names by its fingerprint
 * (hex): the first report query with that fingerprint, or n. */
static size_t resolve(const rq_advice *a, json_t *o, uint64_t *fp_out, bool *parsed) {
  uint64_t fp;
  const char *hex = json_string_value(json_object_get(o, "fingerprint"));
  *parsed = hex != NULL && qp_fingerprint_parse(hex, &fp);
  if (!*parsed) return a->n;
  *fp_out = fp;
  size_t k = fp_lower(a->fps, a->n, sizeof *a->fps, offsetof(fp_index, fp), fp);
  return k < a->n && a->fps[k].fp == fp ? a->fps[k].i : a->n;
}

/* Parses every fingerprint of the loaded documents once. False: no memory. */
static bool index_runs(rq_advice *a) {
  a->fps = malloc((a->n > 0 ? a->n : 1) * sizeof *a->fps);
  if (a->fps == NULL) return false;
  for (size_t i = 0; i < a->n; i++) {
    a->fps[i].fp = qp_report_query(a->r, i)->fingerprint;
    a->fps[i].i = i;
  }
  qsort(a->fps, a->n, sizeof *a->fps, cmp_fp_index);
  size_t nq = 0;
  for (size_t k = 0; k < a->nruns; k++) {
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(a->runs[k].doc, "suggestions"), i, x)
      nq += json_array_size(json_object_get(x, "queries"));
  }
  a->refs = malloc((nq > 0 ? nq : 1) * sizeof *a->refs);
  if (a->refs == NULL) return false;
  size_t seq = 0;
  for (size_t k = 0; k < a->nruns; k++) {
    advice_doc *d = &a->runs[k];
    if (d->doc == NULL) continue;
    json_t *sg = json_object_get(d->doc, "suggestions"), *sts = json_object_get(d->doc, "statements");
    size_t dq = 0, i, j;
    json_t *x, *q;
    json_array_foreach(sg, i, x) dq += json_array_size(json_object_get(x, "queries"));
    d->sq = malloc((dq > 0 ? dq : 1) * sizeof *d->sq);
    d->st = malloc((json_array_size(sts) > 0 ? json_array_size(sts) : 1) * sizeof *d->st);
    if (d->sq == NULL || d->st == NULL) return false;
    dq = 0;
    json_array_foreach(sg, i, x) {
      json_array_foreach(json_object_get(x, "queries"), j, q) {
        uint64_t fp = 0;
        bool parsed;
        d->sq[dq++] = resolve(a, q, &fp, &parsed);
        if (parsed) a->refs[a->nrefs++] = (advice_ref){fp, seq, x, q};
        seq++;
      }
    }
    json_array_foreach(sts, i, x) {
      uint64_t fp;
      bool parsed;
      d->st[i] = resolve(a, x, &fp, &parsed);
    }
  }
  qsort(a->refs, a->nrefs, sizeof *a->refs, cmp_ref);
  return true;
}

rq_advice *rq_advice_load(qp_store *store, qp_report *r, size_t shown) {
  rq_advice *a = calloc(1, sizeof *a);
  if (a == NULL) return NULL;
  a->r = r;
  a->n = qp_report_count(r);
  a->shown = shown;
  /* a store that cannot give it only goes without (the page says nothing
   * of advice then) */
  if (store != NULL && a->n > 0) (void)qp_store_advice_each(store, load_one, a);
  if (a->nruns > 0 && !index_runs(a)) runs_free(a);
  return a;
}

size_t rq_advice_runs(const rq_advice *a) { return a != NULL ? a->nruns : 0; }

void rq_advice_free(rq_advice *a) {
  if (a == NULL) return;
  runs_free(a);
  free(a);
}

static const char *jtext(json_t *o, const char *key) {
  const char *v = json_string_value(json_object_get(o, key));
  return v != NULL ? v : "";
}

static double jnumber(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  return json_is_number(v) ? json_number_value(v) : -1;
}

static void num_td(FILE *f, const char *text, double v) {
  fprintf(f, "<td class=\"n\" data-v=\"%.17g\">%s</td>", v, text);
}

/* A query an advice names (its report index i, resolved at load): #N when
 * it is in the report (a link when its details are on the page), else its
 * text, shortened. */
static void advice_query(FILE *f, rq_advice *a, size_t i, json_t *q) {
  if (i < a->n) {
    if (i < a->shown) fprintf(f, "<a href=\"#q%zu\">#%zu</a>", i + 1, i + 1);
    else fprintf(f, "#%zu", i + 1);
    return;
  }
  fputs("<code>", f);
  rq_html_text(f, rq_shorten(jtext(q, "query"), SHORT_TEXT, a->text, sizeof a->text));
  fputs("</code>", f);
}

static const char *per_day(double ms, char *buf, size_t len) {
  if (ms < 0) return "unknown";
  char t[40];
  snprintf(buf, len, "%s/day", rq_dur(ms * 1e6, t, sizeof t));
  return buf;
}

void rq_advice_section(FILE *f, rq_advice *a) {
  if (rq_advice_runs(a) == 0) return;
  char b[64], c[64];
  fputs("<section id=\"advice\">\n<h2>Advisor findings</h2>\n", f);
  for (size_t k = 0; k < a->nruns; k++) {
    advice_doc *d = &a->runs[k];
    fputs("<div class=\"advice\">\n<p class=\"note\">From <code>qprof advise --save</code> on ", f);
    rq_html_text(f, d->database);
    fprintf(f, ", %s", rq_iso(d->at_ns, b, sizeof b));
    if (d->doc == NULL) {
      fputs(":</p>\n<p class=\"err\">the saved advice could not be read (not an advise "
            "document)</p>\n</div>\n",
            f);
      continue;
    }
    fputs(" (verify: ", f);
    rq_html_text(f, jtext(d->doc, "verify"));
    fputs(").</p>\n", f);
    json_t *sg = json_object_get(d->doc, "suggestions");
    size_t dq = 0;
    if (json_array_size(sg) == 0) {
      fputs("<p class=\"none\">No index would help the advised queries.</p>\n", f);
    } else {
      fputs("<table class=\"advice-indexes\">\n<thead><tr><th>index</th><th>verified</th>"
            "<th class=\"n\">time given back</th><th class=\"n\">size</th><th>queries</th>"
            "<th>warning</th></tr></thead>\n<tbody>\n",
            f);
      size_t i;
      json_t *x;
      json_array_foreach(sg, i, x) {
        fputs("<tr><td><code>", f);
        rq_html_text(f, jtext(x, "statement"));
        fputs("</code><br><span class=\"note\">", f);
        rq_html_text(f, jtext(x, "reason"));
        fputs("</span></td><td>", f);
        rq_html_text(f, jtext(x, "how"));
        fputs("</td>", f);
        double saved = jnumber(x, "saved_ms_per_day");
        num_td(f, per_day(saved, b, sizeof b), saved);
        double size = jnumber(x, "size_bytes");
        if (size >= 0) snprintf(c, sizeof c, "%.0f kB", size / 1024);
        else snprintf(c, sizeof c, "unknown");
        num_td(f, c, size);
        fputs("<td>", f);
        size_t j;
        json_t *q;
        json_array_foreach(json_object_get(x, "queries"), j, q) {
          if (j > 0) fputs(", ", f);
          advice_query(f, a, d->sq[dq++], q);
        }
        fputs("</td><td>", f);
        const char *w = jtext(x, "profile_warning");
        rq_html_text(f, w[0] != '\0' ? w : jtext(x, "write_warning"));
        fputs("</td></tr>\n", f);
      }
      fputs("</tbody>\n</table>\n", f);
    }
    /* findings that are not indexes, and statements that could not be advised on */
    bool open = false;
    size_t i;
    json_t *st;
    json_array_foreach(json_object_get(d->doc, "statements"), i, st) {
      size_t j;
      json_t *fd;
      json_array_foreach(json_object_get(st, "findings"), j, fd) {
        if (!open) fputs("<ul class=\"findings\">\n", f);
        open = true;
        fputs("<li>", f);
        advice_query(f, a, d->st[i], st);
        fputs(": <strong>", f);
        rq_html_text(f, jtext(fd, "rule"));
        fputs("</strong> ", f);
        rq_html_text(f, jtext(fd, "message"));
        const char *act = jtext(fd, "action");
        if (act[0] != '\0') {
          fputs(" <code>", f);
          rq_html_text(f, act);
          fputs("</code>", f);
        }
        fputs("</li>\n", f);
      }
      if (strcmp(jtext(st, "status"), "advised") != 0) {
        if (!open) fputs("<ul class=\"findings\">\n", f);
        open = true;
        fputs("<li class=\"err\">", f);
        advice_query(f, a, d->st[i], st);
        fputs(": not advised on: ", f);
        rq_html_text(f, jtext(st, "error"));
        fputs("</li>\n", f);
      }
    }
    if (open) fputs("</ul>\n", f);
    fputs("</div>\n", f);
  }
  fputs("</section>\n", f);
}

void rq_advice_for_query(FILE *f, rq_advice *a, uint64_t fingerprint) {
  if (rq_advice_runs(a) == 0) return;
  size_t k = fp_lower(a->refs, a->nrefs, sizeof *a->refs, offsetof(advice_ref, fp), fingerprint);
  if (k == a->nrefs || a->refs[k].fp != fingerprint) return;
  char b[64];
  fputs("<h4>Advice</h4>\n<ul class=\"query-advice\">\n", f);
  for (; k < a->nrefs && a->refs[k].fp == fingerprint; k++) {
    fputs("<li><code>", f);
    rq_html_text(f, jtext(a->refs[k].sug, "statement"));
    fputs("</code> (", f);
    rq_html_text(f, jtext(a->refs[k].sug, "how"));
    fprintf(f, "): gives back %s</li>\n",
            per_day(jnumber(a->refs[k].q, "saved_ms_per_day"), b, sizeof b));
  }
  fputs("</ul>\n", f);
}
