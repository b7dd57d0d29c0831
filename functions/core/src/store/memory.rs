//! The in-memory state of a store: alert entries, their windows, the matching index and
//! idempotency keys. It decides nothing: operations go through the engine ([`intake`],
//! [`update`]) and apply what they return. [`MemoryStore`] is it behind a lock; the embedded
//! store is it owned by one writer thread that logs each operation before applying it, so that
//! both behave identically by construction.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::units::{
    AlertRow, AlertRows, AlertWrite, Claim, DueState, DueUnit, IntakeUnits, KeyClaim, RoundUnit,
    TickUnits, Verdict, Written,
};
use super::{
    ActivationQuery, ActivationStore, AlertRecord, AlertStore, AuditStore, EventOutcome,
    EventQuery, EventStore, PutOutcome, Recorded, SilenceStore, Silences, TokenStore,
};
use crate::auth::{AuditEntry, TokenRecord};
use crate::engine::intake::{self, AlertSlot, Effect, IntakeState};
use crate::engine::{Changes, Matcher, PutAlert, WindowChange, Windows, absence};
use crate::error::{Backend, Error, Result};
use crate::model::{AcceptedEvent, Activation, Delivery, EventKind, Silence, Span, Timestamp};
use crate::ops::{self, Ids};

/// An alert with its windows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertEntry {
    pub record: AlertRecord,
    pub windows: Windows,
}

/// The in-memory state of alerts. Not thread-safe by itself: stores hold it behind a lock.
#[derive(Debug, Default)]
pub struct MemoryState {
    next_alert_id: u64,
    next_activation_id: u64,
    /// Boxed: the map grows by doubling, and its empty slots then cost a pointer, not an alert.
    alerts: FxHashMap<u64, Box<AlertEntry>>,
    names: BTreeMap<(String, String), u64>,
    matcher: Matcher,
    idempotency: FxHashMap<(Box<str>, Box<str>), Timestamp>,
    silences: Silences,
    /// Config changes, resets and acknowledgements since the state was made (not persisted:
    /// see [`MemoryState::listing_version`]).
    edits: u64,
    /// When each alert may come due by time alone, at the earliest (see `schedule`), and the
    /// same as a queue: a tick looks only at the alerts whose time has come, not at every
    /// alert. Derived, not persisted: a restored alert is looked at by the first tick.
    timers: Timers,
}

/// A queue of (time, alert): an entry is live while it is the alert's `next` time; others are
/// stale and skipped.
#[derive(Debug, Default)]
struct Timers {
    queue: std::collections::BinaryHeap<std::cmp::Reverse<(Timestamp, u64)>>,
    next: FxHashMap<u64, Timestamp>,
}

/// Entries a drained timer queue keeps room for.
const SHRINK_ABOVE: usize = 1024;

impl Timers {
    /// The alert may come due at `at`: queued, unless it already is for no later.
    fn schedule(&mut self, id: u64, at: Timestamp) {
        if self.next.get(&id).is_none_or(|n| at < *n) {
            self.next.insert(id, at);
            self.queue.push(std::cmp::Reverse((at, id)));
        }
    }

    /// The next live entry due by `now`, taken off the queue.
    fn pop_due(&mut self, now: Timestamp) -> Option<u64> {
        while let Some(std::cmp::Reverse((at, id))) = self.queue.peek().copied() {
            if at > now {
                return None;
            }
            if self.queue.len() == 1 && self.queue.capacity() > SHRINK_ABOVE {
                // The last entry of a burst (every alert is queued when stored or restored):
                // the room it took is handed back rather than kept for good.
                self.queue.shrink_to(SHRINK_ABOVE);
                self.next.shrink_to(SHRINK_ABOVE);
            }
            self.queue.pop();
            if self.next.get(&id) == Some(&at) {
                self.next.remove(&id);
                return Some(id);
            }
        }
        None
    }
}

impl MemoryState {
    /// An empty state whose next activation id follows `last_activation_id` (ids are never
    /// reused, also across restarts).
    pub fn new(last_activation_id: u64) -> Self {
        MemoryState {
            next_activation_id: last_activation_id + 1,
            next_alert_id: 1,
            ..Default::default()
        }
    }

