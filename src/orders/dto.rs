//! Release-order requests (parsed into domain values at the edge) and the
//! views the API answers with.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::model::{Method, OrderKind};
use crate::db::types::{self, Grade, Grams, Micros};
use crate::depots::model::DepotCode;
use crate::elements::model::{ElementSymbol, Form};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::http::check_text;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrderRequest {
    pub kind: String,
    pub element: String,
    pub form: String,
    pub grade: String,
    pub quantity_kg: String,
    pub authority: String,
    pub reason: String,
    pub method: Option<String>,
    pub counterparty: Option<String>,
    pub emergency_finding: Option<String>,
    pub law: Option<String>,
    #[serde(default, deserialize_with = "crate::http::json::whole_number")]
    pub fiscal_year: Option<i32>,
    pub premium_percent: Option<String>,
    pub return_due: Option<String>,
    pub late_premium_percent_per_day: Option<String>,
}

/// A validated proposal.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub kind: OrderKind,
    pub element: ElementSymbol,
    pub form: Form,
    pub grade: Grade,
    pub quantity: Grams,
    pub method: Method,
    pub authority: String,
    pub reason: String,
    pub counterparty: Option<String>,
    pub emergency_finding: Option<String>,
    pub law: Option<String>,
    pub fiscal_year: Option<i32>,
    pub premium_percent: Option<Decimal>,
    pub return_due: Option<NaiveDate>,
    pub late_premium_percent_per_day: Option<Decimal>,
}

/// A percentage: a plain decimal string, 0 to 1000, at most 4 decimals.
pub fn parse_percent(field: &str, s: &str, errors: &mut Vec<FieldError>) -> Option<Decimal> {
    let ok = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_digit() || c == '.')
        && s.matches('.').count() <= 1
        && !s.starts_with('.')
        && !s.ends_with('.');
    let parsed = ok.then(|| s.parse::<Decimal>().ok()).flatten();
    match parsed {
        Some(d) if d.scale() <= 4 && d <= Decimal::from(1000) => Some(d.normalize()),
        _ => {
            errors.push(FieldError::new(
                field,
                "must be a percentage as a decimal string from \"0\" to \"1000\", at most 4 decimals, e.g. \"5.25\"",
            ));
            None
        }
    }
}

/// A calendar date, exactly `YYYY-MM-DD`, year 1900 to 9999. (chrono alone
/// also takes "2027-6-30" and "+2027-06-30", which `format: date` does not.)
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let shaped = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    shaped
        .then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .flatten()
        .filter(|d| (1900..=9999).contains(&chrono::Datelike::year(d)))
}

fn required(errors: &mut Vec<FieldError>, field: &str, v: &Option<String>, why: &str) {
    if v.is_none() {
        errors.push(FieldError::new(field, format!("is required {why}")));
    }
}

fn forbidden(errors: &mut Vec<FieldError>, field: &str, present: bool, why: &str) {
    if present {
        errors.push(FieldError::new(field, format!("must not be given {why}")));
    }
}

