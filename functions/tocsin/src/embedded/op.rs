//! The operations the embedded store logs: every change to the engine's state, as it was asked
//! for. Applying the same operations in the same order to the same state gives the same state,
//! because the engine decides from the state and the operation alone (time included), so a
//! restart replays the log's tail over the last snapshot and lands where the process stopped.

use serde::{Deserialize, Serialize};
use tocsin_core::engine::{Changes, EventOutcome, PutAlert, Ticked};
use tocsin_core::error::{Backend, Error, Result};
use tocsin_core::model::{AcceptedEvent, Delivery, Silence, Span, Timestamp};
use tocsin_core::store::{MemoryState, PutOutcome};

/// One logged change, in the order the writer applied it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// An accepted event (counted, or a duplicate of a held idempotency key); also what the
    /// backtest replays. The most frequent record, so written short (see [`compact`]).
    #[serde(rename = "ev")]
    Event {
        #[serde(rename = "e", with = "compact")]
        event: AcceptedEvent,
        ttl: Span,
    },
    /// The next `n` records are the events of one batch, evaluated together in the order of
    /// [`tocsin_core::ops`] (a round for the batch, then one for what its firings emit).
    /// Single events have no marker.
    Batch {
        n: usize,
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
        /// Who reset it (absent in logs written before it was recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
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
    /// What became of a notification's message, for its cooldown (see
    /// [`MemoryState::delivered`]).
    Delivered {
        project: String,
        alert: String,
        activation: u64,
        name: String,
        sent: Option<Timestamp>,
    },
    PruneIdempotency {
        now: Timestamp,
    },
    /// Time passed to `now` with something due (see [`MemoryState::tick`]).
    Tick {
        now: Timestamp,
    },
    /// A silence made, changed or expired (the service decided which), with the retention
    /// that drops old expired ones.
    PutSilence {
        silence: Box<Silence>,
        now: Timestamp,
        retention: Span,
    },
}

/// An event as the log writes it: short keys, the time as microseconds, empty fields left out.
/// About 150 bytes for a typical event, against 260 for its wire form.
mod compact {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::{Map, Value};
    use tocsin_core::model::{AcceptedEvent, EntityKind, EventKind, Timestamp};

