/* The log-bucket latency histogram (see stats_int.h). */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "stats/stats_int.h"

/* Slack added on each side when the range widens, so that a spread of
 * latencies settles after a few widenings instead of one per new bucket. */
#define HIST_SLACK 8

int32_t qp__hist_index_ref(uint64_t v_ns) {
  if (v_ns <= 1) return 0;
  /* 1/ln(1.04); ceil of log_gamma(v). */
  static const double inv_ln_gamma = 25.496731691028337;
  double idx = ceil(log((double)v_ns) * inv_ln_gamma);
  return (int32_t)idx;
}

/* ---- the same index without log() ------------------------------------------
 * qp__hist_index_ref is the definition; this is its value read from tables
 * (a log() is ~20 ns, a third of what the shim adds to an SQLite statement).
 * Values below 64 are looked up directly. Above, a value's octave (its
 * leading bit, b = 6..63) and the next 5 bits split the octave into 32
 * sub-ranges of ratio at most 33/32 < gamma, so a sub-range holds at most one
 * bucket boundary: index = base + (v >= cut), with base the index of the
 * sub-range's first value and cut the first value of the next bucket (or
 * UINT64_MAX). An octave's tables are built at its first use, by searching
 * each boundary with qp__hist_index_ref itself (about 200 log() calls, a few
 * microseconds), so they agree with the definition exactly; should a
 * sub-range ever hold two boundaries, the octave falls back to the
 * definition. Thread-safe: the builder holds a mutex, and readers see an
 * octave's tables only after its flag is set (release/acquire). */
#define HIST_SUB 32
#define HIST_OCT_FIRST 6
#define HIST_NOCT (64 - HIST_OCT_FIRST)
static int16_t hist_small[64];
static int16_t hist_base[HIST_NOCT][HIST_SUB];
static uint64_t hist_cut[HIST_NOCT][HIST_SUB];
/* 0: not built, 1: tables, 2: use the definition */
static _Atomic uint8_t hist_ready[HIST_NOCT + 1];
static pthread_mutex_t hist_mu = PTHREAD_MUTEX_INITIALIZER;

/* The first v in [lo, hi] with qp__hist_index_ref(v) > base, knowing that
 * qp__hist_index_ref(hi) > base: the boundary is looked for near where
 * exp() puts it, then in the whole range if it is not there. */
static uint64_t hist_find_cut(uint64_t lo, uint64_t hi, int32_t base) {
  static const double ln_gamma = 0.039220713153281296; /* ln(1.04) */
  double e = exp((double)base * ln_gamma);
  double w = e * 1e-9 + 4;
  uint64_t a = lo, z = hi;
  if (e - w > (double)lo && e + w < (double)hi) {
    uint64_t wa = (uint64_t)(e - w), wz = (uint64_t)(e + w);
    if (wa >= lo && wz <= hi && wa < wz && qp__hist_index_ref(wa) == base &&
        qp__hist_index_ref(wz) > base) {
      a = wa;
      z = wz;
    }
  }
  /* invariant: ref(a) == base (or a == lo), ref(z) > base */
  if (qp__hist_index_ref(a) > base) return a;
  while (z - a > 1) {
    uint64_t m = a + (z - a) / 2;
    if (qp__hist_index_ref(m) > base) z = m;
    else a = m;
  }
  return z;
}

static void hist_build(unsigned oct) {
  pthread_mutex_lock(&hist_mu);
  if (atomic_load_explicit(&hist_ready[oct], memory_order_relaxed) == 0) {
    uint8_t state = 1;
    if (oct == HIST_NOCT) {
      for (uint64_t v = 0; v < 64; v++) hist_small[v] = (int16_t)qp__hist_index_ref(v);
    } else {
      unsigned b = oct + HIST_OCT_FIRST, shift = b - 5;
      for (uint64_t k = 0; k < HIST_SUB; k++) {
        uint64_t lo = (32 + k) << shift, hi = lo + (((uint64_t)1 << shift) - 1);
        int32_t base = qp__hist_index_ref(lo), top = qp__hist_index_ref(hi);
        hist_base[oct][k] = (int16_t)base;
        if (top == base) {
          hist_cut[oct][k] = UINT64_MAX;
        } else if (top == base + 1) {
          hist_cut[oct][k] = hist_find_cut(lo, hi, base);
        } else {
          state = 2;
        }
      }
    }
    atomic_store_explicit(&hist_ready[oct], state, memory_order_release);
  }
  pthread_mutex_unlock(&hist_mu);
}

