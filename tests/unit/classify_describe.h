/*
 * Shared by the classifier's tests (test_classify.c, test_classify_sqlite.c):
 * one line per classification, the golden files' format, and the invariants
 * every classification keeps.
 */
#ifndef QP_CLASSIFY_DESCRIBE_H
#define QP_CLASSIFY_DESCRIBE_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "qprof/qprof.h"

/* ---- one line per classification: the golden files' format ----------------
 * "kind=select reads=t,u funcs=now ..." with every field that is not its zero
 * value, in the order of qp_stmt_info; golden files compare whole lines, so
 * every field is checked in every case. */
static inline void put_list(char *out, size_t cap, const char *key, char (*names)[QP_STMT_NAME_MAX],
                     size_t n) {
  if (n == 0) return;
  size_t o = strlen(out);
  o += (size_t)snprintf(out + o, cap - o, " %s=", key);
  for (size_t i = 0; i < n && o < cap; i++)
    o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? "," : "", names[i]);
}

static inline void put_flag(char *out, size_t cap, const char *key, bool on) {
  size_t o = strlen(out);
  if (on) snprintf(out + o, cap - o, " %s", key);
}

static inline void put_enum(char *out, size_t cap, const char *key, int v, const char *name) {
  size_t o = strlen(out);
  if (v != 0) snprintf(out + o, cap - o, " %s=%s", key, name);
}

static inline void describe(const qp_stmt_info *i, char *out, size_t cap) {
  snprintf(out, cap, "kind=%s", qp_stmt_kind_name(i->kind));
  put_flag(out, cap, "read_only", i->read_only);
  put_flag(out, cap, "volatile", i->volatile_fn);
  put_flag(out, cap, "tables_truncated", i->tables_truncated);
  put_list(out, cap, "reads", (char (*)[QP_STMT_NAME_MAX])i->read, i->nread);
  put_list(out, cap, "writes", (char (*)[QP_STMT_NAME_MAX])i->write, i->nwrite);
  put_flag(out, cap, "session", i->changes_session);
  put_flag(out, cap, "drops_prepared", i->drops_prepared);
  put_enum(out, cap, "tcl", i->tcl, qp_tcl_name(i->tcl));
  put_enum(out, cap, "isolation", i->isolation, qp_isolation_name(i->isolation));
  put_enum(out, cap, "lock", i->locking, qp_lock_name(i->locking));
  put_flag(out, cap, "writing_cte", i->writing_cte);
  put_flag(out, cap, "select_into", i->select_into);
  put_enum(out, cap, "ddl", i->ddl, qp_ddl_name(i->ddl));
  put_flag(out, cap, "flush_all", i->flush_all);
  put_flag(out, cap, "creates_temp", i->creates_temp);
  put_flag(out, cap, "catalog", i->system_catalog);
  put_flag(out, cap, "funcs_truncated", i->funcs_truncated);
  put_list(out, cap, "funcs", (char (*)[QP_STMT_NAME_MAX])i->funcs, i->nfuncs);
}

/* Invariants every classification keeps (also checked by fuzz_classify). */
static inline bool sane(const qp_stmt_info *i) {
  if ((int)i->kind < QP_STMT_OTHER || i->kind > QP_STMT_COPY) return false;
  if (i->nread > QP_STMT_MAX_TABLES || i->nwrite > QP_STMT_MAX_TABLES || i->nfuncs > QP_STMT_MAX_FUNCS)
    return false;
  for (size_t k = 0; k < i->nread; k++)
    if (i->read[k][0] == '\0' || strnlen(i->read[k], QP_STMT_NAME_MAX) >= QP_STMT_NAME_MAX) return false;
  for (size_t k = 0; k < i->nwrite; k++)
    if (i->write[k][0] == '\0' || strnlen(i->write[k], QP_STMT_NAME_MAX) >= QP_STMT_NAME_MAX) return false;
  for (size_t k = 0; k < i->nfuncs; k++)
    if (i->funcs[k][0] == '\0' || strnlen(i->funcs[k], QP_STMT_NAME_MAX) >= QP_STMT_NAME_MAX) return false;
  if (i->read_only && i->kind != QP_STMT_SELECT) return false;
  if (i->tcl != QP_TCL_NONE && i->kind != QP_STMT_TCL) return false;
  if (i->ddl != QP_DDL_NONE && i->kind != QP_STMT_DDL) return false;
  return true;
}

#endif
