//! Rule unit tests (`tocsin test`), promtool-style: a test file names rule files, then cases of
//! input events at times on a virtual clock and the states, activations and notifications
//! expected at times. The cases run on the same service and engine as `tocsin serve`, over the
//! in-memory store; a day of events replays in milliseconds.
//!
//! ```toml
//! rules = ["alerts.tocsin"]          # relative to this file
//!
//! [[test]]
//! name = "three strong drift results fire"
//! events = [
//!   { at = "0m", kind = "data_drift_detected", entity = "scoring-eu", values = { result_value = 0.9 }, repeat = 3, every = "1m" },
//!   { at = "30m", reset = "endpoint-drift" },
//! ]
//! expect = [
//!   { at = "2m", alert = "endpoint-drift", state = "active", activations = 1, notifications = ["ml-alerts", "oncall"] },
//! ]
//! ```
//!
//! The rule files' `silence` blocks hold on the virtual clock too, which starts on Thursday
//! 2026-01-01 00:00 UTC: `silenced = ["ml-alerts"]` expects what they held back.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use serde::Deserialize;
use serde_json::{Map, Value as Json};
use tocsin_core::auth::Principal;
use tocsin_core::dispatch::Nowhere;
use tocsin_core::model::{
    Activation, AlertState, DeliveryStatus, Event, EventKind, Span, Timestamp, parse_period,
};
use tocsin_core::store::{ActivationQuery, MemoryStore, NameFilter};
use tocsin_core::{AlertsSettings, Service};

use crate::check::{CompiledAlert, CompiledSilence, check_source};
use crate::diagnostic::render;

/// Where the virtual clock starts: 2026-01-01T00:00:00Z.
pub const EPOCH: Timestamp = Timestamp(1_767_225_600_000_000);

/// The most events one input may repeat into (a case is meant to run in milliseconds).
pub const MAX_REPEAT: u32 = 100_000;

/// A test file that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum TestFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: the rules it names do not check:\n{rendered}")]
    Rules { path: PathBuf, rendered: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    rules: Vec<PathBuf>,
    #[serde(default, rename = "test")]
    tests: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    events: Vec<Input>,
    #[serde(default)]
    expect: Vec<Expect>,
}

/// An input at a time: an event (possibly repeated), or a reset of an alert.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    at: String,
    kind: Option<String>,
    entity: Option<String>,
    entity_kind: Option<String>,
    #[serde(default)]
    values: Map<String, Json>,
    #[serde(default = "one")]
    repeat: u32,
    every: Option<String>,
    reset: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    at: String,
    alert: String,
    state: Option<AlertState>,
    /// Activations of the alert so far.
    activations: Option<u64>,
    /// Notifications sent by its activations so far, in order.
    notifications: Option<Vec<String>>,
    /// Notifications a cooldown or an acknowledgement suppressed so far, in order.
    suppressed: Option<Vec<String>>,
    /// Notifications a silence of the rule files held back so far, in order.
    silenced: Option<Vec<String>>,
    /// Resolved notifications (`resolved true`) of the activations closed so far, in order.
    resolved: Option<Vec<String>>,
    /// The newest activation's summary.
    summary: Option<String>,
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub name: String,
    /// Each unmet expectation, in words: where, what was expected, what was got.
    pub failures: Vec<String>,
}

/// The outcome of a test file.
#[derive(Debug, Clone)]
pub struct Report {
    pub path: PathBuf,
    pub cases: Vec<CaseResult>,
}

impl Report {
    /// Whether every case passed.
    pub fn passed(&self) -> bool {
        self.cases.iter().all(|c| c.failures.is_empty())
    }
}

