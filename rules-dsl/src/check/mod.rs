//! The checking pass and the compiler: resolves names, kinds and templates, reports every error
//! and warning of a file at once, and turns each alert and calculated event into the alert
//! config the service stores (MLRun's wire format plus Tocsin's extension fields).
//!
//! Templates merge in a documented order: an alert's `extends` list is applied left to right,
//! each template already merged with its own `extends`, then the alert's own statements. A
//! later statement replaces an earlier one of the same keyword (`when` and `for` are one slot:
//! the criteria); `notify` statements accumulate, and a later one with the same name replaces
//! the earlier one in place.
//!
//! One file per construct, each adding the `Checker` methods for it: `names` (the project,
//! names, kinds), `merge` (templates and `extends`), `alert` (an alert or calculated event),
//! `filter` (`where`), `notify` (notifications) and `values` (durations, words, placeholders).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value as Json, json};
use tocsin_core::compiled::secret_reference;
use tocsin_core::engine::PLACEHOLDERS;
use tocsin_core::model::{
    AlertConfig, AlertName, AlertNotification, CompareOp, Criteria, Entities, EntityKind,
    EventKind, Filter, Notification, NotificationKind, NotificationSeverity, ParamSpec,
    ProjectName, ResetPolicy, Severity, Shape, Trigger, parse_period,
};
use tocsin_core::{AlertsSettings, templates};

use crate::ast::{Definition, Expr, File, Item, Literal, Param, Span, Spanned, Statement, Value};
use crate::diagnostic::{Code, Diagnostic, Level, did_you_mean};

mod alert;
mod filter;
mod merge;
mod names;
mod notify;
mod silence;
mod values;

pub use notify::secret_name;
pub use silence::CompiledSilence;

use names::name_error;
use values::{number, number_or_string};

/// Resolves `secret("NAME")` references to values (None: leave the server's stored one). Sync,
/// because large files are checked on several threads.
pub type Resolver = dyn Fn(&str) -> Option<String> + Sync;

/// Files larger than this are checked on several threads, a share of the items each.
const PARALLEL_ABOVE: usize = 256;

/// An alert config compiled from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledAlert {
    pub config: AlertConfig,
    /// Where the alert (or calculated event) is defined.
    pub span: Span,
    /// Secrets the config refers to that the resolver did not know: their notifications carry
    /// the server's masked reference instead, which keeps a secret already stored.
    pub unresolved_secrets: Vec<String>,
}

/// What checking a file gives: its project, the compiled alerts (when there are no errors) and
/// every diagnostic, in source order.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub project: String,
    pub alerts: Vec<CompiledAlert>,
    /// The file's silences (when there are no errors).
    pub silences: Vec<CompiledSilence>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.level == Level::Error)
    }
}

/// Parses and checks `source`; `secret` resolves `secret("NAME")` references (return None to
/// leave them to the server's stored value).
pub fn check_source(source: &str, secret: &Resolver) -> Checked {
    let (file, mut diagnostics) = crate::parse(source);
    let mut checked = check(&file, secret);
    diagnostics.append(&mut checked.diagnostics);
    diagnostics.sort_by_key(|d| (d.span.start, d.code));
    checked.diagnostics = diagnostics;
    if checked.has_errors() {
        checked.alerts.clear();
        checked.silences.clear();
    }
    checked
}

/// Checks a parsed file and compiles its alerts.
pub fn check(file: &File, secret: &Resolver) -> Checked {
    let mut c = Checker {
        diags: Vec::new(),
        secret,
        settings: AlertsSettings::default(),
        templates: BTreeMap::new(),
        custom: BTreeMap::new(),
        used_templates: BTreeSet::new(),
        broken_templates: BTreeSet::new(),
        project: String::new(),
    };
    c.run(file)
}

#[derive(Clone)]
struct Checker<'f> {
    diags: Vec<Diagnostic>,
    secret: &'f Resolver,
    settings: AlertsSettings,
    templates: BTreeMap<String, &'f Definition>,
    /// Custom and calculated event kinds declared in the file, with their entity kind when
    /// known.
    custom: BTreeMap<String, Option<EntityKind>>,
    used_templates: BTreeSet<String>,
    /// Templates whose definition did not parse (see [`File::unparsed`]).
    broken_templates: BTreeSet<String>,
    project: String,
}

/// Whether a calculated event takes this statement: its severity, summary and reset are fixed,
/// its trigger is its `from`, and it notifies no one (alerts on it do).
fn fits_calculated_event(s: &Statement) -> bool {
    !matches!(
        s,
        Statement::Severity(_)
            | Statement::Summary(_)
            | Statement::Notify { .. }
            | Statement::Reset(_)
            | Statement::On(_)
    )
}

/// A statement in an alert's merged list: borrowed from the file, or made from a built-in
/// template.
type Merged<'f> = Cow<'f, Spanned<Statement>>;

