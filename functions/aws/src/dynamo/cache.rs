//! What one store instance remembers between calls: the alerts (configs and runtime state,
//! with their versions), the matching index, and the windows it read or wrote.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use tocsin_core::compiled::Rule;
use tocsin_core::engine::{Matcher, Runtime, Window};
use tocsin_core::error::Result;
use tocsin_core::model::Timestamp;
use tocsin_core::store::{AlertRecord, Silences};

use super::DynamoStore;
use super::item::{Item, alert_sk, get_json, get_n, get_s, json, key, n, s, sdk_err};
use super::receipts::Receipts;

/// Windows remembered at most; beyond, the cache of windows starts over (a window not in the
/// cache costs one more write when another instance wrote it meanwhile, never a wrong count).
const MAX_CACHED_WINDOWS: usize = 100_000;

/// An alert item, decoded.
#[derive(Debug, Clone)]
pub struct StoredAlert {
    pub id: u64,
    pub rule: Arc<Rule>,
    pub runtime: Runtime,
    pub created: Timestamp,
    pub updated: Timestamp,
    /// The item's version: every write is conditional on it and increments it.
    pub v: u64,
    /// The window generation: a reset or a change of what decides firing starts a new one.
    pub generation: u64,
    /// Absence alerts: when the entities awaited from arming come due if none reports (see
    /// `due`), until a tick has looked at them. The item is in the due index meanwhile.
    pub arm_due: Option<Timestamp>,
    /// The tokens of the last writes of its runtime (see [`super::item::writers_of`]).
    pub writers: Vec<u64>,
}

/// The `doc` attribute of an alert item.
#[derive(Serialize, Deserialize)]
struct Doc<R> {
    rule: R,
    created: Timestamp,
    updated: Timestamp,
}

impl StoredAlert {
    pub fn from_item(item: &Item) -> Result<Self> {
        let doc: Doc<Rule> = get_json(item, "doc")?;
        Ok(StoredAlert {
            id: get_n(item, "id")?,
            rule: Arc::new(doc.rule),
            runtime: get_json(item, "rt")?,
            created: doc.created,
            updated: doc.updated,
            v: get_n(item, "v")?,
            generation: get_n(item, "gen")?,
            arm_due: super::item::indexed_deadline(item)?,
            writers: super::item::writers_of(item),
        })
    }

    /// The whole item, at version `self.v`, with the tokens of its last writes.
    pub fn to_item(&self) -> Result<Item> {
        let mut item = key("ALERT", alert_sk(self.rule.project(), self.rule.name()));
        let doc = Doc {
            rule: &*self.rule,
            created: self.created,
            updated: self.updated,
        };
        item.insert("id".into(), n(self.id));
        item.insert("doc".into(), json(&doc)?);
        item.insert("rt".into(), json(&self.runtime)?);
        item.insert("v".into(), n(self.v));
        item.insert("gen".into(), n(self.generation));
        if !self.writers.is_empty() {
            let bytes: Vec<u8> = self.writers.iter().flat_map(|w| w.to_le_bytes()).collect();
            item.insert(
                "lw".into(),
                AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(bytes)),
            );
        }
        if let Some(due) = self.arm_due {
            super::item::index_due(&mut item, super::item::shard(self.id, None), due);
        }
        Ok(item)
    }

    pub fn record(&self) -> AlertRecord {
        AlertRecord {
            id: self.id,
            rule: self.rule.clone(),
            runtime: self.runtime.clone(),
            created: self.created,
            updated: self.updated,
        }
    }
}

/// Which window: of an alert, in a generation, for an entity (None: the shared window).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WindowKey {
    pub alert: u64,
    pub generation: u64,
    pub entity: Option<Box<str>>,
}

impl WindowKey {
    pub fn item_key(&self) -> Item {
        let sk = match &self.entity {
            None => "#".to_owned(),
            Some(e) => format!("E#{e}"),
        };
        key(format!("W#{}#{}", self.alert, self.generation), sk)
    }
}

