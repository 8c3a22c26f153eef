/*
 * Statements on a lease: timing, recording into the profile, the slow-query
 * log, session-change tracking, and the lease's error and identity.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cache/cache_lease.h"
#include "lease.h"
#include "pool_int.h"
#include "stats/slowlog.h"

/* ---- session tracking --------------------------------------------------- */

/* What a statement does to the session, from the classifier
 * (docs/classifier.md): whether it leaves state behind that would leak into
 * the next lease (changes_session: sets c->session_dirty, asked only under
 * the reset policy auto until the lease is dirty), and which of the
 * recorded identity settings it changes (the returned qp_stmt_info.identity
 * bits, | QP__IDENT_ROLLBACK_TO). A cached statement (e) is classified once,
 * through its cache entry; another one only when it may matter (the
 * prefilter, or a block is being watched). */
static unsigned session_effects(qp_conn *c, qp__stmt_entry *e, const char *sql, size_t len) {
  qp_pool *p = c->pool;
  bool want_dirty = p->o.reset == QP_RESET_AUTO && !c->session_dirty;
  if (e != NULL) {
    qp__stmt_entry_classify(e, p->ops->dialect);
    if (want_dirty) c->session_dirty = e->session > 0;
    return e->ident > 0 ? (unsigned)e->ident : 0;
  }
  if (!want_dirty && c->dims_watch == 0 && !qp__sql_may_set_identity(sql, len)) return 0;
  qp_stmt_info info;
  info.size = sizeof info;
  qp_sql_classify(p->ops->dialect, sql, len, &info);
  if (want_dirty) c->session_dirty = info.changes_session;
  return info.identity | (info.tcl == QP_TCL_ROLLBACK_TO ? QP__IDENT_ROLLBACK_TO : 0u);
}

/* After a statement (recorded under the identity it ran under) that changed
 * the role, the session user or application_name (`ident`), or while a
 * transaction block that changed one is open: reads them again, so that
 * the next statement is charged to what it runs under. application_name
 * and session_authorization are reported by the server (no round trip);
 * the role is asked on our own connection (SELECT current_user). A change
 * inside a block is read again when the block ends (it reverts if the
 * block rolls back; SET LOCAL always) and after ROLLBACK TO SAVEPOINT. */
static void follow_identity(qp_conn *c, unsigned ident) {
  unsigned refresh = 0;
  if (ident & (QP_IDENT_APPLICATION | QP_IDENT_SESSION_AUTH)) refresh |= QP__DIMS_PARAMS;
  if (ident & (QP_IDENT_ROLE | QP_IDENT_SESSION_AUTH)) refresh |= QP__DIMS_ROLE;
  if (refresh == 0 && c->dims_watch == 0) return;
  const qp__backend_ops *ops = c->pool->ops;
  qp_txn_status t = ops->txn_status(c->b);
  if (c->dims_watch != 0 && (t == QP_TXN_IDLE || (ident & QP__IDENT_ROLLBACK_TO)))
    refresh |= c->dims_watch;
  if (refresh == 0) return;
  c->dims_watch = t == QP_TXN_IDLE ? 0 : c->dims_watch | refresh;
  const char *u, *a;
  ops->dims(c->b, refresh, &u, &a);
}

/* ---- statements --------------------------------------------------------- */

static qp_status lease_fail(qp_conn *c, const qp__berr *e) {
  c->err.code = e->status;
  memcpy(c->err.msg, e->msg, sizeof c->err.msg);
  memcpy(c->sqlstate, e->code, sizeof c->sqlstate);
  return e->status;
}

/* A lease's first statement: if the server went away while the connection
 * sat idle (pg_terminate_backend, a restart), reconnect in place before
 * anything is sent, so that no statement is ever retried. */
