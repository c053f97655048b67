//! Metrics visible the moment they exist: with relisting set to an hour, a series that a real
//! Prometheus scrapes for the first time after start-up is served at the first request for it
//! (a targeted lookup, restricted to the namespace, joins it to the registry), and misses cost
//! at most one lookup per name per relist interval, none for names no rule can produce.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Adapter, metrics_text, sample_value, unix_now};
use prom_metrics_adapter::cli::local_prometheus::LocalPrometheus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A scrape target serving whatever text it holds now.
async fn exporter(text: Arc<Mutex<String>>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let text = text.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = text.lock().unwrap().clone();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr
}

/// The value of `query` in Prometheus now, if it has a sample.
async fn instant(prom: &str, query: &str) -> Option<f64> {
    let resp: serde_json::Value = reqwest::Client::new()
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    resp["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
}

const RULES: &str = r#"
rules:
- seriesQuery: '{__name__=~"^app_.*",namespace!="",pod!=""}'
  resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
  name: {matches: "^app_.*"}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
externalRules:
- seriesQuery: '{__name__=~"^queue_.*",namespace!=""}'
  resources: {overrides: {namespace: {resource: namespace}}}
  name: {matches: "^queue_.*"}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (queue)'
- seriesQuery: '{__name__=~"^fleet_.*"}'
  resources: {namespaced: false}
  name: {matches: "^fleet_.*"}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>})'
"#;

fn lookups(text: &str, result: &str) -> f64 {
    sample_value(
        text,
        "prom_metrics_adapter_targeted_lookups_total",
        &[("result", result)],
    )
    .unwrap_or(0.0)
}

fn series_calls(text: &str) -> f64 {
    sample_value(
        text,
        "prom_metrics_adapter_prometheus_request_duration_seconds_count",
        &[("backend", "default"), ("endpoint", "/api/v1/series")],
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_series_scraped_after_start_up_is_served_at_the_first_request_for_it() {
    prom_metrics_adapter::install_crypto_provider();
    let text = Arc::new(Mutex::new(
        "app_ready{namespace=\"shop\",pod=\"web-1\"} 1\n".to_string(),
    ));
    let target = exporter(text.clone()).await;
    let seed = format!(
        "# TYPE seed gauge\nseed 1 {}\n# EOF\n",
        unix_now() as i64 - 60
    );
    let yml = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n- job_name: app\n  scrape_interval: 1s\n  static_configs:\n  - targets: ['{target}']\n"
    );
    let prom = tokio::task::spawn_blocking(move || {
        LocalPrometheus::start_with_config(&seed, &yml).expect("start Prometheus")
    })
    .await
    .unwrap();
    let url = prom.url().to_string();
    for _ in 0..200 {
        if instant(&url, "app_ready").await.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(instant(&url, "app_ready").await, Some(1.0), "never scraped");

    // Relisting every hour: only a targeted lookup can find what appears from now on.
    let a = Adapter::start_with(
        RULES,
        &url,
        &["--standalone", "--metrics-relist-interval=1h"],
    )
    .await;
    let pods = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*";
    let (code, body) = a.get(&format!("{pods}/app_ready")).await;
    assert_eq!(code, 200, "{body}");

    text.lock().unwrap().push_str(
        "app_inflight{namespace=\"shop\",pod=\"web-1\"} 7\nqueue_depth{namespace=\"shop\",queue=\"orders\"} 12\n",
    );
    // The first sample's own time, as Prometheus stored it.
    let first_sample = loop {
        if let Some(t) = instant(&url, "timestamp(app_inflight)").await {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let before = metrics_text(&a.base).await;
    let (code, body) = a.get(&format!("{pods}/app_inflight")).await;
    let answered = unix_now();
    assert_eq!(
        code, 200,
        "the first request after the first sample: {body}"
    );
    assert_eq!(body["items"][0]["value"], "7", "{body}");
    eprintln!(
        "first sample to first successful answer: {:.0} ms (relist interval 1h)",
        (answered - first_sample) * 1000.0
    );
    let (code, body) = a
        .get("/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_depth")
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["items"][0]["value"], "12", "{body}");
    // Both are listed from now on, not only served.
    let (_, body) = a.get("/apis/custom.metrics.k8s.io/v1beta2").await;
    assert!(body.to_string().contains("pods/app_inflight"), "{body}");
    let after = metrics_text(&a.base).await;
    assert_eq!(lookups(&after, "found") - lookups(&before, "found"), 2.0);

    // A name a rule could produce but nothing has: one lookup, then none until the interval.
    let before = metrics_text(&a.base).await;
    for _ in 0..3 {
        let (code, _) = a.get(&format!("{pods}/app_never")).await;
        assert_eq!(code, 404);
    }
    let after = metrics_text(&a.base).await;
    assert_eq!(
        lookups(&after, "not_found") - lookups(&before, "not_found"),
        1.0
    );
    assert_eq!(
        lookups(&after, "skipped") - lookups(&before, "skipped"),
        2.0
    );
    assert_eq!(series_calls(&after) - series_calls(&before), 1.0, "{after}");
    // A name no rule can produce costs no lookup at all.
    let before = after;
    for _ in 0..3 {
        let (code, _) = a.get(&format!("{pods}/http_requests_per_second")).await;
        assert_eq!(code, 404);
    }
    let after = metrics_text(&a.base).await;
    assert_eq!(series_calls(&after), series_calls(&before));

    // Concurrent first requests for a new metric share one lookup, and every one is answered.
    text.lock()
        .unwrap()
        .push_str("app_burst{namespace=\"shop\",pod=\"web-1\"} 3\n");
    while instant(&url, "app_burst").await.is_none() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = metrics_text(&a.base).await;
    let path = format!("{pods}/app_burst");
    let answers = futures_util::future::join_all((0..6).map(|_| a.get(&path))).await;
    for (code, body) in answers {
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["items"][0]["value"], "3", "{body}");
    }
    let after = metrics_text(&a.base).await;
    assert_eq!(lookups(&after, "found") - lookups(&before, "found"), 1.0);
    assert_eq!(series_calls(&after) - series_calls(&before), 1.0, "{after}");

    // A lookup no namespace can narrow lists the rule's whole seriesQuery, as a relist does:
    // once a minute per rule, however many names are asked for.
    let before = after;
    for name in ["fleet_a", "fleet_b", "fleet_c"] {
        let (code, _) = a
            .get(&format!(
                "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/{name}"
            ))
            .await;
        assert_eq!(code, 404);
    }
    let after = metrics_text(&a.base).await;
    assert_eq!(series_calls(&after) - series_calls(&before), 1.0, "{after}");
}
