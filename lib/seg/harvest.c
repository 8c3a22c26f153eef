/*
 * The harvester (qprof/segment.h): reads segments written by other
 * processes, turns their gains into statistics and hands them to a profile,
 * which writes them to the store.
 *
 * A segment is read through a read-only mapping into an image: a private
 * buffer with the segment's layout holding the header, the index and every
 * published entry with its texts, histogram chunks and error codes, each
 * entry copied under its seqlock. An entry that a live writer keeps busy is
 * left as it was in the last image (its gain is taken next time). The image
 * is then checked as a whole (check_image, also qp_segment_check), and
 * compared entry by entry with the image of the last commit: the difference
 * is what the segment gained. After a commit the image is saved beside the
 * segment (`.<name>.done`) and becomes the new base.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "qprof/segment.h"
#include "seg/image_int.h"
#include "seg/seg_int.h"
#include "stats/stats_int.h"
#include "store/store_int.h"

/* How long settling a harvest record waits for a transaction the store
 * still shows in progress (its backend has not yet noticed that the
 * collector that sent COMMIT is gone), polling every 100 ms; then the
 * commit fails with QP_UNAVAILABLE and the next one asks again. */
#define QP_REC_WAIT_NS (5 * 1000000000ull)

typedef struct seg_track {
  char *name;
  dev_t dev;
  ino_t ino;
  uint8_t *base; /* image of the last commit (or NULL), base_len bytes */
  size_t base_len;
  uint8_t *pend; /* image collected, not yet committed */
  size_t pend_len;
  bool finished; /* the writer had ended when `pend` was taken */
  bool seen;
  bool unsaved; /* `base` is newer than the record beside the segment (a commit in doubt) */
} seg_track;

struct qp_harvester {
  qp_hooks hooks;
  qp_err err;
  char *dir;
  int dirfd;
  char *ignore;
  qp_profile *prof;
  seg_track *segs;
  size_t nsegs, cap;
  uint64_t pending_statements;
  uint64_t pending_dropped; /* "dropped, segment full" gained since the last commit */
  /* The last commit failed in doubt, or failed after one: `prof` holds
   * what it tried to write (a flush in doubt until the store can tell,
   * then put back for the next flush), and the bases are the images it was
   * read from. `doubt`: the store could not tell yet. */
  bool holding, doubt;
  /* The harvest record (doubt.c) of the commit in doubt or under way:
   * rec_on_disk when QP_REC_NAME holds it; rec_earlier when nothing in
   * memory goes with it (an earlier harvester left it, or this one had to
   * fall back on the disk): nothing is gathered until a commit settles it
   * with the store, and the bases are then read from the disk again. */
  qp_harvest_rec rec;
  bool rec_on_disk, rec_earlier;
  uint64_t doubt_dropped; /* the dropped count the commit in doubt carried */
  uint64_t carry_dropped; /* ... and written again, it did not commit */
};

/* ---- reading a live segment into an image --------------------------------- *
 * The image is as long as the arena was used when the header was read. A
 * live writer goes on meanwhile: an entry published, or a histogram chunk,
 * sample or error-code record allocated after that read lies beyond the
 * image's end although the writer did nothing wrong. Such an entry is taken
 * at the next harvest (the arena's `used` is then past it), never refused:
 * it is refused only if it lies beyond what the writer has allocated even
 * now (re-read after the entry was seen), which no writer does. The
 * allocation of an entry's parts happens before the release that publishes
 * it (the index slot, or the unlock of its seqlock), so `used` read after an
 * acquire of those covers it. */

/* Copies one entry's bytes (struct, texts, chunks, codes) from `src` to
 * `dst`, both with the segment layout; bounds-checked against `end`. With
 * `dst` NULL only checks the bounds, in `src`. */
static bool copy_entry(uint8_t *dst, const uint8_t *src, size_t end, const qp_seg_header *h,
                       uint32_t off, qp_seg_entry *e) {
  memcpy(e, src + off, sizeof *e);
  if (dst != NULL) memcpy(dst + off, e, sizeof *e);
  if (!in(e->query_off, e->query_len, h->arena_off, end) ||
      !in(e->db_off, e->db_len, h->arena_off, end))
    return false;
  if (dst != NULL) {
    memcpy(dst + e->query_off, src + e->query_off, e->query_len);
    memcpy(dst + e->db_off, src + e->db_off, e->db_len);
  }
  if (e->sample_off != 0) {
    if (e->sample_len > QP_SEG_SAMPLE_MAX || !in(e->sample_off, e->sample_len, h->arena_off, end))
      return false;
    if (dst != NULL) memcpy(dst + e->sample_off, src + e->sample_off, e->sample_len);
  }
  const uint8_t *from = dst != NULL ? dst : src; /* where the copied links are read */
  unsigned n = 0;
  for (uint32_t co = e->chunks_off; co != 0; n++) {
    if (n >= QP_SEG_NCHUNKS || co % 8 != 0 || !in(co, sizeof(qp_seg_chunk), h->arena_off, end))
      return false;
    if (dst != NULL) memcpy(dst + co, src + co, sizeof(qp_seg_chunk));
    co = ((const qp_seg_chunk *)(from + co))->next;
  }
  n = 0;
  for (uint32_t co = e->codes_off; co != 0; n++) {
    if (n >= QP_SEG_CODES_MAX || co % 8 != 0 || !in(co, sizeof(qp_seg_code), h->arena_off, end))
      return false;
    if (dst != NULL) memcpy(dst + co, src + co, sizeof(qp_seg_code));
    co = ((const qp_seg_code *)(from + co))->next;
  }
  return true;
}

