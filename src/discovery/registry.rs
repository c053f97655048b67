//! The registry: which API metrics exist, built from discovered series, as an immutable snapshot.
//!
//! Built wholesale on every relist and swapped behind an `ArcSwap`, so requests never wait for
//! discovery and never see a half-built registry.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use crate::query::prometheus::SeriesSet;
use crate::rules::backends::BackendSpec;
use crate::rules::naming::{is_valid_api_metric_name, is_valid_series_name};
use crate::rules::resources::LabelResource;
use crate::rules::{CompiledConfig, CompiledRule, GroupResource, RestMapper};

/// What one series listing is: a `seriesQuery` sent to one backend. Rules with the same pair
/// share the listing; the same query on two backends is two listings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    /// The backend; `None` is `--prometheus-url`.
    pub backend: Option<Arc<BackendSpec>>,
    /// The `seriesQuery`.
    pub query: String,
}

impl SeriesKey {
    /// The listing behind `rule`.
    pub fn of(rule: &CompiledRule) -> SeriesKey {
        SeriesKey {
            backend: rule.backend.clone(),
            query: rule.series_query.clone(),
        }
    }

    /// The backend's name, `default` for `--prometheus-url`.
    pub fn backend_name(&self) -> &str {
        self.backend
            .as_ref()
            .map_or(crate::rules::backends::DEFAULT_NAME, |b| b.name.as_str())
    }
}

/// Key of a custom metric: the resource it describes, the scope and the API name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CustomMetricKey {
    /// Canonical group-resource.
    pub resource: GroupResource,
    /// Whether the metric is asked for within a namespace.
    pub namespaced: bool,
    /// API metric name.
    pub metric: String,
}

/// What serving a custom metric needs.
#[derive(Clone, Debug)]
pub struct CustomMetric {
    /// The Prometheus series name behind the metric (`.Series`).
    pub series_name: Arc<str>,
    /// The rule that produced it.
    pub rule: Arc<CompiledRule>,
    /// The label holding object names, or why none could be derived.
    pub resource_label: Result<String, String>,
}

/// What serving an external metric needs.
#[derive(Clone, Debug)]
pub struct ExternalMetric {
    /// The Prometheus series name behind the metric.
    pub series_name: Arc<str>,
    /// The rule that produced it.
    pub rule: Arc<CompiledRule>,
}

/// A series a rule dropped, and why (kept as counts with one example per reason).
#[derive(Clone, Debug, Default)]
pub struct DropCounts {
    /// Removed by `seriesFilters` or the implicit `name.matches` filter.
    pub filtered: usize,
    /// Produced an empty metric name.
    pub empty_name: usize,
    /// Had no label mapped to a resource (custom rules).
    pub no_resource: usize,
    /// Had a series name that cannot be written into PromQL, or produced an API name that
    /// cannot be a URL path segment.
    pub invalid_name: usize,
    /// One example series per reason (`filtered`, `empty_name`, `no_resource`, `invalid_name`).
    pub examples: std::collections::BTreeMap<&'static str, String>,
}

impl DropCounts {
    fn drop(&mut self, reason: &'static str, series: &str) {
        match reason {
            "filtered" => self.filtered += 1,
            "empty_name" => self.empty_name += 1,
            "no_resource" => self.no_resource += 1,
            _ => self.invalid_name += 1,
        }
        self.examples
            .entry(reason)
            .or_insert_with(|| series.to_string());
    }
}

/// Per-rule discovery outcome, for logs, `/metrics` and `check`.
#[derive(Clone, Debug, Default)]
pub struct RuleStats {
    /// Distinct series shapes the `seriesQuery` returned.
    pub series: usize,
    /// Why series were dropped.
    pub dropped: DropCounts,
    /// Distinct API metrics the rule produced.
    pub metrics: usize,
    /// The API names produced, sorted (custom: `resource/metric`).
    pub names: Vec<String>,
}

/// The API names a series gets under a rule: the expansion of `as`, and for rules whose `as`
/// has dangling references also the intended name, so that asking for it answers with the
/// rule's problem (a 500) instead of a bare 404. Invalid series names are counted and skipped.
fn names_for(rule: &CompiledRule, series: &str, stats: &mut RuleStats) -> Vec<String> {
    if !rule.namer.keeps(series) {
        stats.dropped.drop("filtered", series);
        return Vec::new();
    }
    if !is_valid_series_name(series) {
        stats.dropped.drop("invalid_name", series);
        return Vec::new();
    }
    let mut names: Vec<String> = rule.namer.metric_name(series).into_iter().collect();
    names.extend(rule.namer.intended_metric_name(series));
    names.retain(|n| !n.is_empty());
    names.dedup();
    if names.is_empty() {
        stats.dropped.drop("empty_name", series);
    }
    let before = names.len();
    names.retain(|n| is_valid_api_metric_name(n));
    if names.len() < before && names.is_empty() {
        stats.dropped.drop("invalid_name", series);
    }
    names
}

