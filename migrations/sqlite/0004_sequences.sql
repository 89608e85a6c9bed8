-- Goals reached after a reminder (for the funnel and to end sequences), and
-- the call list the built-in `task` channel fills for staff.

CREATE TABLE goals (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    rule_id     TEXT    NOT NULL,
    delivery_id INTEGER NOT NULL UNIQUE REFERENCES deliveries (id),
    event_id    INTEGER NOT NULL REFERENCES events (id),
    event_kind  TEXT    NOT NULL,
    reached_at  INTEGER NOT NULL
);
CREATE INDEX goals_customer ON goals (customer_id, rule_id);

CREATE TABLE tasks (
    id             INTEGER PRIMARY KEY,
    customer_id    INTEGER NOT NULL REFERENCES customers (id),
    occurrence_key TEXT    NOT NULL UNIQUE,
    rule_id        TEXT    NOT NULL,
    title          TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    done_at        INTEGER
);
CREATE INDEX tasks_open ON tasks (created_at) WHERE done_at IS NULL;

CREATE INDEX deliveries_customer_rule ON deliveries (customer_id, rule_id, at);
