//! Event intake, decided once: what an accepted event does to the alerts it matches, and what
//! time passing does to an alert.
//!
//! The decisions are here; the sequence that asks them, in one order for every store, is
//! [`crate::ops::ingest`] and [`crate::ops::tick`]:
//! 1. [`screen`]: a custom kind nothing listens to is refused, a held idempotency key makes a
//!    duplicate;
//! 2. per matched alert, [`round`]: whether the event concerns it (kind, filter), whether the
//!    alert admits it (manual and active, in cooldown), counting it in its window, and firing;
//! 3. [`settle`]: a tick's end of a cooldown, and the absences that came due.
//!
//! Each decision is recorded in a [`Changes`] that names exactly what changed, for the store
//! to commit, and summed up per event in an [`EventOutcome`]. Nothing here does I/O or reads
//! the clock: time comes from the event, which is what makes `tocsin test` and a replay exact.

use std::sync::Arc;

use super::{Changes, Runtime, WindowChange, WindowSource, concerns, count_in_window, fire};
use crate::compiled::Rule;
use crate::model::{AcceptedEvent, Activation, EventKind, Silence, Span, Timestamp};

/// An activation, with the rule it fired for (what the notifier needs to deliver it). Shared,
/// so that handing it to a dispatcher and answering with it costs no copy.
#[derive(Debug, Clone)]
pub struct Fired {
    pub activation: Arc<Activation>,
    pub rule: Arc<Rule>,
}

/// What an event did.
#[derive(Debug, Clone, Default)]
pub struct EventOutcome {
    /// Its idempotency key was seen before, or its queue message counted it before: it was
    /// not counted again.
    pub duplicate: bool,
    /// Its queue message was delivered before and counted it then (a redelivery), as opposed
    /// to another event holding its key.
    pub redelivered: bool,
    /// Alerts whose window it was counted in (calculated events it caused included).
    pub counted: usize,
    pub fired: Vec<Fired>,
    /// The event's kind is a custom one that no alert of its project triggers on: it was
    /// refused (not counted, its idempotency key not claimed), for the caller to answer 400.
    pub unknown_kind: bool,
    /// It closed an activation that has resolved notifications to deliver (in the outbox).
    pub resolved: bool,
}

/// Whether an event is evaluated at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// A custom kind that no alert of the project triggers on: most likely a typo, refused
    /// rather than counted nowhere.
    UnknownKind,
    /// Its idempotency key is held: counted before.
    Duplicate,
    Evaluate,
}

/// Screens an event before it is evaluated. `listens`: whether an alert of the event's project
/// triggers on its kind (asked only for a custom kind); `key_held`: whether its idempotency key
/// is held (see [`key_expiry`]).
pub fn screen(ev: &AcceptedEvent, listens: impl FnOnce() -> bool, key_held: bool) -> Screen {
    if matches!(ev.kind, EventKind::Custom(_)) && !listens() {
        Screen::UnknownKind
    } else if key_held {
        Screen::Duplicate
    } else {
        Screen::Evaluate
    }
}

/// Until when an evaluated event holds its idempotency key: `ttl` after the event. A key held
/// until `expires` is held for an event at `at` while `expires > at`.
pub fn key_expiry(ev: &AcceptedEvent, ttl: Span) -> Timestamp {
    ev.at.plus(ttl)
}

/// One matched alert as the intake sees it: the rule that decides, and the state it changes.
pub struct AlertSlot<'a, W: WindowSource> {
    pub rule: &'a Arc<Rule>,
    pub runtime: &'a mut Runtime,
    pub windows: &'a mut W,
    /// The silences of the alert's project, in effect or not: a firing checks them.
    pub silences: &'a [Silence],
}

/// The state a round runs on: the store's own (memory, embedded) or working copies of the
/// alerts and windows the round touches (DynamoDB).
pub trait IntakeState {
    /// Where an alert's windows are.
    type Windows: WindowSource;
    /// Calls `f` with the id and the slot of each alert that `ev`, the round's event `event`,
    /// matches, in a stable order. A state may leave out an alert the event was counted for
    /// before (a redelivery), or that was committed already (after a conflict elsewhere).
    fn each_match(
        &mut self,
        event: usize,
        ev: &AcceptedEvent,
        f: impl FnMut(u64, AlertSlot<'_, Self::Windows>),
    );
}

/// Why an event that the matcher matched to an alert was not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// A custom kind about another kind of entity than the alert watches.
    EntityKind,
    /// The `where` filter fails (and no sustained criterion needs the failing events).
    Filter,
    /// A manual alert that is active ignores events until someone resets it.
    UntilReset,
    /// An auto alert in its cooldown ignores events until then.
    Cooling(Timestamp),
    /// A sustained condition holds since it fired: passing events change nothing.
    Holding,
    /// The event failed a sustained condition that held since it fired: the activation
    /// closed ("its condition stopped holding"), and nothing was counted.
    Stopped,
}