/// One immutable view of every served metric.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    custom: HashMap<CustomMetricKey, CustomMetric>,
    external: HashMap<String, ExternalMetric>,
    /// Custom keys, sorted, for stable discovery documents.
    custom_sorted: Vec<CustomMetricKey>,
    /// External names, sorted.
    external_sorted: Vec<String>,
    /// Stats per custom rule, then per external rule.
    pub custom_stats: Vec<RuleStats>,
    /// Stats per external rule.
    pub external_stats: Vec<RuleStats>,
    /// When the series behind this registry were listed; `None` before the first relist.
    pub built_at: Option<SystemTime>,
}

impl Registry {
    /// Builds a registry. `series` maps each `seriesQuery` to its answer; a query with no answer
    /// contributes nothing.
    pub fn build(
        config: &CompiledConfig,
        mapper: &RestMapper,
        series: &HashMap<SeriesKey, Arc<SeriesSet>>,
        built_at: SystemTime,
    ) -> Registry {
        let mut reg = Registry {
            built_at: Some(built_at),
            ..Default::default()
        };
        let namespaces = GroupResource::namespaces();
        let cluster_scoped = [
            namespaces.clone(),
            GroupResource::new("", "nodes"),
            GroupResource::new("", "persistentvolumes"),
        ];
        // Labels repeat across series; resolve each (rule, label) once.
        for rule in &config.rules {
            let mut stats = RuleStats::default();
            let mut label_cache: HashMap<&str, Option<GroupResource>> = HashMap::new();
            let mut resource_labels: HashMap<GroupResource, Result<String, String>> =
                HashMap::new();
            let mut produced = BTreeSet::new();
            if let Some(set) = series.get(&SeriesKey::of(rule)) {
                stats.series = set.series.len();
                for s in &set.series {
                    let metrics = names_for(rule, &s.name, &mut stats);
                    if metrics.is_empty() {
                        continue;
                    }
                    let mut resources = Vec::new();
                    let mut namespaced = false;
                    for label in s.labels.iter() {
                        let gr = label_cache
                            .entry(label)
                            .or_insert_with(|| {
                                match rule.resources.resource_for_label(label, mapper) {
                                    LabelResource::Resource(gr) => Some(gr),
                                    _ => None,
                                }
                            })
                            .clone();
                        // Upstream marks a metric namespaced when any label, mapped or not, is
                        // something other than a namespace, node or persistent volume.
                        if gr.as_ref().is_none_or(|g| !cluster_scoped.contains(g)) {
                            namespaced = true;
                        }
                        if let Some(gr) = gr {
                            resources.push(gr);
                        }
                    }
                    if resources.is_empty() {
                        stats.dropped.drop("no_resource", &s.name);
                        continue;
                    }
                    for gr in resources {
                        let label = resource_labels
                            .entry(gr.clone())
                            .or_insert_with(|| rule.resources.label_for_resource(&gr, mapper))
                            .clone();
                        for metric in &metrics {
                            let key = CustomMetricKey {
                                namespaced: namespaced && !cluster_scoped.contains(&gr),
                                resource: gr.clone(),
                                metric: metric.clone(),
                            };
                            produced.insert(key.clone());
                            reg.custom.insert(
                                key,
                                CustomMetric {
                                    series_name: s.name.clone(),
                                    rule: rule.clone(),
                                    resource_label: label.clone(),
                                },
                            );
                        }
                    }
                }
            }
            stats.metrics = produced.len();
            stats.names = produced
                .iter()
                .map(|k| format!("{}/{}", k.resource, k.metric))
                .collect();
            stats.names.sort();
            stats.names.dedup();
            reg.custom_stats.push(stats);
        }
        for rule in &config.external_rules {
            let mut stats = RuleStats::default();
            let mut produced = BTreeSet::new();
            if let Some(set) = series.get(&SeriesKey::of(rule)) {
                stats.series = set.series.len();
                for s in &set.series {
                    for metric in names_for(rule, &s.name, &mut stats) {
                        produced.insert(metric.clone());
                        reg.external.insert(
                            metric,
                            ExternalMetric {
                                series_name: s.name.clone(),
                                rule: rule.clone(),
                            },
                        );
                    }
                }
            }
            stats.metrics = produced.len();
            stats.names = produced.iter().cloned().collect();
            reg.external_stats.push(stats);
        }
        reg.custom_sorted = reg.custom.keys().cloned().collect();
        // Sorted as the API lists them: by `resource.group/metric`, then scope.
        reg.custom_sorted
            .sort_by_cached_key(|k| (k.resource.to_string(), k.metric.clone(), k.namespaced));
        reg.external_sorted = reg.external.keys().cloned().collect();
        reg.external_sorted.sort();
        reg
    }

    /// Looks up a custom metric.
    pub fn custom(&self, key: &CustomMetricKey) -> Option<&CustomMetric> {
        self.custom.get(key)
    }

    /// Looks up an external metric.
    pub fn external(&self, name: &str) -> Option<&ExternalMetric> {
        self.external.get(name)
    }