    /// What changes whenever a listing of the alerts could read differently other than by
    /// time passing: the edits, and the next activation id (every firing takes one). The edits
    /// count from zero in each process, so stores pair this with when they opened.
    pub fn listing_version(&self) -> (u64, u64) {
        (self.edits, self.next_activation_id)
    }

    /// Adds an alert loaded from persistent storage.
    pub fn restore_alert(&mut self, entry: AlertEntry) {
        let id = entry.record.id;
        self.next_alert_id = self.next_alert_id.max(id + 1);
        if let Some(last) = entry.record.runtime.last_activation {
            self.next_activation_id = self.next_activation_id.max(last + 1);
        }
        let rule = &entry.record.rule;
        self.names
            .insert((rule.project().to_owned(), rule.name().to_owned()), id);
        self.matcher.insert(id, rule);
        self.alerts.insert(id, Box::new(entry));
        self.timers.schedule(id, Timestamp(i64::MIN));
    }

    /// Writes the whole state as JSON: what a store that persists the state whole (the embedded
    /// store's snapshots) writes, and [`MemoryState::read_image`] reads back. The matching index
    /// is not written: it is rebuilt from the rules.
    pub fn write_image(&self, out: impl std::io::Write) -> serde_json::Result<()> {
        let mut alerts: Vec<&AlertEntry> = self.alerts.values().map(|e| &**e).collect();
        alerts.sort_unstable_by_key(|e| e.record.id);
        let image = Image {
            next_alert_id: self.next_alert_id,
            next_activation_id: self.next_activation_id,
            alerts,
            idempotency: self
                .idempotency
                .iter()
                .map(|((p, k), t)| (&**p, &**k, *t))
                .collect(),
            silences: self.silences.clone(),
        };
        serde_json::to_writer(out, &image)
    }

    /// The state that [`MemoryState::write_image`] wrote.
    pub fn read_image(bytes: &[u8]) -> serde_json::Result<Self> {
        let image: Image<AlertEntry, Box<str>> = serde_json::from_slice(bytes)?;
        let mut state = MemoryState::new(image.next_activation_id.saturating_sub(1));
        for entry in image.alerts {
            state.restore_alert(entry);
        }
        // After the alerts: a deleted alert's id stays used.
        state.next_alert_id = state.next_alert_id.max(image.next_alert_id);
        for (project, key, expires) in image.idempotency {
            state.idempotency.insert((project, key), expires);
        }
        state.silences = image.silences;
        Ok(state)
    }

    /// Adds an idempotency key loaded from persistent storage.
    pub fn restore_idempotency(&mut self, project: &str, key: &str, expires: Timestamp) {
        self.idempotency
            .insert((project.into(), key.into()), expires);
    }

    /// The alert with this id.
    pub fn entry(&self, id: u64) -> Option<&AlertEntry> {
        self.alerts.get(&id).map(|e| &**e)
    }

    fn id_of(&self, project: &str, name: &str) -> Option<u64> {
        // A borrowed tuple key would need a custom Borrow impl; names are short.
        self.names
            .get(&(project.to_owned(), name.to_owned()))
            .copied()
    }

    /// The alert `project/name` with the window an event about `entity` counts in (see
    /// [`crate::store::AlertStore::alert_window`]).
    pub fn alert_window(
        &self,
        project: &str,
        name: &str,
        entity: &str,
    ) -> Option<(AlertRecord, crate::engine::Window)> {
        let entry = self.get(project, name)?;
        let key = entity_key(&entry.record.rule, entity);
        let window = entry.windows.get(key).cloned().unwrap_or_default();
        Some((entry.record.clone(), window))
    }

    /// The alert named `name` in `project`.
    pub fn get(&self, project: &str, name: &str) -> Option<&AlertEntry> {
        self.id_of(project, name)
            .and_then(|id| self.alerts.get(&id))
            .map(|e| &**e)
    }

    /// Number of alerts.
    pub fn len(&self) -> usize {
        self.alerts.len()
    }

