//! Event intake on DynamoDB: the units that [`tocsin_core::ops::ingest`] runs on. The sequence
//! (screen, claim, rounds, conflicts) is core's; what is here is DynamoDB's business:
//!
//! - **Loading** a round: the alerts its events match come from the instance's cache (configs
//!   and runtime with their versions), the windows from the cache of what this instance read or
//!   wrote (a window another instance wrote meanwhile costs a lost write and a read).
//! - **Receipts**: a queue message's events carry their place in the message, and each window
//!   says how many of the message's events for it are counted already (see `receipts`): a
//!   redelivery skips those, window by window.
//! - **Commits**: what one round changed is cut into parts that must be atomic, each written
//!   with one conditional write: a window alone with one `PutItem`; an alert whose state
//!   changed (a firing, a cooldown's end) with its windows, its runtime and its activations in
//!   one transaction; an event's idempotency key with every window it counted in, in the same
//!   transaction, so that a failed commit leaves no key held (and a key found held makes the
//!   event a duplicate). A part over the 100 items of a transaction asks core to evaluate the
//!   round in halves.
//! - **Own writes**: every write carries a token, kept by the item with those of its last
//!   writes (`lw`). A write that DynamoDB applied and then answered with an error (the SDK's
//!   retry then fails the condition) is recognised as this writer's and not evaluated again.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use rustc_hash::{FxHashMap, FxHashSet};
use tocsin_core::engine::intake::{AlertSlot, Effect, IntakeState, Step};
use tocsin_core::engine::{Changes, EventOutcome, Runtime, Window, WindowChange, absence};
use tocsin_core::error::{Backend, Error, Result};
use tocsin_core::model::{AcceptedEvent, EventKind, Silence, Timestamp};
use tocsin_core::ops::Ids;
use tocsin_core::store::units::{Claim, IntakeUnits, KeyClaim, RoundUnit, Verdict};

use super::DynamoStore;
use super::cache::{Cache, StoredAlert, Versioned, WindowKey, at_version};
use super::item::{
    Item, cancelled_conditions, is_conditional, key, n, s, sdk_err, ttl_secs, write_token,
    writers_after,
};
use super::receipts::{Receipts, message_hash};

/// How fresh the cache must be before a custom kind is refused as unknown: an alert created a
/// moment ago on another instance is found by reloading.
const UNKNOWN_KIND_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The items one transaction holds.
const MAX_ITEMS: usize = 100;

pub(super) fn build_err(e: impl std::fmt::Display) -> Error {
    Error::backend(
        Backend::DynamoDb,
        format!("cannot build a DynamoDB request: {e}"),
    )
}

/// An intake on one store instance: its cache, held for the whole intake.
pub(super) struct Session {
    pub store: DynamoStore,
    pub cache: tokio::sync::OwnedMutexGuard<Cache>,
}

impl IntakeUnits for Session {
    type Round<'r>
        = Round<'r>
    where
        Self: 'r;

    const BACKEND: Backend = Backend::DynamoDb;

    async fn begin(&mut self) -> Result<()> {
        let ttl = self.store.settings.config_ttl;
        self.store.refresh(&mut self.cache, ttl).await
    }

    fn listens(&self, project: &str, kind: &EventKind) -> bool {
        self.cache.matcher.listens(project, kind)
    }

    async fn recheck(&mut self) -> Result<bool> {
        if self.cache.age().is_some_and(|a| a < UNKNOWN_KIND_RECHECK) {
            return Ok(false);
        }
        self.cache.invalidate();
        let ttl = self.store.settings.config_ttl;
        self.store.refresh(&mut self.cache, ttl).await?;
        Ok(true)
    }

    async fn claim(&mut self, claims: &[KeyClaim<'_>]) -> Vec<Result<Claim>> {
        claims.iter().map(|_| Ok(Claim::AtCommit)).collect()
    }

    async fn load<'r>(
        &'r mut self,
        events: &'r [(usize, &'r AcceptedEvent)],
        claims: &'r [KeyClaim<'r>],
    ) -> Result<Round<'r>> {
        let work = Work::load(&self.cache, events);
        let claims = claims
            .iter()
            .filter_map(|c| {
                let j = events.iter().position(|(i, _)| *i == c.index)?;
                Some((j, *c))
            })
            .collect();
        Ok(Round {
            store: &self.store,
            cache: &mut self.cache,
            events,
            work,
            claims,
            ids: Ids::provisional(),
            changes: Changes::default(),
            parts: Vec::new(),
            lost: false,
            too_large: false,
        })
    }

    async fn record(
        &mut self,
        events: &[AcceptedEvent],
        outcomes: &[Result<EventOutcome>],
    ) -> Vec<Option<Error>> {
        self.store.keep_recorded(events, outcomes).await
    }
}

