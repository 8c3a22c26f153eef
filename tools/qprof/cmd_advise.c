/* qprof advise: index advice for a statement, a script or the top queries
 * of a profile store, proven on the database (docs/advise.md). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "report_common.h"

static const char *const VERB = "advise";

static void usage(FILE *f) {
  fprintf(f,
          "Usage: qprof advise --dsn DSN (--query SQL | --file FILE | --store PATH [--top N]\n"
          "                    [--since TIME]) [--analyze] [--analyze-writes]\n"
          "                    [--verify hypo|real|none] [--format text|json]\n"
          "                    [--statement-timeout MS] [--lock-timeout MS] [--save]\n\n"
          "Index advice from the plans of PostgreSQL and SQLite statements, each candidate\n"
          "proven on the database before it is shown (HypoPG, or a real index rolled back;\n"
          "SQLite: a real index on a copy of the file, measured), ranked by the time it\n"
          "gives back per day when the queries come from a profile store.\n"
          "Nothing is committed: read-only statements run (with --analyze) inside BEGIN READ\n"
          "ONLY, writes only with --analyze-writes inside BEGIN ... ROLLBACK; DDL is refused.\n\n"
          "  --dsn DSN              the database to advise on (libpq keywords or URI, or\n"
          "                         sqlite:///path/file.db: never changed, advised on a copy)\n"
          "  --query SQL            one statement\n"
          "  --file FILE            every statement of a script ('-' is stdin)\n"
          "  --store PATH           the top queries of a profile store by total time\n"
          "  --top N                how many of them (default 20)\n"
          "  --since TIME           only the store's buckets since TIME (-1d, 2026-11-22, ...)\n"
          "  --analyze              EXPLAIN ANALYZE read-only statements (they run)\n"
          "  --analyze-writes       also run writes, rolled back (needed for the foreign-key rule)\n"
          "  --verify MODE          hypo (default: HypoPG when installed, else unverified),\n"
          "                         real (builds each index in a transaction and rolls it\n"
          "                         back: takes the table's lock for the build), or none\n"
          "  --format F             text (default) or json (docs/advise.md)\n"
          "  --statement-timeout MS statement_timeout of each transaction (default 10000)\n"
          "  --lock-timeout MS      lock_timeout of each transaction (default 1000)\n"
          "  --save                 with --store: keep the advice in that store, replacing\n"
          "                         the last saved for this database (qprof report --format\n"
          "                         html shows it beside the queries)\n\n"
          "Exit: 0 advice given (possibly none), 1 a failure (the statement or the database;\n"
          "with --file or --store: when no statement could be advised on), 2 usage.\n");
}

/* One statement to advise on, and what the profile says about it. */
typedef struct item {
  char *sql;             /* owned */
  char fp[QP_FINGERPRINT_HEX_SIZE];
  bool from_store;
  double calls_per_day, mean_ms;
  qp_advice *adv;
  qp_status st;
  char err[1024];
} item;

/* A suggestion merged over the statements that gave it. */
typedef struct merged {
  const qp_advice_index *s; /* of the first statement */
  size_t *items;
  size_t nitems;
  double saved_ms_day;      /* -1 when unknown */
  bool measured;
  double calls_day;         /* calls per day of the queries it helps; -1 unknown */
} merged;

static bool parse_i64(const char *s, int64_t min, int64_t *out) {
  if (s == NULL || *s == '\0') return false;
  char *end;
  long long v = strtoll(s, &end, 10);
  if (*end != '\0' || v < min) return false;
  *out = v;
  return true;
}

static bool add_item(item **v, size_t *n, const char *sql, size_t len) {
  item *nv = realloc(*v, (*n + 1) * sizeof *nv);
  if (nv == NULL) return false;
  *v = nv;
  item *it = &nv[(*n)++];
  memset(it, 0, sizeof *it);
  it->sql = strndup(sql, len);
  it->calls_per_day = it->mean_ms = -1;
  return it->sql != NULL;
}

