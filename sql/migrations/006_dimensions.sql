-- Schema version 6: who ran each statement. Statistics are kept per user
-- (the PostgreSQL role; the OS user for SQLite), application
-- (application_name, else the program name) and host (the recording
-- machine, or the client host of an ingested log) besides the database:
-- the three columns join the key. Rows of older versions get '' (not
-- recorded). SQLite cannot change a primary key in place, so the table is
-- rebuilt (and the view over it made again, with the new columns).
DROP VIEW qp_summary;
CREATE TABLE qp_stats_v6 (
  level         INTEGER NOT NULL,
  bucket        INTEGER NOT NULL,
  fingerprint   INTEGER NOT NULL,
  backend       TEXT NOT NULL,
  database      TEXT NOT NULL,
  user_name     TEXT NOT NULL DEFAULT '',
  application   TEXT NOT NULL DEFAULT '',
  host          TEXT NOT NULL DEFAULT '',
  calls         INTEGER NOT NULL,
  errors        INTEGER NOT NULL,
  error_codes   TEXT NOT NULL,
  rows          INTEGER NOT NULL,
  total_ns      INTEGER NOT NULL,
  min_ns        INTEGER NOT NULL,
  max_ns        INTEGER NOT NULL,
  m2            REAL NOT NULL,
  first_seen_ns INTEGER NOT NULL,
  last_seen_ns  INTEGER NOT NULL,
  hist          BLOB NOT NULL,
  cache_hits    INTEGER NOT NULL DEFAULT 0,
  cache_hit_ns  INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (level, bucket, fingerprint, backend, database, user_name, application, host)
) WITHOUT ROWID;
INSERT INTO qp_stats_v6 (level, bucket, fingerprint, backend, database, calls, errors,
                         error_codes, rows, total_ns, min_ns, max_ns, m2, first_seen_ns,
                         last_seen_ns, hist, cache_hits, cache_hit_ns)
SELECT level, bucket, fingerprint, backend, database, calls, errors, error_codes, rows, total_ns,
       min_ns, max_ns, m2, first_seen_ns, last_seen_ns, hist, cache_hits, cache_hit_ns
  FROM qp_stats;
DROP TABLE qp_stats;
ALTER TABLE qp_stats_v6 RENAME TO qp_stats;
CREATE VIEW qp_summary AS
SELECT printf('%016x', s.fingerprint) AS fingerprint,
       s.backend,
       s.database,
       s.user_name,
       s.application,
       s.host,
       q.query,
       s.calls,
       s.errors,
       s.rows,
       s.total_ns / 1e6 AS total_ms,
       s.total_ns / 1e6 / s.calls AS mean_ms,
       s.min_ns / 1e6 AS min_ms,
       s.max_ns / 1e6 AS max_ms,
       s.first_seen_ns,
       s.last_seen_ns
  FROM qp_stats AS s
  JOIN qp_query AS q ON q.fingerprint = s.fingerprint
 WHERE s.level = 3;
