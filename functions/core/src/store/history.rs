//! Recorded events: what clients posted, kept for a retention period and read back in order of
//! arrival, for `explain` (an entity's last events) and the backtest (a period's events
//! replayed through candidate rules). The embedded store reads them from its event log, the
//! DynamoDB store from the items it keeps for them, the memory store from a list.

use serde::{Deserialize, Serialize};

use crate::model::{AcceptedEvent, EventKind, Timestamp};

/// The most events one read returns.
pub const MAX_EVENTS_PER_READ: usize = 100_000;

/// Which recorded events to read: one project's, in order of arrival.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub project: String,
    /// Events at or after this time.
    pub since: Option<Timestamp>,
    /// Events before this time.
    pub until: Option<Timestamp>,
    /// Events of these kinds (empty: every kind).
    pub kinds: Vec<EventKind>,
    /// Events about this entity.
    pub entity: Option<String>,
    /// Resume after this cursor, the `cursor` of the last event of the page before. The store
    /// that gave it reads it; anything else is a 400.
    pub after: Option<String>,
    /// At most this many (at most [`MAX_EVENTS_PER_READ`]).
    pub limit: usize,
}

impl EventQuery {
    /// Whether `ev` passes the filters (the cursor and the page are the store's).
    pub fn matches(&self, ev: &AcceptedEvent) -> bool {
        ev.project == self.project
            && self.since.is_none_or(|s| ev.at >= s)
            && self.until.is_none_or(|u| ev.at < u)
            && (self.kinds.is_empty() || self.kinds.contains(&ev.kind))
            && self.entity.as_ref().is_none_or(|e| *e == ev.entity_id)
    }

    /// The page size, bounded.
    pub fn page(&self) -> usize {
        self.limit.clamp(1, MAX_EVENTS_PER_READ)
    }
}

/// A recorded event, with where it is: the cursor the next page starts after. Written one a
/// line by `GET /projects/{p}/events` (NDJSON) and read back by `tocsin backtest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    pub cursor: String,
    #[serde(flatten)]
    pub event: AcceptedEvent,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_recorded_event_is_one_flat_json_object() {
        let event: AcceptedEvent = serde_json::from_value(json!({
            "project": "p", "kind": "failed", "entity_kind": "job", "entity_id": "j1",
            "value_dict": {"x": 1}, "at": "2026-12-01T00:00:00+00:00", "idempotency_key": null,
            "chain": []
        }))
        .expect("event");
        let r = Recorded {
            cursor: "3-4096".into(),
            event,
        };
        let line = serde_json::to_value(&r).expect("json");
        assert_eq!(line["cursor"], "3-4096");
        assert_eq!(line["entity_id"], "j1");
        let back: Recorded = serde_json::from_value(line).expect("reads back");
        assert_eq!(back, r);
        let q = EventQuery {
            project: "p".into(),
            kinds: vec![EventKind::Failed],
            entity: Some("j1".into()),
            since: Timestamp::parse("2026-12-01T00:00:00Z"),
            ..EventQuery::default()
        };
        assert!(q.matches(&r.event));
        assert!(
            !EventQuery {
                until: q.since,
                ..q.clone()
            }
            .matches(&r.event),
            "until excludes"
        );
        assert_eq!(q.page(), 1, "a limit of zero reads one");
    }
}