/* Statements per day that write each table, from the whole store window
 * (the classifier's write list of every recorded query). */
typedef struct table_writes {
  char name[QP_STMT_NAME_MAX];
  double per_day;
} table_writes;
static table_writes *g_writes;
static size_t g_nwrites;

static void count_writes(const qp_query_summary *q, double days) {
  qp_stmt_info info;
  info.size = sizeof info;
  if (qp_sql_classify(QP_DIALECT_POSTGRES, q->query, strlen(q->query), &info) != QP_OK) return;
  for (size_t k = 0; k < info.nwrite; k++) {
    const char *name = info.write[k];
    const char *dot = strrchr(name, '.');
    if (dot != NULL) name = dot + 1;
    table_writes *e = NULL;
    for (size_t i = 0; i < g_nwrites && e == NULL; i++)
      if (strcmp(g_writes[i].name, name) == 0) e = &g_writes[i];
    if (e == NULL) {
      table_writes *nv = realloc(g_writes, (g_nwrites + 1) * sizeof *nv);
      if (nv == NULL) return;
      g_writes = nv;
      e = &g_writes[g_nwrites++];
      snprintf(e->name, sizeof e->name, "%s", name);
      e->per_day = 0;
    }
    e->per_day += (double)q->calls / days;
  }
}

/* Write statements per day the profile saw on `table` ("public.t"): -1
 * without a store. */
static double writes_per_day(const char *table, bool have_store) {
  if (!have_store) return -1;
  const char *dot = strrchr(table, '.');
  const char *name = dot ? dot + 1 : table;
  for (size_t i = 0; i < g_nwrites; i++)
    if (strcmp(g_writes[i].name, name) == 0) return g_writes[i].per_day;
  return 0;
}

/* The statement a stored query is advised on: its sample when there is one
 * with every value (no '?' left by the redaction), else its normalized text
 * (a generic plan). */
static const char *store_sql(const qp_query_summary *q) {
  if (q->sample != NULL && q->sample[0] != '\0' && strchr(q->sample, '?') == NULL) return q->sample;
  return q->query;
}

static int load_store(const char *path, int64_t since, int64_t top, bool sqlite, item **v,
                      size_t *n) {
  const char *want = sqlite ? "sqlite" : "postgres";
  qp_report_options ro;
  qp_report_options_init(&ro);
  ro.since_ns = since;
  ro.sort = QP_REPORT_SORT_TOTAL;
  int rc = rq_check(VERB, &ro);
  if (rc != QP_EXIT_OK) return rc;
  qp_store *store;
  qp_report *r;
  if (!rq_open(VERB, path, &ro, &store, &r)) return QP_EXIT_FAIL;
  const qp_report_totals *t = qp_report_totals_get(r);
  double span_ns = (double)(t->last_seen_ns - t->first_seen_ns);
  if (span_ns < 3600e9) span_ns = 3600e9; /* at least an hour: a short run is not a day */
  double days = span_ns / 86400e9;
  size_t count = qp_report_count(r), taken = 0, skipped = 0;
  for (size_t i = 0; i < count; i++)
    if (strcmp(qp_report_query(r, i)->backend, want) == 0)
      count_writes(qp_report_query(r, i), days);
  for (size_t i = 0; i < count && (int64_t)taken < top; i++) {
    const qp_query_summary *q = qp_report_query(r, i);
    if (strcmp(q->backend, want) != 0) {
      skipped++;
      continue;
    }
    const char *sql = store_sql(q);
    if (!add_item(v, n, sql, strlen(sql))) {
      rq_close(store, r);
      return cli_fail(VERB, "out of memory");
    }
    item *it = &(*v)[*n - 1];
    it->from_store = true;
    qp_fingerprint_hex(q->fingerprint, it->fp);
    it->calls_per_day = (double)q->calls / days;
    it->mean_ms = q->mean_ns / 1e6;
    taken++;
  }
  if (skipped > 0)
    fprintf(stderr, "qprof advise: %zu quer%s of another backend than the DSN's left out\n",
            skipped, skipped == 1 ? "y" : "ies");
  rq_close(store, r);
  if (taken == 0) return cli_fail(VERB, "the store has no %s queries%s",
                                  sqlite ? "SQLite" : "PostgreSQL",
                                  since != INT64_MIN ? " in this window" : "");
  return QP_EXIT_OK;
}

