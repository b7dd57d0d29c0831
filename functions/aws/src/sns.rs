//! The SNS topic that fans activations out: to the notifier Lambda (Slack, webhook, chained
//! events) and to email subscriptions filtered per alert.

use std::sync::{Arc, Mutex};

use aws_sdk_sns::types::MessageAttributeValue;
use serde_json::json;
use tocsin_core::Dispatch;
use tocsin_core::channels::{Phase, render_mail};
use tocsin_core::compiled::Rule;
use tocsin_core::engine::Fired;
use tocsin_core::error::{Backend, Error, Result};
use tocsin_core::model::{Activation, NotificationKind};

/// The message attributes every activation carries; email subscriptions filter on `project`
/// and `alert`.
pub const ATTRIBUTES: [&str; 3] = ["project", "alert", "severity"];

/// The topic, with its client (built once per Lambda container).
pub struct Topic {
    client: aws_sdk_sns::Client,
    arn: String,
}

fn attribute(kind: &str, value: impl Into<String>) -> Result<MessageAttributeValue> {
    MessageAttributeValue::builder()
        .data_type(kind)
        .string_value(value)
        .build()
        .map_err(|e| {
            Error::backend(
                Backend::Sns,
                format!("cannot build an SNS message attribute: {e}"),
            )
        })
}

/// An SNS subject: printable ASCII on one line, at most 100 characters.
fn subject(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(100)
        .collect();
    if clean.trim().is_empty() {
        "Tocsin alert".into()
    } else {
        clean
    }
}

/// What the notifier Lambda reads from a message.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub activation: Activation,
    /// The activation closed: the message carries its resolved mail to the email
    /// subscriptions. The notifier that published it delivers the rest itself, so the
    /// notifier subscription ignores it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resolved: bool,
}

impl Topic {
    pub fn new(client: aws_sdk_sns::Client, arn: impl Into<String>) -> Self {
        Topic {
            client,
            arn: arn.into(),
        }
    }

    pub fn arn(&self) -> &str {
        &self.arn
    }

    pub fn client(&self) -> &aws_sdk_sns::Client {
        &self.client
    }

    /// Publishes an activation that fired or (`phase`) closed: JSON for the notifier, the
    /// rendered mail for email subscribers (RESOLVED in the subject when it closed), and the
    /// attributes that subscriptions filter on.
    pub async fn publish(&self, activation: &Activation, rule: &Rule, phase: Phase) -> Result<()> {
        let default = serde_json::to_string(&Message {
            activation: activation.clone(),
            resolved: phase == Phase::Resolved,
        })
        .map_err(|e| Error::backend(Backend::Sns, e.to_string()))?;
        let mail = rule
            .config
            .notifications
            .iter()
            .map(|n| &n.notification)
            .find(|n| n.kind == NotificationKind::Email)
            .map(|note| render_mail(note, activation, phase));
        let (title, body) = match mail {
            Some((subject, text, _html)) => (subject, text),
            None => (
                format!("[{}] {}", activation.severity, activation.name),
                activation.summary.clone().unwrap_or_default(),
            ),
        };
        let message = json!({"default": default, "email": body}).to_string();
        self.client
            .publish()
            .topic_arn(&self.arn)
            .message_structure("json")
            .message(message)
            .subject(subject(&title))
            .message_attributes("project", attribute("String", &activation.project)?)
            .message_attributes("alert", attribute("String", &activation.name)?)
            .message_attributes(
                "severity",
                attribute("String", activation.severity.to_string())?,
            )
            .message_attributes(
                "activation",
                attribute("Number", activation.id.to_string())?,
            )
            .send()
            .await
            .map_err(|e| {
                Error::backend(
                    Backend::Sns,
                    format!("Publish: {}", aws_sdk_sns::error::DisplayErrorContext(&e)),
                )
            })?;
        Ok(())
    }
}

/// Fired activations held until the invocation's answer is ready, then published: a Lambda is
/// frozen once it answers, so nothing may be left to a background task. An activation whose
/// publication fails stays in the store's outbox (its notifications pending), where the
/// notifier's sweep finds it.
pub struct Publisher {
    fired: Mutex<Vec<Fired>>,
    topic: Arc<Topic>,
}

impl Publisher {
    pub fn new(topic: Arc<Topic>) -> Self {
        Publisher {
            fired: Mutex::new(Vec::new()),
            topic,
        }
    }

    /// Publishes what was held; returns how many were published.
    pub async fn flush(&self) -> usize {
        let fired = std::mem::take(&mut *self.fired.lock().unwrap_or_else(|e| e.into_inner()));
        let mut published = 0;
        for f in fired {
            match self
                .topic
                .publish(&f.activation, &f.rule, Phase::Fired)
                .await
            {
                Ok(()) => published += 1,
                Err(e) => tracing::error!(
                    activation = f.activation.id,
                    error = %e,
                    "cannot publish an activation; it stays in the outbox for the sweep"
                ),
            }
        }
        published
    }
}

impl Dispatch for Publisher {
    fn dispatch(&self, fired: Fired) {
        self.fired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(fired);
    }
}
