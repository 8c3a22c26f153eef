/*
 * The literal-list scanner of the normalizer: from the opening bracket of an
 * IN list, an ARRAY[...] or the rows of a VALUES, finds how far a list of
 * literals and placeholders goes, so that the main loop can collapse it.
 *
 * Two paths give the same answer: a scalar state machine that reads tokens,
 * and, for the bulk of long lists, a block scanner that checks 64 bytes at a
 * time with bit masks (SSE2 on every x86-64, AVX-512BW when the CPU has it,
 * chosen once per normalizer) and hands back to the state machine at the
 * first element it does not take.
 */
/* The hot loops gain from -O3's unrolling; the rest of the build stays as
 * configured. GCC only, and only in optimized builds. */
#if defined(__OPTIMIZE__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__) && defined(__SSE2__)
#define QP_BLK_AVX512 1
#include <immintrin.h>
#endif

#include "internal.h"
#include "lex_impl.h"
#include "normalize_int.h"
#include "sql_int.h"

#ifdef __SSE2__
/*
 * Skips a prefix of the list that is exactly ( [$]digits "," whitespace* )*,
 * sixteen bytes at a time, counting the commas as element separators.
 * `after_literal` tells whether the scan starts after an element (then only
 * a comma may come first) or where one is expected. The structure is checked
 * with bit masks: white space only after a comma, a comma only after a
 * digit, a '$' only where an element starts and before a digit, a digit only
 * after a digit, a '$', a comma, white space or the start of an expected
 * element. Returns where the valid prefix ends; the caller re-reads its last
 * number or $n, which may go on (1e-5, 0x1F, 1.5).
 */
static inline size_t skip_number_run(const char *s, size_t len, size_t pos, bool after_literal,
                                     qp_list_scan *ls, size_t *last_end) {
  const __m128i lo = _mm_set1_epi8('0' - 1), hi = _mm_set1_epi8('9' + 1);
  const __m128i comma = _mm_set1_epi8(','), sp = _mm_set1_epi8(' ');
  const __m128i nl = _mm_set1_epi8('\n'), tab = _mm_set1_epi8('\t'), cr = _mm_set1_epi8('\r');
  /* what the byte before the run counts as */
  const __m128i dollar = _mm_set1_epi8('$');
  unsigned carry_d = 0, carry_c = after_literal ? 0u : 1u, carry_w = 0, carry_dl = 0;
  unsigned carry_l = after_literal ? 1u : 0u;
  size_t run = pos;
  while (run + 16 <= len) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + run));
    unsigned d = (unsigned)_mm_movemask_epi8(_mm_and_si128(_mm_cmpgt_epi8(v, lo), _mm_cmplt_epi8(v, hi)));
    unsigned c = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, comma));
    unsigned w = (unsigned)_mm_movemask_epi8(
        _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, sp), _mm_cmpeq_epi8(v, nl)),
                     _mm_or_si128(_mm_cmpeq_epi8(v, tab), _mm_cmpeq_epi8(v, cr))));
    unsigned dl = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, dollar));
    unsigned pd = ((d << 1) | carry_d) & 0xFFFFu, pc = ((c << 1) | carry_c) & 0xFFFFu;
    unsigned pw = ((w << 1) | carry_w) & 0xFFFFu, pdl = ((dl << 1) | carry_dl) & 0xFFFFu;
    unsigned pl = carry_l; /* only the first byte can follow the previous literal */
    unsigned bad = ~(d | c | w | dl) & 0xFFFFu;
    bad |= w & ~(pc | pw);
    bad |= c & ~(pd | pl);
    bad |= d & ~(pd | pc | pw | pdl);
    /* $n: '$' where an element starts, a digit right after it (in this block) */
    bad |= dl & (~(pc | pw) | ~(d >> 1));
    size_t adv = 16;
    if (bad) {
      adv = (size_t)__builtin_ctz(bad);
      unsigned keep = (1u << adv) - 1;
      c &= keep;
    }
    if (c) {
      if (ls->first_end == SIZE_MAX) {
        /* a comma follows a digit (the end of the first element) or the
         * previous literal (which ended at *last_end) */
        size_t at = run + (size_t)__builtin_ctz(c);
        ls->first_end = at > pos ? at : *last_end;
      }
      ls->nelems += popcount16(c);
      *last_end = run + 32 - (size_t)__builtin_clz(c);
    }
    run += adv;
    if (bad) break;
    carry_d = d >> 15, carry_c = c >> 15, carry_w = w >> 15, carry_dl = dl >> 15, carry_l = 0;
  }
  return run;
}
#endif

