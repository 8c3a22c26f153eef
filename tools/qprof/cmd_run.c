/* qprof run: runs a command with the LD_PRELOAD shim and its options in the environment. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

/* The report verb is written in its own file; until it is linked in, --report
 * says so instead of failing the build. */
#pragma weak cmd_report

static void usage(FILE *f) {
  fprintf(f,
          "Usage: qprof run [options] -- CMD [ARGS...]\n\n"
          "Runs CMD with libqprof_preload.so preloaded: every query CMD (and the programs it\n"
          "starts) sends through libpq or sqlite3 is timed and recorded in the store.\n"
          "Exits with CMD's exit status (128+N when CMD was killed by signal N).\n\n"
          "Options:\n"
          "  --store PATH     profile store (QPROF_STORE; default ./qprof.db)\n"
          "  --slow-ms N      log queries slower than N ms to QPROF_LOG (QPROF_SLOW_MS)\n"
          "  --sample         keep one sample statement with literals per query (QPROF_SAMPLE)\n"
          "  --flush-ms N     flush statistics every N ms (QPROF_FLUSH_MS)\n"
          "  --report         print 'qprof report' for the store when CMD has finished\n"
          "  -h, --help       this text\n\n"
          "Other QPROF_* variables (QPROF_IGNORE, QPROF_RULES, QPROF_LOG, ...) pass through\n"
          "from the environment; 'qprof config' lists them. The shim is $QPROF_PRELOAD when\n"
          "set, else the one of this build or installation.\n");
}

/* A file store given relative to here must mean the same file to a command
 * that changes directory: make it absolute. DSNs are left alone. */
static char *absolute_store(const char *store) {
  if (store[0] == '/' || strstr(store, "://") != NULL || strchr(store, '=') != NULL)
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

int cmd_run(int argc, char **argv) {
  static const struct option longopts[] = {{"store", required_argument, NULL, 's'},
                                           {"slow-ms", required_argument, NULL, 'w'},
                                           {"sample", no_argument, NULL, 'S'},
                                           {"flush-ms", required_argument, NULL, 'f'},
                                           {"report", no_argument, NULL, 'r'},
                                           {"help", no_argument, NULL, 'h'},
                                           {NULL, 0, NULL, 0}};
  const char *store = NULL, *slow_ms = NULL, *flush_ms = NULL;
  bool sample = false, report = false;
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
    case 'f':
      if (!parse_number(optarg, true))
        return cli_usage_error("run", "--flush-ms needs a whole number of milliseconds, not '%s'",
                               optarg);
      flush_ms = optarg;
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

  /* Prepend the shim to whatever is already preloaded. */
  const char *old_env = getenv("LD_PRELOAD");
  char *old = old_env != NULL ? strdup(old_env) : NULL;
  size_t len = strlen(shim) + (old ? strlen(old) : 0) + 2;
  char *preload = malloc(len);
  if (preload == NULL) {
    free(old);
    free(abs_store);
    return cli_fail("run", "out of memory");
  }
  if (old != NULL && old[0] != '\0') snprintf(preload, len, "%s:%s", shim, old);
  else snprintf(preload, len, "%s", shim);
  if (setenv("LD_PRELOAD", preload, 1) != 0 || setenv("QPROF_STORE", abs_store, 1) != 0 ||
      (slow_ms != NULL && setenv("QPROF_SLOW_MS", slow_ms, 1) != 0) ||
      (sample && setenv("QPROF_SAMPLE", "true", 1) != 0) ||
      (flush_ms != NULL && setenv("QPROF_FLUSH_MS", flush_ms, 1) != 0)) {
    free(preload);
    free(old);
    free(abs_store);
    return cli_fail("run", "cannot set the environment: %s", strerror(errno));
  }
  free(preload);

  /* Like system(): while CMD runs, a ^C or ^\ from the terminal is CMD's to
   * handle; qprof waits to report its status. */
  struct sigaction ign = {.sa_handler = SIG_IGN}, old_int, old_quit;
  sigemptyset(&ign.sa_mask);
  sigaction(SIGINT, &ign, &old_int);
  sigaction(SIGQUIT, &ign, &old_quit);
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGQUIT, &old_quit, NULL);
    free(old);
    free(abs_store);
    return cli_fail("run", "cannot fork: %s", strerror(err));
  }
  if (pid == 0) {
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGQUIT, &old_quit, NULL);
    execvp(cmd[0], cmd);
    int err = errno;
    fprintf(stderr, "qprof run: cannot run '%s': %s\n", cmd[0], strerror(err));
    _exit(err == ENOENT ? 127 : 126);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      int err = errno;
      free(old);
      free(abs_store);
      return cli_fail("run", "waiting for '%s': %s", cmd[0], strerror(err));
    }
  }
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGQUIT, &old_quit, NULL);
  int rc = WIFEXITED(status) ? WEXITSTATUS(status)
           : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
                                 : QP_EXIT_FAIL;

  if (report) {
    /* The report runs in this process, which must not record itself. */
    unsetenv("LD_PRELOAD");
    if (old != NULL) setenv("LD_PRELOAD", old, 1);
    if (cmd_report == NULL) {
      free(old);
      free(abs_store);
      cli_fail("run", "--report: this qprof has no report verb");
      return rc != 0 ? rc : QP_EXIT_FAIL;
    }
    fflush(stdout);
    char *rargv[] = {"report", "--store", abs_store, NULL};
    optind = 1;
    int rrc = cmd_report(3, rargv);
    if (rc == 0) rc = rrc;
  }
  free(old);
  free(abs_store);
  return rc;
}
