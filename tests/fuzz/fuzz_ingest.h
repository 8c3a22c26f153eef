/*
 * The body of the three log reader targets (fuzz_ingest_stderr.c,
 * fuzz_ingest_csvlog.c, fuzz_ingest_jsonlog.c): the input is fed in two
 * pieces cut where its first byte says, with a prefix its second byte picks
 * (stderr) or the format given. Checks: never a crash or hang; a status is
 * OK, SYNTAX (the format cannot be told) or NOMEM; the profile holds exactly
 * the statements the reader says it recorded; the counts add up.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qprof/qprof.h"

static int fuzz_ingest(const uint8_t *data, size_t size, qp_log_format format) {
  static const char *const prefixes[] = {NULL, "%m [%p] %q%u@%d ", "%m [%p] %q%u@%d %a %h %e ",
                                         "%t:%r:%u@%d:[%p]:", "%n %u %d %a %-10p %c %l %e %x %v ",
                                         "%m %u%d%a "};
  if (size < 2) return 0;
  size_t cut = data[0] % (size - 1) + 1;
  const char *prefix = prefixes[data[1] % (sizeof prefixes / sizeof prefixes[0])];
  data += 2;
  size -= 2;
  cut = cut > size ? size : cut;
  qp_profile_options po = {.sample = true};
  qp_profile *p;
  if (qp_profile_new(&p, &po, NULL, 0) != QP_OK) abort();
  qp_ingest_options o;
  qp_ingest_options_init(&o);
  o.format = format;
  if (format == QP_LOG_STDERR) o.prefix = prefix;
  qp_ingest *in;
  char err[256];
  if (qp_ingest_new(&in, p, &o, err, sizeof err) != QP_OK) abort();
  qp_status rc = qp_ingest_feed(in, data, cut);
  if (rc == QP_OK) rc = qp_ingest_feed(in, data + cut, size - cut);
  if (rc == QP_OK) rc = qp_ingest_finish(in);
  if (rc != QP_OK && rc != QP_SYNTAX && rc != QP_NOMEM) abort();
  if (rc != QP_OK && qp_ingest_errmsg(in)[0] == '\0') abort();
  qp_ingest_stats st = {.size = sizeof st};
  if (qp_ingest_get_stats(in, &st) != QP_OK) abort();
  if (st.bytes != (rc == QP_OK ? size : st.bytes)) abort();
  if (qp_profile_recorded(p) != st.statements) abort();
  if (st.errors > st.statements || st.no_duration > st.statements) abort();
  if (st.unparsed > st.lines || (st.unparsed > 0 && st.first_unparsed_line == 0)) abort();
  if (st.first_unparsed_line > st.lines) abort();
  if (st.statements + st.plans + st.other > st.messages + st.statements) abort();
  qp_ingest_free(in);
  qp_profile_free(p);
  return 0;
}
