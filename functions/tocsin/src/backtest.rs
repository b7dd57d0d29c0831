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
use tocsin_core::model::{AcceptedEvent, Activation, Silence, Span, Timestamp, parse_period};

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
                .spec
                .clone()
                .into_silence(s.id.clone(), project.clone(), "rule file".into(), now, None)
                .map_err(|e| format!("silence `{}`: {e}", s.id))?;
            silences.push(silence);
        }
    }
    let moment = |v: &str| -> Result<Timestamp, String> {
        Timestamp::parse(v)
            .or_else(|| parse_period(v).ok().map(|s| now.plus(Span(-s.0))))
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
    // The replay runs on its own thread while the events are read and decoded.
    let (tx, rx) = mpsc::sync_channel::<Vec<AcceptedEvent>>(4);
    let replay = std::thread::spawn(move || {
        for batch in rx {
            for ev in &batch {
                b.feed(ev);
            }
        }
        b
    });
    let read = match source {
        Source::Server(server) => fetch_events(&server, &project, since, until, tx).await,
        Source::File(path) => read_file(&path, tx),
    };
    let b = replay
        .join()
        .map_err(|_| "the replay stopped unexpectedly".to_owned())?;
    read?;
    Ok(b.finish(until, &stored))
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
    tx: mpsc::SyncSender<Vec<AcceptedEvent>>,
) -> Result<(), String> {
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
        let mut batch = Vec::with_capacity(BATCH);
        let mut lines = 0;
        let mut last_line: &[u8] = &[];
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            lines += 1;
            last_line = line;
            let event: AcceptedEvent = serde_json::from_slice(line)
                .map_err(|e| format!("an event line that does not read: {e}"))?;
            batch.push(event);
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                tx.send(full).map_err(|_| "the replay stopped".to_owned())?;
            }
        }
        if !batch.is_empty() {
            tx.send(batch)
                .map_err(|_| "the replay stopped".to_owned())?;
        }
        if lines < PAGE {
            return Ok(());
        }
        #[derive(serde::Deserialize)]
        struct Cursor {
            cursor: String,
        }
        let next = serde_json::from_slice::<Cursor>(last_line)
            .map_err(|e| format!("the last event of a page has no cursor: {e}"))?;
        after = Some(next.cursor);
    }
}

/// The events of a file, one JSON object a line, handed on in batches.
fn read_file(path: &Path, tx: mpsc::SyncSender<Vec<AcceptedEvent>>) -> Result<(), String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, f);
    let mut line = Vec::new();
    let mut batch = Vec::with_capacity(BATCH);
    let mut n = 0usize;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if read == 0 {
            break;
        }
        n += 1;
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let event: AcceptedEvent = serde_json::from_slice(text)
            .map_err(|e| format!("{}:{n}: not an event: {e}", path.display()))?;
        batch.push(event);
        if batch.len() == BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            if tx.send(full).is_err() {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch);
    }
    Ok(())
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
