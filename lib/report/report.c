/* The report model (include/qprof/report.h): one window of one store,
 * filtered, with totals and shares, ranked. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <math.h>
#include <stddef.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "report/report_int.h"

/* The size of the first qp_report_options: a caller compiled against it
 * passes at least this much. A field added later is read only when o->size
 * covers it, and defaulted otherwise (docs/api.md, "Structs that grow"). */
#define QP_REPORT_OPTIONS_V1_SIZE (offsetof(qp_report_options, hooks) + sizeof(const qp_hooks *))

static const char *const sort_names[] = {"total", "mean", "p95", "p99", "calls", "rows", "errors"};

const char *qp_report_sort_name(qp_report_sort sort) {
  return (unsigned)sort < QP_ARRAY_LEN(sort_names) ? sort_names[sort] : NULL;
}

qp_status qp_report_sort_parse(const char *name, qp_report_sort *out) {
  if (name == NULL || out == NULL) return QP_INVALID;
  for (size_t i = 0; i < QP_ARRAY_LEN(sort_names); i++) {
    if (strcmp(name, sort_names[i]) == 0) {
      *out = (qp_report_sort)i;
      return QP_OK;
    }
  }
  return QP_INVALID;
}

void qp_report_options_init(qp_report_options *o) {
  if (o == NULL) return;
  memset(o, 0, sizeof *o);
  o->size = sizeof *o;
  o->since_ns = INT64_MIN;
  o->until_ns = INT64_MAX;
  o->sort = QP_REPORT_SORT_TOTAL;
}

/* ---- filters ------------------------------------------------------------- */

static void *pcre_alloc(size_t n, void *ud) { return qp__malloc((const qp_hooks *)ud, n); }
static void pcre_free(void *p, void *ud) { qp__free((const qp_hooks *)ud, p); }

typedef struct filter {
  pcre2_general_context *gctx;
  pcre2_code *match, *exclude;
  pcre2_match_data *md;
  uint64_t min_calls;
} filter;

static void filter_free(filter *f) {
  pcre2_match_data_free(f->md);
  pcre2_code_free(f->match);
  pcre2_code_free(f->exclude);
  pcre2_general_context_free(f->gctx);
  memset(f, 0, sizeof *f);
}

static qp_status compile(filter *f, const char *what, const char *pat, bool caseless,
                         pcre2_code **out, char *errbuf, size_t errlen) {
  int err;
  PCRE2_SIZE off;
  uint32_t flags = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (caseless ? PCRE2_CASELESS : 0);
  pcre2_compile_context *cctx = pcre2_compile_context_create(f->gctx);
  if (cctx == NULL) return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  *out = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, flags, &err, &off, cctx);
  pcre2_compile_context_free(cctx);
  if (*out == NULL) {
    if (err == PCRE2_ERROR_NOMEMORY || err == PCRE2_ERROR_HEAP_FAILED)
      return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return qp__errbuf_set(errbuf, errlen, QP_PATTERN, "%s pattern '%s' is invalid at offset %zu: %s",
                          what, pat, (size_t)off, (const char *)msg);
  }
  (void)pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE);
  return QP_OK;
}

static qp_status check_opts(const qp_report_options *o, char *errbuf, size_t errlen) {
  if (o == NULL) return qp__errbuf_set(errbuf, errlen, QP_INVALID, "options are NULL");
  if (o->size < QP_REPORT_OPTIONS_V1_SIZE)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID,
                          "options not set up with qp_report_options_init (size %zu)", o->size);
  if (o->since_ns >= o->until_ns)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "the window ends before it starts");
  if (qp_report_sort_name(o->sort) == NULL)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "unknown sort key %d", (int)o->sort);
  return QP_OK;
}

static qp_status filter_init(filter *f, const qp_hooks *h, const qp_report_options *o,
                             char *errbuf, size_t errlen) {
  memset(f, 0, sizeof *f);
  f->min_calls = o->min_calls;
  if (o->match == NULL && o->exclude == NULL) return QP_OK;
  f->gctx = pcre2_general_context_create(pcre_alloc, pcre_free, (void *)h);
  if (f->gctx == NULL) return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  qp_status rc = QP_OK;
  if (o->match != NULL) rc = compile(f, "match", o->match, !o->case_sensitive, &f->match, errbuf, errlen);
  if (rc == QP_OK && o->exclude != NULL)
    rc = compile(f, "exclude", o->exclude, !o->case_sensitive, &f->exclude, errbuf, errlen);
  if (rc == QP_OK) {
    f->md = pcre2_match_data_create(1, f->gctx);
    if (f->md == NULL) rc = qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  }
  if (rc != QP_OK) filter_free(f);
  return rc;
}

