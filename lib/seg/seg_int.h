/*
 * The segment: one recording process's statistics in a file it maps
 * MAP_SHARED (docs/shim.md, "Segments"). The shim writes it (seg_write.c);
 * the collector reads it (harvest.c, public API in qprof/segment.h) and
 * trusts nothing in it.
 *
 * Layout, all offsets in bytes from the start of the file, little-endian
 * (the native order of the one machine both sides run on):
 *
 *   [0, 4096)                 qp_seg_header
 *   [slots_off, arena_off)    nslots uint32 slots (0: empty), an
 *                             open-addressing index, linear probing: an
 *                             entry's offset (a multiple of 8) ORed with
 *                             its tag, 3 bits of its key's hash
 *                             (qp__seg_tag; version 3), so that a probe
 *                             passes most other entries without reading
 *                             them
 *   [arena_off, size)         the arena, bump-allocated: entries, their
 *                             texts, histogram chunks, error-code records
 *
 * Everything the writer allocates is in zeroed file pages (a new sparse
 * file), so what it does not write reads as 0. An entry is filled, then
 * published by a release CAS of its offset into an index slot; its key
 * (fingerprint, bucket, backend, database, text) never changes after that.
 * Its counters only grow. They are updated under `seq`, a per-entry lock
 * taken only by threads of the writing process: odd while an update is in
 * progress (a seqlock for the reader, which never writes the segment).
 */
#ifndef QPROF_SEG_INT_H
#define QPROF_SEG_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/types.h>

#include "internal.h"
#include "qprof/profile.h"

#define QP_SEG_MAGIC "QPROFSG\x01"
/* 2: entries are keyed by "db\0user\0application" and the header names the
 * host (docs/shim.md, "Segments"); 3: index slots carry a tag in their low 3
 * bits (qp__seg_slot_off, qp__seg_tag); 4: entries carry a lane (the
 * writing thread's, qp_seg_entry.lane), part of the key and of its hash, and
 * are aligned to QP_SEG_ALIGN bytes. The harvester still reads versions 1
 * (database only), 2 (slots are bare offsets) and 3 (no lanes). */
#define QP_SEG_VERSION 4u
#define QP_SEG_VERSION_3 3u
#define QP_SEG_VERSION_2 2u
#define QP_SEG_VERSION_1 1u
#define QP_SEG_HEADER_SIZE 4096u
#define QP_SEG_MIN_SIZE (64u * 1024u)
#define QP_SEG_MAX_SIZE (4095ull * 1024u * 1024u)
/* The latency histogram of an entry: QP_SEG_INLINE buckets inside the entry,
 * from the bucket of its first execution minus QP_SEG_INLINE / 2 (a factor
 * of 1.9 in latency: a statement run once, or steadily, needs nothing
 * more), and chunks of QP_SEG_CHUNK buckets (aligned) in a list for the
 * rest. Indexes are those of lib/stats (qp__hist_index), 0..QP_HIST_MAX_INDEX. */
#define QP_SEG_INLINE 16u
#define QP_SEG_CHUNK 32u
#define QP_SEG_NCHUNKS 38u /* chunks per entry at most: 38 * 32 = 1216 > QP_HIST_MAX_INDEX */
#define QP_SEG_CODE_MAX 40u
#define QP_SEG_DB_MAX 4096u
#define QP_SEG_DIM_MAX 255u /* bytes of user, application and host (QP_DIM_MAX) */
/* The key blob of an entry: database, NUL, user, NUL, application. */
#define QP_SEG_KEY_MAX (QP_SEG_DB_MAX + 2u + 2u * QP_SEG_DIM_MAX)
#define QP_SEG_SAMPLE_MAX 65536u
#define QP_SEG_CODES_MAX 64u /* error-code records per entry */
#define QP_SEG_SUFFIX ".qpseg"
/* Threads of one process that run the same statement in the same bucket
 * record into entries of their own, one per lane (a thread's lane is fixed
 * at its first statement, threads taking lanes in turn): a counter written
 * by two CPUs in turn costs a cache-line transfer per statement, and a
 * statement's record writes 3 to 4 lines. The harvester merges the lanes'
 * entries of a key (they differ in nothing else). */
