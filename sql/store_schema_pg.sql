-- qprof profile store on PostgreSQL (a central store for a fleet of hosts),
-- schema version 4: the same tables as the SQLite store (store_schema.sql
-- plus migrations), in their own schema "qprof". The library embeds this
-- text (lib/store/schema.c); a unit test keeps them equal. Histograms and
-- error-code lists are merged by the writing client inside its transaction,
-- under row locks, so no server-side function is needed.
CREATE SCHEMA qprof;

CREATE TABLE qprof.qp_meta (
  key   text PRIMARY KEY,
  value text NOT NULL
);
INSERT INTO qprof.qp_meta (key, value) VALUES
  ('magic', 'qprof profile store'),
  ('schema_version', '4');

CREATE TABLE qprof.qp_query (
  fingerprint   bigint PRIMARY KEY,
  backend       text NOT NULL,
  query         text NOT NULL,
  sample        text,
  sample_ns     bigint,
  first_seen_ns bigint NOT NULL,
  last_seen_ns  bigint NOT NULL
);

CREATE TABLE qprof.qp_stats (
  level         integer NOT NULL,
  bucket        bigint NOT NULL,
  fingerprint   bigint NOT NULL,
  backend       text NOT NULL,
  database      text NOT NULL,
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
  cache_hits    bigint NOT NULL DEFAULT 0, -- answered by a result cache (version 4)
  cache_hit_ns  bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (level, bucket, fingerprint, backend, database)
);

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

-- Version 3: statements the shim could not record (segment full), per
-- minute of the harvest that found them (sql/migrations/003_dropped.sql).
CREATE TABLE qprof.qp_dropped (
  bucket  bigint PRIMARY KEY,
  dropped bigint NOT NULL
);