/* 1 match, 0 no match, -1 out of memory */
static int matches(filter *f, pcre2_code *re, const char *s) {
  int rc = pcre2_match(re, (PCRE2_SPTR)s, PCRE2_ZERO_TERMINATED, 0, 0, f->md, NULL);
  if (rc == PCRE2_ERROR_NOMEMORY) return -1;
  return rc >= 0 ? 1 : 0;
}

qp_status qp_report_check(const qp_report_options *o, char *errbuf, size_t errlen) {
  qp_status rc = check_opts(o, errbuf, errlen);
  if (rc != QP_OK) return rc;
  qp_hooks h;
  qp__hooks_init(&h, o->hooks);
  filter f;
  rc = filter_init(&f, &h, o, errbuf, errlen);
  if (rc == QP_OK) filter_free(&f);
  return rc;
}

/* ---- entries ------------------------------------------------------------- */

uint64_t qp__report_key_hash(uint64_t fp, qp_backend be, const char *db) {
  uint64_t h = fp ^ ((uint64_t)be * 0x9e3779b97f4a7c15ull);
  for (const unsigned char *p = (const unsigned char *)db; *p; p++) h = (h ^ *p) * 0x100000001b3ull;
  h ^= h >> 29;
  return h * 0xbf58476d1ce4e5b9ull;
}

int qp__report_key_cmp(const qp_rentry *a, const qp_rentry *b) {
  if (a->s.fingerprint != b->s.fingerprint) return a->s.fingerprint < b->s.fingerprint ? -1 : 1;
  int c = strcmp(a->s.backend, b->s.backend);
  return c != 0 ? c : strcmp(a->s.database, b->s.database);
}

const qp_rentry *qp__report_find(const qp_report *r, uint64_t fp, qp_backend be, const char *db,
                                 uint64_t hash) {
  if (r->nslots == 0) return NULL;
  for (size_t j = hash & (r->nslots - 1);; j = (j + 1) & (r->nslots - 1)) {
    size_t k = r->slots[j];
    if (k == 0) return NULL;
    const qp_rentry *e = &r->v[k - 1];
    if (e->hash == hash && e->s.fingerprint == fp && e->backend == be &&
        strcmp(e->database, db) == 0)
      return e;
  }
}

static void rentry_free(const qp_hooks *h, qp_rentry *e) {
  qp__hist_free(&e->hist, h);
  qp__free(h, e->query); /* the one block of all its strings */
}

/* Copies the four strings of an entry into one block: one allocation per
 * query, not four. */
static bool copy_strings(const qp_hooks *h, qp_rentry *x, const char *query, const char *sample,
                         const char *codes, const char *database) {
  size_t lq = strlen(query) + 1, lc = strlen(codes) + 1, ld = strlen(database) + 1;
  size_t ls = sample != NULL ? strlen(sample) + 1 : 0;
  char *b = qp__malloc(h, lq + lc + ld + ls);
  if (b == NULL) return false;
  x->query = memcpy(b, query, lq);
  x->codes = memcpy(b + lq, codes, lc);
  x->database = memcpy(b + lq + lc, database, ld);
  x->sample = sample != NULL ? memcpy(b + lq + lc + ld, sample, ls) : NULL;
  return true;
}

typedef struct build_ctx {
  qp_report *r;
  filter *f;
  qp_buf codes;
} build_ctx;