/// Where an event sits among the events of its queue message that go to one window: the
/// receipts count them in this order.
#[derive(Debug, Clone, Copy)]
struct Place {
    message: u64,
    ordinal: u32,
}

/// An alert of the round: as stored (what a rewind returns to), and as evaluated.
struct AlertWork {
    base: StoredAlert,
    runtime: Runtime,
    silences: Vec<Silence>,
}

/// A window of the round: as stored, as evaluated, and the round's events that go to it.
struct WindowWork {
    base: Versioned,
    window: Window,
    /// The round's events for this window, in order, with their place in their message.
    members: Vec<(usize, Option<Place>)>,
    /// Round events its receipts say were counted before.
    counted_before: FxHashSet<usize>,
    /// The receipts once the round's events are counted (aged by the redelivery horizon).
    receipts: Receipts,
}

/// The working state of a round: what the engine evaluates.
pub(super) struct Work {
    /// Per round event: the alerts it matches (in the matcher's order), each with the window
    /// it counts in.
    matches: Vec<Vec<(u64, WindowKey)>>,
    alerts: FxHashMap<u64, AlertWork>,
    windows: FxHashMap<WindowKey, WindowWork>,
    /// (event, alert) pairs committed: not evaluated again after a conflict elsewhere.
    done: FxHashSet<(usize, u64)>,
    /// Events found to be duplicates at commit (their key was held).
    dropped: FxHashSet<usize>,
    /// Events whose key a committed part claimed.
    claimed: FxHashSet<usize>,
}

impl IntakeState for Work {
    type Windows = Window;

    fn each_match(
        &mut self,
        event: usize,
        _ev: &AcceptedEvent,
        mut f: impl FnMut(u64, AlertSlot<'_, Window>),
    ) {
        let Work {
            matches,
            alerts,
            windows,
            done,
            dropped,
            ..
        } = self;
        if dropped.contains(&event) {
            return;
        }
        for (alert, key) in matches.get(event).map(Vec::as_slice).unwrap_or_default() {
            if done.contains(&(event, *alert)) {
                continue;
            }
            let (Some(a), Some(w)) = (alerts.get_mut(alert), windows.get_mut(key)) else {
                continue;
            };
            if w.counted_before.contains(&event) {
                continue;
            }
            f(
                *alert,
                AlertSlot {
                    rule: &a.base.rule,
                    runtime: &mut a.runtime,
                    windows: &mut w.window,
                    silences: &a.silences,
                },
            );
        }
    }
}

impl Work {
    /// The round's alerts and windows from the cache.
    fn load(cache: &Cache, events: &[(usize, &AcceptedEvent)]) -> Work {
        let mut work = Work {
            matches: Vec::with_capacity(events.len()),
            alerts: FxHashMap::default(),
            windows: FxHashMap::default(),
            done: FxHashSet::default(),
            dropped: FxHashSet::default(),
            claimed: FxHashSet::default(),
        };
        for (j, (_, ev)) in events.iter().enumerate() {
            let mut matched = Vec::new();
            cache
                .matcher
                .for_each_match(&ev.project, &ev.kind, &ev.entity_id, |id| {
                    if let Some(alert) = cache.alerts.get(&id) {
                        matched.push((id, window_key(alert, ev)));
                        work.alerts.entry(id).or_insert_with(|| AlertWork {
                            runtime: alert.runtime.clone(),
                            silences: cache.silences.of(alert.rule.project()).to_vec(),
                            base: alert.clone(),
                        });
                    }
                });
            for (_, k) in &matched {
                let w = work.windows.entry(k.clone()).or_insert_with(|| {
                    let base = cache.windows.get(k).cloned().unwrap_or_default();
                    WindowWork {
                        window: base.window.clone(),
                        base,
                        members: Vec::new(),
                        counted_before: FxHashSet::default(),
                        receipts: Receipts::default(),
                    }
                });
                w.members.push((j, None));
            }
            work.matches.push(matched);
        }
        let mut ordinals: HashMap<(WindowKey, u64), u32> = HashMap::new();
        for (k, w) in &mut work.windows {
            for (j, place) in &mut w.members {
                if let Some(message) = events[*j].1.message.as_deref().map(message_hash) {
                    let next = ordinals.entry((k.clone(), message)).or_insert(0);
                    *place = Some(Place {
                        message,
                        ordinal: *next,
                    });
                    *next += 1;
                }
            }
        }
        for w in work.windows.values_mut() {
            w.receipt();
        }
        work
    }

