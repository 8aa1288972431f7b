//! A stored report as CSV (one section per table) and as a printable HTML
//! page. Both are read from the signed JSON; only the JSON is signed.

use serde_json::Value;

use super::reports::SECTIONS;

const PREFERRED: [&str; 22] = [
    "id",
    "order_id",
    "stockpile_id",
    "rule_id",
    "depot",
    "element",
    "form",
    "grade",
    "kind",
    "status",
    "opening_kg",
    "acquisitions_kg",
    "releases_kg",
    "transfers_in_kg",
    "transfers_out_kg",
    "loans_out_kg",
    "loan_returns_kg",
    "adjustments_kg",
    "closing_kg",
    "reconciles",
    "quantity_kg",
    "counted_kg",
];

/// A section's rows as (headers, cells): arrays of objects, or one object.
fn table(report: &Value, section: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let rows: Vec<&Value> = match &report[section] {
        Value::Array(items) => items.iter().collect(),
        obj @ Value::Object(_) => vec![obj],
        _ => Vec::new(),
    };
    let mut headers: Vec<String> = Vec::new();
    for r in &rows {
        if let Value::Object(map) = r {
            for k in map.keys() {
                if !headers.contains(k) {
                    headers.push(k.clone());
                }
            }
        }
    }
    // The stored JSON's keys are sorted; tables read better in this order.
    let rank = |h: &String| {
        PREFERRED
            .iter()
            .position(|p| p == h)
            .unwrap_or(PREFERRED.len())
    };
    headers.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
    let cells = rows
        .iter()
        .map(|r| {
            headers
                .iter()
                .map(|h| match &r[h.as_str()] {
                    Value::Null => String::new(),
                    Value::String(s) => s.clone(),
                    other @ (Value::Bool(_) | Value::Number(_)) => other.to_string(),
                    nested => nested.to_string(),
                })
                .collect()
        })
        .collect();
    (headers, cells)
}

/// CSV of one section, or of every section, each under a `# name` line.
pub fn csv(report: &Value, section: Option<&str>) -> anyhow::Result<String> {
    let sections: Vec<&str> = match section {
        Some(s) => vec![s],
        None => SECTIONS.to_vec(),
    };
    let mut out = String::new();
    for (i, s) in sections.iter().enumerate() {
        let (headers, rows) = table(report, s);
        if section.is_none() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&format!("# {s}\n"));
        }
        let mut w = csv::Writer::from_writer(Vec::new());
        if !headers.is_empty() {
            w.write_record(&headers)?;
        }
        for r in rows {
            w.write_record(r.iter().map(|c| crate::http::csv::neutralise(c)))?;
        }
        out.push_str(&String::from_utf8(w.into_inner()?)?);
    }
    Ok(out)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn html_table(out: &mut String, report: &Value, section: &str) {
    let (headers, rows) = table(report, section);
    out.push_str(&format!("<h2>{}</h2>\n", esc(&section.replace('_', " "))));
    if rows.is_empty() {
        out.push_str("<p class=\"none\">None in this period.</p>\n");
        return;
    }
    out.push_str("<table><thead><tr>");
    for h in &headers {
        out.push_str(&format!("<th>{}</th>", esc(h)));
    }
    out.push_str("</tr></thead><tbody>\n");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            out.push_str(&format!("<td>{}</td>", esc(&c)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
}

/// A readable, printable page: the reserve's name, the period, totals per
/// element, then every table.
pub fn html(id: i64, document: &Value) -> String {
    let report = &document["report"];
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let name = s(&report["reserve"]);
    let mut out = String::new();
    out.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    out.push_str(&format!(
        "<title>{} — audit report {id}</title>\n",
        esc(&name)
    ));
    out.push_str(
        "<style>body{font-family:system-ui,sans-serif;margin:2em;color:#111}\
         table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.85em}\
         th,td{border:1px solid #999;padding:0.2em 0.5em;text-align:left}\
         th{background:#eee}td{font-variant-numeric:tabular-nums}\
         .ok{color:#060}.bad{color:#a00;font-weight:bold}.none{color:#666}\
         @media print{body{margin:0}h2{page-break-after:avoid}table{page-break-inside:auto}}\
         </style></head><body>\n",
    );
    out.push_str(&format!("<h1>{}</h1>\n", esc(&name)));
    out.push_str(&format!(
        "<p>Audit report {id} ({}) for the period {} to {}.<br>Generated {} by {} with {} {}.</p>\n",
        esc(&s(&report["period"]["schedule"])),
        esc(&s(&report["period"]["start"])),
        esc(&s(&report["period"]["end"])),
        esc(&s(&report["generated_at"])),
        esc(&s(&report["generated_by"])),
        esc(&s(&report["generator"]["name"])),
        esc(&s(&report["generator"]["version"])),
    ));
    let reconciles = report["reconciliation"]["ok"].as_bool() == Some(true);
    let verified = report["chain"]["verification"]["ok"].as_bool() == Some(true);
    let mark = |ok: bool, yes: &str, no: &str| {
        if ok {
            format!("<span class=\"ok\">{yes}</span>")
        } else {
            format!("<span class=\"bad\">{no}</span>")
        }
    };
    out.push_str(&format!(
        "<p>Reconciliation (opening + movements = closing): {}. Ledger verification: {}.</p>\n",
        mark(reconciles, "holds", "FAILS"),
        mark(verified, "passed", "FAILED")
    ));
    out.push_str(&format!(
        "<p>Signed with Ed25519 key <code>{}</code>; signature <code>{}</code>. Check the JSON form (<code>?format=json</code>) with <code>reserve audit verify</code>.</p>\n",
        esc(&s(&document["signature"]["public_key"])),
        esc(&s(&document["signature"]["value"])),
    ));
    out.push_str("<h2>Totals per element</h2>\n");
    let mut totals = String::new();
    html_table(&mut totals, report, "elements");
    // Drop the repeated heading html_table writes.
    out.push_str(totals.split_once('\n').map(|x| x.1).unwrap_or(&totals));
    for section in SECTIONS.iter().filter(|s| **s != "elements") {
        html_table(&mut out, report, section);
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_has_one_section_per_table_and_html_escapes() {
        let report = json!({
            "reserve": "R <&>",
            "stockpiles": [{"stockpile_id": 1, "closing_kg": "1.000", "note": "=cmd"}],
            "elements": [],
            "chain": {"last_sequence": 3, "latest_checkpoint": null},
        });
        let all = csv(&report, None).unwrap();
        assert!(
            all.starts_with("# stockpiles\nstockpile_id,closing_kg,note\n1,1.000,'=cmd\n"),
            "{all}"
        );
        assert!(
            all.contains("# chain\nlast_sequence,latest_checkpoint\n3,\n"),
            "{all}"
        );
        let one = csv(&report, Some("chain")).unwrap();
        assert_eq!(one, "last_sequence,latest_checkpoint\n3,\n");
        let page = html(7, &json!({"report": report, "signature": {}}));
        assert!(page.contains("<h1>R &lt;&amp;&gt;</h1>"));
        assert!(!page.contains("<&>"));
    }
}
