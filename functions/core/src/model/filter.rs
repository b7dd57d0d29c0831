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

/// One comparison of a filter as an event met it: the field, the constant, what the event
/// holds there (None: nothing), whether the comparison held, and whether the filter wants it
/// to (`negated`: it sits under a `not`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checked<'f> {
    pub field: &'f str,
    pub op: CompareOp,
    pub value: &'f Value,
    pub got: Option<Value>,
    pub holds: bool,
    /// Under an odd number of `not`: the filter wants it not to hold.
    pub negated: bool,
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
        self.eval(values, &mut |_: Checked<'_>| {}, false, false)
    }

    /// [`Filter::matches`], with every comparison evaluated (no short cut) and handed to
    /// `seen` with the value it found: what `explain` shows, by the same code that decides.
    pub fn trace<'f>(&'f self, values: &Map<String, Value>) -> (bool, Vec<Checked<'f>>) {
        let mut checked = Vec::new();
        let passes = self.eval(values, &mut |c: Checked<'f>| checked.push(c), true, false);
        (passes, checked)
    }

    /// The one evaluation: `every` evaluates all branches (for a trace) instead of stopping at
    /// the first that decides; the result is the same. `negated`: under an odd number of `not`.
    fn eval<'f>(
        &'f self,
        values: &Map<String, Value>,
        seen: &mut impl FnMut(Checked<'f>),
        every: bool,
        negated: bool,
    ) -> bool {
        match self {
            Filter::All { all } if every => {
                all.iter()
                    .map(|f| f.eval(values, seen, every, negated))
                    .filter(|holds| !holds)
                    .count()
                    == 0
            }
            Filter::All { all } => all.iter().all(|f| f.eval(values, seen, every, negated)),
            Filter::Any { any } if every => {
                any.iter()
                    .map(|f| f.eval(values, seen, every, negated))
                    .filter(|holds| *holds)
                    .count()
                    > 0
            }
            Filter::Any { any } => any.iter().any(|f| f.eval(values, seen, every, negated)),
            Filter::Not { not } => !not.eval(values, seen, every, !negated),
            Filter::Compare { field, op, value } => {
                let got = lookup(values, field);
                let holds = match got {
                    Some(got) => compare(got, *op, value),
                    None => *op == CompareOp::Ne,
                };
                seen(Checked {
                    field,
                    op: *op,
                    value,
                    got: got.cloned(),
                    holds,
                    negated,
                });
                holds
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
        let (passes, checked) = f.trace(&low);
        assert!(!passes, "the trace decides as matches does");
        let seen: Vec<(&str, bool)> = checked.iter().map(|c| (c.field, c.holds)).collect();
        assert_eq!(
            seen,
            [
                ("result_value", false),
                ("app", false),
                ("meta.region", true),
                ("meta.region", false)
            ],
            "every comparison, in order, with no short cut"
        );
        assert_eq!(checked[0].got, Some(json!(0.7)));
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
