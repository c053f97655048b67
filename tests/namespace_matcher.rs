//! DECISIONS §3: for any request input that passes validation, every rendered query parses as
//! PromQL and every selector of the metric keeps the request's namespace matcher, unchanged.

use prom_metrics_adapter::api::request::{check_namespace, check_object_name};
use prom_metrics_adapter::config;
use prom_metrics_adapter::rules::query::{
    ObjectNames, ObjectScope, render_custom, render_external,
};
use prom_metrics_adapter::rules::selector::Selector;
use prom_metrics_adapter::rules::{CompiledConfig, RestMapper, compile};
use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;
use promql_parser::util::{ExprVisitor, walk_expr};
use proptest::prelude::*;

const RULES: &str = r#"
rules:
- seriesQuery: 'x'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
- seriesQuery: 'x'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  metricsQuery: '<<.Series>>{<<.LabelMatchers>>,container!="POD"} / on(<<.GroupBy>>) group_left <<.Series>>{<<.LabelMatchers>>}'
externalRules:
- seriesQuery: 'x'
  resources: {overrides: {namespace: {resource: namespace}}}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (queue)'
"#;

fn compiled() -> CompiledConfig {
    compile(
        &config::parse(RULES, "t").unwrap(),
        &RestMapper::standalone(),
    )
    .unwrap()
}

/// (label, operator, value)
type Matcher = (String, String, String);

/// Collects the matchers of every selector of `series` (or without a metric name), with its
/// count of `or` groups.
struct Selectors<'a> {
    series: &'a str,
    found: Vec<(Vec<Matcher>, usize)>,
}

impl ExprVisitor for Selectors<'_> {
    type Error = ();
    fn pre_visit(&mut self, e: &Expr) -> Result<bool, ()> {
        let vs = match e {
            Expr::VectorSelector(vs) => vs,
            Expr::MatrixSelector(ms) => &ms.vs,
            _ => return Ok(true),
        };
        // A selector by `__name__` matchers alone (`{__name__=~"a|b",…}`) may select the
        // series too, so it must keep the namespace as well.
        if vs.name.as_deref() == Some(self.series) || vs.name.is_none() {
            let ms = vs
                .matchers
                .matchers
                .iter()
                .map(|m| {
                    let op = match m.op {
                        MatchOp::Equal => "=",
                        MatchOp::NotEqual => "!=",
                        MatchOp::Re(_) => "=~",
                        MatchOp::NotRe(_) => "!~",
                    };
                    (m.name.clone(), op.to_string(), m.value.clone())
                })
                .collect();
            self.found.push((ms, vs.matchers.or_matchers.len()));
        }
        Ok(!matches!(e, Expr::MatrixSelector(_)))
    }
}

fn assert_namespace_kept(query: &str, series: &str, ns: &str) {
    assert_label_kept(query, series, "namespace", ns);
}

/// Every selector of `series` in `query` has the matcher `label="ns"`, and no `or` group.
fn assert_label_kept(query: &str, series: &str, label: &str, ns: &str) {
    let expr = promql_parser::parser::parse(query)
        .unwrap_or_else(|e| panic!("rendered query does not parse ({e}): {query}"));
    let mut v = Selectors {
        series,
        found: Vec::new(),
    };
    walk_expr(&mut v, &expr).unwrap();
    assert!(!v.found.is_empty(), "no selector of {series} in {query}");
    for (matchers, or_groups) in &v.found {
        assert_eq!(*or_groups, 0, "an `or` matcher group appeared: {query}");
        assert!(
            matchers.contains(&(label.into(), "=".into(), ns.into())),
            "namespace matcher lost in {query}"
        );
    }
}

fn selector_text() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("namespace".to_string()),
        Just("app".to_string()),
        Just("pod".to_string()),
        Just("a.b/c".to_string()),
        "[a-z_]{1,8}",
        ".{0,6}",
    ];
    let op = prop_oneof![
        Just("="),
        Just("=="),
        Just("!="),
        Just(" in "),
        Just(" notin "),
        Just(">"),
        Just("<"),
        Just(""),
        Just("!"),
    ];
    let value = prop_oneof![
        "[a-z0-9]{0,6}",
        Just("default".to_string()),
        Just("(a,b)".to_string()),
        Just("(x\",y)".to_string()),
        Just("a\"}) or vector(1) #".to_string()),
        Just("a\\\\b".to_string()),
        ".{0,10}",
    ];
    let req = (key, op, value).prop_map(|(k, o, v)| {
        if o == "!" {
            format!("!{k}")
        } else if o.is_empty() {
            k
        } else {
            format!("{k}{o}{v}")
        }
    });
    prop_oneof![
        prop::collection::vec(req, 0..4).prop_map(|r| r.join(",")),
        ".{0,30}",
    ]
}

