/*
 * The cache's memory: the handle, shards (each a mutex, a hash table on the
 * key's 128-bit hash, a SIEVE queue and a byte budget), entries holding a
 * flat image of a result, single flight for concurrent misses, and the
 * cached-copy result type a hit hands out.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <inttypes.h>
#include <pcre2.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "backend/backend.h"
#include "cache_int.h"

/* ---- the cached-copy result -------------------------------------------- */

typedef struct qc_cell {
  uint32_t off, len; /* len QC_NULL: SQL NULL */
} qc_cell;
#define QC_NULL UINT32_MAX

/* The image: ncols name cells, nrows * ncols value cells, ncols byte flags
 * (the column's raw bytes are PostgreSQL's bytea hex text), then the text,
 * every value NUL-terminated. */
typedef struct qc_image {
  size_t nrows, ncols;
  int64_t affected;
  size_t len; /* bytes of the image after this header */
} qc_image;

typedef struct qc_blob {
  struct qc_blob *next;
  size_t row, col, len;
  unsigned char data[];
} qc_blob;

typedef struct qc_result {
  qp_result base;
  int64_t affected;
  const qc_cell *cells;
  const uint8_t *bytea;
  const char *data;
  qc_blob *blobs;
} qc_result;

static const qc_cell *qcr_cell(const qp_result *r, size_t row, size_t col) {
  const qc_result *q = (const qc_result *)r;
  return &q->cells[q->base.ncols + row * q->base.ncols + col];
}
static void qcr_free(qp_result *r) {
  qc_result *q = (qc_result *)r;
  for (qc_blob *b = q->blobs, *n; b; b = n) {
    n = b->next;
    qp__free(&r->hooks, b);
  }
  qp__free(&r->hooks, q);
}
static int64_t qcr_affected(const qp_result *r) { return ((const qc_result *)r)->affected; }
static const char *qcr_colname(const qp_result *r, size_t col) {
  const qc_result *q = (const qc_result *)r;
  return q->data + q->cells[col].off;
}
static bool qcr_isnull(const qp_result *r, size_t row, size_t col) {
  return qcr_cell(r, row, col)->len == QC_NULL;
}
static const char *qcr_value(const qp_result *r, size_t row, size_t col, size_t *len) {
  const qc_cell *c = qcr_cell(r, row, col);
  if (len) *len = c->len;
  return ((const qc_result *)r)->data + c->off;
}
static int hexval(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}
/* bytea columns decode PostgreSQL's hex output ("\x0102"), as the PostgreSQL
 * result does; anything else is its own bytes. */
static const void *qcr_blob(qp_result *r, size_t row, size_t col, size_t *len) {
  qc_result *q = (qc_result *)r;
  size_t n;
  const char *v = qcr_value(r, row, col, &n);
  if (!q->bytea[col] || n < 2 || v[0] != '\\' || v[1] != 'x') {
    if (len) *len = n;
    return v;
  }
  for (qc_blob *b = q->blobs; b; b = b->next)
    if (b->row == row && b->col == col) {
      if (len) *len = b->len;
      return b->data;
    }
  size_t out = (n - 2) / 2;
  qc_blob *b = qp__malloc(&r->hooks, sizeof *b + out + 1);
  if (b == NULL) return NULL;
  for (size_t i = 0; i < out; i++) {
    int hi = hexval(v[2 + 2 * i]), lo = hexval(v[3 + 2 * i]);
    b->data[i] = (unsigned char)((hi < 0 ? 0 : hi) << 4 | (lo < 0 ? 0 : lo));
  }
  b->data[out] = 0;
  b->row = row;
  b->col = col;
  b->len = out;
  b->next = q->blobs;
  q->blobs = b;
  if (len) *len = out;
  return b->data;
}

static const qp__result_ops qc_result_ops = {qcr_free,   qcr_affected, qcr_colname,
                                             qcr_isnull, qcr_value,    qcr_blob, NULL};

/* Bytes the image of res needs; SIZE_MAX when it cannot be stored (a
 * value over 4 GB). */
static size_t image_size(const qp_result *res) {
  size_t nr = res->nrows, nc = res->ncols;
  size_t n = (nc + nr * nc) * sizeof(qc_cell) + nc;
  for (size_t i = 0; i < nc; i++) n += strlen(res->ops->colname(res, i)) + 1;
  for (size_t r = 0; r < nr; r++)
    for (size_t i = 0; i < nc; i++) {
      if (res->ops->isnull(res, r, i)) continue;
      size_t l;
      res->ops->value(res, r, i, &l);
      if (l >= QC_NULL) return SIZE_MAX;
      n += l + 1;
    }
  return n;
}

