//! Adapter overhead per request on loopback, against a real Prometheus with 50 pods: the same
//! PromQL sent to Prometheus directly versus the metrics API request that renders it. Target
//! (issue 2): ≤ 0.5 ms median overhead. Prints figures; `cargo bench --bench overhead` (needs
//! the Debian `prometheus` package). Under `cargo test` it does a few requests as a smoke test.
//! Also measures query coalescing (issue 12): 20 identical `*` requests in each of 4 sync
//! windows, against the backend calls they cost.

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use prom_metrics_adapter::cli::flags::ServerFlags;
use prom_metrics_adapter::cli::local_prometheus::LocalPrometheus;
use prom_metrics_adapter::cli::{Adapter, build_standalone};
use prom_metrics_adapter::config;

const RULES: &str = r#"
rules:
- seriesQuery: 'http_requests_total{namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
"#;

fn samples() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut s = String::from("# TYPE http_requests counter\n");
    for t in (now - 600..=now + 600).step_by(15) {
        for p in 0..50 {
            writeln!(
                s,
                "http_requests_total{{namespace=\"bench\",pod=\"web-{p}\",app=\"bench\"}} {} {t}",
                (t - now + 600) * (p + 1)
            )
            .unwrap();
        }
    }
    s.push_str("# EOF\n");
    s
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

async fn time_requests(client: &reqwest::Client, url: &str, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let resp = client.get(url).send().await.unwrap();
        assert!(resp.status().is_success(), "{url}: {}", resp.status());
        resp.bytes().await.unwrap();
        out.push(t.elapsed().as_secs_f64() * 1e3);
    }
    out
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { 2000 } else { 5 };
    let prom = match LocalPrometheus::start(&samples()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipping the overhead benchmark: {e}");
            return;
        }
    };
    // No reuse window: every request reaches Prometheus, so the overhead is the adapter's own.
    let base = start_adapter(prom.url(), "0s").await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let direct_one = format!(
        "{}/api/v1/query?query={}",
        prom.url(),
        urlencode(r#"sum(rate(http_requests_total{namespace="bench",pod="web-7"}[2m])) by (pod)"#)
    );
    let names: Vec<String> = (0..50).map(|p| format!("web-{p}")).collect();
    let direct_all = format!(
        "{}/api/v1/query?query={}",
        prom.url(),
        urlencode(&format!(
            r#"sum(rate(http_requests_total{{namespace="bench",pod=~"{}"}}[2m])) by (pod)"#,
            names.join("|")
        ))
    );
    let adapter_one = format!(
        "{base}/apis/custom.metrics.k8s.io/v1beta2/namespaces/bench/pods/web-7/http_requests_per_second"
    );
    let adapter_all = format!(
        "{base}/apis/custom.metrics.k8s.io/v1beta2/namespaces/bench/pods/%2A/http_requests_per_second?labelSelector=app%3Dbench"
    );

    // Warm both connection pools and Prometheus' caches.
    for url in [&direct_one, &direct_all, &adapter_one, &adapter_all] {
        time_requests(&client, url, 20.min(n)).await;
    }
    let mut rows = Vec::new();
    for (label, url) in [
        ("Prometheus directly, one pod", &direct_one),
        ("adapter, one named pod", &adapter_one),
        ("Prometheus directly, 50 pods", &direct_all),
        (
            "adapter, * over 50 pods (standalone: one backend call)",
            &adapter_all,
        ),
    ] {
        let mut v = time_requests(&client, url, n).await;
        rows.push((label, percentile(&mut v, 0.5), percentile(&mut v, 0.99)));
    }
    println!("{n} sequential requests each, one client, loopback:");
    for (label, p50, p99) in &rows {
        println!("  {label:<70} p50 {p50:.3} ms  p99 {p99:.3} ms");
    }
    println!(
        "  adapter overhead at p50: one named pod {:.3} ms, * over 50 pods {:.3} ms",
        rows[1].1 - rows[0].1,
        rows[3].1 - rows[2].1
    );
    coalescing(&client, prom.url(), if full { 4 } else { 1 }).await;
    if full {
        for (label, url) in [
            ("Prometheus directly, 50 pods", &direct_all),
            ("adapter, * over 50 pods", &adapter_all),
        ] {
            let rps = throughput(&client, url, 16, Duration::from_secs(5)).await;
            println!("  16 concurrent clients for 5 s, {label:<40} {rps:.0} requests/s");
        }
    }
}

/// Serves the bench rules in standalone mode with `--query-cache-ttl=<reuse>`; returns the
/// base URL.
async fn start_adapter(prometheus: &str, reuse: &str) -> String {
    let flags = ServerFlags::try_parse_from([
        "bench",
        "--standalone",
        &format!("--prometheus-url={prometheus}"),
        "--listen-address=127.0.0.1:0",
        "--metrics-relist-interval=1h",
        &format!("--query-cache-ttl={reuse}"),
    ])
    .unwrap();
    let raw = config::parse(RULES, "bench").unwrap();
    let Adapter {
        state,
        mut discoverer,
    } = build_standalone(&flags, &raw).unwrap();
    discoverer.relist().await;
    let listener = prom_metrics_adapter::server::bind_standalone(flags.listen_address, false)
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(prom_metrics_adapter::server::serve_plain(
        listener,
        prom_metrics_adapter::api::router(state),
        flags.limits(),
        std::future::pending(),
        Duration::from_secs(1),
    ));
    base
}

/// The backend calls made so far, by endpoint, from the process-wide metrics.
fn backend_calls(endpoint: &str) -> u64 {
    let text = prom_metrics_adapter::telemetry::metrics().encode();
    let needle = format!(
        "prom_metrics_adapter_prometheus_request_duration_seconds_count{{endpoint=\"{endpoint}\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Issue 12's coalescing case: 20 HPAs on the same `pods/*` metric over 50 pods, all asking in
/// the same instant, in `windows` sync periods (15 s apart in a cluster, compressed here to
/// just over the 5 s reuse window). Prints requests against backend calls.
async fn coalescing(client: &reqwest::Client, prometheus: &str, windows: usize) {
    let base = start_adapter(prometheus, "5s").await;
    let url = format!(
        "{base}/apis/custom.metrics.k8s.io/v1beta2/namespaces/bench/pods/%2A/http_requests_per_second"
    );
    let (queries, series) = (
        backend_calls("/api/v1/query"),
        backend_calls("/api/v1/series"),
    );
    for window in 0..windows {
        if window > 0 {
            tokio::time::sleep(Duration::from_millis(5200)).await;
        }
        let hpas: Vec<_> = (0..20)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    let resp = client.get(&url).send().await.unwrap();
                    assert!(resp.status().is_success(), "{}", resp.status());
                    resp.bytes().await.unwrap();
                })
            })
            .collect();
        for h in hpas {
            h.await.unwrap();
        }
    }
    let queries = backend_calls("/api/v1/query") - queries;
    let series = backend_calls("/api/v1/series") - series;
    println!(
        "coalescing: {} requests (20 HPAs × {windows} windows) made {queries} backend queries and {series} series lookups ({:.0}× fewer than one call each)",
        20 * windows,
        (20 * windows) as f64 / (queries + series).max(1) as f64
    );
}

/// Requests per second with `clients` concurrent loops for `for_how_long`.
async fn throughput(
    client: &reqwest::Client,
    url: &str,
    clients: usize,
    for_how_long: Duration,
) -> f64 {
    let deadline = Instant::now() + for_how_long;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_string());
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let resp = client.get(&url).send().await.unwrap();
                    assert!(resp.status().is_success());
                    resp.bytes().await.unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / for_how_long.as_secs_f64()
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