#define QP_SEG_LANES 8u
/* Entries and histogram chunks start on a cache line of their own, so that
 * no line holds the counters of two entries (two threads' entries would
 * share it otherwise). */
#define QP_SEG_ALIGN 64u

typedef struct qp_seg_header {
  char magic[8];
  uint32_t version;
  uint32_t header_size;
  uint64_t size;   /* of the whole file */
  uint32_t uid;    /* of the writer */
  int32_t pid;     /* of the writer */
  int64_t created_ns; /* wall clock */
  uint32_t nslots; /* power of two */
  uint32_t slots_off;
  uint32_t arena_off;
  uint32_t reserved0;
  _Atomic uint64_t used;    /* arena bytes allocated */
  _Atomic uint64_t dropped; /* statements not recorded: the segment was full */
  _Atomic uint64_t entries; /* entries published */
  /* Version 2: the host the writer records under (option host /
   * QPROF_HOST, else gethostname), not NUL-terminated. */
  uint32_t host_len; /* <= QP_SEG_DIM_MAX */
  uint32_t reserved1;
  char host[QP_SEG_DIM_MAX + 1];
} qp_seg_header;

_Static_assert(sizeof(qp_seg_header) <= QP_SEG_HEADER_SIZE, "the header fits its page");

typedef struct qp_seg_entry {
  _Atomic uint32_t seq;
  uint16_t backend;
  uint16_t lane; /* version 4: < QP_SEG_LANES (0 before) */
  uint64_t fingerprint;
  int64_t bucket; /* start, seconds since the epoch */
  uint32_t query_off, query_len;
  uint32_t db_off, db_len; /* the key blob "db\0user\0application" (version 1: db) */
  uint32_t codes_off; /* first qp_seg_code, or 0 */
  uint32_t sample_off, sample_len;
  uint32_t reserved1;
  uint64_t sample_ns;
  uint64_t calls, errors;
  int64_t rows;
  uint64_t total_ns, min_ns, max_ns;
  int64_t first_ns, last_ns;
  uint64_t sq_lo, sq_hi; /* sum of duration_ns^2, 128 bits */
  uint32_t inline_set;   /* 1 once inline_base is set (at the first execution) */
  int32_t inline_base;   /* index of inline[0] */
  uint32_t chunks_off;   /* first qp_seg_chunk, or 0 */
  uint32_t reserved2;
  uint64_t inline_counts[QP_SEG_INLINE];
} qp_seg_entry;

typedef struct qp_seg_chunk {
  uint32_t next; /* offset of the next chunk, or 0 */
  int32_t base;  /* index of counts[0], a multiple of QP_SEG_CHUNK */
  uint64_t counts[QP_SEG_CHUNK];
} qp_seg_chunk;

typedef struct qp_seg_code {
  uint32_t next; /* offset of the next record, or 0 */
  uint32_t len;
  uint64_t count;
  char code[QP_SEG_CODE_MAX];
} qp_seg_code;

/* ---- writer (the shim) ---------------------------------------------------- */
/* The file is given blocks (posix_fallocate) before any of it is written:
 * a write fault on a page without one, on a full file system (or a full
 * tmpfs), would be a SIGBUS in the program. The header, the index and the
 * first QP_SEG_FIRST bytes of the arena at creation, then QP_SEG_GROW bytes
 * at a time as it fills: one system call per megabyte of statistics, none per
 * statement. The first part is small because a short program (the sqlite3
 * CLI running one statement) pays for it at its start: mapping 1 MB of pages
 * costs about 0.5 ms, 64 KB (about 100 statements' entries) 0.04 ms. */
#define QP_SEG_GROW (1u << 20)
#define QP_SEG_FIRST (64u * 1024u)
typedef struct qp_seg {
  void *base;
  size_t size;
  int fd;
  int64_t bucket_s;
  _Atomic uint64_t backed; /* bytes from the start known to have blocks */
  _Atomic bool full;       /* giving it blocks failed: record nothing new */
  /* The key blob written last (length << 32 | offset), shared by the next
   * entries of the same key: a connection's statements all have the same
   * database, user and application, so only the first carries them. */
  _Atomic uint64_t last_key;
  pthread_mutex_t grow_mu;
  dev_t dev;
  ino_t ino;
  char path[4352];
} qp_seg;