/* Time a suggestion gives back per day for one statement, or -1. */
static double saved_per_day(const item *it, const qp_advice_index *s, bool *measured) {
  *measured = false;
  if (it->calls_per_day < 0) return -1;
  if (s->ms_before >= 0 && s->ms_after >= 0 && strcmp(s->rule, "fk_trigger") != 0) {
    *measured = true;
    double d = s->ms_before - s->ms_after;
    return it->calls_per_day * (d > 0 ? d : 0);
  }
  if (s->cost_before > 0 && s->cost_after >= 0 && it->mean_ms >= 0) {
    double kept = s->cost_after / s->cost_before;
    return it->calls_per_day * it->mean_ms * (kept < 1 ? 1 - kept : 0);
  }
  return -1;
}

static int cmp_merged(const void *pa, const void *pb) {
  const merged *a = pa, *b = pb;
  if (a->saved_ms_day != b->saved_ms_day) return a->saved_ms_day < b->saved_ms_day ? 1 : -1;
  double ga = a->s->cost_before > 0 ? 1 - a->s->cost_after / a->s->cost_before : 0;
  double gb = b->s->cost_before > 0 ? 1 - b->s->cost_after / b->s->cost_before : 0;
  return ga < gb ? 1 : ga > gb ? -1 : 0;
}

static merged *merge(item *v, size_t n, size_t *nm) {
  merged *m = NULL;
  *nm = 0;
  for (size_t i = 0; i < n; i++) {
    for (size_t k = 0; v[i].adv && k < qp_advice_index_count(v[i].adv); k++) {
      const qp_advice_index *s = qp_advice_index_at(v[i].adv, k);
      merged *e = NULL;
      for (size_t j = 0; j < *nm && e == NULL; j++)
        if (strcmp(m[j].s->statement, s->statement) == 0) e = &m[j];
      if (e == NULL) {
        merged *nv = realloc(m, (*nm + 1) * sizeof *nv);
        if (nv == NULL) return m;
        m = nv;
        e = &m[(*nm)++];
        memset(e, 0, sizeof *e);
        e->s = s;
        e->saved_ms_day = -1;
        e->calls_day = -1;
      }
      size_t *ni = realloc(e->items, (e->nitems + 1) * sizeof *ni);
      if (ni == NULL) continue;
      e->items = ni;
      e->items[e->nitems++] = i;
      if (v[i].calls_per_day >= 0)
        e->calls_day = (e->calls_day < 0 ? 0 : e->calls_day) + v[i].calls_per_day;
      bool meas;
      double d = saved_per_day(&v[i], s, &meas);
      if (d >= 0) {
        e->saved_ms_day = (e->saved_ms_day < 0 ? 0 : e->saved_ms_day) + d;
        e->measured = meas;
      }
    }
  }
  if (*nm > 1) qsort(m, *nm, sizeof *m, cmp_merged);
  return m;
}

/* ---- JSON ------------------------------------------------------------------ */

static json_t *jnum(double v) { return v < 0 || !isfinite(v) ? json_null() : json_real(v); }
static json_t *jint(int64_t v) { return v < 0 ? json_null() : json_integer(v); }
static json_t *jstr(const char *s) { return s ? json_string(s) : json_null(); }

static bool g_have_store;

/* The profile's warning: the table is written more often than the queries
 * the index helps read it. NULL when not. */
static const char *profile_warning(const merged *e, char *buf, size_t len) {
  double w = writes_per_day(e->s->table, g_have_store);
  if (w <= 0 || e->calls_day < 0 || w <= e->calls_day) return NULL;
  snprintf(buf, len, "the profile has %.0f writes per day to %s and %.0f calls per day of the "
           "queries this index helps: it costs more writes than it speeds reads", w, e->s->table,
           e->calls_day);
  return buf;
}

