/*
 * The PostgreSQL backend over libpq. DSNs in both of libpq's forms; a
 * non-blocking connect (PQconnectStartParams + PQconnectPoll with poll())
 * bounded by a deadline; statements prepared once per connection and cached
 * by text; SQLSTATE kept with every error; the DSN's password scrubbed from
 * every libpq message before it leaves this file.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "qprof/profile.h"

#define PG_BYTEA_OID 17
#define PG_STACK_PARAMS 16

struct qp__bconn {
  const qp_hooks *hooks;
  PGconn *pg;
  PGcancel *cancel;
  char *password; /* from the DSN, to scrub messages; owned, may be NULL */
  qp__stmt_cache cache;
  uint64_t next_stmt;
  char version[24];
  /* SQLSTATE of a FATAL the server sent while the connection was idle
   * (57P01 after pg_terminate_backend, 57P05 idle_session_timeout): the
   * session is over even while the socket is still open. "" when none. */
  char fatal[8];
  /* the recorded dimensions (pg_dims), read at connect and reset */
  char dim_user[256], dim_app[256];
  /* The current role as SELECT current_user last said (or the server's
   * "role" report); "" until asked, and after DISCARD ALL: then the user
   * is session_authorization. */
  char dim_role[256];
};

/* ---- messages ----------------------------------------------------------- */

static bool word_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* Copies src into dst (cap bytes), replacing every occurrence of `secret`
 * with "***". Short secrets are only replaced as whole words, so that a
 * one-letter password does not garble the message. Drops the trailing
 * newline libpq adds. */
static void scrub_copy(char *dst, size_t cap, const char *src, const char *secret) {
  size_t slen = secret ? strlen(secret) : 0, pos = 0;
  if (cap == 0) return;
  for (const char *p = src; *p && pos + 1 < cap;) {
    if (slen > 0 && strncmp(p, secret, slen) == 0 &&
        (slen >= 4 || ((p == src || !word_char(p[-1])) && !word_char(p[slen])))) {
      for (const char *r = "***"; *r && pos + 1 < cap; r++) dst[pos++] = *r;
      p += slen;
      continue;
    }
    dst[pos++] = *p++;
  }
  while (pos > 0 && (dst[pos - 1] == '\n' || dst[pos - 1] == ' ')) pos--;
  dst[pos] = '\0';
}

/* A password in a DSN libpq could not parse, found the way a person would:
 * after "password" and '=' (keyword form) or between ':' and '@' (URI). */
static void crude_password(const char *dsn, char *out, size_t cap) {
  out[0] = '\0';
  const char *p = strstr(dsn, "password");
  if (p != NULL) {
    p += 8;
    while (*p == ' ' || *p == '\t' || *p == '=') p++;
    if (*p == '\'') p++;
    size_t n = strcspn(p, " \t'&");
    if (n >= cap) n = cap - 1;
    memcpy(out, p, n);
    out[n] = '\0';
    if (n > 0) return;
  }
  const char *s = strstr(dsn, "://");
  if (s == NULL) return;
  s += 3;
  const char *end = s + strcspn(s, "/?"), *at = NULL;
  for (const char *q = s; q < end; q++)
    if (*q == '@') at = q;
  if (at == NULL) return;
  const char *colon = memchr(s, ':', (size_t)(at - s));
  if (colon == NULL) return;
  size_t n = (size_t)(at - colon - 1);
  if (n >= cap) n = cap - 1;
  memcpy(out, colon + 1, n);
  out[n] = '\0';
}

typedef struct conn_error_class {
  const char *needle, *sqlstate;
  bool transient;
} conn_error_class;

/* libpq reports connection-time errors as text only; these are the server's
 * messages for the SQLSTATEs a pool must tell apart. */
static const conn_error_class conn_errors[] = {
    {"the database system is starting up", "57P03", true},
    {"the database system is shutting down", "57P03", true},
    {"the database system is in recovery mode", "57P03", true},
    {"the database system is not yet accepting connections", "57P03", true},
    {"the database system is not accepting connections", "57P03", true},
    {"too many clients already", "53300", true},
    {"connection slots are reserved", "53300", true},
    {"too many connections for role", "53300", true},
    {"too many connections for database", "53300", true},
    {"password authentication failed", "28P01", false},
    {"no password supplied", "28P01", false},
    {"no pg_hba.conf entry", "28000", false},
    {"role \"", "28000", false},
    {"database \"", "3D000", false},
    {"timeout expired", "08001", true},
};

static void classify_conn_error(const char *msg, qp__berr *err) {
  for (size_t i = 0; i < QP_ARRAY_LEN(conn_errors); i++) {
    if (strstr(msg, conn_errors[i].needle) != NULL) {
      snprintf(err->code, sizeof err->code, "%s", conn_errors[i].sqlstate);
      err->transient = conn_errors[i].transient;
      return;
    }
  }
  snprintf(err->code, sizeof err->code, "08001");
  err->transient = false;
}

/* ---- results ------------------------------------------------------------ */

typedef struct pg_blob {
  struct pg_blob *next;
  size_t row, col, len;
  unsigned char *data; /* from PQunescapeBytea */
} pg_blob;

typedef struct pg_result {
  qp_result base;
  PGresult *res;
  pg_blob *blobs;
} pg_result;

