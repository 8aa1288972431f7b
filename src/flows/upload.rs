//! Reading an import-flow upload (CSV or a JSON array) as it streams in:
//! every row is parsed and validated on arrival and, while the upload is
//! still clean, written in normal form to a spool file. Nothing touches the
//! database here, so a slow client never holds the write lock and a bad file
//! never starts a transaction; `repo::ingest` then reads the spool back in
//! chunks inside one write transaction.
//!
//! The body is never held whole: it arrives in chunks over a bounded channel
//! and one row is held at a time. The only per-row state is a 24-byte entry
//! (64-bit digests of the row's key and content, its index) to find rows
//! repeated within the upload: about 50 bytes a row with the map's slack.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom};

use actix_web::web::Bytes;
use chrono::NaiveDate;
use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::Receiver;

use super::model::{self, FlowRow, RawRow, COLUMNS};
use crate::db::types::Grams;
use crate::elements::model::{ElementSymbol, Form};
use crate::error::{ApiError, ApiResult, FieldError};

/// Field errors listed in one refusal; beyond it a last entry says how many
/// more there were.
pub const MAX_LISTED_ERRORS: usize = 1000;

/// What the request body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

/// Why the body stopped arriving.
#[derive(Debug)]
pub enum Fault {
    /// Past the route's body limit (bytes).
    TooLarge(usize),
    /// The client's connection failed mid-body.
    Read(String),
}

/// A chunk of the body, or why no more will come.
pub type Chunk = Result<Bytes, Fault>;

/// A validated upload, spooled and ready to ingest.
#[derive(Debug)]
pub struct Upload {
    pub spool: Spool,
    /// Distinct rows spooled (repeats of an identical row counted once).
    pub rows: u64,
    /// Rows that repeated an earlier identical row of the same upload.
    pub repeated: u64,
    /// SHA-256 of the body as received, for the Idempotency-Key fingerprint.
    pub body_sha256: String,
}

/// Validated rows in normal form, in a file deleted as soon as it was made
/// (so it vanishes with the handle, whatever happens to the request).
#[derive(Debug)]
pub struct Spool {
    file: File,
}

impl Spool {
    fn create() -> io::Result<(Spool, csv::Writer<BufWriter<File>>)> {
        let path = std::env::temp_dir().join(format!(
            "reserve-import-flows-{}.spool",
            uuid::Uuid::new_v4().simple()
        ));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        std::fs::remove_file(&path)?;
        let writer = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(BufWriter::new(file.try_clone()?));
        Ok((Spool { file }, writer))
    }

    /// The spooled rows with their indexes, in upload order.
    pub fn rows(mut self) -> ApiResult<impl Iterator<Item = ApiResult<(u64, FlowRow)>>> {
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(ApiError::internal)?;
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(BufReader::new(self.file));
        Ok(reader
            .into_records()
            .map(|r| r.map_err(ApiError::internal).and_then(|r| read_row(&r))))
    }
}

fn write_row(w: &mut csv::Writer<BufWriter<File>>, index: u64, row: &FlowRow) -> io::Result<()> {
    let [element, form, origin, hs, start, end, grams, source, external_id] = row.fields();
    w.write_record([
        index.to_string(),
        element,
        form,
        origin,
        hs,
        start,
        end,
        grams,
        source,
        external_id,
    ])
    .map_err(io::Error::other)
}

fn read_row(r: &csv::StringRecord) -> ApiResult<(u64, FlowRow)> {
    let bad = || ApiError::internal(anyhow::anyhow!("corrupt import-flow spool record"));
    let get = |i: usize| r.get(i).ok_or_else(bad);
    let date = |s: &str| s.parse::<NaiveDate>().map_err(|_| bad());
    Ok((
        get(0)?.parse().map_err(|_| bad())?,
        FlowRow {
            element: ElementSymbol::parse(get(1)?).map_err(|_| bad())?,
            form: Form::parse(get(2)?).map_err(|_| bad())?,
            origin_country: get(3)?.to_string(),
            hs_code: get(4)?.to_string(),
            period_start: date(get(5)?)?,
            period_end: date(get(6)?)?,
            quantity: Grams(get(7)?.parse().map_err(|_| bad())?),
            source: get(8)?.to_string(),
            external_id: get(9)?.to_string(),
        },
    ))
}

