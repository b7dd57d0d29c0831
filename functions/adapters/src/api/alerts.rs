//! `/projects/{project}/alerts`.

use std::sync::Arc;

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde::ser::SerializeSeq;
use serde_json::Value;
use tocsin_core::SilenceFilter;
use tocsin_core::auth::{Action, Principal};
use tocsin_core::model::{AlertConfig, ProjectName, ProjectScope, Silence, SilencedBy, Timestamp};
use tocsin_core::store::AlertRecord;

use super::listing_tag::{self, ListingTag};
use super::{ApiError, ApiPath, AppState, JsonBody};

fn flag(params: &HashMap<String, String>, name: &str) -> bool {
    params
        .get(name)
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "yes" | "true" | "1" | "y"))
}

fn number(params: &HashMap<String, String>, name: &str) -> Result<Option<usize>, ApiError> {
    params
        .get(name)
        .map(|v| {
            v.parse().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("Invalid `{name}` `{v}`: expected a whole number"),
                )
            })
        })
        .transpose()
}

/// Whether the request comes from MLRun's client (it identifies itself by this header).
pub fn from_mlrun(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key("x-mlrun-client-version")
}

/// The config as this client may read it.
fn for_client(config: AlertConfig, mlrun: bool) -> AlertConfig {
    if mlrun {
        config.for_mlrun_client()
    } else {
        config
    }
}

pub async fn store(
    State(s): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    ApiPath((project, name)): ApiPath<(ProjectName, String)>,
    Query(params): Query<HashMap<String, String>>,
    JsonBody(config): JsonBody<AlertConfig>,
) -> Result<Json<AlertConfig>, ApiError> {
    let project = project.as_str();
    let force = flag(&params, "force_reset") || flag(&params, "force-reset");
    let (now, mlrun) = (Timestamp::now(), from_mlrun(&headers));
    let stored = if mlrun {
        s.service
            .store_alert_from_mlrun(project, &name, config, force, now)
            .await?
    } else {
        s.service
            .store_alert(project, &name, config, force, now)
            .await?
    };
    Ok(Json(for_client(stored, mlrun)))
}

pub async fn get(
    State(s): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    ApiPath((project, name)): ApiPath<(ProjectName, String)>,
) -> Result<Json<AlertConfig>, ApiError> {
    let project = project.as_str();
    let now = Timestamp::now();
    let mut config = s.service.get_alert(project, &name, now).await?;
    let mlrun = from_mlrun(&headers);
    if !mlrun {
        let silences = s.service.silences_in_effect(project, now).await?;
        config.silenced = silence_mark(&silences, &config, now).map(Box::new);
    }
    Ok(Json(for_client(config, mlrun)))
}

/// The mark of the first silence in effect that holds back all of the alert's notifications.
fn silence_mark(silences: &[Silence], config: &AlertConfig, now: Timestamp) -> Option<SilencedBy> {
    silences
        .iter()
        .filter(|s| s.project == config.project)
        .find_map(|s| s.marks(&config.name, config.severity, now))
}

/// `GET /projects/{project}/alerts`. Answers with an ETag; a request whose `If-None-Match`
/// still holds (see [`listing_tag`](super::listing_tag)) gets 304 for one read of the store's
/// version, which is what an open Alerts page does every 2 s.
pub async fn list(
    State(s): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    headers: axum::http::HeaderMap,
    ApiPath(scope): ApiPath<ProjectScope>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let project = scope.as_str();
    let offset = number(&params, "offset")?.unwrap_or(0);
    let limit = number(&params, "page-size")?
        .or(number(&params, "limit")?)
        .unwrap_or(usize::MAX);
    let mlrun = from_mlrun(&headers);
    let readable = principal.readable();
    let reader = listing_tag::reader(&[
        &principal.name,
        &format!("{}{mlrun}{readable:?}", principal.authenticated),
        project,
        &offset.to_string(),
        &limit.to_string(),
    ]);
    // Read before the listing: a change in between makes the next request read in full.
    let version = s.service.alerts_version().await?;
    let now = Timestamp::now();
    let held = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .and_then(ListingTag::parse);
    if let Some(tag) = held
        && tag.still_holds(&version, reader, now)
    {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, tag.render()),
                (header::CACHE_CONTROL, NO_CACHE.into()),
            ],
        )
            .into_response());
    }
    let records: Vec<AlertRecord> = match readable {
        // A `*` listing by a principal who reads only some projects: those, then the page.
        Some(_) if project == "*" => s
            .service
            .list_alerts(project, 0, usize::MAX)
            .await?
            .into_iter()
            .filter(|r| principal.may(Action::Read, r.rule.project()))
            .skip(offset)
            .take(limit)
            .collect(),
        _ => s.service.list_alerts(project, offset, limit).await?,
    };
    // Silences mark alerts (not for MLRun's client); their starts and ends change a listing
    // with no write, like cooldowns do.
    let silences = if mlrun {
        Vec::new()
    } else {
        s.service
            .list_silences(project, SilenceFilter::Current, now)
            .await?
    };
    let silence_turns = silences.iter().filter_map(|v| v.until.or(v.next_start));
    let tag = ListingTag {
        version,
        issued: now,
        until: records
            .iter()
            .filter_map(|r| r.changes_by_itself_at(now))
            .chain(silence_turns)
            .min(),
        reader,
    };
    let silences = silences
        .into_iter()
        .filter(|v| v.state == tocsin_core::model::SilencePhase::Active)
        .map(|v| v.silence)
        .collect();
    Ok((
        [
            (header::ETAG, tag.render()),
            (header::CACHE_CONTROL, NO_CACHE.into()),
        ],
        Json(AlertList {
            alerts: Views {
                records,
                now,
                mlrun,
                silences,
            },
        }),
    )
        .into_response())
}

