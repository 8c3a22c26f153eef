/* Helpers shared by `qprof report` and `qprof diff` (see report_common.h). */
#include "report_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

const char *rq_store_path(const char *opt) {
  if (opt != NULL && opt[0] != '\0') return opt;
  const char *env = getenv("QPROF_STORE");
  if (env != NULL && env[0] != '\0') return env;
  return "qprof.db";
}

bool rq_parse_time(const char *verb, const char *opt, const char *text, int64_t *out) {
  if (qp_report_parse_time(text, out) != QP_OK) {
    cli_usage_error(verb,
                    "%s '%s' is not a time (ISO 8601 like 2026-11-22T10:00Z, @UNIX, -15m, -2h, "
                    "-1d or now)",
                    opt, text);
    return false;
  }
  return true;
}

int rq_check(const char *verb, const qp_report_options *o) {
  char err[1024];
  qp_status rc = qp_report_check(o, err, sizeof err);
  if (rc == QP_OK) return QP_EXIT_OK;
  if (rc == QP_NOMEM) return cli_fail(verb, "%s", err);
  /* the library names the pattern as "match", "exclude", "host", ...: say which option */
  static const char *const opts[] = {"match ", "exclude ", "database ", "user ", "application ",
                                     "host "};
  for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
    if (strncmp(err, opts[i], strlen(opts[i])) == 0) return cli_usage_error(verb, "--%s", err);
  return cli_usage_error(verb, "%s", err);
}

bool rq_open(const char *verb, const char *path, const qp_report_options *o, qp_store **store,
             qp_report **report) {
  char err[1024];
  *report = NULL;
  qp_status rc = qp_store_open(store, path, QP_STORE_READ, NULL, err, sizeof err);
  if (rc != QP_OK) {
    if (rc == QP_NOTFOUND)
      cli_fail(verb, "%s (record with the pool or `qprof run` first, or pass --store)", err);
    else
      cli_fail(verb, "%s", err);
    return false;
  }
  rc = qp_report_new(report, *store, o, err, sizeof err);
  if (rc != QP_OK) {
    cli_fail(verb, "%s", err);
    qp_store_close(*store);
    *store = NULL;
    return false;
  }
  return true;
}

void rq_close(qp_store *store, qp_report *report) {
  qp_report_free(report);
  qp_store_close(store);
}

const char *rq_by_text(unsigned by, char *buf, size_t len) {
  size_t k = 0;
  buf[0] = '\0';
  for (int d = 0; d < 4; d++) {
    if (!(by & QP_REPORT_KEY(d))) continue;
    int n = snprintf(buf + k, len - k, "%s%s", k > 0 ? ", " : "",
                     qp_report_group_by_name((qp_report_group_by)d));
    if (n < 0 || (size_t)n >= len - k) break;
    k += (size_t)n;
  }
  if (k == 0) snprintf(buf, len, "none");
  return buf;
}

const char *rq_rows_text(unsigned by, char *buf, size_t len) {
  char b[96];
  if (by == 0) snprintf(buf, len, "per query only (--by none)");
  else snprintf(buf, len, "per query and %s", rq_by_text(by, b, sizeof b));
  return buf;
}

const char *rq_dim_filter(const qp_report_totals *t, qp_report_group_by by) {
  switch (by) {
  case QP_REPORT_BY_DATABASE: return t->filter_database;
  case QP_REPORT_BY_USER: return t->filter_user;
  case QP_REPORT_BY_APPLICATION: return t->filter_application;
  case QP_REPORT_BY_HOST: return t->filter_host;
  }
  return NULL;
}

const char *rq_dim(const qp_query_summary *s, qp_report_group_by by) {
  switch (by) {
  case QP_REPORT_BY_DATABASE: return s->database;
  case QP_REPORT_BY_USER: return s->user;
  case QP_REPORT_BY_APPLICATION: return s->application;
  case QP_REPORT_BY_HOST: return s->host;
  }
  return NULL;
}

const char *rq_filters_text(const qp_report_totals *t, char *buf, size_t len) {
  size_t k = 0;
  buf[0] = '\0';
  for (int d = 0; d < 4; d++) {
    const char *f = rq_dim_filter(t, (qp_report_group_by)d);
    if (f == NULL) continue;
    int n = snprintf(buf + k, len - k, "%s%s=%s", k > 0 ? ", " : "",
                     qp_report_group_by_name((qp_report_group_by)d), f);
    if (n < 0 || (size_t)n >= len - k) break;
    k += (size_t)n;
  }
  return buf;
}

bool rq_plain_key(const qp_report_totals *t) {
  return t->by == QP_REPORT_KEY_DEFAULT && t->filter_database == NULL && t->filter_user == NULL &&
         t->filter_application == NULL && t->filter_host == NULL;
}

int rq_parse_by(const char *verb, const char *text, unsigned *out) {
  char err[512];
  if (qp_report_by_parse(text, out, err, sizeof err) != QP_OK)
    return cli_usage_error(verb, "--by: %s", err);
  return QP_EXIT_OK;
}

void rq_window_text(const qp_report_totals *t, char *buf, size_t len) {
  char a[40], b[40];
  if (t->since_ns == INT64_MIN && t->until_ns == INT64_MAX) snprintf(buf, len, "all recorded time");
  else if (t->until_ns == INT64_MAX) snprintf(buf, len, "since %s", rq_iso(t->since_ns, a, sizeof a));
  else if (t->since_ns == INT64_MIN) snprintf(buf, len, "until %s", rq_iso(t->until_ns, b, sizeof b));
  else
    snprintf(buf, len, "%s .. %s", rq_iso(t->since_ns, a, sizeof a), rq_iso(t->until_ns, b, sizeof b));
}

