/* qprof prune: delete old minute (hour, day) rows of a store, keeping the roll-ups above them. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "report_common.h"

static const char *const VERB = "prune";

static void usage(FILE *f) {
  fprintf(f,
          "Usage: qprof prune --older-than DURATION [--level minute|hour|day]\n"
          "                   [--store PATH|DSN] [--dry-run] [--vacuum]\n\n"
          "Deletes old statistics so that a store kept for a year stays small. A store\n"
          "keeps every query at six levels: the recorded buckets (a minute), 10 minutes,\n"
          "hours, 6 hours, UTC days and all time. Pruning a level deletes its rows (and\n"
          "those of the finer levels) that start before now - DURATION, rounded down to a\n"
          "whole hour for minute, to a whole UTC day for hour and day; the levels above\n"
          "still hold them, so reports over the pruned time stay exact at their\n"
          "resolution. Pruning minutes keeps the 10-minute rows, pruning hours keeps the\n"
          "6-hour rows. The all-time totals are never deleted. One transaction: all or\n"
          "nothing.\n\n"
          "Options:\n"
          "  --older-than D  what to delete: older than D, e.g. 30d, 12h, 90m, 3600s, 2w\n"
          "                  (s, m, h, d, w; a fraction like 1.5d too)\n"
          "  --level L       minute (default): the recorded buckets; hour: those, the\n"
          "                  10-minute and the hourly rows; day: those, the 6-hour and\n"
          "                  the daily rows\n"
          "  --store PATH    the store: an SQLite file or a PostgreSQL DSN (default:\n"
          "                  $QPROF_STORE, else ./qprof.db)\n"
          "  --dry-run       say how many rows would be deleted; delete nothing\n"
          "  --vacuum        then give the space back: SQLite VACUUM (rewrites the file,\n"
          "                  needs as much free disk again; flushers wait meanwhile),\n"
          "                  PostgreSQL VACUUM of the two tables\n"
          "  -h, --help      this text\n\n"
          "Without --vacuum the SQLite file keeps its size: the freed pages are reused by\n"
          "later flushes. Exit status: 0 pruned (or nothing to prune), 1 the store could\n"
          "not be pruned (message says why), 2 usage error.\n");
}

/* A duration as `report --since -D` takes it: digits, an optional fraction,
 * one unit. Checked here, so that "-D" means nothing else to the parser. */
static bool duration_ok(const char *t) {
  const char *p = t;
  if (*p < '0' || *p > '9') return false;
  while (*p >= '0' && *p <= '9') p++;
  if (*p == '.') {
    p++;
    if (*p < '0' || *p > '9') return false;
    while (*p >= '0' && *p <= '9') p++;
  }
  return strcmp(p, "s") == 0 || strcmp(p, "m") == 0 || strcmp(p, "min") == 0 ||
         strcmp(p, "h") == 0 || strcmp(p, "d") == 0 || strcmp(p, "w") == 0;
}

static const char *bytes_text(int64_t n, char *buf, size_t len) {
  if (n < 1024) snprintf(buf, len, "%lld bytes", (long long)n);
  else if (n < 1024 * 1024) snprintf(buf, len, "%.1f KiB", (double)n / 1024);
  else if (n < 1024LL * 1024 * 1024) snprintf(buf, len, "%.1f MiB", (double)n / (1024 * 1024));
  else snprintf(buf, len, "%.2f GiB", (double)n / (1024.0 * 1024 * 1024));
  return buf;
}

static void print_result(const char *loc, bool dsn, qp_prune_level level, bool dry,
                         bool vacuum, const qp_prune_result *r) {
  /* the 10-minute rows go with the hours, the 6-hour rows with the days */
  static const char *const names[] = {"minute", "hour and 10-minute", "day and 6-hour"};
  char when[40], a[32], b[32];
  printf("%s: rows of buckets starting before %s\n", loc, rq_iso(r->cutoff_ns, when, sizeof when));
  const char *verb = dry ? "would be deleted" : "deleted";
  for (int i = 0; i <= (int)level; i++)
    printf("%s rows %s: %llu\n", names[i], verb, (unsigned long long)r->rows[i]);
  printf("query texts %s: %llu\n", verb, (unsigned long long)r->texts);
  if (dry) printf("nothing was deleted (--dry-run)\n");
  if (r->size_bytes < 0) return;
  if (r->free_bytes < 0) {
    printf("store size: %s\n", bytes_text(r->size_bytes, a, sizeof a));
    return;
  }
  printf("store size: %s, of which %s free pages\n", bytes_text(r->size_bytes, a, sizeof a),
         bytes_text(r->free_bytes, b, sizeof b));
  if (!dsn && !vacuum && r->free_bytes > 0 && r->free_bytes * 4 >= r->size_bytes)
    printf("(later flushes reuse free pages; 'qprof prune --vacuum' or sqlite3 FILE VACUUM "
           "returns them to the file system)\n");
}

