//! What the adapter would have answered at each sync of the window, from Prometheus.
//!
//! Each metric of the HPA goes through the server's own path: the rule discovery found for it
//! (over the window, not the last ten minutes), the query the server renders for the request
//! the HPA makes, and the server's mapping of samples to objects (several samples of an object
//! summed, NaN read as 0, other namespaces' samples dropped). The difference is the time axis:
//! instead of one instant query per sync, one range query per metric evaluates the same
//! PromQL at every sync time, which is what an instant query at each of them would return.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};

use crate::discovery::{CustomMetric, CustomMetricKey, Registry};
use crate::hpa::{Hpa, Observed, Source};
use crate::query::prometheus::RangeSeries;
use crate::query::resource_metrics::pod_query;
use crate::query::shared::SharedQueries;
use crate::rules::backends::BackendSpec;
use crate::rules::query::{ObjectNames, ObjectScope, render_custom, render_external};
use crate::rules::quote::go_quote;
use crate::rules::selector::{Selector, is_dns1123_subdomain};
use crate::rules::{CompiledConfig, GroupResource, RestMapper};

/// Prometheus answers at most 11,000 points per series; windows longer than this many steps
/// are asked for in several range queries.
const MAX_STEPS_PER_QUERY: usize = 10_000;

/// The sync times of a simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First sync, Unix milliseconds.
    pub start_ms: i64,
    /// The sync period, milliseconds.
    pub step_ms: i64,
    /// Number of syncs.
    pub steps: usize,
}

impl Window {
    /// Syncs from `start_ms` every `step_ms` up to `end_ms` included.
    pub fn new(start_ms: i64, end_ms: i64, step_ms: i64) -> anyhow::Result<Self> {
        if step_ms <= 0 {
            bail!("--step must be greater than zero");
        }
        if end_ms < start_ms {
            bail!("--from must not be after --to");
        }
        let steps = usize::try_from((end_ms - start_ms) / step_ms + 1)?;
        if steps > 1_000_000 {
            bail!("{steps} syncs: shorten the window or lengthen --step");
        }
        Ok(Window {
            start_ms,
            step_ms,
            steps,
        })
    }

    /// Every sync time.
    pub fn times(&self) -> Vec<i64> {
        (0..self.steps as i64)
            .map(|k| self.start_ms + k * self.step_ms)
            .collect()
    }

    fn start_s(&self) -> f64 {
        self.start_ms as f64 / 1000.0
    }

    fn end_s(&self) -> f64 {
        (self.start_ms + (self.steps as i64 - 1) * self.step_ms) as f64 / 1000.0
    }

    /// The step a sample timestamp (Unix seconds) belongs to.
    fn index(&self, t: f64) -> Option<usize> {
        let k = ((t * 1000.0 - self.start_ms as f64) / self.step_ms as f64).round();
        (k >= 0.0 && (k as usize) < self.steps).then_some(k as usize)
    }
}

/// Which pods belong to the scale target in standalone semantics.
#[derive(Clone, Debug)]
pub enum PodFilter {
    /// `--pod-selector`, applied to the series' labels (as the standalone server does).
    Selector(Selector),
    /// Pods named `<scaleTargetRef.name>-…`, as Deployments and StatefulSets name theirs.
    NamePrefix(String),
}

impl PodFilter {
    fn keeps(&self, labels: &BTreeMap<String, String>, pod: &str) -> bool {
        match self {
            PodFilter::Selector(s) => s.matches(labels),
            PodFilter::NamePrefix(p) => pod.starts_with(p.as_str()),
        }
    }
}

/// What the fetch needs to know.
pub struct Inputs<'a> {
    /// The backends (each rule's own, `--prometheus-url` for the rest).
    pub queries: &'a SharedQueries,
    /// The compiled rules.
    pub config: &'a CompiledConfig,
    /// Resources known without a cluster.
    pub mapper: &'a RestMapper,
    /// Discovery over the window.
    pub registry: &'a Registry,
    /// The HPA's namespace.
    pub namespace: &'a str,
    /// The pods of the scale target.
    pub pods: &'a PodFilter,
    /// The syncs.
    pub window: Window,
}

