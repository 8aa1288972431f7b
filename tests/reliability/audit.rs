//! Scheduled audit reports run exactly once per period across replicas.

use std::time::Duration;

use diesel::prelude::*;

use crate::cluster::Cluster;
use crate::helpers::{postgres_skipped, spawn_app_with, Backend, TestDb};

#[derive(QueryableByName, Debug)]
#[allow(dead_code)] // period_end is read through Debug, in failure messages
struct PeriodCount {
    #[diesel(sql_type = diesel::sql_types::Timestamp)]
    period_end: chrono::NaiveDateTime,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Two `reserve serve` processes on one database, a report every two
/// seconds, each replica looking every second: every period gets exactly
/// one report, whichever replica claims it.
async fn two_replicas_produce_exactly_one_report_per_scheduled_period(backend: Backend) {
    let db = TestDb::new(backend);
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
    let pg = &mut conn;
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

mod two_replicas_one_report_per_period {
    #[actix_rt::test]
    async fn sqlite() {
        super::two_replicas_produce_exactly_one_report_per_scheduled_period(
            crate::helpers::Backend::Sqlite,
        )
        .await
    }
    #[actix_rt::test]
    async fn postgres() {
        if super::postgres_skipped() {
            return;
        }
        super::two_replicas_produce_exactly_one_report_per_scheduled_period(
            crate::helpers::Backend::Postgres,
        )
        .await
    }
}

/// Reports of `schedule`, as (period_start, period_end), oldest first.
fn reports(
    app: &crate::helpers::TestApp,
    schedule: &str,
) -> Vec<(chrono::NaiveDateTime, chrono::NaiveDateTime)> {
    use reserve::db::schema::audit_reports as r;
    let mut conn = app.state.pool.get().unwrap();
    r::table
        .filter(r::schedule.eq(schedule))
        .order(r::period_end.asc())
        .select((r::period_start, r::period_end))
        .load(&mut *conn)
        .unwrap()
}

/// The daily report last ran three days ago and every replica has been down
/// since: the next start produces the three missed days, oldest first, each
/// once. The month-end report closes the books at its period's end.
async fn missed_periods_are_produced_at_start_and_month_end_locks(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.audit.daily_report_cron = "0 0 0 * * *".into();
        s.audit.month_end_report_cron = "0 0 0 1 * *".into();
        s.audit.lock_period_on_month_end = true;
    })
    .await;
    let jobs = reserve::scheduled_jobs(&app.state.settings);
    let job = |name: &str| jobs.iter().find(|j| j.name == name).unwrap().clone();
    let midnight = chrono::Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let day = chrono::Duration::days(1);
    {
        use reserve::db::schema::job_claims as jc;
        let mut conn = app.state.pool.get().unwrap();
        diesel::insert_into(jc::table)
            .values((
                jc::job.eq("audit.report.daily"),
                jc::slot.eq(midnight - day * 3),
                jc::claimed_by.eq("a replica long gone"),
                jc::claimed_at.eq(midnight - day * 3),
                jc::finished_at.eq(midnight - day * 3),
                jc::outcome.eq("report before the outage"),
            ))
            .execute(&mut *conn)
            .unwrap();
    }
    let replica: std::sync::Arc<str> = "test".into();
    let daily = job("audit.report.daily");
    reserve::jobs::runner::run_due(&app.state, &daily, &replica).await;
    reserve::jobs::runner::run_due(&app.state, &daily, &replica).await;
    assert_eq!(
        reports(&app, "daily"),
        vec![
            (midnight - day * 3, midnight - day * 2),
            (midnight - day * 2, midnight - day),
            (midnight - day, midnight),
        ]
    );

    let month_end = job("audit.report.month_end");
    reserve::jobs::runner::run_due(&app.state, &month_end, &replica).await;
    let first_of_month = chrono::NaiveDate::from_ymd_opt(
        chrono::Datelike::year(&midnight),
        chrono::Datelike::month(&midnight),
        1,
    )
    .unwrap()
    .and_hms_opt(0, 0, 0)
    .unwrap();
    let monthly = reports(&app, "month-end");
    assert_eq!(monthly.len(), 1, "{monthly:?}");
    assert_eq!(monthly[0].1, first_of_month);
    let locks = app
        .get("/api/v1/period-locks", &app.auditor)
        .await
        .expect(200)
        .body;
    let newest = locks["items"][0]["locked_before"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        newest.starts_with(
            &first_of_month
                .format("%Y-%m-%dT00:00:00.000001")
                .to_string()
        ),
        "the month-end report locks its period: {locks}"
    );
}

mod missed_periods {
    #[actix_rt::test]
    async fn sqlite() {
        super::missed_periods_are_produced_at_start_and_month_end_locks(
            crate::helpers::Backend::Sqlite,
        )
        .await
    }
    #[actix_rt::test]
    async fn postgres() {
        if super::postgres_skipped() {
            return;
        }
        super::missed_periods_are_produced_at_start_and_month_end_locks(
            crate::helpers::Backend::Postgres,
        )
        .await
    }
}
