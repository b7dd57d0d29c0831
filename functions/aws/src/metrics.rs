//! Requests counted by the SDK client itself, per operation: what the benchmarks and the
//! request-count tests read (DynamoDB bills by request and item size, not by time).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// Counts every request attempt (retries included) by operation name, and the bytes of the
/// request bodies.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<String, Count>>>,
}

/// What one operation cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub requests: u64,
    pub body_bytes: u64,
}

impl RequestCounter {
    /// The counts so far, by operation (`PutItem`, `TransactWriteItems`, ...).
    pub fn snapshot(&self) -> BTreeMap<String, Count> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Forgets the counts.
    pub fn reset(&self) {
        if let Ok(mut c) = self.counts.lock() {
            c.clear();
        }
    }

    /// Requests of the operations that write.
    pub fn writes(&self) -> u64 {
        self.snapshot()
            .iter()
            .filter(|(op, _)| is_write(op))
            .map(|(_, c)| c.requests)
            .sum()
    }

    /// Requests of the operations that read.
    pub fn reads(&self) -> u64 {
        self.snapshot()
            .iter()
            .filter(|(op, _)| !is_write(op))
            .map(|(_, c)| c.requests)
            .sum()
    }
}

/// Whether a DynamoDB operation writes.
pub fn is_write(op: &str) -> bool {
    matches!(
        op,
        "PutItem" | "UpdateItem" | "DeleteItem" | "TransactWriteItems" | "BatchWriteItem"
    )
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "tocsin-request-counter"
    }

    fn read_before_attempt(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = cfg
            .load::<Metadata>()
            .map(|m| m.name().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let bytes = context
            .request()
            .body()
            .bytes()
            .map_or(0, |b| b.len() as u64);
        if let Ok(mut counts) = self.counts.lock() {
            let c = counts.entry(op).or_default();
            c.requests += 1;
            c.body_bytes += bytes;
        }
        Ok(())
    }
}
