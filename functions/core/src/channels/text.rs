//! What every channel says, in words: the message, why an activation closed, the link, and
//! the facts of an activation. Pure functions of the notification and the activation (which
//! carries the rendered summary and the event's data).

use serde_json::Value;

use crate::engine::render;
use crate::model::{Activation, Notification};

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

/// Why the activation closed, for a resolved notice: "reset by dana at ...".
pub fn resolution(a: &Activation) -> String {
    let why = a.resolution.as_deref().unwrap_or("it closed");
    match a.reset_time {
        Some(at) => format!("{why} at {at}"),
        None => why.to_owned(),
    }
}

/// The notification's `link` param (for example a dashboard URL with `{{entity}}` in it),
/// rendered.
pub fn link(note: &Notification, a: &Activation) -> Option<String> {
    let link = note.params.as_ref()?.get("link")?.as_str()?;
    Some(render(link, a))
}

/// A value of the event's data as text.
pub(super) fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The facts of an activation, as (label, value) lines: what mail, cards and comments list.
pub fn facts(note: &Notification, a: &Activation) -> Vec<(&'static str, String)> {
    let window = a
        .criteria
        .period
        .as_deref()
        .map(|p| format!(" within {p}"))
        .unwrap_or_default();
    let mut facts = vec![
        ("Alert", a.name.clone()),
        ("Project", a.project.clone()),
        ("Entity", format!("{} {}", a.entity_kind, a.entity_id)),
        ("Severity", a.severity.to_string()),
        (
            "Events",
            format!("{} {}{window}", a.number_of_events, a.event_kind),
        ),
        ("Activated", a.activation_time.to_string()),
        ("Activation", a.id.to_string()),
    ];
    if let Some(s) = &a.summary {
        facts.insert(0, ("Summary", s.clone()));
    }
    if let Some(url) = link(note, a) {
        facts.push(("Link", url));
    }
    facts
}

/// The event's data as (key, value) lines.
pub(super) fn data(a: &Activation) -> Vec<(String, String)> {
    a.value_dict
        .iter()
        .map(|(k, v)| (k.clone(), value_text(v)))
        .collect()
}

/// Markdown for a comment or a chat message: a heading, the facts, the event's data, a link.
pub(super) fn markdown(m: &super::Message<'_>, heading: &str) -> String {
    let a = m.activation;
    let mut out = format!("### {heading}\n\n");
    if m.phase == super::Phase::Resolved {
        out.push_str(&format!("**Resolved:** {}\n\n", resolution(a)));
    }
    for (k, v) in facts(m.note, a) {
        out.push_str(&format!("- **{k}:** {v}\n"));
    }
    let data = data(a);
    if !data.is_empty() {
        out.push_str("\n**Event data:**\n\n");
        for (k, v) in data {
            out.push_str(&format!("- `{k}`: {v}\n"));
        }
    }
    if let Some(url) = m.alert_url {
        out.push_str(&format!("\n[Open the alert]({url})\n"));
    }
    out
}
