//! Diagnostics: every problem found in a file, each with a stable code, a span, a message in
//! words, and a hint; rendered for people (the source line with a caret) or as JSON.

use codespan_reporting::diagnostic::{Diagnostic as Report, Label, Severity};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, Config, termcolor};
use serde::Serialize;

use crate::ast::Span;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error,
    Warning,
}

/// One problem in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Its code; see [`Code`].
    pub code: Code,
    pub level: Level,
    pub message: String,
    pub span: Span,
    /// What the caret says about the spot.
    pub label: String,
    /// A hint: "did you mean ...", or how to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error.
    pub fn error(code: Code, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            level: Level::Error,
            message: message.into(),
            span,
            label: String::new(),
            help: None,
        }
    }

    /// A warning: legal, but likely wrong.
    pub fn warning(code: Code, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            level: Level::Warning,
            ..Diagnostic::error(code, span, message)
        }
    }

    /// With a label at the caret.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// With a hint.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// With a fallback hint, when no "did you mean" was found.
    pub fn help_if_none(self, help: impl Into<String>) -> Self {
        if self.help.is_some() {
            self
        } else {
            self.help(help)
        }
    }

    /// With "did you mean `x`?" when `suggestion` found one.
    pub fn suggest(self, suggestion: Option<&str>) -> Self {
        match suggestion {
            Some(s) => self.help(format!("did you mean `{s}`?")),
            None => self,
        }
    }
}

/// Declares [`Code`]: each variant with its stable code and what it means.
macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = ($code:literal, $meaning:literal),)+) => {
        /// A diagnostic's code: typed, so that a misspelt code does not compile. Each has a
        /// stable string (`E010`) that is never reused for something else.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $($(#[$doc])* $variant,)+
        }

        impl Code {
            /// Every code, in order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),+];

            /// The stable string: `E` for errors, `W` for warnings.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $code,)+
                }
            }

            /// What the code means, for the catalogue.
            pub const fn meaning(self) -> &'static str {
                match self {
                    $(Code::$variant => $meaning,)+
                }
            }
        }
    };
}