static qp_status take(void *ud, qp_entry *e, const char *query, const char *sample) {
  build_ctx *c = ud;
  qp_report *r = c->r;
  r->t.queries_in_window++;
  if (e->st.calls < c->f->min_calls) return QP_OK;
  int m = c->f->match != NULL ? matches(c->f, c->f->match, query) : 1;
  if (m == 1 && c->f->exclude != NULL) m = matches(c->f, c->f->exclude, query) == 1 ? 0 : m;
  if (m < 0) return qp__err_set(&r->err, QP_NOMEM, "out of memory");
  if (m == 0) return QP_OK;
  if (r->n == r->cap) {
    /* room for every query of the window at once: no doubling for a big one */
    size_t cap = r->cap ? r->cap * 2 : r->w.queries > 0 ? r->w.queries : 64;
    qp_rentry *v = qp__realloc(&r->hooks, r->v, cap * sizeof *v);
    if (v == NULL) return qp__err_set(&r->err, QP_NOMEM, "out of memory");
    r->v = v;
    r->cap = cap;
  }
  qp_rentry *x = &r->v[r->n];
  memset(x, 0, sizeof *x);
  qp__hist_init(&x->hist);
  if (!qp__summary_fill(&x->s, e, query, sample, &c->codes))
    return qp__err_set(&r->err, QP_NOMEM, "out of memory");
  if (!copy_strings(&r->hooks, x, query, sample, x->s.error_codes, e->database))
    return qp__err_set(&r->err, QP_NOMEM, "out of memory");
  /* The merged histogram is taken when the store and the report allocate
   * alike, so that a big window is not held twice; else copied. */
  if (r->store->hooks.realloc_fn == r->hooks.realloc_fn &&
      r->store->hooks.alloc_ud == r->hooks.alloc_ud) {
    x->hist = e->st.hist;
    qp__hist_init(&e->st.hist);
  } else if (!qp__hist_merge(&x->hist, &e->st.hist, &r->hooks)) {
    rentry_free(&r->hooks, x);
    return qp__err_set(&r->err, QP_NOMEM, "out of memory");
  }
  x->backend = e->backend;
  x->hash = qp__report_key_hash(e->fingerprint, e->backend, x->database);
  x->s.database = x->database;
  x->s.query = x->query;
  x->s.sample = x->sample;
  x->s.error_codes = x->codes;
  r->n++;
  return QP_OK;
}

static double key_of(const qp_rentry *e, qp_report_sort k) {
  switch (k) {
  case QP_REPORT_SORT_TOTAL: return (double)e->s.total_ns;
  case QP_REPORT_SORT_MEAN: return e->s.mean_ns;
  case QP_REPORT_SORT_P95: return e->s.p95_ns;
  case QP_REPORT_SORT_P99: return e->s.p99_ns;
  case QP_REPORT_SORT_CALLS: return (double)e->s.calls;
  case QP_REPORT_SORT_ROWS: return (double)e->s.rows;
  case QP_REPORT_SORT_ERRORS: return (double)e->s.errors;
  }
  return 0;
}

int qp__report_rank_cmp(const qp_rentry *x, const qp_rentry *y, qp_report_sort k) {
  double kx = key_of(x, k), ky = key_of(y, k);
  if (kx != ky) return kx > ky ? -1 : 1;
  if (x->s.total_ns != y->s.total_ns) return x->s.total_ns > y->s.total_ns ? -1 : 1;
  return qp__report_key_cmp(x, y);
}

static int cmp_rank(const void *a, const void *b, void *arg) {
  return qp__report_rank_cmp(a, b, *(const qp_report_sort *)arg);
}

static qp_status finish(qp_report *r) {
  if (r->n > 1) qsort_r(r->v, r->n, sizeof *r->v, cmp_rank, &r->sort);
  qp_report_totals *t = &r->t;
  t->queries = r->n;
  for (size_t i = 0; i < r->n; i++) {
    const qp_query_summary *s = &r->v[i].s;
    t->calls += s->calls;
    t->errors += s->errors;
    t->total_ns += s->total_ns;
    if (i == 0 || s->first_seen_ns < t->first_seen_ns) t->first_seen_ns = s->first_seen_ns;
    if (i == 0 || s->last_seen_ns > t->last_seen_ns) t->last_seen_ns = s->last_seen_ns;
  }
  for (size_t i = 0; i < r->n; i++)
    r->v[i].share = t->total_ns > 0 ? (double)r->v[i].s.total_ns / (double)t->total_ns : 0;
  /* the key index, at most half full */
  size_t ns = 16;
  while (ns < r->n * 2) ns *= 2;
  r->slots = qp__calloc(&r->hooks, ns, sizeof *r->slots);
  if (r->slots == NULL) return qp__err_set(&r->err, QP_NOMEM, "out of memory");
  r->nslots = ns;
  for (size_t i = 0; i < r->n; i++) {
    size_t j = r->v[i].hash & (ns - 1);
    while (r->slots[j] != 0) j = (j + 1) & (ns - 1);
    r->slots[j] = i + 1;
  }
  return QP_OK;
}

/* Whether the window's edges cut stored buckets (see qp_report_totals). */
static qp_status edges(qp_report *r) {
  qp_report_totals *t = &r->t;
  int64_t b;
  bool cut;
  qp_status rc = QP_OK;
  if (t->since_ns != INT64_MIN) {
    rc = qp__store_edge(r->store, t->since_ns, &b, &cut);
    if (rc == QP_OK && cut) {
      t->since_rounded = true;
      t->since_bucket_ns = b * 1000000000LL;
    }
  }
  if (rc == QP_OK && t->until_ns != INT64_MAX) {
    rc = qp__store_edge(r->store, t->until_ns, &b, &cut);
    if (rc == QP_OK && cut) {
      t->until_rounded = true;
      t->until_bucket_ns = b * 1000000000LL;
    }
  }
  if (rc != QP_OK) qp__err_set(&r->err, rc, "%s", qp_store_errmsg(r->store));
  return rc;
}

