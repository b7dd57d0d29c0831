//! Router tests in process: status codes, bodies without a Content-Type, and the document.

use std::sync::{Arc, Mutex};

use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tocsin_core::engine::Fired;
use tocsin_core::store::MemoryStore;
use tocsin_core::{AlertsSettings, Dispatch, Service};
use tower::ServiceExt;

use super::{AppState, ROUTES, RequestLimits, openapi_document, router};

#[derive(Default)]
struct Collect(Mutex<Vec<Fired>>);

impl Dispatch for Collect {
    fn dispatch(&self, fired: Fired) {
        self.0.lock().expect("lock").push(fired);
    }
}

fn app() -> (axum::Router, Arc<Collect>) {
    let collect = Arc::new(Collect::default());
    let service = Service::new(
        Arc::new(MemoryStore::new()),
        AlertsSettings::default(),
        collect.clone(),
    );
    (
        router(
            AppState {
                tokens: Some(Arc::new(MemoryStore::new())),
                ..AppState::open(service)
            },
            RequestLimits {
                max_body_bytes: 64 * 1024,
                ..RequestLimits::default()
            },
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
            .is_some_and(|d| d.contains("65536 bytes") && d.contains("`server.max_body_bytes`")),
        "{answer}"
    );
    // Refused on the declared length alone, before a byte of the body is read.
    let res = app
        .clone()
        .oneshot(
            Request::builder()
                .method(Method::POST)
                .uri("/api/v1/rules/check")
                .header("content-length", "10000000")
                .body(Body::from("{}"))
                .expect("request"),
        )
        .await
        .expect("answer");
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[test]
fn the_openapi_document_covers_every_route() {
    let doc: Value = serde_json::from_str(openapi_document()).expect("valid JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    for &super::Route { method, path, .. } in ROUTES {
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
    for &super::Route { method, path, .. } in ROUTES {
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

/// xorshift64*: a fixed, dependency-free source of mutations, so that failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Mutates a valid body: byte flips, deletions, insertions of JSON-significant bytes, and
/// splices of values of the wrong type. Every answer must be a 2xx or a 4xx with a `detail`.
#[tokio::test]
async fn mutated_bodies_never_cause_a_5xx() {
    let (app, _) = app();
    let rule = "project p\n\nalert r {\n  on failed\n  entity job \"train-*\"\n  where value.code >= 2 and not value.msg contains \"x\"\n  when count >= 2 within 1h per entity\n  severity high\n}\n";
    let seeds: [(&str, Value); 6] = [
        ("/api/v1/projects/p/alerts/a", alert()),
        (
            "/api/v1/projects/p/alerts/r/rule",
            json!({ "source": rule }),
        ),
        ("/api/v1/rules/check", json!({ "source": rule })),
        (
            "/api/v1/projects/p/alerts/a/acknowledge",
            json!({"by": "dana"}),
        ),
        (
            "/api/v1/projects/p/events/failed",
            json!({"kind": "failed", "entity": {"kind": "job", "project": "p", "ids": ["j1"]}, "value_dict": {"x": [1, 2.5, null]}, "id": "k"}),
        ),
        (
            "/api/v1/projects/p/alerts/n",
            json!({"project": "p", "name": "n", "severity": "high", "cooldown_period": "1m",
                   "trigger": {"events": ["data_drift_detected"]}, "criteria": {"count": 3, "period": "10m", "per_entity": true},
                   "entities": {"kind": "model-endpoint-result", "project": "p", "ids": ["*"]},
                   "notifications": [{"notification": {"kind": "slack", "name": "s", "secret_params": {"webhook": "http://127.0.0.1:9/x"}},
                                      "cooldown_period": "5m"}]}),
        ),
    ];
    let tokens: [&[u8]; 12] = [
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b":",
        b",",
        b"null",
        b"-1",
        b"1e999",
        b"\"\\ud800\"",
        b"18446744073709551616",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut answered = [0usize; 6];
    for round in 0..3000 {
        let (uri, seed) = &seeds[round % seeds.len()];
        let mut body = seed.to_string().into_bytes();
        for _ in 0..=rng.below(4) {
            let at = rng.below(body.len());
            match rng.below(3) {
                0 => body[at] = (rng.next() & 0xff) as u8,
                1 => {
                    let end = (at + rng.below(8)).min(body.len());
                    body.drain(at..end);
                }
                _ => {
                    let t = tokens[rng.below(tokens.len())];
                    body.splice(at..at, t.iter().copied());
                }
            }
        }
        let method =
            if uri.contains("/events/") || uri.ends_with("/check") || uri.ends_with("/acknowledge")
            {
                Method::POST
            } else {
                Method::PUT
            };
        let req = Request::builder()
            .method(method)
            .uri(*uri)
            .body(Body::from(body.clone()))
            .expect("request");
        let res = app.clone().oneshot(req).await.expect("answer");
        let status = res.status();
        let bytes = to_bytes(res.into_body(), usize::MAX).await.expect("body");
        assert!(
            status.as_u16() < 500,
            "{status} for {}",
            String::from_utf8_lossy(&body)
        );
        if !status.is_success() {
            let answer: Value = serde_json::from_slice(&bytes).expect("json error");
            assert!(
                answer["detail"].as_str().is_some_and(|d| !d.is_empty()),
                "{answer}"
            );
        }
        answered[(status.as_u16() / 100) as usize] += 1;
    }
    assert!(
        answered[2] > 0 && answered[4] > 0,
        "the mutations reach both outcomes: {answered:?}"
    );
}

#[tokio::test]
async fn the_alerts_page_is_served_whole_from_the_binary() {
    let (app, _) = app();
    for uri in ["/", "/alerts"] {
        let response = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .expect("ascii")
                .starts_with("default-src 'none'")
        );
    }
    let page = super::page::ALERTS_PAGE;
    // Nothing from elsewhere: no external scripts, styles, fonts or images.
    for needle in ["https://", " src=", "<link", "@import", "url("] {
        assert!(
            !page.contains(needle),
            "the page refers outside itself: {needle}"
        );
    }
    // It only calls documented endpoints.
    for call in [
        "/alerts/${enc(a.name)}/acknowledge",
        "/rules/check",
        "/alert-templates",
    ] {
        assert!(page.contains(call), "{call}");
    }
}

#[tokio::test]
async fn batches_are_checked_whole_then_evaluated_in_order() {
    let (app, collect) = app();
    call(
        &app,
        Method::PUT,
        "/api/v1/projects/p/alerts/a",
        Some(alert()),
    )
    .await;
    let event = |id: &str| json!({"kind": "failed", "entity": {"kind": "job", "project": "p", "ids": ["j"]}, "id": id});
    let (status, body) = call(
        &app,
        Method::POST,
        "/api/v1/projects/p/events",
        Some(json!({"events": [event("1"), event("2"), event("2")]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 3);
    let results = body["results"].as_array().expect("results");
    assert_eq!(
        results[0],
        json!({"counted": 1, "fired": [], "duplicate": false})
    );
    assert_eq!(
        results[1]["fired"].as_array().map(Vec::len),
        Some(1),
        "the second fires"
    );
    assert_eq!(results[2]["duplicate"], true, "the same id again");
    assert_eq!(collect.0.lock().expect("lock").len(), 1, "dispatched");

    // One bad event refuses the batch, named by its index; nothing is evaluated.
    let bad =
        json!({"events": [event("3"), {"entity": {"kind": "job", "project": "p", "ids": ["j"]}}]});
    let (status, body) = call(&app, Method::POST, "/api/v1/projects/p/events", Some(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["detail"], "events[1]: `kind` is required in a batch");
    let (_, a) = call(&app, Method::GET, "/api/v1/projects/p/alerts/a", None).await;
    assert_eq!(a["count"], 1, "event 3 was not counted");
    let (status, body) = call(
        &app,
        Method::POST,
        "/api/v1/projects/p/events",
        Some(json!({"events": []})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/v1/projects/p/events",
        Some(json!({"events": [event("4")], "extra": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn project_names_in_paths_are_parsed_once_for_every_route() {
    let (app, _) = app();
    for (method, uri) in [
        (Method::GET, "/api/v1/projects/no%20way/alerts"),
        (Method::GET, "/api/v1/projects/no%20way/alerts/a"),
        (Method::DELETE, "/api/v1/projects/no%20way/alerts/a"),
        (Method::POST, "/api/v1/projects/no%20way/alerts/a/reset"),
        (Method::GET, "/api/v1/projects/no%20way/alert-activations"),
        (Method::GET, "/api/v1/projects/no%20way/alert-activations/1"),
        (Method::POST, "/api/v1/projects/no%20way/events/failed"),
    ] {
        let (status, body) = call(&app, method.clone(), uri, Some(json!({}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {uri}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("Invalid project name `no way`")),
            "{method} {uri}: {body}"
        );
    }
    let (status, body) = call(&app, Method::GET, "/api/v1/projects/*/alerts", None).await;
    assert_eq!(status, StatusCode::OK, "`*` lists every project: {body}");
}

mod auth;

/// A listing answers with an ETag; asked again with it, 304 until something a reader would see
/// changed: a firing, an acknowledgement, a reset, a config change, or another reader.
#[tokio::test]
async fn an_unchanged_listing_is_not_modified_until_a_firing_or_an_edit() {
    let (app, _) = app();
    let get = async |uri: &str, tag: Option<&str>, mlrun: bool| {
        let mut req = Request::builder().method(Method::GET).uri(uri);
        if let Some(tag) = tag {
            req = req.header("If-None-Match", tag);
        }
        if mlrun {
            req = req.header("x-mlrun-client-version", "1.12.1");
        }
        let res = app
            .clone()
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        let status = res.status();
        let etag = res
            .headers()
            .get("ETag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = to_bytes(res.into_body(), usize::MAX).await.expect("body");
        (status, etag, bytes.len())
    };
    let mut manual = alert();
    manual["reset_policy"] = json!("manual");
    let (s, _) = call(
        &app,
        Method::PUT,
        "/api/v1/projects/p/alerts/a",
        Some(manual),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let all = "/api/v1/projects/*/alerts";
    let (s, tag, len) = get(all, None, false).await;
    assert_eq!(s, StatusCode::OK);
    assert!(tag.starts_with("W/\"") && len > 0, "{tag}");
    let (s, again, len) = get(all, Some(&tag), false).await;
    assert_eq!((s, len), (StatusCode::NOT_MODIFIED, 0));
    assert_eq!(again, tag, "the same tag comes back");
    // Another page, or MLRun's rendering, is another listing.
    let (s, _, _) = get("/api/v1/projects/p/alerts", Some(&tag), false).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = get(all, Some(&tag), true).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = get(all, Some("W/\"something else\""), false).await;
    assert_eq!(s, StatusCode::OK, "a tag this server did not issue");

    let event = json!({"kind": "failed", "entity": {"kind": "job", "project": "p", "ids": ["j"]}});
    let post = "/api/v1/projects/p/events/failed";
    let (s, body) = call(&app, Method::POST, post, Some(event.clone())).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, _, _) = get(all, Some(&tag), false).await;
    assert_eq!(
        s,
        StatusCode::NOT_MODIFIED,
        "counted, not fired: nothing listed changed"
    );
    let (s, body) = call(&app, Method::POST, post, Some(event)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, fired, _) = get(all, Some(&tag), false).await;
    assert_eq!(s, StatusCode::OK, "a firing changes the listing");
    assert_ne!(fired, tag);
    let (s, _, _) = get(all, Some(&fired), false).await;
    assert_eq!(s, StatusCode::NOT_MODIFIED);
    for (uri, body) in [
        (
            "/api/v1/projects/p/alerts/a/acknowledge",
            Some(json!({"by": "ann"})),
        ),
        ("/api/v1/projects/p/alerts/a/reset", None),
    ] {
        let (_, before, _) = get(all, None, false).await;
        let (s, answer) = call(&app, Method::POST, uri, body).await;
        assert!(s.is_success(), "{uri}: {answer}");
        let (s, _, _) = get(all, Some(&before), false).await;
        assert_eq!(s, StatusCode::OK, "{uri} changes the listing");
    }
    let (_, before, _) = get(all, None, false).await;
    let (s, _) = call(&app, Method::DELETE, "/api/v1/projects/p/alerts/a", None).await;
    assert!(s.is_success());
    let (s, _, _) = get(all, Some(&before), false).await;
    assert_eq!(s, StatusCode::OK, "a delete changes the listing");
}

/// Silences over HTTP: made (POST and PUT), listed by state, marking the alerts they hold
/// back (not for MLRun's client), holding back a firing's notifications, and expired.
#[tokio::test]
async fn silences_are_made_listed_marked_and_expired() {
    let (app, collect) = app();
    let mut a = alert();
    a["criteria"] = json!({"count": 1});
    a["notifications"] = json!([{"notification": {"kind": "webhook", "name": "hook",
        "secret_params": {"url": "http://127.0.0.1:9/h"}}}]);
    let (status, _) = call(&app, Method::PUT, "/api/v1/projects/p/alerts/a", Some(a)).await;
    assert_eq!(status, StatusCode::OK);
    let in_an_hour = tocsin_core::model::Timestamp::now()
        .plus(tocsin_core::model::Span::from_secs(3600))
        .to_string();
    let (status, made) = call(
        &app,
        Method::POST,
        "/api/v1/projects/p/silences",
        Some(
            json!({"matchers": {"alert": "a"}, "ends_at": in_an_hour, "comment": "deploy",
                     "created_by": "ann"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("s-") && id.len() == 18, "{id}");
    assert_eq!(
        (made["state"].clone(), made["created_by"].clone()),
        (json!("active"), json!("ann"))
    );

    let (status, refused) = call(
        &app,
        Method::PUT,
        "/api/v1/projects/p/silences/later",
        Some(json!({"comment": "no end"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.contains("forever")),
        "{refused}"
    );
    let (status, refused) = call(
        &app,
        Method::PUT,
        "/api/v1/projects/p/silences/later",
        Some(json!({"comment": "x", "ends_at": in_an_hour, "matchers": {"alrt": "a"}})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.contains("alrt")),
        "{refused}"
    );
    let weekly = json!({"schedule": {"days": ["sat"], "from": "02:00", "to": "04:00",
        "time_zone": "Europe/Berlin"}, "comment": "maintenance", "matchers": {"entity": "j9"}});
    let (status, stored) = call(
        &app,
        Method::PUT,
        "/api/v1/projects/p/silences/sat",
        Some(weekly.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");
    let (status, _) = call(
        &app,
        Method::PUT,
        "/api/v1/projects/p/silences/sat",
        Some(weekly),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "replaced");

    let (_, listed) = call(&app, Method::GET, "/api/v1/projects/p/silences", None).await;
    let ids: Vec<&str> = listed["silences"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 2, "{listed}");
    assert!(ids.contains(&"sat") && ids.contains(&id.as_str()));
    let (status, bad) = call(
        &app,
        Method::GET,
        "/api/v1/projects/p/silences?state=gone",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");

    // The alert is marked for Tocsin's clients; an entity-only silence marks nothing.
    let (_, alerts) = call(&app, Method::GET, "/api/v1/projects/p/alerts", None).await;
    assert_eq!(alerts["alerts"][0]["silenced"]["id"], json!(id), "{alerts}");
    let res = app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/api/v1/projects/p/alerts/a")
                .header("x-mlrun-client-version", "1.12.1")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answer");
    let bytes = to_bytes(res.into_body(), usize::MAX).await.expect("body");
    let for_mlrun: Value = serde_json::from_slice(&bytes).expect("json");
    assert!(for_mlrun.get("silenced").is_none(), "{for_mlrun}");

    let ev = json!({"entity": {"kind": "job", "project": "p", "ids": ["j1"]}});
    call(
        &app,
        Method::POST,
        "/api/v1/projects/p/events/failed",
        Some(ev.clone()),
    )
    .await;
    let fired = collect.0.lock().expect("lock").pop().expect("fired");
    let d = &fired.activation.deliveries[0];
    assert_eq!(d.status, tocsin_core::model::DeliveryStatus::Suppressed);
    assert!(
        d.error
            .as_deref()
            .is_some_and(|e| e.starts_with("silenced by ann: deploy"))
    );

    let (status, ended) = call(
        &app,
        Method::POST,
        &format!("/api/v1/projects/p/silences/{id}/expire"),
        None,
    )
    .await;
    assert_eq!(
        (status, ended["state"].clone()),
        (StatusCode::OK, json!("expired"))
    );
    let (_, expired) = call(
        &app,
        Method::GET,
        "/api/v1/projects/p/silences?state=expired",
        None,
    )
    .await;
    assert_eq!(expired["silences"][0]["id"], json!(id));
    let (_, alerts) = call(&app, Method::GET, "/api/v1/projects/p/alerts", None).await;
    assert!(alerts["alerts"][0].get("silenced").is_none(), "{alerts}");
    call(
        &app,
        Method::POST,
        "/api/v1/projects/p/events/failed",
        Some(ev),
    )
    .await;
    let fired = collect.0.lock().expect("lock").pop().expect("fired");
    assert_eq!(
        fired.activation.deliveries[0].status,
        tocsin_core::model::DeliveryStatus::Pending
    );
    let (status, missing) = call(&app, Method::GET, "/api/v1/projects/p/silences/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
}

/// MLRun's client never sees `send_resolved`, and storing back what it read keeps it.
#[tokio::test]
async fn send_resolved_is_hidden_from_mlruns_client_and_kept_through_it() {
    let (app, _) = app();
    let mut a = alert();
    a["notifications"] = json!([{"notification": {"kind": "webhook", "name": "hook",
        "secret_params": {"url": "http://127.0.0.1:9/h"}}, "send_resolved": true}]);
    let (status, stored) = call(&app, Method::PUT, "/api/v1/projects/p/alerts/a", Some(a)).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["notifications"][0]["send_resolved"], json!(true));
    let as_mlrun = |method: Method, body: Option<Value>| {
        let app = app.clone();
        async move {
            let res = app
                .oneshot(
                    Request::builder()
                        .method(method)
                        .uri("/api/v1/projects/p/alerts/a")
                        .header("x-mlrun-client-version", "1.12.1")
                        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
                        .expect("request"),
                )
                .await
                .expect("answer");
            let bytes = to_bytes(res.into_body(), usize::MAX).await.expect("body");
            serde_json::from_slice::<Value>(&bytes).expect("json")
        }
    };
    let read = as_mlrun(Method::GET, None).await;
    assert!(
        read["notifications"][0].get("send_resolved").is_none(),
        "{read}"
    );
    let back = as_mlrun(Method::PUT, Some(read)).await;
    assert!(
        back["notifications"][0].get("send_resolved").is_none(),
        "{back}"
    );
    let (_, after) = call(&app, Method::GET, "/api/v1/projects/p/alerts/a", None).await;
    assert_eq!(
        after["notifications"][0]["send_resolved"],
        json!(true),
        "{after}"
    );
}

/// The body of an NDJSON answer, one value a line.
async fn call_ndjson(app: &axum::Router, uri: &str) -> (StatusCode, String, Vec<Value>) {
    let res = app
        .clone()
        .oneshot(
            Request::builder()
                .uri(uri)
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answer");
    let status = res.status();
    let kind = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = to_bytes(res.into_body(), usize::MAX).await.expect("body");
    let lines = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("a JSON line"))
        .collect();
    (status, kind, lines)
}

#[tokio::test]
async fn explain_events_export_and_backtest_over_http() {
    let (app, _) = app();
    call(
        &app,
        Method::PUT,
        "/api/v1/projects/p/alerts/a",
        Some(alert()),
    )
    .await;
    let ev = |id: &str| json!({"entity": {"kind": "job", "project": "p", "ids": [id]}});
    for id in ["j1", "j2", "j1"] {
        call(
            &app,
            Method::POST,
            "/api/v1/projects/p/events/failed",
            Some(ev(id)),
        )
        .await;
    }

    // Explain: an event now, by entity; the alert fired on the second event and resets by
    // itself (auto, no cooldown), so one more counts.
    let (status, body) = call(
        &app,
        Method::POST,
        "/api/v1/projects/p/alerts/a/explain",
        Some(json!({"entity": "j3"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let e = &body["explanations"][0];
    assert_eq!(e["verdict"]["outcome"], "fires", "{e}");
    assert_eq!(e["clauses"][0]["clause"], "kind");
    assert!(
        e["text"].as_str().is_some_and(|t| t.contains("✓ entity")),
        "{e}"
    );
    // The last recorded events about j1, each on the state rebuilt from the record.
    let (status, body) = call(
        &app,
        Method::POST,
        "/api/v1/projects/p/alerts/a/explain",
        Some(json!({"entity": "j1", "last": 2, "since": "1h"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let outcomes: Vec<&Value> = body["explanations"]
        .as_array()
        .expect("explanations")
        .iter()
        .map(|e| &e["verdict"]["outcome"])
        .collect();
    assert_eq!(outcomes, [&json!("counted"), &json!("counted")], "{body}");
    for (bad, why) in [
        (json!({}), "Say which event"),
        (json!({"entity": "j1", "event": ev("j1")}), "not both"),
        (json!({"entity": "j1", "last": 0}), "`last` is 1 to"),
        (json!({"entity": "j1", "color": "red"}), "unknown field"),
    ] {
        let (status, answer) = call(
            &app,
            Method::POST,
            "/api/v1/projects/p/alerts/a/explain",
            Some(bad.clone()),
        )
        .await;
        assert!(status.is_client_error(), "{bad}: {status}");
        assert!(
            answer["detail"].as_str().is_some_and(|d| d.contains(why)),
            "{bad}: {answer}"
        );
    }
    let (status, _) = call(
        &app,
        Method::POST,
        "/api/v1/projects/p/alerts/nope/explain",
        Some(json!({"entity": "j1"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The recorded events, as NDJSON, paged by cursor.
    let (status, kind, lines) = call_ndjson(&app, "/api/v1/projects/p/events?limit=2").await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::OK, "application/x-ndjson")
    );
    let ids: Vec<&Value> = lines.iter().map(|l| &l["entity_id"]).collect();
    assert_eq!(ids, [&json!("j1"), &json!("j2")]);
    let after = lines[1]["cursor"].as_str().expect("cursor");
    let (_, _, rest) = call_ndjson(
        &app,
        &format!("/api/v1/projects/p/events?limit=2&after={after}"),
    )
    .await;
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["entity_id"], "j1");

    // A backtest of rule text over them, beside the stored alert.
    let source = "project p\nalert a {\n  on failed\n  entity job \"*\"\n  severity low\n  when count >= 4 within 1h\n}\n";
    let (status, body) = call(
        &app,
        Method::POST,
        "/api/v1/projects/p/backtest",
        Some(json!({"source": source, "since": "1h"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let a = &body["report"]["alerts"][0];
    assert_eq!(
        (a["would"]["fired"].clone(), a["did"]["fired"].clone()),
        (json!(0), json!(1)),
        "{a}"
    );
    assert!(
        body["text"]
            .as_str()
            .is_some_and(|t| t.contains("a: would fire 0 time(s); the stored alert fired 1")),
        "{body}"
    );
    let (status, body) = call(
        &app,
        Method::POST,
        "/api/v1/projects/p/backtest",
        Some(json!({"source": "project p\nalert a { on nope }"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["diagnostics"][0]["code"].is_string(), "{body}");
}

#[test]
fn the_served_documents_notification_kinds_are_the_registered_channels() {
    let doc: Value = serde_json::from_str(openapi_document()).expect("valid JSON");
    let listed: Vec<&str> =
        doc["components"]["schemas"]["Notification"]["properties"]["kind"]["enum"]
            .as_array()
            .expect("an enum")
            .iter()
            .filter_map(Value::as_str)
            .collect();
    let registered: Vec<&str> = tocsin_core::model::NotificationKind::ALL
        .iter()
        .map(|k| k.wire_name())
        .collect();
    assert_eq!(listed, registered);
}
