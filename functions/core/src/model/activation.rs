//! Activations: the record of one firing of an alert, and what its notifications did.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::NotificationKind;
use super::alert::Criteria;
use super::kinds::{EntityKind, EventKind, Severity};
use super::time::Timestamp;

/// One firing of an alert (MLRun's `AlertActivation`), newest first in listings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activation {
    pub id: u64,
    pub name: String,
    pub project: String,
    pub severity: Severity,
    pub activation_time: Timestamp,
    pub entity_id: String,
    pub entity_kind: EntityKind,
    pub criteria: Criteria,
    pub event_kind: EventKind,
    pub number_of_events: u64,
    pub notifications: Vec<NotificationState>,
    pub reset_time: Option<Timestamp>,
    /// Tocsin extension: the alert's summary with its placeholders filled in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Tocsin extension: the `value_dict` of the event that fired the alert.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub value_dict: Map<String, Value>,
    /// Tocsin extension: the alerts whose `event` notifications led to the event that fired
    /// this activation (see [`crate::model::AcceptedEvent::chain`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// Tocsin extension: what became of each notification of the alert. `notifications` (MLRun's
    /// per-kind summary) is derived from it by [`Activation::summarize`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deliveries: Vec<Delivery>,
    /// Tocsin extension: why it closed ("reset by dana", "its cooldown ended"), once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
}

impl Activation {
    /// Whether a notification still waits for delivery (the activation is in the outbox).
    pub fn is_pending(&self) -> bool {
        self.deliveries.iter().any(Delivery::is_pending)
    }

    /// Closes it at `at` for `why`, adding the resolved notifications to deliver. A closed
    /// activation stays as it closed first (a store may be told twice).
    ///
    /// A resolved notification follows only a firing that was notified (Alertmanager's rule):
    /// one whose firing a silence, an acknowledgement or a cooldown held back is recorded as
    /// suppressed too, saying why, so that nobody learns that something resolved which they
    /// were never told had fired.
    pub fn close(&mut self, at: Timestamp, why: &str, resolved: &[Delivery]) {
        if self.reset_time.is_some() && self.resolution.is_some() {
            return;
        }
        self.reset_time.get_or_insert(at);
        self.resolution = Some(why.to_owned());
        for d in resolved {
            let firing = self
                .deliveries
                .iter()
                .find(|f| !f.resolved && f.notification == d.notification);
            let d = match firing {
                Some(f) if f.status == DeliveryStatus::Suppressed => Delivery {
                    status: DeliveryStatus::Suppressed,
                    error: Some(format!(
                        "its firing was not notified ({})",
                        f.error.as_deref().unwrap_or("suppressed")
                    )),
                    at: Some(at),
                    silence: f.silence.clone(),
                    ..d.clone()
                },
                _ => d.clone(),
            };
            self.record(d);
        }
    }

    /// Adds the notifications that the alert's acknowledgement tells (to channels that take
    /// acknowledgements), once per notification. One whose firing was held back is recorded
    /// as suppressed, saying why: there is nothing to acknowledge at the receiver.
    pub fn note_acknowledgement(&mut self, deliveries: &[Delivery], at: Timestamp) {
        for d in deliveries {
            let told = self
                .deliveries
                .iter()
                .any(|e| e.acknowledged && e.notification == d.notification);
            if told || self.reset_time.is_some() {
                continue;
            }
            let firing = self
                .deliveries
                .iter()
                .find(|f| !f.resolved && !f.acknowledged && f.notification == d.notification);
            let d = match firing {
                Some(f) if f.status != DeliveryStatus::Sent && !f.is_pending() => Delivery {
                    status: DeliveryStatus::Suppressed,
                    error: Some(format!(
                        "its firing was not notified ({})",
                        f.error.as_deref().unwrap_or("not sent")
                    )),
                    at: Some(at),
                    ..d.clone()
                },
                _ => d.clone(),
            };
            self.record(d);
        }
    }

    /// Replaces the record of `delivery.notification` (its firing, its resolved or its
    /// acknowledgement delivery) and recomputes the per-kind summary.
    pub fn record(&mut self, delivery: Delivery) {
        match self.deliveries.iter_mut().find(|d| {
            d.notification == delivery.notification
                && d.resolved == delivery.resolved
                && d.acknowledged == delivery.acknowledged
        }) {
            Some(d) => *d = delivery,
            None => self.deliveries.push(delivery),
        }
        self.summarize();
    }

