/*
 * qp_ingest_file: a log file (plain or gzip) or standard input into a
 * reader, flushed into a store with how far the file was read.
 *
 * A file is known by the hash of its first 4 KB of text (uncompressed), so
 * that a rotated copy (renamed, or compressed by logrotate) is recognized as
 * the file read before, and by device and inode while it keeps them. Its
 * position is stored in the transaction of the statistics read from it
 * (qp__store_flush_marked): both are there or neither. The position is
 * always the start of a line and never inside a message: a message open at
 * a flush is read again after a crash, not counted twice. A last line
 * without its newline is left for the next read (the server may be writing
 * it), except on standard input and in gzip files, which are complete.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zlib.h>

#include "ingest/ingest_int.h"
#include "store/store_int.h"

#define HEAD_BYTES 4096
#define CHUNK (1u << 20)
#define PROGRESS_EVERY (4u << 20)

void qp_ingest_file_options_init(qp_ingest_file_options *o) {
  if (o == NULL) return;
  memset(o, 0, sizeof *o);
  o->size = sizeof *o;
}

#define QP_INGEST_FILE_OPTIONS_V1_SIZE \
  (offsetof(qp_ingest_file_options, flush_bytes) + sizeof(uint64_t))

/* A source of text: a plain descriptor or a gzip stream over it. */
typedef struct src {
  int fd;
  gzFile gz;
  bool eof;
} src;

/* Reads up to n bytes; returns the count, 0 at the end, -1 on error. */
static long src_read(src *s, char *buf, size_t n, const char **why) {
  if (s->gz != NULL) {
    int r = gzread(s->gz, buf, (unsigned)n);
    if (r < 0) {
      int zerr = 0;
      *why = gzerror(s->gz, &zerr);
      return -1;
    }
    if (r == 0) {
      int zerr = 0;
      const char *m = gzerror(s->gz, &zerr);
      if (zerr != Z_OK && zerr != Z_STREAM_END) {
        *why = m;
        return -1;
      }
    }
    return r;
  }
  for (;;) {
    ssize_t r = read(s->fd, buf, n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) *why = strerror(errno);
    return (long)r;
  }
}

static qp_status io_fail(qp_ingest *in, const char *path, const char *what, const char *why) {
  in->failed = true;
  return qp__err_set(&in->err, QP_IO, "%s: %s: %s", path, what, why);
}

/* zlib's messages name the descriptor ("<fd:6>: unexpected end of file"):
 * the path is said already. */
static qp_status gz_fail(qp_ingest *in, const char *path, const char *why) {
  in->failed = true;
  const char *c = strncmp(why, "<fd:", 4) == 0 ? strstr(why, ": ") : NULL;
  return qp__err_set(&in->err, QP_SYNTAX, "%s: damaged gzip data: %s", path, c ? c + 2 : why);
}

/* Reads up to HEAD_BYTES of text from the start of the source into head. */
static long read_head(src *s, char *head, const char **why) {
  size_t got = 0;
  while (got < HEAD_BYTES) {
    long r = src_read(s, head + got, HEAD_BYTES - got, why);
    if (r < 0) return -1;
    if (r == 0) break;
    got += (size_t)r;
  }
  return (long)got;
}

/* Feeds text to the reader while keeping track of line ends: `pos` is the
 * offset of the end of the last complete line fed. */
typedef struct feeder {
  qp_ingest *in;
  qp_store *store;
  qp_file_mark mark;
  bool remember;
  uint64_t fed;      /* text offset of the next byte */
  uint64_t since_flush;
  uint64_t flush_bytes;
  uint64_t next_progress;
  const qp_ingest_file_options *o;
  uint64_t total;
} feeder;

static qp_status flush(feeder *f, uint64_t safe, uint64_t lines) {
  f->since_flush = 0;
  if (!f->remember) return qp_profile_flush(f->in->prof, f->store);
  f->mark.read_to = (int64_t)safe;
  f->mark.lines = (int64_t)lines;
  return qp__store_flush_marked(f->store, f->in->prof, &f->mark);
}

static qp_status store_fail(qp_ingest *in, qp_store *store, qp_status rc) {
  in->failed = true;
  const char *m = qp_store_errmsg(store);
  return qp__err_set(&in->err, rc, "%s: cannot write the store: %s", in->name,
                     m && *m ? m : qp_strerror(rc));
}

/* The offset from which a later read may start: the start of the open
 * message or record, else the end of the last complete line. */
static uint64_t safe_offset(const qp_ingest *in, uint64_t *lines) {
  uint64_t off = in->pos;
  *lines = in->line_no;
  if (in->msg_open && in->msg_pos < off) {
    off = in->msg_pos;
    *lines = in->msg.line > 0 ? in->msg.line - 1 : 0;
  }
  if (in->csv_rec.len > 0 && in->csv_pos < off) {
    off = in->csv_pos;
    *lines = in->csv_line > 0 ? in->csv_line - 1 : 0;
  }
  if (in->detecting) {
    off = in->base;
    *lines = in->line_no;
  }
  return off;
}

