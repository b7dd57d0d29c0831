//! HTTP ingest load generator for `BENCHMARKS.md`. Stores `--alerts` alerts (each on its own
//! model endpoint, 3 events within 10 minutes), then posts events over `--connections`
//! keep-alive connections for `--seconds`, spread over the alerts' entities, and prints the
//! throughput and latency percentiles. Bounded in count and time; loopback only.
//!
//! With `--notify`, every alert also has a webhook notification to a receiver inside this
//! program (answering after `--receiver-delay-ms`), which measures the time from an event's
//! POST to the arrival of the webhook it caused.
//!
//! `cargo run --release --example loadgen -- --server http://127.0.0.1:8080 --alerts 1000`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::routing::post;
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    #[arg(long, default_value_t = 1000)]
    alerts: usize,
    #[arg(long, default_value_t = 16)]
    connections: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Only store the alerts (for memory measurements).
    #[arg(long)]
    setup_only: bool,
    /// Events within 10 minutes that fire an alert.
    #[arg(long, default_value_t = 3)]
    count: u32,
    /// Give each alert a webhook notification to the built-in receiver.
    #[arg(long)]
    notify: bool,
    /// The receiver answers each webhook after this long.
    #[arg(long, default_value_t = 0)]
    receiver_delay_ms: u64,
    /// Events per second at most, over all connections (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Measure the HTTP floor: GET /healthz instead of posting events.
    #[arg(long)]
    healthz: bool,
    /// Every request at most this many times overall (a bound on the run).
    #[arg(long, default_value_t = 5_000_000)]
    max_requests: usize,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Webhook arrivals: event-to-webhook latencies in microseconds.
type Arrivals = Arc<Mutex<Vec<u32>>>;

async fn receive(
    State((arrivals, delay)): State<(Arrivals, u64)>,
    body: axum::body::Bytes,
) -> &'static str {
    let sent = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|b| b["value"]["sent_us"].as_u64());
    if let (Some(sent), Ok(mut a)) = (sent, arrivals.lock()) {
        a.push(now_us().saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
    }
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    "ok"
}

/// Starts the webhook receiver; returns its URL.
async fn start_receiver(arrivals: Arrivals, delay: u64) -> Result<String, std::io::Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state((arrivals, delay));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let api = format!("{}/api/v1", args.server.trim_end_matches('/'));
    let arrivals: Arrivals = Arc::default();
    let notifications = if args.notify {
        let url = start_receiver(arrivals.clone(), args.receiver_delay_ms).await?;
        json!([{"notification": {"kind": "webhook", "name": "bench", "params": {"url": url}}}])
    } else {
        json!([])
    };
    // With auth on, the token comes from TOCSIN_TOKEN, as for the `tocsin` command.
    let mut auth = reqwest::header::HeaderMap::new();
    if let Ok(token) = std::env::var(tocsin::client::TOKEN_VAR)
        && !token.is_empty()
    {
        auth.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse()?,
        );
    }
    let setup = reqwest::Client::builder()
        .default_headers(auth.clone())
        .build()?;
    let started = Instant::now();
    for i in 0..args.alerts {
        let body = json!({
            "project": "load", "name": format!("drift-{i}"), "summary": "Model {{project}}/{{entity}} drifts",
            "severity": "high", "criteria": {"count": args.count, "period": "10m"},
            "trigger": {"events": ["data-drift-detected"]},
            "entities": {"kind": "model-endpoint-result", "project": "load", "ids": [format!("ep{i}")]},
            "notifications": notifications,
        });
        let r = setup
            .put(format!("{api}/projects/load/alerts/drift-{i}"))
            .json(&body)
            .send()
            .await?;
        if !r.status().is_success() {
            return Err(format!("storing alert {i}: {}", r.text().await?).into());
        }
    }
    eprintln!(
        "stored {} alerts in {:.1}s",
        args.alerts,
        started.elapsed().as_secs_f64()
    );
    if args.setup_only {
        return Ok(());
    }

    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let per_conn = args.max_requests / args.connections.max(1);
    let alerts = args.alerts.max(1);
    // Each connection sends at most one event per `pace`.
    let pace = (args.rate > 0)
        .then(|| Duration::from_secs_f64(args.connections as f64 / args.rate as f64));
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let url = format!("{api}/projects/load/events/data-drift-detected");
        let health = args.healthz.then(|| format!("{api}/healthz"));
        let auth = auth.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .default_headers(auth)
                .build()
                .expect("client");
            let mut latencies: Vec<u32> = Vec::with_capacity(per_conn.min(1 << 20));
            let mut errors = 0usize;
            let mut i = c;
            let mut next = Instant::now();
            while Instant::now() < deadline && latencies.len() < per_conn {
                if let Some(pace) = pace {
                    tokio::time::sleep_until(next.into()).await;
                    next += pace;
                }
                let body = format!(
                    r#"{{"entity":{{"kind":"model-endpoint-result","project":"load","ids":["ep{}"]}},"value_dict":{{"result_value":0.9,"sent_us":{}}}}}"#,
                    (i * 7919) % alerts,
                    now_us()
                );
                let t = Instant::now();
                let request = match &health {
                    Some(h) => client.get(h),
                    None => client.post(&url).body(body),
                };
                match request.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        latencies.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    }
                    _ => errors += 1,
                }
                i += args.connections;
            }
            (latencies, errors)
        }));
    }
    let run_start = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    let elapsed = run_start.elapsed().as_secs_f64();
    all.sort_unstable();
    println!(
        "alerts={} connections={} requests={} errors={} seconds={:.1} throughput={:.0}/s p50={:.2}ms p99={:.2}ms p99.9={:.2}ms max={:.2}ms",
        args.alerts,
        args.connections,
        all.len(),
        errors,
        elapsed,
        all.len() as f64 / elapsed,
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        percentile(&all, 0.999),
        percentile(&all, 1.0),
    );
    if args.notify {
        // Deliveries still in flight get a moment to land.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut hooks = arrivals.lock().map(|a| a.clone()).unwrap_or_default();
        hooks.sort_unstable();
        println!(
            "webhooks={} event_to_webhook p50={:.2}ms p99={:.2}ms max={:.2}ms (receiver delay {} ms)",
            hooks.len(),
            percentile(&hooks, 0.50),
            percentile(&hooks, 0.99),
            percentile(&hooks, 1.0),
            args.receiver_delay_ms
        );
    }
    Ok(())
}
