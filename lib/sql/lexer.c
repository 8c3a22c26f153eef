/*
 * The SQL lexer for both dialects: one token per call, a byte loop over a
 * character-class table, no recursion, no allocation.
 */
#include <string.h>

#include "internal.h"
#include "sql_int.h"
#include "lex_impl.h"

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

size_t qp__sql_lex(qp_dialect d, const char *s, size_t len, size_t pos, qp_tok *t) {
  return qp__sql_lex_impl(d, s, len, pos, t);
}

/* ---- keywords ---------------------------------------------------------- */

/* In enum order, which is alphabetical: the lookup is a binary search. */
const qp_kw_entry qp__sql_kw_table[QP_KW_COUNT_] = {
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
    const qp_kw_entry *k = &qp__sql_kw_table[mid];
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


bool qp__sql_copy_name(char *dst, size_t cap, const char *s, size_t n, bool lower) {
  size_t dn = strlen(dst);
  if (dn + n + 1 > cap) return false;
  for (size_t i = 0; i < n; i++)
    dst[dn + i] = lower ? (char)qp__sql_lower[(unsigned char)s[i]] : s[i];
  dst[dn + n] = '\0';
  return true;
}
