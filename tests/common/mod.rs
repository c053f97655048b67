//! Shared harness for the integration tests: one real Prometheus per test binary, loaded once
//! with every fixture, and an in-process standalone adapter per test on a free loopback port.

#![allow(dead_code)]

pub mod fake_kube;
pub mod proxy;
pub mod rbac;
pub mod secure;
pub mod tools;

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use prom_metrics_adapter::cli::flags::ServerFlags;
use prom_metrics_adapter::cli::local_prometheus::LocalPrometheus;
use prom_metrics_adapter::cli::{Adapter as Built, build_cluster, build_standalone};
use prom_metrics_adapter::config;

/// Per-pod request rates of the fixture: (namespace, pod, app, method, requests per second).
pub const FLASK_PODS: &[(&str, &str, &str, &str, f64)] = &[
    ("default", "web-1", "web", "GET", 1.0),
    ("default", "web-1", "web", "POST", 0.5),
    ("default", "web-2", "web", "GET", 2.5),
    ("default", "worker-1", "worker", "GET", 4.0),
    ("other", "web-9", "web", "GET", 10.0),
];

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Every fixture series, from now−10 m to now+3 m every 15 s (DECISIONS §8).
pub fn fixture_samples() -> String {
    let start = now() - 600;
    let end = now() + 180;
    let times: Vec<i64> = (start..=end).step_by(15).collect();
    let mut out = String::new();
    out.push_str("# TYPE flask_http_request counter\n");
    for &t in &times {
        for (ns, pod, app, method, rate) in FLASK_PODS {
            let v = (t - start) as f64 * rate;
            writeln!(out, "flask_http_request_total{{namespace=\"{ns}\",pod=\"{pod}\",app=\"{app}\",method=\"{method}\"}} {v} {t}").unwrap();
        }
    }
    // cAdvisor-shaped series, for the chart's default rules.
    out.push_str("# TYPE container_cpu_usage_seconds counter\n");
    for &t in &times {
        for (pod, container) in [("web-1", "app"), ("web-2", "app"), ("worker-1", "worker")] {
            writeln!(out, "container_cpu_usage_seconds_total{{namespace=\"default\",pod=\"{pod}\",container=\"{container}\",job=\"kubelet\",service=\"kubelet\"}} {} {t}", (t - start) as f64 * 0.2).unwrap();
        }
    }
    out.push_str("# TYPE container_memory_working_set_bytes gauge\n");
    for &t in &times {
        for (pod, container) in [("web-1", "app"), ("web-2", "app"), ("worker-1", "worker")] {
            writeln!(out, "container_memory_working_set_bytes{{namespace=\"default\",pod=\"{pod}\",container=\"{container}\",job=\"kubelet\",service=\"kubelet\"}} 1048576 {t}").unwrap();
        }
    }
    out.push_str("# TYPE worker_busy_threads gauge\n");
    for &t in &times {
        for (pod, thread_pool, v) in [
            ("worker-1", "io", 3),
            ("worker-1", "cpu", 4),
            ("web-1", "io", 1),
        ] {
            writeln!(out, "worker_busy_threads{{namespace=\"default\",pod=\"{pod}\",pool=\"{thread_pool}\"}} {v} {t}").unwrap();
        }
    }
    let gauges: &[(&str, &str, &str)] = &[
        ("queue_items", "namespace=\"default\"", "42"),
        ("queue_items", "namespace=\"other\"", "7"),
        (
            "node_load_ratio",
            "node=\"node-a\",instance=\"10.0.0.1:9100\"",
            "0.75",
        ),
        (
            "node_load_ratio",
            "node=\"node-b\",instance=\"10.0.0.2:9100\"",
            "1.5",
        ),
        (
            "deployment_inflight",
            "namespace=\"default\",deployment=\"web\"",
            "20.5",
        ),
        ("odd_nan", "namespace=\"default\",pod=\"web-1\"", "NaN"),
        ("odd_inf", "namespace=\"default\",pod=\"web-1\"", "+Inf"),
        ("broken_total", "namespace=\"default\",pod=\"web-1\"", "1"),
        (
            "queue_length",
            "namespace=\"default\",queue=\"orders\"",
            "120",
        ),
        (
            "queue_length",
            "namespace=\"default\",queue=\"emails\"",
            "7",
        ),
    ];
    let mut last = "";
    for (name, labels, v) in gauges {
        if *name != last {
            writeln!(out, "# TYPE {name} gauge").unwrap();
            last = name;
        }
        for &t in &times {
            writeln!(out, "{name}{{{labels}}} {v} {t}").unwrap();
        }
    }
    out.push_str("# EOF\n");
    out
}

