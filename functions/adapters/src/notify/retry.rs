//! When to try a delivery again: exponential backoff with jitter, `Retry-After`, and a bound on
//! the whole effort.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The operator's delivery settings (`[notifications]` in the config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliverySettings {
    /// One request may take this long.
    pub request_timeout_ms: u64,
    /// The first retry waits about this long; each next one twice as long.
    pub initial_backoff_ms: u64,
    /// No wait between attempts is longer than this (nor a receiver's `Retry-After`).
    pub max_backoff_ms: u64,
    /// A delivery still failing this long after its first attempt is given up and recorded.
    pub give_up_after_secs: u64,
    /// Slack accepts about one message per second per webhook.
    pub slack_min_interval_ms: u64,
    /// Requests in flight at once, across all receivers.
    pub max_in_flight: usize,
    /// Activations being delivered at once (including ones waiting to retry); more wait in
    /// the outbox on disk, so memory stays bounded however slow a receiver is.
    pub max_activations_in_delivery: usize,
    /// Fired activations queued in memory; beyond this the outbox on disk holds them.
    pub queue_capacity: usize,
    /// Email goes out through SNS email subscriptions (the AWS deployment), not SMTP: an email
    /// notification counts as sent once its activation reached the topic.
    pub email_via_sns: bool,
    /// The server's public URL (`https://tocsin.example.com`): messages link to the alert's
    /// page there. None: they carry no link to Tocsin.
    pub public_url: Option<String>,
    /// A PEM file of certificate authorities to trust besides the system's: for receivers
    /// behind an internal CA (GitHub Enterprise, a self-hosted GitLab).
    pub ca_file: Option<String>,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            request_timeout_ms: 10_000,
            initial_backoff_ms: 500,
            max_backoff_ms: 60_000,
            give_up_after_secs: 600,
            slack_min_interval_ms: 1000,
            max_in_flight: 64,
            max_activations_in_delivery: 1024,
            queue_capacity: 1024,
            email_via_sns: false,
            public_url: None,
            ca_file: None,
        }
    }
}

impl DeliverySettings {
    /// The least time between two messages to one target of channel `kind`: for Slack the
    /// operator's `slack_min_interval_ms` (0: none), for the others their channel's.
    pub fn pace(&self, kind: tocsin_core::model::NotificationKind) -> Option<Duration> {
        match kind {
            tocsin_core::model::NotificationKind::Slack => {
                Some(Duration::from_millis(self.slack_min_interval_ms)).filter(|d| !d.is_zero())
            }
            other => other.channel().pace(),
        }
    }
}

/// Why an attempt failed, and whether another may succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A timeout, a refused connection, 408, 429 or a 5xx: try again (after `after`, if the
    /// receiver said when).
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// A refusal that repeating will not change (other 4xx, no target configured).
    Permanent(String),
}

/// The wait before attempt `attempt + 1` (attempts count from 1): `initial * 2^(attempt-1)`,
/// capped, then jittered to between half and all of it, so that receivers that come back are
/// not hit by every sender at the same instant.
pub fn backoff(settings: &DeliverySettings, attempt: u32, random: u64) -> Duration {
    let exp = settings
        .initial_backoff_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(30));
    let capped = exp.min(settings.max_backoff_ms);
    let half = capped / 2;
    Duration::from_millis(half + random % (capped - half + 1))
}

/// A `Retry-After` header: seconds, or an HTTP date.
pub fn retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// A small, fast, non-cryptographic random source for jitter (xorshift64*).
pub struct Jitter(u64);

impl Jitter {
    /// Seeded from the clock: jitter needs variety, not secrecy.
    pub fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Jitter(seed | 1)
    }

    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered_within_half() {
        let s = DeliverySettings {
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
            ..Default::default()
        };
        for (attempt, full) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (40, 1000),
        ] {
            for random in [0, 1, 7, u64::MAX] {
                let d = backoff(&s, attempt, random).as_millis() as u64;
                assert!(
                    (full / 2..=full).contains(&d),
                    "attempt {attempt}: {d} not in [{}, {full}]",
                    full / 2
                );
            }
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        assert_eq!(retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past"
        );
        assert_eq!(retry_after("soon", now), None);
    }
}
