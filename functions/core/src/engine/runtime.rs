//! The alert state machine: what an alert's runtime state becomes when an event arrives, when
//! it fires, when it is reset and when its config changes. Pure functions of values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::compiled::Rule;
use crate::model::{
    AcceptedEvent, Acknowledgement, AlertState, Delivery, DeliveryStatus, ResetPolicy, Silence,
    Silenced, Timestamp,
};

/// Why an auto alert's activation closes at the end of its cooldown.
pub const COOLDOWN_ENDED: &str = "its cooldown ended";

/// Why the activation of an alert that [holds while sustained](Rule::holds_while_sustained)
/// closes: an event about its entity failed the filter.
pub const CONDITION_STOPPED: &str = "its condition stopped holding";

/// What changes about an alert as events arrive; the config is in [`Rule`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    pub state: AlertState,
    /// Number of activations so far; kept across resets.
    pub count: u64,
    /// With an alert-level cooldown: the alert ignores events and stays active until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_until: Option<Timestamp>,
    /// The newest activation, which a reset stamps with its `reset_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activation: Option<u64>,
    /// When the newest activation fired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fired: Option<Timestamp>,
    /// Notifications in cooldown: name -> until when they are suppressed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub notification_cooldowns: BTreeMap<String, Timestamp>,
    /// The activation whose message started each notification's cooldown: tentatively when it
    /// fired, for good once its message was sent (see [`Runtime::delivered`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cooldown_from: BTreeMap<String, u64>,
    /// Set by an acknowledgement, cleared by a reset: meanwhile activations notify no one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<Box<Acknowledgement>>,
    /// Absence alerts: when the alert was created or last reset, from which the entities that
    /// must report and never did are awaited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub armed: Option<Timestamp>,
    /// Absence alerts: the entities whose absence fired, with the activation that the next
    /// event about them closes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub absent: BTreeMap<String, u64>,
    /// Alerts that [hold while sustained](Rule::holds_while_sustained): the windows (the
    /// entity, or `""` for a shared window) whose condition holds since it fired, with the
    /// activation that the first failing event closes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub held: BTreeMap<String, u64>,
}

/// The activation a reset (or a cooldown's end) closes, when and why, and the resolved
/// notifications (`send_resolved`) to deliver for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub activation: u64,
    pub at: Timestamp,
    /// "reset by dana", "its cooldown ended", ...: recorded on the activation and said by its
    /// resolved notifications.
    pub why: String,
    pub resolved: Vec<Delivery>,
}

/// Deliveries to add to an open activation: what an acknowledgement tells the channels that
/// take acknowledgements (PagerDuty, Opsgenie).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Noted {
    pub activation: u64,
    pub at: Timestamp,
    pub deliveries: Vec<Delivery>,
}

impl Closed {
    /// `rule`'s activation `activation` closes at `at` for `why`: with a pending resolved
    /// delivery for each notification that has `send_resolved`.
    pub fn new(rule: &Rule, activation: u64, at: Timestamp, why: impl Into<String>) -> Closed {
        let resolved = rule
            .config
            .notifications
            .iter()
            .filter(|n| n.send_resolved)
            .map(|n| Delivery::pending(&n.notification, true, false))
            .collect();
        Closed {
            activation,
            at,
            why: why.into(),
            resolved,
        }
    }
}

impl Runtime {
    /// The state as a reader at `now` sees it: an auto alert whose cooldown is over is inactive
    /// even if no event has arrived since to settle it.
    pub fn state_at(&self, now: Timestamp) -> AlertState {
        match self.cooldown_until {
            Some(until) if self.state == AlertState::Active && now >= until => AlertState::Inactive,
            _ => self.state,
        }
    }

    /// Whether an event at `now` counts towards the alert's window. A manual alert that is
    /// active ignores events until reset; an auto alert in cooldown ignores them until the
    /// cooldown ends, and then settles to inactive (returning the activation that closes).
    pub fn admit(&mut self, rule: &Rule, now: Timestamp) -> (bool, Option<Closed>) {
        if self.state == AlertState::Inactive {
            return (true, None);
        }
        match self.cooldown_until {
            Some(until) if now >= until => {
                let closed = self
                    .last_activation
                    .map(|activation| Closed::new(rule, activation, until, COOLDOWN_ENDED));
                self.state = AlertState::Inactive;
                self.cooldown_until = None;
                (true, closed)
            }
            _ => (false, None),
        }
    }

    /// For an alert that [holds while sustained](Rule::holds_while_sustained), before an
    /// event about window `held` (its entity, or `""`) whose filter `passes` is counted: whether
    /// it counts (its window's condition is not holding since a firing), and the activation
    /// that closes because the condition stopped holding. While it holds, passing events
    /// change nothing.
    pub fn hold(
        &mut self,
        rule: &Rule,
        held: &str,
        now: Timestamp,
        passes: bool,
    ) -> (bool, Option<Closed>) {
        if !self.held.contains_key(held) {
            return (true, None);
        }
        if passes {
            return (false, None);
        }
        let closed = self
            .held
            .remove(held)
            .map(|id| Closed::new(rule, id, now, CONDITION_STOPPED));
        if self.held.is_empty() && self.absent.is_empty() {
            self.state = AlertState::Inactive;
        }
        (false, closed)
    }

