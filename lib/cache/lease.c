/*
 * The cache on a lease: which statements may be cached (the classifier's
 * answer plus the server's word on each table and function), the key
 * (session identity + SQL + parameters), the lease's transaction (pending
 * invalidations, reads around the cache once it has written), and the
 * sources of invalidation a lease feeds: its own writes, the backend's row
 * changes (SQLite update hook) and other connections' commits (SQLite
 * data_version).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <xxhash.h>

#include "cache_lease.h"
#include "pool/pool_int.h"

#define QC_MEMO 64
#define QC_PENDING 32

bool qp__cache_match(const void *re, const char *s, size_t len);
qc_table *qc_table_add(qp_cache *c, qc_server *s, const char *name);

/* One statement as this lease's server sees it, memoized by text. */
typedef struct qc_stmt {
  char *sql; /* owned; NULL: free slot */
  size_t len;
  uint64_t h;
  char *norm; /* owned: the profile's normalized text, made on the first hit recorded */
  size_t norm_len;
  uint64_t fp;
  qc_server *server;
  uint64_t epoch, until; /* epoch: the server's schema epoch */
  qp_stmt_kind kind;
  qp_tcl tcl;
  qp_isolation iso;
  bool read;          /* a read-only SELECT */
  bool session;       /* changes session state */
  bool attach;        /* ATTACH or DETACH: the identity says all it changes */
  bool write_all;     /* a write whose reach is not its table list: flush the server */
  bool write_wide;    /* a write to a wide table: flush the server's entries (not the
                       * descriptions) */
  bool may_write_all; /* calls a volatile user function: may write anything */
  bool wide;          /* reads a relation that depends on other tables */
  int refuse;         /* -1 cacheable, else qp_cache_refusal */
  size_t nread, nwrite;
  qc_table *rd[QP_STMT_MAX_TABLES];
  qc_table *wr[QP_STMT_MAX_TABLES];
} qc_stmt;

typedef struct qc_conn {
  qp__bconn *b; /* the backend connection the identity below is for */
  qc_server *server;
  const qc_session *sess; /* NULL: read the identity before the next read */
  bool uniq;              /* the session is this connection's own (SQLite PRAGMA) */
  char reported[512];
  size_t reported_len;
  /* the transaction block */
  bool txn_written, txn_strict, txn_session, pend_all, pend_wide;
  size_t npend;
  qc_table *pend[QC_PENDING];
  /* row changes reported by the backend during one statement */
  bool hook_all;
  size_t nhook;
  qc_table *hook[QC_PENDING];
  /* the last statement resolved, by the caller's pointer: a program that
   * runs one statement text again (a string constant) skips the hash */
  const char *last_sql;
  qc_stmt *last_m;
  qc_stmt memo[QC_MEMO];
} qc_conn;

static qp_cache *cache_of(const qp_conn *c) { return c->pool->o.cache; }
static const qp__cache_ops *cops(const qp_conn *c) { return c->pool->ops->cache; }

static void memo_clear(qp_cache *cache, qc_conn *cc) {
  cc->last_sql = NULL;
  cc->last_m = NULL;
  for (int i = 0; i < QC_MEMO; i++) {
    qp__free(&cache->hooks, cc->memo[i].sql);
    qp__free(&cache->hooks, cc->memo[i].norm);
    cc->memo[i].sql = NULL;
    cc->memo[i].norm = NULL;
  }
}

static void txn_reset(qc_conn *cc) {
  cc->txn_written = cc->txn_strict = cc->pend_all = cc->pend_wide = false;
  if (cc->txn_session) cc->sess = NULL;
  cc->txn_session = false;
  cc->npend = 0;
}

static void on_change(void *ud, const char *db, const char *table);

static qc_conn *cc_state(qp_conn *c) {
  qc_conn *cc = c->cache;
  if (cc == NULL) {
    cc = qp__calloc(&cache_of(c)->hooks, 1, sizeof *cc);
    if (cc == NULL) return NULL;
    c->cache = cc;
  }
  if (cc->b != c->b) {
    /* a new backend connection: new session, no transaction */
    cc->b = c->b;
    cc->server = NULL;
    cc->sess = NULL;
    cc->uniq = false;
    cc->reported_len = 0;
    cc->txn_session = false;
    txn_reset(cc);
    if (cops(c)->watch != NULL) cops(c)->watch(c->b, on_change, c);
  }
  return cc;
}

