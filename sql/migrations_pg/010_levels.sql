-- PostgreSQL store, schema version 9 to 10 (as sql/migrations/010_levels.sql
-- for SQLite): two more roll-up levels, 10 minutes (level 4) and 6 hours
-- (level 5). No table changes: the levels are new values of qp_stats.level.
--
-- The reader uses them only from levels_10m_6h_from on: the first 6-hour
-- boundary at least one hour after the migration (the server's clock; the
-- hour for hosts whose clocks run ahead), from the beginning for a store
-- with no statistics yet.
INSERT INTO qprof.qp_meta (key, value)
SELECT 'levels_10m_6h_from',
       CASE WHEN EXISTS (SELECT 1 FROM qprof.qp_stats) OR EXISTS (SELECT 1 FROM qprof.qp_stats_delta)
            THEN (ceil((extract(epoch FROM now()) + 3600) / 21600) * 21600)::bigint::text
            ELSE '-9223372036854775808' END
ON CONFLICT (key) DO NOTHING;

-- A collector of an older qprof that connected before this migration checks
-- the version only when it connects: it would go on writing 4 levels, and
-- the new ones would miss its statements. A flush of this version says
-- qprof.levels = '6' in its transaction (lib/store/pg_write.c); any other
-- insert of a bucket row is refused, so the older writer's flush rolls back
-- whole, it keeps its statistics (a failed flush keeps them), and when it
-- connects again it refuses the store as newer than itself. The check runs
-- once per key and flush (level 0 only), before the insert.
CREATE OR REPLACE FUNCTION qprof.qp_levels_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF coalesce(current_setting('qprof.levels', true), '') <> '6' THEN
    RAISE EXCEPTION 'this qprof writes 4 roll-up levels; the store (schema version 10) keeps 6: upgrade it'
      USING ERRCODE = 'QPL09';
  END IF;
  RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS qp_stats_levels ON qprof.qp_stats;
CREATE TRIGGER qp_stats_levels BEFORE INSERT ON qprof.qp_stats
  FOR EACH ROW WHEN (NEW.level = 0) EXECUTE PROCEDURE qprof.qp_levels_guard();
DROP TRIGGER IF EXISTS qp_stats_delta_levels ON qprof.qp_stats_delta;
CREATE TRIGGER qp_stats_delta_levels BEFORE INSERT ON qprof.qp_stats_delta
  FOR EACH ROW WHEN (NEW.level = 0) EXECUTE PROCEDURE qprof.qp_levels_guard();
UPDATE qprof.qp_meta SET value = '10' WHERE key = 'schema_version';