    /// The alert fires at `now` with activation `activation`, on the window `held` (the
    /// entity, or `""` for a shared window). Returns whether the activation closes at once (auto
    /// reset without cooldown), in which case its `reset_time` is `now`.
    pub fn fire(&mut self, rule: &Rule, activation: u64, now: Timestamp, held: &str) -> bool {
        self.count += 1;
        self.last_activation = Some(activation);
        self.last_fired = Some(now);
        if rule.holds_while_sustained() {
            self.state = AlertState::Active;
            self.held.insert(held.to_owned(), activation);
            return false;
        }
        match (rule.config.reset_policy, rule.cooldown) {
            (ResetPolicy::Manual, _) => {
                self.state = AlertState::Active;
                false
            }
            (ResetPolicy::Auto, Some(cooldown)) => {
                self.state = AlertState::Active;
                self.cooldown_until = Some(now.plus(cooldown));
                false
            }
            (ResetPolicy::Auto, None) => {
                self.state = AlertState::Inactive;
                true
            }
        }
    }

    /// Which notifications of `rule` an activation fired by `ev` sends, and which it holds
    /// back, through named stages as Alertmanager's notify pipeline: acknowledgement (all of
    /// them while the alert is acknowledged), silence (all while a silence of `silences`
    /// matches), cooldown (each while its own cooldown runs); a held-back one is recorded as
    /// suppressed, with who and why. What passes goes to the notifier's stages: send with
    /// retry, then record. Starts the cooldowns of those it sends (tentative until sent); a
    /// held-back notification starts none, so the first firing after a silence notifies.
    pub fn plan_deliveries(
        &mut self,
        rule: &Rule,
        ev: &AcceptedEvent,
        silences: &[Silence],
    ) -> Vec<Delivery> {
        let now = ev.at;
        self.notification_cooldowns.retain(|_, until| *until > now);
        let cooldowns = &self.notification_cooldowns;
        self.cooldown_from
            .retain(|name, _| cooldowns.contains_key(name));
        let target = Silenced {
            alert: rule.name(),
            entity: &ev.entity_id,
            severity: rule.config.severity,
            event_kind: &ev.kind,
        };
        let silence = silences
            .iter()
            .find_map(|s| s.silences(&target, now).map(|until| (s, until)));
        rule.config
            .notifications
            .iter()
            .map(|n| {
                let name = &n.notification.name;
                let pending = Delivery::pending(&n.notification, false, false);
                // The stages, in order: the first that holds the message back says why.
                let held = self
                    .acknowledgement_stage(now)
                    .or_else(|| silence_stage(silence))
                    .or_else(|| self.cooldown_stage(name));
                if let Some(held) = held {
                    return held.suppress(pending);
                }
                if let Some(cooldown) = rule.notification_cooldowns.get(name) {
                    // Tentative until its message is sent (see `delivered`).
                    self.notification_cooldowns
                        .insert(name.clone(), now.plus(*cooldown));
                    if let Some(activation) = self.last_activation {
                        self.cooldown_from.insert(name.clone(), activation);
                    }
                }
                pending
            })
            .collect()
    }

    /// Stage one: an acknowledged alert sends nothing until it is reset.
    fn acknowledgement_stage(&self, now: Timestamp) -> Option<HeldBack> {
        self.acknowledged.as_ref().map(|ack| HeldBack {
            why: format!("acknowledged by {} at {}", ack.by, ack.at),
            until: Some(now),
            silence: None,
        })
    }

    /// Stage three: a notification sends at most once per its `cooldown_period`.
    fn cooldown_stage(&self, name: &str) -> Option<HeldBack> {
        self.notification_cooldowns.get(name).map(|until| HeldBack {
            why: format!("in cooldown until {until}"),
            until: Some(*until),
            silence: None,
        })
    }

    /// What became of the message of notification `name` of `activation`: sent at `sent`, or
    /// given up (None). A notification's cooldown runs from a message that was sent: sent, it
    /// starts then; given up, the cooldown it started when it fired is lifted, so that the
    /// next firing notifies. Whether the state changed.
    pub fn delivered(
        &mut self,
        rule: &Rule,
        name: &str,
        activation: u64,
        sent: Option<Timestamp>,
    ) -> bool {
        let Some(cooldown) = rule.notification_cooldowns.get(name) else {
            return false;
        };
        let started_by_it = self.cooldown_from.get(name) == Some(&activation);
        match sent {
            Some(at) => {
                let until = at.plus(*cooldown);
                if self.notification_cooldowns.get(name) == Some(&until) && started_by_it {
                    return false;
                }
                self.notification_cooldowns.insert(name.to_owned(), until);
                self.cooldown_from.insert(name.to_owned(), activation);
                true
            }
            None if started_by_it => {
                self.notification_cooldowns.remove(name);
                self.cooldown_from.remove(name);
                true
            }
            None => false,
        }
    }

