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
use crate::sns::{Publisher, Topic};
use crate::subscriptions::EmailSubscriptions;

/// What every function runs on.
pub struct Wiring {
    /// The DynamoDB store and the operator's settings, with the topic's email subscriptions
    /// kept in step by a hook; what fires goes to `publisher`.
    pub service: Service,
    pub topic: Arc<Topic>,
    /// Holds what an invocation fired until the handler publishes it, before answering.
    pub publisher: Arc<Publisher>,
}

/// Builds the wiring once per container.
pub fn wiring(env: &Environment, clients: &Clients) -> Wiring {
    let topic = Arc::new(Topic::new(clients.sns.clone(), env.topic_arn.clone()));
    let publisher = Arc::new(Publisher::new(topic.clone()));
    let store = DynamoStore::new(clients.dynamo.clone(), env.dynamo());
    let subscriptions = Arc::new(EmailSubscriptions::new(store.clone(), topic.clone()));
    let store: Arc<dyn Store> = Arc::new(store);
    Wiring {
        service: Service::new(store, env.alerts.clone(), publisher.clone())
            .with_hook(subscriptions),
        topic,
        publisher,
    }
}

/// The notifier of a Lambda: no background worker, mail carried by the SNS topic's email
/// subscriptions. The notifier function delivers with it; the API function sends test
/// messages with it.
pub fn notifier_of(
    env: &Environment,
    service: Service,
) -> Result<tocsin_adapters::notify::Notifier, tocsin_adapters::notify::NotifierError> {
    use tocsin_adapters::notify::{DeliverySettings, Notifier, SmtpSettings};
    let settings = DeliverySettings {
        give_up_after_secs: env.give_up_secs,
        email_via_sns: true,
        ..DeliverySettings::default()
    };
    Notifier::standalone(service, settings, &SmtpSettings::default())
}