void qp__cache_conn_forget(qp_conn *c) {
  qc_conn *cc = c->cache;
  if (cc == NULL) return;
  cc->b = NULL; /* identity read again on next use (reset, reconnect) */
  cc->server = NULL;
  cc->sess = NULL;
  cc->npend = 0;
  cc->txn_written = cc->txn_strict = cc->pend_all = cc->pend_wide = cc->txn_session = false;
}

void qp__cache_conn_free(qp_conn *c) {
  qc_conn *cc = c->cache;
  if (cc == NULL) return;
  qp_cache *cache = cache_of(c);
  memo_clear(cache, cc);
  qp__free(&cache->hooks, cc);
  c->cache = NULL;
}

/* The backend saw a row change: remembered until the statement returns. */
static void on_change(void *ud, const char *db, const char *table) {
  qp_conn *c = ud;
  qc_conn *cc = c->cache;
  if (cc == NULL || cc->server == NULL) return;
  /* on a server with qualified names the key is "schema.table" (the
   * database the row is in: main, temp or an attached alias) */
  char key[QP_STMT_NAME_MAX];
  const char *name = table;
  if (cc->server->qualified) {
    int n = snprintf(key, sizeof key, "%s.%s", db, table);
    if (n < 0 || (size_t)n >= sizeof key) {
      cc->hook_all = true;
      return;
    }
    name = key;
  } else if (strcmp(db, "main") != 0 && strcmp(db, "temp") != 0) {
    cc->hook_all = true;
    return;
  }
  for (size_t i = 0; i < cc->nhook; i++)
    if (strcasecmp(cc->hook[i]->name, name) == 0) return;
  qc_table *t = cc->nhook < QC_PENDING ? qc_table_add(cache_of(c), cc->server, name) : NULL;
  if (t == NULL) cc->hook_all = true;
  else cc->hook[cc->nhook++] = t;
}

/* Reads server and session identity when unknown (one round trip, after a
 * session change or on a new connection). False when it cannot be known. */
static bool ensure_identity(qp_conn *c, qc_conn *cc) {
  if (cc->sess != NULL) return true;
  qp_cache *cache = cache_of(c);
  qp_buf server, session;
  qp__buf_init(&server, &cache->hooks);
  qp__buf_init(&session, &cache->hooks);
  bool strict = false, refuse = false;
  qp__berr err;
  qp__berr_clear(&err);
  qp_status st = cops(c)->identity(c->b, &server, &session, &strict, &refuse, &err);
  if (st == QP_OK && cc->uniq) {
    /* a session the cache cannot read (SQLite PRAGMA, temp):
     * its entries are its own */
    qp__buf_printf(&session, "\nconn:%p", (void *)cc);
  }
  if (st == QP_OK && !server.failed && !session.failed) {
    cc->server =
        qc_server_get(cache, qp__buf_cstr(&server), server.len, cops(c)->qualify != NULL);
    if (cc->server != NULL)
      cc->sess = qc_session_get(cache, cc->server, qp__buf_cstr(&session), session.len, strict,
                                refuse);
  } else if (st != QP_OK) {
    qp__log(&cache->hooks, QP_LOG_DEBUG, "%s", err.msg);
  }
  qp__buf_free(&server);
  qp__buf_free(&session);
  if (cops(c)->reported != NULL)
    cc->reported_len = cops(c)->reported(c->b, cc->reported, sizeof cc->reported);
  return cc->sess != NULL;
}

/* ---- what a statement is on this server --------------------------------- */

typedef struct reach_acc {
  qp_cache *cache;
  qc_server *s;
  qc_reach r;
} reach_acc;

/* a name the backend says a write reaches or a read depends on */
static void reach_add(void *ud, int which, const char *name) {
  reach_acc *a = ud;
  bool w = which == QP__REACH_WRITE;
  qc_table **v = w ? a->r.wr : a->r.rd;
  uint8_t *n = w ? &a->r.nwr : &a->r.nrd;
  qc_table *t = qc_table_add(a->cache, a->s, name);
  if (t == NULL || *n == QP_STMT_MAX_TABLES) {
    if (w) a->r.wall = true;
    else a->r.rall = true;
    return;
  }
  for (uint8_t i = 0; i < *n; i++)
    if (v[i] == t) return;
  v[(*n)++] = t;
}

/* What t is on its server, resolved once per schema epoch and TTL; *reach
 * gets the reach of a WIDE name (known false: none, reads depend on every
 * write and writes flush). */
