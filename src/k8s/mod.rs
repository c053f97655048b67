//! Kubernetes I/O: API discovery (which resources exist) and object lists for `*` requests.
//!
//! Kept apart from the pure rule logic: this module turns API server answers into a
//! [`RestMapper`] and object names, and nothing else in the crate talks to the API server.

pub mod cache;
pub mod serving_cert;
pub mod throttle;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use kube::api::{Api, ListParams};
use kube::core::DynamicObject;
use kube::core::discovery::v2::APIGroupDiscoveryList;

use crate::query::objects::{ClusterObjectLister, ListError, ObjectMeta};
use crate::rules::selector::Selector;
use crate::rules::{ResourceInfo, RestMapper};

/// Why a Kubernetes call failed.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    /// No usable client configuration.
    #[error("unable to configure the Kubernetes client: {0}")]
    Config(String),
    /// A call to the API server failed.
    #[error("{what}: {message}")]
    Api {
        /// What was being done.
        what: String,
        /// The error and its causes.
        message: String,
    },
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> K8sError {
    let what = what.into();
    move |e| K8sError::Api {
        what,
        message: crate::query::prometheus::error_chain(&e),
    }
}

/// Builds a client from `kubeconfig`, or else from the environment (in-cluster service account,
/// then `$KUBECONFIG` / `~/.kube/config`), whose calls share one token bucket of `rate`.
pub async fn build_client(
    kubeconfig: Option<&Path>,
    rate: throttle::Rate,
) -> Result<kube::Client, K8sError> {
    crate::install_crypto_provider();
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                K8sError::Config(format!("reading kubeconfig {}: {e}", path.display()))
            })?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| K8sError::Config(format!("kubeconfig {}: {e}", path.display())))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| K8sError::Config(e.to_string()))?,
    };
    let mut config = config;
    // kube retries 503s up to 15 times with backoff growing towards minutes. An aggregated API
    // that is down answers 503, and a request-path LIST must fail fast rather than hold an HPA
    // request for minutes, so retries are ours to decide (discovery retries on its timer).
    config.default_retry = false;
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(30));
    // Idle pooled connections must not eat into a request's read timeout.
    config.reset_reader_on_write = true;
    // Without a CA, kube-client trusts the system's roots, parsed per client (about 70 KB of
    // heap each, for the three clients). A plain-HTTP server (`kubectl proxy`, a local test
    // API) never shows a certificate, and the client follows no redirects, so no roots at all.
    if config.cluster_url.scheme_str() == Some("http") && config.root_cert.is_none() {
        config.root_cert = Some(Vec::new());
    }
    Ok(kube::client::ClientBuilder::try_from(config)
        .map_err(|e| K8sError::Config(e.to_string()))?
        .with_layer(&throttle::ThrottleLayer::new(rate))
        .build())
}

/// Discovers the served resources: aggregated discovery (two requests) when the server offers
/// it, else the per-group documents, skipping groups that fail (an aggregated API that is down,
/// including this adapter's own while it starts) as client-go does.
pub async fn discover(client: &kube::Client) -> Result<RestMapper, K8sError> {
    match discover_aggregated(client).await {
        Ok(mapper) => Ok(mapper),
        Err(e) => {
            tracing::debug!(error = %e, "aggregated discovery unavailable; using per-group discovery");
            discover_legacy(client).await
        }
    }
}

async fn discover_aggregated(client: &kube::Client) -> Result<RestMapper, K8sError> {
    let core = client
        .list_core_api_versions_aggregated()
        .await
        .map_err(api_err("aggregated discovery of /api"))?;
    let groups = client
        .list_api_groups_aggregated()
        .await
        .map_err(api_err("aggregated discovery of /apis"))?;
    if core.items.is_empty() {
        return Err(K8sError::Api {
            what: "aggregated discovery of /api".into(),
            message: "no groups in the answer".into(),
        });
    }
    Ok(mapper_from_aggregated(&[core, groups]))
}

