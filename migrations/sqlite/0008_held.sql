-- Sends whose outcome is unknown can be held for an operator: the schedule
-- gains the statuses `unknown` (held: the send may or may not have reached
-- the recipient; `herald redrive` sends it again, `herald drop` lets it go)
-- and `dropped`, deliveries the status `unknown`; and the schedule gains
-- the `send_started_at` note PostgreSQL already has (a claim that ran out
-- with it set was in the middle of a send: the next claim knows it is in
-- doubt).
--
-- SQLite cannot alter a CHECK constraint, and rebuilding these tables would
-- copy every row (and needs foreign keys off, which sqlx's migration
-- transaction does not allow). Widening the list of allowed values changes
-- nothing stored, so the constraint's text is edited in place, the way
-- SQLite's documentation describes for loosening a constraint. The column
-- is added first: ALTER TABLE rewrites the table's text from what the
-- connection has parsed, and must not run between the edit and the reload.
-- The CREATE INDEX after the edit bumps the schema version, so every
-- connection reads the new definitions.
ALTER TABLE schedule ADD COLUMN send_started_at INTEGER;

PRAGMA writable_schema = ON;
UPDATE sqlite_schema
   SET sql = replace(sql, '''canceled'', ''failed'', ''dead''))',
                          '''canceled'', ''failed'', ''dead'', ''unknown'', ''dropped''))')
 WHERE type = 'table' AND name = 'schedule';
UPDATE sqlite_schema
   SET sql = replace(sql, '''skipped'', ''suppressed'', ''deferred''))',
                          '''skipped'', ''suppressed'', ''deferred'', ''unknown''))')
 WHERE type = 'table' AND name = 'deliveries';
PRAGMA writable_schema = OFF;

CREATE INDEX schedule_held ON schedule (status, id) WHERE status IN ('unknown', 'dead');