/// The discovered metric `key` names and its resource label, or why `what` (for messages)
/// cannot be served from the window's series.
fn served<'r>(
    cx: &Inputs<'r>,
    key: &CustomMetricKey,
    what: &str,
) -> anyhow::Result<(&'r CustomMetric, &'r str)> {
    let name = &key.metric;
    let m = cx.registry.custom(key).ok_or_else(|| {
        anyhow!(
            "no rule serves {what} from the series of the window{}",
            cx.registry
                .custom_hint(name, Some(&key.resource))
                .map(|h| format!(": {h}"))
                .unwrap_or_default()
        )
    })?;
    if let Some(problem) = m.rule.problems.first() {
        bail!("metric {name} cannot be served: {problem}");
    }
    let label = m
        .resource_label
        .as_deref()
        .map_err(|e| anyhow!("{} cannot query {}: {e}", m.rule.label(), key.resource))?;
    Ok((m, label))
}

/// One metric's history and the query that produced it.
#[derive(Clone, Debug)]
pub struct MetricHistory {
    /// The PromQL, as the server renders it for the HPA's request.
    pub query: String,
    /// One observation per sync.
    pub observed: Vec<Observed>,
}

/// Counts what was asked of Prometheus.
#[derive(Debug, Default)]
pub struct Calls {
    /// Range queries sent.
    pub range_queries: usize,
}

async fn range(
    cx: &Inputs<'_>,
    calls: &mut Calls,
    backend: Option<&Arc<BackendSpec>>,
    query: &str,
) -> anyhow::Result<Vec<RangeSeries>> {
    let backend = cx.queries.backend(backend)?;
    let step = Duration::from_millis(cx.window.step_ms as u64);
    let mut merged: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
    let mut first = 0usize;
    while first < cx.window.steps {
        let last = (first + MAX_STEPS_PER_QUERY).min(cx.window.steps) - 1;
        let start = (cx.window.start_ms + first as i64 * cx.window.step_ms) as f64 / 1000.0;
        let end = (cx.window.start_ms + last as i64 * cx.window.step_ms) as f64 / 1000.0;
        calls.range_queries += 1;
        let part = backend
            .client()
            .query_range(query, start, end, step)
            .await
            .with_context(|| format!("range query {query}"))?;
        for s in part {
            merged.entry(s.labels).or_default().extend(s.samples);
        }
        first = last + 1;
    }
    Ok(merged
        .into_iter()
        .map(|(labels, samples)| RangeSeries { labels, samples })
        .collect())
}

/// A served value, or the 500 the server answers for an infinite one.
fn finite(v: f64, what: &str) -> Result<f64, String> {
    if v.is_nan() {
        Ok(0.0)
    } else if v.is_infinite() {
        Err(format!(
            "the adapter answers 500: {what} is {}",
            if v > 0.0 { "+Inf" } else { "-Inf" }
        ))
    } else {
        Ok(v)
    }
}

/// Per step, the summed value of each object named by `label` among `series`, keeping only
/// `names` and, when given, samples of the namespace.
fn per_object(
    window: Window,
    series: &[RangeSeries],
    label: &str,
    namespace: Option<(&str, &str)>,
    names: &BTreeSet<String>,
) -> Vec<BTreeMap<String, f64>> {
    let mut out = vec![BTreeMap::new(); window.steps];
    for s in series {
        if let Some((ns_label, ns)) = namespace
            && s.labels.get(ns_label).is_some_and(|v| v != ns)
        {
            continue;
        }
        let Some(name) = s.labels.get(label).filter(|n| names.contains(*n)) else {
            continue;
        };
        for (t, v) in &s.samples {
            if let Some(k) = window.index(*t) {
                // NaN counts as 0; infinities propagate and are reported per step.
                let v = if v.is_nan() { 0.0 } else { *v };
                *out[k].entry(name.clone()).or_insert(0.0) += v;
            }
        }
    }
    out
}

