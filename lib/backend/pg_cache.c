/*
 * What the result cache asks a PostgreSQL connection: who the server and
 * session are, what a table or function name is. Run with PQexecParams on
 * the lease holder's thread, outside the statement cache and never
 * recorded. Writes by other processes cannot be seen here (no change
 * stream yet): the cache's TTL bounds them.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "sql/sql_int.h"

PGconn *qp__pg_conn(qp__bconn *b);

/* The server: system identifier (when this role may read it), postmaster
 * start (as a number: its text would depend on TimeZone) and the
 * database's oid. The session: roles, search_path, every setting not at its
 * default, and the backend's pid when it has a temporary schema (its names
 * shadow everyone else's). */
static const char identity_sql[] =
    "SELECT CASE WHEN has_function_privilege('pg_control_system()', 'execute') "
    "THEN (SELECT system_identifier::text FROM pg_control_system()) ELSE '' END "
    "|| '/' || extract(epoch FROM pg_postmaster_start_time())::text "
    "|| '/' || (SELECT oid::text FROM pg_database WHERE datname = current_database()), "
    "current_user || E'\\n' || session_user || E'\\n' || current_database() || E'\\n' || "
    "current_setting('search_path') || E'\\n' || "
    "CASE WHEN pg_my_temp_schema() <> 0 THEN 'temp:' || pg_backend_pid()::text ELSE '' END "
    "|| E'\\n' || coalesce((SELECT string_agg(name || '=' || setting, E'\\n' ORDER BY name) "
    "FROM pg_settings WHERE source NOT IN ('default', 'override')), ''), "
    "current_setting('default_transaction_isolation') IN ('repeatable read', 'serializable')";

static bool command(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  bool ok = r != NULL && PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  return ok;
}

/* Every question below goes through here. Inside the user's transaction
 * block (the cache reads in a block that has not written) it runs in a
 * savepoint of its own, so that a question that fails (the user's
 * lock_timeout or statement_timeout, a cancel) is rolled back alone and
 * never aborts the user's transaction; outside a block it is a statement of
 * its own. A failure's message is copied to why (may be NULL) before the
 * savepoint's commands replace libpq's. NULL on failure. */
static PGresult *lookup(qp__bconn *b, const char *sql, const char *arg, char *why, size_t cap) {
  PGconn *c = qp__pg_conn(b);
  bool guard = PQtransactionStatus(c) == PQTRANS_INTRANS;
  if (guard && !command(c, "SAVEPOINT qp_cache_lookup")) {
    if (why != NULL) snprintf(why, cap, "%s", PQerrorMessage(c));
    return NULL;
  }
  const char *vals[1] = {arg};
  PGresult *r = PQexecParams(c, sql, arg ? 1 : 0, NULL, arg ? vals : NULL, NULL, NULL, 0);
  bool ok = r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK;
  if (!ok && why != NULL) snprintf(why, cap, "%s", r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(c));
  if (!ok) {
    PQclear(r);
    r = NULL;
  }
  if (guard) {
    if (!ok) command(c, "ROLLBACK TO SAVEPOINT qp_cache_lookup");
    command(c, "RELEASE SAVEPOINT qp_cache_lookup");
  }
  return r;
}

static PGresult *run_why(qp__bconn *b, const char *sql, const char *arg, char *why, size_t cap) {
  PGresult *r = lookup(b, sql, arg, why, cap);
  if (r != NULL && PQntuples(r) == 1) return r;
  if (r != NULL && why != NULL) snprintf(why, cap, "%d rows", PQntuples(r));
  PQclear(r);
  return NULL;
}

static PGresult *run(qp__bconn *b, const char *sql, const char *arg) {
  return run_why(b, sql, arg, NULL, 0);
}

