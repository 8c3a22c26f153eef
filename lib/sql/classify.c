/*
 * Statement classification: the kind, whether it can write, whether its
 * result can change without a write, and the tables it reads and writes.
 *
 * One pass over the tokens with a bounded stack of per-parenthesis frames
 * (no recursion): each frame knows its statement verb (a subquery or CTE
 * body has its own) and which table names it is expecting (after FROM, JOIN,
 * INTO, UPDATE, USING, a DDL object keyword). Names are recorded when the
 * token after them shows they are not a function call.
 */
#include <string.h>
#include <strings.h>

#include "internal.h"
#include "sql_int.h"

#define MAX_FRAMES 64
#define MAX_CTES 16

typedef enum role { R_NONE = 0, R_READ, R_WRITE } role;

typedef struct frame {
  qp_kw verb;        /* SELECT, INSERT, UPDATE, DELETE, MERGE or NONE */
  role expect;       /* a table name is expected next */
  role list;         /* after a name, ',' expects another (FROM a, b; DROP TABLE a, b) */
  bool call;         /* the parenthesis belongs to a function call */
  bool target_done;  /* DELETE FROM's target was read */
  int with_state;    /* 1: CTE name next, 2: after the name, 3: after the body */
  size_t ntok;       /* tokens seen in this frame */
} frame;

typedef struct cls {
  qp_dialect d;
  const char *s;
  size_t len;
  qp_stmt_info *info;
  char ctes[MAX_CTES][QP_STMT_TABLE_NAME_MAX];
  size_t nctes;
  bool ctes_truncated;
  bool any_write_verb, select_into, locking, write_fn;
  int explain; /* 0 none, 1 EXPLAIN, 2 EXPLAIN ANALYZE */
  char copy_name[QP_STMT_TABLE_NAME_MAX]; /* COPY's table, read or written by direction */
  bool copy_named, copy_qualified;
  role copy_dir;
  int kind;    /* -1 unset */
} cls;

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

static bool word_is(const char *s, const qp_tok *t, const char *w) {
  size_t n = strlen(w);
  return t->type == QP_T_WORD && t->end - t->start == n && strncasecmp(s + t->start, w, n) == 0;
}

static bool word_in(const char *s, const qp_tok *t, const char *const *list) {
  for (; *list; list++)
    if (word_is(s, t, *list)) return true;
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

/* Appends one name part (unquoted lower-cased; quotes removed). */
static bool append_part(cls *c, char *dst, const qp_tok *t) {
  const char *p = c->s + t->start;
  size_t n = t->end - t->start;
  if (t->type == QP_T_WORD) return qp__sql_copy_name(dst, QP_STMT_TABLE_NAME_MAX, p, n, true);
  /* quoted: "x" U&"x" `x` [x] */
  if (n > 0 && (p[0] == 'u' || p[0] == 'U')) {
    p += 2;
    n -= 2;
  }
  char q = n > 0 ? p[0] : '"';
  char close = q == '[' ? ']' : q;
  if (n > 0) {
    p++;
    n--;
  }
  if (n > 0 && p[n - 1] == close) n--;
  size_t dn = strlen(dst);
  for (size_t i = 0; i < n; i++) {
    if (dn + 1 >= QP_STMT_TABLE_NAME_MAX) return false;
    dst[dn++] = p[i];
    if (p[i] == q && q != '[' && i + 1 < n && p[i + 1] == q) i++; /* "" -> " */
  }
  dst[dn] = '\0';
  return true;
}

static void record(cls *c, role r, const char *name, bool qualified) {
  qp_stmt_info *info = c->info;
  if (!qualified) {
    for (size_t i = 0; i < c->nctes; i++)
      if (strcmp(c->ctes[i], name) == 0) return;
  }
  char (*list)[QP_STMT_TABLE_NAME_MAX] = r == R_WRITE ? info->write : info->read;
  size_t *n = r == R_WRITE ? &info->nwrite : &info->nread;
  for (size_t i = 0; i < *n; i++)
    if (strcmp(list[i], name) == 0) return;
  if (*n >= QP_STMT_MAX_TABLES) {
    info->tables_truncated = true;
    return;
  }
  strcpy(list[(*n)++], name);
}

static void set_kind(cls *c, int kind) {
  if (c->kind < 0) c->kind = kind;
}

static int verb_kind(qp_kw kw) {
  switch (kw) {
  case QP_KW_SELECT: return QP_STMT_SELECT;
  case QP_KW_VALUES: return QP_STMT_SELECT;
  case QP_KW_TABLE: return QP_STMT_SELECT;
  case QP_KW_INSERT: return QP_STMT_INSERT;
  case QP_KW_REPLACE: return QP_STMT_INSERT;
  case QP_KW_UPDATE: return QP_STMT_UPDATE;
  case QP_KW_DELETE: return QP_STMT_DELETE;
  case QP_KW_MERGE: return QP_STMT_MERGE;
  default: return -1;
  }
}

/* The kind a statement's first word gives, or -1 when it is not decisive. */
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
  if (word_in(s, t, other)) return QP_STMT_OTHER;
  return -1;
}

