//! The API function's bootstrap.

use std::sync::Arc;

use tocsin_aws::environment::{Clients, Environment, init_tracing};
use tocsin_aws::handlers::ApiHandler;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    init_tracing();
    let env = Environment::from_env()?;
    let handler = Arc::new(ApiHandler::new(&env, &Clients::from_env().await)?);
    lambda_http::run(lambda_http::service_fn(move |request| {
        let handler = handler.clone();
        async move { handler.handle(request).await }
    }))
    .await
}
