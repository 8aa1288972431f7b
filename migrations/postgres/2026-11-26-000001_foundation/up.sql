-- Reference data: the 17 rare-earth elements and the physical forms they are held in.
CREATE TABLE elements (
    symbol        TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    atomic_number INTEGER NOT NULL UNIQUE,
    class         TEXT NOT NULL CHECK (class IN ('light', 'heavy', 'scandium'))
);

CREATE TABLE forms (
    code        TEXT PRIMARY KEY,
    description TEXT NOT NULL
);

-- Fraction of a form's gross mass that is the element itself, in parts per million
-- (Nd2O3 -> 857356 ppm Nd), so reports can speak in contained element mass.
CREATE TABLE element_forms (
    element          TEXT NOT NULL REFERENCES elements (symbol),
    form             TEXT NOT NULL REFERENCES forms (code),
    element_mass_ppm BIGINT NOT NULL CHECK (element_mass_ppm > 0 AND element_mass_ppm <= 1000000),
    formula          TEXT NOT NULL,
    PRIMARY KEY (element, form)
);

-- Quantities are integer grams, money integer micro-units: exact on both backends.
-- on_hand_g is the maintained sum of the depot's stockpiles; version feeds the ETag
-- and changes only when the depot's own attributes change.
CREATE TABLE depots (
    id                     BIGSERIAL PRIMARY KEY,
    code                   TEXT NOT NULL UNIQUE,
    name                   TEXT NOT NULL,
    region                 TEXT NOT NULL,
    status                 TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'closed')),
    capacity_g             BIGINT NOT NULL CHECK (capacity_g >= 0),
    max_drawdown_g_per_day BIGINT NOT NULL CHECK (max_drawdown_g_per_day >= 0),
    on_hand_g              BIGINT NOT NULL DEFAULT 0 CHECK (on_hand_g >= 0 AND on_hand_g <= capacity_g),
    version                BIGINT NOT NULL DEFAULT 1,
    created_at             TIMESTAMP NOT NULL,
    updated_at             TIMESTAMP NOT NULL
);

-- head_hash is the hash of the stockpile's newest entry (its chain head), read and
-- advanced while the posting holds the row lock.
CREATE TABLE stockpiles (
    id          BIGSERIAL PRIMARY KEY,
    depot_id    BIGINT NOT NULL REFERENCES depots (id),
    element     TEXT NOT NULL,
    form        TEXT NOT NULL,
    grade       TEXT NOT NULL,
    on_hand_g   BIGINT NOT NULL DEFAULT 0 CHECK (on_hand_g >= 0),
    reserved_g  BIGINT NOT NULL DEFAULT 0 CHECK (reserved_g >= 0 AND reserved_g <= on_hand_g),
    head_hash   TEXT NOT NULL,
    entry_count BIGINT NOT NULL DEFAULT 0,
    created_at  TIMESTAMP NOT NULL,
    FOREIGN KEY (element, form) REFERENCES element_forms (element, form),
    UNIQUE (depot_id, element, form, grade)
);
CREATE INDEX stockpiles_element ON stockpiles (element, form);

-- One row: the last ledger sequence handed out. Postings take this row last, just
-- before commit, so sequence order is commit order and cursors never skip a row.
CREATE TABLE ledger_head (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    last_sequence BIGINT NOT NULL
);
INSERT INTO ledger_head (id, last_sequence) VALUES (1, 0);

-- Append-only (triggers below). The sequence is the entry's id.
CREATE TABLE ledger_entries (
    sequence          BIGINT PRIMARY KEY,
    stockpile_id      BIGINT NOT NULL REFERENCES stockpiles (id),
    kind              TEXT NOT NULL CHECK (kind IN ('acquisition', 'release', 'transfer_out', 'transfer_in', 'loan_out', 'loan_return', 'adjustment')),
    quantity_g        BIGINT NOT NULL CHECK (quantity_g <> 0),
    balance_after_g   BIGINT NOT NULL CHECK (balance_after_g >= 0),
    occurred_at       TIMESTAMP NOT NULL,
    recorded_at       TIMESTAMP NOT NULL,
    actor             TEXT NOT NULL,
    reference         TEXT,
    counterparty      TEXT,
    origin_country    TEXT,
    unit_price_micros BIGINT,
    currency          TEXT,
    note              TEXT,
    idempotency_key   TEXT NOT NULL,
    movement_id       TEXT NOT NULL,
    prev_hash         TEXT NOT NULL,
    hash              TEXT NOT NULL UNIQUE
);
CREATE INDEX ledger_entries_stockpile_occurred ON ledger_entries (stockpile_id, occurred_at);
CREATE INDEX ledger_entries_stockpile_sequence ON ledger_entries (stockpile_id, sequence);
CREATE INDEX ledger_entries_occurred ON ledger_entries (occurred_at);
CREATE INDEX ledger_entries_reference ON ledger_entries (reference);
CREATE INDEX ledger_entries_movement ON ledger_entries (movement_id);

