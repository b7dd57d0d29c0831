//! The rules-as-code commands: `tocsin check`, `fmt`, `test`, `apply` and `export`, and the
//! loading of rule files by `tocsin serve`. The language itself is the `tocsin-rules` crate;
//! this module reads files, talks to a server, and prints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::Value;

use crate::client::{answer, get_json};
use tocsin_core::compiled::secret_reference;
use tocsin_core::model::{AlertConfig, Silence, SilenceState, Timestamp};
use tocsin_rules::diagnostic::{render, to_json};
use tocsin_rules::{CompiledAlert, CompiledSilence, Level, check_source};

/// The extension field that marks an alert as applied from a rule file (its value is the
/// file's path); `apply --prune` deletes only alerts that carry it.
pub const APPLIED_FROM: &str = "tocsin_rules";

/// `tocsin check` exits with this when there are warnings but no errors.
pub const EXIT_WARNINGS: u8 = 3;

/// How `check` prints diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
}

/// Secrets come from the environment: `secret("SLACK_WEBHOOK")` is `$SLACK_WEBHOOK`.
pub fn env_secret(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The files that `paths` name: files as given, directories searched (recursively, sorted)
/// for names ending in `suffix`.
pub fn files(paths: &[PathBuf], suffix: &str) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, suffix, &mut out).map_err(|e| format!("{}: {e}", p.display()))?;
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(format!("{}: no such file or directory", p.display()));
        }
    }
    Ok(out)
}

