/*
 * log_line_prefix: compiled into literals and escapes, matched at the start
 * of each stderr line; and the time stamps the three formats share.
 *
 * Escapes whose values have a shape (times, pids, SQLSTATEs, session ids)
 * are read by that shape. Free text (user, database, application, host)
 * runs up to the next literal of the prefix; since such a value may itself
 * contain that literal (an application name with a space), the matcher
 * backtracks to later occurrences, within a fixed budget per line so that
 * no input makes it slow.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/ingest_int.h"

/* Debian's default, PostgreSQL's default, and the ones pgbadger's and
 * common guides recommend. More specific first: a line of the first also
 * starts like the second, but then its severity is not where the second
 * expects it. */
const char *const qp__prefix_candidates[] = {
    "%m [%p] %q%u@%d ",
    "%t [%p] %q%u@%d ",
    "%m [%p] %q%u@%d %a %h %e ",
    "%m [%p] ",
    "%t [%p] ",
    "%t [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h ",
    "%m [%p]: [%l-1] user=%u,db=%d,app=%a,client=%h ",
    "%t [%p]: user=%u,db=%d,app=%a,client=%h ",
    "%m [%p]: user=%u,db=%d,app=%a,client=%h ",
    "%t [%p]: [%l-1] ",
    "%m [%p]: [%l-1] ",
    "%t:%r:%u@%d:[%p]:",
    "%m %u@%d [%p] ",
    "%m [%p] %u@%d ",
    "%m ",
    "%t ",
    NULL,
};

/* ---- time stamps ----------------------------------------------------------- */

static bool digits(const char *p, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    unsigned c = (unsigned char)p[i] - '0';
    if (c > 9) return false;
    v = v * 10 + (int)c;
  }
  *out = v;
  return true;
}

typedef struct zone_def {
  const char *name;
  int off_min;
} zone_def;

/* Zone abbreviations PostgreSQL prints for %m/%t with common log_timezone
 * settings; ambiguous ones (IST, CST in Asia) take their most common use. */
static const zone_def zones[] = {
    {"UTC", 0},       {"GMT", 0},       {"UCT", 0},       {"Z", 0},         {"WET", 0},
    {"WEST", 60},     {"BST", 60},      {"CET", 60},      {"CEST", 120},    {"MET", 60},
    {"MEST", 120},    {"EET", 120},     {"EEST", 180},    {"MSK", 180},     {"IST", 330},
    {"SGT", 480},     {"HKT", 480},     {"AWST", 480},    {"JST", 540},     {"KST", 540},
    {"ACST", 570},    {"ACDT", 630},    {"AEST", 600},    {"AEDT", 660},    {"NZST", 720},
    {"NZDT", 780},    {"HST", -600},    {"AKST", -540},   {"AKDT", -480},   {"PST", -480},
    {"PDT", -420},    {"MST", -420},    {"MDT", -360},    {"CST", -360},    {"CDT", -300},
    {"EST", -300},    {"EDT", -240},    {"AST", -240},    {"ADT", -180},    {"NST", -210},
    {"NDT", -150},    {"BRT", -180},    {"ART", -180},
};

/* Offset in seconds of a zone text; false when unknown. */
static bool zone_offset(const char *p, size_t n, int64_t *off) {
  if (n >= 2 && (p[0] == '+' || p[0] == '-')) {
    int sign = p[0] == '-' ? -1 : 1, h, m = 0;
    if (n == 3 && digits(p + 1, 2, &h)) {
    } else if (n == 5 && digits(p + 1, 2, &h) && digits(p + 3, 2, &m)) {
    } else {
      return false;
    }
    *off = sign * (h * 3600 + m * 60);
    return true;
  }
  for (size_t i = 0; i < QP_ARRAY_LEN(zones); i++)
    if (strlen(zones[i].name) == n && memcmp(zones[i].name, p, n) == 0) {
      *off = (int64_t)zones[i].off_min * 60;
      return true;
    }
  return false;
}

static bool zone_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '-' || c == '/' || c == '_';
}