static qp_status ensure_alive(qp_conn *c) {
  qp_pool *p = c->pool;
  c->fresh = false;
  if (p->ops->precheck(c->b)) return QP_OK;
  qp__bconnect_opts bo = {&p->hooks, p->o.connect_timeout_ms, QP_POOL_STMT_CACHE_MAX};
  qp__bconn *nb = NULL;
  qp__berr err;
  qp__berr_clear(&err);
  qp_status st = p->ops->connect(p->dsn, &bo, &nb, &err);
  pthread_mutex_lock(&p->mu);
  p->c.broken++;
  if (st == QP_OK) p->c.connects++;
  else p->c.connect_failures++;
  pthread_mutex_unlock(&p->mu);
  if (st != QP_OK) {
    qp__log(&p->hooks, QP_LOG_WARN, "pool %s: lost an idle connection and cannot reconnect: %s",
            p->dsn_safe, err.msg);
    return lease_fail(c, &err); /* the broken connection is replaced on release */
  }
  qp__log(&p->hooks, QP_LOG_INFO, "pool %s: an idle connection was lost; reconnected",
          p->dsn_safe);
  p->ops->close(c->b);
  c->b = nb;
  c->session_dirty = false;
  c->dims_watch = 0;
  if (p->o.on_connect != NULL) {
    st = p->o.on_connect(c, p->o.on_connect_ud);
    c->session_dirty = false;
    if (st != QP_OK) return st;
  }
  return QP_OK;
}

/* Who ran it (docs/pool.md): the connection's user and application, kept
 * by the backend (read again by follow_identity), and the pool's host. */
static inline void set_dims(qp_conn *c, qp_query_event *ev) {
  c->pool->ops->dims(c->b, 0, &ev->user, &ev->application);
  ev->host = c->pool->host;
}

/* Records one statement into the profile and, when it was slow, the
 * slow-query log. `e` (may be NULL) is its cache entry, whose normalized
 * text the profile made once (fill_norm). */
static void record(qp_conn *c, const char *sql, size_t len, const qp__stmt_entry *e,
                   uint64_t dur_ns, int64_t rows, const char *error) {
  qp_pool *p = c->pool;
  bool slow = qp__slow_is(dur_ns, p->slow_ns);
  if (p->o.profile == NULL && !slow) return;
  qp_query_event ev;
  memset(&ev, 0, sizeof ev);
  ev.size = sizeof ev;
  ev.backend = p->ops->kind;
  ev.database = p->ops->database(c->b);
  set_dims(c, &ev);
  ev.sql = sql;
  ev.sql_len = len;
  if (e != NULL && e->norm != NULL) {
    ev.normalized = e->norm;
    ev.normalized_len = e->norm_len;
    ev.fingerprint = e->fp;
  }
  ev.duration_ns = dur_ns;
  ev.rows = rows;
  ev.error = error;
  if (p->o.profile != NULL) qp_profile_record(p->o.profile, &ev);
  if (slow && qp__log_enabled(&p->hooks, QP_LOG_WARN)) {
    char line[QP__SLOW_TEXT_MAX + 256];
    qp__slow_line(p->names, &ev, p->slow_ns, line, sizeof line);
    qp__log(&p->hooks, QP_LOG_WARN, "%s", line);
  }
}

/* Asks the profile for a cached statement's normalized text and
 * fingerprint once, so that recording it never normalizes again. The
 * profile is the one owner of fingerprints: its rules, dialect and
 * normalizer version apply. */
static void fill_norm(qp_pool *p, qp__stmt_entry *e, const char *sql, size_t len) {
  char buf[QP_NORMALIZED_MAX];
  size_t n = 0;
  uint64_t fp = 0;
  if (qp_profile_normalize(p->names, p->ops->kind, sql, len, buf, sizeof buf, &n, &fp) != QP_OK)
    return;
  e->norm = qp__strndup(&p->hooks, buf, n);
  if (e->norm == NULL) return; /* recording normalizes instead */
  e->norm_len = n;
  e->fp = fp;
}

/* One statement; `quiet` ones (the library's own, lease.h) are neither
 * recorded, logged as slow, nor counted in the pool's statement counters. */
