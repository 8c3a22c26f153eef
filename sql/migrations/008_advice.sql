-- Schema version 8: the runs of `qprof advise --save` (tools/qprof/cmd_advise.c),
-- so that `qprof report --format html` can show the advisor's findings beside
-- the queries they are about. One row per advised database (the DSN with its
-- password removed): a new run replaces the last one. `document` is the run's
-- JSON, exactly as `qprof advise --format json` prints it (docs/advise.md).
CREATE TABLE qp_advice (
  id       INTEGER PRIMARY KEY,
  database TEXT NOT NULL,
  at_ns    BIGINT NOT NULL,
  document TEXT NOT NULL
);
CREATE INDEX qp_advice_database ON qp_advice (database);
