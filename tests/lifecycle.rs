//! The adapter's life in a cluster, with real processes against a real Prometheus: the rules
//! file edited while requests run (a bad edit refused, a good one applied without a restart),
//! and a rolling restart of two replicas behind a Service-like proxy while HPA-shaped clients
//! keep asking, with no request failing.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{fixture, prometheus};

/// An adapter process; SIGTERM and a wait when dropped.
struct Process {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Process {
    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.pid()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGTERM, then waits for the exit; returns its status.
    fn stop(mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let status = self.child.wait().unwrap();
        // Nothing left to kill in Drop.
        std::mem::forget(self);
        status
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the adapter binary in standalone mode on `config` with `extra` flags, and waits until
/// `/readyz` answers 200.
async fn spawn(config: &Path, extra: &[&str]) -> Process {
    prom_metrics_adapter::install_crypto_provider();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_prom-metrics-adapter"))
        .arg("--standalone")
        .arg(format!("--config={}", config.display()))
        .arg(format!("--prometheus-url={}", prometheus().url()))
        .arg(format!("--listen-address={addr}"))
        .arg("--metrics-relist-interval=1h")
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let p = Process { child, addr };
    let client = reqwest::Client::new();
    for _ in 0..500 {
        if let Ok(r) = client.get(format!("http://{addr}/readyz")).send().await
            && r.status() == 200
        {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the adapter never became ready");
}

async fn status(client: &reqwest::Client, url: &str) -> u16 {
    match client.get(url).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// How many reloads of the rules file ended with `result`.
async fn reloads(base: &str, result: &str) -> f64 {
    common::sample_value(
        &common::metrics_text(base).await,
        "prom_metrics_adapter_config_reload_total",
        &[("result", result)],
    )
    .unwrap_or(0.0)
}

/// Replaces `path` the way editors do: a new file renamed over it.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn a_bad_edit_is_refused_and_a_good_one_applied_while_requests_keep_succeeding() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let original = fixture("custom-rules.yaml");
    std::fs::write(&config, &original).unwrap();
    let adapter = spawn(&config, &["--query-cache-ttl=0s"]).await;
    let base = format!("http://{}", adapter.addr);
    let client = reqwest::Client::new();
    let stable = format!(
        "{base}/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/worker-1/worker_busy_threads"
    );
    assert_eq!(status(&client, &stable).await, 200);
    // Requests keep running through every edit.
    let stop = Arc::new(AtomicBool::new(false));
    let (failures, sent) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load = {
        let (stop, failures, sent, client, stable) = (
            stop.clone(),
            failures.clone(),
            sent.clone(),
            client.clone(),
            stable.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                if status(&client, &stable).await != 200 {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                sent.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let old_name = format!(
        "{base}/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/web-1/flask_http_request_per_second"
    );
    let new_name = old_name.replace("_per_second", "_rate");

    // An invalid edit, in place: refused, counted, never applied.
    std::fs::write(&config, original.replace("metricsQuery:", "metricsQery:")).unwrap();
    for _ in 0..250 {
        if reloads(&base, "failure").await >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reloads(&base, "failure").await, 1.0);
    assert_eq!(status(&client, &old_name).await, 200);

    // A valid edit, renamed over the file as editors save: the renamed metric is served within
    // 2 s, with no restart, and the old name is gone.
    replace(
        &config,
        &original.replace("as: \"${1}_per_second\"", "as: \"${1}_rate\""),
    );
    let edited = Instant::now();
    while status(&client, &new_name).await != 200 {
        assert!(
            edited.elapsed() < Duration::from_secs(2),
            "the renamed metric did not appear within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status(&client, &old_name).await, 404);
    assert_eq!(reloads(&base, "success").await, 1.0);

    // SIGHUP reloads the file as it is.
    adapter.signal("HUP");
    for _ in 0..250 {
        if reloads(&base, "success").await >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reloads(&base, "success").await, 2.0);

    stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    assert!(sent.load(Ordering::SeqCst) > 20);
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "requests failed during the edits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_two_replicas_fails_no_hpa_request() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, fixture("custom-rules.yaml")).unwrap();
    let flags = ["--shutdown-delay-duration=2s", "--shutdown-timeout=5s"];
    let mut replicas = [spawn(&config, &flags).await, spawn(&config, &flags).await];
    let proxy = Proxy::start(&replicas.iter().map(|p| p.addr).collect::<Vec<_>>()).await;
    while proxy.ready() < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 200 HPAs, each asking every 1.5 s (the controller's 15 s, compressed tenfold), spread
    // over the period, all through one keep-alive client as the aggregator's.
    let url = format!(
        "http://{}/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/%2A/flask_http_request_per_second?labelSelector=app%3Dweb",
        proxy.addr
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (failures, sent, slowest_ms) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let hpas: Vec<_> = (0..200u64)
        .map(|i| {
            let (stop, failures, sent, slowest_ms, client, url) = (
                stop.clone(),
                failures.clone(),
                sent.clone(),
                slowest_ms.clone(),
                client.clone(),
                url.clone(),
            );
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i * 1500 / 200)).await;
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let code = status(&client, &url).await;
                    slowest_ms.fetch_max(started.elapsed().as_millis() as u64, Ordering::SeqCst);
                    sent.fetch_add(1, Ordering::SeqCst);
                    if code != 200 {
                        failures.fetch_add(1, Ordering::SeqCst);
                        eprintln!("HPA {i}: {code}");
                    }
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (i, replica) in replicas.iter_mut().enumerate() {
        // As a Deployment's rolling update: the new pod first (maxSurge 1), then the old one
        // goes.
        let fresh = spawn(&config, &flags).await;
        let old = std::mem::replace(replica, fresh);
        proxy.add(replica.addr);
        while proxy.ready() < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let old_addr = old.addr;
        let exit = old.stop();
        assert!(exit.success(), "replica {i} exited with {exit}");
        // Its endpoint is long gone from the proxy's ready set; now it leaves the list.
        proxy.remove(old_addr);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    for h in hpas {
        h.await.unwrap();
    }
    let (sent, failed) = (sent.load(Ordering::SeqCst), failures.load(Ordering::SeqCst));
    eprintln!(
        "rolling restart: {sent} HPA requests, {failed} failed, slowest {} ms",
        slowest_ms.load(Ordering::SeqCst)
    );
    assert!(sent > 1000, "{sent}");
    assert_eq!(failed, 0);
}
