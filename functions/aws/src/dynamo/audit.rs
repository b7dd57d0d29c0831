//! The audit list: items `pk = AUDIT`, `sk` = time (20 digits) `#` a number that makes it
//! unique, listed newest first from the base table (all projects) or `gsi1` (one project, as
//! activations are). Human actions are rare: one partition holds them.

use async_trait::async_trait;
use tocsin_core::auth::AuditEntry;
use tocsin_core::error::Result;
use tocsin_core::store::AuditStore;

use super::DynamoStore;
use super::item::{get_json, is_conditional, json, key, s, sdk_err};

/// Entries read per page of the listing.
const PAGE: i32 = 100;
/// Entries written in the same microsecond before giving up (each retry takes the next number).
const MAX_SAME_TIME: u32 = 16;

#[async_trait]
impl AuditStore for DynamoStore {
    async fn record_audit(&self, entry: AuditEntry) -> Result<()> {
        let mut n = 0;
        loop {
            let sk = format!("{:020}#{n:04}", entry.time.0.max(0));
            let mut item = key("AUDIT", sk.clone());
            item.insert("doc".into(), json(&entry)?);
            item.insert("gsi1pk".into(), s(format!("AUDIT#{}", entry.project)));
            item.insert("gsi1sk".into(), s(sk));
            let put = self
                .client
                .put_item()
                .table_name(self.table())
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(sk)")
                .send()
                .await;
            match put {
                Ok(_) => return Ok(()),
                Err(e) if is_conditional(&e) && n + 1 < MAX_SAME_TIME => n += 1,
                Err(e) => return Err(sdk_err("PutItem", e)),
            }
        }
    }

    async fn audit_log(&self, project: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>> {
        let mut items = self
            .newest_first("AUDIT", project)
            .limit(PAGE.min(i32::try_from(limit).unwrap_or(PAGE)).max(1))
            .into_paginator()
            .items()
            .send();
        let mut found = Vec::new();
        while found.len() < limit {
            let Some(item) = items.next().await else {
                break;
            };
            let item = item.map_err(|e| sdk_err("Query", e))?;
            found.push(get_json(&item, "doc")?);
        }
        Ok(found)
    }
}
