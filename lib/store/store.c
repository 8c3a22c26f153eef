/* The store API: picks an implementation by location and answers windows
 * from the roll-up levels (see store_int.h). */
#include <ctype.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

const char *qp_backend_name(qp_backend backend) {
  return backend == QP_BACKEND_SQLITE ? "sqlite" : "postgres";
}

int qp_store_schema_version(void) { return QP_STORE_SCHEMA_VERSION; }

int64_t qp__level_width(int level) {
  switch (level) {
  case QP_LEVEL_10MIN: return 600;
  case QP_LEVEL_HOUR: return 3600;
  case QP_LEVEL_6HOUR: return 21600;
  case QP_LEVEL_DAY: return 86400;
  default: return 0;
  }
}

int qp__level_rank(int level) {
  static const int rank[QP_LEVELS] = {[QP_LEVEL_BUCKET] = 0, [QP_LEVEL_10MIN] = 1,
                                      [QP_LEVEL_HOUR] = 2,   [QP_LEVEL_6HOUR] = 3,
                                      [QP_LEVEL_DAY] = 4,    [QP_LEVEL_ALL] = 5};
  return level >= 0 && level < QP_LEVELS ? rank[level] : -1;
}

bool qp__prune_deletes(int prune_level, int level) {
  int r = qp__level_rank(level);
  return r >= 0 && r <= qp__level_rank(prune_level) && level != QP_LEVEL_ALL;
}

int qp__prune_slot(int level) {
  switch (level) {
  case QP_LEVEL_BUCKET: return QP_PRUNE_MINUTE;
  case QP_LEVEL_10MIN:
  case QP_LEVEL_HOUR: return QP_PRUNE_HOUR;
  case QP_LEVEL_6HOUR:
  case QP_LEVEL_DAY: return QP_PRUNE_DAY;
  default: return -1;
  }
}

const char *qp__prune_levels_sql(int prune_level) {
  switch (prune_level) {
  case QP_LEVEL_BUCKET: return "0";
  case QP_LEVEL_HOUR: return "0, 1, 4";
  default: return "0, 1, 2, 4, 5";
  }
}

int64_t qp__level_bucket(int level, int64_t bucket) {
  if (level == QP_LEVEL_ALL) return 0;
  int64_t w = qp__level_width(level);
  return w > 0 ? qp__floor_div(bucket, w) * w : bucket;
}

/* A libpq connection string: a URI, or keyword=value pairs starting with a
 * libpq keyword. Anything else is a file path. The one answer to "is this
 * store location a DSN" (the CLI and the shim ask it too). */
bool qp_store_is_dsn(const char *loc) {
  if (loc == NULL) return false;
  if (strncmp(loc, "postgresql://", 13) == 0 || strncmp(loc, "postgres://", 11) == 0) return true;
  static const char *const kws[] = {"host",     "hostaddr", "port",    "dbname",
                                    "user",     "password", "service", "sslmode",
                                    "passfile", "options",  "application_name",
                                    "connect_timeout"};
  while (isspace((unsigned char)*loc)) loc++;
  size_t n = 0;
  while (loc[n] && (isalnum((unsigned char)loc[n]) || loc[n] == '_')) n++;
  const char *p = loc + n;
  while (isspace((unsigned char)*p)) p++;
  if (*p != '=') return false;
  for (size_t i = 0; i < QP_ARRAY_LEN(kws); i++)
    if (strlen(kws[i]) == n && strncmp(loc, kws[i], n) == 0) return true;
  return false;
}

qp_status qp_store_open(qp_store **out, const char *location, qp_store_mode mode,
                        const qp_hooks *hooks, char *errbuf, size_t errlen) {
  if (out == NULL) return qp__errbuf_set(errbuf, errlen, QP_INVALID, "out is NULL");
  *out = NULL;
  if (location == NULL || location[0] == '\0')
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "no store location given");
  if (mode != QP_STORE_READ && mode != QP_STORE_WRITE)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "invalid store mode %d", (int)mode);
  qp_hooks h;
  qp__hooks_init(&h, hooks);
  bool pg = qp_store_is_dsn(location);
  qp_store *s = qp__calloc(&h, 1, sizeof *s);
  if (s == NULL) return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  static _Atomic uint64_t serials;
  s->hooks = h;
  s->mode = mode;
  s->serial = atomic_fetch_add_explicit(&serials, 1, memory_order_relaxed) + 1;
  s->levels_from = INT64_MAX; /* the store's open reads it */
  s->ops = pg ? &qp__pg_store_ops : &qp__sqlite_store_ops;
  s->location = qp__strdup(&h, location);
  s->display = qp__malloc(&h, strlen(location) + 64);
  if (s->display != NULL) {
    if (pg) qp__dsn_redact(location, s->display, strlen(location) + 64);
    else memcpy(s->display, location, strlen(location) + 1);
  }
  if (s->location == NULL || s->display == NULL) {
    qp_store_close(s);
    return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  }
  qp_status rc = s->ops->open(s, mode);
  if (rc != QP_OK) {
    qp__errbuf_set(errbuf, errlen, rc, "%s", s->err.msg);
    s->impl = NULL;
    qp_store_close(s);
    return rc;
  }
  qp__err_clear(&s->err);
  *out = s;
  return QP_OK;
}

