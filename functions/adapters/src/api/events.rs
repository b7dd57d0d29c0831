//! `POST /projects/{project}/events/{kind}`: the event is evaluated before the answer (MLRun's
//! client reads alert state right after); the service hands its activations to the notifier,
//! which delivers after the answer.
//!
//! `POST /projects/{project}/events` (Tocsin's extension) takes a batch: evaluated before the
//! answer, or, where a queue is configured (AWS), queued for the evaluator and answered 202.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tocsin_core::model::{Event, ProjectName, Timestamp};

use super::{ApiError, ApiPath, AppState, JsonBody};
use crate::telemetry::{self, Taken};

pub async fn post(
    State(s): State<Arc<AppState>>,
    ApiPath((project, kind)): ApiPath<(ProjectName, String)>,
    headers: HeaderMap,
    JsonBody(event): JsonBody<Event>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let project = project.as_str();
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let outcome = match s
        .service
        .accept_event(project, &kind, event, key, Timestamp::now())
    {
        Ok(accepted) => s.service.ingest(&accepted).await,
        Err(e) => Err(e),
    };
    telemetry::events(project, taken(&outcome), 1);
    telemetry::ingested(started.elapsed());
    outcome?;
    Ok(Json(Value::Null))
}

/// How an event is counted (see [`telemetry::EVENTS`]).
fn taken(outcome: &tocsin_core::Result<tocsin_core::engine::EventOutcome>) -> Taken {
    match outcome {
        Ok(o) if o.duplicate => Taken::Duplicate,
        Ok(_) => Taken::Accepted,
        Err(e) => refusal(e),
    }
}

/// How a refused event is counted: the client's mistake, or the store's trouble.
fn refusal(e: &tocsin_core::Error) -> Taken {
    if matches!(e, tocsin_core::Error::Backend { .. }) {
        Taken::Unavailable
    } else {
        Taken::Invalid
    }
}

/// At most this many events in one batch.
pub const MAX_BATCH: usize = 1000;

/// The body of a batch.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    events: Vec<Event>,
}

pub async fn post_batch(
    State(s): State<Arc<AppState>>,
    ApiPath(project): ApiPath<ProjectName>,
    JsonBody(batch): JsonBody<EventBatch>,
) -> Result<Response, ApiError> {
    let project = project.as_str();
    if batch.events.is_empty() || batch.events.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "A batch holds 1 to {MAX_BATCH} events; this one holds {}",
                batch.events.len()
            ),
        ));
    }
    let started = Instant::now();
    let now = Timestamp::now();
    let size = batch.events.len() as u64;
    // Every event is checked before any is evaluated or queued: a bad one refuses the batch.
    let mut accepted = Vec::with_capacity(batch.events.len());
    for (i, event) in batch.events.into_iter().enumerate() {
        let Some(kind) = event.kind.clone() else {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("events[{i}]: `kind` is required in a batch"),
            ));
        };
        let event = s
            .service
            .accept_event(project, kind.as_str(), event, None, now)
            .map_err(|e| {
                telemetry::events(project, Taken::Invalid, size);
                ApiError::new(StatusCode::BAD_REQUEST, format!("events[{i}]: {e}"))
            })?;
        accepted.push(event);
    }
    if let Some(queue) = &s.queue {
        if let Err(e) = queue.enqueue(&accepted).await {
            telemetry::events(project, refusal(&e), size);
            return Err(e.into());
        }
        telemetry::events(project, Taken::Accepted, size);
        let body = json!({"accepted": accepted.len(), "queued": true});
        return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
    }
    let mut tally = [0u64; 4];
    let results = s
        .service
        .ingest_batch(&accepted)
        .await
        .into_iter()
        .inspect(|outcome| tally[taken(outcome) as usize] += 1)
        .map(|outcome| match outcome {
            Ok(o) => BatchResult::Done {
                counted: o.counted,
                fired: o.fired.iter().map(|f| f.activation.id).collect(),
                duplicate: o.duplicate,
            },
            Err(e) => {
                let e = ApiError::from(e);
                BatchResult::Failed {
                    status: e.status.as_u16(),
                    detail: e.detail,
                }
            }
        })
        .collect();
    for taken in [
        Taken::Accepted,
        Taken::Duplicate,
        Taken::Invalid,
        Taken::Unavailable,
    ] {
        telemetry::events(project, taken, tally[taken as usize]);
    }
    telemetry::ingested(started.elapsed());
    Ok(Json(BatchAnswer {
        accepted: accepted.len(),
        results,
    })
    .into_response())
}

/// `{"accepted": n, "results": [...]}`, one result per event in order. Typed rather than built
/// as `serde_json::Value`s: a batch answers 1,000 of them, and building each as a map was 7% of
/// a batch's time.
#[derive(Serialize)]
struct BatchAnswer {
    accepted: usize,
    results: Vec<BatchResult>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum BatchResult {
    Done {
        counted: usize,
        fired: Vec<u64>,
        duplicate: bool,
    },
    Failed {
        status: u16,
        detail: String,
    },
}