static void pgr_free(qp_result *r) {
  pg_result *p = (pg_result *)r;
  for (pg_blob *b = p->blobs, *n; b; b = n) {
    n = b->next;
    PQfreemem(b->data);
    qp__free(&r->hooks, b);
  }
  PQclear(p->res);
  qp__free(&r->hooks, p);
}
static int64_t pgr_affected(const qp_result *r) {
  const PGresult *res = ((const pg_result *)r)->res;
  const char *n = PQcmdTuples((PGresult *)res);
  if (PQresultStatus(res) != PGRES_COMMAND_OK || n == NULL || *n == '\0') return -1;
  return strtoll(n, NULL, 10);
}
static const char *pgr_colname(const qp_result *r, size_t col) {
  return PQfname(((const pg_result *)r)->res, (int)col);
}
static bool pgr_isnull(const qp_result *r, size_t row, size_t col) {
  return PQgetisnull(((const pg_result *)r)->res, (int)row, (int)col) != 0;
}
static const char *pgr_value(const qp_result *r, size_t row, size_t col, size_t *len) {
  const PGresult *res = ((const pg_result *)r)->res;
  if (len) *len = (size_t)PQgetlength(res, (int)row, (int)col);
  return PQgetvalue(res, (int)row, (int)col);
}
static const void *pgr_blob(qp_result *r, size_t row, size_t col, size_t *len) {
  pg_result *p = (pg_result *)r;
  if (PQftype(p->res, (int)col) != PG_BYTEA_OID) return pgr_value(r, row, col, len);
  for (pg_blob *b = p->blobs; b; b = b->next) {
    if (b->row == row && b->col == col) {
      if (len) *len = b->len;
      return b->data;
    }
  }
  pg_blob *b = qp__calloc(&r->hooks, 1, sizeof *b);
  if (b == NULL) return NULL;
  b->data = PQunescapeBytea((const unsigned char *)PQgetvalue(p->res, (int)row, (int)col), &b->len);
  if (b->data == NULL) {
    qp__free(&r->hooks, b);
    return NULL;
  }
  b->row = row;
  b->col = col;
  b->next = p->blobs;
  p->blobs = b;
  if (len) *len = b->len;
  return b->data;
}

static bool pgr_col_bytes(const qp_result *r, size_t col) {
  return PQftype(((const pg_result *)r)->res, (int)col) == PG_BYTEA_OID;
}

static const qp__result_ops pg_result_ops = {pgr_free,   pgr_affected, pgr_colname,
                                             pgr_isnull, pgr_value,    pgr_blob, pgr_col_bytes};

PGconn *qp__pg_conn(qp__bconn *b);
PGconn *qp__pg_conn(qp__bconn *b) { return b->pg; }

/* ---- connections ------------------------------------------------------- */

static bool pg_accepts(const char *dsn) {
  return dsn != NULL && strncmp(dsn, "sqlite:", 7) != 0;
}

static qp_status pg_check_dsn(const char *dsn, qp__berr *err) {
  if (dsn == NULL) return qp__berr_set(err, QP_INVALID, "", "no DSN");
  char *msg = NULL;
  PQconninfoOption *opts = PQconninfoParse(dsn, &msg);
  if (opts == NULL) {
    char secret[256], clean[QP_ERRMSG_MAX];
    crude_password(dsn, secret, sizeof secret);
    scrub_copy(clean, sizeof clean, msg ? msg : "out of memory", secret);
    PQfreemem(msg);
    return qp__berr_set(err, msg ? QP_INVALID : QP_NOMEM, "", "malformed PostgreSQL DSN: %s",
                        clean);
  }
  PQconninfoFree(opts);
  return QP_OK;
}

/* The password keyword of a parsed DSN, copied with the hooks; NULL if none. */
static qp_status dsn_password(const char *dsn, const qp_hooks *h, char **out, qp__berr *err) {
  *out = NULL;
  qp_status st = pg_check_dsn(dsn, err);
  if (st != QP_OK) return st;
  PQconninfoOption *opts = PQconninfoParse(dsn, NULL);
  if (opts == NULL) return qp__berr_set(err, QP_NOMEM, "", "out of memory");
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    if (strcmp(o->keyword, "password") == 0 && o->val != NULL && *o->val) {
      *out = qp__strdup(h, o->val);
      if (*out == NULL) st = qp__berr_set(err, QP_NOMEM, "", "out of memory");
    }
  }
  PQconninfoFree(opts);
  return st;
}

static void pg_close(qp__bconn *b);

static qp_status conn_fail(qp__bconn *b, const char *what, qp__berr *err) {
  char clean[QP_ERRMSG_MAX];
  scrub_copy(clean, sizeof clean, b->pg ? PQerrorMessage(b->pg) : "out of memory", b->password);
  qp__berr_clear(err);
  classify_conn_error(clean, err);
  char code[sizeof err->code];
  bool transient = err->transient;
  memcpy(code, err->code, sizeof code);
  qp__berr_set(err, b->pg ? QP_UNAVAILABLE : QP_NOMEM, code, "%s: %.400s (SQLSTATE %s)", what,
               clean, code);
  err->transient = transient;
  return err->status;
}

/* A FATAL (or PANIC) from the server ends the session: its SQLSTATE is
 * kept in b->fatal, so that the connection is known to be over and the
 * error names the server's reason rather than libpq's 08006. */
static void keep_fatal(qp__bconn *b, const PGresult *res) {
  const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
  if (sev != NULL && (strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0)) {
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    snprintf(b->fatal, sizeof b->fatal, "%s", state && *state ? state : "08006");
  }
}

/* libpq prints notices and errors that arrive while idle to stderr by
 * default; the library never prints, so they go to the log callback. An
 * error that arrives while no query runs (the server's goodbye: FATAL
 * 57P01 before it closes the socket) is handed here as a notice too; its
 * SQLSTATE is kept, so that the connection is known to be over before its
 * EOF arrives. */
