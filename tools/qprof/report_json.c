/* A streaming JSON writer for `qprof report` and `qprof diff` (see
 * report_common.h): written as it goes, so that a report of 100,000
 * queries never holds a document tree. The layout is two-space indented,
 * keys in the order written. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report_common.h"

/* The writer keeps its own buffer: a report of 100,000 queries makes
 * millions of small writes, and a stdio call (with its lock) per piece is
 * most of the cost of writing it. */
void jw_flush(jw *w) {
  if (w->len > 0) fwrite(w->buf, 1, w->len, w->f);
  w->len = 0;
}

static void wn(jw *w, const void *p, size_t n) {
  if (w->len + n > sizeof w->buf) {
    jw_flush(w);
    if (n > sizeof w->buf) {
      fwrite(p, 1, n, w->f);
      return;
    }
  }
  memcpy(w->buf + w->len, p, n);
  w->len += n;
}

static void wc(jw *w, char c) {
  if (w->len == sizeof w->buf) jw_flush(w);
  w->buf[w->len++] = c;
}

static void ws(jw *w, const char *s) { wn(w, s, strlen(s)); }

void jw_write(jw *w, const void *p, size_t n) { wn(w, p, n); }
void jw_puts(jw *w, const char *s) { ws(w, s); }
void jw_putc(jw *w, char c) { wc(w, c); }

/* Bytes a JSON string carries as they are: printable ASCII but " and \\. */
static bool plain_byte(unsigned char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; }

/* ",\n" and the indentation (2 * RQ_JSON_DEPTH spaces at most) in one write. */
static void indent_sep(jw *w, bool comma) {
  static const char nl[] = ",\n                                ";
  _Static_assert(sizeof nl - 3 == 2 * RQ_JSON_DEPTH, "indentation for every depth");
  wn(w, comma ? nl : nl + 1, (comma ? 2 : 1) + 2 * (size_t)w->depth);
}

static void indent(jw *w) { indent_sep(w, false); }

/* Before a value: the separator, the line break and the key (a key of
 * plain bytes, as nearly all are, written in one piece). */
static void pre(jw *w, const char *key) {
  if (w->depth > 0) {
    indent_sep(w, w->count[w->depth] > 0);
    w->count[w->depth]++;
  }
  if (key != NULL) {
    size_t n = 0;
    while (plain_byte((unsigned char)key[n])) n++;
    if (key[n] == '\0' && n + 4 <= sizeof w->buf) {
      if (w->len + n + 4 > sizeof w->buf) jw_flush(w);
      char *o = w->buf + w->len;
      o[0] = '"';
      memcpy(o + 1, key, n);
      memcpy(o + 1 + n, "\": ", 3);
      w->len += n + 4;
      return;
    }
    rq_json_string(w, key);
    wn(w, ": ", 2);
  }
}

static void open_(jw *w, const char *key, char c) {
  pre(w, key);
  wc(w, c);
  if (w->depth + 1 < RQ_JSON_DEPTH) w->depth++;
  w->count[w->depth] = 0;
}

static void close_(jw *w, char c) {
  bool had = w->count[w->depth] > 0;
  if (w->depth > 0) w->depth--;
  if (had) indent(w);
  wc(w, c);
  if (w->depth == 0) {
    wc(w, '\n');
    jw_flush(w);
  }
}

void jw_init(jw *w, FILE *f) {
  memset(w, 0, sizeof *w);
  w->f = f;
}
void jw_object(jw *w, const char *key) { open_(w, key, '{'); }
void jw_object_end(jw *w) { close_(w, '}'); }
void jw_array(jw *w, const char *key) { open_(w, key, '['); }
void jw_array_end(jw *w) { close_(w, ']'); }

void jw_string(jw *w, const char *key, const char *s) {
  pre(w, key);
  if (s == NULL) ws(w, "null");
  else rq_json_string(w, s);
}

