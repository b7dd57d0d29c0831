//! The operations the embedded store logs: every change to the engine's state, as it was asked
//! for. Applying the same operations in the same order to the same state gives the same state,
//! because the engine decides from the state and the operation alone (time included), so a
//! restart replays the log's tail over the last snapshot and lands where the process stopped.

use serde::{Deserialize, Serialize};
use tocsin_core::engine::{Changes, EventOutcome, PutAlert};
use tocsin_core::error::{Backend, Error, Result};
use tocsin_core::model::{AcceptedEvent, Delivery, Span, Timestamp};
use tocsin_core::store::{MemoryState, PutOutcome};

/// One logged change, in the order the writer applied it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// An accepted event (counted, or a duplicate of a held idempotency key); also what the
    /// backtest replays.
    Event {
        event: AcceptedEvent,
        ttl: Span,
    },
    PutAlert(Box<PutAlert>),
    DeleteAlert {
        project: String,
        name: String,
    },
    ResetAlert {
        project: String,
        name: String,
        now: Timestamp,
    },
    Acknowledge {
        project: String,
        name: String,
        by: String,
        now: Timestamp,
    },
    /// What became of a notification. It changes no alert, only its activation, but it is
    /// logged so that a replayed firing does not bring a delivered notification back.
    Delivery {
        activation: u64,
        delivery: Delivery,
    },
    PruneIdempotency {
        now: Timestamp,
    },
}

/// What an operation answered.
#[derive(Debug)]
pub enum Done {
    Event(EventOutcome),
    Put(Result<PutOutcome>),
    Found(bool),
    Acknowledged(Result<bool>),
    Pruned(usize),
    Recorded,
}

/// Applies `op` to `state` through the engine, adding what it changed to `changes`. The one
/// path for live operations and replay alike.
pub fn apply(state: &mut MemoryState, op: Op, changes: &mut Changes) -> Done {
    match op {
        Op::Event { event, ttl } => Done::Event(state.apply_event(&event, ttl, changes)),
        Op::PutAlert(put) => Done::Put(state.put_alert(*put, changes)),
        Op::DeleteAlert { project, name } => Done::Found(state.delete(&project, &name, changes)),
        Op::ResetAlert { project, name, now } => {
            Done::Found(state.reset(&project, &name, now, changes))
        }
        Op::Acknowledge {
            project,
            name,
            by,
            now,
        } => Done::Acknowledged(state.acknowledge(&project, &name, &by, now, changes)),
        Op::Delivery {
            activation,
            delivery,
        } => {
            changes.deliveries.push((activation, delivery));
            Done::Recorded
        }
        Op::PruneIdempotency { now } => {
            let expired = state.prune_idempotency(now);
            let n = expired.len();
            changes
                .idempotency_removed
                .extend(expired.into_iter().map(|(p, k)| (p.into(), k.into())));
            Done::Pruned(n)
        }
    }
}

fn mismatch(done: &Done) -> Error {
    Error::backend(
        Backend::Embedded,
        format!("internal: an operation answered {done:?}, which its caller did not ask for"),
    )
}

impl Done {
    pub fn event(self) -> Result<EventOutcome> {
        match self {
            Done::Event(o) => Ok(o),
            other => Err(mismatch(&other)),
        }
    }

    pub fn put(self) -> Result<PutOutcome> {
        match self {
            Done::Put(r) => r,
            other => Err(mismatch(&other)),
        }
    }

    /// Whether the alert existed (an acknowledgement's error passes through).
    pub fn found(self) -> Result<bool> {
        match self {
            Done::Found(b) => Ok(b),
            Done::Acknowledged(r) => r,
            other => Err(mismatch(&other)),
        }
    }

    pub fn pruned(self) -> Result<usize> {
        match self {
            Done::Pruned(n) => Ok(n),
            other => Err(mismatch(&other)),
        }
    }

    pub fn recorded(self) -> Result<()> {
        match self {
            Done::Recorded => Ok(()),
            other => Err(mismatch(&other)),
        }
    }
}
