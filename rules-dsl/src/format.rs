//! The canonical layout (`tocsin fmt`): items in their order, one blank line between them, two
//! spaces of indent, one statement per line, notification parameters on lines of their own,
//! filters with the fewest parentheses their precedence needs. Comments are kept: each one
//! goes before the item or statement it precedes in the source, or stays at the end of the
//! line it ended. Formatting a formatted file changes nothing.

use std::fmt::Write;

use crate::ast::{
    Definition, Expr, File, Item, Literal, Param, SilenceStatement, Span, Spanned, Statement, Value,
};

/// Formats `file`, parsed from `source` (for its comments).
pub fn format(file: &File, source: &str) -> String {
    let mut f = Formatter {
        out: String::new(),
        comments: comments(source),
        next: 0,
        source,
    };
    for (i, item) in file.items.iter().enumerate() {
        if i > 0 {
            f.out.push('\n');
        }
        f.leading(item.span().start, 0);
        f.item(item);
    }
    f.leading(usize::MAX, 0);
    while f.out.ends_with("\n\n") {
        f.out.pop();
    }
    f.out
}

/// A `#` comment: its span and text (without the line break).
struct Comment {
    span: Span,
    text: String,
}

/// Finds comments the way the grammar does: `#` outside a string, to the end of the line.
fn comments(source: &str) -> Vec<Comment> {
    let mut out = Vec::new();
    let bytes = source.as_bytes();
    let (mut i, mut in_string) = (0, false);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'\n' => in_string = false,
            b'#' if !in_string => {
                let end = source[i..].find('\n').map_or(source.len(), |n| i + n);
                out.push(Comment {
                    span: i..end,
                    text: source[i..end].trim_end().to_owned(),
                });
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

struct Formatter<'s> {
    out: String,
    comments: Vec<Comment>,
    /// The first comment not yet written.
    next: usize,
    source: &'s str,
}

impl Formatter<'_> {
    fn indent(&mut self, level: usize) {
        for _ in 0..level {
            self.out.push_str("  ");
        }
    }

    /// Writes the comments that start before `pos`, each on its own line.
    fn leading(&mut self, pos: usize, level: usize) {
        while let Some(c) = self.comments.get(self.next) {
            if c.span.start >= pos {
                break;
            }
            let text = c.text.clone();
            self.indent(level);
            self.out.push_str(&text);
            self.out.push('\n');
            self.next += 1;
        }
    }

    /// Writes a comment that follows `end` on the same line, then the line break.
    fn trailing(&mut self, end: usize) {
        if let Some(c) = self.comments.get(self.next) {
            let between = self.source.get(end..c.span.start).unwrap_or("\n");
            if !between.contains('\n') {
                let text = c.text.clone();
                self.out.push_str("  ");
                self.out.push_str(&text);
                self.next += 1;
            }
        }
        self.out.push('\n');
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Project(p) => {
                let _ = write!(self.out, "project {}", p.node);
                self.trailing(p.span.end);
            }
            Item::Template(d) => self.definition("template", d),
            Item::Alert(d) => self.definition("alert", d),
            Item::CustomEvent { name, entity, span } => {
                let _ = write!(self.out, "event {} on {}", name.node, entity.node);
                self.trailing(span.end);
            }
            Item::CalculatedEvent {
                name,
                from,
                statements,
                span,
            } => {
                let _ = write!(self.out, "event {} from {}", name.node, words(from));
                self.block(statements, span);
            }
            Item::Silence {
                name,
                statements,
                span,
            } => {
                let _ = write!(self.out, "silence {}", name.node);
                self.block_with(statements, span, |f, s, sp| f.silence_statement(s, sp));
            }
        }
    }

    fn silence_statement(&mut self, s: &SilenceStatement, span: &Span) {
        let o = &mut self.out;
        let _ = match s {
            SilenceStatement::Comment(t) => write!(o, "comment {}", quote(&t.node)),
            SilenceStatement::By(t) => write!(o, "by {}", quote(&t.node)),
            SilenceStatement::From(t) => write!(o, "from {}", quote(&t.node)),
            SilenceStatement::Until(t) => write!(o, "until {}", quote(&t.node)),
            SilenceStatement::Match {
                field,
                values,
                quoted,
            } => match (quoted, values.first()) {
                (true, Some(v)) => write!(o, "match {} {}", field.node, quote(&v.node)),
                _ => write!(o, "match {} {}", field.node, words(values)),
            },
            SilenceStatement::Every {
                days,
                from,
                to,
                zone,
            } => write!(
                o,
                "every {} {} to {} {}",
                words(days),
                from.node,
                to.node,
                quote(&zone.node)
            ),
        };
        self.trailing(span.end);
    }

    fn definition(&mut self, keyword: &str, d: &Definition) {
        let _ = write!(self.out, "{keyword} {}", d.name.node);
        if !d.extends.is_empty() {
            let _ = write!(self.out, " extends {}", words(&d.extends));
        }
        self.block(&d.statements, &d.span);
    }

    fn block(&mut self, statements: &[Spanned<Statement>], span: &Span) {
        self.block_with(statements, span, |f, s, sp| f.statement(s, sp));
    }

    /// A braced block of statements, one per line, with the comments where they were.
    fn block_with<T>(
        &mut self,
        statements: &[Spanned<T>],
        span: &Span,
        mut each: impl FnMut(&mut Self, &T, &Span),
    ) {
        self.out.push_str(" {");
        // A comment on the line of the opening brace stays there.
        let open = statements.first().map_or(span.end, |s| s.span.start);
        if let Some(c) = self.comments.get(self.next)
            && c.span.start < open
            && !self
                .source
                .get(span.start..c.span.start)
                .unwrap_or("\n")
                .contains('\n')
        {
            let text = c.text.clone();
            self.out.push(' ');
            self.out.push_str(&text);
            self.next += 1;
        }
        self.out.push('\n');
        for s in statements {
            self.leading(s.span.start, 1);
            self.indent(1);
            each(self, &s.node, &s.span);
        }
        self.leading(span.end, 1);
        self.out.push('}');
        self.trailing(span.end);
    }

    fn statement(&mut self, s: &Statement, span: &Span) {
        let o = &mut self.out;
        let _ = match s {
            Statement::Summary(t) => write!(o, "summary {}", quote(&t.node)),
            Statement::Description(t) => write!(o, "description {}", quote(&t.node)),
            Statement::Severity(w) => write!(o, "severity {}", w.node),
            Statement::Reset(w) => write!(o, "reset {}", w.node),
            Statement::Cooldown(d) => write!(o, "cooldown {}", d.node),
            Statement::On(kinds) => write!(o, "on {}", words(kinds)),
            Statement::Entity { kind, id } => match id {
                Some(id) => write!(o, "entity {} {}", kind.node, quote(&id.node)),
                None => write!(o, "entity {}", kind.node),
            },
            Statement::Where(e) => write!(o, "where {}", expr(&e.node, 0)),
            Statement::When {
                count,
                within,
                per_entity,
            } => {
                let _ = write!(o, "when count >= {}", count.node);
                if let Some(w) = within {
                    let _ = write!(o, " within {}", w.node);
                }
                if *per_entity {
                    o.push_str(" per entity");
                }
                Ok(())
            }
            Statement::For {
                duration,
                per_entity,
            } => {
                let _ = write!(o, "for {}", duration.node);
                if *per_entity {
                    o.push_str(" per entity");
                }
                Ok(())
            }
            Statement::Absent {
                duration,
                expecting,
            } => {
                let _ = write!(o, "when absent for {}", duration.node);
                if !expecting.is_empty() {
                    let ids: Vec<String> = expecting.iter().map(|e| quote(&e.node)).collect();
                    let _ = write!(o, " expecting [{}]", ids.join(", "));
                }
                Ok(())
            }
            Statement::Notify { kind, name, params } => {
                let _ = write!(o, "notify {} {}", kind.node, quote(&name.node));
                if !params.is_empty() {
                    return self.params(params, span);
                }
                Ok(())
            }
        };
        self.trailing(span.end);
    }

    fn params(&mut self, params: &[Param], span: &Span) {
        self.out.push_str(" {\n");
        for p in params {
            self.leading(p.key.span.start, 2);
            self.indent(2);
            let _ = write!(self.out, "{} {}", p.key.node, value(&p.value.node));
            self.trailing(p.value.span.end);
        }
        self.leading(span.end, 2);
        self.indent(1);
        self.out.push('}');
        self.trailing(span.end);
    }
}

