/*
 * Ingesting PostgreSQL server logs into a profile (`qprof ingest`).
 *
 * A log reader turns the statements a PostgreSQL server logged (with
 * log_min_duration_statement, log_statement + log_duration, and errors with
 * their STATEMENT) into qp_query_event's recorded through a profile, each at
 * its logged end time: the profile normalizes them, so their fingerprints,
 * buckets and percentiles are exactly those the shim or the pool would give
 * the same statements. Three formats: stderr with any log_line_prefix,
 * csvlog and jsonlog (PostgreSQL 15). docs/ingest.md says what is read and
 * how, line by line.
 *
 * Two levels:
 *  - qp_ingest_feed: bytes of one log in, events out; memory is bounded by
 *    the longest message and the number of server processes with a statement
 *    pending, not by the size of the log.
 *  - qp_ingest_file: a file (plain or gzip) or standard input, flushed into a
 *    store with, in the same transaction, how far the file was read, so that
 *    reading it again counts nothing twice.
 *
 * A reader is not thread-safe: use it from one thread at a time (its profile
 * may be shared with other threads as usual).
 */
#ifndef QPROF_INGEST_H
#define QPROF_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "profile.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qp_ingest qp_ingest;

typedef enum qp_log_format {
  QP_LOG_AUTO = 0,   /* decided from the first bytes (see qp_ingest_new) */
  QP_LOG_STDERR = 1, /* log_destination = stderr, with log_line_prefix */
  QP_LOG_CSVLOG = 2,
  QP_LOG_JSONLOG = 3
} qp_log_format;

/* "auto", "stderr", "csvlog", "jsonlog"; "?" for anything else. Static. */
QP_EXPORT const char *qp_log_format_name(qp_log_format f);
/* The format named `name` (one of the above) into *out. QP_INVALID when unknown. */
QP_EXPORT qp_status qp_log_format_parse(const char *name, qp_log_format *out);

typedef struct qp_ingest_options {
  size_t size;          /* set by qp_ingest_options_init */
  qp_log_format format; /* QP_LOG_AUTO by default */
  /* The server's log_line_prefix, for the stderr format (PostgreSQL escapes:
   * %m %t %n %p %u %d %a %h %r %e %c %l %s %v %x %i %b %P %Q %q %%, with an
   * optional padding such as %-10u). NULL or "": read from the first lines
   * when they start with one of the common prefixes (docs/ingest.md lists
   * them). Copied. */
  const char *prefix;
  /* Only statements that ended in [since_ns, until_ns) (wall clock, ns since
   * the epoch) are recorded; 0 means no bound. */
  int64_t since_ns, until_ns;
  /* The name of the input in messages ("FILE:LINE: ..."); copied; NULL: "-". */
  const char *name;
} qp_ingest_options;

/* Sets every field to its default (and `size`). */
QP_EXPORT void qp_ingest_options_init(qp_ingest_options *o);

/*
 * A reader of one log that records into `prof` (borrowed: it must outlive
 * the reader). `opts` (NULL: defaults) is read during the call only.
 * Errors (message in errbuf): QP_INVALID (NULL out or prof, an options size
 * below the first release's, an unknown format), QP_SYNTAX (a prefix that
 * is not a valid log_line_prefix, or gives no way to tell where a line's
 * message starts), QP_NOMEM. *out is NULL on error.
 */
QP_EXPORT qp_status qp_ingest_new(qp_ingest **out, qp_profile *prof, const qp_ingest_options *opts,
                                  char *errbuf, size_t errlen);

/* Frees the reader (what was fed and not finished is dropped). NULL is a no-op. */
QP_EXPORT void qp_ingest_free(qp_ingest *in);

/*
 * Feeds the next `len` bytes of the log (cut anywhere: a line may span
 * calls). Complete messages are recorded in the profile as they are read.
 * With QP_LOG_AUTO or no prefix, the first 64 KB (or fewer lines, up to the
 * first 200) are held until the format is decided.
 * Errors: QP_SYNTAX when the format or prefix cannot be told from the first
 * lines (the message names the input and quotes the first line; nothing is
 * recorded), QP_NOMEM (from the profile too), QP_INVALID (NULL in, or data
 * NULL with len > 0), QP_STATE after an error or after qp_ingest_finish.
 * Lines that are not log lines are not errors: they are counted (see
 * qp_ingest_stats).
 */
QP_EXPORT qp_status qp_ingest_feed(qp_ingest *in, const void *data, size_t len);

/*
 * The end of the log: reads a last line without a newline, ends the message
 * in progress and records the statements still waiting for a duration
 * (log_statement without log_duration: they count as calls of unknown,
 * zero, duration). Errors as qp_ingest_feed.
 */
QP_EXPORT qp_status qp_ingest_finish(qp_ingest *in);

/* The message of the last failed call on `in`; "" after a success. Owned by `in`. */
QP_EXPORT const char *qp_ingest_errmsg(const qp_ingest *in);

