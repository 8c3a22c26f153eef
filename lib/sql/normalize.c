/*
 * The normalizer: one pass over the tokens of a statement, writing its shape
 * into the caller's buffer and hashing it with XXH3-64.
 *
 * Output is bounded by the caller's buffer; when the shape is longer, the
 * rest is still hashed (streaming state on the stack), so a cut never merges
 * two shapes. Lists are collapsed by scanning ahead once from the opening
 * bracket: every token is lexed at most twice, so time stays linear.
 */
#include <stdio.h>
#include <string.h>

/* Inlined: no call into the shared library on the hot path, and no
 * dependence on which copy of the symbols a program happens to resolve. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "internal.h"
#include "lex_impl.h"
#include "sql_int.h"

/* Bump when the normalized form changes: fingerprints then change too. */
#define QP_NORMALIZER_VERSION 1

/* Identifiers longer than this are not passed to user rules. */
#define QP_RULE_WORD_MAX 512

/* ---- literal lists: a table-driven automaton ---------------------------
 * Lists of literals are most of the bytes of real workloads (IN lists,
 * multi-row VALUES). Their elements come in random order of kinds, which
 * makes a branchy scanner mispredict on nearly every element; this
 * automaton reads one byte per step with two table lookups and no
 * data-dependent branch. It covers numbers, '' E'' B'' X'' N'' $$ strings,
 * $n ? ?n placeholders, signs, TRUE FALSE NULL (DEFAULT in VALUES), commas
 * and white space; anything else (casts, comments, tuples, $tag$ quotes...)
 * fails it and the token-level scanner decides. Built once per normalizer. */
enum {
  B_OTHER, B_WS, B_DIGIT, B_DOT, B_QUOTE, B_BSLASH, B_DOLLAR, B_COMMA, B_LPAREN, B_RPAREN,
  B_RBRACK, B_PLUS, B_MINUS, B_QMARK, B_IDENT, B_A, B_B, B_D, B_E, B_F, B_L, B_N, B_R, B_S, B_T,
  B_U, B_X, B_COUNT
};
enum {
  D_EXP, D_COMMA, D_SIGN, D_INT, D_LDOT, D_DOT, D_FRAC, D_E, D_ESIGN, D_EXPD, D_AFTER, D_STR,
  D_STRQ, D_ESTR, D_ESTRBS, D_ESTRQ, D_EQ, D_PQ, D_DOL, D_PARAM, D_QPARAM, D_DQ, D_DQ1, D_T1,
  D_T2, D_T3, D_T4, D_F1, D_F2, D_F3, D_F4, D_F5, D_N1, D_NU, D_NUL, D_NULL, D_D1, D_D2, D_D3,
  D_D4, D_D5, D_D6, D_D7, D_ROWEND0, D_ROWEND, D_ROWSEP,
  D_CLOSE, D_ROWSDONE, D_FAIL, /* exits: from D_CLOSE on */
  D_COUNT
};
/* modes: the closing byte and what it leads to */
enum { LM_PAREN, LM_BRACK, LM_PAREN_DEFAULT, LM_ROWS, LM_COUNT };

typedef struct list_dfa {
  uint8_t cls[256];
  uint8_t next[LM_COUNT][D_COUNT][B_COUNT];
} list_dfa;

/* Keyword lookup on the hot path: an open-addressing table built once per
 * normalizer (about 15% full), so most identifiers miss on the first probe. */
#define KWH_SIZE 1024

struct qp_normalizer {
  qp_hooks hooks;
  qp_dialect dialect;
  uint64_t seed;
  qp_rules *rules; /* NULL without rules */
  uint8_t kwh[KWH_SIZE];
  list_dfa dfa;
};

static inline unsigned kw_hash(const char *p, size_t k) {
  unsigned c0 = qp__sql_lower[(unsigned char)p[0]], c1 = qp__sql_lower[(unsigned char)p[1]];
  unsigned cl = qp__sql_lower[(unsigned char)p[k - 1]];
  return (c0 * 7u + c1 * 131u + cl * 31u + (unsigned)k * 17u) & (KWH_SIZE - 1);
}