static void image_write(const qp_result *res, qc_image *h, char *img) {
  size_t nr = res->nrows, nc = res->ncols;
  h->nrows = nr;
  h->ncols = nc;
  h->affected = res->ops->affected(res);
  qc_cell *cells = (qc_cell *)img;
  uint8_t *bytea = (uint8_t *)(cells + nc + nr * nc);
  char *data = (char *)(bytea + nc);
  size_t off = 0;
  for (size_t i = 0; i < nc; i++) {
    const char *name = res->ops->colname(res, i);
    size_t l = strlen(name);
    memcpy(data + off, name, l + 1);
    cells[i] = (qc_cell){(uint32_t)off, (uint32_t)l};
    off += l + 1;
    bytea[i] = res->ops->col_bytes != NULL && res->ops->col_bytes(res, i);
  }
  for (size_t r = 0; r < nr; r++)
    for (size_t i = 0; i < nc; i++) {
      qc_cell *c = &cells[nc + r * nc + i];
      if (res->ops->isnull(res, r, i)) {
        *c = (qc_cell){(uint32_t)off, QC_NULL};
        continue;
      }
      size_t l;
      const char *v = res->ops->value(res, r, i, &l);
      memcpy(data + off, v, l);
      data[off + l] = '\0';
      *c = (qc_cell){(uint32_t)off, (uint32_t)l};
      off += l + 1;
    }
}

/* A caller-owned result from an image: one allocation, one copy. */
static qp_result *image_result(const qp_hooks *hooks, const qc_image *h, const char *img) {
  qc_result *q = qp__malloc(hooks, sizeof *q + h->len);
  if (q == NULL) return NULL;
  char *copy = (char *)(q + 1);
  memcpy(copy, img, h->len);
  q->base.ops = &qc_result_ops;
  q->base.nrows = h->nrows;
  q->base.ncols = h->ncols;
  q->base.hooks = *hooks;
  q->affected = h->affected;
  q->cells = (const qc_cell *)copy;
  q->bytea = (const uint8_t *)(q->cells + h->ncols + h->nrows * h->ncols);
  q->data = (const char *)(q->bytea + h->ncols);
  q->blobs = NULL;
  return &q->base;
}

/* ---- entries and shards ------------------------------------------------- */

typedef struct qc_entry {
  struct qc_entry *hnext, *prev, *next; /* hash chain; queue (head newest) */
  uint64_t lo, hi;
  const qc_session *sess;
  uint64_t expires_ns; /* 0: never */
  bool visited;
  size_t bytes;
  qc_server *server;
  uint64_t epoch, any_write;
  bool wide;
  uint32_t ntables;
  qc_table **t;
  uint64_t *v;
  const char *key;
  size_t keylen;
  qc_image img;
  const char *data;
} qc_entry;

typedef struct qc_inflight {
  struct qc_inflight *next;
  const qc_key *k;
} qc_inflight;

typedef struct qc_shard {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  qc_entry **buckets;
  size_t nbuckets, count, bytes;
  qc_entry *head, *tail, *hand;
  qc_inflight *inflight;
  uint64_t hits, misses, fills, evictions, invalidations;
} __attribute__((aligned(64))) qc_shard;

static qc_shard *shard_of(qp_cache *c, uint64_t hi) { return &c->shards[hi >> 59]; }

static void q_unlink(qc_shard *s, qc_entry *e) {
  if (s->hand == e) s->hand = e->prev;
  if (e->prev) e->prev->next = e->next;
  else s->head = e->next;
  if (e->next) e->next->prev = e->prev;
  else s->tail = e->prev;
  e->prev = e->next = NULL;
}
static void q_push_head(qc_shard *s, qc_entry *e) {
  e->prev = NULL;
  e->next = s->head;
  if (s->head) s->head->prev = e;
  s->head = e;
  if (s->tail == NULL) s->tail = e;
}

static void entry_remove(qp_cache *c, qc_shard *s, qc_entry *e) {
  qc_entry **pp = &s->buckets[e->lo & (s->nbuckets - 1)];
  while (*pp != e) pp = &(*pp)->hnext;
  *pp = e->hnext;
  q_unlink(s, e);
  s->count--;
  s->bytes -= e->bytes;
  qp__free(&c->hooks, e);
}