/// The catalog item: what every instance checks before trusting its cache.
#[derive(Debug, Clone, Copy, Default)]
pub struct Catalog {
    /// Bumped by every config change, reset and acknowledgement.
    pub version: u64,
    pub alerts: usize,
    /// The last activation id handed out: every firing takes one first.
    pub next_activation: u64,
}

/// A window as its item holds it: the times, the receipts of the queue messages counted in
/// it, the item's version (0: no item known) and the tokens of its last writes (see
/// [`super::item::writers_of`]).
#[derive(Debug, Clone, Default)]
pub struct Versioned {
    pub window: Window,
    pub receipts: Receipts,
    pub v: u64,
    pub writers: Vec<u64>,
}

/// The cache of one store instance.
#[derive(Default)]
pub struct Cache {
    /// When the catalog version was last compared (None: reload at the next use).
    checked: Option<Instant>,
    catalog: u64,
    pub alerts: FxHashMap<u64, StoredAlert>,
    pub matcher: Matcher,
    pub windows: FxHashMap<WindowKey, Versioned>,
    /// Every project's silences, reloaded with the alerts.
    pub silences: Silences,
}

impl Cache {
    /// Forgets the configs, so that the next event reloads them (after this instance changed
    /// one: its own writes are seen at once).
    pub fn invalidate(&mut self) {
        self.checked = None;
    }

    /// How long ago the catalog was compared.
    pub fn age(&self) -> Option<Duration> {
        self.checked.map(|t| t.elapsed())
    }

    /// Replaces one alert's cached item (after this instance read or wrote it).
    pub fn put_alert(&mut self, alert: StoredAlert) {
        if let Some(old) = self.alerts.get(&alert.id) {
            self.matcher.remove(alert.id, &old.rule);
        }
        self.matcher.insert(alert.id, &alert.rule);
        self.alerts.insert(alert.id, alert);
    }

    /// Forgets an alert that no longer exists.
    pub fn remove_alert(&mut self, id: u64) {
        if let Some(old) = self.alerts.remove(&id) {
            self.matcher.remove(id, &old.rule);
        }
    }

    /// Remembers a window as read or written.
    pub fn put_window(&mut self, key: WindowKey, window: Versioned) {
        if self.windows.len() >= MAX_CACHED_WINDOWS {
            self.windows.clear();
        }
        self.windows.insert(key, window);
    }
}

impl DynamoStore {
    /// The catalog item, read strongly consistent.
    pub(super) async fn catalog(&self) -> Result<Catalog> {
        let out = self
            .client
            .get_item()
            .table_name(self.table())
            .set_key(Some(key("META", "CATALOG")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem", e))?;
        let Some(item) = out.item() else {
            return Ok(Catalog::default());
        };
        Ok(Catalog {
            version: super::item::opt_n(item, "v")?.unwrap_or(0),
            alerts: super::item::opt_n(item, "alerts")?.unwrap_or(0),
            next_activation: super::item::opt_n(item, "next_activation")?.unwrap_or(0),
        })
    }

    /// Every alert item, read strongly consistent.
    pub(super) async fn load_alerts(&self) -> Result<Vec<StoredAlert>> {
        let items = self
            .client
            .query()
            .table_name(self.table())
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s("ALERT"))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| sdk_err("Query", e))?;
        items.iter().map(StoredAlert::from_item).collect()
    }

