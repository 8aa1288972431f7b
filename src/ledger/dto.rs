//! Ledger request and response bodies, and their validation into `Leg`s.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::model::{EntryDetails, EntryKind, Leg, StockpileKey};
use super::repo::EntryRecord;
use crate::db::types::{self, Grade, Grams, Micros};
use crate::depots::model::DepotCode;
use crate::elements::model::{ElementSymbol, Form};
use crate::error::{ApiError, FieldError};
use crate::http::check_text;

/// Most legs one batch may post.
pub const MAX_BATCH_ENTRIES: usize = 1000;

/// `POST /api/v1/acquisitions` and `POST /api/v1/releases`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MovementRequest {
    pub depot: String,
    pub element: String,
    pub form: String,
    pub grade: String,
    pub quantity_kg: String,
    pub occurred_at: Option<String>,
    pub reference: Option<String>,
    pub counterparty: Option<String>,
    pub origin_country: Option<String>,
    pub unit_price: Option<String>,
    pub currency: Option<String>,
    pub note: Option<String>,
}

/// `POST /api/v1/transfers`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    pub from_depot: String,
    pub to_depot: String,
    pub element: String,
    pub form: String,
    pub grade: String,
    pub quantity_kg: String,
    pub occurred_at: Option<String>,
    pub reference: Option<String>,
    pub note: Option<String>,
}

/// One item of `POST /api/v1/ledger/batch`: an acquisition, release or transfer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BatchItem {
    pub kind: String,
    pub depot: Option<String>,
    pub from_depot: Option<String>,
    pub to_depot: Option<String>,
    pub element: String,
    pub form: String,
    pub grade: String,
    pub quantity_kg: String,
    pub occurred_at: Option<String>,
    pub reference: Option<String>,
    pub counterparty: Option<String>,
    pub origin_country: Option<String>,
    pub unit_price: Option<String>,
    pub currency: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub entries: Vec<BatchItem>,
}

/// Collects field errors while validating one request.
struct Check<'a> {
    prefix: &'a str,
    errors: &'a mut Vec<FieldError>,
}

impl Check<'_> {
    fn err(&mut self, field: &str, message: impl Into<String>) {
        self.errors
            .push(FieldError::new(format!("{}{field}", self.prefix), message));
    }

    fn parse<T>(&mut self, field: &str, r: Result<T, String>) -> Option<T> {
        r.map_err(|e| self.err(field, e)).ok()
    }

    fn text(&mut self, field: &str, value: &Option<String>, max: usize) -> Option<String> {
        check_text(self.errors, &format!("{}{field}", self.prefix), value, max)
    }

    fn quantity(&mut self, value: &str) -> Option<Grams> {
        let g = self.parse("quantity_kg", Grams::parse_kg(value))?;
        if g.0 == 0 {
            self.err("quantity_kg", "must be greater than zero");
            return None;
        }
        Some(g)
    }

    fn occurred_at(&mut self, value: &Option<String>, now: DateTime<Utc>) -> DateTime<Utc> {
        match value {
            None => now,
            Some(v) => self
                .parse("occurred_at", types::parse_rfc3339(v))
                .unwrap_or(now),
        }
    }

    fn key(
        &mut self,
        depot_field: &str,
        depot: &str,
        element: &str,
        form: &str,
        grade: &str,
    ) -> Option<StockpileKey> {
        let depot = self.parse(depot_field, DepotCode::parse(depot));
        let element = self.parse("element", ElementSymbol::parse(element));
        let form = self.parse("form", Form::parse(form));
        let grade = self.parse("grade", Grade::parse(grade));
        Some(StockpileKey {
            depot: depot?,
            element: element?,
            form: form?,
            grade: grade?,
        })
    }

    /// Optional commercial details: origin country, price and currency together.
    #[allow(clippy::too_many_arguments)]
    fn details(
        &mut self,
        reference: &Option<String>,
        counterparty: &Option<String>,
        origin_country: &Option<String>,
        unit_price: &Option<String>,
        currency: &Option<String>,
        note: &Option<String>,
    ) -> EntryDetails {
        let origin_country = origin_country.as_ref().and_then(|c| {
            if c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()) {
                Some(c.clone())
            } else {
                self.err(
                    "origin_country",
                    "must be an ISO 3166-1 alpha-2 code in capitals, e.g. \"AU\"",
                );
                None
            }
        });
        let unit_price = unit_price
            .as_ref()
            .and_then(|p| self.parse("unit_price", Micros::parse(p)));
        let currency = currency.as_ref().and_then(|c| {
            if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) {
                Some(c.clone())
            } else {
                self.err(
                    "currency",
                    "must be an ISO 4217 code in capitals, e.g. \"USD\"",
                );
                None
            }
        });
        if unit_price.is_some() != currency.is_some()
            && !self
                .errors
                .iter()
                .any(|e| e.field.ends_with("currency") || e.field.ends_with("unit_price"))
        {
            self.err(
                if unit_price.is_some() {
                    "currency"
                } else {
                    "unit_price"
                },
                "unit_price and currency go together",
            );
        }
        EntryDetails {
            reference: self.text("reference", reference, 200),
            counterparty: self.text("counterparty", counterparty, 200),
            origin_country,
            unit_price,
            currency,
            note: self.text("note", note, 2000),
        }
    }
}

