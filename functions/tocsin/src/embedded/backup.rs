//! Backups: a consistent copy of a running store, taken without stopping ingest, and a new
//! data directory made from one.
//!
//! One writer turn captures the moment: the engine state's image (as a snapshot holds it), the
//! activations not yet settled (shared, not copied) and a fjall snapshot of what is settled,
//! audited and issued. The turn ends there; the copy is written from the capture while events
//! go on. A backup is NDJSON, the last line counting what came before it, so that a cut-off
//! file is refused rather than restored short:
//!
//! ```text
//! {"backup":"tocsin","format":1,"version":"0.1.0"}
//! {...}                                  the state's image, one line
//! {"activation":{...}}                   each activation, by id
//! {"audit":{...}}                        each audit entry, in order
//! {"token":{...}}                        each token (hashes only, as stored)
//! {"end":{"activations":N,"audit":N,"tokens":N}}
//! ```
//!
//! The event history (the log, which explain and backtest read) is not in it: a restored
//! server's history starts at the restore.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;

use fjall::Readable;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::activations::Captured;
use super::*;

const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Header {
    backup: String,
    format: u32,
    version: String,
}

/// How many records of each kind a backup holds (its last line).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub activations: u64,
    pub audit: u64,
    pub tokens: u64,
}

/// Why a backup cannot be taken or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("the store failed: {0}")]
    Store(#[from] Error),
    #[error("cannot write the backup: {0}")]
    Write(#[source] std::io::Error),
    #[error("line {line} of the backup: {detail}")]
    Corrupt { line: usize, detail: String },
    #[error(
        "the backup ends after line {0} without its closing count: it was cut off (nothing restored)"
    )]
    Truncated(usize),
    #[error("{0} is not empty: restore makes a new data directory")]
    NotEmpty(String),
    #[error(transparent)]
    Open(#[from] OpenError),
}

/// What one writer turn captured (see the module's documentation).
pub struct Capture {
    image: Vec<u8>,
    recent: Captured,
    snapshot: fjall::Snapshot,
    disk: Arc<Disk>,
}

impl EmbeddedStore {
    /// The store as of now, for [`Capture::write`]: one short writer turn.
    pub async fn capture(&self) -> Result<Capture> {
        let disk = self.disk.clone();
        self.run(Lane::Writer, move |w| {
            let mut image = Vec::new();
            w.state.write_image(&mut image).map_err(store_err)?;
            Ok(Capture {
                image,
                recent: disk.acts.capture(),
                snapshot: disk.db.snapshot(),
                disk,
            })
        })
        .await
    }

    /// A new data directory `dir` holding what the backup read from `input` holds. Nothing
    /// is left in `dir` when the backup is refused.
    pub fn restore(dir: &Path, input: impl BufRead) -> std::result::Result<Counts, BackupError> {
        if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
            return Err(BackupError::NotEmpty(dir.display().to_string()));
        }
        let read = read_backup(input)?;
        let made = restore_into(dir, read);
        if made.is_err() {
            let _ = std::fs::remove_dir_all(dir);
        }
        made
    }
}

impl Capture {
    /// Writes the backup; blocking (run it off the async runtime). Returns the counts.
    pub fn write(self, mut out: impl Write) -> std::result::Result<Counts, BackupError> {
        let w = |e| BackupError::Write(e);
        let line = |out: &mut dyn Write, v: &Value| -> std::io::Result<()> {
            serde_json::to_writer(&mut *out, v)?;
            out.write_all(b"\n")
        };
        let header = Header {
            backup: "tocsin".into(),
            format: FORMAT,
            version: env!("CARGO_PKG_VERSION").into(),
        };
        serde_json::to_writer(&mut out, &header).map_err(|e| w(e.into()))?;
        out.write_all(b"\n").map_err(w)?;
        out.write_all(&self.image).map_err(w)?;
        out.write_all(b"\n").map_err(w)?;
        let mut counts = Counts::default();
        let disk = &self.disk;
        let settled = self.snapshot.iter(disk.acts.keyspace());
        let mut recent = self.recent.into_iter().peekable();
        let mut emit = |out: &mut dyn Write, a: &Activation| {
            counts.activations += 1;
            line(out, &serde_json::json!({ "activation": a })).map_err(w)
        };
        // Both in id order: what is recent replaces (or deletes) what is settled.
        for item in settled {
            let (key, value) = item.into_inner().map_err(store_err)?;
            let Some(id) = id_of(&key) else { continue };
            while let Some((rid, _)) = recent.peek()
                && *rid < id
            {
                if let Some((_, Some(a))) = recent.next() {
                    emit(&mut out, &a)?;
                }
            }
            if recent.peek().is_some_and(|(rid, _)| *rid == id) {
                if let Some((_, Some(a))) = recent.next() {
                    emit(&mut out, &a)?;
                }
                continue;
            }
            let a: Activation = serde_json::from_slice(&value).map_err(store_err)?;
            emit(&mut out, &a)?;
        }
        for (_, a) in recent {
            if let Some(a) = a {
                emit(&mut out, &a)?;
            }
        }
        for item in self.snapshot.iter(&disk.ks.audit) {
            let value = item.value().map_err(store_err)?;
            let entry: Value = serde_json::from_slice(&value).map_err(store_err)?;
            line(&mut out, &serde_json::json!({ "audit": entry })).map_err(w)?;
            counts.audit += 1;
        }
        for item in self.snapshot.iter(&disk.ks.tokens) {
            let value = item.value().map_err(store_err)?;
            let token: Value = serde_json::from_slice(&value).map_err(store_err)?;
            line(&mut out, &serde_json::json!({ "token": token })).map_err(w)?;
            counts.tokens += 1;
        }
        line(&mut out, &serde_json::json!({ "end": counts })).map_err(w)?;
        out.flush().map_err(w)?;
        Ok(counts)
    }
}

