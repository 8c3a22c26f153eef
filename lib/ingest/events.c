/*
 * Log messages -> profile events, the same for every format.
 *
 * What counts as one execution, from what PostgreSQL logs:
 *  - "duration: N ms  statement: SQL" and "duration: N ms  execute NAME: SQL"
 *    (log_min_duration_statement): one call of N ms, plus the parse and bind
 *    durations the same process logged since its last execution, so that an
 *    extended-protocol statement costs what its client waited for (the shim
 *    and the pool time the whole round trip too);
 *  - "statement: SQL" / "execute NAME: SQL" (log_statement) waiting for the
 *    process's next bare "duration: N ms" (log_duration); if none comes (the
 *    next statement, or the end of the log), a call of unknown (0) duration;
 *  - ERROR with a STATEMENT: an error call with the SQLSTATE (%e), of
 *    unknown duration; the process's waiting statement is that one.
 *  - an auto_explain plan ("duration: N ms  plan:" with its Query Text, text
 *    or JSON format): the detail of the statement of the same text its
 *    process logs with a duration (log_min_duration_statement) next (simple
 *    protocol: the plan comes first) or just before (extended protocol: a
 *    SELECT's plan comes after its execute line), which is the call; a plan
 *    with no such line (auto_explain alone, or a statement under
 *    log_min_duration_statement) is a call of N ms itself.
 *    Plans of one multi-statement string (one per statement, each with the
 *    whole string) are one execution once the log has shown statement
 *    durations. With log_statement, a plan of the waiting statement's text
 *    is its plan and gives it a duration when log_duration does not.
 * "parse"/"bind" lines alone and every other message are not calls. The fingerprint is the profile's (qp_profile_normalize); a
 * statement's parameters (DETAIL: parameters: $1 = '...') are substituted
 * into the text handed over for the sample only, which the profile redacts
 * and keeps only when sampling is on.
 */
#include <jansson.h>
#include <string.h>
#include <xxhash.h>

#include "ingest/ingest_int.h"

struct qp_pid_state {
  int64_t pid;
  bool used;
  uint64_t extra_ns;     /* parse/bind time waiting for the next execution */
  char *sql;             /* statement waiting for its duration; NULL none */
  size_t sql_len;
  char *detail;          /* its DETAIL, for the parameters */
  size_t detail_len;
  char *who[4];          /* its database, user, application, client host (NULL: unknown) */
  int64_t time_ns;
  uint64_t sql_plan_ns;  /* an auto_explain plan's duration for the waiting statement */
  bool sql_plan;
  char *plan;            /* a plan's Query Text waiting for its statement's line; NULL none */
  size_t plan_len;
  uint64_t plan_ns;      /* its duration (the sum, for plans merged into one execution) */
  int64_t plan_time_ns;
  char *plan_who[4];
  /* the last statement recorded with a duration, while its plan may still
   * come (the extended protocol logs a SELECT's plan after its execute line) */
  uint64_t recent_hash;
  size_t recent_len;
  bool recent_open;
};

/* Who ran a statement, from the log line (log_line_prefix %d %u %a %h, or
 * the csvlog/jsonlog fields). */
typedef struct who {
  qp_span v[4]; /* database, user, application, host */
} who;

static who who_of(const qp_log_msg *m) {
  return (who){{m->database, m->user, m->application, m->host}};
}

static bool pid_state_empty(const qp_pid_state *s) {
  return s->sql == NULL && s->extra_ns == 0 && s->plan == NULL;
}

/* Forgets the waiting statement (not the waiting plan). */
static void pid_state_clear(qp_ingest *in, qp_pid_state *s) {
  qp__free(&in->hooks, s->sql);
  qp__free(&in->hooks, s->detail);
  for (int i = 0; i < 4; i++) {
    qp__free(&in->hooks, s->who[i]);
    s->who[i] = NULL;
  }
  s->sql = s->detail = NULL;
  s->sql_len = s->detail_len = 0;
  s->sql_plan = false;
  s->sql_plan_ns = 0;
}

