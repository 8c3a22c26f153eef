/*
 * The normalizer: golden files (tests/data/normalize/ (one file per dialect, plus rules)), the API,
 * user rules and out-of-memory. Properties and bad input: test_sql_props.c.
 *
 * Golden file format, one case after another:
 *   # comment                 ignored
 *   @dialect postgres|sqlite  dialect of the following cases
 *   @rule PATTERN=REPLACEMENT adds a user rule for the following cases
 *   @rules-clear              drops the rules
 *   <<< first input line      the input; following lines that start with none
 *   more input lines          of <<< >>> @ # continue it (joined with \n)
 *   >>> expected              the normalized text
 * Every expected text without rules must also be a fixed point (normalizing
 * it again changes neither the text nor the fingerprint).
 * Set QP_GOLDEN_PRINT=1 to print every case with its actual output.
 */
#include "testutil.h"
#include "failalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "internal.h"
#include "sql/sql_int.h"

#define CAP QP_NORMALIZED_MAX


/* ---- golden files ------------------------------------------------------ */

typedef struct golden_ctx {
  qp_dialect dialect;
  char *rules[8];
  size_t nrules;
  qp_normalizer *n;
  int cases, failures;
  bool print;
} golden_ctx;

static void golden_reset_normalizer(golden_ctx *g) {
  qp_normalizer_free(g->n);
  g->n = NULL;
  char err[256];
  qp_status st = qp_normalizer_new(&g->n, g->dialect, (const char *const *)g->rules, g->nrules,
                                   NULL, err, sizeof err);
  if (st != QP_OK) fail_msg("golden rules do not compile: %s", err);
}

static void golden_case(golden_ctx *g, const char *file, int line, const char *input,
                        const char *expected) {
  g->cases++;
  uint64_t fp1, fp2;
  char got[CAP];
  strcpy(got, qpt_normalize(g->n, input, strlen(input), &fp1));
  if (g->print) printf("<<< %s\n>>> %s\n", input, got);
  if (strcmp(got, expected) != 0) {
    printf("%s:%d: [%s]\n  input:    %s\n  expected: %s\n  got:      %s\n", file, line,
           qp_dialect_name(g->dialect), input, expected, got);
    g->failures++;
    return;
  }
  if (g->nrules == 0) {
    const char *again = qpt_normalize(g->n, got, strlen(got), &fp2);
    if (strcmp(again, got) != 0 || fp1 != fp2) {
      printf("%s:%d: not idempotent: '%s' -> '%s'\n", file, line, got, again);
      g->failures++;
    }
  }
}

static void run_golden(const char *name, int *ncases, int *nfail) {
  char path[512];
  snprintf(path, sizeof path, "%s/normalize/%s", QP_TEST_DATA_DIR, name);
  size_t len;
  char *text = qpt_read_file(path, &len);
  if (text == NULL) fail_msg("cannot read %s", path);
  golden_ctx g;
  memset(&g, 0, sizeof g);
  g.dialect = strstr(name, "sqlite") ? QP_DIALECT_SQLITE : QP_DIALECT_POSTGRES;
  g.print = getenv("QP_GOLDEN_PRINT") != NULL;
  golden_reset_normalizer(&g);

  char *input = calloc(1, len + 1);
  assert_non_null(input);
  bool in_input = false;
  int input_line = 0, lineno = 0;
  char *p = text;
  while (*p) {
    char *ln = p;
    char *nl = strchr(p, '\n');
    if (nl) {
      *nl = '\0';
      p = nl + 1;
    } else {
      p += strlen(p);
    }
    lineno++;
    if (strncmp(ln, "<<<", 3) == 0) {
      in_input = true;
      input_line = lineno;
      strcpy(input, ln[3] == ' ' ? ln + 4 : ln + 3);
    } else if (strncmp(ln, ">>>", 3) == 0) {
      if (!in_input) fail_msg("%s:%d: >>> without <<<", name, lineno);
      golden_case(&g, name, input_line, input, ln[3] == ' ' ? ln + 4 : ln + 3);
      in_input = false;
    } else if (in_input) {
      strcat(input, "\n");
      strcat(input, ln);
    } else if (ln[0] == '@') {
      if (strncmp(ln, "@dialect ", 9) == 0) {
        assert_true(qp_dialect_parse(ln + 9, &g.dialect));
      } else if (strncmp(ln, "@rule ", 6) == 0) {
        assert_true(g.nrules < 8);
        g.rules[g.nrules++] = strdup(ln + 6);
      } else if (strcmp(ln, "@rules-clear") == 0) {
        for (size_t i = 0; i < g.nrules; i++) free(g.rules[i]);
        g.nrules = 0;
      } else {
        fail_msg("%s:%d: unknown directive %s", name, lineno, ln);
      }
      golden_reset_normalizer(&g);
    } else if (ln[0] != '#' && ln[0] != '\0') {
      fail_msg("%s:%d: stray line: %s", name, lineno, ln);
    }
  }
  if (in_input) fail_msg("%s: last case has no >>> line", name);
  for (size_t i = 0; i < g.nrules; i++) free(g.rules[i]);
  qp_normalizer_free(g.n);
  free(input);
  free(text);
  *ncases += g.cases;
  *nfail += g.failures;
}

