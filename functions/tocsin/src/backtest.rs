//! `tocsin backtest RULES`: what candidate rule files would have done over a period of
//! recorded events, beside what the stored alerts did. The events come from a server's
//! `GET /projects/{p}/events` (paged by cursor) or from a file of them, one JSON object a line
//! (what that endpoint answers). A reader thread decodes them while the engine replays
//! ([`tocsin_core::backtest`]).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde_json::Value;
use tocsin_core::AlertsSettings;
use tocsin_core::backtest::{Backtest, Report};
use tocsin_core::model::{AcceptedEvent, Activation, Silence, Timestamp};

use crate::client::{answer, get_json, http};

/// Events decoded at a time, handed from the reader to the replay.
const BATCH: usize = 4_096;
/// Events asked for per page of the server's export.
const PAGE: usize = 20_000;

/// What to replay, and against what.
pub struct Options {
    pub rules: Vec<PathBuf>,
    pub server: Option<String>,
    pub events: Option<PathBuf>,
    pub project: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
}

/// Runs the backtest; the report, or why it cannot run.
pub async fn run(o: &Options) -> Result<Report, String> {
    let now = Timestamp::now();
    let compiled = crate::commands::compile_files(&o.rules, &|name| {
        Some(format!("https://secrets.invalid/{name}"))
    })?;
    let projects: std::collections::BTreeSet<&str> =
        compiled.iter().map(|(_, c)| c.project.as_str()).collect();
    let project = match (&o.project, projects.len()) {
        (Some(p), _) => p.clone(),
        (None, 1) => projects
            .iter()
            .next()
            .map(|p| (*p).to_owned())
            .unwrap_or_default(),
        (None, 0) => return Err("the rule files define no alerts".into()),
        (None, _) => {
            return Err(format!(
                "the rule files are of several projects ({}): say which with --project",
                projects.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    };
    let mut alerts = Vec::new();
    let mut silences: Vec<Silence> = Vec::new();
    for (_, checked) in compiled.iter().filter(|(_, c)| c.project == project) {
        alerts.extend(checked.alerts.iter().map(|a| a.config.clone()));
        for s in &checked.silences {
            let silence = s
                .silence(&project, "rule file", now)
                .map_err(|e| format!("silence `{}`: {e}", s.id))?;
            silences.push(silence);
        }
    }
    let moment = |v: &str| -> Result<Timestamp, String> {
        Timestamp::parse_or_ago(v, now)
            .ok_or_else(|| format!("`{v}`: expected an ISO-8601 time or a span back from now (7d)"))
    };
    let until = o.until.as_deref().map(moment).transpose()?;
    let (source, since, until, stored) = match (&o.server, &o.events) {
        (Some(server), None) => {
            let server = server.trim_end_matches('/').to_owned();
            let since = moment(o.since.as_deref().unwrap_or("7d"))?;
            let until = until.unwrap_or(now);
            silences.extend(server_silences(&server, &project).await?);
            let stored = stored_activations(&server, &project, since, until).await?;
            (Source::Server(server), since, until, stored)
        }
        (None, Some(path)) => {
            let since = o.since.as_deref().map(moment).transpose()?;
            let (first, last) = span_of(path)?;
            let since = since.or(first).unwrap_or(now);
            let until = until.or(last).unwrap_or(now);
            (Source::File(path.clone()), since, until, Vec::new())
        }
        (Some(_), Some(_)) => return Err("give --server or --events, not both".into()),
        (None, None) => {
            return Err("say where the events come from: --server URL or --events FILE".into());
        }
    };
    let mut b = Backtest::new(
        &project,
        alerts,
        silences,
        &AlertsSettings::default(),
        since,
    )
    .map_err(|e| e.to_string())?;
    // The replay runs on its own thread while the events are read and decoded (a file by two
    // threads, block by block, taking turns); each batch goes back to the thread that decoded
    // it, to be freed where it was allocated (freeing across threads makes the allocator's
    // arenas contend).
    let lanes = match &source {
        Source::Server(_) => 1,
        Source::File(_) => readers(),
    };
    let (senders, receivers): (Vec<Handoff>, Vec<Lane>) = (0..lanes).map(|_| handoff()).unzip();
    let replay = std::thread::spawn(move || {
        let mut turn = 0;
        loop {
            let lane = &receivers[turn % receivers.len()];
            match lane.rx.recv() {
                // A block ends: the next is the next lane's.
                Ok(batch) if batch.is_empty() => turn += 1,
                Ok(batch) => {
                    for ev in &batch {
                        b.feed(ev);
                    }
                    let _ = lane.back.send(batch);
                }
                // The lane whose turn it is has no more blocks: there are none.
                Err(_) => return b,
            }
        }
    });
    let read = match source {
        Source::Server(server) => match senders.into_iter().next() {
            Some(tx) => fetch_events(&server, &project, since, until, tx).await,
            None => Ok(()),
        },
        Source::File(path) => read_file(&path, senders, BLOCK),
    };
    let b = replay
        .join()
        .map_err(|_| "the replay stopped unexpectedly".to_owned())?;
    read?;
    Ok(b.finish(until, &stored))
}

/// Threads that decode a file of events: one core is the replay's, the others decode (on two
/// cores, more than one reader only makes them take turns: measured in BENCHMARKS.md).
fn readers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .clamp(1, 4)
}
/// A file is decoded in blocks of this many bytes, the readers taking turns.
const BLOCK: u64 = 8 << 20;

/// Batches of decoded events on their way to the replay, and back.
struct Handoff {
    tx: mpsc::SyncSender<Vec<AcceptedEvent>>,
    back: mpsc::Receiver<Vec<AcceptedEvent>>,
}

/// The replay's end of a [`Handoff`].
struct Lane {
    rx: mpsc::Receiver<Vec<AcceptedEvent>>,
    back: mpsc::Sender<Vec<AcceptedEvent>>,
}

fn handoff() -> (Handoff, Lane) {
    let (tx, rx) = mpsc::sync_channel(4);
    let (back_tx, back) = mpsc::channel();
    (Handoff { tx, back }, Lane { rx, back: back_tx })
}

impl Handoff {
    /// Sends a batch, freeing those the replay is done with; false once the replay stopped.
    fn send(&self, batch: Vec<AcceptedEvent>) -> bool {
        while let Ok(done) = self.back.try_recv() {
            drop(done);
        }
        self.tx.send(batch).is_ok()
    }

    /// Says that a block ended: the replay turns to the next lane.
    fn end_block(&self) -> bool {
        self.tx.send(Vec::new()).is_ok()
    }
}

/// Where the events come from.
enum Source {
    Server(String),
    File(PathBuf),
}

/// The server's recorded events of the period, page after page, handed to `tx` in batches.
async fn fetch_events(
    server: &str,
    project: &str,
    since: Timestamp,
    until: Timestamp,
    tx: Handoff,
) -> Result<(), String> {
    // Pages are decoded on a thread of their own, where the events are made and freed: the
    // runtime's tasks move between threads, and the allocator's arenas would contend.
    let (pages, page_rx) = mpsc::sync_channel::<bytes::Bytes>(2);
    let decoder = std::thread::spawn(move || -> Result<(), String> {
        for body in page_rx {
            let mut batch = Vec::with_capacity(BATCH);
            for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let event: AcceptedEvent = serde_json::from_slice(line)
                    .map_err(|e| format!("an event line that does not read: {e}"))?;
                batch.push(event);
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    if !tx.send(full) {
                        return Err("the replay stopped".to_owned());
                    }
                }
            }
            if !batch.is_empty() && !tx.send(batch) {
                return Err("the replay stopped".to_owned());
            }
        }
        Ok(())
    });
    let fetched = fetch_pages(server, project, since, until, pages).await;
    let decoded = decoder
        .join()
        .map_err(|_| "the decoder stopped unexpectedly".to_owned())?;
    fetched.and(decoded)
}

