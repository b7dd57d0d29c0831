//! The stateful logic of a store, on plain in-memory data: alert entries, their windows, the
//! matching index and idempotency keys. [`MemoryStore`] is it behind a lock; the embedded store
//! is it behind a lock plus a write-through of the [`Changes`] each operation reports, so that
//! both behave identically by construction.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::{
    ActivationQuery, ActivationStore, AlertRecord, AlertStore, EventOutcome, EventStore, Fired,
    PutAlert, PutOutcome,
};
use crate::engine::{self, Closed, Matcher, Runtime, Window};
use crate::error::{Error, Result};
use crate::model::{AcceptedEvent, Activation, Delivery, EventKind, Span, Timestamp};
use crate::rule::{Rule, keep_referenced_secrets};

/// An alert's windows: one for all entities (MLRun's behaviour), or one per entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Windows {
    Shared(Window),
    PerEntity(FxHashMap<Box<str>, Window>),
}

impl Windows {
    fn for_rule(rule: &Rule) -> Self {
        if rule.per_entity {
            Windows::PerEntity(FxHashMap::default())
        } else {
            Windows::Shared(Window::default())
        }
    }

    /// The window an event about `entity` counts in.
    fn window_mut(&mut self, entity: &str) -> &mut Window {
        match self {
            Windows::Shared(w) => w,
            Windows::PerEntity(m) => m.entry(entity.into()).or_default(),
        }
    }

    /// The window of `entity` (None: the shared one), for persistence.
    pub fn get(&self, entity: Option<&str>) -> Option<&Window> {
        match (self, entity) {
            (Windows::Shared(w), None) => Some(w),
            (Windows::PerEntity(m), Some(e)) => m.get(e),
            _ => None,
        }
    }

    /// Puts back a persisted window.
    pub fn restore(&mut self, entity: Option<&str>, window: Window) {
        match (self, entity) {
            (Windows::Shared(w), None) => *w = window,
            (Windows::PerEntity(m), Some(e)) => {
                m.insert(e.into(), window);
            }
            _ => {}
        }
    }
}

/// An alert with its windows.
#[derive(Debug, Clone)]
pub struct AlertEntry {
    pub record: AlertRecord,
    pub windows: Windows,
}

/// A change to persisted windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowChange {
    /// The window of this alert (for this entity, or the shared one) changed: write it.
    Put {
        alert: u64,
        entity: Option<Box<str>>,
    },
    /// Every window of this alert is gone.
    Clear { alert: u64 },
}

/// What an operation changed, for a store that persists: the embedded store writes exactly
/// these in one atomic batch before the operation's answer is released.
#[derive(Debug, Default)]
pub struct Changes {
    /// Alerts whose config (rule, dates) changed.
    pub rules: Vec<u64>,
    /// Alerts whose runtime state changed.
    pub runtimes: Vec<u64>,
    /// Alerts deleted (with their windows).
    pub removed: Vec<u64>,
    pub windows: Vec<WindowChange>,
    /// New activations.
    pub activations: Vec<Activation>,
    /// Activations that a reset or a cooldown's end closed.
    pub closed: Vec<Closed>,
    /// Idempotency keys claimed: (project, key, expiry).
    pub idempotency: Vec<(String, String, Timestamp)>,
    /// Idempotency keys expired: (project, key).
    pub idempotency_removed: Vec<(String, String)>,
    /// Delivery outcomes to record on activations.
    pub deliveries: Vec<(u64, Delivery)>,
    /// Activations deleted by retention: (id, project).
    pub activations_removed: Vec<(u64, String)>,
}