impl CreateOrderRequest {
    pub fn validate(&self) -> ApiResult<NewOrder> {
        let mut e = Vec::new();
        let kind = OrderKind::parse(&self.kind)
            .map_err(|m| e.push(FieldError::new("kind", m)))
            .ok();
        let element = ElementSymbol::parse(&self.element)
            .map_err(|m| e.push(FieldError::new("element", m)))
            .ok();
        let form = Form::parse(&self.form)
            .map_err(|m| e.push(FieldError::new("form", m)))
            .ok();
        let grade = Grade::parse(&self.grade)
            .map_err(|m| e.push(FieldError::new("grade", m)))
            .ok();
        let quantity = match Grams::parse_kg(&self.quantity_kg) {
            Ok(g) if g.0 > 0 => Some(g),
            Ok(_) => {
                e.push(FieldError::new("quantity_kg", "must be more than zero"));
                None
            }
            Err(m) => {
                e.push(FieldError::new("quantity_kg", m));
                None
            }
        };
        let authority = check_text(&mut e, "authority", &Some(self.authority.clone()), 500);
        let reason = check_text(&mut e, "reason", &Some(self.reason.clone()), 2000);
        let counterparty = check_text(&mut e, "counterparty", &self.counterparty, 200);
        let emergency_finding =
            check_text(&mut e, "emergency_finding", &self.emergency_finding, 500);
        let law = check_text(&mut e, "law", &self.law, 500);
        if let Some(fy) = self.fiscal_year.filter(|y| !(1900..=9999).contains(y)) {
            e.push(FieldError::new(
                "fiscal_year",
                format!("{fy} is not a year between 1900 and 9999"),
            ));
        }
        let premium = self
            .premium_percent
            .as_deref()
            .and_then(|p| parse_percent("premium_percent", p, &mut e));
        let late = self
            .late_premium_percent_per_day
            .as_deref()
            .and_then(|p| parse_percent("late_premium_percent_per_day", p, &mut e));
        let return_due = self.return_due.as_deref().and_then(|d| {
            parse_date(d).or_else(|| {
                e.push(FieldError::new(
                    "return_due",
                    "must be a date such as \"2027-06-30\"",
                ));
                None
            })
        });
        let method = match self.method.as_deref() {
            None => None,
            Some("direct") => Some(Method::Direct),
            Some("sale") => Some(Method::Sale),
            Some(_) => {
                e.push(FieldError::new("method", "must be \"direct\" or \"sale\""));
                None
            }
        };
        let mut method_for_kind = None;
        if let Some(kind) = kind {
            use OrderKind::*;
            match kind {
                EmergencyDrawdown | LimitedDrawdown => {
                    required(
                        &mut e,
                        "method",
                        &self.method,
                        "for a drawdown: \"direct\" or \"sale\"",
                    );
                    if kind == EmergencyDrawdown {
                        required(
                            &mut e,
                            "emergency_finding",
                            &self.emergency_finding,
                            "for an emergency drawdown: cite the finding",
                        );
                    } else {
                        forbidden(
                            &mut e,
                            "emergency_finding",
                            self.emergency_finding.is_some(),
                            "except for an emergency drawdown",
                        );
                    }
                    if method == Some(Method::Direct) {
                        required(
                            &mut e,
                            "counterparty",
                            &self.counterparty,
                            "for a direct delivery",
                        );
                    }
                    method_for_kind = method;
                }
                TestSale | MandatedSale => {
                    if method == Some(Method::Direct) {
                        e.push(FieldError::new(
                            "method",
                            "a sale is always sold: omit method or send \"sale\"",
                        ));
                    }
                    if kind == MandatedSale {
                        required(
                            &mut e,
                            "law",
                            &self.law,
                            "for a mandated sale: cite the law",
                        );
                        if self.fiscal_year.is_none() {
                            e.push(FieldError::new(
                                "fiscal_year",
                                "is required for a mandated sale",
                            ));
                        }
                    }
                    forbidden(
                        &mut e,
                        "emergency_finding",
                        self.emergency_finding.is_some(),
                        "except for an emergency drawdown",
                    );
                    method_for_kind = Some(Method::Sale);
                }
                Exchange => {
                    forbidden(
                        &mut e,
                        "method",
                        self.method.is_some(),
                        "for an exchange, which is a loan",
                    );
                    required(
                        &mut e,
                        "counterparty",
                        &self.counterparty,
                        "for an exchange: the borrower",
                    );
                    required(
                        &mut e,
                        "premium_percent",
                        &self.premium_percent,
                        "for an exchange",
                    );
                    required(&mut e, "return_due", &self.return_due, "for an exchange");
                    forbidden(
                        &mut e,
                        "emergency_finding",
                        self.emergency_finding.is_some(),
                        "except for an emergency drawdown",
                    );
                    method_for_kind = Some(Method::Loan);
                }
            }
            if kind != Exchange {
                forbidden(
                    &mut e,
                    "premium_percent",
                    self.premium_percent.is_some(),
                    "except for an exchange",
                );
                forbidden(
                    &mut e,
                    "return_due",
                    self.return_due.is_some(),
                    "except for an exchange",
                );
                forbidden(
                    &mut e,
                    "late_premium_percent_per_day",
                    self.late_premium_percent_per_day.is_some(),
                    "except for an exchange",
                );
            }
        }
        if !e.is_empty() {
            return Err(ApiError::Validation(e));
        }
        match (
            kind,
            element,
            form,
            grade,
            quantity,
            authority,
            reason,
            method_for_kind,
        ) {
            (
                Some(kind),
                Some(element),
                Some(form),
                Some(grade),
                Some(quantity),
                Some(authority),
                Some(reason),
                Some(method),
            ) => Ok(NewOrder {
                kind,
                element,
                form,
                grade,
                quantity,
                method,
                authority,
                reason,
                counterparty,
                emergency_finding,
                law,
                fiscal_year: self.fiscal_year,
                premium_percent: premium,
                return_due,
                late_premium_percent_per_day: late,
            }),
            _ => Err(ApiError::field("kind", "the request could not be read")),
        }
    }
}

/// `{"note"?}` for approve, reject and cancel.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    pub note: Option<String>,
}

