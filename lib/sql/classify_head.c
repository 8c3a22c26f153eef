/*
 * Step 1 of the classifier: the statement's head. The first words decide
 * most of what a pool or a cache asks first: the kind (for every verb but the
 * DML ones, which the walk finds at any depth), the transaction verb and any
 * isolation level it names, the DDL verb and the class of its object, and
 * the session effects of SET, RESET, PREPARE, LISTEN, DISCARD and friends.
 */
#include <string.h>
#include <strings.h>

#include "classify_int.h"

#define HEAD_TOKS 8

/* The kind a statement's first word gives, or -1 when it is not decisive
 * (the walk then decides: SELECT, WITH, INSERT... at any depth). */
static int head_kind(qp_kw kw, const char *s, const qp_tok *t) {
  switch (kw) {
  case QP_KW_SHOW: return QP_STMT_SELECT;
  case QP_KW_CREATE: case QP_KW_ALTER: case QP_KW_DROP: case QP_KW_TRUNCATE:
  case QP_KW_COMMENT: case QP_KW_GRANT: case QP_KW_REVOKE: case QP_KW_REINDEX:
  case QP_KW_VACUUM: case QP_KW_ANALYZE: case QP_KW_CLUSTER: case QP_KW_REFRESH:
    return QP_STMT_DDL;
  case QP_KW_BEGIN: case QP_KW_START: case QP_KW_COMMIT: case QP_KW_END:
  case QP_KW_ROLLBACK: case QP_KW_SAVEPOINT: case QP_KW_RELEASE: case QP_KW_ABORT:
    return QP_STMT_TCL;
  case QP_KW_SET: case QP_KW_RESET: case QP_KW_DEALLOCATE: case QP_KW_LISTEN:
  case QP_KW_UNLISTEN: case QP_KW_DISCARD: case QP_KW_PRAGMA: case QP_KW_LOAD:
  case QP_KW_ATTACH: case QP_KW_DETACH: case QP_KW_NOTIFY: case QP_KW_PREPARE:
    return QP_STMT_SESSION;
  case QP_KW_COPY: return QP_STMT_COPY;
  case QP_KW_CHECKPOINT: case QP_KW_CALL: case QP_KW_DO: case QP_KW_EXECUTE:
  case QP_KW_LOCK: case QP_KW_DECLARE: case QP_KW_FETCH:
    return QP_STMT_OTHER;
  default:
    break;
  }
  static const char *const other[] = {"move", "close", "security", "import", NULL};
  for (const char *const *w = other; *w; w++)
    if (qp__cls_word_is(s, t, *w)) return QP_STMT_OTHER;
  return -1;
}

static qp_kw kw_of(const qp__cls *c, const qp_tok *t) {
  return t->type == QP_T_WORD ? qp__sql_keyword(c->s + t->start, t->end - t->start) : QP_KW_NONE;
}

/* The level named by the words after ISOLATION LEVEL, or by a string such as
 * 'repeatable read' (SET transaction_isolation = ...). */
static qp_isolation level_words(const char *a, size_t an, const char *b, size_t bn) {
  if (an == 12 && strncasecmp(a, "serializable", 12) == 0) return QP_ISO_SERIALIZABLE;
  if (an == 10 && strncasecmp(a, "repeatable", 10) == 0) return QP_ISO_REPEATABLE_READ;
  if (an == 4 && strncasecmp(a, "read", 4) == 0) {
    if (bn == 9 && strncasecmp(b, "committed", 9) == 0) return QP_ISO_READ_COMMITTED;
    if (bn == 11 && strncasecmp(b, "uncommitted", 11) == 0) return QP_ISO_READ_UNCOMMITTED;
  }
  return QP_ISO_NONE;
}

/* BEGIN/START TRANSACTION/SET TRANSACTION/SET SESSION CHARACTERISTICS:
 * finds ISOLATION LEVEL x anywhere in the statement's modes. */
