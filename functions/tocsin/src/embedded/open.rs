//! Opening the store: the last snapshot read, the log after it replayed through the same
//! engine code as live operations, the writer and snapshot threads started.

use super::*;

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`: reads the last snapshot, replays the log after
    /// it, and starts the writer and snapshot threads.
    pub fn open(dir: &Path, options: Options) -> std::result::Result<Self, OpenError> {
        let db_err = |source| OpenError::Db {
            path: dir.display().to_string(),
            source,
        };
        let write_err = |source| OpenError::Write {
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
        let acts = Activations::open(&db).map_err(db_err)?;
        let ks = Keyspaces {
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
        let disk = Arc::new(Disk {
            db,
            ks,
            acts,
            durability: options.durability,
            dir: dir.to_owned(),
            log_dir: dir.join("log"),
        });
        let (from, mut state) = match snapshot::read(dir)? {
            Some(found) => found,
            None if legacy::present(&disk.db) => {
                // The old layout: its state becomes the first snapshot, then its keyspaces go.
                let state = legacy::load(&disk.db, disk.acts.last_settled_id().map_err(db_err)?)?;
                let encoded = snapshot::encode(&state, Position::default())
                    .map_err(|e| write_err(std::io::Error::other(e)))?;
                snapshot::write(dir, &encoded).map_err(write_err)?;
                tracing::info!(
                    alerts = state.len(),
                    "moved the state of an older data directory into a snapshot"
                );
                (Position::default(), state)
            }
            None => (Position::default(), MemoryState::new(0)),
        };
        if legacy::present(&disk.db) {
            legacy::drop_keyspaces(&disk.db).map_err(db_err)?;
        }
        let started = Instant::now();
        let replay_err = |e: Error| write_err(std::io::Error::other(e.to_string()));
        let mut replayed = 0u64;
        let mut replay = op::Replay::default();
        let end = log::replay(&disk.log_dir, from, |payload| {
            let op: Op = serde_json::from_slice(payload).map_err(|e| OpenError::Corrupt {
                what: "log record",
                detail: e.to_string(),
            })?;
            let mut changes = Changes::default();
            replay.feed(&mut state, op, &mut changes);
            replayed += 1;
            disk.acts.apply(changes).map_err(replay_err)?;
            if disk.acts.unsettled() >= options.settle_activations && disk.acts.begin_settling() {
                disk.acts.settle().map_err(replay_err)?;
            }
            Ok::<_, OpenError>(())
        })??;
        let mut changes = Changes::default();
        replay.finish(&mut state, &mut changes);
        disk.acts.apply(changes).map_err(replay_err)?;
        if replayed > 0 {
            tracing::info!(
                records = replayed,
                ms = started.elapsed().as_millis() as u64,
                "replayed the event log after the last snapshot"
            );
        }
        let log = LogWriter::open(&disk.log_dir, end, options.durability == Durability::Fsync)
            .map_err(write_err)?;
        let log_sync = log.sync_handle();
        let (work_tx, work_rx) = mpsc::sync_channel::<Background>(1);
        let busy = Arc::new(AtomicBool::new(false));
        let background_thread = {
            let (disk, sync, busy) = (disk.clone(), log_sync.clone(), busy.clone());
            let retention = options.log_retention;
            std::thread::Builder::new()
                .name("tocsin-snapshot".into())
                .spawn(move || {
                    for work in work_rx {
                        match work {
                            Background::Settle => disk.settle(),
                            Background::Snapshot(encoded, at) => {
                                disk.write_snapshot(&encoded, at, &sync, retention)
                            }
                        }
                        busy.store(false, Ordering::Release);
                    }
                })
                .map_err(OpenError::Thread)?
        };
        let mut writer_state = Writer {
            state,
            changes: Changes::default(),
            log,
            // A long replay is worth a snapshot soon, so that the next restart is short.
            since_snapshot: replayed,
            snapshot_at: Instant::now(),
            last_snapshot: (from, 0),
            settled_at: Instant::now(),
            options,
            background: Some(work_tx),
            background_thread: Some(background_thread),
            busy,
        };
        if replayed >= options.snapshot_records / 10 {
            writer_state.snapshot_at -= options.snapshot_interval;
            writer_state.background_work(&disk);
        }
        let turns = Arc::new(Turns::new(writer_state, disk.clone(), options.durability));
        let writer = {
            let turns = turns.clone();
            std::thread::Builder::new()
                .name("tocsin-store".into())
                .spawn(move || turns.writer_thread())
                .map_err(OpenError::Thread)?
        };
        Ok(EmbeddedStore {
            opened: Timestamp::now(),
            turns,
            writer: Some(writer),
            disk,
            log_sync,
            audit_seq: Arc::new(audit_seq.into()),
            tokens: RwLock::new(tokens),
        })
    }
}
