//! `silence NAME { ... }`: compiled to the silence the API stores under that id.

use tocsin_core::model::{
    Day, InvalidSilence, Schedule, Silence, SilenceMatchers, SilenceSpec, TimeOfDay, Timestamp,
};

use super::*;
use crate::ast::SilenceStatement;

/// A silence compiled from a file: `tocsin apply` stores it with `PUT .../silences/{id}`.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledSilence {
    pub id: String,
    pub spec: SilenceSpec,
    pub span: Span,
}

impl CompiledSilence {
    /// The silence as it holds in `project` from `now`, made by `by` (a backtest replays the
    /// rule files' silences beside the server's without storing them).
    pub fn silence(
        &self,
        project: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<Silence, InvalidSilence> {
        self.spec.clone().into_silence(
            self.id.clone(),
            project.to_owned(),
            by.to_owned(),
            now,
            None,
        )
    }
}

const MATCH_FIELDS: [&str; 4] = ["alert", "entity", "severity", "kind"];

impl<'f> Checker<'f> {
    /// Checks a silence block and compiles it; None when it has errors.
    pub(super) fn silence(
        &mut self,
        name: &Spanned<String>,
        statements: &[Spanned<SilenceStatement>],
        span: &Span,
    ) -> Option<CompiledSilence> {
        let errors_before = self.error_count();
        if !AlertName::is_valid(&name.node) {
            self.diags.push(name_error(name));
        }
        let mut seen: BTreeMap<String, Span> = BTreeMap::new();
        let mut spec = SilenceSpec::default();
        let mut matchers = SilenceMatchers::default();
        let mut has_comment = false;
        for s in statements {
            let slot = match &s.node {
                SilenceStatement::Match { field, .. } => format!("match {}", field.node),
                other => other.keyword().to_owned(),
            };
            if let Some(first) = seen.insert(slot.clone(), s.span.clone()) {
                self.diags.push(
                    Diagnostic::error(
                        Code::DuplicateStatement,
                        s.span.clone(),
                        format!("`{slot}` appears twice in silence `{}`", name.node),
                    )
                    .label("again here")
                    .help(format!(
                        "keep one: the first is at byte {} of the file",
                        first.start
                    )),
                );
                continue;
            }
            match &s.node {
                SilenceStatement::Comment(c) => {
                    has_comment = !c.node.trim().is_empty();
                    spec.comment = c.node.clone();
                }
                SilenceStatement::By(b) => spec.created_by = Some(b.node.clone()),
                SilenceStatement::From(t) => spec.starts_at = self.instant(t),
                SilenceStatement::Until(t) => spec.ends_at = self.instant(t),
                SilenceStatement::Match {
                    field,
                    values,
                    quoted,
                } => self.matcher(&mut matchers, field, values, *quoted),
                SilenceStatement::Every {
                    days,
                    from,
                    to,
                    zone,
                } => spec.schedule = self.schedule(days, from, to, zone),
            }
        }
        if !has_comment {
            self.diags.push(
                Diagnostic::error(
                    Code::MissingStatement,
                    name.span.clone(),
                    format!("silence `{}` has no `comment`", name.node),
                )
                .label("say why it silences")
                .help("add `comment \"planned maintenance\"`: the held-back notifications say it"),
            );
        }
        if !seen.contains_key("until") && !seen.contains_key("every") {
            self.diags.push(
                Diagnostic::error(
                    Code::EndlessSilence,
                    name.span.clone(),
                    format!("silence `{}` would hold forever", name.node),
                )
                .label("no `until` and no `every`")
                .help("add `until \"2026-12-31T00:00:00Z\"`, or a weekly window such as `every sat 02:00 to 04:00 \"Europe/Berlin\"`"),
            );
        }
        if let (Some(a), Some(b)) = (spec.starts_at, spec.ends_at)
            && b <= a
            && let Some(until) = seen.get("until")
        {
            self.diags.push(
                Diagnostic::error(
                    Code::InvalidTime,
                    until.clone(),
                    "the silence ends before it starts",
                )
                .label("`until` must be after `from`"),
            );
        }
        if self.error_count() > errors_before {
            return None;
        }
        spec.matchers = matchers;
        Some(CompiledSilence {
            id: name.node.clone(),
            spec,
            span: span.clone(),
        })
    }

