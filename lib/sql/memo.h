/*
 * A statement's fingerprint remembered with its text, so that the next
 * statement that differs from it only in the values of its literals gets the
 * same fingerprint without being normalized again (the LD_PRELOAD shim's
 * simple queries: pgbench -S sends one statement with a new number each
 * time).
 *
 * The normalizer says where the literals it replaced by '?' were
 * (qp__normalize_spans). Of those, a memo keeps the ones whose value can
 * change without changing any token around them:
 *   - a run of digits followed by the end of the text, white space or one of
 *     , ; ( ) ] + - * / % < > = ! | & ^ ~ : (a byte that ends a number
 *     whatever its digits: no letter, digit, '.', '_', '$', quote or byte
 *     >= 0x80 that could make it another kind of number or join the next
 *     token);
 *   - a string in single quotes with no quote, backslash or NUL inside (in
 *     SQLite also no white space and no ')', which a variable's "(...)"
 *     suffix before it would read ahead to), followed by a byte that is not
 *     a quote (a doubled quote would continue it).
 * Another text matches when it is byte for byte the same outside those
 * spans, and has in each a run of digits (at least one) or such a string.
 * Then the lexer reads the same tokens in both up to the span (the same
 * bytes before it), a literal of the same kind there (the same first byte and
 * the same end), and the same tokens after it; and the normalizer, which
 * writes '?' for such a literal whatever its value, writes the same text.
 * So a match never gives a fingerprint the text would not get (the unit test
 * and fuzz_normalize check it against qp_normalize); a text that differs in
 * any other way does not match, and is normalized.
 *
 * Private to the library; not thread-safe (one memo per connection, used by
 * the thread that uses the connection).
 */
#ifndef QP_SQL_MEMO_H
#define QP_SQL_MEMO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qprof/sql.h"

/* Where a literal that became '?' was: [start, end) in the statement. */
typedef struct qp_lit_span {
  size_t start, end;
} qp_lit_span;

/* Like qp_normalize, and also writes to spans[0 .. min(*nspans, max)) the
 * literals (numbers, strings, parameters) the main pass replaced by '?', in
 * order; *nspans is how many there were (more than max: the rest are not
 * written). Literals folded with a sign, and the elements after the first of
 * a collapsed list, are not among them. */
qp_status qp__normalize_spans(const qp_normalizer *nz, const char *sql, size_t len, char *out,
                              size_t cap, size_t *out_len, uint64_t *fingerprint,
                              qp_lit_span *spans, size_t max, size_t *nspans);

#define QP_SQL_MEMO_TEXT 256 /* longer statements are not remembered */
#define QP_SQL_MEMO_SPANS 8  /* literals kept as variable; the rest must stay the same */

typedef struct qp_sql_memo {
  uint64_t fp;
  uint16_t len;   /* of text; 0 with an empty memo, which matches nothing */
  uint8_t nspans;
  uint8_t str;    /* bit i: span i is a string (else digits) */
  bool sqlite;    /* SQLite's rules (strings: see memo.c) */
  uint16_t span[QP_SQL_MEMO_SPANS][2];
  char text[QP_SQL_MEMO_TEXT];
} qp_sql_memo;

/* Remembers `sql` (len bytes, in dialect `d`) with its fingerprint and the literal spans the
 * normalizer gave for it (qp__normalize_spans: `nspans` of them written).
 * A text longer than QP_SQL_MEMO_TEXT, or spans that are not in order inside
 * it, empty the memo. */
void qp__sql_memo_set(qp_sql_memo *m, qp_dialect d, const char *sql, size_t len, uint64_t fp,
                      const qp_lit_span *spans, size_t nspans);

/* Whether `sql` differs from the remembered text only in the values of the
 * remembered literals (see above): then m->fp is its fingerprint. */
bool qp__sql_memo_match(const qp_sql_memo *m, const char *sql, size_t len);

#endif