/// The in-memory state of alerts. Not thread-safe by itself: stores hold it behind a lock.
#[derive(Debug, Default)]
pub struct MemoryState {
    next_alert_id: u64,
    next_activation_id: u64,
    alerts: FxHashMap<u64, AlertEntry>,
    names: BTreeMap<(String, String), u64>,
    matcher: Matcher,
    idempotency: FxHashMap<(Box<str>, Box<str>), Timestamp>,
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
        self.alerts.insert(id, entry);
    }

    /// Adds an idempotency key loaded from persistent storage.
    pub fn restore_idempotency(&mut self, project: &str, key: &str, expires: Timestamp) {
        self.idempotency
            .insert((project.into(), key.into()), expires);
    }

    /// The alert with this id.
    pub fn entry(&self, id: u64) -> Option<&AlertEntry> {
        self.alerts.get(&id)
    }

    fn id_of(&self, project: &str, name: &str) -> Option<u64> {
        // A borrowed tuple key would need a custom Borrow impl; names are short.
        self.names
            .get(&(project.to_owned(), name.to_owned()))
            .copied()
    }

    /// The alert named `name` in `project`.
    pub fn get(&self, project: &str, name: &str) -> Option<&AlertEntry> {
        self.id_of(project, name)
            .and_then(|id| self.alerts.get(&id))
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

    /// Creates or replaces an alert (see [`AlertStore::put_alert`]).
    pub fn put_alert(&mut self, put: PutAlert, changes: &mut Changes) -> Result<PutOutcome> {
        let PutAlert {
            mut rule,
            force_reset,
            max_allowed,
            now,
        } = put;
        let existing = self.id_of(rule.project(), rule.name());
        let Some(id) = existing else {
            if self.alerts.len() >= max_allowed {
                return Err(Error::PreconditionFailed(format!(
                    "Allowed number of alerts exceeded: {} alerts exist (the limit is {max_allowed})",
                    self.alerts.len()
                )));
            }
            keep_referenced_secrets(&mut rule, None)?;
            let id = self.next_alert_id;
            self.next_alert_id += 1;
            let rule = Arc::new(rule);
            let record = AlertRecord {
                id,
                rule: rule.clone(),
                runtime: Runtime::default(),
                created: now,
                updated: now,
            };
            let entry = AlertEntry {
                windows: Windows::for_rule(&rule),
                record: record.clone(),
            };
            self.names
                .insert((rule.project().to_owned(), rule.name().to_owned()), id);
            self.matcher.insert(id, &rule);
            self.alerts.insert(id, entry);
            changes.rules.push(id);
            changes.runtimes.push(id);
            return Ok(PutOutcome {
                alert: record,
                created: true,
                reset: false,
            });
        };
        let entry = self
            .alerts
            .get_mut(&id)
            .ok_or_else(|| Error::Store(format!("alert {id} is indexed but missing")))?;
        let old = entry.record.rule.clone();
        keep_referenced_secrets(&mut rule, Some(&old))?;
        let reset = entry
            .record
            .runtime
            .update_resets(&old, &rule, force_reset, now);
        let rule = Arc::new(rule);
        if reset && let Some(closed) = entry.record.runtime.reset(now) {
            changes.closed.push(closed);
        }
        if reset || old.per_entity != rule.per_entity {
            entry.windows = Windows::for_rule(&rule);
            changes.windows.push(WindowChange::Clear { alert: id });
        }
        self.matcher.remove(id, &old);
        self.matcher.insert(id, &rule);
        entry.record.rule = rule;
        entry.record.updated = now;
        changes.rules.push(id);
        changes.runtimes.push(id);
        Ok(PutOutcome {
            alert: entry.record.clone(),
            created: false,
            reset,
        })
    }

    /// Deletes an alert; whether it existed.
    pub fn delete(&mut self, project: &str, name: &str, changes: &mut Changes) -> bool {
        let Some(id) = self.names.remove(&(project.to_owned(), name.to_owned())) else {
            return false;
        };
        if let Some(entry) = self.alerts.remove(&id) {
            self.matcher.remove(id, &entry.record.rule);
        }
        changes.removed.push(id);
        true
    }

    /// Resets an alert; whether it exists.
    pub fn reset(
        &mut self,
        project: &str,
        name: &str,
        now: Timestamp,
        changes: &mut Changes,
    ) -> bool {
        let Some(id) = self.id_of(project, name) else {
            return false;
        };
        let Some(entry) = self.alerts.get_mut(&id) else {
            return false;
        };
        if let Some(closed) = entry.record.runtime.reset(now) {
            changes.closed.push(closed);
        }
        entry.windows = Windows::for_rule(&entry.record.rule);
        changes.windows.push(WindowChange::Clear { alert: id });
        changes.runtimes.push(id);
        true
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
        let Some(entry) = self
            .id_of(project, name)
            .and_then(|id| self.alerts.get_mut(&id))
        else {
            return Ok(false);
        };
        entry.record.runtime.acknowledge(by, now)?;
        changes.runtimes.push(entry.record.id);
        Ok(true)
    }

    /// Counts an event in the windows of the alerts it matches and fires those whose criteria
    /// are met. The whole call is one atomic step for the caller holding the lock, which is
    /// what makes concurrent threshold-crossing events fire exactly once.
    pub fn apply_event(
        &mut self,
        ev: &AcceptedEvent,
        ttl: Span,
        changes: &mut Changes,
    ) -> EventOutcome {
        let mut outcome = EventOutcome::default();
        // A custom kind nothing listens to is most likely a typo: refuse it rather than count
        // it nowhere.
        if matches!(ev.kind, EventKind::Custom(_)) && !self.matcher.listens(&ev.project, &ev.kind) {
            outcome.unknown_kind = true;
            return outcome;
        }
        if let Some(key) = &ev.idempotency_key {
            let k = (
                Box::<str>::from(ev.project.as_str()),
                Box::<str>::from(key.as_str()),
            );
            if self
                .idempotency
                .get(&k)
                .is_some_and(|expires| *expires > ev.at)
            {
                outcome.duplicate = true;
                return outcome;
            }
            let expires = ev.at.plus(ttl);
            self.idempotency.insert(k, expires);
            changes
                .idempotency
                .push((ev.project.clone(), key.clone(), expires));
        }
        let mut emitted = Vec::new();
        self.count_event(ev, changes, &mut outcome, &mut emitted);
        while let Some(calculated) = emitted.pop() {
            self.count_event(&calculated, changes, &mut outcome, &mut emitted);
        }
        outcome
    }

    /// Counts one event (posted, or emitted by a calculated event) in the windows of the alerts
    /// it matches; fires those whose criteria are met; queues the events they emit.
    fn count_event(
        &mut self,
        ev: &AcceptedEvent,
        changes: &mut Changes,
        outcome: &mut EventOutcome,
        emitted: &mut Vec<AcceptedEvent>,
    ) {
        let Self {
            matcher,
            alerts,
            next_activation_id,
            ..
        } = self;
        matcher.for_each_match(&ev.project, &ev.kind, &ev.entity_id, |id| {
            let Some(entry) = alerts.get_mut(&id) else {
                return;
            };
            let record = &mut entry.record;
            let rule = &record.rule;
            let Some(passes) = engine::concerns(rule, ev) else {
                return;
            };
            let (counts, closed) = record.runtime.admit(ev.at);
            if let Some(closed) = closed {
                changes.closed.push(closed);
                changes.runtimes.push(id);
            }
            if !counts {
                return;
            }
            outcome.counted += 1;
            let window = entry.windows.window_mut(&ev.entity_id);
            let met = engine::count_in_window(rule, window, ev, passes);
            let entity = rule
                .per_entity
                .then(|| Box::<str>::from(ev.entity_id.as_str()));
            changes
                .windows
                .push(WindowChange::Put { alert: id, entity });
            let Some(in_window) = met else {
                return;
            };
            let activation_id = *next_activation_id;
            *next_activation_id += 1;
            let (activation, calculated) =
                engine::fire(rule, &mut record.runtime, ev, activation_id, in_window);
            changes.runtimes.push(id);
            emitted.extend(calculated);
            changes.activations.push(activation.clone());
            outcome.fired.push(Fired {
                activation,
                rule: rule.clone(),
            });
        });
    }

    /// Forgets idempotency keys that expired by `now`; returns them for deletion from disk.
    pub fn prune_idempotency(&mut self, now: Timestamp) -> Vec<(Box<str>, Box<str>)> {
        let expired: Vec<_> = self
            .idempotency
            .iter()
            .filter(|(_, e)| **e <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &expired {
            self.idempotency.remove(k);
        }
        expired
    }
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
    inner: Mutex<(MemoryState, BTreeMap<u64, Activation>)>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore {
            inner: Mutex::new((MemoryState::new(0), BTreeMap::new())),
        }
    }

    fn apply<R>(&self, f: impl FnOnce(&mut MemoryState, &mut Changes) -> R) -> R {
        let mut guard = lock(&self.inner);
        let (state, activations) = &mut *guard;
        let mut changes = Changes::default();
        let r = f(state, &mut changes);
        for a in changes.activations {
            activations.insert(a.id, a);
        }
        for c in changes.closed {
            if let Some(a) = activations.get_mut(&c.activation) {
                a.reset_time.get_or_insert(c.at);
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
    async fn list_alerts(
        &self,
        project: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<AlertRecord>> {
        Ok(lock(&self.inner).0.list(project, offset, limit))
    }
    async fn delete_alert(&self, project: &str, name: &str) -> Result<bool> {
        Ok(self.apply(|s, c| s.delete(project, name, c)))
    }
    async fn reset_alert(&self, project: &str, name: &str, now: Timestamp) -> Result<bool> {
        Ok(self.apply(|s, c| s.reset(project, name, now, c)))
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
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn apply_event(&self, event: &AcceptedEvent, ttl: Span) -> Result<EventOutcome> {
        Ok(self.apply(|s, c| s.apply_event(event, ttl, c)))
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
