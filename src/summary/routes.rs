//! Totals per element (with form and depot breakdowns) and per depot.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::auth::AuthUser;
use crate::db::schema::{depots, elements, ledger_head, stockpiles};
use crate::db::types::{self, Grams};
use crate::db::DbConn;
use crate::depots::model::utilisation_pct;
use crate::error::ApiResult;
use crate::AppState;

#[derive(Debug, Serialize, Deserialize)]
pub struct Amount {
    pub on_hand_kg: String,
    pub element_mass_kg: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ElementSummary {
    pub element: String,
    pub name: String,
    pub class: String,
    pub on_hand_kg: String,
    pub reserved_kg: String,
    pub available_kg: String,
    /// Contained element mass of every form held, truncated to the gram.
    pub element_mass_kg: String,
    pub by_form: BTreeMap<String, Amount>,
    pub by_depot: BTreeMap<String, Amount>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DepotSummary {
    pub depot: String,
    pub name: String,
    pub region: String,
    pub status: String,
    pub on_hand_kg: String,
    pub capacity_kg: String,
    pub free_capacity_kg: String,
    pub utilisation_pct: String,
    pub stockpiles: i64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Totals {
    pub on_hand_kg: String,
    pub element_mass_kg: String,
    pub capacity_kg: String,
    pub utilisation_pct: String,
    pub depots: i64,
    pub stockpiles: i64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Summary {
    pub generated_at: String,
    /// The newest ledger sequence these figures include.
    pub last_sequence: i64,
    pub totals: Totals,
    pub elements: Vec<ElementSummary>,
    pub depots: Vec<DepotSummary>,
    /// Physical counts beyond tolerance still awaiting a decision.
    pub open_flagged_counts: FlaggedCounts,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FlaggedCounts {
    pub total: i64,
    /// The oldest few, so a dashboard can link to them.
    pub items: Vec<FlaggedCount>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FlaggedCount {
    pub id: i64,
    pub depot: String,
    pub element: String,
    pub form: String,
    pub grade: String,
    pub counted_at: String,
    pub book_kg: String,
    pub counted_kg: String,
    pub variance_kg: String,
}

/// Sums per element. Element masses are kept in gram·ppm (exact) and truncated
/// to the gram only when shown, so a total never differs from the sum of its
/// parts by rounding.
#[derive(Default)]
struct Acc {
    on_hand: i128,
    reserved: i128,
    mass: i128,
    by_form: BTreeMap<String, (i128, i128)>,
    by_depot: BTreeMap<String, (i128, i128)>,
}

/// Sums are `i128`: many large depots together exceed `i64` grams.
fn kg(grams: i128) -> String {
    types::kg_string_wide(grams)
}

fn mass_kg(mass_gram_ppm: i128) -> String {
    kg(mass_gram_ppm / 1_000_000)
}

fn amount((on_hand, mass): (i128, i128)) -> Amount {
    Amount {
        on_hand_kg: kg(on_hand),
        element_mass_kg: mass_kg(mass),
    }
}

pub fn build(conn: &mut DbConn) -> ApiResult<Summary> {
    // One read transaction, so the totals are consistent with each other and
    // with last_sequence.
    crate::db::read_transaction(conn, |conn| {
        let last_sequence: i64 = ledger_head::table
            .select(ledger_head::last_sequence)
            .first(conn)?;
        let factors = crate::elements::repo::factors(conn)?;
        let element_rows: Vec<(String, String, String)> = elements::table
            .order(elements::atomic_number.asc())
            .select((elements::symbol, elements::name, elements::class))
            .load(conn)?;
        let depot_rows: Vec<(i64, String, String, String, String, i64, i64)> = depots::table
            .order(depots::code.asc())
            .select((
                depots::id,
                depots::code,
                depots::name,
                depots::region,
                depots::status,
                depots::on_hand_g,
                depots::capacity_g,
            ))
            .load(conn)?;
        let stock: Vec<(i64, String, String, i64, i64)> = stockpiles::table
            .select((
                stockpiles::depot_id,
                stockpiles::element,
                stockpiles::form,
                stockpiles::on_hand_g,
                stockpiles::reserved_g,
            ))
            .load(conn)?;
        let codes: BTreeMap<i64, String> = depot_rows.iter().map(|d| (d.0, d.1.clone())).collect();
        let mut per_element: BTreeMap<String, Acc> = BTreeMap::new();
        let mut stockpiles_per_depot: BTreeMap<i64, i64> = BTreeMap::new();
        for (depot_id, element, form, on_hand, reserved) in &stock {
            let ppm = factors
                .get(&(element.clone(), form.clone()))
                .copied()
                .unwrap_or(1_000_000);
            let mass = *on_hand as i128 * ppm as i128;
            let acc = per_element.entry(element.clone()).or_default();
            acc.on_hand += *on_hand as i128;
            acc.reserved += *reserved as i128;
            acc.mass += mass;
            let f = acc.by_form.entry(form.clone()).or_default();
            f.0 += *on_hand as i128;
            f.1 += mass;
            let d = acc
                .by_depot
                .entry(codes.get(depot_id).cloned().unwrap_or_default())
                .or_default();
            d.0 += *on_hand as i128;
            d.1 += mass;
            *stockpiles_per_depot.entry(*depot_id).or_default() += 1;
        }
        let mut total_mass = 0;
        let elements = element_rows
            .into_iter()
            .map(|(symbol, name, class)| {
                let acc = per_element.remove(&symbol).unwrap_or_default();
                total_mass += acc.mass;
                ElementSummary {
                    element: symbol,
                    name,
                    class,
                    on_hand_kg: kg(acc.on_hand),
                    reserved_kg: kg(acc.reserved),
                    available_kg: kg(acc.on_hand - acc.reserved),
                    element_mass_kg: mass_kg(acc.mass),
                    by_form: acc
                        .by_form
                        .into_iter()
                        .map(|(k, v)| (k, amount(v)))
                        .collect(),
                    by_depot: acc
                        .by_depot
                        .into_iter()
                        .map(|(k, v)| (k, amount(v)))
                        .collect(),
                }
            })
            .collect();
        let total_on_hand: i128 = depot_rows.iter().map(|d| d.5 as i128).sum();
        let total_capacity: i128 = depot_rows.iter().map(|d| d.6 as i128).sum();
        let depots = depot_rows
            .iter()
            .map(
                |(id, code, name, region, status, on_hand, capacity)| DepotSummary {
                    depot: code.clone(),
                    name: name.clone(),
                    region: region.clone(),
                    status: status.clone(),
                    on_hand_kg: Grams(*on_hand).to_kg_string(),
                    capacity_kg: Grams(*capacity).to_kg_string(),
                    free_capacity_kg: Grams(capacity - on_hand).to_kg_string(),
                    utilisation_pct: utilisation_pct(*on_hand, *capacity),
                    stockpiles: stockpiles_per_depot.get(id).copied().unwrap_or(0),
                },
            )
            .collect();
        let (flagged_total, flagged) = crate::audit::counts::open_flagged(conn, 20)?;
        let open_flagged_counts = FlaggedCounts {
            total: flagged_total,
            items: flagged
                .into_iter()
                .map(|(c, depot)| FlaggedCount {
                    id: c.id,
                    depot,
                    element: c.element,
                    form: c.form,
                    grade: c.grade,
                    counted_at: types::rfc3339(types::from_db(c.counted_at)),
                    book_kg: Grams(c.book_g).to_kg_string(),
                    counted_kg: Grams(c.counted_g).to_kg_string(),
                    variance_kg: Grams(c.variance_g).to_kg_string(),
                })
                .collect(),
        };
        Ok(Summary {
            generated_at: types::rfc3339(types::now()),
            last_sequence,
            totals: Totals {
                on_hand_kg: kg(total_on_hand),
                element_mass_kg: mass_kg(total_mass),
                capacity_kg: kg(total_capacity),
                utilisation_pct: utilisation_pct(total_on_hand, total_capacity),
                depots: depot_rows.len() as i64,
                stockpiles: stock.len() as i64,
            },
            elements,
            depots,
            open_flagged_counts,
        })
    })
}

pub async fn get(state: web::Data<AppState>, _user: AuthUser) -> ApiResult<HttpResponse> {
    let summary = state.db(build).await?;
    Ok(HttpResponse::Ok().json(summary))
}
