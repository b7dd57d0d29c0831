//! Alert configs and their state: every change is a conditional write on the alert's version
//! and bumps the catalog, so that evaluators reload within their config TTL.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, Put, ReturnValue, TransactWriteItem, Update};
use tocsin_core::engine::{Closed, PutAlert};
use tocsin_core::error::{Backend, Error, Result};
use tocsin_core::model::Timestamp;
use tocsin_core::ops;
use tocsin_core::store::units::{self, AlertRow, AlertRows, AlertWrite};
use tocsin_core::store::{AlertRecord, AlertStore, PutOutcome};

use super::DynamoStore;
use super::cache::StoredAlert;
use super::intake::build_err;
use super::item::{
    LEGACY_ACTIVATIONS, activation_pk, activation_sk, alert_sk, cancelled_conditions, get_n,
    is_conditional, key, n, s, sdk_err,
};

/// What a write of an alert item did.
enum ItemWrite {
    Done,
    /// A concurrent writer changed the alert (or the catalog refused): read again.
    Conflict(Vec<bool>),
}

impl DynamoStore {
    /// The catalog update that goes with every config change: `v` + 1, and `alerts` + `delta`.
    pub(super) fn catalog_bump(&self, delta: i64, max: Option<usize>) -> Result<TransactWriteItem> {
        let mut u = Update::builder()
            .table_name(self.table())
            .set_key(Some(key("META", "CATALOG")))
            .update_expression("ADD v :one, alerts :delta")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":delta", n(delta));
        if let Some(max) = max {
            u = u
                .condition_expression("attribute_not_exists(alerts) OR alerts < :max")
                .expression_attribute_values(":max", n(max));
        }
        Ok(TransactWriteItem::builder()
            .update(u.build().map_err(build_err)?)
            .build())
    }

    /// Writes `alert` (at `alert.v`, expected at `expected`) with a catalog bump, atomically.
    async fn write_alert(
        &self,
        alert: &StoredAlert,
        expected: u64,
        catalog: TransactWriteItem,
    ) -> Result<ItemWrite> {
        let (condition, value) = super::cache::at_version(expected);
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(alert.to_item()?))
            .condition_expression(condition)
            .set_expression_attribute_values(value.map(|v| [(":expected".to_owned(), v)].into()))
            .build()
            .map_err(build_err)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(catalog)
            .send()
            .await;
        match result {
            Ok(_) => Ok(ItemWrite::Done),
            Err(e) => match cancelled_conditions(&e) {
                Some(reasons) => Ok(ItemWrite::Conflict(reasons)),
                None => Err(sdk_err("TransactWriteItems", e)),
            },
        }
    }

    /// Allocates the next `count` values of a catalog counter (`next_alert`,
    /// `next_activation`); returns the last of them.
    pub(super) async fn next_ids(&self, counter: &str, count: u64) -> Result<u64> {
        let out = self
            .client
            .update_item()
            .table_name(self.table())
            .set_key(Some(key("META", "CATALOG")))
            .update_expression("ADD #c :count")
            .expression_attribute_names("#c", counter)
            .expression_attribute_values(":count", n(count))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| sdk_err("UpdateItem", e))?;
        out.attributes()
            .ok_or_else(|| Error::backend(Backend::DynamoDb, "the catalog counter came back empty"))
            .and_then(|a| get_n(a, counter))
    }

    /// Stamps the activation a reset (or a cooldown's end) closed with its `reset_time` and why,
    /// unless it already has them or is gone; with resolved notifications to deliver, writes
    /// them into it, which puts it back in the outbox.
    pub(super) async fn close_activation(&self, closed: Closed) -> Result<()> {
        let id = closed.activation;
        if !closed.resolved.is_empty() {
            return self
                .change_activation(id, |a| a.close(closed.at, &closed.why, &closed.resolved))
                .await;
        }
        for pk in [activation_pk(id), LEGACY_ACTIVATIONS.to_owned()] {
            let result = self
                .client
                .update_item()
                .table_name(self.table())
                .set_key(Some(key(pk, activation_sk(id))))
                .update_expression(
                    "SET reset_time = if_not_exists(reset_time, :t), resolution = if_not_exists(resolution, :why)",
                )
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":t", n(closed.at.0))
                .expression_attribute_values(":why", s(&closed.why))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(e) if is_conditional(&e) => continue,
                Err(e) => return Err(sdk_err("UpdateItem", e)),
            }
        }
        Ok(())
    }

    /// The write of an alert's new runtime by the write with `token`, conditional on the
    /// version read, for a transaction; `unindex` also takes the alert out of the due index
    /// (see `due`).
    pub(super) fn runtime_update(
        &self,
        alert: &StoredAlert,
        runtime: &tocsin_core::engine::Runtime,
        unindex: bool,
        token: u64,
    ) -> Result<TransactWriteItem> {
        let expression = if unindex {
            "SET rt = :rt, v = :next, lw = :lw REMOVE gsi2pk, gsi2sk"
        } else {
            "SET rt = :rt, v = :next, lw = :lw"
        };
        let update = Update::builder()
            .table_name(self.table())
            .set_key(Some(key(
                "ALERT",
                alert_sk(alert.rule.project(), alert.rule.name()),
            )))
            .update_expression(expression)
            .condition_expression("v = :expected")
            .expression_attribute_values(":rt", super::item::json(runtime)?)
            .expression_attribute_values(":next", n(alert.v + 1))
            .expression_attribute_values(":expected", n(alert.v))
            .expression_attribute_values(":lw", super::item::writers_after(token, &alert.writers))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The conditional put of a new activation, for a firing's transaction.
    pub(super) fn activation_put(
        &self,
        a: &tocsin_core::model::Activation,
    ) -> Result<TransactWriteItem> {
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(self.activation_item(a, 1)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

/// Alert rows on DynamoDB: each write conditional on the version read, with a catalog bump so
/// that every instance's cache reloads, and a token that recognises the write as this one's
/// when DynamoDB applied it and answered with an error.
pub(super) struct Rows<'s> {
    store: &'s DynamoStore,
    /// The tokens of the last writes of the row read last.
    writers: Vec<u64>,
}

impl<'s> Rows<'s> {
    pub(super) fn new(store: &'s DynamoStore) -> Self {
        Rows {
            store,
            writers: Vec::new(),
        }
    }
}

impl AlertRows for Rows<'_> {
    const BACKEND: Backend = Backend::DynamoDb;

    async fn read(&mut self, project: &str, name: &str) -> Result<Option<AlertRow>> {
        let stored = self.store.read_alert(project, name).await?;
        self.writers = stored
            .as_ref()
            .map(|a| a.writers.clone())
            .unwrap_or_default();
        Ok(stored.map(|a| AlertRow {
            record: a.record(),
            version: a.v,
            generation: a.generation,
            arm_due: a.arm_due,
        }))
    }

    /// The limit on new alerts is enforced by the catalog's condition, in the write.
    fn count(&self) -> Option<usize> {
        None
    }

    async fn next_alert_id(&mut self) -> Result<u64> {
        self.store.next_ids("next_alert", 1).await
    }

    async fn write(&mut self, write: AlertWrite) -> Result<units::Written> {
        let AlertWrite {
            row,
            expected,
            max_allowed,
            closed,
            noted,
            ..
        } = write;
        let token = super::item::write_token();
        let mut writers = vec![token];
        writers.extend(self.writers.iter().take(super::item::WRITERS_KEPT - 1));
        let (project, name) = (
            row.record.rule.project().to_owned(),
            row.record.rule.name().to_owned(),
        );
        let alert = StoredAlert {
            id: row.record.id,
            rule: row.record.rule,
            runtime: row.record.runtime,
            created: row.record.created,
            updated: row.record.updated,
            v: row.version,
            generation: row.generation,
            arm_due: row.arm_due,
            writers,
        };
        let catalog = match expected {
            None => self.store.catalog_bump(1, Some(max_allowed))?,
            Some(_) => self.store.catalog_bump(0, None)?,
        };
        let written = self
            .store
            .write_alert(&alert, expected.unwrap_or(0), catalog)
            .await?;
        if let ItemWrite::Conflict(reasons) = written {
            // Applied and answered with an error (the SDK's retry then met the write)?
            let mine = self
                .store
                .read_alert(&project, &name)
                .await?
                .is_some_and(|a| a.writers.first() == Some(&token));
            if !mine {
                if expected.is_none() && reasons.get(1) == Some(&true) {
                    let count = self.store.catalog().await?.alerts;
                    return Ok(units::Written::TooMany(count));
                }
                return Ok(units::Written::Conflict);
            }
        }
        for c in closed {
            self.store.close_activation(c).await?;
        }
        for n in noted {
            self.store
                .change_activation(n.activation, |a| {
                    a.note_acknowledgement(&n.deliveries, n.at)
                })
                .await?;
        }
        self.store.cache.lock().await.invalidate();
        Ok(units::Written::Done)
    }

    async fn delete(&mut self, project: &str, name: &str) -> Result<bool> {
        let delete = Delete::builder()
            .table_name(self.store.table())
            .set_key(Some(key("ALERT", alert_sk(project, name))))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(build_err)?;
        let result = self
            .store
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete).build())
            .transact_items(self.store.catalog_bump(-1, None)?)
            .send()
            .await;
        match result {
            Ok(_) => {
                self.store.cache.lock().await.invalidate();
                Ok(true)
            }
            Err(e) if cancelled_conditions(&e).is_some() => Ok(false),
            Err(e) => Err(sdk_err("TransactWriteItems", e)),
        }
    }
}