    /// The activations still open: the newest while the alert is active, and every open
    /// absence and held condition.
    pub fn open_activations(&self, now: Timestamp) -> Vec<u64> {
        let mut open: Vec<u64> = self
            .absent
            .values()
            .chain(self.held.values())
            .copied()
            .collect();
        if self.state_at(now) == AlertState::Active
            && let Some(last) = self.last_activation
        {
            open.push(last);
        }
        open.sort_unstable();
        open.dedup();
        open
    }

    /// Someone acknowledges the alert at `now`. Only an active alert can be acknowledged (an
    /// inactive one has nothing to take in hand); acknowledging again records the newer one.
    /// Until a reset, activations record their notifications as suppressed, so that an auto
    /// alert that fires again after its cooldown does not page the people already on it.
    pub fn acknowledge(&mut self, by: &str, now: Timestamp) -> Result<(), crate::Error> {
        if self.state_at(now) != AlertState::Active {
            return Err(crate::Error::bad(
                "Only an active alert can be acknowledged; this one is inactive",
            ));
        }
        self.acknowledged = Some(Box::new(Acknowledgement {
            by: by.to_owned(),
            at: now,
        }));
        Ok(())
    }

    /// A reset for `why` ("reset by dana"): inactive, cooldown over, acknowledgement cleared,
    /// count kept. Returns the activations it closes: the newest, if the alert was active, and
    /// every open absence (resetting an inactive alert closes nothing).
    pub fn reset(&mut self, rule: &Rule, now: Timestamp, why: &str) -> Vec<Closed> {
        let closed = match (self.state, self.cooldown_until) {
            // The cooldown already ended on its own: the activation closed then.
            (AlertState::Active, Some(until)) if now >= until => Some((until, COOLDOWN_ENDED)),
            (AlertState::Active, _) => Some((now, why)),
            (AlertState::Inactive, _) => None,
        };
        self.state = AlertState::Inactive;
        self.cooldown_until = None;
        self.acknowledged = None;
        let mut all: Vec<Closed> = closed
            .and_then(|(at, why)| {
                self.last_activation
                    .map(|activation| Closed::new(rule, activation, at, why))
            })
            .into_iter()
            .collect();
        // An absence alert starts watching afresh: what is still missing fires again one span
        // from now, not at once.
        if rule.absence.is_some() {
            self.armed = Some(now);
        }
        // Every activation still open per entity (absences, held conditions) closes too.
        let open = std::mem::take(&mut self.absent)
            .into_values()
            .chain(std::mem::take(&mut self.held).into_values());
        for id in open {
            if self.last_activation != Some(id) {
                all.push(Closed::new(rule, id, now, why));
            }
        }
        all
    }

    /// The activation whose cooldown ended by `now`, closed: what a tick finds due when no
    /// event came to settle the alert (see [`Runtime::admit`]).
    pub fn settle(&mut self, rule: &Rule, now: Timestamp) -> Option<Closed> {
        match self.cooldown_until {
            Some(until) if self.state == AlertState::Active && now >= until => {
                self.admit(rule, now).1
            }
            _ => None,
        }
    }

    /// Whether storing `new` over `old` must reset this state: a change in what decides firing,
    /// an active alert moved from manual to auto, or an explicit `force_reset`.
    pub fn update_resets(&self, old: &Rule, new: &Rule, force: bool, now: Timestamp) -> bool {
        let manual_to_auto = old.config.reset_policy == ResetPolicy::Manual
            && new.config.reset_policy == ResetPolicy::Auto
            && self.state_at(now) == AlertState::Active;
        force || manual_to_auto || old.differs_in_behaviour(new)
    }
}

/// Why a stage of [`Runtime::plan_deliveries`] held a notification back, and until when.
struct HeldBack {
    why: String,
    until: Option<Timestamp>,
    silence: Option<String>,
}

impl HeldBack {
    /// The delivery, recorded as suppressed for this reason.
    fn suppress(self, pending: Delivery) -> Delivery {
        Delivery {
            status: DeliveryStatus::Suppressed,
            error: Some(self.why),
            at: self.until,
            silence: self.silence,
            ..pending
        }
    }
}

/// Stage two: a matching silence holds every notification back until it ends.
fn silence_stage(silence: Option<(&Silence, Timestamp)>) -> Option<HeldBack> {
    silence.map(|(silence, until)| HeldBack {
        why: silence.reason(until),
        until: crate::model::finite(until),
        silence: Some(silence.id.clone()),
    })
}
