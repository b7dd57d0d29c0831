//! Activation records, spread over
//! [`ACTIVATION_SHARDS`](super::item::ACTIVATION_SHARDS) partitions by id: newest first from
//! the base table (all projects: the partitions merged by id) or `gsi1` (one project), the
//! outbox from the sparse `gsi2`.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
use tocsin_core::error::{Backend, Error, Result};
use tocsin_core::model::{Activation, Delivery, Timestamp};
use tocsin_core::store::{ActivationQuery, ActivationStore};

use super::item::{
    Item, LEGACY_ACTIVATIONS, activation_partitions, activation_pk, activation_sk, get_json, get_n,
    get_s, is_conditional, json, key, n, opt_n, s, sdk_err, ttl_secs,
};
use super::{DynamoStore, MAX_CONFLICTS};

/// Items read per page of a listing.
const PAGE: i32 = 100;

impl DynamoStore {
    /// An activation item at version `v`.
    pub(super) fn activation_item(&self, a: &Activation, v: u64) -> Result<Item> {
        let sk = activation_sk(a.id);
        let mut item = key(activation_pk(a.id), sk.clone());
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
        if a.resolution.is_none()
            && let Some(why) = item.get("resolution").and_then(|v| v.as_s().ok())
        {
            a.resolution = Some(why.clone());
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

    /// An activation by id, from its shard, or else from the legacy partition.
    async fn read_activation(&self, id: u64) -> Result<Option<(Activation, u64)>> {
        for pk in [activation_pk(id), LEGACY_ACTIVATIONS.to_owned()] {
            let out = self
                .client
                .get_item()
                .table_name(self.table())
                .set_key(Some(key(pk, activation_sk(id))))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| sdk_err("GetItem", e))?;
            match out.item() {
                Some(item) if !Self::expired(item, Timestamp::now()) => {
                    return Self::activation_of(item).map(Some);
                }
                Some(_) => return Ok(None),
                None => continue,
            }
        }
        Ok(None)
    }

    /// The activation items of a listing, newest first: one project's from `gsi1`, or every
    /// partition's merged by id. Each partition is read in pages sized to what the listing
    /// needs: ids go round the shards, so each holds about its share of the newest.
    async fn newest_activations(
        &self,
        project: Option<&str>,
        wanted: usize,
        mut each: impl FnMut(Item) -> Result<bool>,
    ) -> Result<()> {
        let queries = match project {
            Some(p) => vec![self.newest_first("ACT", Some(p))],
            None => activation_partitions()
                .map(|pk| {
                    self.client
                        .query()
                        .table_name(self.table())
                        .key_condition_expression("pk = :pk")
                        .expression_attribute_values(":pk", s(pk))
                        .scan_index_forward(false)
                        .consistent_read(true)
                })
                .collect(),
        };
        let share = wanted.div_ceil(queries.len()).saturating_add(2);
        let page = i32::try_from(share).unwrap_or(PAGE).clamp(10, PAGE);
        let mut streams: Vec<_> = queries
            .into_iter()
            .map(|q| q.limit(page).into_paginator().items().send())
            .collect();
        let mut heads = Vec::with_capacity(streams.len());
        for stream in &mut streams {
            heads.push(
                stream
                    .next()
                    .await
                    .transpose()
                    .map_err(|e| sdk_err("Query", e))?,
            );
        }
        loop {
            let newest = heads
                .iter()
                .enumerate()
                .filter_map(|(i, h)| Some((i, get_s(h.as_ref()?, "sk").ok()?)))
                .max_by(|a, b| a.1.cmp(b.1))
                .map(|(i, _)| i);
            let Some(i) = newest else {
                return Ok(());
            };
            let item = heads[i].take();
            heads[i] = streams[i]
                .next()
                .await
                .transpose()
                .map_err(|e| sdk_err("Query", e))?;
            if let Some(item) = item
                && !each(item)?
            {
                return Ok(());
            }
        }
    }
}

impl DynamoStore {
    /// Reads activation `id`, changes it with `f`, and writes it back conditional on the
    /// version read, again on a conflict. Nothing when it is gone (retention).
    pub(super) async fn change_activation(
        &self,
        id: u64,
        mut f: impl FnMut(&mut Activation),
    ) -> Result<()> {
        for _ in 0..MAX_CONFLICTS {
            let Some((mut a, v)) = self.read_activation(id).await? else {
                return Ok(());
            };
            f(&mut a);
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
            format!("gave up changing activation {id} after {MAX_CONFLICTS} conflicts"),
        ))
    }
}

#[async_trait]
impl ActivationStore for DynamoStore {
    async fn activations(&self, query: &ActivationQuery) -> Result<Vec<Activation>> {
        let now = Timestamp::now();
        let mut found = Vec::new();
        let mut skipped = 0;
        let wanted = query.offset.saturating_add(query.limit);
        self.newest_activations(query.project.as_deref(), wanted, |item| {
            if Self::expired(&item, now) {
                return Ok(true);
            }
            let (a, _) = Self::activation_of(&item)?;
            if !query.matches(&a) {
                return Ok(true);
            }
            if skipped < query.offset {
                skipped += 1;
                return Ok(true);
            }
            found.push(a);
            Ok(found.len() < query.limit)
        })
        .await?;
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
        self.change_activation(id, |a| a.record(delivery.clone()))
            .await
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
        let mut doomed = Vec::new();
        for pk in activation_partitions() {
            let items: Vec<Item> = self
                .client
                .query()
                .table_name(self.table())
                .key_condition_expression("pk = :pk")
                .filter_expression("#at < :before")
                .expression_attribute_names("#at", "at")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":before", n(before.0))
                .projection_expression("pk, sk")
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| sdk_err("Query", e))?;
            doomed.extend(items);
        }
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