/* SIEVE (Zhang et al., NSDI 2024): the hand walks from the tail towards the
 * head, clearing visited bits, and evicts the first unvisited entry; hits
 * only set a bit, so the queue never moves on the hit path. */
static void evict_one(qp_cache *c, qc_shard *s) {
  qc_entry *e;
  if (c->lru) {
    e = s->tail;
  } else {
    e = s->hand ? s->hand : s->tail;
    while (e != NULL && e->visited) {
      e->visited = false;
      e = e->prev ? e->prev : s->tail;
    }
    if (e != NULL) s->hand = e->prev;
  }
  if (e == NULL) return;
  entry_remove(c, s, e);
  s->evictions++;
}

static bool entry_current(const qc_entry *e) {
  if (e->expires_ns != 0 && qp__now_ns() >= e->expires_ns) return false;
  if (atomic_load_explicit(&e->server->epoch, memory_order_acquire) != e->epoch) return false;
  if (e->wide && atomic_load_explicit(&e->server->any_write, memory_order_acquire) != e->any_write)
    return false;
  for (uint32_t i = 0; i < e->ntables; i++)
    if (atomic_load_explicit(&e->t[i]->version, memory_order_acquire) != e->v[i]) return false;
  return true;
}

static qc_entry *find(qc_shard *s, const qc_key *k) {
  for (qc_entry *e = s->buckets[k->lo & (s->nbuckets - 1)]; e; e = e->hnext)
    if (e->lo == k->lo && e->hi == k->hi && e->sess == k->sess && e->keylen == k->len &&
        memcmp(e->key, k->bytes, k->len) == 0)
      return e;
  return NULL;
}

static bool same_key(const qc_key *a, const qc_key *b) {
  return a->lo == b->lo && a->hi == b->hi && a->sess == b->sess && a->len == b->len &&
         memcmp(a->bytes, b->bytes, a->len) == 0;
}

void qc_key_hash(qc_key *k, uint64_t head_hash, size_t head) {
  XXH128_hash_t h = XXH3_128bits_withSeed(k->bytes + head, k->len - head,
                                          head_hash ^ (k->sess->id * 0x9E3779B97F4A7C15ull));
  k->lo = h.low64;
  k->hi = h.high64;
}

qc_lookup qc_lookup_key(qp_cache *c, const qc_key *k, uint64_t wait_ns, qp_result **out,
                        bool *nomem) {
  *out = NULL;
  *nomem = false;
  qc_shard *s = shard_of(c, k->hi);
  bool waited = false;
  struct timespec deadline;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    qc_entry *e = find(s, k);
    if (e != NULL) {
      if (entry_current(e)) {
        *out = image_result(&c->hooks, &e->img, e->data);
        if (*out == NULL) {
          *nomem = true;
          pthread_mutex_unlock(&s->mu);
          return QC_FILLING;
        }
        if (c->lru) {
          q_unlink(s, e);
          q_push_head(s, e);
        } else {
          e->visited = true;
        }
        s->hits++;
        pthread_mutex_unlock(&s->mu);
        return QC_HIT;
      }
      entry_remove(c, s, e);
      s->invalidations++;
    }
    qc_inflight *f = s->inflight;
    while (f != NULL && !same_key(f->k, k)) f = f->next;
    if (f == NULL) break;
    /* another thread is filling this key: wait for it, bounded */
    if (!waited) {
      waited = true;
      atomic_fetch_add_explicit(&c->waits, 1, memory_order_relaxed);
      qp__timespec_after(&deadline, wait_ns);
    }
    if (pthread_cond_timedwait(&s->cv, &s->mu, &deadline) != 0) {
      s->misses++;
      pthread_mutex_unlock(&s->mu);
      return QC_FILLING;
    }
  }
  qc_inflight *f = qp__malloc(&c->hooks, sizeof *f);
  if (f == NULL) {
    s->misses++;
    pthread_mutex_unlock(&s->mu);
    *nomem = true;
    return QC_FILLING;
  }
  f->k = k;
  f->next = s->inflight;
  s->inflight = f;
  s->misses++;
  pthread_mutex_unlock(&s->mu);
  return QC_MISS;
}

