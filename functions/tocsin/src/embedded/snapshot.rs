//! Snapshots: the whole engine state at a position of the log, so that a restart reads one file
//! and replays only the log after it.
//!
//! `snapshot.json` is a header line (format, log position) and the state's image
//! ([`MemoryState::write_image`]). It is written to `snapshot.json.tmp`, fsync'ed and renamed
//! over the previous one, so a crash mid-snapshot leaves the previous snapshot in place (and a
//! stray temporary file, removed at the next open).

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tocsin_core::store::MemoryState;

use super::log::{Position, sync_dir};

const FILE: &str = "snapshot.json";
const TEMPORARY: &str = "snapshot.json.tmp";
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Header {
    format: u32,
    log: Position,
}

/// Why a snapshot cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} cannot be read: {detail}")]
    Corrupt { path: String, detail: String },
}

/// The state as a snapshot, ready to write: a header and the image, encoded by the writer thread
/// (so that it is the state at `at`) and written by another.
pub fn encode(state: &MemoryState, at: Position) -> serde_json::Result<Vec<u8>> {
    let mut out = serde_json::to_vec(&Header {
        format: FORMAT,
        log: at,
    })?;
    out.push(b'\n');
    state.write_image(&mut out)?;
    Ok(out)
}

/// Writes an encoded snapshot in place of the previous one, atomically.
pub fn write(dir: &Path, encoded: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(TEMPORARY);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(encoded)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(FILE))?;
    sync_dir(dir)
}

/// The last snapshot in `dir`: its log position and state. None when there is none yet.
pub fn read(dir: &Path) -> Result<Option<(Position, MemoryState)>, SnapshotError> {
    let path = dir.join(FILE);
    let shown = path.display().to_string();
    let _ = std::fs::remove_file(dir.join(TEMPORARY));
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SnapshotError::Io {
                path: shown,
                source,
            });
        }
    };
    let corrupt = |detail: String| SnapshotError::Corrupt {
        path: shown.clone(),
        detail,
    };
    let split = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| corrupt("no header line".into()))?;
    let header: Header =
        serde_json::from_slice(&bytes[..split]).map_err(|e| corrupt(e.to_string()))?;
    if header.format != FORMAT {
        return Err(corrupt(format!(
            "format {} (this tocsin reads format {FORMAT})",
            header.format
        )));
    }
    let state = MemoryState::read_image(&bytes[split + 1..]).map_err(|e| corrupt(e.to_string()))?;
    Ok(Some((header.log, state)))
}
