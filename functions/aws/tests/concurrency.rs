//! Exactly once under concurrency: eight API functions (eight containers, each with its own
//! clients and cache) deliver the last events of a window at the same moment, a hundred times;
//! eight evaluators get the same queued message at once.

mod common;

use std::sync::Arc;

use serde_json::{Value, json};
use tocsin_aws::handlers::ApiHandler;

use common::{Deployment, api_gateway_event, clients, read};

const HANDLERS: usize = 8;
const TRIALS: usize = 100;

async fn call(api: &ApiHandler, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    read(
        api.handle(api_gateway_event(method, path, body.as_ref()))
            .await
            .expect("infallible"),
    )
    .await
}

fn alert(name: &str, count: u32, reset: &str) -> Value {
    json!({
        "project": "race", "name": name, "severity": "high", "reset_policy": reset,
        "criteria": {"count": count, "period": "1h"},
        "trigger": {"events": ["failed"]},
        "entities": {"kind": "job", "project": "race", "ids": [name]},
        "notifications": []
    })
}

fn failure(entity: &str, i: usize) -> Value {
    json!({"kind": "failed", "entity": {"kind": "job", "project": "race", "ids": [entity]},
        "value_dict": {"n": i}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn eight_concurrent_handlers_fire_exactly_once_in_a_hundred_trials() {
    let d = Deployment::new().await;
    let env = d.env(false);
    let handlers: Vec<Arc<ApiHandler>> = (0..HANDLERS)
        .map(|_| Arc::new(ApiHandler::new(&env, &clients(None)).expect("the API handler")))
        .collect();
    for trial in 0..TRIALS {
        // Even trials: a manual alert needing all 10 events fires once and ignores the rest.
        // Odd trials: an auto alert needing 5 fires twice, each activation counting 5: the
        // concurrent events are counted as if they had come one after the other.
        let (count, reset, expected) = if trial % 2 == 0 {
            (10, "manual", vec![10])
        } else {
            (5, "auto", vec![5, 5])
        };
        let name = format!("trial-{trial}");
        let path = format!("/api/v1/projects/race/alerts/{name}");
        let (status, _) = call(&handlers[0], "PUT", &path, Some(alert(&name, count, reset))).await;
        assert_eq!(status, 200);
        for i in 0..2 {
            call(
                &handlers[1],
                "POST",
                "/api/v1/projects/race/events/failed",
                Some(failure(&name, i)),
            )
            .await;
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (h, handler) in handlers.iter().enumerate() {
            let (handler, name) = (handler.clone(), name.clone());
            tasks.spawn(async move {
                call(
                    &handler,
                    "POST",
                    "/api/v1/projects/race/events/failed",
                    Some(failure(&name, 2 + h)),
                )
                .await
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (status, body) = done.expect("task");
            assert_eq!(status, 200, "trial {trial}: {body}");
        }
        let (_, page) = call(&handlers[2], "GET", &format!("{path}/activations"), None).await;
        let counted: Vec<u64> = page["activations"]
            .as_array()
            .expect("activations")
            .iter()
            .map(|a| a["number_of_events"].as_u64().unwrap_or(0))
            .collect();
        assert_eq!(counted, expected, "trial {trial} ({reset}, count {count})");
        let (_, state) = call(&handlers[3], "GET", &path, None).await;
        assert_eq!(state["count"], expected.len(), "trial {trial}: {state}");
    }
}

/// SQS hands the same message to several evaluators at once (a redelivery while the first
/// delivery is still running): each event is counted once, and the firings are the ones the
/// events make one after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn eight_evaluators_given_the_same_message_count_each_event_once() {
    use tocsin_aws::handlers::EvaluatorHandler;
    const EVALUATOR_TRIALS: usize = 20;
    let d = Deployment::new().await;
    let env = d.env(true);
    let api = ApiHandler::new(&env, &clients(None)).expect("the API handler");
    let evaluators: Vec<Arc<EvaluatorHandler>> = (0..HANDLERS)
        .map(|_| Arc::new(EvaluatorHandler::new(&env, &clients(None))))
        .collect();
    for trial in 0..EVALUATOR_TRIALS {
        let (count, reset, expected) = if trial % 2 == 0 {
            (10, "manual", vec![10])
        } else {
            (4, "auto", vec![4, 4, 4])
        };
        let name = format!("queued-{trial}");
        let path = format!("/api/v1/projects/race/alerts/{name}");
        let (status, _) = call(&api, "PUT", &path, Some(alert(&name, count, reset))).await;
        assert_eq!(status, 200);
        let events: Vec<Value> = (0..12).map(|i| failure(&name, i)).collect();
        let (status, body) = call(
            &api,
            "POST",
            "/api/v1/projects/race/events",
            Some(json!({ "events": events })),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        let messages = common::drain(&d.queue_url).await;
        assert_eq!(messages.len(), 1);
        let sqs: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_value(json!({
            "Records": [{"messageId": messages[0].0, "body": messages[0].1, "eventSource": "aws:sqs"}]
        }))
        .expect("an SQS event");
        let mut tasks = tokio::task::JoinSet::new();
        for evaluator in &evaluators {
            let (evaluator, sqs) = (evaluator.clone(), sqs.clone());
            tasks.spawn(async move { evaluator.handle(sqs).await });
        }
        while let Some(done) = tasks.join_next().await {
            let answer = done.expect("task");
            assert!(answer.batch_item_failures.is_empty(), "trial {trial}");
        }
        let (_, page) = call(&api, "GET", &format!("{path}/activations"), None).await;
        let counted: Vec<u64> = page["activations"]
            .as_array()
            .expect("activations")
            .iter()
            .map(|a| a["number_of_events"].as_u64().unwrap_or(0))
            .collect();
        assert_eq!(counted, expected, "trial {trial} ({reset}, count {count})");
    }
}
