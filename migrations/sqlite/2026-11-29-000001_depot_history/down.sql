ALTER TABLE period_locks DROP COLUMN after_sequence;
DROP INDEX idempotency_records_created;
DROP TRIGGER depot_history_no_delete;
DROP TRIGGER depot_history_no_update;
DROP TABLE depot_history;