async fn pods_metric(
    cx: &Inputs<'_>,
    calls: &mut Calls,
    name: &str,
    selector: &Selector,
) -> anyhow::Result<MetricHistory> {
    let key = CustomMetricKey {
        resource: GroupResource::new("", "pods"),
        namespaced: true,
        metric: name.to_string(),
    };
    let (m, label) = served(
        cx,
        &key,
        &format!("the Pods metric {name} (pods in a namespace)"),
    )?;
    let ns_label = m.rule.namespace_label.as_deref().ok_or_else(|| {
        anyhow!(
            "{} maps no label to namespaces, so it cannot answer a Pods metric",
            m.rule.label()
        )
    })?;
    let listing = format!(
        "{{__name__={},{label}!=\"\",{ns_label}={}}}",
        go_quote(&m.series_name),
        go_quote(cx.namespace)
    );
    let series = cx
        .queries
        .backend(m.rule.backend.as_ref())?
        .client()
        .series_labels(&listing, cx.window.start_s(), cx.window.end_s())
        .await
        .with_context(|| format!("listing the pods of {name}"))?;
    let names: BTreeSet<String> = series
        .iter()
        .filter_map(|labels| {
            let pod = labels.get(label)?;
            (is_dns1123_subdomain(pod) && cx.pods.keeps(labels, pod)).then(|| pod.clone())
        })
        .collect();
    if names.is_empty() {
        bail!(
            "no pod of the scale target has the series {} in namespace {} over the window \
             ({}); check --namespace and --pod-selector",
            m.series_name,
            cx.namespace,
            match cx.pods {
                PodFilter::Selector(s) => format!("pods whose series match {s:?}"),
                PodFilter::NamePrefix(p) => format!("pods named {p}…"),
            }
        );
    }
    let list: Vec<String> = names.iter().cloned().collect();
    let query = render_custom(
        &m.rule,
        &m.series_name,
        ObjectScope {
            namespace: Some((ns_label, cx.namespace)),
            resource_label: label,
            names: ObjectNames::Listed(&list),
        },
        selector,
    )
    .with_context(|| format!("rendering the query of {name}"))?;
    let answer = range(cx, calls, m.rule.backend.as_ref(), &query).await?;
    let observed = per_object(
        cx.window,
        &answer,
        label,
        Some((ns_label, cx.namespace)),
        &names,
    )
    .into_iter()
    .map(|values| {
        if values.is_empty() {
            return Observed::Missing("no metrics returned from custom metrics API".into());
        }
        values
            .iter()
            .map(|(pod, v)| finite(*v, &format!("the value of pod {pod}")))
            .collect::<Result<Vec<_>, _>>()
            .map_or_else(Observed::Missing, Observed::Pods)
    })
    .collect();
    Ok(MetricHistory { query, observed })
}

async fn object_metric(
    cx: &Inputs<'_>,
    calls: &mut Calls,
    name: &str,
    selector: &Selector,
    object: &crate::hpa::spec::ObjectRef,
) -> anyhow::Result<MetricHistory> {
    let info = cx
        .mapper
        .resolve(object.group(), &object.kind)
        .cloned()
        .ok_or_else(|| {
            anyhow!(
                "describedObject kind {} ({}) is not a resource known without a cluster",
                object.kind,
                object.api_version
            )
        })?;
    let is_namespace = info.group.is_empty() && info.plural == "namespaces";
    let key = CustomMetricKey {
        resource: info.group_resource(),
        namespaced: info.namespaced && !is_namespace,
        metric: name.to_string(),
    };
    let (m, label) = served(
        cx,
        &key,
        &format!("the Object metric {name} for {}", key.resource),
    )?;
    let namespace = if key.namespaced {
        let ns_label = m.rule.namespace_label.as_deref().ok_or_else(|| {
            anyhow!(
                "{} maps no label to namespaces, so it cannot answer a namespaced request",
                m.rule.label()
            )
        })?;
        Some((ns_label, cx.namespace))
    } else {
        None
    };
    let names = vec![object.name.clone()];
    let query = render_custom(
        &m.rule,
        &m.series_name,
        ObjectScope {
            namespace,
            resource_label: label,
            names: ObjectNames::Listed(&names),
        },
        selector,
    )
    .with_context(|| format!("rendering the query of {name}"))?;
    let answer = range(cx, calls, m.rule.backend.as_ref(), &query).await?;
    let wanted: BTreeSet<String> = names.into_iter().collect();
    let observed = per_object(cx.window, &answer, label, namespace, &wanted)
        .into_iter()
        .map(|values| match values.get(&object.name) {
            None => Observed::Missing(format!(
                "the adapter answers 404: the server could not find the metric {name} for {} {}",
                key.resource, object.name
            )),
            Some(v) => finite(*v, &format!("the value of {}", object.name))
                .map_or_else(Observed::Missing, |v| Observed::Items(vec![v])),
        })
        .collect();
    Ok(MetricHistory { query, observed })
}

