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
