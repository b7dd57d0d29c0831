//! Round trips: formatting keeps meaning (`parse(fmt(x)) == parse(x)`, and `fmt` twice changes
//! nothing), and exporting keeps configs (`compile(export(config)) == config`).

use std::path::{Path, PathBuf};

use serde_json::json;
use tocsin_core::model::AlertConfig;
use tocsin_rules::{check_source, format, parse};

fn examples() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("examples dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "tocsin") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"),
        &mut files,
    );
    files.sort();
    assert!(files.len() >= 12, "the examples are there");
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable");
            (p, text)
        })
        .collect()
}

#[test]
fn examples_are_canonical_and_formatting_keeps_their_meaning() {
    for (path, source) in examples() {
        let (file, errors) = parse(&source);
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        let formatted = format(&file, &source);
        assert_eq!(
            formatted,
            source,
            "{} is not in canonical form",
            path.display()
        );
        let (again, errors) = parse(&formatted);
        assert!(errors.is_empty());
        assert_eq!(again, file, "{}", path.display());
    }
}

const MESSY: &str = r#"
# leading comment
alert  drift   extends   watch{summary "a \"quoted\" {{entity}}"   # trailing
on data_drift_detected,data_drift_suspected entity model-endpoint-result "ep-*"
where not (value.a > 1 or value.b == "x") and value.c != null
  # a comment inside
when count>=3 within 10m per entity notify slack "s"{webhook secret("S") cooldown 5m}
}
project   p
template watch { severity high }
event cpu on job
event cpu-high from cpu { where value.cpu >= 70.5 for 1h }
"#;

#[test]
fn a_messy_file_formats_to_the_canonical_layout_once_and_for_all() {
    let (file, errors) = parse(MESSY);
    assert!(errors.is_empty(), "{errors:?}");
    let formatted = format(&file, MESSY);
    let expected = r#"# leading comment
alert drift extends watch {
  summary "a \"quoted\" {{entity}}"  # trailing
  on data_drift_detected, data_drift_suspected
  entity model-endpoint-result "ep-*"
  where not (value.a > 1 or value.b == "x") and value.c != null
  # a comment inside
  when count >= 3 within 10m per entity
  notify slack "s" {
    webhook secret("S")
    cooldown 5m
  }
}

project p

template watch {
  severity high
}

event cpu on job

event cpu-high from cpu {
  where value.cpu >= 70.5
  for 1h
}
"#;
    assert_eq!(formatted, expected);
    let (again, errors) = parse(&formatted);
    assert!(errors.is_empty());
    assert_eq!(again, file, "formatting changed the meaning");
    assert_eq!(
        format(&again, &formatted),
        formatted,
        "fmt twice changes nothing"
    );
    assert!(!check_source(MESSY, &|_| None).has_errors());
}

#[test]
fn parentheses_are_kept_where_precedence_needs_them() {
    for (src, canonical) in [
        (
            "value.a > 1 or value.b > 2 and value.c > 3",
            "value.a > 1 or value.b > 2 and value.c > 3",
        ),
        (
            "(value.a > 1 or value.b > 2) and value.c > 3",
            "(value.a > 1 or value.b > 2) and value.c > 3",
        ),
        (
            "value.a > 1 and (value.b > 2 and value.c > 3)",
            "value.a > 1 and (value.b > 2 and value.c > 3)",
        ),
        ("not not value.a == true", "not not value.a == true"),
        ("((value.a > 1))", "value.a > 1"),
    ] {
        let source =
            format!("project p\nalert a {{\n  on failed\n  severity low\n  where {src}\n}}\n");
        let (file, errors) = parse(&source);
        assert!(errors.is_empty(), "{src}: {errors:?}");
        let formatted = format(&file, &source);
        assert!(
            formatted.contains(&format!("where {canonical}\n")),
            "{src} -> {formatted}"
        );
        assert_eq!(parse(&formatted).0, file, "{src}");
    }
}

/// Compiles every example, exports the configs per project, and compiles the export.
#[test]
fn exported_example_configs_compile_back_to_the_same_configs() {
    let mut by_project: std::collections::BTreeMap<String, Vec<AlertConfig>> = Default::default();
    for (path, source) in examples() {
        let checked = check_source(&source, &|_| None);
        assert!(!checked.has_errors(), "{}", path.display());
        by_project
            .entry(checked.project)
            .or_default()
            .extend(checked.alerts.into_iter().map(|a| a.config));
    }
    for (project, configs) in by_project {
        assert_round_trip(&project, &configs);
    }
}

