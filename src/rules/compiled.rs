//! The compiled form of a whole config, held behind one pointer and swapped atomically.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::RuleError;
use super::backends::BackendSpec;
use super::mapper::{GroupResource, RestMapper};
use super::naming::MetricNamer;
use super::resources::ResourceConverter;
use super::schedule::Schedule;
use super::template::{Template, Value};
use crate::config::{DiscoveryRule, MetricsDiscoveryConfig, ResourceRule, Text};
use crate::duration::parse_prometheus_duration;

/// The fields a `metricsQuery` (and resource query) template may use.
pub const QUERY_FIELDS: &[&str] = &[
    "Series",
    "LabelMatchers",
    "LabelValuesByName",
    "GroupBy",
    "GroupBySlice",
];

/// Which API a rule serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleKind {
    /// `rules`: custom.metrics.k8s.io.
    Custom,
    /// `externalRules`: external.metrics.k8s.io.
    External,
}

impl RuleKind {
    /// The config section the rule came from.
    pub fn section(self) -> &'static str {
        match self {
            RuleKind::Custom => "rules",
            RuleKind::External => "externalRules",
        }
    }
}

/// One compiled custom or external rule.
#[derive(Debug)]
pub struct CompiledRule {
    /// Which API the rule serves.
    pub kind: RuleKind,
    /// Index in its config section.
    pub index: usize,
    /// The `seriesQuery`, sent verbatim to `/api/v1/series`.
    pub series_query: String,
    /// Filters and naming.
    pub namer: MetricNamer,
    /// Label ↔ resource association.
    pub resources: ResourceConverter,
    /// The `metricsQuery` template.
    pub metrics_query: Template,
    /// The label holding namespace names, when the rule maps one.
    pub namespace_label: Option<String>,
    /// Problems that upstream accepts at load but that make the rule's metrics fail; each
    /// affected request answers 500 naming the rule and the problem.
    pub problems: Vec<RuleError>,
    /// Doubts that do not stop the rule from working (for example PromQL the parser rejects).
    pub warnings: Vec<RuleError>,
    /// External rules: answer one explicit `0` instead of an empty list (`emptyResult: zero`).
    pub empty_as_zero: bool,
    /// The named backend of the rule's discovery and queries; `None` is `--prometheus-url`.
    pub backend: Option<Arc<BackendSpec>>,
    /// The one series name `seriesQuery` can select, when it names it literally
    /// (`http_requests_total{…}` or `{__name__="http_requests_total",…}`).
    pub literal_series_name: Option<String>,
}

impl CompiledRule {
    /// `rules[3]`: how logs and errors name the rule.
    pub fn label(&self) -> String {
        format!("{}[{}]", self.kind.section(), self.index)
    }

    /// Whether the rule could serve the API metric `api_name`. Exact when `seriesQuery` names
    /// its series literally; otherwise [`MetricNamer::could_produce`]'s test of `as`, which
    /// never says no wrongly.
    pub fn could_produce(&self, api_name: &str) -> bool {
        match &self.literal_series_name {
            Some(series) => {
                self.namer.keeps(series)
                    && self.namer.metric_name(series).as_deref() == Some(api_name)
            }
            None => self.namer.could_produce(api_name),
        }
    }

    /// The name of the rule's backend, `default` for `--prometheus-url`.
    pub fn backend_name(&self) -> &str {
        self.backend
            .as_ref()
            .map_or(super::backends::DEFAULT_NAME, |b| b.name.as_str())
    }
}

/// A compiled `resourceRules` entry for one resource.
#[derive(Debug)]
pub struct ResourceQuery {
    /// Per-container pod usage.
    pub container_query: Template,
    /// Node usage.
    pub node_query: Template,
    /// Label ↔ resource association.
    pub resources: ResourceConverter,
    /// Label holding the container name.
    pub container_label: String,
}

/// The compiled `resourceRules` block.
#[derive(Debug)]
pub struct ResourceRuleSet {
    /// CPU queries.
    pub cpu: ResourceQuery,
    /// Memory queries.
    pub memory: ResourceQuery,
    /// The configured window.
    pub window: Duration,
    /// Queries the PromQL parser rejects when rendered with example arguments.
    pub warnings: Vec<RuleError>,
}

