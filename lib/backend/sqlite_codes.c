/* SQLite result code names from the one table (sqlite_codes.def). */
#include "sqlite_codes.h"

#include <sqlite3.h>
#include <stddef.h>

static const char *exact(int rc) {
  switch (rc) {
#define QP_SQLITE_CODE(c) \
  case c: return #c;
#include "sqlite_codes.def"
#undef QP_SQLITE_CODE
  default: return NULL;
  }
}

const char *qp__sqlite_code_name(int rc) {
  const char *n = exact(rc);
  if (n == NULL) n = exact(rc & 0xff); /* an extended code newer than the table */
  return n != NULL ? n : "SQLITE_ERROR";
}
