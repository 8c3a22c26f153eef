/*
 * The SQL lexer for both dialects: one token per call, a byte loop over a
 * character-class table, no recursion, no allocation.
 */
#include <string.h>

#include "internal.h"
#include "sql_int.h"

/* Range designators keep the tables readable; they are a GNU extension that
 * gcc and clang accept in C11 mode. */
const uint8_t qp__sql_cclass[256] = {
    [0x00 ... 0x20] = QP_C_SPACE,
    [0x7f] = QP_C_SPACE,
    ['a' ... 'z'] = QP_C_IDENT,
    ['A' ... 'Z'] = QP_C_IDENT,
    ['_'] = QP_C_IDENT,
    [0x80 ... 0xff] = QP_C_IDENT,
    ['0' ... '9'] = QP_C_DIGIT,
    ['\''] = QP_C_QUOTE,
    ['"'] = QP_C_DQUOTE,
    ['`'] = QP_C_BTICK,
    ['$'] = QP_C_DOLLAR,
    ['+'] = QP_C_OP,
    ['-'] = QP_C_OP,
    ['*'] = QP_C_OP,
    ['/'] = QP_C_OP,
    ['<'] = QP_C_OP,
    ['>'] = QP_C_OP,
    ['='] = QP_C_OP,
    ['~'] = QP_C_OP,
    ['!'] = QP_C_OP,
    ['@'] = QP_C_OP,
    ['#'] = QP_C_OP,
    ['%'] = QP_C_OP,
    ['^'] = QP_C_OP,
    ['&'] = QP_C_OP,
    ['|'] = QP_C_OP,
    ['?'] = QP_C_OP,
    ['('] = QP_C_LPAREN,
    [')'] = QP_C_RPAREN,
    ['['] = QP_C_LBRACK,
    [']'] = QP_C_RBRACK,
    [','] = QP_C_COMMA,
    [';'] = QP_C_SEMI,
    ['.'] = QP_C_DOT,
    [':'] = QP_C_COLON,
};

#define L_(c) [c] = (uint8_t)(c)
const uint8_t qp__sql_lower[256] = {
#define R4_(b) L_(b), L_(b + 1), L_(b + 2), L_(b + 3)
#define R16_(b) R4_(b), R4_(b + 4), R4_(b + 8), R4_(b + 12)
    R16_(0x00), R16_(0x10), R16_(0x20), R16_(0x30),
    [0x40] = 0x40,
    ['A'] = 'a', ['B'] = 'b', ['C'] = 'c', ['D'] = 'd', ['E'] = 'e', ['F'] = 'f', ['G'] = 'g',
    ['H'] = 'h', ['I'] = 'i', ['J'] = 'j', ['K'] = 'k', ['L'] = 'l', ['M'] = 'm', ['N'] = 'n',
    ['O'] = 'o', ['P'] = 'p', ['Q'] = 'q', ['R'] = 'r', ['S'] = 's', ['T'] = 't', ['U'] = 'u',
    ['V'] = 'v', ['W'] = 'w', ['X'] = 'x', ['Y'] = 'y', ['Z'] = 'z',
    L_(0x5b), L_(0x5c), L_(0x5d), L_(0x5e), L_(0x5f),
    R16_(0x60), R16_(0x70), R16_(0x80), R16_(0x90), R16_(0xa0), R16_(0xb0), R16_(0xc0),
    R16_(0xd0), R16_(0xe0), R16_(0xf0),
#undef R16_
#undef R4_
};
#undef L_

static inline bool is_opchar_pg(unsigned char c) { return qp__sql_cclass[c] == QP_C_OP; }

/* Scans a quoted run starting after the opening quote `q` at s[pos]; a
 * doubled quote is an escaped quote; with `backslash`, \x escapes anything.
 * Returns the position after the closing quote, or len. */
static size_t scan_quoted(const char *s, size_t len, size_t pos, char q, bool backslash) {
  for (;;) {
    if (pos >= len) return len;
    const char *hit;
    if (backslash) {
      /* find the next quote or backslash */
      size_t i = pos;
      while (i < len && s[i] != q && s[i] != '\\') i++;
      if (i >= len) return len;
      if (s[i] == '\\') {
        pos = i + 2;
        continue;
      }
      hit = s + i;
    } else {
      hit = memchr(s + pos, q, len - pos);
      if (hit == NULL) return len;
    }
    pos = (size_t)(hit - s) + 1;
    if (pos < len && s[pos] == q) {
      pos++;
      continue;
    }
    return pos;
  }
}