static json_t *suggestion_json(const merged *e, const item *v) {
  const qp_advice_index *s = e->s;
  json_t *o = json_object();
  json_object_set_new(o, "statement", jstr(s->statement));
  json_object_set_new(o, "table", jstr(s->table));
  json_object_set_new(o, "columns", jstr(s->columns));
  json_object_set_new(o, "nkeys", json_integer(s->nkeys));
  json_object_set_new(o, "method", jstr(s->method));
  json_object_set_new(o, "opclass", jstr(s->opclass));
  json_object_set_new(o, "where", jstr(s->where));
  json_object_set_new(o, "include", jstr(s->include));
  json_object_set_new(o, "rule", jstr(s->rule));
  json_object_set_new(o, "reason", jstr(s->reason));
  json_object_set_new(o, "verified", json_boolean(s->verified != QP_ADVICE_UNVERIFIED));
  json_object_set_new(o, "how", json_string(qp_advice_verified_name(s->verified)));
  json_object_set_new(o, "cost_unreliable", json_boolean(s->cost_unreliable));
  json_object_set_new(o, "cost_before", jnum(s->cost_before));
  json_object_set_new(o, "cost_after", jnum(s->cost_after));
  json_object_set_new(o, "required_ratio", s->required_ratio > 0 ? json_real(s->required_ratio)
                                                                 : json_null());
  json_object_set_new(o, "ms_before", jnum(s->ms_before));
  json_object_set_new(o, "ms_after", jnum(s->ms_after));
  json_object_set_new(o, "size_bytes", jint(s->size_bytes));
  json_object_set_new(o, "table_rows", jint(s->table_rows));
  json_object_set_new(o, "table_writes", jint(s->table_writes));
  json_object_set_new(o, "table_reads", jint(s->table_reads));
  json_object_set_new(o, "write_warning", jstr(s->write_warning));
  char pw[512];
  json_object_set_new(o, "table_writes_per_day", jnum(writes_per_day(s->table, g_have_store)));
  json_object_set_new(o, "profile_warning", jstr(profile_warning(e, pw, sizeof pw)));
  json_object_set_new(o, "saved_ms_per_day", jnum(e->saved_ms_day));
  json_object_set_new(o, "saved_basis", e->saved_ms_day < 0 ? json_null()
                                        : json_string(e->measured ? "measured" : "cost"));
  json_t *qs = json_array();
  for (size_t k = 0; k < e->nitems; k++) {
    const item *it = &v[e->items[k]];
    json_t *q = json_object();
    json_object_set_new(q, "fingerprint", it->from_store ? json_string(it->fp) : json_null());
    json_object_set_new(q, "query", json_string(it->sql));
    json_object_set_new(q, "calls_per_day", jnum(it->calls_per_day));
    bool meas;
    json_object_set_new(q, "saved_ms_per_day", jnum(saved_per_day(it, e->s, &meas)));
    json_array_append_new(qs, q);
  }
  json_object_set_new(o, "queries", qs);
  return o;
}

