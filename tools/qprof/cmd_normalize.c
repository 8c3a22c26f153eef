/* qprof normalize: one line per top-level statement of a script, FINGERPRINT<TAB>NORMALIZED. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "report_common.h"

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

/* The script. A regular file is mapped rather than read: reading copies
 * every byte through the kernel and faults in a buffer as large as the
 * file, which cost about a quarter of the whole process's time on a 73 MB
 * script (the normalizer itself runs at several hundred MB/s). */
typedef struct script {
  char *p;
  size_t len;
  bool mapped;
} script;

/* A mapped file that shrinks under us raises SIGBUS on the lost pages:
 * caught while the script is read, it ends the command with a message. */
static sigjmp_buf g_bus_jmp;
static void on_sigbus(int sig) {
  (void)sig;
  siglongjmp(g_bus_jmp, 1);
}

static bool script_open(const char *path, script *sc) {
  const bool is_stdin = strcmp(path, "-") == 0;
  int fd = is_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
      (uintmax_t)st.st_size <= SIZE_MAX && lseek(fd, 0, SEEK_CUR) == 0) {
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (m != MAP_FAILED) {
      if (!is_stdin) close(fd);
      sc->p = m;
      sc->len = (size_t)st.st_size;
      sc->mapped = true;
      return true;
    }
  }
  if (!is_stdin) close(fd);
  sc->mapped = false;
  sc->p = cli_read_all(path, &sc->len);
  return sc->p != NULL;
}

static void script_close(script *sc) {
  if (sc->mapped)
    munmap(sc->p, sc->len);
  else
    free(sc->p);
}

/* Output lines are gathered here and written in large blocks. */
static char g_obuf[1 << 16];
static size_t g_on;

/* JSON lines go through the report's writer (report_common.h). */
static jw g_jw;

static void out_flush(void) {
  fwrite(g_obuf, 1, g_on, stdout);
  g_on = 0;
}

static inline void out_put(const char *p, size_t n) {
  if (n > sizeof g_obuf - g_on) {
    out_flush();
    if (n > sizeof g_obuf) {
      fwrite(p, 1, n, stdout);
      return;
    }
  }
  memcpy(g_obuf + g_on, p, n);
  g_on += n;
}

static void out_esc(const char *fmt, unsigned v) {
  char e[8];
  int k = snprintf(e, sizeof e, fmt, v);
  out_put(e, (size_t)k);
}

/* Writes the normalized text s[0..n) for a terminal: control characters
 * are shown, not sent. C0 controls and DEL as \n \r \t or \xHH (no raw
 * newline or tab: one line per statement, a tab between the fields), C1
 * controls (U+0080..U+009F, whose CSI U+009B starts escape sequences) and the
 * bidirectional overrides and isolates (U+202A..U+202E, U+2066..U+2069,
 * which reorder what a terminal shows) as \uXXXX, and bytes 0x80..0x9F that
 * are not part of a UTF-8 character as \xHH. A backslash itself is not
 * doubled (the text is for reading; --format json is exact). */
static void put_text(const char *s, size_t n) {
  size_t from = 0;
  for (size_t i = 0; i < n;) {
    /* printable ASCII, the bulk of it, eight bytes at a time: a byte is
     * printable when neither c - 0x20 nor c + 1 sets its high bit */
    while (i + 8 <= n) {
      uint64_t x;
      memcpy(&x, s + i, 8);
      if (((x - 0x2020202020202020ULL) | (x + 0x0101010101010101ULL) | x) & 0x8080808080808080ULL)
        break;
      i += 8;
    }
    if (i >= n) break;
    const unsigned char c = (unsigned char)s[i];
    /* the common case: a byte that needs nothing */
    if (__builtin_expect((c >= 0x20 && c < 0x7F) || c >= 0xA0, 1)) {
      if (c == 0xC2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
          (unsigned char)s[i + 1] <= 0x9F) {
        out_put(s + from, i - from);
        out_esc("\\u%04x", (unsigned)(unsigned char)s[i + 1]);
        i += 2;
        from = i;
        continue;
      }
      if (c == 0xE2 && i + 2 < n) {
        const unsigned char c1 = (unsigned char)s[i + 1], c2 = (unsigned char)s[i + 2];
        if ((c1 == 0x80 && c2 >= 0xAA && c2 <= 0xAE) || (c1 == 0x81 && c2 >= 0xA6 && c2 <= 0xA9)) {
          out_put(s + from, i - from);
          out_esc("\\u%04x", (unsigned)(((c & 0x0F) << 12) | ((c1 & 0x3F) << 6) | (c2 & 0x3F)));
          i += 3;
          from = i;
          continue;
        }
      }
      /* the continuation bytes of a character are not taken for C1 bytes */
      if (c >= 0xC2 && c <= 0xF4) {
        size_t k = c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4, m = 1;
        while (m < k && i + m < n && ((unsigned char)s[i + m] & 0xC0) == 0x80) m++;
        i += m;
        continue;
      }
      i++;
      continue;
    }
    out_put(s + from, i - from);
    if (c == '\n')
      out_put("\\n", 2);
    else if (c == '\r')
      out_put("\\r", 2);
    else if (c == '\t')
      out_put("\\t", 2);
    else
      out_esc("\\x%02x", c);
    i++;
    from = i;
  }
  out_put(s + from, n - from);
}