    /// Whether a window's receipts say round event `event` was counted before (its message is
    /// a redelivery).
    fn counted_before(&self, event: usize) -> bool {
        self.windows
            .values()
            .any(|w| w.counted_before.contains(&event))
    }

    /// Back to the state as stored (after the last commit), for an evaluation again.
    fn rewind(&mut self) {
        for a in self.alerts.values_mut() {
            a.runtime = a.base.runtime.clone();
        }
        for w in self.windows.values_mut() {
            w.window = w.base.window.clone();
        }
    }
}

impl WindowWork {
    /// Which members the stored receipts say were counted, and the receipts once the others
    /// are.
    fn receipt(&mut self) {
        let counted = self.base.receipts.index();
        let mut after = self.base.receipts.clone();
        let now = now_secs();
        self.counted_before.clear();
        for (j, place) in &self.members {
            if let Some(p) = place {
                if p.ordinal < counted.get(&p.message).copied().unwrap_or(0) {
                    self.counted_before.insert(*j);
                } else {
                    after.record(p.message, p.ordinal + 1, now);
                }
            }
        }
        self.receipts = after;
    }
}

/// The window an event about `ev`'s entity counts in for `alert`.
fn window_key(alert: &StoredAlert, ev: &AcceptedEvent) -> WindowKey {
    WindowKey {
        alert: alert.id,
        generation: alert.generation,
        entity: alert.rule.per_entity.then(|| ev.entity_id.as_str().into()),
    }
}

/// Seconds since the epoch by this machine's clock: receipts age by it, not by event time,
/// since a redelivery comes a visibility timeout after the delivery whatever the events say.
fn now_secs() -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// One atomic part of a round's commit.
#[derive(Default)]
struct Part {
    windows: Vec<WindowKey>,
    /// Alerts whose runtime the part writes.
    runtimes: Vec<u64>,
    /// Activations (places in the change set) the part puts.
    activations: Vec<usize>,
    /// Round events whose key the part claims.
    claims: Vec<usize>,
    /// What became of it.
    verdict: Option<Verdict>,
}

impl Part {
    fn items(&self) -> usize {
        self.windows.len() + self.runtimes.len() + self.activations.len() + self.claims.len()
    }
}

/// One round on DynamoDB.
pub(super) struct Round<'r> {
    store: &'r DynamoStore,
    cache: &'r mut Cache,
    events: &'r [(usize, &'r AcceptedEvent)],
    work: Work,
    /// The keys claimed in the commit, by round event.
    claims: Vec<(usize, KeyClaim<'r>)>,
    ids: Ids,
    changes: Changes,
    /// The last commit's parts.
    parts: Vec<Part>,
    lost: bool,
    too_large: bool,
}

impl RoundUnit for Round<'_> {
    type State = Work;

    fn split(&mut self) -> (&mut Work, &mut Ids, &mut Changes) {
        (&mut self.work, &mut self.ids, &mut self.changes)
    }

    async fn reserve(&mut self, count: u64) -> Result<()> {
        let last = self.store.next_ids("next_activation", count).await?;
        self.ids = Ids::from(last + 1 - count);
        self.work.rewind();
        self.changes = Changes::default();
        Ok(())
    }

    async fn commit(&mut self, effects: &[Effect]) -> Result<()> {
        self.lost = false;
        self.too_large = false;
        self.parts = self.cut(effects);
        // One item of 100 is kept for the history of keyed events (see `kept_with`).
        if self.events.len() > 1 && self.parts.iter().any(|p| p.items() >= MAX_ITEMS) {
            self.too_large = true;
            self.parts.clear();
            self.ids = Ids::provisional();
            self.work.rewind();
            self.changes = Changes::default();
            return Ok(());
        }
        let mut parts = std::mem::take(&mut self.parts);
        for part in &mut parts {
            let verdict = self.write(part).await?;
            if let Verdict::Done = verdict {
                self.settle(part, effects).await;
            }
            self.lost |= matches!(verdict, Verdict::Again);
            part.verdict = Some(verdict);
        }
        self.parts = parts;
        Ok(())
    }

    fn too_large(&self) -> bool {
        self.too_large
    }

    fn verdict(&self, event: usize, alert: u64) -> Verdict {
        let key = self.key_of(event, alert);
        self.parts
            .iter()
            .find(|p| {
                key.as_ref().is_some_and(|k| p.windows.contains(k))
                    || (p.windows.is_empty() && p.runtimes.contains(&alert))
            })
            .and_then(|p| p.verdict.clone())
            .unwrap_or(Verdict::Done)
    }

    fn event_verdict(&self, event: usize) -> Option<Verdict> {
        if self.work.counted_before(event) {
            return Some(Verdict::Redelivered);
        }
        if self.work.dropped.contains(&event) {
            return Some(Verdict::Duplicate);
        }
        match self
            .parts
            .iter()
            .find(|p| p.claims.contains(&event))
            .and_then(|p| p.verdict.clone())
        {
            Some(Verdict::Failed(e)) => Some(Verdict::Failed(e)),
            _ => None,
        }
    }

    fn lost(&self) -> bool {
        self.lost
    }

    /// Reads again the alerts and windows of the parts that were lost.
    async fn reload(&mut self) -> Result<()> {
        let mut alerts: Vec<u64> = Vec::new();
        let mut windows: Vec<WindowKey> = Vec::new();
        for p in &self.parts {
            if matches!(p.verdict, Some(Verdict::Again)) {
                alerts.extend(p.runtimes.iter().copied());
                alerts.extend(p.windows.iter().map(|k| k.alert));
                windows.extend(p.windows.iter().cloned());
            }
        }
        alerts.sort_unstable();
        alerts.dedup();
        for id in alerts {
            self.reload_alert(id, &windows).await?;
        }
        self.parts.clear();
        self.ids = Ids::provisional();
        self.work.rewind();
        self.changes = Changes::default();
        Ok(())
    }
}

