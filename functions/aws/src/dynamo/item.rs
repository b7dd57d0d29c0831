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