static inline __attribute__((always_inline)) qp_status
conn_exec(qp_conn *c, const char *sql, const qp_param *params, size_t nparams, qp_result **out,
          bool quiet) {
  if (out) *out = NULL;
  if (c == NULL) return QP_INVALID;
  qp__err_clear(&c->err);
  c->sqlstate[0] = '\0';
  if (sql == NULL || (params == NULL && nparams > 0))
    return qp__err_set(&c->err, QP_INVALID, "sql is NULL or params missing");
  if (c->b == NULL) return qp__err_set(&c->err, QP_CLOSED, "connection dropped (fork or close)");
  if (c->fresh) {
    qp_status st = ensure_alive(c);
    if (st != QP_OK) return st;
  }
  qp_pool *p = c->pool;
  qp__berr err;
  err.status = QP_OK;
  int64_t rows = -1;
  bool reprepared = false;
  qp__stmt_entry *e = NULL;
  /* The backend measures the text only when it is not a statement it has
   * cached (QP__SQL_NTS): a cached one is recognized by address and one
   * comparison, and its entry knows the length. */
  uint64_t t0 = qp__now_ns();
  qp_status st = p->ops->exec(c->b, sql, QP__SQL_NTS, params, nparams, out, &rows, &reprepared,
                              &e, &err);
  uint64_t dur = qp__ns_since(qp__now_ns(), t0);
  size_t len = e != NULL ? e->len : strlen(sql);
  c->reprepares += reprepared;
  if (!quiet) {
    c->q_count++;
    c->q_time_ns += dur;
  }
  /* Classified for session changes a failed statement too (it may have
   * half-happened). */
  unsigned ident = session_effects(c, e, sql, len);
  bool recording = !quiet && p->names != NULL;
  if (st != QP_OK) {
    c->q_errors += !quiet;
    lease_fail(c, &err);
    /* statements that never reached the server are not recorded */
    if (recording && (st == QP_QUERY || st == QP_UNAVAILABLE))
      record(c, sql, len, NULL, dur, -1, c->sqlstate[0] ? c->sqlstate : "ERROR");
  } else if (recording) {
    if (e != NULL && e->norm == NULL) fill_norm(p, e, sql, len);
    record(c, sql, len, e, dur, rows, NULL);
  }
  /* after recording: a statement is charged to the identity it ran under */
  if (QP_UNLIKELY(ident != 0 || c->dims_watch != 0) && c->b != NULL && st != QP_UNAVAILABLE)
    follow_identity(c, ident);
  return st;
}

/* Records a cache hit into the profile: a hit of its fingerprint, never a
 * call (the profile keeps database latencies apart), never slow-logged. */
static void record_hit(qp_conn *c, const char *sql, const qc_ticket *t, uint64_t dur_ns) {
  qp_pool *p = c->pool;
  qp_query_event ev;
  memset(&ev, 0, sizeof ev);
  ev.size = sizeof ev;
  ev.backend = p->ops->kind;
  ev.database = p->ops->database(c->b);
  set_dims(c, &ev);
  ev.sql = sql;
  ev.sql_len = strlen(sql);
  if (t->norm != NULL) {
    ev.normalized = t->norm;
    ev.normalized_len = t->norm_len;
    ev.fingerprint = t->fp;
  }
  ev.duration_ns = dur_ns;
  ev.rows = -1;
  ev.cache_hit = true;
  qp_profile_record(p->o.profile, &ev);
}

/* A statement on a pool with a result cache (lib/cache/cache_lease.h): a
 * hit is answered without sending anything; otherwise the statement runs as
 * usual and the cache sees what it did. Kept out of line so that pools
 * without a cache pay one test. */
static __attribute__((noinline)) qp_status conn_exec_cached(qp_conn *c, const char *sql,
                                                            const qp_param *params,
                                                            size_t nparams, qp_result **out) {
  if (out) *out = NULL;
  if (sql == NULL || (params == NULL && nparams > 0) || c->b == NULL)
    return conn_exec(c, sql, params, nparams, out, false); /* reports the error */
  qp__err_clear(&c->err);
  c->sqlstate[0] = '\0';
  if (c->fresh) {
    qp_status st = ensure_alive(c);
    if (st != QP_OK) return st;
  }
  qc_ticket t;
  qp_pool *p = c->pool;
  uint64_t t0 = p->o.profile != NULL ? qp__now_ns() : 0;
  if (qp__cache_before(c, sql, params, nparams, out, &t)) {
    c->cache_hits++;
    if (p->o.profile != NULL) record_hit(c, sql, &t, qp__ns_since(qp__now_ns(), t0));
    return QP_OK;
  }
  c->cache_misses += t.mode == QC_FILL;
  qp_status st = conn_exec(c, sql, params, nparams, out, false);
  qp__cache_after(c, &t, st, out ? *out : NULL);
  return st;
}

