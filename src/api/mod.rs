//! The HTTP API: discovery documents, the metrics endpoints and health, as an axum router.
//!
//! Handlers read immutable snapshots (config, registry, resource mapper) through `ArcSwap`, so a
//! relist or a reload never blocks a request. Authentication and authorization wrap this router
//! as layers in [`crate::server`]; nothing here knows who is asking.

pub mod custom;
pub mod discovery;
pub mod error;
pub mod external;
pub mod fallback;
pub mod openapi;
pub mod profiling;
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
use crate::query::objects::ObjectLister;
use crate::query::shared::SharedQueries;
use crate::rules::{CompiledConfig, RestMapper};
use discovery::not_served;
use error::ApiError;

/// Everything the handlers share.
pub struct AppState {
    /// The compiled config.
    pub config: Arc<ArcSwap<CompiledConfig>>,
    /// The latest registry.
    pub registry: Arc<ArcSwap<Registry>>,
    /// The latest resource mapper.
    pub mapper: Arc<ArcSwap<RestMapper>>,
    /// The backend, shared between requests (single-flight, reuse, last known good).
    pub queries: Arc<SharedQueries>,
    /// Where `*` object lists come from.
    pub objects: ObjectLister,
    /// Looks for metrics the registry does not know yet; `None` where nothing relists.
    pub lookups: Option<Arc<crate::discovery::lookup::Lookups>>,
    /// Where external metric names nothing of ours serves are forwarded.
    pub fallback: Option<Arc<fallback::ExternalFallback>>,
    /// Set once the first discovery attempt has finished.
    pub ready: AtomicBool,
    /// Set when shutdown begins: `/readyz` fails so endpoints and the aggregator move away.
    pub draining: Arc<AtomicBool>,
    /// The longest CPU profile `/debug/pprof/profile` takes; `None` when `--profiling=false`.
    pub profiling: Option<std::time::Duration>,
}

/// Runs `query` on `rule`'s backend through the shared coalescers; a stale answer is counted
/// against the rule. Errors are the 500 both metric APIs answer, naming the query.
pub async fn query_for_rule(
    app: &AppState,
    rule: &crate::rules::CompiledRule,
    query: &str,
) -> Result<Arc<crate::query::QueryResult>, ApiError> {
    let (answer, freshness) = app
        .queries
        .backend(rule.backend.as_ref())
        .map_err(|e| ApiError::Internal(format!("unable to fetch metrics: {e}")))?
        .query(query)
        .await
        .map_err(|e| {
            ApiError::Internal(format!("unable to fetch metrics: {e} (query: {query})"))
        })?;
    if let crate::query::shared::Freshness::Stale(age) = freshness {
        crate::telemetry::metrics().stale_answer(&rule.label(), age);
    }
    Ok(answer)
}

/// The 503 for a metric name a rule of ours could produce while that rule has never been
/// listed and its backend does not answer: not "not found", which would be a guess.
pub fn not_listed_yet(metric: &str, error: &str) -> ApiError {
    ApiError::Unavailable(format!(
        "unable to tell whether the metric {metric} exists: a rule that could serve it has not been listed yet, and looking for it failed: {error}"
    ))
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
    if !state.config.load().serves_external() {
        return Err(not_served(external::GROUP));
    }
    external::get_external_metric(state, uri).await
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    if app.draining.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
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
        .route("/apis", get(discovery::apis))
        .route("/apis/{group}", get(discovery::group))
        .route(
            "/apis/{group}/{version}",
            get(discovery::group_version_resources),
        )
        .route(
            "/apis/custom.metrics.k8s.io/{version}/{*rest}",
            get(custom_guarded),
        )
        .route(
            "/apis/external.metrics.k8s.io/{version}/{*rest}",
            get(external_guarded),
        )
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
        .route("/debug/pprof/profile", get(profiling::profile))
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
