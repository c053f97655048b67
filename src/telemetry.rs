//! The adapter's own metrics, served at `/metrics` in the Prometheus text format.
//!
//! One process-wide registry, as Prometheus client libraries conventionally keep: the Prometheus
//! client, discovery, the API and the authentication layer all record into it without threading
//! a handle through every constructor. Label values are bounded (handler classes, status codes,
//! endpoints), never request input.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of served requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `custom_metrics`, `external_metrics`, `resource_metrics`, `discovery`, `health`,
    /// `metrics`, `openapi`, `other`.
    pub handler: String,
    /// HTTP status code.
    pub code: String,
}

/// Labels of calls to Prometheus.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    /// `default` (`--prometheus-url`) or the name of a `backends` entry.
    pub backend: String,
    /// `/api/v1/query` or `/api/v1/series`.
    pub endpoint: String,
}

/// Labels of a discovery gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// `custom` or `external`.
    pub api: String,
}

/// Labels of authentication and authorization outcomes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// For authentication: `front_proxy`, `client_cert`, `token`, `anonymous`, `error`;
    /// for authorization: `allowed`, `denied`, `error`.
    pub result: String,
}

/// Labels naming a rule (`rules[0]`, `externalRules[2]`, `resourceRules.cpu`): bounded by the
/// config.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    /// The rule.
    pub rule: String,
}

/// Labels of answers to metric queries.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// `default` (`--prometheus-url`) or the name of a `backends` entry.
    pub backend: String,
    /// `fetched`, `joined`, `reused` or `stale`.
    pub source: String,
}

/// Every metric the adapter exports.
pub struct Metrics {
    registry: Registry,
    /// Served requests.
    pub requests: Family<RequestLabels, Counter>,
    /// Served request latency.
    pub request_duration: Family<RequestLabels, Histogram>,
    /// Prometheus call latency.
    pub backend_duration: Family<BackendLabels, Histogram>,
    /// Failed Prometheus calls.
    pub backend_errors: Family<BackendLabels, Counter>,
    /// Relist duration.
    pub relist_duration: Histogram,
    /// Distinct series shapes listed at the last relist.
    pub discovered_series: Gauge,
    /// API metrics served, by API.
    pub discovered_metrics: Family<ApiLabels, Gauge>,
    /// Unix time of the last relist in which every query succeeded.
    pub last_successful_relist: Gauge,
    /// Authentication outcomes.
    pub authentications: Family<OutcomeLabels, Counter>,
    /// Authorization outcomes.
    pub authorizations: Family<OutcomeLabels, Counter>,
    /// Authentication and authorization answers served from cache.
    pub auth_cache_hits: Family<OutcomeLabels, Counter>,
    /// Samples dropped because their namespace label is not the requested namespace.
    pub namespace_mismatches: Family<RuleLabels, Counter>,
    /// Requests refused with 429 because `--max-requests-inflight` were being served.
    pub rejected_requests: Counter,
    /// Answers to metric queries, by where they came from.
    pub query_answers: Family<SourceLabels, Counter>,
    /// Config reloads, by outcome.
    pub config_reloads: Family<OutcomeLabels, Counter>,
    /// Targeted series lookups for metrics the registry did not know, by outcome.
    pub targeted_lookups: Family<OutcomeLabels, Counter>,
    /// Unix time of the last config reload that was applied.
    pub config_last_reload_success: Gauge,
    /// 1 when the last look at the rules file applied it (or found it unchanged), 0 when it
    /// was refused and an older file is serving.
    pub config_last_reload_successful: Gauge,
    /// `--metrics-relist-interval`, for alerts on relists failing for several intervals.
    pub relist_interval: Gauge,
    /// `--prometheus-query-timeout`, for alerts on backend latency nearing it.
    pub query_timeout: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Requests being served now.
    pub requests_in_flight: Gauge,
    /// Tasks alive in the async runtime, read at each scrape (a leak shows as growth).
    pub runtime_tasks: Gauge,
}

fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("prom_metrics_adapter");
        let m = Metrics {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency),
            backend_duration: Family::new_with_constructor(latency),
            backend_errors: Family::default(),
            relist_duration: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            discovered_series: Gauge::default(),
            discovered_metrics: Family::default(),
            last_successful_relist: Gauge::default(),
            authentications: Family::default(),
            authorizations: Family::default(),
            auth_cache_hits: Family::default(),
            namespace_mismatches: Family::default(),
            rejected_requests: Counter::default(),
            query_answers: Family::default(),
            config_reloads: Family::default(),
            targeted_lookups: Family::default(),
            config_last_reload_success: Gauge::default(),
            config_last_reload_successful: Gauge::default(),
            relist_interval: Gauge::default(),
            query_timeout: Gauge::default(),
            requests_in_flight: Gauge::default(),
            runtime_tasks: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "Requests served, by handler and status code",
            m.requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Latency of served requests",
            prometheus_client::registry::Unit::Seconds,
            m.request_duration.clone(),
        );
        registry.register_with_unit(
            "prometheus_request_duration",
            "Latency of calls to Prometheus",
            prometheus_client::registry::Unit::Seconds,
            m.backend_duration.clone(),
        );
        registry.register(
            "prometheus_request_errors",
            "Failed calls to Prometheus",
            m.backend_errors.clone(),
        );
        registry.register_with_unit(
            "relist_duration",
            "Duration of series relists",
            prometheus_client::registry::Unit::Seconds,
            m.relist_duration.clone(),
        );
        registry.register(
            "discovered_series",
            "Distinct series listed at the last relist",
            m.discovered_series.clone(),
        );
        registry.register(
            "discovered_metrics",
            "API metrics served, by API",
            m.discovered_metrics.clone(),
        );
        registry.register(
            "last_successful_relist_timestamp_seconds",
            "Unix time of the last relist in which every series query succeeded",
            m.last_successful_relist.clone(),
        );
        registry.register(
            "query_answers",
            "Answers to metric queries: fetched from the backend, joined to an identical call in flight, reused within --query-cache-ttl, or stale (the backend failed; last good answer within --serve-stale-for)",
            m.query_answers.clone(),
        );
        registry.register(
            "config_reload",
            "Reloads of the rules file, by result (success, failure)",
            m.config_reloads.clone(),
        );
        registry.register(
            "targeted_lookups",
            "Series lookups for a metric the registry did not know, by result (found: the metric joined the registry, not_found, failed: a backend could not be asked, skipped: the name was looked for within the last --metrics-relist-interval or the lookup rate bound was reached)",
            m.targeted_lookups.clone(),
        );
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last rules file applied (at start or by a reload)",
            m.config_last_reload_success.clone(),
        );
        registry.register(
            "config_last_reload_successful",
            "1 when the rules file in use is the one on disk, 0 when a changed file was refused",
            m.config_last_reload_successful.clone(),
        );
        registry.register_with_unit(
            "relist_interval",
            "The relist interval (--metrics-relist-interval)",
            prometheus_client::registry::Unit::Seconds,
            m.relist_interval.clone(),
        );
        registry.register_with_unit(
            "prometheus_query_timeout",
            "The timeout of one query (--prometheus-query-timeout)",
            prometheus_client::registry::Unit::Seconds,
            m.query_timeout.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "Requests being served now",
            m.requests_in_flight.clone(),
        );
        registry.register(
            "runtime_tasks",
            "Tasks alive in the async runtime",
            m.runtime_tasks.clone(),
        );
        registry.register(
            "rejected_requests",
            "Requests refused with 429 because --max-requests-inflight requests were in flight",
            m.rejected_requests.clone(),
        );
        registry.register(
            "namespace_mismatch_samples_dropped",
            "Samples dropped because their namespace label is not the requested namespace (a query that does not use <<.LabelMatchers>>)",
            m.namespace_mismatches.clone(),
        );
        registry.register(
            "authentications",
            "Authentication outcomes",
            m.authentications.clone(),
        );
        registry.register(
            "authorizations",
            "Authorization outcomes",
            m.authorizations.clone(),
        );
        registry.register(
            "auth_cache_hits",
            "Authentication and authorization answers served from cache",
            m.auth_cache_hits.clone(),
        );
        Metrics { registry, ..m }
    })
}