/* Creates `path` (O_EXCL, 0600) of `size` bytes (rounded to pages, clamped
 * to QP_SEG_MIN_SIZE..QP_SEG_MAX_SIZE), maps it MAP_SHARED, writes the
 * header and takes a POSIX write lock on its first byte, which tells the
 * collector this process is alive (released by the kernel when it ends, and
 * not inherited by fork()). On error returns false with errno set and
 * nothing left behind. */
bool qp__seg_create(qp_seg *seg, const char *path, size_t size, int64_t bucket_s,
                    const char *host);

/* One statement. `norm` is the profile-normalized text (qp_profile_normalize);
 * `db` the key blob ("db\0user\0application", db_len bytes, at most
 * QP_SEG_KEY_MAX); `error` NULL or a code. Returns its entry, or NULL when
 * the segment is full (counted in the header as dropped). No allocation, no
 * system call; thread-safe among the writer's threads; not reentrant (a
 * signal handler must not record while its thread is inside). */
qp_seg_entry *qp__seg_record(qp_seg *seg, qp_backend backend, uint64_t fingerprint,
                             const char *norm, size_t norm_len, const char *db, size_t db_len,
                             uint64_t duration_ns, int64_t rows, const char *error,
                             int64_t wall_ns);
/* qp__seg_record into lane `lane` (taken modulo QP_SEG_LANES; qp__seg_record
 * is lane 0). */
qp_seg_entry *qp__seg_record_lane(qp_seg *seg, unsigned lane, qp_backend backend,
                                  uint64_t fingerprint, const char *norm, size_t norm_len,
                                  const char *db, size_t db_len, uint64_t duration_ns,
                                  int64_t rows, const char *error, int64_t wall_ns);

/* The two halves of qp__seg_record_lane, for callers that keep the entry of
 * a statement between executions (it never moves): the entry of a key in
 * lane `lane` (modulo QP_SEG_LANES; created when new; NULL when full,
 * counted as dropped), and recording one execution into an entry (NULL when
 * a histogram chunk or code record does not fit, counted as dropped). Any
 * thread may record into any lane (the entry's lock makes it safe); a
 * thread that keeps to its own lane writes no line another thread writes. */
qp_seg_entry *qp__seg_find(qp_seg *seg, unsigned lane, qp_backend backend, uint64_t fingerprint,
                           int64_t bucket, const char *norm, size_t norm_len, const char *db,
                           size_t db_len);
qp_seg_entry *qp__seg_add(qp_seg *seg, qp_seg_entry *e, uint64_t duration_ns, int64_t rows,
                          const char *error, int64_t wall_ns);

/* A hint that qp__seg_find will soon be asked for this key: the cache lines
 * of its index slot and of the arena's next free bytes (where a new entry
 * would go) start loading now, while the statement runs, instead of being
 * waited for at its end (each a miss to memory for a statement not seen
 * before). Reads nothing it relies on and writes nothing. */
void qp__seg_prefetch(qp_seg *seg, unsigned lane, qp_backend backend, uint64_t fingerprint,
                      int64_t bucket);

/* True when an execution of `duration_ns` would replace the sample of `e`
 * (it has none, or a faster one). */
bool qp__seg_wants_sample(const qp_seg_entry *e, uint64_t duration_ns);
/* Stores an already redacted sample for `e` (copied into the arena; the
 * older one's space is not reused). Best effort: nothing when full. */
void qp__seg_sample(qp_seg *seg, qp_seg_entry *e, const char *sample, size_t len,
                    uint64_t duration_ns);

/* The time bucket (seconds) of a wall-clock time. */
static inline int64_t qp__seg_bucket(int64_t bucket_s, int64_t wall_ns) {
  return qp__floor_div(qp__floor_div(wall_ns, 1000000000), bucket_s) * bucket_s;
}

