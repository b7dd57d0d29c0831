//! The operator's configuration of `tocsin serve`: a TOML file, then environment variables
//! (`TOCSIN_<SECTION>__<KEY>`, as MLRun's `MLRUN_ALERTS__MODE`), then command-line flags.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:8080"
//! data_dir = "tocsin-data"
//! durability = "os"        # or "fsync": fdatasync every commit
//! log_retention_days = 7    # the event log is kept this long (the backtest replays it)
//!
//! header_timeout_secs = 30  # a request's headers must arrive within this
//! body_timeout_secs = 30    # and its body within this
//! idle_timeout_secs = 15    # an idle keep-alive connection is closed after this
//! max_connections = 4096
//! # tls_cert = "cert.pem"   # serve HTTPS (both or neither)
//! # tls_key = "key.pem"
//!
//! [auth]
//! enabled = false          # true: every request but health needs a token; required off loopback
//!
//! [alerts]
//! mode = "enabled"         # or "disabled": events accepted and ignored
//! max_allowed = 10000
//! max_criteria_count = 100
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tocsin_core::AlertsSettings;

use crate::embedded::Durability;
use tocsin_adapters::notify::{DeliverySettings, SmtpSettings};

/// Everything `tocsin serve` can be told.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub alerts: AlertsSettings,
    pub notifications: DeliverySettings,
    pub smtp: SmtpSettings,
}

/// Where and how the server runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Loopback by default: the embedded deployment is one machine's service.
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// With `durability = "os"`, how often the journal is synced to disk.
    pub sync_interval_ms: u64,
    /// Request bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// Activations older than this are deleted (MLRun keeps 98 days).
    pub activation_retention_days: i64,
    /// Event log segments are kept this long after a snapshot made them unnecessary for a
    /// restart: what happened stays available to replay.
    pub log_retention_days: u64,
    /// A directory of alert config files (JSON, MLRun's wire format) stored at start.
    pub alerts_dir: Option<PathBuf>,
    /// A connection that has not sent a request's headers by then is closed (nginx's
    /// `client_header_timeout`). It runs from the moment the server waits for a request, so it
    /// also bounds how long a keep-alive connection may sit idle.
    pub header_timeout_secs: u64,
    /// A request whose body has not fully arrived by then is refused with 408.
    pub body_timeout_secs: u64,
    /// An open connection with no bytes either way for this long is closed (after the request
    /// in flight, if any, is answered).
    pub idle_timeout_secs: u64,
    /// Connections beyond this wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// PEM certificate chain and private key: with both, the server speaks HTTPS only.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `/-/ready` answers 503 when the data directory's file system has less free space than
    /// this: a load balancer sends events elsewhere before a commit fails on a full disk.
    pub min_free_bytes: u64,
    /// How log lines are written: `text` (coloured only on a terminal) or `json` (one object
    /// per line, for a log shipper).
    pub log_format: LogFormat,
}

/// How `tocsin serve` writes its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Who may use the API.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Requests need a token (`Authorization: Bearer`), made with `tocsin token create`. Off is
    /// allowed on a loopback address only.
    pub enabled: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("tocsin-data"),
            durability: Durability::Os,
            sync_interval_ms: 1000,
            max_body_bytes: 1024 * 1024,
            activation_retention_days: 98,
            log_retention_days: 7,
            alerts_dir: None,
            header_timeout_secs: 30,
            body_timeout_secs: 30,
            idle_timeout_secs: 15,
            max_connections: 4096,
            tls_cert: None,
            tls_key: None,
            min_free_bytes: 64 << 20,
            log_format: LogFormat::Text,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}: {detail}")]
    Invalid { origin: String, detail: String },
}

/// The prefix of the environment variables that configure Tocsin.
pub const ENV_PREFIX: &str = "TOCSIN_";

