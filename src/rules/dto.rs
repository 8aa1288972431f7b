//! Release-rule requests (validated into domain values at the edge) and the
//! views the API answers with.

use chrono::{Duration, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::model::Settings;
use crate::db::types::{Grade, Grams};
use crate::elements::model::{ElementSymbol, Form};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::http::check_text;
use crate::orders::dto::{CreateOrderRequest, NewOrder};
use crate::orders::model::OrderKind;

/// The body of `POST /api/v1/release-rules` and `PUT /api/v1/release-rules/{id}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleRequest {
    pub element: String,
    #[serde(default)]
    pub origin_countries: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::http::json::whole_number")]
    pub window_days: Option<i32>,
    #[serde(default, deserialize_with = "crate::http::json::whole_number")]
    pub baseline_days: Option<i32>,
    pub drop_threshold_percent: String,
    #[serde(default, deserialize_with = "crate::http::json::whole_number")]
    pub consecutive_breaches: Option<i32>,
    #[serde(default, deserialize_with = "crate::http::json::whole_number")]
    pub cooldown_days: Option<i32>,
    pub coverage_fraction: String,
    pub cap_kg: String,
    pub floor_kg: Option<String>,
    pub floor_days_of_cover: Option<String>,
    pub order_kind: String,
    pub enabled: bool,
    /// The material to release; by default the form and grade with the most
    /// available stock when the rule fires.
    pub form: Option<String>,
    pub grade: Option<String>,
    /// What the proposed order cites; by default "Release rule {id}".
    pub authority: Option<String>,
    /// The fields the order kind needs (see `POST /release-orders`).
    pub method: Option<String>,
    pub counterparty: Option<String>,
    pub emergency_finding: Option<String>,
    pub premium_percent: Option<String>,
    /// An exchange's return falls due this many days after the firing.
    #[serde(default, deserialize_with = "crate::http::json::whole_number")]
    pub return_after_days: Option<i32>,
    pub late_premium_percent_per_day: Option<String>,
}

/// The order a rule proposes, less what the firing decides (quantity,
/// reason, return date). Stored as JSON on the rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderTemplate {
    pub authority: Option<String>,
    pub method: Option<String>,
    pub counterparty: Option<String>,
    pub emergency_finding: Option<String>,
    pub premium_percent: Option<String>,
    pub return_after_days: Option<i32>,
    pub late_premium_percent_per_day: Option<String>,
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRule {
    pub element: ElementSymbol,
    pub origin_countries: Option<Vec<String>>,
    pub settings: Settings,
    pub order_kind: OrderKind,
    pub form: Option<Form>,
    pub grade: Option<Grade>,
    pub template: OrderTemplate,
}

/// Longest window or baseline: ten years.
pub const MAX_SPAN_DAYS: i32 = 3660;

fn required_int(
    e: &mut Vec<FieldError>,
    field: &str,
    v: Option<i32>,
    range: std::ops::RangeInclusive<i32>,
) -> i32 {
    match v {
        None => {
            e.push(FieldError::new(field, "is required"));
            0
        }
        Some(n) if !range.contains(&n) => {
            e.push(FieldError::new(
                field,
                format!("{n} is out of range: {} to {}", range.start(), range.end()),
            ));
            0
        }
        Some(n) => n,
    }
}

/// A plain non-negative decimal string (`"25"`, `"0.5"`), at most `dp` decimals.
fn decimal(
    e: &mut Vec<FieldError>,
    field: &str,
    s: &str,
    dp: u32,
    ok: impl Fn(Decimal) -> bool,
    what: &str,
) -> Decimal {
    let shaped = !s.is_empty()
        && s.len() <= 20
        && s.chars().all(|c| c.is_ascii_digit() || c == '.')
        && s.matches('.').count() <= 1
        && !s.starts_with('.')
        && !s.ends_with('.');
    match shaped.then(|| s.parse::<Decimal>().ok()).flatten() {
        Some(d) if d.scale() <= dp && ok(d) => d.normalize(),
        _ => {
            e.push(FieldError::new(
                field,
                format!("must be {what} as a decimal string with at most {dp} decimals"),
            ));
            Decimal::ZERO
        }
    }
}

/// A kg quantity, more than zero when `positive`.
fn kg(e: &mut Vec<FieldError>, field: &str, s: &str, positive: bool) -> i64 {
    match Grams::parse_kg(s) {
        Ok(g) if positive && g.0 == 0 => {
            e.push(FieldError::new(field, "must be more than zero"));
            0
        }
        Ok(g) => g.0,
        Err(m) => {
            e.push(FieldError::new(field, m));
            0
        }
    }
}

