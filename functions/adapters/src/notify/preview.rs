//! What an alert's notifications would send, shown without sending.

use serde_json::Value;
use tocsin_core::compiled::Rule;
use tocsin_core::model::{Activation, DeliveryStatus, NotificationKind};

use super::email::render_mail;
use super::payload::{self, slack_payload, webhook_payload};
use super::send::param;

/// What each notification of `rule` would send for activation `a`, without sending: status
/// (pending means "would be sent"), the rendered message, and the payload: Slack blocks, webhook
/// body or mail. Targets (webhook URLs, addresses in secrets) are never shown, nor an
/// `override_body` kept in `secret_params`.
pub fn preview(rule: &Rule, a: &Activation) -> Vec<Value> {
    rule.config
        .notifications
        .iter()
        .map(|n| {
            let note = &n.notification;
            let delivery = a.deliveries.iter().find(|d| d.notification == note.name);
            let secret = rule.secrets.get(&note.name);
            let payload = match note.kind {
                NotificationKind::Slack => slack_payload(note, a, payload::Phase::Fired),
                NotificationKind::Webhook => match (
                    secret.and_then(|s| s.get("override_body")),
                    param("override_body", None, note),
                ) {
                    (Some(_), _) => {
                        Value::from("(override_body is a secret parameter and is not shown)")
                    }
                    (None, Some(body)) => body.clone(),
                    (None, None) => webhook_payload(note, a, payload::Phase::Fired),
                },
                NotificationKind::Email => {
                    let (subject, text, html) = render_mail(note, a, payload::Phase::Fired);
                    serde_json::json!({"subject": subject, "text": text, "html": html})
                }
                NotificationKind::Git => serde_json::json!({"message": payload::message(note, a)}),
                NotificationKind::Event => {
                    let target = note.kind.target().wire;
                    serde_json::json!({target: note.params.as_ref().and_then(|p| p.get(target))})
                }
            };
            serde_json::json!({
                "name": note.name,
                "kind": note.kind,
                "status": delivery.map_or(DeliveryStatus::Pending, |d| d.status),
                "reason": delivery.and_then(|d| d.error.clone()),
                "message": payload::message(note, a),
                "payload": payload,
            })
        })
        .collect()
}
