/*
 * The in-memory profile: statistics per (fingerprint, time bucket, backend,
 * database, user, application, host), recorded by any number of threads and moved to a store by flush.
 *
 * Recording is lock-striped by CPU: each stripe is a chained hash table with
 * its own mutex, and a thread records into the stripe of the CPU it runs on
 * (sched_getcpu()), so two threads on two CPUs rarely share a lock or a cache
 * line even on one hot fingerprint. A fingerprint may so have an entry in
 * several stripes; the store's ON CONFLICT merge adds them up. Once an entry
 * exists, recording allocates nothing (except when a latency falls outside
 * the histogram range seen so far, which widens it).
 *
 * Flush swaps each stripe's table for an empty one under that stripe's lock,
 * then writes the detached entries without holding any recording lock. If
 * the store fails, the entries go back into the stripes (prepended to their
 * chains: no allocation, so putting back cannot fail), and the next flush
 * writes them: nothing is lost and nothing is counted twice.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qprof/profile.h"
#include "sql/sql_int.h"
#include "stats/stats_int.h"
#include "store/store_int.h"

#define STRIPES_MAX 64
/* Dimension values a profile keeps (docs/profiles.md): beyond, "(other)". */
#define INTERN_MAX_BYTES (4u << 20)
#define SLOTS_INITIAL 64
/* Entries a profile holds at most after a failed flush (docs/profiles.md,
 * "When the store is down"): beyond, the entries of the oldest buckets are
 * dropped, and their statements counted in qp_profile_lost. About 100 MB
 * at 1 kB an entry, as many as a default shim segment holds. */
#define HELD_MAX 100000u
#define HELD_MAX_TEXT "100000"

typedef struct stripe {
  pthread_mutex_t mu;
  qp_entry **slots; /* chain heads; nslots is a power of two */
  uint32_t nslots;
  uint32_t count;
  _Atomic uint64_t recorded;
  _Atomic uint64_t lost;
} stripe;

/* One stripe per cache line pair, so that stripes never share a line. */
typedef union stripe_pad {
  stripe s;
  char pad[128];
} stripe_pad;

typedef struct redact_rule {
  pcre2_code *re;
  char *replacement;
} redact_rule;

struct qp_profile {
  qp_hooks hooks;
  int64_t bucket_s;
  _Atomic int64_t last_bucket; /* bucket_of()'s guess; INT64_MIN: none yet */
  qp_normalizer *norm[2]; /* by qp_backend */
  pcre2_general_context *gctx;
  pcre2_code *ignore;
  bool sample;
  bool redact_defaults; /* the default redaction set (lib/sql/redact.c); off with "-defaults" */
  redact_rule *redact;
  size_t nredact;
  pthread_mutex_t flush_mu;
  pthread_mutex_t intern_mu; /* taken inside a stripe lock, never the other way */
  qp_intern intern;          /* the dimension values of every entry */
  uint32_t nstripes;
  void *stripes_mem;
  stripe_pad *stripes;
  /* A flush whose COMMIT went out without an answer (qp_store.in_doubt):
   * held apart until the store it went to (doubt_serial) can tell whether
   * it committed. Under flush_mu. */
  qp_entry *doubt;
  uint64_t doubt_serial;
  _Atomic uint64_t shed; /* statements dropped to stay within HELD_MAX, or in doubt and
                          * then flushed into another store */
};

static void *pcre_alloc(size_t n, void *ud) { return qp__malloc((const qp_hooks *)ud, n); }
static void pcre_free(void *p, void *ud) { qp__free((const qp_hooks *)ud, p); }

static void entry_free(const qp_hooks *h, qp_entry *e) {
  qp__stats_free(&e->st, h);
  qp__free(h, e->query);
  qp__free(h, e->sample);
  qp__free(h, e);
}

static void free_list(const qp_hooks *h, qp_entry *e) {
  while (e != NULL) {
    qp_entry *next = e->next;
    entry_free(h, e);
    e = next;
  }
}

/* Compiles a PCRE2 pattern with the profile's allocator; QP_PATTERN names it. */
static qp_status compile(qp_profile *p, const char *what, const char *pat, size_t len,
                         pcre2_code **out, char *errbuf, size_t errlen) {
  pcre2_compile_context *cc = pcre2_compile_context_create(p->gctx);
  if (cc == NULL) return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  int err;
  PCRE2_SIZE off;
  *out = pcre2_compile((PCRE2_SPTR)pat, len, PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &err, &off, cc);
  pcre2_compile_context_free(cc);
  if (*out == NULL) {
    if (err == PCRE2_ERROR_NOMEMORY) return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return qp__errbuf_set(errbuf, errlen, QP_PATTERN, "%s pattern '%.*s' at offset %zu: %s", what,
                          (int)len, pat, (size_t)off, (const char *)msg);
  }
  pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE); /* best effort: the interpreter also works */
  return QP_OK;
}