static qp_isolation iso_scan(const qp__cls *c, size_t pos) {
  qp_tok t, u, v;
  for (;;) {
    pos = qp__sql_lex_sig(c->d, c->s, c->len, pos, &t);
    if (t.type == QP_T_EOF || t.type == QP_T_SEMI) return QP_ISO_NONE;
    if (!qp__cls_word_is(c->s, &t, "isolation")) continue;
    pos = qp__sql_lex_sig(c->d, c->s, c->len, pos, &t);
    if (!qp__cls_word_is(c->s, &t, "level")) return QP_ISO_NONE;
    pos = qp__sql_lex_sig(c->d, c->s, c->len, pos, &u);
    qp__sql_lex_sig(c->d, c->s, c->len, pos, &v);
    if (u.type != QP_T_WORD) return QP_ISO_NONE;
    return level_words(c->s + u.start, u.end - u.start, c->s + v.start,
                       v.type == QP_T_WORD ? v.end - v.start : 0);
  }
}

/* SET [SESSION|LOCAL] [default_]transaction_isolation {TO|=} value */
static qp_isolation iso_setting(const qp__cls *c, const qp_tok *t, size_t n) {
  size_t i = 1;
  if (i < n && (qp__cls_word_is(c->s, &t[i], "session") || qp__cls_word_is(c->s, &t[i], "local")))
    i++;
  if (i + 2 >= n) return QP_ISO_NONE;
  if (!qp__cls_word_is(c->s, &t[i], "transaction_isolation") &&
      !qp__cls_word_is(c->s, &t[i], "default_transaction_isolation"))
    return QP_ISO_NONE;
  i++;
  if (!(kw_of(c, &t[i]) == QP_KW_TO || t[i].type == QP_T_OP)) return QP_ISO_NONE;
  i++;
  const qp_tok *v = &t[i];
  const char *p = c->s + v->start;
  size_t vn = v->end - v->start;
  if (v->type == QP_T_STRING && vn >= 2 && p[0] == '\'' && p[vn - 1] == '\'') {
    p++;
    vn -= 2;
    const char *sp = memchr(p, ' ', vn);
    if (sp == NULL) return level_words(p, vn, "", 0);
    return level_words(p, (size_t)(sp - p), sp + 1, vn - (size_t)(sp - p) - 1);
  }
  if (v->type == QP_T_WORD) return level_words(p, vn, "", 0);
  return QP_ISO_NONE;
}

static bool mentions_ci(const char *s, size_t n, const char *needle) {
  size_t k = strlen(needle);
  for (size_t i = 0; i + k <= n; i++)
    if (strncasecmp(s + i, needle, k) == 0) return true;
  return false;
}

/* DO [LANGUAGE l] body: the body is code the text does not show as SQL. It
 * may change anything; it drops prepared statements when it names
 * DEALLOCATE or DISCARD (as the backend always assumed). */
static void head_do(qp__cls *c, size_t pos) {
  qp_tok t;
  c->is_do = true;
  c->info->changes_session = true;
  for (;;) {
    pos = qp__sql_lex_sig(c->d, c->s, c->len, pos, &t);
    if (t.type == QP_T_EOF || t.type == QP_T_SEMI) return;
    if (t.type == QP_T_STRING && (mentions_ci(c->s + t.start, t.end - t.start, "deallocate") ||
                                  mentions_ci(c->s + t.start, t.end - t.start, "discard")))
      c->info->drops_prepared = true;
  }
}

