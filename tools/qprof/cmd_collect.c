/*
 * qprof collect: the collector as a daemon, for programs that `qprof run`
 * did not start (a service whose unit sets LD_PRELOAD and QPROF_RUN_DIR).
 * Also the collector code `qprof run` uses (cli_collector_*).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static void log_to_stderr(qp_log_level level, const char *message, void *ud) {
  (void)level;
  fprintf(stderr, "qprof %s: %s\n", (const char *)ud, message);
}

static bool collector_round(cli_collector *c);

int cli_collector_open(cli_collector *c, const char *verb, const char *run_dir,
                       const char *store_location, const char *ignore) {
  memset(c, 0, sizeof *c);
  c->verb = verb;
  c->store_location = store_location;
  qp_hooks hooks = {.log_fn = log_to_stderr, .log_ud = (void *)verb, .log_min_level = QP_LOG_WARN};
  char err[512];
  qp_status rc = qp_harvester_new(&c->hv, run_dir, ignore, &hooks, err, sizeof err);
  if (rc != QP_OK) return cli_fail(verb, "%s", err);
  return QP_EXIT_OK;
}

bool cli_collector_pass(cli_collector *c) {
  /* A harvest record an earlier collector left is settled by the first
   * commit, which gathers nothing: then this pass gathers and writes. */
  for (int round = 0;; round++) {
    bool earlier = qp_harvester_in_doubt(c->hv);
    if (!collector_round(c)) return false;
    if (!earlier || round > 0 || qp_harvester_in_doubt(c->hv)) return true;
  }
}

static bool collector_round(cli_collector *c) {
  qp_harvest_stats st;
  qp_status rc = qp_harvester_collect(c->hv, &st);
  if (rc != QP_OK) {
    if (!c->failed) cli_fail(c->verb, "%s", qp_harvester_errmsg(c->hv));
    c->failed = true;
    return false;
  }
  c->refused += st.refused;
  c->live = st.live;
  if ((st.statements > 0 || st.dropped > 0 || qp_harvester_in_doubt(c->hv)) && c->store == NULL) {
    char err[512];
    rc = qp_store_open(&c->store, c->store_location, QP_STORE_WRITE, NULL, err, sizeof err);
    if (rc != QP_OK) {
      c->store = NULL;
      if (!c->failed) cli_fail(c->verb, "cannot write the profile: %s", err);
      c->failed = true;
      return false;
    }
  }
  rc = qp_harvester_commit(c->hv, c->store);
  if (rc != QP_OK) {
    if (!c->failed) cli_fail(c->verb, "%s", qp_harvester_errmsg(c->hv));
    c->failed = true;
    /* A store that failed may work when opened again (a file replaced);
     * except one that could not tell whether the write committed: only
     * that handle can ask, at the next commit. */
    if (!qp_harvester_in_doubt(c->hv)) {
      qp_store_close(c->store);
      c->store = NULL;
    }
    return false;
  }
  if (c->failed) fprintf(stderr, "qprof %s: the store is written again\n", c->verb);
  c->failed = false;
  c->statements += st.statements;
  c->dropped += st.dropped;
  return true;
}

void cli_collector_close(cli_collector *c) {
  qp_harvester_free(c->hv);
  qp_store_close(c->store);
  memset(c, 0, sizeof *c);
}

static void usage(FILE *f) {
  fprintf(f,
          "Usage: qprof collect --run-dir DIR [--store S] [options]\n\n"
          "Harvests the segments that programs under the shim record into DIR (their\n"
          "QPROF_RUN_DIR) and writes them to the store, every --flush-ms, until SIGTERM or\n"
          "SIGINT; then harvests once more and exits. DIR is created (mode 0700) when\n"
          "missing; it must belong to the user collect runs as, the same user as the\n"
          "programs. Segments of processes that have ended are removed once written.\n\n"
          "Options:\n"
          "  --run-dir DIR    the run directory (QPROF_RUN_DIR)\n"
          "  --store S        profile store: a file, or a postgresql:// DSN (QPROF_STORE;\n"
          "                   default ./qprof.db)\n"
          "  --flush-ms N     harvest every N ms (QPROF_FLUSH_MS; default 1000)\n"
          "  --once           harvest once and exit (exit 1 when the store cannot be written)\n"
          "  -h, --help       this text\n\n"
          "QPROF_IGNORE applies as in 'qprof run'. See docs/shim.md for a systemd unit.\n");
}

static bool parse_ms(const char *s, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || errno != 0 || v < 10 || v > 3600000) return false;
  *out = v;
  return true;
}

int cmd_collect(int argc, char **argv) {
  static const struct option longopts[] = {{"run-dir", required_argument, NULL, 'd'},
                                           {"store", required_argument, NULL, 's'},
                                           {"flush-ms", required_argument, NULL, 'f'},
                                           {"once", no_argument, NULL, 'o'},
                                           {"help", no_argument, NULL, 'h'},
                                           {NULL, 0, NULL, 0}};
  const char *dir = getenv("QPROF_RUN_DIR"), *store = getenv("QPROF_STORE");
  const char *env_flush = getenv("QPROF_FLUSH_MS");
  long flush_ms = 1000;
  bool once = false;
  if (env_flush != NULL && env_flush[0] != '\0' && !parse_ms(env_flush, &flush_ms))
    return cli_usage_error("collect", "QPROF_FLUSH_MS must be 10..3600000 ms, not '%s'", env_flush);
  int c;
  while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    switch (c) {
    case 'd': dir = optarg; break;
    case 's': store = optarg; break;
    case 'f':
      if (!parse_ms(optarg, &flush_ms))
        return cli_usage_error("collect", "--flush-ms must be 10..3600000 ms, not '%s'", optarg);
      break;
    case 'o': once = true; break;
    case 'h': usage(stdout); return QP_EXIT_OK;
    default: return cli_usage_error("collect", "unknown option");
    }
  }
  if (optind < argc) return cli_usage_error("collect", "unexpected argument '%s'", argv[optind]);
  if (dir == NULL || dir[0] == '\0') return cli_usage_error("collect", "--run-dir DIR is required");
  if (store == NULL || store[0] == '\0') store = "qprof.db";
  const char *ignore = getenv("QPROF_IGNORE");
  if (mkdir(dir, 0700) != 0 && errno != EEXIST)
    return cli_fail("collect", "cannot create the run directory %s: %s", dir, strerror(errno));

  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigprocmask(SIG_BLOCK, &set, &old);
  cli_collector col;
  int rc = cli_collector_open(&col, "collect", dir, store, ignore);
  if (rc != QP_EXIT_OK) {
    sigprocmask(SIG_SETMASK, &old, NULL);
    return rc;
  }
  bool ok = cli_collector_pass(&col);
  while (!once) {
    struct timespec ts = {.tv_sec = flush_ms / 1000, .tv_nsec = (flush_ms % 1000) * 1000000L};
    int sig = sigtimedwait(&set, NULL, &ts);
    if (sig == SIGTERM || sig == SIGINT) {
      ok = cli_collector_pass(&col);
      break;
    }
    ok = cli_collector_pass(&col);
  }
  if (col.dropped > 0)
    fprintf(stderr, "qprof collect: %llu statements were not recorded: segment full (QPROF_SEGMENT_MB)\n",
            (unsigned long long)col.dropped);
  cli_collector_close(&col);
  sigprocmask(SIG_SETMASK, &old, NULL);
  return ok ? QP_EXIT_OK : QP_EXIT_FAIL;
}
