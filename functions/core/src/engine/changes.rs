//! The change set: exactly what an operation changed, named so that a store can commit it
//! without deciding anything. The memory store applies it, the embedded store keeps its
//! activations (its state is in memory, kept by its log of operations), and DynamoDB turns it
//! into conditional writes.

use super::Closed;
use std::sync::Arc;

use crate::model::{Activation, Delivery};

/// A change to persisted windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowChange {
    /// The window of this alert (for this entity, or the shared one) changed: write it.
    Put {
        alert: u64,
        entity: Option<Box<str>>,
    },
    /// Every window of this alert is gone.
    Clear { alert: u64 },
}

/// What an operation changed. Ids may repeat (an alert fired twice in one batch): a store
/// writes each named thing once, as it is after the operation.
#[derive(Debug, Default)]
pub struct Changes {
    /// Alerts whose config (rule, dates) changed.
    pub rules: Vec<u64>,
    /// Alerts whose runtime state changed.
    pub runtimes: Vec<u64>,
    /// Alerts deleted (with their windows).
    pub removed: Vec<u64>,
    pub windows: Vec<WindowChange>,
    /// New activations, shared with the outcomes that report them (`Fired`): one allocation
    /// per firing, whoever keeps it longest frees it.
    pub activations: Vec<Arc<Activation>>,
    /// Activations that a reset or a cooldown's end closed.
    pub closed: Vec<Closed>,
    /// Deliveries added to open activations (an acknowledgement's).
    pub noted: Vec<super::Noted>,
    /// Delivery outcomes to record on activations.
    pub deliveries: Vec<(u64, Delivery)>,
    /// Activations deleted by retention: (id, project).
    pub activations_removed: Vec<(u64, String)>,
    /// Set by the intake when a close it recorded has resolved notifications, for the outcome
    /// of the event that caused it (not something to commit).
    pub resolving: bool,
}

impl Changes {
    /// Empties it and keeps its room: a replay reuses one change set for every event.
    pub fn clear(&mut self) {
        self.rules.clear();
        self.runtimes.clear();
        self.removed.clear();
        self.windows.clear();
        self.activations.clear();
        self.closed.clear();
        self.noted.clear();
        self.deliveries.clear();
        self.activations_removed.clear();
        self.resolving = false;
    }

    /// Whether the operation changed nothing that needs writing.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
            && self.runtimes.is_empty()
            && self.removed.is_empty()
            && self.windows.is_empty()
            && self.activations.is_empty()
            && self.closed.is_empty()
            && self.noted.is_empty()
            && self.deliveries.is_empty()
            && self.activations_removed.is_empty()
    }
}
