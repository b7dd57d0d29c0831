//! `tocsin serve`: the embedded deployment in one process: API, ingestion, engine, notifier, on
//! the embedded store, with background upkeep (journal sync, retention).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tocsin_core::Service;
use tocsin_core::model::{AlertConfig, Span, Timestamp};
use tocsin_core::store::{ActivationStore, Store};

use crate::config::Config;
use crate::embedded::{Durability, EmbeddedStore, OpenError, Options};
use tocsin_adapters::api::{self, AppState, RequestLimits};
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
    #[error(
        "refusing to serve on {addr} without auth: anyone who can reach it could change every \
         alert. Listen on loopback (127.0.0.1), or turn auth on: create the first admin token \
         while the server is stopped with\n  tocsin token create --data-dir {data_dir} --role admin --project '*' --name admin\n\
         then start with TOCSIN_AUTH__ENABLED=true (or `[auth] enabled = true` in the config file)"
    )]
    NoAuth { addr: String, data_dir: String },
    #[error(transparent)]
    Tls(#[from] crate::listener::TlsError),
    #[error("the store failed: {0}")]
    Store(#[from] tocsin_core::Error),
    #[error("cannot start the notifier: {0}")]
    Notifier(#[from] tocsin_adapters::notify::NotifierError),
    #[error("the server stopped: {0}")]
    Io(#[from] std::io::Error),
}

/// What the rule files (`*.tocsin`) and alert configs (`*.json`) of a directory define, read
/// and checked whole before anything is stored.
pub struct AlertFiles {
    silences: Vec<(PathBuf, String, tocsin_rules::CompiledSilence)>,
    alerts: Vec<(PathBuf, AlertConfig, Vec<String>)>,
}

/// Reads every rule file (`*.tocsin`, secrets from environment variables) and every `*.json`
/// alert config (one config, or a list of them, per file) of `dir`, in file name order. A file
/// that does not check or parse fails the whole read.
pub fn read_alerts(dir: &Path) -> Result<AlertFiles, ServeError> {
    let err = |e: String| ServeError::Alerts(e);
    let compiled =
        crate::commands::compile_files(&[dir.to_path_buf()], &crate::commands::env_secret)
            .map_err(|rendered| err(format!("the rule files do not check:\n{rendered}")))?;
    let mut read = AlertFiles {
        silences: Vec::new(),
        alerts: Vec::new(),
    };
    for (path, checked) in compiled {
        for s in checked.silences {
            read.silences
                .push((path.clone(), checked.project.clone(), s));
        }
        for a in checked.alerts {
            read.alerts
                .push((path.clone(), a.config, a.unresolved_secrets));
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
            read.alerts.push((file.clone(), config, Vec::new()));
        }
    }
    Ok(read)
}

/// What storing the files did: alerts created and updated (`project/name`), and how many
/// were already as the files say (not stored again, so not reset).
#[derive(Debug, Default, serde::Serialize)]
pub struct Stored {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: usize,
    pub silences: usize,
}

/// Stores what `files` define, planned as `tocsin apply` plans (an alert equal to the stored
/// one is left alone; nothing is deleted).
pub async fn store_alerts(service: &Service, files: AlertFiles) -> Result<Stored, ServeError> {
    let err = |e: String| ServeError::Alerts(e);
    let now = Timestamp::now();
    let mut stored = Stored::default();
    for (path, project, s) in files.silences {
        service
            .store_silence(
                &project,
                &s.id,
                s.spec,
                &tocsin_core::auth::Principal::anonymous(),
                now,
            )
            .await
            .map_err(|e| {
                err(format!(
                    "{}: silence {project}/{}: {e}",
                    path.display(),
                    s.id
                ))
            })?;
        stored.silences += 1;
    }
    for (path, config, unresolved) in files.alerts {
        let (project, name) = (config.project.clone(), config.name.clone());
        let existing = match service.store().get_alert(&project, &name).await {
            Ok(record) => record.map(|r| r.rule.config.clone()),
            Err(e) => return Err(err(format!("alert {project}/{name}: {e}"))),
        };
        let change =
            crate::commands::plan(std::slice::from_ref(&config), existing.as_slice(), false);
        let label = format!("{project}/{name}");
        match change.first().map(|(_, c)| c) {
            Some(crate::commands::Change::Unchanged) => {
                stored.unchanged += 1;
                continue;
            }
            Some(crate::commands::Change::Create) => stored.created.push(label),
            _ => stored.updated.push(label),
        }
        service
            .store_alert(&project, &name, config, false, now)
            .await
            .map_err(|e| {
                let hint = if unresolved.is_empty() {
                    String::new()
                } else {
                    format!(" (set {})", unresolved.join(", "))
                };
                err(format!(
                    "{}: alert {project}/{name}: {e}{hint}",
                    path.display()
                ))
            })?;
    }
    Ok(stored)
}

/// Stores the alerts and silences of `dir` (see [`read_alerts`] and [`store_alerts`]).
pub async fn load_alerts(service: &Service, dir: &Path) -> Result<Stored, ServeError> {
    store_alerts(service, read_alerts(dir)?).await
}

/// Creates the data directory readable by this user only (it holds webhook URLs, SMTP
/// passwords and token hashes), and takes group and other access from one that exists.
pub fn private_dir(dir: &Path) -> Result<(), ServeError> {
    let err = |source| ServeError::DataDir {
        path: dir.display().to_string(),
        source,
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir).map_err(err)?;
        let mode = std::fs::metadata(dir).map_err(err)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(err)?;
        }
    }
    #[cfg(not(unix))]
    builder.create(dir).map_err(err)?;
    Ok(())
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn run(config: Config) -> Result<(), ServeError> {
    let server = &config.server;
    if !config.auth.enabled && !server.listen.ip().is_loopback() {
        return Err(ServeError::NoAuth {
            addr: server.listen.to_string(),
            data_dir: server.data_dir.display().to_string(),
        });
    }
    let tls = match (&server.tls_cert, &server.tls_key) {
        (Some(cert), Some(key)) => Some(crate::listener::tls_acceptor(cert, key)?),
        _ => None,
    };
    private_dir(&server.data_dir)?;
    // Installed before the store opens, so that recovery's commits are counted too.
    crate::operate::prometheus();
    let embedded = Arc::new(EmbeddedStore::open(
        &server.data_dir,
        Options {
            durability: server.durability,
            log_retention: Duration::from_secs(server.log_retention_days.saturating_mul(86_400)),
            ..Options::default()
        },
    )?);
    let store: Arc<dyn Store> = embedded.clone();
    let (queue, inbox) = notify::queue(&config.notifications);
    let service = Service::new(store.clone(), config.alerts.clone(), queue);
    if let Some(dir) = &server.alerts_dir {
        let stored = load_alerts(&service, dir).await?;
        tracing::info!(created = stored.created.len(), updated = stored.updated.len(), unchanged = stored.unchanged, dir = %dir.display(), "alert configs stored");
    }
    // Kept for the life of the server (the API's state holds it): dropping it stops deliveries.
    let notifier = Notifier::start(
        service.clone(),
        inbox,
        config.notifications.clone(),
        &config.smtp,
    )
    .await?;
    let notifier = Arc::new(notifier);
    spawn_upkeep(
        embedded.clone(),
        server.durability,
        server.sync_interval_ms,
        server.activation_retention_days,
    );
    spawn_clock(service.clone());

    let operations = Arc::new(crate::operate::ServeOperations {
        service: service.clone(),
        store: embedded.clone(),
        data_dir: server.data_dir.clone(),
        alerts_dir: server.alerts_dir.clone(),
        min_free_bytes: server.min_free_bytes,
        reloading: tokio::sync::Mutex::new(()),
    });
    spawn_reload_on_hangup(operations.clone());
    let mut state = AppState {
        public_url: config.notifications.public_url.clone(),
        notifier: Some(notifier),
        operations: Some(operations),
        ..AppState::open(service)
    };
    if config.auth.enabled {
        use tocsin_core::store::TokenStore;
        if embedded.tokens().await?.is_empty() {
            tracing::warn!(
                "auth is on and there is no token yet: stop the server and create one with \
                 `tocsin token create --data-dir {} --role admin --project '*'`",
                server.data_dir.display()
            );
        }
        state = state.with_tokens(embedded.clone());
    }
    let app = api::router(
        state,
        RequestLimits {
            max_body_bytes: server.max_body_bytes,
            body_timeout: Duration::from_secs(server.body_timeout_secs),
        },
    );
    let app = app.layer(axum::middleware::from_fn(access_log));
    let listener = tokio::net::TcpListener::bind(server.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: server.listen.to_string(),
            source,
        })?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, data_dir = %server.data_dir.display(), mode = ?config.alerts.mode, auth = config.auth.enabled, "tocsin is serving");
    // For a person at a terminal; JSON logs (a shipper reading both streams) have the line above.
    if server.log_format == crate::config::LogFormat::Text {
        println!(
            "tocsin listening on {scheme}://{addr} (data in {}; auth {})",
            server.data_dir.display(),
            if config.auth.enabled { "on" } else { "off" }
        );
    }
    let limits = crate::listener::ConnectionLimits {
        header_timeout: Duration::from_secs(server.header_timeout_secs),
        idle_timeout: Duration::from_secs(server.idle_timeout_secs),
        max_connections: server.max_connections,
    };
    crate::listener::serve(listener, tls, app, limits, shutdown_signal()).await;
    if let Err(e) = embedded.sync() {
        tracing::error!(error = %e, "final sync failed");
    }
    Ok(())
}

