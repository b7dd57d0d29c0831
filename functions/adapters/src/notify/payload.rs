//! What a notification says: MLRun's Slack block layout and webhook body, as pure functions of
//! the notification and the activation (which carries the rendered summary and event data).

use serde_json::{Value, json};
use tocsin_core::engine::render;
use tocsin_core::model::{Activation, Delivery, Notification};

/// What a notification announces: that the activation fired, or that it closed (a
/// `send_resolved` notification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Fired,
    Resolved,
}

impl Phase {
    /// The phase a delivery is of.
    pub fn of(d: &Delivery) -> Phase {
        if d.resolved {
            Phase::Resolved
        } else {
            Phase::Fired
        }
    }
}

/// Slack's green, for a resolved notification.
const RESOLVED_COLOR: &str = "#2eb886";

/// Why the activation closed, for a resolved notification: "reset by dana at ...".
pub fn resolution(a: &Activation) -> String {
    let why = a.resolution.as_deref().unwrap_or("it closed");
    match a.reset_time {
        Some(at) => format!("{why} at {at}"),
        None => why.to_owned(),
    }
}

/// Slack's header block allows 150 characters.
const SLACK_HEADER_MAX: usize = 150;

/// The notification's `link` param (for example a dashboard URL with `{{entity}}` in it), rendered.
pub fn link(note: &Notification, a: &Activation) -> Option<String> {
    let link = note.params.as_ref()?.get("link")?.as_str()?;
    Some(render(link, a))
}

