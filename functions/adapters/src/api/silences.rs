//! `/projects/{project}/silences` (a Tocsin extension): silences and maintenance windows.
//! While one is in effect, the activations it matches record their notifications as
//! suppressed; alerts still count and fire. See [`tocsin_core::model::Silence`].

use std::sync::Arc;

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use tocsin_core::SilenceFilter;
use tocsin_core::auth::Principal;
use tocsin_core::model::{ProjectName, ProjectScope, SilenceSpec, SilenceView, Timestamp};

use super::access::AuditNote;
use super::{ApiError, ApiPath, AppState, JsonBody};

/// `{"silences": [...]}`.
#[derive(Serialize)]
pub struct SilenceList {
    silences: Vec<SilenceView>,
}

/// `GET /projects/{project}/silences?state=current|active|pending|expired|all` (default
/// current: active and pending). `*` lists every project the caller may read.
pub async fn list(
    State(s): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    ApiPath(scope): ApiPath<ProjectScope>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<SilenceList>, ApiError> {
    let filter: SilenceFilter = params
        .get("state")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or_default();
    let mut silences = s
        .service
        .list_silences(scope.as_str(), filter, Timestamp::now())
        .await?;
    silences.retain(|v| principal.may(tocsin_core::auth::Action::Read, &v.silence.project));
    Ok(Json(SilenceList { silences }))
}

/// `GET /projects/{project}/silences/{id}`.
pub async fn get(
    State(s): State<Arc<AppState>>,
    ApiPath((project, id)): ApiPath<(ProjectName, String)>,
) -> Result<Json<SilenceView>, ApiError> {
    Ok(Json(
        s.service
            .get_silence(project.as_str(), &id, Timestamp::now())
            .await?,
    ))
}

/// `PUT /projects/{project}/silences/{id}`: makes (201) or replaces (200) the silence `id`.
pub async fn put(
    State(s): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    ApiPath((project, id)): ApiPath<(ProjectName, String)>,
    JsonBody(spec): JsonBody<SilenceSpec>,
) -> Result<Response, ApiError> {
    let (view, created) = s
        .service
        .store_silence(project.as_str(), &id, spec, &principal, Timestamp::now())
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

/// `POST /projects/{project}/silences`: makes a silence with a new id (201).
pub async fn create(
    State(s): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    ApiPath(project): ApiPath<ProjectName>,
    JsonBody(spec): JsonBody<SilenceSpec>,
) -> Result<Response, ApiError> {
    let id = new_id()?;
    let (view, _) = s
        .service
        .store_silence(project.as_str(), &id, spec, &principal, Timestamp::now())
        .await?;
    let note = AuditNote {
        project: project.as_str().to_owned(),
        target: id,
    };
    let mut res = (StatusCode::CREATED, Json(view)).into_response();
    res.extensions_mut().insert(note);
    Ok(res)
}

/// `POST /projects/{project}/silences/{id}/expire`: ends it now; it stays listed as expired.
pub async fn expire(
    State(s): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    ApiPath((project, id)): ApiPath<(ProjectName, String)>,
) -> Result<Json<SilenceView>, ApiError> {
    Ok(Json(
        s.service
            .expire_silence(project.as_str(), &id, &principal, Timestamp::now())
            .await?,
    ))
}

/// `s-` and 16 random hex digits.
fn new_id() -> Result<String, ApiError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| {
        tracing::error!(error = %e, "no randomness for a silence id");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The system's random source failed; no silence was made. Retry later.",
        )
    })?;
    Ok(format!("s-{:016x}", u64::from_be_bytes(bytes)))
}
