//! The HTTP API: discovery documents, the metrics endpoints and health, as an axum router.
//!
//! Handlers read immutable snapshots (config, registry, resource mapper) through `ArcSwap`, so a
//! relist or a reload never blocks a request. Authentication and authorization wrap this router
//! as layers in [`crate::server`]; nothing here knows who is asking.

pub mod custom;
pub mod error;
pub mod external;
pub mod openapi;
pub mod request;
pub mod resource;
pub mod types;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::discovery::Registry;
use crate::query::PrometheusClient;
use crate::query::objects::ObjectLister;
use crate::rules::{CompiledConfig, RestMapper};
use error::ApiError;
use types::{ApiGroup, ApiGroupList, ApiResource, ApiResourceList, GroupVersion};

/// Everything the handlers share.
pub struct AppState {
    /// The compiled config.
    pub config: Arc<ArcSwap<CompiledConfig>>,
    /// The latest registry.
    pub registry: Arc<ArcSwap<Registry>>,
    /// The latest resource mapper.
    pub mapper: Arc<ArcSwap<RestMapper>>,
    /// The Prometheus client.
    pub prometheus: PrometheusClient,
    /// Where `*` object lists come from.
    pub objects: ObjectLister,
    /// Set once the first discovery attempt has finished.
    pub ready: AtomicBool,
}

/// Current time as Unix seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// RFC 3339 with second precision, as `metav1.Time` serialises.
pub fn format_timestamp(unix_seconds: f64) -> String {
    let secs = unix_seconds.floor() as i64;
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn group_doc(name: &str, versions: &[&str], preferred: &str, standalone: bool) -> ApiGroup {
    let gv = |v: &str| GroupVersion {
        group_version: format!("{name}/{v}"),
        version: v.to_string(),
    };
    ApiGroup {
        kind: standalone.then_some("APIGroup"),
        api_version: standalone.then_some("v1"),
        name: name.to_string(),
        versions: versions.iter().map(|v| gv(v)).collect(),
        preferred_version: gv(preferred),
    }
}

fn served_groups(config: &CompiledConfig, standalone_docs: bool) -> Vec<ApiGroup> {
    let mut groups = Vec::new();
    if !config.rules.is_empty() {
        groups.push(group_doc(
            custom::GROUP,
            custom::VERSIONS,
            "v1beta1",
            standalone_docs,
        ));
    }
    if !config.external_rules.is_empty() {
        groups.push(group_doc(
            external::GROUP,
            &[external::VERSION],
            external::VERSION,
            standalone_docs,
        ));
    }
    groups
}

async fn api_group_list(State(app): State<Arc<AppState>>) -> Json<ApiGroupList> {
    Json(ApiGroupList {
        kind: "APIGroupList",
        api_version: "v1",
        groups: served_groups(&app.config.load(), false),
    })
}

fn not_served(what: &str) -> ApiError {
    ApiError::NotFound(format!(
        "the server could not find the requested resource ({what} is not served: the config has no rules for it)"
    ))
}

async fn custom_group(State(app): State<Arc<AppState>>) -> Result<Json<ApiGroup>, ApiError> {
    served_groups(&app.config.load(), true)
        .into_iter()
        .find(|g| g.name == custom::GROUP)
        .map(Json)
        .ok_or_else(|| not_served(custom::GROUP))
}

async fn external_group(State(app): State<Arc<AppState>>) -> Result<Json<ApiGroup>, ApiError> {
    served_groups(&app.config.load(), true)
        .into_iter()
        .find(|g| g.name == external::GROUP)
        .map(Json)
        .ok_or_else(|| not_served(external::GROUP))
}

async fn custom_resources(
    State(app): State<Arc<AppState>>,
    axum::extract::Path(version): axum::extract::Path<String>,
) -> Result<Json<ApiResourceList>, ApiError> {
    if app.config.load().rules.is_empty() {
        return Err(not_served(custom::GROUP));
    }
    if !custom::VERSIONS.contains(&version.as_str()) {
        return Err(ApiError::NotFound(format!(
            "the server could not find the requested resource (version {version:?} of {} is not served)",
            custom::GROUP
        )));
    }
    let registry = app.registry.load();
    let resources = registry
        .custom_keys()
        .iter()
        .map(|k| ApiResource {
            name: format!("{}/{}", k.resource, k.metric),
            singular_name: String::new(),
            namespaced: k.namespaced,
            kind: "MetricValueList",
            verbs: vec!["get"],
        })
        .collect();
    Ok(Json(ApiResourceList {
        kind: "APIResourceList",
        api_version: "v1",
        group_version: format!("{}/{version}", custom::GROUP),
        resources,
    }))
}

async fn external_resources(
    State(app): State<Arc<AppState>>,
) -> Result<Json<ApiResourceList>, ApiError> {
    if app.config.load().external_rules.is_empty() {
        return Err(not_served(external::GROUP));
    }
    let registry = app.registry.load();
    let resources = registry
        .external_names()
        .iter()
        .map(|name| ApiResource {
            name: name.clone(),
            singular_name: String::new(),
            namespaced: true,
            kind: "ExternalMetricValueList",
            verbs: vec!["get"],
        })
        .collect();
    Ok(Json(ApiResourceList {
        kind: "APIResourceList",
        api_version: "v1",
        group_version: format!("{}/{}", external::GROUP, external::VERSION),
        resources,
    }))
}

async fn custom_guarded(
    state: State<Arc<AppState>>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    if state.config.load().rules.is_empty() {
        return Err(not_served(custom::GROUP));
    }
    custom::get_object_metric(state, uri).await
}

async fn external_guarded(
    state: State<Arc<AppState>>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    if state.config.load().external_rules.is_empty() {
        return Err(not_served(external::GROUP));
    }
    external::get_external_metric(state, uri).await
}

async fn resource_group(State(app): State<Arc<AppState>>) -> Result<Json<ApiGroup>, ApiError> {
    served_groups(&app.config.load(), true)
        .into_iter()
        .find(|g| g.name == resource::GROUP)
        .map(Json)
        .ok_or_else(|| not_served(resource::GROUP))
}

async fn resource_resources(
    State(app): State<Arc<AppState>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if app.config.load().resource_rules.is_none() {
        return Err(not_served(resource::GROUP));
    }
    Ok(Json(resource::resource_list()))
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    if app.ready.load(Ordering::Acquire) {
        "ok".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "discovery has not finished its first attempt\n",
        )
            .into_response()
    }
}