int32_t qp__hist_index(uint64_t v_ns) {
  if (v_ns < 64) {
    if (QP_UNLIKELY(atomic_load_explicit(&hist_ready[HIST_NOCT], memory_order_acquire) == 0))
      hist_build(HIST_NOCT);
    return hist_small[v_ns];
  }
  unsigned b = 63u - (unsigned)__builtin_clzll(v_ns), oct = b - HIST_OCT_FIRST;
  uint8_t st = atomic_load_explicit(&hist_ready[oct], memory_order_acquire);
  if (QP_UNLIKELY(st != 1)) {
    if (st == 0) hist_build(oct);
    if (atomic_load_explicit(&hist_ready[oct], memory_order_acquire) != 1)
      return qp__hist_index_ref(v_ns);
  }
  unsigned k = (unsigned)(v_ns >> (b - 5)) & (HIST_SUB - 1);
  return hist_base[oct][k] + (v_ns >= hist_cut[oct][k]);
}

double qp__hist_value(int32_t index) {
  return 2.0 * pow(QP_HIST_GAMMA, (double)index) / (QP_HIST_GAMMA + 1.0);
}

void qp__hist_init(qp_hist *h) { memset(h, 0, sizeof *h); }

void qp__hist_free(qp_hist *h, const qp_hooks *hooks) {
  qp__free(hooks, h->counts);
  qp__hist_init(h);
}

/* Makes [first, last] addressable. */
static bool hist_cover(qp_hist *h, const qp_hooks *hooks, int32_t first, int32_t last) {
  if (h->counts != NULL && first >= h->lo && last < h->lo + (int32_t)h->n) return true;
  int32_t lo = first - HIST_SLACK, hi = last + HIST_SLACK; /* inclusive */
  if (h->counts != NULL) {
    if (h->lo < lo) lo = h->lo;
    if (h->lo + (int32_t)h->n - 1 > hi) hi = h->lo + (int32_t)h->n - 1;
  }
  if (lo < 0) lo = 0;
  if (hi > QP_HIST_MAX_INDEX) hi = QP_HIST_MAX_INDEX;
  uint32_t n = (uint32_t)(hi - lo + 1);
  uint64_t *c = qp__calloc(hooks, n, sizeof *c);
  if (c == NULL) return false;
  if (h->counts != NULL) {
    memcpy(c + (h->lo - lo), h->counts, h->n * sizeof *c);
    qp__free(hooks, h->counts);
  }
  h->counts = c;
  h->lo = lo;
  h->n = n;
  return true;
}

bool qp__hist_add_index(qp_hist *h, const qp_hooks *hooks, int32_t index, uint64_t count) {
  if (index < 0) index = 0;
  if (index > QP_HIST_MAX_INDEX) index = QP_HIST_MAX_INDEX;
  if (QP_UNLIKELY(h->counts == NULL || index < h->lo || index >= h->lo + (int32_t)h->n)) {
    if (!hist_cover(h, hooks, index, index)) return false;
  }
  h->counts[index - h->lo] += count;
  return true;
}

bool qp__hist_range(const qp_hist *h, int32_t *first, int32_t *last) {
  if (h->counts == NULL) return false;
  uint32_t a = 0, b = h->n;
  while (a < b && h->counts[a] == 0) a++;
  while (b > a && h->counts[b - 1] == 0) b--;
  if (a == b) return false;
  *first = h->lo + (int32_t)a;
  *last = h->lo + (int32_t)b - 1;
  return true;
}

bool qp__hist_merge(qp_hist *dst, const qp_hist *src, const qp_hooks *hooks) {
  int32_t first, last;
  if (!qp__hist_range(src, &first, &last)) return true;
  if (!hist_cover(dst, hooks, first, last)) return false;
  for (int32_t i = first; i <= last; i++) dst->counts[i - dst->lo] += src->counts[i - src->lo];
  return true;
}

uint64_t qp__hist_total(const qp_hist *h) {
  uint64_t t = 0;
  for (uint32_t i = 0; h->counts != NULL && i < h->n; i++) t += h->counts[i];
  return t;
}

