//! An unauthenticated flood against cluster mode (issue 11, point 3): 20,000 anonymous requests,
//! each with a distinct 60 KiB path, sent by 64 clients to the adapter's HTTPS port; then the
//! same with 7 KiB paths, which are short enough to be served (the 60 KiB ones are refused with
//! a 414 before authentication) and so each cost a SubjectAccessReview. Prints the adapter's
//! RSS growth and peak, and the rate of SubjectAccessReviews the flood made it send to the
//! Kubernetes API (capped by the delegated clients' token bucket, 200/s with a burst of 400, as
//! k8s.io/apiserver's; `--client-qps` caps the adapter's other calls).
//!
//! The adapter runs as its own process (its RSS is read from `/proc`), against a minimal fake
//! API server in this process that answers discovery and denies every review, timing each.
//! `cargo bench --bench flood`; under `cargo test` it sends 200 requests as a smoke test.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// When each SubjectAccessReview arrived.
#[derive(Default)]
struct Reviews(Mutex<Vec<Instant>>);

async fn sar(State(seen): State<Arc<Reviews>>, body: String) -> impl IntoResponse {
    seen.0.lock().unwrap().push(Instant::now());
    let mut v: Value = serde_json::from_str(&body).unwrap_or_default();
    v["status"] = json!({"allowed": false});
    (axum::http::StatusCode::CREATED, axum::Json(v))
}

/// A fake API server: enough discovery for the adapter to start, and reviews.
async fn fake_api() -> (String, Arc<Reviews>) {
    let seen = Arc::new(Reviews::default());
    let app = Router::new()
        .route(
            "/api",
            get(|| async { axum::Json(json!({"kind": "APIVersions", "versions": ["v1"]})) }),
        )
        .route(
            "/apis",
            get(|| async {
                axum::Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}))
            }),
        )
        .route(
            "/api/v1",
            get(|| async {
                axum::Json(json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                    {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "verbs": ["get", "list", "watch"]},
                    {"name": "namespaces", "singularName": "namespace", "namespaced": false, "kind": "Namespace", "verbs": ["get", "list", "watch"]}]}))
            }),
        )
        .route(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            post(sar),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// `VmRSS` and `VmHWM` of `pid`, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        // SIGTERM first: the adapter shuts down cleanly (and a profiler wrapping it writes
        // its report); SIGKILL if it has not gone within 20 s.
        let _ = std::process::Command::new("kill")
            .arg(self.0.id().to_string())
            .status();
        for _ in 0..200 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() {
    prom_metrics_adapter::install_crypto_provider();
    let full = std::env::args().any(|a| a == "--bench");
    // FLOOD_REQUESTS overrides the count, for a quicker look.
    let total = std::env::var("FLOOD_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 20_000 } else { 200 });
    let (api, reviews) = fake_api().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: '{api}'}}\n\
             users:\n- name: fake\n  user: {{token: t}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: fake}}\n\
             current-context: fake\n"
        ),
    )
    .unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "rules:\n- seriesQuery: 'x{namespace!=\"\",pod!=\"\"}'\n  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}\n  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_prom-metrics-adapter"))
            .args([
                format!("--config={}", config.display()),
                format!("--lister-kubeconfig={}", kubeconfig.display()),
                "--authentication-skip-lookup".into(),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={port}"),
                format!("--cert-dir={}", dir.path().join("certs").display()),
                // Nothing listens there: discovery fails fast, which is all this needs.
                "--prometheus-url=http://127.0.0.1:9".into(),
                "--v=0".into(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the adapter"),
    );
    let pid = child.0.id();
    let client = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the adapter never turned ready");
    for path_bytes in [60 * 1024, 7 * 1024] {
        flood(&client, &base, pid, &reviews, total, path_bytes).await;
    }
}

/// Sends `total` anonymous requests with distinct paths of about `path_bytes` and prints what
/// they cost the adapter.
async fn flood(
    client: &reqwest::Client,
    base: &str,
    pid: u32,
    reviews: &Reviews,
    total: usize,
    path_bytes: usize,
) {
    let (rss_before, _) = rss_kib(pid);
    let reviews_before = reviews.0.lock().unwrap().len();
    let padding = "m".repeat(path_bytes);
    let started = Instant::now();
    let statuses: Vec<u16> = futures_util::stream::iter(0..total)
        .map(|i| {
            let (client, padding) = (client.clone(), &padding);
            async move {
                let url = format!(
                    "{base}/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/%2A/{i}{padding}"
                );
                match client.get(url).send().await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                }
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let (rss_after, rss_peak) = rss_kib(pid);
    let mut times = reviews.0.lock().unwrap()[reviews_before..].to_vec();
    times.sort();
    // The most reviews within any one second: a sliding window over the arrival times.
    let (mut busiest_second, mut first) = (0, 0);
    for (last, t) in times.iter().enumerate() {
        while t.duration_since(times[first]) >= Duration::from_secs(1) {
            first += 1;
        }
        busiest_second = busiest_second.max(last + 1 - first);
    }
    let mut counts = std::collections::BTreeMap::new();
    for s in statuses {
        *counts.entry(s).or_insert(0usize) += 1;
    }
    println!(
        "flood: {total} anonymous requests with distinct {} KiB paths, 64 clients",
        path_bytes / 1024
    );
    println!(
        "  took {:.1} s ({:.0} requests/s); answers by status: {counts:?} (0 = connection error)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  adapter RSS: {:.1} MiB before, {:.1} MiB after, {:.1} MiB peak so far; growth {:.1} MiB (target < 50 MiB)",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        rss_peak as f64 / 1024.0,
        (rss_peak.saturating_sub(rss_before)) as f64 / 1024.0
    );
    println!(
        "  SubjectAccessReviews: {} in all, {:.0}/s on average, {busiest_second} in the busiest second (cap: 200/s after a burst of 400)",
        times.len(),
        times.len() as f64 / elapsed.as_secs_f64()
    );
}
