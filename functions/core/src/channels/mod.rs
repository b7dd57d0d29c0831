//! Notification channels, one file each: what a channel takes (its parameters, with their
//! names, whether each is a secret, and the form of its value), what it checks, what it sends
//! for a firing, a resolved notice or an acknowledgement, how it reads the receiver's answer,
//! and what its preview shows. All of it pure: a channel describes the message
//! ([`Outgoing`]) and reads the answer ([`Answer`] → [`Reading`]); the notifier
//! (`tocsin-adapters`) sends it, over HTTP, SMTP, or as a chained event, and retries as the
//! reading says.
//!
//! Every channel is registered once, in the [`channels!`] list below, which makes the
//! [`NotificationKind`] vocabulary and its table: the rule language, `tocsin export`, the
//! preview, the OpenAPI document and delivery all read it. Adding a channel is its file and
//! its line there.

mod text;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::model::kinds::exact;
use crate::model::{Activation, Delivery, Notification, ParamSpec, UnknownValue};

pub use text::{facts, link, message, resolution};

/// A notification's mail as (subject, text, HTML), for a host that carries mail its own way
/// (the AWS deployment's SNS email subscriptions).
pub fn render_mail(note: &Notification, a: &Activation, phase: Phase) -> (String, String, String) {
    let key = String::new();
    email::render(&Message {
        note,
        secret: None,
        activation: a,
        phase,
        key: &key,
        test: false,
        alert_url: None,
    })
}

/// What a notification announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The activation fired.
    Fired,
    /// The activation closed (a `send_resolved` notification).
    Resolved,
    /// Someone acknowledged the alert (channels that take acknowledgements: PagerDuty,
    /// Opsgenie).
    Acknowledged,
}

impl Phase {
    /// The phase a delivery is of.
    pub fn of(d: &Delivery) -> Phase {
        if d.acknowledged {
            Phase::Acknowledged
        } else if d.resolved {
            Phase::Resolved
        } else {
            Phase::Fired
        }
    }
}

/// One message to make: which notification, of which activation, for what.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub note: &'a Notification,
    /// Its secret parameters, as stored beside the rule (never shown).
    pub secret: Option<&'a Map<String, Value>>,
    pub activation: &'a Activation,
    pub phase: Phase,
    /// What receivers dedup on: the same for every attempt of this message.
    pub key: &'a str,
    /// A test message (`tocsin notify test`): marked as such in what it says.
    pub test: bool,
    /// Where the alert can be seen (the server's public URL and the alert's page), if the
    /// operator set one.
    pub alert_url: Option<&'a str>,
}

impl<'a> Message<'a> {
    /// A parameter, from the secret parameters, else the plain ones; None when absent or null.
    pub fn param(&self, key: &str) -> Option<&'a Value> {
        crate::model::notification_params::param_value(key, self.secret, self.note)
    }

    /// A parameter as a non-empty string.
    pub fn text(&self, key: &str) -> Option<&'a str> {
        self.param(key)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
    }

    /// A required string parameter, or why the message cannot be made.
    pub fn required(&self, key: &str) -> Result<&'a str, Refusal> {
        self.text(key)
            .ok_or_else(|| Refusal(format!("no {key} configured")))
    }

    /// The notification's message with its placeholders rendered (else the summary), marked
    /// when it is a test.
    pub fn words(&self) -> String {
        let words = message(self.note, self.activation);
        if self.test {
            format!("[test] {words}")
        } else {
            words
        }
    }
}

/// What a channel sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// An HTTP request with a JSON body.
    Http {
        method: String,
        url: String,
        headers: Vec<(String, String)>,
        body: Value,
    },
    /// A mail.
    Mail {
        to: Vec<String>,
        subject: String,
        text: String,
        html: String,
    },
    /// An event posted into the alert's project (a chained event).
    Event(Box<crate::model::Event>),
    /// Nothing to send for this phase (a chained event's closing; mail carried by SNS).
    Nothing,
}

