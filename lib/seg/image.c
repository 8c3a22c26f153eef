/*
 * Checking a segment image and taking its gain over a base (image_int.h):
 * the collector's whole trust in a segment, fuzzed by fuzz_segment.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "qprof/segment.h"
#include "seg/image_int.h"
#include "stats/stats_int.h"

/* ---- checking an image ---------------------------------------------------- */
bool qp__seg_check_header(const qp_seg_header *h, size_t len, char *why, size_t whylen) {
  CHECK(len >= QP_SEG_HEADER_SIZE, "shorter than a header (%zu bytes)", len);
  CHECK(memcmp(h->magic, QP_SEG_MAGIC, 8) == 0, "not a qprof segment (bad magic)");
  CHECK(h->version == QP_SEG_VERSION || h->version == QP_SEG_VERSION_3 ||
            h->version == QP_SEG_VERSION_2 || h->version == QP_SEG_VERSION_1,
        "segment version %u, this qprof reads %u to %u", h->version, QP_SEG_VERSION_1,
        QP_SEG_VERSION);
  if (h->version >= 2)
    CHECK(h->host_len <= QP_SEG_DIM_MAX && memchr(h->host, '\0', h->host_len) == NULL,
          "bad host name (%u bytes)", h->host_len);
  CHECK(h->header_size == QP_SEG_HEADER_SIZE, "header size %u", h->header_size);
  CHECK(h->size >= QP_SEG_MIN_SIZE && h->size <= QP_SEG_MAX_SIZE, "size %llu out of range",
        (unsigned long long)h->size);
  CHECK(h->nslots >= 1024 && (h->nslots & (h->nslots - 1)) == 0 && h->nslots <= (1u << 24),
        "index of %u slots", h->nslots);
  CHECK(h->slots_off == QP_SEG_HEADER_SIZE &&
            h->arena_off == QP_SEG_HEADER_SIZE + (uint64_t)h->nslots * 4 &&
            h->arena_off < h->size,
        "bad layout (index at %u, arena at %u)", h->slots_off, h->arena_off);
  return true;
}

/* The end of what an image of `h` holds: header, index and used arena. */
size_t qp__seg_image_end(const qp_seg_header *h, uint64_t used) {
  uint64_t cap = h->size - h->arena_off;
  if (used > cap) used = cap;
  return (size_t)(h->arena_off + used);
}