static void dfa_build(list_dfa *a, qp_dialect d) {
  const bool pg = d == QP_DIALECT_POSTGRES;
  for (int c = 0; c < 256; c++) {
    uint8_t k = qp__sql_cclass[c];
    a->cls[c] = (k == QP_C_IDENT || k == QP_C_DOLLAR) ? B_IDENT : B_OTHER;
    if (k == QP_C_SPACE) a->cls[c] = B_WS;
    if (k == QP_C_DIGIT) a->cls[c] = B_DIGIT;
  }
  a->cls[0] = B_OTHER; /* NUL is white space to the lexer, but rare: leave it to it */
  a->cls['.'] = B_DOT, a->cls['\''] = B_QUOTE, a->cls['\\'] = B_BSLASH, a->cls['$'] = B_DOLLAR;
  a->cls[','] = B_COMMA, a->cls['('] = B_LPAREN, a->cls[')'] = B_RPAREN, a->cls[']'] = B_RBRACK;
  a->cls['+'] = B_PLUS, a->cls['-'] = B_MINUS, a->cls['?'] = B_QMARK;
  static const struct { char c; uint8_t b; } letters[] = {
      {'a', B_A}, {'b', B_B}, {'d', B_D}, {'e', B_E}, {'f', B_F}, {'l', B_L},
      {'n', B_N}, {'r', B_R}, {'s', B_S}, {'t', B_T}, {'u', B_U}, {'x', B_X}};
  for (size_t i = 0; i < QP_ARRAY_LEN(letters); i++) {
    a->cls[(unsigned char)letters[i].c] = letters[i].b;
    a->cls[(unsigned char)(letters[i].c - 32)] = letters[i].b;
  }
  for (int m = 0; m < LM_COUNT; m++) {
    uint8_t(*t)[B_COUNT] = a->next[m];
    memset(t, D_FAIL, sizeof a->next[m]);
    uint8_t closer = m == LM_BRACK ? B_RBRACK : B_RPAREN;
    uint8_t closed = m == LM_ROWS ? D_ROWEND0 : D_CLOSE;
    /* states that end a value: white space, a comma or the closer follow */
    static const uint8_t enders[] = {D_INT, D_DOT, D_FRAC, D_EXPD, D_AFTER, D_STRQ, D_ESTRQ,
                                     D_PARAM, D_QPARAM, D_T4, D_F5, D_NULL, D_D7};
    for (size_t i = 0; i < QP_ARRAY_LEN(enders); i++) {
      t[enders[i]][B_WS] = D_AFTER;
      t[enders[i]][B_COMMA] = D_COMMA;
      t[enders[i]][closer] = closed;
    }
    /* expecting an element (D_COMMA: the same, right after a comma) */
    static const uint8_t starts[] = {D_EXP, D_COMMA, D_SIGN};
    for (size_t i = 0; i < QP_ARRAY_LEN(starts); i++) {
      uint8_t (*r) = t[starts[i]];
      r[B_WS] = starts[i] == D_SIGN ? D_SIGN : D_EXP;
      r[B_DIGIT] = D_INT;
      r[B_DOT] = D_LDOT;
      r[B_PLUS] = r[B_MINUS] = D_SIGN;
      r[B_DOLLAR] = D_DOL;
      r[B_QMARK] = D_QPARAM;
      if (starts[i] == D_SIGN) continue;
      r[B_QUOTE] = D_STR;
      r[B_X] = D_PQ;
      if (pg) {
        r[B_E] = D_EQ;
        r[B_B] = D_PQ;
      }
      r[B_N] = D_N1;
      r[B_T] = D_T1;
      r[B_F] = D_F1;
      if (m == LM_PAREN_DEFAULT || m == LM_ROWS) r[B_D] = D_D1;
    }
    /* numbers: 12  1.5  .5  5.  1e-3 */
    t[D_INT][B_DIGIT] = D_INT, t[D_INT][B_DOT] = D_DOT, t[D_INT][B_E] = D_E;
    t[D_LDOT][B_DIGIT] = D_FRAC;
    t[D_DOT][B_DIGIT] = D_FRAC, t[D_DOT][B_E] = D_E;
    t[D_FRAC][B_DIGIT] = D_FRAC, t[D_FRAC][B_E] = D_E;
    t[D_E][B_DIGIT] = D_EXPD, t[D_E][B_PLUS] = t[D_E][B_MINUS] = D_ESIGN;
    t[D_ESIGN][B_DIGIT] = D_EXPD;
    t[D_EXPD][B_DIGIT] = D_EXPD;
    /* strings */
    for (int b = 0; b < B_COUNT; b++) {
      t[D_STR][b] = D_STR;
      t[D_ESTR][b] = D_ESTR;
      t[D_ESTRBS][b] = D_ESTR;
      t[D_DQ][b] = D_DQ;
      t[D_DQ1][b] = D_DQ;
    }
    t[D_STR][B_QUOTE] = D_STRQ;
    t[D_STRQ][B_QUOTE] = D_STR; /* '' inside */
    t[D_ESTR][B_QUOTE] = D_ESTRQ, t[D_ESTR][B_BSLASH] = D_ESTRBS;
    t[D_ESTRQ][B_QUOTE] = D_ESTR;
    t[D_EQ][B_QUOTE] = D_ESTR;
    t[D_PQ][B_QUOTE] = D_STR;
    if (pg) t[D_N1][B_QUOTE] = D_STR;
    /* placeholders and $$ quotes */
    t[D_DOL][B_DIGIT] = D_PARAM;
    t[D_PARAM][B_DIGIT] = D_PARAM;
    t[D_QPARAM][B_DIGIT] = pg ? D_FAIL : D_QPARAM;
    if (pg) {
      t[D_DOL][B_DOLLAR] = D_DQ;
      t[D_DQ][B_DOLLAR] = D_DQ1;
      t[D_DQ1][B_DOLLAR] = D_AFTER;
    }
    /* TRUE FALSE NULL DEFAULT */
    t[D_T1][B_R] = D_T2, t[D_T2][B_U] = D_T3, t[D_T3][B_E] = D_T4;
    t[D_F1][B_A] = D_F2, t[D_F2][B_L] = D_F3, t[D_F3][B_S] = D_F4, t[D_F4][B_E] = D_F5;
    t[D_N1][B_U] = D_NU, t[D_NU][B_L] = D_NUL, t[D_NUL][B_L] = D_NULL;
    t[D_D1][B_E] = D_D2, t[D_D2][B_F] = D_D3, t[D_D3][B_A] = D_D4, t[D_D4][B_U] = D_D5;
    t[D_D5][B_L] = D_D6, t[D_D6][B_T] = D_D7;
    /* VALUES rows: ) , ( */
    for (int b = 0; b < B_COUNT; b++) {
      t[D_ROWEND0][b] = t[D_ROWEND][b] = D_ROWSDONE;
      t[D_ROWSEP][b] = D_ROWSDONE;
    }
    t[D_ROWEND0][B_WS] = t[D_ROWEND][B_WS] = D_ROWEND;
    t[D_ROWEND0][B_COMMA] = t[D_ROWEND][B_COMMA] = D_ROWSEP;
    t[D_ROWSEP][B_WS] = D_ROWSEP;
    t[D_ROWSEP][B_LPAREN] = D_EXP;
    /* exits stay */
    for (int b = 0; b < B_COUNT; b++) {
      t[D_CLOSE][b] = D_CLOSE;
      t[D_ROWSDONE][b] = D_ROWSDONE;
      t[D_FAIL][b] = D_FAIL;
    }
  }
}

