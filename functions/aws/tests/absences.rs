//! Absence alerts on DynamoDB under concurrency: eight notifier containers (eight store
//! instances, each with its own cache, on one table) tick at the same moment while events
//! about the silent entities arrive through a ninth. Each absence fires once, and once every
//! entity has reported again none is left open.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use tocsin_aws::dynamo::{DynamoSettings, DynamoStore, create_table};
use tocsin_core::model::{AlertConfig, AlertState, Event, Timestamp};
use tocsin_core::store::{ActivationQuery, Store};
use tocsin_core::{AlertsSettings, Service};

const CONTAINERS: usize = 8;
const ROUNDS: i64 = 4;
const ENTITIES: usize = 12;
const T0: i64 = 1_800_000_000;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_secs(T0 + secs)
}

fn service(store: DynamoStore) -> Service {
    Service::new(
        Arc::new(store) as Arc<dyn Store>,
        AlertsSettings::default(),
        Arc::new(tocsin_core::dispatch::Nowhere),
    )
}

async fn report(svc: &Service, entity: &str, t: Timestamp) {
    let event: Event = serde_json::from_value(json!({
        "entity": {"kind": "job", "project": "p", "ids": [entity]}, "value_dict": {}
    }))
    .expect("event");
    let accepted = svc
        .accept_event("p", "failed", event, None, t)
        .expect("accepted");
    svc.ingest(&accepted).await.expect("ingested");
}

async fn activations(svc: &Service) -> Vec<tocsin_core::model::Activation> {
    svc.store()
        .activations(&ActivationQuery {
            project: Some("p".into()),
            limit: 1_000,
            ..Default::default()
        })
        .await
        .expect("activations")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn eight_ticks_at_once_fire_each_absence_once_and_events_close_them() {
    let client = aws_sdk_dynamodb::Client::new(&common::sdk_config());
    let table = common::fresh_table();
    create_table(&client, &table).await.expect("table");
    let store = || DynamoStore::new(client.clone(), DynamoSettings::new(table.clone()));
    let api = service(store());
    let ticks: Vec<Service> = (0..CONTAINERS).map(|_| service(store())).collect();
    let alert: AlertConfig = serde_json::from_value(json!({
        "project": "p", "name": "heartbeat", "severity": "high", "reset_policy": "auto",
        "criteria": {"absent": "10m", "must_report": ["never-0", "never-1"]},
        "trigger": {"events": ["failed"]},
        "entities": {"kind": "job", "project": "p", "ids": ["*"]},
        "notifications": []
    }))
    .expect("config");
    api.store_alert("p", "heartbeat", alert, false, at(0))
        .await
        .expect("stored");
    let entities: Vec<String> = (0..ENTITIES).map(|i| format!("job-{i}")).collect();
    let mut expected = 0;
    for round in 0..ROUNDS {
        let start = round * 2_000;
        for e in &entities {
            report(&api, e, at(start + 10)).await;
        }
        // Every entity is silent for its 10 minutes: the eight ticks and the first entity's
        // return all happen at once, after every deadline.
        let now = at(start + 700);
        let mut tasks = tokio::task::JoinSet::new();
        for svc in &ticks {
            let svc = svc.clone();
            tasks.spawn(async move { svc.tick(now).await.expect("tick").fired });
        }
        let racing = {
            let api = api.clone();
            let entity = entities[0].clone();
            tokio::spawn(async move { report(&api, &entity, now).await })
        };
        let mut fired: BTreeMap<String, usize> = BTreeMap::new();
        while let Some(result) = tasks.join_next().await {
            for f in result.expect("tick task") {
                *fired.entry(f.activation.entity_id.clone()).or_default() += 1;
            }
        }
        racing.await.expect("event task");
        let twice: Vec<_> = fired.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "round {round}: fired more than once: {twice:?}"
        );
        // The racing entity's absence fired or not, depending on who won; all others did.
        // The must-report entities fire in the first round only: they never report.
        let others = ENTITIES - 1 + if round == 0 { 2 } else { 0 };
        let racing_fired = fired.contains_key(&entities[0]);
        assert_eq!(
            fired.len(),
            others + usize::from(racing_fired),
            "round {round}: {fired:?}"
        );
        expected += fired.len();

        // Everyone but the never-reporting entities reports again: their absences close.
        for e in &entities {
            report(&api, e, at(start + 800)).await;
        }
        let open: Vec<String> = activations(&api)
            .await
            .into_iter()
            .filter(|a| a.reset_time.is_none())
            .map(|a| a.entity_id)
            .collect();
        let mut open_sorted = open.clone();
        open_sorted.sort();
        assert_eq!(
            open_sorted,
            ["never-0", "never-1"],
            "round {round}: only the entities that never reported stay open"
        );
    }
    let stored = activations(&api).await;
    assert_eq!(stored.len(), expected, "one activation per firing, no more");
    let alert = api
        .get_alert("p", "heartbeat", at(ROUNDS * 2_000))
        .await
        .expect("alert");
    assert_eq!(
        (alert.state, alert.count as usize),
        (AlertState::Active, expected),
        "active for the entities that never reported"
    );
}