    /// Whether there are no alerts.
    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty()
    }

    /// Alerts of `project` (or all) in (project, name) order, paged.
    pub fn list(&self, project: Option<&str>, offset: usize, limit: usize) -> Vec<AlertRecord> {
        let ids: Box<dyn Iterator<Item = &u64>> = match project {
            Some(p) => Box::new(
                self.names
                    .range((p.to_owned(), String::new())..)
                    .take_while(move |((proj, _), _)| proj == p)
                    .map(|(_, id)| id),
            ),
            None => Box::new(self.names.values()),
        };
        ids.skip(offset)
            .take(limit)
            .filter_map(|id| self.alerts.get(id))
            .map(|e| e.record.clone())
            .collect()
    }

    /// The state with a change set to record what operations change: what the operations of
    /// [`crate::ops`] run on.
    pub fn held<'s>(&'s mut self, changes: &'s mut Changes) -> Held<'s> {
        Held {
            state: self,
            changes,
        }
    }

    /// Creates or replaces an alert (see [`AlertStore::put_alert`]).
    pub fn put_alert(&mut self, put: PutAlert, changes: &mut Changes) -> Result<PutOutcome> {
        ops::ready(ops::change::put(&mut self.held(changes), put))?
    }

    /// Deletes an alert; whether it existed.
    pub fn delete(&mut self, project: &str, name: &str, changes: &mut Changes) -> bool {
        ops::ready(ops::change::delete(&mut self.held(changes), project, name))
            .and_then(|r| r)
            .unwrap_or(false)
    }

    /// Resets an alert; whether it exists.
    pub fn reset(
        &mut self,
        project: &str,
        name: &str,
        by: &str,
        now: Timestamp,
        changes: &mut Changes,
    ) -> bool {
        ops::ready(ops::change::reset(
            &mut self.held(changes),
            project,
            name,
            by,
            now,
        ))
        .and_then(|r| r)
        .unwrap_or(false)
    }

    /// Acknowledges an alert; whether it exists (an error when it is not active).
    pub fn acknowledge(
        &mut self,
        project: &str,
        name: &str,
        by: &str,
        now: Timestamp,
        changes: &mut Changes,
    ) -> Result<bool> {
        ops::ready(ops::change::acknowledge(
            &mut self.held(changes),
            project,
            name,
            by,
            now,
        ))?
    }

    /// What became of a notification's message (see [`ops::change::delivered`]).
    pub fn delivered(
        &mut self,
        project: &str,
        alert: &str,
        activation: u64,
        name: &str,
        sent: Option<Timestamp>,
        changes: &mut Changes,
    ) {
        let _ = ops::ready(ops::change::delivered(
            &mut self.held(changes),
            project,
            alert,
            activation,
            name,
            sent,
        ));
    }

    /// Runs events through [`ops::ingest`], one outcome each. The whole call is one atomic step
    /// for the caller holding the state, which is what makes concurrent threshold-crossing
    /// events fire exactly once.
    pub fn apply_events(
        &mut self,
        events: &[AcceptedEvent],
        ttl: Span,
        changes: &mut Changes,
    ) -> Vec<Result<EventOutcome>> {
        match ops::ready(ops::ingest::ingest(&mut self.held(changes), events, ttl)) {
            Ok(outcomes) => outcomes,
            Err(e) => events.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// [`MemoryState::apply_events`] for one event (an in-memory intake does not fail).
    pub fn apply_event(
        &mut self,
        ev: &AcceptedEvent,
        ttl: Span,
        changes: &mut Changes,
    ) -> EventOutcome {
        self.apply_events(std::slice::from_ref(ev), ttl, changes)
            .pop()
            .and_then(Result::ok)
            .unwrap_or_default()
    }

    /// Keeps a silence (see [`SilenceStore::put_silence`]).
    pub fn put_silence(&mut self, silence: Silence, now: Timestamp, retention: Span) {
        self.silences.put(silence, now, retention);
        self.edits += 1;
    }

    /// The silences kept.
    pub fn silences(&self) -> &Silences {
        &self.silences
    }

    /// What time passing did by `now` (see [`ops::tick`]).
    pub fn tick(&mut self, now: Timestamp, changes: &mut Changes) -> crate::engine::Ticked {
        let ticked = ops::ready(ops::tick::tick(&mut self.held(changes), now))
            .and_then(|r| r)
            .unwrap_or_default();
        self.edits += (ticked.closed + ticked.fired.len()) as u64;
        ticked
    }

    /// Whether a tick at `now` has anything to do: a store that logs its operations logs a
    /// tick only then. Looks only at the alerts whose time has come; those that are not due
    /// after all are queued again at their next time.
    pub fn due(&mut self, now: Timestamp) -> bool {
        while let Some(id) = self.timers.pop_due(now) {
            let Some(e) = self.alerts.get(&id) else {
                continue;
            };
            let (rule, runtime, windows) = (&e.record.rule, &e.record.runtime, &e.windows);
            if intake::due(rule, runtime, windows, now) {
                // Still due: the tick takes it.
                self.timers.schedule(id, Timestamp(i64::MIN));
                return true;
            }
            if let Some(at) = intake::next_due(rule, runtime, windows) {
                self.timers.schedule(id, at);
            }
        }
        false
    }

    /// Forgets idempotency keys that expired by `now`; returns how many.
    pub fn prune_idempotency(&mut self, now: Timestamp) -> usize {
        let before = self.idempotency.len();
        self.idempotency.retain(|_, expires| *expires > now);
        before - self.idempotency.len()
    }
}

/// A [`MemoryState`] as written: borrowed to write, owned to read.
#[derive(Serialize, Deserialize)]
struct Image<A, K> {
    next_alert_id: u64,
    next_activation_id: u64,
    alerts: Vec<A>,
    idempotency: Vec<(K, K, Timestamp)>,
    /// Absent in images written before silences.
    #[serde(default, skip_serializing_if = "Silences::is_empty")]
    silences: Silences,
}

/// A [`MemoryState`] with the change set its operations record into: the units of
/// [`crate::store::units`], in place. Loading borrows the state, evaluation changes it, and a
/// commit never conflicts (the caller holds the state: a lock, or the embedded store's writer).
pub struct Held<'s> {
    state: &'s mut MemoryState,
    changes: &'s mut Changes,
}