async fn external_metric(
    cx: &Inputs<'_>,
    calls: &mut Calls,
    name: &str,
    selector: &Selector,
) -> anyhow::Result<MetricHistory> {
    let m = cx.registry.external(name).ok_or_else(|| {
        anyhow!(
            "no external rule serves {name} from the series of the window{}",
            cx.registry
                .external_hint(name)
                .map(|h| format!(": {h}"))
                .unwrap_or_default()
        )
    })?;
    if let Some(problem) = m.rule.problems.first() {
        bail!("metric {name} cannot be served: {problem}");
    }
    let namespace = if m.rule.resources.namespaced() {
        let label = m.rule.namespace_label.as_deref().ok_or_else(|| {
            anyhow!(
                "{} is namespaced but maps no label to namespaces",
                m.rule.label()
            )
        })?;
        Some((label, cx.namespace))
    } else {
        None
    };
    let query = render_external(&m.rule, &m.series_name, namespace, selector)
        .with_context(|| format!("rendering the query of {name}"))?;
    let answer = range(cx, calls, m.rule.backend.as_ref(), &query).await?;
    let mut items: Vec<Vec<f64>> = vec![Vec::new(); cx.window.steps];
    for s in &answer {
        if let Some((label, ns)) = namespace
            && s.labels.get(label).is_some_and(|v| v != ns)
        {
            continue;
        }
        for (t, v) in &s.samples {
            if let Some(k) = cx.window.index(*t) {
                items[k].push(*v);
            }
        }
    }
    let empty_as_zero = m.rule.empty_as_zero;
    let observed = items
        .into_iter()
        .map(|values| {
            if values.is_empty() && empty_as_zero {
                return Observed::Items(vec![0.0]);
            }
            values
                .iter()
                .map(|v| finite(*v, &format!("a sample of {name}")))
                .collect::<Result<Vec<_>, _>>()
                .map_or_else(Observed::Missing, Observed::Items)
        })
        .collect();
    Ok(MetricHistory { query, observed })
}

async fn resource_metric(
    cx: &Inputs<'_>,
    calls: &mut Calls,
    resource: &str,
    container: Option<&str>,
) -> anyhow::Result<MetricHistory> {
    let rules =
        cx.config.resource_rules.as_ref().ok_or_else(|| {
            anyhow!("a {resource} Resource metric needs resourceRules in the config")
        })?;
    let which = if resource == "cpu" { "cpu" } else { "memory" };
    let q = pod_query(rules, which, cx.mapper, Some(cx.namespace), None)?;
    let answer = range(cx, calls, None, &q.query).await?;
    // Per step, per pod: the sum of its containers (or the one container asked for).
    let mut per_pod: Vec<BTreeMap<String, f64>> = vec![BTreeMap::new(); cx.window.steps];
    let mut broken: Vec<BTreeSet<String>> = vec![BTreeSet::new(); cx.window.steps];
    for s in &answer {
        if s.labels
            .get(&q.namespace_label)
            .is_some_and(|v| v != cx.namespace)
        {
            continue;
        }
        let (Some(pod), Some(c)) = (s.labels.get(&q.pod_label), s.labels.get(&q.container_label))
        else {
            continue;
        };
        if container.is_some_and(|want| want != c) || !cx.pods.keeps(&s.labels, pod) {
            continue;
        }
        for (t, v) in &s.samples {
            let Some(k) = cx.window.index(*t) else {
                continue;
            };
            if v.is_infinite() {
                // The server leaves such a pod out.
                broken[k].insert(pod.clone());
            }
            // NaN and negative usage (counter resets) read as 0, as the server does.
            let v = if v.is_nan() || *v < 0.0 { 0.0 } else { *v };
            *per_pod[k].entry(pod.clone()).or_insert(0.0) += v;
        }
    }
    let observed = per_pod
        .into_iter()
        .zip(broken)
        .map(|(pods, broken)| {
            let values: Vec<f64> = pods
                .into_iter()
                .filter(|(p, _)| !broken.contains(p))
                .map(|(_, v)| v)
                .collect();
            if values.is_empty() {
                Observed::Missing("no metrics returned from resource metrics API".into())
            } else {
                Observed::Pods(values)
            }
        })
        .collect();
    Ok(MetricHistory {
        query: q.query,
        observed,
    })
}

