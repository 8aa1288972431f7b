//! One import-flow row as a value: what a row of an upload must hold, the
//! normal forms stored (HS codes, countries, kg), and the content hash that
//! tells a resent row from a changed one. No HTTP, no SQL.

use chrono::NaiveDate;
use sha2::{Digest, Sha256};

use super::countries;
use crate::db::types::Grams;
use crate::elements::model::{ElementSymbol, Form};
use crate::error::FieldError;

/// The columns of an upload, in the order a CSV header must list them.
pub const COLUMNS: [&str; 9] = [
    "element",
    "form",
    "origin_country",
    "hs_code",
    "period_start",
    "period_end",
    "quantity_kg",
    "source",
    "external_id",
];

/// Longest `source` and `external_id`, in characters after trimming.
pub const MAX_SOURCE_CHARS: usize = 100;
pub const MAX_EXTERNAL_ID_CHARS: usize = 200;

/// A row as sent: the nine columns as text, in `COLUMNS` order.
pub type RawRow = [String; 9];

/// A validated row in its stored normal form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRow {
    pub element: ElementSymbol,
    pub form: Form,
    pub origin_country: String,
    /// Normal form, see [`parse_hs_code`].
    pub hs_code: String,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub quantity: Grams,
    pub source: String,
    pub external_id: String,
}

/// The rare-earth subheadings of the Harmonized System an import flow may
/// name: rare-earth metals (2805.30), cerium compounds (2846.10), other
/// rare-earth compounds (2846.90), permanent magnets of metal (8505.11).
pub const HS_SUBHEADINGS: [&str; 4] = ["280530", "284610", "284690", "850511"];

/// Parses an HS code of a rare-earth subheading, 6 digits or a national
/// extension to 8 or 10, written in groups of 4, 2, 2 and 2 digits with an
/// optional dot between groups: `2805.30`, `280530`, `2805.30.00`,
/// `28053000`, `2846.90.8000`, `2846.90.80.00`, `2846908000`.
///
/// Stored in one normal form per length, the US HTS spelling: `2805.30`,
/// `2805.30.00`, `2846.90.8000`. So every spelling of one code is one code.
pub fn parse_hs_code(s: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "must be an HS code of a rare-earth subheading (2805.30, 2846.10, 2846.90 or 8505.11), \
             6 digits or a national extension to 8 or 10, e.g. \"2846.90\", \"2846.90.80\", \
             \"2846.90.8000\" or \"2846908000\"; got {s:?}"
        )
    };
    // Groups of 4, 2, 2, 2 digits; a dot may sit only between two groups.
    let mut digits = String::with_capacity(10);
    let mut rest = s;
    for (i, width) in [4usize, 2, 2, 2].into_iter().enumerate() {
        if rest.is_empty() {
            if i < 2 {
                return Err(bad());
            }
            break;
        }
        if i > 0 {
            rest = rest.strip_prefix('.').unwrap_or(rest);
        }
        let group = rest.get(..width).ok_or_else(bad)?;
        if !group.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        digits.push_str(group);
        rest = &rest[width..];
    }
    if !rest.is_empty() || s.ends_with('.') {
        return Err(bad());
    }
    if !HS_SUBHEADINGS.contains(&&digits[..6]) {
        return Err(format!(
            "{} is not a rare-earth subheading: use 2805.30 (metals), 2846.10 (cerium \
             compounds), 2846.90 (other rare-earth compounds) or 8505.11 (magnets)",
            &digits[..6]
        ));
    }
    // 4.2, then the national digits (2 or 4) after one more dot.
    Ok(match digits.len() {
        6 => format!("{}.{}", &digits[..4], &digits[4..]),
        _ => format!("{}.{}.{}", &digits[..4], &digits[4..6], &digits[6..]),
    })
}

/// Parses a date of exactly `YYYY-MM-DD`, years 1900 to 9999.
pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    crate::orders::dto::parse_date(s)
        .ok_or_else(|| format!("must be a date as YYYY-MM-DD (years 1900 to 9999); got {s:?}"))
}

