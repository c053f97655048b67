//! Backend faults give clear errors, never a zero, an empty list or a hang, and the adapter
//! recovers by itself: Prometheus unreachable, killed and restarted, slower than the query
//! timeout, answering garbage, or refusing a long GET; and, in cluster mode, the Kubernetes
//! API going away.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Adapter, fixture, prometheus};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP forwarder to a Prometheus that can be switched off (while off it closes new
/// connections at once and cuts the established ones, as an unreachable Prometheus would),
/// pointed at another process (a restarted Prometheus), or slowed down (each new connection
/// waits before it is forwarded).
struct Switch {
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    target: Arc<Mutex<SocketAddr>>,
    delay: Arc<Mutex<Duration>>,
    url: String,
}

impl Switch {
    async fn start(target: SocketAddr) -> Switch {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let up = Arc::new(AtomicBool::new(true));
        let (cut, _) = watch::channel(0u64);
        let target = Arc::new(Mutex::new(target));
        let delay = Arc::new(Mutex::new(Duration::ZERO));
        let (up2, cut2, target2, delay2) = (up.clone(), cut.clone(), target.clone(), delay.clone());
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
                let (to, wait) = (*target2.lock().unwrap(), *delay2.lock().unwrap());
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    let Ok(mut outbound) = TcpStream::connect(to).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Switch {
            up,
            cut,
            target,
            delay,
            url,
        }
    }

    fn set(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            self.cut.send_modify(|n| *n += 1);
        }
    }

    fn retarget(&self, to: SocketAddr) {
        *self.target.lock().unwrap() = to;
    }

    /// New connections wait `by` before they are forwarded; established ones are cut, so the
    /// next request needs a new one.
    fn slow_down(&self, by: Duration) {
        *self.delay.lock().unwrap() = by;
        self.cut.send_modify(|n| *n += 1);
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
async fn discovery_against_a_dead_prometheus_serves_nothing_says_why_and_stays_up() {
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
    // Not a guessed "not found": the rule that serves the name was never listed.
    assert_eq!(code, 503, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("flask_http_request_per_second")
            && message.contains("has not been listed yet")
            && message.contains(&port.to_string()),
        "{message}"
    );
    // A resource no rule maps is still simply not found.
    let (code, body) = a
        .get("/apis/custom.metrics.k8s.io/v1beta1/namespaces/default/widgets/*/flask_http_request_per_second")
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
        tokio::time::sleep(Duration::from_millis(100)).await;
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
    let stale = common::sample_value(
        &metrics,
        "prom_metrics_adapter_query_answers_total",
        &[("source", "stale")],
    );
    assert!(stale.is_some_and(|s| s >= 1.0), "{stale:?}");
    switch.set(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_killed_and_restarted_mid_run_fails_clearly_then_recovers_by_itself() {
    use prom_metrics_adapter::cli::local_prometheus::LocalPrometheus;
    let samples = common::fixture_samples();
    let start =
        |s: String| tokio::task::spawn_blocking(move || LocalPrometheus::start(&s).unwrap());
    let mut first = start(samples.clone()).await.unwrap();
    let switch = Switch::start(first.addr()).await;
    let a = Adapter::start_relisting(
        &fixture("custom-rules.yaml"),
        &switch.url,
        &[
            "--standalone",
            "--query-cache-ttl=0s",
            "--metrics-relist-interval=1s",
        ],
    )
    .await;
    let path = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/web-2/flask_http_request_per_second";
    let (code, body) = a.get(path).await;
    assert_eq!(code, 200, "{body}");
    let (_, listed) = a.get("/apis/custom.metrics.k8s.io/v1beta1").await;
    let relists = || async {
        let text = a
            .http
            .get(format!("{}/metrics", a.base))
            .send()
            .await
            .unwrap();
        let text = text.text().await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("prom_metrics_adapter_relist_duration_seconds_count "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };

    // Killed: requests fail clearly, and failed relists keep the metrics discovered before.
    tokio::task::spawn_blocking(move || first.stop())
        .await
        .unwrap();
    let (code, body) = a.get(path).await;
    assert_eq!(code, 500, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unable to fetch metrics"),
        "{body}"
    );
    let before = relists().await;
    while relists().await < before + 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, still) = a.get("/apis/custom.metrics.k8s.io/v1beta1").await;
    assert_eq!(code, 200);
    assert_eq!(still["resources"], listed["resources"]);

    // A new Prometheus process behind the same address: service resumes without a restart.
    let second = start(samples).await.unwrap();
    switch.retarget(second.addr());
    let mut code = 0;
    for _ in 0..100 {
        (code, _) = a.get(path).await;
        if code == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(code, 200);
}

#[tokio::test]
async fn a_backend_slower_than_the_query_timeout_is_an_error_naming_it_not_a_hang() {
    let switch = Switch::start(prometheus().addr()).await;
    let a = Adapter::start_with(
        &fixture("custom-rules.yaml"),
        &switch.url,
        &[
            "--standalone",
            "--query-cache-ttl=0s",
            "--prometheus-query-timeout=500ms",
        ],
    )
    .await;
    switch.slow_down(Duration::from_secs(3));
    let started = std::time::Instant::now();
    let (code, body) = a
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/web-2/flask_http_request_per_second")
        .await;
    assert_eq!(code, 500, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("timed out after 500ms"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "it waited for the backend"
    );
}

/// What the fake backend answers to queries.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Good,
    Malformed,
    Truncated,
    HtmlError,
    StatusError,
}

/// A Prometheus stand-in: `/api/v1/series` lists `pods` pods of `flask_http_request_total`;
/// `/api/v1/query` answers as `answer` says, and refuses a GET over 8 KiB with a 414 as a proxy
/// in front of Prometheus would. Records (method, URI length) of each query.
async fn fake_backend(
    pods: usize,
    answer: Arc<Mutex<Answer>>,
) -> (String, Arc<Mutex<Vec<(String, usize)>>>) {
    use axum::body::Body;
    use axum::extract::Request;
    use axum::response::{IntoResponse, Response};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let series = move || async move {
        let data: Vec<serde_json::Value> = (0..pods)
            .map(|i| serde_json::json!({"__name__": "flask_http_request_total", "namespace": "default", "pod": format!("web-{i}")}))
            .collect();
        axum::Json(serde_json::json!({"status": "success", "data": data}))
    };
    let seen2 = seen.clone();
    let query = move |req: Request| {
        let (answer, seen) = (answer.clone(), seen2.clone());
        async move {
            let (method, len) = (req.method().to_string(), req.uri().to_string().len());
            seen.lock().unwrap().push((method.clone(), len));
            if method == "GET" && len > 8192 {
                return (axum::http::StatusCode::URI_TOO_LONG, "URI Too Long").into_response();
            }
            let good = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"web-0"},"value":[1700000000,"2.5"]}]}}"#;
            let answer = *answer.lock().unwrap();
            match answer {
                Answer::Good => ([("content-type", "application/json")], good).into_response(),
                Answer::Malformed => (
                    [("content-type", "application/json")],
                    r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":"#,
                )
                    .into_response(),
                Answer::Truncated => {
                    let chunks: Vec<Result<&'static str, std::io::Error>> = vec![
                        Ok(r#"{"status":"success","data":{"resultType":"#),
                        Err(std::io::Error::other("connection reset")),
                    ];
                    Response::new(Body::from_stream(futures_util::stream::iter(chunks)))
                }
                Answer::HtmlError => (
                    axum::http::StatusCode::BAD_GATEWAY,
                    [("content-type", "text/html")],
                    "<html><body><h1>502 Bad Gateway</h1></body></html>",
                )
                    .into_response(),
                Answer::StatusError => (
                    [("content-type", "application/json")],
                    r#"{"status":"error","errorType":"execution","error":"query processing would load too many samples into memory"}"#,
                )
                    .into_response(),
            }
        }
    };
    let app = axum::Router::new()
        .route("/api/v1/series", axum::routing::get(series).post(series))
        .route(
            "/api/v1/query",
            axum::routing::get(query.clone()).post(query),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

const ONE_RULE: &str = r#"
rules:
- seriesQuery: 'flask_http_request_total{namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^(.*)_total$", as: "${1}_per_second"}
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)'
"#;

