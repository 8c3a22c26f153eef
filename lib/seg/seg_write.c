/*
 * The writing side of a segment (seg_int.h): creating it, and recording a
 * statement into it with no allocation, no system call and no lock shared
 * with another process.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "seg/seg_int.h"
#include "stats/stats_int.h"

/* Maps the pages of a region just given blocks, in one system call rather
 * than a page fault per page (Linux 5.14; best effort elsewhere). */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
static void populate(void *p, size_t len) {
  long page = sysconf(_SC_PAGESIZE);
  uintptr_t a = (uintptr_t)p & ~(uintptr_t)(page - 1);
  madvise((void *)a, len + ((uintptr_t)p - a), MADV_POPULATE_WRITE);
}

bool qp__seg_create(qp_seg *seg, const char *path, size_t size, int64_t bucket_s,
                    const char *host) {
  memset(seg, 0, sizeof *seg);
  seg->fd = -1;
  long page = sysconf(_SC_PAGESIZE);
  if (page <= 0) page = 4096;
  if (size < QP_SEG_MIN_SIZE) size = QP_SEG_MIN_SIZE;
  if (size > QP_SEG_MAX_SIZE) size = QP_SEG_MAX_SIZE;
  size = (size + (size_t)page - 1) / (size_t)page * (size_t)page;
  /* One index slot per 256 bytes of segment: an entry with its text and one
   * histogram chunk takes about 600, so the index is at most ~45% full. */
  uint32_t nslots = 1024;
  while ((size_t)nslots * 256 < size && nslots < (1u << 24)) nslots *= 2;
  size_t arena_off = QP_SEG_HEADER_SIZE + (size_t)nslots * 4;
  if (arena_off + 4096 > size) {
    errno = EINVAL;
    return false;
  }
  /* Made complete under a hidden name, then renamed into place: the
   * collector never sees a segment without its header and lock. */
  char tmp[4300];
  const char *slash = strrchr(path, '/');
  size_t dlen = slash != NULL ? (size_t)(slash - path + 1) : 0;
  if (snprintf(tmp, sizeof tmp, "%.*s.%s.new", (int)dlen, path, path + dlen) >= (int)sizeof tmp) {
    errno = ENAMETOOLONG;
    return false;
  }
  if (access(path, F_OK) == 0) {
    errno = EEXIST;
    return false;
  }
  int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return false;
  int err = 0;
  if (ftruncate(fd, (off_t)size) != 0) err = errno;
  struct flock lk = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
  if (err == 0 && fcntl(fd, F_SETLK, &lk) != 0) err = errno;
  size_t backed = arena_off + QP_SEG_FIRST < size ? arena_off + QP_SEG_FIRST : size;
  if (err == 0) err = posix_fallocate(fd, 0, (off_t)backed);
  struct stat st;
  if (err == 0 && fstat(fd, &st) != 0) err = errno;
  void *base = MAP_FAILED;
  if (err == 0) {
    base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) err = errno;
    /* No read-around: the first fault in a file of 8 MB or more read about
     * 2 ms of pages around it into the page cache (ext4, Linux 6.18), for
     * a segment whose pages are all new; with it, mapping the first pages
     * costs 0.5 us a page. */
    else (void)madvise(base, size, MADV_RANDOM);
  }
  if (err != 0) {
    unlink(tmp);
    close(fd);
    errno = err;
    return false;
  }
  populate((char *)base + arena_off, backed - arena_off);
  qp_seg_header *h = base;
  h->version = QP_SEG_VERSION;
  h->header_size = QP_SEG_HEADER_SIZE;
  h->size = size;
  h->uid = (uint32_t)geteuid();
  h->pid = (int32_t)getpid();
  h->created_ns = qp__wall_ns();
  h->nslots = nslots;
  h->slots_off = QP_SEG_HEADER_SIZE;
  h->arena_off = (uint32_t)arena_off;
  size_t hn = host != NULL ? strnlen(host, QP_SEG_DIM_MAX) : 0;
  memcpy(h->host, host != NULL ? host : "", hn);
  h->host_len = (uint32_t)hn;
  /* The magic last: a reader that sees it sees the rest of the header. */
  atomic_thread_fence(memory_order_release);
  memcpy(h->magic, QP_SEG_MAGIC, 8);
  /* link() fails if the name exists (no rename over another's segment) */
  if (link(tmp, path) != 0) {
    err = errno;
    munmap(base, size);
    unlink(tmp);
    close(fd);
    errno = err;
    return false;
  }
  unlink(tmp);
  seg->base = base;
  seg->size = size;
  seg->fd = fd;
  atomic_init(&seg->backed, backed);
  atomic_init(&seg->full, false);
  atomic_init(&seg->last_key, 0);
  pthread_mutex_init(&seg->grow_mu, NULL);
  seg->dev = st.st_dev;
  seg->ino = st.st_ino;
  snprintf(seg->path, sizeof seg->path, "%s", path);
  seg->bucket_s = bucket_s > 0 ? bucket_s : 60;
  return true;
}

