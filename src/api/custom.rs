//! `custom.metrics.k8s.io` (v1beta1 and v1beta2): metrics describing Kubernetes objects.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::request::{
    MetricsParams, check_metric_name, check_namespace, check_object_name, check_resource,
    parse_params, segments,
};
use super::types::{
    List, ListMeta, MetricIdentifier, MetricValueV1Beta1, MetricValueV1Beta2, ObjectReference,
};
use super::{AppState, format_timestamp, not_listed_yet, unix_now};
use crate::discovery::lookup::Outcome;
use crate::discovery::{CustomMetric, CustomMetricKey, Registry};
use crate::query::QueryResult;
use crate::query::objects::{ListRequest, answers_in_one_call};
use crate::query::values::{in_namespace, to_quantity, values_by_label};
use crate::rules::query::{ObjectNames, ObjectScope, render_custom};
use crate::rules::selector::is_dns1123_subdomain;
use crate::rules::{GroupResource, ResourceInfo};

/// The API group.
pub const GROUP: &str = "custom.metrics.k8s.io";
/// Served versions, in upstream's priority order.
pub const VERSIONS: &[&str] = &["v1beta1", "v1beta2"];

/// A parsed object path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPath {
    /// API version.
    pub version: String,
    /// Namespace of the objects, for namespaced resources.
    pub namespace: Option<String>,
    /// Resource as written in the URL.
    pub resource: String,
    /// Object name or `*`.
    pub name: String,
    /// Metric name.
    pub metric: String,
}

