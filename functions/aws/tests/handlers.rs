//! The Lambda handlers end to end on moto: API Gateway v2 events through the API function, SQS
//! batches through the evaluator, SNS messages through the notifier, with a real HTTP receiver.

mod common;

use serde_json::{Value, json};
use tocsin_aws::handlers::{ApiHandler, EvaluatorHandler, NotifierHandler};

use common::{Deployment, Receiver, api_gateway_event, clients, drain, read};

fn alert(name: &str, count: u32, reset: &str, hook: &str, email: Option<&str>) -> Value {
    let mut notifications = vec![json!({"notification": {"kind": "webhook", "name": "hook",
        "secret_params": {"url": format!("{hook}/hook")}}})];
    if let Some(email) = email {
        notifications.push(json!({"notification": {"kind": "email", "name": "mail",
            "secret_params": {"email_addresses": [email]}}}));
    }
    json!({
        "project": "fraud", "name": name, "summary": "Job {{entity}} failed",
        "severity": "high", "reset_policy": reset,
        "criteria": {"count": count, "period": "10m"},
        "trigger": {"events": ["failed"]},
        "entities": {"kind": "job", "project": "fraud", "ids": ["*"]},
        "notifications": notifications
    })
}

fn failure(entity: &str) -> Value {
    json!({"kind": "failed", "entity": {"kind": "job", "project": "fraud", "ids": [entity]},
        "value_dict": {"error": "OOM"}})
}

async fn call(api: &ApiHandler, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let response = api
        .handle(api_gateway_event(method, path, body.as_ref()))
        .await
        .expect("infallible");
    read(response).await
}

/// The email subscriptions of the topic: (address, filter policy).
async fn email_subscriptions(d: &Deployment) -> Vec<(String, Value)> {
    let sns = clients(None).sns;
    let subs = sns
        .list_subscriptions_by_topic()
        .topic_arn(&d.topic_arn)
        .send()
        .await
        .expect("list subscriptions");
    let mut found = Vec::new();
    for s in subs.subscriptions() {
        if s.protocol() != Some("email") {
            continue;
        }
        let attrs = sns
            .get_subscription_attributes()
            .subscription_arn(s.subscription_arn().unwrap_or_default())
            .send()
            .await
            .expect("subscription attributes");
        let policy = attrs
            .attributes()
            .and_then(|a| a.get("FilterPolicy"))
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or(Value::Null);
        found.push((s.endpoint().unwrap_or_default().to_owned(), policy));
    }
    found
}

