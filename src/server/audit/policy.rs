//! The audit policy (`--audit-policy-file`): kube-apiserver's `audit.k8s.io/v1` `Policy`, whose
//! first matching rule decides how much of a request is recorded.

use serde::Deserialize;

/// How much of a request an event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
pub enum Level {
    /// Not recorded.
    None,
    /// Who, what, when and the answer's status.
    Metadata,
    /// Metadata and the request body (a GET has none, so the same here).
    Request,
    /// Request and the response body.
    RequestResponse,
}

/// A stage of a request at which an event is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Stage {
    /// As soon as the request is authenticated.
    RequestReceived,
    /// Long-running requests only; none here.
    ResponseStarted,
    /// Once the answer is written.
    ResponseComplete,
    /// When a handler panicked.
    Panic,
}

/// Resources a rule applies to.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupResources {
    /// API group; empty for the core group.
    #[serde(default)]
    pub group: String,
    /// Resources (`pods`, `pods/status`, `*/status`, `pods/*`); empty: every resource of the
    /// group.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Object names; empty: all.
    #[serde(default)]
    pub resource_names: Vec<String>,
}

/// One rule; every field that is set must match.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    /// The level of matching requests.
    pub level: Level,
    /// User names.
    #[serde(default)]
    pub users: Vec<String>,
    /// Groups, any of which.
    #[serde(default)]
    pub user_groups: Vec<String>,
    /// Verbs (`get`, `list`).
    #[serde(default)]
    pub verbs: Vec<String>,
    /// Resources; resource requests only.
    #[serde(default)]
    pub resources: Vec<GroupResources>,
    /// Namespaces (`""` for cluster-scoped objects); resource requests only.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Non-resource paths, a trailing `*` matching a prefix; non-resource requests only.
    #[serde(default, rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
    /// Stages not recorded for matching requests.
    #[serde(default)]
    pub omit_stages: Vec<Stage>,
    /// Accepted for compatibility; there are no managed fields in metrics.
    #[serde(default)]
    pub omit_managed_fields: Option<bool>,
}

/// The policy file.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// `audit.k8s.io/v1` (or `v1beta1`).
    pub api_version: String,
    /// `Policy`.
    pub kind: String,
    /// Ignored, as for any object.
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    /// Rules, first match wins; none matching means `None`.
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
    /// Stages never recorded.
    #[serde(default)]
    pub omit_stages: Vec<Stage>,
    /// Accepted for compatibility.
    #[serde(default)]
    pub omit_managed_fields: Option<bool>,
}

/// Why a policy file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("audit policy {path}: {message}")]
pub struct PolicyError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// What a request is, as the policy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestAttributes<'a> {
    /// User name.
    pub user: &'a str,
    /// Groups.
    pub groups: &'a [String],
    /// `get` or `list`.
    pub verb: &'a str,
    /// The request's target.
    pub target: Target<'a>,
}

/// A resource or a non-resource request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// `/apis/<group>/<version>/…` naming a resource.
    Resource {
        /// API group.
        group: &'a str,
        /// Resource.
        resource: &'a str,
        /// Subresource; empty when none.
        subresource: &'a str,
        /// Object name; empty when none.
        name: &'a str,
        /// Namespace; empty for cluster-scoped.
        namespace: &'a str,
    },
    /// Any other path.
    NonResource {
        /// The path.
        path: &'a str,
    },
}

impl Policy {
    /// Parses a policy file's text.
    pub fn parse(text: &str, path: &str) -> Result<Policy, PolicyError> {
        let err = |message: String| PolicyError {
            path: path.to_string(),
            message,
        };
        let policy: Policy = serde_saphyr::from_str(text).map_err(|e| err(e.to_string()))?;
        if !matches!(
            policy.api_version.as_str(),
            "audit.k8s.io/v1" | "audit.k8s.io/v1beta1"
        ) || policy.kind != "Policy"
        {
            return Err(err(format!(
                "expected apiVersion audit.k8s.io/v1 and kind Policy, got {} {}",
                policy.api_version, policy.kind
            )));
        }
        for (i, rule) in policy.rules.iter().enumerate() {
            let resourceful = !rule.resources.is_empty() || !rule.namespaces.is_empty();
            if resourceful && !rule.non_resource_urls.is_empty() {
                return Err(err(format!(
                    "rules[{i}]: resources or namespaces cannot be combined with nonResourceURLs"
                )));
            }
        }
        Ok(policy)
    }

    /// The level and omitted stages for a request: the first matching rule's, or `None`.
    pub fn evaluate(&self, req: &RequestAttributes<'_>) -> (Level, Vec<Stage>) {
        match self.rules.iter().find(|r| r.matches(req)) {
            Some(rule) => {
                let mut omit = self.omit_stages.clone();
                omit.extend(rule.omit_stages.iter().copied());
                (rule.level, omit)
            }
            None => (Level::None, self.omit_stages.clone()),
        }
    }
}

