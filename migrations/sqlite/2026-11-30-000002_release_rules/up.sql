-- Release rules (issue 8): watch one element's imports and propose a release
-- order when they drop. Settings are columns; the evaluation state
-- (consecutive breaches, armed, last firing) lives on the same row, which every
-- evaluation locks first, so evaluations of one rule never interleave.
CREATE TABLE release_rules (
    id                     INTEGER PRIMARY KEY AUTOINCREMENT,
    element                TEXT NOT NULL REFERENCES elements (symbol),
    -- Sorted ISO 3166-1 alpha-2 codes joined by commas; NULL watches every origin.
    origin_countries       TEXT,
    window_days            INTEGER NOT NULL CHECK (window_days BETWEEN 1 AND 3660),
    baseline_days          INTEGER NOT NULL CHECK (baseline_days BETWEEN 1 AND 3660),
    drop_threshold_percent TEXT NOT NULL,
    consecutive_breaches   INTEGER NOT NULL CHECK (consecutive_breaches >= 1),
    cooldown_days          INTEGER NOT NULL CHECK (cooldown_days >= 0),
    coverage_fraction      TEXT NOT NULL,
    cap_g                  BIGINT NOT NULL CHECK (cap_g > 0),
    floor_g                BIGINT CHECK (floor_g >= 0),
    floor_days_of_cover    TEXT,
    -- The order it proposes: kind, optional form/grade (else the largest
    -- available), and the fields that kind needs, as JSON.
    order_kind             TEXT NOT NULL,
    form                   TEXT,
    grade                  TEXT,
    order_template         TEXT NOT NULL,
    enabled                BOOLEAN NOT NULL,
    consecutive            INTEGER NOT NULL DEFAULT 0,
    armed                  BOOLEAN NOT NULL DEFAULT TRUE,
    last_fired_at          TIMESTAMP,
    evaluation_count       BIGINT NOT NULL DEFAULT 0,
    version                BIGINT NOT NULL,
    created_at             TIMESTAMP NOT NULL,
    created_by             TEXT NOT NULL,
    updated_at             TIMESTAMP NOT NULL,
    updated_by             TEXT NOT NULL,
    deleted_at             TIMESTAMP
);
CREATE INDEX release_rules_element ON release_rules (element, id);

-- Every change to a rule: who, when, the settings before and after (JSON).
CREATE TABLE release_rule_history (
    rule_id    BIGINT NOT NULL REFERENCES release_rules (id),
    version    BIGINT NOT NULL,
    change     TEXT NOT NULL CHECK (change IN ('created', 'updated', 'deleted')),
    changed_at TIMESTAMP NOT NULL,
    changed_by TEXT NOT NULL,
    before     TEXT,
    after      TEXT,
    PRIMARY KEY (rule_id, version)
);

-- Every evaluation, with the numbers behind its decision.
CREATE TABLE rule_evaluations (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    rule_id             BIGINT NOT NULL REFERENCES release_rules (id),
    rule_version        BIGINT NOT NULL,
    at                  TIMESTAMP NOT NULL,
    trigger             TEXT NOT NULL CHECK (trigger IN ('ingest', 'schedule', 'manual')),
    slot                TIMESTAMP,
    triggered_by        TEXT NOT NULL,
    data_horizon        DATE,
    window_start        DATE,
    window_end          DATE,
    baseline_start      DATE,
    baseline_end        DATE,
    window_kg_per_day   TEXT,
    baseline_kg_per_day TEXT,
    drop_percent        TEXT,
    breach              BOOLEAN NOT NULL,
    consecutive         INTEGER NOT NULL,
    decision            TEXT NOT NULL CHECK (decision IN ('fired', 'not_fired')),
    reason              TEXT NOT NULL,
    detail              TEXT NOT NULL,
    sizing              TEXT,
    proposed_g          BIGINT,
    order_id            BIGINT REFERENCES release_orders (id)
);
CREATE INDEX rule_evaluations_rule ON rule_evaluations (rule_id, id);
-- A scheduled slot evaluates a rule once, whatever the replicas do.
CREATE UNIQUE INDEX rule_evaluations_slot ON rule_evaluations (rule_id, slot) WHERE slot IS NOT NULL;
CREATE INDEX release_orders_rule ON release_orders (rule_id, status);
