//! Why an event counted for an alert or did not, clause by clause, and what one more event like
//! it would do.
//!
//! Nothing here decides anew: the clauses are read off the engine's own pieces (the matcher for
//! the kind and the entity, the filter's trace, the window, the runtime's planning of
//! deliveries), and the verdict is what [`evaluate`](super::intake::evaluate), the intake's own
//! step, does to copies of the alert's state. So the explanation cannot disagree with what the
//! engine then does, and nothing changes.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::intake::{AlertSlot, Ignored, Step, evaluate};
use super::{Changes, Matcher, Runtime, Window, WindowSource, Windows, absence, concerns};
use crate::compiled::{EntitySelector, Rule};
use crate::model::{AcceptedEvent, AlertState, Delivery, DeliveryStatus, ResetPolicy, Silence};

/// The alert id the one-alert matcher and state use (no store's id).
const ALERT: u64 = 0;

/// What an event does to an alert, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// `project/name`.
    pub alert: String,
    pub event: Described,
    /// Each clause the event meets, in the order the engine asks them.
    pub clauses: Vec<Clause>,
    /// What this event does.
    pub verdict: Verdict,
    /// What one more event like it would do right after.
    pub next: Verdict,
}

/// The event explained.
#[derive(Debug, Clone, Serialize)]
pub struct Described {
    pub kind: String,
    pub entity_kind: String,
    pub entity_id: String,
    pub at: crate::model::Timestamp,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub value_dict: serde_json::Map<String, Value>,
}

/// One clause: what it asks of the event (or of the alert's state), and whether it lets the
/// event count or the notification go out.
#[derive(Debug, Clone, Serialize)]
pub struct Clause {
    /// `kind`, `entity`, `entity_kind`, `where`, `window`, `sustain`, `absence`, `state`,
    /// `acknowledgement` or `notification`.
    pub clause: &'static str,
    pub ok: bool,
    pub says: String,
    /// For `where`: each comparison, with what the event holds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
}

/// One comparison of the `where` filter as the event met it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `value.result_value > 0.7`, or `not value.app starts_with "shadow-"` under a `not`.
    pub comparison: String,
    /// What the event holds there (None: nothing).
    pub got: Option<Value>,
    /// Whether it is as the filter wants it (for a negated one: it does not hold).
    pub holds: bool,
}

/// What an event does to the alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub outcome: Outcome,
    pub says: String,
    /// Events in the window after it (counting alerts), when it counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_window: Option<usize>,
    /// Activations it closes (an absence that ends, a sustained condition that stops, an
    /// auto alert's cooldown found over).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub closes: Vec<u64>,
    /// When it fires: each notification, to be sent or held back (and why).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<Delivery>,
}

/// The kinds of verdict, as the intake's steps are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The alert does not trigger on it (kind, entity): the matcher never hands it over.
    Unmatched,
    /// Matched, and not counted.
    Ignored,
    /// Counted, without firing.
    Counted,
    /// Counted, and the alert fires.
    Fires,
}

/// Explains what `ev` does to the alert `rule`, in the state `runtime` with `window` (the window
/// the event counts in, as it stands) and the project's `silences`.
pub fn explain(
    rule: &Arc<Rule>,
    runtime: &Runtime,
    window: Window,
    silences: &[Silence],
    ev: &AcceptedEvent,
) -> Explanation {
    let mut matcher = Matcher::default();
    matcher.insert(ALERT, rule);
    let kind_ok = ev.project == rule.project() && matcher.listens(&ev.project, &ev.kind);
    let mut matched = false;
    matcher.for_each_match(&ev.project, &ev.kind, &ev.entity_id, |_| matched = true);

    let mut clauses = vec![kind_clause(rule, ev, kind_ok), entity_clause(rule, ev)];
    if matched {
        clauses.extend(event_clauses(rule, ev));
        clauses.extend(state_clauses(rule, runtime, &window, ev));
    }
    let mut windows = match rule.per_entity {
        true => {
            Windows::PerEntity(std::iter::once((ev.entity_id.as_str().into(), window)).collect())
        }
        false => Windows::Shared(window),
    };
    let mut state = runtime.clone();
    let verdict = step(rule, &mut state, &mut windows, silences, ev, matched);
    let next = step(rule, &mut state, &mut windows, silences, ev, matched);
    if matched && verdict.outcome != Outcome::Fires {
        clauses.extend(would_notify(rule, runtime, silences, ev));
    }
    Explanation {
        alert: format!("{}/{}", rule.project(), rule.name()),
        event: Described {
            kind: ev.kind.to_string(),
            entity_kind: ev.entity_kind.to_string(),
            entity_id: ev.entity_id.clone(),
            at: ev.at,
            value_dict: ev.value_dict.clone(),
        },
        clauses,
        verdict,
        next,
    }
}