static void test_golden(void **state) {
  (void)state;
  int cases = 0, failures = 0;
  run_golden("postgres.txt", &cases, &failures);
  run_golden("sqlite.txt", &cases, &failures);
  run_golden("rules.txt", &cases, &failures);
  printf("golden: %d cases, %d failures\n", cases, failures);
  assert_true(cases >= 150);
  assert_int_equal(failures, 0);
}

/* ---- the table of docs/normalizer.md ------------------------------------ */

typedef struct doc_span {
  char text[512];
  bool sqlite;
} doc_span;

/* Reads the code spans of one table cell: `x` or ``x`` (one space inside
 * double backquotes trimmed, "\|" is '|'); "sqlite" outside a span makes
 * the following spans SQLite. Returns the count; *p moves past the cell. */
static size_t doc_cell(const char **p, doc_span *sp, size_t max) {
  size_t n = 0;
  bool sqlite = false;
  const char *q = *p;
  while (*q && *q != '\n') {
    if (*q == '|' && q[-1] != '\\') {
      q++;
      break;
    }
    if (strncmp(q, "sqlite", 6) == 0) sqlite = true;
    if (*q != '`') {
      q++;
      continue;
    }
    size_t ticks = 0;
    while (q[ticks] == '`') ticks++;
    const char *body = q + ticks;
    const char *end = body;
    while (*end && *end != '\n' && !(strncmp(end, ticks == 1 ? "`" : "``", ticks) == 0)) end++;
    if (*end != '`') fail_msg("docs table: unclosed code span");
    size_t k = (size_t)(end - body);
    if (ticks == 2 && k >= 2 && body[0] == ' ' && body[k - 1] == ' ') body++, k -= 2;
    assert_true(n < max);
    size_t o = 0;
    for (size_t i = 0; i < k && o + 1 < sizeof sp[n].text; i++) {
      if (body[i] == '\\' && i + 1 < k && body[i + 1] == '|') continue;
      sp[n].text[o++] = body[i];
    }
    sp[n].text[o] = '\0';
    sp[n].sqlite = sqlite;
    n++;
    q = end + ticks;
  }
  *p = q;
  return n;
}

static void test_docs_table(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/docs/normalizer.md", QP_TEST_SOURCE_DIR);
  size_t len;
  char *text = qpt_read_file(path, &len);
  if (text == NULL) fail_msg("cannot read %s", path);
  const char *p = strstr(text, "## The canonical form");
  assert_non_null(p);
  p = strstr(p, "\n|");
  assert_non_null(p);
  qp_normalizer *nz[2] = {qpt_normalizer(QP_DIALECT_POSTGRES), qpt_normalizer(QP_DIALECT_SQLITE)};
  int rows = 0, checked = 0, failures = 0;
  while (p != NULL && p[0] == '\n' && p[1] == '|') {
    p += 2;
    rows++;
    doc_span in[12], out[12];
    size_t nin = doc_cell(&p, in, 12), nout = doc_cell(&p, out, 12);
    p = strchr(p, '\n');
    if (rows <= 2) continue; /* header and separator */
    if (nin == 0 || nout == 0 || (nout != 1 && nout != nin)) {
      printf("docs/normalizer.md table row %d: %zu inputs, %zu outputs\n", rows, nin, nout);
      failures++;
      continue;
    }
    for (size_t i = 0; i < nin; i++) {
      const char *want = out[nout == 1 ? 0 : i].text;
      const char *got = qpt_normalize(nz[in[i].sqlite], in[i].text, strlen(in[i].text), NULL);
      checked++;
      if (strcmp(got, want) != 0) {
        printf("docs/normalizer.md table row %d [%s]:\n  input:    %s\n  documented: %s\n  got:      %s\n",
               rows, in[i].sqlite ? "sqlite" : "postgres", in[i].text, want, got);
        failures++;
      }
    }
  }
  printf("docs table: %d rows, %d inputs checked, %d failures\n", rows - 2, checked, failures);
  assert_true(checked >= 30);
  assert_int_equal(failures, 0);
  qp_normalizer_free(nz[0]);
  qp_normalizer_free(nz[1]);
  free(text);
}

