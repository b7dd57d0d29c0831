//! Event intake, the one sequence: screen, claim keys, evaluate in rounds (see the module's
//! [order](super#the-one-order)), commit, keep the events for history.
//!
//! 1. Each event is screened: a custom kind that no alert of its project triggers on is
//!    refused (after one look at fresher configs, where the store's may be stale); an event
//!    whose key an earlier event of the batch carries is a duplicate.
//! 2. Keys are claimed: a key held already makes a duplicate. A store that claims in the
//!    commit of the counts (DynamoDB) finds held keys there.
//! 3. Rounds: the store loads what the round touches, the engine evaluates the round's events
//!    in order, the store commits the change set. A part lost to a concurrent writer is read
//!    again and evaluated again; a part whose write failed fails the events that touched it.
//!    Calculated events emitted by committed firings make the next round.
//! 4. The store keeps the events for history.

use rustc_hash::FxHashSet;

use super::{MAX_CONFLICTS, gave_up};
use crate::engine::intake::{self, Screen, key_expiry};
use crate::engine::{Changes, EventOutcome};
use crate::error::Error;
use crate::model::{AcceptedEvent, EventKind, Span};
use crate::store::units::{Claim, IntakeUnits, KeyClaim, RoundUnit, Verdict};

/// Evaluates `events` (in order of arrival) on `store`'s units: one outcome each. An event
/// whose writes failed gets the error; the others are unaffected.
pub async fn ingest<S: IntakeUnits>(
    store: &mut S,
    events: &[AcceptedEvent],
    ttl: Span,
) -> Vec<crate::Result<EventOutcome>> {
    let mut outcomes: Vec<crate::Result<EventOutcome>> =
        events.iter().map(|_| Ok(EventOutcome::default())).collect();
    if let Err(e) = store.begin().await {
        return events.iter().map(|_| Err(e.clone())).collect();
    }
    let admitted = screen(store, events, &mut outcomes).await;
    let claims = claims(events, &admitted, ttl, &mut outcomes);
    let verdicts = if claims.is_empty() {
        Vec::new()
    } else {
        store.claim(&claims).await
    };
    // What the commit claims (DynamoDB), and what is evaluated.
    let mut at_commit: Vec<KeyClaim<'_>> = Vec::new();
    for (claim, verdict) in claims.iter().zip(verdicts) {
        match verdict {
            Ok(Claim::Claimed) => {}
            Ok(Claim::AtCommit) => at_commit.push(*claim),
            Ok(Claim::Held) => mark(&mut outcomes[claim.index], |o| o.duplicate = true),
            Err(e) => outcomes[claim.index] = Err(e),
        }
    }
    let first: Vec<(usize, &AcceptedEvent)> = admitted
        .iter()
        .copied()
        .filter(|&i| matches!(&outcomes[i], Ok(o) if !o.duplicate))
        .map(|i| (i, &events[i]))
        .collect();
    let mut emitted = evaluate(store, &first, &at_commit, &mut outcomes).await;
    // The calculated events, round after round; they carry no key.
    while !emitted.is_empty() {
        let round: Vec<(usize, &AcceptedEvent)> = emitted.iter().map(|(i, e)| (*i, e)).collect();
        let next = evaluate(store, &round, &[], &mut outcomes).await;
        emitted = next;
    }
    let unrecorded = store.record(events, &outcomes).await;
    for (outcome, failed) in outcomes.iter_mut().zip(unrecorded) {
        if let Some(e) = failed {
            *outcome = Err(e);
        }
    }
    outcomes
}

/// Screens the batch: returns the events to evaluate, in order; marks the unknown kinds.
async fn screen<S: IntakeUnits>(
    store: &mut S,
    events: &[AcceptedEvent],
    outcomes: &mut [crate::Result<EventOutcome>],
) -> Vec<usize> {
    let mut admitted = Vec::with_capacity(events.len());
    let mut rechecked = false;
    for (i, ev) in events.iter().enumerate() {
        let custom = matches!(ev.kind, EventKind::Custom(_));
        let mut listens = !custom || store.listens(&ev.project, &ev.kind);
        if !listens && !rechecked {
            rechecked = true;
            match store.recheck().await {
                Ok(true) => listens = store.listens(&ev.project, &ev.kind),
                Ok(false) => {}
                Err(e) => {
                    outcomes[i] = Err(e);
                    continue;
                }
            }
        }
        match intake::screen(ev, || listens, false) {
            Screen::UnknownKind => mark(&mut outcomes[i], |o| o.unknown_kind = true),
            _ => admitted.push(i),
        }
    }
    admitted
}

/// The claims of the admitted events' keys; an event whose key an earlier event of the batch
/// carries is a duplicate (of that one), whatever becomes of its claim.
fn claims<'e>(
    events: &'e [AcceptedEvent],
    admitted: &[usize],
    ttl: Span,
    outcomes: &mut [crate::Result<EventOutcome>],
) -> Vec<KeyClaim<'e>> {
    let mut seen: FxHashSet<(&str, &str)> = FxHashSet::default();
    let mut claims = Vec::new();
    for &i in admitted {
        let ev = &events[i];
        let Some(key) = ev.idempotency_key.as_deref() else {
            continue;
        };
        if !seen.insert((&ev.project, key)) {
            mark(&mut outcomes[i], |o| o.duplicate = true);
            continue;
        }
        claims.push(KeyClaim {
            index: i,
            project: &ev.project,
            key,
            at: ev.at,
            expires: key_expiry(ev, ttl),
        });
    }
    claims
}

