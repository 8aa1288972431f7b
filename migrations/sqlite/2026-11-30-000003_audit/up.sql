-- Physical counts (issue 9): an auditor's or operator's measured quantity of
-- one stockpile at an instant, against the book balance as of that instant.
-- The stockpile may not exist yet (material found where the books hold none),
-- so it is named by depot, element, form and grade.
CREATE TABLE counts (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    depot_id            BIGINT NOT NULL REFERENCES depots (id),
    element             TEXT NOT NULL REFERENCES elements (symbol),
    form                TEXT NOT NULL,
    grade               TEXT NOT NULL,
    counted_g           BIGINT NOT NULL CHECK (counted_g >= 0),
    book_g              BIGINT NOT NULL,
    variance_g          BIGINT NOT NULL,
    -- Decimal string; NULL when the book balance is zero.
    variance_percent    TEXT,
    tolerance_g         BIGINT NOT NULL,
    flagged             BOOLEAN NOT NULL,
    counted_at          TIMESTAMP NOT NULL,
    method              TEXT NOT NULL,
    note                TEXT,
    counted_by          TEXT NOT NULL,
    recorded_at         TIMESTAMP NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('open', 'accepted', 'rejected')),
    decided_by          TEXT,
    decided_at          TIMESTAMP,
    decision_note       TEXT,
    -- The adjustment entry an accepted count posted (none when book = count).
    adjustment_sequence BIGINT
);
CREATE INDEX counts_status ON counts (status, flagged, id);
CREATE INDEX counts_counted_at ON counts (counted_at);

-- Every authenticated write attempt, refused ones included. Only the HTTP
-- middleware writes it; nothing updates or deletes it (triggers below).
CREATE TABLE audit_trail (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at              TIMESTAMP NOT NULL,
    subject         TEXT NOT NULL,
    roles           TEXT NOT NULL,
    request_id      TEXT NOT NULL,
    method          TEXT NOT NULL,
    route           TEXT NOT NULL,
    path            TEXT NOT NULL,
    status          INTEGER NOT NULL,
    problem_type    TEXT,
    idempotency_key TEXT
);
CREATE INDEX audit_trail_subject ON audit_trail (subject, id);
CREATE INDEX audit_trail_at ON audit_trail (at);

-- Signed checkpoints: a Merkle root over every stockpile's head, chained to
-- the previous checkpoint (prev_hash) and signed with Ed25519. Ids are
-- assigned under the ledger_head lock, one after the other.
CREATE TABLE checkpoints (
    id            BIGINT PRIMARY KEY,
    created_at    TIMESTAMP NOT NULL,
    created_by    TEXT NOT NULL,
    last_sequence BIGINT NOT NULL,
    stockpiles    BIGINT NOT NULL,
    merkle_root   TEXT NOT NULL,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL,
    public_key    TEXT NOT NULL,
    signature     TEXT NOT NULL
);
CREATE TABLE checkpoint_heads (
    checkpoint_id BIGINT NOT NULL REFERENCES checkpoints (id),
    leaf_index    BIGINT NOT NULL,
    stockpile_id  BIGINT NOT NULL,
    last_sequence BIGINT NOT NULL,
    entry_count   BIGINT NOT NULL,
    balance_g     BIGINT NOT NULL,
    head_hash     TEXT NOT NULL,
    PRIMARY KEY (checkpoint_id, leaf_index)
);

-- Issued audit reports: the canonical JSON body as signed, never rewritten.
CREATE TABLE audit_reports (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    period_start TIMESTAMP NOT NULL,
    period_end   TIMESTAMP NOT NULL,
    schedule     TEXT NOT NULL,
    generated_at TIMESTAMP NOT NULL,
    generated_by TEXT NOT NULL,
    body         TEXT NOT NULL,
    body_sha256  TEXT NOT NULL,
    public_key   TEXT NOT NULL,
    signature    TEXT NOT NULL,
    CHECK (period_start < period_end)
);
CREATE INDEX audit_reports_period ON audit_reports (period_end, id);
CREATE TRIGGER audit_trail_no_update BEFORE UPDATE ON audit_trail
BEGIN
    SELECT RAISE(ABORT, 'audit_trail is append-only');
END;
CREATE TRIGGER audit_trail_no_delete BEFORE DELETE ON audit_trail
BEGIN
    SELECT RAISE(ABORT, 'audit_trail is append-only');
END;
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'checkpoints is append-only');
END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN
    SELECT RAISE(ABORT, 'checkpoints is append-only');
END;
CREATE TRIGGER checkpoint_heads_no_update BEFORE UPDATE ON checkpoint_heads
BEGIN
    SELECT RAISE(ABORT, 'checkpoint_heads is append-only');
END;
CREATE TRIGGER checkpoint_heads_no_delete BEFORE DELETE ON checkpoint_heads
BEGIN
    SELECT RAISE(ABORT, 'checkpoint_heads is append-only');
END;
CREATE TRIGGER audit_reports_no_update BEFORE UPDATE ON audit_reports
BEGIN
    SELECT RAISE(ABORT, 'audit_reports is append-only');
END;
CREATE TRIGGER audit_reports_no_delete BEFORE DELETE ON audit_reports
BEGIN
    SELECT RAISE(ABORT, 'audit_reports is append-only');
END;
