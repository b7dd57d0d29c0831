//! Storage, as narrow traits: alert configs with their state, event intake (which must be
//! atomic), and activations. Stores decide nothing: an event goes through the engine's
//! [`intake`](crate::engine::intake) and an alert change through its
//! [`update`](crate::engine::update), and the store keeps what they return. The in-memory store
//! is here; the embedded store (`tocsin serve`) and the DynamoDB store (the Lambdas) implement the
//! same traits and pass the same contract suite (`contract`).

mod history;
mod memory;
mod query;
mod silences;
pub mod units;

#[cfg(any(test, feature = "contract-tests"))]
pub mod contract;
#[cfg(any(test, feature = "contract-tests"))]
pub mod token_contract;

use std::sync::Arc;

use async_trait::async_trait;

pub use history::{EventQuery, MAX_EVENTS_PER_READ, Recorded};
pub use memory::{AlertEntry, Held, MemoryState, MemoryStore};
pub use query::{ActivationQuery, EntityFilter, NameFilter};
pub use silences::Silences;

use crate::auth::{AuditEntry, TokenRecord};
use crate::compiled::Rule;
use crate::engine::{EventOutcome, PutAlert};
use crate::error::Result;
use crate::model::{AcceptedEvent, Activation, AlertConfig, Delivery, Silence, Span, Timestamp};

/// An alert as stored: its rule (config and secrets), its runtime state and its dates.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AlertRecord {
    pub id: u64,
    pub rule: Arc<Rule>,
    pub runtime: crate::engine::Runtime,
    pub created: Timestamp,
    pub updated: Timestamp,
}

impl AlertRecord {
    /// The config as answered at `now`: enriched with id, dates, state and count; secrets masked.
    pub fn view(&self, now: Timestamp) -> AlertConfig {
        let mut c = self.rule.config.clone();
        c.id = Some(self.id);
        c.created = Some(self.created);
        c.updated = Some(self.updated);
        c.state = self.runtime.state_at(now);
        c.count = self.runtime.count;
        c.acknowledged = self.runtime.acknowledged.clone();
        c.last_activation_time = self.runtime.last_fired;
        c
    }

    /// When this alert's view changes with no write, after `now`: the end of an active auto
    /// alert's cooldown (see [`crate::engine::Runtime::state_at`]). A cached listing is good
    /// until the earliest of these.
    pub fn changes_by_itself_at(&self, now: Timestamp) -> Option<Timestamp> {
        match self.runtime.cooldown_until {
            Some(until)
                if self.runtime.state == crate::model::AlertState::Active && until > now =>
            {
                Some(until)
            }
            _ => None,
        }
    }
}

/// What a put did.
#[derive(Debug, Clone)]
pub struct PutOutcome {
    pub alert: AlertRecord,
    pub created: bool,
    /// Whether the alert's state was reset (see [`crate::engine::Runtime::update_resets`]).
    pub reset: bool,
}

