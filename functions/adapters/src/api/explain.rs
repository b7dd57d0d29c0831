//! `POST /projects/{project}/alerts/{name}/explain` (Tocsin's extension): why an event counts
//! for the alert or does not, clause by clause, and what one more like it would do; nothing
//! changes. The body names the event:
//!
//! - `{"entity": "ep1", "value_dict": {...}, "kind": "...", "at": "..."}`: an event about
//!   `ep1` (kind: the alert's first; entity kind: the alert's), as the alert stands now;
//! - `{"event": {...}}`: an event as `POST .../events/{kind}` takes it;
//! - `{"entity": "ep1", "last": 5, "since": "24h"}`: the last recorded events about `ep1` that
//!   the alert triggers on, each explained in turn on a state rebuilt from the recorded
//!   events since `since` (24 h by default).
//!
//! The answer is `{"explanations": [...]}`, each with the clauses, the verdict, what one more
//! event would do, and `text`: the same as `tocsin explain` prints.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tocsin_core::engine::explain::Explanation;
use tocsin_core::model::{Entities, EntityKind, Event, EventKind, ProjectName, Span, Timestamp};

use super::params::moment;
use super::{ApiError, ApiPath, AppState, JsonBody};

/// The most recorded events one request explains.
const MAX_LAST: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainBody {
    event: Option<Event>,
    entity: Option<String>,
    kind: Option<EventKind>,
    entity_kind: Option<EntityKind>,
    #[serde(default)]
    value_dict: Map<String, Value>,
    at: Option<Timestamp>,
    last: Option<usize>,
    since: Option<String>,
}

fn bad(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, detail)
}

pub async fn explain(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(ProjectName, String)>,
    JsonBody(body): JsonBody<ExplainBody>,
) -> Result<Json<Value>, ApiError> {
    let project = project.as_str();
    let now = Timestamp::now();
    let explained: Vec<Explanation> = match (body.event, body.entity, body.last) {
        (Some(_), Some(_), _) => return Err(bad("Give `event` or `entity`, not both")),
        (None, None, _) => {
            return Err(bad(
                "Say which event: `event` (as posted), or `entity` (with `value_dict`, or `last`)",
            ));
        }
        (Some(_), None, Some(_)) => return Err(bad("`last` goes with `entity`, not `event`")),
        (Some(event), None, None) => {
            let at = body.at.unwrap_or(now);
            vec![s.service.explain_event(project, &name, event, at).await?]
        }
        (None, Some(entity), Some(last)) => {
            if !(1..=MAX_LAST).contains(&last) {
                return Err(bad(format!("`last` is 1 to {MAX_LAST}")));
            }
            let since = match &body.since {
                Some(v) => moment("since", v, now)?,
                None => now.plus(Span::from_secs(-86_400)),
            };
            s.service
                .explain_recorded(project, &name, &entity, last, since)
                .await?
        }
        (None, Some(entity), None) => {
            let alert = s.service.get_alert(project, &name, now).await?;
            let event = Event {
                kind: body.kind,
                timestamp: None,
                entity: Entities {
                    kind: body.entity_kind.unwrap_or(alert.entities.kind),
                    project: project.to_owned(),
                    ids: vec![entity],
                },
                value_dict: body.value_dict,
                id: None,
            };
            let at = body.at.unwrap_or(now);
            vec![s.service.explain_event(project, &name, event, at).await?]
        }
    };
    let explanations: Vec<Value> = explained
        .iter()
        .map(|e| {
            let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("text".into(), Value::String(e.to_string()));
            }
            v
        })
        .collect();
    Ok(Json(json!({ "explanations": explanations })))
}
