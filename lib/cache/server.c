/*
 * Servers, their tables' version counters and function memo, and interned
 * sessions. Reached only when a statement is first seen on a connection or
 * a session changes, never on the hit path.
 */
#include <ctype.h>
#include <string.h>

#include "cache_int.h"

/* Most distinct sessions kept (role x search_path x settings x servers);
 * past it nothing new is cached (sessions live as long as the cache). */
#define QC_MAX_SESSIONS 4096

qc_server *qc_server_get(qp_cache *c, const char *id, size_t len, bool qualified) {
  pthread_mutex_lock(&c->mu);
  qc_server *s = c->servers;
  while (s != NULL && !(s->idlen == len && memcmp(s->id, id, len) == 0)) s = s->next;
  if (s == NULL) {
    s = qp__calloc(&c->hooks, 1, sizeof *s + len + 1);
    if (s != NULL) {
      memcpy(s->id, id, len);
      s->idlen = len;
      s->qualified = qualified;
      pthread_mutex_init(&s->mu, NULL);
      s->next = c->servers;
      c->servers = s;
    }
  }
  pthread_mutex_unlock(&c->mu);
  return s;
}

/* "public.T" -> "t": the schema goes (unless the server's names are
 * qualified), case folds (see qc_table). */
static void base_name(const qc_server *s, const char *name, char *out) {
  const char *dot = s->qualified ? NULL : strrchr(name, '.');
  const char *b = dot ? dot + 1 : name;
  size_t i = 0;
  for (; b[i] && i + 1 < QP_STMT_NAME_MAX; i++) out[i] = (char)tolower((unsigned char)b[i]);
  out[i] = '\0';
}

qc_table *qc_table_get(qc_server *s, const char *name) {
  char key[QP_STMT_NAME_MAX];
  base_name(s, name, key);
  pthread_mutex_lock(&s->mu);
  qc_table *t = s->tables;
  while (t != NULL && strcmp(t->name, key) != 0) t = t->next;
  pthread_mutex_unlock(&s->mu);
  return t;
}

qc_table *qc_table_add(qp_cache *c, qc_server *s, const char *name);
qc_table *qc_table_add(qp_cache *c, qc_server *s, const char *name) {
  qc_table *t = qc_table_get(s, name);
  if (t != NULL) return t;
  char key[QP_STMT_NAME_MAX];
  base_name(s, name, key);
  pthread_mutex_lock(&s->mu);
  for (t = s->tables; t != NULL; t = t->next)
    if (strcmp(t->name, key) == 0) break;
  if (t == NULL && (t = qp__calloc(&c->hooks, 1, sizeof *t)) != NULL) {
    memcpy(t->name, key, sizeof key);
    t->server = s;
    t->next = s->tables;
    s->tables = t;
  }
  pthread_mutex_unlock(&s->mu);
  return t;
}

void qc_table_bump(qc_table *t) {
  atomic_fetch_add_explicit(&t->version, 1, memory_order_acq_rel);
  atomic_fetch_add_explicit(&t->server->any_write, 1, memory_order_acq_rel);
}

void qc_server_flush_data(qp_cache *c, qc_server *s) {
  atomic_fetch_add_explicit(&s->epoch, 1, memory_order_acq_rel);
  atomic_fetch_add_explicit(&s->any_write, 1, memory_order_acq_rel);
  atomic_fetch_add_explicit(&c->flushes, 1, memory_order_relaxed);
}

void qc_server_flush(qp_cache *c, qc_server *s) {
  atomic_fetch_add_explicit(&s->schema, 1, memory_order_acq_rel);
  atomic_fetch_add_explicit(&s->epoch, 1, memory_order_acq_rel);
  atomic_fetch_add_explicit(&s->any_write, 1, memory_order_acq_rel);
  atomic_fetch_add_explicit(&c->flushes, 1, memory_order_relaxed);
}

const qc_session *qc_session_get(qp_cache *c, qc_server *s, const char *text, size_t len,
                                 bool strict_iso, bool refuse) {
  pthread_mutex_lock(&c->mu);
  qc_session *x = c->sessions;
  while (x != NULL && !(x->server == s && x->len == len && x->strict_iso == strict_iso &&
                        x->refuse == refuse && memcmp(x->text, text, len) == 0))
    x = x->next;
  if (x == NULL && c->nsessions < QC_MAX_SESSIONS &&
      (x = qp__malloc(&c->hooks, sizeof *x + len + 1)) != NULL) {
    x->server = s;
    x->id = 0x9e3779b97f4a7c15ull * ++c->next_session;
    x->strict_iso = strict_iso;
    x->refuse = refuse;
    x->len = len;
    memcpy(x->text, text, len);
    x->text[len] = '\0';
    x->next = c->sessions;
    c->sessions = x;
    c->nsessions++;
  }
  pthread_mutex_unlock(&c->mu);
  return x;
}

void qc_servers_free(qp_cache *c) {
  for (qc_session *x = c->sessions, *n; x; x = n) {
    n = x->next;
    qp__free(&c->hooks, x);
  }
  for (qc_server *s = c->servers, *n; s; s = n) {
    n = s->next;
    for (qc_table *t = s->tables, *tn; t; t = tn) {
      tn = t->next;
      qp__free(&c->hooks, t);
    }
    for (qc_func *f = s->funcs, *fn; f; f = fn) {
      fn = f->next;
      qp__free(&c->hooks, f);
    }
    pthread_mutex_destroy(&s->mu);
    qp__free(&c->hooks, s);
  }
}
