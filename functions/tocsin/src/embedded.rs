//! The embedded store: the engine's in-memory state ([`MemoryState`]) with a write-through to
//! fjall, an LSM key-value store with a journal. Every operation applies its change in memory
//! and commits the exact [`Changes`] it reports in one atomic fjall batch before answering, all
//! under one lock: a reader never sees state that is not on its way to disk.
//!
//! Durability: a committed batch is in the OS's buffers, so it survives `kill -9` of the
//! process; [`Durability::Fsync`] also fdatasyncs each batch (surviving power loss, at a
//! latency cost), and [`Durability::Os`] leaves that to a periodic sync by the host.
//!
//! Keyspaces (keys big-endian so that they sort by id):
//! - `alerts`: alert id -> JSON [`Persisted`] (rule with secrets, runtime, dates)
//! - `windows`: alert id ++ entity id (empty for a shared window) -> JSON list of times
//! - `activations`: activation id -> JSON activation
//! - `activations_by_project`: project ++ 0x00 ++ activation id -> empty
//! - `idempotency`: project ++ 0x00 ++ key -> expiry (i64 big-endian microseconds)

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use fjall::{
    Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch as WriteBatch, PersistMode,
};
use serde::{Deserialize, Serialize};
use tocsin_core::engine::{Runtime, Window};
use tocsin_core::error::{Error, Result};
use tocsin_core::model::{AcceptedEvent, Activation, NotificationState, Span, Timestamp};
use tocsin_core::rule::Rule;
use tocsin_core::store::{
    ActivationQuery, ActivationStore, AlertEntry, AlertRecord, AlertStore, Changes, EventOutcome,
    EventStore, MemoryState, PutAlert, PutOutcome, WindowChange, Windows,
};

/// How hard each commit tries to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Into the OS's buffers (survives a crash of the process, not of the machine); the host
    /// syncs to disk periodically.
    #[default]
    Os,
    /// fdatasync on every commit (survives power loss).
    Fsync,
}

/// Why the embedded store could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the data directory {path}: {source}")]
    Db { path: String, source: fjall::Error },
    #[error("the data directory holds a record that cannot be read ({what}): {detail}")]
    Corrupt { what: &'static str, detail: String },
}

/// An alert as written to disk.
#[derive(Serialize, Deserialize)]
struct Persisted {
    rule: Rule,
    runtime: Runtime,
    created: Timestamp,
    updated: Timestamp,
}

struct Keyspaces {
    alerts: Keyspace,
    windows: Keyspace,
    activations: Keyspace,
    by_project: Keyspace,
    idempotency: Keyspace,
}

/// The persistent store of `tocsin serve`.
pub struct EmbeddedStore {
    db: Database,
    ks: Keyspaces,
    state: Mutex<MemoryState>,
    durability: Durability,
}

fn store_err(e: impl std::fmt::Display) -> Error {
    Error::Store(e.to_string())
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(store_err)
}

fn id_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

