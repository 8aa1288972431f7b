//! Recomputes the ledger from its entries and compares with what is stored:
//! hash chains (which commit to each stockpile's identity), running balances,
//! sequence continuity, stockpile and depot totals, that closed depots hold
//! nothing, and that no depot shipped more on a UTC day than the drawdown
//! limit in force when that day's last outflow was posted, and that
//! `ledger_balances` holds each entry's balance as of itself. Names the first
//! bad entry.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;

use diesel::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::chain::{ChainedFields, StockpileIdentity, GENESIS};
use super::model::utc_day;
use crate::db::schema::{
    depot_history, depots, ledger_balances as lb, ledger_entries as le, ledger_head, stockpiles,
};
use crate::db::{types, DbConn};
use crate::depots::model::DepotStatus;
use crate::error::ApiResult;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// What kind of problem: `gap`, `hash_mismatch`, `balance_mismatch`,
    /// `behind_checkpoint`, `checkpoint_mismatch`, `checkpoint_invalid`,
    /// `stockpile_mismatch`, `stockpile_missing`, `depot_mismatch`,
    /// `drawdown_exceeded`, `period_lock` or `balances_mismatch` (a
    /// `ledger_balances` row missing, stray, or not the entry's balance,
    /// count and newest sequence as of itself).
    pub kind: &'static str,
    /// The first bad entry's sequence, when the problem is in an entry.
    pub sequence: Option<i64>,
    pub stockpile_id: Option<i64>,
    pub depot_id: Option<i64>,
    pub problem: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub entries_checked: i64,
    pub stockpiles_checked: i64,
    /// The newest sequence the ledger head says was posted.
    pub last_sequence: i64,
    /// The newest sequence up to which everything checked out.
    pub verified_through: i64,
    pub first_problem: Option<Finding>,
    /// The latest signed checkpoint the ledger was checked against, if any.
    pub checkpoint: Option<CheckpointStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckpointStatus {
    pub id: i64,
    pub created_at: String,
    pub last_sequence: i64,
    pub merkle_root: String,
}

/// How to verify: the key checkpoints must be signed with (when the caller
/// has one), a callback told `(entries checked, entries posted)` after
/// every page, and the database the connection is to: given one (not an
/// in-memory SQLite), `verify_with` opens a second connection that sees
/// the same snapshot and reads every other page on a third thread.
#[derive(Default)]
pub struct VerifyOptions<'a> {
    pub trusted_key: Option<String>,
    pub progress: Option<&'a mut dyn FnMut(i64, i64)>,
    pub second_reader: Option<crate::db::DatabaseUrl>,
    /// On PostgreSQL, read the entries and `ledger_balances` with `SELECT`
    /// (diesel's row decoding), as before binary COPY: kept so that tests can
    /// check that both give the same report. Slower; SQLite always reads so.
    pub select_pages: bool,
}

#[derive(Default)]
struct Running {
    head: String,
    balance: i64,
    count: i64,
    /// The newest `occurred_at` so far (as its backend orders it), and whether
    /// an entry was dated before it: then the stockpile's `ledger_balances`
    /// rows are checked in SQL.
    newest: Option<(chrono::NaiveDateTime, u8)>,
    back_dated: bool,
    /// An `occurred_at` stored in another shape than diesel writes: checked
    /// in SQL too.
    odd: bool,
    /// While the entries come in (occurred_at, sequence) order: the sum of the
    /// keyed hashes of the `ledger_balances` rows they imply.
    rows_hash: u128,
}

/// What `ledger_balances` holds for one stockpile, read once, in storage
/// order: how many rows, the sum of their keyed hashes, and whether any
/// `occurred_at` has another shape than diesel writes.
#[derive(Default)]
struct StoredRows {
    rows: i64,
    hash: u128,
    odd: bool,
}

/// A keyed hash of `ledger_balances` rows, summed per stockpile into a
/// multiset hash: equal sums mean the table holds exactly the rows the
/// entries imply, without looking each one up (an index probe per entry cost
/// the PostgreSQL server about 3 µs an entry).
///
/// Each row's hash is the first 128 bits of SHA-256 over a 64-byte block (a
/// tag and 32 bytes from the OS's random source, drawn anew for every
/// verification and never stored or shown) followed by the row's fixed-length
/// encoding. Keyed and fresh, so whoever edits rows cannot compute any row's
/// hash, and so cannot choose edits whose changes cancel out (with a public
/// hash, a sum of 128-bit hashes falls to a generalised birthday search for
/// rows that add up alike). Summed modulo 2^128 rather than xored, so a row
/// present twice does not cancel itself; a row's count is compared as well.
/// Any other set of rows gives the same sum with probability about 2^-64 at
/// worst (a row repeated 2^k times moves the sum by a multiple of 2^k). A
/// stockpile whose sums differ is then checked row by row in SQL, which
/// names the row; never the other way round.
struct RowHasher(Sha256);

impl RowHasher {
    fn new() -> Self {
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(b"reserve-verify-ledger-balances-1");
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut block[32..]);
        let mut h = Sha256::new();
        h.update(block);
        Self(h)
    }

    /// One row: (stockpile, occurred_at, sequence) is its key, then balance,
    /// entry count and newest sequence. 53 bytes: one more SHA-256 block.
    fn row(&self, stockpile_id: i64, at: FastTs, sequence: i64, values: [i64; 3]) -> u128 {
        let mut m = [0u8; 53];
        m[0..8].copy_from_slice(&stockpile_id.to_le_bytes());
        let utc = at.at.and_utc();
        m[8..16].copy_from_slice(&utc.timestamp().to_le_bytes());
        m[16..20].copy_from_slice(&utc.timestamp_subsec_nanos().to_le_bytes());
        m[20] = at.text_len;
        m[21..29].copy_from_slice(&sequence.to_le_bytes());
        for (i, v) in values.iter().enumerate() {
            m[29 + 8 * i..37 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        let d = self.0.clone().chain_update(m).finalize();
        u128::from_le_bytes(d[..16].try_into().expect("16 of 32 bytes"))
    }
}

/// Entries read per query: memory stays bounded by a few pages (the one being
/// checked, the one read meanwhile and one in the channel between them, plus
/// one running head per stockpile and one total per depot and day), however
/// long the ledger.
pub const PAGE: i64 = 5_000;

/// Entries per page when two connections read (every other page each): half
/// a page, so the five pages then in flight (one being read and one waiting
/// on each connection, one being checked) hold no more than the three of one
/// reader.
const HALF_PAGE: i64 = PAGE / 2;

/// A timestamp read as `NaiveDateTime`, but on SQLite with a fast path for
/// the one text format diesel writes (`%F %T%.f`): chrono's general parser
/// was a fifth of the reading thread's time. Anything else takes diesel's
/// own parser, so the same values read alike.
#[derive(diesel::deserialize::FromSqlRow, Clone, Copy)]
struct FastTs {
    at: chrono::NaiveDateTime,
    /// What else the backend compares: 0 on PostgreSQL (a binary value);
    /// on SQLite the length of the text in diesel's format, since SQLite
    /// compares the text (`…:48` and `…:48.0` differ there): among such texts
    /// (at, text_len) identifies one text and orders as the texts do (the
    /// longer of two equal instants has trailing zeros). [`ODD`] for any other
    /// shape, whose stockpile is then checked in SQL.
    text_len: u8,
}

/// `FastTs::text_len` of a value not in diesel's text format.
const ODD: u8 = u8::MAX;

type Multi = <DbConn as diesel::Connection>::Backend;

impl diesel::deserialize::FromSql<diesel::sql_types::Timestamp, Multi> for FastTs {
    fn from_sql(
        bytes: <Multi as diesel::backend::Backend>::RawValue<'_>,
    ) -> diesel::deserialize::Result<Self> {
        bytes.from_sql::<Self, diesel::sql_types::Timestamp>()
    }
}

impl diesel::deserialize::FromSql<diesel::sql_types::Timestamp, diesel::pg::Pg> for FastTs {
    fn from_sql(
        bytes: <diesel::pg::Pg as diesel::backend::Backend>::RawValue<'_>,
    ) -> diesel::deserialize::Result<Self> {
        <chrono::NaiveDateTime as diesel::deserialize::FromSql<
            diesel::sql_types::Timestamp,
            diesel::pg::Pg,
        >>::from_sql(bytes)
        .map(|at| FastTs { at, text_len: 0 })
    }
}

impl diesel::deserialize::FromSql<diesel::sql_types::Timestamp, diesel::sqlite::Sqlite> for FastTs {
    fn from_sql(
        mut value: <diesel::sqlite::Sqlite as diesel::backend::Backend>::RawValue<'_>,
    ) -> diesel::deserialize::Result<Self> {
        if value.value_type() == Some(diesel::sqlite::SqliteType::Text) {
            let text = value.read_text();
            if let Some(at) = parse_sqlite_timestamp(text) {
                return Ok(FastTs {
                    at,
                    text_len: text.len() as u8,
                });
            }
        }
        <chrono::NaiveDateTime as diesel::deserialize::FromSql<
            diesel::sql_types::Timestamp,
            diesel::sqlite::Sqlite,
        >>::from_sql(value)
        .map(|at| FastTs { at, text_len: ODD })
    }
}

/// `YYYY-MM-DD HH:MM:SS[.fffffffff]`, or `None` for anything else.
fn parse_sqlite_timestamp(text: &str) -> Option<chrono::NaiveDateTime> {
    let b = text.as_bytes();
    let num = |from: usize, to: usize| -> Option<u32> {
        b.get(from..to)?.iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let seps = [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':')];
    if b.len() < 19 || seps.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let nanos = match b.len() {
        19 => 0,
        20 => return None,
        n if n <= 29 && b[19] == b'.' => num(20, n)? * 10u32.pow((29 - n) as u32),
        _ => return None,
    };
    chrono::NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 7)?, num(8, 10)?)?.and_hms_nano_opt(
        num(11, 13)?,
        num(14, 16)?,
        num(17, 19)?,
        nanos,
    )
}

