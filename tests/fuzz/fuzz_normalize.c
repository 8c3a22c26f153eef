/*
 * libFuzzer target for the normalizer, both dialects, with and without a
 * user rule. The first input byte picks the dialect, the rule set and the
 * output buffer size; the rest is the statement.
 *
 * Checks: qp_normalize never fails on valid arguments; the output is
 * NUL-terminated, within the buffer, free of NUL bytes, a prefix of the
 * untruncated output and cut at a UTF-8 boundary; the fingerprint does not
 * depend on the buffer size; and, without rules and without a cut,
 * normalizing the output again changes neither text nor fingerprint; the
 * SIMD classifiers of list blocks agree with their scalar twin; the
 * statement memo never gives a text a fingerprint it does not have.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qprof/qprof.h"
#include "sql/memo.h"
#include "sql/sql_int.h"

static qp_normalizer *nz[2][2];

static void setup(void) {
  static const char *const rules[] = {"tmp_[0-9a-f]{6,}=tmp_?", "^(p)_([0-9]+)$=$1_n"};
  for (int d = 0; d < 2; d++)
    for (int r = 0; r < 2; r++)
      if (qp_normalizer_new(&nz[d][r], d ? QP_DIALECT_SQLITE : QP_DIALECT_POSTGRES, rules,
                            r ? 2 : 0, NULL, NULL, 0) != QP_OK)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (nz[0][0] == NULL) setup();
  if (size < 1) return 0;
  const int dialect = data[0] & 1, rules = (data[0] >> 1) & 1;
  static const size_t caps[] = {QP_NORMALIZED_MAX, 1, 2, 7, 64, 300, 4096, QP_NORMALIZED_MAX};
  const size_t cap = caps[(data[0] >> 2) & 7];
  const char *sql = (const char *)data + 1;
  const size_t len = size - 1;
  const qp_normalizer *n = nz[dialect][rules];

  static char full[QP_NORMALIZED_MAX], out[QP_NORMALIZED_MAX + 16], again[QP_NORMALIZED_MAX];
  size_t flen = 0, olen = 0, alen = 0;
  uint64_t ffp = 0, ofp = 0, afp = 0;
  if (qp_normalize(n, sql, len, full, sizeof full, &flen, &ffp) != QP_OK) abort();
  if (flen >= sizeof full || full[flen] != '\0' || strlen(full) != flen) abort();

  memset(out, 0x5a, sizeof out);
  if (qp_normalize(n, sql, len, out, cap, &olen, &ofp) != QP_OK) abort();
  if (olen >= cap || out[olen] != '\0' || strlen(out) != olen) abort();
  for (size_t i = cap; i < sizeof out; i++)
    if (out[i] != 0x5a) abort(); /* nothing written past cap */
  if (ofp != ffp) abort();       /* the fingerprint covers the whole text */
  if (olen > flen || memcmp(out, full, olen) != 0) abort();
  if (olen < flen && ((unsigned char)full[olen] & 0xC0) == 0x80) {
    /* the cut falls before a continuation byte: it must not split a valid
     * UTF-8 character (invalid sequences may be cut anywhere) */
    size_t k = olen;
    while (k > 0 && olen - k < 3 && ((unsigned char)full[k - 1] & 0xC0) == 0x80) k--;
    if (k > 0) {
      unsigned char lead = (unsigned char)full[k - 1];
      size_t need = (lead >= 0xC2 && lead <= 0xDF) ? 2 : (lead >= 0xE0 && lead <= 0xEF) ? 3
                  : (lead >= 0xF0 && lead <= 0xF4) ? 4 : 1;
      size_t have = 1;
      while (have < need && k - 1 + have < flen && ((unsigned char)full[k - 1 + have] & 0xC0) == 0x80) have++;
      if (need > 1 && have == need && k - 1 < olen && k - 1 + need > olen) abort();
    }
  }

  /* list-block classes: every SIMD variant equals the byte-by-byte twin */
  for (size_t at = 0; at + 64 <= len; at += 61) {
    qp_sql_blk_classes ref, got;
    qp__sql_blk_classes(sql + at, 0, &ref);
    for (int impl = 1; impl <= 2; impl++)
      if (qp__sql_blk_classes(sql + at, impl, &got) && memcmp(&ref, &got, sizeof ref) != 0) abort();
  }

  /* the statement memo (sql/memo.h): the spans' pass writes what
   * qp_normalize writes, the text matches its own memo, and the text with
   * every variable literal rewritten (digits from the input's bytes, strings
   * emptied) matches it with the same fingerprint qp_normalize gives */
  {
    static char sp_out[QP_NORMALIZED_MAX];
    qp_lit_span spans[QP_SQL_MEMO_SPANS];
    size_t slen = 0, ns = 0;
    uint64_t sfp = 0;
    if (qp__normalize_spans(n, sql, len, sp_out, sizeof sp_out, &slen, &sfp, spans,
                            QP_SQL_MEMO_SPANS, &ns) != QP_OK)
      abort();
    if (slen != flen || memcmp(sp_out, full, flen) != 0 || sfp != ffp) abort();
    size_t kept = ns < QP_SQL_MEMO_SPANS ? ns : QP_SQL_MEMO_SPANS;
    for (size_t i = 0; i < kept; i++)
      if (spans[i].start >= spans[i].end || spans[i].end > len ||
          (i > 0 && spans[i].start < spans[i - 1].end))
        abort();
    static qp_sql_memo m;
    qp__sql_memo_set(&m, qp_normalizer_dialect(n), sql, len, ffp, spans, kept);
    if (m.len != 0) {
      if (!qp__sql_memo_match(&m, sql, len)) abort();
      static char b[QP_SQL_MEMO_TEXT * 4];
      size_t p = 0, o = 0;
      for (unsigned i = 0; i < m.nspans; i++) {
        memcpy(b + o, m.text + p, m.span[i][0] - p);
        o += m.span[i][0] - p;
        p = m.span[i][1];
        if (m.str & (1u << i)) {
          b[o++] = '\'';
          b[o++] = '\'';
        } else {
          for (unsigned k = 1 + (unsigned)(data[(p + i) % size] % 9); k > 0; k--, o++)
            b[o] = (char)('0' + (data[(o + k) % size] % 10));
        }
      }
      memcpy(b + o, m.text + p, m.len - p);
      o += m.len - p;
      if (!qp__sql_memo_match(&m, b, o)) abort();
      static char bn[QP_NORMALIZED_MAX];
      size_t bl = 0;
      uint64_t bfp = 0;
      if (qp_normalize(n, b, o, bn, sizeof bn, &bl, &bfp) != QP_OK) abort();
      if (bfp != ffp) {
        fprintf(stderr, "memo: [%.*s] and [%.*s] match, fingerprints differ\n", (int)len, sql,
                (int)o, b);
        abort();
      }
    }
  }

  /* idempotence, where it must hold: no rules (their output is free text)
   * and no cut (a cut text is another statement) */
  if (!rules && flen + 1 < sizeof full) {
    if (qp_normalize(n, full, flen, again, sizeof again, &alen, &afp) != QP_OK) abort();
    if (alen != flen || memcmp(again, full, flen) != 0 || afp != ffp) {
      fprintf(stderr, "not idempotent [%s]:\n  once:  %s\n  twice: %s\n",
              dialect ? "sqlite" : "postgres", full, again);
      abort();
    }
  }
  return 0;
}
