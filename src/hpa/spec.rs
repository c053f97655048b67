//! The HPA a user already has: an `autoscaling/v2` HorizontalPodAutoscaler manifest (YAML or
//! JSON), read into [`Hpa`] with the API server's defaults and the validation it would apply,
//! after any `--what-if 'path=value'` edits ([`super::what_if`]).
//!
//! The manifest is read through our own serde types rather than k8s-openapi's so that a
//! misspelt field (`stabilisationWindowSeconds`) is an error naming its path instead of being
//! silently ignored: a simulation of an HPA that is not the one the user meant is worse than
//! none.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::behavior::{Behavior, PolicyKind, ScalingPolicy, ScalingRules, SelectPolicy};
use super::controller::{Bounds, ControllerSettings};
use super::quantity::parse_milli;
use crate::rules::selector::Selector;

/// Why a manifest or an edit cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError(msg.into()))
}

/// A quantity written as a string (`"100"`, `"1.5k"`) or, as YAML allows, a bare number.
#[derive(Clone, Debug, PartialEq)]
struct QuantityText(String);

impl<'de> Deserialize<'de> for QuantityText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(QuantityText(s)),
            Value::Number(n) => Ok(QuantityText(n.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "expected a quantity (a string such as \"100\" or \"1.5k\"), found {other}"
            ))),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Manifest {
    api_version: String,
    kind: String,
    #[serde(default)]
    metadata: Metadata,
    spec: SpecRaw,
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<serde::de::IgnoredAny>,
}