fn words(ws: &[Spanned<String>]) -> String {
    ws.iter()
        .map(|w| w.node.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A string literal, escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn value(v: &Value) -> String {
    match v {
        Value::Str(s) => quote(s),
        Value::Secret(s) => format!("secret({})", quote(s)),
        Value::List(items) => format!(
            "[{}]",
            items
                .iter()
                .map(|i| quote(i))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Duration(d) | Value::Number(d) | Value::Word(d) => d.clone(),
        Value::Bool(b) => b.to_string(),
    }
}

/// Binding strength: `or` 1, `and` 2, `not` 3, a comparison 4.
fn strength(e: &Expr) -> u8 {
    match e {
        Expr::Or(..) => 1,
        Expr::And(..) => 2,
        Expr::Not(_) => 3,
        Expr::Compare { .. } => 4,
    }
}

/// An expression, parenthesised where its context binds tighter than it does.
pub fn expr(e: &Expr, context: u8) -> String {
    let s = match e {
        // Both operators are left-associative: a right operand of the same strength keeps
        // its parentheses, so that the tree (and so the meaning) is kept exactly.
        Expr::Or(a, b) => format!("{} or {}", expr(&a.node, 1), expr(&b.node, 2)),
        Expr::And(a, b) => format!("{} and {}", expr(&a.node, 2), expr(&b.node, 3)),
        Expr::Not(inner) => format!("not {}", expr(&inner.node, 3)),
        Expr::Compare { field, op, value } => {
            format!(
                "value.{} {} {}",
                field.node,
                op.node.as_str(),
                literal(&value.node)
            )
        }
    };
    if strength(e) < context {
        format!("({s})")
    } else {
        s
    }
}

fn literal(l: &Literal) -> String {
    match l {
        Literal::Str(s) => quote(s),
        Literal::Number(n) => n.clone(),
        Literal::Bool(b) => b.to_string(),
        Literal::Null => "null".into(),
    }
}