static qp_status pg_identity(qp__bconn *b, qp_buf *server, qp_buf *session, bool *strict_iso,
                             bool *refuse, qp__berr *err) {
  char why[256] = "";
  PGresult *r = run_why(b, identity_sql, NULL, why, sizeof why);
  if (r == NULL)
    return qp__berr_set(err, QP_QUERY, "", "cache: cannot read the session's identity: %s", why);
  qp__buf_puts(server, PQgetvalue(r, 0, 0));
  qp__buf_append(session, PQgetvalue(r, 0, 1), (size_t)PQgetlength(r, 0, 1));
  *strict_iso = PQgetvalue(r, 0, 2)[0] == 't';
  *refuse = false;
  PQclear(r);
  if (server->failed || session->failed) return qp__berr_set(err, QP_NOMEM, "", "out of memory");
  return QP_OK;
}

static void base_lower(const char *name, char *out, size_t cap) {
  const char *dot = strrchr(name, '.');
  const char *s = dot ? dot + 1 : name;
  size_t i = 0;
  for (; s[i] && i + 1 < cap; i++) out[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] + 32) : s[i];
  out[i] = '\0';
}

/* Over every schema (the cache keys tables by name alone): any relation of
 * that name that is not a plain logged table makes the name wide (its reach
 * is resolved below) or never cached. relhastriggers covers foreign keys
 * (their checks are triggers on both tables) as well as user triggers; an
 * inheritance child (not a partition) is seen in pg_inherits only, and a
 * default or check that calls a user function that is not immutable (it
 * may write anything) in pg_depend. */
static const char table_sql[] =
    "SELECT count(*), "
    "count(*) FILTER (WHERE c.relpersistence <> 'p' OR c.relkind IN ('S', 'f') "
    "OR n.nspname IN ('pg_catalog', 'information_schema') OR n.nspname LIKE 'pg_temp%'), "
    "count(*) FILTER (WHERE c.relkind <> 'r' OR c.relhastriggers OR c.relhasrules "
    "OR c.relhassubclass OR c.relispartition OR c.relrowsecurity "
    "OR EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid) "
    "OR EXISTS (SELECT 1 FROM pg_depend d JOIN pg_proc p ON p.oid = d.refobjid "
    "WHERE d.refclassid = 'pg_proc'::regclass AND p.provolatile <> 'i' "
    "AND p.pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace) "
    "AND ((d.classid = 'pg_attrdef'::regclass AND d.objid IN "
    "(SELECT a.oid FROM pg_attrdef a WHERE a.adrelid = c.oid)) "
    "OR (d.classid = 'pg_constraint'::regclass AND d.objid IN "
    "(SELECT k.oid FROM pg_constraint k WHERE k.conrelid = c.oid))))) "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE lower(c.relname) = $1 AND c.relkind IN ('r', 'v', 'm', 'p', 'f', 'S')";

static int pg_table(qp__bconn *b, const char *name) {
  char base[QP_STMT_NAME_MAX];
  base_lower(name, base, sizeof base);
  PGresult *r = run(b, table_sql, base);
  if (r == NULL) return 0;
  long all = strtol(PQgetvalue(r, 0, 0), NULL, 10), never = strtol(PQgetvalue(r, 0, 1), NULL, 10),
       wide = strtol(PQgetvalue(r, 0, 2), NULL, 10);
  PQclear(r);
  if (all == 0 || never > 0) return 3;
  return wide > 0 ? 2 : 1;
}

static const char func_sql[] =
    "SELECT count(*), count(*) FILTER (WHERE p.provolatile <> 'i'), "
    "count(*) FILTER (WHERE p.provolatile = 'v' AND n.nspname <> 'pg_catalog') "
    "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE lower(p.proname) = $1";

static int pg_func(qp__bconn *b, const char *name) {
  char base[QP_STMT_NAME_MAX];
  base_lower(name, base, sizeof base);
  PGresult *r = run(b, func_sql, base);
  if (r == NULL) return -1;
  long all = strtol(PQgetvalue(r, 0, 0), NULL, 10), notimm = strtol(PQgetvalue(r, 0, 1), NULL, 10),
       writes = strtol(PQgetvalue(r, 0, 2), NULL, 10);
  PQclear(r);
  if (all == 0) return -1;
  if (writes > 0) return 2;
  return notimm > 0 ? 0 : 1;
}

/* The values libpq keeps from the server's ParameterStatus messages: a
 * SET of any of them inside a function is seen without a round trip. */