static json_t *statement_json(const item *it) {
  json_t *o = json_object();
  json_object_set_new(o, "query", json_string(it->sql));
  json_object_set_new(o, "fingerprint", it->from_store ? json_string(it->fp) : json_null());
  json_object_set_new(o, "calls_per_day", jnum(it->calls_per_day));
  json_object_set_new(o, "mean_ms", jnum(it->mean_ms));
  if (it->adv == NULL) {
    json_object_set_new(o, "status", json_string(it->st == QP_REFUSED ? "refused" : "failed"));
    json_object_set_new(o, "error", json_string(it->err));
    return o;
  }
  const qp_advice_summary *s = qp_advice_summary_get(it->adv);
  json_object_set_new(o, "status", json_string("advised"));
  json_object_set_new(o, "error", json_null());
  json_object_set_new(o, "kind", jstr(s->kind));
  json_object_set_new(o, "read_only", json_boolean(s->read_only));
  json_object_set_new(o, "plan_source", jstr(s->plan_source));
  json_object_set_new(o, "executed", json_boolean(s->executed));
  json_object_set_new(o, "hypopg", json_boolean(s->hypopg));
  json_object_set_new(o, "cost", jnum(s->cost));
  json_object_set_new(o, "ms", jnum(s->ms));
  json_object_set_new(o, "suggestions", json_integer((json_int_t)qp_advice_index_count(it->adv)));
  json_t *f = json_array();
  for (size_t k = 0; k < qp_advice_finding_count(it->adv); k++) {
    const qp_advice_finding *x = qp_advice_finding_at(it->adv, k);
    json_t *fo = json_object();
    json_object_set_new(fo, "rule", jstr(x->rule));
    json_object_set_new(fo, "table", jstr(x->table));
    json_object_set_new(fo, "node", jstr(x->node));
    json_object_set_new(fo, "message", jstr(x->message));
    json_object_set_new(fo, "action", jstr(x->action));
    json_array_append_new(f, fo);
  }
  json_object_set_new(o, "findings", f);
  json_t *nt = json_array();
  for (size_t k = 0; k < qp_advice_note_count(it->adv); k++)
    json_array_append_new(nt, json_string(qp_advice_note_at(it->adv, k)));
  json_object_set_new(o, "notes", nt);
  return o;
}

/* The run as a JSON document (docs/advise.md), malloc'd; NULL out of memory. */
static char *advice_json(const char *dsn, const qp_advise_options *o, item *v, size_t n,
                         const merged *m, size_t nm) {
  char red[1024];
  qp_dsn_redact(dsn, red, sizeof red);
  json_t *root = json_object();
  json_object_set_new(root, "qprof_advise", json_integer(1));
  json_object_set_new(root, "database", json_string(red));
  json_object_set_new(root, "verify", json_string(qp_advise_verify_name(o->verify)));
  json_object_set_new(root, "analyze", json_boolean(o->analyze));
  json_object_set_new(root, "analyze_writes", json_boolean(o->analyze_writes));
  json_t *sg = json_array();
  for (size_t i = 0; i < nm; i++) json_array_append_new(sg, suggestion_json(&m[i], v));
  json_object_set_new(root, "suggestions", sg);
  json_t *st = json_array();
  for (size_t i = 0; i < n; i++) json_array_append_new(st, statement_json(&v[i]));
  json_object_set_new(root, "statements", st);
  char *text = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
  json_decref(root);
  return text;
}

/* Keeps the document in the profile store `store` as the advice for `dsn`. */
static int save_advice(const char *store, const char *dsn, const char *doc, bool quiet) {
  char red[1024], where[1024], msg[1024];
  qp_dsn_redact(dsn, red, sizeof red);
  qp_dsn_redact(store, where, sizeof where);
  qp_store *s;
  if (qp_store_open(&s, store, QP_STORE_WRITE, NULL, msg, sizeof msg) != QP_OK)
    return cli_fail(VERB, "cannot save the advice: %s", msg);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
  int rc = QP_EXIT_OK;
  if (qp_store_save_advice(s, red, now, doc) != QP_OK)
    rc = cli_fail(VERB, "cannot save the advice: %s", qp_store_errmsg(s));
  qp_store_close(s);
  if (rc == QP_EXIT_OK && !quiet)
    printf("\nSaved in %s (qprof report --format html shows it).\n", where);
  return rc;
}

/* ---- text ------------------------------------------------------------------ */

static const char *size_text(int64_t b, char *buf, size_t len) {
  if (b < 0) snprintf(buf, len, "?");
  else if (b >= 1 << 20) snprintf(buf, len, "%.1f MB", (double)b / (1 << 20));
  else snprintf(buf, len, "%.0f kB", (double)b / 1024);
  return buf;
}

