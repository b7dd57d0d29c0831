//! The SQS queue of events: the API's batch endpoint queues accepted events here, and the
//! evaluator Lambda takes them in batches.

use async_trait::async_trait;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use tocsin_adapters::api::EventQueue;
use tocsin_core::error::{Backend, Error, Result};
use tocsin_core::model::AcceptedEvent;

/// SQS takes at most 10 messages, and 256 KiB, per `SendMessageBatch`.
const MAX_ENTRIES: usize = 10;
const MAX_BATCH_BYTES: usize = 250 * 1024;

/// The queue, with its client (built once per Lambda container).
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            url: url.into(),
        }
    }

    async fn send(&self, bodies: &[String]) -> Result<()> {
        let entries = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .map_err(|e| Error::backend(Backend::Sqs, e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| {
                Error::backend(
                    Backend::Sqs,
                    format!(
                        "SQS SendMessageBatch failed: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(&e)
                    ),
                )
            })?;
        if let Some(f) = out.failed().first() {
            return Err(Error::backend(
                Backend::Sqs,
                format!(
                    "SQS refused {} of {} events: {}",
                    out.failed().len(),
                    bodies.len(),
                    f.message().unwrap_or(f.code())
                ),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl EventQueue for SqsQueue {
    /// Sends in batches of 10 (or fewer, to stay under SQS's size limit). A failure part-way
    /// leaves the earlier batches queued: clients that retry should give events an `id`, which
    /// the evaluator counts once.
    async fn enqueue(&self, events: &[AcceptedEvent]) -> Result<()> {
        let mut batch: Vec<String> = Vec::with_capacity(MAX_ENTRIES);
        let mut bytes = 0;
        for ev in events {
            let body = serde_json::to_string(ev)
                .map_err(|e| Error::backend(Backend::Sqs, e.to_string()))?;
            if batch.len() == MAX_ENTRIES || bytes + body.len() > MAX_BATCH_BYTES {
                self.send(&batch).await?;
                batch.clear();
                bytes = 0;
            }
            bytes += body.len();
            batch.push(body);
        }
        if !batch.is_empty() {
            self.send(&batch).await?;
        }
        Ok(())
    }
}
