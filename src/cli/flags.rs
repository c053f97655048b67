//! The server's flags, named and defaulted as prometheus-adapter's (spec §5).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser, ValueEnum};

use crate::duration::parse_go_duration_positive;
use crate::query::Verb;

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Output format of the `check` and `explain` subcommands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    Text,
    /// For tools.
    Json,
}

/// What the `check` and `explain` subcommands work on: a rules file, a Prometheus and the
/// discovery look-back the server would use.
#[derive(Clone, Debug, clap::Args)]
pub struct RulesTarget {
    /// The rules file.
    #[arg(long)]
    pub config: PathBuf,
    /// How to reach Prometheus.
    #[command(flatten)]
    pub prometheus: PrometheusArgs,

    /// Another external metrics server sharing `external.metrics.k8s.io`.
    #[command(flatten)]
    pub fallback: FallbackArgs,
    /// The discovery look-back (`--metrics-max-age`).
    #[arg(long, default_value = "10m", value_parser = go_duration)]
    pub metrics_max_age: Duration,
}

/// A Go duration flag value (`1m30s`), not negative.
pub(crate) fn go_duration(s: &str) -> Result<Duration, String> {
    parse_go_duration_positive(s).map_err(|e| e.to_string())
}

/// A Go duration that must be more than zero (a zero relist interval would relist in a loop).
fn go_duration_nonzero(s: &str) -> Result<Duration, String> {
    match go_duration(s)? {
        d if d.is_zero() => Err("must be greater than zero".into()),
        d => Ok(d),
    }
}

/// Another external metrics server (KEDA's metrics apiserver) that answers the external metric
/// names no rule of ours serves.
#[derive(Clone, Debug, clap::Args)]
pub struct FallbackArgs {
    /// Base URL of an external metrics server to forward unserved external metric names to,
    /// such as https://keda-operator-metrics-apiserver.keda.svc:443. Our own names always win.
    #[arg(long)]
    pub external_metrics_fallback: Option<String>,
    /// CA bundle that verifies the fallback's serving certificate (default: the system roots).
    #[arg(long)]
    pub external_metrics_fallback_ca_file: Option<PathBuf>,
    /// Client certificate presented to the fallback (with --external-metrics-fallback-client-key-file).
    #[arg(long)]
    pub external_metrics_fallback_client_cert_file: Option<PathBuf>,
    /// Key of the client certificate presented to the fallback.
    #[arg(long)]
    pub external_metrics_fallback_client_key_file: Option<PathBuf>,
    /// Bearer token file sent to the fallback; default: the pod's service-account token.
    #[arg(long)]
    pub external_metrics_fallback_token_file: Option<PathBuf>,
    /// Timeout of one forwarded request (Go duration).
    #[arg(long, default_value = "10s", value_parser = go_duration_nonzero)]
    pub external_metrics_fallback_timeout: Duration,
}

/// How to reach Prometheus: shared by the server and the `check` and `explain` subcommands.
#[derive(Clone, Debug, clap::Args)]
pub struct PrometheusArgs {
    /// Prometheus base URL; a path prefix (Thanos, Mimir) is kept.
    #[arg(long, default_value = "https://localhost")]
    pub prometheus_url: String,

    /// HTTP verb for Prometheus calls: GET or POST (POST avoids URL length limits).
    #[arg(long, default_value = "GET")]
    pub prometheus_verb: Verb,

    /// Extra header for Prometheus calls, `Key=Value`; repeatable (for example
    /// `X-Scope-OrgID=tenant` for Mimir or Cortex).
    #[arg(long, action = ArgAction::Append)]
    pub prometheus_header: Vec<String>,

    /// File with a bearer token for Prometheus; re-read every minute.
    #[arg(long)]
    pub prometheus_token_file: Option<PathBuf>,

    /// CA bundle that verifies Prometheus' certificate (replaces the system roots).
    #[arg(long)]
    pub prometheus_ca_file: Option<PathBuf>,

    /// Client certificate for mTLS to Prometheus.
    #[arg(long)]
    pub prometheus_client_tls_cert_file: Option<PathBuf>,

    /// Key of the client certificate.
    #[arg(long)]
    pub prometheus_client_tls_key_file: Option<PathBuf>,