void qp_store_close(qp_store *s) {
  if (s == NULL) return;
  if (s->impl != NULL) s->ops->close(s);
  qp_hooks h = s->hooks;
  qp__free(&h, s->location);
  qp__free(&h, s->display);
  qp__free(&h, s);
}

const char *qp_store_errmsg(const qp_store *s) { return s == NULL ? "store is NULL" : s->err.msg; }

const char *qp_store_location(const qp_store *s) { return s == NULL ? "" : s->display; }

qp_status qp__store_write(qp_store *s, const qp_entry *list, const qp_drop *drop) {
  qp__err_clear(&s->err);
  s->write_in_doubt = false;
  return s->ops->write(s, list, drop);
}

qp_status qp__store_resolve(qp_store *s, bool *committed) {
  *committed = false;
  qp__err_clear(&s->err);
  if (!s->in_doubt || s->ops->resolve == NULL) return QP_OK;
  return s->ops->resolve(s, committed);
}

bool qp__store_has_xact(const qp_store *s) { return s != NULL && s->ops->xact_status != NULL; }

qp_status qp__store_xact_status(qp_store *s, int64_t xid, const char *store_id, qp_xact *out) {
  qp__err_clear(&s->err);
  if (s->ops->xact_status == NULL)
    return qp__err_set(&s->err, QP_INVALID, "%s: this store cannot tell what became of a "
                                            "transaction", s->display);
  return s->ops->xact_status(s, xid, store_id, out);
}

/* The first whole second at or after t_ns. */
static int64_t ceil_s(int64_t t_ns) { return -qp__floor_div(-t_ns, 1000000000); }

qp_status qp__store_dropped(qp_store *s, int64_t since_ns, int64_t until_ns, uint64_t *n) {
  *n = 0;
  qp__err_clear(&s->err);
  if (s->ops->dropped == NULL) return QP_OK;
  /* a bucket counts when its start b (s) is in the window: since <= b * 1e9 < until */
  int64_t lo = since_ns == INT64_MIN ? INT64_MIN : ceil_s(since_ns);
  int64_t hi = until_ns == INT64_MAX ? INT64_MAX : ceil_s(until_ns);
  if (lo >= hi) return QP_OK;
  return s->ops->dropped(s, lo, hi, n);
}

qp_status qp__store_flush_marked(qp_store *s, qp_profile *p, qp_file_mark *mark) {
  if (s == NULL || p == NULL || mark == NULL) return QP_INVALID;
  s->mark = mark;
  s->mark_done = false;
  qp_status rc = qp_profile_flush(p, s);
  if (rc == QP_OK && !s->mark_done) rc = qp__store_write(s, NULL, NULL);
  s->mark = NULL;
  return rc;
}

qp_status qp__store_marks_find(qp_store *s, int64_t device, int64_t inode, uint64_t head_hash,
                               qp_file_mark *out, size_t cap, size_t *n) {
  qp__err_clear(&s->err);
  *n = 0;
  return s->ops->marks_find(s, device, inode, head_hash, out, cap, n);
}

/* ---- summaries over a window -------------------------------------------- */

typedef struct agg_map {
  qp_entry **slots;
  size_t cap, count;
  const qp_hooks *hooks;
  qp_intern intern; /* the dimension values of the entries */
  size_t rejected;  /* entries only the row filter's refused rows made (e->ignored) */
} agg_map;

/* A dimension not in the key is NULL: it hashes as a marker and is equal
 * only to NULL. */