static void notice_to_log(void *arg, const PGresult *res) {
  qp__bconn *b = arg;
  keep_fatal(b, res);
  if (!qp__log_enabled(b->hooks, QP_LOG_INFO)) return;
  char clean[QP_ERRMSG_MAX];
  scrub_copy(clean, sizeof clean, PQresultErrorMessage(res), b->password);
  qp__log(b->hooks, QP_LOG_INFO, "postgres: %s", clean);
}

static void pg_dims_read(qp__bconn *b);

static qp_status pg_connect(const char *dsn, const qp__bconnect_opts *o, qp__bconn **out,
                            qp__berr *err) {
  *out = NULL;
  qp__bconn *b = qp__calloc(o->hooks, 1, sizeof *b);
  if (b == NULL) return qp__berr_set(err, QP_NOMEM, "", "out of memory");
  b->hooks = o->hooks;
  qp__stmt_cache_init(&b->cache, o->hooks, o->stmt_cache_max);
  qp_status st = dsn_password(dsn, o->hooks, &b->password, err);
  if (st != QP_OK) {
    qp__free(o->hooks, b);
    return st;
  }
  uint64_t deadline = qp__now_ns() + (uint64_t)(o->timeout_ms > 0 ? o->timeout_ms : 1) * 1000000u;
  const char *const kw[] = {"dbname", "fallback_application_name", NULL};
  /* the program's name unless the DSN or PGAPPNAME names the application:
   * what the server shows is what the profile records */
  const char *app = qp_default_application();
  const char *const val[] = {dsn, app[0] != '\0' ? app : "qprof", NULL};
  b->pg = PQconnectStartParams(kw, val, 1);
  if (b->pg != NULL) PQsetNoticeReceiver(b->pg, notice_to_log, b);
  if (b->pg == NULL || PQstatus(b->pg) == CONNECTION_BAD) {
    st = conn_fail(b, "cannot connect", err);
    pg_close(b);
    return st;
  }
  PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
  while (ps != PGRES_POLLING_OK) {
    if (ps == PGRES_POLLING_FAILED) {
      st = conn_fail(b, "cannot connect", err);
      pg_close(b);
      return st;
    }
    struct pollfd pfd = {PQsocket(b->pg), ps == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
    uint64_t now = qp__now_ns();
    int ms = now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
    int n = ms > 0 ? poll(&pfd, 1, ms) : 0;
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {
      qp__berr_set(err, QP_UNAVAILABLE, "08001",
                   "cannot connect: timeout expired after %" PRId64 " ms (SQLSTATE 08001)",
                   o->timeout_ms);
      err->transient = true;
      err->timed_out = true;
      pg_close(b);
      return QP_UNAVAILABLE;
    }
    ps = PQconnectPoll(b->pg);
  }
  b->cancel = PQgetCancel(b->pg);
  if (b->cancel == NULL) {
    pg_close(b);
    return qp__berr_set(err, QP_NOMEM, "", "out of memory");
  }
  int v = PQserverVersion(b->pg);
  if (v >= 100000) snprintf(b->version, sizeof b->version, "%d.%d", v / 10000, v % 10000);
  else snprintf(b->version, sizeof b->version, "%d.%d.%d", v / 10000, v / 100 % 100, v % 100);
  pg_dims_read(b);
  *out = b;
  return QP_OK;
}

static void pg_close(qp__bconn *b) {
  if (b == NULL) return;
  qp__stmt_cache_free(&b->cache, NULL, NULL);
  if (b->cancel) PQfreeCancel(b->cancel);
  if (b->pg) PQfinish(b->pg);
  qp__free(b->hooks, b->password);
  qp__free(b->hooks, b);
}

/* After fork(): the socket is shared with the parent, whose session must
 * not notice anything. /dev/null is put in place of the socket (dup2 is
 * atomic, so no other thread can be handed the descriptor number meanwhile);
 * PQfinish's Terminate message then goes nowhere and it closes only the
 * child's copy. */
static void pg_abandon(qp__bconn *b) {
  if (b == NULL) return;
  int fd = b->pg ? PQsocket(b->pg) : -1;
  if (fd >= 0) {
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0) {
      dup2(devnull, fd);
      close(devnull);
    } else {
      close(fd); /* second best: the send fails with EBADF */
    }
  }
  pg_close(b);
}

/* Fills err from a failed PGresult (or the connection when res is NULL). */
static qp_status result_fail(qp__bconn *b, PGresult *res, const char *what, qp__berr *err) {
  const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  const char *msg = res ? PQresultErrorMessage(res) : "";
  if (msg == NULL || *msg == '\0') msg = PQerrorMessage(b->pg);
  char clean[QP_ERRMSG_MAX];
  scrub_copy(clean, sizeof clean, msg && *msg ? msg : "unknown error", b->password);
  bool lost = PQstatus(b->pg) != CONNECTION_OK || b->fatal[0] != '\0';
  /* the server said why it ended the session: that, not libpq's 08006 */
  if (lost && b->fatal[0] && (state == NULL || *state == '\0' || strcmp(state, "08006") == 0))
    state = b->fatal;
  if (state == NULL || *state == '\0') state = lost ? "08006" : (res ? "XX000" : "08006");
  if (res == NULL && !lost && strstr(clean, "out of memory") != NULL)
    return qp__berr_set(err, QP_NOMEM, "", "%s: out of memory", what);
  return qp__berr_set(err, lost ? QP_UNAVAILABLE : QP_QUERY, state, "%s: %s (SQLSTATE %s)", what,
                      clean, state);
}