/// Only what the simulation reads; labels, annotations and the rest are accepted and ignored.
#[derive(Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SpecRaw {
    scale_target_ref: ObjectRefRaw,
    #[serde(default)]
    min_replicas: Option<i32>,
    max_replicas: i32,
    #[serde(default)]
    metrics: Vec<MetricRaw>,
    #[serde(default)]
    behavior: Option<BehaviorRaw>,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ObjectRefRaw {
    #[serde(default)]
    api_version: Option<String>,
    kind: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MetricRaw {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    pods: Option<SourceRaw>,
    #[serde(default)]
    object: Option<SourceRaw>,
    #[serde(default)]
    external: Option<SourceRaw>,
    #[serde(default)]
    resource: Option<ResourceRaw>,
    #[serde(default)]
    container_resource: Option<ResourceRaw>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SourceRaw {
    metric: MetricIdRaw,
    target: TargetRaw,
    #[serde(default)]
    described_object: Option<ObjectRefRaw>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ResourceRaw {
    name: String,
    #[serde(default)]
    container: Option<String>,
    target: TargetRaw,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MetricIdRaw {
    name: String,
    #[serde(default)]
    selector: Option<LabelSelectorRaw>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LabelSelectorRaw {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
    #[serde(default)]
    match_expressions: Vec<RequirementRaw>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RequirementRaw {
    key: String,
    operator: String,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TargetRaw {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    value: Option<QuantityText>,
    #[serde(default)]
    average_value: Option<QuantityText>,
    #[serde(default)]
    average_utilization: Option<i32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BehaviorRaw {
    #[serde(default)]
    scale_up: Option<RulesRaw>,
    #[serde(default)]
    scale_down: Option<RulesRaw>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RulesRaw {
    #[serde(default)]
    stabilization_window_seconds: Option<i32>,
    #[serde(default)]
    select_policy: Option<String>,
    #[serde(default)]
    policies: Option<Vec<PolicyRaw>>,
    #[serde(default)]
    tolerance: Option<QuantityText>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PolicyRaw {
    #[serde(rename = "type")]
    kind: String,
    value: i32,
    period_seconds: i32,
}

/// A Kubernetes object reference (`scaleTargetRef`, `describedObject`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    /// `apiVersion` (`apps/v1`), empty when not given.
    pub api_version: String,
    /// `kind` (`Deployment`).
    pub kind: String,
    /// `name`.
    pub name: String,
}

impl ObjectRef {
    /// The API group (`apps`, or empty for the core group).
    pub fn group(&self) -> &str {
        self.api_version
            .split_once('/')
            .map(|(g, _)| g)
            .unwrap_or("")
    }
}

/// Where a metric comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// `type: Pods`: a custom metric of each pod of the target.
    Pods {
        /// `metric.name`.
        name: String,
        /// `metric.selector`, as the HPA sends it (`metricLabelSelector`).
        selector: Selector,
    },
    /// `type: Object`: a custom metric of one object.
    Object {
        /// `metric.name`.
        name: String,
        /// `metric.selector` (`metricLabelSelector`).
        selector: Selector,
        /// `describedObject`.
        object: ObjectRef,
    },
    /// `type: External`.
    External {
        /// `metric.name`.
        name: String,
        /// `metric.selector` (`labelSelector`).
        selector: Selector,
    },
    /// `type: Resource` or `ContainerResource`: CPU or memory from `resourceRules`.
    Resource {
        /// `cpu` or `memory`.
        name: String,
        /// The container of a `ContainerResource` metric.
        container: Option<String>,
    },
}

/// What a metric is compared with; values in thousandths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `type: Value`.
    Value(i64),
    /// `type: AverageValue`.
    AverageValue(i64),
    /// `type: Utilization`, a percentage of the pods' requests.
    Utilization(i32),
}

impl Target {
    /// The target as a plain number (a percentage for utilization).
    pub fn as_f64(self) -> f64 {
        match self {
            Target::Value(m) | Target::AverageValue(m) => m as f64 / 1000.0,
            Target::Utilization(p) => f64::from(p),
        }
    }
}

/// One entry of `spec.metrics`.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// Where the value comes from.
    pub source: Source,
    /// The target.
    pub target: Target,
}

impl Metric {
    /// A short name for tables and reasons: the metric name, or `cpu`/`memory` (with the
    /// container for `ContainerResource`).
    pub fn label(&self) -> String {
        match &self.source {
            Source::Pods { name, .. }
            | Source::Object { name, .. }
            | Source::External { name, .. } => name.clone(),
            Source::Resource {
                name,
                container: Some(c),
            } => format!("{name}/{c}"),
            Source::Resource { name, .. } => name.clone(),
        }
    }

    /// `Pods`, `Object`, `External`, `Resource` or `ContainerResource`.
    pub fn kind(&self) -> &'static str {
        match &self.source {
            Source::Pods { .. } => "Pods",
            Source::Object { .. } => "Object",
            Source::External { .. } => "External",
            Source::Resource {
                container: Some(_), ..
            } => "ContainerResource",
            Source::Resource { .. } => "Resource",
        }
    }
}

/// An HPA, defaults applied and validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Hpa {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, when the manifest says.
    pub namespace: Option<String>,
    /// `spec.scaleTargetRef`.
    pub scale_target: ObjectRef,
    /// `spec.metrics` (CPU at 80 % when the manifest lists none, as the API defaults it).
    pub metrics: Vec<Metric>,
    /// Bounds and the defaulted behavior.
    pub bounds: Bounds,
}

/// Reads a manifest: YAML or JSON, one document or several of which exactly one is an HPA.
pub fn parse_manifest(
    text: &str,
    what_ifs: &[String],
    settings: &ControllerSettings,
) -> Result<Hpa, SpecError> {
    let mut doc = manifest_value(text)?;
    for edit in what_ifs {
        super::what_if::apply_edit(&mut doc, edit)?;
    }
    from_value(doc, settings)
}

/// The manifest's document as JSON, before edits.
pub fn manifest_value(text: &str) -> Result<Value, SpecError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| SpecError(format!("the HPA file is not YAML or JSON: {e}")))?;
    let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    if docs.len() == 1 {
        return Ok(docs.into_iter().next().unwrap_or(Value::Null));
    }
    let mut hpas: Vec<Value> = docs
        .into_iter()
        .filter(|d| d["kind"] == "HorizontalPodAutoscaler")
        .collect();
    match hpas.len() {
        1 => Ok(hpas.remove(0)),
        0 => err("the HPA file holds no HorizontalPodAutoscaler document"),
        n => err(format!(
            "the HPA file holds {n} HorizontalPodAutoscalers ({}); give a file with one",
            hpas.iter()
                .map(|h| h["metadata"]["name"].as_str().unwrap_or("?").to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Reads an HPA from its JSON form.
pub fn from_value(doc: Value, settings: &ControllerSettings) -> Result<Hpa, SpecError> {
    let manifest: Manifest = serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        SpecError(format!(
            "invalid HorizontalPodAutoscaler at {}: {}",
            if path == "." { "the top level" } else { &path },
            e.inner()
        ))
    })?;
    match manifest.api_version.as_str() {
        "autoscaling/v2" | "autoscaling/v2beta2" => {}
        "autoscaling/v1" => {
            return err(
                "autoscaling/v1 HPAs have only targetCPUUtilizationPercentage; write the HPA as \
                 autoscaling/v2 (kubectl get hpa NAME -o yaml prints it in v2)",
            );
        }
        other => return err(format!("apiVersion {other:?}: expected autoscaling/v2")),
    }
    if manifest.kind != "HorizontalPodAutoscaler" {
        return err(format!(
            "kind {:?}: expected HorizontalPodAutoscaler",
            manifest.kind
        ));
    }
    let spec = manifest.spec;
    let mut metrics = spec
        .metrics
        .into_iter()
        .enumerate()
        .map(|(i, m)| metric(m).map_err(|e| SpecError(format!("spec.metrics[{i}]: {}", e.0))))
        .collect::<Result<Vec<_>, _>>()?;
    if metrics.is_empty() {
        // The API server's default for an HPA without metrics.
        metrics.push(Metric {
            source: Source::Resource {
                name: "cpu".into(),
                container: None,
            },
            target: Target::Utilization(80),
        });
    }
    let min_replicas = spec.min_replicas.unwrap_or(1);
    if spec.max_replicas < 1 {
        return err("spec.maxReplicas must be at least 1");
    }
    if min_replicas < 0 || min_replicas > spec.max_replicas {
        return err(format!(
            "spec.minReplicas ({min_replicas}) must be between 0 and maxReplicas ({})",
            spec.max_replicas
        ));
    }
    if min_replicas == 0
        && !metrics
            .iter()
            .any(|m| matches!(m.source, Source::Object { .. } | Source::External { .. }))
    {
        return err(
            "spec.minReplicas 0 needs at least one Object or External metric (HPAScaleToZero)",
        );
    }
    let behavior = spec
        .behavior
        .map(|b| -> Result<Behavior, SpecError> {
            let window = settings.downscale_stabilization_seconds;
            Ok(Behavior {
                scale_up: rules(
                    b.scale_up,
                    ScalingRules::default_scale_up(),
                    "spec.behavior.scaleUp",
                )?,
                scale_down: rules(
                    b.scale_down,
                    ScalingRules::default_scale_down(window),
                    "spec.behavior.scaleDown",
                )?,
            })
        })
        .transpose()?;
    Ok(Hpa {
        name: manifest.metadata.name.unwrap_or_else(|| "hpa".into()),
        namespace: manifest.metadata.namespace,
        scale_target: object_ref(spec.scale_target_ref),
        metrics,
        bounds: Bounds {
            min_replicas,
            max_replicas: spec.max_replicas,
            behavior,
        },
    })
}

fn object_ref(r: ObjectRefRaw) -> ObjectRef {
    ObjectRef {
        api_version: r.api_version.unwrap_or_default(),
        kind: r.kind,
        name: r.name,
    }
}

/// `metav1.LabelSelectorAsSelector`, through the selector string the HPA sends.
fn selector(raw: Option<LabelSelectorRaw>) -> Result<Selector, SpecError> {
    let Some(raw) = raw else {
        return Ok(Selector::default());
    };
    let mut parts: Vec<String> = raw
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for r in raw.match_expressions {
        let values = r.values.join(",");
        parts.push(match r.operator.as_str() {
            "In" => format!("{} in ({values})", r.key),
            "NotIn" => format!("{} notin ({values})", r.key),
            "Exists" => r.key,
            "DoesNotExist" => format!("!{}", r.key),
            other => {
                return err(format!(
                    "selector operator {other:?}: use In, NotIn, Exists or DoesNotExist"
                ));
            }
        });
    }
    Selector::parse(&parts.join(",")).map_err(|e| SpecError(format!("metric.selector: {e}")))
}

fn quantity(q: &QuantityText, field: &str) -> Result<i64, SpecError> {
    let milli = parse_milli(&q.0).map_err(|e| SpecError(format!("target.{field}: {e}")))?;
    if milli <= 0 {
        return err(format!("target.{field} must be greater than 0"));
    }
    Ok(milli)
}

fn target(t: TargetRaw, allowed: &[&str]) -> Result<Target, SpecError> {
    if !allowed.contains(&t.kind.as_str()) {
        return err(format!(
            "target.type {:?} is not allowed here; use {}",
            t.kind,
            allowed.join(" or ")
        ));
    }
    let missing = |f: &str| SpecError(format!("target.type {} needs target.{f}", t.kind));
    Ok(match t.kind.as_str() {
        "Value" => Target::Value(quantity(
            t.value.as_ref().ok_or_else(|| missing("value"))?,
            "value",
        )?),
        "AverageValue" => Target::AverageValue(quantity(
            t.average_value
                .as_ref()
                .ok_or_else(|| missing("averageValue"))?,
            "averageValue",
        )?),
        _ => {
            let p = t
                .average_utilization
                .ok_or_else(|| missing("averageUtilization"))?;
            if p <= 0 {
                return err("target.averageUtilization must be greater than 0");
            }
            Target::Utilization(p)
        }
    })
}

fn metric(m: MetricRaw) -> Result<Metric, SpecError> {
    let present = [
        ("pods", m.pods.is_some()),
        ("object", m.object.is_some()),
        ("external", m.external.is_some()),
        ("resource", m.resource.is_some()),
        ("containerResource", m.container_resource.is_some()),
    ];
    let given: Vec<&str> = present.iter().filter(|p| p.1).map(|p| p.0).collect();
    let wanted = match m.kind.as_str() {
        "Pods" => "pods",
        "Object" => "object",
        "External" => "external",
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        other => {
            return err(format!(
                "type {other:?}: use Pods, Object, External, Resource or ContainerResource"
            ));
        }
    };
    if given != [wanted] {
        return err(format!(
            "type {} needs exactly the field {wanted}, found {}",
            m.kind,
            if given.is_empty() {
                "none".to_string()
            } else {
                given.join(", ")
            }
        ));
    }
    Ok(match m.kind.as_str() {
        "Pods" => {
            let s = m.pods.ok_or_else(|| SpecError("pods missing".into()))?;
            Metric {
                target: target(s.target, &["AverageValue"])?,
                source: Source::Pods {
                    name: s.metric.name,
                    selector: selector(s.metric.selector)?,
                },
            }
        }
        "Object" => {
            let s = m.object.ok_or_else(|| SpecError("object missing".into()))?;
            let object = s
                .described_object
                .ok_or_else(|| SpecError("object.describedObject is required".into()))?;
            Metric {
                target: target(s.target, &["Value", "AverageValue"])?,
                source: Source::Object {
                    name: s.metric.name,
                    selector: selector(s.metric.selector)?,
                    object: object_ref(object),
                },
            }
        }
        "External" => {
            let s = m
                .external
                .ok_or_else(|| SpecError("external missing".into()))?;
            Metric {
                target: target(s.target, &["Value", "AverageValue"])?,
                source: Source::External {
                    name: s.metric.name,
                    selector: selector(s.metric.selector)?,
                },
            }
        }
        _ => {
            let r = m
                .resource
                .or(m.container_resource)
                .ok_or_else(|| SpecError("resource missing".into()))?;
            if m.kind == "ContainerResource" && r.container.is_none() {
                return err("containerResource.container is required");
            }
            if m.kind == "Resource" && r.container.is_some() {
                return err("resource has no container field; use type ContainerResource");
            }
            if !matches!(r.name.as_str(), "cpu" | "memory") {
                return err(format!(
                    "resource {:?}: resourceRules serve cpu and memory only",
                    r.name
                ));
            }
            Metric {
                target: target(r.target, &["Utilization", "AverageValue"])?,
                source: Source::Resource {
                    name: r.name,
                    container: r.container,
                },
            }
        }
    })
}

fn rules(
    raw: Option<RulesRaw>,
    mut defaults: ScalingRules,
    at: &str,
) -> Result<ScalingRules, SpecError> {
    let Some(raw) = raw else {
        return Ok(defaults);
    };
    if let Some(w) = raw.stabilization_window_seconds {
        if !(0..=3600).contains(&w) {
            return err(format!(
                "{at}.stabilizationWindowSeconds must be between 0 and 3600, not {w}"
            ));
        }
        defaults.stabilization_window_seconds = w;
    }
    if let Some(p) = raw.select_policy {
        defaults.select_policy = match p.as_str() {
            "Max" => SelectPolicy::Max,
            "Min" => SelectPolicy::Min,
            "Disabled" => SelectPolicy::Disabled,
            other => {
                return err(format!(
                    "{at}.selectPolicy {other:?}: use Max, Min or Disabled"
                ));
            }
        };
    }
    if let Some(policies) = raw.policies {
        if policies.is_empty() {
            return err(format!("{at}.policies: must specify at least one policy"));
        }
        defaults.policies = policies
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let kind = match p.kind.as_str() {
                    "Pods" => PolicyKind::Pods,
                    "Percent" => PolicyKind::Percent,
                    other => {
                        return err(format!(
                            "{at}.policies[{i}].type {other:?}: use Pods or Percent"
                        ));
                    }
                };
                if p.value <= 0 {
                    return err(format!("{at}.policies[{i}].value must be greater than 0"));
                }
                if !(1..=1800).contains(&p.period_seconds) {
                    return err(format!(
                        "{at}.policies[{i}].periodSeconds must be between 1 and 1800"
                    ));
                }
                Ok(ScalingPolicy {
                    kind,
                    value: p.value,
                    period_seconds: p.period_seconds,
                })
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(t) = raw.tolerance {
        let milli = parse_milli(&t.0).map_err(|e| SpecError(format!("{at}.tolerance: {e}")))?;
        if milli < 0 {
            return err(format!("{at}.tolerance must not be negative"));
        }
        defaults.tolerance = Some(milli as f64 / 1000.0);
    }
    Ok(defaults)
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUEUE: &str = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: worker
  namespace: jobs
  labels: {app: worker}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: worker}
  minReplicas: 1
  maxReplicas: 30
  metrics:
  - type: External
    external:
      metric:
        name: queue_length
        selector:
          matchLabels: {queue: jobs}
          matchExpressions: [{key: env, operator: In, values: [prod, staging]}]
      target: {type: AverageValue, averageValue: 100}
"#;

    fn parse(text: &str, edits: &[&str]) -> Result<Hpa, SpecError> {
        let edits: Vec<String> = edits.iter().map(|s| s.to_string()).collect();
        parse_manifest(text, &edits, &ControllerSettings::default())
    }

    #[test]
    fn a_manifest_reads_with_defaults() {
        let hpa = parse(QUEUE, &[]).unwrap();
        assert_eq!(hpa.name, "worker");
        assert_eq!(hpa.namespace.as_deref(), Some("jobs"));
        assert_eq!(hpa.scale_target.group(), "apps");
        assert_eq!(hpa.metrics[0].target, Target::AverageValue(100_000));
        let Source::External { name, selector } = &hpa.metrics[0].source else {
            panic!("not external")
        };
        assert_eq!(name, "queue_length");
        let labels = |env: &str| {
            BTreeMap::from([
                ("queue".to_string(), "jobs".to_string()),
                ("env".to_string(), env.to_string()),
            ])
        };
        assert!(selector.matches(&labels("prod")) && !selector.matches(&labels("dev")));
        assert_eq!(hpa.bounds.behavior, None);
        // JSON reads the same.
        let json = serde_json::to_string(&manifest_value(QUEUE).unwrap()).unwrap();
        assert_eq!(parse(&json, &[]).unwrap(), hpa);
    }

    #[test]
    fn an_empty_behavior_gets_the_api_defaults() {
        let text = format!("{QUEUE}  behavior: {{}}\n");
        let b = parse(&text, &[]).unwrap().bounds.behavior.unwrap();
        assert_eq!(b.scale_up, ScalingRules::default_scale_up());
        assert_eq!(b.scale_down, ScalingRules::default_scale_down(300));
        let text = format!(
            "{QUEUE}  behavior:\n    scaleDown: {{selectPolicy: Min, tolerance: '0.05'}}\n"
        );
        let b = parse(&text, &[]).unwrap().bounds.behavior.unwrap();
        assert_eq!(b.scale_down.select_policy, SelectPolicy::Min);
        assert_eq!(b.scale_down.tolerance, Some(0.05));
        assert_eq!(b.scale_down.stabilization_window_seconds, 300);
    }

    #[test]
    fn what_if_edits_add_and_change_fields() {
        let hpa = parse(
            QUEUE,
            &[
                "behavior.scaleUp.stabilizationWindowSeconds=0",
                "metrics[0].target.averageValue=50",
                r#"behavior.scaleUp.policies=[{"type":"Percent","value":900,"periodSeconds":15}]"#,
                "spec.maxReplicas=40",
            ],
        )
        .unwrap();
        assert_eq!(hpa.metrics[0].target, Target::AverageValue(50_000));
        assert_eq!(hpa.bounds.max_replicas, 40);
        let up = hpa.bounds.behavior.unwrap().scale_up;
        assert_eq!(up.policies[0].value, 900);
        // A new list element.
        let hpa = parse(
            QUEUE,
            &[
                "metrics[1].type=External",
                "metrics[1].external.metric.name=lag",
                "metrics[1].external.target.type=Value",
                "metrics[1].external.target.value=10",
            ],
        )
        .unwrap();
        assert_eq!(hpa.metrics.len(), 2);
        assert_eq!(hpa.metrics[1].target, Target::Value(10_000));
    }

    #[test]
    fn unknown_paths_and_bad_values_are_errors_naming_them() {
        let e = parse(QUEUE, &["behavior.scaleUp.stabilisationWindowSeconds=0"]).unwrap_err();
        assert!(
            e.0.contains("spec.behavior.scaleUp") && e.0.contains("stabilisationWindowSeconds"),
            "{e}"
        );
        let e = parse(QUEUE, &["metrics[3].type=Pods"]).unwrap_err();
        assert!(e.0.contains("beyond the list's 1 elements"), "{e}");
        for bad in [
            "nothing",
            "metrics[x].type=Pods",
            "metrics[0.type=Pods",
            "maxReplicas[0]=1",
        ] {
            assert!(parse(QUEUE, &[bad]).is_err(), "{bad}");
        }
        let e = parse(QUEUE, &["behavior.scaleUp.selectPolicy=Fastest"]).unwrap_err();
        assert!(e.0.contains("use Max, Min or Disabled"), "{e}");
        let e = parse(
            QUEUE,
            &["behavior.scaleDown.stabilizationWindowSeconds=7200"],
        )
        .unwrap_err();
        assert!(e.0.contains("between 0 and 3600"), "{e}");
        let e = parse(QUEUE, &["metrics[0].external.target.averageValue=0"]).unwrap_err();
        assert!(e.0.contains("greater than 0"), "{e}");
        let e = parse(QUEUE, &["minReplicas=40"]).unwrap_err();
        assert!(e.0.contains("minReplicas"), "{e}");
    }

    #[test]
    fn files_that_are_not_v2_hpas_are_refused_with_the_reason() {
        for (text, want) in [
            (
                "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nspec: {scaleTargetRef: {kind: Deployment, name: x}, maxReplicas: 3}\n",
                "autoscaling/v1",
            ),
            (
                "apiVersion: apps/v1\nkind: Deployment\nspec: {scaleTargetRef: {kind: Deployment, name: x}, maxReplicas: 3}\n",
                "expected autoscaling/v2",
            ),
            ("{", "not YAML or JSON"),
            (
                "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nspec: {maxReplicas: 3}\n",
                "scaleTargetRef",
            ),
            (
                "---\nkind: Deployment\n---\nkind: Service\n",
                "no HorizontalPodAutoscaler",
            ),
        ] {
            let e = parse(text, &[]).unwrap_err();
            assert!(e.0.contains(want), "{text}: {e}");
        }
        // The HPA is found among other documents.
        let text = format!("apiVersion: apps/v1\nkind: Deployment\n---\n{QUEUE}");
        assert_eq!(parse(&text, &[]).unwrap().name, "worker");
    }

    #[test]
    fn metric_shapes_are_validated() {
        let with_metric = |m: &str| {
            format!(
                "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nspec:\n  scaleTargetRef: {{kind: Deployment, name: x}}\n  maxReplicas: 3\n  metrics:\n  - {m}\n"
            )
        };
        let ok = parse(
            &with_metric("{type: Pods, pods: {metric: {name: rps}, target: {type: AverageValue, averageValue: 1.5k}}}"),
            &[],
        )
        .unwrap();
        assert_eq!(ok.metrics[0].target, Target::AverageValue(1_500_000));
        assert_eq!(ok.metrics[0].kind(), "Pods");
        for (m, want) in [
            (
                "{type: Pods, pods: {metric: {name: rps}, target: {type: Value, value: 1}}}",
                "not allowed here",
            ),
            (
                "{type: Pods, external: {metric: {name: rps}, target: {type: AverageValue, averageValue: 1}}}",
                "exactly the field pods",
            ),
            (
                "{type: Object, object: {metric: {name: rps}, target: {type: Value, value: 1}}}",
                "describedObject",
            ),
            (
                "{type: Resource, resource: {name: gpu, target: {type: Utilization, averageUtilization: 50}}}",
                "cpu and memory",
            ),
            (
                "{type: Resource, resource: {name: cpu, target: {type: Utilization}}}",
                "averageUtilization",
            ),
            ("{type: Fancy}", "use Pods, Object"),
        ] {
            let e = parse(&with_metric(m), &[]).unwrap_err();
            assert!(e.0.contains(want), "{m}: {e}");
        }
        // No metrics: CPU at 80 %.
        let text = "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nspec: {scaleTargetRef: {kind: Deployment, name: x}, maxReplicas: 3}\n";
        let hpa = parse(text, &[]).unwrap();
        assert_eq!(hpa.metrics[0].target, Target::Utilization(80));
        assert_eq!(hpa.metrics[0].label(), "cpu");
    }
}