/// The alerts of a [`MemoryState`] as the intake matches against them.
pub struct MatchedAlerts<'a> {
    matcher: &'a Matcher,
    alerts: &'a mut FxHashMap<u64, Box<AlertEntry>>,
    silences: &'a Silences,
}

impl IntakeState for MatchedAlerts<'_> {
    type Windows = Windows;

    fn each_match(
        &mut self,
        _event: usize,
        ev: &AcceptedEvent,
        mut f: impl FnMut(u64, AlertSlot<'_, Windows>),
    ) {
        let alerts = &mut *self.alerts;
        let silences = self.silences.of(&ev.project);
        self.matcher
            .for_each_match(&ev.project, &ev.kind, &ev.entity_id, |id| {
                if let Some(entry) = alerts.get_mut(&id) {
                    let slot = AlertSlot {
                        rule: &entry.record.rule,
                        runtime: &mut entry.record.runtime,
                        windows: &mut entry.windows,
                        silences,
                    };
                    f(id, slot);
                }
            });
    }
}

/// One round on a [`MemoryState`], in place: final ids, nothing to reserve or lose.
pub struct MemoryRound<'r> {
    alerts: MatchedAlerts<'r>,
    timers: &'r mut Timers,
    next: &'r mut u64,
    ids: Ids,
    changes: &'r mut Changes,
    /// Where this round's runtimes and windows start in the change set.
    from: (usize, usize),
}

impl<'r> RoundUnit for MemoryRound<'r> {
    type State = MatchedAlerts<'r>;

    fn split(&mut self) -> (&mut MatchedAlerts<'r>, &mut Ids, &mut Changes) {
        (&mut self.alerts, &mut self.ids, &mut *self.changes)
    }

    async fn reserve(&mut self, _count: u64) -> Result<()> {
        Ok(())
    }

    async fn commit(&mut self, _effects: &[Effect]) -> Result<()> {
        *self.next = self.ids.next();
        schedule_changed(self.alerts.alerts, self.timers, self.changes, self.from);
        self.from = (self.changes.runtimes.len(), self.changes.windows.len());
        Ok(())
    }

    fn verdict(&self, _event: usize, _alert: u64) -> Verdict {
        Verdict::Done
    }

    fn event_verdict(&self, _event: usize) -> Option<Verdict> {
        None
    }

    fn lost(&self) -> bool {
        false
    }

    async fn reload(&mut self) -> Result<()> {
        Ok(())
    }
}