static size_t pg_reported(const qp__bconn *cb, char *buf, size_t cap) {
  static const char *const names[] = {"session_authorization", "is_superuser", "TimeZone",
                                      "DateStyle", "IntervalStyle", "client_encoding",
                                      "standard_conforming_strings", "search_path",
                                      "application_name", "default_transaction_read_only"};
  qp__bconn *b = (qp__bconn *)cb;
  size_t n = 0;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    const char *v = PQparameterStatus(qp__pg_conn(b), names[i]);
    if (v == NULL) v = "";
    size_t l = strlen(v);
    if (n + l + 1 >= cap) break;
    memcpy(buf + n, v, l);
    n += l;
    buf[n++] = '\n';
  }
  return n;
}

/* ---- the reach of a table name ------------------------------------------
 *
 * Resolved once per name and server (the cache remembers it with the name's
 * kind): which tables a write to it reaches, and which a read of it depends
 * on, over every schema. A write reaches the name itself; the referencing
 * tables of foreign keys whose ON DELETE or ON UPDATE action writes
 * (CASCADE, SET NULL, SET DEFAULT); its whole inheritance family (the cache
 * keys by name, and a write to a partition is a write to what its parents
 * show, a write to a parent may touch every child); a view's base
 * relations (an auto-updatable view writes its base table); the tables its
 * triggers' functions write; and, transitively, their reach. "All" when a
 * rule (other than a view's _RETURN) rewrites writes, when a trigger's
 * function is in another language, runs dynamic SQL, calls a user function
 * that is not immutable or has a statement the classifier cannot place, and
 * when a column default, check constraint, trigger condition or policy
 * calls a user function that is not immutable. A read depends on the name,
 * a view's base relations (recursively through views) and the relations
 * its row-level security policies read; on everything when a view or a
 * policy calls a user function that is not immutable. */

#define REACH_MAX 32

typedef struct names {
  size_t n;
  char v[REACH_MAX][QP_STMT_NAME_MAX];
} names;

/* 1 added, 0 already there, -1 full. */
static int names_add(names *s, const char *name) {
  char base[QP_STMT_NAME_MAX];
  base_lower(name, base, sizeof base);
  if (base[0] == '\0') return 0;
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->v[i], base) == 0) return 0;
  if (s->n == REACH_MAX) return -1;
  memcpy(s->v[s->n++], base, sizeof base);
  return 1;
}

static PGresult *run_rows(qp__bconn *b, const char *sql, const char *arg) {
  return lookup(b, sql, arg, NULL, 0);
}

/* One row per edge from the relations named $1: f family (ancestors and
 * descendants), c a table a cascading foreign key writes, v a view's base
 * relation, d a view's definition (pg_depend does not record what it
 * reads of pg_catalog, nor its built-in functions), p a relation a policy
 * reads, r a rule that is not a view's
 * _RETURN, x a user function that is not immutable called by a default,
 * check, trigger condition or policy (writes may reach anything), q one
 * called by a view or a policy (reads may depend on anything). The third
 * column: the relation is never cached (temporary, unlogged, sequence,
 * foreign, catalog). */
