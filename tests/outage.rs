//! A Prometheus outage gives a clear 5xx, never a zero or an empty list, and the adapter
//! recovers by itself when Prometheus is back.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Adapter, fixture, prometheus};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP forwarder to the real Prometheus that can be switched off: while off it closes new
/// connections at once and cuts the established ones, as an unreachable Prometheus would.
struct Switch {
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    url: String,
}

impl Switch {
    async fn start(target: std::net::SocketAddr) -> Switch {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let up = Arc::new(AtomicBool::new(true));
        let (cut, _) = watch::channel(0u64);
        let (up2, cut2) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut_rx = cut2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Switch { up, cut, url }
    }

    fn set(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            self.cut.send_modify(|n| *n += 1);
        }
    }
}

#[tokio::test]
async fn prometheus_down_is_a_clear_500_and_service_resumes_when_it_returns() {
    let switch = Switch::start(prometheus().addr()).await;
    // No reuse window, so the outage shows at the next request.
    let a = Adapter::start_with(
        &fixture("custom-rules.yaml"),
        &switch.url,
        &["--standalone", "--query-cache-ttl=0s"],
    )
    .await;
    let path = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/web-2/flask_http_request_per_second";
    let (code, body) = a.get(path).await;
    assert_eq!(code, 200, "{body}");

    switch.set(false);
    let (code, body) = a.get(path).await;
    assert_eq!(code, 500, "{body}");
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "InternalError");
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.contains("unable to fetch metrics") && msg.contains("/api/v1/query"),
        "{msg}"
    );
    // The external API must not turn an outage into an empty list either.
    let (code, body) = a
        .get("/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_length")
        .await;
    assert_eq!(code, 500, "{body}");

    switch.set(true);
    let (code, body) = a.get(path).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn discovery_against_a_dead_prometheus_serves_nothing_but_stays_up() {
    // Nothing listens on this port: bind, read the port, and close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a = Adapter::start_with(
        &fixture("custom-rules.yaml"),
        &format!("http://127.0.0.1:{port}"),
        &["--standalone"],
    )
    .await;
    let (code, body) = a.get("/apis/custom.metrics.k8s.io/v1beta1").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["resources"].as_array().unwrap().len(), 0);
    let (code, _) = a.get("/readyz").await;
    assert_eq!(code, 200);
    let (code, body) = a
        .get("/apis/custom.metrics.k8s.io/v1beta1/namespaces/default/pods/*/flask_http_request_per_second")
        .await;
    assert_eq!(code, 404, "{body}");
}

#[tokio::test]
async fn within_serve_stale_for_the_last_good_value_is_served_with_its_own_time_then_the_error() {
    let switch = Switch::start(prometheus().addr()).await;
    let a = Adapter::start_with(
        &fixture("custom-rules.yaml"),
        &switch.url,
        &[
            "--standalone",
            "--query-cache-ttl=0s",
            "--serve-stale-for=2s",
        ],
    )
    .await;
    let path = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/web-2/flask_http_request_per_second";
    let (code, good) = a.get(path).await;
    assert_eq!(code, 200, "{good}");
    switch.set(false);
    let (code, stale) = a.get(path).await;
    assert_eq!(code, 200, "{stale}");
    // The value and the time it was computed at, not a new time and never a zero.
    assert_eq!(stale["items"], good["items"]);
    // Beyond the bound the request fails as it would without the flag.
    let mut code = 200;
    for _ in 0..100 {
        (code, _) = a.get(path).await;
        if code != 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(code, 500);
    let metrics = a
        .http
        .get(format!("{}/metrics", a.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("prom_metrics_adapter_query_answers_total{source=\"stale\"}"),
        "{metrics}"
    );
    switch.set(true);
}
