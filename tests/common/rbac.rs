//! RBAC as kube-apiserver decides it, for the fake API's SubjectAccessReviews: roles and
//! bindings are data (the bootstrap objects a fresh cluster has, plus what `manifests/` or the
//! chart creates, plus whatever a test binds), and a decision walks them the way
//! `plugin/pkg/auth/authorizer/rbac` does. Nothing here knows a user by name.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use k8s_openapi::api::authorization::v1::SubjectAccessReviewSpec;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use serde_json::Value;

/// Roles and bindings of one cluster.
#[derive(Clone, Debug, Default)]
pub struct Rbac {
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    roles: Vec<Role>,
    role_bindings: Vec<RoleBinding>,
}

/// What RBAC answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether some binding allows the request.
    pub allowed: bool,
    /// `RBAC: allowed by …` naming the binding, role and subject; empty when denied.
    pub reason: String,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The YAML files of a directory, sorted, not descending (as `kubectl apply -f dir/`).
fn yaml_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    files
}

impl Rbac {
    /// The RBAC objects of a fresh cluster (`tests/fixtures/rbac/bootstrap.yaml`).
    pub fn bootstrap() -> Rbac {
        let mut rbac = Rbac::default();
        rbac.add_file(&repo_root().join("tests/fixtures/rbac/bootstrap.yaml"));
        rbac
    }

    /// A fresh cluster after `kubectl apply -f manifests/` (and `-f manifests/optional/` with
    /// `optional`).
    pub fn with_manifests(optional: bool) -> Rbac {
        let mut rbac = Rbac::bootstrap();
        let mut files = yaml_in(&repo_root().join("manifests"));
        if optional {
            files.extend(yaml_in(&repo_root().join("manifests/optional")));
        }
        for f in files {
            rbac.add_file(&f);
        }
        rbac
    }

    /// Adds the RBAC objects of a YAML file; other kinds are ignored.
    pub fn add_file(&mut self, path: &Path) {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        self.add_yaml(&text, &path.display().to_string());
    }

    /// Adds the RBAC objects of a YAML stream (`helm template` output, a test's own binding);
    /// other kinds are ignored.
    pub fn add_yaml(&mut self, text: &str, origin: &str) {
        let docs: Vec<Value> = serde_saphyr::from_multiple(text)
            .unwrap_or_else(|e| panic!("{origin} is not valid YAML: {e}"));
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            let parse = |what: &str| -> ! {
                panic!("{origin}: a {what} that is not a valid RBAC object: {doc}")
            };
            match doc["kind"].as_str() {
                Some("ClusterRole") => self.cluster_roles.push(
                    serde_json::from_value(doc.clone()).unwrap_or_else(|_| parse("ClusterRole")),
                ),
                Some("ClusterRoleBinding") => self.cluster_role_bindings.push(
                    serde_json::from_value(doc.clone())
                        .unwrap_or_else(|_| parse("ClusterRoleBinding")),
                ),
                Some("Role") => self
                    .roles
                    .push(serde_json::from_value(doc.clone()).unwrap_or_else(|_| parse("Role"))),
                Some("RoleBinding") => self.role_bindings.push(
                    serde_json::from_value(doc.clone()).unwrap_or_else(|_| parse("RoleBinding")),
                ),
                _ => {}
            }
        }
    }

    /// The names of every binding, for test messages.
    pub fn binding_names(&self) -> Vec<String> {
        let crb = self.cluster_role_bindings.iter().map(|b| {
            format!(
                "ClusterRoleBinding {}",
                b.metadata.name.clone().unwrap_or_default()
            )
        });
        let rb = self.role_bindings.iter().map(|b| {
            format!(
                "RoleBinding {}/{}",
                b.metadata.namespace.clone().unwrap_or_default(),
                b.metadata.name.clone().unwrap_or_default()
            )
        });
        crb.chain(rb).collect()
    }

    /// The rules of a ClusterRole, with those of the roles its aggregation rule selects, as
    /// the aggregation controller writes them into it.
    fn cluster_role_rules(&self, name: &str) -> Vec<PolicyRule> {
        let Some(role) = self
            .cluster_roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
        else {
            // A binding to a role that does not exist grants nothing, as in RBAC.
            return Vec::new();
        };
        let mut rules = role.rules.clone().unwrap_or_default();
        let selectors = role
            .aggregation_rule
            .as_ref()
            .and_then(|a| a.cluster_role_selectors.clone())
            .unwrap_or_default();
        for other in &self.cluster_roles {
            let labels = other.metadata.labels.clone().unwrap_or_default();
            let selected = selectors.iter().any(|s| {
                s.match_expressions.as_ref().is_none_or(Vec::is_empty)
                    && s.match_labels.as_ref().is_some_and(|m| {
                        !m.is_empty() && m.iter().all(|(k, v)| labels.get(k) == Some(v))
                    })
            });
            if selected && other.metadata.name != role.metadata.name {
                rules.extend(other.rules.clone().unwrap_or_default());
            }
        }
        rules
    }

    fn role_ref_rules(&self, role_ref: &RoleRef, namespace: &str) -> Vec<PolicyRule> {
        match role_ref.kind.as_str() {
            "ClusterRole" => self.cluster_role_rules(&role_ref.name),
            "Role" => self
                .roles
                .iter()
                .find(|r| {
                    r.metadata.name.as_deref() == Some(role_ref.name.as_str())
                        && r.metadata.namespace.as_deref() == Some(namespace)
                })
                .and_then(|r| r.rules.clone())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Decides a SubjectAccessReview's spec: cluster role bindings first, then the role
    /// bindings of the request's namespace (for resource requests only).
    pub fn decide(&self, spec: &SubjectAccessReviewSpec) -> Decision {
        let user = spec.user.clone().unwrap_or_default();
        let groups = spec.groups.clone().unwrap_or_default();
        let request = Request::from_spec(spec);
        for b in &self.cluster_role_bindings {
            if let Some(subject) = applies(&b.subjects, &user, &groups, "")
                && self
                    .role_ref_rules(&b.role_ref, "")
                    .iter()
                    .any(|r| request.allowed_by(r))
            {
                return allowed(
                    "ClusterRoleBinding",
                    &b.metadata.name,
                    &b.role_ref,
                    subject,
                    "",
                );
            }
        }
        if let Request::Resource { namespace, .. } = &request
            && !namespace.is_empty()
        {
            for b in &self.role_bindings {
                let ns = b.metadata.namespace.clone().unwrap_or_default();
                if &ns != namespace {
                    continue;
                }
                if let Some(subject) = applies(&b.subjects, &user, &groups, &ns)
                    && self
                        .role_ref_rules(&b.role_ref, &ns)
                        .iter()
                        .any(|r| request.allowed_by(r))
                {
                    return allowed("RoleBinding", &b.metadata.name, &b.role_ref, subject, &ns);
                }
            }
        }
        Decision {
            allowed: false,
            reason: String::new(),
        }
    }
}

fn allowed(
    kind: &str,
    name: &Option<String>,
    role_ref: &RoleRef,
    subject: &Subject,
    namespace: &str,
) -> Decision {
    let name = name.clone().unwrap_or_default();
    let name = if namespace.is_empty() {
        name
    } else {
        format!("{name}/{namespace}")
    };
    Decision {
        allowed: true,
        reason: format!(
            "RBAC: allowed by {kind} \"{name}\" of {} \"{}\" to {} \"{}\"",
            role_ref.kind, role_ref.name, subject.kind, subject.name
        ),
    }
}

/// The first subject that names this user: by name, by group, or as the service account
/// `system:serviceaccount:<ns>:<name>` (a RoleBinding's namespace when the subject has none).
fn applies<'a>(
    subjects: &'a Option<Vec<Subject>>,
    user: &str,
    groups: &[String],
    binding_namespace: &str,
) -> Option<&'a Subject> {
    subjects.as_deref()?.iter().find(|s| match s.kind.as_str() {
        "User" => s.name == user,
        "Group" => groups.contains(&s.name),
        "ServiceAccount" => {
            let ns = s
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_namespace);
            !ns.is_empty() && user == format!("system:serviceaccount:{ns}:{}", s.name)
        }
        _ => false,
    })
}

