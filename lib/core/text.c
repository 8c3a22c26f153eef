#include <stdio.h>
#include <string.h>

#include "internal.h"

void qp__buf_init(qp_buf *b, const qp_hooks *h) {
  memset(b, 0, sizeof *b);
  b->hooks = h;
}

void qp__buf_free(qp_buf *b) {
  qp__free(b->hooks, b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

bool qp__buf_reserve(qp_buf *b, size_t extra) {
  if (b->failed) return false;
  if (b->len + extra + 1 <= b->cap) return true;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->len + extra + 1) {
    if (cap > SIZE_MAX / 2) {
      b->failed = true;
      return false;
    }
    cap *= 2;
  }
  char *d = qp__realloc(b->hooks, b->data, cap);
  if (d == NULL) {
    b->failed = true;
    return false;
  }
  b->data = d;
  b->cap = cap;
  return true;
}

bool qp__buf_append(qp_buf *b, const void *p, size_t n) {
  if (!qp__buf_reserve(b, n)) return false;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return true;
}

bool qp__buf_puts(qp_buf *b, const char *s) { return qp__buf_append(b, s, strlen(s)); }

bool qp__buf_printf(qp_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char small[256];
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) return false;
  if ((size_t)n < sizeof small) return qp__buf_append(b, small, (size_t)n);
  if (!qp__buf_reserve(b, (size_t)n)) return false;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return true;
}

const char *qp__buf_cstr(qp_buf *b) { return b->data ? b->data : ""; }

/* Appends n bytes of src to the output as far as it has room, keeping it
 * terminated; *pos counts every byte, written or not (as snprintf does). */
static void out_put(char *buf, size_t len, size_t *pos, const char *src, size_t n) {
  if (*pos + 1 < len) {
    size_t k = len - 1 - *pos;
    if (k > n) k = n;
    memcpy(buf + *pos, src, k);
    buf[*pos + k] = '\0';
  }
  *pos += n;
}

size_t qp_dsn_redact(const char *text, char *buf, size_t len) {
  return qp__dsn_redact(text, buf, len);
}

/* Length of `word` when `p` starts with it, ignoring ASCII case; else 0. */
static size_t starts_ci(const char *p, const char *word) {
  size_t n = 0;
  for (; word[n] != '\0'; n++) {
    char c = p[n];
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    if (c != word[n]) return 0;
  }
  return n;
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Where a DSN or one of its keywords may start: the text's start, or after
 * white space, a quote or a bracket, as in "cannot open 'host=h password=x'". */
static bool token_start(const char *text, const char *p) {
  return p == text || is_space(p[-1]) || strchr("'\"`(<[{,;=", p[-1]) != NULL;
}

/* A password= keyword at p (spaces allowed around '='): the length up to its
 * value, else 0. */
static size_t password_keyword(const char *p) {
  size_t n = starts_ci(p, "password");
  if (n == 0) return 0;
  while (p[n] == ' ' || p[n] == '\t') n++;
  if (p[n] != '=') return 0;
  n++;
  while (p[n] == ' ' || p[n] == '\t') n++;
  return n;
}

/* The end of a keyword's value at p: 'quoted' with \ escapes, or up to white
 * space. Text glued to a closing quote is taken too: libpq would refuse it,
 * but it may be the rest of a password the quotes of a message split. */
static const char *value_end(const char *p) {
  if (*p == '\'') {
    p++;
    while (*p && *p != '\'') {
      if (*p == '\\' && p[1]) p++;
      p++;
    }
    if (*p == '\'') p++;
  }
  while (*p && !is_space(*p)) p++;
  return p;
}

/* A postgresql:// or postgres:// URI at p, written out with its password
 * (user:PASSWORD@ and any password= query parameter) masked; returns where it
 * ends: white space, a quote or the end of the text. */
static const char *redact_uri(const char *p, char *buf, size_t len, size_t *pos) {
  size_t scheme = starts_ci(p, "postgresql://");
  if (scheme == 0) scheme = starts_ci(p, "postgres://");
  const char *end = p + scheme;
  while (*end && !is_space(*end) && *end != '\'' && *end != '"' && *end != '`') end++;
  const char *auth = p + scheme;
  const char *auth_end = auth + strcspn(auth, "/?");
  if (auth_end > end) auth_end = end;
  const char *at = NULL;
  for (const char *q = auth; q < auth_end; q++)
    if (*q == '@') at = q;
  out_put(buf, len, pos, p, (size_t)(auth - p));
  const char *q = auth;
  if (at != NULL) {
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    if (colon != NULL) {
      out_put(buf, len, pos, auth, (size_t)(colon - auth));
      out_put(buf, len, pos, ":***", 4);
      q = at;
    }
  }
  while (q < end) {
    size_t kw = (q[-1] == '?' || q[-1] == '&') ? starts_ci(q, "password=") : 0;
    if (kw != 0) {
      out_put(buf, len, pos, "password=***", 12);
      q += kw;
      while (q < end && *q != '&') q++;
      continue;
    }
    out_put(buf, len, pos, q, 1);
    q++;
  }
  return end;
}

size_t qp__dsn_redact(const char *text, char *buf, size_t len) {
  if (len > 0) buf[0] = '\0';
  if (text == NULL) return 0;
  size_t pos = 0;
  const char *p = text;
  while (*p) {
    if (token_start(text, p)) {
      if (starts_ci(p, "postgresql://") || starts_ci(p, "postgres://")) {
        p = redact_uri(p, buf, len, &pos);
        continue;
      }
      size_t kw = password_keyword(p);
      if (kw != 0) {
        out_put(buf, len, &pos, "password=***", 12);
        p = value_end(p + kw);
        continue;
      }
    }
    out_put(buf, len, &pos, p, 1);
    p++;
  }
  return pos;
}

/* Two digits at a time from a table: several times faster than
 * snprintf("%" PRId64), which the backends would call for every integer
 * parameter and every integer result cell. */
size_t qp__fmt_i64(int64_t v, char *buf) {
  static const char pairs[] = "00010203040506070809101112131415161718192021222324"
                              "25262728293031323334353637383940414243444546474849"
                              "50515253545556575859606162636465666768697071727374"
                              "75767778798081828384858687888990919293949596979899";
  char tmp[20];
  size_t n = sizeof tmp, len = 0;
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  while (u >= 100) { /* two digits at a time, from the right */
    unsigned d = (unsigned)(u % 100) * 2;
    u /= 100;
    tmp[--n] = pairs[d + 1];
    tmp[--n] = pairs[d];
  }
  if (u >= 10) {
    tmp[--n] = pairs[u * 2 + 1];
    tmp[--n] = pairs[u * 2];
  } else {
    tmp[--n] = (char)('0' + u);
  }
  if (v < 0) buf[len++] = '-';
  memcpy(buf + len, tmp + n, sizeof tmp - n);
  return len + sizeof tmp - n;
}

void qp__put(qp__outbuf *o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  size_t room = o->len < o->cap ? o->cap - o->len : 0;
  int n = vsnprintf(room ? o->buf + o->len : NULL, room, fmt, ap);
  va_end(ap);
  if (n > 0) o->len += (size_t)n;
}
