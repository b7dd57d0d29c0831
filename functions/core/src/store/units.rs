//! What a store provides to the operations of [`crate::ops`]: units of state, loaded, committed
//! or lost to a concurrent writer, and the few things only it can do (claim keys, reserve
//! ids, find what is due). No sequence lives here: the operations say in which order these
//! are asked, once for every store.
//!
//! A store that holds everything under one writer (memory, embedded) implements them over
//! its state in place: loading borrows it, evaluation changes it, a commit never conflicts.
//! DynamoDB loads working copies (from its cache or strongly consistent reads), commits them
//! with conditional writes, and reports the part a concurrent writer changed first.

use std::future::Future;

use crate::compiled::Rule;
use crate::engine::intake::IntakeState;
use crate::engine::{Changes, Closed, EventOutcome, Runtime};
use crate::error::{Backend, Error, Result};
use crate::model::{AcceptedEvent, EventKind, Timestamp};
use crate::ops::Ids;

use super::AlertRecord;

/// A claim on an event's idempotency key, held until `expires`.
#[derive(Debug, Clone, Copy)]
pub struct KeyClaim<'e> {
    /// The event's place in the batch.
    pub index: usize,
    pub project: &'e str,
    pub key: &'e str,
    /// The event's time: a key held until then or earlier has expired.
    pub at: Timestamp,
    pub expires: Timestamp,
}

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Held by an earlier event: this one is a duplicate.
    Held,
    /// Claimed now, atomically with everything else the operation does (memory, embedded).
    Claimed,
    /// To be claimed in the commit of the event's counts, in the same atomic write, so that a
    /// failed commit leaves no claim behind (DynamoDB); a key found held then makes the event
    /// a duplicate ([`Verdict::Duplicate`]).
    AtCommit,
}

/// What became of one event's effect on one alert, or of one event, after a commit.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Committed.
    Done,
    /// Lost to a concurrent writer: read again and evaluated again.
    Again,
    /// Its key was found held: a duplicate of another event.
    Duplicate,
    /// Counted before by this very message (the queue's redelivery): a duplicate of itself.
    Redelivered,
    /// Its write failed.
    Failed(Error),
}

/// Event intake: the units an ingest evaluates.
pub trait IntakeUnits: Send {
    /// The state a round of events works on.
    type Round<'r>: RoundUnit + Send
    where
        Self: 'r;

    /// Which store this is, for errors.
    const BACKEND: Backend;

    /// Brings what the store knows of the alerts up to date before an intake (DynamoDB: its
    /// cache's catalog check).
    fn begin(&mut self) -> impl Future<Output = Result<()>> + Send;

    /// Whether an alert of `project` triggers on `kind`, as far as the store knows.
    fn listens(&self, project: &str, kind: &EventKind) -> bool;

    /// After an event of a custom kind that nothing listens to: brings the configs up to date
    /// if they may be stale (an alert created a moment ago elsewhere); whether they changed.
    fn recheck(&mut self) -> impl Future<Output = Result<bool>> + Send;

    /// Claims idempotency keys, one answer per claim (none of the claims repeats a key).
    fn claim(&mut self, claims: &[KeyClaim<'_>])
    -> impl Future<Output = Vec<Result<Claim>>> + Send;

    /// Loads what a round touches: the alerts its events match, with their windows.
    /// `events` are the round's events, each with the index of the batch event it comes from.
    fn load<'r>(
        &'r mut self,
        events: &'r [(usize, &'r AcceptedEvent)],
        claims: &'r [KeyClaim<'r>],
    ) -> impl Future<Output = Result<Self::Round<'r>>> + Send;

    /// Keeps the batch's events for `explain` and the backtest, with their outcomes (what was
    /// counted); returns, per event, an error to answer instead of its outcome when they could
    /// not be kept. The embedded store's log is its history: it keeps nothing more here.
    fn record(
        &mut self,
        events: &[AcceptedEvent],
        outcomes: &[Result<EventOutcome>],
    ) -> impl Future<Output = Vec<Option<Error>>> + Send;
}

/// The state of one round: what the engine evaluates, the ids and the change set it uses, and
/// the commit of what it changed.
pub trait RoundUnit {
    /// The alerts, as the engine's round matches events against them. A unit that was
    /// committed in part yields only what is left to evaluate.
    type State: IntakeState;

    /// The state, the ids and the change set to evaluate into, borrowed together.
    fn split(&mut self) -> (&mut Self::State, &mut Ids, &mut Changes);

    /// After an evaluation with provisional ids ([`Ids::must_reserve`]): reserves as many, and
    /// goes back to the state as loaded (change set emptied) for the evaluation again.
    fn reserve(&mut self, count: u64) -> impl Future<Output = Result<()>> + Send;