/* The object class of CREATE/ALTER/DROP: words before it are modifiers. */
static void head_ddl_object(qp__cls *c, const qp_tok *t, size_t n) {
  static const char *const mods[] = {"or", "replace", "global", "local", "temp", "temporary",
                                     "unlogged", "unique", "materialized", "recursive",
                                     "constraint", "virtual", "foreign", "if", "not",
                                     "exists", NULL};
  static const char *const rel[] = {"table", "view", NULL};
  static const char *const nofx[] = {"index", "trigger", "sequence", "statistics", NULL};
  qp_stmt_info *info = c->info;
  for (size_t i = 1; i < n && t[i].type == QP_T_WORD; i++) {
    const char *const *w;
    for (w = mods; *w && !qp__cls_word_is(c->s, &t[i], *w); w++) {
    }
    if (*w != NULL) {
      if (c->head_kw == QP_KW_CREATE &&
          (qp__cls_word_is(c->s, &t[i], "temp") || qp__cls_word_is(c->s, &t[i], "temporary")))
        info->creates_temp = true;
      /* FOREIGN DATA WRAPPER is not a table */
      if (qp__cls_word_is(c->s, &t[i], "foreign") && i + 1 < n &&
          !qp__cls_word_is(c->s, &t[i + 1], "table")) {
        c->ddl_obj = QP__OBJ_OTHER;
        return;
      }
      continue;
    }
    for (w = rel; *w; w++)
      if (qp__cls_word_is(c->s, &t[i], *w)) {
        c->ddl_obj = QP__OBJ_REL;
        c->ddl_target = true;
        return;
      }
    for (w = nofx; *w; w++)
      if (qp__cls_word_is(c->s, &t[i], *w)) {
        c->ddl_obj = QP__OBJ_NOFX;
        c->ddl_target = true;
        if (qp__cls_word_is(c->s, &t[i], "index") || qp__cls_word_is(c->s, &t[i], "trigger"))
          c->ddl_on = true;
        return;
      }
    c->ddl_obj = QP__OBJ_OTHER;
    return;
  }
  c->ddl_obj = QP__OBJ_OTHER;
}

/* The value of SET ROLE or SET SESSION AUTHORIZATION: a name or the
 * default (NONE, DEFAULT; for a role also the name 'none'). */
static void ident_value(qp__cls *c, const qp_tok *v, bool role) {
  qp_stmt_info *info = c->info;
  const char *p = c->s + v->start;
  size_t n = v->end - v->start;
  if (v->type == QP_T_WORD || v->type == QP_T_QIDENT) {
    if (v->type == QP_T_WORD && (qp__cls_word_is(c->s, v, "default") ||
                                 qp__cls_word_is(c->s, v, "none"))) {
      info->identity_default = true;
      return;
    }
    if (!qp__cls_append_part(c->s, info->identity_name, v)) return;
  } else if (v->type == QP_T_STRING && n >= 2 && p[0] == '\'' && p[n - 1] == '\'') {
    /* a plain '...' string: '' is one quote */
    size_t d = 0;
    for (size_t i = 1; i + 1 < n; i++) {
      if (d + 1 >= QP_STMT_NAME_MAX) {
        info->identity_name[0] = '\0';
        return;
      }
      info->identity_name[d++] = p[i];
      if (p[i] == '\'' && i + 2 < n && p[i + 1] == '\'') i++;
    }
    info->identity_name[d] = '\0';
  } else {
    return;
  }
  /* the server reads the role named "none" as no role at all */
  if (role && strcmp(info->identity_name, "none") == 0) {
    info->identity_name[0] = '\0';
    info->identity_default = true;
  }
}

/* SET [SESSION|LOCAL] ROLE / SESSION AUTHORIZATION / application_name ...:
 * qp_stmt_info.identity. */
static void ident_set(qp__cls *c, const qp_tok *t, size_t n) {
  qp_stmt_info *info = c->info;
  size_t i = 1;
  bool local = false;
  if (i < n && qp__cls_word_is(c->s, &t[i], "local")) {
    local = true;
    i++;
  } else if (i + 1 < n && qp__cls_word_is(c->s, &t[i], "session") &&
             !qp__cls_word_is(c->s, &t[i + 1], "authorization")) {
    i++;
  }
  if (i >= n) return;
  unsigned what;
  bool guc = false; /* the generic form: name {TO|=} value */
  if (qp__cls_word_is(c->s, &t[i], "role")) {
    what = QP_IDENT_ROLE;
    i++;
  } else if (i + 1 < n && qp__cls_word_is(c->s, &t[i], "session") &&
             qp__cls_word_is(c->s, &t[i + 1], "authorization")) {
    what = QP_IDENT_ROLE | QP_IDENT_SESSION_AUTH;
    i += 2;
  } else if (qp__cls_word_is(c->s, &t[i], "session_authorization")) {
    what = QP_IDENT_ROLE | QP_IDENT_SESSION_AUTH;
    guc = true;
    i++;
  } else if (qp__cls_word_is(c->s, &t[i], "application_name")) {
    what = QP_IDENT_APPLICATION;
    guc = true;
    i++;
  } else {
    return;
  }
  if (i < n && (kw_of(c, &t[i]) == QP_KW_TO ||
                (t[i].type == QP_T_OP && t[i].end - t[i].start == 1 && c->s[t[i].start] == '=')))
    i++;
  else if (guc)
    return;
  if (i >= n) return; /* no value: not a statement the server runs */
  info->identity = what;
  info->identity_local = local;
  if (what == QP_IDENT_APPLICATION) {
    info->identity_default = qp__cls_word_is(c->s, &t[i], "default");
    return;
  }
  ident_value(c, &t[i], what == QP_IDENT_ROLE);
}

