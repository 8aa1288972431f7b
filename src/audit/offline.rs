//! What `reserve audit verify` checks, with nothing but the downloaded report
//! (and, optionally, a ledger export and the public key): the signature over
//! the report's canonical JSON, the report's internal reconciliation, and the
//! chain head it states against the export's recomputed chains.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde_json::Value;

use super::merkle::{self, Head};
use super::signing::{self, canonical_json};
use crate::ledger::chain::{ChainedFields, StockpileIdentity, GENESIS};

/// One check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

fn check(name: &'static str, result: Result<String, String>) -> Check {
    match result {
        Ok(detail) => Check {
            name,
            ok: true,
            detail,
        },
        Err(detail) => Check {
            name,
            ok: false,
            detail,
        },
    }
}

const MOVEMENTS: [&str; 7] = [
    "acquisitions_kg",
    "releases_kg",
    "transfers_in_kg",
    "transfers_out_kg",
    "loans_out_kg",
    "loan_returns_kg",
    "adjustments_kg",
];

fn dec(v: &Value, field: &str) -> Result<Decimal, String> {
    v[field]
        .as_str()
        .and_then(|s| s.parse::<Decimal>().ok())
        .ok_or_else(|| format!("{field} is not a decimal string"))
}

/// The signature and the reconciliation of a served report document
/// (`{"report", "signature"}`). `pinned_key` (base64) is the key obtained
/// separately; without it the key the document names is used, which proves
/// integrity but not origin.
pub fn verify_document(doc: &Value, pinned_key: Option<&str>) -> Vec<Check> {
    let report = &doc["report"];
    let canonical = canonical_json(report);
    let mut checks = Vec::new();
    let key = pinned_key
        .map(str::to_string)
        .or_else(|| doc["signature"]["public_key"].as_str().map(str::to_string))
        .unwrap_or_default();
    checks.push(check(
        "signature",
        signing::verify(
            &key,
            canonical.as_bytes(),
            doc["signature"]["value"].as_str().unwrap_or(""),
        )
        .map(|()| {
            if pinned_key.is_some() {
                format!("Ed25519 signature verifies under the pinned key {key}")
            } else {
                format!("Ed25519 signature verifies under the key the document names ({key}); pass --public-key to pin the reserve's key")
            }
        }),
    ));
    if let Some(sha) = doc["signature"]["body_sha256"].as_str() {
        use sha2::{Digest, Sha256};
        let actual = hex::encode(Sha256::digest(canonical.as_bytes()));
        checks.push(check(
            "body_sha256",
            if actual == sha {
                Ok(format!("SHA-256 of the canonical report is {sha}"))
            } else {
                Err(format!(
                    "the canonical report hashes to {actual}, not {sha}"
                ))
            },
        ));
    }
    checks.push(check("reconciliation", reconcile(report)));
    checks
}

/// opening + movements = closing for every stockpile and element, element
/// totals are the sums of their stockpiles, and the stated outcome agrees.
fn reconcile(report: &Value) -> Result<String, String> {
    let rows = report["stockpiles"]
        .as_array()
        .ok_or("the report has no stockpiles section")?;
    let mut totals: BTreeMap<String, Vec<Decimal>> = BTreeMap::new();
    for r in rows {
        let mut values = vec![dec(r, "opening_kg")?];
        for m in MOVEMENTS {
            values.push(dec(r, m)?);
        }
        values.push(dec(r, "closing_kg")?);
        let moved: Decimal = values[1..=MOVEMENTS.len()].iter().sum();
        if values[0] + moved != values[values.len() - 1] {
            return Err(format!(
                "stockpile {}: opening {} + movements {} != closing {}",
                r["stockpile_id"],
                values[0],
                moved,
                values[values.len() - 1]
            ));
        }
        let element = r["element"].as_str().unwrap_or("").to_string();
        let t = totals
            .entry(element)
            .or_insert_with(|| vec![Decimal::ZERO; values.len()]);
        for (acc, v) in t.iter_mut().zip(&values) {
            *acc += v;
        }
    }
    let elements = report["elements"].as_array().ok_or("no elements section")?;
    if elements.len() != totals.len() {
        return Err("the element totals do not list the stockpiles' elements".into());
    }
    for e in elements {
        let element = e["element"].as_str().unwrap_or("");
        let sums = totals
            .get(element)
            .ok_or_else(|| format!("element {element} has totals but no stockpiles"))?;
        let mut fields = vec!["opening_kg"];
        fields.extend(MOVEMENTS);
        fields.push("closing_kg");
        for (f, expected) in fields.iter().zip(sums) {
            if dec(e, f)? != *expected {
                return Err(format!(
                    "element {element}: {f} is {} but its stockpiles sum to {expected}",
                    e[*f]
                ));
            }
        }
    }
    if report["reconciliation"]["ok"].as_bool() != Some(true) {
        return Err("the report itself states that it does not reconcile".into());
    }
    Ok(format!(
        "opening + movements = closing for {} stockpiles and {} elements",
        rows.len(),
        elements.len()
    ))
}