/// Reads the body from `chunks` (on a blocking thread), validates every row
/// and spools the clean ones. Refuses the whole upload with every bad row
/// named (422), 413 past the size limit, 400 for a body that is not CSV or
/// JSON at all.
pub fn read(chunks: Receiver<Chunk>, format: Format, today: NaiveDate) -> ApiResult<Upload> {
    let mut body = ChannelReader {
        chunks,
        current: Bytes::new(),
        hasher: Sha256::new(),
        fault: None,
    };
    let (spool, writer) = Spool::create().map_err(ApiError::internal)?;
    let mut check = Checker {
        today,
        writer,
        seen: HashMap::new(),
        rows: 0,
        repeated: 0,
        errors: Vec::new(),
        unlisted: 0,
        io_error: None,
    };
    let parsed = match format {
        Format::Csv => read_csv(&mut body, &mut check),
        Format::Json => read_json(&mut body, &mut check),
    };
    // Drain what the parser left (nothing for well-formed bodies) so the
    // fingerprint covers the whole body and a late fault is seen.
    let _ = io::copy(&mut body, &mut io::sink());
    match body.fault.take() {
        Some(Fault::TooLarge(limit)) => return Err(ApiError::PayloadTooLarge(limit)),
        Some(Fault::Read(e)) => {
            return Err(ApiError::BadRequest(format!(
                "could not read the body: {e}"
            )))
        }
        None => {}
    }
    parsed?;
    if let Some(e) = check.io_error.take() {
        return Err(ApiError::internal(e));
    }
    if !check.errors.is_empty() {
        let mut errors = check.errors;
        if check.unlisted > 0 {
            errors.push(FieldError::new(
                "rows",
                format!(
                    "{} more errors not listed (the first {MAX_LISTED_ERRORS} are)",
                    check.unlisted
                ),
            ));
        }
        return Err(ApiError::Validation(errors));
    }
    check.writer.flush().map_err(ApiError::internal)?;
    Ok(Upload {
        spool,
        rows: check.rows,
        repeated: check.repeated,
        body_sha256: hex::encode(body.hasher.finalize()),
    })
}