/// One log line per request (target `tocsin::access`): method, path (never the query or a
/// header, where secrets travel), status and latency. Refusals and failures log at `info`,
/// the rest at `debug`: at thousands of events a second a line each would cost more than the
/// events (`RUST_LOG=info,tocsin::access=debug` shows every request).
async fn access_log(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let uri = request.uri().clone();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    if status >= 400 {
        tracing::info!(target: "tocsin::access", %method, path = uri.path(), status, micros, "request");
    } else {
        tracing::debug!(target: "tocsin::access", %method, path = uri.path(), status, micros, "request");
    }
    response
}

/// How often the server's clock ticks: the end of a cooldown is settled (and its resolved
/// notifications sent) within this of the time.
const TICK: Duration = Duration::from_secs(1);

/// The clock of `tocsin serve`: time passes for the engine without events (see
/// [`Service::tick`]). A tick with nothing due reads the state and writes nothing.
fn spawn_clock(service: Service) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            if let Err(e) = service.tick(Timestamp::now()).await {
                tracing::error!(error = %e, "the clock's tick failed; the next one tries again");
            }
        }
    });
}

/// Periodic log sync (with OS durability), the store's timed upkeep (settling activations,
/// snapshots), activation retention and idempotency-key expiry.
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
    {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                if let Err(e) = store.upkeep().await {
                    tracing::error!(error = %e, "store upkeep failed");
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

/// SIGHUP re-reads the rule files, as `POST /-/reload` does (the outcome is logged).
fn spawn_reload_on_hangup(operations: Arc<crate::operate::ServeOperations>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tocsin_adapters::api::Operations;
        let kind = tokio::signal::unix::SignalKind::hangup();
        let Ok(mut hangups) = tokio::signal::unix::signal(kind) else {
            tracing::warn!("SIGHUP cannot be caught here: reload with POST /-/reload");
            return;
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the rule files");
            // The outcome, either way, is logged by the reload itself.
            let _ = operations.reload().await;
        }
    });
    #[cfg(not(unix))]
    drop(operations);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn it_refuses_an_address_off_loopback_without_auth_and_says_how_to_turn_it_on() {
        let dir = tempfile::tempdir().expect("dir");
        let mut config = Config::default();
        config.server.listen = "0.0.0.0:0".parse().expect("address");
        config.server.data_dir = dir.path().join("data");
        let err = run(config).await.expect_err("refused");
        let text = err.to_string();
        assert!(matches!(err, ServeError::NoAuth { .. }), "{text}");
        assert!(text.contains("tocsin token create --data-dir"), "{text}");
        assert!(text.contains("TOCSIN_AUTH__ENABLED=true"), "{text}");
        assert!(
            !dir.path().join("data").exists(),
            "refused before touching anything"
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_data_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let fresh = dir.path().join("a/b");
        private_dir(&fresh).expect("created");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&fresh), 0o700);
        let open = dir.path().join("open");
        std::fs::create_dir(&open).expect("dir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        private_dir(&open).expect("tightened");
        assert_eq!(mode(&open), 0o700);
    }
}
