//! Discord, through a channel webhook: a message with one embed (red for a firing, green for a
//! resolved notice). Discord answers 204; a 429 says in its body (`retry_after`, seconds)
//! when to try again.

use std::time::Duration;

use serde_json::{Value, json};

use super::text::{data, facts, resolution};
use super::{Answer, Channel, Message, Outgoing, Phase, Reading, Refusal, read_http};
use crate::model::{ParamSpec, Shape};

const PARAMS: &[ParamSpec] = &[ParamSpec::new("webhook", "webhook", Shape::Secret, true)];

pub struct Discord;

impl Channel for Discord {
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

    /// Discord's 429 carries `retry_after` in its body, which says more than its header.
    fn read(&self, answer: &Answer) -> Reading {
        match read_http(answer) {
            Reading::Retry { cause, after } if answer.status == 429 => {
                let said = serde_json::from_slice::<Value>(&answer.body)
                    .ok()
                    .and_then(|v| v.get("retry_after").and_then(Value::as_f64))
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(Duration::from_secs_f64);
                Reading::Retry {
                    cause,
                    after: said.or(after),
                }
            }
            other => other,
        }
    }
}

/// The message: content, and an embed with the facts.
pub fn payload(m: &Message<'_>) -> Value {
    let a = m.activation;
    let (title, color) = match m.phase {
        Phase::Resolved => (format!("Resolved: {}", m.words()), 0x2e_b8_86),
        _ => (format!("[{}] {}", a.severity, m.words()), 0xd0_30_30),
    };
    let mut fields: Vec<Value> = facts(m.note, a)
        .into_iter()
        .map(|(k, v)| json!({"name": k, "value": v, "inline": true}))
        .collect();
    fields.extend(
        data(a)
            .into_iter()
            .map(|(k, v)| json!({"name": k, "value": v, "inline": true})),
    );
    fields.truncate(25);
    let mut embed = json!({
        "title": title.chars().take(256).collect::<String>(),
        "color": color,
        "fields": fields,
        "timestamp": a.activation_time,
    });
    if m.phase == Phase::Resolved {
        embed["description"] = json!(resolution(a));
    }
    if let Some(url) = m.alert_url {
        embed["url"] = json!(url);
    }
    json!({"content": title.chars().take(2000).collect::<String>(), "embeds": [embed]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_429_waits_as_long_as_its_body_says() {
        let answer = Answer {
            status: 429,
            retry_after: Some(Duration::from_secs(5)),
            body: br#"{"message": "You are being rate limited.", "retry_after": 0.25, "global": false}"#.to_vec(),
        };
        assert_eq!(
            Discord.read(&answer),
            Reading::Retry {
                cause: "429 from the receiver".into(),
                after: Some(Duration::from_millis(250))
            }
        );
    }
}