impl std::fmt::Display for Ignored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ignored::EntityKind => write!(f, "the event is about another kind of entity"),
            Ignored::Filter => write!(f, "the `where` filter fails"),
            Ignored::UntilReset => {
                write!(
                    f,
                    "the alert is active and resets manually: ignored until reset"
                )
            }
            Ignored::Cooling(until) => write!(f, "the alert is in its cooldown until {until}"),
            Ignored::Holding => write!(
                f,
                "the condition holds since the alert fired: nothing changes until it stops"
            ),
            Ignored::Stopped => write!(f, "the condition stopped holding: its activation closes"),
        }
    }
}

/// What one event did to one alert it matched.
#[derive(Debug)]
pub enum Step {
    /// It does not concern the alert, or the alert does not admit it; why.
    Ignored(Ignored),
    /// Counted in the alert's window.
    Counted,
    /// Counted, and the criteria were met: the alert fired. The activation is the change set's
    /// `activations[activation]` (kept once, not copied around).
    Fires {
        activation: usize,
        rule: Arc<Rule>,
        /// The calculated event the firing emits, for the next round.
        emits: Option<Box<AcceptedEvent>>,
    },
}

/// A step that changed something, of the event at `origin` in its round.
#[derive(Debug)]
pub struct Effect {
    pub origin: usize,
    pub alert: u64,
    pub step: Step,
}

/// Evaluates one event against one alert: concerns, admit, count, fire. Records what changed.
/// (`explain` runs it on copies of the state, to say why.)
pub(super) fn evaluate(
    alert: u64,
    slot: AlertSlot<'_, impl WindowSource>,
    ev: &AcceptedEvent,
    next_id: &mut impl FnMut() -> u64,
    changes: &mut Changes,
) -> Step {
    let AlertSlot {
        rule,
        runtime,
        windows,
        silences,
    } = slot;
    let passes = match concerns(rule, ev) {
        Ok(passes) => passes,
        Err(why) => return Step::Ignored(why),
    };
    if rule.absence.is_some() {
        if !passes {
            return Step::Ignored(Ignored::Filter);
        }
        super::absence::seen(alert, rule, runtime, windows, ev, changes);
        return Step::Counted;
    }
    let (counts, closed) = if rule.holds_while_sustained() {
        runtime.hold(rule, super::held_key(rule, ev), ev.at, passes)
    } else {
        runtime.admit(rule, ev.at)
    };
    if let Some(closed) = closed {
        changes.resolving |= !closed.resolved.is_empty();
        changes.closed.push(closed);
        changes.runtimes.push(alert);
    }
    if !counts {
        let why = match (rule.holds_while_sustained(), passes, runtime.cooldown_until) {
            (true, true, _) => Ignored::Holding,
            (true, false, _) => Ignored::Stopped,
            (false, _, Some(until)) => Ignored::Cooling(until),
            (false, _, None) => Ignored::UntilReset,
        };
        return Step::Ignored(why);
    }
    let met = count_in_window(rule, windows.window_mut(&ev.entity_id), ev, passes);
    let entity = rule
        .per_entity
        .then(|| Box::<str>::from(ev.entity_id.as_str()));
    changes.windows.push(WindowChange::Put { alert, entity });
    let Some(in_window) = met else {
        return Step::Counted;
    };
    let (activation, emits) = fire(rule, runtime, silences, ev, next_id(), in_window);
    changes.runtimes.push(alert);
    // Most events fire at most once: room for one activation, not the four a first push
    // reserves (a request that large also costs the allocator a consolidation pass).
    changes.activations.reserve_exact(1);
    changes.activations.push(Arc::new(activation));
    Step::Fires {
        activation: changes.activations.len() - 1,
        rule: rule.clone(),
        emits: emits.map(Box::new),
    }
}

