//! PostgreSQL's binary COPY stream (`COPY … TO STDOUT (FORMAT binary)`),
//! framed and decoded by hand.
//!
//! Reading a large table with `SELECT` costs the client more than the server:
//! libpq builds a `PGresult` of every row (`pqParseInput3`, `pqRowProcessor`,
//! `pqResultAlloc`) and diesel then decodes it row by row. A binary COPY
//! sends the same values in the same binary send format, as one stream the
//! client reads as it arrives, while the server goes on producing.
//!
//! The format (PostgreSQL's `COPY` documentation, "Binary Format"): the
//! 11-byte signature `PGCOPY\n\377\r\n\0`, a 32-bit flags field (bit 16: OIDs
//! included; bits 17–31: must-understand flags), a 32-bit header extension
//! length and the extension; then each tuple as a 16-bit field count followed
//! by each field as a 32-bit length (-1 for NULL) and that many bytes; a field
//! count of -1 ends the stream. All integers big-endian. Values are each type's
//! binary send format: `int8` 8 bytes, `text` the UTF-8 bytes (the connection's
//! client encoding, UTF8 on diesel's connections), `timestamp` an `int8` of
//! microseconds since 2000-01-01 00:00:00.
//!
//! Every malformed stream (truncated, a wrong field count or length, a NULL
//! where none is allowed, text not UTF-8) is an error naming the column, never
//! a panic.

use std::io::{BufRead, Read};

use diesel::result::Error;
use diesel::QueryResult;

/// The binary COPY signature.
pub const SIGNATURE: [u8; 11] = *b"PGCOPY\n\xff\r\n\0";

fn malformed(problem: String) -> Error {
    Error::DeserializationError(format!("binary COPY stream: {problem}").into())
}

fn io_error(e: std::io::Error, at: &str) -> Error {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        malformed(format!("the stream ends inside {at} (truncated)"))
    } else {
        malformed(format!("reading {at}: {e}"))
    }
}

/// Reads the tuples of one binary COPY stream, field by field, in the order
/// of the COPY's columns.
pub struct BinaryCopy<R> {
    r: R,
    columns: usize,
    /// Fields of the current tuple read so far.
    field: usize,
    /// Tuples started, for error messages.
    tuples: u64,
    /// The current text field's bytes.
    scratch: Vec<u8>,
    /// 2000-01-01 00:00:00.
    epoch: chrono::NaiveDateTime,
}

impl<R: BufRead> BinaryCopy<R> {
    /// Reads and checks the header of a stream whose tuples have `columns`
    /// fields each.
    pub fn new(mut r: R, columns: usize) -> QueryResult<Self> {
        let mut head = [0u8; 19];
        r.read_exact(&mut head)
            .map_err(|e| io_error(e, "the header"))?;
        if head[..11] != SIGNATURE {
            return Err(malformed("no PGCOPY signature".into()));
        }
        let flags = u32::from_be_bytes(head[11..15].try_into().expect("4 bytes"));
        if flags & (1 << 16) != 0 {
            return Err(malformed("the stream includes OIDs".into()));
        }
        if flags >> 17 != 0 {
            return Err(malformed(format!("unknown critical flags {flags:#x}")));
        }
        let extension = i32::from_be_bytes(head[15..19].try_into().expect("4 bytes"));
        let extension = u64::try_from(extension)
            .map_err(|_| malformed(format!("header extension length {extension}")))?;
        let skipped = std::io::copy(&mut (&mut r).take(extension), &mut std::io::sink())
            .map_err(|e| io_error(e, "the header extension"))?;
        if skipped != extension {
            return Err(malformed(
                "the stream ends inside the header extension (truncated)".into(),
            ));
        }
        Ok(Self {
            r,
            columns,
            field: columns,
            tuples: 0,
            scratch: Vec::new(),
            epoch: pg_epoch(),
        })
    }

