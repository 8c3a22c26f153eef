/*
 * Private to the normalizer (normalize.c and normalize_list.c): the
 * normalizer's handle, its keyword lookup, the short token helpers both files
 * use, and the literal-list scanner of normalize_list.c.
 * Include only from the .c files of lib/sql.
 */
#ifndef QP_SQL_NORMALIZE_INT_H
#define QP_SQL_NORMALIZE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "lex_impl.h"
#include "sql_int.h"

/* Keyword lookup on the hot path: a perfect hash of the word's lower-case
 * bytes, so a lookup is one probe and one compare with no branch on whether
 * the word is a keyword (identifiers and keywords alternate with no pattern
 * a branch predictor can learn). A word is read as three little-endian
 * 8-byte words a, b, c (bytes 0-7, 8-15, 16), zero past its length;
 * keywords are 2 to 17 bytes long. kw_build (normalize.c) picks, once per
 * normalizer, the first multiplier of a fixed sequence that gives every
 * keyword a slot of its own (about one in 250 does, at 2048 slots; a small
 * table stays in L1 while statements stream through). A slot holds a
 * keyword id, 0 when empty. */
#define KWH_BITS 11
#define KWH_SIZE (1u << KWH_BITS)
#define KW_MIN_LEN 2
#define KW_MAX_LEN 17
_Static_assert(QP_KW_COUNT_ <= 256, "keyword ids must fit in a kwh slot's low byte");

/* Words on the hot path (SSE2, little-endian): an identifier of up to 32
 * bytes is lower-cased 16 bytes at a time straight into the output buffer,
 * and its a, b, c words come from the same registers. */
#if defined(__SSE2__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define QP_FAST_WORDS 1
#endif

typedef struct kw_words {
  uint64_t w[3]; /* the keyword's a, b, c */
  uint64_t len;  /* 0 for id 0, which no word matches */
} kw_words;

struct qp_normalizer {
  qp_hooks hooks;
  qp_dialect dialect;
  uint64_t seed;
  qp_rules *rules; /* NULL without rules */
  bool avx512;      /* list blocks classified with AVX-512BW */
  uint64_t kwmul;   /* the perfect hash's multiplier */
  uint8_t kwh[KWH_SIZE]; /* keyword id; 0 = empty */
  kw_words kww[QP_KW_COUNT_];
};

static inline unsigned kw_slot(uint64_t mul, uint64_t a, uint64_t b, size_t k) {
  return (unsigned)((((a + k) * mul) ^ (b * 0x9E3779B97F4A7C15ULL)) >> (64 - KWH_BITS));
}

/* The keyword whose a, b, c words and length are given, or QP_KW_NONE. */
static inline qp_kw kw_lookup_words(const qp_normalizer *n, uint64_t a, uint64_t b, uint64_t c,
                                    size_t k) {
  const unsigned id = n->kwh[kw_slot(n->kwmul, a, b, k)];
  const kw_words *w = &n->kww[id];
  const uint64_t diff = (a ^ w->w[0]) | (b ^ w->w[1]) | (c ^ w->w[2]) | (w->len ^ k);
  /* a mask, not a branch: see kw_flags in normalize.c */
  return (qp_kw)(id & (0u - (unsigned)(diff == 0)));
}

/* The a, b, c words of p[0..k) (k <= 24), lower-cased when `lower`. */
static inline void kw_words_of(const char *p, size_t k, bool lower, uint64_t w[3]) {
  w[0] = w[1] = w[2] = 0;
  for (size_t i = 0; i < k; i++) {
    const unsigned char ch = lower ? qp__sql_lower[(unsigned char)p[i]] : (unsigned char)p[i];
    w[i / 8] |= (uint64_t)ch << (8 * (i % 8));
  }
}

/* The keyword spelled by p[0..k) in any case, or QP_KW_NONE. */
static inline qp_kw kw_lookup(const qp_normalizer *n, const char *p, size_t k) {
  if (k < KW_MIN_LEN || k > KW_MAX_LEN) return QP_KW_NONE;
  uint64_t w[3];
  kw_words_of(p, k, true, w);
  return kw_lookup_words(n, w[0], w[1], w[2], k);
}

/* ---- tokens shared by the main loop and the list scanner ---------------- */

static inline size_t lex_sig(qp_dialect d, const char *s, size_t len, size_t pos, qp_tok *t) {
  do {
    pos = qp__sql_lex_impl(d, s, len, pos, t);
  } while (t->type == QP_T_COMMENT);
  return pos;
}

/* The tokens that fill literal lists (numbers, commas, plain strings) take a
 * short path; anything else goes through the full lexer. */
static inline __attribute__((always_inline)) size_t list_tok(qp_dialect d, const char *s, size_t len,
                                                             size_t pos, qp_tok *t) {
  while (pos < len && qp__sql_cclass[(unsigned char)s[pos]] == QP_C_SPACE) pos++;
  if (QP_LIKELY(pos < len)) {
    uint8_t k = qp__sql_cclass[(unsigned char)s[pos]];
    t->start = pos;
    if (k == QP_C_DIGIT) {
      t->type = QP_T_NUMBER;
      return t->end = scan_number(s, len, pos);
    }
    if (k == QP_C_COMMA) {
      t->type = QP_T_COMMA;
      return t->end = pos + 1;
    }
    if (k == QP_C_QUOTE) {
      t->type = QP_T_STRING;
      return t->end = scan_quoted(s, len, pos + 1, '\'', false);
    }
  }
  do {
    pos = qp__sql_lex_impl(d, s, len, pos, t);
  } while (t->type == QP_T_COMMENT);
  return pos;
}

static inline bool is_sign(const char *s, const qp_tok *t) {
  return t->type == QP_T_OP && t->end - t->start == 1 && (s[t->start] == '-' || s[t->start] == '+');
}

/*
 * Scans a bracketed list from `pos` (just after its opening bracket) to the
 * `close` token, accepting only elements made of a literal or placeholder,
 * with optional signs, a typed-literal prefix (DATE '...') and casts
 * (::numeric(10,2)[]). On success gives the end of the first element, the
 * closing token and the element count.
 */
typedef struct qp_list_scan {
  size_t first_end, close_start, close_end, nelems;
  size_t nrows, row_close_start, row_close_end; /* rows mode */
} qp_list_scan;

/* Scans a list from `pos`, just after its opening bracket, up to the `close`
 * token (QP_T_RPAREN or QP_T_RBRACK) and fills *ls; returns false when an
 * element is not a literal. `allow_default` takes DEFAULT as an element
 * (VALUES rows); `rows` goes on over ", (" into further rows and counts them.
 * Reads only s[0..len); never allocates. */
bool qp__sql_literal_list(const qp_normalizer *nz, const char *s, size_t len, size_t pos,
                          qp_tok_type close, bool allow_default, bool rows, qp_list_scan *ls);

#endif
