-- PostgreSQL store, schema version 3 to 4 (as sql/migrations/004_cache_hits.sql
-- for SQLite): statements a result cache answered, per statistics row, apart
-- from the calls that ran on the database; the summary view's mean for rows
-- with hits and no calls.
ALTER TABLE qprof.qp_stats ADD COLUMN IF NOT EXISTS cache_hits bigint NOT NULL DEFAULT 0,
  ADD COLUMN IF NOT EXISTS cache_hit_ns bigint NOT NULL DEFAULT 0;
-- (dropped and made again, not replaced: a store that a test set back to an
-- older version may hold a later version's wider view)
DROP VIEW IF EXISTS qprof.qp_summary;
CREATE VIEW qprof.qp_summary AS
SELECT lpad(to_hex(s.fingerprint), 16, '0') AS fingerprint,
       s.backend,
       s.database,
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
UPDATE qprof.qp_meta SET value = '4' WHERE key = 'schema_version';
