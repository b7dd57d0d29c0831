//! What a Lambda function reads from its environment (set by `infra/template.yaml`), and the
//! AWS clients, built once per container.

use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use tocsin_core::model::Span;
use tocsin_core::settings::{AlertsMode, AlertsSettings};

use crate::dynamo::DynamoSettings;

/// Why a function cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} = `{value}`: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
}

/// The functions' settings.
#[derive(Debug, Clone)]
pub struct Environment {
    /// `TOCSIN_TABLE`: the DynamoDB table.
    pub table: String,
    /// `TOCSIN_TOPIC_ARN`: the SNS topic activations are published to.
    pub topic_arn: String,
    /// `TOCSIN_QUEUE_URL`: the SQS queue of event batches (API only; unset: batches are
    /// evaluated in the request).
    pub queue_url: Option<String>,
    /// `TOCSIN_ALERTS_MODE` (`enabled`/`disabled`), `TOCSIN_ALERTS_MAX_ALLOWED`,
    /// `TOCSIN_ALERTS_MAX_CRITERIA_COUNT`.
    pub alerts: AlertsSettings,
    /// `TOCSIN_CONFIG_TTL_MS`: how stale cached alert configs may be for evaluation (5000).
    pub config_ttl: Duration,
    /// `TOCSIN_MAX_BODY_BYTES`: the largest request body (1 MiB).
    pub max_body_bytes: usize,
    /// How JWT claims map to roles: `TOCSIN_JWT_GRANTS_CLAIM`, `TOCSIN_JWT_SCOPE_PREFIX`,
    /// `TOCSIN_JWT_NAME_CLAIM` (see [`crate::claims`]).
    pub claims: crate::claims::Claims,
    /// `TOCSIN_GIVE_UP_SECS`: the notifier stops retrying a delivery after this long (120;
    /// below the function's timeout).
    pub give_up_secs: u64,
    /// `TOCSIN_SWEEP_AFTER_SECS`: the sweep republishes activations still pending this long
    /// after they fired (600).
    pub sweep_after_secs: i64,
    /// `TOCSIN_ACTIVATION_RETENTION_DAYS`: activations expire (TTL) this long after they fired (30).
    pub activation_retention_days: i64,
    /// `TOCSIN_REDELIVERY_HORIZON_SECS`: how long windows remember the queue messages they
    /// counted (900: the queue's visibility timeout, 180 s, times its `maxReceiveCount`, 5).
    pub redelivery_horizon_secs: u64,
    /// `TOCSIN_EVENT_RETENTION_DAYS`: events are kept this long for `explain` and the
    /// backtest (7; 0 keeps none).
    pub event_retention_days: i64,
}

fn parse<T: std::str::FromStr>(
    name: &'static str,
    value: Option<String>,
    default: T,
) -> Result<T, EnvError>
where
    T::Err: std::fmt::Display,
{
    match value {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e: T::Err| EnvError::Invalid {
            name,
            value: v,
            reason: e.to_string(),
        }),
    }
}

