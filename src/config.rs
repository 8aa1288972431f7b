//! Typed settings: `config/default.toml` < `--config FILE` < environment < flags.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

/// The base configuration, compiled in so the binary runs from any directory;
/// `config/default.toml` in the working directory, when present, replaces it.
const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub ledger: LedgerSettings,
    pub import_flows: ImportFlowSettings,
    pub jobs: JobSettings,
    pub rules: RuleSettings,
    pub audit: AuditSettings,
    pub metrics: MetricsSettings,
    pub group_commit: GroupCommitSettings,
    pub webhooks: WebhookSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub bind: String,
    pub workers: usize,
    pub max_body_bytes: usize,
    pub log_format: String,
    pub client_request_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    pub pool_size: u32,
    pub connect_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub jwt_secret: String,
    /// `kid` of `jwt_secret`, written into every token minted.
    pub jwt_kid: String,
    /// Retired keys still accepted for verification: `kid=secret,kid=secret`.
    pub previous_keys: String,
    /// Failed authentications per client IP (401) or per subject (403) in one
    /// minute before further requests from it get 429.
    pub max_failures_per_minute: u32,
    pub issuer: String,
    pub audience: String,
    pub leeway_secs: u64,
    /// Longest lifetime (`exp` − `iat`) of a token, minted or accepted, in days.
    pub max_token_lifetime_days: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSettings {
    pub max_future_skew_secs: i64,
    /// Days an idempotency record is kept (the replay window); then purged.
    pub idempotency_retention_days: u32,
    /// Month (1–12) the fiscal year starts in; a fiscal year is named by the
    /// calendar year it ends in (US federal: 10, so FY2027 starts 2026-10-01).
    pub fiscal_year_start_month: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportFlowSettings {
    /// Largest body `POST /api/v1/import-flows` accepts, in bytes (413 past it).
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    /// Whether this replica runs scheduled work at all.
    pub enabled: bool,
    /// Seconds between a replica's looks for due slots.
    pub poll_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSettings {
    /// When every enabled release rule is evaluated: a cron expression in UTC.
    pub evaluation_schedule: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// Base64 or hex 32-byte Ed25519 seed, or the path of a file holding one.
    pub signing_key: String,
    pub reports_enabled: bool,
    /// Cron (UTC) of the daily report; empty: off.
    pub daily_report_cron: String,
    /// Cron (UTC) of the month-end report; empty: off.
    pub month_end_report_cron: String,
    pub lock_period_on_month_end: bool,
    /// Cron (UTC) of signed checkpoints; empty: off.
    pub checkpoint_cron: String,
    /// Decimal percent of the book balance a count may differ by unflagged.
    pub tolerance_percent: String,
    /// Decimal kg a count may differ by unflagged.
    pub tolerance_kg: String,
    pub reserve_name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Whether `GET /metrics` is served at all (404 when false).
    pub enabled: bool,
    /// `HOST:PORT` of a listener serving only `/metrics`; empty: the main
    /// listener serves it.
    pub bind: String,
}

/// Group commit of ledger postings (`ledger::group`): concurrent postings
/// share one database transaction and one commit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupCommitSettings {
    /// Microseconds a group waits, after its first posting arrived, for more
    /// to join it; 0 turns group commit off (each posting commits alone).
    pub window_us: u64,
    /// Most postings one group holds.
    pub max_members: usize,
    /// PostgreSQL: a group reads what its members would each read under its
    /// locks (stored responses, depots, floors, ceilings, period lock,
    /// sequence, newest entries) once, and members send only their writes.
    /// `false` runs each member's full statement sequence, as before session
    /// 8: kept to measure the two in one run (docs/performance.md).
    pub read_ahead: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Whether this replica fans events out and delivers them. The endpoints
    /// stay served either way; with every replica off, deliveries wait.
    pub enabled: bool,
    /// How often the worker looks for due deliveries when no event wakes it.
    pub poll_ms: u64,
    /// The first retry's delay; each later one doubles, up to `retry_cap_ms`.
    pub retry_base_ms: u64,
    pub retry_cap_ms: u64,
    /// How long after an event (or a redelivery) retries go on.
    pub retry_window_hours: u64,
    /// The whole outbound request, connect to response head.
    pub timeout_ms: u64,
    /// Largest event body sent; a larger event is announced thin (type and
    /// position), for the receiver to read from the event stream.
    pub max_payload_bytes: usize,
    /// How much of a failing receiver's answer is kept in the delivery log.
    pub max_response_bytes: usize,
    /// Deliveries attempted at once by one replica.
    pub concurrency: usize,
}

impl Settings {
    /// Loads the layered configuration; `env` is passed in (not read globally) so
    /// tests can load settings without touching the process environment.
    pub fn load(config_file: Option<&Path>, env: &[(String, String)]) -> anyhow::Result<Settings> {
        let base = match std::fs::read_to_string("config/default.toml") {
            Ok(text) => text,
            Err(_) => DEFAULT_TOML.to_string(),
        };
        let mut merged: toml::Table =
            toml::from_str(&base).context("config/default.toml is not valid TOML")?;
        if let Some(path) = config_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let overlay: toml::Table = toml::from_str(&text)
                .with_context(|| format!("{} is not valid TOML", path.display()))?;
            merge(&mut merged, overlay);
        }
        apply_env(&mut merged, env)?;
        let settings: Settings = merged.try_into().context("invalid configuration")?;
        Ok(settings)
    }

    /// Checks what serde cannot: values that parse but make no sense.
    pub fn validate(&self) -> anyhow::Result<()> {
        crate::db::DatabaseUrl::parse(&self.database.url).map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            self.database.pool_size >= 1,
            "database.pool_size must be at least 1"
        );
        anyhow::ensure!(
            self.server.max_body_bytes >= 1024,
            "server.max_body_bytes must be at least 1024"
        );
        anyhow::ensure!(
            matches!(self.server.log_format.as_str(), "text" | "json"),
            "server.log_format must be \"text\" or \"json\""
        );
        anyhow::ensure!(
            (1..=12).contains(&self.ledger.fiscal_year_start_month),
            "ledger.fiscal_year_start_month must be a month number, 1 to 12"
        );
        anyhow::ensure!(
            self.import_flows.max_body_bytes >= 1024,
            "import_flows.max_body_bytes must be at least 1024"
        );
        anyhow::ensure!(
            self.jobs.poll_secs >= 1,
            "jobs.poll_secs must be at least 1"
        );
        for (name, expr) in [
            ("audit.daily_report_cron", &self.audit.daily_report_cron),
            (
                "audit.month_end_report_cron",
                &self.audit.month_end_report_cron,
            ),
            ("audit.checkpoint_cron", &self.audit.checkpoint_cron),
        ] {
            if !expr.trim().is_empty() {
                crate::jobs::Schedule::parse(expr).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            }
        }
        let bind = self.metrics.bind.trim();
        if !bind.is_empty() {
            anyhow::ensure!(
                bind.rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok()),
                "metrics.bind must be HOST:PORT (e.g. 127.0.0.1:9100), or empty to serve /metrics on the main listener"
            );
        }
        anyhow::ensure!(
            self.group_commit.max_members >= 1,
            "group_commit.max_members must be at least 1"
        );
        anyhow::ensure!(
            self.group_commit.window_us <= 1_000_000,
            "group_commit.window_us must be at most 1000000 (one second)"
        );
        let w = &self.webhooks;
        anyhow::ensure!(w.poll_ms >= 10, "webhooks.poll_ms must be at least 10");
        anyhow::ensure!(
            w.retry_base_ms >= 1 && w.retry_base_ms <= w.retry_cap_ms,
            "webhooks.retry_base_ms must be at least 1 and at most webhooks.retry_cap_ms"
        );
        anyhow::ensure!(
            (1..=24 * 30).contains(&w.retry_window_hours),
            "webhooks.retry_window_hours must be 1 to 720"
        );
        anyhow::ensure!(
            (100..=120_000).contains(&w.timeout_ms),
            "webhooks.timeout_ms must be 100 to 120000"
        );
        anyhow::ensure!(
            w.max_payload_bytes >= 1024,
            "webhooks.max_payload_bytes must be at least 1024"
        );
        anyhow::ensure!(
            (1..=256).contains(&w.concurrency),
            "webhooks.concurrency must be 1 to 256"
        );
        crate::audit::model::Tolerance::parse(
            &self.audit.tolerance_percent,
            &self.audit.tolerance_kg,
        )
        .map_err(|e| anyhow::anyhow!("audit.{e}"))?;
        Ok(())
    }
}

