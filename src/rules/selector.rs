//! Kubernetes label selectors and their translation into PromQL matchers.
//!
//! The HPA hands us `metric.selector` as a selector string
//! (`labelSelector` / `metricLabelSelector`). We parse it with the grammar of
//! apimachinery's `labels.Parse`, validate keys and values at the edge, and
//! turn each requirement into a PromQL matcher the way prometheus-adapter's
//! `selectMatcher` does, so that rendered queries stay byte-identical to
//! upstream for every valid input.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::quote::go_quote;

/// Longest allowed label value and qualified-name part (apimachinery's limit).
const MAX_NAME_LEN: usize = 63;
/// Longest allowed DNS-1123 subdomain, used for key prefixes and object names.
const MAX_SUBDOMAIN_LEN: usize = 253;

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
    /// Parses a selector with apimachinery's `labels.Parse` grammar and
    /// validation. `""` and whitespace-only input give the empty selector.
    ///
    /// As in apimachinery, `k in ()` and `k notin ()` are accepted and mean a
    /// single empty value (`k in ("")`).
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        if s.as_bytes().contains(&0) {
            return Err(SelectorError::NulByte);
        }
        let tokens = lex(s);
        let mut parser = Parser { tokens, pos: 0 };
        let mut requirements = parser.parse()?;
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

/// True for a Kubernetes label value: empty, or at most 63 characters of
/// `[A-Za-z0-9_.-]` that start and end with a letter or digit.
pub fn is_valid_label_value(s: &str) -> bool {
    s.is_empty() || is_qualified_name_part(s)
}

/// True for a Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*` (the classic
/// grammar every PromQL parser accepts unquoted).
pub fn is_valid_prom_label_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// True for an RFC 1123 label, the grammar of namespace names:
/// at most 63 characters of `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= MAX_NAME_LEN && is_dns_label_shape(s)
}