/* decimal digits of v, without printf (the hot path of a big report) */
static void put_u64(jw *w, uint64_t v) {
  char b[24];
  int i = (int)sizeof b;
  do {
    b[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  wn(w, b + i, sizeof b - (size_t)i);
}

void jw_putu64(jw *w, uint64_t v) { put_u64(w, v); }

void jw_int(jw *w, const char *key, int64_t v) {
  pre(w, key);
  if (v < 0) {
    wc(w, '-');
    put_u64(w, (uint64_t)0 - (uint64_t)v);
  } else {
    put_u64(w, (uint64_t)v);
  }
}

void jw_uint(jw *w, const char *key, uint64_t v) {
  pre(w, key);
  put_u64(w, v);
}

void jw_null(jw *w, const char *key) {
  pre(w, key);
  ws(w, "null");
}

void jw_bool(jw *w, const char *key, bool v) {
  pre(w, key);
  ws(w, v ? "true" : "false");
}

void jw_number(jw *w, const char *key, double v) {
  pre(w, key);
  char b[40];
  ws(w, rq_num(v, b, sizeof b));
}

void jw_raw(jw *w, const char *key, const char *text) {
  pre(w, key);
  ws(w, text);
}

const char *rq_ns_ms(uint64_t ns, bool fraction, char *buf, size_t len) {
  /* integer arithmetic: the exact decimal, no rounding and no printf */
  char t[32];
  int i = (int)sizeof t;
  t[--i] = '\0';
  uint64_t ip = ns / 1000000, fp = ns % 1000000;
  int digits = 6;
  while (digits > 0 && fp % 10 == 0) {
    fp /= 10;
    digits--;
  }
  if (digits == 0 && fraction) t[--i] = '0';
  for (int d = 0; d < digits; d++, fp /= 10) t[--i] = (char)('0' + fp % 10);
  if (digits > 0 || fraction) t[--i] = '.';
  do {
    t[--i] = (char)('0' + ip % 10);
    ip /= 10;
  } while (ip != 0);
  size_t n = sizeof t - (size_t)i; /* with the NUL */
  if (len == 0) return buf;
  if (n > len) {
    n = len;
    t[i + (int)n - 1] = '\0';
  }
  memcpy(buf, t + i, n);
  return buf;
}

void jw_ms(jw *w, const char *key, uint64_t ns) {
  char b[40];
  jw_raw(w, key, rq_ns_ms(ns, true, b, sizeof b));
}

/* ---- numbers without printf ----------------------------------------------
 * A report of 100,000 queries formats about a million numbers; printf of a
 * double costs thousands of instructions each (glibc's exact multi-precision
 * path). The formatters below give exactly what printf gives (the same
 * digits, rounded half to even from the exact binary value) with 128-bit
 * integer arithmetic, for the values reports have; anything else (huge,
 * tiny, negative, not finite) still goes through printf. The unit test
 * test_report_format compares them with printf on millions of values. */

typedef unsigned __int128 u128;

static const uint64_t pow10_u64[20] = {1ull,
                                       10ull,
                                       100ull,
                                       1000ull,
                                       10000ull,
                                       100000ull,
                                       1000000ull,
                                       10000000ull,
                                       100000000ull,
                                       1000000000ull,
                                       10000000000ull,
                                       100000000000ull,
                                       1000000000000ull,
                                       10000000000000ull,
                                       100000000000000ull,
                                       1000000000000000ull,
                                       10000000000000000ull,
                                       100000000000000000ull,
                                       1000000000000000000ull,
                                       10000000000000000000ull};

/* v = m * 2^e exactly (m < 2^53) for v finite and > 0. */
static void dbl_parts(double v, uint64_t *m, int *e) {
  uint64_t bits;
  memcpy(&bits, &v, sizeof bits);
  int be = (int)((bits >> 52) & 0x7ff);
  uint64_t frac = bits & ((1ull << 52) - 1);
  if (be == 0) { /* subnormal */
    *m = frac;
    *e = -1074;
  } else {
    *m = frac | (1ull << 52);
    *e = be - 1075;
  }
}

/* floor(m * 2^e * 10^k) into *n, with the part below it compared with one
 * half: *cmp_half -1 below, 0 exactly a half, 1 above (and *exact when
 * nothing is below). False when it does not fit (the caller uses printf). */
static bool scaled(uint64_t m, int e, int k, uint64_t *n, int *cmp_half) {
  if (k < 0 || k > 27) return false;
  /* 10^k = 5^k * 2^k: m * 5^k < 2^53 * 2^63 */
  uint64_t p5 = 1;
  for (int i = 0; i < k; i++) p5 *= 5;
  u128 a = (u128)m * p5;
  int s = e + k;
  if (s >= 0) {
    if (s > 63 || (a >> (127 - s)) != 0) return false;
    u128 x = a << s;
    if (x >> 64) return false;
    *n = (uint64_t)x;
    *cmp_half = -1;
    return true;
  }
  int sh = -s;
  if (sh >= 127) return false;
  u128 x = a >> sh;
  if (x >> 64) return false;
  u128 rem = a & (((u128)1 << sh) - 1), half = (u128)1 << (sh - 1);
  *n = (uint64_t)x;
  *cmp_half = rem < half ? -1 : rem == half ? 0 : 1;
  return true;
}

/* v (finite, > 0) rounded to `sig` (1..17) significant digits as printf
 * rounds: *d in [10^(sig-1), 10^sig), v ~ *d * 10^(*x - sig + 1). */
static bool round_sig(double v, int sig, uint64_t *d, int *x) {
  uint64_t m;
  int e;
  dbl_parts(v, &m, &e);
  /* an estimate of floor(log10 v), corrected below */
  int X = (int)floor(log10(v));
  for (int tries = 0; tries < 3; tries++) {
    uint64_t n;
    int c;
    if (!scaled(m, e, sig - 1 - X, &n, &c)) return false;
    if (n < pow10_u64[sig - 1]) {
      X--;
      continue;
    }
    if (n >= pow10_u64[sig]) {
      X++;
      continue;
    }
    if (c > 0 || (c == 0 && (n & 1))) n++;
    if (n == pow10_u64[sig]) {
      n = pow10_u64[sig - 1];
      X++;
    }
    *d = n;
    *x = X;
    return true;
  }
  return false;
}

/* "%.{P}g" of d * 10^(x - P + 1) (d has P digits) into buf (at least 32). */
static void put_g(uint64_t d, int x, int P, bool neg, char *buf) {
  char dig[24];
  for (int i = P - 1; i >= 0; i--, d /= 10) dig[i] = (char)('0' + d % 10);
  int nd = P;
  while (nd > 1 && dig[nd - 1] == '0') nd--; /* %g drops trailing zeros */
  char *o = buf;
  if (neg) *o++ = '-';
  if (x < -4 || x >= P) {
    *o++ = dig[0];
    if (nd > 1) {
      *o++ = '.';
      memcpy(o, dig + 1, (size_t)nd - 1);
      o += nd - 1;
    }
    *o++ = 'e';
    *o++ = x < 0 ? '-' : '+';
    unsigned ax = (unsigned)(x < 0 ? -x : x);
    if (ax >= 100) *o++ = (char)('0' + ax / 100);
    *o++ = (char)('0' + ax / 10 % 10);
    *o++ = (char)('0' + ax % 10);
  } else if (x >= 0) {
    /* x + 1 digits before the point */
    for (int i = 0; i <= x; i++) *o++ = i < nd ? dig[i] : '0';
    if (nd > x + 1) {
      *o++ = '.';
      memcpy(o, dig + x + 1, (size_t)(nd - x - 1));
      o += nd - x - 1;
    }
  } else {
    *o++ = '0';
    *o++ = '.';
    for (int i = 0; i < -x - 1; i++) *o++ = '0';
    memcpy(o, dig, (size_t)nd);
    o += nd;
  }
  *o = '\0';
}

static const double pow10_dbl[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* rq_num_plain without printf when it can: false to use printf. */
static bool num_plain_fast(double v, char *buf) {
  if (v == 0) {
    strcpy(buf, signbit(v) ? "-0" : "0");
    return true;
  }
  bool neg = v < 0;
  double a = neg ? -v : v;
  uint64_t d;
  int x;
  if (!round_sig(a, 15, &d, &x)) return false;
  /* does the 15-digit decimal read back as v? d < 2^53 and 10^|q| <= 10^22
   * are exact doubles, so one multiplication or division rounds as strtod */
  int q = x - 14;
  if (q < -22 || q > 22) return false;
  double back = q >= 0 ? (double)d * pow10_dbl[q] : (double)d / pow10_dbl[-q];
  if (back == a) {
    put_g(d, x, 15, neg, buf);
    return true;
  }
  if (!round_sig(a, 17, &d, &x)) return false;
  put_g(d, x, 17, neg, buf);
  return true;
}

const char *rq_num_plain(double v, char *buf, size_t len) {
  if (!isfinite(v)) {
    snprintf(buf, len, "%s", "");
    return buf;
  }
  char f[40];
  if (len >= sizeof f && num_plain_fast(v, f)) {
    strcpy(buf, f);
    return buf;
  }
  /* 15 significant digits when they read back as v (%g drops trailing
   * zeros: 22350, 0.00134), else 17, which always do */
  snprintf(buf, len, "%.15g", v);
  if (strtod(buf, NULL) != v) snprintf(buf, len, "%.17g", v);
  return buf;
}

const char *rq_fixed(double v, int dec, char *buf, size_t len) {
  if (dec >= 0 && dec <= 6 && len >= 32 && v >= 0 && !signbit(v) && v < 1e12) {
    uint64_t m, n;
    int e, c;
    if (v == 0) {
      m = 0;
      e = 0;
    } else {
      dbl_parts(v, &m, &e);
    }
    /* v * 10^dec = m * 2^e * 10^dec */
    u128 a = (u128)m * pow10_u64[dec];
    if (e >= 0) {
      n = (uint64_t)(a << e); /* v < 1e12: fits */
      c = -1;
    } else if (-e >= 127) {
      n = 0;
      c = -1; /* below 2^-74: far below a half */
    } else {
      int sh = -e;
      u128 rem = a & (((u128)1 << sh) - 1), half = (u128)1 << (sh - 1);
      n = (uint64_t)(a >> sh);
      c = rem < half ? -1 : rem == half ? 0 : 1;
    }
    if (c > 0 || (c == 0 && (n & 1))) n++;
    uint64_t ip = n / pow10_u64[dec], fp = n % pow10_u64[dec];
    char t[32];
    int i = (int)sizeof t;
    t[--i] = '\0';
    for (int k = 0; k < dec; k++, fp /= 10) t[--i] = (char)('0' + fp % 10);
    if (dec > 0) t[--i] = '.';
    do {
      t[--i] = (char)('0' + ip % 10);
      ip /= 10;
    } while (ip != 0);
    memcpy(buf, t + i, sizeof t - (size_t)i);
    return buf;
  }
  snprintf(buf, len, "%.*f", dec, v);
  return buf;
}

const char *rq_num(double v, char *buf, size_t len) {
  if (!isfinite(v)) {
    snprintf(buf, len, "null");
    return buf;
  }
  rq_num_plain(v, buf, len);
  /* a dot or an exponent, so that it reads back as a number with a fraction;
   * no '+' or leading zeros in the exponent */
  if (strchr(buf, '.') == NULL && strchr(buf, 'e') == NULL) strncat(buf, ".0", len - strlen(buf) - 1);
  char *e = strchr(buf, 'e');
  if (e != NULL) {
    char *start = e + 1, *end = e + 1;
    if (*start == '-') start++, end++;
    if (*end == '+') end++;
    while (*end == '0' && end[1] != '\0') end++;
    memmove(start, end, strlen(end) + 1);
  }
  return buf;
}

/* The code point of the UTF-8 sequence at p (length *n), or -1 when it is
 * not valid UTF-8 (then *n is 1). */
int32_t rq_utf8_next(const unsigned char *p, size_t *n) {
  unsigned char c = p[0];
  *n = 1;
  if (c < 0x80) return c;
  int len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
  if (len == 0) return -1;
  int32_t cp = c & (0x3f >> (len - 1));
  for (int i = 1; i < len; i++) {
    if ((p[i] & 0xc0) != 0x80) return -1;
    cp = (cp << 6) | (p[i] & 0x3f);
  }
  static const int32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return -1;
  *n = (size_t)len;
  return cp;
}

bool rq_is_unsafe(int32_t cp) {
  return (cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
         (cp >= 0x2066 && cp <= 0x2069);
}

void rq_json_string(jw *w, const char *s) { rq_json_string_n(w, s, strlen(s)); }

void rq_json_string_n(jw *w, const char *s, size_t len) {
  wc(w, '"');
  const unsigned char *p = (const unsigned char *)s, *run = p, *end = p + len;
  while (p < end) {
    /* printable ASCII other than " and \ goes out in runs */
    if (plain_byte(*p)) {
      p++;
      continue;
    }
    size_t n;
    int32_t cp = rq_utf8_next(p, &n);
    if (p + n > end) { /* a character cut by the end of the text */
      cp = -1;
      n = 1;
    }
    if (cp >= 0x80 && !rq_is_unsafe(cp)) {
      p += n;
      continue;
    }
    if (p > run) wn(w, run, (size_t)(p - run));
    switch (cp) {
    case '"': ws(w, "\\\""); break;
    case '\\': ws(w, "\\\\"); break;
    case '\b': ws(w, "\\b"); break;
    case '\f': ws(w, "\\f"); break;
    case '\n': ws(w, "\\n"); break;
    case '\r': ws(w, "\\r"); break;
    case '\t': ws(w, "\\t"); break;
    default:
      /* invalid UTF-8 cannot be carried in JSON: U+FFFD stands for it; C0
       * and C1 controls, DEL and bidirectional overrides are escaped so
       * that the text is safe to print */
      if (cp < 0) ws(w, "\\ufffd");
      else {
        char u[16];
        snprintf(u, sizeof u, "\\u%04x", (unsigned)cp);
        ws(w, u);
      }
    }
    p += n;
    run = p;
  }
  if (p > run) wn(w, run, (size_t)(p - run));
  wc(w, '"');
}
