//! The HTTP API: MLRun's alerts REST API under `/api/v1`, as one axum router that both
//! `tocsin serve` and the API Lambda run.
//!
//! MLRun's client sends JSON bodies without a `Content-Type` header, so bodies are read as bytes
//! and decoded here: malformed JSON is a 400, JSON of the wrong shape a 422, each with a
//! `detail` saying what is wrong. Nothing a client sends can make a handler panic.

mod access;
mod activations;
mod alerts;
mod audit;
mod backtest;
mod body;
mod error;
mod events;
mod explain;
mod history;
mod limits;
mod listing_tag;
mod operate;
mod page;
mod params;
mod path;
mod rule_text;
mod silences;
mod state;
mod templates;
mod tokens;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

pub use access::{
    Access, AuditNote, Authenticate, Open, ROUTES, Route, RouteScope, Tokens, credential,
};
pub use body::JsonBody;
pub use error::ApiError;
pub use limits::RequestLimits;
pub use operate::Operations;
pub use path::ApiPath;
pub use state::{AppState, EventQueue};

/// The MLRun version whose client this API is checked against; answered by `client-spec`.
pub const MLRUN_COMPAT_VERSION: &str = "1.12.1";

/// The OpenAPI document of everything this router serves, as written.
const OPENAPI_SOURCE: &str = include_str!("openapi.json");

/// The OpenAPI document as served: the written one, with the notification kinds filled in from
/// the registry of channels (adding a channel is its file and its registration line).
pub fn openapi_document() -> &'static str {
    static DOCUMENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(OPENAPI_SOURCE) else {
            return OPENAPI_SOURCE.to_owned();
        };
        let kinds: Vec<&str> = tocsin_core::model::NotificationKind::ALL
            .iter()
            .map(|k| k.wire_name())
            .collect();
        if let Some(kind) = doc
            .pointer_mut("/components/schemas/Notification/properties/kind")
            .and_then(serde_json::Value::as_object_mut)
        {
            kind.insert("enum".into(), json!(kinds));
        }
        doc.to_string()
    });
    &DOCUMENT
}

/// The API router: every route behind [`access::guard`] (who may call it) and
/// [`limits::read_body`] (how much of a body, for how long).
pub fn router(state: AppState, limits: RequestLimits) -> Router {
    // Every request clones the state for each extractor and layer: one reference count.
    let state = Arc::new(state);
    let api = Router::new()
        .route("/api/v1/client-spec", get(client_spec))
        .route("/api/v1/auth/whoami", get(tokens::whoami))
        .route("/api/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/api/v1/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/api/v1/projects/{project}/audit", get(audit::list))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/healthz", get(healthz))
        .route("/metrics", get(operate::metrics))
        .route("/-/healthy", get(operate::healthy))
        .route("/-/ready", get(operate::ready))
        .route("/-/reload", post(operate::reload))
        .route("/-/backup", get(operate::backup))
        .route("/api/v1/alert-templates", get(templates::list))
        .route(
            "/api/v1/alert-templates/{name}",
            get(templates::get).delete(templates::delete),
        )
        .route("/api/v1/projects/{project}/alerts", get(alerts::list))
        .route(
            "/api/v1/projects/{project}/alerts/{name}",
            get(alerts::get).put(alerts::store).delete(alerts::delete),
        )
        .route(
            "/api/v1/projects/{project}/alerts/{name}/reset",
            post(alerts::reset),
        )
        .route(
            "/api/v1/projects/{project}/alerts/{name}/preview",
            post(alerts::preview),
        )
        .route(
            "/api/v1/projects/{project}/alerts/{name}/notifications/test",
            post(alerts::test_notifications),
        )
        .route(
            "/api/v1/projects/{project}/alerts/{name}/acknowledge",
            post(alerts::acknowledge),
        )
        .route(
            "/api/v1/projects/{project}/alerts/{name}/explain",
            post(explain::explain),
        )
        .route(
            "/api/v1/projects/{project}/alerts/{name}/rule",
            get(rule_text::get).put(rule_text::put),
        )
        .route("/api/v1/rules/check", post(rule_text::check))
        .route(
            "/api/v1/projects/{project}/backtest",
            post(backtest::backtest),
        )
        .route(
            "/api/v1/projects/{project}/alerts/{name}/activations",
            get(activations::list_for_alert),
        )
        .route(
            "/api/v1/projects/{project}/silences",
            get(silences::list).post(silences::create),
        )
        .route(
            "/api/v1/projects/{project}/silences/{id}",
            get(silences::get).put(silences::put),
        )
        .route(
            "/api/v1/projects/{project}/silences/{id}/expire",
            post(silences::expire),
        )
        .route(
            "/api/v1/projects/{project}/events/{kind}",
            post(events::post),
        )
        .route(
            "/api/v1/projects/{project}/events",
            post(events::post_batch).get(history::export),
        )
        .route(
            "/api/v1/projects/{project}/alert-activations",
            get(activations::list),
        )
        .route(
            "/api/v1/projects/{project}/alert-activations/{id}",
            get(activations::get),
        )
        .method_not_allowed_fallback(method_not_allowed)
        // Route layers run last-added first: who is asking, then the body, then the handler.
        .route_layer(from_fn_with_state(limits, limits::read_body))
        .route_layer(from_fn_with_state(state.clone(), access::guard));
    // The API's routes carry their `/api/v1` prefix rather than sit in a nested router: a
    // nested router rewrites every request's URI to strip it.
    api.route("/", get(page::index))
        .route("/alerts", get(page::index))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .with_state(state)
}

async fn client_spec() -> Json<serde_json::Value> {
    Json(json!({
        "version": MLRUN_COMPAT_VERSION,
        "server": "tocsin",
        "tocsin_version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        openapi_document(),
    )
        .into_response()
}

/// Serving, and the store answers (a store that stopped after a failed commit makes this 503).
async fn healthz(
    axum::extract::State(s): axum::extract::State<Arc<AppState>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let alerts = s.service.store().alert_count().await?;
    Ok(Json(json!({"status": "ok", "alerts": alerts})))
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "Not found: no such endpoint (see /api/v1/openapi.json)",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed on this endpoint (see /api/v1/openapi.json)",
    )
}

#[cfg(test)]
mod tests;