#[async_trait]
impl AlertStore for DynamoStore {
    async fn put_alert(&self, put: PutAlert) -> Result<PutOutcome> {
        ops::change::put(&mut Rows::new(self), put).await
    }

    async fn get_alert(&self, project: &str, name: &str) -> Result<Option<AlertRecord>> {
        Ok(self.read_alert(project, name).await?.map(|a| a.record()))
    }

    async fn alert_window(
        &self,
        project: &str,
        name: &str,
        entity: &str,
    ) -> Result<Option<(AlertRecord, tocsin_core::engine::Window)>> {
        let Some(alert) = self.read_alert(project, name).await? else {
            return Ok(None);
        };
        let key = super::cache::WindowKey {
            alert: alert.id,
            generation: alert.generation,
            entity: alert.rule.per_entity.then(|| entity.into()),
        };
        let window = self.read_window(&key).await?.window;
        Ok(Some((alert.record(), window)))
    }

    async fn list_alerts(
        &self,
        project: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<AlertRecord>> {
        let mut alerts = self.load_alerts().await?;
        alerts.retain(|a| project.is_none_or(|p| a.rule.project() == p));
        alerts.sort_by(|a, b| {
            (a.rule.project(), a.rule.name()).cmp(&(b.rule.project(), b.rule.name()))
        });
        Ok(alerts
            .iter()
            .skip(offset)
            .take(limit)
            .map(StoredAlert::record)
            .collect())
    }

    async fn delete_alert(&self, project: &str, name: &str) -> Result<bool> {
        ops::change::delete(&mut Rows::new(self), project, name).await
    }

    async fn reset_alert(
        &self,
        project: &str,
        name: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<bool> {
        ops::change::reset(&mut Rows::new(self), project, name, by, now).await
    }

    async fn acknowledge_alert(
        &self,
        project: &str,
        name: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<bool> {
        ops::change::acknowledge(&mut Rows::new(self), project, name, by, now).await
    }

    async fn alert_count(&self) -> Result<usize> {
        Ok(self.catalog().await?.alerts)
    }

    async fn delivered(
        &self,
        project: &str,
        alert: &str,
        activation: u64,
        name: &str,
        sent: Option<Timestamp>,
    ) -> Result<()> {
        ops::change::delivered(&mut Rows::new(self), project, alert, activation, name, sent).await
    }

    /// The catalog's version and activation counter: one strongly consistent read of an item
    /// under 100 bytes (1 read unit). A firing takes its activation id just before its
    /// transaction commits, so a reader in between sees the new version with the old listing:
    /// the API bounds how long a listing's tag is trusted for that reason.
    async fn alerts_version(&self) -> Result<String> {
        let c = self.catalog().await?;
        Ok(format!("{}-{}", c.version, c.next_activation))
    }
}
