//! The rule test runner against the examples' test files, and against a test that must fail.

use std::path::Path;

use tocsin_rules::testing::run_file;

#[test]
fn every_example_test_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut ran = 0;
    for file in [
        "fraud-detection/alerts.test.toml",
        "templates/templates.test.toml",
    ] {
        let report = run_file(&dir.join(file)).expect("runs");
        for case in &report.cases {
            assert!(
                case.failures.is_empty(),
                "{file} :: {}: {:#?}",
                case.name,
                case.failures
            );
            ran += 1;
        }
    }
    assert_eq!(ran, 9 + 11, "every case ran");
}

#[test]
fn an_unmet_expectation_fails_showing_expected_and_got() {
    let dir = tempdir();
    std::fs::write(
        dir.join("a.tocsin"),
        "project p\n\nalert twice {\n  on failed\n  entity job \"*\"\n  severity high\n  when count >= 2 within 1h per entity\n}\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("a.test.toml"),
        r#"rules = ["a.tocsin"]
[[test]]
name = "one failure is not enough"
events = [{ at = "0s", kind = "failed", entity = "j1" }, { at = "10m", kind = "failed", entity = "j2" }]
expect = [{ at = "10m", alert = "twice", state = "active", activations = 1 }]
"#,
    )
    .expect("write");
    let report = run_file(&dir.join("a.test.toml")).expect("runs");
    assert!(!report.passed());
    assert_eq!(
        report.cases[0].failures,
        [
            "at 10m, alert `twice`: state\n      expected: active\n      got:      inactive",
            "at 10m, alert `twice`: activations\n      expected: 1\n      got:      0",
        ]
    );
    std::fs::write(
        dir.join("b.test.toml"),
        "rules = [\"a.tocsin\"]\n[[test]]\nnam = 1\n",
    )
    .expect("write");
    let err = run_file(&dir.join("b.test.toml")).expect_err("a broken test file");
    assert!(err.to_string().contains("unknown field `nam`"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tocsin-rule-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
