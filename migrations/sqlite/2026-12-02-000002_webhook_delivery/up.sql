-- What the webhook worker needs beyond the tables of 2026-12-01-000002.

-- The event position at which a webhook was created (or last enabled): it
-- receives events after it, never the history before it, however far the
-- fan-out cursor lags.
ALTER TABLE webhooks ADD COLUMN starts_after TEXT NOT NULL DEFAULT '';

-- A random token per lease: an attempt's outcome is recorded only by the
-- worker that holds the current lease, so a worker whose lease expired
-- (stalled, then woke up) cannot overwrite a newer attempt's result.
ALTER TABLE webhook_deliveries ADD COLUMN lease_token TEXT;
-- When an admin last asked for this delivery again (its attempts from then
-- on are marked as redeliveries).
ALTER TABLE webhook_deliveries ADD COLUMN redelivered_at TIMESTAMP;
