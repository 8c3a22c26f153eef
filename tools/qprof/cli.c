#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Writes "qprof VERB: message" to stderr with every password in the message
 * removed (qp_dsn_redact): a message may quote a store location or a value the
 * user gave, and a DSN with its password is easily given to the wrong option. */
static void print_message(const char *verb, const char *fmt, va_list ap) QP_PRINTF(2, 0);
static void print_message(const char *verb, const char *fmt, va_list ap) {
  char small[1024];
  va_list again;
  va_copy(again, ap);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  char *text = small;
  if (n >= (int)sizeof small && (text = malloc((size_t)n + 1)) != NULL)
    vsnprintf(text, (size_t)n + 1, fmt, again);
  va_end(again);
  if (text == NULL) text = small; /* out of memory: the message cut short */
  if (n < 0) small[0] = '\0';
  size_t need = qp_dsn_redact(text, NULL, 0);
  char *shown = malloc(need + 1);
  if (shown != NULL) qp_dsn_redact(text, shown, need + 1);
  /* Without memory for the copy, only the cut-short redaction fits. */
  char fallback[256];
  if (shown == NULL) qp_dsn_redact(text, fallback, sizeof fallback);
  fprintf(stderr, "qprof %s: %s", verb, shown != NULL ? shown : fallback);
  free(shown);
  if (text != small) free(text);
}

int cli_usage_error(const char *verb, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  print_message(verb, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nTry 'qprof %s --help'.\n", verb);
  return QP_EXIT_USAGE;
}

int cli_fail(const char *verb, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  print_message(verb, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return QP_EXIT_FAIL;
}

bool cli_use_color(FILE *f) {
  const char *nc = getenv("NO_COLOR");
  if (nc != NULL && nc[0] != '\0') return false;
  const char *term = getenv("TERM");
  if (term != NULL && strcmp(term, "dumb") == 0) return false;
  return isatty(fileno(f));
}

int cli_term_width(void) {
  const char *cols = getenv("COLUMNS");
  if (cols != NULL && atoi(cols) > 0) return atoi(cols);
  if (!isatty(STDOUT_FILENO)) return 0;
  struct winsize ws;
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

int cli_width_for(FILE *f) {
  if (f == stdout) return cli_term_width();
  const char *cols = getenv("COLUMNS");
  return cols != NULL && atoi(cols) > 0 ? atoi(cols) : 0;
}

char *cli_read_all(const char *path, size_t *len) {
  FILE *f = (path == NULL || strcmp(path, "-") == 0) ? stdin : fopen(path, "rb");
  if (f == NULL) return NULL;
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap + 1);
  if (buf == NULL) goto fail;
  for (;;) {
    if (n == cap) {
      char *nb = realloc(buf, cap * 2 + 1);
      if (nb == NULL) goto fail;
      buf = nb;
      cap *= 2;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  if (ferror(f)) {
    errno = EIO;
    goto fail;
  }
  if (f != stdin) fclose(f);
  buf[n] = '\0';
  *len = n;
  return buf;
fail:;
  int saved = errno;
  free(buf);
  if (f != NULL && f != stdin) fclose(f);
  errno = saved;
  return NULL;
}