/* A UTF-8 byte order mark before a statement (or a script) is not part of it. */
static void test_bom(void **state) {
  (void)state;
  for (int d = 0; d < 2; d++) {
    qp_normalizer *n = qpt_normalizer((qp_dialect)d);
    uint64_t a, b;
    char plain[64];
    strcpy(plain, qpt_normalize(n, "SELECT a FROM t WHERE id = 1", 28, &a));
    const char *bom = qpt_normalize(n, "\xEF\xBB\xBFSELECT a FROM t WHERE id = 1", 31, &b);
    assert_string_equal(bom, plain);
    assert_true(a == b);
    /* the first statement of a script, split then normalized */
    const char script[] = "\xEF\xBB\xBF-- c\nSELECT a FROM t WHERE id = 2;\nSELECT 2";
    size_t pos = 0, start, slen;
    assert_true(qp_sql_split_next((qp_dialect)d, script, sizeof script - 1, &pos, &start, &slen));
    assert_int_equal(start, 3);
    qpt_normalize(n, script + start, slen, &b);
    assert_true(a == b);
    /* after white space, comments, ';' and other marks too (found by
     * fuzz_normalize: the output began with the mark, normalized again it
     * did not) */
    static const char lead[] = "\0\0 \xEF\xBB\xBF/* c */;\xEF\xBB\xBF -- c\n\xEF\xBB\xBF"
                               "SELECT a FROM t WHERE id = 3";
    qpt_normalize(n, lead, sizeof lead - 1, &b);
    assert_string_equal(qpt_normalize(n, lead, sizeof lead - 1, NULL), plain);
    assert_true(a == b);
    /* elsewhere it is a byte of a name, as before */
    assert_string_equal(qpt_normalize(n, "SELECT \xEF\xBB\xBFx", 11, NULL), "select \xEF\xBB\xBFx");
    qp_normalizer_free(n);
  }
}

/* ---- API basics -------------------------------------------------------- */

static void test_dialects_and_hex(void **state) {
  (void)state;
  qp_dialect d;
  assert_true(qp_dialect_parse("postgres", &d) && d == QP_DIALECT_POSTGRES);
  assert_true(qp_dialect_parse("PostgreSQL", &d) && d == QP_DIALECT_POSTGRES);
  assert_true(qp_dialect_parse("pg", &d) && d == QP_DIALECT_POSTGRES);
  assert_true(qp_dialect_parse("sqlite3", &d) && d == QP_DIALECT_SQLITE);
  assert_true(qp_dialect_parse("sqlite", &d) && d == QP_DIALECT_SQLITE);
  assert_false(qp_dialect_parse("mysql", &d));
  assert_false(qp_dialect_parse("", &d));
  assert_false(qp_dialect_parse(NULL, &d));
  assert_string_equal(qp_dialect_name(QP_DIALECT_SQLITE), "sqlite");
  assert_string_equal(qp_dialect_name(QP_DIALECT_POSTGRES), "postgres");

  char hex[QP_FINGERPRINT_HEX_SIZE];
  qp_fingerprint_hex(0x0123456789abcdefULL, hex);
  assert_string_equal(hex, "0123456789abcdef");
  qp_fingerprint_hex(0, hex);
  assert_string_equal(hex, "0000000000000000");
  qp_fingerprint_hex(UINT64_MAX, hex);
  assert_string_equal(hex, "ffffffffffffffff");
  uint64_t fp = 0;
  assert_true(qp_fingerprint_parse("0123456789ABCDEF", &fp));
  assert_true(fp == 0x0123456789abcdefULL);
  assert_true(qp_fingerprint_parse("ffffffffffffffff", &fp));
  assert_true(fp == UINT64_MAX);
  assert_false(qp_fingerprint_parse("0123456789abcde", &fp));
  assert_false(qp_fingerprint_parse("0123456789abcdefa", &fp));
  assert_false(qp_fingerprint_parse("0123456789abcdeg", &fp));
  assert_false(qp_fingerprint_parse(NULL, &fp));
}

