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

/* The caller's options with the fields its header did not have defaulted
 * (o->size is at least QP_REPORT_OPTIONS_V1_SIZE, checked before). */
static void opts_full(const qp_report_options *o, qp_report_options *x) {
  qp_report_options_init(x);
  memcpy(x, o, o->size < sizeof *x ? o->size : sizeof *x);
  x->size = sizeof *x;
}

/* ---- dimensions ---------------------------------------------------------- */

static const char *const dim_names[] = {"database", "user", "application", "host"};

const char *qp_report_group_by_name(qp_report_group_by by) {
  return (unsigned)by < QP_ARRAY_LEN(dim_names) ? dim_names[by] : NULL;
}

qp_status qp_report_group_by_parse(const char *name, qp_report_group_by *out) {
  if (name == NULL || out == NULL) return QP_INVALID;
  for (size_t i = 0; i < QP_ARRAY_LEN(dim_names); i++) {
    if (strcmp(name, dim_names[i]) == 0) {
      *out = (qp_report_group_by)i;
      return QP_OK;
    }
  }
  return QP_INVALID;
}

qp_status qp_report_by_parse(const char *list, unsigned *out, char *errbuf, size_t errlen) {
  if (list == NULL || out == NULL)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "the list or out is NULL");
  if (strcmp(list, "none") == 0) {
    *out = QP_REPORT_KEY_NONE;
    return QP_OK;
  }
  unsigned bits = 0;
  const char *p = list;
  for (;;) {
    const char *comma = strchr(p, ',');
    size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);
    bool found = false;
    for (size_t i = 0; i < QP_ARRAY_LEN(dim_names) && !found; i++) {
      if (strlen(dim_names[i]) == n && memcmp(p, dim_names[i], n) == 0) {
        bits |= QP_REPORT_KEY(i);
        found = true;
      }
    }
    if (!found) {
      if (n == 0)
        return qp__errbuf_set(errbuf, errlen, QP_INVALID,
                              "'%s' has an empty dimension: give user, application, host or "
                              "database, separated by commas, or none",
                              list);
      return qp__errbuf_set(errbuf, errlen, QP_INVALID,
                            "unknown dimension '%.*s': the dimensions are user, application, "
                            "host and database (separated by commas), or none",
                            (int)(n > 200 ? 200 : n), p);
    }
    if (comma == NULL) break;
    p = comma + 1;
  }
  *out = bits;
  return QP_OK;
}

qp_status qp_report_dim_filter_parse(const char *f, bool *regex, bool *caseless,
                                     const char **start, size_t *len) {
  if (f == NULL || regex == NULL || caseless == NULL || start == NULL || len == NULL)
    return QP_INVALID;
  size_t n = strlen(f);
  *regex = *caseless = false;
  if (n >= 2 && f[0] == '/' && f[n - 1] == '/') {
    *regex = true;
    *start = f + 1;
    *len = n - 2;
  } else if (n >= 3 && f[0] == '/' && f[n - 2] == '/' && f[n - 1] == 'i') {
    *regex = *caseless = true;
    *start = f + 1;
    *len = n - 3;
  } else if (f[0] == '=') {
    *start = f + 1;
    *len = n - 1;
  } else {
    *start = f;
    *len = n;
  }
  return QP_OK;
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

/* Compiles pat[0..len) (PCRE2_ZERO_TERMINATED: to its NUL); `shown` is
 * how the message names it. */
static qp_status compile_n(pcre2_general_context *gctx, const char *what, const char *pat,
                           size_t len, const char *shown, bool caseless, pcre2_code **out,
                           char *errbuf, size_t errlen) {
  int err;
  PCRE2_SIZE off;
  uint32_t flags = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (caseless ? PCRE2_CASELESS : 0);
  pcre2_compile_context *cctx = pcre2_compile_context_create(gctx);
  if (cctx == NULL) return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  *out = pcre2_compile((PCRE2_SPTR)pat, len, flags, &err, &off, cctx);
  const char *pat_shown = shown;
  pcre2_compile_context_free(cctx);
  if (*out == NULL) {
    if (err == PCRE2_ERROR_NOMEMORY || err == PCRE2_ERROR_HEAP_FAILED)
      return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return qp__errbuf_set(errbuf, errlen, QP_PATTERN, "%s pattern '%s' is invalid at offset %zu: %s",
                          what, pat_shown, (size_t)off, (const char *)msg);
  }
  (void)pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE);
  return QP_OK;
}

static qp_status compile(filter *f, const char *what, const char *pat, bool caseless,
                         pcre2_code **out, char *errbuf, size_t errlen) {
  return compile_n(f->gctx, what, pat, PCRE2_ZERO_TERMINATED, pat, caseless, out, errbuf, errlen);
}

