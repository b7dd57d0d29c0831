//! Silences (a Tocsin extension): "while this holds, record these activations' notifications
//! as suppressed". A silence matches activations by alert name, entity, severity and event
//! kind, and is in effect from a start to an end, or during the occurrences of a weekly
//! schedule in a named time zone ("Sat 02:00–04:00 Europe/Berlin"). The alert still counts
//! and fires while silenced: only the notifications are held back, and nothing is replayed when
//! the silence ends.
//!
//! The calendar arithmetic (time zones, daylight saving) is chrono-tz's; this module only walks
//! the days around an instant.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::glob::glob_match;
use super::kinds::{EventKind, Severity};
use super::time::{Span, Timestamp};

/// Which activations a silence holds back. Every given matcher must match; none given matches
/// every activation of the project.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceMatchers {
    /// The alert's name, exact or a glob (`drift-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// The activation's entity id, a glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// Any of these severities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub severity: Vec<Severity>,
    /// Any of these event kinds (the kind of the event that fired the alert).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_kind: Vec<EventKind>,
}

/// What a silence is matched against: one firing of one alert.
#[derive(Debug, Clone, Copy)]
pub struct Silenced<'a> {
    pub alert: &'a str,
    pub entity: &'a str,
    pub severity: Severity,
    pub event_kind: &'a EventKind,
}

impl SilenceMatchers {
    /// Whether these matchers hold back `target`.
    pub fn matches(&self, target: &Silenced<'_>) -> bool {
        self.alert
            .as_deref()
            .is_none_or(|p| glob_match(p, target.alert))
            && self
                .entity
                .as_deref()
                .is_none_or(|p| glob_match(p, target.entity))
            && (self.severity.is_empty() || self.severity.contains(&target.severity))
            && (self.event_kind.is_empty() || self.event_kind.contains(target.event_kind))
    }

    /// Whether these matchers hold back every activation of the alert `name` with `severity`
    /// (no entity or kind restriction): what marks an alert as silenced in listings.
    pub fn covers_alert(&self, name: &str, severity: Severity) -> bool {
        self.entity.as_deref().is_none_or(|p| p == "*")
            && self.event_kind.is_empty()
            && self.alert.as_deref().is_none_or(|p| glob_match(p, name))
            && (self.severity.is_empty() || self.severity.contains(&severity))
    }
}

/// A day of the week, as schedules spell it (`mon` … `sun`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    /// Every day, Monday first.
    pub const ALL: [Day; 7] = [
        Day::Mon,
        Day::Tue,
        Day::Wed,
        Day::Thu,
        Day::Fri,
        Day::Sat,
        Day::Sun,
    ];

    fn of(date: NaiveDate) -> Day {
        Day::ALL[date.weekday().num_days_from_monday() as usize]
    }

    /// The three-letter name.
    pub fn as_str(self) -> &'static str {
        match self {
            Day::Mon => "mon",
            Day::Tue => "tue",
            Day::Wed => "wed",
            Day::Thu => "thu",
            Day::Fri => "fri",
            Day::Sat => "sat",
            Day::Sun => "sun",
        }
    }
}

impl FromStr for Day {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        const FULL: [&str; 7] = [
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ];
        let lower = s.to_ascii_lowercase();
        Day::ALL
            .into_iter()
            .zip(FULL)
            .find(|(d, full)| lower == d.as_str() || lower == *full)
            .map(|(d, _)| d)
            .ok_or_else(|| {
                format!("`{s}` is not a day of the week (mon, tue, wed, thu, fri, sat, sun)")
            })
    }
}

/// A time of day, `HH:MM`, minutes after midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeOfDay(pub u16);

impl TimeOfDay {
    fn naive(self) -> NaiveTime {
        NaiveTime::from_hms_opt(u32::from(self.0 / 60), u32::from(self.0 % 60), 0)
            .unwrap_or(NaiveTime::MIN)
    }
}

impl FromStr for TimeOfDay {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a time of day (HH:MM, 00:00 to 23:59)");
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 23 || m > 59 || s.len() > 5 {
            return Err(bad());
        }
        Ok(TimeOfDay(h * 60 + m))
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl Serialize for TimeOfDay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A weekly maintenance window: on these days (none = every day), from `from` to `to` in
/// `time_zone`. A window whose end is not after its start ends the next day (`22:00`–`02:00`);
/// equal times mean the whole day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<Day>,
    pub from: TimeOfDay,
    pub to: TimeOfDay,
    /// An IANA time zone name (`Europe/Berlin`, `UTC`).
    pub time_zone: String,
}

