//! The `explain` subcommand against a real Prometheus with fixture data.

mod common;

use std::process::Command;

use common::prometheus;
use serde_json::Value;

fn explain(args: &[&str]) -> (i32, String, String) {
    let config = format!(
        "{}/tests/fixtures/custom-rules.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = Command::new(env!("CARGO_BIN_EXE_prom-metrics-adapter"))
        .args([
            "explain",
            "--config",
            &config,
            "--prometheus-url",
            prometheus().url(),
            "--metrics-max-age=20m",
        ])
        .args(args)
        .output()
        .expect("run explain");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

const FLASK: &str =
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/%2A/flask_http_request_per_second";

#[test]
fn the_flask_rate_is_explained_with_query_values_and_hpa_arithmetic() {
    let (code, out, err) = explain(&[
        "--hpa",
        "type=AverageValue,target=1,current=3,min=1,max=10",
        FLASK,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("matched rules[0]"), "{out}");
    assert!(
        out.contains(r#"sum(rate(flask_http_request_total{namespace="default",pod=~"web-1|web-2|worker-1"}[2m])) by (pod)"#),
        "{out}"
    );
    assert!(out.contains("\"pod\":\"web-2\""), "{out}");
    // 1.5, 2.5 and 4 req/s against 1 per pod: ratio 2.67, ceil(2.67 × 3) = 8.
    assert!(out.contains("HPA: 3 → 8 replicas"), "{out}");
    assert!(out.contains("the server answers 200"), "{out}");
}

#[test]
fn a_missing_metric_names_the_nearest_candidates() {
    let (code, out, _) = explain(&[
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/flask_http_request_per_secnd",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no rule matched"), "{out}");
    assert!(out.contains("pods/flask_http_request_per_second"), "{out}");
    assert!(out.contains("the server answers 404"), "{out}");
}

#[test]
fn external_metrics_and_json_output() {
    let (code, out, err) = explain(&[
        "-o",
        "json",
        "--hpa",
        "type=AverageValue,target=10,current=1,max=20",
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_length?labelSelector=queue%3Dorders",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["matched"]["rule"], "externalRules[0]");
    assert_eq!(
        v["query"],
        r#"sum(queue_length{queue="orders",namespace="default"}) by (queue)"#
    );
    assert_eq!(v["answer"]["code"], 200);
    assert_eq!(v["answer"]["body"]["items"][0]["value"], "120");
    assert_eq!(v["hpa"]["metric"], "External");
    assert_eq!(v["hpa"]["desired"], 12);
    // An Object metric with a Value target.
    let (code, out, _) = explain(&[
        "-o",
        "json",
        "--hpa",
        "type=Value,target=10,current=2,max=20",
        "/apis/custom.metrics.k8s.io/v1beta1/namespaces/default/metrics/queue_items",
    ]);
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["hpa"]["metric"], "Object");
    // 42 / 10 = 4.2; ceil(4.2 × 2) = 9.
    assert_eq!(v["hpa"]["desired"], 9);
}

#[test]
fn explain_says_which_name_serves_the_series_before_the_nearest_candidates() {
    let (code, out, err) = explain(&[
        "-o",
        "json",
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/%2A/flask_http_request_total",
    ]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    let why = v["why"].as_str().unwrap_or_default();
    assert!(
        why.contains("the series flask_http_request_total is served as flask_http_request_per_second by rules[0]; "),
        "exit {code}: {why}"
    );
}

#[test]
fn a_schedule_floor_is_explained_window_by_window_without_a_backend() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("floors.yaml");
    // The first window opens every minute and closes on January 1st: open now. The second
    // opens on January 1st and closes every minute: shut now.
    std::fs::write(
        &config,
        r#"scheduleRules:
- name: floor
  timezone: UTC
  windows:
  - {start: "* * * * *", end: "0 0 1 1 *", replicas: 4}
  - {start: "0 0 1 1 *", end: "* * * * *", replicas: 9}
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_prom-metrics-adapter"))
        .args(["explain", "--config", config.to_str().unwrap()])
        .args(["--prometheus-url", "http://127.0.0.1:9", "-o", "json"])
        .arg("/apis/external.metrics.k8s.io/v1beta1/namespaces/default/floor")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let report: Value = serde_json::from_str(&text).unwrap();
    let matched = &report["matched"];
    assert_eq!(matched["rule"], "scheduleRules[0]", "{text}");
    assert_eq!(matched["timezone"], "UTC");
    assert_eq!(matched["windows"][0]["active"], true, "{text}");
    assert_eq!(matched["windows"][1]["active"], false, "{text}");
    assert_eq!(matched["value"], 4);
    assert_eq!(report["answer"]["code"], 200, "{text}");
    assert_eq!(report["answer"]["body"]["items"][0]["value"], "4", "{text}");
}