impl Metrics {
    /// Logs that `rule` was answered from its last good value, `age` old, because the backend
    /// failed: at most once a minute per rule (the `stale` answers are counted by source).
    pub fn stale_answer(&self, rule: &str, age: Duration) {
        static LOGGED: OnceLock<
            std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
        > = OnceLock::new();
        let now = std::time::Instant::now();
        let due = LOGGED
            .get_or_init(Default::default)
            .lock()
            .map(|mut logged| {
                let due = logged
                    .get(rule)
                    .is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(60));
                if due {
                    logged.insert(rule.to_string(), now);
                }
                due
            })
            .unwrap_or(false);
        if due {
            tracing::warn!(%rule, age_ms = age.as_millis() as u64, "the backend failed; answering with the last good value (--serve-stale-for)");
        }
    }

    /// Records samples of another namespace that `rule`'s answer dropped, and warns once per
    /// rule: the rule's query should carry `<<.LabelMatchers>>`.
    pub fn namespace_mismatch(&self, rule: &str, dropped: usize) {
        if dropped == 0 {
            return;
        }
        self.namespace_mismatches
            .get_or_create(&RuleLabels {
                rule: rule.to_string(),
            })
            .inc_by(dropped as u64);
        static WARNED: OnceLock<std::sync::Mutex<std::collections::HashSet<String>>> =
            OnceLock::new();
        let first = WARNED
            .get_or_init(Default::default)
            .lock()
            .map(|mut w| w.insert(rule.to_string()))
            .unwrap_or(false);
        if first {
            tracing::warn!(
                %rule,
                dropped,
                "the query returned samples of other namespaces; they were dropped. Use <<.LabelMatchers>> in the query so it selects the requested namespace"
            );
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.runtime_tasks
                .set(runtime.metrics().num_alive_tasks() as i64);
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "unable to encode metrics");
        }
        out
    }

    /// Records a Prometheus call.
    pub fn backend_call(&self, backend: &str, endpoint: &str, took: Duration, ok: bool) {
        let labels = BackendLabels {
            backend: backend.to_string(),
            endpoint: endpoint.to_string(),
        };
        self.backend_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if !ok {
            self.backend_errors.get_or_create(&labels).inc();
        }
    }

    /// Counts an outcome.
    pub fn outcome(family: &Family<OutcomeLabels, Counter>, result: &str) {
        family
            .get_or_create(&OutcomeLabels {
                result: result.to_string(),
            })
            .inc();
    }
}

/// The handler class of a path, for request metrics.
pub fn handler_class(path: &str) -> &'static str {
    if path.starts_with("/apis/custom.metrics.k8s.io/") && path.matches('/').count() > 3 {
        "custom_metrics"
    } else if path.starts_with("/apis/external.metrics.k8s.io/") && path.matches('/').count() > 3 {
        "external_metrics"
    } else if path.starts_with("/apis/metrics.k8s.io/") && path.matches('/').count() > 3 {
        "resource_metrics"
    } else if path == "/apis" || path.starts_with("/apis/") {
        "discovery"
    } else if matches!(path, "/healthz" | "/livez" | "/readyz") {
        "health"
    } else if path == "/metrics" {
        "metrics"
    } else if path.starts_with("/openapi") {
        "openapi"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_encode_with_the_prefix_and_conventions() {
        let m = metrics();
        m.requests
            .get_or_create(&RequestLabels {
                handler: "custom_metrics".into(),
                code: "200".into(),
            })
            .inc();
        m.backend_call("default", "/api/v1/query", Duration::from_millis(3), false);
        let text = m.encode();
        assert!(
            text.contains(
                "prom_metrics_adapter_http_requests_total{handler=\"custom_metrics\",code=\"200\"}"
            ),
            "{text}"
        );
        assert!(
            text.contains("prom_metrics_adapter_prometheus_request_duration_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains(
                "prom_metrics_adapter_prometheus_request_errors_total{backend=\"default\",endpoint=\"/api/v1/query\"}"
            ),
            "{text}"
        );
        assert!(
            text.contains("prom_metrics_adapter_last_successful_relist_timestamp_seconds"),
            "{text}"
        );
        assert_eq!(
            handler_class("/apis/custom.metrics.k8s.io/v1beta1/namespaces/a/pods/*/m"),
            "custom_metrics"
        );
        assert_eq!(
            handler_class("/apis/metrics.k8s.io/v1beta1/namespaces/a/pods"),
            "resource_metrics"
        );
        assert_eq!(handler_class("/apis/metrics.k8s.io/v1beta1"), "discovery");
        assert_eq!(
            handler_class("/apis/custom.metrics.k8s.io/v1beta1"),
            "discovery"
        );
        assert_eq!(handler_class("/readyz"), "health");
    }
}