fn names() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![
            8 => "[a-z0-9]([a-z0-9.-]{0,8}[a-z0-9])?",
            1 => ".{0,8}",
            1 => Just("a\"|b".to_string()),
        ],
        1..4,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn custom_queries_parse_and_keep_the_namespace(
        ns in prop_oneof![2 => Just("default".to_string()), 6 => "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", 1 => ".{0,12}"],
        names in names(),
        selector in selector_text(),
        rule in 0usize..2,
    ) {
        // Input the API edge refuses never reaches a template, and `*` never reaches a name
        // list (it asks for a listing instead).
        if check_namespace(&ns).is_err() || names.iter().any(|n| n == "*" || check_object_name(n).is_err()) {
            return Ok(());
        }
        let Ok(selector) = Selector::parse(&selector) else { return Ok(()) };
        let cfg = compiled();
        let rule = &cfg.rules[rule];
        if let Ok(query) = render_custom(rule, "x", ObjectScope {
            namespace: Some(("namespace", &ns)),
            resource_label: "pod",
            names: ObjectNames::Listed(&names),
        }, &selector) {
            assert_namespace_kept(&query, "x", &ns);
        }
        // Standalone `*`: the same selector as the object selector, in the same matcher list.
        if let Ok(query) = render_custom(rule, "x", ObjectScope {
            namespace: Some(("namespace", &ns)),
            resource_label: "pod",
            names: ObjectNames::Matching(&selector),
        }, &Selector::default()) {
            assert_namespace_kept(&query, "x", &ns);
        }
    }

    #[test]
    fn external_queries_parse_and_keep_the_namespace(
        ns in prop_oneof![Just("default".to_string()), "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"],
        selector in selector_text(),
    ) {
        let Ok(selector) = Selector::parse(&selector) else { return Ok(()) };
        let cfg = compiled();
        if let Ok(query) = render_external(&cfg.external_rules[0], "x", Some(("namespace", &ns)), &selector) {
            assert_namespace_kept(&query, "x", &ns);
        }
    }
}

#[test]
fn a_hostile_selector_value_is_refused_before_it_reaches_a_query() {
    for s in [r#"app="x"}"#, "app in (a\"b)", r#"namespace=a\"#, "app=a b"] {
        assert!(Selector::parse(s).is_err(), "{s:?} was accepted");
    }
}

/// Every namespaced custom and external rule shipped as an example or taken from upstream's
/// documentation and chart, compiled.
fn shipped_rules() -> &'static CompiledConfig {
    static RULES: std::sync::OnceLock<CompiledConfig> = std::sync::OnceLock::new();
    RULES.get_or_init(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut text = String::from("rules:\n");
        let mut external = String::from("externalRules:\n");
        for dir in ["config/examples", "tests/fixtures/compat"] {
            let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            for f in files {
                let raw: serde_json::Value =
                    serde_saphyr::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
                for (section, out) in [("rules", &mut text), ("externalRules", &mut external)] {
                    for rule in raw[section].as_array().into_iter().flatten() {
                        out.push_str(&format!("- {}\n", serde_json::to_string(rule).unwrap()));
                    }
                }
            }
        }
        text.push_str(&external);
        compile(
            &config::parse(&text, "shipped rules").unwrap(),
            &RestMapper::standalone(),
        )
        .unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn shipped_rules_render_queries_that_parse_and_keep_the_namespace(
        ns in prop_oneof![Just("default".to_string()), "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"],
        names in names(),
        selector in selector_text(),
        pick in any::<usize>(),
    ) {
        if check_namespace(&ns).is_err() || names.iter().any(|n| n == "*" || check_object_name(n).is_err()) {
            return Ok(());
        }
        let Ok(selector) = Selector::parse(&selector) else { return Ok(()) };
        let cfg = shipped_rules();
        // Rules whose query never uses <<.LabelMatchers>> are `check` errors, and their samples
        // are filtered by namespace after the fact; every other one must keep the matcher.
        let custom: Vec<_> = cfg.rules.iter().filter(|r| r.namespace_label.is_some()).collect();
        let rule = custom[pick % custom.len()];
        let label = rule.namespace_label.as_deref().unwrap();
        if let Ok(query) = render_custom(rule, "x", ObjectScope {
            namespace: Some((label, &ns)),
            resource_label: "pod",
            names: ObjectNames::Listed(&names),
        }, &selector) {
            assert_label_kept(&query, "x", label, &ns);
        }
        if let Ok(query) = render_custom(rule, "x", ObjectScope {
            namespace: Some((label, &ns)),
            resource_label: "pod",
            names: ObjectNames::Matching(&selector),
        }, &Selector::default()) {
            assert_label_kept(&query, "x", label, &ns);
        }
        let external: Vec<_> = cfg.external_rules.iter().filter(|r| r.resources.namespaced() && r.namespace_label.is_some()).collect();
        if !external.is_empty() {
            let rule = external[pick % external.len()];
            let label = rule.namespace_label.as_deref().unwrap();
            if let Ok(query) = render_external(rule, "x", Some((label, &ns)), &selector) {
                assert_label_kept(&query, "x", label, &ns);
            }
        }
    }
}