impl IntakeUnits for Held<'_> {
    type Round<'r>
        = MemoryRound<'r>
    where
        Self: 'r;

    const BACKEND: Backend = Backend::Memory;

    async fn begin(&mut self) -> Result<()> {
        Ok(())
    }

    fn listens(&self, project: &str, kind: &EventKind) -> bool {
        self.state.matcher.listens(project, kind)
    }

    async fn recheck(&mut self) -> Result<bool> {
        Ok(false)
    }

    async fn claim(&mut self, claims: &[KeyClaim<'_>]) -> Vec<Result<Claim>> {
        claims
            .iter()
            .map(|c| {
                // A borrowed tuple key would need a custom Borrow impl; keys are short.
                let key = (Box::<str>::from(c.project), Box::<str>::from(c.key));
                match self.state.idempotency.get(&key) {
                    Some(expires) if *expires > c.at => Ok(Claim::Held),
                    _ => {
                        self.state.idempotency.insert(key, c.expires);
                        Ok(Claim::Claimed)
                    }
                }
            })
            .collect()
    }

    async fn load<'r>(
        &'r mut self,
        _events: &'r [(usize, &'r AcceptedEvent)],
        _claims: &'r [KeyClaim<'r>],
    ) -> Result<MemoryRound<'r>> {
        let MemoryState {
            matcher,
            alerts,
            silences,
            timers,
            next_activation_id,
            ..
        } = &mut *self.state;
        let from = (self.changes.runtimes.len(), self.changes.windows.len());
        Ok(MemoryRound {
            ids: Ids::from(*next_activation_id),
            alerts: MatchedAlerts {
                matcher,
                alerts,
                silences,
            },
            timers,
            next: next_activation_id,
            changes: &mut *self.changes,
            from,
        })
    }

    async fn record(
        &mut self,
        events: &[AcceptedEvent],
        _outcomes: &[Result<EventOutcome>],
    ) -> Vec<Option<Error>> {
        vec![None; events.len()]
    }
}

impl AlertRows for Held<'_> {
    const BACKEND: Backend = Backend::Memory;

    async fn read(&mut self, project: &str, name: &str) -> Result<Option<AlertRow>> {
        Ok(self.state.get(project, name).map(|e| AlertRow {
            record: e.record.clone(),
            version: 0,
            generation: 0,
            arm_due: None,
        }))
    }

    fn count(&self) -> Option<usize> {
        Some(self.state.alerts.len())
    }

    async fn next_alert_id(&mut self) -> Result<u64> {
        let id = self.state.next_alert_id;
        self.state.next_alert_id += 1;
        Ok(id)
    }

    /// In place; the timer queue looks at the alert at the next tick (a new cooldown or
    /// absence deadline is found then).
    async fn write(&mut self, write: AlertWrite) -> Result<Written> {
        let AlertWrite {
            row,
            new_windows,
            closed,
            noted,
            config_changed,
            ..
        } = write;
        let state = &mut *self.state;
        let id = row.record.id;
        let rule = row.record.rule.clone();
        match state.alerts.get_mut(&id) {
            None => {
                state
                    .names
                    .insert((rule.project().to_owned(), rule.name().to_owned()), id);
                state.alerts.insert(
                    id,
                    Box::new(AlertEntry {
                        windows: Windows::for_rule(&rule),
                        record: row.record,
                    }),
                );
                state.matcher.insert(id, &rule);
            }
            Some(entry) => {
                if config_changed {
                    state.matcher.remove(id, &entry.record.rule);
                    state.matcher.insert(id, &rule);
                }
                if new_windows {
                    entry.windows = Windows::for_rule(&rule);
                    self.changes.windows.push(WindowChange::Clear { alert: id });
                }
                entry.record = row.record;
            }
        }
        self.changes.closed.extend(closed);
        self.changes.noted.extend(noted);
        if config_changed {
            self.changes.rules.push(id);
        }
        self.changes.runtimes.push(id);
        state.edits += 1;
        state.timers.schedule(id, Timestamp(i64::MIN));
        Ok(Written::Done)
    }

    async fn delete(&mut self, project: &str, name: &str) -> Result<bool> {
        let state = &mut *self.state;
        let Some(id) = state.names.remove(&(project.to_owned(), name.to_owned())) else {
            return Ok(false);
        };
        if let Some(entry) = state.alerts.remove(&id) {
            state.matcher.remove(id, &entry.record.rule);
        }
        self.changes.removed.push(id);
        state.edits += 1;
        Ok(true)
    }
}

