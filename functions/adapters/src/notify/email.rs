//! Email over SMTP: the mail the email channel made (text and HTML), with a `Message-ID` made
//! from the delivery key, so that a retried delivery is recognisably the same mail.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart, header};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use super::retry::Failure;

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Upgrade with STARTTLS (port 587); refuse a server that cannot.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// Plain text: only for a relay on the same machine or a test sink.
    None,
}

/// The operator's SMTP relay (`[smtp]` in the config). Without a host, email notifications are
/// recorded as failed with a message that says so.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: Option<String>,
    /// Defaults to 587 (STARTTLS), 465 (TLS) or 25 (none).
    pub port: Option<u16>,
    pub tls: SmtpTls,
    pub username: Option<String>,
    /// Better set through `TOCSIN_SMTP__PASSWORD` than in a file.
    pub password: Option<String>,
    /// The sender, e.g. `Tocsin <alerts@example.com>`.
    pub from: String,
}

/// A configured relay.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// Why the SMTP settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    #[error("smtp.from `{0}` is not an email address")]
    From(String),
    #[error("smtp.host: {0}")]
    Relay(lettre::transport::smtp::Error),
}

impl Mailer {
    /// The relay `settings` name, if any.
    pub fn new(settings: &SmtpSettings, timeout: Duration) -> Result<Option<Self>, MailerError> {
        let Some(host) = settings.host.as_deref() else {
            return Ok(None);
        };
        let from = settings
            .from
            .parse()
            .map_err(|_| MailerError::From(settings.from.clone()))?;
        let builder = match settings.tls {
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                .map_err(MailerError::Relay)?,
            SmtpTls::Tls => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(MailerError::Relay)?
            }
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(25),
        };
        let mut builder = builder.timeout(Some(timeout));
        if let Some(port) = settings.port {
            builder = builder.port(port);
        }
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Some(Mailer {
            transport: builder.build(),
            from,
        }))
    }

    /// Sends one mail, its `Message-ID` made from the delivery `key`.
    pub async fn send(
        &self,
        to: &[String],
        subject: String,
        text: String,
        html: String,
        key: &str,
    ) -> Result<(), Failure> {
        let to = addresses(to)?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(format!("<{}@tocsin>", message_id(key))));
        for mailbox in to {
            builder = builder.to(mailbox);
        }
        let mail = builder
            .header(header::MIME_VERSION_1_0)
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| Failure::Permanent(format!("cannot compose the mail: {e}")))?;
        self.transport.send(mail).await.map(|_| ()).map_err(|e| {
            let reason = format!("smtp: {e}");
            if e.is_permanent() {
                Failure::Permanent(reason)
            } else {
                Failure::Retry {
                    reason,
                    after: None,
                }
            }
        })
    }
}

/// The `Message-ID`'s local part for delivery key `{activation}:{name}[:resolved]`:
/// `{activation}.{name}[.resolved]`, the name's other characters as `-`.
fn message_id(key: &str) -> String {
    key.split(':')
        .map(|part| part.replace(|c: char| !c.is_ascii_alphanumeric(), "-"))
        .collect::<Vec<_>>()
        .join(".")
}

/// The addresses, each checked.
fn addresses(items: &[String]) -> Result<Vec<Mailbox>, Failure> {
    if items.is_empty() {
        return Err(Failure::Permanent("no email_addresses to send to".into()));
    }
    items
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|_| Failure::Permanent(format!("`{s}` is not an email address")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_id_names_the_activation_the_notification_and_the_round() {
        assert_eq!(message_id("12:on call:resolved"), "12.on-call.resolved");
        assert_eq!(message_id("12:mail"), "12.mail");
    }

    #[test]
    fn addresses_are_checked_and_bad_ones_named() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            addresses(&list(&["a@example.com", "b@example.com"])).map(|v| v.len()),
            Ok(2)
        );
        assert!(
            matches!(addresses(&list(&["nobody"])), Err(Failure::Permanent(m)) if m.contains("nobody"))
        );
        assert!(matches!(addresses(&[]), Err(Failure::Permanent(_))));
    }
}