/* Whether a statement drops the server's prepared statements (DEALLOCATE,
 * DISCARD): the classifier's drops_prepared. */
static bool drops_statements(const char *sql, size_t len) {
  qp_stmt_info info;
  info.size = sizeof info;
  qp_sql_classify(QP_DIALECT_POSTGRES, sql, len, &info);
  return info.drops_prepared;
}

/* The same for any statement of a script. */
static bool script_drops_statements(const char *sql) {
  size_t len = strlen(sql), pos = 0, start, n;
  while (qp_sql_split_next(QP_DIALECT_POSTGRES, sql, len, &pos, &start, &n))
    if (drops_statements(sql + start, n)) return true;
  return false;
}

typedef struct pg_params {
  const char *values[PG_STACK_PARAMS];
  int lengths[PG_STACK_PARAMS], formats[PG_STACK_PARAMS];
  Oid types[PG_STACK_PARAMS];
  char numbuf[PG_STACK_PARAMS][32];
  const char **v;
  int *l, *f;
  Oid *t;
  char (*num)[32];
  char **copies; /* text params with an explicit length, NUL-terminated copies */
  size_t n;
  const qp_hooks *hooks;
} pg_params;

static void params_free(pg_params *pp) {
  if (pp->copies) {
    for (size_t i = 0; i < pp->n; i++) qp__free(pp->hooks, pp->copies[i]);
    qp__free(pp->hooks, pp->copies);
  }
  if (pp->v != pp->values) {
    qp__free(pp->hooks, pp->v);
    qp__free(pp->hooks, pp->l);
    qp__free(pp->hooks, pp->f);
    qp__free(pp->hooks, pp->t);
    qp__free(pp->hooks, pp->num);
  }
}

static qp_status params_build(pg_params *pp, const qp_hooks *h, const qp_param *params, size_t n,
                              qp__berr *err) {
  /* (no memset: every array entry below n is written in the loop) */
  pp->hooks = h;
  pp->n = n;
  pp->copies = NULL;
  if (n > 65535) return qp__berr_set(err, QP_INVALID, "", "%zu parameters: at most 65535", n);
  if (n <= PG_STACK_PARAMS) {
    pp->v = pp->values;
    pp->l = pp->lengths;
    pp->f = pp->formats;
    pp->t = pp->types;
    pp->num = pp->numbuf;
  } else {
    pp->v = qp__calloc(h, n, sizeof *pp->v);
    pp->l = qp__calloc(h, n, sizeof *pp->l);
    pp->f = qp__calloc(h, n, sizeof *pp->f);
    pp->t = qp__calloc(h, n, sizeof *pp->t);
    pp->num = qp__calloc(h, n, sizeof *pp->num);
    if (!pp->v || !pp->l || !pp->f || !pp->t || !pp->num) {
      params_free(pp);
      return qp__berr_set(err, QP_NOMEM, "", "out of memory");
    }
  }
  for (size_t i = 0; i < n; i++) {
    const qp_param *p = &params[i];
    pp->f[i] = 0;
    pp->l[i] = 0;
    pp->t[i] = p->pg_type;
    switch (p->type) {
    case QP_PARAM_NULL: pp->v[i] = NULL; break;
    case QP_PARAM_TEXT:
      if (p->text == NULL) {
        params_free(pp);
        return qp__berr_set(err, QP_INVALID, "", "parameter $%zu: text is NULL", i + 1);
      }
      if (p->len == (size_t)-1) {
        pp->v[i] = p->text;
      } else {
        if (memchr(p->text, '\0', p->len) != NULL) {
          params_free(pp);
          return qp__berr_set(err, QP_INVALID, "22021",
                              "parameter $%zu: text contains a NUL byte (use a blob)", i + 1);
        }
        if (pp->copies == NULL && (pp->copies = qp__calloc(h, n, sizeof *pp->copies)) == NULL) {
          params_free(pp);
          return qp__berr_set(err, QP_NOMEM, "", "out of memory");
        }
        pp->copies[i] = qp__strndup(h, p->text, p->len);
        if (pp->copies[i] == NULL) {
          params_free(pp);
          return qp__berr_set(err, QP_NOMEM, "", "out of memory");
        }
        pp->v[i] = pp->copies[i];
      }
      break;
    case QP_PARAM_INT64:
      pp->num[i][qp__fmt_i64(p->i, pp->num[i])] = '\0';
      pp->v[i] = pp->num[i];
      break;
    case QP_PARAM_DOUBLE:
      snprintf(pp->num[i], sizeof pp->num[i], "%.17g", p->d);
      pp->v[i] = pp->num[i];
      break;
    case QP_PARAM_BLOB:
      if (p->len > (size_t)0x7fffffff) {
        params_free(pp);
        return qp__berr_set(err, QP_TOOBIG, "54000", "parameter $%zu: blob too large", i + 1);
      }
      pp->v[i] = p->text ? p->text : "";
      pp->l[i] = (int)p->len;
      pp->f[i] = 1;
      if (pp->t[i] == 0) pp->t[i] = PG_BYTEA_OID;
      break;
    default:
      params_free(pp);
      return qp__berr_set(err, QP_INVALID, "", "parameter $%zu: unknown type %d", i + 1,
                          (int)p->type);
    }
  }
  return QP_OK;
}

