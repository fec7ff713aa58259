ALTER TABLE endpoints DROP COLUMN handshake_rate;
ALTER TABLE endpoints DROP COLUMN handshake_at;