int cmd_prune(int argc, char **argv) {
  static const struct option longopts[] = {
      {"older-than", required_argument, NULL, 'o'}, {"level", required_argument, NULL, 'l'},
      {"store", required_argument, NULL, 's'},      {"dry-run", no_argument, NULL, 'n'},
      {"vacuum", no_argument, NULL, 'v'},           {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *store_opt = NULL, *older = NULL;
  qp_prune_level level = QP_PRUNE_MINUTE;
  bool dry = false, vacuum = false;
  int c;
  while ((c = getopt_long(argc, argv, "o:l:s:nvh", longopts, NULL)) != -1) {
    switch (c) {
    case 'o': older = optarg; break;
    case 'l':
      if (strcmp(optarg, "minute") == 0) level = QP_PRUNE_MINUTE;
      else if (strcmp(optarg, "hour") == 0) level = QP_PRUNE_HOUR;
      else if (strcmp(optarg, "day") == 0) level = QP_PRUNE_DAY;
      else return cli_usage_error(VERB, "--level must be minute, hour or day, not '%s'", optarg);
      break;
    case 's': store_opt = optarg; break;
    case 'n': dry = true; break;
    case 'v': vacuum = true; break;
    case 'h': usage(stdout); return QP_EXIT_OK;
    default: return cli_usage_error(VERB, "unknown option");
    }
  }
  if (optind < argc) return cli_usage_error(VERB, "unexpected argument '%s'", argv[optind]);
  if (older == NULL) return cli_usage_error(VERB, "--older-than DURATION is required (e.g. 30d)");
  char rel[64];
  int64_t before_ns;
  if (!duration_ok(older) || snprintf(rel, sizeof rel, "-%s", older) >= (int)sizeof rel ||
      qp_report_parse_time(rel, &before_ns) != QP_OK)
    return cli_usage_error(VERB,
                           "--older-than '%s' is not a duration (a number and s, m, h, d or w: "
                           "30d, 12h, 90m, 3600s, 2w)",
                           older);

  /* Opened for reading first, so that a store that does not exist is
   * refused rather than created (and a foreign file named before anything
   * could write to it); then for writing, unless this is a dry run. */
  const char *loc = rq_store_path(store_opt);
  bool dsn = qp_store_is_dsn(loc);
  char err[1024];
  qp_store *s;
  qp_status rc = qp_store_open(&s, loc, QP_STORE_READ, NULL, err, sizeof err);
  if (rc == QP_NOTFOUND) return cli_fail(VERB, "%s (nothing to prune; --store names the store)", err);
  if (rc != QP_OK) return cli_fail(VERB, "%s", err);
  if (!dry) {
    qp_store_close(s);
    rc = qp_store_open(&s, loc, QP_STORE_WRITE, NULL, err, sizeof err);
    if (rc != QP_OK) return cli_fail(VERB, "%s", err);
  }
  unsigned flags = (dry ? QP_PRUNE_DRY_RUN : 0u) | (vacuum ? QP_PRUNE_VACUUM : 0u);
  qp_prune_result r;
  rc = qp_store_prune(s, before_ns, level, flags, &r);
  int code = QP_EXIT_OK;
  if (rc != QP_OK) code = cli_fail(VERB, "%s", qp_store_errmsg(s));
  if (rc == QP_OK || r.rows[0] + r.rows[1] + r.rows[2] + r.texts > 0)
    print_result(qp_store_location(s), dsn, level, dry, vacuum, &r);
  qp_store_close(s);
  return code;
}
