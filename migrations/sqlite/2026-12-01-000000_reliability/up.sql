-- Delivery reliability: per-endpoint policy (retry schedule, concurrency,
-- rate limit, ordering), the circuit breaker and failure streak kept in the
-- store, held deliveries as a real state, per-request progress, and the
-- record of recovery operations.

-- Policy. NULL means "the engine's default" (for the rate limit: the
-- plugin's platform default).
ALTER TABLE endpoints ADD COLUMN retry_schedule TEXT;      -- JSON array of delays in ms
ALTER TABLE endpoints ADD COLUMN max_in_flight INTEGER;
ALTER TABLE endpoints ADD COLUMN rate_limit TEXT;          -- JSON {"per_second": f, "burst": n}
ALTER TABLE endpoints ADD COLUMN ordered BOOLEAN NOT NULL DEFAULT 0;

-- Health: breaker state 0 closed, 1 open, 2 half-open (one probe in flight).
ALTER TABLE endpoints ADD COLUMN breaker_state SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE endpoints ADD COLUMN breaker_trips INTEGER NOT NULL DEFAULT 0;
ALTER TABLE endpoints ADD COLUMN breaker_opened_at BIGINT;
ALTER TABLE endpoints ADD COLUMN breaker_retry_at BIGINT;  -- when the next probe may go
ALTER TABLE endpoints ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE endpoints ADD COLUMN failing_since BIGINT;     -- first failure of the current streak
ALTER TABLE endpoints ADD COLUMN last_success_at BIGINT;
ALTER TABLE endpoints ADD COLUMN last_failure_at BIGINT;
ALTER TABLE endpoints ADD COLUMN last_error TEXT;

-- Deliveries: status 4 is "held" (not claimable) with what it waits for in
-- hold_kind (1 the endpoint is disabled, 2 its plugin is missing or
-- quarantined). schedule_start is the attempt count at which the current
-- retry schedule began (a manual retry or a recovery starts a new one).
-- requests_done counts the requests of a multi-request delivery already
-- accepted, so a retry resends only the rest. ordered copies the endpoint's
-- ordering so the claim can tell ordered lanes apart without a join.
ALTER TABLE deliveries ADD COLUMN hold_kind SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN schedule_start INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN requests_done INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN ordered BOOLEAN NOT NULL DEFAULT 0;

-- The head of each ordered lane is found through this small index: only
-- ordered deliveries are in it.
CREATE INDEX deliveries_ordered_lane ON deliveries(endpoint_id, status, id) WHERE ordered = 1;
-- Held deliveries of an endpoint, for resuming them.
CREATE INDEX deliveries_held ON deliveries(endpoint_id, status) WHERE status = 4;

-- Recovery operations (retry, recover, replay): what an operator asked for,
-- and how far a background one has got.
CREATE TABLE operations (
    id           TEXT PRIMARY KEY NOT NULL,
    app_id       TEXT NOT NULL REFERENCES apps(id),
    kind         TEXT NOT NULL,          -- retry | recover | replay
    target       TEXT NOT NULL,          -- the delivery, endpoint or event id
    params       TEXT NOT NULL,          -- JSON
    state        TEXT NOT NULL,          -- running | done | failed
    total        INTEGER NOT NULL,
    done         INTEGER NOT NULL,
    cursor       TEXT,                   -- where a background job resumes
    error        TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    finished_at  BIGINT
);
CREATE INDEX operations_by_app ON operations(app_id, id);
CREATE INDEX operations_running ON operations(state) WHERE state = 'running';
