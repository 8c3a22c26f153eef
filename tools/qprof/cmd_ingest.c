/* qprof ingest: PostgreSQL server logs (stderr, csvlog, jsonlog; plain or gzip) into a store. */
#include <getopt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "report_common.h"

static const char *const VERB = "ingest";

static void usage(FILE *f) {
  fprintf(f,
          "Usage: qprof ingest [--store PATH] [--format auto|stderr|csvlog|jsonlog]\n"
          "                    [--prefix LOG_LINE_PREFIX] [--since TIME] [--until TIME]\n"
          "                    [--progress|--no-progress] [--rescan] [--sample]\n"
          "                    [--redact P=R]... [--rule P=R]... [--ignore REGEX] FILE... | -\n\n"
          "Reads PostgreSQL server logs into a profile store, so that report, diff and\n"
          "advise work on them as on a profile recorded by the shim or the pool: each\n"
          "logged statement (log_min_duration_statement, log_statement + log_duration,\n"
          "the extended protocol's parse/bind/execute, ERROR with its STATEMENT) is one\n"
          "call at its logged end time, with the same fingerprint. Files may be\n"
          "gzip-compressed; '-' is standard input. The store remembers how far each file\n"
          "was read: reading it again adds only what is new (a rotated or truncated file\n"
          "is read from its start). docs/ingest.md has the details.\n\n"
          "Options:\n"
          "  --store PATH       the store (default: $QPROF_STORE, else ./qprof.db)\n"
          "  --format F         auto (default: told from the first lines), stderr, csvlog\n"
          "                     or jsonlog\n"
          "  --prefix P         the server's log_line_prefix (stderr format); default: the\n"
          "                     common ones are recognized from the first lines\n"
          "  --since TIME       only statements that ended at or after TIME (ISO 8601,\n"
          "                     @UNIX, -2h, ...)\n"
          "  --until TIME       only statements that ended before TIME\n"
          "  --progress         a progress line on stderr (default: when it is a terminal)\n"
          "  --no-progress      no progress line\n"
          "  --rescan           read files from their start even if read before\n"
          "  --sample           keep one redacted sample statement per query, with its\n"
          "                     parameters in place\n"
          "  --redact P=R       a sample redaction rule (repeatable; see qprof run)\n"
          "  --rule P=R         a normalization rule, as the recorder used (repeatable)\n"
          "  --ignore REGEX     statements whose normalized text matches are not recorded\n"
          "  -h, --help         this text\n\n"
          "Exit status: 0 when every file was read; 1 when one could not be (a message\n"
          "names it: nothing in it parsed, it cannot be opened, the store failed).\n");
}

typedef struct progress {
  const char *name;
  struct timespec start;
  bool on;
  bool shown;
} progress;

static double since_s(const struct timespec *t0) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static void on_progress(void *ud, uint64_t done, uint64_t total) {
  progress *p = ud;
  if (!p->on) return;
  double s = since_s(&p->start), mb = (double)done / 1e6, rate = s > 0 ? mb / s : 0;
  if (total > 0) {
    double left = rate > 0 ? ((double)total / 1e6 - mb) / rate : 0;
    if (left < 0) left = 0;
    fprintf(stderr, "\r%s: %.1f / %.1f MB (%3.0f%%)  %.0f MB/s  ETA %d:%02d ", p->name, mb,
            (double)total / 1e6, total ? 100.0 * (double)done / (double)total : 0, rate,
            (int)left / 60, (int)left % 60);
  } else {
    fprintf(stderr, "\r%s: %.1f MB  %.0f MB/s ", p->name, mb, rate);
  }
  p->shown = true;
}

static const char *start_text(qp_ingest_start s) {
  switch (s) {
  case QP_INGEST_NEW: return "new";
  case QP_INGEST_RESUMED: return "resumed";
  case QP_INGEST_UNCHANGED: return "unchanged since the last read";
  case QP_INGEST_REPLACED: return "replaced or truncated since the last read: read from its start";
  case QP_INGEST_RESCAN: return "read again from its start (--rescan)";
  default: return "standard input";
  }
}

