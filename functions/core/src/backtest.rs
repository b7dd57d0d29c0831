//! What candidate rules would have done over recorded events: the events replayed through the
//! engine on the virtual clock (their own times), beside what the stored alerts actually did.
//!
//! The replay is the engine's intake on a [`MemoryState`], with the clock's tick before each
//! event once a second has passed (as `tocsin serve` ticks), so cooldowns end, absences fire
//! and silences hold as they would have. Both sides are summed up by one [`Tally`]: the
//! activations the candidates fire, and the activations the server recorded. The candidates
//! start inactive at the start of the period; the stored alerts were in whatever state they
//! were, which the report's text says.
//!
//! Events that the stored alerts' own `event` notifications posted (a non-empty chain) are
//! left out: they are consequences of the stored rules, and the candidates' calculated events
//! are made by the engine as it replays. `event` notifications are not delivered.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::compiled::compile;
use crate::engine::{Changes, PutAlert};
use crate::error::{Error, Result};
use crate::model::{
    AcceptedEvent, Activation, AlertConfig, Delivery, DeliveryStatus, Silence, Span, Timestamp,
};
use crate::settings::AlertsSettings;
use crate::store::MemoryState;

/// Firings listed one by one per alert; beyond, they are counted.
const LISTED: usize = 200;

/// A replay in progress.
pub struct Backtest {
    project: String,
    state: MemoryState,
    changes: Changes,
    since: Timestamp,
    /// Some rule changes with time alone (cooldowns, absences): tick the clock.
    ticking: bool,
    next_tick: Timestamp,
    ttl: Span,
    events: u64,
    /// Activations still open, for their resolved notifications when they close.
    open: FxHashMap<u64, Arc<Activation>>,
    tallies: BTreeMap<String, Tally>,
}

impl Backtest {
    /// A replay of `alerts` (configs, as stored or compiled from rule files) of `project` from
    /// `since`, with the `silences` that held (the server's and the rule files').
    pub fn new(
        project: &str,
        alerts: Vec<AlertConfig>,
        silences: Vec<Silence>,
        settings: &AlertsSettings,
        since: Timestamp,
    ) -> Result<Self> {
        let mut state = MemoryState::new(0);
        let mut changes = Changes::default();
        let mut tallies = BTreeMap::new();
        let mut ticking = false;
        for config in alerts {
            let name = config.name.clone();
            let rule = compile(config, project, &name, settings)
                .map_err(|e| Error::BadRequest(format!("alert `{name}`: {e}")))?;
            ticking |= rule.absence.is_some() || rule.cooldown.is_some();
            let put = PutAlert {
                rule,
                force_reset: false,
                max_allowed: usize::MAX,
                now: since,
            };
            state.put_alert(put, &mut changes)?;
            tallies.insert(name, Tally::default());
        }
        for s in silences {
            state.put_silence(s, since, settings.silence_retention());
        }
        Ok(Backtest {
            project: project.to_owned(),
            state,
            changes,
            since,
            ticking,
            next_tick: since,
            ttl: settings.idempotency_ttl(),
            events: 0,
            open: FxHashMap::default(),
            tallies,
        })
    }

    /// Replays one recorded event (in order of arrival).
    pub fn feed(&mut self, ev: &AcceptedEvent) {
        if ev.project != self.project || !ev.chain.is_empty() || ev.at < self.since {
            return;
        }
        self.clock(ev.at);
        self.events += 1;
        self.changes.clear();
        let outcome = self.state.apply_event(ev, self.ttl, &mut self.changes);
        for f in outcome.fired {
            self.fired(f.activation);
        }
        self.settle();
    }

    /// The clock's tick, once a second has passed since the last.
    fn clock(&mut self, now: Timestamp) {
        if !self.ticking || now < self.next_tick {
            return;
        }
        self.next_tick = now.plus(Span::from_secs(1));
        self.changes.clear();
        let ticked = self.state.tick(now, &mut self.changes);
        for f in ticked.fired {
            self.fired(f.activation);
        }
        self.settle();
    }

    fn fired(&mut self, a: Arc<Activation>) {
        if let Some(t) = self.tallies.get_mut(&a.name) {
            t.add(&a);
        }
        if a.reset_time.is_none() {
            self.open.insert(a.id, a);
        }
    }