    /// MLRun's `notifications`: per kind, how many were delivered and how many failed, and the
    /// errors. Pending and suppressed notifications are not counted (they were not sent).
    pub fn summarize(&mut self) {
        let mut states: Vec<NotificationState> = Vec::new();
        for d in &self.deliveries {
            let (ok, failed) = match d.status {
                DeliveryStatus::Sent => (1, 0),
                DeliveryStatus::Failed => (0, 1),
                DeliveryStatus::Pending | DeliveryStatus::Retrying | DeliveryStatus::Suppressed => {
                    continue;
                }
            };
            let kind = d.kind.as_str();
            let i = match states.iter().position(|s| s.kind == kind) {
                Some(i) => i,
                None => {
                    states.push(NotificationState {
                        kind: kind.into(),
                        err: None,
                        summary: NotificationSummary::default(),
                    });
                    states.len() - 1
                }
            };
            let state = &mut states[i];
            state.summary.succeeded += ok;
            state.summary.failed += failed;
            if let Some(e) = d.error.as_deref().filter(|_| failed == 1) {
                let msg = format!("{}: {e}", d.notification);
                state.err = Some(match state.err.take() {
                    Some(prev) => format!("{prev}; {msg}"),
                    None => msg,
                });
            }
        }
        self.notifications = states;
    }
}

/// What became of one notification of an activation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The notification's name in the alert.
    pub notification: String,
    pub kind: NotificationKind,
    pub status: DeliveryStatus,
    /// Delivery attempts made.
    #[serde(default)]
    pub attempts: u32,
    /// Why it failed, or why it was suppressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was delivered or given up; for a suppressed one, when its cooldown or its
    /// silence ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
    /// The id of the silence that held it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silence: Option<String>,
    /// The notification that the activation closed (`send_resolved`), not that it fired. Its
    /// delivery key is `{activation}:{name}:resolved`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resolved: bool,
    /// The notification that the alert was acknowledged (to a channel that takes
    /// acknowledgements: PagerDuty, Opsgenie). Its delivery key is
    /// `{activation}:{name}:acknowledged`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub acknowledged: bool,
}

impl Delivery {
    /// A delivery of notification `note` waiting in the outbox: of its firing, or (`resolved`)
    /// of its closing, or (`acknowledged`) of the alert's acknowledgement.
    pub fn pending(note: &super::Notification, resolved: bool, acknowledged: bool) -> Delivery {
        Delivery {
            notification: note.name.clone(),
            kind: note.kind,
            status: DeliveryStatus::Pending,
            attempts: 0,
            error: None,
            at: None,
            silence: None,
            resolved,
            acknowledged,
        }
    }

    /// Whether it is still to be delivered: waiting, or being retried.
    pub fn is_pending(&self) -> bool {
        matches!(
            self.status,
            DeliveryStatus::Pending | DeliveryStatus::Retrying
        )
    }

    /// The key receivers dedup on: the same for every attempt and redelivery of this
    /// notification of this activation, and distinct for its resolved notification.
    pub fn key(&self, activation: u64) -> String {
        if self.acknowledged {
            format!("{activation}:{}:acknowledged", self.notification)
        } else if self.resolved {
            format!("{activation}:{}:resolved", self.notification)
        } else {
            format!("{activation}:{}", self.notification)
        }
    }
}

/// The fate of a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting in the outbox.
    Pending,
    /// Being retried: `attempts` made so far, `error` why the last one failed, `at` when the
    /// next one is due.
    Retrying,
    /// Delivered: the receiver answered 2xx.
    Sent,
    /// Given up: a permanent refusal, or retries exhausted.
    Failed,
    /// Not sent: the alert was acknowledged, a silence held it back, or the notification's
    /// cooldown was running.
    Suppressed,
}

/// What the notifications of one kind did for an activation (MLRun's `NotificationState`).
/// `err` is empty when every one of them was delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationState {
    pub kind: String,
    pub err: Option<String>,
    pub summary: NotificationSummary,
}

/// How many notifications of a kind were delivered and how many failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NotificationSummary {
    pub failed: u32,
    pub succeeded: u32,
}