/// Runs the cases of the test file at `path`.
pub fn run_file(path: &Path) -> Result<Report, TestFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TestFileError::Io {
        path: path.into(),
        source,
    })?;
    let file: TestFile = toml::from_str(&text).map_err(|e| TestFileError::Syntax {
        path: path.into(),
        message: e.to_string(),
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut alerts = Vec::new();
    let mut silences = Vec::new();
    let mut project = String::new();
    for rules in &file.rules {
        let rules_path = dir.join(rules);
        let source = std::fs::read_to_string(&rules_path).map_err(|source| TestFileError::Io {
            path: rules_path.clone(),
            source,
        })?;
        let checked = check_source(&source, &|name| {
            Some(format!("https://secrets.invalid/{name}"))
        });
        if checked.has_errors() {
            return Err(TestFileError::Rules {
                path: path.into(),
                rendered: render(
                    &rules_path.display().to_string(),
                    &source,
                    &checked.diagnostics,
                    false,
                ),
            });
        }
        project = checked.project;
        alerts.extend(checked.alerts);
        silences.extend(checked.silences);
    }
    let cases = file
        .tests
        .iter()
        .map(|case| {
            run_case(&project, &alerts, &silences, case).unwrap_or_else(|e| CaseResult {
                name: case.name.clone(),
                failures: vec![e],
            })
        })
        .collect();
    Ok(Report {
        path: path.into(),
        cases,
    })
}

enum Step<'a> {
    Event(&'a Input),
    Reset(&'a str),
    Expect(&'a Expect),
}

fn offset(text: &str, what: &str) -> Result<Span, String> {
    parse_period(text).map_err(|e| format!("{what} `{text}`: {e}"))
}

/// Runs one case; Err for a case that is itself wrong (a bad time, an unknown kind).
fn run_case(
    project: &str,
    alerts: &[CompiledAlert],
    silences: &[CompiledSilence],
    case: &Case,
) -> Result<CaseResult, String> {
    let store = Arc::new(MemoryStore::new());
    let svc = Service::new(store, AlertsSettings::default(), Arc::new(Nowhere));
    // The rule files' silences hold on the virtual clock as they would on a server: a weekly
    // window in its time zone, a one-off window at its times.
    for s in silences {
        block_on(svc.store_silence(
            project,
            &s.id,
            s.spec.clone(),
            &Principal::anonymous(),
            EPOCH,
        ))
        .map_err(|e| format!("silence `{}` is refused by the service: {e}", s.id))?;
    }
    for a in alerts {
        block_on(svc.store_alert(project, &a.config.name, a.config.clone(), false, EPOCH))
            .map_err(|e| format!("alert `{}` is refused by the service: {e}", a.config.name))?;
    }
    let mut steps: Vec<(Span, u8, usize, Step)> = Vec::new();
    for (i, input) in case.events.iter().enumerate() {
        let at = offset(&input.at, "at")?;
        if let Some(alert) = &input.reset {
            steps.push((at, 0, i, Step::Reset(alert)));
            continue;
        }
        let every = input
            .every
            .as_deref()
            .map(|e| offset(e, "every"))
            .transpose()?
            .unwrap_or(Span(0));
        if input.repeat > MAX_REPEAT {
            return Err(format!(
                "event at {}: `repeat` is {}; at most {MAX_REPEAT} per input",
                input.at, input.repeat
            ));
        }
        for n in 0..input.repeat.max(1) {
            steps.push((
                Span(at.0 + every.0 * i64::from(n)),
                0,
                i,
                Step::Event(input),
            ));
        }
    }
    for (i, e) in case.expect.iter().enumerate() {
        steps.push((offset(&e.at, "at")?, 1, i, Step::Expect(e)));
    }
    steps.sort_by_key(|(at, order, i, _)| (at.0, *order, *i));

    let mut fired: Vec<Activation> = Vec::new();
    let mut failures = Vec::new();
    for (at, _, _, step) in steps {
        let now = EPOCH.plus(at);
        // The virtual clock ticks before each step, as `tocsin serve`'s does every second.
        let ticked =
            block_on(svc.tick(now)).map_err(|e| format!("the clock at {}: {e}", human(at)))?;
        fired.extend(
            ticked
                .fired
                .into_iter()
                .map(|f| Arc::unwrap_or_clone(f.activation)),
        );
        match step {
            Step::Event(input) => {
                let event = event(project, input, alerts)?;
                let kind = input.kind.as_deref().unwrap_or_default();
                let accepted = svc
                    .accept_event(project, kind, event, None, now)
                    .map_err(|e| format!("event at {}: {e}", input.at))?;
                let outcome = block_on(svc.ingest(&accepted))
                    .map_err(|e| format!("event at {}: {e}", input.at))?;
                fired.extend(
                    outcome
                        .fired
                        .into_iter()
                        .map(|f| Arc::unwrap_or_clone(f.activation)),
                );
            }
            Step::Reset(alert) => {
                block_on(svc.reset_alert(project, alert, "tocsin test", now))
                    .map_err(|e| format!("reset at {}: {e}", human(at)))?;
            }
            Step::Expect(e) => failures.extend(expect(&svc, project, &fired, e, at, now)),
        }
    }
    Ok(CaseResult {
        name: case.name.clone(),
        failures,
    })
}

fn event(project: &str, input: &Input, alerts: &[CompiledAlert]) -> Result<Event, String> {
    let kind_text = input
        .kind
        .as_deref()
        .ok_or_else(|| format!("the input at {} has neither `kind` nor `reset`", input.at))?;
    let kind: EventKind = kind_text
        .parse()
        .map_err(|e| format!("event at {}: {e}", input.at))?;
    let entity_kind = match (&input.entity_kind, kind.entity_kind()) {
        (Some(k), _) => k.clone(),
        (None, Some(k)) => k.as_str().to_owned(),
        (None, None) => alerts
            .iter()
            .find(|a| a.config.trigger.events.contains(&kind))
            .map(|a| a.config.entities.kind.as_str().to_owned())
            .ok_or_else(|| {
                format!(
                    "event at {}: say the entity kind of `{kind}` events with `entity_kind`",
                    input.at
                )
            })?,
    };
    let entity = input
        .entity
        .as_deref()
        .ok_or_else(|| format!("event at {} names no `entity`", input.at))?;
    serde_json::from_value(serde_json::json!({
        "kind": kind.as_str(), "entity": {"kind": entity_kind, "project": project, "ids": [entity]}, "value_dict": input.values
    }))
    .map_err(|e| format!("event at {}: {e}", input.at))
}

fn expect(
    svc: &Service,
    project: &str,
    fired: &[Activation],
    e: &Expect,
    at: Span,
    now: Timestamp,
) -> Vec<String> {
    let mut out = Vec::new();
    let whr = format!("at {}, alert `{}`", human(at), e.alert);
    let config = match block_on(svc.get_alert(project, &e.alert, now)) {
        Ok(c) => c,
        Err(err) => return vec![format!("{whr}: {err}")],
    };
    let mine: Vec<&Activation> = fired.iter().filter(|a| a.name == e.alert).collect();
    let mut check = |what: &str, want: String, got: String| {
        if want != got {
            out.push(format!(
                "{whr}: {what}\n      expected: {want}\n      got:      {got}"
            ));
        }
    };
    if let Some(state) = e.state {
        check("state", state.to_string(), config.state.to_string());
    }
    if let Some(n) = e.activations {
        check("activations", n.to_string(), config.count.to_string());
    }
    let names = |status: DeliveryStatus, silenced: bool| -> Vec<String> {
        mine.iter()
            .flat_map(|a| a.deliveries.iter())
            .filter(|d| d.status == status && d.silence.is_some() == silenced)
            .map(|d| d.notification.clone())
            .collect()
    };
    if let Some(want) = &e.notifications {
        check(
            "notifications sent",
            format!("{want:?}"),
            format!("{:?}", names(DeliveryStatus::Pending, false)),
        );
    }
    if let Some(want) = &e.suppressed {
        check(
            "notifications suppressed",
            format!("{want:?}"),
            format!("{:?}", names(DeliveryStatus::Suppressed, false)),
        );
    }
    if let Some(want) = &e.silenced {
        check(
            "notifications silenced",
            format!("{want:?}"),
            format!("{:?}", names(DeliveryStatus::Suppressed, true)),
        );
    }
    if let Some(want) = &e.resolved {
        // Closing adds them to the stored activation, after the firing's snapshot.
        let query = ActivationQuery {
            project: Some(project.to_owned()),
            name: Some(NameFilter::Exact(e.alert.clone())),
            limit: usize::MAX,
            ..Default::default()
        };
        let got: Vec<String> = match block_on(svc.activations(&query)) {
            Ok(mut acts) => {
                acts.reverse();
                acts.iter()
                    .flat_map(|a| a.deliveries.iter())
                    .filter(|d| d.resolved)
                    .map(|d| d.notification.clone())
                    .collect()
            }
            Err(err) => vec![format!("(cannot read the activations: {err})")],
        };
        check(
            "resolved notifications",
            format!("{want:?}"),
            format!("{got:?}"),
        );
    }
    if let Some(want) = &e.summary {
        let got = mine
            .last()
            .and_then(|a| a.summary.clone())
            .unwrap_or_else(|| "(no activation)".into());
        check("summary", format!("{want:?}"), format!("{got:?}"));
    }
    out
}

/// A virtual time as written in test files (`1h 30m`).
fn human(at: Span) -> String {
    if at.0 == 0 {
        return "0s".into();
    }
    humantime::format_duration(std::time::Duration::from_micros(at.0.unsigned_abs())).to_string()
}

/// Runs a future of the in-memory store to completion. Its futures never wait on anything
/// (the store is a lock and a map), so one poll finishes them; the loop is for safety.
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}
