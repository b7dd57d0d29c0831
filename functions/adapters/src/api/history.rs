//! `GET /projects/{project}/events` (Tocsin's extension): the recorded events, in order of
//! arrival, as NDJSON (one [`Recorded`] a line), for `tocsin backtest` and anyone who wants
//! them. Filters: `since` and `until` (ISO-8601, or a span back from now such as `7d`),
//! `kind` (repeated or comma-separated), `entity`; `limit` (10,000 by default, at most
//! 20,000: an answer stays under a Lambda's 6 MB); `after` resumes after the `cursor` of the
//! last line of a page. A page shorter than its limit is the last.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tocsin_core::model::{EventKind, ProjectName, Timestamp};
use tocsin_core::store::{EventQuery, Recorded};

use super::params::{count, moment, parse};
use super::{ApiError, ApiPath, AppState};

/// Events in a page when the client does not say.
const DEFAULT_LIMIT: usize = 10_000;
/// The most events in one answer.
const MAX_LIMIT: usize = 20_000;
/// Lines written to the body at a time.
const CHUNK: usize = 500;

fn query(project: &str, raw: Option<&str>, now: Timestamp) -> Result<EventQuery, ApiError> {
    let mut q = EventQuery {
        project: project.to_owned(),
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "since" => q.since = Some(moment("since", &v, now)?),
            "until" => q.until = Some(moment("until", &v, now)?),
            "kind" => {
                for kind in v.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                    q.kinds.push(parse::<EventKind>("kind", kind)?);
                }
            }
            "entity" => q.entity = Some(v.into_owned()),
            "after" => q.after = Some(v.into_owned()),
            "limit" => q.limit = count("limit", &v)?.clamp(1, MAX_LIMIT),
            _ => {}
        }
    }
    Ok(q)
}

pub async fn export(
    State(s): State<Arc<AppState>>,
    ApiPath(project): ApiPath<ProjectName>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = query(project.as_str(), raw.as_deref(), Timestamp::now())?;
    let events = s.service.recorded_events(&q).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(futures_util::stream::iter(lines(events))),
    )
        .into_response())
}

/// The events as NDJSON, a chunk of lines at a time, encoded as the body is sent.
fn lines(
    events: Vec<Recorded>,
) -> impl Iterator<Item = Result<Bytes, std::convert::Infallible>> + Send {
    let mut rest = events.into_iter().peekable();
    std::iter::from_fn(move || {
        rest.peek()?;
        let mut out = Vec::with_capacity(CHUNK * 256);
        for r in rest.by_ref().take(CHUNK) {
            // A recorded event is plain data: encoding it cannot fail.
            if serde_json::to_writer(&mut out, &r).is_ok() {
                out.push(b'\n');
            }
        }
        Some(Ok(Bytes::from(out)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_read_from_the_query_string() {
        let now = Timestamp::parse("2026-12-04T12:00:00Z").expect("time");
        let q = query(
            "p",
            Some("since=7d&until=2026-12-04T11:00:00Z&kind=failed,data_drift_detected&kind=job-cpu&entity=ep1&limit=99999&after=3-40"),
            now,
        )
        .expect("query");
        assert_eq!(q.since, Timestamp::parse("2026-11-27T12:00:00Z"));
        assert_eq!(q.until, Timestamp::parse("2026-12-04T11:00:00Z"));
        assert_eq!(q.kinds.len(), 3);
        assert_eq!(q.entity.as_deref(), Some("ep1"));
        assert_eq!((q.limit, q.after.as_deref()), (MAX_LIMIT, Some("3-40")));
        let bad = query("p", Some("since=yesterday"), now).expect_err("refused");
        assert_eq!(bad.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(bad.detail.contains("`since`"), "{}", bad.detail);
        let kind = query("p", Some("kind=not%20a%20kind!"), now).expect_err("refused");
        assert_eq!(kind.status, axum::http::StatusCode::UNPROCESSABLE_ENTITY);
    }
}