    /// Every custom metric key, sorted by resource, scope and name.
    pub fn custom_keys(&self) -> &[CustomMetricKey] {
        &self.custom_sorted
    }

    /// Every external metric name, sorted.
    pub fn external_names(&self) -> &[String] {
        &self.external_sorted
    }

    /// Every custom metric with its key, in no order.
    pub fn custom_entries(&self) -> impl Iterator<Item = (&CustomMetricKey, &CustomMetric)> {
        self.custom.iter()
    }

    /// Every external metric with its name, in no order.
    pub fn external_entries(&self) -> impl Iterator<Item = (&String, &ExternalMetric)> {
        self.external.iter()
    }

    /// Custom metrics with this name, for "did you mean" hints.
    pub fn custom_named(&self, metric: &str) -> Vec<&CustomMetricKey> {
        self.custom_sorted
            .iter()
            .filter(|k| k.metric == metric)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::query::prometheus::SeriesInfo;
    use crate::rules::compile;

    fn series(items: &[(&str, &[&str])]) -> Arc<SeriesSet> {
        Arc::new(SeriesSet {
            series: items
                .iter()
                .map(|(name, labels)| SeriesInfo {
                    name: (*name).into(),
                    labels: labels
                        .iter()
                        .map(|l| Box::<str>::from(*l))
                        .collect::<Vec<_>>()
                        .into(),
                })
                .collect(),
            raw_count: items.len(),
        })
    }

    fn key(resource: &str, namespaced: bool, metric: &str) -> CustomMetricKey {
        CustomMetricKey {
            resource: GroupResource::parse_qualified(resource),
            namespaced,
            metric: metric.into(),
        }
    }

    #[test]
    fn a_per_pod_counter_becomes_pod_and_namespace_metrics() {
        let cfg = config::parse(
            r#"
rules:
- seriesQuery: 'flask_http_request_total{namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
"#,
            "t",
        )
        .unwrap();
        let mapper = RestMapper::standalone();
        let compiled = compile(&cfg, &mapper).unwrap();
        let mut answers = HashMap::new();
        answers.insert(
            SeriesKey::of(&compiled.rules[0]),
            series(&[
                (
                    "flask_http_request_total",
                    &["instance", "namespace", "pod"],
                ),
                ("flask_http_request_seconds", &["namespace", "pod"]),
                ("x) or vector(1) or y_total", &["namespace", "pod"]),
                ("http.server.requests_total", &["namespace", "pod"]),
            ]),
        );
        let reg = Registry::build(&compiled, &mapper, &answers, SystemTime::now());
        assert_eq!(
            reg.custom_keys(),
            &[
                key("namespaces", false, "flask_http_request_per_second"),
                key("pods", true, "flask_http_request_per_second"),
            ]
        );
        let m = reg
            .custom(&key("pods", true, "flask_http_request_per_second"))
            .unwrap();
        assert_eq!(&*m.series_name, "flask_http_request_total");
        assert_eq!(m.resource_label.as_deref(), Ok("pod"));
        assert_eq!(reg.custom_stats[0].dropped.filtered, 1);
        assert_eq!(reg.custom_stats[0].dropped.invalid_name, 2);
    }

    #[test]
    fn templates_map_every_matching_label_and_node_metrics_are_cluster_scoped() {
        let cfg = config::parse(
            r#"
rules:
- seriesQuery: '{__name__=~"node_.*|ingress_.*"}'
  resources: {template: "kube_<<.Resource>>"}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
externalRules:
- seriesQuery: 'queue_depth'
  resources: {namespaced: false}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>})'
"#,
            "t",
        )
        .unwrap();
        let mapper = RestMapper::standalone();
        let compiled = compile(&cfg, &mapper).unwrap();
        let mut answers = HashMap::new();
        answers.insert(
            SeriesKey::of(&compiled.rules[0]),
            series(&[
                ("node_gigawatts", &["kube_node"]),
                (
                    "ingress_hits",
                    &["kube_namespace", "kube_ingress", "kube_service"],
                ),
                ("no_mapping", &["instance"]),
            ]),
        );
        answers.insert(
            SeriesKey::of(&compiled.external_rules[0]),
            series(&[("queue_depth", &["queue"])]),
        );
        let reg = Registry::build(&compiled, &mapper, &answers, SystemTime::now());
        assert_eq!(
            reg.custom_keys(),
            &[
                key("ingresses.networking.k8s.io", true, "ingress_hits"),
                key("namespaces", false, "ingress_hits"),
                key("nodes", false, "node_gigawatts"),
                key("services", true, "ingress_hits"),
            ]
        );
        assert_eq!(reg.custom_stats[0].dropped.no_resource, 1);
        assert_eq!(reg.external_names(), &["queue_depth".to_string()]);
        let svc = reg.custom(&key("services", true, "ingress_hits")).unwrap();
        assert_eq!(svc.resource_label.as_deref(), Ok("kube_service"));
    }
}