/// A whole config, compiled.
#[derive(Debug, Default)]
pub struct CompiledConfig {
    /// Custom-metrics rules.
    pub rules: Vec<Arc<CompiledRule>>,
    /// External-metrics rules.
    pub external_rules: Vec<Arc<CompiledRule>>,
    /// Resource-metrics rules, when configured.
    pub resource_rules: Option<ResourceRuleSet>,
    /// Schedule floors, served as external metrics without a backend.
    pub schedules: Vec<Arc<Schedule>>,
    /// Doubts about the schedules (overlapping windows).
    pub schedule_warnings: Vec<RuleError>,
    /// Named backends besides `--prometheus-url`.
    pub backends: Vec<Arc<BackendSpec>>,
    /// With `--external-metrics-fallback`: the fallback's external metric names as last listed
    /// (served by forwarding, listed beside ours).
    pub external_fallback: Option<SharedNames>,
}

/// A list of names kept current by a background task and read by every request.
pub type SharedNames = Arc<arc_swap::ArcSwap<Vec<String>>>;

impl CompiledConfig {
    /// Every rule, custom first.
    pub fn all_rules(&self) -> impl Iterator<Item = &Arc<CompiledRule>> {
        self.rules.iter().chain(self.external_rules.iter())
    }

    /// Every problem of every rule (see [`CompiledRule::problems`]).
    pub fn problems(&self) -> Vec<&RuleError> {
        self.all_rules().flat_map(|r| r.problems.iter()).collect()
    }

    /// Every warning of every rule, resource rules included.
    pub fn warnings(&self) -> Vec<&RuleError> {
        self.all_rules()
            .flat_map(|r| r.warnings.iter())
            .chain(self.resource_rules.iter().flat_map(|r| r.warnings.iter()))
            .chain(self.schedule_warnings.iter())
            .collect()
    }

    /// Whether `external.metrics.k8s.io` is served: by external rules, schedule floors or a
    /// fallback server.
    pub fn serves_external(&self) -> bool {
        !self.external_rules.is_empty()
            || !self.schedules.is_empty()
            || self.external_fallback.is_some()
    }

    /// The schedule floor serving `metric` in `namespace`, if any.
    pub fn schedule(&self, metric: &str, namespace: &str) -> Option<&Arc<Schedule>> {
        self.schedules
            .iter()
            .find(|s| s.name == metric && s.serves_namespace(namespace))
    }
}