static void grow_buckets(qp_cache *c, qc_shard *s) {
  size_t nb = s->nbuckets * 2;
  qc_entry **b = qp__calloc(&c->hooks, nb, sizeof *b);
  if (b == NULL) return; /* longer chains, still correct */
  for (size_t i = 0; i < s->nbuckets; i++)
    for (qc_entry *e = s->buckets[i], *n; e; e = n) {
      n = e->hnext;
      e->hnext = b[e->lo & (nb - 1)];
      b[e->lo & (nb - 1)] = e;
    }
  qp__free(&c->hooks, s->buckets);
  s->buckets = b;
  s->nbuckets = nb;
}

/* Builds the entry outside the shard lock; NULL when it does not fit or
 * memory ran out (*refusal says which). */
static qc_entry *entry_build(qp_cache *c, const qc_key *k, const qc_deps *d, const qp_result *res,
                             qp_cache_refusal *refusal) {
  size_t ilen = image_size(res);
  size_t kpad = (k->len + 7) & ~(size_t)7; /* the image's cells are aligned */
  size_t need = sizeof(qc_entry) + d->n * (sizeof(qc_table *) + sizeof(uint64_t)) + kpad;
  if (ilen == SIZE_MAX || ilen > c->max_entry_bytes || need + ilen > c->max_entry_bytes) {
    *refusal = QP_CACHE_REFUSED_TOO_BIG;
    return NULL;
  }
  need += ilen;
  qc_entry *e = qp__malloc(&c->hooks, need);
  if (e == NULL) {
    *refusal = QP_CACHE_REFUSED_NOMEM;
    return NULL;
  }
  memset(e, 0, sizeof *e);
  char *p = (char *)(e + 1);
  e->t = (qc_table **)p;
  p += d->n * sizeof(qc_table *);
  e->v = (uint64_t *)p;
  p += d->n * sizeof(uint64_t);
  for (size_t i = 0; i < d->n; i++) {
    e->t[i] = d->t[i];
    e->v[i] = d->v[i];
  }
  e->ntables = (uint32_t)d->n;
  memcpy(p, k->bytes, k->len);
  e->key = p;
  e->keylen = k->len;
  p += kpad;
  image_write(res, &e->img, p);
  e->img.len = ilen;
  e->data = p;
  e->lo = k->lo;
  e->hi = k->hi;
  e->sess = k->sess;
  e->bytes = need;
  e->server = d->server;
  e->epoch = d->epoch;
  e->any_write = d->any_write;
  e->wide = d->wide;
  e->expires_ns = c->ttl_ns ? qp__now_ns() + c->ttl_ns : 0;
  return e;
}