static uint64_t str_hash(uint64_t h, const char *v) {
  if (v == NULL) return (h ^ 0xffu) * 0x100000001b3ull;
  for (const unsigned char *p = (const unsigned char *)v; *p; p++) h = (h ^ *p) * 0x100000001b3ull;
  return h * 0x100000001b3ull;
}

/* The key's dimensions of a row: database, user, application, host. */
static void key_dims(const qp_entry *r, unsigned dims, const char *d[4]) {
  d[0] = dims & QP_AGG_DATABASE ? r->database : NULL;
  d[1] = dims & QP_AGG_USER ? r->user : NULL;
  d[2] = dims & QP_AGG_APPLICATION ? r->application : NULL;
  d[3] = dims & QP_AGG_HOST ? r->host : NULL;
}

static uint64_t key_hash(const qp_entry *r, const char *const d[4]) {
  uint64_t h = r->fingerprint ^ ((uint64_t)r->backend * 0x9e3779b97f4a7c15ull);
  h = str_hash(str_hash(str_hash(str_hash(h, d[0]), d[1]), d[2]), d[3]);
  h ^= h >> 29;
  return h * 0xbf58476d1ce4e5b9ull;
}

static bool dim_eq(const char *a, const char *b) {
  return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool key_eq(const qp_entry *e, const qp_entry *r, const char *const d[4]) {
  return e->fingerprint == r->fingerprint && e->backend == r->backend &&
         dim_eq(e->database, d[0]) && dim_eq(e->user, d[1]) && dim_eq(e->application, d[2]) &&
         dim_eq(e->host, d[3]);
}

static const char *intern_dim(qp_intern *t, const char *v, bool *nomem) {
  if (v == NULL) return NULL;
  const char *x = qp__intern(t, v, strlen(v));
  if (x == NULL) *nomem = true;
  return x;
}

static bool agg_grow(agg_map *m) {
  size_t cap = m->cap ? m->cap * 2 : 1024;
  qp_entry **slots = qp__calloc(m->hooks, cap, sizeof *slots);
  if (slots == NULL) return false;
  for (size_t i = 0; i < m->cap; i++) {
    qp_entry *e = m->slots[i];
    if (e == NULL) continue;
    size_t j = e->hash & (cap - 1);
    while (slots[j] != NULL) j = (j + 1) & (cap - 1);
    slots[j] = e;
  }
  qp__free(m->hooks, m->slots);
  m->slots = slots;
  m->cap = cap;
  return true;
}

static void entry_free(qp_entry *e, const qp_hooks *h) {
  if (e == NULL) return;
  qp__stats_free(&e->st, h);
  qp__free(h, e);
}

static void agg_free(agg_map *m) {
  for (size_t i = 0; i < m->cap; i++) entry_free(m->slots[i], m->hooks);
  qp__free(m->hooks, m->slots);
  qp__intern_free(&m->intern);
}

typedef struct agg_ctx {
  qp_store *s;
  agg_map map;
  qp_agg_key key;
} agg_ctx;

static qp_status agg_row(void *ud, const qp_entry *row) {
  agg_ctx *c = ud;
  agg_map *m = &c->map;
  int keep = c->key.keep != NULL ? c->key.keep(c->key.keep_ud, row) : 1;
  if (keep < 0) return qp__err_set(&c->s->err, QP_NOMEM, "out of memory");
  if ((m->count + 1) * 2 > m->cap && !agg_grow(m))
    return qp__err_set(&c->s->err, QP_NOMEM, "out of memory");
  const char *d[4];
  key_dims(row, c->key.dims, d);
  uint64_t h = key_hash(row, d);
  size_t j = h & (m->cap - 1);
  for (;;) {
    qp_entry *e = m->slots[j];
    if (e == NULL) break;
    if (e->hash == h && key_eq(e, row, d)) {
      if (keep == 0) return QP_OK;
      if (!qp__stats_merge(&e->st, &row->st, m->hooks))
        return qp__err_set(&c->s->err, QP_NOMEM, "out of memory");
      if (e->ignored) {
        e->ignored = false;
        m->rejected--;
      }
      return QP_OK;
    }
    j = (j + 1) & (m->cap - 1);
  }
  qp_entry *e = qp__calloc(m->hooks, 1, sizeof *e);
  if (e == NULL) return qp__err_set(&c->s->err, QP_NOMEM, "out of memory");
  qp__stats_init(&e->st);
  bool nomem = false;
  e->database = (char *)intern_dim(&m->intern, d[0], &nomem);
  e->user = (char *)intern_dim(&m->intern, d[1], &nomem);
  e->application = (char *)intern_dim(&m->intern, d[2], &nomem);
  e->host = (char *)intern_dim(&m->intern, d[3], &nomem);
  /* a key only refused rows have is counted, not merged */
  if (nomem || (keep == 1 && !qp__stats_merge(&e->st, &row->st, m->hooks))) {
    qp__stats_free(&e->st, m->hooks);
    qp__free(m->hooks, e);
    return qp__err_set(&c->s->err, QP_NOMEM, "out of memory");
  }
  if (keep == 0) {
    e->ignored = true;
    m->rejected++;
  }
  e->hash = h;
  e->fingerprint = row->fingerprint;
  e->backend = row->backend;
  m->slots[j] = e;
  m->count++;
  return QP_OK;
}

/* Ceiling of ns / 1e9 without overflow at the INT64 extremes. */
static int64_t ns_to_s_ceil(int64_t ns) {
  int64_t q = ns / 1000000000;
  if (ns % 1000000000 > 0) q++;
  return q;
}

static int64_t ceil_to(int64_t v, int64_t unit) { return -qp__floor_div(-v, unit) * unit; }

typedef struct tile {
  int level;
  int64_t lo, hi;
} tile;

/* Covers the bucket starts [lo, hi) with the coarsest of `levels` (finest
 * first, each width a multiple of the one before) whose rows fit, then the
 * finer ones at the edges: at most 2 n - 1 tiles, appended to t. */
static int tile_span(int64_t lo, int64_t hi, const int *levels, int n, tile *t, int nt) {
  if (lo >= hi) return nt;
  for (int i = n - 1; i > 0; i--) {
    int64_t w = qp__level_width(levels[i]);
    int64_t a = ceil_to(lo, w), b = qp__floor_div(hi, w) * w;
    if (a >= b) continue;
    nt = tile_span(lo, a, levels, i, t, nt);
    t[nt++] = (tile){levels[i], a, b};
    return tile_span(b, hi, levels, i, t, nt);
  }
  t[nt++] = (tile){levels[0], lo, hi};
  return nt;
}

/* The most tiles plan_tiles makes: 5 before the completion point, 9 after. */
#define QP_TILES_MAX 14

/* Covers the bucket starts [S, U) with whole days, 6 hours, hours, 10
 * minutes, then single buckets at the edges; before `from` (the first
 * second for which the 10-minute and 6-hour levels are complete, see
 * QP_META_LEVELS_FROM) with days, hours and buckets only. Returns the number
 * of tiles. A 12-hour window at 6-hour boundaries is 2 rows per key; one
 * with minute edges (06:17 to 18:43) 3 + 4 ten-minute, 5 hour, 1 six-hour,
 * 4 ten-minute and 3 bucket rows. */
static int plan_tiles(int64_t S, int64_t U, int64_t from, tile t[QP_TILES_MAX]) {
  static const int old_levels[] = {QP_LEVEL_BUCKET, QP_LEVEL_HOUR, QP_LEVEL_DAY};
  static const int all_levels[] = {QP_LEVEL_BUCKET, QP_LEVEL_10MIN, QP_LEVEL_HOUR,
                                   QP_LEVEL_6HOUR, QP_LEVEL_DAY};
  int64_t mid = from < S ? S : from > U ? U : from;
  int n = tile_span(S, mid, old_levels, 3, t, 0);
  return tile_span(mid, U, all_levels, 5, t, n);
}

/* ---- texts -------------------------------------------------------------- */

/* Each merged query is handed to the caller with its text and freed at once:
 * a big window is not held twice while the caller copies. */

/* One text per statement (a local store: a prepared lookup each). */
static qp_status texts_each(qp_store *s, agg_map *m, qp_agg_fn fn, void *ud) {
  qp_buf query, sample;
  qp__buf_init(&query, &s->hooks);
  qp__buf_init(&sample, &s->hooks);
  qp_status rc = QP_OK;
  for (size_t i = 0; rc == QP_OK && i < m->cap; i++) {
    qp_entry *e = m->slots[i];
    if (e == NULL) continue;
    if (e->ignored) { /* only refused rows: not handed out */
      entry_free(e, &s->hooks);
      m->slots[i] = NULL;
      continue;
    }
    query.len = sample.len = 0;
    bool has_sample, found;
    rc = s->ops->query_text(s, e->fingerprint, &query, &sample, &has_sample, &found);
    if (rc != QP_OK) break;
    rc = fn(ud, e, qp__buf_cstr(&query), has_sample ? qp__buf_cstr(&sample) : NULL);
    entry_free(e, &s->hooks);
    m->slots[i] = NULL;
  }
  qp__buf_free(&query);
  qp__buf_free(&sample);
  return rc;
}

typedef struct texts_walk {
  qp_store *s;
  qp_entry **v; /* the window's queries by signed fingerprint; owned until handed over */
  size_t n, next;
  qp_agg_fn fn;
  void *ud;
} texts_walk;

static int by_signed_fingerprint(const void *a, const void *b) {
  int64_t x = (int64_t)(*(qp_entry *const *)a)->fingerprint;
  int64_t y = (int64_t)(*(qp_entry *const *)b)->fingerprint;
  return x < y ? -1 : x > y;
}

static qp_status hand_over(texts_walk *t, const char *query, const char *sample) {
  qp_entry *e = t->v[t->next];
  t->v[t->next++] = NULL;
  qp_status rc = t->fn(t->ud, e, query, sample);
  entry_free(e, &t->s->hooks);
  return rc;
}

/* A stored text: the queries before it have none (""), those of its
 * fingerprint (one per backend and database) get it. */
static qp_status text_found(void *ud, uint64_t fp, const char *query, const char *sample) {
  texts_walk *t = ud;
  qp_status rc = QP_OK;
  while (rc == QP_OK && t->next < t->n && (int64_t)t->v[t->next]->fingerprint < (int64_t)fp)
    rc = hand_over(t, "", NULL);
  while (rc == QP_OK && t->next < t->n && t->v[t->next]->fingerprint == fp)
    rc = hand_over(t, query, sample);
  return rc;
}

/* All texts of the window in one statement (a store across a network: one
 * round trip, however many queries), merged with the queries in
 * fingerprint order. */
static qp_status texts_at_once(qp_store *s, agg_map *m, qp_agg_fn fn, void *ud) {
  texts_walk t = {.s = s, .fn = fn, .ud = ud};
  if (m->count == 0) return QP_OK;
  t.v = qp__malloc(&s->hooks, m->count * sizeof *t.v);
  uint64_t *fps = qp__malloc(&s->hooks, m->count * sizeof *fps);
  if (t.v == NULL || fps == NULL) {
    qp__free(&s->hooks, t.v);
    qp__free(&s->hooks, fps);
    return qp__err_set(&s->err, QP_NOMEM, "out of memory");
  }
  for (size_t i = 0; i < m->cap; i++)
    if (m->slots[i] != NULL && !m->slots[i]->ignored) {
      t.v[t.n++] = m->slots[i];
      m->slots[i] = NULL; /* t.v owns it now */
    }
  /* what is left in the map (keys of refused rows only) agg_free frees */
  qsort(t.v, t.n, sizeof *t.v, by_signed_fingerprint);
  size_t nf = 0;
  for (size_t i = 0; i < t.n; i++)
    if (nf == 0 || fps[nf - 1] != t.v[i]->fingerprint) fps[nf++] = t.v[i]->fingerprint;
  qp_status rc = nf > 0 ? s->ops->query_texts(s, fps, nf, text_found, &t) : QP_OK;
  while (rc == QP_OK && t.next < t.n) rc = hand_over(&t, "", NULL);
  for (size_t i = t.next; i < t.n; i++) entry_free(t.v[i], &s->hooks);
  qp__free(&s->hooks, t.v);
  qp__free(&s->hooks, fps);
  return rc;
}

/* The bucket starts the store holds statistics for: those of the recorded
 * buckets, widened by the roll-ups that outlive them once pruned
 * (qp_store_prune): an hour (day) row before the hour (day) of the first
 * recorded bucket stands for the bucket starts from its own start, one
 * after the hour (day) of the last for those up to its end; the same for the
 * 10-minute and 6-hour rows. A store never pruned has no such row, so its
 * range is that of its recorded buckets. */
static qp_status data_range(qp_store *s, int64_t *first, int64_t *last, bool *empty) {
  /* finest first; the 10-minute and 6-hour levels only in a store that has them */
  static const int levels[] = {QP_LEVEL_10MIN, QP_LEVEL_HOUR, QP_LEVEL_6HOUR, QP_LEVEL_DAY};
  qp_status rc = s->ops->bucket_range(s, QP_LEVEL_BUCKET, first, last, empty);
  for (size_t i = 0; rc == QP_OK && i < QP_ARRAY_LEN(levels); i++) {
    int level = levels[i];
    if ((level == QP_LEVEL_10MIN || level == QP_LEVEL_6HOUR) && s->levels_from == INT64_MAX)
      continue;
    int64_t f, l, width = qp__level_width(level);
    bool none;
    rc = s->ops->bucket_range(s, level, &f, &l, &none);
    if (rc != QP_OK || none) continue;
    if (*empty) {
      *first = f;
      *last = l + width - 1;
      *empty = false;
      continue;
    }
    if (f < qp__level_bucket(level, *first)) *first = f;
    if (l > qp__level_bucket(level, *last)) *last = l + width - 1;
  }
  return rc;
}

static qp_status aggregate(qp_store *s, int64_t since_ns, int64_t until_ns, const qp_agg_key *key,
                           qp_agg_fn fn, void *ud, qp_window *w) {
  int64_t first, last;
  bool empty;
  qp_status rc = data_range(s, &first, &last, &empty);
  if (rc == QP_OK && empty && since_ns == INT64_MIN && until_ns == INT64_MAX) {
    /* Pruned down to the all-time totals (every day of it pruned): they
     * still answer the window without bounds, as bucket 0. */
    rc = s->ops->bucket_range(s, QP_LEVEL_ALL, &first, &last, &empty);
    first = last = 0;
  }
  if (rc != QP_OK || empty) return rc;
  int64_t S = since_ns == INT64_MIN ? first : ns_to_s_ceil(since_ns);
  int64_t U = until_ns == INT64_MAX ? last + 1 : ns_to_s_ceil(until_ns);
  if (S < first) S = first;
  if (U > last + 1) U = last + 1;
  if (S >= U) return QP_OK;
  w->lo_s = S;
  w->hi_s = U;
  w->empty = false;

  agg_ctx c = {.s = s, .map = {.hooks = &s->hooks}, .key = *key};
  qp__intern_init(&c.map.intern, &s->hooks, 0);
  if (S == first && U == last + 1) {
    rc = s->ops->scan(s, QP_LEVEL_ALL, 0, 1, agg_row, &c);
  } else {
    tile t[QP_TILES_MAX];
    int nt = plan_tiles(S, U, s->levels_from, t);
    for (int i = 0; rc == QP_OK && i < nt; i++)
      if (t[i].lo < t[i].hi) rc = s->ops->scan(s, t[i].level, t[i].lo, t[i].hi, agg_row, &c);
  }
  w->queries = c.map.count - c.map.rejected;
  w->keys_all = c.map.count;
  if (rc == QP_OK)
    rc = s->ops->query_texts != NULL ? texts_at_once(s, &c.map, fn, ud) : texts_each(s, &c.map, fn, ud);
  agg_free(&c.map);
  return rc;
}

qp_status qp__store_aggregate(qp_store *s, int64_t since_ns, int64_t until_ns, qp_agg_fn fn,
                              void *ud, qp_window *w) {
  return qp__store_aggregate_keyed(s, since_ns, until_ns, NULL, fn, ud, w);
}

qp_status qp__store_aggregate_keyed(qp_store *s, int64_t since_ns, int64_t until_ns,
                                    const qp_agg_key *key, qp_agg_fn fn, void *ud, qp_window *w) {
  static const qp_agg_key every = {.dims = QP_AGG_ALL};
  if (key == NULL) key = &every;
  qp__err_clear(&s->err);
  w->lo_s = w->hi_s = 0;
  w->empty = true;
  w->queries = 0;
  w->keys_all = 0;
  if (since_ns >= until_ns) return QP_OK;
  /* one snapshot (and one file lock) for the range, the rows and the texts */
  qp_status rc = s->ops->read_begin != NULL ? s->ops->read_begin(s) : QP_OK;
  if (rc != QP_OK) return rc;
  rc = aggregate(s, since_ns, until_ns, key, fn, ud, w);
  if (s->ops->read_end != NULL) s->ops->read_end(s);
  return rc;
}

bool qp__summary_fill(qp_query_summary *q, const qp_entry *e, const char *query,
                      const char *sample, qp_buf *codes) {
  const qp_stats *st = &e->st;
  *q = (qp_query_summary){
      .fingerprint = e->fingerprint,
      .backend = qp_backend_name(e->backend),
      .database = e->database,
      .user = e->user,
      .application = e->application,
      .host = e->host,
      .query = query,
      .sample = sample,
      .calls = st->calls,
      .errors = st->errors,
      .rows = st->rows,
      .total_ns = st->total_ns,
      .min_ns = st->calls ? st->min_ns : 0,
      .max_ns = st->max_ns,
      .mean_ns = st->calls ? (double)st->total_ns / (double)st->calls : 0,
      .stddev_ns = qp__stats_stddev(st),
      .first_seen_ns = st->first_ns,
      .last_seen_ns = st->last_ns,
      .cache_hits = st->cache_hits,
      .cache_hit_ns = st->cache_hit_ns,
  };
  /* as qp__stats_quantile, all five in one walk of the histogram */
  static const double qs[5] = {0.50, 0.90, 0.95, 0.99, 0.999};
  double p[5];
  qp__hist_quantiles(&st->hist, qs, 5, (double)st->min_ns, (double)st->max_ns, p);
  q->p50_ns = p[0];
  q->p90_ns = p[1];
  q->p95_ns = p[2];
  q->p99_ns = p[3];
  q->p999_ns = p[4];
  codes->len = 0;
  if (!qp__codes_encode(&st->codes, codes)) return false;
  q->error_codes = qp__buf_cstr(codes);
  return true;
}

typedef struct summarize_ctx {
  qp_summary_fn fn;
  void *ud;
  qp_buf codes;
  bool stopped;
  qp_store *s;
} summarize_ctx;

static qp_status summarize_one(void *ud, qp_entry *e, const char *query, const char *sample) {
  summarize_ctx *c = ud;
  qp_query_summary q;
  if (!qp__summary_fill(&q, e, query, sample, &c->codes))
    return qp__err_set(&c->s->err, QP_NOMEM, "out of memory");
  if (c->fn(&q, c->ud) != 0) {
    c->stopped = true;
    return QP_ERROR; /* stops the walk; turned back into QP_OK below */
  }
  return QP_OK;
}

qp_status qp_store_summarize(qp_store *s, int64_t since_ns, int64_t until_ns, qp_summary_fn fn,
                             void *ud) {
  if (s == NULL || fn == NULL) return QP_INVALID;
  summarize_ctx c = {.fn = fn, .ud = ud, .s = s};
  qp__buf_init(&c.codes, &s->hooks);
  qp_window w;
  qp_status rc = qp__store_aggregate(s, since_ns, until_ns, summarize_one, &c, &w);
  qp__buf_free(&c.codes);
  if (c.stopped) {
    qp__err_clear(&s->err);
    return QP_OK;
  }
  return rc;
}

qp_status qp__store_scan(qp_store *s, int level, int64_t lo, int64_t hi, qp_row_fn fn, void *ud) {
  qp__err_clear(&s->err);
  if (level < 0 || level >= QP_LEVELS) return qp__err_set(&s->err, QP_INVALID, "no level %d", level);
  if (lo >= hi) return QP_OK;
  return s->ops->scan(s, level, lo, hi, fn, ud);
}

typedef struct edge_ctx {
  int64_t max_last_ns;
} edge_ctx;

static qp_status edge_row(void *ud, const qp_entry *row) {
  edge_ctx *c = ud;
  if (row->st.last_ns > c->max_last_ns) c->max_last_ns = row->st.last_ns;
  return QP_OK;
}

qp_status qp__store_edge(qp_store *s, int64_t t_ns, int64_t *bucket_s, bool *straddles) {
  qp__err_clear(&s->err);
  *straddles = false;
  *bucket_s = 0;
  if (s->ops->bucket_before == NULL) return QP_OK;
  bool found;
  int64_t b;
  qp_status rc = s->ops->bucket_before(s, ns_to_s_ceil(t_ns), &b, &found);
  if (rc != QP_OK || !found) return rc;
  edge_ctx c = {.max_last_ns = INT64_MIN};
  if (s->ops->bucket_last_seen != NULL) {
    /* one aggregate on the server instead of every row of the bucket
     * (100,000 of them in a fleet's store) shipped and decoded */
    int64_t last;
    bool any;
    rc = s->ops->bucket_last_seen(s, b, &last, &any);
    if (rc == QP_OK && any) c.max_last_ns = last;
  } else {
    rc = s->ops->scan(s, QP_LEVEL_BUCKET, b, b + 1, edge_row, &c);
  }
  if (rc != QP_OK) return rc;
  *bucket_s = b;
  *straddles = c.max_last_ns >= t_ns;
  return QP_OK;
}

/* ---- retention ------------------------------------------------------------ */

_Static_assert((int)QP_PRUNE_MINUTE == (int)QP_LEVEL_BUCKET &&
                   (int)QP_PRUNE_HOUR == (int)QP_LEVEL_HOUR && (int)QP_PRUNE_DAY == (int)QP_LEVEL_DAY,
               "prune levels are store levels");

qp_status qp_store_prune(qp_store *s, int64_t before_ns, qp_prune_level level, unsigned flags,
                         qp_prune_result *out) {
  if (out != NULL) memset(out, 0, sizeof *out);
  if (s == NULL) return QP_INVALID;
  qp__err_clear(&s->err);
  if (out == NULL) return qp__err_set(&s->err, QP_INVALID, "out is NULL");
  if ((int)level < (int)QP_PRUNE_MINUTE || (int)level > (int)QP_PRUNE_DAY)
    return qp__err_set(&s->err, QP_INVALID, "no prune level %d (minute 0, hour 1, day 2)",
                       (int)level);
  if ((flags & ~(unsigned)(QP_PRUNE_DRY_RUN | QP_PRUNE_VACUUM)) != 0)
    return qp__err_set(&s->err, QP_INVALID, "unknown prune flags 0x%x", flags);
  if (!(flags & QP_PRUNE_DRY_RUN) && s->mode != QP_STORE_WRITE)
    return qp__err_set(&s->err, QP_INVALID,
                       "%s: store opened read-only; open it for writing to prune", s->display);
  if (s->ops->prune == NULL)
    return qp__err_set(&s->err, QP_UNSUPPORTED, "%s: this store cannot be pruned", s->display);
  /* Whole hours (days) only, so that what goes is exactly what the level
   * above still holds (see store.h). */
  int64_t t = qp__floor_div(before_ns, 1000000000);
  int64_t unit = level == QP_PRUNE_MINUTE ? 3600 : 86400;
  int64_t cutoff = qp__floor_div(t, unit) * unit;
  /* On an error after the commit (the space could not be reclaimed) the
   * counts stay: the rows are gone. */
  qp_status rc = s->ops->prune(s, (int)level, cutoff, flags, out);
  out->cutoff_ns = cutoff > INT64_MIN / 1000000000 ? cutoff * 1000000000 : INT64_MIN;
  return rc;
}

qp_status qp_store_compact(qp_store *s, uint64_t max_rows, qp_compact_result *out) {
  if (out != NULL) memset(out, 0, sizeof *out);
  if (s == NULL) return QP_INVALID;
  qp__err_clear(&s->err);
  if (out == NULL) return qp__err_set(&s->err, QP_INVALID, "out is NULL");
  if (s->mode != QP_STORE_WRITE)
    return qp__err_set(&s->err, QP_INVALID,
                       "%s: store opened read-only; open it for writing to compact", s->display);
  if (s->ops->compact == NULL) return QP_OK; /* no deltas: nothing to fold */
  return s->ops->compact(s, max_rows, out);
}

qp_status qp_store_save_advice(qp_store *s, const char *database, int64_t at_ns,
                               const char *document) {
  if (s == NULL) return QP_INVALID;
  qp__err_clear(&s->err);
  if (database == NULL || document == NULL)
    return qp__err_set(&s->err, QP_INVALID, "database or document is NULL");
  if (s->mode != QP_STORE_WRITE)
    return qp__err_set(&s->err, QP_INVALID,
                       "%s: store opened read-only; open it for writing to save advice",
                       s->display);
  if (s->ops->advice_put == NULL)
    return qp__err_set(&s->err, QP_UNSUPPORTED, "%s: this store cannot keep advice", s->display);
  return s->ops->advice_put(s, database, at_ns, document);
}

qp_status qp_store_advice_each(qp_store *s, qp_advice_fn fn, void *ud) {
  if (s == NULL) return QP_INVALID;
  qp__err_clear(&s->err);
  if (fn == NULL) return qp__err_set(&s->err, QP_INVALID, "fn is NULL");
  if (s->ops->advice_each == NULL) return QP_OK;
  return s->ops->advice_each(s, fn, ud);
}
