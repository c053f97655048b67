//! Rendering a rule's `metricsQuery` for one request.
//!
//! `<<.LabelMatchers>>` is built in upstream's order: the metric selector's matchers first, then
//! the namespace matcher, then the object-name matcher. The namespace matcher is appended by this
//! module from the request path, after the selector's, and its value is written last into
//! `LabelValuesByName`; no request input can remove or replace it.

use std::collections::BTreeMap;

use super::CompiledRule;
use super::quote::go_quote;
use super::selector::{Selector, SelectorError};
use super::template::{TemplateError, Value};

/// Why a query could not be rendered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryBuildError {
    /// The metric selector cannot be expressed in PromQL.
    #[error("{0}")]
    Selector(#[from] SelectorError),
    /// The template failed while rendering.
    #[error("unable to render metricsQuery of {rule}: {source}")]
    Template {
        /// `rules[3]`.
        rule: String,
        /// The template error.
        #[source]
        source: TemplateError,
    },
    /// The template rendered nothing.
    #[error("empty query produced by the metricsQuery template of {rule}")]
    Empty {
        /// `rules[3]`.
        rule: String,
    },
}

/// Which objects a custom-metrics query is about.
#[derive(Debug, Clone, Copy)]
pub struct ObjectScope<'a> {
    /// `(namespace label, namespace)` for namespaced requests.
    pub namespace: Option<(&'a str, &'a str)>,
    /// Label that holds the object names.
    pub resource_label: &'a str,
    /// The objects, by name or by the labels of their series.
    pub names: ObjectNames<'a>,
}

