//! Explain's verdict agrees with what the engine then does: for random alerts (counting,
//! sustained, absence; per entity or shared; manual or auto, with and without cooldowns and
//! filters) and random runs of events, each event is explained first and then ingested, on the
//! clock's ticks as `tocsin serve` has them. 256 alerts of 40 events: over 10,000 events.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::json;
use tocsin_core::dispatch::Nowhere;
use tocsin_core::engine::explain::Outcome;
use tocsin_core::model::{AlertConfig, Event, Span, Timestamp};
use tocsin_core::store::{MemoryStore, Store};
use tocsin_core::{AlertsSettings, Service};

const T0: i64 = 1_800_000_000;

/// An alert's shape, as the strategy draws it.
#[derive(Debug, Clone)]
struct Shape {
    criterion: u8,
    count: u32,
    period: Option<u32>,
    per_entity: bool,
    manual: bool,
    cooldown: Option<u32>,
    threshold: Option<u32>,
    entity: &'static str,
}

/// An event, as the strategy draws it: after `gap` seconds, about `entity`, with `x`; of the
/// alert's kind, or of another.
#[derive(Debug, Clone)]
struct Input {
    gap: u32,
    entity: &'static str,
    x: u32,
    other_kind: bool,
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        0u8..6,
        1u32..4,
        proptest::option::of(30u32..600),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(20u32..300),
        proptest::option::of(10u32..90),
        prop::sample::select(vec!["*", "ep1", "ep*"]),
    )
        .prop_map(
            |(criterion, count, period, per_entity, manual, cooldown, threshold, entity)| Shape {
                criterion,
                count,
                period,
                per_entity,
                manual,
                cooldown,
                threshold,
                entity,
            },
        )
}

fn input() -> impl Strategy<Value = Input> {
    (
        0u32..90,
        prop::sample::select(vec!["ep1", "ep2", "other"]),
        0u32..100,
        prop::bool::weighted(0.1),
    )
        .prop_map(|(gap, entity, x, other_kind)| Input {
            gap,
            entity,
            x,
            other_kind,
        })
}

/// The config of a shape: counting (most), sustained (criterion 4) or absence (criterion 5).
fn config(s: &Shape) -> AlertConfig {
    let mut c = json!({
        "project": "p", "name": "a", "severity": "high",
        "reset_policy": if s.manual { "manual" } else { "auto" },
        "trigger": {"events": ["data-drift-detected"]},
        "entities": {"kind": "model-endpoint-result", "project": "p", "ids": [s.entity]},
        "notifications": [
            {"notification": {"kind": "webhook", "name": "hook", "secret_params": {"url": "http://127.0.0.1:9/"}},
             "cooldown_period": "1m"}
        ]
    });
    let per_entity = s.per_entity && s.entity != "ep1";
    c["criteria"] = match s.criterion {
        4 => json!({"sustain": format!("{}s", s.period.unwrap_or(60)), "per_entity": per_entity}),
        5 => json!({"absent": format!("{}s", s.period.unwrap_or(60))}),
        _ => json!({"count": s.count, "period": s.period.map(|p| format!("{p}s")),
            "per_entity": per_entity}),
    };
    if s.criterion == 5 {
        c["reset_policy"] = json!("auto");
    } else if let (Some(cd), false) = (s.cooldown, s.manual) {
        c["cooldown_period"] = json!(format!("{cd}s"));
    }
    if let Some(t) = s.threshold {
        c["filter"] = json!({"field": "x", "op": ">", "value": t});
    }
    serde_json::from_value(c).expect("config")
}

fn event(svc: &Service, i: &Input, at: Timestamp) -> tocsin_core::model::AcceptedEvent {
    let kind = if i.other_kind {
        "data-drift-suspected"
    } else {
        "data-drift-detected"
    };
    let e: Event = serde_json::from_value(json!({
        "entity": {"kind": "model-endpoint-result", "project": "p", "ids": [i.entity]},
        "value_dict": {"x": i.x}
    }))
    .expect("event");
    svc.accept_event("p", kind, e, None, at).expect("accepted")
}

async fn run(shape: Shape, inputs: Vec<Input>) -> Result<(), TestCaseError> {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let svc = Service::new(store, AlertsSettings::default(), Arc::new(Nowhere));
    let mut now = Timestamp::from_secs(T0);
    svc.store_alert("p", "a", config(&shape), false, now)
        .await
        .expect("stored");
    for (n, i) in inputs.iter().enumerate() {
        now = now.plus(Span::from_secs(i64::from(i.gap)));
        svc.tick(now).await.expect("tick");
        let ev = event(&svc, i, now);
        let explained = svc.explain("p", "a", &ev).await.expect("explained");
        let outcome = svc.ingest(&ev).await.expect("ingested");
        let fired = outcome.fired.first();
        // The store's outcome does not tell an unmatched event from an ignored one: both
        // leave the count alone.
        let said = match explained.verdict.outcome {
            Outcome::Unmatched | Outcome::Ignored => "not counted",
            Outcome::Counted => "counted",
            Outcome::Fires => "fires",
        };
        let did = match (fired, outcome.counted) {
            (Some(_), _) => "fires",
            (None, 0) => "not counted",
            (None, _) => "counted",
        };
        prop_assert_eq!(
            said,
            did,
            "event {} ({:?}) of {:?}:\n{}",
            n,
            i,
            shape,
            explained
        );
        if let Some(f) = fired {
            prop_assert_eq!(
                &explained.verdict.notifications,
                &f.activation.deliveries,
                "the notifications it said would go out"
            );
        }
        for id in &explained.verdict.closes {
            let closed = svc.activation("p", *id).await.expect("activation");
            prop_assert_eq!(closed.reset_time.is_some(), true, "{} closes", id);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn explain_says_what_the_engine_then_does(
        shape in shape(),
        inputs in proptest::collection::vec(input(), 40),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(run(shape, inputs))?;
    }
}