/// Compiles a config against the resources `mapper` knows. Returns every error found, not just
/// the first, so one start-up attempt shows them all.
pub fn compile(
    config: &MetricsDiscoveryConfig,
    mapper: &RestMapper,
) -> Result<CompiledConfig, Vec<RuleError>> {
    let mut out = CompiledConfig::default();
    let (backends, mut errors) = super::backends::compile(&config.backends);
    out.backends = backends;
    for (kind, rules) in [
        (RuleKind::Custom, &config.rules),
        (RuleKind::External, &config.external_rules),
    ] {
        for (index, rule) in rules.iter().enumerate() {
            match compile_rule(kind, index, rule, mapper, &out.backends) {
                Ok(r) => match kind {
                    RuleKind::Custom => out.rules.push(Arc::new(r)),
                    RuleKind::External => out.external_rules.push(Arc::new(r)),
                },
                Err(e) => errors.push(e.in_rule(kind.section(), index)),
            }
        }
    }
    if let Some(rr) = &config.resource_rules {
        match compile_resource_rules(rr, mapper) {
            Ok(set) => out.resource_rules = Some(set),
            Err(e) => errors.extend(e),
        }
    }
    let schedules = super::schedule::compile(&config.schedule_rules, chrono::Utc::now());
    errors.extend(schedules.errors);
    out.schedules = schedules.schedules;
    out.schedule_warnings = schedules.warnings;
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn compile_rule(
    kind: RuleKind,
    index: usize,
    rule: &DiscoveryRule,
    mapper: &RestMapper,
    backends: &[Arc<BackendSpec>],
) -> Result<CompiledRule, RuleError> {
    let backend = match &rule.backend {
        Some(name) => super::backends::resolve(name, backends)?,
        None => None,
    };
    let namer = MetricNamer::compile(&rule.series_filters, &rule.name)?;
    let empty_as_zero = match &rule.empty_result {
        Some(spanned) if kind == RuleKind::Custom => {
            return Err(RuleError {
                section: String::new(),
                index: 0,
                field: "emptyResult".into(),
                line: spanned.referenced.line(),
                message: "emptyResult applies to externalRules only (a custom metric without a \
                          sample answers 404 or is left out of the list, as upstream)"
                    .into(),
            });
        }
        Some(spanned) => spanned.value == crate::config::EmptyResult::Zero,
        None => false,
    };
    let resources = ResourceConverter::compile(&rule.resources)?;
    let metrics_query = compile_template("metricsQuery", &rule.metrics_query)?;
    if let Some((label, gr)) = resources.unknown_overrides(mapper).into_iter().next() {
        return Err(RuleError::new(
            &format!("resources.overrides.{label}"),
            format!("unable to normalize group-resource {gr}: no such resource is served"),
        ));
    }
    let namespace_label = resources
        .label_for_resource(&GroupResource::namespaces(), mapper)
        .ok();

    let section = kind.section();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let dangling = namer.dangling_references();
    if !dangling.is_empty() {
        problems.push(
            RuleError::at(
                "name.as",
                &rule.name.as_,
                format!(
                    "{:?} refers to capture group(s) {} that name.matches does not have, so they \
                     expand to \"\" (write ${{1}}_suffix instead of $1_suffix)",
                    namer.as_template(),
                    dangling.join(", ")
                ),
            )
            .in_rule(section, index),
        );
    }
    if rule.metrics_query.value.trim().is_empty() {
        problems.push(
            RuleError::at("metricsQuery", &rule.metrics_query, "metricsQuery is empty")
                .in_rule(section, index),
        );
    }
    if kind == RuleKind::External && resources.namespaced() && namespace_label.is_none() {
        problems.push(
            RuleError::at(
                "resources",
                &rule.series_query,
                "the rule is namespaced (the default) but maps no label to namespaces: add \
                 overrides: {namespace: {resource: namespace}} or set namespaced: false",
            )
            .in_rule(section, index),
        );
    }
    if rule.series_query.value.trim().is_empty() {
        problems.push(
            RuleError::at("seriesQuery", &rule.series_query, "seriesQuery is empty")
                .in_rule(section, index),
        );
    }
    if !rule.metrics_query.value.trim().is_empty()
        && let Err(message) = check_promql(&metrics_query, kind)
    {
        warnings.push(
            RuleError::at("metricsQuery", &rule.metrics_query, message).in_rule(section, index),
        );
    }

    Ok(CompiledRule {
        kind,
        index,
        series_query: rule.series_query.value.clone(),
        namer,
        resources,
        metrics_query,
        namespace_label,
        problems,
        warnings,
        empty_as_zero,
        backend,
        literal_series_name: literal_series_name(&rule.series_query.value),
    })
}

/// The series name a plain selector names literally; `None` for anything else (a regex on
/// `__name__`, no name, not a selector).
fn literal_series_name(series_query: &str) -> Option<String> {
    use promql_parser::label::MatchOp;
    use promql_parser::parser::Expr;
    let Ok(Expr::VectorSelector(v)) = promql_parser::parser::parse(series_query) else {
        return None;
    };
    if v.name.is_some() {
        return v.name;
    }
    v.matchers
        .matchers
        .iter()
        .find(|m| m.name == "__name__" && matches!(m.op, MatchOp::Equal))
        .map(|m| m.value.clone())
}

fn compile_template(field: &str, text: &Text) -> Result<Template, RuleError> {
    Template::parse(field, text.as_str(), QUERY_FIELDS)
        .map_err(|e| RuleError::at(field, text, e.to_string()))
}

/// Renders a query template with representative arguments and parses the result as PromQL.
pub fn check_promql(template: &Template, kind: RuleKind) -> Result<(), String> {
    let group_by: Vec<String> = match kind {
        RuleKind::Custom => vec!["pod".into()],
        RuleKind::External => vec![],
    };
    let values: BTreeMap<String, String> = [
        ("namespace".to_string(), "default".to_string()),
        ("pod".to_string(), "a|b".to_string()),
    ]
    .into();
    let rendered = template
        .render(&[
            ("Series", Value::Str("example_series".into())),
            (
                "LabelMatchers",
                Value::Str(r#"namespace="default",pod=~"a|b""#.into()),
            ),
            ("LabelValuesByName", Value::Map(values)),
            ("GroupBy", Value::Str(group_by.join(","))),
            ("GroupBySlice", Value::List(group_by)),
        ])
        .map_err(|e| format!("rendering with example arguments failed: {e}"))?;
    promql_parser::parser::parse(&rendered)
        .map(|_| ())
        .map_err(|e| format!("renders PromQL that does not parse ({e}): {rendered}"))
}

fn compile_resource_rules(
    rr: &crate::config::ResourceRules,
    mapper: &RestMapper,
) -> Result<ResourceRuleSet, Vec<RuleError>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut one = |name: &str, rule: &ResourceRule| -> Option<ResourceQuery> {
        let at = |e: RuleError| {
            let mut e = e.in_rule("resourceRules", 0);
            e.field = format!("{name}.{}", e.field);
            e
        };
        let container_query = compile_template("containerQuery", &rule.container_query).map_err(at);
        let node_query = compile_template("nodeQuery", &rule.node_query).map_err(at);
        let resources = ResourceConverter::compile(&rule.resources).map_err(at);
        match (container_query, node_query, resources) {
            (Ok(container_query), Ok(node_query), Ok(resources)) => {
                for (field, text, tmpl) in [
                    ("containerQuery", &rule.container_query, &container_query),
                    ("nodeQuery", &rule.node_query, &node_query),
                ] {
                    if !text.value.trim().is_empty()
                        && let Err(message) = check_promql(tmpl, RuleKind::Custom)
                    {
                        warnings.push(at(RuleError::at(field, text, message)));
                    }
                }
                for (label, gr) in resources.unknown_overrides(mapper) {
                    errors.push(at(RuleError::new(
                        &format!("resources.overrides.{label}"),
                        format!("unable to normalize group-resource {gr}"),
                    )));
                }
                Some(ResourceQuery {
                    container_query,
                    node_query,
                    resources,
                    container_label: rule.container_label.clone(),
                })
            }
            (a, b, c) => {
                errors.extend(a.err());
                errors.extend(b.err());
                errors.extend(c.err());
                None
            }
        }
    };
    let cpu = one("cpu", &rr.cpu);
    let memory = one("memory", &rr.memory);
    // An absent `window` is a zero duration for upstream (pmodel.Duration's zero value).
    let window = match parse_prometheus_duration(rr.window.as_str()) {
        _ if rr.window.line == 0 && rr.window.is_empty() => Some(Duration::ZERO),
        Ok(w) => Some(w),
        Err(e) => {
            errors.push(
                RuleError::at(
                    "window",
                    &rr.window,
                    format!("not a Prometheus duration: {e}"),
                )
                .in_rule("resourceRules", 0),
            );
            None
        }
    };
    match (cpu, memory, window) {
        (Some(cpu), Some(memory), Some(window)) if errors.is_empty() => Ok(ResourceRuleSet {
            cpu,
            memory,
            window,
            warnings,
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> CompiledConfig {
        let raw = crate::config::parse(yaml, "t").unwrap();
        compile(&raw, &RestMapper::standalone()).unwrap()
    }

    #[test]
    fn a_literal_series_name_makes_the_rules_metric_exact() {
        let c = rules(
            r#"
rules:
- seriesQuery: 'worker_busy_threads{namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
- seriesQuery: '{__name__="http_requests_total",namespace!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
- seriesQuery: '{__name__=~"^app_.*",namespace!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
"#,
        );
        let [busy, http, app] = &c.rules[..] else {
            panic!("three rules")
        };
        assert_eq!(
            busy.literal_series_name.as_deref(),
            Some("worker_busy_threads")
        );
        assert!(busy.could_produce("worker_busy_threads"));
        assert!(!busy.could_produce("anything_else"));
        assert_eq!(
            http.literal_series_name.as_deref(),
            Some("http_requests_total")
        );
        assert!(http.could_produce("http_requests_per_second"));
        assert!(!http.could_produce("grpc_requests_per_second"));
        // A regex on the name: only `as` can tell, and it never says no wrongly.
        assert_eq!(app.literal_series_name, None);
        assert!(app.could_produce("app_anything"));
    }
}
