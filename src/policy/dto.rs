//! Policy and ceiling request and response bodies.

use serde::{Deserialize, Deserializer, Serialize};

use super::model::{policy_etag, DrawdownDays, ElementPolicy};
use super::repo::{CeilingRecord, PolicyRow};
use crate::db::types::{self, Grams};
use crate::error::{ApiError, FieldError};

/// A present field, `null` included: `Some(None)` for `null`, `None` when the
/// field is missing. A policy PUT replaces the whole policy, so each field
/// must be sent, and a forgotten one is refused rather than read as "no limit".
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `PUT /api/v1/elements/{symbol}/policy`: every field, `null` meaning no limit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    #[serde(default, deserialize_with = "present")]
    pub reserve_floor_kg: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub consumption_kg_per_year: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub limited_drawdown_max_kg: Option<Option<String>>,
    /// A JSON number: `60` and `60.0` are the same number (and the same JSON
    /// Schema integer); `60.5` is refused in `validate`.
    #[serde(default, deserialize_with = "present")]
    pub limited_drawdown_max_days: Option<Option<serde_json::Number>>,
    #[serde(default, deserialize_with = "present")]
    pub test_sale_max_kg: Option<Option<String>>,
}

const MISSING: &str =
    "is required: a policy is replaced whole, so send every field (null for no limit)";

fn kg_field(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: &Option<Option<String>>,
) -> Option<Grams> {
    match value {
        None => {
            errors.push(FieldError::new(field, MISSING));
            None
        }
        Some(None) => None,
        Some(Some(s)) => Grams::parse_kg(s)
            .map_err(|e| errors.push(FieldError::new(field, e)))
            .ok(),
    }
}

impl PolicyRequest {
    pub fn validate(&self) -> Result<ElementPolicy, ApiError> {
        let mut errors = Vec::new();
        let reserve_floor = kg_field(&mut errors, "reserve_floor_kg", &self.reserve_floor_kg);
        let consumption_per_year = kg_field(
            &mut errors,
            "consumption_kg_per_year",
            &self.consumption_kg_per_year,
        );
        let limited_drawdown_max = kg_field(
            &mut errors,
            "limited_drawdown_max_kg",
            &self.limited_drawdown_max_kg,
        );
        let limited_drawdown_max_days = match &self.limited_drawdown_max_days {
            None => {
                errors.push(FieldError::new("limited_drawdown_max_days", MISSING));
                None
            }
            Some(None) => None,
            Some(Some(n)) => {
                let whole = n.as_i64().or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                        .map(|f| f as i64)
                });
                whole
                    .ok_or_else(|| format!("{n} is not a whole number of days"))
                    .and_then(DrawdownDays::parse)
                    .map_err(|e| errors.push(FieldError::new("limited_drawdown_max_days", e)))
                    .ok()
            }
        };
        let test_sale_max = kg_field(&mut errors, "test_sale_max_kg", &self.test_sale_max_kg);
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        Ok(ElementPolicy {
            reserve_floor,
            consumption_per_year,
            limited_drawdown_max,
            limited_drawdown_max_days,
            test_sale_max,
        })
    }
}

/// One version of an element's policy.
#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct PolicyView {
    pub element: String,
    pub reserve_floor_kg: Option<String>,
    pub consumption_kg_per_year: Option<String>,
    pub limited_drawdown_max_kg: Option<String>,
    pub limited_drawdown_max_days: Option<i32>,
    pub test_sale_max_kg: Option<String>,
    pub version: i64,
    pub updated_at: String,
    pub updated_by: String,
}

impl From<PolicyRow> for PolicyView {
    fn from(r: PolicyRow) -> Self {
        let kg = |g: Option<i64>| g.map(|g| Grams(g).to_kg_string());
        PolicyView {
            element: r.element,
            reserve_floor_kg: kg(r.reserve_floor_g),
            consumption_kg_per_year: kg(r.consumption_g_per_year),
            limited_drawdown_max_kg: kg(r.limited_drawdown_max_g),
            limited_drawdown_max_days: r.limited_drawdown_max_days,
            test_sale_max_kg: kg(r.test_sale_max_g),
            version: r.version,
            updated_at: types::rfc3339(types::from_db(r.updated_at)),
            updated_by: r.updated_by,
        }
    }
}

impl PolicyView {
    /// Strong validator of this version of the policy.
    pub fn etag(&self) -> String {
        policy_etag(&self.element, self.version)
    }
}

/// `PUT /api/v1/ceilings/{element}/{fiscal_year}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeilingRequest {
    #[serde(default)]
    pub acquire_max_kg: Option<String>,
    #[serde(default)]
    pub dispose_max_kg: Option<String>,
}

