//! In-process engine throughput: events through matching, windows and the state machine, with
//! 1, 1,000 and 10,000 alerts on one event kind (each alert on its own entity, plus none on `*`),
//! on one core. Run: `cargo bench -p tocsin-core --bench engine`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use tocsin_core::AlertsSettings;
use tocsin_core::compiled::compile;
use tocsin_core::engine::{Changes, PutAlert};
use tocsin_core::model::{AcceptedEvent, AlertConfig, EventKind, Span, Timestamp};
use tocsin_core::store::{EventStore, MemoryState, MemoryStore};

const EVENTS: usize = 10_000;

fn config(i: usize) -> AlertConfig {
    serde_json::from_value(json!({
        "project": "bench", "name": format!("drift-{i}"), "summary": "Model {{project}}/{{entity}} drifts",
        "severity": "high", "criteria": {"count": 3, "period": "10m"},
        "trigger": {"events": ["data-drift-detected"]},
        "entities": {"kind": "model-endpoint-result", "project": "bench", "ids": [format!("ep{i}.app.res")]},
    }))
    .expect("bench config")
}

/// The puts that store `alerts` alerts.
fn puts(alerts: usize) -> impl Iterator<Item = PutAlert> {
    let settings = AlertsSettings {
        max_allowed: usize::MAX,
        ..AlertsSettings::default()
    };
    (0..alerts).map(move |i| {
        let c = config(i);
        let name = c.name.clone();
        let rule = compile(c, "bench", &name, &settings).expect("valid");
        PutAlert {
            rule,
            force_reset: false,
            max_allowed: usize::MAX,
            now: Timestamp::from_secs(0),
        }
    })
}

fn state(alerts: usize) -> MemoryState {
    let mut s = MemoryState::new(0);
    for put in puts(alerts) {
        s.put_alert(put, &mut Changes::default()).expect("stored");
    }
    s
}

/// Events spread over the alerts' entities; every third event on an entity fires its alert.
fn events(alerts: usize) -> Vec<AcceptedEvent> {
    (0..EVENTS)
        .map(|i| AcceptedEvent {
            project: "bench".into(),
            kind: EventKind::DataDriftDetected,
            entity_kind: tocsin_core::model::EntityKind::ModelEndpointResult,
            entity_id: format!("ep{}.app.res", i % alerts),
            value_dict: Default::default(),
            at: Timestamp::from_secs(1 + i as i64 / 100),
            idempotency_key: None,
            chain: Vec::new(),
            message: None,
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let ttl = Span::from_secs(3600);
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(EVENTS as u64));
    for alerts in [1usize, 1_000, 10_000] {
        let evs = events(alerts);
        group.bench_with_input(
            BenchmarkId::new("memory_state", alerts),
            &alerts,
            |b, &n| {
                let mut s = state(n);
                b.iter(|| {
                    for ev in &evs {
                        let mut changes = Changes::default();
                        black_box(s.apply_event(ev, ttl, &mut changes));
                    }
                })
            },
        );
    }
    // The same through the store trait (async, behind the lock), as the server calls it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for alerts in [1usize, 10_000] {
        let evs = events(alerts);
        let store = Arc::new(MemoryStore::new());
        rt.block_on(async {
            for put in puts(alerts) {
                tocsin_core::store::AlertStore::put_alert(&*store, put)
                    .await
                    .expect("stored");
            }
        });
        group.bench_with_input(BenchmarkId::new("memory_store", alerts), &alerts, |b, _| {
            b.iter(|| {
                rt.block_on(async {
                    for ev in &evs {
                        black_box(store.apply_event(ev, ttl).await.expect("applied"));
                    }
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
