//! Absence alerts on DynamoDB: deadlines kept where the scheduled tick can query them, and each
//! absence fired once however many ticks run.
//!
//! # The due index
//!
//! An absence is due one span after its entity was last seen. The window item that records the
//! last time also carries the deadline in the sparse `gsi2` (`gsi2pk` = `DUE{shard}`, `gsi2sk`
//! = the deadline in 20-digit microseconds), written in the same conditional write as the time
//! itself, so an event that moves the deadline costs no request of its own. Entities awaited
//! from the moment the alert is armed (its one entity, or `must_report`), which may never
//! report, are covered by the alert item: it is in the index at `armed + span` until a tick has
//! looked at them. Eight shards keep the index's write load off one partition; a tick queries
//! each for `gsi2sk <= now`: reading what is due costs a query per shard, never a scan, and
//! nothing at all when no absence alert exists.
//!
//! # Firing once
//!
//! The index is eventually consistent and only says where to look: the tick reads the alert and
//! each window strongly consistent and asks the engine what is due ([`absence::due_among`]).
//! A firing is one transaction: the alert's runtime (conditional on its version), each fired
//! entity's window (conditional on its version, or on its absence for an entity never seen;
//! taken out of the index and its version bumped) and the activations. Two ticks at once, or a
//! tick and an event about the entity, meet in those conditions: one wins, the other reads again
//! and finds the absence open (or the entity back). An event that lost to the tick re-reads its
//! window and alert and closes the absence it just ended.

use std::collections::BTreeMap;
use std::hash::Hasher;

use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use tocsin_core::engine::{Changes, Fired, absence};
use tocsin_core::error::{Backend, Error, Result};
use tocsin_core::model::Timestamp;

use super::cache::{StoredAlert, Versioned, WindowKey};
use super::item::{Item, cancelled_conditions, get_n, get_s, is_conditional, n, s, sdk_err};
use super::{DynamoStore, MAX_CONFLICTS};

/// Partitions of the due index.
const DUE_SHARDS: u64 = 8;

/// At most this many absences fire in one transaction: each writes its window and its
/// activation, and the alert's runtime is one more item of the 100 a transaction holds.
const MAX_FIRED_PER_WRITE: usize = 45;

/// The due index's partition for alert `alert`'s window of `entity` (None: the alert item or
/// its shared window).
pub fn shard(alert: u64, entity: Option<&str>) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    h.write_u64(alert);
    if let Some(e) = entity {
        h.write(e.as_bytes());
    }
    h.finish() % DUE_SHARDS
}

/// Puts `item` in the due index at `deadline`.
pub fn index_due(item: &mut Item, shard: u64, deadline: Timestamp) {
    item.insert("gsi2pk".into(), s(format!("DUE{shard}")));
    item.insert("gsi2sk".into(), s(due_sk(deadline)));
}

/// A deadline as the index sorts it: microseconds in 20 digits (before 1970: zero).
fn due_sk(t: Timestamp) -> String {
    format!("{:020}", t.0.max(0))
}

/// The deadline an item is in the due index at, if it is.
pub fn indexed_deadline(item: &Item) -> Result<Option<Timestamp>> {
    let indexed = item
        .get("gsi2pk")
        .and_then(|v| v.as_s().ok())
        .is_some_and(|pk| pk.starts_with("DUE"));
    if !indexed {
        return Ok(None);
    }
    let sk = get_s(item, "gsi2sk")?;
    sk.parse()
        .map(|us| Some(Timestamp(us)))
        .map_err(|_| Error::backend(Backend::DynamoDb, format!("a bad due deadline `{sk}`")))
}

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

impl DynamoStore {
    /// Fires every absence due by `now` (the tick of the AWS deployment's schedule).
    pub(super) async fn tick_absences(&self, now: Timestamp) -> Result<Vec<Fired>> {
        let watched = {
            let cache = self.cache.lock().await;
            cache.alerts.values().any(|a| a.rule.absence.is_some())
        };
        if !watched {
            return Ok(Vec::new());
        }
        let mut by_alert: BTreeMap<u64, Vec<Entry>> = BTreeMap::new();
        for shard in 0..DUE_SHARDS {
            for item in self.due_items(shard, now).await? {
                let (alert, entry) = Entry::of(&item)?;
                by_alert.entry(alert).or_default().push(entry);
            }
        }
        let mut fired = Vec::new();
        for (alert, entries) in by_alert {
            fired.extend(self.settle_absences(alert, &entries, now).await?);
        }
        Ok(fired)
    }

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

