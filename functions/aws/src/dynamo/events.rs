//! Event intake on DynamoDB: the store claims client-given idempotency keys, groups a batch's
//! events by the window they count in, skips what the window's receipts say it counted already
//! (a queue's redelivery), runs the rest through the engine's intake on a working copy of the
//! window and the alert's runtime, and commits the change set it returns with the new receipts:
//! one conditional write of the window, or, when the alert's state changed, one transaction with
//! its runtime and the activations it fired. A write lost to a concurrent writer re-reads and
//! runs the group again.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use tocsin_core::compiled::Rule;
use tocsin_core::engine::intake::{self, AlertSlot, Effect, IntakeState, Screen};
use tocsin_core::engine::{Changes, EventOutcome, Runtime, Ticked, Window, absence};
use tocsin_core::error::{Backend, Error, Result};
use tocsin_core::model::{AcceptedEvent, Activation, Silence, Span, Timestamp};
use tocsin_core::store::EventStore;

use super::cache::{Cache, StoredAlert, Versioned, WindowKey, at_version};
use super::item::{
    Item, alert_sk, cancelled_conditions, is_conditional, json, key, n, s, sdk_err, ttl_secs,
};
use super::receipts::{Receipts, message_hash};
use super::{DynamoStore, MAX_CONFLICTS};

/// How fresh the cache must be before a custom kind is refused as unknown: an alert created a
/// moment ago on another instance is found by reloading.
const UNKNOWN_KIND_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// At most this many events of one window are committed together: a transaction holds at most
/// 100 items (the window, the runtime, and an activation per firing).
const MAX_GROUP: usize = 98;

fn build_err(e: impl std::fmt::Display) -> Error {
    Error::backend(
        Backend::DynamoDb,
        format!("cannot build a DynamoDB request: {e}"),
    )
}

/// One window of one alert, as the intake sees it: every event of the group was matched to it.
struct OneWindow<'a> {
    alert: u64,
    rule: &'a Arc<Rule>,
    runtime: &'a mut Runtime,
    window: &'a mut Window,
    silences: &'a [Silence],
}

impl IntakeState for OneWindow<'_> {
    type Windows = Window;

    fn each_match(
        &mut self,
        _event: usize,
        _ev: &AcceptedEvent,
        mut f: impl FnMut(u64, AlertSlot<'_, Window>),
    ) {
        f(
            self.alert,
            AlertSlot {
                rule: self.rule,
                runtime: self.runtime,
                windows: self.window,
                silences: self.silences,
            },
        );
    }
}

/// A group's evaluation, not yet committed.
struct Evaluated {
    runtime: Runtime,
    window: Window,
    changes: Changes,
    effects: Vec<Effect>,
}

/// Runs a group's events through the engine on copies of the alert's runtime and window.
fn evaluate(
    alert: &StoredAlert,
    window: &Window,
    silences: &[Silence],
    events: &[(usize, &AcceptedEvent)],
    next_id: &mut impl FnMut() -> u64,
) -> Evaluated {
    let mut runtime = alert.runtime.clone();
    let mut window = window.clone();
    let mut changes = Changes::default();
    let mut effects = Vec::new();
    let mut state = OneWindow {
        alert: alert.id,
        rule: &alert.rule,
        runtime: &mut runtime,
        window: &mut window,
        silences,
    };
    intake::round(
        &mut state,
        events.iter().copied(),
        next_id,
        &mut changes,
        |e, _| effects.push(e),
    );
    Evaluated {
        runtime,
        window,
        changes,
        effects,
    }
}

