//! `tocsin check` and the server give the same verdict: what the checker accepts, the server's
//! `compile` (what `PUT .../alerts/{name}` runs) accepts, and what the server refuses, the
//! checker refuses with a diagnostic at the statement that says it.

use tocsin_core::AlertsSettings;
use tocsin_core::compiled::compile;
use tocsin_rules::check_source;
use tocsin_rules::diagnostic::Level;

/// What the server says of each alert the checker compiled: the refusals.
fn server_refusals(source: &str) -> Vec<String> {
    let checked = check_source(source, &|_| None);
    checked
        .alerts
        .iter()
        .filter_map(|a| {
            compile(
                a.config.clone(),
                &checked.project,
                &a.config.name,
                &AlertsSettings::default(),
            )
            .err()
            .map(|e| e.to_string())
        })
        .collect()
}

/// The errors of `tocsin check`: (line, code).
fn check_errors(source: &str) -> Vec<(usize, String)> {
    let checked = check_source(source, &|_| None);
    checked
        .diagnostics
        .iter()
        .filter(|d| d.level == Level::Error)
        .map(|d| {
            let line = source[..d.span.start].lines().count().max(1);
            (line, d.code.as_str().to_owned())
        })
        .collect()
}

#[test]
fn an_absence_alert_that_would_not_reset_itself_is_refused_by_both() {
    for (file, line) in [
        (
            "project p\nalert quiet {\n  on failed\n  entity job \"*\"\n  severity high\n  when absent for 1h\n  reset manual\n}\n",
            7,
        ),
        (
            "project p\nalert quiet {\n  on failed\n  entity job \"*\"\n  severity high\n  when absent for 1h\n  cooldown 10m\n}\n",
            7,
        ),
    ] {
        assert!(
            server_refusals(file).is_empty(),
            "the checker lets nothing through"
        );
        let errors = check_errors(file);
        assert_eq!(errors.len(), 1, "{errors:?}\n{file}");
        assert_eq!(errors[0].0, line, "at the statement: {errors:?}");
    }
}

#[test]
fn an_absence_in_a_calculated_event_is_refused_by_both() {
    let file =
        "project p\nevent quiet-calc from failed {\n  entity job \"*\"\n  when absent for 1h\n}\n";
    assert!(server_refusals(file).is_empty());
    let errors = check_errors(file);
    assert_eq!(errors.len(), 1, "{errors:?}");
}

#[test]
fn expected_entities_outside_the_glob_are_refused_by_both() {
    let file = "project p\nalert q2 {\n  on failed\n  entity job \"ep1.*\"\n  severity high\n  when absent for 1h expecting [\"job9\"]\n}\n";
    assert!(server_refusals(file).is_empty());
    let errors = check_errors(file);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, 6);
}
