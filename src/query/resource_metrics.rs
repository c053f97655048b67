//! CPU and memory usage for `metrics.k8s.io`, from `resourceRules`.
//!
//! As prometheus-adapter: per namespace, one CPU and one memory query over the pods, grouped by
//! pod and container; one of each over the nodes. NaN and negative values (counter resets) read
//! as 0; a sample's timestamp is the earliest of its object's samples. Where upstream invents a
//! value we do not: a container that only one of the two queries reports is left out (upstream
//! gives it a 0 for the other resource), and a pod is served only when at least one of its
//! containers has both. An infinite value leaves its object out, with a warning.

use std::collections::{BTreeMap, HashSet};

use super::prometheus::{QueryResult, Sample};
use super::quantity::{binary_si_from_f64, decimal_si_from_f64};
use super::shared::SharedQueries;
use crate::rules::compiled::{ResourceQuery, ResourceRuleSet};
use crate::rules::quote::go_quote;
use crate::rules::template::Value;
use crate::rules::{GroupResource, RestMapper};

/// The object names asked for, as a set (`None`: all); a list of hundreds of pods is checked
/// against every sample.
fn wanted_names(names: Option<&[String]>) -> Option<HashSet<&str>> {
    names
        .filter(|n| !n.is_empty())
        .map(|n| n.iter().map(String::as_str).collect())
}

/// Why usage could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResourceError {
    /// A rule maps no label for a resource it needs.
    #[error("resourceRules.{rule}: {message}")]
    Rule {
        /// `cpu` or `memory`.
        rule: &'static str,
        /// What is missing.
        message: String,
    },
    /// The query failed or returned something other than a vector.
    #[error("unable to fetch {rule} metrics: {message}")]
    Query {
        /// `cpu` or `memory`.
        rule: &'static str,
        /// The error, with the query.
        message: String,
    },
}

/// One container's usage.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerUsage {
    /// Container name.
    pub name: String,
    /// CPU in cores, as a quantity (`1100m`).
    pub cpu: String,
    /// Memory in bytes, as a quantity (`3100`, `1Mi`).
    pub memory: String,
}

/// One pod's usage.
#[derive(Clone, Debug, PartialEq)]
pub struct PodUsage {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Earliest sample time, Unix seconds.
    pub timestamp: f64,
    /// Containers, sorted by name.
    pub containers: Vec<ContainerUsage>,
}

/// One node's usage.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeUsage {
    /// Node name.
    pub name: String,
    /// Earliest sample time.
    pub timestamp: f64,
    /// CPU quantity.
    pub cpu: String,
    /// Memory quantity.
    pub memory: String,
}

fn label(
    rule: &ResourceQuery,
    which: &'static str,
    gr: &GroupResource,
    mapper: &RestMapper,
) -> Result<String, ResourceError> {
    rule.resources
        .label_for_resource(gr, mapper)
        .map_err(|message| ResourceError::Rule {
            rule: which,
            message,
        })
}

fn matcher(label: &str, names: Option<&[String]>) -> (String, String) {
    match names {
        Some([one]) => (format!("{label}={}", go_quote(one)), one.clone()),
        Some(many) if !many.is_empty() => {
            let joined = many.join("|");
            (format!("{label}=~{}", go_quote(&joined)), joined)
        }
        _ => (format!("{label}!=\"\""), String::new()),
    }
}

fn render(
    which: &'static str,
    template: &crate::rules::template::Template,
    matchers: Vec<(String, String, String)>,
    group_by: Vec<String>,
) -> Result<String, ResourceError> {
    let values: BTreeMap<String, String> = matchers
        .iter()
        .map(|(l, _, v)| (l.clone(), v.clone()))
        .collect();
    let label_matchers: Vec<&str> = matchers.iter().map(|(_, m, _)| m.as_str()).collect();
    template
        .render(&[
            ("Series", Value::Str(String::new())),
            ("LabelMatchers", Value::Str(label_matchers.join(","))),
            ("LabelValuesByName", Value::Map(values)),
            ("GroupBy", Value::Str(group_by.join(","))),
            ("GroupBySlice", Value::List(group_by)),
        ])
        .map_err(|e| ResourceError::Query {
            rule: which,
            message: e.to_string(),
        })
}

