//! `where` filters: comparisons and their combinations, compiled into the model's `Filter`.

use super::*;

impl<'f> Checker<'f> {
    pub(super) fn filter(&mut self, e: &Spanned<Expr>) -> Filter {
        match &e.node {
            Expr::And(a, b) => Filter::All {
                all: self.flatten(a, b, true),
            },
            Expr::Or(a, b) => Filter::Any {
                any: self.flatten(a, b, false),
            },
            Expr::Not(inner) => Filter::Not {
                not: Box::new(self.filter(inner)),
            },
            Expr::Compare { field, op, value } => {
                let v = match &value.node {
                    Literal::Str(s) => Json::from(s.clone()),
                    Literal::Number(n) => number(n),
                    Literal::Bool(b) => Json::from(*b),
                    Literal::Null => Json::Null,
                };
                if op.node.is_string_op() && !v.is_string() {
                    self.diags.push(
                        Diagnostic::error(
                            Code::MismatchedComparison,
                            value.span.clone(),
                            format!("`{}` compares strings", op.node.as_str()),
                        )
                        .label("not a string")
                        .help(format!(
                            "write `value.{} {} \"...\"`",
                            field.node,
                            op.node.as_str()
                        )),
                    );
                }
                if matches!(
                    op.node,
                    CompareOp::Lt | CompareOp::Le | CompareOp::Gt | CompareOp::Ge
                ) && matches!(value.node, Literal::Null | Literal::Bool(_))
                {
                    self.diags.push(
                        Diagnostic::error(
                            Code::MismatchedComparison,
                            value.span.clone(),
                            format!("`{}` orders numbers or strings", op.node.as_str()),
                        )
                        .label("nothing is ordered against this")
                        .help("compare with a number or a string"),
                    );
                }
                Filter::Compare {
                    field: field.node.clone(),
                    op: op.node,
                    value: v,
                }
            }
        }
    }

    /// `a and b and c` as one `all` (likewise `or`), as the wire form writes it.
    pub(super) fn flatten(
        &mut self,
        a: &Spanned<Expr>,
        b: &Spanned<Expr>,
        and: bool,
    ) -> Vec<Filter> {
        let mut out = Vec::new();
        for side in [a, b] {
            match (&side.node, and) {
                (Expr::And(x, y), true) | (Expr::Or(x, y), false) => {
                    out.extend(self.flatten(x, y, and))
                }
                _ => out.push(self.filter(side)),
            }
        }
        out
    }
}