impl Environment {
    /// From the process environment.
    pub fn from_env() -> Result<Self, EnvError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// From any lookup of variables (tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let required = |name: &'static str| get(name).ok_or(EnvError::Missing(name));
        let defaults = AlertsSettings::default();
        let mode = match get("TOCSIN_ALERTS_MODE").as_deref().map(str::trim) {
            None | Some("enabled") => AlertsMode::Enabled,
            Some("disabled") => AlertsMode::Disabled,
            Some(other) => {
                return Err(EnvError::Invalid {
                    name: "TOCSIN_ALERTS_MODE",
                    value: other.to_owned(),
                    reason: "use `enabled` or `disabled`".into(),
                });
            }
        };
        Ok(Environment {
            table: required("TOCSIN_TABLE")?,
            topic_arn: required("TOCSIN_TOPIC_ARN")?,
            queue_url: get("TOCSIN_QUEUE_URL"),
            alerts: AlertsSettings {
                mode,
                max_allowed: parse(
                    "TOCSIN_ALERTS_MAX_ALLOWED",
                    get("TOCSIN_ALERTS_MAX_ALLOWED"),
                    defaults.max_allowed,
                )?,
                max_criteria_count: parse(
                    "TOCSIN_ALERTS_MAX_CRITERIA_COUNT",
                    get("TOCSIN_ALERTS_MAX_CRITERIA_COUNT"),
                    defaults.max_criteria_count,
                )?,
                ..defaults
            },
            config_ttl: Duration::from_millis(parse(
                "TOCSIN_CONFIG_TTL_MS",
                get("TOCSIN_CONFIG_TTL_MS"),
                5000,
            )?),
            max_body_bytes: parse(
                "TOCSIN_MAX_BODY_BYTES",
                get("TOCSIN_MAX_BODY_BYTES"),
                1024 * 1024,
            )?,
            claims: {
                let d = crate::claims::Claims::default();
                crate::claims::Claims {
                    grants_claim: get("TOCSIN_JWT_GRANTS_CLAIM").unwrap_or(d.grants_claim),
                    scope_prefix: get("TOCSIN_JWT_SCOPE_PREFIX").unwrap_or(d.scope_prefix),
                    name_claim: get("TOCSIN_JWT_NAME_CLAIM").unwrap_or(d.name_claim),
                }
            },
            give_up_secs: parse("TOCSIN_GIVE_UP_SECS", get("TOCSIN_GIVE_UP_SECS"), 120)?,
            sweep_after_secs: parse(
                "TOCSIN_SWEEP_AFTER_SECS",
                get("TOCSIN_SWEEP_AFTER_SECS"),
                600,
            )?,
            activation_retention_days: parse(
                "TOCSIN_ACTIVATION_RETENTION_DAYS",
                get("TOCSIN_ACTIVATION_RETENTION_DAYS"),
                30,
            )?,
            redelivery_horizon_secs: parse(
                "TOCSIN_REDELIVERY_HORIZON_SECS",
                get("TOCSIN_REDELIVERY_HORIZON_SECS"),
                900,
            )?,
            event_retention_days: parse(
                "TOCSIN_EVENT_RETENTION_DAYS",
                get("TOCSIN_EVENT_RETENTION_DAYS"),
                7,
            )?,
        })
    }

    /// The store's settings.
    pub fn dynamo(&self) -> DynamoSettings {
        DynamoSettings {
            config_ttl: self.config_ttl,
            activation_retention: Span::from_secs(self.activation_retention_days * 86_400),
            redelivery_horizon: Duration::from_secs(self.redelivery_horizon_secs),
            event_retention: (self.event_retention_days > 0)
                .then(|| Span::from_secs(self.event_retention_days * 86_400)),
            ..DynamoSettings::new(self.table.clone())
        }
    }
}

/// The AWS clients, built once per container and shared by every invocation.
#[derive(Clone)]
pub struct Clients {
    pub dynamo: aws_sdk_dynamodb::Client,
    pub sns: aws_sdk_sns::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl Clients {
    pub fn new(config: &SdkConfig) -> Self {
        Clients {
            dynamo: aws_sdk_dynamodb::Client::new(config),
            sns: aws_sdk_sns::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
        }
    }

    /// From the Lambda environment: region, credentials, and the endpoint of a local stand-in
    /// (moto, DynamoDB Local) when `TOCSIN_ENDPOINT_URL` or `AWS_ENDPOINT_URL` is set: the
    /// template's `EndpointUrl` parameter sets the first for `sam local`. Reads no network.
    pub async fn from_env() -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(url) = std::env::var("TOCSIN_ENDPOINT_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
        {
            loader = loader.endpoint_url(url);
        }
        Self::new(&loader.load().await)
    }
}

/// Logs for CloudWatch: no colours, no timestamps (CloudWatch adds them), `RUST_LOG` or info.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Environment, EnvError> {
        Environment::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn reads_the_template_variables_with_mlrun_defaults() {
        let e = env(&[
            ("TOCSIN_TABLE", "t"),
            ("TOCSIN_TOPIC_ARN", "arn:aws:sns:us-east-1:1:t"),
            ("TOCSIN_ALERTS_MAX_ALLOWED", "50"),
        ])
        .expect("valid");
        assert_eq!(e.table, "t");
        assert_eq!(e.alerts.max_allowed, 50);
        assert_eq!(e.alerts.max_criteria_count, 100);
        assert_eq!(e.alerts.mode, AlertsMode::Enabled);
        assert_eq!(e.queue_url, None);
        assert_eq!(e.config_ttl, Duration::from_secs(5));
    }

    #[test]
    fn says_what_is_missing_or_wrong() {
        let missing = env(&[("TOCSIN_TOPIC_ARN", "x")]).map(|_| ()).unwrap_err();
        assert_eq!(missing.to_string(), "TOCSIN_TABLE is not set");
        let bad = env(&[
            ("TOCSIN_TABLE", "t"),
            ("TOCSIN_TOPIC_ARN", "x"),
            ("TOCSIN_ALERTS_MODE", "sometimes"),
        ])
        .map(|_| ())
        .unwrap_err();
        assert_eq!(
            bad.to_string(),
            "TOCSIN_ALERTS_MODE = `sometimes`: use `enabled` or `disabled`"
        );
        let number = env(&[
            ("TOCSIN_TABLE", "t"),
            ("TOCSIN_TOPIC_ARN", "x"),
            ("TOCSIN_ALERTS_MAX_ALLOWED", "many"),
        ])
        .map(|_| ())
        .unwrap_err();
        assert!(
            number
                .to_string()
                .starts_with("TOCSIN_ALERTS_MAX_ALLOWED = `many`: ")
        );
    }
}
