//! `openapi.yaml` must describe exactly the routes the app serves.

use std::collections::BTreeSet;

use serde_yaml::Value;

fn spec() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml"))
        .expect("openapi.yaml");
    serde_yaml::from_str(&text).expect("openapi.yaml is YAML")
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

#[test]
fn spec_and_route_table_list_the_same_operations() {
    let spec = spec();
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_mapping().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                documented.insert((method.to_string(), path.as_str().unwrap().to_string()));
            }
        }
    }
    let served: BTreeSet<(String, String)> = reserve::routes::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let phantom: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served but not in openapi.yaml: {undocumented:?}"
    );
    assert!(
        phantom.is_empty(),
        "in openapi.yaml but not served: {phantom:?}"
    );
}

/// Every `$ref` resolves, every operation documents its errors as problem
/// documents, and every write declares its Idempotency-Key.
#[test]
fn spec_is_internally_consistent() {
    let spec = spec();
    let mut refs = Vec::new();
    collect_refs(&spec, &mut refs);
    for r in &refs {
        let pointer = r
            .strip_prefix("#/")
            .unwrap_or_else(|| panic!("external $ref {r}"));
        let mut node = &spec;
        for part in pointer.split('/') {
            node = node
                .get(part)
                .unwrap_or_else(|| panic!("$ref {r} does not resolve"));
        }
    }
    let text = serde_yaml::to_string(&spec).unwrap();
    for (method, path) in reserve::routes::ROUTES {
        let op = &spec["paths"][*path][*method];
        assert!(
            op.get("operationId").is_some(),
            "{method} {path} has no operationId"
        );
        assert!(
            op.get("responses").is_some(),
            "{method} {path} has no responses"
        );
        if *method == "post" {
            let params = serde_yaml::to_string(&op["parameters"]).unwrap();
            assert!(
                params.contains("IdempotencyKey") || params.contains("Idempotency-Key"),
                "{method} {path} lacks Idempotency-Key"
            );
        }
    }
    assert!(text.contains("application/problem+json"));
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Mapping(m) => {
            for (k, val) in m {
                if k.as_str() == Some("$ref") {
                    out.push(val.as_str().unwrap().to_string());
                } else {
                    collect_refs(val, out);
                }
            }
        }
        Value::Sequence(s) => s.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// The `pattern` of a schema, found by a path of keys from the document root.
fn pattern(spec: &Value, path: &[&str]) -> regex_lite::Regex {
    let mut node = spec;
    for key in path {
        node = &node[*key];
    }
    let p = node["pattern"]
        .as_str()
        .unwrap_or_else(|| panic!("{path:?} has no pattern"));
    regex_lite::Regex::new(p).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// Strings near each pattern's edges: digits, points, signs, letters in both
/// cases, separators, and the lengths around each limit.
fn near_misses() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        "0{0,3}[0-9]{0,14}(\\.[0-9]{0,8})?",
        "[0-9.+\\-eE ]{0,16}",
        "(19|20|99|18|00|10)[0-9]{2}-[01][0-9]-[0-3][0-9][Tt ][0-2][0-9]:[0-6][0-9]:[0-6][0-9](\\.[0-9]{1,10})?([Zz]|[+-][0-2][0-9]:[0-6][0-9])?",
        "[A-Za-z0-9\\-]{0,18}",
        "[a-zA-Z]{0,10}",
        "[ -~]{0,20}",
        "[+]?(19|20|99|18|00)?[0-9]{0,3}-[01]?[0-9]-[0-3]?[0-9]",
        "[ \t\u{a0}\u{2028}\u{feff}]{0,2}[A-Za-z0-9_\\-]{0,34}[ \t\u{85}\u{3000}]{0,2}",
        "0{0,3}[0-9]{0,5}(\\.[0-9]{0,6})?",
        "(2805|2846|8505|2804|284)\\.?(30|10|90|11|20|3)(\\.?[0-9]{1,4}){0,3}\\.?",
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..Default::default() })]

    /// Schema truths: every input pattern in openapi.yaml accepts exactly what
    /// the server's parser accepts, so a client that validates against the
    /// schema is never refused for a shape, and never sends one it would be.
    #[test]
    fn input_patterns_agree_with_the_parsers(s in near_misses()) {
        use reserve::db::types::{self, Grade, Grams, Micros};
        use reserve::depots::model::DepotCode;
        use reserve::elements::model::{ElementSymbol, Form};
        static SPEC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
        let spec = SPEC.get_or_init(spec);
        let schema = |name: &str| pattern(spec, &["components", "schemas", name]);
        let checks: [(&str, regex_lite::Regex, bool); 14] = [
            ("KgInput", schema("KgInput"), Grams::parse_kg(&s).is_ok()),
            ("PositiveKgInput", schema("PositiveKgInput"), Grams::parse_kg(&s).is_ok_and(|g| g.0 > 0)),
            ("GradeInput", schema("GradeInput"), Grade::parse(&s).is_ok()),
            ("DepotCodeInput", schema("DepotCodeInput"), DepotCode::parse(&s).is_ok()),
            ("ElementSymbolInput", schema("ElementSymbolInput"), ElementSymbol::parse(&s).is_ok()),
            ("FormInput", schema("FormInput"), Form::parse(&s).is_ok()),
            (
                "MovementRequest.unit_price",
                pattern(spec, &["components", "schemas", "MovementRequest", "properties", "unit_price"]),
                Micros::parse(&s).is_ok(),
            ),
            (
                "PatchDepotRequest.capacity_kg",
                pattern(spec, &["components", "schemas", "PatchDepotRequest", "properties", "capacity_kg"]),
                Grams::parse_kg(&s).is_ok(),
            ),
            (
                "PercentInput",
                schema("PercentInput"),
                reserve::orders::dto::parse_percent("p", &s, &mut Vec::new()).is_some(),
            ),
            (
                "PositivePriceInput",
                schema("PositivePriceInput"),
                Micros::parse(&s).is_ok_and(|p| p.0 > 0),
            ),
            (
                "BuyerCodeInput",
                schema("BuyerCodeInput"),
                reserve::orders::dto::parse_buyer_code(&s).is_ok(),
            ),
            (
                "HsCodeInput",
                schema("HsCodeInput"),
                reserve::flows::model::parse_hs_code(&s).is_ok(),
            ),
            (
                "DateInput",
                schema("DateInput"),
                reserve::orders::dto::parse_date(&s).is_some(),
            ),
            (
                "TimestampInput",
                schema("TimestampInput"),
                // The pattern reads the year as written; the parser checks it in
                // UTC. Only 1900-01-01 and 9999-12-31 can differ, and the
                // schema's description says so. chrono also takes a space for
                // the T, which RFC 3339 (and the schema) do not.
                types::parse_rfc3339(&s).is_ok() && !s.contains(' '),
            ),
        ];
        for (name, regex, parsed) in checks {
            let mut schema_valid = regex.is_match(&s);
            if name == "DateInput" {
                // `format: date` refuses days that do not exist, as for timestamps.
                schema_valid &= chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d").is_ok();
            }
            if name == "TimestampInput" {
                if s.starts_with("1900-01-01") || s.starts_with("9999-12-31") {
                    continue;
                }
                // `format: date-time` beside the pattern refuses days that do
                // not exist (30 February), which no pattern can.
                schema_valid &= s
                    .get(..10)
                    .is_some_and(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok());
            }
            proptest::prop_assert_eq!(schema_valid, parsed, "{}: {:?}", name, s);
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..Default::default() })]

    /// The Idempotency-Key pattern (which the fuzzing hooks reuse) accepts
    /// exactly the header values the extractor accepts.
    #[test]
    fn idempotency_key_pattern_agrees_with_the_extractor(
        s in proptest::prelude::prop_oneof![
            "\"?[!-~]{0,3}\"?",
            "[ -~]{0,6}",
            "\"?[a-z]{195,202}\"?",
        ]
    ) {
        use actix_web::FromRequest;
        static SPEC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
        let spec = SPEC.get_or_init(spec);
        let regex = pattern(spec, &["components", "parameters", "IdempotencyKey", "schema"]);
        // A header value has no leading or trailing spaces once parsed.
        proptest::prop_assume!(s.trim() == s);
        let req = actix_web::test::TestRequest::default()
            .insert_header(("Idempotency-Key", s.as_str()))
            .to_http_request();
        let extracted = reserve::http::IdempotencyKey::extract(&req).into_inner().is_ok();
        let schema = regex.is_match(&s) && s.len() <= 202;
        proptest::prop_assert_eq!(schema, extracted, "{:?}", s);
    }
}
