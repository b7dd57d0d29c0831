//! Activations in the embedded store: the records people query (newest first, by project,
//! paged), and the outbox of those with a notification pending.
//!
//! They need not be written as they happen: the log already holds the operations that made
//! them, and a restart replays those after the last snapshot, which makes them again. So new and
//! changed activations stay in memory (`recent`) and are *settled* into fjall in bulk: by
//! ingestion, which writes sorted tables straight to disk (compressed), without fjall's journal
//! or memtable. A settle runs when enough have gathered, and always before a snapshot, whose
//! position must not be ahead of what fjall holds. Reads merge `recent` over fjall.
//!
//! Keyspaces (ids big-endian so that keys sort by id):
//! - `activations`: activation id -> JSON activation
//! - `activations_by_project`: project ++ 0x00 ++ activation id -> empty
//! - `outbox`: activation id -> empty, while a notification of the activation is pending

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use fjall::config::CompressionPolicy;
use fjall::{CompressionType, Database, Keyspace, KeyspaceCreateOptions};
use tocsin_core::engine::Changes;
use tocsin_core::error::Result;
use tocsin_core::model::{Activation, Timestamp};
use tocsin_core::store::ActivationQuery;

use super::{id_key, id_of, read_lock, scoped_key, store_err, to_json, write_lock};

/// An activation as `recent` holds it: its latest version, or that retention deleted it.
#[derive(Debug, Clone)]
enum Entry {
    Kept(Arc<Activation>),
    Deleted { project: String },
}

/// What is not in fjall yet: `current` (being added to) over `settling` (being written).
#[derive(Default)]
struct Recent {
    current: BTreeMap<u64, Entry>,
    settling: Arc<BTreeMap<u64, Entry>>,
}

impl Recent {
    fn get(&self, id: u64) -> Option<&Entry> {
        self.current.get(&id).or_else(|| self.settling.get(&id))
    }

    /// Every entry, the current one where both hold the id, in id order.
    fn merged(&self) -> BTreeMap<u64, &Entry> {
        let mut all: BTreeMap<u64, &Entry> = self.settling.iter().map(|(k, v)| (*k, v)).collect();
        all.extend(self.current.iter().map(|(k, v)| (*k, v)));
        all
    }
}

/// Activations not settled yet, by id (see [`Activations::capture`]).
pub type Captured = Vec<(u64, Option<Arc<Activation>>)>;

/// The activations and the outbox.
pub struct Activations {
    activations: Keyspace,
    by_project: Keyspace,
    outbox: Keyspace,
    recent: RwLock<Recent>,
}

