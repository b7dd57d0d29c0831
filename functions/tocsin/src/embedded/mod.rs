//! The embedded store of `tocsin serve`: the engine's state in memory ([`MemoryState`]), an
//! append-only log of the operations that changed it, and periodic snapshots of it.
//!
//! One writer owns the state, and one holder at a time runs it ([`turns`]): it takes every
//! operation waiting, applies each through the engine, appends each to the [log](log) and writes
//! the group in one write (group commit), and only then answers them. So an answer is never
//! released before its record is on its way to disk, concurrent events are applied one after
//! the other (which is what makes a threshold fire exactly once), and under load one write
//! serves many events. The holder is the caller whose short operation found the writer free,
//! on its own thread, or the writer thread, which takes the long ones and whatever must not
//! hold the async runtime.
//!
//! What is written is what happened, not what it did to every window: an event costs its own
//! record (about 170 bytes), however many windows it counts in. Every so often (records or time)
//! the writer thread encodes the state as a [snapshot](snapshot), which a second thread writes
//! beside it. Opening reads the last snapshot and replays the log after it through the same engine
//! code ([`op::apply`]); the engine takes time from the operation, which makes the replay exact.
//!
//! Activations are read by queries rather than by the engine, so they live in fjall, settled
//! there in bulk from memory ([`activations`]): the log can make them again. The audit list and
//! tokens are fjall keyspaces written beside the writer, each write durable on its own:
//! - `audit`: sequence number -> JSON [`AuditEntry`] (who changed what, in order of arrival)
//! - `tokens`: token id -> JSON [`TokenRecord`] (the hash of the secret, never the secret)
//!
//! Durability: a committed group is handed to the OS before the answer, so it survives
//! `kill -9` of the process; [`Durability::Fsync`] also fdatasyncs each group (surviving power
//! loss, at a latency cost), and with [`Durability::Os`] the host syncs periodically. A snapshot
//! is written only after the log and fjall are synced up to its position.

mod activations;
pub mod backup;
mod history;
mod legacy;
pub mod log;
mod op;
mod open;
mod snapshot;
mod store;
mod turns;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use fjall::{
    Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch as WriteBatch, PersistMode,
};
use serde::{Deserialize, Serialize};
use tocsin_core::auth::{AuditEntry, TokenRecord};
use tocsin_core::engine::{Changes, EventOutcome, PutAlert};
use tocsin_core::error::{Backend, Error, Result};
use tocsin_core::model::{AcceptedEvent, Activation, Delivery, Silence, Span, Timestamp};
use tocsin_core::store::{
    ActivationQuery, ActivationStore, AlertRecord, AlertStore, AuditStore, EventStore, MemoryState,
    PutOutcome, SilenceStore, TokenStore,
};
use tokio::sync::oneshot;

use self::activations::Activations;
use self::log::{LogError, LogWriter, Position, SyncHandle};
use self::op::{Done, Op};
use self::snapshot::SnapshotError;
use self::turns::{Job, Lane, Turns};

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

/// How the store keeps its log.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub durability: Durability,
    /// How long log segments are kept once a snapshot made them unnecessary for a restart
    /// (for the backtest).
    pub log_retention: Duration,
    /// A snapshot is taken after this many log records (once the log after the last snapshot
    /// is at least as large as that snapshot, so that snapshots never cost more writes than
    /// the log) ...
    pub snapshot_records: u64,
    /// ... or after this long with at least one.
    pub snapshot_interval: Duration,
    /// Activations are settled into fjall once this many wait in memory (or 10 s after the
    /// last settle).
    pub settle_activations: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Os,
            log_retention: Duration::from_secs(7 * 86_400),
            snapshot_records: 100_000,
            snapshot_interval: Duration::from_secs(300),
            settle_activations: 10_000,
        }
    }
}

impl Options {
    /// The defaults with this durability.
    pub fn with(durability: Durability) -> Self {
        Options {
            durability,
            ..Options::default()
        }
    }
}

