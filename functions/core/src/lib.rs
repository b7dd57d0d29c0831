//! Tocsin's core: the MLRun-compatible domain model, the engine (the one place that decides what
//! an event or an alert change does), the store traits with an in-memory store, the dispatcher
//! trait, and the service operations every host (`tocsin serve`, the Lambdas, `tocsin test`)
//! runs. Nothing here reads the wall clock or does I/O of its own.
//!
//! The crates run one way: `tocsin` and `tocsin-aws` (the hosts) → `tocsin-adapters` (the
//! router and the notifier they share) → `tocsin-rules` (the rule language) → `tocsin-core`.

pub mod auth;
pub mod backtest;
pub mod channels;
pub mod compiled;
pub mod dispatch;
pub mod engine;
pub mod error;
pub mod model;
pub mod ops;
pub mod service;
pub mod settings;
pub mod store;
pub mod templates;

pub use dispatch::Dispatch;
pub use error::{Error, Result};
pub use service::{AlertHook, Service, SilenceFilter};
pub use settings::{AlertsMode, AlertsSettings};