/// Alert configs and their runtime state.
#[async_trait]
pub trait AlertStore: Send + Sync {
    /// Creates or replaces an alert. A new alert gets the next id; an update keeps id and
    /// `created`, keeps stored secrets that the config refers to by their masked form, and
    /// resets the state when the engine says the change requires it.
    async fn put_alert(&self, put: PutAlert) -> Result<PutOutcome>;
    async fn get_alert(&self, project: &str, name: &str) -> Result<Option<AlertRecord>>;
    /// The alert with the window that an event about `entity` counts in, as it stands (empty
    /// when it has none yet): what `explain` reads. None when there is no such alert.
    async fn alert_window(
        &self,
        project: &str,
        name: &str,
        entity: &str,
    ) -> Result<Option<(AlertRecord, crate::engine::Window)>>;
    /// Alerts of a project (or of all, with `None`) in (project, name) order.
    async fn list_alerts(
        &self,
        project: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<AlertRecord>>;
    /// A token that changes whenever a listing of alerts could read differently other than by
    /// time passing (see [`AlertRecord::changes_by_itself_at`]): config changes, resets,
    /// acknowledgements, firings. It lets a listing answer "not modified" for one small read.
    /// It may change when nothing visible did; it must not stay the same when something did.
    async fn alerts_version(&self) -> Result<String>;
    /// Whether it existed.
    async fn delete_alert(&self, project: &str, name: &str) -> Result<bool>;
    /// Resets an alert on behalf of `by` (inactive, windows cleared, count kept, last
    /// activation closed as "reset by {by}"). Returns false when there is no such alert.
    async fn reset_alert(
        &self,
        project: &str,
        name: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<bool>;
    /// Records that `by` acknowledged the alert at `now` (see [`crate::engine::Runtime::acknowledge`]).
    /// Returns false when there is no such alert; an error when it is not active.
    async fn acknowledge_alert(
        &self,
        project: &str,
        name: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<bool>;
    /// Number of alerts across all projects.
    async fn alert_count(&self) -> Result<usize>;
    /// What became of the message of notification `name` of `activation` of alert
    /// `project/alert`: sent at `sent`, or given up (None); see [`crate::ops::change::delivered`].
    async fn delivered(
        &self,
        project: &str,
        alert: &str,
        activation: u64,
        name: &str,
        sent: Option<Timestamp>,
    ) -> Result<()>;
}

/// Event intake: count an event in the windows of the alerts it matches and fire those whose
/// criteria are met, atomically with respect to other events.
#[async_trait]
pub trait EventStore: Send + Sync {
    async fn apply_event(
        &self,
        event: &AcceptedEvent,
        idempotency_ttl: Span,
    ) -> Result<EventOutcome>;

    /// Time passes: settles what came due by `now` with no event to settle it (the end of an
    /// auto alert's cooldown closes its activation then, and its resolved notifications go
    /// out). Hosts call it on a timer (`tocsin serve`), a schedule (AWS) or a virtual clock
    /// (`tocsin test`); a tick with nothing due writes nothing.
    async fn tick(&self, now: Timestamp) -> Result<crate::engine::Ticked>;

    /// Events it was handed, in order of arrival, as [`EventQuery`] selects them: what
    /// `explain` and the backtest read. Kept for the store's retention period.
    async fn recorded_events(&self, query: &EventQuery) -> Result<Vec<Recorded>>;

    /// Events in order of arrival, one outcome each. A store that writes remotely overrides
    /// this to write each window once per batch rather than once per event.
    async fn apply_events(
        &self,
        events: &[AcceptedEvent],
        idempotency_ttl: Span,
    ) -> Vec<Result<EventOutcome>> {
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            outcomes.push(self.apply_event(event, idempotency_ttl).await);
        }
        outcomes
    }
}

/// Activation records.
#[async_trait]
pub trait ActivationStore: Send + Sync {
    /// Activations matching the query, newest first, after `query.offset` and at most
    /// `query.limit` of them.
    async fn activations(&self, query: &ActivationQuery) -> Result<Vec<Activation>>;
    async fn activation(&self, project: &str, id: u64) -> Result<Option<Activation>>;
    /// Records what became of one notification of an activation (and so MLRun's per-kind
    /// summary). When no notification is pending any more, the activation leaves the outbox.
    async fn record_delivery(&self, id: u64, delivery: Delivery) -> Result<()>;
    /// The oldest `limit` activations with a notification still pending: the outbox, which the
    /// notifier drains after a restart or when more fires than it holds in memory (at least
    /// once; receivers dedup on the delivery key).
    async fn pending_deliveries(&self, limit: usize) -> Result<Vec<Activation>>;
    /// Deletes activations older than `before` (retention); returns how many.
    async fn prune_activations(&self, before: Timestamp) -> Result<usize>;
}

/// Silences (see [`crate::model::Silence`]). The service decides what a silence is (made,
/// changed, expired); the store keeps the newest version of each, by project and id.
#[async_trait]
pub trait SilenceStore: Send + Sync {
    /// Keeps `silence`, replacing the one of its project with its id, and drops the project's
    /// silences that ended more than `retention` before `now`. Event intake sees it from the
    /// next event on (DynamoDB: within the config cache's age).
    async fn put_silence(&self, silence: Silence, now: Timestamp, retention: Span) -> Result<()>;
    async fn silence(&self, project: &str, id: &str) -> Result<Option<Silence>>;
    /// The silences of `project` (all projects with None), by (project, id), expired ones
    /// included until they are dropped.
    async fn silences(&self, project: Option<&str>) -> Result<Vec<Silence>>;
}

/// The audit list: who changed what. Hosts record an entry after each change a principal made.
#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn record_audit(&self, entry: AuditEntry) -> Result<()>;
    /// Entries of a project (or of all, with `None`), newest first, at most `limit`.
    async fn audit_log(&self, project: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>>;
}

/// The tokens of `tocsin serve` (the AWS deployment authenticates with its JWT authorizer and
/// IAM instead). Records hold the hash of a token's secret, never the secret.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Stores a new token (ids are random; an existing id is replaced).
    async fn put_token(&self, record: TokenRecord) -> Result<()>;
    async fn token(&self, id: &str) -> Result<Option<TokenRecord>>;
    /// Every token, by id.
    async fn tokens(&self) -> Result<Vec<TokenRecord>>;
    /// Whether it existed.
    async fn delete_token(&self, id: &str) -> Result<bool>;
}

/// Everything the service needs of a store.
pub trait Store: AlertStore + EventStore + ActivationStore + AuditStore + SilenceStore {}
impl<T: AlertStore + EventStore + ActivationStore + AuditStore + SilenceStore> Store for T {}