impl CeilingRequest {
    /// The acquisition and disposal ceilings, in that order.
    pub fn validate(&self) -> Result<(Grams, Grams), ApiError> {
        let mut errors = Vec::new();
        let mut kg = |field: &str, value: &Option<String>| match value {
            None => {
                errors.push(FieldError::new(
                    field,
                    "is required: the most that may pass in the fiscal year, in kg (\"0\" lets nothing pass)",
                ));
                None
            }
            Some(s) => Grams::parse_kg(s)
                .map_err(|e| errors.push(FieldError::new(field, e)))
                .ok(),
        };
        let acquire = kg("acquire_max_kg", &self.acquire_max_kg);
        let dispose = kg("dispose_max_kg", &self.dispose_max_kg);
        match (acquire, dispose) {
            (Some(a), Some(d)) if errors.is_empty() => Ok((a, d)),
            _ => Err(ApiError::Validation(errors)),
        }
    }
}

/// An element's ceilings for one fiscal year, with what has been used.
#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct CeilingView {
    pub element: String,
    pub fiscal_year: i32,
    pub acquire_max_kg: String,
    pub dispose_max_kg: String,
    pub acquired_kg: String,
    pub disposed_kg: String,
    pub acquire_headroom_kg: String,
    pub dispose_headroom_kg: String,
    /// First day of the fiscal year.
    pub fiscal_year_start: String,
    /// Last day of the fiscal year (inclusive).
    pub fiscal_year_end: String,
    pub updated_at: String,
    pub updated_by: String,
}

impl From<CeilingRecord> for CeilingView {
    fn from(c: CeilingRecord) -> Self {
        let kg = |g: i64| Grams(g).to_kg_string();
        let headroom =
            |max: i64, used: i64| super::model::headroom(Grams(max), Grams(used)).to_kg_string();
        CeilingView {
            acquire_headroom_kg: headroom(c.row.acquire_max_g, c.acquired_g),
            dispose_headroom_kg: headroom(c.row.dispose_max_g, c.disposed_g),
            acquire_max_kg: kg(c.row.acquire_max_g),
            dispose_max_kg: kg(c.row.dispose_max_g),
            acquired_kg: kg(c.acquired_g),
            disposed_kg: kg(c.disposed_g),
            fiscal_year_start: c.first_day.to_string(),
            fiscal_year_end: c.last_day.to_string(),
            updated_at: types::rfc3339(types::from_db(c.row.updated_at)),
            updated_by: c.row.updated_by,
            element: c.row.element,
            fiscal_year: c.row.fiscal_year,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::json::parse;

    fn fields(e: ApiError) -> Vec<String> {
        match e {
            ApiError::Validation(v) => v.into_iter().map(|f| f.field).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn a_policy_is_replaced_whole_and_null_means_no_limit() {
        let body: PolicyRequest = parse(
            br#"{"reserve_floor_kg": "1000", "consumption_kg_per_year": null,
                 "limited_drawdown_max_kg": "250.5", "limited_drawdown_max_days": 60,
                 "test_sale_max_kg": null}"#,
        )
        .unwrap();
        let p = body.validate().unwrap();
        assert_eq!(p.reserve_floor, Some(Grams(1_000_000)));
        assert_eq!(p.consumption_per_year, None);
        assert_eq!(p.limited_drawdown_max, Some(Grams(250_500)));
        assert_eq!(p.limited_drawdown_max_days.map(|d| d.get()), Some(60));
        let body: PolicyRequest = parse(br#"{"reserve_floor_kg": null}"#).unwrap();
        assert_eq!(
            fields(body.validate().unwrap_err()),
            vec![
                "consumption_kg_per_year",
                "limited_drawdown_max_kg",
                "limited_drawdown_max_days",
                "test_sale_max_kg"
            ]
        );
    }

    #[test]
    fn bad_policy_values_name_their_fields() {
        let body: PolicyRequest = parse(
            br#"{"reserve_floor_kg": "-1", "consumption_kg_per_year": "0.0001",
                 "limited_drawdown_max_kg": "1e3", "limited_drawdown_max_days": 0,
                 "test_sale_max_kg": "5"}"#,
        )
        .unwrap();
        assert_eq!(
            fields(body.validate().unwrap_err()),
            vec![
                "reserve_floor_kg",
                "consumption_kg_per_year",
                "limited_drawdown_max_kg",
                "limited_drawdown_max_days"
            ]
        );
        assert_eq!(
            fields(parse::<PolicyRequest>(br#"{"reserve_floor": "1"}"#).unwrap_err()),
            vec!["reserve_floor"]
        );
    }

    #[test]
    fn ceilings_need_both_sides() {
        let body: CeilingRequest =
            parse(br#"{"acquire_max_kg": "1000", "dispose_max_kg": "0"}"#).unwrap();
        assert_eq!(body.validate().unwrap(), (Grams(1_000_000), Grams(0)));
        let body: CeilingRequest = parse(br#"{"acquire_max_kg": null}"#).unwrap();
        assert_eq!(
            fields(body.validate().unwrap_err()),
            vec!["acquire_max_kg", "dispose_max_kg"]
        );
    }
}
