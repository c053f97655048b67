//! A Go `text/template`-compatible engine for the subset of the template
//! language that prometheus-adapter configurations use (`metricsQuery`,
//! `resources.template`), with `<<` and `>>` as the action delimiters.
//!
//! With these delimiters `{{` and `}}` are ordinary text.
//!
//! Supported (matching Go's behaviour):
//! - text copied verbatim; actions `<< … >>`; comments `<</* … */>>`;
//!   trim markers `<<- ` and ` ->>` (a dash followed or preceded by
//!   whitespace), so `<<-3>>` is the number -3;
//! - pipelines with `|` (the piped value becomes the last argument), fields
//!   `.Field`, map keys `.Map.key`, `.`, `$`, `$.Field`, `$var`, `$var.key`,
//!   chained fields on parenthesised pipelines, string (`"…"`, raw `` `…` ``),
//!   integer and character literals, `true`, `false`, `nil`;
//! - variable declaration `$x := …` and assignment `$x = …`, scoped to the
//!   enclosing control structure;
//! - `if` / `else if` / `else`, `with` / `else with` / `else`, `range`
//!   (lists, maps in sorted key order, `else`, `break`, `continue`);
//! - the built-in functions `and`, `or` (short-circuit, returning the deciding
//!   operand), `not`, `len`, `index`, `slice`, `print`, `println`, `printf`,
//!   `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `html`, `js`, `urlquery`, `call`;
//! - printing like Go's `fmt`: lists as `[a b]`, maps as `map[k:v]` with
//!   sorted keys, a missing value as `<no value>`.
//!
//! Not supported: `define`, `template` and `block` (a parse error), floating
//! point and complex constants (a parse error), method calls, and user
//! functions. A reference to a top-level field that the data does not have,
//! or to an unknown function, is a parse error.
//!
//! Nesting of control structures and parenthesised pipelines is limited to
//! [`MAX_DEPTH`] levels, so that no input can exhaust the stack.
//!
//! # Layout
//!
//! The stages are Go's, one file each, so that each can be checked against its Go counterpart:
//! - `lex.rs`: text, delimiters, trim markers, comments and the tokens of actions;
//! - `parse.rs`: the parser, which resolves variables and checks field and function names;
//!   `node.rs` holds the syntax tree it builds;
//! - `literal.rs`: number, character and string literals, decoded as Go's `strconv` does;
//! - `exec.rs`: walking the tree over the data;
//! - `funcs.rs`: the built-in functions;
//! - `print.rs`: Go's `fmt` printing and `strconv` quoting.
//!
//! This file holds the public API: [`Template`], [`Value`], [`TemplateError`] and [`MAX_DEPTH`].

mod exec;
mod funcs;
mod lex;
mod literal;
mod node;
mod parse;
mod print;

use std::collections::BTreeMap;

use node::Node;
use parse::Parser;

/// Maximum nesting of control structures (`if`, `with`, `range`, including
/// `else if` chains) and parenthesised pipelines.
pub const MAX_DEPTH: usize = 100;

/// Type name used for the top-level data in messages (Go would print the
/// name of the Go struct).
const ROOT_TYPE: &str = "struct";

/// A value a template can see or compute.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A Go `string`.
    Str(String),
    /// A Go `[]string`.
    List(Vec<String>),
    /// A Go `map[string]string`.
    Map(BTreeMap<String, String>),
    /// A Go `bool`.
    Bool(bool),
    /// A Go `int`.
    Int(i64),
    /// No value (Go's invalid `reflect.Value`); prints as `<no value>`.
    Nil,
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<Vec<String>> for Value {
    fn from(v: Vec<String>) -> Self {
        Value::List(v)
    }
}

impl From<BTreeMap<String, String>> for Value {
    fn from(m: BTreeMap<String, String>) -> Self {
        Value::Map(m)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

/// An error from parsing or executing a template.
///
/// `line` is 1-based and `col` is the 1-based byte column within the
/// template text. Messages read like Go's: parse errors as
/// `template: NAME:LINE: MESSAGE`, execution errors as
/// `template: NAME:LINE:COL: executing "NAME" at <NODE>: MESSAGE`, where COL
/// is Go's 0-based byte offset within the line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    /// The template text is invalid.
    #[error("template: {name}:{line}: {message}")]
    Parse {
        name: String,
        line: usize,
        col: usize,
        message: String,
    },
    /// The template failed while rendering.
    #[error(
        "template: {name}:{line}:{go_col}: executing \"{name}\" at <{context}>: {message}",
        go_col = .col.saturating_sub(1)
    )]
    Exec {
        name: String,
        line: usize,
        col: usize,
        /// The source form of the node being evaluated.
        context: String,
        message: String,
    },
}