/// Parses the part of the path after `/apis/custom.metrics.k8s.io/`.
pub fn parse_object_path(rest: &[std::borrow::Cow<'_, str>]) -> Result<ObjectPath, ApiError> {
    let version = rest.first().map(|v| v.to_string()).unwrap_or_default();
    if !VERSIONS.contains(&version.as_str()) {
        return Err(ApiError::NotFound(format!(
            "the server could not find the requested resource (version {version:?} of {GROUP} is not served)"
        )));
    }
    let s: Vec<&str> = rest.iter().skip(1).map(|c| c.as_ref()).collect();
    let path = match s.as_slice() {
        ["namespaces", ns, "metrics", metric] => ObjectPath {
            version,
            namespace: None,
            resource: "namespaces".into(),
            name: ns.to_string(),
            metric: metric.to_string(),
        },
        ["namespaces", ns, resource, name, metric] => ObjectPath {
            version,
            namespace: Some(ns.to_string()),
            resource: resource.to_string(),
            name: name.to_string(),
            metric: metric.to_string(),
        },
        // Upstream routes `namespaces/{ns}/{x}` nowhere: the namespace itself is asked for with
        // `namespaces/{ns}/metrics/{metric}`.
        ["namespaces", _, _] => return Err(ApiError::BadRequest("invalid request path".into())),
        [resource, name, metric] => ObjectPath {
            version,
            namespace: None,
            resource: resource.to_string(),
            name: name.to_string(),
            metric: metric.to_string(),
        },
        _ => return Err(ApiError::BadRequest("invalid request path".into())),
    };
    if let Some(ns) = &path.namespace {
        check_namespace(ns)?;
    }
    if path.resource == "namespaces" && path.name != "*" {
        check_namespace(&path.name)?;
    }
    check_resource(&path.resource)?;
    check_object_name(&path.name)?;
    check_metric_name(&path.metric)?;
    Ok(path)
}

fn not_found(metric: &str, gr: &str) -> ApiError {
    ApiError::NotFound(format!(
        "the server could not find the metric {metric} for {gr}"
    ))
}

/// [`not_found`] for a metric no rule serves for `gr`, with what the HPA owner should ask for
/// instead when the registry knows (one line: the HPA shows it as an event).
fn unknown_metric(registry: &Registry, metric: &str, gr: &GroupResource) -> ApiError {
    let base = format!("the server could not find the metric {metric} for {gr}");
    ApiError::NotFound(match registry.custom_hint(metric, Some(gr)) {
        Some(hint) => format!("{base}: {hint}"),
        None => base,
    })
}

/// `GET /apis/custom.metrics.k8s.io/{version}/…`: the object paths.
pub async fn get_object_metric(
    State(app): State<Arc<AppState>>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let segs = segments(uri.path())?;
    // segs: ["apis", GROUP, version, ...]
    let path = parse_object_path(&segs[2..])?;
    let params = parse_params(uri.query())?;
    let answer = answer(&app, &path, &params).await?;
    Ok(render_list(&path, &params, answer)?.into_response())
}

/// One computed value, before it is written in a version's shape.
struct Item {
    object: ObjectReference,
    value: String,
}

async fn answer(
    app: &AppState,
    path: &ObjectPath,
    params: &MetricsParams,
) -> Result<Vec<Item>, ApiError> {
    let mapper = app.mapper.load();
    let info: ResourceInfo = mapper
        .resolve_qualified(&path.resource)
        .cloned()
        .ok_or_else(|| not_found(&path.metric, &path.resource))?;
    let gr = info.group_resource();
    let key = CustomMetricKey {
        resource: gr.clone(),
        namespaced: path.namespace.is_some(),
        metric: path.metric.clone(),
    };
    let mut registry = app.registry.load_full();
    if registry.custom(&key).is_none()
        && let Some(lookups) = &app.lookups
    {
        let looked = lookups.custom(&key, path.namespace.as_deref()).await;
        // Whatever this request's lookup said: a lookup that another request finished in the
        // meantime may have published it.
        registry = app.registry.load_full();
        if registry.custom(&key).is_none()
            && let Outcome::Failed(error) = looked
        {
            return Err(not_listed_yet(&path.metric, &error));
        }
    }
    let metric: CustomMetric = registry
        .custom(&key)
        .cloned()
        .ok_or_else(|| unknown_metric(&registry, &path.metric, &gr))?;
    drop(registry);
    if let Some(problem) = metric.rule.problems.first() {
        return Err(ApiError::Internal(format!(
            "metric {} cannot be served: {problem}",
            path.metric
        )));
    }
    let resource_label = metric.resource_label.as_deref().map_err(|e| {
        ApiError::Internal(format!("{} cannot query {gr}: {e}", metric.rule.label()))
    })?;
    let namespace = match &path.namespace {
        Some(ns) => {
            let label = metric.rule.namespace_label.as_deref().ok_or_else(|| {
                ApiError::Internal(format!(
                    "{} maps no label to namespaces, so it cannot answer a namespaced request",
                    metric.rule.label()
                ))
            })?;
            Some((label, ns.as_str()))
        }
        None => None,
    };

    // Standalone `*`: the answer names the objects, so the series need not be listed first.
    let from_answer = path.name == "*"
        && app.objects.from_series()
        && answers_in_one_call(&metric.rule, &params.label_selector);
    let names: Vec<String> = if from_answer {
        Vec::new()
    } else if path.name == "*" {
        let mut names = app
            .objects
            .list(ListRequest {
                resource: &info,
                namespace,
                selector: &params.label_selector,
                series_name: &metric.series_name,
                resource_label,
                backend: metric.rule.backend.as_ref(),
            })
            .await
            .map_err(|e| ApiError::Internal(format!("unable to list matching resources: {e}")))?;
        if let Some(only) = &params.field_name {
            names.retain(|n| n == only);
        }
        if names.is_empty() {
            return Err(not_found(&path.metric, &gr.to_string()));
        }
        names
    } else {
        vec![path.name.clone()]
    };

    let query = render_custom(
        &metric.rule,
        &metric.series_name,
        ObjectScope {
            namespace,
            resource_label,
            names: if from_answer {
                ObjectNames::Matching(&params.label_selector)
            } else {
                ObjectNames::Listed(&names)
            },
        },
        &params.metric_label_selector,
    )
    .map_err(|e| match e {
        crate::rules::query::QueryBuildError::Selector(e) => {
            ApiError::BadRequest(format!("invalid metricLabelSelector: {e}"))
        }
        other => ApiError::Internal(other.to_string()),
    })?;
    let answer = super::query_for_rule(app, &metric.rule, &query).await?;
    let result: &QueryResult = &answer;
    let QueryResult::Vector(samples) = result else {
        return Err(ApiError::Internal(format!(
            "unable to fetch metrics: the query returned a {} instead of a vector (query: {query})",
            result.type_name()
        )));
    };
    // Objects are matched by name only: another namespace's pod of the same name must not
    // count, even when the query forgot the namespace matcher. The answer may be shared with
    // other requests, so it is read in place.
    let mut dropped = 0;
    let values = values_by_label(
        samples.iter().filter(|s| {
            let keep = namespace.is_none_or(|(label, ns)| in_namespace(s, label, ns));
            dropped += usize::from(!keep);
            keep
        }),
        resource_label,
    );
    if namespace.is_some() {
        crate::telemetry::metrics().namespace_mismatch(&metric.rule.label(), dropped);
    }
    let names = if from_answer {
        // Label values that are not Kubernetes names could not name an object.
        let mut names: Vec<String> = values
            .keys()
            .filter(|name| is_dns1123_subdomain(name))
            .filter(|name| {
                params
                    .field_name
                    .as_deref()
                    .is_none_or(|only| only == **name)
            })
            .map(|name| name.to_string())
            .collect();
        names.sort_unstable();
        if names.is_empty() {
            return Err(not_found(&path.metric, &gr.to_string()));
        }
        names
    } else {
        names
    };
    let mut items = Vec::with_capacity(names.len());
    // Every item describes an object of the same kind and namespace: formatted once.
    let described = described_object(&info, path, String::new());
    for name in names {
        let Some(v) = values.get(name.as_str()) else {
            continue;
        };
        let value = to_quantity(
            v.value,
            format_args!("the value of {gr} {name} (query: {query})"),
        )
        .map_err(ApiError::Internal)?;
        items.push(Item {
            object: ObjectReference {
                name,
                ..described.clone()
            },
            value,
        });
    }
    if items.is_empty() && path.name != "*" {
        return Err(ApiError::NotFound(format!(
            "the server could not find the metric {} for {gr} {}",
            path.metric, path.name
        )));
    }
    Ok(items)
}

fn described_object(info: &ResourceInfo, path: &ObjectPath, name: String) -> ObjectReference {
    ObjectReference {
        kind: info.kind.clone(),
        namespace: path.namespace.clone().unwrap_or_default(),
        name,
        api_version: info.described_api_version(),
    }
}

fn render_list(
    path: &ObjectPath,
    params: &MetricsParams,
    items: Vec<Item>,
) -> Result<Response, ApiError> {
    let selector = if params.metric_label_selector.is_empty() {
        None
    } else {
        Some(
            params
                .metric_label_selector
                .to_label_selector_json()
                .map_err(|e| ApiError::BadRequest(format!("invalid metricLabelSelector: {e}")))?,
        )
    };
    let timestamp = format_timestamp(unix_now());
    let api_version = format!("{GROUP}/{}", path.version);
    let response = match path.version.as_str() {
        "v1beta1" => Json(List {
            kind: "MetricValueList",
            api_version,
            metadata: ListMeta {},
            items: items
                .into_iter()
                .map(|i| MetricValueV1Beta1 {
                    described_object: i.object,
                    metric_name: path.metric.clone(),
                    timestamp: timestamp.clone(),
                    window: None,
                    value: i.value,
                    selector: selector.clone(),
                })
                .collect(),
        })
        .into_response(),
        "v1beta2" => Json(List {
            kind: "MetricValueList",
            api_version,
            metadata: ListMeta {},
            items: items
                .into_iter()
                .map(|i| MetricValueV1Beta2 {
                    described_object: i.object,
                    metric: MetricIdentifier {
                        name: path.metric.clone(),
                        selector: selector.clone(),
                    },
                    timestamp: timestamp.clone(),
                    window_seconds: None,
                    value: i.value,
                })
                .collect(),
        })
        .into_response(),
        other => {
            return Err(ApiError::NotFound(format!(
                "the server could not find the requested resource (version {other:?} of {GROUP} is not served)"
            )));
        }
    };
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(p: &str) -> Result<ObjectPath, ApiError> {
        let segs = segments(p)?;
        parse_object_path(&segs)
    }

    #[test]
    fn every_path_shape_parses() {
        let p = parse("v1beta2/namespaces/default/pods/%2A/http_requests").unwrap();
        assert_eq!(p.namespace.as_deref(), Some("default"));
        assert_eq!((p.resource.as_str(), p.name.as_str()), ("pods", "*"));
        let p = parse("v1beta1/namespaces/prod/metrics/queue_length").unwrap();
        assert_eq!(p.namespace, None);
        assert_eq!(
            (p.resource.as_str(), p.name.as_str()),
            ("namespaces", "prod")
        );
        let p = parse("v1beta1/nodes/node-1/node_load").unwrap();
        assert_eq!(
            (p.resource.as_str(), p.name.as_str(), p.metric.as_str()),
            ("nodes", "node-1", "node_load")
        );
        let p = parse("v1beta1/namespaces/default/deployments.apps/web/rps").unwrap();
        assert_eq!(p.resource, "deployments.apps");
    }

    #[test]
    fn an_unserved_version_is_refused_before_any_work() {
        assert!(matches!(
            parse("v1%2Fnamespaces/namespaces/default/pods/*/m"),
            Err(ApiError::NotFound(_)) | Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse("v2/namespaces/default/pods/*/m"),
            Err(ApiError::NotFound(_))
        ));
    }

    #[test]
    fn malformed_paths_and_names_are_bad_requests() {
        for bad in [
            "v1beta1/namespaces/x/foo",
            "v1beta1/namespaces/default/pods/*/m/extra/x",
            "v1beta1/namespaces/Default/pods/*/m",
            "v1beta1/namespaces/default/pods/a%22b/m",
            "v1beta1/namespaces/default/pods/*/..",
            "v1beta1/namespaces/default/pods/*/a%25b",
            "v1beta1/namespaces/default/pods/%2A/a%2Fb",
        ] {
            assert!(matches!(parse(bad), Err(ApiError::BadRequest(_))), "{bad}");
        }
    }
}
