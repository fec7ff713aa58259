-- API keys. Only a SHA-256 of each key is kept; the key itself is shown once.
-- app_id NULL is an admin key; otherwise the key may act on that app only.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY NOT NULL,          -- the part of the key after "hlk_" and before "_"
    name TEXT NOT NULL,
    app_id TEXT REFERENCES apps (id),
    hash TEXT NOT NULL,                    -- hex SHA-256 of the whole key
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX api_keys_app ON api_keys (app_id);
