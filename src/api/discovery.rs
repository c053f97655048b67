//! Discovery documents: which groups, versions and resources this config serves.
//!
//! Two audiences read them. Clients that talk to us directly (kubectl against the standalone
//! server, our own tests) read the legacy documents: `APIGroupList` at `/apis`, `APIGroup` at
//! `/apis/<group>` and `APIResourceList` at `/apis/<group>/<version>`. The kube-aggregator reads
//! `/apis` as an aggregated `APIGroupDiscoveryList` (`apidiscovery.k8s.io/v2`, or `v2beta1`) when
//! its `Accept` asks for one, and revalidates it with `If-None-Match`; that is how the cluster's
//! discovery learns our groups, and through it the HPA's custom-metrics client its version. Both
//! forms are built from one list of served group versions so they cannot disagree.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::types::{
    ApiGroup, ApiGroupDiscovery, ApiGroupDiscoveryList, ApiGroupList, ApiResource,
    ApiResourceDiscovery, ApiResourceList, ApiSubresourceDiscovery, ApiVersionDiscovery,
    DiscoveryObjectMeta, GroupVersion, GroupVersionKind, ListMeta,
};
use super::{AppState, custom, external, resource};
use crate::discovery::Registry;
use crate::rules::CompiledConfig;

/// The group of the aggregated discovery types.
const AGGREGATED_GROUP: &str = "apidiscovery.k8s.io";
/// The kind an aggregated `/apis` answer is asked for as (`as=` in the media type).
const AGGREGATED_KIND: &str = "APIGroupDiscoveryList";

/// One served API group: its name and versions, preferred first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServedGroup {
    /// Group name.
    pub name: &'static str,
    /// Versions, the preferred one first.
    pub versions: &'static [&'static str],
}

/// The groups `config` serves, in the order `/apis` lists them: a group is served when the
/// config has rules for it.
pub fn served_groups(config: &CompiledConfig) -> Vec<ServedGroup> {
    let mut groups = Vec::new();
    if !config.rules.is_empty() {
        groups.push(ServedGroup {
            name: custom::GROUP,
            versions: custom::VERSIONS,
        });
    }
    if config.serves_external() {
        groups.push(ServedGroup {
            name: external::GROUP,
            versions: &[external::VERSION],
        });
    }
    if config.resource_rules.is_some() {
        groups.push(ServedGroup {
            name: resource::GROUP,
            versions: &[resource::VERSION],
        });
    }
    groups
}

fn group_version(group: &str, version: &str) -> GroupVersion {
    GroupVersion {
        group_version: format!("{group}/{version}"),
        version: version.to_string(),
    }
}

/// The `APIGroup` of a served group; `standalone` adds `kind` and `apiVersion`, which an
/// `APIGroupList` leaves out of its items.
fn group_doc(group: &ServedGroup, standalone: bool) -> ApiGroup {
    ApiGroup {
        kind: standalone.then_some("APIGroup"),
        api_version: standalone.then_some("v1"),
        name: group.name.to_string(),
        versions: group
            .versions
            .iter()
            .map(|v| group_version(group.name, v))
            .collect(),
        preferred_version: group_version(group.name, group.versions[0]),
    }
}

/// The resources of one served group version, as its `APIResourceList` lists them; `None` when
/// `config` does not serve that group version.
pub fn resources(
    config: &CompiledConfig,
    registry: &Registry,
    group: &str,
    version: &str,
) -> Option<Vec<ApiResource>> {
    served_groups(config)
        .iter()
        .find(|g| g.name == group && g.versions.contains(&version))?;
    let list = match group {
        custom::GROUP => registry
            .custom_keys()
            .iter()
            .map(|k| ApiResource {
                name: format!("{}/{}", k.resource, k.metric),
                singular_name: String::new(),
                namespaced: k.namespaced,
                kind: "MetricValueList",
                verbs: vec!["get"],
            })
            .collect(),
        external::GROUP => {
            // Schedule floors and the fallback's names beside discovered ones; a name served
            // twice is listed once.
            let fallback = config.external_fallback.as_ref().map(|n| n.load_full());
            let mut names: Vec<&str> = registry
                .external_names()
                .iter()
                .map(String::as_str)
                .chain(config.schedules.iter().map(|s| s.name.as_str()))
                .chain(fallback.iter().flat_map(|n| n.iter().map(String::as_str)))
                .collect();
            names.sort_unstable();
            names.dedup();
            names
                .into_iter()
                .map(|name| ApiResource {
                    name: name.to_string(),
                    singular_name: String::new(),
                    namespaced: true,
                    kind: "ExternalMetricValueList",
                    verbs: vec!["get"],
                })
                .collect()
        }
        resource::GROUP => resource::api_resources(),
        _ => return None,
    };
    Some(list)
}

