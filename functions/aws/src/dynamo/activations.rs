//! Activation records: newest first from the base table (all projects) or `gsi1` (one
//! project), the outbox from the sparse `gsi2`.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
use tocsin_core::error::{Backend, Error, Result};
use tocsin_core::model::{Activation, Delivery, Timestamp};
use tocsin_core::store::{ActivationQuery, ActivationStore};

use super::item::{
    Item, activation_sk, get_json, get_n, is_conditional, json, key, n, opt_n, s, sdk_err, ttl_secs,
};
use super::{DynamoStore, MAX_CONFLICTS};

/// Items read per page of a listing.
const PAGE: i32 = 100;

impl DynamoStore {
    /// An activation item at version `v`.
    pub(super) fn activation_item(&self, a: &Activation, v: u64) -> Result<Item> {
        let sk = activation_sk(a.id);
        let mut item = key("ACT", sk.clone());
        item.insert("doc".into(), json(a)?);
        item.insert("at".into(), n(a.activation_time.0));
        item.insert("v".into(), n(v));
        item.insert("gsi1pk".into(), s(format!("ACT#{}", a.project)));
        item.insert("gsi1sk".into(), s(sk.clone()));
        if a.is_pending() {
            item.insert("gsi2pk".into(), s("PENDING"));
            item.insert("gsi2sk".into(), s(sk));
        }
        if let Some(t) = a.reset_time {
            item.insert("reset_time".into(), n(t.0));
        }
        let expires = a.activation_time.plus(self.settings.activation_retention);
        item.insert("expires_at".into(), n(ttl_secs(expires)));
        Ok(item)
    }

    /// Reads an activation item: its document, with a `reset_time` stamped on it since.
    fn activation_of(item: &Item) -> Result<(Activation, u64)> {
        let mut a: Activation = get_json(item, "doc")?;
        if a.reset_time.is_none() {
            a.reset_time = opt_n::<i64>(item, "reset_time")?.map(Timestamp);
        }
        Ok((a, get_n(item, "v")?))
    }

    /// A query of the items of `kind` (`ACT`, `AUDIT`), newest first: of every project from the
    /// base table (`pk = kind`, strongly consistent), or of one from `gsi1`
    /// (`gsi1pk = kind#project`).
    pub(super) fn newest_first(&self, kind: &str, project: Option<&str>) -> QueryFluentBuilder {
        let (index, pk_name, pk) = match project {
            Some(p) => (Some("gsi1"), "gsi1pk", format!("{kind}#{p}")),
            None => (None, "pk", kind.to_owned()),
        };
        self.client
            .query()
            .table_name(self.table())
            .set_index_name(index.map(str::to_owned))
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", pk_name)
            .expression_attribute_values(":pk", s(pk))
            .scan_index_forward(false)
            .consistent_read(index.is_none())
    }

    /// Whether TTL should have deleted the item already (it deletes lazily).
    fn expired(item: &Item, now: Timestamp) -> bool {
        opt_n::<i64>(item, "expires_at")
            .ok()
            .flatten()
            .is_some_and(|e| e <= now.0 / 1_000_000)
    }

    async fn read_activation(&self, id: u64) -> Result<Option<(Activation, u64)>> {
        let out = self
            .client
            .get_item()
            .table_name(self.table())
            .set_key(Some(key("ACT", activation_sk(id))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem", e))?;
        match out.item() {
            Some(item) if !Self::expired(item, Timestamp::now()) => {
                Self::activation_of(item).map(Some)
            }
            _ => Ok(None),
        }
    }
}

#[async_trait]
impl ActivationStore for DynamoStore {
    async fn activations(&self, query: &ActivationQuery) -> Result<Vec<Activation>> {
        let now = Timestamp::now();
        let mut found = Vec::new();
        let mut skipped = 0;
        let mut items = self
            .newest_first("ACT", query.project.as_deref())
            .limit(PAGE)
            .into_paginator()
            .items()
            .send();
        while found.len() < query.limit {
            let Some(item) = items.next().await else {
                break;
            };
            let item = item.map_err(|e| sdk_err("Query", e))?;
            if Self::expired(&item, now) {
                continue;
            }
            let (a, _) = Self::activation_of(&item)?;
            if !query.matches(&a) {
                continue;
            }
            if skipped < query.offset {
                skipped += 1;
                continue;
            }
            found.push(a);
        }
        Ok(found)
    }

    async fn activation(&self, project: &str, id: u64) -> Result<Option<Activation>> {
        Ok(self
            .read_activation(id)
            .await?
            .map(|(a, _)| a)
            .filter(|a| a.project == project))
    }

    async fn record_delivery(&self, id: u64, delivery: Delivery) -> Result<()> {
        for _ in 0..MAX_CONFLICTS {
            let Some((mut a, v)) = self.read_activation(id).await? else {
                return Ok(());
            };
            a.record(delivery.clone());
            let result = self
                .client
                .put_item()
                .table_name(self.table())
                .set_item(Some(self.activation_item(&a, v + 1)?))
                .condition_expression("v = :expected")
                .expression_attribute_values(":expected", n(v))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(e) if is_conditional(&e) => continue,
                Err(e) => return Err(sdk_err("PutItem", e)),
            }
        }
        Err(Error::backend(
            Backend::DynamoDb,
            format!(
                "gave up recording a delivery of activation {id} after {MAX_CONFLICTS} conflicts"
            ),
        ))
    }

    async fn pending_deliveries(&self, limit: usize) -> Result<Vec<Activation>> {
        let mut found = Vec::new();
        let mut items = self
            .client
            .query()
            .table_name(self.table())
            .index_name("gsi2")
            .key_condition_expression("gsi2pk = :p")
            .expression_attribute_values(":p", s("PENDING"))
            .limit(PAGE)
            .into_paginator()
            .items()
            .send();
        while found.len() < limit {
            let Some(item) = items.next().await else {
                break;
            };
            let (a, _) = Self::activation_of(&item.map_err(|e| sdk_err("Query", e))?)?;
            if a.is_pending() {
                found.push(a);
            }
        }
        Ok(found)
    }

    async fn prune_activations(&self, before: Timestamp) -> Result<usize> {
        let doomed = self
            .client
            .query()
            .table_name(self.table())
            .key_condition_expression("pk = :pk")
            .filter_expression("#at < :before")
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":pk", s("ACT"))
            .expression_attribute_values(":before", n(before.0))
            .projection_expression("pk, sk")
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| sdk_err("Query", e))?;
        for chunk in doomed.chunks(25) {
            let requests = chunk
                .iter()
                .map(|k| {
                    DeleteRequest::builder()
                        .set_key(Some(k.clone()))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(|e| Error::backend(Backend::DynamoDb, e.to_string()))
                })
                .collect::<Result<Vec<_>>>()?;
            let mut pending = Some(requests);
            // BatchWriteItem may leave some for later under throttling: send those again.
            for _ in 0..MAX_CONFLICTS {
                let Some(batch) = pending.take().filter(|b| !b.is_empty()) else {
                    break;
                };
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(self.table(), batch)
                    .send()
                    .await
                    .map_err(|e| sdk_err("BatchWriteItem", e))?;
                pending = out
                    .unprocessed_items()
                    .and_then(|u| u.get(self.table()))
                    .cloned();
            }
        }
        Ok(doomed.len())
    }
}
