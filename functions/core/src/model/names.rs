//! Project and alert names: the rules for what a name may be, in one place, and types that hold
//! a name only once it was checked. The HTTP router parses path segments into these, the
//! compiler checks alert names with them, and the rule checker asks the same predicates.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The longest project or alert name (a DNS name's limit, which MLRun's names follow).
pub const MAX_NAME: usize = 253;

/// A project name as MLRun allows them (DNS-1123 labels), plus `_` and `.`, which some clients
/// use: 1 to [`MAX_NAME`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProjectName(String);

/// An alert name: letters, digits, `-` and `_`, 1 to [`MAX_NAME`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AlertName(String);

/// One project, or every project (`*`, where a listing allows it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ProjectScope {
    All,
    One(ProjectName),
}

/// A name of 1 to [`MAX_NAME`] bytes, each allowed by `byte`.
fn well_formed(name: &str, byte: fn(u8) -> bool) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && name.bytes().all(byte)
}

/// `name` if it is well formed, else the 400 that says what `what` names may hold.
fn checked(name: String, byte: fn(u8) -> bool, what: &str, rule: &str) -> Result<String, Error> {
    if well_formed(&name, byte) {
        Ok(name)
    } else {
        Err(Error::BadRequest(format!(
            "Invalid {what} name `{name}`: use {rule} (at most {MAX_NAME})"
        )))
    }
}

fn project_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

fn alert_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')
}

impl ProjectName {
    /// Whether `name` is a valid project name.
    pub fn is_valid(name: &str) -> bool {
        well_formed(name, project_byte)
    }

    /// Checks a project name (400 when it is not one).
    pub fn parse(name: impl Into<String>) -> Result<Self, Error> {
        checked(
            name.into(),
            project_byte,
            "project",
            "letters, digits, `-`, `_` and `.`",
        )
        .map(ProjectName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AlertName {
    /// Whether `name` is a valid alert name.
    pub fn is_valid(name: &str) -> bool {
        well_formed(name, alert_byte)
    }

    /// Checks an alert name (400 when it is not one).
    pub fn parse(name: impl Into<String>) -> Result<Self, Error> {
        checked(
            name.into(),
            alert_byte,
            "alert",
            "letters, digits, `-` and `_` only",
        )
        .map(AlertName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl ProjectScope {
    /// The project, or None for every project.
    pub fn project(&self) -> Option<&ProjectName> {
        match self {
            ProjectScope::All => None,
            ProjectScope::One(p) => Some(p),
        }
    }

    /// As written in a path: `*` or the name.
    pub fn as_str(&self) -> &str {
        match self {
            ProjectScope::All => "*",
            ProjectScope::One(p) => p.as_str(),
        }
    }
}

macro_rules! string_conversions {
    ($($t:ty),+) => {$(
        impl TryFrom<String> for $t {
            type Error = Error;
            fn try_from(s: String) -> Result<Self, Error> {
                Self::parse(s)
            }
        }
        impl From<$t> for String {
            fn from(n: $t) -> String {
                n.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    )+};
}
string_conversions!(ProjectName, AlertName);

impl TryFrom<String> for ProjectScope {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        if s == "*" {
            Ok(ProjectScope::All)
        } else {
            ProjectName::parse(s).map(ProjectScope::One)
        }
    }
}

impl From<ProjectScope> for String {
    fn from(s: ProjectScope) -> String {
        match s {
            ProjectScope::All => "*".into(),
            ProjectScope::One(p) => p.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_once_by_the_same_rules() {
        assert!(ProjectName::parse("fraud-detection.v2_x").is_ok());
        assert!(ProjectName::parse("").is_err());
        assert!(ProjectName::parse("a/b").is_err());
        assert!(ProjectName::parse("x".repeat(MAX_NAME)).is_ok());
        assert!(ProjectName::parse("x".repeat(MAX_NAME + 1)).is_err());
        assert!(AlertName::parse("drift-1_a").is_ok());
        assert!(
            AlertName::parse("drift.1").is_err(),
            "no dots in alert names"
        );
        assert!(AlertName::parse("x".repeat(MAX_NAME + 1)).is_err());
        let scope: ProjectScope = serde_json::from_str("\"*\"").expect("all");
        assert_eq!(scope, ProjectScope::All);
        let scope: ProjectScope = serde_json::from_str("\"p1\"").expect("one");
        assert_eq!(scope.as_str(), "p1");
        let bad = serde_json::from_str::<ProjectName>("\"no way\"").expect_err("refused");
        assert!(bad.to_string().contains("Invalid project name"), "{bad}");
    }
}