static int table_kind(qp_conn *c, qc_table *t, qc_reach *reach) {
  qc_server *s = t->server;
  uint64_t now = qp__now_ns(), epoch = atomic_load(&s->schema);
  pthread_mutex_lock(&s->mu);
  int k = t->kind;
  bool valid = k != QC_TABLE_UNRESOLVED && t->kind_epoch == epoch && now < t->kind_until;
  if (valid) *reach = t->reach;
  pthread_mutex_unlock(&s->mu);
  if (valid) return k;
  k = cops(c)->table(c->b, t->name);
  if (k == 0) return 0; /* failure: not remembered */
  qp_cache *cache = cache_of(c);
  reach_acc acc;
  memset(&acc, 0, sizeof acc);
  acc.r.refuse = -1;
  acc.cache = cache;
  acc.s = s;
  if (k == QC_TABLE_WIDE && cops(c)->reach != NULL) {
    int fl = cops(c)->reach(c->b, t->name, reach_add, &acc);
    if (fl >= 0) {
      acc.r.known = true;
      acc.r.wall |= (fl & QP__REACH_WRITE_ALL) != 0;
      acc.r.rall |= (fl & QP__REACH_READ_ALL) != 0;
      acc.r.refuse = (fl & QP__REACH_READ_NEVER)      ? QP_CACHE_REFUSED_TEMP
                     : (fl & QP__REACH_READ_CATALOG)  ? QP_CACHE_REFUSED_CATALOG
                     : (fl & QP__REACH_READ_VOLATILE) ? QP_CACHE_REFUSED_VOLATILE
                                                      : -1;
    } else {
      /* failure: wide ("all") this time, asked again next time */
      memset(&acc.r, 0, sizeof acc.r);
      acc.r.refuse = -1;
      *reach = acc.r;
      return k;
    }
  }
  pthread_mutex_lock(&s->mu);
  t->kind = (qc_table_kind)k;
  t->reach = acc.r;
  t->kind_epoch = epoch;
  t->kind_until = now + (cache->ttl_ns ? cache->ttl_ns : UINT64_MAX / 2);
  pthread_mutex_unlock(&s->mu);
  *reach = acc.r;
  return k;
}

/* Adds t to v[0..*n) once; false when full. */
static bool tables_add(qc_table **v, size_t *n, qc_table *t) {
  for (size_t i = 0; i < *n; i++)
    if (v[i] == t) return true;
  if (*n == QP_STMT_MAX_TABLES) return false;
  v[(*n)++] = t;
  return true;
}

static int func_state(qp_conn *c, qc_server *s, const char *name) {
  qp_cache *cache = cache_of(c);
  uint64_t now = qp__now_ns(), epoch = atomic_load(&s->schema);
  pthread_mutex_lock(&s->mu);
  qc_func *f = s->funcs;
  while (f != NULL && strcmp(f->name, name) != 0) f = f->next;
  int state = f != NULL && f->epoch == epoch && now < f->until ? f->state : -2;
  pthread_mutex_unlock(&s->mu);
  if (state != -2) return state;
  state = cops(c)->func(c->b, name);
  if (state < 0) return state;
  pthread_mutex_lock(&s->mu);
  for (f = s->funcs; f != NULL && strcmp(f->name, name) != 0; f = f->next) {
  }
  if (f == NULL && (f = qp__calloc(&cache->hooks, 1, sizeof *f)) != NULL) {
    snprintf(f->name, sizeof f->name, "%s", name);
    f->next = s->funcs;
    s->funcs = f;
  }
  if (f != NULL) {
    f->state = (int8_t)state;
    f->epoch = epoch;
    f->until = now + (cache->ttl_ns ? cache->ttl_ns : UINT64_MAX / 2);
  }
  pthread_mutex_unlock(&s->mu);
  return state;
}

static void refuse_if(qc_stmt *m, int reason) {
  if (m->refuse < 0) m->refuse = reason;
}

/* The table a name as written stands for on this connection: *k its kind
 * (0 failure, QC_TABLE_REFUSE for a name the backend cannot place). */
static qc_table *table_for(qp_conn *c, qc_server *s, const char *name, int *k, qc_reach *r) {
  char key[QP_STMT_NAME_MAX];
  memset(r, 0, sizeof *r);
  r->refuse = -1;
  if (cops(c)->qualify != NULL) {
    int q = cops(c)->qualify(c->b, name, key, sizeof key);
    if (q <= 0) {
      *k = q < 0 ? 0 : QC_TABLE_REFUSE;
      return NULL;
    }
    name = key;
  }
  qc_table *t = qc_table_add(cache_of(c), s, name);
  *k = t ? table_kind(c, t, r) : 0;
  return t;
}

