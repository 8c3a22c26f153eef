-- Schema version 2: a view of all-time totals per query, for people who open
-- the store with the sqlite3 shell. Uses only built-in SQL functions.
CREATE VIEW qp_summary AS
SELECT printf('%016x', s.fingerprint) AS fingerprint,
       s.backend,
       s.database,
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