/*
 * Block skipping of literal lists. The bulk of a long list of mixed literals
 * (1.5, -3, 'text', $4, 2e-5) costs a hard-to-predict branch per element in
 * the scalar state machine, on the element's kind. Here 64 bytes are
 * classified at once into bit masks, strings are found by quote parity
 * (a prefix XOR of the quote bits: '' escapes toggle twice), and a strict
 * subset of what the scalar scan accepts is checked with bit operations:
 *
 *   element := ws* ([sign] number | $digits | string | true | false)
 *   number  := digits [. digits*] [exp] | . digits [exp]
 *   exp     := (e|E) [sign] digits
 *   string  := [prefix] 'text' | dollar quote
 *   prefix  := X (both dialects) | B | N | E | U& (PostgreSQL; any case)
 *
 * each followed right away by ',' (or, between VALUES rows, by "), (").
 * Only whole elements before the first byte that breaks a rule are taken;
 * the scalar scan goes on from there, in the state it would have reached by
 * itself (expecting an element, after a comma or a row's '('), so the result
 * is the same whichever path read an element. Anything else (NULL, DEFAULT,
 * casts, typed literals, row values, white space before a comma, comments,
 * a backslash before a quote outside E'') is left to the scalar scan. TRUE
 * and FALSE are matched in any case, letter by letter. Backslash escapes
 * (E'' strings) and dollar quotes are described where they are handled
 * (blk_check, skip_blocks_impl); docs/normalizer.md has the whole picture.
 */

/* Bit i of `m` for byte i of the block, for each class of byte. */
static inline __attribute__((always_inline)) void blk_classes_scalar(const char *p,
                                                                     qp_sql_blk_classes *m) {
  memset(m, 0, sizeof *m);
  for (unsigned i = 0; i < 64; i++) {
    const unsigned char c = (unsigned char)p[i];
    const uint64_t b = (uint64_t)1 << i;
    if (c >= '0' && c <= '9') m->digit |= b;
    if (c == '.') m->dot |= b;
    if ((c | 0x20) == 'e') m->exp |= b;
    if (c == '+' || c == '-') m->sign |= b;
    if (c == ',') m->comma |= b;
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') m->space |= b;
    if (c == '$') m->dollar |= b;
    if (c == '\'') m->quote |= b;
    if (c == '(') m->lparen |= b;
    if (c == ')') m->rparen |= b;
    const unsigned char l = (unsigned char)(c | 0x20);
    if (l == 't') m->t |= b;
    if (l == 'r') m->r |= b;
    if (l == 'u') m->u |= b;
    if (l == 'f') m->f |= b;
    if (l == 'a') m->a |= b;
    if (l == 'l') m->l |= b;
    if (l == 's') m->s |= b;
    if (l == 'x') m->x |= b;
    if (l == 'b' || l == 'n') m->bn |= b;
    if (c == '&') m->amp |= b;
    if (c == '\\') m->bslash |= b;
  }
}

#ifdef __SSE2__
static inline __attribute__((always_inline)) uint64_t blk_eq(__m128i v, char c) {
  return (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(c)));
}

/* The same masks, sixteen bytes at a time. */
static inline __attribute__((always_inline)) void blk_classes_sse2(const char *p,
                                                                   qp_sql_blk_classes *m) {
  memset(m, 0, sizeof *m);
  for (unsigned j = 0; j < 4; j++) {
    const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * j));
    const unsigned sh = 16 * j;
    const __m128i dg = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8('0' - 1)),
                                     _mm_cmplt_epi8(v, _mm_set1_epi8('9' + 1)));
    m->digit |= (uint64_t)(unsigned)_mm_movemask_epi8(dg) << sh;
    m->dot |= blk_eq(v, '.') << sh;
    m->exp |= (uint64_t)(unsigned)_mm_movemask_epi8(
                  _mm_cmpeq_epi8(_mm_or_si128(v, _mm_set1_epi8(0x20)), _mm_set1_epi8('e')))
              << sh;
    m->sign |= (blk_eq(v, '+') | blk_eq(v, '-')) << sh;
    m->comma |= blk_eq(v, ',') << sh;
    m->space |= (blk_eq(v, ' ') | blk_eq(v, '\t') | blk_eq(v, '\n') | blk_eq(v, '\r')) << sh;
    m->dollar |= blk_eq(v, '$') << sh;
    m->quote |= blk_eq(v, '\'') << sh;
    m->lparen |= blk_eq(v, '(') << sh;
    m->rparen |= blk_eq(v, ')') << sh;
    const __m128i lc = _mm_or_si128(v, _mm_set1_epi8(0x20));
    m->t |= blk_eq(lc, 't') << sh;
    m->r |= blk_eq(lc, 'r') << sh;
    m->u |= blk_eq(lc, 'u') << sh;
    m->f |= blk_eq(lc, 'f') << sh;
    m->a |= blk_eq(lc, 'a') << sh;
    m->l |= blk_eq(lc, 'l') << sh;
    m->s |= blk_eq(lc, 's') << sh;
    m->x |= blk_eq(lc, 'x') << sh;
    m->bn |= (blk_eq(lc, 'b') | blk_eq(lc, 'n')) << sh;
    m->amp |= blk_eq(v, '&') << sh;
    m->bslash |= blk_eq(v, '\\') << sh;
  }
}

