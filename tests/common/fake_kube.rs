//! A small fake kube-apiserver: discovery (aggregated and per-group) and metadata-only pod
//! lists, in the JSON shapes the real one (v1.36) returns, and TokenReviews and
//! SubjectAccessReviews, the latter decided by RBAC from role and binding data ([`Rbac`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use k8s_openapi::api::authorization::v1::SubjectAccessReviewSpec;
use prom_metrics_adapter::rules::selector::Selector;
use serde_json::{Value, json};

use super::rbac::Rbac;

/// (namespace, name, labels)
pub type Pod = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// The pods the fake cluster has.
pub const PODS: &[Pod] = &[
    ("default", "web-1", &[("app", "web")]),
    ("default", "web-2", &[("app", "web")]),
    ("default", "web-3", &[("app", "web")]),
    ("default", "worker-1", &[("app", "worker")]),
    ("other", "web-9", &[("app", "web")]),
];

/// A pod added at run time: (namespace, name, labels).
pub type OwnedPod = (String, String, Vec<(String, String)>);

/// Knobs and counters of the fake.
pub struct FakeState {
    /// Answer aggregated discovery requests with 406, as servers before 1.26 do.
    pub no_aggregated: AtomicBool,
    /// Namespaced pod LIST requests seen (the per-request fallback).
    pub pod_lists: AtomicUsize,
    /// Cluster-wide pod LIST requests seen (a watch's initial list).
    pub cluster_pod_lists: AtomicUsize,
    /// Pod WATCH requests seen.
    pub pod_watches: AtomicUsize,
    /// Watches (pods and nodes) whose client is still connected.
    pub open_watches: AtomicUsize,
    /// Set by [`FakeKube::go_away`]: every request answers 503 and open watches end.
    pub gone: tokio::sync::watch::Sender<bool>,
    /// Label selectors seen on namespaced pod LISTs.
    pub selectors: std::sync::Mutex<Vec<String>>,
    /// Watch events to send, one JSON line each.
    pub events: tokio::sync::broadcast::Sender<String>,
    /// The `kube-system/extension-apiserver-authentication` ConfigMap's data; `None` → 404.
    pub auth_configmap: std::sync::Mutex<Option<BTreeMap<String, String>>>,
    /// Bearer token → (user, groups) the TokenReview accepts.
    pub tokens: std::sync::Mutex<BTreeMap<String, (String, Vec<String>)>>,
    /// The cluster's roles and bindings, which decide SubjectAccessReviews; a fresh cluster
    /// with `manifests/` applied unless a test says otherwise.
    pub rbac: std::sync::Mutex<Rbac>,
    /// The adapter's own service account, which the kubeconfig's token authenticates as:
    /// (namespace, name). `manifests/` runs it as monitoring/prom-metrics-adapter.
    pub adapter_account: std::sync::Mutex<(String, String)>,
    /// Requests of the adapter's own that RBAC refused (`403`), as "verb what".
    pub refused: std::sync::Mutex<Vec<String>>,
    /// Secrets by (namespace, name), as stored (with `metadata.resourceVersion`).
    pub secrets: std::sync::Mutex<BTreeMap<(String, String), Value>>,
    /// APIServices by name.
    pub api_services: std::sync::Mutex<BTreeMap<String, Value>>,
    /// The last resourceVersion handed out.
    pub resource_version: AtomicUsize,
    /// TokenReviews seen.
    pub token_reviews: AtomicUsize,
    /// SubjectAccessReview specs seen.
    pub access_reviews: std::sync::Mutex<Vec<Value>>,
    /// Pods listed after [`PODS`] (benchmarks add hundreds).
    pub more_pods: std::sync::Mutex<Vec<OwnedPod>>,
}

impl Default for FakeState {
    fn default() -> Self {
        FakeState {
            no_aggregated: AtomicBool::new(false),
            pod_lists: AtomicUsize::new(0),
            cluster_pod_lists: AtomicUsize::new(0),
            pod_watches: AtomicUsize::new(0),
            open_watches: AtomicUsize::new(0),
            gone: tokio::sync::watch::channel(false).0,
            selectors: Default::default(),
            events: tokio::sync::broadcast::channel(16).0,
            auth_configmap: Default::default(),
            tokens: Default::default(),
            rbac: std::sync::Mutex::new(Rbac::with_manifests(false)),
            adapter_account: std::sync::Mutex::new((
                "monitoring".into(),
                "prom-metrics-adapter".into(),
            )),
            refused: Default::default(),
            secrets: Default::default(),
            api_services: Default::default(),
            resource_version: AtomicUsize::new(1000),
            token_reviews: AtomicUsize::new(0),
            access_reviews: Default::default(),
            more_pods: Default::default(),
        }
    }
}

