//! Absence alerts (a dead man's switch): `criteria.absent` fires when no event of the alert's
//! kinds arrived for an entity for that long. Time passes without events, so the firing is
//! found by a tick ([`super::intake::tick`]) and stamped with the deadline, not with the time of
//! the tick: a tick late by a second, or a replay, fires the same activation at the same time.
//!
//! Each entity's window keeps the time it was last seen. For a `*` alert, the entities that
//! have been seen are watched, and the ones in `criteria.must_report` from the moment the alert
//! was armed (created or reset) even if they never reported. An absence fires once: the entity's
//! open activation is kept in the runtime (`absent`), and closes ("events came back") with the
//! next event about it.

use std::sync::Arc;

use super::{Changes, Closed, Fired, Runtime, WindowChange, Windows, build_activation};
use crate::compiled::{EntitySelector, Rule};
use crate::model::{AcceptedEvent, Activation, AlertState, Silence, Timestamp};

/// Why an absence's activation closes.
pub const EVENTS_CAME_BACK: &str = "events came back";

/// An event that concerns an absence alert (its kind and filter): the entity is seen now, and
/// its open absence, if any, closes.
pub fn seen(
    alert: u64,
    rule: &Rule,
    runtime: &mut Runtime,
    windows: &mut impl super::WindowSource,
    ev: &AcceptedEvent,
    changes: &mut Changes,
) {
    windows.window_mut(&ev.entity_id).seen(ev.at);
    let entity = rule
        .per_entity
        .then(|| Box::<str>::from(ev.entity_id.as_str()));
    changes.windows.push(WindowChange::Put { alert, entity });
    if let Some(id) = runtime.absent.remove(ev.entity_id.as_str()) {
        let closed = Closed::new(rule, id, ev.at, EVENTS_CAME_BACK);
        changes.resolving |= !closed.resolved.is_empty();
        changes.closed.push(closed);
        if runtime.absent.is_empty() {
            runtime.state = AlertState::Inactive;
        }
        changes.runtimes.push(alert);
    }
}

/// The entities an absence alert awaits from when it is armed (created or reset), whether or
/// not they ever report: its one entity, or `criteria.must_report`.
pub fn awaited(rule: &Rule) -> &[String] {
    match &rule.entity {
        EntitySelector::Exact(id) => std::slice::from_ref(id),
        _ => &rule.must_report,
    }
}

/// When the absence of `entity`, last seen at `last` (None: not since the alert was armed),
/// comes due: one span after it was seen, or after the alert was armed. None for an alert that
/// is not an absence alert, and for an entity whose absence is open already.
pub fn deadline(
    rule: &Rule,
    runtime: &Runtime,
    entity: &str,
    last: Option<Timestamp>,
) -> Option<Timestamp> {
    let span = rule.absence?;
    if runtime.absent.contains_key(entity) {
        return None;
    }
    Some(
        last.unwrap_or(runtime.armed.unwrap_or(Timestamp(0)))
            .plus(span),
    )
}

/// When the entities that [`awaited`] names come due if none of them reports: what a store
/// that cannot look at every entity's window on each tick (DynamoDB) indexes the alert by.
pub fn arm_deadline(rule: &Rule, runtime: &Runtime) -> Option<Timestamp> {
    if awaited(rule).is_empty() {
        return None;
    }
    Some(runtime.armed.unwrap_or(Timestamp(0)).plus(rule.absence?))
}

/// Of `candidates` (an entity and when it was last seen), those whose absence is due by `now`
/// and not fired yet, with their deadlines, oldest first. A store that holds every window
/// passes them all ([`due`]); DynamoDB passes the ones its index says may be due.
pub fn due_among<'c>(
    rule: &Rule,
    runtime: &Runtime,
    candidates: impl IntoIterator<Item = (&'c str, Option<Timestamp>)>,
    now: Timestamp,
) -> Vec<(String, Timestamp)> {
    let mut due: Vec<(String, Timestamp)> = candidates
        .into_iter()
        .filter_map(|(entity, last)| {
            deadline(rule, runtime, entity, last)
                .filter(|d| *d <= now)
                .map(|d| (entity.to_owned(), d))
        })
        .collect();
    due.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    due.dedup();
    due
}

