-- PostgreSQL store, schema version 8 to 9: what a writer without UPDATE
-- (an appending flush, version 7) knows of a query whose text is already
-- stored: its slowest sample and its first and last seen, which the
-- merging writer folds into qp_query in place. One row per fingerprint per
-- appending flush; reads merge them with qp_query (the slowest sample
-- wins), a compaction folds them in (docs/profiles.md, "The fleet store").
CREATE TABLE IF NOT EXISTS qprof.qp_query_delta (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  fingerprint   bigint NOT NULL,
  sample        text,
  sample_ns     bigint,
  first_seen_ns bigint NOT NULL,
  last_seen_ns  bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS qp_query_delta_fingerprint ON qprof.qp_query_delta (fingerprint);
UPDATE qprof.qp_meta SET value = '9' WHERE key = 'schema_version';
