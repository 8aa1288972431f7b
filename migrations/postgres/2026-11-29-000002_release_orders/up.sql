-- Per-element policy (issue 7). One row per element, seeded here, so every
-- posting can lock its elements' rows: ceilings and the reserve floor are
-- checked under that lock. NULL means no limit.
CREATE TABLE element_policies (
    element                   TEXT PRIMARY KEY REFERENCES elements (symbol),
    reserve_floor_g           BIGINT CHECK (reserve_floor_g >= 0),
    consumption_g_per_year    BIGINT CHECK (consumption_g_per_year >= 0),
    limited_drawdown_max_g    BIGINT CHECK (limited_drawdown_max_g >= 0),
    limited_drawdown_max_days INTEGER CHECK (limited_drawdown_max_days > 0),
    test_sale_max_g           BIGINT CHECK (test_sale_max_g >= 0),
    version                   BIGINT NOT NULL,
    updated_at                TIMESTAMP NOT NULL,
    updated_by                TEXT NOT NULL
);
INSERT INTO element_policies (element, version, updated_at, updated_by)
    SELECT symbol, 1, '2026-01-01 00:00:00', 'migration' FROM elements;

-- Every version of every policy, so one can ask which value held at an instant.
CREATE TABLE element_policy_history (
    element                   TEXT NOT NULL REFERENCES elements (symbol),
    version                   BIGINT NOT NULL,
    reserve_floor_g           BIGINT,
    consumption_g_per_year    BIGINT,
    limited_drawdown_max_g    BIGINT,
    limited_drawdown_max_days INTEGER,
    test_sale_max_g           BIGINT,
    changed_at                TIMESTAMP NOT NULL,
    changed_by                TEXT NOT NULL,
    PRIMARY KEY (element, version)
);
INSERT INTO element_policy_history (element, version, changed_at, changed_by)
    SELECT element, version, updated_at, updated_by FROM element_policies;

-- Annual ceilings (the National Defense Stockpile's Annual Materials Plan).
CREATE TABLE ceilings (
    element        TEXT NOT NULL REFERENCES elements (symbol),
    fiscal_year    INTEGER NOT NULL,
    acquire_max_g  BIGINT NOT NULL CHECK (acquire_max_g >= 0),
    dispose_max_g  BIGINT NOT NULL CHECK (dispose_max_g >= 0),
    updated_at     TIMESTAMP NOT NULL,
    updated_by     TEXT NOT NULL,
    PRIMARY KEY (element, fiscal_year)
);

-- Qualified buyers for sales; a bidder token's subject is a buyer code.
CREATE TABLE buyers (
    code       TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    country    TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    created_by TEXT NOT NULL
);

CREATE TABLE release_orders (
    id                            BIGSERIAL PRIMARY KEY,
    kind                          TEXT NOT NULL CHECK (kind IN ('emergency_drawdown', 'limited_drawdown', 'test_sale', 'mandated_sale', 'exchange')),
    status                        TEXT NOT NULL CHECK (status IN ('proposed', 'approved', 'offered', 'awarded', 'executing', 'completed', 'returned', 'rejected', 'cancelled')),
    element                       TEXT NOT NULL,
    form                          TEXT NOT NULL,
    grade                         TEXT NOT NULL,
    quantity_g                    BIGINT NOT NULL CHECK (quantity_g > 0),
    method                        TEXT NOT NULL CHECK (method IN ('direct', 'sale', 'loan')),
    authority                     TEXT NOT NULL,
    reason                        TEXT NOT NULL,
    counterparty                  TEXT,
    emergency_finding             TEXT,
    law                           TEXT,
    fiscal_year                   INTEGER,
    premium_percent               TEXT,
    return_due                    DATE,
    late_premium_percent_per_day  TEXT,
    released_g                    BIGINT NOT NULL DEFAULT 0,
    returned_g                    BIGINT NOT NULL DEFAULT 0,
    proposed_by                   TEXT NOT NULL,
    approved_by                   TEXT,
    rule_id                       BIGINT,
    expected_completion           DATE,
    closes_at                     TIMESTAMP,
    minimum_price_micros          BIGINT,
    currency                      TEXT,
    version                       BIGINT NOT NULL,
    created_at                    TIMESTAMP NOT NULL,
    updated_at                    TIMESTAMP NOT NULL,
    FOREIGN KEY (element, form) REFERENCES element_forms (element, form)
);
CREATE INDEX release_orders_status ON release_orders (status, id);
CREATE INDEX release_orders_element ON release_orders (element, id);

-- Per depot: what the plan assigns, what approval reserved and what has been
-- released against it.
CREATE TABLE order_allocations (
    order_id     BIGINT NOT NULL REFERENCES release_orders (id),
    depot_id     BIGINT NOT NULL REFERENCES depots (id),
    stockpile_id BIGINT REFERENCES stockpiles (id),
    quantity_g   BIGINT NOT NULL CHECK (quantity_g > 0),
    reserved_g   BIGINT NOT NULL DEFAULT 0 CHECK (reserved_g >= 0),
    released_g   BIGINT NOT NULL DEFAULT 0 CHECK (released_g >= 0 AND released_g <= quantity_g),
    deliver_by   DATE NOT NULL,
    PRIMARY KEY (order_id, depot_id)
);

CREATE TABLE order_transitions (
    order_id    BIGINT NOT NULL REFERENCES release_orders (id),
    seq         INTEGER NOT NULL,
    at          TIMESTAMP NOT NULL,
    actor       TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    note        TEXT,
    PRIMARY KEY (order_id, seq)
);

CREATE TABLE bids (
    id           BIGSERIAL PRIMARY KEY,
    order_id     BIGINT NOT NULL REFERENCES release_orders (id),
    buyer        TEXT NOT NULL REFERENCES buyers (code),
    quantity_g   BIGINT NOT NULL CHECK (quantity_g > 0),
    price_micros BIGINT NOT NULL CHECK (price_micros > 0),
    placed_at    TIMESTAMP NOT NULL
);
CREATE INDEX bids_order ON bids (order_id, id);

CREATE TABLE awards (
    order_id     BIGINT NOT NULL REFERENCES release_orders (id),
    bid_id       BIGINT NOT NULL REFERENCES bids (id),
    buyer        TEXT NOT NULL,
    quantity_g   BIGINT NOT NULL CHECK (quantity_g > 0),
    price_micros BIGINT NOT NULL,
    delivered_g  BIGINT NOT NULL DEFAULT 0 CHECK (delivered_g >= 0 AND delivered_g <= quantity_g),
    PRIMARY KEY (order_id, bid_id)
);

-- Entries posted for an order reference it.
ALTER TABLE ledger_entries ADD COLUMN order_id BIGINT REFERENCES release_orders (id);
CREATE INDEX ledger_entries_order ON ledger_entries (order_id);
