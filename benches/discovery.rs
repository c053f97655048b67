//! Discovery cost for 100,000 series: decoding the `/api/v1/series` answer and rebuilding the
//! registry, with time and peak heap growth. Target (issue 2): rebuild ≤ 100 ms and ≤ 50 MB peak
//! growth. Then, against a real Prometheus with 100,000, 500,000 and 1,000,000 series
//! (`DISCOVERY_SERIES` to choose), the adapter process from start to its metrics being listed
//! beside Prometheus' own time for the same `/api/v1/series` calls, and the adapter's peak RSS
//! (issue 13: within 10 % of the backend, ≤ 32 MiB at 1M). Prints figures;
//! `cargo bench --bench discovery`. Under `cargo test` it runs once on a small input as a smoke
//! test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

use prom_metrics_adapter::config;
use prom_metrics_adapter::discovery::{Registry, SeriesKey};
use prom_metrics_adapter::query::prometheus::decode_series;
use prom_metrics_adapter::rules::{RestMapper, compile};

/// Counts live and peak heap bytes.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static A: Counting = Counting;

/// The Helm chart's broad default rules: the worst case for rebuilds.
const RULES: &str = include_str!("../tests/fixtures/compat/chart-default-rules.yaml");

/// `/api/v1/series` JSON for `n` series shaped like cAdvisor and application metrics.
fn series_body(n: usize) -> String {
    let mut s = String::from(r#"{"status":"success","data":["#);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        let metric = match i % 4 {
            0 => "container_cpu_usage_seconds_total",
            1 => "container_memory_working_set_bytes",
            2 => "http_requests_total",
            _ => "http_request_duration_seconds_bucket",
        };
        write!(
            s,
            r#"{{"__name__":"{metric}","namespace":"ns-{}","pod":"pod-{i}","container":"c-{}","instance":"10.0.{}.{}:8080","job":"kubelet","service":"svc-{}","le":"{}"}}"#,
            i % 50,
            i % 3,
            i / 250 % 250,
            i % 250,
            i % 40,
            i % 10
        )
        .unwrap();
    }
    s.push_str("]}");
    s
}

fn measure(n: usize, rounds: usize) {
    let body = series_body(n);
    let cfg = compile(
        &config::parse(RULES, "chart").unwrap(),
        &RestMapper::standalone(),
    )
    .unwrap();
    let mapper = RestMapper::standalone();

    let mut decode_ms = Vec::new();
    let mut build_ms = Vec::new();
    let mut peak_growth = 0usize;
    let mut metrics = 0;
    for _ in 0..rounds {
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let t = Instant::now();
        let set = Arc::new(decode_series("bench", body.as_bytes()).unwrap());
        decode_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let answers: HashMap<SeriesKey, Arc<_>> = cfg
            .rules
            .iter()
            .map(|r| (SeriesKey::of(r), set.clone()))
            .collect();
        let t = Instant::now();
        let reg = Registry::build(&cfg, &mapper, &answers, SystemTime::now());
        build_ms.push(t.elapsed().as_secs_f64() * 1e3);
        metrics = reg.custom_keys().len();
        peak_growth = peak_growth.max(PEAK.load(Ordering::Relaxed) - base);
        drop(reg);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "discovery of {n} series ({} MB of JSON): decode median {:.1} ms, registry rebuild median {:.1} ms, \
         peak heap growth {:.1} MB (decode + rebuild, excluding the body), {metrics} API metrics",
        body.len() / 1_000_000,
        med(&mut decode_ms),
        med(&mut build_ms),
        peak_growth as f64 / 1e6
    );
}

/// OpenMetrics for `n` application series, two samples each (a minute apart, ending now).
fn openmetrics(n: usize) -> String {
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut om = String::from("# TYPE http_requests counter\n");
    for i in 0..n {
        for t in [now - 60, now] {
            writeln!(
                om,
                "http_requests_total{{namespace=\"ns-{}\",pod=\"pod-{i}\",instance=\"10.0.{}.{}:8080\",job=\"app\"}} 1 {t}",
                i % 50,
                i / 250 % 250,
                i % 250
            )
            .unwrap();
        }
    }
    om.push_str("# EOF\n");
    om
}

