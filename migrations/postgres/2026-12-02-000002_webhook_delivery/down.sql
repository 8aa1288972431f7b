ALTER TABLE webhook_deliveries DROP COLUMN redelivered_at;
ALTER TABLE webhook_deliveries DROP COLUMN lease_token;
ALTER TABLE webhooks DROP COLUMN starts_after;