void qc_fill_end(qp_cache *c, const qc_key *k, const qc_deps *d, const qp_result *res) {
  qc_entry *e = NULL;
  if (res != NULL) {
    qp_cache_refusal why = QP_CACHE_REFUSED_NOMEM;
    /* A write that moved a version since the fill started may not be in
     * this result: return it, never store it. */
    if (!qc_deps_current(d)) qc_refuse(c, QP_CACHE_REFUSED_RACED);
    else if ((e = entry_build(c, k, d, res, &why)) == NULL) qc_refuse(c, why);
  }
  qc_shard *s = shard_of(c, k->hi);
  pthread_mutex_lock(&s->mu);
  for (qc_inflight **pp = &s->inflight; *pp; pp = &(*pp)->next)
    if ((*pp)->k == k) {
      qc_inflight *f = *pp;
      *pp = f->next;
      qp__free(&c->hooks, f);
      break;
    }
  /* checked again under the lock: a flush between the check and here */
  if (e != NULL && !qc_deps_current(d)) {
    qp__free(&c->hooks, e);
    e = NULL;
    qc_refuse(c, QP_CACHE_REFUSED_RACED);
  }
  if (e != NULL) {
    qc_entry *old = find(s, k);
    if (old != NULL) entry_remove(c, s, old);
    while (s->bytes + e->bytes > c->shard_bytes && s->tail != NULL) evict_one(c, s);
    if (s->count + 1 > s->nbuckets) grow_buckets(c, s);
    size_t b = e->lo & (s->nbuckets - 1);
    e->hnext = s->buckets[b];
    s->buckets[b] = e;
    q_push_head(s, e);
    s->count++;
    s->bytes += e->bytes;
    s->fills++;
  }
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

void qc_deps_snapshot(qc_deps *d) {
  d->epoch = atomic_load_explicit(&d->server->epoch, memory_order_acquire);
  d->any_write = atomic_load_explicit(&d->server->any_write, memory_order_acquire);
  for (size_t i = 0; i < d->n; i++)
    d->v[i] = atomic_load_explicit(&d->t[i]->version, memory_order_acquire);
}

bool qc_deps_current(const qc_deps *d) {
  if (atomic_load_explicit(&d->server->epoch, memory_order_acquire) != d->epoch) return false;
  if (d->wide && atomic_load_explicit(&d->server->any_write, memory_order_acquire) != d->any_write)
    return false;
  for (size_t i = 0; i < d->n; i++)
    if (atomic_load_explicit(&d->t[i]->version, memory_order_acquire) != d->v[i]) return false;
  return true;
}

/* ---- the handle --------------------------------------------------------- */

void qp_cache_options_init(qp_cache_options *o) {
  if (o == NULL) return;
  memset(o, 0, sizeof *o);
  o->size = sizeof *o;
  o->max_bytes = (size_t)64 << 20;
  o->max_entry_bytes = (size_t)1 << 20;
  o->ttl_ms = 60000;
}

/* One alternation of every pattern, compiled once; NULL when there are none. */
static qp_status compile_patterns(qp_cache *c, const char *const *pats, size_t n, const char *what,
                                  void **out, char *errbuf, size_t errlen) {
  *out = NULL;
  if (n == 0) return QP_OK;
  if (pats == NULL)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "cache: %s patterns missing", what);
  qp_buf b;
  qp__buf_init(&b, &c->hooks);
  for (size_t i = 0; i < n; i++) {
    if (pats[i] == NULL) {
      qp__buf_free(&b);
      return qp__errbuf_set(errbuf, errlen, QP_INVALID, "cache: %s pattern %zu is NULL", what, i);
    }
    /* each alone first, so that the message names the one at fault */
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *one = pcre2_compile((PCRE2_SPTR)pats[i], PCRE2_ZERO_TERMINATED, PCRE2_UTF, &ec,
                                    &eo, NULL);
    if (one == NULL) {
      PCRE2_UCHAR msg[160];
      pcre2_get_error_message(ec, msg, sizeof msg);
      qp__buf_free(&b);
      return qp__errbuf_set(errbuf, errlen, QP_PATTERN,
                            "cache: %s pattern %zu '%s' does not compile at offset %zu: %s", what,
                            i, pats[i], (size_t)eo, (const char *)msg);
    }
    pcre2_code_free(one);
    if (!qp__buf_printf(&b, "%s(?:%s)", i ? "|" : "", pats[i])) {
      qp__buf_free(&b);
      return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "cache: out of memory");
    }
  }
  int ec;
  PCRE2_SIZE eo;
  pcre2_code *re = pcre2_compile((PCRE2_SPTR)qp__buf_cstr(&b), PCRE2_ZERO_TERMINATED, PCRE2_UTF,
                                 &ec, &eo, NULL);
  qp__buf_free(&b);
  if (re == NULL)
    return qp__errbuf_set(errbuf, errlen, QP_PATTERN, "cache: %s patterns do not combine", what);
  (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
  *out = re;
  return QP_OK;
}

bool qp__cache_match(const void *re, const char *s, size_t len);
bool qp__cache_match(const void *re, const char *s, size_t len) {
  if (re == NULL) return true;
  pcre2_match_data *md = pcre2_match_data_create(1, NULL);
  if (md == NULL) return false;
  int rc = pcre2_match(re, (PCRE2_SPTR)s, len, 0, 0, md, NULL);
  pcre2_match_data_free(md);
  return rc >= 0;
}

