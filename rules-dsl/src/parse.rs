//! From source text to the syntax tree, with syntax errors as diagnostics. After a syntax
//! error the parser goes on item by item (an item starts a line with `project`, `template`,
//! `alert` or `event`), so that one typo does not hide the problems of the rest of the file.

use std::sync::LazyLock;

use pest::Parser;
use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::Pair;
use pest::pratt_parser::{Assoc, Op, PrattParser};
use tocsin_core::model::CompareOp;

use crate::ast::{
    Definition, Expr, File, Item, Literal, Param, SilenceStatement, Span, Spanned, Statement, Value,
};
use crate::diagnostic::{Code, Diagnostic};

#[derive(pest_derive::Parser)]
#[grammar = "grammar.pest"]
struct RulesParser;

/// Operator precedence of filter expressions, loosest first.
static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    PrattParser::new()
        .op(Op::infix(Rule::or_op, Assoc::Left))
        .op(Op::infix(Rule::and_op, Assoc::Left))
        .op(Op::prefix(Rule::not_op))
});

/// Sources larger than this are parsed on several threads, a run of whole items each.
const PARALLEL_BYTES: usize = 256 * 1024;

/// Parses a file. Returns what parsed (every item that did) and the syntax errors.
pub fn parse(source: &str) -> (File, Vec<Diagnostic>) {
    if let Some(items) = parse_in_parallel(source) {
        return (
            File {
                items,
                unparsed: Vec::new(),
            },
            Vec::new(),
        );
    }
    match whole(source, 0) {
        Some(items) => (
            File {
                items,
                unparsed: Vec::new(),
            },
            Vec::new(),
        ),
        None => parse_items_apart(source),
    }
}

/// The items of a run of whole items (`text` starts at byte `base` of the file), or None on a
/// syntax error.
fn whole(text: &str, base: usize) -> Option<Vec<Item>> {
    let mut pairs = RulesParser::parse(Rule::file, text).ok()?;
    let root = pairs.next()?;
    Some(
        root.into_inner()
            .filter(|p| p.as_rule() != Rule::EOI)
            .map(|p| item(p, base))
            .collect(),
    )
}

/// A large file split at item starts into one run per core, parsed at once. None when the file
/// is small, there is one core, or any run has a syntax error (the caller then parses it
/// whole, which reports errors as usual).
fn parse_in_parallel(source: &str) -> Option<Vec<Item>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 || source.len() < PARALLEL_BYTES {
        return None;
    }
    let starts = item_starts(source, false);
    let mut cuts = vec![0];
    for k in 1..threads {
        let target = k * source.len() / threads;
        let last = cuts.last().copied().unwrap_or(0);
        if let Some(&cut) = starts.iter().find(|&&s| s >= target && s > last) {
            cuts.push(cut);
        }
    }
    cuts.push(source.len());
    let runs: Vec<Option<Vec<Item>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = cuts
            .windows(2)
            .map(|w| {
                let (a, b) = (w[0], w[1]);
                scope.spawn(move || whole(&source[a..b], a))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    runs.into_iter().try_fold(Vec::new(), |mut all, run| {
        all.extend(run?);
        Some(all)
    })
}

/// Byte offsets of the lines that start an item: `project`, `template`, `alert` or `event` at
/// column 0, or with `near_misses` (after a syntax error) a word close to one (`alrt`).
fn item_starts(source: &str, near_misses: bool) -> Vec<usize> {
    let mut starts: Vec<usize> = Vec::new();
    let mut offset = 0;
    for line in source.split_inclusive('\n') {
        let first = line.split_whitespace().next().unwrap_or("");
        let at_column_zero = !line.starts_with([' ', '\t']);
        const ITEMS: [&str; 5] = ["project", "template", "alert", "event", "silence"];
        // A misspelt item keyword (`alrt`) starts an item too, so that its error is reported.
        let starts_item = ITEMS.contains(&first)
            || (near_misses
                && at_column_zero
                && first.starts_with(|c: char| c.is_ascii_alphabetic())
                && crate::diagnostic::did_you_mean(first, ITEMS).is_some());
        if at_column_zero && starts_item {
            starts.push(offset);
        }
        offset += line.len();
    }
    starts
}

/// Parses each item on its own, so that every item's first syntax error is reported.
fn parse_items_apart(source: &str) -> (File, Vec<Diagnostic>) {
    let mut starts = item_starts(source, true);
    // Text before the first item (other than blanks and comments) is a chunk of its own.
    if starts.first() != Some(&0) {
        starts.insert(0, 0);
    }
    let mut file = File::default();
    let mut errors = Vec::new();
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(source.len());
        let chunk = &source[start..end];
        if is_blank(chunk) {
            continue;
        }
        match RulesParser::parse(Rule::lone_item, chunk) {
            Ok(mut pairs) => {
                let items = pairs.next().map(Pair::into_inner);
                for pair in items.into_iter().flatten() {
                    if pair.as_rule() != Rule::EOI {
                        file.items.push(item(pair, start));
                    }
                }
            }
            Err(e) => {
                errors.push(syntax_error(&e, source, start));
                let mut words = chunk.split_whitespace();
                if let (Some(keyword), Some(name)) = (words.next(), words.next()) {
                    file.unparsed.push((keyword.to_owned(), name.to_owned()));
                }
            }
        }
    }
    (file, errors)
}

