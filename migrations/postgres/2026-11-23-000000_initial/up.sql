-- The PostgreSQL twin of migrations/sqlite (same names, same columns).
-- Times are milliseconds since the Unix epoch (BIGINT), ids are prefixed
-- ULIDs (TEXT in the "C" collation, so they sort by creation time byte for
-- byte as they do in SQLite), JSON is TEXT, enums SMALLINT.

CREATE TABLE apps (
    id          TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE endpoints (
    id               TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    app_id           TEXT COLLATE "C" NOT NULL REFERENCES apps(id),
    url              TEXT NOT NULL,
    description      TEXT NOT NULL,
    plugin           TEXT NOT NULL,
    plugin_config    TEXT NOT NULL,
    filter_types     TEXT NOT NULL,
    secret           TEXT NOT NULL,
    enabled          BOOLEAN NOT NULL,
    disabled_reason  TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    deleted_at       BIGINT
);
CREATE INDEX endpoints_by_app ON endpoints(app_id) WHERE deleted_at IS NULL;

CREATE TABLE events (
    id           TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    app_id       TEXT COLLATE "C" NOT NULL REFERENCES apps(id),
    source       TEXT NOT NULL,
    ce_id        TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    subject      TEXT,
    time         TEXT NOT NULL,
    data         TEXT NOT NULL,
    extensions   TEXT NOT NULL,
    received_at  BIGINT NOT NULL
);
-- CloudEvents make source + id unique; scoping by app keeps tenants apart.
CREATE UNIQUE INDEX events_idempotency ON events(app_id, source, ce_id);

CREATE TABLE deliveries (
    id               TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    app_id           TEXT COLLATE "C" NOT NULL REFERENCES apps(id),
    event_id         TEXT COLLATE "C" NOT NULL REFERENCES events(id),
    endpoint_id      TEXT COLLATE "C" NOT NULL REFERENCES endpoints(id),
    event_type       TEXT NOT NULL,
    status           SMALLINT NOT NULL,
    attempts         INTEGER NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_until      BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    finished_at      BIGINT
);
CREATE INDEX deliveries_due ON deliveries(status, next_attempt_at);
CREATE INDEX deliveries_by_app ON deliveries(app_id, id);
CREATE INDEX deliveries_by_endpoint ON deliveries(endpoint_id, id);
CREATE INDEX deliveries_by_event ON deliveries(event_id);

CREATE TABLE attempts (
    id                TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    delivery_id       TEXT COLLATE "C" NOT NULL REFERENCES deliveries(id),
    attempt           INTEGER NOT NULL,
    started_at        BIGINT NOT NULL,
    duration_ms       BIGINT NOT NULL,
    outcome           SMALLINT NOT NULL,
    status_code       INTEGER,
    response_excerpt  TEXT,
    error             TEXT,
    plugin_name       TEXT NOT NULL,
    plugin_version    TEXT NOT NULL,
    plugin_hash       TEXT NOT NULL
);
CREATE INDEX attempts_by_delivery ON attempts(delivery_id, attempt);