static void test_fingerprint_definition(void **state) {
  (void)state;
  qp_normalizer *pg = qpt_normalizer(QP_DIALECT_POSTGRES), *lite = qpt_normalizer(QP_DIALECT_SQLITE);
  assert_int_equal(qp_normalizer_dialect(pg), QP_DIALECT_POSTGRES);
  assert_int_equal(qp_normalizer_dialect(lite), QP_DIALECT_SQLITE);
  uint64_t a, b;
  char o1[64], o2[64];
  size_t l1;
  assert_int_equal(qp_normalize(pg, "SELECT 1", 8, o1, sizeof o1, &l1, &a), QP_OK);
  assert_int_equal(qp_normalize(lite, "SELECT 1", 8, o2, sizeof o2, NULL, &b), QP_OK);
  assert_string_equal(o1, "select ?");
  assert_string_equal(o2, "select ?");
  assert_int_equal(l1, 8);
  /* The documented definition, computed independently: XXH3-64 of the
   * normalized text, seeded with XXH3-64 of "qprof-normalizer/3/<dialect>". */
  uint64_t seed_pg = XXH3_64bits("qprof-normalizer/3/postgres", 27);
  uint64_t seed_lite = XXH3_64bits("qprof-normalizer/3/sqlite", 25);
  assert_true(a == XXH3_64bits_withSeed("select ?", 8, seed_pg));
  assert_true(b == XXH3_64bits_withSeed("select ?", 8, seed_lite));
  assert_true(a != b); /* one text, two dialects, two fingerprints */
  qp_normalizer_free(pg);
  qp_normalizer_free(lite);
}

static void test_arguments(void **state) {
  (void)state;
  qp_normalizer *pg = qpt_normalizer(QP_DIALECT_POSTGRES);
  char out[16];
  size_t olen = 99;
  uint64_t fp;
  assert_int_equal(qp_normalize(NULL, "x", 1, out, sizeof out, &olen, NULL), QP_INVALID);
  assert_int_equal(olen, 0);
  assert_string_equal(out, "");
  assert_int_equal(qp_normalize(pg, NULL, 1, out, sizeof out, NULL, NULL), QP_INVALID);
  assert_int_equal(qp_normalize(pg, "x", 1, NULL, 10, NULL, NULL), QP_INVALID);
  assert_int_equal(qp_normalize(pg, "x", 1, out, 0, NULL, NULL), QP_INVALID);
  /* NULL with length 0 is the empty statement. */
  assert_int_equal(qp_normalize(pg, NULL, 0, out, sizeof out, &olen, &fp), QP_OK);
  assert_string_equal(out, "");
  assert_int_equal(olen, 0);
  /* Input that is not NUL-terminated: only len bytes are read. */
  const char unterminated[] = {'s', 'e', 'l', 'e', 'c', 't', ' ', '1', '2', '3'};
  assert_int_equal(qp_normalize(pg, unterminated, 8, out, sizeof out, &olen, NULL), QP_OK);
  assert_string_equal(out, "select ?");
  /* out_len and fingerprint may be NULL. */
  assert_int_equal(qp_normalize(pg, "select 1", 8, out, sizeof out, NULL, NULL), QP_OK);

  qp_normalizer *bad = (qp_normalizer *)0x1;
  char err[256];
  assert_int_equal(qp_normalizer_new(&bad, (qp_dialect)7, NULL, 0, NULL, err, sizeof err), QP_INVALID);
  assert_null(bad);
  assert_non_null(strstr(err, "dialect"));
  assert_int_equal(qp_normalizer_new(NULL, QP_DIALECT_POSTGRES, NULL, 0, NULL, NULL, 0), QP_INVALID);
  qp_normalizer_free(NULL);
  qp_normalizer_free(pg);
}

/* ---- user rules -------------------------------------------------------- */