/* Classifies sql and resolves its tables and functions on cc's server. */
static void resolve(qp_conn *c, qc_conn *cc, const char *sql, size_t len, qc_stmt *m) {
  qp_cache *cache = cache_of(c);
  qp_stmt_info info;
  info.size = sizeof info;
  qp_sql_classify(c->pool->ops->dialect, sql, len, &info);
  qc_server *s = cc->server;
  m->server = s;
  m->epoch = atomic_load(&s->schema);
  m->until = qp__now_ns() + (cache->ttl_ns ? cache->ttl_ns : UINT64_MAX / 2);
  m->kind = info.kind;
  m->tcl = info.tcl;
  m->iso = info.isolation;
  m->session = info.changes_session || info.kind == QP_STMT_SESSION;
  m->read = info.kind == QP_STMT_SELECT && info.read_only;
  m->write_all = m->write_wide = m->may_write_all = m->wide = false;
  m->refuse = -1;
  m->nread = m->nwrite = 0;
  bool writes = info.kind != QP_STMT_TCL && info.kind != QP_STMT_SESSION && !m->read;
  if (info.kind == QP_STMT_SELECT && !info.read_only) {
    /* FOR UPDATE and nextval() change no table; INTO and CTEs do */
    writes = info.writing_cte || info.select_into || info.nwrite > 0;
    refuse_if(m, info.locking != QP_LOCK_NONE ? QP_CACHE_REFUSED_LOCKING
                 : info.select_into || info.writing_cte ? QP_CACHE_REFUSED_INTO
                                                        : QP_CACHE_REFUSED_VOLATILE);
  }
  if (!m->read) refuse_if(m, QP_CACHE_REFUSED_NOT_SELECT);
  /* EXPLAIN's output follows the planner's statistics, not the data */
  size_t w = 0;
  while (w < len && (sql[w] == ' ' || sql[w] == '\t' || sql[w] == '\n' || sql[w] == '(')) w++;
  if (len - w >= 7 && strncasecmp(sql + w, "explain", 7) == 0)
    refuse_if(m, QP_CACHE_REFUSED_NOT_SELECT);
  /* ATTACH and DETACH change only the databases, which the identity lists
   * (anything else the classifier calls a session change, or one written
   * with a comment first, makes the session the connection's own) */
  m->attach = m->session && info.kind == QP_STMT_SESSION && len - w > 6 &&
              (strncasecmp(sql + w, "attach", 6) == 0 || strncasecmp(sql + w, "detach", 6) == 0) &&
              (sql[w + 6] == ' ' || sql[w + 6] == '\t' || sql[w + 6] == '\n' || sql[w + 6] == '\'');
  if (writes) {
    m->write_all = info.kind == QP_STMT_DDL || info.kind == QP_STMT_OTHER || info.flush_all ||
                   info.select_into || info.tables_truncated || info.nwrite == 0 ||
                   info.creates_temp;
    for (size_t i = 0; i < info.nwrite && !m->write_all; i++) {
      qc_reach r;
      int k;
      qc_table *t = table_for(c, s, info.write[i], &k, &r);
      if (k == 0 || t == NULL) {
        m->write_all = true;
      } else if (k == QC_TABLE_WIDE) {
        /* the tables its reach names, or (unknown, "all") the server's
         * entries */
        if (!r.known || r.wall) m->write_wide = true;
        for (size_t j = 0; r.known && !r.wall && j < r.nwr; j++)
          if (!tables_add(m->wr, &m->nwrite, r.wr[j])) m->write_wide = true;
      } else if (k == QC_TABLE_PLAIN && !tables_add(m->wr, &m->nwrite, t)) {
        m->write_wide = true;
      }
      /* REFUSE (temporary, unlogged): never cached, nothing to bump */
    }
    if (m->write_all) m->nwrite = 0;
  }
  if (m->read) {
    if (info.volatile_fn) refuse_if(m, QP_CACHE_REFUSED_VOLATILE);
    if (info.system_catalog) refuse_if(m, QP_CACHE_REFUSED_CATALOG);
    if (info.creates_temp) refuse_if(m, QP_CACHE_REFUSED_TEMP);
    if (info.tables_truncated || info.funcs_truncated) refuse_if(m, QP_CACHE_REFUSED_UNKNOWN);
  }
  /* functions: asked of the server once each (a volatile user function may
   * write any table, whatever the statement's kind) */
  for (size_t i = 0; i < info.nfuncs && (m->read || writes); i++) {
    int st = func_state(c, s, info.funcs[i]);
    if (st == 2) m->may_write_all = true;
    if (st == 1) continue;
    refuse_if(m, st == 0 || st == 2 ? QP_CACHE_REFUSED_VOLATILE : QP_CACHE_REFUSED_UNKNOWN);
  }
  if (m->read && m->refuse < 0) {
    if (cache->stmt_re != NULL) {
      char buf[QP_NORMALIZED_MAX], hex[QP_FINGERPRINT_HEX_SIZE];
      size_t n = 0;
      uint64_t fp = 0;
      bool ok = c->pool->names != NULL &&
                qp_profile_normalize(c->pool->names, c->pool->ops->kind, sql, len, buf, sizeof buf,
                                     &n, &fp) == QP_OK;
      qp_fingerprint_hex(fp, hex);
      if (!(ok ? qp__cache_match(cache->stmt_re, buf, n) ||
                     qp__cache_match(cache->stmt_re, hex, strlen(hex))
               : qp__cache_match(cache->stmt_re, sql, len)))
        refuse_if(m, QP_CACHE_REFUSED_PATTERN);
    }
    for (size_t i = 0; i < info.nread && m->refuse < 0; i++) {
      if (!qp__cache_match(cache->table_re, info.read[i], strlen(info.read[i]))) {
        refuse_if(m, QP_CACHE_REFUSED_PATTERN);
        break;
      }
      qc_reach r;
      int k;
      qc_table *t = table_for(c, s, info.read[i], &k, &r);
      if (k == 0) refuse_if(m, QP_CACHE_REFUSED_UNKNOWN);
      else if (k == QC_TABLE_REFUSE) refuse_if(m, QP_CACHE_REFUSED_TEMP);
      else if (k == QC_TABLE_WIDE && r.known && r.refuse >= 0) refuse_if(m, r.refuse);
      else if (k == QC_TABLE_WIDE && r.known && !r.rall) {
        /* a view's base tables, the tables its policies read: a write
         * that reaches any of them moves its version */
        for (size_t j = 0; j < r.nrd; j++)
          if (!tables_add(m->rd, &m->nread, r.rd[j])) m->wide = true;
      } else {
        if (k == QC_TABLE_WIDE) m->wide = true;
        if (!tables_add(m->rd, &m->nread, t)) m->wide = true;
      }
    }
  }
}

