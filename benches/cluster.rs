//! The HPA's request in cluster mode (issue 13, point 3), against the Prometheus it queries.
//!
//! A real Prometheus holds 50 and 500 pods' request counters; the fake Kubernetes API of
//! `tests/common` serves those pods (list and watch), the authentication ConfigMap and RBAC;
//! the adapter runs as its own process (release build) in cluster mode with the chart's default
//! rules, and is called as the aggregator calls it: HTTPS, the front-proxy client certificate,
//! the HPA controller's identity in `X-Remote-*` headers, protobuf-first `Accept`,
//! `pods/%2A/…?labelSelector=app%3Dbench`. The load generator is `oha` (installed from
//! crates.io under `target/bench-tools` on first use), which sends the same PromQL straight to
//! Prometheus for the comparison.
//!
//! Prints, per pod count: p50/p99 at one client for both and what the adapter adds, requests/s
//! at 16 clients for both and the adapter's share, the adapter's CPU per 1,000 requests (at one
//! client, where each request is computed alone, and at 16, where identical ones share), and
//! its RSS idle (after start-up and one relist) and at the peak of the load. `--query-cache-ttl`
//! is 0 so that every request is computed; identical requests in flight are still shared.
//!
//! `cargo bench --bench cluster`; under `cargo test` it checks the request path once (no oha).

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::fake_kube::FakeKube;
use common::secure::{Ca, HPA_HEADERS, auth_configmap};
use prom_metrics_adapter::cli::local_prometheus::LocalPrometheus;
use serde_json::Value;

const RULES: &str = include_str!("../tests/fixtures/compat/chart-default-rules.yaml");
/// The chart's rules name `flask_http_request_total` `flask_http_request` (`as: ""`).
const METRIC: &str = "flask_http_request";

fn pod_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("bench-{n}-{i:03}")).collect()
}

/// Counters for each pod count's pods, every 15 s from 10 minutes ago to 15 minutes ahead.
fn samples(sets: &[usize]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut out = String::from("# TYPE flask_http_request counter\n");
    for t in (now - 600..now + 900).step_by(15) {
        for &n in sets {
            for (i, pod) in pod_names(n).iter().enumerate() {
                out.push_str(&format!(
                    "flask_http_request_total{{namespace=\"bench-{n}\",pod=\"{pod}\",app=\"bench\"}} {} {t}\n",
                    (t - now + 600) * (i as i64 % 7 + 1)
                ));
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// (utime + stime in seconds, VmRSS KiB, VmHWM KiB) of `pid`.
fn usage(pid: u32) -> (f64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    (
        ticks / clock_ticks(),
        status_kib(pid, "VmRSS:"),
        status_kib(pid, "VmHWM:"),
    )
}

/// A KiB figure of `/proc/<pid>/status` (`VmRSS:`, `RssAnon:`…), 0 when unreadable.
fn status_kib(pid: u32, name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Resident KiB (all, and of that anonymous) per mapped file or kind of anonymous memory,
/// largest first, from `/proc/<pid>/smaps`.
fn print_mappings(pid: u32) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut totals: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    let mut current = String::new();
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's header: range, perms, offset, dev, inode, [path].
            let perms = words.next().unwrap_or("");
            let path = words.nth(3).unwrap_or("[anonymous]");
            current = format!("{path} {perms}");
        } else if let Some(kib) = words.next().and_then(|v| v.parse::<u64>().ok()) {
            let entry = totals.entry(current.clone()).or_default();
            match first {
                "Rss:" => entry.0 += kib,
                "Anonymous:" => entry.1 += kib,
                _ => {}
            }
        }
    }
    let mut rows: Vec<_> = totals
        .into_iter()
        .filter(|(_, (rss, _))| *rss > 0)
        .collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.1.0));
    for (mapping, (rss, anon)) in rows {
        println!("  {rss:>6} KiB resident, {anon:>6} KiB anonymous: {mapping}");
    }
}