thread_local! {
    /// The text columns of the page being read, one after another: a page's
    /// rows hold spans of it ([`Text`]), so reading a row allocates nothing
    /// (a `String` per text column was a quarter of the reader's time, and
    /// freeing them on the other thread contended for the allocator).
    static PAGE_TEXT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// A text column of a page: a span of the page's text (`PAGE_TEXT` while it
/// is read, then [`Page::Entries`]'s `String`).
#[derive(diesel::deserialize::FromSqlRow, Clone, Copy)]
struct Text {
    start: usize,
    len: usize,
}

impl Text {
    fn push(s: &str) -> Self {
        PAGE_TEXT.with(|text| {
            let mut text = text.borrow_mut();
            let start = text.len();
            text.push_str(s);
            Text {
                start,
                len: s.len(),
            }
        })
    }

    fn of(self, text: &str) -> &str {
        &text[self.start..self.start + self.len]
    }

    /// The page's text.
    fn take_page() -> String {
        PAGE_TEXT.with(|text| std::mem::take(&mut *text.borrow_mut()))
    }
}

impl diesel::deserialize::FromSql<diesel::sql_types::Text, Multi> for Text {
    fn from_sql(
        bytes: <Multi as diesel::backend::Backend>::RawValue<'_>,
    ) -> diesel::deserialize::Result<Self> {
        bytes.from_sql::<Self, diesel::sql_types::Text>()
    }
}

impl diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::pg::Pg> for Text {
    fn from_sql(
        value: <diesel::pg::Pg as diesel::backend::Backend>::RawValue<'_>,
    ) -> diesel::deserialize::Result<Self> {
        // As diesel reads a `String`: UTF-8, checked.
        Ok(Text::push(std::str::from_utf8(value.as_bytes())?))
    }
}

impl diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::sqlite::Sqlite> for Text {
    fn from_sql(
        mut value: <diesel::sqlite::Sqlite as diesel::backend::Backend>::RawValue<'_>,
    ) -> diesel::deserialize::Result<Self> {
        // As diesel reads a `String`.
        Ok(Text::push(value.read_text()))
    }
}

/// A `ledger_entries` row as the pages read it; its text is the page's.
#[derive(Queryable)]
struct PageEntry {
    sequence: i64,
    stockpile_id: i64,
    kind: Text,
    quantity_g: i64,
    balance_after_g: i64,
    occurred_at: FastTs,
    recorded_at: FastTs,
    actor: Text,
    reference: Option<Text>,
    counterparty: Option<Text>,
    origin_country: Option<Text>,
    unit_price_micros: Option<i64>,
    currency: Option<Text>,
    note: Option<Text>,
    idempotency_key: Text,
    movement_id: Text,
    order_id: Option<i64>,
    prev_hash: Text,
    hash: Text,
}

/// An entry as checked: a [`PageEntry`] with its page's text.
struct Entry<'a> {
    sequence: i64,
    stockpile_id: i64,
    kind: &'a str,
    quantity_g: i64,
    balance_after_g: i64,
    occurred_at: chrono::NaiveDateTime,
    recorded_at: chrono::NaiveDateTime,
    actor: &'a str,
    reference: Option<&'a str>,
    counterparty: Option<&'a str>,
    origin_country: Option<&'a str>,
    unit_price_micros: Option<i64>,
    currency: Option<&'a str>,
    note: Option<&'a str>,
    idempotency_key: &'a str,
    movement_id: &'a str,
    order_id: Option<i64>,
    prev_hash: &'a str,
    hash: &'a str,
}

impl PageEntry {
    fn with<'a>(&self, text: &'a str) -> Entry<'a> {
        let opt = |t: Option<Text>| t.map(|t| t.of(text));
        Entry {
            sequence: self.sequence,
            stockpile_id: self.stockpile_id,
            kind: self.kind.of(text),
            quantity_g: self.quantity_g,
            balance_after_g: self.balance_after_g,
            occurred_at: self.occurred_at.at,
            recorded_at: self.recorded_at.at,
            actor: self.actor.of(text),
            reference: opt(self.reference),
            counterparty: opt(self.counterparty),
            origin_country: opt(self.origin_country),
            unit_price_micros: self.unit_price_micros,
            currency: opt(self.currency),
            note: opt(self.note),
            idempotency_key: self.idempotency_key.of(text),
            movement_id: self.movement_id.of(text),
            order_id: self.order_id,
            prev_hash: self.prev_hash.of(text),
            hash: self.hash.of(text),
        }
    }
}

impl<'a> Entry<'a> {
    /// The fields the hash commits to, as `EntryRow::chained` gives them.
    fn chained(&self, identity: StockpileIdentity<'a>) -> ChainedFields<'a> {
        ChainedFields {
            sequence: self.sequence,
            stockpile_id: self.stockpile_id,
            identity,
            kind: self.kind,
            quantity_g: self.quantity_g,
            balance_after_g: self.balance_after_g,
            occurred_at_micros: self.occurred_at.and_utc().timestamp_micros(),
            recorded_at_micros: self.recorded_at.and_utc().timestamp_micros(),
            actor: self.actor,
            reference: self.reference,
            counterparty: self.counterparty,
            origin_country: self.origin_country,
            unit_price_micros: self.unit_price_micros,
            currency: self.currency,
            note: self.note,
            idempotency_key: self.idempotency_key,
            movement_id: self.movement_id,
            order_id: self.order_id,
        }
    }
}

/// A `ledger_balances` row.
#[derive(Queryable, QueryableByName)]
struct BalanceRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    stockpile_id: i64,
    #[diesel(sql_type = diesel::sql_types::Timestamp)]
    occurred_at: FastTs,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    sequence: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    balance_g: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    entries: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    max_sequence: i64,
}

