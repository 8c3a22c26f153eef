/*
 * Shared pieces of the qprof CLI: the verb table and exit-code conventions.
 *
 * Exit codes: 0 success, 1 runtime failure (message names what failed),
 * 2 usage error (one-line hint), 3 a gate failed (qprof diff --fail-above).
 */
#ifndef QPROF_CLI_H
#define QPROF_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "qprof/qprof.h"

enum { QP_EXIT_OK = 0, QP_EXIT_FAIL = 1, QP_EXIT_USAGE = 2, QP_EXIT_GATE = 3 };

typedef struct cli_verb {
  const char *name;
  int (*run)(int argc, char **argv); /* argv[0] is the verb */
  const char *summary;
} cli_verb;

/* One function per verb, each in its own cmd_<verb>.c. */
int cmd_config(int argc, char **argv);
int cmd_normalize(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_collect(int argc, char **argv);
int cmd_advise(int argc, char **argv);
int cmd_ingest(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_compact(int argc, char **argv);

/* The collector both `qprof run` and `qprof collect` are (cmd_collect.c):
 * a harvester on a run directory and the store it writes, opened at the
 * first harvest that has something to write (a run that recorded nothing
 * creates no store). Messages go to stderr as "qprof VERB: ...". */
typedef struct cli_collector {
  const char *verb;
  const char *store_location;
  qp_store *store;
  qp_harvester *hv;
  bool failed;          /* the last pass could not write (said once until a pass works) */
  uint64_t statements;  /* written so far */
  uint64_t dropped;     /* statements the processes could not record: segment full */
  uint64_t refused;     /* segments refused */
  uint64_t live;        /* writers alive at the last pass */
} cli_collector;

/* Opens the harvester on `run_dir`; returns QP_EXIT_OK or an exit code
 * (after printing why). `ignore` is the QPROF_IGNORE pattern or NULL. */
int cli_collector_open(cli_collector *c, const char *verb, const char *run_dir,
                       const char *store_location, const char *ignore);
/* One harvest: collect, open the store if needed, commit. False when the
 * store could not be written (said on stderr; the next pass tries again). */
bool cli_collector_pass(cli_collector *c);
void cli_collector_close(cli_collector *c);

/* Prints "qprof VERB: message" to stderr and returns QP_EXIT_USAGE with a hint
 * to run `qprof VERB --help`. Both remove every password from the message
 * (qp_dsn_redact), so a message may quote a location or value as given. */
int cli_usage_error(const char *verb, const char *fmt, ...) QP_PRINTF(2, 3);
/* Prints "qprof VERB: message" to stderr and returns QP_EXIT_FAIL. */
int cli_fail(const char *verb, const char *fmt, ...) QP_PRINTF(2, 3);
/* True when colour may be used on `f`: a terminal and NO_COLOR unset. */
bool cli_use_color(FILE *f);
/* Terminal width of stdout, or 0 when not a terminal (COLUMNS wins if set). */
int cli_term_width(void);
/* The width to lay text out for on `f`: stdout's as cli_term_width, and for
 * a file (--output) COLUMNS when set, else 0 (the caller's default). */
int cli_width_for(FILE *f);
/* The LD_PRELOAD shim `qprof run` should use (tools/qprof/preload.c): the
 * readable path of $QPROF_PRELOAD when set, else the build tree's shim for a
 * qprof run from its build tree, else the shim installed beside this qprof
 * (its lib directory relative to the binary, so a moved prefix still works).
 * Returns NULL when there is none, with *message saying why and naming every
 * path tried. Both strings are static, valid until the next call. */
const char *cli_find_shim(const char **message);
/* Reads a whole file ("-" or NULL: stdin) into a malloc'd buffer. Returns
 * NULL with errno set on failure. */
char *cli_read_all(const char *path, size_t *len);


/* Output a verb writes either to stdout or, with --output FILE, to FILE
 * atomically (cli_output.c): the text goes to a temporary file in FILE's
 * directory (so the rename cannot cross file systems), which is flushed,
 * fsync'ed, given its mode and renamed over FILE, and the directory is
 * fsync'ed. A reader sees the old FILE or the whole new one, never a part;
 * a failure leaves FILE as it was and no temporary file behind. */
typedef struct cli_output {
  FILE *f;         /* where to write: stdout or the temporary file */
  char *path;      /* FILE, or NULL for stdout */
  char *tmp;       /* the temporary file's path while it exists */
  char buf[1 << 16];
} cli_output;
/* Opens the output (path NULL or "-": stdout). QP_EXIT_OK, or QP_EXIT_FAIL
 * after saying why ("qprof VERB: cannot create a file in DIR: reason"). */
int cli_output_open(cli_output *o, const char *verb, const char *path);
/* Finishes: stdout is flushed; a file gets `mode` (0644 or 0600, less the
 * umask) and replaces FILE. QP_EXIT_OK, or QP_EXIT_FAIL after saying why
 * (the temporary file removed). Frees what cli_output_open allocated. */
int cli_output_commit(cli_output *o, const char *verb, unsigned mode);
/* Gives up: the temporary file is removed and FILE left as it was. */
void cli_output_abort(cli_output *o);

#endif
