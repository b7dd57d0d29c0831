//! Email subscriptions of the SNS topic, kept in step with the alerts: storing an alert with
//! email notifications subscribes each address with a filter policy on the alert; changing or
//! deleting it unsubscribes the addresses it no longer names. The subscription ARNs are kept
//! in the table (an unconfirmed email subscription's ARN is not listed by SNS).

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;
use tocsin_core::AlertHook;
use tocsin_core::compiled::Rule;
use tocsin_core::error::{Backend, Error, Result};
use tocsin_core::model::notification_params::email_recipients;

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

/// The topic's email subscriptions, kept in step with the alerts (an [`AlertHook`]); their
/// ARNs are kept in the store's table.
pub struct EmailSubscriptions {
    store: DynamoStore,
    topic: std::sync::Arc<Topic>,
}

impl EmailSubscriptions {
    pub fn new(store: DynamoStore, topic: std::sync::Arc<Topic>) -> Self {
        EmailSubscriptions { store, topic }
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
impl AlertHook for EmailSubscriptions {
    /// Subscribes the addresses the alert's email notifications name, and unsubscribes those
    /// it no longer names (all of them when it was deleted).
    async fn changed(&self, project: &str, name: &str, rule: Option<&Rule>) -> Result<()> {
        let wanted = rule.map(email_recipients).unwrap_or_default();
        self.sync(project, name, &wanted).await
    }
}