/* Splits "PATTERN=REPLACEMENT" at the last '=' not escaped with a backslash. */
static const char *split_rule(const char *rule) {
  const char *at = NULL;
  for (const char *q = rule; *q; q++)
    if (*q == '=' && (q == rule || q[-1] != '\\')) at = q;
  return at;
}

static qp_status redact_new(qp_profile *p, const char *rule, redact_rule *r, char *errbuf,
                            size_t errlen) {
  const char *eq = split_rule(rule);
  if (eq == NULL || eq == rule)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID,
                          "redaction rule '%s' is not PATTERN=REPLACEMENT", rule);
  qp_status rc = compile(p, "redaction", rule, (size_t)(eq - rule), &r->re, errbuf, errlen);
  if (rc != QP_OK) return rc;
  r->replacement = qp__strdup(&p->hooks, eq + 1);
  if (r->replacement == NULL) return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  return QP_OK;
}

void qp_profile_free(qp_profile *p) {
  if (p == NULL) return;
  qp_hooks h = p->hooks;
  for (uint32_t i = 0; p->stripes != NULL && i < p->nstripes; i++) {
    stripe *s = &p->stripes[i].s;
    for (uint32_t j = 0; s->slots != NULL && j < s->nslots; j++) free_list(&h, s->slots[j]);
    qp__free(&h, s->slots);
    pthread_mutex_destroy(&s->mu);
  }
  qp__free(&h, p->stripes_mem);
  free_list(&h, p->doubt);
  for (size_t i = 0; i < p->nredact; i++) {
    pcre2_code_free(p->redact[i].re);
    qp__free(&h, p->redact[i].replacement);
  }
  qp__free(&h, p->redact);
  pcre2_code_free(p->ignore);
  pcre2_general_context_free(p->gctx);
  qp_normalizer_free(p->norm[0]);
  qp_normalizer_free(p->norm[1]);
  pthread_mutex_destroy(&p->flush_mu);
  qp__intern_free(&p->intern);
  pthread_mutex_destroy(&p->intern_mu);
  qp__free(&h, p);
}

static uint32_t stripe_count(void) {
  long n = sysconf(_SC_NPROCESSORS_CONF);
  uint32_t s = 4;
  while (s < STRIPES_MAX && (long)s < n) s *= 2;
  return s;
}

