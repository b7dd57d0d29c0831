//! The `tocsin` command: `serve` runs the embedded deployment; `send` posts an event;
//! `check`, `fmt`, `test`, `apply` and `export` work with rule files.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::{Map, Value, json};
use tocsin::client::answer;
use tocsin::config::{Config, LogFormat};

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
        /// A directory of rule files (`*.tocsin`) and alert configs (`*.json`) to store at
        /// start (and again on SIGHUP or `POST /-/reload`); secrets come from environment
        /// variables.
        #[arg(long, alias = "rules")]
        alerts: Option<PathBuf>,
        /// `text` (coloured only on a terminal) or `json` (one object a line).
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Check rule files: exit 0 when clean, 1 on errors, 3 on warnings only, 2 when a file
    /// cannot be read.
    Check {
        /// Rule files, or directories searched for `*.tocsin`.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        format: tocsin::commands::Format,
        /// Colour the diagnostics (default: when stderr is a terminal).
        #[arg(long)]
        color: Option<bool>,
    },
    /// Rewrite rule files in the canonical layout.
    Fmt {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Change nothing; exit 1 if a file is not formatted.
        #[arg(long)]
        check: bool,
    },
    /// Run rule tests (`*.test.toml`) on a virtual clock.
    Test {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Show the plan for rule files against a server, then store it through the API.
    Apply {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        /// Show the plan only.
        #[arg(long)]
        dry_run: bool,
        /// Delete alerts, and expire silences, applied from files that the files no longer
        /// define.
        #[arg(long)]
        prune: bool,
    },
    /// Write a project's alerts as a rule file (to stdout).
    Export {
        #[arg(long)]
        project: String,
        /// Read the alerts from this server...
        #[arg(long, conflicts_with = "from")]
        server: Option<String>,
        /// ...or from a file of wire JSON (a config, a list, or `{"alerts": [...]}`).
        #[arg(long)]
        from: Option<PathBuf>,
    },
    /// Show what an alert's notifications would send for an event, without sending anything.
    Preview {
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        #[arg(long)]
        project: String,
        /// The alert's name.
        alert: String,
        /// The entity id of the imagined event (default: the alert's own).
        #[arg(long)]
        entity: Option<String>,
        /// Event data as key=value; repeatable.
        #[arg(long = "value", value_name = "KEY=VALUE")]
        values: Vec<String>,
    },
    /// Why an event counts for an alert or does not, clause by clause, and what one more
    /// would do; nothing changes. Give an event (`--entity`, `--value`, `--kind`), or `--last
    /// N` to explain the entity's last recorded events.
    Explain {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        #[arg(long)]
        project: String,
        /// The alert's name.
        alert: String,
        /// The entity the event is about.
        #[arg(long)]
        entity: String,
        /// The event kind (default: the alert's first).
        #[arg(long, conflicts_with = "last")]
        kind: Option<String>,
        /// Event data as key=value (values that parse as JSON are sent as JSON); repeatable.
        #[arg(long = "value", value_name = "KEY=VALUE", conflicts_with = "last")]
        values: Vec<String>,
        /// Explain the entity's last N recorded events instead (on a state rebuilt from the
        /// recorded events since --since).
        #[arg(long)]
        last: Option<usize>,
        /// With --last: how far back the state is rebuilt from (default 24h).
        #[arg(long, requires = "last")]
        since: Option<String>,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// What rule files would have done over a period of recorded events, beside what the
    /// stored alerts did: firings per day and entity, notifications after cooldowns and
    /// silences.
    Backtest {
        /// Rule files, or directories searched for `*.tocsin`.
        #[arg(required = true)]
        rules: Vec<PathBuf>,
        /// Replay the events this server recorded (and compare with its activations)...
        #[arg(long, conflicts_with = "events")]
        server: Option<String>,
        /// ...or the events of this file, one JSON object a line (what the server exports).
        #[arg(long)]
        events: Option<PathBuf>,
        /// The project (default: the rule files').
        #[arg(long)]
        project: Option<String>,
        /// The start: an ISO-8601 time or a span back from now (default 7d with --server; the
        /// first event with --events).
        #[arg(long)]
        since: Option<String>,
        /// The end (default now with --server; the last event with --events).
        #[arg(long)]
        until: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Manage the tokens of `tocsin serve`: through a running server (`--server`, with an admin
    /// token in TOCSIN_TOKEN), or in a stopped server's `--data-dir` (the first admin token).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Silence notifications on a running server: add, list, expire.
    Silence {
        #[command(subcommand)]
        command: SilenceCommand,
    },
    /// Notifications on a running server: `test` sends a clearly marked test message.
    Notify {
        #[command(subcommand)]
        command: NotifyCommand,
    },
    /// A consistent copy of a store, to stdout: from a running server (`--server`, with an
    /// admin token of every project in TOCSIN_TOKEN; ingest goes on) or a stopped server's
    /// `--data-dir`.
    Backup {
        #[arg(
            long,
            conflicts_with = "data_dir",
            required_unless_present = "data_dir"
        )]
        server: Option<String>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// A new data directory made from a backup (a file, or stdin); start `tocsin serve
    /// --data-dir` on it.
    Restore {
        #[arg(long)]
        data_dir: PathBuf,
        /// The backup file (default: stdin).
        file: Option<PathBuf>,
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

#[derive(Subcommand)]
enum NotifyCommand {
    /// Send a clearly marked test message through an alert's notifications (or the one
    /// named), for real and once each, and show what each receiver answered. Nothing is
    /// recorded and no cooldown starts. Exits 1 unless every message was taken.
    Test {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        #[arg(long)]
        project: String,
        /// The alert's name.
        alert: String,
        /// Only this notification.
        notification: Option<String>,
        /// Print the server's answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SilenceCommand {
    /// Hold back the notifications of matching activations for a while, or on a weekly
    /// schedule. Alerts still count and fire; their notifications are recorded as suppressed.
    Add {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        #[command(flatten)]
        silence: Box<tocsin::silences::AddSilence>,
    },
    /// List a project's silences.
    List {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        #[arg(long)]
        project: String,
        /// current (active and pending), active, pending, expired or all.
        #[arg(long, default_value = "current")]
        state: String,
    },
    /// End a silence now (it stays listed as expired for five days).
    Expire {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        #[arg(long)]
        project: String,
        id: String,
    },
}

async fn silence(command: SilenceCommand) -> ExitCode {
    let shown = |r: Result<Value, String>, verb: &str| match r {
        Ok(s) => {
            let turn = s["until"]
                .as_str()
                .map(|u| format!(" until {u}"))
                .or_else(|| s["next_start"].as_str().map(|n| format!(", starts {n}")))
                .unwrap_or_default();
            println!(
                "silence {} {verb}: {}{turn}",
                s["id"].as_str().unwrap_or(""),
                s["state"].as_str().unwrap_or("")
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    };
    match command {
        SilenceCommand::Add { server, silence } => {
            shown(tocsin::silences::add(&server, &silence).await, "stored")
        }
        SilenceCommand::List {
            server,
            project,
            state,
        } => match tocsin::silences::list(&server, &project, &state).await {
            Ok(list) => {
                print!("{}", tocsin::silences::table(&list));
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        SilenceCommand::Expire {
            server,
            project,
            id,
        } => shown(
            tocsin::silences::expire(&server, &project, &id).await,
            "expired",
        ),
    }
}

/// Where `tocsin token` works: one of `--server` and `--data-dir`.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct TokenTarget {
    /// A running server's base URL (needs an admin token in TOCSIN_TOKEN).
    #[arg(long)]
    server: Option<String>,
    /// The data directory of a server that is not running.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl TokenTarget {
    fn target(self) -> tocsin::tokens::Target {
        match (self.server, self.data_dir) {
            (Some(s), _) => tocsin::tokens::Target::Server(s),
            (None, Some(d)) => tocsin::tokens::Target::DataDir(d),
            // clap's group requires one of the two.
            (None, None) => tocsin::tokens::Target::DataDir(PathBuf::from("tocsin-data")),
        }
    }
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token and print it (once: only its hash is kept).
    Create {
        /// A project, a glob of projects (`fraud-*`), or `*`.
        #[arg(long)]
        project: String,
        /// viewer, producer, responder, editor or admin.
        #[arg(long)]
        role: String,
        /// What the audit list records as who did it (default: `token-<id>`).
        #[arg(long)]
        name: Option<String>,
        /// How long it is valid, e.g. 90d (default: until revoked).
        #[arg(long)]
        expires: Option<String>,
        #[command(flatten)]
        target: TokenTarget,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        target: TokenTarget,
    },
    /// Revoke a token at once.
    Revoke {
        /// The token's id (from `tocsin token list`).
        id: String,
        #[command(flatten)]
        target: TokenTarget,
    },
}

async fn token(command: TokenCommand) -> ExitCode {
    match command {
        TokenCommand::Create {
            project,
            role,
            name,
            expires,
            target,
        } => {
            let role = match role.parse() {
                Ok(r) => r,
                Err(e) => return fail(&format!("--role: {e}")),
            };
            let request = tocsin_core::auth::TokenRequest {
                name,
                role,
                projects: project,
                expires_in: expires,
            };
            match tocsin::tokens::create(&target.target(), request).await {
                Ok(t) => {
                    println!("{}", t["token"].as_str().unwrap_or_default());
                    eprintln!(
                        "token {} `{}`: {} on `{}`, expires {}. It is shown this once: keep it now.",
                        t["id"].as_str().unwrap_or_default(),
                        t["name"].as_str().unwrap_or_default(),
                        t["role"].as_str().unwrap_or_default(),
                        t["projects"].as_str().unwrap_or_default(),
                        t["expires"].as_str().unwrap_or("never"),
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        TokenCommand::List { target } => match tocsin::tokens::list(&target.target()).await {
            Ok(tokens) => {
                println!(
                    "{:<12}  {:<24}  {:<9}  {:<20}  EXPIRES",
                    "ID", "NAME", "ROLE", "PROJECTS"
                );
                for t in tokens {
                    let field = |k: &str| t[k].as_str().unwrap_or_default().to_owned();
                    println!(
                        "{:<12}  {:<24}  {:<9}  {:<20}  {}",
                        field("id"),
                        field("name"),
                        field("role"),
                        field("projects"),
                        t["expires"].as_str().unwrap_or("never")
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        TokenCommand::Revoke { id, target } => {
            match tocsin::tokens::revoke(&target.target(), &id).await {
                Ok(()) => {
                    println!("token {id} revoked");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
    }
}

/// Log lines to stderr: `json` (one object a line) for a log shipper, or text, coloured only
/// when stderr is a terminal (a file or a pipe gets no escape codes).
fn init_logs(format: LogFormat) {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => logs.json().flatten_event(true).init(),
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// jemalloc rather than glibc's malloc: the engine and the HTTP layer allocate many small,
/// short-lived objects on several threads, where glibc's arenas spent about a fifth of the time
/// (batched ingest gains about a quarter; BENCHMARKS.md, "The allocator"). Its options
/// (`.cargo/config.toml`) return freed memory within a second.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let command = Cli::parse().command;
    // `serve` sets its log format from its config, once that is read.
    if !matches!(command, Command::Serve { .. }) {
        init_logs(LogFormat::Text);
    }
    match command {
        Command::Check {
            paths,
            format,
            color,
        } => {
            use std::io::IsTerminal;
            let color = color.unwrap_or_else(|| std::io::stderr().is_terminal());
            tocsin::commands::check(&paths, format, color)
        }
        Command::Fmt { paths, check } => tocsin::commands::fmt(&paths, check),
        Command::Test { paths } => tocsin::commands::test(&paths),
        Command::Apply {
            paths,
            server,
            dry_run,
            prune,
        } => tocsin::commands::apply(&paths, &server, dry_run, prune).await,
        Command::Export {
            project,
            server,
            from,
        } => tocsin::commands::export(server.as_deref(), from.as_deref(), &project).await,
        Command::Serve {
            config,
            listen,
            data_dir,
            alerts,
            log_format,
        } => {
            let mut cfg = match Config::load(config.as_deref(), std::env::vars()) {
                Ok(c) => c,
                Err(e) => return fail(&e.to_string()),
            };
            if let Some(f) = log_format {
                cfg.server.log_format = f;
            }
            init_logs(cfg.server.log_format);
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
        Command::Explain {
            server,
            project,
            alert,
            entity,
            kind,
            values,
            last,
            since,
            json,
        } => {
            let body = match last {
                Some(last) => json!({"entity": entity, "last": last, "since": since}),
                None => match value_dict(&values) {
                    Ok(d) => json!({"entity": entity, "kind": kind, "value_dict": d}),
                    Err(e) => return fail(&e),
                },
            };
            explain(&server, &project, &alert, &body, json).await
        }
        Command::Backtest {
            rules,
            server,
            events,
            project,
            since,
            until,
            json,
        } => {
            let options = tocsin::backtest::Options {
                rules,
                server,
                events,
                project,
                since,
                until,
            };
            match tocsin::backtest::run(&options).await {
                Ok(report) if json => {
                    tocsin::say!("{}", tocsin::backtest::to_json(&report));
                    ExitCode::SUCCESS
                }
                Ok(report) => {
                    tocsin::say_raw!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Token { command } => token(command).await,
        Command::Backup { server, data_dir } => {
            let done = match (server, data_dir) {
                (Some(server), _) => {
                    tocsin::backups::from_server(&server, std::io::stdout().lock()).await
                }
                (None, Some(dir)) => tocsin::backups::from_data_dir(&dir, std::io::stdout())
                    .await
                    .map(|counts| eprintln!("backup: {counts:?}")),
                (None, None) => Err("--server or --data-dir".into()),
            };
            done.map_or_else(|e| fail(&e), |()| ExitCode::SUCCESS)
        }
        Command::Restore { data_dir, file } => {
            let restored = match file {
                Some(f) => match std::fs::File::open(&f) {
                    Ok(f) => tocsin::backups::restore(&data_dir, std::io::BufReader::new(f)),
                    Err(e) => Err(format!("{}: {e}", f.display())),
                },
                None => tocsin::backups::restore(&data_dir, std::io::stdin().lock()),
            };
            match restored {
                Ok(counts) => {
                    eprintln!(
                        "restored into {}: {} activations, {} audit entries, {} tokens",
                        data_dir.display(),
                        counts.activations,
                        counts.audit,
                        counts.tokens
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Silence { command } => silence(command).await,
        Command::Notify {
            command:
                NotifyCommand::Test {
                    server,
                    project,
                    alert,
                    notification,
                    json,
                },
        } => {
            match tocsin::notify::test(&server, &project, &alert, notification.as_deref(), json)
                .await
            {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => fail(&e),
            }
        }
        Command::Preview {
            server,
            project,
            alert,
            entity,
            values,
        } => preview(&server, &project, &alert, entity, &values).await,
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

/// `KEY=VALUE` pairs as a `value_dict`; values that parse as JSON are sent as JSON.
fn value_dict(values: &[String]) -> Result<Map<String, Value>, String> {
    let mut dict = Map::new();
    for kv in values {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--value `{kv}`: expected KEY=VALUE"))?;
        dict.insert(
            k.to_owned(),
            serde_json::from_str(v).unwrap_or_else(|_| Value::from(v)),
        );
    }
    Ok(dict)
}

async fn preview(
    server: &str,
    project: &str,
    alert: &str,
    entity: Option<String>,
    values: &[String],
) -> ExitCode {
    let value_dict = match value_dict(values) {
        Ok(d) => d,
        Err(e) => return fail(&e),
    };
    let url = format!(
        "{}/api/v1/projects/{project}/alerts/{alert}/preview",
        server.trim_end_matches('/')
    );
    let mut request = tocsin::client::http().post(&url);
    if entity.is_some() || !value_dict.is_empty() {
        // The entity's kind and project do not matter to a preview; the alert's are used.
        let ids: Vec<String> = entity.into_iter().collect();
        request = request.json(&json!({"entity": {"kind": "job", "project": project, "ids": ids}, "value_dict": value_dict}));
    }
    match answer(&url, request.send().await).await {
        Ok(body) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&body).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// `tocsin explain`: the server's explanations, as text (or JSON).
async fn explain(
    server: &str,
    project: &str,
    alert: &str,
    body: &Value,
    as_json: bool,
) -> ExitCode {
    let url = format!(
        "{}/api/v1/projects/{project}/alerts/{alert}/explain",
        server.trim_end_matches('/')
    );
    let body: Value = match body {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    };
    match answer(
        &url,
        tocsin::client::http().post(&url).json(&body).send().await,
    )
    .await
    {
        Ok(answer) if as_json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(answer) => {
            let all = answer["explanations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if all.is_empty() {
                println!("no recorded event of the alert's kinds about that entity in the period");
            }
            for (i, e) in all.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                println!("{}", e["text"].as_str().unwrap_or_default());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
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
            Ok(k) => match k.entity_kind() {
                Some(e) => e.to_string(),
                None => {
                    return fail(&format!(
                        "`{k}` is a custom event kind: say what it is about with --entity-kind"
                    ));
                }
            },
            Err(e) => return fail(&e.to_string()),
        },
    };
    let value_dict = match value_dict(values) {
        Ok(d) => d,
        Err(e) => return fail(&e),
    };
    let mut body = json!({"kind": kind, "entity": {"kind": entity_kind, "project": project, "ids": [entity]}, "value_dict": value_dict});
    if let Some(id) = id {
        body["id"] = json!(id);
    }
    let url = format!(
        "{}/api/v1/projects/{project}/events/{kind}",
        server.trim_end_matches('/')
    );
    match answer(
        &url,
        tocsin::client::http().post(&url).json(&body).send().await,
    )
    .await
    {
        Ok(_) => {
            println!("event accepted: {kind} on {entity} in {project}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}
