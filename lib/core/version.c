#define PCRE2_CODE_UNIT_WIDTH 8
#include <libpq-fe.h>
#include <pcre2.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>

#include "internal.h"
#include "qprof/version.h"

const char *qp_version(void) { return QPROF_VERSION_STRING; }

const char *qp_sqlite_version(void) { return sqlite3_libversion(); }

static char libpq_version[32];
static char pcre2_version[64];
static pthread_once_t versions_once = PTHREAD_ONCE_INIT;

static void format_versions(void) {
  /* PQlibVersion() is 150018 for 15.18; 90624 for 9.6.24 (before v10). */
  int v = PQlibVersion();
  if (v >= 100000)
    snprintf(libpq_version, sizeof libpq_version, "%d.%d", v / 10000, v % 10000);
  else
    snprintf(libpq_version, sizeof libpq_version, "%d.%d.%d", v / 10000, (v / 100) % 100, v % 100);
  if (pcre2_config(PCRE2_CONFIG_VERSION, pcre2_version) < 0)
    snprintf(pcre2_version, sizeof pcre2_version, "unknown");
}

const char *qp_libpq_version(void) {
  pthread_once(&versions_once, format_versions);
  return libpq_version;
}

const char *qp_pcre2_version(void) {
  pthread_once(&versions_once, format_versions);
  return pcre2_version;
}