    /// One alert item, read strongly consistent.
    pub(super) async fn read_alert(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Option<StoredAlert>> {
        let out = self
            .client
            .get_item()
            .table_name(self.table())
            .set_key(Some(key("ALERT", alert_sk(project, name))))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem", e))?;
        out.item().map(StoredAlert::from_item).transpose()
    }

    /// Brings the cached configs up to date when they were last compared more than `max_age`
    /// ago: one read of the catalog, and a reload of the alerts only when it changed.
    pub(super) async fn refresh(&self, cache: &mut Cache, max_age: Duration) -> Result<()> {
        if cache.age().is_some_and(|age| age < max_age) {
            return Ok(());
        }
        let version = self.catalog().await?.version;
        if cache.checked.is_some() && version == cache.catalog {
            cache.checked = Some(Instant::now());
            return Ok(());
        }
        let alerts = self.load_alerts().await?;
        cache.silences = self.load_silences().await?;
        cache.alerts.clear();
        cache.matcher = Matcher::default();
        for a in alerts {
            cache.put_alert(a);
        }
        let current = &cache.alerts;
        cache.windows.retain(|k, _| {
            current
                .get(&k.alert)
                .is_some_and(|a| a.generation == k.generation)
        });
        cache.catalog = version;
        cache.checked = Some(Instant::now());
        Ok(())
    }

    /// Reads a window item strongly consistent (after losing a write on it).
    pub(super) async fn read_window(&self, key: &WindowKey) -> Result<Versioned> {
        let out = self
            .client
            .get_item()
            .table_name(self.table())
            .set_key(Some(key.item_key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem", e))?;
        match out.item() {
            Some(item) => Ok(Versioned {
                window: decode_window(get_s(item, "w")?)?,
                receipts: match item.get("m") {
                    Some(AttributeValue::B(b)) => Receipts::decode(b.as_ref())?,
                    _ => Receipts::default(),
                },
                v: get_n(item, "v")?,
                writers: super::item::writers_of(item),
            }),
            None => Ok(Versioned::default()),
        }
    }
}

/// A window's times as DynamoDB stores them: the first in microseconds, then each as its
/// distance from the one before (`1795493813482217,1000000,2500`): about a third of the JSON
/// form, so that a window of 99 events fits in two write units.
pub fn encode_window(w: &Window) -> String {
    let mut out = String::with_capacity(w.len() * 8);
    let mut last = None;
    for t in w.times() {
        if !out.is_empty() {
            out.push(',');
        }
        let v = match last {
            None => t.0,
            Some(prev) => t.0 - prev,
        };
        out.push_str(&v.to_string());
        last = Some(t.0);
    }
    out
}

/// The inverse of [`encode_window`].
pub fn decode_window(s: &str) -> Result<Window> {
    let mut times = Vec::new();
    let mut last: Option<i64> = None;
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let v: i64 = part.parse().map_err(|_| {
            tocsin_core::error::Error::backend(
                tocsin_core::error::Backend::DynamoDb,
                format!("a stored window is unreadable: `{part}`"),
            )
        })?;
        let t = last.map_or(v, |prev| prev.saturating_add(v));
        times.push(tocsin_core::model::Timestamp(t));
        last = Some(t);
    }
    Ok(Window::from_times(times))
}

/// The condition that an item is still at version `v` (0: that it does not exist), with its
/// value placeholder.
pub fn at_version(v: u64) -> (&'static str, Option<AttributeValue>) {
    if v == 0 {
        ("attribute_not_exists(pk)", None)
    } else {
        ("v = :expected", Some(n(v)))
    }
}

#[cfg(test)]
mod tests {
    use tocsin_core::model::{Span, Timestamp};

    use super::*;

    #[test]
    fn windows_round_trip_through_their_compact_form() {
        let mut w = Window::default();
        for s in [0, 1, 1, 3600, 7200] {
            w.push(
                Timestamp::from_secs(1_795_000_000 + s),
                10,
                Some(Span::from_secs(86_400)),
            );
        }
        let text = encode_window(&w);
        assert_eq!(text, "1795000000000000,1000000,0,3599000000,3600000000");
        assert_eq!(decode_window(&text).expect("decodes"), w);
        assert_eq!(decode_window("").expect("empty"), Window::default());
        assert!(decode_window("12,x").is_err());
    }
}