impl Round<'_> {
    /// The window event `event` counts in for `alert`.
    fn key_of(&self, event: usize, alert: u64) -> Option<WindowKey> {
        self.work
            .matches
            .get(event)?
            .iter()
            .find(|(a, _)| *a == alert)
            .map(|(_, k)| k.clone())
    }

    /// Cuts what the evaluation changed into atomic parts: an alert whose runtime changed
    /// writes it with all its changed windows and its activations; an event's key goes with
    /// every window it counted in; any other window is a part of its own.
    fn cut(&self, effects: &[Effect]) -> Vec<Part> {
        let mut windows: Vec<WindowKey> = Vec::new();
        for w in &self.changes.windows {
            if let WindowChange::Put { alert, entity } = w
                && let Some(a) = self.work.alerts.get(alert)
            {
                let k = WindowKey {
                    alert: *alert,
                    generation: a.base.generation,
                    entity: entity.clone(),
                };
                if !windows.contains(&k) {
                    windows.push(k);
                }
            }
        }
        let mut runtimes: Vec<u64> = self.changes.runtimes.clone();
        runtimes.sort_unstable();
        runtimes.dedup();
        // Union-find over windows, runtimes and claims.
        let mut nodes: Vec<Node> = windows.iter().cloned().map(Node::Window).collect();
        nodes.extend(runtimes.iter().map(|a| Node::Runtime(*a)));
        let claimed: Vec<usize> = self
            .claims
            .iter()
            .map(|(j, _)| *j)
            // A redelivered message's events were claimed with their counts the first time.
            .filter(|j| {
                !self.work.dropped.contains(j)
                    && !self.work.claimed.contains(j)
                    && !self.work.counted_before(*j)
            })
            .collect();
        nodes.extend(claimed.iter().map(|j| Node::Claim(*j)));
        let mut parent: Vec<usize> = (0..nodes.len()).collect();
        let index = |node: &Node| nodes.iter().position(|n| n == node);
        for a in &runtimes {
            let Some(r) = index(&Node::Runtime(*a)) else {
                continue;
            };
            for (i, w) in windows.iter().enumerate() {
                if w.alert == *a {
                    union(&mut parent, r, i);
                }
            }
        }
        for j in &claimed {
            let Some(c) = index(&Node::Claim(*j)) else {
                continue;
            };
            for e in effects.iter().filter(|e| e.origin == *j) {
                if let Some(k) = self.key_of(e.origin, e.alert)
                    && let Some(w) = index(&Node::Window(k))
                {
                    union(&mut parent, c, w);
                }
            }
        }
        let mut parts: Vec<Part> = Vec::new();
        let mut root_part: HashMap<usize, usize> = HashMap::new();
        for (i, node) in nodes.iter().enumerate() {
            let root = find(&mut parent, i);
            let p = *root_part.entry(root).or_insert_with(|| {
                parts.push(Part::default());
                parts.len() - 1
            });
            match node {
                Node::Window(k) => parts[p].windows.push(k.clone()),
                Node::Runtime(a) => parts[p].runtimes.push(*a),
                Node::Claim(j) => parts[p].claims.push(*j),
            }
        }
        // Each activation goes with its alert's runtime.
        for e in effects {
            if let Step::Fires { activation, .. } = &e.step
                && let Some(p) = parts.iter_mut().find(|p| p.runtimes.contains(&e.alert))
            {
                p.activations.push(*activation);
            }
        }
        parts
    }

    /// Writes one part; what became of it.
    async fn write(&mut self, part: &Part) -> Result<Verdict> {
        let token = write_token();
        let kept = self.kept_with(part, token)?;
        let failure = match (part.windows.as_slice(), part.items()) {
            (_, 0) => None,
            ([k], 1) => self.put_window(k, token).await,
            ([], 1) if part.claims.len() == 1 && kept.is_empty() => {
                self.put_claim(part.claims[0], token).await
            }
            _ => {
                let mut items: Vec<TransactWriteItem> = Vec::with_capacity(part.items());
                for k in &part.windows {
                    items.push(self.window_put(k, token)?);
                }
                for a in &part.runtimes {
                    if let Some(work) = self.work.alerts.get(a) {
                        items.push(self.store.runtime_update(
                            &work.base,
                            &work.runtime,
                            false,
                            token,
                        )?);
                    }
                }
                for &i in &part.activations {
                    if let Some(a) = self.changes.activations.get(i) {
                        items.push(self.store.activation_put(a)?);
                    }
                }
                items.extend(kept);
                for j in &part.claims {
                    if let Some((_, c)) = self.claims.iter().find(|(cj, _)| cj == j) {
                        items.push(claim_put(self.store.table(), c, token)?);
                    }
                }
                self.transact(items).await
            }
        };
        match failure {
            None => Ok(Verdict::Done),
            Some(failed) => self.judge(part, token, failed).await,
        }
    }

    /// The history items of the part's keyed events off the queue, written in the same
    /// transaction as their claims and counts: what is counted is kept, and a client's retry
    /// (a duplicate) has nothing left to keep. Named by the write's token.
    fn kept_with(&self, part: &Part, token: u64) -> Result<Vec<TransactWriteItem>> {
        let loose: Vec<&AcceptedEvent> = part
            .claims
            .iter()
            .filter_map(|j| self.events.get(*j).map(|(_, ev)| *ev))
            .filter(|ev| ev.message.is_none())
            .collect();
        if loose.is_empty() {
            return Ok(Vec::new());
        }
        self.store
            .events_items(&loose, &format!("k{token:016x}"))?
            .into_iter()
            .map(|item| {
                let put = Put::builder()
                    .table_name(self.store.table())
                    .set_item(Some(item))
                    .build()
                    .map_err(build_err)?;
                Ok(TransactWriteItem::builder().put(put).build())
            })
            .collect()
    }

    /// One key alone (its event counted nowhere): a conditional `PutItem`.
    async fn put_claim(&self, event: usize, token: u64) -> Option<WriteFailure> {
        let (_, c) = self.claims.iter().find(|(j, _)| *j == event)?;
        let result = self
            .store
            .client
            .put_item()
            .table_name(self.store.table())
            .set_item(Some(idempotency_item(c.project, c.key, c.expires, token)))
            .condition_expression("attribute_not_exists(pk) OR #exp <= :at")
            .expression_attribute_names("#exp", "exp")
            .expression_attribute_values(":at", n(c.at.0))
            .send()
            .await;
        match result {
            Ok(_) => None,
            Err(e) if is_conditional(&e) => Some(WriteFailure::Conditions(vec![true])),
            Err(e) => Some(WriteFailure::Error(sdk_err("PutItem", e))),
        }
    }

    /// One window alone: a conditional `PutItem`. None when it was written.
    async fn put_window(&self, k: &WindowKey, token: u64) -> Option<WriteFailure> {
        let (item, condition, values) = match self.window_item(k, token) {
            Ok(parts) => parts,
            Err(e) => return Some(WriteFailure::Error(e)),
        };
        let result = self
            .store
            .client
            .put_item()
            .table_name(self.store.table())
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_values(values)
            .send()
            .await;
        match result {
            Ok(_) => None,
            Err(e) if is_conditional(&e) => Some(WriteFailure::Conditions(vec![true])),
            Err(e) => Some(WriteFailure::Error(sdk_err("PutItem", e))),
        }
    }

    /// A transaction. None when it was written.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Option<WriteFailure> {
        // Pieces of a part too large for one transaction: only a round of one event gets
        // here (core halves larger rounds); they are written one after the other.
        for chunk in items.chunks(MAX_ITEMS) {
            let result = self
                .store
                .client
                .transact_write_items()
                .set_transact_items(Some(chunk.to_vec()))
                .send()
                .await;
            match result {
                Ok(_) => {}
                Err(e) => {
                    return Some(match cancelled_conditions(&e) {
                        Some(reasons) => WriteFailure::Conditions(reasons),
                        None => WriteFailure::Error(sdk_err("TransactWriteItems", e)),
                    });
                }
            }
        }
        None
    }

    /// What a failed write of `part` means: this writer's own write applied after all (its
    /// token is on the items), a key found held, a concurrent writer first, or a failure.
    async fn judge(&mut self, part: &Part, token: u64, failed: WriteFailure) -> Result<Verdict> {
        match self.written_by(part, token).await {
            Ok(true) => return Ok(Verdict::Done),
            Ok(false) => {}
            Err(e) => {
                return Ok(Verdict::Failed(match failed {
                    WriteFailure::Error(original) => original,
                    WriteFailure::Conditions(_) => e,
                }));
            }
        }
        let reasons = match failed {
            WriteFailure::Error(e) => return Ok(Verdict::Failed(e)),
            WriteFailure::Conditions(reasons) => reasons,
        };
        // The claims are the part's last items.
        let first_claim = reasons.len().saturating_sub(part.claims.len());
        let mut held = false;
        for (j, failed) in part.claims.iter().zip(reasons.iter().skip(first_claim)) {
            if *failed {
                self.work.dropped.insert(*j);
                held = true;
            }
        }
        let others_failed = reasons.iter().take(first_claim).any(|f| *f);
        if held && !others_failed && part.items() == part.claims.len() {
            // Nothing but held keys: the part is settled (its events are duplicates).
            return Ok(Verdict::Done);
        }
        Ok(Verdict::Again)
    }

    /// Whether the items of `part` carry `token`: its write applied.
    async fn written_by(&self, part: &Part, token: u64) -> Result<bool> {
        if let Some(k) = part.windows.first() {
            return Ok(self.store.read_window(k).await?.writers.contains(&token));
        }
        if let Some(a) = part.runtimes.first().and_then(|a| self.work.alerts.get(a)) {
            let rule = &a.base.rule;
            let stored = self.store.read_alert(rule.project(), rule.name()).await?;
            return Ok(stored.is_some_and(|s| s.writers.contains(&token)));
        }
        if let Some((_, c)) = part
            .claims
            .first()
            .and_then(|j| self.claims.iter().find(|(cj, _)| cj == j))
        {
            return self.store.claim_token(c).await.map(|t| t == Some(token));
        }
        Ok(false)
    }

    /// After a part was written: its windows and runtimes are the new stored state (here and in
    /// the cache), its effects are done, its keys claimed, and the activations its alerts
    /// closed are stamped.
    async fn settle(&mut self, part: &Part, effects: &[Effect]) {
        let closed = self.closed_by(part);
        for k in &part.windows {
            if let Some(w) = self.work.windows.get_mut(k) {
                w.base = Versioned {
                    window: w.window.clone(),
                    receipts: w.receipts.clone(),
                    v: w.base.v + 1,
                    writers: Vec::new(),
                };
                self.cache.put_window(k.clone(), w.base.clone());
            }
        }
        for a in &part.runtimes {
            if let Some(w) = self.work.alerts.get_mut(a) {
                w.base.runtime = w.runtime.clone();
                w.base.v += 1;
                self.cache.put_alert(w.base.clone());
            }
        }
        for e in effects {
            let in_part = self
                .key_of(e.origin, e.alert)
                .is_some_and(|k| part.windows.contains(&k))
                || (part.windows.is_empty() && part.runtimes.contains(&e.alert));
            if in_part {
                self.work.done.insert((e.origin, e.alert));
            }
        }
        self.work.claimed.extend(part.claims.iter().copied());
        for c in closed {
            let id = c.activation;
            if let Err(e) = self.store.close_activation(c).await {
                tracing::error!(activation = id, error = %e, "cannot stamp a closed activation; its counts were committed");
            }
        }
    }

    /// The activations that the part's alerts closed: those their runtimes (as stored before
    /// the part) held open, and those they fired in this round.
    fn closed_by(&self, part: &Part) -> Vec<tocsin_core::engine::Closed> {
        let fired: Vec<u64> = part
            .activations
            .iter()
            .filter_map(|i| self.changes.activations.get(*i).map(|a| a.id))
            .collect();
        self.changes
            .closed
            .iter()
            .filter(|c| {
                fired.contains(&c.activation)
                    || part.runtimes.iter().any(|a| {
                        self.work
                            .alerts
                            .get(a)
                            .is_some_and(|w| opens(&w.base.runtime, c.activation))
                    })
            })
            .cloned()
            .collect()
    }

    /// The put of a window item at the next version, conditional on the one read.
    fn window_put(&self, k: &WindowKey, token: u64) -> Result<TransactWriteItem> {
        let (item, condition, values) = self.window_item(k, token)?;
        let put = Put::builder()
            .table_name(self.store.table())
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_values(values)
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A window's item as evaluated, with its condition. The item expires when its newest event
    /// leaves the period: TTL then deletes it, and a later write finds no item, as if it were
    /// empty. A window's receipts outlive its times by up to the redelivery horizon.
    #[allow(clippy::type_complexity)]
    fn window_item(
        &self,
        k: &WindowKey,
        token: u64,
    ) -> Result<(Item, &'static str, Option<HashMap<String, AttributeValue>>)> {
        let w = self.work.windows.get(k).ok_or_else(|| {
            Error::backend(Backend::DynamoDb, "internal: a window not in the round")
        })?;
        let alert = self.work.alerts.get(&k.alert).ok_or_else(|| {
            Error::backend(Backend::DynamoDb, "internal: an alert not in the round")
        })?;
        let rule = &alert.base.rule;
        let mut item = k.item_key();
        item.insert("w".into(), s(super::cache::encode_window(&w.window)));
        item.insert("v".into(), n(w.base.v + 1));
        item.insert("lw".into(), writers_after(token, &w.base.writers));
        let mut receipts = w.receipts.clone();
        let horizon =
            u32::try_from(self.store.settings.redelivery_horizon.as_secs()).unwrap_or(u32::MAX);
        let forgotten = receipts.expire(now_secs(), horizon);
        if forgotten > 0 {
            tracing::warn!(
                forgotten,
                "a window received more queue messages within the redelivery horizon than it keeps receipts for: redeliveries of the oldest could count twice"
            );
        }
        if !receipts.is_empty() {
            item.insert("m".into(), AttributeValue::B(Blob::new(receipts.encode())));
        }
        let last_at = w
            .members
            .iter()
            .filter_map(|(j, _)| self.events.get(*j).map(|(_, ev)| ev.at))
            .max()
            .unwrap_or(Timestamp(0));
        if let Some(span) = rule.sustain.or(rule.period) {
            let newest = w
                .window
                .times()
                .last()
                .copied()
                .unwrap_or(last_at)
                .max(last_at);
            let mut expires = ttl_secs(newest.plus(span));
            if !receipts.is_empty() {
                let horizon = self.store.settings.redelivery_horizon.as_secs();
                expires = expires.max(i64::from(now_secs()) + horizon as i64);
            }
            item.insert("expires_at".into(), n(expires));
        }
        if let Some((shard, deadline)) = due_in_index(k, rule, &alert.runtime, &w.window) {
            super::item::index_due(&mut item, shard, deadline);
        }
        let (condition, value) = at_version(w.base.v);
        let values = value.map(|v| [(":expected".to_owned(), v)].into());
        Ok((item, condition, values))
    }

    /// Reads alert `id` again, with those of `windows` that are its; forgets it when it is gone.
    async fn reload_alert(&mut self, id: u64, windows: &[WindowKey]) -> Result<()> {
        let Some(current) = self.work.alerts.get(&id) else {
            return Ok(());
        };
        let (project, name) = (
            current.base.rule.project().to_owned(),
            current.base.rule.name().to_owned(),
        );
        let fresh = match self.store.read_alert(&project, &name).await? {
            Some(a) if a.id == id => a,
            _ => {
                // Deleted meanwhile: its events count nowhere.
                self.cache.remove_alert(id);
                for (j, m) in self.work.matches.iter().enumerate() {
                    if m.iter().any(|(a, _)| *a == id) {
                        self.work.done.insert((j, id));
                    }
                }
                return Ok(());
            }
        };
        let moved = fresh.generation != current.base.generation;
        self.cache.put_alert(fresh.clone());
        if let Some(a) = self.work.alerts.get_mut(&id) {
            a.runtime = fresh.runtime.clone();
            a.base = fresh.clone();
        }
        if moved {
            // A reset or a change started new windows: the events go to those.
            self.rekey(&fresh).await?;
            return Ok(());
        }
        for k in windows.iter().filter(|k| k.alert == id) {
            let stored = self.store.read_window(k).await?;
            self.cache.put_window(k.clone(), stored.clone());
            if let Some(w) = self.work.windows.get_mut(k) {
                w.window = stored.window.clone();
                w.base = stored;
                w.receipt();
            }
        }
        Ok(())
    }

    /// Moves an alert's events to the windows of its current generation.
    async fn rekey(&mut self, alert: &StoredAlert) -> Result<()> {
        let mut moved: Vec<(usize, WindowKey)> = Vec::new();
        for (j, m) in self.work.matches.iter_mut().enumerate() {
            for (a, k) in m.iter_mut() {
                if *a == alert.id && k.generation != alert.generation {
                    self.work.windows.remove(k);
                    k.generation = alert.generation;
                    moved.push((j, k.clone()));
                }
            }
        }
        for (j, k) in moved {
            if !self.work.windows.contains_key(&k) {
                let stored = self.store.read_window(&k).await?;
                self.work.windows.insert(
                    k.clone(),
                    WindowWork {
                        window: stored.window.clone(),
                        base: stored,
                        members: Vec::new(),
                        counted_before: FxHashSet::default(),
                        receipts: Receipts::default(),
                    },
                );
            }
            if let Some(w) = self.work.windows.get_mut(&k) {
                let place = self.events[j]
                    .1
                    .message
                    .as_deref()
                    .map(message_hash)
                    .map(|message| Place {
                        message,
                        ordinal: w
                            .members
                            .iter()
                            .filter(|(_, p)| p.is_some_and(|p| p.message == message))
                            .count() as u32,
                    });
                w.members.push((j, place));
                w.receipt();
            }
        }
        Ok(())
    }
}