/// A backup, read whole and checked before anything is written.
struct Read {
    state: MemoryState,
    activations: Vec<Arc<Activation>>,
    audit: Vec<AuditEntry>,
    tokens: Vec<TokenRecord>,
    counts: Counts,
}

fn read_backup(input: impl BufRead) -> std::result::Result<Read, BackupError> {
    let corrupt = |line: usize, detail: String| BackupError::Corrupt { line, detail };
    let mut lines = input.lines().enumerate().map(|(i, l)| (i + 1, l));
    let mut next = |what: &str| match lines.next() {
        Some((n, Ok(text))) => Ok((n, text)),
        Some((n, Err(e))) => Err(corrupt(n, e.to_string())),
        None => Err(corrupt(0, format!("it ends before {what}"))),
    };
    let (n, text) = next("its header")?;
    let header: Header = serde_json::from_str(&text)
        .map_err(|e| corrupt(n, format!("not a Tocsin backup's header: {e}")))?;
    if header.backup != "tocsin" || header.format != FORMAT {
        return Err(corrupt(
            n,
            format!(
                "format {} of {}, this is format {FORMAT}",
                header.format, header.backup
            ),
        ));
    }
    let (n, text) = next("the state")?;
    let state = MemoryState::read_image(text.as_bytes())
        .map_err(|e| corrupt(n, format!("the state: {e}")))?;
    let mut read = Read {
        state,
        activations: Vec::new(),
        audit: Vec::new(),
        tokens: Vec::new(),
        counts: Counts::default(),
    };
    let mut last = n;
    loop {
        let Ok((n, text)) = next("its closing count") else {
            return Err(BackupError::Truncated(last));
        };
        last = n;
        let record: BTreeMap<String, Value> =
            serde_json::from_str(&text).map_err(|e| corrupt(n, e.to_string()))?;
        let Some((kind, value)) = record.into_iter().next() else {
            return Err(corrupt(n, "an empty record".into()));
        };
        let bad = |e: serde_json::Error| corrupt(n, format!("{kind}: {e}"));
        match kind.as_str() {
            "activation" => read
                .activations
                .push(Arc::new(serde_json::from_value(value).map_err(bad)?)),
            "audit" => read.audit.push(serde_json::from_value(value).map_err(bad)?),
            "token" => read
                .tokens
                .push(serde_json::from_value(value).map_err(bad)?),
            "end" => {
                let counts: Counts = serde_json::from_value(value).map_err(bad)?;
                let found = Counts {
                    activations: read.activations.len() as u64,
                    audit: read.audit.len() as u64,
                    tokens: read.tokens.len() as u64,
                };
                if counts != found {
                    return Err(corrupt(
                        n,
                        format!("the closing count says {counts:?}, the backup holds {found:?}"),
                    ));
                }
                read.counts = counts;
                return Ok(read);
            }
            other => return Err(corrupt(n, format!("an unknown record `{other}`"))),
        }
    }
}

fn restore_into(dir: &Path, read: Read) -> std::result::Result<Counts, BackupError> {
    let write_err = |source| OpenError::Write {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(write_err)?;
    // The state as the first snapshot, at the start of a log that is empty.
    let encoded = snapshot::encode(&read.state, Position::default())
        .map_err(|e| write_err(std::io::Error::other(e)))?;
    snapshot::write(dir, &encoded).map_err(write_err)?;
    let store = EmbeddedStore::open(dir, Options::default())?;
    let disk = store.disk.clone();
    disk.acts.apply(Changes {
        activations: read.activations,
        ..Changes::default()
    })?;
    if disk.acts.begin_settling() {
        disk.acts.settle()?;
    }
    let mut batch = disk.own_batch();
    for (seq, entry) in read.audit.iter().enumerate() {
        batch.insert(&disk.ks.audit, id_key(seq as u64), to_json(entry)?);
    }
    for token in &read.tokens {
        batch.insert(&disk.ks.tokens, token.id.as_bytes(), to_json(token)?);
    }
    batch.commit().map_err(store_err)?;
    store.sync()?;
    Ok(read.counts)
}
