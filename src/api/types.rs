//! Wire types of the metrics APIs and of Kubernetes discovery, written out by hand so the JSON
//! matches what the HPA and kubectl decode, field for field (kubernetes/metrics `types.go`).

use std::collections::BTreeMap;

use serde::Serialize;

/// `core/v1 ObjectReference` as used in `describedObject`; empty fields are omitted.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    /// Kind, such as `Pod`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Namespace of the object.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name of the object.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `group/version`; `/v1` for core resources, as upstream writes it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
}

/// `custom.metrics.k8s.io/v1beta1` `MetricValue`.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricValueV1Beta1 {
    /// The object the value describes.
    pub described_object: ObjectReference,
    /// API metric name.
    pub metric_name: String,
    /// RFC 3339, second precision.
    pub timestamp: String,
    /// Window in seconds; never set, as upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<i64>,
    /// Canonical Kubernetes quantity.
    pub value: String,
    /// The metric label selector; `null` when none was given (no omitempty upstream).
    pub selector: Option<serde_json::Value>,
}

/// `custom.metrics.k8s.io/v1beta2` `MetricIdentifier`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MetricIdentifier {
    /// API metric name.
    pub name: String,
    /// The metric label selector; `null` when none was given.
    pub selector: Option<serde_json::Value>,
}

/// `custom.metrics.k8s.io/v1beta2` `MetricValue`.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricValueV1Beta2 {
    /// The object the value describes.
    pub described_object: ObjectReference,
    /// Metric name and selector.
    pub metric: MetricIdentifier,
    /// RFC 3339, second precision.
    pub timestamp: String,
    /// Window in seconds; never set, as upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<i64>,
    /// Canonical Kubernetes quantity.
    pub value: String,
}

/// `external.metrics.k8s.io/v1beta1` `ExternalMetricValue`.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalMetricValue {
    /// API metric name.
    pub metric_name: String,
    /// All labels of the sample; `null` for a scalar result.
    pub metric_labels: Option<BTreeMap<String, String>>,
    /// The sample's time, RFC 3339.
    pub timestamp: String,
    /// Window in seconds; never set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<i64>,
    /// Canonical Kubernetes quantity.
    pub value: String,
}

/// An empty `ListMeta`, serialised as `{}`.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ListMeta {}

/// A `…List` object: `kind`, `apiVersion`, `metadata`, `items`.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct List<T> {
    /// `MetricValueList` or `ExternalMetricValueList`.
    pub kind: &'static str,
    /// `group/version`.
    pub api_version: String,
    /// Always `{}`.
    pub metadata: ListMeta,
    /// The values.
    pub items: Vec<T>,
}

/// One entry of an `APIResourceList`.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiResource {
    /// `pods/http_requests`, `deployments.apps/x`, or an external metric name.
    pub name: String,
    /// Always empty.
    pub singular_name: String,
    /// Whether the resource is asked for within a namespace.
    pub namespaced: bool,
    /// `MetricValueList` or `ExternalMetricValueList`.
    pub kind: &'static str,
    /// Always `["get"]`.
    pub verbs: Vec<&'static str>,
}

/// `APIResourceList` (legacy discovery of one group version).
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiResourceList {
    /// `APIResourceList`.
    pub kind: &'static str,
    /// `v1`.
    pub api_version: &'static str,
    /// `custom.metrics.k8s.io/v1beta2`.
    pub group_version: String,
    /// The resources.
    pub resources: Vec<ApiResource>,
}

/// `GroupVersionForDiscovery`.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GroupVersion {
    /// `group/version`.
    pub group_version: String,
    /// `version`.
    pub version: String,
}

/// `APIGroup`.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiGroup {
    /// `APIGroup` when served alone; omitted inside an `APIGroupList`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// `v1` when served alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<&'static str>,
    /// Group name.
    pub name: String,
    /// Served versions, preferred first.
    pub versions: Vec<GroupVersion>,
    /// The preferred version.
    pub preferred_version: GroupVersion,
}

/// `APIGroupList`.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiGroupList {
    /// `APIGroupList`.
    pub kind: &'static str,
    /// `v1`.
    pub api_version: &'static str,
    /// The groups.
    pub groups: Vec<ApiGroup>,
}

/// `GroupVersionKind` as aggregated discovery writes it: every field present, even empty.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct GroupVersionKind {
    /// API group; empty for the core group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
}

/// `apidiscovery.k8s.io` `APISubresourceDiscovery`.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiSubresourceDiscovery {
    /// The subresource: for custom metrics, the metric name.
    pub subresource: String,
    /// What a GET of it returns.
    pub response_kind: GroupVersionKind,
    /// Verbs.
    pub verbs: Vec<&'static str>,
}

/// `apidiscovery.k8s.io` `APIResourceDiscovery`.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiResourceDiscovery {
    /// Plural resource name, such as `pods` or an external metric's name.
    pub resource: String,
    /// What a GET of it returns; empty for a parent listed only for its subresources.
    pub response_kind: GroupVersionKind,
    /// `Namespaced` or `Cluster`.
    pub scope: &'static str,
    /// Singular name; empty, as for every metrics resource.
    pub singular_resource: String,
    /// Verbs.
    pub verbs: Vec<&'static str>,
    /// Subresources, omitted when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subresources: Vec<ApiSubresourceDiscovery>,
}

/// `apidiscovery.k8s.io` `APIVersionDiscovery`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ApiVersionDiscovery {
    /// Version name.
    pub version: String,
    /// Resources, omitted when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ApiResourceDiscovery>,
    /// `Current`: we answer for ourselves, never from a cache of someone else's.
    pub freshness: &'static str,
}

/// The `ObjectMeta` of an `APIGroupDiscovery`: its name, and the zero `creationTimestamp` that
/// Go writes as `null`.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryObjectMeta {
    /// Group name.
    pub name: String,
    /// Always `null`.
    pub creation_timestamp: Option<String>,
}

/// `apidiscovery.k8s.io` `APIGroupDiscovery`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ApiGroupDiscovery {
    /// Name of the group.
    pub metadata: DiscoveryObjectMeta,
    /// Versions, preferred first.
    pub versions: Vec<ApiVersionDiscovery>,
}

/// `apidiscovery.k8s.io` `APIGroupDiscoveryList`: aggregated discovery, every group, version and
/// resource in one document.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiGroupDiscoveryList {
    /// `APIGroupDiscoveryList`.
    pub kind: &'static str,
    /// `apidiscovery.k8s.io/v2` or `apidiscovery.k8s.io/v2beta1`.
    pub api_version: &'static str,
    /// Always `{}`.
    pub metadata: ListMeta,
    /// The groups.
    pub items: Vec<ApiGroupDiscovery>,
}

/// `metav1.Status` for errors.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// `Status`.
    pub kind: &'static str,
    /// `v1`.
    pub api_version: &'static str,
    /// Always `{}`.
    pub metadata: ListMeta,
    /// `Failure`.
    pub status: &'static str,
    /// Human-readable description.
    pub message: String,
    /// Machine-readable reason; omitted when unknown.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub reason: &'static str,
    /// HTTP status code.
    pub code: u16,
}
