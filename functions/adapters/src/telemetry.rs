//! What the hosts count about their work, through the `metrics` facade: `tocsin serve` installs
//! a Prometheus recorder and serves it at `/metrics`; a host without a recorder (the Lambdas
//! today) pays one relaxed load per call. Every name, label and help text is here, so the
//! exposition, the README's "Running it in production" and the tests read one list.
//!
//! Labels are bounded: a project (the first [`MAX_PROJECTS`] seen, then `other`: event paths
//! name projects that need not exist), a channel, a severity, an outcome and a reason from a
//! fixed set. Never an entity, an alert name or an error text.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use metrics::{
    Counter, Histogram, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};
use tocsin_core::model::{Activation, Delivery, DeliveryStatus};

/// Events taken in, by `project` and `outcome` (`accepted`, `duplicate`, `refused`); refused
/// ones also by `reason` (`invalid`: a 4xx; `unavailable`: the store could not take them).
pub const EVENTS: &str = "tocsin_events_total";
/// Activations recorded, by `project` and `severity`.
pub const ACTIVATIONS: &str = "tocsin_activations_total";
/// Deliveries, by `channel` and `outcome` (`sent`, `failed`, `retried`: one per retry,
/// `suppressed`); suppressed ones also by `why` (`acknowledged`, `silenced`, `cooldown`).
pub const DELIVERIES: &str = "tocsin_deliveries_total";
/// From an activation to its message being taken by the receiver, by `channel`.
pub const DELIVERY_LATENCY: &str = "tocsin_delivery_latency_seconds";
/// From a request's events being read to their answer (evaluated and committed).
pub const INGEST_LATENCY: &str = "tocsin_ingest_duration_seconds";
/// One group commit of the embedded store's log (write, and fdatasync when configured).
pub const COMMIT_LATENCY: &str = "tocsin_store_commit_duration_seconds";
/// The embedded store's log on disk.
pub const LOG_BYTES: &str = "tocsin_store_log_bytes";
/// Alerts stored, by `state` (`configured`: all of them; `active`).
pub const ALERTS: &str = "tocsin_alerts";
/// Activations with a notification still to deliver (the outbox).
pub const OUTBOX_DEPTH: &str = "tocsin_outbox_activations";
/// How long the oldest of them has waited (0 when the outbox is empty).
pub const OUTBOX_OLDEST: &str = "tocsin_outbox_oldest_seconds";

/// Distinct projects that get their own label value; the rest read `other`.
pub const MAX_PROJECTS: usize = 1000;

/// Bucket bounds (seconds) for the request-sized latencies: ingest and commits.
pub const FAST_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
/// Bucket bounds (seconds) for deliveries, which wait on receivers and retries.
pub const DELIVERY_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0];

/// Gives every metric its help text (Prometheus's `# HELP`), once the recorder is installed.
pub fn describe() {
    describe_counter!(
        EVENTS,
        "Events taken in, by project and outcome (and reason, refused)"
    );
    describe_counter!(ACTIVATIONS, "Activations recorded, by project and severity");
    describe_counter!(
        DELIVERIES,
        "Notification deliveries by channel and outcome (sent, failed, retried, suppressed)"
    );
    describe_histogram!(
        DELIVERY_LATENCY,
        metrics::Unit::Seconds,
        "From an activation to its message being taken by the receiver"
    );
    describe_histogram!(
        INGEST_LATENCY,
        metrics::Unit::Seconds,
        "From a request's events being read to their answer"
    );
    describe_histogram!(
        COMMIT_LATENCY,
        metrics::Unit::Seconds,
        "One group commit of the embedded store's log"
    );
    describe_gauge!(
        LOG_BYTES,
        metrics::Unit::Bytes,
        "The embedded store's log on disk"
    );
    describe_gauge!(ALERTS, "Alerts stored, by state (configured, active)");
    describe_gauge!(
        OUTBOX_DEPTH,
        "Activations with a notification still to deliver"
    );
    describe_gauge!(
        OUTBOX_OLDEST,
        metrics::Unit::Seconds,
        "How long the oldest activation in the outbox has waited"
    );
}

const OTHER: &str = "other";

/// The projects seen, each with its event counters registered once: counting a request's
/// events is a map lookup and an atomic add, not a metric key built and looked up each time.
/// The counters register with the recorder installed when a project is first seen (`tocsin
/// serve` installs its recorder before it opens the store).
#[derive(Default)]
struct Projects(HashMap<String, [Counter; 4]>);

static PROJECTS: LazyLock<Mutex<Projects>> = LazyLock::new(Default::default);

impl Projects {
    /// The label of `project` (itself, or `other` once [`MAX_PROJECTS`] were seen) and its
    /// event counters, in [`Taken`]'s order.
    fn entry(&mut self, project: &str) -> Option<(&str, &[Counter; 4])> {
        let label = if self.0.contains_key(project) || self.0.len() < MAX_PROJECTS {
            project
        } else {
            OTHER
        };
        if !self.0.contains_key(label) {
            let p = label.to_owned();
            let refused = |reason: &'static str| counter!(EVENTS, "project" => p.clone(), "outcome" => "refused", "reason" => reason);
            let counters = [
                counter!(EVENTS, "project" => p.clone(), "outcome" => "accepted"),
                counter!(EVENTS, "project" => p.clone(), "outcome" => "duplicate"),
                refused("invalid"),
                refused("unavailable"),
            ];
            self.0.insert(p, counters);
        }
        self.0.get_key_value(label).map(|(k, v)| (k.as_str(), v))
    }
}

/// The label value for `project` (see [`Projects::entry`]).
fn project_label(project: &str) -> String {
    PROJECTS
        .lock()
        .ok()
        .and_then(|mut p| p.entry(project).map(|(label, _)| label.to_owned()))
        .unwrap_or_else(|| OTHER.to_owned())
}

