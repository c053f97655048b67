//! Which Kubernetes resources exist: the RESTMapper the rules resolve names against.
//!
//! prometheus-adapter normalises every group-resource it meets (`pod`, `pods`, `Pod`,
//! `deployment.apps`) through client-go's RESTMapper. [`RestMapper`] is the same idea as plain
//! data: built from API discovery in cluster mode (see [`crate::k8s`]) or from a built-in table of
//! the common resources in standalone mode, and swapped whole when it is refreshed.

use std::collections::HashMap;
use std::fmt;

/// A group and resource in canonical form: `resource` is the lower-case plural.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupResource {
    /// API group; empty for the core group.
    pub group: String,
    /// Plural resource name.
    pub resource: String,
}

impl GroupResource {
    /// Builds a group-resource from its parts.
    pub fn new(group: impl Into<String>, resource: impl Into<String>) -> Self {
        GroupResource {
            group: group.into(),
            resource: resource.into(),
        }
    }

    /// Parses Kubernetes' qualified form: `pods`, `deployments.apps`,
    /// `ingresses.networking.k8s.io` (the group is everything after the first dot).
    pub fn parse_qualified(s: &str) -> Self {
        match s.split_once('.') {
            Some((resource, group)) => GroupResource::new(group, resource),
            None => GroupResource::new("", s),
        }
    }

    /// The core `namespaces` resource.
    pub fn namespaces() -> Self {
        GroupResource::new("", "namespaces")
    }
}

impl fmt::Display for GroupResource {
    /// Kubernetes' `GroupResource.String()`: `pods`, `deployments.apps`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// What the mapper knows about one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; empty for core.
    pub group: String,
    /// Preferred version of the group.
    pub version: String,
    /// Plural name, as in URLs.
    pub plural: String,
    /// Singular name; derived from the kind when discovery leaves it empty, as client-go does.
    pub singular: String,
    /// Kind, such as `Pod`.
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Short names (`po`, `deploy`).
    pub short_names: Vec<String>,
}

impl ResourceInfo {
    /// The canonical group-resource of this entry.
    pub fn group_resource(&self) -> GroupResource {
        GroupResource::new(self.group.clone(), self.plural.clone())
    }

    /// `apiVersion` as prometheus-adapter writes it into `describedObject`: `group/version`,
    /// which is `/v1` for core resources (upstream's quirk, kept for compatibility).
    pub fn described_api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }
}

/// Resolves resource names, plural or singular, bare or qualified, to [`ResourceInfo`].
#[derive(Clone, Debug, Default)]
pub struct RestMapper {
    resources: Vec<ResourceInfo>,
    /// lower-case name (plural, singular, kind, short name) → indices in priority order.
    by_name: HashMap<String, Vec<usize>>,
}

