//! API errors: a status and a `detail`, as MLRun answers them.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer: `{"detail": "..."}` with its status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
    /// Seconds after which a retry is worth it (`Retry-After`), for a 503.
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// An error with this status and detail.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            detail: detail.into(),
            retry_after: None,
        }
    }
}

impl From<tocsin_core::Error> for ApiError {
    fn from(e: tocsin_core::Error) -> Self {
        use tocsin_core::Error as E;
        let status = match &e {
            E::BadRequest(_) => StatusCode::BAD_REQUEST,
            E::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::Forbidden(_) => StatusCode::FORBIDDEN,
            E::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            E::Backend { .. } => {
                tracing::error!(error = %e, "store failure");
                return ApiError {
                    retry_after: Some(1),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The store failed. Retry with the same idempotency key (the Idempotency-Key header or the event's `id`): what was counted is not counted again.",
                    )
                };
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "detail": self.detail }))).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}
