//! A JSON body extractor that does not insist on a `Content-Type` header (MLRun's client sends
//! none) and explains every refusal.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::ApiError;

/// The request body decoded as JSON into `T`.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            ApiError::new(
                r.status(),
                format!("Cannot read the request body: {}", r.body_text()),
            )
        })?;
        decode(&bytes).map(JsonBody)
    }
}

/// Decodes a JSON body: malformed JSON is 400, JSON of the wrong shape 422 (as FastAPI answers).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "The request body is empty: a JSON object is required",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("Invalid body: {e}"),
            ),
            Category::Syntax | Category::Eof | Category::Io => ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("The request body is not valid JSON: {e}"),
            ),
        }
    })
}