impl Schedule {
    /// The time zone, or why it is not one.
    pub fn zone(&self) -> Result<Tz, String> {
        self.time_zone.parse::<Tz>().map_err(|_| {
            format!(
                "`{}` is not a time zone name (an IANA name such as Europe/Berlin or UTC)",
                self.time_zone
            )
        })
    }

    /// The occurrence that starts on `day` (local date), if the schedule has one that day.
    fn occurrence_on(&self, tz: Tz, day: NaiveDate) -> Option<(Timestamp, Timestamp)> {
        if !self.days.is_empty() && !self.days.contains(&Day::of(day)) {
            return None;
        }
        let end_day = if self.to <= self.from {
            day.succ_opt()?
        } else {
            day
        };
        Some((
            local_instant(tz, day.and_time(self.from.naive())),
            local_instant(tz, end_day.and_time(self.to.naive())),
        ))
    }

    /// The occurrences that may contain or follow `at`, in order: starting the day before its
    /// local date (a window over midnight) up to eight days on (the next week's same day).
    fn occurrences_around(&self, at: Timestamp) -> Vec<(Timestamp, Timestamp)> {
        let Ok(tz) = self.zone() else {
            return Vec::new();
        };
        let local = at.to_datetime().with_timezone(&tz).date_naive();
        (-1..=8)
            .filter_map(|d| local.checked_add_signed(Duration::days(d)))
            .filter_map(|day| self.occurrence_on(tz, day))
            .collect()
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days: Vec<&str> = self.days.iter().map(|d| d.as_str()).collect();
        let days = if days.is_empty() {
            "daily".to_owned()
        } else {
            days.join(",")
        };
        write!(f, "{days} {}-{} {}", self.from, self.to, self.time_zone)
    }
}

impl FromStr for Schedule {
    type Err = String;
    /// `DAYS FROM-TO ZONE`, as [`Schedule`]'s `Display` writes it: `sat,sun 02:00-04:00
    /// Europe/Berlin`, or `daily 09:00-10:00 UTC`.
    fn from_str(text: &str) -> Result<Self, String> {
        let shape = || {
            format!(
                "`{text}` is not a schedule: write DAYS FROM-TO ZONE, e.g. `sat,sun 02:00-04:00 Europe/Berlin` or `daily 09:00-10:00 UTC`"
            )
        };
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [days, times, zone] = parts.as_slice() else {
            return Err(shape());
        };
        let days = if days.eq_ignore_ascii_case("daily") {
            Vec::new()
        } else {
            days.split(',').map(str::parse).collect::<Result<_, _>>()?
        };
        let (from, to) = times.split_once('-').ok_or_else(shape)?;
        let schedule = Schedule {
            days,
            from: from.parse()?,
            to: to.parse()?,
            time_zone: (*zone).to_owned(),
        };
        schedule.zone()?;
        Ok(schedule)
    }
}

/// A local wall-clock time as an instant: the earlier one when the clock goes back (the time
/// happens twice), and the first valid time after it when the clock goes forward (it never
/// happens).
fn local_instant(tz: Tz, local: NaiveDateTime) -> Timestamp {
    let mut probe = local;
    for _ in 0..=4 {
        match tz.from_local_datetime(&probe) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                return Timestamp::from_datetime(t.to_utc());
            }
            LocalResult::None => probe += Duration::minutes(30),
        }
    }
    Timestamp::from_datetime(local.and_utc())
}

/// A silence as stored: what it matches, when it applies, who made it and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub project: String,
    #[serde(default)]
    pub matchers: SilenceMatchers,
    /// Not in effect before this.
    pub starts_at: Timestamp,
    /// Not in effect from this on. Only a recurring silence may have no end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<Timestamp>,
    /// In effect only during the schedule's occurrences (between the start and the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    pub created_by: String,
    pub comment: String,
    pub created: Timestamp,
    pub updated: Timestamp,
    /// Who ended it early (its end is then when they did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_by: Option<String>,
    /// The rule file it was applied from (see [`SilenceSpec::applied_from`]).
    #[serde(
        default,
        rename = "tocsin_rules",
        skip_serializing_if = "Option::is_none"
    )]
    pub applied_from: Option<String>,
}