/* ---- dimension filters ----------------------------------------------------- */

struct qp_rfilter {
  pcre2_general_context *gctx;
  pcre2_match_data *md;
  struct {
    bool on;
    const char *exact; /* points into the filter's text; length len */
    size_t len;
    pcre2_code *re;    /* for /REGEX/ */
  } d[4];
};

static void rfilter_free(const qp_hooks *h, qp_rfilter *f) {
  if (f == NULL) return;
  for (size_t i = 0; i < 4; i++) pcre2_code_free(f->d[i].re);
  pcre2_match_data_free(f->md);
  pcre2_general_context_free(f->gctx);
  qp__free(h, f);
}

/* The filters of o (database, user, application, host) or NULL for none
 * (*out NULL). The exact values point into the texts given, which must
 * outlive the filter. */
static qp_status rfilter_new(const qp_hooks *h, const char *const txt[4], qp_rfilter **out,
                             char *errbuf, size_t errlen) {
  *out = NULL;
  if (txt[0] == NULL && txt[1] == NULL && txt[2] == NULL && txt[3] == NULL) return QP_OK;
  qp_rfilter *f = qp__calloc(h, 1, sizeof *f);
  if (f == NULL) return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  qp_status rc = QP_OK;
  bool any_re = false;
  for (size_t i = 0; rc == QP_OK && i < 4; i++) {
    if (txt[i] == NULL) continue;
    bool re, caseless;
    const char *start;
    size_t len;
    (void)qp_report_dim_filter_parse(txt[i], &re, &caseless, &start, &len);
    f->d[i].on = true;
    if (!re) {
      f->d[i].exact = start;
      f->d[i].len = len;
      continue;
    }
    if (f->gctx == NULL) {
      f->gctx = pcre2_general_context_create(pcre_alloc, pcre_free, (void *)h);
      if (f->gctx == NULL) rc = qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
    }
    if (rc == QP_OK)
      rc = compile_n(f->gctx, dim_names[i], start, len, txt[i], caseless, &f->d[i].re, errbuf,
                     errlen);
    any_re = true;
  }
  if (rc == QP_OK && any_re) {
    f->md = pcre2_match_data_create(1, f->gctx);
    if (f->md == NULL) rc = qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  }
  if (rc != QP_OK) {
    rfilter_free(h, f);
    return rc;
  }
  *out = f;
  return QP_OK;
}

static int rfilter_keep(qp_rfilter *f, const qp_entry *row) {
  const char *v[4] = {row->database, row->user, row->application, row->host};
  for (size_t i = 0; i < 4; i++) {
    if (!f->d[i].on) continue;
    const char *x = v[i] != NULL ? v[i] : "";
    if (f->d[i].re == NULL) {
      if (strlen(x) != f->d[i].len || memcmp(x, f->d[i].exact, f->d[i].len) != 0) return 0;
      continue;
    }
    int rc = pcre2_match(f->d[i].re, (PCRE2_SPTR)x, PCRE2_ZERO_TERMINATED, 0, 0, f->md, NULL);
    if (rc == PCRE2_ERROR_NOMEMORY) return -1;
    if (rc < 0) return 0;
  }
  return 1;
}

static int keep_row(void *ud, const qp_entry *row) { return rfilter_keep(ud, row); }

int qp__report_keep_row(qp_report *r, const qp_entry *row) {
  return r->filter != NULL ? rfilter_keep(r->filter, row) : 1;
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
  if (o->size >= offsetof(qp_report_options, by) + sizeof o->by && (o->by & ~(QP_REPORT_KEY_ALL | QP_REPORT_KEY_NONE)) != 0)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "by %#x names no dimension", o->by);
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
  qp_report_options x;
  opts_full(o, &x);
  qp_hooks h;
  qp__hooks_init(&h, x.hooks);
  filter f;
  rc = filter_init(&f, &h, &x, errbuf, errlen);
  if (rc == QP_OK) filter_free(&f);
  const char *txt[4] = {x.database, x.user, x.application, x.host};
  qp_rfilter *rf;
  if (rc == QP_OK) rc = rfilter_new(&h, txt, &rf, errbuf, errlen);
  if (rc == QP_OK) rfilter_free(&h, rf);
  return rc;
}

/* ---- entries ------------------------------------------------------------- */