/// The server's pages of recorded events, each handed on whole; the next page starts after
/// the cursor of the page's last line.
async fn fetch_pages(
    server: &str,
    project: &str,
    since: Timestamp,
    until: Timestamp,
    pages: mpsc::SyncSender<bytes::Bytes>,
) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    struct Cursor {
        cursor: String,
    }
    let client = http();
    let mut after: Option<String> = None;
    loop {
        let mut params = vec![
            ("since", since.to_string()),
            ("until", until.to_string()),
            ("limit", PAGE.to_string()),
        ];
        params.extend(after.clone().map(|a| ("after", a)));
        let url = with_params(
            &format!("{server}/api/v1/projects/{project}/events"),
            &params,
        )?;
        let response = client
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("cannot reach {server}: {}", e.without_url()))?;
        if !response.status().is_success() {
            return Err(answer(&url, Ok(response)).await.err().unwrap_or_default());
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("reading the events: {}", e.without_url()))?;
        let lines = memchr::memchr_iter(b'\n', &body).count();
        let last = body
            .trim_ascii_end()
            .rsplit(|b| *b == b'\n')
            .next()
            .unwrap_or_default();
        let next = (lines >= PAGE)
            .then(|| serde_json::from_slice::<Cursor>(last))
            .transpose()
            .map_err(|e| format!("the last event of a page has no cursor: {e}"))?;
        // The decoder stopped: it says why when joined.
        if pages.send(body).is_err() {
            return Ok(());
        }
        match next {
            Some(c) => after = Some(c.cursor),
            None => return Ok(()),
        }
    }
}