/// Short names that are always honoured, beside the general
/// `RESERVE_SECTION__KEY` form.
const ALIASES: [(&str, &str, &str); 4] = [
    ("RESERVE_DATABASE_URL", "database", "url"),
    ("RESERVE_BIND", "server", "bind"),
    ("RESERVE_JWT_SECRET", "auth", "jwt_secret"),
    ("RESERVE_LOG_FORMAT", "server", "log_format"),
];

/// Applies `RESERVE_SECTION__KEY=value` (and the aliases) over the file layers.
/// The value is read as the type the setting already has; a misspelt setting
/// is refused, as it is in a file.
fn apply_env(table: &mut toml::Table, env: &[(String, String)]) -> anyhow::Result<()> {
    for (name, value) in env {
        let (section, key) = match ALIASES.iter().find(|(alias, _, _)| alias == name) {
            Some((_, section, key)) => (section.to_string(), key.to_string()),
            None => match name
                .strip_prefix("RESERVE_")
                .and_then(|k| k.split_once("__"))
            {
                Some((section, key)) => (section.to_ascii_lowercase(), key.to_ascii_lowercase()),
                None => continue,
            },
        };
        let slot = table
            .get_mut(&section)
            .and_then(|s| s.as_table_mut())
            .and_then(|s| s.get_mut(&key))
            .ok_or_else(|| {
                anyhow::anyhow!("environment variable {name} names no setting ([{section}] {key})")
            })?;
        *slot = match slot {
            toml::Value::Integer(_) => {
                toml::Value::Integer(value.parse().with_context(|| {
                    format!("environment variable {name} must be a whole number")
                })?)
            }
            toml::Value::Boolean(_) => {
                toml::Value::Boolean(value.parse().with_context(|| {
                    format!("environment variable {name} must be true or false")
                })?)
            }
            _ => toml::Value::String(value.clone()),
        };
    }
    Ok(())
}