qp_status qp_conn_exec(qp_conn *c, const char *sql, const qp_param *params, size_t nparams,
                       qp_result **out) {
  if (c != NULL && c->pool->o.cache != NULL) return conn_exec_cached(c, sql, params, nparams, out);
  return conn_exec(c, sql, params, nparams, out, false);
}

qp_status qp__conn_exec_quiet(qp_conn *c, const char *sql, const qp_param *params,
                              size_t nparams, qp_result **out) {
  return conn_exec(c, sql, params, nparams, out, true);
}

qp_status qp__conn_explain(qp_conn *c, const char *sql, const qp_param *params, size_t nparams,
                           const qp__explain_opts *o, qp__plan *out) {
  if (out != NULL) memset(out, 0, sizeof *out);
  if (c == NULL) return QP_INVALID;
  qp__err_clear(&c->err);
  c->sqlstate[0] = '\0';
  if (sql == NULL || o == NULL || out == NULL || (params == NULL && nparams > 0))
    return qp__err_set(&c->err, QP_INVALID, "sql, options and plan are required");
  if (c->b == NULL) return qp__err_set(&c->err, QP_CLOSED, "connection dropped (fork or close)");
  if (c->fresh) {
    qp_status st = ensure_alive(c);
    if (st != QP_OK) return st;
  }
  qp__berr err;
  qp__berr_clear(&err);
  qp_status st = c->pool->ops->explain(c->b, sql, params, nparams, o, out, &err);
  if (st != QP_OK) lease_fail(c, &err);
  return st;
}

void qp__conn_plan_free(qp_conn *c, qp__plan *plan) {
  qp__plan_free(c != NULL ? &c->pool->hooks : NULL, plan);
}

const qp__backend_ops *qp__conn_ops(const qp_conn *c) { return c ? c->pool->ops : NULL; }

/* Where each statement of a script ended, as the backend reported it. */
typedef struct script_ends {
  const qp_hooks *hooks;
  struct script_end {
    uint64_t end_ns;
    int64_t rows;
    bool failed;
  } *v, small[16];
  size_t n, cap;
  bool lost; /* out of memory: the script is recorded as one event */
} script_ends;

static void script_end(void *ud, uint64_t end_ns, int64_t rows, bool failed) {
  script_ends *s = ud;
  if (s->n == s->cap) {
    size_t cap = s->cap * 2;
    struct script_end *v = qp__malloc(s->hooks, cap * sizeof *v);
    if (v == NULL) {
      s->lost = true;
      return;
    }
    memcpy(v, s->v, s->n * sizeof *v);
    if (s->v != s->small) qp__free(s->hooks, s->v);
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n++] = (struct script_end){end_ns, rows, failed};
}

/*
 * Records a script statement by statement (docs/profiles.md, "Scripts"):
 * the backend reported each statement's end, in order, and the splitter
 * finds the same statements in the text. Where the backend times statement
 * ends (QP__CAP_SCRIPT_TIMES), statement i gets the time from statement
 * i-1's end (the start, for the first) to its own; otherwise the whole
 * script's time goes to its first statement and the others are recorded
 * with 0 ns, so that every statement is counted and no time is invented.
 * Statements after a failing one never ran and are not recorded. When the
 * counts disagree (or the ends were lost to out of memory), the whole
 * script is one event under its first statement.
 */
