//! Named backends: one adapter with a real Prometheus (`--prometheus-url`) and a real
//! VictoriaMetrics (`backends:`), loaded with different data, rules on each; every answer is
//! compared with the backend that rule names, the same query on both backends is two answers,
//! headers reach the named backend, and `/metrics`, `check` and `explain` name the backend.

#[path = "common/backends.rs"]
mod backends;
mod common;
#[path = "common/victoria.rs"]
mod victoria;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

use backends::backend_values;
use common::{Adapter, metrics_text, sample_value, unix_now};
use prom_metrics_adapter::cli::local_prometheus::LocalPrometheus;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use victoria::LocalVictoria;

/// OpenMetrics text: counters rising at `rate` per second per pod, and gauges, from now−10 m
/// to now+3 m every 15 s.
fn samples(counters: &[(&str, f64)], gauges: &[(&str, f64)]) -> String {
    let now = unix_now() as i64;
    let start = now - 600;
    let mut out = String::new();
    writeln!(out, "# TYPE http_requests counter").unwrap();
    for (pod, rate) in counters {
        for t in (start..=now + 180).step_by(15) {
            writeln!(
                out,
                "http_requests_total{{namespace=\"shop\",pod=\"{pod}\"}} {} {t}",
                (t - start) as f64 * rate
            )
            .unwrap();
        }
    }
    for (series, v) in gauges {
        let name = series.split('{').next().unwrap();
        writeln!(out, "# TYPE {name} gauge").unwrap();
        for t in (start..=now + 180).step_by(15) {
            writeln!(out, "{series} {v} {t}").unwrap();
        }
    }
    out.push_str("# EOF\n");
    out
}

/// Prometheus: the fresh data. VictoriaMetrics: ten times the request rates, and archived orders.
fn backends() -> (&'static LocalPrometheus, &'static LocalVictoria) {
    static PROM: OnceLock<LocalPrometheus> = OnceLock::new();
    static VM: OnceLock<LocalVictoria> = OnceLock::new();
    let prom = PROM.get_or_init(|| {
        LocalPrometheus::start(&samples(&[("web-1", 10.0), ("web-2", 20.0)], &[]))
            .expect("start Prometheus")
    });
    let vm = VM.get_or_init(|| {
        LocalVictoria::start(&samples(
            &[("web-1", 100.0), ("web-2", 200.0)],
            &[(
                r#"archived_orders{namespace="shop",queue="orders"}"#,
                7000.0,
            )],
        ))
        .expect("start VictoriaMetrics")
    });
    (prom, vm)
}

/// A TCP forwarder to `target` that keeps the head of every request it forwards (HTTP/1.1,
/// bodies by `Content-Length`, as the adapter's client sends them).
async fn recording_forwarder(target: String) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let kept = heads.clone();
    let addr = target.trim_start_matches("http://").to_string();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let (addr, kept) = (addr.clone(), kept.clone());
            tokio::spawn(async move {
                let Ok(outbound) = tokio::net::TcpStream::connect(&addr).await else {
                    return;
                };
                let (mut in_read, mut in_write) = inbound.into_split();
                let (mut out_read, mut out_write) = outbound.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut out_read, &mut in_write).await;
                });
                loop {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if in_read.read_exact(&mut byte).await.is_err() {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let text = String::from_utf8_lossy(&head).to_string();
                    let length: usize = text
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())
                                .flatten()
                        })
                        .unwrap_or(0);
                    kept.lock().unwrap().push(text);
                    let mut body = vec![0u8; length];
                    if in_read.read_exact(&mut body).await.is_err()
                        || out_write.write_all(&head).await.is_err()
                        || out_write.write_all(&body).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (url, heads)
}

