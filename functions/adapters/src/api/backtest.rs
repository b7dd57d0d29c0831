//! `POST /projects/{project}/backtest` (Tocsin's extension): what rule-language text would
//! have done over the events the server recorded, beside what the stored alerts did; what the
//! Alerts page's editor charts ("this rule would have fired 14 times last week; the stored one
//! fired 3 times"). Body: `{"source": "...", "since": "7d", "until": "..."}` (`since` 7 days
//! back and `until` now by default). Nothing is stored; notifications are counted, not sent.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tocsin_core::model::{ProjectName, Span, Timestamp};

use super::params::moment;
use super::{ApiError, ApiPath, AppState, JsonBody};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BacktestBody {
    source: String,
    since: Option<String>,
    until: Option<String>,
}

pub async fn backtest(
    State(s): State<Arc<AppState>>,
    ApiPath(project): ApiPath<ProjectName>,
    JsonBody(body): JsonBody<BacktestBody>,
) -> Result<Response, ApiError> {
    let project = project.as_str();
    let now = Timestamp::now();
    let since = match &body.since {
        Some(v) => moment("since", v, now)?,
        None => now.plus(Span::from_secs(-7 * 86_400)),
    };
    let until = match &body.until {
        Some(v) => moment("until", v, now)?,
        None => now,
    };
    if until <= since {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("`until` ({until}) must be after `since` ({since})"),
        ));
    }
    // Secrets are not needed to count what would be sent: each gets a stand-in.
    let stand_in = |name: &str| Some(format!("https://secrets.invalid/{name}"));
    let checked = match super::rule_text::checked_for(project, &body.source, &stand_in) {
        Ok(c) => c,
        Err(refused) => return Ok(*refused),
    };
    let alerts = checked.alerts.into_iter().map(|a| a.config).collect();
    let mut silences = Vec::new();
    for c in &checked.silences {
        let silence = c.silence(project, "rule text", now).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("silence `{}`: {e}", c.id))
        })?;
        silences.push(silence);
    }
    let report = s
        .service
        .backtest(project, alerts, silences, since, until)
        .await?;
    let days: Vec<String> = report
        .days()
        .into_iter()
        .map(tocsin_core::backtest::date)
        .collect();
    Ok(Json(json!({"report": report, "days": days, "text": report.to_string()})).into_response())
}
