/*
 * Shared by `qprof report` and `qprof diff`: opening a store and building
 * its report through the library's report model (qprof/report.h), and the
 * renderers' pieces: numbers, durations, safe text, CSV fields and a
 * streaming JSON writer. The CLI only renders; every number comes from the
 * model.
 */
#ifndef QPROF_REPORT_COMMON_H
#define QPROF_REPORT_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "qprof/qprof.h"

/* The store path: --store, else $QPROF_STORE, else ./qprof.db. */
const char *rq_store_path(const char *opt);

/* Parses a --since/--until value; false with a message on stderr naming the
 * option. */
bool rq_parse_time(const char *verb, const char *opt, const char *text, int64_t *out);

/* Checks the report options before anything is opened: QP_EXIT_OK, or
 * QP_EXIT_USAGE with the reason (a bad pattern names it and the offset). */
int rq_check(const char *verb, const qp_report_options *o);

/* Opens the store at `path` (read-only) and builds its report. On failure
 * prints "qprof VERB: message" and returns false. Free with rq_close. */
bool rq_open(const char *verb, const char *path, const qp_report_options *o, qp_store **store,
             qp_report **report);
void rq_close(qp_store *store, qp_report *report);

/* The key dimensions of a report (QP_REPORT_KEY bits) as text, in the
 * order database, user, application, host: "host, application"... "none"
 * for none. */
const char *rq_by_text(unsigned by, char *buf, size_t len);
/* What a report's rows are per: "per query and host, application", or
 * "per query only (--by none)". */
const char *rq_rows_text(unsigned by, char *buf, size_t len);
/* The dimension filters of a report as text ("host=web-1, user=/^app/");
 * "" when there are none. */
const char *rq_filters_text(const qp_report_totals *t, char *buf, size_t len);
/* Whether a report is keyed and filtered as one without --by and dimension
 * filters (its output is then exactly that of earlier versions). */
bool rq_plain_key(const qp_report_totals *t);
/* The value of dimension `by` of a summary (NULL when not in the key). */
const char *rq_dim(const qp_query_summary *s, qp_report_group_by by);
/* The filter given for dimension `by`, or NULL. */
const char *rq_dim_filter(const qp_report_totals *t, qp_report_group_by by);
/* Parses --by for `verb`: QP_EXIT_OK, or the usage error printed. */
int rq_parse_by(const char *verb, const char *text, unsigned *out);

/* The window of a report as text: "all recorded time", "since ...", ... */
void rq_window_text(const qp_report_totals *t, char *buf, size_t len);

/* Milliseconds at full precision (machine formats). */
double rq_ms_full(double ns);
/* An estimate in nanoseconds (a percentile, a standard deviation) to the
 * nanosecond: durations are measured in whole nanoseconds, so digits below
 * one carry nothing. */
uint64_t rq_ns(double ns);
/* Human duration into buf: "850us", "12.3ms", "4.56s", "3m12s". */
const char *rq_dur(double ns, char *buf, size_t len);
/* "12,345,678". */
const char *rq_count(uint64_t n, char *buf, size_t len);
/* ISO 8601 UTC. */
const char *rq_iso(int64_t ns, char *buf, size_t len);
struct jw;
/* Writes one CSV field (RFC 4180 quoting when needed) into a writer's buffer. */
void rq_csv_field(struct jw *w, const char *s);
/* Copies `s` into buf for a terminal, turning control characters into
 * spaces, and cutting at `width` display columns (UTF-8 aware) with "..."
 * when cut; width 0: no cut. */
const char *rq_shorten(const char *s, size_t width, char *buf, size_t len);

/* UTF-8: the code point at p and its length *n, or -1 (and *n 1) when the
 * bytes are not valid UTF-8. */
int32_t rq_utf8_next(const unsigned char *p, size_t *n);
/* C1 controls (U+0080..U+009F) and bidirectional overrides and isolates
 * (U+202A..U+202E, U+2066..U+2069): characters a terminal or a page would
 * obey rather than show. */
