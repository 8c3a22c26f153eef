/*
 * Private to lib/sql: the lexer's body, inlined into the normalizer's hot
 * loop and wrapped as qp__sql_lex() for the splitter and the classifier.
 * Include only from the .c files of lib/sql, after sql_int.h.
 */
#ifndef QP_SQL_LEX_IMPL_H
#define QP_SQL_LEX_IMPL_H

#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "internal.h"
#include "sql_int.h"

static inline bool is_opchar_pg(unsigned char c) { return qp__sql_cclass[c] == QP_C_OP; }

/* Scans a quoted run starting after the opening quote `q` at s[pos]; a
 * doubled quote is an escaped quote; with `backslash`, \x escapes anything.
 * Returns the position after the closing quote, or len. */
static inline __attribute__((always_inline)) size_t scan_quoted(const char *s, size_t len, size_t pos, char q, bool backslash) {
  for (;;) {
    if (pos >= len) return len;
    const char *hit;
    if (backslash) {
      /* find the next quote or backslash */
      size_t i = pos;
#ifdef __SSE2__
      while (i + 16 <= len) {
        const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(
            _mm_cmpeq_epi8(v, _mm_set1_epi8(q)), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))));
        if (m != 0) {
          i += (size_t)__builtin_ctz(m);
          break;
        }
        i += 16;
      }
#endif
      while (i < len && s[i] != q && s[i] != '\\') i++;
      if (i >= len) return len;
      if (s[i] == '\\') {
        pos = i + 2;
        continue;
      }
      hit = s + i;
    } else {
#ifdef __SSE2__
      /* most literals are short: look at 16 bytes before calling memchr */
      if (pos + 16 <= len) {
        const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + pos));
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(q)));
        if (m != 0) {
          hit = s + pos + __builtin_ctz(m);
          goto found;
        }
        pos += 16;
        if (pos >= len) return len;
      }
#endif
      hit = memchr(s + pos, q, len - pos);
      if (hit == NULL) return len;
    }
#ifdef __SSE2__
  found:
#endif
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
static inline size_t scan_block_comment(qp_dialect d, const char *s, size_t len, size_t pos) {
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
  /* Jump from star to star: an opener is a star right after a slash, a
   * closer a star right before one. */
  size_t depth = 1;
  while (pos + 1 < len) {
    const char *star = memchr(s + pos, '*', len - pos - 1);
    if (star == NULL) return len;
    size_t sp = (size_t)(star - s);
    if (sp > pos && s[sp - 1] == '/') {
      depth++;
      pos = sp + 1;
    } else if (s[sp + 1] == '/') {
      pos = sp + 2;
      if (--depth == 0) return pos;
    } else {
      pos = sp + 1;
    }
  }
  return len;
}

/* Skips ASCII digits from s[i], eight at a time where the input allows:
 * a byte is a digit when its high nibble is 3 and its low nibble <= 9. */
static inline __attribute__((always_inline)) size_t skip_digits(const char *s, size_t len, size_t i) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  while (i + 8 <= len) {
    uint64_t x;
    memcpy(&x, s + i, 8);
    uint64_t hi = (x & 0xF0F0F0F0F0F0F0F0ULL) ^ 0x3030303030303030ULL;
    uint64_t lo = ((x & 0x0F0F0F0F0F0F0F0FULL) + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL;
    uint64_t nd = hi | lo; /* a byte is non-zero where the input byte is not a digit */
    uint64_t m = (((nd & 0x7F7F7F7F7F7F7F7FULL) + 0x7F7F7F7F7F7F7F7FULL) | nd) & 0x8080808080808080ULL;
    if (m != 0) return i + ((size_t)__builtin_ctzll(m) >> 3); /* little-endian byte order */
    i += 8;
  }
#endif
  while (i < len && (unsigned char)(s[i] - '0') < 10) i++;
  return i;
}

/* Numbers: digits, a fraction, an exponent, 0x/0o/0b prefixes, underscores
 * between digits. Starts at a digit or at '.' followed by a digit. */
