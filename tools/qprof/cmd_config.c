/* qprof config: the options table, as defaults, environment and current values. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "report_common.h"

static const char *type_name(qp_opt_type t) {
  switch (t) {
  case QP_OPT_BOOL: return "bool";
  case QP_OPT_INT: return "int";
  case QP_OPT_DOUBLE: return "number";
  case QP_OPT_STRING: return "string";
  }
  return "?";
}

static void usage(FILE *f) {
  fprintf(f, "Usage: qprof config [--list] [--format text|json]\n\n"
             "Lists every option with its type, default, QPROF_* environment variable,\n"
             "the value in effect here (defaults overridden by the environment) and a\n"
             "one-line description. Passwords in values (a DSN's user:password@, password=\n"
             "keyword or ?password= parameter) are shown as ***.\n\n"
             "  --format F   text (default) or json (an array of objects: name, env, type,\n"
             "               default, value, unit, doc)\n"
             "  --list       the same listing (accepted for scripts that pass it)\n"
             "  -h, --help   this text\n");
}

/* `text` as it may be shown: any option's value may hold a DSN (the store
 * does, a DSN set on the wrong variable would), so every one goes through the
 * library's redaction. Malloc'd; NULL when out of memory. */
static char *redacted(const char *text) {
  size_t n = qp_dsn_redact(text, NULL, 0);
  char *out = malloc(n + 1);
  if (out != NULL) qp_dsn_redact(text, out, n + 1);
  return out;
}

/* A JSON string through the CLI's one JSON string writer (report_json.c):
 * invalid UTF-8, C0 and C1 controls and bidirectional overrides escaped. */
static void json_string(const char *s) {
  static jw w;
  jw_init(&w, stdout);
  rq_json_string(&w, s);
  jw_flush(&w);
}

/* A value for the terminal: controls shown, not sent, as `qprof report`
 * shows stored text (rq_shorten without a width). Frees s; NULL when out of
 * memory. */
static char *for_terminal(char *s) {
  if (s == NULL) return NULL;
  size_t cap = strlen(s) * 8 + 8; /* at most "<U+XXXX>" per byte */
  char *t = malloc(cap);
  if (t != NULL) rq_shorten(s, 0, t, cap);
  free(s);
  return t;
}

int cmd_config(int argc, char **argv) {
  static const struct option longopts[] = {{"list", no_argument, NULL, 'l'},
                                           {"format", required_argument, NULL, 'f'},
                                           {"help", no_argument, NULL, 'h'},
                                           {NULL, 0, NULL, 0}};
  const char *format = "text";
  int c;
  while ((c = getopt_long(argc, argv, "lf:h", longopts, NULL)) != -1) {
    switch (c) {
    case 'l': break;
    case 'f': format = optarg; break;
    case 'h': usage(stdout); return QP_EXIT_OK;
    default: return cli_usage_error("config", "unknown option");
    }
  }
  if (optind < argc) return cli_usage_error("config", "unexpected argument '%s'", argv[optind]);
  bool json = strcmp(format, "json") == 0;
  if (!json && strcmp(format, "text") != 0)
    return cli_usage_error("config", "--format must be text or json, not '%s'", format);

  qp_config *cfg;
  if (qp_config_new(&cfg, NULL) != QP_OK) return cli_fail("config", "out of memory");
  if (qp_config_load_env(cfg) != QP_OK) {
    int rc = cli_fail("config", "%s", qp_config_errmsg(cfg));
    qp_config_free(cfg);
    return rc;
  }
  if (json) printf("[");
  for (size_t i = 0; i < qp_option_count(); i++) {
    const qp_option_info *o = qp_option_at(i);
    char *def = redacted(o->default_value), *value = redacted(qp_config_text(cfg, o->name));
    if (def == NULL || value == NULL) {
      free(def);
      free(value);
      qp_config_free(cfg);
      return cli_fail("config", "out of memory");
    }
    if (json) {
      printf("%s\n {\"name\":", i ? "," : "");
      json_string(o->name);
      printf(",\"env\":");
      json_string(o->env);
      printf(",\"type\":\"%s\",\"default\":", type_name(o->type));
      json_string(def);
      printf(",\"value\":");
      json_string(value);
      printf(",\"unit\":");
      json_string(o->unit);
      printf(",\"doc\":");
      json_string(o->doc);
      printf("}");
    } else if ((def = for_terminal(def)) == NULL || (value = for_terminal(value)) == NULL) {
      free(def);
      free(value);
      qp_config_free(cfg);
      return cli_fail("config", "out of memory");
    } else {
      printf("%-26s %-6s default=%-10s value=%-10s %s\n    %s", o->name, type_name(o->type),
             def[0] ? def : "''", value[0] ? value : "''", o->env, o->doc);
      if (o->unit[0]) printf(" (%s)", o->unit);
      printf("\n");
    }
    free(def);
    free(value);
  }
  if (json) printf("\n]\n");
  qp_config_free(cfg);
  return QP_EXIT_OK;
}