/// An alert's state rebuilt from recorded events, on its own copies: what explaining past
/// events reads. It starts inactive with empty windows (the store's state at the time is not
/// kept) and goes through each event as the intake does.
pub struct Replay {
    rule: Arc<Rule>,
    matcher: Matcher,
    runtime: Runtime,
    windows: Windows,
    next_id: u64,
}

impl Replay {
    /// The alert `rule` as if created at `since`.
    pub fn new(rule: Arc<Rule>, since: crate::model::Timestamp) -> Self {
        let mut matcher = Matcher::default();
        matcher.insert(ALERT, &rule);
        Replay {
            runtime: Runtime {
                armed: Some(since),
                ..Runtime::default()
            },
            windows: Windows::for_rule(&rule),
            matcher,
            rule,
            next_id: 1,
        }
    }

    /// What `ev` does to the state as rebuilt so far.
    pub fn explain(&mut self, ev: &AcceptedEvent, silences: &[Silence]) -> Explanation {
        let window = self.windows.window_mut(&ev.entity_id).clone();
        explain(&self.rule, &self.runtime, window, silences, ev)
    }

    /// Goes through `ev`, as the intake does.
    pub fn advance(&mut self, ev: &AcceptedEvent, silences: &[Silence]) {
        let mut matched = false;
        self.matcher
            .for_each_match(&ev.project, &ev.kind, &ev.entity_id, |_| matched = true);
        if !matched {
            return;
        }
        let slot = AlertSlot {
            rule: &self.rule,
            runtime: &mut self.runtime,
            windows: &mut self.windows,
            silences,
        };
        let next = &mut self.next_id;
        let mut ids = || {
            *next += 1;
            *next - 1
        };
        evaluate(ALERT, slot, ev, &mut ids, &mut Changes::default());
    }
}

/// The intake's own step on the state copies, as a verdict.
fn step(
    rule: &Arc<Rule>,
    runtime: &mut Runtime,
    windows: &mut Windows,
    silences: &[Silence],
    ev: &AcceptedEvent,
    matched: bool,
) -> Verdict {
    if !matched {
        return Verdict {
            outcome: Outcome::Unmatched,
            says: "the alert does not trigger on it".into(),
            in_window: None,
            closes: Vec::new(),
            notifications: Vec::new(),
        };
    }
    let mut changes = Changes::default();
    let slot = AlertSlot {
        rule,
        runtime,
        windows,
        silences,
    };
    let step = evaluate(ALERT, slot, ev, &mut || 0, &mut changes);
    let in_window = windows.window_mut(&ev.entity_id).len();
    let closes: Vec<u64> = changes.closed.iter().map(|c| c.activation).collect();
    let (outcome, says, notifications) = match step {
        Step::Ignored(why) => (Outcome::Ignored, why.to_string(), Vec::new()),
        Step::Counted if rule.absence.is_some() => (
            Outcome::Counted,
            "seen: the entity's absence is watched from now".into(),
            Vec::new(),
        ),
        Step::Counted if rule.sustain.is_some() => (
            Outcome::Counted,
            "counted: the condition's run goes on".into(),
            Vec::new(),
        ),
        Step::Counted => (
            Outcome::Counted,
            format!("counted: {in_window} of {} in the window", rule.count),
            Vec::new(),
        ),
        Step::Fires { activation, .. } => {
            let a = changes.activations.get(activation);
            let n = a.map_or(0, |a| a.number_of_events);
            (
                Outcome::Fires,
                format!("the alert fires, having counted {n}"),
                a.map(|a| a.deliveries.clone()).unwrap_or_default(),
            )
        }
    };
    Verdict {
        in_window: (outcome == Outcome::Counted
            && rule.absence.is_none()
            && rule.sustain.is_none())
        .then_some(in_window),
        outcome,
        says,
        closes,
        notifications,
    }
}

