//! The silences a store keeps, by project: a plain map that the memory and embedded stores
//! hold in their state and the DynamoDB store in its cache. Which silence holds back what is
//! decided by the engine (see [`crate::engine::Runtime::plan_deliveries`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Silence, Span, Timestamp};

/// Silences by project, each project's in id order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Silences {
    by_project: BTreeMap<String, Vec<Silence>>,
}

impl Silences {
    /// The silences of `project`, in effect or not.
    pub fn of(&self, project: &str) -> &[Silence] {
        self.by_project.get(project).map_or(&[], Vec::as_slice)
    }

    /// The silence `id` of `project`.
    pub fn get(&self, project: &str, id: &str) -> Option<&Silence> {
        self.of(project).iter().find(|s| s.id == id)
    }

    /// Every silence of `project`, or of all projects with None, by (project, id).
    pub fn list(&self, project: Option<&str>) -> Vec<Silence> {
        match project {
            Some(p) => self.of(p).to_vec(),
            None => self.by_project.values().flatten().cloned().collect(),
        }
    }

    /// Keeps `silence`, replacing the one with its id, and drops the project's silences that
    /// ended more than `retention` before `now`.
    pub fn put(&mut self, silence: Silence, now: Timestamp, retention: Span) {
        let list = self.by_project.entry(silence.project.clone()).or_default();
        list.retain(|s| s.is_kept(now, retention));
        match list.binary_search_by(|s| s.id.cmp(&silence.id)) {
            Ok(i) => list[i] = silence,
            Err(i) => list.insert(i, silence),
        }
    }

    /// Adds a silence read from storage.
    pub fn restore(&mut self, silence: Silence) {
        let list = self.by_project.entry(silence.project.clone()).or_default();
        match list.binary_search_by(|s| s.id.cmp(&silence.id)) {
            Ok(i) => list[i] = silence,
            Err(i) => list.insert(i, silence),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_project.values().all(Vec::is_empty)
    }
}