    /// kubeconfig whose credentials are used for Prometheus: not supported yet; refused at
    /// start-up rather than silently sending unauthenticated requests.
    #[arg(long)]
    pub prometheus_auth_config: Option<PathBuf>,

    /// Use the pod's service-account token and CA for Prometheus.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = false)]
    pub prometheus_auth_incluster: bool,

    /// Timeout of one Prometheus query (ours; upstream has none).
    #[arg(long, default_value = "30s", value_parser = go_duration_nonzero)]
    pub prometheus_query_timeout: Duration,

    /// Largest series listing read from Prometheus during discovery (bytes, or with a unit:
    /// `512Mi`, `1GiB`); a larger answer fails that `seriesQuery` with an error saying so.
    #[arg(long, default_value = "512Mi", value_parser = byte_size)]
    pub prometheus_max_response_size: u64,

    /// Largest answer read from Prometheus for one query (a metrics request).
    #[arg(long, default_value = "64Mi", value_parser = byte_size)]
    pub prometheus_max_query_response_size: u64,
}

/// A size in bytes, with an optional unit (`512Mi`, `64MiB`, `1G`); more than zero.
fn byte_size(s: &str) -> Result<u64, String> {
    match s.trim().parse::<bytesize::ByteSize>()?.as_u64() {
        0 => Err("must be greater than zero".into()),
        n => Ok(n),
    }
}

impl PrometheusArgs {
    /// `--prometheus-header` values split at the first `=`; `Key` alone gives an empty value.
    pub fn headers(&self) -> Vec<(String, String)> {
        self.prometheus_header
            .iter()
            .map(|h| match h.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (h.clone(), String::new()),
            })
            .collect()
    }
}

/// Serves the Kubernetes custom and external metrics APIs from Prometheus.
///
/// Flags keep prometheus-adapter's names and defaults; apiserver, audit and klog flags that are
/// not acted on are accepted with a warning, and positional arguments (such as `/adapter`) are
/// ignored, so existing Deployments work unchanged.
#[derive(Clone, Debug, Parser)]
#[command(name = "prom-metrics-adapter", version, about, long_about = None)]
pub struct ServerFlags {
    /// Rules file in prometheus-adapter's format (required).
    #[arg(long)]
    pub config: Option<PathBuf>,

    /// How to reach Prometheus.
    #[command(flatten)]
    pub prometheus: PrometheusArgs,

    /// Another external metrics server sharing `external.metrics.k8s.io`.
    #[command(flatten)]
    pub fallback: FallbackArgs,

    /// How often series are relisted (Go duration).
    #[arg(long, default_value = "10m", value_parser = go_duration_nonzero)]
    pub metrics_relist_interval: Duration,

    /// How far back series must have samples to be discovered; defaults to the relist interval.
    #[arg(long, value_parser = go_duration)]
    pub metrics_max_age: Option<Duration>,

    /// Run without a Kubernetes cluster: plain HTTP on --listen-address, built-in resource table,
    /// `*` resolved from the series.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = false)]
    pub standalone: bool,

    /// Serve a CPU profile at `/debug/pprof/profile?seconds=N` (pprof protobuf, or a flame graph
    /// with `&format=svg`), authorized like every non-resource path. On by default, as upstream.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = true)]
    pub profiling: bool,

    /// kubeconfig for API discovery and object lists (cluster mode); in-cluster config or
    /// `$KUBECONFIG` when not given.
    #[arg(long)]
    pub lister_kubeconfig: Option<PathBuf>,

    /// How often API discovery is refreshed in cluster mode (upstream parses this flag but never
    /// uses it; here it works). 0 means the default, 10m.
    #[arg(long, value_parser = go_duration)]
    pub discovery_interval: Option<Duration>,

    /// How long a finished backend answer is reused for identical queries (many HPAs asking
    /// the same within seconds share one call); 0s: never reused, only calls in flight are
    /// shared.
    #[arg(long, default_value = "5s", value_parser = go_duration)]
    pub query_cache_ttl: Duration,

    /// When the backend fails, answer with the last good answer to the same query if it is
    /// younger than this (its samples keep the time they were computed at); 0s (the
    /// default): never, the request fails.
    #[arg(long, default_value = "0s", value_parser = go_duration)]
    pub serve_stale_for: Duration,

