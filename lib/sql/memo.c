/*
 * The statement memo (memo.h): which literals of a remembered statement may
 * change, and the compare of a new text against it.
 */
#include <string.h>

#include "sql/memo.h"
#include "sql/sql_int.h"

/* A byte after a run of digits that ends the number whatever its digits
 * (memo.h); the end of the text is checked by the caller. */
static bool ends_number(unsigned char c) {
  if (qp__sql_cclass[c] == QP_C_SPACE && c != '\0') return true;
  switch (c) {
  case ',': case ';': case '(': case ')': case ']': case '+': case '-': case '*': case '/':
  case '%': case '<': case '>': case '=': case '!': case '|': case '&': case '^': case '~':
  case ':':
    return true;
  default:
    return false;
  }
}

/* The bytes of a string's inside that keep it one plain string. In SQLite
 * also no white space and no ')': a variable's "(...)" suffix ("$a(x)")
 * reads ahead to the first of them, into the literals after it. */
static bool plain_in_string(const qp_sql_memo *m, unsigned char c) {
  if (c == '\'' || c == '\\' || c == '\0') return false;
  return !m->sqlite || (c != ')' && qp__sql_cclass[c] != QP_C_SPACE);
}

void qp__sql_memo_set(qp_sql_memo *m, qp_dialect d, const char *sql, size_t len, uint64_t fp,
                      const qp_lit_span *spans, size_t nspans) {
  m->sqlite = d == QP_DIALECT_SQLITE;
  m->len = 0;
  m->nspans = 0;
  m->str = 0;
  if (sql == NULL || len == 0 || len > QP_SQL_MEMO_TEXT) return;
  size_t last_end = 0;
  for (size_t i = 0; i < nspans && m->nspans < QP_SQL_MEMO_SPANS; i++) {
    size_t a = spans[i].start, b = spans[i].end;
    if (a < last_end || b <= a || b > len) return; /* not the normalizer's: remember nothing */
    last_end = b;
    bool follow_ok = b == len || ends_number((unsigned char)sql[b]);
    bool digits = true;
    for (size_t j = a; j < b && digits; j++) digits = sql[j] >= '0' && sql[j] <= '9';
    bool str = false;
    if (!digits && b - a >= 2 && sql[a] == '\'' && sql[b - 1] == '\'' &&
        (b == len || sql[b] != '\'')) {
      str = true;
      for (size_t j = a + 1; j + 1 < b && str; j++) str = plain_in_string(m, (unsigned char)sql[j]);
    }
    if (digits ? !follow_ok : !str) continue; /* kept as fixed bytes */
    if (str) m->str |= (uint8_t)(1u << m->nspans);
    m->span[m->nspans][0] = (uint16_t)a;
    m->span[m->nspans][1] = (uint16_t)b;
    m->nspans++;
  }
  memcpy(m->text, sql, len);
  m->fp = fp;
  m->len = (uint16_t)len;
}

bool qp__sql_memo_match(const qp_sql_memo *m, const char *sql, size_t len) {
  if (m->len == 0 || sql == NULL) return false;
  size_t p = 0, q = 0; /* in the memo's text, in sql */
  for (unsigned i = 0; i < m->nspans; i++) {
    size_t a = m->span[i][0], fixed = a - p;
    if (len - q < fixed || memcmp(m->text + p, sql + q, fixed) != 0) return false;
    q += fixed;
    p = m->span[i][1];
    if (m->str & (1u << i)) {
      if (q >= len || sql[q] != '\'') return false;
      q++;
      while (q < len && plain_in_string(m, (unsigned char)sql[q])) q++;
      if (q >= len || sql[q] != '\'') return false;
      q++;
      /* the memo's text has the same byte next (or its end), not a quote */
    } else {
      size_t d = q;
      while (q < len && sql[q] >= '0' && sql[q] <= '9') q++;
      if (q == d) return false;
    }
  }
  size_t rest = m->len - p;
  return len - q == rest && memcmp(m->text + p, sql + q, rest) == 0;
}
