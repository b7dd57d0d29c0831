//! Email subscriptions of the SNS topic, kept in step with the alerts: storing an alert with
//! email notifications subscribes each address with a filter policy on the alert; changing or
//! deleting it unsubscribes the addresses it no longer names. The subscription ARNs are kept
//! in the table (an unconfirmed email subscription's ARN is not listed by SNS).

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;
use tocsin_adapters::notify::email_recipients;
use tocsin_core::auth::AuditEntry;
use tocsin_core::engine::{EventOutcome, PutAlert};
use tocsin_core::error::{Backend, Error, Result};
use tocsin_core::model::{AcceptedEvent, Activation, Delivery, Silence, Span, Timestamp};
use tocsin_core::store::{
    ActivationQuery, ActivationStore, AlertRecord, AlertStore, AuditStore, EventStore, PutOutcome,
    SilenceStore,
};

use crate::dynamo::DynamoStore;
use crate::dynamo::item::{Item, alert_sk, key, sdk_err};
use crate::sns::Topic;

fn sns_err(what: &str, e: impl std::error::Error + 'static) -> Error {
    Error::backend(
        Backend::Sns,
        format!(
            "SNS {what} failed: {}",
            aws_sdk_sns::error::DisplayErrorContext(e)
        ),
    )
}

/// The DynamoDB store with the topic's email subscriptions managed alongside the alerts.
pub struct SubscribingStore {
    store: DynamoStore,
    topic: std::sync::Arc<Topic>,
}

impl SubscribingStore {
    pub fn new(store: DynamoStore, topic: std::sync::Arc<Topic>) -> Self {
        SubscribingStore { store, topic }
    }

    async fn stored(&self, project: &str, name: &str) -> Result<BTreeMap<String, String>> {
        let out = self
            .store
            .client()
            .get_item()
            .table_name(self.store.table())
            .set_key(Some(key("SUBS", alert_sk(project, name))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem", e))?;
        let mut arns = BTreeMap::new();
        if let Some(AttributeValue::M(m)) = out.item().and_then(|i| i.get("arns")) {
            for (email, arn) in m {
                if let AttributeValue::S(arn) = arn {
                    arns.insert(email.clone(), arn.clone());
                }
            }
        }
        Ok(arns)
    }

    /// Subscribes `wanted` (each filtered to this alert) and unsubscribes the rest.
    pub async fn sync(&self, project: &str, name: &str, wanted: &BTreeSet<String>) -> Result<()> {
        let mut arns = self.stored(project, name).await?;
        if arns.keys().eq(wanted.iter()) {
            return Ok(());
        }
        let policy = json!({"project": [project], "alert": [name]}).to_string();
        let new: Vec<&String> = wanted.iter().filter(|e| !arns.contains_key(*e)).collect();
        for email in new {
            let out = self
                .topic
                .client()
                .subscribe()
                .topic_arn(self.topic.arn())
                .protocol("email")
                .endpoint(email)
                .attributes("FilterPolicy", &policy)
                .attributes("FilterPolicyScope", "MessageAttributes")
                .return_subscription_arn(true)
                .send()
                .await
                .map_err(|e| sns_err("Subscribe", e))?;
            let arn = out.subscription_arn().unwrap_or_default().to_owned();
            arns.insert(email.clone(), arn);
        }
        let gone: Vec<String> = arns
            .keys()
            .filter(|e| !wanted.contains(*e))
            .cloned()
            .collect();
        for email in gone {
            if let Some(arn) = arns.remove(&email) {
                self.unsubscribe(&arn).await?;
            }
        }
        self.save(project, name, &arns).await
    }

    async fn unsubscribe(&self, arn: &str) -> Result<()> {
        let result = self
            .topic
            .client()
            .unsubscribe()
            .subscription_arn(arn)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Already gone (unsubscribed by the recipient): nothing to do.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_not_found_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(sns_err("Unsubscribe", e)),
        }
    }

    async fn save(&self, project: &str, name: &str, arns: &BTreeMap<String, String>) -> Result<()> {
        let k = key("SUBS", alert_sk(project, name));
        if arns.is_empty() {
            self.store
                .client()
                .delete_item()
                .table_name(self.store.table())
                .set_key(Some(k))
                .send()
                .await
                .map_err(|e| sdk_err("DeleteItem", e))?;
            return Ok(());
        }
        let mut item: Item = k;
        let map = arns
            .iter()
            .map(|(e, a)| (e.clone(), AttributeValue::S(a.clone())))
            .collect();
        item.insert("arns".into(), AttributeValue::M(map));
        self.store
            .client()
            .put_item()
            .table_name(self.store.table())
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_err("PutItem", e))?;
        Ok(())
    }
}