/// The end of a silence that has none (only a silence with a schedule may): never reached.
const NO_END: Timestamp = Timestamp(i64::MAX);

/// `until`, unless it is [`NO_END`]: what answers and records say.
pub fn finite(until: Timestamp) -> Option<Timestamp> {
    (until != NO_END).then_some(until)
}

/// Where a silence stands at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilenceState {
    /// In effect until `until` (the end of the silence, or of the schedule's occurrence).
    Active { until: Timestamp },
    /// Not in effect now; in effect from `starts` (None: no occurrence within the next week).
    Pending { starts: Option<Timestamp> },
    /// Over since `at`.
    Expired { at: Timestamp },
}

/// A [`SilenceState`] without its times: how the API and the CLI name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SilencePhase {
    Active,
    Pending,
    Expired,
}

impl SilenceState {
    /// The phase, without the times.
    pub fn phase(&self) -> SilencePhase {
        match self {
            SilenceState::Active { .. } => SilencePhase::Active,
            SilenceState::Pending { .. } => SilencePhase::Pending,
            SilenceState::Expired { .. } => SilencePhase::Expired,
        }
    }
}

impl Silence {
    /// Where the silence stands at `now`.
    pub fn state_at(&self, now: Timestamp) -> SilenceState {
        if let Some(end) = self.ends_at.filter(|end| *end <= now) {
            return SilenceState::Expired { at: end };
        }
        let clip = |(a, b): (Timestamp, Timestamp)| {
            let a = a.max(self.starts_at);
            let b = self.ends_at.map_or(b, |end| b.min(end));
            (a < b).then_some((a, b))
        };
        let Some(schedule) = &self.schedule else {
            return if now < self.starts_at {
                SilenceState::Pending {
                    starts: Some(self.starts_at),
                }
            } else {
                SilenceState::Active {
                    until: self.ends_at.unwrap_or(NO_END),
                }
            };
        };
        let from = now.max(self.starts_at);
        let occurrences = schedule.occurrences_around(from);
        let mut next = None;
        for (a, b) in occurrences.into_iter().filter_map(clip) {
            if a <= now && now < b {
                return SilenceState::Active { until: b };
            }
            if a > now && next.is_none() {
                next = Some(a);
            }
        }
        SilenceState::Pending { starts: next }
    }

    /// Until when the silence holds back `target` at `now`, if it does.
    pub fn silences(&self, target: &Silenced<'_>, now: Timestamp) -> Option<Timestamp> {
        match self.state_at(now) {
            SilenceState::Active { until } if self.matches(target) => Some(until),
            _ => None,
        }
    }

    /// Whether its matchers hold back `target` (whenever it is in effect).
    pub fn matches(&self, target: &Silenced<'_>) -> bool {
        self.matchers.matches(target)
    }

    /// Whether it is still listed at `now`: expired silences stay for `retention` after their
    /// end, then the stores drop them.
    pub fn is_kept(&self, now: Timestamp, retention: Span) -> bool {
        self.ends_at.is_none_or(|end| end.plus(retention) > now)
    }

    /// What a notification it holds back records: "silenced by <who>: <why>, until <when>".
    pub fn reason(&self, until: Timestamp) -> String {
        let until = finite(until).map_or_else(|| "it is expired".to_owned(), |t| t.to_string());
        format!(
            "silenced by {}: {}, until {until} (silence {})",
            self.created_by, self.comment, self.id
        )
    }
}

/// A silence as the API answers it: the stored silence and where it stands now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceView {
    #[serde(flatten)]
    pub silence: Silence,
    pub state: SilencePhase,
    /// Active: until when (the end of the silence or of the schedule's occurrence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    /// Pending: when it next takes effect, if within a week.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_start: Option<Timestamp>,
}