static void plan_clear(qp_ingest *in, qp_pid_state *s) {
  qp__free(&in->hooks, s->plan);
  for (int i = 0; i < 4; i++) {
    qp__free(&in->hooks, s->plan_who[i]);
    s->plan_who[i] = NULL;
  }
  s->plan = NULL;
  s->plan_len = 0;
  s->plan_ns = 0;
}

static size_t pid_slot(int64_t pid, size_t cap) {
  uint64_t h = (uint64_t)pid * 0x9e3779b97f4a7c15ull;
  return (size_t)(h >> 20) & (cap - 1);
}

/* Rebuilds the table at `cap`, dropping processes with nothing pending. */
static bool pids_rebuild(qp_ingest *in, size_t cap) {
  qp_pid_state *t = qp__calloc(&in->hooks, cap, sizeof *t);
  if (t == NULL) return false;
  size_t n = 0;
  for (size_t i = 0; i < in->pid_cap; i++) {
    qp_pid_state *s = &in->pids[i];
    if (!s->used || pid_state_empty(s)) {
      if (s->used) {
        pid_state_clear(in, s);
        plan_clear(in, s);
      }
      continue;
    }
    size_t j = pid_slot(s->pid, cap);
    while (t[j].used) j = (j + 1) & (cap - 1);
    t[j] = *s;
    n++;
  }
  qp__free(&in->hooks, in->pids);
  in->pids = t;
  in->pid_cap = cap;
  in->npids = n;
  return true;
}

static qp_pid_state *pid_get(qp_ingest *in, int64_t pid) {
  if (in->pid_cap == 0 && !pids_rebuild(in, 64)) return NULL;
  size_t j = pid_slot(pid, in->pid_cap);
  while (in->pids[j].used) {
    if (in->pids[j].pid == pid) return &in->pids[j];
    j = (j + 1) & (in->pid_cap - 1);
  }
  if ((in->npids + 1) * 2 > in->pid_cap) {
    size_t live = 0;
    for (size_t i = 0; i < in->pid_cap; i++)
      if (in->pids[i].used && !pid_state_empty(&in->pids[i])) live++;
    size_t cap = in->pid_cap;
    while ((live + 1) * 4 > cap) cap *= 2;
    if (!pids_rebuild(in, cap)) return NULL;
    j = pid_slot(pid, in->pid_cap);
    while (in->pids[j].used) j = (j + 1) & (in->pid_cap - 1);
  }
  in->pids[j] = (qp_pid_state){.pid = pid, .used = true};
  in->npids++;
  return &in->pids[j];
}

void qp__ingest_events_free(qp_ingest *in) {
  for (size_t i = 0; i < in->pid_cap; i++)
    if (in->pids[i].used) {
      pid_state_clear(in, &in->pids[i]);
      plan_clear(in, &in->pids[i]);
    }
  qp__free(&in->hooks, in->pids);
  in->pids = NULL;
  in->pid_cap = in->npids = 0;
  if (in->norm != NULL) {
    for (size_t i = 0; i < QP_NORM_SLOTS; i++) {
      qp__free(&in->hooks, in->norm[i].raw);
      qp__free(&in->hooks, in->norm[i].norm);
    }
    qp__free(&in->hooks, in->norm);
    in->norm = NULL;
  }
}

static bool nomem(qp_ingest *in) {
  qp__err_set(&in->err, QP_NOMEM, "%s: out of memory", in->name);
  return false;
}

/* ---- parameters into the sample ------------------------------------------- */

enum { MAX_PARAMS = 256 };

