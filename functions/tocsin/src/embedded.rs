//! The embedded store: the engine's in-memory state ([`MemoryState`]) with a write-through to
//! fjall, an LSM key-value store with a journal.
//!
//! One writer thread owns the state. Operations are queued to it; it takes every operation
//! waiting, applies each to the state, commits their combined [`Changes`] in one atomic fjall
//! batch, and only then answers them (group commit). So an answer is never released before its
//! effect is on its way to disk, concurrent events are applied one after the other (which is
//! what makes a threshold fire exactly once), and under load one journal write serves many
//! events. Nothing blocks the async runtime: callers await a reply.
//!
//! Durability: a committed batch is handed to the OS before the answer, so it survives
//! `kill -9` of the process; [`Durability::Fsync`] also fdatasyncs each batch (surviving power
//! loss, at a latency cost), and with [`Durability::Os`] the host syncs periodically.
//!
//! Keyspaces (ids big-endian so that keys sort by id):
//! - `alerts`: alert id -> JSON [`PersistedRule`] (rule with secrets, dates); written on store
//! - `runtime`: alert id -> JSON runtime (state, count, cooldown, last activation); on fire/reset
//! - `windows`: alert id ++ entity id (empty for a shared window) -> JSON list of times
//! - `activations`: activation id -> JSON activation
//! - `activations_by_project`: project ++ 0x00 ++ activation id -> empty
//! - `outbox`: activation id -> empty, while a notification of the activation is pending
//! - `idempotency`: project ++ 0x00 ++ key -> expiry (i64 big-endian microseconds)
//! - `audit`: sequence number -> JSON [`AuditEntry`] (who changed what, in order of arrival)
//! - `tokens`: token id -> JSON [`TokenRecord`] (the hash of the secret, never the secret)
//!
//! Audit entries and tokens are written beside the writer thread, each in its own durable
//! batch: they touch nothing the engine's state holds.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use async_trait::async_trait;
use fjall::{
    Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch as WriteBatch, PersistMode,
};
use serde::{Deserialize, Serialize};
use tocsin_core::auth::{AuditEntry, TokenRecord};
use tocsin_core::compiled::Rule;
use tocsin_core::engine::{
    Changes, EventOutcome, PutAlert, Runtime, Window, WindowChange, Windows,
};
use tocsin_core::error::{Backend, Error, Result};
use tocsin_core::model::{AcceptedEvent, Activation, Delivery, Span, Timestamp};
use tocsin_core::store::{
    ActivationQuery, ActivationStore, AlertEntry, AlertRecord, AlertStore, AuditStore, EventStore,
    MemoryState, PutOutcome, TokenStore,
};
use tokio::sync::oneshot;

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
    #[error("cannot start the store's writer thread: {0}")]
    Thread(std::io::Error),
}

/// An alert's config as written to disk.
#[derive(Serialize, Deserialize)]
struct PersistedRule {
    rule: Rule,
    created: Timestamp,
    updated: Timestamp,
}

/// The keyspaces; cheap to clone (handles).
#[derive(Clone)]
struct Keyspaces {
    alerts: Keyspace,
    runtime: Keyspace,
    windows: Keyspace,
    activations: Keyspace,
    by_project: Keyspace,
    outbox: Keyspace,
    idempotency: Keyspace,
    audit: Keyspace,
    tokens: Keyspace,
}

/// Memtable size of the keyspaces written on every event (windows, runtime, activations,
/// idempotency keys). Smaller memtables mean more flushes, and fjall halts writers while four
/// sealed memtables wait for flushing; 8 MiB sustained the load test without halts.
const HOT_MEMTABLE_BYTES: u64 = 8 * 1024 * 1024;
/// Memtable size of the `alerts` keyspace, written only when an alert is stored: small, so that
/// thousands of alert configs live on disk and in the block cache rather than in memory twice.
const COLD_MEMTABLE_BYTES: u64 = 1024 * 1024;
/// Block cache for reads of activations and cold data.
const CACHE_BYTES: u64 = 4 * 1024 * 1024;
/// At most this many operations share one commit.
const MAX_GROUP: usize = 256;