/// The body as a blocking `Read` over the channel the handler feeds.
struct ChannelReader {
    chunks: Receiver<Chunk>,
    current: Bytes,
    hasher: Sha256,
    fault: Option<Fault>,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.fault.is_some() {
                return Err(io::Error::other("the body could not be read"));
            }
            match self.chunks.blocking_recv() {
                None => return Ok(0),
                Some(Ok(bytes)) => {
                    self.hasher.update(&bytes);
                    self.current = bytes;
                }
                Some(Err(fault)) => self.fault = Some(fault),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Per-row validation state of one upload.
struct Checker {
    today: NaiveDate,
    writer: csv::Writer<BufWriter<File>>,
    /// Key digest → (content digest, index) of every distinct row so far.
    /// 64 bits each: two distinct keys of a million-row upload share a
    /// digest with odds of about 3 in 10^8, and then the upload is refused
    /// (a changed repeat) or a row skipped only if their contents' digests
    /// collide too.
    seen: HashMap<u64, (u64, u32)>,
    rows: u64,
    repeated: u64,
    errors: Vec<FieldError>,
    unlisted: usize,
    io_error: Option<io::Error>,
}

impl Checker {
    fn refuse(&mut self, errors: impl IntoIterator<Item = FieldError>) {
        for e in errors {
            if self.errors.len() < MAX_LISTED_ERRORS {
                self.errors.push(e);
            } else {
                self.unlisted += 1;
            }
        }
    }

    /// Validates row `index`; `line` (CSV) is added to the messages.
    fn row(&mut self, index: u64, raw: &RawRow, line: Option<u64>) {
        let prefix = format!("rows[{index}].");
        let at = |mut e: FieldError| {
            if let Some(line) = line {
                e.message = format!("{} (CSV line {line})", e.message);
            }
            e
        };
        let row = match model::validate(raw, &prefix, self.today) {
            Ok(row) => row,
            Err(errors) => return self.refuse(errors.into_iter().map(at)),
        };
        let content = row.content_digest();
        let key = row.key_digest();
        match self.seen.get(&key) {
            Some((earlier, _)) if *earlier == content => {
                self.repeated += 1;
                return;
            }
            Some((_, first)) => {
                let e = FieldError::new(
                    format!("{prefix}external_id"),
                    format!(
                        "rows[{first}] and rows[{index}] share source {:?} and external_id {:?} \
                         but differ in content; one upload may repeat a row only unchanged",
                        row.source, row.external_id
                    ),
                );
                return self.refuse([at(e)]);
            }
            None => {}
        }
        self.seen.insert(key, (content, index as u32));
        self.rows += 1;
        // Once the upload is refused, the spool is never read: stop writing.
        if self.errors.is_empty() && self.io_error.is_none() {
            if let Err(e) = write_row(&mut self.writer, index, &row) {
                self.io_error = Some(e);
            }
        }
    }
}

fn read_csv(body: &mut ChannelReader, check: &mut Checker) -> ApiResult<()> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(body);
    let mut record = csv::ByteRecord::new();
    let fault = |e: csv::Error| match e.kind() {
        csv::ErrorKind::Io(_) => ApiError::BadRequest("the body could not be read".into()),
        _ => ApiError::BadRequest(format!("malformed CSV: {e}")),
    };
    let header_wanted = COLUMNS.join(",");
    if !reader.read_byte_record(&mut record).map_err(fault)? {
        return Err(ApiError::field(
            "header",
            format!("the CSV is empty: its first line must be the header {header_wanted}"),
        ));
    }
    let header: Vec<String> = record
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let f = String::from_utf8_lossy(f);
            // Spreadsheets save UTF-8 with a byte-order mark.
            if i == 0 {
                f.trim_start_matches('\u{feff}').to_string()
            } else {
                f.to_string()
            }
        })
        .collect();
    if header != COLUMNS {
        return Err(ApiError::field(
            "header",
            format!(
                "the first line must be exactly {header_wanted}; got {}",
                header.join(",")
            ),
        ));
    }
    let mut index = 0u64;
    while reader.read_byte_record(&mut record).map_err(fault)? {
        let line = record.position().map(|p| p.line());
        if record.len() != COLUMNS.len() {
            let e = FieldError::new(
                format!("rows[{index}]"),
                format!(
                    "has {} fields where the header has {} (CSV line {})",
                    record.len(),
                    COLUMNS.len(),
                    line.unwrap_or(0)
                ),
            );
            check.refuse([e]);
        } else {
            let mut raw: RawRow = Default::default();
            let mut utf8_errors = Vec::new();
            for (i, field) in record.iter().enumerate() {
                match std::str::from_utf8(field) {
                    Ok(s) => raw[i] = s.to_string(),
                    Err(_) => utf8_errors.push(FieldError::new(
                        format!("rows[{index}].{}", COLUMNS[i]),
                        format!("is not valid UTF-8 (CSV line {})", line.unwrap_or(0)),
                    )),
                }
            }
            if utf8_errors.is_empty() {
                check.row(index, &raw, line);
            } else {
                check.refuse(utf8_errors);
            }
        }
        index += 1;
    }
    Ok(())
}