/// Why the embedded store could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the data directory {path}: {source}")]
    Db { path: String, source: fjall::Error },
    #[error("the data directory holds a record that cannot be read ({what}): {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("cannot write to the data directory {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start the store's threads: {0}")]
    Thread(std::io::Error),
}

/// The fjall keyspaces written beside the writer; cheap to clone (handles).
#[derive(Clone)]
struct Keyspaces {
    audit: Keyspace,
    tokens: Keyspace,
}

/// Memtable size of the keyspaces written when people change things (audit, tokens). Small:
/// nothing reads them often, and a full memtable holds about twice its bytes in memory, which
/// at 1 MB was 2 MB of the resident memory after 10,000 alerts were stored (an audit entry
/// each).
const COLD_MEMTABLE_BYTES: u64 = 256 * 1024;
/// Block cache for reads of activations.
const CACHE_BYTES: u64 = 4 * 1024 * 1024;
/// Activations are settled into fjall this long after the last settle (or once
/// [`Options::settle_activations`] wait).
const SETTLE_AFTER: Duration = Duration::from_secs(10);

/// The persistent store of `tocsin serve`.
pub struct EmbeddedStore {
    /// When it was opened: part of its listing version, whose edit count starts over with
    /// each process.
    opened: Timestamp,
    turns: Arc<Turns>,
    /// The writer thread: takes over what a caller's turn should not do (see [`Turns`]).
    writer: Option<JoinHandle<()>>,
    disk: Arc<Disk>,
    log_sync: SyncHandle,
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
    acts: Activations,
    durability: Durability,
    /// The data directory (the snapshot's place).
    dir: PathBuf,
    /// The log's segments.
    log_dir: PathBuf,
}

/// The writer's own: the state, the log and what the current group changed.
struct Writer {
    state: MemoryState,
    changes: Changes,
    log: LogWriter,
    since_snapshot: u64,
    snapshot_at: Instant,
    /// Where the last snapshot was taken, and its size.
    last_snapshot: (Position, u64),
    settled_at: Instant,
    options: Options,
    background: Option<mpsc::SyncSender<Background>>,
    /// The thread that settles activations and writes snapshots.
    background_thread: Option<JoinHandle<()>>,
    /// Background work is in progress: do not start more.
    busy: Arc<AtomicBool>,
}