/// Origin countries, sorted and without repeats.
pub fn check_origins(
    e: &mut Vec<FieldError>,
    origins: &Option<Vec<String>>,
) -> Option<Vec<String>> {
    let list = origins.as_ref()?;
    if list.is_empty() {
        e.push(FieldError::new(
            "origin_countries",
            "must name at least one country, or be left out to watch every origin",
        ));
        return None;
    }
    if list.len() > 50 {
        e.push(FieldError::new("origin_countries", "at most 50 countries"));
        return None;
    }
    let mut codes = Vec::new();
    for (i, c) in list.iter().enumerate() {
        if crate::flows::countries::is_assigned(c) {
            codes.push(c.clone());
        } else {
            e.push(FieldError::new(
                format!("origin_countries[{i}]"),
                format!("{c:?} is not an ISO 3166-1 alpha-2 country code"),
            ));
        }
    }
    codes.sort();
    codes.dedup();
    Some(codes)
}

impl RuleRequest {
    pub fn validate(&self) -> ApiResult<NewRule> {
        let mut e = Vec::new();
        let element = ElementSymbol::parse(&self.element)
            .map_err(|m| e.push(FieldError::new("element", m)))
            .ok();
        let origin_countries = check_origins(&mut e, &self.origin_countries);
        let window_days = required_int(&mut e, "window_days", self.window_days, 1..=MAX_SPAN_DAYS);
        let baseline_days = required_int(
            &mut e,
            "baseline_days",
            self.baseline_days,
            1..=MAX_SPAN_DAYS,
        );
        let consecutive_breaches = required_int(
            &mut e,
            "consecutive_breaches",
            self.consecutive_breaches,
            1..=365,
        );
        let cooldown_days = required_int(&mut e, "cooldown_days", self.cooldown_days, 0..=3660);
        let drop_threshold_percent = decimal(
            &mut e,
            "drop_threshold_percent",
            &self.drop_threshold_percent,
            4,
            |d| d > Decimal::ZERO && d <= Decimal::from(100),
            "a percentage above 0 and at most 100",
        );
        let coverage_fraction = decimal(
            &mut e,
            "coverage_fraction",
            &self.coverage_fraction,
            6,
            |d| d > Decimal::ZERO && d <= Decimal::ONE,
            "a fraction above 0 and at most 1",
        );
        let cap_g = kg(&mut e, "cap_kg", &self.cap_kg, true);
        let floor_g = self
            .floor_kg
            .as_deref()
            .map(|s| kg(&mut e, "floor_kg", s, false));
        let floor_days_of_cover = self.floor_days_of_cover.as_deref().map(|s| {
            decimal(
                &mut e,
                "floor_days_of_cover",
                s,
                2,
                |d| d <= Decimal::from(36_500),
                "a number of days from 0 to 36500",
            )
        });
        let form = self.form.as_deref().and_then(|f| {
            Form::parse(f)
                .map_err(|m| e.push(FieldError::new("form", m)))
                .ok()
        });
        let grade = self.grade.as_deref().and_then(|g| {
            Grade::parse(g)
                .map_err(|m| e.push(FieldError::new("grade", m)))
                .ok()
        });
        if self.grade.is_some() && self.form.is_none() {
            e.push(FieldError::new(
                "grade",
                "give the form too: a grade alone names no material",
            ));
        }
        let authority = check_text(&mut e, "authority", &self.authority, 500);
        if let Some(days) = self.return_after_days.filter(|d| !(1..=3660).contains(d)) {
            e.push(FieldError::new(
                "return_after_days",
                format!("{days} is out of range: 1 to 3660"),
            ));
        }
        let order_kind = match OrderKind::parse(&self.order_kind) {
            Ok(OrderKind::MandatedSale) => {
                e.push(FieldError::new(
                    "order_kind",
                    "a mandated sale is ordered by law for a fiscal year, not by an import drop: use emergency_drawdown, limited_drawdown, test_sale or exchange",
                ));
                None
            }
            Ok(k) => Some(k),
            Err(m) => {
                e.push(FieldError::new("order_kind", m));
                None
            }
        };
        let template = OrderTemplate {
            authority,
            method: self.method.clone(),
            counterparty: self.counterparty.clone(),
            emergency_finding: self.emergency_finding.clone(),
            premium_percent: self.premium_percent.clone(),
            return_after_days: self.return_after_days,
            late_premium_percent_per_day: self.late_premium_percent_per_day.clone(),
        };
        // The order's own rules decide which fields its kind needs: check a
        // sample order now, so a rule cannot be saved that could never fire.
        if let Some(kind) = order_kind {
            if order_kind == Some(OrderKind::Exchange) && self.return_after_days.is_none() {
                e.push(FieldError::new(
                    "return_after_days",
                    "is required for an exchange: the loan falls due this many days after the firing",
                ));
            }
            let sample = order_request(
                kind,
                element.map(|x| x.as_str()).unwrap_or("Nd"),
                form.map(|f| f.as_str()).unwrap_or("oxide"),
                grade.as_ref().map(|g| g.as_str()).unwrap_or("99.5"),
                "1",
                "sample",
                &template,
                chrono::Utc::now().date_naive(),
            );
            if let Err(ApiError::Validation(errors)) = sample.validate() {
                e.extend(errors.into_iter().filter(|f| f.field != "return_due"));
            }
        }
        if !e.is_empty() {
            return Err(ApiError::Validation(e));
        }
        Ok(NewRule {
            element: element.expect("validated"),
            origin_countries,
            settings: Settings {
                window_days,
                baseline_days,
                drop_threshold_percent,
                consecutive_breaches,
                cooldown_days,
                coverage_fraction,
                cap_g,
                floor_g,
                floor_days_of_cover,
                enabled: self.enabled,
            },
            order_kind: order_kind.expect("validated"),
            form,
            grade,
            template,
        })
    }
}

