-- The funnel: opens (the pixel in HTML email) and clicks (signed redirects)
-- recorded against the delivery that carried the message. Every hit is kept;
-- the report counts a delivery as opened or clicked once, from its first hit.
CREATE TABLE tracking_events (
    id          INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
    kind        TEXT    NOT NULL CHECK (kind IN ('open', 'click')),
    link        INTEGER,
    url         TEXT,
    user_agent  TEXT,
    at          INTEGER NOT NULL
);
CREATE INDEX tracking_events_delivery ON tracking_events (delivery_id, kind, at);

-- A tracking token names its delivery by schedule row and attempt.
CREATE INDEX IF NOT EXISTS deliveries_schedule_attempt ON deliveries (schedule_id, attempt);