static void test_rule_errors(void **state) {
  (void)state;
  qp_normalizer *n = (qp_normalizer *)0x1;
  char err[512];
  const char *bad[] = {"ok_[0-9]+=ok", "tmp_[0-9a-f=tmp_?"};
  assert_int_equal(qp_normalizer_new(&n, QP_DIALECT_POSTGRES, bad, 2, NULL, err, sizeof err),
                   QP_PATTERN);
  assert_null(n);
  /* names the rule (its number and text) and the offset */
  assert_non_null(strstr(err, "rule 2"));
  assert_non_null(strstr(err, "tmp_[0-9a-f=tmp_?"));
  assert_non_null(strstr(err, "at offset 11"));

  const char *noeq[] = {"no_equals_sign"};
  assert_int_equal(qp_normalizer_new(&n, QP_DIALECT_POSTGRES, noeq, 1, NULL, err, sizeof err),
                   QP_INVALID);
  assert_non_null(strstr(err, "no_equals_sign"));
  const char *empty[] = {"=x"};
  assert_int_equal(qp_normalizer_new(&n, QP_DIALECT_POSTGRES, empty, 1, NULL, err, sizeof err),
                   QP_INVALID);
  assert_int_equal(qp_normalizer_new(&n, QP_DIALECT_POSTGRES, NULL, 1, NULL, err, sizeof err),
                   QP_INVALID);
  /* The error buffer may be NULL. */
  assert_int_equal(qp_normalizer_new(&n, QP_DIALECT_POSTGRES, bad, 2, NULL, NULL, 0), QP_PATTERN);

  /* An escaped '=' belongs to the pattern: split at the last unescaped one. */
  const char *esc[] = {"a\\=b=c"};
  assert_int_equal(qp_normalizer_new(&n, QP_DIALECT_POSTGRES, esc, 1, NULL, err, sizeof err), QP_OK);
  qp_normalizer_free(n);
}

static void test_rules_apply(void **state) {
  (void)state;
  const char *rules[] = {"tmp_[0-9a-f]{6,}=tmp_?", "^p_(\\d+)$=p_n", "^x(\\d)$=y$1"};
  qp_normalizer *n;
  char err[256];
  assert_int_equal(qp_normalizer_new(&n, QP_DIALECT_POSTGRES, rules, 3, NULL, err, sizeof err), QP_OK);
  uint64_t a, b, c;
  const char *q1 = "SELECT * FROM tmp_8f3a91c2 WHERE x = 1";
  assert_string_equal(qpt_normalize(n, q1, strlen(q1), &a), "select * from tmp_? where x = ?");
  const char *q2 = "select * from TMP_00ffee11aa where x = 2";
  qpt_normalize(n, q2, strlen(q2), &b);
  assert_true(a == b);
  /* quoted identifiers are verbatim: no rule applies */
  const char *q3 = "select * from \"tmp_8f3a91c2\"";
  assert_string_equal(qpt_normalize(n, q3, strlen(q3), &c), q3);
  assert_true(c != a);
  assert_string_equal(qpt_normalize(n, "select p_12 from p_3", 20, NULL), "select p_n from p_n");
  /* capture groups in the replacement */
  assert_string_equal(qpt_normalize(n, "select x7 from t", 16, NULL), "select y7 from t");
  /* rules never touch keywords or literals */
  assert_string_equal(qpt_normalize(n, "select 'tmp_abcdef12'", 21, NULL), "select ?");
  /* a word too long for the rules is kept as it is */
  char longq[1200] = "select ";
  for (int i = 0; i < 1000; i++) strcat(longq, "a");
  const char *o = qpt_normalize(n, longq, strlen(longq), NULL);
  assert_int_equal(strlen(o), strlen(longq));
  qp_normalizer_free(n);
}

/* ---- out of memory ----------------------------------------------------- */

static void test_oom(void **state) {
  (void)state;
  const char *rules[] = {"tmp_[0-9a-f]{6,}=tmp_?", "x(y)=$1"};
  bool succeeded = false;
  long k;
  for (k = 1; k < 400 && !succeeded; k++) {
    qpt_failalloc fa = {.fail_at = k};
    qp_hooks h = qpt_failalloc_hooks(&fa);
    qp_normalizer *n = (qp_normalizer *)0x1;
    char err[256] = "";
    qp_status st = qp_normalizer_new(&n, QP_DIALECT_POSTGRES, rules, 2, &h, err, sizeof err);
    if (st == QP_OK) {
      succeeded = true;
      char out[128];
      assert_int_equal(qp_normalize(n, "select * from tmp_abcdef1", 25, out, sizeof out, NULL, NULL), QP_OK);
      assert_string_equal(out, "select * from tmp_?");
      qp_normalizer_free(n);
    } else {
      assert_int_equal(st, QP_NOMEM);
      assert_null(n);
      assert_non_null(strstr(err, "memory"));
    }
    assert_int_equal(fa.live, 0); /* nothing leaked on any path */
  }
  assert_true(succeeded);
  assert_true(k > 5); /* the normalizer, the rules and their match data all allocate */

  /* Without rules: one allocation, and normalizing allocates nothing. */
  qpt_failalloc fa = {.fail_at = 0};
  qp_hooks h = qpt_failalloc_hooks(&fa);
  qp_normalizer *n;
  assert_int_equal(qp_normalizer_new(&n, QP_DIALECT_SQLITE, NULL, 0, &h, NULL, 0), QP_OK);
  assert_int_equal(fa.count, 1);
  char out[CAP];
  for (int i = 0; i < 100; i++)
    assert_int_equal(qp_normalize(n, "select a from t where b in (1,2,3)", 34, out, sizeof out, NULL, NULL), QP_OK);
  assert_int_equal(fa.count, 1);
  qp_normalizer_free(n);
  assert_int_equal(fa.live, 0);

  /* With rules, steady state allocates nothing either: the match data pool. */
  qpt_failalloc fb = {.fail_at = 0};
  h = qpt_failalloc_hooks(&fb);
  assert_int_equal(qp_normalizer_new(&n, QP_DIALECT_POSTGRES, rules, 2, &h, NULL, 0), QP_OK);
  long before = fb.count;
  for (int i = 0; i < 100; i++)
    assert_int_equal(qp_normalize(n, "select * from tmp_abcdef1 join xy", 33, out, sizeof out, NULL, NULL), QP_OK);
  assert_int_equal(fb.count, before);
  qp_normalizer_free(n);
  assert_int_equal(fb.live, 0);
}

