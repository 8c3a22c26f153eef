/*
 * Profiles: statistics per query fingerprint, recorded in memory by any
 * number of threads and flushed to a store (store.h).
 *
 * Every recording path (the pool, the LD_PRELOAD shim) reports one
 * qp_query_event per executed statement; the profile normalizes it, finds
 * its fingerprint and adds it to that fingerprint's statistics for the
 * current time bucket.
 */
#ifndef QPROF_PROFILE_H
#define QPROF_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "sql.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qp_profile qp_profile;
typedef struct qp_store qp_store;

typedef enum qp_backend { QP_BACKEND_POSTGRES = 0, QP_BACKEND_SQLITE = 1 } qp_backend;

/* "postgres" or "sqlite". Static. */
QP_EXPORT const char *qp_backend_name(qp_backend backend);

/* The `redact` entry that turns the default redaction set off. */
#define QP_REDACT_NO_DEFAULTS "-defaults"

typedef struct qp_profile_options {
  const qp_hooks *hooks;      /* copied; NULL for defaults */
  int64_t bucket_s;           /* width of a time bucket, 1..86400; 0 means 60 */
  const char *const *rules;   /* normalization rules (see qp_normalizer_new); borrowed */
  size_t nrules;
  const char *ignore;         /* PCRE2 pattern on normalized text: not recorded; NULL/"" none */
  /* Keep one sample statement (with literals) per fingerprint:
   * the slowest one seen, after redaction. Off by default. */
  bool sample;
  /* Redaction of samples: first the default set (card numbers that pass
   * the Luhn check, e-mail addresses, and the values compared with or
   * assigned to columns named like password, passwd, pwd, secret, token,
   * api_key, private_key or credential: each becomes '?'; exactly what is
   * and is not removed: docs/profiles.md), then these PATTERN=REPLACEMENT
   * rules (PCRE2; split at the last '=' not escaped with a backslash; the
   * replacement may use $1...), applied in order to every match. An entry
   * that is exactly QP_REDACT_NO_DEFAULTS ("-defaults") is not a rule: it
   * turns the default set off. A sample whose rule fails to apply is
   * replaced by a placeholder rather than stored unredacted. Borrowed for
   * the call. */
  const char *const *redact;
  size_t nredact;
} qp_profile_options;

/*
 * Creates an empty profile. `opts` may be NULL (all defaults); what it points
 * to is only read during the call. Errors: QP_PATTERN / QP_INVALID for a bad
 * rule or pattern (errbuf names it), QP_NOMEM. On error *out is NULL.
 */
QP_EXPORT qp_status qp_profile_new(qp_profile **out, const qp_profile_options *opts, char *errbuf,
                                   size_t errlen);

/* Frees the profile and whatever was not flushed; NULL is a no-op. */
QP_EXPORT void qp_profile_free(qp_profile *p);

/*
 * The profile is the one owner of fingerprints: it normalizes `sql` exactly
 * as qp_profile_record would (the profile's rules, the backend's dialect,
 * the normalizer version), into out[0..cap) with the same contract as
 * qp_normalize (cut at cap - 1 bytes, the fingerprint covering the whole
 * text). A caller that records the same statement many times (a prepared or
 * cached statement) normalizes it once here and passes the result in
 * qp_query_event.normalized; nothing else may fill that field.
 * Errors: QP_INVALID (NULL p, out, sql with len > 0, cap 0, unknown backend).
 * Thread-safe; the profile is only read.
 */
QP_EXPORT qp_status qp_profile_normalize(const qp_profile *p, qp_backend backend, const char *sql,
                                         size_t len, char *out, size_t cap, size_t *out_len,
                                         uint64_t *fingerprint);

