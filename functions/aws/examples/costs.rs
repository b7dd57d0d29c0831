//! What an event costs in DynamoDB requests and write units, counted by the SDK client on its
//! way to moto (`TOCSIN_MOTO_URL`): unbatched through the API function, in batches of 98
//! through the evaluator (packed in one message, and in one message per event), and what a
//! firing adds. Prints a Markdown table for BENCHMARKS.md.
//!
//!     TOCSIN_MOTO_URL=http://127.0.0.1:5055 cargo run --release -p tocsin-aws --example costs

use serde_json::{Value, json};
use tocsin_aws::dynamo::create_table;
use tocsin_aws::environment::{Clients, Environment};
use tocsin_aws::handlers::{ApiHandler, EvaluatorHandler, NotifierHandler};
use tocsin_aws::metrics::{RequestCounter, is_write};

fn alert(name: &str, count: u32, reset: &str, entity: &str) -> Value {
    json!({
        "project": "bench", "name": name, "severity": "low", "reset_policy": reset,
        "criteria": {"count": count, "period": "1h"},
        "trigger": {"events": ["failed"]},
        "entities": {"kind": "job", "project": "bench", "ids": [entity]},
        "notifications": []
    })
}

fn event(alert: usize, id: Option<String>) -> Value {
    let mut e = json!({"kind": "failed", "entity": {"kind": "job", "project": "bench", "ids": [format!("job-{alert}")]}});
    if let Some(id) = id {
        e["id"] = json!(id);
    }
    e
}

fn request(method: &str, path: &str, body: &Value) -> lambda_http::Request {
    request_with(method, path, body, None)
}

/// A request, with an `If-None-Match` header when `tag` is given.
fn request_with(method: &str, path: &str, body: &Value, tag: Option<&str>) -> lambda_http::Request {
    let mut headers = json!({"content-type": "application/json"});
    if let Some(tag) = tag {
        headers["if-none-match"] = json!(tag);
    }
    let e = json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": headers,
        "requestContext": {"accountId": "1", "apiId": "a", "domainName": "a", "domainPrefix": "a",
            "requestId": "r", "routeKey": "$default", "stage": "$default", "time": "t", "timeEpoch": 0,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"}},
        "body": body.to_string(), "isBase64Encoded": false
    });
    lambda_http::request::from_str(&e.to_string()).expect("API Gateway event")
}

struct Row {
    what: String,
    writes: f64,
    reads: f64,
    units: f64,
    detail: String,
}

fn row(what: &str, counter: &RequestCounter, per: usize) -> Row {
    let snap = counter.snapshot();
    let per = per as f64;
    let writes = snap
        .iter()
        .filter(|(op, _)| is_write(op))
        .map(|(_, c)| c.requests)
        .sum::<u64>();
    let reads = snap
        .iter()
        .filter(|(op, _)| !is_write(op))
        .map(|(_, c)| c.requests)
        .sum::<u64>();
    let units = snap.values().map(|c| c.put_units).sum::<u64>();
    let detail = snap
        .iter()
        .map(|(op, c)| format!("{op} {:.3}", c.requests as f64 / per))
        .collect::<Vec<_>>()
        .join(", ");
    Row {
        what: what.into(),
        writes: writes as f64 / per,
        reads: reads as f64 / per,
        units: units as f64 / per,
        detail,
    }
}

