//! Bearer tokens of `tocsin serve`: `tcn_<id>_<secret>`, 256 random bits of secret. The store
//! keeps only the secret's SHA-256 (a slow hash buys nothing against 256 random bits), found by
//! the id and compared in constant time. Tokens carry no `-`: MLRun's client takes a token
//! longer than 20 characters with a `-` for an Iguazio session and sends it as a cookie.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Grant, Principal, Role};
use crate::error::{Error, Result};
use crate::model::{ProjectName, Timestamp, parse_period};

/// What every token starts with, so that a leaked one is recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "tcn_";

const ID_BYTES: usize = 6;
const SECRET_BYTES: usize = 32;
/// How many random bytes [`TokenRecord::issue`] takes: the id's and the secret's. The caller
/// draws them from the OS (the core does no I/O).
pub const ISSUE_RANDOM_BYTES: usize = ID_BYTES + SECRET_BYTES;
const MAX_TOKEN_NAME: usize = 64;

/// A token as stored: who it is for and the hash of its secret, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public: listed, and used to revoke it.
    pub id: String,
    pub name: String,
    pub role: Role,
    /// A project, a glob of projects, or `*`.
    pub projects: String,
    /// Hex SHA-256 of the secret part.
    #[serde(rename = "secret_sha256")]
    pub secret_hash: String,
    pub created: Timestamp,
    pub expires: Option<Timestamp>,
    /// The name of the principal that issued it.
    pub created_by: String,
}

/// `POST /api/v1/tokens` and `tocsin token create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[serde(default)]
    pub name: Option<String>,
    pub role: Role,
    pub projects: String,
    /// A period such as `90d`; none never expires.
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// A token just issued: the only time its text exists outside the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuedToken {
    pub token: String,
    #[serde(flatten)]
    pub record: TokenRecord,
}

/// Text that is not a Tocsin token at all (as opposed to one that is unknown or expired).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Tocsin token (expected {TOKEN_PREFIX}<id>_<secret>)")]
pub struct InvalidToken;

