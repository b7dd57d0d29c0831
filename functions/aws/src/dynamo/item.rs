//! Attribute values in and out, and the errors of the SDK as store errors.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tocsin_core::error::{Backend, Error, Result};

/// An item as the SDK holds it.
pub type Item = HashMap<String, AttributeValue>;

/// A string value.
pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// A number value.
pub fn n(v: impl Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A JSON document as a string value.
pub fn json<T: Serialize>(v: &T) -> Result<AttributeValue> {
    serde_json::to_string(v)
        .map(AttributeValue::S)
        .map_err(|e| Error::backend(Backend::DynamoDb, format!("cannot encode an item: {e}")))
}

fn corrupt(key: &str, what: &str) -> Error {
    Error::backend(
        Backend::DynamoDb,
        format!("a stored item has no readable `{key}` ({what})"),
    )
}

/// A string attribute.
pub fn get_s<'a>(item: &'a Item, key: &str) -> Result<&'a str> {
    match item.get(key) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(corrupt(key, "string")),
    }
}

/// A number attribute.
pub fn get_n<T: FromStr>(item: &Item, key: &str) -> Result<T> {
    match item.get(key) {
        Some(AttributeValue::N(v)) => v.parse().map_err(|_| corrupt(key, "number")),
        _ => Err(corrupt(key, "number")),
    }
}

/// A number attribute that may be absent.
pub fn opt_n<T: FromStr>(item: &Item, key: &str) -> Result<Option<T>> {
    match item.get(key) {
        None => Ok(None),
        Some(_) => get_n(item, key).map(Some),
    }
}

/// A JSON document attribute.
pub fn get_json<T: DeserializeOwned>(item: &Item, key: &str) -> Result<T> {
    serde_json::from_str(get_s(item, key)?).map_err(|e| corrupt(key, &e.to_string()))
}

/// Any SDK failure as a store error, with the service's code when there is one.
pub fn sdk_err<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    what: &str,
    e: SdkError<E, R>,
) -> Error {
    let detail = match e.as_service_error() {
        Some(s) => format!(
            "{}: {}",
            s.code().unwrap_or("error"),
            s.message().unwrap_or("")
        ),
        None => aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string(),
    };
    Error::backend(Backend::DynamoDb, format!("{what}: {detail}"))
}

/// Whether a failure is a lost condition (a concurrent writer got there first).
pub fn is_conditional<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

/// For a cancelled transaction: which of its items failed their condition.
pub fn cancelled_conditions<R>(
    e: &SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError, R>,
) -> Option<Vec<bool>> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as T;
    match e.as_service_error() {
        Some(T::TransactionCanceledException(c)) => Some(
            c.cancellation_reasons()
                .iter()
                .map(|r| r.code() == Some("ConditionalCheckFailed"))
                .collect(),
        ),
        _ => None,
    }
}

/// The key of an item.
pub fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

/// The sort key of an alert: project and name, apart by a character neither can hold usefully.
pub fn alert_sk(project: &str, name: &str) -> String {
    format!("{project}\u{1}{name}")
}

/// Activations are spread over this many partitions by id (`ACT0` to `ACT7`): one partition
/// takes about 1,000 writes a second, and every firing writes its activation.
pub const ACTIVATION_SHARDS: u64 = 8;

/// The partition key of an activation.
pub fn activation_pk(id: u64) -> String {
    format!("ACT{}", id % ACTIVATION_SHARDS)
}

/// The partition activations were kept in before they were spread: still read (listed, found
/// by id, closed and pruned) until TTL has emptied it.
pub const LEGACY_ACTIVATIONS: &str = "ACT";

/// Every partition an activation may be in: the shards, then the legacy one.
pub fn activation_partitions() -> impl Iterator<Item = String> {
    (0..ACTIVATION_SHARDS)
        .map(|s| format!("ACT{s}"))
        .chain(std::iter::once(LEGACY_ACTIVATIONS.to_owned()))
}

/// The sort key of an activation: its id in 20 digits, so that keys sort as ids do.
pub fn activation_sk(id: u64) -> String {
    format!("{id:020}")
}

/// Seconds since the epoch, rounded up, for the TTL attribute.
pub fn ttl_secs(t: tocsin_core::model::Timestamp) -> i64 {
    t.0.div_euclid(1_000_000) + 1
}