/// The events of a file, one JSON object a line, decoded by one thread per lane: lane `k` takes
/// the blocks `k`, `k + lanes`, ... (a block holds the lines that start in its bytes).
fn read_file(path: &Path, lanes: Vec<Handoff>, size: u64) -> Result<(), String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    let blocks = len.div_ceil(size).max(1);
    let count = lanes.len() as u64;
    std::thread::scope(|scope| {
        let readers: Vec<_> = lanes
            .into_iter()
            .enumerate()
            .map(|(k, lane)| {
                scope.spawn(move || -> Result<(), String> {
                    let mut block = k as u64;
                    while block < blocks {
                        if !read_block(path, block * size, size, &lane)? || !lane.end_block() {
                            return Ok(());
                        }
                        block += count;
                    }
                    Ok(())
                })
            })
            .collect();
        for r in readers {
            r.join()
                .map_err(|_| "a reader stopped unexpectedly".to_owned())??;
        }
        Ok(())
    })
}

/// Decodes the lines that start in the `size` bytes from `start` of the file, where they lie
/// in the reader's buffer (only a line cut by the buffer's end is copied), and hands them on in
/// batches. False once the replay stopped.
fn read_block(path: &Path, start: u64, size: u64, lane: &Handoff) -> Result<bool, String> {
    use std::io::{Seek, SeekFrom};
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    let end = start + size;
    let mut f = std::fs::File::open(path).map_err(io)?;
    // A line belongs to the block its first byte is in: a block after the first starts after
    // the end of the line that runs into it (from the byte before it, so that a line starting
    // exactly at the block's first byte is kept).
    let mut at = start.saturating_sub(1);
    f.seek(SeekFrom::Start(at)).map_err(io)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, f);
    if start > 0 {
        let mut skipped = Vec::new();
        at += reader.read_until(b'\n', &mut skipped).map_err(io)? as u64;
    }
    let mut batch = Vec::with_capacity(BATCH);
    let mut cut: Vec<u8> = Vec::new();
    let decode = |line: &[u8], batch: &mut Vec<AcceptedEvent>| -> Result<(), String> {
        let text = line.trim_ascii();
        if !text.is_empty() {
            let event: AcceptedEvent = serde_json::from_slice(text)
                .map_err(|e| format!("{}: a line that is not an event: {e}", path.display()))?;
            batch.push(event);
        }
        Ok(())
    };
    // `at` is the offset of the next byte not yet looked at, `cut` the start of a line that
    // the buffer's end cut off: the block's lines are those that start before `end`.
    let mut eof = false;
    'read: while at - (cut.len() as u64) < end {
        let buf = reader.fill_buf().map_err(io)?;
        if buf.is_empty() {
            eof = true;
            break;
        }
        let mut from = 0;
        while let Some(nl) = memchr::memchr(b'\n', &buf[from..]) {
            let line = &buf[from..from + nl];
            if cut.is_empty() {
                decode(line, &mut batch)?;
            } else {
                cut.extend_from_slice(line);
                decode(&cut, &mut batch)?;
                cut.clear();
            }
            from += nl + 1;
            at += nl as u64 + 1;
            if batch.len() >= BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                if !lane.send(full) {
                    return Ok(false);
                }
            }
            if at >= end {
                break 'read;
            }
        }
        cut.extend_from_slice(&buf[from..]);
        at += (buf.len() - from) as u64;
        let used = buf.len();
        reader.consume(used);
    }
    // The file's last line, without a newline after it.
    if eof && !cut.is_empty() {
        decode(&cut, &mut batch)?;
    }
    if !batch.is_empty() && !lane.send(batch) {
        return Ok(false);
    }
    Ok(true)
}

