//! The server's flags, named and defaulted as prometheus-adapter's (spec §5).

use std::net::SocketAddr;
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

fn go_duration(s: &str) -> Result<Duration, String> {
    parse_go_duration_positive(s).map_err(|e| e.to_string())
}

/// A Go duration that must be more than zero (a zero relist interval would relist in a loop).
fn go_duration_nonzero(s: &str) -> Result<Duration, String> {
    match go_duration(s)? {
        d if d.is_zero() => Err("must be greater than zero".into()),
        d => Ok(d),
    }
}

/// Serves the Kubernetes custom and external metrics APIs from Prometheus.
///
/// Flags keep prometheus-adapter's names and defaults; apiserver, audit and klog flags that are
/// not acted on are accepted with a warning, and positional arguments (such as `/adapter`) are
/// ignored, so existing Deployments work unchanged.
#[derive(Debug, Parser)]
#[command(name = "prom-metrics-adapter", version, about, long_about = None)]
pub struct ServerFlags {
    /// Rules file in prometheus-adapter's format (required).
    #[arg(long)]
    pub config: Option<PathBuf>,

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

    /// kubeconfig for API discovery and object lists (cluster mode); in-cluster config or
    /// `$KUBECONFIG` when not given.
    #[arg(long)]
    pub lister_kubeconfig: Option<PathBuf>,

    /// How often API discovery is refreshed in cluster mode (upstream parses this flag but never
    /// uses it; here it works). 0 means the default, 10m.
    #[arg(long, value_parser = go_duration)]
    pub discovery_interval: Option<Duration>,

    /// Address for plain-HTTP serving (standalone mode, and cluster mode until HTTPS lands).
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

    /// The effective max age.
    pub fn max_age(&self) -> Duration {
        self.metrics_max_age.unwrap_or(self.metrics_relist_interval)
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> ServerFlags {
        ServerFlags::try_parse_from(args).unwrap()
    }

    #[test]
    fn defaults_match_upstream() {
        let f = parse(&["a"]);
        assert_eq!(f.prometheus_url, "https://localhost");
        assert_eq!(f.prometheus_verb, Verb::Get);
        assert_eq!(f.metrics_relist_interval, Duration::from_secs(600));
        assert_eq!(f.max_age(), Duration::from_secs(600));
        assert_eq!(f.verbosity, 0);
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
            f.headers(),
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
