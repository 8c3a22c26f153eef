/*
 * The harvest record (`.doubt` in the run directory; docs/shim.md, "A
 * collector killed while a flush is in doubt"): what a collector that dies
 * between its store's COMMIT and the records beside its segments needs so
 * that the next collector neither counts that harvest twice nor loses it.
 *
 * Before the COMMIT of a harvest into a store that can be asked later what
 * became of a transaction (PostgreSQL: txid_status), the collector writes
 * the image each changed segment would advance to as `.<segment>.pend`,
 * then this record: the transaction id, the store's name, and per segment
 * what a commit does to it (its `.pend` becomes its `.done`, or the
 * segment of a process that has ended goes). Each is written to a
 * temporary name, fsynced and renamed, and the directory fsynced, before
 * the COMMIT goes out. Once the outcome is known the record is applied
 * (committed) or dropped (not committed) and removed; a collector that
 * finds one at its start settles it with the store first. Applying is
 * idempotent, so a collector killed while applying leaves a record that
 * applies again to the same end.
 *
 * The record is text, one item a line, segment names in hex (a segment
 * name may hold any byte but '/' and NUL), closed by an XXH3 of everything
 * before the last line:
 *
 *   qprof harvest record 1
 *   xid 1234
 *   store 7715250300485433551/16384
 *   done 3132332d302e71707365 81234 1052672 9f3a61c2d0e4b7a8
 *   gone 3133302d302e71707365 81240
 *   check 5d41402abc4b2a76
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "seg/seg_int.h"

#define REC_MAGIC "qprof harvest record 1"
/* A record names at most this many segments, and is at most this long:
 * a collector harvests one run directory, its segments one per process. */
#define REC_MAX_SEGS 1000000u
#define REC_MAX_BYTES (REC_MAX_SEGS * 1100u)

void qp__rec_clear(const qp_hooks *h, qp_harvest_rec *r) {
  for (size_t i = 0; i < r->n; i++) qp__free(h, r->segs[i].name);
  qp__free(h, r->segs);
  memset(r, 0, sizeof *r);
}

bool qp__rec_add(const qp_hooks *h, qp_harvest_rec *r, const char *name, uint64_t ino,
                 qp_rec_kind kind, uint64_t len, uint64_t hash) {
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 16;
    qp_rec_seg *v = qp__realloc(h, r->segs, cap * sizeof *v);
    if (v == NULL) return false;
    r->segs = v;
    r->cap = cap;
  }
  char *n = qp__strdup(h, name);
  if (n == NULL) return false;
  r->segs[r->n++] = (qp_rec_seg){.name = n, .ino = ino, .kind = kind, .len = len, .hash = hash};
  return true;
}

