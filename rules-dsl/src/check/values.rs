//! Values inside statements: durations, words from a fixed vocabulary, placeholders, numbers.

use super::*;

impl<'f> Checker<'f> {
    /// A duration as the wire writes it. Zero is the server's to judge: none for a window or
    /// a cooldown (with [`Checker::zero_is_none`]'s warning), refused for `for` and `absent`.
    pub(super) fn duration(&mut self, d: &Spanned<String>) -> Option<String> {
        match parse_period(&d.node) {
            Ok(_) => Some(d.node.clone()),
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

    /// Warns that a zero `what` (a window, a cooldown) means none: the server takes it so.
    pub(super) fn zero_is_none(&mut self, d: &Spanned<String>, what: &str) {
        if parse_period(&d.node).is_ok_and(|s| s.0 == 0) {
            self.diags.push(
                Diagnostic::warning(
                    Code::ZeroDuration,
                    d.span.clone(),
                    format!("a {what} of `{}` is no {what}", d.node),
                )
                .label("zero")
                .help(format!(
                    "leave the {what} out, or give a duration longer than zero"
                )),
            );
        }
    }

    pub(super) fn word<T: std::str::FromStr>(
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

    pub(super) fn placeholders(&mut self, s: &Spanned<String>, message: bool) {
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
}

pub(super) fn number(text: &str) -> Json {
    text.parse::<i64>()
        .map(Json::from)
        .or_else(|_| text.parse::<f64>().map(Json::from))
        .unwrap_or(Json::Null)
}

pub(super) fn number_or_string(text: &str) -> Json {
    match number(text) {
        Json::Null => Json::from(text.to_owned()),
        n => n,
    }
}
