//! Alert templates: pre-filled alert configs that users assign to a project and entity.

use serde::{Deserialize, Serialize};

use super::alert::{Criteria, Trigger};
use super::kinds::{ResetPolicy, Severity};

/// MLRun's `AlertTemplate`. System templates ship with Tocsin and cannot be deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertTemplate {
    pub template_id: u64,
    pub template_name: String,
    pub template_description: String,
    pub system_generated: bool,
    pub summary: String,
    pub severity: Severity,
    pub trigger: Trigger,
    pub criteria: Option<Criteria>,
    pub reset_policy: ResetPolicy,
    pub cooldown_period: Option<String>,
}