-- The first successful response to each (subject, Idempotency-Key), written in the
-- same transaction as the entries it describes.
CREATE TABLE idempotency_records (
    subject         TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    response_status INTEGER NOT NULL,
    response_body   TEXT NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    PRIMARY KEY (subject, idempotency_key)
);

-- Closed periods: no entry may occur before the latest lock.
CREATE TABLE period_locks (
    id            BIGSERIAL PRIMARY KEY,
    locked_before TIMESTAMP NOT NULL,
    reason        TEXT NOT NULL,
    set_by        TEXT NOT NULL,
    created_at    TIMESTAMP NOT NULL
);

INSERT INTO forms (code, description) VALUES
  ('oxide', 'Oxide (REO), e.g. Nd2O3'),
  ('metal', 'Metal'),
  ('alloy', 'Master or magnet alloy (nominal composition)'),
  ('carbonate', 'Carbonate, RE2(CO3)3'),
  ('other', 'Other compound, counted at gross mass');

INSERT INTO elements (symbol, name, atomic_number, class) VALUES
  ('Sc', 'Scandium', 21, 'scandium'),
  ('Y', 'Yttrium', 39, 'heavy'),
  ('La', 'Lanthanum', 57, 'light'),
  ('Ce', 'Cerium', 58, 'light'),
  ('Pr', 'Praseodymium', 59, 'light'),
  ('Nd', 'Neodymium', 60, 'light'),
  ('Pm', 'Promethium', 61, 'light'),
  ('Sm', 'Samarium', 62, 'light'),
  ('Eu', 'Europium', 63, 'light'),
  ('Gd', 'Gadolinium', 64, 'light'),
  ('Tb', 'Terbium', 65, 'heavy'),
  ('Dy', 'Dysprosium', 66, 'heavy'),
  ('Ho', 'Holmium', 67, 'heavy'),
  ('Er', 'Erbium', 68, 'heavy'),
  ('Tm', 'Thulium', 69, 'heavy'),
  ('Yb', 'Ytterbium', 70, 'heavy'),
  ('Lu', 'Lutetium', 71, 'heavy');

