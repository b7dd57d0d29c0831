//! Instants and spans as the engine counts them, and as the wire spells them.
//!
//! The engine never reads a clock: every operation takes a [`Timestamp`] from its host (the
//! server's clock, a Lambda's, or a test's virtual clock).

use std::fmt;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Microseconds since the Unix epoch, UTC. Written as ISO-8601 with an explicit offset
/// (`2026-11-23T10:00:00.000000+00:00`), the form Python's `datetime.fromisoformat` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time. Only hosts call this; the engine is handed times.
    pub fn now() -> Self {
        Self::from_datetime(Utc::now())
    }

    /// From a chrono UTC instant.
    pub fn from_datetime(t: DateTime<Utc>) -> Self {
        Timestamp(t.timestamp_micros())
    }

    /// Whole seconds since the epoch, as a test file or CLI would write them.
    pub const fn from_secs(secs: i64) -> Self {
        Timestamp(secs * 1_000_000)
    }

    /// As a chrono UTC instant.
    pub fn to_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_micros(self.0).single().unwrap_or_default()
    }

    /// An ISO-8601 time (see [`Timestamp::parse`]), or a span back from `now` (`7d`, `90m`):
    /// how the backtest and the event export take a period's ends.
    pub fn parse_or_ago(s: &str, now: Timestamp) -> Option<Self> {
        Self::parse(s).or_else(|| parse_period(s).ok().map(|span| now.plus(Span(-span.0))))
    }

    /// This instant moved by `span` (negative spans go back).
    pub const fn plus(self, span: Span) -> Self {
        Timestamp(self.0.saturating_add(span.0))
    }

    /// Parses ISO-8601 / RFC 3339; a time without an offset is taken as UTC (Python's naive
    /// `isoformat()` output), and a plain date as its midnight.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Some(Self::from_datetime(t.with_timezone(&Utc)));
        }
        if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
            return Some(Self::from_datetime(t.and_utc()));
        }
        if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f") {
            return Some(Self::from_datetime(t.and_utc()));
        }
        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| Self::from_datetime(t.and_utc()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            &self
                .to_datetime()
                .to_rfc3339_opts(SecondsFormat::Micros, false),
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("invalid timestamp `{s}`: expected ISO-8601"))
        })
    }
}

/// A length of time in microseconds: a window's period, a cooldown.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Span(pub i64);

impl Span {
    /// From whole seconds.
    pub const fn from_secs(secs: i64) -> Self {
        Span(secs * 1_000_000)
    }

    /// Whole seconds, rounded down.
    pub const fn as_secs(self) -> i64 {
        self.0 / 1_000_000
    }
}

impl fmt::Display for Span {
    /// `1h 30m`, `10m`, `15s` (whole seconds; a negative span as `-` and its length).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 0 {
            f.write_str("-")?;
        }
        let secs = self.0.unsigned_abs() / 1_000_000;
        write!(
            f,
            "{}",
            humantime::format_duration(std::time::Duration::from_secs(secs))
        )
    }
}

/// A period string that is not a time span.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid time period `{0}`: expected a number with a unit, such as 15s, 10m, 1h, 1d, 1w or \"2 minutes\""
)]
pub struct InvalidPeriod(pub String);

/// Parses a human time span the way MLRun's users write them: `15s`, `10m`, `1h`, `1d`, `1w`,
/// `2 minutes`, `1h 30m`, and a bare number of seconds (`"30"`). Zero is allowed (it means "no
/// cooldown"); negative spans are not.
pub fn parse_period(text: &str) -> Result<Span, InvalidPeriod> {
    let invalid = || InvalidPeriod(text.to_owned());
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Err(invalid());
    }
    if let Ok(secs) = compact.parse::<u64>() {
        return i64::try_from(secs)
            .ok()
            .and_then(|s| s.checked_mul(1_000_000))
            .map(Span)
            .ok_or_else(invalid);
    }
    let d = humantime::parse_duration(&compact).map_err(|_| invalid())?;
    i64::try_from(d.as_micros())
        .map(Span)
        .map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_in_every_spelling_users_write() {
        let cases = [
            ("15s", 15),
            ("10m", 600),
            ("1h", 3600),
            ("1d", 86_400),
            ("1w", 604_800),
            ("30", 30),
            ("2 minutes", 120),
            ("1h 30m", 5400),
            ("0", 0),
        ];
        for (text, secs) in cases {
            assert_eq!(parse_period(text), Ok(Span::from_secs(secs)), "{text}");
        }
        for bad in [
            "abc",
            "",
            "  ",
            "-5m",
            "1 fortnight",
            "99999999999999999999",
        ] {
            assert!(parse_period(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn timestamps_print_with_an_offset_and_parse_pythons_forms() {
        let t = Timestamp::from_secs(1_700_000_000).plus(Span(123_456));
        assert_eq!(t.to_string(), "2023-11-14T22:13:20.123456+00:00");
        assert_eq!(Timestamp::parse(&t.to_string()), Some(t));
        assert_eq!(Timestamp::parse("2023-11-14T22:13:20.123456"), Some(t));
        assert_eq!(
            Timestamp::parse("2023-11-14T23:13:20.123456+01:00"),
            Some(t)
        );
        assert_eq!(Timestamp::parse("2023-11-14T22:13:20.123456Z"), Some(t));
        assert_eq!(Timestamp::parse("yesterday"), None);
    }
}