/* "parameters: $1 = 'a', $2 = NULL": the values (with their quotes) by number. */
static size_t parse_params(const char *d, size_t n, qp_span *v) {
  static const char head[] = "parameters: ";
  if (n < sizeof head - 1 || memcmp(d, head, sizeof head - 1) != 0) return 0;
  size_t i = sizeof head - 1, count = 0;
  while (i < n) {
    if (d[i] != '$') break;
    size_t k = 0, j = i + 1;
    while (j < n && d[j] >= '0' && d[j] <= '9' && k < 100000) k = k * 10 + (size_t)(d[j++] - '0');
    if (j + 3 > n || memcmp(d + j, " = ", 3) != 0) break;
    j += 3;
    size_t s = j;
    if (j < n && d[j] == '\'') {
      j++;
      while (j < n) {
        if (d[j] == '\'') {
          if (j + 1 < n && d[j + 1] == '\'') {
            j += 2;
            continue;
          }
          j++;
          break;
        }
        j++;
      }
    } else {
      while (j < n && d[j] != ',') j++;
    }
    if (k >= 1 && k <= MAX_PARAMS) {
      v[k - 1] = (qp_span){d + s, j - s};
      if (k > count) count = k;
    }
    if (j + 2 <= n && d[j] == ',' && d[j + 1] == ' ') j += 2;
    else break;
    i = j;
  }
  return count;
}

static bool ident_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         (unsigned char)c >= 0x80;
}

/* The statement with each $N outside quotes and comments replaced by its value. */
static bool substitute(qp_buf *out, const char *s, size_t n, const qp_span *v, size_t nv) {
  out->len = 0;
  size_t i = 0, last = 0;
  while (i < n) {
    char c = s[i];
    if (c == '\'' || c == '"') {
      i++;
      while (i < n && s[i] != c) i++;
      i++;
    } else if (c == '-' && i + 1 < n && s[i + 1] == '-') {
      while (i < n && s[i] != '\n') i++;
    } else if (c == '/' && i + 1 < n && s[i + 1] == '*') {
      i += 2;
      while (i + 1 < n && !(s[i] == '*' && s[i + 1] == '/')) i++;
      i += 2;
    } else if (c == '$' && i + 1 < n && s[i + 1] >= '1' && s[i + 1] <= '9' &&
               (i == 0 || !ident_char(s[i - 1]))) {
      size_t j = i + 1, k = 0;
      while (j < n && s[j] >= '0' && s[j] <= '9' && k <= MAX_PARAMS) k = k * 10 + (size_t)(s[j++] - '0');
      if (k >= 1 && k <= nv && v[k - 1].p != NULL) {
        if (!qp__buf_append(out, s + last, i - last) ||
            !qp__buf_append(out, v[k - 1].p, v[k - 1].n))
          return false;
        last = j;
      }
      i = j;
    } else {
      i++;
    }
  }
  if (last > n) last = n;
  return qp__buf_append(out, s + last, n - last);
}

/* ---- recording ------------------------------------------------------------------- */

static const qp_norm_slot *normalized(qp_ingest *in, const char *sql, size_t len) {
  if (in->norm == NULL) {
    in->norm = qp__calloc(&in->hooks, QP_NORM_SLOTS, sizeof *in->norm);
    if (in->norm == NULL) return NULL;
  }
  uint64_t h = XXH3_64bits(sql, len);
  in->sql_hash = h;
  qp_norm_slot *sl = &in->norm[h & (QP_NORM_SLOTS - 1)];
  if (sl->raw != NULL && sl->hash == h && sl->raw_len == len && memcmp(sl->raw, sql, len) == 0)
    return sl;
  size_t cap = len + len / 2 + 64;
  if (!qp__buf_reserve(&in->ev_norm, cap)) return NULL;
  size_t nlen = 0;
  uint64_t fp = 0;
  qp_status rc = qp_profile_normalize(in->prof, QP_BACKEND_POSTGRES, sql, len, in->ev_norm.data,
                                      cap, &nlen, &fp);
  if (rc != QP_OK) return NULL;
  char *raw = qp__strndup(&in->hooks, sql, len);
  char *norm = qp__strndup(&in->hooks, in->ev_norm.data, nlen);
  if (raw == NULL || norm == NULL) {
    qp__free(&in->hooks, raw);
    qp__free(&in->hooks, norm);
    return NULL;
  }
  qp__free(&in->hooks, sl->raw);
  qp__free(&in->hooks, sl->norm);
  *sl = (qp_norm_slot){h, raw, len, norm, nlen, fp};
  return sl;
}

