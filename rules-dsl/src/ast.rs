//! The syntax tree of a rules file. Every node keeps its byte span in the source, for
//! diagnostics; equality ignores spans, so that `parse(fmt(x)) == parse(x)` compares meaning.

use std::ops::Range;

use tocsin_core::model::CompareOp;

/// A byte range in the source.
pub type Span = Range<usize>;

/// A value with where it was written.
#[derive(Debug, Clone)]
pub struct Spanned<T> {
    pub node: T,
    pub span: Span,
}

impl<T> Spanned<T> {
    pub fn new(node: T, span: Span) -> Self {
        Spanned { node, span }
    }
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    fn eq(&self, other: &Self) -> bool {
        self.node == other.node
    }
}

/// A parsed file: its items in source order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct File {
    pub items: Vec<Item>,
    /// Items that did not parse, as (keyword, name) from their first line: the checker takes
    /// their names as defined, so that one syntax error does not cascade into "unknown" ones.
    pub unparsed: Vec<(String, String)>,
}

/// A top-level declaration.
#[derive(Debug, Clone)]
pub enum Item {
    /// `project NAME`.
    Project(Spanned<String>),
    /// `template NAME [extends ...] { ... }`.
    Template(Definition),
    /// `alert NAME [extends ...] { ... }`.
    Alert(Definition),
    /// `event NAME on ENTITY-KIND`: a custom event kind that clients post.
    CustomEvent {
        name: Spanned<String>,
        entity: Spanned<String>,
        span: Span,
    },
    /// `event NAME from KINDS { ... }`: a calculated event.
    CalculatedEvent {
        name: Spanned<String>,
        from: Vec<Spanned<String>>,
        statements: Vec<Spanned<Statement>>,
        span: Span,
    },
    /// `silence NAME { ... }`.
    Silence {
        name: Spanned<String>,
        statements: Vec<Spanned<SilenceStatement>>,
        span: Span,
    },
}

/// A statement inside a `silence` block.
#[derive(Debug, Clone, PartialEq)]
pub enum SilenceStatement {
    /// Why: what the held-back notifications say.
    Comment(Spanned<String>),
    /// Who (when the server runs without auth; with auth, whoever applies the file).
    By(Spanned<String>),
    /// `match FIELD "glob"` or `match FIELD word, word`.
    Match {
        field: Spanned<String>,
        values: Vec<Spanned<String>>,
        /// Written as a quoted string (a glob), not as words.
        quoted: bool,
    },
    From(Spanned<String>),
    Until(Spanned<String>),
    /// `every DAYS HH:MM to HH:MM "ZONE"`; `day` for every day.
    Every {
        days: Vec<Spanned<String>>,
        from: Spanned<String>,
        to: Spanned<String>,
        zone: Spanned<String>,
    },
}

impl SilenceStatement {
    /// The keyword that starts it.
    pub fn keyword(&self) -> &'static str {
        match self {
            SilenceStatement::Comment(_) => "comment",
            SilenceStatement::By(_) => "by",
            SilenceStatement::Match { .. } => "match",
            SilenceStatement::From(_) => "from",
            SilenceStatement::Until(_) => "until",
            SilenceStatement::Every { .. } => "every",
        }
    }
}

impl PartialEq for Item {
    /// Meaning only: spans are ignored.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Item::Project(a), Item::Project(b)) => a == b,
            (Item::Template(a), Item::Template(b)) | (Item::Alert(a), Item::Alert(b)) => a == b,
            (
                Item::CustomEvent { name, entity, .. },
                Item::CustomEvent {
                    name: n2,
                    entity: e2,
                    ..
                },
            ) => name == n2 && entity == e2,
            (
                Item::CalculatedEvent {
                    name,
                    from,
                    statements,
                    ..
                },
                Item::CalculatedEvent {
                    name: n2,
                    from: f2,
                    statements: s2,
                    ..
                },
            ) => name == n2 && from == f2 && statements == s2,
            (
                Item::Silence {
                    name, statements, ..
                },
                Item::Silence {
                    name: n2,
                    statements: s2,
                    ..
                },
            ) => name == n2 && statements == s2,
            _ => false,
        }
    }
}

impl Item {
    /// Where the item is written.
    pub fn span(&self) -> Span {
        match self {
            Item::Project(p) => p.span.clone(),
            Item::Template(d) | Item::Alert(d) => d.span.clone(),
            Item::CustomEvent { span, .. }
            | Item::CalculatedEvent { span, .. }
            | Item::Silence { span, .. } => span.clone(),
        }
    }
}

/// A template or an alert.
#[derive(Debug, Clone)]
pub struct Definition {
    pub name: Spanned<String>,
    pub extends: Vec<Spanned<String>>,
    pub statements: Vec<Spanned<Statement>>,
    pub span: Span,
}

impl PartialEq for Definition {
    /// Meaning only: spans are ignored.
    fn eq(&self, other: &Self) -> bool {
        (&self.name, &self.extends, &self.statements)
            == (&other.name, &other.extends, &other.statements)
    }
}

/// A statement inside a block.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    Summary(Spanned<String>),
    Description(Spanned<String>),
    Severity(Spanned<String>),
    Reset(Spanned<String>),
    Cooldown(Spanned<String>),
    On(Vec<Spanned<String>>),
    Entity {
        kind: Spanned<String>,
        id: Option<Spanned<String>>,
    },
    Where(Spanned<Expr>),
    When {
        count: Spanned<String>,
        within: Option<Spanned<String>>,
        per_entity: bool,
    },
    For {
        duration: Spanned<String>,
        per_entity: bool,
    },
    /// `when absent for DURATION [expecting [...]]`.
    Absent {
        duration: Spanned<String>,
        expecting: Vec<Spanned<String>>,
    },
    Notify {
        kind: Spanned<String>,
        name: Spanned<String>,
        params: Vec<Param>,
    },
}

impl Statement {
    /// The keyword that starts it; also the slot a merge fills (`when` and `for` share one).
    pub fn keyword(&self) -> &'static str {
        match self {
            Statement::Summary(_) => "summary",
            Statement::Description(_) => "description",
            Statement::Severity(_) => "severity",
            Statement::Reset(_) => "reset",
            Statement::Cooldown(_) => "cooldown",
            Statement::On(_) => "on",
            Statement::Entity { .. } => "entity",
            Statement::Where(_) => "where",
            Statement::When { .. } => "when",
            Statement::For { .. } => "for",
            Statement::Absent { .. } => "when absent",
            Statement::Notify { .. } => "notify",
        }
    }
}

/// `key value` inside a notification's braces.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub key: Spanned<String>,
    pub value: Spanned<Value>,
}

/// A parameter's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    /// `secret("NAME")`: resolved when the rules are applied, never written in the file.
    Secret(String),
    List(Vec<String>),
    Duration(String),
    Number(String),
    Bool(bool),
    Word(String),
}

/// A filter expression over the event's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Spanned<Expr>>, Box<Spanned<Expr>>),
    Or(Box<Spanned<Expr>>, Box<Spanned<Expr>>),
    Not(Box<Spanned<Expr>>),
    Compare {
        /// Without the `value.` prefix.
        field: Spanned<String>,
        op: Spanned<CompareOp>,
        value: Spanned<Literal>,
    },
}

/// A constant in a comparison. Numbers keep their text, so that formatting changes nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Number(String),
    Bool(bool),
    Null,
}