/// Work for the background thread.
enum Background {
    /// Write the activations set aside into fjall.
    Settle,
    /// Settle, then write this snapshot, taken at this position.
    Snapshot(Vec<u8>, Position),
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

fn stopped() -> Error {
    Error::backend(Backend::Embedded, "the store's writer has stopped")
}

impl EmbeddedStore {
    /// Runs `f` on the writer, in a turn on the caller's thread or the writer thread (see
    /// [`Lane`]); answers after the commit of what it changed.
    async fn run<R: Send + 'static>(
        &self,
        lane: Lane,
        f: impl FnOnce(&mut Writer) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |writer| {
            let outcome = f(writer);
            Box::new(move |committed: &Result<()>| {
                let _ = tx.send(committed.clone().and(outcome));
            })
        });
        self.turns.submit(job, lane)?;
        rx.await.map_err(|_| stopped())?
    }

    /// Logs and applies one operation.
    async fn apply(&self, op: Op) -> Result<Done> {
        self.run(Lane::Caller, move |w| w.apply(op)).await
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

    /// Syncs the log and fjall's journal to disk (the periodic sync of [`Durability::Os`], and
    /// shutdown).
    pub fn sync(&self) -> Result<()> {
        self.log_sync.sync().map_err(store_err)?;
        self.disk
            .db
            .persist(PersistMode::SyncData)
            .map_err(store_err)
    }

    /// The log's size on disk (segments a snapshot made unnecessary count until they are
    /// pruned).
    pub fn log_bytes(&self) -> std::io::Result<u64> {
        log::size(&self.disk.log_dir)
    }

    /// Gives the writer a turn when nothing else does: background work that is due by time
    /// (a settle of activations, a snapshot) starts after a commit, and an idle server has none.
    pub async fn upkeep(&self) -> Result<()> {
        self.run(Lane::Writer, |_| Ok(())).await
    }

    /// Forgets idempotency keys that expired by `now`; returns how many.
    pub async fn prune_idempotency(&self, now: Timestamp) -> Result<usize> {
        self.run(Lane::Writer, move |w| w.apply(Op::PruneIdempotency { now }))
            .await?
            .pruned()
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the queue ends the writer after it has committed what is queued and written a
        // last snapshot; joining it releases the database, so the same directory can be opened
        // again at once.
        self.turns.close();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tocsin_core::store::Store;

    use super::{EmbeddedStore, Options};

    fn open() -> (Arc<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path(), Options::default()).expect("store opens");
        (Arc::new(store), dir)
    }

    tocsin_core::store_contract_tests!(open());

    /// The contract again, with activations settled into fjall after every commit that made
    /// some (in the background, as it happens): reads merge what is in memory over fjall.
    mod settled {
        use std::sync::Arc;

        use tocsin_core::store::Store;

        use super::super::{EmbeddedStore, Options};

        fn open() -> (Arc<dyn Store>, tempfile::TempDir) {
            let dir = tempfile::tempdir().expect("temp dir");
            let options = Options {
                settle_activations: 1,
                ..Options::default()
            };
            let store = EmbeddedStore::open(dir.path(), options).expect("store opens");
            (Arc::new(store), dir)
        }

        tocsin_core::store_contract_tests!(open());
    }

    #[tokio::test]
    async fn tokens_are_kept_found_and_revoked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path(), Options::default()).expect("store opens");
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
            let store = EmbeddedStore::open(dir.path(), Options::default()).expect("opens");
            store
                .put_token(issued.record.clone())
                .await
                .expect("stored");
            store.record_audit(entry(1)).await.expect("recorded");
        }
        let store = EmbeddedStore::open(dir.path(), Options::default()).expect("reopens");
        assert_eq!(
            store.token(&issued.record.id).await.expect("read"),
            Some(issued.record)
        );
        // The sequence continues after the reopen: nothing recorded before is overwritten.
        store.record_audit(entry(2)).await.expect("recorded");
        let log = store.audit_log(None, 10).await.expect("audit");
        assert_eq!(log, [entry(2), entry(1)]);
    }

    /// Replay lands exactly where the process stopped: the same alerts, states, windows,
    /// activations and keys, whether the log is replayed whole or after a snapshot.
    mod replay {
        use std::path::Path;
        use std::sync::Arc;

        use serde_json::Value;
        use tocsin_core::model::{Delivery, DeliveryStatus, Event, NotificationKind, Timestamp};
        use tocsin_core::store::contract::failure_alert;
        use tocsin_core::store::{ActivationQuery, ActivationStore, Store};
        use tocsin_core::{AlertsSettings, Service};

        use super::super::{EmbeddedStore, Options};

        fn open(dir: &Path, options: Options) -> (Service, Arc<EmbeddedStore>) {
            let store = Arc::new(EmbeddedStore::open(dir, options).expect("opens"));
            let dyn_store: Arc<dyn Store> = store.clone();
            let svc = Service::new(
                dyn_store,
                AlertsSettings::default(),
                Arc::new(tocsin_core::dispatch::Nowhere),
            );
            (svc, store)
        }

        async fn alerts(svc: &Service) {
            let t = Timestamp::from_secs(1_000);
            let manual = failure_alert("manual", "job*", 2, Some("1h"), "manual");
            let mut per = failure_alert("per", "*", 3, Some("10m"), "auto");
            per.criteria.as_mut().expect("criteria").per_entity = true;
            let deep = failure_alert("deep", "*", 99, Some("1h"), "auto");
            for (name, config) in [("manual", manual), ("per", per), ("deep", deep)] {
                svc.store_alert("proj", name, config, false, t)
                    .await
                    .expect("stored");
            }
        }

        /// Events `from..to` (a second apart, over 7 entities, some retried with a key), a reset
        /// of `manual` every 50 and an acknowledgement every 70.
        async fn events(svc: &Service, from: i64, to: i64) {
            for i in from..to {
                let at = Timestamp::from_secs(2_000 + i);
                let ev: Event = serde_json::from_value(serde_json::json!({
                    "kind": "failed",
                    "entity": {"kind": "job", "project": "proj", "ids": [format!("job{}", i % 7)]}
                }))
                .expect("event");
                let key = (i % 5 == 0).then(|| format!("k{}", i / 10));
                let accepted = svc
                    .accept_event("proj", "failed", ev, key, at)
                    .expect("accepted");
                svc.ingest(&accepted).await.expect("ingested");
                if i % 50 == 49 {
                    svc.reset_alert("proj", "manual", "ops", at)
                        .await
                        .expect("reset");
                }
                if i % 70 == 69 {
                    let _ = svc.acknowledge_alert("proj", "manual", "ops", at).await;
                }
            }
        }

        /// What a client sees: every alert's view and every activation.
        async fn picture(svc: &Service) -> (Vec<Value>, Vec<Value>) {
            let now = Timestamp::from_secs(10_000);
            let mut alerts = Vec::new();
            for name in ["manual", "per", "deep"] {
                let a = svc.get_alert("proj", name, now).await.expect("alert");
                alerts.push(serde_json::to_value(a).expect("json"));
            }
            let acts = svc
                .activations(&ActivationQuery {
                    limit: 10_000,
                    ..Default::default()
                })
                .await
                .expect("activations");
            let acts = acts
                .into_iter()
                .map(|a| serde_json::to_value(a).expect("json"))
                .collect();
            (alerts, acts)
        }

        #[tokio::test]
        async fn the_whole_log_replayed_gives_the_same_state() {
            let dir = tempfile::tempdir().expect("dir");
            let before = {
                let (svc, store) = open(dir.path(), Options::default());
                alerts(&svc).await;
                events(&svc, 0, 400).await;
                let first = svc
                    .activations(&ActivationQuery {
                        limit: 1,
                        ..Default::default()
                    })
                    .await
                    .expect("listed")[0]
                    .id;
                store
                    .record_delivery(
                        first,
                        Delivery {
                            notification: "hook".into(),
                            kind: NotificationKind::Webhook,
                            status: DeliveryStatus::Sent,
                            attempts: 1,
                            error: None,
                            at: Some(Timestamp::from_secs(3_000)),
                            silence: None,
                            resolved: false,
                            acknowledged: false,
                        },
                    )
                    .await
                    .expect("recorded");
                picture(&svc).await
            };
            assert!(
                before.1.len() > 10,
                "the scenario fires: {}",
                before.1.len()
            );
            // As after a kill -9 before the first snapshot: only the log is left.
            std::fs::remove_file(dir.path().join("snapshot.json")).expect("snapshot removed");
            let (svc, _) = open(dir.path(), Options::default());
            assert_eq!(picture(&svc).await, before);
            // And it goes on as it would have: the same windows, the next ids.
            events(&svc, 400, 500).await;
            let went_on = picture(&svc).await;
            let dir2 = tempfile::tempdir().expect("dir");
            let (svc2, _) = open(dir2.path(), Options::default());
            alerts(&svc2).await;
            events(&svc2, 0, 400).await;
            events(&svc2, 400, 500).await;
            let (alerts_straight, acts_straight) = picture(&svc2).await;
            assert_eq!(went_on.0, alerts_straight);
            // The one delivery recorded on the first run is the only difference.
            assert_eq!(went_on.1.len(), acts_straight.len());
        }

        #[tokio::test]
        async fn a_snapshot_taken_while_serving_and_the_tail_after_it_give_the_same_state() {
            let dir = tempfile::tempdir().expect("dir");
            let options = Options {
                snapshot_records: 100,
                settle_activations: 1,
                ..Options::default()
            };
            let (mid_snapshot, before) = {
                let (svc, store) = open(dir.path(), options);
                alerts(&svc).await;
                events(&svc, 0, 450).await;
                // A snapshot the snapshot thread wrote while events came in (or just after: a
                // settle may still hold the background thread when the last event is in; the
                // host's upkeep then starts the snapshot).
                let mut snap = Vec::new();
                for _ in 0..100 {
                    store.upkeep().await.expect("upkeep");
                    if let Ok(b) = std::fs::read(dir.path().join("snapshot.json")) {
                        snap = b;
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                assert!(!snap.is_empty(), "a snapshot was written while serving");
                (snap, picture(&svc).await)
            };
            // As after a kill -9 long after that snapshot, and in the middle of writing the next.
            std::fs::write(dir.path().join("snapshot.json"), &mid_snapshot).expect("put back");
            std::fs::write(dir.path().join("snapshot.json.tmp"), b"{\"format\":1,\"lo")
                .expect("torn snapshot");
            let (svc, _) = open(dir.path(), options);
            assert_eq!(picture(&svc).await, before);
            assert!(!dir.path().join("snapshot.json.tmp").exists());
        }
    }

    /// A data directory of the earlier layout (the state in fjall keyspaces) is read once and
    /// becomes the first snapshot: nothing it held is lost.
    #[tokio::test]
    async fn an_older_data_directory_is_moved_into_a_snapshot() {
        use tocsin_core::model::{AlertState, Event, Timestamp};
        use tocsin_core::store::contract::failure_alert;
        use tocsin_core::{AlertsSettings, Service};

        let service = |dir: &std::path::Path| {
            let store: Arc<dyn Store> =
                Arc::new(EmbeddedStore::open(dir, Options::default()).expect("opens"));
            Service::new(
                store,
                AlertsSettings::default(),
                Arc::new(tocsin_core::dispatch::Nowhere),
            )
        };
        let event = |entity: &str| -> Event {
            serde_json::from_value(serde_json::json!({
                "kind": "failed", "entity": {"kind": "job", "project": "proj", "ids": [entity]}}))
            .expect("event")
        };
        // An alert with one event in its window, as the old layout would hold it.
        let source = tempfile::tempdir().expect("dir");
        let (rule, runtime, created) = {
            let svc = service(source.path());
            let t = Timestamp::from_secs(100);
            let config = failure_alert("m", "job1", 2, Some("1h"), "manual");
            svc.store_alert("proj", "m", config, false, t)
                .await
                .expect("stored");
            let ev = svc
                .accept_event(
                    "proj",
                    "failed",
                    event("job1"),
                    None,
                    Timestamp::from_secs(101),
                )
                .expect("accepted");
            svc.ingest(&ev).await.expect("ingested");
            let record = svc
                .store()
                .get_alert("proj", "m")
                .await
                .expect("read")
                .expect("m");
            (record.rule.clone(), record.runtime.clone(), record.created)
        };
        let image: serde_json::Value = {
            let bytes = std::fs::read(source.path().join("snapshot.json")).expect("snapshot");
            let split = bytes.iter().position(|b| *b == b'\n').expect("header");
            serde_json::from_slice(&bytes[split + 1..]).expect("image")
        };
        let window = image["alerts"][0]["windows"]["Shared"].clone();
        assert!(window.is_array(), "{image}");
        let old = tempfile::tempdir().expect("dir");
        {
            let db = fjall::Database::builder(old.path()).open().expect("db");
            let ks = |name: &str| {
                db.keyspace(name, fjall::KeyspaceCreateOptions::default)
                    .expect("keyspace")
            };
            let rule_json =
                serde_json::json!({"rule": &*rule, "created": created, "updated": created});
            ks("alerts")
                .insert(
                    super::id_key(1),
                    serde_json::to_vec(&rule_json).expect("json"),
                )
                .expect("alert");
            ks("runtime")
                .insert(
                    super::id_key(1),
                    serde_json::to_vec(&runtime).expect("json"),
                )
                .expect("runtime");
            ks("windows")
                .insert(super::id_key(1), serde_json::to_vec(&window).expect("json"))
                .expect("window");
            let expires = Timestamp::from_secs(100_000).0.to_be_bytes();
            ks("idempotency")
                .insert(super::scoped_key("proj", b"k1"), expires)
                .expect("key");
            db.persist(fjall::PersistMode::SyncAll).expect("persisted");
        }
        let svc = service(old.path());
        assert!(old.path().join("snapshot.json").exists());
        let send = |key: Option<&str>, secs| {
            svc.accept_event(
                "proj",
                "failed",
                event("job1"),
                key.map(str::to_owned),
                Timestamp::from_secs(secs),
            )
            .expect("accepted")
        };
        let dup = svc.ingest(&send(Some("k1"), 102)).await.expect("ingested");
        assert!(dup.duplicate, "the held key came along");
        svc.ingest(&send(None, 103)).await.expect("ingested");
        let m = svc
            .get_alert("proj", "m", Timestamp::from_secs(104))
            .await
            .expect("m");
        assert_eq!(
            (m.state, m.count),
            (AlertState::Active, 1),
            "the window came along"
        );
        drop(svc);
        let db = fjall::Database::builder(old.path()).open().expect("db");
        assert!(!super::legacy::present(&db), "the old keyspaces are gone");
    }

    mod reopen {
        use std::sync::Arc;

        use tocsin_core::model::{AlertState, Event, Timestamp};
        use tocsin_core::store::contract::failure_alert;
        use tocsin_core::store::{ActivationQuery, Store};
        use tocsin_core::{AlertsSettings, Service};

        use super::super::{EmbeddedStore, Options};

        fn service(dir: &std::path::Path) -> Service {
            let store: Arc<dyn Store> =
                Arc::new(EmbeddedStore::open(dir, Options::default()).expect("opens"));
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

        /// An absence's deadline survives a restart before it, and an absence that fired before a
        /// restart at its deadline does not fire again after it.
        #[tokio::test]
        async fn absence_deadlines_survive_a_reopen_and_fire_once() {
            let dir = tempfile::tempdir().expect("temp dir");
            let at = Timestamp::from_secs;
            {
                let svc = service(dir.path());
                let mut a = failure_alert("quiet", "*", 1, None, "auto");
                a.criteria = Some(tocsin_core::model::Criteria {
                    absent: Some("10m".into()),
                    ..Default::default()
                });
                svc.store_alert("proj", "quiet", a, false, at(0))
                    .await
                    .expect("stored");
                send(&svc, "job1", 10, "k1").await;
                send(&svc, "job2", 100, "k2").await;
                assert!(svc.tick(at(500)).await.expect("tick").fired.is_empty());
            }
            let svc = service(dir.path());
            let fired = svc.tick(at(650)).await.expect("tick").fired;
            assert_eq!(fired.len(), 1, "job1's deadline (610) was kept");
            assert_eq!(fired[0].activation.activation_time, at(610));
            drop(svc);
            let svc = service(dir.path());
            let again = svc.tick(at(710)).await.expect("tick").fired;
            let entities: Vec<&str> = again
                .iter()
                .map(|f| f.activation.entity_id.as_str())
                .collect();
            assert_eq!(
                entities,
                ["job2"],
                "job1 fired before the restart: not again"
            );
            let (state, count) = {
                let a = svc
                    .get_alert("proj", "quiet", at(711))
                    .await
                    .expect("alert");
                (a.state, a.count)
            };
            assert_eq!((state, count), (AlertState::Active, 2));
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
            svc.reset_alert("proj", "m", "ops", Timestamp::from_secs(108))
                .await
                .expect("reset");
            drop(svc);
            let svc = service(dir.path());
            let m = svc.activation("proj", 1).await.expect("activation");
            assert_eq!(m.reset_time, Some(Timestamp::from_secs(108)));
        }
    }
}
