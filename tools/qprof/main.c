/* qprof: the command-line tool. One verb per cmd_<verb>.c; this file only dispatches. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const cli_verb verbs[] = {
    /* VERBS: keep sorted by how often people use them. */
    {"run", cmd_run, "run a command with its libpq/sqlite3 queries profiled (LD_PRELOAD)"},
    {"collect", cmd_collect, "harvest a run directory of the shim into a store, as a daemon (services)"},
    {"ingest", cmd_ingest, "read PostgreSQL server logs (stderr, csvlog, jsonlog; gzip) into a store"},
    {"report", cmd_report, "rank the recorded queries of a profile store (text, JSON, CSV or HTML)"},
    {"diff", cmd_diff, "compare two profiles per query; exit 3 on a p95 regression (CI gate)"},
    {"advise", cmd_advise, "index advice from EXPLAIN, each index proven on the database (HypoPG or rolled back)"},
    {"normalize", cmd_normalize, "fingerprint and normalized text of each statement of a SQL script"},
    {"prune", cmd_prune, "delete old minute/hour/day rows of a store; the roll-ups above keep the totals"},
    {"compact", cmd_compact, "fold the deltas of append-only (INSERT-only) writers into a PostgreSQL store"},
    {"config", cmd_config, "list options, their defaults, QPROF_* variables and current values"},
};

static void print_usage(FILE *f) {
  fprintf(f, "Usage: qprof VERB [options]\n\nWhere database time goes.\n\nVerbs:\n");
  for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
    fprintf(f, "  %-10s %s\n", verbs[i].name, verbs[i].summary);
  fprintf(f, "\nOptions:\n  -h, --help     this text\n  -V, --version  versions of qprof and "
             "the libraries it runs with\n\n'qprof VERB --help' describes each verb.\n");
}

static void print_version(void) {
  printf("qprof %s\nlibpq %s\nSQLite %s\nPCRE2 %s\n", qp_version(), qp_libpq_version(),
         qp_sqlite_version(), qp_pcre2_version());
}

int main(int argc, char **argv) {
  if (argc < 2) {
    print_usage(stderr);
    return QP_EXIT_USAGE;
  }
  const char *verb = argv[1];
  if (strcmp(verb, "-h") == 0 || strcmp(verb, "--help") == 0 || strcmp(verb, "help") == 0) {
    print_usage(stdout);
    return QP_EXIT_OK;
  }
  if (strcmp(verb, "-V") == 0 || strcmp(verb, "--version") == 0 || strcmp(verb, "version") == 0) {
    print_version();
    return QP_EXIT_OK;
  }
  for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
    if (strcmp(verbs[i].name, verb) == 0) {
      optind = 1; /* each verb parses its own options from argv[1..] */
      return verbs[i].run(argc - 1, argv + 1);
    }
  }
  fprintf(stderr, "qprof: unknown verb '%s'\nTry 'qprof --help'.\n", verb);
  return QP_EXIT_USAGE;
}