/* Gives blocks to the file up to at least `end`. The segment's own
 * descriptor may have been closed by the program (daemons close them all)
 * and its number reused: the file is opened again by its path, and used
 * only if it is still the segment. Called rarely (once per QP_SEG_GROW). */
static QP_NOINLINE bool grow(qp_seg *seg, uint64_t end) {
  bool ok = false;
  int saved = errno;
  pthread_mutex_lock(&seg->grow_mu);
  uint64_t backed = atomic_load_explicit(&seg->backed, memory_order_acquire);
  if (backed >= end) {
    ok = true;
  } else if (!atomic_load(&seg->full)) {
    uint64_t to = end + QP_SEG_GROW;
    if (to > seg->size) to = seg->size;
    int fd = open(seg->path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == seg->dev && st.st_ino == seg->ino &&
        posix_fallocate(fd, (off_t)backed, (off_t)(to - backed)) == 0) {
      populate((char *)seg->base + backed, to - backed);
      atomic_store_explicit(&seg->backed, to, memory_order_release);
      ok = true;
    } else {
      atomic_store(&seg->full, true);
    }
    if (fd >= 0) close(fd);
  }
  pthread_mutex_unlock(&seg->grow_mu);
  errno = saved;
  return ok;
}

/* `n` bytes (rounded to 8) of zeroed arena starting at a multiple of
 * `align` (8 or QP_SEG_ALIGN; arena_off is a multiple of the page); its
 * offset, or 0 when full. */
static uint32_t arena_alloc_aligned(qp_seg *seg, size_t n, size_t align) {
  qp_seg_header *h = seg->base;
  n = (n + 7) & ~(size_t)7;
  uint64_t cap = seg->size - h->arena_off;
  uint64_t used = atomic_load_explicit(&h->used, memory_order_relaxed);
  uint64_t start;
  do {
    start = (used + align - 1) & ~(uint64_t)(align - 1);
    if (start + n > cap || atomic_load_explicit(&seg->full, memory_order_relaxed)) return 0;
  } while (!atomic_compare_exchange_weak_explicit(&h->used, &used, start + n, memory_order_relaxed,
                                                  memory_order_relaxed));
  uint64_t end = h->arena_off + start + n;
  if (QP_UNLIKELY(end > atomic_load_explicit(&seg->backed, memory_order_acquire)) &&
      !grow(seg, end))
    return 0; /* taken but never used: nothing points to it */
  return (uint32_t)(h->arena_off + start);
}

static uint32_t arena_alloc(qp_seg *seg, size_t n) { return arena_alloc_aligned(seg, n, 8); }

static inline void *at(qp_seg *seg, uint32_t off) { return (char *)seg->base + off; }

static inline bool key_is(qp_seg *seg, const qp_seg_entry *e, uint64_t fp, int64_t bucket,
                          unsigned be, unsigned lane, const char *db, size_t db_len) {
  return e->fingerprint == fp && e->bucket == bucket && e->backend == be && e->lane == lane &&
         e->db_len == db_len && memcmp(at(seg, e->db_off), db, db_len) == 0;
}

void qp__seg_prefetch(qp_seg *seg, unsigned lane, qp_backend backend, uint64_t fp,
                      int64_t bucket) {
  qp_seg_header *h = seg->base;
  uint32_t i = (uint32_t)qp__seg_hash(fp, bucket, backend, lane) & (h->nslots - 1);
  __builtin_prefetch(at(seg, h->slots_off + i * 4), 0, 3);
  uint64_t next = h->arena_off + atomic_load_explicit(&h->used, memory_order_relaxed);
  next = (next + QP_SEG_ALIGN - 1) & ~(uint64_t)(QP_SEG_ALIGN - 1);
  if (next + 2 * QP_SEG_ALIGN <= atomic_load_explicit(&seg->backed, memory_order_relaxed)) {
    __builtin_prefetch((char *)seg->base + next, 1, 3);
    __builtin_prefetch((char *)seg->base + next + QP_SEG_ALIGN, 1, 3);
  }
}

/* The entry of a key, created when new; NULL when the segment is full.
 * A slot is the entry's offset with the key's tag in its low bits: an
 * occupied slot whose tag differs is passed without reading its entry (in a
 * large segment each such read was a cache miss). */