/// Turns the flat resource list of one group version into aggregated form, as the apiserver
/// does for an `APIResourceList`: a name with a `/` is a subresource of the part before it (a
/// custom metric `pods/http_requests` is subresource `http_requests` of `pods`), and a parent
/// that is not itself listed gets an entry with an empty kind. Every `responseKind` is present,
/// even when empty, since client-go releases of 1.26 and 1.27 dereference it unchecked.
fn aggregated_resources(
    group: &str,
    version: &str,
    list: &[ApiResource],
) -> Vec<ApiResourceDiscovery> {
    let scope = |namespaced: bool| if namespaced { "Namespaced" } else { "Cluster" };
    let kind = |kind: &str| GroupVersionKind {
        group: group.to_string(),
        version: version.to_string(),
        kind: kind.to_string(),
    };
    let mut out: Vec<ApiResourceDiscovery> = list
        .iter()
        .filter(|r| !r.name.contains('/'))
        .map(|r| ApiResourceDiscovery {
            resource: r.name.clone(),
            response_kind: kind(r.kind),
            scope: scope(r.namespaced),
            singular_resource: r.singular_name.clone(),
            verbs: r.verbs.clone(),
            subresources: Vec::new(),
        })
        .collect();
    for r in list {
        let Some((parent, sub)) = r.name.split_once('/') else {
            continue;
        };
        let at = match out.iter().position(|p| p.resource == parent) {
            Some(at) => at,
            None => {
                out.push(ApiResourceDiscovery {
                    resource: parent.to_string(),
                    response_kind: GroupVersionKind::default(),
                    scope: scope(r.namespaced),
                    singular_resource: String::new(),
                    verbs: Vec::new(),
                    subresources: Vec::new(),
                });
                out.len() - 1
            }
        };
        // A resource's scope is fixed, so parent and subresource always agree; the apiserver
        // rejects the whole document when they do not, we keep the parent's and go on.
        out[at].subresources.push(ApiSubresourceDiscovery {
            subresource: sub.to_string(),
            response_kind: kind(r.kind),
            verbs: r.verbs.clone(),
        });
    }
    out
}

/// The aggregated discovery document of everything `config` serves, at `api_version`
/// (`apidiscovery.k8s.io/v2` or `…/v2beta1`, which share their shape).
pub fn aggregated(
    config: &CompiledConfig,
    registry: &Registry,
    api_version: AggregatedVersion,
) -> ApiGroupDiscoveryList {
    let items = served_groups(config)
        .iter()
        .map(|g| ApiGroupDiscovery {
            metadata: DiscoveryObjectMeta {
                name: g.name.to_string(),
                creation_timestamp: None,
            },
            versions: g
                .versions
                .iter()
                .map(|v| ApiVersionDiscovery {
                    version: v.to_string(),
                    resources: aggregated_resources(
                        g.name,
                        v,
                        &resources(config, registry, g.name, v).unwrap_or_default(),
                    ),
                    freshness: "Current",
                })
                .collect(),
        })
        .collect();
    ApiGroupDiscoveryList {
        kind: AGGREGATED_KIND,
        api_version: api_version.api_version(),
        metadata: ListMeta {},
        items,
    }
}

/// A version of the aggregated discovery types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggregatedVersion {
    /// `apidiscovery.k8s.io/v2` (Kubernetes 1.30+).
    V2,
    /// `apidiscovery.k8s.io/v2beta1` (Kubernetes 1.26 to 1.32).
    V2Beta1,
}

impl AggregatedVersion {
    fn from_param(v: &str) -> Option<Self> {
        match v {
            "v2" => Some(AggregatedVersion::V2),
            "v2beta1" => Some(AggregatedVersion::V2Beta1),
            _ => None,
        }
    }

    fn version(self) -> &'static str {
        match self {
            AggregatedVersion::V2 => "v2",
            AggregatedVersion::V2Beta1 => "v2beta1",
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            AggregatedVersion::V2 => "apidiscovery.k8s.io/v2",
            AggregatedVersion::V2Beta1 => "apidiscovery.k8s.io/v2beta1",
        }
    }

    /// The `Content-Type` of a document of this version.
    pub fn content_type(self) -> String {
        format!(
            "application/json;g={AGGREGATED_GROUP};v={};as={AGGREGATED_KIND}",
            self.version()
        )
    }
}

/// What form of `/apis` a request's `Accept` header asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApisFormat {
    /// `APIGroupDiscoveryList` of this version.
    Aggregated(AggregatedVersion),
    /// The legacy `APIGroupList`.
    Legacy,
}