static bool check_entry(const uint8_t *img, size_t end, const qp_seg_header *h, uint32_t off,
                        char *why, size_t whylen) {
  CHECK(off % 8 == 0 && in(off, sizeof(qp_seg_entry), h->arena_off, end),
        "entry offset %u out of bounds", off);
  const qp_seg_entry *e = (const qp_seg_entry *)(img + off);
  CHECK(e->backend <= 1, "entry at %u: backend %u", off, e->backend);
  CHECK(h->version >= 4 ? e->lane < QP_SEG_LANES : e->lane == 0, "entry at %u: lane %u", off,
        e->lane);
  CHECK(e->query_len <= QP_NORMALIZED_MAX && in(e->query_off, e->query_len, h->arena_off, end),
        "entry at %u: query text out of bounds", off);
  CHECK(e->db_len <= (h->version >= 2 ? QP_SEG_KEY_MAX : QP_SEG_DB_MAX) &&
            in(e->db_off, e->db_len, h->arena_off, end),
        "entry at %u: database name out of bounds", off);
  CHECK(memchr(img + e->query_off, '\0', e->query_len) == NULL, "entry at %u: NUL inside a text",
        off);
  if (h->version >= 2) {
    /* "db\0user\0application": exactly two NULs, each part within its bound */
    const uint8_t *k = img + e->db_off;
    const uint8_t *n1 = memchr(k, '\0', e->db_len);
    const uint8_t *n2 = n1 != NULL ? memchr(n1 + 1, '\0', e->db_len - (size_t)(n1 + 1 - k)) : NULL;
    CHECK(n2 != NULL && memchr(n2 + 1, '\0', e->db_len - (size_t)(n2 + 1 - k)) == NULL,
          "entry at %u: bad key (database, user, application)", off);
    CHECK((size_t)(n1 - k) <= QP_SEG_DB_MAX && (size_t)(n2 - n1 - 1) <= QP_SEG_DIM_MAX &&
              e->db_len - (size_t)(n2 + 1 - k) <= QP_SEG_DIM_MAX,
          "entry at %u: key part too long", off);
  } else {
    CHECK(memchr(img + e->db_off, '\0', e->db_len) == NULL, "entry at %u: NUL inside a text", off);
  }
  if (e->sample_off != 0) {
    CHECK(e->sample_len <= QP_SEG_SAMPLE_MAX && in(e->sample_off, e->sample_len, h->arena_off, end),
          "entry at %u: sample out of bounds", off);
  }
  CHECK(e->rows >= 0, "entry at %u: %lld rows", off, (long long)e->rows);
  CHECK(e->errors <= e->calls, "entry at %u: %llu errors in %llu calls", off,
        (unsigned long long)e->errors, (unsigned long long)e->calls);
  CHECK(e->calls == 0 || (e->min_ns <= e->max_ns && e->first_ns <= e->last_ns),
        "entry at %u: min above max", off);
  uint64_t total = 0;
  CHECK(e->inline_set <= 1, "entry at %u: bad histogram", off);
  if (e->inline_set) {
    CHECK(e->inline_base >= 0 && e->inline_base <= QP_HIST_MAX_INDEX,
          "entry at %u: histogram base %d", off, e->inline_base);
  }
  for (uint32_t k = 0; k < QP_SEG_INLINE; k++) {
    uint64_t v = e->inline_counts[k];
    CHECK(v == 0 || (e->inline_set && e->inline_base + (int64_t)k <= QP_HIST_MAX_INDEX),
          "entry at %u: histogram count out of range", off);
    CHECK(total + v >= total, "entry at %u: histogram overflows", off);
    total += v;
  }
  uint64_t seen = 0; /* bases met, one bit per chunk */
  unsigned n = 0;
  for (uint32_t co = e->chunks_off; co != 0; n++) {
    CHECK(n < QP_SEG_NCHUNKS && co % 8 == 0 && in(co, sizeof(qp_seg_chunk), h->arena_off, end),
          "entry at %u: histogram chunk out of bounds", off);
    const qp_seg_chunk *c = (const qp_seg_chunk *)(img + co);
    CHECK(c->base >= 0 && c->base % (int32_t)QP_SEG_CHUNK == 0 && c->base <= QP_HIST_MAX_INDEX &&
              (seen & (1ull << (c->base / (int32_t)QP_SEG_CHUNK))) == 0,
          "entry at %u: bad histogram chunk", off);
    seen |= 1ull << (c->base / (int32_t)QP_SEG_CHUNK);
    for (uint32_t k = 0; k < QP_SEG_CHUNK; k++) {
      uint64_t v = c->counts[k];
      CHECK(v == 0 || c->base + (int64_t)k <= QP_HIST_MAX_INDEX,
            "entry at %u: histogram count out of range", off);
      CHECK(total + v >= total, "entry at %u: histogram overflows", off);
      total += v;
    }
    co = c->next;
  }
  CHECK(total == e->calls, "entry at %u: histogram holds %llu of %llu calls", off,
        (unsigned long long)total, (unsigned long long)e->calls);
  uint64_t errs = 0;
  n = 0;
  for (uint32_t co = e->codes_off; co != 0; n++) {
    CHECK(n < QP_SEG_CODES_MAX && co % 8 == 0 && in(co, sizeof(qp_seg_code), h->arena_off, end),
          "entry at %u: error code record out of bounds", off);
    const qp_seg_code *c = (const qp_seg_code *)(img + co);
    CHECK(c->len > 0 && c->len < QP_SEG_CODE_MAX && errs + c->count >= errs,
          "entry at %u: bad error code record", off);
    errs += c->count;
    co = c->next;
  }
  CHECK(errs == e->errors, "entry at %u: error codes hold %llu of %llu errors", off,
        (unsigned long long)errs, (unsigned long long)e->errors);
  return true;
}

