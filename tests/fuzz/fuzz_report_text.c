/*
 * libFuzzer target for the report renderers' handling of text from a store
 * (query text, database names, error codes, samples: whatever the profiled
 * programs sent, quoted identifiers included), in tools/qprof: the terminal
 * text (rq_shorten), JSON strings (rq_json_string) and HTML character data
 * (rq_html_text). The first input byte picks a width for rq_shorten; the rest
 * is the text. Checked on every output:
 *  - valid UTF-8 (so nothing a terminal or browser reads as an 8-bit C1);
 *  - no C0 control, DEL, C1 control (U+0080..U+009F) or bidirectional
 *    override or isolate (U+202A..U+202E, U+2066..U+2069) left raw (HTML
 *    keeps tab and newline, which a page shows as white space);
 *  - terminal text: at most `width` display columns when cut, and the whole
 *    text (no "...") when it fits;
 *  - JSON: a quoted string whose only backslashes start escapes;
 *  - HTML: no raw '<', '>' or '"'.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report_common.h"

/* Every code point of out, or abort on invalid UTF-8; returns the count. */
static size_t check_utf8_safe(const char *out, size_t len, bool allow_tab_newline) {
  const unsigned char *p = (const unsigned char *)out, *end = p + len;
  size_t cols = 0;
  while (p < end) {
    size_t n;
    int32_t cp = rq_utf8_next(p, &n);
    if (cp < 0) abort();
    bool space = cp == '\n' || cp == '\t';
    if ((cp < 0x20 && !(allow_tab_newline && space)) || cp == 0x7f || rq_is_unsafe(cp)) abort();
    p += n;
    cols++;
  }
  return cols;
}

static char *capture(void (*fn)(FILE *, const char *), const char *text, size_t *len) {
  char *buf = NULL;
  FILE *f = open_memstream(&buf, len);
  if (f == NULL) abort();
  fn(f, text);
  fclose(f);
  return buf;
}

static void json_to(FILE *f, const char *text) {
  jw w;
  jw_init(&w, f);
  rq_json_string(&w, text);
  jw_flush(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  size_t width = data[0] % 64; /* 0: no cut */
  char *text = malloc(size);
  if (text == NULL) abort();
  memcpy(text, data + 1, size - 1);
  text[size - 1] = '\0'; /* the store's strings are NUL-terminated: cut at the first NUL */

  /* terminal text */
  size_t cap = 8 * size + 64;
  char *buf = malloc(cap);
  if (buf == NULL) abort();
  rq_shorten(text, width, buf, cap);
  size_t cols = check_utf8_safe(buf, strlen(buf), false);
  bool cut = strlen(buf) >= 3 && strcmp(buf + strlen(buf) - 3, "...") == 0;
  if (width > 0 && cols > (width > 3 ? width : 3)) abort();
  if (width == 0 && cut && strlen(text) * 8 + 16 < cap) {
    /* never cut without a width unless the buffer was short: the input may
     * itself end in "..." */
    size_t tl = strlen(text);
    if (!(tl >= 3 && strcmp(text + tl - 3, "...") == 0)) abort();
  }
  free(buf);

  /* JSON string */
  size_t len;
  char *js = capture(json_to, text, &len);
  if (len < 2 || js[0] != '"' || js[len - 1] != '"') abort();
  check_utf8_safe(js, len, false);
  for (size_t i = 1; i + 1 < len; i++) {
    if (js[i] == '"') abort(); /* an unescaped quote inside */
    if (js[i] == '\\') {
      if (strchr("\"\\bfnrtu", js[i + 1]) == NULL) abort();
      i++; /* the escaped character */
    }
  }
  free(js);

  /* HTML character data: apart from the visible <U+XXXX> markers, no markup */
  char *html = capture(rq_html_text, text, &len);
  check_utf8_safe(html, len, true);
  char *plain = malloc(len + 1);
  if (plain == NULL) abort();
  size_t k = 0;
  static const char open_tag[] = "<span class=\"ctl\">", close_tag[] = "</span>";
  for (size_t i = 0; i < len;) {
    if (strncmp(html + i, open_tag, sizeof open_tag - 1) == 0) i += sizeof open_tag - 1;
    else if (strncmp(html + i, close_tag, sizeof close_tag - 1) == 0) i += sizeof close_tag - 1;
    else plain[k++] = html[i++];
  }
  if (memchr(plain, '<', k) != NULL || memchr(plain, '>', k) != NULL ||
      memchr(plain, '"', k) != NULL)
    abort();
  free(plain);
  free(html);
  free(text);
  return 0;
}
