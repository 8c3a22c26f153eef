/*
 * Statement classification: the one owner of "what does this statement do"
 * (docs/classifier.md). This file holds the entry point, the helpers the
 * steps share and step 3, the finish; classify_int.h lists the steps.
 */
#include <string.h>
#include <strings.h>

#include "classify_int.h"
#include "internal.h"

const char *qp_stmt_kind_name(qp_stmt_kind kind) {
  switch (kind) {
  case QP_STMT_SELECT: return "select";
  case QP_STMT_INSERT: return "insert";
  case QP_STMT_UPDATE: return "update";
  case QP_STMT_DELETE: return "delete";
  case QP_STMT_DDL: return "ddl";
  case QP_STMT_TCL: return "tcl";
  case QP_STMT_SESSION: return "session";
  case QP_STMT_MERGE: return "merge";
  case QP_STMT_COPY: return "copy";
  case QP_STMT_OTHER: break;
  }
  return "other";
}

const char *qp_tcl_name(qp_tcl tcl) {
  static const char *const names[] = {"none", "begin", "commit", "rollback", "savepoint",
                                      "release", "rollback_to", "prepare", "commit_prepared",
                                      "rollback_prepared"};
  return (unsigned)tcl < sizeof names / sizeof names[0] ? names[tcl] : "none";
}

const char *qp_isolation_name(qp_isolation iso) {
  static const char *const names[] = {"none", "read_uncommitted", "read_committed",
                                      "repeatable_read", "serializable"};
  return (unsigned)iso < sizeof names / sizeof names[0] ? names[iso] : "none";
}

const char *qp_lock_name(qp_lock lock) {
  static const char *const names[] = {"none", "key_share", "share", "no_key_update", "update"};
  return (unsigned)lock < sizeof names / sizeof names[0] ? names[lock] : "none";
}

const char *qp_ddl_name(qp_ddl ddl) {
  static const char *const names[] = {"none", "create", "alter", "drop", "truncate", "grant",
                                      "revoke", "comment", "refresh", "maintenance"};
  return (unsigned)ddl < sizeof names / sizeof names[0] ? names[ddl] : "none";
}

/* ---- helpers the steps share ---------------------------------------------- */

bool qp__cls_word_is(const char *s, const qp_tok *t, const char *w) {
  size_t n = strlen(w);
  return t->type == QP_T_WORD && t->end - t->start == n && strncasecmp(s + t->start, w, n) == 0;
}

bool qp__cls_append_part(const char *s, char *dst, const qp_tok *t) {
  const char *p = s + t->start;
  size_t n = t->end - t->start;
  if (t->type == QP_T_WORD) return qp__sql_copy_name(dst, QP_STMT_NAME_MAX, p, n, true);
  /* quoted: "x" U&"x" `x` [x] */
  if (n > 0 && (p[0] == 'u' || p[0] == 'U')) {
    p += 2;
    n = n >= 2 ? n - 2 : 0;
  }
  char q = n > 0 ? p[0] : '"';
  char close = q == '[' ? ']' : q;
  if (n > 0) {
    p++;
    n--;
  }
  if (n > 0 && p[n - 1] == close) n--;
  size_t d0 = strlen(dst), dn = d0;
  for (size_t i = 0; i < n; i++) {
    if (dn + 1 >= QP_STMT_NAME_MAX) {
      dst[d0] = '\0'; /* unchanged, and still a string */
      return false;
    }
    dst[dn++] = p[i];
    if (p[i] == q && q != '[' && i + 1 < n && p[i + 1] == q) i++; /* "" -> " */
  }
  dst[dn] = '\0';
  return true;
}

