//! The audit list: who changed what, by the principal's name (a token's name, a JWT's subject).

use serde::{Deserialize, Serialize};

use crate::model::Timestamp;

/// One change someone made: storing, deleting, resetting or acknowledging an alert, deleting a
/// template, issuing or revoking a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub time: Timestamp,
    /// The project it was in; `*` for what belongs to none (templates, tokens for `*`).
    pub project: String,
    /// What was done: `alert.store`, `alert.delete`, `alert.reset`, `alert.acknowledge`,
    /// `template.delete`, `token.create`, `token.revoke`.
    pub action: String,
    /// What it was done to: an alert's or a template's name, a token's id.
    pub target: String,
    /// The principal's name.
    pub by: String,
}