/// The entities an absence alert watches in `windows`, each with when it was last seen (None:
/// awaited and never seen): every entity seen, and the awaited ones that never reported.
pub fn watched<'w>(
    rule: &'w Rule,
    windows: &'w Windows,
) -> Box<dyn Iterator<Item = (&'w str, Option<Timestamp>)> + 'w> {
    match (windows, &rule.entity) {
        (Windows::Shared(w), EntitySelector::Exact(id)) => {
            Box::new(std::iter::once((id.as_str(), w.last())))
        }
        (Windows::Shared(_), _) => Box::new(std::iter::empty()),
        (Windows::PerEntity(m), _) => {
            let seen = m.iter().map(|(entity, w)| (&**entity, w.last()));
            let never = awaited(rule)
                .iter()
                .filter(|e| !m.contains_key(e.as_str()))
                .map(|e| (e.as_str(), None));
            Box::new(seen.chain(never))
        }
    }
}

/// The entities whose absence is due by `now` and not fired yet, with their deadlines, oldest
/// first: every entity the alert's windows have seen, and the awaited ones that never reported.
pub fn due(
    rule: &Rule,
    runtime: &Runtime,
    windows: &Windows,
    now: Timestamp,
) -> Vec<(String, Timestamp)> {
    if rule.absence.is_none() {
        return Vec::new();
    }
    due_among(rule, runtime, watched(rule, windows), now)
}

/// The earliest deadline of an absence not fired yet, if any: no absence of the alert comes
/// due before it. Events only move deadlines later, and an entity seen for the first time has
/// its deadline a span from then, so it stays a bound until the alert is reset or changed.
pub fn earliest(rule: &Rule, runtime: &Runtime, windows: &Windows) -> Option<Timestamp> {
    rule.absence?;
    watched(rule, windows)
        .filter_map(|(entity, last)| deadline(rule, runtime, entity, last))
        .min()
}

/// Fires each absence of `due` (from [`due`] or [`due_among`]) for alert `alert`, with the
/// activation ids `next_id` gives, and records the changes: what a tick does with what came
/// due.
pub fn fire_due(
    alert: u64,
    rule: &Arc<Rule>,
    runtime: &mut Runtime,
    silences: &[Silence],
    due: Vec<(String, Timestamp)>,
    next_id: &mut impl FnMut() -> u64,
    changes: &mut Changes,
) -> Vec<Fired> {
    due.into_iter()
        .map(|(entity, deadline)| {
            let a = Arc::new(fire(rule, runtime, silences, &entity, deadline, next_id()));
            changes.activations.push(a.clone());
            changes.runtimes.push(alert);
            Fired {
                activation: a,
                rule: rule.clone(),
            }
        })
        .collect()
}

/// The absence of `entity` fires with activation `id`, at its `deadline`: no events counted,
/// the alert's first trigger kind as the kind that did not come.
pub fn fire(
    rule: &Rule,
    runtime: &mut Runtime,
    silences: &[Silence],
    entity: &str,
    deadline: Timestamp,
    id: u64,
) -> Activation {
    let missing = AcceptedEvent {
        project: rule.project().to_owned(),
        kind: rule
            .config
            .trigger
            .events
            .first()
            .cloned()
            .unwrap_or(crate::model::EventKind::Failed),
        entity_kind: rule.config.entities.kind,
        entity_id: entity.to_owned(),
        value_dict: Default::default(),
        at: deadline,
        idempotency_key: None,
        chain: Vec::new(),
        message: None,
    };
    runtime.count += 1;
    runtime.last_activation = Some(id);
    runtime.last_fired = Some(deadline);
    runtime.state = AlertState::Active;
    runtime.absent.insert(entity.into(), id);
    let deliveries = runtime.plan_deliveries(rule, &missing, silences);
    build_activation(id, rule, &missing, 0, false, deliveries)
}
