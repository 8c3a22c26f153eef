/*
 * The log reader's handle: bytes into lines, the format and prefix decided
 * from the first lines when not given, lines to the format's parser.
 */
#include <string.h>

#include "ingest/ingest_int.h"

#define DETECT_BYTES (64 * 1024)
#define DETECT_LINES 200

static const char *const format_names[] = {"auto", "stderr", "csvlog", "jsonlog"};

const char *qp_log_format_name(qp_log_format f) {
  return (unsigned)f < QP_ARRAY_LEN(format_names) ? format_names[f] : "?";
}

qp_status qp_log_format_parse(const char *name, qp_log_format *out) {
  if (name == NULL || out == NULL) return QP_INVALID;
  for (size_t i = 0; i < QP_ARRAY_LEN(format_names); i++)
    if (strcmp(name, format_names[i]) == 0) {
      *out = (qp_log_format)i;
      return QP_OK;
    }
  return QP_INVALID;
}

void qp_ingest_options_init(qp_ingest_options *o) {
  if (o == NULL) return;
  memset(o, 0, sizeof *o);
  o->size = sizeof *o;
}

#define QP_INGEST_OPTIONS_V1_SIZE (offsetof(qp_ingest_options, name) + sizeof(const char *))

static qp_status use_prefix(qp_ingest *in, const char *text) {
  qp__free(&in->hooks, in->prefix_text);
  in->prefix_text = qp__strdup(&in->hooks, text);
  if (in->prefix_text == NULL) return qp__err_set(&in->err, QP_NOMEM, "out of memory");
  qp_status rc = qp__prefix_compile(&in->prefix, &in->hooks, text, &in->err);
  if (rc != QP_OK) return rc;
  in->prefix_ready = true;
  in->st.prefix = in->prefix_text;
  return QP_OK;
}

qp_status qp_ingest_new(qp_ingest **out, qp_profile *prof, const qp_ingest_options *opts,
                        char *errbuf, size_t errlen) {
  if (out == NULL) return qp__errbuf_set(errbuf, errlen, QP_INVALID, "NULL out");
  *out = NULL;
  if (prof == NULL) return qp__errbuf_set(errbuf, errlen, QP_INVALID, "NULL profile");
  qp_ingest_options o;
  qp_ingest_options_init(&o);
  if (opts != NULL) {
    if (opts->size < QP_INGEST_OPTIONS_V1_SIZE)
      return qp__errbuf_set(errbuf, errlen, QP_INVALID,
                            "qp_ingest_options not initialized (size %zu)", opts->size);
    memcpy(&o, opts, opts->size < sizeof o ? opts->size : sizeof o);
  }
  if ((unsigned)o.format > QP_LOG_JSONLOG)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "unknown log format %d", (int)o.format);
  const qp_hooks *h = qp__profile_hooks(prof);
  qp_ingest *in = qp__calloc(h, 1, sizeof *in);
  if (in == NULL) return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  in->hooks = *h;
  in->prof = prof;
  in->format = o.format;
  in->since_ns = o.since_ns;
  in->until_ns = o.until_ns;
  in->sampling = qp__profile_sampling(prof);
  in->st.size = sizeof in->st;
  qp_buf *bufs[] = {&in->carry,     &in->f_user,    &in->f_db,       &in->f_app,
                    &in->f_host,    &in->f_message, &in->f_detail,   &in->f_statement,
                    &in->csv_rec,   &in->ev_db,     &in->ev_sample,  &in->ev_norm,
                    &in->ev_user,   &in->ev_app,    &in->ev_host,   &in->plan_text};
  for (size_t i = 0; i < QP_ARRAY_LEN(bufs); i++) qp__buf_init(bufs[i], &in->hooks);
  in->name = qp__strdup(&in->hooks, o.name ? o.name : "-");
  qp_status rc = in->name ? QP_OK : QP_NOMEM;
  if (rc == QP_OK && o.prefix != NULL && o.prefix[0] != '\0') rc = use_prefix(in, o.prefix);
  if (rc != QP_OK) {
    qp__errbuf_set(errbuf, errlen, rc, "%s", rc == QP_NOMEM ? "out of memory" : in->err.msg);
    qp_ingest_free(in);
    return rc;
  }
  in->detecting = in->format == QP_LOG_AUTO || (in->format == QP_LOG_STDERR && !in->prefix_ready);
  in->st.format = in->format;
  *out = in;
  return QP_OK;
}

