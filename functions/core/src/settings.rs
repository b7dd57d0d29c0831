//! The operator's knobs (MLRun's `alerts.*` config), set by a config file and environment in the
//! hosts; the core only reads them.

use serde::{Deserialize, Serialize};

use crate::model::Span;

/// `alerts.mode`: when disabled, events are accepted and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertsMode {
    #[default]
    Enabled,
    Disabled,
}

/// The `alerts.*` settings, with MLRun's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsSettings {
    pub mode: AlertsMode,
    /// Above this many alerts (all projects together) new alerts are refused with 412.
    pub max_allowed: usize,
    /// A criteria count at or above this is refused with 412.
    pub max_criteria_count: i64,
    /// How long an event's idempotency key is remembered, in seconds.
    pub idempotency_ttl_secs: i64,
    /// How long an expired silence stays listed, in seconds (Alertmanager keeps 5 days too).
    pub silence_retention_secs: i64,
}

impl Default for AlertsSettings {
    fn default() -> Self {
        AlertsSettings {
            mode: AlertsMode::Enabled,
            max_allowed: 10_000,
            max_criteria_count: 100,
            idempotency_ttl_secs: 24 * 3600,
            silence_retention_secs: 5 * 86_400,
        }
    }
}

impl AlertsSettings {
    /// How long expired silences stay listed.
    pub fn silence_retention(&self) -> Span {
        Span::from_secs(self.silence_retention_secs)
    }

    /// How long idempotency keys live.
    pub fn idempotency_ttl(&self) -> Span {
        Span::from_secs(self.idempotency_ttl_secs)
    }
}

/// The shortest alert-level cooldown MLRun allows (its `cooldown_reset_interval`).
pub const MIN_COOLDOWN: Span = Span::from_secs(15);
