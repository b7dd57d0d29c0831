//! `GET /projects/{project}/audit`: who changed what, newest first (`*`: the projects the
//! caller may read).

use std::sync::Arc;

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::json;
use tocsin_core::auth::{Action, Principal};
use tocsin_core::model::ProjectScope;

use super::{ApiError, ApiPath, AppState};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;

pub async fn list(
    State(s): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    ApiPath(scope): ApiPath<ProjectScope>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = match params.get("limit") {
        Some(v) => v.parse::<usize>().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("Invalid `limit` `{v}`: expected a whole number"),
            )
        })?,
        None => DEFAULT_LIMIT,
    }
    .min(MAX_LIMIT);
    let project = scope.project().map(|p| p.as_str());
    let entries = match (project, principal.readable()) {
        (None, Some(_)) => {
            // Entries of `*`-wide actions (templates) are for readers of every project.
            let all = s.service.store().audit_log(None, usize::MAX).await?;
            all.into_iter()
                .filter(|e| principal.may(Action::Read, &e.project))
                .take(limit)
                .collect()
        }
        _ => s.service.store().audit_log(project, limit).await?,
    };
    Ok(Json(json!({ "entries": entries })))
}