/// Builds a mapper from aggregated discovery lists, core first; within a group the first listed
/// version is the preferred one.
pub fn mapper_from_aggregated(lists: &[APIGroupDiscoveryList]) -> RestMapper {
    let mut resources = Vec::new();
    for list in lists {
        for group in &list.items {
            let name = group
                .metadata
                .as_ref()
                .and_then(|m| m.name.clone())
                .unwrap_or_default();
            let Some(version) = group.versions.first() else {
                continue;
            };
            let version_name = version.version.clone().unwrap_or_default();
            for r in &version.resources {
                let Some(plural) = r.resource.clone() else {
                    continue;
                };
                if plural.contains('/') {
                    continue;
                }
                let kind = r
                    .response_kind
                    .as_ref()
                    .and_then(|k| k.kind.clone())
                    .unwrap_or_default();
                let singular = r
                    .singular_resource
                    .clone()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| kind.to_lowercase());
                resources.push(ResourceInfo {
                    group: name.clone(),
                    version: version_name.clone(),
                    plural,
                    singular,
                    kind,
                    namespaced: r.scope.as_deref() == Some("Namespaced"),
                    short_names: r.short_names.clone(),
                });
            }
        }
    }
    RestMapper::from_resources(resources)
}

async fn discover_legacy(client: &kube::Client) -> Result<RestMapper, K8sError> {
    let mut resources = Vec::new();
    let core = client
        .list_core_api_resources("v1")
        .await
        .map_err(api_err("discovery of /api/v1"))?;
    push_legacy(&mut resources, "", "v1", &core);
    let groups = client
        .list_api_groups()
        .await
        .map_err(api_err("discovery of /apis"))?;
    for group in groups.groups {
        let Some(preferred) = group
            .preferred_version
            .clone()
            .or_else(|| group.versions.first().cloned())
        else {
            continue;
        };
        match client
            .list_api_group_resources(&preferred.group_version)
            .await
        {
            Ok(list) => push_legacy(&mut resources, &group.name, &preferred.version, &list),
            Err(e) => tracing::warn!(
                group_version = %preferred.group_version,
                error = %crate::query::prometheus::error_chain(&e),
                "skipping an API group whose discovery failed"
            ),
        }
    }
    Ok(RestMapper::from_resources(resources))
}

fn push_legacy(
    out: &mut Vec<ResourceInfo>,
    group: &str,
    version: &str,
    list: &k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList,
) {
    for r in &list.resources {
        if r.name.contains('/') {
            continue;
        }
        let singular = if r.singular_name.is_empty() {
            r.kind.to_lowercase()
        } else {
            r.singular_name.clone()
        };
        out.push(ResourceInfo {
            group: group.to_string(),
            version: version.to_string(),
            plural: r.name.clone(),
            singular,
            kind: r.kind.clone(),
            namespaced: r.namespaced,
            short_names: r.short_names.clone().unwrap_or_default(),
        });
    }
}

/// Re-runs discovery every `interval`, publishing into `mapper`; a failed run keeps the
/// previous mapper.
pub async fn refresh_mapper(
    client: kube::Client,
    mapper: std::sync::Arc<ArcSwap<RestMapper>>,
    interval: Duration,
) {
    loop {
        tokio::time::sleep(interval).await;
        match discover(&client).await {
            Ok(m) => {
                tracing::debug!(resources = m.resources().len(), "refreshed API discovery");
                mapper.store(std::sync::Arc::new(m));
            }
            Err(e) => {
                tracing::warn!(error = %e, "API discovery failed; keeping the previous resource list")
            }
        }
    }
}

/// Lists object names: from a watch-backed cache once it has synced, else with a metadata-only
/// LIST.
#[derive(Clone)]
pub struct KubeObjectLister {
    client: kube::Client,
    cache: Arc<cache::ObjectCache>,
}

impl std::fmt::Debug for KubeObjectLister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeObjectLister")
    }
}

impl KubeObjectLister {
    /// A lister using `client`, whose watches stop after `idle` without use.
    pub fn new(client: kube::Client, idle: std::time::Duration) -> Self {
        KubeObjectLister {
            cache: cache::ObjectCache::new(client.clone(), idle),
            client,
        }
    }

    /// How many object watches run.
    pub fn running_watches(&self) -> usize {
        self.cache.running()
    }