/// Only whitespace and comments.
fn is_blank(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with('#'))
}

fn syntax_error(e: &pest::error::Error<Rule>, source: &str, base: usize) -> Diagnostic {
    let pos = base
        + match e.location {
            InputLocation::Pos(p) => p,
            InputLocation::Span((s, _)) => s,
        };
    let found = token_at(source, pos);
    let span = pos..pos + found.len().max(1);
    let expected = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => expected(positives),
        ErrorVariant::CustomError { message } => message.clone(),
    };
    let found_words = if found.is_empty() {
        "the end of the file".to_owned()
    } else {
        format!("`{found}`")
    };
    // A misspelt keyword is the likeliest syntax error: name the one it resembles.
    const KEYWORDS: &[&str] = &[
        "project",
        "template",
        "alert",
        "event",
        "extends",
        "summary",
        "description",
        "severity",
        "reset",
        "cooldown",
        "on",
        "entity",
        "where",
        "when",
        "for",
        "notify",
        "within",
        "per",
        "count",
        "and",
        "or",
        "not",
        "contains",
        "starts_with",
        "ends_with",
        "matches",
        "from",
    ];
    let near = crate::diagnostic::did_you_mean(found, KEYWORDS.iter().copied());
    Diagnostic::error(
        Code::Syntax,
        span,
        format!("expected {expected}, found {found_words}"),
    )
    .label(format!("expected {expected}"))
    .suggest(near)
}

/// The word (or character) at `pos`, for "found ...".
fn token_at(source: &str, pos: usize) -> &str {
    let rest = source.get(pos..).unwrap_or("");
    let rest = rest.split(['\n', '\r']).next().unwrap_or("");
    let word_len = rest
        .find(|c: char| !(c.is_alphanumeric() || "_-.".contains(c)))
        .unwrap_or(rest.len());
    if word_len > 0 {
        &rest[..word_len]
    } else {
        rest.chars().next().map_or("", |c| &rest[..c.len_utf8()])
    }
}

