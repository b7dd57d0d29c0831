//! Tocsin's service: the embedded store, the HTTP API (MLRun-compatible), notification
//! delivery, operator configuration, and the `tocsin` command's pieces.

pub mod api;
pub mod client;
pub mod config;
pub mod embedded;
pub mod notify;
pub mod rules;
pub mod serve;