impl Silence {
    /// The silence as answered at `now`.
    pub fn view(&self, now: Timestamp) -> SilenceView {
        let state = self.state_at(now);
        let (until, next_start) = match state {
            SilenceState::Active { until } => (finite(until), None),
            SilenceState::Pending { starts } => (None, starts),
            SilenceState::Expired { .. } => (None, None),
        };
        SilenceView {
            silence: self.clone(),
            state: state.phase(),
            until,
            next_start,
        }
    }

    /// What marks an alert as silenced in listings, when this silence is in effect at `now`
    /// and holds back every activation of the alert `name` with `severity`.
    pub fn marks(&self, name: &str, severity: Severity, now: Timestamp) -> Option<SilencedBy> {
        match self.state_at(now) {
            SilenceState::Active { until } if self.matchers.covers_alert(name, severity) => {
                Some(SilencedBy {
                    id: self.id.clone(),
                    by: self.created_by.clone(),
                    comment: self.comment.clone(),
                    until: finite(until),
                })
            }
            _ => None,
        }
    }
}

/// An alert's mark in listings (a Tocsin extension): a silence in effect holds back all its
/// notifications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilencedBy {
    pub id: String,
    pub by: String,
    pub comment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
}

/// What a client sends to create or replace a silence. The server fills in who and when.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceSpec {
    #[serde(default)]
    pub matchers: SilenceMatchers,
    /// Default: now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Why: required, it is what the suppressed notifications say.
    #[serde(default)]
    pub comment: String,
    /// Who, when the server runs without auth (with auth, the signed-in principal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// The rule file this silence comes from, set by `tocsin apply` (the same mark as an
    /// alert's `tocsin_rules`): `apply --prune` expires only silences that carry it, so a
    /// silence someone made by hand is never ended by a deploy. Storing a spec without it
    /// (by hand, over one from a file) takes the silence out of the files' care.
    #[serde(
        default,
        rename = "tocsin_rules",
        skip_serializing_if = "Option::is_none"
    )]
    pub applied_from: Option<String>,
}

/// Why a silence cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSilence(pub String);

impl SilenceSpec {
    /// The silence this spec makes: `id` in `project`, made by `by` at `now` (`created` kept
    /// from the silence it replaces, if any). Refuses a silence that would hold forever, an end
    /// before the start, a time zone that is not one, and an empty comment.
    pub fn into_silence(
        self,
        id: String,
        project: String,
        by: String,
        now: Timestamp,
        replaces: Option<&Silence>,
    ) -> Result<Silence, InvalidSilence> {
        let bad = |m: String| Err(InvalidSilence(m));
        if self.comment.trim().is_empty() {
            return bad(
                "A silence needs a `comment`: it is what its suppressed notifications say".into(),
            );
        }
        let starts_at = self.starts_at.unwrap_or(now);
        match (&self.ends_at, &self.schedule) {
            (None, None) => {
                return bad("A silence needs an `ends_at`, or a `schedule` (a silence without either would hold forever)".into());
            }
            (Some(end), _) if *end <= starts_at => {
                return bad(format!(
                    "`ends_at` ({end}) must be after `starts_at` ({starts_at})"
                ));
            }
            _ => {}
        }
        if let Some(s) = &self.schedule {
            s.zone().map_err(InvalidSilence)?;
        }
        for (what, p) in [
            ("alert", &self.matchers.alert),
            ("entity", &self.matchers.entity),
        ] {
            if p.as_deref().is_some_and(|p| p.is_empty() || p.len() > 256) {
                return bad(format!(
                    "`matchers.{what}` must be 1 to 256 characters (leave it out to match any)"
                ));
            }
        }
        Ok(Silence {
            id,
            project,
            matchers: self.matchers,
            starts_at,
            ends_at: self.ends_at,
            schedule: self.schedule,
            created_by: by,
            comment: self.comment,
            created: replaces.map_or(now, |s| s.created),
            updated: now,
            expired_by: None,
            applied_from: self.applied_from,
        })
    }
}

