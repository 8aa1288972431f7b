DROP TABLE audit_reports;
DROP TABLE checkpoint_heads;
DROP TABLE checkpoints;
DROP TABLE audit_trail;
DROP TABLE counts;
DROP FUNCTION audit_append_only();
