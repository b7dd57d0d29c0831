//! Clients for a local stand-in of AWS (moto's server in the tests, or any endpoint that speaks
//! the AWS protocols): static test credentials, one region, one endpoint.

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};

/// The SDK configuration for an endpoint such as `http://127.0.0.1:5000`.
pub fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            Credentials::new("test", "test", None, None, "tocsin-local"),
        ))
        .build()
}
