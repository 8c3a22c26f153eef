/*
 * libFuzzer target for the splitter and the classifier. The first byte picks
 * the dialect. Checks: every statement lies inside the input, statements do
 * not overlap and come in order, positions always advance, no statement is
 * empty or starts or ends with white space; the classifier fills a valid
 * kind and bounded, NUL-terminated table names.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qprof/qprof.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const qp_dialect d = (data[0] & 1) ? QP_DIALECT_SQLITE : QP_DIALECT_POSTGRES;
  const char *sql = (const char *)data + 1;
  const size_t len = size - 1;
  size_t pos = 0, start = 0, n = 0, prev_end = 0, count = 0;
  while (qp_sql_split_next(d, sql, len, &pos, &start, &n)) {
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