/// The times of a file's first and last events (the period it covers by default).
fn span_of(path: &Path) -> Result<(Option<Timestamp>, Option<Timestamp>), String> {
    use std::io::{Read, Seek, SeekFrom};
    #[derive(serde::Deserialize)]
    struct At {
        at: Timestamp,
    }
    let at = |l: &[u8]| {
        serde_json::from_slice::<At>(l.trim_ascii())
            .ok()
            .map(|a| a.at)
    };
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut head = Vec::new();
    std::io::BufReader::new(&mut f)
        .read_until(b'\n', &mut head)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let len = f
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    let back = len.min(64 * 1024);
    f.seek(SeekFrom::Start(len - back))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let last = tail
        .split(|b| *b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
        .filter_map(at)
        .next_back();
    Ok((at(&head), last))
}

/// What the stored alerts did in the period: their activations.
async fn stored_activations(
    server: &str,
    project: &str,
    since: Timestamp,
    until: Timestamp,
) -> Result<Vec<Activation>, String> {
    let client = http();
    let mut out = Vec::new();
    let listing = format!("{server}/api/v1/projects/{project}/alert-activations");
    let mut url = with_params(
        &listing,
        &[
            ("since", since.to_string()),
            ("until", until.to_string()),
            ("page-size", "10000".to_owned()),
        ],
    )?;
    loop {
        let page = get_json(&client, &url).await?;
        let activations: Vec<Activation> =
            serde_json::from_value(page["activations"].clone()).map_err(|e| e.to_string())?;
        out.extend(activations);
        match page["pagination"]["page-token"].as_str() {
            Some(token) => url = with_params(&listing, &[("page-token", token.to_owned())])?,
            None => return Ok(out),
        }
    }
}

/// Every silence of the project the server keeps (expired ones too: they held in the past).
async fn server_silences(server: &str, project: &str) -> Result<Vec<Silence>, String> {
    let url = format!("{server}/api/v1/projects/{project}/silences?state=all");
    let v = get_json(&http(), &url).await?;
    Ok(v["silences"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|s| serde_json::from_value(s.clone()).ok())
                .collect()
        })
        .unwrap_or_default())
}

/// `base` with a query string of `params`, each encoded.
fn with_params(base: &str, params: &[(&str, String)]) -> Result<String, String> {
    reqwest::Url::parse_with_params(base, params)
        .map(String::from)
        .map_err(|e| format!("{base}: {e}"))
}

/// The report as JSON.
pub fn to_json(report: &Report) -> Value {
    serde_json::to_value(report).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line once, in order, whatever the block size cuts: in the middle of a line, at
    /// its newline, or right after it; with and without a newline at the end.
    #[test]
    fn blocks_read_by_two_threads_give_every_event_once_in_order() {
        let dir = std::env::temp_dir().join(format!("tocsin-blocks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let line = |i: usize| {
            format!(
                "{{\"project\":\"p\",\"kind\":\"failed\",\"entity_kind\":\"job\",\"entity_id\":\"{}\",\"value_dict\":{{}},\"at\":\"2026-12-01T00:00:00+00:00\",\"idempotency_key\":null,\"chain\":[]}}",
                "j".repeat(1 + i % 7) + &i.to_string()
            )
        };
        for trailing in [true, false] {
            let mut text: String = (0..40).map(line).collect::<Vec<_>>().join("\n");
            if trailing {
                text.push('\n');
            }
            let path = dir.join(format!("events-{trailing}.jsonl"));
            std::fs::write(&path, &text).expect("write");
            for size in [1, 7, 150, 151, 152, 1_000, 1 << 20] {
                let (senders, receivers): (Vec<Handoff>, Vec<Lane>) =
                    (0..2).map(|_| handoff()).unzip();
                let got = std::thread::scope(|scope| {
                    let replay = scope.spawn(move || {
                        let mut out = Vec::new();
                        let mut turn = 0;
                        loop {
                            let lane = &receivers[turn % receivers.len()];
                            match lane.rx.recv() {
                                Ok(batch) if batch.is_empty() => turn += 1,
                                Ok(batch) => out.extend(batch.into_iter().map(|e| e.entity_id)),
                                Err(_) => return out,
                            }
                        }
                    });
                    read_file(&path, senders, size).expect("read");
                    replay.join().expect("replay")
                });
                let want: Vec<String> = (0..40)
                    .map(|i| "j".repeat(1 + i % 7) + &i.to_string())
                    .collect();
                assert_eq!(got, want, "block size {size}, trailing newline {trailing}");
            }
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
