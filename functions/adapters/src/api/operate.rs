//! The routes an operator's tools call, spelled as Prometheus's and Alertmanager's are:
//! `GET /metrics` (the exposition), `GET /-/healthy` (the process answers: liveness),
//! `GET /-/ready` (it can take events: readiness), `POST /-/reload` (re-read the rule files
//! and apply what changed) and `GET /-/backup` (a consistent copy of the store). The host supplies what is its own through [`Operations`]; a host
//! without one (the API Lambda, where CloudWatch and API Gateway do this) answers 501 for
//! `/metrics`, `/-/reload` and `/-/backup`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ApiError, AppState};

/// What a host offers its operators beyond the API.
#[async_trait::async_trait]
pub trait Operations: Send + Sync {
    /// The metrics in Prometheus's text format, gauges read from the store now.
    async fn metrics(&self) -> String;
    /// Why the host cannot take events now (a full disk, say), or None when it can. The store
    /// answering is checked by the route itself.
    async fn not_ready(&self) -> Option<String>;
    /// Re-reads the host's rule files and applies what changed: what was done, or why nothing
    /// was (a file that does not check changes nothing).
    async fn reload(&self) -> Result<Value, String>;
    /// A consistent copy of the store as of now, streamed (NDJSON), taken without stopping
    /// ingest.
    async fn backup(&self) -> Result<axum::body::Body, String>;
}

fn operations(s: &AppState) -> Result<&Arc<dyn Operations>, ApiError> {
    s.operations.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "This host serves no metrics and has no rule files to reload (see the README, \"Running it in production\")",
        )
    })
}

/// `GET /metrics`.
pub async fn metrics(State(s): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let text = operations(&s)?.metrics().await;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// `GET /-/healthy`: the process serves requests. Restarting it would not help anything else.
pub async fn healthy() -> Json<Value> {
    Json(json!({"status": "healthy"}))
}

/// `GET /-/ready`: 200 once the store was recovered and the rule files stored (the server only
/// listens after both), and while the store answers and the host has room; 503 with why
/// otherwise, so that a load balancer sends events elsewhere.
pub async fn ready(State(s): State<Arc<AppState>>) -> Response {
    let why = match s.service.store().alert_count().await {
        Err(e) => Some(format!("the store does not answer: {e}")),
        Ok(_) => match &s.operations {
            Some(ops) => ops.not_ready().await,
            None => None,
        },
    };
    match why {
        None => Json(json!({"status": "ready"})).into_response(),
        Some(detail) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "detail": detail})),
        )
            .into_response(),
    }
}

/// `GET /-/backup`: 200 with the backup as NDJSON (its last line counts what came before it).
pub async fn backup(State(s): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let body = operations(&s)?
        .backup()
        .await
        .map_err(|detail| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, detail))?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// `POST /-/reload`: 200 with what changed, or 400 with why nothing did.
pub async fn reload(State(s): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    operations(&s)?
        .reload()
        .await
        .map(Json)
        .map_err(|detail| ApiError::new(StatusCode::BAD_REQUEST, detail))
}
