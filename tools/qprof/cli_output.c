/* --output FILE for the verbs that write reports (cli.h, cli_output). */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cli_output_open(cli_output *o, const char *verb, const char *path) {
  memset(o, 0, sizeof *o);
  if (path == NULL || strcmp(path, "-") == 0) {
    o->f = stdout;
    /* the report is written at once: a big buffer, few write(2) calls */
    setvbuf(stdout, o->buf, _IOFBF, sizeof o->buf);
    return QP_EXIT_OK;
  }
  if (path[0] == '\0') return cli_fail(verb, "--output needs a file name");
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
    return cli_fail(verb, "cannot write %s: it is a directory", path);
  char *d = strdup(path), *b = strdup(path);
  o->path = strdup(path);
  if (d == NULL || b == NULL || o->path == NULL) {
    free(d);
    free(b);
    free(o->path);
    o->path = NULL;
    return cli_fail(verb, "out of memory");
  }
  const char *dir = dirname(d), *base = basename(b);
  size_t n = strlen(dir) + strlen(base) + 16;
  o->tmp = malloc(n);
  int fd = -1;
  if (o->tmp != NULL) {
    /* hidden, and named after FILE, so that a crash leaves something a
     * person can recognize */
    snprintf(o->tmp, n, "%s/.%s.XXXXXX", dir, base);
    fd = mkstemp(o->tmp);
  }
  int err = errno;
  if (fd < 0) {
    int rc = o->tmp == NULL ? cli_fail(verb, "out of memory")
                            : cli_fail(verb, "cannot create a file in %s: %s", dir, strerror(err));
    free(o->tmp);
    o->tmp = NULL;
    free(o->path);
    o->path = NULL;
    free(d);
    free(b);
    return rc;
  }
  free(d);
  free(b);
  o->f = fdopen(fd, "w");
  if (o->f == NULL) {
    close(fd);
    cli_output_abort(o);
    return cli_fail(verb, "out of memory");
  }
  setvbuf(o->f, o->buf, _IOFBF, sizeof o->buf);
  return QP_EXIT_OK;
}

void cli_output_abort(cli_output *o) {
  if (o->f != NULL && o->f != stdout) fclose(o->f);
  if (o->tmp != NULL) unlink(o->tmp);
  free(o->tmp);
  free(o->path);
  memset(o, 0, sizeof *o);
}

int cli_output_commit(cli_output *o, const char *verb, unsigned mode) {
  if (o->f == stdout) {
    bool ok = fflush(stdout) == 0 && !ferror(stdout);
    o->f = NULL;
    return ok ? QP_EXIT_OK : cli_fail(verb, "cannot write the report to standard output");
  }
  const char *step = "write";
  int fd = fileno(o->f);
  mode_t mask = umask(0);
  umask(mask);
  bool ok = fflush(o->f) == 0 && !ferror(o->f);
  if (ok && !(ok = fchmod(fd, (mode_t)mode & ~mask) == 0)) step = "set the mode of";
  if (ok && !(ok = fsync(fd) == 0)) step = "sync";
  int err = errno;
  if (fclose(o->f) != 0 && ok) {
    ok = false;
    err = errno;
    step = "write";
  }
  o->f = NULL;
  if (ok && rename(o->tmp, o->path) != 0) {
    ok = false;
    err = errno;
    step = "rename the temporary file to";
  }
  if (!ok) {
    int rc = cli_fail(verb, "cannot %s %s: %s", step, o->path, strerror(err));
    cli_output_abort(o);
    return rc;
  }
  /* the rename is durable once the directory is */
  char *d = strdup(o->path);
  if (d != NULL) {
    int dfd = open(dirname(d), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)fsync(dfd);
      close(dfd);
    }
    free(d);
  }
  free(o->tmp);
  o->tmp = NULL;
  free(o->path);
  o->path = NULL;
  return QP_EXIT_OK;
}
