//! Kubernetes label selectors and their translation into PromQL matchers.
//!
//! The HPA hands us `metric.selector` as a selector string
//! (`labelSelector` / `metricLabelSelector`). We parse it with the grammar of
//! apimachinery's `labels.Parse`, validate keys and values at the edge, and
//! turn each requirement into a PromQL matcher the way prometheus-adapter's
//! `selectMatcher` does, so that rendered queries stay byte-identical to
//! upstream for every valid input.
//!
//! This file holds the selector types, Kubernetes matching and the Kubernetes forms (the
//! selector string and `metav1.LabelSelector` JSON). The grammar is in `parse.rs`, the
//! translation into PromQL matchers in `promql.rs`, and the grammars of keys, values and object
//! names, which both sides check against, in `names.rs`.

mod names;
mod parse;
mod promql;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::quote::go_quote;
pub use names::{
    is_dns1123_label, is_dns1123_subdomain, is_valid_label_value, is_valid_prom_label_name,
};
use names::{validate_key, validate_value};
pub use promql::{MatchOp, PromMatcher};

/// A selector operator, as in apimachinery's `selection.Operator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `k=v`.
    Equals,
    /// `k==v`; same meaning as `=`, kept apart so Display round-trips.
    DoubleEquals,
    /// `k!=v`; also matches objects without the label.
    NotEquals,
    /// `k in (a,b)`.
    In,
    /// `k notin (a,b)`; also matches objects without the label.
    NotIn,
    /// `k`.
    Exists,
    /// `!k`.
    DoesNotExist,
    /// `k>N`; Kubernetes only, Prometheus cannot express it.
    GreaterThan,
    /// `k<N`; Kubernetes only, Prometheus cannot express it.
    LessThan,
}

impl Operator {
    /// The operator's name in apimachinery (`selection.Operator` values),
    /// used in error messages so they read like Kubernetes' own.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One comma-separated term of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The label key (a Kubernetes qualified name).
    pub key: String,
    /// How the label is compared.
    pub op: Operator,
    /// Sorted and deduplicated, as apimachinery's `Values().List()` returns
    /// them, which makes `a|b` joins deterministic.
    pub values: Vec<String>,
}

/// A parsed label selector: the AND of its requirements.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    /// Sorted by key with a stable sort. Go sorts with `sort.Sort`, which is
    /// stable for the short lists selectors are in practice (insertion sort
    /// below 13 elements), so matcher order matches upstream.
    pub requirements: Vec<Requirement>,
}

/// Why a selector could not be parsed, validated or translated.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
pub enum SelectorError {
    /// The text does not follow the selector grammar.
    #[error("unable to parse label selector: {message}")]
    Syntax {
        /// What was found and what was expected, in apimachinery's words.
        message: String,
    },
    /// A NUL byte. apimachinery's lexer treats it as the end of the input and
    /// silently ignores what follows; we refuse it rather than guess.
    #[error("unable to parse label selector: it contains a NUL byte")]
    NulByte,
    /// The key is not a Kubernetes qualified name.
    #[error("invalid label key {}: {reason}", go_quote(.key))]
    InvalidKey {
        /// The offending key.
        key: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A value is not a valid Kubernetes label value.
    #[error("invalid value {} for label {}: {reason}", go_quote(.value), go_quote(.key))]
    InvalidValue {
        /// The requirement's key.
        key: String,
        /// The offending value.
        value: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// A `>`/`<` value that is not a 64-bit integer.
    #[error("invalid value {} for label {}: operators > and < need an integer", go_quote(.value), go_quote(.key))]
    NotAnInteger {
        /// The requirement's key.
        key: String,
        /// The offending value.
        value: String,
    },
    /// The operator got the wrong number of values (only possible for
    /// requirements built by hand, never from `parse`).
    #[error("label {}: operator {op} {reason}", go_quote(.key))]
    WrongValueCount {
        /// The requirement's key.
        key: String,
        /// The requirement's operator.
        op: Operator,
        /// What the operator needs.
        reason: &'static str,
    },
    /// `>`/`<`: Prometheus has no numeric comparison on label values.
    #[error("label {}: operator not supported by prometheus ({op})", go_quote(.key))]
    UnsupportedOperator {
        /// The requirement's key.
        key: String,
        /// The rejected operator.
        op: Operator,
    },
    /// A valid Kubernetes key that Prometheus cannot take as a label name
    /// (it contains `/`, `.` or `-`, or starts with a digit). Upstream
    /// passes it through and Prometheus rejects the query; we say why.
    #[error(
        "label key {} cannot be used as a Prometheus label name: it must match [a-zA-Z_][a-zA-Z0-9_]*",
        go_quote(.key)
    )]
    NotPromLabelName {
        /// The offending key.
        key: String,
    },
    /// An operator that `metav1.LabelSelector` cannot hold (`>`/`<`).
    #[error("label {}: operator {op} isn't supported in label selectors", go_quote(.key))]
    NotInLabelSelector {
        /// The requirement's key.
        key: String,
        /// The rejected operator.
        op: Operator,
    },
}

