-- PostgreSQL store, schema version 5 to 6 (as sql/migrations/006_dimensions.sql
-- for SQLite): statistics per user, application and host besides the
-- database; the three columns join the key ('' for rows written before).
ALTER TABLE qprof.qp_stats ADD COLUMN IF NOT EXISTS user_name text NOT NULL DEFAULT '',
  ADD COLUMN IF NOT EXISTS application text NOT NULL DEFAULT '',
  ADD COLUMN IF NOT EXISTS host text NOT NULL DEFAULT '';
ALTER TABLE qprof.qp_stats DROP CONSTRAINT IF EXISTS qp_stats_pkey;
ALTER TABLE qprof.qp_stats ADD CONSTRAINT qp_stats_pkey
  PRIMARY KEY (level, bucket, fingerprint, backend, database, user_name, application, host);
DROP VIEW IF EXISTS qprof.qp_summary;
CREATE VIEW qprof.qp_summary AS
SELECT lpad(to_hex(s.fingerprint), 16, '0') AS fingerprint,
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
       s.total_ns / 1e6 / NULLIF(s.calls, 0) AS mean_ms,
       s.min_ns / 1e6 AS min_ms,
       s.max_ns / 1e6 AS max_ms,
       s.first_seen_ns,
       s.last_seen_ns
  FROM qprof.qp_stats AS s
  JOIN qprof.qp_query AS q ON q.fingerprint = s.fingerprint
 WHERE s.level = 3;
UPDATE qprof.qp_meta SET value = '6' WHERE key = 'schema_version';