/* The end of the used arena of the mapped segment now. */
static size_t used_end_now(const uint8_t *map, const qp_seg_header *h) {
  const qp_seg_header *mh = (const qp_seg_header *)map;
  return qp__seg_image_end(h, atomic_load_explicit(&mh->used, memory_order_acquire));
}

/* An entry a writer was updating when it died: the histogram and the error
 * codes are each counted once per statement, so they decide. */
static void repair(uint8_t *img, size_t end, const qp_seg_header *h, qp_seg_entry *e) {
  uint64_t total = 0, errs = 0;
  for (uint32_t k = 0; k < QP_SEG_INLINE; k++) total += e->inline_counts[k];
  unsigned n = 0;
  for (uint32_t co = e->chunks_off; co != 0 && n < QP_SEG_NCHUNKS; n++) {
    if (co % 8 != 0 || !in(co, sizeof(qp_seg_chunk), h->arena_off, end)) break;
    const qp_seg_chunk *c = (const qp_seg_chunk *)(img + co);
    for (uint32_t k = 0; k < QP_SEG_CHUNK; k++) total += c->counts[k];
    co = c->next;
  }
  n = 0;
  for (uint32_t co = e->codes_off; co != 0 && n < QP_SEG_CODES_MAX; n++) {
    if (co % 8 != 0 || !in(co, sizeof(qp_seg_code), h->arena_off, end)) break;
    errs += ((const qp_seg_code *)(img + co))->count;
    co = ((const qp_seg_code *)(img + co))->next;
  }
  e->calls = total;
  e->errors = errs <= total ? errs : total;
}

/* Reads the mapped segment `map` (map_len bytes) into a new image. `old` is
 * the base image (or NULL), whose entries stand in for ones too busy to
 * copy. Returns the image (caller frees) or NULL with `why` set. */
static uint8_t *read_image(qp_harvester *hv, const uint8_t *map, size_t map_len, bool alive,
                           const uint8_t *old, size_t old_len, size_t *out_len, char *why,
                           size_t whylen) {
  qp_seg_header h;
  memcpy(&h, map, sizeof h);
  if (!qp__seg_check_header(&h, map_len, why, whylen)) return NULL;
  if (h.size != map_len) {
    snprintf(why, whylen, "header says %llu bytes, the file has %zu", (unsigned long long)h.size,
             map_len);
    return NULL;
  }
  size_t end = used_end_now(map, &h);
  uint8_t *img = qp__calloc(&hv->hooks, 1, end);
  if (img == NULL) {
    snprintf(why, whylen, "out of memory");
    return NULL;
  }
  memcpy(img, &h, sizeof h);
  ((qp_seg_header *)img)->used = end - h.arena_off;
  const _Atomic uint32_t *slots = (const _Atomic uint32_t *)(map + h.slots_off);
  uint32_t *islots = (uint32_t *)(img + h.slots_off);
  for (uint32_t i = 0; i < h.nslots; i++) {
    uint32_t slot = atomic_load_explicit(&slots[i], memory_order_acquire);
    if (slot == 0) continue;
    /* (a tag without an offset is refused by check_image) */
    uint32_t off = qp__seg_slot_off(slot, h.version);
    if (off == 0) {
      islots[i] = slot;
      continue;
    }
    bool done = false, later = false;
    if (off % 8 != 0 || !in(off, sizeof(qp_seg_entry), h.arena_off, end)) {
      /* published after the header was read, or bad */
      if (!alive || off % 8 != 0 ||
          !in(off, sizeof(qp_seg_entry), h.arena_off, used_end_now(map, &h))) {
        snprintf(why, whylen, "entry offset %u out of bounds", off);
        qp__free(&hv->hooks, img);
        return NULL;
      }
      later = true;
    }
    const _Atomic uint32_t *seq = (const _Atomic uint32_t *)(map + off);
    for (int attempt = 0; attempt < 200 && !done && !later; attempt++) {
      uint32_t s1 = atomic_load_explicit(seq, memory_order_acquire);
      if ((s1 & 1) != 0 && alive) {
        if (attempt > 20) sched_yield();
        continue;
      }
      qp_seg_entry e;
      bool ok = copy_entry(img, map, end, &h, off, &e);
      atomic_thread_fence(memory_order_acquire);
      uint32_t s2 = atomic_load_explicit(seq, memory_order_relaxed);
      if (alive && s1 != s2) continue; /* torn: the writer was in it */
      if (!ok) {
        /* consistent, but a part of it lies beyond the image: allocated
         * after the header was read (taken next time), or bad */
        qp_seg_entry x;
        if (!alive || !copy_entry(NULL, map, used_end_now(map, &h), &h, off, &x)) {
          snprintf(why, whylen, "entry at %u: an offset out of bounds", off);
          qp__free(&hv->hooks, img);
          return NULL;
        }
        later = true;
        break;
      }
      done = true;
    }
    if (done) {
      qp_seg_entry *e = (qp_seg_entry *)(img + off);
      if ((e->seq & 1) != 0) repair(img, end, &h, e); /* a writer killed mid-update */
      e->seq = 0;
    } else if (old != NULL && in(off, sizeof(qp_seg_entry), 0, old_len < end ? old_len : end) &&
               ((const qp_seg_entry *)(old + off))->calls != 0) {
      /* too busy to copy now, or grown past the image: as it was at the
       * last commit */
      qp_seg_entry e;
      const qp_seg_header *oh = (const qp_seg_header *)old;
      if (!copy_entry(img, old, old_len < end ? old_len : end, oh, off, &e)) {
        islots[i] = 0;
        memset(img + off, 0, sizeof(qp_seg_entry));
      } else {
        islots[i] = slot;
      }
      continue;
    } else {
      if (in(off, sizeof(qp_seg_entry), h.arena_off, end))
        memset(img + off, 0, sizeof(qp_seg_entry));
      continue; /* next time */
    }
    islots[i] = slot;
  }
  if (!qp__seg_check_image(img, end, why, whylen)) {
    qp__free(&hv->hooks, img);
    return NULL;
  }
  *out_len = end;
  return img;
}

