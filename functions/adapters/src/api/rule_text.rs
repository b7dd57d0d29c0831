//! Alerts as rule-language text, for the Alerts page's editor (Tocsin's extension): read an
//! alert as a rule file, check text as the editor changes it, and store an alert from text
//! through the same service call as `PUT .../alerts/{name}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tocsin_core::model::{ProjectName, Timestamp};
use tocsin_rules::diagnostic::to_json;
use tocsin_rules::{Level, check_source};

use super::{ApiError, ApiPath, AppState, JsonBody};

/// `{"source": "..."}`.
#[derive(Debug, Deserialize)]
pub struct Source {
    source: String,
}

/// The diagnostics of `source` as JSON (`file` is `rule`).
fn diagnostics(source: &str, diags: &[tocsin_rules::Diagnostic]) -> Vec<Value> {
    diags
        .iter()
        .map(|d| serde_json::to_value(to_json("rule", source, d)).unwrap_or_default())
        .collect()
}

/// `source` checked as a rule file of `project`, secrets from `secret`: or the 400 that says
/// why not (its errors with their places, or the project it is for instead).
pub(super) fn checked_for(
    project: &str,
    source: &str,
    secret: &tocsin_rules::Resolver,
) -> Result<tocsin_rules::Checked, Box<Response>> {
    let checked = check_source(source, secret);
    if checked.has_errors() {
        let errors = checked
            .diagnostics
            .iter()
            .filter(|d| d.level == Level::Error)
            .count();
        let answer = json!({
            "detail": format!("The rule has {errors} error{}", if errors == 1 { "" } else { "s" }),
            "diagnostics": diagnostics(source, &checked.diagnostics),
        });
        return Err(Box::new(
            (StatusCode::BAD_REQUEST, Json(answer)).into_response(),
        ));
    }
    if checked.project != project {
        return Err(Box::new(
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "The rule is for project `{}`, not `{project}`",
                    checked.project
                ),
            )
            .into_response(),
        ));
    }
    Ok(checked)
}

/// `GET /projects/{project}/alerts/{name}/rule`: the alert as a rule file, `{"source": ...}`.
pub async fn get(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(ProjectName, String)>,
) -> Result<Json<Value>, ApiError> {
    let project = project.as_str();
    let config = s
        .service
        .get_alert(project, &name, Timestamp::now())
        .await?;
    let (source, notes) = tocsin_rules::export::export(&[config], &[]);
    Ok(Json(json!({"source": source, "notes": notes})))
}

/// `POST /rules/check`: every diagnostic of `source`; 200 whatever they say.
pub async fn check(JsonBody(body): JsonBody<Source>) -> Json<Value> {
    let checked = check_source(&body.source, &|_| None);
    Json(json!({
        "errors": checked.diagnostics.iter().filter(|d| d.level == Level::Error).count(),
        "diagnostics": diagnostics(&body.source, &checked.diagnostics),
    }))
}

/// `PUT /projects/{project}/alerts/{name}/rule`: stores the alert `name` that `source` defines.
/// Errors in the text are a 400 whose `diagnostics` say where; secrets the text refers to keep
/// the values stored on the server.
pub async fn put(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(ProjectName, String)>,
    JsonBody(body): JsonBody<Source>,
) -> Result<Response, ApiError> {
    let project = project.as_str();
    let checked = match checked_for(project, &body.source, &|_| None) {
        Ok(c) => c,
        Err(refused) => return Ok(*refused),
    };
    let mut alerts = checked.alerts;
    let Some(at) = alerts.iter().position(|a| a.config.name == name) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("The rule defines no alert named `{name}`"),
        ));
    };
    if alerts.len() > 1 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Define only the alert `{name}` here; store others on their own"),
        ));
    }
    let alert = alerts.swap_remove(at);
    let stored = s
        .service
        .store_alert(project, &name, alert.config, false, Timestamp::now())
        .await?;
    Ok(Json(json!({
        "alert": stored,
        "diagnostics": diagnostics(&body.source, &checked.diagnostics),
    }))
    .into_response())
}