static size_t line_of(const char *s, size_t pos, size_t *from, size_t *line) {
  for (size_t i = *from; i < pos; i++)
    if (s[i] == '\n') (*line)++;
  *from = pos;
  return *line;
}

/* Prints every statement of sql[0..len); returns the exit status. */
static int normalize_all(const qp_normalizer *nz, qp_dialect dialect, bool json, const char *sql,
                         size_t len, char *out) {
  /* One pass per statement: the normalizer finds where it ends. */
  size_t pos = 0, start, slen, olen, line_from = 0, line = 1;
  uint64_t fp;
  if (json) jw_init(&g_jw, stdout);
  while (qp_normalize_next(nz, sql, len, &pos, &start, &slen, out, QP_NORMALIZED_MAX, &olen, &fp)) {
    if (olen == 0) continue;
    char hex[QP_FINGERPRINT_HEX_SIZE];
    qp_fingerprint_hex(fp, hex);
    if (!json) {
      /* one line per statement, whatever a quoted name holds */
      hex[QP_FINGERPRINT_HEX_SIZE - 1] = '\t';
      out_put(hex, QP_FINGERPRINT_HEX_SIZE);
      put_text(out, olen);
      out_put("\n", 1);
      continue;
    }
    qp_stmt_info info;
    info.size = sizeof info;
    qp_sql_classify(dialect, sql + start, slen, &info);
    /* one compact object per line, through the CLI's one JSON string
     * writer: C1 controls and bidirectional overrides are escaped */
    jw_puts(&g_jw, "{\"fingerprint\":");
    rq_json_string(&g_jw, hex);
    jw_puts(&g_jw, ",\"query\":");
    rq_json_string_n(&g_jw, out, olen);
    jw_puts(&g_jw, ",\"kind\":");
    rq_json_string(&g_jw, qp_stmt_kind_name(info.kind));
    jw_puts(&g_jw, info.read_only ? ",\"read_only\":true,\"line\":" : ",\"read_only\":false,\"line\":");
    jw_putu64(&g_jw, line_of(sql, start, &line_from, &line));
    jw_puts(&g_jw, "}\n");
  }
  if (json) jw_flush(&g_jw);
  return QP_EXIT_OK;
}

/* normalize_all, or -1 when the mapped script shrank under it (SIGBUS). */
static int normalize_guarded(const qp_normalizer *nz, qp_dialect dialect, bool json,
                             const char *sql, size_t len, char *out) {
  if (sigsetjmp(g_bus_jmp, 1) != 0) return -1;
  return normalize_all(nz, dialect, json, sql, len, out);
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

  script sc;
  if (!script_open(path, &sc)) {
    int e = errno;
    qp_normalizer_free(nz);
    return cli_fail(VERB, "cannot read '%s': %s", strcmp(path, "-") == 0 ? "stdin" : path,
                    strerror(e));
  }
  const char *sql = sc.p;
  const size_t len = sc.len;

  char *out = malloc(QP_NORMALIZED_MAX);
  if (out == NULL) {
    script_close(&sc);
    qp_normalizer_free(nz);
    return cli_fail(VERB, "out of memory");
  }
  struct sigaction sa, old_sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigbus;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGBUS, &sa, &old_sa);
  rc = normalize_guarded(nz, dialect, json, sql, len, out);
  if (rc < 0)
    rc = cli_fail(VERB, "'%s' changed while it was read (it is shorter now)",
                  strcmp(path, "-") == 0 ? "stdin" : path);
  sigaction(SIGBUS, &old_sa, NULL);
  out_flush();
  if (json) jw_flush(&g_jw);
  if (fflush(stdout) != 0 && rc == QP_EXIT_OK) rc = cli_fail(VERB, "cannot write output");
  free(out);
  script_close(&sc);
  qp_normalizer_free(nz);
  return rc;
}