fn finish(errors: Vec<FieldError>, legs: Option<Vec<Leg>>) -> Result<Vec<Leg>, ApiError> {
    match legs {
        Some(legs) if errors.is_empty() => Ok(legs),
        _ => Err(ApiError::Validation(errors)),
    }
}

fn movement_leg(
    c: &mut Check<'_>,
    kind: EntryKind,
    r: &MovementRequest,
    now: DateTime<Utc>,
) -> Option<Leg> {
    let key = c.key("depot", &r.depot, &r.element, &r.form, &r.grade);
    let quantity = c.quantity(&r.quantity_kg);
    let occurred_at = c.occurred_at(&r.occurred_at, now);
    let occurred_at_given = r.occurred_at.is_some();
    let details = c.details(
        &r.reference,
        &r.counterparty,
        &r.origin_country,
        &r.unit_price,
        &r.currency,
        &r.note,
    );
    let sign = if kind.is_shipment_out() { -1 } else { 1 };
    Some(Leg {
        key: key?,
        kind,
        quantity: Grams(sign * quantity?.0),
        occurred_at,
        occurred_at_given,
        details,
        field_prefix: c.prefix.to_string(),
    })
}

fn transfer_legs(c: &mut Check<'_>, r: &TransferRequest, now: DateTime<Utc>) -> Option<Vec<Leg>> {
    let from = c.key("from_depot", &r.from_depot, &r.element, &r.form, &r.grade);
    let to = c.parse("to_depot", DepotCode::parse(&r.to_depot));
    let quantity = c.quantity(&r.quantity_kg);
    let occurred_at = c.occurred_at(&r.occurred_at, now);
    let occurred_at_given = r.occurred_at.is_some();
    let details = c.details(&r.reference, &None, &None, &None, &None, &r.note);
    let (from, to, quantity) = (from?, to?, quantity?);
    if from.depot == to {
        c.err("to_depot", "must differ from from_depot");
        return None;
    }
    let to_key = StockpileKey {
        depot: to,
        ..from.clone()
    };
    let prefix = c.prefix.to_string();
    Some(vec![
        Leg {
            key: from,
            kind: EntryKind::TransferOut,
            quantity: Grams(-quantity.0),
            occurred_at,
            occurred_at_given,
            details: details.clone(),
            field_prefix: prefix.clone(),
        },
        Leg {
            key: to_key,
            kind: EntryKind::TransferIn,
            quantity,
            occurred_at,
            occurred_at_given,
            details,
            field_prefix: prefix,
        },
    ])
}