/// The release-order request a rule's firing makes.
#[allow(clippy::too_many_arguments)]
pub fn order_request(
    kind: OrderKind,
    element: &str,
    form: &str,
    grade: &str,
    quantity_kg: &str,
    reason: &str,
    t: &OrderTemplate,
    today: NaiveDate,
) -> CreateOrderRequest {
    CreateOrderRequest {
        kind: kind.as_str().to_string(),
        element: element.to_string(),
        form: form.to_string(),
        grade: grade.to_string(),
        quantity_kg: quantity_kg.to_string(),
        authority: t
            .authority
            .clone()
            .unwrap_or_else(|| "Release rule".to_string()),
        reason: reason.to_string(),
        method: t.method.clone(),
        counterparty: t.counterparty.clone(),
        emergency_finding: t.emergency_finding.clone(),
        law: None,
        fiscal_year: None,
        premium_percent: t.premium_percent.clone(),
        // Out of range is refused by the rule's own validation; never let it
        // overflow the calendar here.
        return_due: t
            .return_after_days
            .filter(|d| (1..=3660).contains(d))
            .and_then(|d| today.checked_add_signed(Duration::days(i64::from(d))))
            .map(|due| due.format("%Y-%m-%d").to_string()),
        late_premium_percent_per_day: t.late_premium_percent_per_day.clone(),
    }
}

/// Builds the validated order a firing proposes.
#[allow(clippy::too_many_arguments)]
pub fn firing_order(
    kind: OrderKind,
    element: &str,
    form: &str,
    grade: &str,
    quantity_g: i64,
    reason: &str,
    t: &OrderTemplate,
    today: NaiveDate,
) -> ApiResult<NewOrder> {
    order_request(
        kind,
        element,
        form,
        grade,
        &Grams(quantity_g).to_kg_string(),
        reason,
        t,
        today,
    )
    .validate()
}

/// A rule's evaluation state, as shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RuleStateView {
    pub consecutive: i32,
    pub armed: bool,
    pub last_fired_at: Option<String>,
    pub evaluations: i64,
}

/// A rule as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RuleView {
    pub id: i64,
    pub element: String,
    pub origin_countries: Option<Vec<String>>,
    pub window_days: i32,
    pub baseline_days: i32,
    pub drop_threshold_percent: String,
    pub consecutive_breaches: i32,
    pub cooldown_days: i32,
    pub coverage_fraction: String,
    pub cap_kg: String,
    pub floor_kg: Option<String>,
    pub floor_days_of_cover: Option<String>,
    pub order_kind: String,
    pub enabled: bool,
    pub form: Option<String>,
    pub grade: Option<String>,
    pub authority: Option<String>,
    pub method: Option<String>,
    pub counterparty: Option<String>,
    pub emergency_finding: Option<String>,
    pub premium_percent: Option<String>,
    pub return_after_days: Option<i32>,
    pub late_premium_percent_per_day: Option<String>,
    pub state: RuleStateView,
    pub version: i64,
    pub created_at: String,
    pub created_by: String,
    pub updated_at: String,
    pub updated_by: String,
}

impl RuleView {
    pub fn etag(&self) -> String {
        rule_etag(self.id, self.version)
    }

    /// The settings alone (no state, no bookkeeping), as kept in the history.
    pub fn settings_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            for k in [
                "state",
                "version",
                "created_at",
                "created_by",
                "updated_at",
                "updated_by",
            ] {
                o.remove(k);
            }
        }
        v
    }
}

pub fn rule_etag(id: i64, version: i64) -> String {
    format!("\"rule-{id}-v{version}\"")
}

/// One evaluation, with the numbers behind its decision.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvaluationView {
    pub id: i64,
    pub rule_id: i64,
    pub rule_version: i64,
    pub at: String,
    pub trigger: String,
    pub slot: Option<String>,
    pub triggered_by: String,
    pub data_horizon: Option<NaiveDate>,
    pub window_start: Option<NaiveDate>,
    pub window_end: Option<NaiveDate>,
    pub baseline_start: Option<NaiveDate>,
    pub baseline_end: Option<NaiveDate>,
    pub window_kg_per_day: Option<String>,
    pub baseline_kg_per_day: Option<String>,
    pub drop_percent: Option<String>,
    pub breach: bool,
    pub consecutive: i32,
    pub decision: String,
    pub reason: String,
    pub detail: String,
    pub sizing: Option<serde_json::Value>,
    pub proposed_kg: Option<String>,
    pub order_id: Option<i64>,
}

/// One change to a rule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistoryView {
    pub version: i64,
    pub change: String,
    pub at: String,
    pub actor: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}
