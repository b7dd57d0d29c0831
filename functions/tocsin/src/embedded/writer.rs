//! The writer's own work beside the operations: the snapshots and the settling of activations
//! into fjall that come due as records pile up, and the last snapshot at shutdown.

use super::*;

impl Writer {
    /// Appends `op` to the log's pending group, then applies it.
    pub(super) fn apply(&mut self, op: Op) -> Result<Done> {
        self.log
            .push(|buf| serde_json::to_writer(buf, &op))
            .map_err(store_err)?;
        self.since_snapshot += 1;
        Ok(op::apply(&mut self.state, op, &mut self.changes))
    }

    /// Appends a batch's marker and its events to the log's pending group, then applies them
    /// together.
    pub(super) fn apply_batch(
        &mut self,
        events: Vec<AcceptedEvent>,
        ttl: Span,
    ) -> Result<Vec<Result<EventOutcome>>> {
        let n = events.len();
        self.log
            .push(|buf| serde_json::to_writer(buf, &Op::Batch { n }))
            .map_err(store_err)?;
        let mut logged = Vec::with_capacity(n);
        for event in events {
            let op = Op::Event { event, ttl };
            self.log
                .push(|buf| serde_json::to_writer(buf, &op))
                .map_err(store_err)?;
            let Op::Event { event, .. } = op else {
                continue;
            };
            logged.push(event);
        }
        self.since_snapshot += n as u64 + 1;
        op::apply_batch(&mut self.state, &logged, ttl, &mut self.changes).events()
    }

    /// Whether background work is due and none is in progress: a snapshot (records or
    /// time), or a settle of activations (count or time). Cheap: a caller's turn asks it after
    /// every commit.
    pub(super) fn background_due(&self, disk: &Disk) -> Option<(bool, bool)> {
        if self.busy.load(Ordering::Acquire) || self.background.is_none() {
            return None;
        }
        let now_at = self.log.position();
        let (last_at, last_bytes) = self.last_snapshot;
        // Bytes of log since the last snapshot (segments hold about SEGMENT_BYTES each).
        let log_since = ((now_at.segment.saturating_sub(last_at.segment)) * log::SEGMENT_BYTES
            + now_at.offset)
            .saturating_sub(last_at.offset);
        let snapshot_due = (self.since_snapshot >= self.options.snapshot_records
            && log_since >= last_bytes)
            || (self.since_snapshot > 0
                && self.snapshot_at.elapsed() >= self.options.snapshot_interval);
        let unsettled = disk.acts.unsettled();
        let settle_due = disk.acts.settling()
            || unsettled >= self.options.settle_activations
            || (unsettled > 0 && self.settled_at.elapsed() >= SETTLE_AFTER);
        (snapshot_due || settle_due).then_some((snapshot_due, settle_due))
    }

    /// Starts the background work that is due (see [`Writer::background_due`]); encoding a
    /// snapshot takes a while, so only the writer thread does this.
    pub(super) fn background_work(&mut self, disk: &Disk) {
        let Some((snapshot_due, settle_due)) = self.background_due(disk) else {
            return;
        };
        let Some(tx) = &self.background else { return };
        let now_at = self.log.position();
        let work = if snapshot_due && disk.acts.begin_settling() {
            let at = now_at;
            match snapshot::encode(&self.state, at) {
                Ok(encoded) => {
                    self.last_snapshot = (at, encoded.len() as u64);
                    Background::Snapshot(encoded, at)
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode a snapshot");
                    return;
                }
            }
        } else if settle_due {
            disk.acts.begin_settling();
            Background::Settle
        } else {
            return;
        };
        let snapshot = matches!(work, Background::Snapshot(..));
        self.busy.store(true, Ordering::Release);
        if tx.try_send(work).is_err() {
            self.busy.store(false, Ordering::Release);
            return;
        }
        if snapshot {
            self.since_snapshot = 0;
            self.snapshot_at = Instant::now();
        }
        self.settled_at = Instant::now();
    }

    /// The last snapshot, at shutdown: written here, once the background thread is done.
    pub(super) fn final_snapshot(&mut self, disk: &Disk) {
        drop(self.background.take());
        if let Some(t) = self.background_thread.take() {
            let _ = t.join();
        }
        if self.since_snapshot == 0 && disk.acts.unsettled() == 0 && !disk.acts.settling() {
            return;
        }
        // What an earlier, failed settle left aside first: the snapshot stands for every
        // activation before its position, so all of them must be set aside for it.
        disk.settle();
        if !disk.acts.begin_settling() {
            tracing::error!(
                "activations could not be written to fjall; no last snapshot (the log replays them)"
            );
            return;
        }
        let at = self.log.position();
        match snapshot::encode(&self.state, at) {
            Ok(encoded) => disk.write_snapshot(
                &encoded,
                at,
                &self.log.sync_handle(),
                self.options.log_retention,
            ),
            Err(e) => tracing::error!(error = %e, "cannot encode a snapshot"),
        }
    }
}

impl Disk {
    /// A write beside the writer (audit, tokens): durable as the durability asks, on its own.
    pub(super) fn own_batch(&self) -> WriteBatch {
        let mode = match self.durability {
            Durability::Os => PersistMode::Buffer,
            Durability::Fsync => PersistMode::SyncData,
        };
        self.db.batch().durability(Some(mode))
    }

    /// Writes a snapshot taken at `at`: first makes the log and fjall durable up to there
    /// (the snapshot stands for them), then replaces the previous snapshot, then deletes log
    /// segments that are no longer needed and older than the retention.
    pub(super) fn write_snapshot(
        &self,
        encoded: &[u8],
        at: Position,
        log: &SyncHandle,
        retention: Duration,
    ) {
        let started = Instant::now();
        let written = self
            .acts
            .settle()
            .map_err(|e| e.to_string())
            .and_then(|()| log.sync().map_err(|e| e.to_string()))
            .and_then(|()| {
                self.db
                    .persist(PersistMode::SyncData)
                    .map_err(|e| e.to_string())
            })
            .and_then(|()| snapshot::write(&self.dir, encoded).map_err(|e| e.to_string()));
        match written {
            Ok(()) => tracing::debug!(
                bytes = encoded.len(),
                ms = started.elapsed().as_millis() as u64,
                segment = at.segment,
                offset = at.offset,
                "wrote a snapshot"
            ),
            Err(e) => {
                // The previous snapshot stays; replay just starts further back.
                tracing::error!(error = %e, "cannot write a snapshot");
                return;
            }
        }
        let older_than = SystemTime::now()
            .checked_sub(retention)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        match log::prune(&self.log_dir, at.segment, older_than) {
            Ok((0, _)) => {}
            Ok((n, bytes)) => tracing::info!(
                segments = n,
                bytes,
                "deleted event log segments past the retention"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot prune the event log"),
        }
    }

    /// Settles the activations set aside (the background thread; a failure is tried again at
    /// the next settle).
    pub(super) fn settle(&self) {
        if let Err(e) = self.acts.settle() {
            tracing::error!(error = %e, "cannot write activations to fjall; will try again");
        }
    }
}