static void kw_build(qp_normalizer *n) {
  memset(n->kwh, 0, sizeof n->kwh);
  for (unsigned id = 1; id < QP_KW_COUNT_; id++) {
    unsigned h = kw_hash(qp__sql_kw_table[id].text, qp__sql_kw_table[id].len);
    while (n->kwh[h] != 0) h = (h + 1) & (KWH_SIZE - 1);
    n->kwh[h] = (uint8_t)id;
  }
}

static inline qp_kw kw_lookup(const qp_normalizer *n, const char *p, size_t k) {
  if (k < 2 || k > 17) return QP_KW_NONE;
  unsigned h = kw_hash(p, k);
  for (unsigned id; (id = n->kwh[h]) != 0; h = (h + 1) & (KWH_SIZE - 1)) {
    const qp_kw_entry *e = &qp__sql_kw_table[id];
    if (e->len != k) continue;
    size_t i = 0;
    while (i < k && qp__sql_lower[(unsigned char)p[i]] == (unsigned char)e->text[i]) i++;
    if (i == k) return (qp_kw)id;
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
  dfa_build(&n->dfa, dialect);
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

static inline void emit(emitter *e, const char *p, size_t k) {
  if (QP_LIKELY(k <= e->lim - e->n)) {
    memcpy(e->out + e->n, p, k);
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
    emit_overflow(e, tmp, c);
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
     * UTF-8 sequence, drop that sequence's bytes that did fit. */
    if ((e->first_dropped & 0xC0) == 0x80) {
      size_t k = e->n;
      int steps = 0;
      while (k > 0 && steps < 3 && ((unsigned char)e->out[k - 1] & 0xC0) == 0x80) {
        k--;
        steps++;
      }
      if (k > 0 && ((unsigned char)e->out[k - 1] & 0xC0) == 0xC0) k--;
      e->n = k;
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
 * Skips a run of bytes that can only be numbers, commas and white space
 * (0-9 . , space \t \n \r), sixteen at a time, counting the commas as
 * element separators. Returns where the run stops. The caller re-reads the
 * run's last number, which may continue past it (1e-5).
 */
static inline size_t skip_number_run(const char *s, size_t len, size_t pos, list_scan *ls,
                                     size_t *last_end) {
  const __m128i lo = _mm_set1_epi8('0' - 1), hi = _mm_set1_epi8('9' + 1);
  const __m128i comma = _mm_set1_epi8(','), dot = _mm_set1_epi8('.'), sp = _mm_set1_epi8(' ');
  const __m128i nl = _mm_set1_epi8('\n'), tab = _mm_set1_epi8('\t'), cr = _mm_set1_epi8('\r');
  size_t run = pos;
  while (run + 16 <= len) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + run));
    __m128i dig = _mm_and_si128(_mm_cmpgt_epi8(v, lo), _mm_cmplt_epi8(v, hi));
    __m128i com = _mm_cmpeq_epi8(v, comma);
    __m128i ws = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, sp), _mm_cmpeq_epi8(v, nl)),
                              _mm_or_si128(_mm_cmpeq_epi8(v, tab), _mm_cmpeq_epi8(v, cr)));
    __m128i ok = _mm_or_si128(_mm_or_si128(dig, com), _mm_or_si128(ws, _mm_cmpeq_epi8(v, dot)));
    unsigned stop = ~(unsigned)_mm_movemask_epi8(ok) & 0xFFFFu;
    unsigned cm = (unsigned)_mm_movemask_epi8(com);
    size_t adv = 16;
    if (stop) {
      adv = (size_t)__builtin_ctz(stop);
      cm &= (1u << adv) - 1;
    }
    if (cm) {
      if (ls->first_end == SIZE_MAX) {
        /* the first element ends at the last non-space byte before the comma */
        size_t c = run + (size_t)__builtin_ctz(cm), e = c;
        while (e > pos && qp__sql_cclass[(unsigned char)s[e - 1]] == QP_C_SPACE) e--;
        ls->first_end = e > pos ? e : *last_end;
      }
      ls->nelems += (size_t)__builtin_popcount(cm);
      *last_end = run + 32 - (size_t)__builtin_clz(cm);
    }
    run += adv;
    if (stop) break;
  }
  return run;
}
#endif


