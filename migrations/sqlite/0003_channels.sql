-- Vendor channels: suppression lists, provider delivery reports, failover.

-- A customer who refused a channel (replied STOP, unsubscribed at the
-- provider, was imported from a suppression list) gets nothing more on it.
CREATE TABLE suppressions (
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    channel     TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (customer_id, channel)
);

-- Deliveries gain the `suppressed` and `deferred` (send window, frequency
-- cap) outcomes, the provider's delivery report
-- and the channel a failover came from; the table is rebuilt because SQLite
-- cannot alter a CHECK constraint.
CREATE TABLE deliveries_new (
    id                  INTEGER PRIMARY KEY,
    schedule_id         INTEGER NOT NULL REFERENCES schedule (id),
    customer_id         INTEGER NOT NULL REFERENCES customers (id),
    rule_id             TEXT    NOT NULL,
    channel             TEXT,
    provider            TEXT,
    attempt             INTEGER NOT NULL,
    status              TEXT    NOT NULL CHECK (status IN ('delivered', 'failed', 'dead', 'skipped', 'suppressed', 'deferred')),
    provider_message_id TEXT,
    error               TEXT,
    subject             TEXT,
    retry_at            INTEGER,
    at                  INTEGER NOT NULL,
    duration_ms         INTEGER,
    failover_from       TEXT,
    report              TEXT CHECK (report IN ('delivered', 'undelivered')),
    report_reason       TEXT,
    report_at           INTEGER
);
INSERT INTO deliveries_new (id, schedule_id, customer_id, rule_id, channel, provider, attempt, status,
                            provider_message_id, error, subject, retry_at, at, duration_ms)
    SELECT id, schedule_id, customer_id, rule_id, channel, provider, attempt, status,
           provider_message_id, error, subject, retry_at, at, duration_ms
    FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;
CREATE INDEX deliveries_at ON deliveries (at);
CREATE INDEX deliveries_customer ON deliveries (customer_id, at);
CREATE INDEX deliveries_provider_message ON deliveries (channel, provider_message_id)
    WHERE provider_message_id IS NOT NULL;

-- Inbound replies name the customer by address.
CREATE INDEX customers_phone ON customers (phone) WHERE phone IS NOT NULL;
CREATE INDEX customers_email ON customers (email) WHERE email IS NOT NULL;
CREATE INDEX customers_wechat ON customers (wechat_openid) WHERE wechat_openid IS NOT NULL;
