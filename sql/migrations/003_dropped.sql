-- Schema version 3: statements the LD_PRELOAD shim could not record because
-- its segment was full ("dropped, segment full": docs/shim.md). They have no
-- text or fingerprint, only a number: the collector adds what each harvest
-- found to the row of the minute the harvest ran in (bucket: its start,
-- seconds since the epoch), in the same transaction as the statistics.
CREATE TABLE qp_dropped (
  bucket  INTEGER PRIMARY KEY,
  dropped INTEGER NOT NULL
);
