//! Activations: the record of one firing of an alert, and what its notifications did.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::alert::Criteria;
use super::kinds::{EntityKind, EventKind, Severity};
use super::time::Timestamp;

/// One firing of an alert (MLRun's `AlertActivation`), newest first in listings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activation {
    pub id: u64,
    pub name: String,
    pub project: String,
    pub severity: Severity,
    pub activation_time: Timestamp,
    pub entity_id: String,
    pub entity_kind: EntityKind,
    pub criteria: Criteria,
    pub event_kind: EventKind,
    pub number_of_events: u64,
    pub notifications: Vec<NotificationState>,
    pub reset_time: Option<Timestamp>,
    /// Tocsin extension: the alert's summary with its placeholders filled in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Tocsin extension: the `value_dict` of the event that fired the alert.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub value_dict: Map<String, Value>,
}

/// What the notifications of one kind did for an activation (MLRun's `NotificationState`).
/// `err` is empty when every one of them was delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationState {
    pub kind: String,
    pub err: Option<String>,
    pub summary: NotificationSummary,
}

/// How many notifications of a kind were delivered and how many failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NotificationSummary {
    pub failed: u32,
    pub succeeded: u32,
}
