//! What `tocsin serve` offers its operators beyond the API (see
//! [`tocsin_adapters::api::Operations`]): the Prometheus exposition of
//! [`tocsin_adapters::telemetry`], readiness that checks the disk, and reloading the rule files.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::Value;
use tocsin_adapters::api::Operations;
use tocsin_adapters::telemetry::{self, Levels};
use tocsin_core::Service;
use tocsin_core::model::{AlertState, Timestamp};

use crate::embedded::EmbeddedStore;

/// Outbox activations a scrape reads at most (its depth reads this when the outbox is deeper).
const OUTBOX_SCAN: usize = 10_000;

/// The process's Prometheus recorder, installed by the first server (a process has one
/// recorder; tests start several servers in one).
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let builder = builder
            .set_buckets_for_metric(
                Matcher::Full(telemetry::DELIVERY_LATENCY.into()),
                telemetry::DELIVERY_BUCKETS,
            )
            .and_then(|b| b.set_buckets(telemetry::FAST_BUCKETS));
        let recorder = match builder {
            Ok(b) => b.build_recorder(),
            // The buckets are constants: this is a bug, but metrics are not worth a crash.
            Err(e) => {
                tracing::error!(error = %e, "metrics buckets refused; histograms are summaries");
                PrometheusBuilder::new().build_recorder()
            }
        };
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics shows none");
        }
        telemetry::describe();
        handle
    })
}

/// A writer into a channel of chunks: a backup written on a blocking thread, streamed as the
/// answer's body. A client that went away fails the next write, which ends the backup.
struct Chunks(tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>);

impl std::io::Write for Chunks {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(bytes::Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The operations of one `tocsin serve`.
pub struct ServeOperations {
    pub service: Service,
    pub store: Arc<EmbeddedStore>,
    pub data_dir: PathBuf,
    pub alerts_dir: Option<PathBuf>,
    pub min_free_bytes: u64,
    /// One reload at a time: two would plan against each other's half-stored files.
    pub reloading: tokio::sync::Mutex<()>,
}

impl ServeOperations {
    async fn levels(&self) -> Result<Levels, tocsin_core::Error> {
        let store = self.service.store();
        let now = Timestamp::now();
        let alerts = store.list_alerts(None, 0, usize::MAX).await?;
        let active = alerts
            .iter()
            .filter(|a| a.view(now).state == AlertState::Active)
            .count();
        let outbox = store.pending_deliveries(OUTBOX_SCAN).await?;
        let oldest = outbox.iter().map(|a| a.activation_time.0).min();
        let waited = oldest.map_or(0, |t| now.0.saturating_sub(t).max(0));
        Ok(Levels {
            alerts: alerts.len(),
            active,
            outbox: outbox.len(),
            outbox_oldest: Duration::from_micros(u64::try_from(waited).unwrap_or(0)),
            log_bytes: self.store.log_bytes().ok(),
        })
    }
}

#[async_trait::async_trait]
impl Operations for ServeOperations {
    async fn metrics(&self) -> String {
        match self.levels().await {
            Ok(levels) => telemetry::refresh(levels),
            Err(e) => tracing::error!(error = %e, "metrics: the store's levels cannot be read"),
        }
        let handle = prometheus();
        handle.run_upkeep();
        handle.render()
    }

    async fn not_ready(&self) -> Option<String> {
        match rustix::fs::statvfs(&self.data_dir) {
            Ok(fs) => {
                let free = fs.f_bavail.saturating_mul(fs.f_frsize);
                (free < self.min_free_bytes).then(|| {
                    format!(
                        "the data directory {} has {free} bytes free, under server.min_free_bytes ({})",
                        self.data_dir.display(),
                        self.min_free_bytes
                    )
                })
            }
            Err(e) => Some(format!(
                "the data directory {} cannot be read: {e}",
                self.data_dir.display()
            )),
        }
    }

    async fn backup(&self) -> Result<axum::body::Body, String> {
        let capture = self.store.capture().await.map_err(|e| e.to_string())?;
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
        tokio::task::spawn_blocking(move || {
            let out = std::io::BufWriter::with_capacity(64 << 10, Chunks(tx.clone()));
            match capture.write(out) {
                Ok(counts) => tracing::info!(?counts, "backup written"),
                // The client sees a cut-off body, which restore refuses (no closing count).
                Err(e) => {
                    tracing::error!(error = %e, "backup failed part way");
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                }
            }
        });
        let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        });
        Ok(axum::body::Body::from_stream(chunks))
    }

    async fn reload(&self) -> Result<Value, String> {
        let Some(dir) = &self.alerts_dir else {
            return Err(
                "no rule files to reload: the server was started without --alerts".to_owned(),
            );
        };
        let _one = self.reloading.lock().await;
        let files = crate::serve::read_alerts(dir).map_err(|e| {
            let why = format!("nothing changed: {e}");
            tracing::error!(dir = %dir.display(), "reload refused: {why}");
            why
        })?;
        match crate::serve::store_alerts(&self.service, files).await {
            Ok(stored) => {
                tracing::info!(
                    dir = %dir.display(),
                    created = ?stored.created,
                    updated = ?stored.updated,
                    unchanged = stored.unchanged,
                    silences = stored.silences,
                    "reloaded the rule files"
                );
                serde_json::to_value(&stored).map_err(|e| e.to_string())
            }
            // The files checked: what failed is the store (the API's own answers say so too).
            Err(e) => {
                let why = format!("the reload stopped part way: {e}");
                tracing::error!(dir = %dir.display(), "{why}");
                Err(why)
            }
        }
    }
}