codes! {
    /// syntax error
    Syntax = ("E001", "syntax error"),
    /// the file declares no project, or more than one
    Project = ("E002", "the file declares no project, or more than one"),
    /// a name is defined twice
    DuplicateName = ("E003", "a name is defined twice"),
    /// unknown event kind
    UnknownEventKind = ("E010", "unknown event kind"),
    /// unknown entity kind
    UnknownEntityKind = ("E011", "unknown entity kind"),
    /// event kind and entity kind do not fit
    KindMismatch = ("E012", "event kind and entity kind do not fit"),
    /// unknown template
    UnknownTemplate = ("E013", "unknown template"),
    /// templates extend each other in a cycle
    TemplateCycle = ("E014", "templates extend each other in a cycle"),
    /// a statement appears twice in one block
    DuplicateStatement = ("E015", "a statement appears twice in one block"),
    /// a statement that this kind of block does not take
    MisplacedStatement = ("E016", "a statement that this kind of block does not take"),
    /// unknown value (severity, reset policy, notification severity)
    UnknownValue = ("E020", "unknown value (severity, reset policy, notification severity)"),
    /// invalid duration
    InvalidDuration = ("E021", "invalid duration"),
    /// invalid count
    InvalidCount = ("E022", "invalid count"),
    /// a required statement is missing
    MissingStatement = ("E023", "a required statement is missing"),
    /// `when` and `for` together: an alert counts or waits, not both
    CountAndSustain = ("E024", "`when` and `for` together: an alert counts or waits, not both"),
    /// invalid name
    InvalidName = ("E025", "invalid name"),
    /// invalid entity id
    InvalidEntityId = ("E026", "invalid entity id"),
    /// unknown notification kind
    UnknownNotificationKind = ("E030", "unknown notification kind"),
    /// unknown or misplaced notification parameter
    UnknownParameter = ("E031", "unknown or misplaced notification parameter"),
    /// a secret written inline: reference it with secret("NAME")
    InlineSecret = ("E032", "a secret written inline: reference it with secret(\"NAME\")"),
    /// a notification lacks where to deliver
    MissingTarget = ("E033", "a notification lacks where to deliver"),
    /// two notifications of an alert share a name
    DuplicateNotification = ("E034", "two notifications of an alert share a name"),
    /// invalid notification parameter value
    InvalidParameterValue = ("E035", "invalid notification parameter value"),
    /// a comparison whose constant does not fit the operator
    MismatchedComparison = ("E040", "a comparison whose constant does not fit the operator"),
    /// `per entity` on an alert about one entity
    PerEntityOnOne = ("E041", "`per entity` on an alert about one entity"),
    /// `cooldown` on an alert with `reset manual`
    CooldownOnManual = ("E042", "`cooldown` on an alert with `reset manual`"),
    /// a calculated event that would feed itself
    SelfFeedingEvent = ("E043", "a calculated event that would feed itself"),
    /// an absence alert that would not reset itself (manual, a cooldown) or would emit events
    AbsenceResetsItself = ("E044", "an absence alert that would not reset itself (manual, a cooldown) or would emit events"),
    /// `expecting` names an entity the alert does not watch
    NotWatched = ("E045", "`expecting` names an entity the alert does not watch"),
    /// a silence with neither `until` nor `every`
    EndlessSilence = ("E050", "a silence with neither `until` nor `every`"),
    /// a silence matcher on a field silences do not match, or written the wrong way
    UnknownMatch = ("E051", "a silence matcher on a field silences do not match, or written the wrong way"),
    /// invalid time or time of day
    InvalidTime = ("E052", "invalid time or time of day"),
    /// unknown time zone
    UnknownTimeZone = ("E053", "unknown time zone"),
    /// a template that nothing extends
    UnusedTemplate = ("W101", "a template that nothing extends"),
    /// an alert on many entities that counts them all in one window
    SharedWindow = ("W102", "an alert on many entities that counts them all in one window"),
    /// a cooldown shorter than the criteria window
    ShortCooldown = ("W103", "a cooldown shorter than the criteria window"),
    /// an unknown placeholder in a summary or message
    UnknownPlaceholder = ("W104", "an unknown placeholder in a summary or message"),
    /// `resolved true` on an alert whose activations close as they fire
    ResolvedAtOnce = ("W105", "`resolved true` on an alert whose activations close as they fire"),
    /// a zero window or cooldown, which means none
    ZeroDuration = ("W106", "a zero window or cooldown, which means none"),
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The closest of `candidates` to `word`, if close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let word = word.to_ascii_lowercase().replace('_', "-");
    candidates
        .into_iter()
        .map(|c| {
            let norm = c.to_ascii_lowercase().replace('_', "-");
            (strsim::damerau_levenshtein(&word, &norm), c)
        })
        .filter(|(d, c)| *d > 0 && *d <= (c.len() / 3).clamp(1, 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Renders diagnostics as people read them: `error[E010]: ...`, then `file:line:col`, the source
/// line and a caret, then the hint.
pub fn render(file_name: &str, source: &str, diagnostics: &[Diagnostic], color: bool) -> String {
    let file = SimpleFile::new(file_name, source);
    let mut out = if color {
        termcolor::Buffer::ansi()
    } else {
        termcolor::Buffer::no_color()
    };
    let config = Config::default();
    for d in diagnostics {
        let severity = match d.level {
            Level::Error => Severity::Error,
            Level::Warning => Severity::Warning,
        };
        let span = clamp(&d.span, source);
        let mut report = Report::new(severity)
            .with_code(d.code.as_str())
            .with_message(&d.message)
            .with_labels(vec![Label::primary((), span).with_message(&d.label)]);
        if let Some(help) = &d.help {
            report = report.with_notes(vec![format!("help: {help}")]);
        }
        // Writing to a memory buffer cannot fail; a span outside the file is clamped above.
        let _ = term::emit(&mut out, &config, &file, &report);
    }
    String::from_utf8_lossy(out.as_slice()).into_owned()
}

/// A span inside the source and on character boundaries (codespan refuses others).
fn clamp(span: &Span, source: &str) -> Span {
    let fix = |mut i: usize| {
        i = i.min(source.len());
        while !source.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let (start, end) = (fix(span.start), fix(span.end));
    start..end.max(start)
}

/// Line and column (1-based, columns in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = clamp(&(offset..offset), source).start;
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

/// A diagnostic for machines (`--format json`).
#[derive(Debug, Serialize)]
pub struct JsonDiagnostic<'a> {
    pub file: &'a str,
    pub code: &'static str,
    pub level: Level,
    pub message: &'a str,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub label: &'a str,
    pub help: Option<&'a str>,
}

/// The JSON form of one diagnostic.
pub fn to_json<'a>(file: &'a str, source: &str, d: &'a Diagnostic) -> JsonDiagnostic<'a> {
    let (line, column) = line_col(source, d.span.start);
    let (end_line, end_column) = line_col(source, d.span.end);
    JsonDiagnostic {
        file,
        code: d.code.as_str(),
        level: d.level,
        message: &d.message,
        line,
        column,
        end_line,
        end_column,
        label: &d.label,
        help: d.help.as_deref(),
    }
}
