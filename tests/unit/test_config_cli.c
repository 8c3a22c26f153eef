/*
 * `qprof config`, run as users run it ($QPROF_BIN): a value holding terminal
 * controls (ESC sequences, C1 controls such as U+009B CSI, bidirectional
 * overrides and isolates) or bytes that are not UTF-8 is shown, never sent:
 * JSON escapes them as \uXXXX and reads back exactly (invalid bytes as
 * U+FFFD), the text output shows them visibly. Both used to pass C1
 * controls and the overrides through raw. Needs no database.
 */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ESC ] 0 ; title BEL, CSI 2J as U+009B, RLO, LRI, NEL and a lone 0xff */
#define HOSTILE_READ "/tmp/a\x1b]0;t\x07" "b\xc2\x9b" "2J\xe2\x80\xae" "c\xe2\x81\xa6" "d\xc2\x85" "e\xef\xbf\xbd.qp"

static const char *const RAW[] = {"\x1b", "\x07", "\xc2\x9b", "\xe2\x80\xae", "\xe2\x81\xa6",
                                  "\xc2\x85", "\xff"};

static char *config(const char *format) {
  const char *bin = getenv("QPROF_BIN");
  if (bin == NULL) fail_msg("QPROF_BIN is not set");
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "QPROF_STORE=\"$(printf '%s')\" '%s' config --format %s",
           "/tmp/a\\033]0;t\\007b\\302\\2332J\\342\\200\\256c\\342\\201\\246d\\302\\205e\\377.qp",
           bin, format);
  char *out = NULL, *err = NULL;
  int rc = qpt_run_capture(qpt_tempdir(), cmd, &out, &err);
  if (rc != 0) fail_msg("qprof config --format %s: exit %d: %s", format, rc, err);
  free(err);
  for (size_t i = 0; i < sizeof RAW / sizeof RAW[0]; i++)
    if (strstr(out, RAW[i]) != NULL) fail_msg("--format %s: raw control %zu in the output", format, i);
  return out;
}

static void test_json_escapes_and_reads_back(void **state) {
  (void)state;
  char *out = config("json");
  assert_non_null(strstr(out, "\\u009b"));
  assert_non_null(strstr(out, "\\u202e"));
  assert_non_null(strstr(out, "\\u2066"));
  assert_non_null(strstr(out, "\\u001b"));
  json_error_t jerr;
  json_t *a = json_loads(out, 0, &jerr);
  if (a == NULL) fail_msg("not JSON (%s): %s", jerr.text, out);
  const char *value = NULL;
  size_t i;
  json_t *o;
  json_array_foreach(a, i, o) {
    if (strcmp(json_string_value(json_object_get(o, "env")), "QPROF_STORE") == 0)
      value = json_string_value(json_object_get(o, "value"));
  }
  assert_non_null(value);
  assert_string_equal(value, HOSTILE_READ);
  json_decref(a);
  free(out);
}

static void test_text_shows_controls(void **state) {
  (void)state;
  char *out = config("text");
  char *line = strstr(out, "QPROF_STORE");
  assert_non_null(line);
  assert_non_null(strstr(out, "<U+009B>"));
  assert_non_null(strstr(out, "<U+202E>"));
  assert_non_null(strstr(out, "\\xff"));
  free(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_json_escapes_and_reads_back),
      cmocka_unit_test(test_text_shows_controls),
  };
  return cmocka_run_group_tests(tests, NULL, qpt_tempdirs_remove);
}
