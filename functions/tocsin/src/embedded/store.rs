//! The store traits of core, on the embedded store: operations go to the writer (logged, then
//! run through core's operations on the state), queries to the state or to fjall.

use super::*;

#[async_trait]
impl AlertStore for EmbeddedStore {
    async fn put_alert(&self, put: PutAlert) -> Result<PutOutcome> {
        self.apply(Op::PutAlert(Box::new(put))).await?.put()
    }
    async fn get_alert(&self, project: &str, name: &str) -> Result<Option<AlertRecord>> {
        let (project, name) = (project.to_owned(), name.to_owned());
        self.run(Lane::Caller, move |w| {
            Ok(w.state.get(&project, &name).map(|e| e.record.clone()))
        })
        .await
    }
    async fn alert_window(
        &self,
        project: &str,
        name: &str,
        entity: &str,
    ) -> Result<Option<(AlertRecord, tocsin_core::engine::Window)>> {
        let (project, name, entity) = (project.to_owned(), name.to_owned(), entity.to_owned());
        self.run(Lane::Caller, move |w| {
            Ok(w.state.alert_window(&project, &name, &entity))
        })
        .await
    }
    async fn list_alerts(
        &self,
        project: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<AlertRecord>> {
        let project = project.map(str::to_owned);
        self.run(Lane::Writer, move |w| {
            Ok(w.state.list(project.as_deref(), offset, limit))
        })
        .await
    }
    async fn alerts_version(&self) -> Result<String> {
        let (edits, next) = self
            .run(Lane::Caller, |w| Ok(w.state.listing_version()))
            .await?;
        Ok(format!("{:x}-{edits}-{next}", self.opened.0))
    }
    async fn delete_alert(&self, project: &str, name: &str) -> Result<bool> {
        let (project, name) = (project.to_owned(), name.to_owned());
        self.apply(Op::DeleteAlert { project, name }).await?.found()
    }
    async fn reset_alert(
        &self,
        project: &str,
        name: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let (project, name, by) = (project.to_owned(), name.to_owned(), Some(by.to_owned()));
        self.apply(Op::ResetAlert {
            project,
            name,
            now,
            by,
        })
        .await?
        .found()
    }
    async fn acknowledge_alert(
        &self,
        project: &str,
        name: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let (project, name, by) = (project.to_owned(), name.to_owned(), by.to_owned());
        self.apply(Op::Acknowledge {
            project,
            name,
            by,
            now,
        })
        .await?
        .found()
    }
    async fn alert_count(&self) -> Result<usize> {
        self.run(Lane::Caller, |w| Ok(w.state.len())).await
    }

    async fn delivered(
        &self,
        project: &str,
        alert: &str,
        activation: u64,
        name: &str,
        sent: Option<Timestamp>,
    ) -> Result<()> {
        self.apply(Op::Delivered {
            project: project.to_owned(),
            alert: alert.to_owned(),
            activation,
            name: name.to_owned(),
            sent,
        })
        .await?
        .recorded()
    }
}

#[async_trait]
impl SilenceStore for EmbeddedStore {
    async fn put_silence(&self, silence: Silence, now: Timestamp, retention: Span) -> Result<()> {
        self.apply(Op::PutSilence {
            silence: Box::new(silence),
            now,
            retention,
        })
        .await?
        .recorded()
    }
    async fn silence(&self, project: &str, id: &str) -> Result<Option<Silence>> {
        let (project, id) = (project.to_owned(), id.to_owned());
        self.run(Lane::Caller, move |w| {
            Ok(w.state.silences().get(&project, &id).cloned())
        })
        .await
    }
    async fn silences(&self, project: Option<&str>) -> Result<Vec<Silence>> {
        let project = project.map(str::to_owned);
        self.run(Lane::Writer, move |w| {
            Ok(w.state.silences().list(project.as_deref()))
        })
        .await
    }
}

#[async_trait]
impl EventStore for EmbeddedStore {
    async fn apply_event(&self, event: &AcceptedEvent, ttl: Span) -> Result<EventOutcome> {
        let event = event.clone();
        self.apply(Op::Event { event, ttl }).await?.event()
    }

    /// One job for the whole batch: one trip to the writer, one write, evaluated together.
    async fn apply_events(&self, events: &[AcceptedEvent], ttl: Span) -> Vec<Result<EventOutcome>> {
        if let [event] = events {
            return vec![self.apply_event(event, ttl).await];
        }
        let owned = events.to_vec();
        let n = owned.len();
        let done = self
            .run(Lane::Writer, move |w| w.apply_batch(owned, ttl))
            .await;
        match done {
            Ok(outcomes) => outcomes,
            Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
        }
    }

    /// Read from the log beside the writer (see `history`).
    async fn recorded_events(
        &self,
        query: &tocsin_core::store::EventQuery,
    ) -> Result<Vec<tocsin_core::store::Recorded>> {
        let dir = self.disk.log_dir.clone();
        let query = query.clone();
        tokio::task::spawn_blocking(move || history::read(&dir, &query))
            .await
            .map_err(store_err)?
    }

    /// Logged only when something is due, so that an idle server's timer writes nothing.
    async fn tick(&self, now: Timestamp) -> Result<tocsin_core::engine::Ticked> {
        self.run(Lane::Writer, move |w| {
            if w.state.due(now) {
                w.apply(Op::Tick { now })?.ticked()
            } else {
                Ok(Default::default())
            }
        })
        .await
    }
}

#[async_trait]
impl ActivationStore for EmbeddedStore {
    async fn activations(&self, query: &ActivationQuery) -> Result<Vec<Activation>> {
        let query = query.clone();
        self.read(move |disk| disk.acts.query(&query)).await
    }

    async fn activation(&self, project: &str, id: u64) -> Result<Option<Activation>> {
        let project = project.to_owned();
        self.read(move |disk| Ok(disk.acts.get(id)?.filter(|a| a.project == project)))
            .await
    }

    async fn record_delivery(&self, id: u64, delivery: Delivery) -> Result<()> {
        self.apply(Op::Delivery {
            activation: id,
            delivery,
        })
        .await?
        .recorded()
    }

    async fn pending_deliveries(&self, limit: usize) -> Result<Vec<Activation>> {
        self.read(move |disk| disk.acts.pending(limit)).await
    }

    async fn prune_activations(&self, before: Timestamp) -> Result<usize> {
        let disk = self.disk.clone();
        self.run(Lane::Writer, move |w| {
            let old = disk.acts.before(before)?;
            let n = old.len();
            w.changes.activations_removed.extend(old);
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
            let mut batch = disk.own_batch();
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
            let mut batch = disk.own_batch();
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
            let mut batch = disk.own_batch();
            batch.remove(&disk.ks.tokens, key.as_bytes());
            batch.commit().map_err(store_err)
        })
        .await?;
        Ok(write_lock(&self.tokens).remove(id).is_some())
    }
}

// The store's locks are taken even when poisoned, so that one panic does not turn every later
// call into another; a panic in a turn at the writer stops the store (see `turns`).