qp_status qp_profile_new(qp_profile **out, const qp_profile_options *opts, char *errbuf,
                         size_t errlen) {
  if (out == NULL) return qp__errbuf_set(errbuf, errlen, QP_INVALID, "out is NULL");
  *out = NULL;
  qp_profile_options defaults = {0};
  if (opts == NULL) opts = &defaults;
  if (opts->bucket_s < 0 || opts->bucket_s > 86400)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "bucket_s %lld is not in 1..86400 seconds",
                          (long long)opts->bucket_s);
  if ((opts->nrules > 0 && opts->rules == NULL) || (opts->nredact > 0 && opts->redact == NULL))
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "rules or redact is NULL with a count");
  qp_hooks h;
  qp__hooks_init(&h, opts->hooks);
  qp_profile *p = qp__calloc(&h, 1, sizeof *p);
  if (p == NULL) return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  p->hooks = h;
  p->bucket_s = opts->bucket_s ? opts->bucket_s : 60;
  atomic_init(&p->last_bucket, INT64_MIN);
  p->sample = opts->sample;
  pthread_mutex_init(&p->flush_mu, NULL);
  pthread_mutex_init(&p->intern_mu, NULL);
  qp__intern_init(&p->intern, &p->hooks, INTERN_MAX_BYTES);
  qp_status rc = QP_OK;
  p->gctx = pcre2_general_context_create(pcre_alloc, pcre_free, &p->hooks);
  if (p->gctx == NULL) rc = qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  for (int d = 0; rc == QP_OK && d < 2; d++)
    rc = qp_normalizer_new(&p->norm[d], d == 0 ? QP_DIALECT_POSTGRES : QP_DIALECT_SQLITE,
                           opts->rules, opts->nrules, &p->hooks, errbuf, errlen);
  if (rc == QP_OK && opts->ignore != NULL && opts->ignore[0] != '\0')
    rc = compile(p, "ignore", opts->ignore, strlen(opts->ignore), &p->ignore, errbuf, errlen);
  p->redact_defaults = true;
  if (rc == QP_OK && opts->nredact > 0) {
    p->redact = qp__calloc(&h, opts->nredact, sizeof *p->redact);
    if (p->redact == NULL) rc = qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
    for (size_t i = 0; rc == QP_OK && i < opts->nredact; i++) {
      if (opts->redact[i] != NULL && strcmp(opts->redact[i], QP_REDACT_NO_DEFAULTS) == 0) {
        p->redact_defaults = false; /* not a rule */
        continue;
      }
      rc = redact_new(p, opts->redact[i] != NULL ? opts->redact[i] : "", &p->redact[p->nredact],
                      errbuf, errlen);
      p->nredact++;
    }
  }
  if (rc == QP_OK) {
    p->nstripes = stripe_count();
    p->stripes_mem = qp__malloc(&h, p->nstripes * sizeof(stripe_pad) + 127);
    if (p->stripes_mem == NULL) {
      rc = qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
    } else {
      p->stripes = (stripe_pad *)(((uintptr_t)p->stripes_mem + 127) & ~(uintptr_t)127);
      memset(p->stripes, 0, p->nstripes * sizeof(stripe_pad));
      for (uint32_t i = 0; i < p->nstripes; i++) pthread_mutex_init(&p->stripes[i].s.mu, NULL);
    }
  }
  if (rc != QP_OK) {
    if (p->stripes == NULL) p->nstripes = 0;
    qp_profile_free(p);
    return rc;
  }
  *out = p;
  return QP_OK;
}

/* The database is left out of the hash on purpose: the fingerprint is
 * already a good hash, one fingerprint rarely runs against more than a few
 * databases in one process, and their entries just share a chain (the
 * lookup compares the name). That saves hashing the name on every call. */
static uint64_t entry_hash(uint64_t fp, int64_t bucket, qp_backend be) {
  uint64_t h = fp ^ ((uint64_t)be << 61);
  h ^= (uint64_t)bucket * 0x9e3779b97f4a7c15ull;
  h ^= h >> 32;
  return h * 0xd6e8feb86659fd93ull;
}

/* The start (in seconds) of the time bucket holding `wall`. Almost every
 * call falls in the bucket of the call before, which is checked with two
 * multiplications instead of two divisions. */
static int64_t bucket_of(qp_profile *p, int64_t wall) {
  int64_t cur = atomic_load_explicit(&p->last_bucket, memory_order_relaxed);
  if (QP_LIKELY(cur != INT64_MIN && wall >= cur * 1000000000 &&
                wall < (cur + p->bucket_s) * 1000000000))
    return cur;
  int64_t b = qp__floor_div(qp__floor_div(wall, 1000000000), p->bucket_s) * p->bucket_s;
  /* (a caller's timestamp may be anything: only a bucket whose bounds
   * multiply without overflow is kept as the guess) */
  if (b > -4000000000 && b < 4000000000)
    atomic_store_explicit(&p->last_bucket, b, memory_order_relaxed);
  return b;
}

/* Doubles the slot array when chains get long; best effort. */
static void stripe_grow(const qp_hooks *h, stripe *s) {
  uint32_t n = s->nslots * 2;
  qp_entry **slots = qp__calloc(h, n, sizeof *slots);
  if (slots == NULL) return;
  for (uint32_t i = 0; i < s->nslots; i++) {
    qp_entry *e = s->slots[i];
    while (e != NULL) {
      qp_entry *next = e->next;
      uint32_t j = (uint32_t)(e->hash & (n - 1));
      e->next = slots[j];
      slots[j] = e;
      e = next;
    }
  }
  qp__free(h, s->slots);
  s->slots = slots;
  s->nslots = n;
}

/* The redacted sample of a statement, or NULL on out-of-memory: the
 * default set first (unless turned off), then the user's rules in order. */
