//! Scheduled audit reports run exactly once per period across replicas.

use std::time::Duration;

use diesel::prelude::*;

use crate::cluster::Cluster;
use crate::helpers::{postgres_skipped, TestDb};

#[derive(QueryableByName, Debug)]
#[allow(dead_code)] // period_end is read through Debug, in failure messages
struct PeriodCount {
    #[diesel(sql_type = diesel::sql_types::Timestamp)]
    period_end: chrono::NaiveDateTime,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Two `reserve serve` processes on one PostgreSQL database, a report every
/// two seconds, each replica looking every second: every period gets exactly
/// one report, whichever replica claims it.
#[actix_rt::test]
async fn two_replicas_produce_exactly_one_report_per_scheduled_period() {
    if postgres_skipped() {
        return;
    }
    let db = TestDb::new(crate::helpers::Backend::Postgres);
    let url = reserve::db::DatabaseUrl::parse(db.url()).unwrap();
    reserve::db::run_migrations(&mut reserve::db::open(&url).unwrap()).unwrap();
    let cluster = Cluster::start_with_env(
        db,
        2,
        &[
            ("RESERVE_AUDIT__DAILY_REPORT_CRON", "*/2 * * * * *"),
            ("RESERVE_AUDIT__MONTH_END_REPORT_CRON", ""),
            ("RESERVE_AUDIT__CHECKPOINT_CRON", "* * * * * *"),
            ("RESERVE_JOBS__POLL_SECS", "1"),
        ],
    )
    .await;
    actix_rt::time::sleep(Duration::from_secs(9)).await;
    let mut conn = reserve::db::establish(&url).unwrap();
    let reserve::db::DbConn::Postgres(pg) = &mut conn else {
        unreachable!()
    };
    let per_period: Vec<PeriodCount> = diesel::sql_query(
        "SELECT period_end, COUNT(*) AS n FROM audit_reports GROUP BY period_end ORDER BY period_end",
    )
    .load(pg)
    .unwrap();
    assert!(
        per_period.len() >= 3,
        "expected a report every two seconds: {per_period:?}"
    );
    assert!(
        per_period.iter().all(|p| p.n == 1),
        "a period got more than one report: {per_period:?}"
    );
    // Consecutive periods meet: each starts where the previous one ended.
    #[derive(QueryableByName, Debug)]
    struct Span {
        #[diesel(sql_type = diesel::sql_types::Timestamp)]
        period_start: chrono::NaiveDateTime,
        #[diesel(sql_type = diesel::sql_types::Timestamp)]
        period_end: chrono::NaiveDateTime,
    }
    let spans: Vec<Span> =
        diesel::sql_query("SELECT period_start, period_end FROM audit_reports ORDER BY period_end")
            .load(pg)
            .unwrap();
    for w in spans.windows(2) {
        assert_eq!(w[0].period_end, w[1].period_start, "{spans:?}");
    }
    // Both replicas took part in claiming (each slot by one of them), and the
    // checkpoints scheduled alongside chain without a fork.
    let claims: i64 = diesel::sql_query(
        "SELECT COUNT(*) AS n, MAX(slot) AS period_end FROM job_claims WHERE job = 'audit.report.daily'",
    )
    .load::<PeriodCount>(pg)
    .unwrap()[0]
        .n;
    assert_eq!(claims as usize, spans.len());
    drop(cluster);
}
