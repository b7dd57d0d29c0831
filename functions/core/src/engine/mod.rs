//! The engine: the one place that decides. Matching events to alerts, sliding windows, the
//! alert state machine, event intake ([`intake`]) and alert updates ([`update`]).
//!
//! It never reads the clock and never does I/O: every function takes the time and the values it
//! decides on, and says what changed in a [`Changes`]. Stores only hold state and commit those
//! changes inside whatever makes them atomic (one writer thread and its log in the embedded
//! store, conditional writes in DynamoDB), and `tocsin test` runs the same code on a virtual clock.

pub mod absence;
mod changes;
pub mod explain;
pub mod intake;
mod matcher;
mod runtime;
pub mod update;
mod window;
mod windows;

pub use changes::{Changes, WindowChange};
pub use intake::{EventOutcome, Fired, Ticked};
pub use matcher::Matcher;
pub use runtime::{Closed, Noted, Runtime};
pub use update::PutAlert;
pub use window::Window;
pub use windows::{WindowSource, Windows};

use crate::compiled::{MAX_CHAIN, Rule};
use crate::model::{AcceptedEvent, Activation, Delivery, EventKind, Silence};

/// Whether an event that the matcher matched to `rule` concerns it, before any state changes:
/// why not (a custom kind about another entity kind, or a failing filter without a sustained
/// criterion); otherwise whether the filter passes (a sustained criterion also needs the
/// events whose filter fails, to break the run).
pub(crate) fn concerns(rule: &Rule, ev: &AcceptedEvent) -> Result<bool, intake::Ignored> {
    // A built-in kind fixes the entity kind (checked on acceptance); a custom one does not.
    if matches!(ev.kind, EventKind::Custom(_)) && rule.config.entities.kind != ev.entity_kind {
        return Err(intake::Ignored::EntityKind);
    }
    let passes = rule
        .config
        .filter
        .as_ref()
        .is_none_or(|f| f.matches(&ev.value_dict));
    if passes || rule.sustain.is_some() {
        Ok(passes)
    } else {
        Err(intake::Ignored::Filter)
    }
}

/// Counts an admitted event in its window. Returns how many events the activation counts when
/// the criteria are met (the window then starts afresh), None otherwise.
pub(crate) fn count_in_window(
    rule: &Rule,
    window: &mut Window,
    ev: &AcceptedEvent,
    passes: bool,
) -> Option<usize> {
    let (met, in_window) = match rule.sustain {
        Some(span) => (window.sustain(ev.at, passes, span), 1),
        None => {
            let n = window.push(ev.at, rule.count, rule.period);
            (n >= rule.count as usize, n)
        }
    };
    if met {
        window.clear();
    }
    met.then_some(in_window)
}

/// The alert fires on `ev` with activation `id`, having counted `in_window` events: the state
/// transition, the deliveries to make (or suppress: `silences` are the project's), the activation, and the event it emits if
/// it is a calculated event.
pub(crate) fn fire(
    rule: &Rule,
    runtime: &mut Runtime,
    silences: &[Silence],
    ev: &AcceptedEvent,
    id: u64,
    in_window: usize,
) -> (Activation, Option<AcceptedEvent>) {
    let closes_now = runtime.fire(rule, id, ev.at, held_key(rule, ev));
    let deliveries = runtime.plan_deliveries(rule, ev, silences);
    let activation = build_activation(id, rule, ev, in_window, closes_now, deliveries);
    let emitted = rule
        .config
        .emits
        .as_ref()
        .and_then(|kind| calculated_event(rule, kind, ev));
    (activation, emitted)
}

/// The window `ev` counts in, as a runtime keeps what is open per window: the entity for
/// per-entity windows, `""` for the shared one.
pub(crate) fn held_key<'e>(rule: &Rule, ev: &'e AcceptedEvent) -> &'e str {
    if rule.per_entity { &ev.entity_id } else { "" }
}

/// Why a chain of alerts firing each other stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainStop {
    /// The alert is in the chain already: the path that would loop, `a -> b -> a`.
    Loop(String),
    /// The chain is [`MAX_CHAIN`] alerts long.
    TooLong,
}

impl std::fmt::Display for ChainStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainStop::Loop(path) => write!(f, "the chain {path} would loop"),
            ChainStop::TooLong => write!(f, "the chain is already {MAX_CHAIN} alerts long"),
        }
    }
}

/// The chain of an event that alert `project/name` causes, having been caused by `chain`: the
/// one rule for calculated events and `event` notifications alike.
pub fn extend_chain(chain: &[String], project: &str, name: &str) -> Result<Vec<String>, ChainStop> {
    let link = format!("{project}/{name}");
    if chain.contains(&link) {
        let path = [chain, std::slice::from_ref(&link)].concat().join(" -> ");
        return Err(ChainStop::Loop(path));
    }
    if chain.len() >= MAX_CHAIN {
        return Err(ChainStop::TooLong);
    }
    let mut chain = chain.to_vec();
    chain.push(link);
    Ok(chain)
}

/// The event a calculated-event alert emits when it fires on `ev`: same project, entity and
/// time, the firing event's values, and the alert added to the chain. None when the chain stops
/// (see [`extend_chain`]).
fn calculated_event(rule: &Rule, kind: &EventKind, ev: &AcceptedEvent) -> Option<AcceptedEvent> {
    let chain = extend_chain(&ev.chain, rule.project(), rule.name()).ok()?;
    Some(AcceptedEvent {
        project: ev.project.clone(),
        kind: kind.clone(),
        entity_kind: rule.config.entities.kind,
        entity_id: ev.entity_id.clone(),
        value_dict: ev.value_dict.clone(),
        at: ev.at,
        idempotency_key: None,
        chain,
        message: None,
    })
}

