//! The data of issue 8's rule benchmark and of the suite's scenario 9: 17
//! elements with stock and a policy, two release rules each (all origins, and
//! China alone), and five years of monthly import flows from 20 origins
//! (17 × 60 × 20 = 20,400 flows) whose newest two months from China fell by
//! 60%, so every rule fires. Shared by `benches/rules.rs` and
//! `benches/suite.rs`.

use chrono::{Datelike, Months, NaiveDate, Utc};
use diesel::{Connection, ExpressionMethods};
use serde_json::json;

use crate::helpers::TestApp;

/// Stock, policies, rules and flows, on a fresh app.
pub async fn load(app: &TestApp) {
    app.create_depot("NV1", "999999999", "50000").await;
    for element in ELEMENTS {
        app.post_new(
            "/api/v1/acquisitions",
            &app.operator,
            &json!({"depot": "NV1", "element": element, "form": "oxide", "grade": "99.5",
                    "quantity_kg": "500000"}),
        )
        .await
        .expect(201);
        app.put(
            &format!("/api/v1/elements/{element}/policy"),
            &app.admin,
            Some("*"),
            &json!({"reserve_floor_kg": "100000", "consumption_kg_per_year": "365000",
                    "limited_drawdown_max_kg": null, "limited_drawdown_max_days": null,
                    "test_sale_max_kg": null}),
        )
        .await
        .expect(200);
        for origins in [json!(null), json!(["CN"])] {
            app.post_new(
                "/api/v1/release-rules",
                &app.admin,
                &json!({"element": element, "origin_countries": origins, "window_days": 60,
                        "baseline_days": 365, "drop_threshold_percent": "25",
                        "consecutive_breaches": 1, "cooldown_days": 30, "coverage_fraction": "0.5",
                        "cap_kg": "50000", "floor_days_of_cover": "90",
                        "order_kind": "limited_drawdown", "method": "sale", "enabled": true}),
            )
            .await
            .expect(201);
        }
    }
    insert_flows(app);
}

pub const ELEMENTS: [&str; 17] = [
    "Sc", "Y", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb",
    "Lu",
];
pub const ORIGINS: [&str; 20] = [
    "CN", "MM", "MY", "AU", "US", "JP", "VN", "EE", "IN", "RU", "TH", "LA", "BR", "ZA", "CA", "KR",
    "DE", "FR", "GB", "NO",
];

pub fn insert_flows(app: &TestApp) {
    use reserve::db::schema::import_flows as f;
    let today = Utc::now().date_naive();
    let first_of_month = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).unwrap();
    let mut conn = app.state.pool.get().expect("connection");
    let now = Utc::now().naive_utc();
    let mut rows = Vec::new();
    for (e, element) in ELEMENTS.iter().enumerate() {
        for m in 1..=60u32 {
            let start = first_of_month - Months::new(m);
            let end = start + Months::new(1) - chrono::Duration::days(1);
            for (o, origin) in ORIGINS.iter().enumerate() {
                // China dominant; the newest two months from China cut by 60%.
                let base = if o == 0 {
                    50_000_000
                } else {
                    2_000_000 + 100_000 * o as i64
                };
                let q = if o == 0 && m <= 2 {
                    base * 4 / 10
                } else {
                    base
                } + e as i64 * 1000;
                rows.push((
                    f::element.eq(*element),
                    f::form.eq("oxide"),
                    f::origin_country.eq(*origin),
                    f::hs_code.eq("284690"),
                    f::period_start.eq(start),
                    f::period_end.eq(end),
                    f::quantity_g.eq(q),
                    f::source.eq("bench"),
                    f::external_id.eq(format!("{element}-{origin}-{start}")),
                    f::content_hash.eq("bench"),
                    f::recorded_at.eq(now),
                    f::recorded_by.eq("bench"),
                ));
            }
        }
    }
    let conn: &mut reserve::db::DbConn = &mut conn;
    conn.transaction::<_, diesel::result::Error, _>(|c| {
        for chunk in rows.chunks(1000) {
            reserve::insert_rows!(c, f::table, chunk)?;
        }
        Ok(())
    })
    .expect("insert flows");
}
