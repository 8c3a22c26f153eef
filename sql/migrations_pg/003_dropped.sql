-- PostgreSQL store, schema version 2 to 3 (as sql/migrations/003_dropped.sql
-- for SQLite): statements the shim could not record (segment full), per
-- minute of the harvest that found them.
CREATE TABLE qprof.qp_dropped (
  bucket  bigint PRIMARY KEY,
  dropped bigint NOT NULL
);
UPDATE qprof.qp_meta SET value = '3' WHERE key = 'schema_version';