/* The n < 64 bytes at p as a whole block in `tail`, padded with NUL bytes
 * (which belong to no class), so that a short tail is classified by the
 * same code as a full block without reading past the input. */
static inline __attribute__((always_inline)) const char *blk_pad(const char *p, size_t n,
                                                                 char tail[64]) {
  memcpy(tail, p, n);
  memset(tail + n, 0, 64 - n);
  return tail;
}

/* The first n <= 64 bytes at p, the rest of the block read as NUL bytes. */
static inline __attribute__((always_inline)) void blk_classes_sse2_n(const char *p, size_t n,
                                                                     qp_sql_blk_classes *m) {
  char tail[64];
  blk_classes_sse2(QP_LIKELY(n == 64) ? p : blk_pad(p, n, tail), m);
}
#endif

#ifdef QP_BLK_AVX512
/* The same masks from one 64-byte load; callers check the CPU first. */
__attribute__((target("avx512bw"))) static inline void blk_classes_avx512_v(__m512i v,
                                                                            qp_sql_blk_classes *m) {
#define QP_EQ(c) ((uint64_t)_mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(c)))
  m->digit = (uint64_t)_mm512_cmplt_epu8_mask(_mm512_sub_epi8(v, _mm512_set1_epi8('0')),
                                              _mm512_set1_epi8(10));
  m->dot = QP_EQ('.');
  m->exp = (uint64_t)_mm512_cmpeq_epi8_mask(_mm512_or_si512(v, _mm512_set1_epi8(0x20)),
                                            _mm512_set1_epi8('e'));
  m->sign = QP_EQ('+') | QP_EQ('-');
  m->comma = QP_EQ(',');
  m->space = QP_EQ(' ') | QP_EQ('\t') | QP_EQ('\n') | QP_EQ('\r');
  m->dollar = QP_EQ('$');
  m->quote = QP_EQ('\'');
  m->lparen = QP_EQ('(');
  m->rparen = QP_EQ(')');
#undef QP_EQ
  const __m512i lc = _mm512_or_si512(v, _mm512_set1_epi8(0x20));
#define QP_EQL(c) ((uint64_t)_mm512_cmpeq_epi8_mask(lc, _mm512_set1_epi8(c)))
  m->t = QP_EQL('t');
  m->r = QP_EQL('r');
  m->u = QP_EQL('u');
  m->f = QP_EQL('f');
  m->a = QP_EQL('a');
  m->l = QP_EQL('l');
  m->s = QP_EQL('s');
  m->x = QP_EQL('x');
  m->bn = QP_EQL('b') | QP_EQL('n');
#undef QP_EQL
  m->amp = (uint64_t)_mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8('&'));
  m->bslash = (uint64_t)_mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8('\\'));
}

__attribute__((target("avx512bw"))) static inline void blk_classes_avx512(const char *p,
                                                                          qp_sql_blk_classes *m) {
  blk_classes_avx512_v(_mm512_loadu_si512((const void *)p), m);
}

/* The first n <= 64 bytes at p, the rest of the block read as NUL bytes. */
__attribute__((target("avx512bw"))) static inline void blk_classes_avx512_n(const char *p, size_t n,
                                                                            qp_sql_blk_classes *m) {
  char tail[64];
  blk_classes_avx512(QP_LIKELY(n == 64) ? p : blk_pad(p, n, tail), m);
}
#endif

bool qp__sql_blk_classes(const char *p, int impl, qp_sql_blk_classes *m) {
  switch (impl) {
  case 0:
    blk_classes_scalar(p, m);
    return true;
#ifdef __SSE2__
  case 1:
    blk_classes_sse2(p, m);
    return true;
#endif
#ifdef QP_BLK_AVX512
  case 2:
    if (!__builtin_cpu_supports("avx512bw")) return false;
    blk_classes_avx512(p, m);
    return true;
#endif
  default:
    return false;
  }
}

/* The bit checks below serve the block scan only (SSE2 and AVX-512). */
#ifdef __SSE2__
static inline uint64_t popcount64(uint64_t x) {
  x = x - ((x >> 1) & 0x5555555555555555ULL);
  x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
  x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
  return (x * 0x0101010101010101ULL) >> 56;
}

/* Bit i set when an odd number of quote bits are at 0..i: inside a string
 * from its opening quote to the byte before its closing quote. */
static inline uint64_t prefix_xor(uint64_t x) {
  x ^= x << 1;
  x ^= x << 2;
  x ^= x << 4;
  x ^= x << 8;
  x ^= x << 16;
  x ^= x << 32;
  return x;
}

/* For each seed: the first position at or after it that is not in `run`
 * (adding a seed to a run of ones carries out just past the run). Seeds
 * whose run reaches the end of the block give nothing. */
static inline uint64_t land(uint64_t seeds, uint64_t run) {
  return (((seeds & run) + run) & ~run) | (seeds & ~run);
}

