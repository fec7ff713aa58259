ALTER TABLE endpoints DROP COLUMN previous_secret_expires_at;
ALTER TABLE endpoints DROP COLUMN previous_secret;