    /// Names of the `resource` objects in `namespace` (all namespaces for cluster-scoped
    /// resources) that match `selector`.
    pub async fn list(
        &self,
        resource: &ResourceInfo,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Result<Vec<String>, K8sError> {
        // From the cache without copying labels: a `*` request needs names only.
        if let Some(names) = self.cache.names(resource, namespace, selector) {
            return Ok(names);
        }
        Ok(self
            .objects(resource, namespace, selector, "")
            .await?
            .into_iter()
            .map(|o| o.name)
            .collect())
    }

    /// The matching objects with their labels, from the cache or else a metadata LIST.
    pub async fn objects(
        &self,
        resource: &ResourceInfo,
        namespace: Option<&str>,
        selector: &Selector,
        fields: &str,
    ) -> Result<Vec<ObjectMeta>, K8sError> {
        if let Some(objects) = self.cache.objects(resource, namespace, selector, fields) {
            return Ok(objects);
        }
        let ar = cache::api_resource(resource);
        let api: Api<DynamicObject> = match namespace {
            Some(ns) if resource.namespaced => Api::namespaced_with(self.client.clone(), ns, &ar),
            _ => Api::all_with(self.client.clone(), &ar),
        };
        // resourceVersion=0: served from the API server's watch cache, not a quorum read.
        let mut params = ListParams::default().match_any();
        if !selector.is_empty() {
            params = params.labels(&selector.to_string());
        }
        if !fields.is_empty() {
            params = params.fields(fields);
        }
        let list = api
            .list_metadata(&params)
            .await
            .map_err(api_err(format!("listing {}", resource.group_resource())))?;
        // Names join into an unescaped regex alternation; a name that is not a DNS subdomain
        // (possible for a few kinds) could widen it, so it is left out.
        Ok(list
            .items
            .into_iter()
            .filter_map(|o| {
                Some(ObjectMeta {
                    namespace: o.metadata.namespace.unwrap_or_default(),
                    name: o.metadata.name?,
                    labels: o.metadata.labels.unwrap_or_default(),
                })
            })
            .filter(|o| crate::rules::selector::is_dns1123_subdomain(&o.name))
            .collect())
    }
}

impl ClusterObjectLister for KubeObjectLister {
    fn names<'a>(
        &'a self,
        resource: &'a ResourceInfo,
        namespace: Option<&'a str>,
        selector: &'a Selector,
    ) -> BoxFuture<'a, Result<Vec<String>, ListError>> {
        Box::pin(async move {
            KubeObjectLister::list(self, resource, namespace, selector)
                .await
                .map_err(ListError::from)
        })
    }

    fn objects<'a>(
        &'a self,
        resource: &'a ResourceInfo,
        namespace: Option<&'a str>,
        selector: &'a Selector,
        fields: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ObjectMeta>, ListError>> {
        Box::pin(async move {
            KubeObjectLister::objects(self, resource, namespace, selector, fields)
                .await
                .map_err(ListError::from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_discovery_becomes_a_mapper_with_singulars_and_short_names() {
        let core: APIGroupDiscoveryList = serde_json::from_value(serde_json::json!({
            "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
            "items": [{"metadata": {"creationTimestamp": null}, "versions": [{"version": "v1", "freshness": "Current", "resources": [
                {"resource": "pods", "responseKind": {"group": "", "version": "v1", "kind": "Pod"}, "scope": "Namespaced",
                 "singularResource": "pod", "verbs": ["get", "list"], "shortNames": ["po"],
                 "subresources": [{"subresource": "status", "responseKind": {"group": "", "version": "v1", "kind": "Pod"}, "verbs": ["get"]}]},
                {"resource": "nodes", "responseKind": {"group": "", "version": "v1", "kind": "Node"}, "scope": "Cluster",
                 "singularResource": "node", "verbs": ["get", "list"], "shortNames": ["no"]}
            ]}]}]
        }))
        .unwrap();
        let groups: APIGroupDiscoveryList = serde_json::from_value(serde_json::json!({
            "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
            "items": [{"metadata": {"name": "apps"}, "versions": [
                {"version": "v1", "resources": [{"resource": "deployments", "responseKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                  "scope": "Namespaced", "singularResource": "deployment", "verbs": ["get"], "shortNames": ["deploy"]}]},
                {"version": "v1beta1", "resources": []}
            ]},
            {"metadata": {"name": "custom.metrics.k8s.io"}, "versions": [{"version": "v1beta2", "freshness": "Stale", "resources": []}]}]
        }))
        .unwrap();
        let m = mapper_from_aggregated(&[core, groups]);
        assert_eq!(m.resolve("", "po").unwrap().plural, "pods");
        assert!(!m.resolve("", "node").unwrap().namespaced);
        let d = m.resolve_qualified("deployments.apps").unwrap();
        assert_eq!((d.version.as_str(), d.kind.as_str()), ("v1", "Deployment"));
        assert_eq!(m.resolve("", "deploy").unwrap().group, "apps");
        assert_eq!(m.resources().len(), 3);
    }
}