/* ---- list blocks --------------------------------------------------------
 * Long lists of literals are skipped 64 bytes at a time with SIMD masks;
 * the classifiers must agree with their byte-by-byte twin, and the checks
 * built on them must take only what the scalar scan takes. */

static void test_list_block_classes(void **state) {
  (void)state;
  /* the scalar twin itself, on a known block */
  char blk[64];
  memset(blk, 'x', sizeof blk);
  memcpy(blk, "1,'a' $2)(-.eT\tF", 16);
  qp_sql_blk_classes m;
  assert_true(qp__sql_blk_classes(blk, 0, &m));
  assert_int_equal(m.digit, (1u << 0) | (1u << 7));
  assert_int_equal(m.comma, 1u << 1);
  assert_int_equal(m.quote, (1u << 2) | (1u << 4));
  assert_int_equal(m.space, (1u << 5) | (1u << 14));
  assert_int_equal(m.dollar, 1u << 6);
  assert_int_equal(m.rparen, 1u << 8);
  assert_int_equal(m.lparen, 1u << 9);
  assert_int_equal(m.sign, 1u << 10);
  assert_int_equal(m.dot, 1u << 11);
  assert_int_equal(m.exp, 1u << 12);
  assert_int_equal(m.t, 1u << 13);
  assert_int_equal(m.f, 1u << 15);
  /* every SIMD variant this machine has against the twin, on random blocks
   * drawn mostly from the bytes the classes look at */
  static const char alpha[] = "0123456789.,eE+-$'() \t\n\r\f\vtTrRuUfFaAlLsSxX\\\"/*;bBnN&";
  uint64_t seed = 0x5eed;
  int compared = 0;
  for (int i = 0; i < 20000; i++) {
    for (int j = 0; j < 64; j++) {
      seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
      unsigned r = (unsigned)(seed >> 33);
      blk[j] = (r & 3) == 0 ? (char)(r >> 8) : alpha[(r >> 8) % (sizeof alpha - 1)];
    }
    qp_sql_blk_classes ref, got;
    assert_true(qp__sql_blk_classes(blk, 0, &ref));
    for (int impl = 1; impl <= 2; impl++) {
      memset(&got, 0xA5, sizeof got);
      if (!qp__sql_blk_classes(blk, impl, &got)) continue;
      assert_memory_equal(&ref, &got, sizeof ref);
      compared++;
    }
  }
#ifdef __SSE2__
  assert_true(compared >= 20000);
#endif
  assert_false(qp__sql_blk_classes(blk, 3, &m));
}

/* A list long enough for the block path, every element `el`, with `odd`
 * in place of element `at` (NULL: none). */
static const char *long_list(const qp_normalizer *n, const char *pre, const char *el,
                             const char *odd, int at, const char *post) {
  static char sql[4096];
  size_t k = (size_t)snprintf(sql, sizeof sql, "%s", pre);
  for (int i = 0; i < 40; i++)
    k += (size_t)snprintf(sql + k, sizeof sql - k, "%s%s", i ? ", " : "",
                          odd != NULL && i == at ? odd : el);
  k += (size_t)snprintf(sql + k, sizeof sql - k, "%s", post);
  return qpt_normalize(n, sql, k, NULL);
}