impl Selector {
    /// Parses a selector with apimachinery's `labels.Parse` grammar and
    /// validation. `""` and whitespace-only input give the empty selector.
    ///
    /// As in apimachinery, `k in ()` and `k notin ()` are accepted and mean a
    /// single empty value (`k in ("")`).
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        if s.as_bytes().contains(&0) {
            return Err(SelectorError::NulByte);
        }
        let mut requirements = parse::requirements(s)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Selector { requirements })
    }

    /// True when the selector restricts nothing and so matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The `key=value` (and `key==value`) requirements as a label map; `in` with one value
    /// counts too, since it pins the label just the same.
    pub fn equality_labels(&self) -> BTreeMap<String, String> {
        self.requirements
            .iter()
            .filter(|r| {
                matches!(r.op, Operator::Equals | Operator::DoubleEquals)
                    || (r.op == Operator::In && r.values.len() == 1)
            })
            .filter_map(|r| Some((r.key.clone(), r.values.first()?.clone())))
            .collect()
    }

    /// Kubernetes matching semantics: every requirement must match.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Converts the selector into the JSON of a `metav1.LabelSelector`, as
    /// `metav1.ParseToLabelSelector` does: `=`/`==` become `matchLabels`,
    /// everything else `matchExpressions`; empty parts are left out, so the
    /// empty selector gives `{}`.
    ///
    /// Deliberate difference: apimachinery rejects `!=` here; we write it as
    /// `NotIn` with its single value, which selects the same objects.
    pub fn to_label_selector_json(&self) -> Result<serde_json::Value, SelectorError> {
        let mut match_labels = serde_json::Map::new();
        let mut expressions = Vec::new();
        for r in &self.requirements {
            let op = match r.op {
                Operator::Equals | Operator::DoubleEquals => {
                    let [value] = r.values.as_slice() else {
                        return Err(SelectorError::WrongValueCount {
                            key: r.key.clone(),
                            op: r.op,
                            reason: "needs exactly one value",
                        });
                    };
                    match_labels.insert(r.key.clone(), serde_json::Value::String(value.clone()));
                    continue;
                }
                Operator::In => "In",
                Operator::NotIn | Operator::NotEquals => "NotIn",
                Operator::Exists => "Exists",
                Operator::DoesNotExist => "DoesNotExist",
                Operator::GreaterThan | Operator::LessThan => {
                    return Err(SelectorError::NotInLabelSelector {
                        key: r.key.clone(),
                        op: r.op,
                    });
                }
            };
            let mut expr = serde_json::Map::new();
            expr.insert("key".to_owned(), serde_json::Value::String(r.key.clone()));
            expr.insert(
                "operator".to_owned(),
                serde_json::Value::String(op.to_owned()),
            );
            if !r.values.is_empty() {
                let values = r
                    .values
                    .iter()
                    .cloned()
                    .map(serde_json::Value::String)
                    .collect();
                expr.insert("values".to_owned(), serde_json::Value::Array(values));
            }
            expressions.push(serde_json::Value::Object(expr));
        }
        let mut out = serde_json::Map::new();
        if !match_labels.is_empty() {
            out.insert(
                "matchLabels".to_owned(),
                serde_json::Value::Object(match_labels),
            );
        }
        if !expressions.is_empty() {
            out.insert(
                "matchExpressions".to_owned(),
                serde_json::Value::Array(expressions),
            );
        }
        Ok(serde_json::Value::Object(out))
    }
}

