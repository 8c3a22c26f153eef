/* qprof compact: fold the deltas of append-only writers into a PostgreSQL store's rows. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "report_common.h"

static const char *const VERB = "compact";

static void usage(FILE *f) {
  fprintf(f,
          "Usage: qprof compact [--store DSN] [--max-rows N]\n\n"
          "Folds the deltas that writers without UPDATE appended to a PostgreSQL store\n"
          "(a role with only INSERT and SELECT appends each flush instead of merging it)\n"
          "into the store's rows. Reports are the same before and after; they read fewer\n"
          "rows after. Each transaction takes at most 5,000 deltas out and merges them in,\n"
          "all or nothing, so that none is counted twice or lost, also while writers and\n"
          "other compactions run. Run it as a role with UPDATE and DELETE on the store's\n"
          "tables (the owner, or the role that prunes); 'qprof prune' compacts first too.\n"
          "An SQLite store has no deltas: nothing to do.\n\n"
          "Options:\n"
          "  --store DSN     the store (default: $QPROF_STORE, else ./qprof.db)\n"
          "  --max-rows N    fold at most N deltas (default: all present at the start)\n"
          "  -h, --help      this text\n\n"
          "Exit status: 0 compacted (or nothing to compact), 1 the store could not be\n"
          "compacted (message says why; what committed before stays), 2 usage error.\n");
}

int cmd_compact(int argc, char **argv) {
  static const struct option longopts[] = {{"store", required_argument, NULL, 's'},
                                           {"max-rows", required_argument, NULL, 'm'},
                                           {"help", no_argument, NULL, 'h'},
                                           {NULL, 0, NULL, 0}};
  const char *store_opt = NULL;
  uint64_t max_rows = 0;
  int c;
  while ((c = getopt_long(argc, argv, "s:m:h", longopts, NULL)) != -1) {
    switch (c) {
    case 's': store_opt = optarg; break;
    case 'm': {
      char *end = NULL;
      unsigned long long v = strtoull(optarg, &end, 10);
      if (optarg[0] < '0' || optarg[0] > '9' || *end != '\0' || v == 0)
        return cli_usage_error(VERB, "--max-rows must be a positive number, not '%s'", optarg);
      max_rows = v;
      break;
    }
    case 'h': usage(stdout); return QP_EXIT_OK;
    default: return cli_usage_error(VERB, "unknown option");
    }
  }
  if (optind < argc) return cli_usage_error(VERB, "unexpected argument '%s'", argv[optind]);
  /* Opened for reading first, so that a store that does not exist is
   * refused rather than created. */
  const char *loc = rq_store_path(store_opt);
  char err[1024];
  qp_store *s;
  qp_status rc = qp_store_open(&s, loc, QP_STORE_READ, NULL, err, sizeof err);
  if (rc == QP_NOTFOUND)
    return cli_fail(VERB, "%s (nothing to compact; --store names the store)", err);
  if (rc != QP_OK) return cli_fail(VERB, "%s", err);
  qp_store_close(s);
  rc = qp_store_open(&s, loc, QP_STORE_WRITE, NULL, err, sizeof err);
  if (rc != QP_OK) return cli_fail(VERB, "%s", err);
  qp_compact_result r;
  rc = qp_store_compact(s, max_rows, &r);
  int code = QP_EXIT_OK;
  if (rc != QP_OK) code = cli_fail(VERB, "%s", qp_store_errmsg(s));
  if (rc == QP_OK || r.rows + r.dropped > 0) {
    printf("%s: deltas folded: %llu statistics, %llu dropped counts\n", qp_store_location(s),
           (unsigned long long)r.rows, (unsigned long long)r.dropped);
    if (rc == QP_OK) printf("deltas left: %llu\n", (unsigned long long)r.left);
  }
  qp_store_close(s);
  return code;
}