    /// After SIGTERM, how long the server keeps answering while `/readyz` fails, so endpoints
    /// and the aggregator stop sending before it stops accepting (kube-apiserver's flag name;
    /// its default is 0, ours 10s so a rolling restart drops nothing).
    #[arg(long, default_value = "10s", value_parser = go_duration)]
    pub shutdown_delay_duration: Duration,

    /// After that delay, how long requests in flight get to finish before the process exits.
    #[arg(long, default_value = "30s", value_parser = go_duration)]
    pub shutdown_timeout: Duration,

    /// Requests served at once; beyond it a request is answered 429 with `Retry-After: 1`
    /// (health paths and `system:masters` excepted). 0: no limit.
    #[arg(long, default_value_t = 400)]
    pub max_requests_inflight: usize,

    /// Time a request may take before it is answered 504 (Go duration).
    #[arg(long, default_value = "1m", value_parser = go_duration_nonzero)]
    pub request_timeout: Duration,

    /// Where audit events go, one JSON `audit.k8s.io/v1` Event per line; `-` for standard
    /// output. Nothing is recorded without `--audit-policy-file`, as in kube-apiserver.
    #[arg(long)]
    pub audit_log_path: Option<String>,

    /// The audit policy (`audit.k8s.io/v1` `Policy`): which requests are recorded, at which
    /// level.
    #[arg(long)]
    pub audit_policy_file: Option<PathBuf>,

    /// Days to keep rotated audit logs; 0 keeps them regardless of age.
    #[arg(long, default_value_t = 0)]
    pub audit_log_maxage: u64,

    /// Rotated audit logs kept; 0 keeps all.
    #[arg(long, default_value_t = 0)]
    pub audit_log_maxbackup: usize,

    /// Size in megabytes at which the audit log is rotated; 0 means 100, as kube-apiserver's.
    #[arg(long, default_value_t = 0)]
    pub audit_log_maxsize: u64,

    /// Format of audit lines: `json` (the only one written; `legacy` is refused).
    #[arg(long, default_value = "json")]
    pub audit_log_format: String,

    /// Requests per second to the Kubernetes API (discovery, object lists and watches), as
    /// client-go's rate limiter; 0 or less: no limit. TokenReviews and SubjectAccessReviews
    /// use k8s.io/apiserver's own, higher, rate (200/s, burst 400).
    #[arg(long, default_value_t = 5.0, allow_negative_numbers = true)]
    pub client_qps: f32,

    /// Requests to the Kubernetes API that may go at once above `--client-qps`.
    #[arg(long, default_value_t = 10)]
    pub client_burst: u32,

    /// How long the object watch of a resource kind (started by the first `*` request for it)
    /// runs without being used before it is stopped (cluster mode).
    #[arg(long, default_value = "30m", value_parser = go_duration_nonzero)]
    pub object_watch_idle_timeout: Duration,

    /// Address for HTTPS serving (cluster mode).
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,

    /// Port for HTTPS serving (cluster mode); upstream's default, our manifests pass 6443.
    #[arg(long, default_value_t = 443)]
    pub secure_port: u16,

    /// Where a self-signed serving certificate is written when none is given.
    #[arg(long, default_value = "apiserver.local.config/certificates")]
    pub cert_dir: PathBuf,

    /// Manage the serving certificate in this Secret (in `--cert-secret-namespace`): a CA
    /// and a certificate for `--cert-service-name`, shared by every replica, renewed before
    /// expiry, its CA kept in the `caBundle` of `--cert-apiservices`. Excludes
    /// `--tls-cert-file`.
    #[arg(long)]
    pub cert_secret_name: Option<String>,

    /// Namespace of that Secret and of the Service; defaults to the pod's own namespace.
    #[arg(long)]
    pub cert_secret_namespace: Option<String>,

    /// The Service the APIServices point at; the certificate is for its DNS names.
    #[arg(long, default_value = "prom-metrics-adapter")]
    pub cert_service_name: String,