    /// Closes what the last step closed, counting its resolved notifications.
    fn settle(&mut self) {
        for c in self.changes.closed.drain(..) {
            let Some(a) = self.open.remove(&c.activation) else {
                continue;
            };
            let mut closed = Arc::unwrap_or_clone(a);
            closed.close(c.at, &c.why, &c.resolved);
            if let Some(t) = self.tallies.get_mut(&closed.name) {
                t.resolved(&closed);
            }
        }
    }

    /// The report at `until` (the clock ticks there last), with what the stored alerts did:
    /// their activations in the period (see [`Tally::of`]).
    pub fn finish(mut self, until: Timestamp, stored: &[Activation]) -> Report {
        self.ticking = true;
        self.next_tick = Timestamp(i64::MIN);
        self.clock(until);
        let mut stored_by: BTreeMap<&str, Vec<&Activation>> = BTreeMap::new();
        for a in stored {
            stored_by.entry(&a.name).or_default().push(a);
        }
        let alerts = self
            .tallies
            .into_iter()
            .map(|(name, would)| {
                let did = stored_by
                    .get(name.as_str())
                    .map(|v| Tally::of(v.iter().copied()));
                AlertReport { name, would, did }
            })
            .collect();
        Report {
            project: self.project,
            since: self.since,
            until,
            events: self.events,
            alerts,
        }
    }
}

/// What one side did for one alert: firings, per day and per entity, and its notifications.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    pub fired: u64,
    /// Firings per UTC day, by days since 1970 (answered as `2026-12-04`).
    #[serde(serialize_with = "dated")]
    pub by_day: BTreeMap<i64, u64>,
    /// Firings per entity.
    pub by_entity: FxHashMap<String, u64>,
    /// The first firings, in order.
    pub firings: Vec<Firing>,
    /// Per notification: sent (or to be sent) and held back, by why.
    pub notifications: BTreeMap<String, Counts>,
    /// Per notification: resolved notifications sent and held back.
    pub resolved: BTreeMap<String, Counts>,
}

/// One firing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Firing {
    pub at: Timestamp,
    pub entity: String,
    pub events: u64,
}

/// What became of one notification's deliveries.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counts {
    /// Sent, or (in the replay) to be sent.
    pub sent: u64,
    /// Sent and failed (recorded activations only).
    pub failed: u64,
    /// Held back, by why: `silenced`, `acknowledged`, `cooldown`, `not notified` (a resolved
    /// notification whose firing was held back).
    pub held_back: BTreeMap<&'static str, u64>,
}

impl Tally {
    /// The tally of recorded activations.
    pub fn of<'a>(activations: impl IntoIterator<Item = &'a Activation>) -> Tally {
        let mut t = Tally::default();
        let mut sorted: Vec<&Activation> = activations.into_iter().collect();
        sorted.sort_by_key(|a| (a.activation_time, a.id));
        for a in sorted {
            t.add(a);
            t.resolved(a);
        }
        t
    }

    fn add(&mut self, a: &Activation) {
        self.fired += 1;
        *self.by_day.entry(day_of(a.activation_time)).or_default() += 1;
        match self.by_entity.get_mut(a.entity_id.as_str()) {
            Some(n) => *n += 1,
            None => {
                self.by_entity.insert(a.entity_id.clone(), 1);
            }
        }
        if self.firings.len() < LISTED {
            self.firings.push(Firing {
                at: a.activation_time,
                entity: a.entity_id.clone(),
                events: a.number_of_events,
            });
        }
        for d in a.deliveries.iter().filter(|d| !d.resolved) {
            count(&mut self.notifications, d);
        }
    }

    fn resolved(&mut self, a: &Activation) {
        for d in a.deliveries.iter().filter(|d| d.resolved) {
            count(&mut self.resolved, d);
        }
    }
}

/// Days since 1970 (UTC) of a time.
fn day_of(t: Timestamp) -> i64 {
    t.0.div_euclid(86_400_000_000)
}

