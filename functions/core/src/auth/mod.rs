//! Who may do what: roles, the actions they allow, and the check every host runs before a
//! request reaches the service. `tocsin serve` finds the principal from a token
//! ([`token`]), the API Lambda from the JWT authorizer's claims; both decide here, so that the
//! same role means the same thing on either deployment.

mod audit;
mod token;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::glob_match;

pub use audit::AuditEntry;
pub use token::{
    ISSUE_RANDOM_BYTES, InvalidToken, IssuedToken, TOKEN_PREFIX, TokenRecord, TokenRequest,
    parse_token,
};

/// What a principal is allowed, each role allowing what the ones before it do, except that a
/// producer only posts events (pipelines and monitoring applications need nothing else, and a
/// leaked producer token reads nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads alerts, activations, templates and the audit list.
    Viewer,
    /// Posts events, nothing else.
    Producer,
    /// Reads, posts events, acknowledges and resets.
    Responder,
    /// Also stores and deletes alerts.
    Editor,
    /// Also manages tokens.
    Admin,
}

impl Role {
    /// Every role, least first.
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Producer,
        Role::Responder,
        Role::Editor,
        Role::Admin,
    ];

    /// Whether this role allows `action`.
    pub fn allows(self, action: Action) -> bool {
        match self {
            Role::Viewer => action == Action::Read,
            Role::Producer => action == Action::PostEvents,
            Role::Responder => {
                matches!(action, Action::Read | Action::PostEvents | Action::Respond)
            }
            Role::Editor => action != Action::ManageTokens,
            Role::Admin => true,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Producer => "producer",
            Role::Responder => "responder",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of [`Role::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}`: expected viewer, producer, responder, editor or admin")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// What a request does, as far as permissions go. Every route of the API names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Read,
    PostEvents,
    /// Acknowledge and reset (and, with silences, silence).
    Respond,
    /// Store and delete alerts (and templates).
    Edit,
    ManageTokens,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 5] = [
        Action::Read,
        Action::PostEvents,
        Action::Respond,
        Action::Edit,
        Action::ManageTokens,
    ];

    /// The least role that allows this action: what a 403 says is needed.
    pub fn least_role(self) -> Role {
        Role::ALL
            .into_iter()
            .find(|r| r.allows(self))
            .unwrap_or(Role::Admin)
    }

    fn verb(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::PostEvents => "post events to",
            Action::Respond => "acknowledge or reset alerts of",
            Action::Edit => "store or delete alerts of",
            Action::ManageTokens => "manage tokens of",
        }
    }
}

/// A role on the projects a glob matches (`fraud-detection`, `fraud-*` or `*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub role: Role,
    pub projects: String,
}

impl Grant {
    /// Parses `role` or `role:projects` (the form JWT claims and scopes carry); a bare role is
    /// for every project.
    pub fn parse(text: &str) -> Result<Grant, UnknownRole> {
        let (role, projects) = match text.split_once(':') {
            Some((role, projects)) if !projects.trim().is_empty() => (role, projects.trim()),
            Some((role, _)) => (role, "*"),
            None => (text, "*"),
        };
        Ok(Grant {
            role: role.parse()?,
            projects: projects.to_owned(),
        })
    }

    fn covers(&self, project: &str) -> bool {
        glob_match(&self.projects, project)
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on `{}`", self.role, self.projects)
    }
}

/// What a request is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// One project.
    Project(&'a str),
    /// Some project: a `*` listing (filtered to what [`Principal::may`] read), or a request whose
    /// project is in its body and checked there (tokens).
    Any,
    /// Every project, and what belongs to none (templates): a grant on `*`.
    Everything,
}

/// Who is asking, and what they were granted. Its name is what the audit list and
/// acknowledgements record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub name: String,
    pub grants: Vec<Grant>,
    /// False when the server runs without auth (everyone is this principal then).
    pub authenticated: bool,
}

/// Why a request may not go on: no valid credentials (401) or not enough of a role (403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
}

impl Principal {
    /// Everyone, when auth is off (the server then listens on loopback only).
    pub fn anonymous() -> Principal {
        Principal {
            name: "anonymous".to_owned(),
            grants: vec![Grant {
                role: Role::Admin,
                projects: "*".to_owned(),
            }],
            authenticated: false,
        }
    }

    /// Whether some grant allows `action` on `project`.
    pub fn may(&self, action: Action, project: &str) -> bool {
        self.grants
            .iter()
            .any(|g| g.role.allows(action) && g.covers(project))
    }

