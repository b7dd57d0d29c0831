//! The event log read back as recorded events (see [`tocsin_core::store::EventQuery`]): the
//! events' records in log order, read beside the writer without stopping it. A cursor is the
//! log position after an event's record, `{segment}-{offset}`.

use std::path::Path;

use tocsin_core::error::{Error, Result};
use tocsin_core::model::{Span, Timestamp};
use tocsin_core::store::{EventQuery, Recorded};

use super::log::{self, Next, Position};
use super::op::Op;

/// Events are stamped by the server's clock as they are accepted, so the log is in time order
/// up to a clock step: a read for a period stops this long after its end.
const CLOCK_SLACK: Span = Span::from_secs(300);

/// The recorded events that `query` selects, from the log in `dir`.
pub fn read(dir: &Path, query: &EventQuery) -> Result<Vec<Recorded>> {
    let from = match &query.after {
        Some(cursor) => parse_cursor(cursor)?,
        None => start(dir, query.since)?,
    };
    let limit = query.page();
    let stop_at = query.until.map(|u| u.plus(CLOCK_SLACK));
    let mut found = Vec::new();
    let mut bad = None;
    log::read(dir, from, |at, payload| {
        let Some(event) = event_of(payload, &mut bad) else {
            return if bad.is_some() {
                Next::Stop
            } else {
                Next::More
            };
        };
        if stop_at.is_some_and(|s| event.at >= s) {
            return Next::Stop;
        }
        if query.matches(&event) {
            found.push(Recorded {
                cursor: format!("{}-{}", at.segment, at.offset),
                event,
            });
        }
        if found.len() >= limit {
            Next::Stop
        } else {
            Next::More
        }
    })
    .map_err(super::store_err)?;
    match bad {
        Some(e) => Err(super::store_err(format!("an unreadable log record: {e}"))),
        None => Ok(found),
    }
}

/// The event a record holds, if it is an event's (`{"ev": ...}`: other records are skipped
/// without decoding them). A record that does not decode is noted in `bad`.
fn event_of(
    payload: &[u8],
    bad: &mut Option<serde_json::Error>,
) -> Option<tocsin_core::model::AcceptedEvent> {
    if !payload.starts_with(b"{\"ev\"") {
        return None;
    }
    match serde_json::from_slice::<Op>(payload) {
        Ok(Op::Event { event, .. }) => Some(event),
        Ok(_) => None,
        Err(e) => {
            *bad = Some(e);
            None
        }
    }
}

/// Where a read from `since` starts: the last segment whose first event is no later than it
/// (each segment's first event is found by reading up to it), or the first segment.
fn start(dir: &Path, since: Option<Timestamp>) -> Result<Position> {
    let Some(since) = since else {
        return Ok(Position::default());
    };
    let segments = match log::segments(dir) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Position::default()),
        Err(e) => return Err(super::store_err(e)),
    };
    let mut start = Position::default();
    for segment in segments {
        let mut first = None;
        let mut bad = None;
        log::read(dir, Position { segment, offset: 0 }, |at, payload| {
            if at.segment != segment {
                return Next::Stop;
            }
            first = event_of(payload, &mut bad).map(|e| e.at);
            if first.is_some() || bad.is_some() {
                Next::Stop
            } else {
                Next::More
            }
        })
        .map_err(super::store_err)?;
        match first {
            Some(t) if t <= since => start = Position { segment, offset: 0 },
            Some(_) => break,
            None => {}
        }
    }
    Ok(start)
}

fn parse_cursor(cursor: &str) -> Result<Position> {
    let bad = || {
        Error::BadRequest(format!(
            "not a cursor of this server's event log: `{cursor}`"
        ))
    };
    let (segment, offset) = cursor.split_once('-').ok_or_else(bad)?;
    Ok(Position {
        segment: segment.parse().map_err(|_| bad())?,
        offset: offset.parse().map_err(|_| bad())?,
    })
}
