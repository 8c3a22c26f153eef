/*
 * qprof run: runs a command with the LD_PRELOAD shim and its options in the
 * environment, and is its collector: the command's processes record into
 * segments in a private run directory, which this process harvests into the
 * store every flush interval and once more when the command and every
 * process that recorded have ended (docs/shim.md).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* The report verb is written in its own file; until it is linked in, --report
 * says so instead of failing the build. */
#pragma weak cmd_report

static void usage(FILE *f) {
  fprintf(f,
          "Usage: qprof run [options] -- CMD [ARGS...]\n\n"
          "Runs CMD with libqprof_preload.so preloaded: every query CMD (and the programs it\n"
          "starts) sends through libpq or sqlite3 is timed and recorded; qprof run writes\n"
          "the store from its own process while CMD runs and after it ends.\n"
          "Exits with CMD's exit status (128+N when CMD was killed by signal N), whatever\n"
          "happens to the store (a failure to write it is said on stderr). SIGINT, SIGTERM,\n"
          "SIGHUP and SIGQUIT sent to qprof run are passed on to CMD.\n\n"
          "Options:\n"
          "  --store PATH     profile store (QPROF_STORE; default ./qprof.db)\n"
          "  --slow-ms N      log queries slower than N ms to QPROF_LOG (QPROF_SLOW_MS)\n"
          "  --sample         keep one sample statement with literals per query (QPROF_SAMPLE)\n"
          "  --pipeline-flush ask the server for each pipelined query's results at once, so\n"
          "                   that each is timed by the server's order of work; costs the\n"
          "                   server a write per query (QPROF_PIPELINE_FLUSH; libpq >= 14)\n"
          "  --flush-ms N     write to the store every N ms (QPROF_FLUSH_MS; default 1000)\n"
          "  --segment-mb N   size of each process's segment (QPROF_SEGMENT_MB; default 64)\n"
          "  --wait-ms N      after CMD, wait up to N ms for processes that still record\n"
          "                   (default 2000); the rest is left to 'qprof collect'\n"
          "  --report         print 'qprof report' for the store when CMD has finished\n"
          "  -h, --help       this text\n\n"
          "Other QPROF_* variables (QPROF_IGNORE, QPROF_RULES, QPROF_LOG, ...) pass through\n"
          "from the environment; 'qprof config' lists them. The shim is $QPROF_PRELOAD when\n"
          "set, else the one of this build or installation.\n");
}

/* Where the run directory goes: $TMPDIR when set (the user's choice), else
 * a memory file system with room ($XDG_RUNTIME_DIR, then /dev/shm), else
 * /tmp. Segments are memory shared with a collector, not files to keep: on
 * tmpfs a new page of a segment costs the program less than on a disk file
 * system (no blocks to reserve), and nothing is ever written back to disk.
 * "Room" is four segments of the size asked for, at least 256 MB, so that a
 * small /dev/shm (a container's 64 MB) is not filled: a full segment counts
 * statements as dropped. */
#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif
static const char *run_dir_base(void) {
  const char *tmpdir = getenv("TMPDIR");
  if (tmpdir != NULL && tmpdir[0] == '/') return tmpdir;
  const char *seg = getenv("QPROF_SEGMENT_MB"); /* --segment-mb is in it by now */
  long long mb = seg != NULL ? atoll(seg) : 0;
  unsigned long long want = (unsigned long long)(mb > 64 ? mb : 64) * 4u << 20;
  const char *xdg = getenv("XDG_RUNTIME_DIR");
  const char *bases[] = {xdg != NULL && xdg[0] == '/' ? xdg : NULL, "/dev/shm"};
  for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++) {
    struct statfs fs;
    if (bases[i] == NULL || access(bases[i], W_OK | X_OK) != 0 || statfs(bases[i], &fs) != 0)
      continue;
    if ((unsigned long)fs.f_type == TMPFS_MAGIC &&
        (unsigned long long)fs.f_bavail * (unsigned long long)fs.f_bsize >= want)
      return bases[i];
  }
  return "/tmp";
}

/* A file store given relative to here must mean the same file to a command
 * that changes directory: make it absolute. DSNs are left alone. */