    /// The next `N` bytes: from the reader's buffer when they are all in it
    /// (a tuple normally arrives whole, one COPY message each), else read
    /// across its refills.
    fn array<const N: usize>(&mut self, at: &str) -> QueryResult<[u8; N]> {
        let buf = self.r.fill_buf().map_err(|e| io_error(e, at))?;
        if let Some(b) = buf.get(..N) {
            let b: [u8; N] = b.try_into().expect("N bytes");
            self.r.consume(N);
            return Ok(b);
        }
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).map_err(|e| io_error(e, at))?;
        Ok(b)
    }

    /// Starts the next tuple: `true` when there is one, `false` at the
    /// end-of-data marker. The previous tuple must have been read whole.
    pub fn next_tuple(&mut self) -> QueryResult<bool> {
        if self.field != self.columns {
            return Err(malformed(format!(
                "tuple {} read as {} fields of {}",
                self.tuples, self.field, self.columns
            )));
        }
        let count = self.array::<2>("a tuple's field count (no end-of-data marker)")?;
        match i16::from_be_bytes(count) {
            -1 => Ok(false),
            n if n >= 0 && n as usize == self.columns => {
                self.tuples += 1;
                self.field = 0;
                Ok(true)
            }
            n => Err(malformed(format!(
                "tuple {} has {n} fields, not {}",
                self.tuples + 1,
                self.columns
            ))),
        }
    }

    /// The next field's length, `None` for NULL.
    fn length(&mut self, column: &str) -> QueryResult<Option<usize>> {
        if self.field >= self.columns {
            return Err(malformed(format!(
                "column {column} read past the tuple's {} fields",
                self.columns
            )));
        }
        let len = self.array::<4>(column)?;
        self.field += 1;
        match i32::from_be_bytes(len) {
            -1 => Ok(None),
            n if n >= 0 => Ok(Some(n as usize)),
            n => Err(malformed(format!("column {column} has length {n}"))),
        }
    }

    fn not_null<T>(&self, value: Option<T>, column: &str) -> QueryResult<T> {
        value.ok_or_else(|| {
            malformed(format!(
                "column {column} of tuple {} is NULL, which it cannot be",
                self.tuples
            ))
        })
    }

    /// An `int8` (`BIGINT`), or `None` for NULL.
    pub fn opt_i64(&mut self, column: &str) -> QueryResult<Option<i64>> {
        let Some(len) = self.length(column)? else {
            return Ok(None);
        };
        if len != 8 {
            return Err(malformed(format!(
                "column {column} has {len} bytes, not the 8 of a BIGINT"
            )));
        }
        let b = self.array::<8>(column)?;
        Ok(Some(i64::from_be_bytes(b)))
    }

    /// An `int8` that cannot be NULL.
    pub fn i64(&mut self, column: &str) -> QueryResult<i64> {
        let v = self.opt_i64(column)?;
        self.not_null(v, column)
    }

    /// A `timestamp` (without time zone), as diesel reads one: microseconds
    /// since 2000-01-01 00:00:00.
    pub fn timestamp(&mut self, column: &str) -> QueryResult<chrono::NaiveDateTime> {
        let v = self.opt_i64(column)?;
        let micros = self.not_null(v, column)?;
        self.epoch
            .checked_add_signed(chrono::Duration::microseconds(micros))
            .ok_or_else(|| {
                malformed(format!(
                    "column {column}: timestamp {micros} µs after 2000 is out of range"
                ))
            })
    }

    /// A `text`, or `None` for NULL; the `&str` lasts until the next field.
    pub fn opt_text(&mut self, column: &str) -> QueryResult<Option<&str>> {
        let Some(len) = self.length(column)? else {
            return Ok(None);
        };
        self.scratch.clear();
        let buf = self.r.fill_buf().map_err(|e| io_error(e, column))?;
        if let Some(b) = buf.get(..len) {
            self.scratch.extend_from_slice(b);
            self.r.consume(len);
            return std::str::from_utf8(&self.scratch)
                .map(Some)
                .map_err(|e| malformed(format!("column {column} is not UTF-8: {e}")));
        }
        // Through `take`, so a length from a corrupt stream allocates no more
        // than the bytes that actually arrive.
        let read = (&mut self.r)
            .take(len as u64)
            .read_to_end(&mut self.scratch)
            .map_err(|e| io_error(e, &format!("column {column}")))?;
        if read != len {
            return Err(malformed(format!(
                "the stream ends inside column {column} (truncated)"
            )));
        }
        std::str::from_utf8(&self.scratch)
            .map(Some)
            .map_err(|e| malformed(format!("column {column} is not UTF-8: {e}")))
    }

    /// A `text` that cannot be NULL.
    pub fn text(&mut self, column: &str) -> QueryResult<&str> {
        let tuple = self.tuples;
        match self.opt_text(column)? {
            Some(s) => Ok(s),
            None => Err(malformed(format!(
                "column {column} of tuple {tuple} is NULL, which it cannot be"
            ))),
        }
    }

    /// After the end-of-data marker: the stream must end there.
    pub fn finish(mut self) -> QueryResult<R> {
        let rest = self
            .r
            .fill_buf()
            .map_err(|e| io_error(e, "the end of the stream"))?
            .len();
        if rest != 0 {
            return Err(malformed(format!(
                "{rest} bytes after the end-of-data marker"
            )));
        }
        Ok(self.r)
    }

    /// The underlying reader, wherever the stream stands.
    pub fn into_inner(self) -> R {
        self.r
    }
}

