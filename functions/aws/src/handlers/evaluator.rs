//! The evaluator function: takes SQS batches of messages of accepted events, evaluates each
//! batch with one write per window it touches, publishes what fired, and reports the messages
//! that failed so that SQS retries only those (and, after the queue's `maxReceiveCount`, moves
//! them to the dead-letter queue).
//!
//! It works against the invocation's deadline: the evaluation gets what time is left but a
//! margin, and when it runs out the messages are reported failed (SQS delivers them again; the
//! windows' receipts skip what was committed), so that the function always answers rather than
//! be timed out and have the whole batch retried without a word.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use tocsin_core::Service;

use super::{Wiring, wiring};
use crate::environment::{Clients, Environment};
use crate::queue::unpack;
use crate::sns::Publisher;

/// Time kept back from the deadline for publishing what fired and answering.
pub const ANSWER_MARGIN: Duration = Duration::from_millis(1500);

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

    /// A batch with no deadline (tests, or a host that has none).
    pub async fn handle(&self, batch: SqsEvent) -> SqsBatchResponse {
        self.handle_until(batch, None).await
    }

    /// A batch, answered before `deadline` (the invocation's).
    pub async fn handle_until(
        &self,
        batch: SqsEvent,
        deadline: Option<Instant>,
    ) -> SqsBatchResponse {
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
        let budget = deadline.map(|d| {
            d.saturating_duration_since(Instant::now())
                .saturating_sub(ANSWER_MARGIN)
        });
        let outcomes = match budget {
            None => self.service.ingest_batch(&events).await,
            Some(b) => match tokio::time::timeout(b, self.service.ingest_batch(&events)).await {
                Ok(outcomes) => outcomes,
                Err(_) => {
                    tracing::warn!(
                        messages = ids.len(),
                        "the batch did not finish before the deadline; SQS delivers it again"
                    );
                    let late = tocsin_core::Error::backend(
                        tocsin_core::error::Backend::DynamoDb,
                        "not finished before the invocation's deadline",
                    );
                    events.iter().map(|_| Err(late.clone())).collect()
                }
            },
        };
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
        match deadline {
            None => {
                self.publisher.flush().await;
            }
            Some(d) => {
                // What is not published in time stays in the outbox, for the notifier's sweep.
                let left = d
                    .saturating_duration_since(Instant::now())
                    .saturating_sub(ANSWER_MARGIN / 3);
                if tokio::time::timeout(left, self.publisher.flush())
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        "publishing what fired did not finish before the deadline; the sweep publishes it"
                    );
                }
            }
        }
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
