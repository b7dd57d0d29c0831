//! Who may call which route. Every route names the action it needs ([`ROUTES`]); one layer
//! finds the caller's principal ([`Authenticate`]), lets [`Principal::authorize`] decide, hands
//! the principal on to the handler, and records in the audit list what a principal changed.
//! Both hosts run it: `tocsin serve` with [`Tokens`], the API Lambda with its JWT claims.

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tocsin_core::auth::{Action, AuditEntry, Denied, Principal, Scope, parse_token};
use tocsin_core::model::Timestamp;
use tocsin_core::store::TokenStore;

use super::{ApiError, AppState};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, also without credentials: the client spec, health, the OpenAPI document.
    Open,
    /// Any valid credentials.
    SignedIn,
    /// A principal allowed this action on the route's [`RouteScope`].
    Needs(Action, RouteScope),
}

/// What a route's action applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteScope {
    /// The `{project}` of the path; `*` means every project (a read of `*` needs only some
    /// readable project: the handler lists only those).
    PathProject,
    /// Some project: the handler checks the one in the body (tokens).
    AnyProject,
    /// Every project (templates, which belong to none): a grant on `*`.
    Everything,
}

/// One route: method and path in OpenAPI's spelling, who may call it, and what the audit list
/// records when a principal's call succeeds.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    pub audit: Option<&'static str>,
}

const fn route(method: &'static str, path: &'static str, access: Access) -> Route {
    Route {
        method,
        path,
        access,
        audit: None,
    }
}

const fn audited(
    method: &'static str,
    path: &'static str,
    access: Access,
    audit: &'static str,
) -> Route {
    Route {
        method,
        path,
        access,
        audit: Some(audit),
    }
}

const READ: Access = Access::Needs(Action::Read, RouteScope::PathProject);
const READ_ANY: Access = Access::Needs(Action::Read, RouteScope::AnyProject);
const RESPOND: Access = Access::Needs(Action::Respond, RouteScope::PathProject);
const EDIT: Access = Access::Needs(Action::Edit, RouteScope::PathProject);
const POST_EVENTS: Access = Access::Needs(Action::PostEvents, RouteScope::PathProject);
const TOKENS: Access = Access::Needs(Action::ManageTokens, RouteScope::AnyProject);

/// Every route of the API (checked against the OpenAPI document and the router in tests).
pub const ROUTES: &[Route] = &[
    route("get", "/api/v1/client-spec", Access::Open),
    route("get", "/api/v1/openapi.json", Access::Open),
    route("get", "/api/v1/healthz", Access::Open),
    route("get", "/-/healthy", Access::Open),
    route("get", "/-/ready", Access::Open),
    // Metrics span every project: a reader of `*` (Prometheus's token) may scrape them.
    route(
        "get",
        "/metrics",
        Access::Needs(Action::Read, RouteScope::Everything),
    ),
    audited(
        "post",
        "/-/reload",
        Access::Needs(Action::Edit, RouteScope::Everything),
        "server.reload",
    ),
    // A backup holds every project and the tokens' hashes: an admin of every project.
    audited(
        "get",
        "/-/backup",
        Access::Needs(Action::ManageTokens, RouteScope::Everything),
        "server.backup",
    ),
    route("get", "/api/v1/auth/whoami", Access::SignedIn),
    route("get", "/api/v1/alert-templates", READ_ANY),
    route("get", "/api/v1/alert-templates/{name}", READ_ANY),
    audited(
        "delete",
        "/api/v1/alert-templates/{name}",
        Access::Needs(Action::Edit, RouteScope::Everything),
        "template.delete",
    ),
    route("get", "/api/v1/projects/{project}/alerts", READ),
    route("get", "/api/v1/projects/{project}/alerts/{name}", READ),
    audited(
        "put",
        "/api/v1/projects/{project}/alerts/{name}",
        EDIT,
        "alert.store",
    ),
    audited(
        "delete",
        "/api/v1/projects/{project}/alerts/{name}",
        EDIT,
        "alert.delete",
    ),
    audited(
        "post",
        "/api/v1/projects/{project}/alerts/{name}/reset",
        RESPOND,
        "alert.reset",
    ),
    audited(
        "post",
        "/api/v1/projects/{project}/alerts/{name}/notifications/test",
        EDIT,
        "alert.test_notifications",
    ),
    audited(
        "post",
        "/api/v1/projects/{project}/alerts/{name}/acknowledge",
        RESPOND,
        "alert.acknowledge",
    ),
    route("get", "/api/v1/projects/{project}/alerts/{name}/rule", READ),
    audited(
        "put",
        "/api/v1/projects/{project}/alerts/{name}/rule",
        EDIT,
        "alert.store",
    ),
    route("post", "/api/v1/rules/check", READ_ANY),
    route(
        "post",
        "/api/v1/projects/{project}/alerts/{name}/preview",
        READ,
    ),
    route(
        "get",
        "/api/v1/projects/{project}/alerts/{name}/activations",
        READ,
    ),
    route(
        "post",
        "/api/v1/projects/{project}/events/{kind}",
        POST_EVENTS,
    ),
    route("post", "/api/v1/projects/{project}/events", POST_EVENTS),
    route("get", "/api/v1/projects/{project}/events", READ),
    route(
        "post",
        "/api/v1/projects/{project}/alerts/{name}/explain",
        READ,
    ),
    route("post", "/api/v1/projects/{project}/backtest", READ),
    route("get", "/api/v1/projects/{project}/alert-activations", READ),
    route(
        "get",
        "/api/v1/projects/{project}/alert-activations/{id}",
        READ,
    ),
    route("get", "/api/v1/projects/{project}/silences", READ),
    audited(
        "post",
        "/api/v1/projects/{project}/silences",
        RESPOND,
        "silence.create",
    ),
    route("get", "/api/v1/projects/{project}/silences/{id}", READ),
    audited(
        "put",
        "/api/v1/projects/{project}/silences/{id}",
        RESPOND,
        "silence.store",
    ),
    audited(
        "post",
        "/api/v1/projects/{project}/silences/{id}/expire",
        RESPOND,
        "silence.expire",
    ),
    route("get", "/api/v1/projects/{project}/audit", READ),
    route("get", "/api/v1/tokens", TOKENS),
    audited("post", "/api/v1/tokens", TOKENS, "token.create"),
    audited("delete", "/api/v1/tokens/{id}", TOKENS, "token.revoke"),
];