/// The shared Prometheus of this test binary.
pub fn prometheus() -> &'static LocalPrometheus {
    static PROM: OnceLock<LocalPrometheus> = OnceLock::new();
    PROM.get_or_init(|| LocalPrometheus::start(&fixture_samples()).expect("start Prometheus"))
}

/// A running standalone adapter.
pub struct Adapter {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// HTTP client.
    pub http: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Adapter {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Adapter {
    /// Starts an adapter on `config_yaml` against `prometheus_url` with `extra` flags (add
    /// `--standalone` for standalone mode, or `--lister-kubeconfig=…` for cluster mode), with
    /// discovery done once before it serves.
    pub async fn start_with(config_yaml: &str, prometheus_url: &str, extra: &[&str]) -> Adapter {
        Adapter::start_inner(config_yaml, prometheus_url, extra, false).await
    }

    /// [`Adapter::start_with`], with discovery relisting on its interval afterwards (pass
    /// `--metrics-relist-interval` to set it), as a running server does.
    pub async fn start_relisting(
        config_yaml: &str,
        prometheus_url: &str,
        extra: &[&str],
    ) -> Adapter {
        Adapter::start_inner(config_yaml, prometheus_url, extra, true).await
    }

    async fn start_inner(
        config_yaml: &str,
        prometheus_url: &str,
        extra: &[&str],
        keep_relisting: bool,
    ) -> Adapter {
        prom_metrics_adapter::install_crypto_provider();
        let mut args = vec!["adapter".to_string()];
        // Defaults, unless `extra` sets the same flag.
        for default in [
            format!("--prometheus-url={prometheus_url}"),
            "--listen-address=127.0.0.1:0".into(),
            "--metrics-relist-interval=1h".into(),
            "--prometheus-query-timeout=5s".into(),
        ] {
            let name = default.split('=').next().unwrap().to_string() + "=";
            if !extra.iter().any(|e| e.starts_with(&name)) {
                args.push(default);
            }
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let flags = ServerFlags::try_parse_from(args).expect("flags");
        let raw = config::parse(config_yaml, "test config").expect("config");
        let built = if flags.standalone {
            build_standalone(&flags, &raw).expect("build standalone adapter")
        } else {
            build_cluster(&flags, &raw)
                .await
                .expect("build cluster adapter")
        };
        let Built {
            state,
            mut discoverer,
        } = built;
        discoverer.relist().await;
        if keep_relisting {
            let (first, _) = tokio::sync::watch::channel(true);
            tokio::spawn(discoverer.run(first));
        }
        state
            .ready
            .store(true, std::sync::atomic::Ordering::Release);
        let listener = prom_metrics_adapter::server::bind_standalone(flags.listen_address, false)
            .await
            .expect("bind");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let router = prom_metrics_adapter::api::router(state);
        tokio::spawn(prom_metrics_adapter::server::serve_plain(
            listener,
            router,
            flags.limits(),
            async move {
                let _ = rx.await;
            },
            Duration::from_secs(1),
        ));
        Adapter {
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            shutdown: Some(tx),
        }
    }

    /// Starts a standalone adapter on the shared Prometheus.
    pub async fn start(config_yaml: &str) -> Adapter {
        let url = prometheus().url().to_string();
        Adapter::start_with(config_yaml, &url, &["--standalone"]).await
    }

    /// GETs a path; returns the status and the parsed JSON body.
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("Accept", "application/vnd.kubernetes.protobuf, */*")
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, body)
    }
}

/// Parses a Kubernetes quantity as the adapter writes it (DecimalSI, milli precision).
pub fn parse_quantity(q: &str) -> f64 {
    let (num, mult) = match q.chars().last() {
        Some('m') => (&q[..q.len() - 1], 1e-3),
        Some('k') => (&q[..q.len() - 1], 1e3),
        Some('M') => (&q[..q.len() - 1], 1e6),
        Some('G') => (&q[..q.len() - 1], 1e9),
        Some('T') => (&q[..q.len() - 1], 1e12),
        _ => (q, 1.0),
    };
    num.parse::<f64>()
        .unwrap_or_else(|_| panic!("bad quantity {q}"))
        * mult
}

/// Current Unix time in seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Reads a fixture file.
pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// A `/metrics` text exposition, parsed with prometheus-parse.
pub fn scrape(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{text}"))
}

/// The value of the sample `name` whose labels include `labels` (a counter, a gauge, or a
/// histogram's `_count`/`_sum`), if `/metrics` has one.
pub fn sample_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape(text)
        .samples
        .into_iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .find_map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

/// The adapter's own `/metrics` text.
pub async fn metrics_text(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