static char *make_sample(qp_profile *p, qp_backend be, const char *sql, size_t len) {
  char *cur = p->redact_defaults
                  ? qp__sql_redact(qp_normalizer_dialect(p->norm[be]), sql, len, &p->hooks)
                  : qp__strndup(&p->hooks, sql, len);
  for (size_t i = 0; cur != NULL && i < p->nredact; i++) {
    size_t curlen = strlen(cur);
    PCRE2_SIZE outlen = curlen * 2 + 64;
    for (int attempt = 0; attempt < 2; attempt++) {
      char *out = qp__malloc(&p->hooks, outlen + 1);
      if (out == NULL) {
        qp__free(&p->hooks, cur);
        return NULL;
      }
      PCRE2_SIZE got = outlen + 1;
      int rc = pcre2_substitute(p->redact[i].re, (PCRE2_SPTR)cur, curlen, 0,
                                PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH, NULL,
                                NULL, (PCRE2_SPTR)p->redact[i].replacement, PCRE2_ZERO_TERMINATED,
                                (PCRE2_UCHAR *)out, &got);
      if (rc >= 0) {
        qp__free(&p->hooks, cur);
        cur = out;
        break;
      }
      qp__free(&p->hooks, out);
      if (rc == PCRE2_ERROR_NOMEMORY && attempt == 0) {
        outlen = got; /* the length needed */
        continue;
      }
      /* A replacement that cannot apply (bad group reference...): the
       * sample would leak what the rule was meant to hide, so drop it. */
      qp__free(&p->hooks, cur);
      return qp__strdup(&p->hooks, "(sample withheld: redaction failed)");
    }
  }
  return cur;
}

static bool is_ignored(qp_profile *p, const char *norm, size_t len) {
  if (p->ignore == NULL) return false;
  pcre2_match_data *md = pcre2_match_data_create(1, p->gctx);
  if (md == NULL) return false;
  int rc = pcre2_match(p->ignore, (PCRE2_SPTR)norm, len, 0, 0, md, NULL);
  pcre2_match_data_free(md);
  return rc >= 0;
}

/* The interned dimensions of `d` into in[4] (database, user, application,
 * host); false when out of memory. */
static bool intern_dims(qp_profile *p, const qp_dims *d, char *in[4]) {
  pthread_mutex_lock(&p->intern_mu);
  const char *v[4] = {qp__intern(&p->intern, d->db, d->db_len),
                      qp__intern(&p->intern, d->user, d->user_len),
                      qp__intern(&p->intern, d->app, d->app_len),
                      qp__intern(&p->intern, d->host, d->host_len)};
  pthread_mutex_unlock(&p->intern_mu);
  for (int i = 0; i < 4; i++) {
    if (v[i] == NULL) return false;
    in[i] = (char *)v[i]; /* owned by p->intern; entries never free them */
  }
  return true;
}

/* Whether the entry's key dimensions are `d`'s. */
static bool dim_eq(const char *e, const char *x, size_t len) {
  return strncmp(e, x, len) == 0 && e[len] == '\0';
}
static bool dims_eq(const qp_entry *e, const qp_dims *d) {
  return dim_eq(e->database, d->db, d->db_len) && dim_eq(e->user, d->user, d->user_len) &&
         dim_eq(e->application, d->app, d->app_len) && dim_eq(e->host, d->host, d->host_len);
}
/* The same, against already interned values (a value cut or turned into
 * "(other)" by interning finds its entry here). */
static bool dims_same(const qp_entry *e, char *const in[4]) {
  return e->database == in[0] && e->user == in[1] && e->application == in[2] && e->host == in[3];
}

static qp_entry *entry_new(qp_profile *p, uint64_t hash, uint64_t fp, int64_t bucket,
                           qp_backend be, char *const in[4], const char *norm, size_t nlen) {
  qp_entry *e = qp__calloc(&p->hooks, 1, sizeof *e);
  if (e == NULL) return NULL;
  qp__stats_init(&e->st);
  e->hash = hash;
  e->fingerprint = fp;
  e->bucket = bucket;
  e->backend = be;
  e->database = in[0];
  e->user = in[1];
  e->application = in[2];
  e->host = in[3];
  e->query = qp__strndup(&p->hooks, norm, nlen);
  if (e->query == NULL) {
    entry_free(&p->hooks, e);
    return NULL;
  }
  e->ignored = is_ignored(p, norm, nlen);
  return e;
}

/* The entry of a key in stripe `s` (locked), created when new; NULL when
 * out of memory. */
