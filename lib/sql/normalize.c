/*
 * The normalizer: one pass over the tokens of a statement, writing its shape
 * into the caller's buffer and hashing it with XXH3-64.
 *
 * Output is bounded by the caller's buffer; when the shape is longer, the
 * rest is still hashed (streaming state on the stack), so a cut never merges
 * two shapes. Lists are collapsed by scanning ahead once from the opening
 * bracket (stopping at the first element that is not a literal), then only
 * the first element is read again, so time stays linear.
 */
/* The hot loops gain from -O3's unrolling; the rest of the build stays as
 * configured. GCC only, and only in optimized builds. */
#if defined(__OPTIMIZE__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include <stdio.h>
#include <string.h>

/* Inlined: no call into the shared library on the hot path, and no
 * dependence on which copy of the symbols a program happens to resolve. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif
/* AVX-512BW for list blocks, chosen at run time (GCC and clang on x86-64). */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__SSE2__)
#define QP_BLK_AVX512 1
#include <immintrin.h>
#endif

#include "internal.h"
#include "lex_impl.h"
#include "sql_int.h"

/* Bump when the normalized form changes: fingerprints then change too. */
#define QP_NORMALIZER_VERSION 2

/* Identifiers longer than this are not passed to user rules. */
#define QP_RULE_WORD_MAX 512

/* Keyword lookup on the hot path: an open-addressing table built once per
 * normalizer (about 15% full), so most identifiers miss on the first probe.
 * A slot holds the keyword id in its low byte and the keyword's length in its
 * high byte, so a probe rejects a wrong-length slot from the one load instead
 * of also loading qp__sql_kw_table. */
#define KWH_SIZE 1024
#define KWH_ID(v) ((v) & 0xFFu)
#define KWH_LEN(v) ((v) >> 8)
_Static_assert(QP_KW_COUNT_ <= 256, "keyword ids must fit in a kwh slot's low byte");

/* Words on the hot path (SSE2, little-endian): an identifier of up to 32
 * bytes is lower-cased 16 bytes at a time straight into the output buffer and
 * looked up as three masked 8-byte words, without a per-byte loop. */
#if defined(__SSE2__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define QP_FAST_WORDS 1
typedef struct kw_words {
  uint64_t w[3], m[3];
} kw_words;
#endif

struct qp_normalizer {
  qp_hooks hooks;
  qp_dialect dialect;
  uint64_t seed;
  qp_rules *rules; /* NULL without rules */
  bool avx512;      /* list blocks classified with AVX-512BW */
  uint16_t kwh[KWH_SIZE]; /* id | len << 8; 0 = empty */
#ifdef QP_FAST_WORDS
  kw_words kww[QP_KW_COUNT_]; /* keyword text as masked 8-byte words */
#endif
};

static inline unsigned kw_hash(const char *p, size_t k) {
  unsigned c0 = qp__sql_lower[(unsigned char)p[0]], c1 = qp__sql_lower[(unsigned char)p[1]];
  unsigned cl = qp__sql_lower[(unsigned char)p[k - 1]];
  return (c0 * 7u + c1 * 131u + cl * 31u + (unsigned)k * 17u) & (KWH_SIZE - 1);
}

static void kw_build(qp_normalizer *n) {
  memset(n->kwh, 0, sizeof n->kwh);
  for (unsigned id = 1; id < QP_KW_COUNT_; id++) {
    unsigned h = kw_hash(qp__sql_kw_table[id].text, qp__sql_kw_table[id].len);
    while (n->kwh[h] != 0) h = (h + 1) & (KWH_SIZE - 1);
    n->kwh[h] = (uint16_t)(id | (unsigned)qp__sql_kw_table[id].len << 8);
  }
#ifdef QP_FAST_WORDS
  memset(n->kww, 0, sizeof n->kww);
  for (unsigned id = 1; id < QP_KW_COUNT_; id++) {
    const qp_kw_entry *k = &qp__sql_kw_table[id];
    for (unsigned i = 0; i < k->len && i < 24; i++) {
      n->kww[id].w[i / 8] |= (uint64_t)(unsigned char)k->text[i] << (8 * (i % 8));
      n->kww[id].m[i / 8] |= (uint64_t)0xFF << (8 * (i % 8));
    }
  }
#endif
}

#ifdef QP_FAST_WORDS
/* Lower-cases the 16 or 32 bytes at p (ASCII letters only) into o. */
static inline __attribute__((always_inline)) void lower32(char *o, const char *p, size_t k) {
  const __m128i a1 = _mm_set1_epi8('A' - 1), z1 = _mm_set1_epi8('Z' + 1), bit = _mm_set1_epi8(0x20);
  for (size_t i = 0; i < k; i += 16) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
    __m128i up = _mm_and_si128(_mm_cmpgt_epi8(v, a1), _mm_cmplt_epi8(v, z1));
    _mm_storeu_si128((__m128i *)(void *)(o + i), _mm_or_si128(v, _mm_and_si128(up, bit)));
  }
}