#[tokio::main]
async fn main() {
    let url = std::env::var("TOCSIN_MOTO_URL").expect("TOCSIN_MOTO_URL: moto's server");
    let config = tocsin_aws::local::sdk_config(&url);
    let counter = RequestCounter::default();
    let mut clients = Clients::new(&config);
    clients.dynamo = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&config)
            .interceptor(counter.clone())
            .build(),
    );
    let table = format!("tocsin-costs-{}", std::process::id());
    create_table(&clients.dynamo, &table).await.expect("table");
    let topic = clients
        .sns
        .create_topic()
        .name(&table)
        .send()
        .await
        .expect("topic");
    let queue = clients
        .sqs
        .create_queue()
        .queue_name(&table)
        .send()
        .await
        .expect("queue");
    let vars = [
        ("TOCSIN_TABLE", table.clone()),
        (
            "TOCSIN_TOPIC_ARN",
            topic.topic_arn().unwrap_or_default().to_owned(),
        ),
        (
            "TOCSIN_QUEUE_URL",
            queue.queue_url().unwrap_or_default().to_owned(),
        ),
        ("TOCSIN_CONFIG_TTL_MS", "60000".to_owned()),
    ];
    let env =
        Environment::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .expect("environment");
    let mut rows = Vec::new();

    // Alerts with the largest window MLRun allows (count 99), fed 98 events each so that none
    // fires: every write carries a window of up to 98 times. Warm containers.
    let mut sync = env.clone();
    sync.queue_url = None;
    let api = ApiHandler::new(&sync, &clients).expect("the API handler");
    for a in 0..10 {
        let name = format!("w{a}");
        let body = alert(&name, 99, "manual", &format!("job-{a}"));
        api.handle(request(
            "PUT",
            &format!("/api/v1/projects/bench/alerts/{name}"),
            &body,
        ))
        .await
        .expect("put");
    }
    let post = "/api/v1/projects/bench/events/failed";
    // Resets every alert (a new, empty window each); `warm`: then one event each, so that
    // this container's cache holds the new windows, as it does in steady traffic.
    let reset_all = async |warm: bool| {
        for a in 0..10 {
            api.handle(request(
                "POST",
                &format!("/api/v1/projects/bench/alerts/w{a}/reset"),
                &Value::Null,
            ))
            .await
            .expect("reset");
        }
        for a in (0..10).filter(|_| warm) {
            api.handle(request("POST", post, &event(a, None)))
                .await
                .expect("warm");
        }
    };
    reset_all(true).await;
    counter.reset();
    for i in 0..970 {
        api.handle(request("POST", post, &event(i / 97, None)))
            .await
            .expect("event");
    }
    rows.push(row(
        "one event, unbatched (API function), 1 matched alert",
        &counter,
        970,
    ));
    reset_all(true).await;
    counter.reset();
    for i in 0..970 {
        api.handle(request(
            "POST",
            post,
            &event(i / 97, Some(format!("k-{i}"))),
        ))
        .await
        .expect("event");
    }
    rows.push(row("the same with an idempotency key", &counter, 970));

    // Batches of 98 events, each on one alert, through a new evaluator container. The API packs
    // a request's events into one message; messages of one event are the worst case for the
    // windows' receipts (one per message), and accumulate over the redelivery horizon.
    let accepted = |alert: usize| {
        json!({"project": "bench", "kind": "failed", "entity_kind": "job",
            "entity_id": format!("job-{alert}"), "value_dict": {}, "at": "2026-11-24T05:00:00+00:00",
            "idempotency_key": null, "chain": []})
    };
    let sqs = |records: Vec<Value>| -> aws_lambda_events::event::sqs::SqsEvent {
        serde_json::from_value(json!({"Records": records})).expect("SQS event")
    };
    let packed = |alert: usize, n: usize, tag: &str| {
        let body = Value::Array((0..n).map(|_| accepted(alert)).collect()).to_string();
        sqs(vec![
            json!({"messageId": format!("{tag}-{alert}"), "body": body, "eventSource": "aws:sqs"}),
        ])
    };
    let single = |alert: usize, n: usize, tag: &str| {
        sqs((0..n)
            .map(|i| json!({"messageId": format!("{tag}-{alert}-{i}"), "body": Value::Array(vec![accepted(alert)]).to_string(), "eventSource": "aws:sqs"}))
            .collect())
    };
    reset_all(false).await;
    let evaluator = EvaluatorHandler::new(&env, &clients);
    counter.reset();
    for a in 0..10 {
        let answer = evaluator.handle(packed(a, 98, "packed")).await;
        assert!(answer.batch_item_failures.is_empty());
    }
    rows.push(row(
        "a batch of 98 events on one alert (evaluator), in one message",
        &counter,
        980,
    ));
    // A new container for each row: a warm one would see the resets only after its config TTL.
    reset_all(false).await;
    let evaluator = EvaluatorHandler::new(&env, &clients);
    counter.reset();
    for a in 0..10 {
        let answer = evaluator.handle(single(a, 98, "single")).await;
        assert!(answer.batch_item_failures.is_empty());
    }
    rows.push(row("the same in 98 messages of one event", &counter, 980));
    reset_all(false).await;
    let evaluator = EvaluatorHandler::new(&env, &clients);
    counter.reset();
    for b in 0..10 {
        let answer = evaluator.handle(single(0, 9, &format!("run-{b}"))).await;
        assert!(answer.batch_item_failures.is_empty());
    }
    rows.push(row(
        "10 batches in a row on one alert, 9 one-event messages each (receipts accumulate)",
        &counter,
        90,
    ));
    let answer = evaluator.handle(packed(0, 9, "run-9")).await;
    assert!(answer.batch_item_failures.is_empty());
    counter.reset();
    let answer = evaluator.handle(packed(0, 9, "run-9")).await;
    assert!(answer.batch_item_failures.is_empty());
    let redelivered = counter.writes();
    assert_eq!(redelivered, 0, "a redelivered message writes nothing");

    // Firing: an auto alert with count 1 fires on every event.
    api.handle(request(
        "PUT",
        "/api/v1/projects/bench/alerts/always",
        &alert("always", 1, "auto", "fire"),
    ))
    .await
    .expect("put");
    // Posts `n` events made by `make` through the API function.
    let post_all = async |make: &dyn Fn(usize) -> Value, n: usize| {
        for i in 0..n {
            api.handle(request("POST", post, &make(i)))
                .await
                .expect("event");
        }
    };
    let fire = |i: usize| json!({"kind": "failed", "entity": {"kind": "job", "project": "bench", "ids": ["fire"]}, "value_dict": {"i": i}});
    post_all(&fire, 1).await;
    counter.reset();
    post_all(&fire, 100).await;
    rows.push(row(
        "one event that fires (activation written)",
        &counter,
        100,
    ));

    // An absence alert watching 100 entities: each event moves its entity's deadline in the
    // same write as its time; the schedule's run reads the due index, never the windows.
    let mut heartbeat = alert("heartbeat", 1, "auto", "*");
    heartbeat["criteria"] = json!({"absent": "1h"});
    api.handle(request(
        "PUT",
        "/api/v1/projects/bench/alerts/heartbeat",
        &heartbeat,
    ))
    .await
    .expect("put");
    let beat = |i: usize| json!({"kind": "failed", "entity": {"kind": "job", "project": "bench", "ids": [format!("hb-{}", i % 100)]}});
    post_all(&beat, 100).await;
    counter.reset();
    post_all(&beat, 1_000).await;
    rows.push(row(
        "one event on an absence alert's window (its deadline moves in the same write)",
        &counter,
        1_000,
    ));
    // Ten scheduled runs of a new notifier container (after one that warms it up).
    let scheduled_runs = async |what: &str| {
        let notifier = NotifierHandler::new(&env, &clients).expect("notifier");
        notifier
            .scheduled(tocsin_core::model::Timestamp::now())
            .await
            .expect("warm up");
        counter.reset();
        for _ in 0..10 {
            notifier
                .scheduled(tocsin_core::model::Timestamp::now())
                .await
                .expect("scheduled");
        }
        row(what, &counter, 10)
    };
    let mut ticks = vec![
        scheduled_runs(
            "the schedule's run, 100 absences watched, none due (8 shards of the due index)",
        )
        .await,
    ];
    api.handle(request(
        "DELETE",
        "/api/v1/projects/bench/alerts/heartbeat",
        &Value::Null,
    ))
    .await
    .expect("delete");
    ticks.push(scheduled_runs("the same with no absence alert").await);

    // The Alerts page's poll of `GET /projects/*/alerts`: in full, then unchanged (304).
    let listing = "/api/v1/projects/*/alerts";
    counter.reset();
    let full = api
        .handle(request_with("GET", listing, &Value::Null, None))
        .await
        .expect("listing");
    assert_eq!(full.status(), 200);
    let tag = full
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("an ETag")
        .to_owned();
    let mut polls = vec![row("an Alerts page poll, in full (11 alerts)", &counter, 1)];
    counter.reset();
    for _ in 0..10 {
        let again = api
            .handle(request_with("GET", listing, &Value::Null, Some(&tag)))
            .await
            .expect("listing");
        assert_eq!(again.status(), 304);
    }
    polls.push(row("the same poll, unchanged (304)", &counter, 10));

    println!("| per event | write requests | read requests | write units (puts) | by operation |");
    println!("|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.3} | {:.3} | {:.2} | {} |",
            r.what, r.writes, r.reads, r.units, r.detail
        );
    }
    println!();
    println!("| per request | read requests | by operation |");
    println!("|---|---|---|");
    for r in polls {
        println!("| {} | {:.3} | {} |", r.what, r.reads, r.detail);
    }
    println!();
    println!(
        "| per scheduled run (every minute) | read requests | write requests | by operation |"
    );
    println!("|---|---|---|---|");
    for r in ticks {
        println!(
            "| {} | {:.3} | {:.3} | {} |",
            r.what, r.reads, r.writes, r.detail
        );
    }
}