/// Wire configs as MLRun's client and Tocsin's API write them, read back from a server.
#[test]
fn wire_configs_compile_back_from_their_export() {
    let configs: Vec<AlertConfig> = serde_json::from_value(json!([
        {"project": "my-project", "name": "drift-alert", "description": "drift on ep1", "summary": "Model {{project}}/{{entity}} drifts",
         "severity": "low", "reset_policy": "auto", "cooldown_period": "1h",
         "criteria": {"count": 3, "period": "1h"},
         "trigger": {"events": ["data-drift-detected", "data-drift-suspected"]},
         "entities": {"kind": "model-endpoint-result", "project": "my-project", "ids": ["ep1.app.res"]},
         "notifications": [{"notification": {"kind": "slack", "name": "slack_notification", "message": "drift", "severity": "warning",
            "secret_params": {"secret": "tocsin:my-project/drift-alert/slack_notification"}}, "cooldown_period": "10m"},
            {"notification": {"kind": "mail", "name": "ops", "params": {"email_addresses": ["a@example.com", "b@example.com"]}}}]},
        {"project": "my-project", "name": "job-failed", "severity": "medium", "reset_policy": "manual",
         "trigger": {"events": ["failed"]}, "entities": {"kind": "job", "project": "my-project", "ids": ["*"]},
         "criteria": {"count": 2, "period": "30m", "per_entity": true},
         "filter": {"any": [{"field": "error", "op": "contains", "value": "OOM"}, {"not": {"field": "retries", "op": "<", "value": 3}}]},
         "notifications": [{"notification": {"kind": "webhook", "name": "pager", "params": {"method": "post"},
            "secret_params": {"secret": "tocsin:my-project/job-failed/pager"}}},
            {"notification": {"kind": "event", "name": "escalate", "params": {"event_kind": "failed", "entity_id": "{{entity}}-escalated"}}}]},
        {"project": "my-project", "name": "gpu-hot", "severity": "low", "summary": "{{entity}}: gpu-hot",
         "trigger": {"events": ["gpu-usage"]}, "entities": {"kind": "job", "project": "my-project", "ids": ["*"]},
         "criteria": {"count": 1, "period": null, "per_entity": true, "sustain": "30m"},
         "filter": {"field": "gpu", "op": ">=", "value": 0.95}, "emits": "gpu-hot"},
    ]))
    .expect("wire configs");
    assert_round_trip("my-project", &configs);
}

fn assert_round_trip(project: &str, configs: &[AlertConfig]) {
    let (source, notes) = tocsin_rules::export::export(configs, &[]);
    assert!(notes.is_empty(), "{project}: {notes:?}");
    let checked = check_source(&source, &|_| None);
    assert!(
        !checked.has_errors(),
        "{project}: the export does not check:\n{}\n{source}",
        tocsin_rules::diagnostic::render("export", &source, &checked.diagnostics, false)
    );
    let back: Vec<_> = checked
        .alerts
        .into_iter()
        .map(|a| serde_json::to_value(a.config).expect("json"))
        .collect();
    let want: Vec<_> = configs
        .iter()
        .map(|c| serde_json::to_value(c).expect("json"))
        .collect();
    assert_eq!(back.len(), want.len(), "{project}");
    for (b, w) in back.iter().zip(&want) {
        assert_eq!(b, w, "{project}: compiled back differently from\n{source}");
    }
}

#[test]
fn export_notes_what_the_language_cannot_say() {
    let configs: Vec<AlertConfig> = serde_json::from_value(json!([
        {"project": "p", "name": "a", "severity": "low", "x-team": "fraud",
         "trigger": {"events": ["failed"]}, "entities": {"kind": "job", "project": "p", "ids": ["*"]},
         "notifications": [{"notification": {"kind": "slack", "name": "s", "when": ["now"], "condition": "failed",
            "params": {"webhook": "https://hooks.slack.com/x", "channel": "#ml"}}}]}
    ]))
    .expect("configs");
    let (source, notes) = tocsin_rules::export::export(&configs, &[]);
    assert!(
        source.contains("webhook secret(\"A_S_WEBHOOK\")"),
        "{source}"
    );
    assert!(
        !source.contains("hooks.slack.com"),
        "no secret in the export"
    );
    let all = notes.join("\n");
    for part in [
        "`x-team`",
        "`webhook` was inline; set A_S_WEBHOOK",
        "`channel`",
        "`when`/`condition`",
    ] {
        assert!(all.contains(part), "{part} not noted in:\n{all}");
    }
    assert!(!check_source(&source, &|_| None).has_errors());
}