qp_status qp_cache_open(qp_cache **out, const qp_cache_options *user, char *errbuf,
                        size_t errlen) {
  if (out == NULL || user == NULL)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "cache: out and opts are required");
  *out = NULL;
  if (user->size < QP_CACHE_OPTIONS_MIN_SIZE)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID,
                          "cache: options have no size: fill them with qp_cache_options_init");
  qp_cache_options o;
  qp_cache_options_init(&o);
  memcpy(&o, user, user->size < sizeof o ? user->size : sizeof o);
  if (o.max_bytes < QP_CACHE_SHARDS * 1024)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "cache: max_bytes %zu is below %d",
                          o.max_bytes, QP_CACHE_SHARDS * 1024);
  size_t shard = o.max_bytes / QP_CACHE_SHARDS;
  if (o.max_entry_bytes == 0 || o.max_entry_bytes > UINT32_MAX / 2)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID,
                          "cache: max_entry_bytes %zu must be between 1 and %u", o.max_entry_bytes,
                          UINT32_MAX / 2);
  if (o.max_entry_bytes > shard) o.max_entry_bytes = shard; /* an entry lives in one shard */
  if (o.ttl_ms < 0)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "cache: ttl_ms %" PRId64 " is negative",
                          o.ttl_ms);
  qp_hooks h;
  qp__hooks_init(&h, o.hooks);
  qp_cache *c = qp__calloc(&h, 1, sizeof *c);
  if (c == NULL) return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "cache: out of memory");
  c->hooks = h;
  c->shard_bytes = shard;
  c->max_entry_bytes = o.max_entry_bytes;
  c->ttl_ns = (uint64_t)o.ttl_ms * 1000000u;
  qp_status st = compile_patterns(c, o.statement_patterns, o.nstatement_patterns, "statement",
                                  &c->stmt_re, errbuf, errlen);
  if (st == QP_OK)
    st = compile_patterns(c, o.table_patterns, o.ntable_patterns, "table", &c->table_re, errbuf,
                          errlen);
  if (st == QP_OK) {
    c->shards = qp__calloc(&h, QP_CACHE_SHARDS, sizeof *c->shards);
    if (c->shards == NULL) st = qp__errbuf_set(errbuf, errlen, QP_NOMEM, "cache: out of memory");
  }
  for (int i = 0; st == QP_OK && i < QP_CACHE_SHARDS; i++) {
    qc_shard *s = &c->shards[i];
    s->nbuckets = 64;
    s->buckets = qp__calloc(&h, s->nbuckets, sizeof *s->buckets);
    if (s->buckets == NULL) st = qp__errbuf_set(errbuf, errlen, QP_NOMEM, "cache: out of memory");
  }
  if (st != QP_OK) {
    if (c->shards)
      for (int i = 0; i < QP_CACHE_SHARDS; i++) qp__free(&h, c->shards[i].buckets);
    qp__free(&h, c->shards);
    pcre2_code_free(c->stmt_re);
    pcre2_code_free(c->table_re);
    qp__free(&h, c);
    return st;
  }
  for (int i = 0; i < QP_CACHE_SHARDS; i++) {
    pthread_mutex_init(&c->shards[i].mu, NULL);
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&c->shards[i].cv, &a);
    pthread_condattr_destroy(&a);
  }
  pthread_mutex_init(&c->mu, NULL);
  *out = c;
  return QP_OK;
}

void qc_shards_free(qp_cache *c) {
  for (int i = 0; i < QP_CACHE_SHARDS; i++) {
    qc_shard *s = &c->shards[i];
    while (s->head) entry_remove(c, s, s->head);
    qp__free(&c->hooks, s->buckets);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
  }
  qp__free(&c->hooks, c->shards);
}

void qp_cache_close(qp_cache *c) {
  if (c == NULL) return;
  qc_shards_free(c);
  qc_servers_free(c);
  pcre2_code_free(c->stmt_re);
  pcre2_code_free(c->table_re);
  pthread_mutex_destroy(&c->mu);
  qp_hooks h = c->hooks;
  qp__free(&h, c);
}

void qp_cache_flush(qp_cache *c) {
  if (c == NULL) return;
  pthread_mutex_lock(&c->mu);
  for (qc_server *s = c->servers; s; s = s->next) {
    atomic_fetch_add_explicit(&s->schema, 1, memory_order_acq_rel);
    atomic_fetch_add_explicit(&s->epoch, 1, memory_order_acq_rel);
  }
  pthread_mutex_unlock(&c->mu);
  atomic_fetch_add_explicit(&c->flushes, 1, memory_order_relaxed);
  for (int i = 0; i < QP_CACHE_SHARDS; i++) {
    qc_shard *s = &c->shards[i];
    pthread_mutex_lock(&s->mu);
    while (s->head) {
      entry_remove(c, s, s->head);
      s->invalidations++;
    }
    pthread_mutex_unlock(&s->mu);
  }
}

static const char *const refusal_names[] = {
#define QP_CACHE_REFUSAL_NAME_(id, name, help) name,
    QP_CACHE_REFUSALS(QP_CACHE_REFUSAL_NAME_)
#undef QP_CACHE_REFUSAL_NAME_
};
static const char *const refusal_help[] = {
#define QP_CACHE_REFUSAL_HELP_(id, name, help) help,
    QP_CACHE_REFUSALS(QP_CACHE_REFUSAL_HELP_)
#undef QP_CACHE_REFUSAL_HELP_
};