#[tokio::test]
async fn an_alert_fires_once_is_published_with_attributes_and_delivered() {
    let d = Deployment::new().await;
    let observer = d.observe_topic().await;
    let (receiver, hook) = Receiver::start().await;
    let env = d.env(false);
    let api = ApiHandler::new(&env, &clients(None)).expect("the API handler");

    let body = alert(
        "job-failures",
        3,
        "manual",
        &hook,
        Some("oncall@example.com"),
    );
    let (status, stored) = call(
        &api,
        "PUT",
        "/api/v1/projects/fraud/alerts/job-failures",
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(
        email_subscriptions(&d).await,
        vec![(
            "oncall@example.com".to_owned(),
            json!({"project": ["fraud"], "alert": ["job-failures"]})
        )],
        "storing the alert subscribed its email address, filtered to the alert"
    );

    for i in 0..5 {
        let (status, body) = call(
            &api,
            "POST",
            "/api/v1/projects/fraud/events/failed",
            Some(failure(&format!("job-{i}"))),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, alert) = call(
        &api,
        "GET",
        "/api/v1/projects/fraud/alerts/job-failures",
        None,
    )
    .await;
    assert_eq!(alert["state"], "active");
    assert_eq!(
        alert["count"], 1,
        "fired once: a manual alert ignores events until reset"
    );
    let (_, page) = call(
        &api,
        "GET",
        "/api/v1/projects/fraud/alert-activations",
        None,
    )
    .await;
    let activations = page["activations"].as_array().expect("activations").clone();
    assert_eq!(activations.len(), 1, "{page}");
    assert_eq!(activations[0]["number_of_events"], 3);

    // What SNS published: one message, with the attributes subscriptions filter on.
    let published = drain(&observer).await;
    assert_eq!(published.len(), 1, "{published:?}");
    let envelope: Value = serde_json::from_str(&published[0].1).expect("SNS envelope");
    let attrs = &envelope["MessageAttributes"];
    assert_eq!(attrs["project"]["Value"], "fraud");
    assert_eq!(attrs["alert"]["Value"], "job-failures");
    assert_eq!(attrs["severity"]["Value"], "high");
    let message = envelope["Message"].as_str().expect("message").to_owned();

    // The notifier, as SNS invokes it, delivers to the receiver and records the outcomes.
    let notifier = NotifierHandler::new(&env, &clients(None)).expect("notifier");
    let sns_event = json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": message}}]});
    let result = notifier.handle(sns_event.clone()).await.expect("notify");
    assert_eq!(result["delivered"], 1);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let id = activations[0]["id"].as_u64().expect("id");
    assert_eq!(requests[0].0, "/hook");
    assert_eq!(requests[0].1, format!("{id}:hook"), "the delivery key");
    let (_, activation) = call(
        &api,
        "GET",
        &format!("/api/v1/projects/fraud/alert-activations/{id}"),
        None,
    )
    .await;
    let mut statuses: Vec<(String, String)> = activation["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| {
            (
                d["notification"].as_str().unwrap_or_default().to_owned(),
                d["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        vec![
            ("hook".into(), "sent".into()),
            ("mail".into(), "sent".into())
        ],
        "{activation}"
    );
    // SNS delivers at least once: the same message again sends nothing again.
    assert_eq!(
        notifier.handle(sns_event).await.expect("again")["delivered"],
        0
    );
    assert_eq!(receiver.requests().len(), 1);

    // Deleting the alert removes its email subscription.
    let (status, _) = call(
        &api,
        "DELETE",
        "/api/v1/projects/fraud/alerts/job-failures",
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert!(email_subscriptions(&d).await.is_empty());
}

#[tokio::test]
async fn batches_queue_to_sqs_and_the_evaluator_counts_them_once() {
    let d = Deployment::new().await;
    let (_receiver, hook) = Receiver::start().await;
    let env = d.env(true);
    let api = ApiHandler::new(&env, &clients(None)).expect("the API handler");
    let body = alert("bursts", 25, "auto", &hook, None);
    let (status, _) = call(
        &api,
        "PUT",
        "/api/v1/projects/fraud/alerts/bursts",
        Some(body),
    )
    .await;
    assert_eq!(status, 200);

    let events: Vec<Value> = (0..100)
        .map(|i| failure(&format!("job-{}", i % 7)))
        .collect();
    let (status, answer) = call(
        &api,
        "POST",
        "/api/v1/projects/fraud/events",
        Some(json!({"events": events})),
    )
    .await;
    assert_eq!(
        (status, &answer),
        (202, &json!({"accepted": 100, "queued": true}))
    );
    let bad = json!({"events": [failure("a"), {"kind": "failed", "entity": {"kind": "model-endpoint-result", "project": "fraud", "ids": ["x"]}}]});
    let (status, answer) = call(&api, "POST", "/api/v1/projects/fraud/events", Some(bad)).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap_or_default()
            .starts_with("events[1]:"),
        "{answer}"
    );

    let sqs_event = |msgs: &[(String, String)]| -> aws_lambda_events::event::sqs::SqsEvent {
        serde_json::from_value(json!({"Records": msgs.iter().map(|(id, body)| json!({
            "messageId": id, "body": body, "eventSource": "aws:sqs"})).collect::<Vec<_>>()}))
        .expect("SQS event")
    };
    let messages = drain(&d.queue_url).await;
    assert_eq!(
        messages.len(),
        1,
        "one message carries the valid batch: {messages:?}"
    );
    let packed: Value = serde_json::from_str(&messages[0].1).expect("a message of events");
    let carried: Vec<Value> =
        serde_json::from_value(packed["events"].clone()).expect("an array of events");
    assert_eq!(carried.len(), 100);
    assert_eq!(carried[6]["entity_id"], "job-6", "in order");
    let evaluator = EvaluatorHandler::new(&env, &clients(None));
    // The evaluator crashed after counting the message's first 60 events (it committed the
    // window, then died before SQS heard of it): the receipt says 60.
    let first_60: Vec<&Value> = carried[..60].iter().collect();
    let partial = vec![(
        messages[0].0.clone(),
        json!({"id": packed["id"], "events": first_60}).to_string(),
    )];
    let answer = evaluator.handle(sqs_event(&partial)).await;
    assert!(answer.batch_item_failures.is_empty());
    // SQS redelivers the whole message, to another container: the last 40 are counted.
    let other = EvaluatorHandler::new(&env, &clients(None));
    let answer = other.handle(sqs_event(&messages)).await;
    assert!(answer.batch_item_failures.is_empty());
    // And again, to the first container (its cache is behind): nothing more is counted.
    let again = evaluator.handle(sqs_event(&messages)).await;
    assert!(again.batch_item_failures.is_empty());
    // A send that SQS took and answered with an error is sent again by the SDK: the same body
    // under another message id. Its id in the body says it was counted.
    let twice = vec![("sent-twice".to_owned(), messages[0].1.clone())];
    let answer = other.handle(sqs_event(&twice)).await;
    assert!(answer.batch_item_failures.is_empty());
    // A message that is not an event fails alone (SQS retries it, then dead-letters it).
    let mut broken = messages.clone();
    broken.push(("broken-1".into(), "{not json".into()));
    let answer = evaluator.handle(sqs_event(&broken)).await;
    let failed: Vec<&str> = answer
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec!["broken-1"]);
    // The history keeps the message's events once, whole, however often it came.
    let store = tocsin_aws::dynamo::DynamoStore::new(clients(None).dynamo, env.dynamo());
    let kept = tocsin_core::store::EventStore::recorded_events(
        &store,
        &tocsin_core::store::EventQuery {
            project: "fraud".into(),
            limit: 1_000,
            ..Default::default()
        },
    )
    .await
    .expect("recorded events");
    let ids: Vec<&str> = kept.iter().map(|r| r.event.entity_id.as_str()).collect();
    let sent: Vec<&str> = carried
        .iter()
        .filter_map(|e| e["entity_id"].as_str())
        .collect();
    assert_eq!(ids, sent, "each event once, in order");
    let (_, alert) = call(&api, "GET", "/api/v1/projects/fraud/alerts/bursts", None).await;
    assert_eq!(
        alert["count"], 4,
        "100 events, 25 per activation, each counted once: {alert}"
    );
    let (_, page) = call(
        &api,
        "GET",
        "/api/v1/projects/fraud/alerts/bursts/activations",
        None,
    )
    .await;
    let counted: Vec<u64> = page["activations"]
        .as_array()
        .expect("list")
        .iter()
        .map(|a| a["number_of_events"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(counted, vec![25, 25, 25, 25]);
}

#[tokio::test]
async fn the_sweep_republishes_activations_left_pending() {
    let d = Deployment::new().await;
    let env = d.env(false);
    let api = ApiHandler::new(&env, &clients(None)).expect("the API handler");
    // A receiver that is not there: the delivery stays pending... until the sweep sees it.
    let body = alert("sweep", 1, "auto", "http://127.0.0.1:9", None);
    call(
        &api,
        "PUT",
        "/api/v1/projects/fraud/alerts/sweep",
        Some(body),
    )
    .await;
    call(
        &api,
        "POST",
        "/api/v1/projects/fraud/events/failed",
        Some(failure("j")),
    )
    .await;
    let observer = d.observe_topic().await;
    let notifier = NotifierHandler::new(&env, &clients(None)).expect("notifier");
    let now = tocsin_core::model::Timestamp::now();
    let early = notifier.sweep(now).await.expect("sweep");
    assert_eq!(early["republished"], 0, "too fresh to sweep");
    let late = notifier
        .sweep(now.plus(tocsin_core::model::Span::from_secs(3600)))
        .await
        .expect("sweep");
    assert_eq!(late["republished"], 1);
    assert_eq!(drain(&observer).await.len(), 1);
}

/// An `event` notification's chained event fires a second alert inside the notifier Lambda:
/// that activation is published at once (not left for the sweep), and delivered when SNS hands
/// it to the notifier.
#[tokio::test]
async fn a_chained_event_fired_in_the_notifier_is_published_and_delivered_without_the_sweep() {
    let d = Deployment::new().await;
    let observer = d.observe_topic().await;
    let (receiver, hook) = Receiver::start().await;
    let env = d.env(false);
    let api = ApiHandler::new(&env, &clients(None)).expect("the API handler");
    let first = json!({
        "project": "fraud", "name": "job-failed", "summary": "Job {{entity}} failed",
        "severity": "high", "reset_policy": "auto",
        "criteria": {"count": 1},
        "trigger": {"events": ["failed"]},
        "entities": {"kind": "job", "project": "fraud", "ids": ["*"]},
        "notifications": [{"notification": {"kind": "event", "name": "escalate",
            "params": {"event_kind": "job-escalated", "entity_id": "{{entity}}"}}}]
    });
    let second = json!({
        "project": "fraud", "name": "escalations", "summary": "Escalated: {{entity}}",
        "severity": "high", "reset_policy": "auto",
        "criteria": {"count": 1},
        "trigger": {"events": ["job-escalated"]},
        "entities": {"kind": "job", "project": "fraud", "ids": ["*"]},
        "notifications": [{"notification": {"kind": "webhook", "name": "hook",
            "secret_params": {"url": format!("{hook}/escalated")}}}]
    });
    for (name, body) in [("job-failed", first), ("escalations", second)] {
        let path = format!("/api/v1/projects/fraud/alerts/{name}");
        let (status, stored) = call(&api, "PUT", &path, Some(body)).await;
        assert_eq!(status, 200, "{stored}");
    }
    let (status, body) = call(
        &api,
        "POST",
        "/api/v1/projects/fraud/events/failed",
        Some(failure("train-7")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let published = drain(&observer).await;
    assert_eq!(
        published.len(),
        1,
        "the first alert's activation: {published:?}"
    );
    let message = |body: &str| -> String {
        let envelope: Value = serde_json::from_str(body).expect("SNS envelope");
        envelope["Message"].as_str().expect("message").to_owned()
    };
    let notifier = NotifierHandler::new(&env, &clients(None)).expect("notifier");
    let record =
        |m: String| json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": m}}]});
    let result = notifier
        .handle(record(message(&published[0].1)))
        .await
        .expect("notify");
    assert_eq!(result["delivered"], 1);

    // The chained event fired the second alert, and its activation went to the topic.
    let published = drain(&observer).await;
    assert_eq!(
        published.len(),
        1,
        "the second alert's activation is published by the invocation that fired it: {published:?}"
    );
    let chained: Value = serde_json::from_str(&message(&published[0].1)).expect("message");
    assert_eq!(chained["activation"]["name"], "escalations");
    assert_eq!(chained["activation"]["entity_id"], "train-7");
    assert!(receiver.requests().is_empty(), "nothing delivered yet");
    let result = notifier
        .handle(record(message(&published[0].1)))
        .await
        .expect("notify the second");
    assert_eq!(result["delivered"], 1);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].0, "/escalated");
    let id = chained["activation"]["id"].as_u64().expect("id");
    assert_eq!(requests[0].1, format!("{id}:hook"), "the delivery key");
}

async fn call_by(
    api: &ApiHandler,
    method: &str,
    path: &str,
    body: Option<Value>,
    authorizer: Value,
) -> (u16, Value) {
    let request = common::api_gateway_event_by(method, path, body.as_ref(), Some(authorizer));
    read(api.handle(request).await.expect("infallible")).await
}

fn jwt(sub: &str, grants: &str, scopes: &[&str]) -> Value {
    json!({"jwt": {"claims": {"sub": sub, "tocsin_grants": grants}, "scopes": scopes}})
}

#[tokio::test]
async fn jwt_claims_map_to_the_same_roles_and_iam_keeps_full_access() {
    let d = Deployment::new().await;
    let api = ApiHandler::new(&d.env(false), &clients(None)).expect("the API handler");
    let body = alert("drift", 1, "manual", "http://127.0.0.1:9/x", None);
    let viewer = jwt("ann", "viewer:fraud", &[]);
    let (status, answer) = call_by(
        &api,
        "PUT",
        "/api/v1/projects/fraud/alerts/drift",
        Some(body.clone()),
        viewer.clone(),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .is_some_and(|d| d.contains("`editor` role")),
        "{answer}"
    );

    let editor = jwt("bob", "", &["openid", "tocsin/editor:fraud"]);
    let (status, answer) = call_by(
        &api,
        "PUT",
        "/api/v1/projects/fraud/alerts/drift",
        Some(body.clone()),
        editor,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = call_by(
        &api,
        "GET",
        "/api/v1/projects/fraud/alerts/drift",
        None,
        viewer.clone(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call_by(
        &api,
        "GET",
        "/api/v1/projects/other/alerts",
        None,
        viewer.clone(),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call_by(
        &api,
        "POST",
        "/api/v1/projects/fraud/alerts/drift/reset",
        None,
        viewer.clone(),
    )
    .await;
    assert_eq!(status, 403);

    let iam = json!({"iam": {"accountId": "123456789012", "userArn": "arn:aws:iam::123456789012:user/ops"}});
    let (status, _) = call_by(
        &api,
        "POST",
        "/api/v1/projects/fraud/alerts/drift/reset",
        None,
        iam,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call_by(
        &api,
        "GET",
        "/api/v1/projects/fraud/alerts",
        None,
        jwt("eve", "", &[]),
    )
    .await;
    assert_eq!(status, 403, "a JWT without grants may do nothing");

    let (_, audit) = call_by(&api, "GET", "/api/v1/projects/fraud/audit", None, viewer).await;
    let who: Vec<(&str, &str)> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or(""),
                e["by"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        who,
        [
            ("alert.reset", "arn:aws:iam::123456789012:user/ops"),
            ("alert.store", "bob")
        ]
    );
}

/// The Alerts page's poll: a listing asked again with its ETag is 304 for one read of the
/// catalog item, and a firing anywhere makes the next poll read in full.
#[tokio::test]
async fn an_unchanged_alerts_listing_costs_one_read_of_the_catalog() {
    let d = Deployment::new().await;
    let counter = tocsin_aws::metrics::RequestCounter::default();
    let api = ApiHandler::new(&d.env(false), &clients(Some(&counter))).expect("the API handler");
    for name in ["one", "two", "three"] {
        let mut body = alert(name, 2, "manual", "http://127.0.0.1:9/none", None);
        body["notifications"] = json!([]);
        let (status, answer) = call(
            &api,
            "PUT",
            &format!("/api/v1/projects/fraud/alerts/{name}"),
            Some(body),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
    let listing = "/api/v1/projects/*/alerts";
    let poll = async |tag: Option<&str>| {
        let mut req = api_gateway_event("GET", listing, None);
        if let Some(tag) = tag {
            req.headers_mut()
                .insert("if-none-match", tag.parse().expect("a header value"));
        }
        let res = api.handle(req).await.expect("infallible");
        let tag = res
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (res.status().as_u16(), tag)
    };
    let (status, tag) = poll(None).await;
    assert_eq!(status, 200);
    counter.reset();
    let (status, again) = poll(Some(&tag)).await;
    assert_eq!((status, again.as_str()), (304, tag.as_str()));
    let ops: Vec<(String, u64)> = counter
        .snapshot()
        .into_iter()
        .map(|(op, c)| (op, c.requests))
        .collect();
    assert_eq!(
        ops,
        vec![("GetItem".to_owned(), 1)],
        "the catalog, nothing else"
    );
    for i in 0..2 {
        let (status, _) = call(
            &api,
            "POST",
            "/api/v1/projects/fraud/events/failed",
            Some(failure(&format!("job-{i}"))),
        )
        .await;
        assert_eq!(status, 200);
    }
    let (status, _) = poll(Some(&tag)).await;
    assert_eq!(status, 200, "a firing changes the listing");
}

/// The schedule is the AWS deployment's clock: an auto alert's cooldown ends with no event,
/// the scheduled run settles it and delivers its resolved notification from the outbox (not
/// through SNS, which would mail the firing again), once.
#[tokio::test]
async fn the_scheduled_run_settles_cooldowns_and_delivers_resolved_notifications() {
    let d = Deployment::new().await;
    let observer = d.observe_topic().await;
    let (receiver, hook) = Receiver::start().await;
    let env = d.env(false);
    let api = ApiHandler::new(&env, &clients(None)).expect("the API handler");
    let mut body = alert("cools", 1, "auto", &hook, Some("oncall@example.com"));
    body["cooldown_period"] = json!("15s");
    body["notifications"][0]["send_resolved"] = json!(true);
    body["notifications"][1]["send_resolved"] = json!(true);
    let (status, stored) = call(
        &api,
        "PUT",
        "/api/v1/projects/fraud/alerts/cools",
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{stored}");
    call(
        &api,
        "POST",
        "/api/v1/projects/fraud/events/failed",
        Some(failure("j")),
    )
    .await;
    let notifier = NotifierHandler::new(&env, &clients(None)).expect("notifier");
    let now = tocsin_core::model::Timestamp::now();
    let early = notifier.scheduled(now).await.expect("scheduled");
    assert_eq!(early["closed"], 0, "still cooling down: {early}");
    assert_eq!(drain(&observer).await.len(), 1, "the firing was published");
    let later = now.plus(tocsin_core::model::Span::from_secs(60));
    let run = notifier.scheduled(later).await.expect("scheduled");
    assert_eq!(
        (run["closed"].clone(), run["resolved"].clone()),
        (json!(1), json!(1)),
        "{run}"
    );
    let resolved: Vec<(String, String, Value)> = receiver
        .requests()
        .into_iter()
        .filter(|(_, _, b)| b["status"] == "resolved")
        .collect();
    assert_eq!(resolved.len(), 1, "{:?}", receiver.requests());
    let (path, key, body) = &resolved[0];
    assert_eq!(path, "/hook");
    assert!(key.ends_with(":hook:resolved"), "{key}");
    assert_eq!(body["resolution"], "its cooldown ended");
    // The resolved mail went to the topic's email subscriptions, saying RESOLVED; the
    // notifier's own subscription ignores that message (it delivered the rest itself).
    let published = drain(&observer).await;
    assert_eq!(published.len(), 1, "{published:?}");
    let envelope: Value = serde_json::from_str(&published[0].1).expect("SNS envelope");
    assert!(
        envelope["Subject"]
            .as_str()
            .is_some_and(|s| s.starts_with("RESOLVED [high] cools")),
        "{envelope}"
    );
    let message = envelope["Message"].as_str().expect("message").to_owned();
    let inner: Value = serde_json::from_str(&message).expect("message body");
    assert_eq!(inner["resolved"], true);
    let sns_event = json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": message}}]});
    let handled = notifier.handle(sns_event).await.expect("notify");
    assert_eq!(handled["delivered"], 0);
    let (_, activations) = call(
        &api,
        "GET",
        "/api/v1/projects/fraud/alert-activations",
        None,
    )
    .await;
    let mail: Vec<&Value> = activations["activations"][0]["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .filter(|d| d["notification"] == "mail" && d["resolved"] == true)
        .collect();
    assert_eq!(mail.len(), 1, "{activations}");
    assert_eq!(mail[0]["status"], "sent", "carried by the topic: {mail:?}");
    let again = notifier.scheduled(later).await.expect("scheduled");
    assert_eq!(
        (again["closed"].clone(), again["resolved"].clone()),
        (json!(0), json!(0)),
        "once: {again}"
    );
    let (_, alert) = call(&api, "GET", "/api/v1/projects/fraud/alerts/cools", None).await;
    assert_eq!(alert["state"], "inactive");
}

/// An absence alert on AWS: the schedule's run finds the job that never reported in the due
/// index, fires it once and publishes it; the job's first event closes it, and the next run
/// delivers the resolved webhook.
#[tokio::test]
async fn the_scheduled_run_fires_absences_and_their_return_resolves_them() {
    let d = Deployment::new().await;
    let observer = d.observe_topic().await;
    let (receiver, hook) = Receiver::start().await;
    let env = d.env(false);
    let api = ApiHandler::new(&env, &clients(None)).expect("the API handler");
    let mut body = alert("nightly", 1, "auto", &hook, None);
    body["entities"]["ids"] = json!(["train-nightly"]);
    body["criteria"] = json!({"absent": "1h"});
    body["notifications"][0]["send_resolved"] = json!(true);
    let (status, stored) = call(
        &api,
        "PUT",
        "/api/v1/projects/fraud/alerts/nightly",
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{stored}");
    let notifier = NotifierHandler::new(&env, &clients(None)).expect("notifier");
    let now = tocsin_core::model::Timestamp::now();
    let quiet = notifier.scheduled(now).await.expect("scheduled");
    assert_eq!(quiet["absences"], 0, "{quiet}");
    let later = now.plus(tocsin_core::model::Span::from_secs(3_601));
    let run = notifier.scheduled(later).await.expect("scheduled");
    assert_eq!(run["absences"], 1, "{run}");
    let again = notifier.scheduled(later).await.expect("scheduled");
    assert_eq!(again["absences"], 0, "once: {again}");
    let published = drain(&observer).await;
    assert_eq!(published.len(), 1, "{published:?}");
    let envelope: Value = serde_json::from_str(&published[0].1).expect("SNS envelope");
    let message: Value =
        serde_json::from_str(envelope["Message"].as_str().expect("message")).expect("body");
    assert_eq!(message["activation"]["entity_id"], "train-nightly");
    assert_eq!(message["activation"]["number_of_events"], 0);
    let (_, alert) = call(&api, "GET", "/api/v1/projects/fraud/alerts/nightly", None).await;
    assert_eq!(alert["state"], "active");

    let (status, _) = call(
        &api,
        "POST",
        "/api/v1/projects/fraud/events/failed",
        Some(json!({"kind": "failed",
            "entity": {"kind": "job", "project": "fraud", "ids": ["train-nightly"]},
            "value_dict": {}})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, alert) = call(&api, "GET", "/api/v1/projects/fraud/alerts/nightly", None).await;
    assert_eq!(alert["state"], "inactive", "the job reported: {alert}");
    notifier.scheduled(later).await.expect("scheduled");
    let resolved: Vec<Value> = receiver
        .requests()
        .into_iter()
        .filter(|(_, _, b)| b["status"] == "resolved")
        .map(|(_, _, b)| b)
        .collect();
    assert_eq!(resolved.len(), 1, "{:?}", receiver.requests());
    assert_eq!(resolved[0]["resolution"], "events came back");
}
