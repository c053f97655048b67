//! A small stand-in for KEDA's metrics apiserver (`keda-operator-metrics-apiserver`), faithful
//! to its answer shapes: HTTPS with its own certificate, callers authenticated by bearer token,
//! an `APIResourceList` holding KEDA's single placeholder resource `externalmetrics`, metric
//! values found by the `scaledobject.keda.sh/name` label selector, and a 500 `Status` when no
//! ScaledObject matches.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::common::secure::Ca;

/// What the fake holds and saw.
#[derive(Default)]
pub struct KedaState {
    /// The token it accepts.
    pub token: String,
    /// (namespace, ScaledObject, metric) → value.
    pub values: BTreeMap<(String, String, String), String>,
    /// Path and query of every metric request, with the `Authorization` header.
    pub seen: Vec<(String, String)>,
    /// Metric names answered with a body of this many bytes of padding (a misbehaving server).
    pub oversized: BTreeMap<String, usize>,
}

/// A running fake.
pub struct Keda {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The CA of its serving certificate, PEM.
    pub ca_pem: String,
    /// Its state.
    pub state: Arc<Mutex<KedaState>>,
    handle: axum_server::Handle<SocketAddr>,
}

impl Drop for Keda {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    (
        code,
        Json(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code.as_u16(),
        })),
    )
        .into_response()
}

fn authorized(state: &KedaState, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", state.token))
}

async fn resources(State(state): State<Arc<Mutex<KedaState>>>, headers: HeaderMap) -> Response {
    if !authorized(&state.lock().unwrap(), &headers) {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    Json(json!({
        "kind": "APIResourceList", "apiVersion": "v1",
        "groupVersion": "external.metrics.k8s.io/v1beta1",
        "resources": [{"name": "externalmetrics", "singularName": "", "namespaced": true,
                       "kind": "ExternalMetricValueList", "verbs": ["get"]}],
    }))
    .into_response()
}

async fn metric(
    State(state): State<Arc<Mutex<KedaState>>>,
    Path((namespace, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let mut state = state.lock().unwrap();
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let query = query.unwrap_or_default();
    state.seen.push((
        format!("/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{name}?{query}"),
        auth,
    ));
    if !authorized(&state, &headers) {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    if let Some(size) = state.oversized.get(&name) {
        return Json(json!({"kind": "ExternalMetricValueList", "padding": "x".repeat(*size)}))
            .into_response();
    }
    let selector = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "labelSelector")
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    let scaled_object = selector
        .split(',')
        .find_map(|kv| kv.strip_prefix("scaledobject.keda.sh/name="))
        .unwrap_or_default()
        .to_string();
    match state
        .values
        .get(&(namespace.clone(), scaled_object.clone(), name.clone()))
    {
        Some(value) => Json(json!({
            "kind": "ExternalMetricValueList", "apiVersion": "external.metrics.k8s.io/v1beta1",
            "metadata": {},
            "items": [{"metricName": name, "metricLabels": null,
                       "timestamp": "2026-11-30T12:00:00Z", "value": value}],
        }))
        .into_response(),
        None => status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            &format!(
                "Internal error occurred: unable to get external metric {namespace}/{name}/&LabelSelector{{MatchLabels:map[string]string{{scaledobject.keda.sh/name: {scaled_object},}},MatchExpressions:[]LabelSelectorRequirement{{}},}}: no matching ScaledObject"
            ),
        ),
    }
}

/// Starts the fake on a free loopback port, accepting `token`.
pub async fn start(token: &str) -> Keda {
    let ca = Ca::new("keda-ca");
    let (cert, key) = ca.server();
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(cert.into_bytes(), key.into_bytes())
        .await
        .unwrap();
    let state = Arc::new(Mutex::new(KedaState {
        token: token.to_string(),
        ..Default::default()
    }));
    let app = Router::new()
        .route("/apis/external.metrics.k8s.io/v1beta1", get(resources))
        .route(
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{name}",
            get(metric),
        )
        .with_state(state.clone());
    let handle = axum_server::Handle::<SocketAddr>::new();
    let server =
        axum_server::bind_rustls(SocketAddr::from(([127, 0, 0, 1], 0)), tls).handle(handle.clone());
    tokio::spawn(server.serve(app.into_make_service()));
    let addr = handle.listening().await.expect("the fake KEDA listens");
    Keda {
        url: format!("https://127.0.0.1:{}", addr.port()),
        ca_pem: ca.pem,
        state,
        handle,
    }
}