impl Silence {
    /// The silence ended early by `by` at `now` (an expired one stays as it was).
    pub fn expired(mut self, by: &str, now: Timestamp) -> Silence {
        if !matches!(self.state_at(now), SilenceState::Expired { .. }) {
            self.ends_at = Some(now);
            self.expired_by = Some(by.to_owned());
            self.updated = now;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse(s).expect("time")
    }

    fn silence(schedule: Option<Schedule>, starts: &str, ends: Option<&str>) -> Silence {
        Silence {
            id: "s1".into(),
            project: "p".into(),
            matchers: SilenceMatchers {
                alert: Some("drift-*".into()),
                ..Default::default()
            },
            starts_at: t(starts),
            ends_at: ends.map(t),
            schedule,
            created_by: "ann".into(),
            comment: "upgrade".into(),
            created: t(starts),
            updated: t(starts),
            expired_by: None,
            applied_from: None,
        }
    }

    fn saturday_night() -> Schedule {
        Schedule {
            days: vec![Day::Sat],
            from: "02:00".parse().expect("time"),
            to: "04:00".parse().expect("time"),
            time_zone: "Europe/Berlin".into(),
        }
    }

    #[test]
    fn a_one_off_silence_is_pending_then_active_then_expired() {
        let s = silence(None, "2026-12-05T10:00:00Z", Some("2026-12-05T12:00:00Z"));
        assert_eq!(
            s.state_at(t("2026-12-05T09:00:00Z")),
            SilenceState::Pending {
                starts: Some(t("2026-12-05T10:00:00Z"))
            }
        );
        assert_eq!(
            s.state_at(t("2026-12-05T10:00:00Z")),
            SilenceState::Active {
                until: t("2026-12-05T12:00:00Z")
            }
        );
        assert_eq!(
            s.state_at(t("2026-12-05T12:00:00Z")).phase(),
            SilencePhase::Expired,
            "the end is exclusive"
        );
    }

    #[test]
    fn a_weekly_window_follows_its_time_zone_across_daylight_saving() {
        let s = silence(Some(saturday_night()), "2026-01-01T00:00:00Z", None);
        // Winter: Berlin is UTC+1, so Sat 02:00-04:00 local is 01:00-03:00 UTC.
        assert_eq!(
            s.state_at(t("2026-12-05T01:30:00Z")),
            SilenceState::Active {
                until: t("2026-12-05T03:00:00Z")
            }
        );
        assert_eq!(
            s.state_at(t("2026-12-05T03:00:00Z")),
            SilenceState::Pending {
                starts: Some(t("2026-12-12T01:00:00Z"))
            }
        );
        // Summer: UTC+2.
        assert_eq!(
            s.state_at(t("2026-07-04T00:30:00Z")),
            SilenceState::Active {
                until: t("2026-07-04T02:00:00Z")
            }
        );
        assert_eq!(
            s.state_at(t("2026-07-05T00:30:00Z")).phase(),
            SilencePhase::Pending,
            "Sunday"
        );
    }

    #[test]
    fn a_window_over_midnight_and_a_window_in_a_clock_change() {
        let night = Schedule {
            days: vec![Day::Fri],
            from: "22:00".parse().expect("time"),
            to: "02:00".parse().expect("time"),
            time_zone: "UTC".into(),
        };
        let s = silence(Some(night), "2026-01-01T00:00:00Z", None);
        // Friday 2026-12-04 22:00 to Saturday 02:00.
        assert_eq!(
            s.state_at(t("2026-12-05T01:00:00Z")),
            SilenceState::Active {
                until: t("2026-12-05T02:00:00Z")
            }
        );
        // 2026-03-29 02:00-03:00 does not happen in Berlin: the window starts at 03:00 local.
        let gap = Schedule {
            days: vec![Day::Sun],
            from: "02:30".parse().expect("time"),
            to: "04:00".parse().expect("time"),
            time_zone: "Europe/Berlin".into(),
        };
        let s = silence(Some(gap), "2026-01-01T00:00:00Z", None);
        assert_eq!(
            s.state_at(t("2026-03-29T00:30:00Z")),
            SilenceState::Pending {
                starts: Some(t("2026-03-29T01:00:00Z"))
            }
        );
    }

    #[test]
    fn a_schedule_holds_only_between_the_start_and_the_end() {
        let s = silence(
            Some(saturday_night()),
            "2026-12-05T02:00:00Z",
            Some("2026-12-12T02:00:00Z"),
        );
        assert_eq!(
            s.state_at(t("2026-12-05T01:30:00Z")),
            SilenceState::Pending {
                starts: Some(t("2026-12-05T02:00:00Z"))
            }
        );
        assert_eq!(
            s.state_at(t("2026-12-05T02:30:00Z")),
            SilenceState::Active {
                until: t("2026-12-05T03:00:00Z")
            }
        );
        assert_eq!(
            s.state_at(t("2026-12-12T01:30:00Z")),
            SilenceState::Active {
                until: t("2026-12-12T02:00:00Z")
            },
            "clipped to the end"
        );
    }

    #[test]
    fn matchers_hold_back_what_they_name() {
        let kind = EventKind::DataDriftDetected;
        let target = Silenced {
            alert: "drift-ep1",
            entity: "ep1.app",
            severity: Severity::High,
            event_kind: &kind,
        };
        let mut m = SilenceMatchers::default();
        assert!(m.matches(&target), "no matcher matches everything");
        m.alert = Some("drift-*".into());
        m.entity = Some("ep1*".into());
        m.severity = vec![Severity::High, Severity::Medium];
        assert!(m.matches(&target));
        m.event_kind = vec![EventKind::Failed];
        assert!(!m.matches(&target));
        assert!(
            !m.covers_alert("drift-ep1", Severity::High),
            "a kind matcher is partial"
        );
        m.event_kind.clear();
        m.entity = None;
        assert!(m.covers_alert("drift-ep1", Severity::High));
        assert!(!m.covers_alert("drift-ep1", Severity::Low));
    }

    #[test]
    fn a_spec_that_would_hold_forever_or_makes_no_sense_is_refused() {
        let now = t("2026-12-05T10:00:00Z");
        let make = |spec: SilenceSpec| {
            spec.into_silence("s".into(), "p".into(), "ann".into(), now, None)
                .map_err(|e| e.0)
        };
        let base = SilenceSpec {
            comment: "upgrade".into(),
            ends_at: Some(t("2026-12-05T11:00:00Z")),
            ..Default::default()
        };
        assert!(make(base.clone()).is_ok());
        let forever = SilenceSpec {
            ends_at: None,
            ..base.clone()
        };
        assert!(make(forever).unwrap_err().contains("forever"));
        let no_why = SilenceSpec {
            comment: " ".into(),
            ..base.clone()
        };
        assert!(make(no_why).unwrap_err().contains("comment"));
        let backwards = SilenceSpec {
            ends_at: Some(t("2026-12-05T09:00:00Z")),
            ..base.clone()
        };
        assert!(make(backwards).unwrap_err().contains("after"));
        let mut zone = saturday_night();
        zone.time_zone = "Europe/Berlinn".into();
        let bad_zone = SilenceSpec {
            schedule: Some(zone),
            ..base
        };
        assert!(make(bad_zone).unwrap_err().contains("time zone"));
        assert!("24:00".parse::<TimeOfDay>().is_err());
        assert!("sat".parse::<Day>().is_ok() && "Saturday".parse::<Day>().is_ok());
        assert!("sa".parse::<Day>().is_err());
        let text = "sat,sun 02:00-04:00 Europe/Berlin";
        let parsed: Schedule = text.parse().expect("schedule");
        assert_eq!(parsed.to_string(), text);
        assert_eq!(
            "daily 22:00-02:00 UTC"
                .parse::<Schedule>()
                .expect("daily")
                .days,
            []
        );
        for bad in [
            "sat 02:00 UTC",
            "sat 02:00-04:00",
            "sat 02:00-25:00 UTC",
            "sat 02:00-04:00 Mars/Base",
        ] {
            assert!(bad.parse::<Schedule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn expiring_ends_it_now_and_it_stays_listed_for_the_retention() {
        let now = t("2026-12-05T10:30:00Z");
        let s =
            silence(None, "2026-12-05T10:00:00Z", Some("2026-12-05T12:00:00Z")).expired("bob", now);
        assert_eq!(s.ends_at, Some(now));
        assert_eq!(s.state_at(now), SilenceState::Expired { at: now });
        let day = Span::from_secs(86_400);
        assert!(s.is_kept(now.plus(day), Span::from_secs(2 * 86_400)));
        assert!(!s.is_kept(
            now.plus(Span::from_secs(3 * 86_400)),
            Span::from_secs(2 * 86_400)
        ));
        assert!(s.reason(now).starts_with("silenced by ann: upgrade, until"));
    }
}
