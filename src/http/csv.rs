//! CSV answers for lists (`Accept: text/csv` or `?format=csv`), with spreadsheet
//! formula injection neutralised.

use actix_web::{http::header, HttpRequest, HttpResponse};

use crate::error::{ApiError, FieldError};

/// True when the client asked for CSV; `format` wins over `Accept`.
pub fn wants_csv(req: &HttpRequest, format: Option<&str>) -> Result<bool, ApiError> {
    match format {
        Some("csv") => return Ok(true),
        Some("json") => return Ok(false),
        Some(_) => {
            return Err(ApiError::Validation(vec![FieldError::new(
                "format",
                "must be \"json\" or \"csv\"",
            )]))
        }
        None => {}
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    Ok(accept.split(',').any(|part| {
        part.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("text/csv")
    }))
}

/// A cell that a spreadsheet would read as a formula (`=`, `+`, `-`, `@`, tab or
/// carriage return first) gets a leading apostrophe (OWASP's advice). Signed
/// numbers such as `-12.500` are left alone: they are data, not formulas.
pub fn neutralise(cell: &str) -> String {
    let first = cell.chars().next();
    let is_number = !cell.is_empty()
        && cell
            .trim_start_matches(['-', '+'])
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.')
        && cell.chars().filter(|c| *c == '.').count() <= 1
        && cell.len() > 1;
    match first {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') if !is_number => format!("'{cell}"),
        _ => cell.to_string(),
    }
}

/// Writes `rows` under `headers` as a CSV response; `next_cursor` goes in a header.
pub fn respond(
    headers: &[&str],
    rows: Vec<Vec<String>>,
    next_cursor: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(headers).map_err(ApiError::internal)?;
    for row in rows {
        w.write_record(row.iter().map(|c| neutralise(c)))
            .map_err(ApiError::internal)?;
    }
    let body = w
        .into_inner()
        .map_err(|e| ApiError::internal(anyhow::anyhow!("{e}")))?;
    let mut response = HttpResponse::Ok();
    response.insert_header((header::CONTENT_TYPE, "text/csv; charset=utf-8"));
    if let Some(c) = next_cursor {
        response.insert_header(("X-Next-Cursor", c));
    }
    Ok(response.body(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_numbers_kept() {
        assert_eq!(neutralise("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(neutralise("+1+1"), "'+1+1");
        assert_eq!(neutralise("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(neutralise("-2+3"), "'-2+3");
        assert_eq!(neutralise("-"), "'-");
        assert_eq!(neutralise("-12.500"), "-12.500");
        assert_eq!(neutralise("BOL-77"), "BOL-77");
    }
}
