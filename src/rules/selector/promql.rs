//! Translation of selectors into PromQL label matchers.
//!
//! It follows prometheus-adapter's `selectMatcher` and `selectTargetValue` row for row, so that
//! rendered queries stay byte-identical to upstream; values are checked again here because they
//! reach the query unescaped inside regex alternations.

use std::fmt;

use super::names::{is_valid_prom_label_name, validate_value};
use super::{Operator, Requirement, Selector, SelectorError};
use crate::rules::quote::go_quote;

/// A PromQL label-matching operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`.
    Eq,
    /// `!=`.
    Neq,
    /// `=~`.
    Re,
    /// `!~`.
    Nre,
}

impl MatchOp {
    /// The PromQL spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Neq => "!=",
            MatchOp::Re => "=~",
            MatchOp::Nre => "!~",
        }
    }
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One PromQL label matcher such as `pod=~"a|b"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromMatcher {
    /// The Prometheus label name.
    pub label: String,
    /// The comparison.
    pub op: MatchOp,
    /// The raw (unquoted) value; for regex matchers it is used as a regex
    /// without escaping, as upstream does.
    pub value: String,
}

impl fmt::Display for PromMatcher {
    /// Renders with Go `%q` quoting, as upstream's `LabelEq`/`LabelMatches` do.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.label, self.op, go_quote(&self.value))
    }
}
impl Selector {
    /// Translates the selector into PromQL matchers, one per requirement in
    /// requirement order, following prometheus-adapter's `selectMatcher` and
    /// `selectTargetValue`.
    ///
    /// Every value is re-validated as a Kubernetes label value, so no quote,
    /// backslash or `|` can reach a query even from a hand-built selector.
    pub fn to_prom_matchers(&self) -> Result<Vec<PromMatcher>, SelectorError> {
        self.requirements
            .iter()
            .map(Requirement::to_prom_matcher)
            .collect()
    }
}

impl Requirement {
    /// One row of the translation table (see [`Selector::to_prom_matchers`]).
    fn to_prom_matcher(&self) -> Result<PromMatcher, SelectorError> {
        if matches!(self.op, Operator::GreaterThan | Operator::LessThan) {
            return Err(SelectorError::UnsupportedOperator {
                key: self.key.clone(),
                op: self.op,
            });
        }
        if !is_valid_prom_label_name(&self.key) {
            return Err(SelectorError::NotPromLabelName {
                key: self.key.clone(),
            });
        }
        for v in &self.values {
            validate_value(&self.key, v)?;
        }
        let wrong = |reason| SelectorError::WrongValueCount {
            key: self.key.clone(),
            op: self.op,
            reason,
        };
        let op = match (self.op, self.values.len()) {
            (Operator::Exists, 0) => MatchOp::Neq,
            (Operator::DoesNotExist, 0) => MatchOp::Eq,
            (Operator::Exists | Operator::DoesNotExist, _) => return Err(wrong("takes no values")),
            (_, 0) => return Err(wrong("requires values")),
            (Operator::Equals | Operator::DoubleEquals, 1) => MatchOp::Eq,
            (Operator::NotEquals, 1) => MatchOp::Neq,
            // Upstream turns several values into a regex alternation even for
            // the equality operators; `parse` never produces that shape.
            (Operator::Equals | Operator::DoubleEquals | Operator::In, _) => MatchOp::Re,
            (Operator::NotEquals | Operator::NotIn, _) => MatchOp::Nre,
            (Operator::GreaterThan | Operator::LessThan, _) => {
                return Err(SelectorError::UnsupportedOperator {
                    key: self.key.clone(),
                    op: self.op,
                });
            }
        };
        Ok(PromMatcher {
            label: self.key.clone(),
            op,
            value: self.values.join("|"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::selector::tests::{req, requirement_text};
    use proptest::prelude::*;

    fn prom(sel: &str) -> Result<String, SelectorError> {
        let m = Selector::parse(sel)?.to_prom_matchers()?;
        Ok(m.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","))
    }

    #[test]
    fn translation_table() {
        assert_eq!(prom("method=GET").unwrap(), r#"method="GET""#);
        assert_eq!(prom("method==GET").unwrap(), r#"method="GET""#);
        assert_eq!(prom("method!=GET").unwrap(), r#"method!="GET""#);
        assert_eq!(prom("pod in (a)").unwrap(), r#"pod=~"a""#);
        assert_eq!(prom("pod notin (a)").unwrap(), r#"pod!~"a""#);
        assert_eq!(prom("pod in (b,a)").unwrap(), r#"pod=~"a|b""#);
        assert_eq!(prom("pod notin (b, a, b)").unwrap(), r#"pod!~"a|b""#);
        assert_eq!(prom("pod").unwrap(), r#"pod!="""#);
        assert_eq!(prom("!pod").unwrap(), r#"pod="""#);
        assert_eq!(prom("").unwrap(), "");
        // Sorted by key, values unescaped in the alternation.
        assert_eq!(
            prom("z=1,a in (x.y,w-v),m").unwrap(),
            r#"a=~"w-v|x.y",m!="",z="1""#
        );
    }

    #[test]
    fn translation_errors() {
        for sel in ["x>1", "x<1"] {
            let err = prom(sel).unwrap_err();
            assert!(
                matches!(err, SelectorError::UnsupportedOperator { .. }),
                "{sel}"
            );
            assert!(
                err.to_string()
                    .contains("operator not supported by prometheus")
            );
        }
        for sel in ["app.kubernetes.io/name=x", "a.b", "a-b=c", "1abc=x", "!x.y"] {
            let err = prom(sel).unwrap_err();
            assert!(
                matches!(err, SelectorError::NotPromLabelName { .. }),
                "{sel}: {err}"
            );
            assert!(
                err.to_string()
                    .contains("cannot be used as a Prometheus label")
            );
        }
        // Hand-built shapes that parse never produces follow upstream.
        let sel = |r| Selector {
            requirements: vec![r],
        };
        let m = sel(req("a", Operator::Equals, &["x", "y"]))
            .to_prom_matchers()
            .unwrap();
        assert_eq!(m[0].to_string(), r#"a=~"x|y""#);
        let m = sel(req("a", Operator::NotEquals, &["x", "y"]))
            .to_prom_matchers()
            .unwrap();
        assert_eq!(m[0].to_string(), r#"a!~"x|y""#);
        assert!(sel(req("a", Operator::In, &[])).to_prom_matchers().is_err());
        assert!(
            sel(req("a", Operator::Equals, &[]))
                .to_prom_matchers()
                .is_err()
        );
        assert!(
            sel(req("a", Operator::Exists, &["x"]))
                .to_prom_matchers()
                .is_err()
        );
        let bad = sel(req("a", Operator::Equals, &["x\"y"])).to_prom_matchers();
        assert!(matches!(bad, Err(SelectorError::InvalidValue { .. })));
        let bad = sel(req("a", Operator::In, &["x|y"])).to_prom_matchers();
        assert!(matches!(bad, Err(SelectorError::InvalidValue { .. })));
        let bad = sel(req("", Operator::Exists, &[])).to_prom_matchers();
        assert!(matches!(bad, Err(SelectorError::NotPromLabelName { .. })));
    }

    #[test]
    fn empty_parentheses_mean_one_empty_value() {
        // apimachinery: "x in ()" is In {""}; prometheus-adapter then
        // emits x=~"".
        let s = Selector::parse("x in ()").unwrap();
        assert_eq!(s.requirements, vec![req("x", Operator::In, &[""])]);
        assert_eq!(prom("x in ()").unwrap(), r#"x=~"""#);
        assert_eq!(prom("x notin ( )").unwrap(), r#"x!~"""#);
    }

    /// Test-only scanner: reads one Go-quoted literal at the start of `s`,
    /// returning its value and the rest, so the test can prove that each
    /// rendered value ends exactly where the quoting says it does.
    fn read_quoted(s: &str) -> Option<(String, &str)> {
        let mut chars = s.strip_prefix('"')?.char_indices();
        let mut out = String::new();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Some((out, s.get(i + 2..)?)),
                '\\' => {
                    let (_, e) = chars.next()?;
                    match e {
                        '"' | '\\' => out.push(e),
                        _ => return None,
                    }
                }
                c if c.is_control() => return None,
                c => out.push(c),
            }
        }
        None
    }

    proptest! {
        #[test]
        fn rendered_values_are_always_properly_quoted(
            reqs in proptest::collection::vec(requirement_text(), 0..6)
        ) {
            let text = reqs.join(",");
            let sel = Selector::parse(&text).unwrap();
            match sel.to_prom_matchers() {
                Err(SelectorError::UnsupportedOperator { .. }) => {
                    prop_assert!(text.contains('>'));
                }
                Err(e) => prop_assert!(false, "{text}: {e}"),
                Ok(matchers) => {
                    let body = matchers.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
                    let query = format!("up{{{body}}}");
                    let mut rest = query.strip_prefix("up{").unwrap();
                    for m in &matchers {
                        rest = rest.strip_prefix(m.label.as_str()).unwrap();
                        rest = rest.strip_prefix(m.op.as_str()).unwrap();
                        let (value, after) = read_quoted(rest).unwrap();
                        prop_assert_eq!(&value, &m.value);
                        prop_assert!(!value.contains('"') && !value.contains('\\'));
                        rest = after.strip_prefix(',').unwrap_or(after);
                    }
                    prop_assert_eq!(rest, "}");
                }
            }
        }
    }
}