/* A block comment starting at s[pos] == '/' and s[pos+1] == '*'. PostgreSQL
 * nests them; SQLite does not. Unterminated: runs to the end. */
static size_t scan_block_comment(qp_dialect d, const char *s, size_t len, size_t pos) {
  pos += 2;
  if (d != QP_DIALECT_POSTGRES) {
    while (pos + 1 < len) {
      const char *star = memchr(s + pos, '*', len - pos - 1);
      if (star == NULL) return len;
      pos = (size_t)(star - s);
      if (s[pos + 1] == '/') return pos + 2;
      pos++;
    }
    return len;
  }
  size_t depth = 1;
  while (pos + 1 < len) {
    char c = s[pos];
    if (c == '*' && s[pos + 1] == '/') {
      pos += 2;
      if (--depth == 0) return pos;
    } else if (c == '/' && s[pos + 1] == '*') {
      pos += 2;
      depth++;
    } else {
      pos++;
    }
  }
  return len;
}

/* Numbers: digits, a fraction, an exponent, 0x/0o/0b prefixes, underscores
 * between digits. Starts at a digit or at '.' followed by a digit. */
static size_t scan_number(const char *s, size_t len, size_t pos) {
  if (s[pos] == '0' && pos + 2 < len) {
    char p = (char)(s[pos + 1] | 0x20);
    if (p == 'x' || p == 'o' || p == 'b') {
      size_t i = pos + 2;
      while (i < len && (qp__sql_cclass[(unsigned char)s[i]] == QP_C_DIGIT ||
                         ((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'f') || s[i] == '_'))
        i++;
      if (i > pos + 2) return i;
    }
  }
  size_t i = pos;
  while (i < len && (qp__sql_cclass[(unsigned char)s[i]] == QP_C_DIGIT || s[i] == '_')) i++;
  if (i < len && s[i] == '.' && !(i + 1 < len && s[i + 1] == '.')) {
    i++;
    while (i < len && (qp__sql_cclass[(unsigned char)s[i]] == QP_C_DIGIT || s[i] == '_')) i++;
  }
  if (i < len && (s[i] | 0x20) == 'e') {
    size_t j = i + 1;
    if (j < len && (s[j] == '+' || s[j] == '-')) j++;
    if (j < len && qp__sql_cclass[(unsigned char)s[j]] == QP_C_DIGIT) {
      while (j < len && qp__sql_cclass[(unsigned char)s[j]] == QP_C_DIGIT) j++;
      i = j;
    }
  }
  return i;
}

static inline size_t scan_ident(const char *s, size_t len, size_t pos) {
  while (pos < len && qp__sql_idchar((unsigned char)s[pos])) pos++;
  return pos;
}

/* PostgreSQL operator: the longest run of operator bytes, not crossing the
 * start of a comment; a run of more than one byte may not end in + or -
 * unless it contains one of ~ ! @ # % ^ & | ` ? (the server's rule, which
 * makes "=-5" lex as "=" and "-5"). */
static size_t scan_pg_op(const char *s, size_t len, size_t pos) {
  size_t i = pos;
  bool special = false;
  while (i < len && is_opchar_pg((unsigned char)s[i])) {
    if (i > pos && i + 1 < len && ((s[i] == '-' && s[i + 1] == '-') || (s[i] == '/' && s[i + 1] == '*')))
      break;
    switch (s[i]) {
    case '~': case '!': case '@': case '#': case '%': case '^': case '&': case '|': case '?':
      special = true;
      break;
    default:
      break;
    }
    i++;
  }
  if (!special) {
    while (i - pos > 1 && (s[i - 1] == '+' || s[i - 1] == '-')) i--;
  }
  return i;
}

/* SQLite operators: the fixed set of its tokenizer. */
static size_t scan_sqlite_op(const char *s, size_t len, size_t pos) {
  char c = s[pos];
  char n = pos + 1 < len ? s[pos + 1] : '\0';
  switch (c) {
  case '<':
    if (n == '=' || n == '>' || n == '<') return pos + 2;
    return pos + 1;
  case '>':
    if (n == '=' || n == '>') return pos + 2;
    return pos + 1;
  case '=':
    return n == '=' ? pos + 2 : pos + 1;
  case '!':
    return n == '=' ? pos + 2 : pos + 1;
  case '|':
    return n == '|' ? pos + 2 : pos + 1;
  case '-':
    if (n == '>') return (pos + 2 < len && s[pos + 2] == '>') ? pos + 3 : pos + 2;
    return pos + 1;
  default:
    return pos + 1;
  }
}

size_t qp__sql_lex(qp_dialect d, const char *s, size_t len, size_t pos, qp_tok *t) {
  const bool pg = d == QP_DIALECT_POSTGRES;
  while (pos < len && qp__sql_cclass[(unsigned char)s[pos]] == QP_C_SPACE) pos++;
  t->start = pos;
  if (pos >= len) {
    t->type = QP_T_EOF;
    t->end = len;
    return len;
  }
  unsigned char c = (unsigned char)s[pos];
  unsigned char n = pos + 1 < len ? (unsigned char)s[pos + 1] : 0;
  size_t e;
  switch (qp__sql_cclass[c]) {
  case QP_C_IDENT:
    /* string prefixes: E'' B'' X'' N'' (PostgreSQL), X'' (SQLite), U&'' U&"" */
    if (n == '\'') {
      char lc = (char)(c | 0x20);
      if (lc == 'x' || (pg && (lc == 'e' || lc == 'b' || lc == 'n'))) {
        t->type = QP_T_STRING;
        e = scan_quoted(s, len, pos + 2, '\'', pg && lc == 'e');
        break;
      }
    } else if (pg && (c | 0x20) == 'u' && n == '&' && pos + 2 < len &&
               (s[pos + 2] == '\'' || s[pos + 2] == '"')) {
      char q = s[pos + 2];
      t->type = q == '\'' ? QP_T_STRING : QP_T_QIDENT;
      e = scan_quoted(s, len, pos + 3, q, false);
      break;
    }
    t->type = QP_T_WORD;
    e = scan_ident(s, len, pos + 1);
    break;
  case QP_C_DIGIT:
    t->type = QP_T_NUMBER;
    e = scan_number(s, len, pos);
    break;
  case QP_C_QUOTE:
    t->type = QP_T_STRING;
    e = scan_quoted(s, len, pos + 1, '\'', false);
    break;
  case QP_C_DQUOTE:
    t->type = QP_T_QIDENT;
    e = scan_quoted(s, len, pos + 1, '"', false);
    break;
  case QP_C_BTICK:
    if (pg) {
      t->type = QP_T_OP;
      e = pos + 1;
    } else {
      t->type = QP_T_QIDENT;
      e = scan_quoted(s, len, pos + 1, '`', false);
    }
    break;
  case QP_C_LBRACK:
    if (pg) {
      t->type = QP_T_LBRACK;
      e = pos + 1;
    } else {
      /* SQLite: [identifier], no escapes */
      const char *close = memchr(s + pos + 1, ']', len - pos - 1);
      t->type = QP_T_QIDENT;
      e = close ? (size_t)(close - s) + 1 : len;
    }
    break;
  case QP_C_DOLLAR:
    if (qp__sql_cclass[n] == QP_C_DIGIT) {
      t->type = QP_T_PARAM;
      e = pos + 1;
      while (e < len && qp__sql_cclass[(unsigned char)s[e]] == QP_C_DIGIT) e++;
      break;
    }
    if (pg) {
      /* $tag$ ... $tag$ (tag: an identifier without '$', possibly empty) */
      size_t i = pos + 1;
      if (i < len && qp__sql_cclass[(unsigned char)s[i]] == QP_C_IDENT) {
        i++;
        while (i < len && (qp__sql_cclass[(unsigned char)s[i]] == QP_C_IDENT ||
                           qp__sql_cclass[(unsigned char)s[i]] == QP_C_DIGIT))
          i++;
      }
      if (i < len && s[i] == '$') {
        size_t taglen = i + 1 - pos;
        const char *close =
            i + 1 < len ? memmem(s + i + 1, len - i - 1, s + pos, taglen) : NULL;
        t->type = QP_T_STRING;
        e = close ? (size_t)(close - s) + taglen : len;
        break;
      }
      t->type = QP_T_OTHER;
      e = pos + 1;
      break;
    }
    /* SQLite $name */
    e = scan_ident(s, len, pos + 1);
    t->type = e > pos + 1 ? QP_T_PARAM : QP_T_OTHER;
    break;
  case QP_C_OP:
    if (c == '-' && n == '-') {
      const char *nl = memchr(s + pos, '\n', len - pos);
      t->type = QP_T_COMMENT;
      e = nl ? (size_t)(nl - s) + 1 : len;
      break;
    }
    if (c == '/' && n == '*') {
      t->type = QP_T_COMMENT;
      e = scan_block_comment(d, s, len, pos);
      break;
    }
    if (!pg) {
      if (c == '?') {
        t->type = QP_T_PARAM;
        e = pos + 1;
        while (e < len && qp__sql_cclass[(unsigned char)s[e]] == QP_C_DIGIT) e++;
        break;
      }
      if (c == '@' && qp__sql_idchar(n) && n != '$') {
        t->type = QP_T_PARAM;
        e = scan_ident(s, len, pos + 1);
        break;
      }
      t->type = QP_T_OP;
      e = scan_sqlite_op(s, len, pos);
      break;
    }
    e = scan_pg_op(s, len, pos);
    /* A lone '?' is a placeholder (JDBC, or normalized text). */
    t->type = (e == pos + 1 && c == '?') ? QP_T_PARAM : QP_T_OP;
    break;
  case QP_C_LPAREN:
    t->type = QP_T_LPAREN;
    e = pos + 1;
    break;
  case QP_C_RPAREN:
    t->type = QP_T_RPAREN;
    e = pos + 1;
    break;
  case QP_C_RBRACK:
    t->type = QP_T_RBRACK;
    e = pos + 1;
    break;
  case QP_C_COMMA:
    t->type = QP_T_COMMA;
    e = pos + 1;
    break;
  case QP_C_SEMI:
    t->type = QP_T_SEMI;
    e = pos + 1;
    break;
  case QP_C_DOT:
    if (qp__sql_cclass[n] == QP_C_DIGIT) {
      t->type = QP_T_NUMBER;
      e = scan_number(s, len, pos);
      break;
    }
    t->type = QP_T_DOT;
    e = pos + 1;
    break;
  case QP_C_COLON:
    if (pg && n == ':') {
      t->type = QP_T_CAST;
      e = pos + 2;
      break;
    }
    if (!pg && qp__sql_idchar(n) && n != '$') {
      t->type = QP_T_PARAM;
      e = scan_ident(s, len, pos + 1);
      break;
    }
    t->type = QP_T_COLON;
    e = pos + 1;
    break;
  default:
    t->type = QP_T_OTHER;
    e = pos + 1;
    break;
  }
  if (e > len) e = len;
  t->end = e;
  return e;
}

/* ---- keywords ---------------------------------------------------------- */

typedef struct kw_entry {
  const char *text;
  uint8_t len;
  uint8_t op; /* an expression starts after it */
} kw_entry;

/* In enum order, which is alphabetical: the lookup is a binary search. */
static const kw_entry kw_table[QP_KW_COUNT_] = {
    [QP_KW_NONE] = {"", 0, 0},
#define QP_KW_ROW_(id, text, opf) [QP_KW_##id] = {text, (uint8_t)(sizeof(text) - 1), opf},
    QP_KW_LIST(QP_KW_ROW_)
#undef QP_KW_ROW_
};

qp_kw qp__sql_keyword(const char *s, size_t n) {
  if (n < 2 || n > 17) return QP_KW_NONE;
  char low[18];
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x80) return QP_KW_NONE;
    low[i] = (char)qp__sql_lower[c];
  }
  /* Binary search over the alphabetical enum order. */
  size_t lo = 1, hi = QP_KW_COUNT_;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    const kw_entry *k = &kw_table[mid];
    size_t m = n < k->len ? n : k->len;
    int c = memcmp(low, k->text, m);
    if (c == 0) c = n < k->len ? -1 : (n > k->len ? 1 : 0);
    if (c == 0) return (qp_kw)mid;
    if (c < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  return QP_KW_NONE;
}

bool qp__sql_kw_operator(qp_kw kw) { return kw > QP_KW_NONE && kw < QP_KW_COUNT_ && kw_table[kw].op; }

bool qp__sql_copy_name(char *dst, size_t cap, const char *s, size_t n, bool lower) {
  size_t dn = strlen(dst);
  if (dn + n + 1 > cap) return false;
  for (size_t i = 0; i < n; i++)
    dst[dn + i] = lower ? (char)qp__sql_lower[(unsigned char)s[i]] : s[i];
  dst[dn + n] = '\0';
  return true;
}
