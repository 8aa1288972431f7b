-- Import statistics (issue 8): what arrived, of which element and form, from
-- where, over which period. Idempotent per (source, external_id);
-- content_hash tells a resent row from a conflicting one.
CREATE TABLE import_flows (
    id             BIGSERIAL PRIMARY KEY,
    element        TEXT NOT NULL REFERENCES elements (symbol),
    form           TEXT NOT NULL,
    origin_country TEXT NOT NULL,
    hs_code        TEXT NOT NULL,
    period_start   DATE NOT NULL,
    period_end     DATE NOT NULL,
    quantity_g     BIGINT NOT NULL CHECK (quantity_g > 0),
    source         TEXT NOT NULL,
    external_id    TEXT NOT NULL,
    content_hash   TEXT NOT NULL,
    recorded_at    TIMESTAMP NOT NULL,
    recorded_by    TEXT NOT NULL,
    CHECK (period_start <= period_end),
    UNIQUE (source, external_id),
    FOREIGN KEY (element, form) REFERENCES element_forms (element, form)
);
-- Rule evaluation and cover read one element's flows by period.
CREATE INDEX import_flows_element_period ON import_flows (element, period_end);

-- Scheduled work (rule evaluation, audit reports, checkpoints) runs once per
-- slot across every replica: a replica runs a slot only if its INSERT of the
-- (job, slot) row wins, in the same transaction as the work, so a crash
-- mid-run frees the slot again.
CREATE TABLE job_claims (
    job         TEXT NOT NULL,
    slot        TIMESTAMP NOT NULL,
    claimed_by  TEXT NOT NULL,
    claimed_at  TIMESTAMP NOT NULL,
    finished_at TIMESTAMP NOT NULL,
    outcome     TEXT NOT NULL,
    PRIMARY KEY (job, slot)
);
