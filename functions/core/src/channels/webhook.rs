//! A webhook: MLRun's JSON body to a URL (POST, or the method configured), with headers of its
//! own, or a body of the user's (`override_body`), marked when it announces a resolution.

use serde_json::{Value, json};

use super::{Channel, Message, Outgoing, Phase, Refusal};
use crate::model::{Activation, ParamSpec, Shape};

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new("url", "url", Shape::Secret, true),
    ParamSpec::new("method", "method", Shape::Text, false),
    ParamSpec::wire_only("headers"),
    ParamSpec::wire_only("override_body"),
];

pub struct Webhook;

impl Channel for Webhook {
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn check(&self, params: &serde_json::Map<String, Value>) -> Result<(), String> {
        match params.get("method").and_then(Value::as_str) {
            Some(m) if !m.chars().all(|c| c.is_ascii_alphabetic()) || m.is_empty() => {
                Err(format!("webhook: invalid HTTP method `{m}`"))
            }
            _ => Ok(()),
        }
    }

    fn outgoing(&self, m: &Message<'_>) -> Result<Outgoing, Refusal> {
        if m.phase == Phase::Acknowledged {
            return Ok(Outgoing::Nothing);
        }
        let url = m.required("url")?.to_owned();
        let method = m.text("method").unwrap_or("POST").to_ascii_uppercase();
        let body = match m.param("override_body") {
            Some(body) => {
                let mut body = body.clone();
                if m.phase == Phase::Resolved {
                    mark_resolved(&mut body, m.activation);
                }
                body
            }
            None => payload(m),
        };
        let headers = match m.param("headers") {
            Some(Value::Object(h)) => h
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect(),
            _ => Vec::new(),
        };
        Ok(Outgoing::Http {
            method,
            url,
            headers,
            body,
        })
    }

    fn mlrun(&self) -> bool {
        true
    }

    /// The body, unless the user's own is a secret parameter.
    fn preview(&self, m: &Message<'_>) -> Value {
        if m.secret.is_some_and(|s| s.contains_key("override_body")) {
            return Value::from("(override_body is a secret parameter and is not shown)");
        }
        match self.outgoing(m) {
            Ok(Outgoing::Http { body, .. }) => body,
            Ok(_) => Value::Null,
            Err(Refusal(why)) => json!({"not sent": why}),
        }
    }
}

/// The webhook body: `{message, severity, name, project, summary, value, id}`, with the alert's
/// severity, the event's data as `value` and the entity id as `id`. A resolved one adds
/// `status: "resolved"`, the `activation` id, `resolved_at` and `resolution` (see
/// [`mark_resolved`]); a test one `test: true`.
pub fn payload(m: &Message<'_>) -> Value {
    let a = m.activation;
    let mut body = json!({
        "message": m.words(),
        "severity": a.severity,
        "name": a.name,
        "project": a.project,
        "value": a.value_dict,
        "id": a.entity_id,
    });
    if let Some(summary) = &a.summary {
        body["summary"] = json!(summary);
    }
    if m.phase == Phase::Resolved {
        mark_resolved(&mut body, a);
    }
    if m.test {
        body["test"] = json!(true);
    }
    body
}

/// Marks a webhook body (ours or an `override_body` object) as a resolved notice.
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
    use crate::channels::tests::{activation, message, note};

    #[test]
    fn webhook_body_is_mlruns() {
        let (n, a) = (note("webhook", None), activation());
        let body = payload(&message(&n, &a, Phase::Fired));
        assert_eq!(
            body,
            json!({"message": "Model fraud/ep1.app.res drifts", "severity": "high", "name": "drift",
                   "project": "fraud", "summary": "Model fraud/ep1.app.res drifts",
                   "value": {"result_value": 0.91, "result_name": "hellinger"}, "id": "ep1.app.res"})
        );
    }
}
