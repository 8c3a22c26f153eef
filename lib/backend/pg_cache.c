/*
 * What the result cache asks a PostgreSQL connection: who the server and
 * session are, what a table or function name is. Run with PQexecParams on
 * the lease holder's thread, outside the statement cache and never
 * recorded. Writes by other processes cannot be seen here (no change
 * stream yet): the cache's TTL bounds them.
 */
#include <libpq-fe.h>
#include <string.h>

#include "backend.h"

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

static PGresult *run(qp__bconn *b, const char *sql, const char *arg) {
  const char *vals[1] = {arg};
  PGresult *r = PQexecParams(qp__pg_conn(b), sql, arg ? 1 : 0, NULL, arg ? vals : NULL, NULL,
                             NULL, 0);
  if (r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) return r;
  PQclear(r);
  return NULL;
}

static qp_status pg_identity(qp__bconn *b, qp_buf *server, qp_buf *session, bool *strict_iso,
                             bool *refuse, qp__berr *err) {
  PGresult *r = run(b, identity_sql, NULL);
  if (r == NULL)
    return qp__berr_set(err, QP_QUERY, "", "cache: cannot read the session's identity: %s",
                        PQerrorMessage(qp__pg_conn(b)));
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
 * that name that is not a plain logged table makes the name wide or never
 * cached. relhastriggers covers foreign keys (their checks are triggers on
 * both tables) as well as user triggers. */
static const char table_sql[] =
    "SELECT count(*), "
    "count(*) FILTER (WHERE c.relpersistence <> 'p' OR c.relkind IN ('S', 'f') "
    "OR n.nspname IN ('pg_catalog', 'information_schema') OR n.nspname LIKE 'pg_temp%'), "
    "count(*) FILTER (WHERE c.relkind <> 'r' OR c.relhastriggers OR c.relhasrules "
    "OR c.relhassubclass OR c.relispartition OR c.relrowsecurity) "
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

const qp__cache_ops qp__pg_cache_ops = {
    .identity = pg_identity,
    .table = pg_table,
    .func = pg_func,
    .reported = pg_reported,
    .changed = NULL,
    .watch = NULL,
};
