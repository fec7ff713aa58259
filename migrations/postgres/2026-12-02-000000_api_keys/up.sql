-- API keys (PostgreSQL twin): only a SHA-256 of each key is kept.
CREATE TABLE api_keys (
    id TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    app_id TEXT COLLATE "C" REFERENCES apps (id),
    hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX api_keys_app ON api_keys (app_id);
