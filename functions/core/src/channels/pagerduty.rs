//! PagerDuty, through the Events API v2: a firing triggers an incident, an acknowledgement in
//! Tocsin acknowledges it and a resolved notice resolves it, the three tied to one activation
//! by its `dedup_key`. The routing key is a secret; the endpoint can be overridden (the EU
//! service region, or a test receiver).
//!
//! `POST {endpoint}/v2/enqueue` with `{routing_key, event_action, dedup_key, payload, links}`;
//! PagerDuty answers 202 (accepted), 400 (an invalid event: refused), 429 (too many: again
//! later) or 5xx (again).

use serde_json::{Value, json};

use super::text::link;
use super::{Channel, Message, Outgoing, Phase, Refusal};
use crate::model::{ParamSpec, Severity, Shape};

/// PagerDuty's endpoint in the US service region.
pub const ENDPOINT: &str = "https://events.pagerduty.com";

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new("routing_key", "routing_key", Shape::Secret, true),
    ParamSpec::new("endpoint", "endpoint", Shape::Text, false),
    ParamSpec::new("link", "link", Shape::Text, false),
];

pub struct PagerDuty;

/// PagerDuty's severity for an alert's.
fn severity(s: Severity) -> &'static str {
    match s {
        Severity::High => "critical",
        Severity::Medium => "error",
        Severity::Low => "warning",
    }
}

impl Channel for PagerDuty {
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn outgoing(&self, m: &Message<'_>) -> Result<Outgoing, Refusal> {
        let a = m.activation;
        let routing_key = m.required("routing_key")?;
        let endpoint = m.text("endpoint").unwrap_or(ENDPOINT).trim_end_matches('/');
        let dedup_key = format!("tocsin/{}/{}", a.project, a.id);
        let mut body = json!({
            "routing_key": routing_key,
            "dedup_key": dedup_key,
            "event_action": match m.phase {
                Phase::Fired => "trigger",
                Phase::Resolved => "resolve",
                Phase::Acknowledged => "acknowledge",
            },
        });
        if m.phase == Phase::Fired {
            let summary: String = m.words().chars().take(1024).collect();
            body["payload"] = json!({
                "summary": summary,
                "source": a.entity_id,
                "severity": severity(a.severity),
                "timestamp": a.activation_time,
                "component": a.entity_kind,
                "group": a.project,
                "class": a.event_kind,
                "custom_details": {
                    "alert": a.name,
                    "activation": a.id,
                    "events counted": a.number_of_events,
                    "event data": a.value_dict,
                    "test": m.test,
                },
            });
            let links: Vec<Value> = link(m.note, a)
                .map(|href| json!({"href": href, "text": "Overview"}))
                .into_iter()
                .chain(
                    m.alert_url
                        .map(|href| json!({"href": href, "text": "Alert in Tocsin"})),
                )
                .collect();
            if !links.is_empty() {
                body["links"] = json!(links);
            }
        }
        Ok(Outgoing::Http {
            method: "POST".into(),
            url: format!("{endpoint}/v2/enqueue"),
            headers: Vec::new(),
            body,
        })
    }

    fn acknowledges(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::tests::{activation, message, note};

    #[test]
    fn a_firing_triggers_and_its_acknowledgement_and_resolution_share_its_dedup_key() {
        let a = activation();
        let n = note("pagerduty", Some("drift!"));
        let secret = json!({"routing_key": "R0UT1NG"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut bodies = Vec::new();
        for phase in [Phase::Fired, Phase::Acknowledged, Phase::Resolved] {
            let mut m = message(&n, &a, phase);
            m.secret = Some(&secret);
            let Ok(Outgoing::Http { url, body, .. }) = PagerDuty.outgoing(&m) else {
                panic!("an HTTP request");
            };
            assert_eq!(url, "https://events.pagerduty.com/v2/enqueue");
            bodies.push(body);
        }
        let actions: Vec<&str> = bodies
            .iter()
            .map(|b| b["event_action"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(actions, ["trigger", "acknowledge", "resolve"]);
        assert!(bodies.iter().all(|b| b["dedup_key"] == "tocsin/fraud/7"));
        assert_eq!(bodies[0]["payload"]["severity"], "critical");
        assert_eq!(bodies[0]["payload"]["summary"], "drift!");
        assert!(bodies[1].get("payload").is_none());
    }
}
