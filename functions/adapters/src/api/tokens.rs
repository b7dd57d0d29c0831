//! `/api/v1/tokens` (admins) and `/api/v1/auth/whoami` (anyone signed in): the tokens of
//! `tocsin serve`. On AWS there is no token store: the JWT authorizer issues credentials.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::json;
use tocsin_core::auth::{Action, ISSUE_RANDOM_BYTES, Principal, Role, TokenRecord, TokenRequest};
use tocsin_core::model::Timestamp;
use tocsin_core::store::TokenStore;

use super::access::AuditNote;
use super::{ApiError, ApiPath, AppState, JsonBody};

fn store(s: &AppState) -> Result<&Arc<dyn TokenStore>, ApiError> {
    s.tokens.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "This deployment keeps no tokens: its identity provider issues them (on AWS, the \
             API's JWT authorizer)",
        )
    })
}

/// Draws the random bytes of a new token from the OS.
fn random() -> Result<[u8; ISSUE_RANDOM_BYTES], ApiError> {
    let mut bytes = [0; ISSUE_RANDOM_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| {
        tracing::error!(error = %e, "no randomness for a token");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The system's random source failed; no token was made. Retry later.",
        )
    })?;
    Ok(bytes)
}

/// `POST /api/v1/tokens`: issues a token (its text is in this answer only).
pub async fn create(
    State(s): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    JsonBody(request): JsonBody<TokenRequest>,
) -> Result<Response, ApiError> {
    let tokens = store(&s)?;
    let issued = TokenRecord::issue(request, &principal, &random()?, Timestamp::now())?;
    tokens.put_token(issued.record.clone()).await?;
    let note = AuditNote {
        project: issued.record.projects.clone(),
        target: issued.record.id.clone(),
    };
    let mut res = (StatusCode::CREATED, Json(issued)).into_response();
    res.extensions_mut().insert(note);
    Ok(res)
}

/// `GET /api/v1/tokens`: the tokens this admin may manage, without their hashes.
pub async fn list(
    State(s): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tokens: Vec<serde_json::Value> = store(&s)?
        .tokens()
        .await?
        .into_iter()
        .filter(|t| principal.may_manage_tokens_for(&t.projects))
        .map(|t| t.listing())
        .collect();
    Ok(Json(json!({ "tokens": tokens })))
}

/// `DELETE /api/v1/tokens/{id}`: revokes a token at once.
pub async fn revoke(
    State(s): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let tokens = store(&s)?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("Token `{id}` not found"));
    let record = tokens.token(&id).await?.ok_or_else(not_found)?;
    if !principal.may_manage_tokens_for(&record.projects) {
        // Not a 403: the token's existence is not this admin's to learn.
        return Err(not_found());
    }
    tokens.delete_token(&id).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.extensions_mut().insert(AuditNote {
        project: record.projects,
        target: id,
    });
    Ok(res)
}

/// `GET /api/v1/auth/whoami`: the caller's name and grants, whether auth is on, and what each
/// role allows (`roles`) and needs (`needs`): the Alerts page disables what the caller's role
/// cannot do from this, without a second copy of the rules.
pub async fn whoami(
    State(s): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
) -> Json<serde_json::Value> {
    let roles: serde_json::Map<String, serde_json::Value> = Role::ALL
        .into_iter()
        .map(|r| {
            let allowed: Vec<Action> = Action::ALL.into_iter().filter(|a| r.allows(*a)).collect();
            (r.as_str().to_owned(), json!(allowed))
        })
        .collect();
    let needs: serde_json::Map<String, serde_json::Value> = Action::ALL
        .into_iter()
        .map(|a| {
            let key = serde_json::to_value(a)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            (key, json!(a.least_role()))
        })
        .collect();
    Json(json!({
        "name": principal.name,
        "grants": principal.grants,
        "authenticated": principal.authenticated,
        "auth": s.auth.enabled(),
        "roles": roles,
        "needs": needs,
    }))
}
