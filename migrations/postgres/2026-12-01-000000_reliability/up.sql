-- The PostgreSQL twin of migrations/sqlite/2026-12-01-000000_reliability:
-- per-endpoint policy, the breaker and failure streak, held deliveries,
-- per-request progress, and recovery operations. See the SQLite file for
-- what each column means.

ALTER TABLE endpoints ADD COLUMN retry_schedule TEXT;
ALTER TABLE endpoints ADD COLUMN max_in_flight INTEGER;
ALTER TABLE endpoints ADD COLUMN rate_limit TEXT;
ALTER TABLE endpoints ADD COLUMN ordered BOOLEAN NOT NULL DEFAULT false;

ALTER TABLE endpoints ADD COLUMN breaker_state SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE endpoints ADD COLUMN breaker_trips INTEGER NOT NULL DEFAULT 0;
ALTER TABLE endpoints ADD COLUMN breaker_opened_at BIGINT;
ALTER TABLE endpoints ADD COLUMN breaker_retry_at BIGINT;
ALTER TABLE endpoints ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE endpoints ADD COLUMN failing_since BIGINT;
ALTER TABLE endpoints ADD COLUMN last_success_at BIGINT;
ALTER TABLE endpoints ADD COLUMN last_failure_at BIGINT;
ALTER TABLE endpoints ADD COLUMN last_error TEXT;

ALTER TABLE deliveries ADD COLUMN hold_kind SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN schedule_start INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN requests_done INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN ordered BOOLEAN NOT NULL DEFAULT false;

CREATE INDEX deliveries_ordered_lane ON deliveries(endpoint_id, status, id) WHERE ordered;
CREATE INDEX deliveries_held ON deliveries(endpoint_id, status) WHERE status = 4;

CREATE TABLE operations (
    id           TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    app_id       TEXT COLLATE "C" NOT NULL REFERENCES apps(id),
    kind         TEXT NOT NULL,
    target       TEXT NOT NULL,
    params       TEXT NOT NULL,
    state        TEXT NOT NULL,
    total        INTEGER NOT NULL,
    done         INTEGER NOT NULL,
    cursor       TEXT,
    error        TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    finished_at  BIGINT
);
CREATE INDEX operations_by_app ON operations(app_id, id);
CREATE INDEX operations_running ON operations(state) WHERE state = 'running';