static char *absolute_store(const char *store) {
  if (store[0] == '/' || qp_store_is_dsn(store))
    return strdup(store);
  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof cwd) == NULL) return strdup(store);
  size_t len = strlen(cwd) + 1 + strlen(store) + 1;
  char *out = malloc(len);
  if (out != NULL) snprintf(out, len, "%s/%s", cwd, store);
  return out;
}

static bool parse_number(const char *s, bool integer) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (*s == '\0' || *end != '\0' || errno != 0 || v < 0) return false;
  return !integer || v == (double)(long long)v;
}

/* Every QPROF_* setting is checked before CMD starts: a bad one is a usage
 * error of qprof run (exit 2), not a shim that silently records nothing. */
static int check_settings(void) {
  qp_config *cfg = NULL;
  if (qp_config_new(&cfg, NULL) != QP_OK) return cli_fail("run", "out of memory");
  if (qp_config_load_env(cfg) != QP_OK) {
    int rc = cli_usage_error("run", "%s", qp_config_errmsg(cfg));
    qp_config_free(cfg);
    return rc;
  }
  /* The patterns, as the shim's profile will compile them. */
  char *rules = strdup(qp_config_string(cfg, "rules")), *redact = strdup(qp_config_string(cfg, "redact"));
  const char *rv[64], *dv[64];
  size_t nr = 0, nd = 0;
  for (char *t = strtok(rules, "\n"); t != NULL && nr < 64; t = strtok(NULL, "\n")) rv[nr++] = t;
  for (char *t = strtok(redact, "\n"); t != NULL && nd < 64; t = strtok(NULL, "\n")) dv[nd++] = t;
  qp_profile_options o = {.bucket_s = qp_config_int(cfg, "bucket_s"),
                          .rules = rv,
                          .nrules = nr,
                          .ignore = qp_config_string(cfg, "ignore"),
                          .redact = dv,
                          .nredact = nd};
  qp_profile *p = NULL;
  char err[512];
  qp_status st = qp_profile_new(&p, &o, err, sizeof err);
  qp_profile_free(p);
  free(rules);
  free(redact);
  qp_config_free(cfg);
  if (st != QP_OK) return cli_usage_error("run", "%s", err);
  return QP_EXIT_OK;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static struct timespec ms_ts(uint64_t ms) {
  struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
  return ts;
}

/* Removes the run directory when nothing is left in it. */
/* Removes the run directory when nothing is left in it. What could not be
 * written (the store was down at the end) stays in its segments, and the
 * message says how to write it later; the store is named without its
 * password. */
static void remove_run_dir(const char *dir, const cli_collector *col, const char *store) {
  if (rmdir(dir) == 0) return;
  char shown[1024];
  qp_dsn_redact(store, shown, sizeof shown);
  if (col->live > 0)
    fprintf(stderr,
            "qprof run: %llu processes still record into %s; 'qprof collect --run-dir %s "
            "--store \"%s\"' writes the rest\n",
            (unsigned long long)col->live, dir, dir, shown);
  else
    fprintf(stderr,
            "qprof run: %s is left behind (%s); 'qprof collect --run-dir %s --store \"%s\" --once' "
            "writes it\n",
            dir,
            col->refused  ? "refused segments"
            : col->failed ? "the store could not be written; nothing recorded is lost, it stays in the segments there"
                          : "not all written",
            dir, shown);
}

int cmd_run(int argc, char **argv) {
  static const struct option longopts[] = {{"store", required_argument, NULL, 's'},
                                           {"slow-ms", required_argument, NULL, 'w'},
                                           {"sample", no_argument, NULL, 'S'},
                                           {"pipeline-flush", no_argument, NULL, 'P'},
                                           {"flush-ms", required_argument, NULL, 'f'},
                                           {"segment-mb", required_argument, NULL, 'm'},
                                           {"wait-ms", required_argument, NULL, 'W'},
                                           {"report", no_argument, NULL, 'r'},
                                           {"help", no_argument, NULL, 'h'},
                                           {NULL, 0, NULL, 0}};
  const char *store = NULL, *slow_ms = NULL, *flush_ms = NULL, *segment_mb = NULL;
  long wait_ms = 2000;
  bool sample = false, pipeline_flush = false, report = false;
  int c;
  /* '+': stop at the first non-option, so CMD's own options are CMD's. */
  while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
    switch (c) {
    case 's': store = optarg; break;
    case 'w':
      if (!parse_number(optarg, false))
        return cli_usage_error("run", "--slow-ms needs a number of milliseconds, not '%s'", optarg);
      slow_ms = optarg;
      break;
    case 'S': sample = true; break;
    case 'P': pipeline_flush = true; break;
    case 'f':
      if (!parse_number(optarg, true))
        return cli_usage_error("run", "--flush-ms needs a whole number of milliseconds, not '%s'",
                               optarg);
      flush_ms = optarg;
      break;
    case 'm':
      if (!parse_number(optarg, true))
        return cli_usage_error("run", "--segment-mb needs a whole number of MB, not '%s'", optarg);
      segment_mb = optarg;
      break;
    case 'W':
      if (!parse_number(optarg, true) || atol(optarg) > 3600000)
        return cli_usage_error("run", "--wait-ms needs a whole number of ms, not '%s'", optarg);
      wait_ms = atol(optarg);
      break;
    case 'r': report = true; break;
    case 'h': usage(stdout); return QP_EXIT_OK;
    default: return cli_usage_error("run", "unknown option");
    }
  }
  if (optind >= argc) return cli_usage_error("run", "no command to run (qprof run -- CMD ...)");
  char **cmd = argv + optind;

  const char *why;
  const char *shim = cli_find_shim(&why);
  if (shim == NULL) return cli_fail("run", "%s", why);

  if (store == NULL) store = getenv("QPROF_STORE");
  if (store == NULL || store[0] == '\0') {
    const qp_option_info *o = qp_option_find("store");
    store = o != NULL ? o->default_value : "qprof.db";
  }
  char *abs_store = absolute_store(store);
  if (abs_store == NULL) return cli_fail("run", "out of memory");
  if ((slow_ms != NULL && setenv("QPROF_SLOW_MS", slow_ms, 1) != 0) ||
      (sample && setenv("QPROF_SAMPLE", "true", 1) != 0) ||
      (pipeline_flush && setenv("QPROF_PIPELINE_FLUSH", "1", 1) != 0) ||
      (flush_ms != NULL && setenv("QPROF_FLUSH_MS", flush_ms, 1) != 0) ||
      (segment_mb != NULL && setenv("QPROF_SEGMENT_MB", segment_mb, 1) != 0) ||
      setenv("QPROF_STORE", abs_store, 1) != 0) {
    free(abs_store);
    return cli_fail("run", "cannot set the environment: %s", strerror(errno));
  }
  int rc = check_settings();
  if (rc != QP_EXIT_OK) {
    free(abs_store);
    return rc;
  }
  const char *fl = getenv("QPROF_FLUSH_MS");
  long flush = fl != NULL && fl[0] != '\0' ? atol(fl) : 1000;
  if (flush < 10) flush = 10;

  /* The run directory: private to this run, removed when all is written. */
  char run_dir[4096];
  snprintf(run_dir, sizeof run_dir, "%s/qprof-run-XXXXXX", run_dir_base());
  if (mkdtemp(run_dir) == NULL) {
    int err = errno;
    free(abs_store);
    return cli_fail("run", "cannot create a run directory %s: %s", run_dir, strerror(err));
  }
  cli_collector col;
  rc = cli_collector_open(&col, "run", run_dir, abs_store, getenv("QPROF_IGNORE"));
  if (rc != QP_EXIT_OK) {
    rmdir(run_dir);
    free(abs_store);
    return rc;
  }

  /* Prepend the shim to whatever is already preloaded. */
  const char *old_env = getenv("LD_PRELOAD");
  char *old = old_env != NULL ? strdup(old_env) : NULL;
  size_t len = strlen(shim) + (old ? strlen(old) : 0) + 2;
  char *preload = malloc(len);
  if (preload == NULL) {
    free(old);
    free(abs_store);
    cli_collector_close(&col);
    rmdir(run_dir);
    return cli_fail("run", "out of memory");
  }
  if (old != NULL && old[0] != '\0') snprintf(preload, len, "%s:%s", shim, old);
  else snprintf(preload, len, "%s", shim);
  if (setenv("LD_PRELOAD", preload, 1) != 0 || setenv("QPROF_RUN_DIR", run_dir, 1) != 0) {
    free(preload);
    free(old);
    free(abs_store);
    cli_collector_close(&col);
    rmdir(run_dir);
    return cli_fail("run", "cannot set the environment: %s", strerror(errno));
  }
  free(preload);
  /* The command gets the store's location without its password: the shim
   * only needs it to leave the program's own queries on a store file
   * unrecorded, and a program that prints its environment must not print
   * the password (the collector has its own copy). */
  if (qp_store_is_dsn(abs_store)) {
    char red[8192];
    if (qp_dsn_redact(abs_store, red, sizeof red) < sizeof red) setenv("QPROF_STORE", red, 1);
    else unsetenv("QPROF_STORE");
  }

  /* The signals qprof run handles are blocked and taken with sigtimedwait:
   * SIGCHLD ends the wait for CMD; SIGINT, SIGTERM, SIGHUP and SIGQUIT sent
   * to qprof run by a process are passed on to CMD. The same signals from
   * the terminal (^C, ^\\) reach CMD by themselves, as they reach every
   * process of the foreground group: not passed on twice. */
  static const int fwd[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
  sigset_t set, oldmask;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  for (size_t i = 0; i < sizeof fwd / sizeof fwd[0]; i++) sigaddset(&set, fwd[i]);
  sigprocmask(SIG_BLOCK, &set, &oldmask);
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    sigprocmask(SIG_SETMASK, &oldmask, NULL);
    free(old);
    free(abs_store);
    cli_collector_close(&col);
    rmdir(run_dir);
    return cli_fail("run", "cannot fork: %s", strerror(err));
  }
  if (pid == 0) {
    sigprocmask(SIG_SETMASK, &oldmask, NULL);
    execvp(cmd[0], cmd);
    int err = errno;
    fprintf(stderr, "qprof run: cannot run '%s': %s\n", cmd[0], strerror(err));
    _exit(err == ENOENT ? 127 : 126);
  }
  int status = 0;
  uint64_t next = now_ms() + (uint64_t)flush;
  for (;;) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) {
      status = -1;
      break;
    }
    uint64_t now = now_ms();
    if (now >= next) {
      cli_collector_pass(&col);
      next = now_ms() + (uint64_t)flush;
      continue;
    }
    struct timespec ts = ms_ts(next - now);
    siginfo_t si;
    int sig = sigtimedwait(&set, &si, &ts);
    if (sig > 0 && sig != SIGCHLD && (si.si_code == SI_USER || si.si_code == SI_QUEUE) &&
        si.si_pid != pid)
      kill(pid, sig);
  }
  rc = status == -1            ? QP_EXIT_FAIL
       : WIFEXITED(status)     ? WEXITSTATUS(status)
       : WIFSIGNALED(status)   ? 128 + WTERMSIG(status)
                               : QP_EXIT_FAIL;

  /* The last harvest, once every process that recorded has ended (or
   * wait_ms has passed: a daemon CMD started is harvested as far as it got). */
  uint64_t deadline = now_ms() + (uint64_t)wait_ms;
  for (;;) {
    cli_collector_pass(&col);
    if (col.live == 0 || col.failed || now_ms() >= deadline) break;
    struct timespec ts = ms_ts(20);
    siginfo_t si;
    int sig = sigtimedwait(&set, &si, &ts);
    (void)sig;
  }
  if (col.dropped > 0)
    fprintf(stderr,
            "qprof run: %llu statements were not recorded: segment full (--segment-mb, "
            "QPROF_SEGMENT_MB)\n",
            (unsigned long long)col.dropped);
  cli_collector last = col; /* its counts, for remove_run_dir (close zeroes col) */
  cli_collector_close(&col);
  remove_run_dir(run_dir, &last, abs_store);
  sigprocmask(SIG_SETMASK, &oldmask, NULL);

  if (report) {
    /* The report runs in this process, which must not record itself. */
    unsetenv("LD_PRELOAD");
    if (old != NULL) setenv("LD_PRELOAD", old, 1);
    if (cmd_report == NULL) {
      cli_fail("run", "--report: this qprof has no report verb");
    } else {
      fflush(stdout);
      char *rargv[] = {"report", "--store", abs_store, NULL};
      optind = 1;
      cmd_report(3, rargv); /* its failure is said on stderr; the status is CMD's */
    }
  }
  free(old);
  free(abs_store);
  return rc;
}
