//! From alert configs (read from a server, or MLRun wire JSON) to rule source, so that MLRun
//! users can move their alerts into files. Secrets become `secret("ALERT_NOTIFICATION_KEY")`
//! references; compiling the export without those variables set gives back the masked config
//! a server answers, which keeps the stored secrets. What the language cannot say is listed
//! in the notes rather than dropped silently.

use std::collections::BTreeSet;

use serde_json::Value as Json;
use tocsin_core::model::Shape;
use tocsin_core::model::{
    AlertConfig, CompareOp, EventKind, Filter, NotificationKind, ResetPolicy, Silence,
};

use crate::ast::{
    Definition, Expr, File, Item, Literal, Param, SilenceStatement, Spanned, Statement, Value,
};
use crate::check::secret_name;

/// Rule source for `configs` and `silences` (one project: the first config's), with notes on
/// what was not carried over. Silences become `silence` blocks under their ids.
pub fn export(configs: &[AlertConfig], silences: &[Silence]) -> (String, Vec<String>) {
    let mut notes = Vec::new();
    let project = configs.first().map_or("default", |c| c.project.as_str());
    let mut items = vec![Item::Project(s(project))];
    // Custom kinds that alerts trigger on but no calculated event here produces.
    let produced: BTreeSet<&str> = configs
        .iter()
        .filter_map(|c| c.emits.as_ref())
        .map(EventKind::as_str)
        .collect();
    let mut declared = BTreeSet::new();
    for c in configs {
        for k in &c.trigger.events {
            if let EventKind::Custom(custom) = k
                && !produced.contains(custom.as_str())
                && declared.insert(custom.as_str().to_owned())
            {
                items.push(Item::CustomEvent {
                    name: s(custom.as_str()),
                    entity: s(c.entities.kind.as_str()),
                    span: 0..0,
                });
            }
        }
    }
    for c in configs {
        if c.project != project {
            notes.push(format!(
                "alert `{}` is in project `{}`, not `{project}`: export it apart",
                c.name, c.project
            ));
            continue;
        }
        for key in c.extra.keys() {
            notes.push(format!(
                "alert `{}`: the field `{key}` has no place in the language and is left out",
                c.name
            ));
        }
        items.push(item(c, &mut notes));
    }
    for sil in silences {
        if sil.project == project {
            items.push(silence(sil));
        } else {
            notes.push(format!(
                "silence `{}` is in project `{}`, not `{project}`: export it apart",
                sil.id, sil.project
            ));
        }
    }
    let file = File {
        items,
        unparsed: Vec::new(),
    };
    (crate::format(&file, ""), notes)
}

/// A silence as a `silence` block.
fn silence(sil: &Silence) -> Item {
    let ss = |st: SilenceStatement| Spanned::new(st, 0..0);
    let mut statements = vec![
        ss(SilenceStatement::Comment(s(&sil.comment))),
        ss(SilenceStatement::By(s(&sil.created_by))),
    ];
    let m = &sil.matchers;
    let glob = |field: &str, v: &str| SilenceStatement::Match {
        field: s(field),
        values: vec![s(v)],
        quoted: true,
    };
    let words = |field: &str, vs: Vec<String>| SilenceStatement::Match {
        field: s(field),
        values: vs.iter().map(|v| s(v)).collect(),
        quoted: false,
    };
    if let Some(a) = &m.alert {
        statements.push(ss(glob("alert", a)));
    }
    if let Some(e) = &m.entity {
        statements.push(ss(glob("entity", e)));
    }
    if !m.severity.is_empty() {
        let vs = m.severity.iter().map(|v| v.as_str().to_owned()).collect();
        statements.push(ss(words("severity", vs)));
    }
    if !m.event_kind.is_empty() {
        let vs = m
            .event_kind
            .iter()
            .map(|k| k.as_str().replace('-', "_"))
            .collect();
        statements.push(ss(words("kind", vs)));
    }
    statements.push(ss(SilenceStatement::From(s(&sil.starts_at.to_string()))));
    if let Some(end) = sil.ends_at {
        statements.push(ss(SilenceStatement::Until(s(&end.to_string()))));
    }
    if let Some(sc) = &sil.schedule {
        let days = if sc.days.is_empty() {
            vec![s("day")]
        } else {
            sc.days.iter().map(|d| s(d.as_str())).collect()
        };
        statements.push(ss(SilenceStatement::Every {
            days,
            from: s(&sc.from.to_string()),
            to: s(&sc.to.to_string()),
            zone: s(&sc.time_zone),
        }));
    }
    Item::Silence {
        name: s(&sil.id),
        statements,
        span: 0..0,
    }
}

