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
    pub issuer: String,
    pub audience: String,
    pub leeway_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSettings {
    pub max_future_skew_secs: i64,
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
        let mut settings: Settings = merged.try_into().context("invalid configuration")?;
        settings.apply_env(env)?;
        Ok(settings)
    }

    /// Environment variables: RESERVE_DATABASE_URL, RESERVE_BIND and
    /// RESERVE_JWT_SECRET always; any other setting as RESERVE_SECTION__KEY.
    fn apply_env(&mut self, env: &[(String, String)]) -> anyhow::Result<()> {
        for (name, value) in env {
            let Some(key) = name.strip_prefix("RESERVE_") else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            let parse_err = || format!("environment variable {name} has an invalid value");
            match key.as_str() {
                "database_url" | "database__url" => self.database.url = value.clone(),
                "bind" | "server__bind" => self.server.bind = value.clone(),
                "jwt_secret" | "auth__jwt_secret" => self.auth.jwt_secret = value.clone(),
                "log_format" | "server__log_format" => self.server.log_format = value.clone(),
                "server__workers" => self.server.workers = value.parse().with_context(parse_err)?,
                "server__max_body_bytes" => {
                    self.server.max_body_bytes = value.parse().with_context(parse_err)?
                }
                "database__pool_size" => {
                    self.database.pool_size = value.parse().with_context(parse_err)?
                }
                "auth__issuer" => self.auth.issuer = value.clone(),
                "auth__audience" => self.auth.audience = value.clone(),
                _ => {}
            }
        }
        Ok(())
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
        Ok(())
    }
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
    fn unknown_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("typo.toml");
        std::fs::write(&file, "[server]\nbnid = \"0.0.0.0:9000\"\n").unwrap();
        assert!(Settings::load(Some(&file), &[]).is_err());
    }
}
