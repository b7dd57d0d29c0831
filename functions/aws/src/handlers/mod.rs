//! The Lambda functions' handlers: thin adapters from Lambda events to the service. Each is
//! built once per container (clients and caches included) and reused by every invocation.

mod api;
mod evaluator;
mod notifier;

pub use api::ApiHandler;
pub use evaluator::EvaluatorHandler;
pub use notifier::NotifierHandler;

use std::sync::Arc;

use tocsin_core::Service;
use tocsin_core::store::Store;

use crate::dynamo::DynamoStore;
use crate::environment::{Clients, Environment};
use crate::sns::Topic;
use crate::subscriptions::SubscribingStore;

/// The service every function runs: the DynamoDB store, with the topic's email subscriptions
/// kept in step, and the operator's settings.
pub fn service(env: &Environment, clients: &Clients) -> (Service, Arc<Topic>) {
    let topic = Arc::new(Topic::new(clients.sns.clone(), env.topic_arn.clone()));
    let store = DynamoStore::new(clients.dynamo.clone(), env.dynamo());
    let store: Arc<dyn Store> = Arc::new(SubscribingStore::new(store, topic.clone()));
    (Service::new(store, env.alerts.clone()), topic)
}