fn read_json(body: &mut ChannelReader, check: &mut Checker) -> ApiResult<()> {
    let mut de = serde_json::Deserializer::from_reader(BufReader::with_capacity(64 * 1024, body));
    let outcome = JsonRows(check).deserialize(&mut de).and_then(|()| de.end());
    outcome.map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::field("body", "must be a JSON array of flow rows"),
            Category::Eof if e.line() == 1 && e.column() == 0 => {
                ApiError::BadRequest("the request body is empty; send a JSON array".into())
            }
            _ => ApiError::BadRequest(format!("malformed JSON: {e}")),
        }
    })
}

/// Visits the top-level array one element at a time, so a large array is
/// never held whole.
struct JsonRows<'a>(&'a mut Checker);

impl<'de> DeserializeSeed<'de> for JsonRows<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for JsonRows<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of flow rows")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0u64;
        while let Some(value) = seq.next_element::<serde_json::Value>()? {
            match json_row(index, value) {
                Ok(raw) => self.0.row(index, &raw, None),
                Err(errors) => self.0.refuse(errors),
            }
            index += 1;
        }
        Ok(())
    }
}

/// The nine string fields of one JSON row; every unknown, missing or
/// non-string field is named.
fn json_row(index: u64, value: serde_json::Value) -> Result<RawRow, Vec<FieldError>> {
    let serde_json::Value::Object(mut map) = value else {
        return Err(vec![FieldError::new(
            format!("rows[{index}]"),
            format!("must be an object with the keys {}", COLUMNS.join(", ")),
        )]);
    };
    let mut errors = Vec::new();
    let mut raw: RawRow = Default::default();
    for (i, name) in COLUMNS.iter().enumerate() {
        let field = format!("rows[{index}].{name}");
        match map.remove(*name) {
            Some(serde_json::Value::String(s)) => raw[i] = s,
            None => errors.push(FieldError::new(field, "is required")),
            Some(serde_json::Value::Number(_)) if *name == "quantity_kg" => {
                errors.push(FieldError::new(
                    field,
                    "send kilograms as a string such as \"12.500\", not a JSON number: \
                     quantities are exact decimals",
                ))
            }
            Some(other) => errors.push(FieldError::new(
                field,
                format!("must be a string, not {}", json_type(&other)),
            )),
        }
    }
    for unknown in map.keys() {
        errors.push(FieldError::new(
            format!("rows[{index}].{unknown}"),
            format!("unknown field; a row has exactly {}", COLUMNS.join(", ")),
        ));
    }
    if errors.is_empty() {
        Ok(raw)
    } else {
        Err(errors)
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()
    }

    /// Runs `read` over `body` sent in `chunk`-byte pieces.
    fn read_all(body: &str, format: Format, chunk: usize) -> ApiResult<Upload> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let bytes = body.as_bytes().to_vec();
        let feeder = std::thread::spawn(move || {
            for piece in bytes.chunks(chunk.max(1)) {
                if tx.blocking_send(Ok(Bytes::copy_from_slice(piece))).is_err() {
                    break;
                }
            }
        });
        let out = read(rx, format, today());
        feeder.join().unwrap();
        out
    }

    fn fields(e: ApiError) -> Vec<String> {
        match e {
            ApiError::Validation(v) => v.into_iter().map(|e| e.field).collect(),
            other => panic!("expected 422, got {other:?}"),
        }
    }

    const HEADER: &str =
        "element,form,origin_country,hs_code,period_start,period_end,quantity_kg,source,external_id\n";

    #[test]
    fn csv_rows_split_across_chunks_spool_in_order() {
        let body = format!(
            "{HEADER}Nd,oxide,CN,2846.90,2026-01-01,2026-01-31,100,S,a\n\
             Dy,metal,MM,280530,2026-02-01,2026-02-28,\"2.5\",S,\"b,1\"\n\
             Nd,oxide,CN,2846.90,2026-01-01,2026-01-31,100.000,S,a\n"
        );
        for chunk in [1, 7, 4096] {
            let up = read_all(&body, Format::Csv, chunk).unwrap();
            assert_eq!((up.rows, up.repeated), (2, 1));
            let rows: Vec<(u64, FlowRow)> = up.spool.rows().unwrap().map(|r| r.unwrap()).collect();
            assert_eq!(rows[0].0, 0);
            assert_eq!(rows[1].0, 1);
            assert_eq!(rows[1].1.external_id, "b,1");
            assert_eq!(rows[1].1.hs_code, "2805.30");
            assert_eq!(rows[1].1.quantity, Grams(2_500));
        }
    }

    #[test]
    fn every_bad_row_is_listed_and_repeats_must_match() {
        let body = format!(
            "\u{feff}{HEADER}Nd,oxide,CN,2846.90,2026-01-01,2026-01-31,100,S,a\n\
             Nd,oxide,XX,2846.90,2026-01-01,2026-01-31,100,S,b\n\
             Nd,oxide,CN,2846.90,2026-01-01,2026-01-31,101,S,a\n\
             Nd,oxide,CN\n"
        );
        let e = read_all(&body, Format::Csv, 5).unwrap_err();
        assert_eq!(
            fields(e),
            ["rows[1].origin_country", "rows[2].external_id", "rows[3]"]
        );
    }

    #[test]
    fn a_wrong_header_is_refused() {
        let e = read_all("element,form\nNd,oxide\n", Format::Csv, 64).unwrap_err();
        assert_eq!(fields(e), ["header"]);
        let e = read_all("", Format::Csv, 64).unwrap_err();
        assert_eq!(fields(e), ["header"]);
    }

    #[test]
    fn errors_are_capped_with_a_count_of_the_rest() {
        let mut body = HEADER.to_string();
        for i in 0..1200 {
            body.push_str(&format!(
                "Fe,oxide,CN,2846.90,2026-01-01,2026-01-31,1,S,{i}\n"
            ));
        }
        let f = fields(read_all(&body, Format::Csv, 8192).unwrap_err());
        assert_eq!(f.len(), MAX_LISTED_ERRORS + 1);
        assert_eq!(f.last().unwrap(), "rows");
    }

    #[test]
    fn json_rows_name_unknown_missing_and_mistyped_fields() {
        let body = r#"[
          {"element":"Nd","form":"oxide","origin_country":"CN","hs_code":"2846.90",
           "period_start":"2026-01-01","period_end":"2026-01-31","quantity_kg":"5",
           "source":"S","external_id":"a"},
          {"element":"Nd","form":"oxide","origin_country":"CN","hs_code":"2846.90",
           "period_start":"2026-01-01","period_end":"2026-01-31","quantity_kg":5,
           "source":"S","colour":"red"},
          7
        ]"#;
        let e = read_all(body, Format::Json, 3).unwrap_err();
        assert_eq!(
            fields(e),
            [
                "rows[1].quantity_kg",
                "rows[1].external_id",
                "rows[1].colour",
                "rows[2]"
            ]
        );
        let first = &body[..body.find("},").unwrap() + 1];
        let ok = read_all(&format!("{first}]"), Format::Json, 3).unwrap();
        assert_eq!(ok.rows, 1);
    }

    #[test]
    fn json_that_is_not_an_array_or_not_json_is_refused() {
        assert!(matches!(
            read_all(r#"{"a":1}"#, Format::Json, 64),
            Err(ApiError::Validation(_))
        ));
        assert!(matches!(
            read_all("[{", Format::Json, 64),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            read_all("[] []", Format::Json, 64),
            Err(ApiError::BadRequest(_))
        ));
        assert_eq!(read_all(" [ ] ", Format::Json, 1).unwrap().rows, 0);
    }

    #[test]
    fn a_fault_from_the_feeder_wins() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.blocking_send(Ok(Bytes::from_static(HEADER.as_bytes())))
            .unwrap();
        tx.blocking_send(Err(Fault::TooLarge(10))).unwrap();
        drop(tx);
        assert!(matches!(
            read(rx, Format::Csv, today()),
            Err(ApiError::PayloadTooLarge(10))
        ));
    }
}
