//! Opsgenie, through its Alert API: a firing creates an alert under an alias made from the
//! activation, an acknowledgement in Tocsin acknowledges it, and a resolved notice closes it.
//! The API key is a secret; the base URL can be overridden (the EU instance, a test receiver).
//!
//! `POST {url}/v2/alerts` with `Authorization: GenieKey ...`, then
//! `POST {url}/v2/alerts/{alias}/acknowledge?identifierType=alias` and `.../close?...`;
//! Opsgenie answers 202 when it took the request.

use serde_json::json;

use super::text::resolution;
use super::{Channel, Message, Outgoing, Phase, Refusal};
use crate::model::{ParamSpec, Severity, Shape};

/// Opsgenie's API in the US instance.
pub const URL: &str = "https://api.opsgenie.com";

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new("api_key", "api_key", Shape::Secret, true),
    ParamSpec::new("url", "url", Shape::Text, false),
];

pub struct Opsgenie;

/// Opsgenie's priority for an alert's severity.
fn priority(s: Severity) -> &'static str {
    match s {
        Severity::High => "P1",
        Severity::Medium => "P3",
        Severity::Low => "P4",
    }
}

impl Channel for Opsgenie {
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn outgoing(&self, m: &Message<'_>) -> Result<Outgoing, Refusal> {
        let a = m.activation;
        let key = m.required("api_key")?;
        let base = m.text("url").unwrap_or(URL).trim_end_matches('/');
        let alias = format!("tocsin-{}-{}", a.project, a.id);
        let headers = vec![("Authorization".to_owned(), format!("GenieKey {key}"))];
        let (url, body) = match m.phase {
            Phase::Fired => {
                let message: String = m.words().chars().take(130).collect();
                let description = super::text::markdown(m, &m.words());
                (
                    format!("{base}/v2/alerts"),
                    json!({
                        "message": message,
                        "alias": alias,
                        "description": description.chars().take(15_000).collect::<String>(),
                        "priority": priority(a.severity),
                        "source": "tocsin",
                        "entity": a.entity_id,
                        "tags": [a.project, a.name, a.severity.as_str()],
                        "details": {"activation": a.id.to_string(), "event kind": a.event_kind.as_str()},
                    }),
                )
            }
            Phase::Acknowledged => (
                format!("{base}/v2/alerts/{alias}/acknowledge?identifierType=alias"),
                json!({"source": "tocsin", "note": "acknowledged in Tocsin"}),
            ),
            Phase::Resolved => (
                format!("{base}/v2/alerts/{alias}/close?identifierType=alias"),
                json!({"source": "tocsin", "note": resolution(a)}),
            ),
        };
        Ok(Outgoing::Http {
            method: "POST".into(),
            url,
            headers,
            body,
        })
    }

    fn acknowledges(&self) -> bool {
        true
    }
}
