//! Depot request and response bodies.

use serde::{Deserialize, Serialize};

use super::model::{utilisation_pct, DepotCode};
use super::repo::DepotRow;
use crate::db::types::{self, Grams};
use crate::error::{ApiError, FieldError};
use crate::http::check_text;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDepotRequest {
    pub code: String,
    pub name: String,
    pub region: String,
    pub capacity_kg: String,
    pub max_drawdown_kg_per_day: String,
}

#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PatchDepotRequest {
    pub name: Option<String>,
    pub region: Option<String>,
    pub capacity_kg: Option<String>,
    pub max_drawdown_kg_per_day: Option<String>,
}

/// A validated new depot.
pub struct NewDepot {
    pub code: DepotCode,
    pub name: String,
    pub region: String,
    pub capacity: Grams,
    pub max_drawdown_per_day: Grams,
}

/// Validated changes; `None` leaves a field as it is.
#[derive(Default)]
pub struct DepotChanges {
    pub name: Option<String>,
    pub region: Option<String>,
    pub capacity: Option<Grams>,
    pub max_drawdown_per_day: Option<Grams>,
}

fn parse_kg(errors: &mut Vec<FieldError>, field: &str, value: &str) -> Grams {
    Grams::parse_kg(value).unwrap_or_else(|e| {
        errors.push(FieldError::new(field, e));
        Grams::ZERO
    })
}

fn required_text(errors: &mut Vec<FieldError>, field: &str, value: &str, max: usize) -> String {
    check_text(errors, field, &Some(value.to_string()), max).unwrap_or_default()
}

impl CreateDepotRequest {
    pub fn validate(&self) -> Result<NewDepot, ApiError> {
        let mut errors = Vec::new();
        let code = DepotCode::parse(&self.code)
            .map_err(|e| errors.push(FieldError::new("code", e)))
            .ok();
        let name = required_text(&mut errors, "name", &self.name, 200);
        let region = required_text(&mut errors, "region", &self.region, 200);
        let capacity = parse_kg(&mut errors, "capacity_kg", &self.capacity_kg);
        let max_drawdown_per_day = parse_kg(
            &mut errors,
            "max_drawdown_kg_per_day",
            &self.max_drawdown_kg_per_day,
        );
        match code {
            Some(code) if errors.is_empty() => Ok(NewDepot {
                code,
                name,
                region,
                capacity,
                max_drawdown_per_day,
            }),
            _ => Err(ApiError::Validation(errors)),
        }
    }
}

impl PatchDepotRequest {
    pub fn validate(&self) -> Result<DepotChanges, ApiError> {
        let mut errors = Vec::new();
        let changes = DepotChanges {
            name: self
                .name
                .as_ref()
                .map(|v| required_text(&mut errors, "name", v, 200)),
            region: self
                .region
                .as_ref()
                .map(|v| required_text(&mut errors, "region", v, 200)),
            capacity: self
                .capacity_kg
                .as_ref()
                .map(|v| parse_kg(&mut errors, "capacity_kg", v)),
            max_drawdown_per_day: self
                .max_drawdown_kg_per_day
                .as_ref()
                .map(|v| parse_kg(&mut errors, "max_drawdown_kg_per_day", v)),
        };
        if self.name.is_none()
            && self.region.is_none()
            && self.capacity_kg.is_none()
            && self.max_drawdown_kg_per_day.is_none()
        {
            errors.push(FieldError::new("body", "name at least one field to change"));
        }
        if errors.is_empty() {
            Ok(changes)
        } else {
            Err(ApiError::Validation(errors))
        }
    }
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct DepotView {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub region: String,
    pub status: String,
    pub capacity_kg: String,
    pub max_drawdown_kg_per_day: String,
    pub on_hand_kg: String,
    pub free_capacity_kg: String,
    pub utilisation_pct: String,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl From<DepotRow> for DepotView {
    fn from(r: DepotRow) -> Self {
        let time = |t| types::rfc3339(types::from_db(t));
        DepotView {
            id: r.id,
            code: r.code,
            name: r.name,
            region: r.region,
            status: r.status,
            capacity_kg: Grams(r.capacity_g).to_kg_string(),
            max_drawdown_kg_per_day: Grams(r.max_drawdown_g_per_day).to_kg_string(),
            on_hand_kg: Grams(r.on_hand_g).to_kg_string(),
            free_capacity_kg: Grams(r.capacity_g - r.on_hand_g).to_kg_string(),
            utilisation_pct: utilisation_pct(r.on_hand_g, r.capacity_g),
            version: r.version,
            created_at: time(r.created_at),
            updated_at: time(r.updated_at),
        }
    }
}

impl DepotView {
    /// Strong validator over the depot's own attributes (not its stock, which
    /// changes with every posting and is not what If-Match protects).
    pub fn etag(&self) -> String {
        etag(self.id, self.version)
    }
}

pub fn etag(id: i64, version: i64) -> String {
    format!("\"depot-{id}-v{version}\"")
}