static void record_script(qp_conn *c, const char *sql, size_t len, uint64_t t0, uint64_t t1,
                          const script_ends *ends, const char *error) {
  const qp__backend_ops *ops = c->pool->ops;
  size_t pos = 0, start, slen, n = 0;
  while (qp_sql_split_next(ops->dialect, sql, len, &pos, &start, &slen)) n++;
  bool failed = error != NULL;
  bool paired = !ends->lost && ends->n > 0 &&
                (failed ? ends->n <= n && ends->v[ends->n - 1].failed : ends->n == n);
  pos = 0;
  if (!paired) {
    if (!qp_sql_split_next(ops->dialect, sql, len, &pos, &start, &slen)) {
      start = 0;
      slen = len;
    }
    record(c, sql + start, slen, NULL, qp__ns_since(t1, t0), -1, error);
    return;
  }
  bool timed = (ops->caps & QP__CAP_SCRIPT_TIMES) != 0;
  uint64_t prev = t0;
  for (size_t i = 0; i < ends->n && qp_sql_split_next(ops->dialect, sql, len, &pos, &start, &slen);
       i++) {
    const struct script_end *e = &ends->v[i];
    uint64_t dur = timed ? qp__ns_since(e->end_ns, prev) : i == 0 ? qp__ns_since(t1, t0) : 0;
    record(c, sql + start, slen, NULL, dur, e->rows, e->failed ? error : NULL);
    prev = e->end_ns;
  }
}

qp_status qp_conn_exec_script(qp_conn *c, const char *sql) {
  if (c == NULL) return QP_INVALID;
  qp__err_clear(&c->err);
  c->sqlstate[0] = '\0';
  if (sql == NULL) return qp__err_set(&c->err, QP_INVALID, "sql is NULL");
  if (c->b == NULL) return qp__err_set(&c->err, QP_CLOSED, "connection dropped (fork or close)");
  if (c->fresh) {
    qp_status st = ensure_alive(c);
    if (st != QP_OK) return st;
  }
  qp_pool *p = c->pool;
  size_t len = strlen(sql);
  bool cached = p->o.cache != NULL;
  if (cached) qp__cache_script(c, sql, false);
  /* a script may hold several statements: scan each */
  unsigned ident = 0;
  size_t pos = 0, start, slen;
  while (qp_sql_split_next(p->ops->dialect, sql, len, &pos, &start, &slen))
    ident |= session_effects(c, NULL, sql + start, slen);
  bool recording = p->names != NULL;
  script_ends ends = {.hooks = &p->hooks, .cap = 16};
  ends.v = ends.small;
  qp__berr err;
  err.status = QP_OK;
  uint64_t t0 = qp__now_ns();
  qp_status st = p->ops->exec_script(c->b, sql, recording ? script_end : NULL, &ends, &err);
  uint64_t t1 = qp__now_ns();
  c->q_count++;
  c->q_time_ns += qp__ns_since(t1, t0);
  if (st != QP_OK) {
    c->q_errors++;
    lease_fail(c, &err);
  }
  if (recording)
    record_script(c, sql, len, t0, t1, &ends,
                  st == QP_OK ? NULL : (c->sqlstate[0] ? c->sqlstate : "ERROR"));
  if (ends.v != ends.small) qp__free(&p->hooks, ends.v);
  /* the script's statements were all charged to the identity it started
   * under; what it changed applies from the next call */
  if ((ident != 0 || c->dims_watch != 0) && st != QP_UNAVAILABLE) follow_identity(c, ident);
  if (cached) qp__cache_script(c, sql, true);
  return st;
}

qp_status qp_conn_cancel(qp_conn *c) {
  if (c == NULL || c->b == NULL) return QP_INVALID;
  qp__berr err;
  err.status = QP_OK;
  /* no lease state is touched: the holder may be inside exec right now */
  return c->pool->ops->cancel(c->b, &err);
}

const char *qp_conn_errmsg(const qp_conn *c) { return c ? c->err.msg : "no connection"; }
const char *qp_conn_sqlstate(const qp_conn *c) { return c ? c->sqlstate : ""; }

qp_txn_status qp_conn_txn_status(const qp_conn *c) {
  if (c == NULL || c->b == NULL) return QP_TXN_UNKNOWN;
  return c->pool->ops->txn_status(c->b);
}

qp_backend qp_conn_backend(const qp_conn *c) {
  return c ? c->pool->ops->kind : QP_BACKEND_POSTGRES;
}
const char *qp_conn_server_version(const qp_conn *c) {
  return c && c->b ? c->pool->ops->server_version(c->b) : "";
}
const char *qp_conn_database(const qp_conn *c) {
  return c && c->b ? c->pool->ops->database(c->b) : "";
}
const char *qp_conn_user(const qp_conn *c) { return c && c->b ? c->pool->ops->user(c->b) : ""; }