static inline __attribute__((always_inline)) size_t scan_number(const char *s, size_t len, size_t pos) {
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
  size_t i = skip_digits(s, len, pos);
  if (QP_UNLIKELY(i < len && s[i] == '_'))
    while (i < len && (qp__sql_cclass[(unsigned char)s[i]] == QP_C_DIGIT || s[i] == '_')) i++;
  if (i < len && s[i] == '.' && !(i + 1 < len && s[i + 1] == '.')) {
    i = skip_digits(s, len, i + 1);
    if (QP_UNLIKELY(i < len && s[i] == '_'))
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

/* The first occurrence of the dollar-quote tag[0..n) (which starts with '$')
 * in s[pos..len), or NULL: memchr to each '$', then compare. */
static inline const char *find_dollar_tag(const char *s, size_t len, size_t pos, const char *tag,
                                          size_t n) {
  while (pos + n <= len) {
    const char *d = memchr(s + pos, '$', len - pos - n + 1);
    if (d == NULL) return NULL;
    if (memcmp(d, tag, n) == 0) return d;
    pos = (size_t)(d - s) + 1;
  }
  return NULL;
}

/* A PostgreSQL dollar quote $tag$ ... $tag$ at s[pos] == '$' (tag: an
 * identifier without '$', possibly empty): returns the position after it (len
 * when it is not closed, and then *closed is false), or 0 when s[pos] starts
 * no dollar quote. */
static inline size_t scan_dollar_quote(const char *s, size_t len, size_t pos, bool *closed) {
  size_t i = pos + 1;
  if (i < len && qp__sql_cclass[(unsigned char)s[i]] == QP_C_IDENT) {
    i++;
    while (i < len && (qp__sql_cclass[(unsigned char)s[i]] == QP_C_IDENT ||
                       qp__sql_cclass[(unsigned char)s[i]] == QP_C_DIGIT))
      i++;
  }
  if (!(i < len && s[i] == '$')) return 0;
  size_t taglen = i + 1 - pos;
  const char *close = i + 1 < len ? find_dollar_tag(s, len, i + 1, s + pos, taglen) : NULL;
  if (closed != NULL) *closed = close != NULL;
  return close ? (size_t)(close - s) + taglen : len;
}

/* Bits set in a 16-bit mask (no dependence on the popcnt instruction). */
static inline unsigned popcount16(unsigned x) {
  x = x - ((x >> 1) & 0x5555u);
  x = (x & 0x3333u) + ((x >> 2) & 0x3333u);
  x = (x + (x >> 4)) & 0x0F0Fu;
  return (x + (x >> 8)) & 0x1Fu;
}

#ifdef __SSE2__
/* A bit per byte of the 16 at p that may continue an unquoted identifier:
 * letters, digits, _, $ and bytes >= 0x80 (negative as signed bytes). */
static inline __attribute__((always_inline)) unsigned idchar_mask16(const char *p) {
  const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
  const __m128i l = _mm_or_si128(v, _mm_set1_epi8(0x20));
  const __m128i letter = _mm_and_si128(_mm_cmpgt_epi8(l, _mm_set1_epi8('a' - 1)),
                                       _mm_cmplt_epi8(l, _mm_set1_epi8('z' + 1)));
  const __m128i digit = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8('0' - 1)),
                                      _mm_cmplt_epi8(v, _mm_set1_epi8('9' + 1)));
  const __m128i other = _mm_or_si128(
      _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('_')), _mm_cmpeq_epi8(v, _mm_set1_epi8('$'))),
      _mm_cmplt_epi8(v, _mm_setzero_si128()));
  return (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(letter, digit), other));
}
#endif

static inline __attribute__((always_inline)) size_t scan_ident(const char *s, size_t len, size_t pos) {
#ifdef __SSE2__
  while (pos + 16 <= len) {
    unsigned m = idchar_mask16(s + pos);
    if (m != 0xFFFFu) return pos + (size_t)__builtin_ctz(~m);
    pos += 16;
  }
#endif
  while (pos < len && qp__sql_idchar((unsigned char)s[pos])) pos++;
  return pos;
}

