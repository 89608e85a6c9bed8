-- Storage settings from measurement (docs/scale-out.md): every claim moves a
-- schedule row's due_at, which the schedule_due index covers, so no claim or
-- release is a HOT update (0 of 66,416 in the fleet test) and the free
-- space fillfactor kept for them bought nothing. What the table needs is
-- vacuum that keeps up: it collects dead versions by the dozen per live row
-- (66,416 dead tuples over 1,200 rows in that run), so autovacuum starts at
-- 1% of the table instead of 20%. The one-row-per-channel rate table is
-- updated on every tick and is all HOT updates; vacuum it by count.
ALTER TABLE schedule SET (
    fillfactor = 100,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_limit = 2000
);
ALTER TABLE channel_rates SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000
);