/* ---- the run directory ------------------------------------------------------ */
static void track_clear(qp_harvester *hv, seg_track *t) {
  qp__free(&hv->hooks, t->name);
  qp__free(&hv->hooks, t->base);
  qp__free(&hv->hooks, t->pend);
  memset(t, 0, sizeof *t);
}

static qp_status new_profile(qp_harvester *hv, char *errbuf, size_t errlen) {
  qp_profile_free(hv->prof);
  hv->prof = NULL;
  qp_profile_options o = {.hooks = &hv->hooks, .ignore = hv->ignore};
  return qp_profile_new(&hv->prof, &o, errbuf, errlen);
}

qp_status qp_harvester_new(qp_harvester **out, const char *run_dir, const char *ignore,
                           const qp_hooks *hooks, char *errbuf, size_t errlen) {
  if (out == NULL || run_dir == NULL)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "out or run_dir is NULL");
  *out = NULL;
  qp_hooks hk;
  qp__hooks_init(&hk, hooks);
  int fd = open(run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return qp__errbuf_set(errbuf, errlen, QP_IO, "run directory %s: %s", run_dir, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
    close(fd);
    return qp__errbuf_set(errbuf, errlen, QP_INVALID,
                          "run directory %s must be owned by uid %u with mode 0700", run_dir,
                          (unsigned)geteuid());
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    close(fd);
    if (err == EWOULDBLOCK)
      return qp__errbuf_set(errbuf, errlen, QP_BUSY, "another collector is harvesting %s", run_dir);
    return qp__errbuf_set(errbuf, errlen, QP_IO, "locking %s: %s", run_dir, strerror(err));
  }
  qp_harvester *hv = qp__calloc(&hk, 1, sizeof *hv);
  if (hv == NULL) {
    close(fd);
    return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  }
  hv->hooks = hk;
  hv->dirfd = fd;
  hv->dir = qp__strdup(&hk, run_dir);
  hv->ignore = qp__strdup(&hk, ignore != NULL ? ignore : "");
  qp_status rc = hv->dir != NULL && hv->ignore != NULL
                     ? new_profile(hv, errbuf, errlen)
                     : qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  if (rc == QP_OK) {
    /* A record an earlier collector left: settled before anything is
     * gathered (a damaged one is refused: guessing its outcome could count
     * that harvest twice or lose it). */
    char msg[QP_ERRMSG_MAX];
    bool found = false;
    rc = qp__rec_read(&hk, fd, &hv->rec, &found, msg, sizeof msg);
    if (rc == QP_SYNTAX)
      qp__errbuf_set(errbuf, errlen, rc,
                     "refused harvest record %s/%s; nothing is harvested from %s until it is "
                     "settled by hand: remove it to gather that harvest again from the segments "
                     "(counted twice if it had committed; docs/shim.md)",
                     run_dir, msg, run_dir);
    else if (rc != QP_OK) qp__errbuf_set(errbuf, errlen, rc, "%s/%s", run_dir, msg);
    hv->rec_on_disk = hv->rec_earlier = found && rc == QP_OK;
  }
  if (rc != QP_OK) {
    qp_harvester_free(hv);
    return rc;
  }
  *out = hv;
  return QP_OK;
}