    /// Commits what the evaluation changed (the change set, and `effects`: which event did
    /// what to which alert). An error is for the whole round; a part lost or failed is said
    /// by [`RoundUnit::verdict`].
    fn commit(
        &mut self,
        effects: &[crate::engine::intake::Effect],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Whether the last commit wrote nothing because what the round changed does not fit in
    /// one commit (DynamoDB: a transaction holds 100 items): the sequence evaluates the round
    /// in two halves instead. A round of one event is never too large (its store commits it
    /// in pieces).
    fn too_large(&self) -> bool {
        false
    }

    /// What became of the effect of the round's event `event` on `alert` in the last commit.
    fn verdict(&self, event: usize, alert: u64) -> Verdict;

    /// What became of the round's event `event` as a whole, where it is decided apart from
    /// its effects: counted before, or its key held (a duplicate); its claim's write failed.
    fn event_verdict(&self, event: usize) -> Option<Verdict>;

    /// Whether a part was lost to a concurrent writer.
    fn lost(&self) -> bool;

    /// Reads the lost part again (and empties the change set), for its evaluation again.
    fn reload(&mut self) -> impl Future<Output = Result<()>> + Send;
}

/// An alert as its row is stored: the record, and what a conditional write needs.
#[derive(Debug, Clone)]
pub struct AlertRow {
    pub record: AlertRecord,
    /// The row's version: a write is conditional on it (stores that never conflict: 0).
    pub version: u64,
    /// The window generation: a reset or a change of what decides firing starts a new one,
    /// and the old windows are never read again.
    pub generation: u64,
    /// Absence alerts: when the entities awaited from arming come due if none reports, until a
    /// tick has looked at them (see [`crate::engine::absence::arm_deadline`]).
    pub arm_due: Option<Timestamp>,
}

/// A write of an alert's row, as an alert change decided it.
#[derive(Debug, Clone)]
pub struct AlertWrite {
    pub row: AlertRow,
    /// The version the row was read at; None: a new alert.
    pub expected: Option<u64>,
    /// The windows start afresh (`row.generation` is the new one).
    pub new_windows: bool,
    /// A new alert is refused when this many exist already (checked in the write by a store
    /// that does not know the count beforehand).
    pub max_allowed: usize,
    /// The activations the change closes.
    pub closed: Vec<Closed>,
    /// Deliveries the change adds to open activations (an acknowledgement's).
    pub noted: Vec<crate::engine::Noted>,
    /// The config changed (not only the state): listings and caches must see it.
    pub config_changed: bool,
}

/// What a write of an alert's row did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Done,
    /// A concurrent writer changed the row first: read again.
    Conflict,
    /// A new alert past the limit; how many exist.
    TooMany(usize),
}

/// Alert rows, versioned: what alert changes read and write.
pub trait AlertRows: Send {
    const BACKEND: Backend;

    /// The row of `project/name`, read consistently.
    fn read(
        &mut self,
        project: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<AlertRow>>> + Send;

    /// How many alerts exist, where the store knows it before writing (a store that checks the
    /// limit in its write answers None, and [`Written::TooMany`]).
    fn count(&self) -> Option<usize>;

    /// An id for a new alert.
    fn next_alert_id(&mut self) -> impl Future<Output = Result<u64>> + Send;

    /// Writes a row if it is still at the version read.
    fn write(&mut self, write: AlertWrite) -> impl Future<Output = Result<Written>> + Send;

    /// Deletes `project/name`; whether it existed.
    fn delete(&mut self, project: &str, name: &str) -> impl Future<Output = Result<bool>> + Send;
}

/// Time passing: the units a tick settles.
pub trait TickUnits: Send {
    /// One alert found due, with what a tick needs of it.
    type Due<'d>: DueUnit + Send
    where
        Self: 'd;

    const BACKEND: Backend;

    /// The alerts that may be due by `now`, in id order (a replay meets them in the same
    /// order).
    fn due(&mut self, now: Timestamp) -> impl Future<Output = Result<Vec<u64>>> + Send;

    /// Loads alert `alert` for a tick at `now`; None when it is gone.
    fn load_due(
        &mut self,
        alert: u64,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<Self::Due<'_>>>> + Send;
}

/// One due alert as a tick sees it.
pub struct DueState<'d> {
    pub alert: u64,
    pub rule: &'d std::sync::Arc<Rule>,
    pub runtime: &'d mut Runtime,
    /// The entities whose absence may be due, each with when it was last seen (None: awaited
    /// and not seen since the alert was armed).
    pub candidates: &'d [(String, Option<Timestamp>)],
    /// The project's silences.
    pub silences: &'d [crate::model::Silence],
}

/// One alert a tick settles: its state, its commit.
pub trait DueUnit {
    /// The most absences one commit may fire (DynamoDB: what fits in a transaction).
    fn max_fired(&self) -> usize;

    /// The state, the ids and the change set, borrowed together.
    fn split(&mut self) -> (DueState<'_>, &mut Ids, &mut Changes);

    /// See [`RoundUnit::reserve`].
    fn reserve(&mut self, count: u64) -> impl Future<Output = Result<()>> + Send;

    /// Commits what the tick changed; false when a concurrent writer changed the alert first
    /// (read again with [`DueUnit::reload`]).
    fn commit(&mut self) -> impl Future<Output = Result<bool>> + Send;

    /// Reads the alert again (and empties the change set).
    fn reload(&mut self) -> impl Future<Output = Result<()>> + Send;
}