/// An operation for the writer: applied to the state, it returns what answers it once the
/// commit's outcome is known.
type Job = Box<dyn FnOnce(&mut MemoryState, &mut Changes, &Disk) -> Reply + Send>;
type Reply = Box<dyn FnOnce(&Result<()>) + Send>;

/// The persistent store of `tocsin serve`.
pub struct EmbeddedStore {
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    disk: Arc<Disk>,
    /// The next audit entry's key.
    audit_seq: Arc<std::sync::atomic::AtomicU64>,
    /// The `tokens` keyspace, in memory (a few records; read on every authenticated request),
    /// updated after each durable write.
    tokens: RwLock<BTreeMap<String, TokenRecord>>,
}

/// fjall and what it takes to write a batch; shared by the writer and readers.
struct Disk {
    db: Database,
    ks: Keyspaces,
    durability: Durability,
}

fn store_err(e: impl std::fmt::Display) -> Error {
    Error::backend(Backend::Embedded, e.to_string())
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

fn stopped() -> Error {
    Error::backend(Backend::Embedded, "the store's writer has stopped")
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`, loads alerts, windows and idempotency keys, and
    /// starts the writer thread.
    pub fn open(dir: &Path, durability: Durability) -> std::result::Result<Self, OpenError> {
        let db_err = |source| OpenError::Db {
            path: dir.display().to_string(),
            source,
        };
        let db = Database::builder(dir)
            .cache_size(CACHE_BYTES)
            .open()
            .map_err(db_err)?;
        let open = |name: &str, memtable: u64| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default().max_memtable_size(memtable)
            })
        };
        let ks = Keyspaces {
            alerts: open("alerts", COLD_MEMTABLE_BYTES).map_err(db_err)?,
            runtime: open("runtime", HOT_MEMTABLE_BYTES).map_err(db_err)?,
            windows: open("windows", HOT_MEMTABLE_BYTES).map_err(db_err)?,
            activations: open("activations", HOT_MEMTABLE_BYTES).map_err(db_err)?,
            by_project: open("activations_by_project", HOT_MEMTABLE_BYTES).map_err(db_err)?,
            outbox: open("outbox", HOT_MEMTABLE_BYTES).map_err(db_err)?,
            idempotency: open("idempotency", HOT_MEMTABLE_BYTES).map_err(db_err)?,
            audit: open("audit", COLD_MEMTABLE_BYTES).map_err(db_err)?,
            tokens: open("tokens", COLD_MEMTABLE_BYTES).map_err(db_err)?,
        };
        let audit_seq = match ks.audit.last_key_value() {
            Some(item) => {
                let key = item.key().map_err(db_err)?;
                id_of(&key).map_or(0, |n| n + 1)
            }
            None => 0,
        };
        let mut tokens = BTreeMap::new();
        for item in ks.tokens.iter() {
            let v = item.value().map_err(db_err)?;
            let t: TokenRecord = serde_json::from_slice(&v).map_err(|e| OpenError::Corrupt {
                what: "token",
                detail: e.to_string(),
            })?;
            tokens.insert(t.id.clone(), t);
        }
        let mut state = load(&ks)?;
        let disk = Arc::new(Disk { db, ks, durability });
        let (tx, rx) = mpsc::channel::<Job>();
        let writer_disk = disk.clone();
        let writer = std::thread::Builder::new()
            .name("tocsin-store".into())
            .spawn(move || write_loop(&mut state, &writer_disk, &rx))
            .map_err(OpenError::Thread)?;
        Ok(EmbeddedStore {
            jobs: Some(tx),
            writer: Some(writer),
            disk,
            audit_seq: Arc::new(audit_seq.into()),
            tokens: RwLock::new(tokens),
        })
    }

    /// Runs `f` on the writer thread; answers after the commit of what it changed.
    async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut MemoryState, &mut Changes, &Disk) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |state, changes, disk| {
            let outcome = f(state, changes, disk);
            Box::new(move |committed: &Result<()>| {
                let _ = tx.send(committed.clone().and(outcome));
            })
        });
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Runs a read of fjall (or a write beside the writer thread) off the async runtime.
    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Disk) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let disk = self.disk.clone();
        tokio::task::spawn_blocking(move || f(&disk))
            .await
            .map_err(store_err)?
    }

    /// Flushes the journal to disk (the periodic sync of [`Durability::Os`], and shutdown).
    pub fn sync(&self) -> Result<()> {
        self.disk
            .db
            .persist(PersistMode::SyncData)
            .map_err(store_err)
    }

    /// Forgets idempotency keys that expired by `now`; returns how many.
    pub async fn prune_idempotency(&self, now: Timestamp) -> Result<usize> {
        self.run(move |state, changes, _| {
            let expired = state.prune_idempotency(now);
            let n = expired.len();
            changes
                .idempotency_removed
                .extend(expired.into_iter().map(|(p, k)| (p.into(), k.into())));
            Ok(n)
        })
        .await
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the queue ends the writer after it has committed what is queued; joining it
        // releases the database, so the same directory can be opened again at once.
        drop(self.jobs.take());
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn write_loop(state: &mut MemoryState, disk: &Disk, jobs: &mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut changes = Changes::default();
        let mut replies = vec![first(state, &mut changes, disk)];
        while replies.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => replies.push(job(state, &mut changes, disk)),
                Err(_) => break,
            }
        }
        let committed = disk.commit(state, changes);
        for reply in replies {
            reply(&committed);
        }
        if let Err(e) = committed {
            // Memory is now ahead of the disk. Stop (every later call answers "stopped", a 503)
            // rather than go on from a state the disk does not have; a restart reloads a
            // consistent one.
            tracing::error!(error = %e, "a store commit failed; the store stopped: restart tocsin once the disk is healthy");
            return;
        }
    }
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
        let p: PersistedRule = serde_json::from_slice(&v).map_err(|e| corrupt("alert")(&e))?;
        let runtime = match ks
            .runtime
            .get(id_key(id))
            .map_err(|e| corrupt("alert state")(&e))?
        {
            Some(v) => serde_json::from_slice(&v).map_err(|e| corrupt("alert state")(&e))?,
            None => Runtime::default(),
        };
        let windows = if p.rule.per_entity {
            Windows::PerEntity(Default::default())
        } else {
            Windows::Shared(Window::default())
        };
        let record = AlertRecord {
            id,
            rule: Arc::new(p.rule),
            runtime,
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

impl Disk {
    fn batch(&self) -> WriteBatch {
        // A batch left without a mode stays in fjall's journal buffer, in this process: a
        // `kill -9` would lose it. `Buffer` hands it to the OS before the answer is released.
        let mode = match self.durability {
            Durability::Os => PersistMode::Buffer,
            Durability::Fsync => PersistMode::SyncData,
        };
        self.db.batch().durability(Some(mode))
    }

    /// The activation `id` for an update in this batch: new in it, already read for it, or
    /// read now from disk. None if it does not exist (retention may have deleted it).
    fn activation_mut<'a>(
        &self,
        id: u64,
        fresh: &'a mut BTreeMap<u64, Activation>,
        touched: &'a mut BTreeMap<u64, Activation>,
    ) -> Result<Option<&'a mut Activation>> {
        if fresh.contains_key(&id) {
            return Ok(fresh.get_mut(&id));
        }
        match touched.entry(id) {
            std::collections::btree_map::Entry::Occupied(e) => Ok(Some(e.into_mut())),
            std::collections::btree_map::Entry::Vacant(e) => {
                Ok(self.read_activation(id)?.map(|a| e.insert(a)))
            }
        }
    }

    fn read_activation(&self, id: u64) -> Result<Option<Activation>> {
        match self.ks.activations.get(id_key(id)).map_err(store_err)? {
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(store_err),
            None => Ok(None),
        }
    }

    /// Writes exactly what `changes` names, as it now stands in `state`, in one batch.
    fn commit(&self, state: &MemoryState, changes: Changes) -> Result<()> {
        let mut batch = self.batch();
        for id in dedup(changes.rules) {
            let Some(entry) = state.entry(id) else {
                continue;
            };
            let r = &entry.record;
            let p = PersistedRule {
                rule: (*r.rule).clone(),
                created: r.created,
                updated: r.updated,
            };
            batch.insert(&self.ks.alerts, id_key(id), to_json(&p)?);
        }
        for id in dedup(changes.runtimes) {
            let Some(entry) = state.entry(id) else {
                continue;
            };
            batch.insert(
                &self.ks.runtime,
                id_key(id),
                to_json(&entry.record.runtime)?,
            );
        }
        // Windows: settle each key's final value first (a remove and an insert of the same key
        // in one batch would be ambiguous); a put writes the window as it stands now.
        let mut windows: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        let cleared = changes.windows.iter().filter_map(|c| match c {
            WindowChange::Clear { alert } => Some(*alert),
            WindowChange::Put { .. } => None,
        });
        for alert in dedup(cleared.chain(changes.removed.iter().copied()).collect()) {
            for item in self.ks.windows.prefix(id_key(alert)) {
                windows.insert(item.key().map_err(store_err)?.to_vec(), None);
            }
        }
        for change in changes.windows {
            if let WindowChange::Put { alert, entity } = change {
                let key = window_key(alert, entity.as_deref());
                let value = match state
                    .entry(alert)
                    .and_then(|e| e.windows.get(entity.as_deref()))
                {
                    Some(w) if !w.is_empty() => Some(to_json(w)?),
                    _ => None,
                };
                windows.insert(key, value);
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
            batch.remove(&self.ks.runtime, id_key(id));
        }
        // Activations new in this batch, and stored ones this batch updates.
        let mut fresh: BTreeMap<u64, Activation> =
            changes.activations.into_iter().map(|a| (a.id, a)).collect();
        let mut touched: BTreeMap<u64, Activation> = BTreeMap::new();
        for closed in changes.closed {
            if let Some(a) = self.activation_mut(closed.activation, &mut fresh, &mut touched)? {
                a.reset_time.get_or_insert(closed.at);
            }
        }
        for (id, delivery) in changes.deliveries {
            if let Some(a) = self.activation_mut(id, &mut fresh, &mut touched)? {
                a.record(delivery);
            }
        }
        for (id, a) in touched {
            batch.insert(&self.ks.activations, id_key(id), to_json(&a)?);
            if !a.is_pending() {
                batch.remove(&self.ks.outbox, id_key(id));
            }
        }
        for (id, a) in fresh {
            batch.insert(&self.ks.activations, id_key(id), to_json(&a)?);
            batch.insert(&self.ks.by_project, scoped_key(&a.project, &id_key(id)), []);
            if a.is_pending() {
                batch.insert(&self.ks.outbox, id_key(id), []);
            }
        }
        for (id, project) in changes.activations_removed {
            batch.remove(&self.ks.activations, id_key(id));
            batch.remove(&self.ks.outbox, id_key(id));
            batch.remove(&self.ks.by_project, scoped_key(&project, &id_key(id)));
        }
        for (project, key, expires) in changes.idempotency {
            batch.insert(
                &self.ks.idempotency,
                scoped_key(&project, key.as_bytes()),
                expires.0.to_be_bytes(),
            );
        }
        for (project, key) in changes.idempotency_removed {
            batch.remove(&self.ks.idempotency, scoped_key(&project, key.as_bytes()));
        }
        if batch.is_empty() {
            return Ok(());
        }
        batch.commit().map_err(store_err)
    }
}

fn dedup(mut ids: Vec<u64>) -> Vec<u64> {
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[async_trait]
impl AlertStore for EmbeddedStore {
    async fn put_alert(&self, put: PutAlert) -> Result<PutOutcome> {
        self.run(move |s, c, _| s.put_alert(put, c)).await
    }
    async fn get_alert(&self, project: &str, name: &str) -> Result<Option<AlertRecord>> {
        let (project, name) = (project.to_owned(), name.to_owned());
        self.run(move |s, _, _| Ok(s.get(&project, &name).map(|e| e.record.clone())))
            .await
    }
    async fn list_alerts(
        &self,
        project: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<AlertRecord>> {
        let project = project.map(str::to_owned);
        self.run(move |s, _, _| Ok(s.list(project.as_deref(), offset, limit)))
            .await
    }
    async fn delete_alert(&self, project: &str, name: &str) -> Result<bool> {
        let (project, name) = (project.to_owned(), name.to_owned());
        self.run(move |s, c, _| Ok(s.delete(&project, &name, c)))
            .await
    }
    async fn reset_alert(&self, project: &str, name: &str, now: Timestamp) -> Result<bool> {
        let (project, name) = (project.to_owned(), name.to_owned());
        self.run(move |s, c, _| Ok(s.reset(&project, &name, now, c)))
            .await
    }
    async fn acknowledge_alert(
        &self,
        project: &str,
        name: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let (project, name, by) = (project.to_owned(), name.to_owned(), by.to_owned());
        self.run(move |s, c, _| s.acknowledge(&project, &name, &by, now, c))
            .await
    }
    async fn alert_count(&self) -> Result<usize> {
        self.run(|s, _, _| Ok(s.len())).await
    }
}

#[async_trait]
impl EventStore for EmbeddedStore {
    async fn apply_event(&self, event: &AcceptedEvent, ttl: Span) -> Result<EventOutcome> {
        let event = event.clone();
        self.run(move |s, c, _| Ok(s.apply_event(&event, ttl, c)))
            .await
    }
}

#[async_trait]
impl ActivationStore for EmbeddedStore {
    async fn activations(&self, query: &ActivationQuery) -> Result<Vec<Activation>> {
        let query = query.clone();
        self.read(move |disk| disk.activations(&query)).await
    }

    async fn activation(&self, project: &str, id: u64) -> Result<Option<Activation>> {
        let project = project.to_owned();
        self.read(move |disk| Ok(disk.read_activation(id)?.filter(|a| a.project == project)))
            .await
    }

    async fn record_delivery(&self, id: u64, delivery: Delivery) -> Result<()> {
        self.run(move |_, c, _| {
            c.deliveries.push((id, delivery));
            Ok(())
        })
        .await
    }

    async fn pending_deliveries(&self, limit: usize) -> Result<Vec<Activation>> {
        self.read(move |disk| {
            let mut pending = Vec::new();
            for item in disk.ks.outbox.iter().take(limit) {
                let k = item.key().map_err(store_err)?;
                if let Some(a) = id_of(&k)
                    .map(|id| disk.read_activation(id))
                    .transpose()?
                    .flatten()
                {
                    pending.push(a);
                }
            }
            Ok(pending)
        })
        .await
    }

    async fn prune_activations(&self, before: Timestamp) -> Result<usize> {
        self.run(move |_, c, disk| {
            let old = disk.activations_before(before)?;
            let n = old.len();
            c.activations_removed.extend(old);
            Ok(n)
        })
        .await
    }
}

#[async_trait]
impl AuditStore for EmbeddedStore {
    async fn record_audit(&self, entry: AuditEntry) -> Result<()> {
        let seq = self
            .audit_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let value = to_json(&entry)?;
        self.read(move |disk| {
            let mut batch = disk.batch();
            batch.insert(&disk.ks.audit, id_key(seq), value);
            batch.commit().map_err(store_err)
        })
        .await
    }

    async fn audit_log(&self, project: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>> {
        let project = project.map(str::to_owned);
        self.read(move |disk| {
            let mut out = Vec::new();
            for item in disk.ks.audit.iter().rev() {
                if out.len() >= limit {
                    break;
                }
                let v = item.value().map_err(store_err)?;
                let e: AuditEntry = serde_json::from_slice(&v).map_err(store_err)?;
                if project.as_ref().is_none_or(|p| *p == e.project) {
                    out.push(e);
                }
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl TokenStore for EmbeddedStore {
    async fn put_token(&self, record: TokenRecord) -> Result<()> {
        let value = to_json(&record)?;
        let id = record.id.clone();
        self.read(move |disk| {
            let mut batch = disk.batch();
            batch.insert(&disk.ks.tokens, id.as_bytes(), value);
            batch.commit().map_err(store_err)
        })
        .await?;
        write_lock(&self.tokens).insert(record.id.clone(), record);
        Ok(())
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>> {
        // Every authenticated request asks: from memory, no thread hop, no decoding.
        Ok(read_lock(&self.tokens).get(id).cloned())
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        Ok(read_lock(&self.tokens).values().cloned().collect())
    }

    async fn delete_token(&self, id: &str) -> Result<bool> {
        if !read_lock(&self.tokens).contains_key(id) {
            return Ok(false);
        }
        let key = id.to_owned();
        self.read(move |disk| {
            let mut batch = disk.batch();
            batch.remove(&disk.ks.tokens, key.as_bytes());
            batch.commit().map_err(store_err)
        })
        .await?;
        Ok(write_lock(&self.tokens).remove(id).is_some())
    }
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Disk {
    /// Activations matching `query`, newest first, read from the keyspaces.
    fn activations(&self, query: &ActivationQuery) -> Result<Vec<Activation>> {
        let mut out = Vec::new();
        if query.limit == 0 {
            return Ok(out);
        }
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

    /// (id, project) of the activations older than `before`, oldest first (ids grow with time).
    fn activations_before(&self, before: Timestamp) -> Result<Vec<(u64, String)>> {
        let mut old = Vec::new();
        for item in self.ks.activations.iter() {
            let (k, v) = item.into_inner().map_err(store_err)?;
            let a: Activation = serde_json::from_slice(&v).map_err(store_err)?;
            if a.activation_time >= before {
                break;
            }
            if let Some(id) = id_of(&k) {
                old.push((id, a.project));
            }
        }
        Ok(old)
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

    #[tokio::test]
    async fn tokens_are_kept_found_and_revoked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path(), Durability::Os).expect("store opens");
        tocsin_core::store::token_contract::tokens_are_kept_found_and_revoked(Arc::new(store))
            .await;
    }

    #[tokio::test]
    async fn tokens_and_the_audit_list_survive_a_reopen() {
        use tocsin_core::auth::{AuditEntry, ISSUE_RANDOM_BYTES, Principal, Role};
        use tocsin_core::auth::{TokenRecord, TokenRequest};
        use tocsin_core::model::Timestamp;
        use tocsin_core::store::{AuditStore, TokenStore};
        let dir = tempfile::tempdir().expect("temp dir");
        let issued = TokenRecord::issue(
            TokenRequest {
                name: Some("ci".into()),
                role: Role::Producer,
                projects: "p".into(),
                expires_in: None,
            },
            &Principal::anonymous(),
            &[3; ISSUE_RANDOM_BYTES],
            Timestamp(1),
        )
        .expect("issued");
        let entry = |n: i64| AuditEntry {
            time: Timestamp(n),
            project: "p".into(),
            action: "alert.reset".into(),
            target: "a".into(),
            by: "ci".into(),
        };
        {
            let store = EmbeddedStore::open(dir.path(), Durability::Os).expect("opens");
            store
                .put_token(issued.record.clone())
                .await
                .expect("stored");
            store.record_audit(entry(1)).await.expect("recorded");
        }
        let store = EmbeddedStore::open(dir.path(), Durability::Os).expect("reopens");
        assert_eq!(
            store.token(&issued.record.id).await.expect("read"),
            Some(issued.record)
        );
        // The sequence continues after the reopen: nothing recorded before is overwritten.
        store.record_audit(entry(2)).await.expect("recorded");
        let log = store.audit_log(None, 10).await.expect("audit");
        assert_eq!(log, [entry(2), entry(1)]);
    }

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
            Service::new(
                store,
                AlertsSettings::default(),
                Arc::new(tocsin_core::dispatch::Nowhere),
            )
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