/* The keyword spelled by the lower-case o[0..k), 24 bytes of o readable. */
static inline qp_kw kw_lookup_lower(const qp_normalizer *n, const char *o, size_t k) {
  if (k < 2 || k > 17) return QP_KW_NONE;
  unsigned h = ((unsigned char)o[0] * 7u + (unsigned char)o[1] * 131u +
                (unsigned char)o[k - 1] * 31u + (unsigned)k * 17u) & (KWH_SIZE - 1);
  uint64_t a, b, c;
  memcpy(&a, o, 8);
  memcpy(&b, o + 8, 8);
  memcpy(&c, o + 16, 8);
  for (unsigned v; (v = n->kwh[h]) != 0; h = (h + 1) & (KWH_SIZE - 1)) {
    if (KWH_LEN(v) != k) continue;
    unsigned id = KWH_ID(v);
    const kw_words *w = &n->kww[id];
    if ((((a & w->m[0]) ^ w->w[0]) | ((b & w->m[1]) ^ w->w[1]) | ((c & w->m[2]) ^ w->w[2])) == 0)
      return (qp_kw)id;
  }
  return QP_KW_NONE;
}
#endif

static inline qp_kw kw_lookup(const qp_normalizer *n, const char *p, size_t k) {
  if (k < 2 || k > 17) return QP_KW_NONE;
  unsigned h = kw_hash(p, k);
  for (unsigned v; (v = n->kwh[h]) != 0; h = (h + 1) & (KWH_SIZE - 1)) {
    if (KWH_LEN(v) != k) continue;
    const qp_kw_entry *e = &qp__sql_kw_table[KWH_ID(v)];
    size_t i = 0;
    while (i < k && qp__sql_lower[(unsigned char)p[i]] == (unsigned char)e->text[i]) i++;
    if (i == k) return (qp_kw)KWH_ID(v);
  }
  return QP_KW_NONE;
}

/* ---- dialects and fingerprints ----------------------------------------- */

bool qp_dialect_parse(const char *name, qp_dialect *out) {
  if (name == NULL) return false;
  if (strcasecmp(name, "postgres") == 0 || strcasecmp(name, "postgresql") == 0 ||
      strcasecmp(name, "pg") == 0) {
    if (out) *out = QP_DIALECT_POSTGRES;
    return true;
  }
  if (strcasecmp(name, "sqlite") == 0 || strcasecmp(name, "sqlite3") == 0) {
    if (out) *out = QP_DIALECT_SQLITE;
    return true;
  }
  return false;
}

const char *qp_dialect_name(qp_dialect dialect) {
  return dialect == QP_DIALECT_SQLITE ? "sqlite" : "postgres";
}

void qp_fingerprint_hex(uint64_t fp, char hex[QP_FINGERPRINT_HEX_SIZE]) {
  static const char digits[] = "0123456789abcdef";
  for (int i = 15; i >= 0; i--) {
    hex[i] = digits[fp & 0xf];
    fp >>= 4;
  }
  hex[16] = '\0';
}

bool qp_fingerprint_parse(const char *hex, uint64_t *fp) {
  if (hex == NULL) return false;
  uint64_t v = 0;
  for (int i = 0; i < 16; i++) {
    char c = hex[i];
    unsigned d;
    if (c >= '0' && c <= '9')
      d = (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f')
      d = (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      d = (unsigned)(c - 'A' + 10);
    else
      return false;
    v = (v << 4) | d;
  }
  if (hex[16] != '\0') return false;
  if (fp) *fp = v;
  return true;
}

/* The seed: XXH3-64 of "qprof-normalizer/<version>/<dialect>". */
static uint64_t dialect_seed(qp_dialect d) {
  char text[64];
  int n = snprintf(text, sizeof text, "qprof-normalizer/%d/%s", QP_NORMALIZER_VERSION,
                   qp_dialect_name(d));
  return XXH3_64bits(text, (size_t)n);
}

qp_status qp_normalizer_new(qp_normalizer **out, qp_dialect dialect, const char *const *rules,
                            size_t nrules, const qp_hooks *hooks, char *errbuf, size_t errlen) {
  if (errbuf != NULL && errlen > 0) errbuf[0] = '\0';
  if (out == NULL) return qp__errbuf_set(errbuf, errlen, QP_INVALID, "out is NULL");
  *out = NULL;
  if (dialect != QP_DIALECT_POSTGRES && dialect != QP_DIALECT_SQLITE)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "unknown dialect %d", (int)dialect);
  if (nrules > 0 && rules == NULL)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "rules is NULL");
  qp_hooks h;
  qp__hooks_init(&h, hooks);
  qp_normalizer *n = qp__calloc(&h, 1, sizeof *n);
  if (n == NULL) return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  n->hooks = h;
  n->dialect = dialect;
  n->seed = dialect_seed(dialect);
  kw_build(n);
#ifdef QP_BLK_AVX512
  n->avx512 = __builtin_cpu_supports("avx512bw") != 0;
#endif
  if (nrules > 0) {
    qp_status st = qp__rules_new(&n->rules, rules, nrules, &n->hooks, errbuf, errlen);
    if (st != QP_OK) {
      qp__free(&h, n);
      return st;
    }
  }
  *out = n;
  return QP_OK;
}