static const char edges_sql[] =
    "WITH RECURSIVE r AS (SELECT c.oid, c.relkind FROM pg_class c WHERE lower(c.relname) = $1 "
    "AND c.relkind IN ('r', 'v', 'm', 'p', 'f')), "
    "up(oid) AS (SELECT i.inhparent FROM pg_inherits i WHERE i.inhrelid IN (SELECT oid FROM r) "
    "UNION SELECT i.inhparent FROM pg_inherits i JOIN up ON i.inhrelid = up.oid), "
    "down(oid) AS (SELECT i.inhrelid FROM pg_inherits i WHERE i.inhparent IN (SELECT oid FROM r) "
    "UNION SELECT i.inhrelid FROM pg_inherits i JOIN down ON i.inhparent = down.oid), "
    "rel AS (SELECT c.oid, lower(c.relname) AS name, (c.relkind IN ('S', 'f') "
    "OR c.relpersistence <> 'p' OR n.nspname IN ('pg_catalog', 'information_schema') "
    "OR n.nspname LIKE 'pg_temp%') AS never FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace), "
    "ufn AS (SELECT p.oid FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
    "WHERE p.provolatile <> 'i' AND n.nspname NOT IN ('pg_catalog', 'information_schema')), "
    "pol AS (SELECT oid FROM pg_policy WHERE polrelid IN (SELECT oid FROM r)), "
    "ret AS (SELECT w.oid, w.ev_class FROM pg_rewrite w JOIN r ON r.oid = w.ev_class "
    "WHERE w.rulename = '_RETURN' AND r.relkind = 'v') "
    "SELECT 'f', rel.name, rel.never FROM rel WHERE rel.oid IN (SELECT oid FROM up UNION SELECT oid FROM down) "
    "UNION ALL SELECT 'c', rel.name, rel.never FROM pg_constraint k JOIN rel ON rel.oid = k.conrelid "
    "WHERE k.contype = 'f' AND k.confrelid IN (SELECT oid FROM r) "
    "AND (k.confdeltype IN ('c', 'n', 'd') OR k.confupdtype IN ('c', 'n', 'd')) "
    "UNION ALL SELECT 'v', rel.name, rel.never FROM ret JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass "
    "AND d.objid = ret.oid AND d.refclassid = 'pg_class'::regclass JOIN rel ON rel.oid = d.refobjid "
    "WHERE d.refobjid <> ret.ev_class "
    "UNION ALL SELECT 'p', rel.name, rel.never FROM pg_depend d JOIN rel ON rel.oid = d.refobjid "
    "WHERE d.classid = 'pg_policy'::regclass AND d.objid IN (SELECT oid FROM pol) "
    "AND d.refclassid = 'pg_class'::regclass AND d.refobjid NOT IN (SELECT oid FROM r) "
    "UNION ALL SELECT 'r', w.rulename, false FROM pg_rewrite w JOIN r ON r.oid = w.ev_class "
    "WHERE w.rulename <> '_RETURN' "
    "UNION ALL SELECT 'x', '', false FROM pg_depend d WHERE d.refclassid = 'pg_proc'::regclass "
    "AND d.refobjid IN (SELECT oid FROM ufn) AND ("
    "(d.classid = 'pg_attrdef'::regclass AND d.objid IN (SELECT a.oid FROM pg_attrdef a "
    "WHERE a.adrelid IN (SELECT oid FROM r))) "
    "OR (d.classid = 'pg_constraint'::regclass AND d.objid IN (SELECT k.oid FROM pg_constraint k "
    "WHERE k.conrelid IN (SELECT oid FROM r))) "
    "OR (d.classid = 'pg_trigger'::regclass AND d.objid IN (SELECT t.oid FROM pg_trigger t "
    "WHERE t.tgrelid IN (SELECT oid FROM r) AND t.tgfoid <> d.refobjid)) "
    "OR (d.classid = 'pg_policy'::regclass AND d.objid IN (SELECT oid FROM pol))) "
    "UNION ALL SELECT 'd', pg_get_viewdef(r.oid), false FROM r WHERE r.relkind = 'v' "
    "UNION ALL SELECT 'q', '', false FROM pg_depend d WHERE d.refclassid = 'pg_proc'::regclass "
    "AND d.refobjid IN (SELECT oid FROM ufn) AND ("
    "(d.classid = 'pg_policy'::regclass AND d.objid IN (SELECT oid FROM pol)) "
    "OR (d.classid = 'pg_rewrite'::regclass AND d.objid IN (SELECT oid FROM ret)))";

/* Every trigger on the relations named $1 (foreign keys' included) and its
 * function. */
static const char triggers_sql[] =
    "SELECT DISTINCT p.oid, l.lanname, p.prosrc, lower(p.proname), n.nspname "
    "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid "
    "JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang "
    "WHERE lower(c.relname) = $1";

/* Whether any of the names ($1, one a line) is a user function that is not
 * immutable (over every overload and schema). */