const char *rq_iso(int64_t ns, char *buf, size_t len) { return qp_report_format_time(ns, buf, len); }

void rq_json_codes(jw *w, const char *key, const char *codes) {
  jw_object(w, key);
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
    jw_uint(w, code, c);
    p = *end == ',' ? end + 1 : end;
    if (end == colon + 1) break;
  }
  jw_object_end(w);
}

double rq_ms_full(double ns) { return ns / 1e6; }

uint64_t rq_ns(double ns) { return ns > 0 ? (uint64_t)llround(ns) : 0; }

/* "<fixed><unit>" (rq_fixed: printf's digits without printf). */
static const char *dur_unit(double v, int dec, const char *unit, char *buf, size_t len) {
  char t[48];
  rq_fixed(v, dec, t, 40);
  size_t a = strlen(t), b = strlen(unit);
  memcpy(t + a, unit, b + 1);
  if (len == 0) return buf;
  if (a + b >= len) {
    a = len - 1;
    b = 0;
    t[a] = '\0';
  }
  memcpy(buf, t, a + b + 1);
  return buf;
}

const char *rq_dur(double ns, char *buf, size_t len) {
  if (ns < 1e3) return dur_unit(ns, 0, "ns", buf, len);
  else if (ns < 1e4) return dur_unit(ns / 1e3, 2, "us", buf, len);
  else if (ns < 1e5) return dur_unit(ns / 1e3, 1, "us", buf, len);
  else if (ns < 1e6) return dur_unit(ns / 1e3, 0, "us", buf, len);
  else if (ns < 1e7) return dur_unit(ns / 1e6, 2, "ms", buf, len);
  else if (ns < 1e9) return dur_unit(ns / 1e6, 1, "ms", buf, len);
  else if (ns < 6e10) return dur_unit(ns / 1e9, 2, "s", buf, len);
  else if (ns < 3.6e12) snprintf(buf, len, "%.0fm%02.0fs", floor(ns / 6e10), fmod(ns / 1e9, 60));
  else snprintf(buf, len, "%.0fh%02.0fm", floor(ns / 3.6e12), fmod(floor(ns / 6e10), 60));
  return buf;
}

const char *rq_count(uint64_t n, char *buf, size_t len) {
  char raw[32];
  int d = 0;
  do { /* digits, last first */
    raw[d++] = (char)('0' + n % 10);
    n /= 10;
  } while (n != 0);
  size_t k = 0;
  for (int i = 0; i < d && k + 2 < len; i++) {
    buf[k++] = raw[d - 1 - i];
    int left = d - i - 1;
    if (left > 0 && left % 3 == 0) buf[k++] = ',';
  }
  buf[k] = '\0';
  return buf;
}

void rq_csv_field(jw *w, const char *s) {
  if (s == NULL) s = "";
  if (strpbrk(s, ",\"\r\n") == NULL) {
    jw_puts(w, s);
    return;
  }
  jw_putc(w, '"');
  for (; *s; s++) {
    if (*s == '"') jw_putc(w, '"');
    jw_putc(w, *s);
  }
  jw_putc(w, '"');
}

/* How the character at p shows on a terminal: into out (at least 16 bytes),
 * returning its length; *n gets the bytes consumed and *cols the columns.
 * Control characters C0 and DEL become a space; C1 controls and
 * bidirectional overrides become a visible <U+XXXX>; bytes that are not
 * UTF-8 a visible \xHH (a lone 0x9b would be CSI on an 8-bit terminal). */
static size_t shown(const unsigned char *p, size_t *n, size_t *cols, char *out) {
  int32_t cp = rq_utf8_next(p, n);
  if (cp < 0) {
    *cols = 4;
    return (size_t)snprintf(out, 16, "\\x%02x", p[0]);
  }
  if (rq_is_unsafe(cp)) {
    *cols = 8;
    return (size_t)snprintf(out, 16, "<U+%04X>", (unsigned)cp);
  }
  *cols = 1;
  if (cp < 0x20 || cp == 0x7f) {
    out[0] = ' ';
    return 1;
  }
  memcpy(out, p, *n);
  return *n;
}

const char *rq_shorten(const char *s, size_t width, char *buf, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  /* printable ASCII, the usual text: one byte is one column, nothing to replace */
  size_t ascii = 0;
  while (p[ascii] >= 0x20 && p[ascii] < 0x7f) ascii++;
  if (p[ascii] == '\0') {
    bool cut = width > 0 && ascii > width;
    size_t k = cut ? (width > 3 ? width - 3 : 0) : ascii;
    size_t room = len > 5 ? len - 5 : 0; /* as below: a character fits when k + 1 + 4 < len */
    if (k > room) {
      k = room;
      cut = true;
    }
    memcpy(buf, s, k);
    if (cut) {
      memcpy(buf + k, "...", 3);
      k += 3;
    }
    buf[k] = '\0';
    return buf;
  }
  size_t total_cols = 0, n, c;
  char tmp[16];
  for (const unsigned char *q = p; *q; q += n) {
    shown(q, &n, &c, tmp);
    total_cols += c;
  }
  bool cut = width > 0 && total_cols > width;
  size_t limit = cut ? (width > 3 ? width - 3 : 0) : SIZE_MAX; /* room for "..." */
  size_t k = 0, cols = 0;
  for (; *p; p += n) {
    size_t m = shown(p, &n, &c, tmp);
    if (cols + c > limit) break;
    if (k + m + 4 >= len) {
      cut = true;
      break;
    }
    memcpy(buf + k, tmp, m);
    k += m;
    cols += c;
  }
  if (cut) {
    memcpy(buf + k, "...", 3);
    k += 3;
  }
  buf[k] = '\0';
  return buf;
}