fn config(longterm_url: &str) -> String {
    // The two custom rules render the very same query: only the backend differs.
    format!(
        r#"
backends:
- name: longterm
  url: {longterm_url}
  headers: {{X-Scope-OrgID: team-a}}
  timeout: 20s
rules:
- seriesQuery: 'http_requests_total{{namespace!="",pod!=""}}'
  resources: {{overrides: {{namespace: {{resource: namespace}}, pod: {{resource: pod}}}}}}
  name: {{matches: "^(.*)_total$", as: "${{1}}_per_second"}}
  metricsQuery: 'sum(rate(<<.Series>>{{<<.LabelMatchers>>}}[2m])) by (<<.GroupBy>>)'
- seriesQuery: 'http_requests_total{{namespace!="",pod!=""}}'
  backend: longterm
  resources: {{overrides: {{namespace: {{resource: namespace}}, pod: {{resource: pod}}}}}}
  name: {{matches: "^(.*)_total$", as: "${{1}}_per_second_longterm"}}
  metricsQuery: 'sum(rate(<<.Series>>{{<<.LabelMatchers>>}}[2m])) by (<<.GroupBy>>)'
externalRules:
- seriesQuery: 'archived_orders{{namespace!=""}}'
  backend: longterm
  resources: {{overrides: {{namespace: {{resource: namespace}}}}}}
  metricsQuery: 'sum(<<.Series>>{{<<.LabelMatchers>>}}) by (queue)'
- seriesQuery: 'archived_orders{{namespace!=""}}'
  resources: {{overrides: {{namespace: {{resource: namespace}}}}}}
  name: {{as: "archived_orders_on_default"}}
  metricsQuery: 'sum(<<.Series>>{{<<.LabelMatchers>>}}) by (queue)'
"#
    )
}

fn values(body: &Value) -> Vec<(String, f64)> {
    body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {body}"))
        .iter()
        .map(|i| {
            let name = i["describedObject"]["name"]
                .as_str()
                .or(i["metricLabels"]["queue"].as_str())
                .unwrap_or_default()
                .to_string();
            (name, common::parse_quantity(i["value"].as_str().unwrap()))
        })
        .collect()
}

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() <= b.abs() * 0.02
}

#[tokio::test]
async fn each_rule_is_answered_by_the_backend_it_names() {
    let (prom, vm) = backends();
    let (forwarder, heads) = recording_forwarder(vm.url().to_string()).await;
    let a = Adapter::start_with(&config(&forwarder), prom.url(), &["--standalone"]).await;

    let base = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*";
    let (code, body) = a.get(&format!("{base}/http_requests_per_second")).await;
    assert_eq!(code, 200, "{body}");
    let fresh = values(&body);
    // The same rendered query, at once, on the other backend: answered by that backend, not
    // by the first one's shared answer.
    let (code, body) = a
        .get(&format!("{base}/http_requests_per_second_longterm"))
        .await;
    assert_eq!(code, 200, "{body}");
    let longterm = values(&body);
    assert_eq!(fresh.len(), 2, "{fresh:?}");
    assert_eq!(longterm.len(), 2, "{longterm:?}");
    // Each equals its own backend's answer to the query both rules render.
    let query =
        r#"sum(rate(http_requests_total{namespace="shop",pod=~"web-1|web-2"}[2m])) by (pod)"#;
    for (answer, url) in [(&fresh, prom.url()), (&longterm, vm.url())] {
        let own = backend_values(url, query, unix_now()).await;
        for (pod, v) in answer.iter() {
            let theirs = own
                .iter()
                .find(|(labels, _)| labels.get("pod") == Some(pod))
                .map(|(_, v)| *v);
            assert!(
                theirs.is_some_and(|t| near(*v, t)),
                "{pod}: {v} served, {theirs:?} from {url}"
            );
        }
    }
    for ((pod, f), (pod2, l)) in fresh.iter().zip(&longterm) {
        assert_eq!(pod, pod2);
        let rate = if pod == "web-1" { 10.0 } else { 20.0 };
        assert!(
            near(*f, rate),
            "{pod}: {f} from Prometheus, expected {rate}"
        );
        assert!(
            near(*l, rate * 10.0),
            "{pod}: {l} from VictoriaMetrics, expected {}",
            rate * 10.0
        );
    }

    let ext = "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop";
    let (code, body) = a.get(&format!("{ext}/archived_orders")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(values(&body), [("orders".to_string(), 7000.0)]);
    // Discovery is per backend too: the rule on the default backend found nothing there.
    let (code, body) = a.get(&format!("{ext}/archived_orders_on_default")).await;
    assert_eq!(code, 404, "{body}");

    // The named backend's headers reach it, on discovery and queries alike.
    let seen = heads.lock().unwrap().clone();
    assert!(!seen.is_empty());
    for head in &seen {
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("x-scope-orgid: team-a"), "{head}");
    }
    assert!(
        seen.iter().any(|h| h.contains("/api/v1/series")),
        "{seen:?}"
    );
    assert!(seen.iter().any(|h| h.contains("/api/v1/query")), "{seen:?}");

    // /metrics tells the backends apart.
    let text = metrics_text(&a.base).await;
    for backend in ["default", "longterm"] {
        let n = sample_value(
            &text,
            "prom_metrics_adapter_prometheus_request_duration_seconds_count",
            &[("backend", backend), ("endpoint", "/api/v1/query")],
        );
        assert!(n.unwrap_or(0.0) >= 1.0, "{backend}: {n:?}\n{text}");
        let fetched = sample_value(
            &text,
            "prom_metrics_adapter_query_answers_total",
            &[("backend", backend), ("source", "fetched")],
        );
        assert!(fetched.unwrap_or(0.0) >= 1.0, "{backend}: {fetched:?}");
    }
}