    /// Fires what is due of one alert's `entries`, reading the alert and the windows again
    /// after losing a write to an event or another tick. Entries of a deleted alert or an old
    /// window generation leave the index.
    async fn settle_absences(
        &self,
        id: u64,
        entries: &[Entry],
        now: Timestamp,
    ) -> Result<Vec<Fired>> {
        let mut fired = Vec::new();
        for _ in 0..MAX_CONFLICTS {
            let Some(alert) = self.current_alert(id).await? else {
                for entry in entries {
                    self.unindex(entry).await?;
                }
                return Ok(fired);
            };
            let mut windows: Vec<(WindowKey, String, Versioned)> = Vec::new();
            for entry in entries {
                match entry {
                    Entry::Window(k) if k.generation == alert.generation => {
                        let entity = match &k.entity {
                            Some(e) => e.to_string(),
                            None => match absence::awaited(&alert.rule).first() {
                                Some(e) => e.clone(),
                                None => continue,
                            },
                        };
                        windows.push((k.clone(), entity, self.read_window(k).await?));
                    }
                    Entry::Window(_) => self.unindex(entry).await?,
                    Entry::Arm => {}
                }
            }
            let arm = entries.contains(&Entry::Arm) && alert.arm_due.is_some_and(|d| d <= now);
            if arm {
                for entity in absence::awaited(&alert.rule) {
                    if windows.iter().any(|(_, e, _)| e == entity) {
                        continue;
                    }
                    let k = WindowKey {
                        alert: alert.id,
                        generation: alert.generation,
                        entity: alert.rule.per_entity.then(|| entity.as_str().into()),
                    };
                    let window = self.read_window(&k).await?;
                    windows.push((k, entity.clone(), window));
                }
            }
            // A window that is not there was never seen: that counts for the awaited ones only.
            let awaited = absence::awaited(&alert.rule);
            let candidates = windows
                .iter()
                .filter(|(_, e, w)| w.v > 0 || (arm && awaited.contains(e)))
                .map(|(_, e, w)| (e.as_str(), w.window.last()));
            let due = absence::due_among(&alert.rule, &alert.runtime, candidates, now);
            if due.is_empty() && !arm {
                return Ok(fired);
            }
            match self.fire_absences(alert, due, &windows, arm).await? {
                Some(now_fired) => {
                    fired.extend(now_fired);
                    return Ok(fired);
                }
                None => continue,
            }
        }
        Err(Error::backend(
            Backend::DynamoDb,
            format!("gave up firing absences of alert {id} after {MAX_CONFLICTS} conflicts"),
        ))
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

    /// Fires `due` (in chunks that fit a transaction) and takes the alert out of the index if
    /// its awaited entities were looked at (`arm`). None when a concurrent writer won: the
    /// caller reads again (chunks committed before stay committed, and are found open).
    async fn fire_absences(
        &self,
        mut alert: StoredAlert,
        due: Vec<(String, Timestamp)>,
        windows: &[(WindowKey, String, Versioned)],
        arm: bool,
    ) -> Result<Option<Vec<Fired>>> {
        let silences = {
            let cache = self.cache.lock().await;
            cache.silences.of(alert.rule.project()).to_vec()
        };
        let chunks: Vec<Vec<(String, Timestamp)>> = if due.is_empty() {
            vec![Vec::new()]
        } else {
            due.chunks(MAX_FIRED_PER_WRITE).map(<[_]>::to_vec).collect()
        };
        let last = chunks.len() - 1;
        let mut all = Vec::new();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let count = chunk.len() as u64;
            let mut next = if count > 0 {
                self.next_ids("next_activation", count).await? + 1 - count
            } else {
                0
            };
            let mut ids = || {
                next += 1;
                next - 1
            };
            let mut runtime = alert.runtime.clone();
            let mut changes = Changes::default();
            let fired = absence::fire_due(
                alert.id,
                &alert.rule,
                &mut runtime,
                &silences,
                chunk,
                &mut ids,
                &mut changes,
            );
            let unarm = arm && i == last;
            let mut tx = self
                .client
                .transact_write_items()
                .transact_items(self.runtime_update(&alert, &runtime, unarm)?);
            let mut written = Vec::new();
            for f in &fired {
                let entity = &f.activation.entity_id;
                if let Some((k, _, w)) = windows.iter().find(|(_, e, _)| e == entity) {
                    tx = tx.transact_items(self.fired_window(k, w)?);
                    written.push((k.clone(), w.clone()));
                }
            }
            for a in &changes.activations {
                tx = tx.transact_items(self.activation_put(a)?);
            }
            match tx.send().await {
                Ok(_) => {}
                Err(e) if cancelled_conditions(&e).is_some() => return Ok(None),
                Err(e) => return Err(sdk_err("TransactWriteItems", e)),
            }
            alert.runtime = runtime;
            alert.v += 1;
            if unarm {
                alert.arm_due = None;
            }
            let mut cache = self.cache.lock().await;
            cache.put_alert(alert.clone());
            for (k, w) in written {
                let v = w.v + 1;
                cache.put_window(k, Versioned { v, ..w });
            }
            drop(cache);
            all.extend(fired);
        }
        Ok(Some(all))
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

fn build_err(e: impl std::fmt::Display) -> Error {
    Error::backend(
        Backend::DynamoDb,
        format!("cannot build a DynamoDB request: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::super::item::key;
    use super::*;

    #[test]
    fn deadlines_sort_as_text_as_they_do_as_times() {
        let early = due_sk(Timestamp::from_secs(999));
        let late = due_sk(Timestamp::from_secs(1_000));
        assert!(early < late);
        assert_eq!(due_sk(Timestamp(-5)), "00000000000000000000");
        let mut item = key("ALERT", "p\u{1}a");
        index_due(&mut item, 3, Timestamp(42));
        assert_eq!(
            indexed_deadline(&item).expect("readable"),
            Some(Timestamp(42))
        );
        item.insert("gsi2pk".into(), s("PENDING"));
        assert_eq!(
            indexed_deadline(&item).expect("readable"),
            None,
            "the outbox's"
        );
    }

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
