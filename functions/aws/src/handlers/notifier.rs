//! The notifier function, subscribed to the topic: delivers an activation's Slack, webhook and
//! event notifications with the notifier of `tocsin serve` (retries, cooldowns, delivery keys),
//! and records each outcome; email notifications were carried by the topic's email
//! subscriptions. On a schedule, it settles what time brought (cooldowns that ended, absences
//! that came due) and sweeps the outbox: activations still pending long after they fired
//! (their publication failed) are published again. Each step, and each activation, stands on
//! its own: one that fails is logged and recorded on the activation (why, and that the next
//! sweep tries again), and the others go on.

use std::sync::Arc;

use serde_json::{Value, json};
use tocsin_adapters::notify::{Notifier, NotifierError, Phase};
use tocsin_core::Service;
use tocsin_core::error::{Error, Result};
use tocsin_core::model::{Activation, DeliveryStatus, NotificationKind, Span, Timestamp};

use super::{Wiring, wiring};
use crate::environment::{Clients, Environment};
use crate::sns::{Message, Publisher, Topic};

/// Activations looked at per sweep.
const SWEEP_BATCH: usize = 100;

/// What the sweep did with one activation.
enum Swept {
    Republished,
    Resolved,
    Nothing,
}

pub struct NotifierHandler {
    service: Service,
    notifier: Notifier,
    topic: Arc<Topic>,
    /// What chained events fire while delivering: published before the invocation answers,
    /// so that their notifications go out at once, not at the next sweep.
    publisher: Arc<Publisher>,
    sweep_after: Span,
}

impl NotifierHandler {
    pub fn new(env: &Environment, clients: &Clients) -> std::result::Result<Self, NotifierError> {
        let Wiring {
            service,
            topic,
            publisher,
        } = wiring(env, clients);
        let notifier = super::notifier_of(env, service.clone())?;
        Ok(NotifierHandler {
            service,
            notifier,
            topic,
            publisher,
            sweep_after: Span::from_secs(env.sweep_after_secs),
        })
    }

    /// An SNS notification (`Records`), or a scheduled sweep (anything else).
    pub async fn handle(&self, event: Value) -> Result<Value> {
        match event.get("Records").and_then(Value::as_array) {
            Some(records) => {
                let mut delivered = 0;
                for record in records {
                    let Some(message) = record.pointer("/Sns/Message").and_then(Value::as_str)
                    else {
                        tracing::error!("an SNS record without a message");
                        continue;
                    };
                    let result = self.deliver(message).await;
                    self.publisher.flush().await;
                    delivered += result?;
                }
                Ok(json!({"delivered": delivered}))
            }
            None => self.scheduled(Timestamp::now()).await,
        }
    }

    /// The scheduled run at `now`: the schedule is the AWS deployment's clock. What came due
    /// with no event (the end of a cooldown) is settled first, then the outbox swept, which
    /// delivers the resolved notifications that settling added.
    pub async fn scheduled(&self, now: Timestamp) -> Result<Value> {
        let (ticked, tick_error) = match self.service.tick(now).await {
            Ok(t) => (t, None),
            Err(e) => {
                tracing::error!(error = %e, "the tick could not find what is due; the next one tries again");
                (Default::default(), Some(e.to_string()))
            }
        };
        for (alert, e) in &ticked.failed {
            tracing::error!(alert, error = %e, "an alert could not be settled; the next tick tries again");
        }
        // Absences that came due were handed to the publisher: out before the sweep looks.
        self.publisher.flush().await;
        let mut swept = match self.sweep(now).await {
            Ok(swept) => swept,
            Err(e) => {
                tracing::error!(error = %e, "the outbox could not be read; the next sweep tries again");
                json!({"sweep_error": e.to_string()})
            }
        };
        swept["closed"] = json!(ticked.closed);
        swept["absences"] = json!(ticked.fired.len());
        swept["unsettled"] = json!(ticked.failed.len());
        if let Some(e) = tick_error {
            swept["tick_error"] = json!(e);
        }
        Ok(swept)
    }

    /// Delivers the activation a message names, as the store has it now (a redelivered
    /// message finds the notifications already settled and sends nothing again).
    async fn deliver(&self, message: &str) -> Result<usize> {
        let Message {
            activation,
            resolved,
        } = serde_json::from_str(message)
            .map_err(|e| Error::BadRequest(format!("not an activation message: {e}")))?;
        if resolved {
            // A resolved mail for the email subscriptions: the sweep that published it
            // delivers the activation's other resolved notifications itself.
            return Ok(0);
        }
        let stored = self
            .service
            .store()
            .activation(&activation.project, activation.id)
            .await?;
        match stored.filter(|a| a.is_pending()) {
            Some(a) => {
                // Its firing, then an acknowledgement that came meanwhile. A resolved round is
                // the sweep's: it publishes the resolved mail first.
                self.notifier
                    .deliver_stored(a, &[Phase::Fired, Phase::Acknowledged])
                    .await;
                Ok(1)
            }
            None => Ok(0),
        }
    }

