//! Router tests in process: status codes, bodies without a Content-Type, and the document.

use std::sync::{Arc, Mutex};

use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tocsin_core::store::{Fired, MemoryStore};
use tocsin_core::{AlertsSettings, Service};
use tower::ServiceExt;

use super::{AppState, OPENAPI, ROUTES, router};
use crate::notify::Dispatch;

#[derive(Default)]
struct Collect(Mutex<Vec<Fired>>);

impl Dispatch for Collect {
    fn dispatch(&self, fired: Fired) {
        self.0.lock().expect("lock").push(fired);
    }
}

fn app() -> (axum::Router, Arc<Collect>) {
    let collect = Arc::new(Collect::default());
    let service = Service::new(Arc::new(MemoryStore::new()), AlertsSettings::default());
    (
        router(
            AppState {
                service,
                dispatch: collect.clone(),
            },
            64 * 1024,
        ),
        collect,
    )
}

async fn call(
    app: &axum::Router,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    // No Content-Type header, as MLRun's client sends.
    let body = body
        .map(|b| Body::from(b.to_string()))
        .unwrap_or_else(Body::empty);
    let res = app
        .clone()
        .oneshot(
            Request::builder()
                .method(method)
                .uri(uri)
                .body(body)
                .expect("request"),
        )
        .await
        .expect("answer");
    let status = res.status();
    let bytes = to_bytes(res.into_body(), usize::MAX).await.expect("body");
    (
        status,
        if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("json answer")
        },
    )
}

fn alert() -> Value {
    json!({"project": "p", "name": "a", "severity": "low", "trigger": {"events": ["failed"]},
           "entities": {"kind": "job", "project": "p", "ids": ["*"]}, "criteria": {"count": 2, "period": "1h"}})
}

#[tokio::test]
async fn store_fire_and_dispatch_without_content_type() {
    let (app, collect) = app();
    let (status, stored) = call(
        &app,
        Method::PUT,
        "/api/v1/projects/p/alerts/a",
        Some(alert()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(
        (stored["id"].clone(), stored["state"].clone()),
        (json!(1), json!("inactive"))
    );
    let ev = json!({"entity": {"kind": "job", "project": "p", "ids": ["j1"]}});
    for _ in 0..2 {
        let (status, body) = call(
            &app,
            Method::POST,
            "/api/v1/projects/p/events/failed",
            Some(ev.clone()),
        )
        .await;
        assert_eq!((status, body), (StatusCode::OK, Value::Null));
    }
    assert_eq!(
        collect.0.lock().expect("lock").len(),
        1,
        "the activation went to the notifier"
    );
    let (_, got) = call(&app, Method::GET, "/api/v1/projects/p/alerts/a", None).await;
    assert_eq!(got["count"], 1);
    let (status, _) = call(&app, Method::DELETE, "/api/v1/projects/p/alerts/a", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn refusals_have_mlruns_codes_and_a_detail() {
    let (app, _) = app();
    let mut bad_name = alert();
    bad_name["name"] = json!("a b");
    let mut too_many = alert();
    too_many["criteria"] = json!({"count": 100});
    let cases = [
        (
            Method::PUT,
            "/api/v1/projects/p/alerts/b",
            Some(alert()),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PUT,
            "/api/v1/projects/p/alerts/a%20b",
            Some(bad_name),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PUT,
            "/api/v1/projects/p/alerts/a",
            Some(too_many),
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            Method::PUT,
            "/api/v1/projects/p/alerts/a",
            Some(json!({"severity": "low"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::PUT,
            "/api/v1/projects/p%00/alerts/a",
            Some(alert()),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/api/v1/projects/p/alerts/zzz",
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/api/v1/projects/p/alerts/zzz/reset",
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/api/v1/alert-templates/zzz",
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/api/v1/projects/p/alert-activations?page-token=00",
            None,
            StatusCode::NOT_FOUND,
        ),
    ];
    for (method, uri, body, want) in cases {
        let (status, answer) = call(&app, method, uri, body).await;
        assert_eq!(status, want, "{uri}: {answer}");
        assert!(
            answer["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{uri}: {answer}"
        );
    }
}

#[tokio::test]
async fn oversized_bodies_are_413_with_a_detail() {
    let (app, _) = app();
    let big = json!({"entity": {"kind": "job", "project": "p", "ids": ["j"]}, "value_dict": {"x": "y".repeat(100_000)}});
    let (status, answer) = call(
        &app,
        Method::POST,
        "/api/v1/projects/p/events/failed",
        Some(big),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        answer["detail"]
            .as_str()
            .is_some_and(|d| d.contains("body")),
        "{answer}"
    );
}

#[test]
fn the_openapi_document_covers_every_route() {
    let doc: Value = serde_json::from_str(OPENAPI).expect("valid JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    for (method, path) in ROUTES {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is not documented"
        );
    }
    let documented: usize = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|p| p.as_object().map_or(0, |m| m.len()))
        .sum();
    assert_eq!(
        documented,
        ROUTES.len(),
        "the document has routes the router lacks"
    );
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let (app, _) = app();
    for (method, path) in ROUTES {
        let uri = path
            .replace("{project}", "p")
            .replace("{name}", "JobFailed")
            .replace("{kind}", "failed")
            .replace("{id}", "1");
        let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("method");
        let (status, _) = call(&app, m, &uri, Some(json!({}))).await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert!(
            status != StatusCode::NOT_FOUND || uri.contains("/1") || uri.contains("JobFailed"),
            "{method} {uri}: {status}"
        );
    }
}