fn id_of(key: &[u8]) -> Option<u64> {
    key.get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

fn scoped_key(scope: &str, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(scope.len() + 1 + rest.len());
    k.extend_from_slice(scope.as_bytes());
    k.push(0);
    k.extend_from_slice(rest);
    k
}

fn window_key(alert: u64, entity: Option<&str>) -> Vec<u8> {
    let mut k = id_key(alert).to_vec();
    k.extend_from_slice(entity.unwrap_or("").as_bytes());
    k
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir` and loads alerts, windows and idempotency keys.
    pub fn open(dir: &Path, durability: Durability) -> std::result::Result<Self, OpenError> {
        let db_err = |source| OpenError::Db {
            path: dir.display().to_string(),
            source,
        };
        let db = Database::builder(dir)
            .cache_size(4 * 1024 * 1024)
            .open()
            .map_err(db_err)?;
        let open = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default);
        let ks = Keyspaces {
            alerts: open("alerts").map_err(db_err)?,
            windows: open("windows").map_err(db_err)?,
            activations: open("activations").map_err(db_err)?,
            by_project: open("activations_by_project").map_err(db_err)?,
            idempotency: open("idempotency").map_err(db_err)?,
        };
        let state = Self::load(&ks)?;
        Ok(EmbeddedStore {
            db,
            ks,
            state: Mutex::new(state),
            durability,
        })
    }

    fn load(ks: &Keyspaces) -> std::result::Result<MemoryState, OpenError> {
        let corrupt = |what: &'static str| {
            move |e: &dyn std::fmt::Display| OpenError::Corrupt {
                what,
                detail: e.to_string(),
            }
        };
        let last_activation = match ks.activations.last_key_value() {
            Some(g) => id_of(&g.key().map_err(|e| corrupt("activation key")(&e))?).unwrap_or(0),
            None => 0,
        };
        let mut state = MemoryState::new(last_activation);
        let mut entries = BTreeMap::new();
        for item in ks.alerts.iter() {
            let (k, v) = item.into_inner().map_err(|e| corrupt("alert")(&e))?;
            let id = id_of(&k).ok_or_else(|| corrupt("alert key")(&"short key"))?;
            let p: Persisted = serde_json::from_slice(&v).map_err(|e| corrupt("alert")(&e))?;
            let windows = if p.rule.per_entity {
                Windows::PerEntity(Default::default())
            } else {
                Windows::Shared(Window::default())
            };
            let record = AlertRecord {
                id,
                rule: Arc::new(p.rule),
                runtime: p.runtime,
                created: p.created,
                updated: p.updated,
            };
            entries.insert(id, AlertEntry { record, windows });
        }
        for item in ks.windows.iter() {
            let (k, v) = item.into_inner().map_err(|e| corrupt("window")(&e))?;
            let Some(id) = id_of(&k) else { continue };
            let Some(entry) = entries.get_mut(&id) else {
                continue;
            };
            let entity = std::str::from_utf8(&k[8..]).map_err(|e| corrupt("window key")(&e))?;
            let window: Window = serde_json::from_slice(&v).map_err(|e| corrupt("window")(&e))?;
            let entity = entry.record.rule.per_entity.then_some(entity);
            entry.windows.restore(entity, window);
        }
        for entry in entries.into_values() {
            state.restore_alert(entry);
        }
        for item in ks.idempotency.iter() {
            let (k, v) = item
                .into_inner()
                .map_err(|e| corrupt("idempotency key")(&e))?;
            let Some(split) = k.iter().position(|b| *b == 0) else {
                continue;
            };
            let (Ok(project), Ok(key)) = (
                std::str::from_utf8(&k[..split]),
                std::str::from_utf8(&k[split + 1..]),
            ) else {
                continue;
            };
            let expires = v
                .as_ref()
                .try_into()
                .map(i64::from_be_bytes)
                .map(Timestamp)
                .unwrap_or_default();
            state.restore_idempotency(project, key, expires);
        }
        Ok(state)
    }

    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn batch(&self) -> WriteBatch {
        // A batch left without a mode stays in fjall's journal buffer, in this process: a
        // `kill -9` would lose it. `Buffer` hands it to the OS before the answer is released.
        let mode = match self.durability {
            Durability::Os => PersistMode::Buffer,
            Durability::Fsync => PersistMode::SyncData,
        };
        self.db.batch().durability(Some(mode))
    }

    /// Runs `f` on the state and commits what it changed, under the lock.
    fn apply<R>(&self, f: impl FnOnce(&mut MemoryState, &mut Changes) -> Result<R>) -> Result<R> {
        let mut state = self.lock();
        let mut changes = Changes::default();
        let r = f(&mut state, &mut changes);
        self.commit(&state, changes)?;
        r
    }

    fn commit(&self, state: &MemoryState, changes: Changes) -> Result<()> {
        let mut batch = self.batch();
        let mut alerts = changes.alerts;
        alerts.sort_unstable();
        alerts.dedup();
        for id in alerts {
            let Some(entry) = state.entry(id) else {
                continue;
            };
            let r = &entry.record;
            let p = Persisted {
                rule: (*r.rule).clone(),
                runtime: r.runtime.clone(),
                created: r.created,
                updated: r.updated,
            };
            batch.insert(&self.ks.alerts, id_key(id), to_json(&p)?);
        }
        // Windows: settle each key's final value first (a clear then a put of the same key in
        // one batch would be ambiguous in an LSM batch).
        let mut windows: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        let mut cleared = changes.removed.clone();
        for change in &changes.windows {
            if let WindowChange::Clear { alert } = change {
                cleared.push(*alert);
            }
        }
        for alert in cleared {
            for item in self.ks.windows.prefix(id_key(alert)) {
                let k = item.key().map_err(store_err)?;
                windows.insert(k.to_vec(), None);
            }
        }
        for change in changes.windows {
            if let WindowChange::Put { alert, entity } = change {
                let window = state
                    .entry(alert)
                    .and_then(|e| e.windows.get(entity.as_deref()));
                let key = window_key(alert, entity.as_deref());
                match window {
                    Some(w) if !w.is_empty() => windows.insert(key, Some(to_json(w)?)),
                    _ => windows.insert(key, None),
                };
            }
        }
        for (k, v) in windows {
            match v {
                Some(v) => batch.insert(&self.ks.windows, k, v),
                None => batch.remove(&self.ks.windows, k),
            }
        }
        for id in changes.removed {
            batch.remove(&self.ks.alerts, id_key(id));
        }
        let mut new_activations: BTreeMap<u64, Activation> =
            changes.activations.into_iter().map(|a| (a.id, a)).collect();
        for closed in changes.closed {
            if let Some(a) = new_activations.get_mut(&closed.activation) {
                a.reset_time.get_or_insert(closed.at);
            } else if let Some(mut a) = self.read_activation(closed.activation)?
                && a.reset_time.is_none()
            {
                a.reset_time = Some(closed.at);
                batch.insert(&self.ks.activations, id_key(a.id), to_json(&a)?);
            }
        }
        for (id, a) in new_activations {
            batch.insert(&self.ks.activations, id_key(id), to_json(&a)?);
            batch.insert(&self.ks.by_project, scoped_key(&a.project, &id_key(id)), []);
        }
        for (project, key, expires) in changes.idempotency {
            batch.insert(
                &self.ks.idempotency,
                scoped_key(&project, key.as_bytes()),
                expires.0.to_be_bytes(),
            );
        }
        if batch.is_empty() {
            return Ok(());
        }
        batch.commit().map_err(store_err)
    }

    fn read_activation(&self, id: u64) -> Result<Option<Activation>> {
        match self.ks.activations.get(id_key(id)).map_err(store_err)? {
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(store_err),
            None => Ok(None),
        }
    }

    /// Flushes the journal to disk (the periodic sync of [`Durability::Os`], and shutdown).
    pub fn sync(&self) -> Result<()> {
        self.db.persist(PersistMode::SyncData).map_err(store_err)
    }

    /// Forgets idempotency keys that expired by `now`; returns how many.
    pub fn prune_idempotency(&self, now: Timestamp) -> Result<usize> {
        let mut state = self.lock();
        let expired = state.prune_idempotency(now);
        let mut batch = self.batch();
        for (project, key) in &expired {
            batch.remove(&self.ks.idempotency, scoped_key(project, key.as_bytes()));
        }
        if !batch.is_empty() {
            batch.commit().map_err(store_err)?;
        }
        Ok(expired.len())
    }
}

#[async_trait]
impl AlertStore for EmbeddedStore {
    async fn put_alert(&self, put: PutAlert) -> Result<PutOutcome> {
        self.apply(|s, c| s.put_alert(put, c))
    }
    async fn get_alert(&self, project: &str, name: &str) -> Result<Option<AlertRecord>> {
        Ok(self.lock().get(project, name).map(|e| e.record.clone()))
    }
    async fn list_alerts(
        &self,
        project: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<AlertRecord>> {
        Ok(self.lock().list(project, offset, limit))
    }
    async fn delete_alert(&self, project: &str, name: &str) -> Result<bool> {
        self.apply(|s, c| Ok(s.delete(project, name, c)))
    }
    async fn reset_alert(&self, project: &str, name: &str, now: Timestamp) -> Result<bool> {
        self.apply(|s, c| Ok(s.reset(project, name, now, c)))
    }
    async fn alert_count(&self) -> Result<usize> {
        Ok(self.lock().len())
    }
}

#[async_trait]
impl EventStore for EmbeddedStore {
    async fn apply_event(&self, event: &AcceptedEvent, ttl: Span) -> Result<EventOutcome> {
        self.apply(|s, c| Ok(s.apply_event(event, ttl, c)))
    }
}

#[async_trait]
impl ActivationStore for EmbeddedStore {
    async fn activations(&self, query: &ActivationQuery) -> Result<Vec<Activation>> {
        let mut out = Vec::new();
        let mut skip = query.offset;
        let mut take = |a: Activation| {
            if !query.matches(&a) {
                return true;
            }
            if skip > 0 {
                skip -= 1;
                return true;
            }
            out.push(a);
            out.len() < query.limit
        };
        if query.limit == 0 {
            return Ok(out);
        }
        match &query.project {
            Some(project) => {
                let prefix = scoped_key(project, &[]);
                for item in self.ks.by_project.prefix(&prefix).rev() {
                    let k = item.key().map_err(store_err)?;
                    let Some(id) = id_of(&k[prefix.len()..]) else {
                        continue;
                    };
                    let Some(a) = self.read_activation(id)? else {
                        continue;
                    };
                    if !take(a) {
                        break;
                    }
                }
            }
            None => {
                for item in self.ks.activations.iter().rev() {
                    let v = item.value().map_err(store_err)?;
                    let a: Activation = serde_json::from_slice(&v).map_err(store_err)?;
                    if !take(a) {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    async fn activation(&self, project: &str, id: u64) -> Result<Option<Activation>> {
        Ok(self.read_activation(id)?.filter(|a| a.project == project))
    }

    async fn set_notification_states(&self, id: u64, states: Vec<NotificationState>) -> Result<()> {
        let _guard = self.lock();
        if let Some(mut a) = self.read_activation(id)? {
            a.notifications = states;
            let mut batch = self.batch();
            batch.insert(&self.ks.activations, id_key(id), to_json(&a)?);
            batch.commit().map_err(store_err)?;
        }
        Ok(())
    }

    async fn prune_activations(&self, before: Timestamp) -> Result<usize> {
        let _guard = self.lock();
        let mut batch = self.batch();
        let mut n = 0;
        for item in self.ks.activations.iter() {
            let (k, v) = item.into_inner().map_err(store_err)?;
            let a: Activation = serde_json::from_slice(&v).map_err(store_err)?;
            if a.activation_time >= before {
                break;
            }
            batch.remove(&self.ks.activations, k.to_vec());
            batch.remove(&self.ks.by_project, scoped_key(&a.project, &k));
            n += 1;
        }
        if n > 0 {
            batch.commit().map_err(store_err)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tocsin_core::store::Store;

    use super::{Durability, EmbeddedStore};

    fn open() -> (Arc<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path(), Durability::Os).expect("store opens");
        (Arc::new(store), dir)
    }

    tocsin_core::store_contract_tests!(open());

    mod reopen {
        use std::sync::Arc;

        use tocsin_core::model::{AlertState, Event, Timestamp};
        use tocsin_core::store::contract::failure_alert;
        use tocsin_core::store::{ActivationQuery, Store};
        use tocsin_core::{AlertsSettings, Service};

        use super::super::{Durability, EmbeddedStore};

        fn service(dir: &std::path::Path) -> Service {
            let store: Arc<dyn Store> =
                Arc::new(EmbeddedStore::open(dir, Durability::Os).expect("opens"));
            Service::new(store, AlertsSettings::default())
        }

        async fn send(svc: &Service, entity: &str, secs: i64, key: &str) -> usize {
            let ev: Event = serde_json::from_value(serde_json::json!({
                "kind": "failed", "entity": {"kind": "job", "project": "proj", "ids": [entity]}}))
            .expect("event");
            let ev = svc
                .accept_event(
                    "proj",
                    "failed",
                    ev,
                    Some(key.into()),
                    Timestamp::from_secs(secs),
                )
                .expect("ok");
            svc.ingest(&ev).await.expect("ingested").counted
        }

        #[tokio::test]
        async fn windows_state_activations_and_keys_survive_a_reopen() {
            let dir = tempfile::tempdir().expect("temp dir");
            let t = Timestamp::from_secs(100);
            {
                let svc = service(dir.path());
                svc.store_alert(
                    "proj",
                    "m",
                    failure_alert("m", "job1", 2, Some("1h"), "manual"),
                    false,
                    t,
                )
                .await
                .expect("m");
                let mut per = failure_alert("p", "*", 3, None, "auto");
                per.criteria.as_mut().expect("criteria").per_entity = true;
                svc.store_alert("proj", "p", per, false, t)
                    .await
                    .expect("p");
                send(&svc, "job1", 101, "a").await;
                send(&svc, "job1", 102, "b").await; // m fires (manual: stays active)
                send(&svc, "job2", 103, "c").await; // p: job1 has 2, job2 has 1
            }
            let svc = service(dir.path());
            let m = svc
                .get_alert("proj", "m", Timestamp::from_secs(104))
                .await
                .expect("m");
            assert_eq!((m.state, m.count), (AlertState::Active, 1));
            assert_eq!(
                send(&svc, "job2", 105, "c").await,
                0,
                "idempotency key survived"
            );
            send(&svc, "job1", 106, "d").await; // p: job1 reaches 3 only if its window survived
            let p = svc
                .get_alert("proj", "p", Timestamp::from_secs(107))
                .await
                .expect("p");
            assert_eq!(p.count, 1);
            let acts = svc
                .activations(&ActivationQuery {
                    limit: 10,
                    ..Default::default()
                })
                .await
                .expect("list");
            assert_eq!(
                acts.iter()
                    .map(|a| (a.name.as_str(), a.id))
                    .collect::<Vec<_>>(),
                [("p", 2), ("m", 1)]
            );
            svc.reset_alert("proj", "m", Timestamp::from_secs(108))
                .await
                .expect("reset");
            drop(svc);
            let svc = service(dir.path());
            let m = svc.activation("proj", 1).await.expect("activation");
            assert_eq!(m.reset_time, Some(Timestamp::from_secs(108)));
        }
    }
}