    /// Publishes again the activations still pending `sweep_after` after they fired, and
    /// delivers their resolved notifications. One that cannot be handed on is recorded (why,
    /// and when the next sweep tries again) and the sweep goes on with the others.
    pub async fn sweep(&self, now: Timestamp) -> Result<Value> {
        let cutoff = now.plus(Span(-self.sweep_after.0));
        let pending = self.service.store().pending_deliveries(SWEEP_BATCH).await?;
        let (mut republished, mut resolved, mut stuck) = (0, 0, 0);
        for a in pending {
            match self.sweep_one(&a, cutoff).await {
                Ok(Swept::Republished) => republished += 1,
                Ok(Swept::Resolved) => resolved += 1,
                Ok(Swept::Nothing) => {}
                Err(e) => {
                    stuck += 1;
                    tracing::error!(activation = a.id, error = %e, "cannot hand an activation on; the next sweep tries again");
                    self.record_stuck(&a, &e, now).await;
                }
            }
        }
        Ok(json!({"republished": republished, "resolved": resolved, "stuck": stuck}))
    }

    /// One activation of the outbox.
    async fn sweep_one(&self, a: &Activation, cutoff: Timestamp) -> Result<Swept> {
        // A delivery reads `retrying` while an invocation retries it, with the time of its next
        // attempt; one whose next attempt is long past was left by an invocation that ended.
        let pending = |phase: Phase| {
            a.deliveries.iter().any(|d| {
                Phase::of(d) == phase
                    && (d.status == DeliveryStatus::Pending
                        || (d.status == DeliveryStatus::Retrying
                            && d.at.is_some_and(|next| next < cutoff)))
            })
        };
        // Acknowledgements and resolved notifications are delivered from here, at once:
        // publishing the activation as fired again would mail its email subscribers the firing
        // again. Its resolved mail goes to them as a resolved message first; if that fails,
        // the next sweep tries the whole round again.
        if pending(Phase::Acknowledged) || pending(Phase::Resolved) {
            self.publish_resolved_mail(a).await?;
            self.notifier
                .deliver_stored(a.clone(), &[Phase::Acknowledged, Phase::Resolved])
                .await;
            self.publisher.flush().await;
            return Ok(Swept::Resolved);
        }
        if !pending(Phase::Fired) || a.activation_time > cutoff {
            return Ok(Swept::Nothing);
        }
        let Some(record) = self.service.store().get_alert(&a.project, &a.name).await? else {
            // The alert is gone: deliver (which records the notifications as failed).
            self.notifier
                .deliver_stored(a.clone(), &[Phase::Fired])
                .await;
            self.publisher.flush().await;
            return Ok(Swept::Nothing);
        };
        self.topic.publish(a, &record.rule, Phase::Fired).await?;
        Ok(Swept::Republished)
    }

    /// Records on an activation that it could not be handed to the notifier, and why: its
    /// pending notifications say so (they stay pending), for the API and the Alerts page.
    async fn record_stuck(&self, a: &Activation, e: &Error, now: Timestamp) {
        let next = now.plus(Span(self.sweep_after.0.min(Span::from_secs(60).0)));
        for d in a
            .deliveries
            .iter()
            .filter(|d| d.status == DeliveryStatus::Pending)
        {
            let note = tocsin_core::model::Delivery {
                error: Some(format!(
                    "not handed to the notifier yet ({e}); the sweep tries again"
                )),
                at: Some(next),
                ..d.clone()
            };
            if let Err(e) = self.service.store().record_delivery(a.id, note).await {
                tracing::error!(activation = a.id, error = %e, "cannot record why an activation is stuck");
            }
        }
    }

    /// Publishes the resolved mail of an activation with a pending resolved email
    /// notification, for the topic's email subscriptions. Nothing when it has none, or when
    /// its alert is gone (delivering then records the notification failed, saying so).
    async fn publish_resolved_mail(&self, a: &Activation) -> Result<()> {
        let mails = a.deliveries.iter().any(|d| {
            d.resolved && d.kind == NotificationKind::Email && d.status == DeliveryStatus::Pending
        });
        if !mails {
            return Ok(());
        }
        match self.service.store().get_alert(&a.project, &a.name).await? {
            Some(record) => self.topic.publish(a, &record.rule, Phase::Resolved).await,
            None => Ok(()),
        }
    }
}