static const char calls_sql[] =
    "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
    "WHERE lower(p.proname) = ANY (string_to_array($1, E'\\n')) AND p.provolatile <> 'i' "
    "AND n.nspname NOT IN ('pg_catalog', 'information_schema')";

/* Whether any of the names ($1, one a line) is a function that is not
 * immutable, in any schema. */
static const char volatile_sql[] =
    "SELECT count(*) FROM pg_proc p WHERE lower(p.proname) = ANY (string_to_array($1, E'\\n')) "
    "AND p.provolatile <> 'i'";

/* What a view's definition says about its reads (QP__REACH_READ_* bits, or
 * -1 on failure): the classifier finds catalogs, volatile built-ins and
 * the functions it calls, the server says which of those are not
 * immutable. */
static int view_reads(qp__bconn *b, const char *def) {
  qp_stmt_info info;
  info.size = sizeof info;
  qp_sql_classify(QP_DIALECT_POSTGRES, def, strlen(def), &info);
  if (info.kind != QP_STMT_SELECT || !info.read_only || info.volatile_fn || info.funcs_truncated)
    return QP__REACH_READ_VOLATILE;
  if (info.system_catalog) return QP__REACH_READ_CATALOG;
  if (info.nfuncs == 0) return 0;
  char calls[QP_STMT_MAX_FUNCS * QP_STMT_NAME_MAX + QP_STMT_MAX_FUNCS];
  size_t n = 0;
  for (size_t i = 0; i < info.nfuncs; i++) {
    char base[QP_STMT_NAME_MAX];
    base_lower(info.funcs[i], base, sizeof base);
    size_t l = strlen(base);
    if (n) calls[n++] = '\n';
    memcpy(calls + n, base, l);
    n += l;
  }
  calls[n] = '\0';
  PGresult *r = run(b, volatile_sql, calls);
  if (r == NULL) return -1;
  long bad = strtol(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return bad > 0 ? QP__REACH_READ_VOLATILE : 0;
}

/* Built-in trigger functions: the foreign-key ones (whose writes are the
 * cascades read from pg_constraint) and those that write nothing but the
 * row itself. */
static bool builtin_trigger(const char *name) {
  static const char *const known[] = {"unique_key_recheck", "tsvector_update_trigger",
                                      "tsvector_update_trigger_column",
                                      "suppress_redundant_updates_trigger", NULL};
  if (strncmp(name, "ri_fkey_", 8) == 0) return true;
  for (const char *const *k = known; *k; k++)
    if (strcmp(name, *k) == 0) return true;
  return false;
}

static bool word_is(const char *s, const qp_tok *t, const char *w) {
  size_t n = strlen(w);
  if (t->end - t->start != n) return false;
  for (size_t i = 0; i < n; i++)
    if (qp__sql_lower[(unsigned char)s[t->start + i]] != w[i]) return false;
  return true;
}

/* The end of the statement that starts at `pos`: the first ';' or
 * unmatched ')' at its own level, or PL/pgSQL's LOOP after FOR ... IN
 * query. */
static size_t stmt_end(const char *s, size_t len, size_t pos) {
  size_t depth = 0;
  qp_tok t;
  for (;;) {
    size_t next = qp__sql_lex_sig(QP_DIALECT_POSTGRES, s, len, pos, &t);
    if (t.type == QP_T_EOF) return len;
    if (depth == 0 && (t.type == QP_T_SEMI || t.type == QP_T_RPAREN ||
                       (t.type == QP_T_WORD && word_is(s, &t, "loop"))))
      return t.start;
    if (t.type == QP_T_LPAREN) depth++;
    if (t.type == QP_T_RPAREN) depth--;
    pos = next;
  }
}

/*
 * The tables a PL/pgSQL or SQL function body writes, into w: 0 when known,
 * 1 for "all", -1 on failure. The lexer only finds where a write statement
 * starts (INSERT, UPDATE, DELETE, MERGE not part of FOR UPDATE, FOR NO KEY
 * UPDATE or ON CONFLICT DO UPDATE) and what may be a call (a name before
 * '('); the classifier says what each statement writes and must place it.
 * Dynamic SQL (EXECUTE, DO), statements that write without a table list
 * (COPY, TRUNCATE, CALL, DDL, GRANT...) and any call of a user function
 * that is not immutable give "all".
 */
static int body_writes(qp__bconn *b, const char *self, const char *src, names *w) {
  const qp_dialect d = QP_DIALECT_POSTGRES;
  size_t len = strlen(src), pos = 0;
  qp_kw prevkw = QP_KW_NONE;
  char calls[2048];
  size_t ncalls = 0;
  qp_tok t;
  for (;;) {
    size_t next = qp__sql_lex_sig(d, src, len, pos, &t);
    if (t.type == QP_T_EOF) break;
    qp_kw kw = QP_KW_NONE;
    if (t.type == QP_T_WORD || t.type == QP_T_QIDENT) {
      if (t.type == QP_T_WORD) kw = qp__sql_keyword(src + t.start, t.end - t.start);
      switch (kw) {
      case QP_KW_EXECUTE: case QP_KW_COPY: case QP_KW_TRUNCATE: case QP_KW_CALL:
      case QP_KW_CREATE: case QP_KW_ALTER: case QP_KW_DROP: case QP_KW_GRANT:
      case QP_KW_REVOKE: case QP_KW_REFRESH: case QP_KW_CLUSTER: case QP_KW_REINDEX:
      case QP_KW_VACUUM: case QP_KW_COMMENT: case QP_KW_SECURITY:
        return 1;
      default:
        break;
      }
      if (t.type == QP_T_WORD && word_is(src, &t, "import")) return 1;
      qp_tok n;
      qp__sql_lex_sig(d, src, len, next, &n);
      if (kw == QP_KW_DO && n.type == QP_T_STRING) return 1;
      if ((kw == QP_KW_INSERT || kw == QP_KW_UPDATE || kw == QP_KW_DELETE ||
           kw == QP_KW_MERGE) &&
          prevkw != QP_KW_FOR && prevkw != QP_KW_KEY && prevkw != QP_KW_DO) {
        size_t end = stmt_end(src, len, next);
        qp_stmt_info info;
        info.size = sizeof info;
        qp_sql_classify(d, src + t.start, end - t.start, &info);
        if (!(info.kind == QP_STMT_INSERT || info.kind == QP_STMT_UPDATE ||
              info.kind == QP_STMT_DELETE || info.kind == QP_STMT_MERGE) ||
            info.nwrite == 0 || info.tables_truncated || info.flush_all || info.select_into)
          return 1;
        for (size_t i = 0; i < info.nwrite; i++)
          if (names_add(w, info.write[i]) < 0) return 1;
      }
      if (n.type == QP_T_LPAREN && !qp__sql_kw_operator(kw)) {
        /* perhaps a call: the server says whether the name is a user
         * function that is not immutable */
        char name[QP_STMT_NAME_MAX];
        size_t a = t.start, l = t.end - t.start;
        if (t.type == QP_T_QIDENT && l >= 2) a++, l -= 2;
        if (l >= sizeof name) return 1;
        for (size_t i = 0; i < l; i++) name[i] = (char)qp__sql_lower[(unsigned char)src[a + i]];
        name[l] = '\0';
        if (strcmp(name, self) != 0) {
          if (ncalls + l + 2 > sizeof calls) return 1;
          if (ncalls) calls[ncalls++] = '\n';
          memcpy(calls + ncalls, name, l);
          ncalls += l;
        }
      }
    }
    prevkw = kw;
    pos = next;
  }
  if (ncalls == 0) return 0;
  calls[ncalls] = '\0';
  PGresult *r = run(b, calls_sql, calls);
  if (r == NULL) return -1;
  long bad = strtol(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return bad > 0 ? 1 : 0;
}

typedef struct seen_fns {
  size_t n;
  unsigned v[64];
} seen_fns;

/* Adds what the triggers on `name` write to w: 0, 1 "all", -1 failure. */
static int trigger_writes(qp__bconn *b, const char *name, names *w, seen_fns *seen) {
  PGresult *r = run_rows(b, triggers_sql, name);
  if (r == NULL) return -1;
  int res = 0;
  for (int i = 0; i < PQntuples(r) && res == 0; i++) {
    unsigned oid = (unsigned)strtoul(PQgetvalue(r, i, 0), NULL, 10);
    bool dup = false;
    for (size_t k = 0; k < seen->n; k++) dup |= seen->v[k] == oid;
    if (dup) continue;
    if (seen->n == sizeof seen->v / sizeof seen->v[0]) {
      res = 1;
      break;
    }
    seen->v[seen->n++] = oid;
    const char *lang = PQgetvalue(r, i, 1), *src = PQgetvalue(r, i, 2),
               *fn = PQgetvalue(r, i, 3), *nsp = PQgetvalue(r, i, 4);
    if (strcmp(nsp, "pg_catalog") == 0) {
      if (!builtin_trigger(fn)) res = 1;
      continue;
    }
    if (strcmp(lang, "plpgsql") != 0 && strcmp(lang, "sql") != 0) {
      res = 1;
      continue;
    }
    size_t k = 0;
    while (src[k] == ' ' || src[k] == '\t' || src[k] == '\n' || src[k] == '\r') k++;
    if (src[k] == '\0') { /* a SQL-standard body (BEGIN ATOMIC): not kept as text */
      res = 1;
      continue;
    }
    res = body_writes(b, fn, src, w);
  }
  PQclear(r);
  return res;
}

static int pg_reach(qp__bconn *b, const char *table, qp__reach_fn add, void *ud) {
  names w, rd;
  seen_fns seen;
  w.n = rd.n = seen.n = 0;
  names_add(&w, table);
  names_add(&rd, table);
  int flags = 0;
  /* writes: a closure over names; each name's edges and triggers once */
  for (size_t i = 0; i < w.n && !(flags & QP__REACH_WRITE_ALL); i++) {
    PGresult *r = run_rows(b, edges_sql, w.v[i]);
    if (r == NULL) return -1;
    for (int k = 0; k < PQntuples(r); k++) {
      char e = PQgetvalue(r, k, 0)[0];
      if (e == 'r' || e == 'x' || ((e == 'f' || e == 'c' || e == 'v') &&
                                   names_add(&w, PQgetvalue(r, k, 1)) < 0))
        flags |= QP__REACH_WRITE_ALL;
    }
    PQclear(r);
    if (flags & QP__REACH_WRITE_ALL) break;
    int t = trigger_writes(b, w.v[i], &w, &seen);
    if (t < 0) return -1;
    if (t > 0) flags |= QP__REACH_WRITE_ALL;
  }
  /* reads: through views and policies */
  for (size_t i = 0; i < rd.n && !(flags & QP__REACH_READ_ALL); i++) {
    PGresult *r = run_rows(b, edges_sql, rd.v[i]);
    if (r == NULL) return -1;
    for (int k = 0; k < PQntuples(r); k++) {
      char e = PQgetvalue(r, k, 0)[0];
      if (e == 'q') flags |= QP__REACH_READ_ALL;
      if (e == 'd') {
        int v = view_reads(b, PQgetvalue(r, k, 1));
        if (v < 0) {
          PQclear(r);
          return -1;
        }
        flags |= v;
      }
      if (e != 'v' && e != 'p') continue;
      if (PQgetvalue(r, k, 2)[0] == 't') flags |= QP__REACH_READ_NEVER;
      if (names_add(&rd, PQgetvalue(r, k, 1)) < 0) flags |= QP__REACH_READ_ALL;
    }
    PQclear(r);
  }
  if (!(flags & QP__REACH_WRITE_ALL))
    for (size_t i = 0; i < w.n; i++) add(ud, QP__REACH_WRITE, w.v[i]);
  if (!(flags & QP__REACH_READ_ALL))
    for (size_t i = 0; i < rd.n; i++) add(ud, QP__REACH_READ, rd.v[i]);
  return flags;
}

const qp__cache_ops qp__pg_cache_ops = {
    .identity = pg_identity,
    .table = pg_table,
    .func = pg_func,
    .reported = pg_reported,
    .changed = NULL,
    .watch = NULL,
    .reach = pg_reach,
};