/// The metadata of a fake pod, as the API server writes it.
pub fn pod_metadata(ns: &str, name: &str, labels: &[(&str, &str)]) -> Value {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    json!({"name": name, "namespace": ns, "uid": format!("uid-{name}"),
        "resourceVersion": "100", "creationTimestamp": "2026-11-01T00:00:00Z", "labels": labels,
        "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-01T00:00:00Z"},
        "managedFields": [{"manager": "kubelet", "operation": "Update", "apiVersion": "v1"}]})
}

/// A running fake API server.
pub struct FakeKube {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Knobs and counters.
    pub state: Arc<FakeState>,
    /// A kubeconfig file pointing at the fake.
    pub kubeconfig: tempfile::NamedTempFile,
}

fn wants_aggregated(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("g=apidiscovery.k8s.io"))
}

fn json_response(v: Value, content_type: &str) -> Response {
    (
        [(header::CONTENT_TYPE, content_type.to_string())],
        v.to_string(),
    )
        .into_response()
}

const AGGREGATED_CT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

fn resource(
    plural: &str,
    group: &str,
    kind: &str,
    scope: &str,
    singular: &str,
    short: &[&str],
) -> Value {
    json!({"resource": plural, "responseKind": {"group": group, "version": "v1", "kind": kind},
           "scope": scope, "singularResource": singular, "verbs": ["get", "list", "watch"], "shortNames": short})
}

async fn api(State(st): State<Arc<FakeState>>, headers: HeaderMap) -> Response {
    if wants_aggregated(&headers) {
        if st.no_aggregated.load(Ordering::SeqCst) {
            return (StatusCode::NOT_ACCEPTABLE, "").into_response();
        }
        return json_response(
            json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
            "items": [{"metadata": {"creationTimestamp": null}, "versions": [{"version": "v1", "freshness": "Current", "resources": [
                resource("pods", "", "Pod", "Namespaced", "pod", &["po"]),
                resource("nodes", "", "Node", "Cluster", "node", &["no"]),
                resource("namespaces", "", "Namespace", "Cluster", "namespace", &["ns"]),
                resource("services", "", "Service", "Namespaced", "service", &["svc"]),
            ]}]}]}),
            AGGREGATED_CT,
        );
    }
    json_response(
        json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.1:6443"}]}),
        "application/json",
    )
}

async fn apis(State(st): State<Arc<FakeState>>, headers: HeaderMap) -> Response {
    if wants_aggregated(&headers) {
        if st.no_aggregated.load(Ordering::SeqCst) {
            return (StatusCode::NOT_ACCEPTABLE, "").into_response();
        }
        return json_response(
            json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
            "items": [
                {"metadata": {"name": "apps", "creationTimestamp": null}, "versions": [{"version": "v1", "freshness": "Current", "resources": [
                    resource("deployments", "apps", "Deployment", "Namespaced", "deployment", &["deploy"])]}]},
                {"metadata": {"name": "custom.metrics.k8s.io", "creationTimestamp": null}, "versions": [{"version": "v1beta2", "freshness": "Stale"}]}
            ]}),
            AGGREGATED_CT,
        );
    }
    json_response(
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}], "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}},
            {"name": "custom.metrics.k8s.io", "versions": [{"groupVersion": "custom.metrics.k8s.io/v1beta2", "version": "v1beta2"}],
             "preferredVersion": {"groupVersion": "custom.metrics.k8s.io/v1beta2", "version": "v1beta2"}}
        ]}),
        "application/json",
    )
}

fn legacy_resource(name: &str, singular: &str, kind: &str, namespaced: bool) -> Value {
    json!({"name": name, "singularName": singular, "namespaced": namespaced, "kind": kind,
           "verbs": ["get", "list", "watch"]})
}