fn s(text: &str) -> Spanned<String> {
    Spanned::new(text.to_owned(), 0..0)
}

fn st(statement: Statement) -> Spanned<Statement> {
    Spanned::new(statement, 0..0)
}

fn item(c: &AlertConfig, notes: &mut Vec<String>) -> Item {
    let calculated = c.emits.as_ref().is_some_and(|e| e.as_str() == c.name);
    if c.emits.is_some() && !calculated {
        notes.push(format!(
            "alert `{}` emits `{}`: written as the calculated event `{}`, which emits its own name",
            c.name,
            c.emits.as_ref().map_or("", EventKind::as_str),
            c.name
        ));
    }
    // Built-in kinds take the seed's spelling; custom kinds keep their hyphens.
    let kinds: Vec<Spanned<String>> = c
        .trigger
        .events
        .iter()
        .map(|k| {
            if k.is_mlrun_kind() {
                s(&k.as_str().replace('-', "_"))
            } else {
                s(k.as_str())
            }
        })
        .collect();
    let mut statements = Vec::new();
    if !calculated && let Some(summary) = c.summary.as_deref().filter(|x| !x.is_empty()) {
        statements.push(st(Statement::Summary(s(summary))));
    }
    if !c.description.is_empty() {
        statements.push(st(Statement::Description(s(&c.description))));
    }
    if !calculated {
        statements.push(st(Statement::On(kinds.clone())));
    }
    let id = c.entities.ids.first().map_or("*", String::as_str);
    statements.push(st(Statement::Entity {
        kind: s(c.entities.kind.as_str()),
        id: Some(s(id)),
    }));
    if let Some(f) = &c.filter {
        statements.push(st(Statement::Where(expr(f))));
    }
    if let Some(cr) = &c.criteria {
        match (&cr.absent, &cr.sustain) {
            (Some(d), _) => statements.push(st(Statement::Absent {
                duration: s(d),
                expecting: cr.must_report.iter().map(|e| s(e)).collect(),
            })),
            (None, Some(d)) => statements.push(st(Statement::For {
                duration: s(d),
                per_entity: false,
            })),
            (None, None) => statements.push(st(Statement::When {
                count: s(&cr.count.to_string()),
                within: cr.period.as_deref().map(s),
                per_entity: cr.per_entity,
            })),
        }
    }
    if !calculated {
        statements.push(st(Statement::Severity(s(c.severity.as_str()))));
        if c.reset_policy == ResetPolicy::Manual {
            statements.push(st(Statement::Reset(s("manual"))));
        }
    }
    if let Some(cd) = &c.cooldown_period {
        statements.push(st(Statement::Cooldown(s(cd))));
    }
    for n in &c.notifications {
        statements.push(st(notify(c, n, notes)));
    }
    if calculated {
        Item::CalculatedEvent {
            name: s(&c.name),
            from: kinds,
            statements,
            span: 0..0,
        }
    } else {
        Item::Alert(Definition {
            name: s(&c.name),
            extends: Vec::new(),
            statements,
            span: 0..0,
        })
    }
}

