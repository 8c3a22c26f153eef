/*
 * Shared by `qprof report` and `qprof diff`: loading the per-query summaries
 * of a store window, filtering them, and formatting numbers, JSON and CSV.
 */
#ifndef QPROF_REPORT_COMMON_H
#define QPROF_REPORT_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "qprof/qprof.h"

/* One query's summary, owned (strings copied). */
typedef struct rq {
  qp_query_summary s;
  char fp[QP_FINGERPRINT_HEX_SIZE];
  double share; /* of the total time of the queries shown (after filters) */
} rq;

typedef struct rq_set {
  char *location; /* the store, with any password removed */
  rq *v;
  size_t n, cap;
  uint64_t calls, errors;
  double total_ns;
} rq_set;

/* The store path: --store, else $QPROF_STORE, else ./qprof.db. */
const char *rq_store_path(const char *opt);

/* Parses a --since/--until value; false with a message on stderr naming the
 * option. */
bool rq_parse_time(const char *verb, const char *opt, const char *text, int64_t *out);

/* Loads the summaries of [since, until) from the store at `path`. On failure
 * prints "qprof VERB: message" and returns false. */
bool rq_load(const char *verb, const char *path, int64_t since, int64_t until, rq_set *out);
void rq_set_free(rq_set *set);

typedef struct rq_filter {
  void *match, *exclude; /* pcre2_code */
  uint64_t min_calls;
} rq_filter;

/* Compiles --match/--exclude (either may be NULL). On a bad pattern prints
 * the pattern and offset and returns QP_EXIT_USAGE; else QP_EXIT_OK. */
int rq_filter_init(const char *verb, rq_filter *f, const char *match, const char *exclude,
                   uint64_t min_calls);
bool rq_filter_pass(const rq_filter *f, const qp_query_summary *s);
void rq_filter_free(rq_filter *f);
/* Keeps the entries that pass; recomputes totals and shares. */
void rq_set_filter(rq_set *set, const rq_filter *f);

/* Milliseconds rounded to microseconds, as JSON and CSV show them. */
double rq_ms(double ns);
/* Human duration into buf: "850us", "12.3ms", "4.56s", "3m12s". */
const char *rq_dur(double ns, char *buf, size_t len);
/* "12,345,678". */
const char *rq_count(uint64_t n, char *buf, size_t len);
/* ISO 8601 UTC. */
const char *rq_iso(int64_t ns, char *buf, size_t len);
/* Writes one CSV field (RFC 4180 quoting when needed). */
void rq_csv_field(FILE *f, const char *s);
/* {"CODE": count, ...} from "CODE:count,...". */
json_t *rq_codes_json(const char *codes);
/* Dumps `j` to stdout with a newline and frees it. */
void rq_json_print(json_t *j);
/* The report as one self-contained HTML page (report_html.c): `window` is
 * the window as text, `sort` the sort key's name; the first `shown` entries. */
void rq_print_html(FILE *f, const char *store, const char *window, const rq_set *set, size_t shown,
                   const char *sort);
/* Copies `s` into buf, turning control characters into spaces and cutting at
 * `width` display columns (UTF-8 aware) with "..." when cut; width 0: no cut. */
const char *rq_shorten(const char *s, size_t width, char *buf, size_t len);

#endif
