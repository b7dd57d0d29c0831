//! Notifications: the kind, its parameters (from the table in core), secrets and the common
//! fields, compiled into an MLRun notification.

use super::*;

impl<'f> Checker<'f> {
    pub(super) fn notification(
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
            ("resolved", false, false),
        ];
        let allowed: Vec<(&str, bool, bool)> = own.iter().copied().chain(common).collect();
        let mut out_params = Map::new();
        let mut secret_params = Map::new();
        let mut secret_missing = false;
        let (mut message, mut severity, mut cooldown) = (None, None, None);
        let mut send_resolved = false;
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
                    let d = Spanned::new(d.clone(), v.span.clone());
                    self.zero_is_none(&d, "cooldown");
                    cooldown = self.duration(&d)
                }
                ("resolved", Value::Bool(b)) => send_resolved = *b,
                ("message" | "severity" | "cooldown" | "resolved", _) => {
                    self.bad_value(key, v, param_help(key))
                }
                _ => {
                    let spec = wire_kind.param_by_rule_name(key);
                    match self.shaped(spec.map_or(Shape::Json, |p| p.shape), v) {
                        Some(value) => {
                            out_params.insert(wire_key, value);
                        }
                        None => self.bad_value(key, v, param_help_of(spec, key)),
                    }
                }
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
                    .help(param_help_of(wire_kind.param_by_rule_name(key), key)),
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
            send_resolved,
        })
    }
}

/// How to write one of the fields every notification takes.
pub(super) fn param_help(key: &str) -> String {
    match key {
        "message" => "write `message \"...\"`".into(),
        "severity" => "write `severity warning` (info, debug, verbose, warning or error)".into(),
        "cooldown" => "write `cooldown 15m`".into(),
        "resolved" => "write `resolved true`: also notify when the activation closes".into(),
        _ => format!("see the `{key}` parameter in the README"),
    }
}

/// How to write a kind's own parameter, from its shape in the table.
pub(super) fn param_help_of(spec: Option<&ParamSpec>, key: &str) -> String {
    spec.map_or_else(|| param_help(key), |p| p.shape.example(key))
}

impl Checker<'_> {
    /// A parameter's value in the JSON form its shape takes on the wire; None when it is not of
    /// that shape.
    fn shaped(&mut self, shape: Shape, v: &Spanned<Value>) -> Option<Json> {
        match (shape, &v.node) {
            (Shape::Text, Value::Str(s) | Value::Word(s)) => Some(Json::from(s.clone())),
            (Shape::List, Value::Str(s)) => Some(json!([s])),
            (Shape::List, Value::List(l)) if !l.is_empty() => Some(json!(l)),
            (Shape::EventKind, Value::Word(w) | Value::Str(w)) => self
                .event_kind(&Spanned::new(w.clone(), v.span.clone()))
                .map(|k| Json::from(k.as_str().to_owned())),
            (Shape::NumberOrText, Value::Number(n) | Value::Str(n)) => Some(number_or_string(n)),
            (Shape::Bool, Value::Bool(b)) => Some(Json::Bool(*b)),
            _ => None,
        }
    }

    /// A parameter's value of the wrong form.
    fn bad_value(&mut self, key: &str, v: &Spanned<Value>, help: String) {
        self.diags.push(
            Diagnostic::error(
                Code::InvalidParameterValue,
                v.span.clone(),
                format!("invalid value for `{key}`"),
            )
            .label("of the wrong form")
            .help(help),
        );
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