    fn instant(&mut self, t: &Spanned<String>) -> Option<Timestamp> {
        let parsed = Timestamp::parse(&t.node);
        if parsed.is_none() {
            self.diags.push(
                Diagnostic::error(
                    Code::InvalidTime,
                    t.span.clone(),
                    format!("invalid time `{}`", t.node),
                )
                .label("not a date and time")
                .help("write an RFC 3339 time such as \"2026-12-05T02:00:00Z\""),
            );
        }
        parsed
    }

    fn matcher(
        &mut self,
        m: &mut SilenceMatchers,
        field: &Spanned<String>,
        values: &[Spanned<String>],
        quoted: bool,
    ) {
        match (field.node.as_str(), quoted) {
            ("alert", true) => m.alert = values.first().map(|v| v.node.clone()),
            ("entity", true) => m.entity = values.first().map(|v| v.node.clone()),
            ("severity", false) => {
                m.severity = values
                    .iter()
                    .filter_map(|v| {
                        self.word::<Severity>(v, "severity", ["low", "medium", "high"].into_iter())
                    })
                    .collect();
            }
            ("kind", false) => {
                m.event_kind = values.iter().filter_map(|v| self.event_kind(v)).collect();
            }
            ("alert" | "entity", false) | ("severity" | "kind", true) => {
                let want = if quoted {
                    "words, such as `match severity high, medium`"
                } else {
                    "a quoted glob, such as `match alert \"drift-*\"`"
                };
                self.diags.push(
                    Diagnostic::error(
                        Code::UnknownMatch,
                        field.span.clone(),
                        format!("`match {}` takes {want}", field.node),
                    )
                    .label("written the other way"),
                );
            }
            (other, _) => {
                let near = did_you_mean(other, MATCH_FIELDS);
                self.diags.push(
                    Diagnostic::error(
                        Code::UnknownMatch,
                        field.span.clone(),
                        format!("a silence cannot match on `{other}`"),
                    )
                    .label("not a field of an activation that silences match")
                    .suggest(near)
                    .help_if_none("match on `alert`, `entity`, `severity` or `kind`"),
                );
            }
        }
    }

    fn schedule(
        &mut self,
        days: &[Spanned<String>],
        from: &Spanned<String>,
        to: &Spanned<String>,
        zone: &Spanned<String>,
    ) -> Option<Schedule> {
        let every_day = matches!(days, [d] if d.node == "day");
        let days: Vec<Day> = if every_day {
            Vec::new()
        } else {
            days.iter()
                .filter_map(|d| {
                    self.word::<Day>(
                        d,
                        "day",
                        ["day", "mon", "tue", "wed", "thu", "fri", "sat", "sun"].into_iter(),
                    )
                })
                .collect()
        };
        let mut clock = |t: &Spanned<String>| match t.node.parse::<TimeOfDay>() {
            Ok(v) => Some(v),
            Err(e) => {
                self.diags.push(
                    Diagnostic::error(Code::InvalidTime, t.span.clone(), e)
                        .label("not a time of day"),
                );
                None
            }
        };
        let (from, to) = (clock(from), clock(to));
        if let Err(e) = zone.node.parse::<chrono_tz::Tz>() {
            let near = did_you_mean(&zone.node, chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()));
            self.diags.push(
                Diagnostic::error(
                    Code::UnknownTimeZone,
                    zone.span.clone(),
                    format!("unknown time zone `{}`", zone.node),
                )
                .label(format!("not an IANA time zone ({e})"))
                .suggest(near)
                .help_if_none("write an IANA name such as \"Europe/Berlin\" or \"UTC\""),
            );
            return None;
        }
        let schedule = Schedule {
            days,
            from: from?,
            to: to?,
            time_zone: zone.node.clone(),
        };
        Some(schedule)
    }
}