impl MovementRequest {
    pub fn into_legs(&self, kind: EntryKind, now: DateTime<Utc>) -> Result<Vec<Leg>, ApiError> {
        let mut errors = Vec::new();
        let leg = movement_leg(
            &mut Check {
                prefix: "",
                errors: &mut errors,
            },
            kind,
            self,
            now,
        );
        finish(errors, leg.map(|l| vec![l]))
    }
}

impl TransferRequest {
    pub fn into_legs(&self, now: DateTime<Utc>) -> Result<Vec<Leg>, ApiError> {
        let mut errors = Vec::new();
        let legs = transfer_legs(
            &mut Check {
                prefix: "",
                errors: &mut errors,
            },
            self,
            now,
        );
        finish(errors, legs)
    }
}

impl BatchRequest {
    pub fn into_legs(&self, now: DateTime<Utc>) -> Result<Vec<Leg>, ApiError> {
        if self.entries.is_empty() || self.entries.len() > MAX_BATCH_ENTRIES {
            return Err(ApiError::field(
                "entries",
                format!("must hold 1 to {MAX_BATCH_ENTRIES} entries"),
            ));
        }
        let mut errors = Vec::new();
        let mut legs = Vec::new();
        let mut all_valid = true;
        for (i, item) in self.entries.iter().enumerate() {
            let prefix = format!("entries[{i}].");
            let mut c = Check {
                prefix: &prefix,
                errors: &mut errors,
            };
            let produced = match item.kind.as_str() {
                "acquisition" | "release" => {
                    let kind = if item.kind == "release" {
                        EntryKind::Release
                    } else {
                        EntryKind::Acquisition
                    };
                    if item.from_depot.is_some() || item.to_depot.is_some() {
                        c.err("from_depot", "only transfers name from_depot and to_depot");
                    }
                    match &item.depot {
                        None => {
                            c.err("depot", "is required for acquisitions and releases");
                            None
                        }
                        Some(depot) => {
                            let r = MovementRequest {
                                depot: depot.clone(),
                                element: item.element.clone(),
                                form: item.form.clone(),
                                grade: item.grade.clone(),
                                quantity_kg: item.quantity_kg.clone(),
                                occurred_at: item.occurred_at.clone(),
                                reference: item.reference.clone(),
                                counterparty: item.counterparty.clone(),
                                origin_country: item.origin_country.clone(),
                                unit_price: item.unit_price.clone(),
                                currency: item.currency.clone(),
                                note: item.note.clone(),
                            };
                            movement_leg(&mut c, kind, &r, now).map(|l| vec![l])
                        }
                    }
                }
                "transfer" => {
                    if item.depot.is_some() {
                        c.err("depot", "transfers name from_depot and to_depot instead");
                    }
                    if item.counterparty.is_some()
                        || item.origin_country.is_some()
                        || item.unit_price.is_some()
                        || item.currency.is_some()
                    {
                        c.err(
                            "counterparty",
                            "transfers carry no counterparty, origin or price",
                        );
                    }
                    match (&item.from_depot, &item.to_depot) {
                        (Some(from), Some(to)) => {
                            let r = TransferRequest {
                                from_depot: from.clone(),
                                to_depot: to.clone(),
                                element: item.element.clone(),
                                form: item.form.clone(),
                                grade: item.grade.clone(),
                                quantity_kg: item.quantity_kg.clone(),
                                occurred_at: item.occurred_at.clone(),
                                reference: item.reference.clone(),
                                note: item.note.clone(),
                            };
                            transfer_legs(&mut c, &r, now)
                        }
                        _ => {
                            c.err("from_depot", "transfers need from_depot and to_depot");
                            None
                        }
                    }
                }
                _ => {
                    c.err("kind", "must be acquisition, release or transfer");
                    None
                }
            };
            match produced {
                Some(l) => legs.extend(l),
                None => all_valid = false,
            }
        }
        finish(errors, all_valid.then_some(legs))
    }
}