fn kind_clause(rule: &Rule, ev: &AcceptedEvent, ok: bool) -> Clause {
    let kinds: Vec<String> = rule
        .config
        .trigger
        .events
        .iter()
        .map(|k| k.to_string())
        .collect();
    let says = if ev.project != rule.project() {
        format!(
            "the event is of project {}, the alert of {}",
            ev.project,
            rule.project()
        )
    } else if ok {
        format!(
            "`{}` is one of the alert's kinds ({})",
            ev.kind,
            kinds.join(", ")
        )
    } else {
        format!(
            "the alert triggers on {}, not on `{}`",
            kinds.join(", "),
            ev.kind
        )
    };
    clause("kind", ok, says)
}

fn entity_clause(rule: &Rule, ev: &AcceptedEvent) -> Clause {
    let id = &ev.entity_id;
    let ok = rule.entity.matches(id);
    let says = match (&rule.entity, ok) {
        (EntitySelector::Any, _) => format!("the alert watches every entity (`*`), `{id}` too"),
        (EntitySelector::Exact(_), true) => format!("`{id}` is the alert's entity"),
        (EntitySelector::Exact(e), false) => format!("the alert watches `{e}`, not `{id}`"),
        (EntitySelector::Glob(g), true) => format!("`{id}` matches `{g}`"),
        (EntitySelector::Glob(g), false) => format!("`{id}` does not match `{g}`"),
    };
    clause("entity", ok, says)
}

/// The entity kind (custom kinds) and the `where` filter.
fn event_clauses(rule: &Rule, ev: &AcceptedEvent) -> Vec<Clause> {
    let mut out = Vec::new();
    if concerns(rule, ev) == Err(Ignored::EntityKind) {
        out.push(clause(
            "entity_kind",
            false,
            format!(
                "the alert watches {} entities; the event is about a {}",
                rule.config.entities.kind, ev.entity_kind
            ),
        ));
        return out;
    }
    let Some(filter) = &rule.config.filter else {
        return out;
    };
    let (passes, checked) = filter.trace(&ev.value_dict);
    let checks: Vec<Check> = checked
        .into_iter()
        .map(|c| Check {
            comparison: format!(
                "{}value.{} {} {}",
                if c.negated { "not " } else { "" },
                c.field,
                c.op.as_str(),
                c.value
            ),
            got: c.got,
            holds: c.holds != c.negated,
        })
        .collect();
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| !c.holds)
        .map(|c| match &c.got {
            Some(v) => format!("{} (the event has {v})", c.comparison),
            None => format!("{} (the event has no such value)", c.comparison),
        })
        .collect();
    let says = if passes {
        "the `where` filter passes".to_owned()
    } else {
        format!("the `where` filter fails: {}", failed.join("; "))
    };
    out.push(Clause {
        clause: "where",
        ok: passes,
        says,
        checks,
    });
    out
}

/// The window, sustained run or absence as it stands, and the alert's state.
fn state_clauses(
    rule: &Rule,
    runtime: &Runtime,
    window: &Window,
    ev: &AcceptedEvent,
) -> Vec<Clause> {
    let mut out = Vec::new();
    let at = ev.at;
    if let Some(span) = rule.absence {
        let last = window.last();
        let says = match (last, absence::deadline(rule, runtime, &ev.entity_id, last)) {
            (_, None) => format!(
                "`{}` is absent: its absence fired; this event ends it",
                ev.entity_id
            ),
            (Some(t), Some(due)) => {
                format!("last seen at {t}: absent from {due} if silent ({span})")
            }
            (None, Some(due)) => format!("never seen since the alert was armed: absent from {due}"),
        };
        out.push(clause("absence", true, says));
    } else if let Some(span) = rule.sustain {
        let says = match window.times() {
            [] => format!("no run holds: the filter must hold for {span} from this event"),
            [start, .., last] if at.0 - last.0 > span.0 => {
                format!("the run that started at {start} broke off (no event for over {span})")
            }
            [start, ..] => format!(
                "the filter has held since {start}: {} of {span}",
                crate::model::Span(at.0 - start.0)
            ),
        };
        out.push(clause("sustain", true, says));
    } else {
        let mut current = window.clone();
        current.expire(at, rule.period);
        let n = current.len();
        let within = rule
            .period
            .map_or("with no time limit".to_owned(), |p| format!("within {p}"));
        let says = match (current.times().first(), rule.period) {
            (Some(oldest), Some(p)) => format!(
                "{n} of {} {within} before this event; the oldest leaves the window at {}",
                rule.count,
                oldest.plus(p)
            ),
            _ => format!("{n} of {} {within} before this event", rule.count),
        };
        out.push(clause("window", true, says));
    }
    let state = runtime.state_at(at);
    let (ok, says) = match (state, rule.config.reset_policy, runtime.cooldown_until) {
        (AlertState::Inactive, ..) => (true, "the alert is inactive".to_owned()),
        _ if !runtime.absent.is_empty() => (
            true,
            format!("active: absent are {}", keys(&runtime.absent)),
        ),
        _ if !runtime.held.is_empty() => (
            true,
            format!(
                "active while its condition holds for {}",
                keys(&runtime.held)
            ),
        ),
        (AlertState::Active, ResetPolicy::Manual, _) => (
            false,
            "active, and it resets manually: events are ignored until someone resets it".to_owned(),
        ),
        (AlertState::Active, _, Some(until)) => (
            false,
            format!("active in its cooldown until {until}: events are ignored until then"),
        ),
        (AlertState::Active, _, None) => (true, "active".to_owned()),
    };
    out.push(clause("state", ok, says));
    if let Some(ack) = &runtime.acknowledged {
        out.push(clause(
            "acknowledgement",
            false,
            format!(
                "acknowledged by {} at {}: its activations notify no one until a reset",
                ack.by, ack.at
            ),
        ));
    }
    out
}