static qp_seg_entry *find(qp_seg *seg, unsigned lane, unsigned be, uint64_t fp, int64_t bucket,
                          const char *norm, size_t norm_len, const char *db, size_t db_len) {
  qp_seg_header *h = seg->base;
  _Atomic uint32_t *slots = (_Atomic uint32_t *)at(seg, h->slots_off);
  uint32_t mask = h->nslots - 1;
  uint64_t hash = qp__seg_hash(fp, bucket, be, lane);
  uint32_t tag = qp__seg_tag(hash);
  uint32_t i = (uint32_t)hash & mask;
  uint32_t mine = 0;
  for (uint32_t probes = 0; probes <= mask; probes++, i = (i + 1) & mask) {
    uint32_t slot = atomic_load_explicit(&slots[i], memory_order_acquire);
    if (slot == 0) {
      if (mine == 0) {
        if (norm_len > QP_NORMALIZED_MAX) norm_len = QP_NORMALIZED_MAX;
        if (db_len > QP_SEG_KEY_MAX) return NULL;
        /* the key blob of the entry made last, when it is this one: the
         * blob never changes once written, so it can be shared (the reader
         * bounds-checks each entry's blob on its own) */
        uint64_t last = atomic_load_explicit(&seg->last_key, memory_order_acquire);
        uint32_t key_off = 0;
        if (db_len > 0 && (last >> 32) == db_len &&
            memcmp(at(seg, (uint32_t)last), db, db_len) == 0)
          key_off = (uint32_t)last;
        mine = arena_alloc_aligned(seg, sizeof(qp_seg_entry) + norm_len + 1 +
                                            (key_off != 0 ? 0 : db_len + 1),
                                   QP_SEG_ALIGN);
        if (mine == 0) return NULL;
        qp_seg_entry *e = at(seg, mine);
        char *text = (char *)(e + 1);
        memcpy(text, norm, norm_len);
        e->backend = (uint16_t)be;
        e->lane = (uint16_t)lane;
        e->fingerprint = fp;
        e->bucket = bucket;
        e->query_off = mine + (uint32_t)sizeof *e;
        e->query_len = (uint32_t)norm_len;
        if (key_off == 0) {
          memcpy(text + norm_len + 1, db, db_len);
          key_off = e->query_off + (uint32_t)norm_len + 1;
          if (db_len > 0)
            atomic_store_explicit(&seg->last_key, (uint64_t)db_len << 32 | key_off,
                                  memory_order_release);
        }
        e->db_off = key_off;
        e->db_len = (uint32_t)db_len;
        e->min_ns = UINT64_MAX;
        e->first_ns = INT64_MAX;
        e->last_ns = INT64_MIN;
      }
      uint32_t expect = 0;
      if (atomic_compare_exchange_strong_explicit(&slots[i], &expect, mine | tag,
                                                  memory_order_release, memory_order_acquire)) {
        atomic_fetch_add_explicit(&h->entries, 1, memory_order_relaxed);
        return at(seg, mine);
      }
      slot = expect; /* another thread published here first */
    }
    if ((slot & QP_SEG_TAG_MASK) != tag) continue;
    qp_seg_entry *e = at(seg, slot & ~QP_SEG_TAG_MASK);
    if (key_is(seg, e, fp, bucket, be, lane, db, db_len)) return e; /* `mine`, if any, stays unused */
  }
  return NULL;
}

