//! Alert changes, the one sequence: read the alert's row with its version, let the engine plan
//! the change ([`crate::engine::update`]), write it if the row is still at that version (else
//! read again), and say which activations it closes. Absence arming is decided here too: an
//! absence alert awaits its entities again whenever its windows start afresh.

use std::sync::Arc;

use super::MAX_CONFLICTS;
use crate::engine::{PutAlert, absence, update};
use crate::error::Result;
use crate::model::Timestamp;
use crate::store::units::{AlertRow, AlertRows, AlertWrite, Written};
use crate::store::{AlertRecord, PutOutcome};

/// Creates or replaces an alert (see [`crate::store::AlertStore::put_alert`]).
pub async fn put<S: AlertRows>(rows: &mut S, put: PutAlert) -> Result<PutOutcome> {
    let (project, name) = (put.rule.project().to_owned(), put.rule.name().to_owned());
    for _ in 0..MAX_CONFLICTS {
        let stored = rows.read(&project, &name).await?;
        let plan = update::put(
            stored
                .as_ref()
                .map(|r| (&*r.record.rule, &r.record.runtime)),
            &put,
            rows.count(),
        )?;
        let rule = Arc::new(plan.rule);
        let (record, generation, expected, arm_due) = match &stored {
            None => {
                let record = AlertRecord {
                    id: rows.next_alert_id().await?,
                    rule: rule.clone(),
                    runtime: plan.runtime,
                    created: put.now,
                    updated: put.now,
                };
                let arm = absence::arm_deadline(&rule, &record.runtime);
                (record, 1, None, arm)
            }
            Some(row) => {
                let record = AlertRecord {
                    rule: rule.clone(),
                    runtime: plan.runtime,
                    updated: put.now,
                    ..row.record.clone()
                };
                let generation = row.generation + u64::from(plan.new_windows);
                let arm = if plan.new_windows || rule.absence.is_none() {
                    absence::arm_deadline(&rule, &record.runtime)
                } else {
                    row.arm_due
                };
                (record, generation, Some(row.version), arm)
            }
        };
        let write = AlertWrite {
            row: AlertRow {
                record: record.clone(),
                version: expected.map_or(1, |v| v + 1),
                generation,
                arm_due,
            },
            expected,
            new_windows: plan.new_windows,
            max_allowed: put.max_allowed,
            closed: plan.closed,
            noted: Vec::new(),
            config_changed: true,
        };
        match rows.write(write).await? {
            Written::Done => {
                return Ok(PutOutcome {
                    alert: record,
                    created: plan.created,
                    reset: plan.reset,
                });
            }
            Written::TooMany(count) => return Err(update::too_many(count, put.max_allowed)),
            Written::Conflict => continue,
        }
    }
    Err(super::gave_up(S::BACKEND, "one alert"))
}

/// Resets an alert on behalf of `by` (see [`crate::store::AlertStore::reset_alert`]); false when
/// there is no such alert.
pub async fn reset<S: AlertRows>(
    rows: &mut S,
    project: &str,
    name: &str,
    by: &str,
    now: Timestamp,
) -> Result<bool> {
    change(rows, project, name, true, |record| {
        let closed = update::reset(&record.rule, &mut record.runtime, by, now);
        Ok((closed, Vec::new()))
    })
    .await
}

/// Acknowledges an alert (see [`crate::store::AlertStore::acknowledge_alert`]); false when
/// there is no such alert, an error when it is not active.
pub async fn acknowledge<S: AlertRows>(
    rows: &mut S,
    project: &str,
    name: &str,
    by: &str,
    now: Timestamp,
) -> Result<bool> {
    change(rows, project, name, false, |record| {
        let noted = update::acknowledge(&record.rule, &mut record.runtime, by, now)?;
        Ok((Vec::new(), noted))
    })
    .await
}

/// What became of the message of notification `name` of `activation`: sent at `sent`, or
/// given up (None): the notification's cooldown runs from a sent message (see
/// [`crate::engine::Runtime::delivered`]). Writes only when that changes the alert's state.
pub async fn delivered<S: AlertRows>(
    rows: &mut S,
    project: &str,
    alert: &str,
    activation: u64,
    name: &str,
    sent: Option<Timestamp>,
) -> Result<()> {
    for _ in 0..MAX_CONFLICTS {
        let Some(row) = rows.read(project, alert).await? else {
            return Ok(());
        };
        let mut record = row.record.clone();
        if !record
            .runtime
            .delivered(&record.rule, name, activation, sent)
        {
            return Ok(());
        }
        let write = AlertWrite {
            row: AlertRow {
                record,
                version: row.version + 1,
                ..row.clone()
            },
            expected: Some(row.version),
            new_windows: false,
            max_allowed: usize::MAX,
            closed: Vec::new(),
            noted: Vec::new(),
            config_changed: false,
        };
        match rows.write(write).await? {
            Written::Done => return Ok(()),
            Written::Conflict | Written::TooMany(_) => continue,
        }
    }
    Err(super::gave_up(S::BACKEND, "one alert"))
}

/// Deletes an alert; whether it existed.
pub async fn delete<S: AlertRows>(rows: &mut S, project: &str, name: &str) -> Result<bool> {
    rows.delete(project, name).await
}

/// A change of an alert's state: read, `f` (which returns the activations it closes), write if
/// still at the version read. `new_windows`: the change starts the windows afresh.
async fn change<S: AlertRows>(
    rows: &mut S,
    project: &str,
    name: &str,
    new_windows: bool,
    mut f: impl FnMut(
        &mut AlertRecord,
    ) -> Result<(Vec<crate::engine::Closed>, Vec<crate::engine::Noted>)>,
) -> Result<bool> {
    for _ in 0..MAX_CONFLICTS {
        let Some(row) = rows.read(project, name).await? else {
            return Ok(false);
        };
        let mut record = row.record.clone();
        let (closed, noted) = f(&mut record)?;
        let arm_due = if new_windows {
            absence::arm_deadline(&record.rule, &record.runtime)
        } else {
            row.arm_due
        };
        let write = AlertWrite {
            row: AlertRow {
                record,
                version: row.version + 1,
                generation: row.generation + u64::from(new_windows),
                arm_due,
            },
            expected: Some(row.version),
            new_windows,
            max_allowed: usize::MAX,
            closed,
            noted,
            config_changed: false,
        };
        match rows.write(write).await? {
            Written::Done => return Ok(true),
            Written::Conflict | Written::TooMany(_) => continue,
        }
    }
    Err(super::gave_up(S::BACKEND, "one alert"))
}
