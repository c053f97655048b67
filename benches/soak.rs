//! Soak (issue 12): 200 HPA-shaped clients against one adapter process for a long time, with
//! discovery relisting every 30 s against a Prometheus whose series change (every app's pods
//! are replaced by a new generation every two minutes, as rolling deployments do). Prints the
//! adapter's RSS, open file descriptors (with its sockets by kind) and runtime tasks after the
//! warm-up and at six more points to the end; the pass line is flat memory: anonymous memory (heap, stacks) grows
//! under 5 % after the warm-up. File-backed pages are printed too but not judged: they are the
//! binary's code paging in as rarer paths run, shared and reclaimable, not a leak.
//!
//! `cargo bench --bench soak` runs 10 minutes; `cargo bench --bench soak -- --duration 1h` an
//! hour (what README reports). Under `cargo test` it runs a few seconds as a smoke test.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prom_metrics_adapter::cli::local_prometheus::LocalPrometheus;

const APPS: usize = 200;
const PODS: usize = 5;
const GENERATION: i64 = 120;

const RULES: &str = r#"
rules:
- seriesQuery: 'http_requests_total{namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
"#;

/// Samples for `APPS` apps of `PODS` pods from `from` to `to`: each pod generation lives three
/// minutes (a minute of overlap with the next), so the set of current series keeps changing.
fn samples(from: i64, to: i64) -> String {
    let mut s = String::from("# TYPE http_requests counter\n");
    let mut generation = from / GENERATION;
    while generation * GENERATION < to {
        let (g_from, g_to) = (generation * GENERATION, generation * GENERATION + 180);
        for app in 0..APPS {
            for pod in 0..PODS {
                for t in (g_from.max(from)..g_to.min(to)).step_by(15) {
                    writeln!(
                        s,
                        "http_requests_total{{namespace=\"soak\",app=\"app-{app}\",pod=\"app-{app}-{generation}-{pod}\"}} {} {t}",
                        (t - g_from) * (pod as i64 + 1)
                    )
                    .unwrap();
                }
            }
        }
        generation += 1;
    }
    s.push_str("# EOF\n");
    s
}

/// (RSS KiB, open fds) of `pid`.
/// Memory of a process, KiB: all resident pages, and the anonymous ones (heap and stacks)
/// apart from the file-backed ones (the binary's code as it pages in, which is no leak).
struct Memory {
    rss: u64,
    anon: u64,
}

fn process(pid: u32) -> (Memory, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    (
        Memory {
            rss: field("VmRSS:"),
            anon: field("RssAnon:"),
        },
        fds,
    )
}

/// TCP sockets of `pid`: (accepted on port `listen`, connected to port `backend`, other).
fn sockets(pid: u32, listen: u16, backend: u16) -> (usize, usize, usize) {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let port = |addr: &str| {
        addr.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    let (mut inbound, mut outbound, mut other) = (0, 0, 0);
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || !inodes.contains(f[9]) {
                continue;
            }
            // State 0A is LISTEN: the listener itself is not a connection.
            if f[3] == "0A" {
                continue;
            }
            match (port(f[1]), port(f[2])) {
                (Some(l), _) if l == listen => inbound += 1,
                (_, Some(r)) if r == backend => outbound += 1,
                _ => other += 1,
            }
        }
    }
    (inbound, outbound, other)
}

