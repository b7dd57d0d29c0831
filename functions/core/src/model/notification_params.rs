//! What each notification kind takes, in one table: its parameters' names on the wire (MLRun's
//! `params` / `secret_params` keys) and in the rule language, whether each is a secret, and
//! whether it is required. The rule compiler and checker, `export`, delivery and preview read
//! this table rather than each keeping its own list.

use super::NotificationKind;

/// One parameter of a notification kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamSpec {
    /// Its key in `params` or `secret_params`.
    pub wire: &'static str,
    /// Its name in the rule language; None for a parameter only the wire format has.
    pub rule: Option<&'static str>,
    /// A secret: only in `secret_params`, written `secret("NAME")` in rule files, never shown.
    pub secret: bool,
    /// A notification of this kind cannot be delivered without it.
    pub required: bool,
    /// The form of its value: what the rule checker accepts and `tocsin export` writes.
    pub shape: Shape,
}

/// The form of a parameter's value, on the wire and in the rule language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A secret: `secret("NAME")` in rule files, a string in `secret_params`.
    Secret,
    /// A string (`"..."`, or a bare word).
    Text,
    /// A list of strings (`["a", "b"]`, or one string).
    List,
    /// An event kind, written as a word.
    EventKind,
    /// A number or a string (an issue number).
    NumberOrText,
    /// `true` or `false`.
    Bool,
    /// Any JSON, set through the API only (the rule language has no form for it).
    Json,
}

impl Shape {
    /// How to write a value of this shape in a rule file, for `key`.
    pub fn example(self, key: &str) -> String {
        match self {
            Shape::Secret => format!("write `{key} secret(\"NAME\")`"),
            Shape::Text => format!("write `{key} \"...\"`"),
            Shape::List => format!(
                "write `{key} \"oncall@example.com\"` or `{key} [\"a@example.com\", \"b@example.com\"]`"
            ),
            Shape::EventKind => format!("write `{key} job-cpu-high` (an event kind)"),
            Shape::NumberOrText => format!("write `{key} 42`"),
            Shape::Bool => format!("write `{key} true` or `{key} false`"),
            Shape::Json => format!("`{key}` is set through the API only"),
        }
    }
}

impl ParamSpec {
    /// A parameter the rule language writes as `rule`; a secret when its shape is.
    pub const fn new(wire: &'static str, rule: &'static str, shape: Shape, required: bool) -> Self {
        ParamSpec {
            wire,
            rule: Some(rule),
            secret: matches!(shape, Shape::Secret),
            required,
            shape,
        }
    }

    /// A parameter that only the wire format has (set through the API).
    pub const fn wire_only(wire: &'static str) -> Self {
        ParamSpec {
            wire,
            rule: None,
            secret: false,
            required: false,
            shape: Shape::Json,
        }
    }
}

impl NotificationKind {
    /// The kind's name in the rule language (`mail` is accepted there too).
    pub fn rule_name(self) -> &'static str {
        match self {
            NotificationKind::Email => "email",
            other => other.wire_name(),
        }
    }

    /// The kind a rule file names.
    pub fn from_rule_name(word: &str) -> Option<Self> {
        match word {
            "mail" => Some(NotificationKind::Email),
            w => NotificationKind::ALL
                .iter()
                .copied()
                .find(|k| k.rule_name() == w),
        }
    }

    /// The kind's own parameters, from its channel (every kind also takes a message, a
    /// severity and a cooldown, which are fields of the notification, not parameters).
    pub fn params(self) -> &'static [ParamSpec] {
        self.channel().params()
    }

    /// The parameter without which the kind cannot deliver: the target.
    pub fn target(self) -> &'static ParamSpec {
        // Every kind has exactly one required parameter (a test holds the table to it).
        self.params()
            .iter()
            .find(|p| p.required)
            .unwrap_or(&self.params()[0])
    }

    /// The kind's secret parameter, if it has one.
    pub fn secret_param(self) -> Option<&'static ParamSpec> {
        self.params().iter().find(|p| p.secret)
    }

    /// The parameter named `rule` in the rule language.
    pub fn param_by_rule_name(self, rule: &str) -> Option<&'static ParamSpec> {
        self.params().iter().find(|p| p.rule == Some(rule))
    }

    /// The parameters the rule language has, with their names there.
    pub fn rule_params(self) -> impl Iterator<Item = (&'static str, &'static ParamSpec)> {
        self.params().iter().filter_map(|p| p.rule.map(|r| (r, p)))
    }

    /// The parameter with wire key `wire`.
    pub fn param_by_wire(self, wire: &str) -> Option<&'static ParamSpec> {
        self.params().iter().find(|p| p.wire == wire)
    }
}

/// A parameter of a notification, from its secret parameters (`secret`, as stored beside the
/// rule) or else its plain ones; None when absent or null.
pub fn param_value<'a>(
    key: &str,
    secret: Option<&'a serde_json::Map<String, serde_json::Value>>,
    note: &'a super::Notification,
) -> Option<&'a serde_json::Value> {
    secret
        .and_then(|s| s.get(key))
        .or_else(|| note.params.as_ref().and_then(|p| p.get(key)))
        .filter(|v| !v.is_null())
}

/// `email_addresses` as a list: a JSON list, or one string separated by commas.
pub fn address_list(v: &serde_json::Value) -> Vec<&str> {
    match v {
        serde_json::Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect(),
        serde_json::Value::Array(a) => a.iter().filter_map(serde_json::Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The addresses of every email notification of `rule` (from its secret or its params): what
/// the AWS deployment subscribes to its SNS topic, filtered to this alert.
pub fn email_recipients(rule: &crate::compiled::Rule) -> std::collections::BTreeSet<String> {
    rule.config
        .notifications
        .iter()
        .map(|n| &n.notification)
        .filter(|n| n.kind == NotificationKind::Email)
        .filter_map(|n| param_value("email_addresses", rule.secrets.get(&n.name), n))
        .flat_map(address_list)
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_target_and_at_most_one_secret() {
        for kind in NotificationKind::ALL {
            let required = kind.params().iter().filter(|p| p.required).count();
            assert_eq!(required, 1, "{kind}: one required parameter");
            let secrets = kind.params().iter().filter(|p| p.secret).count();
            assert!(secrets <= 1, "{kind}: at most one secret");
            let rule_names: Vec<_> = kind.rule_params().map(|(r, _)| r).collect();
            let mut unique = rule_names.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), rule_names.len(), "{kind}: a rule name twice");
            assert_eq!(
                NotificationKind::from_rule_name(kind.rule_name()),
                Some(*kind)
            );
        }
        assert_eq!(
            NotificationKind::from_rule_name("mail"),
            Some(NotificationKind::Email)
        );
        assert_eq!(NotificationKind::Slack.target().wire, "webhook");
        assert_eq!(NotificationKind::Email.target().rule, Some("to"));
    }
}