void qp__report_row_dims(const qp_entry *row, unsigned by, const char *d[4]) {
  d[0] = by & QP_REPORT_KEY(QP_REPORT_BY_DATABASE) ? row->database : NULL;
  d[1] = by & QP_REPORT_KEY(QP_REPORT_BY_USER) ? row->user : NULL;
  d[2] = by & QP_REPORT_KEY(QP_REPORT_BY_APPLICATION) ? row->application : NULL;
  d[3] = by & QP_REPORT_KEY(QP_REPORT_BY_HOST) ? row->host : NULL;
}

/* Dimensions not in the key are NULL on both sides of a comparison. */
static int dim_cmp(const char *a, const char *b) {
  if (a == b) return 0;
  if (a == NULL || b == NULL) return a == NULL ? -1 : 1;
  return strcmp(a, b);
}

uint64_t qp__report_key_hash(uint64_t fp, qp_backend be, const char *const d[4]) {
  uint64_t h = fp ^ ((uint64_t)be * 0x9e3779b97f4a7c15ull);
  for (size_t i = 0; i < 4; i++) {
    if (d[i] == NULL) continue;
    for (const unsigned char *p = (const unsigned char *)d[i]; *p; p++)
      h = (h ^ *p) * 0x100000001b3ull;
    h = (h ^ (0xf0u + i)) * 0x100000001b3ull; /* "a","" and "","a" differ */
  }
  h ^= h >> 29;
  return h * 0xbf58476d1ce4e5b9ull;
}

int qp__report_key_cmp(const qp_rentry *a, const qp_rentry *b) {
  if (a->s.fingerprint != b->s.fingerprint) return a->s.fingerprint < b->s.fingerprint ? -1 : 1;
  int c = strcmp(a->s.backend, b->s.backend);
  if (c == 0) c = dim_cmp(a->database, b->database);
  if (c == 0) c = dim_cmp(a->s.user, b->s.user);
  if (c == 0) c = dim_cmp(a->s.application, b->s.application);
  return c != 0 ? c : dim_cmp(a->s.host, b->s.host);
}

const qp_rentry *qp__report_find(const qp_report *r, uint64_t fp, qp_backend be,
                                 const char *const d[4], uint64_t hash) {
  if (r->nslots == 0) return NULL;
  for (size_t j = hash & (r->nslots - 1);; j = (j + 1) & (r->nslots - 1)) {
    size_t k = r->slots[j];
    if (k == 0) return NULL;
    const qp_rentry *e = &r->v[k - 1];
    if (e->hash == hash && e->s.fingerprint == fp && e->backend == be &&
        dim_cmp(e->database, d[0]) == 0 && dim_cmp(e->s.user, d[1]) == 0 &&
        dim_cmp(e->s.application, d[2]) == 0 && dim_cmp(e->s.host, d[3]) == 0)
      return e;
  }
}

static void rentry_free(const qp_hooks *h, qp_rentry *e) {
  qp__hist_free(&e->hist, h);
  qp__free(h, e->query); /* the one block of all its strings */
}

/* Copies the strings of an entry into one block: one allocation per query,
 * not one per string. A NULL dimension (not in the key) stays NULL. */
static bool copy_strings(const qp_hooks *h, qp_rentry *x, const char *query, const char *sample,
                         const char *codes, const qp_entry *e) {
  const char *d[4] = {e->database, e->user, e->application, e->host};
  size_t lq = strlen(query) + 1, lc = strlen(codes) + 1, ld[4];
  size_t ls = sample != NULL ? strlen(sample) + 1 : 0, total = lq + lc + ls;
  for (size_t i = 0; i < 4; i++) total += ld[i] = d[i] != NULL ? strlen(d[i]) + 1 : 0;
  char *b = qp__malloc(h, total);
  if (b == NULL) return false;
  x->query = memcpy(b, query, lq);
  x->codes = memcpy(b + lq, codes, lc);
  char *p = b + lq + lc, *out[4];
  for (size_t i = 0; i < 4; i++) {
    out[i] = d[i] != NULL ? memcpy(p, d[i], ld[i]) : NULL;
    p += ld[i];
  }
  x->database = out[0];
  x->s.user = out[1];
  x->s.application = out[2];
  x->s.host = out[3];
  x->sample = sample != NULL ? memcpy(p, sample, ls) : NULL;
  return true;
}

/* The dimension filters' texts, copied into one block (the totals point
 * into it). False when out of memory. */