/*
 * Checks a block of 64 bytes (an element starts at its first byte, possibly
 * after white space) and returns the bytes that break a rule above
 * (the last two bytes may be flagged only because the block ends there), the
 * ends of whole elements ("unit" ends: a comma, or a row's '(' in VALUES
 * rows) and the row-closing ')'.
 */
/* Makes the bytes of `r` digits and nothing else. */
static inline void blk_recast_digits(qp_sql_blk_classes *m, uint64_t r) {
  m->dot &= ~r, m->exp &= ~r, m->sign &= ~r, m->comma &= ~r, m->space &= ~r;
  m->dollar &= ~r, m->quote &= ~r, m->lparen &= ~r, m->rparen &= ~r;
  m->t &= ~r, m->r &= ~r, m->u &= ~r, m->f &= ~r, m->a &= ~r, m->l &= ~r, m->s &= ~r;
  m->x &= ~r, m->bn &= ~r, m->amp &= ~r, m->bslash &= ~r;
  m->digit |= r;
}

/* Bit i set when an odd run of backslashes ends just before byte i: the
 * bytes a backslash escapes (as in simdjson; no run enters the block, since
 * a block starts outside strings). */
static inline uint64_t escaped_bits(uint64_t bs) {
  const uint64_t odd = 0xAAAAAAAAAAAAAAAAULL;
  return ((((bs << 1) | odd) - bs) ^ odd) ^ bs;
}

static inline __attribute__((always_inline)) uint64_t blk_check(const qp_sql_blk_classes *m,
                                                                bool pg, bool rows, bool text,
                                                                bool paren, uint64_t *units,
                                                                uint64_t *commas, uint64_t *rps,
                                                                uint64_t *starts, uint64_t *closes) {
  /* Without quotes and without the first letters of TRUE and FALSE (`text`
   * false: lists of numbers and $n), every string and word term below is
   * zero; the compiler drops them from that copy of the function. */
  /* PostgreSQL: quotes are read as if a backslash escaped the next byte
   * everywhere, which is true in E'' strings; in other strings a backslash
   * is a plain byte, so a quote it "escapes" there is rejected below (an
   * escaped byte that is not a quote changes nothing). */
  const uint64_t esc = text && pg && m->bslash ? escaped_bits(m->bslash) : 0;
  const uint64_t q = text ? m->quote & ~esc : 0, in = text ? prefix_xor(q) : 0, out = ~(in | q);
  const uint64_t open = q & in, close = q & ~in;
  const uint64_t D = m->digit & out, P = m->dot & out, S = m->sign & out;
  const uint64_t C = m->comma & out, W = m->space & out, Dl = m->dollar & out;
  const uint64_t RP = rows ? m->rparen & out : 0, LP = rows ? m->lparen & out : 0;
  /* an IN list's closing ')' (VALUES rows have RP): it ends the last
   * element like a comma; it stays a broken rule below, and *closes says
   * where a ')' (X or RP) comes right after a literal */
  const uint64_t X = !rows && paren ? m->rparen & out : 0;
  const uint64_t RC = C & (RP << 1); /* the comma between rows */
  const uint64_t Cn = C & ~RC;       /* commas between elements */
  /* where an element may start: the block start, after a comma or a row's
   * '(', past white space */
  const uint64_t start = land(((Cn | LP) << 1) | 1, W);
  /* first letters of a whole TRUE or FALSE, followed by ',' (or a row's ')') */
  const uint64_t next = (C | RP | X) & out;
  const uint64_t tw = !text ? 0 : start & out & m->t & (m->r >> 1) & (m->u >> 2) & (m->exp >> 3) & (next >> 4);
  const uint64_t fw = !text ? 0 : start & out & m->f & (m->a >> 1) & (m->l >> 2) & (m->s >> 3) &
                      (m->exp >> 4) & (next >> 5);
  const uint64_t words = tw | (tw << 1) | (tw << 2) | (tw << 3) | fw | (fw << 1) | (fw << 2) |
                         (fw << 3) | (fw << 4);
  /* string prefixes at the start of an element, right before the opening
   * quote: X'' (both dialects); B'' N'' E'' U&'' (PostgreSQL) */
  const uint64_t pre1 =
      !text ? 0 : start & out & (open >> 1) & (m->x | (pg ? m->bn | m->exp : 0));
  const uint64_t pre2 = text && pg ? start & out & m->u & ((m->amp & out) >> 1) & (open >> 2) : 0;
  const uint64_t pre = pre1 | pre2 | (pre2 << 1);
  /* E'' strings: from their opening quote to the byte before the closing one */
  const uint64_t eopen = text && pg ? open & ((pre1 & m->exp) << 1) : 0;
  const uint64_t estr = in & ~(in + eopen);
  const uint64_t E = m->exp & out & ~words & ~pre1; /* the e of an exponent */
  const uint64_t lit_end = D | P | close | (tw << 3) | (fw << 4);
  uint64_t bad = out & ~q & ~(D | P | E | S | C | W | Dl | RP | LP | words | pre);
  /* a quote "escaped" outside an E'' string (the backslash is a plain byte
   * there, so that quote really opens or closes) */
  bad |= text ? m->quote & esc & ~estr : 0;
  bad |= W & ~(((C | W | LP) << 1) | 1);
  bad |= D & ~(start | ((D | P | E | S | Dl) << 1));
  /* a sign leads an element or follows an exponent's e, and a digit follows */
  bad |= S & ~((start | (E << 1)) & (D >> 1));
  bad |= E & ~(((D | P) << 1) & ((D >> 1) | ((S >> 1) & (D >> 2))));
  bad |= P & ~((start & (D >> 1)) | ((D << 1) & ((D | E | C | RP | X) >> 1)));
  bad |= Dl & ~(start & (D >> 1));
  /* one number: no second '.', nothing after the exponent but digits, and
   * $n is digits up to the comma */
  bad |= land(P << 1, D) & P;
  bad |= land(E << 1, D | S) & (P | E);
  bad |= land(Dl << 1, D) & ~(C | RP | X);
  bad |= Cn & ~(lit_end << 1);
  bad |= open & ~(start | (close << 1) | (pre1 << 1) | (pre2 << 2));
  bad |= close & ~((C | q | RP | X) >> 1);
  if (rows) {
    /* ")" right after a literal, "," right after it, then white space and "(" */
    bad |= RP & ~((lit_end << 1) & (C >> 1));
    const uint64_t next_lp = land(RC << 1, W);
    bad |= (next_lp & ~LP) | (LP & ~next_lp);
  }
  *units = Cn | LP;
  *starts = start;
  *commas = Cn;
  *rps = RP;
  *closes = (RP | X) & (lit_end << 1);
  return bad;
}