/// The `ledger_balances` columns verification reads, in `BalanceRow`'s
/// order: selected on SQLite, copied on PostgreSQL.
const BALANCE_COLUMNS: (
    lb::stockpile_id,
    lb::occurred_at,
    lb::sequence,
    lb::balance_g,
    lb::entries,
    lb::max_sequence,
) = (
    lb::stockpile_id,
    lb::occurred_at,
    lb::sequence,
    lb::balance_g,
    lb::entries,
    lb::max_sequence,
);

/// What the reader hands over: a page of entries in sequence order (an empty
/// one after the last), then `ledger_balances` in pages, in storage order.
enum Page {
    /// The rows, and the text their `Text` columns are spans of.
    Entries(Vec<PageEntry>, String),
    Balances(Vec<BalanceRow>),
}

type PageSender = mpsc::SyncSender<QueryResult<Page>>;

/// An entries page's rows and text, handed back to be filled again.
type Buffers = (Vec<PageEntry>, String);

/// The entries with `after < sequence <= through`, at most a page of them.
/// Reads into a page the checker handed back when there is one, so the
/// buffers in use stay the same few however long the ledger. On PostgreSQL,
/// unless `select` says otherwise, with a binary COPY ([`copy_entries`]).
fn load_entries(
    conn: &mut DbConn,
    after: i64,
    through: i64,
    spare: &mpsc::Receiver<Buffers>,
    select: bool,
) -> QueryResult<Page> {
    use diesel::connection::DefaultLoadingMode;
    let (mut rows, text) = spare
        .try_recv()
        .unwrap_or_else(|_| (Vec::with_capacity(PAGE as usize), String::new()));
    rows.clear();
    PAGE_TEXT.with(|t| {
        let mut t = t.borrow_mut();
        *t = text;
        t.clear();
    });
    if let (DbConn::Postgres(c), false) = (&mut *conn, select) {
        copy_entries(c, after, through, &mut rows)?;
        return Ok(Page::Entries(rows, Text::take_page()));
    }
    let found = le::table
        .filter(le::sequence.gt(after))
        .filter(le::sequence.le(through))
        .order(le::sequence.asc())
        .limit(PAGE)
        .select((
            le::sequence,
            le::stockpile_id,
            le::kind,
            le::quantity_g,
            le::balance_after_g,
            le::occurred_at,
            le::recorded_at,
            le::actor,
            le::reference,
            le::counterparty,
            le::origin_country,
            le::unit_price_micros,
            le::currency,
            le::note,
            le::idempotency_key,
            le::movement_id,
            le::order_id,
            le::prev_hash,
            le::hash,
        ))
        .load_iter::<PageEntry, DefaultLoadingMode>(conn)?;
    for row in found {
        rows.push(row?);
    }
    Ok(Page::Entries(rows, Text::take_page()))
}

/// The columns of a page, in [`PageEntry`]'s order.
const ENTRY_COLUMNS: &str = "sequence, stockpile_id, kind, quantity_g, balance_after_g, \
    occurred_at, recorded_at, actor, reference, counterparty, origin_country, unit_price_micros, \
    currency, note, idempotency_key, movement_id, order_id, prev_hash, hash";

/// `load_entries` on PostgreSQL: the same query as a binary `COPY (SELECT …)
/// TO STDOUT`, decoded by hand (`db::copy`) into the rows and the page's
/// text exactly as diesel decodes the `SELECT`'s binary columns (`int8`,
/// UTF-8-checked `text`, `timestamp` as microseconds since 2000). libpq's
/// result building and diesel's row decoding were most of the reading
/// thread's time, one after the server's on each connection; the stream is
/// read as it arrives.
fn copy_entries(
    c: &mut diesel::PgConnection,
    after: i64,
    through: i64,
    rows: &mut Vec<PageEntry>,
) -> QueryResult<()> {
    use crate::db::copy;
    // Integers only: safe to inline (COPY takes no bind parameters).
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE sequence > {after} \
         AND sequence <= {through} ORDER BY sequence LIMIT {PAGE}"
    );
    let read = {
        let mut out = copy::copy_query(c, &sql)?;
        let read = parse_entries(&mut out, rows);
        if read.is_err() {
            // The connection takes no statement before the stream ends.
            let _ = copy::drain(&mut out);
        }
        read
    };
    let ended = copy::end(c);
    read.and(ended)
}

/// A page's tuples, in [`ENTRY_COLUMNS`]' order; the stream must end after
/// them.
fn parse_entries(out: impl std::io::BufRead, rows: &mut Vec<PageEntry>) -> QueryResult<()> {
    let mut p = crate::db::copy::BinaryCopy::new(out, 19)?;
    let ts = |at| FastTs { at, text_len: 0 };
    while p.next_tuple()? {
        // Fields are read in the order written here, the columns' order.
        rows.push(PageEntry {
            sequence: p.i64("sequence")?,
            stockpile_id: p.i64("stockpile_id")?,
            kind: Text::push(p.text("kind")?),
            quantity_g: p.i64("quantity_g")?,
            balance_after_g: p.i64("balance_after_g")?,
            occurred_at: ts(p.timestamp("occurred_at")?),
            recorded_at: ts(p.timestamp("recorded_at")?),
            actor: Text::push(p.text("actor")?),
            reference: p.opt_text("reference")?.map(Text::push),
            counterparty: p.opt_text("counterparty")?.map(Text::push),
            origin_country: p.opt_text("origin_country")?.map(Text::push),
            unit_price_micros: p.opt_i64("unit_price_micros")?,
            currency: p.opt_text("currency")?.map(Text::push),
            note: p.opt_text("note")?.map(Text::push),
            idempotency_key: Text::push(p.text("idempotency_key")?),
            movement_id: Text::push(p.text("movement_id")?),
            order_id: p.opt_i64("order_id")?,
            prev_hash: Text::push(p.text("prev_hash")?),
            hash: Text::push(p.text("hash")?),
        });
    }
    p.finish()?;
    Ok(())
}

/// Reads the ledger in pages on the caller's connection (so in its snapshot)
/// and hands them over until the receiver hangs up: the entries after each
/// page's last, then `ledger_balances`.
fn read_pages(conn: &mut DbConn, tx: PageSender, spare: mpsc::Receiver<Buffers>, select: bool) {
    let mut after = 0i64;
    loop {
        let page = load_entries(conn, after, i64::MAX, &spare, select);
        let last = match &page {
            Ok(Page::Entries(rows, _)) => rows.last().map(|e| e.sequence),
            _ => None,
        };
        let failed = page.is_err();
        if tx.send(page).is_err() || failed {
            return;
        }
        match last {
            Some(s) => after = s,
            None => break,
        }
    }
    read_balances(conn, &tx, select);
}

/// Reads the given pages by sequence range (page k holds the sequences in
/// `(k * HALF_PAGE, (k + 1) * HALF_PAGE]`), then `ledger_balances` if asked:
/// two of these, on two connections in one snapshot, share the pages.
fn read_ranges(
    conn: &mut DbConn,
    pages: impl Iterator<Item = i64>,
    tx: PageSender,
    spare: mpsc::Receiver<Buffers>,
    balances: bool,
    select: bool,
) {
    for k in pages {
        let page = load_entries(conn, k * HALF_PAGE, (k + 1) * HALF_PAGE, &spare, select);
        let failed = page.is_err();
        if tx.send(page).is_err() || failed {
            return;
        }
    }
    if balances {
        read_balances(conn, &tx, select);
    }
}

