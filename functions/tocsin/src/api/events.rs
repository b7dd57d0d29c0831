//! `POST /projects/{project}/events/{kind}`: the event is evaluated before the answer (MLRun's
//! client reads alert state right after), and its activations are handed to the notifier, which
//! delivers after the answer.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::Value;
use tocsin_core::model::{Event, Timestamp};

use super::{ApiError, AppState, JsonBody, check_project};

pub async fn post(
    State(s): State<AppState>,
    Path((project, kind)): Path<(String, String)>,
    headers: HeaderMap,
    JsonBody(event): JsonBody<Event>,
) -> Result<Json<Value>, ApiError> {
    check_project(&project)?;
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let accepted = s
        .service
        .accept_event(&project, &kind, event, key, Timestamp::now())?;
    let outcome = s.service.ingest(&accepted).await?;
    for fired in outcome.fired {
        s.dispatch.dispatch(fired);
    }
    Ok(Json(Value::Null))
}
