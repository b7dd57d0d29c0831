//! Data directories written before the event log kept the engine state in fjall keyspaces
//! (`alerts`, `runtime`, `windows`, `idempotency`), rewritten on every event. Opening one
//! reads that state once; the store then writes it as its first snapshot and drops the
//! keyspaces.

use std::collections::BTreeMap;
use std::sync::Arc;

use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use serde::Deserialize;
use tocsin_core::compiled::Rule;
use tocsin_core::engine::{Runtime, Window, Windows};
use tocsin_core::model::Timestamp;
use tocsin_core::store::{AlertEntry, AlertRecord, MemoryState};

use super::{OpenError, id_key, id_of};

/// The keyspaces of the old layout.
pub const KEYSPACES: [&str; 4] = ["alerts", "runtime", "windows", "idempotency"];

/// An alert's config as the old layout wrote it.
#[derive(Deserialize)]
struct PersistedRule {
    rule: Rule,
    created: Timestamp,
    updated: Timestamp,
}

/// Whether `db` holds state in the old layout.
pub fn present(db: &Database) -> bool {
    KEYSPACES.iter().any(|k| db.keyspace_exists(k))
}

/// Drops the old keyspaces (once their state is in a durable snapshot).
pub fn drop_keyspaces(db: &Database) -> Result<(), fjall::Error> {
    for name in KEYSPACES {
        if db.keyspace_exists(name) {
            let ks = db.keyspace(name, KeyspaceCreateOptions::default)?;
            db.delete_keyspace(ks)?;
        }
    }
    Ok(())
}

/// The state the old keyspaces hold. Activation ids go on after `last_activation`.
pub fn load(db: &Database, last_activation: u64) -> Result<MemoryState, OpenError> {
    let corrupt = |what: &'static str| {
        move |e: &dyn std::fmt::Display| OpenError::Corrupt {
            what,
            detail: e.to_string(),
        }
    };
    let open = |name: &str| -> Result<Keyspace, OpenError> {
        db.keyspace(name, KeyspaceCreateOptions::default)
            .map_err(|e| corrupt("keyspace")(&e))
    };
    let (alerts, runtime, windows, idempotency) = (
        open("alerts")?,
        open("runtime")?,
        open("windows")?,
        open("idempotency")?,
    );
    let mut state = MemoryState::new(last_activation);
    let mut entries = BTreeMap::new();
    for item in alerts.iter() {
        let (k, v) = item.into_inner().map_err(|e| corrupt("alert")(&e))?;
        let id = id_of(&k).ok_or_else(|| corrupt("alert key")(&"short key"))?;
        let p: PersistedRule = serde_json::from_slice(&v).map_err(|e| corrupt("alert")(&e))?;
        let runtime = match runtime
            .get(id_key(id))
            .map_err(|e| corrupt("alert state")(&e))?
        {
            Some(v) => serde_json::from_slice(&v).map_err(|e| corrupt("alert state")(&e))?,
            None => Runtime::default(),
        };
        let windows = Windows::for_rule(&p.rule);
        let record = AlertRecord {
            id,
            rule: Arc::new(p.rule),
            runtime,
            created: p.created,
            updated: p.updated,
        };
        entries.insert(id, AlertEntry { record, windows });
    }
    for item in windows.iter() {
        let (k, v) = item.into_inner().map_err(|e| corrupt("window")(&e))?;
        let Some(id) = id_of(&k) else { continue };
        let Some(entry) = entries.get_mut(&id) else {
            continue;
        };
        let entity = std::str::from_utf8(&k[8..]).map_err(|e| corrupt("window key")(&e))?;
        let window: Window = serde_json::from_slice(&v).map_err(|e| corrupt("window")(&e))?;
        let entity = entry.record.rule.per_entity.then_some(entity);
        entry.windows.restore(entity, window);
    }
    for entry in entries.into_values() {
        state.restore_alert(entry);
    }
    for item in idempotency.iter() {
        let (k, v) = item
            .into_inner()
            .map_err(|e| corrupt("idempotency key")(&e))?;
        let Some(split) = k.iter().position(|b| *b == 0) else {
            continue;
        };
        let (Ok(project), Ok(key)) = (
            std::str::from_utf8(&k[..split]),
            std::str::from_utf8(&k[split + 1..]),
        ) else {
            continue;
        };
        let expires = v
            .as_ref()
            .try_into()
            .map(i64::from_be_bytes)
            .map(Timestamp)
            .unwrap_or_default();
        state.restore_idempotency(project, key, expires);
    }
    Ok(state)
}
