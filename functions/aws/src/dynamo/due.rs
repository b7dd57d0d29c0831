//! Time passing on DynamoDB: the units that [`tocsin_core::ops::tick`] runs on. What may be due
//! is found in two places: the cached alerts (an active alert's cooldown end is on its item)
//! and the due index of absences.
//!
//! # The due index
//!
//! An absence is due one span after its entity was last seen. The window item that records the
//! last time also carries the deadline in the sparse `gsi2` (`gsi2pk` = `DUE{shard}` and
//! `gsi2sk` = the deadline in 20-digit microseconds), written in the same conditional write as
//! the time itself, so an event that moves the deadline costs no request of its own. Entities
//! awaited from the moment the alert is armed (its one entity, or `must_report`), which may
//! never report, are covered by the alert item: it is in the index at `armed + span` until a
//! tick has looked at them. Eight shards keep the index's write load off one partition; a tick
//! queries each for `gsi2sk <= now`: reading what is due costs a query per shard, never a
//! scan, and nothing at all when no absence alert exists.
//!
//! # Firing once
//!
//! The index is eventually consistent and only says where to look: the tick reads the alert and
//! each window strongly consistent, and the engine says what is due. A commit is one
//! transaction: the alert's runtime (conditional on its version), each fired entity's window
//! (conditional on its version, or on its absence for an entity never seen; taken out of the
//! index and its version bumped) and the activations. Two ticks at once, or a tick and an
//! event about the entity, meet in those conditions: one wins, the other reads again and finds
//! the absence open (or the entity back).

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use tocsin_core::engine::{Changes, Runtime, absence, intake};
use tocsin_core::error::{Backend, Error, Result};
use tocsin_core::model::{Silence, Timestamp};
use tocsin_core::ops::Ids;
use tocsin_core::store::units::{DueState, DueUnit, TickUnits};

use super::DynamoStore;
use super::cache::{StoredAlert, Versioned, WindowKey};
use super::intake::build_err;
use super::item::{
    DUE_SHARDS, Item, cancelled_conditions, due_sk, get_n, get_s, is_conditional, n, s, sdk_err,
    write_token,
};

/// At most this many absences fire in one transaction: each writes its window and its
/// activation, and the alert's runtime is one more item of the 100 a transaction holds.
const MAX_FIRED_PER_WRITE: usize = 45;

/// What the index says may be due.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// The alert item: its awaited entities, if none reported since it was armed.
    Arm,
    /// A window: its entity has been silent since the deadline.
    Window(WindowKey),
}

impl Entry {
    /// The alert an index item belongs to, and what it says.
    fn of(item: &Item) -> Result<(u64, Entry)> {
        let pk = get_s(item, "pk")?;
        if pk == "ALERT" {
            return Ok((get_n(item, "id")?, Entry::Arm));
        }
        let bad = || Error::backend(Backend::DynamoDb, format!("a bad window key `{pk}`"));
        let mut parts = pk.strip_prefix("W#").ok_or_else(bad)?.split('#');
        let alert: u64 = parts.next().and_then(|a| a.parse().ok()).ok_or_else(bad)?;
        let generation: u64 = parts.next().and_then(|g| g.parse().ok()).ok_or_else(bad)?;
        let entity = get_s(item, "sk")?.strip_prefix("E#").map(Box::from);
        Ok((
            alert,
            Entry::Window(WindowKey {
                alert,
                generation,
                entity,
            }),
        ))
    }
}

/// A tick on one store instance.
pub(super) struct TickSession {
    pub store: DynamoStore,
    /// What the due index said, by alert.
    entries: BTreeMap<u64, Vec<Entry>>,
}

impl TickSession {
    pub fn new(store: DynamoStore) -> Self {
        TickSession {
            store,
            entries: BTreeMap::new(),
        }
    }
}

impl TickUnits for TickSession {
    type Due<'d>
        = Due<'d>
    where
        Self: 'd;