fn notify(
    c: &AlertConfig,
    n: &tocsin_core::model::AlertNotification,
    notes: &mut Vec<String>,
) -> Statement {
    let note = &n.notification;
    let kind = match &note.kind {
        NotificationKind::Email => "email",
        other => other.as_str(),
    };
    let mut params = Vec::new();
    let mut param = |key: &str, value: Value| {
        params.push(Param {
            key: s(key),
            value: Spanned::new(value, 0..0),
        })
    };
    let secret_key = note.kind.secret_param().map(|p| p.wire);
    let plain = note.params.clone().unwrap_or_default();
    let secret_held = note.secret_params.as_ref().is_some_and(|m| !m.is_empty())
        || secret_key.is_some_and(|k| plain.contains_key(k));
    if let Some(spec) = note.kind.secret_param()
        && secret_held
    {
        let k = spec.rule.unwrap_or(spec.wire);
        param(k, Value::Secret(secret_name(&c.name, &note.name, k)));
    }
    for (k, v) in &plain {
        let as_str = v.as_str().map(str::to_owned);
        // The parameter's name and shape in the rule language, from the table of notification
        // parameters (one without a rule name is left out below).
        let spec = note.kind.param_by_wire(k);
        let rule_key = spec.and_then(|p| p.rule).unwrap_or("");
        let shape = spec.map_or(Shape::Json, |p| p.shape);
        match (shape, v) {
            (_, _) if rule_key.is_empty() => notes.push(format!(
                "alert `{}`, notification `{}`: parameter `{k}` ({}) is left out",
                c.name,
                note.name,
                as_str.clone().unwrap_or_else(|| v.to_string())
            )),
            (Shape::List, Json::Array(list)) => param(
                rule_key,
                Value::List(
                    list.iter()
                        .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                        .collect(),
                ),
            ),
            (Shape::List, Json::String(one)) => param(rule_key, Value::List(vec![one.clone()])),
            (Shape::EventKind, Json::String(kind)) => param(rule_key, Value::Word(kind.clone())),
            (Shape::Text | Shape::NumberOrText, Json::String(x)) => {
                param(rule_key, Value::Str(x.clone()))
            }
            (Shape::NumberOrText, Json::Number(x)) => param(rule_key, Value::Number(x.to_string())),
            (Shape::Bool, Json::Bool(b)) => param(rule_key, Value::Bool(*b)),
            (Shape::Secret, _) => {
                notes.push(format!(
                    "alert `{}`, notification `{}`: `{rule_key}` was inline; set {} where you apply",
                    c.name,
                    note.name,
                    secret_name(&c.name, &note.name, rule_key)
                ));
            }
            _ => notes.push(format!(
                "alert `{}`, notification `{}`: parameter `{k}` ({}) is left out",
                c.name,
                note.name,
                as_str.unwrap_or_else(|| v.to_string())
            )),
        }
    }
    if note.when.as_ref().is_some_and(|w| !w.is_empty())
        || note.condition.as_ref().is_some_and(|c| !c.is_empty())
    {
        notes.push(format!(
            "alert `{}`, notification `{}`: MLRun's `when`/`condition` are left out (alert notifications are sent on every activation)",
            c.name, note.name
        ));
    }
    if let Some(m) = &note.message {
        param("message", Value::Str(m.clone()));
    }
    if let Some(sev) = &note.severity {
        param("severity", Value::Word(sev.as_str().to_owned()));
    }
    if let Some(cd) = &n.cooldown_period {
        param("cooldown", Value::Duration(cd.clone()));
    }
    if n.send_resolved {
        param("resolved", Value::Bool(true));
    }
    Statement::Notify {
        kind: s(kind),
        name: s(&note.name),
        params,
    }
}

/// The expression for a wire filter; `all`/`any` lists fold to the left, as the parser builds.
fn expr(f: &Filter) -> Spanned<Expr> {
    let fold = |fs: &[Filter], and: bool| {
        let mut it = fs.iter().map(expr);
        let first = it.next().unwrap_or_else(|| {
            // An empty `all` holds and an empty `any` does not: say so with a comparison
            // that is always (or never) true.
            let op = if and { CompareOp::Ne } else { CompareOp::Eq };
            Spanned::new(
                Expr::Compare {
                    field: s("__never_set__"),
                    op: Spanned::new(op, 0..0),
                    value: Spanned::new(Literal::Null, 0..0),
                },
                0..0,
            )
        });
        it.fold(first, |acc, next| {
            let e = if and {
                Expr::And(Box::new(acc), Box::new(next))
            } else {
                Expr::Or(Box::new(acc), Box::new(next))
            };
            Spanned::new(e, 0..0)
        })
    };
    match f {
        Filter::All { all } => fold(all, true),
        Filter::Any { any } => fold(any, false),
        Filter::Not { not } => Spanned::new(Expr::Not(Box::new(expr(not))), 0..0),
        Filter::Compare { field, op, value } => {
            let lit = match value {
                Json::String(x) => Literal::Str(x.clone()),
                Json::Number(n) => Literal::Number(n.to_string()),
                Json::Bool(b) => Literal::Bool(*b),
                _ => Literal::Null,
            };
            Spanned::new(
                Expr::Compare {
                    field: s(field),
                    op: Spanned::new(*op, 0..0),
                    value: Spanned::new(lit, 0..0),
                },
                0..0,
            )
        }
    }
}