impl PolicyRule {
    fn matches(&self, req: &RequestAttributes<'_>) -> bool {
        if !self.users.is_empty() && !self.users.iter().any(|u| u == req.user) {
            return false;
        }
        if !self.user_groups.is_empty() && !self.user_groups.iter().any(|g| req.groups.contains(g))
        {
            return false;
        }
        if !self.verbs.is_empty() && !self.verbs.iter().any(|v| v == req.verb) {
            return false;
        }
        match &req.target {
            Target::Resource {
                group,
                resource,
                subresource,
                name,
                namespace,
            } => {
                if !self.non_resource_urls.is_empty() {
                    return false;
                }
                if !self.namespaces.is_empty() && !self.namespaces.iter().any(|n| n == namespace) {
                    return false;
                }
                self.resources.is_empty()
                    || self
                        .resources
                        .iter()
                        .any(|gr| gr.matches(group, resource, subresource, name))
            }
            Target::NonResource { path } => {
                if !self.resources.is_empty() || !self.namespaces.is_empty() {
                    return false;
                }
                self.non_resource_urls.is_empty()
                    || self
                        .non_resource_urls
                        .iter()
                        .any(|u| match u.strip_suffix('*') {
                            Some(prefix) => path.starts_with(prefix),
                            None => u == path,
                        })
            }
        }
    }
}

impl GroupResources {
    fn matches(&self, group: &str, resource: &str, subresource: &str, name: &str) -> bool {
        if self.group != group {
            return false;
        }
        if !self.resource_names.is_empty() && !self.resource_names.iter().any(|n| n == name) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        let combined = if subresource.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}/{subresource}")
        };
        self.resources.iter().any(|r| {
            *r == combined
                || (!subresource.is_empty()
                    && (r.strip_prefix("*/") == Some(subresource)
                        || r.strip_suffix("/*") == Some(resource)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  nonResourceURLs: ["/healthz*", /livez, /readyz]
- level: RequestResponse
  users: ["system:serviceaccount:kube-system:horizontal-pod-autoscaler"]
  resources:
  - group: external.metrics.k8s.io
- level: Metadata
  users: ["system:serviceaccount:kube-system:horizontal-pod-autoscaler"]
- level: Request
  userGroups: [devs]
  namespaces: [web]
  resources:
  - group: custom.metrics.k8s.io
    resources: ["pods/*"]
- level: Metadata
  verbs: [get]
  nonResourceURLs: ["/apis*", "/openapi/*"]
"#;

    fn attrs<'a>(user: &'a str, groups: &'a [String], target: Target<'a>) -> RequestAttributes<'a> {
        RequestAttributes {
            user,
            groups,
            verb: "get",
            target,
        }
    }

    fn pods(namespace: &str) -> Target<'_> {
        Target::Resource {
            group: "custom.metrics.k8s.io",
            resource: "pods",
            subresource: "http_requests",
            name: "*",
            namespace,
        }
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let p = Policy::parse(POLICY, "p.yaml").unwrap();
        let hpa = "system:serviceaccount:kube-system:horizontal-pod-autoscaler";
        let none: Vec<String> = vec![];
        let devs = vec!["devs".to_string()];
        assert_eq!(
            p.evaluate(&attrs(
                hpa,
                &none,
                Target::NonResource {
                    path: "/healthz/ping"
                }
            ))
            .0,
            Level::None
        );
        assert_eq!(
            p.evaluate(&attrs(hpa, &none, pods("web"))).0,
            Level::Metadata
        );
        let external = Target::Resource {
            group: "external.metrics.k8s.io",
            resource: "queue_length",
            subresource: "",
            name: "",
            namespace: "web",
        };
        assert_eq!(
            p.evaluate(&attrs(hpa, &none, external)).0,
            Level::RequestResponse
        );
        assert_eq!(
            p.evaluate(&attrs("alice", &devs, pods("web"))).0,
            Level::Request
        );
        assert_eq!(
            p.evaluate(&attrs("alice", &devs, pods("other"))).0,
            Level::None
        );
        assert_eq!(
            p.evaluate(&attrs(
                "alice",
                &none,
                Target::NonResource { path: "/apis" }
            ))
            .0,
            Level::Metadata
        );
        let (_, omit) = p.evaluate(&attrs(
            "alice",
            &none,
            Target::NonResource { path: "/metrics" },
        ));
        assert_eq!(omit, [Stage::RequestReceived]);
    }

    #[test]
    fn bad_policies_are_refused_with_the_rule() {
        assert!(Policy::parse("apiVersion: v1\nkind: Policy\n", "p").is_err());
        assert!(
            Policy::parse(
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud\n",
                "p"
            )
            .is_err()
        );
        let err = Policy::parse(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  namespaces: [a]\n  nonResourceURLs: [/x]\n",
            "p",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("rules[0]"), "{err}");
    }
}