void qp_normalizer_free(qp_normalizer *n) {
  if (n == NULL) return;
  qp_hooks h = n->hooks;
  qp__rules_free(n->rules);
  qp__free(&h, n);
}

qp_dialect qp_normalizer_dialect(const qp_normalizer *n) {
  return n != NULL ? n->dialect : QP_DIALECT_POSTGRES;
}

/* ---- output ------------------------------------------------------------ */

typedef struct emitter {
  char *out;
  size_t lim; /* cap - 1; set to n once the output is full */
  size_t n;   /* bytes in out */
  uint64_t seed;
  bool overflow;
  unsigned char first_dropped;
  size_t spill_n;
  XXH3_state_t st; /* used only once the output no longer fits */
  char spill[2048];
} emitter;

static void emit_overflow(emitter *e, const char *p, size_t k) {
  if (!e->overflow) {
    size_t fit = e->lim - e->n;
    memcpy(e->out + e->n, p, fit);
    e->n += fit;
    e->first_dropped = (unsigned char)p[fit];
    e->overflow = true;
    e->lim = e->n; /* from now on every write takes this path */
    XXH3_INITSTATE(&e->st);
    XXH3_64bits_reset_withSeed(&e->st, e->seed);
    XXH3_64bits_update(&e->st, e->out, e->n);
    p += fit;
    k -= fit;
  }
  while (k > 0) {
    size_t room = sizeof e->spill - e->spill_n;
    size_t c = k < room ? k : room;
    memcpy(e->spill + e->spill_n, p, c);
    e->spill_n += c;
    p += c;
    k -= c;
    if (e->spill_n == sizeof e->spill) {
      XXH3_64bits_update(&e->st, e->spill, e->spill_n);
      e->spill_n = 0;
    }
  }
}

/* Copies k bytes for emit(). Most emitted tokens are 1 to 8 bytes ("?",
 * ", ", operators, short words); for those, two overlapping fixed-size moves
 * beat a general variable-length memcpy (bench_normalize: 5.81 to 5.68 cycles
 * per byte). Reads and writes stay inside [p, p + k) and [o, o + k). */
static inline __attribute__((always_inline)) void copy_small(char *o, const char *p, size_t k) {
  if (k >= 4 && k <= 8) {
    uint32_t a, b;
    memcpy(&a, p, 4);
    memcpy(&b, p + k - 4, 4);
    memcpy(o, &a, 4);
    memcpy(o + k - 4, &b, 4);
  } else if (k < 4) {
    if (k == 0) return;
    o[0] = p[0];
    if (k >= 2) {
      uint16_t a;
      memcpy(&a, p + k - 2, 2);
      memcpy(o + k - 2, &a, 2);
    }
  } else {
    memcpy(o, p, k);
  }
}

static inline void emit(emitter *e, const char *p, size_t k) {
  if (QP_LIKELY(k <= e->lim - e->n)) {
    copy_small(e->out + e->n, p, k);
    e->n += k;
    return;
  }
  emit_overflow(e, p, k);
}

static inline void emit_c(emitter *e, char c) {
  if (QP_LIKELY(e->n < e->lim)) {
    e->out[e->n++] = c;
    return;
  }
  emit_overflow(e, &c, 1);
}

static void emit_lower(emitter *e, const char *p, size_t k) {
  if (QP_LIKELY(k <= e->lim - e->n)) {
    char *o = e->out + e->n;
    for (size_t i = 0; i < k; i++) o[i] = (char)qp__sql_lower[(unsigned char)p[i]];
    e->n += k;
    return;
  }
  char tmp[256];
  while (k > 0) {
    size_t c = k < sizeof tmp ? k : sizeof tmp;
    for (size_t i = 0; i < c; i++) tmp[i] = (char)qp__sql_lower[(unsigned char)p[i]];
    emit(e, tmp, c);
    p += c;
    k -= c;
  }
}

