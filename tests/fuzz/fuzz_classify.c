/*
 * libFuzzer target for the classifier on its own. The first byte picks the
 * dialect; the rest is one statement (text after a ';' is ignored by the
 * classifier, so the fuzzer is free to put anything there). Checks every
 * field: enums in range, counts bounded, names NUL-terminated and not empty,
 * the fields that imply a kind, and that two calls agree, also through a
 * larger struct (a newer header's) whose unknown tail must come back zeroed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qprof/qprof.h"

static void check_names(char (*names)[QP_STMT_NAME_MAX], size_t n, size_t max) {
  if (n > max) abort();
  for (size_t i = 0; i < n; i++) {
    size_t len = strnlen(names[i], QP_STMT_NAME_MAX);
    if (len >= QP_STMT_NAME_MAX) abort();
    for (size_t j = 0; j < i; j++)
      if (strcmp(names[i], names[j]) == 0) abort(); /* each listed once */
  }
}

/* the bytes a caller may read: scalars, and names up to their counts */
static int same(const qp_stmt_info *a, const qp_stmt_info *b) {
  if (memcmp(&a->kind, &b->kind, offsetof(qp_stmt_info, read) - offsetof(qp_stmt_info, kind)))
    return 0;
  if (memcmp(&a->changes_session, &b->changes_session,
             offsetof(qp_stmt_info, funcs) - offsetof(qp_stmt_info, changes_session)))
    return 0;
  for (size_t i = 0; i < a->nread; i++)
    if (strcmp(a->read[i], b->read[i])) return 0;
  for (size_t i = 0; i < a->nwrite; i++)
    if (strcmp(a->write[i], b->write[i])) return 0;
  for (size_t i = 0; i < a->nfuncs; i++)
    if (strcmp(a->funcs[i], b->funcs[i])) return 0;
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const qp_dialect d = (data[0] & 1) ? QP_DIALECT_SQLITE : QP_DIALECT_POSTGRES;
  const char *sql = (const char *)data + 1;
  const size_t len = size - 1;
  static qp_stmt_info info;
  memset(&info, 0xa5, sizeof info);
  info.size = sizeof info;
  if (qp_sql_classify(d, sql, len, &info) != QP_OK) abort();
  if (info.size != sizeof info) abort();
  if ((int)info.kind < QP_STMT_OTHER || info.kind > QP_STMT_COPY) abort();
  if ((unsigned)info.tcl > QP_TCL_ROLLBACK_PREPARED || (unsigned)info.isolation > QP_ISO_SERIALIZABLE ||
      (unsigned)info.locking > QP_LOCK_UPDATE || (unsigned)info.ddl > QP_DDL_MAINTENANCE)
    abort();
  check_names(info.read, info.nread, QP_STMT_MAX_TABLES);
  check_names(info.write, info.nwrite, QP_STMT_MAX_TABLES);
  check_names(info.funcs, info.nfuncs, QP_STMT_MAX_FUNCS);
  if (info.read_only && info.kind != QP_STMT_SELECT) abort();
  if (info.tcl != QP_TCL_NONE && info.kind != QP_STMT_TCL) abort();
  if (info.ddl != QP_DDL_NONE && info.kind != QP_STMT_DDL) abort();
  if (info.flush_all && info.kind != QP_STMT_DDL && info.kind != QP_STMT_OTHER) abort();
  if (info.creates_temp && !info.changes_session) abort();
  if (info.select_into && info.nwrite == 0 && !info.tables_truncated && info.kind == QP_STMT_SELECT &&
      info.read_only)
    abort();

  /* a newer header's larger struct: same answers, unknown tail zeroed */
  static unsigned char big[sizeof(qp_stmt_info) + 64];
  memset(big, 0xa5, sizeof big);
  qp_stmt_info *b = (qp_stmt_info *)(void *)big;
  b->size = sizeof big;
  if (qp_sql_classify(d, sql, len, b) != QP_OK) abort();
  if (b->size != sizeof big || !same(&info, b)) abort();
  for (size_t i = sizeof(qp_stmt_info); i < sizeof big; i++)
    if (big[i] != 0) abort();
  return 0;
}
