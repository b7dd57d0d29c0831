//! Recorded events on DynamoDB: what `explain` and the backtest read back, kept for the event
//! retention (`TOCSIN_EVENT_RETENTION_DAYS`, 7; 0 keeps none).
//!
//! Events are kept packed: one item per queue message (or per request off the queue) and
//! project, `pk` = `EV#{project}`, `sk` = the first event's time in 20-digit microseconds and
//! the message's id, `es` = the events as a JSON array, `expires_at` the retention after the
//! newest. A message of 500 events is one write; a redelivered message writes the same item
//! again (same key, same events), so nothing is kept twice. Reading a period is one query of
//! the project's partition by time (DynamoDB splits a partition that grows hot by sort key);
//! an item's events are in order of arrival.
//!
//! A cursor is `{sk}|{n}`: the item and how many of its events were read.

use aws_sdk_dynamodb::types::AttributeValue;
use tocsin_core::engine::EventOutcome;
use tocsin_core::error::{Backend, Error, Result};
use tocsin_core::model::{AcceptedEvent, Span, Timestamp};
use tocsin_core::store::{EventQuery, Recorded};

use super::DynamoStore;
use super::item::{Item, get_s, key, n, s, sdk_err, ttl_secs};

fn pk(project: &str) -> String {
    format!("EV#{project}")
}

/// The sort key of a time: 20-digit microseconds (before 1970: zero), sorting as times do.
fn time_sk(t: Timestamp) -> String {
    format!("{:020}", t.0.max(0))
}

/// A cursor's parts: the item's sort key, and how many of its events were read.
fn parse_cursor(cursor: &str) -> Result<(String, usize)> {
    let bad = || {
        Error::BadRequest(format!(
            "not a cursor of this deployment's events: `{cursor}`"
        ))
    };
    let (sk, n) = cursor.rsplit_once('|').ok_or_else(bad)?;
    if sk.is_empty() {
        return Err(bad());
    }
    Ok((sk.to_owned(), n.parse().map_err(|_| bad())?))
}

impl DynamoStore {
    /// Keeps what was counted for the history: a queue message's events under its id (a
    /// redelivery writes the same item again, or only if it is missing when all of them were
    /// counted before); off the queue, an event with a key was kept in the commit of its
    /// counts (see `intake`), one without under an id of the request, tried
    /// [`HISTORY_ATTEMPTS`] times. A duplicate of another event is that one's to keep.
    /// Returns, per event, an error to answer instead of its outcome when its message could
    /// not be kept: it fails, and is kept when the queue delivers it again.
    pub(super) async fn keep_recorded(
        &self,
        events: &[AcceptedEvent],
        outcomes: &[Result<EventOutcome>],
    ) -> Vec<Option<Error>> {
        let mut failed: Vec<Option<Error>> = events.iter().map(|_| None).collect();
        if self.settings.event_retention.is_none() {
            return failed;
        }
        // Per message: its events (the ones counted now or by an earlier delivery of it; a
        // duplicate of another event is that one's to keep), and whether all were counted
        // before (a redelivery).
        let mut by_message: Vec<(&str, Vec<usize>, bool)> = Vec::new();
        let mut loose = Vec::new();
        for (i, (ev, outcome)) in events.iter().zip(outcomes).enumerate() {
            let Ok(o) = outcome else {
                continue;
            };
            if o.unknown_kind || (o.duplicate && !o.redelivered) {
                continue;
            }
            match ev.message.as_deref() {
                Some(m) => match by_message.iter_mut().find(|(id, _, _)| *id == m) {
                    Some((_, v, all_before)) => {
                        v.push(i);
                        *all_before &= o.redelivered;
                    }
                    None => by_message.push((m, vec![i], o.redelivered)),
                },
                // A keyed event off the queue was kept with its counts, in their commit.
                None if ev.idempotency_key.is_some() => {}
                None => loose.push(i),
            }
        }
        for (id, evs, before) in by_message {
            let refs: Vec<&AcceptedEvent> = evs.iter().map(|&i| &events[i]).collect();
            if let Err(e) = self.keep_events(&refs, id, before).await {
                // The message is delivered again, and its events kept then.
                tracing::error!(error = %e, batch = %id, "cannot keep a message's events for the history; it is delivered again");
                for i in evs {
                    failed[i] = Some(e.clone());
                }
            }
        }
        if !loose.is_empty() {
            let refs: Vec<&AcceptedEvent> = loose.iter().map(|&i| &events[i]).collect();
            let id = request_id();
            for attempt in 1..=HISTORY_ATTEMPTS {
                match self.keep_events(&refs, &id, attempt > 1).await {
                    Ok(()) => break,
                    Err(e) if attempt == HISTORY_ATTEMPTS => {
                        tracing::error!(error = %e, batch = %id, "cannot keep events for the history; they were counted");
                    }
                    Err(_) => {
                        let backoff = 50u64 << attempt.min(5);
                        tokio::time::sleep(std::time::Duration::from_millis(backoff)).await
                    }
                }
            }
        }
        failed
    }

