-- The event stream (issue 10). Ledger entries are events already, at their
-- ledger sequence; every other event (order transitions, rule firings, flagged
-- counts, overdue exchanges, issued reports) is a row here, positioned
-- (after_sequence, sub): the k-th event committed after ledger entry S and
-- before S+1 is (S, k). A writer stages its row with a NULL position and
-- assigns the position as the last step before commit, while it holds
-- `ledger_head` (the lock every posting holds to commit), so positions are
-- gap-free and in commit order, and a reader never sees a later position
-- before an earlier one (DESIGN's ordering pitfall).
CREATE TABLE events (
    id             BIGSERIAL PRIMARY KEY,
    after_sequence BIGINT,
    sub            BIGINT,
    kind           TEXT NOT NULL,
    element        TEXT,
    depot          TEXT,
    -- What the event is about, e.g. `order:12`, so a job can tell whether it
    -- has announced something already.
    subject        TEXT,
    at             TIMESTAMP NOT NULL,
    data           TEXT NOT NULL,
    CHECK ((after_sequence IS NULL) = (sub IS NULL)),
    CHECK (sub IS NULL OR sub > 0)
);
CREATE UNIQUE INDEX events_position ON events (after_sequence, sub);
CREATE INDEX events_staged ON events (id) WHERE after_sequence IS NULL;
CREATE INDEX events_subject ON events (subject, kind);

-- Single-use tickets for browsers' EventSource, which cannot send headers.
-- Only the ticket's SHA-256 is kept.
CREATE TABLE event_tickets (
    ticket_hash      TEXT PRIMARY KEY,
    subject          TEXT NOT NULL,
    roles            TEXT NOT NULL,
    depots           TEXT,
    token_expires_at TIMESTAMP NOT NULL,
    created_at       TIMESTAMP NOT NULL,
    expires_at       TIMESTAMP NOT NULL,
    used_at          TIMESTAMP
);

-- Every replica LISTENs on `reserve_events`; a commit that adds ledger entries
-- or positions events wakes them all. The notification is only a wake-up:
-- readers then read by position, so a lost one loses nothing.
CREATE FUNCTION reserve_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('reserve_events', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER ledger_entries_notify AFTER INSERT ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION reserve_notify_events();
CREATE TRIGGER events_notify AFTER UPDATE OF after_sequence ON events
    FOR EACH STATEMENT EXECUTE FUNCTION reserve_notify_events();
