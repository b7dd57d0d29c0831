//! `tocsin serve`: the embedded deployment in one process: API, ingestion, engine, notifier, on
//! the embedded store, with background upkeep (journal sync, retention).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tocsin_core::Service;
use tocsin_core::model::{AlertConfig, Span, Timestamp};
use tocsin_core::store::{ActivationStore, Store};

use crate::config::Config;
use crate::embedded::{Durability, EmbeddedStore, OpenError};
use tocsin_adapters::api::{self, AppState};
use tocsin_adapters::notify::{self, Notifier};

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot load alert configs: {0}")]
    Alerts(String),
    #[error("cannot start the notifier: {0}")]
    Notifier(#[from] tocsin_adapters::notify::NotifierError),
    #[error("the server stopped: {0}")]
    Io(#[from] std::io::Error),
}

/// Stores the alerts of every rule file (`*.tocsin`, secrets from environment variables) and
/// every `*.json` alert config (one config, or a list of them, per file) of `dir`, in file name
/// order. Storing an unchanged config again does not reset it.
pub async fn load_alerts(service: &Service, dir: &Path) -> Result<usize, ServeError> {
    let err = |e: String| ServeError::Alerts(e);
    let compiled =
        crate::commands::compile_files(&[dir.to_path_buf()], &crate::commands::env_secret)
            .map_err(|rendered| err(format!("the rule files do not check:\n{rendered}")))?;
    let mut stored = 0;
    for (path, project, alerts) in compiled {
        for a in alerts {
            let name = a.config.name.clone();
            service
                .store_alert(&project, &name, a.config, false, Timestamp::now())
                .await
                .map_err(|e| {
                    let hint = if a.unresolved_secrets.is_empty() {
                        String::new()
                    } else {
                        format!(" (set {})", a.unresolved_secrets.join(", "))
                    };
                    err(format!(
                        "{}: alert {project}/{name}: {e}{hint}",
                        path.display()
                    ))
                })?;
            stored += 1;
        }
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| err(format!("{}: {e}", dir.display())))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for file in files {
        let text =
            std::fs::read_to_string(&file).map_err(|e| err(format!("{}: {e}", file.display())))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| err(format!("{}: {e}", file.display())))?;
        let configs = match value {
            serde_json::Value::Array(items) => items,
            one => vec![one],
        };
        for config in configs {
            let config: AlertConfig = serde_json::from_value(config)
                .map_err(|e| err(format!("{}: {e}", file.display())))?;
            let (project, name) = (config.project.clone(), config.name.clone());
            service
                .store_alert(&project, &name, config, false, Timestamp::now())
                .await
                .map_err(|e| err(format!("{}: alert {project}/{name}: {e}", file.display())))?;
            stored += 1;
        }
    }
    Ok(stored)
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn run(config: Config) -> Result<(), ServeError> {
    let server = &config.server;
    std::fs::create_dir_all(&server.data_dir).map_err(|source| ServeError::DataDir {
        path: server.data_dir.display().to_string(),
        source,
    })?;
    let embedded = Arc::new(EmbeddedStore::open(&server.data_dir, server.durability)?);
    let store: Arc<dyn Store> = embedded.clone();
    let (queue, inbox) = notify::queue(&config.notifications);
    let service = Service::new(store.clone(), config.alerts.clone(), queue);
    if let Some(dir) = &server.alerts_dir {
        let n = load_alerts(&service, dir).await?;
        tracing::info!(count = n, dir = %dir.display(), "alert configs stored");
    }
    // Kept for the life of the server: dropping it stops deliveries.
    let _notifier = Notifier::start(
        service.clone(),
        inbox,
        config.notifications.clone(),
        &config.smtp,
    )
    .await?;
    spawn_upkeep(
        embedded.clone(),
        server.durability,
        server.sync_interval_ms,
        server.activation_retention_days,
    );

    let app = api::router(
        AppState {
            service,
            queue: None,
        },
        server.max_body_bytes,
    );
    let listener = tokio::net::TcpListener::bind(server.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: server.listen.to_string(),
            source,
        })?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %server.data_dir.display(), mode = ?config.alerts.mode, "tocsin is serving");
    println!(
        "tocsin listening on http://{addr} (data in {})",
        server.data_dir.display()
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    if let Err(e) = embedded.sync() {
        tracing::error!(error = %e, "final sync failed");
    }
    Ok(())
}

/// Periodic journal sync (with OS durability), activation retention and idempotency-key expiry.
fn spawn_upkeep(
    store: Arc<EmbeddedStore>,
    durability: Durability,
    sync_ms: u64,
    retention_days: i64,
) {
    if durability == Durability::Os {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(sync_ms.max(10)));
            loop {
                tick.tick().await;
                let s = store.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.sync()).await {
                    tracing::error!(error = %e, "journal sync failed");
                }
            }
        });
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let now = Timestamp::now();
            let cutoff = now.plus(Span(-Span::from_secs(retention_days * 86_400).0));
            match store.prune_activations(cutoff).await {
                Ok(n) if n > 0 => tracing::info!(count = n, "expired activations deleted"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "activation retention failed"),
            }
            if let Err(e) = store.prune_idempotency(now).await {
                tracing::error!(error = %e, "idempotency key expiry failed");
            }
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