size_t qp__ts_parse(qp_ts_cache *c, const char *p, size_t n, int64_t *ns, bool *unknown) {
  /* YYYY-MM-DD HH:MM:SS */
  if (n < 19 || p[4] != '-' || p[7] != '-' || p[10] != ' ' || p[13] != ':' || p[16] != ':')
    return 0;
  int64_t day_s;
  if (c->day[0] != '\0' && memcmp(c->day, p, 16) == 0) {
    day_s = c->day_s;
  } else {
    int y, mo, d, h, mi;
    if (!digits(p, 4, &y) || !digits(p + 5, 2, &mo) || !digits(p + 8, 2, &d) ||
        !digits(p + 11, 2, &h) || !digits(p + 14, 2, &mi))
      return 0;
    /* nanoseconds since the epoch fit in an int64 until 2262 */
    if (y < 1900 || y > 2200 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59)
      return 0;
    day_s = qp__days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60;
    memcpy(c->day, p, 16);
    c->day_s = day_s;
  }
  int s;
  if (!digits(p + 17, 2, &s) || s > 60) return 0;
  size_t i = 19;
  int64_t frac = 0;
  if (i < n && p[i] == '.') {
    i++;
    int64_t scale = 100000000;
    size_t start = i;
    while (i < n && p[i] >= '0' && p[i] <= '9') {
      if (scale > 0) frac += (p[i] - '0') * scale;
      scale /= 10;
      i++;
    }
    if (i == start) return 0;
  }
  int64_t off = 0;
  if (i < n && p[i] == ' ') {
    size_t z = i + 1, e = z;
    while (e < n && e - z < 15 && zone_char(p[e])) e++;
    if (e > z) {
      size_t zl = e - z;
      if (c->zone_known && strlen(c->zone) == zl && memcmp(c->zone, p + z, zl) == 0) {
        off = c->zone_off_s;
      } else if (zone_offset(p + z, zl, &off)) {
        memcpy(c->zone, p + z, zl);
        c->zone[zl] = '\0';
        c->zone_off_s = off;
        c->zone_known = true;
      } else {
        *unknown = true;
        memcpy(c->unknown, p + z, zl);
        c->unknown[zl] = '\0';
        off = 0;
      }
      i = e;
    }
  }
  *ns = ((day_s + s) - off) * 1000000000 + frac;
  return i;
}

/* ---- compiling ----------------------------------------------------------------- */

static bool known_escape(char c) {
  return c != '\0' && strchr("aubdrhpPtmnielcsvxqQ%", c) != NULL;
}

qp_status qp__prefix_compile(qp_prefix *px, const qp_hooks *h, const char *text, qp_err *err) {
  memset(px, 0, sizeof *px);
  px->q_at = SIZE_MAX;
  size_t len = strlen(text);
  /* literals are copied apart from the text so that %% becomes one '%' */
  px->text = qp__malloc(h, len + 1);
  if (px->text == NULL) return qp__err_set(err, QP_NOMEM, "out of memory");
  char *lit = px->text;
  size_t li = 0;
  for (size_t i = 0; i < len;) {
    if (text[i] == '%') {
      size_t j = i + 1;
      if (j < len && text[j] == '-') j++;
      while (j < len && text[j] >= '0' && text[j] <= '9') j++;
      char c = j < len ? text[j] : '\0';
      if (!known_escape(c)) {
        qp__prefix_free(px, h);
        return qp__err_set(err, QP_SYNTAX, "log_line_prefix '%s': unknown escape '%%%c' at %zu",
                           text, c ? c : ' ', i + 1);
      }
      i = j + 1;
      if (c == '%') {
        lit[li++] = '%';
        if (px->ntok > 0 && px->tok[px->ntok - 1].kind == 0) {
          px->tok[px->ntok - 1].lit_len++;
          continue;
        }
        if (px->ntok == QP_PFX_MAX_TOKENS) goto too_many;
        px->tok[px->ntok++] = (qp_pfx_tok){0, lit + li - 1, 1};
        continue;
      }
      if (px->ntok == QP_PFX_MAX_TOKENS) goto too_many;
      if (c == 'q') px->q_at = px->ntok;
      if (c == 'p') px->has_pid = true;
      px->tok[px->ntok++] = (qp_pfx_tok){c, NULL, 0};
    } else {
      lit[li++] = text[i++];
      if (px->ntok > 0 && px->tok[px->ntok - 1].kind == 0 &&
          px->tok[px->ntok - 1].lit + px->tok[px->ntok - 1].lit_len == lit + li - 1) {
        px->tok[px->ntok - 1].lit_len++;
        continue;
      }
      if (px->ntok == QP_PFX_MAX_TOKENS) goto too_many;
      px->tok[px->ntok++] = (qp_pfx_tok){0, lit + li - 1, 1};
    }
  }
  return QP_OK;
too_many:
  qp__prefix_free(px, h);
  return qp__err_set(err, QP_SYNTAX, "log_line_prefix '%s' has more than %d parts", text,
                     QP_PFX_MAX_TOKENS);
}

void qp__prefix_free(qp_prefix *px, const qp_hooks *h) {
  qp__free(h, px->text);
  px->text = NULL;
  px->ntok = 0;
}

/* ---- severities ------------------------------------------------------------------ */

typedef struct sev_def {
  const char *name;
  unsigned char len;
  qp_sev sev;
} sev_def;