/* "qp_<id>", written by hand: this runs for every statement. */
static void stmt_name(uint64_t id, char *buf, size_t len) {
  char digits[24];
  size_t n = 0;
  do {
    digits[n++] = (char)('0' + id % 10);
    id /= 10;
  } while (id > 0 && n < sizeof digits);
  if (len < n + 4) {
    if (len) buf[0] = '\0';
    return;
  }
  memcpy(buf, "qp_", 3);
  for (size_t i = 0; i < n; i++) buf[3 + i] = digits[n - 1 - i];
  buf[3 + n] = '\0';
}

/* The rest of a synchronous call, as libpq's PQexecFinish: the results of
 * a sent command until NULL (or COPY, or a lost connection), returning the
 * last. Unlike PQexec*, a FATAL result before the last is not lost: a
 * session ended while leased (pg_terminate_backend between two statements)
 * gives the server's FATAL (57P01) and then libpq's "server closed the
 * connection" without a SQLSTATE, and keep_fatal remembers the first so
 * that the error says why. NULL when `sent` is false or out of memory. */
static PGresult *take_results(qp__bconn *b, int sent);

/* Before a send, as PQexec* do: a result nobody read is dropped (none in
 * the usual case, where PQgetResult returns NULL at once); a connection left
 * in COPY mode is left to the send, which then fails. Always true. */
static bool settle(qp__bconn *b) {
  PGresult *r;
  while ((r = PQgetResult(b->pg)) != NULL) {
    ExecStatusType rs = PQresultStatus(r);
    PQclear(r);
    if (rs == PGRES_COPY_IN || rs == PGRES_COPY_OUT || rs == PGRES_COPY_BOTH) break;
  }
  return true;
}

static PGresult *take_results(qp__bconn *b, int sent) {
  if (!sent) return NULL;
  PGresult *last = NULL, *r;
  while ((r = PQgetResult(b->pg)) != NULL) {
    ExecStatusType rs = PQresultStatus(r);
    if (rs == PGRES_FATAL_ERROR) keep_fatal(b, r);
    PQclear(last);
    last = r;
    if (rs == PGRES_COPY_IN || rs == PGRES_COPY_OUT || rs == PGRES_COPY_BOTH ||
        PQstatus(b->pg) == CONNECTION_BAD)
      break;
  }
  return last;
}

/* Prepares sql under a new name; *entry is the cache entry, or NULL when the
 * cache is full (the statement is then run unnamed). */
static qp_status prepare_named(qp__bconn *b, const char *sql, const pg_params *pp,
                               qp__stmt_entry **entry, qp__berr *err) {
  *entry = NULL;
  if (b->cache.count >= b->cache.max) return QP_OK;
  uint64_t id = ++b->next_stmt;
  char name[32];
  stmt_name(id, name, sizeof name);
  PGresult *res = take_results(b, settle(b) && PQsendPrepare(b->pg, name, sql, (int)pp->n, pp->t));
  if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
    qp_status st = result_fail(b, res, "prepare failed", err);
    PQclear(res);
    return st;
  }
  PQclear(res);
  *entry = qp__stmt_cache_add(&b->cache, sql, strlen(sql), (void *)(uintptr_t)id);
  if (*entry == NULL) {
    /* out of memory: forget it (the server keeps it until DISCARD) */
    return qp__berr_set(err, QP_NOMEM, "", "out of memory");
  }
  return QP_OK;
}

static qp_status pg_exec(qp__bconn *b, const char *sql, size_t len, const qp_param *params,
                         size_t nparams, qp_result **out, int64_t *rows, bool *reprepared,
                         qp__stmt_entry **entry, qp__berr *err) {
  *reprepared = false;
  *rows = -1;
  *entry = NULL;
  if (out) *out = NULL;
  /* A cached statement passed as NUL-terminated text is recognized by its
   * address and one comparison (no strlen, no hash). */
  qp__stmt_entry *e = len == QP__SQL_NTS ? qp__stmt_cache_find_str(&b->cache, sql, &len)
                                         : qp__stmt_cache_find(&b->cache, sql, len);
  if (sql[len] != '\0')
    return qp__berr_set(err, QP_INVALID, "", "statement must be NUL-terminated text");
  pg_params pp;
  qp_status st = params_build(&pp, b->hooks, params, nparams, err);
  if (st != QP_OK) return st;
  bool was_idle = PQtransactionStatus(b->pg) == PQTRANS_IDLE;
  PGresult *res = NULL;
  for (int attempt = 0; attempt < 2; attempt++) {
    if (e == NULL) {
      st = prepare_named(b, sql, &pp, &e, err);
      if (st != QP_OK) goto done;
    }
    if (e != NULL) {
      char name[32];
      stmt_name((uint64_t)(uintptr_t)e->handle, name, sizeof name);
      res = take_results(b, settle(b) && PQsendQueryPrepared(b->pg, name, (int)nparams, pp.v, pp.l, pp.f, 0));
    } else {
      res = take_results(b, settle(b) && PQsendQueryParams(b->pg, sql, (int)nparams, pp.t, pp.v, pp.l, pp.f, 0));
    }
    ExecStatusType rs = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (rs == PGRES_TUPLES_OK || rs == PGRES_COMMAND_OK || rs == PGRES_EMPTY_QUERY) break;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    /* The server forgot our statement (DEALLOCATE ALL, DISCARD ALL run by
     * something we could not see). Outside a transaction nothing ran and
     * nothing was aborted, so preparing again and retrying is safe. */
    if (attempt == 0 && e != NULL && was_idle && state && strcmp(state, "26000") == 0) {
      PQclear(res);
      res = NULL;
      qp__stmt_cache_clear(&b->cache, NULL, NULL);
      e = NULL;
      *reprepared = true;
      continue;
    }
    /* "cached plan must not change result type": a table under SELECT *
     * changed (ALTER TABLE ... ADD COLUMN). Outside a transaction nothing
     * ran, so the prepared statements go (every one may be stale) and this
     * one is prepared again and retried; inside one, the error stands. */
    if (attempt == 0 && e != NULL && was_idle && state && strcmp(state, "0A000") == 0 &&
        strstr(PQresultErrorMessage(res), "cached plan") != NULL) {
      PQclear(res);
      res = PQexec(b->pg, "DEALLOCATE ALL");
      PQclear(res);
      res = NULL;
      qp__stmt_cache_clear(&b->cache, NULL, NULL);
      e = NULL;
      *reprepared = true;
      continue;
    }
    st = result_fail(b, res, "statement failed", err);
    goto done;
  }
  if (PQresultStatus(res) == PGRES_TUPLES_OK) {
    *rows = PQntuples(res);
  } else {
    const char *n = PQcmdTuples(res);
    *rows = n && *n ? strtoll(n, NULL, 10) : -1;
  }
  bool drops;
  if (e != NULL) {
    qp__stmt_entry_classify(e, QP_DIALECT_POSTGRES);
    drops = e->drops > 0;
  } else {
    drops = drops_statements(sql, len);
  }
  if (drops) qp__stmt_cache_clear(&b->cache, NULL, NULL);
  else *entry = e;
  if (out) {
    pg_result *r = qp__calloc(b->hooks, 1, sizeof *r);
    if (r == NULL) {
      st = qp__berr_set(err, QP_NOMEM, "", "out of memory");
      goto done;
    }
    r->base.ops = &pg_result_ops;
    r->base.nrows = (size_t)PQntuples(res);
    r->base.ncols = (size_t)PQnfields(res);
    r->base.hooks = *b->hooks;
    r->res = res;
    res = NULL;
    *out = &r->base;
  }
done:
  PQclear(res);
  params_free(&pp);
  return st;
}

