/* A streaming JSON writer for `qprof report` and `qprof diff` (see
 * report_common.h): written as it goes, so that a report of 100,000
 * queries never holds a document tree. The layout is two-space indented,
 * keys in the order written. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report_common.h"

static void indent(jw *w) {
  fputc('\n', w->f);
  for (int i = 0; i < w->depth; i++) fputs("  ", w->f);
}

/* Before a value: the separator, the line break and the key. */
static void pre(jw *w, const char *key) {
  if (w->depth > 0) {
    if (w->count[w->depth] > 0) fputc(',', w->f);
    w->count[w->depth]++;
    indent(w);
  }
  if (key != NULL) {
    rq_json_string(w->f, key);
    fputs(": ", w->f);
  }
}

static void open_(jw *w, const char *key, char c) {
  pre(w, key);
  fputc(c, w->f);
  if (w->depth + 1 < RQ_JSON_DEPTH) w->depth++;
  w->count[w->depth] = 0;
}

static void close_(jw *w, char c) {
  bool had = w->count[w->depth] > 0;
  if (w->depth > 0) w->depth--;
  if (had) indent(w);
  fputc(c, w->f);
  if (w->depth == 0) fputc('\n', w->f);
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
  if (s == NULL) fputs("null", w->f);
  else rq_json_string(w->f, s);
}

void jw_int(jw *w, const char *key, int64_t v) {
  pre(w, key);
  fprintf(w->f, "%lld", (long long)v);
}

void jw_uint(jw *w, const char *key, uint64_t v) {
  pre(w, key);
  fprintf(w->f, "%llu", (unsigned long long)v);
}

void jw_null(jw *w, const char *key) {
  pre(w, key);
  fputs("null", w->f);
}

void jw_bool(jw *w, const char *key, bool v) {
  pre(w, key);
  fputs(v ? "true" : "false", w->f);
}

void jw_number(jw *w, const char *key, double v) {
  pre(w, key);
  char b[40];
  fputs(rq_num(v, b, sizeof b), w->f);
}

void jw_raw(jw *w, const char *key, const char *text) {
  pre(w, key);
  fputs(text, w->f);
}

const char *rq_num(double v, char *buf, size_t len) {
  if (!isfinite(v)) {
    snprintf(buf, len, "null");
    return buf;
  }
  /* the shortest of 15..17 significant digits that reads back as v */
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, len, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) break;
  }
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

void rq_json_string(FILE *f, const char *s) {
  fputc('"', f);
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    size_t n;
    int32_t cp = rq_utf8_next(p, &n);
    switch (cp) {
    case '"': fputs("\\\"", f); break;
    case '\\': fputs("\\\\", f); break;
    case '\b': fputs("\\b", f); break;
    case '\f': fputs("\\f", f); break;
    case '\n': fputs("\\n", f); break;
    case '\r': fputs("\\r", f); break;
    case '\t': fputs("\\t", f); break;
    default:
      /* invalid UTF-8 cannot be carried in JSON: U+FFFD stands for it; C1
       * controls and bidirectional overrides are escaped so that the text
       * is safe to print */
      if (cp < 0) fputs("\\ufffd", f);
      else if (cp < 0x20 || rq_is_unsafe(cp)) fprintf(f, "\\u%04x", (unsigned)cp);
      else fwrite(p, 1, n, f);
    }
    p += n;
  }
  fputc('"', f);
}