static qp_status feed(feeder *f, const char *p, size_t n) {
  qp_status rc = qp_ingest_feed(f->in, p, n);
  if (rc != QP_OK) return rc;
  f->fed += n;
  f->since_flush += n;
  if (f->o->progress != NULL && f->fed >= f->next_progress) {
    f->o->progress(f->o->progress_ud, f->fed, f->total);
    f->next_progress = f->fed + PROGRESS_EVERY;
  }
  if (f->since_flush >= f->flush_bytes) {
    uint64_t lines = 0;
    uint64_t safe = safe_offset(f->in, &lines);
    rc = flush(f, safe, lines);
    if (rc != QP_OK) return store_fail(f->in, f->store, rc);
  }
  return QP_OK;
}

static bool head_matches(const char *head, long head_len, const qp_file_mark *m) {
  if (m->head_len > head_len) return false;
  return XXH3_64bits(head, (size_t)m->head_len) == m->head_hash;
}

qp_status qp_ingest_file(qp_ingest *in, qp_store *store, const char *path,
                         const qp_ingest_file_options *opts, qp_ingest_file_result *res) {
  if (in == NULL || store == NULL || path == NULL) return QP_INVALID;
  qp_ingest_file_options o;
  qp_ingest_file_options_init(&o);
  if (opts != NULL) {
    if (opts->size < QP_INGEST_FILE_OPTIONS_V1_SIZE)
      return qp__err_set(&in->err, QP_INVALID, "qp_ingest_file_options not initialized");
    memcpy(&o, opts, opts->size < sizeof o ? opts->size : sizeof o);
  }
  qp_ingest_file_result r0;
  if (res == NULL) res = &r0;
  memset(res, 0, sizeof *res);
  qp__err_clear(&in->err);
  bool is_stdin = strcmp(path, "-") == 0;
  src s = {.fd = is_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC)};
  if (s.fd < 0) return io_fail(in, path, "cannot open", strerror(errno));
  struct stat sb;
  if (fstat(s.fd, &sb) != 0) {
    qp_status rc = io_fail(in, path, "cannot stat", strerror(errno));
    if (!is_stdin) close(s.fd);
    return rc;
  }
  if (S_ISDIR(sb.st_mode)) {
    close(s.fd);
    return io_fail(in, path, "cannot read", "is a directory");
  }
  char *buf = qp__malloc(&in->hooks, CHUNK + HEAD_BYTES);
  if (buf == NULL) {
    if (!is_stdin) close(s.fd);
    in->failed = true;
    return qp__err_set(&in->err, QP_NOMEM, "out of memory");
  }
  const char *why = "";
  qp_status rc = QP_OK;
  /* gzip by its magic: two bytes read, then the stream starts over */
  unsigned char magic[2] = {0, 0};
  size_t mlen = 0;
  while (mlen < 2) {
    ssize_t k = read(s.fd, magic + mlen, 2 - mlen);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    mlen += (size_t)k;
  }
  bool gz = mlen == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  char *head = buf + CHUNK;
  long head_len = 0;
  bool seekable = !is_stdin && S_ISREG(sb.st_mode);
  if (gz) {
    if (seekable && lseek(s.fd, 0, SEEK_SET) == 0) {
      s.gz = gzdopen(s.fd, "rb");
    } else {
      /* a pipe: gzip after the two bytes already read is not supported */
      rc = io_fail(in, path, "cannot read", "gzip data on a pipe: decompress it first (zcat)");
      goto out;
    }
    if (s.gz == NULL) {
      rc = io_fail(in, path, "cannot read", "out of memory for gzip");
      goto out;
    }
    gzbuffer(s.gz, 1u << 18);
    res->gzip = true;
  } else if (seekable) {
    if (lseek(s.fd, 0, SEEK_SET) != 0) {
      rc = io_fail(in, path, "cannot seek", strerror(errno));
      goto out;
    }
  }
  feeder f = {.in = in, .store = store, .o = &o, .flush_bytes = o.flush_bytes ? o.flush_bytes : (256u << 20),
              .total = seekable ? (uint64_t)sb.st_size : 0, .remember = seekable};
  f.next_progress = PROGRESS_EVERY;
  if (is_stdin || !seekable) {
    /* not remembered: the two bytes read already are the start of the text */
    res->start = QP_INGEST_STDIN;
    if (mlen > 0 && (rc = feed(&f, (const char *)magic, mlen)) != QP_OK) goto out;
  } else {
    head_len = read_head(&s, head, &why);
    if (head_len < 0) {
      rc = gz ? gz_fail(in, path, why) : io_fail(in, path, "cannot read", why);
      goto out;
    }
    uint64_t h4k = XXH3_64bits(head, (size_t)head_len);
    qp_file_mark found[QP_MARKS_MAX];
    size_t nfound = 0;
    rc = qp__store_marks_find(store, (int64_t)sb.st_dev, (int64_t)sb.st_ino, h4k, found,
                              QP_MARKS_MAX, &nfound);
    if (rc != QP_OK) {
      rc = store_fail(in, store, rc);
      goto out;
    }
    const qp_file_mark *prev = NULL;
    bool same_inode_other = false;
    for (size_t i = 0; i < nfound && prev == NULL; i++) {
      if (head_matches(head, head_len, &found[i])) prev = &found[i];
      else if (found[i].device == (int64_t)sb.st_dev && found[i].inode == (int64_t)sb.st_ino)
        same_inode_other = true;
    }
    f.mark = (qp_file_mark){.path = path, .device = (int64_t)sb.st_dev,
                            .inode = (int64_t)sb.st_ino, .size = (int64_t)sb.st_size,
                            .head_len = head_len, .head_hash = h4k, .gzip = gz};
    uint64_t from = 0, from_lines = 0;
    if (prev != NULL && o.rescan) {
      res->start = QP_INGEST_RESCAN;
      f.mark.id = prev->id;
    } else if (prev != NULL) {
      f.mark.id = prev->id;
      /* a plain file shorter than what was read is not the same file */
      if (!gz && (int64_t)sb.st_size < prev->read_to) {
        res->start = QP_INGEST_REPLACED;
      } else {
        from = (uint64_t)prev->read_to;
        from_lines = (uint64_t)prev->lines;
        res->start = QP_INGEST_RESUMED;
      }
    } else {
      res->start = same_inode_other ? QP_INGEST_REPLACED : QP_INGEST_NEW;
    }
    in->line_no = from_lines;
    in->base = in->pos = from;
    res->from = from;
    f.fed = from;
    /* the text from `from`: what the head holds of it, then the rest */
    if (from < (uint64_t)head_len) {
      if ((rc = feed(&f, head + from, (size_t)head_len - from)) != QP_OK) goto out;
    } else if (!gz) {
      if (lseek(s.fd, (off_t)from, SEEK_SET) != (off_t)from) {
        rc = io_fail(in, path, "cannot seek", strerror(errno));
        goto out;
      }
    } else {
      uint64_t skip = from - (uint64_t)head_len;
      while (skip > 0) {
        long k = src_read(&s, buf, skip < CHUNK ? skip : CHUNK, &why);
        if (k < 0) {
          rc = gz_fail(in, path, why);
          goto out;
        }
        if (k == 0) break;
        skip -= (uint64_t)k;
      }
    }
  }
  /* plain files: hold the bytes after the last newline (a line being written) */
  bool hold_tail = !gz && f.remember;
  size_t held = 0;
  qp_status read_rc = QP_OK;
  char read_msg[256] = "";
  for (;;) {
    long k = src_read(&s, buf + held, CHUNK - held, &why);
    if (k < 0) {
      read_rc = gz ? QP_SYNTAX : QP_IO;
      const char *c = strncmp(why, "<fd:", 4) == 0 ? strstr(why, ": ") : NULL;
      snprintf(read_msg, sizeof read_msg, "%s: %s after byte %llu of its text: %s", path,
               gz ? "damaged gzip data" : "cannot read", (unsigned long long)(f.fed + held),
               c ? c + 2 : why);
      break;
    }
    if (k == 0) break;
    size_t have = held + (size_t)k, upto = have;
    if (hold_tail) {
      while (upto > 0 && buf[upto - 1] != '\n') upto--;
      if (upto == 0 && have == CHUNK) upto = have; /* a line longer than a chunk */
    }
    if (upto > 0 && (rc = feed(&f, buf, upto)) != QP_OK) break;
    held = have - upto;
    memmove(buf, buf + upto, held);
  }
  if (rc == QP_OK && held > 0 && !hold_tail) {
    rc = feed(&f, buf, held);
    held = 0;
  }
  /* what was read before damaged data is kept */
  if (rc == QP_OK) rc = qp_ingest_finish(in);
  if (rc == QP_OK) {
    if (o.progress != NULL) o.progress(o.progress_ud, f.fed + held, f.total);
    res->to = f.fed;
    if (res->start == QP_INGEST_RESUMED && res->to == res->from) res->start = QP_INGEST_UNCHANGED;
    /* a file in which nothing is a log line is not remembered as read:
     * reading it again says so again */
    bool nothing = in->st.lines > 0 && in->st.messages == 0;
    if (nothing) f.remember = false;
    rc = flush(&f, f.fed, in->line_no);
    if (rc != QP_OK) rc = store_fail(in, store, rc);
    if (rc == QP_OK && nothing) {
      in->failed = true;
      rc = qp__err_set(&in->err, QP_SYNTAX,
                       "%s: nothing in it is a PostgreSQL log line (format %s%s%s%s); line %llu: "
                       "'%s'",
                       path, qp_log_format_name(in->format), in->prefix_ready ? ", prefix '" : "",
                       in->prefix_ready ? in->prefix_text : "", in->prefix_ready ? "'" : "",
                       (unsigned long long)in->st.first_unparsed_line,
                       in->first_unparsed ? in->first_unparsed : "");
    }
  }
  if (rc == QP_OK && read_rc != QP_OK) {
    in->failed = true;
    rc = qp__err_set(&in->err, read_rc, "%s", read_msg);
  }
out:
  if (s.gz != NULL) gzclose(s.gz);
  else if (!is_stdin) close(s.fd);
  qp__free(&in->hooks, buf);
  return rc;
}