void qp_harvester_free(qp_harvester *hv) {
  if (hv == NULL) return;
  qp_hooks hk = hv->hooks;
  for (size_t i = 0; i < hv->nsegs; i++) track_clear(hv, &hv->segs[i]);
  qp__free(&hk, hv->segs);
  qp_profile_free(hv->prof);
  qp__rec_clear(&hk, &hv->rec);
  if (hv->dirfd >= 0) close(hv->dirfd);
  qp__free(&hk, hv->dir);
  qp__free(&hk, hv->ignore);
  qp__free(&hk, hv);
}

const char *qp_harvester_errmsg(const qp_harvester *hv) {
  return hv != NULL ? hv->err.msg : "harvester is NULL";
}

/* Whether process `pid` has ended but not been waited for (a zombie: kill()
 * still finds it). Its parent may never wait: an orphan's new parent is PID 1,
 * which in a container is often a program that reaps nothing. */
static bool ended_unreaped(int32_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  /* "pid (comm) S ...": the name may hold ')', the state follows the last */
  const char *p = strrchr(buf, ')');
  return p != NULL && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

/* Whether the process that writes the segment open as `fd` (header pid
 * `pid`) is still running: it holds a lock on the first byte while it lives;
 * a process that closed that descriptor (daemons close everything) is
 * still found by its pid, unless that is a zombie. */
static bool writer_alive(int fd, int32_t pid) {
  struct flock lk = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
  if (fcntl(fd, F_GETLK, &lk) == 0 && lk.l_type != F_UNLCK) return true;
  if (pid <= 0) return false;
  if (kill((pid_t)pid, 0) != 0 && errno != EPERM) return false;
  return !ended_unreaped(pid);
}

static void refuse(qp_harvester *hv, const char *name, const char *why, qp_harvest_stats *stats) {
  qp__log(&hv->hooks, QP_LOG_ERROR, "refused segment %s/%s: %s", hv->dir, name, why);
  char to[512];
  snprintf(to, sizeof to, "%s.refused", name);
  renameat(hv->dirfd, name, hv->dirfd, to);
  stats->refused++;
}

static seg_track *track_of(qp_harvester *hv, const char *name, const struct stat *st) {
  for (size_t i = 0; i < hv->nsegs; i++) {
    seg_track *t = &hv->segs[i];
    if (strcmp(t->name, name) == 0) {
      if (t->dev == st->st_dev && t->ino == st->st_ino) return t;
      track_clear(hv, t); /* a new file under an old name */
      t->name = qp__strdup(&hv->hooks, name);
      t->dev = st->st_dev;
      t->ino = st->st_ino;
      return t->name != NULL ? t : NULL;
    }
  }
  if (hv->nsegs == hv->cap) {
    size_t cap = hv->cap ? hv->cap * 2 : 16;
    seg_track *v = qp__realloc(&hv->hooks, hv->segs, cap * sizeof *v);
    if (v == NULL) return NULL;
    hv->segs = v;
    hv->cap = cap;
  }
  seg_track *t = &hv->segs[hv->nsegs];
  memset(t, 0, sizeof *t);
  t->name = qp__strdup(&hv->hooks, name);
  if (t->name == NULL) return NULL;
  t->dev = st->st_dev;
  t->ino = st->st_ino;
  hv->nsegs++;
  /* The base a previous harvester left: trusted no more than the segment. */
  char done[512];
  snprintf(done, sizeof done, ".%s.done", name);
  int fd = openat(hv->dirfd, done, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) {
    struct stat ds;
    char why[256];
    if (fstat(fd, &ds) == 0 && S_ISREG(ds.st_mode) && ds.st_uid == geteuid() &&
        ds.st_size >= QP_SEG_HEADER_SIZE && (uint64_t)ds.st_size <= QP_SEG_MAX_SIZE) {
      uint8_t *b = qp__malloc(&hv->hooks, (size_t)ds.st_size);
      if (b != NULL && pread(fd, b, (size_t)ds.st_size, 0) == ds.st_size &&
          qp__seg_check_image(b, (size_t)ds.st_size, why, sizeof why)) {
        t->base = b;
        t->base_len = (size_t)ds.st_size;
      } else {
        qp__free(&hv->hooks, b);
        qp__log(&hv->hooks, QP_LOG_WARN, "ignored %s/%s: not a harvest record", hv->dir, done);
      }
    }
    close(fd);
  }
  return t;
}

static bool is_segment_name(const char *n) {
  size_t len = strlen(n), sl = strlen(QP_SEG_SUFFIX);
  return n[0] != '.' && len > sl && strcmp(n + len - sl, QP_SEG_SUFFIX) == 0 && len < 400;
}

static void harvest_one(qp_harvester *hv, const char *name, qp_harvest_stats *stats) {
  int fd = openat(hv->dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    if (errno != ENOENT) refuse(hv, name, strerror(errno), stats);
    return;
  }
  struct stat st;
  char why[256];
  if (fstat(fd, &st) != 0) {
    refuse(hv, name, strerror(errno), stats);
  } else if (!S_ISREG(st.st_mode)) {
    refuse(hv, name, "not a regular file", stats);
  } else if (st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
    snprintf(why, sizeof why, "owned by uid %u mode %04o; only uid %u, mode 0600 is read",
             (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777), (unsigned)geteuid());
    refuse(hv, name, why, stats);
  } else if (st.st_size < (off_t)QP_SEG_HEADER_SIZE || (uint64_t)st.st_size > QP_SEG_MAX_SIZE) {
    snprintf(why, sizeof why, "size %lld out of range", (long long)st.st_size);
    refuse(hv, name, why, stats);
  } else {
    seg_track *t = track_of(hv, name, &st);
    if (t == NULL) {
      close(fd);
      return;
    }
    t->seen = true;
    int32_t pid = 0;
    if (pread(fd, &pid, sizeof pid, offsetof(qp_seg_header, pid)) != sizeof pid) pid = 0;
    bool alive = writer_alive(fd, pid);
    char magic[8] = {0};
    if (pread(fd, magic, sizeof magic, 0) != sizeof magic ||
        memcmp(magic, "\0\0\0\0\0\0\0\0", 8) == 0) {
      /* The writer has not finished creating it (the magic is written
       * last, before anything is recorded): not yet, or never, if it died. */
      if (!alive) unlinkat(hv->dirfd, name, 0);
      close(fd);
      return;
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
      refuse(hv, name, strerror(errno), stats);
      close(fd);
      return;
    }
    size_t len = 0;
    uint8_t *img = read_image(hv, map, (size_t)st.st_size, alive, t->base, t->base_len, &len, why,
                              sizeof why);
    munmap(map, (size_t)st.st_size);
    uint64_t n = 0, dropped = 0;
    if (img != NULL &&
        (!qp__seg_gain(hv->prof, &hv->hooks, img, len, t->base, t->base_len, false, &n, &dropped, why,
               sizeof why) ||
         !qp__seg_gain(hv->prof, &hv->hooks, img, len, t->base, t->base_len, true, &n, &dropped, why,
               sizeof why))) {
      qp__free(&hv->hooks, img);
      img = NULL;
    }
    if (img == NULL) {
      refuse(hv, name, why, stats);
      track_clear(hv, t);
      t->name = qp__strdup(&hv->hooks, "");
    } else {
      qp__free(&hv->hooks, t->pend);
      t->pend = img;
      t->pend_len = len;
      t->finished = !alive;
      stats->segments++;
      stats->live += alive;
      stats->statements += n;
      stats->dropped += dropped;
    }
  }
  close(fd);
}

/* A segment being created is `.<pid>-<n>.qpseg.new`; one whose process was
 * killed before it was linked into place holds nothing recorded. */
static void remove_stale(qp_harvester *hv, const char *name) {
  size_t len = strlen(name), sl = strlen(QP_SEG_SUFFIX ".new");
  /* the image a commit that never got as far as its record would have
   * advanced to (only a record names the .pend files that count) */
  size_t pl = strlen(QP_SEG_SUFFIX ".pend");
  if (!hv->rec_on_disk && name[0] == '.' &&
      (strcmp(name, QP_REC_NAME ".tmp") == 0 ||
       (len > pl && strcmp(name + len - pl, QP_SEG_SUFFIX ".pend") == 0) ||
       (len > pl + 4 && strcmp(name + len - pl - 4, QP_SEG_SUFFIX ".pend.tmp") == 0))) {
    unlinkat(hv->dirfd, name, 0);
    return;
  }
  if (name[0] != '.' || len <= sl + 1 || strcmp(name + len - sl, QP_SEG_SUFFIX ".new") != 0) return;
  char *end;
  long pid = strtol(name + 1, &end, 10);
  if (end == name + 1 || *end != '-' || pid <= 0) return;
  if (kill((pid_t)pid, 0) == 0 || errno == EPERM) return;
  unlinkat(hv->dirfd, name, 0);
}

qp_status qp_harvester_collect(qp_harvester *hv, qp_harvest_stats *stats) {
  qp_harvest_stats local;
  if (stats == NULL) stats = &local;
  memset(stats, 0, sizeof *stats);
  if (hv == NULL) return QP_INVALID;
  qp__err_clear(&hv->err);
  /* Nothing is gathered before a record of an earlier collector is settled
   * (qp_harvester_commit): the bases depend on its outcome. */
  if (hv->rec_earlier) return QP_OK;
  /* Collecting again before a commit starts over from the bases. */
  for (size_t i = 0; i < hv->nsegs; i++) {
    qp__free(&hv->hooks, hv->segs[i].pend);
    hv->segs[i].pend = NULL;
    hv->segs[i].seen = false;
  }
  char errbuf[QP_ERRMSG_MAX];
  /* (a profile holding a commit in doubt is kept: the next commit settles it) */
  qp_status rc = hv->holding ? QP_OK : new_profile(hv, errbuf, sizeof errbuf);
  if (rc != QP_OK) return qp__err_set(&hv->err, rc, "%s", errbuf);
  int dfd = dup(hv->dirfd);
  DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
  if (d == NULL) {
    if (dfd >= 0) close(dfd);
    return qp__err_set(&hv->err, QP_IO, "reading %s: %s", hv->dir, strerror(errno));
  }
  rewinddir(d);
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (is_segment_name(de->d_name)) harvest_one(hv, de->d_name, stats);
    else remove_stale(hv, de->d_name);
  }
  closedir(d);
  /* forget segments that are gone, or were refused */
  for (size_t i = 0; i < hv->nsegs;) {
    if (!hv->segs[i].seen || hv->segs[i].name == NULL || hv->segs[i].name[0] == '\0') {
      track_clear(hv, &hv->segs[i]);
      hv->segs[i] = hv->segs[--hv->nsegs];
    } else {
      i++;
    }
  }
  hv->pending_statements = stats->statements;
  hv->pending_dropped = stats->dropped;
  return QP_OK;
}