    const BACKEND: Backend = Backend::DynamoDb;

    /// The cached alerts whose cooldown ended, and what the due index holds up to `now`. A
    /// shard of the index that cannot be read is left for the next tick; the others are read.
    async fn due(&mut self, now: Timestamp) -> Result<Vec<u64>> {
        let (mut due, watched) = {
            let mut cache = self.store.cache.lock().await;
            self.store
                .refresh(&mut cache, self.store.settings.config_ttl)
                .await?;
            let due: Vec<u64> = cache
                .alerts
                .values()
                .filter(|a| intake::cooldown_due(&a.runtime, now))
                .map(|a| a.id)
                .collect();
            (due, cache.alerts.values().any(|a| a.rule.absence.is_some()))
        };
        if watched {
            for shard in 0..DUE_SHARDS {
                let items = match self.store.due_items(shard, now).await {
                    Ok(items) => items,
                    Err(e) => {
                        tracing::error!(shard, error = %e, "cannot read a shard of the due index; the next tick reads it");
                        continue;
                    }
                };
                for item in items {
                    let (alert, entry) = Entry::of(&item)?;
                    self.entries.entry(alert).or_default().push(entry);
                }
            }
        }
        due.extend(self.entries.keys().copied());
        due.sort_unstable();
        due.dedup();
        Ok(due)
    }

    async fn load_due(&mut self, alert: u64, now: Timestamp) -> Result<Option<Due<'_>>> {
        let entries = self.entries.remove(&alert).unwrap_or_default();
        let Some(stored) = self.store.current_alert(alert).await? else {
            for entry in &entries {
                self.store.unindex(entry).await?;
            }
            return Ok(None);
        };
        let mut due = Due {
            store: &self.store,
            id: alert,
            entries,
            alert: stored,
            gone: false,
            runtime: Runtime::default(),
            candidates: Vec::new(),
            windows: Vec::new(),
            arm: false,
            silences: Vec::new(),
            ids: Ids::provisional(),
            changes: Changes::default(),
            now,
        };
        due.reload().await?;
        Ok((!due.gone).then_some(due))
    }
}

/// One alert a tick settles on DynamoDB.
pub(super) struct Due<'d> {
    store: &'d DynamoStore,
    id: u64,
    entries: Vec<Entry>,
    /// As stored (or as last seen, when it is gone).
    alert: StoredAlert,
    /// Deleted meanwhile: nothing to settle.
    gone: bool,
    /// As evaluated.
    runtime: Runtime,
    candidates: Vec<(String, Option<Timestamp>)>,
    /// The windows looked at: key, entity, as stored.
    windows: Vec<(WindowKey, String, Versioned)>,
    /// Whether the entities awaited from arming were looked at (the alert item leaves the
    /// index with the next commit).
    arm: bool,
    silences: Vec<Silence>,
    ids: Ids,
    changes: Changes,
    now: Timestamp,
}