impl Activations {
    pub fn open(db: &Database) -> fjall::Result<Self> {
        // Compressed at every level: activations are JSON with repeated keys, and ingestion
        // writes them once, straight into tables.
        let open = |name: &str| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default()
                    .max_memtable_size(1 << 20)
                    .data_block_compression_policy(CompressionPolicy::all(CompressionType::Lz4))
            })
        };
        Ok(Activations {
            activations: open("activations")?,
            by_project: open("activations_by_project")?,
            outbox: open("outbox")?,
            recent: RwLock::default(),
        })
    }

    /// What is not settled yet, in id order (None: deleted), as of now: with a fjall snapshot
    /// taken at the same moment, every activation (see `backup`).
    pub fn capture(&self) -> Captured {
        read_lock(&self.recent)
            .merged()
            .into_iter()
            .map(|(id, entry)| match entry {
                Entry::Kept(a) => (id, Some(a.clone())),
                Entry::Deleted { .. } => (id, None),
            })
            .collect()
    }

    /// The keyspace of settled activations (id -> JSON).
    pub fn keyspace(&self) -> &Keyspace {
        &self.activations
    }

    /// The highest activation id in fjall (0 when there is none).
    pub fn last_settled_id(&self) -> fjall::Result<u64> {
        Ok(match self.activations.last_key_value() {
            Some(g) => id_of(&g.key()?).unwrap_or(0),
            None => 0,
        })
    }

    fn settled(&self, id: u64) -> Result<Option<Activation>> {
        match self.activations.get(id_key(id)).map_err(store_err)? {
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(store_err),
            None => Ok(None),
        }
    }

    /// The activation `id`, as it stands.
    pub fn get(&self, id: u64) -> Result<Option<Activation>> {
        match read_lock(&self.recent).get(id) {
            Some(Entry::Kept(a)) => return Ok(Some((**a).clone())),
            Some(Entry::Deleted { .. }) => return Ok(None),
            None => {}
        }
        self.settled(id)
    }

    /// Takes in the activation part of a change set: new activations, closes, acknowledgements'
    /// deliveries, deliveries and deletions. The rest of a change set is the engine's state, which the log keeps.
    pub fn apply(&self, changes: Changes) -> Result<()> {
        if changes.activations.is_empty()
            && changes.closed.is_empty()
            && changes.noted.is_empty()
            && changes.deliveries.is_empty()
            && changes.activations_removed.is_empty()
        {
            return Ok(());
        }
        let mut changed: BTreeMap<u64, Arc<Activation>> =
            changes.activations.into_iter().map(|a| (a.id, a)).collect();
        for closed in changes.closed {
            if let Some(a) = self.changing(closed.activation, &mut changed)? {
                Arc::make_mut(a).close(closed.at, &closed.why, &closed.resolved);
            }
        }
        for noted in changes.noted {
            if let Some(a) = self.changing(noted.activation, &mut changed)? {
                Arc::make_mut(a).note_acknowledgement(&noted.deliveries, noted.at);
            }
        }
        for (id, delivery) in changes.deliveries {
            if let Some(a) = self.changing(id, &mut changed)? {
                Arc::make_mut(a).record(delivery);
            }
        }
        let mut recent = write_lock(&self.recent);
        for (id, a) in changed {
            recent.current.insert(id, Entry::Kept(a));
        }
        for (id, project) in changes.activations_removed {
            recent.current.insert(id, Entry::Deleted { project });
        }
        Ok(())
    }

    /// The activation `id` to change in this change set: already in it, or as it stands. None
    /// if it does not exist (retention may have deleted it).
    fn changing<'a>(
        &self,
        id: u64,
        changed: &'a mut BTreeMap<u64, Arc<Activation>>,
    ) -> Result<Option<&'a mut Arc<Activation>>> {
        match changed.entry(id) {
            std::collections::btree_map::Entry::Occupied(e) => Ok(Some(e.into_mut())),
            std::collections::btree_map::Entry::Vacant(e) => {
                Ok(self.get(id)?.map(|a| e.insert(Arc::new(a))))
            }
        }
    }

    /// How many activations wait to be settled.
    pub fn unsettled(&self) -> usize {
        read_lock(&self.recent).current.len()
    }

    /// Sets what is current aside for [`Activations::settle`], unless an earlier settle has not
    /// finished (it failed: the next settle tries it again). True when everything not in fjall
    /// is now set aside, which is what a snapshot needs.
    pub fn begin_settling(&self) -> bool {
        let mut recent = write_lock(&self.recent);
        if recent.current.is_empty() {
            return true;
        }
        if !recent.settling.is_empty() {
            return false;
        }
        recent.settling = Arc::new(std::mem::take(&mut recent.current));
        true
    }

    /// Whether a settle has something to write.
    pub fn settling(&self) -> bool {
        !read_lock(&self.recent).settling.is_empty()
    }

    /// Writes what [`Activations::begin_settling`] set aside into fjall, then lets it go: reads
    /// find it in fjall from then on.
    pub fn settle(&self) -> Result<()> {
        let settling = read_lock(&self.recent).settling.clone();
        if settling.is_empty() {
            return Ok(());
        }
        let mut acts = self.activations.start_ingestion().map_err(store_err)?;
        let mut outbox = self.outbox.start_ingestion().map_err(store_err)?;
        let mut by_project: BTreeMap<Vec<u8>, bool> = BTreeMap::new();
        for (id, entry) in settling.iter() {
            let key = id_key(*id);
            match entry {
                Entry::Kept(a) => {
                    acts.write(key, to_json(&**a)?).map_err(store_err)?;
                    if a.is_pending() {
                        outbox.write(key, []).map_err(store_err)?;
                    } else if !a.deliveries.is_empty() {
                        // It may have been pending when an earlier settle wrote it. One with no
                        // notifications never was: no tombstone to pile up in the outbox.
                        outbox.write_tombstone(key).map_err(store_err)?;
                    }
                    by_project.insert(scoped_key(&a.project, &key), true);
                }
                Entry::Deleted { project } => {
                    acts.write_tombstone(key).map_err(store_err)?;
                    outbox.write_tombstone(key).map_err(store_err)?;
                    by_project.insert(scoped_key(project, &key), false);
                }
            }
        }
        acts.finish().map_err(store_err)?;
        outbox.finish().map_err(store_err)?;
        let mut index = self.by_project.start_ingestion().map_err(store_err)?;
        for (key, kept) in by_project {
            if kept {
                index.write(key, []).map_err(store_err)?;
            } else {
                index.write_tombstone(key).map_err(store_err)?;
            }
        }
        index.finish().map_err(store_err)?;
        write_lock(&self.recent).settling = Arc::default();
        Ok(())
    }

    /// Activations matching `query`, newest first: `recent` merged over fjall.
    pub fn query(&self, query: &ActivationQuery) -> Result<Vec<Activation>> {
        let mut out = Vec::new();
        if query.limit == 0 {
            return Ok(out);
        }
        let mut skip = query.offset;
        let mut take = |a: &Activation| {
            if !query.matches(a) {
                return true;
            }
            if skip > 0 {
                skip -= 1;
                return true;
            }
            out.push(a.clone());
            out.len() < query.limit
        };
        // Held for the query: the writer waits on it only to add activations.
        let recent = read_lock(&self.recent);
        let merged = recent.merged();
        let in_project = |a: &Activation| query.project.as_ref().is_none_or(|p| *p == a.project);
        let mut newer = merged
            .iter()
            .rev()
            .filter_map(|(id, e)| match e {
                Entry::Kept(a) if in_project(a) => Some((*id, a.clone())),
                _ => None,
            })
            .peekable();
        let mut settled_ids: Box<dyn Iterator<Item = Result<u64>>> =
            match &query.project {
                Some(project) => {
                    let prefix = scoped_key(project, &[]);
                    let n = prefix.len();
                    Box::new(
                        self.by_project
                            .prefix(prefix)
                            .rev()
                            .filter_map(move |item| match item.key() {
                                Ok(k) => id_of(&k[n..]).map(Ok),
                                Err(e) => Some(Err(store_err(e))),
                            }),
                    )
                }
                None => Box::new(self.activations.iter().rev().filter_map(
                    |item| match item.key() {
                        Ok(k) => id_of(&k).map(Ok),
                        Err(e) => Some(Err(store_err(e))),
                    },
                )),
            };
        loop {
            let next_settled = match settled_ids.next() {
                Some(id) => Some(id?),
                None => None,
            };
            // Recent ones newer than the next settled one come first.
            while let Some((_, a)) = newer.next_if(|(id, _)| next_settled.is_none_or(|s| *id > s)) {
                if !take(&a) {
                    return Ok(out);
                }
            }
            let Some(id) = next_settled else {
                return Ok(out);
            };
            if merged.contains_key(&id) {
                continue; // its recent version (or its deletion) is what counts
            }
            let Some(a) = self.settled(id)? else { continue };
            if !take(&a) {
                return Ok(out);
            }
        }
    }

    /// The oldest `limit` activations with a notification pending.
    pub fn pending(&self, limit: usize) -> Result<Vec<Activation>> {
        let recent = read_lock(&self.recent);
        let merged = recent.merged();
        let mut ids: Vec<u64> = merged
            .iter()
            .filter_map(|(id, e)| match e {
                Entry::Kept(a) if a.is_pending() => Some(*id),
                _ => None,
            })
            .take(limit)
            .collect();
        let mut settled = 0;
        for item in self.outbox.iter() {
            if settled >= limit {
                break;
            }
            let k = item.key().map_err(store_err)?;
            if let Some(id) = id_of(&k).filter(|id| !merged.contains_key(id)) {
                ids.push(id);
                settled += 1;
            }
        }
        ids.sort_unstable();
        ids.truncate(limit);
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match merged.get(&id) {
                Some(Entry::Kept(a)) => out.push((**a).clone()),
                Some(Entry::Deleted { .. }) => {}
                None => out.extend(self.settled(id)?),
            }
        }
        Ok(out)
    }

    /// (id, project) of the activations older than `before`, oldest first (ids grow with time).
    pub fn before(&self, before: Timestamp) -> Result<Vec<(u64, String)>> {
        let recent = read_lock(&self.recent);
        let merged = recent.merged();
        let mut old: BTreeMap<u64, String> = BTreeMap::new();
        for item in self.activations.iter() {
            let (k, v) = item.into_inner().map_err(store_err)?;
            let a: Activation = serde_json::from_slice(&v).map_err(store_err)?;
            if a.activation_time >= before {
                break;
            }
            if let Some(id) = id_of(&k).filter(|id| !merged.contains_key(id)) {
                old.insert(id, a.project);
            }
        }
        for (id, e) in merged {
            if let Entry::Kept(a) = e
                && a.activation_time < before
            {
                old.insert(id, a.project.clone());
            }
        }
        Ok(old.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use tocsin_core::engine::{Changes, Closed};
    use tocsin_core::model::{Activation, Delivery, DeliveryStatus, NotificationKind, Timestamp};
    use tocsin_core::store::ActivationQuery;

    use super::Activations;

    fn activation(id: u64, project: &str, pending: bool) -> Activation {
        let mut a: Activation = serde_json::from_value(serde_json::json!({
            "id": id, "name": format!("a{}", id % 3), "project": project, "severity": "low",
            "activation_time": Timestamp::from_secs(id as i64 * 10), "entity_id": "e",
            "entity_kind": "job", "criteria": {"count": 1}, "event_kind": "failed",
            "number_of_events": 1, "notifications": [], "reset_time": null
        }))
        .expect("activation");
        if pending {
            a.record(delivery(DeliveryStatus::Pending));
        }
        a
    }

    fn delivery(status: DeliveryStatus) -> Delivery {
        Delivery {
            notification: "hook".into(),
            kind: NotificationKind::Webhook,
            status,
            attempts: 1,
            error: None,
            at: None,
            silence: None,
            resolved: false,
            acknowledged: false,
        }
    }

    fn ids(acts: &[Activation]) -> Vec<u64> {
        acts.iter().map(|a| a.id).collect()
    }

    fn query(project: Option<&str>, offset: usize, limit: usize) -> ActivationQuery {
        ActivationQuery {
            project: project.map(str::to_owned),
            offset,
            limit,
            ..Default::default()
        }
    }

    #[test]
    fn reads_merge_what_is_in_memory_over_what_is_settled() {
        let dir = tempfile::tempdir().expect("dir");
        let db = fjall::Database::builder(dir.path()).open().expect("db");
        let acts = Activations::open(&db).expect("open");
        let fresh = |range: std::ops::Range<u64>| Changes {
            activations: range
                .map(|id| activation(id, if id % 2 == 0 { "even" } else { "odd" }, id % 4 == 1))
                .map(std::sync::Arc::new)
                .collect(),
            ..Default::default()
        };
        acts.apply(fresh(1..11)).expect("applied");
        assert!(acts.begin_settling());
        acts.settle().expect("settled");
        assert_eq!((acts.unsettled(), acts.settling()), (0, false));
        // Newer ones in memory; a settled one closed, one delivered, one deleted.
        acts.apply(fresh(11..16)).expect("applied");
        acts.apply(Changes {
            closed: vec![Closed {
                activation: 3,
                at: Timestamp::from_secs(999),
                why: "reset by ops".into(),
                resolved: Vec::new(),
            }],
            deliveries: vec![(5, delivery(DeliveryStatus::Sent))],
            activations_removed: vec![(4, "even".into())],
            ..Default::default()
        })
        .expect("applied");
        let all = acts.query(&query(None, 0, 100)).expect("query");
        assert_eq!(ids(&all), [15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 3, 2, 1]);
        assert_eq!(all[11].reset_time, Some(Timestamp::from_secs(999)));
        let page = acts.query(&query(None, 3, 4)).expect("page");
        assert_eq!(ids(&page), [12, 11, 10, 9]);
        let odd = acts.query(&query(Some("odd"), 1, 4)).expect("odd");
        assert_eq!(ids(&odd), [13, 11, 9, 7]);
        // Pending: 1, 9 and 13 (5 was delivered), oldest first.
        assert_eq!(ids(&acts.pending(10).expect("pending")), [1, 9, 13]);
        assert_eq!(ids(&acts.pending(2).expect("pending")), [1, 9]);
        assert_eq!(acts.get(4).expect("get"), None);
        let old: Vec<u64> = acts
            .before(Timestamp::from_secs(115))
            .expect("before")
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(old, [1, 2, 3, 5, 6, 7, 8, 9, 10, 11]);
        // Settled again: the same answers from fjall alone.
        assert!(acts.begin_settling());
        acts.settle().expect("settled");
        assert_eq!(acts.query(&query(None, 0, 100)).expect("query"), all);
        assert_eq!(ids(&acts.pending(10).expect("pending")), [1, 9, 13]);
        assert_eq!(acts.get(4).expect("get"), None);
        drop(acts);
        drop(db);
        let db = fjall::Database::builder(dir.path()).open().expect("db");
        let acts = Activations::open(&db).expect("open");
        assert_eq!(
            acts.query(&query(None, 0, 100)).expect("query"),
            all,
            "kept on disk"
        );
    }
}