static uint64_t emit_finish(emitter *e) {
  uint64_t h;
  if (!e->overflow) {
    h = XXH3_64bits_withSeed(e->out, e->n, e->seed);
  } else {
    if (e->spill_n) XXH3_64bits_update(&e->st, e->spill, e->spill_n);
    h = XXH3_64bits_digest(&e->st);
    /* Cut at a character boundary: when the first byte left out continues a
     * UTF-8 sequence whose lead byte is among the last three kept, and that
     * sequence is longer than what was kept, drop its kept bytes. Bytes that
     * are not valid UTF-8 are kept as they are. */
    if ((e->first_dropped & 0xC0) == 0x80) {
      size_t k = e->n;
      while (k > 0 && e->n - k < 3 && ((unsigned char)e->out[k - 1] & 0xC0) == 0x80) k--;
      if (k > 0) {
        unsigned char lead = (unsigned char)e->out[k - 1];
        size_t need = (lead >= 0xC2 && lead <= 0xDF) ? 2 : (lead >= 0xE0 && lead <= 0xEF) ? 3
                    : (lead >= 0xF0 && lead <= 0xF4) ? 4 : 0;
        if (need > 0 && k - 1 + need > e->n) e->n = k - 1;
      }
    }
  }
  e->out[e->n] = '\0';
  return h;
}