/* Counts the element commas and row-closing ')' of the block at pos (bit
 * masks, already cut to what is taken), as the scalar scan would. */
static inline __attribute__((always_inline)) void take_separators(qp_list_scan *ls, size_t pos,
                                                                   uint64_t commas, uint64_t rps) {
  if (commas) {
    if (ls->first_end == SIZE_MAX) ls->first_end = pos + (size_t)__builtin_ctzll(commas);
    ls->nelems += (size_t)popcount64(commas);
  }
  if (rps) {
    const size_t r = pos + 63u - (size_t)__builtin_clzll(rps);
    ls->nrows += (size_t)popcount64(rps);
    ls->row_close_start = r;
    ls->row_close_end = r + 1;
  }
}

/*
 * Skips whole literal elements from pos (where one is expected, outside a
 * row-value tuple) block by block, updating the element and row counts like
 * the scalar scan; returns where the scalar scan takes over, just after the
 * last comma or row '(' taken (pos itself when none was taken).
 */
static inline __attribute__((always_inline)) size_t
skip_blocks_impl(qp_dialect d, const char *s, size_t len, size_t pos, bool rows, bool paren,
                 qp_list_scan *ls, size_t *last_end, size_t *close_at,
                 void (*classes)(const char *, size_t, qp_sql_blk_classes *)) {
  while (pos < len) {
    qp_sql_blk_classes m;
    /* at the end of the statement, the block is padded with NUL bytes, which
     * no rule takes */
    classes(s + pos, len - pos < 64 ? len - pos : 64, &m);
    uint64_t units, commas, rps, starts, closes;
    const bool pg = d == QP_DIALECT_POSTGRES;
    const bool text = (m.quote | m.t | m.f) != 0;
    uint64_t bad = text ? blk_check(&m, pg, rows, true, paren, &units, &commas, &rps, &starts, &closes)
                        : blk_check(&m, pg, rows, false, paren, &units, &commas, &rps, &starts, &closes);
    /* Dollar quotes ($$...$$, $tag$...$tag$) have no bit-parallel form: the
     * first one the rules stop at, where an element starts, is found with
     * the lexer's own scan, and when it ends inside the block right before
     * ',' (or a row's ')') its bytes are recast as digits (a literal the
     * rules take whole) and the block is checked again. */
    bool again = false; /* a dollar quote crosses the block's end */
    while (pg && bad != 0) {
      const unsigned b = (unsigned)__builtin_ctzll(bad);
      if (!((m.dollar & starts) >> b & 1)) break;
      bool closed = false;
      const size_t e = scan_dollar_quote(s, len, pos + b, &closed);
      if (e == 0 || !closed || e >= len) break;
      if (e - pos >= 64) {
        /* the next block starts at the element and may hold it whole */
        again = true;
        break;
      }
      if (!(s[e] == ',' || ((rows || paren) && s[e] == ')'))) break;
      blk_recast_digits(&m, (((uint64_t)1 << (e - pos)) - 1) & ~(((uint64_t)1 << b) - 1));
      bad = blk_check(&m, pg, rows, true, paren, &units, &commas, &rps, &starts, &closes);
    }
    if (bad) {
      const unsigned b = (unsigned)__builtin_ctzll(bad);
      units &= ((uint64_t)1 << b) - 1;
      if (closes >> b & 1) {
        /* a ')' right after an element, where the rules stop: the elements
         * before it are taken, and the scalar scan goes on at the ')' after
         * a literal (state S1), which closes the list or the row */
        const uint64_t before = ((uint64_t)1 << b) - 1;
        commas &= before;
        rps &= before;
        take_separators(ls, pos, commas, rps);
        *close_at = pos + b;
        *last_end = pos + b;
        return pos + b;
      }
    }
    if (units == 0) break;
    const unsigned u = 63u - (unsigned)__builtin_clzll(units);
    const uint64_t upto = u == 63 ? ~(uint64_t)0 : ((uint64_t)1 << (u + 1)) - 1;
    commas &= upto;
    rps &= upto;
    take_separators(ls, pos, commas, rps);
    pos += u + 1;
    *last_end = pos;
    /* a broken rule before the last two bytes: the scalar scan reads it */
    if ((bad & (((uint64_t)1 << 62) - 1)) && !again) break;
  }
  return pos;
}

