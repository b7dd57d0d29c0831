//! The AWS path under the faults DynamoDB, SNS and SQS really produce, injected by a proxy
//! between the functions' SDK clients and moto (`common::faults`) at 10%, 30% and 70% of their
//! requests: throttling, 500s, writes applied and then answered with a 500, 2-second delays,
//! failed publishes and sends. Clients retry with their keys until answered 2xx; the queue
//! delivers again what failed, and a dead-letter queue is driven back. Every event answered
//! 2xx or taken from the queue is counted exactly once, each crossing fires once, every
//! activation is delivered and recorded `sent`, and every evaluator invocation answers before
//! its deadline.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tocsin_aws::dynamo::DynamoStore;
use tocsin_aws::environment::{Clients, Environment};
use tocsin_aws::handlers::{ApiHandler, EvaluatorHandler, NotifierHandler};
use tocsin_core::model::{DeliveryStatus, Span, Timestamp};
use tocsin_core::store::{ActivationQuery, ActivationStore, EventQuery, EventStore};

use common::faults::Faults;
use common::{Deployment, Receiver, api_gateway_event, clients, drain, moto_url, read};

/// Events an alert counts before it fires.
const COUNT: usize = 5;
/// Clients sending at once.
const CLIENTS: usize = 8;

/// The functions' clients, through the proxy, retrying as the SDK does but with short
/// backoffs (the test's patience, not the behaviour, is what differs from Lambda's).
fn through(faults: &Faults) -> Clients {
    let config = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .endpoint_url(&faults.url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "faults"),
        ))
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(20))
                .with_max_backoff(Duration::from_millis(400)),
        )
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(5))
                .build(),
        )
        .build();
    Clients::new(&config)
}

async fn call(api: &ApiHandler, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    read(
        api.handle(api_gateway_event(method, path, body.as_ref()))
            .await
            .expect("infallible"),
    )
    .await
}

