/*
 * The normalizer: one pass over the tokens of a statement, writing its shape
 * into the caller's buffer and hashing it with XXH3-64.
 *
 * Output is bounded by the caller's buffer; when the shape is longer, the
 * rest is still hashed (streaming state on the stack), so a cut never merges
 * two shapes. Lists are collapsed by scanning ahead once from the opening
 * bracket (normalize_list.c, stopping at the first element that is not a
 * literal), then only the first element is read again, so time stays linear.
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
/* AVX-512BW (with BMI1/2 and POPCNT) for list blocks (normalize_list.c),
 * chosen once per normalizer at run time (GCC and clang on x86-64). */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__SSE2__)
#define QP_BLK_AVX512 1
#endif

#include "internal.h"
#include "lex_impl.h"
#include "normalize_int.h"
#include "sql_int.h"
#include "sql/memo.h"

/* Bump when the normalized form changes: fingerprints then change too. */
#define QP_NORMALIZER_VERSION 3

/* Identifiers longer than this are not passed to user rules. */
#define QP_RULE_WORD_MAX 512

/* Fills the keyword table; false when no multiplier of the sequence is
 * perfect (the keyword list is fixed, so this either never or always
 * happens; the unit tests would show it). */
static bool kw_build(qp_normalizer *n) {
  memset(n->kww, 0, sizeof n->kww);
  for (unsigned id = 1; id < QP_KW_COUNT_; id++) {
    const qp_kw_entry *k = &qp__sql_kw_table[id];
    if (k->len < KW_MIN_LEN || k->len > KW_MAX_LEN) return false;
    kw_words_of(k->text, k->len, false, n->kww[id].w);
    n->kww[id].len = k->len;
  }
  /* splitmix64 from a fixed start: the first multiplier it gives is perfect
   * for today's keyword list (found by this same search); a new keyword may
   * make it look further. */
  uint64_t x = 0x6cde9a2a314924c9ULL;
  for (unsigned attempt = 0; attempt < 100000; attempt++) {
    x += 0x9E3779B97F4A7C15ULL;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    const uint64_t mul = (z ^ (z >> 31)) | 1;
    memset(n->kwh, 0, sizeof n->kwh);
    unsigned id = 1;
    for (; id < QP_KW_COUNT_; id++) {
      const kw_words *w = &n->kww[id];
      const unsigned h = kw_slot(mul, w->w[0], w->w[1], qp__sql_kw_table[id].len);
      if (n->kwh[h] != 0) break;
      n->kwh[h] = (uint8_t)id;
    }
    if (id == QP_KW_COUNT_) {
      n->kwmul = mul;
      return true;
    }
  }
  return false;
}

#ifdef QP_FAST_WORDS
/* The 16 bytes at p, ASCII letters lower-cased. */
static inline __attribute__((always_inline)) __m128i lower16(const char *p) {
  const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
  const __m128i up = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8('A' - 1)),
                                   _mm_cmplt_epi8(v, _mm_set1_epi8('Z' + 1)));
  return _mm_or_si128(v, _mm_and_si128(up, _mm_set1_epi8(0x20)));
}

/* Masks keeping the first k bytes of a and b, for k <= KW_MAX_LEN. */
static const uint64_t kw_mask[KW_MAX_LEN + 1][2] = {
    {0, 0},
    {0xFFULL, 0},
    {0xFFFFULL, 0},
    {0xFFFFFFULL, 0},
    {0xFFFFFFFFULL, 0},
    {0xFFFFFFFFFFULL, 0},
    {0xFFFFFFFFFFFFULL, 0},
    {0xFFFFFFFFFFFFFFULL, 0},
    {~0ULL, 0},
    {~0ULL, 0xFFULL},
    {~0ULL, 0xFFFFULL},
    {~0ULL, 0xFFFFFFULL},
    {~0ULL, 0xFFFFFFFFULL},
    {~0ULL, 0xFFFFFFFFFFULL},
    {~0ULL, 0xFFFFFFFFFFFFULL},
    {~0ULL, 0xFFFFFFFFFFFFFFULL},
    {~0ULL, ~0ULL},
    {~0ULL, ~0ULL},
};

