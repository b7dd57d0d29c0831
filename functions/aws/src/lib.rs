//! Tocsin on AWS serverless: the DynamoDB store, SNS fan-out, the SQS queue of events, and the
//! Lambda entry points (thin: the same router, engine and notifier as `tocsin serve`).

pub mod claims;
pub mod dynamo;
pub mod environment;
pub mod handlers;
pub mod local;
pub mod metrics;
pub mod queue;
pub mod sns;
pub mod subscriptions;