/* The memoized statement, resolved again after a flush or when stale. */
static bool stmt_valid(qp_conn *c, qc_conn *cc, const qc_stmt *m) {
  return m->server == cc->server && m->epoch == atomic_load(&cc->server->schema) &&
         (cache_of(c)->ttl_ns == 0 || qp__now_ns() < m->until);
}

static qc_stmt *stmt_for(qp_conn *c, qc_conn *cc, const char *sql, size_t len,
                               qc_stmt *tmp) {
  qc_stmt *m = cc->last_m;
  if (m != NULL && sql == cc->last_sql && m->sql != NULL && m->len == len &&
      memcmp(m->sql, sql, len) == 0 && stmt_valid(c, cc, m))
    return m;
  uint64_t h = XXH3_64bits(sql, len);
  m = &cc->memo[h & (QC_MEMO - 1)];
  if (m->sql != NULL && m->h == h && m->len == len && memcmp(m->sql, sql, len) == 0 &&
      stmt_valid(c, cc, m)) {
    cc->last_sql = sql;
    cc->last_m = m;
    return m;
  }
  qp_cache *cache = cache_of(c);
  char *copy = (m->sql != NULL && m->len == len && memcmp(m->sql, sql, len) == 0)
                   ? m->sql
                   : qp__strndup(&cache->hooks, sql, len);
  if (copy == NULL) {
    m = tmp; /* not memoized */
  } else if (copy != m->sql) {
    qp__free(&cache->hooks, m->sql);
    qp__free(&cache->hooks, m->norm);
    m->norm = NULL;
  }
  resolve(c, cc, sql, len, m);
  m->sql = copy;
  m->len = len;
  m->h = h;
  if (m != tmp) {
    cc->last_sql = sql;
    cc->last_m = m;
  } else {
    cc->last_sql = NULL;
    cc->last_m = NULL;
  }
  return m;
}

/* ---- keys --------------------------------------------------------------- */

static bool put(char *buf, size_t cap, size_t *n, const void *p, size_t len) {
  if (*n + len > cap) {
    *n += len;
    return false;
  }
  memcpy(buf + *n, p, len);
  *n += len;
  return true;
}