/// The notification's message with its placeholders rendered, else the alert's summary.
pub fn message(note: &Notification, a: &Activation) -> String {
    match &note.message {
        Some(m) if !m.is_empty() => render(m, a),
        _ => a
            .summary
            .clone()
            .unwrap_or_else(|| format!("Alert {} fired", a.name)),
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn row(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

/// The Slack message: a header `[severity] message` (at most 150 characters), then the alert,
/// project, entity id, summary, and the event's data as `key: value` lines. A resolved one says
/// `[resolved]` and why, in a green attachment.
pub fn slack_payload(note: &Notification, a: &Activation, phase: Phase) -> Value {
    let severity = match phase {
        Phase::Resolved => "resolved",
        Phase::Fired => note
            .severity
            .as_ref()
            .map_or_else(|| a.severity.as_str(), |s| s.as_str()),
    };
    let header: String = format!("[{severity}] {}", message(note, a))
        .chars()
        .take(SLACK_HEADER_MAX)
        .collect();
    let mut blocks =
        vec![json!({"type": "header", "text": {"type": "plain_text", "text": header}})];
    if !note.name.is_empty() {
        blocks.push(row(note.name.clone()));
    }
    match phase {
        Phase::Fired => blocks.push(row(format!(":bell: {} alert has occurred", a.name))),
        Phase::Resolved => blocks.push(row(format!(
            ":white_check_mark: {} alert is resolved: {}",
            a.name,
            resolution(a)
        ))),
    }
    blocks.push(row(format!("*Project:*\n{}", a.project)));
    blocks.push(row(format!("*ID:*\n{}", a.entity_id)));
    if let Some(summary) = &a.summary {
        blocks.push(row(format!("*Summary:*\n{summary}")));
    }
    if !a.value_dict.is_empty() {
        let lines: Vec<String> = a
            .value_dict
            .iter()
            .map(|(k, v)| format!("{k}: {}", value_text(v)))
            .collect();
        blocks.push(row(format!("*Event data:*\n{}", lines.join("\n"))));
    }
    if let Some(url) = link(note, a) {
        blocks.push(row(format!("*Overview:*\n<{url}|Open>")));
    }
    match phase {
        Phase::Fired => json!({ "blocks": blocks }),
        Phase::Resolved => json!({
            "text": format!("Resolved: {}", a.name),
            "attachments": [{"color": RESOLVED_COLOR, "blocks": blocks}],
        }),
    }
}

/// The webhook body: `{message, severity, name, project, summary, value, id}`, with the alert's
/// severity, the event's data as `value` and the entity id as `id`. A resolved one adds
/// `status: "resolved"`, the `activation` id, `resolved_at` and `resolution` (see
/// [`mark_resolved`]).
pub fn webhook_payload(note: &Notification, a: &Activation, phase: Phase) -> Value {
    let mut body = json!({
        "message": message(note, a),
        "severity": a.severity,
        "name": a.name,
        "project": a.project,
        "value": a.value_dict,
        "id": a.entity_id,
    });
    if let Some(summary) = &a.summary {
        body["summary"] = json!(summary);
    }
    if phase == Phase::Resolved {
        mark_resolved(&mut body, a);
    }
    body
}

/// Marks a webhook body (ours or an `override_body` object) as a resolved notification.
pub fn mark_resolved(body: &mut Value, a: &Activation) {
    if let Value::Object(o) = body {
        o.insert("status".into(), json!("resolved"));
        o.insert("activation".into(), json!(a.id));
        o.insert("resolved_at".into(), json!(a.reset_time));
        o.insert("resolution".into(), json!(a.resolution));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activation() -> Activation {
        serde_json::from_value(json!({
            "id": 7, "name": "drift", "project": "fraud", "severity": "high",
            "activation_time": "2026-11-23T10:00:00.000000+00:00", "entity_id": "ep1.app.res",
            "entity_kind": "model-endpoint-result", "criteria": {"count": 3, "period": "10m"},
            "event_kind": "data-drift-detected", "number_of_events": 3, "notifications": [],
            "reset_time": null, "summary": "Model fraud/ep1.app.res drifts",
            "value_dict": {"result_value": 0.91, "result_name": "hellinger"}
        }))
        .expect("activation")
    }

    fn note(message: Option<&str>) -> Notification {
        serde_json::from_value(
            json!({"kind": "slack", "name": "oncall", "message": message, "severity": "warning"}),
        )
        .expect("notification")
    }

    #[test]
    fn slack_has_mlruns_layout() {
        let p = slack_payload(&note(Some("drift!")), &activation(), Phase::Fired);
        let texts: Vec<&str> = p["blocks"]
            .as_array()
            .expect("blocks")
            .iter()
            .map(|b| b["text"]["text"].as_str().expect("text"))
            .collect();
        assert_eq!(
            texts,
            [
                "[warning] drift!",
                "oncall",
                ":bell: drift alert has occurred",
                "*Project:*\nfraud",
                "*ID:*\nep1.app.res",
                "*Summary:*\nModel fraud/ep1.app.res drifts",
                "*Event data:*\nresult_value: 0.91\nresult_name: hellinger",
            ]
        );
        assert_eq!(p["blocks"][0]["type"], "header");
    }

    #[test]
    fn slack_shows_a_configured_link_with_placeholders() {
        let mut n = note(Some("drift!"));
        n.params = Some(
            serde_json::from_value(
                json!({"link": "https://grafana.local/d/models?var-ep={{entity}}"}),
            )
            .expect("params"),
        );
        let p = slack_payload(&n, &activation(), Phase::Fired);
        let last = p["blocks"]
            .as_array()
            .and_then(|b| b.last())
            .expect("blocks");
        assert_eq!(
            last["text"]["text"],
            "*Overview:*\n<https://grafana.local/d/models?var-ep=ep1.app.res|Open>"
        );
    }

    #[test]
    fn slack_header_is_cut_at_150_characters() {
        let long = "é".repeat(400);
        let p = slack_payload(&note(Some(&long)), &activation(), Phase::Fired);
        assert_eq!(
            p["blocks"][0]["text"]["text"]
                .as_str()
                .expect("header")
                .chars()
                .count(),
            150
        );
    }

    #[test]
    fn webhook_body_is_mlruns() {
        let body = webhook_payload(&note(None), &activation(), Phase::Fired);
        assert_eq!(
            body,
            json!({"message": "Model fraud/ep1.app.res drifts", "severity": "high", "name": "drift",
                   "project": "fraud", "summary": "Model fraud/ep1.app.res drifts",
                   "value": {"result_value": 0.91, "result_name": "hellinger"}, "id": "ep1.app.res"})
        );
    }
}
