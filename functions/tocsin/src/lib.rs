//! Tocsin's service: the embedded store, the HTTP API (MLRun-compatible), notification
//! delivery, and the `tocsin` command's pieces.

pub mod embedded;