fn grams(kg: &str, scale: u32) -> Result<i64, String> {
    let d: Decimal = kg.parse().map_err(|_| format!("{kg:?} is not a decimal"))?;
    let scaled = d * Decimal::from(10i64.pow(scale));
    if scaled.fract() != Decimal::ZERO {
        return Err(format!("{kg:?} is finer than the ledger stores"));
    }
    use rust_decimal::prelude::ToPrimitive;
    scaled
        .to_i64()
        .ok_or_else(|| format!("{kg:?} is out of range"))
}

fn micros(t: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|t| t.timestamp_micros())
        .map_err(|_| format!("{t:?} is not an RFC 3339 time"))
}

/// Recomputes every chain in an auditor's ledger export (`GET
/// /api/v1/ledger?format=csv&order=asc`, all pages) and checks the report's
/// chain head, heads Merkle root and closing balances against it.
pub fn verify_against_export(report: &Value, export: &str) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut reader = csv::Reader::from_reader(export.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            checks.push(check("export", Err(format!("not CSV: {e}"))));
            return checks;
        }
    };
    let col = |name: &str| headers.iter().position(|h| h == name);
    let last_sequence = report["chain"]["last_sequence"].as_i64().unwrap_or(0);
    let end = report["period"]["end"]
        .as_str()
        .and_then(|t| micros(t).ok());
    // Per stockpile: (entries, balance, hash, last sequence, identity).
    let mut heads: BTreeMap<i64, Head> = BTreeMap::new();
    let mut closing: BTreeMap<i64, i64> = BTreeMap::new();
    let mut chained = BTreeMap::<i64, String>::new();
    let mut entries = 0i64;
    let mut head_hash_at_last = None;
    let mut problem = None;
    for (i, record) in reader.records().enumerate() {
        let row = match record {
            Ok(r) => r,
            Err(e) => {
                problem = Some(format!("row {}: {e}", i + 1));
                break;
            }
        };
        let get = |name: &str| col(name).and_then(|c| row.get(c)).unwrap_or("");
        let opt = |name: &str| Some(get(name)).filter(|v| !v.is_empty());
        let parsed = (|| -> Result<(i64, i64, String, i64, i64), String> {
            let sequence: i64 = get("sequence").parse().map_err(|_| "bad sequence")?;
            let stockpile_id: i64 = get("stockpile_id")
                .parse()
                .map_err(|_| "bad stockpile_id")?;
            let quantity_g = grams(get("quantity_kg"), 3)?;
            let balance_after_g = grams(get("balance_after_kg"), 3)?;
            let unit_price = opt("unit_price").map(|p| grams(p, 6)).transpose()?;
            let order_id = opt("order_id")
                .map(|o| o.parse::<i64>().map_err(|_| "bad order_id".to_string()))
                .transpose()?;
            if opt("actor").is_none() || opt("idempotency_key").is_none() {
                return Err(
                    "the export lacks actor or idempotency_key: export it with an auditor's token"
                        .into(),
                );
            }
            let prev = chained
                .get(&stockpile_id)
                .cloned()
                .unwrap_or_else(|| GENESIS.to_string());
            if get("prev_hash") != prev {
                return Err(format!(
                    "entry {sequence}: prev_hash does not follow its stockpile's chain"
                ));
            }
            let fields = ChainedFields {
                sequence,
                stockpile_id,
                identity: StockpileIdentity {
                    depot: get("depot"),
                    element: get("element"),
                    form: get("form"),
                    grade: get("grade"),
                },
                kind: get("kind"),
                quantity_g,
                balance_after_g,
                occurred_at_micros: micros(get("occurred_at"))?,
                recorded_at_micros: micros(get("recorded_at"))?,
                actor: get("actor"),
                reference: opt("reference"),
                counterparty: opt("counterparty"),
                origin_country: opt("origin_country"),
                unit_price_micros: unit_price,
                currency: opt("currency"),
                note: opt("note"),
                idempotency_key: get("idempotency_key"),
                movement_id: get("movement_id"),
                order_id,
            };
            let hash = fields.hash(&prev);
            if hash != get("hash") {
                return Err(format!(
                    "entry {sequence}: its hash does not match its contents"
                ));
            }
            Ok((sequence, stockpile_id, hash, quantity_g, balance_after_g))
        })();
        let (sequence, stockpile_id, hash, quantity_g, balance) = match parsed {
            Ok(v) => v,
            Err(e) => {
                problem = Some(e);
                break;
            }
        };
        entries += 1;
        chained.insert(stockpile_id, hash.clone());
        if sequence > last_sequence {
            continue;
        }
        if sequence == last_sequence {
            head_hash_at_last = Some(hash.clone());
        }
        let h = heads.entry(stockpile_id).or_insert(Head {
            stockpile_id,
            last_sequence: 0,
            entry_count: 0,
            balance_g: 0,
            head_hash: String::new(),
        });
        h.last_sequence = sequence;
        h.entry_count += 1;
        h.balance_g = balance;
        h.head_hash = hash;
        let occurred = micros(get_field(&row, col("occurred_at"))).unwrap_or(i64::MAX);
        if end.is_some_and(|end| occurred <= end) {
            *closing.entry(stockpile_id).or_default() += quantity_g;
        }
    }
    checks.push(check(
        "export_chains",
        match problem {
            Some(p) => Err(p),
            None => Ok(format!("recomputed {entries} entry hashes from the export")),
        },
    ));
    let stated = report["chain"]["last_entry_hash"]
        .as_str()
        .map(str::to_string);
    checks.push(check(
        "chain_head",
        if stated == head_hash_at_last {
            Ok(format!(
                "the report's chain head (sequence {last_sequence}, hash {}) is in the export",
                stated.unwrap_or_else(|| "none".into())
            ))
        } else {
            Err(format!(
                "the report names hash {stated:?} at sequence {last_sequence}; the export has {head_hash_at_last:?}"
            ))
        },
    ));
    let leaves: Vec<[u8; 32]> = heads.values().map(Head::leaf_hash).collect();
    let root = hex::encode(merkle::root(&leaves));
    checks.push(check(
        "heads_merkle_root",
        if report["chain"]["heads_merkle_root"].as_str() == Some(root.as_str()) {
            Ok(format!("the {} stockpile heads give root {root}", heads.len()))
        } else {
            Err(format!(
                "the export's heads at sequence {last_sequence} give root {root}, not the report's {}",
                report["chain"]["heads_merkle_root"]
            ))
        },
    ));
    let mut mismatch = None;
    for r in report["stockpiles"].as_array().into_iter().flatten() {
        let id = r["stockpile_id"].as_i64().unwrap_or(0);
        let stated = r["closing_kg"].as_str().and_then(|k| grams(k, 3).ok());
        let actual = closing.get(&id).copied().unwrap_or(0);
        if stated != Some(actual) {
            mismatch = Some(format!(
                "stockpile {id}: the report closes at {} but the export's entries to the period end sum to {actual} g",
                r["closing_kg"]
            ));
            break;
        }
    }
    checks.push(check(
        "closing_balances",
        match mismatch {
            Some(m) => Err(m),
            None => {
                Ok("every closing balance equals the export's entries up to the period end".into())
            }
        },
    ));
    checks
}