static qp_entry *entry_get(qp_profile *p, stripe *s, uint64_t hash, uint64_t fp, int64_t bucket,
                           qp_backend be, const qp_dims *d, const char *norm, size_t nlen) {
  qp_entry *e = NULL;
  if (s->slots != NULL) {
    for (e = s->slots[hash & (s->nslots - 1)]; e != NULL; e = e->next)
      if (e->hash == hash && e->fingerprint == fp && e->bucket == bucket && e->backend == be &&
          dims_eq(e, d))
        return e;
  }
  if (s->slots == NULL) {
    s->slots = qp__calloc(&p->hooks, SLOTS_INITIAL, sizeof *s->slots);
    if (s->slots == NULL) return NULL;
    s->nslots = SLOTS_INITIAL;
  }
  char *in[4];
  if (!intern_dims(p, d, in)) return NULL;
  for (e = s->slots[hash & (s->nslots - 1)]; e != NULL; e = e->next)
    if (e->hash == hash && e->fingerprint == fp && e->bucket == bucket && e->backend == be &&
        dims_same(e, in))
      return e;
  e = entry_new(p, hash, fp, bucket, be, in, norm, nlen);
  if (e == NULL) return NULL;
  if (s->count >= s->nslots * 2) stripe_grow(&p->hooks, s);
  uint32_t j = (uint32_t)(hash & (s->nslots - 1));
  e->next = s->slots[j];
  s->slots[j] = e;
  s->count++;
  return e;
}

static size_t dim_len(const char *v) { return v != NULL ? strnlen(v, QP_DIM_MAX) : 0; }

qp_status qp_profile_normalize(const qp_profile *p, qp_backend backend, const char *sql,
                               size_t len, char *out, size_t cap, size_t *out_len,
                               uint64_t *fingerprint) {
  if (p == NULL || (backend != QP_BACKEND_POSTGRES && backend != QP_BACKEND_SQLITE))
    return QP_INVALID;
  return qp_normalize(p->norm[backend], sql, len, out, cap, out_len, fingerprint);
}

qp_status qp__profile_normalize_spans(const qp_profile *p, qp_backend backend, const char *sql,
                                      size_t len, char *out, size_t cap, size_t *out_len,
                                      uint64_t *fingerprint, qp_lit_span *spans, size_t max,
                                      size_t *nspans) {
  if (nspans) *nspans = 0;
  if (p == NULL || (backend != QP_BACKEND_POSTGRES && backend != QP_BACKEND_SQLITE))
    return QP_INVALID;
  return qp__normalize_spans(p->norm[backend], sql, len, out, cap, out_len, fingerprint, spans,
                             max, nspans);
}

/* An event that comes without its normalized text: normalized here, into
 * a buffer the recording fast path should not carry in its frame. */
static QP_NOINLINE qp_status record_normalizing(qp_profile *p, const qp_query_event *ev) {
  if (ev->sql == NULL) return QP_INVALID;
  char buf[QP_NORMALIZED_MAX];
  qp_query_event nev = *ev;
  qp_status rc = qp_normalize(p->norm[ev->backend], ev->sql, ev->sql_len, buf, sizeof buf,
                              &nev.normalized_len, &nev.fingerprint);
  if (rc != QP_OK) return rc;
  nev.normalized = buf;
  return qp_profile_record(p, &nev);
}