static bool record(qp_ingest *in, const char *sql, size_t len, const char *detail,
                   size_t detail_len, const who *w, int64_t time_ns, uint64_t dur_ns,
                   const char *error) {
  if ((in->since_ns != 0 && time_ns != 0 && time_ns < in->since_ns) ||
      (in->until_ns != 0 && time_ns != 0 && time_ns >= in->until_ns)) {
    in->st.outside++;
    in->sql_hash = XXH3_64bits(sql, len);
    return true;
  }
  const qp_norm_slot *ns = normalized(in, sql, len);
  if (ns == NULL) return nomem(in);
  qp_query_event ev = {.size = sizeof ev,
                       .backend = QP_BACKEND_POSTGRES,
                       .sql = sql,
                       .sql_len = len,
                       .normalized = ns->norm,
                       .normalized_len = ns->norm_len,
                       .fingerprint = ns->fingerprint,
                       .duration_ns = dur_ns,
                       .rows = -1,
                       .error = error,
                       .end_wall_ns = time_ns};
  /* the dimensions, NUL-terminated for the event */
  qp_buf *bufs[4] = {&in->ev_db, &in->ev_user, &in->ev_app, &in->ev_host};
  const char *dims[4] = {NULL, NULL, NULL, NULL};
  for (int i = 0; i < 4; i++) {
    if (w->v[i].n == 0) continue;
    bufs[i]->len = 0;
    if (!qp__buf_append(bufs[i], w->v[i].p, w->v[i].n)) return nomem(in);
    dims[i] = qp__buf_cstr(bufs[i]);
  }
  ev.database = dims[0];
  ev.user = dims[1];
  ev.application = dims[2];
  ev.host = dims[3];
  if (in->sampling && detail_len > 0) {
    qp_span v[MAX_PARAMS];
    memset(v, 0, sizeof v);
    size_t nv = parse_params(detail, detail_len, v);
    if (nv > 0) {
      if (!substitute(&in->ev_sample, sql, len, v, nv)) return nomem(in);
      ev.sql = in->ev_sample.data != NULL ? in->ev_sample.data : "";
      ev.sql_len = in->ev_sample.len;
    }
  }
  qp_status rc = qp_profile_record(in->prof, &ev);
  if (rc == QP_NOMEM) return nomem(in);
  if (rc != QP_OK) {
    qp__err_set(&in->err, rc, "%s: the profile refused an event (%s)", in->name, qp_strerror(rc));
    return false;
  }
  in->st.statements++;
  if (error != NULL) in->st.errors++;
  return true;
}

/* Notes the statement just recorded (its text's hash is the one record()
 * left in in->sql_hash): a plan of its text that comes next is its plan
 * (`open`), not a call. */
static void remember(qp_ingest *in, qp_pid_state *s, size_t len, bool open) {
  s->recent_hash = in->sql_hash;
  s->recent_len = len;
  s->recent_open = open;
}

/* Records the process's waiting statement with `dur_ns` (and its parse and
 * bind time), or as of unknown duration. */
static bool flush_pending(qp_ingest *in, qp_pid_state *s, bool have_dur, uint64_t dur_ns,
                          int64_t time_ns) {
  if (s->sql == NULL) return true;
  int64_t at = have_dur ? time_ns : s->time_ns;
  if (!have_dur && s->sql_plan) { /* no log_duration: its plan's duration */
    have_dur = true;
    dur_ns = s->sql_plan_ns;
  }
  if (!have_dur) in->st.no_duration++;
  who w;
  for (int i = 0; i < 4; i++)
    w.v[i] = (qp_span){s->who[i], s->who[i] != NULL ? strlen(s->who[i]) : 0};
  bool ok = record(in, s->sql, s->sql_len, s->detail, s->detail_len, &w, at,
                   have_dur ? dur_ns + s->extra_ns : 0, NULL);
  remember(in, s, s->sql_len, !s->sql_plan);
  if (have_dur) s->extra_ns = 0;
  pid_state_clear(in, s);
  return ok;
}

