-- Sends whose outcome is unknown can be held for an operator: the schedule
-- gains the statuses `unknown` (held: the send may or may not have reached
-- the recipient; `herald redrive` sends it again, `herald drop` lets it go)
-- and `dropped`, deliveries the status `unknown`.
ALTER TABLE schedule DROP CONSTRAINT schedule_status_check;
ALTER TABLE schedule ADD CONSTRAINT schedule_status_check
    CHECK (status IN ('pending', 'done', 'skipped', 'canceled', 'failed', 'dead', 'unknown', 'dropped'));
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('delivered', 'failed', 'dead', 'skipped', 'suppressed', 'deferred', 'unknown'));
CREATE INDEX schedule_held ON schedule (status, id) WHERE status IN ('unknown', 'dead');