    /// APIServices whose `caBundle` is kept equal to the managed CA (those not registered are
    /// skipped).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "v1beta1.custom.metrics.k8s.io,v1beta2.custom.metrics.k8s.io,v1beta1.external.metrics.k8s.io,v1beta1.metrics.k8s.io"
    )]
    pub cert_apiservices: Vec<String>,

    /// How often the managed Secret and the APIServices' bundles are checked.
    #[arg(long, default_value = "1m", value_parser = go_duration_nonzero)]
    pub cert_resync_interval: Duration,

    /// How long a replaced CA stays in the bundle after a CA rotation.
    #[arg(long, default_value = "10m", value_parser = go_duration)]
    pub cert_ca_rotation_grace: Duration,

    /// Serving certificate (PEM, chain); reloaded when it changes.
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,

    /// Serving key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,

    /// Minimum TLS version: VersionTLS12 (default) or VersionTLS13.
    #[arg(long)]
    pub tls_min_version: Option<String>,

    /// TLS 1.2 cipher suites by Go/IANA name, comma-separated; names not supported here are
    /// ignored with a warning.
    #[arg(long, value_delimiter = ',')]
    pub tls_cipher_suites: Vec<String>,

    /// kubeconfig for TokenReviews and the authentication ConfigMap; defaults to the lister's.
    #[arg(long)]
    pub authentication_kubeconfig: Option<PathBuf>,

    /// How long TokenReview answers are cached.
    #[arg(long, default_value = "10s", value_parser = go_duration)]
    pub authentication_token_webhook_cache_ttl: Duration,

    /// Do not read kube-system/extension-apiserver-authentication; use the flags only.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = false)]
    pub authentication_skip_lookup: bool,

    /// Start even when the authentication ConfigMap cannot be read.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = false)]
    pub authentication_tolerate_lookup_failure: bool,

    /// CA bundle for client certificates (user = CN, groups = O).
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,

    /// CA bundle for the front proxy's client certificate.
    #[arg(long)]
    pub requestheader_client_ca_file: Option<PathBuf>,

    /// Common names allowed for the front proxy's certificate; empty allows any.
    #[arg(long, value_delimiter = ',')]
    pub requestheader_allowed_names: Vec<String>,

    /// Headers holding the user name.
    #[arg(long, value_delimiter = ',', default_value = "x-remote-user")]
    pub requestheader_username_headers: Vec<String>,

    /// Headers holding groups.
    #[arg(long, value_delimiter = ',', default_value = "x-remote-group")]
    pub requestheader_group_headers: Vec<String>,

    /// Prefixes of headers holding extra attributes.
    #[arg(long, value_delimiter = ',', default_value = "x-remote-extra-")]
    pub requestheader_extra_headers_prefix: Vec<String>,

    /// Headers holding the UID.
    #[arg(long, value_delimiter = ',')]
    pub requestheader_uid_headers: Vec<String>,

    /// kubeconfig for SubjectAccessReviews; defaults to the lister's.
    #[arg(long)]
    pub authorization_kubeconfig: Option<PathBuf>,

    /// How long allowed answers are cached.
    #[arg(long, default_value = "10s", value_parser = go_duration)]
    pub authorization_webhook_cache_authorized_ttl: Duration,

    /// How long denied answers are cached.
    #[arg(long, default_value = "10s", value_parser = go_duration)]
    pub authorization_webhook_cache_unauthorized_ttl: Duration,

    /// Paths served without authentication or authorization.
    #[arg(long, value_delimiter = ',', default_value = "/healthz,/readyz,/livez")]
    pub authorization_always_allow_paths: Vec<String>,

    /// How often the serving certificate files are checked for rotation.
    #[arg(long, default_value = "10s", value_parser = go_duration_nonzero)]
    pub cert_reload_interval: Duration,

    /// How often the authentication ConfigMap and CA files are re-read (CA rotation).
    #[arg(long, default_value = "30s", value_parser = go_duration_nonzero)]
    pub authentication_config_refresh_interval: Duration,

    /// Address for plain-HTTP serving (standalone mode).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen_address: SocketAddr,

    /// Allow standalone serving on a non-loopback address (no TLS, no authentication).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = false)]
    pub allow_insecure_remote: bool,

    /// Refuse to start when a rule can never work (instead of answering 500 for its metrics).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = false)]
    pub strict_config: bool,

    /// Disable HTTP/2 on the serving side.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = false)]
    pub disable_http2: bool,

    /// klog-style verbosity: 0–1 info, 2–4 debug, 5 and more trace. RUST_LOG overrides.
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: u8,

    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Ignored positional arguments (the chart passes `/adapter`).
    #[arg(hide = true)]
    pub positional: Vec<String>,
}