/* Saves `t`'s pending image as its new base beside the segment. */
static bool save_base(qp_harvester *hv, seg_track *t) {
  char tmp[512], done[512];
  snprintf(tmp, sizeof tmp, ".%s.tmp", t->name);
  snprintf(done, sizeof done, ".%s.done", t->name);
  int fd = openat(hv->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  size_t off = 0;
  while (off < t->pend_len) {
    ssize_t w = write(fd, t->pend + off, t->pend_len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    off += (size_t)w;
  }
  bool ok = off == t->pend_len;
  if (close(fd) != 0) ok = false;
  if (ok && renameat(hv->dirfd, tmp, hv->dirfd, done) != 0) ok = false;
  if (!ok) unlinkat(hv->dirfd, tmp, 0);
  return ok;
}

/* What the harvester holds in memory is dropped and the disk trusted: the
 * records beside the segments, and a harvest record whose outcome decides
 * them (settled before anything is gathered again). Exact whatever was
 * held: the segments still have everything the disk does not say is in
 * the store. */
static void fall_back_on_disk(qp_harvester *hv) {
  for (size_t i = 0; i < hv->nsegs; i++) track_clear(hv, &hv->segs[i]);
  hv->nsegs = 0;
  char errbuf[QP_ERRMSG_MAX];
  new_profile(hv, errbuf, sizeof errbuf);
  hv->holding = hv->doubt = false;
  hv->pending_statements = hv->pending_dropped = 0;
  hv->doubt_dropped = hv->carry_dropped = 0;
  hv->rec_earlier = hv->rec_on_disk;
}

/* Applies (committed) or drops the record of this harvester's commit and
 * forgets it; on failure falls back on the disk (the record stays there,
 * and says the same at the next settling). */
static qp_status rec_finish(qp_harvester *hv, bool committed) {
  char msg[QP_ERRMSG_MAX];
  qp_status rc = qp__rec_apply(&hv->hooks, hv->dirfd, &hv->rec, committed, false, msg, sizeof msg);
  if (rc != QP_OK) {
    hv->rec_on_disk = true;
    fall_back_on_disk(hv);
    return qp__err_set(&hv->err, rc, "%s/%s", hv->dir, msg);
  }
  qp__rec_clear(&hv->hooks, &hv->rec);
  hv->rec_on_disk = false;
  return QP_OK;
}

/* The transaction of a record an earlier collector left: asked of the
 * store, waiting at most QP_REC_WAIT_NS while it is still in progress. */
static qp_status ask_store(qp_harvester *hv, qp_store *store, qp_xact *x) {
  uint64_t until = qp__now_ns() + QP_REC_WAIT_NS;
  for (;;) {
    qp_status rc = qp__store_xact_status(store, hv->rec.xid, hv->rec.store, x);
    if (rc != QP_OK || *x != QP_XACT_RUNNING || qp__now_ns() >= until) return rc;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 100000000L};
    nanosleep(&ts, NULL);
  }
}

/* Settles a record an earlier collector left (hv->rec_earlier). */
static qp_status settle_earlier(qp_harvester *hv, qp_store *store) {
  const char *what = "the harvest record %s/" QP_REC_NAME " (transaction %lld)";
  char rec[600];
  snprintf(rec, sizeof rec, what, hv->dir, (long long)hv->rec.xid);
  if (store == NULL || !qp__store_has_xact(store))
    return qp__err_set(&hv->err, QP_INVALID,
                       "%s is to be settled first, with the PostgreSQL store it went to", rec);
  qp_xact x = QP_XACT_UNKNOWN;
  qp_status rc = ask_store(hv, store, &x);
  if (rc != QP_OK)
    return qp__err_set(&hv->err, rc, "cannot settle %s yet: %s", rec, qp_store_errmsg(store));
  if (x == QP_XACT_RUNNING)
    return qp__err_set(&hv->err, QP_UNAVAILABLE,
                       "cannot settle %s yet: the transaction is still in progress in %s (asked "
                       "again at the next harvest)",
                       rec, qp_store_location(store));
  if (x == QP_XACT_UNKNOWN)
    return qp__err_set(&hv->err, QP_STATE,
                       "cannot settle %s: %s no longer knows that transaction (too old); remove "
                       "the record to gather that harvest again from the segments (counted "
                       "twice if it had committed)",
                       rec, qp_store_location(store));
  char msg[QP_ERRMSG_MAX];
  rc = qp__rec_apply(&hv->hooks, hv->dirfd, &hv->rec, x == QP_XACT_COMMITTED, true, msg,
                     sizeof msg);
  if (rc != QP_OK) return qp__err_set(&hv->err, rc, "cannot settle %s: %s", rec, msg);
  qp__log(&hv->hooks, QP_LOG_WARN, "settled %s: %s", rec,
          x == QP_XACT_COMMITTED ? "it committed; the harvest is not gathered again"
                                 : "it did not commit; the harvest is gathered again");
  qp__rec_clear(&hv->hooks, &hv->rec);
  hv->rec_on_disk = hv->rec_earlier = false;
  fall_back_on_disk(hv); /* the bases are read from the disk again */
  return QP_OK;
}

/* Settles this harvester's commit in doubt (hv->doubt) with the store
 * handle it went to: dropped when it committed, put back into the profile
 * for the next write when it did not; its record applied or dropped. */
static qp_status settle_held(qp_harvester *hv, qp_store *store) {
  bool committed = false;
  qp_status rc = QP_OK;
  if (qp__profile_in_doubt(hv->prof)) {
    rc = qp__profile_settle(hv->prof, store, &committed);
  } else if (store->in_doubt) {
    rc = qp__store_resolve(store, &committed); /* a dropped count alone */
  } else if (hv->rec_on_disk) {
    /* another handle than the one in doubt: only the record can tell */
    fall_back_on_disk(hv);
    return qp__err_set(&hv->err, QP_STATE, "the store handle the harvest in doubt went to is "
                                           "not this one: settled from the record first");
  }
  if (rc != QP_OK) return qp__err_set(&hv->err, rc, "writing the store: %s", qp_store_errmsg(store));
  if (!committed) hv->carry_dropped += hv->doubt_dropped;
  hv->doubt_dropped = 0;
  hv->doubt = false;
  return hv->rec_on_disk ? rec_finish(hv, committed) : QP_OK;
}

/* The store calls this before the COMMIT of the harvest (qp_precommit_fn):
 * the record goes to disk with the transaction's id. */
static qp_status on_precommit(void *ud, int64_t xid, const char *store_id, char *msg,
                              size_t msglen) {
  qp_harvester *hv = ud;
  hv->rec.xid = xid;
  snprintf(hv->rec.store, sizeof hv->rec.store, "%s", store_id);
  qp_status rc = qp__rec_write(&hv->hooks, hv->dirfd, &hv->rec, msg, msglen);
  if (rc == QP_OK) hv->rec_on_disk = true;
  return rc;
}

static bool track_changed(const seg_track *t) {
  return t->base == NULL || t->base_len != t->pend_len || t->unsaved ||
         memcmp(t->base, t->pend, t->pend_len) != 0;
}

/* The record of the commit about to be written: each changed segment's
 * pending image as its .pend, and the segments of ended processes. */
static qp_status rec_prepare(qp_harvester *hv) {
  qp__rec_clear(&hv->hooks, &hv->rec);
  char msg[QP_ERRMSG_MAX];
  qp_status rc = QP_OK;
  for (size_t i = 0; rc == QP_OK && i < hv->nsegs; i++) {
    seg_track *t = &hv->segs[i];
    if (t->pend == NULL) continue;
    uint64_t hash = 0;
    if (t->finished) {
      if (!qp__rec_add(&hv->hooks, &hv->rec, t->name, (uint64_t)t->ino, QP_REC_GONE, 0, 0))
        rc = qp__err_set(&hv->err, QP_NOMEM, "out of memory");
      continue;
    }
    if (!track_changed(t)) continue;
    rc = qp__rec_pend_write(hv->dirfd, t->name, t->pend, t->pend_len, &hash, msg, sizeof msg);
    if (rc != QP_OK) {
      qp__err_set(&hv->err, rc, "%s/%s", hv->dir, msg);
    } else if (!qp__rec_add(&hv->hooks, &hv->rec, t->name, (uint64_t)t->ino, QP_REC_DONE,
                            t->pend_len, hash)) {
      char pend[512];
      snprintf(pend, sizeof pend, ".%s.pend", t->name);
      unlinkat(hv->dirfd, pend, 0);
      rc = qp__err_set(&hv->err, QP_NOMEM, "out of memory");
    }
  }
  if (rc != QP_OK) {
    qp__rec_apply(&hv->hooks, hv->dirfd, &hv->rec, false, false, msg, sizeof msg);
    qp__rec_clear(&hv->hooks, &hv->rec);
  }
  return rc;
}

/* After a failed commit that holds what it read: the images it was read
 * from become the bases, in memory only. */
static void hold_bases(qp_harvester *hv) {
  for (size_t i = 0; i < hv->nsegs; i++) {
    seg_track *t = &hv->segs[i];
    if (t->pend == NULL) continue;
    qp__free(&hv->hooks, t->base);
    t->base = t->pend;
    t->base_len = t->pend_len;
    t->pend = NULL;
    t->unsaved = true;
  }
  hv->holding = true;
  hv->pending_statements = 0;
  hv->pending_dropped = 0;
}

qp_status qp_harvester_commit(qp_harvester *hv, qp_store *store) {
  if (hv == NULL) return QP_INVALID;
  qp__err_clear(&hv->err);
  if (hv->rec_earlier) return settle_earlier(hv, store);
  /* With a store that can be asked later what became of a transaction, a
   * record of the commit goes to disk before its COMMIT (doubt.c). */
  bool recorded = false;
  if (hv->pending_statements > 0 || hv->pending_dropped > 0 || hv->holding) {
    if (store == NULL) return qp__err_set(&hv->err, QP_INVALID, "statements to write and no store");
    qp_status rc = hv->doubt ? settle_held(hv, store) : QP_OK;
    if (rc != QP_OK && hv->rec_earlier) return rc; /* fell back on the disk */
    recorded = rc == QP_OK && qp__store_has_xact(store);
    if (recorded) rc = rec_prepare(hv);
    if (rc != QP_OK && !hv->doubt) {
      /* (a record that could not be written: as a failed write) */
      recorded = false;
    }
    if (rc == QP_OK) {
      /* the dropped statements go to the minute of this harvest, in the
       * same transaction as the statistics */
      uint64_t dropped = hv->pending_dropped + hv->carry_dropped;
      store->precommit = recorded ? on_precommit : NULL;
      store->precommit_ud = hv;
      rc = qp__profile_flush_dropped(hv->prof, store, qp__seg_bucket(60, qp__wall_ns()), dropped);
      store->precommit = NULL;
      store->precommit_ud = NULL;
      hv->doubt = rc != QP_OK && (qp__profile_in_doubt(hv->prof) ||
                                  (store->in_doubt && store->write_in_doubt));
      if (hv->doubt) {
        hv->doubt_dropped = dropped;
        hv->carry_dropped = 0;
      }
      if (rc != QP_OK)
        rc = qp__err_set(&hv->err, rc, "writing the store: %s", qp_store_errmsg(store));
    }
    if (rc != QP_OK && !hv->doubt && hv->rec.n + (hv->rec_on_disk ? 1 : 0) > 0) {
      /* nothing committed: the record and the images it names go */
      qp_err e = hv->err;
      rec_finish(hv, false);
      if (hv->rec_earlier) return hv->err.code;
      hv->err = e;
    }
    if (rc != QP_OK && (hv->doubt || hv->holding)) {
      /* The store does not know yet whether that committed (or a write
       * after such a doubt failed: the profile holds what it tried).
       * Gathering it again from the old bases could count it twice; the
       * profile holds it until the next commit, so the images it was read
       * from become the bases, in memory only (the records beside the
       * segments are written once a commit succeeds; the harvest record on
       * disk says what they become if this process dies meanwhile). */
      hold_bases(hv);
      return rc;
    }
    hv->holding = false;
    if (rc != QP_OK) {
      for (size_t i = 0; i < hv->nsegs; i++) {
        qp__free(&hv->hooks, hv->segs[i].pend);
        hv->segs[i].pend = NULL;
      }
      char errbuf[QP_ERRMSG_MAX];
      new_profile(hv, errbuf, sizeof errbuf);
      hv->pending_statements = 0;
      hv->pending_dropped = 0;
      return rc;
    }
    hv->carry_dropped = 0;
    if (recorded && rec_finish(hv, true) != QP_OK) return hv->err.code;
  }
  hv->pending_statements = 0;
  hv->pending_dropped = 0;
  qp_status rc = QP_OK;
  for (size_t i = 0; i < hv->nsegs;) {
    seg_track *t = &hv->segs[i];
    if (t->pend == NULL) {
      i++;
      continue;
    }
    char done[512];
    snprintf(done, sizeof done, ".%s.done", t->name);
    if (t->finished) {
      if (!recorded) { /* (the record removed it, if it was still that file) */
        unlinkat(hv->dirfd, t->name, 0);
        unlinkat(hv->dirfd, done, 0);
      }
      track_clear(hv, t);
      hv->segs[i] = hv->segs[--hv->nsegs];
      continue;
    }
    bool changed = track_changed(t);
    if (changed && !recorded && !save_base(hv, t))
      rc = qp__err_set(&hv->err, QP_IO, "saving the harvest record of %s/%s: %s", hv->dir,
                       t->name, strerror(errno));
    else if (changed) t->unsaved = false;
    qp__free(&hv->hooks, t->base);
    t->base = t->pend;
    t->base_len = t->pend_len;
    t->pend = NULL;
    i++;
  }
  return rc;
}

bool qp_harvester_in_doubt(const qp_harvester *hv) {
  return hv != NULL && (hv->doubt || hv->rec_earlier);
}
