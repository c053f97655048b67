//! `external.metrics.k8s.io/v1beta1`: metrics not attached to any Kubernetes object.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::request::{check_metric_name, check_namespace, parse_params, segments};
use super::types::{ExternalMetricValue, List, ListMeta};
use super::{AppState, format_timestamp, unix_now};
use crate::discovery::lookup::Outcome;
use crate::query::QueryResult;
use crate::query::values::{keep_namespace, to_quantity};
use crate::rules::query::{QueryBuildError, render_external};
use crate::rules::schedule::Schedule;

/// The API group.
pub const GROUP: &str = "external.metrics.k8s.io";
/// The served version.
pub const VERSION: &str = "v1beta1";

/// `GET /apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}`.
pub async fn get_external_metric(
    State(app): State<Arc<AppState>>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let segs = segments(uri.path())?;
    let (namespace, metric) = match segs.get(2..).unwrap_or_default() {
        [version, ..] if version != VERSION => {
            return Err(ApiError::NotFound(format!(
                "the server could not find the requested resource (version {version:?} of {GROUP} is not served)"
            )));
        }
        [_, ns_kw, ns, metric] if ns_kw == "namespaces" => (ns.to_string(), metric.to_string()),
        _ => return Err(ApiError::BadRequest("invalid request path".into())),
    };
    check_namespace(&namespace)?;
    check_metric_name(&metric)?;
    let params = parse_params(uri.query())?;
    if let Some(schedule) = app.config.load().schedule(&metric, &namespace) {
        return schedule_answer(schedule, &metric);
    }

    let mut registry = app.registry.load_full();
    if registry.external(&metric).is_none() {
        // A name the fallback lists is forwarded without looking for it in our backends: its
        // HPAs ask every 15 s and each look would cost a listing.
        let theirs = app.fallback.as_ref().is_some_and(|f| f.serves(&metric));
        let mut looked = Outcome::NotFound;
        if !theirs && let Some(lookups) = &app.lookups {
            looked = lookups.external(&metric, &namespace).await;
            // Whatever this request's lookup said: one another request finished in the
            // meantime may have published it.
            registry = app.registry.load_full();
        }
        if registry.external(&metric).is_none() {
            if let Outcome::Failed(error) = looked {
                // A rule of ours that could produce the name has never been listed and its
                // backend does not answer (at start-up with Prometheus down, say): forwarding
                // would hand one of our own metrics to the other server's "not found".
                return Err(super::not_listed_yet(&metric, &error));
            }
            if let Some(fallback) = &app.fallback {
                // Nothing of ours serves the name: the other server's answer, as it gives it.
                let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
                return fallback.forward(path).await;
            }
        }
    }
    let entry = registry.external(&metric).cloned().ok_or_else(|| {
        let base = format!("the server could not find the metric {metric} for namespaces");
        // One line, as the HPA's event shows it: what to ask for instead, when known.
        ApiError::NotFound(match registry.external_hint(&metric) {
            Some(hint) => format!("{base}: {hint}"),
            None => base,
        })
    })?;
    drop(registry);
    let rule = &entry.rule;
    if let Some(problem) = rule.problems.first() {
        return Err(ApiError::Internal(format!(
            "metric {metric} cannot be served: {problem}"
        )));
    }
    let ns_matcher = if rule.resources.namespaced() {
        let label = rule.namespace_label.as_deref().ok_or_else(|| {
            ApiError::Internal(format!(
                "{} is namespaced but maps no label to namespaces",
                rule.label()
            ))
        })?;
        Some((label, namespace.as_str()))
    } else {
        None
    };
    let query = render_external(rule, &entry.series_name, ns_matcher, &params.label_selector)
        .map_err(|e| match e {
            QueryBuildError::Selector(e) => {
                ApiError::BadRequest(format!("invalid labelSelector: {e}"))
            }
            other => ApiError::Internal(other.to_string()),
        })?;
    let answer = super::query_for_rule(&app, rule, &query).await?;
    let items = match &*answer {
        QueryResult::Vector(samples) => {
            let mut samples = samples.clone();
            if let Some((label, ns)) = ns_matcher {
                let dropped = keep_namespace(&mut samples, label, ns);
                crate::telemetry::metrics().namespace_mismatch(&rule.label(), dropped);
            }
            samples
                .into_iter()
                .map(|s| {
                    Ok(ExternalMetricValue {
                        metric_name: metric.clone(),
                        value: to_quantity(
                            s.value,
                            format_args!("a sample of {metric} (query: {query})"),
                        )
                        .map_err(ApiError::Internal)?,
                        timestamp: format_timestamp(s.timestamp),
                        metric_labels: Some(s.labels),
                        window: None,
                    })
                })
                .collect::<Result<Vec<_>, ApiError>>()?
        }
        QueryResult::Scalar(s) => vec![ExternalMetricValue {
            metric_name: metric.clone(),
            value: to_quantity(s.value, format_args!("{metric} (query: {query})"))
                .map_err(ApiError::Internal)?,
            timestamp: format_timestamp(s.timestamp),
            metric_labels: None,
            window: None,
        }],
        other => {
            return Err(ApiError::Internal(format!(
                "unable to fetch metrics: the query returned a {} instead of a vector or scalar (query: {query})",
                other.type_name()
            )));
        }
    };
    let items = if items.is_empty() && rule.empty_as_zero {
        // `emptyResult: zero`: no samples means nothing to do. The item carries the selector's
        // equality labels, so it reads like the series it stands for.
        vec![ExternalMetricValue {
            metric_name: metric.clone(),
            metric_labels: Some(params.label_selector.equality_labels()),
            timestamp: format_timestamp(unix_now()),
            window: None,
            value: "0".into(),
        }]
    } else {
        items
    };
    Ok(Json(List {
        kind: "ExternalMetricValueList",
        api_version: format!("{GROUP}/{VERSION}"),
        metadata: ListMeta {},
        items,
    })
    .into_response())
}

/// The answer for a schedule floor: one item holding the schedule's value now. The request's
/// label selector has been parsed (a malformed one is still a 400) but selects nothing: the
/// value has no labels, and the HPA sums whatever items it gets.
fn schedule_answer(schedule: &Schedule, metric: &str) -> Result<Response, ApiError> {
    let now = chrono::Utc::now();
    let state = schedule
        .state_at(now)
        .map_err(|e| ApiError::Internal(format!("metric {metric} cannot be served: {e}")))?;
    tracing::debug!(metric, rule = %schedule.label(), value = state.value, active_windows = ?state.active, "answered a schedule floor");
    Ok(Json(List {
        kind: "ExternalMetricValueList",
        api_version: format!("{GROUP}/{VERSION}"),
        metadata: ListMeta {},
        items: vec![ExternalMetricValue {
            metric_name: metric.to_string(),
            metric_labels: Some(Default::default()),
            timestamp: format_timestamp(now.timestamp() as f64),
            window: None,
            value: state.value.to_string(),
        }],
    })
    .into_response())
}