static bool has_prefix(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The schema of a qualified name is a system catalog's. */
static bool catalog_schema(const char *name) {
  return has_prefix(name, "pg_catalog.") || has_prefix(name, "information_schema.");
}

/* An unqualified pg_* name resolves to pg_catalog first when read; a
 * written one (CREATE VIEW pg_stat_statements) is the user's own. */
static bool catalog_table(const qp__cls *c, qp__role r, const char *name, bool qualified) {
  if (c->d == QP_DIALECT_SQLITE) {
    const char *dot = strrchr(name, '.');
    return has_prefix(dot ? dot + 1 : name, "sqlite_");
  }
  return qualified ? catalog_schema(name) : r == QP__R_READ && has_prefix(name, "pg_");
}

void qp__cls_record(qp__cls *c, qp__role r, const char *name, bool qualified) {
  qp_stmt_info *info = c->info;
  if (!qualified) {
    for (size_t i = 0; i < c->nctes; i++)
      if (strcmp(c->ctes[i], name) == 0) return;
  }
  if (catalog_table(c, r, name, qualified)) info->system_catalog = true;
  char (*list)[QP_STMT_NAME_MAX] = r == QP__R_WRITE ? info->write : info->read;
  size_t *n = r == QP__R_WRITE ? &info->nwrite : &info->nread;
  for (size_t i = 0; i < *n; i++)
    if (strcmp(list[i], name) == 0) return;
  if (*n >= QP_STMT_MAX_TABLES) {
    info->tables_truncated = true;
    return;
  }
  strcpy(list[(*n)++], name);
}

static bool name_in(const char *name, const char *const *list) {
  for (; *list; list++)
    if ((*list)[0] == name[0] && strcmp(name, *list) == 0) return true;
  return false;
}

/* Results may differ between two runs on the same data. */
static const char *const volatile_fns[] = {
    "now", "random", "clock_timestamp", "statement_timestamp", "transaction_timestamp",
    "timeofday", "nextval", "setval", "currval", "lastval", "gen_random_uuid",
    "uuid_generate_v1", "uuid_generate_v1mc", "uuid_generate_v4", "random_normal",
    "txid_current", "pg_current_xact_id", "setseed", "pg_backend_pid", "inet_client_addr",
    "randomblob", "changes", "total_changes", "last_insert_rowid", "current_setting",
    "pg_sleep", NULL};
/* Calls that write or take locks even inside a SELECT. */
static const char *const writing_fns[] = {
    "nextval", "setval", "pg_advisory_lock", "pg_advisory_lock_shared", "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared",
    "pg_try_advisory_xact_lock", "pg_try_advisory_xact_lock_shared", "pg_advisory_unlock",
    "pg_advisory_unlock_shared", "pg_advisory_unlock_all", "set_config", "pg_notify",
    "txid_current", "pg_current_xact_id", "lo_create", "lo_creat", "lo_unlink", "lo_import",
    "lo_export", "lo_put", "lo_from_bytea", "lo_truncate", "pg_terminate_backend",
    "pg_cancel_backend", "pg_reload_conf", "pg_switch_wal", "dblink_exec", "setseed",
    "pg_stat_reset", "pg_create_restore_point", NULL};

void qp__cls_call(qp__cls *c, const char *name, bool fits) {
  qp_stmt_info *info = c->info;
  const char *dot = strrchr(name, '.');
  const char *last = dot ? dot + 1 : name;
  if (name_in(last, volatile_fns)) info->volatile_fn = true;
  if (name_in(last, writing_fns)) c->write_fn = true;
  /* session advisory locks outlive the transaction (the _xact_ ones do
   * not); set_config(..., false) changes a setting for the session. DDL
   * runs a call only in the query of CREATE TABLE/MATERIALIZED VIEW AS
   * (a rule's or a function's body is only stored). */
  bool runs = c->kind != QP_STMT_DDL || c->ddl_obj == QP__OBJ_REL;
  if (runs && (strstr(last, "advisory_lock") != NULL || strcmp(last, "set_config") == 0))
    info->changes_session = true;
  if (c->d == QP_DIALECT_SQLITE ? has_prefix(last, "pragma_") : catalog_schema(name))
    info->system_catalog = true;
  /* PRAGMA name(arg) is not a call */
  if (c->head_kw == QP_KW_PRAGMA) return;
  /* in DDL, calls before the query are defaults, checks and index
   * expressions, not calls this statement makes */
  if (c->kind == QP_STMT_DDL && !c->ddl_list_calls) return;
  if (!fits) {
    info->funcs_truncated = true;
    return;
  }
  for (size_t i = 0; i < info->nfuncs; i++)
    if (strcmp(info->funcs[i], name) == 0) return;
  if (info->nfuncs >= QP_STMT_MAX_FUNCS) {
    info->funcs_truncated = true;
    return;
  }
  strcpy(info->funcs[info->nfuncs++], name);
}

/* ---- step 3: the finish ---------------------------------------------------- */

/* A written name in the temporary schema (pg_temp, pg_temp_3; SQLite temp). */
static bool temp_schema(const qp__cls *c, const char *name) {
  if (c->d == QP_DIALECT_SQLITE) return strncasecmp(name, "temp.", 5) == 0;
  return has_prefix(name, "pg_temp.") || (has_prefix(name, "pg_temp_") && strchr(name, '.'));
}

static bool flush_all(const qp__cls *c) {
  const qp_stmt_info *info = c->info;
  /* code the text does not show */
  if (c->head_kw == QP_KW_CALL || c->head_kw == QP_KW_EXECUTE || c->is_do) return true;
  if (info->kind != QP_STMT_DDL) return false;
  switch (info->ddl) {
  case QP_DDL_COMMENT:
  case QP_DDL_MAINTENANCE:
  case QP_DDL_NONE:
    return false;
  default:
    break;
  }
  if (c->ddl_cascade) return true;
  switch (c->ddl_obj) {
  case QP__OBJ_NOFX: return false;
  case QP__OBJ_REL: return info->nwrite == 0 || info->tables_truncated;
  default: return true;
  }
}

void qp__cls_finish(qp__cls *c) {
  qp_stmt_info *info = c->info;
  if (c->kind < 0) c->kind = QP_STMT_OTHER;
  info->kind = (qp_stmt_kind)c->kind;
  if (c->explain == 1) { /* EXPLAIN without ANALYZE runs nothing */
    info->nwrite = 0;
    info->select_into = false;
  }
  if (c->ctes_truncated) info->tables_truncated = true;
  if (c->copy_named)
    qp__cls_record(c, c->copy_dir == QP__R_WRITE ? QP__R_WRITE : QP__R_READ, c->copy_name, true);
  if (info->ddl == QP_DDL_CREATE || info->select_into) {
    for (size_t i = 0; i < info->nwrite; i++)
      if (temp_schema(c, info->write[i])) info->creates_temp = true;
  }
  if (info->creates_temp) info->changes_session = true;
  info->read_only = info->kind == QP_STMT_SELECT &&
                    (c->explain == 1 || (!c->any_write_verb && !info->select_into &&
                                         info->locking == QP_LOCK_NONE && !c->write_fn));
  info->flush_all = flush_all(c);
}

/* ---- the entry point -------------------------------------------------------- */

static void classify(qp_dialect dialect, const char *sql, size_t len, qp_stmt_info *info) {
  /* the scalar fields; the name arrays are written only up to their counts */
  memset(info, 0, offsetof(qp_stmt_info, read));
  memset((char *)info + offsetof(qp_stmt_info, changes_session), 0,
         offsetof(qp_stmt_info, funcs) - offsetof(qp_stmt_info, changes_session));
  memset((char *)info + offsetof(qp_stmt_info, identity), 0,
         sizeof *info - offsetof(qp_stmt_info, identity));
  qp__cls c;
  memset(&c, 0, QP__CLS_ZERO_SIZE);
  memset(&c.fr[0], 0, sizeof c.fr[0]);
  c.d = dialect;
  c.s = sql != NULL ? sql : "";
  c.len = sql != NULL ? len : 0;
  c.info = info;
  c.kind = -1;
  qp__cls_head(&c);
  qp__cls_walk(&c);
  qp__cls_finish(&c);
}

qp_status qp_sql_classify(qp_dialect dialect, const char *sql, size_t len, qp_stmt_info *info) {
  if (info == NULL || info->size < QP_STMT_INFO_MIN_SIZE) return QP_INVALID;
  size_t size = info->size;
  if (size >= sizeof *info) {
    classify(dialect, sql, len, info);
    /* fields of a newer header than this library's: not known */
    memset((char *)info + sizeof *info, 0, size - sizeof *info);
  } else {
    /* an older, smaller struct: classify in full, hand back its part */
    qp_stmt_info full;
    classify(dialect, sql, len, &full);
    memcpy((char *)info + sizeof info->size, (char *)&full + sizeof full.size,
           size - sizeof info->size);
  }
  info->size = size;
  return QP_OK;
}