typedef struct qp_query_event {
  /* sizeof(qp_query_event) of the caller's header, or 0 for this first
   * growable version's fields only: events built with = {0} or designated
   * initializers keep working as fields are appended (docs/api.md, "Structs
   * that grow"). */
  size_t size;
  qp_backend backend;
  const char *database;   /* database name or SQLite file path; NULL if unknown; borrowed */
  const char *sql;        /* raw statement text; borrowed for the call */
  size_t sql_len;
  /* When the caller already normalized the statement with
   * qp_profile_normalize on this same profile (a prepared statement is
   * normalized once), it passes the result here and the profile skips
   * normalizing; `sql` is then only used for the sample. Text from any other
   * normalizer would bypass the profile's rules: never pass it. */
  const char *normalized; /* NULL: normalize sql */
  size_t normalized_len;
  uint64_t fingerprint;   /* used only when normalized != NULL */
  uint64_t duration_ns;   /* monotonic-clock duration */
  int64_t rows;           /* rows returned or affected; -1 when unknown */
  /* NULL on success; else the SQLSTATE ("23505") or the SQLite extended
   * result code name ("SQLITE_CONSTRAINT_UNIQUE"); borrowed. */
  const char *error;
  /* Wall-clock end time (ns since the epoch); 0 means now. The event goes
   * into the bucket of this time, whatever the time now: a recorder of past
   * executions (the log reader, ingest.h) passes the time they ended. */
  int64_t end_wall_ns;
  /* Appended (read only when `size` covers it): the statement was answered
   * by a result cache (include/qprof/cache.h) without reaching the
   * database. It counts as a cache hit of its fingerprint, with
   * duration_ns the time the hit took; never as a call, so database
   * latencies (calls, total, histogram, percentiles) hold only statements
   * that ran. `rows` and `error` are ignored. */
  bool cache_hit;
  /* Appended (read only when `size` covers them): who ran the statement,
   * the dimensions a report can break down and filter by (qprof report
   * --by user,application,host). NULL or "" when unknown; borrowed for the
   * call. User, application and host are cut at 255 bytes. The pool and
   * the shim fill them: the PostgreSQL role (the OS user for SQLite),
   * application_name (else the program's name) and the machine's name
   * (qp_default_host); the log reader fills them from log_line_prefix. */
  const char *user;
  const char *application;
  const char *host;
} qp_query_event;

/*
 * The name this machine records under: the option `host` (QPROF_HOST in
 * the environment) when set and not empty, else gethostname(). Read once
 * and kept (a container that sets QPROF_HOST sets it before starting).
 * Static storage; never NULL (possibly "" when neither is known).
 * Thread-safe.
 */
QP_EXPORT const char *qp_default_host(void);

/*
 * The default application name of this process: its program name (the
 * last component of argv[0], as glibc keeps it). Static storage; never
 * NULL. Thread-safe.
 */
QP_EXPORT const char *qp_default_application(void);

/*
 * The OS user this process runs as (its effective uid's name, else the
 * uid in decimal): the user of SQLite statements. Static storage; never
 * NULL. Thread-safe.
 */
QP_EXPORT const char *qp_default_os_user(void);

/* The smallest non-zero qp_query_event.size qp_profile_record accepts. */
#define QP_QUERY_EVENT_MIN_SIZE (offsetof(qp_query_event, end_wall_ns) + sizeof(int64_t))

/*
 * Records one executed statement. Thread-safe; cheap on a hot fingerprint
 * (no allocation once the fingerprint has been seen in the current bucket,
 * except to widen its latency histogram for a latency outside the range seen
 * so far). The key is (fingerprint, time bucket of end_wall_ns, backend,
 * database, user, application, host); each distinct dimension value is
 * kept once per profile (interned), at most 4 MB of them: values beyond
 * that are recorded as "(other)". `ev` and what it points to are only read during the call.
 * Events whose normalized text matches the ignore pattern return QP_OK and
 * are not counted. Errors: QP_NOMEM (the event is dropped whole and counted
 * as lost), QP_INVALID (NULL profile or event, sql NULL without normalized,
 * unknown backend, a size neither 0 nor at least QP_QUERY_EVENT_MIN_SIZE).
 */
QP_EXPORT qp_status qp_profile_record(qp_profile *p, const qp_query_event *ev);

/*
 * Moves everything recorded so far into `store`, in one transaction, and
 * empties the profile. Recording may go on in other threads meanwhile: an
 * event is either in this flush or in a later one, never in both or none.
 * Flushes of one profile run one at a time. On error the statistics stay in
 * the profile for the next flush, at most 100,000 entries (time bucket x
 * query x dimensions): beyond, the entries of the oldest buckets are dropped
 * and their statements counted in qp_profile_lost (and logged at WARN). A
 * PostgreSQL store retries a transaction that failed on a serialization
 * failure or a deadlock, and reconnects a connection that broke. When the
 * connection broke after COMMIT was sent, the entries are held apart and the
 * next flush into the same store handle first asks the server whether that
 * transaction committed (never written twice, never lost; flushing into
 * another handle meanwhile counts them lost). `store` must be opened with QP_STORE_WRITE
 * and not be used by another thread during the call.
 * Errors: those of the store (qp_store_errmsg tells more), QP_NOMEM,
 * QP_INVALID (NULL argument; a read-only store).
 */
QP_EXPORT qp_status qp_profile_flush(qp_profile *p, qp_store *store);

/* Events recorded / lost since creation: lost are those dropped out of
 * memory, and those of entries dropped beyond the bound a failed flush
 * keeps (see qp_profile_flush). Thread-safe. */
QP_EXPORT uint64_t qp_profile_recorded(const qp_profile *p);
QP_EXPORT uint64_t qp_profile_lost(const qp_profile *p);

#ifdef __cplusplus
}
#endif
#endif