/// How a query picks its objects.
#[derive(Debug, Clone, Copy)]
pub enum ObjectNames<'a> {
    /// These objects: one gives `label="name"`, several `label=~"a|b"` (upstream's shape, and
    /// cluster mode's, where the cluster said which objects exist).
    Listed(&'a [String]),
    /// Every object that has series matching the object selector: the selector's matchers and
    /// `label!=""`. Standalone mode answers `*` this way, so one backend call both finds the
    /// objects and computes their values.
    Matching(&'a Selector),
}

/// A matcher list under construction, with the values each label was given.
struct Matchers {
    exprs: Vec<String>,
    values: BTreeMap<String, String>,
}

impl Matchers {
    fn from_selector(selector: &Selector) -> Result<Self, SelectorError> {
        let matchers = selector.to_prom_matchers()?;
        let mut values = BTreeMap::new();
        let mut exprs = Vec::with_capacity(matchers.len() + 2);
        for m in matchers {
            exprs.push(m.to_string());
            values.insert(m.label, m.value);
        }
        Ok(Matchers { exprs, values })
    }

    fn push_eq(&mut self, label: &str, value: &str) {
        self.exprs.push(format!("{label}={}", go_quote(value)));
        self.values.insert(label.to_string(), value.to_string());
    }

    fn push_selector(&mut self, selector: &Selector) -> Result<(), SelectorError> {
        for m in selector.to_prom_matchers()? {
            self.exprs.push(m.to_string());
            self.values.insert(m.label, m.value);
        }
        Ok(())
    }

    fn push_names(&mut self, label: &str, names: &[String]) {
        // Names are validated Kubernetes names, so joining without regex escaping is safe and
        // byte-identical to upstream.
        let joined = names.join("|");
        let op = if names.len() > 1 { "=~" } else { "=" };
        self.exprs.push(format!("{label}{op}{}", go_quote(&joined)));
        self.values.insert(label.to_string(), joined);
    }
}

fn render(
    rule: &CompiledRule,
    series: &str,
    m: Matchers,
    group_by: Vec<String>,
) -> Result<String, QueryBuildError> {
    let query = rule
        .metrics_query
        .render(&[
            ("Series", Value::Str(series.to_string())),
            ("LabelMatchers", Value::Str(m.exprs.join(","))),
            ("LabelValuesByName", Value::Map(m.values)),
            ("GroupBy", Value::Str(group_by.join(","))),
            ("GroupBySlice", Value::List(group_by)),
        ])
        .map_err(|source| QueryBuildError::Template {
            rule: rule.label(),
            source,
        })?;
    if query.trim().is_empty() {
        return Err(QueryBuildError::Empty { rule: rule.label() });
    }
    Ok(query)
}

/// Renders the query for a custom metric about the objects in `scope`.
pub fn render_custom(
    rule: &CompiledRule,
    series: &str,
    scope: ObjectScope<'_>,
    metric_selector: &Selector,
) -> Result<String, QueryBuildError> {
    let mut m = Matchers::from_selector(metric_selector)?;
    if let ObjectNames::Matching(objects) = scope.names {
        // Before the namespace matcher, so that the namespace's value is the one written last.
        m.push_selector(objects)?;
    }
    if let Some((label, namespace)) = scope.namespace {
        m.push_eq(label, namespace);
    }
    match scope.names {
        ObjectNames::Listed(names) => m.push_names(scope.resource_label, names),
        ObjectNames::Matching(_) => m.exprs.push(format!("{}!=\"\"", scope.resource_label)),
    }
    render(rule, series, m, vec![scope.resource_label.to_string()])
}

/// Renders the query for an external metric. `namespace` is `(label, namespace)` when the rule
/// is namespaced; `GroupBy` is empty, as upstream.
pub fn render_external(
    rule: &CompiledRule,
    series: &str,
    namespace: Option<(&str, &str)>,
    selector: &Selector,
) -> Result<String, QueryBuildError> {
    let mut m = Matchers::from_selector(selector)?;
    if let Some((label, ns)) = namespace {
        m.push_eq(label, ns);
    }
    render(rule, series, m, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::rules::{RestMapper, compile};

    fn rule(metrics_query: &str) -> std::sync::Arc<CompiledRule> {
        let yaml = format!(
            "rules:\n- seriesQuery: 'x'\n  resources: {{overrides: {{namespace: {{resource: namespace}}, pod: {{resource: pod}}}}}}\n  metricsQuery: '{metrics_query}'\n"
        );
        let cfg = config::parse(&yaml, "t").unwrap();
        compile(&cfg, &RestMapper::standalone()).unwrap().rules[0].clone()
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn per_pod_rate_renders_namespace_then_pods() {
        let r = rule("sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)");
        let pods = names(&["p1", "p2"]);
        let q = render_custom(
            &r,
            "flask_http_request_total",
            ObjectScope {
                namespace: Some(("namespace", "default")),
                resource_label: "pod",
                names: ObjectNames::Listed(&pods),
            },
            &Selector::parse("method=GET").unwrap(),
        )
        .unwrap();
        assert_eq!(
            q,
            r#"sum(rate(flask_http_request_total{method="GET",namespace="default",pod=~"p1|p2"}[2m])) by (pod)"#
        );
    }

    #[test]
    fn one_name_uses_equality() {
        let r = rule("<<.LabelMatchers>> <<index .LabelValuesByName \"pod\">> <<.GroupBySlice>>");
        let pods = names(&["p1"]);
        let q = render_custom(
            &r,
            "s",
            ObjectScope {
                namespace: None,
                resource_label: "pod",
                names: ObjectNames::Listed(&pods),
            },
            &Selector::default(),
        )
        .unwrap();
        assert_eq!(q, r#"pod="p1" p1 [pod]"#);
    }

    #[test]
    fn matching_objects_renders_the_object_selector_then_namespace_then_any_name() {
        let r = rule("sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)");
        let objects = Selector::parse("app=web,tier in (a,b)").unwrap();
        let q = render_custom(
            &r,
            "flask_http_request_total",
            ObjectScope {
                namespace: Some(("namespace", "default")),
                resource_label: "pod",
                names: ObjectNames::Matching(&objects),
            },
            &Selector::parse("method=GET").unwrap(),
        )
        .unwrap();
        assert_eq!(
            q,
            r#"sum(rate(flask_http_request_total{method="GET",app="web",tier=~"a|b",namespace="default",pod!=""}[2m])) by (pod)"#
        );
    }

    #[test]
    fn an_object_selector_naming_the_namespace_cannot_widen_a_matching_query() {
        let r = rule("<<.LabelMatchers>>|<<index .LabelValuesByName \"namespace\">>");
        let objects = Selector::parse("namespace=other").unwrap();
        let q = render_custom(
            &r,
            "s",
            ObjectScope {
                namespace: Some(("namespace", "default")),
                resource_label: "pod",
                names: ObjectNames::Matching(&objects),
            },
            &Selector::default(),
        )
        .unwrap();
        assert_eq!(
            q,
            r#"namespace="other",namespace="default",pod!=""|default"#
        );
    }

    #[test]
    fn a_selector_naming_the_namespace_label_cannot_replace_the_namespace_matcher() {
        let r = rule("<<.LabelMatchers>>|<<index .LabelValuesByName \"namespace\">>");
        let pods = names(&["p"]);
        let q = render_custom(
            &r,
            "s",
            ObjectScope {
                namespace: Some(("namespace", "team-a")),
                resource_label: "pod",
                names: ObjectNames::Listed(&pods),
            },
            &Selector::parse("namespace in (team-b,team-c)").unwrap(),
        )
        .unwrap();
        assert_eq!(
            q,
            r#"namespace=~"team-b|team-c",namespace="team-a",pod="p"|team-a"#
        );
    }

    #[test]
    fn external_queries_have_an_empty_group_by() {
        let r = rule("sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)");
        let q = render_external(
            &r,
            "kafka_consumergroup_lag",
            Some(("namespace", "default")),
            &Selector::parse("consumergroup=orders").unwrap(),
        )
        .unwrap();
        assert_eq!(
            q,
            r#"sum(kafka_consumergroup_lag{consumergroup="orders",namespace="default"}) by ()"#
        );
    }

    #[test]
    fn unsupported_selector_operators_are_errors() {
        let r = rule("<<.LabelMatchers>>");
        let err = render_external(&r, "s", None, &Selector::parse("x>1").unwrap()).unwrap_err();
        assert!(matches!(err, QueryBuildError::Selector(_)), "{err:?}");
    }

    #[test]
    fn an_empty_rendering_is_an_error() {
        let r = rule("<<if false>>x<<end>>");
        let err = render_external(&r, "s", None, &Selector::default()).unwrap_err();
        assert!(matches!(err, QueryBuildError::Empty { .. }), "{err:?}");
    }
}