/// What became of the events of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    Accepted = 0,
    Duplicate = 1,
    /// Refused with a 4xx: the request was wrong.
    Invalid = 2,
    /// Refused with a 5xx: the store could not take it (the client retries).
    Unavailable = 3,
}

/// `count` events of `project` were taken as `taken`.
pub fn events(project: &str, taken: Taken, count: u64) {
    if count == 0 {
        return;
    }
    if let Ok(mut projects) = PROJECTS.lock()
        && let Some((_, counters)) = projects.entry(project)
    {
        counters[taken as usize].increment(count);
    }
}

/// A request's events took `took` from being read to their answer.
pub fn ingested(took: Duration) {
    // Registered at first use, as the project counters are.
    static HANDLE: LazyLock<Histogram> = LazyLock::new(|| histogram!(INGEST_LATENCY));
    HANDLE.record(took.as_secs_f64());
}

/// One group commit of the embedded store took `took`.
pub fn committed(took: Duration) {
    static HANDLE: LazyLock<Histogram> = LazyLock::new(|| histogram!(COMMIT_LATENCY));
    HANDLE.record(took.as_secs_f64());
}

/// An activation was recorded (counted once, when it is handed to the notifier), with the
/// deliveries its engine held back.
pub fn activated(activation: &Activation) {
    counter!(
        ACTIVATIONS,
        "project" => project_label(&activation.project),
        "severity" => activation.severity.as_str().to_owned()
    )
    .increment(1);
    for d in &activation.deliveries {
        if d.status == DeliveryStatus::Suppressed {
            let why = if d.silence.is_some() {
                "silenced"
            } else if d
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("acknowledged"))
            {
                "acknowledged"
            } else {
                "cooldown"
            };
            counter!(
                DELIVERIES,
                "channel" => d.kind.as_str().to_owned(),
                "outcome" => "suppressed",
                "why" => why
            )
            .increment(1);
        }
    }
}

/// The notifier recorded `delivery` of `activation`: sent (with its latency from the
/// activation), given up, or to be retried.
pub fn delivered(activation: &Activation, delivery: &Delivery) {
    let channel = delivery.kind.as_str().to_owned();
    let outcome = match delivery.status {
        DeliveryStatus::Sent => "sent",
        DeliveryStatus::Failed => "failed",
        DeliveryStatus::Retrying => "retried",
        DeliveryStatus::Pending | DeliveryStatus::Suppressed => return,
    };
    if delivery.status == DeliveryStatus::Sent
        && !delivery.resolved
        && !delivery.acknowledged
        && let Some(at) = delivery.at
    {
        let micros = at.0.saturating_sub(activation.activation_time.0).max(0);
        histogram!(DELIVERY_LATENCY, "channel" => channel.clone()).record(micros as f64 / 1e6);
    }
    counter!(DELIVERIES, "channel" => channel, "outcome" => outcome).increment(1);
}

/// What a scrape reads off the store (see [`refresh`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Levels {
    pub alerts: usize,
    pub active: usize,
    pub outbox: usize,
    pub outbox_oldest: Duration,
    pub log_bytes: Option<u64>,
}

/// Sets the gauges a scrape reports from what the store holds now.
pub fn refresh(levels: Levels) {
    gauge!(ALERTS, "state" => "configured").set(levels.alerts as f64);
    gauge!(ALERTS, "state" => "active").set(levels.active as f64);
    gauge!(OUTBOX_DEPTH).set(levels.outbox as f64);
    gauge!(OUTBOX_OLDEST).set(levels.outbox_oldest.as_secs_f64());
    if let Some(bytes) = levels.log_bytes {
        gauge!(LOG_BYTES).set(bytes as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;

    /// The exposition after `record` ran against a recorder of its own.
    fn exposition(record: impl FnOnce()) -> String {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, record);
        handle.render()
    }

    #[test]
    fn events_are_counted_by_project_outcome_and_reason() {
        // A project no other test posts to: its counters register with this test's recorder
        // (the map of projects is the process's).
        const PROJECT: &str = "telemetry-test";
        let text = exposition(|| {
            events(PROJECT, Taken::Accepted, 3);
            events(PROJECT, Taken::Duplicate, 1);
            events(PROJECT, Taken::Invalid, 2);
            events(PROJECT, Taken::Unavailable, 1);
            events(PROJECT, Taken::Accepted, 0);
        });
        for line in [
            r#"tocsin_events_total{project="telemetry-test",outcome="accepted"} 3"#,
            r#"tocsin_events_total{project="telemetry-test",outcome="duplicate"} 1"#,
            r#"tocsin_events_total{project="telemetry-test",outcome="refused",reason="invalid"} 2"#,
            r#"tocsin_events_total{project="telemetry-test",outcome="refused",reason="unavailable"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn projects_past_the_bound_share_one_label_value() {
        let mut projects = Projects::default();
        let text = exposition(|| {
            for i in 0..MAX_PROJECTS + 10 {
                let name = format!("bound-{i}");
                let (label, counters) = projects.entry(&name).expect("entry");
                let expected = if i < MAX_PROJECTS {
                    name.as_str()
                } else {
                    OTHER
                };
                assert_eq!(label, expected);
                counters[Taken::Accepted as usize].increment(1);
            }
        });
        let series = text
            .lines()
            .filter(|l| l.starts_with("tocsin_events_total{") && l.contains("accepted"))
            .count();
        assert_eq!(series, MAX_PROJECTS + 1);
        assert!(
            text.contains(r#"tocsin_events_total{project="other",outcome="accepted"} 10"#),
            "{text}"
        );
        assert_eq!(projects.entry("bound-0").map(|(l, _)| l), Some("bound-0"));
    }
}