/* The hash of a key; `lane` is 0 for segments before version 4. */
static inline uint64_t qp__seg_hash(uint64_t fp, int64_t bucket, unsigned backend, unsigned lane) {
  uint64_t h = fp ^ ((uint64_t)backend << 61) ^ ((uint64_t)lane * 0xc2b2ae3d27d4eb4full);
  h ^= (uint64_t)bucket * 0x9e3779b97f4a7c15ull;
  h ^= h >> 32;
  return h * 0xd6e8feb86659fd93ull;
}

/* The tag of a key in its index slot (version 3): the hash's top 3 bits
 * (the slot's position takes its low bits). */
#define QP_SEG_TAG_MASK 7u
static inline uint32_t qp__seg_tag(uint64_t hash) { return (uint32_t)(hash >> 61); }

/* The entry offset an index slot holds (0: empty), for a segment of `version`. */
static inline uint32_t qp__seg_slot_off(uint32_t slot, uint32_t version) {
  return version >= 3 ? slot & ~QP_SEG_TAG_MASK : slot;
}

/* ---- reader (harvest.c), for the fuzz target --------------------------------
 * Checks the image `img` (and `base`, NULL for none) as the harvester does,
 * then adds what img gained over base to `prof`. False with `why` when
 * either is refused. */
bool qp__seg_diff(qp_profile *prof, const uint8_t *img, size_t len, const uint8_t *base,
                  size_t base_len, uint64_t *statements, uint64_t *dropped, char *why,
                  size_t whylen);

/* ---- the harvest record (doubt.c) ---------------------------------------- *
 * What a harvest into a store whose COMMIT can be in doubt leaves in the run
 * directory until its outcome is known (format and rule at the top of
 * doubt.c; docs/shim.md). */
#define QP_REC_NAME ".doubt"

typedef enum qp_rec_kind {
  QP_REC_DONE, /* committed: `.<name>.pend` becomes `.<name>.done` */
  QP_REC_GONE  /* committed: the segment (of an ended process) and its records go */
} qp_rec_kind;

typedef struct qp_rec_seg {
  char *name;
  uint64_t ino;      /* of the segment, so that a new file under its name is left alone */
  qp_rec_kind kind;
  uint64_t len, hash; /* of the .pend (QP_REC_DONE): XXH3 */
} qp_rec_seg;

typedef struct qp_harvest_rec {
  int64_t xid;     /* the store's transaction; 0: none yet */
  char store[96];  /* the store's name (qp_precommit_fn) */
  qp_rec_seg *segs;
  size_t n, cap;
} qp_harvest_rec;

/* Appends a segment; false when out of memory. */
bool qp__rec_add(const qp_hooks *h, qp_harvest_rec *r, const char *name, uint64_t ino,
                 qp_rec_kind kind, uint64_t len, uint64_t hash);
/* Frees the segments and zeroes the record. */
void qp__rec_clear(const qp_hooks *h, qp_harvest_rec *r);
/* Writes `img` as `.<seg>.pend` (0600, fsynced, renamed into place) and
 * sets *hash. QP_IO with the message in msg. */
qp_status qp__rec_pend_write(int dirfd, const char *seg, const uint8_t *img, size_t len,
                             uint64_t *hash, char *msg, size_t msglen);
/* Writes the record as QP_REC_NAME (0600, fsynced, renamed, the directory
 * fsynced). */
qp_status qp__rec_write(const qp_hooks *h, int dirfd, const qp_harvest_rec *r, char *msg,
                        size_t msglen);
/* Reads QP_REC_NAME into *r (*found false when there is none). A record
 * that is not exactly what qp__rec_write writes (or not a regular file of
 * ours, mode 0600) is QP_SYNTAX with the reason; QP_IO, QP_NOMEM. */
qp_status qp__rec_read(const qp_hooks *h, int dirfd, qp_harvest_rec *r, bool *found, char *msg,
                       size_t msglen);
/* Applies the record as its transaction ended (committed or not), then
 * removes it; idempotent. With `verify` each .pend is checked against its
 * length and hash first (a record an earlier process left): one that is
 * not what was written is QP_SYNTAX, and nothing more is done. */
qp_status qp__rec_apply(const qp_hooks *h, int dirfd, const qp_harvest_rec *r, bool committed,
                        bool verify, char *msg, size_t msglen);

#endif