/* ---- list scanning ----------------------------------------------------- */

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
typedef struct list_scan {
  size_t first_end, close_start, close_end, nelems;
  size_t nrows, row_close_start, row_close_end; /* rows mode */
} list_scan;

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
                                     list_scan *ls, size_t *last_end) {
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
 *   element := ws* ([sign] number | $digits | 'plain string' | true | false)
 *   number  := digits [. digits*] [exp] | . digits [exp]
 *   exp     := (e|E) [sign] digits
 *
 * each followed right away by ',' (or, between VALUES rows, by "), (").
 * Only whole elements before the first byte that breaks a rule are taken;
 * the scalar scan goes on from there, in the state it would have reached by
 * itself (expecting an element, after a comma or a row's '('), so the result
 * is the same whichever path read an element. Anything else (E'', $$, B'',
 * NULL, DEFAULT, casts, row values, white space before a comma, comments) is
 * left to the scalar scan. TRUE and FALSE are matched in any case, letter by
 * letter.
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
  }
}
#endif

#ifdef QP_BLK_AVX512
/* The same masks from one 64-byte load; callers check the CPU first. */
__attribute__((target("avx512bw"))) static inline void blk_classes_avx512(const char *p,
                                                                          qp_sql_blk_classes *m) {
  const __m512i v = _mm512_loadu_si512((const void *)p);
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
#undef QP_EQL
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
static inline __attribute__((always_inline)) uint64_t blk_check(const qp_sql_blk_classes *m,
                                                                bool rows, uint64_t *units,
                                                                uint64_t *commas, uint64_t *rps) {
  const uint64_t q = m->quote, in = prefix_xor(q), out = ~(in | q);
  const uint64_t open = q & in, close = q & ~in;
  const uint64_t D = m->digit & out, P = m->dot & out, S = m->sign & out;
  const uint64_t C = m->comma & out, W = m->space & out, Dl = m->dollar & out;
  const uint64_t RP = rows ? m->rparen & out : 0, LP = rows ? m->lparen & out : 0;
  const uint64_t RC = C & (RP << 1); /* the comma between rows */
  const uint64_t Cn = C & ~RC;       /* commas between elements */
  /* where an element may start: the block start, after a comma or a row's
   * '(', past white space */
  const uint64_t start = land(((Cn | LP) << 1) | 1, W);
  /* first letters of a whole TRUE or FALSE, followed by ',' (or a row's ')') */
  const uint64_t next = (C | RP) & out;
  const uint64_t tw = start & out & m->t & (m->r >> 1) & (m->u >> 2) & (m->exp >> 3) & (next >> 4);
  const uint64_t fw = start & out & m->f & (m->a >> 1) & (m->l >> 2) & (m->s >> 3) &
                      (m->exp >> 4) & (next >> 5);
  const uint64_t words = tw | (tw << 1) | (tw << 2) | (tw << 3) | fw | (fw << 1) | (fw << 2) |
                         (fw << 3) | (fw << 4);
  const uint64_t E = m->exp & out & ~words; /* the e of an exponent */
  const uint64_t lit_end = D | P | close | (tw << 3) | (fw << 4);
  uint64_t bad = out & ~q & ~(D | P | E | S | C | W | Dl | RP | LP | words);
  bad |= W & ~(((C | W | LP) << 1) | 1);
  bad |= D & ~(start | ((D | P | E | S | Dl) << 1));
  /* a sign leads an element or follows an exponent's e, and a digit follows */
  bad |= S & ~((start | (E << 1)) & (D >> 1));
  bad |= E & ~(((D | P) << 1) & ((D >> 1) | ((S >> 1) & (D >> 2))));
  bad |= P & ~((start & (D >> 1)) | ((D << 1) & ((D | E | C | RP) >> 1)));
  bad |= Dl & ~(start & (D >> 1));
  /* one number: no second '.', nothing after the exponent but digits, and
   * $n is digits up to the comma */
  bad |= land(P << 1, D) & P;
  bad |= land(E << 1, D | S) & (P | E);
  bad |= land(Dl << 1, D) & ~(C | RP);
  bad |= Cn & ~(lit_end << 1);
  bad |= open & ~(start | (close << 1));
  bad |= close & ~((C | q | RP) >> 1);
  if (rows) {
    /* ")" right after a literal, "," right after it, then white space and "(" */
    bad |= RP & ~((lit_end << 1) & (C >> 1));
    const uint64_t next_lp = land(RC << 1, W);
    bad |= (next_lp & ~LP) | (LP & ~next_lp);
  }
  *units = Cn | LP;
  *commas = Cn;
  *rps = RP;
  return bad;
}

/*
 * Skips whole literal elements from pos (where one is expected, outside a
 * row-value tuple) block by block, updating the element and row counts like
 * the scalar scan; returns where the scalar scan takes over, just after the
 * last comma or row '(' taken (pos itself when none was taken).
 */
#ifdef __SSE2__
static inline __attribute__((always_inline)) size_t
skip_blocks_impl(const char *s, size_t len, size_t pos, bool rows, list_scan *ls, size_t *last_end,
                 void (*classes)(const char *, qp_sql_blk_classes *)) {
  char tail[64];
  while (pos < len) {
    qp_sql_blk_classes m;
    if (QP_LIKELY(len - pos >= 64)) {
      classes(s + pos, &m);
    } else {
      /* the end of the statement, padded with NULs (bytes no rule takes) */
      memcpy(tail, s + pos, len - pos);
      memset(tail + (len - pos), 0, 64 - (len - pos));
      classes(tail, &m);
    }
    uint64_t units, commas, rps;
    const uint64_t bad = blk_check(&m, rows, &units, &commas, &rps);
    if (bad) units &= ((uint64_t)1 << __builtin_ctzll(bad)) - 1;
    if (units == 0) break;
    const unsigned u = 63u - (unsigned)__builtin_clzll(units);
    const uint64_t upto = u == 63 ? ~(uint64_t)0 : ((uint64_t)1 << (u + 1)) - 1;
    commas &= upto;
    rps &= upto;
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
    pos += u + 1;
    *last_end = pos;
    /* a broken rule before the last two bytes: the scalar scan reads it */
    if (bad & (((uint64_t)1 << 62) - 1)) break;
  }
  return pos;
}

#ifdef QP_BLK_AVX512
__attribute__((target("avx512bw"))) static size_t
skip_blocks_avx512(const char *s, size_t len, size_t pos, bool rows, list_scan *ls,
                   size_t *last_end) {
  return skip_blocks_impl(s, len, pos, rows, ls, last_end, blk_classes_avx512);
}
#endif

static size_t skip_literal_blocks(const qp_normalizer *nz, const char *s, size_t len, size_t pos,
                                  bool rows, list_scan *ls, size_t *last_end) {
#ifdef QP_BLK_AVX512
  if (nz->avx512) return skip_blocks_avx512(s, len, pos, rows, ls, last_end);
#else
  (void)nz;
#endif
  return skip_blocks_impl(s, len, pos, rows, ls, last_end, blk_classes_sse2);
}
#endif

static inline __attribute__((always_inline)) size_t skip_ws(const char *s, size_t len, size_t pos) {
  while (pos < len && qp__sql_cclass[(unsigned char)s[pos]] == QP_C_SPACE) pos++;
  return pos;
}

static bool literal_list(const qp_normalizer *nz, const char *s, size_t len, size_t pos,
                         qp_tok_type close, bool allow_default, bool rows, list_scan *ls) {
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
          size_t np = skip_literal_blocks(nz, s, len, pos, rows, ls, &last_end);
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

/* ---- the normalizer ---------------------------------------------------- */

/* What the previous output token was, for spacing and for telling a unary
 * sign from a binary one. */
typedef enum out_cat {
  OC_START,  /* nothing yet */
  OC_OPEN,   /* ( [ : no space after */
  OC_GLUE,   /* . :: and unary signs: no space after */
  OC_FUNC,   /* identifier: a '(' after it is a call */
  OC_KW,     /* keyword after which an expression starts */
  OC_VALUE,  /* literal, ) ] */
  OC_OP,     /* binary operator */
  OC_COMMA   /* , ; */
} out_cat;

static inline bool unary_context(out_cat c) {
  return c == OC_START || c == OC_OPEN || c == OC_KW || c == OC_OP || c == OC_COMMA ||
         c == OC_GLUE;
}

typedef struct nstate {
  emitter *e;
  out_cat prev;
  unsigned char last; /* last byte written (0 at the start) */
  /* the last token was a number kept as written (ORDER BY 1); a word, not a
   * bool: GCC read the bool with a 4-byte load that the 1-byte store before
   * it cannot forward to (perf showed 9% of qp_normalize's cycles there) */
  unsigned last_num;
  qp_kw kw1, kw2;     /* keywords of the last two output tokens (NONE otherwise) */
} nstate;

/* Two bytes that must not touch: written side by side they would lex as
 * one token ("- -" as a comment, ": :" as a cast, two words as one). */
static inline bool merge_hazard(unsigned char a, unsigned char b) {
  uint8_t ca = qp__sql_cclass[a], cb = qp__sql_cclass[b];
  if (ca == QP_C_OP && cb == QP_C_OP) return true;
  if (a == ':' && b == ':') return true;
  if (qp__sql_idchar(a) && qp__sql_idchar(b)) return true;
  if (a == '.' && cb == QP_C_DIGIT) return true;
  return false;
}

static inline bool needs_space(const nstate *ns, bool glue_left, unsigned char first) {
  if (ns->prev == OC_START) return false;
  bool glued = glue_left || ns->prev == OC_OPEN || ns->prev == OC_GLUE;
  return !glued || merge_hazard(ns->last, first) || (ns->last_num && first == '.');
}

static inline void space_before(nstate *ns, bool glue_left, unsigned char first) {
  if (needs_space(ns, glue_left, first)) emit_c(ns->e, ' ');
}

static inline void put(nstate *ns, const char *p, size_t k, bool glue_left, out_cat cat, qp_kw kw) {
  space_before(ns, glue_left, (unsigned char)p[0]);
  emit(ns->e, p, k);
  ns->prev = cat;
  ns->last = (unsigned char)p[k - 1];
  ns->last_num = false;
  ns->kw2 = ns->kw1;
  ns->kw1 = kw;
}

/* NULL is a literal where an expression starts (after an operator, '(', ',',
 * or a keyword that starts one) and after DEFAULT (a default value, like
 * DEFAULT 0). It is a keyword after IS (IS NULL), after NOT (IS NOT NULL, the
 * NOT NULL column constraint, SQLite's postfix `x NOT NULL`), after SET
 * (ON DELETE SET NULL) and after a name, a type or a ')' (the NULL column
 * constraint: `a int NULL`, `b varchar(10) NULL`). */
static inline bool null_is_literal(const nstate *ns) {
  if (ns->kw1 == QP_KW_DEFAULT) return true;
  if (ns->kw1 == QP_KW_IS || ns->kw1 == QP_KW_NOT || ns->kw1 == QP_KW_SET) return false;
  return unary_context(ns->prev);
}

/* `ON NULL INPUT` (CREATE FUNCTION ... RETURNS NULL ON NULL INPUT): a keyword. */
static bool on_null_input(const nstate *ns, qp_dialect d, const char *s, size_t len, size_t pos) {
  if (ns->kw1 != QP_KW_ON) return false;
  qp_tok u;
  lex_sig(d, s, len, pos, &u);
  return u.type == QP_T_WORD && u.end - u.start == 5 && strncasecmp(s + u.start, "input", 5) == 0;
}

static bool all_digits(const char *p, size_t k) {
  for (size_t i = 0; i < k; i++)
    if (p[i] < '0' || p[i] > '9') return false;
  return k > 0;
}

qp_status qp_normalize(const qp_normalizer *nz, const char *sql, size_t len, char *out, size_t cap,
                       size_t *out_len, uint64_t *fingerprint) {
  if (nz == NULL || (sql == NULL && len > 0) || out == NULL || cap == 0) {
    if (out != NULL && cap > 0) out[0] = '\0';
    if (out_len) *out_len = 0;
    return QP_INVALID;
  }
  const qp_dialect d = nz->dialect;
  const char *s = sql != NULL ? sql : "";
  emitter e;
  e.out = out;
  e.lim = cap - 1;
  e.n = 0;
  e.seed = nz->seed;
  e.overflow = false;
  e.spill_n = 0;
  nstate ns = {&e, OC_START, 0, false, QP_KW_NONE, QP_KW_NONE};

  size_t pos = 0;
  size_t depth = 0;
  size_t skip_from = SIZE_MAX, skip_to = 0;
  size_t order_depth = 0;  /* depth + 1 inside ORDER BY / GROUP BY, else 0 */
  size_t no_fold_until = 0; /* signs before this position do not fold */
  int values_stage = 0;     /* 1: expecting the first row; 2: inside it */
  size_t values_depth = 0;
  bool first_row_literal = false;
  size_t pending_semi = 0;
  qp_tok t;

  for (;;) {
    if (pos == skip_from) {
      pos = skip_to;
      skip_from = SIZE_MAX;
    }
    pos = qp__sql_lex_impl(d, s, len, pos, &t);
    if (t.type == QP_T_EOF) break;
    if (t.type == QP_T_COMMENT) continue;
    if (t.type == QP_T_SEMI) {
      if (ns.prev != OC_START) pending_semi++;
      continue;
    }
    if (pending_semi) {
      for (; pending_semi; pending_semi--) put(&ns, ";", 1, true, OC_COMMA, QP_KW_NONE);
      depth = 0;
      order_depth = 0;
      values_stage = 0;
    }
    if (values_stage == 1 && !(t.type == QP_T_LPAREN && depth == values_depth)) values_stage = 0;

    const char *p = s + t.start;
    size_t k = t.end - t.start;
    switch (t.type) {
    case QP_T_WORD: {
      qp_kw kw;
#ifdef QP_FAST_WORDS
      /* Lower-case the word into the output after the space it may need
       * (not yet committed: e.n moves only when the word is written). */
      bool sp = false;
      bool fast = nz->rules == NULL && k <= 32 && len - t.start >= ((k + 15) & ~(size_t)15) &&
                  e.lim - e.n >= 40;
      if (fast) {
        sp = needs_space(&ns, false, (unsigned char)p[0]);
        lower32(e.out + e.n + sp, p, k);
        kw = kw_lookup_lower(nz, e.out + e.n + sp, k);
      } else {
        kw = kw_lookup(nz, p, k);
      }
#else
      kw = kw_lookup(nz, p, k);
#endif
      if (kw == QP_KW_TRUE || kw == QP_KW_FALSE) {
        put(&ns, "?", 1, false, OC_VALUE, QP_KW_NONE);
        break;
      }
      if (kw == QP_KW_NULL && null_is_literal(&ns) && !on_null_input(&ns, d, s, len, pos)) {
        put(&ns, "?", 1, false, OC_VALUE, QP_KW_NONE);
        break;
      }
      if (order_depth == depth + 1) {
        switch (kw) {
        case QP_KW_LIMIT: case QP_KW_OFFSET: case QP_KW_HAVING: case QP_KW_WINDOW:
        case QP_KW_UNION: case QP_KW_EXCEPT: case QP_KW_INTERSECT: case QP_KW_FETCH:
        case QP_KW_FOR: case QP_KW_RETURNING: case QP_KW_WHERE: case QP_KW_FROM:
        case QP_KW_ON: case QP_KW_SELECT:
          order_depth = 0;
          break;
        default:
          break;
        }
      }
      if (kw == QP_KW_BY && (ns.kw1 == QP_KW_ORDER || ns.kw1 == QP_KW_GROUP)) order_depth = depth + 1;
      if (kw == QP_KW_VALUES) {
        values_stage = 1;
        values_depth = depth;
      }
      out_cat cat = qp__sql_kw_operator(kw) ? OC_KW : OC_FUNC;
      if (nz->rules != NULL && kw == QP_KW_NONE && k < QP_RULE_WORD_MAX) {
        char low[QP_RULE_WORD_MAX], buf[QP_RULE_WORD_MAX];
        for (size_t i = 0; i < k; i++) low[i] = (char)qp__sql_lower[(unsigned char)p[i]];
        size_t m = qp__rules_apply(nz->rules, low, k, buf, sizeof buf);
        if (m > 0) put(&ns, buf, m, false, cat, kw);
        break;
      }
#ifdef QP_FAST_WORDS
      if (fast) {
        if (sp) e.out[e.n] = ' ';
        e.n += sp + k;
      } else
#endif
      {
        space_before(&ns, false, (unsigned char)p[0]);
        emit_lower(&e, p, k);
      }
      ns.prev = cat;
      ns.last = qp__sql_lower[(unsigned char)p[k - 1]];
      ns.last_num = false;
      ns.kw2 = ns.kw1;
      ns.kw1 = kw;
      break;
    }
    case QP_T_QIDENT:
      if (QP_UNLIKELY(memchr(p, '\0', k) != NULL)) {
        /* The output is a C string: a NUL inside a quoted name becomes '?'. */
        space_before(&ns, false, (unsigned char)p[0]);
        for (size_t i = 0; i < k; i++) emit_c(&e, p[i] != '\0' ? p[i] : '?');
        ns.prev = OC_FUNC;
        ns.last = p[k - 1] != '\0' ? (unsigned char)p[k - 1] : '?';
        ns.last_num = false;
        ns.kw2 = ns.kw1;
        ns.kw1 = QP_KW_NONE;
        break;
      }
      put(&ns, p, k, false, OC_FUNC, QP_KW_NONE);
      break;
    case QP_T_NUMBER:
      if (order_depth == depth + 1 && (ns.kw1 == QP_KW_BY || ns.prev == OC_COMMA) &&
          all_digits(p, k)) {
        put(&ns, p, k, false, OC_VALUE, QP_KW_NONE);
        ns.last_num = true;
        break;
      }
      /* fall through */
    case QP_T_STRING:
    case QP_T_PARAM:
      put(&ns, "?", 1, false, OC_VALUE, QP_KW_NONE);
      break;
    case QP_T_OP:
      if (is_sign(s, &t) && unary_context(ns.prev)) {
        if (t.start >= no_fold_until) {
          /* A chain of signs before a literal folds into that literal. */
          qp_tok u;
          size_t q = pos;
          for (;;) {
            q = lex_sig(d, s, len, q, &u);
            if (!is_sign(s, &u)) break;
          }
          qp_kw ukw = u.type == QP_T_WORD ? kw_lookup(nz, s + u.start, u.end - u.start) : QP_KW_NONE;
          if (u.type == QP_T_NUMBER || u.type == QP_T_PARAM || u.type == QP_T_STRING ||
              ukw == QP_KW_TRUE || ukw == QP_KW_FALSE || ukw == QP_KW_NULL) {
            pos = q;
            put(&ns, "?", 1, false, OC_VALUE, QP_KW_NONE);
            break;
          }
          no_fold_until = u.start;
        }
        /* A unary sign is glued to its operand ("-x"). */
        put(&ns, p, 1, false, OC_GLUE, QP_KW_NONE);
        break;
      }
      put(&ns, p, k, false, OC_OP, QP_KW_NONE);
      break;
    case QP_T_LPAREN: {
      bool call = ns.prev == OC_FUNC;
      if (values_stage == 1) {
        list_scan ls;
        first_row_literal = literal_list(nz, s, len, pos, QP_T_RPAREN, true, false, &ls);
        values_stage = 2;
      } else if (ns.kw1 == QP_KW_IN) {
        list_scan ls;
        if (literal_list(nz, s, len, pos, QP_T_RPAREN, false, false, &ls) && ls.nelems > 1) {
          skip_from = ls.first_end;
          skip_to = ls.close_start;
        }
      }
      put(&ns, "(", 1, call, OC_OPEN, QP_KW_NONE);
      depth++;
      break;
    }
    case QP_T_RPAREN:
      put(&ns, ")", 1, true, OC_VALUE, QP_KW_NONE);
      if (depth > 0) depth--;
      if (order_depth > depth + 1) order_depth = 0;
      if (values_stage == 2 && depth == values_depth) {
        values_stage = 0;
        if (first_row_literal) {
          /* Skip every following row of literals: , ( ... ) , ( ... ) */
          qp_tok u;
          size_t q = list_tok(d, s, len, pos, &u);
          if (u.type == QP_T_COMMA) {
            q = list_tok(d, s, len, q, &u);
            list_scan ls;
            if (u.type == QP_T_LPAREN && literal_list(nz, s, len, q, QP_T_RPAREN, true, true, &ls)) {
              skip_from = pos;
              skip_to = ls.close_end;
            }
          }
        }
      }
      break;
    case QP_T_LBRACK:
      if (ns.kw1 == QP_KW_ARRAY) {
        list_scan ls;
        if (literal_list(nz, s, len, pos, QP_T_RBRACK, false, false, &ls) && ls.nelems > 1) {
          skip_from = ls.first_end;
          skip_to = ls.close_start;
        }
      }
      /* a subscript or ARRAY[ is glued; a nested array after ',' is not */
      put(&ns, "[", 1, ns.prev == OC_FUNC || ns.prev == OC_VALUE, OC_OPEN, QP_KW_NONE);
      break;
    case QP_T_RBRACK:
      put(&ns, "]", 1, true, OC_VALUE, QP_KW_NONE);
      break;
    case QP_T_COMMA:
      put(&ns, ",", 1, true, OC_COMMA, QP_KW_NONE);
      break;
    case QP_T_DOT:
      put(&ns, ".", 1, true, OC_GLUE, QP_KW_NONE);
      break;
    case QP_T_CAST:
      put(&ns, "::", 2, true, OC_GLUE, QP_KW_NONE);
      break;
    case QP_T_COLON:
      put(&ns, ":", 1, false, OC_OP, QP_KW_NONE);
      break;
    default: /* QP_T_OTHER */
      put(&ns, p, k, false, OC_OP, QP_KW_NONE);
      break;
    }
  }
  uint64_t h = emit_finish(&e);
  if (out_len) *out_len = e.n;
  if (fingerprint) *fingerprint = h;
  return QP_OK;
}
