//! Activation listing filters (MLRun's query parameters), evaluated on one activation.

use serde::{Deserialize, Serialize};

use crate::model::{Activation, EntityKind, EventKind, Severity, Timestamp, glob_match};

/// `name=x` (exact) or `name=~x` (substring).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NameFilter {
    Exact(String),
    Contains(String),
}

/// `entity=x` (exact) or `entity=~ep*` (a glob with `*` and `?`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntityFilter {
    Exact(String),
    Glob(String),
}

/// Which activations to list: filters, then a page (`offset`, `limit`), newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationQuery {
    /// None lists every project.
    pub project: Option<String>,
    pub name: Option<NameFilter>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub entity: Option<EntityFilter>,
    pub severity: Vec<Severity>,
    pub entity_kind: Option<EntityKind>,
    pub event_kind: Option<EventKind>,
    /// Only activations of built-in event kinds: MLRun's client rejects a whole page over one
    /// activation of a custom kind, which its enum lacks.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mlrun_kinds_only: bool,
    /// Only activations of projects these globs match: a `*` listing by a principal who may
    /// read only some projects. None: no such restriction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projects: Option<Vec<String>>,
    pub offset: usize,
    pub limit: usize,
}

impl ActivationQuery {
    /// Whether `a` passes every filter (the page is applied by the store).
    pub fn matches(&self, a: &Activation) -> bool {
        self.project.as_ref().is_none_or(|p| *p == a.project)
            && self.name.as_ref().is_none_or(|f| match f {
                NameFilter::Exact(n) => *n == a.name,
                NameFilter::Contains(n) => a.name.contains(n.as_str()),
            })
            && self.since.is_none_or(|t| a.activation_time >= t)
            && self.until.is_none_or(|t| a.activation_time <= t)
            && self.entity.as_ref().is_none_or(|f| match f {
                EntityFilter::Exact(e) => *e == a.entity_id,
                EntityFilter::Glob(g) => glob_match(g, &a.entity_id),
            })
            && (self.severity.is_empty() || self.severity.contains(&a.severity))
            && self.entity_kind.is_none_or(|k| k == a.entity_kind)
            && self.event_kind.as_ref().is_none_or(|k| *k == a.event_kind)
            && (!self.mlrun_kinds_only || a.event_kind.is_mlrun_kind())
            && self
                .projects
                .as_ref()
                .is_none_or(|globs| globs.iter().any(|g| glob_match(g, &a.project)))
    }
}