/// Caches may keep a listing, but must ask again each time (with its ETag).
const NO_CACHE: &str = "private, no-cache";

/// `{"alerts": [...]}`, each alert's view rendered as it is written.
#[derive(Serialize)]
pub struct AlertList {
    alerts: Views,
}

struct Views {
    records: Vec<AlertRecord>,
    now: Timestamp,
    /// Rendered for MLRun's client (see [`for_client`]).
    mlrun: bool,
    /// The silences in effect, which mark the alerts they hold back.
    silences: Vec<Silence>,
}

impl Serialize for Views {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for r in &self.records {
            let mut view = r.view(self.now);
            // MLRun's client rejects a whole listing over one alert on a custom event kind.
            if self.mlrun && !view.is_mlrun_readable() {
                continue;
            }
            view.silenced = silence_mark(&self.silences, &view, self.now).map(Box::new);
            seq.serialize_element(&for_client(view, self.mlrun))?;
        }
        seq.end()
    }
}

pub async fn delete(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(ProjectName, String)>,
) -> Result<StatusCode, ApiError> {
    let project = project.as_str();
    s.service.delete_alert(project, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /projects/{project}/alerts/{name}/reset`. Who reset it is recorded on the activation it
/// closes ("reset by dana") and said by its resolved notifications: the signed-in principal, or
/// without auth the optional body's `by` (MLRun's client sends none: `anonymous`).
pub async fn reset(
    State(s): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    ApiPath((project, name)): ApiPath<(ProjectName, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let project = project.as_str();
    let named = serde_json::from_slice::<Acknowledge>(&body)
        .ok()
        .and_then(|b| b.by)
        .map(|b| b.trim().to_owned())
        .filter(|b| !b.is_empty());
    let by = match named {
        Some(by) if !principal.authenticated => by,
        _ => principal.name,
    };
    s.service
        .reset_alert(project, &name, &by, Timestamp::now())
        .await?;
    Ok(Json(Value::Null))
}

/// `{"by": "who"}`; with auth on, the token's name is recorded instead, and `by` may be left out.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Acknowledge {
    #[serde(default)]
    by: Option<String>,
}

/// `POST /projects/{project}/alerts/{name}/acknowledge` (Tocsin's extension): records who
/// acknowledged an active alert; its notifications pause until it is reset.
pub async fn acknowledge(
    State(s): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    ApiPath((project, name)): ApiPath<(ProjectName, String)>,
    body: axum::body::Bytes,
) -> Result<Json<AlertConfig>, ApiError> {
    let project = project.as_str();
    let body: Acknowledge = if principal.authenticated && body.iter().all(u8::is_ascii_whitespace) {
        Acknowledge::default()
    } else {
        super::body::decode(&body)?
    };
    let by = if principal.authenticated {
        principal.name
    } else {
        body.by.unwrap_or_default()
    };
    Ok(Json(
        s.service
            .acknowledge_alert(project, &name, &by, Timestamp::now())
            .await?,
    ))
}

/// `POST /projects/{project}/alerts/{name}/preview`: the activation and notifications an event
/// (the optional body: `{"entity": {...}, "value_dict": {...}}`) would produce now; nothing is
/// stored or sent.
pub async fn preview(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(ProjectName, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let project = project.as_str();
    let event = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(super::body::decode(&body)?)
    };
    let (activation, rule) = s
        .service
        .preview(project, &name, event, Timestamp::now())
        .await?;
    let alert_url = s.alert_url(project, &name);
    let notifications = crate::notify::preview(&rule, &activation, alert_url.as_deref());
    Ok(Json(
        serde_json::json!({ "activation": activation, "notifications": notifications }),
    ))
}

/// `POST /projects/{project}/alerts/{name}/notifications/test[?notification=NAME]`: sends a
/// clearly marked test message through each of the alert's notifications (or the one named)
/// and answers what each receiver said. Nothing is recorded and no cooldown starts.
pub async fn test_notifications(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(ProjectName, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let notifier = s.notifier.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "this host sends no notifications: send the test where the notifier runs",
        )
    })?;
    let outcomes = notifier
        .test(
            project.as_str(),
            &name,
            params.get("notification").map(String::as_str),
        )
        .await?;
    Ok(Json(serde_json::json!({ "notifications": outcomes })))
}
