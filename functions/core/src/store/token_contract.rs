//! The contract of a [`TokenStore`], run by the stores that keep tokens (memory, embedded).

use std::sync::Arc;

use crate::auth::{ISSUE_RANDOM_BYTES, Principal, Role, TokenRecord, TokenRequest, parse_token};
use crate::model::Timestamp;
use crate::store::TokenStore;

/// Tokens are kept by id with only their hash, listed, found and revoked.
pub async fn tokens_are_kept_found_and_revoked(s: Arc<dyn TokenStore>) {
    let now = Timestamp(5_000_000);
    let issue = |byte: u8, role: Role| {
        TokenRecord::issue(
            TokenRequest {
                name: Some(format!("t{byte}")),
                role,
                projects: "fraud-*".to_owned(),
                expires_in: None,
            },
            &Principal::anonymous(),
            &[byte; ISSUE_RANDOM_BYTES],
            now,
        )
        .expect("issued")
    };
    let (a, b) = (issue(1, Role::Viewer), issue(2, Role::Admin));
    s.put_token(a.record.clone()).await.expect("stored");
    s.put_token(b.record.clone()).await.expect("stored");
    let found = s.token(&a.record.id).await.expect("read").expect("found");
    assert_eq!(found, a.record);
    let (_, secret) = parse_token(&a.token).expect("parses");
    assert!(found.verify(secret, now));
    let listed = s.tokens().await.expect("listed");
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|t| !t.secret_hash.contains(secret)));
    assert!(s.delete_token(&a.record.id).await.expect("revoked"));
    assert!(!s.delete_token(&a.record.id).await.expect("second revoke"));
    assert_eq!(s.token(&a.record.id).await.expect("read"), None);
    assert_eq!(s.tokens().await.expect("listed"), [b.record]);
}