/// The grammar's rule names as people say them, merged into one phrase.
fn expected(rules: &[Rule]) -> String {
    const VALUE: &str = "a value (a number, a string, `true`, `false` or `null`)";
    let mut phrases: Vec<&str> = Vec::new();
    for rule in rules {
        let phrase = match rule {
            Rule::file
            | Rule::lone_item
            | Rule::project
            | Rule::template
            | Rule::alert
            | Rule::custom_event
            | Rule::calculated_event
            | Rule::silence => "`project`, `template`, `alert`, `event` or `silence`",
            Rule::comment_
            | Rule::by_
            | Rule::match_
            | Rule::from_
            | Rule::until_
            | Rule::every => {
                "a silence statement (`comment`, `by`, `match`, `from`, `until`, `every`)"
            }
            Rule::silence_block => "`{`",
            Rule::clock => "a time of day such as `02:00`",
            Rule::summary
            | Rule::description
            | Rule::severity
            | Rule::reset
            | Rule::cooldown
            | Rule::on
            | Rule::entity
            | Rule::where_
            | Rule::when_
            | Rule::for_
            | Rule::absent_
            | Rule::notify => {
                "a statement (`on`, `entity`, `where`, `when`, `for`, `severity`, `summary`, `notify`, ...)"
            }
            Rule::word => "a name",
            Rule::string | Rule::chars => "a quoted string",
            Rule::duration => "a duration such as `10m` or `1h30m`",
            Rule::integer => "a whole number",
            Rule::number => "a number",
            Rule::extends => "`extends`",
            Rule::block | Rule::params => "`{`",
            Rule::per_entity => "`per entity`",
            Rule::param => "a parameter (`webhook`, `url`, `to`, `message`, `cooldown`, ...)",
            Rule::secret => "`secret(\"NAME\")`",
            Rule::expr | Rule::comparison | Rule::field | Rule::not_op => {
                "a condition such as `value.score > 0.7`"
            }
            Rule::compare_op => {
                "a comparison (`==`, `!=`, `<`, `<=`, `>`, `>=`, `contains`, `starts_with`, `ends_with`, `matches`)"
            }
            Rule::boolean | Rule::null => VALUE,
            Rule::or_op | Rule::and_op => "`and` or `or`",
            Rule::kinds => "an event kind",
            Rule::list => "a list such as `[\"a@example.com\"]`",
            Rule::EOI => "the end of the file",
            _ => "something else",
        };
        if !phrases.contains(&phrase) {
            phrases.push(phrase);
        }
    }
    if phrases.contains(&VALUE) {
        phrases.retain(|p| *p != "a quoted string" && *p != "a number");
    }
    match phrases.as_slice() {
        [] => "something else".to_owned(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// The pair's span, without the whitespace and comments the grammar skipped at its end (a
/// statement's span ends where its text does, so a trailing comment stays outside it).
fn span(pair: &Pair<Rule>, base: usize) -> Span {
    let start = base + pair.as_span().start();
    start..start + trimmed_len(pair.as_str())
}

fn trimmed_len(text: &str) -> usize {
    let mut t = text;
    loop {
        let u = t.trim_end();
        let line_start = u.rfind('\n').map_or(0, |i| i + 1);
        match comment_start(&u[line_start..]) {
            Some(pos) => t = &u[..line_start + pos],
            None => return u.len(),
        }
    }
}

/// Where a `#` comment starts in a line, outside strings.
fn comment_start(line: &str) -> Option<usize> {
    let mut in_string = false;
    let mut escaped = false;
    for (i, b) in line.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if in_string => escaped = true,
            b'"' => in_string = !in_string,
            b'#' if !in_string => return Some(i),
            _ => {}
        }
    }
    None
}

fn text(pair: Pair<Rule>, base: usize) -> Spanned<String> {
    let sp = span(&pair, base);
    Spanned::new(pair.as_str().to_owned(), sp)
}

/// A string literal's value, escapes undone.
fn string(pair: Pair<Rule>, base: usize) -> Spanned<String> {
    let sp = span(&pair, base);
    let raw = pair.into_inner().next().map_or("", |c| c.as_str());
    Spanned::new(unescape(raw), sp)
}

fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn item(pair: Pair<Rule>, base: usize) -> Item {
    let sp = span(&pair, base);
    let rule = pair.as_rule();
    let mut inner = pair.into_inner();
    let mut next = || inner.next();
    match rule {
        Rule::project => Item::Project(next().map_or_else(
            || Spanned::new(String::new(), sp.clone()),
            |p| text(p, base),
        )),
        Rule::template | Rule::alert => {
            let name = next().map_or_else(
                || Spanned::new(String::new(), sp.clone()),
                |p| text(p, base),
            );
            let mut extends = Vec::new();
            let mut statements = Vec::new();
            for p in inner {
                match p.as_rule() {
                    Rule::extends => extends = p.into_inner().map(|w| text(w, base)).collect(),
                    Rule::block => statements = block(p, base),
                    _ => {}
                }
            }
            let d = Definition {
                name,
                extends,
                statements,
                span: sp,
            };
            if rule == Rule::template {
                Item::Template(d)
            } else {
                Item::Alert(d)
            }
        }
        Rule::custom_event => {
            let name = next().map_or_else(
                || Spanned::new(String::new(), sp.clone()),
                |p| text(p, base),
            );
            let entity = next().map_or_else(
                || Spanned::new(String::new(), sp.clone()),
                |p| text(p, base),
            );
            Item::CustomEvent {
                name,
                entity,
                span: sp,
            }
        }
        Rule::silence => {
            let name = next().map_or_else(
                || Spanned::new(String::new(), sp.clone()),
                |p| text(p, base),
            );
            let statements = next()
                .map(|b| {
                    b.into_inner()
                        .filter_map(|p| {
                            let sp = span(&p, base);
                            silence_statement(p, base).map(|s| Spanned::new(s, sp))
                        })
                        .collect()
                })
                .unwrap_or_default();
            Item::Silence {
                name,
                statements,
                span: sp,
            }
        }
        _ => {
            let name = next().map_or_else(
                || Spanned::new(String::new(), sp.clone()),
                |p| text(p, base),
            );
            let from = next()
                .map(|k| k.into_inner().map(|w| text(w, base)).collect())
                .unwrap_or_default();
            let statements = next().map(|b| block(b, base)).unwrap_or_default();
            Item::CalculatedEvent {
                name,
                from,
                statements,
                span: sp,
            }
        }
    }
}

fn silence_statement(pair: Pair<Rule>, base: usize) -> Option<SilenceStatement> {
    let rule = pair.as_rule();
    let mut inner = pair.into_inner();
    Some(match rule {
        Rule::comment_ => SilenceStatement::Comment(string(inner.next()?, base)),
        Rule::by_ => SilenceStatement::By(string(inner.next()?, base)),
        Rule::from_ => SilenceStatement::From(string(inner.next()?, base)),
        Rule::until_ => SilenceStatement::Until(string(inner.next()?, base)),
        Rule::match_ => {
            let field = text(inner.next()?, base);
            let value = inner.next()?;
            let quoted = value.as_rule() == Rule::string;
            let values = if quoted {
                vec![string(value, base)]
            } else {
                value.into_inner().map(|w| text(w, base)).collect()
            };
            SilenceStatement::Match {
                field,
                values,
                quoted,
            }
        }
        Rule::every => SilenceStatement::Every {
            days: inner.next()?.into_inner().map(|w| text(w, base)).collect(),
            from: text(inner.next()?, base),
            to: text(inner.next()?, base),
            zone: string(inner.next()?, base),
        },
        _ => return None,
    })
}

fn block(pair: Pair<Rule>, base: usize) -> Vec<Spanned<Statement>> {
    pair.into_inner()
        .filter_map(|p| {
            let sp = span(&p, base);
            statement(p, base).map(|s| Spanned::new(s, sp))
        })
        .collect()
}

fn statement(pair: Pair<Rule>, base: usize) -> Option<Statement> {
    let rule = pair.as_rule();
    let mut inner = pair.into_inner();
    Some(match rule {
        Rule::summary => Statement::Summary(string(inner.next()?, base)),
        Rule::description => Statement::Description(string(inner.next()?, base)),
        Rule::severity => Statement::Severity(text(inner.next()?, base)),
        Rule::reset => Statement::Reset(text(inner.next()?, base)),
        Rule::cooldown => Statement::Cooldown(text(inner.next()?, base)),
        Rule::on => Statement::On(inner.next()?.into_inner().map(|w| text(w, base)).collect()),
        Rule::entity => Statement::Entity {
            kind: text(inner.next()?, base),
            id: inner.next().map(|s| string(s, base)),
        },
        Rule::where_ => Statement::Where(expr(inner.next()?, base)),
        Rule::when_ => {
            let count = text(inner.next()?, base);
            let (mut within, mut per_entity) = (None, false);
            for p in inner {
                match p.as_rule() {
                    Rule::duration => within = Some(text(p, base)),
                    Rule::per_entity => per_entity = true,
                    _ => {}
                }
            }
            Statement::When {
                count,
                within,
                per_entity,
            }
        }
        Rule::absent_ => {
            let duration = text(inner.next()?, base);
            let expecting = inner
                .next()
                .map(|l| l.into_inner().map(|s| string(s, base)).collect())
                .unwrap_or_default();
            Statement::Absent {
                duration,
                expecting,
            }
        }
        Rule::for_ => Statement::For {
            duration: text(inner.next()?, base),
            per_entity: inner.next().is_some(),
        },
        Rule::notify => {
            let kind = text(inner.next()?, base);
            let name = string(inner.next()?, base);
            let params = inner
                .next()
                .map(|ps| ps.into_inner().filter_map(|p| param(p, base)).collect())
                .unwrap_or_default();
            Statement::Notify { kind, name, params }
        }
        _ => return None,
    })
}

fn param(pair: Pair<Rule>, base: usize) -> Option<Param> {
    let mut inner = pair.into_inner();
    let key = text(inner.next()?, base);
    let v = inner.next()?;
    let sp = span(&v, base);
    let value = match v.as_rule() {
        Rule::secret => Value::Secret(string(v.into_inner().next()?, base).node),
        Rule::string => Value::Str(string(v, base).node),
        Rule::list => Value::List(v.into_inner().map(|s| string(s, base).node).collect()),
        Rule::duration => Value::Duration(v.as_str().to_owned()),
        Rule::number => Value::Number(v.as_str().to_owned()),
        Rule::boolean => Value::Bool(v.as_str() == "true"),
        _ => Value::Word(v.as_str().to_owned()),
    };
    Some(Param {
        key,
        value: Spanned::new(value, sp),
    })
}

fn expr(pair: Pair<Rule>, base: usize) -> Spanned<Expr> {
    PRATT
        .map_primary(|p| match p.as_rule() {
            Rule::expr => expr(p, base),
            _ => comparison(p, base),
        })
        .map_prefix(|op, rhs| {
            let sp = base + op.as_span().start()..rhs.span.end;
            Spanned::new(Expr::Not(Box::new(rhs)), sp)
        })
        .map_infix(|lhs, op, rhs| {
            let sp = lhs.span.start..rhs.span.end;
            let e = if op.as_rule() == Rule::and_op {
                Expr::And(Box::new(lhs), Box::new(rhs))
            } else {
                Expr::Or(Box::new(lhs), Box::new(rhs))
            };
            Spanned::new(e, sp)
        })
        .parse(pair.into_inner())
}

fn comparison(pair: Pair<Rule>, base: usize) -> Spanned<Expr> {
    let sp = span(&pair, base);
    let mut inner = pair.into_inner();
    let (Some(field), Some(op), Some(lit)) = (inner.next(), inner.next(), inner.next()) else {
        // The grammar makes a comparison of exactly these three.
        return Spanned::new(
            Expr::Compare {
                field: Spanned::new(String::new(), sp.clone()),
                op: Spanned::new(CompareOp::Eq, sp.clone()),
                value: Spanned::new(Literal::Null, sp.clone()),
            },
            sp,
        );
    };
    let field_sp = span(&field, base);
    let field = Spanned::new(
        field.as_str().trim_start_matches("value.").to_owned(),
        field_sp,
    );
    let op_sp = span(&op, base);
    let op_node = match op.as_str() {
        "==" => CompareOp::Eq,
        "!=" => CompareOp::Ne,
        "<" => CompareOp::Lt,
        "<=" => CompareOp::Le,
        ">" => CompareOp::Gt,
        ">=" => CompareOp::Ge,
        "contains" => CompareOp::Contains,
        "starts_with" => CompareOp::StartsWith,
        "ends_with" => CompareOp::EndsWith,
        _ => CompareOp::Matches,
    };
    let lit_sp = span(&lit, base);
    let value = match lit.as_rule() {
        Rule::string => Literal::Str(string(lit, base).node),
        Rule::number => Literal::Number(lit.as_str().to_owned()),
        Rule::boolean => Literal::Bool(lit.as_str() == "true"),
        _ => Literal::Null,
    };
    Spanned::new(
        Expr::Compare {
            field,
            op: Spanned::new(op_node, op_sp),
            value: Spanned::new(value, lit_sp),
        },
        sp,
    )
}

/// The grammar alone: parses `source` with pest and counts the pairs, building no tree. Only
/// the benchmarks use it, to split parse time between pest and the tree.
#[doc(hidden)]
pub fn pest_only(source: &str) -> usize {
    RulesParser::parse(Rule::file, source).map_or(0, |p| p.flatten().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file past [`PARALLEL_BYTES`], so that it is parsed in runs on several threads.
    fn big(n: usize, tail: &str) -> String {
        let mut s = String::from("project p\n\n# many alerts\n");
        for i in 0..n {
            s.push_str(&format!(
                "alert a{i} {{\n  summary \"Job {{{{entity}}}} failed, #{i}\"\n  on failed\n  where value.code >= {i} and not value.msg contains \"x\"\n  severity high\n}}\n\n"
            ));
        }
        s.push_str(tail);
        s
    }

    #[test]
    fn a_large_file_parses_in_runs_to_the_same_tree_and_spans() {
        let source = big(3000, "");
        assert!(source.len() > PARALLEL_BYTES);
        let runs = parse_in_parallel(&source).expect("parsed in runs");
        let whole = whole(&source, 0).expect("parsed whole");
        assert_eq!(
            format!("{runs:?}"),
            format!("{whole:?}"),
            "same items, same spans"
        );
    }

    #[test]
    fn a_syntax_error_in_a_large_file_is_reported_as_in_a_small_one() {
        let source = big(
            3000,
            "alert broken {\n  on failed\n  when count >= within 1h\n}\n",
        );
        let (file, errors) = parse(&source);
        assert_eq!(file.items.len(), 3001, "every other item parsed");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].code, Code::Syntax);
        assert_eq!(&source[errors[0].span.clone()], "within");
    }

    #[test]
    fn durations_take_several_units_and_nothing_glued_after() {
        let (file, errors) = parse(
            "project p\nalert a {\n  on failed\n  when count >= 2 within 1h30m\n  cooldown 2m30s\n}\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let Item::Alert(a) = &file.items[1] else {
            panic!("an alert");
        };
        let durations: Vec<String> = a
            .statements
            .iter()
            .filter_map(|s| match &s.node {
                Statement::When {
                    within: Some(w), ..
                } => Some(w.node.clone()),
                Statement::Cooldown(d) => Some(d.node.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(durations, ["1h30m", "2m30s"]);
        let (_, errors) = parse("project p\nalert a {\n  on failed\n  cooldown 2mx\n}\n");
        assert_eq!(errors.len(), 1, "a unit glued to a word is not a duration");
    }
}
