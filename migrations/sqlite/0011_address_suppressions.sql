-- The do-not-contact list: addresses (normalised: lower-cased email, E.164
-- phone) that get nothing on any channel sending to that kind of address,
-- whichever customer has them, now or later. A hard bounce or a provider's
-- permanent "invalid number" adds one; so do operators and imports.
CREATE TABLE address_suppressions (
    kind       TEXT    NOT NULL CHECK (kind IN ('email', 'phone')),
    address    TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (kind, address)
);
CREATE INDEX address_suppressions_at ON address_suppressions (created_at, kind, address);