/* RESET x and DISCARD ALL: back to the session's defaults. */
static void ident_reset(qp__cls *c, qp_kw k0, const qp_tok *t, size_t n) {
  qp_stmt_info *info = c->info;
  unsigned what = 0;
  if (n < 2) return;
  if (k0 == QP_KW_DISCARD) {
    if (qp__cls_word_is(c->s, &t[1], "all"))
      what = QP_IDENT_ROLE | QP_IDENT_SESSION_AUTH | QP_IDENT_APPLICATION;
  } else if (qp__cls_word_is(c->s, &t[1], "role")) {
    what = QP_IDENT_ROLE;
  } else if (qp__cls_word_is(c->s, &t[1], "session_authorization") ||
             (n > 2 && qp__cls_word_is(c->s, &t[1], "session") &&
              qp__cls_word_is(c->s, &t[2], "authorization"))) {
    what = QP_IDENT_ROLE | QP_IDENT_SESSION_AUTH;
  } else if (qp__cls_word_is(c->s, &t[1], "application_name") ||
             qp__cls_word_is(c->s, &t[1], "all")) {
    what = QP_IDENT_APPLICATION;
  }
  if (what == 0) return;
  info->identity = what;
  info->identity_default = true;
}

/* SET ...: session state unless LOCAL, TRANSACTION or CONSTRAINTS. */
static void head_set(qp__cls *c, const qp_tok *t, size_t n) {
  qp_stmt_info *info = c->info;
  bool local = n > 1 && (qp__cls_word_is(c->s, &t[1], "local") ||
                         qp__cls_word_is(c->s, &t[1], "constraints"));
  if (n > 1 && kw_of(c, &t[1]) == QP_KW_TRANSACTION) {
    info->isolation = iso_scan(c, t[1].end);
    return;
  }
  info->changes_session = !local;
  if (c->d == QP_DIALECT_POSTGRES) ident_set(c, t, n);
  if (n > 2 && qp__cls_word_is(c->s, &t[1], "session") &&
      qp__cls_word_is(c->s, &t[2], "characteristics")) {
    info->isolation = iso_scan(c, t[2].end);
    return;
  }
  info->isolation = iso_setting(c, t, n);
}

static void head_tcl(qp__cls *c, qp_kw k0, const qp_tok *t, size_t n) {
  qp_stmt_info *info = c->info;
  switch (k0) {
  case QP_KW_BEGIN:
    info->tcl = QP_TCL_BEGIN;
    info->isolation = iso_scan(c, t[0].end);
    break;
  case QP_KW_START:
    info->tcl = QP_TCL_BEGIN;
    info->isolation = iso_scan(c, t[0].end);
    break;
  case QP_KW_COMMIT:
  case QP_KW_END:
    info->tcl = n > 1 && kw_of(c, &t[1]) == QP_KW_PREPARED ? QP_TCL_COMMIT_PREPARED : QP_TCL_COMMIT;
    break;
  case QP_KW_ROLLBACK:
    info->tcl = QP_TCL_ROLLBACK;
    if (n > 1 && kw_of(c, &t[1]) == QP_KW_PREPARED) info->tcl = QP_TCL_ROLLBACK_PREPARED;
    for (size_t i = 1; i < n && i < 3; i++)
      if (kw_of(c, &t[i]) == QP_KW_TO) info->tcl = QP_TCL_ROLLBACK_TO;
    break;
  case QP_KW_ABORT: info->tcl = QP_TCL_ROLLBACK; break;
  case QP_KW_SAVEPOINT: info->tcl = QP_TCL_SAVEPOINT; break;
  case QP_KW_RELEASE: info->tcl = QP_TCL_RELEASE; break;
  default: break;
  }
}

