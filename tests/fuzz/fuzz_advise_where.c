/*
 * libFuzzer target for the advisor's SQLite condition reader
 * (qp__adv_where, lib/advise/sqlite.c) and cond.c on what it gives, and its
 * ORDER BY ... LIMIT reader (qp__adv_order_read). Checks: never a crash; the
 * result is NUL-terminated, its length is what was returned and fits the
 * buffer; every predicate read from it names a column that fits its field;
 * an ORDER BY read has 1..ADV_MAX_KEYS terms, each a non-empty column name
 * that fits its field. The same input is also read as an SQLite record
 * (qp__adv_record_literal, the sqlite_stat4 sample decoder): never past its
 * end (the copy is exactly `size` bytes, so ASan catches a read beyond),
 * and a literal it gives is NUL-terminated within its buffer, non-empty.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "advise/advise_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char out[512];
  memset(out, 'x', sizeof out);
  size_t n = qp__adv_where((const char *)data, size, out, sizeof out);
  if (n >= sizeof out || strlen(out) != n) abort();
  qp__cond conds[QP__COND_MAX];
  size_t nc = qp__cond_read(out, conds, QP__COND_MAX);
  if (nc > QP__COND_MAX) abort();
  for (size_t k = 0; k < nc; k++)
    if (strlen(conds[k].column) >= sizeof conds[k].column || conds[k].op == QP__COND_NONE) abort();
  char tiny[8];
  n = qp__adv_where((const char *)data, size, tiny, sizeof tiny);
  if (n >= sizeof tiny || strlen(tiny) != n) abort();
  char *sql = malloc(size + 1);
  if (sql == NULL) return 0;
  memcpy(sql, data, size);
  sql[size] = '\0';
  qp__adv_order o;
  if (qp__adv_order_read(sql, &o)) {
    if (o.n < 1 || o.n > ADV_MAX_KEYS) abort();
    for (int k = 0; k < o.n; k++)
      if (o.col[k][0] == '\0' || strnlen(o.col[k], ADV_NAME) >= ADV_NAME ||
          strnlen(o.qual[k], ADV_NAME) >= ADV_NAME)
        abort();
  }
  free(sql);
  unsigned char *rec = malloc(size > 0 ? size : 1);
  if (rec == NULL) return 0;
  memcpy(rec, data, size);
  char lit[64];
  memset(lit, 'x', sizeof lit);
  if (qp__adv_record_literal(rec, size, lit, sizeof lit) &&
      (strnlen(lit, sizeof lit) >= sizeof lit || lit[0] == '\0'))
    abort();
  free(rec);
  return 0;
}
