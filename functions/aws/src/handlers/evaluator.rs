//! The evaluator function: takes SQS batches of messages of accepted events, evaluates each
//! batch with one write per window it touches, publishes what fired, and reports the messages that failed so
//! that SQS retries only those (and, after the queue's `maxReceiveCount`, moves them to the
//! dead-letter queue).

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use tocsin_core::Service;

use super::{Wiring, wiring};
use crate::environment::{Clients, Environment};
use crate::queue::unpack;
use crate::sns::Publisher;

pub struct EvaluatorHandler {
    service: Service,
    publisher: Arc<Publisher>,
}

impl EvaluatorHandler {
    pub fn new(env: &Environment, clients: &Clients) -> Self {
        let Wiring {
            service, publisher, ..
        } = wiring(env, clients);
        EvaluatorHandler { service, publisher }
    }

    pub async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        let mut failed = Vec::new();
        // Each event with the index of its message in `ids`.
        let mut ids: Vec<String> = Vec::with_capacity(batch.records.len());
        let mut events = Vec::with_capacity(batch.records.len());
        let mut carried_by = Vec::with_capacity(batch.records.len());
        for record in batch.records {
            let id = record.message_id.unwrap_or_default();
            match unpack(record.body.as_deref().unwrap_or("")) {
                Ok((body_id, carried)) => {
                    // SQS delivers at least once: the windows keep receipts of the messages
                    // they counted, so that a redelivery (or a message sent twice: the same
                    // id in its body) counts only what was not counted.
                    let message: Arc<str> = body_id.as_deref().unwrap_or(&id).into();
                    for mut event in carried {
                        event.message = Some(message.clone());
                        events.push(event);
                        carried_by.push(ids.len());
                    }
                    ids.push(id);
                }
                Err(e) => {
                    tracing::error!(message = %id, error = %e, "a queued message is not an event");
                    failed.push(id);
                }
            }
        }
        let outcomes = self.service.ingest_batch(&events).await;
        let mut message_failed = vec![false; ids.len()];
        for (m, outcome) in carried_by.into_iter().zip(outcomes) {
            if let Err(e) = outcome {
                if !message_failed[m] {
                    tracing::error!(message = %ids[m], error = %e, "an event was not evaluated");
                }
                message_failed[m] = true;
            }
        }
        failed.extend(
            ids.into_iter()
                .zip(message_failed)
                .filter_map(|(id, f)| f.then_some(id)),
        );
        self.publisher.flush().await;
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
