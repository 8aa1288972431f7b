-- Each entry's place in its stockpile's history by occurred_at: the balance,
-- the number of entries and the highest sequence among the stockpile's
-- entries at or before it in (occurred_at, sequence) order. A balance as of
-- any instant is then one backward step on the primary key, however long the
-- history (issue 11, scenario 5). Kept by the posting path under the
-- stockpile's row lock: an entry dated at or after the stockpile's newest
-- gets its row with the running balance it already carries; a back-dated
-- entry also adds itself to every row that occurs after it
-- (docs/performance.md). Derived data: the query below rebuilds it from the
-- entries.
CREATE TABLE ledger_balances (
  stockpile_id BIGINT NOT NULL REFERENCES stockpiles (id),
  occurred_at TIMESTAMP NOT NULL,
  sequence BIGINT NOT NULL,
  balance_g BIGINT NOT NULL,
  entries BIGINT NOT NULL,
  max_sequence BIGINT NOT NULL,
  PRIMARY KEY (stockpile_id, occurred_at, sequence)
);

INSERT INTO ledger_balances (stockpile_id, occurred_at, sequence, balance_g, entries, max_sequence)
SELECT stockpile_id, occurred_at, sequence,
  CAST(SUM(quantity_g) OVER w AS BIGINT), COUNT(*) OVER w, MAX(sequence) OVER w
FROM ledger_entries
WINDOW w AS (PARTITION BY stockpile_id ORDER BY occurred_at, sequence ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW);