    /// Keeps `events` (handed over together: a queue message's, or a request's) for the
    /// retention, one item per project. `batch` names them: the message id, or a unique id of
    /// the request. `seen_before`: a redelivered message whose events were all counted
    /// already; its items are written only if they are not there (the delivery that counted
    /// them may have stopped before keeping them), which costs a read, not a write.
    pub(super) async fn keep_events(
        &self,
        events: &[&AcceptedEvent],
        batch: &str,
        seen_before: bool,
    ) -> Result<()> {
        for item in self.events_items(events, batch)? {
            if seen_before {
                let (project_pk, sk) = (get_s(&item, "pk")?, get_s(&item, "sk")?);
                if self.kept_item(project_pk, sk).await? {
                    continue;
                }
            }
            self.client
                .put_item()
                .table_name(self.table())
                .set_item(Some(item))
                .send()
                .await
                .map_err(|e| sdk_err("PutItem", e))?;
        }
        Ok(())
    }

    /// The items that keep `events` (one per project) under the batch id `batch`; none when
    /// no events are kept.
    pub(super) fn events_items(&self, events: &[&AcceptedEvent], batch: &str) -> Result<Vec<Item>> {
        let Some(retention) = self.settings.event_retention else {
            return Ok(Vec::new());
        };
        let mut groups: Vec<(&str, Vec<&AcceptedEvent>)> = Vec::new();
        for ev in events {
            match groups.iter_mut().find(|(p, _)| *p == ev.project) {
                Some((_, v)) => v.push(ev),
                None => groups.push((&ev.project, vec![ev])),
            }
        }
        groups
            .into_iter()
            .map(|(project, evs)| {
                let first = evs.iter().map(|e| e.at).min().unwrap_or(Timestamp(0));
                let newest = evs.iter().map(|e| e.at).max().unwrap_or(first);
                let mut item = key(pk(project), format!("{}#{batch}", time_sk(first)));
                let packed = serde_json::to_string(&evs).map_err(|e| {
                    Error::backend(Backend::DynamoDb, format!("cannot encode events: {e}"))
                })?;
                item.insert("es".into(), s(packed));
                item.insert("expires_at".into(), n(ttl_secs(newest.plus(retention))));
                Ok(item)
            })
            .collect()
    }

    /// Whether the item of a batch's events is there.
    async fn kept_item(&self, project_pk: &str, sk: &str) -> Result<bool> {
        let out = self
            .client
            .get_item()
            .table_name(self.table())
            .set_key(Some(key(project_pk, sk)))
            .projection_expression("pk")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem", e))?;
        Ok(out.item().is_some())
    }

    /// The recorded events `query` selects: the project's items from the cursor's (or the
    /// period's start) on, in pages of the query's size.
    pub(super) async fn read_events(&self, query: &EventQuery) -> Result<Vec<Recorded>> {
        let resume = query.after.as_deref().map(parse_cursor).transpose()?;
        // An item that starts before `since` may hold events after it: start an hour back
        // (an item spans one request or message, which take seconds).
        let from = match &resume {
            Some((sk, _)) => sk.clone(),
            None => time_sk(
                query
                    .since
                    .map_or(Timestamp(0), |t| t.plus(Span::from_secs(-3_600))),
            ),
        };
        let to = query
            .until
            .map_or("~".to_owned(), |t| format!("{}~", time_sk(t)));
        let limit = query.page();
        let now = ttl_secs(Timestamp::now());
        let mut found = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(self.table())
            .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
            .expression_attribute_values(":pk", s(pk(&query.project)))
            .expression_attribute_values(":from", s(from))
            .expression_attribute_values(":to", s(to))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item: Item = item.map_err(|e| sdk_err("Query", e))?;
            if let Some(AttributeValue::N(v)) = item.get("expires_at")
                && v.parse::<i64>().is_ok_and(|e| e <= now)
            {
                continue;
            }
            let sk = get_s(&item, "sk")?.to_owned();
            let evs: Vec<AcceptedEvent> =
                serde_json::from_str(get_s(&item, "es")?).map_err(|e| {
                    Error::backend(Backend::DynamoDb, format!("unreadable events: {e}"))
                })?;
            let skip = match &resume {
                Some((rsk, n)) if *rsk == sk => *n,
                _ => 0,
            };
            for (i, ev) in evs.into_iter().enumerate().skip(skip) {
                if query.matches(&ev) {
                    found.push(Recorded {
                        cursor: format!("{sk}|{}", i + 1),
                        event: ev,
                    });
                    if found.len() >= limit {
                        return Ok(found);
                    }
                }
            }
        }
        Ok(found)
    }
}

/// Writes of a request's events for the history are tried this many times (each with the
/// SDK's own retries) before the history goes without them: they were counted, and a client's
/// retry would be a duplicate that keeps nothing.
const HISTORY_ATTEMPTS: u32 = 10;

/// An id for the events of one call off the queue, unique across containers.
fn request_id() -> String {
    format!("r{:016x}", super::item::write_token())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_cursors() {
        let t = Timestamp::parse("2026-12-04T23:59:59Z").expect("time");
        assert_eq!(pk("p"), "EV#p");
        assert!(time_sk(t) < time_sk(t.plus(Span(1))));
        assert_eq!(
            parse_cursor("00001795000000000000#m|1|3").expect("cursor"),
            ("00001795000000000000#m|1".into(), 3),
            "a message id may hold the separator"
        );
        assert!(parse_cursor("x").is_err());
        assert!(parse_cursor("|3").is_err());
        assert!(parse_cursor("a|b").is_err());
    }
}