static void test_list_blocks(void **state) {
  (void)state;
  /* elements the blocks take, and some they leave to the scalar scan */
  static const char *const good[] = {"7",     "-12",   "+3",     "3.25",  ".5",    "1.",
                                     "2e10",  "4E-3",  "5.e+2",  "'ab'",  "'it''s'", "''",
                                     "$3",    "TRUE",  "false",  "tRuE",  "'a,b)'", "0",
                                     "E'x'",  "NULL",  "1::int", "X'1F'", "- 4",   "$$d$$"};
  static const char *const bad[] = {"1.2.3", "1..2",  "1e",    "1e5e5",  "1e5.5", "$1.5",
                                    "$1e5",  "-",     "$",     "'a' 'b'", "'a'b", "truex",
                                    "fals",  "true5", "1 2",   "1-2",    "x",     "1_0x",
                                    "a.b",   "'a'||'b'", "(1) 1", "1$2", "$1$2", "'a'$1"};
  for (int d = 0; d < 2; d++) {
    qp_normalizer *n = qpt_normalizer(d ? QP_DIALECT_SQLITE : QP_DIALECT_POSTGRES);
    for (size_t g = 0; g < sizeof good / sizeof *good; g++) {
      if (d == 1 && (strcmp(good[g], "$$d$$") == 0 || strcmp(good[g], "E'x'") == 0 ||
                     strcmp(good[g], "1::int") == 0))
        continue; /* PostgreSQL only */
      /* collapsed: the same as a list of one */
      char one[256];
      snprintf(one, sizeof one, "SELECT * FROM t WHERE a IN (%s)", good[g]);
      char want[256];
      snprintf(want, sizeof want, "%s", qpt_normalize(n, one, strlen(one), NULL));
      assert_string_equal(long_list(n, "SELECT * FROM t WHERE a IN (", good[g], NULL, 0, ")"), want);
      if (d == 0) { /* in SQLite, [...] quotes a name */
        snprintf(one, sizeof one, "SELECT ARRAY[%s]", good[g]);
        snprintf(want, sizeof want, "%s", qpt_normalize(n, one, strlen(one), NULL));
        assert_string_equal(long_list(n, "SELECT ARRAY[", good[g], NULL, 0, "]"), want);
      }
      /* one odd element anywhere keeps the whole list: its 39 commas */
      for (size_t b = 0; b < sizeof bad / sizeof *bad; b++) {
        /* SQLite variables take every identifier byte after the '$' */
        if (d == 1 && (strcmp(bad[b], "$1e5") == 0 || strcmp(bad[b], "$1$2") == 0)) continue;
        for (int at = 0; at < 40; at += 13) {
          const char *out = long_list(n, "SELECT * FROM t WHERE a IN (", good[g], bad[b], at, ")");
          int commas = 0;
          for (const char *c = out; *c; c++) commas += *c == ',';
          if (commas < 39)
            fail_msg("dialect %d: list of %s with %s at %d collapsed: %s", d, good[g], bad[b], at,
                     out);
        }
      }
    }
    /* VALUES rows, row separators included; an odd row ends the collapse */
    char sql[4096];
    size_t k = (size_t)snprintf(sql, sizeof sql, "INSERT INTO t VALUES (1, 'a')");
    for (int i = 0; i < 30; i++)
      k += (size_t)snprintf(sql + k, sizeof sql - k, ", (%d.5, 'r%d''s'),(-%d,TRUE)", i, i, i);
    assert_string_equal(qpt_normalize(n, sql, k, NULL), "insert into t values (?, ?)");
    k += (size_t)snprintf(sql + k, sizeof sql - k, ", (1, x), (2, 3)");
    assert_string_equal(qpt_normalize(n, sql, k, NULL), "insert into t values (?, ?), (?, x), (?, ?)");
    qp_normalizer_free(n);
  }
}

/* String forms the blocks take since they learned prefixes, backslash
 * escapes and dollar quotes: E'' (backslashes), B'' N'' X'' U&'' and
 * $$...$$ / $tag$...$tag$, alone or mixed with numbers; and the look-alikes
 * they must leave to the scalar scan (a backslash before a quote in a plain
 * string, U&'' UESCAPE, a dollar quote followed by more than a comma). */