/* The simple query protocol returns one result per statement of the
 * script, each as soon as that statement is done: PQgetResult is read
 * until NULL (as PQexec does) and every result is reported as one
 * statement's end. A COPY in a script has no data to exchange here: COPY
 * FROM STDIN is refused (the statement then fails) and COPY TO STDOUT is
 * drained, so the connection never stays in COPY mode. */
static qp_status pg_exec_script(qp__bconn *b, const char *sql, qp__script_fn each, void *ud,
                                qp__berr *err) {
  qp_status st = QP_OK;
  if (!PQsendQuery(b->pg, sql)) {
    st = result_fail(b, NULL, "statement failed", err);
  } else {
    bool failed = false;
    PGresult *res;
    while ((res = PQgetResult(b->pg)) != NULL) {
      ExecStatusType rs = PQresultStatus(res);
      if (rs == PGRES_COPY_IN) {
        PQputCopyEnd(b->pg, "COPY FROM STDIN is not supported in a script");
      } else if (rs == PGRES_COPY_OUT) {
        char *row;
        while (PQgetCopyData(b->pg, &row, 0) > 0) PQfreemem(row);
      } else if (!failed) {
        uint64_t end = qp__now_ns();
        bool ok = rs == PGRES_COMMAND_OK || rs == PGRES_TUPLES_OK || rs == PGRES_EMPTY_QUERY;
        if (!ok) {
          failed = true;
          st = result_fail(b, res, "statement failed", err);
        }
        if (each != NULL && rs != PGRES_EMPTY_QUERY) {
          int64_t rows = -1;
          if (rs == PGRES_TUPLES_OK) rows = PQntuples(res);
          else if (ok && *PQcmdTuples(res)) rows = strtoll(PQcmdTuples(res), NULL, 10);
          each(ud, end, rows, !ok);
        }
      }
      PQclear(res);
      if (PQstatus(b->pg) != CONNECTION_OK) break;
    }
    if (!failed && PQstatus(b->pg) != CONNECTION_OK)
      st = result_fail(b, NULL, "statement failed", err);
  }
  if (script_drops_statements(sql))
    qp__stmt_cache_clear(&b->cache, NULL, NULL);
  pg_dims_read(b);
  return st;
}

static bool pg_is_broken(const qp__bconn *b);

/* EXPLAIN with options. An analyzed statement runs, so it runs inside a
 * transaction (or, inside the caller's, a savepoint) that is always rolled
 * back; a statement_timeout is set for it alone with SET LOCAL. The plan is
 * EXPLAIN's rows joined by newlines (TEXT), or its one JSON document. */