async fn version() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "major": "1",
        "minor": "0",
        "gitVersion": concat!("v", env!("CARGO_PKG_VERSION")),
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    }))
}

async fn metrics() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::telemetry::metrics().encode(),
    )
        .into_response()
}

async fn openapi_v2(State(app): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(openapi::v2(&app.config.load()))
}

async fn openapi_v3(State(app): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(openapi::v3_index(&app.config.load()))
}

async fn openapi_v3_gv(
    State(app): State<Arc<AppState>>,
    axum::extract::Path((group, version)): axum::extract::Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    openapi::v3_group_version(&app.config.load(), &group, &version)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no OpenAPI document for {group}/{version}")))
}

async fn fallback(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!(
        "the server could not find the requested resource {}",
        uri.path()
    ))
}

/// The router with every API path. Methods other than GET answer 405.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/apis", get(api_group_list))
        .route("/apis/custom.metrics.k8s.io", get(custom_group))
        .route(
            "/apis/custom.metrics.k8s.io/{version}",
            get(custom_resources),
        )
        .route(
            "/apis/custom.metrics.k8s.io/{version}/{*rest}",
            get(custom_guarded),
        )
        .route("/apis/external.metrics.k8s.io", get(external_group))
        .route(
            "/apis/external.metrics.k8s.io/v1beta1",
            get(external_resources),
        )
        .route(
            "/apis/external.metrics.k8s.io/{version}/{*rest}",
            get(external_guarded),
        )
        .route("/apis/metrics.k8s.io", get(resource_group))
        .route("/apis/metrics.k8s.io/v1beta1", get(resource_resources))
        .route(
            "/apis/metrics.k8s.io/{version}/{*rest}",
            get(resource::get_resource_metrics),
        )
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .route("/openapi/v2", get(openapi_v2))
        .route("/openapi/v3", get(openapi_v3))
        .route("/openapi/v3/apis/{group}/{version}", get(openapi_v3_gv))
        .fallback(fallback)
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_seconds() {
        assert_eq!(format_timestamp(1715882400.75), "2024-05-16T18:00:00Z");
        assert_eq!(format_timestamp(0.0), "1970-01-01T00:00:00Z");
    }
}
