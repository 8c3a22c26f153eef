/*
 * Private to the LD_PRELOAD shim (libqprof_preload.so). Never installed.
 *
 * The shim is the only part of qprof with process-wide state: it lives in
 * someone else's process, where there is no handle to keep state in. It
 * is split in four files:
 *   shim_core.c    configuration, the profile it normalizes with, the
 *                  process's segment (lib/seg), fork handling, logging,
 *                  real-symbol lookup and the pointer maps that hold
 *                  per-connection and per-statement state
 *   shim_pq.c      the interposed libpq functions
 *   shim_sqlite.c  the interposed sqlite3 functions
 */
#ifndef QPROF_SHIM_INT_H
#define QPROF_SHIM_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "qprof/profile.h"
#include "qprof/sql.h"
#include "seg/seg_int.h"
#include "sql/memo.h"

/* The interposed functions are the only symbols the shim exports (the
 * version script exports.map says the same thing to the linker). */
#define SHIM_EXPORT __attribute__((visibility("default")))

/* Initial-exec TLS: the shim is loaded at start-up (LD_PRELOAD), so its
 * thread-locals live in the static TLS block and cost one load, with no call
 * to __tls_get_addr (which may allocate) on the hot path. */
#define SHIM_TLS __thread __attribute__((tls_model("initial-exec")))

/* Non-zero while this thread runs qprof's own code (recording): every
 * interposed function then passes straight through to the real one, and a
 * signal handler that runs a query meanwhile is not recorded (recording is
 * not reentrant). */
extern SHIM_TLS unsigned shim_t_inside;

/* ---- real symbols --------------------------------------------------------
 * The real function behind an interposed one, resolved on first use:
 * dlsym(RTLD_NEXT), and when that finds nothing because the library was
 * dlopen'ed after the shim, dlopen(soname, RTLD_NOLOAD) + dlsym. Racing
 * threads resolve the same address; the slot is atomic. NULL only if the
 * library is not loaded at all, which cannot happen for a function the
 * program just called through it. */
void *shim_real(_Atomic(void *) *slot, const char *name, const char *soname);

/* The same lookup for a function the library may not have (one of a later
 * version than the program's): its address or NULL, nothing logged, nothing
 * cached (the caller looks it up once, when the library is known to be
 * loaded). errno is preserved. */
void *shim_real_optional(const char *name, const char *soname);

/* Stand-ins returned when a real function cannot be found, so that nothing
 * ever calls a NULL pointer: they set errno to ENOSYS and return a failure
 * (NULL or 0, or SQLITE_MISUSE for sqlite3's int functions). They are called
 * through the real function's pointer type, which the x86-64 and AArch64
 * calling conventions make harmless for these integer/pointer returns. */
void *shim_stub_null(void);
int shim_stub_zero(void);
int shim_stub_misuse(void);
int shim_stub_minus1(void);

