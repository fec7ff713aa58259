-- Secret rotation: the secret a rotation replaced stays valid until
-- previous_secret_expires_at, and every request carries both signatures.
ALTER TABLE endpoints ADD COLUMN previous_secret TEXT;
ALTER TABLE endpoints ADD COLUMN previous_secret_expires_at BIGINT;
