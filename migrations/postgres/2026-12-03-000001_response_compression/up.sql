-- A stored response is compressed once it is TOASTed (over about 2 kB; a
-- 1,000-entry batch's answer is about half a megabyte), and it is written
-- while the posting holds ledger_head, so every other posting waits for the
-- compression. lz4 compresses several times faster than the default pglz:
-- 12% more entries/s in batches (docs/performance.md, "Batches"). A server
-- built without lz4 keeps pglz: it refuses lz4 with feature_not_supported
-- (0A000, "compression method lz4 not supported"); any other error stops
-- the migration.
DO $$
BEGIN
    ALTER TABLE idempotency_records ALTER COLUMN response_body SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'response_body stays pglz-compressed: %', SQLERRM;
END $$;