async fn api_v1() -> Response {
    json_response(
        json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            legacy_resource("pods", "pod", "Pod", true),
            legacy_resource("pods/status", "", "Pod", true),
            legacy_resource("nodes", "node", "Node", false),
            legacy_resource("namespaces", "namespace", "Namespace", false),
            legacy_resource("services", "service", "Service", true),
        ]}),
        "application/json",
    )
}

async fn apps_v1() -> Response {
    json_response(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": [
            legacy_resource("deployments", "deployment", "Deployment", true),
        ]}),
        "application/json",
    )
}

/// An aggregated API that is down answers 503, as the aggregator does.
async fn unavailable_group() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "service unavailable", "reason": "ServiceUnavailable", "code": 503})
        .to_string(),
    )
        .into_response()
}

async fn list_namespaced_pods(
    st: State<Arc<FakeState>>,
    Path(ns): Path<String>,
    q: Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    list_pods(st, Some(ns), q, headers).await
}

async fn list_all_pods(
    st: State<Arc<FakeState>>,
    q: Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    list_pods(st, None, q, headers).await
}

/// A watch stays open and sends whatever the test pushes into `events`.
fn watch_pods(st: &Arc<FakeState>) -> Response {
    st.pod_watches.fetch_add(1, Ordering::SeqCst);
    st.open_watches.fetch_add(1, Ordering::SeqCst);
    /// Counts the watch as closed when its stream is dropped (the client went away).
    struct Open(Arc<FakeState>);
    impl Drop for Open {
        fn drop(&mut self) {
            self.0.open_watches.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let state = (st.events.subscribe(), st.gone.subscribe(), Open(st.clone()));
    let stream = futures_util::stream::unfold(state, |(mut rx, mut gone, open)| async move {
        loop {
            let event = tokio::select! {
                event = rx.recv() => event,
                _ = gone.wait_for(|g| *g) => return None,
            };
            match event {
                Ok(line) => {
                    return Some((
                        Ok::<_, std::io::Error>(format!("{line}\n")),
                        (rx, gone, open),
                    ));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

async fn list_pods(
    State(st): State<Arc<FakeState>>,
    ns: Option<String>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        return watch_pods(&st);
    }
    let raw = q.get("labelSelector").cloned().unwrap_or_default();
    if ns.is_some() {
        st.pod_lists.fetch_add(1, Ordering::SeqCst);
        st.selectors.lock().unwrap().push(raw.clone());
    } else {
        st.cluster_pod_lists.fetch_add(1, Ordering::SeqCst);
    }
    let Ok(selector) = Selector::parse(&raw) else {
        return (StatusCode::BAD_REQUEST, "bad selector").into_response();
    };
    let metadata_only = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=PartialObjectMetadataList"));
    let more = st.more_pods.lock().unwrap().clone();
    let pods = PODS
        .iter()
        .map(|(ns, name, labels)| (*ns, *name, labels.to_vec()))
        .chain(more.iter().map(|(ns, name, labels)| {
            (
                ns.as_str(),
                name.as_str(),
                labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
            )
        }));
    let items: Vec<Value> = pods
        .filter(|(pns, _, _)| ns.as_deref().is_none_or(|ns| ns == *pns))
        .filter(|(_, _, labels)| {
            let map: BTreeMap<String, String> =
                labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            selector.matches(&map)
        })
        .map(|(pns, name, labels)| {
            let meta = pod_metadata(pns, name, &labels);
            if metadata_only {
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta})
            } else {
                json!({"metadata": meta, "spec": {"containers": [{"name": "app", "image": "x"}]}, "status": {"phase": "Running"}})
            }
        })
        .collect();
    if metadata_only {
        json_response(
            json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": "100"}, "items": items}),
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        )
    } else {
        json_response(
            json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "100"}, "items": items}),
            "application/json",
        )
    }
}

async fn list_nodes(
    State(st): State<Arc<FakeState>>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        return watch_pods(&st);
    }
    let metadata_only = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=PartialObjectMetadataList"));
    let selector = Selector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))
        .unwrap_or_default();
    let items: Vec<Value> = [("node-a", "amd64"), ("node-b", "arm64")]
        .iter()
        .filter(|(_, arch)| selector.matches(&BTreeMap::from([("kubernetes.io/arch".to_string(), arch.to_string())])))
        .map(|(name, arch)| {
            let meta = json!({"name": name, "uid": format!("uid-{name}"), "resourceVersion": "7",
                "creationTimestamp": "2026-11-01T00:00:00Z", "labels": {"kubernetes.io/arch": arch}});
            if metadata_only {
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta})
            } else {
                json!({"metadata": meta})
            }
        })
        .collect();
    json_response(
        json!({"kind": if metadata_only { "PartialObjectMetadataList" } else { "NodeList" },
               "apiVersion": if metadata_only { "meta.k8s.io/v1" } else { "v1" },
               "metadata": {"resourceVersion": "7"}, "items": items}),
        "application/json",
    )
}

