/*
 * Step 2 of the classifier: the walk. One pass over the tokens with a
 * bounded stack of per-parenthesis frames (no recursion): each frame knows
 * its statement verb (a subquery or CTE body has its own) and which table
 * names it is expecting (after FROM, JOIN, INTO, UPDATE, USING, a DDL object
 * keyword). Names are recorded when the token after them shows they are not
 * a function call; a '(' after a run of names (a.b.c) that is not a table,
 * a type or a declared name is a call of that function.
 *
 * Each token goes through the steps below in order; the first that takes it
 * ends its turn: ddl_object (never takes), with_list, verb, name, token.
 */
#include <string.h>
#include <strings.h>

#include "classify_int.h"

/* Word lists carry their lengths: most tokens are rejected on length. */
typedef struct word {
  const char *w;
  size_t n;
} word;
#define W(x) {x, sizeof(x) - 1}

static bool word_in(const char *s, const qp_tok *t, const word *list) {
  if (t->type != QP_T_WORD) return false;
  size_t n = t->end - t->start;
  for (; list->w; list++)
    if (list->n == n && strncasecmp(s + t->start, list->w, n) == 0) return true;
  return false;
}

/* the token is done: remember it as the previous one */
static void advance(qp__cls *c, const qp_tok *t, qp_kw kw) {
  c->kw2 = c->kw1;
  c->kw1 = kw;
  c->prevtype = t->type;
  c->prevtok = *t;
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

/* ---- the run of names before a '(' ------------------------------------- */

/* Words after which a run of names is a declared object, never a call:
 * CREATE FUNCTION f(int), REFERENCES u(id), PREPARE q(int), EXECUTE q(1). */
static const word decl[] = {W("function"), W("procedure"), W("aggregate"), W("routine"),
                            W("references"), W("execute"), W("prepare"), {NULL, 0}};

static void chain_note(qp__cls *c, const qp_tok *t) {
  if (t->type == QP_T_WORD || t->type == QP_T_QIDENT) {
    if (c->chain_dot && c->chain_n > 0) {
      c->chain_n++;
    } else {
      c->chain_start = t->start;
      c->chain_n = 1;
      /* a type (x::numeric(10, 2), CAST(x AS numeric(10, 2))), an alias's
       * column list, IF [NOT] EXISTS f(int); the word before the run is
       * looked at only if a '(' follows (declares) */
      c->chain_no_call = c->prevtype == QP_T_CAST || c->kw1 == QP_KW_AS ||
                         c->kw1 == QP_KW_EXISTS || c->after_table;
      c->chain_before = c->prevtok;
    }
    c->chain_dot = false;
  } else if (t->type == QP_T_DOT && c->chain_n > 0 && !c->chain_dot) {
    c->chain_dot = true;
  } else {
    c->chain_n = 0;
    c->chain_dot = false;
  }
  c->after_table = false;
}

/* SQL syntax written like a call, and type modifiers: not functions. */
static const word not_calls[] = {
    W("cast"), W("coalesce"), W("nullif"), W("greatest"), W("least"), W("row"), W("array"),
    W("exists"), W("trim"), W("grouping"), W("values"), W("default"), W("check"),
    W("varchar"), W("char"), W("character"), W("varying"), W("nchar"), W("nvarchar"),
    W("numeric"), W("decimal"), W("dec"), W("bit"), W("varbit"), W("timestamp"),
    W("timestamptz"), W("time"), W("timetz"), W("interval"), W("float"), W("rollup"),
    W("cube"), W("sets"), W("overlaps"), W("system"), W("bernoulli"), W("repeatable"),
    {NULL, 0}};

/* A '(' follows the run of names that ended at the previous token. */
static void chain_call(qp__cls *c) {
  if (c->chain_n == 0 || c->chain_dot || c->chain_no_call) return;
  if (word_in(c->s, &c->chain_before, decl)) return;
  if (c->prevtype == QP_T_WORD && qp__sql_kw_operator(c->kw1)) return;
  if (c->chain_n == 1 && c->prevtype == QP_T_WORD && word_in(c->s, &c->prevtok, not_calls))
    return;
  char name[QP_STMT_NAME_MAX];
  name[0] = '\0';
  bool fits = true;
  size_t p = c->chain_start;
  qp_tok t;
  for (int i = 0; i < c->chain_n; i++) {
    p = qp__sql_lex_sig(c->d, c->s, c->len, p, &t);
    fits = fits && qp__cls_append_part(c->s, name, &t);
    if (i + 1 < c->chain_n) {
      p = qp__sql_lex_sig(c->d, c->s, c->len, p, &t); /* the dot */
      fits = fits && qp__sql_copy_name(name, sizeof name, ".", 1, false);
    }
  }
  qp__cls_call(c, name, fits);
}

/* ---- steps --------------------------------------------------------------- */

/* CREATE/ALTER/DROP: the object keyword says where the target's name is. */
static void step_ddl_object(qp__cls *c, qp__cframe *f, const qp_tok *t, qp_kw kw) {
  if (!c->ddl_target || c->ddl_done || c->depth != 0 || t->type != QP_T_WORD || c->ddl_on ||
      f->expect != QP__R_NONE)
    return;
  if (kw == QP_KW_TABLE || kw == QP_KW_VIEW || qp__cls_word_is(c->s, t, "sequence")) {
    c->ddl_done = true;
    f->expect = QP__R_WRITE;
    f->list = c->head_kw == QP_KW_DROP ? QP__R_WRITE : QP__R_NONE;
  } else if (kw == QP_KW_INDEX || kw == QP_KW_TRIGGER) {
    c->ddl_on = true;
  }
}

/* WITH [RECURSIVE] name [(cols)] AS [NOT] [MATERIALIZED] (body), ... */
static bool step_with_list(qp__cls *c, qp__cframe *f, const qp_tok *t, qp_kw kw) {
  if (f->with_state == 1 && (t->type == QP_T_WORD || t->type == QP_T_QIDENT) &&
      kw != QP_KW_RECURSIVE) {
    if (c->nctes < QP__CLS_MAX_CTES) {
      c->ctes[c->nctes][0] = '\0';
      if (qp__cls_append_part(c->s, c->ctes[c->nctes], t)) c->nctes++;
    } else {
      c->ctes_truncated = true;
    }
    f->with_state = 2;
    c->chain_n = 0; /* name (cols) AS (...): not a call */
  } else if (f->with_state == 3 && t->type == QP_T_COMMA) {
    f->with_state = 1;
  } else {
    return false;
  }
  f->ntok++;
  advance(c, t, kw);
  return true;
}

/* A statement verb at the head of a frame (or after UNION, a CTE list...). */
static bool step_verb(qp__cls *c, qp__cframe *f, const qp_tok *t, qp_kw kw) {
  if (t->type != QP_T_WORD) return false;
  qp_kw k1 = c->kw1, k2 = c->kw2;
  bool setop = k1 == QP_KW_UNION || k1 == QP_KW_EXCEPT || k1 == QP_KW_INTERSECT;
  bool setop2 = (k1 == QP_KW_ALL || k1 == QP_KW_DISTINCT) &&
                (k2 == QP_KW_UNION || k2 == QP_KW_EXCEPT || k2 == QP_KW_INTERSECT);
  bool head = f->ntok == 0 || f->with_state == 3 || setop || setop2 ||
              (c->depth == 0 && c->explain_head && c->kind < 0);
  if (!head) return false;
  if (kw == QP_KW_WITH) {
    if (c->depth == 0) c->with_top = true;
    f->with_state = 1;
    f->ntok++;
    advance(c, t, kw);
    return true;
  }
  int vk = verb_kind(kw);
  /* SQLite's REPLACE INTO starts a statement; elsewhere replace( is a call */
  if (vk < 0 || c->kind == QP_STMT_DDL ||
      (kw == QP_KW_REPLACE && (c->depth > 0 || (f->ntok > 0 && f->with_state != 3))))
    return false;
  f->verb = kw == QP_KW_REPLACE ? QP_KW_INSERT
                                : (kw == QP_KW_VALUES || kw == QP_KW_TABLE ? QP_KW_SELECT : kw);
  f->with_state = 0;
  f->target_done = false;
  f->expect = QP__R_NONE;
  f->list = QP__R_NONE;
  /* The statement's kind is its top-level verb; a CTE body's verb only
   * counts for the reads and writes. */
  if (c->depth == 0 || (c->kind < 0 && !c->with_top)) {
    if (c->explain == 1) vk = QP_STMT_SELECT;
    if (c->kind < 0) c->kind = vk;
    c->explain_head = 0;
  }
  if (f->verb == QP_KW_INSERT || f->verb == QP_KW_UPDATE || f->verb == QP_KW_DELETE ||
      f->verb == QP_KW_MERGE) {
    c->any_write_verb = true;
    if (c->depth > 0) c->info->writing_cte = true;
  }
  if (kw == QP_KW_UPDATE) f->expect = QP__R_WRITE;
  if (kw == QP_KW_TABLE) f->expect = QP__R_READ;
  f->ntok++;
  advance(c, t, kw);
  return true;
}

/* temp.t (SQLite's temporary schema) is a name, not the TEMP modifier */
static bool next_is_dot(const qp__cls *c) {
  qp_tok u;
  qp__sql_lex_sig(c->d, c->s, c->len, c->pos, &u);
  return u.type == QP_T_DOT;
}

/* A table name where one is expected: [schema.]name, or a function in FROM. */
static bool step_name(qp__cls *c, qp__cframe *f, const qp_tok *t, qp_kw kw) {
  if (f->expect == QP__R_NONE || (t->type != QP_T_WORD && t->type != QP_T_QIDENT)) return false;
  static const word skip[] = {W("only"), W("lateral"), W("table"), W("temp"), W("temporary"),
                              W("unlogged"), W("if"), W("not"), W("exists"), W("view"),
                              W("materialized"), W("concurrently"), W("foreign"), W("or"),
                              W("sequence"), {NULL, 0}};
  /* UPDATE OR IGNORE t (SQLite): the conflict clause is not a name */
  if (t->type == QP_T_WORD && (word_in(c->s, t, skip) || c->kw1 == QP_KW_OR) &&
      !next_is_dot(c)) {
    /* SELECT ... INTO TEMP t */
    if (f->verb == QP_KW_SELECT && f->expect == QP__R_WRITE &&
        (kw == QP_KW_TEMP || kw == QP_KW_TEMPORARY))
      c->info->creates_temp = true;
    f->ntok++;
    advance(c, t, kw);
    return true;
  }
  if (t->type == QP_T_WORD && qp__sql_kw_operator(kw) && !next_is_dot(c)) {
    /* a keyword where a name was expected: the clause ended */
    f->expect = QP__R_NONE;
    return false;
  }
  qp__role r = f->expect;
  char name[QP_STMT_NAME_MAX];
  name[0] = '\0';
  bool ok = qp__cls_append_part(c->s, name, t), qualified = false;
  qp_tok u;
  size_t q = qp__sql_lex_sig(c->d, c->s, c->len, c->pos, &u);
  while (u.type == QP_T_DOT) {
    qp_tok v;
    size_t q2 = qp__sql_lex_sig(c->d, c->s, c->len, q, &v);
    if (v.type != QP_T_WORD && v.type != QP_T_QIDENT) break;
    ok = ok && qp__sql_copy_name(name, sizeof name, ".", 1, false) &&
         qp__cls_append_part(c->s, name, &v);
    qualified = true;
    q = qp__sql_lex_sig(c->d, c->s, c->len, q2, &u);
    c->pos = q2;
  }
  bool copy = c->kind == QP_STMT_COPY && c->depth == 0;
  if (u.type == QP_T_LPAREN && r == QP__R_READ && !copy) {
    qp__cls_call(c, name, ok); /* a function in FROM, not a table */
  } else if (!ok) {
    c->info->tables_truncated = true;
  } else if (copy) {
    if (!c->copy_named) {
      strcpy(c->copy_name, name);
      c->copy_named = true;
      c->copy_qualified = qualified;
    }
  } else {
    qp__cls_record(c, r, name, qualified);
  }
  if (f->expect == QP__R_WRITE && f->verb == QP_KW_DELETE) f->target_done = true;
  f->expect = QP__R_NONE;
  f->ntok++;
  advance(c, t, QP_KW_NONE);
  c->prevtype = t->type;
  c->chain_n = 0; /* a '(' after a table is its column list, not a call */
  c->after_table = true;
  return true;
}

static void lock_clause(qp__cls *c, qp_kw kw) {
  qp_lock l = QP_LOCK_NONE;
  if (kw == QP_KW_UPDATE && c->kw1 == QP_KW_FOR) l = QP_LOCK_UPDATE;
  else if (kw == QP_KW_UPDATE && c->kw1 == QP_KW_KEY && c->kw2 == QP_KW_NO) l = QP_LOCK_NO_KEY_UPDATE;
  else if (kw == QP_KW_SHARE && c->kw1 == QP_KW_FOR) l = QP_LOCK_SHARE;
  else if (kw == QP_KW_SHARE && c->kw1 == QP_KW_KEY) l = QP_LOCK_KEY_SHARE;
  if (l > c->info->locking && c->kind != QP_STMT_DDL) c->info->locking = l;
}

/* CREATE OPERATOR ... (JOIN = eqjoinsel, HASHES), ALTER FUNCTION ... FROM:
 * DDL on things that are not tables names no tables outside its query. */
static bool ddl_without_tables(const qp__cls *c) {
  return c->kind == QP_STMT_DDL && c->ddl_obj == QP__OBJ_OTHER && !c->ddl_list_calls;
}

/* Keywords that start or end clauses. */
static void step_keyword(qp__cls *c, qp__cframe *f, qp_kw kw) {
  if ((kw == QP_KW_FROM || kw == QP_KW_JOIN || kw == QP_KW_USING) && ddl_without_tables(c)) return;
  switch (kw) {
  case QP_KW_FROM:
    if (f->call) break;
    /* REVOKE ... FROM role */
    if (c->info->ddl == QP_DDL_REVOKE || c->info->ddl == QP_DDL_GRANT) break;
    if (c->kw1 == QP_KW_DISTINCT) break; /* IS [NOT] DISTINCT FROM */
    if (c->kind == QP_STMT_COPY && c->depth == 0) {
      c->fr[0].expect = QP__R_NONE;
      c->copy_dir = QP__R_WRITE;
      break;
    }
    if (f->verb == QP_KW_DELETE && !f->target_done) {
      f->expect = QP__R_WRITE;
    } else {
      f->expect = QP__R_READ;
      f->list = QP__R_READ;
    }
    break;
  case QP_KW_JOIN:
    f->expect = QP__R_READ;
    f->list = QP__R_READ;
    break;
  case QP_KW_USING:
    if (f->verb == QP_KW_DELETE || f->verb == QP_KW_MERGE) {
      f->expect = QP__R_READ;
      f->list = QP__R_READ;
    }
    break;
  case QP_KW_INTO:
    if (f->verb == QP_KW_INSERT || f->verb == QP_KW_MERGE) {
      f->expect = QP__R_WRITE;
    } else if (f->verb == QP_KW_SELECT && c->kind != QP_STMT_DDL) {
      f->expect = QP__R_WRITE;
      c->info->select_into = true;
    }
    break;
  case QP_KW_ON:
    if (c->ddl_on && c->depth == 0) {
      c->ddl_on = false;
      c->ddl_done = true;
      c->fr[0].expect = QP__R_WRITE;
      c->fr[0].list = QP__R_NONE;
      break;
    }
    f->list = QP__R_NONE;
    break;
  case QP_KW_TO:
    if (c->kind == QP_STMT_COPY && c->depth == 0) {
      c->fr[0].expect = QP__R_NONE;
      c->copy_dir = QP__R_READ;
    }
    break;
  case QP_KW_UPDATE:
  case QP_KW_SHARE:
    lock_clause(c, kw);
    break;
  case QP_KW_WHERE: case QP_KW_GROUP: case QP_KW_ORDER: case QP_KW_HAVING:
  case QP_KW_LIMIT: case QP_KW_SET: case QP_KW_RETURNING: case QP_KW_WINDOW:
  case QP_KW_UNION: case QP_KW_EXCEPT: case QP_KW_INTERSECT: case QP_KW_VALUES:
  case QP_KW_SELECT: case QP_KW_WHEN: case QP_KW_OFFSET: case QP_KW_FETCH:
    f->expect = QP__R_NONE;
    f->list = QP__R_NONE;
    break;
  case QP_KW_CURRENT_DATE: case QP_KW_CURRENT_TIME: case QP_KW_CURRENT_TIMESTAMP:
  case QP_KW_LOCALTIME: case QP_KW_LOCALTIMESTAMP:
    c->info->volatile_fn = true;
    break;
  default:
    break;
  }
}

static void open_paren(qp__cls *c, qp__cframe *f) {
  qp__role inner = QP__R_NONE;
  if (f != NULL) {
    /* CTE: name (cols) AS [NOT MATERIALIZED] ( body ) */
    if (f->with_state == 2 && (c->kw1 == QP_KW_AS || c->kw1 == QP_KW_MATERIALIZED))
      f->with_state = 3;
    /* FROM ( a JOIN b ... ): a parenthesized join lists tables too */
    if (f->expect == QP__R_READ) inner = QP__R_READ;
    f->expect = QP__R_NONE;
    f->ntok++;
  }
  chain_call(c);
  bool call = (c->prevtype == QP_T_WORD && !qp__sql_kw_operator(c->kw1)) ||
              c->prevtype == QP_T_QIDENT;
  c->depth++;
  if (c->depth < QP__CLS_MAX_FRAMES) {
    memset(&c->fr[c->depth], 0, sizeof c->fr[c->depth]);
    c->fr[c->depth].call = call;
    c->fr[c->depth].expect = inner;
  } else {
    c->info->tables_truncated = true;
  }
}

/* Everything the other steps did not take. */
static void step_token(qp__cls *c, qp__cframe *f, const qp_tok *t, qp_kw kw) {
  switch (t->type) {
  case QP_T_WORD:
    if (f != NULL) step_keyword(c, f, kw);
    if (c->kind == QP_STMT_DDL) {
      if (kw == QP_KW_SELECT || kw == QP_KW_VALUES || kw == QP_KW_WITH) c->ddl_list_calls = true;
      /* DROP ... CASCADE, not a foreign key's ON DELETE CASCADE */
      if (c->kw1 != QP_KW_DELETE && c->kw1 != QP_KW_UPDATE &&
          qp__cls_word_is(c->s, t, "cascade"))
        c->ddl_cascade = true;
    }
    break;
  case QP_T_COMMA:
    if (f != NULL && f->list != QP__R_NONE) f->expect = f->list;
    break;
  case QP_T_LPAREN:
    open_paren(c, f);
    advance(c, t, QP_KW_NONE);
    return;
  case QP_T_RPAREN:
    if (c->depth > 0) c->depth--;
    advance(c, t, QP_KW_NONE);
    if (c->depth < QP__CLS_MAX_FRAMES) c->fr[c->depth].ntok++;
    return;
  default:
    break;
  }
  if (f != NULL) f->ntok++;
  advance(c, t, kw);
}

void qp__cls_walk(qp__cls *c) {
  /* the head step took the first word when it decided something */
  bool head_taken = c->kind >= 0 || c->explain_head;
  qp_tok t;
  c->pos = 0;
  for (;;) {
    c->pos = qp__sql_lex_sig(c->d, c->s, c->len, c->pos, &t);
    if (t.type == QP_T_EOF || t.type == QP_T_SEMI) break;
    qp__cframe *f = c->depth < QP__CLS_MAX_FRAMES ? &c->fr[c->depth] : NULL;
    qp_kw kw = t.type == QP_T_WORD ? qp__sql_keyword(c->s + t.start, t.end - t.start) : QP_KW_NONE;
    if (t.type == QP_T_STRING && t.end - t.start == 5 &&
        strncasecmp(c->s + t.start, "'now'", 5) == 0)
      c->info->volatile_fn = true;
    if (t.type == QP_T_LPAREN) {
      step_token(c, f, &t, kw); /* reads the run of names before it first */
      chain_note(c, &t);
      c->nstmt++;
      continue;
    }
    chain_note(c, &t);
    if (c->nstmt++ == 0 && head_taken && t.type == QP_T_WORD) {
      c->fr[0].ntok++;
      advance(c, &t, kw);
      continue;
    }
    if (f == NULL) {
      step_token(c, f, &t, kw);
      continue;
    }
    if (t.type == QP_T_WORD && kw == QP_KW_ANALYZE && c->explain_head && c->kind < 0)
      c->explain = 2;
    step_ddl_object(c, f, &t, kw);
    if (step_with_list(c, f, &t, kw)) continue;
    if (step_verb(c, f, &t, kw)) continue;
    if (step_name(c, f, &t, kw)) continue;
    step_token(c, f, &t, kw);
  }
}
