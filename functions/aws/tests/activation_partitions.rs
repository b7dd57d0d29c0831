//! Activations spread over partitions by id: listings merge them newest first, and an
//! activation written before they were spread (in the one `ACT` partition) is still found,
//! listed, closed and pruned.

mod common;

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use tocsin_aws::handlers::ApiHandler;

use common::{Deployment, api_gateway_event, clients, read};

async fn call(api: &ApiHandler, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    read(
        api.handle(api_gateway_event(method, path, body.as_ref()))
            .await
            .expect("infallible"),
    )
    .await
}

fn alert(name: &str, reset: &str) -> Value {
    json!({
        "project": "spread", "name": name, "severity": "high", "reset_policy": reset,
        "criteria": {"count": 1, "period": "1h"},
        "trigger": {"events": ["failed"]},
        "entities": {"kind": "job", "project": "spread", "ids": [name]},
        "notifications": []
    })
}

fn ids(page: &Value) -> Vec<u64> {
    page["activations"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|a| a["id"].as_u64().unwrap_or(0))
        .collect()
}

#[tokio::test]
async fn listings_merge_the_partitions_and_still_read_the_legacy_one() {
    let d = Deployment::new().await;
    let api = ApiHandler::new(&d.env(false), &clients(None)).expect("the API handler");
    let (status, _) = call(
        &api,
        "PUT",
        "/api/v1/projects/spread/alerts/every",
        Some(alert("every", "auto")),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &api,
        "PUT",
        "/api/v1/projects/spread/alerts/held",
        Some(alert("held", "manual")),
    )
    .await;
    assert_eq!(status, 200);
    let event = |entity: &str| json!({"kind": "failed", "entity": {"kind": "job", "project": "spread", "ids": [entity]}});
    let (status, fired) = call(
        &api,
        "POST",
        "/api/v1/projects/spread/events/failed",
        Some(event("held")),
    )
    .await;
    assert_eq!(status, 200, "{fired}");
    for _ in 0..20 {
        let (status, _) = call(
            &api,
            "POST",
            "/api/v1/projects/spread/events/failed",
            Some(event("every")),
        )
        .await;
        assert_eq!(status, 200);
    }

    // Move the manual alert's activation (the oldest) to the legacy partition, as if written
    // by the version before.
    let dynamo = aws_sdk_dynamodb::Client::new(&common::sdk_config());
    let (_, page) = call(
        &api,
        "GET",
        "/api/v1/projects/spread/alerts/held/activations",
        None,
    )
    .await;
    let held = ids(&page);
    assert_eq!(held.len(), 1, "{page}");
    let sk = AttributeValue::S(format!("{:020}", held[0]));
    let shard = AttributeValue::S(format!("ACT{}", held[0] % 8));
    let key =
        |pk: AttributeValue| HashMap::from([("pk".to_owned(), pk), ("sk".to_owned(), sk.clone())]);
    let item = dynamo
        .get_item()
        .table_name(&d.table)
        .set_key(Some(key(shard.clone())))
        .send()
        .await
        .expect("get")
        .item
        .expect("the activation is in its shard");
    let mut legacy = item.clone();
    legacy.insert("pk".into(), AttributeValue::S("ACT".into()));
    dynamo
        .put_item()
        .table_name(&d.table)
        .set_item(Some(legacy))
        .send()
        .await
        .expect("put");
    dynamo
        .delete_item()
        .table_name(&d.table)
        .set_key(Some(key(shard)))
        .send()
        .await
        .expect("delete");

    // Every listing, newest first, across the shards and the legacy partition.
    let (_, all) = call(
        &api,
        "GET",
        "/api/v1/projects/*/alert-activations?page-size=100",
        None,
    )
    .await;
    let listed = ids(&all);
    assert_eq!(listed.len(), 21, "{all}");
    let mut sorted = listed.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(listed, sorted, "newest first");
    assert_eq!(listed.last(), Some(&held[0]), "the legacy one is listed");
    let (_, first) = call(
        &api,
        "GET",
        "/api/v1/projects/*/alert-activations?page-size=5",
        None,
    )
    .await;
    assert_eq!(ids(&first), listed[..5], "a short page is the newest");
    let (status, got) = call(
        &api,
        "GET",
        &format!("/api/v1/projects/spread/alert-activations/{}", held[0]),
        None,
    )
    .await;
    assert_eq!(status, 200, "found by id: {got}");

    // A reset closes it where it is.
    let (status, _) = call(
        &api,
        "POST",
        "/api/v1/projects/spread/alerts/held/reset",
        None,
    )
    .await;
    assert!(status < 300, "{status}");
    let (_, got) = call(
        &api,
        "GET",
        &format!("/api/v1/projects/spread/alert-activations/{}", held[0]),
        None,
    )
    .await;
    assert!(got["reset_time"].is_string(), "closed: {got}");
}