/// The alert every scenario counts for: a shared window of `COUNT` events, auto reset, a
/// webhook to `hook`.
async fn store_alert(env: &Environment, hook: &str) {
    let api = ApiHandler::new(env, &clients(None)).expect("the API handler");
    let body = json!({
        "project": "faults", "name": "crossing", "severity": "high", "reset_policy": "auto",
        "criteria": {"count": COUNT},
        "trigger": {"events": ["failed"]},
        "entities": {"kind": "job", "project": "faults", "ids": ["*"]},
        "notifications": [{"notification": {"kind": "webhook", "name": "hook",
            "secret_params": {"url": format!("{hook}/crossing")}}}]
    });
    let (status, answer) = call(
        &api,
        "PUT",
        "/api/v1/projects/faults/alerts/crossing",
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
}

fn failure(key: &str) -> Value {
    json!({"kind": "failed", "id": key,
        "entity": {"kind": "job", "project": "faults", "ids": [format!("job-{key}")]}})
}

/// Sends until answered 2xx, as a client that keeps its keys does; every other answer is a
/// 503 with a `detail` and a `Retry-After`-worthy reason. How many tries it took.
async fn until_accepted(api: &ApiHandler, path: &str, body: Value) -> usize {
    for tries in 1..=500 {
        let (status, answer) = call(api, "POST", path, Some(body.clone())).await;
        match status {
            200..=299 => return tries,
            503 => assert!(answer["detail"].is_string(), "{answer}"),
            other => panic!("answered {other}: {answer}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never accepted: {body}");
}

/// What the deployment holds, read from moto directly: each activation's events counted and
/// whether its webhook was delivered.
async fn activations(env: &Environment) -> Vec<(u64, u64, bool)> {
    let store = DynamoStore::new(clients(None).dynamo, env.dynamo());
    let listed = store
        .activations(&ActivationQuery {
            project: Some("faults".into()),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .expect("activations");
    listed
        .iter()
        .map(|a| {
            let sent = a
                .deliveries
                .iter()
                .all(|d| d.status == DeliveryStatus::Sent);
            (a.id, a.number_of_events, sent)
        })
        .collect()
}

/// Delivers what was published (moto hands SNS's messages to the observer queue) and runs the
/// notifier's schedule (its sweep republishes what is pending), faults and all, until every
/// activation's webhook is recorded sent.
async fn deliver_everything(env: &Environment, faults: &Faults, observer: &str) {
    let notifier = NotifierHandler::new(env, &through(faults)).expect("notifier");
    for _ in 0..200 {
        for (_, body) in drain(observer).await {
            let envelope: Value = serde_json::from_str(&body).expect("SNS envelope");
            let record = json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": envelope["Message"]}}]});
            // A failure is the sweep's to catch up.
            let _ = notifier.handle(record).await;
        }
        if activations(env).await.iter().all(|(_, _, sent)| *sent) {
            return;
        }
        let later = Timestamp::now().plus(Span::from_secs(3_600));
        notifier
            .scheduled(later)
            .await
            .expect("the schedule answers");
    }
    panic!(
        "activations still undelivered: {:?}",
        activations(env).await
    );
}

/// Each event counted once, each crossing fired once, the history holding each event once.
async fn counted_once(env: &Environment, events: usize) {
    let fired = activations(env).await;
    assert_eq!(
        fired.len(),
        events / COUNT,
        "one activation per crossing: {fired:?}"
    );
    assert!(
        fired.iter().all(|(_, n, _)| *n == COUNT as u64),
        "each activation counts {COUNT} events: {fired:?}"
    );
    let store = DynamoStore::new(clients(None).dynamo, env.dynamo());
    let kept = store
        .recorded_events(&EventQuery {
            project: "faults".into(),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .expect("history");
    let mut keys: Vec<String> = kept
        .iter()
        .filter_map(|r| r.event.idempotency_key.clone())
        .collect();
    keys.sort();
    let before = keys.len();
    keys.dedup();
    assert_eq!(
        (before, keys.len()),
        (events, events),
        "the history holds each event once"
    );
}

/// Crossings each client's events make: fewer at the highest rate, where every request takes
/// several tries (the test's patience, not the guarantee, is what changes).
fn crossings(rate: f64) -> usize {
    if rate > 0.5 { 1 } else { 2 }
}

async fn keyed_events_one_at_a_time(rate: f64, seed: u64) {
    let d = Deployment::new().await;
    let env = d.env(false);
    let (receiver, hook) = Receiver::start().await;
    let observer = d.observe_topic().await;
    store_alert(&env, &hook).await;
    let faults = Faults::start(&moto_url(), seed).await;
    faults.set(rate, Duration::from_secs(2));
    let api = Arc::new(ApiHandler::new(&env, &through(&faults)).expect("the API handler"));
    let per_client = crossings(rate) * COUNT;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let api = api.clone();
        tasks.spawn(async move {
            for i in 0..per_client {
                let key = format!("c{c}-e{i}");
                until_accepted(&api, "/api/v1/projects/faults/events/failed", failure(&key)).await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a client");
    }
    deliver_everything(&env, &faults, &observer).await;
    counted_once(&env, CLIENTS * per_client).await;
    let keys: std::collections::BTreeSet<String> = receiver
        .requests()
        .into_iter()
        .map(|(_, key, _)| key)
        .collect();
    assert_eq!(
        keys.len(),
        CLIENTS * per_client / COUNT,
        "every activation delivered"
    );
    assert!(faults.counts.total() > 0, "faults were injected");
    eprintln!(
        "rate {rate}: {} requests, {} faults",
        faults
            .counts
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        faults.counts.total()
    );
}

async fn keyed_batches_through_the_queue(rate: f64, seed: u64) {
    let d = Deployment::new().await;
    let env = d.env(true);
    let (_receiver, hook) = Receiver::start().await;
    store_alert(&env, &hook).await;
    let direct = clients(None);
    let dlq = dead_letters(&direct, &d.queue_url).await;
    let faults = Faults::start(&moto_url(), seed).await;
    faults.set(rate, Duration::from_secs(2));
    let api = Arc::new(ApiHandler::new(&env, &through(&faults)).expect("the API handler"));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let api = api.clone();
        tasks.spawn(async move {
            for b in 0..crossings(rate) {
                let events: Vec<Value> = (0..COUNT)
                    .map(|i| failure(&format!("c{c}-b{b}-e{i}")))
                    .collect();
                until_accepted(
                    &api,
                    "/api/v1/projects/faults/events",
                    json!({"events": events}),
                )
                .await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a client");
    }
    let evaluator = EvaluatorHandler::new(&env, &through(&faults));
    let mut redrives = 0;
    for _ in 0..400 {
        let taken = receive(&direct, &d.queue_url).await;
        if taken.is_empty() {
            if redrive(&direct, &dlq, &d.queue_url).await {
                redrives += 1;
            } else if queued(&direct, &d.queue_url).await == 0 {
                break;
            }
            continue;
        }
        let batch: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_value(json!({
            "Records": taken.iter().map(|(id, _, body)| json!({
                "messageId": id, "body": body, "eventSource": "aws:sqs"})).collect::<Vec<_>>()
        }))
        .expect("an SQS event");
        let deadline = Instant::now() + Duration::from_secs(12);
        let answer = evaluator.handle_until(batch, Some(deadline)).await;
        assert!(
            Instant::now() < deadline,
            "the evaluator answered before its deadline"
        );
        let failed: Vec<&str> = answer
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        if std::env::var("FAULTS_DEBUG").is_ok() {
            eprintln!(
                "took {} failed {} in {:?}",
                taken.len(),
                failed.len(),
                deadline.saturating_duration_since(Instant::now())
            );
        }
        for (id, handle, _) in &taken {
            if !failed.contains(&id.as_str()) {
                direct
                    .sqs
                    .delete_message()
                    .queue_url(&d.queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .expect("delete");
            }
        }
    }
    assert!(
        receive(&direct, &d.queue_url).await.is_empty(),
        "the queue emptied"
    );
    counted_once(&env, CLIENTS * crossings(rate) * COUNT).await;
    eprintln!(
        "rate {rate}: {} requests, {} faults, {redrives} redrives",
        faults
            .counts
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        faults.counts.total()
    );
}

/// A dead-letter queue for `queue`, which gets a message after its third receive.
async fn dead_letters(c: &Clients, queue: &str) -> String {
    let dlq = c
        .sqs
        .create_queue()
        .queue_name(format!("dlq-{}", tocsin_aws::dynamo::write_token()))
        .send()
        .await
        .expect("dlq")
        .queue_url()
        .expect("url")
        .to_owned();
    let arn = c
        .sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attributes")
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .expect("arn")
        .clone();
    c.sqs
        .set_queue_attributes()
        .queue_url(queue)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": arn, "maxReceiveCount": "3"}).to_string(),
        )
        .send()
        .await
        .expect("redrive policy");
    dlq
}

/// Messages in a queue, visible or in flight.
async fn queued(c: &Clients, queue: &str) -> usize {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = c
        .sqs
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("attributes");
    let count = |name: A| {
        out.attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
    };
    count(A::ApproximateNumberOfMessages) + count(A::ApproximateNumberOfMessagesNotVisible)
}

/// Up to 10 messages, hidden for a second: (id, receipt handle, body).
async fn receive(c: &Clients, queue: &str) -> Vec<(String, String, String)> {
    let out = c
        .sqs
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(10)
        .visibility_timeout(1)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive");
    out.messages()
        .iter()
        .map(|m| {
            (
                m.message_id().unwrap_or_default().to_owned(),
                m.receipt_handle().unwrap_or_default().to_owned(),
                m.body().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Moves what the dead-letter queue holds back to the queue (the operator's redrive); whether
/// there was any.
async fn redrive(c: &Clients, dlq: &str, queue: &str) -> bool {
    let dead = drain(dlq).await;
    for (_, body) in &dead {
        c.sqs
            .send_message()
            .queue_url(queue)
            .message_body(body)
            .send()
            .await
            .expect("redrive");
    }
    !dead.is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_events_count_once_and_deliver_under_10_percent_faults() {
    keyed_events_one_at_a_time(0.1, 11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_events_count_once_and_deliver_under_30_percent_faults() {
    keyed_events_one_at_a_time(0.3, 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_events_count_once_and_deliver_under_70_percent_faults() {
    keyed_events_one_at_a_time(0.7, 13).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_events_count_once_without_faults() {
    keyed_batches_through_the_queue(0.0, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_events_count_once_under_10_percent_faults() {
    keyed_batches_through_the_queue(0.1, 21).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_events_count_once_under_30_percent_faults() {
    keyed_batches_through_the_queue(0.3, 22).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_events_count_once_under_70_percent_faults() {
    keyed_batches_through_the_queue(0.7, 23).await;
}
