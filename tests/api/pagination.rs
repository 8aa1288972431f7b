//! Every paginated list ends, in both orders: the last page carries
//! `next_cursor: null`, no page is empty while rows remain, and paging visits
//! every row once in order, also when the page size divides the count exactly.

use crate::helpers::{spawn_app, Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(every_list_ends_in_both_orders);

/// Pages `path` to its end with `limit` and `order`; returns the keys seen and
/// the number of pages, after checking each page's shape.
async fn page_through(
    app: &TestApp,
    path: &str,
    key: &str,
    limit: usize,
    order: &str,
) -> (Vec<i64>, usize) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(
            pages <= 100,
            "{path} order={order} limit={limit}: never ends"
        );
        let r = app
            .get(
                &format!("{path}{sep}limit={limit}&order={order}&cursor={cursor}"),
                &app.admin,
            )
            .await
            .expect(200);
        let items = r.body["items"].as_array().unwrap();
        let next = r.body["next_cursor"].clone();
        assert!(
            items.len() <= limit,
            "{path} order={order} limit={limit}: page too long"
        );
        if next.is_null() {
            assert!(
                !items.is_empty() || pages == 1,
                "{path} order={order} limit={limit}: an empty last page after a cursor"
            );
        } else {
            assert_eq!(
                items.len(),
                limit,
                "{path} order={order} limit={limit}: a short page carries a cursor"
            );
        }
        seen.extend(items.iter().map(|i| i[key].as_i64().unwrap()));
        match next.as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    (seen, pages)
}

async fn every_list_ends_in_both_orders(backend: Backend) {
    let app = spawn_app(backend).await;
    for code in ["NV1", "TX2", "PA3", "OH4"] {
        app.create_depot(code, "100000", "100000").await;
    }
    // Six stockpiles and six ledger entries.
    for (depot, element) in [
        ("NV1", "Nd"),
        ("NV1", "Dy"),
        ("TX2", "Nd"),
        ("PA3", "Tb"),
        ("OH4", "Ce"),
        ("OH4", "La"),
    ] {
        app.acquire(depot, element, "5").await.expect(201);
    }
    let lists = [
        ("/api/v1/depots", "id", 4),
        ("/api/v1/stockpiles", "id", 6),
        ("/api/v1/ledger", "sequence", 6),
        ("/api/v1/ledger?depot=OH4", "sequence", 2),
        ("/api/v1/stockpiles?element=Pm", "id", 0),
    ];
    for (path, key, count) in lists {
        for order in ["asc", "desc"] {
            // Limits below, at and above the count, including exact divisors.
            for limit in [1, 2, 3, 4, 5, 6, 7, 1000] {
                let (seen, pages) = page_through(&app, path, key, limit, order).await;
                assert_eq!(seen.len(), count, "{path} order={order} limit={limit}");
                let mut sorted = seen.clone();
                sorted.sort();
                if order == "desc" {
                    sorted.reverse();
                }
                assert_eq!(seen, sorted, "{path} order={order} limit={limit}: in order");
                sorted.dedup();
                assert_eq!(sorted.len(), count, "{path}: every row once");
                assert_eq!(
                    pages,
                    count.div_ceil(limit).max(1),
                    "{path} order={order} limit={limit}: no extra page"
                );
            }
        }
    }
    // CSV pages end the same way: no X-Next-Cursor on the last page.
    for order in ["asc", "desc"] {
        let r = app
            .get(
                &format!("/api/v1/ledger?limit=3&order={order}&format=csv"),
                &app.admin,
            )
            .await
            .expect(200);
        let cursor = r.header("x-next-cursor").expect("a first page of three");
        let r = app
            .get(
                &format!("/api/v1/ledger?limit=3&order={order}&format=csv&cursor={cursor}"),
                &app.admin,
            )
            .await
            .expect(200);
        assert_eq!(r.text.lines().count(), 4, "header and three rows");
        assert_eq!(
            r.header("x-next-cursor"),
            None,
            "{order}: the last CSV page"
        );
    }
    app.stop().await;
}
