//! The table's definition, for tests and local stand-ins; `infra/template.yaml` declares the
//! same table for AWS.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use tocsin_core::error::{Backend, Error, Result};

use super::item::sdk_err;

fn attr(name: &str) -> Result<AttributeDefinition> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|e| Error::backend(Backend::DynamoDb, e.to_string()))
}

fn keys(hash: &str, range: &str) -> Result<Vec<KeySchemaElement>> {
    let el = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(|e| Error::backend(Backend::DynamoDb, e.to_string()))
    };
    Ok(vec![el(hash, KeyType::Hash)?, el(range, KeyType::Range)?])
}

fn index(name: &str, hash: &str, range: &str) -> Result<GlobalSecondaryIndex> {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .set_key_schema(Some(keys(hash, range)?))
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(|e| Error::backend(Backend::DynamoDb, e.to_string()))
}

/// Creates the table (on demand, both indexes) and turns TTL on for `expires_at`.
pub async fn create_table(client: &Client, table: &str) -> Result<()> {
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(
            ["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"]
                .into_iter()
                .map(attr)
                .collect::<Result<_>>()?,
        ))
        .set_key_schema(Some(keys("pk", "sk")?))
        .global_secondary_indexes(index("gsi1", "gsi1pk", "gsi1sk")?)
        .global_secondary_indexes(index("gsi2", "gsi2pk", "gsi2sk")?)
        .send()
        .await
        .map_err(|e| sdk_err("CreateTable", e))?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("expires_at")
                .build()
                .map_err(|e| Error::backend(Backend::DynamoDb, e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| sdk_err("UpdateTimeToLive", e))?;
    Ok(())
}
