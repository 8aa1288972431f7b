//! Counts ledger entries only once their transaction has committed.
//!
//! `ledger::post` runs deep inside a transaction that may still roll back (a
//! later leg fails, the idempotency record races, the commit itself fails), so
//! it only *stages* what it inserted, in a thread-local tally: a transaction
//! runs on one thread from `BEGIN` to `COMMIT`. `db::write_transaction` opens a
//! `Scope` around its work; the outermost scope moves the staged tally to the
//! committed one when the commit succeeded and drops it otherwise, and an inner
//! scope (a savepoint) that fails restores the tally it started from.
//! `AppState::db` takes the committed tally after each call and adds it to the
//! app's counters.

use std::cell::Cell;

use crate::ledger::model::EntryKind;

/// Entries per kind, in `EntryKind::ALL` order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally(pub [u64; EntryKind::ALL.len()]);

impl Tally {
    fn add(&mut self, other: Tally) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|n| *n == 0)
    }
}

thread_local! {
    static STAGED: Cell<Tally> = Cell::new(Tally::default());
    static COMMITTED: Cell<Tally> = Cell::new(Tally::default());
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Index of `kind` in a `Tally`.
pub fn slot(kind: EntryKind) -> usize {
    EntryKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default()
}

/// Notes one entry inserted by the running transaction.
pub fn stage(kind: EntryKind) {
    STAGED.with(|s| {
        let mut t = s.get();
        t.0[slot(kind)] += 1;
        s.set(t);
    });
}

/// Takes (and clears) what this thread's transactions have committed.
pub fn take_committed() -> Tally {
    COMMITTED.with(|c| c.replace(Tally::default()))
}

/// One `write_transaction` on this thread. Dropped without `finish`, it counts
/// as rolled back.
pub struct Scope {
    before: Tally,
    finished: bool,
}

impl Scope {
    pub fn begin() -> Scope {
        DEPTH.with(|d| d.set(d.get() + 1));
        Scope {
            before: STAGED.with(Cell::get),
            finished: false,
        }
    }

    /// Ends the scope: `committed` says whether its transaction (or savepoint)
    /// was committed.
    pub fn finish(mut self, committed: bool) {
        self.end(committed);
    }

    fn end(&mut self, committed: bool) {
        if self.finished {
            return;
        }
        self.finished = true;
        let depth = DEPTH.with(|d| {
            let left = d.get().saturating_sub(1);
            d.set(left);
            left
        });
        if !committed {
            STAGED.with(|s| s.set(self.before));
        }
        if depth == 0 {
            let staged = STAGED.with(|s| s.replace(Tally::default()));
            if committed {
                COMMITTED.with(|c| {
                    let mut t = c.get();
                    t.add(staged);
                    c.set(t);
                });
            }
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.end(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed_now() -> [u64; 7] {
        take_committed().0
    }

    #[test]
    fn only_committed_transactions_count() {
        let _ = take_committed();
        let tx = Scope::begin();
        stage(EntryKind::Acquisition);
        stage(EntryKind::Acquisition);
        assert_eq!(committed_now(), [0; 7], "nothing counts before the commit");
        tx.finish(true);
        assert_eq!(committed_now(), [2, 0, 0, 0, 0, 0, 0]);

        let tx = Scope::begin();
        stage(EntryKind::Release);
        tx.finish(false);
        assert_eq!(committed_now(), [0; 7], "a rollback counts nothing");

        let tx = Scope::begin();
        stage(EntryKind::TransferOut);
        drop(tx);
        assert_eq!(
            committed_now(),
            [0; 7],
            "a scope dropped unfinished rolled back"
        );
    }

    #[test]
    fn a_failed_savepoint_undoes_only_its_own_entries() {
        let _ = take_committed();
        let outer = Scope::begin();
        stage(EntryKind::Acquisition);
        let inner = Scope::begin();
        stage(EntryKind::Release);
        inner.finish(false);
        let inner = Scope::begin();
        stage(EntryKind::Adjustment);
        inner.finish(true);
        assert_eq!(committed_now(), [0; 7], "inner commits are savepoints");
        outer.finish(true);
        let mut expected = [0; 7];
        expected[slot(EntryKind::Acquisition)] = 1;
        expected[slot(EntryKind::Adjustment)] = 1;
        assert_eq!(committed_now(), expected);
    }
}