impl TemplateError {
    /// 1-based line within the template text.
    pub fn line(&self) -> usize {
        match self {
            TemplateError::Parse { line, .. } | TemplateError::Exec { line, .. } => *line,
        }
    }

    /// 1-based byte column within the line.
    pub fn col(&self) -> usize {
        match self {
            TemplateError::Parse { col, .. } | TemplateError::Exec { col, .. } => *col,
        }
    }

    /// The message without the location prefix.
    pub fn message(&self) -> &str {
        match self {
            TemplateError::Parse { message, .. } | TemplateError::Exec { message, .. } => message,
        }
    }
}

/// A compiled template.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    src: String,
    root: Vec<Node>,
    /// Number of variable slots; slot 0 is `$`.
    nslots: usize,
    /// Top-level fields referenced by name.
    used_fields: Vec<String>,
    /// The data as a whole is used (`.` at top level, bare `$`).
    uses_root: bool,
    fields: Vec<String>,
}

impl Template {
    /// Parses `src`. `fields` lists the field names the data will have (e.g.
    /// `["Series","LabelMatchers","LabelValuesByName","GroupBy","GroupBySlice"]`);
    /// a reference to any other top-level field (`.Foo`, `$.Foo`) or an
    /// unknown function is a parse error.
    pub fn parse(name: &str, src: &str, fields: &[&str]) -> Result<Template, TemplateError> {
        let mut p = Parser::new(name, src, fields);
        let root = p.parse_top()?;
        Ok(Template {
            name: name.to_string(),
            src: src.to_string(),
            root,
            nslots: p.nslots,
            used_fields: p.used_fields,
            uses_root: p.uses_root,
            fields: fields.iter().map(|f| f.to_string()).collect(),
        })
    }

    /// Renders with `data`: pairs of (field name, value).
    pub fn render(&self, data: &[(&str, Value)]) -> Result<String, TemplateError> {
        exec::execute(self, data).map_err(|e| {
            let (line, col) = line_col(&self.src, e.pos);
            TemplateError::Exec {
                name: self.name.clone(),
                line,
                col,
                context: e.ctx,
                message: e.msg,
            }
        })
    }

    /// True when the template references field `name` of the data. A
    /// template that uses the data as a whole (`<<.>>` at top level, a bare
    /// `$`) counts as using every field it was parsed with.
    pub fn uses_field(&self, name: &str) -> bool {
        self.used_fields.iter().any(|f| f == name)
            || (self.uses_root && self.fields.iter().any(|f| f == name))
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.src
    }

