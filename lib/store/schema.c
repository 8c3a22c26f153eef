/*
 * The store schema, embedded so that the library never needs the sql/
 * directory at run time. The text is byte for byte that of
 * sql/store_schema.sql and of each sql/migrations/NNN_name.sql (test_store
 * checks it).
 */
#include "store/store_int.h"

const char qp__store_schema_v1[] =
    "-- qprof profile store, schema version 1 (an SQLite file).\n"
    "-- Migrations to later versions are in sql/migrations/NNN_*.sql; a new store\n"
    "-- is created with this file and then every migration, in order. The library\n"
    "-- embeds the same text (lib/store/schema.c); a unit test keeps them equal.\n"
    "PRAGMA application_id = 1903194726;\n"
    "\n"
    "CREATE TABLE qp_meta (\n"
    "  key   TEXT PRIMARY KEY,\n"
    "  value TEXT NOT NULL\n"
    ") WITHOUT ROWID;\n"
    "INSERT INTO qp_meta (key, value) VALUES ('magic', 'qprof profile store');\n"
    "\n"
    "-- One row per fingerprint: its normalized text and, when sampling is on,\n"
    "-- the slowest sample statement seen (after redaction).\n"
    "CREATE TABLE qp_query (\n"
    "  fingerprint   INTEGER PRIMARY KEY, -- XXH3-64 of the normalized text, as a signed integer\n"
    "  backend       TEXT NOT NULL,       -- 'postgres' or 'sqlite'\n"
    "  query         TEXT NOT NULL,\n"
    "  sample        TEXT,\n"
    "  sample_ns     INTEGER,\n"
    "  first_seen_ns INTEGER NOT NULL,    -- wall clock, ns since the Unix epoch\n"
    "  last_seen_ns  INTEGER NOT NULL\n"
    ");\n"
    "\n"
    "-- Statistics per (level, bucket, fingerprint, backend, database). level 0 is\n"
    "-- the time bucket as recorded (bucket = its start, seconds since the epoch);\n"
    "-- level 1 the hour, level 2 the UTC day and level 3 all time (bucket 0) that\n"
    "-- the same flush also merged the row into.\n"
    "CREATE TABLE qp_stats (\n"
    "  level         INTEGER NOT NULL,\n"
    "  bucket        INTEGER NOT NULL,\n"
    "  fingerprint   INTEGER NOT NULL,\n"
    "  backend       TEXT NOT NULL,\n"
    "  database      TEXT NOT NULL,\n"
    "  calls         INTEGER NOT NULL,\n"
    "  errors        INTEGER NOT NULL,\n"
    "  error_codes   TEXT NOT NULL,     -- 'CODE:count,...' sorted by code\n"
    "  rows          INTEGER NOT NULL,\n"
    "  total_ns      INTEGER NOT NULL,\n"
    "  min_ns        INTEGER NOT NULL,\n"
    "  max_ns        INTEGER NOT NULL,\n"
    "  m2            REAL NOT NULL,     -- sum of squared deviations from the mean\n"
    "  first_seen_ns INTEGER NOT NULL,\n"
    "  last_seen_ns  INTEGER NOT NULL,\n"
    "  hist          BLOB NOT NULL,     -- log-bucket latency histogram (docs/profiles.md)\n"
    "  PRIMARY KEY (level, bucket, fingerprint, backend, database)\n"
    ") WITHOUT ROWID;\n";

static const char migration_2[] =
    "-- Schema version 2: a view of all-time totals per query, for people who open\n"
    "-- the store with the sqlite3 shell. Uses only built-in SQL functions.\n"
    "CREATE VIEW qp_summary AS\n"
    "SELECT printf('%016x', s.fingerprint) AS fingerprint,\n"
    "       s.backend,\n"
    "       s.database,\n"
    "       q.query,\n"
    "       s.calls,\n"
    "       s.errors,\n"
    "       s.rows,\n"
    "       s.total_ns / 1e6 AS total_ms,\n"
    "       s.total_ns / 1e6 / s.calls AS mean_ms,\n"
    "       s.min_ns / 1e6 AS min_ms,\n"
    "       s.max_ns / 1e6 AS max_ms,\n"
    "       s.first_seen_ns,\n"
    "       s.last_seen_ns\n"
    "  FROM qp_stats AS s\n"
    "  JOIN qp_query AS q ON q.fingerprint = s.fingerprint\n"
    " WHERE s.level = 3;\n";

const char *const qp__store_migrations[] = {migration_2};
const char *const qp__store_migration_files[] = {"sql/migrations/002_summary_view.sql"};
const int qp__store_nmigrations = 1;
