//! Templates and `extends`: which statements a block may hold, and the merge of an alert with
//! its templates (built-in ones included) in the documented order.

use super::*;

impl<'f> Checker<'f> {
    /// Rules about one block as written (before any merge): no statement twice, `when` and
    /// `for` not together, notification names unique; calculated events take fewer statements.
    pub(super) fn block_rules(&mut self, statements: &[Spanned<Statement>], calculated: bool) {
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
    pub(super) fn merged(
        &mut self,
        def: &'f Definition,
        stack: &mut Vec<String>,
    ) -> Vec<Merged<'f>> {
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
}

/// Adds `s` to merged statements: replaces its slot, or (for `notify`) the same-named one.
pub(super) fn merge_into<'f>(out: &mut Vec<Merged<'f>>, s: Merged<'f>) {
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
pub(super) fn builtin_template(
    t: &tocsin_core::model::AlertTemplate,
    at: &Span,
) -> Vec<Merged<'static>> {
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
