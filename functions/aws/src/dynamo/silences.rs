//! Silences: one item each (`SIL`, project `\u{1}` id), read whole by the evaluators' cache
//! with the alerts. A write bumps the catalog like a config change, so that evaluators see it
//! within their config TTL.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};
use tocsin_core::error::{Backend, Error, Result};
use tocsin_core::model::{Silence, Span, Timestamp};
use tocsin_core::store::{SilenceStore, Silences};

use super::DynamoStore;
use super::item::{Item, alert_sk, get_json, json, key, n, s, sdk_err, ttl_secs};

/// The partition of silences.
const PK: &str = "SIL";

/// At most this many expired silences are dropped with one write (a transaction holds 100
/// items); the next write drops more, and TTL the rest.
const MAX_DROPPED: usize = 90;

fn build_err(e: impl std::fmt::Display) -> Error {
    Error::backend(
        Backend::DynamoDb,
        format!("cannot build a DynamoDB request: {e}"),
    )
}

fn from_item(item: &Item) -> Result<Silence> {
    get_json(item, "doc")
}

impl DynamoStore {
    /// Every silence item, strongly consistent, dropping those TTL has not removed yet.
    pub(super) async fn load_silences(&self) -> Result<Silences> {
        let now = ttl_secs(Timestamp::now());
        let items: Vec<Item> = self
            .client
            .query()
            .table_name(self.table())
            .key_condition_expression("pk = :pk")
            .filter_expression("attribute_not_exists(expires_at) OR expires_at > :now")
            .expression_attribute_values(":pk", s(PK))
            .expression_attribute_values(":now", n(now))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| sdk_err("Query", e))?;
        let mut silences = Silences::default();
        for item in &items {
            silences.restore(from_item(item)?);
        }
        Ok(silences)
    }
}

#[async_trait]
impl SilenceStore for DynamoStore {
    async fn put_silence(&self, silence: Silence, now: Timestamp, retention: Span) -> Result<()> {
        let mut item = key(PK, alert_sk(&silence.project, &silence.id));
        item.insert("doc".into(), json(&silence)?);
        // TTL drops it once it has been expired for the retention.
        if let Some(end) = silence.ends_at {
            item.insert("expires_at".into(), n(ttl_secs(end.plus(retention))));
        }
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(item))
            .build()
            .map_err(build_err)?;
        // TTL removes them too, but late and by the wall clock: the contract drops them now.
        let mut items = vec![
            TransactWriteItem::builder().put(put).build(),
            self.catalog_bump(0, None)?,
        ];
        for old in self
            .load_silences()
            .await?
            .of(&silence.project)
            .iter()
            .filter(|s| s.id != silence.id && !s.is_kept(now, retention))
            .take(MAX_DROPPED)
        {
            let delete = Delete::builder()
                .table_name(self.table())
                .set_key(Some(key(PK, alert_sk(&old.project, &old.id))))
                .build()
                .map_err(build_err)?;
            items.push(TransactWriteItem::builder().delete(delete).build());
        }
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(|e| sdk_err("TransactWriteItems", e))?;
        self.cache.lock().await.invalidate();
        Ok(())
    }

    async fn silence(&self, project: &str, id: &str) -> Result<Option<Silence>> {
        let out = self
            .client
            .get_item()
            .table_name(self.table())
            .set_key(Some(key(PK, alert_sk(project, id))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem", e))?;
        out.item().map(from_item).transpose()
    }

    async fn silences(&self, project: Option<&str>) -> Result<Vec<Silence>> {
        Ok(self.load_silences().await?.list(project))
    }
}