impl NoteRequest {
    pub fn validate(&self) -> ApiResult<Option<String>> {
        let mut e = Vec::new();
        let note = check_text(&mut e, "note", &self.note, 2000);
        if e.is_empty() {
            Ok(note)
        } else {
            Err(ApiError::Validation(e))
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteRequest {
    pub depot: String,
    pub quantity_kg: String,
    pub occurred_at: Option<String>,
    /// For a sale with several winners: which buyer this delivery is for.
    pub buyer: Option<String>,
    pub reference: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Execution {
    pub depot: DepotCode,
    pub quantity: Grams,
    pub occurred_at: Option<chrono::DateTime<chrono::Utc>>,
    pub buyer: Option<String>,
    pub reference: Option<String>,
    pub note: Option<String>,
}

fn positive_kg(field: &str, s: &str, e: &mut Vec<FieldError>) -> Option<Grams> {
    match Grams::parse_kg(s) {
        Ok(g) if g.0 > 0 => Some(g),
        Ok(_) => {
            e.push(FieldError::new(field, "must be more than zero"));
            None
        }
        Err(m) => {
            e.push(FieldError::new(field, m));
            None
        }
    }
}

/// Parses an optional field, recording a refusal under `field`.
fn optional<T>(
    e: &mut Vec<FieldError>,
    field: &str,
    value: Option<&str>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Option<T> {
    value.and_then(|v| parse(v).map_err(|m| e.push(FieldError::new(field, m))).ok())
}

impl ExecuteRequest {
    pub fn validate(&self) -> ApiResult<Execution> {
        let mut e = Vec::new();
        let depot = DepotCode::parse(&self.depot)
            .map_err(|m| e.push(FieldError::new("depot", m)))
            .ok();
        let quantity = positive_kg("quantity_kg", &self.quantity_kg, &mut e);
        let occurred_at = optional(
            &mut e,
            "occurred_at",
            self.occurred_at.as_deref(),
            types::parse_rfc3339,
        );
        let buyer = optional(&mut e, "buyer", self.buyer.as_deref(), parse_buyer_code);
        let reference = check_text(&mut e, "reference", &self.reference, 200);
        let note = check_text(&mut e, "note", &self.note, 2000);
        match (depot, quantity) {
            (Some(depot), Some(quantity)) if e.is_empty() => Ok(Execution {
                depot,
                quantity,
                occurred_at,
                buyer,
                reference,
                note,
            }),
            _ => Err(ApiError::Validation(e)),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnRequest {
    pub depot: String,
    pub quantity_kg: String,
    pub form: Option<String>,
    pub grade: Option<String>,
    pub occurred_at: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Return {
    pub depot: DepotCode,
    pub quantity: Grams,
    pub form: Option<Form>,
    pub grade: Option<Grade>,
    pub occurred_at: Option<chrono::DateTime<chrono::Utc>>,
    pub note: Option<String>,
}

impl ReturnRequest {
    pub fn validate(&self) -> ApiResult<Return> {
        let mut e = Vec::new();
        let depot = DepotCode::parse(&self.depot)
            .map_err(|m| e.push(FieldError::new("depot", m)))
            .ok();
        let quantity = positive_kg("quantity_kg", &self.quantity_kg, &mut e);
        let form = optional(&mut e, "form", self.form.as_deref(), Form::parse);
        let grade = optional(&mut e, "grade", self.grade.as_deref(), Grade::parse);
        let occurred_at = optional(
            &mut e,
            "occurred_at",
            self.occurred_at.as_deref(),
            types::parse_rfc3339,
        );
        let note = check_text(&mut e, "note", &self.note, 2000);
        match (depot, quantity) {
            (Some(depot), Some(quantity)) if e.is_empty() => Ok(Return {
                depot,
                quantity,
                form,
                grade,
                occurred_at,
                note,
            }),
            _ => Err(ApiError::Validation(e)),
        }
    }
}

/// A buyer code: 2 to 32 characters of A–Z, 0–9, `-` and `_`, upper-cased.
pub fn parse_buyer_code(s: &str) -> Result<String, String> {
    let up = s.trim().to_ascii_uppercase();
    let ok = (2..=32).contains(&up.len())
        && up
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(up)
    } else {
        Err("must be 2 to 32 characters of A-Z, 0-9, - and _".into())
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BuyerRequest {
    pub code: String,
    pub name: String,
    pub country: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuyerView {
    pub code: String,
    pub name: String,
    pub country: String,
    pub created_at: String,
}

impl BuyerRequest {
    pub fn validate(&self) -> ApiResult<(String, String, String)> {
        let mut e = Vec::new();
        let code = parse_buyer_code(&self.code)
            .map_err(|m| e.push(FieldError::new("code", m)))
            .ok();
        let name = check_text(&mut e, "name", &Some(self.name.clone()), 200);
        let country_ok =
            self.country.len() == 2 && self.country.chars().all(|c| c.is_ascii_uppercase());
        if !country_ok {
            e.push(FieldError::new(
                "country",
                "must be an ISO 3166-1 alpha-2 code such as \"JP\"",
            ));
        }
        match (code, name) {
            (Some(code), Some(name)) if e.is_empty() => Ok((code, name, self.country.clone())),
            _ => Err(ApiError::Validation(e)),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeRequest {
    pub closes_at: String,
    pub minimum_price_per_kg: Option<String>,
    pub currency: String,
}

#[derive(Debug, Clone)]
pub struct Notice {
    pub closes_at: chrono::DateTime<chrono::Utc>,
    pub minimum_price: Option<Micros>,
    pub currency: String,
}

impl NoticeRequest {
    pub fn validate(&self) -> ApiResult<Notice> {
        let mut e = Vec::new();
        let closes_at = types::parse_rfc3339(&self.closes_at)
            .map_err(|m| e.push(FieldError::new("closes_at", m)))
            .ok();
        let minimum_price = self.minimum_price_per_kg.as_deref().and_then(|p| {
            Micros::parse(p)
                .map_err(|m| e.push(FieldError::new("minimum_price_per_kg", m)))
                .ok()
        });
        if !(self.currency.len() == 3 && self.currency.chars().all(|c| c.is_ascii_uppercase())) {
            e.push(FieldError::new(
                "currency",
                "must be an ISO 4217 code such as \"USD\"",
            ));
        }
        match closes_at {
            Some(closes_at) if e.is_empty() => Ok(Notice {
                closes_at,
                minimum_price,
                currency: self.currency.clone(),
            }),
            _ => Err(ApiError::Validation(e)),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BidRequest {
    pub quantity_kg: String,
    pub price_per_kg: String,
}

impl BidRequest {
    pub fn validate(&self) -> ApiResult<(Grams, Micros)> {
        let mut e = Vec::new();
        let q = positive_kg("quantity_kg", &self.quantity_kg, &mut e);
        let p = match Micros::parse(&self.price_per_kg) {
            Ok(p) if p.0 > 0 => Some(p),
            Ok(_) => {
                e.push(FieldError::new("price_per_kg", "must be more than zero"));
                None
            }
            Err(m) => {
                e.push(FieldError::new("price_per_kg", m));
                None
            }
        };
        match (q, p) {
            (Some(q), Some(p)) if e.is_empty() => Ok((q, p)),
            _ => Err(ApiError::Validation(e)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllocationView {
    pub depot: String,
    pub quantity_kg: String,
    pub deliver_by: String,
    pub reserved_kg: String,
    pub released_kg: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransitionView {
    pub at: String,
    pub actor: String,
    pub from: Option<String>,
    pub to: String,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoticeView {
    pub closes_at: String,
    pub minimum_price_per_kg: Option<String>,
    pub currency: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AwardView {
    pub buyer: String,
    pub quantity_kg: String,
    pub price_per_kg: String,
    pub delivered_kg: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BidView {
    pub id: i64,
    pub order_id: i64,
    pub buyer: String,
    pub quantity_kg: String,
    pub price_per_kg: String,
    pub currency: String,
    pub placed_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderView {
    pub id: i64,
    pub kind: String,
    pub status: String,
    pub element: String,
    pub form: String,
    pub grade: String,
    pub quantity_kg: String,
    pub method: String,
    pub authority: String,
    pub reason: String,
    pub counterparty: Option<String>,
    pub emergency_finding: Option<String>,
    pub law: Option<String>,
    pub fiscal_year: Option<i32>,
    pub premium_percent: Option<String>,
    pub return_due: Option<String>,
    pub late_premium_percent_per_day: Option<String>,
    pub reserved_kg: String,
    pub released_kg: String,
    /// Exchanges: quantity × (1 + premium), plus any late premium accrued
    /// as of today, rounded up to the gram. Null for other kinds.
    pub owed_kg: Option<String>,
    pub returned_kg: String,
    /// Exchanges: past `return_due` with something still owed.
    pub overdue: bool,
    pub proposed_by: String,
    pub approved_by: Option<String>,
    pub rule_id: Option<i64>,
    pub allocation: Vec<AllocationView>,
    pub expected_completion: Option<String>,
    pub notice: Option<NoticeView>,
    pub awards: Vec<AwardView>,
    pub history: Vec<TransitionView>,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}