void qp__hist_quantiles(const qp_hist *h, const double *q, size_t n, double min_ns,
                        double max_ns, double *out) {
  uint64_t total = qp__hist_total(h);
  if (total == 0) {
    for (size_t k = 0; k < n; k++) out[k] = 0;
    return;
  }
  /* Nearest rank: the smallest value with at least q of the calls at or
   * below it (0-based rank ceil(q n) - 1), so that the p95 of two calls is
   * the slower one, as a reader expects, never the faster. */
  size_t k = 0;
  while (k < n) {
    /* the quantiles from k on whose ranks ascend: one walk of the counts */
    uint64_t rank[16];
    size_t m = 0;
    for (; k + m < n && m < 16; m++) {
      double qq = q[k + m] < 0 ? 0 : q[k + m] > 1 ? 1 : q[k + m];
      double r = ceil(qq * (double)total);
      rank[m] = r < 1 ? 0 : (uint64_t)r - 1;
      if (m > 0 && rank[m] < rank[m - 1]) break;
    }
    uint64_t cum = 0;
    size_t j = 0;
    for (uint32_t i = 0; i < h->n && j < m; i++) {
      cum += h->counts[i];
      if (cum <= rank[j]) continue;
      double v = qp__hist_value(h->lo + (int32_t)i);
      for (; j < m && cum > rank[j]; j++) out[k + j] = v;
    }
    for (; j < m; j++) out[k + j] = 0;
    for (j = 0; j < m; j++) {
      if (out[k + j] < min_ns) out[k + j] = min_ns;
      if (out[k + j] > max_ns) out[k + j] = max_ns;
    }
    k += m;
  }
}

double qp__hist_quantile(const qp_hist *h, double q, double min_ns, double max_ns) {
  double v;
  qp__hist_quantiles(h, &q, 1, min_ns, max_ns, &v);
  return v;
}

static bool put_varint(qp_buf *out, uint64_t v) {
  unsigned char b[10];
  size_t n = 0;
  while (v >= 0x80) {
    b[n++] = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  b[n++] = (unsigned char)v;
  return qp__buf_append(out, b, n);
}

static bool get_varint(const unsigned char **p, const unsigned char *end, uint64_t *v) {
  uint64_t r = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*p >= end) return false;
    unsigned char c = *(*p)++;
    r |= (uint64_t)(c & 0x7f) << shift;
    if ((c & 0x80) == 0) {
      *v = r;
      return true;
    }
  }
  return false;
}

/* Encoding: byte version, varint first index, varint count of buckets, then
 * one varint per bucket. An empty histogram is the version byte alone. */
bool qp__hist_encode(const qp_hist *h, qp_buf *out) {
  unsigned char ver = QP_HIST_ENCODING_VERSION;
  if (!qp__buf_append(out, &ver, 1)) return false;
  int32_t first, last;
  if (!qp__hist_range(h, &first, &last)) return true;
  if (!put_varint(out, (uint64_t)first) || !put_varint(out, (uint64_t)(last - first + 1)))
    return false;
  for (int32_t i = first; i <= last; i++)
    if (!put_varint(out, h->counts[i - h->lo])) return false;
  return true;
}

qp_status qp__hist_decode_add(qp_hist *h, const qp_hooks *hooks, const void *blob, size_t len) {
  if (len == 0) return QP_OK;
  const unsigned char *p = blob, *end = p + len;
  if (*p++ != QP_HIST_ENCODING_VERSION) return QP_SYNTAX;
  if (p == end) return QP_OK;
  uint64_t first, n;
  if (!get_varint(&p, end, &first) || !get_varint(&p, end, &n)) return QP_SYNTAX;
  if (first > QP_HIST_MAX_INDEX || n == 0 || n > QP_HIST_MAX_INDEX + 1 - first ||
      n > (uint64_t)(end - p))
    return QP_SYNTAX;
  /* Validate the whole blob before touching h. */
  const unsigned char *q = p;
  for (uint64_t i = 0; i < n; i++) {
    uint64_t c = 0;
    if (!get_varint(&q, end, &c)) return QP_SYNTAX;
  }
  if (q != end) return QP_SYNTAX;
  if (!hist_cover(h, hooks, (int32_t)first, (int32_t)(first + n - 1))) return QP_NOMEM;
  for (uint64_t i = 0; i < n; i++) {
    uint64_t c = 0;
    get_varint(&p, end, &c);
    h->counts[(int32_t)(first + i) - h->lo] += c;
  }
  return QP_OK;
}
