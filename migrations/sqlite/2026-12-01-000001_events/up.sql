-- The event stream (issue 10); see the PostgreSQL migration for the design.
-- SQLite has no LISTEN/NOTIFY: each process polls.
CREATE TABLE events (
    id             INTEGER PRIMARY KEY,
    after_sequence BIGINT,
    sub            BIGINT,
    kind           TEXT NOT NULL,
    element        TEXT,
    depot          TEXT,
    subject        TEXT,
    at             TIMESTAMP NOT NULL,
    data           TEXT NOT NULL,
    CHECK ((after_sequence IS NULL) = (sub IS NULL)),
    CHECK (sub IS NULL OR sub > 0)
);
CREATE UNIQUE INDEX events_position ON events (after_sequence, sub);
CREATE INDEX events_staged ON events (id) WHERE after_sequence IS NULL;
CREATE INDEX events_subject ON events (subject, kind);

CREATE TABLE event_tickets (
    ticket_hash      TEXT PRIMARY KEY NOT NULL,
    subject          TEXT NOT NULL,
    roles            TEXT NOT NULL,
    depots           TEXT,
    token_expires_at TIMESTAMP NOT NULL,
    created_at       TIMESTAMP NOT NULL,
    expires_at       TIMESTAMP NOT NULL,
    used_at          TIMESTAMP
);
