//! An alert's windows: one for all entities (MLRun's behaviour), or one per entity
//! (`criteria.per_entity`). What the intake counts in, and what stores persist.

use serde::{Deserialize, Serialize};

use super::Window;
use crate::compiled::Rule;

/// An alert's windows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Windows {
    Shared(Window),
    PerEntity(EntityWindows),
}

/// One window per entity. hashbrown's map, for `entry_ref`: an event about an entity seen
/// before (most of them) looks its window up without allocating a key.
pub type EntityWindows = hashbrown::HashMap<String, Window, rustc_hash::FxBuildHasher>;

/// Where the intake finds the window an event counts in. [`Windows`] is one; a store that
/// evaluates one window at a time (DynamoDB) hands the intake that [`Window`] alone.
pub trait WindowSource {
    /// The window an event about `entity` counts in, created empty if there is none yet.
    fn window_mut(&mut self, entity: &str) -> &mut Window;
}

impl WindowSource for Windows {
    fn window_mut(&mut self, entity: &str) -> &mut Window {
        match self {
            Windows::Shared(w) => w,
            Windows::PerEntity(m) => m.entry_ref(entity).or_default(),
        }
    }
}

impl WindowSource for Window {
    fn window_mut(&mut self, _entity: &str) -> &mut Window {
        self
    }
}

impl Windows {
    /// Empty windows of the shape `rule` asks for.
    pub fn for_rule(rule: &Rule) -> Self {
        if rule.per_entity {
            Windows::PerEntity(EntityWindows::default())
        } else {
            Windows::Shared(Window::default())
        }
    }

    /// The window of `entity` (None: the shared one), for persistence.
    pub fn get(&self, entity: Option<&str>) -> Option<&Window> {
        match (self, entity) {
            (Windows::Shared(w), None) => Some(w),
            (Windows::PerEntity(m), Some(e)) => m.get(e),
            _ => None,
        }
    }

    /// Puts back a persisted window.
    pub fn restore(&mut self, entity: Option<&str>, window: Window) {
        match (self, entity) {
            (Windows::Shared(w), None) => *w = window,
            (Windows::PerEntity(m), Some(e)) => {
                m.insert(e.into(), window);
            }
            _ => {}
        }
    }
}