    #[derive(Serialize)]
    struct Ref<'a> {
        p: &'a str,
        k: &'a EventKind,
        ek: &'a EntityKind,
        e: &'a str,
        #[serde(skip_serializing_if = "Map::is_empty")]
        v: &'a Map<String, Value>,
        t: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        i: Option<&'a str>,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        c: &'a [String],
    }

    #[derive(Deserialize)]
    struct Owned {
        p: String,
        k: EventKind,
        ek: EntityKind,
        e: String,
        #[serde(default)]
        v: Map<String, Value>,
        t: i64,
        #[serde(default)]
        i: Option<String>,
        #[serde(default)]
        c: Vec<String>,
    }

    pub fn serialize<S: Serializer>(ev: &AcceptedEvent, s: S) -> Result<S::Ok, S::Error> {
        Ref {
            p: &ev.project,
            k: &ev.kind,
            ek: &ev.entity_kind,
            e: &ev.entity_id,
            v: &ev.value_dict,
            t: ev.at.0,
            i: ev.idempotency_key.as_deref(),
            c: &ev.chain,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<AcceptedEvent, D::Error> {
        let o = Owned::deserialize(d)?;
        Ok(AcceptedEvent {
            project: o.p,
            kind: o.k,
            entity_kind: o.ek,
            entity_id: o.e,
            value_dict: o.v,
            at: Timestamp(o.t),
            idempotency_key: o.i,
            chain: o.c,
            message: None,
        })
    }
}

/// What an operation answered.
#[derive(Debug)]
pub enum Done {
    Event(EventOutcome),
    Events(Vec<Result<EventOutcome>>),
    Put(Result<PutOutcome>),
    Found(bool),
    Acknowledged(Result<bool>),
    Pruned(usize),
    Recorded,
    Ticked(Ticked),
}

/// Applies `op` to `state` through the engine, adding what it changed to `changes`. The one
/// path for live operations and replay alike.
pub fn apply(state: &mut MemoryState, op: Op, changes: &mut Changes) -> Done {
    match op {
        Op::Event { event, ttl } => Done::Event(state.apply_event(&event, ttl, changes)),
        // Its events come with it through [`Replay`], or [`apply_batch`] live.
        Op::Batch { .. } => Done::Recorded,
        Op::PutAlert(put) => Done::Put(state.put_alert(*put, changes)),
        Op::DeleteAlert { project, name } => Done::Found(state.delete(&project, &name, changes)),
        Op::ResetAlert {
            project,
            name,
            now,
            by,
        } => Done::Found(state.reset(
            &project,
            &name,
            by.as_deref().unwrap_or("someone"),
            now,
            changes,
        )),
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
        Op::Delivered {
            project,
            alert,
            activation,
            name,
            sent,
        } => {
            state.delivered(&project, &alert, activation, &name, sent, changes);
            Done::Recorded
        }
        Op::PruneIdempotency { now } => Done::Pruned(state.prune_idempotency(now)),
        Op::Tick { now } => Done::Ticked(state.tick(now, changes)),
        Op::PutSilence {
            silence,
            now,
            retention,
        } => {
            state.put_silence(*silence, now, retention);
            Done::Recorded
        }
    }
}

/// Applies a batch of events (logged as a [`Op::Batch`] marker and their records).
pub fn apply_batch(
    state: &mut MemoryState,
    events: &[AcceptedEvent],
    ttl: Span,
    changes: &mut Changes,
) -> Done {
    Done::Events(state.apply_events(events, ttl, changes))
}

/// Replays records in log order: a batch's records are gathered after its marker and applied
/// together, as they were live.
#[derive(Default)]
pub struct Replay {
    /// The batch being gathered: how many events it has, and those read so far.
    batch: Option<(usize, Vec<AcceptedEvent>, Span)>,
}

impl Replay {
    /// Applies `op`, or gathers it into the batch it belongs to.
    pub fn feed(&mut self, state: &mut MemoryState, op: Op, changes: &mut Changes) {
        match (op, &mut self.batch) {
            (Op::Batch { n }, _) => {
                self.finish(state, changes);
                self.batch = Some((n, Vec::with_capacity(n), Span::from_secs(0)));
            }
            (Op::Event { event, ttl }, Some((n, events, batch_ttl))) => {
                events.push(event);
                *batch_ttl = ttl;
                if events.len() >= *n {
                    self.finish(state, changes);
                }
            }
            (op, _) => {
                self.finish(state, changes);
                apply(state, op, changes);
            }
        }
    }

    /// Applies the batch gathered so far (all of it, or what a torn end of the log kept).
    pub fn finish(&mut self, state: &mut MemoryState, changes: &mut Changes) {
        if let Some((_, events, ttl)) = self.batch.take()
            && !events.is_empty()
        {
            apply_batch(state, &events, ttl, changes);
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

    pub fn events(self) -> Result<Vec<Result<EventOutcome>>> {
        match self {
            Done::Events(o) => Ok(o),
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

    pub fn ticked(self) -> Result<Ticked> {
        match self {
            Done::Ticked(t) => Ok(t),
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

#[cfg(test)]
mod tests {
    use super::Op;
    use tocsin_core::model::{AcceptedEvent, Span};

    #[test]
    fn an_event_record_is_short_and_reads_back_whole() {
        let event: AcceptedEvent = serde_json::from_value(serde_json::json!({
            "project": "load", "kind": "data-drift-detected", "entity_kind": "model-endpoint-result",
            "entity_id": "ep123", "value_dict": {"value": 0.93, "threshold": 0.5},
            "at": "2026-12-02T10:00:00.123456+00:00", "idempotency_key": "k1", "chain": ["p/a"]
        }))
        .expect("event");
        let op = Op::Event {
            event: event.clone(),
            ttl: Span::from_secs(86_400),
        };
        let bytes = serde_json::to_vec(&op).expect("json");
        assert!(bytes.len() < 200, "{}", String::from_utf8_lossy(&bytes));
        let Op::Event { event: back, ttl } = serde_json::from_slice(&bytes).expect("read") else {
            panic!("not an event");
        };
        assert_eq!((back, ttl), (event, Span::from_secs(86_400)));
    }
}