/// A day number (days since 1970, as [`Report::days`] gives them) as `2026-12-04`.
pub fn date(day: i64) -> String {
    Timestamp(day * 86_400_000_000)
        .to_datetime()
        .format("%Y-%m-%d")
        .to_string()
}

fn dated<S: serde::Serializer>(
    days: &BTreeMap<i64, u64>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_map(days.iter().map(|(d, n)| (date(*d), n)))
}

fn count(into: &mut BTreeMap<String, Counts>, d: &Delivery) {
    if !into.contains_key(&d.notification) {
        into.insert(d.notification.clone(), Counts::default());
    }
    let Some(c) = into.get_mut(&d.notification) else {
        return;
    };
    match d.status {
        DeliveryStatus::Pending | DeliveryStatus::Retrying | DeliveryStatus::Sent => c.sent += 1,
        DeliveryStatus::Failed => c.failed += 1,
        DeliveryStatus::Suppressed => *c.held_back.entry(held_back_by(d)).or_default() += 1,
    }
}

/// Why a delivery was held back, as a word.
fn held_back_by(d: &Delivery) -> &'static str {
    let why = d.error.as_deref().unwrap_or("");
    if why.starts_with("its firing was not notified") {
        "not notified"
    } else if d.silence.is_some() {
        "silenced"
    } else if why.starts_with("acknowledged") {
        "acknowledged"
    } else if why.starts_with("in cooldown") {
        "cooldown"
    } else {
        "other"
    }
}

/// What the candidates would have done, beside what the stored alerts did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub project: String,
    pub since: Timestamp,
    pub until: Timestamp,
    /// Events replayed.
    pub events: u64,
    pub alerts: Vec<AlertReport>,
}

/// One alert: what the candidate would have done, and what the stored alert of that name did
/// (None: no stored alert has fired under that name in the period).
#[derive(Debug, Clone, Serialize)]
pub struct AlertReport {
    pub name: String,
    pub would: Tally,
    pub did: Option<Tally>,
}

impl Report {
    /// The UTC days of the period, in order, as days since 1970.
    pub fn days(&self) -> Vec<i64> {
        (day_of(self.since)..=day_of(self.until)).collect()
    }
}

/// The report as text: per alert, the counts side by side, a timeline by day, the entities
/// that fired most and the notifications. What `tocsin backtest` prints.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Backtest of {} alert(s) of project {} over {} .. {}: {} events replayed",
            self.alerts.len(),
            self.project,
            self.since,
            self.until,
            self.events
        )?;
        writeln!(
            f,
            "(the rules start inactive at the start; the stored alerts were as they were then)"
        )?;
        let days = self.days();
        for a in &self.alerts {
            let did = a.did.as_ref().map_or(0, |t| t.fired);
            writeln!(f)?;
            writeln!(
                f,
                "{}: would fire {} time(s); the stored alert fired {did}",
                a.name, a.would.fired
            )?;
            let widest = days
                .iter()
                .map(|d| a.would.by_day.get(d).copied().unwrap_or(0))
                .max()
                .unwrap_or(0)
                .max(1);
            writeln!(f, "  {:<12} {:>7} {:>7}", "day (UTC)", "would", "stored")?;
            for d in &days {
                let would = a.would.by_day.get(d).copied().unwrap_or(0);
                let stored = a
                    .did
                    .as_ref()
                    .and_then(|t| t.by_day.get(d))
                    .copied()
                    .unwrap_or(0);
                let bar = "█".repeat(((would * 30).div_ceil(widest)) as usize);
                writeln!(f, "  {:<12} {would:>7} {stored:>7}  {bar}", date(*d))?;
            }
            let mut entities: Vec<(&String, &u64)> = a.would.by_entity.iter().collect();
            entities.sort_by(|x, y| y.1.cmp(x.1).then(x.0.cmp(y.0)));
            if !entities.is_empty() {
                let top: Vec<String> = entities
                    .iter()
                    .take(5)
                    .map(|(e, n)| format!("{e} ({n})"))
                    .collect();
                writeln!(f, "  entities: {}", top.join(", "))?;
            }
            for (name, c) in &a.would.notifications {
                let stored = a.did.as_ref().and_then(|t| t.notifications.get(name));
                writeln!(
                    f,
                    "  notify {name}: {}{}",
                    counts(c),
                    match stored {
                        Some(s) => format!("; stored: {}", counts(s)),
                        None => String::new(),
                    }
                )?;
            }
            for (name, c) in &a.would.resolved {
                writeln!(f, "  resolved {name}: {}", counts(c))?;
            }
            for fi in a.would.firings.iter().take(10) {
                writeln!(f, "    {}  {}  ({} events)", fi.at, fi.entity, fi.events)?;
            }
            if a.would.fired > 10 {
                writeln!(f, "    … and {} more", a.would.fired - 10)?;
            }
        }
        Ok(())
    }
}

