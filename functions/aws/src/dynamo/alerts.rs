//! Alert configs and their state: every change is a conditional write on the alert's version
//! and bumps the catalog, so that evaluators reload within their config TTL.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, Put, ReturnValue, TransactWriteItem, Update};
use tocsin_core::engine::{Closed, PutAlert, absence, update};
use tocsin_core::error::{Backend, Error, Result};
use tocsin_core::model::Timestamp;
use tocsin_core::store::{AlertRecord, AlertStore, PutOutcome};

use super::cache::StoredAlert;
use super::item::{
    LEGACY_ACTIVATIONS, activation_pk, activation_sk, alert_sk, cancelled_conditions, get_n,
    is_conditional, key, n, s, sdk_err,
};
use super::{DynamoStore, MAX_CONFLICTS};

fn build_err(e: impl std::fmt::Display) -> Error {
    Error::backend(
        Backend::DynamoDb,
        format!("cannot build a DynamoDB request: {e}"),
    )
}

/// What a write of an alert did.
enum Written {
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
    ) -> Result<Written> {
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
            Ok(_) => Ok(Written::Done),
            Err(e) => match cancelled_conditions(&e) {
                Some(reasons) => Ok(Written::Conflict(reasons)),
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

    /// Read, change, write back conditionally, retrying when a concurrent writer won. The
    /// change returns the activation it closes, if any. False when there is no such alert.
    pub(super) async fn update_alert(
        &self,
        project: &str,
        name: &str,
        mut change: impl FnMut(&mut StoredAlert) -> Result<Vec<Closed>>,
    ) -> Result<bool> {
        for _ in 0..MAX_CONFLICTS {
            let Some(mut alert) = self.read_alert(project, name).await? else {
                return Ok(false);
            };
            let expected = alert.v;
            let closed = change(&mut alert)?;
            alert.v += 1;
            if let Written::Done = self
                .write_alert(&alert, expected, self.catalog_bump(0, None)?)
                .await?
            {
                for c in closed {
                    self.close_activation(c).await?;
                }
                self.cache.lock().await.invalidate();
                return Ok(true);
            }
        }
        Err(conflicts())
    }
}

fn conflicts() -> Error {
    Error::backend(
        Backend::DynamoDb,
        format!("gave up after {MAX_CONFLICTS} conflicting concurrent writes to one alert"),
    )
}

#[async_trait]
impl AlertStore for DynamoStore {
    async fn put_alert(&self, put: PutAlert) -> Result<PutOutcome> {
        let (project, name) = (put.rule.project().to_owned(), put.rule.name().to_owned());
        for _ in 0..MAX_CONFLICTS {
            let old = self.read_alert(&project, &name).await?;
            // The limit on new alerts is enforced by the catalog's condition, in the write.
            let plan = update::put(old.as_ref().map(|o| (&*o.rule, &o.runtime)), &put, None)?;
            let Some(old) = old else {
                let alert = StoredAlert {
                    id: self.next_ids("next_alert", 1).await?,
                    rule: Arc::new(plan.rule),
                    runtime: plan.runtime,
                    created: put.now,
                    updated: put.now,
                    v: 1,
                    generation: 1,
                    arm_due: None,
                };
                let alert = StoredAlert {
                    arm_due: absence::arm_deadline(&alert.rule, &alert.runtime),
                    ..alert
                };
                match self
                    .write_alert(&alert, 0, self.catalog_bump(1, Some(put.max_allowed))?)
                    .await?
                {
                    Written::Done => {
                        self.cache.lock().await.invalidate();
                        return Ok(PutOutcome {
                            alert: alert.record(),
                            created: true,
                            reset: false,
                        });
                    }
                    Written::Conflict(reasons) if reasons.get(1) == Some(&true) => {
                        let count = self.catalog().await?.alerts;
                        return Err(update::too_many(count, put.max_allowed));
                    }
                    // Created concurrently: update it instead.
                    Written::Conflict(_) => continue,
                }
            };
            let mut alert = old.clone();
            if plan.new_windows {
                alert.generation += 1;
            }
            alert.rule = Arc::new(plan.rule);
            alert.runtime = plan.runtime;
            if plan.new_windows || alert.rule.absence.is_none() {
                alert.arm_due = absence::arm_deadline(&alert.rule, &alert.runtime);
            }
            alert.updated = put.now;
            alert.v += 1;
            if let Written::Done = self
                .write_alert(&alert, old.v, self.catalog_bump(0, None)?)
                .await?
            {
                for c in plan.closed {
                    self.close_activation(c).await?;
                }
                self.cache.lock().await.invalidate();
                return Ok(PutOutcome {
                    alert: alert.record(),
                    created: false,
                    reset: plan.reset,
                });
            }
        }
        Err(conflicts())
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
        let delete = Delete::builder()
            .table_name(self.table())
            .set_key(Some(key("ALERT", alert_sk(project, name))))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(build_err)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete).build())
            .transact_items(self.catalog_bump(-1, None)?)
            .send()
            .await;
        match result {
            Ok(_) => {
                self.cache.lock().await.invalidate();
                Ok(true)
            }
            Err(e) if cancelled_conditions(&e).is_some() => Ok(false),
            Err(e) => Err(sdk_err("TransactWriteItems", e)),
        }
    }

    async fn reset_alert(
        &self,
        project: &str,
        name: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<bool> {
        self.update_alert(project, name, |alert| {
            alert.generation += 1;
            let rule = alert.rule.clone();
            let closed = update::reset(&rule, &mut alert.runtime, by, now);
            alert.arm_due = absence::arm_deadline(&rule, &alert.runtime);
            Ok(closed)
        })
        .await
    }

    async fn acknowledge_alert(
        &self,
        project: &str,
        name: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<bool> {
        self.update_alert(project, name, |alert| {
            update::acknowledge(&mut alert.runtime, by, now)?;
            Ok(Vec::new())
        })
        .await
    }

    async fn alert_count(&self) -> Result<usize> {
        Ok(self.catalog().await?.alerts)
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