async fn run(
    client: &SharedQueries,
    which: &'static str,
    query: &str,
) -> Result<Vec<Sample>, ResourceError> {
    match client.query(query).await {
        Ok((answer, _)) => match &*answer {
            QueryResult::Vector(v) => Ok(v.clone()),
            other => Err(ResourceError::Query {
                rule: which,
                message: format!(
                    "the query returned a {} instead of a vector (query: {query})",
                    other.type_name()
                ),
            }),
        },
        Err(e) => Err(ResourceError::Query {
            rule: which,
            message: format!("{e} (query: {query})"),
        }),
    }
}

/// A per-container pod usage query as the server renders it, with the labels of its answer.
#[derive(Clone, Debug, PartialEq)]
pub struct PodQuery {
    /// The PromQL.
    pub query: String,
    /// The label naming the namespace.
    pub namespace_label: String,
    /// The label naming the pod.
    pub pod_label: String,
    /// The label naming the container.
    pub container_label: String,
}

/// Renders the `cpu` or `memory` pod query for `namespace` (all when `None`), restricted to
/// `names` when given.
pub fn pod_query(
    rules: &ResourceRuleSet,
    which: &'static str,
    mapper: &RestMapper,
    namespace: Option<&str>,
    names: Option<&[String]>,
) -> Result<PodQuery, ResourceError> {
    let rule = if which == "cpu" {
        &rules.cpu
    } else {
        &rules.memory
    };
    let ns_label = label(rule, which, &GroupResource::namespaces(), mapper)?;
    let pod_label = label(rule, which, &GroupResource::new("", "pods"), mapper)?;
    let (ns_matcher, ns_value) = match namespace {
        Some(ns) => (format!("{ns_label}={}", go_quote(ns)), ns.to_string()),
        None => (format!("{ns_label}!=\"\""), String::new()),
    };
    let (pod_matcher, pod_value) = matcher(&pod_label, names);
    // Upstream groups a one-namespace query by pod and container only; keeping the
    // namespace label too changes no value (the matcher selects one namespace) but lets a
    // query that forgot `<<.LabelMatchers>>` be caught instead of mixing in another
    // namespace's pods of the same name.
    let group_by = vec![
        ns_label.clone(),
        pod_label.clone(),
        rule.container_label.clone(),
    ];
    let matchers = vec![
        (ns_label.clone(), ns_matcher, ns_value),
        (pod_label.clone(), pod_matcher, pod_value),
    ];
    Ok(PodQuery {
        query: render(which, &rule.container_query, matchers, group_by)?,
        namespace_label: ns_label,
        pod_label,
        container_label: rule.container_label.clone(),
    })
}

/// NaN and negative values read as 0 (upstream); infinities are `None`.
fn usable(v: f64) -> Option<f64> {
    if v.is_infinite() {
        None
    } else if v.is_nan() || v < 0.0 {
        Some(0.0)
    } else {
        Some(v)
    }
}

#[derive(Default)]
struct Partial {
    cpu: Option<f64>,
    memory: Option<f64>,
    broken: bool,
}

