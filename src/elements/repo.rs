//! Reads of the seeded reference data.

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{element_forms, elements};
use crate::db::DbConn;
use crate::error::ApiResult;

#[derive(Debug, Serialize)]
pub struct ElementView {
    pub symbol: String,
    pub name: String,
    pub atomic_number: i32,
    pub class: String,
    pub forms: Vec<FormFactor>,
}

#[derive(Debug, Serialize)]
pub struct FormFactor {
    pub form: String,
    pub formula: String,
    /// Fraction of the form's mass that is the element, as a decimal string.
    pub element_mass_factor: String,
}

pub fn list(conn: &mut DbConn, symbol: Option<&str>) -> ApiResult<Vec<ElementView>> {
    let mut q = elements::table.into_boxed();
    if let Some(s) = symbol {
        q = q.filter(elements::symbol.eq(s.to_string()));
    }
    let rows: Vec<(String, String, i32, String)> = q
        .order(elements::atomic_number.asc())
        .select((
            elements::symbol,
            elements::name,
            elements::atomic_number,
            elements::class,
        ))
        .load(conn)?;
    let factors: Vec<(String, String, String, i64)> = element_forms::table
        .select((
            element_forms::element,
            element_forms::form,
            element_forms::formula,
            element_forms::element_mass_ppm,
        ))
        .order((element_forms::element.asc(), element_forms::form.asc()))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(symbol, name, atomic_number, class)| {
            let forms = factors
                .iter()
                .filter(|f| f.0 == symbol)
                .map(|(_, form, formula, ppm)| FormFactor {
                    form: form.clone(),
                    formula: formula.clone(),
                    element_mass_factor: rust_decimal::Decimal::new(*ppm, 6)
                        .normalize()
                        .to_string(),
                })
                .collect();
            ElementView {
                symbol,
                name,
                atomic_number,
                class,
                forms,
            }
        })
        .collect())
}

/// Element-mass factor (ppm) of every element–form pair.
pub fn factors(conn: &mut DbConn) -> ApiResult<std::collections::HashMap<(String, String), i64>> {
    let rows: Vec<(String, String, i64)> = element_forms::table
        .select((
            element_forms::element,
            element_forms::form,
            element_forms::element_mass_ppm,
        ))
        .load(conn)?;
    Ok(rows.into_iter().map(|(e, f, p)| ((e, f), p)).collect())
}
