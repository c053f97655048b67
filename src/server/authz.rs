//! Delegated authorization: a SubjectAccessReview per request, with the attributes
//! k8s.io/apiserver derives from the path, allowed and denied answers cached separately.

use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use super::authn::UserInfo;
use super::cache::TtlCache;

/// What a request asks to do, as the API server's RequestInfo sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Attributes {
    /// A request on an API resource.
    Resource {
        /// API group.
        group: String,
        /// API version.
        version: String,
        /// Resource (for the metrics APIs: `pods`, `metrics`, or an external metric's name).
        resource: String,
        /// Subresource (for custom metrics: the metric name).
        subresource: String,
        /// Object name (may be `*`).
        name: String,
        /// Namespace.
        namespace: String,
        /// `get` with a name, `list` without.
        verb: String,
    },
    /// Anything else: discovery, health, `/metrics`, `/openapi/*`.
    NonResource {
        /// The path.
        path: String,
        /// Always `get` here.
        verb: String,
    },
}

impl Attributes {
    /// Derives the attributes of a GET of `path`, following the apiserver's RequestInfo rules
    /// for `/apis/{group}/{version}/…`: `namespaces/{ns}/` scopes what follows, then resource,
    /// name and subresource; without a name the verb is `list`.
    pub fn from_path(path: &str) -> Attributes {
        let non_resource = || Attributes::NonResource {
            path: path.to_string(),
            verb: "get".into(),
        };
        let Ok(segments) = crate::api::request::segments(path) else {
            return non_resource();
        };
        let parts: Vec<&str> = segments.iter().map(|s| s.as_ref()).collect();
        let ["apis", group, version, rest @ ..] = parts.as_slice() else {
            return non_resource();
        };
        if rest.is_empty() {
            return non_resource();
        }
        let mut namespace = "";
        let mut rest: &[&str] = rest;
        if rest[0] == "namespaces" && rest.len() > 1 {
            namespace = rest[1];
            if rest.len() > 2 {
                rest = &rest[2..];
            }
        }
        let resource = rest[0].to_string();
        let name = rest.get(1).copied().unwrap_or_default().to_string();
        let subresource = rest.get(2).copied().unwrap_or_default().to_string();
        Attributes::Resource {
            group: group.to_string(),
            version: version.to_string(),
            verb: if name.is_empty() {
                "list".into()
            } else {
                "get".into()
            },
            resource,
            subresource,
            name,
            namespace: namespace.to_string(),
        }
    }

    /// `get pods/http_requests "*" in namespace default (custom.metrics.k8s.io)`, for messages.
    pub fn describe(&self) -> String {
        match self {
            Attributes::Resource {
                group,
                resource,
                subresource,
                name,
                namespace,
                verb,
                ..
            } => {
                let mut s = format!("{verb} resource \"{resource}");
                if !subresource.is_empty() {
                    s.push('/');
                    s.push_str(subresource);
                }
                s.push_str(&format!("\" in API group \"{group}\""));
                if !name.is_empty() {
                    s.push_str(&format!(" named \"{name}\""));
                }
                if !namespace.is_empty() {
                    s.push_str(&format!(" in the namespace \"{namespace}\""));
                }
                s
            }
            Attributes::NonResource { path, verb } => format!("{verb} path \"{path}\""),
        }
    }
}

/// The cache key of a decision: everything the SubjectAccessReview is asked about, hashed.
fn cache_key(user: &UserInfo, attrs: &Attributes) -> super::cache::Key {
    let mut parts: Vec<&[u8]> = vec![user.name.as_bytes(), user.uid.as_bytes()];
    // Counts keep one list's items from reading as the next list's.
    let counts = [user.groups.len(), user.extra.len()].map(|n| (n as u64).to_le_bytes());
    parts.push(&counts[0]);
    parts.extend(user.groups.iter().map(|g| g.as_bytes()));
    parts.push(&counts[1]);
    let value_counts: Vec<[u8; 8]> = user
        .extra
        .values()
        .map(|v| (v.len() as u64).to_le_bytes())
        .collect();
    for ((k, values), count) in user.extra.iter().zip(&value_counts) {
        parts.push(k.as_bytes());
        parts.push(count);
        parts.extend(values.iter().map(|v| v.as_bytes()));
    }
    match attrs {
        Attributes::Resource {
            group,
            version,
            resource,
            subresource,
            name,
            namespace,
            verb,
        } => parts.extend([
            &b"resource"[..],
            group.as_bytes(),
            version.as_bytes(),
            resource.as_bytes(),
            subresource.as_bytes(),
            name.as_bytes(),
            namespace.as_bytes(),
            verb.as_bytes(),
        ]),
        Attributes::NonResource { path, verb } => {
            parts.extend([&b"nonresource"[..], path.as_bytes(), verb.as_bytes()])
        }
    }
    super::cache::key(parts)
}

/// An authorization decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Why, when the reviewer said.
    pub reason: String,
}

/// Why a decision could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("authorization check failed: {0}")]
pub struct AuthzError(pub String);

/// Decides requests.
pub struct Authorizer {
    client: Option<kube::Client>,
    always_allow: Vec<String>,
    allowed_ttl: Duration,
    denied_ttl: Duration,
    cache: TtlCache<Decision>,
}

