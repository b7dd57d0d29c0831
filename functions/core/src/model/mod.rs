//! The wire types of MLRun's alerts API, which Tocsin speaks: what clients send and what they
//! read back. Round-trip tested against the JSON the MLRun 1.12.1 client sends.

mod activation;
mod alert;
mod event;
mod kinds;
mod template;
mod time;

pub use activation::{Activation, NotificationState, NotificationSummary};
pub use alert::{AlertConfig, AlertNotification, Criteria, Entities, Notification, Trigger};
pub use event::{AcceptedEvent, Event};
pub use kinds::{
    AlertState, EntityKind, EventKind, NotificationKind, NotificationSeverity, ResetPolicy,
    Severity, UnknownValue,
};
pub use template::AlertTemplate;
pub use time::{InvalidPeriod, Span, Timestamp, parse_period};
