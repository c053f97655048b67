//! The on-disk shape of a prometheus-adapter rules file.
//!
//! These types mirror prometheus-adapter's `pkg/config` field for field, so a file the Go adapter
//! loads deserialises here unchanged. Unknown keys are rejected (`deny_unknown_fields`) because
//! upstream parses with yaml.v2 `UnmarshalStrict`; duplicate keys are rejected by the YAML reader.
//! Strings that later get compiled (regexes, templates) keep their source position so that a
//! compile error can name the line.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// A string scalar together with where it was written.
///
/// `line` and `column` are 1-based; both are 0 when the key was absent and the default was used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Text {
    /// The scalar's value; an explicit YAML null reads as the empty string, as in yaml.v2.
    pub value: String,
    /// 1-based line of the value, 0 when defaulted.
    pub line: u64,
    /// 1-based column of the value, 0 when defaulted.
    pub column: u64,
}

impl Text {
    /// A text without a source position, for configs built in code.
    pub fn new(value: impl Into<String>) -> Self {
        Text {
            value: value.into(),
            line: 0,
            column: 0,
        }
    }

    /// The value as a `&str`.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// True when the value is empty.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<Option<String>>::deserialize(deserializer)?;
        Ok(Text {
            value: spanned.value.unwrap_or_default(),
            line: spanned.referenced.line(),
            column: spanned.referenced.column(),
        })
    }
}

/// Reads an explicit YAML null as the type's default, as yaml.v2 does for slices, maps and
/// pointers.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The whole rules file (`MetricsDiscoveryConfig` upstream).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricsDiscoveryConfig {
    /// Rules served through `custom.metrics.k8s.io`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub rules: Vec<DiscoveryRule>,
    /// Rules served through `external.metrics.k8s.io`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub external_rules: Vec<DiscoveryRule>,
    /// Rules served through `metrics.k8s.io`; absent means that API is not served.
    #[serde(default)]
    pub resource_rules: Option<ResourceRules>,
    /// Our extension: external metrics whose value follows cron windows (schedule floors).
    #[serde(default, deserialize_with = "null_as_default")]
    pub schedule_rules: Vec<ScheduleRule>,
    /// Our extension: Prometheus-compatible backends besides `--prometheus-url`, which rules
    /// name with `backend:`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub backends: Vec<Backend>,
}

/// A `backends` entry: a named Prometheus-compatible API (Thanos, Mimir, VictoriaMetrics…).
/// Unset fields take the value of the `--prometheus-*` flags, except credentials, which are
/// never inherited: a second backend is often another tenant or another owner.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Backend {
    /// What rules write in `backend:`.
    #[serde(default)]
    pub name: Text,
    /// Base URL; a path prefix (`/prometheus`, `/select/0/prometheus`) is kept.
    #[serde(default)]
    pub url: Text,
    /// Headers sent with every call, such as `X-Scope-OrgID`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub headers: BTreeMap<String, String>,
    /// File holding a bearer token, re-read every minute.
    #[serde(default)]
    pub bearer_token_file: Option<Text>,
    /// CA bundle replacing the system roots.
    #[serde(default)]
    pub ca_file: Option<Text>,
    /// Client certificate for mutual TLS.
    #[serde(default)]
    pub client_cert_file: Option<Text>,
    /// Key of the client certificate.
    #[serde(default)]
    pub client_key_file: Option<Text>,
    /// Timeout of one query (Go duration); default `--prometheus-query-timeout`.
    #[serde(default)]
    pub timeout: Option<Text>,
    /// `GET` or `POST`; default `--prometheus-verb`.
    #[serde(default)]
    pub verb: Option<Text>,
}

/// A `scheduleRules` entry: an external metric that needs no backend, whose value is the
/// highest `replicas` of its active windows, in KEDA's cron-scaler terms.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScheduleRule {
    /// The external metric name served.
    #[serde(default)]
    pub name: Text,
    /// IANA time zone the windows' cron expressions are read in.
    #[serde(default)]
    pub timezone: Text,
    /// Namespaces the metric is served in; empty means every namespace.
    #[serde(default, deserialize_with = "null_as_default")]
    pub namespaces: Vec<Text>,
    /// The windows; the highest `replicas` among the active ones is the value.
    #[serde(default, deserialize_with = "null_as_default")]
    pub windows: Vec<ScheduleWindow>,
}

