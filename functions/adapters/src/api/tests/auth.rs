//! Auth through the router: who may call what, what 401 and 403 say, the audit list, tokens
//! managed through the API, and mutated credentials.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tocsin_core::auth::{ISSUE_RANDOM_BYTES, Principal, Role, TokenRecord, TokenRequest};
use tocsin_core::model::Timestamp;
use tocsin_core::store::{MemoryStore, TokenStore};
use tocsin_core::{AlertsSettings, Service};
use tower::ServiceExt;

use super::{Collect, Rng, alert};
use crate::api::{AppState, RequestLimits, router};

struct Secured {
    app: axum::Router,
    tokens: Arc<MemoryStore>,
    seed: u8,
}

fn secured() -> Secured {
    let service = Service::new(
        Arc::new(MemoryStore::new()),
        AlertsSettings::default(),
        Arc::new(Collect::default()),
    );
    let tokens = Arc::new(MemoryStore::new());
    let app = router(
        AppState::open(service).with_tokens(tokens.clone()),
        RequestLimits::default(),
    );
    Secured {
        app,
        tokens,
        seed: 0,
    }
}

impl Secured {
    /// A token of `role` on `projects`, named `name`, put straight into the store.
    async fn token(&mut self, role: Role, projects: &str, name: &str) -> String {
        self.seed += 1;
        let issued = TokenRecord::issue(
            TokenRequest {
                name: Some(name.to_owned()),
                role,
                projects: projects.to_owned(),
                expires_in: None,
            },
            &Principal::anonymous(),
            &[self.seed; ISSUE_RANDOM_BYTES],
            Timestamp::now(),
        )
        .expect("issued");
        self.tokens.put_token(issued.record).await.expect("stored");
        issued.token
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let res = self
            .app
            .clone()
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("answer");
        let (status, headers) = (res.status(), res.headers().clone());
        let bytes = to_bytes(res.into_body(), usize::MAX).await.expect("body");
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("json")
        };
        (status, headers, value)
    }

    async fn as_(
        &self,
        token: &str,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, _, value) = self
            .call(method, uri, Some(&format!("Bearer {token}")), body)
            .await;
        (status, value)
    }
}

fn detail(v: &Value) -> &str {
    v["detail"].as_str().unwrap_or_default()
}

fn failed_event(project: &str) -> Value {
    json!({"kind": "failed", "entity": {"kind": "job", "project": project, "ids": ["j1"]}})
}