void qp_ingest_free(qp_ingest *in) {
  if (in == NULL) return;
  qp__ingest_events_free(in);
  qp_buf *bufs[] = {&in->carry,     &in->f_user,    &in->f_db,       &in->f_app,
                    &in->f_host,    &in->f_message, &in->f_detail,   &in->f_statement,
                    &in->csv_rec,   &in->ev_db,     &in->ev_sample,  &in->ev_norm,
                    &in->ev_user,   &in->ev_app,    &in->ev_host,   &in->plan_text};
  for (size_t i = 0; i < QP_ARRAY_LEN(bufs); i++) qp__buf_free(bufs[i]);
  qp__prefix_free(&in->prefix, &in->hooks);
  qp__free(&in->hooks, in->prefix_text);
  qp__free(&in->hooks, in->first_unparsed);
  qp__free(&in->hooks, in->unknown_zone);
  qp__free(&in->hooks, in->name);
  qp__free(&in->hooks, in);
}

const char *qp_ingest_errmsg(const qp_ingest *in) { return in != NULL ? in->err.msg : ""; }

static bool one_line(qp_ingest *in, const char *p, size_t n) {
  in->line_no++;
  in->st.lines++;
  switch (in->format) {
  case QP_LOG_CSVLOG:
    return qp__csv_line(in, p, n);
  case QP_LOG_JSONLOG:
    return qp__json_line(in, p, n);
  default:
    return qp__stderr_line(in, p, n);
  }
}

/* Every complete line of p[0..n) (text offset `off`); the partial last one
 * goes to carry. */
static bool lines(qp_ingest *in, const char *p, size_t n, uint64_t off) {
  const char *start = p, *end = p + n;
  if (in->carry.len > 0) {
    const char *nl = memchr(p, '\n', n);
    if (nl == NULL) {
      if (!qp__buf_append(&in->carry, p, n)) goto oom;
      return true;
    }
    if (!qp__buf_append(&in->carry, p, (size_t)(nl - p))) goto oom;
    size_t cl = in->carry.len;
    in->carry.len = 0; /* the data stays valid until the next append */
    in->line_pos = off - (cl - (size_t)(nl - p));
    if (!one_line(in, in->carry.data, cl)) return false;
    p = nl + 1;
    in->pos = off + (uint64_t)(p - start);
  }
  for (;;) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL) break;
    in->line_pos = off + (uint64_t)(p - start);
    if (!one_line(in, p, (size_t)(nl - p))) return false;
    p = nl + 1;
    in->pos = off + (uint64_t)(p - start);
  }
  if (p < end && !qp__buf_append(&in->carry, p, (size_t)(end - p))) goto oom;
  return true;
oom:
  qp__err_set(&in->err, QP_NOMEM, "%s: out of memory", in->name);
  return false;
}

/* How many of the window's lines the prefix reads. */
static size_t prefix_score(qp_ingest *in, const char *text, const char *w, size_t n) {
  qp_prefix px;
  qp_err e;
  qp__err_clear(&e);
  if (qp__prefix_compile(&px, &in->hooks, text, &e) != QP_OK) return 0;
  qp_ts_cache tc;
  memset(&tc, 0, sizeof tc);
  size_t hits = 0;
  const char *p = w, *end = w + n;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
    if (len > 0 && p[0] != '\t') {
      qp_log_msg m;
      memset(&m, 0, sizeof m);
      size_t body;
      bool uz = false;
      if (qp__prefix_match(&px, &tc, p, len, &m, &body, &uz)) hits++;
    }
    if (nl == NULL) break;
    p = nl + 1;
  }
  qp__prefix_free(&px, &in->hooks);
  return hits;
}

static size_t first_line_len(const char *w, size_t n) {
  const char *nl = memchr(w, '\n', n);
  size_t k = nl ? (size_t)(nl - w) : n;
  return k < 200 ? k : 200;
}

