-- What each depot has shipped per UTC day (releases, transfers out, loans
-- out; by occurred_at), kept by the posting path under the write lock. The
-- drawdown check reads and bumps one row instead of summing the day's
-- entries, which made every posting slower as the day's ledger grew
-- (docs/performance.md). `day` is written as diesel writes a timestamp at
-- midnight ('YYYY-MM-DD 00:00:00').
CREATE TABLE depot_daily_shipments (
  depot_id BIGINT NOT NULL REFERENCES depots (id),
  day TIMESTAMP NOT NULL,
  shipped_g BIGINT NOT NULL CHECK (shipped_g >= 0),
  PRIMARY KEY (depot_id, day)
);

INSERT INTO depot_daily_shipments (depot_id, day, shipped_g)
SELECT s.depot_id, strftime('%Y-%m-%d 00:00:00', e.occurred_at), -SUM(e.quantity_g)
FROM ledger_entries e JOIN stockpiles s ON s.id = e.stockpile_id
WHERE e.kind IN ('release', 'transfer_out', 'loan_out')
GROUP BY s.depot_id, strftime('%Y-%m-%d 00:00:00', e.occurred_at);
