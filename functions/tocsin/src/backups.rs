//! `tocsin backup` and `tocsin restore`: a consistent copy of a store (from a running server,
//! or a stopped server's data directory) and a new data directory made from one (see
//! [`crate::embedded::backup`]).

use std::io::Write;
use std::path::Path;

use crate::embedded::backup::{BackupError, Counts};
use crate::embedded::{EmbeddedStore, Options};

/// Copies a running server's store (`GET /-/backup`, with an admin token of every project in
/// `TOCSIN_TOKEN`) to `out`. Checks the copy's closing line: a copy cut off is an error.
pub async fn from_server(server: &str, mut out: impl Write) -> Result<(), String> {
    let url = format!("{}/-/backup", server.trim_end_matches('/'));
    let mut response = crate::client::http()
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {}", e.without_url()))?;
    if !response.status().is_success() {
        return crate::client::answer(&url, Ok(response)).await.map(drop);
    }
    let mut tail = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("the backup was cut off: {}", e.without_url()))?
    {
        out.write_all(&chunk)
            .map_err(|e| format!("cannot write the backup: {e}"))?;
        tail.extend_from_slice(&chunk);
        let keep = tail.len().saturating_sub(4096);
        tail.drain(..keep);
    }
    out.flush()
        .map_err(|e| format!("cannot write the backup: {e}"))?;
    let last = tail
        .rsplit(|b| *b == b'\n')
        .find(|line| !line.is_empty())
        .unwrap_or_default();
    if !last.starts_with(b"{\"end\":") {
        return Err("the backup was cut off before its closing count".into());
    }
    eprintln!("backup: {}", String::from_utf8_lossy(last));
    Ok(())
}

/// Copies a stopped server's data directory to `out`.
pub async fn from_data_dir(dir: &Path, out: impl Write + Send + 'static) -> Result<Counts, String> {
    let store = EmbeddedStore::open(dir, Options::default()).map_err(|e| {
        format!("{e} (is a server running on it? back it up with --server instead)")
    })?;
    let capture = store.capture().await.map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || capture.write(std::io::BufWriter::new(out)))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e: BackupError| e.to_string())
}

/// A new data directory `dir` made from the backup in `input`.
pub fn restore(dir: &Path, input: impl std::io::BufRead) -> Result<Counts, String> {
    EmbeddedStore::restore(dir, input).map_err(|e| e.to_string())
}