/* Decides the format (and prefix) from the held window, then reads it. */
static qp_status decide(qp_ingest *in) {
  const char *w = in->carry.data;
  size_t n = in->carry.len;
  size_t i = 0;
  while (i < n && (w[i] == '\n' || w[i] == '\r' || w[i] == ' ')) i++;
  if (in->format == QP_LOG_AUTO) {
    int64_t ns;
    bool uz = false;
    qp_ts_cache tc;
    memset(&tc, 0, sizeof tc);
    size_t u = qp__ts_parse(&tc, w + i, n - i, &ns, &uz);
    if (i < n && w[i] == '{') in->format = QP_LOG_JSONLOG;
    else if (u > 0 && u < n - i && w[i + u] == ',') in->format = QP_LOG_CSVLOG;
    else in->format = QP_LOG_STDERR;
  }
  if (in->format == QP_LOG_STDERR && !in->prefix_ready) {
    /* the one that reads the most lines; of those, the longest: free text
     * (%d) may stretch over what a longer prefix reads as its own fields */
    size_t best = 0, at = 0, best_len = 0;
    for (size_t k = 0; qp__prefix_candidates[k] != NULL; k++) {
      size_t s = prefix_score(in, qp__prefix_candidates[k], w, n);
      size_t len = strlen(qp__prefix_candidates[k]);
      if (s > best || (s == best && s > 0 && len > best_len)) {
        best = s;
        at = k;
        best_len = len;
      }
    }
    if (best == 0) {
      size_t k = first_line_len(w + i, n - i);
      return qp__err_set(&in->err, QP_SYNTAX,
                         "%s: not a PostgreSQL log in a known format: no common log_line_prefix "
                         "matches its first lines (give the server's with --prefix); line 1: "
                         "'%.*s'",
                         in->name, (int)k, w + i);
    }
    qp_status rc = use_prefix(in, qp__prefix_candidates[at]);
    if (rc != QP_OK) return rc;
  }
  in->st.format = in->format;
  in->detecting = false;
  /* read the window as if it had just arrived */
  qp_buf win = in->carry;
  qp__buf_init(&in->carry, &in->hooks);
  bool ok = lines(in, win.data, win.len, in->base);
  qp__buf_free(&win);
  return ok ? QP_OK : in->err.code;
}

static size_t count_nl(const char *p, size_t n, size_t stop) {
  size_t k = 0;
  for (const char *e = p + n; p < e && k < stop; p++) {
    p = memchr(p, '\n', (size_t)(e - p));
    if (p == NULL) break;
    k++;
  }
  return k;
}

static qp_status fail(qp_ingest *in, qp_status rc) {
  in->failed = true;
  return rc;
}

qp_status qp_ingest_feed(qp_ingest *in, const void *data, size_t len) {
  if (in == NULL || (data == NULL && len > 0)) return QP_INVALID;
  if (in->failed || in->finished)
    return qp__err_set(&in->err, QP_STATE, "%s: the reader %s", in->name,
                       in->failed ? "failed before" : "is finished");
  qp__err_clear(&in->err);
  if (len == 0) return QP_OK;
  in->st.bytes += len;
  if (in->detecting) {
    if (!qp__buf_append(&in->carry, data, len))
      return fail(in, qp__err_set(&in->err, QP_NOMEM, "%s: out of memory", in->name));
    if (in->carry.len < DETECT_BYTES &&
        count_nl(in->carry.data, in->carry.len, DETECT_LINES) < DETECT_LINES)
      return QP_OK;
    qp_status rc = decide(in);
    return rc == QP_OK ? QP_OK : fail(in, rc);
  }
  if (!lines(in, data, len, in->base + in->st.bytes - len)) return fail(in, in->err.code);
  return QP_OK;
}

qp_status qp_ingest_finish(qp_ingest *in) {
  if (in == NULL) return QP_INVALID;
  if (in->failed || in->finished)
    return qp__err_set(&in->err, QP_STATE, "%s: the reader %s", in->name,
                       in->failed ? "failed before" : "is finished");
  qp__err_clear(&in->err);
  if (in->detecting) {
    if (in->carry.len == 0) {
      in->detecting = false;
    } else {
      qp_status rc = decide(in);
      if (rc != QP_OK) return fail(in, rc);
    }
  }
  if (in->carry.len > 0) {
    size_t cl = in->carry.len;
    in->carry.len = 0;
    in->line_pos = in->base + in->st.bytes - cl;
    if (!one_line(in, in->carry.data, cl)) return fail(in, in->err.code);
    in->pos = in->base + in->st.bytes;
  }
  bool ok = true;
  if (in->format == QP_LOG_CSVLOG) ok = qp__csv_end(in);
  else if (in->format == QP_LOG_STDERR) ok = qp__stderr_end(in);
  if (ok) ok = qp__ingest_drain(in);
  if (!ok) return fail(in, in->err.code);
  in->finished = true;
  return QP_OK;
}

#define QP_INGEST_STATS_V1_SIZE (offsetof(qp_ingest_stats, unknown_zone) + sizeof(const char *))

qp_status qp_ingest_get_stats(const qp_ingest *in, qp_ingest_stats *st) {
  if (in == NULL || st == NULL || st->size < QP_INGEST_STATS_V1_SIZE) return QP_INVALID;
  qp_ingest_stats s = in->st;
  s.first_unparsed = in->first_unparsed;
  s.unknown_zone = in->unknown_zone;
  s.prefix = in->prefix_ready ? in->prefix_text : NULL;
  size_t n = st->size < sizeof s ? st->size : sizeof s;
  s.size = st->size;
  memcpy(st, &s, n);
  return QP_OK;
}
