//! The evaluator function's bootstrap.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use tocsin_aws::environment::{Clients, Environment, init_tracing};
use tocsin_aws::handlers::EvaluatorHandler;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let env = Environment::from_env()?;
    let handler = Arc::new(EvaluatorHandler::new(&env, &Clients::from_env().await));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let handler = handler.clone();
        // The deadline is in milliseconds since the epoch, by the same clock as ours.
        let left = std::time::SystemTime::UNIX_EPOCH
            + std::time::Duration::from_millis(event.context.deadline);
        let left = left
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        let deadline = std::time::Instant::now() + left;
        async move {
            Ok::<_, lambda_runtime::Error>(
                handler.handle_until(event.payload, Some(deadline)).await,
            )
        }
    }))
    .await
}
