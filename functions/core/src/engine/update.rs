//! Alert updates, decided once: what storing, resetting and acknowledging an alert do to its
//! state. Stores read the stored alert, ask here, and write the plan (the memory store in place,
//! DynamoDB with a write conditional on the version it read, retried on a conflict).

use super::{Closed, Runtime};
use crate::compiled::{Rule, keep_referenced_secrets};
use crate::error::{Error, Result};
use crate::model::Timestamp;

/// A request to create or replace an alert. Serializable: the embedded store logs it and
/// replays it after a restart, which gives the same outcome because it carries its own time.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PutAlert {
    pub rule: Rule,
    pub force_reset: bool,
    /// A new alert is refused (412) when this many already exist, across all projects.
    pub max_allowed: usize,
    pub now: Timestamp,
}

/// What a put does to the alert as stored.
#[derive(Debug, Clone)]
pub struct PutPlan {
    /// The rule to store: the request's, with the stored secrets that it refers to by their
    /// masked form put back.
    pub rule: Rule,
    /// The runtime state after the put.
    pub runtime: Runtime,
    /// No alert was stored under this name.
    pub created: bool,
    /// The state was reset (see [`Runtime::update_resets`]).
    pub reset: bool,
    /// The activations the reset closed.
    pub closed: Vec<Closed>,
    /// The windows start afresh: after a reset, or when their shape (`per_entity`) changed.
    pub new_windows: bool,
}

/// Plans a put over `stored` (its rule and runtime; None: a new alert). `alerts` is how many
/// alerts exist, where the store knows it before writing; a store that enforces the limit in its
/// write (DynamoDB) passes None and answers [`too_many`] when the write is refused.
pub fn put(
    stored: Option<(&Rule, &Runtime)>,
    request: &PutAlert,
    alerts: Option<usize>,
) -> Result<PutPlan> {
    let mut rule = request.rule.clone();
    let Some((old, runtime)) = stored else {
        if let Some(count) = alerts
            && count >= request.max_allowed
        {
            return Err(too_many(count, request.max_allowed));
        }
        keep_referenced_secrets(&mut rule, None)?;
        return Ok(PutPlan {
            rule,
            runtime: Runtime {
                armed: Some(request.now),
                ..Runtime::default()
            },
            created: true,
            reset: false,
            closed: Vec::new(),
            new_windows: true,
        });
    };
    keep_referenced_secrets(&mut rule, Some(old))?;
    let mut runtime = runtime.clone();
    let reset = runtime.update_resets(old, &rule, request.force_reset, request.now);
    let closed = if reset {
        let closed = runtime.reset(old, request.now, "reset by a change of its config");
        // An alert that becomes an absence alert awaits its entities from now.
        if rule.absence.is_some() {
            runtime.armed = Some(request.now);
        }
        closed
    } else {
        Vec::new()
    };
    let new_windows = reset || old.per_entity != rule.per_entity;
    Ok(PutPlan {
        rule,
        runtime,
        created: false,
        reset,
        closed,
        new_windows,
    })
}

/// The refusal of a new alert past the operator's limit (MLRun's message).
pub fn too_many(count: usize, max_allowed: usize) -> Error {
    Error::PreconditionFailed(format!(
        "Allowed number of alerts exceeded: {count} alerts exist (the limit is {max_allowed})"
    ))
}

/// A reset by `by` at `now`: inactive, cooldown and acknowledgement cleared, count kept; the
/// windows start afresh. Returns the activations it closes.
pub fn reset(rule: &Rule, runtime: &mut Runtime, by: &str, now: Timestamp) -> Vec<Closed> {
    runtime.reset(rule, now, &format!("reset by {by}"))
}

/// An acknowledgement by `by` at `now` (see [`Runtime::acknowledge`]): refused unless the alert
/// is active. Returns what it tells the channels that take acknowledgements, per open
/// activation.
pub fn acknowledge(
    rule: &Rule,
    runtime: &mut Runtime,
    by: &str,
    now: Timestamp,
) -> Result<Vec<super::runtime::Noted>> {
    runtime.acknowledge(by, now)?;
    let deliveries: Vec<crate::model::Delivery> = rule
        .config
        .notifications
        .iter()
        .filter(|n| n.notification.kind.channel().acknowledges())
        .map(|n| crate::model::Delivery::pending(&n.notification, false, true))
        .collect();
    if deliveries.is_empty() {
        return Ok(Vec::new());
    }
    Ok(runtime
        .open_activations(now)
        .into_iter()
        .map(|activation| super::runtime::Noted {
            activation,
            at: now,
            deliveries: deliveries.clone(),
        })
        .collect())
}