impl Config {
    /// Reads `file` (if any), then applies `TOCSIN_*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let (mut table, origin) = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                let table: toml::Table =
                    text.parse()
                        .map_err(|e: toml::de::Error| ConfigError::Invalid {
                            origin: path.display().to_string(),
                            detail: e.to_string(),
                        })?;
                (table, path.display().to_string())
            }
            None => (toml::Table::new(), "the defaults".to_owned()),
        };
        let mut from_env = Vec::new();
        for (name, value) in env {
            let Some(path) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
            let [section, key] = keys.as_slice() else {
                continue;
            };
            if !matches!(
                section.as_str(),
                "server" | "auth" | "alerts" | "notifications" | "smtp"
            ) {
                continue;
            }
            // `100` is a number, `true` a boolean; anything else is taken as a string.
            let parsed = format!("v = {value}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"));
            let value = parsed.unwrap_or(toml::Value::String(value));
            let section = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(Default::default()));
            if let toml::Value::Table(t) = section {
                t.insert(key.clone(), value);
            }
            from_env.push(name);
        }
        let origin = if from_env.is_empty() {
            origin
        } else {
            format!("{origin} with {}", from_env.join(", "))
        };
        let config =
            Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Invalid {
                origin: origin.clone(),
                detail: e.to_string(),
            })?;
        config
            .check()
            .map_err(|detail| ConfigError::Invalid { origin, detail })?;
        Ok(config)
    }

    /// What the types cannot say: settings that only make sense together.
    fn check(&self) -> Result<(), String> {
        let s = &self.server;
        if s.tls_cert.is_some() != s.tls_key.is_some() {
            return Err(
                "server.tls_cert and server.tls_key go together: set both or neither".into(),
            );
        }
        for (name, secs) in [
            ("header_timeout_secs", s.header_timeout_secs),
            ("body_timeout_secs", s.body_timeout_secs),
            ("idle_timeout_secs", s.idle_timeout_secs),
        ] {
            if secs == 0 {
                return Err(format!("server.{name} must be at least 1"));
            }
        }
        if s.max_connections == 0 {
            return Err("server.max_connections must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_mlruns() {
        let c = Config::load(None, env(&[])).expect("defaults");
        assert_eq!(c.alerts.max_allowed, 10_000);
        assert_eq!(c.alerts.max_criteria_count, 100);
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("tocsin.toml");
        std::fs::write(&path, "[alerts]\nmode = \"disabled\"\nmax_allowed = 5\n[server]\ndata_dir = \"/var/lib/tocsin\"\n")
            .expect("write");
        let c = Config::load(
            Some(&path),
            env(&[
                ("TOCSIN_ALERTS__MAX_ALLOWED", "7"),
                ("TOCSIN_SERVER__LISTEN", "127.0.0.1:9999"),
                ("HOME", "/root"),
            ]),
        )
        .expect("config");
        assert_eq!(c.alerts.mode, tocsin_core::AlertsMode::Disabled);
        assert_eq!(c.alerts.max_allowed, 7);
        assert_eq!(c.server.listen.port(), 9999);
        assert_eq!(c.server.data_dir, PathBuf::from("/var/lib/tocsin"));
    }

    #[test]
    fn mistakes_are_named() {
        let err =
            Config::load(None, env(&[("TOCSIN_ALERTS__MODE", "sometimes")])).expect_err("bad mode");
        assert!(
            err.to_string().contains("TOCSIN_ALERTS__MODE")
                && err.to_string().contains("sometimes"),
            "{err}"
        );
        let err = Config::load(None, env(&[("TOCSIN_ALERTS__MAX_ALOWED", "3")])).expect_err("typo");
        assert!(err.to_string().contains("max_alowed"), "{err}");
        let err = Config::load(None, env(&[("TOCSIN_SERVER__TLS_CERT", "c.pem")]))
            .expect_err("a certificate without its key");
        assert!(err.to_string().contains("tls_key"), "{err}");
        let err = Config::load(None, env(&[("TOCSIN_SERVER__BODY_TIMEOUT_SECS", "0")]))
            .expect_err("no time at all");
        assert!(err.to_string().contains("body_timeout_secs"), "{err}");
        let c = Config::load(None, env(&[("TOCSIN_AUTH__ENABLED", "true")])).expect("auth on");
        assert!(c.auth.enabled);
    }
}