qp_status qp_profile_record(qp_profile *p, const qp_query_event *ev) {
  if (p == NULL || ev == NULL) return QP_INVALID;
  if (QP_UNLIKELY(ev->size != 0 && ev->size < QP_QUERY_EVENT_MIN_SIZE)) return QP_INVALID;
  if (ev->backend != QP_BACKEND_POSTGRES && ev->backend != QP_BACKEND_SQLITE) return QP_INVALID;
  if (ev->normalized == NULL) return record_normalizing(p, ev);
  const char *norm = ev->normalized;
  size_t nlen = ev->normalized_len;
  uint64_t fp = ev->fingerprint;
  int64_t wall = ev->end_wall_ns != 0 ? ev->end_wall_ns : qp__wall_coarse_ns();
  int64_t bucket = bucket_of(p, wall);
  qp_dims d = {.db = ev->database != NULL ? ev->database : ""};
  d.db_len = strlen(d.db);
  if (ev->size >= offsetof(qp_query_event, host) + sizeof ev->host) {
    d.user = ev->user, d.user_len = dim_len(ev->user);
    d.app = ev->application, d.app_len = dim_len(ev->application);
    d.host = ev->host, d.host_len = dim_len(ev->host);
  }
  if (d.user == NULL) d.user = "";
  if (d.app == NULL) d.app = "";
  if (d.host == NULL) d.host = "";
  uint64_t hash = entry_hash(fp, bucket, ev->backend);
  int cpu = sched_getcpu();
  stripe *s = &p->stripes[(uint32_t)(cpu < 0 ? 0 : cpu) & (p->nstripes - 1)].s;

  pthread_mutex_lock(&s->mu);
  qp_entry *e = entry_get(p, s, hash, fp, bucket, ev->backend, &d, norm, nlen);
  bool ok = e != NULL;
  if (ok && e->ignored) {
    pthread_mutex_unlock(&s->mu);
    return QP_OK;
  }
  bool hit = ev->size >= offsetof(qp_query_event, cache_hit) + sizeof ev->cache_hit &&
             ev->cache_hit;
  if (ok && hit) qp__stats_hit(&e->st, ev->duration_ns, wall);
  else if (ok) ok = qp__stats_add(&e->st, &p->hooks, ev->duration_ns, ev->rows, ev->error, wall);
  if (ok && !hit && p->sample && ev->sql != NULL && (e->sample == NULL || ev->duration_ns > e->sample_ns)) {
    /* Keep the slowest statement: rare after the first few events. */
    char *smp = make_sample(p, ev->backend, ev->sql, ev->sql_len);
    if (smp != NULL) {
      qp__free(&p->hooks, e->sample);
      e->sample = smp;
      e->sample_ns = ev->duration_ns;
    }
  }
  /* Only holders of s->mu write `recorded`, so a plain load and store do
   * (no locked read-modify-write); readers load it without the mutex. */
  if (ok)
    atomic_store_explicit(&s->recorded,
                          atomic_load_explicit(&s->recorded, memory_order_relaxed) + 1,
                          memory_order_relaxed);
  pthread_mutex_unlock(&s->mu);
  if (!ok) {
    atomic_fetch_add_explicit(&s->lost, 1, memory_order_relaxed);
    return QP_NOMEM;
  }
  return QP_OK;
}

/* Statements an entry stands for, for qp_profile_lost. */
static uint64_t entry_statements(const qp_entry *e) { return e->st.calls + e->st.cache_hits; }

/* Frees a list whose statements will never be written: counted as lost. */
static void lose_list(qp_profile *p, qp_entry *list, const char *why) {
  uint64_t n = 0, k = 0;
  for (const qp_entry *e = list; e != NULL; e = e->next, k++) n += entry_statements(e);
  atomic_fetch_add_explicit(&p->shed, n, memory_order_relaxed);
  free_list(&p->hooks, list);
  qp__log(&p->hooks, QP_LOG_WARN, "profile: %llu statements (%llu entries) lost: %s",
          (unsigned long long)n, (unsigned long long)k, why);
}

/* Drops `excess` entries of `list`, those of the oldest buckets first: no
 * allocation (one pass per bucket dropped). Returns the rest. */
static qp_entry *shed_oldest(qp_profile *p, qp_entry *list, size_t excess) {
  qp_entry *gone = NULL;
  while (excess > 0 && list != NULL) {
    int64_t oldest = INT64_MAX;
    for (const qp_entry *e = list; e != NULL; e = e->next)
      if (e->bucket < oldest) oldest = e->bucket;
    for (qp_entry **pp = &list; *pp != NULL && excess > 0;) {
      qp_entry *e = *pp;
      if (e->bucket != oldest) {
        pp = &e->next;
        continue;
      }
      *pp = e->next;
      e->next = gone;
      gone = e;
      excess--;
    }
  }
  lose_list(p, gone, "the store could not be written and the profile holds at most " HELD_MAX_TEXT
                     " entries until it can (the oldest buckets go first)");
  return list;
}

/* Puts flushed entries back after a failed write: no allocation. What the
 * profile would hold beyond HELD_MAX is dropped first, oldest buckets first. */
static void put_back(qp_profile *p, qp_entry *list) {
  size_t held = 0, n = 0;
  for (uint32_t i = 0; i < p->nstripes; i++) {
    stripe *s = &p->stripes[i].s;
    pthread_mutex_lock(&s->mu);
    held += s->count;
    pthread_mutex_unlock(&s->mu);
  }
  for (const qp_entry *e = list; e != NULL; e = e->next) n++;
  size_t room = held < HELD_MAX ? HELD_MAX - held : 0;
  if (n > room) list = shed_oldest(p, list, n - room);
  while (list != NULL) {
    qp_entry *e = list;
    list = e->next;
    stripe *s = &p->stripes[e->stripe].s;
    pthread_mutex_lock(&s->mu);
    /* s->slots is the array installed by the swap (or a bigger one): only a
     * flush replaces it, and flushes hold flush_mu. */
    uint32_t j = (uint32_t)(e->hash & (s->nslots - 1));
    e->next = s->slots[j];
    s->slots[j] = e;
    s->count++;
    pthread_mutex_unlock(&s->mu);
  }
}

