/* qprof normalize: one line per top-level statement of a script, FINGERPRINT<TAB>NORMALIZED. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"

static const char *const VERB = "normalize";

static void usage(FILE *f) {
  fprintf(f,
          "Usage: qprof normalize [--dialect postgres|sqlite] [--rule PATTERN=REPLACEMENT]...\n"
          "                       [--format text|json] [FILE]\n\n"
          "Prints one line per top-level statement of FILE (or stdin; '-' is stdin), in order:\n"
          "  FINGERPRINT<TAB>NORMALIZED      (text, the default)\n"
          "  {\"fingerprint\":...,\"query\":...,\"kind\":...,\"read_only\":...,\"line\":...}  (json)\n"
          "Statements that are only comments or white space print nothing.\n\n"
          "Options:\n"
          "  -d, --dialect NAME   postgres (default) or sqlite\n"
          "  -r, --rule P=R       rewrite unquoted identifiers matching the PCRE2 pattern P\n"
          "                       with R, e.g. 'tmp_[0-9a-f]{6,}=tmp_?' (repeatable)\n"
          "  -f, --format FMT     text (default) or json (one JSON object per line)\n"
          "  -h, --help           this text\n");
}

/* Replaces bytes that are not valid UTF-8 with U+FFFD, for JSON output. */
static char *utf8_clean(const char *s, size_t n) {
  char *o = malloc(n * 3 + 1);
  if (o == NULL) return NULL;
  size_t j = 0;
  for (size_t i = 0; i < n;) {
    unsigned char c = (unsigned char)s[i];
    size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = k > 0 && i + k <= n && c != 0;
    for (size_t m = 1; ok && m < k; m++) ok = ((unsigned char)s[i + m] & 0xC0) == 0x80;
    if (ok && k == 2) ok = c >= 0xC2;
    if (ok && k == 3) {
      unsigned char c1 = (unsigned char)s[i + 1];
      ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);
    }
    if (ok && k == 4) {
      unsigned char c1 = (unsigned char)s[i + 1];
      ok = c <= 0xF4 && !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90);
    }
    if (ok) {
      memcpy(o + j, s + i, k);
      j += k;
      i += k;
    } else {
      memcpy(o + j, "\xEF\xBF\xBD", 3);
      j += 3;
      i++;
    }
  }
  o[j] = '\0';
  return o;
}

static size_t line_of(const char *s, size_t pos, size_t *from, size_t *line) {
  for (size_t i = *from; i < pos; i++)
    if (s[i] == '\n') (*line)++;
  *from = pos;
  return *line;
}

int cmd_normalize(int argc, char **argv) {
  static const struct option opts[] = {{"dialect", required_argument, NULL, 'd'},
                                       {"rule", required_argument, NULL, 'r'},
                                       {"format", required_argument, NULL, 'f'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  qp_dialect dialect = QP_DIALECT_POSTGRES;
  const char **rules = calloc((size_t)argc + 1, sizeof *rules);
  size_t nrules = 0;
  bool json = false;
  int c, rc = QP_EXIT_OK;
  if (rules == NULL) return cli_fail(VERB, "out of memory");
  while ((c = getopt_long(argc, argv, "d:r:f:h", opts, NULL)) != -1) {
    switch (c) {
    case 'd':
      if (!qp_dialect_parse(optarg, &dialect)) {
        free(rules);
        return cli_usage_error(VERB, "unknown dialect '%s' (postgres or sqlite)", optarg);
      }
      break;
    case 'r':
      rules[nrules++] = optarg;
      break;
    case 'f':
      if (strcmp(optarg, "json") == 0) {
        json = true;
      } else if (strcmp(optarg, "text") == 0) {
        json = false;
      } else {
        free(rules);
        return cli_usage_error(VERB, "unknown format '%s' (text or json)", optarg);
      }
      break;
    case 'h':
      usage(stdout);
      free(rules);
      return QP_EXIT_OK;
    default:
      free(rules);
      return cli_usage_error(VERB, "unknown option");
    }
  }
  if (argc - optind > 1) {
    free(rules);
    return cli_usage_error(VERB, "expected at most one FILE");
  }
  const char *path = optind < argc ? argv[optind] : "-";

  qp_normalizer *nz = NULL;
  char err[512];
  qp_status st = qp_normalizer_new(&nz, dialect, rules, nrules, NULL, err, sizeof err);
  free(rules);
  if (st == QP_PATTERN || st == QP_INVALID) return cli_usage_error(VERB, "%s", err);
  if (st != QP_OK) return cli_fail(VERB, "%s", err);

  size_t len = 0;
  char *sql = cli_read_all(path, &len);
  if (sql == NULL) {
    int e = errno;
    qp_normalizer_free(nz);
    return cli_fail(VERB, "cannot read '%s': %s", strcmp(path, "-") == 0 ? "stdin" : path,
                    strerror(e));
  }

  char *out = malloc(QP_NORMALIZED_MAX);
  if (out == NULL) {
    free(sql);
    qp_normalizer_free(nz);
    return cli_fail(VERB, "out of memory");
  }
  size_t pos = 0, start, slen, line_from = 0, line = 1;
  while (qp_sql_split_next(dialect, sql, len, &pos, &start, &slen)) {
    size_t olen = 0;
    uint64_t fp = 0;
    qp_normalize(nz, sql + start, slen, out, QP_NORMALIZED_MAX, &olen, &fp);
    if (olen == 0) continue;
    char hex[QP_FINGERPRINT_HEX_SIZE];
    qp_fingerprint_hex(fp, hex);
    if (!json) {
      /* one line per statement: the normalized text has no newline, but a
       * quoted identifier may, and a NUL byte may hide in one */
      for (size_t i = 0; i < olen; i++)
        if (out[i] == '\n' || out[i] == '\r' || out[i] == '\0') out[i] = ' ';
      printf("%s\t%.*s\n", hex, (int)olen, out);
      continue;
    }
    qp_stmt_info info;
    info.size = sizeof info;
    qp_sql_classify(dialect, sql + start, slen, &info);
    char *clean = utf8_clean(out, olen);
    json_t *o = json_object();
    if (clean == NULL || o == NULL) {
      free(clean);
      json_decref(o);
      rc = cli_fail(VERB, "out of memory");
      break;
    }
    json_object_set_new(o, "fingerprint", json_string(hex));
    json_object_set_new(o, "query", json_string(clean));
    json_object_set_new(o, "kind", json_string(qp_stmt_kind_name(info.kind)));
    json_object_set_new(o, "read_only", json_boolean(info.read_only));
    json_object_set_new(o, "line", json_integer((json_int_t)line_of(sql, start, &line_from, &line)));
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text != NULL) puts(text);
    free(text);
    json_decref(o);
    free(clean);
  }
  if (fflush(stdout) != 0 && rc == QP_EXIT_OK) rc = cli_fail(VERB, "cannot write output");
  free(out);
  free(sql);
  qp_normalizer_free(nz);
  return rc;
}
