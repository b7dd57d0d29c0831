//! Tocsin's core: the MLRun-compatible domain model, the alert engine, the store traits with an
//! in-memory store, and the service operations every host (`tocsin serve`, the Lambdas,
//! `tocsin test`) runs. Nothing here reads the wall clock or does I/O of its own.

pub mod compiled;
pub mod dispatch;
pub mod engine;
pub mod error;
pub mod model;
pub mod service;
pub mod settings;
pub mod store;
pub mod templates;

pub use dispatch::Dispatch;
pub use error::{Error, Result};
pub use service::Service;
pub use settings::{AlertsMode, AlertsSettings};
