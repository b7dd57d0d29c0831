//! One delivery attempt per notification kind: HTTP for Slack and webhooks, SMTP for email,
//! and the chained event; and how a receiver's answer decides whether to try again.

use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tocsin_core::engine::{extend_chain, render};
use tocsin_core::model::{
    Activation, Delivery, Entities, Event, EventKind, Notification, NotificationKind, Timestamp,
};

use super::Courier;
use super::payload::{Phase, mark_resolved, slack_payload, webhook_payload};
use super::retry::{Failure, retry_after};

impl Courier {
    /// One attempt.
    pub(super) async fn attempt(
        &self,
        note: &Notification,
        secret: Option<&Map<String, Value>>,
        a: &Activation,
        d: &Delivery,
    ) -> Result<(), Failure> {
        let phase = Phase::of(d);
        // The target (webhook, URL, addresses, event kind) by its key in the table of
        // notification parameters.
        let target = note.kind.target().wire;
        let request = match note.kind {
            NotificationKind::Slack => {
                let url = param(target, secret, note)
                    .and_then(Value::as_str)
                    .ok_or_else(|| missing(target))?;
                self.slack_slot(url).await;
                self.client.post(url).json(&slack_payload(note, a, phase))
            }
            NotificationKind::Webhook => {
                let url = param(target, secret, note)
                    .and_then(Value::as_str)
                    .ok_or_else(|| missing(target))?;
                let method = param("method", secret, note)
                    .and_then(Value::as_str)
                    .unwrap_or("POST");
                let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                    .map_err(|_| Failure::Permanent(format!("invalid HTTP method `{method}`")))?;
                let body = match param("override_body", secret, note) {
                    Some(body) => {
                        let mut body = body.clone();
                        if phase == Phase::Resolved {
                            mark_resolved(&mut body, a);
                        }
                        body
                    }
                    None => webhook_payload(note, a, phase),
                };
                let mut req = self.client.request(method, url).json(&body);
                if let Some(Value::Object(headers)) = param("headers", secret, note) {
                    for (k, v) in headers {
                        if let Some(v) = v.as_str() {
                            req = req.header(k.as_str(), v);
                        }
                    }
                }
                req
            }
            // The SNS topic's email subscriptions (filtered to this alert) carry it: the
            // activation was published before the notifier got it, and its resolved mail
            // before the notifier delivered its resolved notifications.
            NotificationKind::Email if self.settings.email_via_sns => {
                return Ok(());
            }
            NotificationKind::Email => {
                let mailer = self.mailer.as_ref().ok_or_else(|| {
                    Failure::Permanent(
                        "email is not configured on this server (set [smtp] host)".into(),
                    )
                })?;
                let to = param(target, secret, note).ok_or_else(|| missing(target))?;
                return mailer.send(note, to, a, phase).await;
            }
            NotificationKind::Git => {
                return Err(Failure::Permanent(
                    "git notifications are not delivered by this server".into(),
                ));
            }
            // A chained event is posted when the alert fires; its closing posts nothing.
            NotificationKind::Event if phase == Phase::Resolved => return Ok(()),
            NotificationKind::Event => return self.post_chained_event(note, a).await,
        };
        let key = d.key(a.id);
        // reqwest's errors name the URL, and a webhook URL is a secret: never let it into the
        // activation record or the log.
        let response = request
            .header("Idempotency-Key", key)
            .send()
            .await
            .map_err(|e| Failure::Retry {
                reason: e.without_url().to_string(),
                after: None,
            })?;
        classify(response.status(), response.headers())
    }

    /// An `event` notification: posts the event its params describe into the alert's project,
    /// evaluated like any other, unless the chain of alerts that led here would loop or grow
    /// past `MAX_CHAIN` (the engine's [`extend_chain`]). The delivery key is the event's
    /// idempotency key, so a redelivery after a crash is counted once.
    async fn post_chained_event(&self, note: &Notification, a: &Activation) -> Result<(), Failure> {
        let chain = extend_chain(&a.chain, &a.project, &a.name)
            .map_err(|stop| Failure::Permanent(format!("not posted: {stop}")))?;
        let params = note.params.clone().unwrap_or_default();
        let target = NotificationKind::Event.target().wire;
        let kind: EventKind = params
            .get(target)
            .and_then(Value::as_str)
            .ok_or_else(|| missing(target))?
            .parse()
            .map_err(|e: tocsin_core::model::UnknownValue| Failure::Permanent(e.to_string()))?;
        let entity_template = params
            .get("entity_id")
            .and_then(Value::as_str)
            .unwrap_or("{{entity}}");
        let value_dict = match params.get("value_dict") {
            Some(Value::Object(values)) => values
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.clone(), |s| Value::from(render(s, a)))))
                .collect(),
            _ => serde_json::json!({"source_alert": a.name, "source_activation": a.id, "summary": a.summary})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        };
        let entity_kind = kind.entity_kind().unwrap_or(a.entity_kind);
        let event = Event {
            kind: Some(kind.clone()),
            timestamp: None,
            entity: Entities {
                kind: entity_kind,
                project: a.project.clone(),
                ids: vec![render(entity_template, a)],
            },
            value_dict,
            id: None,
        };
        let key = format!("chain:{}:{}", a.id, note.name);
        let mut accepted = self
            .service
            .accept_event(
                &a.project,
                kind.as_str(),
                event,
                Some(key),
                Timestamp::now(),
            )
            .map_err(|e| Failure::Permanent(e.to_string()))?;
        accepted.chain = chain;
        // The service dispatches what the chained event fires, like any other event's.
        self.service
            .ingest(&accepted)
            .await
            .map_err(|e| Failure::Retry {
                reason: e.to_string(),
                after: None,
            })?;
        Ok(())
    }

    /// Waits for this Slack webhook's next free second.
    async fn slack_slot(&self, url: &str) {
        let min = Duration::from_millis(self.settings.slack_min_interval_ms);
        let slot = {
            let Ok(mut slots) = self.slack_slots.lock() else {
                return;
            };
            let now = Instant::now();
            let slot = slots.get(url).copied().filter(|t| *t > now).unwrap_or(now);
            slots.insert(url.to_owned(), slot + min);
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }
}

/// Success, or whether and when to try again, from a receiver's answer.
fn classify(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
) -> Result<(), Failure> {
    if status.is_success() {
        return Ok(());
    }
    let reason = format!("the receiver answered {status}");
    let retryable = status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT;
    if !retryable {
        return Err(Failure::Permanent(reason));
    }
    let after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v, chrono::Utc::now()));
    Err(Failure::Retry { reason, after })
}

pub(super) fn missing(what: &str) -> Failure {
    Failure::Permanent(format!("no {what} configured"))
}

/// A parameter from the secret parameters, else from the plain ones.
pub(super) use tocsin_core::model::notification_params::param_value as param;
