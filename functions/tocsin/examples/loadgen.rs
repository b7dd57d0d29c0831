//! HTTP ingest load generator for `BENCHMARKS.md`. Stores `--alerts` alerts (each on its own
//! model endpoint, 3 events within 10 minutes), then posts events over `--connections`
//! keep-alive connections for `--seconds`, spread over the alerts' entities, and prints the
//! throughput and latency percentiles. Bounded in count and time; loopback only.
//!
//! `cargo run --release --example loadgen -- --server http://127.0.0.1:8080 --alerts 1000`

use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;

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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let api = format!("{}/api/v1", args.server.trim_end_matches('/'));
    let setup = reqwest::Client::new();
    let started = Instant::now();
    for i in 0..args.alerts {
        let body = json!({
            "project": "load", "name": format!("drift-{i}"), "summary": "Model {{project}}/{{entity}} drifts",
            "severity": "high", "criteria": {"count": 3, "period": "10m"},
            "trigger": {"events": ["data-drift-detected"]},
            "entities": {"kind": "model-endpoint-result", "project": "load", "ids": [format!("ep{i}")]},
            "notifications": [],
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
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let url = format!("{api}/projects/load/events/data-drift-detected");
        let health = args.healthz.then(|| format!("{api}/healthz"));
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().expect("client");
            let mut latencies: Vec<u32> = Vec::with_capacity(per_conn.min(1 << 20));
            let mut errors = 0usize;
            let mut i = c;
            while Instant::now() < deadline && latencies.len() < per_conn {
                let body = format!(
                    r#"{{"entity":{{"kind":"model-endpoint-result","project":"load","ids":["ep{}"]}},"value_dict":{{"result_value":0.9}}}}"#,
                    (i * 7919) % alerts
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
    Ok(())
}