static bool starts(const char *p, size_t n, const char *lit, size_t *len) {
  size_t k = strlen(lit);
  if (n < k || memcmp(p, lit, k) != 0) return false;
  *len = k;
  return true;
}

/* "N.NNN ms" -> ns; the bytes used, or 0. */
static size_t parse_ms(const char *p, size_t n, uint64_t *ns) {
  size_t i = 0;
  uint64_t whole = 0;
  while (i < n && p[i] >= '0' && p[i] <= '9' && i < 15) whole = whole * 10 + (uint64_t)(p[i++] - '0');
  if (i == 0) return 0;
  uint64_t frac = 0, scale = 100000;
  if (i < n && p[i] == '.') {
    i++;
    while (i < n && p[i] >= '0' && p[i] <= '9') {
      frac += (uint64_t)(p[i] - '0') * scale;
      scale /= 10;
      i++;
    }
  }
  if (i + 3 > n || memcmp(p + i, " ms", 3) != 0) return 0;
  *ns = whole * 1000000 + frac;
  return i + 3;
}

/* After "execute ": the name (which may be "fetch from P/C"), ": ", then SQL. */
static bool after_name(const char *p, size_t n, size_t *sql_at) {
  const char *c = memmem(p, n, ": ", 2);
  if (c == NULL) return false;
  *sql_at = (size_t)(c - p) + 2;
  return true;
}

/* ---- auto_explain plans ---------------------------------------------------- */

/* Records the process's waiting plan as a call of its Query Text. */
static bool plan_flush(qp_ingest *in, qp_pid_state *s) {
  if (s->plan == NULL) return true;
  who w;
  for (int i = 0; i < 4; i++)
    w.v[i] = (qp_span){s->plan_who[i], s->plan_who[i] != NULL ? strlen(s->plan_who[i]) : 0};
  uint64_t before = in->st.statements;
  bool ok = record(in, s->plan, s->plan_len, NULL, 0, &w, s->plan_time_ns, s->plan_ns, NULL);
  if (in->st.statements > before) in->st.plan_calls++;
  plan_clear(in, s);
  return ok;
}

/* The statement logged with its duration: the waiting plan, when it is of
 * the same text, was its plan (counted once, from the statement's line:
 * *matched); else a call of its own. */
static bool plan_settle(qp_ingest *in, qp_pid_state *s, const char *sql, size_t len,
                        bool *matched) {
  *matched = s->plan != NULL && s->plan_len == len && memcmp(s->plan, sql, len) == 0;
  if (*matched) plan_clear(in, s);
  else if (!plan_flush(in, s)) return false;
  return true;
}

/* A line of the text format that starts the plan itself: "Node  (cost=". */
static bool plan_node_line(const char *p, size_t n) {
  return memmem(p, n, "  (cost=", 8) != NULL || memmem(p, n, "  (actual ", 10) != NULL;
}

/* The Query Text of a plan (`p`: what follows "plan:"), text or JSON format;
 * false when it cannot be read. The text points into `p` or into
 * in->plan_text. */
