//! `metrics.k8s.io/v1beta1`: pod and node CPU and memory for `kubectl top` and CPU/memory
//! HPAs, from `resourceRules`, in metrics-server's shapes.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::ApiError;
use super::request::{check_namespace, check_object_name, parse_params, segments};
use super::types::ApiResource;
use super::{AppState, format_timestamp, unix_now};
use crate::query::objects::ObjectMeta;
use crate::query::resource_metrics::{node_usage, pod_usage};
use crate::rules::ResourceInfo;

/// The API group.
pub const GROUP: &str = "metrics.k8s.io";
/// The served version.
pub const VERSION: &str = "v1beta1";

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Nodes(Option<String>),
    Pods {
        namespace: Option<String>,
        name: Option<String>,
    },
}

fn parse_target(rest: &[std::borrow::Cow<'_, str>]) -> Result<Target, ApiError> {
    let parts: Vec<&str> = rest.iter().map(|c| c.as_ref()).collect();
    let target = match parts.as_slice() {
        ["nodes"] => Target::Nodes(None),
        ["nodes", name] => Target::Nodes(Some(name.to_string())),
        ["pods"] => Target::Pods {
            namespace: None,
            name: None,
        },
        ["namespaces", ns, "pods"] => Target::Pods {
            namespace: Some(ns.to_string()),
            name: None,
        },
        ["namespaces", ns, "pods", name] => Target::Pods {
            namespace: Some(ns.to_string()),
            name: Some(name.to_string()),
        },
        _ => {
            return Err(ApiError::NotFound(
                "the server could not find the requested resource".into(),
            ));
        }
    };
    match &target {
        Target::Nodes(Some(n)) | Target::Pods { name: Some(n), .. } if n != "*" => {
            check_object_name(n)?
        }
        _ => {}
    }
    if let Target::Pods {
        namespace: Some(ns),
        ..
    } = &target
    {
        check_namespace(ns)?;
    }
    Ok(target)
}

fn window(app: &AppState) -> String {
    let config = app.config.load();
    let nanos = config
        .resource_rules
        .as_ref()
        .map(|r| r.window.as_nanos().min(i64::MAX as u128) as i64)
        .unwrap_or(0);
    crate::duration::format_go_duration(nanos)
}

fn info(app: &AppState, resource: &str) -> Result<ResourceInfo, ApiError> {
    app.mapper
        .load()
        .resolve("", resource)
        .cloned()
        .ok_or_else(|| ApiError::Internal(format!("the cluster does not serve {resource}")))
}

/// `GET /apis/metrics.k8s.io/v1beta1/…`.
pub async fn get_resource_metrics(
    State(app): State<Arc<AppState>>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let config = app.config.load_full();
    let Some(rules) = config.resource_rules.as_ref() else {
        return Err(ApiError::NotFound(
            "the server could not find the requested resource (metrics.k8s.io is not served: the config has no resourceRules)".into(),
        ));
    };
    let segs = segments(uri.path())?;
    if segs.get(2).map(|v| v.as_ref()) != Some(VERSION) {
        return Err(ApiError::NotFound(format!(
            "the server could not find the requested resource (only {GROUP}/{VERSION} is served)"
        )));
    }
    let target = parse_target(&segs[3..])?;
    let params = parse_params(uri.query())?;
    let now = unix_now();
    let mapper = app.mapper.load_full();
    let kube = app.objects.kube();
    if kube.is_none() && !params.label_selector.is_empty() {
        return Err(ApiError::BadRequest(
            "labelSelector on resource metrics needs cluster mode: without a cluster the pods' and nodes' labels are unknown".into(),
        ));
    }
    let window = window(&app);
    let created = format_timestamp(now);
    match target {
        Target::Nodes(name) => {
            let explicit = name.clone().or(params.field_name.clone());
            let mut names = explicit.clone().map(|n| vec![n]);
            let mut labels: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
            if let Some(kube) = kube {
                let mut objects = kube
                    .objects(&info(&app, "nodes")?, None, &params.label_selector, "")
                    .await
                    .map_err(|e| ApiError::Internal(format!("unable to list nodes: {e}")))?;
                if let Some(n) = &explicit {
                    objects.retain(|o| &o.name == n);
                }
                if objects.is_empty() && name.is_none() {
                    return Ok(list("NodeMetricsList", Vec::new()));
                }
                names = Some(objects.iter().map(|o| o.name.clone()).collect());
                labels = objects.into_iter().map(|o| (o.name, o.labels)).collect();
            }
            if names.as_ref().is_some_and(Vec::is_empty) {
                let n = name.clone().unwrap_or_default();
                return Err(ApiError::NotFound(format!(
                    "nodemetrics.metrics.k8s.io \"{n}\" not found"
                )));
            }
            let usage = node_usage(&app.queries, rules, &mapper, names.as_deref())
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            let items: Vec<Value> = usage
                .into_iter()
                .map(|n| {
                    json!({"metadata": {"name": n.name, "creationTimestamp": created, "labels": labels.get(&n.name)},
                           "timestamp": format_timestamp(n.timestamp), "window": window,
                           "usage": {"cpu": n.cpu, "memory": n.memory}})
                })
                .collect();
            single_or_list(name, items, "NodeMetrics", "NodeMetricsList", |n| {
                format!("nodemetrics.metrics.k8s.io \"{n}\" not found")
            })
        }
        Target::Pods { namespace, name } => {
            let explicit = name.clone().or(params.field_name.clone()).map(|n| vec![n]);
            // Namespace → (pod names to ask for, labels per pod).
            let mut scopes: BTreeMap<Option<String>, Option<Vec<String>>> = BTreeMap::new();
            let mut labels: BTreeMap<(String, String), BTreeMap<String, String>> = BTreeMap::new();
            match kube {
                Some(kube) => {
                    let mut objects: Vec<ObjectMeta> = kube
                        .objects(
                            &info(&app, "pods")?,
                            namespace.as_deref(),
                            &params.label_selector,
                            "status.phase=Running",
                        )
                        .await
                        .map_err(|e| ApiError::Internal(format!("unable to list pods: {e}")))?;
                    if let Some(n) = explicit.as_ref().and_then(|e| e.first()) {
                        objects.retain(|o| &o.name == n);
                    }
                    for o in objects {
                        if let Some(names) = scopes
                            .entry(Some(o.namespace.clone()))
                            .or_insert_with(|| Some(Vec::new()))
                        {
                            names.push(o.name.clone());
                        }
                        labels.insert((o.namespace, o.name), o.labels);
                    }
                    if scopes.is_empty() {
                        if let Some(n) = &name {
                            let ns = namespace.clone().unwrap_or_default();
                            return Err(ApiError::NotFound(format!(
                                "podmetrics.metrics.k8s.io \"{ns}/{n}\" not found"
                            )));
                        }
                        return Ok(list("PodMetricsList", Vec::new()));
                    }
                }
                None => {
                    scopes.insert(namespace.clone(), explicit.clone());
                }
            }
            let queries = scopes.iter().map(|(ns, names)| {
                pod_usage(
                    &app.queries,
                    rules,
                    &mapper,
                    ns.as_deref(),
                    names.as_deref(),
                )
            });
            // `kubectl top pods -A` spans every namespace: at most 8 namespaces in flight.
            let mut queries = queries.collect::<Vec<_>>().into_iter();
            let mut results = Vec::new();
            loop {
                let batch: Vec<_> = queries.by_ref().take(8).collect();
                if batch.is_empty() {
                    break;
                }
                results.extend(futures_util::future::join_all(batch).await);
            }
            let mut items = Vec::new();
            for result in results {
                // A failed namespace is an error, not a shorter list the HPA would average.
                for p in result.map_err(|e| ApiError::Internal(e.to_string()))? {
                    let l = labels.get(&(p.namespace.clone(), p.name.clone()));
                    items.push(json!({
                        "metadata": {"name": p.name, "namespace": p.namespace, "creationTimestamp": created, "labels": l},
                        "timestamp": format_timestamp(p.timestamp), "window": window,
                        "containers": p.containers.iter().map(|c| json!({"name": c.name, "usage": {"cpu": c.cpu, "memory": c.memory}})).collect::<Vec<_>>()
                    }));
                }
            }
            let ns = namespace.unwrap_or_default();
            single_or_list(name, items, "PodMetrics", "PodMetricsList", |n| {
                format!("podmetrics.metrics.k8s.io \"{ns}/{n}\" not found")
            })
        }
    }
}

fn list(kind: &str, items: Vec<Value>) -> Response {
    Json(json!({"kind": kind, "apiVersion": format!("{GROUP}/{VERSION}"), "metadata": {}, "items": items})).into_response()
}

fn single_or_list(
    name: Option<String>,
    mut items: Vec<Value>,
    kind: &str,
    list_kind: &str,
    not_found: impl Fn(&str) -> String,
) -> Result<Response, ApiError> {
    for item in &mut items {
        if let Some(meta) = item.get_mut("metadata").and_then(|m| m.as_object_mut())
            && meta.get("labels").is_some_and(Value::is_null)
        {
            meta.remove("labels");
        }
    }
    match name {
        Some(n) => {
            let mut item = items
                .into_iter()
                .next()
                .ok_or_else(|| ApiError::NotFound(not_found(&n)))?;
            if let Some(obj) = item.as_object_mut() {
                obj.insert("kind".into(), json!(kind));
                obj.insert("apiVersion".into(), json!(format!("{GROUP}/{VERSION}")));
            }
            Ok(Json(item).into_response())
        }
        None => Ok(list(list_kind, items)),
    }
}

/// The resources of `metrics.k8s.io/v1beta1`, as metrics-server lists them.
pub fn api_resources() -> Vec<ApiResource> {
    let resource = |name: &str, namespaced, kind| ApiResource {
        name: name.to_string(),
        singular_name: String::new(),
        namespaced,
        kind,
        verbs: vec!["get", "list"],
    };
    vec![
        resource("nodes", false, "NodeMetrics"),
        resource("pods", true, "PodMetrics"),
    ]
}
