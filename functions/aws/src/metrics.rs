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
    /// Write units of the items the requests put, from their sizes (1 per KB, twice in a
    /// transaction). Updates and deletes are billed on the stored item, which the request does
    /// not show: they are not included.
    pub put_units: u64,
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
        let body = context.request().body().bytes().unwrap_or_default();
        let units = put_units(&op, body);
        if let Ok(mut counts) = self.counts.lock() {
            let c = counts.entry(op).or_default();
            c.requests += 1;
            c.body_bytes += body.len() as u64;
            c.put_units += units;
        }
        Ok(())
    }
}

/// Write units of the items a request puts (see [`Count::put_units`]).
fn put_units(op: &str, body: &[u8]) -> u64 {
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(body) else {
        return 0;
    };
    let units = |item: &serde_json::Value| (item_bytes(item) as u64).div_ceil(1024).max(1);
    match op {
        "PutItem" => units(&request["Item"]),
        "TransactWriteItems" => request["TransactItems"].as_array().map_or(0, |items| {
            items
                .iter()
                .filter_map(|i| i.get("Put"))
                .map(|p| 2 * units(&p["Item"]))
                .sum()
        }),
        _ => 0,
    }
}

/// An item's size as DynamoDB bills it, from its JSON wire form.
fn item_bytes(item: &serde_json::Value) -> usize {
    item.as_object().map_or(0, |attrs| {
        attrs
            .iter()
            .map(|(name, value)| name.len() + value_bytes(value))
            .sum()
    })
}

fn value_bytes(v: &serde_json::Value) -> usize {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    match (kind.as_str(), inner) {
        ("S", serde_json::Value::String(s)) => s.len(),
        ("N", serde_json::Value::String(n)) => n.len().div_ceil(2) + 1,
        ("M", m) => 3 + item_bytes(m) + m.as_object().map_or(0, |o| o.len()),
        ("L", serde_json::Value::Array(l)) => {
            3 + l.iter().map(|x| value_bytes(x) + 1).sum::<usize>()
        }
        // Base64 on the wire; billed by the bytes it decodes to.
        ("B", serde_json::Value::String(b)) => {
            (b.len() / 4) * 3 - b.bytes().rev().take_while(|&c| c == b'=').count()
        }
        _ => 1,
    }
}