fn run(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_prom-metrics-adapter"))
        .args(args)
        .output()
        .expect("run the adapter binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn check_and_explain_name_the_backend_and_an_unreachable_one_is_an_error() {
    let (prom, vm) = backends();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, config(vm.url())).unwrap();
    let prom_flag = format!("--prometheus-url={}", prom.url());

    let (code, out) = run(&[
        "check",
        "-o",
        "json",
        "--config",
        good.to_str().unwrap(),
        &prom_flag,
    ]);
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let rules = report["discovery"]["rules"].as_array().unwrap();
    let backends: Vec<&str> = rules
        .iter()
        .map(|r| r["backend"].as_str().unwrap())
        .collect();
    assert_eq!(backends, ["default", "longterm", "longterm", "default"]);
    assert_eq!(rules[2]["names"], serde_json::json!(["archived_orders"]));
    assert_eq!(rules[3]["series"], 0, "Prometheus has no archived_orders");

    let (code, out) = run(&[
        "explain",
        "-o",
        "json",
        "--config",
        good.to_str().unwrap(),
        &prom_flag,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/archived_orders",
    ]);
    assert_eq!(code, 0, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["matched"]["backend"], "longterm", "{out}");
    assert_eq!(report["backend"], "longterm");
    assert_eq!(report["prometheusAnswer"][0]["value"], "7000", "{out}");

    // Nothing listens on port 9.
    let down = dir.path().join("down.yaml");
    std::fs::write(&down, config("http://127.0.0.1:9")).unwrap();
    let (code, out) = run(&["check", "--config", down.to_str().unwrap(), &prom_flag]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("backends[0] (longterm)"), "{out}");
    assert!(out.contains("unreachable at http://127.0.0.1:9"), "{out}");
    // Offline, the same file is fine: reachability needs --prometheus-url.
    let (code, out) = run(&["check", "--config", down.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");

    // A rule naming a backend the file does not define is an error with its line.
    let unknown = dir.path().join("unknown.yaml");
    std::fs::write(
        &unknown,
        config(vm.url()).replace(
            "backend: longterm\n  resources: {overrides: {namespace: {resource: namespace}}}",
            "backend: thanos\n  resources: {overrides: {namespace: {resource: namespace}}}",
        ),
    )
    .unwrap();
    let (code, out) = run(&["check", "--config", unknown.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("externalRules[0].backend (line 19)")
            && out.contains("unknown backend \"thanos\": the config defines longterm"),
        "{out}"
    );
}
