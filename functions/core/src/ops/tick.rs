//! Time passing, the one sequence: the store says which alerts may be due, and each is loaded,
//! settled by the engine ([`intake::settle`]: the end of a cooldown, the absences that came
//! due) and committed, read again when a concurrent writer (an event, another tick) changed it
//! first. Each alert is settled on its own: one that fails is reported in
//! [`Ticked::failed`] and the others are settled all the same.

use super::MAX_CONFLICTS;
use crate::engine::Ticked;
use crate::engine::intake;
use crate::error::Result;
use crate::model::Timestamp;
use crate::store::units::{DueState, DueUnit, TickUnits};

/// Settles every alert of `store` that is due by `now`.
pub async fn tick<S: TickUnits>(store: &mut S, now: Timestamp) -> Result<Ticked> {
    let due = store.due(now).await?;
    let mut ticked = Ticked::default();
    for alert in due {
        match settle_one(store, alert, now).await {
            Ok(t) => ticked.add(t),
            Err(e) => ticked.failed.push((alert, e)),
        }
    }
    Ok(ticked)
}

/// Settles one alert: as many commits as its absences need (each fires at most what one commit
/// holds), each read again after losing to a concurrent writer.
async fn settle_one<S: TickUnits>(store: &mut S, alert: u64, now: Timestamp) -> Result<Ticked> {
    let Some(mut unit) = store.load_due(alert, now).await? else {
        return Ok(Ticked::default());
    };
    let mut ticked = Ticked::default();
    let mut conflicts = 0;
    loop {
        let mut pass = run(&mut unit, now);
        let ids = unit.split().1;
        if ids.must_reserve() {
            let count = ids.taken();
            unit.reserve(count).await?;
            pass = run(&mut unit, now);
        }
        // Committed even when nothing changed: the store may keep what it looked at (when the
        // alert may come due next, what its due index no longer needs).
        if unit.commit().await? {
            let more = pass.fired.len() >= unit.max_fired();
            ticked.add(pass);
            if !more {
                return Ok(ticked);
            }
        } else {
            conflicts += 1;
            if conflicts > MAX_CONFLICTS {
                return Err(super::gave_up(S::BACKEND, "one alert"));
            }
            unit.reload().await?;
        }
    }
}

/// The engine's settling of the unit's alert.
fn run<U: DueUnit>(unit: &mut U, now: Timestamp) -> Ticked {
    let max = unit.max_fired();
    let (
        DueState {
            alert,
            rule,
            runtime,
            candidates,
            silences,
        },
        ids,
        changes,
    ) = unit.split();
    intake::settle(
        alert,
        rule,
        runtime,
        candidates,
        silences,
        now,
        max,
        &mut || ids.take(),
        changes,
    )
}