/* Writes `len` bytes to `tmp`, fsyncs and renames it to `name`. */
static bool write_durable(int dirfd, const char *tmp, const char *name, const void *data,
                          size_t len) {
  int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  size_t off = 0;
  while (off < len) {
    ssize_t w = write(fd, (const char *)data + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    off += (size_t)w;
  }
  bool ok = off == len && fsync(fd) == 0;
  if (close(fd) != 0) ok = false;
  if (ok && renameat(dirfd, tmp, dirfd, name) != 0) ok = false;
  if (!ok) {
    int err = errno;
    unlinkat(dirfd, tmp, 0);
    errno = err;
  }
  return ok;
}

qp_status qp__rec_pend_write(int dirfd, const char *seg, const uint8_t *img, size_t len,
                             uint64_t *hash, char *msg, size_t msglen) {
  char tmp[512], name[512];
  snprintf(tmp, sizeof tmp, ".%s.pend.tmp", seg);
  snprintf(name, sizeof name, ".%s.pend", seg);
  *hash = XXH3_64bits(img, len);
  if (!write_durable(dirfd, tmp, name, img, len))
    return qp__errbuf_set(msg, msglen, QP_IO, "writing %s: %s", name, strerror(errno));
  return QP_OK;
}

static bool put_hex(qp_buf *b, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (!qp__buf_printf(b, "%02x", *p)) return false;
  return true;
}

qp_status qp__rec_write(const qp_hooks *h, int dirfd, const qp_harvest_rec *r, char *msg,
                        size_t msglen) {
  qp_buf b;
  qp__buf_init(&b, h);
  bool ok = qp__buf_printf(&b, REC_MAGIC "\nxid %" PRId64 "\nstore %s\n", r->xid, r->store);
  for (size_t i = 0; ok && i < r->n; i++) {
    const qp_rec_seg *s = &r->segs[i];
    ok = qp__buf_puts(&b, s->kind == QP_REC_DONE ? "done " : "gone ") && put_hex(&b, s->name);
    if (ok && s->kind == QP_REC_DONE)
      ok = qp__buf_printf(&b, " %" PRIu64 " %" PRIu64 " %016" PRIx64 "\n", s->ino, s->len,
                          s->hash);
    else if (ok)
      ok = qp__buf_printf(&b, " %" PRIu64 "\n", s->ino);
  }
  if (ok) ok = qp__buf_printf(&b, "check %016" PRIx64 "\n", (uint64_t)XXH3_64bits(b.data, b.len));
  if (!ok) {
    qp__buf_free(&b);
    return qp__errbuf_set(msg, msglen, QP_NOMEM, "out of memory");
  }
  ok = write_durable(dirfd, ".doubt.tmp", QP_REC_NAME, b.data, b.len) && fsync(dirfd) == 0;
  int err = errno;
  qp__buf_free(&b);
  if (!ok) return qp__errbuf_set(msg, msglen, QP_IO, "writing %s: %s", QP_REC_NAME, strerror(err));
  return QP_OK;
}

/* The next line of [*p, end) without its newline, NUL-terminated in place;
 * NULL at the end or when the last line has no newline. */
static char *next_line(char **p, char *end) {
  if (*p >= end) return NULL;
  char *nl = memchr(*p, '\n', (size_t)(end - *p));
  if (nl == NULL) return NULL;
  *nl = '\0';
  char *line = *p;
  *p = nl + 1;
  return line;
}

static int unhex(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* A segment name from hex into out (cap bytes); false when it is not a
 * segment name's hex. */
static bool name_from_hex(const char *hex, size_t n, char *out, size_t cap) {
  if (n == 0 || n % 2 != 0 || n / 2 >= cap) return false;
  for (size_t i = 0; i < n / 2; i++) {
    int hi = unhex(hex[2 * i]), lo = unhex(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = (char)(hi << 4 | lo);
    if (out[i] == '\0' || out[i] == '/') return false;
  }
  out[n / 2] = '\0';
  size_t sl = strlen(QP_SEG_SUFFIX);
  return out[0] != '.' && n / 2 > sl && strcmp(out + n / 2 - sl, QP_SEG_SUFFIX) == 0;
}

static bool parse_u64(const char *s, int base, uint64_t *out, const char **end) {
  if (*s < '0' || (base == 10 && *s > '9')) return false;
  char *e;
  errno = 0;
  unsigned long long v = strtoull(s, &e, base);
  if (errno != 0 || e == s) return false;
  *out = v;
  *end = e;
  return true;
}

/* Parses the text of a record (len bytes, changed in place). */
static bool parse(const qp_hooks *h, char *text, size_t len, qp_harvest_rec *r, char *why,
                  size_t whylen) {
#define BAD(...)                         \
  do {                                   \
    snprintf(why, whylen, __VA_ARGS__);  \
    return false;                        \
  } while (0)
  char *end = text + len, *p = text;
  /* the check line first: the last line, over every byte before it */
  if (len < 2 || text[len - 1] != '\n') BAD("it does not end with a whole line");
  char *last = end - 1;
  while (last > text && last[-1] != '\n') last--;
  uint64_t want;
  const char *e;
  if (strncmp(last, "check ", 6) != 0 || !parse_u64(last + 6, 16, &want, &e) || *e != '\n' ||
      e - (last + 6) != 16)
    BAD("no check line at its end");
  if (XXH3_64bits(text, (size_t)(last - text)) != want)
    BAD("its check does not match its contents");
  end = last;
  char *line = next_line(&p, end);
  if (line == NULL || strcmp(line, REC_MAGIC) != 0) BAD("not a qprof harvest record");
  line = next_line(&p, end);
  uint64_t v;
  if (line == NULL || strncmp(line, "xid ", 4) != 0 || !parse_u64(line + 4, 10, &v, &e) ||
      *e != '\0' || v == 0 || v > INT64_MAX)
    BAD("bad xid line");
  r->xid = (int64_t)v;
  line = next_line(&p, end);
  if (line == NULL || strncmp(line, "store ", 6) != 0 || strlen(line + 6) == 0 ||
      strlen(line + 6) >= sizeof r->store || strchr(line + 6, ' ') != NULL)
    BAD("bad store line");
  snprintf(r->store, sizeof r->store, "%s", line + 6);
  while ((line = next_line(&p, end)) != NULL) {
    qp_rec_kind kind;
    if (strncmp(line, "done ", 5) == 0) kind = QP_REC_DONE;
    else if (strncmp(line, "gone ", 5) == 0) kind = QP_REC_GONE;
    else BAD("line %zu: not a segment line", r->n + 4);
    const char *hex = line + 5, *sp = strchr(hex, ' ');
    char name[400];
    if (sp == NULL || !name_from_hex(hex, (size_t)(sp - hex), name, sizeof name))
      BAD("line %zu: bad segment name", r->n + 4);
    uint64_t ino = 0, slen = 0, hash = 0;
    bool ok = parse_u64(sp + 1, 10, &ino, &e);
    if (ok && kind == QP_REC_DONE)
      ok = *e == ' ' && parse_u64(e + 1, 10, &slen, &e) && *e == ' ' &&
           parse_u64(e + 1, 16, &hash, &e) && slen >= QP_SEG_HEADER_SIZE &&
           slen <= QP_SEG_MAX_SIZE;
    if (!ok || *e != '\0') BAD("line %zu: bad segment fields", r->n + 4);
    if (r->n >= REC_MAX_SEGS) BAD("more than %u segments", REC_MAX_SEGS);
    if (!qp__rec_add(h, r, name, ino, kind, slen, hash)) BAD("out of memory");
  }
  if (p != end) BAD("a line without its end");
  return true;
#undef BAD
}

qp_status qp__rec_read(const qp_hooks *h, int dirfd, qp_harvest_rec *r, bool *found, char *msg,
                       size_t msglen) {
  memset(r, 0, sizeof *r);
  *found = false;
  int fd = openat(dirfd, QP_REC_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0 && errno == ENOENT) return QP_OK;
  *found = true;
  if (fd < 0) return qp__errbuf_set(msg, msglen, QP_IO, "%s: %s", QP_REC_NAME, strerror(errno));
  struct stat st;
  char why[256] = "";
  if (fstat(fd, &st) != 0) snprintf(why, sizeof why, "%s", strerror(errno));
  else if (!S_ISREG(st.st_mode)) snprintf(why, sizeof why, "not a regular file");
  else if (st.st_uid != geteuid() || (st.st_mode & 077) != 0)
    snprintf(why, sizeof why, "owned by uid %u mode %04o; only uid %u, mode 0600 is read",
             (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777), (unsigned)geteuid());
  else if (st.st_size <= 0 || (uint64_t)st.st_size > REC_MAX_BYTES)
    snprintf(why, sizeof why, "size %lld out of range", (long long)st.st_size);
  char *text = NULL;
  if (why[0] == '\0') {
    text = qp__malloc(h, (size_t)st.st_size + 1);
    if (text == NULL) snprintf(why, sizeof why, "out of memory");
    else if (pread(fd, text, (size_t)st.st_size, 0) != st.st_size)
      snprintf(why, sizeof why, "cannot be read whole");
  }
  close(fd);
  if (why[0] == '\0') {
    text[st.st_size] = '\0';
    if (!parse(h, text, (size_t)st.st_size, r, why, sizeof why)) qp__rec_clear(h, r);
  }
  qp__free(h, text);
  if (why[0] != '\0') return qp__errbuf_set(msg, msglen, QP_SYNTAX, "%s is damaged: %s", QP_REC_NAME, why);
  return QP_OK;
}

/* Whether file `name` holds exactly `len` bytes hashing to `hash`. */
static bool file_is(const qp_hooks *h, int dirfd, const char *name, uint64_t len,
                    uint64_t hash) {
  int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == len;
  uint8_t *b = ok ? qp__malloc(h, (size_t)len) : NULL;
  ok = b != NULL && pread(fd, b, (size_t)len, 0) == (ssize_t)len &&
       XXH3_64bits(b, (size_t)len) == hash;
  qp__free(h, b);
  close(fd);
  return ok;
}

qp_status qp__rec_apply(const qp_hooks *h, int dirfd, const qp_harvest_rec *r, bool committed,
                        bool verify, char *msg, size_t msglen) {
  char pend[512], done[512];
  for (size_t i = 0; i < r->n; i++) {
    const qp_rec_seg *s = &r->segs[i];
    snprintf(pend, sizeof pend, ".%s.pend", s->name);
    snprintf(done, sizeof done, ".%s.done", s->name);
    if (!committed) {
      unlinkat(dirfd, pend, 0);
      continue;
    }
    if (s->kind == QP_REC_GONE) {
      struct stat st;
      if (fstatat(dirfd, s->name, &st, AT_SYMLINK_NOFOLLOW) == 0 && (uint64_t)st.st_ino == s->ino)
        unlinkat(dirfd, s->name, 0);
      unlinkat(dirfd, done, 0);
      unlinkat(dirfd, pend, 0);
      continue;
    }
    /* done: the .pend becomes the .done; gone already (a collector killed
     * while applying) when the .done is what the .pend was */
    if (verify && !file_is(h, dirfd, pend, s->len, s->hash)) {
      if (file_is(h, dirfd, done, s->len, s->hash)) continue;
      return qp__errbuf_set(msg, msglen, QP_SYNTAX,
                  "%s names %s, which is missing or is not what was written", QP_REC_NAME, pend);
    }
    if (renameat(dirfd, pend, dirfd, done) != 0)
      return qp__errbuf_set(msg, msglen, QP_IO, "renaming %s: %s", pend, strerror(errno));
  }
  /* the renames are on disk before the record that would redo them goes */
  if (committed && fsync(dirfd) != 0)
    return qp__errbuf_set(msg, msglen, QP_IO, "syncing the run directory: %s", strerror(errno));
  if (unlinkat(dirfd, QP_REC_NAME, 0) != 0 && errno != ENOENT)
    return qp__errbuf_set(msg, msglen, QP_IO, "removing %s: %s", QP_REC_NAME, strerror(errno));
  return QP_OK;
}