/// Usage of pods in `namespace` (all namespaces when `None`), restricted to `names` when given.
pub async fn pod_usage(
    client: &SharedQueries,
    rules: &ResourceRuleSet,
    mapper: &RestMapper,
    namespace: Option<&str>,
    names: Option<&[String]>,
) -> Result<Vec<PodUsage>, ResourceError> {
    let cpu_query = pod_query(rules, "cpu", mapper, namespace, names)?;
    let memory_query = pod_query(rules, "memory", mapper, namespace, names)?;
    let (cpu, memory) = tokio::join!(
        run(client, "cpu", &cpu_query.query),
        run(client, "memory", &memory_query.query)
    );
    let mut pods_seen: BTreeMap<(String, String), (f64, BTreeMap<String, Partial>)> =
        BTreeMap::new();
    let wanted = wanted_names(names);
    for ((samples, (which, q)), is_cpu) in [cpu?, memory?]
        .into_iter()
        .zip([("cpu", &cpu_query), ("memory", &memory_query)])
        .zip([true, false])
    {
        let (ns_label, pod_label) = (&q.namespace_label, &q.pod_label);
        let mut samples = samples;
        if let Some(ns) = namespace {
            // Pods are matched by name only: a query without `<<.LabelMatchers>>` must not
            // bring in another namespace's pod of the same name.
            let dropped = super::values::keep_namespace(&mut samples, ns_label, ns);
            crate::telemetry::metrics()
                .namespace_mismatch(&format!("resourceRules.{which}"), dropped);
        }
        for s in samples {
            let ns = s
                .labels
                .get(ns_label.as_str())
                .cloned()
                .or_else(|| namespace.map(str::to_string))
                .unwrap_or_default();
            let (Some(pod), Some(container)) = (
                s.labels.get(pod_label.as_str()),
                s.labels.get(q.container_label.as_str()),
            ) else {
                continue;
            };
            let entry = pods_seen
                .entry((ns, pod.clone()))
                .or_insert((f64::INFINITY, BTreeMap::new()));
            entry.0 = entry.0.min(s.timestamp);
            let c = entry.1.entry(container.clone()).or_default();
            match usable(s.value) {
                Some(v) if is_cpu => c.cpu = Some(v),
                Some(v) => c.memory = Some(v),
                None => c.broken = true,
            }
        }
    }
    let mut out = Vec::new();
    for ((ns, pod), (timestamp, containers)) in pods_seen {
        // Names join into a regex where `.` matches any character: keep only what was asked.
        if wanted.as_ref().is_some_and(|w| !w.contains(pod.as_str())) {
            continue;
        }
        if containers.values().any(|c| c.broken) {
            tracing::warn!(namespace = %ns, %pod, "infinite CPU or memory usage; leaving the pod out");
            continue;
        }
        let mut usage = Vec::new();
        for (name, c) in containers {
            let (Some(cpu), Some(memory)) = (c.cpu, c.memory) else {
                tracing::debug!(namespace = %ns, %pod, container = %name, "container reported by only one of the CPU and memory queries; left out");
                continue;
            };
            let (Ok(cpu), Ok(memory)) = (decimal_si_from_f64(cpu), binary_si_from_f64(memory))
            else {
                continue;
            };
            usage.push(ContainerUsage { name, cpu, memory });
        }
        if usage.is_empty() {
            tracing::debug!(namespace = %ns, %pod, "no container with both CPU and memory samples; pod left out");
            continue;
        }
        out.push(PodUsage {
            namespace: ns,
            name: pod,
            timestamp,
            containers: usage,
        });
    }
    Ok(out)
}

/// Usage of nodes, restricted to `names` when given.
pub async fn node_usage(
    client: &SharedQueries,
    rules: &ResourceRuleSet,
    mapper: &RestMapper,
    names: Option<&[String]>,
) -> Result<Vec<NodeUsage>, ResourceError> {
    let nodes = GroupResource::new("", "nodes");
    let cpu_label = label(&rules.cpu, "cpu", &nodes, mapper)?;
    let mem_label = label(&rules.memory, "memory", &nodes, mapper)?;
    let (cm, cv) = matcher(&cpu_label, names);
    let (mm, mv) = matcher(&mem_label, names);
    let cpu_query = render(
        "cpu",
        &rules.cpu.node_query,
        vec![(cpu_label.clone(), cm, cv)],
        vec![cpu_label.clone()],
    )?;
    let memory_query = render(
        "memory",
        &rules.memory.node_query,
        vec![(mem_label.clone(), mm, mv)],
        vec![mem_label.clone()],
    )?;
    let (cpu, memory) = tokio::join!(
        run(client, "cpu", &cpu_query),
        run(client, "memory", &memory_query)
    );
    let mut seen: BTreeMap<String, (f64, Partial)> = BTreeMap::new();
    for (samples, lbl, is_cpu) in [(cpu?, &cpu_label, true), (memory?, &mem_label, false)] {
        for s in samples {
            let Some(node) = s.labels.get(lbl.as_str()) else {
                continue;
            };
            let e = seen
                .entry(node.clone())
                .or_insert((f64::INFINITY, Partial::default()));
            e.0 = e.0.min(s.timestamp);
            match usable(s.value) {
                Some(v) if is_cpu => e.1.cpu = Some(v),
                Some(v) => e.1.memory = Some(v),
                None => e.1.broken = true,
            }
        }
    }
    let wanted = wanted_names(names);
    Ok(seen
        .into_iter()
        .filter(|(name, _)| wanted.as_ref().is_none_or(|w| w.contains(name.as_str())))
        .filter_map(|(name, (timestamp, p))| {
            if p.broken {
                tracing::warn!(node = %name, "infinite CPU or memory usage; leaving the node out");
                return None;
            }
            Some(NodeUsage {
                cpu: decimal_si_from_f64(p.cpu?).ok()?,
                memory: binary_si_from_f64(p.memory?).ok()?,
                name,
                timestamp,
            })
        })
        .collect())
}
