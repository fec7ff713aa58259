-- Flow control shared by every engine process on one database (used on
-- PostgreSQL; one SQLite process keeps it in memory).
--
-- An endpoint's rate limit as a virtual schedule (GCRA): the time, in
-- microseconds, from which the next request may be counted against it.
CREATE TABLE endpoint_rates (
    endpoint_id TEXT PRIMARY KEY NOT NULL,
    next_at BIGINT NOT NULL
);
-- The requests in flight to an endpoint with an explicit `max_in_flight`,
-- one row per delivery being sent, held until the delivery's lease ends in
-- case its process dies.
CREATE TABLE endpoint_slots (
    endpoint_id TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    PRIMARY KEY (endpoint_id, delivery_id)
);
