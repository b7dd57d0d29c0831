//! Email notifications over SMTP: a readable message in text and HTML, with a `Message-ID`
//! made from the delivery key, so that a retried delivery is recognisably the same mail.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart, header};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tocsin_core::model::{Activation, Notification};

use super::payload::{Phase, message};
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

    /// Sends one notification's mail.
    pub async fn send(
        &self,
        note: &Notification,
        recipients: &Value,
        a: &Activation,
        phase: Phase,
    ) -> Result<(), Failure> {
        let to = addresses(recipients)?;
        let mail = compose(&self.from, &to, note, a, phase)?;
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

/// `email_addresses`, each checked.
fn addresses(v: &Value) -> Result<Vec<Mailbox>, Failure> {
    let items = tocsin_core::model::notification_params::address_list(v);
    if items.is_empty() {
        return Err(Failure::Permanent("no email_addresses to send to".into()));
    }
    items
        .into_iter()
        .map(|s| {
            s.parse()
                .map_err(|_| Failure::Permanent(format!("`{s}` is not an email address")))
        })
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The facts of an activation, as (label, value) lines.
fn facts(note: &Notification, a: &Activation) -> Vec<(&'static str, String)> {
    let window = a
        .criteria
        .period
        .as_deref()
        .map(|p| format!(" within {p}"))
        .unwrap_or_default();
    let mut facts = vec![
        ("Alert", a.name.clone()),
        ("Project", a.project.clone()),
        ("Entity", format!("{} {}", a.entity_kind, a.entity_id)),
        ("Severity", a.severity.to_string()),
        (
            "Events",
            format!("{} {}{window}", a.number_of_events, a.event_kind),
        ),
        ("Activated", a.activation_time.to_string()),
        ("Activation", a.id.to_string()),
    ];
    if let Some(s) = &a.summary {
        facts.insert(0, ("Summary", s.clone()));
    }
    if let Some(url) = super::payload::link(note, a) {
        facts.push(("Link", url));
    }
    facts
}

/// A notification's mail as (subject, text, HTML): what is sent, and what a preview shows.
pub fn render_mail(note: &Notification, a: &Activation, phase: Phase) -> (String, String, String) {
    let mut text_message = message(note, a);
    let subject: String = match phase {
        Phase::Fired => format!("[{}] {}: {text_message}", a.severity, a.name),
        Phase::Resolved => format!("RESOLVED [{}] {}: {text_message}", a.severity, a.name),
    }
    .chars()
    .take(200)
    .collect();
    let mut facts = facts(note, a);
    if phase == Phase::Resolved {
        text_message = format!("Resolved: {text_message}");
        facts.insert(0, ("Resolved", super::payload::resolution(a)));
    }
    let data: Vec<(String, String)> = a
        .value_dict
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().map_or_else(|| v.to_string(), str::to_owned),
            )
        })
        .collect();

    let mut text = format!("{text_message}\n\n");
    for (k, v) in &facts {
        text.push_str(&format!("{k}: {v}\n"));
    }
    if !data.is_empty() {
        text.push_str("\nEvent data:\n");
        for (k, v) in &data {
            text.push_str(&format!("  {k}: {v}\n"));
        }
    }

    let row = |k: &str, v: &str| {
        format!(
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            escape(k),
            escape(v)
        )
    };
    let mut html = format!(
        "<!doctype html><html><body><h2>{}</h2><table>",
        escape(&text_message)
    );
    for (k, v) in &facts {
        html.push_str(&row(k, v));
    }
    html.push_str("</table>");
    if !data.is_empty() {
        html.push_str("<h3>Event data</h3><table>");
        for (k, v) in &data {
            html.push_str(&row(k, v));
        }
        html.push_str("</table>");
    }
    html.push_str("</body></html>");
    (subject, text, html)
}

fn compose(
    from: &Mailbox,
    to: &[Mailbox],
    note: &Notification,
    a: &Activation,
    phase: Phase,
) -> Result<Message, Failure> {
    let (subject, text, html) = render_mail(note, a, phase);
    let resolved = if phase == Phase::Resolved {
        ".resolved"
    } else {
        ""
    };
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(subject)
        .message_id(Some(format!(
            "<{}.{}{resolved}@tocsin>",
            a.id,
            note.name.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        )));
    for mailbox in to {
        builder = builder.to(mailbox.clone());
    }
    builder
        .header(header::MIME_VERSION_1_0)
        .multipart(MultiPart::alternative_plain_html(text, html))
        .map_err(|e| Failure::Permanent(format!("cannot compose the mail: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_list_or_string_and_bad_ones_named() {
        assert_eq!(
            addresses(&serde_json::json!("a@example.com, b@example.com")).map(|v| v.len()),
            Ok(2)
        );
        assert_eq!(
            addresses(&serde_json::json!(["a@example.com"])).map(|v| v.len()),
            Ok(1)
        );
        assert!(
            matches!(addresses(&serde_json::json!("nobody")), Err(Failure::Permanent(m)) if m.contains("nobody"))
        );
        assert!(matches!(
            addresses(&serde_json::json!([])),
            Err(Failure::Permanent(_))
        ));
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(escape("<b>&\"x\""), "&lt;b&gt;&amp;&quot;x&quot;");
    }
}