/// How many of `src/function-order.txt`'s names the adapter binary defines, and how many the
/// file holds, from `nm` (None without it). Far fewer found than listed means the file is
/// stale (a dependency or toolchain update renamed them), and idle RSS grows: rerun
/// `scripts/order-functions.sh`.
fn ordered_functions_found(binary: &str) -> Option<(usize, usize)> {
    let out = Command::new("nm")
        .args(["--defined-only", binary])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let defined: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2))
        .collect();
    let order = include_str!("../src/function-order.txt");
    let listed: Vec<&str> = order.lines().filter(|l| !l.is_empty()).collect();
    let found = listed.iter().filter(|n| defined.contains(*n)).count();
    Some((found, listed.len()))
}

/// `CLK_TCK`, asked once.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

struct Child(std::process::Child);

impl Drop for Child {
    /// Stops the adapter as Kubernetes does (SIGTERM, then SIGKILL after a grace period), so
    /// that a tool it runs under can write its output at exit.
    fn drop(&mut self) {
        // SAFETY: kill(2) with a pid this process started and has not yet reaped.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        for _ in 0..1200 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `oha`, installed under `target/bench-tools` when it is not on `PATH`.
fn oha() -> Option<PathBuf> {
    if Command::new("oha").arg("--version").output().is_ok() {
        return Some("oha".into());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-tools");
    let bin = root.join("bin/oha");
    if !bin.exists() {
        eprintln!("installing oha into {} (once)…", root.display());
        let mut install = Command::new(env!("CARGO"));
        // oha's own rust-toolchain file names a toolchain this machine may not have: build it
        // with the compiler beside the cargo running this bench, not through rustup's choice.
        if let Some(rustc) = Path::new(env!("CARGO"))
            .parent()
            .map(|d| d.join("rustc"))
            .filter(|r| r.exists())
        {
            install.env("RUSTC", rustc);
        }
        let ok = install
            .args(["install", "oha", "--locked", "--root"])
            .arg(&root)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return None;
        }
    }
    Some(bin)
}

/// One oha run's figures.
#[derive(Debug, Clone, Copy)]
struct Run {
    p50_ms: f64,
    p99_ms: f64,
    rate: f64,
    requests: f64,
    failed: f64,
}

/// Runs oha against `url` with `clients` for `amount` (`-n N` or `-z 10s`).
fn load(oha: &Path, url: &str, clients: usize, amount: &[&str], tls: Option<&TlsFiles>) -> Run {
    let mut cmd = Command::new(oha);
    cmd.args(["--no-tui", "--output-format", "json", "-c"])
        .arg(clients.to_string())
        .args(amount);
    if let Some(t) = tls {
        cmd.arg("--insecure")
            .arg("--cert")
            .arg(&t.cert)
            .arg("--key")
            .arg(&t.key);
        for (k, v) in HPA_HEADERS {
            cmd.arg("-H").arg(format!("{k}: {v}"));
        }
        cmd.args(["-H", "Accept: application/vnd.kubernetes.protobuf, */*"]);
    }
    let out = cmd
        .arg(url)
        .stderr(Stdio::inherit())
        .output()
        .expect("run oha");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "oha's output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let ok = v["statusCodeDistribution"]["200"].as_f64().unwrap_or(0.0);
    let all: f64 = v["statusCodeDistribution"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_f64).sum())
        .unwrap_or(0.0);
    // `-z` stops the clock with requests in flight; oha counts those as aborted, not failed.
    let errors: f64 = v["errorDistribution"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !k.contains("deadline"))
                .filter_map(|(_, v)| v.as_f64())
                .sum()
        })
        .unwrap_or(0.0);
    if let Some(m) = v["errorDistribution"].as_object()
        && !m.is_empty()
    {
        eprintln!("oha errors: {m:?}");
    }
    Run {
        p50_ms: v["latencyPercentiles"]["p50"].as_f64().unwrap_or(f64::NAN) * 1e3,
        p99_ms: v["latencyPercentiles"]["p99"].as_f64().unwrap_or(f64::NAN) * 1e3,
        rate: v["summary"]["requestsPerSec"].as_f64().unwrap_or(f64::NAN),
        requests: all + errors,
        failed: all - ok + errors,
    }
}

struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
}

/// Prints the functions with the most CPU samples, by self and by cumulative (inclusive) count.
fn summarize_profile(bytes: &[u8]) {
    use pprof::protos::Message as _;
    use std::collections::{HashMap, HashSet};
    let Ok(p) = pprof::protos::Profile::decode(bytes) else {
        eprintln!(
            "the profile does not decode: {}",
            String::from_utf8_lossy(bytes)
        );
        return;
    };
    let functions: HashMap<u64, &str> = p
        .function
        .iter()
        .map(|f| (f.id, p.string_table[f.name as usize].as_str()))
        .collect();
    let locations: HashMap<u64, Vec<&str>> = p
        .location
        .iter()
        .map(|l| {
            let names = l
                .line
                .iter()
                .map(|line| functions.get(&line.function_id).copied().unwrap_or("?"))
                .collect();
            (l.id, names)
        })
        .collect();
    let (mut own, mut total, mut all) = (HashMap::new(), HashMap::new(), 0i64);
    for s in &p.sample {
        let count = s.value.first().copied().unwrap_or(0);
        all += count;
        let stack: Vec<&str> = s
            .location_id
            .iter()
            .flat_map(|id| locations.get(id).cloned().unwrap_or_default())
            .collect();
        if let Some(leaf) = stack.first() {
            *own.entry(*leaf).or_insert(0i64) += count;
        }
        for f in stack.iter().collect::<HashSet<_>>() {
            *total.entry(*f).or_insert(0i64) += count;
        }
    }
    for (label, map) in [("self", own), ("cumulative", total)] {
        let mut v: Vec<_> = map.into_iter().collect();
        v.sort_by_key(|entry| std::cmp::Reverse(entry.1));
        println!("profile, top functions by {label} samples (of {all}):");
        for (f, c) in v.into_iter().take(30) {
            let short: String = f.chars().take(110).collect();
            println!("  {:>5.1} %  {short}", c as f64 / all.max(1) as f64 * 100.0);
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    prom_metrics_adapter::install_crypto_provider();
    let full = std::env::args().any(|a| a == "--bench");
    // CLUSTER_PODS=500 (or 50,500…) picks the pod counts.
    let sets: Vec<usize> = match std::env::var("CLUSTER_PODS") {
        Ok(v) => v.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
        Err(_) if full => vec![50, 500],
        Err(_) => vec![50],
    };
    let sets = &sets[..];
    let data = samples(sets);
    let prom = match tokio::task::spawn_blocking(move || LocalPrometheus::start(&data))
        .await
        .unwrap()
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipping the cluster bench: {e}");
            return;
        }
    };
    let fake = FakeKube::start().await;
    let client_ca = Ca::new("client-ca");
    let front_proxy_ca = Ca::new("front-proxy-ca");
    *fake.state.auth_configmap.lock().unwrap() = Some(auth_configmap(&client_ca, &front_proxy_ca));
    fake.state
        .more_pods
        .lock()
        .unwrap()
        .extend(sets.iter().flat_map(|&n| {
            pod_names(n).into_iter().map(move |pod| {
                (
                    format!("bench-{n}"),
                    pod,
                    vec![("app".to_string(), "bench".to_string())],
                )
            })
        }));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rules.yaml");
    std::fs::write(&config, RULES).unwrap();
    let (cert, key) = front_proxy_ca.client("front-proxy-client", &[]);
    let tls = TlsFiles {
        cert: dir.path().join("front-proxy.crt"),
        key: dir.path().join("front-proxy.key"),
    };
    std::fs::write(&tls.cert, &cert).unwrap();
    std::fs::write(&tls.key, &key).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // CLUSTER_ADAPTER_WRAPPER="valgrind --tool=callgrind …": run the adapter under a tool
    // (used to list the functions that start-up and the request path execute; see
    // scripts/order-functions.sh).
    let wrapper: Vec<String> = std::env::var("CLUSTER_ADAPTER_WRAPPER")
        .map(|w| w.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    // CLUSTER_ADAPTER_BIN: another build of the adapter (`cargo build --release`'s, say, whose
    // symbol names differ from this bench profile's build).
    let adapter = std::env::var("CLUSTER_ADAPTER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_prom-metrics-adapter").to_string());
    let adapter = adapter.as_str();
    let mut command = match wrapper.split_first() {
        Some((tool, args)) => {
            let mut c = Command::new(tool);
            c.args(args).arg(adapter);
            c
        }
        None => Command::new(adapter),
    };
    let child = Child(
        command
            .arg(fake.flag())
            .args([
                format!("--config={}", config.display()),
                format!("--prometheus-url={}", prom.url()),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={port}"),
                format!("--cert-dir={}", dir.path().join("certs").display()),
                "--metrics-relist-interval=1h".into(),
                "--query-cache-ttl=0s".into(),
                // Nothing routes to it to drain: SIGTERM at the end exits at once.
                "--shutdown-delay-duration=0s".into(),
                "--v=0".into(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the adapter"),
    );
    let pid = child.0.id();
    let base = format!("https://127.0.0.1:{port}");
    let identity = reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap();
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .identity(identity)
        .build()
        .unwrap();
    let mut ready = false;
    for _ in 0..if wrapper.is_empty() { 300 } else { 6000 } {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the adapter never became ready");

    let hpa_url = |n: usize| {
        format!(
            "{base}/apis/custom.metrics.k8s.io/v1beta2/namespaces/bench-{n}/pods/%2A/{METRIC}?labelSelector=app%3Dbench"
        )
    };
    // The request path works, and answers one item per pod, before anything is timed.
    for &n in sets {
        let mut req = http
            .get(hpa_url(n))
            .header("Accept", "application/vnd.kubernetes.protobuf, */*");
        for (k, v) in HPA_HEADERS {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["items"].as_array().map(Vec::len),
            Some(n),
            "{n} pods: {body}"
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, idle_rss, _) = usage(pid);
    // Where idle memory is: heap and stacks, or the binary's own pages (code, read-only data).
    println!(
        "cluster mode, chart default rules: RSS idle {:.1} MiB (after start-up, one relist and one request per pod set): {:.1} MiB anonymous, {:.1} MiB file-backed",
        idle_rss as f64 / 1024.0,
        status_kib(pid, "RssAnon:") as f64 / 1024.0,
        status_kib(pid, "RssFile:") as f64 / 1024.0
    );
    if let Some((found, listed)) = ordered_functions_found(adapter) {
        println!(
            "function order (src/function-order.txt): {found} of its {listed} names are in this binary"
        );
    }
    // CLUSTER_SMAPS=1: the idle figure per mapping (the binary, each library, heap, stacks).
    if std::env::var_os("CLUSTER_SMAPS").is_some() {
        print_mappings(pid);
    }
    if !full {
        return;
    }
    let Some(oha) = oha() else {
        eprintln!("oha could not be installed: no load figures");
        return;
    };
    println!(
        "{:>5} | {:>19} | {:>19} | {:>19} | {:>12} | {:>13} | {:>6} | {:>15} | {:>15}",
        "pods",
        "direct p50/p99 ms",
        "adapter p50/p99 ms",
        "added p50/p99 ms",
        "direct req/s",
        "adapter req/s",
        "share",
        "CPU-s/1k, 1 cl.",
        "CPU-s/1k, 16 cl."
    );
    for &n in sets {
        let query = format!(
            "sum(rate(flask_http_request_total{{namespace=\"bench-{n}\",pod=~\"{}\"}}[5m])) by (pod)",
            pod_names(n).join("|")
        );
        let direct_url = format!(
            "{}/api/v1/query?query={}",
            prom.url(),
            percent_encoding::utf8_percent_encode(&query, percent_encoding::NON_ALPHANUMERIC)
        );
        let adapter_url = hpa_url(n);
        // Warm both, then alternate rounds so that drift hits both alike.
        load(&oha, &adapter_url, 4, &["-n", "400"], Some(&tls));
        load(&oha, &direct_url, 4, &["-n", "400"], None);
        let (mut d50, mut d99, mut a50, mut a99) = (vec![], vec![], vec![], vec![]);
        // One client: no two requests in flight share a backend call, so this CPU is the
        // whole cost of each request.
        let (mut cpu_single, mut single) = (0.0, 0.0);
        for _ in 0..3 {
            let d = load(&oha, &direct_url, 1, &["-n", "1000"], None);
            let (before, _, _) = usage(pid);
            let a = load(&oha, &adapter_url, 1, &["-n", "1000"], Some(&tls));
            cpu_single += usage(pid).0 - before;
            single += a.requests;
            assert_eq!(a.failed, 0.0, "adapter requests failed: {a:?}");
            d50.push(d.p50_ms);
            d99.push(d.p99_ms);
            a50.push(a.p50_ms);
            a99.push(a.p99_ms);
        }
        // CLUSTER_PROFILE=1 or =16: the adapter's own CPU profile under one client's or 16
        // clients' load (first pod count only), taken as system:masters (RBAC grants the HPA
        // no profiles) and summarized. pprof's sample table adds ~165 MiB to the adapter from
        // then on, so the RSS figures of such a run do not count.
        let profiled = std::env::var("CLUSTER_PROFILE")
            .ok()
            .filter(|_| n == sets[0]);
        let start_profile = || {
            let req = http
                .get(format!("{base}/debug/pprof/profile?seconds=8"))
                .header("X-Remote-User", "bench")
                .header("X-Remote-Group", "system:masters");
            tokio::spawn(async move { req.send().await.unwrap().bytes().await.unwrap() })
        };
        if profiled.as_deref() == Some("1") {
            let p = start_profile();
            load(&oha, &adapter_url, 1, &["-z", "9s"], Some(&tls));
            summarize_profile(&p.await.unwrap());
        }
        let direct16 = load(&oha, &direct_url, 16, &["-z", "10s"], None);
        let profile = (profiled.as_deref() == Some("16")).then(start_profile);
        let (cpu_before, _, _) = usage(pid);
        let adapter16 = load(&oha, &adapter_url, 16, &["-z", "10s"], Some(&tls));
        let (cpu_after, _, _) = usage(pid);
        if let Some(p) = profile {
            summarize_profile(&p.await.unwrap());
        }
        assert_eq!(
            adapter16.failed, 0.0,
            "adapter requests failed: {adapter16:?}"
        );
        let (d50, d99, a50, a99) = (median(d50), median(d99), median(a50), median(a99));
        println!(
            "{n:>5} | {d50:>8.3} / {d99:>8.3} | {a50:>8.3} / {a99:>8.3} | {:>8.3} / {:>8.3} | {:>12.0} | {:>13.0} | {:>5.0}% | {:>15.3} | {:>15.3}",
            a50 - d50,
            a99 - d99,
            direct16.rate,
            adapter16.rate,
            adapter16.rate / direct16.rate * 100.0,
            cpu_single / single * 1000.0,
            (cpu_after - cpu_before) / adapter16.requests * 1000.0,
        );
    }
    let (_, rss, hwm) = usage(pid);
    println!(
        "RSS idle {:.1} MiB, now {:.1} MiB, peak {:.1} MiB (goals: added p50 <= 0.5 ms and <= 0.3 CPU-s per 1,000 requests at 50 pods, share >= 80 %, RSS <= 12 MiB idle and <= 24 MiB peak)",
        idle_rss as f64 / 1024.0,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    drop(child);
}