fn find_route(method: &Method, path: &str) -> Option<&'static Route> {
    let method = if method == Method::HEAD {
        "get".to_owned()
    } else {
        method.as_str().to_ascii_lowercase()
    };
    ROUTES.iter().find(|r| r.method == method && r.path == path)
}

/// Finds who is asking. Implementations only read credentials; [`Principal::authorize`]
/// decides what they allow.
#[async_trait]
pub trait Authenticate: Send + Sync {
    /// The principal behind the request, or why there is none (401).
    async fn principal(&self, parts: &Parts) -> Result<Principal, Denied>;
    /// Whether credentials are checked at all (the Alerts page shows a sign-in form then).
    fn enabled(&self) -> bool;
}

/// No auth: everyone is [`Principal::anonymous`]. `tocsin serve` allows it on loopback only.
pub struct Open;

#[async_trait]
impl Authenticate for Open {
    async fn principal(&self, _: &Parts) -> Result<Principal, Denied> {
        Ok(Principal::anonymous())
    }
    fn enabled(&self) -> bool {
        false
    }
}

/// Tokens from a [`TokenStore`], sent as `Authorization: Bearer <token>`, as the password of
/// Basic auth (`http://user:TOKEN@host` in `MLRUN_DBPATH`), or in MLRun's Iguazio session
/// cookie (`session=j:{"sid": "<token>"}`).
pub struct Tokens(pub Arc<dyn TokenStore>);

const SIGN_IN: &str = "Unauthorized: send `Authorization: Bearer <token>` with a token made by \
     `tocsin token create`";

#[async_trait]
impl Authenticate for Tokens {
    async fn principal(&self, parts: &Parts) -> Result<Principal, Denied> {
        let Some(text) = credential(&parts.headers) else {
            return Err(Denied::Unauthenticated(format!("{SIGN_IN}; none was sent")));
        };
        let invalid = || Denied::Unauthenticated(format!("{SIGN_IN}; the one sent is not valid"));
        let (id, secret) = parse_token(&text).map_err(|_| invalid())?;
        let record = self
            .0
            .token(id)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "token lookup failed");
                Denied::Unauthenticated(format!("{SIGN_IN}; it could not be checked now, retry"))
            })?
            .ok_or_else(invalid)?;
        if record.verify(secret, Timestamp::now()) {
            Ok(record.principal())
        } else {
            Err(Denied::Unauthenticated(format!(
                "{SIGN_IN}; the one sent is not valid or has expired"
            )))
        }
    }
    fn enabled(&self) -> bool {
        true
    }
}

/// The credential a request carries: a Bearer token, Basic auth's password, or the `sid` of
/// MLRun's session cookie.
pub fn credential(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(header::AUTHORIZATION) {
        let Ok(value) = value.to_str() else { continue };
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty() {
            return Some(rest.trim().to_owned());
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = decode_base64(rest.trim())?;
            let text = String::from_utf8(decoded).ok()?;
            let (_, password) = text.split_once(':')?;
            return Some(password.to_owned());
        }
    }
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            let Some(("session", raw)) = pair.trim().split_once('=') else {
                continue;
            };
            let decoded: String = form_urlencoded::parse(format!("s={raw}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            let json = decoded.strip_prefix("j:").unwrap_or(&decoded);
            if let Ok(serde_json::Value::Object(o)) = serde_json::from_str(json)
                && let Some(serde_json::Value::String(sid)) = o.get("sid")
            {
                return Some(sid.clone());
            }
        }
    }
    None
}

