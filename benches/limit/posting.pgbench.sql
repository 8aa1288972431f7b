-- The write limit on PostgreSQL: exactly the statements one posting sends
-- (POST /api/v1/acquisitions or /releases through idempotency::run and
-- ledger::post::post), captured from the code with diesel's instrumentation.
-- tests/api/posting_statements.rs fails when the code sends anything else.
--
-- Run by benches/suite.rs (scripts/bench.sh) as
--   pgbench -n -M prepared -f <this file, one copy per stockpile> -D ...
-- with the variables of one stockpile (depot_id, stockpile_id, element,
-- depot_codes) set per copy and the constant ones with -D. Bound values are
-- pgbench variables, so the statements are the same prepared statements with
-- the same parameters; the values read back (the sequence, the stockpile's
-- head and balance) come back with \gset, as the code reads them.
-- The SHA-256 of the entry is computed by the client, not the database. Its
-- column is unique, and pgbench variables cannot hold computed strings, so the
-- entry's hash is the random :key (16 digits rather than 64 hex characters):
-- slightly smaller rows and index entries, a limit that errs against the
-- service. :hash (the request fingerprint) is a constant of the real size.
\set key random(1000000000000000, 9000000000000000)
\set key_lock random(-4000000000000000, 4000000000000000)
\set acquire random(0, 1)
\if :acquire
SELECT "idempotency_records"."request_hash", "idempotency_records"."response_status", "idempotency_records"."response_body" FROM "idempotency_records" WHERE (("idempotency_records"."subject" = :subject) AND ("idempotency_records"."idempotency_key" = :key)) LIMIT :one;
BEGIN;
SELECT pg_advisory_xact_lock(:key_lock);
SELECT "idempotency_records"."request_hash", "idempotency_records"."response_status", "idempotency_records"."response_body" FROM "idempotency_records" WHERE (("idempotency_records"."subject" = :subject) AND ("idempotency_records"."idempotency_key" = :key)) LIMIT :one;
SELECT "depots"."id", "depots"."code", "depots"."name", "depots"."region", "depots"."status", "depots"."capacity_g", "depots"."max_drawdown_g_per_day", "depots"."on_hand_g", "depots"."version", "depots"."created_at", "depots"."updated_at" FROM "depots" WHERE ("depots"."code" = ANY(:depot_codes));
SELECT "stockpiles"."id" FROM "stockpiles" WHERE (((("stockpiles"."depot_id" = :depot_id) AND ("stockpiles"."element" = :element)) AND ("stockpiles"."form" = :form)) AND ("stockpiles"."grade" = :grade)) LIMIT :one;
UPDATE "depots" SET "on_hand_g" = ("depots"."on_hand_g" + :quantity_in) WHERE ((("depots"."id" = :depot_id) AND ("depots"."status" = :active)) AND ("depots"."capacity_g" >= ("depots"."on_hand_g" + :quantity_in))) RETURNING "depots"."code", "depots"."max_drawdown_g_per_day";
UPDATE "stockpiles" SET "on_hand_g" = ("stockpiles"."on_hand_g" + :quantity_in) WHERE ("stockpiles"."id" = :stockpile_id) RETURNING "stockpiles"."on_hand_g", "stockpiles"."reserved_g", "stockpiles"."head_hash", "stockpiles"."entry_count" \gset s_
SELECT "ledger_entries"."occurred_at" FROM "ledger_entries" WHERE ("ledger_entries"."stockpile_id" = :stockpile_id) ORDER BY "ledger_entries"."occurred_at" DESC LIMIT :one;
UPDATE "element_policies" SET "version" = "element_policies"."version" WHERE ("element_policies"."element" = :element) RETURNING "element_policies"."reserve_floor_g";
SELECT "ceilings"."acquire_max_g", "ceilings"."dispose_max_g" FROM "ceilings" WHERE (("ceilings"."element" = :element) AND ("ceilings"."fiscal_year" = :fiscal_year)) LIMIT :one;
UPDATE "ledger_head" SET "last_sequence" = ("ledger_head"."last_sequence" + :one) WHERE ("ledger_head"."id" = :one) RETURNING "ledger_head"."last_sequence" \gset h_
SELECT max("period_locks"."locked_before") FROM "period_locks" LIMIT :one;
INSERT INTO "ledger_entries" ("sequence", "stockpile_id", "kind", "quantity_g", "balance_after_g", "occurred_at", "recorded_at", "actor", "reference", "counterparty", "origin_country", "unit_price_micros", "currency", "note", "idempotency_key", "movement_id", "order_id", "prev_hash", "hash") VALUES (:h_last_sequence, :stockpile_id, :kind_in, :quantity_in, :s_on_hand_g, :now, :now, :actor, DEFAULT, DEFAULT, DEFAULT, DEFAULT, DEFAULT, DEFAULT, :key, :key, DEFAULT, :s_head_hash, :key);
INSERT INTO "ledger_balances" ("stockpile_id", "occurred_at", "sequence", "balance_g", "entries", "max_sequence") VALUES (:stockpile_id, :now, :h_last_sequence, :s_on_hand_g, :s_entry_count, :h_last_sequence);
UPDATE "stockpiles" SET "head_hash" = :key, "entry_count" = ("stockpiles"."entry_count" + :one) WHERE ("stockpiles"."id" = :stockpile_id);
INSERT INTO "idempotency_records" ("subject", "idempotency_key", "request_hash", "response_status", "response_body", "created_at") VALUES (:subject, :key, :hash, :status, :response_body, :now);
COMMIT;
\else
SELECT "idempotency_records"."request_hash", "idempotency_records"."response_status", "idempotency_records"."response_body" FROM "idempotency_records" WHERE (("idempotency_records"."subject" = :subject) AND ("idempotency_records"."idempotency_key" = :key)) LIMIT :one;
BEGIN;
SELECT pg_advisory_xact_lock(:key_lock);
SELECT "idempotency_records"."request_hash", "idempotency_records"."response_status", "idempotency_records"."response_body" FROM "idempotency_records" WHERE (("idempotency_records"."subject" = :subject) AND ("idempotency_records"."idempotency_key" = :key)) LIMIT :one;
SELECT "depots"."id", "depots"."code", "depots"."name", "depots"."region", "depots"."status", "depots"."capacity_g", "depots"."max_drawdown_g_per_day", "depots"."on_hand_g", "depots"."version", "depots"."created_at", "depots"."updated_at" FROM "depots" WHERE ("depots"."code" = ANY(:depot_codes));
SELECT "stockpiles"."id" FROM "stockpiles" WHERE (((("stockpiles"."depot_id" = :depot_id) AND ("stockpiles"."element" = :element)) AND ("stockpiles"."form" = :form)) AND ("stockpiles"."grade" = :grade)) LIMIT :one;
UPDATE "depots" SET "on_hand_g" = ("depots"."on_hand_g" + :quantity_out) WHERE ((("depots"."id" = :depot_id) AND ("depots"."status" = :active)) AND ("depots"."on_hand_g" >= :withdrawn)) RETURNING "depots"."code", "depots"."max_drawdown_g_per_day";
UPDATE "stockpiles" SET "on_hand_g" = ("stockpiles"."on_hand_g" + :quantity_out) WHERE (("stockpiles"."id" = :stockpile_id) AND (("stockpiles"."on_hand_g" - "stockpiles"."reserved_g") >= :withdrawn)) RETURNING "stockpiles"."on_hand_g", "stockpiles"."reserved_g", "stockpiles"."head_hash", "stockpiles"."entry_count" \gset s_
SELECT "ledger_entries"."occurred_at" FROM "ledger_entries" WHERE ("ledger_entries"."stockpile_id" = :stockpile_id) ORDER BY "ledger_entries"."occurred_at" DESC LIMIT :one;
UPDATE "depot_daily_shipments" SET "shipped_g" = ("depot_daily_shipments"."shipped_g" + :withdrawn) WHERE (("depot_daily_shipments"."depot_id" = :depot_id) AND ("depot_daily_shipments"."day" = :day_start)) RETURNING "depot_daily_shipments"."shipped_g";
UPDATE "element_policies" SET "version" = "element_policies"."version" WHERE ("element_policies"."element" = :element) RETURNING "element_policies"."reserve_floor_g";
SELECT "ceilings"."acquire_max_g", "ceilings"."dispose_max_g" FROM "ceilings" WHERE (("ceilings"."element" = :element) AND ("ceilings"."fiscal_year" = :fiscal_year)) LIMIT :one;
UPDATE "ledger_head" SET "last_sequence" = ("ledger_head"."last_sequence" + :one) WHERE ("ledger_head"."id" = :one) RETURNING "ledger_head"."last_sequence" \gset h_
SELECT max("period_locks"."locked_before") FROM "period_locks" LIMIT :one;
INSERT INTO "ledger_entries" ("sequence", "stockpile_id", "kind", "quantity_g", "balance_after_g", "occurred_at", "recorded_at", "actor", "reference", "counterparty", "origin_country", "unit_price_micros", "currency", "note", "idempotency_key", "movement_id", "order_id", "prev_hash", "hash") VALUES (:h_last_sequence, :stockpile_id, :kind_out, :quantity_out, :s_on_hand_g, :now, :now, :actor, DEFAULT, DEFAULT, DEFAULT, DEFAULT, DEFAULT, DEFAULT, :key, :key, DEFAULT, :s_head_hash, :key);
INSERT INTO "ledger_balances" ("stockpile_id", "occurred_at", "sequence", "balance_g", "entries", "max_sequence") VALUES (:stockpile_id, :now, :h_last_sequence, :s_on_hand_g, :s_entry_count, :h_last_sequence);
UPDATE "stockpiles" SET "head_hash" = :key, "entry_count" = ("stockpiles"."entry_count" + :one) WHERE ("stockpiles"."id" = :stockpile_id);
INSERT INTO "idempotency_records" ("subject", "idempotency_key", "request_hash", "response_status", "response_body", "created_at") VALUES (:subject, :key, :hash, :status, :response_body, :now);
COMMIT;
\endif
