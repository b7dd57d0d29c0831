//! Event intake: windows counted with one conditional write per matched (event, alert), firing
//! in one transaction, batches aggregated per window before writing.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use tocsin_core::engine::{self, Closed, Runtime, Window};
use tocsin_core::error::{Error, Result};
use tocsin_core::model::{AcceptedEvent, Activation, EventKind, Span};
use tocsin_core::rule::Rule;
use tocsin_core::store::{EventOutcome, EventStore, Fired};

use super::cache::{Cache, StoredAlert, WindowKey, at_version};
use super::item::{
    Item, alert_sk, cancelled_conditions, is_conditional, json, key, n, s, sdk_err, ttl_secs,
};
use super::{DynamoStore, MAX_CONFLICTS};

/// How fresh the cache must be before a custom kind is refused as unknown: an alert created a
/// moment ago on another instance is found by reloading.
const UNKNOWN_KIND_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

fn build_err(e: impl std::fmt::Display) -> Error {
    Error::Store(format!("cannot build a DynamoDB request: {e}"))
}

/// What evaluating one event did to one alert.
enum Step {
    /// Not admitted (the alert is active, or in its cooldown).
    Ignored,
    Counted(Option<Box<(Activation, Option<AcceptedEvent>)>>),
}

/// The uncommitted part of a window's evaluation.
struct Pending {
    window: Window,
    runtime: Runtime,
    window_dirty: bool,
    runtime_dirty: bool,
    closed: Vec<Closed>,
    steps: Vec<Step>,
    /// The newest event counted: the window item expires a period after it.
    last_at: tocsin_core::model::Timestamp,
}