static const sev_def sevs[] = {
    {"LOG", 3, QP_SEV_LOG},           {"ERROR", 5, QP_SEV_ERROR},
    {"DETAIL", 6, QP_SEV_DETAIL},     {"STATEMENT", 9, QP_SEV_STATEMENT},
    {"WARNING", 7, QP_SEV_WARNING},   {"NOTICE", 6, QP_SEV_NOTICE},
    {"INFO", 4, QP_SEV_INFO},         {"HINT", 4, QP_SEV_HINT},
    {"CONTEXT", 7, QP_SEV_CONTEXT},   {"QUERY", 5, QP_SEV_QUERY},
    {"FATAL", 5, QP_SEV_FATAL},       {"PANIC", 5, QP_SEV_PANIC},
    {"LOCATION", 8, QP_SEV_LOCATION}, {"DEBUG1", 6, QP_SEV_DEBUG},
    {"DEBUG2", 6, QP_SEV_DEBUG},      {"DEBUG3", 6, QP_SEV_DEBUG},
    {"DEBUG4", 6, QP_SEV_DEBUG},      {"DEBUG5", 6, QP_SEV_DEBUG},
    {"DEBUG", 5, QP_SEV_DEBUG},
};

qp_sev qp__sev_name(const char *p, size_t n) {
  for (size_t i = 0; i < QP_ARRAY_LEN(sevs); i++)
    if (sevs[i].len == n && memcmp(sevs[i].name, p, n) == 0) return sevs[i].sev;
  return QP_SEV_NONE;
}

qp_sev qp__sev_parse(const char *p, size_t n, size_t *used) {
  if (n < 4 || p[0] < 'A' || p[0] > 'Z') return QP_SEV_NONE;
  const char *colon = memchr(p, ':', n < 10 ? n : 10);
  if (colon == NULL) return QP_SEV_NONE;
  size_t k = (size_t)(colon - p);
  qp_sev s = qp__sev_name(p, k);
  if (s == QP_SEV_NONE) return s;
  /* "LOG:  message": two spaces; an empty message ends the line after ':' */
  size_t u = k + 1;
  if (u == n) {
    *used = u;
    return s;
  }
  if (u + 2 <= n && p[u] == ' ' && p[u + 1] == ' ') {
    *used = u + 2;
    return s;
  }
  if (p[u] == ' ') { /* one space: as some tools rewrite logs; accepted */
    *used = u + 1;
    return s;
  }
  return QP_SEV_NONE;
}

/* ---- matching ---------------------------------------------------------------------- */

typedef struct match_ctx {
  const qp_prefix *px;
  qp_ts_cache *tc;
  const char *s;
  size_t n;
  size_t ntok; /* tokens to match: all, or those before %q */
  qp_log_msg *m;
  size_t body;
  int budget;
  bool unknown_zone;
} match_ctx;

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f'); }

/* Length of a value with the shape of escape `k` at s[i..n), or -1. */
static long shaped(match_ctx *c, char k, size_t i, int64_t *num) {
  const char *s = c->s;
  size_t n = c->n, j = i;
  switch (k) {
  case 'm':
  case 't':
  case 's': {
    int64_t ns = 0;
    size_t u = qp__ts_parse(c->tc, s + i, n - i, &ns, &c->unknown_zone);
    if (u == 0) return -1;
    *num = ns;
    return (long)u;
  }
  case 'n': {
    int64_t v = 0;
    while (j < n && is_digit(s[j]) && j - i < 12) v = v * 10 + (s[j++] - '0');
    if (j == i || v > 7258118400) return -1; /* after 2200 */
    int64_t frac = 0, scale = 100000000;
    if (j < n && s[j] == '.') {
      j++;
      while (j < n && is_digit(s[j])) {
        if (scale > 0) frac += (s[j] - '0') * scale;
        scale /= 10;
        j++;
      }
    }
    *num = v * 1000000000 + frac;
    return (long)(j - i);
  }
  case 'p':
  case 'P':
  case 'l':
  case 'x':
  case 'Q': {
    int64_t v = 0;
    if (k == 'Q' && j < n && s[j] == '-') j++;
    while (j < n && is_digit(s[j]) && j - i < 19) v = v * 10 + (s[j++] - '0');
    if (j == i && k != 'P') return -1;
    *num = v;
    return (long)(j - i);
  }
  case 'e':
    if (n - i >= 5) {
      for (j = i; j < i + 5; j++)
        if (!is_digit(s[j]) && !(s[j] >= 'A' && s[j] <= 'Z')) return -1;
      return 5;
    }
    return -1;
  case 'c':
    while (j < n && is_hex(s[j])) j++;
    if (j == i || j >= n || s[j] != '.') return -1;
    j++;
    while (j < n && is_hex(s[j])) j++;
    return (long)(j - i);
  case 'v':
    while (j < n && (is_digit(s[j]) || s[j] == '/')) j++;
    return (long)(j - i);
  default:
    return -2; /* free text */
  }
}

