//! The wire types of MLRun's alerts API, which Tocsin speaks: what clients send and what they
//! read back. Round-trip tested against the JSON the MLRun 1.12.1 client sends.

mod activation;
mod alert;
mod event;
mod filter;
mod glob;
pub(crate) mod kinds;
mod names;
pub mod notification_params;
mod silence;
mod template;
mod time;

pub use crate::channels::NotificationKind;
pub use activation::{
    Activation, Delivery, DeliveryStatus, NotificationState, NotificationSummary,
};
pub use alert::{
    Acknowledgement, AlertConfig, AlertNotification, Criteria, Entities, Notification, Trigger,
};
pub use event::{AcceptedEvent, Event};
pub use filter::{Checked, CompareOp, Filter};
pub use glob::glob_match;
pub use kinds::{
    AlertState, CustomKind, EntityKind, EventKind, NotificationSeverity, ResetPolicy, Severity,
    UnknownValue,
};
pub use names::{AlertName, MAX_NAME, ProjectName, ProjectScope};
pub use notification_params::{ParamSpec, Shape};
pub use silence::{
    Day, InvalidSilence, Schedule, Silence, SilenceMatchers, SilencePhase, SilenceSpec,
    SilenceState, SilenceView, Silenced, SilencedBy, TimeOfDay, finite,
};
pub use template::AlertTemplate;
pub use time::{InvalidPeriod, Span, Timestamp, parse_period};

#[cfg(test)]
mod round_trips {
    use serde::Serialize;
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    use super::*;

    /// Decodes `wire`, encodes it again, and checks nothing was lost or renamed.
    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(wire: Value) -> T {
        let decoded: T = serde_json::from_value(wire.clone()).expect("decodes");
        let encoded = serde_json::to_value(&decoded).expect("encodes");
        assert_eq!(encoded, wire, "re-encoded differently");
        assert_eq!(
            serde_json::from_value::<T>(encoded).expect("decodes again"),
            decoded
        );
        decoded
    }

    #[test]
    fn event_as_the_client_sends_it() {
        let e: Event = round_trip(json!({
            "kind": "data-drift-detected", "timestamp": "2026-11-23T10:00:00",
            "entity": {"kind": "model-endpoint-result", "project": "p", "ids": ["ep1.app.res"]},
            "value_dict": {"result_value": 0.9, "result_status": 2}
        }));
        assert_eq!(e.kind, Some(EventKind::DataDriftDetected));
        let minimal: Event = serde_json::from_value(
            json!({"entity": {"kind": "job", "project": "p", "ids": ["j"]}, "value_dict": null}),
        )
        .expect("minimal event");
        assert!(minimal.kind.is_none() && minimal.value_dict.is_empty() && minimal.id.is_none());
    }

    #[test]
    fn activation_and_notification_state() {
        let a: Activation = round_trip(json!({
            "id": 3, "name": "a", "project": "p", "severity": "high",
            "activation_time": "2026-11-23T10:00:00.000000+00:00", "entity_id": "j1", "entity_kind": "job",
            "criteria": {"count": 2, "period": "1h"}, "event_kind": "failed", "number_of_events": 2,
            "notifications": [{"kind": "webhook", "err": null, "summary": {"failed": 0, "succeeded": 1}}],
            "reset_time": "2026-11-23T10:05:00.000000+00:00", "summary": "Job p/j1 failed", "value_dict": {"e": 1}
        }));
        assert_eq!(
            a.notifications[0].summary,
            NotificationSummary {
                failed: 0,
                succeeded: 1
            }
        );
    }

    #[test]
    fn template_and_notification() {
        let t: AlertTemplate = round_trip(json!({
            "template_id": 1, "template_name": "JobFailed", "template_description": "d", "system_generated": true,
            "summary": "s", "severity": "medium", "trigger": {"events": ["failed"], "prometheus_alert": null},
            "criteria": {"count": 1, "period": null}, "reset_policy": "auto", "cooldown_period": null
        }));
        assert_eq!(t.severity, Severity::Medium);
        let n: AlertNotification = round_trip(json!({
            "notification": {"kind": "mail", "name": "ops", "message": "m", "severity": "error", "when": ["now"],
                             "condition": "", "params": {"email_addresses": ["a@example.com"]}, "status": null,
                             "sent_time": null, "secret_params": null, "reason": null, "x-extra": 1},
            "cooldown_period": "5m"
        }));
        assert_eq!(n.notification.kind, NotificationKind::Email);
        let email: AlertNotification =
            serde_json::from_value(json!({"notification": {"kind": "email", "name": "ops"}}))
                .expect("email alias");
        assert_eq!(
            serde_json::to_value(&email).expect("json")["notification"]["kind"],
            "mail"
        );
    }
}
