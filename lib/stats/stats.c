/* Per-fingerprint statistics: moments, error codes, and their merging. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "stats/stats_int.h"

/* ---- error codes ------------------------------------------------------- */

void qp__codes_free(qp_codes *c, const qp_hooks *hooks) {
  qp__free(hooks, c->v);
  memset(c, 0, sizeof *c);
}

static void code_clean(char dst[QP_CODE_MAX], const char *src, size_t len) {
  size_t n = 0;
  for (; n < len && n < QP_CODE_MAX - 1 && src[n] != '\0'; n++) {
    char ch = src[n];
    bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '_';
    dst[n] = ok ? ch : '_';
  }
  if (n == 0) dst[n++] = '_';
  dst[n] = '\0';
}

static bool codes_add_clean(qp_codes *c, const qp_hooks *hooks, const char *code, uint64_t count) {
  for (uint32_t i = 0; i < c->n; i++) {
    if (strcmp(c->v[i].code, code) == 0) {
      c->v[i].count += count;
      return true;
    }
  }
  if (c->n == c->cap) {
    uint32_t cap = c->cap ? c->cap * 2 : 2;
    qp_code_count *v = qp__realloc(hooks, c->v, cap * sizeof *v);
    if (v == NULL) return false;
    c->v = v;
    c->cap = cap;
  }
  memcpy(c->v[c->n].code, code, strlen(code) + 1);
  c->v[c->n].count = count;
  c->n++;
  return true;
}

bool qp__codes_add(qp_codes *c, const qp_hooks *hooks, const char *code, uint64_t count) {
  char clean[QP_CODE_MAX];
  code_clean(clean, code, strlen(code));
  return codes_add_clean(c, hooks, clean, count);
}

bool qp__codes_merge(qp_codes *dst, const qp_codes *src, const qp_hooks *hooks) {
  /* Reserve first so that a failure leaves dst unchanged. */
  uint32_t need = dst->n + src->n;
  if (need > dst->cap) {
    qp_code_count *v = qp__realloc(hooks, dst->v, need * sizeof *v);
    if (v == NULL) return false;
    dst->v = v;
    dst->cap = need;
  }
  for (uint32_t i = 0; i < src->n; i++) codes_add_clean(dst, hooks, src->v[i].code, src->v[i].count);
  return true;
}

static int code_cmp(const void *a, const void *b) {
  return strcmp(((const qp_code_count *)a)->code, ((const qp_code_count *)b)->code);
}

bool qp__codes_encode(const qp_codes *c, qp_buf *out) {
  if (c->n == 0) return qp__buf_append(out, "", 0);
  qp_code_count sorted[64];
  const qp_code_count *v = c->v;
  if (c->n <= QP_ARRAY_LEN(sorted)) {
    memcpy(sorted, c->v, c->n * sizeof *sorted);
    qsort(sorted, c->n, sizeof *sorted, code_cmp);
    v = sorted;
  }
  for (uint32_t i = 0; i < c->n; i++)
    if (!qp__buf_printf(out, "%s%s:%llu", i ? "," : "", v[i].code,
                        (unsigned long long)v[i].count))
      return false;
  return true;
}

qp_status qp__codes_decode_add(qp_codes *c, const qp_hooks *hooks, const char *text, size_t len) {
  /* Parse into a temporary list first so that a syntax error changes nothing. */
  qp_codes tmp = {0};
  size_t i = 0;
  qp_status rc = QP_OK;
  while (i < len) {
    size_t start = i;
    while (i < len && text[i] != ':') i++;
    if (i == len || i == start) {
      rc = QP_SYNTAX;
      break;
    }
    char code[QP_CODE_MAX];
    code_clean(code, text + start, i - start);
    i++;
    uint64_t n = 0;
    size_t digits = 0;
    while (i < len && text[i] >= '0' && text[i] <= '9') {
      n = n * 10 + (uint64_t)(text[i] - '0');
      i++;
      digits++;
    }
    if (digits == 0 || (i < len && text[i] != ',')) {
      rc = QP_SYNTAX;
      break;
    }
    if (i < len) i++;
    if (!codes_add_clean(&tmp, hooks, code, n)) {
      rc = QP_NOMEM;
      break;
    }
  }
  if (rc == QP_OK && !qp__codes_merge(c, &tmp, hooks)) rc = QP_NOMEM;
  qp__codes_free(&tmp, hooks);
  return rc;
}

/* ---- moments ------------------------------------------------------------ */

void qp__stats_init(qp_stats *s) {
  memset(s, 0, sizeof *s);
  s->min_ns = UINT64_MAX;
  s->first_ns = INT64_MAX;
  s->last_ns = INT64_MIN;
}

void qp__stats_free(qp_stats *s, const qp_hooks *hooks) {
  qp__hist_free(&s->hist, hooks);
  qp__codes_free(&s->codes, hooks);
}

