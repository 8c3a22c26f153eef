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

/* ---- activity ------------------------------------------------------------ */
enum { SHIM_UNINIT = 0, SHIM_READY = 1, SHIM_DISABLED = 2 };
extern _Atomic int shim_state;
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
 * the same time bucket skips the lookup. Zero-initialized means empty. */
typedef struct shim_entry_cache {
  uint64_t gen;            /* segment generation it belongs to */
  int64_t lo_ns, hi_ns;    /* the bucket, wall-clock ns */
  qp_seg_entry *e;
} shim_entry_cache;

/* Writes the segment key of a statement into `out` (QP_SEG_KEY_MAX + 1
 * bytes): "db\0user\0application\0", each part cut at its bound, the
 * application the program's name when `app` is NULL or "" (docs/shim.md,
 * "Segments"). Returns its length without the final NUL. No allocation, no
 * system call. */
size_t shim_key(char *out, const char *db, const char *user, const char *app);

/* Records one event, as shim_record, with ev->database the key (shim_key,
 * db_len its length) and an entry cache (NULL: none). ev->sql is only read
 * for a sample. */
void shim_record_cached(const qp_query_event *ev, size_t db_len, shim_entry_cache *cache);

/* True when QPROF_SAMPLE is on: only then do callers pass ev->sql. */
extern bool shim_g_sample;

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
