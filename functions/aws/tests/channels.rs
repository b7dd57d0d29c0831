//! The on-call channels through the AWS deployment on moto: PagerDuty, Teams, Opsgenie and
//! Discord get the firing from the notifier as SNS invokes it, the acknowledgement and the
//! resolved notices from the scheduled sweep, through the same channel code as `tocsin serve`,
//! to a real HTTP listener; and the API function sends a test message.

mod common;

use serde_json::{Value, json};
use tocsin_aws::handlers::{ApiHandler, NotifierHandler};

use common::{Deployment, Receiver, api_gateway_event, clients, drain, read};

async fn call(api: &ApiHandler, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let response = api
        .handle(api_gateway_event(method, path, body.as_ref()))
        .await
        .expect("infallible");
    read(response).await
}

fn on_call_alert(at: &str) -> Value {
    let note = |kind: &str, name: &str, secret: Value, params: Value| {
        json!({"notification": {"kind": kind, "name": name, "secret_params": secret, "params": params},
            "send_resolved": true})
    };
    json!({
        "project": "fraud", "name": "train", "summary": "Job {{entity}} failed",
        "severity": "high", "reset_policy": "manual",
        "criteria": {"count": 1},
        "trigger": {"events": ["failed"]},
        "entities": {"kind": "job", "project": "fraud", "ids": ["*"]},
        "notifications": [
            note("pagerduty", "oncall", json!({"routing_key": "R0UT1NGKEY0123456789abcdef012345"}),
                json!({"endpoint": at})),
            note("teams", "channel", json!({"url": format!("{at}/workflows/abc")}), json!({})),
            note("opsgenie", "genie", json!({"api_key": "k3y"}), json!({"url": at})),
            note("discord", "chat", json!({"webhook": format!("{at}/api/webhooks/1/t")}), json!({})),
        ]
    })
}

/// The requests the receiver got, as (path, body), in arrival order.
fn got(receiver: &Receiver) -> Vec<(String, Value)> {
    receiver
        .requests()
        .into_iter()
        .map(|(path, _, body)| (path, body))
        .collect()
}