static bool copy_filters(qp_report *r, const qp_report_options *o) {
  const char *txt[4] = {o->database, o->user, o->application, o->host};
  size_t len[4], total = 0;
  for (size_t i = 0; i < 4; i++) total += len[i] = txt[i] != NULL ? strlen(txt[i]) + 1 : 0;
  if (total == 0) return true;
  char *b = r->filters = qp__malloc(&r->hooks, total);
  if (b == NULL) return false;
  const char *out[4];
  for (size_t i = 0; i < 4; i++) {
    out[i] = txt[i] != NULL ? memcpy(b, txt[i], len[i]) : NULL;
    b += len[i];
  }
  r->t.filter_database = out[0];
  r->t.filter_user = out[1];
  r->t.filter_application = out[2];
  r->t.filter_host = out[3];
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
  if (!copy_strings(&r->hooks, x, query, sample, x->s.error_codes, e))
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
  const char *d[4] = {x->database, x->s.user, x->s.application, x->s.host};
  x->hash = qp__report_key_hash(e->fingerprint, e->backend, d);
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

/* The ranking sorts (key, index) pairs, not the entries (a few hundred
 * bytes each): the key is compared in place, the entries only on a tie. */
typedef struct rank_item {
  double key;
  size_t i;
} rank_item;

typedef struct rank_ctx {
  const qp_rentry *v;
  qp_report_sort sort;
} rank_ctx;

static int cmp_rank(const void *a, const void *b, void *arg) {
  const rank_item *x = a, *y = b;
  if (x->key != y->key) return x->key > y->key ? -1 : 1;
  const rank_ctx *c = arg;
  return qp__report_rank_cmp(&c->v[x->i], &c->v[y->i], c->sort);
}

/* Sorts r->v by rank; false when out of memory. */
static bool rank(qp_report *r) {
  if (r->n < 2) return true;
  rank_item *it = qp__malloc(&r->hooks, r->n * sizeof *it);
  if (it == NULL) return false;
  for (size_t i = 0; i < r->n; i++) it[i] = (rank_item){key_of(&r->v[i], r->sort), i};
  rank_ctx c = {r->v, r->sort};
  qsort_r(it, r->n, sizeof *it, cmp_rank, &c);
  /* position j takes entry it[j].i: follow each cycle of the permutation
   * once, marking the positions done (i = SIZE_MAX) */
  for (size_t j = 0; j < r->n; j++) {
    if (it[j].i == SIZE_MAX || it[j].i == j) continue;
    qp_rentry tmp = r->v[j];
    size_t cur = j;
    while (it[cur].i != j) {
      size_t from = it[cur].i;
      r->v[cur] = r->v[from];
      it[cur].i = SIZE_MAX;
      cur = from;
    }
    r->v[cur] = tmp;
    it[cur].i = SIZE_MAX;
  }
  qp__free(&r->hooks, it);
  return true;
}

static qp_status finish(qp_report *r) {
  if (!rank(r)) return qp__err_set(&r->err, QP_NOMEM, "out of memory");
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
  qp_report_options x;
  opts_full(o, &x);
  o = &x;
  qp_hooks h;
  qp__hooks_init(&h, o->hooks);
  qp_report *r = qp__calloc(&h, 1, sizeof *r);
  if (r == NULL) return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  r->hooks = h;
  r->store = store;
  r->sort = o->sort;
  r->by = o->by == 0 ? QP_REPORT_KEY_DEFAULT : o->by & QP_REPORT_KEY_ALL;
  r->t.sort = o->sort;
  r->t.by = r->by;
  r->t.since_ns = o->since_ns;
  r->t.until_ns = o->until_ns;
  r->location = qp__strdup(&r->hooks, qp_store_location(store));
  if (r->location == NULL || !copy_filters(r, o)) {
    qp_report_free(r);
    return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  }
  r->t.store = r->location;
  const char *txt[4] = {r->t.filter_database, r->t.filter_user, r->t.filter_application,
                        r->t.filter_host};
  rc = rfilter_new(&r->hooks, txt, &r->filter, errbuf, errlen);
  if (rc != QP_OK) {
    qp_report_free(r);
    return rc;
  }
  filter f;
  rc = filter_init(&f, &r->hooks, o, errbuf, errlen);
  if (rc != QP_OK) {
    qp_report_free(r);
    return rc;
  }
  build_ctx c = {.r = r, .f = &f};
  qp__buf_init(&c.codes, &r->hooks);
  qp_agg_key key = {.dims = r->by, .keep = r->filter != NULL ? keep_row : NULL,
                    .keep_ud = r->filter};
  rc = qp__store_aggregate_keyed(store, o->since_ns, o->until_ns, &key, take, &c, &r->w);
  if (rc != QP_OK && r->err.msg[0] == '\0') qp__err_set(&r->err, rc, "%s", qp_store_errmsg(store));
  r->t.queries_in_window = r->w.keys_all;
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
  rfilter_free(&h, r->filter);
  qp__free(&h, r->filters);
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