/* PostgreSQL operator: the longest run of operator bytes, not crossing the
 * start of a comment; a run of more than one byte may not end in + or -
 * unless it contains one of ~ ! @ # % ^ & | ` ? (the server's rule, which
 * makes "=-5" lex as "=" and "-5"). */
static inline size_t scan_pg_op(const char *s, size_t len, size_t pos) {
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
  if (QP_UNLIKELY(special)) {
    /* JDBC-style placeholders glued to an operator: "id=?", "a<>?", "?=x"
     * are the operator and a '?'. Operators that really end in '?' (jsonb
     * "@?") or start with one ("?|", "?&", "?-", "?#") stay whole. */
    if (s[pos] == '?' && i - pos >= 2 &&
        (s[pos + 1] == '=' || s[pos + 1] == '<' || s[pos + 1] == '>' || s[pos + 1] == '!'))
      return pos + 1;
    if (i - pos < 2 || s[i - 1] != '?' || s[i - 2] == '?' || s[i - 2] == '@') return i;
    i--;
    special = false;
    for (size_t j = pos; j < i; j++)
      if (memchr("~!@#%^&|`?", s[j], 10) != NULL) special = true;
    if (special) return i;
  }
  while (i - pos > 1 && (s[i - 1] == '+' || s[i - 1] == '-')) i--;
  return i;
}

/* A SQLite variable at s[pos] ('$', '@', ':' or '#'), by the rule of its
 * tokenizer (tokenize.c, CC_DOLLAR and CC_VARALPHA): identifier bytes, with
 * "::" allowed anywhere ("$::ns::v") and one trailing "(...)" without white
 * space once a name byte was read ("$a(15)"). Returns where it ends, or pos
 * when no identifier byte follows (not a variable). A "(" that SQLite would
 * reject (white space or the end before ')') ends the variable before it. */
static inline size_t scan_sqlite_var(const char *s, size_t len, size_t pos) {
  size_t i = pos + 1, n = 0;
  while (i < len) {
    const unsigned char c = (unsigned char)s[i];
    if (qp__sql_idchar(c)) {
      n++;
      i++;
    } else if (c == '(' && n > 0) {
      size_t j = i + 1;
      while (j < len && s[j] != ')' && qp__sql_cclass[(unsigned char)s[j]] != QP_C_SPACE) j++;
      if (j < len && s[j] == ')') i = j + 1;
      break;
    } else if (c == ':' && i + 1 < len && s[i + 1] == ':') {
      i += 2;
    } else {
      break;
    }
  }
  return n > 0 ? i : pos;
}

/* SQLite operators: the fixed set of its tokenizer. */
static inline size_t scan_sqlite_op(const char *s, size_t len, size_t pos) {
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

static inline __attribute__((always_inline)) size_t qp__sql_lex_impl(qp_dialect d, const char *s,
                                                                     size_t len, size_t pos, qp_tok *t) {
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
    } else if (n == '&' && pg && (c | 0x20) == 'u' && pos + 2 < len &&
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
    if (pg && qp__sql_cclass[n] == QP_C_DIGIT) {
      t->type = QP_T_PARAM;
      e = pos + 1;
      while (e < len && qp__sql_cclass[(unsigned char)s[e]] == QP_C_DIGIT) e++;
      break;
    }
    if (pg) {
      e = scan_dollar_quote(s, len, pos, NULL);
      t->type = e != 0 ? QP_T_STRING : QP_T_OTHER;
      if (e == 0) e = pos + 1;
      break;
    }
    /* SQLite $name, $a::b, $a(x) */
    e = scan_sqlite_var(s, len, pos);
    t->type = e > pos ? QP_T_PARAM : QP_T_OTHER;
    if (e == pos) e = pos + 1;
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
      if ((c == '@' || c == '#') && (e = scan_sqlite_var(s, len, pos)) > pos) {
        t->type = QP_T_PARAM;
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
    if (!pg && (e = scan_sqlite_var(s, len, pos)) > pos) {
      t->type = QP_T_PARAM;
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

#endif