static void head_ddl(qp__cls *c, qp_kw k0, const qp_tok *t, size_t n) {
  qp_stmt_info *info = c->info;
  switch (k0) {
  case QP_KW_CREATE: info->ddl = QP_DDL_CREATE; break;
  case QP_KW_ALTER: info->ddl = QP_DDL_ALTER; break;
  case QP_KW_DROP: info->ddl = QP_DDL_DROP; break;
  case QP_KW_REFRESH: info->ddl = QP_DDL_REFRESH; break;
  case QP_KW_TRUNCATE:
    info->ddl = QP_DDL_TRUNCATE;
    c->ddl_obj = QP__OBJ_REL;
    c->fr[0].expect = QP__R_WRITE;
    c->fr[0].list = QP__R_WRITE;
    return;
  case QP_KW_GRANT: info->ddl = QP_DDL_GRANT; c->ddl_obj = QP__OBJ_OTHER; return;
  case QP_KW_REVOKE: info->ddl = QP_DDL_REVOKE; c->ddl_obj = QP__OBJ_OTHER; return;
  case QP_KW_COMMENT: info->ddl = QP_DDL_COMMENT; return;
  default: info->ddl = QP_DDL_MAINTENANCE; return; /* VACUUM ANALYZE REINDEX CLUSTER */
  }
  head_ddl_object(c, t, n);
  /* CREATE TEMP objects live as long as the session */
  if (info->creates_temp) info->changes_session = true;
}

void qp__cls_head(qp__cls *c) {
  qp_tok t[HEAD_TOKS];
  size_t pos = qp__sql_lex_sig(c->d, c->s, c->len, 0, &t[0]);
  if (t[0].type != QP_T_WORD) return;
  qp_kw k0 = kw_of(c, &t[0]);
  c->head_kw = k0;
  int hk = head_kind(k0, c->s, &t[0]);
  /* SELECT, WITH, INSERT...: the walk decides (most statements stop here) */
  if (hk < 0 && k0 != QP_KW_EXPLAIN) return;
  size_t n = 1;
  while (n < HEAD_TOKS) {
    pos = qp__sql_lex_sig(c->d, c->s, c->len, pos, &t[n]);
    if (t[n].type == QP_T_EOF || t[n].type == QP_T_SEMI) break;
    n++;
  }
  /* the steps may look past the end of a short head: pad with EOF */
  for (size_t i = n; i < HEAD_TOKS; i++) t[i] = (qp_tok){QP_T_EOF, c->len, c->len};
  qp_stmt_info *info = c->info;
  switch (hk) {
  case QP_STMT_TCL: head_tcl(c, k0, t, n); break;
  case QP_STMT_DDL: head_ddl(c, k0, t, n); break;
  default: break;
  }
  switch (k0) {
  case QP_KW_PREPARE:
    if (n > 1 && kw_of(c, &t[1]) == QP_KW_TRANSACTION) {
      hk = QP_STMT_TCL;
      info->tcl = QP_TCL_PREPARE;
    } else {
      info->changes_session = true;
    }
    break;
  case QP_KW_SET: head_set(c, t, n); break;
  case QP_KW_RESET:
    info->changes_session = true;
    if (c->d == QP_DIALECT_POSTGRES) ident_reset(c, k0, t, n);
    break;
  case QP_KW_LISTEN: case QP_KW_LOAD: case QP_KW_DECLARE:
  case QP_KW_ATTACH: case QP_KW_DETACH: case QP_KW_PRAGMA:
    info->changes_session = true;
    break;
  case QP_KW_DISCARD:
    info->drops_prepared = true;
    if (c->d == QP_DIALECT_POSTGRES) ident_reset(c, k0, t, n);
    break;
  case QP_KW_DEALLOCATE: info->drops_prepared = true; break;
  case QP_KW_DO: head_do(c, t[0].end); break;
  case QP_KW_COPY: c->fr[0].expect = QP__R_READ; break; /* the direction comes later */
  case QP_KW_EXPLAIN: c->explain_head = 1, c->explain = 1; break;
  default: break;
  }
  if (hk >= 0) c->kind = hk;
}
