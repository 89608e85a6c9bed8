-- Facts about the deployment itself, such as the fingerprint of the strategy
-- the schedule was last planned with.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