/// For an event that does not fire: what each notification would do if the alert fired now
/// (acknowledgement, silences, notification cooldowns), as the runtime plans deliveries.
fn would_notify(
    rule: &Rule,
    runtime: &Runtime,
    silences: &[Silence],
    ev: &AcceptedEvent,
) -> Vec<Clause> {
    let mut copy = runtime.clone();
    copy.plan_deliveries(rule, ev, silences)
        .into_iter()
        .map(|d| {
            let ok = d.status == DeliveryStatus::Pending;
            let says = match (&d.error, ok) {
                (_, true) => format!(
                    "{} `{}` would be sent if it fired now",
                    d.kind, d.notification
                ),
                (Some(why), false) => {
                    format!("{} `{}` would be held back: {why}", d.kind, d.notification)
                }
                (None, false) => format!("{} `{}` would be held back", d.kind, d.notification),
            };
            clause("notification", ok, says)
        })
        .collect()
}

fn keys(m: &std::collections::BTreeMap<String, u64>) -> String {
    m.keys()
        .map(|k| {
            if k.is_empty() {
                "the alert"
            } else {
                k.as_str()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn clause(name: &'static str, ok: bool, says: String) -> Clause {
    Clause {
        clause: name,
        ok,
        says,
        checks: Vec::new(),
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.says)?;
        if !self.closes.is_empty() {
            let ids: Vec<String> = self.closes.iter().map(u64::to_string).collect();
            write!(f, "; it closes activation {}", ids.join(", "))?;
        }
        for d in &self.notifications {
            match (&d.status, &d.error) {
                (DeliveryStatus::Pending, _) => {
                    write!(f, "\n      {} `{}`: sent", d.kind, d.notification)?
                }
                (_, Some(why)) => write!(
                    f,
                    "\n      {} `{}`: held back, {why}",
                    d.kind, d.notification
                )?,
                (status, None) => write!(f, "\n      {} `{}`: {status:?}", d.kind, d.notification)?,
            }
        }
        Ok(())
    }
}

/// The explanation as text, one clause a line: what `tocsin explain` prints.
impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.event;
        writeln!(
            f,
            "{}: {} about {} `{}` at {}",
            self.alert, e.kind, e.entity_kind, e.entity_id, e.at
        )?;
        for c in &self.clauses {
            let mark = if c.ok { "✓" } else { "✗" };
            writeln!(f, "  {mark} {:<15} {}", c.clause, c.says)?;
            for check in &c.checks {
                let mark = if check.holds { "✓" } else { "✗" };
                let got = check
                    .got
                    .as_ref()
                    .map_or("nothing".to_owned(), Value::to_string);
                writeln!(f, "      {mark} {}: the event has {got}", check.comparison)?;
            }
        }
        writeln!(f, "  → {}", self.verdict)?;
        write!(f, "  → one more like it: {}", self.next)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::{AlertConfig, EntityKind, EventKind, Timestamp};
    use crate::settings::AlertsSettings;

    fn rule(config: serde_json::Value) -> Arc<Rule> {
        let config: AlertConfig = serde_json::from_value(config).expect("config");
        let (p, n) = (config.project.clone(), config.name.clone());
        Arc::new(
            crate::compiled::compile(config, &p, &n, &AlertsSettings::default()).expect("compiles"),
        )
    }

    fn drift(entity: &str, value: f64, at: i64) -> AcceptedEvent {
        AcceptedEvent {
            project: "p".into(),
            kind: EventKind::DataDriftDetected,
            entity_kind: EntityKind::ModelEndpointResult,
            entity_id: entity.into(),
            value_dict: json!({"result_value": value})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            at: Timestamp::from_secs(at),
            idempotency_key: None,
            chain: Vec::new(),
            message: None,
        }
    }

    fn drift_alert() -> Arc<Rule> {
        rule(
            json!({"project": "p", "name": "drift", "severity": "high", "reset_policy": "manual",
            "trigger": {"events": ["data-drift-detected"]}, "criteria": {"count": 3, "period": "10m"},
            "entities": {"kind": "model-endpoint-result", "project": "p", "ids": ["ep*"]},
            "filter": {"field": "result_value", "op": ">", "value": 0.7},
            "notifications": [{"notification": {"kind": "webhook", "name": "hook",
                "secret_params": {"url": "http://127.0.0.1:9/"}}}]}),
        )
    }

    #[test]
    fn a_failing_filter_says_which_comparison_and_what_the_event_held() {
        let e = explain(
            &drift_alert(),
            &Runtime::default(),
            Window::default(),
            &[],
            &drift("ep1", 0.5, 0),
        );
        assert_eq!(e.verdict.outcome, Outcome::Ignored);
        let filter = e
            .clauses
            .iter()
            .find(|c| c.clause == "where")
            .expect("where");
        assert!(!filter.ok);
        assert_eq!(filter.checks[0].got, Some(json!(0.5)));
        assert!(
            filter
                .says
                .contains("value.result_value > 0.7 (the event has 0.5)"),
            "{}",
            filter.says
        );
        let text = e.to_string();
        assert!(text.contains("✗ where"), "{text}");
    }

    #[test]
    fn the_window_as_it_stands_and_what_one_more_event_does() {
        let r = drift_alert();
        let mut w = Window::default();
        w.push(Timestamp::from_secs(0), 3, r.period);
        let e = explain(&r, &Runtime::default(), w, &[], &drift("ep1", 0.9, 60));
        let window = e
            .clauses
            .iter()
            .find(|c| c.clause == "window")
            .expect("window");
        assert!(
            window.says.starts_with("1 of 3 within 10m"),
            "{}",
            window.says
        );
        assert!(
            window.says.contains("leaves the window at"),
            "{}",
            window.says
        );
        assert_eq!(
            (e.verdict.outcome, e.verdict.in_window),
            (Outcome::Counted, Some(2))
        );
        assert_eq!(e.next.outcome, Outcome::Fires, "a third event fires it");
        assert_eq!(e.next.notifications[0].status, DeliveryStatus::Pending);
    }

    #[test]
    fn other_kinds_and_entities_are_not_matched_and_state_is_untouched() {
        let r = drift_alert();
        let mut other = drift("xy", 0.9, 0);
        let e = explain(&r, &Runtime::default(), Window::default(), &[], &other);
        assert_eq!(e.verdict.outcome, Outcome::Unmatched);
        assert!(!e.clauses[1].ok && e.clauses[1].says.contains("does not match `ep*`"));
        other.kind = EventKind::Failed;
        other.entity_id = "ep1".into();
        let e = explain(&r, &Runtime::default(), Window::default(), &[], &other);
        assert!(!e.clauses[0].ok);
        let active = Runtime {
            state: AlertState::Active,
            ..Runtime::default()
        };
        let e = explain(&r, &active, Window::default(), &[], &drift("ep1", 0.9, 0));
        assert_eq!(e.verdict.outcome, Outcome::Ignored);
        assert!(e.verdict.says.contains("until reset"), "{}", e.verdict.says);
        assert!(
            !e.clauses
                .iter()
                .find(|c| c.clause == "state")
                .expect("state")
                .ok
        );
    }
}
