/* Helpers shared by `qprof report` and `qprof diff` (see report_common.h). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "report_common.h"

#include <math.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "internal.h"

const char *rq_store_path(const char *opt) {
  if (opt != NULL && opt[0] != '\0') return opt;
  const char *env = getenv("QPROF_STORE");
  if (env != NULL && env[0] != '\0') return env;
  return "qprof.db";
}

bool rq_parse_time(const char *verb, const char *opt, const char *text, int64_t *out) {
  if (!qp__parse_time(text, qp__wall_ns(), out)) {
    cli_usage_error(verb,
                    "%s '%s' is not a time (ISO 8601 like 2026-11-22T10:00Z, @UNIX, -15m, -2h, "
                    "-1d or now)",
                    opt, text);
    return false;
  }
  return true;
}

static char *xstrdup(const char *s) {
  if (s == NULL) return NULL;
  char *d = strdup(s);
  if (d == NULL) {
    fprintf(stderr, "qprof: out of memory\n");
    exit(QP_EXIT_FAIL);
  }
  return d;
}

static int collect(const qp_query_summary *q, void *ud) {
  rq_set *set = ud;
  if (set->n == set->cap) {
    size_t cap = set->cap ? set->cap * 2 : 256;
    rq *v = realloc(set->v, cap * sizeof *v);
    if (v == NULL) {
      fprintf(stderr, "qprof: out of memory\n");
      exit(QP_EXIT_FAIL);
    }
    set->v = v;
    set->cap = cap;
  }
  rq *r = &set->v[set->n++];
  r->s = *q;
  r->s.backend = xstrdup(q->backend);
  r->s.database = xstrdup(q->database);
  r->s.query = xstrdup(q->query);
  r->s.sample = xstrdup(q->sample);
  r->s.error_codes = xstrdup(q->error_codes);
  qp_fingerprint_hex(q->fingerprint, r->fp);
  r->share = 0;
  return 0;
}

static void totals(rq_set *set) {
  set->calls = set->errors = 0;
  set->total_ns = 0;
  for (size_t i = 0; i < set->n; i++) {
    set->calls += set->v[i].s.calls;
    set->errors += set->v[i].s.errors;
    set->total_ns += (double)set->v[i].s.total_ns;
  }
  for (size_t i = 0; i < set->n; i++)
    set->v[i].share = set->total_ns > 0 ? (double)set->v[i].s.total_ns / set->total_ns : 0;
}

bool rq_load(const char *verb, const char *path, int64_t since, int64_t until, rq_set *out) {
  memset(out, 0, sizeof *out);
  qp_store *s;
  char err[1024];
  qp_status rc = qp_store_open(&s, path, QP_STORE_READ, NULL, err, sizeof err);
  if (rc != QP_OK) {
    if (rc == QP_NOTFOUND)
      cli_fail(verb, "%s (record with the pool or `qprof run` first, or pass --store)", err);
    else
      cli_fail(verb, "%s", err);
    return false;
  }
  out->location = xstrdup(qp_store_location(s));
  rc = qp_store_summarize(s, since, until, collect, out);
  if (rc != QP_OK) {
    cli_fail(verb, "%s", qp_store_errmsg(s));
    qp_store_close(s);
    rq_set_free(out);
    return false;
  }
  qp_store_close(s);
  totals(out);
  return true;
}

static void rq_free_one(rq *r) {
  free((char *)r->s.backend);
  free((char *)r->s.database);
  free((char *)r->s.query);
  free((char *)r->s.sample);
  free((char *)r->s.error_codes);
}

void rq_set_free(rq_set *set) {
  for (size_t i = 0; i < set->n; i++) rq_free_one(&set->v[i]);
  free(set->v);
  free(set->location);
  memset(set, 0, sizeof *set);
}

static int compile(const char *verb, const char *opt, const char *pat, void **out) {
  int err;
  PCRE2_SIZE off;
  pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                                 PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &err, &off, NULL);
  if (re == NULL) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return cli_usage_error(verb, "%s pattern '%s' is invalid at offset %zu: %s", opt, pat,
                           (size_t)off, (const char *)msg);
  }
  pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
  *out = re;
  return QP_EXIT_OK;
}

int rq_filter_init(const char *verb, rq_filter *f, const char *match, const char *exclude,
                   uint64_t min_calls) {
  memset(f, 0, sizeof *f);
  f->min_calls = min_calls;
  int rc = QP_EXIT_OK;
  if (match != NULL) rc = compile(verb, "--match", match, &f->match);
  if (rc == QP_EXIT_OK && exclude != NULL) rc = compile(verb, "--exclude", exclude, &f->exclude);
  if (rc != QP_EXIT_OK) rq_filter_free(f);
  return rc;
}

static bool matches(void *re, const char *s) {
  pcre2_match_data *md = pcre2_match_data_create(1, NULL);
  if (md == NULL) return false;
  int rc = pcre2_match(re, (PCRE2_SPTR)s, PCRE2_ZERO_TERMINATED, 0, 0, md, NULL);
  pcre2_match_data_free(md);
  return rc >= 0;
}

bool rq_filter_pass(const rq_filter *f, const qp_query_summary *s) {
  if (s->calls < f->min_calls) return false;
  if (f->match != NULL && !matches(f->match, s->query)) return false;
  if (f->exclude != NULL && matches(f->exclude, s->query)) return false;
  return true;
}

void rq_filter_free(rq_filter *f) {
  pcre2_code_free(f->match);
  pcre2_code_free(f->exclude);
  f->match = f->exclude = NULL;
}

void rq_set_filter(rq_set *set, const rq_filter *f) {
  size_t k = 0;
  for (size_t i = 0; i < set->n; i++) {
    if (rq_filter_pass(f, &set->v[i].s)) set->v[k++] = set->v[i];
    else rq_free_one(&set->v[i]);
  }
  set->n = k;
  totals(set);
}

double rq_ms(double ns) { return round(ns / 1000.0) / 1000.0; }

const char *rq_dur(double ns, char *buf, size_t len) {
  if (ns < 1e3) snprintf(buf, len, "%.0fns", ns);
  else if (ns < 1e6) snprintf(buf, len, "%.0fus", ns / 1e3);
  else if (ns < 1e7) snprintf(buf, len, "%.2fms", ns / 1e6);
  else if (ns < 1e9) snprintf(buf, len, "%.1fms", ns / 1e6);
  else if (ns < 6e10) snprintf(buf, len, "%.2fs", ns / 1e9);
  else if (ns < 3.6e12) snprintf(buf, len, "%.0fm%02.0fs", floor(ns / 6e10), fmod(ns / 1e9, 60));
  else snprintf(buf, len, "%.0fh%02.0fm", floor(ns / 3.6e12), fmod(floor(ns / 6e10), 60));
  return buf;
}

const char *rq_count(uint64_t n, char *buf, size_t len) {
  char raw[32];
  int d = snprintf(raw, sizeof raw, "%llu", (unsigned long long)n);
  size_t k = 0;
  for (int i = 0; i < d && k + 2 < len; i++) {
    buf[k++] = raw[i];
    int left = d - i - 1;
    if (left > 0 && left % 3 == 0) buf[k++] = ',';
  }
  buf[k] = '\0';
  return buf;
}

const char *rq_iso(int64_t ns, char *buf, size_t len) {
  qp__format_iso8601(ns, buf, len);
  return buf;
}

void rq_csv_field(FILE *f, const char *s) {
  if (s == NULL) s = "";
  if (strpbrk(s, ",\"\r\n") == NULL) {
    fputs(s, f);
    return;
  }
  fputc('"', f);
  for (; *s; s++) {
    if (*s == '"') fputc('"', f);
    fputc(*s, f);
  }
  fputc('"', f);
}

json_t *rq_codes_json(const char *codes) {
  json_t *o = json_object();
  const char *p = codes ? codes : "";
  while (*p) {
    const char *colon = strchr(p, ':');
    if (colon == NULL) break;
    char code[64];
    size_t n = (size_t)(colon - p);
    if (n >= sizeof code) n = sizeof code - 1;
    memcpy(code, p, n);
    code[n] = '\0';
    char *end;
    unsigned long long c = strtoull(colon + 1, &end, 10);
    json_object_set_new(o, code, json_integer((json_int_t)c));
    p = *end == ',' ? end + 1 : end;
    if (end == colon + 1) break;
  }
  return o;
}

void rq_json_print(json_t *j) {
  char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
  if (s != NULL) {
    fputs(s, stdout);
    fputc('\n', stdout);
    free(s);
  }
  json_decref(j);
}

const char *rq_shorten(const char *s, size_t width, char *buf, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  size_t total_cols = 0;
  for (const unsigned char *q = p; *q; q++)
    if ((*q & 0xc0) != 0x80) total_cols++;
  bool cut = width > 0 && total_cols > width;
  size_t limit = cut ? (width > 3 ? width - 3 : 0) : SIZE_MAX; /* room for "..." */
  size_t k = 0, cols = 0;
  for (; *p; p++) {
    if ((*p & 0xc0) != 0x80) { /* stop only at a character boundary */
      if (cols == limit) break;
      if (k + 8 >= len) {
        cut = true;
        break;
      }
      cols++;
    }
    buf[k++] = *p < 0x20 || *p == 0x7f ? ' ' : (char)*p;
  }
  if (cut) {
    memcpy(buf + k, "...", 3);
    k += 3;
  }
  buf[k] = '\0';
  return buf;
}
