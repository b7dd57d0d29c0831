//! An event as posted to `POST /projects/{p}/events/{kind}`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::alert::{Entities, null_as_default};
use super::kinds::{EntityKind, EventKind};
use super::time::Timestamp;

/// Something that happened to an entity. The server stamps the time it was accepted; a
/// client-sent `timestamp` is kept for the record only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// May be left out of the body: the path names the kind.
    #[serde(default)]
    pub kind: Option<EventKind>,
    #[serde(default)]
    pub timestamp: Option<Value>,
    pub entity: Entities,
    #[serde(default, deserialize_with = "null_as_default")]
    pub value_dict: Map<String, Value>,
    /// Tocsin extension: an idempotency key. A retried event with the same id (or the same
    /// `Idempotency-Key` header) within the key's lifetime is counted once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// An event once accepted: its kind settled, its entity id checked, its time stamped. Queued
/// as JSON between the API and the evaluator (the AWS deployment's SQS path).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptedEvent {
    pub project: String,
    pub kind: EventKind,
    /// The entity's kind: fixed by a built-in event kind, chosen by the sender for a custom one.
    pub entity_kind: EntityKind,
    pub entity_id: String,
    pub value_dict: Map<String, Value>,
    pub at: Timestamp,
    pub idempotency_key: Option<String>,
    /// The alerts (`project/name`) whose `event` notifications led to this event, oldest
    /// first; empty for an event a client posted. Guards chained events against loops.
    pub chain: Vec<String>,
    /// The id of the queue message that carried the event (SQS `messageId`), for a store that
    /// recognises redeliveries itself (DynamoDB); None off a queue. A redelivery carries the
    /// same events under the same id, in the same order, which is what lets a window remember
    /// "counted the first n events of message m" instead of one key per event. Not part of the
    /// queued JSON: the queue assigns it on receipt.
    #[serde(skip)]
    pub message: Option<std::sync::Arc<str>>,
}
