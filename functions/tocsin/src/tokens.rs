//! `tocsin token create|list|revoke`: through a running server's API (with an admin token in
//! `TOCSIN_TOKEN`), or on a stopped server's data directory, which is how the first admin
//! token is made. Both issue with [`TokenRecord::issue`] and record it in the audit list.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use tocsin_core::auth::{
    AuditEntry, Grant, ISSUE_RANDOM_BYTES, Principal, Role, TokenRecord, TokenRequest,
};
use tocsin_core::model::Timestamp;
use tocsin_core::store::{AuditStore, TokenStore};

use crate::client::{answer, http};
use crate::embedded::{Durability, EmbeddedStore, Options};

/// Where tokens are managed.
#[derive(Debug, Clone)]
pub enum Target {
    /// A running server's base URL.
    Server(String),
    /// The data directory of a server that is not running.
    DataDir(PathBuf),
}

/// Who issues tokens from the data directory: whoever may open it.
fn local_admin() -> Principal {
    Principal {
        name: "tocsin token (local)".to_owned(),
        grants: vec![Grant {
            role: Role::Admin,
            projects: "*".to_owned(),
        }],
        authenticated: true,
    }
}

fn open(dir: &Path) -> Result<Arc<EmbeddedStore>, String> {
    crate::serve::private_dir(dir).map_err(|e| e.to_string())?;
    EmbeddedStore::open(dir, Options::with(Durability::Fsync))
        .map(Arc::new)
        .map_err(|e| {
            format!(
                "{e}\n(if `tocsin serve` is running on it, use --server URL with an admin token \
                 in TOCSIN_TOKEN instead)"
            )
        })
}

fn url(server: &str, path: &str) -> String {
    format!("{}/api/v1{path}", server.trim_end_matches('/'))
}

/// Issues a token; returns the answer with the token's text in `token`.
pub async fn create(target: &Target, request: TokenRequest) -> Result<Value, String> {
    match target {
        Target::Server(server) => {
            let url = url(server, "/tokens");
            answer(&url, http().post(&url).json(&request).send().await).await
        }
        Target::DataDir(dir) => {
            let store = open(dir)?;
            let mut random = [0; ISSUE_RANDOM_BYTES];
            getrandom::fill(&mut random).map_err(|e| format!("no randomness: {e}"))?;
            let by = local_admin();
            let now = Timestamp::now();
            let issued =
                TokenRecord::issue(request, &by, &random, now).map_err(|e| e.to_string())?;
            store
                .put_token(issued.record.clone())
                .await
                .map_err(|e| e.to_string())?;
            store
                .record_audit(AuditEntry {
                    time: now,
                    project: issued.record.projects.clone(),
                    action: "token.create".to_owned(),
                    target: issued.record.id.clone(),
                    by: by.name,
                })
                .await
                .map_err(|e| e.to_string())?;
            let mut out = issued.record.listing();
            out["token"] = json!(issued.token);
            Ok(out)
        }
    }
}

/// The tokens (never their secrets or hashes).
pub async fn list(target: &Target) -> Result<Vec<Value>, String> {
    match target {
        Target::Server(server) => {
            let url = url(server, "/tokens");
            let body = answer(&url, http().get(&url).send().await).await?;
            Ok(body["tokens"].as_array().cloned().unwrap_or_default())
        }
        Target::DataDir(dir) => {
            let tokens = open(dir)?.tokens().await.map_err(|e| e.to_string())?;
            Ok(tokens.iter().map(TokenRecord::listing).collect())
        }
    }
}

/// Revokes a token at once.
pub async fn revoke(target: &Target, id: &str) -> Result<(), String> {
    match target {
        Target::Server(server) => {
            let url = url(server, &format!("/tokens/{id}"));
            answer(&url, http().delete(&url).send().await)
                .await
                .map(|_| ())
        }
        Target::DataDir(dir) => {
            let store = open(dir)?;
            let Some(record) = store.token(id).await.map_err(|e| e.to_string())? else {
                return Err(format!("token `{id}` not found"));
            };
            store.delete_token(id).await.map_err(|e| e.to_string())?;
            store
                .record_audit(AuditEntry {
                    time: Timestamp::now(),
                    project: record.projects,
                    action: "token.revoke".to_owned(),
                    target: id.to_owned(),
                    by: local_admin().name,
                })
                .await
                .map_err(|e| e.to_string())
        }
    }
}
