/*
 * libFuzzer target for the splitter and the classifier. The first byte picks
 * the dialect (bit 0) and a user rule set for the one-pass split (bit 1).
 * Checks: every statement lies inside the input, statements do not overlap
 * and come in order, positions always advance, no statement is empty or
 * starts or ends with white space; the classifier fills a valid kind and
 * bounded, NUL-terminated table names; qp_normalize_next finds the same
 * statements, positions, normalized texts and fingerprints as
 * qp_sql_split_next followed by qp_normalize.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qprof/qprof.h"

static qp_normalizer *nz[2][2];
static char o1[QP_NORMALIZED_MAX], o2[QP_NORMALIZED_MAX];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const qp_dialect d = (data[0] & 1) ? QP_DIALECT_SQLITE : QP_DIALECT_POSTGRES;
  const char *sql = (const char *)data + 1;
  const size_t len = size - 1;
  if (nz[0][0] == NULL) {
    static const char *const rules[] = {"^gone$=", "tmp_[0-9a-f]{6,}=tmp_?"};
    for (int i = 0; i < 2; i++)
      for (int r = 0; r < 2; r++)
        if (qp_normalizer_new(&nz[i][r], (qp_dialect)i, rules, r ? 2 : 0, NULL, NULL, 0) != QP_OK)
          abort();
  }
  const qp_normalizer *n1 = nz[d][(data[0] >> 1) & 1];
  size_t pos = 0, start = 0, n = 0, prev_end = 0, count = 0, pos2 = 0;
  for (;;) {
    size_t s2 = 0, l2 = 0, k1 = 0, k2 = 0;
    uint64_t f1 = 0, f2 = 1;
    bool got = qp_sql_split_next(d, sql, len, &pos, &start, &n);
    bool got2 = qp_normalize_next(n1, sql, len, &pos2, &s2, &l2, o2, sizeof o2, &k2, &f2);
    if (got) qp_normalize(n1, sql + start, n, o1, sizeof o1, &k1, &f1);
    if (got != got2 || pos != pos2) abort();
    if (got && (start != s2 || n != l2 || k1 != k2 || f1 != f2 || strcmp(o1, o2) != 0)) abort();
    if (!got) break;
    if (start < prev_end || n == 0 || start + n > len || pos > len || pos < start + n) abort();
    if (sql[start] == ' ' || sql[start] == '\n' || sql[start + n - 1] == ' ' || sql[start + n - 1] == '\n')
      abort();
    prev_end = start + n;
    if (++count > len + 1) abort(); /* progress */
    qp_stmt_info info;
    info.size = sizeof info;
    qp_sql_classify(d, sql + start, n, &info);
    if ((int)info.kind < QP_STMT_OTHER || info.kind > QP_STMT_COPY) abort();
    if (info.nread > QP_STMT_MAX_TABLES || info.nwrite > QP_STMT_MAX_TABLES) abort();
    for (size_t i = 0; i < info.nread; i++)
      if (strnlen(info.read[i], QP_STMT_TABLE_NAME_MAX) >= QP_STMT_TABLE_NAME_MAX) abort();
    for (size_t i = 0; i < info.nwrite; i++)
      if (strnlen(info.write[i], QP_STMT_TABLE_NAME_MAX) >= QP_STMT_TABLE_NAME_MAX) abort();
    if (info.read_only && info.kind != QP_STMT_SELECT) abort();
  }
  if (pos != len) abort();
  return 0;
}