typedef struct strs {
  const char **v;
  size_t n;
} strs;

static bool push(strs *s, const char *v) {
  const char **nv = realloc(s->v, (s->n + 1) * sizeof *nv);
  if (nv == NULL) return false;
  nv[s->n++] = v;
  s->v = nv;
  return true;
}

/* Reads one file; prints its summary; returns an exit code. */
static int ingest_one(const char *path, qp_store *store, const qp_profile_options *po,
                      const qp_ingest_options *base, const qp_ingest_file_options *fo0,
                      bool show_progress) {
  qp_ingest_options o = *base;
  o.name = path;
  char err[512];
  /* a profile per file: what a failed file recorded never reaches the store
   * with another file's position */
  qp_profile *prof;
  if (qp_profile_new(&prof, po, err, sizeof err) != QP_OK) return cli_usage_error(VERB, "%s", err);
  qp_ingest *in;
  if (qp_ingest_new(&in, prof, &o, err, sizeof err) != QP_OK) {
    qp_profile_free(prof);
    return cli_usage_error(VERB, "%s", err);
  }
  progress pg = {.name = path, .on = show_progress};
  clock_gettime(CLOCK_MONOTONIC, &pg.start);
  qp_ingest_file_options fo = *fo0;
  fo.progress = on_progress;
  fo.progress_ud = &pg;
  qp_ingest_file_result res;
  qp_status rc = qp_ingest_file(in, store, path, &fo, &res);
  if (pg.shown) fputs("\r\033[K", stderr);
  qp_ingest_stats st = {.size = sizeof st};
  qp_ingest_get_stats(in, &st);
  int code = QP_EXIT_OK;
  if (rc != QP_OK) {
    code = cli_fail(VERB, "%s", qp_ingest_errmsg(in));
  } else if (res.start == QP_INGEST_UNCHANGED) {
    printf("%s: unchanged since the last read (%llu bytes read before)\n", path,
           (unsigned long long)res.to);
  } else {
    double s = since_s(&pg.start);
    printf("%s: %s%s, %s format%s%s%s: %llu lines, %llu statements recorded (%llu errors",
           path, start_text(res.start), res.gzip ? ", gzip" : "", qp_log_format_name(st.format),
           st.prefix ? " with prefix '" : "", st.prefix ? st.prefix : "", st.prefix ? "'" : "",
           (unsigned long long)st.lines, (unsigned long long)st.statements,
           (unsigned long long)st.errors);
    if (st.no_duration) printf(", %llu without a duration", (unsigned long long)st.no_duration);
    printf(") in %.2f s\n", s);
    if (st.outside)
      printf("  %llu statements outside --since/--until, not recorded\n",
             (unsigned long long)st.outside);
    if (st.errors_without_statement)
      printf("  %llu errors logged without their statement (log_min_error_statement)\n",
             (unsigned long long)st.errors_without_statement);
    if (st.plans) {
      uint64_t detail = st.plans - st.plan_calls - st.plans_unread;
      printf("  %llu auto_explain plans: %llu of statements logged with their duration (counted "
             "once, from that line), %llu recorded as calls",
             (unsigned long long)st.plans, (unsigned long long)detail,
             (unsigned long long)st.plan_calls);
      if (st.plans_unread)
        printf(", %llu not read (a format other than text or JSON)",
               (unsigned long long)st.plans_unread);
      printf("\n");
    }
    if (st.unknown_zone)
      printf("  time zone '%s' unknown: its times were read as UTC\n", st.unknown_zone);
    if (st.unparsed)
      printf("  %llu lines not read as log lines; the first, line %llu: '%s'\n",
             (unsigned long long)st.unparsed, (unsigned long long)st.first_unparsed_line,
             st.first_unparsed ? st.first_unparsed : "");
  }
  qp_ingest_free(in);
  qp_profile_free(prof);
  return code;
}

