//! What the handlers share: the service, where batches go, who is asking, and the tokens.

use std::sync::Arc;

use tocsin_core::Service;
use tocsin_core::store::TokenStore;

use super::access::{Authenticate, Open, Tokens};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The service, which also dispatches what fires (off the request path).
    pub service: Service,
    /// Where batches of events go when they are evaluated elsewhere (the AWS deployment's SQS
    /// queue); None evaluates them before answering.
    pub queue: Option<Arc<dyn EventQueue>>,
    /// Who is asking ([`Open`] when auth is off).
    pub auth: Arc<dyn Authenticate>,
    /// The tokens that `/api/v1/tokens` manages; None where an identity provider issues them.
    pub tokens: Option<Arc<dyn TokenStore>>,
    /// The server's public URL, which messages and previews link to alerts by.
    pub public_url: Option<String>,
    /// Sends test messages (`notifications/test`); None where this host sends nothing.
    pub notifier: Option<Arc<crate::notify::Notifier>>,
    /// Metrics, readiness beyond the store, and reload (`tocsin serve`); None answers 501.
    pub operations: Option<Arc<dyn super::operate::Operations>>,
}

impl AppState {
    /// A state without auth, evaluating events before answering.
    pub fn open(service: Service) -> Self {
        AppState {
            service,
            queue: None,
            auth: Arc::new(Open),
            tokens: None,
            public_url: None,
            notifier: None,
            operations: None,
        }
    }

    /// Where an alert can be seen (see [`crate::notify::alert_url`]).
    pub fn alert_url(&self, project: &str, name: &str) -> Option<String> {
        crate::notify::alert_url(self.public_url.as_deref()?, project, name)
    }

    /// Authenticates with the tokens of `store`, which `/api/v1/tokens` manages.
    pub fn with_tokens(mut self, store: Arc<dyn TokenStore>) -> Self {
        self.auth = Arc::new(Tokens(store.clone()));
        self.tokens = Some(store);
        self
    }
}

/// A durable queue of accepted events, evaluated later by another process.
#[async_trait::async_trait]
pub trait EventQueue: Send + Sync {
    /// Queues every event, or fails as a whole (nothing is accepted then).
    async fn enqueue(
        &self,
        events: &[tocsin_core::model::AcceptedEvent],
    ) -> Result<(), tocsin_core::Error>;
}