static void set_field(match_ctx *c, char k, size_t i, size_t len, int64_t num) {
  qp_log_msg *m = c->m;
  qp_span v = {c->s + i, len};
  switch (k) {
  case 'm':
  case 't':
  case 'n':
    m->time_ns = num;
    break;
  case 'p':
    m->pid = num;
    break;
  case 'u':
    m->user = v;
    break;
  case 'd':
    m->database = v;
    break;
  case 'a':
    m->application = v;
    break;
  case 'h':
    m->host = v;
    break;
  case 'r': /* host(port) */
    if (m->host.n == 0) {
      size_t e = len;
      while (e > 0 && c->s[i + e - 1] != '(') e--;
      m->host = (qp_span){c->s + i, e > 0 ? e - 1 : len};
    }
    break;
  case 'e':
    memcpy(m->sqlstate, c->s + i, 5);
    m->sqlstate[5] = '\0';
    break;
  default:
    break;
  }
}

static bool match_from(match_ctx *c, size_t t, size_t i) {
  if (--c->budget < 0) return false;
  const qp_prefix *px = c->px;
  if (t == c->ntok) {
    size_t used = 0;
    qp_sev sev = qp__sev_parse(c->s + i, c->n - i, &used);
    if (sev == QP_SEV_NONE) return false;
    c->m->severity = sev;
    c->body = i + used;
    return true;
  }
  const qp_pfx_tok *tk = &px->tok[t];
  if (tk->kind == 0) {
    if (c->n - i < tk->lit_len || memcmp(c->s + i, tk->lit, tk->lit_len) != 0) return false;
    return match_from(c, t + 1, i + tk->lit_len);
  }
  if (tk->kind == 'q') return match_from(c, t + 1, i);
  int64_t num = 0;
  long len = shaped(c, tk->kind, i, &num);
  if (len >= 0) {
    if (!match_from(c, t + 1, i + (size_t)len)) return false;
    set_field(c, tk->kind, i, (size_t)len, num);
    return true;
  }
  if (len == -1) return false;
  /* Free text: up to an occurrence of the next literal (or of the
   * severity when nothing follows), trying later ones on failure. */
  const qp_pfx_tok *next = t + 1 < c->ntok ? &px->tok[t + 1] : NULL;
  if (next != NULL && next->kind == 0) {
    size_t from = i;
    while (from <= c->n) {
      const char *hit = memmem(c->s + from, c->n - from, next->lit, next->lit_len);
      if (hit == NULL) return false;
      size_t e = (size_t)(hit - c->s);
      if (match_from(c, t + 1, e)) {
        set_field(c, tk->kind, i, e - i, 0);
        return true;
      }
      if (c->budget < 0) return false;
      from = e + 1;
    }
    return false;
  }
  /* followed by another escape or by the severity: up to a space */
  size_t e = i;
  while (e < c->n && c->s[e] != ' ') e++;
  if (next == NULL) {
    /* "%u LOG:" has a literal; a prefix ending in a free field is followed
     * directly by the severity: the field is empty or ends before it */
    for (size_t k = i; k <= c->n && k <= i + 64; k++) {
      if (match_from(c, t + 1, k)) {
        set_field(c, tk->kind, i, k - i, 0);
        return true;
      }
      if (c->budget < 0) return false;
    }
    return false;
  }
  if (!match_from(c, t + 1, e)) return false;
  set_field(c, tk->kind, i, e - i, 0);
  return true;
}

bool qp__prefix_match(const qp_prefix *px, qp_ts_cache *tc, const char *line, size_t n,
                      qp_log_msg *m, size_t *body, bool *unknown_zone) {
  match_ctx c = {.px = px, .tc = tc, .s = line, .n = n, .ntok = px->ntok, .m = m, .budget = 256};
  if (match_from(&c, 0, 0)) {
    *body = c.body;
    if (c.unknown_zone) *unknown_zone = true;
    return true;
  }
  if (px->q_at != SIZE_MAX) {
    /* a process without a session (checkpointer, ...) stops at %q; fields
     * are only set once a whole match succeeded, so nothing to undo */
    c.ntok = px->q_at;
    c.budget = 256;
    c.unknown_zone = false;
    if (match_from(&c, 0, 0)) {
      *body = c.body;
      if (c.unknown_zone) *unknown_zone = true;
      return true;
    }
  }
  return false;
}