/* Checks a whole image. */
bool qp__seg_check_image(const uint8_t *img, size_t len, char *why, size_t whylen) {
  const qp_seg_header *h = (const qp_seg_header *)img;
  if (!qp__seg_check_header(h, len, why, whylen)) return false;
  CHECK(len >= h->arena_off, "shorter than its index");
  size_t end = qp__seg_image_end(h, atomic_load(&((qp_seg_header *)h)->used));
  CHECK(end <= len, "used arena beyond the end");
  const uint32_t *slots = (const uint32_t *)(img + h->slots_off);
  for (uint32_t i = 0; i < h->nslots; i++) {
    if (slots[i] == 0) continue;
    uint32_t off = qp__seg_slot_off(slots[i], h->version);
    CHECK(off != 0, "index slot %u: a tag without an entry", i);
    if (!check_entry(img, end, h, off, why, whylen)) return false;
    if (h->version >= 3) {
      /* the writer probes by the tag: one that is not its key's would hide
       * the entry from it, and says the segment is not what it wrote */
      const qp_seg_entry *e = (const qp_seg_entry *)(img + off);
      CHECK((slots[i] & QP_SEG_TAG_MASK) ==
                qp__seg_tag(qp__seg_hash(e->fingerprint, e->bucket, e->backend, e->lane)),
            "entry at %u: its index slot's tag is not its key's", off);
    }
  }
  return true;
}

qp_status qp_segment_check(const void *data, size_t len, char *errbuf, size_t errlen) {
  char why[256];
  if (data == NULL) return qp__errbuf_set(errbuf, errlen, QP_INVALID, "data is NULL");
  if (len > QP_SEG_MAX_SIZE) return qp__errbuf_set(errbuf, errlen, QP_SYNTAX, "too large");
  /* aligned copy: the checks read the image in place */
  qp_hooks hk;
  qp__hooks_init(&hk, NULL);
  uint8_t *img = qp__malloc(&hk, len ? len : 1);
  if (img == NULL) return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  memcpy(img, data, len);
  bool ok = qp__seg_check_image(img, len, why, sizeof why);
  qp__free(&hk, img);
  if (!ok) return qp__errbuf_set(errbuf, errlen, QP_SYNTAX, "%s", why);
  return QP_OK;
}

/* ---- the gain of an image over its base ---------------------------------- */
/* The chunk of `e` (in a checked image) that starts at `base`, or NULL. */
static const qp_seg_chunk *chunk_at(const uint8_t *img, const qp_seg_entry *e, int32_t base) {
  for (uint32_t co = e->chunks_off; co != 0;) {
    const qp_seg_chunk *c = (const qp_seg_chunk *)(img + co);
    if (c->base == base) return c;
    co = c->next;
  }
  return NULL;
}

/* The dimensions of a checked entry: its key blob split (version 2), the
 * header's host, and for SQLite without a user the writer's OS user. */
static void entry_dims(const qp_seg_header *h, const uint8_t *img, const qp_seg_entry *e,
                       const char *os_user, qp_dims *d) {
  const char *k = (const char *)img + e->db_off;
  memset(d, 0, sizeof *d);
  d->db = k;
  d->db_len = e->db_len;
  d->user = d->app = d->host = "";
  if (h->version < 2) return;
  const char *n1 = memchr(k, '\0', e->db_len);
  const char *n2 = memchr(n1 + 1, '\0', e->db_len - (size_t)(n1 + 1 - k));
  d->db_len = (size_t)(n1 - k);
  d->user = n1 + 1;
  d->user_len = (size_t)(n2 - n1 - 1);
  d->app = n2 + 1;
  d->app_len = e->db_len - (size_t)(n2 + 1 - k);
  d->host = h->host;
  d->host_len = h->host_len;
  if (d->user_len == 0 && e->backend == QP_BACKEND_SQLITE) {
    d->user = os_user;
    d->user_len = strlen(os_user);
  }
}

