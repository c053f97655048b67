//! Parsing and validating metrics API requests before anything reaches a template.
//!
//! Paths arrive percent-encoded (the HPA sends `*` as `%2A`), so each segment is decoded on its
//! own after splitting, which also keeps an encoded `/` inside a segment from creating a new one.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

use super::error::ApiError;
use crate::rules::selector::{Selector, is_dns1123_label, is_dns1123_subdomain};

/// The query parameters the metrics APIs read.
#[derive(Debug, Default, Clone)]
pub struct MetricsParams {
    /// Object selector (custom) or metric selector (external).
    pub label_selector: Selector,
    /// Metric label selector (custom).
    pub metric_label_selector: Selector,
    /// The raw `metricLabelSelector`, for echoing back.
    pub metric_label_selector_raw: String,
    /// `metadata.name=x` from `fieldSelector`, the only field upstream supports.
    pub field_name: Option<String>,
}

/// Reads the query string. Unknown parameters (`pretty`, `timeout`, …) are ignored, as the
/// apiserver ignores them for these resources.
pub fn parse_params(query: Option<&str>) -> Result<MetricsParams, ApiError> {
    let mut params = MetricsParams::default();
    let Some(query) = query else {
        return Ok(params);
    };
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "labelSelector" => {
                params.label_selector = Selector::parse(&value).map_err(|e| {
                    ApiError::BadRequest(format!("invalid labelSelector {value:?}: {e}"))
                })?;
            }
            "metricLabelSelector" => {
                params.metric_label_selector = Selector::parse(&value).map_err(|e| {
                    ApiError::BadRequest(format!("invalid metricLabelSelector {value:?}: {e}"))
                })?;
                params.metric_label_selector_raw = value.into_owned();
            }
            "fieldSelector" => params.field_name = parse_field_selector(&value)?,
            _ => {}
        }
    }
    Ok(params)
}

fn parse_field_selector(value: &str) -> Result<Option<String>, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let name = value
        .strip_prefix("metadata.name==")
        .or_else(|| value.strip_prefix("metadata.name="))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "invalid fieldSelector {value:?}: only metadata.name=<name> is supported"
            ))
        })?;
    if !is_dns1123_subdomain(name) {
        return Err(ApiError::BadRequest(format!(
            "invalid fieldSelector {value:?}: {name:?} is not a valid object name"
        )));
    }
    Ok(Some(name.to_string()))
}

/// Splits a path into decoded segments. Empty segments (`a//b`) and segments that decode to
/// something containing `/` are refused: the API server's authorization reads such paths
/// differently, and a request must mean the same thing to both.
pub fn segments(path: &str) -> Result<Vec<Cow<'_, str>>, ApiError> {
    path.strip_prefix('/')
        .unwrap_or(path)
        .split('/')
        .map(|s| {
            let decoded = percent_decode_str(s)
                .decode_utf8()
                .map_err(|_| ApiError::BadRequest(format!("path segment {s:?} is not UTF-8")))?;
            if decoded.is_empty() || decoded.contains('/') {
                return Err(ApiError::BadRequest(format!("invalid path segment {s:?}")));
            }
            Ok(decoded)
        })
        .collect()
}

/// Checks a namespace name (DNS-1123 label).
pub fn check_namespace(ns: &str) -> Result<(), ApiError> {
    if is_dns1123_label(ns) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "invalid namespace {ns:?}: must be a DNS-1123 label (lower-case alphanumerics and '-', at most 63 characters)"
        )))
    }
}

/// Checks an object name: `*` or a DNS-1123 subdomain.
pub fn check_object_name(name: &str) -> Result<(), ApiError> {
    if name == "*" || is_dns1123_subdomain(name) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "invalid object name {name:?}: must be * or a DNS-1123 subdomain"
        )))
    }
}

/// Checks a metric name as the HPA validates it (`IsValidPathSegmentName`).
pub fn check_metric_name(metric: &str) -> Result<(), ApiError> {
    if !crate::rules::naming::is_valid_api_metric_name(metric) {
        return Err(ApiError::BadRequest(format!(
            "invalid metric name {metric:?}: may not be empty, '.', '..', or contain '/' or '%'"
        )));
    }
    Ok(())
}

/// Checks a resource segment (`pods`, `deployments.apps`).
pub fn check_resource(resource: &str) -> Result<(), ApiError> {
    let ok = !resource.is_empty()
        && resource.len() <= 253
        && resource
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "invalid resource {resource:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_decoded_one_by_one() {
        let s = segments("/namespaces/default/pods/%2A/http_requests").unwrap();
        assert_eq!(s, ["namespaces", "default", "pods", "*", "http_requests"]);
        assert!(segments("/a%2Fb/c").is_err());
        assert!(segments("/a//b").is_err());
        assert!(segments("/a/b/").is_err());
        assert!(segments("/%FF").is_err());
    }

    #[test]
    fn params_parse_selectors_and_reject_bad_ones() {
        let p = parse_params(Some(
            "labelSelector=app%3Dweb&metricLabelSelector=method+in+(GET,POST)&pretty=true",
        ))
        .unwrap();
        assert!(!p.label_selector.is_empty());
        assert_eq!(p.metric_label_selector_raw, "method in (GET,POST)");
        let err = parse_params(Some("labelSelector=app%3D%22x")).unwrap_err();
        assert!(matches!(err, ApiError::BadRequest(_)));
        assert_eq!(
            parse_params(Some("fieldSelector=metadata.name%3Dweb-1"))
                .unwrap()
                .field_name
                .as_deref(),
            Some("web-1")
        );
        assert!(parse_params(Some("fieldSelector=status.phase%3DRunning")).is_err());
    }

    #[test]
    fn names_are_validated_with_kubernetes_grammars() {
        assert!(check_namespace("default").is_ok());
        assert!(check_namespace("Default").is_err());
        assert!(check_namespace("a\"b").is_err());
        assert!(check_object_name("*").is_ok());
        assert!(check_object_name("web-1.x").is_ok());
        assert!(check_object_name("web|1").is_err());
        assert!(check_metric_name("http_requests:rate5m").is_ok());
        assert!(check_metric_name("..").is_err());
        assert!(check_metric_name("a%b").is_err());
        assert!(check_resource("deployments.apps").is_ok());
        assert!(check_resource("pods{").is_err());
    }
}
