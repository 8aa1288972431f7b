-- PostgreSQL only (lz4 for stored responses): SQLite does not compress. Kept
-- so that both backends have the same list of migrations.
SELECT 1;
