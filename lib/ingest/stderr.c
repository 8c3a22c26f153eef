/*
 * The stderr format: "PREFIX SEVERITY:  message", the lines after the
 * first of a multi-line message starting with a tab (PostgreSQL writes
 * "\n\t" for each newline of a message), and the message's parts (DETAIL,
 * HINT, CONTEXT, STATEMENT, ...) on lines of their own with the same prefix,
 * written together with it. A message is complete when the next line that
 * is not one of its parts arrives, or at the end.
 */
#include <string.h>

#include "ingest/ingest_int.h"

static bool put(qp_ingest *in, qp_buf *b, const char *p, size_t n) {
  if (qp__buf_append(b, p, n)) return true;
  qp__err_set(&in->err, QP_NOMEM, "%s: out of memory", in->name);
  return false;
}

/* Copies a prefix field out of the line into its buffer. */
static bool keep(qp_ingest *in, qp_buf *b, qp_span *f) {
  b->len = 0;
  if (f->n == 0) return true;
  if (!put(in, b, f->p, f->n)) return false;
  f->p = b->data;
  return true;
}

static qp_span span_of(const qp_buf *b) { return (qp_span){b->data, b->len}; }

bool qp__stderr_end(qp_ingest *in) {
  if (!in->msg_open) return true;
  in->msg_open = false;
  in->msg.message = span_of(&in->f_message);
  in->msg.detail = span_of(&in->f_detail);
  in->msg.statement = span_of(&in->f_statement);
  return qp__ingest_message(in, &in->msg);
}

static qp_buf *part_buf(qp_ingest *in, qp_sev part) {
  switch (part) {
  case QP_SEV_DETAIL:
    return &in->f_detail;
  case QP_SEV_STATEMENT:
    return &in->f_statement;
  case QP_SEV_NONE:
    return &in->f_message;
  default:
    return NULL; /* parts nothing reads: HINT, CONTEXT, QUERY, LOCATION */
  }
}

bool qp__stderr_line(qp_ingest *in, const char *line, size_t n) {
  uint64_t line_no = in->line_no;
  if (n > 0 && line[n - 1] == '\r') n--;
  if (n > 0 && line[0] == '\t') {
    if (!in->msg_open) {
      qp__ingest_unparsed(in, line, n, line_no);
      return true;
    }
    qp_buf *b = part_buf(in, in->last_part);
    if (b == NULL) return true;
    return put(in, b, "\n", 1) && put(in, b, line + 1, n - 1);
  }
  qp_log_msg m;
  memset(&m, 0, sizeof m);
  m.pid = -1;
  size_t body = 0;
  bool unknown_zone = false;
  if (!qp__prefix_match(&in->prefix, &in->tc, line, n, &m, &body, &unknown_zone)) {
    qp__ingest_unparsed(in, line, n, line_no);
    return true;
  }
  if (unknown_zone && in->unknown_zone == NULL)
    in->unknown_zone = qp__strdup(&in->hooks, in->tc.unknown);
  if (m.severity >= QP_SEV_DETAIL) {
    /* a part: of the open message when it is the same process's */
    if (!in->msg_open || (in->prefix.has_pid && m.pid != in->msg.pid)) {
      qp__ingest_unparsed(in, line, n, line_no);
      return true;
    }
    in->last_part = m.severity;
    qp_buf *b = part_buf(in, m.severity);
    if (b == NULL) return true;
    b->len = 0;
    return put(in, b, line + body, n - body);
  }
  if (!qp__stderr_end(in)) return false;
  in->f_message.len = in->f_detail.len = in->f_statement.len = 0;
  if (!keep(in, &in->f_user, &m.user) || !keep(in, &in->f_db, &m.database) ||
      !keep(in, &in->f_app, &m.application) || !keep(in, &in->f_host, &m.host) ||
      !put(in, &in->f_message, line + body, n - body))
    return false;
  m.line = line_no;
  in->msg = m;
  in->msg_open = true;
  in->msg_pos = in->line_pos;
  in->last_part = QP_SEV_NONE;
  return true;
}
