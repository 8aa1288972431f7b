-- Every version of every depot's limits, so verification can judge each day's
-- outflows against the drawdown limit that was in force when they were posted.
-- Append-only like the ledger.
CREATE TABLE depot_history (
    depot_id               BIGINT NOT NULL REFERENCES depots (id),
    version                BIGINT NOT NULL,
    status                 TEXT NOT NULL,
    capacity_g             BIGINT NOT NULL,
    max_drawdown_g_per_day BIGINT NOT NULL,
    changed_at             TIMESTAMP NOT NULL,
    changed_by             TEXT NOT NULL,
    PRIMARY KEY (depot_id, version)
);
INSERT INTO depot_history (depot_id, version, status, capacity_g, max_drawdown_g_per_day, changed_at, changed_by)
    SELECT id, version, status, capacity_g, max_drawdown_g_per_day, created_at, 'migration' FROM depots;

CREATE FUNCTION depot_history_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'depot_history is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER depot_history_no_update BEFORE UPDATE OR DELETE ON depot_history
    FOR EACH ROW EXECUTE FUNCTION depot_history_append_only();
CREATE TRIGGER depot_history_no_truncate BEFORE TRUNCATE ON depot_history
    FOR EACH STATEMENT EXECUTE FUNCTION depot_history_append_only();

-- Expired idempotency records are purged by age.
CREATE INDEX idempotency_records_created ON idempotency_records (created_at);

-- The ledger sequence a period lock was set after (read under `ledger_head`):
-- every later entry must occur at or after `locked_before`, which verification
-- checks. Locks set before this column existed say 0 and are not checked.
ALTER TABLE period_locks ADD COLUMN after_sequence BIGINT NOT NULL DEFAULT 0;