#ifdef QP_BLK_AVX512
/* Built for BMI1/2 and POPCNT as well (every AVX-512 CPU has them; the
 * normalizer checks all four): the bit checks are mostly `a & ~b`, one ANDN
 * each, and tzcnt, blsr and popcnt replace longer sequences; about 5% fewer
 * cycles on bench_normalize. */
__attribute__((target("avx512bw,bmi,bmi2,popcnt"))) static size_t
skip_blocks_avx512(qp_dialect d, const char *s, size_t len, size_t pos, bool rows, bool paren,
                   qp_list_scan *ls, size_t *last_end, size_t *close_at) {
  /* one copy per dialect and mode, each with only the terms it needs */
  const qp_dialect pg = QP_DIALECT_POSTGRES, lite = QP_DIALECT_SQLITE;
  if (d == QP_DIALECT_POSTGRES)
    return rows ? skip_blocks_impl(pg, s, len, pos, true, false, ls, last_end, close_at, blk_classes_avx512_n)
                : skip_blocks_impl(pg, s, len, pos, false, paren, ls, last_end, close_at, blk_classes_avx512_n);
  return rows ? skip_blocks_impl(lite, s, len, pos, true, false, ls, last_end, close_at, blk_classes_avx512_n)
              : skip_blocks_impl(lite, s, len, pos, false, paren, ls, last_end, close_at, blk_classes_avx512_n);
}
#endif

static size_t skip_literal_blocks(const qp_normalizer *nz, const char *s, size_t len, size_t pos,
                                  bool rows, bool paren, qp_list_scan *ls, size_t *last_end,
                                  size_t *close_at) {
#ifdef QP_BLK_AVX512
  if (nz->avx512)
    return skip_blocks_avx512(nz->dialect, s, len, pos, rows, paren, ls, last_end, close_at);
#else
  (void)nz;
#endif
  const qp_dialect pg = QP_DIALECT_POSTGRES, lite = QP_DIALECT_SQLITE;
  if (nz->dialect == QP_DIALECT_POSTGRES)
    return rows ? skip_blocks_impl(pg, s, len, pos, true, false, ls, last_end, close_at, blk_classes_sse2_n)
                : skip_blocks_impl(pg, s, len, pos, false, paren, ls, last_end, close_at, blk_classes_sse2_n);
  return rows ? skip_blocks_impl(lite, s, len, pos, true, false, ls, last_end, close_at, blk_classes_sse2_n)
              : skip_blocks_impl(lite, s, len, pos, false, paren, ls, last_end, close_at, blk_classes_sse2_n);
}
#endif

static inline __attribute__((always_inline)) size_t skip_ws(const char *s, size_t len, size_t pos) {
  while (pos < len && qp__sql_cclass[(unsigned char)s[pos]] == QP_C_SPACE) pos++;
  return pos;
}

