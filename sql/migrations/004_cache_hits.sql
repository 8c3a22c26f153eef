-- Schema version 4: statements a result cache answered (include/qprof/cache.h),
-- per statistics row, apart from the calls that ran on the database. A row
-- may have hits and no calls (then min_ns is the largest integer and hist
-- empty).
ALTER TABLE qp_stats ADD COLUMN cache_hits INTEGER NOT NULL DEFAULT 0;
ALTER TABLE qp_stats ADD COLUMN cache_hit_ns INTEGER NOT NULL DEFAULT 0;