#[async_trait]
impl AlertStore for SubscribingStore {
    async fn put_alert(&self, put: PutAlert) -> Result<PutOutcome> {
        let outcome = self.store.put_alert(put).await?;
        let rule = &outcome.alert.rule;
        self.sync(rule.project(), rule.name(), &email_recipients(rule))
            .await?;
        Ok(outcome)
    }
    async fn get_alert(&self, project: &str, name: &str) -> Result<Option<AlertRecord>> {
        self.store.get_alert(project, name).await
    }
    async fn alert_window(
        &self,
        project: &str,
        name: &str,
        entity: &str,
    ) -> Result<Option<(AlertRecord, tocsin_core::engine::Window)>> {
        self.store.alert_window(project, name, entity).await
    }
    async fn list_alerts(
        &self,
        project: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<AlertRecord>> {
        self.store.list_alerts(project, offset, limit).await
    }
    async fn alerts_version(&self) -> Result<String> {
        self.store.alerts_version().await
    }
    async fn delete_alert(&self, project: &str, name: &str) -> Result<bool> {
        let existed = self.store.delete_alert(project, name).await?;
        self.sync(project, name, &BTreeSet::new()).await?;
        Ok(existed)
    }
    async fn reset_alert(
        &self,
        project: &str,
        name: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<bool> {
        self.store.reset_alert(project, name, by, now).await
    }
    async fn acknowledge_alert(
        &self,
        project: &str,
        name: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<bool> {
        self.store.acknowledge_alert(project, name, by, now).await
    }
    async fn alert_count(&self) -> Result<usize> {
        self.store.alert_count().await
    }
}

#[async_trait]
impl EventStore for SubscribingStore {
    async fn apply_event(&self, event: &AcceptedEvent, ttl: Span) -> Result<EventOutcome> {
        self.store.apply_event(event, ttl).await
    }
    async fn recorded_events(
        &self,
        query: &tocsin_core::store::EventQuery,
    ) -> Result<Vec<tocsin_core::store::Recorded>> {
        self.store.recorded_events(query).await
    }
    async fn tick(&self, now: Timestamp) -> Result<tocsin_core::engine::Ticked> {
        self.store.tick(now).await
    }
    async fn apply_events(&self, events: &[AcceptedEvent], ttl: Span) -> Vec<Result<EventOutcome>> {
        self.store.apply_events(events, ttl).await
    }
}

#[async_trait]
impl SilenceStore for SubscribingStore {
    async fn put_silence(&self, silence: Silence, now: Timestamp, retention: Span) -> Result<()> {
        self.store.put_silence(silence, now, retention).await
    }
    async fn silence(&self, project: &str, id: &str) -> Result<Option<Silence>> {
        self.store.silence(project, id).await
    }
    async fn silences(&self, project: Option<&str>) -> Result<Vec<Silence>> {
        self.store.silences(project).await
    }
}

#[async_trait]
impl AuditStore for SubscribingStore {
    async fn record_audit(&self, entry: AuditEntry) -> Result<()> {
        self.store.record_audit(entry).await
    }
    async fn audit_log(&self, project: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>> {
        self.store.audit_log(project, limit).await
    }
}

#[async_trait]
impl ActivationStore for SubscribingStore {
    async fn activations(&self, query: &ActivationQuery) -> Result<Vec<Activation>> {
        self.store.activations(query).await
    }
    async fn activation(&self, project: &str, id: u64) -> Result<Option<Activation>> {
        self.store.activation(project, id).await
    }
    async fn record_delivery(&self, id: u64, delivery: Delivery) -> Result<()> {
        self.store.record_delivery(id, delivery).await
    }
    async fn pending_deliveries(&self, limit: usize) -> Result<Vec<Activation>> {
        self.store.pending_deliveries(limit).await
    }
    async fn prune_activations(&self, before: Timestamp) -> Result<usize> {
        self.store.prune_activations(before).await
    }
}