/// Why a message cannot be made: the notification lacks something, or cannot say this. Never
/// names a URL or a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

/// A receiver's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// `Retry-After`, as the notifier read it.
    pub retry_after: Option<Duration>,
    /// The body, as much as was read.
    pub body: Vec<u8>,
}

/// What an answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// Delivered.
    Sent,
    /// Not delivered this time: try again (after `after`, when the receiver said when).
    Retry {
        cause: String,
        after: Option<Duration>,
    },
    /// Refused for good: trying again will not change it.
    Refused(String),
}

/// An HTTP answer read the usual way: 2xx delivered; 408, 429 and 5xx worth another try
/// (after `Retry-After`); any other status refused. The cause says the status and, for a
/// refusal, what the receiver said (a short start of its body).
pub fn read_http(answer: &Answer) -> Reading {
    let status = answer.status;
    if (200..300).contains(&status) {
        return Reading::Sent;
    }
    let cause = format!("{status} from the receiver");
    if status == 408 || status == 429 || status >= 500 {
        return Reading::Retry {
            cause,
            after: answer.retry_after,
        };
    }
    Reading::Refused(match said(&answer.body) {
        Some(said) => format!("{cause}: {said}"),
        None => cause,
    })
}

/// The start of what a receiver said in its body, on one line, for a refusal's cause.
pub fn said(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut: String = line.chars().take(200).collect();
    (!cut.is_empty()).then_some(cut)
}

/// A notification channel. Pure: see the module's documentation.
pub trait Channel: Sync {
    /// Its parameters (names on the wire and in the rule language, secret or not, value
    /// shape, required or not).
    fn params(&self) -> &'static [ParamSpec];

    /// What it checks of a notification beyond its required parameters (the server's store
    /// endpoint and `tocsin check` both run it): why it cannot deliver, if so.
    fn check(&self, _params: &Map<String, Value>) -> Result<(), String> {
        Ok(())
    }

