/* SQLite result code names, as the profile stores them: one table
 * (sqlite_codes.def) and one function for the backend and the shim. */
#ifndef QPROF_SQLITE_CODES_H
#define QPROF_SQLITE_CODES_H

/* "SQLITE_CONSTRAINT_UNIQUE" for an extended code, "SQLITE_BUSY" for a
 * primary one. An extended code this build's table does not know gives its
 * primary code's name; anything else "SQLITE_ERROR". Static; thread-safe. */
const char *qp__sqlite_code_name(int rc);

#endif
