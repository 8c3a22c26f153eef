/*
 * csvlog (PostgreSQL 13-15: 23 to 26 columns) and jsonlog (PostgreSQL 15):
 * one record per message, with its parts (detail, statement) as fields.
 * A CSV record spans lines when a quoted field holds newlines: lines are
 * gathered until the quotes balance.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/ingest_int.h"

enum {
  CSV_TIME = 0, CSV_USER = 1, CSV_DB = 2, CSV_PID = 3, CSV_FROM = 4, CSV_SEVERITY = 11,
  CSV_STATE = 12, CSV_MESSAGE = 13, CSV_DETAIL = 14, CSV_QUERY = 19, CSV_APP = 22,
  CSV_MIN_FIELDS = 23, CSV_MAX_FIELDS = 32
};

static void zone_note(qp_ingest *in, bool unknown) {
  if (unknown && in->unknown_zone == NULL) in->unknown_zone = qp__strdup(&in->hooks, in->tc.unknown);
}

static int64_t to_pid(const char *p, size_t n) {
  int64_t v = 0;
  if (n == 0 || n > 18) return -1;
  for (size_t i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return -1;
    v = v * 10 + (p[i] - '0');
  }
  return v;
}

/* Host of "host:port" ("[local]" stays). */
static qp_span host_of(qp_span f) {
  size_t e = f.n;
  while (e > 0 && f.p[e - 1] >= '0' && f.p[e - 1] <= '9') e--;
  if (e > 0 && e < f.n && f.p[e - 1] == ':') return (qp_span){f.p, e - 1};
  return f;
}

static bool fill(qp_ingest *in, qp_log_msg *m, qp_span time, qp_span sev, qp_span state) {
  bool uz = false;
  if (time.n > 0 && qp__ts_parse(&in->tc, time.p, time.n, &m->time_ns, &uz) == 0) return false;
  zone_note(in, uz);
  m->severity = qp__sev_name(sev.p, sev.n);
  if (m->severity == QP_SEV_NONE) return false;
  if (state.n == 5) {
    memcpy(m->sqlstate, state.p, 5);
    m->sqlstate[5] = '\0';
  }
  return true;
}

/* Splits a record into fields, unquoting in place: every field's text ends
 * up within the record's buffer. False on a malformed record. */
static bool csv_split(char *r, size_t n, qp_span *f, size_t *nf) {
  size_t i = 0, k = 0;
  for (;;) {
    if (k == CSV_MAX_FIELDS) return false;
    if (i < n && r[i] == '"') {
      size_t o = i, j = i + 1;
      for (;;) {
        if (j >= n) return false;
        if (r[j] == '"') {
          if (j + 1 < n && r[j + 1] == '"') {
            r[o++] = '"';
            j += 2;
            continue;
          }
          j++;
          break;
        }
        r[o++] = r[j++];
      }
      f[k++] = (qp_span){r + i, o - i};
      i = j;
    } else {
      size_t s = i;
      while (i < n && r[i] != ',') {
        if (r[i] == '"') return false;
        i++;
      }
      f[k++] = (qp_span){r + s, i - s};
    }
    if (i == n) break;
    if (r[i] != ',') return false;
    i++;
  }
  *nf = k;
  return true;
}

static bool csv_record(qp_ingest *in) {
  qp_span f[CSV_MAX_FIELDS];
  size_t nf = 0;
  char *r = in->csv_rec.data;
  size_t n = in->csv_rec.len;
  in->csv_rec.len = 0;
  if (!csv_split(r, n, f, &nf) || nf < CSV_MIN_FIELDS) {
    qp__ingest_unparsed(in, r, n, in->csv_line);
    return true;
  }
  qp_log_msg m;
  memset(&m, 0, sizeof m);
  m.line = in->csv_line;
  m.pid = to_pid(f[CSV_PID].p, f[CSV_PID].n);
  m.user = f[CSV_USER];
  m.database = f[CSV_DB];
  m.host = host_of(f[CSV_FROM]);
  m.application = f[CSV_APP];
  m.message = f[CSV_MESSAGE];
  m.detail = f[CSV_DETAIL];
  m.statement = f[CSV_QUERY];
  if (!fill(in, &m, f[CSV_TIME], f[CSV_SEVERITY], f[CSV_STATE])) {
    qp__ingest_unparsed(in, r, n, in->csv_line);
    return true;
  }
  return qp__ingest_message(in, &m);
}

/* Whether the record so far has an open quoted field ("" keeps parity). */
static bool quotes_open(const char *p, size_t n) {
  size_t q = 0;
  for (const char *e = p + n; (p = memchr(p, '"', (size_t)(e - p))) != NULL; p++) q++;
  return q % 2 == 1;
}

bool qp__csv_line(qp_ingest *in, const char *line, size_t n) {
  if (in->csv_rec.len == 0) {
    in->csv_line = in->line_no;
    in->csv_pos = in->line_pos;
    if (n == 0) {
      qp__ingest_unparsed(in, line, n, in->line_no);
      return true;
    }
  } else if (!qp__buf_append(&in->csv_rec, "\n", 1)) {
    goto oom;
  }
  if (!qp__buf_append(&in->csv_rec, line, n)) goto oom;
  if (quotes_open(in->csv_rec.data, in->csv_rec.len)) {
    if (in->csv_rec.len > (64u << 20)) { /* an unbalanced quote: give the record up */
      qp__ingest_unparsed(in, in->csv_rec.data, in->csv_rec.len, in->csv_line);
      in->csv_rec.len = 0;
    }
    return true;
  }
  return csv_record(in);
oom:
  qp__err_set(&in->err, QP_NOMEM, "%s: out of memory", in->name);
  return false;
}

bool qp__csv_end(qp_ingest *in) {
  if (in->csv_rec.len == 0) return true;
  qp__ingest_unparsed(in, in->csv_rec.data, in->csv_rec.len, in->csv_line);
  in->csv_rec.len = 0;
  return true;
}

/* ---- jsonlog ---------------------------------------------------------------------- */

static qp_span jstr(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  if (!json_is_string(v)) return (qp_span){NULL, 0};
  return (qp_span){json_string_value(v), json_string_length(v)};
}

bool qp__json_line(qp_ingest *in, const char *line, size_t n) {
  if (n > 0 && line[n - 1] == '\r') n--;
  json_error_t je;
  json_t *o = n > 0 && line[0] == '{' ? json_loadb(line, n, JSON_ALLOW_NUL, &je) : NULL;
  if (!json_is_object(o)) {
    json_decref(o);
    qp__ingest_unparsed(in, line, n, in->line_no);
    return true;
  }
  qp_log_msg m;
  memset(&m, 0, sizeof m);
  m.line = in->line_no;
  json_t *pid = json_object_get(o, "pid");
  m.pid = json_is_integer(pid) ? (int64_t)json_integer_value(pid) : -1;
  m.user = jstr(o, "user");
  m.database = jstr(o, "dbname");
  m.host = jstr(o, "remote_host");
  m.application = jstr(o, "application_name");
  m.message = jstr(o, "message");
  m.detail = jstr(o, "detail");
  m.statement = jstr(o, "statement");
  bool ok = true;
  if (!fill(in, &m, jstr(o, "timestamp"), jstr(o, "error_severity"), jstr(o, "state_code")))
    qp__ingest_unparsed(in, line, n, in->line_no);
  else
    ok = qp__ingest_message(in, &m);
  json_decref(o);
  return ok;
}
