//! Activation listings with MLRun's filters and pagination. Page tokens are stateless: the
//! query and the position of the next page, hex-encoded, so any replica (or a restarted server)
//! continues a listing. MLRun's client sends only the token for the next page, so the token
//! carries the filters; a token that does not decode is a 404, which the client reads as "no
//! more pages".

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use tocsin_core::auth::Principal;
use tocsin_core::model::{Activation, EntityKind, EventKind, ProjectName, ProjectScope, Severity};
use tocsin_core::store::{ActivationQuery, EntityFilter, NameFilter};

use super::params::{count, parse, time};
use super::{ApiError, ApiPath, AppState};

/// The page size when a client asks for pages without saying how large (MLRun's default).
const DEFAULT_PAGE_SIZE: usize = 20;
/// The largest page served.
const MAX_PAGE_SIZE: usize = 10_000;

/// Where a listing stands: what a page token encodes.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Cursor {
    query: ActivationQuery,
    page: usize,
}

fn encode_token(c: &Cursor) -> String {
    let bytes = serde_json::to_vec(c).unwrap_or_default();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_token(token: &str) -> Option<Cursor> {
    if !token.len().is_multiple_of(2) || !token.is_ascii() {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16).ok())
        .collect();
    serde_json::from_slice(&bytes?).ok()
}

/// Paging asked for by the client.
#[derive(Default)]
struct Paging {
    page: Option<usize>,
    size: Option<usize>,
    token: Option<String>,
}

fn parse_query(project: &str, raw: Option<&str>) -> Result<(ActivationQuery, Paging), ApiError> {
    let mut q = ActivationQuery {
        project: (project != "*").then(|| project.to_owned()),
        ..Default::default()
    };
    let mut paging = Paging::default();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "name" => {
                q.name = Some(match v.strip_prefix('~') {
                    Some(part) => NameFilter::Contains(part.to_owned()),
                    None => NameFilter::Exact(v.into_owned()),
                })
            }
            "entity" => {
                q.entity = Some(match v.strip_prefix('~') {
                    Some(glob) => EntityFilter::Glob(glob.to_owned()),
                    None => EntityFilter::Exact(v.into_owned()),
                })
            }
            "since" => q.since = Some(time("since", &v)?),
            "until" => q.until = Some(time("until", &v)?),
            "severity" => q.severity.push(parse::<Severity>("severity", &v)?),
            "entity-kind" => q.entity_kind = Some(parse::<EntityKind>("entity-kind", &v)?),
            "event-kind" => q.event_kind = Some(parse::<EventKind>("event-kind", &v)?),
            "page" => paging.page = Some(count("page", &v)?.max(1)),
            "page-size" => paging.size = Some(count("page-size", &v)?.clamp(1, MAX_PAGE_SIZE)),
            "page-token" => paging.token = Some(v.into_owned()),
            _ => {}
        }
    }
    Ok((q, paging))
}

/// `{"activations": [...], "pagination": {"page", "page-size", "page-token"}}`.
#[derive(Serialize)]
pub struct ActivationPage {
    activations: Vec<Activation>,
    pagination: Pagination,
}

#[derive(Serialize)]
struct Pagination {
    page: Option<usize>,
    #[serde(rename = "page-size")]
    page_size: Option<usize>,
    #[serde(rename = "page-token")]
    page_token: Option<String>,
}

async fn respond(
    s: &AppState,
    principal: &Principal,
    project: &str,
    mut q: ActivationQuery,
    paging: Paging,
) -> Result<Json<ActivationPage>, ApiError> {
    let (page, size) = if let Some(token) = &paging.token {
        let cursor = decode_token(token)
            .filter(|c| c.query.project.as_deref().unwrap_or("*") == project)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "Page token not found: it is invalid or for another listing",
                )
            })?;
        q = cursor.query;
        (Some(cursor.page), Some(q.limit))
    } else if paging.page.is_some() || paging.size.is_some() {
        let page = paging.page.unwrap_or(1);
        let size = paging.size.unwrap_or(DEFAULT_PAGE_SIZE);
        q.offset = (page - 1).saturating_mul(size);
        q.limit = size;
        (Some(page), Some(size))
    } else {
        q.limit = usize::MAX;
        (None, None)
    };
    // Set on every page: a page token is the client's to forge.
    q.projects = principal.readable();
    // One more than the page, to know whether another page follows.
    let wanted = q.limit;
    let mut fetch = q.clone();
    fetch.limit = wanted.saturating_add(1);
    let mut activations: Vec<Activation> = s.service.activations(&fetch).await?;
    let token = (activations.len() > wanted).then(|| {
        activations.truncate(wanted);
        let next = ActivationQuery {
            offset: q.offset + wanted,
            ..q.clone()
        };
        encode_token(&Cursor {
            query: next,
            page: page.unwrap_or(1) + 1,
        })
    });
    Ok(Json(ActivationPage {
        activations,
        pagination: Pagination {
            page,
            page_size: size,
            page_token: token,
        },
    }))
}

pub async fn list(
    State(s): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    headers: axum::http::HeaderMap,
    ApiPath(scope): ApiPath<ProjectScope>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ActivationPage>, ApiError> {
    let project = scope.as_str();
    let (mut q, paging) = parse_query(project, raw.as_deref())?;
    q.mlrun_kinds_only = super::alerts::from_mlrun(&headers);
    respond(&s, &principal, project, q, paging).await
}

pub async fn list_for_alert(
    State(s): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    headers: axum::http::HeaderMap,
    ApiPath((project, name)): ApiPath<(ProjectName, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ActivationPage>, ApiError> {
    let project = project.as_str();
    let (mut q, paging) = parse_query(project, raw.as_deref())?;
    q.mlrun_kinds_only = super::alerts::from_mlrun(&headers);
    q.name = Some(NameFilter::Exact(name));
    respond(&s, &principal, project, q, paging).await
}

pub async fn get(
    State(s): State<Arc<AppState>>,
    ApiPath((project, id)): ApiPath<(ProjectName, String)>,
) -> Result<Json<Activation>, ApiError> {
    let project = project.as_str();
    let id: u64 = id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Invalid activation id `{id}`: expected a whole number"),
        )
    })?;
    Ok(Json(s.service.activation(project, id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let c = Cursor {
            query: ActivationQuery {
                project: Some("p".into()),
                offset: 40,
                limit: 20,
                ..Default::default()
            },
            page: 3,
        };
        assert_eq!(decode_token(&encode_token(&c)), Some(c));
        for bad in ["", "zz", "abc", "7b7d", "ü1"] {
            assert!(decode_token(bad).is_none(), "{bad}");
        }
    }
}
