//! Activation listing filters (MLRun's query parameters), evaluated on one activation.

use serde::{Deserialize, Serialize};

use crate::model::{Activation, EntityKind, EventKind, Severity, Timestamp};

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
    }
}

/// Glob matching with `*` (any run) and `?` (one character), iterative with backtracking to the
/// last `*`: linear in practice, and no pattern makes it blow up.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("ep*", "ep1.app.res"));
        assert!(glob_match("*.res", "ep1.app.res"));
        assert!(glob_match("ep?.*", "ep1.app.res"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("ep2*", "ep1.app.res"));
        assert!(!glob_match("a*b*c", "aXbY"));
        assert!(glob_match(&"*a".repeat(20), &"a".repeat(40)));
    }
}