static qp_status pg_explain(qp__bconn *b, const char *sql, const qp_param *params, size_t nparams,
                            const qp__explain_opts *o, qp__plan *out, qp__berr *err) {
  memset(out, 0, sizeof *out);
  out->rows = out->fullscan_steps = out->sorts = out->autoindexes = out->vm_steps = -1;
  bool wrap = o->analyze || o->timeout_ms > 0;
  bool nested = PQtransactionStatus(b->pg) != PQTRANS_IDLE;
  qp_buf q, plan;
  qp__buf_init(&q, b->hooks);
  qp__buf_init(&plan, b->hooks);
  qp__buf_printf(&q, "EXPLAIN (FORMAT %s%s%s) %s", o->json ? "JSON" : "TEXT",
                 o->analyze ? ", ANALYZE" : "", o->analyze && o->buffers ? ", BUFFERS" : "", sql);
  pg_params pp;
  qp_status st = q.failed ? qp__berr_set(err, QP_NOMEM, "", "out of memory")
                          : params_build(&pp, b->hooks, params, nparams, err);
  if (st != QP_OK) {
    qp__buf_free(&q);
    return st;
  }
  if (wrap) st = pg_exec_script(b, nested ? "SAVEPOINT qp_explain" : "BEGIN", NULL, NULL, err);
  if (st == QP_OK && o->timeout_ms > 0) {
    char set[64];
    snprintf(set, sizeof set, "SET LOCAL statement_timeout = %" PRId64, o->timeout_ms);
    st = pg_exec_script(b, set, NULL, NULL, err);
  }
  if (st == QP_OK) {
    PGresult *res = PQexecParams(b->pg, qp__buf_cstr(&q), (int)nparams, pp.t, pp.v, pp.l, pp.f, 0);
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
      st = result_fail(b, res, "explain failed", err);
    } else {
      for (int i = 0; i < PQntuples(res); i++) {
        if (i > 0) qp__buf_puts(&plan, "\n");
        qp__buf_append(&plan, PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0));
      }
      if (plan.failed) st = qp__berr_set(err, QP_NOMEM, "", "out of memory");
    }
    PQclear(res);
  }
  if (wrap && !pg_is_broken(b)) {
    qp__berr rb;
    qp__berr_clear(&rb);
    qp_status rs = pg_exec_script(
        b, nested ? "ROLLBACK TO SAVEPOINT qp_explain; RELEASE SAVEPOINT qp_explain" : "ROLLBACK",
        NULL, NULL, &rb);
    if (rs != QP_OK && st == QP_OK) {
      *err = rb;
      st = rs;
    }
  }
  params_free(&pp);
  qp__buf_free(&q);
  return qp__plan_take(b->hooks, st, &plan, out, err);
}

static qp_status pg_prepare(qp__bconn *b, const char *sql, size_t len, qp__berr *err) {
  if (qp__stmt_cache_find(&b->cache, sql, len) != NULL) return QP_OK;
  if (sql[len] != '\0') return qp__berr_set(err, QP_INVALID, "", "statement must be NUL-terminated");
  pg_params pp;
  memset(&pp, 0, sizeof pp);
  pp.t = pp.types;
  qp__stmt_entry *e;
  return prepare_named(b, sql, &pp, &e, err);
}

static qp_txn_status pg_txn_status(const qp__bconn *b) {
  switch (PQtransactionStatus(b->pg)) {
  case PQTRANS_IDLE: return QP_TXN_IDLE;
  case PQTRANS_ACTIVE: return QP_TXN_ACTIVE;
  case PQTRANS_INTRANS: return QP_TXN_INTRANS;
  case PQTRANS_INERROR: return QP_TXN_INERROR;
  default: return QP_TXN_UNKNOWN;
  }
}

static bool pg_is_broken(const qp__bconn *b) {
  return PQstatus(b->pg) != CONNECTION_OK || b->fatal[0] != '\0';
}

static bool pg_precheck(qp__bconn *b) {
  if (pg_is_broken(b)) return false;
  struct pollfd pfd = {PQsocket(b->pg), POLLIN, 0};
  int n = poll(&pfd, 1, 0);
  if (n <= 0) return true; /* nothing arrived while idle: the usual case */
  /* Something arrived while idle: a NOTIFY, or the server's goodbye
   * (pg_terminate_backend, shutdown: a FATAL, then EOF a few ms later).
   * PQconsumeInput only reads; PQnotifies parses what was read, which hands
   * a FATAL to notice_to_log, so the goodbye is noticed before its EOF. */
  for (int i = 0; i < 4 && PQstatus(b->pg) == CONNECTION_OK; i++) {
    if (!PQconsumeInput(b->pg)) return false;
    PGnotify *note;
    while ((note = PQnotifies(b->pg)) != NULL) PQfreemem(note);
    if (b->fatal[0]) return false;
    pfd.revents = 0;
    if (poll(&pfd, 1, 0) <= 0) break;
  }
  return !pg_is_broken(b);
}

/* Waits for the results of a sent query until deadline; returns the last
 * result or NULL (timeout or broken connection). */
static PGresult *wait_results(qp__bconn *b, uint64_t deadline, bool *timed_out) {
  *timed_out = false;
  PGresult *last = NULL;
  for (;;) {
    while (PQisBusy(b->pg)) {
      uint64_t now = qp__now_ns();
      if (now >= deadline) {
        *timed_out = true;
        PQclear(last);
        return NULL;
      }
      struct pollfd pfd = {PQsocket(b->pg), POLLIN, 0};
      int n = poll(&pfd, 1, (int)((deadline - now + 999999) / 1000000));
      if (n < 0 && errno != EINTR) break;
      if (!PQconsumeInput(b->pg)) break;
    }
    PGresult *r = PQgetResult(b->pg);
    if (r == NULL) return last;
    /* A session ended while leased (pg_terminate_backend between two
     * statements) gives two results: the server's FATAL (57P01), then
     * libpq's "server closed the connection" without a SQLSTATE. The last
     * is returned; the first is kept so that the error says why. */
    if (PQresultStatus(r) == PGRES_FATAL_ERROR) keep_fatal(b, r);
    PQclear(last);
    last = r;
    if (PQstatus(b->pg) != CONNECTION_OK) return last;
  }
}

