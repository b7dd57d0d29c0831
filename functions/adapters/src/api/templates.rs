//! `/alert-templates`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use tocsin_core::model::AlertTemplate;

use super::{ApiError, AppState};

pub async fn list(State(s): State<Arc<AppState>>) -> Json<&'static [AlertTemplate]> {
    Json(s.service.templates())
}

pub async fn get(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<&'static AlertTemplate>, ApiError> {
    Ok(Json(s.service.template(&name)?))
}

pub async fn delete(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<(), ApiError> {
    Ok(s.service.delete_template(&name)?)
}
