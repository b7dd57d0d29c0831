//! The notifier function's bootstrap.

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use tocsin_aws::environment::{Clients, Environment, init_tracing};
use tocsin_aws::handlers::NotifierHandler;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let env = Environment::from_env()?;
    let handler = Arc::new(NotifierHandler::new(&env, &Clients::from_env().await)?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let handler = handler.clone();
        async move {
            handler
                .handle(event.payload)
                .await
                .map_err(lambda_runtime::Error::from)
        }
    }))
    .await
}