/// Fetches every distinct metric of `hpas` once.
pub async fn fetch(
    cx: &Inputs<'_>,
    hpas: &[&Hpa],
    calls: &mut Calls,
) -> anyhow::Result<HashMap<String, Arc<MetricHistory>>> {
    let mut out: HashMap<String, Arc<MetricHistory>> = HashMap::new();
    for hpa in hpas {
        for metric in &hpa.metrics {
            let key = source_key(&metric.source);
            if out.contains_key(&key) {
                continue;
            }
            let label = metric.label();
            let history = match &metric.source {
                Source::Pods { name, selector } => pods_metric(cx, calls, name, selector).await,
                Source::Object {
                    name,
                    selector,
                    object,
                } => object_metric(cx, calls, name, selector, object).await,
                Source::External { name, selector } => {
                    external_metric(cx, calls, name, selector).await
                }
                Source::Resource { name, container } => {
                    resource_metric(cx, calls, name, container.as_deref()).await
                }
            }
            .with_context(|| format!("{} metric {label}", metric.kind()))?;
            out.insert(key, Arc::new(history));
        }
    }
    Ok(out)
}

/// The identity of a metric's source: two HPAs reading the same source share one fetch.
pub fn source_key(source: &Source) -> String {
    format!("{source:?}")
}

/// The replica count Prometheus recorded for the scale target at each sync, from
/// kube-state-metrics (`kube_deployment_status_replicas` and its StatefulSet and ReplicaSet
/// siblings).
pub async fn recorded_replicas(
    cx: &Inputs<'_>,
    calls: &mut Calls,
    target: &crate::hpa::spec::ObjectRef,
) -> anyhow::Result<Vec<Option<i32>>> {
    let (metric, label) = match target.kind.as_str() {
        "Deployment" => ("kube_deployment_status_replicas", "deployment"),
        "StatefulSet" => ("kube_statefulset_status_replicas", "statefulset"),
        "ReplicaSet" => ("kube_replicaset_status_replicas", "replicaset"),
        other => bail!(
            "--replicas-from-history knows Deployments, StatefulSets and ReplicaSets, not {other}"
        ),
    };
    let query = format!(
        "max({metric}{{namespace={},{label}={}}})",
        go_quote(cx.namespace),
        go_quote(&target.name)
    );
    let answer = range(cx, calls, None, &query).await?;
    let mut out = vec![None; cx.window.steps];
    for s in &answer {
        for (t, v) in &s.samples {
            if let Some(k) = cx.window.index(*t)
                && v.is_finite()
            {
                out[k] = Some(v.round().clamp(0.0, f64::from(i32::MAX)) as i32);
            }
        }
    }
    if out.iter().all(Option::is_none) {
        bail!(
            "--replicas-from-history: Prometheus has no {metric} for {} {}/{} in the window \
             (is kube-state-metrics scraped?)",
            target.kind,
            cx.namespace,
            target.name
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_count_both_ends_and_map_sample_times_to_steps() {
        let w = Window::new(1_000_000, 1_060_000, 15_000).unwrap();
        assert_eq!(w.steps, 5);
        assert_eq!(w.times().last(), Some(&1_060_000));
        assert_eq!(w.index(1000.0), Some(0));
        assert_eq!(w.index(1015.0), Some(1));
        assert_eq!(w.index(1060.001), Some(4));
        assert_eq!(w.index(1075.0), None);
        assert_eq!(w.index(985.0), None);
        assert!(Window::new(10, 5, 1).is_err());
        assert!(Window::new(0, 5, 0).is_err());
    }

    #[test]
    fn objects_sum_their_samples_and_other_namespaces_are_dropped() {
        let w = Window::new(0, 15_000, 15_000).unwrap();
        let series = |pod: &str, ns: &str, v: f64| RangeSeries {
            labels: BTreeMap::from([
                ("pod".to_string(), pod.to_string()),
                ("namespace".to_string(), ns.to_string()),
            ]),
            samples: vec![(0.0, v), (15.0, v)],
        };
        let names = BTreeSet::from(["a".to_string(), "b".to_string()]);
        let got = per_object(
            w,
            &[
                series("a", "web", 1.0),
                series("a", "web", f64::NAN),
                series("a", "web", 2.0),
                series("b", "other", 5.0),
                series("c", "web", 7.0),
            ],
            "pod",
            Some(("namespace", "web")),
            &names,
        );
        assert_eq!(got[0], BTreeMap::from([("a".to_string(), 3.0)]));
        assert_eq!(got[1], got[0]);
        assert_eq!(finite(f64::NAN, "x"), Ok(0.0));
        assert!(finite(f64::INFINITY, "x").unwrap_err().contains("+Inf"));
    }
}