impl DynamoStore {
    /// Evaluates events in order of arrival per window: each window of each alert they match
    /// is written once per group of its events (with the alert's runtime and activations when
    /// it fired). Returns one outcome per event; an event whose writes failed gets the error
    /// (and its idempotency key back), the others are unaffected.
    async fn evaluate_batch(
        &self,
        events: &[AcceptedEvent],
        ttl: Span,
    ) -> Vec<Result<EventOutcome>> {
        let mut outcomes: Vec<Result<EventOutcome>> =
            events.iter().map(|_| Ok(EventOutcome::default())).collect();
        let mut cache = self.cache.lock().await;
        if let Err(e) = self.refresh(&mut cache, self.settings.config_ttl).await {
            return events.iter().map(|_| Err(e.clone())).collect();
        }
        let mut candidates = Vec::with_capacity(events.len());
        for (i, ev) in events.iter().enumerate() {
            let mut listens = cache.matcher.listens(&ev.project, &ev.kind);
            if intake::screen(ev, || listens, false) == Screen::UnknownKind
                && cache.age().is_none_or(|a| a >= UNKNOWN_KIND_RECHECK)
            {
                cache.invalidate();
                if let Err(e) = self.refresh(&mut cache, self.settings.config_ttl).await {
                    outcomes[i] = Err(e);
                    continue;
                }
                listens = cache.matcher.listens(&ev.project, &ev.kind);
            }
            if intake::screen(ev, || listens, false) == Screen::UnknownKind {
                if let Ok(o) = &mut outcomes[i] {
                    o.unknown_kind = true;
                }
                continue;
            }
            candidates.push(i);
        }
        let keyed: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| events[i].idempotency_key.is_some())
            .collect();
        let claims: HashMap<usize, Result<bool>> = keyed
            .iter()
            .copied()
            .zip(self.claim_all(events, &keyed, ttl).await)
            .collect();
        let mut round: Vec<(usize, AcceptedEvent)> = Vec::with_capacity(events.len());
        for i in candidates {
            let held = match claims.get(&i) {
                None | Some(Ok(true)) => false,
                Some(Ok(false)) => true,
                Some(Err(e)) => {
                    outcomes[i] = Err(e.clone());
                    continue;
                }
            };
            if intake::screen(&events[i], || true, held) == Screen::Evaluate {
                round.push((i, events[i].clone()));
            } else if let Ok(o) = &mut outcomes[i] {
                o.duplicate = true;
            }
        }
        // Calculated events are evaluated in the next round, after what emitted them.
        while !round.is_empty() {
            let groups = group_by_window(&cache, &round);
            let mut next = Vec::new();
            for Group {
                key,
                members,
                places,
            } in groups
            {
                let mut chunks = members.chunks(MAX_GROUP).zip(places.chunks(MAX_GROUP));
                while let Some((chunk, places)) = chunks.next() {
                    match self
                        .evaluate_window(&mut cache, key.clone(), chunk, places)
                        .await
                    {
                        Ok(Evaluation {
                            effects,
                            activations,
                            skipped,
                        }) => {
                            for j in skipped {
                                if let Ok(outcome) = &mut outcomes[round[j].0] {
                                    outcome.duplicate = true;
                                }
                            }
                            for effect in effects {
                                let origin = round[effect.origin].0;
                                if let Ok(outcome) = &mut outcomes[origin] {
                                    let emits = outcome.absorb(effect, &activations);
                                    next.extend(emits.map(|e| (origin, e)));
                                }
                            }
                        }
                        Err(e) => {
                            // The receipts count a message's events in order: a later chunk
                            // must not be committed past a failed one.
                            for (chunk, _) in std::iter::once((chunk, places)).chain(chunks) {
                                for &(j, _) in chunk {
                                    outcomes[round[j].0] = Err(e.clone());
                                }
                            }
                            break;
                        }
                    }
                }
            }
            round = next;
        }
        drop(cache);
        self.keep_recorded(events, &outcomes).await;
        // A failed event gives its idempotency key back, so that its retry is counted.
        for (ev, outcome) in events.iter().zip(&outcomes) {
            if let (Err(_), Some(k)) = (outcome, &ev.idempotency_key)
                && let Err(e) = self.release(&ev.project, k).await
            {
                tracing::error!(error = %e, "cannot release the idempotency key of a failed event");
            }
        }
        outcomes
    }

    /// Keeps what was evaluated for the history (see `history`): a queue message's events
    /// whole, under its id (a redelivery writes the same item again); off the queue, the
    /// events counted for the first time, under an id of this call. Failing to keep them
    /// costs the history, not the events: it is logged.
    async fn keep_recorded(&self, events: &[AcceptedEvent], outcomes: &[Result<EventOutcome>]) {
        if self.settings.event_retention.is_none() {
            return;
        }
        // Per message: its events, and whether all of them were counted before (a redelivery).
        let mut by_message: Vec<(&str, Vec<&AcceptedEvent>, bool)> = Vec::new();
        let mut loose = Vec::new();
        for (ev, outcome) in events.iter().zip(outcomes) {
            if matches!(outcome, Ok(o) if o.unknown_kind) {
                continue;
            }
            let before = matches!(outcome, Ok(o) if o.duplicate);
            match ev.message.as_deref() {
                Some(m) => match by_message.iter_mut().find(|(id, _, _)| *id == m) {
                    Some((_, v, all_before)) => {
                        v.push(ev);
                        *all_before &= before;
                    }
                    None => by_message.push((m, vec![ev], before)),
                },
                None if !before && outcome.is_ok() => loose.push(ev),
                None => {}
            }
        }
        let request = (!loose.is_empty()).then(request_id);
        let batches = by_message
            .iter()
            .map(|(id, evs, before)| (id.to_string(), evs, *before))
            .chain(request.map(|id| (id, &loose, false)));
        for (id, evs, before) in batches {
            if let Err(e) = self.keep_events(evs, &id, before).await {
                tracing::error!(error = %e, batch = %id, "cannot keep events for the history; they were counted");
            }
        }
    }

    /// Claims the idempotency keys of `events[i]` for each `i` of `keyed`: true for a claim,
    /// false for a duplicate (also of an earlier event of the same batch). One event: one
    /// conditional `PutItem`; more: conditional puts in transactions of up to 100, so that a
    /// batch of events costs one request for all its keys.
    async fn claim_all(
        &self,
        events: &[AcceptedEvent],
        keyed: &[usize],
        ttl: Span,
    ) -> Vec<Result<bool>> {
        if let [i] = keyed {
            let ev = &events[*i];
            let k = ev.idempotency_key.as_deref().unwrap_or_default();
            return vec![self.claim(&ev.project, k, ev.at, ttl).await];
        }
        let mut results: Vec<Result<bool>> = keyed.iter().map(|_| Ok(false)).collect();
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<usize> = (0..keyed.len())
            .filter(|&j| {
                let ev = &events[keyed[j]];
                seen.insert((ev.project.as_str(), ev.idempotency_key.as_deref()))
            })
            .collect();
        for chunk in unique.chunks(100) {
            let mut open: Vec<usize> = chunk.to_vec();
            for _ in 0..MAX_CONFLICTS {
                if open.is_empty() {
                    break;
                }
                let mut tx = self.client.transact_write_items();
                for &j in &open {
                    let ev = &events[keyed[j]];
                    let k = ev.idempotency_key.as_deref().unwrap_or_default();
                    let put = Put::builder()
                        .table_name(self.table())
                        .set_item(Some(idempotency_item(&ev.project, k, ev.at.plus(ttl))))
                        .condition_expression("attribute_not_exists(pk) OR #exp <= :at")
                        .expression_attribute_names("#exp", "exp")
                        .expression_attribute_values(":at", n(ev.at.0))
                        .build();
                    match put {
                        Ok(put) => {
                            tx = tx.transact_items(TransactWriteItem::builder().put(put).build())
                        }
                        Err(e) => {
                            results[j] = Err(build_err(e));
                        }
                    }
                }
                open.retain(|&j| results[j].is_ok());
                match tx.send().await {
                    Ok(_) => {
                        for &j in &open {
                            if results[j].is_ok() {
                                results[j] = Ok(true);
                            }
                        }
                        open.clear();
                    }
                    Err(e) => match cancelled_conditions(&e) {
                        // Held keys are duplicates; the others were only cancelled with them.
                        Some(held) => {
                            let mut still = Vec::new();
                            for (&j, held) in open.iter().zip(held) {
                                if !held {
                                    still.push(j);
                                }
                            }
                            open = still;
                        }
                        None => {
                            let e = sdk_err("TransactWriteItems", e);
                            for &j in &open {
                                results[j] = Err(e.clone());
                            }
                            open.clear();
                        }
                    },
                }
            }
            for j in open {
                results[j] = Err(Error::backend(
                    Backend::DynamoDb,
                    "gave up claiming idempotency keys after repeated conflicts",
                ));
            }
        }
        results
    }

    /// Claims an idempotency key until `at + ttl`; false when it is held (a duplicate).
    async fn claim(&self, project: &str, k: &str, at: Timestamp, ttl: Span) -> Result<bool> {
        let item = idempotency_item(project, k, at.plus(ttl));
        let result = self
            .client
            .put_item()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR #exp <= :at")
            .expression_attribute_names("#exp", "exp")
            .expression_attribute_values(":at", n(at.0))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_conditional(&e) => Ok(false),
            Err(e) => Err(sdk_err("PutItem", e)),
        }
    }

    async fn release(&self, project: &str, k: &str) -> Result<()> {
        self.client
            .delete_item()
            .table_name(self.table())
            .set_key(Some(key(format!("I#{project}"), k)))
            .send()
            .await
            .map_err(|e| sdk_err("DeleteItem", e))?;
        Ok(())
    }

    /// Evaluates, in order, the events of one window (each with its index in the round and its
    /// place in its queue message) and commits what the engine changed with the window's new
    /// receipts, returning its effects, the activations they refer to, and the events skipped as
    /// counted before. After losing the write to a concurrent writer, it reads the window and the
    /// alert again and evaluates the events anew. Activation ids are reserved once the engine has
    /// said how many firings there are, and the group is evaluated again with them: the engine is
    /// deterministic, so it fires the same way.
    async fn evaluate_window(
        &self,
        cache: &mut Cache,
        mut key: WindowKey,
        events: &[(usize, &AcceptedEvent)],
        places: &[Option<Place>],
    ) -> Result<Evaluation> {
        let last_at = events
            .iter()
            .map(|(_, ev)| ev.at)
            .max()
            .unwrap_or(Timestamp(0));
        let mut conflicts = 0;
        loop {
            let Some(alert) = cache.alerts.get(&key.alert).cloned() else {
                // Deleted meanwhile: the events count nowhere.
                return Ok(Evaluation::default());
            };
            key.generation = alert.generation;
            let stored = cache.windows.get(&key).cloned().unwrap_or_default();
            let (fresh, skipped, receipts) = self.unreceipted(&stored.receipts, events, places);
            if fresh.is_empty() {
                return Ok(Evaluation {
                    skipped,
                    ..Evaluation::default()
                });
            }
            let silences = cache.silences.of(alert.rule.project()).to_vec();
            let mut provisional = 0;
            let mut done = evaluate(&alert, &stored.window, &silences, &fresh, &mut || {
                provisional += 1;
                provisional
            });
            let fired = done.changes.activations.len() as u64;
            if fired > 0 {
                let mut id = self.next_ids("next_activation", fired).await? + 1 - fired;
                done = evaluate(&alert, &stored.window, &silences, &fresh, &mut || {
                    id += 1;
                    id - 1
                });
            }
            let receipts = (receipts != stored.receipts).then_some(receipts);
            match self
                .commit(&key, &done, &stored, receipts.as_ref(), &alert, last_at)
                .await?
            {
                Some((new_wv, new_av)) => {
                    if new_wv != stored.v {
                        let window = Versioned {
                            window: done.window,
                            receipts: receipts.unwrap_or(stored.receipts),
                            v: new_wv,
                        };
                        cache.put_window(key.clone(), window);
                    }
                    if !done.changes.runtimes.is_empty() {
                        let mut alert = alert;
                        alert.runtime = done.runtime;
                        alert.v = new_av;
                        cache.put_alert(alert);
                    }
                    for c in done.changes.closed {
                        self.close_activation(c).await?;
                    }
                    return Ok(Evaluation {
                        effects: done.effects,
                        activations: done.changes.activations,
                        skipped,
                    });
                }
                None => {
                    conflicts += 1;
                    self.reload(cache, &key, conflicts).await?;
                }
            }
        }
    }

    /// Splits a group by the window's receipts: the events to evaluate (with their indexes in
    /// the round), the round indexes of those counted before, and the receipts once the fresh
    /// ones are counted, aged by the redelivery horizon.
    fn unreceipted<'e>(
        &self,
        receipts: &Receipts,
        events: &[(usize, &'e AcceptedEvent)],
        places: &[Option<Place>],
    ) -> (Vec<(usize, &'e AcceptedEvent)>, Vec<usize>, Receipts) {
        let counted = receipts.index();
        let mut fresh = Vec::with_capacity(events.len());
        let mut skipped = Vec::new();
        let mut after = receipts.clone();
        let now = now_secs();
        for (&(i, ev), place) in events.iter().zip(places) {
            match place {
                Some(p) if p.ordinal < counted.get(&p.message).copied().unwrap_or(0) => {
                    skipped.push(i)
                }
                Some(p) => {
                    after.record(p.message, p.ordinal + 1, now);
                    fresh.push((i, ev));
                }
                None => fresh.push((i, ev)),
            }
        }
        let horizon = u32::try_from(self.settings.redelivery_horizon.as_secs()).unwrap_or(u32::MAX);
        let forgotten = after.expire(now, horizon);
        if forgotten > 0 {
            tracing::warn!(
                forgotten,
                "a window received more queue messages within the redelivery horizon than it keeps receipts for: redeliveries of the oldest could count twice"
            );
        }
        (fresh, skipped, after)
    }

    /// After a lost write: the alert and the window as they are now.
    async fn reload(&self, cache: &mut Cache, key: &WindowKey, conflicts: usize) -> Result<()> {
        if conflicts > MAX_CONFLICTS {
            return Err(Error::backend(
                Backend::DynamoDb,
                format!(
                    "gave up after {MAX_CONFLICTS} conflicting concurrent writes to one window"
                ),
            ));
        }
        let Some(current) = cache.alerts.get(&key.alert) else {
            return Ok(());
        };
        let (project, name) = (
            current.rule.project().to_owned(),
            current.rule.name().to_owned(),
        );
        match self.read_alert(&project, &name).await? {
            Some(a) if a.id == key.alert => {
                let key = WindowKey {
                    generation: a.generation,
                    ..key.clone()
                };
                cache.put_alert(a);
                let window = self.read_window(&key).await?;
                cache.put_window(key, window);
            }
            _ => cache.remove_alert(key.alert),
        }
        Ok(())
    }

    /// Writes a group's change set: nothing when nothing changed; the window alone (with its
    /// receipts) when the alert's state did not change (one `PutItem`); else one transaction
    /// with the window, the alert's runtime and the new activations. Receipts are written only
    /// with a change: events that changed nothing may be evaluated again. Returns the new
    /// versions of the window and the alert, or None when a concurrent writer changed either
    /// first.
    async fn commit(
        &self,
        key: &WindowKey,
        done: &Evaluated,
        stored: &Versioned,
        receipts: Option<&Receipts>,
        alert: &StoredAlert,
        last_at: Timestamp,
    ) -> Result<Option<(u64, u64)>> {
        let wv = stored.v;
        let runtime_dirty = !done.changes.runtimes.is_empty();
        let window_dirty =
            !done.changes.windows.is_empty() || (runtime_dirty && receipts.is_some());
        if !window_dirty && !runtime_dirty {
            return Ok(Some((wv, alert.v)));
        }
        let receipts = receipts.unwrap_or(&stored.receipts);
        let mut window_item =
            self.window_item(key, &done.window, receipts, wv + 1, &alert.rule, last_at)?;
        if let Some((shard, deadline)) = due_in_index(key, &alert.rule, &done.runtime, &done.window)
        {
            super::absences::index_due(&mut window_item, shard, deadline);
        }
        let (condition, value) = at_version(wv);
        let values = value.map(|v| [(":expected".to_owned(), v)].into());
        if !runtime_dirty {
            let result = self
                .client
                .put_item()
                .table_name(self.table())
                .set_item(Some(window_item))
                .condition_expression(condition)
                .set_expression_attribute_values(values)
                .send()
                .await;
            return match result {
                Ok(_) => Ok(Some((wv + 1, alert.v))),
                Err(e) if is_conditional(&e) => Ok(None),
                Err(e) => Err(sdk_err("PutItem", e)),
            };
        }
        let mut tx = self.client.transact_write_items();
        if window_dirty {
            let put = Put::builder()
                .table_name(self.table())
                .set_item(Some(window_item))
                .condition_expression(condition)
                .set_expression_attribute_values(values)
                .build()
                .map_err(build_err)?;
            tx = tx.transact_items(TransactWriteItem::builder().put(put).build());
        }
        tx = tx.transact_items(self.runtime_update(alert, &done.runtime, false)?);
        for a in &done.changes.activations {
            tx = tx.transact_items(self.activation_put(a)?);
        }
        match tx.send().await {
            Ok(_) => Ok(Some((if window_dirty { wv + 1 } else { wv }, alert.v + 1))),
            Err(e) if cancelled_conditions(&e).is_some() => Ok(None),
            Err(e) => Err(sdk_err("TransactWriteItems", e)),
        }
    }

    /// The write of an alert's new runtime, conditional on the version read, for a firing's
    /// transaction; `unindex` also takes the alert out of the due index (see `absences`).
    pub(super) fn runtime_update(
        &self,
        alert: &StoredAlert,
        runtime: &Runtime,
        unindex: bool,
    ) -> Result<TransactWriteItem> {
        let expression = if unindex {
            "SET rt = :rt, v = :next REMOVE gsi2pk, gsi2sk"
        } else {
            "SET rt = :rt, v = :next"
        };
        let update = Update::builder()
            .table_name(self.table())
            .set_key(Some(key_of_alert(alert)))
            .update_expression(expression)
            .condition_expression("v = :expected")
            .expression_attribute_values(":rt", json(runtime)?)
            .expression_attribute_values(":next", n(alert.v + 1))
            .expression_attribute_values(":expected", n(alert.v))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The conditional put of a new activation, for a firing's transaction.
    pub(super) fn activation_put(&self, a: &Activation) -> Result<TransactWriteItem> {
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(self.activation_item(a, 1)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A window item at version `v`, expiring when its newest event (at `last`) leaves the
    /// period: TTL then deletes it, and a later write finds no item, as if it were empty.
    /// A window's receipts outlive its times by up to the redelivery horizon.
    fn window_item(
        &self,
        key: &WindowKey,
        w: &Window,
        receipts: &Receipts,
        v: u64,
        rule: &Rule,
        last: Timestamp,
    ) -> Result<Item> {
        let mut item = key.item_key();
        item.insert("w".into(), s(super::cache::encode_window(w)));
        item.insert("v".into(), n(v));
        if !receipts.is_empty() {
            item.insert("m".into(), AttributeValue::B(Blob::new(receipts.encode())));
        }
        if let Some(span) = rule.sustain.or(rule.period) {
            let newest = w.times().last().copied().unwrap_or(last).max(last);
            let mut expires = ttl_secs(newest.plus(span));
            if !receipts.is_empty() {
                let horizon = self.settings.redelivery_horizon.as_secs();
                expires = expires.max(i64::from(now_secs()) + horizon as i64);
            }
            item.insert("expires_at".into(), n(expires));
        }
        Ok(item)
    }
}

/// An absence alert's window: where in the due index it goes, and when its entity's absence
/// comes due (see `absences`).
fn due_in_index(
    key: &WindowKey,
    rule: &Rule,
    runtime: &Runtime,
    window: &Window,
) -> Option<(u64, Timestamp)> {
    let entity = match &key.entity {
        Some(e) => &**e,
        None => absence::awaited(rule).first()?.as_str(),
    };
    let deadline = absence::deadline(rule, runtime, entity, window.last())?;
    Some((
        super::absences::shard(key.alert, key.entity.as_deref()),
        deadline,
    ))
}

/// An idempotency key held until `expires`.
fn idempotency_item(project: &str, k: &str, expires: Timestamp) -> Item {
    let mut item = key(format!("I#{project}"), k);
    item.insert("exp".into(), n(expires.0));
    item.insert("expires_at".into(), n(ttl_secs(expires)));
    item
}

fn key_of_alert(alert: &StoredAlert) -> Item {
    key("ALERT", alert_sk(alert.rule.project(), alert.rule.name()))
}

#[async_trait]
impl EventStore for DynamoStore {
    /// The alerts due by `now` are found in the cached configs (their cooldown ends are on
    /// the alert items, which the cache holds); each is settled with a write conditional on
    /// its version, so that two ticks or a tick and an event settle it once. Absences come due
    /// from the due index (see `absences`).
    async fn tick(&self, now: Timestamp) -> Result<Ticked> {
        let due: Vec<(String, String)> = {
            let mut cache = self.cache.lock().await;
            self.refresh(&mut cache, self.settings.config_ttl).await?;
            cache
                .alerts
                .values()
                .filter(|a| intake::cooldown_due(&a.runtime, now))
                .map(|a| (a.rule.project().to_owned(), a.rule.name().to_owned()))
                .collect()
        };
        let mut ticked = Ticked::default();
        for (project, name) in due {
            let mut closed = None;
            self.update_alert(&project, &name, |alert| {
                let rule = alert.rule.clone();
                closed = alert.runtime.settle(&rule, now);
                Ok(closed.iter().cloned().collect())
            })
            .await?;
            if let Some(c) = closed {
                ticked.closed += 1;
                ticked.resolved |= !c.resolved.is_empty();
            }
        }
        ticked.fired = self.tick_absences(now).await?;
        Ok(ticked)
    }

    async fn apply_event(&self, event: &AcceptedEvent, ttl: Span) -> Result<EventOutcome> {
        self.evaluate_batch(std::slice::from_ref(event), ttl)
            .await
            .pop()
            .unwrap_or_else(|| Ok(EventOutcome::default()))
    }

    async fn apply_events(&self, events: &[AcceptedEvent], ttl: Span) -> Vec<Result<EventOutcome>> {
        self.evaluate_batch(events, ttl).await
    }

    async fn recorded_events(
        &self,
        query: &tocsin_core::store::EventQuery,
    ) -> Result<Vec<tocsin_core::store::Recorded>> {
        self.read_events(query).await
    }
}

/// Where an event sits among the events of its queue message that go to one window: the
/// receipts count them in this order.
#[derive(Debug, Clone, Copy)]
struct Place {
    message: u64,
    ordinal: u32,
}

/// The events of one window in a round, in order of arrival, each with its index in the round
/// and its place in its message (None off a queue).
struct Group<'r> {
    key: WindowKey,
    members: Vec<(usize, &'r AcceptedEvent)>,
    places: Vec<Option<Place>>,
}

/// What evaluating one window's events did.
#[derive(Default)]
struct Evaluation {
    effects: Vec<Effect>,
    activations: Vec<Arc<Activation>>,
    /// Round indexes of the events its receipts say were counted before.
    skipped: Vec<usize>,
}

/// An id for the events of one call off the queue, unique across containers: this process's
/// random seed, and a count.
fn request_id() -> String {
    use std::hash::BuildHasher;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0u8));
    format!("r{seed:016x}-{}", COUNT.fetch_add(1, Ordering::Relaxed))
}

/// Seconds since the epoch by this machine's clock: receipts age by it, not by event time,
/// since a redelivery comes a visibility timeout after the delivery whatever the events say.
fn now_secs() -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// The events of a round by the window they count in, in order of arrival within each window:
/// the matcher decides which alerts an event matches, the engine later whether it concerns
/// them.
fn group_by_window<'r>(cache: &Cache, round: &'r [(usize, AcceptedEvent)]) -> Vec<Group<'r>> {
    let mut groups: Vec<Group<'r>> = Vec::new();
    let mut index: HashMap<WindowKey, usize> = HashMap::new();
    // Per window and message: how many of the message's events went to the window so far.
    let mut ordinals: HashMap<(usize, u64), u32> = HashMap::new();
    for (j, (_, ev)) in round.iter().enumerate() {
        let message = ev.message.as_deref().map(message_hash);
        cache
            .matcher
            .for_each_match(&ev.project, &ev.kind, &ev.entity_id, |id| {
                let Some(alert) = cache.alerts.get(&id) else {
                    return;
                };
                let key = WindowKey {
                    alert: id,
                    generation: alert.generation,
                    entity: alert.rule.per_entity.then(|| ev.entity_id.as_str().into()),
                };
                let g = *index.entry(key.clone()).or_insert_with(|| {
                    groups.push(Group {
                        key,
                        members: Vec::new(),
                        places: Vec::new(),
                    });
                    groups.len() - 1
                });
                let place = message.map(|message| {
                    let next = ordinals.entry((g, message)).or_insert(0);
                    *next += 1;
                    Place {
                        message,
                        ordinal: *next - 1,
                    }
                });
                groups[g].members.push((j, ev));
                groups[g].places.push(place);
            });
    }
    groups
}
