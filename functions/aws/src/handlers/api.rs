//! The API function: the same axum router as `tocsin serve`, behind API Gateway's HTTP API
//! (payload v2). Single events are evaluated in the request; batches go to the SQS queue when
//! one is configured. Activations fired by a request are published before it is answered.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::Response;
use tower::ServiceExt;

use tocsin_adapters::api::{AppState, EventQueue, RequestLimits, router};
use tocsin_adapters::notify::NotifierError;

use crate::environment::{Clients, Environment};
use crate::queue::SqsQueue;
use crate::sns::Publisher;

use super::{Wiring, wiring};

pub struct ApiHandler {
    router: axum::Router,
    publisher: Arc<Publisher>,
}

impl ApiHandler {
    /// Fails only when the notifier that sends test messages cannot be built.
    pub fn new(env: &Environment, clients: &Clients) -> Result<Self, NotifierError> {
        let Wiring {
            service, publisher, ..
        } = wiring(env, clients);
        let queue = env.queue_url.as_ref().map(|url| {
            Arc::new(SqsQueue::new(clients.sqs.clone(), url.clone())) as Arc<dyn EventQueue>
        });
        let notifier = super::notifier_of(env, service.clone())?;
        let state = AppState {
            queue,
            notifier: Some(Arc::new(notifier)),
            auth: Arc::new(env.claims.clone()),
            ..AppState::open(service)
        };
        let limits = RequestLimits {
            max_body_bytes: env.max_body_bytes,
            ..RequestLimits::default()
        };
        Ok(ApiHandler {
            router: router(state, limits),
            publisher,
        })
    }

    /// One request: routed, then whatever it fired published, then answered.
    pub async fn handle(&self, request: lambda_http::Request) -> Result<Response, Infallible> {
        let response = self.router.clone().oneshot(request).await?;
        self.publisher.flush().await;
        Ok(response)
    }
}