/// A statement with the keyword slot it fills in a merge.
fn slot(s: &Statement) -> &'static str {
    match s {
        Statement::When { .. } | Statement::For { .. } | Statement::Absent { .. } => "criteria",
        other => other.keyword(),
    }
}

impl<'f> Checker<'f> {
    fn run(&mut self, file: &'f File) -> Checked {
        self.declarations(file);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut alerts = Vec::new();
        if threads > 1 && file.items.len() > PARALLEL_ABOVE {
            // Items are checked independently once the declarations are known: each thread
            // takes a contiguous share, and the results are joined in source order.
            let share = file.items.len().div_ceil(threads);
            let results: Vec<(Vec<CompiledAlert>, Checker<'f>)> = std::thread::scope(|scope| {
                let handles: Vec<_> = file
                    .items
                    .chunks(share)
                    .map(|items| {
                        let mut worker = self.clone();
                        worker.diags.clear();
                        scope.spawn(move || {
                            let alerts = worker.items(items);
                            (alerts, worker)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect()
            });
            for (mut part, worker) in results {
                alerts.append(&mut part);
                self.diags.extend(worker.diags);
                self.used_templates.extend(worker.used_templates);
            }
        } else {
            alerts = self.items(&file.items);
        }
        for (name, def) in &self.templates {
            if !self.used_templates.contains(name) {
                self.diags.push(
                    Diagnostic::warning(
                        Code::UnusedTemplate,
                        def.name.span.clone(),
                        format!("template `{name}` is never used"),
                    )
                    .label("nothing extends this template")
                    .help("extend it from an alert, or remove it"),
                );
            }
        }
        let mut silences = Vec::new();
        let mut silence_names: BTreeMap<String, Span> = BTreeMap::new();
        for item in &file.items {
            if let Item::Silence {
                name,
                statements,
                span,
            } = item
            {
                if silence_names
                    .insert(name.node.clone(), name.span.clone())
                    .is_some()
                {
                    self.diags.push(
                        Diagnostic::error(
                            Code::DuplicateName,
                            name.span.clone(),
                            format!("silence `{}` is defined twice", name.node),
                        )
                        .label("defined again here"),
                    );
                }
                silences.extend(self.silence(name, statements, span));
            }
        }
        let mut diagnostics = std::mem::take(&mut self.diags);
        diagnostics.sort_by_key(|d| (d.span.start, d.code));
        Checked {
            project: self.project.clone(),
            alerts,
            silences,
            diagnostics,
        }
    }

    /// Checks and compiles items (after the declarations).
    fn items(&mut self, items: &'f [Item]) -> Vec<CompiledAlert> {
        let mut alerts = Vec::new();
        for item in items {
            match item {
                Item::Alert(d) => {
                    self.block_rules(&d.statements, false);
                    let merged = self.merged(d, &mut Vec::new());
                    if let Some(a) = self.alert(&d.name, &merged, None, d.span.clone()) {
                        alerts.push(a);
                    }
                }
                Item::Template(d) => self.block_rules(&d.statements, false),
                Item::CalculatedEvent {
                    name,
                    from,
                    statements,
                    span,
                } => {
                    self.block_rules(statements, true);
                    if let Some(a) = self.calculated(name, from, statements, span.clone()) {
                        alerts.push(a);
                    }
                }
                // Checked once, after the items (they are few).
                Item::Project(_) | Item::CustomEvent { .. } | Item::Silence { .. } => {}
            }
        }
        alerts
    }

    fn error_count(&self) -> usize {
        self.diags
            .iter()
            .filter(|d| d.level == Level::Error)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More items than [`PARALLEL_ABOVE`]: checked on several threads, joined in order.
    #[test]
    fn a_large_file_checks_on_threads_with_results_in_source_order() {
        let mut s = String::from(
            "project p\n\ntemplate used-last {\n  severity low\n}\n\ntemplate unused {\n  severity low\n}\n",
        );
        for i in 0..1000 {
            s.push_str(&format!(
                "\nalert a{i} {{\n  on failed\n  severity high\n}}\n"
            ));
        }
        s.push_str("\nalert last extends used-last {\n  on failed\n  entity job \"*\"\n  when count >= 2 within 1h\n}\n");
        let checked = check_source(&s, &|_| None);
        let names: Vec<_> = checked
            .alerts
            .iter()
            .map(|a| a.config.name.as_str())
            .collect();
        assert_eq!(names.len(), 1001);
        assert_eq!((names[0], names[999], names[1000]), ("a0", "a999", "last"));
        let codes: Vec<_> = checked.diagnostics.iter().map(|d| d.code).collect();
        assert_eq!(
            codes,
            [Code::UnusedTemplate, Code::SharedWindow],
            "the template used only by the last alert counts as used"
        );
        assert_eq!(checked.alerts[1000].config.severity, Severity::Low);
    }
}
