-- What each depot has shipped per UTC day (releases, transfers out, loans
-- out; by occurred_at), kept by the posting path under the depot's row lock.
-- The drawdown check reads and bumps one row instead of summing the day's
-- entries, which made every posting slower as the day's ledger grew
-- (docs/performance.md).
CREATE TABLE depot_daily_shipments (
  depot_id BIGINT NOT NULL REFERENCES depots (id),
  day TIMESTAMP NOT NULL,
  shipped_g BIGINT NOT NULL CHECK (shipped_g >= 0),
  PRIMARY KEY (depot_id, day)
);

INSERT INTO depot_daily_shipments (depot_id, day, shipped_g)
SELECT s.depot_id, date_trunc('day', e.occurred_at), CAST(-SUM(e.quantity_g) AS BIGINT)
FROM ledger_entries e JOIN stockpiles s ON s.id = e.stockpile_id
WHERE e.kind IN ('release', 'transfer_out', 'loan_out')
GROUP BY s.depot_id, date_trunc('day', e.occurred_at);