/// Splits a token into its id and its secret.
pub fn parse_token(text: &str) -> std::result::Result<(&str, &str), InvalidToken> {
    let rest = text.trim().strip_prefix(TOKEN_PREFIX).ok_or(InvalidToken)?;
    let (id, secret) = rest.split_once('_').ok_or(InvalidToken)?;
    let hex = |s: &str, len: usize| s.len() == len * 2 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if hex(id, ID_BYTES) && hex(secret, SECRET_BYTES) {
        Ok((id, secret))
    } else {
        Err(InvalidToken)
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn secret_hash(secret: &str) -> String {
    to_hex(&Sha256::digest(secret.as_bytes()))
}

impl TokenRecord {
    /// Issues a token for `request`, by `issuer` (who must be an admin over its projects), from
    /// [`ISSUE_RANDOM_BYTES`] random bytes.
    pub fn issue(
        request: TokenRequest,
        issuer: &Principal,
        random: &[u8; ISSUE_RANDOM_BYTES],
        now: Timestamp,
    ) -> Result<IssuedToken> {
        let projects = request.projects.trim().to_owned();
        let pattern_ok =
            projects == "*" || ProjectName::is_valid(&projects.replace(['*', '?'], "x"));
        if !pattern_ok {
            return Err(Error::bad(format!(
                "Invalid `projects` `{projects}`: expected a project name, a glob of them (`fraud-*`) or `*`"
            )));
        }
        if !issuer.may_manage_tokens_for(&projects) {
            return Err(Error::Forbidden(format!(
                "Forbidden: issuing a token for `{projects}` needs the `admin` role on it; `{}` is not",
                issuer.name
            )));
        }
        let expires = match request.expires_in.as_deref().map(str::trim) {
            None | Some("") | Some("never") => None,
            Some(period) => {
                let span = parse_period(period).map_err(|e| Error::bad(e.to_string()))?;
                if span.0 <= 0 {
                    return Err(Error::bad("`expires_in` must be longer than zero"));
                }
                Some(now.plus(span))
            }
        };
        let (id, secret) = random.split_at(ID_BYTES);
        let (id, secret) = (to_hex(id), to_hex(secret));
        let name = request
            .name
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("token-{id}"));
        if name.chars().count() > MAX_TOKEN_NAME || name.chars().any(char::is_control) {
            return Err(Error::bad(format!(
                "Invalid token `name`: at most {MAX_TOKEN_NAME} printable characters"
            )));
        }
        let record = TokenRecord {
            id: id.clone(),
            name,
            role: request.role,
            projects,
            secret_hash: secret_hash(&secret),
            created: now,
            expires,
            created_by: issuer.name.clone(),
        };
        Ok(IssuedToken {
            token: format!("{TOKEN_PREFIX}{id}_{secret}"),
            record,
        })
    }

    /// Whether `secret` is this token's and it has not expired at `now`; the comparison takes
    /// the same time wherever the hashes differ.
    pub fn verify(&self, secret: &str, now: Timestamp) -> bool {
        let matches: bool = secret_hash(secret)
            .as_bytes()
            .ct_eq(self.secret_hash.as_bytes())
            .into();
        matches && self.expires.is_none_or(|t| now < t)
    }

    /// The token as listed to admins: everything but the hash.
    pub fn listing(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id, "name": self.name, "role": self.role, "projects": self.projects,
            "created": self.created, "expires": self.expires, "created_by": self.created_by,
        })
    }

    /// The principal this token authenticates.
    pub fn principal(&self) -> Principal {
        Principal {
            name: self.name.clone(),
            grants: vec![Grant {
                role: self.role,
                projects: self.projects.clone(),
            }],
            authenticated: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(role: Role, projects: &str) -> TokenRequest {
        TokenRequest {
            name: Some("pipeline".into()),
            role,
            projects: projects.into(),
            expires_in: Some("90d".into()),
        }
    }

    #[test]
    fn an_issued_token_verifies_and_nothing_else_does() {
        let now = Timestamp(1_000_000);
        let issued = TokenRecord::issue(
            request(Role::Producer, "fraud-*"),
            &Principal::anonymous(),
            &[7; ISSUE_RANDOM_BYTES],
            now,
        )
        .expect("issued");
        assert!(
            !issued.token.contains('-'),
            "MLRun sends a token with `-` as a cookie"
        );
        assert!(!issued.record.secret_hash.contains(&issued.token[17..]));
        let (id, secret) = parse_token(&issued.token).expect("parses");
        assert_eq!(id, issued.record.id);
        assert!(issued.record.verify(secret, now));
        let mut wrong = secret.to_owned();
        wrong.replace_range(0..1, if wrong.starts_with('0') { "1" } else { "0" });
        assert!(!issued.record.verify(&wrong, now));
        let later = now.plus(parse_period("91d").expect("period"));
        assert!(!issued.record.verify(secret, later), "expired");
        assert_eq!(parse_token("tcn_abc_def"), Err(InvalidToken));
        assert_eq!(parse_token("Bearer x"), Err(InvalidToken));
    }

    #[test]
    fn only_an_admin_over_the_projects_issues_and_bad_fields_are_refused() {
        let editor = Principal {
            name: "ed".into(),
            grants: vec![Grant {
                role: Role::Editor,
                projects: "*".into(),
            }],
            authenticated: true,
        };
        let r = [1; ISSUE_RANDOM_BYTES];
        let now = Timestamp(0);
        assert!(matches!(
            TokenRecord::issue(request(Role::Viewer, "x"), &editor, &r, now),
            Err(Error::Forbidden(_))
        ));
        let anyone = Principal::anonymous();
        let mut bad = request(Role::Viewer, "a/b");
        assert!(matches!(
            TokenRecord::issue(bad.clone(), &anyone, &r, now),
            Err(Error::BadRequest(_))
        ));
        bad.projects = "x".into();
        bad.expires_in = Some("soon".into());
        assert!(matches!(
            TokenRecord::issue(bad, &anyone, &r, now),
            Err(Error::BadRequest(_))
        ));
    }
}