/// Deep-merges `overlay` into `base`: tables merge key by key, values replace.
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("override.toml");
        std::fs::write(&file, "[server]\nbind = \"0.0.0.0:9000\"\nworkers = 3\n").unwrap();
        let env = vec![
            ("RESERVE_BIND".to_string(), "127.0.0.1:7000".to_string()),
            ("RESERVE_DATABASE__POOL_SIZE".to_string(), "3".to_string()),
        ];
        let s = Settings::load(Some(&file), &env).unwrap();
        assert_eq!(
            s.server.bind, "127.0.0.1:7000",
            "environment beats the file"
        );
        assert_eq!(s.server.workers, 3, "the file beats the defaults");
        assert_eq!(s.database.pool_size, 3);
        assert_eq!(s.database.url, "sqlite://data/reserve.db");
    }

    #[test]
    fn every_setting_has_an_environment_name() {
        let env = vec![
            (
                "RESERVE_LEDGER__MAX_FUTURE_SKEW_SECS".to_string(),
                "5".to_string(),
            ),
            ("RESERVE_AUTH__LEEWAY_SECS".to_string(), "7".to_string()),
            (
                "RESERVE_UNRELATED".to_string(),
                "ignored: not of the SECTION__KEY form".to_string(),
            ),
        ];
        let s = Settings::load(None, &env).unwrap();
        assert_eq!(s.ledger.max_future_skew_secs, 5);
        assert_eq!(s.auth.leeway_secs, 7);
        let typo = vec![("RESERVE_SERVER__BNID".to_string(), "x".to_string())];
        assert!(Settings::load(None, &typo).is_err());
        let bad = vec![("RESERVE_SERVER__WORKERS".to_string(), "many".to_string())];
        assert!(Settings::load(None, &bad).is_err());
    }

    #[test]
    fn unknown_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("typo.toml");
        std::fs::write(&file, "[server]\nbnid = \"0.0.0.0:9000\"\n").unwrap();
        assert!(Settings::load(Some(&file), &[]).is_err());
    }
}
