-- API bearer tokens. Only a SHA-256 of each token is kept; the token itself
-- is shown once, when it is created.
CREATE TABLE api_tokens (
    id          INTEGER PRIMARY KEY,
    hash        TEXT    NOT NULL UNIQUE,
    prefix      TEXT    NOT NULL,
    role        TEXT    NOT NULL CHECK (role IN ('admin', 'staff', 'ingest')),
    regions     TEXT    NOT NULL DEFAULT '[]',
    name        TEXT,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