/// 2000-01-01 00:00:00, where PostgreSQL's timestamps count from.
fn pg_epoch() -> chrono::NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
        .expect("a valid date")
        .and_hms_opt(0, 0, 0)
        .expect("a valid time")
}

/// Reads what is left of a COPY stream, so its connection can take the next
/// statement (after an error half-way through a stream, say).
pub fn drain(r: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let n = r.fill_buf()?.len();
        if n == 0 {
            return Ok(());
        }
        r.consume(n);
    }
}

thread_local! {
    /// The query of the `COPY (query) TO STDOUT` being sent ([`copy_query`]).
    static COPY_QUERY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The target `(query)` of a `COPY (query) TO STDOUT`. diesel's `copy_to`
/// takes a table or a list of its columns (`COPY table (columns)`: no WHERE,
/// no ORDER BY), and writes the target from a function without `self`, so the
/// query is handed over in a thread-local set just before on the same thread.
struct CopyQuery;

impl diesel::pg::CopyTarget for CopyQuery {
    // Unused by `load_raw`; the trait wants a table.
    type Table = crate::db::schema::ledger_head::table;
    type SqlType = diesel::sql_types::BigInt;

    fn walk_target(
        mut pass: diesel::query_builder::AstPass<'_, '_, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        COPY_QUERY.with(|q| {
            pass.push_sql("(");
            pass.push_sql(&q.borrow());
            pass.push_sql(")");
        });
        Ok(())
    }
}

/// Runs `COPY (query) TO STDOUT (FORMAT binary)` and returns the stream. The
/// query is sent as text (COPY takes no bind parameters): inline only values
/// that are safe to (integers). Once the stream is read to its end (or
/// [`drain`]ed), call [`end`] before the connection's next statement.
pub fn copy_query<'c>(
    conn: &'c mut diesel::PgConnection,
    query: &str,
) -> QueryResult<impl BufRead + 'c> {
    COPY_QUERY.with(|q| {
        let mut q = q.borrow_mut();
        q.clear();
        q.push_str(query);
    });
    diesel::copy_to(CopyQuery)
        .with_format(diesel::pg::CopyFormat::Binary)
        .load_raw(conn)
}

