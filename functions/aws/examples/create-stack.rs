//! Creates what the functions need on a local stand-in of AWS (moto, at `AWS_ENDPOINT_URL`):
//! the table, the topic and the queue of events; prints the variables the functions read, as
//! shell exports, or with `--env-json` as the `--env-vars` file of `sam local`.
//!
//!     AWS_ENDPOINT_URL=http://127.0.0.1:5055 cargo run -p tocsin-aws --example create-stack
//!     AWS_ENDPOINT_URL=http://127.0.0.1:5055 cargo run -p tocsin-aws --example create-stack -- --env-json > env.json

use tocsin_aws::dynamo::create_table;
use tocsin_aws::environment::Clients;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .map_err(|_| "set AWS_ENDPOINT_URL to the stand-in (e.g. http://127.0.0.1:5055)")?;
    let clients = Clients::new(&tocsin_aws::local::sdk_config(&endpoint));
    let table = std::env::var("TOCSIN_TABLE").unwrap_or_else(|_| "tocsin".into());
    if let Err(e) = create_table(&clients.dynamo, &table).await {
        eprintln!("table {table}: {e} (kept as it is)");
    }
    let topic = clients
        .sns
        .create_topic()
        .name(format!("{table}-activations"))
        .send()
        .await?;
    let queue = clients
        .sqs
        .create_queue()
        .queue_name(format!("{table}-events"))
        .send()
        .await?;
    let vars = [
        ("TOCSIN_TABLE", table.clone()),
        (
            "TOCSIN_TOPIC_ARN",
            topic.topic_arn().unwrap_or_default().to_owned(),
        ),
        (
            "TOCSIN_QUEUE_URL",
            queue.queue_url().unwrap_or_default().to_owned(),
        ),
    ];
    if std::env::args().any(|a| a == "--env-json") {
        // Every function gets them ("Parameters"); only variables the template declares apply.
        let vars: serde_json::Map<String, serde_json::Value> = vars
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into()))
            .collect();
        println!("{}", serde_json::json!({ "Parameters": vars }));
    } else {
        for (k, v) in vars {
            println!("export {k}={v}");
        }
    }
    Ok(())
}
