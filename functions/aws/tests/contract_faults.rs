//! The store contract suite on DynamoDB through the fault-injecting proxy
//! (`common::faults`): throttling, 500s, writes applied and then answered with a 500, and
//! delays (short ones: the suite makes many requests), at 10% and 30% of the store's requests.
//! The SDK retries (up to 10 attempts here); what the store must add is that a write applied
//! and answered with an error is recognised, not done twice, and that nothing else changes:
//! every case gives what it gives without faults.

mod common;

use std::sync::Arc;
use std::time::Duration;

use tocsin_aws::dynamo::{DynamoSettings, DynamoStore, create_table};
use tocsin_core::store::Store;

use common::faults::Faults;

/// A store on a new table, its client through a proxy faulting `rate` of its requests.
async fn faulty_store(rate: f64, seed: u64) -> (Arc<dyn Store>, Faults) {
    let table = common::fresh_table();
    let direct = aws_sdk_dynamodb::Client::new(&common::sdk_config());
    create_table(&direct, &table).await.expect("a table");
    let faults = Faults::start(&common::moto_url(), seed).await;
    faults.set(rate, Duration::from_millis(200));
    let config = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .endpoint_url(&faults.url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "faults"),
        ))
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(10)
                .with_initial_backoff(Duration::from_millis(10))
                .with_max_backoff(Duration::from_millis(100)),
        )
        .build();
    let client = aws_sdk_dynamodb::Client::new(&config);
    let store: Arc<dyn Store> = Arc::new(DynamoStore::new(client, DynamoSettings::new(table)));
    (store, faults)
}

mod at_10_percent {
    tocsin_core::store_contract_tests!(super::faulty_store(0.1, 101).await);
}

mod at_30_percent {
    tocsin_core::store_contract_tests!(super::faulty_store(0.3, 103).await);
}
