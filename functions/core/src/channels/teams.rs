//! Microsoft Teams, through a Workflows webhook (the old Office 365 connectors were retired):
//! a message with one Adaptive Card, the facts as a fact set and a button to the alert.
//! Workflows answers 202 when it took the message.

use serde_json::{Value, json};

use super::text::{data, facts, link, resolution};
use super::{Channel, Message, Outgoing, Phase, Refusal};
use crate::model::{ParamSpec, Shape};

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new("url", "url", Shape::Secret, true),
    ParamSpec::new("link", "link", Shape::Text, false),
];

pub struct Teams;

impl Channel for Teams {
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn outgoing(&self, m: &Message<'_>) -> Result<Outgoing, Refusal> {
        if m.phase == Phase::Acknowledged {
            return Ok(Outgoing::Nothing);
        }
        Ok(Outgoing::Http {
            method: "POST".into(),
            url: m.required("url")?.to_owned(),
            headers: Vec::new(),
            body: card(m),
        })
    }
}

/// The message: `{"type": "message", "attachments": [an Adaptive Card]}`.
pub fn card(m: &Message<'_>) -> Value {
    let a = m.activation;
    let (title, color) = match m.phase {
        Phase::Resolved => (format!("Resolved: {}", m.words()), "Good"),
        _ => (format!("[{}] {}", a.severity, m.words()), "Attention"),
    };
    let mut body = vec![json!({
        "type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium",
        "color": color, "wrap": true
    })];
    if m.phase == Phase::Resolved {
        body.push(json!({"type": "TextBlock", "text": resolution(a), "wrap": true}));
    }
    let mut facts: Vec<Value> = facts(m.note, a)
        .into_iter()
        .map(|(k, v)| json!({"title": k, "value": v}))
        .collect();
    facts.extend(
        data(a)
            .into_iter()
            .map(|(k, v)| json!({"title": k, "value": v})),
    );
    body.push(json!({"type": "FactSet", "facts": facts}));
    let actions: Vec<Value> = m
        .alert_url
        .map(|url| json!({"type": "Action.OpenUrl", "title": "Open the alert", "url": url}))
        .into_iter()
        .chain(
            link(m.note, a)
                .map(|url| json!({"type": "Action.OpenUrl", "title": "Overview", "url": url})),
        )
        .collect();
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
                "actions": actions,
            }
        }]
    })
}
