//! What the AWS tests share: moto's server, started by `tests/run` (its URL in
//! `TOCSIN_MOTO_URL`), and a fresh table per test.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

use tocsin_aws::dynamo::{DynamoSettings, DynamoStore, create_table};

/// moto's URL. The AWS tests need it: `tests/run` starts moto and sets it.
pub fn moto_url() -> String {
    std::env::var("TOCSIN_MOTO_URL").unwrap_or_else(|_| {
        panic!(
            "TOCSIN_MOTO_URL is not set: the AWS tests run against moto's server, which \
             tests/run starts (or: tests/.venv-aws/bin/moto_server -H 127.0.0.1 -p 5055 & \
             export TOCSIN_MOTO_URL=http://127.0.0.1:5055)"
        )
    })
}

pub fn sdk_config() -> aws_config::SdkConfig {
    tocsin_aws::local::sdk_config(&moto_url())
}

/// A table name no other test uses.
pub fn fresh_table() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "tocsin-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A store on a new table, with a config TTL of zero (every event sees every change).
pub async fn store() -> DynamoStore {
    let client = aws_sdk_dynamodb::Client::new(&sdk_config());
    let table = fresh_table();
    create_table(&client, &table)
        .await
        .expect("create the table on moto");
    DynamoStore::new(client, DynamoSettings::new(table))
}