impl ServerFlags {
    /// The effective API discovery refresh interval.
    pub fn discovery_interval(&self) -> Duration {
        self.discovery_interval
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(600))
    }

    /// The request limits (`--max-requests-inflight`, `--request-timeout`); health paths are
    /// exempt.
    pub fn limits(&self) -> std::sync::Arc<crate::server::limits::Limits> {
        self.limits_draining(Default::default())
    }

    /// [`ServerFlags::limits`], closing connections after each answer once `draining` is set.
    pub fn limits_draining(
        &self,
        draining: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> std::sync::Arc<crate::server::limits::Limits> {
        std::sync::Arc::new(
            crate::server::limits::Limits::new(
                self.max_requests_inflight,
                self.request_timeout,
                vec!["/healthz".into(), "/livez".into(), "/readyz".into()],
            )
            .draining(draining),
        )
    }

    /// The rate of calls to the Kubernetes API (`--client-qps`, `--client-burst`).
    pub fn client_rate(&self) -> crate::k8s::throttle::Rate {
        crate::k8s::throttle::Rate {
            qps: self.client_qps,
            burst: self.client_burst,
        }
    }

    /// The effective max age.
    pub fn max_age(&self) -> Duration {
        self.metrics_max_age.unwrap_or(self.metrics_relist_interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> ServerFlags {
        ServerFlags::try_parse_from(args).unwrap()
    }

    #[test]
    fn defaults_match_upstream() {
        let f = parse(&["a"]);
        assert_eq!(f.prometheus.prometheus_url, "https://localhost");
        assert_eq!(f.prometheus.prometheus_verb, Verb::Get);
        assert_eq!(f.metrics_relist_interval, Duration::from_secs(600));
        assert_eq!(f.max_age(), Duration::from_secs(600));
        assert_eq!(f.verbosity, 0);
    }

    #[test]
    fn response_size_limits_take_units_and_refuse_zero() {
        let f = parse(&["a"]);
        assert_eq!(f.prometheus.prometheus_max_response_size, 512 << 20);
        assert_eq!(f.prometheus.prometheus_max_query_response_size, 64 << 20);
        let f = parse(&[
            "a",
            "--prometheus-max-response-size=1GiB",
            "--prometheus-max-query-response-size=1500",
        ]);
        assert_eq!(f.prometheus.prometheus_max_response_size, 1 << 30);
        assert_eq!(f.prometheus.prometheus_max_query_response_size, 1500);
        for bad in ["0", "lots", "-5Mi"] {
            assert!(
                ServerFlags::try_parse_from([
                    "a",
                    &format!("--prometheus-max-response-size={bad}")
                ])
                .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn header_flags_repeat_and_split_at_the_first_equals() {
        let f = parse(&[
            "a",
            "--prometheus-header=foo=bar",
            "--prometheus-header",
            "bux=baz=23",
            "--prometheus-header=lone",
        ]);
        assert_eq!(
            f.prometheus.headers(),
            [
                ("foo".to_string(), "bar".to_string()),
                ("bux".to_string(), "baz=23".to_string()),
                ("lone".to_string(), String::new())
            ]
        );
    }

    #[test]
    fn go_durations_and_bools_parse() {
        let f = parse(&[
            "a",
            "--metrics-relist-interval=1m30s",
            "--metrics-max-age",
            "1.5h",
            "--standalone",
            "--strict-config=false",
            "-v=4",
            "/adapter",
        ]);
        assert_eq!(f.metrics_relist_interval, Duration::from_secs(90));
        assert_eq!(f.max_age(), Duration::from_secs(5400));
        assert!(f.standalone);
        assert!(!f.strict_config);
        assert_eq!(f.verbosity, 4);
        assert_eq!(f.positional, ["/adapter"]);
        assert!(ServerFlags::try_parse_from(["a", "--metrics-relist-interval=1d"]).is_err());
        assert!(ServerFlags::try_parse_from(["a", "--prometheus-verb=PUT"]).is_err());
        assert!(ServerFlags::try_parse_from(["a", "--metrics-relist-interval=0s"]).is_err());
        assert!(ServerFlags::try_parse_from(["a", "--prometheus-query-timeout=0"]).is_err());
    }
}