bool rq_is_unsafe(int32_t cp);

/* ---- JSON ---------------------------------------------------------------- */

#define RQ_JSON_DEPTH 16
/* A streaming writer: values are written as they come, two-space indented.
 * `key` is NULL inside arrays and for the root. */
typedef struct jw {
  FILE *f;
  int depth;
  unsigned count[RQ_JSON_DEPTH]; /* values written at each depth */
  size_t len;                    /* bytes in buf, written out when full and at the end */
  char buf[1 << 14];
} jw;
void jw_init(jw *w, FILE *f);
/* Writes out what is buffered (done when the root value is closed). */
void jw_flush(jw *w);
/* Raw output through the buffer, for other formats (CSV). */
void jw_write(jw *w, const void *p, size_t n);
void jw_puts(jw *w, const char *s);
void jw_putc(jw *w, char c);
void jw_putu64(jw *w, uint64_t v);
void jw_object(jw *w, const char *key);
void jw_object_end(jw *w);
void jw_array(jw *w, const char *key);
void jw_array_end(jw *w);
void jw_string(jw *w, const char *key, const char *s); /* NULL: null */
void jw_int(jw *w, const char *key, int64_t v);
void jw_uint(jw *w, const char *key, uint64_t v);
void jw_number(jw *w, const char *key, double v); /* NaN/inf: null */
void jw_null(jw *w, const char *key);
void jw_bool(jw *w, const char *key, bool v);
/* Nanoseconds as exact milliseconds ("5477.5"; JSON keeps ".0"). */
void jw_ms(jw *w, const char *key, uint64_t ns);
const char *rq_ns_ms(uint64_t ns, bool fraction, char *buf, size_t len);
/* `text` written as the value, unchanged (a number formatted elsewhere). */
void jw_raw(jw *w, const char *key, const char *text);
/* A JSON string literal of s; invalid UTF-8 becomes U+FFFD. Every C0
 * control, DEL, C1 control (U+0080..U+009F) and bidirectional override or
 * isolate (U+202A..U+202E, U+2066..U+2069) is written as an escape (\n or
 * \uXXXX), never raw, so that the output is safe to print; every other
 * character is written as it is. The one JSON string writer of the CLI. */
void rq_json_string(jw *w, const char *s);
/* The same for s[0..len), which may hold NUL bytes (written as \u0000);
 * s[len] must be readable (a NUL-terminated buffer). */
void rq_json_string_n(jw *w, const char *s, size_t len);
/* A number as JSON: the shortest form that reads back as v, with a
 * fraction or an exponent ("22350.0"). */
const char *rq_num(double v, char *buf, size_t len);
/* The same without the forced fraction ("22350"), for CSV. */
const char *rq_num_plain(double v, char *buf, size_t len);
/* v with `dec` decimals, exactly as printf's "%.*f" (without printf when
 * it can: 0 <= v < 1e12, dec <= 6, len >= 32). */
const char *rq_fixed(double v, int dec, char *buf, size_t len);
/* {"CODE": count, ...} from "CODE:count,...". */
void rq_json_codes(jw *w, const char *key, const char *codes);

/* Text from a store as HTML character data (report_html.c): markup
 * characters as entities; other controls and invalid UTF-8 as U+FFFD; C1
 * controls and bidirectional overrides as a visible <U+XXXX>. */
void rq_html_text(FILE *f, const char *s);

/* How many queries the page shows unless --limit says otherwise. */
#define RQ_HTML_DEFAULT_LIMIT 100

/* The report as one self-contained HTML page (report_page.c, docs/report-html.md):
 * `window` is the window as text; the first `shown` queries in detail; the
 * advice saved in `store` (qprof advise --save; NULL: none) beside them.
 * False when the model failed (out of memory, the store could not be read
 * for a series): qp_report_errmsg(r) says why. */
bool rq_print_html(FILE *f, qp_report *r, qp_store *store, const char *window, size_t shown);

#endif