static void print_text(item *v, size_t n, const merged *m, size_t nm) {
  bool color = cli_use_color(stdout);
  const char *bold = color ? "\033[1m" : "", *reset = color ? "\033[0m" : "";
  char qb[512];
  if (nm == 0) printf("No index to suggest.\n");
  for (size_t i = 0; i < nm; i++) {
    const qp_advice_index *s = m[i].s;
    char sz[32];
    printf("%s%zu. %s;%s\n", bold, i + 1, s->statement, reset);
    printf("   why:      %s\n", s->reason);
    if (s->verified == QP_ADVICE_UNVERIFIED)
      printf("   verified: no (unverified)\n");
    else if (s->verified == QP_ADVICE_COPY)
      printf("   verified: a real index on a copy of the file: VM steps %.0f -> %.0f (%.0f%% less)\n",
             s->cost_before, s->cost_after, 100 * (1 - s->cost_after / s->cost_before));
    else
      printf("   verified: %s: cost %.0f -> %.0f (%.0f%% less)%s\n",
             s->verified == QP_ADVICE_REAL ? "real index, rolled back" : "HypoPG",
             s->cost_before, s->cost_after, 100 * (1 - s->cost_after / s->cost_before),
             s->cost_unreliable ? "; hypothetical cost unreliable (expression)" : "");
    if (s->ms_before >= 0)
      printf("   measured: %.2f ms%s", s->ms_before, s->ms_after >= 0 ? "" : "\n");
    if (s->ms_before >= 0 && s->ms_after >= 0) printf(" -> %.2f ms\n", s->ms_after);
    printf("   size:     %s; table %lld rows", size_text(s->size_bytes, sz, sizeof sz),
           (long long)s->table_rows);
    if (s->table_writes >= 0) printf(", %lld rows written since the stats reset", (long long)s->table_writes);
    printf("\n");
    if (s->write_warning) printf("   warning:  %s\n", s->write_warning);
    char pw[512];
    if (profile_warning(&m[i], pw, sizeof pw)) printf("   warning:  %s\n", pw);
    double wpd = writes_per_day(s->table, g_have_store);
    if (wpd >= 0) printf("   writes:   %.1f write statements per day to %s (profile)\n", wpd, s->table);
    if (m[i].saved_ms_day >= 0)
      printf("   saves:    %.1f ms per day (%s)\n", m[i].saved_ms_day,
             m[i].measured ? "measured" : "estimated from the cost cut x mean time");
    for (size_t k = 0; k < m[i].nitems; k++) {
      const item *it = &v[m[i].items[k]];
      printf("   for:      %s%s%s\n", it->from_store ? it->fp : "", it->from_store ? " " : "",
             rq_shorten(it->sql, 90, qb, sizeof qb));
    }
  }
  bool head = false;
  for (size_t i = 0; i < n; i++) {
    if (v[i].adv == NULL) continue;
    for (size_t k = 0; k < qp_advice_finding_count(v[i].adv); k++) {
      const qp_advice_finding *f = qp_advice_finding_at(v[i].adv, k);
      if (!head) printf("\n%sNot indexes:%s\n", bold, reset);
      head = true;
      printf("  - %s (%s): %s\n    %s\n", f->rule, rq_shorten(v[i].sql, 60, qb, sizeof qb),
             f->message, f->action);
    }
  }
  head = false;
  for (size_t i = 0; i < n; i++) {
    if (v[i].adv == NULL && v[i].st != QP_OK) {
      if (!head) printf("\n%sNotes:%s\n", bold, reset);
      head = true;
      printf("  - %s: %s\n", rq_shorten(v[i].sql, 60, qb, sizeof qb), v[i].err);
      continue;
    }
    for (size_t k = 0; v[i].adv && k < qp_advice_note_count(v[i].adv); k++) {
      if (!head) printf("\n%sNotes:%s\n", bold, reset);
      head = true;
      printf("  - %s%s%s\n", n > 1 ? rq_shorten(v[i].sql, 50, qb, sizeof qb) : "", n > 1 ? ": " : "",
             qp_advice_note_at(v[i].adv, k));
    }
  }
  for (size_t i = 0; i < n; i++)
    if (v[i].adv) {
      printf("\nPlans: %s%s.\n", qp_advice_summary_get(v[i].adv)->plan_source,
             n > 1 ? " (first statement; see --format json for each)" : "");
      break;
    }
}

