-- Schema version 10: two more roll-up levels, 10 minutes (level 4) and 6 hours
-- (level 5, at 00:00, 06:00, 12:00 and 18:00 UTC), written by every flush
-- with the others, so that a report over 12 hours reads 2 rows per key and
-- a window with minute edges at most 9 buckets and 5 ten-minute rows per
-- key at each edge (lib/store/store.c, plan_tiles). No table changes: the
-- levels are new values of qp_stats.level.
--
-- A migrated store has no rows of the new levels for its past. The reader
-- uses them only from levels_10m_6h_from on: the first 6-hour boundary at
-- least one hour after the migration (the hour for writers whose clocks run
-- ahead), or from the beginning for a store with no statistics yet.
INSERT OR IGNORE INTO qp_meta (key, value) VALUES ('levels_10m_6h_from',
  CASE WHEN EXISTS (SELECT 1 FROM qp_stats)
       THEN CAST((CAST(strftime('%s', 'now') AS INTEGER) + 3600 + 21599) / 21600 * 21600 AS TEXT)
       ELSE '-9223372036854775808' END);
-- A writer of an older qprof that opened the store before this migration
-- would go on writing 4 levels and the new ones would miss its statements.
-- Its inserts now fail: qp_writes_6_levels() exists only in the connections
-- of a qprof that writes all six (lib/store/sqlite.c), and an older one's
-- INSERT cannot even be prepared ("no such function"). It keeps its
-- statistics (a failed flush keeps them) and, once restarted, refuses the
-- store as newer than itself.
CREATE TRIGGER IF NOT EXISTS qp_stats_levels BEFORE INSERT ON qp_stats
  WHEN NEW.level = 0 AND NOT qp_writes_6_levels()
BEGIN
  SELECT RAISE(ABORT, 'this qprof writes 4 roll-up levels; the store (schema version 10) keeps 6: upgrade it');
END;