static void test_list_block_strings(void **state) {
  (void)state;
  qp_normalizer *pg = qpt_normalizer(QP_DIALECT_POSTGRES), *lite = qpt_normalizer(QP_DIALECT_SQLITE);
  static const char *const pg_good[] = {
      "E'line\\nbreak'", "E'quote\\'s'", "e'\\\\'",  "E'\\\\\\''", "E'a''b'", "B'1010'",
      "b''",             "N'x'",         "X'1F'",    "x'00'",      "U&'d\\0061t'", "u&'x'",
      "$$dollar 'quoted' text$$",        "$q$tagged; text$q$",     "$t$a,b)$$c$t$", "$$$$",
      "'a\\'",           "'\\\\'"};
  for (size_t g = 0; g < sizeof pg_good / sizeof *pg_good; g++) {
    const char *out = long_list(pg, "SELECT * FROM t WHERE a IN (", pg_good[g], NULL, 0, ")");
    if (strcmp(out, "select * from t where a in (?)") != 0)
      fail_msg("list of %s: %s", pg_good[g], out);
    /* mixed with numbers, the odd one anywhere */
    for (int at = 0; at < 40; at += 7) {
      out = long_list(pg, "SELECT * FROM t WHERE a IN (", "12", pg_good[g], at, ")");
      if (strcmp(out, "select * from t where a in (?)") != 0)
        fail_msg("list of 12 with %s at %d: %s", pg_good[g], at, out);
    }
    out = long_list(pg, "SELECT ARRAY[", pg_good[g], NULL, 0, "]");
    if (strcmp(out, "select array[?]") != 0) fail_msg("array of %s: %s", pg_good[g], out);
  }
  /* SQLite: X'' is a blob; E, B, N, U& and $ start no string there */
  assert_string_equal(long_list(lite, "SELECT * FROM t WHERE a IN (", "X'1F'", NULL, 0, ")"),
                      "select * from t where a in (?)");
  assert_string_equal(long_list(lite, "SELECT * FROM t WHERE a IN (", "1", "'a\\'", 20, ")"),
                      "select * from t where a in (?)");
  /* elements that are not one literal keep the list whole */
  static const char *const pg_bad[] = {"U&'d!0061t' UESCAPE '!'", "$$a$$ 1", "E'x' 'y'",
                                       "$$a$$b", "X'1F'x", "B'1'||'0'", "E'a\\''b"};
  for (size_t b = 0; b < sizeof pg_bad / sizeof *pg_bad; b++) {
    for (int at = 0; at < 40; at += 13) {
      const char *out = long_list(pg, "SELECT * FROM t WHERE a IN (", "'s'", pg_bad[b], at, ")");
      int commas = 0;
      for (const char *c = out; *c; c++) commas += *c == ',';
      if (commas < 39) fail_msg("list with %s at %d collapsed: %s", pg_bad[b], at, out);
    }
  }
  /* a backslash escapes in E'' strings only: here E'a\', ' is one string,
   * so the list has one element fewer than it seems and still collapses,
   * while in a plain string the backslash is a byte like another */
  static const char *const esc1 = "SELECT 1 WHERE a IN (E'a\\', ', 'b', 'c')";
  static const char *const esc2 = "SELECT 1 WHERE a IN ('a\\', 'b\\', 'c')";
  assert_string_equal(qpt_normalize(pg, esc1, strlen(esc1), NULL), "select ? where a in (?)");
  assert_string_equal(qpt_normalize(pg, esc2, strlen(esc2), NULL), "select ? where a in (?)");
  /* VALUES rows of the new forms, then an odd row */
  char sql[4096];
  size_t k = (size_t)snprintf(sql, sizeof sql, "INSERT INTO t VALUES (1, 'a')");
  for (int i = 0; i < 20; i++)
    k += (size_t)snprintf(sql + k, sizeof sql - k, ", (E'r\\'%d', $$x,'%d$$), (U&'u', B'1')", i, i);
  assert_string_equal(qpt_normalize(pg, sql, k, NULL), "insert into t values (?, ?)");
  k += (size_t)snprintf(sql + k, sizeof sql - k, ", ($$a$$ x, 2)");
  assert_string_equal(qpt_normalize(pg, sql, k, NULL), "insert into t values (?, ?), (? x, ?)");
  qp_normalizer_free(pg);
  qp_normalizer_free(lite);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_golden),          cmocka_unit_test(test_dialects_and_hex),
      cmocka_unit_test(test_docs_table),      cmocka_unit_test(test_bom),
      cmocka_unit_test(test_fingerprint_definition), cmocka_unit_test(test_arguments),
      cmocka_unit_test(test_rule_errors),     cmocka_unit_test(test_rules_apply),
      cmocka_unit_test(test_oom),             cmocka_unit_test(test_list_block_classes),
      cmocka_unit_test(test_list_blocks),     cmocka_unit_test(test_list_block_strings),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
