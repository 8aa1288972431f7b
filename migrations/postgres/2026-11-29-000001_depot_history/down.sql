ALTER TABLE period_locks DROP COLUMN after_sequence;
DROP INDEX idempotency_records_created;
DROP TABLE depot_history;
DROP FUNCTION depot_history_append_only();