    /// Checks `action` on `scope`.
    pub fn authorize(&self, action: Action, scope: Scope<'_>) -> Result<(), Denied> {
        let allowed = match scope {
            Scope::Project(p) => self.may(action, p),
            Scope::Any => self.grants.iter().any(|g| g.role.allows(action)),
            Scope::Everything => self
                .grants
                .iter()
                .any(|g| g.role.allows(action) && g.projects == "*"),
        };
        if allowed {
            return Ok(());
        }
        let needed = action.least_role();
        let what = match scope {
            Scope::Project(p) => format!("project `{p}`"),
            Scope::Any => "any project".to_owned(),
            Scope::Everything => "every project".to_owned(),
        };
        let has = if self.grants.is_empty() {
            "no role".to_owned()
        } else {
            self.grants
                .iter()
                .map(Grant::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let above = if needed == Role::Admin {
            ""
        } else {
            " (or a role above it)"
        };
        Err(Denied::Forbidden(format!(
            "Forbidden: to {} {what} you need the `{needed}` role{above}; `{}` has {has}",
            action.verb(),
            self.name
        )))
    }

    /// The globs of the projects this principal may read; None when it may read every one.
    pub fn readable(&self) -> Option<Vec<String>> {
        let globs: Vec<String> = self
            .grants
            .iter()
            .filter(|g| g.role.allows(Action::Read))
            .map(|g| g.projects.clone())
            .collect();
        (!globs.iter().any(|g| g == "*")).then_some(globs)
    }

    /// Whether this principal may issue or revoke a token for `projects`: an admin on `*` for
    /// any, an admin on a glob for that glob or a project it matches.
    pub fn may_manage_tokens_for(&self, projects: &str) -> bool {
        self.grants.iter().any(|g| {
            g.role == Role::Admin
                && (g.projects == "*"
                    || g.projects == projects
                    || (!projects.contains(['*', '?']) && g.covers(projects)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(role: Role, projects: &str) -> Principal {
        Principal {
            name: "ci".to_owned(),
            grants: vec![Grant {
                role,
                projects: projects.to_owned(),
            }],
            authenticated: true,
        }
    }

    #[test]
    fn each_role_allows_what_the_ones_before_it_do_except_the_producer() {
        use Action::*;
        let actions = Action::ALL;
        let allowed =
            |r: Role| -> Vec<Action> { actions.into_iter().filter(|a| r.allows(*a)).collect() };
        assert_eq!(allowed(Role::Viewer), [Read]);
        assert_eq!(allowed(Role::Producer), [PostEvents]);
        assert_eq!(allowed(Role::Responder), [Read, PostEvents, Respond]);
        assert_eq!(allowed(Role::Editor), [Read, PostEvents, Respond, Edit]);
        assert_eq!(allowed(Role::Admin), actions);
        assert_eq!(Respond.least_role(), Role::Responder);
        assert_eq!(PostEvents.least_role(), Role::Producer);
    }

    #[test]
    fn a_grant_covers_the_projects_its_glob_matches() {
        let p = token(Role::Responder, "fraud-*");
        assert!(
            p.authorize(Action::Respond, Scope::Project("fraud-eu"))
                .is_ok()
        );
        let Err(Denied::Forbidden(detail)) = p.authorize(Action::Read, Scope::Project("churn"))
        else {
            panic!("a project outside the glob is forbidden")
        };
        assert!(detail.contains("`viewer` role"), "{detail}");
        assert!(detail.contains("responder on `fraud-*`"), "{detail}");
        let Err(Denied::Forbidden(detail)) = p.authorize(Action::Edit, Scope::Project("fraud-eu"))
        else {
            panic!("a responder cannot edit")
        };
        assert!(
            detail.contains("`editor` role (or a role above it)"),
            "{detail}"
        );
    }

    #[test]
    fn any_project_needs_any_grant_and_every_project_a_star_grant() {
        let p = token(Role::Editor, "fraud-*");
        assert!(p.authorize(Action::Read, Scope::Any).is_ok());
        assert!(p.authorize(Action::Read, Scope::Everything).is_err());
        assert!(p.authorize(Action::Edit, Scope::Everything).is_err());
        assert!(
            token(Role::Editor, "*")
                .authorize(Action::Edit, Scope::Everything)
                .is_ok()
        );
        assert!(
            token(Role::Producer, "*")
                .authorize(Action::Read, Scope::Everything)
                .is_err()
        );
    }

    #[test]
    fn grants_parse_from_claims() {
        assert_eq!(
            Grant::parse("responder:fraud-*"),
            Ok(Grant {
                role: Role::Responder,
                projects: "fraud-*".to_owned()
            })
        );
        assert_eq!(
            Grant::parse("Admin").map(|g| g.projects),
            Ok("*".to_owned())
        );
        assert!(Grant::parse("root:*").is_err());
    }

    #[test]
    fn admins_manage_tokens_within_their_projects() {
        let a = token(Role::Admin, "fraud-*");
        assert!(a.may_manage_tokens_for("fraud-*"));
        assert!(a.may_manage_tokens_for("fraud-eu"));
        assert!(!a.may_manage_tokens_for("*"));
        assert!(!a.may_manage_tokens_for("f*"));
        assert!(!token(Role::Editor, "*").may_manage_tokens_for("x"));
    }
}