/// A ledger entry as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryView {
    pub id: i64,
    pub sequence: i64,
    pub kind: String,
    pub stockpile_id: i64,
    pub depot: String,
    pub element: String,
    pub form: String,
    pub grade: String,
    pub quantity_kg: String,
    pub balance_after_kg: String,
    pub occurred_at: String,
    pub recorded_at: String,
    /// Who posted it: shown to auditors and admins, `null` for everyone else.
    pub actor: Option<String>,
    pub reference: Option<String>,
    pub counterparty: Option<String>,
    pub origin_country: Option<String>,
    pub unit_price: Option<String>,
    pub currency: Option<String>,
    pub note: Option<String>,
    pub movement_id: String,
    /// The Idempotency-Key it was posted under (part of what its hash
    /// commits to): shown, like `actor`, to auditors and admins only.
    pub idempotency_key: Option<String>,
    /// The release order this entry executes or returns, if any.
    pub order_id: Option<i64>,
    pub prev_hash: String,
    pub hash: String,
}

impl EntryView {
    pub fn from_record(r: EntryRecord, show_actor: bool) -> EntryView {
        let e = r.entry;
        EntryView {
            id: e.sequence,
            sequence: e.sequence,
            kind: e.kind,
            stockpile_id: e.stockpile_id,
            depot: r.depot,
            element: r.element,
            form: r.form,
            grade: r.grade,
            quantity_kg: Grams(e.quantity_g).to_kg_string(),
            balance_after_kg: Grams(e.balance_after_g).to_kg_string(),
            occurred_at: types::rfc3339(types::from_db(e.occurred_at)),
            recorded_at: types::rfc3339(types::from_db(e.recorded_at)),
            actor: show_actor.then_some(e.actor),
            idempotency_key: show_actor.then_some(e.idempotency_key),
            reference: e.reference,
            counterparty: e.counterparty,
            origin_country: e.origin_country,
            unit_price: e.unit_price_micros.map(|m| Micros(m).to_decimal_string()),
            currency: e.currency,
            note: e.note,
            order_id: e.order_id,
            movement_id: e.movement_id,
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

/// Response of a transfer or batch: every entry posted, in sequence order.
#[derive(Debug, Serialize, Deserialize)]
pub struct MovementView {
    pub movement_id: String,
    pub entries: Vec<EntryView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn movement(q: &str) -> MovementRequest {
        MovementRequest {
            depot: "NV1".into(),
            element: "Nd".into(),
            form: "oxide".into(),
            grade: "99.5".into(),
            quantity_kg: q.into(),
            occurred_at: None,
            reference: None,
            counterparty: None,
            origin_country: None,
            unit_price: None,
            currency: None,
            note: None,
        }
    }

    fn fields(e: ApiError) -> Vec<String> {
        match e {
            ApiError::Validation(v) => v.into_iter().map(|f| f.field).collect(),
            other => panic!("expected validation, got {other:?}"),
        }
    }

    #[test]
    fn releases_are_negative_and_acquisitions_positive() {
        let now = types::now();
        let r = movement("2.5").into_legs(EntryKind::Release, now).unwrap();
        assert_eq!(r[0].quantity, Grams(-2500));
        let a = movement("2.5")
            .into_legs(EntryKind::Acquisition, now)
            .unwrap();
        assert_eq!(a[0].quantity, Grams(2500));
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut m = movement("0.0001");
        m.element = "Fe".into();
        m.unit_price = Some("10".into());
        let f = fields(
            m.into_legs(EntryKind::Acquisition, types::now())
                .unwrap_err(),
        );
        assert!(f.contains(&"quantity_kg".to_string()));
        assert!(f.contains(&"element".to_string()));
        assert!(f.contains(&"currency".to_string()));
        assert!(fields(
            movement("0")
                .into_legs(EntryKind::Acquisition, types::now())
                .unwrap_err()
        )
        .contains(&"quantity_kg".to_string()));
    }

    #[test]
    fn transfers_need_two_depots() {
        let t = TransferRequest {
            from_depot: "NV1".into(),
            to_depot: "nv1".into(),
            element: "Nd".into(),
            form: "oxide".into(),
            grade: "99.5".into(),
            quantity_kg: "1".into(),
            occurred_at: None,
            reference: None,
            note: None,
        };
        assert_eq!(
            fields(t.into_legs(types::now()).unwrap_err()),
            vec!["to_depot"]
        );
    }

    #[test]
    fn batch_errors_carry_the_item_index() {
        let item = |kind: &str| BatchItem {
            kind: kind.into(),
            depot: Some("NV1".into()),
            from_depot: None,
            to_depot: None,
            element: "Nd".into(),
            form: "oxide".into(),
            grade: "99.5".into(),
            quantity_kg: "1".into(),
            occurred_at: None,
            reference: None,
            counterparty: None,
            origin_country: None,
            unit_price: None,
            currency: None,
            note: None,
        };
        let b = BatchRequest {
            entries: vec![item("acquisition"), item("teleport")],
        };
        assert_eq!(
            fields(b.into_legs(types::now()).unwrap_err()),
            vec!["entries[1].kind"]
        );
        let ok = BatchRequest {
            entries: vec![item("acquisition"), item("release")],
        };
        assert_eq!(ok.into_legs(types::now()).unwrap().len(), 2);
    }

    /// Arbitrary JSON, biased towards the shapes these requests have.
    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let field = prop_oneof![
            Just("depot".to_string()),
            Just("element".to_string()),
            Just("form".to_string()),
            Just("grade".to_string()),
            Just("quantity_kg".to_string()),
            Just("occurred_at".to_string()),
            Just("unit_price".to_string()),
            Just("currency".to_string()),
            Just("kind".to_string()),
            Just("from_depot".to_string()),
            Just("to_depot".to_string()),
            Just("entries".to_string()),
            "[a-z_]{1,12}",
        ];
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            any::<f64>().prop_map(|f| serde_json::json!(f)),
            "\\PC{0,16}".prop_map(serde_json::Value::String),
            "[0-9]{0,14}(\\.[0-9]{0,5})?".prop_map(serde_json::Value::String),
            prop_oneof![
                Just("Nd"),
                Just("NV1"),
                Just("oxide"),
                Just("99.5"),
                Just("2026-01-01T00:00:00Z"),
                Just("USD"),
                Just("transfer")
            ]
            .prop_map(|s| serde_json::Value::String(s.to_string())),
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map(field.clone(), inner, 0..10)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Fuzzing the request types: any JSON document is either refused with
        /// field errors or becomes legs whose quantities are non-zero whole grams
        /// signed by their kind; nothing panics.
        #[test]
        fn any_json_is_parsed_or_refused_cleanly(v in json_value()) {
            let bytes = serde_json::to_vec(&v).unwrap();
            let now = types::now();
            if let Ok(r) = crate::http::json::parse::<MovementRequest>(&bytes) {
                if let Ok(legs) = r.into_legs(EntryKind::Release, now) {
                    proptest::prop_assert!(legs.len() == 1 && legs[0].quantity.0 < 0);
                }
            }
            if let Ok(r) = crate::http::json::parse::<TransferRequest>(&bytes) {
                if let Ok(legs) = r.into_legs(now) {
                    proptest::prop_assert!(crate::ledger::model::check_transfer_pairs(&legs).is_ok());
                }
            }
            if let Ok(r) = crate::http::json::parse::<BatchRequest>(&bytes) {
                if let Ok(legs) = r.into_legs(now) {
                    proptest::prop_assert!(legs.iter().all(|l| l.quantity.0 != 0));
                    proptest::prop_assert!(crate::ledger::model::check_transfer_pairs(&legs).is_ok());
                }
            }
        }

        /// Arbitrary bytes never panic the JSON layer.
        #[test]
        fn any_bytes_are_parsed_or_refused_cleanly(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = crate::http::json::parse::<MovementRequest>(&bytes);
            let _ = crate::http::json::parse::<BatchRequest>(&bytes);
        }
    }
}