const char *qp_cache_refusal_name(qp_cache_refusal r) {
  return (unsigned)r < QP_CACHE_REFUSED_COUNT_ ? refusal_names[r] : "unknown";
}

qp_status qp_cache_stats_get(qp_cache *c, qp_cache_stats *out) {
  if (c == NULL || out == NULL || out->size < QP_CACHE_STATS_MIN_SIZE) return QP_INVALID;
  qp_cache_stats s;
  memset(&s, 0, sizeof s);
  for (int i = 0; i < QP_CACHE_SHARDS; i++) {
    qc_shard *sh = &c->shards[i];
    pthread_mutex_lock(&sh->mu);
    s.hits += sh->hits;
    s.misses += sh->misses;
    s.fills += sh->fills;
    s.evictions += sh->evictions;
    s.invalidations += sh->invalidations;
    s.bytes += (int64_t)sh->bytes;
    s.entries += (int64_t)sh->count;
    pthread_mutex_unlock(&sh->mu);
  }
  for (int r = 0; r < QP_CACHE_REFUSED_COUNT_; r++)
    s.refused[r] = atomic_load_explicit(&c->refused[r], memory_order_relaxed);
  s.flushes = atomic_load_explicit(&c->flushes, memory_order_relaxed);
  s.waits = atomic_load_explicit(&c->waits, memory_order_relaxed);
  size_t n = out->size < sizeof s ? out->size : sizeof s;
  s.size = out->size;
  memcpy(out, &s, n);
  return QP_OK;
}

qp_status qp_cache_prometheus(qp_cache *c, const char *labels, char *buf, size_t cap,
                              size_t *needed) {
  if (c == NULL || (buf == NULL && cap > 0)) return QP_INVALID;
  qp_cache_stats s = QP_CACHE_STATS_INIT;
  qp_cache_stats_get(c, &s);
  if (labels != NULL && *labels == '\0') labels = NULL;
  const char *lb = labels ? "{" : "", *l = labels ? labels : "", *rb = labels ? "}" : "";
  qp__outbuf o = {buf, cap, 0};
  if (cap > 0) buf[0] = '\0';
  struct {
    const char *name, *help;
    uint64_t v;
  } ctr[] = {{"hit", "Statements answered from the cache", s.hits},
             {"miss", "Cacheable statements run on the database", s.misses},
             {"fill", "Results stored", s.fills},
             {"eviction", "Entries evicted to stay within the byte budget", s.evictions},
             {"invalidation", "Entries dropped because what they read changed", s.invalidations},
             {"flush", "Server-wide flushes", s.flushes},
             {"wait", "Misses that waited for another thread's fill", s.waits}};
  for (size_t i = 0; i < sizeof ctr / sizeof ctr[0]; i++)
    qp__put(&o,
        "# HELP qprof_cache_%s_total %s\n# TYPE qprof_cache_%s_total counter\n"
        "qprof_cache_%s_total%s%s%s %" PRIu64 "\n",
        ctr[i].name, ctr[i].help, ctr[i].name, ctr[i].name, lb, l, rb, ctr[i].v);
  qp__put(&o, "# HELP qprof_cache_refused_total Statements not cached, by reason\n"
          "# TYPE qprof_cache_refused_total counter\n");
  for (int r = 0; r < QP_CACHE_REFUSED_COUNT_; r++)
    qp__put(&o, "qprof_cache_refused_total{%s%sreason=\"%s\"} %" PRIu64 "\n", l,
            labels ? "," : "",
        refusal_names[r], s.refused[r]);
  (void)refusal_help;
  qp__put(&o,
      "# HELP qprof_cache_bytes Bytes held by entries\n# TYPE qprof_cache_bytes gauge\n"
      "qprof_cache_bytes%s%s%s %" PRId64 "\n"
      "# HELP qprof_cache_entries Entries held\n# TYPE qprof_cache_entries gauge\n"
      "qprof_cache_entries%s%s%s %" PRId64 "\n",
      lb, l, rb, s.bytes, lb, l, rb, s.entries);
  if (needed) *needed = o.len;
  return o.len < cap ? QP_OK : QP_TOOBIG;
}