/* Runs the automaton over a list from `pos` (after its opening bracket).
 * Returns 1 when it decided (ls filled, result in *ok), 0 when the token
 * scanner must decide. */
static int dfa_list(const list_dfa *a, int mode, const char *s, size_t len, size_t pos, list_scan *ls,
                    bool *ok) {
  const uint8_t(*t)[B_COUNT] = a->next[mode];
  const size_t start = pos;
  size_t commas = 0, first_comma = SIZE_MAX, rows = 0, row_end = 0;
  unsigned st = D_EXP;
  size_t i = pos;
  for (; i < len; i++) {
    st = t[st][a->cls[(unsigned char)s[i]]];
    if (QP_UNLIKELY(st >= D_CLOSE)) break;
    /* branch-free bookkeeping */
    commas += st == D_COMMA;
    first_comma = (st == D_COMMA && first_comma == SIZE_MAX) ? i : first_comma;
    rows += st == D_ROWEND0;
    row_end = st == D_ROWEND0 ? i + 1 : row_end;
  }
  if (mode == LM_ROWS) {
    /* complete rows count, whatever ended the scan */
    if (st == D_ROWEND0 || st == D_ROWEND || st == D_ROWSEP || st == D_ROWSDONE || rows > 0) {
      ls->nrows = rows;
      ls->close_end = row_end;
      ls->close_start = row_end - 1;
      *ok = rows > 0;
      return rows > 0 || st == D_ROWSDONE;
    }
    return 0;
  }
  if (st != D_CLOSE) return 0;
  ls->close_start = i;
  ls->close_end = i + 1;
  ls->nelems = commas + 1;
  size_t e = first_comma != SIZE_MAX ? first_comma : i;
  while (e > start && qp__sql_cclass[(unsigned char)s[e - 1]] == QP_C_SPACE) e--;
  ls->first_end = e;
  *ok = true;
  return 1;
}