    /// The message to send.
    fn outgoing(&self, m: &Message<'_>) -> Result<Outgoing, Refusal>;

    /// What the receiver's answer means.
    fn read(&self, answer: &Answer) -> Reading {
        read_http(answer)
    }

    /// The least time between two messages to one target (Slack takes about one a second
    /// per webhook); the notifier waits it out without holding up other channels.
    fn pace(&self) -> Option<Duration> {
        None
    }

    /// Whether it is told when the alert is acknowledged (its open incident acknowledged).
    fn acknowledges(&self) -> bool {
        false
    }

    /// Whether MLRun's client knows the kind; the others are hidden from it.
    fn mlrun(&self) -> bool {
        false
    }

    /// What a preview shows of the message: its body, or a summary of it.
    fn preview(&self, m: &Message<'_>) -> Value {
        match self.outgoing(m) {
            Ok(Outgoing::Http { body, .. }) => body,
            Ok(Outgoing::Mail {
                subject,
                text,
                html,
                ..
            }) => serde_json::json!({"subject": subject, "text": text, "html": html}),
            Ok(Outgoing::Event(e)) => serde_json::to_value(e).unwrap_or(Value::Null),
            Ok(Outgoing::Nothing) => Value::Null,
            Err(Refusal(why)) => serde_json::json!({"not sent": why}),
        }
    }
}

/// Registers the channels: each line is a [`NotificationKind`] variant, its wire spelling (and
/// aliases), and the channel that implements it, as `its_file::TheChannel` (the module is
/// declared here).
macro_rules! channels {
    ($( $(#[$doc:meta])* $variant:ident = $wire:literal $(| $alias:literal)* => $module:ident :: $channel:ident ),+ $(,)?) => {
        $( mod $module; )+

        crate::model::kinds::wire_enum! {
            /// How an alert tells people: one channel per kind (see [`crate::channels`]).
            #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
            NotificationKind, "notification kind", normalize: exact, {
                $( $(#[$doc])* $variant = $wire $(| $alias)* ),+
            }
        }

        impl NotificationKind {
            /// The channel of this kind.
            pub fn channel(self) -> &'static dyn Channel {
                match self {
                    $( NotificationKind::$variant => &$module::$channel ),+
                }
            }

            /// The wire spelling, for as long as the program runs.
            pub const fn wire_name(self) -> &'static str {
                match self {
                    $( NotificationKind::$variant => $wire ),+
                }
            }
        }
    };
}

channels! {
    Slack = "slack" => slack::Slack,
    Webhook = "webhook" => webhook::Webhook,
    Git = "git" => git::Git,
    /// Answered as `mail`, the MLRun client's spelling (its enum has no `email`).
    Email = "mail" | "email" => email::Email,
    /// Tocsin only: the alert firing posts another event, which alerts can trigger on.
    Event = "event" => event::Chained,
    PagerDuty = "pagerduty" => pagerduty::PagerDuty,
    /// Microsoft Teams, through a Workflows webhook.
    Teams = "teams" => teams::Teams,
    Opsgenie = "opsgenie" => opsgenie::Opsgenie,
    Discord = "discord" => discord::Discord,
}

impl NotificationKind {
    /// Whether MLRun's client knows this kind; the others are hidden from it (see the API).
    pub fn is_mlrun_kind(self) -> bool {
        self.channel().mlrun()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An activation of alert `drift` of project `fraud`, id 7.
    pub fn activation() -> Activation {
        serde_json::from_value(serde_json::json!({
            "id": 7, "name": "drift", "project": "fraud", "severity": "high",
            "activation_time": "2026-11-23T10:00:00.000000+00:00", "entity_id": "ep1.app.res",
            "entity_kind": "model-endpoint-result", "criteria": {"count": 3, "period": "10m"},
            "event_kind": "data-drift-detected", "number_of_events": 3, "notifications": [],
            "reset_time": null, "summary": "Model fraud/ep1.app.res drifts",
            "value_dict": {"result_value": 0.91, "result_name": "hellinger"}
        }))
        .expect("activation")
    }

    /// A notification `oncall` of `kind`, with a message and the severity `warning`.
    pub fn note(kind: &str, message: Option<&str>) -> Notification {
        serde_json::from_value(
            serde_json::json!({"kind": kind, "name": "oncall", "message": message, "severity": "warning"}),
        )
        .expect("notification")
    }

    /// The message of `n` for `a` in `phase`, with no secret and no link to the alert.
    pub fn message<'a>(n: &'a Notification, a: &'a Activation, phase: Phase) -> Message<'a> {
        Message {
            note: n,
            secret: None,
            activation: a,
            phase,
            key: "7:oncall",
            test: false,
            alert_url: None,
        }
    }

    #[test]
    fn http_answers_read_as_delivered_retried_or_refused() {
        let answer = |status, body: &str| Answer {
            status,
            retry_after: Some(Duration::from_secs(3)),
            body: body.as_bytes().to_vec(),
        };
        assert_eq!(read_http(&answer(204, "")), Reading::Sent);
        assert_eq!(
            read_http(&answer(429, "slow down")),
            Reading::Retry {
                cause: "429 from the receiver".into(),
                after: Some(Duration::from_secs(3))
            }
        );
        assert!(matches!(read_http(&answer(503, "")), Reading::Retry { .. }));
        assert_eq!(
            read_http(&answer(404, "  no such\n hook ")),
            Reading::Refused("404 from the receiver: no such hook".into())
        );
    }

    #[test]
    fn every_kind_has_a_channel_with_one_required_target_or_none() {
        for kind in NotificationKind::ALL {
            let required = kind
                .channel()
                .params()
                .iter()
                .filter(|p| p.required)
                .count();
            assert!(required <= 2, "{kind}: {required} required parameters");
            let mut wires: Vec<&str> = kind.channel().params().iter().map(|p| p.wire).collect();
            wires.sort_unstable();
            let n = wires.len();
            wires.dedup();
            assert_eq!(wires.len(), n, "{kind}: a parameter named twice");
        }
    }
}