/// Partitions of the due index of absences (`gsi2pk` = `DUE0` to `DUE7`): eight keep its write
/// load off one partition; a tick queries each for what is due.
pub const DUE_SHARDS: u64 = 8;

/// The due index's partition for alert `alert`'s window of `entity` (None: the alert item or
/// its shared window).
pub fn shard(alert: u64, entity: Option<&str>) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    h.write_u64(alert);
    if let Some(e) = entity {
        h.write(e.as_bytes());
    }
    h.finish() % DUE_SHARDS
}

/// Puts `item` in the due index at `deadline`.
pub fn index_due(item: &mut Item, shard: u64, deadline: tocsin_core::model::Timestamp) {
    item.insert("gsi2pk".into(), s(format!("DUE{shard}")));
    item.insert("gsi2sk".into(), s(due_sk(deadline)));
}

/// A deadline as the index sorts it: microseconds in 20 digits (before 1970: zero).
pub fn due_sk(t: tocsin_core::model::Timestamp) -> String {
    format!("{:020}", t.0.max(0))
}

/// The deadline an item is in the due index at, if it is.
pub fn indexed_deadline(item: &Item) -> Result<Option<tocsin_core::model::Timestamp>> {
    let indexed = item
        .get("gsi2pk")
        .and_then(|v| v.as_s().ok())
        .is_some_and(|pk| pk.starts_with("DUE"));
    if !indexed {
        return Ok(None);
    }
    let sk = get_s(item, "gsi2sk")?;
    sk.parse()
        .map(|us| Some(tocsin_core::model::Timestamp(us)))
        .map_err(|_| Error::backend(Backend::DynamoDb, format!("a bad due deadline `{sk}`")))
}

/// The tokens of the last writes of a versioned item, newest first (`lw`: 8 bytes each): what
/// lets a writer whose write was applied and then answered with an error (DynamoDB may do
/// that, and the SDK's retry then fails the condition) recognise its own write.
pub const WRITERS_KEPT: usize = 8;

/// The `lw` attribute of `writers` after a write with `token`.
pub fn writers_after(token: u64, writers: &[u64]) -> AttributeValue {
    let mut bytes = Vec::with_capacity(8 * WRITERS_KEPT);
    bytes.extend_from_slice(&token.to_le_bytes());
    for w in writers.iter().take(WRITERS_KEPT - 1) {
        bytes.extend_from_slice(&w.to_le_bytes());
    }
    AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(bytes))
}

/// The tokens of an item's last writes, newest first.
pub fn writers_of(item: &Item) -> Vec<u64> {
    match item.get("lw") {
        Some(AttributeValue::B(b)) => b
            .as_ref()
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect(),
        _ => Vec::new(),
    }
}

/// A token for one write, unique enough across containers: a random seed of this process and
/// a count, mixed.
pub fn write_token() -> u64 {
    use std::hash::BuildHasher;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let seed = SEED.get_or_init(std::collections::hash_map::RandomState::new);
    seed.hash_one(COUNT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_sort_as_text_as_they_do_as_times() {
        use tocsin_core::model::Timestamp;
        let early = due_sk(Timestamp::from_secs(999));
        let late = due_sk(Timestamp::from_secs(1_000));
        assert!(early < late);
        assert_eq!(due_sk(Timestamp(-5)), "00000000000000000000");
        let mut item = key("ALERT", "p\u{1}a");
        index_due(&mut item, 3, Timestamp(42));
        assert_eq!(
            indexed_deadline(&item).expect("readable"),
            Some(Timestamp(42))
        );
        item.insert("gsi2pk".into(), s("PENDING"));
        assert_eq!(
            indexed_deadline(&item).expect("readable"),
            None,
            "the outbox's"
        );
    }

    #[test]
    fn the_writers_ring_keeps_the_newest_first_and_no_more_than_it_holds() {
        let mut item = key("W#1#1", "#");
        let mut writers = Vec::new();
        for token in 1..=10u64 {
            item.insert("lw".into(), writers_after(token, &writers));
            writers = writers_of(&item);
        }
        assert_eq!(writers, [10, 9, 8, 7, 6, 5, 4, 3]);
        assert_ne!(write_token(), write_token());
    }
}