/// Reads `ledger_balances` once, sequentially, in pages: on SQLite one
/// statement stepped as the pages are handed over (a scan in rowid order), on
/// PostgreSQL a binary COPY of the table (a sequential scan) read as it
/// arrives ([`copy_balances`]), or with `select` a cursor fetched a page at a
/// time.
fn read_balances(conn: &mut DbConn, tx: &PageSender, select: bool) {
    let page_len = PAGE as usize;
    match conn {
        DbConn::Sqlite(c) => {
            use diesel::connection::DefaultLoadingMode;
            let rows = lb::table
                .select(BALANCE_COLUMNS)
                .load_iter::<BalanceRow, DefaultLoadingMode>(c);
            let rows = match rows {
                Ok(rows) => rows,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let mut page = Vec::with_capacity(page_len);
            for row in rows {
                match row {
                    Ok(row) => page.push(row),
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
                if page.len() == page_len {
                    let full = std::mem::replace(&mut page, Vec::with_capacity(page_len));
                    if tx.send(Ok(Page::Balances(full))).is_err() {
                        return;
                    }
                }
            }
            if !page.is_empty() {
                let _ = tx.send(Ok(Page::Balances(page)));
            }
        }
        DbConn::Postgres(c) if !select => {
            if let Err(e) = copy_balances(c, tx) {
                let _ = tx.send(Err(e));
            }
        }
        DbConn::Postgres(c) => {
            use diesel::connection::SimpleConnection;
            if let Err(e) = c.batch_execute(
                "DECLARE verify_balances NO SCROLL CURSOR FOR
                 SELECT stockpile_id, occurred_at, sequence, balance_g, entries, max_sequence
                 FROM ledger_balances",
            ) {
                let _ = tx.send(Err(e));
                return;
            }
            let fetch = format!("FETCH FORWARD {PAGE} FROM verify_balances");
            loop {
                let page = diesel::sql_query(&fetch).load::<BalanceRow>(c);
                let done = page.as_ref().map(Vec::is_empty).unwrap_or(true);
                if done {
                    if page.is_err() {
                        let _ = tx.send(page.map(Page::Balances));
                    }
                    break;
                }
                if tx.send(page.map(Page::Balances)).is_err() {
                    break;
                }
            }
            // The cursor would otherwise last as long as the transaction.
            let _ = c.batch_execute("CLOSE verify_balances");
        }
    }
}

/// `ledger_balances` as one binary `COPY ledger_balances (…) TO STDOUT`,
/// handed over a page at a time as it is decoded. If the checker hangs up
/// (it found a problem in the entries), the rest of the stream is still read,
/// since the connection takes no statement before it ends and the checker's
/// connection goes on with the stockpiles.
fn copy_balances(c: &mut diesel::PgConnection, tx: &PageSender) -> QueryResult<()> {
    use crate::db::copy;
    let read = {
        let mut out = diesel::copy_to(BALANCE_COLUMNS)
            .with_format(diesel::pg::CopyFormat::Binary)
            .load_raw(c)?;
        let read = send_balances(&mut out, tx);
        if !matches!(read, Ok(true)) {
            let _ = copy::drain(&mut out);
        }
        read
    };
    let ended = copy::end(c);
    read.and(ended).map(|_| ())
}

/// Decodes `ledger_balances` rows and sends them a page at a time: `true`
/// when the stream was read to its end, `false` when the receiver hung up
/// before.
fn send_balances(out: impl std::io::BufRead, tx: &PageSender) -> QueryResult<bool> {
    let page_len = PAGE as usize;
    let mut p = crate::db::copy::BinaryCopy::new(out, 6)?;
    let mut page = Vec::with_capacity(page_len);
    while p.next_tuple()? {
        page.push(BalanceRow {
            stockpile_id: p.i64("stockpile_id")?,
            occurred_at: FastTs {
                at: p.timestamp("occurred_at")?,
                text_len: 0,
            },
            sequence: p.i64("sequence")?,
            balance_g: p.i64("balance_g")?,
            entries: p.i64("entries")?,
            max_sequence: p.i64("max_sequence")?,
        });
        if page.len() == page_len {
            let full = std::mem::replace(&mut page, Vec::with_capacity(page_len));
            if tx.send(Ok(Page::Balances(full))).is_err() {
                return Ok(false);
            }
        }
    }
    p.finish()?;
    if !page.is_empty() {
        let _ = tx.send(Ok(Page::Balances(page)));
    }
    Ok(true)
}

/// Verifies one consistent snapshot of the whole ledger, so writers running
/// meanwhile cannot produce false alarms.
pub fn verify(conn: &mut DbConn) -> ApiResult<VerifyReport> {
    verify_with(conn, VerifyOptions::default())
}

pub fn verify_with(conn: &mut DbConn, mut opts: VerifyOptions<'_>) -> ApiResult<VerifyReport> {
    let url = opts
        .second_reader
        .take()
        .filter(|u| *u != crate::db::DatabaseUrl::Sqlite(":memory:".into()));
    crate::db::read_transaction(conn, |c| {
        let second = match &url {
            Some(url) => share_snapshot(c, url)?,
            None => None,
        };
        verify_in(c, second, opts)
    })
}

/// A second connection to `url` that sees exactly the snapshot of `conn`'s
/// transaction (which must not have read yet on SQLite), or `None` when one
/// cannot be had; verification then reads with one thread. PostgreSQL
/// exports the snapshot and the second transaction imports it. SQLite has
/// no such statement, so a third connection takes the write lock (`BEGIN
/// IMMEDIATE`: it waits for a writer that holds it, then keeps every commit
/// out) while both begin reading, and lets go at once: both read the last
/// commit before the lock. Either way both must then see the same ledger
/// head.
fn share_snapshot(conn: &mut DbConn, url: &crate::db::DatabaseUrl) -> ApiResult<Option<DbConn>> {
    use diesel::connection::SimpleConnection;
    let head = |c: &mut DbConn| {
        ledger_head::table
            .select(ledger_head::last_sequence)
            .first::<i64>(c)
    };
    let open = || match crate::db::establish(url) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "verify: no second connection; reading with one");
            None
        }
    };
    let Some(mut second) = open() else {
        return Ok(None);
    };
    let ours = match (&*conn, &second) {
        (DbConn::Postgres(_), DbConn::Postgres(_)) => {
            let id: String = diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
                "pg_export_snapshot()",
            ))
            .get_result(conn)?;
            // An identifier such as 00000003-0000001B-1, inlined below.
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
                return Ok(None);
            }
            let imported = second.batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{id}'"
            ));
            if imported.is_err() {
                return Ok(None);
            }
            head(conn)?
        }
        (DbConn::Sqlite(_), DbConn::Sqlite(_)) => {
            let Some(mut lock) = open() else {
                return Ok(None);
            };
            if lock.batch_execute("BEGIN IMMEDIATE").is_err() {
                return Ok(None);
            }
            let ours = head(conn)?;
            let began = second.batch_execute("BEGIN");
            let theirs = head(&mut second);
            let _ = lock.batch_execute("ROLLBACK");
            if began.is_err() || theirs.ok() != Some(ours) {
                return Ok(None);
            }
            ours
        }
        _ => return Ok(None),
    };
    if head(&mut second).ok() != Some(ours) {
        return Ok(None);
    }
    Ok(Some(second))
}

/// What a stockpile row says it is, with its depot.
struct StockpileRow {
    depot_id: i64,
    depot: String,
    element: String,
    form: String,
    grade: String,
}

impl StockpileRow {
    fn identity(&self) -> StockpileIdentity<'_> {
        StockpileIdentity {
            depot: &self.depot,
            element: &self.element,
            form: &self.form,
            grade: &self.grade,
        }
    }
}