/// Renders placeholders in a summary or a notification message as plain text, from the
/// activation: MLRun's `{{project}}`, `{{name}}`, `{{entity}}`, and Tocsin's `{{severity}}`,
/// `{{count}}` (events counted), `{{window}}` (the criteria period), `{{event_kind}}`,
/// `{{entity_kind}}`, `{{activation}}` (its id), `{{summary}}` (in messages) and `{{value.KEY}}`
/// (the event's data). Spaces
/// inside the braces are allowed; unknown placeholders stay as written; values are not
/// rendered again.
pub fn render(template: &str, a: &Activation) -> String {
    render_with(template, |key| placeholder(a, key))
}

/// Every placeholder [`render`] knows besides `{{value.KEY}}`: what the rule checker accepts
/// (`summary` only in notification messages).
pub const PLACEHOLDERS: &[&str] = &[
    "project",
    "name",
    "entity",
    "severity",
    "count",
    "window",
    "event_kind",
    "entity_kind",
    "activation",
    "summary",
];

fn placeholder(a: &Activation, key: &str) -> Option<String> {
    Some(match key {
        "project" => a.project.clone(),
        "name" => a.name.clone(),
        "entity" => a.entity_id.clone(),
        "severity" => a.severity.to_string(),
        "count" => a.number_of_events.to_string(),
        "window" => a
            .criteria
            .period
            .clone()
            .unwrap_or_else(|| "no time limit".into()),
        "event_kind" => a.event_kind.to_string(),
        "entity_kind" => a.entity_kind.to_string(),
        "activation" => a.id.to_string(),
        // Unset while the summary itself is rendered, so a summary cannot refer to itself.
        "summary" => a.summary.clone()?,
        _ => {
            let value = a.value_dict.get(key.strip_prefix("value.")?)?;
            match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            }
        }
    })
}

/// Replaces each `{{key}}` for which `lookup` has a value.
fn render_with(template: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        match lookup(after[..end].trim()) {
            Some(v) => out.push_str(&v),
            None => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// The record of a firing: `rule` fired on `event`, having counted `events` events; it closes
/// at once for an auto alert without cooldown. The summary is rendered here, once.
pub fn build_activation(
    id: u64,
    rule: &Rule,
    event: &AcceptedEvent,
    events: usize,
    closes_now: bool,
    deliveries: Vec<Delivery>,
) -> Activation {
    let c = &rule.config;
    let mut a = Activation {
        id,
        name: c.name.clone(),
        project: c.project.clone(),
        severity: c.severity,
        activation_time: event.at,
        entity_id: event.entity_id.clone(),
        entity_kind: c.entities.kind,
        criteria: rule.criteria(),
        event_kind: event.kind.clone(),
        number_of_events: events as u64,
        notifications: Vec::new(),
        reset_time: closes_now.then_some(event.at),
        summary: None,
        value_dict: event.value_dict.clone(),
        chain: event.chain.clone(),
        deliveries,
        resolution: None,
    };
    a.summary = c.summary.as_deref().map(|s| render(s, &a));
    a.summarize();
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activation(entity: &str) -> Activation {
        serde_json::from_value(serde_json::json!({
            "id": 9, "name": "alert", "project": "my-project123", "severity": "high",
            "activation_time": "2026-11-23T10:00:00.000000+00:00", "entity_id": entity,
            "entity_kind": "model-endpoint-result", "criteria": {"count": 3, "period": "10m"},
            "event_kind": "data-drift-detected", "number_of_events": 3, "notifications": [], "reset_time": null,
            "value_dict": {"result_value": 0.91, "app": "drift-app"}
        }))
        .expect("activation")
    }

    #[test]
    fn summary_placeholders_are_replaced_as_plain_text() {
        let a = activation("ddd");
        assert_eq!(
            render(
                "Alert {{name}}: Model {{project}}/{{entity}} is drifting.",
                &a
            ),
            "Alert alert: Model my-project123/ddd is drifting."
        );
        assert_eq!(render("{{ entity }} {{other}} {{", &a), "ddd {{other}} {{");
        assert_eq!(
            render("{{entity}}", &activation("{{name}}")),
            "{{name}}",
            "no re-expansion"
        );
    }

    #[test]
    fn every_listed_placeholder_renders() {
        let mut a = activation("ep1");
        a.summary = Some("drift".into());
        for key in PLACEHOLDERS {
            assert!(
                placeholder(&a, key).is_some(),
                "`{{{{{key}}}}}` is listed but not rendered"
            );
        }
        assert!(placeholder(&a, "nope").is_none());
    }

    #[test]
    fn tocsins_placeholders() {
        let a = activation("ep1");
        assert_eq!(
            render(
                "[{{severity}}] {{count}} x {{event_kind}} in {{window}} on {{entity_kind}} #{{activation}}",
                &a
            ),
            "[high] 3 x data-drift-detected in 10m on model-endpoint-result #9"
        );
        assert_eq!(
            render(
                "{{value.result_value}} from {{value.app}} {{value.missing}}",
                &a
            ),
            "0.91 from drift-app {{value.missing}}"
        );
    }
}
