-- App installations registered for push: a customer's devices. A token
-- belongs to one installation, so it is unique: registered again for
-- another customer (someone else signed in on the device) it moves.
CREATE TABLE devices (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    token       TEXT    NOT NULL UNIQUE,
    platform    TEXT    NOT NULL,
    app         TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX devices_by_customer ON devices (customer_id, updated_at);