/// One depot's outflows on one UTC day, and the newest of them.
struct DayOutflow {
    shipped_g: i64,
    last_sequence: i64,
    last_recorded_at: chrono::NaiveDateTime,
}

/// Checks one entry against its stockpile's running state and advances it.
fn check_entry(
    e: &Entry<'_>,
    expected_sequence: i64,
    stockpile: Option<&StockpileRow>,
    running: &mut BTreeMap<i64, Running>,
    buf: &mut Vec<u8>,
) -> Result<(), (&'static str, String)> {
    if e.sequence != expected_sequence {
        return Err((
            "gap",
            format!(
                "sequence {} follows {}: entries are missing",
                e.sequence,
                expected_sequence - 1
            ),
        ));
    }
    let Some(stockpile) = stockpile else {
        return Err((
            "stockpile_missing",
            format!(
                "the entry refers to stockpile {}, which does not exist",
                e.stockpile_id
            ),
        ));
    };
    let r = running.entry(e.stockpile_id).or_insert_with(|| Running {
        head: GENESIS.to_string(),
        ..Default::default()
    });
    if e.prev_hash != r.head {
        return Err((
            "hash_mismatch",
            "prev_hash does not match the previous entry of its stockpile".into(),
        ));
    }
    let digest = e
        .chained(stockpile.identity())
        .digest(e.prev_hash.as_bytes(), buf);
    let mut hex = [0u8; 64];
    hex::encode_to_slice(digest, &mut hex).expect("64 hex digits for 32 bytes");
    if hex[..] != *e.hash.as_bytes() {
        return Err((
            "hash_mismatch",
            format!(
                "hash does not match the entry's contents and its stockpile's identity \
             (now {} {} grade {} at {}): the entry, or the stockpile's depot, element, \
             form or grade, was changed",
                stockpile.element, stockpile.form, stockpile.grade, stockpile.depot
            ),
        ));
    }
    r.balance += e.quantity_g;
    if e.balance_after_g != r.balance {
        return Err((
            "balance_mismatch",
            format!(
                "balance_after is {} g but the running sum is {} g",
                e.balance_after_g, r.balance
            ),
        ));
    }
    if r.balance < 0 {
        return Err(("balance_mismatch", "balance is negative".into()));
    }
    r.count += 1;
    Ok(())
}

/// Adds the entry's `ledger_balances` row to its stockpile's expected rows,
/// when it can be told right here (after `check_entry` advanced `r`). An
/// entry dated at or after every earlier one of its stockpile is last in its
/// (occurred_at, sequence) order, so its row must hold its running balance,
/// count and own sequence, unless a later entry is back-dated before it;
/// such stockpiles (and odd timestamps) go to `check_balances`'s SQL.
fn expect_balances_row(e: &Entry<'_>, at: FastTs, r: &mut Running, hasher: &RowHasher) {
    r.odd |= at.text_len == ODD;
    let key = (at.at, at.text_len);
    if r.newest.is_some_and(|n| key < n) {
        r.back_dated = true;
    } else {
        r.newest = Some(key);
    }
    if !r.back_dated && !r.odd {
        let row = hasher.row(
            e.stockpile_id,
            at,
            e.sequence,
            [r.balance, r.count, e.sequence],
        );
        r.rows_hash = r.rows_hash.wrapping_add(row);
    }
}

/// `ledger_balances` against the entries, by stockpile, before the SQL.
struct BalancesCheck {
    /// Stockpiles to check row by row in SQL: back-dated entries, odd
    /// timestamps, or rows that differ from what the entries imply.
    suspect: BTreeSet<i64>,
    /// Of those, the ones whose rows were seen to differ (their count or
    /// hash sum): one must be named even if the SQL names no row.
    differ: BTreeSet<i64>,
    /// Rows read.
    rows: i64,
}

fn compare_balances(
    running: &BTreeMap<i64, Running>,
    stored: &BTreeMap<i64, StoredRows>,
) -> BalancesCheck {
    let none = StoredRows::default();
    let mut check = BalancesCheck {
        suspect: BTreeSet::new(),
        differ: BTreeSet::new(),
        rows: stored.values().map(|s| s.rows).sum(),
    };
    for (id, r) in running {
        let s = stored.get(id).unwrap_or(&none);
        if r.back_dated || r.odd || s.odd {
            check.suspect.insert(*id);
        } else if s.rows != r.count || s.hash != r.rows_hash {
            check.suspect.insert(*id);
            check.differ.insert(*id);
        }
    }
    // Rows of a stockpile without entries: the count names them, or this.
    for id in stored.keys().filter(|id| !running.contains_key(id)) {
        check.differ.insert(*id);
    }
    check
}

/// The latest checkpoint, checked on its own, with its heads by stockpile.
struct Anchor {
    status: CheckpointStatus,
    id: i64,
    heads: BTreeMap<i64, crate::audit::merkle::Head>,
}

fn load_anchor(
    conn: &mut DbConn,
    trusted: Option<&str>,
) -> ApiResult<Result<Option<Anchor>, Finding>> {
    use crate::audit::checkpoints;
    let invalid = |problem: String| Finding {
        kind: "checkpoint_invalid",
        sequence: None,
        stockpile_id: None,
        depot_id: None,
        problem,
    };
    if let Some(problem) = checkpoints::check_links(conn)? {
        return Ok(Err(invalid(problem)));
    }
    let Some(row) = checkpoints::latest(conn)? else {
        return Ok(Ok(None));
    };
    let heads = checkpoints::heads_of(conn, row.id)?;
    if let Err(problem) = checkpoints::check(&row, &heads, trusted) {
        return Ok(Err(invalid(problem)));
    }
    Ok(Ok(Some(Anchor {
        status: CheckpointStatus {
            id: row.id,
            created_at: types::rfc3339(types::from_db(row.created_at)),
            last_sequence: row.last_sequence,
            merkle_root: row.merkle_root.clone(),
        },
        id: row.id,
        heads: heads.iter().map(|h| (h.stockpile_id, h.head())).collect(),
    })))
}

/// Verifies inside the caller's transaction (which should see one snapshot).
pub fn verify_snapshot(conn: &mut DbConn, opts: VerifyOptions<'_>) -> ApiResult<VerifyReport> {
    verify_in(conn, None, opts)
}

