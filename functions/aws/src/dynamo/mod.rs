//! The DynamoDB store: the same store traits as the embedded store, on one DynamoDB table, for
//! Lambda functions that share nothing but the table.
//!
//! # Data model (one table, `pk`/`sk` strings, on-demand, TTL on `expires_at`)
//!
//! | item | `pk` | `sk` | attributes | size |
//! |---|---|---|---|---|
//! | catalog | `META` | `CATALOG` | `v` (bumped by every config change, reset and acknowledgement), `alerts` (count), `next_alert`, `next_activation` | < 100 B |
//! | alert | `ALERT` | project `\u{1}` name | `id`, `doc` (rule with secrets, dates: JSON), `rt` (runtime: JSON), `v` (version), `gen` (window generation), `gsi2pk` = `DUE{shard}` and `gsi2sk` while an absence alert's awaited entities wait (see `absences`) | 1–4 KB |
//! | window | `W#{alert id}#{gen}` | `#` (shared) or `E#{entity}` | `w` (event times: the first in µs, then deltas), `m` (receipts of the queue messages counted, 16 B each, binary), `v`, `expires_at`; absence alerts: `gsi2pk` = `DUE{shard}`, `gsi2sk` = the deadline | ≤ `max_criteria_count` times, about 1 KB at 99, plus the receipts |
//! | idempotency key | `I#{project}` | the key (client-given ids only) | `exp` (µs), `expires_at` | < 300 B |
//! | activation | `ACT{id % 8}` (before: `ACT`, still read) | id, 20 digits | `doc` (JSON), `at`, `v`, `reset_time`, `gsi1pk` = `ACT#{project}`, `gsi1sk`, `gsi2pk` = `PENDING` while a notification is pending, `gsi2sk`, `expires_at` | 1–3 KB |
//! | silence | `SIL` | project `\u{1}` id | `doc` (JSON), `expires_at` (its end plus the retention) | < 1 KB |
//! | email subscriptions | `SUBS` | project `\u{1}` name | `arns` (address → subscription ARN) | < 1 KB |
//! | recorded events | `EV#{project}#{day}` | first event's time, 20 digits, `#` message or request id | `es` (the events: JSON), `expires_at` (see `history`) | one message's events, up to 240 KiB |
//!
//! Indexes: `gsi1` (`gsi1pk`, `gsi1sk`) lists a project's activations newest first; `gsi2`
//! (`gsi2pk`, `gsi2sk`) is sparse: the outbox of activations with pending notifications
//! (`PENDING`), and the absences by deadline (`DUE0` to `DUE7`).
//! Activations of all projects are listed from the base table: the eight partitions (and the
//! legacy `ACT`) read newest first and merged by id. Spreading them lets firings go past one
//! partition's 1,000 writes a second.
//!
//! # The hot path: one conditional write per matched (event, alert), no read
//!
//! Each store instance (one per Lambda container) caches the alert configs with their runtime
//! state and the windows it has written, each with the version it read or wrote. An event is
//! evaluated by the engine on the cached values and committed with one `PutItem` of its window,
//! conditional on the cached version: no read. When the window meets the criteria, the firing
//! is one `TransactWriteItems`: the window, the alert's runtime (conditional on the alert's
//! version) and the new activation. When two Lambdas deliver the threshold-crossing events
//! together, one transaction wins; the other fails its condition, reads the current window
//! and alert (strongly consistent), and evaluates its event again: exactly one activation, and
//! every event counted once. A batch (the SQS evaluator) evaluates all its events of one window
//! in memory and writes once.
//!
//! # Exactly once on the queued path: receipts in the window
//!
//! The evaluator's events carry their SQS message id; a message holds many events. Each
//! window keeps, with its times, how many of each recent message's events it counted (see
//! `receipts`), written in the same conditional write as the times: a redelivery skips what
//! was counted, window by window, and costs no claim. Only events with a client-given id
//! claim it as an idempotency key, on both paths, since a client may retry at any time within
//! the key's lifetime.
//!
//! The cache checks the catalog's version (one `GetItem`) at most every
//! [`DynamoSettings::config_ttl`], and reloads the alerts when it changed. A reset or a config
//! change moves the alert to a new window generation, so windows never need deleting: old
//! generations are never read again, and TTL removes them. TTL deletes lazily, so every read
//! also filters on `expires_at`.

