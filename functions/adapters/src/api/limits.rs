//! The request body, read whole before the handler runs, within a size limit and a deadline:
//! a client that trickles its body holds a connection for at most `body_timeout`, and one that
//! sends too much learns the limit and the setting that raises it.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::ApiError;

/// How much of a request body the API reads, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Larger bodies are refused with 413 (`server.max_body_bytes`).
    pub max_body_bytes: usize,
    /// A body that has not fully arrived by then is refused with 408 and the connection closed
    /// (`server.body_timeout_secs`).
    pub body_timeout: Duration,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_body_bytes: 1024 * 1024,
            body_timeout: Duration::from_secs(30),
        }
    }
}

fn too_large(limit: usize) -> Response {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "The request body is larger than {limit} bytes, the limit set by \
             `server.max_body_bytes`"
        ),
    )
    .into_response()
}

enum Refusal {
    TooLarge,
    Broken(String),
}

async fn collect(mut body: Body, limit: usize) -> Result<Bytes, Refusal> {
    let mut first: Option<Bytes> = None;
    let mut rest: Vec<u8> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Refusal::Broken(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total > limit {
            return Err(Refusal::TooLarge);
        }
        match &first {
            None if rest.is_empty() => first = Some(data),
            _ => {
                if let Some(f) = first.take() {
                    rest.extend_from_slice(&f);
                }
                rest.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(rest)))
}

/// The layer.
pub async fn read_body(State(limits): State<RequestLimits>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return too_large(limits.max_body_bytes);
    }
    match tokio::time::timeout(limits.body_timeout, collect(body, limits.max_body_bytes)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(Refusal::TooLarge)) => too_large(limits.max_body_bytes),
        Ok(Err(Refusal::Broken(e))) => ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Cannot read the request body: {e}"),
        )
        .into_response(),
        Err(_) => {
            let mut res = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "The request body did not arrive within {} s (`server.body_timeout_secs`)",
                    limits.body_timeout.as_secs()
                ),
            )
            .into_response();
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            res
        }
    }
}