impl Authorizer {
    /// An authorizer asking the API server through `client` (none: only always-allowed paths
    /// and `system:masters` pass).
    pub fn new(
        client: Option<kube::Client>,
        always_allow: Vec<String>,
        allowed_ttl: Duration,
        denied_ttl: Duration,
    ) -> Self {
        Authorizer {
            client,
            always_allow,
            allowed_ttl,
            denied_ttl,
            cache: TtlCache::new(10_000),
        }
    }

    /// Whether `path` needs no identity (`--authorization-always-allow-paths`; a trailing `*`
    /// matches a prefix, as upstream).
    pub fn always_allowed(&self, path: &str) -> bool {
        self.always_allow.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => p == path,
        })
    }

    /// Decides whether `user` may do `attrs`.
    pub async fn authorize(
        &self,
        user: &UserInfo,
        attrs: &Attributes,
    ) -> Result<Decision, AuthzError> {
        if user.groups.iter().any(|g| g == "system:masters") {
            return Ok(Decision {
                allowed: true,
                reason: "system:masters".into(),
            });
        }
        let key = cache_key(user, attrs);
        if let Some(d) = self.cache.get(&key) {
            crate::telemetry::Metrics::outcome(
                &crate::telemetry::metrics().auth_cache_hits,
                "subject_access_review",
            );
            return Ok(d);
        }
        let Some(client) = &self.client else {
            return Ok(Decision {
                allowed: false,
                reason: "no authorization kubeconfig: only the always-allowed paths are served"
                    .into(),
            });
        };
        let (resource_attributes, non_resource_attributes) = match attrs {
            Attributes::Resource {
                group,
                version,
                resource,
                subresource,
                name,
                namespace,
                verb,
            } => (
                Some(ResourceAttributes {
                    group: Some(group.clone()),
                    version: Some(version.clone()),
                    resource: Some(resource.clone()),
                    subresource: Some(subresource.clone()).filter(|s| !s.is_empty()),
                    name: Some(name.clone()).filter(|s| !s.is_empty()),
                    namespace: Some(namespace.clone()).filter(|s| !s.is_empty()),
                    verb: Some(verb.clone()),
                    ..Default::default()
                }),
                None,
            ),
            Attributes::NonResource { path, verb } => (
                None,
                Some(NonResourceAttributes {
                    path: Some(path.clone()),
                    verb: Some(verb.clone()),
                }),
            ),
        };
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                uid: Some(user.uid.clone()).filter(|u| !u.is_empty()),
                groups: Some(user.groups.clone()),
                extra: Some(user.extra.clone()).filter(|e| !e.is_empty()),
                resource_attributes,
                non_resource_attributes,
            },
            ..Default::default()
        };
        let answer = Api::<SubjectAccessReview>::all(client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| AuthzError(crate::query::prometheus::error_chain(&e)))?;
        let status = answer.status.unwrap_or_default();
        let decision = Decision {
            allowed: status.allowed && !status.denied.unwrap_or(false),
            reason: status.reason.unwrap_or_default(),
        };
        let ttl = if decision.allowed {
            self.allowed_ttl
        } else {
            self.denied_ttl
        };
        self.cache.insert(key, decision.clone(), ttl);
        Ok(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> (String, String, String, String, String, String) {
        match Attributes::from_path(path) {
            Attributes::Resource {
                group,
                resource,
                subresource,
                name,
                namespace,
                verb,
                ..
            } => (group, resource, subresource, name, namespace, verb),
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn attributes_follow_the_apiservers_request_info() {
        assert_eq!(
            res("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/%2A/http_requests"),
            (
                "custom.metrics.k8s.io".into(),
                "pods".into(),
                "http_requests".into(),
                "*".into(),
                "default".into(),
                "get".into()
            )
        );
        assert_eq!(
            res("/apis/custom.metrics.k8s.io/v1beta1/namespaces/default/metrics/queue_items"),
            (
                "custom.metrics.k8s.io".into(),
                "metrics".into(),
                "".into(),
                "queue_items".into(),
                "default".into(),
                "get".into()
            )
        );
        assert_eq!(
            res("/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_length"),
            (
                "external.metrics.k8s.io".into(),
                "queue_length".into(),
                "".into(),
                "".into(),
                "default".into(),
                "list".into()
            )
        );
        assert_eq!(
            res("/apis/custom.metrics.k8s.io/v1beta1/nodes/n1/load"),
            (
                "custom.metrics.k8s.io".into(),
                "nodes".into(),
                "load".into(),
                "n1".into(),
                "".into(),
                "get".into()
            )
        );
        for p in [
            "/apis",
            "/apis/custom.metrics.k8s.io",
            "/apis/custom.metrics.k8s.io/v1beta1",
            "/metrics",
            "/openapi/v2",
        ] {
            assert!(
                matches!(Attributes::from_path(p), Attributes::NonResource { .. }),
                "{p}"
            );
        }
    }

    #[test]
    fn always_allowed_paths_match_exactly_or_by_prefix() {
        let a = Authorizer::new(
            None,
            vec!["/healthz".into(), "/debug/*".into()],
            Duration::ZERO,
            Duration::ZERO,
        );
        assert!(a.always_allowed("/healthz"));
        assert!(!a.always_allowed("/healthz/x"));
        assert!(a.always_allowed("/debug/pprof"));
        assert!(!a.always_allowed("/metrics"));
    }
}