impl DueUnit for Due<'_> {
    fn max_fired(&self) -> usize {
        MAX_FIRED_PER_WRITE
    }

    fn split(&mut self) -> (DueState<'_>, &mut Ids, &mut Changes) {
        (
            DueState {
                alert: self.id,
                rule: &self.alert.rule,
                runtime: &mut self.runtime,
                candidates: &self.candidates,
                silences: &self.silences,
            },
            &mut self.ids,
            &mut self.changes,
        )
    }

    async fn reserve(&mut self, count: u64) -> Result<()> {
        let last = self.store.next_ids("next_activation", count).await?;
        self.ids = Ids::from(last + 1 - count);
        self.runtime = self.alert.runtime.clone();
        self.changes = Changes::default();
        Ok(())
    }

    /// One transaction: the runtime (out of the index when the awaited entities were looked
    /// at), each fired entity's window, the activations; then the closed activations stamped.
    async fn commit(&mut self) -> Result<bool> {
        let alert = self.alert.clone();
        if self.gone || (self.runtime == alert.runtime && !self.arm) {
            return Ok(true);
        }
        let token = write_token();
        let mut tx =
            self.store
                .client
                .transact_write_items()
                .transact_items(self.store.runtime_update(
                    &alert,
                    &self.runtime,
                    self.arm,
                    token,
                )?);
        let mut written = Vec::new();
        for a in &self.changes.activations {
            if let Some((k, _, w)) = self.windows.iter().find(|(_, e, _)| *e == a.entity_id) {
                tx = tx.transact_items(self.store.fired_window(k, w)?);
                written.push(k.clone());
            }
        }
        for a in &self.changes.activations {
            tx = tx.transact_items(self.store.activation_put(a)?);
        }
        match tx.send().await {
            Ok(_) => {}
            Err(e) if cancelled_conditions(&e).is_some() => {
                // A retried write of this very commit finds its token on the alert.
                let mine = self
                    .store
                    .read_alert(alert.rule.project(), alert.rule.name())
                    .await?
                    .is_some_and(|a| a.writers.contains(&token));
                if !mine {
                    return Ok(false);
                }
            }
            Err(e) => return Err(sdk_err("TransactWriteItems", e)),
        }
        let mut stored = alert;
        stored.runtime = self.runtime.clone();
        stored.v += 1;
        if self.arm {
            stored.arm_due = None;
            self.arm = false;
        }
        {
            let mut cache = self.store.cache.lock().await;
            cache.put_alert(stored.clone());
            for (k, _, w) in &mut self.windows {
                if written.contains(k) {
                    w.v += 1;
                    cache.put_window(k.clone(), w.clone());
                }
            }
        }
        self.alert = stored;
        for c in std::mem::take(&mut self.changes.closed) {
            self.store.close_activation(c).await?;
        }
        self.changes = Changes::default();
        self.ids = Ids::provisional();
        Ok(true)
    }

    /// Reads the alert and the windows the index named (strongly consistent); entries of a
    /// deleted alert or an old window generation leave the index.
    async fn reload(&mut self) -> Result<()> {
        self.changes = Changes::default();
        self.ids = Ids::provisional();
        self.windows.clear();
        self.candidates.clear();
        let Some(alert) = self.store.current_alert(self.id).await? else {
            for entry in &self.entries {
                self.store.unindex(entry).await?;
            }
            self.gone = true;
            return Ok(());
        };
        for entry in &self.entries {
            match entry {
                Entry::Window(k) if k.generation == alert.generation => {
                    let entity = match &k.entity {
                        Some(e) => e.to_string(),
                        None => match absence::awaited(&alert.rule).first() {
                            Some(e) => e.clone(),
                            None => continue,
                        },
                    };
                    let stored = self.store.read_window(k).await?;
                    self.windows.push((k.clone(), entity, stored));
                }
                Entry::Window(_) => self.store.unindex(entry).await?,
                Entry::Arm => {}
            }
        }
        self.arm =
            self.entries.contains(&Entry::Arm) && alert.arm_due.is_some_and(|d| d <= self.now);
        let awaited = absence::awaited(&alert.rule);
        if self.arm {
            for entity in awaited {
                if self.windows.iter().any(|(_, e, _)| e == entity) {
                    continue;
                }
                let k = WindowKey {
                    alert: alert.id,
                    generation: alert.generation,
                    entity: alert.rule.per_entity.then(|| entity.as_str().into()),
                };
                let stored = self.store.read_window(&k).await?;
                self.windows.push((k, entity.clone(), stored));
            }
        }
        // A window that is not there was never seen: that counts for the awaited ones only.
        self.candidates = self
            .windows
            .iter()
            .filter(|(_, e, w)| w.v > 0 || (self.arm && awaited.contains(e)))
            .map(|(_, e, w)| (e.clone(), w.window.last()))
            .collect();
        self.silences = {
            let cache = self.store.cache.lock().await;
            cache.silences.of(alert.rule.project()).to_vec()
        };
        self.runtime = alert.runtime.clone();
        self.alert = alert;
        Ok(())
    }
}

