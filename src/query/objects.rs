//! Which objects a `*` request is about.
//!
//! In cluster mode the objects come from the Kubernetes API through a [`ClusterObjectLister`],
//! filtered by `labelSelector` there. In standalone
//! mode there is no cluster: the objects are the values of the resource label among the metric's
//! own series, and `labelSelector` is applied to those series' labels. This is a documented
//! limitation: pod labels such as `app` only match when Prometheus attached them to the series.
//!
//! Standalone mode normally needs no listing at all: the query is rendered for every object
//! whose series match the selector ([`crate::rules::query::ObjectNames::Matching`]) and the
//! objects are those in the answer, one backend call in all. [`answers_in_one_call`] says when
//! that is exact; otherwise the series are listed first, as here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::prometheus::PrometheusError;
use super::shared::SharedQueries;
use crate::rules::backends::BackendSpec;
use crate::rules::quote::go_quote;
use crate::rules::selector::{Selector, is_dns1123_subdomain};
use crate::rules::{CompiledRule, ResourceInfo};

/// What to list.
#[derive(Debug, Clone, Copy)]
pub struct ListRequest<'a> {
    /// The resource whose objects are listed.
    pub resource: &'a ResourceInfo,
    /// `(namespace label, namespace)` for namespaced requests.
    pub namespace: Option<(&'a str, &'a str)>,
    /// The object label selector.
    pub selector: &'a Selector,
    /// The series behind the metric.
    pub series_name: &'a str,
    /// The label holding object names.
    pub resource_label: &'a str,
    /// The backend of the rule behind the metric (standalone lists come from its series).
    pub backend: Option<&'a Arc<BackendSpec>>,
}

/// An object as the cluster lists it: its name, and the labels that selectors match and
/// answers show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Namespace; empty for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// Why the cluster could not list objects; requests report its message.
pub type ListError = Box<dyn std::error::Error + Send + Sync>;

/// Lists a resource's objects from the cluster (cluster mode).
///
/// Declared here, where it is used, so that querying does not depend on the Kubernetes client:
/// the `k8s` module implements it and `cli` hands the implementation over.
pub trait ClusterObjectLister: fmt::Debug + Send + Sync {
    /// The `resource` objects in `namespace` (all namespaces for cluster-scoped resources) that
    /// match `selector` and the server-side field selector `fields` (`""` for none).
    fn objects<'a>(
        &'a self,
        resource: &'a ResourceInfo,
        namespace: Option<&'a str>,
        selector: &'a Selector,
        fields: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ObjectMeta>, ListError>>;

    /// The names of [`ClusterObjectLister::objects`] with no field selector, sorted: all a `*`
    /// request needs, so an implementation can skip copying labels.
    fn names<'a>(
        &'a self,
        resource: &'a ResourceInfo,
        namespace: Option<&'a str>,
        selector: &'a Selector,
    ) -> BoxFuture<'a, Result<Vec<String>, ListError>> {
        Box::pin(async move {
            self.objects(resource, namespace, selector, "")
                .await
                .map(|objects| objects.into_iter().map(|o| o.name).collect())
        })
    }
}

/// Lists objects from the series themselves (standalone mode).
#[derive(Clone, Debug)]
pub struct SeriesObjectLister {
    queries: Arc<SharedQueries>,
    lookback: Duration,
}

impl SeriesObjectLister {
    /// A lister that looks `lookback` into the past for series.
    pub fn new(queries: Arc<SharedQueries>, lookback: Duration) -> Self {
        SeriesObjectLister { queries, lookback }
    }

    /// The sorted object names the request is about. Label values that are not valid
    /// Kubernetes names are skipped: they could not name an object, and they would otherwise
    /// reach a regex matcher unescaped.
    pub async fn list(&self, req: ListRequest<'_>) -> Result<Vec<String>, PrometheusError> {
        let mut selector = format!(
            "{{__name__={},{}!=\"\"",
            go_quote(req.series_name),
            req.resource_label
        );
        if let Some((label, ns)) = req.namespace {
            selector.push_str(&format!(",{label}={}", go_quote(ns)));
        }
        selector.push('}');
        let (series, _) = self
            .queries
            .backend(req.backend)?
            .series_labels(&selector, self.lookback)
            .await?;
        let names: BTreeSet<String> = series
            .iter()
            .filter(|labels| req.selector.matches(labels))
            .filter_map(|labels| labels.get(req.resource_label))
            .filter(|name| is_dns1123_subdomain(name))
            .cloned()
            .collect();
        Ok(names.into_iter().collect())
    }
}

/// Whether a standalone `*` request for `rule` can find its objects in the query's own answer.
///
/// The selector must become PromQL matchers, and the template must place them
/// (`<<.LabelMatchers>>`); a template reading `<<.LabelValuesByName>>` expects the object names,
/// which only a listing gives. Otherwise the series are listed first, as before.
pub fn answers_in_one_call(rule: &CompiledRule, selector: &Selector) -> bool {
    rule.metrics_query.uses_field("LabelMatchers")
        && !rule.metrics_query.uses_field("LabelValuesByName")
        && selector.to_prom_matchers().is_ok()
}

/// Where object lists come from.
#[derive(Clone, Debug)]
pub enum ObjectLister {
    /// Standalone mode: from the series.
    Series(SeriesObjectLister),
    /// Cluster mode: from the Kubernetes API.
    Kube(Arc<dyn ClusterObjectLister>),
}

impl ObjectLister {
    /// Whether objects come from the series (standalone mode), so that a query's answer can
    /// name them.
    pub fn from_series(&self) -> bool {
        matches!(self, ObjectLister::Series(_))
    }

    /// The Kubernetes lister, in cluster mode.
    pub fn kube(&self) -> Option<&dyn ClusterObjectLister> {
        match self {
            ObjectLister::Kube(k) => Some(k.as_ref()),
            ObjectLister::Series(_) => None,
        }
    }

    /// Lists the objects a `*` request is about.
    pub async fn list(&self, req: ListRequest<'_>) -> Result<Vec<String>, String> {
        match self {
            ObjectLister::Series(l) => l.list(req).await.map_err(|e| e.to_string()),
            ObjectLister::Kube(l) => l
                .names(req.resource, req.namespace.map(|(_, ns)| ns), req.selector)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}