fn get_field(row: &csv::StringRecord, col: Option<usize>) -> &str {
    col.and_then(|c| row.get(c)).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::signing::AuditKey;
    use serde_json::json;

    fn signed(report: Value, key: &AuditKey) -> Value {
        let sig = key.sign(canonical_json(&report).as_bytes());
        json!({"report": report, "signature": {"public_key": key.public_base64(), "value": sig}})
    }

    fn report() -> Value {
        json!({
            "stockpiles": [{"stockpile_id": 1, "element": "Nd", "opening_kg": "10.000",
                "acquisitions_kg": "5.000", "releases_kg": "-2.500", "transfers_in_kg": "0.000",
                "transfers_out_kg": "0.000", "loans_out_kg": "0.000", "loan_returns_kg": "0.000",
                "adjustments_kg": "-0.500", "closing_kg": "12.000"}],
            "elements": [{"element": "Nd", "opening_kg": "10.000",
                "acquisitions_kg": "5.000", "releases_kg": "-2.500", "transfers_in_kg": "0.000",
                "transfers_out_kg": "0.000", "loans_out_kg": "0.000", "loan_returns_kg": "0.000",
                "adjustments_kg": "-0.500", "closing_kg": "12.000"}],
            "reconciliation": {"ok": true},
        })
    }

    #[test]
    fn an_untouched_report_passes_and_one_changed_digit_fails() {
        let key = AuditKey::from_seed([3; 32]);
        let doc = signed(report(), &key);
        assert!(verify_document(&doc, Some(&key.public_base64()))
            .iter()
            .all(|c| c.ok));
        let text = doc.to_string().replace("12.000", "13.000");
        let tampered: Value = serde_json::from_str(&text).unwrap();
        let checks = verify_document(&tampered, Some(&key.public_base64()));
        assert!(!checks[0].ok, "signature");
        assert!(
            !checks
                .iter()
                .find(|c| c.name == "reconciliation")
                .unwrap()
                .ok
        );
        // Another key cannot vouch for it.
        let other = AuditKey::from_seed([4; 32]);
        assert!(!verify_document(&doc, Some(&other.public_base64()))[0].ok);
    }

    #[test]
    fn a_resigned_report_that_does_not_add_up_still_fails() {
        let key = AuditKey::from_seed([3; 32]);
        let mut r = report();
        r["stockpiles"][0]["closing_kg"] = json!("12.001");
        let checks = verify_document(&signed(r, &key), None);
        assert!(checks[0].ok);
        assert!(!checks[1].ok);
    }
}
