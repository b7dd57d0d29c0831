//! The alert config as it travels on the wire (MLRun's `AlertConfig`), and its parts.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::NotificationKind;
use super::filter::Filter;
use super::kinds::{
    AlertState, EntityKind, EventKind, NotificationSeverity, ResetPolicy, Severity,
};
use super::time::Timestamp;

/// An alert config: which events, for which entity, how many within what window, make a
/// situation, and whom to tell. Fields the server owns (`id`, `created`, `updated`, `state`,
/// `count`) are ignored when a client sends them. Unknown fields are kept and answered back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertConfig {
    #[serde(default, deserialize_with = "null_as_default")]
    pub project: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub id: Option<u64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub description: String,
    #[serde(default)]
    pub summary: Option<String>,
    pub severity: Severity,
    /// Absent means one event fires the alert, and events never expire.
    #[serde(default)]
    pub criteria: Option<Criteria>,
    pub trigger: Trigger,
    pub entities: Entities,
    #[serde(default, deserialize_with = "null_as_default")]
    pub notifications: Vec<AlertNotification>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub reset_policy: ResetPolicy,
    /// Alert-level cooldown (auto reset only): the alert stays active, ignoring events, this long.
    #[serde(default)]
    pub cooldown_period: Option<String>,
    /// Tocsin extension: only events whose values pass this filter count (see [`Filter`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Box<Filter>>,
    /// Tocsin extension: the alert defines a calculated event. Each time it fires, the engine
    /// posts an event of this kind about the same entity, with the firing event's values, in
    /// the same step; alerts on this kind then count it like any event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emits: Option<EventKind>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub state: AlertState,
    /// Tocsin extension, server-owned: who acknowledged the alert and when. Until the alert is
    /// reset, its activations send no notifications.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub acknowledged: Option<Box<Acknowledgement>>,
    /// Tocsin extension, server-owned: the silence in effect that holds back all of the
    /// alert's notifications, in listings and reads (not for MLRun clients).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub silenced: Option<Box<super::SilencedBy>>,
    /// Tocsin extension, server-owned: when the alert last fired.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub last_activation_time: Option<Timestamp>,
    /// Number of activations (not of events).
    #[serde(default, deserialize_with = "lenient_or_default")]
    pub count: u64,
    #[serde(default, deserialize_with = "lenient")]
    pub created: Option<Timestamp>,
    #[serde(default, deserialize_with = "lenient")]
    pub updated: Option<Timestamp>,
    /// Fields this version does not know; kept so that no client's data is lost.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl AlertConfig {
    /// Whether MLRun's client can read this alert at all: its enum of event kinds has no
    /// custom kinds, so alerts on them are left out of the listings it reads.
    pub fn is_mlrun_readable(&self) -> bool {
        self.trigger.events.iter().all(EventKind::is_mlrun_kind)
    }

    /// Clears what the server owns and a client never sets: id, dates, state, count,
    /// acknowledgement, last activation. What is left is what a client stored.
    pub fn clear_server_fields(&mut self) {
        self.id = None;
        self.created = None;
        self.updated = None;
        self.state = Default::default();
        self.count = 0;
        self.acknowledged = None;
        self.silenced = None;
        self.last_activation_time = None;
    }

    /// The fields that decide firing, as stored: a change in any of them resets the alert's
    /// state (see [`crate::compiled::Rule::differs_in_behaviour`], which compares them parsed).
    pub fn behaviour(&self) -> impl PartialEq + '_ {
        (
            &self.entities,
            &self.trigger,
            &self.criteria,
            &self.cooldown_period,
            &self.filter,
            &self.emits,
        )
    }

    /// The config as an MLRun client may read it: without notifications of kinds its enum
    /// lacks (it would reject the whole answer), and without Tocsin's silence mark. See [`crate::Service::store_alert_from_mlrun`]
    /// for the way back.
    pub fn for_mlrun_client(mut self) -> Self {
        self.notifications
            .retain(|n| n.notification.kind.is_mlrun_kind());
        for n in &mut self.notifications {
            n.send_resolved = false;
        }
        self.silenced = None;
        self
    }
}

/// Someone on call took an active alert in hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledgement {
    pub by: String,
    pub at: Timestamp,
}

/// How many matching events within what period make the alert fire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Criteria {
    #[serde(default = "one")]
    pub count: i64,
    /// A human span (`10m`, `1h`); none means events never expire.
    #[serde(default)]
    pub period: Option<String>,
    /// Tocsin extension: count each entity's events in a window of its own (for a `*` alert).
    /// MLRun keeps one window for all entities, which is the default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_entity: bool,
    /// Tocsin extension: instead of counting, fire when the alert's filter has held on every
    /// event for this long (`1h`): a run of passing events starts the clock; an event that
    /// fails the filter, or a gap between events longer than the span, stops it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sustain: Option<String>,
    /// Tocsin extension: instead of counting, fire when no event of the trigger kinds (that
    /// passes the filter) arrived for an entity for this long (`1h`): an absence alert. It
    /// closes itself when events return. For a `*` alert, each entity seen is watched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absent: Option<String>,
    /// Tocsin extension, absence alerts on many entities: ids that must report, awaited from
    /// the alert's creation (or reset) even if they never did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must_report: Vec<String>,
}