qp_status qp_profile_flush(qp_profile *p, qp_store *store) {
  return qp__profile_flush_dropped(p, store, 0, 0);
}

/* A flush left in doubt is settled before the next one: dropped when it
 * committed, written again with this one when it did not. NULL and *rc
 * QP_OK when there is nothing to write again. */
static qp_entry *settle_doubt(qp_profile *p, qp_store *store, qp_status *rc) {
  *rc = QP_OK;
  if (p->doubt == NULL) return NULL;
  if (store->serial != p->doubt_serial) {
    /* Only the store it went to can tell; writing it here could count it twice. */
    lose_list(p, p->doubt, "a flush whose outcome was unknown was not settled: the profile was "
                           "flushed into another store handle");
    p->doubt = NULL;
    return NULL;
  }
  bool committed = false;
  *rc = qp__store_resolve(store, &committed);
  if (*rc != QP_OK) return NULL;
  qp_entry *again = p->doubt;
  p->doubt = NULL;
  if (committed) {
    free_list(&p->hooks, again);
    return NULL;
  }
  return again;
}

qp_status qp__profile_flush_dropped(qp_profile *p, qp_store *store, int64_t drop_bucket,
                                    uint64_t dropped) {
  if (p == NULL || store == NULL) return QP_INVALID;
  pthread_mutex_lock(&p->flush_mu);
  qp_status rc;
  qp_entry *again = settle_doubt(p, store, &rc);
  if (rc != QP_OK) {
    pthread_mutex_unlock(&p->flush_mu);
    return rc;
  }
  /* Fresh slot arrays first: if they cannot be had, nothing has moved. */
  qp_entry ***fresh = qp__calloc(&p->hooks, p->nstripes, sizeof *fresh);
  uint32_t *sizes = qp__calloc(&p->hooks, p->nstripes, sizeof *sizes);
  rc = fresh != NULL && sizes != NULL ? QP_OK : QP_NOMEM;
  for (uint32_t i = 0; rc == QP_OK && i < p->nstripes; i++) {
    stripe *s = &p->stripes[i].s;
    pthread_mutex_lock(&s->mu);
    uint32_t n = s->nslots ? s->nslots : SLOTS_INITIAL;
    pthread_mutex_unlock(&s->mu);
    sizes[i] = n;
    fresh[i] = qp__calloc(&p->hooks, n, sizeof **fresh);
    if (fresh[i] == NULL) rc = QP_NOMEM;
  }
  if (rc != QP_OK) {
    for (uint32_t i = 0; fresh != NULL && i < p->nstripes; i++) qp__free(&p->hooks, fresh[i]);
    qp__free(&p->hooks, fresh);
    qp__free(&p->hooks, sizes);
    put_back(p, again);
    pthread_mutex_unlock(&p->flush_mu);
    return QP_NOMEM;
  }
  qp_entry *list = again; /* entries of a flush that did not commit keep their e->stripe */
  for (uint32_t i = 0; i < p->nstripes; i++) {
    stripe *s = &p->stripes[i].s;
    pthread_mutex_lock(&s->mu);
    qp_entry **old = s->slots;
    uint32_t oldn = s->nslots;
    s->slots = fresh[i];
    s->nslots = sizes[i];
    s->count = 0;
    pthread_mutex_unlock(&s->mu);
    for (uint32_t j = 0; old != NULL && j < oldn; j++) {
      qp_entry *e = old[j];
      while (e != NULL) {
        qp_entry *next = e->next;
        e->stripe = i;
        e->next = list;
        list = e;
        e = next;
      }
    }
    qp__free(&p->hooks, old);
  }
  qp__free(&p->hooks, fresh);
  qp__free(&p->hooks, sizes);
  qp_drop drop = {.bucket = drop_bucket, .n = dropped};
  rc = list != NULL || dropped > 0 ? qp__store_write(store, list, &drop) : QP_OK;
  if (rc == QP_OK) {
    free_list(&p->hooks, list);
  } else if (store->write_in_doubt) {
    p->doubt = list;
    p->doubt_serial = store->serial;
  } else {
    put_back(p, list);
  }
  pthread_mutex_unlock(&p->flush_mu);
  return rc;
}