/* With `apply` false only checks that every entry grew from its base (so
 * that a refused segment gives the profile nothing); with `apply` true adds
 * the gains to the profile. */
bool qp__seg_gain(qp_profile *prof, const qp_hooks *hooks, const uint8_t *img, size_t len,
                 const uint8_t *old, size_t old_len, bool apply, uint64_t *statements,
                 uint64_t *dropped, char *why, size_t whylen) {
  QP_UNUSED(len);
  const qp_seg_header *h = (const qp_seg_header *)img;
  const qp_seg_header *oh = old != NULL ? (const qp_seg_header *)old : NULL;
  uint64_t d = h->dropped, od = oh != NULL ? oh->dropped : 0;
  CHECK(d >= od, "the dropped count went down");
  if (apply) *dropped += d - od;
  const uint32_t *slots = (const uint32_t *)(img + h->slots_off);
  static const qp_seg_entry zero = {.min_ns = 0};
  char os_user[QP_SEG_DIM_MAX + 1];
  os_user[0] = '\0';
  /* (the shim leaves SQLite's user to the collector: a guest must not
   * load NSS modules in its host) */
  if (apply) qp__uid_name((uid_t)h->uid, os_user, sizeof os_user);
  for (uint32_t i = 0; i < h->nslots; i++) {
    uint32_t off = qp__seg_slot_off(slots[i], h->version);
    if (off == 0) continue;
    const qp_seg_entry *e = (const qp_seg_entry *)(img + off);
    const qp_seg_entry *o = &zero;
    if (old != NULL && in(off, sizeof *e, 0, old_len)) {
      const qp_seg_entry *c = (const qp_seg_entry *)(old + off);
      if (c->calls != 0) {
        CHECK(c->fingerprint == e->fingerprint && c->bucket == e->bucket &&
                  c->backend == e->backend && c->db_len == e->db_len &&
                  c->query_len == e->query_len,
              "entry at %u changed its key", off);
        o = c;
      }
    }
    CHECK(e->calls >= o->calls && e->errors >= o->errors && e->rows >= o->rows &&
              e->total_ns >= o->total_ns,
          "entry at %u: a counter went down", off);
    uint64_t calls = e->calls - o->calls;
    if (calls == 0) continue;
    if (!apply) {
      CHECK(!o->inline_set || (e->inline_set && e->inline_base == o->inline_base),
            "entry at %u: histogram moved", off);
      for (uint32_t k = 0; k < QP_SEG_INLINE; k++)
        CHECK(e->inline_counts[k] >= o->inline_counts[k],
              "entry at %u: a histogram count went down", off);
      for (uint32_t oo = o->chunks_off; oo != 0;) {
        const qp_seg_chunk *oc = (const qp_seg_chunk *)(old + oo);
        const qp_seg_chunk *nc = chunk_at(img, e, oc->base);
        CHECK(nc != NULL, "entry at %u: a histogram chunk went away", off);
        for (uint32_t k = 0; k < QP_SEG_CHUNK; k++)
          CHECK(nc->counts[k] >= oc->counts[k], "entry at %u: a histogram count went down", off);
        oo = oc->next;
      }
      continue;
    }
    qp_stats st;
    qp__stats_init(&st);
    bool ok = true;
    for (uint32_t k = 0; ok && k < QP_SEG_INLINE; k++) {
      uint64_t v = e->inline_counts[k], was = o->inline_counts[k];
      if (v > was) ok = qp__hist_add_index(&st.hist, hooks, e->inline_base + (int32_t)k, v - was);
    }
    for (uint32_t co = e->chunks_off; ok && co != 0;) {
      const qp_seg_chunk *c = (const qp_seg_chunk *)(img + co);
      const qp_seg_chunk *oc = o != &zero ? chunk_at(old, o, c->base) : NULL;
      for (uint32_t k = 0; ok && k < QP_SEG_CHUNK; k++) {
        uint64_t was = oc != NULL ? oc->counts[k] : 0;
        if (c->counts[k] > was)
          ok = qp__hist_add_index(&st.hist, hooks, c->base + (int32_t)k, c->counts[k] - was);
      }
      co = c->next;
    }
    for (uint32_t co = e->codes_off; ok && co != 0;) {
      const qp_seg_code *c = (const qp_seg_code *)(img + co);
      uint64_t was = 0;
      for (uint32_t oo = o->codes_off; oo != 0 && in(oo, sizeof *c, 0, old_len);) {
        const qp_seg_code *x = (const qp_seg_code *)(old + oo);
        if (x->len == c->len && memcmp(x->code, c->code, c->len) == 0) was = x->count;
        oo = x->next;
      }
      if (c->count > was) {
        char code[QP_SEG_CODE_MAX];
        memcpy(code, c->code, c->len);
        code[c->len] = '\0';
        ok = qp__codes_add(&st.codes, hooks, code, c->count - was);
      }
      co = c->next;
    }
    if (!ok) {
      qp__stats_free(&st, hooks);
      CHECK(false, "out of memory");
    }
    st.calls = calls;
    st.errors = e->errors - o->errors;
    st.rows = e->rows - o->rows;
    st.total_ns = e->total_ns - o->total_ns;
    /* min, max, first and last of the whole entry: the store's row of this
     * key already holds the earlier gains, so min(min) is exact. */
    st.min_ns = e->min_ns;
    st.max_ns = e->max_ns;
    st.first_ns = e->first_ns;
    st.last_ns = e->last_ns;
    qp__stats_set_mean(&st);
    unsigned __int128 s2 = (((unsigned __int128)e->sq_hi << 64) | e->sq_lo) -
                           (((unsigned __int128)o->sq_hi << 64) | o->sq_lo);
    unsigned __int128 s1 = st.total_ns, n2;
    double m2;
    if (!__builtin_mul_overflow(s2, (unsigned __int128)calls, &n2) && n2 >= s1 * s1)
      m2 = (double)((long double)(n2 - s1 * s1) / (long double)calls);
    else
      m2 = (double)((long double)s2 - (long double)s1 * (long double)s1 / (long double)calls);
    st.m2 = m2 > 0 ? m2 : 0;
    const char *sample = NULL;
    if (e->sample_off != 0 && e->sample_off != o->sample_off) sample = (const char *)img + e->sample_off;
    qp_dims dims;
    entry_dims(h, img, e, os_user, &dims);
    qp_status rc = qp__profile_merge(prof, e->fingerprint, e->bucket, (qp_backend)e->backend,
                                     &dims, (const char *)img + e->query_off, e->query_len, &st, sample,
                                     sample != NULL ? e->sample_len : 0, e->sample_ns);
    qp__stats_free(&st, hooks);
    CHECK(rc == QP_OK, "out of memory");
    *statements += calls;
  }
  return true;
}

bool qp__seg_diff(qp_profile *prof, const uint8_t *img, size_t len, const uint8_t *base,
                  size_t base_len, uint64_t *statements, uint64_t *dropped, char *why,
                  size_t whylen) {
  const qp_hooks *hooks = qp__profile_hooks(prof);
  if (!qp__seg_check_image(img, len, why, whylen)) return false;
  if (base != NULL && !qp__seg_check_image(base, base_len, why, whylen)) return false;
  return qp__seg_gain(prof, hooks, img, len, base, base_len, false, statements, dropped, why, whylen) &&
         qp__seg_gain(prof, hooks, img, len, base, base_len, true, statements, dropped, why, whylen);
}