/// One alert a tick settles, in place.
pub struct MemoryDue<'d> {
    alert: u64,
    entry: &'d mut AlertEntry,
    silences: &'d [Silence],
    candidates: Vec<(String, Option<Timestamp>)>,
    timers: &'d mut Timers,
    next: &'d mut u64,
    ids: Ids,
    changes: &'d mut Changes,
}

impl DueUnit for MemoryDue<'_> {
    fn max_fired(&self) -> usize {
        usize::MAX
    }

    fn split(&mut self) -> (DueState<'_>, &mut Ids, &mut Changes) {
        let record = &mut self.entry.record;
        (
            DueState {
                alert: self.alert,
                rule: &record.rule,
                runtime: &mut record.runtime,
                candidates: &self.candidates,
                silences: self.silences,
            },
            &mut self.ids,
            &mut *self.changes,
        )
    }

    async fn reserve(&mut self, _count: u64) -> Result<()> {
        Ok(())
    }

    /// Queues the alert again at its next time.
    async fn commit(&mut self) -> Result<bool> {
        *self.next = self.ids.next();
        let record = &self.entry.record;
        if let Some(at) = intake::next_due(&record.rule, &record.runtime, &self.entry.windows) {
            self.timers.schedule(self.alert, at);
        }
        Ok(true)
    }

    async fn reload(&mut self) -> Result<()> {
        Ok(())
    }
}

impl TickUnits for Held<'_> {
    type Due<'d>
        = MemoryDue<'d>
    where
        Self: 'd;

    const BACKEND: Backend = Backend::Memory;

    /// The alerts whose time has come (see `timers`), in id order (a replay of the log meets
    /// them in the same order, whatever the queue held); those not due after all are queued
    /// again at their next time.
    async fn due(&mut self, now: Timestamp) -> Result<Vec<u64>> {
        let state = &mut *self.state;
        let mut ids = Vec::new();
        while let Some(id) = state.timers.pop_due(now) {
            ids.push(id);
        }
        ids.sort_unstable();
        ids.retain(|&id| {
            let Some(e) = state.alerts.get(&id) else {
                return false;
            };
            let (rule, runtime, windows) = (&e.record.rule, &e.record.runtime, &e.windows);
            if intake::due(rule, runtime, windows, now) {
                return true;
            }
            if let Some(at) = intake::next_due(rule, runtime, windows) {
                state.timers.schedule(id, at);
            }
            false
        });
        Ok(ids)
    }

    async fn load_due(&mut self, alert: u64, _now: Timestamp) -> Result<Option<MemoryDue<'_>>> {
        let MemoryState {
            alerts,
            silences,
            timers,
            next_activation_id,
            ..
        } = &mut *self.state;
        let Some(entry) = alerts.get_mut(&alert) else {
            return Ok(None);
        };
        let rule = &entry.record.rule;
        let candidates = if rule.absence.is_some() {
            absence::watched(rule, &entry.windows)
                .map(|(e, last)| (e.to_owned(), last))
                .collect()
        } else {
            Vec::new()
        };
        let silences = silences.of(rule.project());
        Ok(Some(MemoryDue {
            alert,
            silences,
            candidates,
            ids: Ids::from(*next_activation_id),
            next: next_activation_id,
            timers,
            entry,
            changes: &mut *self.changes,
        }))
    }
}

/// Lowers the due times of the alerts a change set touched from `from` on (its runtimes and
/// windows before then were scheduled already): a new cooldown's end, an absence window's new
/// deadline. Cheap: each is one alert's own value, never a scan.
fn schedule_changed(
    alerts: &FxHashMap<u64, Box<AlertEntry>>,
    timers: &mut Timers,
    changes: &Changes,
    from: (usize, usize),
) {
    for &id in changes.runtimes.get(from.0..).unwrap_or_default() {
        let Some(e) = alerts.get(&id) else {
            continue;
        };
        let runtime = &e.record.runtime;
        if let Some(until) = runtime
            .cooldown_until
            .filter(|_| runtime.state == crate::model::AlertState::Active)
        {
            timers.schedule(id, until);
        }
    }
    for w in changes.windows.get(from.1..).unwrap_or_default() {
        let WindowChange::Put { alert, entity } = w else {
            continue;
        };
        let Some(e) = alerts.get(alert) else {
            continue;
        };
        let rule = &e.record.rule;
        if rule.absence.is_none() {
            continue;
        }
        let Some(entity) = entity
            .as_deref()
            .or_else(|| absence::awaited(rule).first().map(String::as_str))
        else {
            continue;
        };
        let last = e
            .windows
            .get(entity_key(rule, entity))
            .and_then(|w| w.last());
        if let Some(deadline) = absence::deadline(rule, &e.record.runtime, entity, last) {
            timers.schedule(*alert, deadline);
        }
    }
}