void qp_sql_classify(qp_dialect dialect, const char *sql, size_t len, qp_stmt_info *info) {
  if (info == NULL) return;
  memset(info, 0, sizeof *info);
  if (sql == NULL) len = 0;
  cls c;
  memset(&c, 0, sizeof c);
  c.d = dialect;
  c.s = sql != NULL ? sql : "";
  c.len = len;
  c.info = info;
  c.kind = -1;

  frame fr[MAX_FRAMES];
  memset(&fr[0], 0, sizeof fr[0]);
  size_t depth = 0;   /* real parenthesis depth */
  size_t nstmt = 0;   /* significant tokens in the statement */
  qp_kw kw1 = QP_KW_NONE, kw2 = QP_KW_NONE;
  qp_tok_type prevtype = QP_T_EOF;
  qp_kw head_kw = QP_KW_NONE;
  bool ddl_target = false;   /* DDL whose object is a table or view (CREATE/ALTER/DROP...) */
  bool ddl_on = false;       /* DDL: the table follows ON (INDEX, TRIGGER) */
  bool ddl_done = false;     /* DDL: the target was found */
  int explain_head = 0;      /* EXPLAIN seen, verb not yet */
  bool with_top = false;     /* the statement starts with WITH */
  size_t pos = 0;
  qp_tok t;

  for (;;) {
    pos = qp__sql_lex_sig(dialect, c.s, len, pos, &t);
    if (t.type == QP_T_EOF || t.type == QP_T_SEMI) break;
    frame *f = depth < MAX_FRAMES ? &fr[depth] : NULL;
    bool tracked = f != NULL;
    qp_kw kw = t.type == QP_T_WORD ? qp__sql_keyword(c.s + t.start, t.end - t.start) : QP_KW_NONE;

    if (t.type == QP_T_STRING && t.end - t.start == 5 &&
        strncasecmp(c.s + t.start, "'now'", 5) == 0)
      info->volatile_fn = true;

    /* ---- the statement's first word ---- */
    if (nstmt == 0 && t.type == QP_T_WORD) {
      int hk = head_kind(kw, c.s, &t);
      head_kw = kw;
      if (kw == QP_KW_PREPARE) {
        qp_tok u;
        qp__sql_lex_sig(dialect, c.s, len, pos, &u);
        if (word_is(c.s, &u, "transaction")) hk = QP_STMT_TCL;
      }
      if (hk >= 0) set_kind(&c, hk);
      if (kw == QP_KW_EXPLAIN) explain_head = 1, c.explain = 1;
      ddl_target = kw == QP_KW_CREATE || kw == QP_KW_ALTER || kw == QP_KW_DROP ||
                   kw == QP_KW_REFRESH;
      if (kw == QP_KW_TRUNCATE) {
        fr[0].expect = R_WRITE;
        fr[0].list = R_WRITE;
      }
      if (kw == QP_KW_COPY) fr[0].expect = R_READ; /* the direction comes later */
      if (hk >= 0 || kw == QP_KW_EXPLAIN) {
        nstmt++;
        fr[0].ntok++;
        kw2 = kw1, kw1 = kw, prevtype = t.type;
        continue;
      }
    }
    nstmt++;

    if (tracked && t.type == QP_T_WORD && kw == QP_KW_ANALYZE && explain_head && c.kind < 0)
      c.explain = 2;

    /* ---- DDL objects ---- */
    if (ddl_target && !ddl_done && depth == 0 && t.type == QP_T_WORD && !ddl_on &&
        fr[0].expect == R_NONE) {
      if (kw == QP_KW_TABLE || word_is(c.s, &t, "view")) {
        ddl_done = true;
        fr[0].expect = R_WRITE;
        fr[0].list = head_kw == QP_KW_DROP ? R_WRITE : R_NONE;
      } else if (kw == QP_KW_INDEX || kw == QP_KW_TRIGGER) {
        ddl_on = true;
      }
    }

    /* ---- WITH lists ---- */
    if (tracked && f->with_state == 1 && (t.type == QP_T_WORD || t.type == QP_T_QIDENT) &&
        kw != QP_KW_RECURSIVE) {
      if (c.nctes < MAX_CTES) {
        c.ctes[c.nctes][0] = '\0';
        if (append_part(&c, c.ctes[c.nctes], &t)) c.nctes++;
      } else {
        c.ctes_truncated = true;
      }
      f->with_state = 2;
      f->ntok++;
      kw2 = kw1, kw1 = kw, prevtype = t.type;
      continue;
    }
    if (tracked && f->with_state == 3 && t.type == QP_T_COMMA) {
      f->with_state = 1;
      f->ntok++;
      kw2 = kw1, kw1 = kw, prevtype = t.type;
      continue;
    }

    /* ---- statement verbs ---- */
    bool head = tracked && (f->ntok == 0 || f->with_state == 3 ||
                            kw1 == QP_KW_UNION || kw1 == QP_KW_EXCEPT || kw1 == QP_KW_INTERSECT ||
                            ((kw1 == QP_KW_ALL || kw1 == QP_KW_DISTINCT) &&
                             (kw2 == QP_KW_UNION || kw2 == QP_KW_EXCEPT || kw2 == QP_KW_INTERSECT)) ||
                            (depth == 0 && explain_head && c.kind < 0));
    if (head && t.type == QP_T_WORD && kw == QP_KW_WITH) {
      if (depth == 0) with_top = true;
      f->with_state = 1;
      f->ntok++;
      kw2 = kw1, kw1 = kw, prevtype = t.type;
      continue;
    }
    if (head && t.type == QP_T_WORD && verb_kind(kw) >= 0 && c.kind != QP_STMT_DDL &&
        !(kw == QP_KW_REPLACE && f->ntok > 0)) {
      f->verb = kw == QP_KW_REPLACE ? QP_KW_INSERT : (kw == QP_KW_VALUES || kw == QP_KW_TABLE ? QP_KW_SELECT : kw);
      f->with_state = 0;
      f->target_done = false;
      f->expect = R_NONE;
      f->list = R_NONE;
      /* The statement's kind is its top-level verb; a CTE body's verb only
       * counts for the reads and writes. */
      if (depth == 0 || (c.kind < 0 && !with_top)) {
        int vk = verb_kind(kw);
        if (c.explain == 1 && vk >= 0) vk = QP_STMT_SELECT;
        set_kind(&c, vk);
        explain_head = 0;
      }
      if (f->verb == QP_KW_INSERT || f->verb == QP_KW_UPDATE || f->verb == QP_KW_DELETE ||
          f->verb == QP_KW_MERGE)
        c.any_write_verb = true;
      if (kw == QP_KW_UPDATE) f->expect = R_WRITE;
      if (kw == QP_KW_TABLE) f->expect = R_READ;
      f->ntok++;
      kw2 = kw1, kw1 = kw, prevtype = t.type;
      continue;
    }

    /* ---- names ---- */
    if (tracked && f->expect != R_NONE && (t.type == QP_T_WORD || t.type == QP_T_QIDENT)) {
      static const char *const skip[] = {"only", "lateral", "table", "temp", "temporary",
                                         "unlogged", "if", "not", "exists", "view",
                                         "materialized", "concurrently", "foreign", "or", NULL};
      /* UPDATE OR IGNORE t (SQLite): the conflict clause is not a name */
      if (t.type == QP_T_WORD && (word_in(c.s, &t, skip) || kw1 == QP_KW_OR)) {
        f->ntok++;
        kw2 = kw1, kw1 = kw, prevtype = t.type;
        continue;
      }
      if (t.type == QP_T_WORD && qp__sql_kw_operator(kw)) {
        /* a keyword where a name was expected: the clause ended */
        f->expect = R_NONE;
      } else {
        role r = f->expect;
        char name[QP_STMT_TABLE_NAME_MAX];
        name[0] = '\0';
        bool ok = append_part(&c, name, &t), qualified = false;
        qp_tok u;
        size_t q = qp__sql_lex_sig(dialect, c.s, len, pos, &u);
        while (u.type == QP_T_DOT) {
          qp_tok v;
          size_t q2 = qp__sql_lex_sig(dialect, c.s, len, q, &v);
          if (v.type != QP_T_WORD && v.type != QP_T_QIDENT) break;
          ok = ok && qp__sql_copy_name(name, sizeof name, ".", 1, false) && append_part(&c, name, &v);
          qualified = true;
          q = qp__sql_lex_sig(dialect, c.s, len, q2, &u);
          pos = q2;
        }
        bool copy = c.kind == QP_STMT_COPY && depth == 0;
        if (u.type == QP_T_LPAREN && r == R_READ && !copy) {
          /* a function in FROM, not a table */
          if (word_in(c.s, &t, volatile_fns)) info->volatile_fn = true;
          if (word_in(c.s, &t, writing_fns)) c.write_fn = true;
        } else if (!ok) {
          info->tables_truncated = true;
        } else if (copy) {
          if (!c.copy_named) {
            strcpy(c.copy_name, name);
            c.copy_named = true;
            c.copy_qualified = qualified;
          }
        } else {
          record(&c, r, name, qualified);
        }
        if (f->expect == R_WRITE && f->verb == QP_KW_DELETE) f->target_done = true;
        f->expect = R_NONE;
        f->ntok++;
        kw2 = kw1, kw1 = QP_KW_NONE, prevtype = t.type;
        continue;
      }
    }

    switch (t.type) {
    case QP_T_WORD:
      if (!tracked) break;
      switch (kw) {
      case QP_KW_FROM:
        if (f->call) break;
        if (kw1 == QP_KW_DISTINCT) break; /* IS [NOT] DISTINCT FROM */
        if (c.kind == QP_STMT_COPY && depth == 0) {
          fr[0].expect = R_NONE;
          c.copy_dir = R_WRITE;
          break;
        }
        if (f->verb == QP_KW_DELETE && !f->target_done) {
          f->expect = R_WRITE;
        } else {
          f->expect = R_READ;
          f->list = R_READ;
        }
        break;
      case QP_KW_JOIN:
        f->expect = R_READ;
        f->list = R_READ;
        break;
      case QP_KW_USING:
        if (f->verb == QP_KW_DELETE || f->verb == QP_KW_MERGE) {
          f->expect = R_READ;
          f->list = R_READ;
        }
        break;
      case QP_KW_INTO:
        if (f->verb == QP_KW_INSERT || f->verb == QP_KW_MERGE) {
          f->expect = R_WRITE;
        } else if (f->verb == QP_KW_SELECT && c.kind != QP_STMT_DDL) {
          f->expect = R_WRITE;
          c.select_into = true;
        }
        break;
      case QP_KW_ON:
        if (ddl_on && depth == 0) {
          ddl_on = false;
          ddl_done = true;
          fr[0].expect = R_WRITE;
          fr[0].list = R_NONE;
          break;
        }
        f->list = R_NONE;
        break;
      case QP_KW_TO:
        if (c.kind == QP_STMT_COPY && depth == 0) {
          fr[0].expect = R_NONE;
          c.copy_dir = R_READ;
        }
        break;
      case QP_KW_UPDATE:
      case QP_KW_SHARE:
        if (kw1 == QP_KW_FOR || kw1 == QP_KW_KEY) c.locking = true;
        break;
      case QP_KW_WHERE: case QP_KW_GROUP: case QP_KW_ORDER: case QP_KW_HAVING:
      case QP_KW_LIMIT: case QP_KW_SET: case QP_KW_RETURNING: case QP_KW_WINDOW:
      case QP_KW_UNION: case QP_KW_EXCEPT: case QP_KW_INTERSECT: case QP_KW_VALUES:
      case QP_KW_SELECT: case QP_KW_WHEN: case QP_KW_OFFSET: case QP_KW_FETCH:
        f->expect = R_NONE;
        f->list = R_NONE;
        break;
      case QP_KW_CURRENT_DATE: case QP_KW_CURRENT_TIME: case QP_KW_CURRENT_TIMESTAMP:
      case QP_KW_LOCALTIME: case QP_KW_LOCALTIMESTAMP:
        info->volatile_fn = true;
        break;
      default: {
        /* function calls */
        qp_tok u;
        qp__sql_lex_sig(dialect, c.s, len, pos, &u);
        if (u.type == QP_T_LPAREN) {
          if (word_in(c.s, &t, writing_fns)) c.write_fn = true;
          if (word_in(c.s, &t, volatile_fns)) info->volatile_fn = true;
        }
        break;
      }
      }
      break;
    case QP_T_COMMA:
      if (tracked && f->list != R_NONE) f->expect = f->list;
      break;
    case QP_T_LPAREN: {
      role inner = R_NONE;
      if (tracked) {
        /* CTE: name (cols) AS [NOT MATERIALIZED] ( body ) */
        bool body = f->with_state == 2 && (kw1 == QP_KW_AS || kw1 == QP_KW_MATERIALIZED);
        if (body) f->with_state = 3;
        /* FROM ( a JOIN b ... ): a parenthesized join lists tables too */
        if (f->expect == R_READ) inner = R_READ;
        f->expect = R_NONE;
        f->ntok++;
      }
      bool call = (prevtype == QP_T_WORD && !qp__sql_kw_operator(kw1)) || prevtype == QP_T_QIDENT;
      depth++;
      if (depth < MAX_FRAMES) {
        memset(&fr[depth], 0, sizeof fr[depth]);
        fr[depth].call = call;
        fr[depth].expect = inner;
      } else {
        info->tables_truncated = true;
      }
      kw2 = kw1, kw1 = QP_KW_NONE, prevtype = t.type;
      continue;
    }
    case QP_T_RPAREN:
      if (depth > 0) depth--;
      kw2 = kw1, kw1 = QP_KW_NONE, prevtype = t.type;
      if (depth < MAX_FRAMES) fr[depth].ntok++;
      continue;
    default:
      break;
    }
    if (tracked) f->ntok++;
    kw2 = kw1;
    kw1 = kw;
    prevtype = t.type;
  }

  if (c.kind < 0) c.kind = QP_STMT_OTHER;
  info->kind = (qp_stmt_kind)c.kind;
  if (c.explain == 1) {
    info->nwrite = 0;
    memset(info->write, 0, sizeof info->write);
  }
  if (c.ctes_truncated) info->tables_truncated = true;
  if (c.copy_named) record(&c, c.copy_dir == R_WRITE ? R_WRITE : R_READ, c.copy_name, true);
  info->read_only = info->kind == QP_STMT_SELECT &&
                    (c.explain == 1 || (!c.any_write_verb && !c.select_into && !c.locking && !c.write_fn));
}