/// Whether `runtime` names activation `id` as open.
fn opens(runtime: &Runtime, id: u64) -> bool {
    runtime.last_activation == Some(id)
        || runtime.held.values().any(|a| *a == id)
        || runtime.absent.values().any(|a| *a == id)
}

/// How a write failed.
enum WriteFailure {
    /// Conditions failed: for each item, whether its own did.
    Conditions(Vec<bool>),
    Error(Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Window(WindowKey),
    Runtime(u64),
    Claim(usize),
}

fn find(parent: &mut [usize], i: usize) -> usize {
    let mut root = i;
    while parent[root] != root {
        root = parent[root];
    }
    let mut at = i;
    while parent[at] != root {
        let next = parent[at];
        parent[at] = root;
        at = next;
    }
    root
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        parent[ra] = rb;
    }
}

/// The claim of an idempotency key, held until the claim's expiry, written with the counts
/// of its event; conditional on the key not being held.
fn claim_put(table: &str, c: &KeyClaim<'_>, token: u64) -> Result<TransactWriteItem> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(idempotency_item(c.project, c.key, c.expires, token)))
        .condition_expression("attribute_not_exists(pk) OR #exp <= :at")
        .expression_attribute_names("#exp", "exp")
        .expression_attribute_values(":at", n(c.at.0))
        .build()
        .map_err(build_err)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// An idempotency key held until `expires`, by the write with `token`.
fn idempotency_item(project: &str, k: &str, expires: Timestamp, token: u64) -> Item {
    let mut item = key(format!("I#{project}"), k);
    item.insert("exp".into(), n(expires.0));
    item.insert("expires_at".into(), n(ttl_secs(expires)));
    item.insert("tok".into(), n(token));
    item
}

/// An absence alert's window: where in the due index it goes, and when its entity's absence
/// comes due.
fn due_in_index(
    key: &WindowKey,
    rule: &tocsin_core::compiled::Rule,
    runtime: &Runtime,
    window: &Window,
) -> Option<(u64, Timestamp)> {
    let entity = match &key.entity {
        Some(e) => &**e,
        None => absence::awaited(rule).first()?.as_str(),
    };
    let deadline = absence::deadline(rule, runtime, entity, window.last())?;
    Some((
        super::item::shard(key.alert, key.entity.as_deref()),
        deadline,
    ))
}

impl DynamoStore {
    /// The token of the write that holds a key's claim, if any.
    async fn claim_token(&self, c: &KeyClaim<'_>) -> Result<Option<u64>> {
        let out = self
            .client
            .get_item()
            .table_name(self.table())
            .set_key(Some(key(format!("I#{}", c.project), c.key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem", e))?;
        Ok(out
            .item()
            .and_then(|i| super::item::opt_n::<u64>(i, "tok").ok().flatten()))
    }
}
