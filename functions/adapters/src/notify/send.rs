//! One delivery attempt: the notification's channel says what to send
//! ([`tocsin_core::channels`]), this sends it (HTTP, SMTP, or a chained event into the
//! service) and hands the receiver's answer back to the channel, which says whether it was
//! delivered, is worth another try, or was refused.

use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tocsin_core::channels::{Answer, Message, Outgoing, Phase, Reading, Refusal};
use tocsin_core::engine::extend_chain;
use tocsin_core::model::{Activation, Delivery, Event, Notification, NotificationKind, Timestamp};

use super::Courier;
use super::retry::{Failure, retry_after};

/// What one attempt did: what it means, and the receiver's answer when there was one.
pub(super) struct Attempted {
    pub reading: Reading,
    pub answer: Option<Answer>,
    /// Why nothing was sent, when nothing was (a chained event's closing, mail that SNS
    /// carries, a test of an event notification).
    pub unsent: Option<&'static str>,
}

impl Attempted {
    fn sent() -> Self {
        Attempted {
            reading: Reading::Sent,
            answer: None,
            unsent: None,
        }
    }

    fn unsent(why: &'static str) -> Self {
        Attempted {
            unsent: Some(why),
            ..Attempted::sent()
        }
    }
}

/// How much of a receiver's answer is read (its start says why it refused).
const ANSWER_BYTES: usize = 4096;

impl Courier {
    /// One attempt at delivery `d` of activation `a` (`test`: a test message).
    pub(super) async fn attempt(
        &self,
        note: &Notification,
        secret: Option<&Map<String, Value>>,
        a: &Activation,
        d: &Delivery,
        test: bool,
    ) -> Result<Attempted, Failure> {
        let channel = note.kind.channel();
        let key = if test {
            format!("test:{}:{}", a.id, note.name)
        } else {
            d.key(a.id)
        };
        let alert_url = self.alert_url(a);
        let m = Message {
            note,
            secret,
            activation: a,
            phase: Phase::of(d),
            key: &key,
            test,
            alert_url: alert_url.as_deref(),
        };
        let outgoing = channel
            .outgoing(&m)
            .map_err(|Refusal(why)| Failure::Permanent(why))?;
        match outgoing {
            Outgoing::Nothing => Ok(Attempted::unsent("this channel has nothing to say for it")),
            // The SNS topic's email subscriptions (filtered to this alert) carry it: the
            // activation was published before the notifier got it, and its resolved mail
            // before the notifier delivered its resolved notifications.
            Outgoing::Mail { .. } if self.settings.email_via_sns => Ok(Attempted::unsent(
                "mail goes out through the SNS topic's email subscriptions",
            )),
            Outgoing::Mail {
                to,
                subject,
                text,
                html,
            } => {
                let mailer = self.mailer.as_ref().ok_or_else(|| {
                    Failure::Permanent(
                        "email is not configured on this server (set [smtp] host)".into(),
                    )
                })?;
                mailer.send(&to, subject, text, html, &key).await?;
                Ok(Attempted::sent())
            }
            Outgoing::Event(event) if !test => {
                self.post_chained_event(note, a, *event).await?;
                Ok(Attempted::sent())
            }
            // A test posts no event: it would count.
            Outgoing::Event(_) => Ok(Attempted::unsent("a test posts no event: it would count")),
            Outgoing::Http {
                method,
                url,
                headers,
                body,
            } => {
                if let Some(pace) = self.settings.pace(note.kind) {
                    self.wait_turn(note.kind, &url, pace).await;
                }
                let answer = self.send_http(&method, &url, &headers, &body, &key).await?;
                Ok(Attempted {
                    reading: channel.read(&answer),
                    answer: Some(answer),
                    unsent: None,
                })
            }
        }
    }

    /// Sends one request and reads the answer.
    async fn send_http(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: &Value,
        key: &str,
    ) -> Result<Answer, Failure> {
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| Failure::Permanent(format!("invalid HTTP method `{method}`")))?;
        let mut request = self
            .client
            .request(method, url)
            .json(body)
            .header("Idempotency-Key", key);
        for (k, v) in headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let mut response = request.send().await.map_err(|e| Failure::Retry {
            reason: cause(&e),
            after: None,
        })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, chrono::Utc::now()));
        let mut body = Vec::new();
        while body.len() < ANSWER_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        body.truncate(ANSWER_BYTES);
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }

    /// An `event` notification: posts the event its channel made into the alert's project,
    /// evaluated like any other, unless the chain of alerts that led here would loop or grow
    /// past `MAX_CHAIN` (the engine's [`extend_chain`]). The delivery key is the event's
    /// idempotency key, so a redelivery after a crash is counted once.
    async fn post_chained_event(
        &self,
        note: &Notification,
        a: &Activation,
        event: Event,
    ) -> Result<(), Failure> {
        let chain = extend_chain(&a.chain, &a.project, &a.name)
            .map_err(|stop| Failure::Permanent(format!("not posted: {stop}")))?;
        let kind = event
            .kind
            .clone()
            .ok_or_else(|| Failure::Permanent("no event_kind configured".into()))?;
        let key = format!("chain:{}:{}", a.id, note.name);
        let mut accepted = self
            .service
            .accept_event(
                &a.project,
                kind.as_str(),
                event,
                Some(key),
                Timestamp::now(),
            )
            .map_err(|e| Failure::Permanent(e.to_string()))?;
        accepted.chain = chain;
        // The service dispatches what the chained event fires, like any other event's.
        self.service
            .ingest(&accepted)
            .await
            .map_err(|e| Failure::Retry {
                reason: e.to_string(),
                after: None,
            })?;
        Ok(())
    }

    /// Waits for this channel's next free turn at `target` (Slack: a second per webhook),
    /// without holding up deliveries to other targets or channels.
    async fn wait_turn(&self, kind: NotificationKind, target: &str, pace: Duration) {
        let slot = {
            let Ok(mut turns) = self.turns.lock() else {
                return;
            };
            let now = Instant::now();
            let key = (kind, target.to_owned());
            let slot = turns.get(&key).copied().filter(|t| *t > now).unwrap_or(now);
            turns.insert(key, slot + pace);
            slot
        };
        tokio::time::sleep_until(slot.into()).await;
    }
}

/// Why a request could not be made, in words that name the cause and never the URL (a webhook
/// URL is a secret): "connection refused", "timed out", "cannot resolve the host", ...
pub fn cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut deepest = None;
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
                std::io::ErrorKind::ConnectionReset => "connection reset".into(),
                std::io::ErrorKind::TimedOut => "timed out".into(),
                _ => io.to_string(),
            };
        }
        deepest = Some(s.to_string());
        source = s.source();
    }
    let text = deepest.unwrap_or_else(|| e.without_url_ref());
    if text.contains("dns error") || text.contains("failed to lookup") {
        return "cannot resolve the host".into();
    }
    if e.is_connect() {
        return format!("cannot connect: {text}");
    }
    text
}

/// [`reqwest::Error::without_url`], on a borrowed error.
trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let mut text = self.to_string();
        if let Some(url) = self.url() {
            text = text.replace(url.as_str(), "(the receiver)");
        }
        text
    }
}
