//! `tocsin notify test`: a clearly marked test message through an alert's notifications on a
//! running server, and what each receiver answered.

use serde_json::Value;

use crate::client::{answer, http};

/// Asks `server` to send the test and prints how each message went, one line each (or the
/// answer as JSON). True when every message was sent (or had nothing to send).
pub async fn test(
    server: &str,
    project: &str,
    alert: &str,
    notification: Option<&str>,
    as_json: bool,
) -> Result<bool, String> {
    let url = format!(
        "{}/api/v1/projects/{project}/alerts/{alert}/notifications/test",
        server.trim_end_matches('/')
    );
    let mut target = reqwest::Url::parse(&url).map_err(|e| format!("--server: {e}"))?;
    if let Some(n) = notification {
        target.query_pairs_mut().append_pair("notification", n);
    }
    let body = answer(&url, http().post(target).send().await).await?;
    let outcomes = body
        .get("notifications")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if as_json {
        crate::say!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
    } else {
        for o in &outcomes {
            crate::say!("{}", line(o));
        }
    }
    Ok(outcomes.iter().all(|o| {
        matches!(
            o.get("outcome").and_then(Value::as_str),
            Some("sent" | "not_sent")
        )
    }))
}

/// `name (kind): outcome, HTTP status, "what it said" - detail`.
fn line(o: &Value) -> String {
    let text = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("");
    let mut line = format!(
        "{} ({}): {}",
        text("notification"),
        text("kind"),
        text("outcome").replace('_', " ")
    );
    if let Some(status) = o.get("status").and_then(Value::as_u64) {
        line.push_str(&format!(", HTTP {status}"));
    }
    if !text("said").is_empty() {
        line.push_str(&format!(", it said: {}", text("said")));
    }
    if !text("detail").is_empty() {
        line.push_str(&format!(" ({})", text("detail")));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::line;
    use serde_json::json;

    #[test]
    fn a_line_says_the_outcome_the_status_and_what_the_receiver_said() {
        let o = json!({"notification": "oncall", "kind": "pagerduty", "outcome": "refused",
            "status": 400, "said": "{\"status\":\"invalid event\"}", "detail": "400 from the receiver"});
        assert_eq!(
            line(&o),
            "oncall (pagerduty): refused, HTTP 400, it said: {\"status\":\"invalid event\"} (400 from the receiver)"
        );
        let o = json!({"notification": "chain", "kind": "event", "outcome": "not_sent",
            "detail": "a test posts no event: it would count"});
        assert_eq!(
            line(&o),
            "chain (event): not sent (a test posts no event: it would count)"
        );
    }
}