#[tokio::test]
async fn without_a_token_only_the_open_routes_answer() {
    let s = secured();
    for open in [
        "/api/v1/client-spec",
        "/api/v1/healthz",
        "/api/v1/openapi.json",
    ] {
        let (status, _, _) = s.call(Method::GET, open, None, None).await;
        assert_eq!(status, StatusCode::OK, "{open}");
    }
    let (status, headers, body) = s
        .call(Method::GET, "/api/v1/projects/p/alerts", None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer realm=\"tocsin\"");
    assert!(detail(&body).contains("tocsin token create"), "{body}");
    assert!(detail(&body).contains("`viewer` role"), "{body}");
    for bad in [
        "Bearer tcn_000000000000_00",
        "Bearer nonsense",
        "Basic !!",
        "Digest x",
    ] {
        let (status, _, body) = s
            .call(
                Method::POST,
                "/api/v1/projects/p/events/failed",
                Some(bad),
                Some(failed_event("p")),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}");
        assert!(detail(&body).contains("`producer` role"), "{body}");
    }
    // The Alerts page itself is served: it asks for a token.
    let (status, _, _) = s.call(Method::GET, "/api/v1/auth/whoami", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn each_role_does_what_it_allows_and_a_403_names_the_role_needed() {
    let mut s = secured();
    let editor = s.token(Role::Editor, "p", "ed").await;
    let viewer = s.token(Role::Viewer, "p", "vi").await;
    let producer = s.token(Role::Producer, "p", "pipeline").await;
    let responder = s.token(Role::Responder, "p", "oncall").await;
    let alert_uri = "/api/v1/projects/p/alerts/a";

    let mut manual = alert();
    manual["reset_policy"] = json!("manual");
    let (status, body) = s.as_(&editor, Method::PUT, alert_uri, Some(manual)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = s.as_(&viewer, Method::GET, alert_uri, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = s
        .as_(
            &viewer,
            Method::POST,
            "/api/v1/projects/p/alerts/a/reset",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        detail(&body).contains("`responder` role (or a role above it)"),
        "{body}"
    );
    assert!(detail(&body).contains("viewer on `p`"), "{body}");
    let (status, _) = s
        .as_(
            &viewer,
            Method::POST,
            "/api/v1/projects/p/events/failed",
            Some(failed_event("p")),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a viewer posts no events");

    for _ in 0..2 {
        let (status, body) = s
            .as_(
                &producer,
                Method::POST,
                "/api/v1/projects/p/events/failed",
                Some(failed_event("p")),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = s.as_(&producer, Method::GET, alert_uri, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a producer reads nothing");
    assert!(detail(&body).contains("`viewer` role"), "{body}");

    // The alert fired; the responder acknowledges with no body: the token's name is recorded.
    let (status, body) = s
        .as_(
            &responder,
            Method::POST,
            "/api/v1/projects/p/alerts/a/acknowledge",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["acknowledged"]["by"], "oncall", "{body}");
    // A `by` in the body does not let a token speak for someone else.
    let (_, body) = s
        .as_(
            &responder,
            Method::POST,
            "/api/v1/projects/p/alerts/a/acknowledge",
            Some(json!({"by": "boss"})),
        )
        .await;
    assert_ne!(body["acknowledged"]["by"], "boss", "{body}");
    let (status, _) = s
        .as_(
            &responder,
            Method::POST,
            "/api/v1/projects/p/alerts/a/reset",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = s.as_(&responder, Method::DELETE, alert_uri, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(detail(&body).contains("`editor` role"), "{body}");
    let (status, body) = s
        .as_(
            &editor,
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"role": "viewer", "projects": "p"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(detail(&body).contains("`admin` role"), "{body}");
    let (status, body) = s
        .as_(
            &editor,
            Method::DELETE,
            "/api/v1/alert-templates/JobFailed",
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "templates belong to every project: {body}"
    );
    let (status, _) = s.as_(&editor, Method::DELETE, alert_uri, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_token_for_some_projects_sees_only_those() {
    let mut s = secured();
    let admin = s.token(Role::Admin, "*", "root").await;
    let fraud = s.token(Role::Viewer, "fraud-*", "fraud-team").await;
    for project in ["fraud-eu", "churn"] {
        let mut a = alert();
        a["project"] = json!(project);
        a["entities"]["project"] = json!(project);
        a["criteria"]["count"] = json!(1);
        let uri = format!("/api/v1/projects/{project}/alerts/a");
        let (status, body) = s.as_(&admin, Method::PUT, &uri, Some(a)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, _) = s
            .as_(
                &admin,
                Method::POST,
                &format!("/api/v1/projects/{project}/events/failed"),
                Some(failed_event(project)),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, body) = s
        .as_(&fraud, Method::GET, "/api/v1/projects/*/alerts", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let projects: Vec<&str> = body["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter_map(|a| a["project"].as_str())
        .collect();
    assert_eq!(projects, ["fraud-eu"]);
    let (_, body) = s
        .as_(
            &fraud,
            Method::GET,
            "/api/v1/projects/*/alert-activations?page-size=1",
            None,
        )
        .await;
    let listed: Vec<&str> = body["activations"]
        .as_array()
        .expect("activations")
        .iter()
        .filter_map(|a| a["project"].as_str())
        .collect();
    assert_eq!(listed, ["fraud-eu"]);
    assert!(
        body["pagination"]["page-token"].is_null(),
        "one page only: {body}"
    );
    let (_, all) = s
        .as_(
            &admin,
            Method::GET,
            "/api/v1/projects/*/alert-activations",
            None,
        )
        .await;
    assert_eq!(all["activations"].as_array().map(Vec::len), Some(2));
    let (status, _) = s
        .as_(&fraud, Method::GET, "/api/v1/projects/churn/alerts/a", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_audit_list_records_who_did_what() {
    let mut s = secured();
    let editor = s.token(Role::Editor, "*", "ci-deploy").await;
    let responder = s.token(Role::Responder, "p", "dana").await;
    let admin = s.token(Role::Admin, "*", "root").await;
    s.as_(
        &editor,
        Method::PUT,
        "/api/v1/projects/p/alerts/a",
        Some(alert()),
    )
    .await;
    s.as_(
        &responder,
        Method::POST,
        "/api/v1/projects/p/alerts/a/reset",
        None,
    )
    .await;
    // A refused change is not recorded.
    s.as_(
        &responder,
        Method::DELETE,
        "/api/v1/projects/p/alerts/a",
        None,
    )
    .await;
    s.as_(&editor, Method::DELETE, "/api/v1/projects/p/alerts/a", None)
        .await;
    let (status, made) = s
        .as_(
            &admin,
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"role": "viewer", "projects": "p", "name": "dash"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let (status, body) = s
        .as_(&responder, Method::GET, "/api/v1/projects/p/audit", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let entries: Vec<(String, String, String)> = body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            let f = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (f("action"), f("target"), f("by"))
        })
        .collect();
    let id = made["id"].as_str().expect("id").to_owned();
    let expected = [
        ("token.create", id.as_str(), "root"),
        ("alert.delete", "a", "ci-deploy"),
        ("alert.reset", "a", "dana"),
        ("alert.store", "a", "ci-deploy"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, t, b)| (a.to_string(), t.to_string(), b.to_string()))
        .collect();
    assert_eq!(entries, expected);
}

#[tokio::test]
async fn tokens_are_issued_listed_and_revoked_through_the_api() {
    let mut s = secured();
    let admin = s.token(Role::Admin, "fraud-*", "fraud-admin").await;
    let (status, body) = s
        .as_(
            &admin,
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"role": "responder", "projects": "*"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "beyond its projects: {body}");
    let (status, made) = s
        .as_(&admin, Method::POST, "/api/v1/tokens", Some(json!({"role": "responder", "projects": "fraud-eu", "name": "eu-oncall", "expires_in": "90d"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let token = made["token"].as_str().expect("token").to_owned();
    assert!(!token.contains('-'));
    assert!(made["expires"].is_string());
    let (status, who) = s
        .as_(&token, Method::GET, "/api/v1/auth/whoami", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(who["name"], "eu-oncall");
    assert_eq!(
        who["grants"],
        json!([{"role": "responder", "projects": "fraud-eu"}])
    );
    assert_eq!(who["auth"], true);

    let (_, listed) = s.as_(&admin, Method::GET, "/api/v1/tokens", None).await;
    let text = listed.to_string();
    assert!(
        text.contains("eu-oncall") && !text.contains("secret") && !text.contains(&token[17..]),
        "{text}"
    );

    let id = made["id"].as_str().expect("id");
    let (status, _) = s
        .as_(
            &admin,
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s
        .as_(&token, Method::GET, "/api/v1/auth/whoami", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked at once");
    let (status, _) = s
        .as_(
            &admin,
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // An expired token is refused.
    let mut old = s.tokens.tokens().await.expect("tokens").remove(0);
    let again = s.token(Role::Viewer, "p", "old").await;
    let (id, _) = tocsin_core::auth::parse_token(&again).expect("parses");
    old = s.tokens.token(id).await.expect("read").unwrap_or(old);
    old.expires = Some(Timestamp(0));
    s.tokens.put_token(old).await.expect("stored");
    let (status, body) = s
        .as_(&again, Method::GET, "/api/v1/auth/whoami", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(detail(&body).contains("expired"), "{body}");
}

#[tokio::test]
async fn basic_auth_and_mlruns_session_cookie_carry_the_token_too() {
    let mut s = secured();
    let token = s.token(Role::Viewer, "*", "mlrun").await;
    let basic = format!("Basic {}", base64(&format!("user:{token}")));
    let (status, _, _) = s
        .call(Method::GET, "/api/v1/projects/p/alerts", Some(&basic), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let cookie = format!("session=j%3A%7B%22sid%22%3A%20%22{token}%22%7D");
    let res = s
        .app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/api/v1/projects/p/alerts")
                .header(header::COOKIE, cookie)
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answer");
    assert_eq!(res.status(), StatusCode::OK);
}

fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Mutated credentials on every kind of route: never a 5xx, never a 2xx on a protected route
/// unless the credential is still the valid token, and every refusal has a `detail`.
#[tokio::test]
async fn mutated_credentials_never_cause_a_5xx_or_let_anyone_in() {
    let mut s = secured();
    let token = s.token(Role::Admin, "*", "root").await;
    let uris = [
        (Method::GET, "/api/v1/projects/p/alerts", None),
        (Method::GET, "/api/v1/tokens", None),
        (
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"role": "viewer", "projects": "p"})),
        ),
        (Method::DELETE, "/api/v1/tokens/abc", None),
        (Method::GET, "/api/v1/auth/whoami", None),
        (
            Method::POST,
            "/api/v1/projects/p/events/failed",
            Some(failed_event("p")),
        ),
    ];
    let forms = [
        format!("Bearer {token}"),
        format!("Basic {}", base64(&format!("u:{token}"))),
        format!("bearer {token}"),
    ];
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let (mut admitted, mut refused) = (0, 0);
    for round in 0..2000 {
        let (method, uri, body) = &uris[round % uris.len()];
        let mut cred = forms[rng.below(forms.len())].clone().into_bytes();
        for _ in 0..rng.below(4) {
            let at = rng.below(cred.len());
            match rng.below(3) {
                0 => cred[at] = (rng.next() & 0x7f) as u8,
                1 => {
                    let end = (at + rng.below(6)).min(cred.len());
                    cred.drain(at..end);
                }
                _ => cred.insert(at, b"_-:= \"{"[rng.below(7)]),
            }
        }
        let Ok(value) = axum::http::HeaderValue::from_bytes(&cred) else {
            continue; // Not a header hyper would have let through.
        };
        let still_valid = tocsin_adapters_credential(&value).as_deref() == Some(token.as_str());
        let mut req = Request::builder()
            .method(method.clone())
            .uri(*uri)
            .header(header::AUTHORIZATION, value);
        if round % 5 == 0 {
            req = req.header(
                header::COOKIE,
                String::from_utf8_lossy(&cred).replace(['\r', '\n'], ""),
            );
        }
        let body = body
            .as_ref()
            .map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let res = s
            .app
            .clone()
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("answer");
        let status = res.status();
        let bytes = to_bytes(res.into_body(), usize::MAX).await.expect("body");
        assert!(
            status.as_u16() < 500,
            "{status} for {}",
            String::from_utf8_lossy(&cred)
        );
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            let v: Value = serde_json::from_slice(&bytes).expect("json");
            assert!(!detail(&v).is_empty());
            refused += 1;
        } else {
            assert!(
                still_valid,
                "{status} for a credential that is not the token: {}",
                String::from_utf8_lossy(&cred)
            );
            admitted += 1;
        }
    }
    assert!(
        admitted > 0 && refused > 0,
        "{admitted} admitted, {refused} refused"
    );
}

fn tocsin_adapters_credential(value: &axum::http::HeaderValue) -> Option<String> {
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, value.clone());
    crate::api::credential(&h)
}