INSERT INTO element_forms (element, form, element_mass_ppm, formula) VALUES
  ('Sc', 'oxide', 651966, 'Sc2O3'),
  ('Sc', 'metal', 1000000, 'Sc'),
  ('Sc', 'alloy', 20000, 'Al-2Sc master alloy'),
  ('Sc', 'carbonate', 333086, 'Sc2(CO3)3'),
  ('Sc', 'other', 1000000, 'unspecified'),
  ('Y', 'oxide', 787444, 'Y2O3'),
  ('Y', 'metal', 1000000, 'Y'),
  ('Y', 'alloy', 800000, 'YFe master alloy (nominal 80% Y)'),
  ('Y', 'carbonate', 496909, 'Y2(CO3)3'),
  ('Y', 'other', 1000000, 'unspecified'),
  ('La', 'oxide', 852683, 'La2O3'),
  ('La', 'metal', 1000000, 'La'),
  ('La', 'alloy', 800000, 'LaFe master alloy (nominal 80% La)'),
  ('La', 'carbonate', 606792, 'La2(CO3)3'),
  ('La', 'other', 1000000, 'unspecified'),
  ('Ce', 'oxide', 814088, 'CeO2'),
  ('Ce', 'metal', 1000000, 'Ce'),
  ('Ce', 'alloy', 800000, 'CeFe master alloy (nominal 80% Ce)'),
  ('Ce', 'carbonate', 608861, 'Ce2(CO3)3'),
  ('Ce', 'other', 1000000, 'unspecified'),
  ('Pr', 'oxide', 827704, 'Pr6O11'),
  ('Pr', 'metal', 1000000, 'Pr'),
  ('Pr', 'alloy', 310000, 'PrNd-FeB magnet alloy (nominal 31% Pr)'),
  ('Pr', 'carbonate', 610203, 'Pr2(CO3)3'),
  ('Pr', 'other', 1000000, 'unspecified'),
  ('Nd', 'oxide', 857356, 'Nd2O3'),
  ('Nd', 'metal', 1000000, 'Nd'),
  ('Nd', 'alloy', 310000, 'NdFeB magnet alloy (nominal 31% Nd)'),
  ('Nd', 'carbonate', 615750, 'Nd2(CO3)3'),
  ('Nd', 'other', 1000000, 'unspecified'),
  ('Pm', 'oxide', 857996, 'Pm2O3'),
  ('Pm', 'metal', 1000000, 'Pm'),
  ('Pm', 'alloy', 800000, 'PmFe master alloy (nominal 80% Pm)'),
  ('Pm', 'carbonate', 616990, 'Pm2(CO3)3'),
  ('Pm', 'other', 1000000, 'unspecified'),
  ('Sm', 'oxide', 862361, 'Sm2O3'),
  ('Sm', 'metal', 1000000, 'Sm'),
  ('Sm', 'alloy', 338000, 'SmCo5 (nominal 33.8% Sm)'),
  ('Sm', 'carbonate', 625530, 'Sm2(CO3)3'),
  ('Sm', 'other', 1000000, 'unspecified'),
  ('Eu', 'oxide', 863616, 'Eu2O3'),
  ('Eu', 'metal', 1000000, 'Eu'),
  ('Eu', 'alloy', 800000, 'EuFe master alloy (nominal 80% Eu)'),
  ('Eu', 'carbonate', 628013, 'Eu2(CO3)3'),
  ('Eu', 'other', 1000000, 'unspecified'),
  ('Gd', 'oxide', 867593, 'Gd2O3'),
  ('Gd', 'metal', 1000000, 'Gd'),
  ('Gd', 'alloy', 800000, 'GdFe master alloy (nominal 80% Gd)'),
  ('Gd', 'carbonate', 635965, 'Gd2(CO3)3'),
  ('Gd', 'other', 1000000, 'unspecified'),
  ('Tb', 'oxide', 850215, 'Tb4O7'),
  ('Tb', 'metal', 1000000, 'Tb'),
  ('Tb', 'alloy', 800000, 'TbFe master alloy (nominal 80% Tb)'),
  ('Tb', 'carbonate', 638415, 'Tb2(CO3)3'),
  ('Tb', 'other', 1000000, 'unspecified'),
  ('Dy', 'oxide', 871321, 'Dy2O3'),
  ('Dy', 'metal', 1000000, 'Dy'),
  ('Dy', 'alloy', 800000, 'DyFe master alloy (nominal 80% Dy)'),
  ('Dy', 'carbonate', 643534, 'Dy2(CO3)3'),
  ('Dy', 'other', 1000000, 'unspecified'),
  ('Ho', 'oxide', 872976, 'Ho2O3'),
  ('Ho', 'metal', 1000000, 'Ho'),
  ('Ho', 'alloy', 800000, 'HoFe master alloy (nominal 80% Ho)'),
  ('Ho', 'carbonate', 646931, 'Ho2(CO3)3'),
  ('Ho', 'other', 1000000, 'unspecified'),
  ('Er', 'oxide', 874523, 'Er2O3'),
  ('Er', 'metal', 1000000, 'Er'),
  ('Er', 'alloy', 800000, 'ErFe master alloy (nominal 80% Er)'),
  ('Er', 'carbonate', 650128, 'Er2(CO3)3'),
  ('Er', 'other', 1000000, 'unspecified'),
  ('Tm', 'oxide', 875612, 'Tm2O3'),
  ('Tm', 'metal', 1000000, 'Tm'),
  ('Tm', 'alloy', 800000, 'TmFe master alloy (nominal 80% Tm)'),
  ('Tm', 'carbonate', 652391, 'Tm2(CO3)3'),
  ('Tm', 'other', 1000000, 'unspecified'),
  ('Yb', 'oxide', 878207, 'Yb2O3'),
  ('Yb', 'metal', 1000000, 'Yb'),
  ('Yb', 'alloy', 800000, 'YbFe master alloy (nominal 80% Yb)'),
  ('Yb', 'carbonate', 657823, 'Yb2(CO3)3'),
  ('Yb', 'other', 1000000, 'unspecified'),
  ('Lu', 'oxide', 879384, 'Lu2O3'),
  ('Lu', 'metal', 1000000, 'Lu'),
  ('Lu', 'alloy', 800000, 'LuFe master alloy (nominal 80% Lu)'),
  ('Lu', 'carbonate', 660305, 'Lu2(CO3)3'),
  ('Lu', 'other', 1000000, 'unspecified');

-- Invariant 4: the ledger is append-only, whatever client touches the database.
CREATE FUNCTION ledger_entries_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entries is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only();