int cmd_advise(int argc, char **argv) {
  static const struct option longopts[] = {
      {"dsn", required_argument, NULL, 'd'},     {"query", required_argument, NULL, 'q'},
      {"file", required_argument, NULL, 'F'},    {"store", required_argument, NULL, 's'},
      {"top", required_argument, NULL, 'n'},     {"since", required_argument, NULL, 'S'},
      {"analyze", no_argument, NULL, 'a'},       {"analyze-writes", no_argument, NULL, 'w'},
      {"verify", required_argument, NULL, 'v'},  {"format", required_argument, NULL, 'f'},
      {"statement-timeout", required_argument, NULL, 'T'},
      {"lock-timeout", required_argument, NULL, 'L'},
      {"save", no_argument, NULL, 'W'},
      {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
  const char *dsn = NULL, *query = NULL, *file = NULL, *store = NULL, *format = "text";
  int64_t top = 20, since = INT64_MIN;
  bool save = false;
  qp_advise_options o;
  qp_advise_options_init(&o);
  int c;
  while ((c = getopt_long(argc, argv, "d:q:F:s:n:S:awv:f:T:L:Wh", longopts, NULL)) != -1) {
    switch (c) {
    case 'd': dsn = optarg; break;
    case 'q': query = optarg; break;
    case 'F': file = optarg; break;
    case 's': store = optarg; break;
    case 'n':
      if (!parse_i64(optarg, 1, &top))
        return cli_usage_error(VERB, "--top needs a number >= 1, not '%s'", optarg);
      break;
    case 'S':
      if (!rq_parse_time(VERB, "--since", optarg, &since)) return QP_EXIT_USAGE;
      break;
    case 'a': o.analyze = true; break;
    case 'w': o.analyze_writes = true; break;
    case 'v':
      if (qp_advise_verify_parse(optarg, &o.verify) != QP_OK)
        return cli_usage_error(VERB, "--verify must be hypo, real or none, not '%s'", optarg);
      break;
    case 'f': format = optarg; break;
    case 'T':
      if (!parse_i64(optarg, 1, &o.statement_timeout_ms))
        return cli_usage_error(VERB, "--statement-timeout needs milliseconds >= 1, not '%s'", optarg);
      break;
    case 'L':
      if (!parse_i64(optarg, 1, &o.lock_timeout_ms))
        return cli_usage_error(VERB, "--lock-timeout needs milliseconds >= 1, not '%s'", optarg);
      break;
    case 'W': save = true; break;
    case 'h': usage(stdout); return QP_EXIT_OK;
    default: return cli_usage_error(VERB, "unknown option");
    }
  }
  if (optind < argc) return cli_usage_error(VERB, "unexpected argument '%s'", argv[optind]);
  if (dsn == NULL) return cli_usage_error(VERB, "--dsn is required");
  if ((query != NULL) + (file != NULL) + (store != NULL) != 1)
    return cli_usage_error(VERB, "give exactly one of --query, --file and --store");
  if (save && store == NULL)
    return cli_usage_error(VERB, "--save needs --store (the advice is kept in that store)");
  bool json = strcmp(format, "json") == 0;
  if (!json && strcmp(format, "text") != 0)
    return cli_usage_error(VERB, "--format must be text or json, not '%s'", format);

  /* SQLite: each statement through qp_advise_dsn, which copies the file
   * (a pool on the live file would switch it to WAL) */
  const bool sqlite = strncmp(dsn, "sqlite:", 7) == 0;
  item *v = NULL;
  size_t n = 0;
  int rc = QP_EXIT_OK;
  if (query != NULL) {
    if (!add_item(&v, &n, query, strlen(query))) return cli_fail(VERB, "out of memory");
  } else if (file != NULL) {
    size_t len;
    char *text = cli_read_all(file, &len);
    if (text == NULL) return cli_fail(VERB, "cannot read %s: %s", file, strerror(errno));
    size_t pos = 0, start, slen;
    while (qp_sql_split_next(QP_DIALECT_POSTGRES, text, len, &pos, &start, &slen))
      if (!add_item(&v, &n, text + start, slen)) {
        free(text);
        return cli_fail(VERB, "out of memory");
      }
    free(text);
    if (n == 0) return cli_fail(VERB, "%s holds no statement", file);
  } else {
    rc = load_store(store, since, top, sqlite, &v, &n);
    g_have_store = true;
  }

  qp_pool *pool = NULL;
  qp_conn *conn = NULL;
  if (rc == QP_EXIT_OK && !sqlite) {
    qp_pool_options po;
    qp_pool_options_init(&po);
    po.dsn = dsn;
    po.max_size = 1;
    po.connect_timeout_ms = 5000;
    po.acquire_timeout_ms = 6000;
    char msg[1024];
    if (qp_pool_open(&pool, &po, msg, sizeof msg) != QP_OK)
      rc = cli_fail(VERB, "%s", msg);
    else if (qp_pool_acquire_msg(pool, &conn, -1, msg, sizeof msg) != QP_OK)
      rc = cli_fail(VERB, "cannot connect: %s", msg);
  }
  size_t ok = 0;
  bool progress = rc == QP_EXIT_OK && n > 1 && isatty(STDERR_FILENO);
  for (size_t i = 0; rc == QP_EXIT_OK && i < n; i++) {
    if (progress) fprintf(stderr, "\rqprof advise: %zu/%zu statements...", i + 1, n);
    v[i].st = sqlite ? qp_advise_dsn(dsn, v[i].sql, &o, &v[i].adv, v[i].err, sizeof v[i].err)
                     : qp_advise_conn(conn, v[i].sql, &o, &v[i].adv, v[i].err, sizeof v[i].err);
    if (v[i].st == QP_OK) ok++;
    if (v[i].st == QP_UNAVAILABLE || (!sqlite && qp_conn_txn_status(conn) == QP_TXN_UNKNOWN)) {
      rc = cli_fail(VERB, "%s", v[i].err);
      break;
    }
    if (v[i].st != QP_OK && n == 1) rc = cli_fail(VERB, "%s", v[i].err);
    else if (v[i].st != QP_OK) fprintf(stderr, "%sqprof advise: statement %zu: %s\n",
                                       progress ? "\n" : "", i + 1, v[i].err);
  }
  if (progress) fprintf(stderr, "\r\033[K");
  if (rc == QP_EXIT_OK && ok == 0) rc = cli_fail(VERB, "no statement could be advised on");
  qp_pool_release(conn);
  qp_pool_close(pool);
  if (rc == QP_EXIT_OK) {
    size_t nm = 0;
    merged *m = merge(v, n, &nm);
    char *doc = json || save ? advice_json(dsn, &o, v, n, m, nm) : NULL;
    if ((json || save) && doc == NULL) {
      rc = cli_fail(VERB, "out of memory");
    } else {
      if (json) {
        fputs(doc, stdout);
        fputc('\n', stdout);
      } else {
        print_text(v, n, m, nm);
      }
      if (save) rc = save_advice(store, dsn, doc, json);
    }
    free(doc);
    for (size_t i = 0; i < nm; i++) free(m[i].items);
    free(m);
    if (rc == QP_EXIT_OK && (fflush(stdout) != 0 || ferror(stdout)))
      rc = cli_fail(VERB, "cannot write the advice");
  }
  for (size_t i = 0; i < n; i++) {
    qp_advice_free(v[i].adv);
    free(v[i].sql);
  }
  free(v);
  free(g_writes);
  g_writes = NULL;
  g_nwrites = 0;
  return rc;
}
