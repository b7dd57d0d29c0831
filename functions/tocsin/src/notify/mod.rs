//! Notification delivery, off the ingest path: the API hands each fired activation to a
//! [`Dispatch`], which returns at once; a worker delivers it and records per-kind results on
//! the activation in MLRun's format. One failing notification never stops the others.

mod payload;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tocsin_core::model::{
    Activation, Notification, NotificationKind, NotificationState, NotificationSummary,
};
use tocsin_core::store::{Fired, Store};
use tokio::sync::{Semaphore, mpsc};

pub use payload::{slack_payload, webhook_payload};

/// Where fired activations go. Must not block: it is called on the request path.
pub trait Dispatch: Send + Sync {
    fn dispatch(&self, fired: Fired);
}

/// Delivers notifications by HTTP (Slack, webhook) from a background worker.
pub struct Notifier {
    tx: mpsc::UnboundedSender<Fired>,
}

impl Dispatch for Notifier {
    fn dispatch(&self, fired: Fired) {
        if self.tx.send(fired).is_err() {
            tracing::error!(
                "the notifier has stopped; an activation's notifications were not queued"
            );
        }
    }
}

/// Deliveries in flight at once.
const CONCURRENCY: usize = 32;

impl Notifier {
    /// Starts the worker on the current tokio runtime.
    pub fn start(store: Arc<dyn Store>) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Fired>();
        let permits = Arc::new(Semaphore::new(CONCURRENCY));
        tokio::spawn(async move {
            while let Some(fired) = rx.recv().await {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let (client, store) = (client.clone(), store.clone());
                tokio::spawn(async move {
                    let states = deliver_all(&client, &fired).await;
                    if let Err(e) = store
                        .set_notification_states(fired.activation.id, states)
                        .await
                    {
                        tracing::error!(activation = fired.activation.id, error = %e, "cannot record notification results");
                    }
                    drop(permit);
                });
            }
        });
        Ok(Notifier { tx })
    }
}

/// Delivers every notification of an activation and sums the results per kind.
async fn deliver_all(client: &reqwest::Client, fired: &Fired) -> Vec<NotificationState> {
    let mut states: Vec<NotificationState> = Vec::new();
    for n in &fired.rule.config.notifications {
        let note = &n.notification;
        let secret = fired.rule.secrets.get(&note.name);
        let result = deliver(client, note, secret, &fired.activation).await;
        if let Err(e) = &result {
            tracing::warn!(alert = %fired.activation.name, notification = %note.name, kind = %note.kind, error = %e, "notification failed");
        }
        let kind = note.kind.as_str();
        let i = match states.iter().position(|s| s.kind == kind) {
            Some(i) => i,
            None => {
                states.push(NotificationState {
                    kind: kind.into(),
                    err: None,
                    summary: NotificationSummary::default(),
                });
                states.len() - 1
            }
        };
        let state = &mut states[i];
        match result {
            Ok(()) => state.summary.succeeded += 1,
            Err(e) => {
                state.summary.failed += 1;
                let msg = format!("{}: {e}", note.name);
                state.err = Some(match state.err.take() {
                    Some(prev) => format!("{prev}; {msg}"),
                    None => msg,
                });
            }
        }
    }
    states
}

/// A parameter from the secret parameters, else from the plain ones.
fn param<'a>(
    key: &str,
    secret: Option<&'a Map<String, Value>>,
    note: &'a Notification,
) -> Option<&'a Value> {
    secret
        .and_then(|s| s.get(key))
        .or_else(|| note.params.as_ref().and_then(|p| p.get(key)))
        .filter(|v| !v.is_null())
}

async fn deliver(
    client: &reqwest::Client,
    note: &Notification,
    secret: Option<&Map<String, Value>>,
    activation: &Activation,
) -> Result<(), String> {
    let delivery_key = format!("{}:{}", activation.id, note.name);
    let request = match note.kind {
        NotificationKind::Slack => {
            let url = param("webhook", secret, note)
                .and_then(Value::as_str)
                .ok_or("no slack webhook configured")?;
            client.post(url).json(&slack_payload(note, activation))
        }
        NotificationKind::Webhook => {
            let url = param("url", secret, note)
                .and_then(Value::as_str)
                .ok_or("no webhook url configured")?;
            let method = param("method", secret, note)
                .and_then(Value::as_str)
                .unwrap_or("POST");
            let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                .map_err(|_| format!("invalid HTTP method `{method}`"))?;
            let body = match param("override_body", secret, note) {
                Some(body) => body.clone(),
                None => webhook_payload(note, activation),
            };
            let mut req = client.request(method, url).json(&body);
            if let Some(Value::Object(headers)) = param("headers", secret, note) {
                for (k, v) in headers {
                    if let Some(v) = v.as_str() {
                        req = req.header(k.as_str(), v);
                    }
                }
            }
            req
        }
        NotificationKind::Email => {
            return Err("email delivery is not configured on this server".into());
        }
        NotificationKind::Git => {
            return Err("git notifications are not delivered by this server".into());
        }
    };
    // reqwest's errors name the URL, and a webhook URL is a secret: never let it into the
    // activation record or the log.
    let response = request
        .header("Idempotency-Key", delivery_key)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered {status}"))
    }
}
