//! The closed vocabularies of the wire format: event kinds, entity kinds, severities,
//! reset policies, alert states and notification kinds.
//!
//! Each is a string on the wire. Parsing is lenient where users are (event kinds are accepted
//! with hyphens or with the seed's underscores, and the seed's old names are aliases); printing is
//! strict, always MLRun's spelling, because the MLRun client rejects a whole answer when one value
//! is outside its enums.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A string that is not one of a vocabulary's values; the message lists the accepted ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{value}`: expected one of {expected}")]
pub struct UnknownValue {
    /// What was being parsed, in words ("event kind").
    pub what: &'static str,
    /// The value that was given.
    pub value: String,
    /// The accepted values, comma separated.
    pub expected: String,
}

/// Defines a wire enum: its variants with their wire spelling, extra accepted aliases, and the
/// serde, `FromStr` and `Display` impls that go with them.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal, normalize: $normalize:expr,
        { $( $(#[$vmeta:meta])* $variant:ident = $wire:literal $(| $alias:literal)* ),+ $(,)? }
        $( custom: $(#[$cmeta:meta])* $custom:ident )?
    ) => {
        $(#[$meta])*
        pub enum $name { $( $(#[$vmeta])* $variant, )+ $( $(#[$cmeta])* $custom(CustomKind) )? }

        impl $name {
            /// Every built-in value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire spelling.
            pub fn as_str(&self) -> &str {
                match self { $($name::$variant => $wire,)+ $( $name::$custom(c) => c.as_str(), )? }
            }

            fn expected() -> String {
                [$($wire),+].join(", ")
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                // The wire spelling as it is (what servers, logs and exports write) needs no
                // normalizing copy: most values parsed are in it.
                match s {
                    $( $wire => return Ok($name::$variant), )+
                    _ => {}
                }
                let normalize: fn(&str) -> String = $normalize;
                let key = normalize(s);
                match key.as_str() {
                    $( $wire $(| $alias)* => Ok($name::$variant), )+
                    _ => {
                        $(
                            if let Some(c) = CustomKind::new(&key, Self::ALL.iter().map(|k| k.as_str())) {
                                return Ok($name::$custom(c));
                            }
                        )?
                        Err(UnknownValue { what: $what, value: s.to_owned(), expected: Self::expected() })
                    }
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use wire_enum;

pub(crate) fn exact(s: &str) -> String {
    s.to_owned()
}

/// Event and entity kinds: the seed spells them with underscores, MLRun with hyphens.
fn hyphenate(s: &str) -> String {
    s.trim().to_ascii_lowercase().replace('_', "-")
}

wire_enum! {
    /// What happened. Each built-in kind belongs to one entity kind (see
    /// [`EventKind::entity_kind`]); custom kinds (Tocsin's extension, for calculated events and
    /// events of a team's own) may be about any.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
    EventKind, "event kind", normalize: hyphenate, {
        DataDriftDetected = "data-drift-detected",
        DataDriftSuspected = "data-drift-suspected",
        ConceptDriftDetected = "concept-drift-detected",
        ConceptDriftSuspected = "concept-drift-suspected",
        ModelPerformanceDetected = "model-performance-detected",
        ModelPerformanceSuspected = "model-performance-suspected",
        /// The seed calls it `model_serving_performance_detected`.
        SystemPerformanceDetected = "system-performance-detected" | "model-serving-performance-detected",
        /// The seed calls it `model_serving_performance_suspected`.
        SystemPerformanceSuspected = "system-performance-suspected" | "model-serving-performance-suspected",
        MmAppAnomalyDetected = "mm-app-anomaly-detected",
        MmAppAnomalySuspected = "mm-app-anomaly-suspected",
        MmAppFailed = "mm-app-failed",
        ModelMonitoringLagDetected = "model-monitoring-lag-detected",
        Failed = "failed",
    }
    custom:
        /// A kind outside MLRun's vocabulary (see [`CustomKind`]).
        Custom
}

impl EventKind {
    /// The one entity kind an event of a built-in kind may be about; None for a custom kind,
    /// which may be about any (an alert on it names which).
    pub const fn entity_kind(&self) -> Option<EntityKind> {
        Some(match self {
            EventKind::MmAppFailed => EntityKind::ModelMonitoringApplication,
            EventKind::ModelMonitoringLagDetected => EntityKind::ModelMonitoringInfra,
            EventKind::Failed => EntityKind::Job,
            EventKind::Custom(_) => return None,
            _ => EntityKind::ModelEndpointResult,
        })
    }

    /// Whether MLRun's client knows this kind (it rejects answers that carry others).
    pub const fn is_mlrun_kind(&self) -> bool {
        !matches!(self, EventKind::Custom(_))
    }
}

/// The name of a custom event kind: lowercase letters, digits and hyphens, starting with a
/// letter, at most [`CustomKind::MAX_LEN`] bytes. A name within two edits of a built-in kind is
/// refused as a likely typo (`data-drift-detcted`), so that a misspelt built-in kind still gets a
/// clear error instead of silently becoming a kind no alert listens to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CustomKind(std::sync::Arc<str>);

impl CustomKind {
    /// Longest accepted name.
    pub const MAX_LEN: usize = 64;

    fn new<'a>(name: &str, mut builtin: impl Iterator<Item = &'a str>) -> Option<Self> {
        let well_formed = name.len() <= Self::MAX_LEN
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let near_builtin =
            builtin.any(|b| b.len().abs_diff(name.len()) <= 2 && strsim::levenshtein(b, name) <= 2);
        (well_formed && !near_builtin).then(|| CustomKind(name.into()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

wire_enum! {
    /// What an event or alert is about.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    EntityKind, "entity kind", normalize: hyphenate, {
        ModelEndpointResult = "model-endpoint-result",
        ModelMonitoringApplication = "model-monitoring-application",
        ModelMonitoringInfra = "model-monitoring-infra",
        Job = "job",
    }
}

wire_enum! {
    /// How bad a situation is.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    Severity, "severity", normalize: exact, {
        Low = "low",
        Medium = "medium",
        High = "high",
    }
}

wire_enum! {
    /// Whether an alert that fired goes back to inactive by itself (`auto`) or waits for a reset.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
    ResetPolicy, "reset policy", normalize: exact, {
        Manual = "manual",
        #[default]
        Auto = "auto",
    }
}

wire_enum! {
    /// Whether an alert is currently raised.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
    AlertState, "alert state", normalize: exact, {
        Active = "active",
        #[default]
        Inactive = "inactive",
    }
}

wire_enum! {
    /// How loud a notification is; the MLRun client's vocabulary.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    NotificationSeverity, "notification severity", normalize: exact, {
        Info = "info",
        Debug = "debug",
        Verbose = "verbose",
        Warning = "warning",
        Error = "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kinds_accept_seed_spellings_and_answer_with_hyphens() {
        let k: EventKind = "data_drift_detected".parse().unwrap();
        assert_eq!(k, EventKind::DataDriftDetected);
        assert_eq!(k.to_string(), "data-drift-detected");
        let alias: EventKind = "model_serving_performance_suspected".parse().unwrap();
        assert_eq!(alias, EventKind::SystemPerformanceSuspected);
        assert_eq!(
            serde_json::to_string(&alias).unwrap(),
            "\"system-performance-suspected\""
        );
    }

    #[test]
    fn unknown_values_name_the_accepted_ones() {
        let err = "huge".parse::<Severity>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid severity `huge`: expected one of low, medium, high"
        );
        let err = serde_json::from_str::<EntityKind>("\"model\"").unwrap_err();
        assert!(
            err.to_string().starts_with("invalid entity kind `model`"),
            "{err}"
        );
    }

    #[test]
    fn every_event_kind_round_trips_and_fits_one_entity_kind() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>().unwrap(), *kind);
            let entity = kind
                .entity_kind()
                .expect("built-in kinds have an entity kind");
            assert_eq!(entity.as_str().parse::<EntityKind>().unwrap(), entity);
        }
    }

    #[test]
    fn custom_kinds_are_well_formed_names_not_near_a_built_in_one() {
        let k: EventKind = "job-cpu".parse().unwrap();
        assert!(matches!(&k, EventKind::Custom(c) if c.as_str() == "job-cpu"));
        assert_eq!(k.entity_kind(), None);
        assert!(!k.is_mlrun_kind());
        assert_eq!(serde_json::to_string(&k).unwrap(), "\"job-cpu\"");
        let typo = "data-drift-detcted".parse::<EventKind>().unwrap_err();
        assert!(typo.to_string().starts_with("invalid event kind"), "{typo}");
        for bad in ["Job CPU", "9lives", "", &"x".repeat(65)] {
            assert!(bad.parse::<EventKind>().is_err(), "{bad:?}");
        }
    }
}