async fn auth_configmap(State(st): State<Arc<FakeState>>) -> Response {
    match st.auth_configmap.lock().unwrap().clone() {
        Some(data) => json_response(
            json!({"kind": "ConfigMap", "apiVersion": "v1",
                   "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system",
                                "uid": "cm-uid", "resourceVersion": "42", "creationTimestamp": "2026-11-01T00:00:00Z"},
                   "data": data}),
            "application/json",
        ),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "configmaps \"extension-apiserver-authentication\" not found",
                   "reason": "NotFound", "details": {"name": "extension-apiserver-authentication", "kind": "configmaps"}, "code": 404})
            .to_string(),
        )
            .into_response(),
    }
}

async fn token_review(State(st): State<Arc<FakeState>>, body: String) -> Response {
    st.token_reviews.fetch_add(1, Ordering::SeqCst);
    let req: Value = serde_json::from_str(&body).unwrap_or_default();
    let token = req["spec"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let status = match review_token(&st, &token) {
        Some((user, groups)) => {
            json!({"authenticated": true, "user": {"username": user, "uid": format!("uid-{user}"), "groups": groups}, "audiences": ["https://kubernetes.default.svc"]})
        }
        None => json!({"user": {}, "error": "[invalid bearer token, token lookup failed]"}),
    };
    let mut out = req.clone();
    out["status"] = status;
    out["metadata"] = json!({"creationTimestamp": null});
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        out.to_string(),
    )
        .into_response()
}

async fn subject_access_review(State(st): State<Arc<FakeState>>, body: String) -> Response {
    let req: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    st.access_reviews.lock().unwrap().push(req["spec"].clone());
    let spec: SubjectAccessReviewSpec = match serde_json::from_value(req["spec"].clone()) {
        Ok(s) => s,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let decision = st.rbac.lock().unwrap().decide(&spec);
    let mut out = req.clone();
    out["status"] = if decision.allowed {
        json!({"allowed": true, "reason": decision.reason})
    } else {
        json!({"allowed": false})
    };
    out["metadata"] = json!({"creationTimestamp": null});
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        out.to_string(),
    )
        .into_response()
}

fn not_found(kind: &str, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{kind} \"{name}\" not found"),
    )
}

impl FakeState {
    fn next_version(&self) -> String {
        (self.resource_version.fetch_add(1, Ordering::SeqCst) + 1).to_string()
    }
}

async fn create_secret(
    State(st): State<Arc<FakeState>>,
    Path(ns): Path<String>,
    body: String,
) -> Response {
    let Ok(mut secret) = serde_json::from_str::<Value>(&body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON".into());
    };
    let name = secret["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut secrets = st.secrets.lock().unwrap();
    if secrets.contains_key(&(ns.clone(), name.clone())) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("secrets \"{name}\" already exists"),
        );
    }
    secret["metadata"]["namespace"] = json!(ns);
    secret["metadata"]["resourceVersion"] = json!(st.next_version());
    secret["metadata"]["uid"] = json!(format!("uid-secret-{name}"));
    secrets.insert((ns, name), secret.clone());
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        secret.to_string(),
    )
        .into_response()
}

async fn get_secret(
    State(st): State<Arc<FakeState>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match st.secrets.lock().unwrap().get(&(ns, name.clone())) {
        Some(s) => json_response(s.clone(), "application/json"),
        None => not_found("secrets", &name),
    }
}

/// A PUT: refused with 409 unless it carries the stored resourceVersion, as the API server's
/// optimistic concurrency does.
async fn replace_secret(
    State(st): State<Arc<FakeState>>,
    Path((ns, name)): Path<(String, String)>,
    body: String,
) -> Response {
    let Ok(mut secret) = serde_json::from_str::<Value>(&body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON".into());
    };
    let mut secrets = st.secrets.lock().unwrap();
    let Some(stored) = secrets.get(&(ns.clone(), name.clone())) else {
        return not_found("secrets", &name);
    };
    if secret["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"] {
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on secrets \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        );
    }
    secret["metadata"]["resourceVersion"] = json!(st.next_version());
    secret["metadata"]["uid"] = stored["metadata"]["uid"].clone();
    secrets.insert((ns, name), secret.clone());
    json_response(secret, "application/json")
}

