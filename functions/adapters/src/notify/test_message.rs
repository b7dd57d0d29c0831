//! A test message through an alert's notifications (`tocsin notify test`, the API's
//! `notifications/test` route, the Alerts page's button): each channel sends one clearly marked
//! message, for real, once, and the receiver's answer comes back to the person who asked.
//! Nothing is recorded, no cooldown starts and no event is posted: the alert's state is as it
//! was.

use serde::Serialize;
use tocsin_core::channels::{Reading, said};
use tocsin_core::model::{Delivery, NotificationKind, Timestamp};

use super::Notifier;
use super::retry::Failure;

/// How a test message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TestVerdict {
    /// The receiver took it.
    Sent,
    /// Refused for good: by the receiver (a 4xx), or the notification lacks something.
    Refused,
    /// Not delivered, and a real message would be retried (a 5xx, a 429, no connection).
    Failed,
    /// Nothing to send: a test posts no chained event; on AWS, SNS carries mail.
    NotSent,
}

/// What one notification's test message got.
#[derive(Debug, Clone, Serialize)]
pub struct TestOutcome {
    pub notification: String,
    pub kind: NotificationKind,
    pub outcome: TestVerdict,
    /// The receiver's HTTP status, when it answered over HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The start of what the receiver said, on one line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub said: Option<String>,
    /// Why it was not delivered, or why nothing was sent; never a URL or a secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Notifier {
    /// Sends a test message through each of alert `project/name`'s notifications (or only
    /// the one named `only`), all at once, without retries, and says how each went.
    pub async fn test(
        &self,
        project: &str,
        name: &str,
        only: Option<&str>,
    ) -> Result<Vec<TestOutcome>, tocsin_core::Error> {
        let courier = &self.courier;
        let (activation, rule) = courier
            .service
            .preview(project, name, None, Timestamp::now())
            .await?;
        let notes: Vec<_> = rule
            .config
            .notifications
            .iter()
            .map(|n| &n.notification)
            .filter(|n| only.is_none_or(|o| n.name == o))
            .collect();
        if notes.is_empty() {
            return Err(tocsin_core::Error::NotFound(match only {
                Some(o) => format!("alert `{name}` has no notification named `{o}`"),
                None => format!("alert `{name}` has no notifications"),
            }));
        }
        let tries = notes.into_iter().map(|note| {
            let delivery = Delivery::pending(note, false, false);
            let secret = rule.secrets.get(&note.name);
            let activation = &activation;
            async move {
                let attempted = courier
                    .attempt(note, secret, activation, &delivery, true)
                    .await;
                let mut outcome = TestOutcome {
                    notification: note.name.clone(),
                    kind: note.kind,
                    outcome: TestVerdict::Sent,
                    status: None,
                    said: None,
                    detail: None,
                };
                match attempted {
                    Ok(a) => {
                        if let Some(answer) = &a.answer {
                            outcome.status = Some(answer.status);
                            outcome.said = said(&answer.body);
                        }
                        (outcome.outcome, outcome.detail) = match a.reading {
                            Reading::Sent if a.unsent.is_some() => {
                                (TestVerdict::NotSent, a.unsent.map(str::to_owned))
                            }
                            Reading::Sent => (TestVerdict::Sent, None),
                            Reading::Refused(why) => (TestVerdict::Refused, Some(why)),
                            Reading::Retry { cause, .. } => (TestVerdict::Failed, Some(cause)),
                        };
                        // "404 from the receiver: ..." says again what status and said say.
                        if let Some(status) = outcome.status
                            && outcome.detail.as_deref().is_some_and(|d| {
                                d.starts_with(&format!("{status} from the receiver"))
                            })
                        {
                            outcome.detail = None;
                        }
                    }
                    Err(Failure::Permanent(why)) => {
                        (outcome.outcome, outcome.detail) = (TestVerdict::Refused, Some(why));
                    }
                    Err(Failure::Retry { reason, .. }) => {
                        (outcome.outcome, outcome.detail) = (TestVerdict::Failed, Some(reason));
                    }
                }
                outcome
            }
        });
        Ok(futures_util::future::join_all(tries).await)
    }
}
