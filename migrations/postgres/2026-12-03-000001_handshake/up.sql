-- The CloudEvents Web Hook validation handshake, opt-in per endpoint: when
-- it last succeeded for the endpoint's URL, and the rate the receiver allowed
-- (requests per minute; NULL when it set none).
ALTER TABLE endpoints ADD COLUMN handshake_at BIGINT;
ALTER TABLE endpoints ADD COLUMN handshake_rate INTEGER;
