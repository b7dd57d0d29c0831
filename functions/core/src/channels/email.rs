//! Email: a readable mail in text and HTML to the notification's addresses. The notifier sends
//! it over SMTP (`tocsin serve`); on AWS the topic's email subscriptions carry it instead.

use serde_json::{Map, Value};

use super::text::{data, facts, resolution};
use super::{Channel, Message, Outgoing, Phase, Refusal};
use crate::model::notification_params::address_list;
use crate::model::{ParamSpec, Shape};

const PARAMS: &[ParamSpec] = &[ParamSpec::new("email_addresses", "to", Shape::List, true)];

pub struct Email;

impl Channel for Email {
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn check(&self, params: &Map<String, Value>) -> Result<(), String> {
        match params.get("email_addresses") {
            Some(v) if address_list(v).iter().any(|a| !a.contains('@')) => Err(format!(
                "email: `{}` holds something that is not an email address",
                v
            )),
            _ => Ok(()),
        }
    }

    fn outgoing(&self, m: &Message<'_>) -> Result<Outgoing, Refusal> {
        if m.phase == Phase::Acknowledged {
            return Ok(Outgoing::Nothing);
        }
        let to: Vec<String> = m
            .param("email_addresses")
            .map(address_list)
            .unwrap_or_default()
            .into_iter()
            .map(str::to_owned)
            .collect();
        if to.is_empty() {
            return Err(Refusal("no email_addresses to send to".into()));
        }
        let (subject, text, html) = render(m);
        Ok(Outgoing::Mail {
            to,
            subject,
            text,
            html,
        })
    }

    fn mlrun(&self) -> bool {
        true
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A notification's mail as (subject, text, HTML): what is sent, and what a preview shows.
pub fn render(m: &Message<'_>) -> (String, String, String) {
    let (note, a) = (m.note, m.activation);
    let mut text_message = m.words();
    let subject: String = match m.phase {
        Phase::Resolved => format!("RESOLVED [{}] {}: {text_message}", a.severity, a.name),
        _ => format!("[{}] {}: {text_message}", a.severity, a.name),
    }
    .chars()
    .take(200)
    .collect();
    let mut facts = facts(note, a);
    if m.phase == Phase::Resolved {
        text_message = format!("Resolved: {text_message}");
        facts.insert(0, ("Resolved", resolution(a)));
    }
    if let Some(url) = m.alert_url {
        facts.push(("Alert", url.to_owned()));
    }
    let data = data(a);
    let mut text = format!("{text_message}\n\n");
    for (k, v) in &facts {
        text.push_str(&format!("{k}: {v}\n"));
    }
    if !data.is_empty() {
        text.push_str("\nEvent data:\n");
        for (k, v) in &data {
            text.push_str(&format!("  {k}: {v}\n"));
        }
    }
    let row = |k: &str, v: &str| {
        format!(
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            escape(k),
            escape(v)
        )
    };
    let mut html = format!(
        "<!doctype html><html><body><h2>{}</h2><table>",
        escape(&text_message)
    );
    for (k, v) in &facts {
        html.push_str(&row(k, v));
    }
    html.push_str("</table>");
    if !data.is_empty() {
        html.push_str("<h3>Event data</h3><table>");
        for (k, v) in &data {
            html.push_str(&row(k, v));
        }
        html.push_str("</table>");
    }
    html.push_str("</body></html>");
    (subject, text, html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(escape("<b>&\"x\""), "&lt;b&gt;&amp;&quot;x&quot;");
    }
}