impl DynamoStore {
    /// Evaluates events in order of arrival per window: each window of each alert they match
    /// is written once for the whole batch (and once more per firing). Returns one outcome per
    /// event; an event whose writes failed gets the error (and its idempotency key back), the
    /// others are unaffected.
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
            if matches!(ev.kind, EventKind::Custom(_))
                && !cache.matcher.listens(&ev.project, &ev.kind)
            {
                if cache.age().is_none_or(|a| a >= UNKNOWN_KIND_RECHECK) {
                    cache.invalidate();
                    if let Err(e) = self.refresh(&mut cache, self.settings.config_ttl).await {
                        outcomes[i] = Err(e);
                        continue;
                    }
                }
                if !cache.matcher.listens(&ev.project, &ev.kind) {
                    if let Ok(o) = &mut outcomes[i] {
                        o.unknown_kind = true;
                    }
                    continue;
                }
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
            match claims.get(&i) {
                None | Some(Ok(true)) => round.push((i, events[i].clone())),
                Some(Ok(false)) => {
                    if let Ok(o) = &mut outcomes[i] {
                        o.duplicate = true;
                    }
                }
                Some(Err(e)) => outcomes[i] = Err(e.clone()),
            }
        }
        // Calculated events are evaluated in the next round, after what emitted them.
        while !round.is_empty() {
            let mut groups: Vec<(WindowKey, Vec<usize>)> = Vec::new();
            let mut index: HashMap<WindowKey, usize> = HashMap::new();
            for (j, (_, ev)) in round.iter().enumerate() {
                let Cache {
                    matcher, alerts, ..
                } = &*cache;
                matcher.for_each_match(&ev.project, &ev.kind, &ev.entity_id, |id| {
                    let Some(alert) = alerts.get(&id) else {
                        return;
                    };
                    if engine::concerns(&alert.rule, ev).is_none() {
                        return;
                    }
                    let key = WindowKey {
                        alert: id,
                        generation: alert.generation,
                        entity: alert.rule.per_entity.then(|| ev.entity_id.as_str().into()),
                    };
                    let g = *index.entry(key.clone()).or_insert_with(|| {
                        groups.push((key, Vec::new()));
                        groups.len() - 1
                    });
                    groups[g].1.push(j);
                });
            }
            let mut next = Vec::new();
            for (key, members) in groups {
                let evs: Vec<&AcceptedEvent> = members.iter().map(|&j| &round[j].1).collect();
                match self.evaluate_window(&mut cache, key, &evs).await {
                    Ok((rule, steps)) => {
                        for (&j, step) in members.iter().zip(steps) {
                            let origin = round[j].0;
                            let Ok(outcome) = &mut outcomes[origin] else {
                                continue;
                            };
                            let Step::Counted(fired) = step else {
                                continue;
                            };
                            outcome.counted += 1;
                            if let (Some(fired), Some(rule)) = (fired, &rule) {
                                let (activation, emitted) = *fired;
                                outcome.fired.push(Fired {
                                    activation,
                                    rule: rule.clone(),
                                });
                                next.extend(emitted.map(|e| (origin, e)));
                            }
                        }
                    }
                    Err(e) => {
                        for &j in &members {
                            outcomes[round[j].0] = Err(e.clone());
                        }
                    }
                }
            }
            round = next;
        }
        drop(cache);
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
                results[j] = Err(Error::Store(
                    "gave up claiming idempotency keys after repeated conflicts".into(),
                ));
            }
        }
        results
    }

    /// Claims an idempotency key until `at + ttl`; false when it is held (a duplicate).
    async fn claim(
        &self,
        project: &str,
        k: &str,
        at: tocsin_core::model::Timestamp,
        ttl: Span,
    ) -> Result<bool> {
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

    /// Evaluates, in order, the events of one window, committing at each firing and at the
    /// end; after losing a write to a concurrent writer, reads the window and the alert again
    /// and evaluates the uncommitted events anew.
    async fn evaluate_window(
        &self,
        cache: &mut Cache,
        mut key: WindowKey,
        events: &[&AcceptedEvent],
    ) -> Result<(Option<std::sync::Arc<Rule>>, Vec<Step>)> {
        let mut done: Vec<Step> = Vec::with_capacity(events.len());
        let Some(mut rule) = cache.alerts.get(&key.alert).map(|a| a.rule.clone()) else {
            return Ok((None, events.iter().map(|_| Step::Ignored).collect()));
        };
        let mut conflicts = 0;
        'attempt: loop {
            let Some(alert) = cache.alerts.get(&key.alert).cloned() else {
                // Deleted meanwhile: the remaining events count nowhere.
                done.extend(events[done.len()..].iter().map(|_| Step::Ignored));
                return Ok((Some(rule), done));
            };
            rule = alert.rule.clone();
            key.generation = alert.generation;
            let (window, wv) = cache.windows.get(&key).cloned().unwrap_or_default();
            let mut wv = wv;
            let mut alert = alert;
            let mut p = Pending {
                window,
                runtime: alert.runtime.clone(),
                window_dirty: false,
                runtime_dirty: false,
                closed: Vec::new(),
                steps: Vec::new(),
                last_at: tocsin_core::model::Timestamp(0),
            };
            for ev in &events[done.len()..] {
                let Some(passes) = engine::concerns(&rule, ev) else {
                    p.steps.push(Step::Ignored);
                    continue;
                };
                let (counts, closed) = p.runtime.admit(ev.at);
                if let Some(c) = closed {
                    p.closed.push(c);
                    p.runtime_dirty = true;
                }
                if !counts {
                    p.steps.push(Step::Ignored);
                    continue;
                }
                p.window_dirty = true;
                p.last_at = p.last_at.max(ev.at);
                let Some(in_window) = engine::count_in_window(&rule, &mut p.window, ev, passes)
                else {
                    p.steps.push(Step::Counted(None));
                    continue;
                };
                let id = self.next_id("next_activation").await?;
                let (activation, emitted) = engine::fire(&rule, &mut p.runtime, ev, id, in_window);
                match self.commit(&key, &p, wv, &alert, Some(&activation)).await? {
                    Some((new_wv, new_av)) => {
                        wv = new_wv;
                        alert.runtime = p.runtime.clone();
                        alert.v = new_av;
                        cache.put_window(key.clone(), (p.window.clone(), wv));
                        cache.put_alert(alert.clone());
                        for c in p.closed.drain(..) {
                            self.close_activation(c).await?;
                        }
                        done.append(&mut p.steps);
                        done.push(Step::Counted(Some(Box::new((activation, emitted)))));
                        p.window_dirty = false;
                        p.runtime_dirty = false;
                    }
                    None => {
                        conflicts += 1;
                        self.reload(cache, &key, conflicts).await?;
                        continue 'attempt;
                    }
                }
            }
            if p.window_dirty || p.runtime_dirty {
                match self.commit(&key, &p, wv, &alert, None).await? {
                    Some((new_wv, new_av)) => {
                        if p.window_dirty {
                            cache.put_window(key.clone(), (p.window.clone(), new_wv));
                        }
                        if p.runtime_dirty {
                            alert.runtime = p.runtime.clone();
                            alert.v = new_av;
                            cache.put_alert(alert);
                        }
                        for c in p.closed.drain(..) {
                            self.close_activation(c).await?;
                        }
                    }
                    None => {
                        conflicts += 1;
                        self.reload(cache, &key, conflicts).await?;
                        continue 'attempt;
                    }
                }
            }
            done.append(&mut p.steps);
            return Ok((Some(rule), done));
        }
    }

    /// After a lost write: the alert and the window as they are now.
    async fn reload(&self, cache: &mut Cache, key: &WindowKey, conflicts: usize) -> Result<()> {
        if conflicts > MAX_CONFLICTS {
            return Err(Error::Store(format!(
                "gave up after {MAX_CONFLICTS} conflicting concurrent writes to one window"
            )));
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

    /// Writes a window's evaluation: the window alone when nothing else changed (one
    /// `PutItem`), else one transaction with the alert's runtime and the new activation.
    /// Returns the new versions of the window and the alert, or None when a concurrent writer
    /// changed either first.
    async fn commit(
        &self,
        key: &WindowKey,
        p: &Pending,
        wv: u64,
        alert: &StoredAlert,
        activation: Option<&Activation>,
    ) -> Result<Option<(u64, u64)>> {
        let rule = &alert.rule;
        let window_item = self.window_item(key, &p.window, wv + 1, rule, p.last_at)?;
        let (condition, value) = at_version(wv);
        let values = value.map(|v| [(":expected".to_owned(), v)].into());
        if !p.runtime_dirty && activation.is_none() {
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
        if p.window_dirty {
            let put = Put::builder()
                .table_name(self.table())
                .set_item(Some(window_item))
                .condition_expression(condition)
                .set_expression_attribute_values(values)
                .build()
                .map_err(build_err)?;
            tx = tx.transact_items(TransactWriteItem::builder().put(put).build());
        }
        let runtime = Update::builder()
            .table_name(self.table())
            .set_key(Some(key_of_alert(alert)))
            .update_expression("SET rt = :rt, v = :next")
            .condition_expression("v = :expected")
            .expression_attribute_values(":rt", json(&p.runtime)?)
            .expression_attribute_values(":next", n(alert.v + 1))
            .expression_attribute_values(":expected", n(alert.v))
            .build()
            .map_err(build_err)?;
        tx = tx.transact_items(TransactWriteItem::builder().update(runtime).build());
        if let Some(a) = activation {
            let put = Put::builder()
                .table_name(self.table())
                .set_item(Some(self.activation_item(a, 1)?))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(build_err)?;
            tx = tx.transact_items(TransactWriteItem::builder().put(put).build());
        }
        match tx.send().await {
            Ok(_) => Ok(Some((
                if p.window_dirty { wv + 1 } else { wv },
                alert.v + 1,
            ))),
            Err(e) if cancelled_conditions(&e).is_some() => Ok(None),
            Err(e) => Err(sdk_err("TransactWriteItems", e)),
        }
    }

    /// A window item at version `v`, expiring when its newest event (at `last`) leaves the
    /// period: TTL then deletes it, and a later write finds no item, as if it were empty.
    fn window_item(
        &self,
        key: &WindowKey,
        w: &Window,
        v: u64,
        rule: &Rule,
        last: tocsin_core::model::Timestamp,
    ) -> Result<Item> {
        let mut item = key.item_key();
        item.insert("w".into(), s(super::cache::encode_window(w)));
        item.insert("v".into(), n(v));
        if let Some(span) = rule.sustain.or(rule.period) {
            let newest = w.times().last().copied().unwrap_or(last).max(last);
            item.insert("expires_at".into(), n(ttl_secs(newest.plus(span))));
        }
        Ok(item)
    }
}

/// An idempotency key held until `expires`.
fn idempotency_item(project: &str, k: &str, expires: tocsin_core::model::Timestamp) -> Item {
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
    async fn apply_event(&self, event: &AcceptedEvent, ttl: Span) -> Result<EventOutcome> {
        self.evaluate_batch(std::slice::from_ref(event), ttl)
            .await
            .pop()
            .unwrap_or_else(|| Ok(EventOutcome::default()))
    }

    async fn apply_events(&self, events: &[AcceptedEvent], ttl: Span) -> Vec<Result<EventOutcome>> {
        self.evaluate_batch(events, ttl).await
    }
}