impl RestMapper {
    /// Builds a mapper; earlier entries win when a bare name is ambiguous (list core first,
    /// then groups in discovery priority order, as client-go's priority mapper does).
    pub fn from_resources(resources: Vec<ResourceInfo>) -> Self {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, info) in resources.iter().enumerate() {
            let mut names = vec![
                info.plural.to_lowercase(),
                info.singular.to_lowercase(),
                info.kind.to_lowercase(),
            ];
            names.extend(info.short_names.iter().map(|s| s.to_lowercase()));
            names.sort();
            names.dedup();
            for name in names.into_iter().filter(|n| !n.is_empty()) {
                by_name.entry(name).or_default().push(i);
            }
        }
        RestMapper { resources, by_name }
    }

    /// The built-in table used in standalone mode: the core, apps, batch, networking,
    /// autoscaling and policy resources that metrics are commonly attached to.
    pub fn standalone() -> Self {
        /// (group, version, plural, kind, namespaced, short names)
        type Row = (
            &'static str,
            &'static str,
            &'static str,
            &'static str,
            bool,
            &'static [&'static str],
        );
        const TABLE: &[Row] = &[
            ("", "v1", "pods", "Pod", true, &["po"]),
            ("", "v1", "nodes", "Node", false, &["no"]),
            ("", "v1", "namespaces", "Namespace", false, &["ns"]),
            ("", "v1", "services", "Service", true, &["svc"]),
            ("", "v1", "endpoints", "Endpoints", true, &["ep"]),
            (
                "",
                "v1",
                "persistentvolumes",
                "PersistentVolume",
                false,
                &["pv"],
            ),
            (
                "",
                "v1",
                "persistentvolumeclaims",
                "PersistentVolumeClaim",
                true,
                &["pvc"],
            ),
            (
                "",
                "v1",
                "replicationcontrollers",
                "ReplicationController",
                true,
                &["rc"],
            ),
            ("", "v1", "configmaps", "ConfigMap", true, &["cm"]),
            ("", "v1", "secrets", "Secret", true, &[]),
            ("", "v1", "serviceaccounts", "ServiceAccount", true, &["sa"]),
            ("apps", "v1", "deployments", "Deployment", true, &["deploy"]),
            ("apps", "v1", "statefulsets", "StatefulSet", true, &["sts"]),
            ("apps", "v1", "daemonsets", "DaemonSet", true, &["ds"]),
            ("apps", "v1", "replicasets", "ReplicaSet", true, &["rs"]),
            ("batch", "v1", "jobs", "Job", true, &[]),
            ("batch", "v1", "cronjobs", "CronJob", true, &["cj"]),
            (
                "networking.k8s.io",
                "v1",
                "ingresses",
                "Ingress",
                true,
                &["ing"],
            ),
            (
                "autoscaling",
                "v2",
                "horizontalpodautoscalers",
                "HorizontalPodAutoscaler",
                true,
                &["hpa"],
            ),
            (
                "policy",
                "v1",
                "poddisruptionbudgets",
                "PodDisruptionBudget",
                true,
                &["pdb"],
            ),
        ];
        RestMapper::from_resources(
            TABLE
                .iter()
                .map(
                    |(group, version, plural, kind, namespaced, short)| ResourceInfo {
                        group: group.to_string(),
                        version: version.to_string(),
                        plural: plural.to_string(),
                        singular: kind.to_lowercase(),
                        kind: kind.to_string(),
                        namespaced: *namespaced,
                        short_names: short.iter().map(|s| s.to_string()).collect(),
                    },
                )
                .collect(),
        )
    }

    /// Resolves `resource` (any accepted spelling) in `group`; an empty group searches every
    /// group, first match in priority order.
    pub fn resolve(&self, group: &str, resource: &str) -> Option<&ResourceInfo> {
        let candidates = self.by_name.get(&resource.to_lowercase())?;
        candidates
            .iter()
            .map(|&i| &self.resources[i])
            .find(|info| group.is_empty() || info.group == group)
    }

    /// Resolves a qualified name as it appears in URLs (`pods`, `deployments.apps`).
    ///
    /// Only the plural or singular name (any case) is accepted there, as the Go adapter's
    /// `RESTMapper.ResourceFor` does: a short name (`po`) is unknown, so the resource a
    /// SubjectAccessReview was asked about is always one RBAC rules are written for.
    pub fn resolve_qualified(&self, qualified: &str) -> Option<&ResourceInfo> {
        let gr = GroupResource::parse_qualified(qualified);
        let lower = gr.resource.to_lowercase();
        let named = |info: &&ResourceInfo| info.plural == lower || info.singular == lower;
        if gr.group.is_empty() {
            // A bare name in a URL means the core group when the core group has it.
            return self
                .resolve("", &gr.resource)
                .filter(|info| info.group.is_empty())
                .or_else(|| self.resolve("", &gr.resource))
                .filter(named);
        }
        self.resolve(&gr.group, &gr.resource).filter(named)
    }

    /// The singular name of a plural resource, searched across groups
    /// (client-go's `ResourceSingularizer`).
    pub fn singular(&self, resource: &str) -> Option<&str> {
        self.resolve("", resource)
            .map(|info| info.singular.as_str())
    }

    /// Every known resource, in priority order.
    pub fn resources(&self) -> &[ResourceInfo] {
        &self.resources
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_resource_resolves_to_the_plural() {
        let m = RestMapper::standalone();
        for name in ["pods", "pod", "Pod", "po"] {
            assert_eq!(m.resolve("", name).unwrap().plural, "pods", "{name}");
        }
        assert_eq!(
            m.resolve("apps", "deployment").unwrap().plural,
            "deployments"
        );
        assert!(m.resolve("batch", "deployment").is_none());
        assert_eq!(
            m.resolve_qualified("ingresses.networking.k8s.io")
                .unwrap()
                .kind,
            "Ingress"
        );
        assert_eq!(
            m.resolve_qualified("deployments.apps").unwrap().group,
            "apps"
        );
        assert!(m.resolve_qualified("gadgets").is_none());
        // In URLs, as in the Go adapter: plural or singular, never a short name.
        assert_eq!(m.resolve_qualified("Pod").unwrap().plural, "pods");
        for short in ["po", "ns", "deploy.apps"] {
            assert!(m.resolve_qualified(short).is_none(), "{short}");
        }
    }

    #[test]
    fn group_resources_print_in_kubernetes_form() {
        assert_eq!(GroupResource::new("", "pods").to_string(), "pods");
        assert_eq!(
            GroupResource::new("apps", "deployments").to_string(),
            "deployments.apps"
        );
        assert_eq!(
            GroupResource::parse_qualified("ingresses.networking.k8s.io"),
            GroupResource::new("networking.k8s.io", "ingresses")
        );
    }

    #[test]
    fn core_resources_get_upstreams_slash_v1_api_version() {
        let m = RestMapper::standalone();
        assert_eq!(
            m.resolve("", "pods").unwrap().described_api_version(),
            "/v1"
        );
        assert_eq!(
            m.resolve("", "deployments")
                .unwrap()
                .described_api_version(),
            "apps/v1"
        );
    }
}