static bool literal_list(const qp_normalizer *nz, const char *s, size_t len, size_t pos,
                         qp_tok_type close, bool allow_default, bool rows, list_scan *ls) {
  const qp_dialect d = nz->dialect;
  {
    int mode = rows ? LM_ROWS
                    : close == QP_T_RBRACK ? LM_BRACK : allow_default ? LM_PAREN_DEFAULT : LM_PAREN;
    bool ok = false;
    if (dfa_list(&nz->dfa, mode, s, len, pos, ls, &ok)) return ok;
  }
  enum { S0, S1, STYPE, STYPE2, STMOD, SARR } st = S0;
  bool tuple = false; /* inside one (a, b) element of a row-value list */
  unsigned cooldown = 0;
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
      /* Lists of mixed literals rarely have long runs: after a short run,
       * the next few elements take the scalar path. */
      if (cooldown > 0) {
        cooldown--;
      } else if (!tuple && (st == S0 || st == S1) && len - pos >= 32) {
        size_t run = skip_number_run(s, len, pos, ls, &last_end);
        if (run - pos < 24) cooldown = 8;
        if (run != pos) {
          /* resume at the last number of the run, which may go on (1e5) */
          size_t j = run;
          while (j > pos && qp__sql_cclass[(unsigned char)s[j - 1]] == QP_C_SPACE) j--;
          if (j > pos && s[j - 1] == ',') {
            st = S0;
            pos = run;
          } else {
            size_t k0 = j;
            while (k0 > pos && (qp__sql_cclass[(unsigned char)s[k0 - 1]] == QP_C_DIGIT || s[k0 - 1] == '.')) k0--;
            if (k0 > pos && qp__sql_cclass[(unsigned char)s[k0 - 1]] != QP_C_SPACE && s[k0 - 1] != ',')
              goto fail; /* "1 2", "'a'5": not a list of literals */
            if (k0 > pos) st = S0;
            pos = k0;
          }
        }
      }
#endif
      while (pos < len && qp__sql_cclass[(unsigned char)s[pos]] == QP_C_SPACE) pos++;
      if (pos >= len) break;
      uint8_t k = qp__sql_cclass[(unsigned char)s[pos]];
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
      } else if (st == S1 && k == QP_C_COMMA) {
        if (!tuple) {
          if (ls->first_end == SIZE_MAX) ls->first_end = last_end;
          ls->nelems++;
        }
        last_end = ++pos;
        st = S0;
      } else if (st == S1 && !tuple &&
                 k == (close == QP_T_RPAREN ? QP_C_RPAREN : QP_C_RBRACK)) {
        t.start = pos;
        t.end = pos + 1;
        pos++;
        goto closed;
      } else {
        break;
      }
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
  bool last_num;      /* the last token was a number kept as written (ORDER BY 1) */
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

static inline void space_before(nstate *ns, bool glue_left, unsigned char first) {
  if (ns->prev == OC_START) return;
  bool glued = glue_left || ns->prev == OC_OPEN || ns->prev == OC_GLUE;
  if (!glued || merge_hazard(ns->last, first) || (ns->last_num && first == '.'))
    emit_c(ns->e, ' ');
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
      qp_kw kw = kw_lookup(nz, p, k);
      if (kw == QP_KW_TRUE || kw == QP_KW_FALSE) {
        put(&ns, "?", 1, false, OC_VALUE, QP_KW_NONE);
        break;
      }
      if (kw == QP_KW_NULL && !(ns.kw1 == QP_KW_IS || (ns.kw1 == QP_KW_NOT && ns.kw2 == QP_KW_IS))) {
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
      space_before(&ns, false, (unsigned char)p[0]);
      emit_lower(&e, p, k);
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
          if (u.type == QP_T_NUMBER || u.type == QP_T_PARAM) {
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