/* SQL, a NUL, then per parameter: type, PostgreSQL type, length, bytes. */
static size_t key_write(char *buf, size_t cap, const char *sql, size_t len, const qp_param *ps,
                        size_t np) {
  size_t n = 0;
  put(buf, cap, &n, sql, len);
  put(buf, cap, &n, "", 1);
  for (size_t i = 0; i < np; i++) {
    const qp_param *p = &ps[i];
    unsigned char type = (unsigned char)p->type;
    put(buf, cap, &n, &type, 1);
    put(buf, cap, &n, &p->pg_type, sizeof p->pg_type);
    if (p->type == QP_PARAM_TEXT || p->type == QP_PARAM_BLOB) {
      size_t l = p->text == NULL ? 0 : (p->len == (size_t)-1 ? strlen(p->text) : p->len);
      put(buf, cap, &n, &l, sizeof l);
      if (l) put(buf, cap, &n, p->text, l);
    } else if (p->type == QP_PARAM_INT64) {
      put(buf, cap, &n, &p->i, sizeof p->i);
    } else if (p->type == QP_PARAM_DOUBLE) {
      put(buf, cap, &n, &p->d, sizeof p->d);
    }
  }
  return n;
}

static bool key_build(qp_cache *cache, qc_ticket *t, const qc_session *sess, const char *sql,
                      size_t len, uint64_t sql_hash, const qp_param *ps, size_t np) {
  size_t n = key_write(t->buf, sizeof t->buf, sql, len, ps, np);
  const char *bytes = t->buf;
  if (n > sizeof t->buf) {
    t->heap = qp__malloc(&cache->hooks, n);
    if (t->heap == NULL) return false;
    key_write(t->heap, n, sql, len, ps, np);
    bytes = t->heap;
  }
  t->key.sess = sess;
  t->key.bytes = bytes;
  t->key.len = n;
  /* the SQL's own hash (the memo's) seeds the hash of the parameters, so
   * that the SQL text is hashed once per statement */
  qc_key_hash(&t->key, sql_hash, len + 1);
  return true;
}

/* ---- invalidation fed by the lease -------------------------------------- */

static void pend_add(qc_conn *cc, qc_table *t) {
  for (size_t i = 0; i < cc->npend; i++)
    if (cc->pend[i] == t) return;
  if (cc->npend < QC_PENDING) cc->pend[cc->npend++] = t;
  else cc->pend_all = true;
}

static void pend_bump(qp_cache *cache, qc_conn *cc) {
  if (cc->pend_all) qc_server_flush(cache, cc->server);
  else if (cc->pend_wide) qc_server_flush_data(cache, cc->server);
  for (size_t i = 0; i < cc->npend; i++) qc_table_bump(cc->pend[i]);
}

static void ticket_bump(qp_cache *cache, qc_conn *cc, const qc_ticket *t) {
  if (t->write_all || t->may_write_all) qc_server_flush(cache, cc->server);
  else if (t->write_wide) qc_server_flush_data(cache, cc->server);
  for (size_t i = 0; i < t->nwrite; i++) qc_table_bump(t->write[i]);
}

static qp_txn_status txn_of(const qp_conn *c) { return c->pool->ops->txn_status(c->b); }