/// The key of `entity`'s window in an alert's windows (None: the shared one).
fn entity_key<'e>(rule: &crate::compiled::Rule, entity: &'e str) -> Option<&'e str> {
    rule.per_entity.then_some(entity)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state is only mutated by code that does not panic part-way; a poisoned lock still
    // guards consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A store that keeps everything in memory: for tests, `tocsin test` and benchmarks. Loses
/// everything on exit, by design.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// When it was made: part of its listing version, which starts over with the store.
    opened: Timestamp,
    inner: Mutex<(MemoryState, BTreeMap<u64, Activation>)>,
    audit: Mutex<Vec<AuditEntry>>,
    tokens: Mutex<BTreeMap<String, TokenRecord>>,
    /// Every event handed to it, in order (its history).
    events: Mutex<Vec<AcceptedEvent>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore {
            opened: Timestamp::now(),
            inner: Mutex::new((MemoryState::new(0), BTreeMap::new())),
            audit: Mutex::default(),
            tokens: Mutex::default(),
            events: Mutex::default(),
        }
    }

    fn apply<R>(&self, f: impl FnOnce(&mut MemoryState, &mut Changes) -> R) -> R {
        let mut guard = lock(&self.inner);
        let (state, activations) = &mut *guard;
        let mut changes = Changes::default();
        let r = f(state, &mut changes);
        for a in changes.activations {
            activations.insert(a.id, Arc::unwrap_or_clone(a));
        }
        for c in changes.closed {
            if let Some(a) = activations.get_mut(&c.activation) {
                a.close(c.at, &c.why, &c.resolved);
            }
        }
        for n in changes.noted {
            if let Some(a) = activations.get_mut(&n.activation) {
                a.note_acknowledgement(&n.deliveries, n.at);
            }
        }
        r
    }
}