/* Lower-cases the word p[0..k) (k <= 32, 16 or 32 bytes of p readable)
 * into o (as many bytes writable) and returns its keyword. */
static inline __attribute__((always_inline)) qp_kw lower_word(const qp_normalizer *n, char *o,
                                                              const char *p, size_t k) {
  const __m128i v0 = lower16(p);
  _mm_storeu_si128((__m128i *)(void *)o, v0);
  uint64_t c = 0;
  if (k > 16) {
    const __m128i v1 = lower16(p + 16);
    _mm_storeu_si128((__m128i *)(void *)(o + 16), v1);
    c = (uint64_t)_mm_cvtsi128_si64(v1) & 0xFF;
  }
  if (k < KW_MIN_LEN || k > KW_MAX_LEN) return QP_KW_NONE;
  const uint64_t a = (uint64_t)_mm_cvtsi128_si64(v0) & kw_mask[k][0];
  const uint64_t b = (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(v0, v0)) & kw_mask[k][1];
  return kw_lookup_words(n, a, b, c, k);
}
#endif

/* What the main loop does with a keyword, from one load: whether an
 * expression starts after it, whether it needs a closer look (literals, BY,
 * VALUES), and whether it ends an ORDER BY / GROUP BY list. Identifiers
 * (QP_KW_NONE) have no flag, so the common path takes no branch on whether
 * a word is a keyword: that branch was the main loop's worst-predicted. */
enum { KWF_OP = 1, KWF_SPECIAL = 2, KWF_ORDER_END = 4 };
#define KWF_SPECIAL_(k)                                                                    \
  (((k) == QP_KW_TRUE || (k) == QP_KW_FALSE || (k) == QP_KW_NULL || (k) == QP_KW_BY ||     \
    (k) == QP_KW_VALUES || (k) == QP_KW_SAVEPOINT || (k) == QP_KW_RELEASE ||              \
    (k) == QP_KW_ROLLBACK || (k) == QP_KW_DEALLOCATE || (k) == QP_KW_CREATE)               \
       ? KWF_SPECIAL                                                                       \
       : 0)
#define KWF_ORDER_END_(k)                                                                  \
  (((k) == QP_KW_LIMIT || (k) == QP_KW_OFFSET || (k) == QP_KW_HAVING ||                    \
    (k) == QP_KW_WINDOW || (k) == QP_KW_UNION || (k) == QP_KW_EXCEPT ||                    \
    (k) == QP_KW_INTERSECT || (k) == QP_KW_FETCH || (k) == QP_KW_FOR ||                    \
    (k) == QP_KW_RETURNING || (k) == QP_KW_WHERE || (k) == QP_KW_FROM || (k) == QP_KW_ON || \
    (k) == QP_KW_SELECT)                                                                   \
       ? KWF_ORDER_END                                                                     \
       : 0)