/// `verify_snapshot`, with a second connection in the same snapshot when
/// there is one.
fn verify_in(
    conn: &mut DbConn,
    second: Option<DbConn>,
    mut opts: VerifyOptions<'_>,
) -> ApiResult<VerifyReport> {
    let posted: i64 = ledger_head::table
        .select(ledger_head::last_sequence)
        .first(conn)?;
    let (anchor, anchor_problem) = match load_anchor(conn, opts.trusted_key.as_deref())? {
        Ok(a) => (a, None),
        Err(f) => (None, Some(f)),
    };
    let checkpoint = anchor.as_ref().map(|a| a.status.clone());
    let identities: BTreeMap<i64, StockpileRow> = stockpiles::table
        .inner_join(depots::table)
        .select((
            stockpiles::id,
            stockpiles::depot_id,
            depots::code,
            stockpiles::element,
            stockpiles::form,
            stockpiles::grade,
        ))
        .load::<(i64, i64, String, String, String, String)>(conn)?
        .into_iter()
        .map(|(id, depot_id, depot, element, form, grade)| {
            (
                id,
                StockpileRow {
                    depot_id,
                    depot,
                    element,
                    form,
                    grade,
                },
            )
        })
        .collect();
    let mut outflows: BTreeMap<(i64, chrono::NaiveDateTime), DayOutflow> = BTreeMap::new();
    let mut running: BTreeMap<i64, Running> = BTreeMap::new();
    // The newest sequence up to which every entry checked out.
    let mut verified_through = 0i64;
    let mut checked = 0i64;
    let mut first_problem: Option<Finding> = None;
    // `ledger_balances` as read, by stockpile, and the key its rows are
    // hashed with.
    let mut stored: BTreeMap<i64, StoredRows> = BTreeMap::new();
    let hasher = RowHasher::new();
    let mut buf = Vec::with_capacity(512);
    let select = opts.select_pages;
    // With a second connection, pages by sequence range, every other one on
    // each, as far as the highest sequence: unless that lies past the head
    // (then the entries after each page's last, as with one connection, so a
    // stray huge sequence cannot make for countless empty pages).
    let ranges = match second {
        Some(second) => {
            let max: Option<i64> = le::table
                .select(diesel::dsl::max(le::sequence))
                .first(conn)?;
            let max = max.unwrap_or(0);
            (max <= posted.max(0) + PAGE)
                .then(|| (second, (max + HALF_PAGE - 1).max(0) / HALF_PAGE))
        }
        None => None,
    };
    // Reader threads read the next pages (same snapshot) while this one
    // hashes the current one; each channel holds one page.
    std::thread::scope(|scope| -> ApiResult<()> {
        // Owned here, so any return hangs up and the readers stop.
        let (tx, rx) = mpsc::sync_channel(1);
        let mut readers = Vec::new();
        let first = &mut *conn;
        // Checked pages go back to the reader they came from.
        let (back, spare) = mpsc::channel::<Buffers>();
        let mut backs = vec![back];
        type Next = Box<dyn FnMut() -> Option<(QueryResult<Page>, usize)>>;
        let mut pages: Next = match ranges {
            None => {
                readers.push(scope.spawn(move || read_pages(first, tx, spare, select)));
                Box::new(move || rx.recv().ok().map(|p| (p, 0)))
            }
            Some((mut second, n)) => {
                let (tx1, rx1) = mpsc::sync_channel(1);
                let (back1, spare1) = mpsc::channel::<Buffers>();
                backs.push(back1);
                readers.push(scope.spawn(move || {
                    read_ranges(first, (0..n).step_by(2), tx, spare, false, select)
                }));
                readers.push(scope.spawn(move || {
                    read_ranges(&mut second, (1..n).step_by(2), tx1, spare1, true, select)
                }));
                let mut k = 0;
                Box::new(move || {
                    // Entries in page order, then ledger_balances.
                    let from = if k < n && k % 2 == 0 { 0 } else { 1 };
                    k += 1;
                    [&rx, &rx1][from].recv().ok().map(|p| (p, from))
                })
            }
        };
        while let Some((page, from)) = pages() {
            let (rows, text) = match page? {
                Page::Entries(rows, text) => (rows, text),
                Page::Balances(rows) => {
                    for b in rows {
                        let s = stored.entry(b.stockpile_id).or_default();
                        s.rows += 1;
                        s.odd |= b.occurred_at.text_len == ODD;
                        s.hash = s.hash.wrapping_add(hasher.row(
                            b.stockpile_id,
                            b.occurred_at,
                            b.sequence,
                            [b.balance_g, b.entries, b.max_sequence],
                        ));
                    }
                    continue;
                }
            };
            for row in &rows {
                let occurred = row.occurred_at;
                let e = row.with(&text);
                checked += 1;
                let stockpile = identities.get(&e.stockpile_id);
                let checked_entry =
                    check_entry(&e, verified_through + 1, stockpile, &mut running, &mut buf)
                        .and_then(|()| match anchor.as_ref() {
                            Some(a) => check_against_anchor(&e, a, &running),
                            None => Ok(()),
                        });
                if let Err((kind, problem)) = checked_entry {
                    first_problem = Some(Finding {
                        kind,
                        sequence: Some(e.sequence),
                        stockpile_id: Some(e.stockpile_id),
                        depot_id: None,
                        problem,
                    });
                    break;
                }
                verified_through = e.sequence;
                if let Some(sp) = stockpile.filter(|_| is_outflow(e.kind)) {
                    let day = types::to_db(utc_day(types::from_db(e.occurred_at)).0);
                    let d = outflows.entry((sp.depot_id, day)).or_insert(DayOutflow {
                        shipped_g: 0,
                        last_sequence: 0,
                        last_recorded_at: e.recorded_at,
                    });
                    d.shipped_g -= e.quantity_g;
                    d.last_sequence = e.sequence;
                    d.last_recorded_at = e.recorded_at;
                }
                // check_entry made the stockpile's running state.
                if let Some(r) = running.get_mut(&e.stockpile_id) {
                    expect_balances_row(&e, occurred, r, &hasher);
                    r.head.clear();
                    r.head.push_str(e.hash);
                }
            }
            let _ = backs[from].send((rows, text));
            if first_problem.is_some() {
                break;
            }
            if let Some(progress) = opts.progress.as_mut() {
                progress(checked, posted);
            }
        }
        // Hanging up stops the readers after the page they are reading.
        drop(pages);
        for reader in readers {
            reader.join().expect("the ledger reader panicked");
        }
        Ok(())
    })?;
    let balances = compare_balances(&running, &stored);
    // A stockpile whose chain ends before the head the checkpoint signed lost
    // its newest entries: the chain alone cannot show that.
    if first_problem.is_none() {
        if let Some(a) = &anchor {
            for (stockpile_id, h) in &a.heads {
                let reached = running.get(stockpile_id).map(|r| r.count).unwrap_or(0);
                if reached < h.entry_count {
                    first_problem = Some(Finding {
                        kind: "behind_checkpoint",
                        sequence: Some(h.last_sequence),
                        stockpile_id: Some(*stockpile_id),
                        depot_id: None,
                        problem: format!(
                            "the stockpile's chain holds {reached} entries, but checkpoint {} signed its head at sequence {} after {} entries (hash {}): its newest entries were deleted",
                            a.id, h.last_sequence, h.entry_count, h.head_hash
                        ),
                    });
                    break;
                }
            }
        }
    }
    if first_problem.is_none() {
        first_problem = anchor_problem;
    }
    let stockpile_rows: Vec<(i64, i64, i64, i64, String, i64)> = stockpiles::table
        .select((
            stockpiles::id,
            stockpiles::depot_id,
            stockpiles::on_hand_g,
            stockpiles::reserved_g,
            stockpiles::head_hash,
            stockpiles::entry_count,
        ))
        .load(conn)?;
    let head: i64 = ledger_head::table
        .select(ledger_head::last_sequence)
        .first(conn)?;
    if first_problem.is_none() && head != verified_through {
        first_problem = Some(Finding {
            kind: "gap",
            sequence: Some(head),
            stockpile_id: None,
            depot_id: None,
            problem: format!(
                "the ledger head says {head} entries were posted but {verified_through} are present"
            ),
        });
    }
    let mut depot_sums: BTreeMap<i64, i64> = BTreeMap::new();
    for (id, depot_id, on_hand, reserved, head_hash, count) in &stockpile_rows {
        *depot_sums.entry(*depot_id).or_default() += on_hand;
        if first_problem.is_some() {
            continue;
        }
        let r = running.remove(id).unwrap_or(Running {
            head: GENESIS.to_string(),
            ..Default::default()
        });
        let problem = if r.balance != *on_hand {
            Some(format!(
                "on_hand is {on_hand} g but its entries sum to {} g",
                r.balance
            ))
        } else if *head_hash != r.head {
            Some("head_hash is not the hash of its newest entry".to_string())
        } else if r.count != *count {
            Some(format!(
                "entry_count is {count} but {} entries exist",
                r.count
            ))
        } else if *reserved < 0 || reserved > on_hand {
            Some(format!("reserved {reserved} g is outside 0..=on_hand"))
        } else {
            None
        };
        if let Some(problem) = problem {
            first_problem = Some(Finding {
                kind: "stockpile_mismatch",
                sequence: None,
                stockpile_id: Some(*id),
                depot_id: None,
                problem,
            });
        }
    }
    if first_problem.is_none() {
        if let Some((id, _)) = running.iter().next() {
            first_problem = Some(Finding {
                kind: "stockpile_missing",
                sequence: None,
                stockpile_id: Some(*id),
                depot_id: None,
                problem: "entries refer to a stockpile that does not exist".into(),
            });
        }
    }
    if first_problem.is_none() {
        let depot_rows: Vec<(i64, i64, i64, String)> = depots::table
            .select((
                depots::id,
                depots::on_hand_g,
                depots::capacity_g,
                depots::status,
            ))
            .load(conn)?;
        for (id, on_hand, capacity, status) in depot_rows {
            let sum = depot_sums.get(&id).copied().unwrap_or(0);
            let problem = if sum != on_hand {
                Some(format!(
                    "depot on_hand is {on_hand} g but its stockpiles hold {sum} g"
                ))
            } else if on_hand > capacity {
                Some(format!(
                    "depot holds {on_hand} g, over its capacity of {capacity} g"
                ))
            } else if status == DepotStatus::Closed.as_str() && sum > 0 {
                Some(format!(
                    "depot is closed but its stockpiles hold {sum} g: stock in a closed depot can never move"
                ))
            } else {
                None
            };
            if let Some(problem) = problem {
                first_problem = Some(Finding {
                    kind: "depot_mismatch",
                    sequence: None,
                    stockpile_id: None,
                    depot_id: Some(id),
                    problem,
                });
                break;
            }
        }
    }
    if first_problem.is_none() {
        first_problem = check_drawdown_days(conn, &outflows)?;
    }
    if first_problem.is_none() {
        first_problem = check_period_locks(conn)?;
    }
    if first_problem.is_none() {
        first_problem = check_balances(conn, &balances, checked)?;
    }
    Ok(VerifyReport {
        ok: first_problem.is_none(),
        entries_checked: checked,
        stockpiles_checked: stockpile_rows.len() as i64,
        last_sequence: head,
        verified_through,
        first_problem,
        checkpoint,
    })
}

