//! A fixed amount of engine work, for instruction counts under callgrind (repeatable on a noisy
//! machine, unlike time): `ALERTS` alerts on one kind, each on its own endpoint, and `PASSES`
//! passes of 10,000 events over them (every third event on an endpoint fires). Run it with two
//! pass counts; the difference divided by the extra passes is the cost of one pass.
//!
//!     cargo build --release -p tocsin-core --example engine_instructions
//!     valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!         target/release/examples/engine_instructions 1000 3

use serde_json::json;
use tocsin_core::AlertsSettings;
use tocsin_core::compiled::compile;
use tocsin_core::engine::{Changes, PutAlert};
use tocsin_core::model::{AcceptedEvent, AlertConfig, EntityKind, EventKind, Span, Timestamp};
use tocsin_core::store::MemoryState;

fn main() {
    let mut args = std::env::args().skip(1);
    let alerts: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let passes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let settings = AlertsSettings {
        max_allowed: usize::MAX,
        ..AlertsSettings::default()
    };
    let mut state = MemoryState::new(0);
    for i in 0..alerts {
        let config: AlertConfig = serde_json::from_value(json!({
            "project": "bench", "name": format!("drift-{i}"), "summary": "Model {{project}}/{{entity}} drifts",
            "severity": "high", "criteria": {"count": 3, "period": "10m"},
            "trigger": {"events": ["data-drift-detected"]},
            "entities": {"kind": "model-endpoint-result", "project": "bench", "ids": [format!("ep{i}.app.res")]},
        }))
        .expect("config");
        let name = config.name.clone();
        let rule = compile(config, "bench", &name, &settings).expect("valid");
        let put = PutAlert {
            rule,
            force_reset: false,
            max_allowed: usize::MAX,
            now: Timestamp::from_secs(0),
        };
        state
            .put_alert(put, &mut Changes::default())
            .expect("stored");
    }
    let mut fired = 0;
    for pass in 0..passes {
        for i in 0..10_000 {
            let ev = AcceptedEvent {
                project: "bench".into(),
                kind: EventKind::DataDriftDetected,
                entity_kind: EntityKind::ModelEndpointResult,
                entity_id: format!("ep{}.app.res", i % alerts),
                value_dict: Default::default(),
                at: Timestamp::from_secs(1 + (pass * 10_000 + i) as i64 / 100),
                idempotency_key: None,
                chain: Vec::new(),
                message: None,
            };
            let outcome = state.apply_event(&ev, Span::from_secs(3600), &mut Changes::default());
            fired += outcome.fired.len();
        }
    }
    println!("{fired} activations");
}
