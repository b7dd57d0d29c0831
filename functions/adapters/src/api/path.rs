//! Path parameters, parsed once into the model's checked types ([`ProjectName`],
//! [`ProjectScope`]) by one extractor, so that no handler checks a name by hand. A segment that is
//! not a valid name is a 400 with the model's `detail`.
//!
//! [`ProjectName`]: tocsin_core::model::ProjectName
//! [`ProjectScope`]: tocsin_core::model::ProjectScope

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ApiError;

/// Like axum's `Path`, answering a bad segment in the API's error shape.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(t)) => Ok(ApiPath(t)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                let detail = match e.into_kind() {
                    axum::extract::path::ErrorKind::Message(m) => m,
                    other => other.to_string(),
                };
                Err(ApiError::new(StatusCode::BAD_REQUEST, detail))
            }
            Err(other) => Err(ApiError::new(other.status(), other.body_text())),
        }
    }
}