bool qp__sql_literal_list(const qp_normalizer *nz, const char *s, size_t len, size_t pos,
                         qp_tok_type close, bool allow_default, bool rows, qp_list_scan *ls) {
  const qp_dialect d = nz->dialect;
  enum { S0, S1, STYPE, STYPE2, STMOD, SARR } st = S0;
  const char closech = close == QP_T_RPAREN ? ')' : ']';
  bool tuple = false; /* inside one (a, b) element of a row-value list */
#ifdef __SSE2__
  unsigned cooldown = 0;
  unsigned blk_wait = 0, blk_backoff = 0; /* see the block skip below */
#endif
  size_t last_end = pos;
  ls->first_end = SIZE_MAX;
  ls->nelems = 1;
  ls->nrows = 0;
  qp_tok t;
next_row:
  for (;;) {
    /* Fast path for the bulk of long lists: numbers, plain strings, $n and
     * commas move the state machine without building tokens. */
    for (;;) {
#ifdef __SSE2__
      /* Whole elements 64 bytes at a time, up to one it does not know; the
       * code below reads that one, and the blocks go on after it. When a
       * try takes less than 8 bytes, the next waits out 1, 3, 7, ... 63
       * elements, so that lists the blocks rarely take (1::int, NULL, "- 1")
       * cost little more than before. */
      if (st == S0 && !tuple && len - pos >= 16) {
        if (blk_wait > 0) {
          blk_wait--;
        } else {
          size_t close_at = SIZE_MAX;
          size_t np = skip_literal_blocks(nz, s, len, pos, rows, closech == ')', ls, &last_end,
                                          &close_at);
          if (close_at != SIZE_MAX) {
            /* the blocks read up to a ')' right after an element */
            pos = close_at;
            st = S1;
            goto at_close;
          }
          blk_backoff = np - pos >= 8 ? 0 : blk_backoff < 32 ? 2 * blk_backoff + 1 : 63;
          blk_wait = blk_backoff;
          pos = np;
        }
      }
      /* Lists of mixed literals rarely have long runs: after a short run,
       * the next few elements take the scalar path. */
      if (cooldown > 0) {
        cooldown--;
      } else if (!tuple && !allow_default && (st == S0 || st == S1) && len - pos >= 32) {
        size_t run = skip_number_run(s, len, pos, st == S1, ls, &last_end);
        if (run - pos < 24) cooldown = 8;
        if (run != pos) {
          /* The prefix is valid; resume at its last number, which may go on
           * (1e5), or after its last comma or white space. */
          size_t k0 = run;
          while (k0 > pos && qp__sql_cclass[(unsigned char)s[k0 - 1]] == QP_C_DIGIT) k0--;
          if (k0 > pos && s[k0 - 1] == '$') k0--; /* and the '$' of a $n */
          if (k0 > pos || run > pos) st = S0;
          pos = k0;
        }
      }
#endif
      pos = skip_ws(s, len, pos);
      if (pos >= len) break;
      if (st == S0) {
        const unsigned char c = (unsigned char)s[pos];
        const unsigned char c1 = pos + 1 < len ? (unsigned char)s[pos + 1] : 0;
        switch (c) {
        case '0' ... '9':
          pos = scan_number(s, len, pos);
          break;
        case '.':
          if (qp__sql_cclass[c1] != QP_C_DIGIT) goto slow;
          pos = scan_number(s, len, pos);
          break;
        case '\'':
          pos = scan_quoted(s, len, pos + 1, '\'', false);
          break;
        case '$':
          if (c1 == '$' && d == QP_DIALECT_POSTGRES) { /* $$...$$ */
            const char *close_q = pos + 2 < len ? find_dollar_tag(s, len, pos + 2, "$$", 2) : NULL;
            pos = close_q ? (size_t)(close_q - s) + 2 : len;
            break;
          }
          if (qp__sql_cclass[c1] != QP_C_DIGIT) goto slow;
          if (d != QP_DIALECT_POSTGRES) {
            /* a SQLite variable goes on past its digits ($1::a, $1(x)), as the lexer reads it */
            pos = scan_sqlite_var(s, len, pos);
            break;
          }
          pos += 2;
          while (pos < len && qp__sql_cclass[(unsigned char)s[pos]] == QP_C_DIGIT) pos++;
          break;
        case '-':
        case '+':
          if (qp__sql_cclass[c1] != QP_C_DIGIT && c1 != '.') goto slow;
          last_end = ++pos; /* a sign: the literal follows */
          continue;
        case 'x': case 'X':
          if (c1 != '\'') goto slow;
          pos = scan_quoted(s, len, pos + 2, '\'', false);
          break;
        case 'e': case 'E': case 'b': case 'B': case 'n': case 'N':
          if (c1 != '\'' || d != QP_DIALECT_POSTGRES) goto slow; /* E'' B'' N'' */
          pos = scan_quoted(s, len, pos + 2, '\'', (c | 0x20) == 'e');
          break;
        case 't': case 'T':
          if (len - pos < 4 || (c1 | 0x20) != 'r' || (s[pos + 2] | 0x20) != 'u' ||
              (s[pos + 3] | 0x20) != 'e' || (len - pos > 4 && qp__sql_idchar((unsigned char)s[pos + 4])))
            goto slow;
          pos += 4;
          break;
        case 'f': case 'F':
          if (len - pos < 5 || (c1 | 0x20) != 'a' || (s[pos + 2] | 0x20) != 'l' ||
              (s[pos + 3] | 0x20) != 's' || (s[pos + 4] | 0x20) != 'e' ||
              (len - pos > 5 && qp__sql_idchar((unsigned char)s[pos + 5])))
            goto slow;
          pos += 5;
          break;
        default:
          goto slow;
        }
        last_end = pos;
        st = S1;
        pos = skip_ws(s, len, pos);
        if (pos >= len) break;
      } else if (st != S1) {
        break;
      }
      /* S1: a comma, the closing bracket, or a token for the slow path */
#ifdef __SSE2__
    at_close:
#endif
      if (s[pos] == ',') {
        if (!tuple) {
          if (ls->first_end == SIZE_MAX) ls->first_end = last_end;
          ls->nelems++;
        }
        last_end = ++pos;
        /* ", " or ",": step over one space without a branch on it */
        pos += pos < len && s[pos] == ' ';
        st = S0;
        continue;
      }
      if (!tuple && s[pos] == closech) {
        if (rows) {
          /* the next row, when ", (" follows right away */
          size_t q = skip_ws(s, len, pos + 1);
          if (q < len && s[q] == ',') {
            q = skip_ws(s, len, q + 1);
            if (q < len && s[q] == '(') {
              ls->nrows++;
              ls->row_close_start = pos;
              ls->row_close_end = pos + 1;
              pos = last_end = q + 1;
              st = S0;
              continue;
            }
          }
        }
        t.start = pos;
        t.end = pos + 1;
        pos++;
        goto closed;
      }
      break;
    }
  slow:
    pos = list_tok(d, s, len, pos, &t);
    switch (st) {
    case S0:
      if (t.type == QP_T_NUMBER || t.type == QP_T_STRING || t.type == QP_T_PARAM) {
        st = S1;
      } else if (is_sign(s, &t)) {
        /* stay */
      } else if (t.type == QP_T_LPAREN && !tuple && close == QP_T_RPAREN && !allow_default) {
        tuple = true;
      } else if (t.type == QP_T_WORD) {
        qp_kw kw = kw_lookup(nz, s + t.start, t.end - t.start);
        if (kw == QP_KW_TRUE || kw == QP_KW_FALSE || kw == QP_KW_NULL ||
            (allow_default && kw == QP_KW_DEFAULT)) {
          st = S1;
        } else if (!qp__sql_kw_operator(kw)) {
          qp_tok t2;
          size_t p2 = lex_sig(d, s, len, pos, &t2);
          if (t2.type != QP_T_STRING) goto fail;
          pos = p2;
          t = t2;
          st = S1;
        } else {
          goto fail;
        }
      } else {
        goto fail;
      }
      break;
    case S1:
    case STYPE2:
      if (t.type == QP_T_COMMA && tuple) {
        st = S0;
      } else if (t.type == QP_T_RPAREN && tuple) {
        tuple = false;
        st = S1;
      } else if (t.type == QP_T_COMMA) {
        if (ls->first_end == SIZE_MAX) ls->first_end = last_end;
        ls->nelems++;
        st = S0;
      } else if (t.type == close) {
        goto done;
      } else if (t.type == QP_T_CAST) {
        st = STYPE;
      } else if (st == STYPE2 && (t.type == QP_T_WORD || t.type == QP_T_QIDENT)) {
        /* multi-word type: timestamp with time zone */
      } else if (st == STYPE2 && t.type == QP_T_DOT) {
        st = STYPE;
      } else if (st == STYPE2 && t.type == QP_T_LPAREN) {
        st = STMOD;
      } else if (st == STYPE2 && t.type == QP_T_LBRACK) {
        st = SARR;
      } else {
        goto fail;
      }
      break;
    case STYPE:
      if (t.type != QP_T_WORD && t.type != QP_T_QIDENT) goto fail;
      st = STYPE2;
      break;
    case STMOD:
      if (t.type == QP_T_RPAREN)
        st = STYPE2;
      else if (t.type != QP_T_NUMBER && t.type != QP_T_COMMA)
        goto fail;
      break;
    case SARR:
      if (t.type == QP_T_RBRACK)
        st = STYPE2;
      else if (t.type != QP_T_NUMBER)
        goto fail;
      break;
    }
    last_end = t.end;
  }
done:
closed:
  if (ls->first_end == SIZE_MAX) ls->first_end = last_end;
  ls->close_start = t.start;
  ls->close_end = t.end;
  if (!rows) return true;
  /* VALUES rows: one more complete row; go on while ", (" follows */
  ls->nrows++;
  ls->row_close_start = ls->close_start;
  ls->row_close_end = ls->close_end;
  {
    qp_tok u;
    size_t q = list_tok(d, s, len, pos, &u);
    if (u.type != QP_T_COMMA) return true;
    q = list_tok(d, s, len, q, &u);
    if (u.type != QP_T_LPAREN) return true;
    pos = q;
    last_end = pos;
    st = S0;
    tuple = false;
    goto next_row;
  }
fail:
  if (!rows || ls->nrows == 0) return false;
  /* the rows before the failing one stand */
  ls->close_start = ls->row_close_start;
  ls->close_end = ls->row_close_end;
  return true;
}
