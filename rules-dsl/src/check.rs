//! The checking pass and the compiler: resolves names, kinds and templates, reports every error
//! and warning of a file at once, and turns each alert and calculated event into the alert
//! config the service stores (MLRun's wire format plus Tocsin's extension fields).
//!
//! Templates merge in a documented order: an alert's `extends` list is applied left to right,
//! each template already merged with its own `extends`, then the alert's own statements. A
//! later statement replaces an earlier one of the same keyword (`when` and `for` are one slot:
//! the criteria); `notify` statements accumulate, and a later one with the same name replaces
//! the earlier one in place.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value as Json, json};
use tocsin_core::compiled::secret_reference;
use tocsin_core::engine::PLACEHOLDERS;
use tocsin_core::model::{
    AlertConfig, AlertName, AlertNotification, CompareOp, Criteria, Entities, EntityKind,
    EventKind, Filter, Notification, NotificationKind, NotificationSeverity, ProjectName,
    ResetPolicy, Severity, Trigger, parse_period,
};
use tocsin_core::{AlertsSettings, templates};

use crate::ast::{Definition, Expr, File, Item, Literal, Param, Span, Spanned, Statement, Value};
use crate::diagnostic::{Code, Diagnostic, Level, did_you_mean};

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
        Statement::When { .. } | Statement::For { .. } => "criteria",
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
        let mut diagnostics = std::mem::take(&mut self.diags);
        diagnostics.sort_by_key(|d| (d.span.start, d.code));
        Checked {
            project: self.project.clone(),
            alerts,
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
                Item::Project(_) | Item::CustomEvent { .. } => {}
            }
        }
        alerts
    }

    /// First pass: the project, templates, and declared event kinds; duplicate names.
    fn declarations(&mut self, file: &'f File) {
        for (keyword, name) in &file.unparsed {
            match keyword.as_str() {
                "template" => {
                    self.broken_templates.insert(name.clone());
                }
                "event" => {
                    self.custom.insert(name.clone(), None);
                }
                _ => {}
            }
        }
        let mut projects = Vec::new();
        let mut names: BTreeMap<String, Span> = BTreeMap::new();
        for item in &file.items {
            match item {
                Item::Project(p) => projects.push(p),
                Item::Template(d) => {
                    if self.templates.insert(d.name.node.clone(), d).is_some() {
                        self.diags.push(
                            Diagnostic::error(
                                Code::DuplicateName,
                                d.name.span.clone(),
                                format!("template `{}` is defined twice", d.name.node),
                            )
                            .label("defined again here"),
                        );
                    }
                }
                Item::Alert(d) => self.unique_name(&mut names, &d.name),
                Item::CalculatedEvent { name, .. } => {
                    self.unique_name(&mut names, name);
                    if self.event_kind_name(name) {
                        self.custom.insert(name.node.clone(), None);
                    }
                }
                Item::CustomEvent { name, entity, .. } => {
                    let kind = self.entity_kind(entity);
                    if self.event_kind_name(name)
                        && self.custom.insert(name.node.clone(), kind).is_some()
                    {
                        self.diags.push(
                            Diagnostic::error(
                                Code::DuplicateName,
                                name.span.clone(),
                                format!("event `{}` is defined twice", name.node),
                            )
                            .label("defined again here"),
                        );
                    }
                }
            }
        }
        // Calculated events are about the entity kind of what they are calculated from.
        for item in &file.items {
            if let Item::CalculatedEvent { name, from, .. } = item {
                let entity = from.iter().find_map(|k| self.known_entity_of(&k.node));
                if let Some(e) = entity {
                    self.custom.insert(name.node.clone(), Some(e));
                }
            }
        }
        match projects.as_slice() {
            [] => self.diags.push(
                Diagnostic::error(Code::Project, 0..0, "the file declares no project")
                    .label("expected `project NAME` first")
                    .help("start the file with `project my-project`"),
            ),
            [p, rest @ ..] => {
                self.project = p.node.clone();
                if !ProjectName::is_valid(&p.node) {
                    self.diags.push(name_error(p));
                }
                for extra in rest {
                    self.diags.push(
                        Diagnostic::error(Code::Project, extra.span.clone(), "the file declares more than one project")
                            .label("a second project")
                            .help(format!("a file holds the alerts of one project (`{}`); put these in another file", p.node)),
                    );
                }
            }
        }
    }

    fn unique_name(&mut self, names: &mut BTreeMap<String, Span>, name: &Spanned<String>) {
        if !AlertName::is_valid(&name.node) {
            self.diags.push(name_error(name));
        }
        if names.insert(name.node.clone(), name.span.clone()).is_some() {
            self.diags.push(
                Diagnostic::error(
                    Code::DuplicateName,
                    name.span.clone(),
                    format!("`{}` is defined twice", name.node),
                )
                .label("defined again here")
                .help("alerts and calculated events share one namespace per project"),
            );
        }
    }

    /// Whether a declared event name is a usable custom kind (reports why not).
    fn event_kind_name(&mut self, name: &Spanned<String>) -> bool {
        match name.node.parse::<EventKind>() {
            Ok(EventKind::Custom(c)) if c.as_str() == name.node => true,
            Ok(EventKind::Custom(_)) => {
                self.diags.push(
                    Diagnostic::error(
                        Code::InvalidName,
                        name.span.clone(),
                        format!("invalid event name `{}`", name.node),
                    )
                    .label("not in canonical form")
                    .help("use lowercase letters, digits and hyphens"),
                );
                false
            }
            Ok(builtin) => {
                self.diags.push(
                    Diagnostic::error(
                        Code::DuplicateName,
                        name.span.clone(),
                        format!("`{}` is a built-in event kind", name.node),
                    )
                    .label(format!("already means `{builtin}`"))
                    .help("give the new event a name of its own"),
                );
                false
            }
            Err(_) => {
                let near = did_you_mean(&name.node, EventKind::ALL.iter().map(|k| k.as_str()));
                let d = Diagnostic::error(
                    Code::InvalidName,
                    name.span.clone(),
                    format!("invalid event name `{}`", name.node),
                )
                .label("not usable as an event kind");
                self.diags.push(match near {
                    Some(n) => d.help(format!("it is too close to the built-in kind `{n}`; use `{n}` or a clearly different name")),
                    None => d.help(format!(
                        "use lowercase letters, digits and hyphens, starting with a letter, at most {} characters",
                        tocsin_core::model::CustomKind::MAX_LEN
                    )),
                });
                false
            }
        }
    }

    /// The entity kind of an event kind known here (built-in or declared), without reporting.
    fn known_entity_of(&self, kind: &str) -> Option<EntityKind> {
        match kind.parse::<EventKind>().ok()? {
            EventKind::Custom(c) => self.custom.get(c.as_str()).copied().flatten(),
            builtin => builtin.entity_kind(),
        }
    }

    fn entity_kind(&mut self, word: &Spanned<String>) -> Option<EntityKind> {
        match word.node.parse::<EntityKind>() {
            Ok(k) => Some(k),
            Err(_) => {
                let near = did_you_mean(&word.node, EntityKind::ALL.iter().map(|k| k.as_str()));
                self.diags.push(
                    Diagnostic::error(
                        Code::UnknownEntityKind,
                        word.span.clone(),
                        format!("unknown entity kind `{}`", word.node),
                    )
                    .label("not an entity kind")
                    .suggest(near)
                    .help_if_none(format!(
                        "entity kinds: {}",
                        EntityKind::ALL
                            .iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                );
                None
            }
        }
    }

    /// An event kind as written: built-in (either spelling) or declared in this file.
    fn event_kind(&mut self, word: &Spanned<String>) -> Option<EventKind> {
        let parsed = word.node.parse::<EventKind>();
        match parsed {
            Ok(EventKind::Custom(c)) if self.custom.contains_key(c.as_str()) => {
                Some(EventKind::Custom(c))
            }
            Ok(EventKind::Custom(_)) | Err(_) => {
                let candidates: Vec<String> = EventKind::ALL
                    .iter()
                    .map(|k| k.as_str().replace('-', "_"))
                    .chain(self.custom.keys().cloned())
                    .collect();
                let near = did_you_mean(&word.node, candidates.iter().map(String::as_str));
                self.diags.push(
                    Diagnostic::error(Code::UnknownEventKind, word.span.clone(), format!("unknown event kind `{}`", word.node))
                        .label("not a built-in or declared event kind")
                        .suggest(near)
                        .help_if_none(format!(
                            "declare a kind of your own with `event {} on job` (or another entity kind)",
                            word.node
                        )),
                );
                None
            }
            Ok(k) => Some(k),
        }
    }

    /// Rules about one block as written (before any merge): no statement twice, `when` and
    /// `for` not together, notification names unique; calculated events take fewer statements.
    fn block_rules(&mut self, statements: &[Spanned<Statement>], calculated: bool) {
        let mut seen: BTreeMap<&str, &Spanned<Statement>> = BTreeMap::new();
        let mut notifications: BTreeSet<&str> = BTreeSet::new();
        for s in statements {
            if calculated && !fits_calculated_event(&s.node) {
                self.diags.push(
                    Diagnostic::error(Code::MisplacedStatement, s.span.clone(), format!("a calculated event takes no `{}`", s.node.keyword()))
                        .label("not allowed here")
                        .help("a calculated event takes `entity`, `where`, `when`, `for`, `cooldown` and `description`; alert on it to notify"),
                );
                continue;
            }
            if let Statement::Notify { name, .. } = &s.node {
                if !notifications.insert(name.node.as_str()) {
                    self.diags.push(
                        Diagnostic::error(
                            Code::DuplicateNotification,
                            name.span.clone(),
                            format!("two notifications are named `{}`", name.node),
                        )
                        .label("the name is used again here")
                        .help("give each notification of an alert its own name"),
                    );
                }
                continue;
            }
            if let Some(first) = seen.insert(slot(&s.node), s) {
                let (code, message, help) = if first.node.keyword() != s.node.keyword() {
                    (Code::CountAndSustain, "`when` and `for` in one block".to_owned(), "an alert either counts events (`when count >= N within D`) or waits for a condition to hold (`for D`)".to_owned())
                } else {
                    (
                        Code::DuplicateStatement,
                        format!("`{}` appears twice in this block", s.node.keyword()),
                        "keep one".to_owned(),
                    )
                };
                self.diags.push(
                    Diagnostic::error(code, s.span.clone(), message)
                        .label("again here")
                        .help(help),
                );
            }
        }
    }

    /// The statements of a definition merged with its templates (see the module docs).
    fn merged(&mut self, def: &'f Definition, stack: &mut Vec<String>) -> Vec<Merged<'f>> {
        let mut out: Vec<Merged<'f>> = Vec::new();
        for ext in &def.extends {
            let inherited = if let Some(t) = self.templates.get(&ext.node).copied() {
                self.used_templates.insert(ext.node.clone());
                if stack.contains(&ext.node) || ext.node == def.name.node {
                    self.diags.push(
                        Diagnostic::error(
                            Code::TemplateCycle,
                            ext.span.clone(),
                            format!("template `{}` extends itself", ext.node),
                        )
                        .label("this closes a cycle")
                        .help(format!(
                            "the cycle: {} -> {}",
                            stack.join(" -> "),
                            ext.node
                        )),
                    );
                    continue;
                }
                stack.push(ext.node.clone());
                let merged = self.merged(t, stack);
                stack.pop();
                merged
            } else if let Some(t) = templates::get(&ext.node) {
                builtin_template(t, &ext.span)
            } else if self.broken_templates.contains(&ext.node) {
                continue;
            } else {
                let candidates: Vec<&str> = self
                    .templates
                    .keys()
                    .map(String::as_str)
                    .chain(templates::all().iter().map(|t| t.template_name.as_str()))
                    .collect();
                let near = did_you_mean(&ext.node, candidates.iter().copied());
                self.diags.push(
                    Diagnostic::error(Code::UnknownTemplate, ext.span.clone(), format!("unknown template `{}`", ext.node))
                        .label("no template of this name")
                        .suggest(near)
                        .help_if_none("define it with `template NAME { ... }`, or use a built-in template (`tocsin templates` lists them)"),
                );
                continue;
            };
            for s in inherited {
                merge_into(&mut out, s);
            }
        }
        for s in &def.statements {
            merge_into(&mut out, Cow::Borrowed(s));
        }
        out
    }

    fn calculated(
        &mut self,
        name: &Spanned<String>,
        from: &[Spanned<String>],
        statements: &[Spanned<Statement>],
        span: Span,
    ) -> Option<CompiledAlert> {
        let kinds: Vec<EventKind> = from.iter().filter_map(|k| self.event_kind(k)).collect();
        if let Some(k) = from.iter().find(|k| k.node == name.node) {
            self.diags.push(
                Diagnostic::error(
                    Code::SelfFeedingEvent,
                    k.span.clone(),
                    format!("event `{}` is calculated from itself", name.node),
                )
                .label("it would feed itself"),
            );
        }
        let mut merged: Vec<Merged<'_>> = statements
            .iter()
            .filter(|s| fits_calculated_event(&s.node))
            .map(Cow::Borrowed)
            .collect();
        let on_span = from.first().map_or(span.clone(), |f| {
            f.span.start..from.last().map_or(f.span.end, |l| l.span.end)
        });
        merged.push(Cow::Owned(Spanned::new(
            Statement::On(from.to_vec()),
            on_span,
        )));
        if kinds.len() != from.len() {
            return None;
        }
        let emits = self
            .custom
            .contains_key(&name.node)
            .then(|| name.node.parse::<EventKind>().ok())
            .flatten();
        self.alert(name, &merged, Some(emits), span)
    }

    /// Compiles one alert from its merged statements.
    fn alert(
        &mut self,
        name: &Spanned<String>,
        statements: &[Merged<'_>],
        // Some for a calculated event: the kind it emits (None if its name was refused).
        emits: Option<Option<EventKind>>,
        span: Span,
    ) -> Option<CompiledAlert> {
        let errors_before = self.error_count();
        let get = |kw: &str| {
            statements
                .iter()
                .map(|s| &**s)
                .find(|s| slot(&s.node) == kw)
        };
        let calculated = emits.is_some();

        // Trigger.
        let mut events = Vec::new();
        match get("on") {
            Some(Spanned {
                node: Statement::On(kinds),
                ..
            }) => {
                for k in kinds {
                    if let Some(kind) = self.event_kind(k) {
                        events.push((kind, k.span.clone()));
                    }
                }
            }
            _ => self.diags.push(
                Diagnostic::error(
                    Code::MissingStatement,
                    name.span.clone(),
                    format!("alert `{}` says no event to trigger on", name.node),
                )
                .label("no `on` statement")
                .help("add `on failed` (or another event kind), or extend a template that has one"),
            ),
        }

        // Entity.
        let (entity_kind, entity_id) = match get("entity") {
            Some(Spanned {
                node: Statement::Entity { kind, id },
                span,
            }) => {
                let k = self.entity_kind(kind);
                let id_value = id.as_ref().map_or("*".to_owned(), |i| i.node.clone());
                if id_value.is_empty() {
                    self.diags.push(
                        Diagnostic::error(
                            Code::InvalidEntityId,
                            id.as_ref().map_or(span.clone(), |i| i.span.clone()),
                            "the entity id is empty",
                        )
                        .label("empty")
                        .help("give an id, a glob such as \"ep1.*\", or \"*\" for every entity"),
                    );
                }
                (k, id_value)
            }
            _ => {
                let inferred = events.iter().find_map(|(k, _)| match k {
                    EventKind::Custom(c) => self.custom.get(c.as_str()).copied().flatten(),
                    b => b.entity_kind(),
                });
                if inferred.is_none() && !events.is_empty() {
                    self.diags.push(
                        Diagnostic::error(
                            Code::MissingStatement,
                            name.span.clone(),
                            format!("`{}` needs an `entity` statement", name.node),
                        )
                        .label("the entity kind cannot be inferred from its events")
                        .help("add `entity job \"*\"` (or another entity kind and id)"),
                    );
                }
                (inferred, "*".to_owned())
            }
        };
        if let Some(ek) = entity_kind {
            for (k, sp) in &events {
                let fits = match k {
                    EventKind::Custom(c) => self.custom.get(c.as_str()).copied().flatten(),
                    b => b.entity_kind(),
                };
                if let Some(f) = fits
                    && f != ek
                {
                    self.diags.push(
                        Diagnostic::error(Code::KindMismatch, sp.clone(), format!("`{k}` events are about {f} entities, but the alert watches {ek} entities"))
                            .label(format!("about {f} entities"))
                            .help(format!("use `entity {f} ...`, or an event kind about {ek} entities")),
                    );
                }
            }
        }
        let many = entity_id.contains('*');

        // Severity, summary, description.
        let severity = match get("severity") {
            Some(Spanned {
                node: Statement::Severity(w),
                ..
            }) => self.word::<Severity>(w, "severity", Severity::ALL.iter().map(|s| s.as_str())),
            _ if calculated => Some(Severity::Low),
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        Code::MissingStatement,
                        name.span.clone(),
                        format!("alert `{}` has no severity", name.node),
                    )
                    .label("no `severity` statement")
                    .help("add `severity low`, `severity medium` or `severity high`"),
                );
                None
            }
        };
        let summary = match get("summary") {
            Some(Spanned {
                node: Statement::Summary(s),
                ..
            }) => {
                self.placeholders(s, false);
                Some(s.node.clone())
            }
            _ if calculated => Some(format!("{{{{entity}}}}: {}", name.node)),
            _ => None,
        };
        let description = match get("description") {
            Some(Spanned {
                node: Statement::Description(s),
                ..
            }) => s.node.clone(),
            _ => String::new(),
        };

        // Criteria.
        let mut window = None;
        let criteria = match get("criteria") {
            Some(Spanned {
                node:
                    Statement::When {
                        count,
                        within,
                        per_entity,
                    },
                span,
            }) => {
                let n = match count.node.parse::<i64>() {
                    Ok(n) if n >= 1 && n < self.settings.max_criteria_count => Some(n),
                    _ => {
                        self.diags.push(
                            Diagnostic::error(Code::InvalidCount, count.span.clone(), format!("invalid count `{}`", count.node))
                                .label(format!("expected 1 to {}", self.settings.max_criteria_count - 1))
                                .help("the service refuses counts at or above `alerts.max_criteria_count`"),
                        );
                        None
                    }
                };
                let period = within.as_ref().and_then(|w| self.duration(w));
                window = period
                    .clone()
                    .and_then(|p| parse_period(&p).ok())
                    .map(|s| (s, within.clone()));
                self.per_entity(*per_entity, many, span, n.is_some_and(|n| n > 1));
                Some(Criteria {
                    count: n.unwrap_or(1),
                    period,
                    per_entity: *per_entity,
                    sustain: None,
                })
            }
            Some(Spanned {
                node:
                    Statement::For {
                        duration,
                        per_entity,
                    },
                span,
            }) => {
                let d = self.duration(duration);
                self.per_entity(*per_entity, many, span, false);
                Some(Criteria {
                    count: 1,
                    period: None,
                    per_entity: many,
                    sustain: d,
                })
            }
            _ => None,
        };

        // Filter.
        let filter = match get("where") {
            Some(Spanned {
                node: Statement::Where(e),
                ..
            }) => Some(self.filter(e)),
            _ => None,
        };

        // Reset and cooldown.
        let reset = match get("reset") {
            Some(Spanned {
                node: Statement::Reset(w),
                ..
            }) => self.word::<ResetPolicy>(
                w,
                "reset policy",
                ResetPolicy::ALL.iter().map(|r| r.as_str()),
            ),
            _ => Some(ResetPolicy::Auto),
        };
        let cooldown = match get("cooldown") {
            Some(Spanned {
                node: Statement::Cooldown(d),
                span,
            }) => {
                let text = self.duration(d);
                if reset == Some(ResetPolicy::Manual) {
                    self.diags.push(
                        Diagnostic::error(
                            Code::CooldownOnManual,
                            span.clone(),
                            "`cooldown` on an alert with `reset manual`",
                        )
                        .label("a manual alert stays active until reset; it has no cooldown")
                        .help("remove the cooldown, or use `reset auto`"),
                    );
                }
                if let (Some(t), Some((w, Some(within)))) = (&text, &window)
                    && let Ok(c) = parse_period(t)
                    && c < *w
                {
                    self.diags.push(
                        Diagnostic::warning(Code::ShortCooldown, span.clone(), format!("the cooldown ({t}) is shorter than the window ({})", within.node))
                            .label("shorter than the criteria window")
                            .help("events from before the cooldown may still fill the window and fire again at once"),
                    );
                }
                text
            }
            _ => None,
        };

        // Notifications.
        let mut notifications = Vec::new();
        let mut unresolved = Vec::new();
        for s in statements {
            if let Statement::Notify {
                kind,
                name: nname,
                params,
            } = &s.node
                && let Some(n) = self.notification(&name.node, kind, nname, params, &mut unresolved)
            {
                notifications.push(n);
            }
        }

        if self.error_count() > errors_before {
            return None;
        }
        let (Some(severity), Some(entity_kind), Some(reset)) = (severity, entity_kind, reset)
        else {
            return None;
        };
        let emits = emits.flatten();
        let config = AlertConfig {
            project: self.project.clone(),
            name: name.node.clone(),
            id: None,
            description,
            summary,
            severity,
            criteria,
            trigger: Trigger {
                events: events.into_iter().map(|(k, _)| k).collect(),
                prometheus_alert: None,
            },
            entities: Entities {
                kind: entity_kind,
                project: self.project.clone(),
                ids: vec![entity_id],
            },
            notifications,
            reset_policy: reset,
            cooldown_period: cooldown,
            filter,
            emits,
            state: Default::default(),
            acknowledged: None,
            last_activation_time: None,
            count: 0,
            created: None,
            updated: None,
            extra: Map::new(),
        };
        Some(CompiledAlert {
            config,
            span,
            unresolved_secrets: unresolved,
        })
    }

    fn error_count(&self) -> usize {
        self.diags
            .iter()
            .filter(|d| d.level == Level::Error)
            .count()
    }

    fn per_entity(&mut self, per_entity: bool, many: bool, span: &Span, counts_many: bool) {
        if per_entity && !many {
            self.diags.push(
                Diagnostic::error(Code::PerEntityOnOne, span.clone(), "`per entity` on an alert about one entity")
                    .label("there is only one entity to count")
                    .help("remove `per entity`, or watch many entities with `entity KIND \"*\"` or a glob"),
            );
        }
        if many && !per_entity && counts_many {
            self.diags.push(
                Diagnostic::warning(Code::SharedWindow, span.clone(), "events of all matching entities count in one window")
                    .label("one window shared by every entity")
                    .help("add `per entity` to count each entity's events apart (MLRun shares one window)"),
            );
        }
    }

    fn duration(&mut self, d: &Spanned<String>) -> Option<String> {
        match parse_period(&d.node) {
            Ok(s) if s.0 > 0 => Some(d.node.clone()),
            Ok(_) => {
                self.diags.push(
                    Diagnostic::error(
                        Code::InvalidDuration,
                        d.span.clone(),
                        format!("the duration `{}` is zero", d.node),
                    )
                    .label("must be longer than zero"),
                );
                None
            }
            Err(e) => {
                self.diags.push(
                    Diagnostic::error(
                        Code::InvalidDuration,
                        d.span.clone(),
                        format!("invalid duration `{}`", d.node),
                    )
                    .label(e.to_string())
                    .help("write durations such as `30s`, `10m`, `1h30m`, `2d`"),
                );
                None
            }
        }
    }

    fn word<T: std::str::FromStr>(
        &mut self,
        w: &Spanned<String>,
        what: &str,
        all: impl Iterator<Item = &'static str> + Clone,
    ) -> Option<T> {
        match w.node.parse::<T>() {
            Ok(v) => Some(v),
            Err(_) => {
                let near = did_you_mean(&w.node, all.clone());
                self.diags.push(
                    Diagnostic::error(
                        Code::UnknownValue,
                        w.span.clone(),
                        format!("unknown {what} `{}`", w.node),
                    )
                    .label(format!("not a {what}"))
                    .suggest(near)
                    .help_if_none(format!(
                        "expected one of {}",
                        all.collect::<Vec<_>>().join(", ")
                    )),
                );
                None
            }
        }
    }

    fn placeholders(&mut self, s: &Spanned<String>, message: bool) {
        let mut rest = s.node.as_str();
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else { break };
            let key = after[..end].trim();
            let known = key.starts_with("value.")
                || (PLACEHOLDERS.contains(&key) && (message || key != "summary"));
            if !known {
                let near = did_you_mean(key, PLACEHOLDERS.iter().copied());
                self.diags.push(
                    Diagnostic::warning(
                        Code::UnknownPlaceholder,
                        s.span.clone(),
                        format!("unknown placeholder `{{{{{key}}}}}`"),
                    )
                    .label("it will be left as written")
                    .suggest(near)
                    .help_if_none(format!(
                        "placeholders: {}, value.KEY",
                        PLACEHOLDERS.join(", ")
                    )),
                );
            }
            rest = &after[end + 2..];
        }
    }

    fn filter(&mut self, e: &Spanned<Expr>) -> Filter {
        match &e.node {
            Expr::And(a, b) => Filter::All {
                all: self.flatten(a, b, true),
            },
            Expr::Or(a, b) => Filter::Any {
                any: self.flatten(a, b, false),
            },
            Expr::Not(inner) => Filter::Not {
                not: Box::new(self.filter(inner)),
            },
            Expr::Compare { field, op, value } => {
                let v = match &value.node {
                    Literal::Str(s) => Json::from(s.clone()),
                    Literal::Number(n) => number(n),
                    Literal::Bool(b) => Json::from(*b),
                    Literal::Null => Json::Null,
                };
                if op.node.is_string_op() && !v.is_string() {
                    self.diags.push(
                        Diagnostic::error(
                            Code::MismatchedComparison,
                            value.span.clone(),
                            format!("`{}` compares strings", op.node.as_str()),
                        )
                        .label("not a string")
                        .help(format!(
                            "write `value.{} {} \"...\"`",
                            field.node,
                            op.node.as_str()
                        )),
                    );
                }
                if matches!(
                    op.node,
                    CompareOp::Lt | CompareOp::Le | CompareOp::Gt | CompareOp::Ge
                ) && matches!(value.node, Literal::Null | Literal::Bool(_))
                {
                    self.diags.push(
                        Diagnostic::error(
                            Code::MismatchedComparison,
                            value.span.clone(),
                            format!("`{}` orders numbers or strings", op.node.as_str()),
                        )
                        .label("nothing is ordered against this")
                        .help("compare with a number or a string"),
                    );
                }
                Filter::Compare {
                    field: field.node.clone(),
                    op: op.node,
                    value: v,
                }
            }
        }
    }

    /// `a and b and c` as one `all` (likewise `or`), as the wire form writes it.
    fn flatten(&mut self, a: &Spanned<Expr>, b: &Spanned<Expr>, and: bool) -> Vec<Filter> {
        let mut out = Vec::new();
        for side in [a, b] {
            match (&side.node, and) {
                (Expr::And(x, y), true) | (Expr::Or(x, y), false) => {
                    out.extend(self.flatten(x, y, and))
                }
                _ => out.push(self.filter(side)),
            }
        }
        out
    }

    fn notification(
        &mut self,
        alert: &str,
        kind: &Spanned<String>,
        name: &Spanned<String>,
        params: &[Param],
        unresolved: &mut Vec<String>,
    ) -> Option<AlertNotification> {
        let kinds = || NotificationKind::ALL.iter().map(|k| k.rule_name());
        let Some(wire_kind) = NotificationKind::from_rule_name(&kind.node) else {
            self.diags.push(
                Diagnostic::error(
                    Code::UnknownNotificationKind,
                    kind.span.clone(),
                    format!("unknown notification kind `{}`", kind.node),
                )
                .label("not a notification kind")
                .suggest(did_you_mean(&kind.node, kinds()))
                .help_if_none(format!(
                    "notification kinds: {}",
                    kinds().collect::<Vec<_>>().join(", ")
                )),
            );
            return None;
        };
        let kind_word = wire_kind.rule_name();
        if !AlertName::is_valid(&name.node) {
            self.diags.push(name_error(name));
        }
        // (key, secret?, required?)
        let own: Vec<(&str, bool, bool)> = wire_kind
            .rule_params()
            .map(|(key, spec)| (key, spec.secret, spec.required))
            .collect();
        let common = [
            ("message", false, false),
            ("severity", false, false),
            ("cooldown", false, false),
        ];
        let allowed: Vec<(&str, bool, bool)> = own.iter().copied().chain(common).collect();
        let mut out_params = Map::new();
        let mut secret_params = Map::new();
        let mut secret_missing = false;
        let (mut message, mut severity, mut cooldown) = (None, None, None);
        let mut seen = BTreeSet::new();
        for p in params {
            let key = p.key.node.as_str();
            let Some(&(_, secret, _)) = allowed.iter().find(|(k, _, _)| *k == key) else {
                self.diags.push(
                    Diagnostic::error(
                        Code::UnknownParameter,
                        p.key.span.clone(),
                        format!("{kind_word} notifications take no `{key}`"),
                    )
                    .label("unknown parameter")
                    .suggest(did_you_mean(key, allowed.iter().map(|(k, _, _)| *k)))
                    .help_if_none(format!(
                        "{kind_word} parameters: {}",
                        allowed
                            .iter()
                            .map(|(k, _, _)| *k)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                );
                continue;
            };
            if !seen.insert(key) {
                self.diags.push(
                    Diagnostic::error(
                        Code::DuplicateStatement,
                        p.key.span.clone(),
                        format!("`{key}` appears twice in this notification"),
                    )
                    .label("again here"),
                );
                continue;
            }
            let v = &p.value;
            if secret {
                match &v.node {
                    Value::Secret(s) => {
                        let wire_key = wire_kind.param_by_rule_name(key).map_or(key, |p| p.wire);
                        match (self.secret)(s) {
                            Some(value) => {
                                secret_params.insert(wire_key.to_owned(), Json::from(value));
                            }
                            None => {
                                secret_missing = true;
                                unresolved.push(s.clone());
                            }
                        }
                    }
                    _ => self.diags.push(
                        Diagnostic::error(Code::InlineSecret, v.span.clone(), format!("`{key}` is a secret and is written inline"))
                            .label("secrets never go in rule files")
                            .help(format!("write `{key} secret(\"{}\")` and set that variable where `tocsin apply` runs", secret_name(alert, &name.node, key))),
                    ),
                }
                continue;
            }
            // The key on the wire, from the table of notification parameters.
            let wire_key = wire_kind
                .param_by_rule_name(key)
                .map_or(key, |p| p.wire)
                .to_owned();
            match (key, &v.node) {
                ("message", Value::Str(s)) => {
                    self.placeholders(&Spanned::new(s.clone(), v.span.clone()), true);
                    message = Some(s.clone());
                }
                ("severity", Value::Word(w) | Value::Str(w)) => {
                    severity = self.word::<NotificationSeverity>(
                        &Spanned::new(w.clone(), v.span.clone()),
                        "notification severity",
                        NotificationSeverity::ALL.iter().map(|s| s.as_str()),
                    );
                }
                ("cooldown", Value::Duration(d)) => {
                    cooldown = self.duration(&Spanned::new(d.clone(), v.span.clone()))
                }
                ("to", Value::Str(s)) => {
                    out_params.insert(wire_key, json!([s]));
                }
                ("to", Value::List(l)) if !l.is_empty() => {
                    out_params.insert(wire_key, json!(l));
                }
                ("kind", Value::Word(w) | Value::Str(w)) => {
                    if let Some(k) = self.event_kind(&Spanned::new(w.clone(), v.span.clone())) {
                        out_params.insert(wire_key, Json::from(k.as_str().to_owned()));
                    }
                }
                ("entity", Value::Str(s)) => {
                    out_params.insert(wire_key, Json::from(s.clone()));
                }
                ("link" | "repo" | "method", Value::Str(s) | Value::Word(s)) => {
                    out_params.insert(wire_key, Json::from(s.clone()));
                }
                ("issue", Value::Number(n) | Value::Str(n)) => {
                    out_params.insert(wire_key, number_or_string(n));
                }
                _ => self.diags.push(
                    Diagnostic::error(
                        Code::InvalidParameterValue,
                        v.span.clone(),
                        format!("invalid value for `{key}`"),
                    )
                    .label("of the wrong form")
                    .help(param_help(key)),
                ),
            }
        }
        for (key, _, required) in &own {
            if *required && !seen.contains(key) {
                self.diags.push(
                    Diagnostic::error(
                        Code::MissingTarget,
                        name.span.clone(),
                        format!("{kind_word} notification `{}` has no `{key}`", name.node),
                    )
                    .label(format!("add `{key}` in braces after the name"))
                    .help(param_help(key)),
                );
            }
        }
        let secret_params = if secret_missing {
            Some(secret_reference(&self.project, alert, &name.node))
        } else if secret_params.is_empty() {
            None
        } else {
            Some(secret_params)
        };
        Some(AlertNotification {
            notification: Notification {
                kind: wire_kind,
                name: name.node.clone(),
                message,
                severity,
                when: None,
                condition: None,
                params: (!out_params.is_empty()).then_some(out_params),
                status: None,
                sent_time: None,
                secret_params,
                reason: None,
                extra: Map::new(),
            },
            cooldown_period: cooldown,
        })
    }
}

fn param_help(key: &str) -> String {
    match key {
        "to" => "write `to \"oncall@example.com\"` or `to [\"a@example.com\", \"b@example.com\"]`"
            .into(),
        "webhook" | "url" | "token" => format!("write `{key} secret(\"NAME\")`"),
        "kind" => "write `kind job-cpu-high` (an event kind)".into(),
        "message" | "link" | "repo" | "entity" => format!("write `{key} \"...\"`"),
        "severity" => "write `severity warning` (info, debug, verbose, warning or error)".into(),
        "cooldown" => "write `cooldown 15m`".into(),
        _ => format!("see the `{key}` parameter in the README"),
    }
}

/// A suggested secret name for an inline value: `ALERT_NOTIFICATION_KEY`, upper case.
pub fn secret_name(alert: &str, notification: &str, key: &str) -> String {
    format!("{alert}_{notification}_{key}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn number(text: &str) -> Json {
    text.parse::<i64>()
        .map(Json::from)
        .or_else(|_| text.parse::<f64>().map(Json::from))
        .unwrap_or(Json::Null)
}

fn number_or_string(text: &str) -> Json {
    match number(text) {
        Json::Null => Json::from(text.to_owned()),
        n => n,
    }
}

fn name_error(name: &Spanned<String>) -> Diagnostic {
    Diagnostic::error(
        Code::InvalidName,
        name.span.clone(),
        format!("invalid name `{}`", name.node),
    )
    .label("names use letters, digits, `-` and `_`")
    .help("rename it, for example to `{}`".replace(
        "{}",
        &name.node.replace(
            |c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "-",
        ),
    ))
}

/// Adds `s` to merged statements: replaces its slot, or (for `notify`) the same-named one.
fn merge_into<'f>(out: &mut Vec<Merged<'f>>, s: Merged<'f>) {
    let pos = match &s.node {
        Statement::Notify { name, .. } => out.iter().position(
            |o| matches!(&o.node, Statement::Notify { name: n, .. } if n.node == name.node),
        ),
        other => out.iter().position(|o| slot(&o.node) == slot(other)),
    };
    match pos {
        Some(i) => out[i] = s,
        None => out.push(s),
    }
}

/// A built-in template's statements, placed at the `extends` that names it.
fn builtin_template(t: &tocsin_core::model::AlertTemplate, at: &Span) -> Vec<Merged<'static>> {
    let sp = |s: Statement| Spanned::new(s, at.clone());
    let w = |s: &str| Spanned::new(s.to_owned(), at.clone());
    let mut out = vec![
        sp(Statement::Summary(w(&t.summary))),
        sp(Statement::Description(w(&t.template_description))),
        sp(Statement::Severity(w(t.severity.as_str()))),
        sp(Statement::On(
            t.trigger.events.iter().map(|k| w(k.as_str())).collect(),
        )),
        sp(Statement::Reset(w(t.reset_policy.as_str()))),
    ];
    if let Some(c) = &t.criteria
        && (c.count > 1 || c.period.is_some())
    {
        out.push(sp(Statement::When {
            count: w(&c.count.to_string()),
            within: c.period.as_deref().map(w),
            per_entity: c.per_entity,
        }));
    }
    if let Some(c) = &t.cooldown_period {
        out.push(sp(Statement::Cooldown(w(c))));
    }
    out.into_iter().map(Cow::Owned).collect()
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
