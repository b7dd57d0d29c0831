//! A proxy of the tests' own between the AWS SDK clients and moto, injecting on a seeded
//! schedule the faults that DynamoDB, SNS and SQS really produce: throttling (400
//! `ProvisionedThroughputExceededException`, `ThrottlingException`, SNS `Throttling`), 500s, a
//! request applied and then answered with a 500 (DynamoDB may do that: the SDK's retry then
//! meets the applied write), and 2-second delays. Only the data operations the functions make
//! are faulted (reads, writes, queries, transactions, publishes, sends), never the tests' own
//! setup, which goes to moto directly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// The kinds of fault, in the order of [`Counts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Throttle,
    ServerError,
    AppliedThenError,
    Delay,
}

const FAULTS: [Fault; 4] = [
    Fault::Throttle,
    Fault::ServerError,
    Fault::AppliedThenError,
    Fault::Delay,
];

/// How many of each fault were injected, and how many requests passed.
#[derive(Debug, Default)]
pub struct Counts {
    pub requests: AtomicU64,
    pub injected: [AtomicU64; 4],
}

impl Counts {
    pub fn injected(&self, fault: Fault) -> u64 {
        let i = FAULTS.iter().position(|f| *f == fault).unwrap_or(0);
        self.injected[i].load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.injected
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// The schedule: a rate of faulted requests and a seeded stream of draws (splitmix64).
struct Schedule {
    rate: f64,
    state: u64,
    delay: Duration,
}

impl Schedule {
    fn draw(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The fault for the next request, if any.
    fn next(&mut self) -> Option<Fault> {
        if self.draw() >= self.rate {
            return None;
        }
        let pick = self.draw();
        Some(match pick {
            p if p < 0.35 => Fault::Throttle,
            p if p < 0.60 => Fault::ServerError,
            p if p < 0.80 => Fault::AppliedThenError,
            _ => Fault::Delay,
        })
    }
}

/// Which service a request is for, and its operation.
fn operation(headers: &HeaderMap, body: &[u8]) -> Option<(&'static str, String)> {
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        let (service, op) = target.split_once('.')?;
        let service = if service.starts_with("DynamoDB") {
            "dynamodb"
        } else if service.starts_with("AmazonSQS") {
            "sqs"
        } else {
            return None;
        };
        return Some((service, op.to_owned()));
    }
    let text = std::str::from_utf8(body).ok()?;
    let action = text.split('&').find_map(|kv| kv.strip_prefix("Action="))?;
    Some(("sns", action.to_owned()))
}

/// The operations the functions make, which the proxy faults.
fn faulted(service: &str, op: &str) -> bool {
    match service {
        "dynamodb" => matches!(
            op,
            "GetItem"
                | "PutItem"
                | "UpdateItem"
                | "DeleteItem"
                | "Query"
                | "TransactWriteItems"
                | "BatchWriteItem"
        ),
        "sns" => op == "Publish",
        "sqs" => matches!(op, "SendMessage" | "SendMessageBatch"),
        _ => false,
    }
}

/// An error as the service writes it.
fn error(service: &str, fault: Fault, seq: u64) -> Response {
    let (status, code) = match fault {
        Fault::Throttle if service == "dynamodb" && seq.is_multiple_of(2) => (
            StatusCode::BAD_REQUEST,
            "ProvisionedThroughputExceededException",
        ),
        Fault::Throttle if service == "sns" => (StatusCode::BAD_REQUEST, "Throttling"),
        Fault::Throttle => (StatusCode::BAD_REQUEST, "ThrottlingException"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError"),
    };
    if service == "sns" {
        let xml = format!(
            "<ErrorResponse><Error><Type>Receiver</Type><Code>{code}</Code><Message>injected by the test proxy</Message></Error><RequestId>fault-{seq}</RequestId></ErrorResponse>"
        );
        return (status, [("content-type", "text/xml")], xml).into_response();
    }
    let prefix = if service == "dynamodb" {
        "com.amazonaws.dynamodb.v20120810#"
    } else {
        "com.amazonaws.sqs#"
    };
    let body =
        format!("{{\"__type\":\"{prefix}{code}\",\"message\":\"injected by the test proxy\"}}");
    (
        status,
        [
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amzn-query-error", "InternalError;Receiver"),
        ],
        body,
    )
        .into_response()
}

/// The proxy, serving on loopback until dropped with the test.
pub struct Faults {
    pub url: String,
    schedule: Arc<Mutex<Schedule>>,
    pub counts: Arc<Counts>,
}

impl Faults {
    /// A proxy to `moto` with no faults yet (see [`Faults::set`]), its draws seeded by `seed`.
    pub async fn start(moto: &str, seed: u64) -> Faults {
        let schedule = Arc::new(Mutex::new(Schedule {
            rate: 0.0,
            state: seed,
            delay: Duration::from_secs(2),
        }));
        let counts = Arc::new(Counts::default());
        let client = reqwest::Client::new();
        let (moto, sched, cnt) = (moto.to_owned(), schedule.clone(), counts.clone());
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (client, moto, sched, cnt) =
                    (client.clone(), moto.clone(), sched.clone(), cnt.clone());
                async move {
                    let seq = cnt.requests.fetch_add(1, Ordering::Relaxed);
                    let op = operation(&headers, &body);
                    let fault = match &op {
                        Some((service, op)) if faulted(service, op) => {
                            sched.lock().expect("schedule").next()
                        }
                        _ => None,
                    };
                    let delay = sched.lock().expect("schedule").delay;
                    if let Some(f) = fault {
                        let i = FAULTS.iter().position(|x| *x == f).unwrap_or(0);
                        cnt.injected[i].fetch_add(1, Ordering::Relaxed);
                    }
                    let service = op.as_ref().map_or("dynamodb", |(s, _)| *s);
                    match fault {
                        Some(f @ (Fault::Throttle | Fault::ServerError)) => {
                            return error(service, f, seq);
                        }
                        Some(Fault::Delay) => tokio::time::sleep(delay).await,
                        _ => {}
                    }
                    let forwarded = forward(&client, &moto, method, &uri, &headers, body).await;
                    if fault == Some(Fault::AppliedThenError) {
                        return error(service, Fault::ServerError, seq);
                    }
                    forwarded
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Faults {
            url,
            schedule,
            counts,
        }
    }

    /// Faults from now on: `rate` of the faulted operations, delays of `delay`.
    pub fn set(&self, rate: f64, delay: Duration) {
        let mut s = self.schedule.lock().expect("schedule");
        s.rate = rate;
        s.delay = delay;
    }
}

async fn forward(
    client: &reqwest::Client,
    moto: &str,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = client.request(method, format!("{moto}{path}"));
    for (name, value) in headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    match request.body(body).send().await {
        Ok(answer) => {
            let status = answer.status();
            let mut out = HeaderMap::new();
            for (name, value) in answer.headers() {
                if name != "content-length" && name != "transfer-encoding" {
                    out.insert(name.clone(), value.clone());
                }
            }
            let bytes = answer.bytes().await.unwrap_or_default();
            (status, out, bytes).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("moto: {e}")).into_response(),
    }
}
