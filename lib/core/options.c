#include <errno.h>
#include <pthread.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"
#include "options_table.h"

/* Environment variable names are derived from option names once, on first use. */
static const char *env_name_of(const char *name, char *buf, size_t len);

#define QP_OPTION_ROW_(id, name, type, def, min, max, unit, doc) \
  [QP__OPT_##id] = {name, NULL, type, def, min, max, unit, doc},
static qp_option_info option_table[] = {QP_OPTIONS_TABLE(QP_OPTION_ROW_)};
#undef QP_OPTION_ROW_
#define OPTION_COUNT QP_ARRAY_LEN(option_table)

static char env_names[OPTION_COUNT][48];
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

static void init_env_names(void) {
  for (size_t i = 0; i < OPTION_COUNT; i++)
    option_table[i].env = env_name_of(option_table[i].name, env_names[i], sizeof env_names[i]);
}

static const char *env_name_of(const char *name, char *buf, size_t len) {
  size_t pos = 0;
  const char *prefix = "QPROF_";
  while (*prefix && pos + 1 < len) buf[pos++] = *prefix++;
  for (; *name && pos + 1 < len; name++) {
    char c = *name;
    if (c == '.') c = '_';
    else if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
    buf[pos++] = c;
  }
  buf[pos] = '\0';
  return buf;
}

size_t qp_option_count(void) { return OPTION_COUNT; }

const qp_option_info *qp_option_at(size_t i) {
  pthread_once(&env_once, init_env_names);
  return i < OPTION_COUNT ? &option_table[i] : NULL;
}

static ptrdiff_t option_index(const char *name) {
  if (name == NULL) return -1;
  for (size_t i = 0; i < OPTION_COUNT; i++)
    if (strcmp(option_table[i].name, name) == 0) return (ptrdiff_t)i;
  return -1;
}

const qp_option_info *qp_option_find(const char *name) {
  ptrdiff_t i = option_index(name);
  return i < 0 ? NULL : qp_option_at((size_t)i);
}

typedef struct option_value {
  char *text; /* canonical text, owned */
  int64_t i;
  double d;
  bool b;
} option_value;

struct qp_config {
  qp_hooks hooks;
  qp_err err;
  option_value values[OPTION_COUNT];
};

static bool parse_bool(const char *s, bool *out) {
  static const char *yes[] = {"1", "true", "on", "yes"};
  static const char *no[] = {"0", "false", "off", "no"};
  for (size_t i = 0; i < 4; i++) {
    if (strcasecmp(s, yes[i]) == 0) return (*out = true), true;
    if (strcasecmp(s, no[i]) == 0) return (*out = false), true;
  }
  return false;
}

/* A bad value is quoted in the message with any password in it removed: a DSN
 * given to the wrong variable must not be echoed. */
static qp_status bad_value(qp_err *err, const qp_option_info *info, const char *value,
                           const char *what) {
  char shown[160];
  qp__dsn_redact(value, shown, sizeof shown);
  return qp__err_set(err, QP_INVALID, "option %s: '%s' is not %s", info->name, shown, what);
}

/* Parses `value` for option `info` into *v (text left untouched). */
static qp_status parse_value(qp_err *err, const qp_option_info *info, const char *value,
                             option_value *v) {
  char *end;
  switch (info->type) {
  case QP_OPT_BOOL:
    if (!parse_bool(value, &v->b))
      return bad_value(err, info, value, "a boolean (true/false)");
    return QP_OK;
  case QP_OPT_INT: {
    errno = 0;
    long long n = strtoll(value, &end, 10);
    if (*value == '\0' || *end != '\0' || errno == ERANGE)
      return bad_value(err, info, value, "an integer");
    if ((double)n < info->min || (double)n > info->max)
      return qp__err_set(err, QP_RANGE, "option %s: %lld is outside [%.0f, %.0f]", info->name, n,
                         info->min, info->max);
    v->i = n;
    return QP_OK;
  }
  case QP_OPT_DOUBLE: {
    errno = 0;
    double d = strtod(value, &end);
    if (*value == '\0' || *end != '\0' || errno == ERANGE || !isfinite(d))
      return bad_value(err, info, value, "a number");
    if (d < info->min || d > info->max)
      return qp__err_set(err, QP_RANGE, "option %s: %g is outside [%g, %g]", info->name, d,
                         info->min, info->max);
    v->d = d;
    return QP_OK;
  }
  case QP_OPT_STRING:
    return QP_OK;
  }
  return qp__err_set(err, QP_INVALID, "option %s: unknown type", info->name);
}

qp_status qp_config_new(qp_config **out, const qp_hooks *hooks) {
  qp_hooks h;
  qp__hooks_init(&h, hooks);
  *out = NULL;
  qp_config *cfg = qp__calloc(&h, 1, sizeof *cfg);
  if (cfg == NULL) return QP_NOMEM;
  cfg->hooks = h;
  for (size_t i = 0; i < OPTION_COUNT; i++) {
    if (qp_config_set(cfg, option_table[i].name, option_table[i].default_value) != QP_OK) {
      qp_status st = cfg->err.code;
      qp_config_free(cfg);
      return st;
    }
  }
  qp__err_clear(&cfg->err);
  *out = cfg;
  return QP_OK;
}

void qp_config_free(qp_config *cfg) {
  if (cfg == NULL) return;
  for (size_t i = 0; i < OPTION_COUNT; i++) qp__free(&cfg->hooks, cfg->values[i].text);
  qp__free(&cfg->hooks, cfg);
}

qp_status qp_config_set(qp_config *cfg, const char *name, const char *value) {
  qp__err_clear(&cfg->err);
  ptrdiff_t i = option_index(name);
  if (i < 0)
    return qp__err_set(&cfg->err, QP_NOTFOUND, "unknown option '%s' (see qprof config --list)",
                       name ? name : "(null)");
  if (value == NULL) value = "";
  option_value v = cfg->values[i];
  qp_status st = parse_value(&cfg->err, &option_table[i], value, &v);
  if (st != QP_OK) return st;
  char *text = qp__strdup(&cfg->hooks, value);
  if (text == NULL) return qp__err_set(&cfg->err, QP_NOMEM, "option %s: out of memory", name);
  qp__free(&cfg->hooks, cfg->values[i].text);
  v.text = text;
  cfg->values[i] = v;
  return QP_OK;
}

qp_status qp_config_load_env(qp_config *cfg) {
  qp__err_clear(&cfg->err);
  for (size_t i = 0; i < OPTION_COUNT; i++) {
    const qp_option_info *info = qp_option_at(i);
    const char *v = getenv(info->env);
    if (v == NULL) continue;
    qp_status st = qp_config_set(cfg, info->name, v);
    if (st != QP_OK) {
      char msg[QP_ERRMSG_MAX];
      memcpy(msg, cfg->err.msg, sizeof msg);
      return qp__err_set(&cfg->err, st, "%s: %s", info->env, msg);
    }
  }
  return QP_OK;
}

static const option_value *get_typed(const qp_config *cfg, const char *name, qp_opt_type type) {
  ptrdiff_t i = option_index(name);
  if (i < 0 || option_table[i].type != type) return NULL;
  return &cfg->values[i];
}

int64_t qp_config_int(const qp_config *cfg, const char *name) {
  const option_value *v = get_typed(cfg, name, QP_OPT_INT);
  return v ? v->i : 0;
}

double qp_config_double(const qp_config *cfg, const char *name) {
  const option_value *v = get_typed(cfg, name, QP_OPT_DOUBLE);
  return v ? v->d : 0.0;
}

bool qp_config_bool(const qp_config *cfg, const char *name) {
  const option_value *v = get_typed(cfg, name, QP_OPT_BOOL);
  return v ? v->b : false;
}

const char *qp_config_string(const qp_config *cfg, const char *name) {
  const option_value *v = get_typed(cfg, name, QP_OPT_STRING);
  return v && v->text ? v->text : "";
}

const char *qp_config_text(const qp_config *cfg, const char *name) {
  ptrdiff_t i = option_index(name);
  if (i < 0) return NULL;
  return cfg->values[i].text ? cfg->values[i].text : "";
}

const char *qp_config_errmsg(const qp_config *cfg) { return cfg ? cfg->err.msg : "no configuration"; }

/* ---- by id, inside the library (internal.h) ----------------------------- */

const qp_option_info *qp__option(qp__opt id) { return qp_option_at((size_t)id); }

int64_t qp__config_int(const qp_config *cfg, qp__opt id) { return cfg->values[id].i; }
double qp__config_double(const qp_config *cfg, qp__opt id) { return cfg->values[id].d; }
bool qp__config_bool(const qp_config *cfg, qp__opt id) { return cfg->values[id].b; }
const char *qp__config_string(const qp_config *cfg, qp__opt id) {
  return cfg->values[id].text ? cfg->values[id].text : "";
}
