//! Who is asking, on AWS: API Gateway has already checked the credentials (SigV4 or a JWT);
//! this reads what its authorizer put in the request context and maps it to the same
//! principals and roles as `tocsin serve`'s tokens, so that [`Principal::authorize`] decides
//! alike on both deployments.
//!
//! - **IAM**: full access (whoever may sign for the API may also call its Lambda directly).
//! - **JWT**: grants (`role` or `role:projects`) from a claim (`TOCSIN_JWT_GRANTS_CLAIM`,
//!   default `tocsin_grants`, a list separated by spaces or commas) and from the token's scopes
//!   that start with `TOCSIN_JWT_SCOPE_PREFIX` (default `tocsin/`, e.g.
//!   `tocsin/responder:fraud-*`). The name recorded in the audit list is the claim
//!   `TOCSIN_JWT_NAME_CLAIM` (default `sub`).
//! - **No authorizer context**: the function was invoked directly (which IAM allows) or by
//!   `sam local` with the authorizer disabled: treated as IAM.

use async_trait::async_trait;
use axum::http::request::Parts;
use lambda_http::request::RequestContext;
use tocsin_adapters::api::Authenticate;
use tocsin_core::auth::{Denied, Grant, Principal};

/// How JWT claims map to grants.
#[derive(Debug, Clone)]
pub struct Claims {
    pub grants_claim: String,
    pub scope_prefix: String,
    pub name_claim: String,
}

impl Default for Claims {
    fn default() -> Self {
        Claims {
            grants_claim: "tocsin_grants".to_owned(),
            scope_prefix: "tocsin/".to_owned(),
            name_claim: "sub".to_owned(),
        }
    }
}

fn full_access(name: String) -> Principal {
    Principal {
        name,
        ..Principal::anonymous()
    }
}

impl Claims {
    /// The principal of a JWT with these claims and scopes. Grants that do not parse are left
    /// out (and logged): a typo in the identity provider grants nothing rather than too much.
    pub fn principal(
        &self,
        claims: &std::collections::HashMap<String, String>,
        scopes: &[String],
    ) -> Principal {
        let listed = claims
            .get(&self.grants_claim)
            .map(|v| v.trim_matches(|c| c == '[' || c == ']'))
            .unwrap_or_default();
        let from_scopes = scopes
            .iter()
            .filter_map(|s| s.strip_prefix(self.scope_prefix.as_str()));
        let mut grants = Vec::new();
        for text in listed
            .split([' ', ','])
            .map(|t| t.trim_matches('"'))
            .chain(from_scopes)
            .filter(|t| !t.is_empty())
        {
            match Grant::parse(text) {
                Ok(g) => grants.push(g),
                Err(e) => tracing::warn!(grant = text, error = %e, "a JWT grant is ignored"),
            }
        }
        Principal {
            name: claims
                .get(&self.name_claim)
                .cloned()
                .unwrap_or_else(|| "jwt".to_owned()),
            grants,
            authenticated: true,
        }
    }
}

#[async_trait]
impl Authenticate for Claims {
    async fn principal(&self, parts: &Parts) -> Result<Principal, Denied> {
        let authorizer = match parts.extensions.get::<RequestContext>() {
            Some(RequestContext::ApiGatewayV2(ctx)) => ctx.authorizer.as_ref(),
            _ => None,
        };
        let Some(authorizer) = authorizer else {
            return Ok(full_access("direct invocation".to_owned()));
        };
        if let Some(jwt) = &authorizer.jwt {
            return Ok(self.principal(&jwt.claims, jwt.scopes.as_deref().unwrap_or_default()));
        }
        if let Some(iam) = &authorizer.iam {
            let name = iam
                .user_arn
                .clone()
                .or_else(|| iam.caller_id.clone())
                .unwrap_or_else(|| "iam".to_owned());
            return Ok(full_access(name));
        }
        Ok(full_access("direct invocation".to_owned()))
    }

    fn enabled(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tocsin_core::auth::{Action, Role, Scope};

    use super::*;

    #[test]
    fn grants_come_from_the_claim_and_the_scopes() {
        let claims: HashMap<String, String> = [
            ("sub".to_owned(), "ann@example.com".to_owned()),
            (
                "tocsin_grants".to_owned(),
                "[viewer:* responder:fraud-*, root]".to_owned(),
            ),
        ]
        .into();
        let scopes = ["openid".to_owned(), "tocsin/editor:churn".to_owned()];
        let p = Claims::default().principal(&claims, &scopes);
        assert_eq!(p.name, "ann@example.com");
        let roles: Vec<(Role, &str)> = p
            .grants
            .iter()
            .map(|g| (g.role, g.projects.as_str()))
            .collect();
        assert_eq!(
            roles,
            [
                (Role::Viewer, "*"),
                (Role::Responder, "fraud-*"),
                (Role::Editor, "churn")
            ],
            "`root` is not a role: ignored"
        );
        assert!(
            p.authorize(Action::Respond, Scope::Project("fraud-eu"))
                .is_ok()
        );
        assert!(
            p.authorize(Action::Respond, Scope::Project("other"))
                .is_err()
        );
        assert!(p.authorize(Action::Edit, Scope::Project("churn")).is_ok());
    }

    #[test]
    fn a_jwt_without_grants_may_do_nothing() {
        let p = Claims::default().principal(&HashMap::new(), &[]);
        assert!(p.grants.is_empty());
        assert!(p.authorize(Action::Read, Scope::Any).is_err());
    }
}