async fn get_api_service(State(st): State<Arc<FakeState>>, Path(name): Path<String>) -> Response {
    match st.api_services.lock().unwrap().get(&name) {
        Some(a) => json_response(a.clone(), "application/json"),
        None => not_found("apiservices.apiregistration.k8s.io", &name),
    }
}

/// RFC 7386 JSON merge patch: objects merge key by key, `null` removes, anything else
/// replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let map = target.as_object_mut().unwrap();
    for (k, v) in patch {
        if v.is_null() {
            map.remove(k);
        } else {
            merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

async fn patch_api_service(
    State(st): State<Arc<FakeState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type != "application/merge-patch+json" {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the fake only takes merge patches, not {content_type:?}"),
        );
    }
    let Ok(patch) = serde_json::from_str::<Value>(&body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON".into());
    };
    let mut services = st.api_services.lock().unwrap();
    let Some(stored) = services.get_mut(&name) else {
        return not_found("apiservices.apiregistration.k8s.io", &name);
    };
    merge_patch(stored, &patch);
    // As the API server validates an APIService.
    if stored["spec"]["insecureSkipTLSVerify"] == true && stored["spec"].get("caBundle").is_some() {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "spec.insecureSkipTLSVerify: Invalid value: true: may not be true if caBundle is present".into(),
        );
    }
    stored["metadata"]["resourceVersion"] = json!(st.next_version());
    json_response(stored.clone(), "application/json")
}

/// The token in the kubeconfig the fake writes for the adapter.
const ADAPTER_TOKEN: &str = "test-token";

/// Who a bearer token is: the adapter's service account for its kubeconfig's token, else what
/// a test registered in `tokens`.
fn review_token(st: &FakeState, token: &str) -> Option<(String, Vec<String>)> {
    if token == ADAPTER_TOKEN {
        let (ns, name) = st.adapter_account.lock().unwrap().clone();
        return Some((
            format!("system:serviceaccount:{ns}:{name}"),
            vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
        ));
    }
    st.tokens.lock().unwrap().get(token).cloned()
}

/// The attributes kube-apiserver's RequestInfo derives from a request to the fake: a path
/// under `/api/v1` or `/apis/<group>/<version>` naming a resource is a resource request (verb
/// from the method, `list`/`watch` without a name); anything else, discovery included, is a
/// non-resource request.
fn request_attributes(method: &axum::http::Method, uri: &axum::http::Uri) -> Value {
    let segs: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => ("", &[][..]),
    };
    if rest.is_empty() {
        return json!({"nonResourceAttributes": {"path": uri.path(), "verb": method.as_str().to_lowercase()}});
    }
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (*ns, rest),
        _ => ("", rest),
    };
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let name = rest.get(1).copied().unwrap_or_default();
    let verb = match (method.as_str(), name.is_empty(), watch) {
        ("POST", _, _) => "create",
        ("PUT", _, _) => "update",
        ("PATCH", _, _) => "patch",
        ("DELETE", _, _) => "delete",
        (_, _, true) => "watch",
        (_, true, _) => "list",
        _ => "get",
    };
    json!({"resourceAttributes": {"group": group, "resource": rest[0], "name": name,
        "subresource": rest.get(2).copied().unwrap_or_default(), "namespace": namespace, "verb": verb}})
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code.as_u16()})
        .to_string(),
    )
        .into_response()
}