bool qp__stats_add(qp_stats *s, const qp_hooks *hooks, uint64_t duration_ns, int64_t rows,
                   const char *error, int64_t wall_ns) {
  if (!qp__hist_add(&s->hist, hooks, duration_ns)) return false;
  if (error != NULL) {
    if (!qp__codes_add(&s->codes, hooks, error, 1)) {
      /* undo the histogram count so that the event is dropped whole */
      s->hist.counts[qp__hist_index(duration_ns) - s->hist.lo]--;
      return false;
    }
    s->errors++;
  }
  s->calls++;
  if (rows > 0) s->rows += rows;
  s->total_ns += duration_ns;
  if (duration_ns < s->min_ns) s->min_ns = duration_ns;
  if (duration_ns > s->max_ns) s->max_ns = duration_ns;
  /* Welford on values shifted by the first one: stable for a small spread
   * around a large mean. */
  if (s->calls == 1) {
    s->shift = duration_ns;
    s->dmean = 0;
  }
  double x = (double)(int64_t)(duration_ns - s->shift);
  double delta = x - s->dmean;
  s->dmean += delta / (double)s->calls;
  s->m2 += delta * (x - s->dmean);
  if (wall_ns < s->first_ns) s->first_ns = wall_ns;
  if (wall_ns > s->last_ns) s->last_ns = wall_ns;
  return true;
}

/* Chan et al.: combines (n, mean, M2) of two disjoint sets. */
static void moments_merge(qp_stats *a, const qp_stats *b) {
  if (a->calls == 0) {
    a->shift = b->shift;
    a->dmean = b->dmean;
    a->m2 = b->m2;
    return;
  }
  double na = (double)a->calls, nb = (double)b->calls, nt = na + nb;
  double delta = (double)(int64_t)(b->shift - a->shift) + (b->dmean - a->dmean);
  a->m2 = a->m2 + b->m2 + delta * delta * (na * nb / nt);
  a->dmean += delta * (nb / nt);
}

void qp__stats_set_mean(qp_stats *s) {
  if (s->calls == 0) {
    s->shift = 0;
    s->dmean = 0;
    return;
  }
  s->shift = s->total_ns / s->calls;
  s->dmean = (double)(s->total_ns - s->shift * s->calls) / (double)s->calls;
}

double qp__stats_mean(const qp_stats *s) {
  return s->calls ? (double)s->shift + s->dmean : 0;
}

void qp__stats_hit(qp_stats *s, uint64_t duration_ns, int64_t wall_ns) {
  s->cache_hits++;
  s->cache_hit_ns += duration_ns;
  if (wall_ns < s->first_ns) s->first_ns = wall_ns;
  if (wall_ns > s->last_ns) s->last_ns = wall_ns;
}

static void hits_merge(qp_stats *dst, const qp_stats *src) {
  dst->cache_hits += src->cache_hits;
  dst->cache_hit_ns += src->cache_hit_ns;
}

bool qp__stats_merge(qp_stats *dst, const qp_stats *src, const qp_hooks *hooks) {
  if (src->calls == 0) {
    if (src->cache_hits == 0) return true;
    hits_merge(dst, src);
    if (src->first_ns < dst->first_ns) dst->first_ns = src->first_ns;
    if (src->last_ns > dst->last_ns) dst->last_ns = src->last_ns;
    return true;
  }
  /* The steps that allocate come first; if the second fails, the first is
   * undone, so that dst is unchanged. */
  int32_t first = 0, last = -1;
  if (qp__hist_range(&src->hist, &first, &last)) {
    /* widening is the only failure of hist_merge and is all-or-nothing */
    if (!qp__hist_merge(&dst->hist, &src->hist, hooks)) return false;
  }
  if (!qp__codes_merge(&dst->codes, &src->codes, hooks)) {
    for (int32_t i = first; i <= last; i++)
      dst->hist.counts[i - dst->hist.lo] -= src->hist.counts[i - src->hist.lo];
    return false;
  }
  moments_merge(dst, src);
  dst->calls += src->calls;
  dst->errors += src->errors;
  dst->rows += src->rows;
  dst->total_ns += src->total_ns;
  if (src->min_ns < dst->min_ns) dst->min_ns = src->min_ns;
  if (src->max_ns > dst->max_ns) dst->max_ns = src->max_ns;
  if (src->first_ns < dst->first_ns) dst->first_ns = src->first_ns;
  if (src->last_ns > dst->last_ns) dst->last_ns = src->last_ns;
  hits_merge(dst, src);
  return true;
}

double qp__stats_stddev(const qp_stats *s) {
  /* Population standard deviation, as pg_stat_statements reports it. */
  if (s->calls < 2 || s->m2 <= 0) return 0;
  return sqrt(s->m2 / (double)s->calls);
}

double qp__stats_quantile(const qp_stats *s, double q) {
  return qp__hist_quantile(&s->hist, q, (double)s->min_ns, (double)s->max_ns);
}