#[async_trait]
impl AlertStore for MemoryStore {
    async fn put_alert(&self, put: PutAlert) -> Result<PutOutcome> {
        self.apply(|s, c| s.put_alert(put, c))
    }
    async fn get_alert(&self, project: &str, name: &str) -> Result<Option<AlertRecord>> {
        Ok(lock(&self.inner)
            .0
            .get(project, name)
            .map(|e| e.record.clone()))
    }
    async fn alert_window(
        &self,
        project: &str,
        name: &str,
        entity: &str,
    ) -> Result<Option<(AlertRecord, crate::engine::Window)>> {
        Ok(lock(&self.inner).0.alert_window(project, name, entity))
    }
    async fn list_alerts(
        &self,
        project: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<AlertRecord>> {
        Ok(lock(&self.inner).0.list(project, offset, limit))
    }
    async fn alerts_version(&self) -> Result<String> {
        let (edits, next) = lock(&self.inner).0.listing_version();
        Ok(format!("{:x}-{edits}-{next}", self.opened.0))
    }
    async fn delete_alert(&self, project: &str, name: &str) -> Result<bool> {
        Ok(self.apply(|s, c| s.delete(project, name, c)))
    }
    async fn reset_alert(
        &self,
        project: &str,
        name: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<bool> {
        Ok(self.apply(|s, c| s.reset(project, name, by, now, c)))
    }
    async fn acknowledge_alert(
        &self,
        project: &str,
        name: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<bool> {
        self.apply(|s, c| s.acknowledge(project, name, by, now, c))
    }
    async fn alert_count(&self) -> Result<usize> {
        Ok(lock(&self.inner).0.len())
    }
    async fn delivered(
        &self,
        project: &str,
        alert: &str,
        activation: u64,
        name: &str,
        sent: Option<Timestamp>,
    ) -> Result<()> {
        self.apply(|s, c| s.delivered(project, alert, activation, name, sent, c));
        Ok(())
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn apply_event(&self, event: &AcceptedEvent, ttl: Span) -> Result<EventOutcome> {
        lock(&self.events).push(event.clone());
        Ok(self.apply(|s, c| s.apply_event(event, ttl, c)))
    }

    async fn apply_events(&self, events: &[AcceptedEvent], ttl: Span) -> Vec<Result<EventOutcome>> {
        lock(&self.events).extend_from_slice(events);
        self.apply(|s, c| s.apply_events(events, ttl, c))
    }

    /// The cursor is the event's place in the list, counted from 1.
    async fn recorded_events(&self, query: &EventQuery) -> Result<Vec<Recorded>> {
        let from = match &query.after {
            None => 0,
            Some(c) => c
                .parse::<usize>()
                .map_err(|_| Error::BadRequest(format!("not a cursor of this store: `{c}`")))?,
        };
        Ok(lock(&self.events)
            .iter()
            .enumerate()
            .skip(from)
            .filter(|(_, e)| query.matches(e))
            .take(query.page())
            .map(|(i, e)| Recorded {
                cursor: (i + 1).to_string(),
                event: e.clone(),
            })
            .collect())
    }
    async fn tick(&self, now: Timestamp) -> Result<crate::engine::Ticked> {
        Ok(self.apply(|s, c| s.tick(now, c)))
    }
}

#[async_trait]
impl ActivationStore for MemoryStore {
    async fn activations(&self, query: &ActivationQuery) -> Result<Vec<Activation>> {
        let guard = lock(&self.inner);
        Ok(guard
            .1
            .values()
            .rev()
            .filter(|a| query.matches(a))
            .skip(query.offset)
            .take(query.limit)
            .cloned()
            .collect())
    }
    async fn activation(&self, project: &str, id: u64) -> Result<Option<Activation>> {
        Ok(lock(&self.inner)
            .1
            .get(&id)
            .filter(|a| a.project == project)
            .cloned())
    }
    async fn record_delivery(&self, id: u64, delivery: Delivery) -> Result<()> {
        if let Some(a) = lock(&self.inner).1.get_mut(&id) {
            a.record(delivery);
        }
        Ok(())
    }
    async fn pending_deliveries(&self, limit: usize) -> Result<Vec<Activation>> {
        Ok(lock(&self.inner)
            .1
            .values()
            .filter(|a| a.is_pending())
            .take(limit)
            .cloned()
            .collect())
    }
    async fn prune_activations(&self, before: Timestamp) -> Result<usize> {
        let mut guard = lock(&self.inner);
        let n = guard.1.len();
        guard.1.retain(|_, a| a.activation_time >= before);
        Ok(n - guard.1.len())
    }
}

#[async_trait]
impl SilenceStore for MemoryStore {
    async fn put_silence(&self, silence: Silence, now: Timestamp, retention: Span) -> Result<()> {
        lock(&self.inner).0.put_silence(silence, now, retention);
        Ok(())
    }
    async fn silence(&self, project: &str, id: &str) -> Result<Option<Silence>> {
        Ok(lock(&self.inner).0.silences.get(project, id).cloned())
    }
    async fn silences(&self, project: Option<&str>) -> Result<Vec<Silence>> {
        Ok(lock(&self.inner).0.silences.list(project))
    }
}

#[async_trait]
impl AuditStore for MemoryStore {
    async fn record_audit(&self, entry: AuditEntry) -> Result<()> {
        lock(&self.audit).push(entry);
        Ok(())
    }

    async fn audit_log(&self, project: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>> {
        Ok(lock(&self.audit)
            .iter()
            .rev()
            .filter(|e| project.is_none_or(|p| e.project == p))
            .take(limit)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn put_token(&self, record: TokenRecord) -> Result<()> {
        lock(&self.tokens).insert(record.id.clone(), record);
        Ok(())
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>> {
        Ok(lock(&self.tokens).get(id).cloned())
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        Ok(lock(&self.tokens).values().cloned().collect())
    }

    async fn delete_token(&self, id: &str) -> Result<bool> {
        Ok(lock(&self.tokens).remove(id).is_some())
    }
}