static qp_status pg_ping(qp__bconn *b, int64_t timeout_ms, qp__berr *err) {
  if (!pg_precheck(b) || !PQsendQuery(b->pg, ""))
    return result_fail(b, NULL, "validation failed", err);
  bool timed_out;
  PGresult *r = wait_results(b, qp__now_ns() + (uint64_t)timeout_ms * 1000000u, &timed_out);
  if (timed_out)
    return qp__berr_set(err, QP_UNAVAILABLE, "08006",
                        "validation failed: no answer within %" PRId64 " ms", timeout_ms);
  qp_status st = QP_OK;
  if (r == NULL || PQresultStatus(r) != PGRES_EMPTY_QUERY)
    st = result_fail(b, r, "validation failed", err);
  PQclear(r);
  return st;
}

static qp_status pg_cancel(qp__bconn *b, qp__berr *err) {
  char buf[256];
  if (b->cancel == NULL || !PQcancel(b->cancel, buf, sizeof buf)) {
    char clean[256];
    scrub_copy(clean, sizeof clean, b->cancel ? buf : "no cancel handle", b->password);
    return qp__berr_set(err, QP_UNAVAILABLE, "08006", "cancel failed: %s", clean);
  }
  return QP_OK;
}

static qp_status pg_rollback(qp__bconn *b, qp__berr *err) {
  if (PQtransactionStatus(b->pg) == PQTRANS_IDLE) return QP_OK;
  return pg_exec_script(b, "ROLLBACK", NULL, NULL, err);
}

static qp_status pg_reset(qp__bconn *b, qp__berr *err) {
  qp_status st = pg_rollback(b, err);
  if (st != QP_OK) return st;
  b->dim_role[0] = '\0'; /* DISCARD ALL: SET SESSION AUTHORIZATION DEFAULT, RESET ROLE */
  st = pg_exec_script(b, "DISCARD ALL", NULL, NULL, err);
  qp__stmt_cache_clear(&b->cache, NULL, NULL);
  return st;
}

static const char *pg_server_version(const qp__bconn *b) { return b->version; }
static const char *pg_database(const qp__bconn *b) { return PQdb(b->pg); }
static const char *pg_user(const qp__bconn *b) { return PQuser(b->pg); }

static void dim_copy(char *dst, size_t cap, const char *src) {
  size_t n = strnlen(src, cap - 1);
  memcpy(dst, src, n);
  dst[n] = '\0';
}

/* Reads the session's user and application_name from the ParameterStatus
 * values libpq keeps (no round trip): application_name and
 * session_authorization are reported by every supported server. The role
 * (SET ROLE) is not reported by PostgreSQL 15 to 17 (its GUC is not
 * GUC_REPORT): pg_dims_role asks for it; a server that does report "role"
 * is believed. */
static void pg_dims_read(qp__bconn *b) {
  const char *r = PQparameterStatus(b->pg, "role");
  if (r != NULL) dim_copy(b->dim_role, sizeof b->dim_role, strcmp(r, "none") == 0 ? "" : r);
  const char *u = b->dim_role;
  if (u[0] == '\0') u = PQparameterStatus(b->pg, "session_authorization");
  if (u == NULL || u[0] == '\0') u = PQuser(b->pg);
  dim_copy(b->dim_user, sizeof b->dim_user, u != NULL ? u : "");
  const char *a = PQparameterStatus(b->pg, "application_name");
  if (a == NULL || a[0] == '\0') a = qp_default_application();
  dim_copy(b->dim_app, sizeof b->dim_app, a);
}

/* The current role, asked of the server (SELECT current_user: the user
 * pg_stat_statements keys by) on our own connection, between two of the
 * lease's statements. Not in a failed transaction (it would fail): the
 * caller asks again when the block is over. On failure the last value
 * stays. */
static void pg_dims_role(qp__bconn *b) {
  if (PQparameterStatus(b->pg, "role") != NULL) return; /* reported: pg_dims_read has it */
  PGTransactionStatusType t = PQtransactionStatus(b->pg);
  if (t != PQTRANS_IDLE && t != PQTRANS_INTRANS) return;
  PGresult *r = PQexec(b->pg, "SELECT current_user");
  if (r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
    dim_copy(b->dim_role, sizeof b->dim_role, PQgetvalue(r, 0, 0));
  PQclear(r);
}

static void pg_dims(qp__bconn *b, unsigned refresh, const char **user, const char **app) {
  if (refresh & QP__DIMS_ROLE) pg_dims_role(b);
  if (refresh) pg_dims_read(b);
  *user = b->dim_user;
  *app = b->dim_app;
}

const qp__backend_ops qp__backend_pg = {
    .name = "postgres",
    .kind = QP_BACKEND_POSTGRES,
    .dialect = QP_DIALECT_POSTGRES,
    .caps = QP__CAP_EXPLAIN_ANALYZE | QP__CAP_EXPLAIN_JSON | QP__CAP_EXPLAIN_COST | QP__CAP_CANCEL |
            QP__CAP_SERVER_SESSION,
    .accepts = pg_accepts,
    .check_dsn = pg_check_dsn,
    .connect = pg_connect,
    .exec = pg_exec,
    .exec_script = pg_exec_script,
    .explain = pg_explain,
    .prepare = pg_prepare,
    .txn_status = pg_txn_status,
    .is_broken = pg_is_broken,
    .precheck = pg_precheck,
    .ping = pg_ping,
    .cancel = pg_cancel,
    .rollback = pg_rollback,
    .reset = pg_reset,
    .close = pg_close,
    .abandon = pg_abandon,
    .server_version = pg_server_version,
    .database = pg_database,
    .user = pg_user,
    .dims = pg_dims,
    .cache = &qp__pg_cache_ops,
};
