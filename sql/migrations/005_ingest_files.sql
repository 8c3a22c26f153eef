-- Schema version 5: how far `qprof ingest` read each PostgreSQL log file
-- (lib/ingest/file.c), written in the transaction of the statistics read
-- from it, so that reading a file again counts nothing twice. A file is
-- known again by the hash of its first 4 KB (head_hash over head_len bytes
-- of its text, uncompressed), and by device and inode while it has them.
CREATE TABLE qp_ingest_file (
  id         INTEGER PRIMARY KEY,
  path       TEXT NOT NULL,
  device     BIGINT NOT NULL,
  inode      BIGINT NOT NULL,
  size       BIGINT NOT NULL,
  head_len   BIGINT NOT NULL,
  head_hash  BIGINT NOT NULL,
  read_to    BIGINT NOT NULL,
  lines      BIGINT NOT NULL,
  gzip       INTEGER NOT NULL,
  updated_ns BIGINT NOT NULL
);
CREATE INDEX qp_ingest_file_head ON qp_ingest_file (head_hash);
CREATE INDEX qp_ingest_file_inode ON qp_ingest_file (device, inode);