int cmd_ingest(int argc, char **argv) {
  static const struct option longopts[] = {
      {"store", required_argument, NULL, 's'},   {"format", required_argument, NULL, 'f'},
      {"prefix", required_argument, NULL, 'p'},  {"since", required_argument, NULL, 'S'},
      {"until", required_argument, NULL, 'U'},   {"progress", no_argument, NULL, 'P'},
      {"no-progress", no_argument, NULL, 'N'},   {"rescan", no_argument, NULL, 'R'},
      {"sample", no_argument, NULL, 'a'},        {"redact", required_argument, NULL, 'r'},
      {"rule", required_argument, NULL, 'u'},    {"ignore", required_argument, NULL, 'i'},
      {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
  const char *store_opt = NULL;
  qp_ingest_options io;
  qp_ingest_options_init(&io);
  qp_ingest_file_options fo;
  qp_ingest_file_options_init(&fo);
  qp_profile_options po = {0};
  strs redact = {0}, rules = {0};
  int show = -1;
  int c, code = QP_EXIT_OK;
  while ((c = getopt_long(argc, argv, "s:f:p:S:U:h", longopts, NULL)) != -1) {
    switch (c) {
    case 's': store_opt = optarg; break;
    case 'f':
      if (qp_log_format_parse(optarg, &io.format) != QP_OK)
        return cli_usage_error(VERB, "--format must be auto, stderr, csvlog or jsonlog, not '%s'",
                               optarg);
      break;
    case 'p': io.prefix = optarg; break;
    case 'S':
      if (!rq_parse_time(VERB, "--since", optarg, &io.since_ns)) return QP_EXIT_USAGE;
      break;
    case 'U':
      if (!rq_parse_time(VERB, "--until", optarg, &io.until_ns)) return QP_EXIT_USAGE;
      break;
    case 'P': show = 1; break;
    case 'N': show = 0; break;
    case 'R': fo.rescan = true; break;
    case 'a': po.sample = true; break;
    case 'r':
      if (!push(&redact, optarg)) return cli_fail(VERB, "out of memory");
      break;
    case 'u':
      if (!push(&rules, optarg)) return cli_fail(VERB, "out of memory");
      break;
    case 'i': po.ignore = optarg; break;
    case 'h': usage(stdout); return QP_EXIT_OK;
    default: return cli_usage_error(VERB, "unknown option");
    }
  }
  if (optind >= argc) return cli_usage_error(VERB, "name the log files to read ('-' for stdin)");
  if (io.since_ns != 0 && io.until_ns != 0 && io.since_ns >= io.until_ns)
    return cli_usage_error(VERB, "--since must be before --until");
  int nstdin = 0;
  for (int i = optind; i < argc; i++) nstdin += strcmp(argv[i], "-") == 0;
  if (nstdin > 1) return cli_usage_error(VERB, "standard input ('-') can be read only once");
  po.redact = redact.v;
  po.nredact = redact.n;
  po.rules = rules.v;
  po.nrules = rules.n;
  char err[512];
  qp_profile *prof; /* checks the rules and patterns before anything is opened */
  if (qp_profile_new(&prof, &po, err, sizeof err) != QP_OK) {
    free(redact.v);
    free(rules.v);
    return cli_usage_error(VERB, "%s", err);
  }
  qp_profile_free(prof);
  const char *loc = rq_store_path(store_opt);
  qp_store *store;
  if (qp_store_open(&store, loc, QP_STORE_WRITE, NULL, err, sizeof err) != QP_OK) {
    free(redact.v);
    free(rules.v);
    return cli_fail(VERB, "%s", err);
  }
  bool progress_on = show == 1 || (show == -1 && isatty(STDERR_FILENO));
  for (int i = optind; i < argc; i++) {
    int r = ingest_one(argv[i], store, &po, &io, &fo, progress_on);
    if (r != QP_EXIT_OK && code == QP_EXIT_OK) code = r;
    fflush(stdout);
  }
  qp_store_close(store);
  free(redact.v);
  free(rules.v);
  return code;
}
