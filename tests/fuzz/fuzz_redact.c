/*
 * libFuzzer target for qp_dsn_redact, which reads text users give (store
 * locations, option values, messages quoting them). Checks, on the raw input:
 * the length returned is the length written with room to spare; a short
 * buffer gets a terminated prefix of the same text. (Not that a second pass
 * changes nothing: masking a query parameter can join what a '/' split, and
 * the second pass then reads a user:password@ the first rightly did not.)
 * And, on a DSN built from the input: the first byte
 * picks a DSN form (URI user:password@, ?password=, &password=, password=
 * keyword, quoted, upper case) and a wrapping, the next bytes give a password
 * of letters and digits, the rest arbitrary text before and after it; the
 * password must not survive. Not checked: surrounding text that holds the
 * password already, a password keyword of its own, or quotes or backslashes
 * (an unbalanced quote, or a "password =" just before, can take the value a
 * DSN's password= keyword was to mask: the redaction reads one DSN's quoting,
 * not a DSN nested in half of another).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qprof/qprof.h"

static char *redact(const char *text, size_t *n) {
  *n = qp_dsn_redact(text, NULL, 0);
  char *out = malloc(*n + 1);
  if (out == NULL) abort();
  if (qp_dsn_redact(text, out, *n + 1) != *n || strlen(out) != *n) abort();
  return out;
}

static void check_text(const char *text) {
  size_t n;
  char *out = redact(text, &n);
  /* A short buffer: a terminated prefix of the whole. */
  for (size_t len = 1; len <= n && len < 64; len += 7) {
    char small[64];
    memset(small, 'Z', sizeof small);
    if (qp_dsn_redact(text, small, len) != n) abort();
    if (strlen(small) != len - 1 || memcmp(small, out, len - 1) != 0) abort();
  }
  free(out);
}

static const char *const forms[] = {
    "postgresql://user:%s@host/db",
    "postgres://user:%s@host:5432/db?sslmode=disable",
    "postgresql://host/db?password=%s",
    "postgresql:///db?sslmode=prefer&password=%s&port=1",
    "password=%s",
    "password = '%s x\\'y'",
    "host=h password=%s dbname=x",
    "PASSWORD=%s",
    "POSTGRESQL://u:%s@h/db",
};
static const char *const wraps[] = {"%s", "'%s'", "\"%s\"", "(%s)", "=%s,"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (text == NULL) abort();
  memcpy(text, data, size);
  text[size] = '\0'; /* the text ends at its first NUL, as a C string does */
  check_text(text);

  if (size >= 8) {
    const char *form = forms[data[0] % (sizeof forms / sizeof forms[0])];
    const char *wrap = wraps[(data[0] / 16) % (sizeof wraps / sizeof wraps[0])];
    char pw[24];
    size_t plen = 6 + data[1] % 12;
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    for (size_t i = 0; i < plen; i++) pw[i] = alnum[data[(2 + i) % size] % 62];
    pw[plen] = '\0';
    const char *rest = text + (size > 2 + plen ? 2 + plen : size);
    size_t rlen = strlen(rest), cut = rlen / 2;
    char dsn[128], wrapped[160];
    snprintf(dsn, sizeof dsn, form, pw);
    snprintf(wrapped, sizeof wrapped, wrap, dsn);
    size_t total = rlen + strlen(wrapped) + 3;
    char *msg = malloc(total);
    if (msg == NULL) abort();
    snprintf(msg, total, "%.*s %s %s", (int)cut, rest, wrapped, rest + cut);
    if (strstr(rest, pw) == NULL && strpbrk(rest, "'\"`\\") == NULL && strcasestr(rest, "password") == NULL) {
      size_t n;
      char *out = redact(msg, &n);
      if (strstr(out, pw) != NULL) {
        fprintf(stderr, "password '%s' survives in\n  %s\nas\n  %s\n", pw, msg, out);
        abort();
      }
      free(out);
    }
    free(msg);
  }
  free(text);
  return 0;
}