    /// The template name used in error messages.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// 1-based line and 1-based byte column of byte offset `pos`.
fn line_col(src: &str, pos: usize) -> (usize, usize) {
    let before = &src.as_bytes()[..pos.min(src.len())];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    (line, before.len() - start + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(super) const FIELDS: &[&str] = &[
        "Series",
        "LabelMatchers",
        "LabelValuesByName",
        "GroupBy",
        "GroupBySlice",
    ];

    pub(super) fn map(pairs: &[(&str, &str)]) -> Value {
        Value::Map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    pub(super) fn list(items: &[&str]) -> Value {
        Value::List(items.iter().map(|s| s.to_string()).collect())
    }

    pub(super) fn data(
        series: &str,
        matchers: &str,
        by_name: &[(&str, &str)],
        group_by: &str,
        slice: &[&str],
    ) -> Vec<(&'static str, Value)> {
        vec![
            ("Series", series.into()),
            ("LabelMatchers", matchers.into()),
            ("LabelValuesByName", map(by_name)),
            ("GroupBy", group_by.into()),
            ("GroupBySlice", list(slice)),
        ]
    }

    pub(super) fn std_data() -> Vec<(&'static str, Value)> {
        data(
            "flask_http_request_total",
            r#"namespace="default",pod=~"a|b""#,
            &[("namespace", "default"), ("pod", "a|b")],
            "pod",
            &["pod"],
        )
    }

    pub(super) fn render_with(src: &str, d: &[(&str, Value)]) -> String {
        let t = Template::parse("metrics-query", src, FIELDS)
            .unwrap_or_else(|e| panic!("parse {src:?}: {e}"));
        t.render(d)
            .unwrap_or_else(|e| panic!("render {src:?}: {e}"))
    }

    pub(super) fn r(src: &str) -> String {
        render_with(src, &std_data())
    }

    pub(super) fn parse_err(src: &str) -> TemplateError {
        match Template::parse("t", src, FIELDS) {
            Ok(_) => panic!("expected a parse error for {src:?}"),
            Err(e) => {
                assert!(matches!(e, TemplateError::Parse { .. }), "{e:?}");
                e
            }
        }
    }

    pub(super) fn exec_err_with(src: &str, d: &[(&str, Value)]) -> TemplateError {
        let t = Template::parse("t", src, FIELDS).unwrap_or_else(|e| panic!("parse {src:?}: {e}"));
        match t.render(d) {
            Ok(out) => panic!("expected an exec error for {src:?}, got {out:?}"),
            Err(e) => {
                assert!(matches!(e, TemplateError::Exec { .. }), "{e:?}");
                e
            }
        }
    }

    pub(super) fn exec_err(src: &str) -> TemplateError {
        exec_err_with(src, &std_data())
    }

    // ----- golden cases from prometheus-adapter -----

    #[test]
    fn golden_rate_query() {
        let d = data(
            "flask_http_request_total",
            r#"namespace="default",pod=~"a|b""#,
            &[],
            "pod",
            &["pod"],
        );
        assert_eq!(
            render_with(
                "sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)",
                &d
            ),
            r#"sum(rate(flask_http_request_total{namespace="default",pod=~"a|b"}[2m])) by (pod)"#
        );
    }

    #[test]
    fn golden_metrics_query_test_cases() {
        let d = data(
            "foo",
            r#"resource="bar""#,
            &[("resource", "bar")],
            "resource",
            &["resource"],
        );
        assert_eq!(render_with("series <<.Series>>", &d), "series foo");
        assert_eq!(render_with("<<.LabelMatchers>>", &d), r#"resource="bar""#);
        assert_eq!(render_with("<<.GroupBySlice>>", &d), "[resource]");
        assert_eq!(render_with("<<.GroupBy>>", &d), "resource");
        assert_eq!(
            render_with(r#"<<index .LabelValuesByName "resource">>"#, &d),
            "bar"
        );

        let d = data(
            "foo",
            r#"resource=~"bar|baz""#,
            &[("resource", "bar|baz")],
            "resource,extra,groups",
            &["resource", "extra", "groups"],
        );
        assert_eq!(
            render_with("<<.GroupBySlice>>", &d),
            "[resource extra groups]"
        );
        assert_eq!(render_with("<<.GroupBy>>", &d), "resource,extra,groups");
        assert_eq!(
            render_with(r#"<<index .LabelValuesByName "resource">>"#, &d),
            "bar|baz"
        );
        assert_eq!(
            render_with(r#"<<index .LabelValuesByName "missing">>"#, &d),
            ""
        );
        assert_eq!(
            render_with(
                r#"<<index .LabelValuesByName "namespaces">> <<index .LabelValuesByName "resource">>"#,
                &data(
                    "foo",
                    "",
                    &[("namespaces", "default"), ("resource", "bar|baz")],
                    "",
                    &[]
                )
            ),
            "default bar|baz"
        );

        let ext = r#"<<index .LabelValuesByName "namespaces">> <<.GroupBySlice>>"#;
        let d = data("foo", "", &[("namespaces", "default")], "", &["foo", "bar"]);
        assert_eq!(render_with(ext, &d), "default [foo bar]");
        let d = data("foo", "", &[], "", &["foo", "bar"]);
        assert_eq!(render_with(ext, &d), " [foo bar]");

        let d = data("foo", "", &[("foo", "bar")], "", &[]);
        assert_eq!(render_with("<<.LabelValuesByName>>", &d), "map[foo:bar]");
        let d = data("foo", "", &[("foo", "bar|baz")], "", &[]);
        assert_eq!(
            render_with("<<.LabelValuesByName>>", &d),
            "map[foo:bar|baz]"
        );
        let d = data("foo", "", &[("qux", "bar|baz"), ("foo", "bar")], "", &[]);
        assert_eq!(
            render_with("<<.LabelValuesByName>>", &d),
            "map[foo:bar qux:bar|baz]"
        );
        let d = data("foo", "", &[], "", &[]);
        assert_eq!(
            render_with("<<.LabelValuesByName>>|<<.GroupBySlice>>", &d),
            "map[]|[]"
        );
    }

    #[test]
    fn golden_series_registry_style_queries() {
        let d = data(
            "container_some_usage",
            r#"namespace="somens",pod=~"somepod1|somepod2",container!="POD""#,
            &[],
            "pod",
            &["pod"],
        );
        assert_eq!(
            render_with("sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)", &d),
            r#"sum(container_some_usage{namespace="somens",pod=~"somepod1|somepod2",container!="POD"}) by (pod)"#
        );
    }

    #[test]
    fn uses_field_and_accessors() {
        let src = "sum(<<.Series>>{<<index .LabelValuesByName \"pod\">>}) by (<<$.GroupBy>>)";
        let t = Template::parse("q", src, FIELDS).unwrap();
        assert!(t.uses_field("Series"));
        assert!(t.uses_field("LabelValuesByName"));
        assert!(t.uses_field("GroupBy"));
        assert!(!t.uses_field("LabelMatchers"));
        assert!(!t.uses_field("GroupBySlice"));
        assert_eq!(t.source(), src);
        assert_eq!(t.name(), "q");
        let t = Template::parse(
            "q",
            "<<range .GroupBySlice>><<.LabelMatchers>><<end>>",
            FIELDS,
        )
        .unwrap();
        assert!(
            !t.uses_field("LabelMatchers"),
            "inside range, .LabelMatchers is a field of the element"
        );
        let t = Template::parse("q", "<<print .>>", FIELDS).unwrap();
        assert!(t.uses_field("LabelMatchers"));
        assert!(!t.uses_field("Other"));
        let t =
            Template::parse("r", "kube_<<.Group>>_<<.Resource>>", &["Group", "Resource"]).unwrap();
        assert_eq!(
            t.render(&[("Group", "apps".into()), ("Resource", "deployments".into())])
                .unwrap(),
            "kube_apps_deployments"
        );
        assert_eq!(
            t.render(&[
                ("Group", "(?P<group>.+?)".into()),
                ("Resource", "(?P<resource>.+?)".into())
            ])
            .unwrap(),
            "kube_(?P<group>.+?)_(?P<resource>.+?)"
        );
        assert!(t.uses_field("Group") && !t.uses_field("Series"));
    }

    #[test]
    fn empty_and_plain_templates() {
        assert_eq!(r(""), "");
        assert_eq!(r("plain text"), "plain text");
        assert_eq!(r("a > b >> c"), "a > b >> c");
    }

    #[test]
    #[ignore]
    fn render_speed() {
        let t = Template::parse(
            "q",
            "sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)",
            FIELDS,
        )
        .unwrap();
        let d = std_data();
        let n = 200_000;
        let start = std::time::Instant::now();
        let mut total = 0;
        for _ in 0..n {
            total += t.render(&d).unwrap().len();
        }
        let per = start.elapsed() / n;
        println!("render: {per:?} per call ({total})");
        assert!(per < std::time::Duration::from_micros(5));
    }

    fn fuzz_data() -> Vec<(&'static str, Value)> {
        data("s", "m", &[("a", "1"), ("b", "")], "g", &["x", "y"])
    }

    fn no_panic(src: &str) {
        if let Ok(t) = Template::parse("fuzz", src, FIELDS) {
            let _ = t.render(&fuzz_data());
            let _ = t.render(&[]);
            let _ = t.uses_field("Series");
        }
    }

    const TOKENS: &[&str] = &[
        "<<",
        ">>",
        "<<-",
        " ->>",
        "<<- ",
        "-",
        " ",
        "\n",
        "\t",
        ".",
        ".Series",
        ".GroupBySlice",
        ".LabelValuesByName",
        ".a",
        "$",
        "$x",
        "$y",
        ":=",
        "=",
        ",",
        "|",
        "(",
        ")",
        "\"",
        "\"s\"",
        "`",
        "'",
        "'a'",
        "\\",
        "0",
        "1",
        "-1",
        "0x",
        "9999999999999999999999",
        "1.5",
        "if",
        "else",
        "end",
        "range",
        "with",
        "break",
        "continue",
        "define",
        "nil",
        "true",
        "index",
        "slice",
        "len",
        "printf",
        "print",
        "eq",
        "lt",
        "and",
        "or",
        "not",
        "html",
        "js",
        "urlquery",
        "call",
        "\"%s\"",
        "\"%d%v%q%x%5.2s%*d%\"",
        "/*",
        "*/",
        "é",
        "\u{0}",
        "{{",
        "}}",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, .. ProptestConfig::default() })]

        #[test]
        fn never_panics_on_arbitrary_strings(s in any::<String>()) {
            no_panic(&s);
        }

        #[test]
        fn never_panics_on_token_soup(parts in prop::collection::vec(prop::sample::select(TOKENS), 0..48)) {
            no_panic(&parts.concat());
        }

        #[test]
        fn never_panics_inside_actions(parts in prop::collection::vec(prop::sample::select(TOKENS), 0..24)) {
            no_panic(&format!("<<{}>>", parts.join(" ")));
            no_panic(&format!("<<range $i, $v := .GroupBySlice>><<{}>><<end>>", parts.join(" ")));
        }
    }
}