/// The attributes of a review.
enum Request {
    Resource {
        verb: String,
        group: String,
        resource: String,
        subresource: String,
        name: String,
        namespace: String,
    },
    NonResource {
        verb: String,
        path: String,
    },
}

fn has(list: &Option<Vec<String>>, value: &str) -> bool {
    list.as_deref()
        .unwrap_or_default()
        .iter()
        .any(|v| v == "*" || v == value)
}

impl Request {
    fn from_spec(spec: &SubjectAccessReviewSpec) -> Request {
        if let Some(r) = &spec.resource_attributes {
            let s = |v: &Option<String>| v.clone().unwrap_or_default();
            return Request::Resource {
                verb: s(&r.verb),
                group: s(&r.group),
                resource: s(&r.resource),
                subresource: s(&r.subresource),
                name: s(&r.name),
                namespace: s(&r.namespace),
            };
        }
        let n = spec.non_resource_attributes.clone().unwrap_or_default();
        Request::NonResource {
            verb: n.verb.unwrap_or_default(),
            path: n.path.unwrap_or_default(),
        }
    }

    /// Whether `rule` allows this request (RBAC's `RuleAllows`).
    fn allowed_by(&self, rule: &PolicyRule) -> bool {
        match self {
            Request::Resource {
                verb,
                group,
                resource,
                subresource,
                name,
                ..
            } => {
                let combined = if subresource.is_empty() {
                    resource.clone()
                } else {
                    format!("{resource}/{subresource}")
                };
                let resource_matches =
                    rule.resources
                        .as_deref()
                        .unwrap_or_default()
                        .iter()
                        .any(|r| {
                            r == "*"
                                || *r == combined
                                || (!subresource.is_empty()
                                    && r.strip_prefix("*/") == Some(subresource.as_str()))
                        });
                let names = rule.resource_names.as_deref().unwrap_or_default();
                rule.verbs.iter().any(|v| v == "*" || v == verb)
                    && has(&rule.api_groups, group)
                    && resource_matches
                    && (names.is_empty() || names.contains(name))
            }
            Request::NonResource { verb, path } => {
                rule.verbs.iter().any(|v| v == "*" || v == verb)
                    && rule
                        .non_resource_urls
                        .as_deref()
                        .unwrap_or_default()
                        .iter()
                        .any(|u| {
                            u == "*"
                                || u == path
                                || u.strip_suffix('*').is_some_and(|p| path.starts_with(p))
                        })
            }
        }
    }
}

/// A ClusterRoleBinding of `role` to one subject, as YAML, for a test's own grants.
pub fn cluster_role_binding(name: &str, role: &str, kind: &str, subject: &str) -> String {
    let subject = match subject.split_once('/') {
        Some((ns, sa)) if kind == "ServiceAccount" => {
            format!("{{kind: ServiceAccount, name: \"{sa}\", namespace: \"{ns}\"}}")
        }
        _ => format!("{{apiGroup: rbac.authorization.k8s.io, kind: {kind}, name: \"{subject}\"}}"),
    };
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: \"{name}\"}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: \"{role}\"}}\n\
         subjects:\n- {subject}\n"
    )
}