/// Authenticates the caller by its bearer token and authorizes the request with RBAC, as
/// kube-apiserver does for the adapter's own calls (discovery, lists and watches, the
/// authentication ConfigMap, TokenReviews and SubjectAccessReviews).
async fn authorize_caller(
    State(st): State<Arc<FakeState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    if *st.gone.borrow() {
        return status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the API server is unavailable".into(),
        );
    }
    let Some((user, groups)) = review_token(&st, &token) else {
        return status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized".into(),
        );
    };
    let mut spec = request_attributes(req.method(), req.uri());
    spec["user"] = json!(user);
    spec["groups"] = json!(groups);
    let spec: SubjectAccessReviewSpec = serde_json::from_value(spec).unwrap();
    if st.rbac.lock().unwrap().decide(&spec).allowed {
        return next.run(req).await;
    }
    let what = match (&spec.resource_attributes, &spec.non_resource_attributes) {
        (Some(r), _) => format!(
            "{} {}/{} {:?} in namespace {:?}",
            r.verb.clone().unwrap_or_default(),
            r.group.clone().unwrap_or_default(),
            r.resource.clone().unwrap_or_default(),
            r.name.clone().unwrap_or_default(),
            r.namespace.clone().unwrap_or_default()
        ),
        (_, Some(n)) => format!(
            "{} {}",
            n.verb.clone().unwrap_or_default(),
            n.path.clone().unwrap_or_default()
        ),
        _ => String::new(),
    };
    st.refused.lock().unwrap().push(what.clone());
    status(
        StatusCode::FORBIDDEN,
        "Forbidden",
        format!("User \"{user}\" cannot {what}"),
    )
}

impl FakeKube {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> FakeKube {
        let state = Arc::new(FakeState::default());
        let app = Router::new()
            .route("/api", get(api))
            .route("/apis", get(apis))
            .route("/api/v1", get(api_v1))
            .route("/apis/apps/v1", get(apps_v1))
            .route(
                "/apis/custom.metrics.k8s.io/v1beta2",
                get(unavailable_group),
            )
            .route("/api/v1/namespaces/{ns}/pods", get(list_namespaced_pods))
            .route("/api/v1/pods", get(list_all_pods))
            .route("/api/v1/nodes", get(list_nodes))
            .route(
                "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication",
                get(auth_configmap),
            )
            .route(
                "/api/v1/namespaces/{ns}/secrets",
                axum::routing::post(create_secret),
            )
            .route(
                "/api/v1/namespaces/{ns}/secrets/{name}",
                get(get_secret).put(replace_secret),
            )
            .route(
                "/apis/apiregistration.k8s.io/v1/apiservices/{name}",
                get(get_api_service).patch(patch_api_service),
            )
            .route(
                "/apis/authentication.k8s.io/v1/tokenreviews",
                axum::routing::post(token_review),
            )
            .route(
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                axum::routing::post(subject_access_review),
            )
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                authorize_caller,
            ))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut kubeconfig = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(
            &mut kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\nusers:\n- name: fake\n  user:\n    token: test-token\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\n"
            )
            .as_bytes(),
        )
        .unwrap();
        FakeKube {
            url,
            state,
            kubeconfig,
        }
    }

    /// The API server goes away: every request answers 503 from now on, and open watches end.
    pub fn go_away(&self) {
        self.state.gone.send_replace(true);
    }

    /// Registers the APIServices of a YAML stream (the manifests' or the chart's).
    pub fn register_api_services(&self, yaml: &str) {
        let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap();
        let mut services = self.state.api_services.lock().unwrap();
        for mut doc in docs.into_iter().filter(|d| d["kind"] == "APIService") {
            let name = doc["metadata"]["name"].as_str().unwrap().to_string();
            doc["metadata"]["resourceVersion"] = json!("1");
            services.insert(name, doc);
        }
    }

    /// Each registered APIService's `caBundle`, decoded (`None`: no bundle).
    pub fn api_service_bundles(&self) -> BTreeMap<String, Option<String>> {
        self.state
            .api_services
            .lock()
            .unwrap()
            .iter()
            .map(|(name, a)| {
                let bundle = a["spec"].get("caBundle").map(|b| {
                    let bytes: k8s_openapi::ByteString = serde_json::from_value(b.clone()).unwrap();
                    String::from_utf8(bytes.0).unwrap()
                });
                (name.clone(), bundle)
            })
            .collect()
    }

    /// Sends a watch event about a pod to every open pod watch.
    pub fn pod_event(&self, kind: &str, ns: &str, name: &str, labels: &[(&str, &str)]) {
        let line = json!({"type": kind, "object": {"kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1", "metadata": pod_metadata(ns, name, labels)}});
        let _ = self.state.events.send(line.to_string());
    }

    /// `--lister-kubeconfig=…` for the adapter.
    pub fn flag(&self) -> String {
        format!("--lister-kubeconfig={}", self.kubeconfig.path().display())
    }
}