/// Picks the form of `/apis` for an `Accept` header, as the apiserver's negotiation does: media
/// ranges by falling quality (`q`), in the client's order among equals, and the first one we
/// can produce wins. We produce JSON only: protobuf ranges and kinds other than
/// `APIGroupDiscoveryList` (such as `as=Table`) are passed over. When nothing matches, the answer
/// is the legacy JSON document rather than a 406, as before this negotiation existed, so a
/// client with an unusual `Accept` still gets something it can read.
pub fn negotiate(accept: Option<&str>) -> ApisFormat {
    let Some(accept) = accept else {
        return ApisFormat::Legacy;
    };
    let mut ranges: Vec<(f32, mime::Mime)> = accept
        .split(',')
        .filter_map(|r| r.trim().parse::<mime::Mime>().ok())
        .map(|m| {
            let q = m
                .get_param("q")
                .and_then(|q| q.as_str().parse::<f32>().ok())
                .unwrap_or(1.0);
            (q, m)
        })
        .filter(|(q, _)| *q > 0.0)
        .collect();
    // A stable sort keeps the client's order among ranges of equal quality.
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (_, m) in ranges {
        let json = m.type_() == mime::APPLICATION && m.subtype() == mime::JSON;
        let wildcard = m.type_() == mime::STAR
            || (m.type_() == mime::APPLICATION && m.subtype() == mime::STAR);
        let param = |name: &str| m.get_param(name).map(|v| v.as_str().to_string());
        match (param("g"), param("as")) {
            (Some(g), Some(kind)) if json && g == AGGREGATED_GROUP && kind == AGGREGATED_KIND => {
                if let Some(v) = param("v")
                    .as_deref()
                    .and_then(AggregatedVersion::from_param)
                {
                    return ApisFormat::Aggregated(v);
                }
            }
            (None, None) if json || wildcard => return ApisFormat::Legacy,
            _ => {}
        }
    }
    ApisFormat::Legacy
}

/// A strong validator of `body`: a digest of the exact bytes, so two representations (v2 and
/// v2beta1, or two registries) never share one.
fn etag(body: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Whether an `If-None-Match` header matches `tag` (a list of tags, or `*`; weak comparison, as
/// RFC 9110 asks for this header).
fn none_match(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag)
}

fn json_response(content_type: &str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            // One URL, two documents: caches must key on Accept.
            (header::VARY, "Accept".to_string()),
        ],
        body,
    )
        .into_response()
}

/// `GET /apis`: the aggregated document when asked for one (with an ETag, and 304 when the
/// client's copy is current), the legacy `APIGroupList` otherwise.
pub async fn apis(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let config = app.config.load();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    match negotiate(accept) {
        ApisFormat::Aggregated(version) => {
            let doc = aggregated(&config, &app.registry.load(), version);
            let body = serde_json::to_vec(&doc).unwrap_or_default();
            let tag = etag(&body);
            let mut resp = if none_match(&headers, &tag) {
                (StatusCode::NOT_MODIFIED, [(header::VARY, "Accept")]).into_response()
            } else {
                json_response(&version.content_type(), body)
            };
            if let Ok(v) = HeaderValue::from_str(&tag) {
                resp.headers_mut().insert(header::ETAG, v);
            }
            resp
        }
        ApisFormat::Legacy => {
            let list = ApiGroupList {
                kind: "APIGroupList",
                api_version: "v1",
                groups: served_groups(&config)
                    .iter()
                    .map(|g| group_doc(g, false))
                    .collect(),
            };
            json_response(
                "application/json",
                serde_json::to_vec(&list).unwrap_or_default(),
            )
        }
    }
}

/// 404 for a group or version the config has no rules for.
pub fn not_served(what: &str) -> ApiError {
    ApiError::NotFound(format!(
        "the server could not find the requested resource ({what} is not served: the config has no rules for it)"
    ))
}

/// `GET /apis/<group>`: its `APIGroup`.
pub async fn group(
    State(app): State<Arc<AppState>>,
    Path(group): Path<String>,
) -> Result<axum::Json<ApiGroup>, ApiError> {
    served_groups(&app.config.load())
        .iter()
        .find(|g| g.name == group)
        .map(|g| axum::Json(group_doc(g, true)))
        .ok_or_else(|| not_served(&group))
}