static bool plan_query(qp_ingest *in, const char *p, size_t n, const char **q, size_t *qn) {
  while (n > 0 && (*p == '\n' || *p == ' ' || *p == '\t')) p++, n--;
  static const char head[] = "Query Text: ";
  if (n >= sizeof head - 1 && memcmp(p, head, sizeof head - 1) == 0) {
    const char *t = p + sizeof head - 1, *end = p + n;
    /* the text runs to the first line of the plan (it may have lines of its own) */
    const char *stop = NULL, *nl = t;
    while ((nl = memchr(nl, '\n', (size_t)(end - nl))) != NULL) {
      const char *ln = nl + 1, *le = memchr(ln, '\n', (size_t)(end - ln));
      if (le == NULL) le = end;
      if (plan_node_line(ln, (size_t)(le - ln))) {
        stop = nl;
        break;
      }
      nl = ln;
    }
    if (stop == NULL) return false;
    /* PostgreSQL 16's "Query Parameters: ..." line is not the text */
    static const char par[] = "\nQuery Parameters: ";
    for (const char *k = t; k < stop; k++) {
      k = memchr(k, '\n', (size_t)(stop - k));
      if (k == NULL) break;
      if ((size_t)(stop - k) >= sizeof par - 1 && memcmp(k, par, sizeof par - 1) == 0) {
        stop = k;
        break;
      }
    }
    *q = t;
    *qn = (size_t)(stop - t);
    return *qn > 0;
  }
  if (n > 0 && *p == '{') {
    json_error_t e;
    json_t *root = json_loadb(p, n, JSON_DISABLE_EOF_CHECK, &e);
    if (root == NULL) return false;
    json_t *t = json_object_get(root, "Query Text");
    bool ok = json_is_string(t) && json_string_length(t) > 0;
    in->plan_text.len = 0;
    if (ok && !qp__buf_append(&in->plan_text, json_string_value(t), json_string_length(t))) ok = false;
    json_decref(root);
    if (!ok) return false;
    *q = in->plan_text.data;
    *qn = in->plan_text.len;
    return true;
  }
  return false;
}

/* "duration: N ms  plan:...": held until the process's next line tells
 * whether its statement is logged with its duration (see the top). */
static bool on_plan(qp_ingest *in, qp_pid_state *s, const qp_log_msg *m, uint64_t dur,
                    const char *p, size_t n) {
  in->st.plans++;
  const char *q = NULL;
  size_t qn = 0;
  if (!plan_query(in, p, n, &q, &qn)) {
    in->st.plans_unread++;
    return true;
  }
  if (s->sql != NULL && s->sql_len == qn && memcmp(s->sql, q, qn) == 0) {
    s->sql_plan = true; /* log_statement: the waiting statement's plan */
    s->sql_plan_ns += dur;
    return true;
  }
  if (s->recent_open && s->recent_len == qn && s->recent_hash == XXH3_64bits(q, qn)) {
    s->recent_open = false; /* the plan of the statement logged just before */
    return true;
  }
  if (s->plan != NULL && in->seen_statement_duration && s->plan_len == qn &&
      memcmp(s->plan, q, qn) == 0) { /* one multi-statement string */
    s->plan_ns += dur;
    s->plan_time_ns = m->time_ns;
    return true;
  }
  if (!plan_flush(in, s)) return false;
  s->plan = qp__strndup(&in->hooks, q, qn);
  if (s->plan == NULL) return nomem(in);
  s->plan_len = qn;
  s->plan_ns = dur;
  s->plan_time_ns = m->time_ns;
  who w = who_of(m);
  for (int i = 0; i < 4; i++) {
    s->plan_who[i] = w.v[i].n ? qp__strndup(&in->hooks, w.v[i].p, w.v[i].n) : NULL;
    if (w.v[i].n && s->plan_who[i] == NULL) {
      plan_clear(in, s);
      return nomem(in);
    }
  }
  return true;
}

static bool set_pending(qp_ingest *in, qp_pid_state *s, const qp_log_msg *m, const char *sql,
                        size_t len) {
  if (!flush_pending(in, s, false, 0, 0) || !plan_flush(in, s)) return false;
  s->sql = qp__strndup(&in->hooks, sql, len);
  s->sql_len = len;
  s->detail = m->detail.n ? qp__strndup(&in->hooks, m->detail.p, m->detail.n) : NULL;
  s->detail_len = s->detail ? m->detail.n : 0;
  who w = who_of(m);
  bool lost = false;
  for (int i = 0; i < 4; i++) {
    s->who[i] = w.v[i].n ? qp__strndup(&in->hooks, w.v[i].p, w.v[i].n) : NULL;
    lost |= w.v[i].n && s->who[i] == NULL;
  }
  s->time_ns = m->time_ns;
  if (s->sql == NULL || (m->detail.n && s->detail == NULL) || lost) {
    pid_state_clear(in, s);
    return nomem(in);
  }
  return true;
}