/// One round: each event, in order, against every alert it matches in `state`. `next_id`
/// gives each firing its activation id. `effect` gets every step that counted or fired, with
/// the change set so far (which holds the activations); the events that firings emit are in
/// them, for the caller's next round.
pub fn round<'e>(
    state: &mut impl IntakeState,
    events: impl IntoIterator<Item = (usize, &'e AcceptedEvent)>,
    next_id: &mut impl FnMut() -> u64,
    changes: &mut Changes,
    mut effect: impl FnMut(Effect, &Changes),
) {
    for (origin, ev) in events {
        state.each_match(origin, ev, |alert, slot| {
            match evaluate(alert, slot, ev, next_id, changes) {
                Step::Ignored(_) => {}
                step => effect(
                    Effect {
                        origin,
                        alert,
                        step,
                    },
                    changes,
                ),
            }
        });
    }
}

impl EventOutcome {
    /// Adds one effect to the outcome of the event that caused it (`activations`: the change
    /// set's, which the effect refers to); returns the calculated event it emits, for the next
    /// round.
    pub fn absorb(
        &mut self,
        effect: Effect,
        activations: &[Arc<Activation>],
    ) -> Option<AcceptedEvent> {
        match effect.step {
            Step::Ignored(_) => None,
            Step::Counted => {
                self.counted += 1;
                None
            }
            Step::Fires {
                activation,
                rule,
                emits,
            } => {
                self.counted += 1;
                if let Some(a) = activations.get(activation) {
                    self.fired.reserve_exact(1);
                    self.fired.push(Fired {
                        activation: a.clone(),
                        rule,
                    });
                }
                emits.map(|e| *e)
            }
        }
    }
}

/// What time passing did: activations closed at the end of their cooldown, and absences that
/// came due, with no event. Pure like the intake: `now` is given (the server's clock, a
/// schedule's, or `tocsin test`'s virtual one), and each is stamped with its own time (the
/// cooldown's end, the absence's deadline), not with `now`.
#[derive(Debug, Clone, Default)]
pub struct Ticked {
    pub closed: usize,
    /// Some closed activation has resolved notifications to deliver.
    pub resolved: bool,
    /// Absences that fired.
    pub fired: Vec<Fired>,
    /// Alerts the tick could not settle (a failed write), each with why: the others were
    /// settled all the same, and the next tick tries these again.
    pub failed: Vec<(u64, crate::Error)>,
}

impl Ticked {
    /// Adds what another alert's settling did.
    pub fn add(&mut self, other: Ticked) {
        self.closed += other.closed;
        self.resolved |= other.resolved;
        self.fired.extend(other.fired);
        self.failed.extend(other.failed);
    }
}

/// Whether an auto alert's cooldown has ended by `now` with its activation still open.
pub fn cooldown_due(runtime: &Runtime, now: Timestamp) -> bool {
    runtime.state == crate::model::AlertState::Active
        && runtime.cooldown_until.is_some_and(|until| until <= now)
}

/// Whether a tick at `now` has anything to do for this alert: a cooldown's end, or an absence.
pub fn due(rule: &Rule, runtime: &Runtime, windows: &super::Windows, now: Timestamp) -> bool {
    cooldown_due(runtime, now)
        || (rule.absence.is_some() && !super::absence::due(rule, runtime, windows, now).is_empty())
}