#define KWF_ROW_(id, text, op)                                                             \
  [QP_KW_##id] = (uint8_t)(((op) ? KWF_OP : 0) | KWF_SPECIAL_(QP_KW_##id) |                \
                           KWF_ORDER_END_(QP_KW_##id)),
static const uint8_t kw_flags[256] = {QP_KW_LIST(KWF_ROW_)};
#undef KWF_ROW_
#undef KWF_ORDER_END_
#undef KWF_SPECIAL_

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
  if (!kw_build(n)) {
    qp__free(&h, n);
    return qp__errbuf_set(errbuf, errlen, QP_ERROR, "no perfect hash for the keywords");
  }
#ifdef QP_BLK_AVX512
  n->avx512 = __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("bmi") &&
              __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("popcnt");
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


/* ---- the normalizer ---------------------------------------------------- */

/* Skips what comes before a statement's first token: white space,
 * comments, byte order marks and (with `semis`) ';'. *bom tells whether a
 * byte order mark was there; without `semis` it stops at the first one. */
static inline size_t skip_lead(qp_dialect d, const char *s, size_t len, size_t pos, bool semis,
                               bool *bom) {
  *bom = false;
  while (pos < len) {
    const unsigned char c = (unsigned char)s[pos];
    if (qp__sql_cclass[c] == QP_C_SPACE || (semis && c == ';')) {
      pos++;
    } else if (c == '-' && pos + 1 < len && s[pos + 1] == '-') {
      const char *nl = memchr(s + pos, '\n', len - pos);
      pos = nl ? (size_t)(nl - s) + 1 : len;
    } else if (c == '/' && pos + 1 < len && s[pos + 1] == '*') {
      pos = scan_block_comment(d, s, len, pos);
    } else if (c == 0xEF && len - pos >= 3 && s[pos + 1] == '\xBB' && s[pos + 2] == '\xBF') {
      *bom = true;
      if (!semis) return pos;
      pos += 3;
    } else {
      break;
    }
  }
  return pos;
}

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

/* The name token of SAVEPOINT name, RELEASE [SAVEPOINT] name,
 * ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name and
 * DEALLOCATE [PREPARE] name, where `kw` starts the statement and `pos` is
 * just after it: true with *from (where the main loop stands when it is the
 * next token: the end of the token before it) and *to (its end). Names are
 * folded to '?' as PostgreSQL 18's pg_stat_statements does, so generated
 * savepoint names (sa_savepoint_17, s1403_x1) make one entry. DEALLOCATE ALL
 * keeps its ALL. */
static QP_NOINLINE bool stmt_name(const qp_normalizer *nz, qp_kw kw, const char *s, size_t len,
                                  size_t pos, size_t *from, size_t *to) {
  const qp_dialect d = nz->dialect;
  qp_tok u;
  size_t q = lex_sig(d, s, len, pos, &u);
  qp_kw ukw = u.type == QP_T_WORD ? kw_lookup(nz, s + u.start, u.end - u.start) : QP_KW_NONE;
  if (kw == QP_KW_ROLLBACK) {
    if (u.type == QP_T_WORD && (ukw == QP_KW_TRANSACTION ||
                                (u.end - u.start == 4 && strncasecmp(s + u.start, "work", 4) == 0))) {
      pos = q;
      q = lex_sig(d, s, len, pos, &u);
      ukw = u.type == QP_T_WORD ? kw_lookup(nz, s + u.start, u.end - u.start) : QP_KW_NONE;
    }
    if (ukw != QP_KW_TO) return false;
    kw = QP_KW_RELEASE; /* then as RELEASE: [SAVEPOINT] name */
    pos = q;
    q = lex_sig(d, s, len, pos, &u);
    ukw = u.type == QP_T_WORD ? kw_lookup(nz, s + u.start, u.end - u.start) : QP_KW_NONE;
  }
  if ((kw == QP_KW_RELEASE && ukw == QP_KW_SAVEPOINT) ||
      (kw == QP_KW_DEALLOCATE && ukw == QP_KW_PREPARE)) {
    qp_tok v;
    size_t r = lex_sig(d, s, len, q, &v);
    if (v.type == QP_T_WORD || v.type == QP_T_QIDENT || v.type == QP_T_PARAM) {
      pos = q;
      q = r;
      u = v;
      ukw = u.type == QP_T_WORD ? kw_lookup(nz, s + u.start, u.end - u.start) : QP_KW_NONE;
    }
  }
  if (u.type != QP_T_WORD && u.type != QP_T_QIDENT) return false;
  if (kw == QP_KW_DEALLOCATE && ukw == QP_KW_ALL) return false;
  *from = pos;
  *to = q;
  return true;
}

static bool all_digits(const char *p, size_t k) {
  for (size_t i = 0; i < k; i++)
    if (p[i] < '0' || p[i] > '9') return false;
  return k > 0;
}

/* Where a statement of a script ends, for qp_normalize_next: filled by the
 * split instance of normalize_body. */
typedef struct split_res {
  size_t from;     /* in: where the statement's text may start; out: its first token */
  size_t stop;     /* out: the ';' that ends it, or len */
  size_t next;     /* out: where the next statement's search starts */
  bool code;       /* out: it has code (not only comments, ';' and white space) */
  bool fallback;   /* out: it starts with CREATE or a byte order mark: the splitter's rules apply */
} split_res;

/* Where qp__normalize_spans collects the literals' spans (memo.h). */
typedef struct lit_out {
  qp_lit_span *v;
  size_t max, n;
} lit_out;

/*
 * The normalizer's one pass. With `split` (a constant: two instances), it
 * also finds where the statement that starts at `pos` ends by the rules of
 * qp_sql_split_next (a ';' outside parentheses in PostgreSQL, anywhere in
 * SQLite), in the same pass over the tokens, and stops there; a statement
 * that starts with CREATE (which may hold BEGIN ... END bodies with ';'
 * inside) is left to the splitter (sr->fallback). Everything else the split
 * instance writes is what the plain one writes for that statement's text.
 */
static inline __attribute__((always_inline)) void normalize_body(
    const qp_normalizer *nz, const char *s, size_t len, size_t pos, const bool split, char *out,
    size_t cap, size_t *out_len, uint64_t *fingerprint, split_res *sr, lit_out *lo) {
  const qp_dialect d = nz->dialect;
  emitter e;
  e.out = out;
  e.lim = cap - 1;
  e.n = 0;
  e.seed = nz->seed;
  e.overflow = false;
  e.spill_n = 0;
  nstate ns = {&e, OC_START, 0, false, QP_KW_NONE, QP_KW_NONE};

  const bool pg = d == QP_DIALECT_POSTGRES;
  /* UTF-8 byte order marks before the statement's first token are not part
   * of it (so the output never starts with one, and normalized text is a
   * fixed point). In a script, the splitter skips one at the script's start;
   * a statement with one before its first token is left to the splitter
   * (which reads the mark as the start of a word) and to qp_normalize on the
   * statement's text. */
  if (!split) {
    bool bom;
    pos = skip_lead(d, s, len, pos, true, &bom);
  }
  bool attempt_start = split; /* before the first token of a statement */
  bool hidden_code = false;   /* code that wrote nothing (a rule's empty result) */
  size_t sdepth = 0;          /* the splitter's parentheses (PostgreSQL) */
  size_t depth = 0;
  size_t skip_from = SIZE_MAX, skip_to = 0;
  bool skip_fold = false; /* the skipped token is a name that becomes '?' */
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
      if (QP_UNLIKELY(skip_fold)) {
        skip_fold = false;
        put(&ns, "?", 1, false, OC_VALUE, QP_KW_NONE);
      }
    }
    /* Words are about half of the tokens: read them here, without the
     * lexer's switch (one indirect jump less per word). A letter followed by
     * a quote or '&' may start a string (E'', U&''): the lexer decides. */
    if (split && QP_UNLIKELY(attempt_start)) {
      attempt_start = false;
      bool bom;
      pos = skip_lead(d, s, len, pos, false, &bom);
      if (bom) {
        /* to the splitter the mark is a word, with what follows it */
        sr->fallback = true;
        return;
      }
    }
    while (pos < len && qp__sql_cclass[(unsigned char)s[pos]] == QP_C_SPACE) pos++;
    if (pos < len && qp__sql_cclass[(unsigned char)s[pos]] == QP_C_IDENT &&
        (pos + 1 >= len || (s[pos + 1] != '\'' && s[pos + 1] != '&'))) {
      t.type = QP_T_WORD;
      t.start = pos;
      t.end = pos = scan_ident(s, len, pos + 1);
    } else {
      pos = qp__sql_lex_impl(d, s, len, pos, &t);
    }
    if (t.type == QP_T_EOF) break;
    if (t.type == QP_T_COMMENT) continue;
    if (t.type == QP_T_SEMI) {
      if (split) {
        if (ns.prev == OC_START && !hidden_code) {
          /* an empty statement: the next one starts after it */
          sr->from = pos;
          attempt_start = true;
          continue;
        }
        if (!pg || sdepth == 0) {
          sr->stop = t.start;
          break;
        }
      }
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
        kw = lower_word(nz, e.out + e.n + sp, p, k);
      } else {
        kw = kw_lookup(nz, p, k);
      }
#else
      kw = kw_lookup(nz, p, k);
#endif
      const unsigned kf = kw_flags[kw];
      if (QP_UNLIKELY(kf & KWF_SPECIAL)) {
        if (kw == QP_KW_TRUE || kw == QP_KW_FALSE) {
          put(&ns, "?", 1, false, OC_VALUE, QP_KW_NONE);
          break;
        }
        if (kw == QP_KW_NULL && null_is_literal(&ns) && !on_null_input(&ns, d, s, len, pos)) {
          put(&ns, "?", 1, false, OC_VALUE, QP_KW_NONE);
          break;
        }
        /* BY and VALUES do not end an ORDER BY: the test below cannot undo these */
        if (kw == QP_KW_BY && (ns.kw1 == QP_KW_ORDER || ns.kw1 == QP_KW_GROUP))
          order_depth = depth + 1;
        if (kw == QP_KW_VALUES) {
          values_stage = 1;
          values_depth = depth;
        }
        if (split && kw == QP_KW_CREATE && ns.prev == OC_START && !hidden_code) {
          sr->fallback = true;
          return;
        }
        if ((kw == QP_KW_SAVEPOINT || kw == QP_KW_RELEASE || kw == QP_KW_ROLLBACK ||
             kw == QP_KW_DEALLOCATE) &&
            (ns.prev == OC_START || (ns.prev == OC_COMMA && ns.last == ';')) &&
            stmt_name(nz, kw, s, len, pos, &skip_from, &skip_to))
          skip_fold = true;
      }
      if (order_depth == depth + 1 && (kf & KWF_ORDER_END)) order_depth = 0;
      out_cat cat = (kf & KWF_OP) ? OC_KW : OC_FUNC;
      if (nz->rules != NULL && kw == QP_KW_NONE && k < QP_RULE_WORD_MAX) {
        char low[QP_RULE_WORD_MAX], buf[QP_RULE_WORD_MAX];
        for (size_t i = 0; i < k; i++) low[i] = (char)qp__sql_lower[(unsigned char)p[i]];
        size_t m = qp__rules_apply(nz->rules, low, k, buf, sizeof buf);
        if (m > 0) put(&ns, buf, m, false, cat, kw);
        else hidden_code = true;
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
      if (lo != NULL) {
        if (lo->n < lo->max) lo->v[lo->n] = (qp_lit_span){t.start, t.end};
        lo->n++;
      }
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
        qp_list_scan ls;
        first_row_literal = qp__sql_literal_list(nz, s, len, pos, QP_T_RPAREN, true, false, &ls);
        values_stage = 2;
      } else if (ns.kw1 == QP_KW_IN) {
        qp_list_scan ls;
        if (qp__sql_literal_list(nz, s, len, pos, QP_T_RPAREN, false, false, &ls) && ls.nelems > 1) {
          skip_from = ls.first_end;
          skip_to = ls.close_start;
        }
      }
      put(&ns, "(", 1, call, OC_OPEN, QP_KW_NONE);
      depth++;
      if (split) sdepth++;
      break;
    }
    case QP_T_RPAREN:
      put(&ns, ")", 1, true, OC_VALUE, QP_KW_NONE);
      if (depth > 0) depth--;
      if (split && sdepth > 0) sdepth--;
      if (order_depth > depth + 1) order_depth = 0;
      if (values_stage == 2 && depth == values_depth) {
        values_stage = 0;
        if (first_row_literal) {
          /* Skip every following row of literals: , ( ... ) , ( ... ) */
          qp_tok u;
          size_t q = list_tok(d, s, len, pos, &u);
          if (u.type == QP_T_COMMA) {
            q = list_tok(d, s, len, q, &u);
            qp_list_scan ls;
            if (u.type == QP_T_LPAREN && qp__sql_literal_list(nz, s, len, q, QP_T_RPAREN, true, true, &ls)) {
              skip_from = pos;
              skip_to = ls.close_end;
            }
          }
        }
      }
      break;
    case QP_T_LBRACK:
      if (ns.kw1 == QP_KW_ARRAY) {
        qp_list_scan ls;
        if (qp__sql_literal_list(nz, s, len, pos, QP_T_RBRACK, false, false, &ls) && ls.nelems > 1) {
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
  if (split) {
    if (t.type == QP_T_EOF) sr->stop = len;
    sr->next = t.type == QP_T_EOF ? SIZE_MAX : pos;
    sr->code = ns.prev != OC_START || hidden_code;
  }
  uint64_t h = emit_finish(&e);
  if (out_len) *out_len = e.n;
  if (fingerprint) *fingerprint = h;
}

qp_status qp_normalize(const qp_normalizer *nz, const char *sql, size_t len, char *out, size_t cap,
                       size_t *out_len, uint64_t *fingerprint) {
  if (nz == NULL || (sql == NULL && len > 0) || out == NULL || cap == 0) {
    if (out != NULL && cap > 0) out[0] = '\0';
    if (out_len) *out_len = 0;
    return QP_INVALID;
  }
  normalize_body(nz, sql != NULL ? sql : "", len, 0, false, out, cap, out_len, fingerprint, NULL,
                 NULL);
  return QP_OK;
}

qp_status qp__normalize_spans(const qp_normalizer *nz, const char *sql, size_t len, char *out,
                              size_t cap, size_t *out_len, uint64_t *fingerprint,
                              qp_lit_span *spans, size_t max, size_t *nspans) {
  lit_out lo = {spans, spans != NULL ? max : 0, 0};
  qp_status st = QP_INVALID;
  if (nz != NULL && (sql != NULL || len == 0) && out != NULL && cap > 0) {
    normalize_body(nz, sql != NULL ? sql : "", len, 0, false, out, cap, out_len, fingerprint,
                   NULL, &lo);
    st = QP_OK;
  } else {
    if (out != NULL && cap > 0) out[0] = '\0';
    if (out_len) *out_len = 0;
  }
  if (nspans) *nspans = lo.n;
  return st;
}

bool qp_normalize_next(const qp_normalizer *nz, const char *sql, size_t len, size_t *pos,
                       size_t *start, size_t *stmt_len, char *out, size_t cap, size_t *out_len,
                       uint64_t *fingerprint) {
  if (out != NULL && cap > 0) out[0] = '\0';
  if (out_len) *out_len = 0;
  if (nz == NULL || (sql == NULL && len > 0) || pos == NULL || out == NULL || cap == 0)
    return false;
  const char *s = sql != NULL ? sql : "";
  size_t p = *pos;
  if (p >= len) {
    *pos = len;
    return false;
  }
  /* The splitter skips a byte order mark at the start of the script. */
  if (p == 0 && len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) p = 3;
  split_res sr = {p, 0, 0, false, false};
  size_t olen = 0;
  uint64_t fp = 0;
  normalize_body(nz, s, len, p, true, out, cap, &olen, &fp, &sr, NULL);
  if (sr.next == SIZE_MAX && !sr.fallback && qp__sql_cclass[(unsigned char)s[len - 1]] == QP_C_SPACE) {
    /* The script's last statement: the splitter trims the white space after
     * it (even inside an unterminated quoted name), so its text ends there.
     * Only this statement can reach the end, so only it is read again. */
    size_t end = len;
    while (end > p && qp__sql_cclass[(unsigned char)s[end - 1]] == QP_C_SPACE) end--;
    sr = (split_res){p, 0, 0, false, false};
    normalize_body(nz, s, end, p, true, out, cap, &olen, &fp, &sr, NULL);
  }
  size_t first, last;
  if (QP_UNLIKELY(sr.fallback)) {
    /* CREATE (TRIGGER and BEGIN ATOMIC bodies) or a byte order mark: the
     * splitter's own rules, then
     * the statement's text as qp_normalize reads it */
    size_t q = sr.from, slen = 0;
    if (!qp_sql_split_next(nz->dialect, s, len, &q, &first, &slen)) {
      *pos = len;
      return false;
    }
    normalize_body(nz, s, first + slen, first, false, out, cap, &olen, &fp, NULL, NULL);
    *pos = q;
    *start = first;
    *stmt_len = slen;
    if (out_len) *out_len = olen;
    if (fingerprint) *fingerprint = fp;
    return true;
  }
  if (!sr.code) {
    out[0] = '\0';
    *pos = len;
    return false;
  }
  first = sr.from;
  while (first < sr.stop && qp__sql_cclass[(unsigned char)s[first]] == QP_C_SPACE) first++;
  last = sr.stop;
  while (last > first && qp__sql_cclass[(unsigned char)s[last - 1]] == QP_C_SPACE) last--;
  *pos = sr.next == SIZE_MAX ? len : sr.next;
  if (start) *start = first;
  if (stmt_len) *stmt_len = last - first;
  if (out_len) *out_len = olen;
  if (fingerprint) *fingerprint = fp;
  return true;
}
