//! Cron schedules in UTC and which of their slots are due.

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};

/// What a job does with slots missed while no replica was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Only the newest due slot runs: evaluating rules five times over the
    /// same data would count five breaches where there was one.
    Latest,
    /// Every missed slot runs, oldest first: each period needs its report.
    Every,
}

/// A cron expression in UTC: `sec min hour day-of-month month day-of-week
/// [year]`, or the classic five fields (minute first), read with second 0.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    cron: cron::Schedule,
}

/// At most this many missed slots run in one pass, so a schedule of every
/// second after a week's outage cannot keep a replica busy for hours; the rest
/// run on the following passes.
pub const MAX_SLOTS_PER_PASS: usize = 64;

impl Schedule {
    pub fn parse(expr: &str) -> Result<Schedule, String> {
        let fields = expr.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {expr}"),
            6 | 7 => expr.to_string(),
            _ => {
                return Err(format!(
                    "{expr:?} is not a cron expression: expected 5, 6 or 7 fields, found {fields}"
                ))
            }
        };
        let cron = cron::Schedule::from_str(&full)
            .map_err(|e| format!("{expr:?} is not a cron expression: {e}"))?;
        if cron.after(&DateTime::<Utc>::UNIX_EPOCH).next().is_none() {
            return Err(format!("{expr:?} names no instant at all"));
        }
        Ok(Schedule {
            expr: expr.to_string(),
            cron,
        })
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The newest slot at or before `now`.
    pub fn latest(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .after(&(now + Duration::nanoseconds(1)))
            .next_back()
    }

    /// The first slot after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.after(&t).next()
    }

    /// Slots to run at `now`, oldest first, given the newest slot already
    /// claimed (`None`: the job never ran, so only the newest due slot runs
    /// rather than the schedule's whole past).
    pub fn due(
        &self,
        last_claimed: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        catch_up: CatchUp,
    ) -> Vec<DateTime<Utc>> {
        let Some(latest) = self.latest(now) else {
            return Vec::new();
        };
        match (last_claimed, catch_up) {
            (Some(last), _) if last >= latest => Vec::new(),
            (None, _) | (Some(_), CatchUp::Latest) => vec![latest],
            (Some(last), CatchUp::Every) => self
                .cron
                .after(&last)
                .take_while(|t| *t <= now)
                .take(MAX_SLOTS_PER_PASS)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn daily_at_six_names_the_latest_six_oclock() {
        let s = Schedule::parse("0 0 6 * * *").unwrap();
        assert_eq!(
            s.latest(at(2026, 11, 29, 9, 0, 0)),
            Some(at(2026, 11, 29, 6, 0, 0))
        );
        assert_eq!(
            s.latest(at(2026, 11, 29, 5, 59, 59)),
            Some(at(2026, 11, 28, 6, 0, 0))
        );
        // A slot is due at its own instant.
        assert_eq!(
            s.latest(at(2026, 11, 29, 6, 0, 0)),
            Some(at(2026, 11, 29, 6, 0, 0))
        );
        assert_eq!(
            s.next_after(at(2026, 11, 29, 6, 0, 0)),
            Some(at(2026, 11, 30, 6, 0, 0))
        );
    }

    #[test]
    fn five_field_expressions_read_minute_first() {
        let s = Schedule::parse("30 23 * * *").unwrap();
        assert_eq!(
            s.latest(at(2026, 11, 29, 23, 31, 0)),
            Some(at(2026, 11, 29, 23, 30, 0))
        );
        assert!(Schedule::parse("every day").is_err());
        assert!(
            Schedule::parse("0 0 0 31 2 *").is_err(),
            "31 February never comes"
        );
    }

    #[test]
    fn a_job_that_never_ran_runs_only_its_newest_slot() {
        let s = Schedule::parse("0 0 * * * *").unwrap();
        let now = at(2026, 11, 29, 9, 30, 0);
        assert_eq!(
            s.due(None, now, CatchUp::Every),
            vec![at(2026, 11, 29, 9, 0, 0)]
        );
    }

    #[test]
    fn missed_slots_run_oldest_first_or_only_the_newest() {
        let s = Schedule::parse("0 0 * * * *").unwrap();
        let now = at(2026, 11, 29, 9, 30, 0);
        let last = Some(at(2026, 11, 29, 6, 0, 0));
        assert_eq!(
            s.due(last, now, CatchUp::Every),
            vec![
                at(2026, 11, 29, 7, 0, 0),
                at(2026, 11, 29, 8, 0, 0),
                at(2026, 11, 29, 9, 0, 0)
            ]
        );
        assert_eq!(
            s.due(last, now, CatchUp::Latest),
            vec![at(2026, 11, 29, 9, 0, 0)]
        );
        assert!(s
            .due(Some(at(2026, 11, 29, 9, 0, 0)), now, CatchUp::Every)
            .is_empty());
    }

    #[test]
    fn a_long_outage_catches_up_in_bounded_passes() {
        let s = Schedule::parse("* * * * * *").unwrap();
        let now = at(2026, 11, 29, 9, 30, 0);
        let due = s.due(Some(at(2026, 11, 29, 8, 0, 0)), now, CatchUp::Every);
        assert_eq!(due.len(), MAX_SLOTS_PER_PASS);
        assert_eq!(due[0], at(2026, 11, 29, 8, 0, 1));
    }
}