#[tokio::test]
async fn garbage_from_the_backend_is_a_clear_500_every_time() {
    let answer = Arc::new(Mutex::new(Answer::Good));
    let (url, _) = fake_backend(1, answer.clone()).await;
    let a = Adapter::start_with(ONE_RULE, &url, &["--standalone", "--query-cache-ttl=0s"]).await;
    let path = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/web-0/flask_http_request_per_second";
    let (code, body) = a.get(path).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["items"][0]["value"], "2500m");
    for (kind, says) in [
        (Answer::Malformed, "unable to decode the answer"),
        (Answer::Truncated, "request to"),
        (Answer::HtmlError, "502"),
        (Answer::StatusError, "too many samples"),
    ] {
        *answer.lock().unwrap() = kind;
        let (code, body) = a.get(path).await;
        assert_eq!(code, 500, "{kind:?}: {body}");
        assert_eq!(body["reason"], "InternalError", "{kind:?}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("unable to fetch metrics") && message.contains(says),
            "{kind:?}: {message}"
        );
    }
}

#[tokio::test]
async fn a_get_too_long_for_the_backend_is_sent_again_as_post() {
    let (url, seen) = fake_backend(2000, Arc::new(Mutex::new(Answer::Good))).await;
    let a = Adapter::start_with(
        ONE_RULE,
        &url,
        &[
            "--standalone",
            "--query-cache-ttl=0s",
            "--prometheus-verb=GET",
        ],
    )
    .await;
    // A selector key with no PromQL form (dots and a slash) makes standalone mode list the
    // series first and then name all 2,000 pods in the query.
    let (code, body) = a
        .get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/%2A/flask_http_request_per_second?labelSelector=app.kubernetes.io%2Fname!%3Dnone")
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["items"][0]["describedObject"]["name"], "web-0");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].0, "GET");
    assert!(seen[0].1 > 8192);
    assert_eq!(seen[1].0, "POST");
}
