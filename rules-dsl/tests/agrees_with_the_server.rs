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

mod generated {
    //! The same alert, drawn at random, written twice: as a rule file (checked by `tocsin
    //! check`) and as MLRun's wire JSON (what a client stores with `PUT`). The checker accepts
    //! the file exactly when the server accepts the JSON.

    use proptest::prelude::*;
    use serde_json::{Value, json};
    use tocsin_core::AlertsSettings;
    use tocsin_core::compiled::compile;
    use tocsin_core::model::AlertConfig;
    use tocsin_rules::check_source;

    /// An alert's parts, as the strategy draws them.
    #[derive(Debug, Clone)]
    struct Drawn {
        kinds: &'static [&'static str],
        entity: (&'static str, &'static str),
        criteria: Criterion,
        reset: Option<&'static str>,
        cooldown: Option<&'static str>,
        filter: Option<(&'static str, &'static str, Value)>,
        notify: Vec<(&'static str, &'static str)>,
        /// A calculated event (`event NAME from ...`) instead of an alert.
        calculated: bool,
    }

    #[derive(Debug, Clone)]
    enum Criterion {
        None,
        Count {
            count: i64,
            within: Option<&'static str>,
            per_entity: bool,
        },
        Sustain {
            span: &'static str,
            per_entity: bool,
        },
        Absent {
            span: &'static str,
            expecting: Vec<&'static str>,
        },
    }

    fn drawn() -> impl Strategy<Value = Drawn> {
        let criterion = prop_oneof![
            Just(Criterion::None),
            (
                prop::sample::select(vec![0i64, 1, 2, 5, 99, 100, 150]),
                proptest::option::of(prop::sample::select(vec!["0s", "10m", "1h"])),
                any::<bool>()
            )
                .prop_map(|(count, within, per_entity)| Criterion::Count {
                    count,
                    within,
                    per_entity
                }),
            (prop::sample::select(vec!["0s", "30m"]), any::<bool>())
                .prop_map(|(span, per_entity)| Criterion::Sustain { span, per_entity }),
            (
                prop::sample::select(vec!["0s", "1h", "1d"]),
                prop::sample::subsequence(vec!["j1", "k1", "jx"], 0..=2)
            )
                .prop_map(|(span, expecting)| Criterion::Absent { span, expecting }),
        ];
        (
            prop::sample::select(vec![
                &["failed"][..],
                &["data-drift-detected"][..],
                &["failed", "data-drift-detected"][..],
            ]),
            prop::sample::select(vec![
                ("job", "*"),
                ("job", "j1"),
                ("job", "j*"),
                ("model-endpoint-result", "*"),
            ]),
            criterion,
            proptest::option::of(prop::sample::select(vec!["auto", "manual"])),
            proptest::option::of(prop::sample::select(vec!["5s", "2m", "1h"])),
            proptest::option::of(prop::sample::select(vec![
                ("x", ">", json!(1)),
                ("x", "contains", json!("a")),
            ])),
            prop::sample::subsequence(
                vec![("webhook", "hook"), ("email", "mail"), ("slack", "team")],
                0..=2,
            ),
            any::<bool>(),
        )
            .prop_map(
                |(kinds, entity, criteria, reset, cooldown, filter, notify, calculated)| Drawn {
                    kinds,
                    entity,
                    criteria,
                    reset,
                    cooldown,
                    filter,
                    notify,
                    calculated,
                },
            )
    }

    impl Drawn {
        /// The rule file: `alert a` (or `event calc from ...`) in project `p`.
        fn file(&self) -> String {
            let mut s = String::from("project p\n\n");
            if self.calculated {
                s.push_str(&format!("event calc from {} {{\n", self.kinds.join(", ")));
            } else {
                s.push_str("alert a {\n");
                s.push_str(&format!(
                    "  on {}\n  severity high\n",
                    self.kinds.join(", ")
                ));
            }
            s.push_str(&format!(
                "  entity {} \"{}\"\n",
                self.entity.0, self.entity.1
            ));
            match &self.criteria {
                Criterion::None => {}
                Criterion::Count {
                    count,
                    within,
                    per_entity,
                } => {
                    s.push_str(&format!("  when count >= {count}"));
                    if let Some(w) = within {
                        s.push_str(&format!(" within {w}"));
                    }
                    if *per_entity {
                        s.push_str(" per entity");
                    }
                    s.push('\n');
                }
                Criterion::Sustain { span, per_entity } => {
                    let per = if *per_entity { " per entity" } else { "" };
                    s.push_str(&format!("  for {span}{per}\n"));
                }
                Criterion::Absent { span, expecting } => {
                    s.push_str(&format!("  when absent for {span}"));
                    if !expecting.is_empty() {
                        let ids: Vec<String> =
                            expecting.iter().map(|e| format!("\"{e}\"")).collect();
                        s.push_str(&format!(" expecting [{}]", ids.join(", ")));
                    }
                    s.push('\n');
                }
            }
            if let Some((field, op, value)) = &self.filter {
                s.push_str(&format!("  where value.{field} {op} {value}\n"));
            }
            if !self.calculated {
                if let Some(r) = self.reset {
                    s.push_str(&format!("  reset {r}\n"));
                }
                for (kind, name) in &self.notify {
                    let param = match *kind {
                        "webhook" => "url secret(\"URL\")",
                        "email" => "to \"oncall@example.com\"",
                        _ => "webhook secret(\"HOOK\")",
                    };
                    s.push_str(&format!(
                        "  notify {kind} \"{name}\" {{\n    {param}\n  }}\n"
                    ));
                }
            }
            if let Some(c) = self.cooldown {
                s.push_str(&format!("  cooldown {c}\n"));
            }
            s.push_str("}\n");
            s
        }

        /// The same alert as MLRun's wire JSON.
        fn config(&self) -> AlertConfig {
            let many = self.entity.1.contains('*');
            let criteria = match &self.criteria {
                Criterion::None => Value::Null,
                Criterion::Count {
                    count,
                    within,
                    per_entity,
                } => json!({"count": count, "period": within, "per_entity": per_entity}),
                // `for` on many entities holds per entity, said or not.
                Criterion::Sustain { span, per_entity } => {
                    json!({"count": 1, "sustain": span, "per_entity": many || *per_entity})
                }
                Criterion::Absent { span, expecting } => {
                    json!({"count": 1, "absent": span, "must_report": expecting})
                }
            };
            let notifications: Vec<Value> = self
                .notify
                .iter()
                .map(|(kind, name)| match *kind {
                    "webhook" => json!({"notification": {"kind": "webhook", "name": name,
                        "secret_params": {"url": "http://127.0.0.1:9/h"}}}),
                    "email" => json!({"notification": {"kind": "email", "name": name,
                        "params": {"email_addresses": ["oncall@example.com"]}}}),
                    _ => json!({"notification": {"kind": "slack", "name": name,
                        "secret_params": {"webhook": "http://127.0.0.1:9/s"}}}),
                })
                .collect();
            let name = if self.calculated { "calc" } else { "a" };
            let mut config = json!({
                "project": "p", "name": name, "severity": if self.calculated { "low" } else { "high" },
                "trigger": {"events": self.kinds},
                "entities": {"kind": self.entity.0, "project": "p", "ids": [self.entity.1]},
                "criteria": criteria,
                "reset_policy": if self.calculated { "auto" } else { self.reset.unwrap_or("auto") },
                "cooldown_period": self.cooldown,
                "notifications": if self.calculated { vec![] } else { notifications },
            });
            if let Some((field, op, value)) = &self.filter {
                config["filter"] = json!({"field": field, "op": op, "value": value});
            }
            if self.calculated {
                config["emits"] = json!("calc");
            }
            serde_json::from_value(config).expect("a wire config")
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn check_accepts_a_file_exactly_when_the_server_accepts_its_alert(d in drawn()) {
            let file = d.file();
            let checked = check_source(&file, &|s| Some(format!("http://127.0.0.1:9/{s}")));
            let server = compile(d.config(), "p", d.config().name.as_str(), &AlertsSettings::default());
            prop_assert_eq!(
                !checked.has_errors(),
                server.is_ok(),
                "\n{}\nchecker: {:?}\nserver: {:?}",
                file,
                checked.diagnostics.iter().map(|d| (d.code.as_str(), d.message.clone())).collect::<Vec<_>>(),
                server.err().map(|e| e.message)
            );
        }
    }
}