#[tokio::test]
async fn on_call_channels_get_the_firing_its_acknowledgement_and_its_resolution_on_aws() {
    let d = Deployment::new().await;
    let observer = d.observe_topic().await;
    let (receiver, at) = Receiver::start().await;
    let env = d.env(false);
    let api = ApiHandler::new(&env, &clients(None)).expect("the API handler");
    let notifier = NotifierHandler::new(&env, &clients(None)).expect("notifier");

    let (status, stored) = call(
        &api,
        "PUT",
        "/api/v1/projects/fraud/alerts/train",
        Some(on_call_alert(&at)),
    )
    .await;
    assert_eq!(status, 200, "{stored}");
    let event = json!({"kind": "failed", "entity": {"kind": "job", "project": "fraud", "ids": ["j1"]},
        "value_dict": {"error": "OOM"}});
    let (status, _) = call(
        &api,
        "POST",
        "/api/v1/projects/fraud/events/failed",
        Some(event),
    )
    .await;
    assert_eq!(status, 200);

    // The firing: published, then delivered by the notifier as SNS invokes it.
    let published = drain(&observer).await;
    assert_eq!(published.len(), 1, "{published:?}");
    let envelope: Value = serde_json::from_str(&published[0].1).expect("SNS envelope");
    let message = envelope["Message"].as_str().expect("message").to_owned();
    let sns = json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": message}}]});
    assert_eq!(notifier.handle(sns).await.expect("notify")["delivered"], 1);
    let firing = got(&receiver);
    let mut paths: Vec<&str> = firing.iter().map(|(p, _)| p.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "/api/webhooks/1/t",
            "/v2/alerts",
            "/v2/enqueue",
            "/workflows/abc"
        ]
    );
    let body_at = |requests: &[(String, Value)], path: &str| {
        requests
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .unwrap_or(Value::Null)
    };
    let trigger = body_at(&firing, "/v2/enqueue");
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["payload"]["severity"], "critical");
    let dedup_key = trigger["dedup_key"].as_str().expect("dedup key").to_owned();
    let create = body_at(&firing, "/v2/alerts");
    let alias = create["alias"].as_str().expect("alias").to_owned();
    assert_eq!(create["priority"], "P1");
    let card = body_at(&firing, "/workflows/abc");
    assert_eq!(
        card["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let discord = body_at(&firing, "/api/webhooks/1/t");
    assert_eq!(discord["content"], "[high] Job j1 failed");

    // An acknowledgement in Tocsin: the next scheduled run tells PagerDuty and Opsgenie.
    let (status, _) = call(
        &api,
        "POST",
        "/api/v1/projects/fraud/alerts/train/acknowledge",
        Some(json!({"by": "dana"})),
    )
    .await;
    assert_eq!(status, 200);
    let now = tocsin_core::model::Timestamp::now();
    let run = notifier.scheduled(now).await.expect("scheduled");
    assert_eq!(run["resolved"], 1, "{run}");
    let acknowledged: Vec<(String, Value)> = got(&receiver).split_off(4);
    let mut paths: Vec<&str> = acknowledged.iter().map(|(p, _)| p.as_str()).collect();
    paths.sort_unstable();
    let ack_path = format!("/v2/alerts/{alias}/acknowledge");
    assert_eq!(paths, [ack_path.as_str(), "/v2/enqueue"]);
    let ack = body_at(&acknowledged, "/v2/enqueue");
    assert_eq!(
        (ack["event_action"].as_str(), ack["dedup_key"].as_str()),
        (Some("acknowledge"), Some(dedup_key.as_str()))
    );
    assert!(drain(&observer).await.is_empty(), "nothing mailed again");

    // A reset: the next run sends the four resolved notices.
    let (status, _) = call(
        &api,
        "POST",
        "/api/v1/projects/fraud/alerts/train/reset",
        Some(json!({"by": "dana"})),
    )
    .await;
    assert_eq!(status, 200);
    let run = notifier.scheduled(now).await.expect("scheduled");
    assert_eq!(run["resolved"], 1, "{run}");
    let resolved: Vec<(String, Value)> = got(&receiver).split_off(6);
    assert_eq!(resolved.len(), 4, "{resolved:?}");
    let resolve = body_at(&resolved, "/v2/enqueue");
    assert_eq!(
        (
            resolve["event_action"].as_str(),
            resolve["dedup_key"].as_str()
        ),
        (Some("resolve"), Some(dedup_key.as_str()))
    );
    let close = format!("/v2/alerts/{alias}/close");
    assert!(
        body_at(&resolved, &close)["note"]
            .as_str()
            .is_some_and(|n| n.contains("reset by dana")),
        "{resolved:?}"
    );
    assert!(
        body_at(&resolved, "/api/webhooks/1/t")["content"]
            .as_str()
            .is_some_and(|c| c.starts_with("Resolved: "))
    );
    let (_, page) = call(
        &api,
        "GET",
        "/api/v1/projects/fraud/alert-activations",
        None,
    )
    .await;
    let deliveries = page["activations"][0]["deliveries"]
        .as_array()
        .expect("deliveries")
        .clone();
    assert_eq!(
        deliveries.len(),
        10,
        "4 firing, 2 acknowledged, 4 resolved: {page}"
    );
    assert!(
        deliveries.iter().all(|d| d["status"] == "sent"),
        "{deliveries:?}"
    );

    // A test message from the API function: sent now, nothing recorded.
    let (status, tested) = call(
        &api,
        "POST",
        "/api/v1/projects/fraud/alerts/train/notifications/test?notification=chat",
        None,
    )
    .await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!(
        tested["notifications"],
        json!([{"notification": "chat", "kind": "discord", "outcome": "sent", "status": 200, "said": "ok"}])
    );
    let last = got(&receiver).pop().expect("the test message");
    assert_eq!(last.0, "/api/webhooks/1/t");
    assert_eq!(last.1["content"], "[high] [test] Job * failed");
}