/// After a COPY's stream ended: libpq still holds the command's final result,
/// which diesel's COPY reader leaves uncollected, and then refuses the next
/// prepared statement ("another command is already in progress"). A simple
/// query (`PQexec`) collects it first.
pub fn end(conn: &mut diesel::PgConnection) -> QueryResult<()> {
    use diesel::connection::SimpleConnection;
    conn.batch_execute("SELECT 1")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream of tuples (each field `None` for NULL) with the standard
    /// header.
    fn stream(tuples: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend(0u32.to_be_bytes());
        out.extend(0i32.to_be_bytes());
        for t in tuples {
            out.extend((t.len() as i16).to_be_bytes());
            for f in t {
                match f {
                    Some(b) => {
                        out.extend((b.len() as i32).to_be_bytes());
                        out.extend(b);
                    }
                    None => out.extend((-1i32).to_be_bytes()),
                }
            }
        }
        out.extend((-1i16).to_be_bytes());
        out
    }

    fn row(seq: i64, micros: i64, text: Option<&str>) -> Vec<Option<Vec<u8>>> {
        vec![
            Some(seq.to_be_bytes().to_vec()),
            Some(micros.to_be_bytes().to_vec()),
            text.map(|t| t.as_bytes().to_vec()),
        ]
    }

    /// A reader that hands out `chunk` bytes at a time: tuples and fields
    /// straddle the reads, as they may over a socket.
    fn chunked(bytes: Vec<u8>, chunk: usize) -> impl BufRead {
        std::io::BufReader::with_capacity(chunk, std::io::Cursor::new(bytes))
    }

    type Row = (i64, chrono::NaiveDateTime, Option<String>);

    fn read_all(r: impl BufRead) -> QueryResult<Vec<Row>> {
        let mut c = BinaryCopy::new(r, 3)?;
        let mut rows = Vec::new();
        while c.next_tuple()? {
            let seq = c.i64("sequence")?;
            let at = c.timestamp("occurred_at")?;
            let note = c.opt_text("note")?.map(str::to_string);
            rows.push((seq, at, note));
        }
        c.finish()?;
        Ok(rows)
    }

    fn message(r: QueryResult<Vec<Row>>) -> String {
        match r {
            Err(Error::DeserializationError(e)) => e.to_string(),
            other => panic!("expected a deserialization error, got {other:?}"),
        }
    }

    #[test]
    fn tuples_read_back_in_any_chunking() {
        let bytes = stream(&[
            row(1, 0, Some("héllo")),
            row(2, 1_000_001, None),
            row(3, -1, Some("")),
        ]);
        let epoch = pg_epoch();
        let want = vec![
            (1, epoch, Some("héllo".to_string())),
            (2, epoch + chrono::Duration::microseconds(1_000_001), None),
            (
                3,
                epoch - chrono::Duration::microseconds(1),
                Some(String::new()),
            ),
        ];
        for chunk in [1, 2, 3, 7, 64, 4096] {
            assert_eq!(
                read_all(chunked(bytes.clone(), chunk)).unwrap(),
                want,
                "{chunk}"
            );
        }
        // A header extension is skipped.
        let mut ext = SIGNATURE.to_vec();
        ext.extend(0u32.to_be_bytes());
        ext.extend(3i32.to_be_bytes());
        ext.extend(b"abc");
        ext.extend(&bytes[19..]);
        assert_eq!(read_all(chunked(ext, 5)).unwrap(), want);
    }

    #[test]
    fn timestamps_decode_as_diesel_decodes_them() {
        // 2026-11-29 19:35:48.243413, as PostgreSQL sends it.
        let at = chrono::NaiveDateTime::parse_from_str("2026-11-29 19:35:48.243413", "%F %T%.f")
            .unwrap();
        let micros = (at - pg_epoch()).num_microseconds().unwrap();
        let bytes = stream(&[row(1, micros, None)]);
        assert_eq!(read_all(chunked(bytes, 16)).unwrap()[0].1, at);
    }

    #[test]
    fn a_truncated_stream_is_an_error_not_a_panic() {
        let bytes = stream(&[row(1, 0, Some("some text")), row(2, 0, None)]);
        // Cut anywhere before the end-of-data marker's last byte.
        for cut in 0..bytes.len() {
            let m = message(read_all(chunked(bytes[..cut].to_vec(), 4)));
            assert!(
                m.contains("truncated") || m.contains("signature"),
                "cut at {cut}: {m}"
            );
        }
    }

    #[test]
    fn a_null_where_none_is_allowed_is_named() {
        let mut r = row(1, 0, None);
        r[1] = None;
        let m = message(read_all(chunked(stream(&[r]), 64)));
        assert!(m.contains("occurred_at") && m.contains("NULL"), "{m}");
        let mut c = BinaryCopy::new(chunked(stream(&[row(1, 0, None)]), 64), 3).unwrap();
        assert!(c.next_tuple().unwrap());
        c.i64("sequence").unwrap();
        c.i64("occurred_at").unwrap();
        let e = c.text("note").unwrap_err().to_string();
        assert!(e.contains("note") && e.contains("NULL"), "{e}");
    }

    #[test]
    fn malformed_streams_are_errors() {
        let good = stream(&[row(1, 0, Some("x"))]);
        // No signature.
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(message(read_all(chunked(bad, 64))).contains("signature"));
        // OIDs, or a critical flag.
        for flag in [1u32 << 16, 1 << 20] {
            let mut bad = good.clone();
            bad[11..15].copy_from_slice(&flag.to_be_bytes());
            message(read_all(chunked(bad, 64)));
        }
        // A tuple of another width.
        let m = message(read_all(chunked(
            stream(&[vec![Some(1i64.to_be_bytes().to_vec())]]),
            64,
        )));
        assert!(m.contains("1 fields, not 3"), "{m}");
        // A BIGINT of 4 bytes.
        let mut r = row(1, 0, None);
        r[0] = Some(1i32.to_be_bytes().to_vec());
        let m = message(read_all(chunked(stream(&[r]), 64)));
        assert!(m.contains("sequence has 4 bytes"), "{m}");
        // Text that is not UTF-8.
        let mut r = row(1, 0, None);
        r[2] = Some(vec![0xff, 0xfe]);
        assert!(message(read_all(chunked(stream(&[r]), 64))).contains("not UTF-8"));
        // A negative length other than -1.
        let mut bad = stream(&[row(1, 0, None)]);
        let at = 19 + 2 + 4 + 8 + 4 + 8;
        bad[at..at + 4].copy_from_slice(&(-2i32).to_be_bytes());
        assert!(message(read_all(chunked(bad, 64))).contains("length -2"));
        // A huge length from a corrupt stream allocates nothing up front.
        let mut bad = stream(&[row(1, 0, Some("x"))]);
        bad[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(message(read_all(chunked(bad, 64))).contains("truncated"));
        // Bytes after the end-of-data marker.
        let mut bad = good.clone();
        bad.push(0);
        assert!(message(read_all(chunked(bad, 64))).contains("after the end-of-data"));
        // A timestamp chrono cannot hold.
        let m = message(read_all(chunked(stream(&[row(1, i64::MAX, None)]), 64)));
        assert!(m.contains("out of range"), "{m}");
    }

    #[test]
    fn a_tuple_must_be_read_whole_before_the_next() {
        let mut c = BinaryCopy::new(chunked(stream(&[row(1, 0, None)]), 64), 3).unwrap();
        assert!(c.next_tuple().unwrap());
        c.i64("sequence").unwrap();
        assert!(c.next_tuple().is_err());
        let mut c = BinaryCopy::new(chunked(stream(&[row(1, 0, None)]), 64), 3).unwrap();
        assert!(c.next_tuple().unwrap());
        c.i64("a").unwrap();
        c.i64("b").unwrap();
        c.opt_text("c").unwrap();
        assert!(c.opt_i64("d").is_err(), "past the tuple's fields");
    }
}
