//! Tocsin's per-event filter (the rules language's `where`): a condition on an event's
//! `value_dict` that decides whether the event counts for an alert at all. It travels on the
//! wire as the alert config's `filter` extension field, as JSON, so that the service evaluates
//! it without knowing the rules language:
//!
//! ```json
//! {"all": [{"field": "result_value", "op": ">", "value": 0.7},
//!          {"not": {"field": "app", "op": "starts_with", "value": "test-"}}]}
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A condition on an event's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Filter {
    /// Every condition holds (`and`).
    All { all: Vec<Filter> },
    /// At least one holds (`or`).
    Any { any: Vec<Filter> },
    /// The condition does not hold.
    Not { not: Box<Filter> },
    /// A field of `value_dict` (dotted for nested objects) compared with a constant.
    Compare {
        field: String,
        op: CompareOp,
        value: Value,
    },
}

/// How a field is compared with a constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CompareOp {
    #[serde(rename = "==")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    /// The string field contains the string constant.
    #[serde(rename = "contains")]
    Contains,
    #[serde(rename = "starts_with")]
    StartsWith,
    #[serde(rename = "ends_with")]
    EndsWith,
    /// The string field matches a glob (`*` any run of characters).
    #[serde(rename = "matches")]
    Matches,
}

impl CompareOp {
    /// The operator as the rules language and the wire spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
            CompareOp::Contains => "contains",
            CompareOp::StartsWith => "starts_with",
            CompareOp::EndsWith => "ends_with",
            CompareOp::Matches => "matches",
        }
    }

    /// Whether the operator compares strings only.
    pub const fn is_string_op(self) -> bool {
        matches!(
            self,
            CompareOp::Contains | CompareOp::StartsWith | CompareOp::EndsWith | CompareOp::Matches
        )
    }
}

impl Filter {
    /// Whether an event with these values passes. A missing field, or a field whose type does
    /// not fit the comparison, makes the comparison false (and so `!=` true): an event that does
    /// not say is not taken as evidence.
    pub fn matches(&self, values: &Map<String, Value>) -> bool {
        match self {
            Filter::All { all } => all.iter().all(|f| f.matches(values)),
            Filter::Any { any } => any.iter().any(|f| f.matches(values)),
            Filter::Not { not } => !not.matches(values),
            Filter::Compare { field, op, value } => {
                let got = lookup(values, field);
                match got {
                    Some(got) => compare(got, *op, value),
                    None => *op == CompareOp::Ne,
                }
            }
        }
    }

    /// Nesting depth (a comparison is 1); the service bounds it.
    pub fn depth(&self) -> usize {
        match self {
            Filter::All { all: fs } | Filter::Any { any: fs } => {
                1 + fs.iter().map(Filter::depth).max().unwrap_or(0)
            }
            Filter::Not { not } => 1 + not.depth(),
            Filter::Compare { .. } => 1,
        }
    }
}

/// `a.b.c` in nested objects; a key that itself holds dots is found whole first.
fn lookup<'v>(values: &'v Map<String, Value>, field: &str) -> Option<&'v Value> {
    if let Some(v) = values.get(field) {
        return Some(v);
    }
    let (head, rest) = field.split_once('.')?;
    match values.get(head)? {
        Value::Object(inner) => lookup(inner, rest),
        _ => None,
    }
}

fn compare(got: &Value, op: CompareOp, want: &Value) -> bool {
    use std::cmp::Ordering;
    if op.is_string_op() {
        let (Value::String(g), Value::String(w)) = (got, want) else {
            return false;
        };
        return match op {
            CompareOp::Contains => g.contains(w.as_str()),
            CompareOp::StartsWith => g.starts_with(w.as_str()),
            CompareOp::EndsWith => g.ends_with(w.as_str()),
            _ => crate::model::glob_match(w, g),
        };
    }
    let ordering = match (got, want) {
        (Value::Number(g), Value::Number(w)) => g
            .as_f64()
            .zip(w.as_f64())
            .and_then(|(g, w)| g.partial_cmp(&w)),
        (Value::String(g), Value::String(w)) => Some(g.cmp(w)),
        (Value::Bool(g), Value::Bool(w)) => Some(g.cmp(w)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    };
    match (op, ordering) {
        (CompareOp::Ne, o) => o != Some(Ordering::Equal),
        (_, None) => false,
        (CompareOp::Eq, Some(o)) => o == Ordering::Equal,
        (CompareOp::Lt, Some(o)) => o == Ordering::Less,
        (CompareOp::Le, Some(o)) => o != Ordering::Greater,
        (CompareOp::Gt, Some(o)) => o == Ordering::Greater,
        (CompareOp::Ge, Some(o)) => o != Ordering::Less,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    fn filter(v: Value) -> Filter {
        serde_json::from_value(v).expect("filter")
    }

    #[test]
    fn compares_numbers_strings_and_nested_fields() {
        let f = filter(json!({"all": [
            {"field": "result_value", "op": ">", "value": 0.7},
            {"not": {"field": "app", "op": "starts_with", "value": "test-"}},
            {"any": [{"field": "meta.region", "op": "==", "value": "eu"},
                     {"field": "meta.region", "op": "matches", "value": "us-*"}]}
        ]}));
        let ok =
            values(json!({"result_value": 0.9, "app": "drift", "meta": {"region": "us-east"}}));
        assert!(f.matches(&ok));
        let low = values(json!({"result_value": 0.7, "app": "drift", "meta": {"region": "eu"}}));
        assert!(!f.matches(&low), "0.7 is not > 0.7");
        let test_app =
            values(json!({"result_value": 1, "app": "test-x", "meta": {"region": "eu"}}));
        assert!(!f.matches(&test_app));
        assert_eq!(f.depth(), 3);
    }

    #[test]
    fn missing_or_mistyped_fields_are_not_evidence() {
        let gt = filter(json!({"field": "cpu", "op": ">", "value": 70}));
        assert!(!gt.matches(&values(json!({}))));
        assert!(!gt.matches(&values(json!({"cpu": "high"}))));
        let ne = filter(json!({"field": "cpu", "op": "!=", "value": 70}));
        assert!(ne.matches(&values(json!({}))));
        assert!(!ne.matches(&values(json!({"cpu": 70.0}))), "70 == 70.0");
    }

    #[test]
    fn round_trips_and_refuses_unknown_shapes() {
        let wire = json!({"any": [{"field": "a", "op": "contains", "value": "x"}, {"not": {"field": "b", "op": "<=", "value": 1}}]});
        assert_eq!(
            serde_json::to_value(filter(wire.clone())).expect("json"),
            wire
        );
        assert!(
            serde_json::from_value::<Filter>(json!({"field": "a", "op": "~", "value": 1})).is_err()
        );
        assert!(serde_json::from_value::<Filter>(json!({"every": []})).is_err());
    }
}
