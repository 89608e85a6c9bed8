-- Herald's store. Times are Unix milliseconds, UTC.

CREATE TABLE customers (
    id            INTEGER PRIMARY KEY,
    external_id   TEXT    NOT NULL UNIQUE,
    name          TEXT,
    email         TEXT,
    phone         TEXT,
    wechat_openid TEXT,
    region        TEXT,
    timezone      TEXT    NOT NULL,
    locale        TEXT,
    state         TEXT,
    attributes    TEXT    NOT NULL DEFAULT '{}',
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    deleted_at    INTEGER
);
CREATE INDEX customers_region ON customers (region);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    kind        TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    properties  TEXT    NOT NULL DEFAULT '{}',
    event_id    TEXT UNIQUE,
    recorded_at INTEGER NOT NULL
);
CREATE INDEX events_customer_kind_at ON events (customer_id, kind, at);

-- One row per planned reminder occurrence. The occurrence key is unique, so
-- planning twice or racing two ticks can never produce two reminders.
-- A claim keeps the row pending but moves due_at to the end of the lease and
-- sets claim_token: a process that dies mid-send leaves the row to be claimed
-- again when the lease ends. occurs_at is the planned time of the occurrence
-- itself; due_at moves with retries and leases.
CREATE TABLE schedule (
    id             INTEGER PRIMARY KEY,
    customer_id    INTEGER NOT NULL REFERENCES customers (id),
    rule_id        TEXT    NOT NULL,
    occurrence_key TEXT    NOT NULL UNIQUE,
    occurs_at      INTEGER NOT NULL,
    due_at         INTEGER NOT NULL,
    status         TEXT    NOT NULL CHECK (status IN ('pending', 'done', 'skipped', 'canceled', 'failed', 'dead')),
    attempts       INTEGER NOT NULL DEFAULT 0,
    claim_token    TEXT,
    claimed_at     INTEGER,
    anchor         TEXT,
    context        TEXT,
    last_error     TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX schedule_due ON schedule (due_at) WHERE status = 'pending';
CREATE INDEX schedule_customer_rule ON schedule (customer_id, rule_id, status);

-- One row per attempt at delivering (or deciding to skip) an occurrence.
CREATE TABLE deliveries (
    id                  INTEGER PRIMARY KEY,
    schedule_id         INTEGER NOT NULL REFERENCES schedule (id),
    customer_id         INTEGER NOT NULL REFERENCES customers (id),
    rule_id             TEXT    NOT NULL,
    channel             TEXT,
    provider            TEXT,
    attempt             INTEGER NOT NULL,
    status              TEXT    NOT NULL CHECK (status IN ('delivered', 'failed', 'dead', 'skipped')),
    provider_message_id TEXT,
    error               TEXT,
    subject             TEXT,
    retry_at            INTEGER,
    at                  INTEGER NOT NULL,
    duration_ms         INTEGER
);
CREATE INDEX deliveries_at ON deliveries (at);
CREATE INDEX deliveries_customer ON deliveries (customer_id, at);

-- In-app messages.
CREATE TABLE inbox (
    id             INTEGER PRIMARY KEY,
    customer_id    INTEGER NOT NULL REFERENCES customers (id),
    occurrence_key TEXT    NOT NULL UNIQUE,
    rule_id        TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    text           TEXT    NOT NULL,
    html           TEXT,
    created_at     INTEGER NOT NULL,
    read_at        INTEGER
);
CREATE INDEX inbox_customer ON inbox (customer_id, created_at);

-- Per-plugin key-value store; namespace is the plugin's channel.
CREATE TABLE plugin_kv (
    namespace  TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      BLOB NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (namespace, key)
);