/// Relist against a real Prometheus holding `n` series: the figure comparable with the Go
/// adapter's "discovery until a metric is listed" (spec peer-baseline.md).
fn end_to_end(n: usize) {
    use clap::Parser;
    use prom_metrics_adapter::cli::flags::ServerFlags;
    use prom_metrics_adapter::cli::local_prometheus::LocalPrometheus;
    let om = openmetrics(n);
    let started = Instant::now();
    let prom = match LocalPrometheus::start(&om) {
        Ok(p) => p,
        Err(e) => {
            println!("skipping the end-to-end discovery figure: {e}");
            return;
        }
    };
    let load_s = started.elapsed().as_secs_f64();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let flags = ServerFlags::try_parse_from([
            "bench",
            "--standalone",
            &format!("--prometheus-url={}", prom.url()),
            "--metrics-relist-interval=10m",
        ])
        .unwrap();
        let raw = config::parse(RULES, "chart").unwrap();
        let mut times = Vec::new();
        let mut peak = 0usize;
        for _ in 0..5 {
            let built = prom_metrics_adapter::cli::build_standalone(&flags, &raw).unwrap();
            let mut discoverer = built.discoverer;
            let base = LIVE.load(Ordering::Relaxed);
            PEAK.store(base, Ordering::Relaxed);
            let t = Instant::now();
            let report = discoverer.relist().await;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            peak = peak.max(PEAK.load(Ordering::Relaxed) - base);
            assert!(report.failures.is_empty(), "{:?}", report.failures);
            assert!(!built.state.registry.load().custom_keys().is_empty());
        }
        times.sort_by(f64::total_cmp);
        println!(
            "end-to-end relist against a real Prometheus with {n} series (chart default rules, \
             2 distinct seriesQuery): median {:.0} ms, min {:.0} ms, peak heap growth {:.1} MB \
             (Prometheus loaded in {load_s:.1} s)",
            times[times.len() / 2],
            times[0],
            peak as f64 / 1e6
        );
    });
}

/// From adapter start to the metrics being listed, against a real Prometheus holding `n`
/// series, beside Prometheus' own time to answer the same `/api/v1/series` calls: what is ours
/// is the difference. The adapter runs as its own process (release build, chart default
/// rules, standalone), so its peak RSS is its own.
fn against_the_backend(n: usize) {
    use prom_metrics_adapter::cli::local_prometheus::LocalPrometheus;
    let started = Instant::now();
    let prom = match LocalPrometheus::start(&openmetrics(n)) {
        Ok(p) => p,
        Err(e) => {
            println!("skipping the figure against the backend: {e}");
            return;
        }
    };
    let load_s = started.elapsed().as_secs_f64();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let queries: Vec<String> = {
        let mut q: Vec<String> = compile(
            &config::parse(RULES, "chart").unwrap(),
            &RestMapper::standalone(),
        )
        .unwrap()
        .all_rules()
        .map(|r| r.series_query.clone())
        .collect();
        q.sort();
        q.dedup();
        q
    };
    let http = reqwest::Client::new();
    let mut direct = Vec::new();
    let mut bytes = 0;
    let mut ours = Vec::new();
    let mut peak_kib = 0u64;
    for _ in 0..3 {
        // The adapter's calls: each distinct seriesQuery at once, over --metrics-max-age (10m).
        let t = Instant::now();
        let end = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        bytes = rt
            .block_on(futures_util::future::join_all(queries.iter().map(|q| {
                let req = http.get(format!("{}/api/v1/series", prom.url())).query(&[
                    ("match[]", q.as_str()),
                    ("start", &format!("{:.3}", end - 600.0)),
                    ("end", &format!("{end:.3}")),
                ]);
                async move { req.send().await.unwrap().bytes().await.unwrap().len() }
            })))
            .into_iter()
            .sum::<usize>();
        direct.push(t.elapsed().as_secs_f64());

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("rules.yaml");
        std::fs::write(&config, RULES).unwrap();
        let t = Instant::now();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_prom-metrics-adapter"))
            .args([
                "--standalone".to_string(),
                format!("--config={}", config.display()),
                format!("--prometheus-url={}", prom.url()),
                format!("--listen-address=127.0.0.1:{port}"),
                "--v=0".into(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the adapter");
        let url = format!("http://127.0.0.1:{port}/apis/custom.metrics.k8s.io/v1beta1");
        let listed = rt.block_on(async {
            while t.elapsed() < std::time::Duration::from_secs(120) {
                if let Ok(r) = http.get(&url).send().await
                    && let Ok(v) = r.json::<serde_json::Value>().await
                    && v["resources"].as_array().is_some_and(|r| !r.is_empty())
                {
                    return true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            false
        });
        ours.push(t.elapsed().as_secs_f64());
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
        peak_kib = peak_kib.max(
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0),
        );
        let _ = child.kill();
        let _ = child.wait();
        assert!(listed, "the adapter never listed a metric");
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (direct, ours) = (med(direct), med(ours));
    println!(
        "{n} series: Prometheus' own /api/v1/series answers {direct:.2} s ({:.1} MB); ours, from \
         start to listed, {ours:.2} s ({:+.0} % over the backend), adapter peak RSS {:.1} MiB \
         (medians of 3; Prometheus loaded in {load_s:.0} s)",
        bytes as f64 / 1e6,
        (ours / direct - 1.0) * 100.0,
        peak_kib as f64 / 1024.0
    );
}

fn main() {
    if std::env::args().any(|a| a == "--bench") {
        for n in [10_000, 100_000, 500_000] {
            measure(n, if n > 100_000 { 3 } else { 7 });
        }
        end_to_end(100_000);
        // DISCOVERY_SERIES=500000,1000000 picks the sizes measured against the backend.
        let sizes: Vec<usize> = std::env::var("DISCOVERY_SERIES")
            .ok()
            .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![100_000, 500_000, 1_000_000]);
        for n in sizes {
            against_the_backend(n);
        }
    } else {
        measure(1_000, 1);
    }
}
