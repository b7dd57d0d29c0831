//! The evaluator function: takes SQS batches of accepted events, evaluates each batch with one
//! write per window it touches, publishes what fired, and reports the messages that failed so
//! that SQS retries only those (and, after the queue's `maxReceiveCount`, moves them to the
//! dead-letter queue).

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use tocsin_core::Service;
use tocsin_core::model::AcceptedEvent;

use super::{Wiring, wiring};
use crate::environment::{Clients, Environment};
use crate::sns::Outbox;

pub struct EvaluatorHandler {
    service: Service,
    outbox: Arc<Outbox>,
}

impl EvaluatorHandler {
    pub fn new(env: &Environment, clients: &Clients) -> Self {
        let Wiring {
            service, outbox, ..
        } = wiring(env, clients);
        EvaluatorHandler { service, outbox }
    }

    pub async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        let mut failed = Vec::new();
        let mut ids = Vec::with_capacity(batch.records.len());
        let mut events = Vec::with_capacity(batch.records.len());
        for record in batch.records {
            let id = record.message_id.unwrap_or_default();
            match serde_json::from_str::<AcceptedEvent>(record.body.as_deref().unwrap_or("")) {
                Ok(mut event) => {
                    // SQS delivers at least once: the message id makes a redelivery a
                    // duplicate, counted once, when the sender gave the event no id.
                    if event.idempotency_key.is_none() {
                        event.idempotency_key = Some(format!("sqs:{id}"));
                    }
                    ids.push(id);
                    events.push(event);
                }
                Err(e) => {
                    tracing::error!(message = %id, error = %e, "a queued message is not an event");
                    failed.push(id);
                }
            }
        }
        let outcomes = self.service.ingest_batch(&events).await;
        for (id, outcome) in ids.into_iter().zip(outcomes) {
            if let Err(e) = outcome {
                tracing::error!(message = %id, error = %e, "an event was not evaluated");
                failed.push(id);
            }
        }
        self.outbox.flush().await;
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = failed
            .into_iter()
            .map(|id| {
                let mut f = BatchItemFailure::default();
                f.item_identifier = id;
                f
            })
            .collect();
        response
    }
}
