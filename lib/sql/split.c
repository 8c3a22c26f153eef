/*
 * Splitting a script into top-level statements.
 *
 * A ';' ends a statement unless it is inside a string, comment, quoted
 * identifier or dollar quote (the lexer sees to those), inside parentheses
 * (PostgreSQL: CREATE RULE ... DO (a; b), as psql does), or inside a
 * BEGIN ... END block of a CREATE statement (SQLite trigger bodies,
 * PostgreSQL BEGIN ATOMIC function bodies), where CASE ... END nests.
 */
#include "internal.h"
#include "sql_int.h"

bool qp_sql_split_next(qp_dialect d, const char *sql, size_t len, size_t *pos, size_t *start,
                       size_t *stmt_len) {
  if (sql == NULL || pos == NULL) return false;
  const bool pg = d == QP_DIALECT_POSTGRES;
  size_t p = *pos;
  /* A UTF-8 byte order mark at the start of the script is not SQL. */
  if (p == 0 && len >= 3 && memcmp(sql, "\xEF\xBB\xBF", 3) == 0) p = 3;
  while (p < len) {
    size_t first = SIZE_MAX, last_end = p;
    bool code = false, create = false, trigger = false;
    size_t paren = 0, block = 0, cases = 0;
    qp_kw prev = QP_KW_NONE;
    qp_tok t;
    for (;;) {
      p = qp__sql_lex(d, sql, len, p, &t);
      if (t.type == QP_T_EOF) break;
      if (t.type == QP_T_SEMI && block == 0 && paren == 0) break;
      if (first == SIZE_MAX) first = t.start;
      last_end = t.end;
      if (t.type == QP_T_COMMENT) continue;
      if (t.type == QP_T_LPAREN && pg) {
        paren++;
      } else if (t.type == QP_T_RPAREN && pg) {
        if (paren > 0) paren--;
      } else if (t.type == QP_T_WORD) {
        qp_kw kw = qp__sql_keyword(sql + t.start, t.end - t.start);
        if (!code && kw == QP_KW_CREATE) create = true;
        if (create && kw == QP_KW_TRIGGER) trigger = true;
        if (block > 0) {
          if (kw == QP_KW_CASE) {
            cases++;
          } else if (kw == QP_KW_END) {
            if (cases > 0)
              cases--;
            else
              block--;
          }
        } else if (create && ((!pg && trigger && kw == QP_KW_BEGIN) ||
                              (pg && kw == QP_KW_ATOMIC && prev == QP_KW_BEGIN))) {
          block = 1;
        }
        prev = kw;
      } else {
        prev = QP_KW_NONE;
      }
      code = true;
    }
    if (code) {
      *pos = p;
      *start = first;
      /* A trailing -- comment ends with its newline: trim it. */
      while (last_end > first && qp__sql_cclass[(unsigned char)sql[last_end - 1]] == QP_C_SPACE)
        last_end--;
      *stmt_len = last_end - first;
      return true;
    }
  }
  *pos = len;
  return false;
}
