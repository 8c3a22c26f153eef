-- PostgreSQL store, schema version 6 to 7: an append-only write path for
-- roles with INSERT and SELECT only (no UPDATE). Such a writer appends its
-- flush's deltas here instead of merging them into qp_stats / qp_dropped;
-- readers merge these rows with the compacted ones, and a role with UPDATE
-- and DELETE folds them in (qprof compact, qprof prune, or an upsert-capable
-- writer after its flush): DELETE ... RETURNING feeding the merge, in one
-- transaction. No key but the row id: several rows per statistics key are
-- expected and nothing here is ever updated in place.
CREATE TABLE IF NOT EXISTS qprof.qp_stats_delta (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  level         integer NOT NULL,
  bucket        bigint NOT NULL,
  fingerprint   bigint NOT NULL,
  backend       text NOT NULL,
  database      text NOT NULL,
  user_name     text NOT NULL DEFAULT '',
  application   text NOT NULL DEFAULT '',
  host          text NOT NULL DEFAULT '',
  calls         bigint NOT NULL,
  errors        bigint NOT NULL,
  error_codes   text NOT NULL,
  rows          bigint NOT NULL,
  total_ns      bigint NOT NULL,
  min_ns        bigint NOT NULL,
  max_ns        bigint NOT NULL,
  m2            double precision NOT NULL,
  first_seen_ns bigint NOT NULL,
  last_seen_ns  bigint NOT NULL,
  hist          bytea NOT NULL,
  cache_hits    bigint NOT NULL DEFAULT 0,
  cache_hit_ns  bigint NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS qp_stats_delta_bucket ON qprof.qp_stats_delta (level, bucket);
CREATE TABLE IF NOT EXISTS qprof.qp_dropped_delta (
  id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  bucket  bigint NOT NULL,
  dropped bigint NOT NULL
);
-- The summary view sums the all-time rows with their deltas (exact for the
-- counts, sums, min/max and first/last seen it shows).
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
  FROM (SELECT fingerprint, backend, database, user_name, application, host,
               sum(calls)::bigint AS calls, sum(errors)::bigint AS errors,
               sum(rows)::bigint AS rows, sum(total_ns) AS total_ns,
               min(min_ns) AS min_ns, max(max_ns) AS max_ns,
               min(first_seen_ns) AS first_seen_ns, max(last_seen_ns) AS last_seen_ns
          FROM (SELECT fingerprint, backend, database, user_name, application, host, calls,
                       errors, rows, total_ns, min_ns, max_ns, first_seen_ns, last_seen_ns
                  FROM qprof.qp_stats WHERE level = 3
                UNION ALL
                SELECT fingerprint, backend, database, user_name, application, host, calls,
                       errors, rows, total_ns, min_ns, max_ns, first_seen_ns, last_seen_ns
                  FROM qprof.qp_stats_delta WHERE level = 3) AS u
         GROUP BY fingerprint, backend, database, user_name, application, host) AS s
  JOIN qprof.qp_query AS q ON q.fingerprint = s.fingerprint;
UPDATE qprof.qp_meta SET value = '7' WHERE key = 'schema_version';
