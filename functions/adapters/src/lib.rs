//! What both Tocsin hosts share, and nothing host-specific: the HTTP router that speaks MLRun's
//! alerts API (run by `tocsin serve` and by the API Lambda), and the notifier that delivers
//! activations (in `tocsin serve`'s process, and in the notifier Lambda). Neither decides
//! anything about alerts: they move requests and deliveries to and from the service.

pub mod api;
pub mod notify;
pub mod telemetry;
