-- qprof profile store, schema version 1 (an SQLite file).
-- Migrations to later versions are in sql/migrations/NNN_*.sql; a new store
-- is created with this file and then every migration, in order. The library
-- embeds the same text (lib/store/schema.c); a unit test keeps them equal.
PRAGMA application_id = 1903194726;

CREATE TABLE qp_meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO qp_meta (key, value) VALUES ('magic', 'qprof profile store');

-- One row per fingerprint: its normalized text and, when sampling is on,
-- the slowest sample statement seen (after redaction).
CREATE TABLE qp_query (
  fingerprint   INTEGER PRIMARY KEY, -- XXH3-64 of the normalized text, as a signed integer
  backend       TEXT NOT NULL,       -- 'postgres' or 'sqlite'
  query         TEXT NOT NULL,
  sample        TEXT,
  sample_ns     INTEGER,
  first_seen_ns INTEGER NOT NULL,    -- wall clock, ns since the Unix epoch
  last_seen_ns  INTEGER NOT NULL
);

-- Statistics per (level, bucket, fingerprint, backend, database). level 0 is
-- the time bucket as recorded (bucket = its start, seconds since the epoch);
-- level 1 the hour, level 2 the UTC day and level 3 all time (bucket 0) that
-- the same flush also merged the row into.
CREATE TABLE qp_stats (
  level         INTEGER NOT NULL,
  bucket        INTEGER NOT NULL,
  fingerprint   INTEGER NOT NULL,
  backend       TEXT NOT NULL,
  database      TEXT NOT NULL,
  calls         INTEGER NOT NULL,
  errors        INTEGER NOT NULL,
  error_codes   TEXT NOT NULL,     -- 'CODE:count,...' sorted by code
  rows          INTEGER NOT NULL,
  total_ns      INTEGER NOT NULL,
  min_ns        INTEGER NOT NULL,
  max_ns        INTEGER NOT NULL,
  m2            REAL NOT NULL,     -- sum of squared deviations from the mean
  first_seen_ns INTEGER NOT NULL,
  last_seen_ns  INTEGER NOT NULL,
  hist          BLOB NOT NULL,     -- log-bucket latency histogram (docs/profiles.md)
  PRIMARY KEY (level, bucket, fingerprint, backend, database)
) WITHOUT ROWID;
