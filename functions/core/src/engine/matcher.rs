//! The index from an event to the alerts it concerns: by project, then event kind, then entity
//! id, with `*` alerts and glob alerts on the side. Its cost per event does not grow with the
//! number of alerts on exact entities; glob alerts of the event's kind are each tried.

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::compiled::{EntitySelector, Rule};
use crate::model::EventKind;

/// Alert ids by what they listen to.
#[derive(Debug, Default)]
pub struct Matcher {
    projects: FxHashMap<Box<str>, FxHashMap<EventKind, KindIndex>>,
}

#[derive(Debug, Default)]
struct KindIndex {
    /// Most entities have one alert: its id is kept inline, with no allocation.
    exact: FxHashMap<Box<str>, SmallVec<[u64; 1]>>,
    any: Vec<u64>,
    globs: Vec<(Box<str>, u64)>,
}

impl KindIndex {
    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.any.is_empty() && self.globs.is_empty()
    }
}

impl Matcher {
    /// Indexes alert `id` under every event kind its rule triggers on.
    pub fn insert(&mut self, id: u64, rule: &Rule) {
        let kinds = self.projects.entry(rule.project().into()).or_default();
        for kind in &rule.config.trigger.events {
            let index = kinds.entry(kind.clone()).or_default();
            match &rule.entity {
                EntitySelector::Any => {
                    if !index.any.contains(&id) {
                        index.any.push(id);
                    }
                }
                EntitySelector::Exact(e) => {
                    let ids = index.exact.entry(e.as_str().into()).or_default();
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
                EntitySelector::Glob(g) => {
                    if !index.globs.iter().any(|(_, x)| *x == id) {
                        index.globs.push((g.as_str().into(), id));
                    }
                }
            }
        }
    }

    /// Removes alert `id` as indexed for `rule` (the rule it was inserted with).
    pub fn remove(&mut self, id: u64, rule: &Rule) {
        let Some(kinds) = self.projects.get_mut(rule.project()) else {
            return;
        };
        for kind in &rule.config.trigger.events {
            let Some(index) = kinds.get_mut(kind) else {
                continue;
            };
            match &rule.entity {
                EntitySelector::Any => index.any.retain(|x| *x != id),
                EntitySelector::Glob(_) => index.globs.retain(|(_, x)| *x != id),
                EntitySelector::Exact(e) => {
                    if let Some(ids) = index.exact.get_mut(e.as_str()) {
                        ids.retain(|x| *x != id);
                        if ids.is_empty() {
                            index.exact.remove(e.as_str());
                        }
                    }
                }
            }
            if index.is_empty() {
                kinds.remove(kind);
            }
        }
        if kinds.is_empty() {
            self.projects.remove(rule.project());
        }
    }

    /// Whether any alert of `project` triggers on `kind`.
    pub fn listens(&self, project: &str, kind: &EventKind) -> bool {
        self.projects
            .get(project)
            .is_some_and(|kinds| kinds.contains_key(kind))
    }

    /// Calls `f` with each alert an event of `kind` about `entity` in `project` concerns:
    /// the alerts on that exact entity, then the `*` alerts, then the glob alerts whose pattern
    /// matches. Each alert once.
    pub fn for_each_match(
        &self,
        project: &str,
        kind: &EventKind,
        entity: &str,
        mut f: impl FnMut(u64),
    ) {
        let Some(index) = self.projects.get(project).and_then(|k| k.get(kind)) else {
            return;
        };
        if let Some(ids) = index.exact.get(entity) {
            ids.iter().copied().for_each(&mut f);
        }
        index.any.iter().copied().for_each(&mut f);
        index
            .globs
            .iter()
            .filter(|(g, _)| crate::model::glob_match(g, entity))
            .for_each(|(_, id)| f(*id));
    }
}