impl DynamoStore {
    /// The items of one shard of the due index whose deadline is `now` or earlier.
    async fn due_items(&self, shard: u64, now: Timestamp) -> Result<Vec<Item>> {
        self.client
            .query()
            .table_name(self.table())
            .index_name("gsi2")
            .key_condition_expression("gsi2pk = :pk AND gsi2sk <= :now")
            .expression_attribute_values(":pk", s(format!("DUE{shard}")))
            .expression_attribute_values(":now", s(due_sk(now)))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| sdk_err("Query", e))
    }

    /// The alert with id `id` as stored now (strongly consistent), None if it is gone.
    async fn current_alert(&self, id: u64) -> Result<Option<StoredAlert>> {
        let named = |cache: &super::cache::Cache| {
            cache
                .alerts
                .get(&id)
                .map(|a| (a.rule.project().to_owned(), a.rule.name().to_owned()))
        };
        let mut cache = self.cache.lock().await;
        let mut found = named(&cache);
        if found.is_none() {
            // Created a moment ago by another instance, perhaps.
            cache.invalidate();
            self.refresh(&mut cache, self.settings.config_ttl).await?;
            found = named(&cache);
        }
        drop(cache);
        let Some((project, name)) = found else {
            return Ok(None);
        };
        Ok(self
            .read_alert(&project, &name)
            .await?
            .filter(|a| a.id == id))
    }

    /// The write of a window whose absence fired: out of the due index, its version bumped
    /// (conditional on the one read), or created empty for an entity never seen, so that an
    /// event about it that raced the firing loses its write and reads the firing.
    fn fired_window(&self, k: &WindowKey, w: &Versioned) -> Result<TransactWriteItem> {
        if w.v == 0 {
            let mut item = k.item_key();
            item.insert("w".into(), s(""));
            item.insert("v".into(), n(1));
            let put = Put::builder()
                .table_name(self.table())
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(build_err)?;
            return Ok(TransactWriteItem::builder().put(put).build());
        }
        let update = Update::builder()
            .table_name(self.table())
            .set_key(Some(k.item_key()))
            .update_expression("SET v = :next REMOVE gsi2pk, gsi2sk")
            .condition_expression("v = :expected")
            .expression_attribute_values(":next", n(w.v + 1))
            .expression_attribute_values(":expected", n(w.v))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Takes an entry that no longer means anything (a deleted alert's, an old generation's)
    /// out of the index, unless its item is gone already.
    async fn unindex(&self, entry: &Entry) -> Result<()> {
        let Entry::Window(k) = entry else {
            return Ok(());
        };
        let result = self
            .client
            .update_item()
            .table_name(self.table())
            .set_key(Some(k.item_key()))
            .update_expression("REMOVE gsi2pk, gsi2sk")
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_conditional(&e) => Ok(()),
            Err(e) => Err(sdk_err("UpdateItem", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::item::key;
    use super::*;

    #[test]
    fn index_entries_name_their_alert_and_window() {
        let mut window = key("W#12#3", "E#ep-1");
        window.insert("gsi2sk".into(), s(due_sk(Timestamp(1))));
        let (alert, entry) = Entry::of(&window).expect("an entry");
        assert_eq!(alert, 12);
        assert_eq!(
            entry,
            Entry::Window(WindowKey {
                alert: 12,
                generation: 3,
                entity: Some("ep-1".into())
            })
        );
        let mut alert_item = key("ALERT", "p\u{1}a");
        alert_item.insert("id".into(), n(7));
        assert_eq!(Entry::of(&alert_item).expect("an entry"), (7, Entry::Arm));
        assert!(Entry::of(&key("W#x", "#")).is_err());
    }
}