fn counts(c: &Counts) -> String {
    let mut s = format!("{} sent", c.sent);
    if c.failed > 0 {
        s.push_str(&format!(", {} failed", c.failed));
    }
    if !c.held_back.is_empty() {
        let why: Vec<String> = c
            .held_back
            .iter()
            .map(|(w, n)| format!("{w} {n}"))
            .collect();
        s.push_str(&format!(
            ", {} held back ({})",
            c.held_back.values().sum::<u64>(),
            why.join(", ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::{EntityKind, EventKind};

    fn failure(entity: &str, at: i64) -> AcceptedEvent {
        AcceptedEvent {
            project: "p".into(),
            kind: EventKind::Failed,
            entity_kind: EntityKind::Job,
            entity_id: entity.into(),
            value_dict: Default::default(),
            at: Timestamp::from_secs(at),
            idempotency_key: None,
            chain: Vec::new(),
            message: None,
        }
    }

    fn alert(name: &str, count: u32, cooldown: Option<&str>) -> AlertConfig {
        serde_json::from_value(json!({
            "project": "p", "name": name, "severity": "high", "reset_policy": "auto",
            "cooldown_period": cooldown,
            "trigger": {"events": ["failed"]}, "criteria": {"count": count, "period": "1h"},
            "entities": {"kind": "job", "project": "p", "ids": ["*"]},
            "notifications": [{"notification": {"kind": "webhook", "name": "hook",
                "secret_params": {"url": "http://127.0.0.1:9/"}}, "cooldown_period": "2h"}]
        }))
        .expect("config")
    }

    #[test]
    fn candidates_replay_on_the_virtual_clock_beside_what_the_stored_alert_did() {
        let day = 86_400;
        let t0 = 1_800_000_000 - 1_800_000_000 % day;
        let mut b = Backtest::new(
            "p",
            vec![alert("loud", 1, None), alert("quiet", 3, Some("10m"))],
            Vec::new(),
            &AlertsSettings::default(),
            Timestamp::from_secs(t0),
        )
        .expect("compiles");
        for i in 0..6 {
            b.feed(&failure(&format!("j{}", i % 2), t0 + i * 600));
        }
        b.feed(&failure("j9", t0 + day + 60));
        let mut chained = failure("j9", t0 + day + 61);
        chained.chain = vec!["p/other".into()];
        b.feed(&chained);
        let stored = Tally::of([]);
        assert_eq!(stored.fired, 0);
        let report = b.finish(Timestamp::from_secs(t0 + 2 * day - 1), &[]);
        assert_eq!(report.events, 7, "the chained event is left out");
        let loud = &report.alerts[0];
        assert_eq!((loud.name.as_str(), loud.would.fired), ("loud", 7));
        assert_eq!(
            loud.would.by_day.values().copied().collect::<Vec<_>>(),
            [6, 1]
        );
        let hook = &loud.would.notifications["hook"];
        assert_eq!(
            hook.sent, 2,
            "one now, one after the notification's 2 h cooldown"
        );
        assert_eq!(hook.held_back.get("cooldown"), Some(&5));
        let quiet = &report.alerts[1];
        assert_eq!(
            quiet.would.fired, 2,
            "3 within the hour, again after its 10 m cooldown"
        );
        let text = report.to_string();
        assert!(
            text.contains("loud: would fire 7 time(s); the stored alert fired 0"),
            "{text}"
        );
        assert!(
            text.contains("notify hook: 2 sent, 5 held back (cooldown 5)"),
            "{text}"
        );
        assert_eq!(report.days().len(), 2);
    }
}
