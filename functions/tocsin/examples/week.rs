//! Writes the backtest benchmark's inputs: a rule file of ALERTS alerts and a week of EVENTS
//! recorded events, one JSON object a line (what `GET /projects/{p}/events` answers).
//!
//!     cargo run --release -p tocsin --example week -- 1000 10000000 /tmp/week
//!     target/release/tocsin backtest /tmp/week/week.tocsin --events /tmp/week/week.jsonl
//!
//! The mix is the peer benchmark's: one drift alert per model endpoint (3 results above 0.7
//! within 10 minutes), plus a few `*` alerts that every event reaches (one deep window of 99,
//! one per-entity window, one absence alert); the endpoints' events spread evenly over the
//! week, values varied so that filters pass about two times in three.

use std::io::Write;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let alerts: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let events: u64 = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let dir = std::path::PathBuf::from(args.get(3).map_or("/tmp/week", String::as_str));
    std::fs::create_dir_all(&dir)?;

    let mut rules = String::from("project bench\n\n");
    for i in 0..alerts {
        rules.push_str(&format!(
            "alert drift-{i} {{\n  on data_drift_detected\n  entity model-endpoint-result \"ep-{i}\"\n  severity high\n  where value.result_value > 0.7\n  when count >= 3 within 10m\n  cooldown 5m\n  notify webhook \"hook\" {{\n    url secret(\"HOOK\")\n    cooldown 15m\n  }}\n}}\n\n"
        ));
    }
    rules.push_str("alert any-drift-storm {\n  on data_drift_detected\n  entity model-endpoint-result \"*\"\n  severity medium\n  when count >= 99 within 1h\n}\n\n");
    rules.push_str("alert any-endpoint-burst {\n  on data_drift_detected\n  entity model-endpoint-result \"*\"\n  severity low\n  where value.result_value > 0.95\n  when count >= 5 within 30m per entity\n}\n\n");
    rules.push_str("alert endpoint-silent {\n  on data_drift_detected\n  entity model-endpoint-result \"ep-*\"\n  severity low\n  when absent for 2h\n}\n");
    std::fs::write(dir.join("week.tocsin"), rules)?;

    // 2026-11-23T00:00:00Z, a Monday, in microseconds; the week spread evenly.
    let start: i64 = 1_795_392_000_000_000;
    let step = (7 * 86_400_000_000) / events.max(1) as i64;
    let f = std::fs::File::create(dir.join("week.jsonl"))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, f);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for n in 0..events {
        // xorshift: cheap, repeatable values.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let ep = x % alerts.max(1) as u64;
        let value = 0.4 + (x >> 20) as f64 % 600.0 / 1000.0;
        let at = start + n as i64 * step;
        let secs = at.div_euclid(1_000_000);
        let micros = at.rem_euclid(1_000_000);
        let time = chrono::DateTime::from_timestamp(secs, (micros * 1000) as u32)
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%S%.6f+00:00");
        writeln!(
            out,
            "{{\"project\":\"bench\",\"kind\":\"data-drift-detected\",\"entity_kind\":\"model-endpoint-result\",\"entity_id\":\"ep-{ep}\",\"value_dict\":{{\"result_value\":{value:.3}}},\"at\":\"{time}\",\"idempotency_key\":null,\"chain\":[]}}"
        )?;
    }
    out.flush()?;
    eprintln!(
        "wrote {} ({alerts} alerts + 3) and {} ({events} events)",
        dir.join("week.tocsin").display(),
        dir.join("week.jsonl").display()
    );
    Ok(())
}