/// The entry at a checkpointed head must be the one the checkpoint signed.
fn check_against_anchor(
    e: &Entry<'_>,
    anchor: &Anchor,
    running: &BTreeMap<i64, Running>,
) -> Result<(), (&'static str, String)> {
    let Some(h) = anchor.heads.get(&e.stockpile_id) else {
        return Ok(());
    };
    let Some(r) = running.get(&e.stockpile_id) else {
        return Ok(());
    };
    let at_head = e.sequence == h.last_sequence || r.count == h.entry_count;
    if at_head
        && (e.sequence != h.last_sequence
            || r.count != h.entry_count
            || e.hash != h.head_hash
            || e.balance_after_g != h.balance_g)
    {
        return Err((
            "checkpoint_mismatch",
            format!(
                "checkpoint {} signed this stockpile's head as sequence {} after {} entries, balance {} g, hash {}; the ledger has sequence {} after {} entries, balance {} g, hash {}",
                anchor.id, h.last_sequence, h.entry_count, h.balance_g, h.head_hash,
                e.sequence, r.count, e.balance_after_g, e.hash
            ),
        ));
    }
    Ok(())
}

fn is_outflow(kind: &str) -> bool {
    matches!(kind, "release" | "transfer_out" | "loan_out")
}

/// Each posting checks, under the depot's lock, that the day's outflows stay
/// within the limit in force at that moment; so the day's total must be within
/// the limit in force when its newest outflow was recorded (`depot_history`
/// keeps every version, stamped under the same lock).
fn check_drawdown_days(
    conn: &mut DbConn,
    outflows: &BTreeMap<(i64, chrono::NaiveDateTime), DayOutflow>,
) -> ApiResult<Option<Finding>> {
    let mut history: BTreeMap<i64, Vec<(chrono::NaiveDateTime, i64)>> = BTreeMap::new();
    for (depot_id, changed_at, limit) in depot_history::table
        .order((depot_history::depot_id, depot_history::version))
        .select((
            depot_history::depot_id,
            depot_history::changed_at,
            depot_history::max_drawdown_g_per_day,
        ))
        .load::<(i64, chrono::NaiveDateTime, i64)>(conn)?
    {
        history
            .entry(depot_id)
            .or_default()
            .push((changed_at, limit));
    }
    for ((depot_id, day), d) in outflows {
        let versions = history.get(depot_id).map(Vec::as_slice).unwrap_or(&[]);
        // The newest version stamped before the day's last outflow; the first
        // version when none is (clock skew between replicas).
        let Some(limit) = versions
            .iter()
            .rev()
            .find(|(at, _)| *at <= d.last_recorded_at)
            .or(versions.first())
            .map(|(_, limit)| *limit)
        else {
            return Ok(Some(Finding {
                kind: "drawdown_exceeded",
                sequence: Some(d.last_sequence),
                stockpile_id: None,
                depot_id: Some(*depot_id),
                problem: "the depot has no recorded limits (depot_history is empty)".into(),
            }));
        };
        if d.shipped_g > limit {
            return Ok(Some(Finding {
                kind: "drawdown_exceeded",
                sequence: Some(d.last_sequence),
                stockpile_id: None,
                depot_id: Some(*depot_id),
                problem: format!(
                    "the depot shipped {} g on {}, over the drawdown limit of {} g per day in force when that day's last outflow was posted",
                    d.shipped_g,
                    day.format("%Y-%m-%d"),
                    limit
                ),
            }));
        }
    }
    Ok(None)
}

/// No entry posted after a period lock was set may occur before it.
fn check_period_locks(conn: &mut DbConn) -> ApiResult<Option<Finding>> {
    use crate::db::schema::period_locks as pl;
    let locks: Vec<(i64, chrono::NaiveDateTime)> = pl::table
        .filter(pl::after_sequence.gt(0))
        .select((pl::after_sequence, pl::locked_before))
        .load(conn)?;
    for (after_sequence, locked_before) in locks {
        let early: Option<(i64, i64)> = le::table
            .filter(le::sequence.gt(after_sequence))
            .filter(le::occurred_at.lt(locked_before))
            .order(le::sequence.asc())
            .select((le::sequence, le::stockpile_id))
            .first(conn)
            .optional()?;
        if let Some((sequence, stockpile_id)) = early {
            return Ok(Some(Finding {
                kind: "period_lock",
                sequence: Some(sequence),
                stockpile_id: Some(stockpile_id),
                depot_id: None,
                problem: format!(
                    "the entry was posted after the books were closed before {} (at sequence {after_sequence}) but occurred before that",
                    types::rfc3339(types::from_db(locked_before))
                ),
            }));
        }
    }
    Ok(None)
}

/// A `ledger_balances` row that differs from what the entries give.
#[derive(QueryableByName)]
struct BalancesMismatch {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    sequence: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    stockpile_id: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    balance_g: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    entries: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    max_sequence: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    stored_balance_g: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    stored_entries: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    stored_max_sequence: Option<i64>,
}