/// `GET /apis/<group>/<version>`: its `APIResourceList`.
pub async fn group_version_resources(
    State(app): State<Arc<AppState>>,
    Path((group, version)): Path<(String, String)>,
) -> Result<axum::Json<ApiResourceList>, ApiError> {
    let config = app.config.load();
    let resources =
        resources(&config, &app.registry.load(), &group, &version).ok_or_else(|| {
            if served_groups(&config).iter().any(|g| g.name == group) {
                ApiError::NotFound(format!(
                    "the server could not find the requested resource (version {version:?} of {group} is not served)"
                ))
            } else {
                not_served(&group)
            }
        })?;
    Ok(axum::Json(ApiResourceList {
        kind: "APIResourceList",
        api_version: "v1",
        group_version: format!("{group}/{version}"),
        resources,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
    const V2BETA1: &str =
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

    #[test]
    fn the_aggregators_accept_headers_get_the_aggregated_document() {
        use AggregatedVersion::{V2 as Two, V2Beta1 as TwoBeta1};
        assert_eq!(negotiate(Some(V2)), ApisFormat::Aggregated(Two));
        assert_eq!(negotiate(Some(V2BETA1)), ApisFormat::Aggregated(TwoBeta1));
        // kubectl's discovery client: v2, then v2beta1, then plain JSON, with qualities.
        let kubectl = format!("{V2},{V2BETA1};q=0.9,application/json;q=0.8");
        assert_eq!(negotiate(Some(&kubectl)), ApisFormat::Aggregated(Two));
        // Protobuf first: passed over, the JSON variant behind it is taken.
        let proto = format!(
            "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList, {V2BETA1}"
        );
        assert_eq!(negotiate(Some(&proto)), ApisFormat::Aggregated(TwoBeta1));
        // Quality decides before order.
        let lower = format!("{V2};q=0.5, application/json");
        assert_eq!(negotiate(Some(&lower)), ApisFormat::Legacy);
    }

    #[test]
    fn every_other_accept_header_gets_the_legacy_document() {
        for accept in [
            None,
            Some("application/json"),
            Some("application/vnd.kubernetes.protobuf, */*"),
            Some("*/*"),
            Some("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList"),
            Some("application/json;as=Table;v=v1;g=meta.k8s.io, application/json"),
            Some("text/html"),
            Some("garbage;;;,,"),
            Some(""),
        ] {
            assert_eq!(negotiate(accept), ApisFormat::Legacy, "{accept:?}");
        }
    }

    fn res(name: &str, namespaced: bool, kind: &'static str) -> ApiResource {
        ApiResource {
            name: name.to_string(),
            singular_name: String::new(),
            namespaced,
            kind,
            verbs: vec!["get"],
        }
    }

    #[test]
    fn custom_metrics_become_subresources_of_their_resource() {
        let list = [
            res("pods/http_requests", true, "MetricValueList"),
            res("namespaces/queue_items", false, "MetricValueList"),
            res("pods/inflight", true, "MetricValueList"),
            res("deployments.apps/inflight", true, "MetricValueList"),
        ];
        let out = serde_json::to_value(aggregated_resources(
            "custom.metrics.k8s.io",
            "v1beta2",
            &list,
        ))
        .unwrap();
        let empty = serde_json::json!({"group": "", "version": "", "kind": ""});
        let kind = serde_json::json!({"group": "custom.metrics.k8s.io", "version": "v1beta2", "kind": "MetricValueList"});
        assert_eq!(
            out,
            serde_json::json!([
                {"resource": "pods", "responseKind": empty, "scope": "Namespaced", "singularResource": "", "verbs": [],
                 "subresources": [
                    {"subresource": "http_requests", "responseKind": kind, "verbs": ["get"]},
                    {"subresource": "inflight", "responseKind": kind, "verbs": ["get"]}]},
                {"resource": "namespaces", "responseKind": empty, "scope": "Cluster", "singularResource": "", "verbs": [],
                 "subresources": [{"subresource": "queue_items", "responseKind": kind, "verbs": ["get"]}]},
                {"resource": "deployments.apps", "responseKind": empty, "scope": "Namespaced", "singularResource": "", "verbs": [],
                 "subresources": [{"subresource": "inflight", "responseKind": kind, "verbs": ["get"]}]},
            ])
        );
    }

    #[test]
    fn top_level_resources_keep_their_kind_and_scope() {
        let list = [
            res("queue_length", true, "ExternalMetricValueList"),
            res("nodes", false, "NodeMetrics"),
        ];
        let out = serde_json::to_value(aggregated_resources("g", "v1", &list)).unwrap();
        assert_eq!(
            out[0],
            serde_json::json!({"resource": "queue_length", "responseKind": {"group": "g", "version": "v1", "kind": "ExternalMetricValueList"},
                "scope": "Namespaced", "singularResource": "", "verbs": ["get"]})
        );
        assert_eq!(out[1]["scope"], "Cluster");
    }

    #[test]
    fn etags_are_quoted_and_if_none_match_compares_them() {
        let tag = etag(b"{}");
        assert!(
            tag.starts_with('"') && tag.ends_with('"') && tag.len() == 34,
            "{tag}"
        );
        assert_ne!(tag, etag(b"{ }"));
        let mut h = HeaderMap::new();
        assert!(!none_match(&h, &tag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&tag).unwrap());
        assert!(none_match(&h, &tag));
        assert!(!none_match(&h, &etag(b"[]")));
        let list = format!("\"other\", W/{tag}");
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&list).unwrap());
        assert!(none_match(&h, &tag));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(none_match(&h, &tag));
    }
}