async fn tasks(client: &reqwest::Client, base: &str) -> u64 {
    let text = match client.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => return 0,
    };
    text.lines()
        .find_map(|l| l.strip_prefix("prom_metrics_adapter_runtime_tasks "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn duration_arg() -> Option<Duration> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == "--duration")?;
    let v = args.get(i + 1)?;
    let nanos = prom_metrics_adapter::duration::parse_go_duration(v).ok()?;
    Some(Duration::from_nanos(nanos.max(0) as u64))
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() {
    prom_metrics_adapter::install_crypto_provider();
    let full = std::env::args().any(|a| a == "--bench");
    let total = duration_arg().unwrap_or(if full {
        Duration::from_secs(600)
    } else {
        Duration::from_secs(5)
    });
    let warmup = (total / 10).min(Duration::from_secs(120));
    let (period, relist) = if full {
        (Duration::from_secs(15), "30s")
    } else {
        (Duration::from_secs(1), "1s")
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let to = now + total.as_secs() as i64 + 300;
    let data = samples(now - 600, to);
    let prom = match tokio::task::spawn_blocking(move || LocalPrometheus::start(&data))
        .await
        .unwrap()
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipping the soak: {e}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, RULES).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_prom-metrics-adapter"))
            .args([
                "--standalone".to_string(),
                format!("--config={}", config.display()),
                format!("--prometheus-url={}", prom.url()),
                format!("--listen-address=127.0.0.1:{port}"),
                format!("--metrics-relist-interval={relist}"),
                "--metrics-max-age=1m".into(),
                "--v=0".into(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the adapter"),
    );
    let pid = child.0.id();
    // HTTP/2, as the aggregator talks to the adapter: its requests share one connection. Over
    // HTTP/1 the harness's own overlaps would set how many connections the adapter holds.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let hpas: Vec<_> = (0..APPS)
        .map(|app| {
            let (stop, sent, failed, client) =
                (stop.clone(), sent.clone(), failed.clone(), client.clone());
            let url = format!(
                "{base}/apis/custom.metrics.k8s.io/v1beta2/namespaces/soak/pods/%2A/http_requests_per_second?labelSelector=app%3Dapp-{app}"
            );
            tokio::spawn(async move {
                tokio::time::sleep(period * app as u32 / APPS as u32).await;
                while !stop.load(Ordering::SeqCst) {
                    let ok = match client.get(&url).send().await {
                        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    sent.fetch_add(1, Ordering::SeqCst);
                    if !ok {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::time::sleep(period).await;
                }
            })
        })
        .collect();
    let started = Instant::now();
    let mut readings = Vec::new();
    let backend_port = url::Url::parse(prom.url())
        .ok()
        .and_then(|u| u.port())
        .unwrap_or(0);
    // After the warm-up, then six more readings evenly spaced to the end.
    let points = (0..=6).map(|i| {
        let label = match i {
            0 => "after warm-up".to_string(),
            6 => "end".to_string(),
            _ => format!("{i}/6"),
        };
        (label, warmup + (total - warmup) * i / 6)
    });
    for (label, at) in points {
        tokio::time::sleep(at.saturating_sub(started.elapsed())).await;
        let (memory, fds) = process(pid);
        let tasks = tasks(&client, &base).await;
        let (inbound, outbound, other) = sockets(pid, port, backend_port);
        println!(
            "soak {label:>13} ({:>5.0} s): RSS {:.1} MiB ({:.1} MiB anonymous), {fds} open fds ({inbound} client connections, {outbound} to Prometheus, {other} other sockets), {tasks} runtime tasks, {} requests, {} failed",
            started.elapsed().as_secs_f64(),
            memory.rss as f64 / 1024.0,
            memory.anon as f64 / 1024.0,
            sent.load(Ordering::SeqCst),
            failed.load(Ordering::SeqCst),
        );
        readings.push(memory);
    }
    stop.store(true, Ordering::SeqCst);
    for h in hpas {
        let _ = h.await;
    }
    let (first, last) = (&readings[0], &readings[readings.len() - 1]);
    let growth = |a: u64, b: u64| (b as f64 - a as f64) / a.max(1) as f64 * 100.0;
    println!(
        "soak: {APPS} HPAs every {period:?} for {total:?}, relisting every {relist}: growth after warm-up: RSS {:+.1} %, anonymous memory {:+.1} % (pass line: anonymous memory under 5 %)",
        growth(first.rss, last.rss),
        growth(first.anon, last.anon),
    );
}