/// `ledger_balances` holds one row per entry with its stockpile's balance,
/// entry count and newest sequence as of that entry in (occurred_at,
/// sequence) order. The page loop compared the rows of the stockpiles whose
/// entries came in that order with what the entries imply, as keyed hash
/// sums ([`RowHasher`]); the rest (`suspect`: back-dated entries, odd
/// timestamps, or rows that differ) are recomputed here with window
/// functions on the server, which names the first bad row. A row no entry
/// has is found by counting: each entry has its row.
fn check_balances(
    conn: &mut DbConn,
    check: &BalancesCheck,
    entries: i64,
) -> ApiResult<Option<Finding>> {
    let suspect = &check.suspect;
    let finding = |sequence, stockpile_id, problem| Finding {
        kind: "balances_mismatch",
        sequence,
        stockpile_id,
        depot_id: None,
        problem,
    };
    if !suspect.is_empty() {
        // Integers only, so the list is safe to inline.
        let ids = suspect
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "SELECT w.sequence, w.stockpile_id, w.balance_g, w.entries, w.max_sequence,
               b.balance_g AS stored_balance_g, b.entries AS stored_entries,
               b.max_sequence AS stored_max_sequence
             FROM (SELECT stockpile_id, occurred_at, sequence,
                     CAST(SUM(quantity_g) OVER w AS BIGINT) AS balance_g,
                     CAST(COUNT(*) OVER w AS BIGINT) AS entries,
                     MAX(sequence) OVER w AS max_sequence
                   FROM ledger_entries
                   WHERE stockpile_id IN ({ids})
                   WINDOW w AS (PARTITION BY stockpile_id ORDER BY occurred_at, sequence
                                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) w
             LEFT JOIN ledger_balances b ON b.stockpile_id = w.stockpile_id
               AND b.occurred_at = w.occurred_at AND b.sequence = w.sequence
             WHERE b.sequence IS NULL OR b.balance_g <> w.balance_g
               OR b.entries <> w.entries OR b.max_sequence <> w.max_sequence
             ORDER BY w.sequence LIMIT 1"
        );
        let bad: Option<BalancesMismatch> = diesel::sql_query(sql).get_result(conn).optional()?;
        if let Some(m) = bad {
            let problem = match (m.stored_balance_g, m.stored_entries, m.stored_max_sequence) {
                (Some(b), Some(n), Some(s)) => format!(
                    "ledger_balances says {b} g, {n} entries, newest sequence {s} as of this entry; its stockpile's entries up to it in occurred_at order give {} g, {} entries, newest sequence {}",
                    m.balance_g, m.entries, m.max_sequence
                ),
                _ => "ledger_balances holds no row for the entry".to_string(),
            };
            return Ok(Some(finding(
                Some(m.sequence),
                Some(m.stockpile_id),
                problem,
            )));
        }
    }
    let rows = check.rows;
    if rows != entries {
        // Every entry has its row, so the extra rows match none.
        let stray: Option<StrayRow> = diesel::sql_query(
            "SELECT b.sequence, b.stockpile_id FROM ledger_balances b
             WHERE NOT EXISTS (SELECT 1 FROM ledger_entries e WHERE e.sequence = b.sequence
               AND e.stockpile_id = b.stockpile_id AND e.occurred_at = b.occurred_at)
             ORDER BY b.sequence LIMIT 1",
        )
        .get_result(conn)
        .optional()?;
        return Ok(Some(finding(
            stray.as_ref().map(|r| r.sequence),
            stray.as_ref().map(|r| r.stockpile_id),
            format!(
                "ledger_balances holds {rows} rows for {entries} entries; the first row of no entry is named"
            ),
        )));
    }
    // Every entry has its own row and no row is stray, so the rows are the
    // ones the entries imply and their sums cannot differ; if they do anyway,
    // say so rather than pass.
    if let Some(id) = check.differ.iter().next() {
        return Ok(Some(finding(
            None,
            Some(*id),
            "the stockpile's ledger_balances rows differ from what its entries imply (their keyed hash sums differ), though no single row could be named".into(),
        )));
    }
    Ok(None)
}

#[derive(QueryableByName)]
struct StrayRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    sequence: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    stockpile_id: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_timestamps_parse_as_diesel_parses_them() {
        use chrono::NaiveDateTime;
        for text in [
            "2026-11-29 19:35:48.243413",
            "2026-11-29 19:35:48",
            "2026-11-29 19:35:48.1",
            "2026-11-29 19:35:48.123456789",
            "2024-02-29 00:00:00.000001",
        ] {
            let want = NaiveDateTime::parse_from_str(text, "%F %T%.f").unwrap();
            assert_eq!(parse_sqlite_timestamp(text), Some(want), "{text}");
        }
        // Left to diesel's parser: other shapes, a leap second, bad dates.
        for text in [
            "2026-11-29T19:35:48",
            "2026-11-29 19:35:48.",
            "2026-11-29 19:35:60",
            "2026-02-30 00:00:00",
            "2026-11-29 19:35:48+01:00",
            "2026-11-29 19:35:48.1234567890",
            "20261-11-29 19:35:48",
        ] {
            assert_eq!(parse_sqlite_timestamp(text), None, "{text}");
        }
    }

    /// SQLite compares the texts; (instant, text length) must order and tell
    /// them apart exactly as it does.
    #[test]
    fn instant_and_text_length_order_as_sqlite_compares_the_texts() {
        let texts = [
            "2026-11-29 19:35:48.5",
            "2026-11-29 19:35:48",
            "2026-11-29 19:35:48.10",
            "2026-11-29 19:35:49",
            "2026-11-29 19:35:48.0",
            "2026-11-29 19:35:48.000001",
            "2026-11-29 19:35:48.1",
            "2026-11-29 19:35:48.123",
            "2026-11-29 19:35:48.000",
            "2026-11-28 23:59:59.999999999",
        ];
        let key = |t: &str| (parse_sqlite_timestamp(t).unwrap(), t.len() as u8);
        for a in texts {
            for b in texts {
                assert_eq!(a.cmp(b), key(a).cmp(&key(b)), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn row_hashes_sum_in_any_order_and_are_keyed_afresh() {
        let at = FastTs {
            at: parse_sqlite_timestamp("2026-11-29 19:35:48.243413").unwrap(),
            text_len: 26,
        };
        let h = RowHasher::new();
        let (a, b) = (h.row(1, at, 1, [10, 1, 1]), h.row(1, at, 2, [30, 2, 2]));
        // A multiset of rows: the sum is the same in any order, and moves
        // when a row is dropped or counted twice.
        let rows: Vec<u128> = (1..=6)
            .map(|s| h.row(1 + s % 2, at, s, [10 * s, s, s]))
            .collect();
        let sum = |rows: &[u128]| rows.iter().fold(0u128, |acc, r| acc.wrapping_add(*r));
        let total = sum(&rows);
        let mut reversed = rows.clone();
        reversed.reverse();
        assert_eq!(sum(&reversed), total, "reversed");
        let mut rotated = rows.clone();
        rotated.rotate_left(2);
        assert_eq!(sum(&rotated), total, "rotated");
        for i in 0..rows.len() {
            let mut dropped = rows.clone();
            dropped.remove(i);
            assert_ne!(sum(&dropped), total, "row {i} dropped");
            let mut doubled = rows.clone();
            doubled.push(rows[i]);
            assert_ne!(sum(&doubled), total, "row {i} twice");
            // Dropped and another doubled: the row count stays.
            let mut swapped = dropped.clone();
            swapped.push(rows[(i + 1) % rows.len()]);
            assert_ne!(
                sum(&swapped),
                total,
                "row {i} replaced by a copy of another"
            );
        }
        assert_ne!(a.wrapping_add(a), 0, "a row twice does not cancel out");
        assert_ne!(a, h.row(1, at, 1, [10, 1, 2]));
        assert_ne!(a, h.row(2, at, 1, [10, 1, 1]));
        let longer = FastTs { text_len: 27, ..at };
        assert_ne!(a, h.row(1, longer, 1, [10, 1, 1]), "another text");
        // Swapping two rows' balances changes the sum.
        assert_ne!(
            a.wrapping_add(b),
            h.row(1, at, 1, [30, 1, 1])
                .wrapping_add(h.row(1, at, 2, [10, 2, 2]))
        );
        assert_ne!(a, RowHasher::new().row(1, at, 1, [10, 1, 1]), "a new key");
    }
}