/* What a reader has read so far. Every count is of the whole input. */
typedef struct qp_ingest_stats {
  size_t size;            /* set by the caller to sizeof; the reader writes that many bytes */
  qp_log_format format;   /* the format in use (AUTO until decided) */
  uint64_t bytes;         /* bytes fed */
  uint64_t lines;         /* lines read (a CSV or JSON record counts its lines) */
  uint64_t messages;      /* log messages read (with their DETAIL, STATEMENT... parts) */
  uint64_t statements;    /* events recorded: executions, including errors */
  uint64_t errors;        /* of those, errors (ERROR with a STATEMENT) */
  uint64_t no_duration;   /* of those, logged without a duration (log_statement alone) */
  uint64_t outside;       /* statements outside [since, until): not recorded */
  uint64_t errors_without_statement; /* ERROR messages with no STATEMENT logged */
  uint64_t plans;         /* auto_explain plans read (text and JSON formats) */
  uint64_t other;         /* other messages (connections, checkpoints, ...) */
  uint64_t unparsed;      /* lines that are not part of any log message */
  uint64_t first_unparsed_line; /* 1-based line number of the first of those; 0 none */
  /* The first unparsed line (at most 200 bytes), or NULL; owned by the
   * reader, valid until its next call. */
  const char *first_unparsed;
  /* The log_line_prefix in use (stderr), or NULL; owned by the reader. */
  const char *prefix;
  /* A time zone abbreviation the reader did not know (times in it were read
   * as UTC), or NULL; owned by the reader. */
  const char *unknown_zone;
  /* Of `plans`: those recorded as calls (their statement's duration was not
   * logged on a line of its own: auto_explain without
   * log_min_duration_statement), and those whose Query Text could not be read
   * (YAML, XML; not recorded). The rest are the plans of statements logged
   * with their duration, which are counted once, from that line. */
  uint64_t plan_calls;
  uint64_t plans_unread;
} qp_ingest_stats;

/* Fills `st` (its `size` set by the caller; at most that many bytes are
 * written). QP_INVALID for NULL arguments or a size below the first
 * release's. */
QP_EXPORT qp_status qp_ingest_get_stats(const qp_ingest *in, qp_ingest_stats *st);

/* How qp_ingest_file started on a file. */
typedef enum qp_ingest_start {
  QP_INGEST_NEW = 0,       /* never read before: from the start */
  QP_INGEST_RESUMED = 1,   /* read before: from where that read stopped */
  QP_INGEST_UNCHANGED = 2, /* read before up to its end, nothing new */
  QP_INGEST_REPLACED = 3,  /* the file at that place is another one now, or was truncated: from the start */
  QP_INGEST_RESCAN = 4,    /* read again from the start because the caller asked (rescan) */
  QP_INGEST_STDIN = 5      /* standard input: read whole, nothing remembered */
} qp_ingest_start;

/* Progress callback: bytes of the file read so far and its size (0 when
 * unknown: standard input). Called at most every 4 MB. */
typedef void (*qp_ingest_progress_fn)(void *ud, uint64_t done, uint64_t total);

typedef struct qp_ingest_file_options {
  size_t size;          /* set by qp_ingest_file_options_init */
  bool rescan;          /* read from the start even if the store says it was read */
  qp_ingest_progress_fn progress; /* may be NULL */
  void *progress_ud;
  /* Flush the profile into the store every this many bytes of input (with
   * the position in the same transaction); 0 means 256 MB. */
  uint64_t flush_bytes;
} qp_ingest_file_options;

/* Sets every field to its default (and `size`). */
QP_EXPORT void qp_ingest_file_options_init(qp_ingest_file_options *o);

/* What qp_ingest_file did. */
typedef struct qp_ingest_file_result {
  qp_ingest_start start;
  bool gzip;            /* the file was gzip-compressed */
  uint64_t from, to;    /* byte offsets read (of the uncompressed text) */
} qp_ingest_file_result;

/*
 * Reads the file at `path` ("-": standard input) into the reader `in` (a new
 * reader for each file), and flushes the reader's profile into `store`
 * (opened with QP_STORE_WRITE) every flush_bytes and at the end. A
 * gzip-compressed file is recognized by its magic bytes. The store keeps, per
 * file, its device, inode, size, a hash of its first 4 KB and how far it was
 * read, written in the transaction of each flush; a file is known again by
 * the hash of its first 4 KB (a rotated, renamed or compressed copy too), and
 * reading resumes after what was read (whole messages only). A file whose
 * text no longer starts as it did, or is shorter than what was read, is read
 * from the start (QP_INGEST_REPLACED).
 * `opts` may be NULL (defaults); `res` may be NULL. Errors: QP_IO (the file;
 * the message names it), those of the store and of qp_ingest_feed,
 * QP_SYNTAX for damaged gzip data (what was read before it is recorded),
 * QP_INVALID.
 */
QP_EXPORT qp_status qp_ingest_file(qp_ingest *in, qp_store *store, const char *path,
                                   const qp_ingest_file_options *opts, qp_ingest_file_result *res);

#ifdef __cplusplus
}
#endif
#endif