/// The earliest time a tick can find this alert due by time alone, if any: the end of an
/// active auto alert's cooldown, or the earliest deadline of its absences. A store that looks
/// only at the alerts whose time has come keeps this per alert, and lowers it as events change
/// them (a new cooldown, a window's new absence deadline).
pub fn next_due(rule: &Rule, runtime: &Runtime, windows: &super::Windows) -> Option<Timestamp> {
    let cooldown = runtime
        .cooldown_until
        .filter(|_| runtime.state == crate::model::AlertState::Active);
    let absence = super::absence::earliest(rule, runtime, windows);
    match (cooldown, absence) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What a tick at `now` does to one alert: the end of its cooldown closes its activation, and
/// the absences of `candidates` (entities, each with when it was last seen) that came due fire,
/// at most `max_fired` of them (oldest first; the rest at the next call).
#[allow(clippy::too_many_arguments)]
pub fn settle(
    alert: u64,
    rule: &Arc<Rule>,
    runtime: &mut Runtime,
    candidates: &[(String, Option<Timestamp>)],
    silences: &[Silence],
    now: Timestamp,
    max_fired: usize,
    next_id: &mut impl FnMut() -> u64,
    changes: &mut Changes,
) -> Ticked {
    let mut ticked = Ticked::default();
    if let Some(closed) = runtime.settle(rule, now) {
        ticked.closed += 1;
        ticked.resolved |= !closed.resolved.is_empty();
        changes.closed.push(closed);
        changes.runtimes.push(alert);
    }
    let candidates = candidates.iter().map(|(e, last)| (e.as_str(), *last));
    let mut due = super::absence::due_among(rule, runtime, candidates, now);
    due.truncate(max_fired);
    ticked.fired = super::absence::fire_due(alert, rule, runtime, silences, due, next_id, changes);
    ticked
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engine::Window;
    use crate::model::{AlertConfig, EntityKind};
    use crate::settings::AlertsSettings;

    /// One alert and its one window, matched by every event.
    struct One {
        rule: Arc<Rule>,
        runtime: Runtime,
        window: Window,
    }

    impl IntakeState for One {
        type Windows = Window;
        fn each_match(
            &mut self,
            _event: usize,
            _ev: &AcceptedEvent,
            mut f: impl FnMut(u64, AlertSlot<'_, Window>),
        ) {
            f(
                7,
                AlertSlot {
                    rule: &self.rule,
                    runtime: &mut self.runtime,
                    windows: &mut self.window,
                    silences: &[],
                },
            );
        }
    }

    fn failed(at: i64) -> AcceptedEvent {
        AcceptedEvent {
            project: "p".into(),
            kind: EventKind::Failed,
            entity_kind: EntityKind::Job,
            entity_id: "j1".into(),
            value_dict: Default::default(),
            at: Timestamp::from_secs(at),
            idempotency_key: None,
            chain: Vec::new(),
            message: None,
        }
    }

    #[test]
    fn a_round_says_what_each_event_did_and_exactly_what_changed() {
        let config: AlertConfig = serde_json::from_value(json!({
            "project": "p", "name": "a", "severity": "high", "reset_policy": "manual",
            "trigger": {"events": ["failed"]}, "criteria": {"count": 2, "period": "1h"},
            "entities": {"kind": "job", "project": "p", "ids": ["*"]}}))
        .expect("config");
        let rule = crate::compiled::compile(config, "p", "a", &AlertsSettings::default())
            .expect("compiles");
        let mut state = One {
            rule: Arc::new(rule),
            runtime: Runtime::default(),
            window: Window::default(),
        };
        let (one, two, three) = (failed(10), failed(20), failed(30));
        let mut changes = Changes::default();
        let mut steps = Vec::new();
        let mut next = 100;
        round(
            &mut state,
            [(0, &one), (1, &two), (2, &three)],
            &mut || {
                next += 1;
                next
            },
            &mut changes,
            |e, _| steps.push(e),
        );
        let kinds: Vec<_> = steps
            .iter()
            .map(|e| match &e.step {
                Step::Ignored(_) => "ignored",
                Step::Counted => "counted",
                Step::Fires { .. } => "fires",
            })
            .collect();
        // The third event is not an effect: a manual alert that is active ignores events.
        assert_eq!(kinds, ["counted", "fires"]);
        assert_eq!((steps[1].origin, steps[1].alert), (1, 7));
        assert_eq!(changes.activations.len(), 1);
        assert_eq!(changes.activations[0].id, 101);
        assert_eq!(changes.activations[0].number_of_events, 2);
        assert_eq!(changes.runtimes, [7]);
        let put = WindowChange::Put {
            alert: 7,
            entity: None,
        };
        assert_eq!(changes.windows, [put.clone(), put]);
        let mut outcome = EventOutcome::default();
        for e in steps {
            assert!(outcome.absorb(e, &changes.activations).is_none());
        }
        assert_eq!(outcome.counted, 2);
        assert_eq!(outcome.fired[0].activation.id, 101);
    }

    #[test]
    fn screening_refuses_unknown_custom_kinds_before_duplicates() {
        let mut ev = failed(0);
        assert_eq!(
            screen(&ev, || false, false),
            Screen::Evaluate,
            "built-in kind"
        );
        assert_eq!(screen(&ev, || true, true), Screen::Duplicate);
        ev.kind = "job-cpu".parse().expect("custom kind");
        assert_eq!(screen(&ev, || false, true), Screen::UnknownKind);
        assert_eq!(screen(&ev, || true, false), Screen::Evaluate);
    }
}