mod activations;
mod alerts;
mod audit;
mod cache;
mod due;
mod history;
mod intake;
pub(crate) mod item;
mod receipts;
mod silences;
mod table;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use tocsin_core::engine::{EventOutcome, Ticked};
use tocsin_core::error::Result;
use tocsin_core::model::{AcceptedEvent, Span, Timestamp};
use tocsin_core::ops;
use tocsin_core::store::{EventQuery, EventStore, Recorded};
use tokio::sync::Mutex;

pub use item::write_token;
pub use table::create_table;

use cache::Cache;

/// How the store behaves; the defaults suit Lambda.
#[derive(Debug, Clone)]
pub struct DynamoSettings {
    /// The table's name.
    pub table: String,
    /// How stale the cached alert configs may be for event evaluation: the catalog version is
    /// checked at most this often. API reads always go to the table.
    pub config_ttl: Duration,
    /// Activations are kept this long (their `expires_at`).
    pub activation_retention: Span,
    /// How long a window remembers a queue message it counted (see `receipts`): at least the
    /// queue's visibility timeout times its `maxReceiveCount`, after which SQS no longer
    /// redelivers the message.
    pub redelivery_horizon: Duration,
    /// How long events are kept for `explain` and the backtest (see `history`); None keeps
    /// none.
    pub event_retention: Option<Span>,
}

impl DynamoSettings {
    /// Settings for `table` with the defaults: configs checked every 5 s, activations kept
    /// 30 days, messages remembered 15 minutes (the template's queue: 180 s visibility, 5
    /// receives), events kept 7 days.
    pub fn new(table: impl Into<String>) -> Self {
        DynamoSettings {
            table: table.into(),
            config_ttl: Duration::from_secs(5),
            activation_retention: Span::from_secs(30 * 86_400),
            redelivery_horizon: Duration::from_secs(900),
            event_retention: Some(Span::from_secs(7 * 86_400)),
        }
    }
}

/// The store on DynamoDB; cheap to clone (the client and the cache are shared).
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    settings: Arc<DynamoSettings>,
    cache: Arc<Mutex<Cache>>,
}

impl DynamoStore {
    /// A store on an existing table (see [`create_table`]).
    pub fn new(client: Client, settings: DynamoSettings) -> Self {
        DynamoStore {
            client,
            settings: Arc::new(settings),
            cache: Arc::new(Mutex::new(Cache::default())),
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.settings.table
    }

    /// The DynamoDB client, for the hosts that share it (email subscriptions).
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// How many times a change of an activation re-reads and retries after losing a conditional
/// write to a concurrent writer before it gives up with an error.
const MAX_CONFLICTS: usize = ops::MAX_CONFLICTS;

/// The operations of core, on this store's units: no sequence of its own.
#[async_trait]
impl EventStore for DynamoStore {
    async fn apply_event(&self, event: &AcceptedEvent, ttl: Span) -> Result<EventOutcome> {
        self.apply_events(std::slice::from_ref(event), ttl)
            .await
            .pop()
            .unwrap_or_else(|| Ok(EventOutcome::default()))
    }

    async fn apply_events(&self, events: &[AcceptedEvent], ttl: Span) -> Vec<Result<EventOutcome>> {
        let mut session = intake::Session {
            store: self.clone(),
            cache: self.cache.clone().lock_owned().await,
        };
        ops::ingest::ingest(&mut session, events, ttl).await
    }

    /// The alerts due by `now` are found in the cached configs (their cooldown ends are on
    /// the alert items, which the cache holds) and the due index of absences (see `due`).
    async fn tick(&self, now: Timestamp) -> Result<Ticked> {
        ops::tick::tick(&mut due::TickSession::new(self.clone()), now).await
    }

    async fn recorded_events(&self, query: &EventQuery) -> Result<Vec<Recorded>> {
        self.read_events(query).await
    }
}