bool qp__cache_before(qp_conn *c, const char *sql, const qp_param *params, size_t nparams,
                      qp_result **out, qc_ticket *t) {
  qp_cache *cache = cache_of(c);
  t->mode = QC_NONE;
  t->heap = NULL;
  t->blind = false;
  size_t len = strlen(sql);
  qc_conn *cc = cc_state(c);
  qp_txn_status txn = txn_of(c);
  if (cc == NULL || !ensure_identity(c, cc)) {
    /* Without the lease's identity its writes cannot be aimed: every
     * statement that is not a plain SELECT flushes the whole cache before
     * and after. */
    qp_stmt_info info;
    info.size = sizeof info;
    qp_sql_classify(c->pool->ops->dialect, sql, len, &info);
    if (!(info.kind == QP_STMT_SELECT && info.read_only && info.nfuncs == 0)) {
      qp_cache_flush(cache);
      t->mode = QC_OTHER;
      t->blind = true;
    }
    if (cc != NULL) cc->sess = NULL;
    qc_refuse(cache, QP_CACHE_REFUSED_UNKNOWN);
    return false;
  }
  qc_stmt tmp;
  tmp.sql = NULL;
  tmp.norm = NULL;
  qc_stmt *m = stmt_for(c, cc, sql, len, &tmp);
  bool in_txn = txn == QP_TXN_INTRANS || txn == QP_TXN_INERROR;
  t->autocommit = !in_txn;
  t->session = m->session;
  t->attach = m->attach;
  t->tcl = m->tcl;
  t->write_all = m->write_all;
  t->write_wide = m->write_wide;
  t->may_write_all = m->may_write_all;
  t->nwrite = m->nwrite;
  if (m->nwrite > 0) memcpy(t->write, m->wr, m->nwrite * sizeof m->wr[0]);
  if (m->iso >= QP_ISO_REPEATABLE_READ && in_txn) cc->txn_strict = true;
  if (m->kind == QP_STMT_TCL) {
    t->mode = QC_TCL;
    if (m->tcl == QP_TCL_BEGIN) {
      txn_reset(cc);
      cc->txn_strict = m->iso >= QP_ISO_REPEATABLE_READ;
    } else if (m->tcl == QP_TCL_COMMIT_PREPARED) {
      qc_server_flush(cache, cc->server);
    } else if (m->tcl != QP_TCL_ROLLBACK && m->tcl != QP_TCL_ROLLBACK_TO &&
               m->tcl != QP_TCL_SAVEPOINT && m->tcl != QP_TCL_ROLLBACK_PREPARED) {
      /* COMMIT, RELEASE, PREPARE TRANSACTION: versions move before it is
       * sent, so that no fill overlapping the commit is stored */
      pend_bump(cache, cc);
    }
    return false;
  }
  if (m->session && in_txn) cc->txn_session = true;
  bool writes = m->write_all || m->write_wide || m->may_write_all || m->nwrite > 0 ||
                (!m->read && m->kind != QP_STMT_SESSION);
  if (writes) {
    t->mode = QC_WRITE;
    cc->nhook = 0;
    cc->hook_all = false;
    if (in_txn) {
      cc->txn_written = true;
      if (m->write_all || m->may_write_all) cc->pend_all = true;
      if (m->write_wide) cc->pend_wide = true;
      for (size_t i = 0; i < m->nwrite; i++) pend_add(cc, m->wr[i]);
    } else {
      ticket_bump(cache, cc, t);
    }
    return false;
  }
  t->mode = QC_OTHER;
  if (out == NULL || m->kind != QP_STMT_SELECT) return false;
  if (m->refuse >= 0) {
    qc_refuse(cache, (qp_cache_refusal)m->refuse);
    return false;
  }
  if (txn == QP_TXN_INERROR) return false;
  if (in_txn && cc->txn_written) {
    qc_refuse(cache, QP_CACHE_REFUSED_TXN_WRITTEN);
    return false;
  }
  if (in_txn && (cc->txn_strict || cc->sess->strict_iso)) {
    qc_refuse(cache, QP_CACHE_REFUSED_ISOLATION);
    return false;
  }
  if (cc->sess->refuse) {
    qc_refuse(cache, QP_CACHE_REFUSED_TEMP);
    return false;
  }
  if (cops(c)->changed != NULL) {
    /* another connection (this process's or another's) committed: what it
     * wrote is unknown here, so the server's entries go */
    int ch = cops(c)->changed(c->b);
    if (ch < 0) {
      /* (SQLite: also an ATTACH or DETACH the pool did not see) */
      cc->sess = NULL;
      qc_refuse(cache, QP_CACHE_REFUSED_UNKNOWN);
      return false;
    }
    if (ch > 0) qc_server_flush(cache, cc->server);
  }
  if (!key_build(cache, t, cc->sess, sql, len, m->h, params, nparams)) {
    qc_refuse(cache, QP_CACHE_REFUSED_NOMEM);
    return false;
  }
  bool nomem = false;
  uint64_t wait_ns = c->pool->o.acquire_timeout_ms > 0
                         ? (uint64_t)c->pool->o.acquire_timeout_ms * 1000000u
                         : 0;
  qc_lookup r = qc_lookup_key(cache, &t->key, wait_ns, out, &nomem);
  if (r == QC_HIT) {
    qp__free(&cache->hooks, t->heap);
    t->heap = NULL;
    t->mode = QC_NONE;
    /* the hit is recorded under the profile's fingerprint: normalized once
     * per memoized statement (not for a statement that could not be
     * memoized: the profile normalizes it) */
    t->norm = NULL;
    if (m != &tmp && c->pool->o.profile != NULL && c->pool->names != NULL) {
      if (m->norm == NULL) {
        char buf[QP_NORMALIZED_MAX];
        size_t n = 0;
        uint64_t fp = 0;
        if (qp_profile_normalize(c->pool->names, c->pool->ops->kind, sql, len, buf, sizeof buf,
                                 &n, &fp) == QP_OK &&
            (m->norm = qp__strndup(&cache->hooks, buf, n)) != NULL) {
          m->norm_len = n;
          m->fp = fp;
        }
      }
      t->norm = m->norm;
      t->norm_len = m->norm_len;
      t->fp = m->fp;
    }
    return true;
  }
  if (nomem) qc_refuse(cache, QP_CACHE_REFUSED_NOMEM);
  if (r == QC_MISS) {
    /* what the fill reads (a hit needs none of it) */
    t->deps.server = cc->server;
    t->deps.wide = m->wide;
    t->deps.n = m->nread;
    memcpy(t->deps.t, m->rd, m->nread * sizeof m->rd[0]);
    qc_deps_snapshot(&t->deps);
    t->mode = QC_FILL;
  }
  return false;
}

