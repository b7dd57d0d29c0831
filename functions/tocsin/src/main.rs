//! The `tocsin` command: `serve` runs the embedded deployment; `send` posts an event.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::{Map, Value, json};
use tocsin::config::Config;

#[derive(Parser)]
#[command(
    name = "tocsin",
    version,
    about = "Alerts and events for ML systems, MLRun-compatible"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API, engine, notifier and store in one process.
    Serve {
        /// A TOML config file (see the README); TOCSIN_<SECTION>__<KEY> variables override it.
        #[arg(long, env = "TOCSIN_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Where the embedded store keeps its data (default ./tocsin-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// A directory of alert configs (JSON) to store at start.
        #[arg(long)]
        alerts: Option<PathBuf>,
    },
    /// Post one event to a running server.
    Send {
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        #[arg(long)]
        project: String,
        /// The event kind, e.g. `failed` or `data_drift_detected`.
        kind: String,
        /// The entity id the event is about.
        entity: String,
        /// The entity kind; by default the one the event kind belongs to.
        #[arg(long)]
        entity_kind: Option<String>,
        /// Event data as key=value (values that parse as JSON are sent as JSON); repeatable.
        #[arg(long = "value", value_name = "KEY=VALUE")]
        values: Vec<String>,
        /// An idempotency key: a retry with the same key is counted once.
        #[arg(long)]
        id: Option<String>,
    },
}

fn init_logs() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logs();
    match Cli::parse().command {
        Command::Serve {
            config,
            listen,
            data_dir,
            alerts,
        } => {
            let mut cfg = match Config::load(config.as_deref(), std::env::vars()) {
                Ok(c) => c,
                Err(e) => return fail(&e.to_string()),
            };
            if let Some(l) = listen {
                cfg.server.listen = l;
            }
            if let Some(d) = data_dir {
                cfg.server.data_dir = d;
            }
            if alerts.is_some() {
                cfg.server.alerts_dir = alerts;
            }
            match tocsin::serve::run(cfg).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e.to_string()),
            }
        }
        Command::Send {
            server,
            project,
            kind,
            entity,
            entity_kind,
            values,
            id,
        } => send(&server, &project, &kind, &entity, entity_kind, &values, id).await,
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("tocsin: {msg}");
    ExitCode::FAILURE
}

async fn send(
    server: &str,
    project: &str,
    kind: &str,
    entity: &str,
    entity_kind: Option<String>,
    values: &[String],
    id: Option<String>,
) -> ExitCode {
    let entity_kind = match entity_kind {
        Some(k) => k,
        None => match kind.parse::<tocsin_core::model::EventKind>() {
            Ok(k) => k.entity_kind().to_string(),
            Err(e) => return fail(&e.to_string()),
        },
    };
    let mut value_dict = Map::new();
    for kv in values {
        let Some((k, v)) = kv.split_once('=') else {
            return fail(&format!("--value `{kv}`: expected KEY=VALUE"));
        };
        value_dict.insert(
            k.to_owned(),
            serde_json::from_str(v).unwrap_or_else(|_| Value::from(v)),
        );
    }
    let mut body = json!({"kind": kind, "entity": {"kind": entity_kind, "project": project, "ids": [entity]}, "value_dict": value_dict});
    if let Some(id) = id {
        body["id"] = json!(id);
    }
    let url = format!(
        "{}/api/v1/projects/{project}/events/{kind}",
        server.trim_end_matches('/')
    );
    match reqwest::Client::new().post(&url).json(&body).send().await {
        Ok(r) if r.status().is_success() => {
            println!("event accepted: {kind} on {entity} in {project}");
            ExitCode::SUCCESS
        }
        Ok(r) => {
            let status = r.status();
            let detail = r
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v.get("detail").cloned())
                .unwrap_or_default();
            fail(&format!("{status}: {detail}"))
        }
        Err(e) => fail(&format!("cannot reach {url}: {e}")),
    }
}