/// One round: the events in order, in as many parts as the store's commits hold (see
/// [`RoundUnit::too_large`]; consecutive parts evaluate exactly as the whole would). Returns the
/// calculated events the committed firings emit, for the next round.
async fn evaluate<S: IntakeUnits>(
    store: &mut S,
    events: &[(usize, &AcceptedEvent)],
    claims: &[KeyClaim<'_>],
    outcomes: &mut [crate::Result<EventOutcome>],
) -> Vec<(usize, AcceptedEvent)> {
    let mut emitted = Vec::new();
    let mut parts = std::collections::VecDeque::from([events]);
    while let Some(part) = parts.pop_front() {
        if part.is_empty() {
            continue;
        }
        // The claims of this part's events, in the same order.
        let mine: Vec<KeyClaim<'_>> = claims
            .iter()
            .filter(|c| part.iter().any(|(i, _)| *i == c.index))
            .copied()
            .collect();
        if !evaluate_part(store, part, &mine, outcomes, &mut emitted).await {
            let (first, second) = part.split_at(part.len() / 2);
            parts.push_front(second);
            parts.push_front(first);
        }
    }
    emitted
}

/// Loads, evaluates, commits (again for what was lost), and sums up each effect in the outcome
/// of the batch event it comes from. False when the part is too large for one commit, and
/// nothing was written.
async fn evaluate_part<S: IntakeUnits>(
    store: &mut S,
    events: &[(usize, &AcceptedEvent)],
    claims: &[KeyClaim<'_>],
    outcomes: &mut [crate::Result<EventOutcome>],
    emitted: &mut Vec<(usize, AcceptedEvent)>,
) -> bool {
    let fail_all = |outcomes: &mut [crate::Result<EventOutcome>], e: Error| {
        for &(i, _) in events {
            if outcomes[i].is_ok() {
                outcomes[i] = Err(e.clone());
            }
        }
    };
    let mut unit = match store.load(events, claims).await {
        Ok(unit) => unit,
        Err(e) => {
            fail_all(outcomes, e);
            return true;
        }
    };
    let mut effects = Vec::new();
    for _ in 0..=MAX_CONFLICTS {
        effects.clear();
        let mut resolving = run_round(&mut unit, events, &mut effects);
        let ids = unit.split().1;
        if ids.must_reserve() {
            let count = ids.taken();
            if let Err(e) = unit.reserve(count).await {
                fail_all(outcomes, e);
                return true;
            }
            effects.clear();
            resolving = run_round(&mut unit, events, &mut effects);
        }
        if let Err(e) = unit.commit(&effects).await {
            fail_all(outcomes, e);
            return true;
        }
        if unit.too_large() && events.len() > 1 {
            return false;
        }
        absorb(
            &mut unit,
            events,
            &mut effects,
            resolving,
            outcomes,
            emitted,
        );
        if !unit.lost() {
            return true;
        }
        if let Err(e) = unit.reload().await {
            fail_all(outcomes, e);
            return true;
        }
    }
    fail_all(outcomes, gave_up(S::BACKEND, "the alerts of one round"));
    true
}

/// The engine's round over the unit; whether a close it recorded has resolved notifications.
fn run_round<U: RoundUnit>(
    unit: &mut U,
    events: &[(usize, &AcceptedEvent)],
    effects: &mut Vec<intake::Effect>,
) -> bool {
    let (state, ids, changes) = unit.split();
    intake::round(
        state,
        events.iter().enumerate().map(|(j, (_, ev))| (j, *ev)),
        &mut || ids.take(),
        changes,
        |effect, _: &Changes| effects.push(effect),
    );
    std::mem::take(&mut changes.resolving)
}

/// Sums up the committed effects in the outcomes of the events they come from, and collects
/// what the firings emit; a failed part fails its events.
fn absorb<U: RoundUnit>(
    unit: &mut U,
    events: &[(usize, &AcceptedEvent)],
    effects: &mut Vec<intake::Effect>,
    resolving: bool,
    outcomes: &mut [crate::Result<EventOutcome>],
    emitted: &mut Vec<(usize, AcceptedEvent)>,
) {
    for (j, &(i, _)) in events.iter().enumerate() {
        match unit.event_verdict(j) {
            Some(Verdict::Duplicate) => mark(&mut outcomes[i], |o| o.duplicate = true),
            Some(Verdict::Redelivered) => mark(&mut outcomes[i], |o| {
                o.duplicate = true;
                o.redelivered = true;
            }),
            Some(Verdict::Failed(e)) => outcomes[i] = Err(e),
            _ => mark(&mut outcomes[i], |o| o.resolved |= resolving),
        }
    }
    let verdicts: Vec<Verdict> = effects
        .iter()
        .map(|e| unit.verdict(e.origin, e.alert))
        .collect();
    let activations = &unit.split().2.activations;
    for (effect, verdict) in effects.drain(..).zip(verdicts) {
        let i = events[effect.origin].0;
        match verdict {
            Verdict::Done => {
                if let Ok(o) = &mut outcomes[i]
                    && let Some(calculated) = o.absorb(effect, activations)
                {
                    emitted.push((i, calculated));
                }
            }
            Verdict::Duplicate | Verdict::Redelivered => {
                mark(&mut outcomes[i], |o| o.duplicate = true)
            }
            Verdict::Failed(e) => outcomes[i] = Err(e),
            Verdict::Again => {}
        }
    }
}

/// Changes an outcome that has not failed.
fn mark(outcome: &mut crate::Result<EventOutcome>, f: impl FnOnce(&mut EventOutcome)) {
    if let Ok(o) = outcome {
        f(o);
    }
}