impl std::str::FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

impl fmt::Display for Selector {
    /// Kubernetes syntax, as apimachinery's `String()`: requirements joined
    /// by `,`; parsing the output gives the same selector back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Requirement {
    /// Kubernetes syntax: `k`, `!k`, `k=v`, `k in (a,b)`, `k>1`, ….
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Operator::Exists => return f.write_str(&self.key),
            Operator::DoesNotExist => return write!(f, "!{}", self.key),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
        };
        let joined = self.values.join(",");
        if matches!(self.op, Operator::In | Operator::NotIn) {
            write!(f, "{}{op}({joined})", self.key)
        } else {
            write!(f, "{}{op}{joined}", self.key)
        }
    }
}

impl Requirement {
    /// Builds a validated requirement the way apimachinery's `NewRequirement`
    /// does; values are sorted and deduplicated.
    pub fn new(key: &str, op: Operator, values: Vec<String>) -> Result<Requirement, SelectorError> {
        validate_key(key)?;
        let values: Vec<String> = values
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let count_problem = match op {
            Operator::In | Operator::NotIn if values.is_empty() => Some("needs at least one value"),
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                Some("needs exactly one value")
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                Some("takes no values")
            }
            Operator::GreaterThan | Operator::LessThan if values.len() != 1 => {
                Some("needs exactly one value")
            }
            _ => None,
        };
        if let Some(reason) = count_problem {
            return Err(SelectorError::WrongValueCount {
                key: key.to_owned(),
                op,
                reason,
            });
        }
        if matches!(op, Operator::GreaterThan | Operator::LessThan) {
            for v in &values {
                if v.parse::<i64>().is_err() {
                    return Err(SelectorError::NotAnInteger {
                        key: key.to_owned(),
                        value: v.clone(),
                    });
                }
            }
        }
        for v in &values {
            validate_value(key, v)?;
        }
        Ok(Requirement {
            key: key.to_owned(),
            op,
            values,
        })
    }

    /// Kubernetes semantics for one requirement (apimachinery's
    /// `Requirement.Matches`).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let found = labels.get(&self.key);
        let has = |v: &String| self.values.iter().any(|x| x == v);
        match self.op {
            Operator::In | Operator::Equals | Operator::DoubleEquals => found.is_some_and(has),
            Operator::NotIn | Operator::NotEquals => !found.is_some_and(has),
            Operator::Exists => found.is_some(),
            Operator::DoesNotExist => found.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(Ok(actual)) = found.map(|v| v.parse::<i64>()) else {
                    return false;
                };
                let [wanted] = self.values.as_slice() else {
                    return false;
                };
                let Ok(wanted) = wanted.parse::<i64>() else {
                    return false;
                };
                if self.op == Operator::GreaterThan {
                    actual > wanted
                } else {
                    actual < wanted
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(super) fn req(key: &str, op: Operator, values: &[&str]) -> Requirement {
        Requirement {
            key: key.to_owned(),
            op,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    #[test]
    fn kubernetes_matching() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let m = |sel: &str, l: &[(&str, &str)]| Selector::parse(sel).unwrap().matches(&labels(l));
        assert!(m("", &[("x", "y")]));
        assert!(m("x=y", &[("x", "y")]));
        assert!(m("x=y,z=w", &[("x", "y"), ("z", "w")]));
        assert!(m("x!=y,z!=w", &[("x", "z"), ("z", "a")]));
        assert!(m("notin=in", &[("notin", "in")]));
        assert!(m("x", &[("x", "z")]));
        assert!(m("!x", &[("y", "z")]));
        assert!(m("x>1", &[("x", "2")]));
        assert!(m("x<1", &[("x", "0")]));
        assert!(m("x<1", &[("x", "-5")]));
        assert!(m("x!=y", &[]));
        assert!(m("x notin (a)", &[]));
        assert!(m("x notin ()", &[("y", "")]));
        assert!(!m("x=z", &[]));
        assert!(!m("x=y", &[("x", "z")]));
        assert!(!m("x=y,z=w", &[("x", "w"), ("z", "w")]));
        assert!(!m("x!=y,z!=w", &[("x", "z"), ("z", "w")]));
        assert!(!m("x", &[("y", "z")]));
        assert!(!m("!x", &[("x", "z")]));
        assert!(!m("x>1", &[("x", "0")]));
        assert!(!m("x<1", &[("x", "2")]));
        assert!(!m("x>1", &[("x", "v2")]));
        assert!(!m("x>1", &[]));
        assert!(!m("x in ()", &[("y", "baz")]));
        assert!(m("x in (a,b)", &[("x", "b")]));
        assert!(!m("x notin (a,b)", &[("x", "b")]));
    }

    #[test]
    fn label_selector_json() {
        let j = |s: &str| Selector::parse(s).unwrap().to_label_selector_json();
        assert_eq!(j("").unwrap(), serde_json::json!({}));
        assert_eq!(
            j("method=GET").unwrap(),
            serde_json::json!({"matchLabels": {"method": "GET"}})
        );
        assert_eq!(
            j("a==1,b!=2,c in (y,x),d notin (z),e,!f").unwrap(),
            serde_json::json!({
                "matchLabels": {"a": "1"},
                "matchExpressions": [
                    {"key": "b", "operator": "NotIn", "values": ["2"]},
                    {"key": "c", "operator": "In", "values": ["x", "y"]},
                    {"key": "d", "operator": "NotIn", "values": ["z"]},
                    {"key": "e", "operator": "Exists"},
                    {"key": "f", "operator": "DoesNotExist"},
                ]
            })
        );
        let e = j("a>1").unwrap_err();
        assert!(matches!(e, SelectorError::NotInLabelSelector { .. }));
        assert!(e.to_string().contains("isn't supported in label selectors"));
    }

    #[test]
    fn display_matches_kubernetes_string() {
        for (input, want) in [
            (
                "x in (abc,def),y notin (jkl),z",
                "x in (abc,def),y notin (jkl),z",
            ),
            ("x notin (def,abc),y!=jkl,!z", "x notin (abc,def),y!=jkl,!z"),
            (
                "z notin (),y in (mno,jkl),x notin (abc)",
                "x notin (abc),y in (jkl,mno),z notin ()",
            ),
            ("x=abc,y==jkl,z!=a,z", "x=abc,y==jkl,z!=a,z"),
            ("x>2,y<8,z", "x>2,y<8,z"),
            ("x= ,z= ", "x=,z="),
        ] {
            assert_eq!(Selector::parse(input).unwrap().to_string(), want);
        }
    }

    /// Keys valid both in Kubernetes and in Prometheus.
    fn prom_key() -> impl Strategy<Value = String> {
        "[a-zA-Z]([a-zA-Z0-9_]{0,20}[a-zA-Z0-9])?"
    }

    fn label_value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[A-Za-z0-9]",
            "[A-Za-z0-9][-A-Za-z0-9_.]{0,61}[A-Za-z0-9]",
        ]
    }

    pub(super) fn requirement_text() -> impl Strategy<Value = String> {
        (
            prom_key(),
            0..8u8,
            proptest::collection::vec(label_value(), 1..4),
        )
            .prop_map(|(k, op, vals)| match op {
                0 => format!("{k}={}", vals[0]),
                1 => format!("{k} == {}", vals[0]),
                2 => format!("{k}!={}", vals[0]),
                3 => format!("{k} in ({})", vals.join(", ")),
                4 => format!("{k} notin ({})", vals.join(",")),
                5 => k,
                6 => format!("!{k}"),
                _ => format!("{k}>{}", vals[0].len()),
            })
    }

    proptest! {
        #[test]
        fn display_round_trips(reqs in proptest::collection::vec(requirement_text(), 0..6)) {
            let sel = Selector::parse(&reqs.join(",")).unwrap();
            let again = Selector::parse(&sel.to_string()).unwrap();
            prop_assert_eq!(again, sel);
        }
    }
}
