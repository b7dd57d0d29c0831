//! What the AWS tests share: moto's server, started by `tests/run` (its URL in
//! `TOCSIN_MOTO_URL`), and a fresh table per test.

#![allow(dead_code)]

pub mod faults;

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

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tocsin_aws::environment::{Clients, Environment};
use tocsin_aws::metrics::RequestCounter;

/// Clients on moto; DynamoDB requests counted by `counter` when given.
pub fn clients(counter: Option<&RequestCounter>) -> Clients {
    let config = sdk_config();
    let mut clients = Clients::new(&config);
    if let Some(counter) = counter {
        let dynamo = aws_sdk_dynamodb::config::Builder::from(&config)
            .interceptor(counter.clone())
            .build();
        clients.dynamo = aws_sdk_dynamodb::Client::from_conf(dynamo);
    }
    clients
}

/// A deployment on moto: a table, a topic, and a queue of events.
pub struct Deployment {
    pub table: String,
    pub topic_arn: String,
    pub queue_url: String,
}

impl Deployment {
    pub async fn new() -> Self {
        let c = clients(None);
        let table = fresh_table();
        create_table(&c.dynamo, &table).await.expect("table");
        let topic_arn = c
            .sns
            .create_topic()
            .name(format!("{table}-activations"))
            .send()
            .await
            .expect("topic")
            .topic_arn()
            .expect("topic arn")
            .to_owned();
        let queue_url = c
            .sqs
            .create_queue()
            .queue_name(format!("{table}-events"))
            .send()
            .await
            .expect("queue")
            .queue_url()
            .expect("queue url")
            .to_owned();
        Deployment {
            table,
            topic_arn,
            queue_url,
        }
    }

    /// The functions' environment; `queued`: batches go to the queue.
    pub fn env(&self, queued: bool) -> Environment {
        let vars = [
            ("TOCSIN_TABLE", Some(self.table.clone())),
            ("TOCSIN_TOPIC_ARN", Some(self.topic_arn.clone())),
            ("TOCSIN_QUEUE_URL", queued.then(|| self.queue_url.clone())),
            ("TOCSIN_CONFIG_TTL_MS", Some("0".into())),
        ];
        Environment::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .and_then(|(_, v)| v.clone())
        })
        .expect("environment")
    }

    /// An SQS queue subscribed to the topic: what SNS published, with its attributes.
    pub async fn observe_topic(&self) -> String {
        let c = clients(None);
        let url = c
            .sqs
            .create_queue()
            .queue_name(format!("{}-observer", self.table))
            .send()
            .await
            .expect("observer queue")
            .queue_url()
            .expect("url")
            .to_owned();
        let arn = c
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes")
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .expect("queue arn")
            .clone();
        c.sns
            .subscribe()
            .topic_arn(&self.topic_arn)
            .protocol("sqs")
            .endpoint(arn)
            .send()
            .await
            .expect("subscribe the observer");
        url
    }
}

/// Takes every message waiting in a queue: (message id, body).
pub async fn drain(url: &str) -> Vec<(String, String)> {
    let c = clients(None);
    let mut all = Vec::new();
    loop {
        let out = c
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive");
        let msgs = out.messages();
        if msgs.is_empty() {
            return all;
        }
        for m in msgs {
            all.push((
                m.message_id().unwrap_or_default().to_owned(),
                m.body().unwrap_or_default().to_owned(),
            ));
            c.sqs
                .delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete");
        }
    }
}

/// An API Gateway HTTP API (payload v2) event, as the API function receives it.
pub fn api_gateway_event(method: &str, path: &str, body: Option<&Value>) -> lambda_http::Request {
    api_gateway_event_by(method, path, body, None)
}

/// The same, with what the authorizer put in the request context (`{"jwt": {...}}` or
/// `{"iam": {...}}`).
pub fn api_gateway_event_by(
    method: &str,
    path: &str,
    body: Option<&Value>,
    authorizer: Option<Value>,
) -> lambda_http::Request {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"content-type": "application/json", "host": "abc.execute-api.us-east-1.amazonaws.com"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc", "domainName": "abc.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc", "requestId": "req", "routeKey": "$default", "stage": "$default",
            "time": "24/Nov/2026:04:00:00 +0000", "timeEpoch": 1795492800000_u64,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "tocsin-test"}
        },
        "body": body.map(|b| b.to_string()),
        "isBase64Encoded": false
    });
    let mut event = event;
    if let Some(a) = authorizer {
        event["requestContext"]["authorizer"] = a;
    }
    lambda_http::request::from_str(&event.to_string()).expect("an API Gateway v2 event")
}

/// Status and JSON body of a response.
pub async fn read(response: axum::response::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, body)
}

/// A real HTTP listener on loopback that records every request: (path, Idempotency-Key, body).
#[derive(Clone, Default)]
pub struct Receiver {
    pub seen: Arc<Mutex<Vec<(String, String, Value)>>>,
}

impl Receiver {
    pub async fn start() -> (Self, String) {
        let receiver = Receiver::default();
        let seen = receiver.seen.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    let key = headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    seen.lock()
                        .expect("lock")
                        .push((uri.path().to_owned(), key, body));
                    "ok"
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (receiver, url)
    }

    pub fn requests(&self) -> Vec<(String, String, Value)> {
        self.seen.lock().expect("lock").clone()
    }
}