/// True for an RFC 1123 subdomain, the grammar of most object names: at most
/// 253 characters of dot-separated `[a-z0-9]([-a-z0-9]*[a-z0-9])?` labels.
/// Like apimachinery, it does not limit the length of each label.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= MAX_SUBDOMAIN_LEN && s.split('.').all(is_dns_label_shape)
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` without a length limit.
fn is_dns_label_shape(s: &str) -> bool {
    let b = s.as_bytes();
    let end_ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) if end_ok(first) && end_ok(last) => {
            b.iter().all(|c| end_ok(c) || *c == b'-')
        }
        _ => false,
    }
}

/// One to 63 characters of `[A-Za-z0-9_.-]`, starting and ending with a
/// letter or digit: a label value or the name part of a qualified name.
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last))
            if b.len() <= MAX_NAME_LEN
                && first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric() =>
        {
            b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Checks a label key as apimachinery's `IsQualifiedName` does.
fn validate_key(key: &str) -> Result<(), SelectorError> {
    let invalid = |reason: &str| {
        Err(SelectorError::InvalidKey {
            key: key.to_owned(),
            reason: reason.to_owned(),
        })
    };
    let mut parts = key.split('/');
    let (prefix, name) = match (parts.next(), parts.next(), parts.next()) {
        (Some(name), None, _) => (None, name),
        (Some(prefix), Some(name), None) => (Some(prefix), name),
        _ => {
            return invalid(
                "a key may contain at most one '/', between an optional DNS subdomain prefix and the name",
            );
        }
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return invalid("the prefix before '/' must not be empty");
        }
        if prefix.len() > MAX_SUBDOMAIN_LEN {
            return invalid("the prefix before '/' must be at most 253 characters");
        }
        if !is_dns1123_subdomain(prefix) {
            return invalid(
                "the prefix before '/' must be a DNS subdomain: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit",
            );
        }
    }
    if name.is_empty() {
        return invalid("the name must not be empty");
    }
    if name.len() > MAX_NAME_LEN {
        return invalid("the name must be at most 63 characters");
    }
    if !is_qualified_name_part(name) {
        return invalid(
            "the name may contain only letters, digits, '-', '_' and '.', and must start and end with a letter or digit",
        );
    }
    Ok(())
}

/// Checks a value as apimachinery's `IsValidLabelValue` does.
fn validate_value(key: &str, value: &str) -> Result<(), SelectorError> {
    if is_valid_label_value(value) {
        return Ok(());
    }
    let reason = if value.len() > MAX_NAME_LEN {
        "a label value must be at most 63 characters"
    } else {
        "a label value must be empty or contain only letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
    };
    Err(SelectorError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    })
}

/// Lexer tokens, named after apimachinery's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    End,
    OpenPar,
    ClosePar,
    Comma,
    Not,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    In,
    NotIn,
    Ident,
}

/// Whitespace as apimachinery's lexer defines it.
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Bytes that start an operator token and end an identifier.
fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits the input into tokens with their literal text. Identifiers are runs
/// of any bytes other than whitespace and operator symbols, exactly as in
/// apimachinery; validation happens later. Cutting only at ASCII bytes keeps
/// every slice on a UTF-8 boundary.
fn lex(s: &str) -> Vec<(Tok, &str)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while b.get(i).copied().is_some_and(is_ws) {
            i += 1;
        }
        let Some(&c) = b.get(i) else {
            out.push((Tok::End, ""));
            return out;
        };
        let start = i;
        let tok = if is_special(c) {
            // Longest match, as the Go lexer's greedy loop does; the only
            // two-byte tokens are "!=" and "==".
            let next = b.get(i + 1).copied();
            let (tok, len) = match (c, next) {
                (b'!', Some(b'=')) => (Tok::NotEq, 2),
                (b'=', Some(b'=')) => (Tok::DoubleEq, 2),
                (b'!', _) => (Tok::Not, 1),
                (b'=', _) => (Tok::Eq, 1),
                (b'(', _) => (Tok::OpenPar, 1),
                (b')', _) => (Tok::ClosePar, 1),
                (b',', _) => (Tok::Comma, 1),
                (b'>', _) => (Tok::Gt, 1),
                _ => (Tok::Lt, 1),
            };
            i += len;
            tok
        } else {
            while b.get(i).is_some_and(|&c| !is_special(c) && !is_ws(c)) {
                i += 1;
            }
            match s.get(start..i) {
                Some("in") => Tok::In,
                Some("notin") => Tok::NotIn,
                _ => Tok::Ident,
            }
        };
        out.push((tok, s.get(start..i).unwrap_or("")));
    }
}

/// Whether `in`/`notin` are keywords (after a key) or plain identifiers
/// (keys and values), mirroring apimachinery's parser contexts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    KeyAndOperator,
    Values,
}

/// Recursive-descent parser over the token list, step for step like
/// apimachinery's so that accepted inputs and their meaning agree.
struct Parser<'a> {
    tokens: Vec<(Tok, &'a str)>,
    pos: usize,
}

fn syntax(message: String) -> SelectorError {
    SelectorError::Syntax { message }
}

impl<'a> Parser<'a> {
    fn peek(&self, ctx: Ctx) -> (Tok, &'a str) {
        let (tok, lit) = self.tokens.get(self.pos).copied().unwrap_or((Tok::End, ""));
        match tok {
            Tok::In | Tok::NotIn if ctx == Ctx::Values => (Tok::Ident, lit),
            _ => (tok, lit),
        }
    }

    fn next(&mut self, ctx: Ctx) -> (Tok, &'a str) {
        let item = self.peek(ctx);
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut reqs = Vec::new();
        loop {
            let (tok, lit) = self.peek(Ctx::Values);
            match tok {
                Tok::Ident | Tok::Not => {
                    reqs.push(self.requirement()?);
                    let (t, l) = self.next(Ctx::Values);
                    match t {
                        Tok::End => return Ok(reqs),
                        Tok::Comma => {
                            let (t2, l2) = self.peek(Ctx::Values);
                            if t2 != Tok::Ident && t2 != Tok::Not {
                                return Err(syntax(format!(
                                    "found '{l2}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(syntax(format!(
                                "found '{l}', expected: ',' or 'end of string'"
                            )));
                        }
                    }
                }
                Tok::End => return Ok(reqs),
                _ => {
                    return Err(syntax(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    )));
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (key, unary) = self.key_and_unary_operator()?;
        if let Some(op) = unary {
            return Requirement::new(key, op, Vec::new());
        }
        let op = self.operator()?;
        let values = match op {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => self.exact_value()?,
        };
        Requirement::new(key, op, values)
    }

    /// Reads `[!]key` and decides whether the requirement is unary. As in
    /// apimachinery, `!key` stays unary even when more follows, so `!a=b`
    /// fails later at the `=`.
    fn key_and_unary_operator(&mut self) -> Result<(&'a str, Option<Operator>), SelectorError> {
        let (mut tok, mut lit) = self.next(Ctx::Values);
        let mut op = None;
        if tok == Tok::Not {
            op = Some(Operator::DoesNotExist);
            (tok, lit) = self.next(Ctx::Values);
        }
        if tok != Tok::Ident {
            return Err(syntax(format!("found '{lit}', expected: identifier")));
        }
        validate_key(lit)?;
        let (t, _) = self.peek(Ctx::Values);
        if (t == Tok::End || t == Tok::Comma) && op.is_none() {
            op = Some(Operator::Exists);
        }
        Ok((lit, op))
    }

    fn operator(&mut self) -> Result<Operator, SelectorError> {
        let (tok, lit) = self.next(Ctx::KeyAndOperator);
        Ok(match tok {
            Tok::In => Operator::In,
            Tok::Eq => Operator::Equals,
            Tok::DoubleEq => Operator::DoubleEquals,
            Tok::Gt => Operator::GreaterThan,
            Tok::Lt => Operator::LessThan,
            Tok::NotIn => Operator::NotIn,
            Tok::NotEq => Operator::NotEquals,
            _ => {
                return Err(syntax(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                )));
            }
        })
    }

    /// `( values )`; `()` means one empty value, as in apimachinery.
    fn value_set(&mut self) -> Result<Vec<String>, SelectorError> {
        let (tok, lit) = self.next(Ctx::Values);
        if tok != Tok::OpenPar {
            return Err(syntax(format!("found '{lit}' expected: '('")));
        }
        let (tok, lit) = self.peek(Ctx::Values);
        match tok {
            Tok::Ident | Tok::Comma => {
                let values = self.identifier_list()?;
                let (tok, _) = self.next(Ctx::Values);
                if tok != Tok::ClosePar {
                    return Err(syntax(format!("found '{lit}', expected: ')'")));
                }
                Ok(values)
            }
            Tok::ClosePar => {
                self.next(Ctx::Values);
                Ok(vec![String::new()])
            }
            _ => Err(syntax(format!(
                "found '{lit}', expected: ',', ')' or identifier"
            ))),
        }
    }

    /// A comma-separated list in which empty entries stand for `""`; stops
    /// in front of the closing parenthesis.
    fn identifier_list(&mut self) -> Result<Vec<String>, SelectorError> {
        let mut values: Vec<String> = Vec::new();
        loop {
            let (tok, lit) = self.next(Ctx::Values);
            match tok {
                Tok::Ident => {
                    values.push(lit.to_owned());
                    let (t2, l2) = self.peek(Ctx::Values);
                    match t2 {
                        Tok::Comma => {}
                        Tok::ClosePar => return Ok(values),
                        _ => {
                            return Err(syntax(format!("found '{l2}', expected: ',' or ')'")));
                        }
                    }
                }
                Tok::Comma => {
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    match self.peek(Ctx::Values).0 {
                        Tok::ClosePar => {
                            values.push(String::new());
                            return Ok(values);
                        }
                        Tok::Comma => values.push(String::new()),
                        _ => {}
                    }
                }
                _ => {
                    return Err(syntax(format!(
                        "found '{lit}', expected: ',', or identifier"
                    )));
                }
            }
        }
    }

    /// The single value after `=`, `==`, `!=`, `>` or `<`; nothing means `""`.
    fn exact_value(&mut self) -> Result<Vec<String>, SelectorError> {
        let (tok, _) = self.peek(Ctx::Values);
        if tok == Tok::End || tok == Tok::Comma {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.next(Ctx::Values);
        if tok == Tok::Ident {
            Ok(vec![lit.to_owned()])
        } else {
            Err(syntax(format!("found '{lit}', expected: identifier")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn prom(sel: &str) -> Result<String, SelectorError> {
        let m = Selector::parse(sel)?.to_prom_matchers()?;
        Ok(m.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","))
    }

    fn req(key: &str, op: Operator, values: &[&str]) -> Requirement {
        Requirement {
            key: key.to_owned(),
            op,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
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

    #[test]
    fn parses_apimachinery_good_strings() {
        let cases: &[(&str, Vec<Requirement>)] = &[
            ("", vec![]),
            ("   \t\r\n", vec![]),
            (
                "x=a,y=b,z=c",
                vec![
                    req("x", Operator::Equals, &["a"]),
                    req("y", Operator::Equals, &["b"]),
                    req("z", Operator::Equals, &["c"]),
                ],
            ),
            (
                "x!=a,y=b",
                vec![
                    req("x", Operator::NotEquals, &["a"]),
                    req("y", Operator::Equals, &["b"]),
                ],
            ),
            ("x=", vec![req("x", Operator::Equals, &[""])]),
            ("x= ", vec![req("x", Operator::Equals, &[""])]),
            (
                "x=,z= ",
                vec![
                    req("x", Operator::Equals, &[""]),
                    req("z", Operator::Equals, &[""]),
                ],
            ),
            ("!x", vec![req("x", Operator::DoesNotExist, &[])]),
            ("x>1", vec![req("x", Operator::GreaterThan, &["1"])]),
            (
                "x>1,z<5",
                vec![
                    req("x", Operator::GreaterThan, &["1"]),
                    req("z", Operator::LessThan, &["5"]),
                ],
            ),
            ("\rx", vec![req("x", Operator::Exists, &[])]),
            (
                "this-is-a-dns.domain.com/key-with-dash",
                vec![req(
                    "this-is-a-dns.domain.com/key-with-dash",
                    Operator::Exists,
                    &[],
                )],
            ),
            (
                "0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)",
                vec![req(
                    "0.1.2.domain/99",
                    Operator::NotIn,
                    &["10.10.100.1", "tick.tack.clock"],
                )],
            ),
            ("foo  in\t (abc)", vec![req("foo", Operator::In, &["abc"])]),
            ("x notin\n (abc)", vec![req("x", Operator::NotIn, &["abc"])]),
            ("x in (abc,)", vec![req("x", Operator::In, &["", "abc"])]),
            ("x notin (, a)", vec![req("x", Operator::NotIn, &["", "a"])]),
            ("x in (a,,b)", vec![req("x", Operator::In, &["", "a", "b"])]),
            (
                "x notin (abc,def),bar,z in (),w",
                vec![
                    req("bar", Operator::Exists, &[]),
                    req("w", Operator::Exists, &[]),
                    req("x", Operator::NotIn, &["abc", "def"]),
                    req("z", Operator::In, &[""]),
                ],
            ),
            ("a ", vec![req("a", Operator::Exists, &[])]),
            (
                "a in (x,y,notin, z,in)",
                vec![req("a", Operator::In, &["in", "notin", "x", "y", "z"])],
            ),
            ("notin=in", vec![req("notin", Operator::Equals, &["in"])]),
            ("in in (in)", vec![req("in", Operator::In, &["in"])]),
            ("x==a", vec![req("x", Operator::DoubleEquals, &["a"])]),
        ];
        for (input, want) in cases {
            let got = Selector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(&got.requirements, want, "{input:?}");
        }
    }

    #[test]
    fn rejects_apimachinery_bad_strings() {
        for input in [
            "x=a||y=b",
            "x==a==b",
            "!x=a",
            "x<a",
            "x,y in",
            ",x,y",
            "x nott in (y)",
            "a in (xyz),",
            "a in (xyz)b notin ()",
            "a in (xyz abc)",
            "a notin(",
            "a (",
            "(",
            ",",
            "x,,y",
            "x in",
            "x in (a",
            "x in a",
            "x=(",
            "x=a b",
            "=a",
            "!",
            "!!x",
            "x>",
            "x>-1",
            "x>+1",
            "x>1.5",
            "x>99999999999999999999",
            "x <= 1",
            "x=a=b",
        ] {
            assert!(Selector::parse(input).is_err(), "{input:?} should fail");
        }
    }

    #[test]
    fn validates_keys_and_values_with_reasons() {
        let long63 = "a".repeat(63);
        let long64 = "a".repeat(64);
        assert!(Selector::parse(&format!("{long63}={long63}")).is_ok());
        let e = Selector::parse(&format!("{long64}=x")).unwrap_err();
        assert!(matches!(&e, SelectorError::InvalidKey { key, .. } if *key == long64));
        assert!(e.to_string().contains("at most 63"));
        let e = Selector::parse(&format!("x={long64}")).unwrap_err();
        assert!(matches!(&e, SelectorError::InvalidValue { value, .. } if *value == long64));
        let e = Selector::parse("x=-a").unwrap_err();
        assert!(e.to_string().contains(r#""-a""#), "{e}");
        assert!(e.to_string().contains(r#"label "x""#), "{e}");
        let e = Selector::parse("x=a\"b").unwrap_err();
        assert!(matches!(e, SelectorError::InvalidValue { .. }));
        let e = Selector::parse("x=a\\b").unwrap_err();
        assert!(matches!(e, SelectorError::InvalidValue { .. }));
        let e = Selector::parse("x in (a|b)").unwrap_err();
        assert!(matches!(e, SelectorError::InvalidValue { .. }));
        let e = Selector::parse("x=é").unwrap_err();
        assert!(matches!(e, SelectorError::InvalidValue { .. }));
        let e = Selector::parse("x>a").unwrap_err();
        assert!(matches!(e, SelectorError::NotAnInteger { .. }));
        assert!(e.to_string().contains("integer"));
        for key in [
            "/a",
            "a/",
            "a/b/c",
            "A.com/x",
            "-a",
            "a-",
            "a b",
            "a\"",
            "é",
            &format!("{}/a", "a".repeat(254)),
        ] {
            let e = Selector::parse(key).unwrap_err();
            assert!(
                matches!(
                    e,
                    SelectorError::InvalidKey { .. } | SelectorError::Syntax { .. }
                ),
                "{key:?}: {e}"
            );
        }
        assert!(Selector::parse(&format!("{}/a", "a".repeat(253))).is_ok());
        assert!(Selector::parse("Example.com/x").is_err());
        assert!(Selector::parse("example.com/X_y.Z").is_ok());
        assert!(Selector::parse("1234").is_ok());
        assert_eq!(
            Selector::parse("a=b\0").unwrap_err(),
            SelectorError::NulByte
        );
        let e = Selector::parse("a b").unwrap_err();
        assert!(e.to_string().contains("found 'b'"), "{e}");
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

    #[test]
    fn dns_and_name_helpers() {
        assert!(is_dns1123_label("default"));
        assert!(is_dns1123_label("kube-system"));
        assert!(is_dns1123_label("a"));
        assert!(is_dns1123_label("0"));
        assert!(is_dns1123_label(&"a".repeat(63)));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", "a b", "é"] {
            assert!(!is_dns1123_label(bad), "{bad:?}");
        }
        assert!(is_dns1123_subdomain("sample-app-7cfb596f98-8h5fv"));
        assert!(is_dns1123_subdomain("a.b.c"));
        assert!(is_dns1123_subdomain(&format!("{}.b", "a".repeat(100))));
        assert!(is_dns1123_subdomain(&"a".repeat(253)));
        assert!(!is_dns1123_subdomain(&"a".repeat(254)));
        for bad in ["", ".", "a.", ".a", "a..b", "a.-b", "A.b", "a_b", "a/b"] {
            assert!(!is_dns1123_subdomain(bad), "{bad:?}");
        }
        assert!(is_valid_label_value(""));
        assert!(is_valid_label_value("MyValue"));
        assert!(is_valid_label_value("my_value"));
        assert!(is_valid_label_value("12345"));
        assert!(is_valid_label_value("a.b-c_d"));
        for bad in [
            "-a",
            "a-",
            "_a",
            "a_",
            ".a",
            "a b",
            "a/b",
            "a\"b",
            "a|b",
            &"a".repeat(64),
        ] {
            assert!(!is_valid_label_value(bad), "{bad:?}");
        }
        assert!(is_valid_prom_label_name("__name__"));
        assert!(is_valid_prom_label_name("_"));
        assert!(is_valid_prom_label_name("pod"));
        assert!(is_valid_prom_label_name("A9_z"));
        for bad in ["", "9a", "a-b", "a.b", "a/b", "é"] {
            assert!(!is_valid_prom_label_name(bad), "{bad:?}");
        }
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

    fn requirement_text() -> impl Strategy<Value = String> {
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

        #[test]
        fn display_round_trips(reqs in proptest::collection::vec(requirement_text(), 0..6)) {
            let sel = Selector::parse(&reqs.join(",")).unwrap();
            let again = Selector::parse(&sel.to_string()).unwrap();
            prop_assert_eq!(again, sel);
        }

        #[test]
        fn parse_never_panics_and_round_trips(s in "[a-z0-9 !=(),<>.\\-/_\"\\\\|\t]{0,40}") {
            if let Ok(sel) = Selector::parse(&s) {
                let again = Selector::parse(&sel.to_string()).unwrap();
                prop_assert_eq!(&again, &sel);
                let _ = sel.to_prom_matchers();
                let _ = sel.to_label_selector_json();
            }
        }

        #[test]
        fn arbitrary_unicode_never_panics(s in any::<String>()) {
            let _ = Selector::parse(&s);
        }
    }
}
