/*
 * The default redaction of sample statements (qp_profile's `sample`): what
 * is removed before a statement with its literals is stored. One pass over
 * the tokens (the lexer of the statement's dialect), collecting the byte
 * ranges to remove, then one copy with each range replaced by '?':
 *
 *  - digit runs of 13 to 19 digits (single spaces or hyphens may separate
 *    digits) that pass the Luhn check (card numbers), inside numbers,
 *    strings and comments: a number becomes '?', a run inside a string or
 *    comment becomes '?' there ('card 4111 1111 1111 1111' -> 'card ?');
 *  - e-mail addresses (local@domain.tld) inside strings and comments;
 *  - every literal of a value compared with or assigned to a column whose
 *    name contains password, passwd, pwd, secret, token, api_key, apikey,
 *    private_key or credential (any case; quoted or not; qualified or
 *    not): `password = 'x'`, `'x' = password`, `token IN ('a', 'b')`,
 *    `SET api_key = 'k' || 'j'`, `password = crypt('x', gen_salt('bf'))`,
 *    `PASSWORD 'x'` (CREATE ROLE), and the values of such columns in
 *    `INSERT ... (cols) VALUES (...), (...)` rows. The value ends at a ','
 *    or ')' at its own depth, a ';', or a clause keyword (AND, OR, WHERE...).
 *
 * Never fails but on out-of-memory; no recursion; time linear in the text.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "sql_int.h"

typedef struct span {
  size_t a, b;
} span;

typedef struct spans {
  const qp_hooks *h;
  span *v;
  size_t n, cap;
  bool oom;
} spans;

static void add_span(spans *sp, size_t a, size_t b) {
  if (a >= b || sp->oom) return;
  if (sp->n > 0 && sp->v[sp->n - 1].a <= a && a <= sp->v[sp->n - 1].b) {
    if (b > sp->v[sp->n - 1].b) sp->v[sp->n - 1].b = b; /* joins the last one */
    return;
  }
  if (sp->n == sp->cap) {
    size_t cap = sp->cap ? sp->cap * 2 : 16;
    span *v = qp__malloc(sp->h, cap * sizeof *v);
    if (v == NULL) {
      sp->oom = true;
      return;
    }
    if (sp->n) memcpy(v, sp->v, sp->n * sizeof *v);
    qp__free(sp->h, sp->v);
    sp->v = v;
    sp->cap = cap;
  }
  sp->v[sp->n].a = a;
  sp->v[sp->n].b = b;
  sp->n++;
}

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool is_alnum(unsigned char c) {
  return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

/* Card numbers in s[a..b): runs of digits with single ' ' or '-' between
 * digits, 13 to 19 digits, passing the Luhn check. */
static void find_cards(spans *sp, const char *s, size_t a, size_t b) {
  size_t i = a;
  while (i < b) {
    if (!is_digit((unsigned char)s[i])) {
      i++;
      continue;
    }
    /* the run: digits, a separator only between two digits */
    size_t start = i, end = i, ndig = 0;
    char dig[64];
    while (i < b) {
      if (is_digit((unsigned char)s[i])) {
        if (ndig < sizeof dig) dig[ndig] = s[i];
        ndig++;
        end = ++i;
      } else if ((s[i] == ' ' || s[i] == '-') && i + 1 < b && is_digit((unsigned char)s[i + 1])) {
        i++;
      } else {
        break;
      }
    }
    if (ndig >= 13 && ndig <= 19) {
      unsigned sum = 0;
      for (size_t k = 0; k < ndig; k++) {
        unsigned v = (unsigned)(dig[ndig - 1 - k] - '0');
        if (k & 1) v = v * 2 > 9 ? v * 2 - 9 : v * 2;
        sum += v;
      }
      if (sum % 10 == 0) add_span(sp, start, end);
    }
    i = end > i ? end : i;
  }
}

static bool email_local(unsigned char c) {
  return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}
static bool email_domain(unsigned char c) { return is_alnum(c) || c == '-' || c == '.'; }

/* E-mail addresses in s[a..b): local@label.label..., the last label two
 * letters or more. */
static void find_emails(spans *sp, const char *s, size_t a, size_t b) {
  for (size_t i = a; i < b; i++) {
    if (s[i] != '@') continue;
    size_t l = i;
    while (l > a && email_local((unsigned char)s[l - 1])) l--;
    size_t r = i + 1;
    while (r < b && email_domain((unsigned char)s[r])) r++;
    while (r > i + 1 && (s[r - 1] == '.' || s[r - 1] == '-')) r--;
    if (l == i || r == i + 1) continue;
    size_t dot = r;
    while (dot > i + 1 && s[dot - 1] != '.') dot--;
    if (dot <= i + 2) continue; /* no dot, or an empty first label */
    size_t tld = 0;
    for (size_t k = dot; k < r; k++) tld += ((s[k] | 0x20) >= 'a' && (s[k] | 0x20) <= 'z');
    if (tld < 2 || tld != r - dot) continue;
    add_span(sp, l, r);
    i = r;
  }
}

/* A name (word, or quoted name without its quotes) that holds secrets. */
static bool secret_name(const char *p, size_t k) {
  static const char *const parts[] = {"passw", "pwd",         "secret",    "token",
                                      "api_key", "apikey",     "private_key", "credential"};
  char low[128];
  if (k > sizeof low) k = sizeof low;
  for (size_t i = 0; i < k; i++) low[i] = (char)qp__sql_lower[(unsigned char)p[i]];
  for (size_t j = 0; j < sizeof parts / sizeof parts[0]; j++) {
    size_t m = strlen(parts[j]);
    for (size_t i = 0; i + m <= k; i++)
      if (memcmp(low + i, parts[j], m) == 0) return true;
  }
  return false;
}

static bool tok_secret(const char *s, const qp_tok *t) {
  size_t k = t->end - t->start;
  if (t->type == QP_T_WORD) return secret_name(s + t->start, k);
  if (t->type == QP_T_QIDENT && k >= 2) return secret_name(s + t->start + 1, k - 2);
  return false;
}

static bool is_literal(const qp_tok *t) { return t->type == QP_T_STRING || t->type == QP_T_NUMBER; }

/* A keyword that ends a value: the next clause or condition. */
static bool ends_value(qp_kw kw) {
  switch (kw) {
  case QP_KW_AND: case QP_KW_OR: case QP_KW_WHERE: case QP_KW_FROM: case QP_KW_ON:
  case QP_KW_RETURNING: case QP_KW_THEN: case QP_KW_WHEN: case QP_KW_ELSE: case QP_KW_END:
  case QP_KW_GROUP: case QP_KW_ORDER: case QP_KW_LIMIT: case QP_KW_HAVING: case QP_KW_UNION:
  case QP_KW_EXCEPT: case QP_KW_INTERSECT: case QP_KW_SET: case QP_KW_VALUES: case QP_KW_INTO:
  case QP_KW_SELECT: case QP_KW_USING: case QP_KW_JOIN: case QP_KW_OFFSET: case QP_KW_WINDOW:
  case QP_KW_FOR: case QP_KW_AS:
    return true;
  default:
    return false;
  }
}

static qp_kw tok_kw(const char *s, const qp_tok *t) {
  return t->type == QP_T_WORD ? qp__sql_keyword(s + t->start, t->end - t->start) : QP_KW_NONE;
}

char *qp__sql_redact(qp_dialect d, const char *s, size_t len, const qp_hooks *h) {
  spans sp = {h, NULL, 0, 0, false};
  qp_tok t;
  /* the last significant tokens, prev[0] the latest */
  enum { NPREV = 8 };
  qp_tok prev[NPREV];
  for (int i = 0; i < NPREV; i++) prev[i] = (qp_tok){QP_T_EOF, 0, 0};
  size_t pos = 0, depth = 0;
  /* a value being read (after `secret_name op`): its depth */
  bool value = false;
  size_t value_depth = 0;
  /* INSERT: 1 after INSERT/REPLACE, 2 after INTO, 3 in its column list,
   * 4 after it, 5 in VALUES rows */
  int ins = 0;
  size_t ins_depth = 0, col = 0, row_depth = 0;
  uint64_t secret_cols = 0;
  qp_kw kw0 = QP_KW_NONE; /* the statement's first keyword */
  for (;;) {
    pos = qp__sql_lex(d, s, len, pos, &t);
    if (t.type == QP_T_EOF) break;
    if (t.type == QP_T_COMMENT || t.type == QP_T_STRING) {
      find_cards(&sp, s, t.start, t.end);
      find_emails(&sp, s, t.start, t.end);
      if (t.type == QP_T_COMMENT) continue;
    } else if (t.type == QP_T_NUMBER) {
      spans one = {h, NULL, 0, 0, false};
      find_cards(&one, s, t.start, t.end);
      if (one.n > 0) add_span(&sp, t.start, t.end);
      qp__free(h, one.v);
      if (one.oom) sp.oom = true;
    }
    const qp_kw kw = tok_kw(s, &t);
    if (kw0 == QP_KW_NONE && kw != QP_KW_NONE) kw0 = kw;

    /* the value of a secret column */
    if (value) {
      if (t.type == QP_T_LPAREN || t.type == QP_T_LBRACK) {
        depth++;
      } else if (t.type == QP_T_RPAREN || t.type == QP_T_RBRACK) {
        if (depth == value_depth) value = false;
        if (depth > 0) depth--;
      } else if ((t.type == QP_T_COMMA && depth == value_depth) || t.type == QP_T_SEMI ||
                 (depth == value_depth && ends_value(kw))) {
        value = false;
      } else if (is_literal(&t)) {
        add_span(&sp, t.start, t.end);
      }
      if (value) goto next;
    } else if (t.type == QP_T_LPAREN || t.type == QP_T_LBRACK) {
      depth++;
    } else if (t.type == QP_T_RPAREN || t.type == QP_T_RBRACK) {
      if (depth > 0) depth--;
    }
    if (t.type == QP_T_SEMI) {
      ins = 0;
      kw0 = QP_KW_NONE;
      depth = 0;
    }

    if (tok_secret(s, &t) && !(ins == 3 && depth == ins_depth + 1)) {
      /* `'x' = password`, `'x' = u.password`: the literal before the
       * operator before the (qualified) name */
      int k = 0;
      while (k + 2 < NPREV && prev[k].type == QP_T_DOT &&
             (prev[k + 1].type == QP_T_WORD || prev[k + 1].type == QP_T_QIDENT))
        k += 2;
      if (k + 1 < NPREV && prev[k].type == QP_T_OP && is_literal(&prev[k + 1]))
        add_span(&sp, prev[k + 1].start, prev[k + 1].end);
      qp_tok u;
      size_t q = qp__sql_lex_sig(d, s, len, pos, &u);
      qp_kw ukw = tok_kw(s, &u);
      if (u.type == QP_T_STRING) {
        add_span(&sp, u.start, u.end); /* PASSWORD 'x' */
        pos = q;
        t = u;
      } else if (u.type == QP_T_OP || ukw == QP_KW_LIKE || ukw == QP_KW_ILIKE ||
                 ukw == QP_KW_GLOB || ukw == QP_KW_IN || ukw == QP_KW_NOT ||
                 ukw == QP_KW_SIMILAR || ukw == QP_KW_REGEXP || ukw == QP_KW_MATCH ||
                 (u.type == QP_T_COLON && d == QP_DIALECT_POSTGRES)) {
        pos = q;
        t = u;
        value = true;
        value_depth = depth;
      }
    }

    /* INSERT INTO t (cols) VALUES (...), (...) */
    switch (ins) {
    case 0:
      if (kw == QP_KW_INSERT || (kw == QP_KW_REPLACE && kw0 == kw)) ins = 1;
      break;
    case 1:
      if (kw == QP_KW_INTO) ins = 2;
      break;
    case 2:
      if (t.type == QP_T_LPAREN) {
        ins = 3;
        ins_depth = depth - 1;
        col = 0;
        secret_cols = 0;
      } else if (t.type != QP_T_WORD && t.type != QP_T_QIDENT && t.type != QP_T_DOT) {
        ins = 0;
      } else if (kw == QP_KW_VALUES || kw == QP_KW_SELECT || kw == QP_KW_DEFAULT) {
        ins = 0;
      }
      break;
    case 3:
      if (t.type == QP_T_RPAREN && depth == ins_depth) {
        ins = secret_cols ? 4 : 0;
      } else if (t.type == QP_T_COMMA && depth == ins_depth + 1) {
        col++;
      } else if (tok_secret(s, &t) && depth == ins_depth + 1 && col < 64) {
        secret_cols |= (uint64_t)1 << col;
      }
      break;
    case 4:
      if (kw == QP_KW_VALUES) {
        ins = 5;
        row_depth = 0;
      } else if (kw != QP_KW_NONE && kw != QP_KW_AS) {
        ins = 0;
      }
      break;
    case 5:
      if (row_depth == 0) {
        /* between rows: '(' starts one, ',' goes on, anything else ends */
        if (t.type == QP_T_LPAREN) {
          row_depth = depth;
          col = 0;
        } else if (t.type != QP_T_COMMA) {
          ins = 0;
        }
      } else if (t.type == QP_T_RPAREN && depth < row_depth) {
        row_depth = 0;
      } else if (t.type == QP_T_COMMA && depth == row_depth) {
        col++;
      } else if (is_literal(&t) && col < 64 && (secret_cols >> col & 1)) {
        add_span(&sp, t.start, t.end);
      }
      break;
    default:
      break;
    }
  next:
    memmove(prev + 1, prev, (NPREV - 1) * sizeof prev[0]);
    prev[0] = t;
  }

  /* the copy, each range replaced by '?'; ranges inside a string or a
   * comment keep its quotes (the range does not cover them) */
  char *out = NULL;
  if (!sp.oom) {
    /* ranges come in order except `'x' = password`, which adds one before
     * the last: sort (insertion sort: almost sorted, few ranges) */
    for (size_t i = 1; i < sp.n; i++) {
      span x = sp.v[i];
      size_t j = i;
      while (j > 0 && sp.v[j - 1].a > x.a) {
        sp.v[j] = sp.v[j - 1];
        j--;
      }
      sp.v[j] = x;
    }
    out = qp__malloc(h, len + 1);
  }
  if (out != NULL) {
    size_t o = 0, at = 0;
    for (size_t i = 0; i < sp.n; i++) {
      if (sp.v[i].b <= at) continue;
      size_t a = sp.v[i].a > at ? sp.v[i].a : at;
      memcpy(out + o, s + at, a - at);
      o += a - at;
      if (a == sp.v[i].a) out[o++] = '?';
      at = sp.v[i].b;
    }
    memcpy(out + o, s + at, len - at);
    o += len - at;
    out[o] = '\0';
  }
  qp__free(h, sp.v);
  return out;
}