/// Standard base64 (RFC 4648, padding optional), as Basic auth sends it.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT.decode(text).ok()
}

/// What a handler tells the audit layer when the path does not say it (a new token's id).
#[derive(Debug, Clone)]
pub struct AuditNote {
    pub project: String,
    pub target: String,
}

fn unauthorized(detail: String) -> Response {
    let mut res = ApiError::new(StatusCode::UNAUTHORIZED, detail).into_response();
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"tocsin\""),
    );
    res
}

/// The layer: authenticate, authorize, run, audit.
pub async fn guard(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let path = parts
        .extensions
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    // A route missing from the table needs the most there is, rather than nothing.
    let route = find_route(&parts.method, &path).copied().unwrap_or(Route {
        method: "",
        path: "",
        access: Access::Needs(Action::ManageTokens, RouteScope::Everything),
        audit: None,
    });
    if route.access == Access::Open {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let principal = match s.auth.principal(&parts).await {
        Ok(p) => p,
        Err(Denied::Unauthenticated(detail)) => {
            let needed = match route.access {
                Access::Needs(action, _) => {
                    format!("; this needs the `{}` role", action.least_role())
                }
                _ => String::new(),
            };
            return unauthorized(format!("{detail}{needed}"));
        }
        Err(Denied::Forbidden(detail)) => {
            return ApiError::new(StatusCode::FORBIDDEN, detail).into_response();
        }
    };
    let params = RawPathParams::from_request_parts(&mut parts, &s).await.ok();
    let param = |name: &str| {
        params.as_ref().and_then(|p| {
            p.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_owned())
        })
    };
    let project = param("project");
    if let Access::Needs(action, scope) = route.access {
        let scope = match (scope, project.as_deref()) {
            (RouteScope::PathProject, Some(p)) if p != "*" => Scope::Project(p),
            (RouteScope::Everything, _) => Scope::Everything,
            // `*` reads list only what the principal may read; `*` writes need `*`.
            (_, _) if action == Action::Read || scope == RouteScope::AnyProject => Scope::Any,
            _ => Scope::Everything,
        };
        if let Err(denied) = principal.authorize(action, scope) {
            return ApiError::new(StatusCode::FORBIDDEN, denied.to_string()).into_response();
        }
    }
    parts.extensions.insert(principal.clone());
    let mut res = next.run(Request::from_parts(parts, body)).await;
    if let Some(action) = route.audit
        && res.status().is_success()
    {
        let note = res.extensions_mut().remove::<AuditNote>();
        let (project, target) = match note {
            Some(n) => (n.project, n.target),
            None => (
                project.unwrap_or_else(|| "*".to_owned()),
                param("name").or_else(|| param("id")).unwrap_or_default(),
            ),
        };
        let entry = AuditEntry {
            time: Timestamp::now(),
            project,
            action: action.to_owned(),
            target,
            by: principal.name,
        };
        if let Err(e) = s.service.store().record_audit(entry).await {
            tracing::error!(error = %e, action, "the audit entry could not be recorded");
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_bearer_basic_or_mlruns_session_cookie() {
        let with = |name: header::HeaderName, value: &str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_str(value).expect("header"));
            credential(&h)
        };
        assert_eq!(
            with(header::AUTHORIZATION, "Bearer tcn_a_b").as_deref(),
            Some("tcn_a_b")
        );
        assert_eq!(
            with(header::AUTHORIZATION, "bearer  tcn_a_b ").as_deref(),
            Some("tcn_a_b")
        );
        // `user:tcn_a_b`
        assert_eq!(
            with(header::AUTHORIZATION, "Basic dXNlcjp0Y25fYV9i").as_deref(),
            Some("tcn_a_b")
        );
        assert_eq!(with(header::AUTHORIZATION, "Basic !!!"), None);
        assert_eq!(
            with(
                header::COOKIE,
                "a=1; session=j%3A%7B%22sid%22%3A%20%22tcn_a_b%22%7D"
            )
            .as_deref(),
            Some("tcn_a_b")
        );
        assert_eq!(
            with(header::COOKIE, r#"session=j:{"sid": "tcn_a_b"}"#).as_deref(),
            Some("tcn_a_b")
        );
        assert_eq!(with(header::COOKIE, "session=garbage"), None);
        assert_eq!(credential(&HeaderMap::new()), None);
    }

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(decode_base64("YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(decode_base64("YWI").as_deref(), Some(&b"ab"[..]));
        assert_eq!(decode_base64("YWJj").as_deref(), Some(&b"abc"[..]));
        assert_eq!(decode_base64("Y"), None);
    }
}
