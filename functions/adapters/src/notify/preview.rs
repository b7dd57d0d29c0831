//! What an alert's notifications would send, shown without sending.

use serde_json::Value;
use tocsin_core::channels::{Message, Phase, message};
use tocsin_core::compiled::Rule;
use tocsin_core::model::{Activation, DeliveryStatus};

/// What each notification of `rule` would send for activation `a`, without sending: status
/// (pending means "would be sent"), the rendered message, and the payload its channel shows
/// (Slack blocks, a webhook body, a mail, a card). Targets (webhook URLs, keys, addresses in
/// secrets) are never shown.
pub fn preview(rule: &Rule, a: &Activation, alert_url: Option<&str>) -> Vec<Value> {
    rule.config
        .notifications
        .iter()
        .map(|n| {
            let note = &n.notification;
            let delivery = a.deliveries.iter().find(|d| d.notification == note.name);
            let key = format!("{}:{}", a.id, note.name);
            let m = Message {
                note,
                secret: rule.secrets.get(&note.name),
                activation: a,
                phase: Phase::Fired,
                key: &key,
                test: false,
                alert_url,
            };
            let payload = note.kind.channel().preview(&m);
            serde_json::json!({
                "name": note.name,
                "kind": note.kind,
                "status": delivery.map_or(DeliveryStatus::Pending, |d| d.status),
                "reason": delivery.and_then(|d| d.error.clone()),
                "message": message(note, a),
                "payload": payload,
            })
        })
        .collect()
}