#define SHIM_REAL_DECL(lib, ret, name, params, stub)                                 \
  typedef ret(*name##_fn) params;                                                    \
  static _Atomic(void *) name##_slot;                                                \
  static inline name##_fn real_##name(void) {                                        \
    void *p = atomic_load_explicit(&name##_slot, memory_order_acquire);              \
    if (QP_UNLIKELY(p == NULL)) {                                                    \
      p = shim_real(&name##_slot, #name, lib);                                       \
      if (p == NULL) return (name##_fn)(void (*)(void))stub;                         \
    }                                                                                \
    return (name##_fn)p;                                                             \
  }

#define SHIM_SONAME_PQ "libpq.so.5"
#define SHIM_SONAME_SQLITE "libsqlite3.so.0"

/* What every recorded statement reads, on one cache line of its own:
 * written at start-up, when a segment is made, and after fork. */
typedef struct shim_hot {
  _Atomic int state;        /* SHIM_UNINIT, SHIM_READY, SHIM_DISABLED */
  bool sample;              /* QPROF_SAMPLE: only then do callers pass ev->sql */
  bool pipeline_flush;      /* QPROF_PIPELINE_FLUSH: a flush request after each pipelined send */
  _Atomic(qp_seg *) seg;    /* this process's segment, or NULL */
  _Atomic uint64_t seg_gen; /* bumped for every segment this process creates */
  uint64_t slow_cut;        /* statements slower than this go to slow_log */
} shim_hot;
extern shim_hot shim_g_hot;
#define shim_state shim_g_hot.state
#define shim_g_sample shim_g_hot.sample
#define shim_g_pipeline_flush shim_g_hot.pipeline_flush

/* ---- activity ------------------------------------------------------------ */
enum { SHIM_UNINIT = 0, SHIM_READY = 1, SHIM_DISABLED = 2 };
bool shim_init_slow(void);

/* True when the shim records: configured without error and not disabled
 * since (a segment that cannot be created disables it). Initializes on
 * first call. */
static inline bool shim_active(void) {
  int s = atomic_load_explicit(&shim_state, memory_order_acquire);
  if (QP_LIKELY(s == SHIM_READY)) return true;
  if (s == SHIM_DISABLED) return false;
  return shim_init_slow();
}

/* Normalizes a statement with the shim's profile (qp_profile_normalize:
 * the user's QPROF_RULES, the profile's normalizer); valid once
 * shim_active() returned true. Thread-safe. */
qp_status shim_normalize(qp_backend backend, const char *sql, size_t len, char *out, size_t cap,
                         size_t *out_len, uint64_t *fingerprint);

/* A statement of fingerprint `fp` was just prepared and will be recorded
 * when it has run: its segment entry's memory starts loading now
 * (qp__seg_prefetch). Nothing when there is no segment yet. */
void shim_prefetch(qp_backend backend, uint64_t fp);

/* This thread's QP_NORMALIZED_MAX-byte buffer for normalizing into,
 * allocated on the thread's first use and freed when it exits; NULL when
 * it cannot be had (then the statement goes unrecorded, as on any failed
 * allocation). Not reentrant: the caller is done with it before it calls
 * anything that might normalize again. */
char *shim_scratch(void);

/* True when `path` (absolute) is the store named by QPROF_STORE: the
 * program's own queries on qprof's store are not recorded. */
bool shim_is_store(const char *path);

/* The segment entry a statement last recorded into, kept by callers that
 * have per-statement state (a prepared statement): the next execution in
 * the same time bucket skips the lookup. Its bounds are on the shim's
 * monotonic clock (shim_now_ns), so that a hit reads no wall clock: the wall
 * time of an execution is its end plus wall_off, the difference of the two
 * clocks when the entry was looked up (a step of the wall clock shows from
 * the next bucket on, at most QPROF_BUCKET_S later). Zero-initialized means
 * empty. */
typedef struct shim_entry_cache {
  uint64_t gen;              /* segment generation it belongs to */
  uint64_t fp;               /* the entry's fingerprint (a cache that statements share, as a
                              * connection's simple queries do, holds the last one's) */
  uint64_t lo_ns, span_ns;   /* the bucket: [lo_ns, lo_ns + span_ns) on shim_now_ns */
  int64_t wall_off;          /* wall clock - shim_now_ns, ns */
  qp_seg_entry *e;
} shim_entry_cache;


/* Says once that the segment is full (out of line). */
void shim_full(void);

/* Whether `c` holds this segment's (generation `gen`) entry of fingerprint
 * `fp` for the bucket of `end_ns`: the one test of a cache hit. */
static inline bool shim_cache_holds(const shim_entry_cache *c, uint64_t gen, uint64_t fp,
                                    uint64_t end_ns) {
  return c->e != NULL && c->gen == gen && c->fp == fp && end_ns - c->lo_ns < c->span_ns;
}

/* The fast path of shim_record_cached: records one execution that
 * succeeded, of `duration_ns` ending at `end_ns` (shim_now_ns), into the
 * entry `c` holds, when it is still this segment's entry for the bucket of
 * `end_ns`, and nothing else is wanted of the statement (no sample, not a
 * slow one). False when it did not record: the caller goes the slow way. */
static inline bool shim_record_hit(shim_entry_cache *c, uint64_t end_ns, uint64_t duration_ns,
                                   int64_t rows) {
  qp_seg *seg = atomic_load_explicit(&shim_g_hot.seg, memory_order_acquire);
  if (QP_UNLIKELY(seg == NULL ||
                  !shim_cache_holds(c, atomic_load_explicit(&shim_g_hot.seg_gen, memory_order_relaxed),
                                    c->fp, end_ns) ||
                  duration_ns > shim_g_hot.slow_cut || shim_g_hot.sample))
    return false;
  if (QP_UNLIKELY(qp__seg_add(seg, c->e, duration_ns, rows, NULL, (int64_t)end_ns + c->wall_off) ==
                  NULL))
    shim_full();
  return true;
}

/* Writes the segment key of a statement into `out` (QP_SEG_KEY_MAX + 1
 * bytes): "db\0user\0application\0", each part cut at its bound, the
 * application the program's name when `app` is NULL or "" (docs/shim.md,
 * "Segments"). Returns its length without the final NUL. No allocation, no
 * system call. */
size_t shim_key(char *out, const char *db, const char *user, const char *app);

/* Records one event, as shim_record, with ev->database the key (shim_key,
 * db_len its length), an entry cache (NULL: none) and a statement memo
 * (sql/memo.h; NULL: none). An event without its normalized text is
 * normalized, unless `memo` has its fingerprint and `cache` the entry of
 * that fingerprint (and no sample or slow-query line wants the text); the
 * memo is then set to it. ev->sql is read for that and for a sample.
 * `end_ns` is when it ended (shim_now_ns), 0 for now. */
void shim_record_cached(const qp_query_event *ev, size_t db_len, shim_entry_cache *cache,
                        qp_sql_memo *memo, uint64_t end_ns);

/* Records one event into this process's segment (called with shim_t_inside
 * set); creates the segment on the first event of a process. The key is
 * made of ev->database, ev->user and ev->application (shim_key). */
void shim_record(const qp_query_event *ev);

/* Diagnostics to QPROF_LOG; nothing when it is unset. errno is preserved. */
void shim_log(qp_log_level level, const char *fmt, ...) QP_PRINTF(2, 3);
bool shim_log_enabled(void);

static inline uint64_t shim_now_ns(void) { return qp__now_ns(); }

/* ---- pointer maps ----------------------------------------------------------
 * key (a PGconn *, sqlite3 *, sqlite3_stmt *) -> value (a malloc'd state
 * struct). Sharded, each shard under its own mutex, so threads working on
 * different objects rarely meet. A value is used, outside the lock, only by
 * the thread that uses its key object (libpq and SQLite both require that a
 * connection or statement is used by one thread at a time). */
#define SHIM_MAP_SHARDS 64
typedef struct shim_map_slot {
  const void *key;
  void *value;
} shim_map_slot;
typedef struct shim_map_shard {
  pthread_mutex_t mu;
  shim_map_slot *slots;
  size_t cap, len;
} shim_map_shard;
typedef struct shim_map {
  shim_map_shard shards[SHIM_MAP_SHARDS];
} shim_map;

/* The maps of shim_pq.c and shim_sqlite.c, registered so that fork handling
 * can hold every shard lock across fork(). */
extern shim_map shim_pq_conns, shim_sq_dbs, shim_sq_stmts;

void *shim_map_get(shim_map *m, const void *key);
/* Inserts or replaces; returns the value replaced (caller frees) or NULL.
 * On out of memory the value is not stored and *stored is false. */
void *shim_map_put(shim_map *m, const void *key, void *value, bool *stored);
/* Removes and returns the value (caller frees), or NULL. */
void *shim_map_take(shim_map *m, const void *key);

/* Name of an SQLite (extended) result code, "SQLITE_CONSTRAINT_UNIQUE". */
const char *shim_sqlite_code_name(int code);

#endif