qp_status qp_report_new(qp_report **out, qp_store *store, const qp_report_options *o,
                        char *errbuf, size_t errlen) {
  if (out == NULL) return qp__errbuf_set(errbuf, errlen, QP_INVALID, "out is NULL");
  *out = NULL;
  if (store == NULL) return qp__errbuf_set(errbuf, errlen, QP_INVALID, "store is NULL");
  qp_status rc = check_opts(o, errbuf, errlen);
  if (rc != QP_OK) return rc;
  qp_hooks h;
  qp__hooks_init(&h, o->hooks);
  qp_report *r = qp__calloc(&h, 1, sizeof *r);
  if (r == NULL) return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  r->hooks = h;
  r->store = store;
  r->sort = o->sort;
  r->t.sort = o->sort;
  r->t.since_ns = o->since_ns;
  r->t.until_ns = o->until_ns;
  r->location = qp__strdup(&r->hooks, qp_store_location(store));
  if (r->location == NULL) {
    qp_report_free(r);
    return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  }
  r->t.store = r->location;
  filter f;
  rc = filter_init(&f, &r->hooks, o, errbuf, errlen);
  if (rc != QP_OK) {
    qp_report_free(r);
    return rc;
  }
  build_ctx c = {.r = r, .f = &f};
  qp__buf_init(&c.codes, &r->hooks);
  rc = qp__store_aggregate(store, o->since_ns, o->until_ns, take, &c, &r->w);
  if (rc != QP_OK && r->err.msg[0] == '\0') qp__err_set(&r->err, rc, "%s", qp_store_errmsg(store));
  qp__buf_free(&c.codes);
  filter_free(&f);
  if (rc == QP_OK) rc = finish(r);
  if (rc == QP_OK) rc = edges(r);
  if (rc == QP_OK) {
    rc = qp__store_dropped(store, o->since_ns, o->until_ns, &r->t.dropped);
    if (rc != QP_OK) qp__err_set(&r->err, rc, "%s", qp_store_errmsg(store));
  }
  if (rc != QP_OK) {
    qp__errbuf_set(errbuf, errlen, rc, "%s", r->err.msg);
    qp_report_free(r);
    return rc;
  }
  qp__err_clear(&r->err);
  *out = r;
  return QP_OK;
}

void qp_report_free(qp_report *r) {
  if (r == NULL) return;
  qp_hooks h = r->hooks;
  for (size_t i = 0; i < r->n; i++) rentry_free(&h, &r->v[i]);
  qp__free(&h, r->v);
  qp__free(&h, r->slots);
  qp__free(&h, r->location);
  qp__free(&h, r);
}

const char *qp_report_errmsg(const qp_report *r) { return r == NULL ? "report is NULL" : r->err.msg; }

const qp_report_totals *qp_report_totals_get(const qp_report *r) { return r == NULL ? NULL : &r->t; }

size_t qp_report_count(const qp_report *r) { return r == NULL ? 0 : r->n; }

const qp_query_summary *qp_report_query(const qp_report *r, size_t i) {
  return r == NULL || i >= r->n ? NULL : &r->v[i].s;
}

double qp_report_share(const qp_report *r, size_t i) {
  return r == NULL || i >= r->n ? 0 : r->v[i].share;
}

/* ---- times ----------------------------------------------------------------- */

qp_status qp_report_parse_time(const char *text, int64_t *out_ns) {
  if (text == NULL || out_ns == NULL) return QP_INVALID;
  return qp__parse_time(text, qp__wall_ns(), out_ns) ? QP_OK : QP_SYNTAX;
}

const char *qp_report_format_time(int64_t wall_ns, char *buf, size_t len) {
  if (buf == NULL || len == 0) return "";
  qp__format_iso8601(wall_ns, buf, len);
  return buf;
}

double qp_query_cache_hit_rate(const qp_query_summary *q) {
  if (q == NULL || q->cache_hits + q->calls == 0) return 0;
  return (double)q->cache_hits / (double)(q->cache_hits + q->calls);
}

double qp_query_cache_saved_ns(const qp_query_summary *q) {
  if (q == NULL || q->calls == 0) return 0;
  double saved = (double)q->cache_hits * q->mean_ns - (double)q->cache_hit_ns;
  return saved > 0 ? saved : 0;
}