impl Default for Criteria {
    fn default() -> Self {
        Criteria {
            count: 1,
            period: None,
            per_entity: false,
            sustain: None,
            absent: None,
            must_report: Vec::new(),
        }
    }
}

fn one() -> i64 {
    1
}

/// The event kinds an alert triggers on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    #[serde(default, deserialize_with = "null_as_default")]
    pub events: Vec<EventKind>,
    /// Accepted on the wire for compatibility; Tocsin does not evaluate Prometheus alerts.
    #[serde(default)]
    pub prometheus_alert: Option<String>,
}

/// The entity an alert or event is about. `ids` holds exactly one id; on an alert, `*` matches
/// every entity of the kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entities {
    pub kind: EntityKind,
    #[serde(default, deserialize_with = "null_as_default")]
    pub project: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub ids: Vec<String>,
}

/// One notification of an alert, with its own cooldown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertNotification {
    pub notification: Notification,
    #[serde(default)]
    pub cooldown_period: Option<String>,
    /// Tocsin extension: also notify when the activation closes (a reset, the end of the
    /// cooldown, an absence that ended), as "resolved". Not shown to MLRun clients.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub send_resolved: bool,
}

/// MLRun's notification object. `secret_params` hold webhook URLs and tokens; they are stored
/// apart and never answered back (see `crate::secrets`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub kind: NotificationKind,
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub severity: Option<NotificationSeverity>,
    #[serde(default)]
    pub when: Option<Vec<String>>,
    #[serde(default)]
    pub condition: Option<String>,
    #[serde(default)]
    pub params: Option<Map<String, Value>>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub sent_time: Option<Value>,
    #[serde(default)]
    pub secret_params: Option<Map<String, Value>>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `null` and absent both mean the type's default (clients send either).
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// For server-owned fields a client may echo back in any shape: keep what parses, drop the rest.
fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let v = Value::deserialize(d)?;
    Ok(serde_json::from_value(v).ok())
}

fn lenient_or_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned + Default,
{
    Ok(lenient(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body MLRun's 1.12.1 client sends for `store_alert_config` (captured from `to_dict`).
    const CLIENT_BODY: &str = r#"{"project":"my-project","name":"drift-alert","description":null,
        "summary":"Model {{project}}/{{entity}} drifts","severity":"low","reset_policy":"auto",
        "cooldown_period":null,"state":null,"count":null,"created":null,"updated":null,
        "criteria":{"count":3,"period":"1h"},
        "trigger":{"events":["data-drift-detected"],"prometheus_alert":null},
        "entities":{"kind":"model-endpoint-result","project":"my-project","ids":["ep1.app.res"]},
        "notifications":[{"notification":{"kind":"slack","name":"slack_notification","message":"drift",
          "severity":"warning","when":["now"],"condition":"failed","params":null,"status":null,
          "sent_time":null,"secret_params":{"webhook":"https://hooks.slack.com/x"},"reason":null},
          "cooldown_period":null}],
        "x-team":"fraud"}"#;

    #[test]
    fn decodes_what_the_mlrun_client_sends() {
        let a: AlertConfig = serde_json::from_str(CLIENT_BODY).unwrap();
        assert_eq!(a.name, "drift-alert");
        assert_eq!(a.description, "");
        assert_eq!(
            a.criteria,
            Some(Criteria {
                count: 3,
                period: Some("1h".into()),
                per_entity: false,
                sustain: None,
                ..Default::default()
            })
        );
        assert_eq!(a.trigger.events, vec![EventKind::DataDriftDetected]);
        assert_eq!(a.entities.ids, vec!["ep1.app.res"]);
        assert_eq!(
            a.notifications[0].notification.kind,
            NotificationKind::Slack
        );
        assert_eq!(a.reset_policy, ResetPolicy::Auto);
        assert_eq!(a.state, AlertState::Inactive);
        assert_eq!(a.extra.get("x-team"), Some(&Value::from("fraud")));
    }

    #[test]
    fn round_trips_with_extra_fields_and_hyphenated_kinds() {
        let mut a: AlertConfig = serde_json::from_str(
            &CLIENT_BODY.replace("data-drift-detected", "data_drift_detected"),
        )
        .unwrap();
        a.id = Some(7);
        a.created = Some(Timestamp::from_secs(1_700_000_000));
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["trigger"]["events"][0], "data-drift-detected");
        assert_eq!(json["created"], "2023-11-14T22:13:20.000000+00:00");
        assert_eq!(json["x-team"], "fraud");
        assert!(
            json["criteria"].get("per_entity").is_none(),
            "extension absent when off"
        );
        let back: AlertConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn minimal_body_fills_defaults_and_bad_enums_are_named() {
        let a: AlertConfig = serde_json::from_str(
            r#"{"name":"a","severity":"high","trigger":{"events":["failed"]},
                "entities":{"kind":"job","project":"p","ids":["*"]}}"#,
        )
        .unwrap();
        assert_eq!(a.criteria, None);
        assert!(a.notifications.is_empty());
        let err = serde_json::from_str::<AlertConfig>(&CLIENT_BODY.replace("\"low\"", "\"huge\""))
            .unwrap_err();
        assert!(err.to_string().contains("invalid severity `huge`"), "{err}");
    }
}
