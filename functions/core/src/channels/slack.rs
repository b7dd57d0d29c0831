//! Slack, through an incoming webhook: MLRun's block layout, a green attachment for a resolved
//! notice, and about one message a second per webhook (Slack's limit).

use std::time::Duration;

use serde_json::{Value, json};

use super::text::{link, resolution, value_text};
use super::{Channel, Message, Outgoing, Phase, Refusal};
use crate::model::{ParamSpec, Shape};

/// Slack's header block allows 150 characters.
const HEADER_MAX: usize = 150;

/// Slack's green, for a resolved notice.
const RESOLVED_COLOR: &str = "#2eb886";

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new("webhook", "webhook", Shape::Secret, true),
    ParamSpec::new("link", "link", Shape::Text, false),
];

pub struct Slack;

impl Channel for Slack {
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn outgoing(&self, m: &Message<'_>) -> Result<Outgoing, Refusal> {
        if m.phase == Phase::Acknowledged {
            return Ok(Outgoing::Nothing);
        }
        Ok(Outgoing::Http {
            method: "POST".into(),
            url: m.required("webhook")?.to_owned(),
            headers: Vec::new(),
            body: payload(m),
        })
    }

    fn pace(&self) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }

    fn mlrun(&self) -> bool {
        true
    }
}

fn row(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

/// The Slack message: a header `[severity] message` (at most 150 characters), then the alert,
/// project, entity id, summary, and the event's data as `key: value` lines. A resolved one says
/// `[resolved]` and why, in a green attachment.
pub fn payload(m: &Message<'_>) -> Value {
    let (note, a) = (m.note, m.activation);
    let severity = match m.phase {
        Phase::Resolved => "resolved",
        _ => note
            .severity
            .as_ref()
            .map_or_else(|| a.severity.as_str(), |s| s.as_str()),
    };
    let header: String = format!("[{severity}] {}", m.words())
        .chars()
        .take(HEADER_MAX)
        .collect();
    let mut blocks =
        vec![json!({"type": "header", "text": {"type": "plain_text", "text": header}})];
    if !note.name.is_empty() {
        blocks.push(row(note.name.clone()));
    }
    match m.phase {
        Phase::Resolved => blocks.push(row(format!(
            ":white_check_mark: {} alert is resolved: {}",
            a.name,
            resolution(a)
        ))),
        _ => blocks.push(row(format!(":bell: {} alert has occurred", a.name))),
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
    if let Some(url) = link(note, a).or_else(|| m.alert_url.map(str::to_owned)) {
        blocks.push(row(format!("*Overview:*\n<{url}|Open>")));
    }
    match m.phase {
        Phase::Resolved => json!({
            "text": format!("Resolved: {}", a.name),
            "attachments": [{"color": RESOLVED_COLOR, "blocks": blocks}],
        }),
        _ => json!({ "blocks": blocks }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::tests::{activation, message, note};

    #[test]
    fn slack_has_mlruns_layout() {
        let (n, a) = (note("slack", Some("drift!")), activation());
        let p = payload(&message(&n, &a, Phase::Fired));
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
        let mut n = note("slack", Some("drift!"));
        n.params = Some(
            serde_json::from_value(
                json!({"link": "https://grafana.local/d/models?var-ep={{entity}}"}),
            )
            .expect("params"),
        );
        let a = activation();
        let p = payload(&message(&n, &a, Phase::Fired));
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
        let (n, a) = (note("slack", Some(&long)), activation());
        let p = payload(&message(&n, &a, Phase::Fired));
        assert_eq!(
            p["blocks"][0]["text"]["text"]
                .as_str()
                .expect("header")
                .chars()
                .count(),
            150
        );
    }
}