fn walk(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, suffix, out)?;
        } else if p.to_string_lossy().ends_with(suffix) {
            out.push(p);
        }
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Checks and compiles the rule files under `paths` with secrets from the environment; on
/// errors, the rendered diagnostics.
pub fn compile_files(
    paths: &[PathBuf],
    secret: &tocsin_rules::Resolver,
) -> Result<Vec<(PathBuf, tocsin_rules::Checked)>, String> {
    let mut out = Vec::new();
    let mut rendered = String::new();
    for path in files(paths, ".tocsin")? {
        let source = read(&path)?;
        let checked = check_source(&source, secret);
        if checked.has_errors() {
            rendered.push_str(&render(
                &path.display().to_string(),
                &source,
                &checked.diagnostics,
                false,
            ));
        } else {
            out.push((path, checked));
        }
    }
    if rendered.is_empty() {
        Ok(out)
    } else {
        Err(rendered)
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("tocsin: {msg}");
    ExitCode::from(2)
}

/// `tocsin check PATH...`: 0 clean, 1 errors, 3 warnings only, 2 when a file cannot be read.
pub fn check(paths: &[PathBuf], format: Format, color: bool) -> ExitCode {
    let files = match files(paths, ".tocsin") {
        Ok(f) => f,
        Err(e) => return fail(&e),
    };
    let (mut errors, mut warnings, mut json_out) = (0, 0, Vec::new());
    for path in &files {
        let source = match read(path) {
            Ok(s) => s,
            Err(e) => return fail(&e),
        };
        let checked = check_source(&source, &|_| None);
        let name = path.display().to_string();
        for d in &checked.diagnostics {
            match d.level {
                Level::Error => errors += 1,
                Level::Warning => warnings += 1,
            }
        }
        match format {
            Format::Human => eprint!("{}", render(&name, &source, &checked.diagnostics, color)),
            Format::Json => json_out.extend(
                checked
                    .diagnostics
                    .iter()
                    .map(|d| serde_json::to_value(to_json(&name, &source, d)).unwrap_or_default()),
            ),
        }
    }
    match format {
        Format::Json => say!("{}", Value::Array(json_out)),
        Format::Human => eprintln!(
            "checked {} file{}: {errors} error{}, {warnings} warning{}",
            files.len(),
            plural(files.len()),
            plural(errors),
            plural(warnings)
        ),
    }
    if errors > 0 {
        ExitCode::FAILURE
    } else if warnings > 0 {
        ExitCode::from(EXIT_WARNINGS)
    } else {
        ExitCode::SUCCESS
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `tocsin fmt PATH...` (`--check`: change nothing, exit 1 if a file is not formatted).
pub fn fmt(paths: &[PathBuf], check_only: bool) -> ExitCode {
    let files = match files(paths, ".tocsin") {
        Ok(f) => f,
        Err(e) => return fail(&e),
    };
    let mut unformatted = 0;
    for path in &files {
        let source = match read(path) {
            Ok(s) => s,
            Err(e) => return fail(&e),
        };
        let (file, errors) = tocsin_rules::parse(&source);
        if !errors.is_empty() {
            eprint!(
                "{}",
                render(&path.display().to_string(), &source, &errors, false)
            );
            return ExitCode::FAILURE;
        }
        let formatted = tocsin_rules::format(&file, &source);
        if formatted == source {
            continue;
        }
        unformatted += 1;
        if check_only {
            say!("would reformat {}", path.display());
        } else if let Err(e) = std::fs::write(path, formatted) {
            return fail(&format!("{}: {e}", path.display()));
        } else {
            say!("formatted {}", path.display());
        }
    }
    if check_only && unformatted > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `tocsin test PATH...`: runs every `*.test.toml` file.
pub fn test(paths: &[PathBuf]) -> ExitCode {
    let files = match files(paths, ".test.toml") {
        Ok(f) => f,
        Err(e) => return fail(&e),
    };
    let (mut passed, mut failed, mut broken) = (0, 0, 0);
    for path in &files {
        match tocsin_rules::testing::run_file(path) {
            Ok(report) => {
                for case in &report.cases {
                    if case.failures.is_empty() {
                        passed += 1;
                        say!("ok    {} :: {}", path.display(), case.name);
                    } else {
                        failed += 1;
                        say!("FAIL  {} :: {}", path.display(), case.name);
                        for f in &case.failures {
                            say!("    {f}");
                        }
                    }
                }
            }
            Err(e) => {
                broken += 1;
                say!("ERROR {e}");
            }
        }
    }
    say!(
        "{} test file{}: {passed} passed, {failed} failed{}",
        files.len(),
        plural(files.len()),
        if broken > 0 {
            format!(", {broken} could not run")
        } else {
            String::new()
        }
    );
    if failed + broken > 0 || files.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// What `apply` does to one alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Create,
    /// Resets the alert's state when what decides firing changed.
    Update {
        resets: bool,
    },
    Unchanged,
    Delete,
    /// On the server, not in the files, and not applied from files: left alone.
    Foreign,
}

/// The plan for one project: each alert's name and change.
pub fn plan(
    desired: &[AlertConfig],
    existing: &[AlertConfig],
    prune: bool,
) -> Vec<(String, Change)> {
    let by_name: BTreeMap<&str, &AlertConfig> =
        existing.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut out = Vec::new();
    for d in desired {
        let change = match by_name.get(d.name.as_str()) {
            None => Change::Create,
            Some(e) if comparable(e) == comparable(d) => Change::Unchanged,
            Some(e) => Change::Update {
                resets: e.behaviour() != d.behaviour(),
            },
        };
        out.push((d.name.clone(), change));
    }
    for e in existing {
        if desired.iter().any(|d| d.name == e.name) {
            continue;
        }
        let ours = e.extra.contains_key(APPLIED_FROM);
        let change = match (ours, prune) {
            (true, true) => Change::Delete,
            _ => Change::Foreign,
        };
        out.push((e.name.clone(), change));
    }
    out
}

/// A config as both sides can show it: server-owned fields cleared, secrets masked.
fn comparable(c: &AlertConfig) -> Value {
    let mut c = c.clone();
    c.clear_server_fields();
    for n in &mut c.notifications {
        if n.notification
            .secret_params
            .as_ref()
            .is_some_and(|s| !s.is_empty())
        {
            n.notification.secret_params =
                Some(secret_reference(&c.project, &c.name, &n.notification.name));
        }
    }
    serde_json::to_value(c).unwrap_or_default()
}

/// `tocsin apply PATH... --server URL [--dry-run] [--prune]`.
pub async fn apply(paths: &[PathBuf], server: &str, dry_run: bool, prune: bool) -> ExitCode {
    let compiled = match compile_files(paths, &env_secret) {
        Ok(c) => c,
        Err(rendered) => {
            eprint!("{rendered}");
            eprintln!("tocsin: nothing applied: the rules do not check");
            return ExitCode::FAILURE;
        }
    };
    let mut projects: BTreeMap<String, Vec<(PathBuf, CompiledAlert)>> = BTreeMap::new();
    let mut silences: BTreeMap<String, Vec<CompiledSilence>> = BTreeMap::new();
    for (path, checked) in compiled {
        for a in checked.alerts {
            projects
                .entry(checked.project.clone())
                .or_default()
                .push((path.clone(), a));
        }
        if !checked.silences.is_empty() {
            projects.entry(checked.project.clone()).or_default();
            silences
                .entry(checked.project)
                .or_default()
                .extend(checked.silences.into_iter().map(|mut s| {
                    s.spec.applied_from = Some(path.display().to_string());
                    s
                }));
        }
    }
    let base = server.trim_end_matches('/');
    let client = crate::client::http();
    let mut failed = false;
    for (project, alerts) in &projects {
        let list_url = format!("{base}/api/v1/projects/{project}/alerts");
        let existing: Vec<AlertConfig> = match get_json(&client, &list_url).await {
            Ok(v) => {
                match serde_json::from_value(v.get("alerts").cloned().unwrap_or(Value::Null)) {
                    Ok(list) => list,
                    Err(e) => return fail(&format!("{list_url}: unexpected answer: {e}")),
                }
            }
            Err(e) => return fail(&e),
        };
        let desired: Vec<AlertConfig> = alerts
            .iter()
            .map(|(path, a)| {
                let mut c = a.config.clone();
                c.extra
                    .insert(APPLIED_FROM.into(), Value::from(path.display().to_string()));
                c
            })
            .collect();
        let steps = plan(&desired, &existing, prune);
        say!("Plan for project {project} on {base}:");
        let mut counts = BTreeMap::new();
        for (name, change) in &steps {
            let (sign, word) = match change {
                Change::Create => ("+", "create".to_owned()),
                Change::Update { resets: true } => ("~", "update (resets its state)".to_owned()),
                Change::Update { resets: false } => ("~", "update".to_owned()),
                Change::Unchanged => ("=", "unchanged".to_owned()),
                Change::Delete => ("-", "delete".to_owned()),
                Change::Foreign => (
                    "!",
                    "not in the files; kept (not applied by tocsin, or no --prune)".to_owned(),
                ),
            };
            *counts.entry(sign).or_insert(0) += 1;
            say!("  {sign} {name}: {word}");
        }
        say!(
            "  {} to create, {} to update, {} to delete, {} unchanged",
            counts.get("+").unwrap_or(&0),
            counts.get("~").unwrap_or(&0),
            counts.get("-").unwrap_or(&0),
            counts.get("=").unwrap_or(&0)
        );
        // A new alert needs its secrets now: nothing on the server can stand in for them.
        for ((_, a), (name, change)) in alerts.iter().zip(&steps) {
            if *change == Change::Create && !a.unresolved_secrets.is_empty() {
                eprintln!(
                    "tocsin: alert `{name}` is new and needs its secrets: set {}",
                    a.unresolved_secrets.join(", ")
                );
                return ExitCode::FAILURE;
            }
        }
        let silences = silences.get(project).map_or(&[][..], Vec::as_slice);
        let silence_steps = match stored_silences(&client, base, project).await {
            Ok(stored) => silence_plan(silences, &stored, prune, Timestamp::now()),
            Err(e) => return fail(&e),
        };
        for (id, change) in &silence_steps {
            let (sign, word) = match change {
                Change::Create => ("+", "create"),
                Change::Unchanged => ("=", "unchanged"),
                Change::Update { .. } => ("~", "update"),
                Change::Delete => ("-", "expire"),
                Change::Foreign => ("!", "not in the files; kept (no --prune)"),
            };
            say!("  {sign} silence {id}: {word}");
        }
        if dry_run {
            continue;
        }
        // The files' silences come first in the plan, in order (see `silence_plan`).
        for (i, (id, change)) in silence_steps.iter().enumerate() {
            let url = format!("{base}/api/v1/projects/{project}/silences/{id}");
            let (url, request) = match (change, silences.get(i)) {
                (Change::Create | Change::Update { .. }, Some(s)) => {
                    let put = client.put(&url).json(&s.spec);
                    (url, put)
                }
                (Change::Delete, _) => {
                    let url = format!("{url}/expire");
                    let post = client.post(&url);
                    (url, post)
                }
                _ => continue,
            };
            if let Err(e) = answer(&url, request.send().await).await {
                eprintln!("tocsin: silence {id}: {e}");
                failed = true;
            }
        }
        for (config, (name, change)) in desired.iter().zip(&steps) {
            if matches!(change, Change::Create | Change::Update { .. }) {
                let url = format!("{list_url}/{name}");
                let r = client.put(&url).json(config).send().await;
                if let Err(e) = answer(&url, r).await {
                    eprintln!("tocsin: {name}: {e}");
                    failed = true;
                }
            }
        }
        for (name, change) in &steps[desired.len()..] {
            if *change == Change::Delete {
                let url = format!("{list_url}/{name}");
                if let Err(e) = answer(&url, client.delete(&url).send().await).await {
                    eprintln!("tocsin: {name}: {e}");
                    failed = true;
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        if !dry_run {
            say!("applied");
        }
        ExitCode::SUCCESS
    }
}

/// The project's silences on the server, expired ones included (a silence of the files that
/// was expired by hand is stored again).
async fn stored_silences(
    client: &reqwest::Client,
    base: &str,
    project: &str,
) -> Result<Vec<Silence>, String> {
    let url = format!("{base}/api/v1/projects/{project}/silences?state=all");
    let listed = get_json(client, &url).await?;
    let all = listed["silences"]
        .as_array()
        .ok_or_else(|| format!("{url}: unexpected answer: no `silences` list"))?;
    all.iter()
        .map(|s| serde_json::from_value(s.clone()).map_err(|e| format!("{url}: {e}")))
        .collect()
}

/// What applying the files' silences does, as [`plan`] does for alerts: first each silence of
/// the files in order (create it, change it, or nothing: the server's has the same matchers,
/// times, schedule, comment, author and file), then each silence on the server that an
/// earlier apply brought from a file, that the files no longer define and that still holds or
/// is still to come: expired with `prune`, otherwise kept. Silences made by hand are never
/// in the plan.
pub fn silence_plan(
    silences: &[CompiledSilence],
    stored: &[Silence],
    prune: bool,
    now: Timestamp,
) -> Vec<(String, Change)> {
    let mut out: Vec<(String, Change)> = silences
        .iter()
        .map(|s| {
            let change = match stored.iter().find(|x| x.id == s.id) {
                None => Change::Create,
                Some(x)
                    if x.matchers == s.spec.matchers
                        && s.spec.starts_at.is_none_or(|t| t == x.starts_at)
                        && x.ends_at == s.spec.ends_at
                        && x.schedule == s.spec.schedule
                        && x.comment == s.spec.comment
                        && x.expired_by.is_none()
                        && x.applied_from == s.spec.applied_from
                        && s.spec
                            .created_by
                            .as_ref()
                            .is_none_or(|b| *b == x.created_by) =>
                {
                    Change::Unchanged
                }
                Some(_) => Change::Update { resets: false },
            };
            (s.id.clone(), change)
        })
        .collect();
    for x in stored {
        let from_files = x.applied_from.is_some();
        let holds = !matches!(x.state_at(now), SilenceState::Expired { .. });
        if from_files && holds && !silences.iter().any(|s| s.id == x.id) {
            let change = if prune {
                Change::Delete
            } else {
                Change::Foreign
            };
            out.push((x.id.clone(), change));
        }
    }
    out
}

/// `tocsin export`: a project's alerts (from a server, or from a wire JSON file: one config,
/// a list, or `{"alerts": [...]}`), and from a server its active and pending silences, as rule
/// source on stdout; notes on what was left out go to stderr.
pub async fn export(server: Option<&str>, from: Option<&Path>, project: &str) -> ExitCode {
    let value = match (from, server) {
        (Some(path), _) => match read(path).and_then(|t| {
            serde_json::from_str::<Value>(&t).map_err(|e| format!("{}: {e}", path.display()))
        }) {
            Ok(v) => v,
            Err(e) => return fail(&e),
        },
        (None, Some(server)) => {
            let url = format!(
                "{}/api/v1/projects/{project}/alerts",
                server.trim_end_matches('/')
            );
            match get_json(&crate::client::http(), &url).await {
                Ok(v) => v,
                Err(e) => return fail(&e),
            }
        }
        (None, None) => return fail("say where from: --server URL or --from FILE.json"),
    };
    let items = match value {
        Value::Object(mut o) if o.contains_key("alerts") => o.remove("alerts").unwrap_or_default(),
        Value::Array(a) => Value::Array(a),
        one => Value::Array(vec![one]),
    };
    let mut configs: Vec<AlertConfig> = match serde_json::from_value(items) {
        Ok(c) => c,
        Err(e) => return fail(&format!("not alert configs: {e}")),
    };
    configs.retain(|c| c.project == project);
    for c in &mut configs {
        c.extra.remove(APPLIED_FROM);
    }
    let silences: Vec<Silence> = match server {
        Some(server) if from.is_none() => {
            let url = format!(
                "{}/api/v1/projects/{project}/silences?state=current",
                server.trim_end_matches('/')
            );
            match get_json(&crate::client::http(), &url).await {
                Ok(v) => v["silences"]
                    .as_array()
                    .map(|all| {
                        all.iter()
                            .filter_map(|s| serde_json::from_value(s.clone()).ok())
                            .collect()
                    })
                    .unwrap_or_default(),
                Err(e) => return fail(&e),
            }
        }
        _ => Vec::new(),
    };
    let (source, notes) = tocsin_rules::export::export(&configs, &silences);
    say_raw!("{source}");
    for n in notes {
        eprintln!("note: {n}");
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use tocsin_core::model::{Silence, Timestamp};
    use tocsin_rules::{CompiledSilence, check_source};

    use super::{Change, silence_plan};

    /// The silences of a rule file, marked as `apply` marks them.
    fn from_file(source: &str) -> Vec<CompiledSilence> {
        let checked = check_source(source, &|_| None);
        assert!(checked.diagnostics.is_empty(), "{:?}", checked.diagnostics);
        checked
            .silences
            .into_iter()
            .map(|mut s| {
                s.spec.applied_from = Some("rules/p.tocsin".into());
                s
            })
            .collect()
    }

    fn stored(s: &CompiledSilence, now: Timestamp) -> Silence {
        s.silence("p", "ann", now).expect("a valid silence")
    }

    const TWO: &str = r#"project p
silence upgrade {
  comment "database upgrade"
  match alert "drift-*"
  until "2026-12-05T00:00:00Z"
}
silence weekly {
  comment "maintenance"
  every sat 02:00 to 04:00 "Europe/Berlin"
}
"#;

    #[test]
    fn a_silence_the_files_no_longer_define_is_expired_only_with_prune_and_only_if_from_files() {
        let now = Timestamp::parse("2026-12-04T12:00:00Z").expect("time");
        let both = from_file(TWO);
        let mut on_server: Vec<Silence> = both.iter().map(|s| stored(s, now)).collect();
        let mut by_hand = stored(&both[0], now);
        by_hand.id = "by-hand".into();
        by_hand.applied_from = None;
        on_server.push(by_hand);

        let unchanged = silence_plan(&both, &on_server, true, now);
        assert_eq!(
            unchanged,
            vec![
                ("upgrade".to_owned(), Change::Unchanged),
                ("weekly".to_owned(), Change::Unchanged)
            ]
        );

        let only_weekly: Vec<CompiledSilence> =
            both.iter().filter(|s| s.id == "weekly").cloned().collect();
        assert_eq!(
            silence_plan(&only_weekly, &on_server, true, now),
            vec![
                ("weekly".to_owned(), Change::Unchanged),
                ("upgrade".to_owned(), Change::Delete)
            ]
        );
        assert_eq!(
            silence_plan(&only_weekly, &on_server, false, now)[1],
            ("upgrade".to_owned(), Change::Foreign)
        );

        // Already over: nothing to expire.
        let later = Timestamp::parse("2026-12-06T00:00:00Z").expect("time");
        assert_eq!(
            silence_plan(&only_weekly, &on_server, true, later),
            vec![("weekly".to_owned(), Change::Unchanged)]
        );
    }

    #[test]
    fn a_silence_stored_by_hand_under_a_files_id_is_taken_back_by_the_next_apply() {
        let now = Timestamp::parse("2026-12-04T12:00:00Z").expect("time");
        let both = from_file(TWO);
        let mut on_server: Vec<Silence> = both.iter().map(|s| stored(s, now)).collect();
        on_server[0].applied_from = None;
        assert_eq!(
            silence_plan(&both, &on_server, true, now)[0],
            ("upgrade".to_owned(), Change::Update { resets: false })
        );
    }
}