/// One window of a schedule rule: active from its most recent `start` until the next `end`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScheduleWindow {
    /// Five-field cron expression opening the window.
    #[serde(default)]
    pub start: Text,
    /// Five-field cron expression closing the window.
    #[serde(default)]
    pub end: Text,
    /// The value while the window is active.
    pub replicas: serde_saphyr::Spanned<u32>,
}

/// One custom or external metrics rule.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiscoveryRule {
    /// Sent verbatim as `match[]` to `/api/v1/series`.
    #[serde(default)]
    pub series_query: Text,
    /// Client-side filters on the series name; a series must pass all of them.
    #[serde(default, deserialize_with = "null_as_default")]
    pub series_filters: Vec<RegexFilter>,
    /// How series labels map to Kubernetes resources.
    #[serde(default, deserialize_with = "null_as_default")]
    pub resources: ResourceMapping,
    /// How series names become API metric names.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: NameMapping,
    /// Go template (`<<` `>>` delimiters) rendered into the PromQL sent per request.
    #[serde(default)]
    pub metrics_query: Text,
    /// Our extension, external rules only: what a query with no samples answers. Absent means
    /// upstream's behaviour (an empty list, which the HPA treats as an error).
    #[serde(default)]
    pub empty_result: Option<serde_saphyr::Spanned<EmptyResult>>,
    /// Our extension: the `backends` entry this rule's discovery and queries go to; absent
    /// means `--prometheus-url`.
    #[serde(default)]
    pub backend: Option<Text>,
}

/// What an external metric with no samples answers (`emptyResult`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EmptyResult {
    /// `items: []`, as prometheus-adapter answers.
    #[default]
    Empty,
    /// One item with value `0`: for series that vanish when there is nothing to do (consumer
    /// lag of a group that caught up), so the HPA sees zero instead of an error.
    Zero,
}

/// A `seriesFilters` entry: exactly one of `is` and `isNot`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegexFilter {
    /// The series name must match this (unanchored) regex.
    #[serde(default)]
    pub is: Option<Text>,
    /// The series name must not match this (unanchored) regex.
    #[serde(default)]
    pub is_not: Option<Text>,
}

/// The `resources` block of a rule.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourceMapping {
    /// Template over `.Group` and `.Resource` naming the label of any resource.
    #[serde(default)]
    pub template: Text,
    /// Explicit label → group-resource mappings; they win over the template.
    #[serde(default, deserialize_with = "null_as_default")]
    pub overrides: BTreeMap<String, GroupResource>,
    /// External rules only: whether requests are restricted to their namespace (default true).
    #[serde(default)]
    pub namespaced: Option<bool>,
}

/// A Kubernetes group and resource as written in an override.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(deny_unknown_fields)]
pub struct GroupResource {
    /// API group; empty for the core group.
    #[serde(default, deserialize_with = "null_as_default")]
    pub group: String,
    /// Resource name, plural or singular.
    #[serde(default, deserialize_with = "null_as_default")]
    pub resource: String,
}

/// The `name` block of a rule.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameMapping {
    /// Regex over the series name; empty means `.*`.
    #[serde(default)]
    pub matches: Text,
    /// `regexp.Expand` template over the captures of `matches`.
    #[serde(default, rename = "as")]
    pub as_: Text,
}

/// The `resourceRules` block.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourceRules {
    /// CPU usage queries.
    #[serde(default, deserialize_with = "null_as_default")]
    pub cpu: ResourceRule,
    /// Memory usage queries.
    #[serde(default, deserialize_with = "null_as_default")]
    pub memory: ResourceRule,
    /// Prometheus duration reported as the metrics' window.
    #[serde(default)]
    pub window: Text,
}

/// Queries for one resource (`cpu` or `memory`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourceRule {
    /// Template for per-container usage of pods.
    #[serde(default)]
    pub container_query: Text,
    /// Template for node usage.
    #[serde(default)]
    pub node_query: Text,
    /// Label ↔ resource mapping; must cover pods, namespaces and nodes.
    #[serde(default, deserialize_with = "null_as_default")]
    pub resources: ResourceMapping,
    /// Label that holds the container name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub container_label: String,
}
