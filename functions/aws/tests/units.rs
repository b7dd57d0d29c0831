//! The DynamoDB store's units under a concurrent writer: a batch whose commit loses one part
//! to another instance reads that part again and evaluates it again, and only it; the result
//! is what one store evaluating the same events in the same order would give.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;
use tocsin_aws::dynamo::{DynamoSettings, DynamoStore};
use tocsin_core::Service;
use tocsin_core::dispatch::Nowhere;
use tocsin_core::model::{AcceptedEvent, AlertConfig, Event, Timestamp};
use tocsin_core::settings::AlertsSettings;
use tocsin_core::store::{MemoryStore, Store};

const P: &str = "units";

fn service(store: Arc<dyn Store>) -> Service {
    Service::new(store, AlertsSettings::default(), Arc::new(Nowhere))
}

fn alert(name: &str, count: u32, per_entity: bool) -> AlertConfig {
    serde_json::from_value(json!({
        "project": P, "name": name, "severity": "high", "reset_policy": "auto",
        "criteria": {"count": count, "period": "1h", "per_entity": per_entity},
        "trigger": {"events": ["failed"]},
        "entities": {"kind": "job", "project": P, "ids": ["*"]}
    }))
    .expect("alert")
}

fn failed(svc: &Service, entity: &str, secs: i64) -> AcceptedEvent {
    let event: Event = serde_json::from_value(json!({
        "kind": "failed", "entity": {"kind": "job", "project": P, "ids": [entity]}
    }))
    .expect("event");
    svc.accept_event(
        P,
        "failed",
        event,
        None,
        Timestamp::from_secs(1_800_000_000 + secs),
    )
    .expect("accepted")
}

/// Per event of a batch: the (alert, entity, events counted) of what it fired, as a set (the
/// order within one event's firings may differ when a part was evaluated again).
async fn fire(svc: &Service, batch: &[(&str, i64)]) -> Vec<BTreeSet<(String, String, u64)>> {
    let events: Vec<AcceptedEvent> = batch.iter().map(|(e, t)| failed(svc, e, *t)).collect();
    svc.ingest_batch(&events)
        .await
        .into_iter()
        .map(|o| {
            o.expect("ingested")
                .fired
                .iter()
                .map(|f| {
                    let a = &f.activation;
                    (a.name.clone(), a.entity_id.clone(), a.number_of_events)
                })
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn a_conflict_mid_batch_evaluates_again_only_what_was_lost() {
    let first = common::store().await;
    let table = first.table().to_owned();
    let second = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&common::sdk_config()),
        DynamoSettings::new(table),
    );
    let (a, b) = (
        service(Arc::new(first.clone())),
        service(Arc::new(second.clone())),
    );
    let memory = service(Arc::new(MemoryStore::new()));
    for svc in [&a, &memory] {
        for config in [alert("shared", 3, false), alert("per", 2, true)] {
            let name = config.name.clone();
            svc.store_alert(P, &name, config, false, Timestamp::from_secs(1_800_000_000))
                .await
                .expect("stored");
        }
    }
    // The first instance caches the windows it writes; the second writes the shared window
    // behind its back, so the first's next write of it loses its condition.
    for svc in [&a, &memory] {
        fire(svc, &[("j1", 1)]).await;
    }
    fire(&b, &[("j2", 2)]).await;
    fire(&memory, &[("j2", 2)]).await;
    let batch = [("j1", 10), ("j3", 11), ("j1", 12), ("j3", 13)];
    let on_dynamo = fire(&a, &batch).await;
    let in_memory = fire(&memory, &batch).await;
    let fired = |name: &str, entity: &str, n: u64| (name.to_owned(), entity.to_owned(), n);
    assert_eq!(
        on_dynamo,
        [
            BTreeSet::from([fired("shared", "j1", 3), fired("per", "j1", 2)]),
            BTreeSet::new(),
            BTreeSet::new(),
            BTreeSet::from([fired("shared", "j3", 3), fired("per", "j3", 2)]),
        ],
        "the lost shared window was read again: the second instance's event counts"
    );
    assert_eq!(
        on_dynamo, in_memory,
        "the same as one store in the same order"
    );
    // Nothing was counted twice: the shared window starts afresh after the batch.
    let more = [("j4", 20), ("j5", 21), ("j6", 22)];
    let after = fire(&a, &more).await;
    assert_eq!(after, fire(&memory, &more).await);
    assert_eq!(
        after,
        [
            BTreeSet::new(),
            BTreeSet::new(),
            BTreeSet::from([fired("shared", "j6", 3)])
        ],
        "each event of the batch counted once in the shared window"
    );
}