static inline void lock(qp_seg_entry *e) {
  for (;;) {
    uint32_t s = atomic_load_explicit(&e->seq, memory_order_relaxed);
    if ((s & 1) == 0 && atomic_compare_exchange_weak_explicit(&e->seq, &s, s + 1,
                                                              memory_order_acquire,
                                                              memory_order_relaxed))
      return;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
}

static inline void unlock(qp_seg_entry *e) {
  atomic_store_explicit(&e->seq, atomic_load_explicit(&e->seq, memory_order_relaxed) + 1,
                        memory_order_release);
}

static bool add_code(qp_seg *seg, qp_seg_entry *e, const char *error) {
  size_t len = strnlen(error, QP_SEG_CODE_MAX - 1);
  uint32_t *link = &e->codes_off;
  unsigned n = 0;
  while (*link != 0) {
    qp_seg_code *c = at(seg, *link);
    if (c->len == len && memcmp(c->code, error, len) == 0) {
      c->count++;
      return true;
    }
    link = &c->next;
    n++;
  }
  if (n >= QP_SEG_CODES_MAX) return false;
  uint32_t off = arena_alloc(seg, sizeof(qp_seg_code));
  if (off == 0) return false;
  qp_seg_code *c = at(seg, off);
  memcpy(c->code, error, len);
  c->len = (uint32_t)len;
  c->count = 1;
  *link = off;
  return true;
}

qp_seg_entry *qp__seg_find(qp_seg *seg, unsigned lane, qp_backend backend, uint64_t fingerprint,
                           int64_t bucket, const char *norm, size_t norm_len, const char *db,
                           size_t db_len) {
  qp_seg_entry *e = find(seg, lane % QP_SEG_LANES, (unsigned)backend, fingerprint, bucket, norm,
                         norm_len, db, db_len);
  if (QP_UNLIKELY(e == NULL))
    atomic_fetch_add_explicit(&((qp_seg_header *)seg->base)->dropped, 1, memory_order_relaxed);
  return e;
}

qp_seg_entry *qp__seg_add(qp_seg *seg, qp_seg_entry *e, uint64_t duration_ns, int64_t rows,
                          const char *error, int64_t wall_ns) {
  qp_seg_header *h = seg->base;
  int32_t idx = qp__hist_index(duration_ns);
  if (idx < 0) idx = 0;
  if (idx > QP_HIST_MAX_INDEX) idx = QP_HIST_MAX_INDEX;
  lock(e);
  if (QP_UNLIKELY(!e->inline_set)) {
    e->inline_base = idx >= (int32_t)(QP_SEG_INLINE / 2) ? idx - (int32_t)(QP_SEG_INLINE / 2) : 0;
    e->inline_set = 1;
  }
  uint64_t *count;
  uint32_t rel = (uint32_t)(idx - e->inline_base);
  if (QP_LIKELY(rel < QP_SEG_INLINE)) {
    count = &e->inline_counts[rel];
  } else {
    int32_t base = idx - idx % (int32_t)QP_SEG_CHUNK;
    qp_seg_chunk *c = NULL;
    for (uint32_t off = e->chunks_off; off != 0;) {
      qp_seg_chunk *x = at(seg, off);
      if (x->base == base) {
        c = x;
        break;
      }
      off = x->next;
    }
    if (c == NULL) {
      uint32_t off = arena_alloc_aligned(seg, sizeof(qp_seg_chunk), QP_SEG_ALIGN);
      if (off == 0) {
        unlock(e);
        goto full;
      }
      c = at(seg, off);
      c->base = base;
      c->next = e->chunks_off;
      e->chunks_off = off;
    }
    count = &c->counts[idx - base];
  }
  if (QP_UNLIKELY(error != NULL)) {
    if (!add_code(seg, e, error)) {
      unlock(e);
      goto full;
    }
    e->errors++;
  }
  (*count)++;
  e->calls++;
  if (rows > 0) e->rows += rows;
  e->total_ns += duration_ns;
  if (duration_ns < e->min_ns) e->min_ns = duration_ns;
  if (duration_ns > e->max_ns) e->max_ns = duration_ns;
  if (wall_ns < e->first_ns) e->first_ns = wall_ns;
  if (wall_ns > e->last_ns) e->last_ns = wall_ns;
  unsigned __int128 sq = ((unsigned __int128)e->sq_hi << 64) | e->sq_lo;
  sq += (unsigned __int128)duration_ns * duration_ns;
  e->sq_lo = (uint64_t)sq;
  e->sq_hi = (uint64_t)(sq >> 64);
  unlock(e);
  return e;
full:
  atomic_fetch_add_explicit(&h->dropped, 1, memory_order_relaxed);
  return NULL;
}

qp_seg_entry *qp__seg_record_lane(qp_seg *seg, unsigned lane, qp_backend backend,
                                  uint64_t fingerprint, const char *norm, size_t norm_len,
                                  const char *db, size_t db_len, uint64_t duration_ns,
                                  int64_t rows, const char *error, int64_t wall_ns) {
  int64_t bucket = qp__seg_bucket(seg->bucket_s, wall_ns);
  qp_seg_entry *e =
      qp__seg_find(seg, lane, backend, fingerprint, bucket, norm, norm_len, db, db_len);
  return e != NULL ? qp__seg_add(seg, e, duration_ns, rows, error, wall_ns) : NULL;
}

qp_seg_entry *qp__seg_record(qp_seg *seg, qp_backend backend, uint64_t fingerprint,
                             const char *norm, size_t norm_len, const char *db, size_t db_len,
                             uint64_t duration_ns, int64_t rows, const char *error,
                             int64_t wall_ns) {
  return qp__seg_record_lane(seg, 0, backend, fingerprint, norm, norm_len, db, db_len,
                             duration_ns, rows, error, wall_ns);
}

bool qp__seg_wants_sample(const qp_seg_entry *e, uint64_t duration_ns) {
  return e->sample_off == 0 || duration_ns > e->sample_ns;
}

void qp__seg_sample(qp_seg *seg, qp_seg_entry *e, const char *sample, size_t len,
                    uint64_t duration_ns) {
  if (len > QP_SEG_SAMPLE_MAX) len = QP_SEG_SAMPLE_MAX;
  uint32_t off = arena_alloc(seg, len + 1);
  if (off == 0) return;
  memcpy(at(seg, off), sample, len);
  lock(e);
  if (e->sample_off == 0 || duration_ns > e->sample_ns) {
    e->sample_off = off;
    e->sample_len = (uint32_t)len;
    e->sample_ns = duration_ns;
  }
  unlock(e);
}