void qp__cache_after(qp_conn *c, qc_ticket *t, qp_status st, const qp_result *res) {
  qp_cache *cache = cache_of(c);
  qc_conn *cc = c->cache;
  if (t->mode == QC_NONE) goto done;
  if (t->mode == QC_FILL) qc_fill_end(cache, &t->key, &t->deps, st == QP_OK ? res : NULL);
  if (t->blind) {
    qp_cache_flush(cache);
    goto done;
  }
  if (cc == NULL || cc->server == NULL || c->b == NULL) goto done;
  qp_txn_status txn = txn_of(c);
  bool idle = txn == QP_TXN_IDLE;
  if (t->mode == QC_WRITE) {
    if (cc->hook_all) {
      if (t->autocommit || idle) qc_server_flush(cache, cc->server);
      else cc->pend_all = true;
    }
    for (size_t i = 0; i < cc->nhook; i++) {
      if (t->autocommit || idle) qc_table_bump(cc->hook[i]);
      else pend_add(cc, cc->hook[i]);
    }
    cc->nhook = 0;
    cc->hook_all = false;
    if (t->autocommit) ticket_bump(cache, cc, t);
    else if (!idle) cc->txn_written = true;
  }
  if (t->mode == QC_TCL || (!t->autocommit && idle)) {
    if (idle) {
      /* the transaction is over: a rollback discards what it would have
       * invalidated; anything else (COMMIT, an ending error) applies it */
      if (t->tcl != QP_TCL_ROLLBACK) pend_bump(cache, cc);
      if (t->tcl == QP_TCL_COMMIT_PREPARED) qc_server_flush(cache, cc->server);
      txn_reset(cc);
    }
  }
  if (t->session) {
    cc->sess = NULL;
    if (cops(c)->reported == NULL && !t->attach) cc->uniq = true;
  } else if (cops(c)->reported != NULL && cc->sess != NULL) {
    /* a function may have SET something the server reports */
    char now[sizeof cc->reported];
    size_t n = cops(c)->reported(c->b, now, sizeof now);
    if (n != cc->reported_len || memcmp(now, cc->reported, n) != 0) cc->sess = NULL;
  }
done:
  qp__free(&cache->hooks, t->heap);
  t->heap = NULL;
}

void qp__cache_script(qp_conn *c, const char *sql, bool after) {
  qp_cache *cache = cache_of(c);
  const qp__backend_ops *ops = c->pool->ops;
  size_t len = strlen(sql), pos = 0, start, slen;
  bool reads_only = true, session = false;
  while (qp_sql_split_next(ops->dialect, sql, len, &pos, &start, &slen)) {
    qp_stmt_info info;
    info.size = sizeof info;
    qp_sql_classify(ops->dialect, sql + start, slen, &info);
    if (info.kind == QP_STMT_SESSION || info.changes_session) session = true;
    if (!(info.kind == QP_STMT_SELECT && info.read_only && info.nfuncs == 0) &&
        info.kind != QP_STMT_SESSION)
      reads_only = false;
  }
  qc_conn *cc = cc_state(c);
  if (!reads_only) {
    if (cc != NULL && cc->server != NULL) qc_server_flush(cache, cc->server);
    else qp_cache_flush(cache);
    if (after && cc != NULL && c->b != NULL) {
      qp_txn_status txn = txn_of(c);
      if (txn == QP_TXN_INTRANS || txn == QP_TXN_INERROR) {
        cc->txn_written = true;
        cc->pend_all = true;
      } else {
        txn_reset(cc);
      }
    }
  }
  if (after && session && cc != NULL) {
    cc->sess = NULL;
    if (cops(c)->reported == NULL) cc->uniq = true;
  }
  if (after && cc != NULL) cc->nhook = 0;
}
