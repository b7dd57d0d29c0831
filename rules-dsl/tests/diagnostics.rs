//! Snapshot tests of rendered diagnostics: a catalogue of broken files (`tests/broken`), one
//! per code at least, each rendered as `tocsin check` prints it. The snapshots are the
//! reviewed output; a change in wording or spans shows up as a diff.

use std::collections::BTreeSet;
use std::path::Path;

use tocsin_rules::check_source;
use tocsin_rules::diagnostic::{Code, render};

fn broken_files() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/broken exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "tocsin"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let stem = p.file_stem().expect("stem").to_string_lossy().into_owned();
            (stem, std::fs::read_to_string(&p).expect("readable"))
        })
        .collect()
}

#[test]
fn every_broken_file_renders_as_reviewed() {
    for (stem, source) in broken_files() {
        let checked = check_source(&source, &|_| None);
        let rendered = render(
            &format!("{stem}.tocsin"),
            &source,
            &checked.diagnostics,
            false,
        );
        insta::assert_snapshot!(stem.clone(), rendered);
        let expected = &stem[..4];
        assert!(
            checked
                .diagnostics
                .iter()
                .any(|d| d.code.as_str() == expected),
            "{stem}: no {expected} among {:?}",
            checked
                .diagnostics
                .iter()
                .map(|d| d.code)
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn the_catalogue_covers_every_code() {
    let seen: BTreeSet<String> = broken_files()
        .iter()
        .flat_map(|(_, source)| check_source(source, &|_| None).diagnostics)
        .map(|d| d.code.as_str().to_owned())
        .collect();
    let missing: Vec<_> = Code::ALL
        .iter()
        .map(|c| c.as_str())
        .filter(|c| !seen.contains(*c))
        .collect();
    assert!(
        missing.is_empty(),
        "codes never shown by a broken file: {missing:?}"
    );
}

#[test]
fn a_file_with_many_mistakes_reports_them_all_in_source_order() {
    let source = "project p\n\nalert a {\n  on faild\n  severity hihg\n}\n\nalert b {\n  on failed\n  severity high\n  when count >= within 1h\n}\n\nalert c {\n  entity jobb \"x\"\n}\n";
    let checked = check_source(source, &|_| None);
    let codes: Vec<_> = checked
        .diagnostics
        .iter()
        .map(|d| d.code.as_str())
        .collect();
    assert_eq!(
        codes,
        ["E010", "E020", "E001", "E023", "E023", "E011"],
        "{:#?}",
        checked.diagnostics
    );
    let lines: Vec<_> = checked
        .diagnostics
        .iter()
        .map(|d| tocsin_rules::diagnostic::line_col(source, d.span.start))
        .collect();
    assert_eq!(
        lines,
        [(4, 6), (5, 12), (11, 17), (14, 7), (14, 7), (15, 10)]
    );
}

#[test]
fn json_diagnostics_carry_file_line_column_and_code() {
    let source = "project p\nalert a {\n  on faild\n  severity high\n}\n";
    let checked = check_source(source, &|_| None);
    let json: Vec<_> = checked
        .diagnostics
        .iter()
        .map(|d| {
            serde_json::to_value(tocsin_rules::diagnostic::to_json("a.tocsin", source, d))
                .expect("json")
        })
        .collect();
    assert_eq!(
        json,
        [serde_json::json!({
            "file": "a.tocsin", "code": "E010", "level": "error",
            "message": "unknown event kind `faild`", "line": 3, "column": 6, "end_line": 3, "end_column": 11,
            "label": "not a built-in or declared event kind", "help": "did you mean `failed`?"
        })]
    );
}
