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

use super::{Changes, Closed, Runtime, WindowChange, Windows, build_activation};
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

/// The entities whose absence is due by `now` and not fired yet, with their deadlines, oldest
/// first.
pub fn due(
    rule: &Rule,
    runtime: &Runtime,
    windows: &Windows,
    now: Timestamp,
) -> Vec<(String, Timestamp)> {
    let Some(span) = rule.absence else {
        return Vec::new();
    };
    let armed = runtime.armed.unwrap_or(Timestamp(0));
    let mut due: Vec<(String, Timestamp)> = Vec::new();
    let mut consider = |entity: &str, last: Option<Timestamp>| {
        let deadline = last.unwrap_or(armed).plus(span);
        if deadline <= now && !runtime.absent.contains_key(entity) {
            due.push((entity.to_owned(), deadline));
        }
    };
    match (windows, &rule.entity) {
        (Windows::Shared(w), EntitySelector::Exact(id)) => consider(id, w.last()),
        (Windows::Shared(_), _) => {}
        (Windows::PerEntity(m), _) => {
            for (entity, w) in m {
                consider(entity, w.last());
            }
            for entity in &rule.must_report {
                if !m.contains_key(entity.as_str()) {
                    consider(entity, None);
                }
            }
        }
    }
    due.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    due
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
