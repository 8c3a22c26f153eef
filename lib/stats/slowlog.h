/*
 * The slow-query log line, built in one place for every recorder (the pool,
 * the LD_PRELOAD shim) with one rule. Private to the library.
 *
 * The rule: a statement is slow when it ran longer than the threshold; a
 * slow statement is logged whether it succeeded or failed (a statement
 * cancelled by statement_timeout is the slowest of all), a failed one with
 * its error code. The text is the statement's normalized text under the
 * profile's rules (never its literals), cut to QP__SLOW_TEXT_MAX bytes, with
 * its fingerprint. Each recorder sends the line to its own log channel.
 */
#ifndef QPROF_SLOWLOG_H
#define QPROF_SLOWLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qprof/profile.h"

/* Normalized text shown in a slow-query line, at most. */
#define QP__SLOW_TEXT_MAX 500

/* Whether a statement of dur_ns is slow for a threshold of threshold_ns;
 * 0 turns the log off. */
static inline bool qp__slow_is(uint64_t dur_ns, uint64_t threshold_ns) {
  return threshold_ns > 0 && dur_ns > threshold_ns;
}

/*
 * Writes the slow-query line of `ev` into buf[0..cap) (always terminated):
 *   slow query: 12.345 ms (threshold 5.000 ms) fingerprint 0123456789abcdef
 *   rows 3[ error 57014] database app: select ...
 * When ev->normalized is NULL the text and fingerprint come from
 * qp_profile_normalize(prof, ...); `prof` is then required (a line without
 * one says "(not normalized)" rather than show the raw text's literals).
 * Returns the length written. Thread-safe.
 */
size_t qp__slow_line(const qp_profile *prof, const qp_query_event *ev, uint64_t threshold_ns,
                     char *buf, size_t cap);

#endif