/// Validates one row. `field` prefixes every error's field name (e.g.
/// `rows[12].`); `today` is the UTC date a `period_end` may not pass.
pub fn validate(raw: &RawRow, field: &str, today: NaiveDate) -> Result<FlowRow, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut err = |name: &str, message: String| {
        errors.push(FieldError::new(format!("{field}{name}"), message));
    };
    let [element, form, origin, hs, start, end, quantity, source, external_id] = raw;
    let element = ElementSymbol::parse(element)
        .map_err(|e| err("element", e))
        .ok();
    let form = Form::parse(form).map_err(|e| err("form", e)).ok();
    let origin = if countries::is_assigned(origin) {
        Some(origin.clone())
    } else {
        err(
            "origin_country",
            format!(
                "must be an officially assigned ISO 3166-1 alpha-2 code in capitals, e.g. \"CN\" \
                 (not \"UK\" or \"EU\"); got {origin:?}"
            ),
        );
        None
    };
    let hs = parse_hs_code(hs).map_err(|e| err("hs_code", e)).ok();
    let start = parse_date(start).map_err(|e| err("period_start", e)).ok();
    let end = parse_date(end).map_err(|e| err("period_end", e)).ok();
    if let Some(end) = end {
        if end > today {
            err(
                "period_end",
                format!("must not be in the future (today is {today} UTC); got {end}"),
            );
        }
        if start.is_some_and(|s| s > end) {
            err("period_start", "must not be after period_end".to_string());
        }
    }
    let quantity = match Grams::parse_kg(quantity) {
        Ok(g) if g.0 > 0 => Some(g),
        Ok(_) => {
            err("quantity_kg", "must be greater than zero".into());
            None
        }
        Err(e) => {
            err("quantity_kg", e);
            None
        }
    };
    let mut text_errors = Vec::new();
    let source = crate::http::check_text(
        &mut text_errors,
        &format!("{field}source"),
        &Some(source.clone()),
        MAX_SOURCE_CHARS,
    );
    let external_id = crate::http::check_text(
        &mut text_errors,
        &format!("{field}external_id"),
        &Some(external_id.clone()),
        MAX_EXTERNAL_ID_CHARS,
    );
    errors.extend(text_errors.into_iter().map(|mut e| {
        // check_text speaks of optional fields; these are required.
        if e.message.starts_with("must not be blank") {
            e.message = "must not be blank".into();
        }
        e
    }));
    match (
        element,
        form,
        origin,
        hs,
        start,
        end,
        quantity,
        source,
        external_id,
    ) {
        (
            Some(element),
            Some(form),
            Some(origin_country),
            Some(hs_code),
            Some(period_start),
            Some(period_end),
            Some(quantity),
            Some(source),
            Some(external_id),
        ) if errors.is_empty() => Ok(FlowRow {
            element,
            form,
            origin_country,
            hs_code,
            period_start,
            period_end,
            quantity,
            source,
            external_id,
        }),
        _ => Err(errors),
    }
}

impl FlowRow {
    /// SHA-256 over the canonical encoding of the row (version 1): the tag
    /// `import-flow-v1`, then each field in `COLUMNS` order as a 4-byte
    /// big-endian length and its UTF-8 bytes, every field in its normal form
    /// (element `Nd`, form `oxide`, HS code `2846.90.8000`, dates
    /// `YYYY-MM-DD`, quantity in whole grams as decimal digits, source and
    /// external id trimmed). Lower-case hex.
    pub fn content_hash(&self) -> String {
        hex::encode(self.digest())
    }

    fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"import-flow-v1");
        for field in self.fields() {
            h.update((field.len() as u32).to_be_bytes());
            h.update(field.as_bytes());
        }
        h.finalize().into()
    }

    /// The fields in `COLUMNS` order, in their normal forms (quantity in grams).
    pub fn fields(&self) -> [String; 9] {
        [
            self.element.as_str().to_string(),
            self.form.as_str().to_string(),
            self.origin_country.clone(),
            self.hs_code.clone(),
            self.period_start.to_string(),
            self.period_end.to_string(),
            self.quantity.0.to_string(),
            self.source.clone(),
            self.external_id.clone(),
        ]
    }

    /// The first 8 bytes of SHA-256 over (source, external_id), the identity
    /// a resend shares. Kept per row of an upload to find repeats in it, so
    /// an upload's memory grows by a few bytes per row, not by its text.
    pub fn key_digest(&self) -> u64 {
        let mut h = Sha256::new();
        h.update((self.source.len() as u32).to_be_bytes());
        h.update(self.source.as_bytes());
        h.update(self.external_id.as_bytes());
        u64::from_be_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
    }

    /// The first 8 bytes of [`content_hash`](Self::content_hash).
    pub fn content_digest(&self) -> u64 {
        u64::from_be_bytes(self.digest()[..8].try_into().expect("8 bytes"))
    }

    /// Names of the fields in which `self` and `other` differ (quantity as
    /// `quantity_kg`).
    pub fn differing_fields(&self, other: &FlowRow) -> Vec<&'static str> {
        self.fields()
            .iter()
            .zip(other.fields().iter())
            .zip(COLUMNS)
            .filter(|((a, b), _)| a != b)
            .map(|(_, name)| name)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(fields: [&str; 9]) -> RawRow {
        fields.map(str::to_string)
    }

    fn good() -> RawRow {
        raw([
            "dy",
            "Oxide",
            "CN",
            "2846.90.8000",
            "2026-01-01",
            "2026-01-31",
            "1250.5",
            " USITC-DataWeb ",
            "DY-CN-2026-01",
        ])
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()
    }

    #[test]
    fn hs_codes_of_rare_earth_subheadings_normalise() {
        for (input, normal) in [
            ("2805.30", "2805.30"),
            ("280530", "2805.30"),
            ("2805.30.00", "2805.30.00"),
            ("28053000", "2805.30.00"),
            ("280530.00", "2805.30.00"),
            ("2846.90.8000", "2846.90.8000"),
            ("2846.90.80.00", "2846.90.8000"),
            ("2846908000", "2846.90.8000"),
            ("2846.10", "2846.10"),
            ("8505.11.0070", "8505.11.0070"),
        ] {
            assert_eq!(parse_hs_code(input).as_deref(), Ok(normal), "{input}");
        }
        for bad in [
            "",
            "2846",
            "2846.",
            "2846.9",
            "2846.90.",
            "2846..90",
            "2846.90.8",
            "2846.90.800",
            "2846.90.80000",
            "28469080000",
            "2846-90",
            " 2846.90",
            "2804.30",
            "2846.20",
            "8505.19",
            "２８４６.90",
            "284.690",
        ] {
            assert!(parse_hs_code(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn a_good_row_is_stored_in_normal_form() {
        let row = validate(&good(), "rows[0].", today()).unwrap();
        assert_eq!(row.element.as_str(), "Dy");
        assert_eq!(row.form, Form::Oxide);
        assert_eq!(row.quantity, Grams(1_250_500));
        assert_eq!(row.source, "USITC-DataWeb");
        assert_eq!(row.hs_code, "2846.90.8000");
    }

    #[test]
    fn every_bad_field_is_named() {
        let bad = raw([
            "Fe",
            "powder",
            "UK",
            "2846.20",
            "2026-02-30",
            "2026-13-01",
            "1.0001",
            "",
            " ",
        ]);
        let errors = validate(&bad, "rows[3].", today()).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "rows[3].element",
                "rows[3].form",
                "rows[3].origin_country",
                "rows[3].hs_code",
                "rows[3].period_start",
                "rows[3].period_end",
                "rows[3].quantity_kg",
                "rows[3].source",
                "rows[3].external_id",
            ]
        );
    }

    #[test]
    fn periods_must_be_ordered_and_past() {
        let mut r = good();
        r[4] = "2026-02-01".into();
        let e = validate(&r, "", today()).unwrap_err();
        assert_eq!(e[0].field, "period_start");
        let mut r = good();
        r[5] = "2026-12-01".into();
        let e = validate(&r, "", today()).unwrap_err();
        assert_eq!(e[0].field, "period_end");
        assert!(e[0].message.contains("future"));
        // Today itself is allowed; zero kg is not.
        let mut r = good();
        r[5] = "2026-11-30".into();
        assert!(validate(&r, "", today()).is_ok());
        r[6] = "0.000".into();
        assert_eq!(
            validate(&r, "", today()).unwrap_err()[0].field,
            "quantity_kg"
        );
    }

    #[test]
    fn the_content_hash_sees_every_field_and_only_normal_forms() {
        let a = validate(&good(), "", today()).unwrap();
        let mut spelled = good();
        spelled[0] = "DY".into();
        spelled[3] = "2846908000".into();
        spelled[6] = "1250.500".into();
        spelled[7] = "USITC-DataWeb".into();
        let b = validate(&spelled, "", today()).unwrap();
        assert_eq!(a.content_hash(), b.content_hash());
        assert_eq!(a.key_digest(), b.key_digest());
        let mut changed = good();
        changed[6] = "1250.501".into();
        let c = validate(&changed, "", today()).unwrap();
        assert_ne!(a.content_hash(), c.content_hash());
        assert_eq!(a.key_digest(), c.key_digest());
        assert_eq!(a.differing_fields(&c), ["quantity_kg"]);
        assert_eq!(a.content_hash().len(), 64);
    }
}
