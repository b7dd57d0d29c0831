//! `tocsin serve` and the `tocsin` command: the embedded store, operator configuration, the
//! server's wiring, and the rule commands. The HTTP router and the notifier it runs are in
//! `tocsin-adapters`, shared with the Lambdas.

pub mod client;
pub mod commands;
pub mod config;
pub mod embedded;
pub mod listener;
pub mod serve;
pub mod silences;
pub mod tokens;