qp_status qp__profile_settle(qp_profile *p, qp_store *store, bool *committed) {
  *committed = false;
  if (p == NULL || store == NULL) return QP_INVALID;
  pthread_mutex_lock(&p->flush_mu);
  bool had = p->doubt != NULL && store->serial == p->doubt_serial;
  qp_status rc;
  qp_entry *again = settle_doubt(p, store, &rc);
  if (again != NULL) put_back(p, again);
  *committed = had && rc == QP_OK && again == NULL;
  pthread_mutex_unlock(&p->flush_mu);
  return rc;
}

bool qp__profile_in_doubt(qp_profile *p) {
  if (p == NULL) return false;
  pthread_mutex_lock(&p->flush_mu);
  bool d = p->doubt != NULL;
  pthread_mutex_unlock(&p->flush_mu);
  return d;
}

uint64_t qp_profile_recorded(const qp_profile *p) {
  if (p == NULL) return 0;
  uint64_t n = 0;
  for (uint32_t i = 0; i < p->nstripes; i++)
    n += atomic_load_explicit(&p->stripes[i].s.recorded, memory_order_relaxed);
  return n;
}

uint64_t qp_profile_lost(const qp_profile *p) {
  if (p == NULL) return 0;
  uint64_t n = 0;
  for (uint32_t i = 0; i < p->nstripes; i++)
    n += atomic_load_explicit(&p->stripes[i].s.lost, memory_order_relaxed);
  return n + atomic_load_explicit(&p->shed, memory_order_relaxed);
}

qp_status qp__profile_merge(qp_profile *p, uint64_t fp, int64_t bucket, qp_backend be,
                            const qp_dims *dims, const char *query, size_t query_len,
                            const qp_stats *st, const char *sample, size_t sample_len,
                            uint64_t sample_ns) {
  if (p == NULL || st == NULL || dims == NULL ||
      (be != QP_BACKEND_POSTGRES && be != QP_BACKEND_SQLITE))
    return QP_INVALID;
  if (st->calls == 0) return QP_OK;
  qp_dims d = *dims;
  if (d.db == NULL) d.db = "", d.db_len = 0;
  if (d.user == NULL) d.user = "", d.user_len = 0;
  if (d.app == NULL) d.app = "", d.app_len = 0;
  if (d.host == NULL) d.host = "", d.host_len = 0;
  if (d.user_len > QP_DIM_MAX) d.user_len = QP_DIM_MAX;
  if (d.app_len > QP_DIM_MAX) d.app_len = QP_DIM_MAX;
  if (d.host_len > QP_DIM_MAX) d.host_len = QP_DIM_MAX;
  uint64_t hash = entry_hash(fp, bucket, be);
  stripe *s = &p->stripes[0].s;
  pthread_mutex_lock(&s->mu);
  qp_entry *e = entry_get(p, s, hash, fp, bucket, be, &d, query, query_len);
  qp_status rc = e != NULL ? QP_OK : QP_NOMEM;
  if (rc == QP_OK && !e->ignored) {
    if (!qp__stats_merge(&e->st, st, &p->hooks)) rc = QP_NOMEM;
    if (rc == QP_OK && sample != NULL && (e->sample == NULL || sample_ns > e->sample_ns)) {
      char *smp = qp__strndup(&p->hooks, sample, sample_len);
      if (smp != NULL) {
        qp__free(&p->hooks, e->sample);
        e->sample = smp;
        e->sample_ns = sample_ns;
      }
    }
    if (rc == QP_OK)
      atomic_store_explicit(&s->recorded,
                            atomic_load_explicit(&s->recorded, memory_order_relaxed) + st->calls,
                            memory_order_relaxed);
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

char *qp__profile_redact(qp_profile *p, qp_backend be, const char *sql, size_t len) {
  if (p == NULL || sql == NULL || (be != QP_BACKEND_POSTGRES && be != QP_BACKEND_SQLITE))
    return NULL;
  return make_sample(p, be, sql, len);
}

const qp_hooks *qp__profile_hooks(const qp_profile *p) { return p != NULL ? &p->hooks : NULL; }

bool qp__profile_ignores(qp_profile *p, const char *norm, size_t len) {
  return p != NULL && is_ignored(p, norm, len);
}

bool qp__profile_sampling(const qp_profile *p) { return p != NULL && p->sample; }