static bool on_log(qp_ingest *in, const qp_log_msg *m) {
  const char *b = m->message.p;
  size_t n = m->message.n, k = 0;
  if (starts(b, n, "duration: ", &k)) {
    uint64_t dur = 0;
    size_t u = parse_ms(b + k, n - k, &dur);
    if (u == 0) {
      in->st.other++;
      return true;
    }
    const char *r = b + k + u;
    size_t rn = n - k - u, j = 0;
    qp_pid_state *s = pid_get(in, m->pid);
    if (s == NULL) return nomem(in);
    if (rn == 0) { /* log_duration: the end of the waiting statement */
      if (s->sql != NULL) return flush_pending(in, s, true, dur, m->time_ns);
      s->extra_ns += dur; /* parse or bind (their statement is logged at execute) */
      return true;
    }
    if (starts(r, rn, "  statement: ", &j) ||
        (starts(r, rn, "  execute ", &j) && after_name(r + j, rn - j, &u) && (j += u, true))) {
      in->seen_statement_duration = true;
      bool had_plan;
      if (!flush_pending(in, s, false, 0, 0) || !plan_settle(in, s, r + j, rn - j, &had_plan))
        return false;
      uint64_t extra = s->extra_ns;
      s->extra_ns = 0;
      who w = who_of(m);
      if (!record(in, r + j, rn - j, m->detail.p, m->detail.n, &w, m->time_ns, dur + extra, NULL))
        return false;
      remember(in, s, rn - j, !had_plan); /* for a plan that comes after it */
      return true;
    }
    if (starts(r, rn, "  parse ", &j) || starts(r, rn, "  bind ", &j)) {
      s->extra_ns += dur;
      return true;
    }
    if (starts(r, rn, "  plan:", &j)) return on_plan(in, s, m, dur, r + j, rn - j);
    in->st.other++;
    return true;
  }
  size_t j = 0, u = 0;
  if (starts(b, n, "statement: ", &j) ||
      (starts(b, n, "execute ", &j) && after_name(b + j, n - j, &u) && (j += u, true))) {
    qp_pid_state *s = pid_get(in, m->pid);
    if (s == NULL) return nomem(in);
    return set_pending(in, s, m, b + j, n - j);
  }
  in->st.other++;
  return true;
}

static bool on_error(qp_ingest *in, const qp_log_msg *m) {
  qp_pid_state *s = pid_get(in, m->pid);
  if (s == NULL) return nomem(in);
  /* a waiting plan's statement ended before this one failed */
  if (!plan_flush(in, s)) return false;
  /* the waiting statement (log_statement) is the one that failed */
  pid_state_clear(in, s);
  s->extra_ns = 0;
  if (m->statement.n == 0) {
    in->st.errors_without_statement++;
    return true;
  }
  const char *code = m->sqlstate[0] != '\0' ? m->sqlstate : "ERROR";
  who w = who_of(m);
  return record(in, m->statement.p, m->statement.n, NULL, 0, &w, m->time_ns, 0, code);
}

bool qp__ingest_message(qp_ingest *in, const qp_log_msg *m) {
  in->st.messages++;
  switch (m->severity) {
  case QP_SEV_LOG:
    return on_log(in, m);
  case QP_SEV_ERROR:
    return on_error(in, m);
  default:
    in->st.other++;
    return true;
  }
}

bool qp__ingest_drain(qp_ingest *in) {
  for (size_t i = 0; i < in->pid_cap; i++) {
    qp_pid_state *s = &in->pids[i];
    if (s->used && ((s->sql != NULL && !flush_pending(in, s, false, 0, 0)) || !plan_flush(in, s)))
      return false;
  }
  return true;
}

void qp__ingest_unparsed(qp_ingest *in, const char *line, size_t n, uint64_t line_no) {
  in->st.unparsed++;
  if (in->first_unparsed != NULL || in->st.first_unparsed_line != 0) return;
  in->st.first_unparsed_line = line_no;
  size_t k = n < 200 ? n : 200;
  in->first_unparsed = qp__strndup(&in->hooks, line, k);
}
