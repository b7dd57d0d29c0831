//! The SQS queue of events: the API's batch endpoint queues accepted events here, and the
//! evaluator Lambda takes them in batches.
//!
//! A message carries many events (`{"id": ..., "events": [...]}`, up to [`MAX_MESSAGE_EVENTS`]
//! or about 240 KiB): SQS bills and limits per message, and the evaluator's exactly-once
//! receipts are kept per message, so that fewer, fuller messages make both cheaper. The id in
//! the body, not SQS's message id, names the message for the receipts: a send that SQS took
//! and then answered with an error is sent again by the SDK as a second message with the same
//! body, and its events are counted once all the same.

use async_trait::async_trait;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use tocsin_adapters::api::EventQueue;
use tocsin_core::error::{Backend, Error, Result};
use tocsin_core::model::AcceptedEvent;

/// SQS takes at most 10 messages, and 256 KiB, per `SendMessageBatch` (and per message).
const MAX_ENTRIES: usize = 10;
const MAX_BATCH_BYTES: usize = 250 * 1024;

/// A message holds at most this many events, and this many bytes. Fewer than SQS would take:
/// a message is also what fails and is retried as one, and what one evaluator invocation
/// (6 MB of payload) must get through in its timeout.
pub const MAX_MESSAGE_EVENTS: usize = 500;
const MAX_MESSAGE_BYTES: usize = 240 * 1024;

/// The queue, with its client (built once per Lambda container).
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            url: url.into(),
        }
    }

    async fn send(&self, bodies: &[String]) -> Result<()> {
        let entries = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .map_err(|e| Error::backend(Backend::Sqs, e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                Error::backend(
                    Backend::Sqs,
                    format!(
                        "SQS SendMessageBatch failed: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(&e)
                    ),
                )
            })?;
        if let Some(f) = out.failed().first() {
            return Err(Error::backend(
                Backend::Sqs,
                format!(
                    "SQS refused {} of {} events: {}",
                    out.failed().len(),
                    bodies.len(),
                    f.message().unwrap_or(f.code())
                ),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl EventQueue for SqsQueue {
    /// Packs the events into messages and sends them, up to 10 messages (and 250 KiB) per
    /// request. A failure part-way leaves the earlier messages queued: clients that retry should
    /// give events an `id`, which the evaluator counts once.
    async fn enqueue(&self, events: &[AcceptedEvent]) -> Result<()> {
        let mut batch: Vec<String> = Vec::with_capacity(MAX_ENTRIES);
        let mut bytes = 0;
        for body in pack(events)? {
            if batch.len() == MAX_ENTRIES || bytes + body.len() > MAX_BATCH_BYTES {
                self.send(&batch).await?;
                batch.clear();
                bytes = 0;
            }
            bytes += body.len();
            batch.push(body);
        }
        if !batch.is_empty() {
            self.send(&batch).await?;
        }
        Ok(())
    }
}

/// The bodies of the messages that carry `events`, in order: each an id of its own and up to
/// [`MAX_MESSAGE_EVENTS`] events, about [`MAX_MESSAGE_BYTES`].
pub fn pack(events: &[AcceptedEvent]) -> Result<Vec<String>> {
    let start = || {
        format!(
            "{{\"id\":\"q{:016x}\",\"events\":[",
            crate::dynamo::write_token()
        )
    };
    let mut bodies = Vec::new();
    let mut body = start();
    let mut count = 0;
    for ev in events {
        let one =
            serde_json::to_string(ev).map_err(|e| Error::backend(Backend::Sqs, e.to_string()))?;
        if count > 0
            && (count == MAX_MESSAGE_EVENTS || body.len() + one.len() + 2 > MAX_MESSAGE_BYTES)
        {
            body.push_str("]}");
            bodies.push(std::mem::replace(&mut body, start()));
            count = 0;
        }
        if count > 0 {
            body.push(',');
        }
        body.push_str(&one);
        count += 1;
    }
    if count > 0 {
        body.push_str("]}");
        bodies.push(body);
    }
    Ok(bodies)
}

/// A message as the API packs it.
#[derive(serde::Deserialize)]
struct Packed {
    id: String,
    events: Vec<AcceptedEvent>,
}

/// The id and the events of a message body; older bodies (an array, or one event, as an older
/// API queued them) have no id of their own, and are named by SQS's message id.
pub fn unpack(body: &str) -> serde_json::Result<(Option<String>, Vec<AcceptedEvent>)> {
    let start = body.trim_start();
    if start.starts_with('[') {
        serde_json::from_str(body).map(|events| (None, events))
    } else if start.starts_with("{\"id\"") {
        serde_json::from_str::<Packed>(body).map(|p| (Some(p.id), p.events))
    } else {
        serde_json::from_str(body).map(|ev| (None, vec![ev]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_core::model::{EntityKind, EventKind, Timestamp};

    fn event(i: usize, pad: usize) -> AcceptedEvent {
        AcceptedEvent {
            project: "p".into(),
            kind: EventKind::Failed,
            entity_kind: EntityKind::Job,
            entity_id: format!("j{i}{}", "x".repeat(pad)),
            value_dict: Default::default(),
            at: Timestamp::from_secs(i as i64),
            idempotency_key: None,
            chain: Vec::new(),
            message: None,
        }
    }

    #[test]
    fn events_pack_into_full_messages_and_unpack_in_order() {
        let events: Vec<AcceptedEvent> = (0..1201).map(|i| event(i, 0)).collect();
        let bodies = pack(&events).expect("packs");
        assert_eq!(bodies.len(), 3, "500 + 500 + 201");
        let unpacked: Vec<(Option<String>, Vec<AcceptedEvent>)> =
            bodies.iter().map(|b| unpack(b).expect("unpacks")).collect();
        let ids: std::collections::BTreeSet<_> = unpacked
            .iter()
            .map(|(id, _)| id.clone().expect("an id"))
            .collect();
        assert_eq!(ids.len(), 3, "each message an id of its own");
        let back: Vec<AcceptedEvent> = unpacked.into_iter().flat_map(|(_, e)| e).collect();
        assert_eq!(back, events);
        let big: Vec<AcceptedEvent> = (0..40).map(|i| event(i, 20_000)).collect();
        let bodies = pack(&big).expect("packs");
        assert!(bodies.iter().all(|b| b.len() <= MAX_MESSAGE_BYTES));
        assert_eq!(bodies.len(), 4, "11 events of 20 KB per message");
        let one = serde_json::to_string(&events[0]).expect("json");
        assert_eq!(
            unpack(&one).expect("an unpacked message"),
            (None, vec![events[0].clone()])
        );
        let array = format!("[{one}]");
        assert_eq!(
            unpack(&array).expect("an older message"),
            (None, vec![events[0].clone()])
        );
        assert!(pack(&[]).expect("nothing").is_empty());
    }
}
