//! The pre-defined alert templates: one per event kind the seed lists (named as the seed names
//! them), and the three MLRun ships. Listed in this order, always.

use std::sync::LazyLock;

use crate::model::{AlertTemplate, Criteria, EventKind, ResetPolicy, Severity, Trigger};

/// (name, event kind, severity, summary, description)
const CATALOGUE: &[(&str, EventKind, Severity, &str, &str)] = &[
    (
        "data_drift_detected",
        EventKind::DataDriftDetected,
        Severity::High,
        "Model {{project}}/{{entity}}: data drift detected",
        "Drift detection found a significant change in a model endpoint's input data",
    ),
    (
        "data_drift_suspected",
        EventKind::DataDriftSuspected,
        Severity::Medium,
        "Model {{project}}/{{entity}}: data drift suspected",
        "Drift detection suspects a change in a model endpoint's input data",
    ),
    (
        "concept_drift_detected",
        EventKind::ConceptDriftDetected,
        Severity::High,
        "Model {{project}}/{{entity}}: concept drift detected",
        "The relation between a model's inputs and its target has changed",
    ),
    (
        "concept_drift_suspected",
        EventKind::ConceptDriftSuspected,
        Severity::Medium,
        "Model {{project}}/{{entity}}: concept drift suspected",
        "The relation between a model's inputs and its target may have changed",
    ),
    (
        "model_performance_detected",
        EventKind::ModelPerformanceDetected,
        Severity::High,
        "Model {{project}}/{{entity}}: performance degradation detected",
        "A model's quality metrics fell below their thresholds",
    ),
    (
        "model_performance_suspected",
        EventKind::ModelPerformanceSuspected,
        Severity::Medium,
        "Model {{project}}/{{entity}}: performance degradation suspected",
        "A model's quality metrics may be falling below their thresholds",
    ),
    (
        "model_serving_performance_detected",
        EventKind::SystemPerformanceDetected,
        Severity::High,
        "Model {{project}}/{{entity}}: serving performance degradation detected",
        "A model endpoint's latency, errors or resource use crossed their thresholds",
    ),
    (
        "model_serving_performance_suspected",
        EventKind::SystemPerformanceSuspected,
        Severity::Medium,
        "Model {{project}}/{{entity}}: serving performance degradation suspected",
        "A model endpoint's latency, errors or resource use may be crossing their thresholds",
    ),
    (
        "mm_app_anomaly_detected",
        EventKind::MmAppAnomalyDetected,
        Severity::High,
        "Model {{project}}/{{entity}}: monitoring application detected an anomaly",
        "A model monitoring application reported an anomaly",
    ),
    (
        "mm_app_anomaly_suspected",
        EventKind::MmAppAnomalySuspected,
        Severity::Medium,
        "Model {{project}}/{{entity}}: monitoring application suspects an anomaly",
        "A model monitoring application reported a possible anomaly",
    ),
    (
        "failed",
        EventKind::Failed,
        Severity::Medium,
        "Job {{project}}/{{entity}} failed",
        "A job run failed",
    ),
    (
        "JobFailed",
        EventKind::Failed,
        Severity::Medium,
        "A job has failed",
        "Generic template for job failure alerts",
    ),
    (
        "DataDriftDetected",
        EventKind::DataDriftDetected,
        Severity::High,
        "Model data drift has been detected",
        "Generic template for data drift detected alerts",
    ),
    (
        "DataDriftSuspected",
        EventKind::DataDriftSuspected,
        Severity::Medium,
        "Model data drift is suspected",
        "Generic template for data drift suspected alerts",
    ),
];

static TEMPLATES: LazyLock<Vec<AlertTemplate>> = LazyLock::new(|| {
    CATALOGUE
        .iter()
        .zip(1..)
        .map(
            |(&(name, ref event, severity, summary, description), id)| AlertTemplate {
                template_id: id,
                template_name: name.to_owned(),
                template_description: description.to_owned(),
                system_generated: true,
                summary: summary.to_owned(),
                severity,
                trigger: Trigger {
                    events: vec![event.clone()],
                    prometheus_alert: None,
                },
                criteria: Some(Criteria::default()),
                reset_policy: ResetPolicy::Auto,
                cooldown_period: None,
            },
        )
        .collect()
});

/// Every system template, in the stable listing order.
pub fn all() -> &'static [AlertTemplate] {
    &TEMPLATES
}

/// A template by its name (exact, as listed).
pub fn get(name: &str) -> Option<&'static AlertTemplate> {
    TEMPLATES.iter().find(|t| t.template_name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ships_the_seeds_eleven_and_mlruns_three_in_a_stable_order() {
        let names: Vec<_> = all().iter().map(|t| t.template_name.as_str()).collect();
        assert_eq!(
            names,
            [
                "data_drift_detected",
                "data_drift_suspected",
                "concept_drift_detected",
                "concept_drift_suspected",
                "model_performance_detected",
                "model_performance_suspected",
                "model_serving_performance_detected",
                "model_serving_performance_suspected",
                "mm_app_anomaly_detected",
                "mm_app_anomaly_suspected",
                "failed",
                "JobFailed",
                "DataDriftDetected",
                "DataDriftSuspected",
            ]
        );
        assert!(all().iter().all(|t| t.system_generated));
        let ids: Vec<_> = all().iter().map(|t| t.template_id).collect();
        assert_eq!(ids, (1..=14).collect::<Vec<_>>());
    }

    #[test]
    fn templates_answer_in_mlruns_vocabulary() {
        let t = get("model_serving_performance_detected").unwrap();
        let json = serde_json::to_value(t).unwrap();
        assert_eq!(json["trigger"]["events"][0], "system-performance-detected");
        assert_eq!(get("JobFailed").unwrap().severity, Severity::Medium);
        assert!(get("nope").is_none());
    }
}
