-- Webhooks (issue 10): admins register URLs per event type; every event is
-- fanned out to one delivery per matching webhook, and each delivery is
-- attempted until the receiver answers 2xx or its retry window ends.
CREATE TABLE webhooks (
    id          BIGSERIAL PRIMARY KEY,
    url         TEXT NOT NULL,
    -- Comma-separated event types; an entry ending in ".*" is a prefix
    -- ("order.*"), "*" is every type.
    event_types TEXT NOT NULL,
    description TEXT,
    -- Standard Webhooks secret, "whsec_" + base64 of 32 random bytes. Shown
    -- once, at creation; never listed again.
    secret      TEXT NOT NULL,
    enabled     BOOLEAN NOT NULL,
    version     BIGINT NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    created_by  TEXT NOT NULL,
    updated_at  TIMESTAMP NOT NULL,
    updated_by  TEXT NOT NULL,
    deleted_at  TIMESTAMP
);

-- One row: the position of the last event fanned out to deliveries. It is
-- advanced in the transaction that inserts those deliveries, under this row's
-- lock, so each event is fanned out exactly once across replicas.
CREATE TABLE webhook_cursor (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    position     TEXT NOT NULL,
    updated_at   TIMESTAMP NOT NULL
);
INSERT INTO webhook_cursor (id, position, updated_at) VALUES (1, '', CURRENT_TIMESTAMP);

-- One event for one webhook. `next_attempt_at` is when it is due; a replica
-- attempting it takes a lease (`leased_until`) so no other attempts it
-- meanwhile; a crash mid-attempt means a retry once the lease expires.
CREATE TABLE webhook_deliveries (
    id              BIGSERIAL PRIMARY KEY,
    -- The `webhook-id` header: receivers dedupe by it.
    delivery_id     TEXT NOT NULL UNIQUE,
    webhook_id      BIGINT NOT NULL REFERENCES webhooks (id),
    event_position  TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    -- pending, delivered, failed (gave up)
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      TIMESTAMP NOT NULL,
    -- Retries stop at created_at + the retry window (or the redelivery's start).
    give_up_at      TIMESTAMP NOT NULL,
    next_attempt_at TIMESTAMP,
    leased_until    TIMESTAMP,
    delivered_at    TIMESTAMP,
    UNIQUE (webhook_id, event_position)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);

-- Every attempt: when, how long, what the receiver answered or what failed.
CREATE TABLE webhook_attempts (
    id           BIGSERIAL PRIMARY KEY,
    delivery_id  BIGINT NOT NULL REFERENCES webhook_deliveries (id),
    attempt      INTEGER NOT NULL,
    started_at   TIMESTAMP NOT NULL,
    duration_ms  BIGINT NOT NULL,
    status_code  INTEGER,
    error        TEXT,
    redelivery   BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id, id);
